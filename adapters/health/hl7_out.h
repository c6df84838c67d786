/* Events addressed to health, written as HL7 v2.5.1 for the hospital's
 * interface engine: a referral or handover as REF^I12, an update as
 * REF^I13, a closure as REF^I14, and an answer to a referral (accepted,
 * declined, ...) as RRI^I12 with its status in RF1-1 (table 0283). README,
 * "HL7 v2 (health)", has the mapping. */
#ifndef CB_HL7_OUT_H
#define CB_HL7_OUT_H

#include <jansson.h>
#include <stddef.h>

/* The message for event (carebridge JSON), NUL-terminated in out, with
 * this control id and MSH-7 timestamp; the bytes written, 0 when out is too
 * small or the event has no HL7 form (a discharge to health is the
 * hospital's own news: why says so). */
size_t cb_hl7_of_event(const json_t *event, const char *control_id, const char *timestamp, char *out, size_t cap,
                       const char **why);

#endif
