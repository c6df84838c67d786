/* HL7 v2 acknowledgements: the ACK a receiving system sends back, in the
 * version and with the separators of the message it answers, as hospital
 * interface engines expect to match it to what they sent. */
#ifndef CB_HL7_ACK_H
#define CB_HL7_ACK_H

#include <stddef.h>

#include "hl7.h"

/* One thing to report in an ERR segment. */
typedef struct {
    int code;          /* HL7 table 0357 (cb_hl7.h); 0: message accepted */
    char severity;     /* 'E' error, 'W' warning (a flag), 'I' information */
    char segment[4];   /* where: "" for the message as a whole */
    unsigned sequence; /* the segment's place among those of its name, from 1 */
    unsigned field;    /* 0: the segment as a whole */
    const char *text;  /* plain text, escaped as it is written */
} cb_hl7_issue;

/* The ACK answering m, NUL-terminated in out: MSH with the sending and
 * receiving application and facility swapped, MSH-9 ACK^<m's trigger>^ACK,
 * MSH-10 control_id, MSH-7 timestamp (YYYYMMDDHHMMSS), m's processing id
 * and version; MSA-1 code ("AA", "AE" or "AR") echoing m's MSH-10; one ERR
 * per issue, as m's version writes it (ERR-1 before v2.5; ERR-2, -3, -4 and
 * -8 from v2.5). m NULL (a message that could not be read): the standard
 * separators, v2.5, nothing echoed. The bytes written; 0 when out is too
 * small. */
size_t cb_hl7_ack(const cb_hl7 *m, const char *code, const char *control_id, const char *timestamp,
                  const cb_hl7_issue *issues, size_t n_issues, char *out, size_t cap);

/* Table 0357's text for a code ("Required field missing"). */
const char *cb_hl7_code_text(int code);

#endif
