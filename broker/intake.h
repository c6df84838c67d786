/* Intake decides what is admissible: known agencies, the sender's own agency,
 * the envelope essentials, lengths that fit the store's keys. (That every
 * string is UTF-8 without a NUL the codec has decided: see cb_wire.h.)
 * It never judges completeness: a body with missing fields, or an NHS number
 * whose check digit fails, is admitted (a person still needs help); the flag
 * rules of a later stage report those. */
#ifndef CB_INTAKE_H
#define CB_INTAKE_H

#include <stddef.h>
#include "cb_check.h"
#include "cb_codec.h"
#include "config.h"
#include "store.h"

/* CB_OK, or the code and a reason naming the field: the agencies against the
 * configuration (`sender` is the agency the connection said hello as), then
 * cb_envelope_check. */
cb_code cb_intake_check(const cb_config *cfg, const cb_agency *sender, const cb_envelope *ev, cb_error *err);

/* What an ACK warns the sending system about: an event it should put right,
 * though it is stored and delivered (a person still needs help). Each is a
 * field and a reason, written on the ACK as "field:reason". */
#define CB_WARNINGS(X)                                                                                                 \
    X(NHS_FORMAT, "person.nhsNumber", "format")                                                                        \
    X(NHS_CHECK_DIGIT, "person.nhsNumber", "check-digit")                                                              \
    X(CHI_FORMAT, "person.chiNumber", "format")                                                                        \
    X(CHI_DATE, "person.chiNumber", "date")                                                                            \
    X(CHI_CHECK_DIGIT, "person.chiNumber", "check-digit")                                                              \
    X(CORRELATION_UNKNOWN, "correlationId", "unknown")

enum {
#define CB_X_WARNING(name, field, reason) CB_WARN_##name,
    CB_WARNINGS(CB_X_WARNING)
#undef CB_X_WARNING
        CB_WARN_COUNT
};
typedef uint32_t cb_warnings; /* a set of (1u << CB_WARN_...) */

/* The field and reason of warning w (a CB_WARN_ value). */
const char *cb_warning_field(unsigned w);
const char *cb_warning_reason(unsigned w);

/* Bring the event's identifiers to their stored form, before it is checked,
 * packed and indexed (NHS and CHI numbers without the spaces and dashes people
 * write them with, so one person is one key), and say what its ACK warns of. */
cb_warnings cb_intake_normalise(cb_envelope *ev);

/* The person index keys of an admitted event ("nhs:943...", "chi:...",
 * "local:" system US value, where US is the unit separator 0x1F: intake
 * refuses control characters in both, so no two local ids share a key), at
 * most CB_PERSON_KEYS_MAX; returns how many. */
typedef char cb_person_key[CB_KEY_MAX + 1];
size_t cb_intake_person_keys(const Carebridge__V1__Person *person, cb_person_key *keys, size_t cap);

#endif
