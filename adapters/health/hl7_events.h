/* What an HL7 v2 message means as a carebridge event, in carebridge's own
 * JSON (an Envelope, as cb_json reads it), so the broker's reader checks it
 * as it checks any event. README, "HL7 v2 (health)", has the mapping. */
#ifndef CB_HL7_EVENTS_H
#define CB_HL7_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "hl7.h"
#include "hl7_ack.h"

typedef struct {
    const char *agency;              /* the agency this adapter serves: the sender */
    const char *const *admission_to; /* who an admission goes to */
    size_t n_admission_to;
    const char *const *discharge_to; /* who a discharge goes to */
    size_t n_discharge_to;
    const char *const *referral_to; /* who a referral goes to, unless a PRD names a configured agency */
    size_t n_referral_to;
    const char *const *agencies; /* the configured agency ids a referred-to provider's PRD-7 may name */
    size_t n_agencies;
    /* Whether an event with this id was handed over already (the outbox
     * knows): a visit's first admission or discharge message is its
     * admission or discharge, and later ones update it. NULL: none ever was. */
    bool (*known)(void *arg, const char *event_id);
    void *known_arg;
} cb_hl7_map_opts;

/* An id for the message: its sending facility and control id (MSH-4,
 * MSH-10), readable, and a hash of its segments as sent, so an exact resend
 * has the same id (and is stored once) while two messages that share a
 * control id, as senders' do, have two. */
void cb_hl7_event_id(const cb_hl7 *m, char *out, size_t cap);

/* Why a message is no event: the ERR an AE or AR carries (issue.text points
 * into text). */
typedef struct {
    cb_hl7_issue issue;
    char text[240];
} cb_hl7_refusal;

/* The event m means, or NULL with why. */
json_t *cb_hl7_event(const cb_hl7 *m, const cb_hl7_map_opts *opts, cb_hl7_refusal *why);

#endif
