/* Who may do what (README, "Trust"): every decision on a proven key's
 * principal is made here, on either thread. A NULL principal is a broker
 * without CURVE, on loopback only: what the connection says it is, it is,
 * as before keys. (Whether an event's fromAgency is the connection's agency
 * stays where the core decided it: cb_intake_check.) */
#ifndef CB_ACCESS_H
#define CB_ACCESS_H

#include <stdbool.h>
#include "cb_error.h"
#include "config.h"
#include "keyring.h"

/* hello as agency (receiving its queue or not). */
cb_code cb_access_hello(const cb_config *cfg, const cb_principal *who, const char *agency, bool receive, cb_error *err);
/* Publish or acknowledge a delivery: an agency's key only. */
cb_code cb_access_agency_frame(const cb_principal *who, const char *what, cb_error *err);
/* Queue an event again for agency to_agency (an index). */
cb_code cb_access_replay(const cb_config *cfg, const cb_principal *who, int to_agency, cb_error *err);

#endif
