/* The counters, and their rendering in Prometheus's text format: names in
 * base units (_seconds, _bytes), counters ending _total, every label value
 * one the configuration or the schema names (agency ids, event types,
 * error codes), so a series exists, at 0, before it first counts. */
#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cb_codec.h"

#define BODIES 32 /* Envelope body field numbers */
#define CODES  64 /* ErrorCode values */

/* Commit durations, in microseconds: 0.5 ms to 2.5 s. */
static const uint64_t commit_le_us[] = {500,   1000,   2500,   5000,   10000,   25000,
                                        50000, 100000, 250000, 500000, 1000000, 2500000};
#define COMMIT_BUCKETS (sizeof commit_le_us / sizeof *commit_le_us)
/* Publishes in a committed batch. */
static const uint64_t batch_le[] = {1, 4, 16, 64, 256, 1024, 4096};
#define BATCH_BUCKETS (sizeof batch_le / sizeof *batch_le)

typedef _Atomic uint64_t counter;

struct cb_metrics {
    counter events[BODIES];
    counter duplicates, acks, nacks[CODES], redeliveries;
    counter commit_bucket[COMMIT_BUCKETS + 1], commit_us, commits; /* the last bucket: +Inf */
    counter batch_bucket[BATCH_BUCKETS + 1], batch_events;
};

