#include "delivery.h"

#include <stdlib.h>
#include <string.h>

/* A delivery the consumer holds unacknowledged. One whose last attempt timed
 * out is parked (durably) but keeps its place in the window: the consumer
 * still holds it, and sending more would let it hold more than its credit.
 * It is never redelivered; its acknowledgement removes it from parked. */
typedef struct {
    uint64_t seq;
    uint32_t attempt;
    int64_t deadline_ms; /* INT64_MAX once parked */
    bool parked;
} flight;

typedef struct {
    int consumer;       /* peer index, -1 when nobody receives */
    uint64_t cursor;    /* highest seq taken from the queue in order */
    bool maybe_more;    /* the queue may hold entries past the cursor */
    bool planned_dry;   /* this plan found the queue exhausted */
    bool told;          /* enqueued() since the plan: apply() must not undo it */
    uint64_t rewind_to; /* with told: the cursor enqueued() asked for */
    flight *flights;
    uint32_t n_flights;
    uint32_t window; /* the consumer's credit, at most limits.window */
} lane;

struct cb_delivery {
    const cb_config *cfg;
    lane *lanes;
};

cb_delivery *cb_delivery_new(const cb_config *cfg)
{
    cb_delivery *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->cfg = cfg;
    d->lanes = calloc(cfg->n_agencies, sizeof *d->lanes);
    if (!d->lanes) {
        free(d);
        return NULL;
    }
    for (unsigned a = 0; a < cfg->n_agencies; a++) {
        d->lanes[a].consumer = -1;
        d->lanes[a].window = cfg->window;
        d->lanes[a].flights = calloc(cfg->window, sizeof(flight));
        if (!d->lanes[a].flights) {
            cb_delivery_destroy(&d);
            return NULL;
        }
    }
    return d;
}

void cb_delivery_destroy(cb_delivery **d_p)
{
    cb_delivery *d = *d_p;
    if (d) {
        for (unsigned a = 0; a < d->cfg->n_agencies; a++)
            free(d->lanes[a].flights);
        free(d->lanes);
        free(d);
    }
    *d_p = NULL;
}

size_t cb_delivery_max_steps(const cb_delivery *d)
{
    return (size_t)d->cfg->n_agencies * d->cfg->window * 2;
}

static void reset(lane *l, int consumer, uint32_t window)
{
    l->consumer = consumer;
    l->window = window;
    l->cursor = 0;
    l->n_flights = 0;
    l->maybe_more = true;
}

void cb_delivery_attach(cb_delivery *d, unsigned agency, int peer, uint32_t window)
{
    reset(&d->lanes[agency], peer, window && window < d->cfg->window ? window : d->cfg->window);
}

size_t cb_delivery_release_peer(cb_delivery *d, int peer, cb_step *released, size_t cap)
{
    size_t n = 0;
    for (unsigned a = 0; a < d->cfg->n_agencies; a++) {
        lane *l = &d->lanes[a];
        if (l->consumer != peer)
            continue;
        for (uint32_t i = 0; i < l->n_flights && n < cap; i++)
            released[n++] = (cb_step){CB_STEP_FORGET, a, l->flights[i].seq, l->flights[i].attempt};
        reset(l, -1, d->cfg->window);
    }
    return n;
}

void cb_delivery_detach_peer(cb_delivery *d, int peer)
{
    for (unsigned a = 0; a < d->cfg->n_agencies; a++)
        if (d->lanes[a].consumer == peer)
            reset(&d->lanes[a], -1, d->cfg->window);
}

int cb_delivery_consumer(const cb_delivery *d, unsigned agency)
{
    return d->lanes[agency].consumer;
}

uint32_t cb_delivery_in_flight(const cb_delivery *d, unsigned agency)
{
    return d->lanes[agency].n_flights;
}

static flight *find_flight(lane *l, uint64_t seq)
{
    for (uint32_t i = 0; i < l->n_flights; i++)
        if (l->flights[i].seq == seq)
            return &l->flights[i];
    return NULL;
}

static void drop_flight(lane *l, uint64_t seq)
{
    flight *f = find_flight(l, seq);
    if (f)
        *f = l->flights[--l->n_flights];
}

void cb_delivery_enqueued(cb_delivery *d, unsigned agency, uint64_t seq)
{
    lane *l = &d->lanes[agency];
    /* A replayed entry lies behind the cursor: walk back to it. The plan of
     * the transaction that queued it may not have seen it, so remember this
     * for apply(), whichever of the two the caller makes first. */
    if (!l->told || seq - 1 < l->rewind_to)
        l->rewind_to = seq - 1;
    l->told = true;
    l->maybe_more = true;
    if (seq <= l->cursor)
        l->cursor = seq - 1;
    /* A parked entry replayed while its consumer still holds it is delivered
     * anew: its old delivery no longer stands for it. */
    flight *f = find_flight(l, seq);
    if (f && f->parked)
        drop_flight(l, seq);
}

void cb_delivery_acked(cb_delivery *d, unsigned agency, uint64_t seq)
{
    drop_flight(&d->lanes[agency], seq);
}

bool cb_delivery_holds(cb_delivery *d, unsigned agency, int peer, uint64_t seq)
{
    lane *l = &d->lanes[agency];
    return l->consumer >= 0 && l->consumer == peer && find_flight(l, seq);
}

