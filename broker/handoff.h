/* Where a handoff to one agency stands: one event sent to it, moved on by
 * that agency's responses. Journeys show it (query.c); the flag rules judge
 * it (not answered, declined without an alternative, passed on), so both
 * take the stage from here. */
#ifndef CB_HANDOFF_H
#define CB_HANDOFF_H

#include "cb_codec.h"

typedef Carebridge__V1__JourneyStep__Stage cb_stage;

/* The stage a response with this status moves a handoff to from `now`: the
 * status's own stage, except that an acknowledgement never moves one back
 * from a later stage, and a response with no status moves nothing. */
cb_stage cb_handoff_next(cb_stage now, Carebridge__V1__Response__Status status);

/* What a coordinator is told of a response beside its stage ("no alternative
 * offered", "alternative offered: ...", "redirected to ...", "information
 * requested"), for the caller to free; NULL when it says nothing more (or
 * there is no memory for it). */
char *cb_handoff_note(const Carebridge__V1__Response *resp);

#endif
