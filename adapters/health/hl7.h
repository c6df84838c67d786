/* HL7 v2 messages (2.3 to 2.5.1) read as hospital systems really send them:
 * segments ended by \r, \n or \r\n (blank lines skipped), a UTF-8 byte-order
 * mark, the separators MSH-1 and MSH-2 declare, escape sequences, field
 * repetitions, the "" null, Z-segments anywhere and more fields or
 * components than anyone reads. The parse checks only the frame every
 * message shares (an MSH first, segment names); what a message must hold is
 * the mapping's to judge, with an error in the same terms.
 *
 * Positions are as HL7 writes them: PID-3[2].1.1 is segment PID, field 3,
 * its second repetition, first component, first subcomponent, all counted
 * from 1. In MSH, MSH-1 is the field separator and MSH-2 the encoding
 * characters, so MSH-3 is the first field after them. */
#ifndef CB_HL7_H
#define CB_HL7_H

#include <stdbool.h>
#include <stddef.h>

/* HL7 table 0357, the codes an ERR segment carries. */
enum {
    CB_HL7_SEGMENT_SEQUENCE = 100,
    CB_HL7_REQUIRED_MISSING = 101,
    CB_HL7_DATA_TYPE = 102,
    CB_HL7_TABLE_VALUE = 103,
    CB_HL7_UNSUPPORTED_TYPE = 200,
    CB_HL7_UNSUPPORTED_EVENT = 201,
    CB_HL7_UNSUPPORTED_PROCESSING = 202,
    CB_HL7_UNSUPPORTED_VERSION = 203,
    CB_HL7_INTERNAL = 207,
};

/* Where a message is wrong and how, for an ERR segment and the log (never
 * a value from the message: it may be a name or an NHS number). */
typedef struct {
    int code;          /* table 0357 */
    char segment[4];   /* "" when about the message as a whole */
    unsigned sequence; /* the segment's place among those of its name, from 1 */
    unsigned field;    /* 0: the segment as a whole */
    char text[160];
} cb_hl7_error;

typedef struct {
    char field, component, repetition, escape, subcomponent;
} cb_hl7_delims;

typedef struct cb_hl7 cb_hl7;

/* The message in bytes (its own copy is kept); NULL with err set when it is
 * not an HL7 v2 message at all. */
cb_hl7 *cb_hl7_parse(const void *bytes, size_t len, cb_hl7_error *err);
void cb_hl7_free(cb_hl7 **m_p);

const cb_hl7_delims *cb_hl7_delimiters(const cb_hl7 *m);
size_t cb_hl7_segment_count(const cb_hl7 *m);
/* Segment i's name (i < count), e.g. "PID" or "ZU1". */
const char *cb_hl7_segment_name(const cb_hl7 *m, size_t i);
/* Segment i's text as sent, without its terminator. */
void cb_hl7_segment_text(const cb_hl7 *m, size_t i, const char **p, size_t *len);
/* The index of the first segment named name at or after from; -1 when none. */
long cb_hl7_find(const cb_hl7 *m, const char *name, size_t from);

/* What a position holds: nothing there, the explicit null "" (a sender
 * saying "delete this"), or a value. TOO_LONG: a value that did not fit. */
typedef enum { CB_HL7_ABSENT, CB_HL7_NULL, CB_HL7_VALUE, CB_HL7_TOO_LONG } cb_hl7_kind;

typedef struct {
    size_t segment; /* the segment's index */
    unsigned field; /* from 1 */
    unsigned rep;   /* from 1; 0 means 1 */
    unsigned comp;  /* from 1; 0: the whole repetition, separators and all, unescaped */
    unsigned sub;   /* from 1; 0: the whole component */
} cb_hl7_at;

/* The value at a position, its escape sequences decoded, into buf (NUL
 * ended; "" unless VALUE). A component past the last one there is ABSENT. */
cb_hl7_kind cb_hl7_get(const cb_hl7 *m, cb_hl7_at at, char *buf, size_t cap);
/* A field as written, separators and escapes and all (to copy it into an
 * answer written with the same separators); false when empty or absent. */
bool cb_hl7_raw(const cb_hl7 *m, size_t segment, unsigned field, const char **p, size_t *len);
/* How many repetitions field holds (0 when it is empty or not there). */
unsigned cb_hl7_repetitions(const cb_hl7 *m, size_t segment, unsigned field);

/* Text with the message's separators escaped, for an answer written with
 * them (an ACK's ERR text); the bytes written, or 0 when out fits none. */
size_t cb_hl7_escape(const cb_hl7_delims *d, const char *text, char *out, size_t cap);

#endif