bool cb_delivery_has_work(const cb_delivery *d, int64_t now_ms)
{
    for (unsigned a = 0; a < d->cfg->n_agencies; a++) {
        const lane *l = &d->lanes[a];
        if (l->consumer < 0)
            continue;
        if (l->maybe_more && l->n_flights < l->window)
            return true;
        for (uint32_t i = 0; i < l->n_flights; i++)
            if (l->flights[i].deadline_ms <= now_ms)
                return true;
    }
    return false;
}

int64_t cb_delivery_next_deadline(const cb_delivery *d)
{
    int64_t next = INT64_MAX;
    for (unsigned a = 0; a < d->cfg->n_agencies; a++) {
        const lane *l = &d->lanes[a];
        for (uint32_t i = 0; i < l->n_flights; i++)
            if (l->consumer >= 0 && l->flights[i].deadline_ms < next)
                next = l->flights[i].deadline_ms;
    }
    return next;
}

/* Count one more attempt for a queued entry: the step to take with it. */
static cb_step attempt(cb_delivery *d, cb_txn *txn, unsigned agency, cb_queue_entry *e)
{
    const char *id = d->cfg->agencies[agency].id;
    cb_step s = {CB_STEP_SEND, agency, e->seq, ++e->attempts};
    if (e->attempts > d->cfg->max_attempts) {
        cb_store_park(txn, id, e->seq);
        s.kind = CB_STEP_PARK;
    } else {
        cb_store_queue_put(txn, id, e);
    }
    return s;
}

typedef struct {
    cb_delivery *d;
    cb_txn *txn;
    lane *l;
    unsigned agency;
    cb_step *steps;
    size_t n, cap, room, taken;
} scan;

static bool take_entry(void *arg, const cb_queue_entry *entry)
{
    scan *s = arg;
    if (s->taken == s->room || s->n == s->cap)
        return false;
    if (find_flight(s->l, entry->seq))
        return true;
    cb_queue_entry e = *entry;
    s->steps[s->n++] = attempt(s->d, s->txn, s->agency, &e);
    s->taken++;
    return true;
}

size_t cb_delivery_plan(cb_delivery *d, cb_txn *txn, int64_t now_ms, cb_step *steps, size_t cap)
{
    size_t n = 0;
    for (unsigned a = 0; a < d->cfg->n_agencies; a++) {
        lane *l = &d->lanes[a];
        const char *id = d->cfg->agencies[a].id;
        l->planned_dry = false;
        l->told = false;
        if (l->consumer < 0)
            continue;
        for (uint32_t i = 0; i < l->n_flights && n < cap; i++) {
            if (l->flights[i].deadline_ms > now_ms)
                continue;
            cb_queue_entry e;
            if (!cb_store_queue_get(txn, id, l->flights[i].seq, &e))
                steps[n++] = (cb_step){CB_STEP_FORGET, a, l->flights[i].seq, 0};
            else
                steps[n++] = attempt(d, txn, a, &e);
        }
        if (!l->maybe_more || l->n_flights >= l->window)
            continue;
        scan s = {d, txn, l, a, steps, n, cap, l->window - l->n_flights, 0};
        cb_store_queue_scan(txn, id, l->cursor, take_entry, &s);
        l->planned_dry = s.taken < s.room && s.n < s.cap;
        n = s.n;
    }
    return n;
}

static uint32_t backoff_ms(const cb_config *cfg, uint32_t attempt)
{
    uint64_t ms = cfg->redelivery_timeout_ms;
    for (uint32_t i = 1; i < attempt && ms < cfg->redelivery_max_ms; i++)
        ms *= 2;
    return ms < cfg->redelivery_max_ms ? (uint32_t)ms : cfg->redelivery_max_ms;
}

void cb_delivery_apply(cb_delivery *d, const cb_step *steps, size_t n, int64_t now_ms)
{
    for (unsigned a = 0; a < d->cfg->n_agencies; a++)
        if (d->lanes[a].planned_dry)
            d->lanes[a].maybe_more = false;
    for (size_t i = 0; i < n; i++) {
        lane *l = &d->lanes[steps[i].agency];
        if (steps[i].seq > l->cursor)
            l->cursor = steps[i].seq;
        flight *f = find_flight(l, steps[i].seq);
        if (steps[i].kind == CB_STEP_PARK && f) {
            *f = (flight){f->seq, f->attempt, INT64_MAX, true}; /* held until acked or the consumer goes */
            continue;
        }
        if (steps[i].kind != CB_STEP_SEND) {
            drop_flight(l, steps[i].seq);
            continue;
        }
        if (!f && l->n_flights < l->window)
            f = &l->flights[l->n_flights++];
        if (f)
            *f = (flight){steps[i].seq, steps[i].attempt, now_ms + backoff_ms(d->cfg, steps[i].attempt), false};
    }
    for (unsigned a = 0; a < d->cfg->n_agencies; a++) {
        lane *l = &d->lanes[a];
        if (!l->told)
            continue;
        l->maybe_more = true;
        if (l->rewind_to < l->cursor)
            l->cursor = l->rewind_to;
    }
}
