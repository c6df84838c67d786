/* What an HL7 v2 message says of its patient and of when things happened,
 * read as UK systems write it. */
#ifndef CB_HL7_PERSON_H
#define CB_HL7_PERSON_H

#include <stdbool.h>
#include <stdint.h>

#include "hl7.h"

#define CB_HL7_LOCAL_IDS 8

typedef struct {
    char system[80]; /* the identifier's assigning authority (CX.4), else the sending facility, and its type (CX.5) */
    char value[64];
} cb_hl7_local_id;

typedef struct {
    char nhs[16]; /* England, Wales (and Northern Ireland's H&C number): "" when none */
    char chi[16]; /* Scotland's CHI number */
    cb_hl7_local_id local[CB_HL7_LOCAL_IDS];
    unsigned n_local;
    char name[200];      /* given names then family name, for display only */
    char birth_date[11]; /* YYYY-MM-DD, "" when not given to the day */
} cb_hl7_person;

/* The patient of the PID segment at index pid. The national number is in
 * whichever repetition of PID-3 carries it (identifier type NH, or an
 * assigning authority of NHS, NHSNBR, CHI or the NHS number's OID), else in
 * PID-2, where senders of v2.3 and v2.4 put it; spaces and hyphens inside
 * it are dropped. Type NH covers NHS, H&C and CHI numbers alike, so a CHI
 * number is told by its authority or by its range (its first six digits a
 * DDMMYY date, below 3200000000); the check digit is the broker's to judge.
 * Every other identifier is a local id. False when PID holds no identifier
 * at all. */
bool cb_hl7_person_of(const cb_hl7 *m, size_t pid, cb_hl7_person *out);

/* An HL7 TS/DTM value (YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]) as ms
 * since the epoch. Without an offset it is the sender's local time, taken
 * as the process's time zone (TZ; summer time applied). False when it is
 * not a time or names an impossible one. */
bool cb_hl7_time_ms(const char *ts, int64_t *ms);

#endif
