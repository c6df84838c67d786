#include "handoff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cb_stage cb_handoff_next(cb_stage now, Carebridge__V1__Response__Status status)
{
    if (status == CAREBRIDGE__V1__RESPONSE__STATUS__STATUS_UNSPECIFIED)
        return now;
    /* The two enums name the same stages, one apart (SENT comes first). */
    cb_stage next = (cb_stage)(status + 1);
    if (next == CAREBRIDGE__V1__JOURNEY_STEP__STAGE__ACKNOWLEDGED &&
        now > CAREBRIDGE__V1__JOURNEY_STEP__STAGE__ACKNOWLEDGED)
        return now;
    return next;
}

static char *joined(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", a, b);
    return s;
}

char *cb_handoff_note(const Carebridge__V1__Response *resp)
{
    switch (resp->status) {
    case CAREBRIDGE__V1__RESPONSE__STATUS__DECLINED:
        return joined(resp->alternative[0] ? "alternative offered: " : "no alternative offered", resp->alternative);
    case CAREBRIDGE__V1__RESPONSE__STATUS__REDIRECTED: return joined("redirected to ", resp->redirect_to);
    case CAREBRIDGE__V1__RESPONSE__STATUS__INFO_REQUESTED: return joined("information requested", "");
    default: return NULL;
    }
}
