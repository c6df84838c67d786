#include "explain.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

Google__Protobuf__Timestamp *cb_explain_timestamp(int64_t ms)
{
    if (ms <= 0)
        return NULL;
    Google__Protobuf__Timestamp *t = malloc(sizeof *t);
    if (t) {
        google__protobuf__timestamp__init(t);
        t->seconds = ms / 1000;
        t->nanos = (int32_t)(ms % 1000) * 1000000;
    }
    return t;
}

const char *cb_explain_date(int64_t ms, char out[24])
{
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return strcpy(out, "an unknown date");
    snprintf(out, 24, "%d %s %d", tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900);
    return out;
}

const char *cb_explain_span(int64_t ms, char out[32])
{
    int64_t min = ms / 60000;
    if (min < 120)
        snprintf(out, 32, "%lld min", (long long)(min > 0 ? min : 0));
    else if (min < 48 * 60)
        snprintf(out, 32, "%lld h", (long long)(min / 60));
    else
        snprintf(out, 32, "%lld days", (long long)(min / (24 * 60)));
    return out;
}

const char *cb_explain_body(int body_case)
{
    switch (body_case) {
    case CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL: return "referral";
    case CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE: return "discharge";
    case CAREBRIDGE__V1__ENVELOPE__BODY_HANDOVER: return "handover";
    case CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE: return "response";
    case CAREBRIDGE__V1__ENVELOPE__BODY_UPDATE: return "update";
    case CAREBRIDGE__V1__ENVELOPE__BODY_CLOSURE: return "closure";
    case CAREBRIDGE__V1__ENVELOPE__BODY_ADMISSION: return "admission";
    default: return "event";
    }
}

char *cb_explain_dup(const char *s)
{
    char *d = strdup(s ? s : "");
    return d ? d : (char *)protobuf_c_empty_string;
}

const char *cb_explain_event(const cb_envelope *ev, char *out, size_t cap)
{
    const Google__Protobuf__Timestamp *t = ev->occurred_at;
    char when[24], to[300];
    cb_explain_date(t ? t->seconds * 1000 + t->nanos / 1000000 : 0, when);
    cb_explain_list(ev->to_agencies, ev->n_to_agencies, to, sizeof to);
    snprintf(out, cap, "The %s of %s from %s to %s", cb_explain_body(ev->body_case), when, ev->from_agency, to);
    return out;
}

char *cb_explain(const char *fmt, ...)
{
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, again);
    va_end(again);
    return s;
}

const char *cb_explain_list(char *const *items, size_t n, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used < cap; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " and " : ", ";
        int w = snprintf(out + used, cap - used, "%s%s", sep, items[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return out;
}

static const char *stage_words(Carebridge__V1__JourneyStep__Stage s)
{
    switch (s) {
    case CAREBRIDGE__V1__JOURNEY_STEP__STAGE__ACKNOWLEDGED: return "acknowledged, not yet accepted";
    case CAREBRIDGE__V1__JOURNEY_STEP__STAGE__ACCEPTED: return "accepted";
    case CAREBRIDGE__V1__JOURNEY_STEP__STAGE__DECLINED: return "declined";
    case CAREBRIDGE__V1__JOURNEY_STEP__STAGE__INFO_REQUESTED: return "more information requested";
    case CAREBRIDGE__V1__JOURNEY_STEP__STAGE__REDIRECTED: return "redirected";
    default: return "no response yet";
    }
}

char *cb_explain_handoff(const Carebridge__V1__HandoffRecord *rec, const Carebridge__V1__HandoffRecord__Recipient *r)
{
    char when[24];
    cb_explain_date(rec->occurred_ms, when);
    if (r->stage == CAREBRIDGE__V1__JOURNEY_STEP__STAGE__ACCEPTED)
        return cb_explain("%s passed responsibility to %s with the %s of %s; %s accepted it", rec->from_agency,
                          r->agency, cb_explain_body(rec->body), when, r->agency);
    return cb_explain("%s is passing responsibility to %s with the %s of %s; open until %s accepts (now: %s)",
                      rec->from_agency, r->agency, cb_explain_body(rec->body), when, r->agency, stage_words(r->stage));
}
