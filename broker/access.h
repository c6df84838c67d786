/* Who may do what (README, "Trust"): every decision on a proven key's
 * principal is made here, on either thread. A NULL principal is a broker
 * without CURVE, on loopback only: what the connection says it is, it is,
 * as before keys. (Whether an event's fromAgency is the connection's agency
 * stays where the core decided it: cb_intake_check.) */
#ifndef CB_ACCESS_H
#define CB_ACCESS_H

#include <stdbool.h>
#include "cb_codec.h"
#include "cb_error.h"
#include "config.h"
#include "keyring.h"

/* hello as agency (receiving its queue or not). */
cb_code cb_access_hello(const cb_config *cfg, const cb_principal *who, const char *agency, bool receive, cb_error *err);
/* Publish or acknowledge a delivery: an agency's key only. */
cb_code cb_access_agency_frame(const cb_principal *who, const char *what, cb_error *err);
/* Queue an event again for agency to_agency (an index). */
cb_code cb_access_replay(const cb_config *cfg, const cb_principal *who, int to_agency, cb_error *err);

/* A read of the query thread's, by the Frame kind asked for: status for
 * everyone; the report for a lead; journeys and flags for an agency or a
 * coordinator (who then see only their people: below). */
cb_code cb_access_read(const cb_principal *who, uint32_t frame_kind, cb_error *err);
/* Whether an event was sent by or to an agency who sees for: what makes its
 * person one of theirs. */
bool cb_access_involved(const cb_config *cfg, const cb_principal *who, const cb_envelope *ev);
/* The refusal of a person who is not one of who's (or does not exist: the
 * answer must not say which). */
cb_code cb_access_not_their_person(const cb_principal *who, cb_error *err);
/* A subscription to the feed: topics of the agencies who sees for only
 * ("<agency>." or "flag.<agency>." and longer). */
bool cb_access_subscribe(const cb_config *cfg, const cb_principal *who, const char *topic, cb_error *err);
/* The audit: an operator all of it; an agency or coordinator, a person's. */
cb_code cb_access_audit(const cb_principal *who, bool names_person, cb_error *err);

#endif