static void add(counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t get(const counter *c)
{
    return atomic_load_explicit((counter *)c, memory_order_relaxed);
}

cb_metrics *cb_metrics_new(void)
{
    return calloc(1, sizeof(cb_metrics));
}

void cb_metrics_free(cb_metrics **m_p)
{
    free(*m_p);
    *m_p = NULL;
}

void cb_metrics_acks(cb_metrics *m, size_t n, size_t duplicates)
{
    if (!m)
        return;
    add(&m->acks, n);
    add(&m->duplicates, duplicates);
}

void cb_metrics_nack(cb_metrics *m, cb_code code)
{
    if (!m)
        return;
    add(&m->nacks[(unsigned)code < CODES ? (unsigned)code : 0], 1);
}

static size_t bucket_of(const uint64_t *le, size_t n, uint64_t v)
{
    size_t i = 0;
    while (i < n && v > le[i])
        i++;
    return i;
}

void cb_metrics_committed(cb_metrics *m, const cb_batch *b, int64_t took_us)
{
    uint64_t us = took_us > 0 ? (uint64_t)took_us : 0, stored = 0;
    for (size_t i = 0; i < b->n_pubs; i++) {
        const cb_publish *pub = &b->pubs[i];
        if (pub->code || pub->duplicate)
            continue;
        unsigned body = (unsigned)pub->frame->publish->event->body_case;
        add(&m->events[body < BODIES ? body : 0], 1);
        stored++;
    }
    add(&m->redeliveries, b->n_redelivered);
    add(&m->commit_bucket[bucket_of(commit_le_us, COMMIT_BUCKETS, us)], 1);
    add(&m->commit_us, us);
    add(&m->commits, 1);
    add(&m->batch_bucket[bucket_of(batch_le, BATCH_BUCKETS, b->n_pubs)], 1);
    add(&m->batch_events, stored);
}

/* ---- rendering */

typedef struct {
    char *buf;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    for (int tries = 0; !t->failed && tries < 2; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = 2 * (t->cap + (size_t)n);
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->failed = true;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

static void head(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void events_by_type(text *t, const cb_metrics *m)
{
    head(t, "carebridge_events_total", "counter", "Events committed to the store, by type (duplicates not counted).");
    const ProtobufCMessageDescriptor *d = &carebridge__v1__envelope__descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && f->id < BODIES)
            put(t, "carebridge_events_total{type=\"%s\"} %llu\n", f->name, (unsigned long long)get(&m->events[f->id]));
    }
}

static void nacks_by_code(text *t, const cb_metrics *m)
{
    head(t, "carebridge_nacks_total", "counter", "NACKs sent, by error code.");
    const ProtobufCEnumDescriptor *d = &carebridge__v1__error_code__descriptor;
    for (unsigned i = 0; i < d->n_values; i++) {
        int v = d->values[i].value;
        if (v > 0 && v < CODES)
            put(t, "carebridge_nacks_total{code=\"%s\"} %llu\n", d->values[i].name,
                (unsigned long long)get(&m->nacks[v]));
    }
}

static void histogram(text *t, const char *name, const char *help, const counter *buckets, const uint64_t *le, size_t n,
                      double scale, uint64_t sum, uint64_t count)
{
    head(t, name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < n; i++) {
        cumulative += get(&buckets[i]);
        put(t, "%s_bucket{le=\"%g\"} %llu\n", name, (double)le[i] * scale, (unsigned long long)cumulative);
    }
    cumulative += get(&buckets[n]);
    put(t, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)cumulative, name,
        (double)sum * scale, name, (unsigned long long)count);
}

typedef uint64_t (*agency_value)(const Carebridge__V1__AgencyStatus *a);

static uint64_t queued_of(const Carebridge__V1__AgencyStatus *a)
{
    return a->queued;
}
static uint64_t in_flight_of(const Carebridge__V1__AgencyStatus *a)
{
    return a->in_flight;
}
static uint64_t parked_of(const Carebridge__V1__AgencyStatus *a)
{
    return a->parked;
}
static uint64_t connected_of(const Carebridge__V1__AgencyStatus *a)
{
    return a->connected;
}
static uint64_t refused_of(const Carebridge__V1__AgencyStatus *a)
{
    return a->refused_acks;
}

static void per_agency(text *t, const Carebridge__V1__StatusReply *s, const char *name, const char *type,
                       const char *help, agency_value value)
{
    head(t, name, type, help);
    for (size_t i = 0; i < s->n_agencies; i++)
        put(t, "%s{agency=\"%s\"} %llu\n", name, s->agencies[i]->id, (unsigned long long)value(s->agencies[i]));
}

static void flags_open(text *t, const Carebridge__V1__StatusReply *s, const cb_metrics_view *v)
{
    head(t, "carebridge_flags_open", "gauge", "Open flags involving an agency, by type.");
    const ProtobufCEnumDescriptor *d = &carebridge__v1__flag__type__descriptor;
    for (size_t a = 0; a < s->n_agencies; a++)
        for (unsigned i = 0; i < d->n_values; i++) {
            int type = d->values[i].value;
            if (type > 0 && (unsigned)type < v->n_types)
                put(t, "carebridge_flags_open{type=\"%s\",agency=\"%s\"} %llu\n", d->values[i].name, s->agencies[a]->id,
                    (unsigned long long)v->flags_open[a * v->n_types + (unsigned)type]);
        }
}

char *cb_metrics_render(const cb_metrics *m, const cb_metrics_view *v, size_t *len)
{
    text t = {.buf = malloc(16384), .cap = 16384};
    t.failed = !t.buf;
    events_by_type(&t, m);
    head(&t, "carebridge_acks_total", "counter", "Publishes acknowledged (ACKs sent), duplicates among them.");
    put(&t, "carebridge_acks_total %llu\n", (unsigned long long)get(&m->acks));
    head(&t, "carebridge_duplicates_total", "counter", "Publishes ACKed as duplicates of an event already stored.");
    put(&t, "carebridge_duplicates_total %llu\n", (unsigned long long)get(&m->duplicates));
    nacks_by_code(&t, m);
    histogram(&t, "carebridge_commit_duration_seconds", "Time to commit and sync one batch.", m->commit_bucket,
              commit_le_us, COMMIT_BUCKETS, 1e-6, get(&m->commit_us), get(&m->commits));
    histogram(&t, "carebridge_commit_batch_events", "Publishes in one committed batch.", m->batch_bucket, batch_le,
              BATCH_BUCKETS, 1, get(&m->batch_events), get(&m->commits));
    head(&t, "carebridge_syncs_total", "counter", "Write transactions committed, each synced to disk.");
    put(&t, "carebridge_syncs_total %llu\n", (unsigned long long)v->syncs);
    head(&t, "carebridge_redeliveries_total", "counter", "Deliveries made again after no acknowledgement came.");
    put(&t, "carebridge_redeliveries_total %llu\n", (unsigned long long)get(&m->redeliveries));
    const Carebridge__V1__StatusReply *s = v->status;
    if (s) {
        per_agency(&t, s, "carebridge_queue_depth", "gauge", "Entries queued for an agency, in flight included.",
                   queued_of);
        per_agency(&t, s, "carebridge_in_flight", "gauge", "Deliveries sent to an agency and not yet acknowledged.",
                   in_flight_of);
        per_agency(&t, s, "carebridge_parked", "gauge", "Entries parked after limits.max_attempts deliveries.",
                   parked_of);
        head(&t, "carebridge_oldest_undelivered_seconds", "gauge",
             "Age of an agency's oldest queued or parked entry (0: none).");
        for (size_t i = 0; i < s->n_agencies; i++)
            put(&t, "carebridge_oldest_undelivered_seconds{agency=\"%s\"} %.3f\n", s->agencies[i]->id,
                (double)s->agencies[i]->oldest_undelivered_ms / 1000.0);
        per_agency(&t, s, "carebridge_connections", "gauge", "Connections that have said hello as an agency.",
                   connected_of);
        per_agency(&t, s, "carebridge_refused_acks_total", "counter",
                   "Delivery acknowledgements refused: not in flight to the sender.", refused_of);
        if (v->flags_open)
            flags_open(&t, s, v);
        head(&t, "carebridge_events_stored", "gauge", "Events in the store.");
        put(&t, "carebridge_events_stored %llu\n", (unsigned long long)s->events);
        head(&t, "carebridge_store_used_bytes", "gauge", "Bytes in the store's pages in use.");
        put(&t, "carebridge_store_used_bytes %llu\n", (unsigned long long)s->store_used_bytes);
        head(&t, "carebridge_store_limit_bytes", "gauge", "The store's map size: the most it can hold.");
        put(&t, "carebridge_store_limit_bytes %llu\n", (unsigned long long)s->store_limit_bytes);
        head(&t, "carebridge_publishing_paused", "gauge", "1 while the store is full and publishes get STORE_FULL.");
        put(&t, "carebridge_publishing_paused %d\n", s->publishing_paused ? 1 : 0);
    }
    if (t.failed) {
        free(t.buf);
        return NULL;
    }
    *len = t.len;
    return t.buf;
}
