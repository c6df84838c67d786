/* Retention: a step at the timer's interval (and at once, or beside
 * publishing every RETENTION_PACE_MS, while a backlog lasts), each kind in
 * turn with a budget, so no step is a long write holding ACKs back. */
#include "retention.h"

#include <stdio.h>
#include <stdlib.h>

#include "audit.h"
#include "log.h"

#define RETENTION_EVERY_MS     60000
#define RETENTION_BUDGET       500  /* closed flags or audit records a step */
#define RETENTION_EVENT_BUDGET 100  /* an event goes with its indexes, queue entries and flags */
#define RETENTION_EVENT_MAX    4000 /* and at most this many more, for those stored since the last step */
#define RETENTION_PACE_MS      20
/* The wall clock is believed no further on from the first step than the
 * monotonic clock has gone, and this much. */
#define RETENTION_CLOCK_SLACK_MS 60000

struct cb_retention {
    const cb_config *cfg;
    cb_rules *rules;
    int64_t next_ms;          /* monotonic: when the next step falls due */
    uint64_t retained_at_seq; /* the last seq stored when events were last looked at */
    uint64_t first_wall;      /* the wall and monotonic clocks at the first step */
    int64_t first_mono;
    bool clock_warned;
    char said[96]; /* the step's line (its audit detail), logged once it has committed */
    bool warn;
};

static bool retains(const cb_config *cfg)
{
    return cfg->retention.audit_days || cfg->retention.event_days || cfg->retention.closed_flag_days;
}

cb_retention *cb_retention_new(const cb_config *cfg, cb_rules *rules, uint64_t last_seq)
{
    cb_retention *r = calloc(1, sizeof *r);
    if (r)
        *r = (cb_retention){.cfg = cfg, .rules = rules, .retained_at_seq = last_seq};
    return r;
}

void cb_retention_free(cb_retention **r_p)
{
    free(*r_p);
    *r_p = NULL;
}

bool cb_retention_due(const cb_retention *r, int64_t now_ms)
{
    return retains(r->cfg) && now_ms >= r->next_ms;
}

int64_t cb_retention_next(const cb_retention *r)
{
    return retains(r->cfg) ? r->next_ms : INT64_MAX;
}

void cb_retention_taken(cb_retention *r, int64_t now_ms)
{
    r->next_ms = now_ms + RETENTION_EVERY_MS;
}

void cb_retention_lost(cb_retention *r, int64_t now_ms)
{
    r->next_ms = now_ms;
    r->said[0] = 0;
}

void cb_retention_committed(cb_retention *r)
{
    if (r->said[0])
        cb_log(r->warn ? CB_LOG_WARN : CB_LOG_INFO, "retention: %s", r->said);
    r->said[0] = 0;
}

/* What the rules keep about an expired event goes with it. */
static void expire_event(void *arg, uint64_t seq, const uint8_t *bytes, size_t len)
{
    cb_retention *r = ((void **)arg)[0];
    cb_txn *txn = ((void **)arg)[1];
    cb_envelope *ev = cb_envelope_decode(bytes, len);
    cb_rules_expire_event(r->rules, txn, seq, ev);
    cb_envelope_free(&ev);
}

static uint64_t expiry(uint32_t days, uint64_t wall_ms)
{
    uint64_t period = (uint64_t)days * 86400000u;
    return period && wall_ms > period ? wall_ms - period : 0;
}

/* The wall time retention judges by: never further on from its first step
 * than the monotonic clock has gone (and a minute's slack), so a wall clock
 * stepped forward while the broker runs (NTP, a restored VM) cannot expire
 * what has not had its time. Stepped back, it is taken as it is: records
 * are then kept longer, never less. */
static uint64_t believed_wall(cb_retention *r, const cb_batch *b)
{
    if (!r->first_wall) {
        r->first_wall = b->wall_ms;
        r->first_mono = b->now_ms;
    }
    int64_t gone = b->now_ms > r->first_mono ? b->now_ms - r->first_mono : 0;
    uint64_t bound = r->first_wall + (uint64_t)gone + RETENTION_CLOCK_SLACK_MS;
    if (b->wall_ms <= bound)
        return b->wall_ms;
    if (!r->clock_warned)
        cb_log(CB_LOG_WARN,
               "retention: the wall clock is %llu s ahead of the time this broker has run; retention goes by the "
               "latter until a restart",
               (unsigned long long)(b->wall_ms - bound + RETENTION_CLOCK_SLACK_MS) / 1000);
    r->clock_warned = true;
    return bound;
}

void cb_retention_step(cb_retention *r, cb_txn *txn, const cb_batch *b, uint64_t last_seq)
{
    const cb_retention_config *rc = &r->cfg->retention;
    cb_expired events = {0};
    size_t flags = 0, audits = 0;
    bool more = false;
    uint64_t wall = believed_wall(r, b);
    uint64_t before = expiry(rc->event_days, wall);
    if (before) {
        /* At least as many as were stored since the last step: under any
         * sustained load the store does not grow past its period. */
        uint64_t stored = last_seq - r->retained_at_seq;
        size_t budget = RETENTION_EVENT_BUDGET + (stored < RETENTION_EVENT_MAX ? stored : RETENTION_EVENT_MAX);
        cb_store_expire(txn, before, budget, expire_event, (void *[]){r, txn}, &events);
        r->retained_at_seq = last_seq;
        more = events.more;
    }
    if (!more && (before = expiry(rc->closed_flag_days, wall)))
        flags = cb_rules_expire_closed(r->rules, txn, before, RETENTION_BUDGET, &more);
    if (!more && (before = expiry(rc->audit_days, wall)))
        audits = cb_audit_expire(txn, before, RETENTION_BUDGET, &more);
    /* More expired: go on at once while nothing else is asked of the store,
     * and a step every RETENTION_PACE_MS beside publishing, so most batches
     * carry none of it. */
    if (more)
        r->next_ms = b->now_ms + (cb_batch_has_input(b) ? RETENTION_PACE_MS : 0);
    if (!events.events && !flags && !audits)
        return;
    cb_audit_entry a = cb_audit_of(NULL, "carebridge-broker", "retention");
    a.role = CB_ROLE_OPERATOR;
    snprintf(a.detail, sizeof a.detail, "removed %zu events (%zu undelivered), %zu closed flags, %zu audit records%s",
             events.events, events.undelivered, flags, audits, more ? "; more to go" : "");
    cb_audit_put(txn, &a, b->wall_ms);
    snprintf(r->said, sizeof r->said, "%s", a.detail);
    r->warn = events.undelivered > 0;
}
