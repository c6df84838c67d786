#include "flagquery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explain.h"
#include "keys.h"
#include "query.h"

#define FLAG_OPEN  CAREBRIDGE__V1__FLAG__STATUS__OPEN
#define DAY_MS     86400000LL
#define STAGE(s)   CAREBRIDGE__V1__JOURNEY_STEP__STAGE__##s
#define TYPE(t)    CAREBRIDGE__V1__FLAG__TYPE__##t
#define PAIRS_MAX  4096
#define FIELDS_MAX 32

typedef struct {
    cb_flag **items;
    size_t n, cap;
} flag_list;

static bool push(flag_list *l, cb_flag *f)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        cb_flag **items = realloc(l->items, cap * sizeof *items);
        if (!items)
            return false;
        l->items = items, l->cap = cap;
    }
    l->items[l->n++] = f;
    return true;
}

static bool keep_all(void *arg, cb_flag **f)
{
    if (push(arg, *f))
        *f = NULL;
    return true;
}

void cb_flags_of_event(cb_txn *txn, uint64_t seq, cb_flag ***flags, size_t *n)
{
    flag_list l = {*flags, *n, *n};
    cb_flagbook fb = cb_flagbook_broker();
    cb_handoff_record *rec = cb_flagbook_record(&fb, txn, seq);
    cb_flagbook_event_flags(&fb, txn, seq, rec, keep_all, &l);
    cb_flagbook_free_record(&rec);
    *flags = l.items;
    *n = l.n;
}

/* ---- flags */

typedef struct {
    const Carebridge__V1__FlagsRequest *req;
    flag_list out;
    size_t limit;
    bool truncated;
} query;

static int64_t ms_of(const Google__Protobuf__Timestamp *t)
{
    return t ? t->seconds * 1000 + t->nanos / 1000000 : 0;
}

static bool involves(const cb_flag *f, const char *agency)
{
    for (size_t i = 0; i < f->n_agencies; i++)
        if (!strcmp(f->agencies[i], agency))
            return true;
    return false;
}

static bool wanted(const Carebridge__V1__FlagsRequest *req, const cb_flag *f)
{
    return (!req->open_only || f->status == FLAG_OPEN) && (!req->type || f->type == req->type) &&
           (!req->agency[0] || involves(f, req->agency)) && (!req->since || ms_of(f->raised_at) >= ms_of(req->since));
}

static bool take(query *q, cb_flag **f)
{
    if (!wanted(q->req, *f))
        return true;
    if (q->out.n >= q->limit) {
        q->truncated = true;
        return false;
    }
    if (push(&q->out, *f))
        *f = NULL;
    return true;
}

static bool collect(void *arg, cb_flag **f)
{
    return take(arg, f);
}

static int newest_first(const void *a, const void *b)
{
    uint64_t x = (*(cb_flag *const *)a)->id, y = (*(cb_flag *const *)b)->id;
    return x > y ? -1 : x < y;
}

/* A person's flags: those of every event in their journey. */
static bool person_flags(const cb_config *cfg, cb_txn *txn, query *q, const cb_principal *who, cb_error *err)
{
    Carebridge__V1__JourneyRequest jr = CAREBRIDGE__V1__JOURNEY_REQUEST__INIT;
    jr.person_id = q->req->person_id;
    jr.local_ids = q->req->local_ids;
    jr.n_local_ids = q->req->n_local_ids;
    char person[CB_PSEUDONYM_LEN];
    Carebridge__V1__JourneyReply *j = cb_query_journey_for(cfg, txn, &jr, who, person, err);
    if (!j)
        return false;
    for (size_t i = 0; i < j->n_steps; i++) {
        Carebridge__V1__JourneyStep *s = j->steps[i];
        size_t kept = 0;
        for (size_t k = 0; k < s->n_flags; k++)
            if (take(q, &s->flags[k]), s->flags[k])
                s->flags[kept++] = s->flags[k]; /* what was taken leaves the reply */
        s->n_flags = kept;
    }
    protobuf_c_message_free_unpacked(&j->base, NULL);
    return true;
}

Carebridge__V1__FlagsReply *cb_flags_query(const cb_config *cfg, cb_txn *txn, const Carebridge__V1__FlagsRequest *req,
                                           cb_error *err)
{
    return cb_flags_query_for(cfg, txn, req, NULL, err);
}

Carebridge__V1__FlagsReply *cb_flags_query_for(const cb_config *cfg, cb_txn *txn,
                                               const Carebridge__V1__FlagsRequest *req, const cb_principal *who,
                                               cb_error *err)
{
    if (req->agency[0] && !cb_config_agency(cfg, req->agency)) {
        cb_fail(err, CB_UNKNOWN_AGENCY, "flags.agency names no configured agency (configured: %s)", cfg->agency_list);
        return NULL;
    }
    query q = {.req = req, .limit = req->limit && req->limit < CB_FLAGS_LIMIT ? req->limit : CB_FLAGS_LIMIT};
    if (req->person_id[0] || req->n_local_ids) {
        if (!person_flags(cfg, txn, &q, who, err))
            return NULL;
    } else {
        /* Each agency's index, newest first, open then resolved; a flag
         * involving several agencies is met under each and kept once. */
        for (unsigned a = 0; a < cfg->n_agencies; a++) {
            const char *agency = cfg->agencies[a].id;
            if ((req->agency[0] && strcmp(agency, req->agency)) || (who && !cb_principal_sees(who, a)))
                continue; /* need-to-know: only the flags of the agencies who sees for */
            for (int open = 1; open >= (req->open_only ? 1 : 0); open--) {
                query one = {.req = req, .limit = q.limit};
                cb_flagbook fb = cb_flagbook_broker();
                cb_flagbook_agency_flags(&fb, txn, agency, open, 0, collect, &one);
                q.truncated |= one.truncated;
                for (size_t i = 0; i < one.out.n; i++) {
                    bool seen = false;
                    for (size_t k = 0; k < q.out.n && !seen; k++)
                        seen = q.out.items[k]->id == one.out.items[i]->id;
                    if (seen || !push(&q.out, one.out.items[i]))
                        cb_flag_free(&one.out.items[i]);
                }
                free(one.out.items);
            }
        }
    }
    if (q.out.n)
        qsort(q.out.items, q.out.n, sizeof *q.out.items, newest_first);
    for (size_t i = q.limit; i < q.out.n; i++)
        cb_flag_free(&q.out.items[i]);
    if (q.out.n > q.limit)
        q.out.n = q.limit, q.truncated = true;
    Carebridge__V1__FlagsReply *r = malloc(sizeof *r);
    if (!r) {
        for (size_t i = 0; i < q.out.n; i++)
            cb_flag_free(&q.out.items[i]);
        free(q.out.items);
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    carebridge__v1__flags_reply__init(r);
    r->flags = q.out.items;
    r->n_flags = q.out.n;
    r->truncated = q.truncated;
    return r;
}

/* ---- the gap report */

typedef struct {
    int64_t *v;
    size_t n, cap;
} times;

static void add_time(times *t, int64_t v)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        int64_t *p = realloc(t->v, cap * sizeof *p);
        if (!p)
            return;
        t->v = p, t->cap = cap;
    }
    t->v[t->n++] = v < 0 ? 0 : v;
}

static int by_value(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The nearest-rank percentile. */
static uint64_t percentile(times *t, unsigned pct)
{
    if (!t->n)
        return 0;
    qsort(t->v, t->n, sizeof *t->v, by_value);
    size_t rank = (t->n * pct + 99) / 100;
    return (uint64_t)t->v[rank ? rank - 1 : 0];
}

typedef struct {
    char from[64], to[64];
    Carebridge__V1__AgencyPairReport r;
    times ack, decide;
    struct {
        char field[128];
        uint64_t count;
    } fields[FIELDS_MAX];
    size_t n_fields;
    uint64_t bands[3];
} pair;

typedef struct {
    const cb_config *cfg;
    int64_t since, until, now;
    pair *pairs;
    size_t n;
} report;

static pair *pair_of(report *rp, const char *from, const char *to)
{
    for (size_t i = 0; i < rp->n; i++)
        if (!strcmp(rp->pairs[i].from, from) && !strcmp(rp->pairs[i].to, to))
            return &rp->pairs[i];
    if (rp->n == PAIRS_MAX || strlen(from) >= 64 || strlen(to) >= 64)
        return NULL;
    pair *p = &rp->pairs[rp->n++];
    memset(p, 0, sizeof *p);
    strcpy(p->from, from);
    strcpy(p->to, to);
    carebridge__v1__agency_pair_report__init(&p->r);
    return p;
}

static bool in_period(const report *rp, int64_t ms)
{
    return ms >= rp->since && (!rp->until || ms < rp->until);
}

static void open_age(report *rp, pair *p, int64_t raised_ms)
{
    int64_t age = rp->now - raised_ms;
    p->r.open_flags++;
    p->bands[age < DAY_MS ? 0 : age < 7 * DAY_MS ? 1 : 2]++;
}

static bool count_handoff(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    (void)key, (void)key_len;
    report *rp = arg;
    cb_handoff_record *rec = carebridge__v1__handoff_record__unpack(NULL, len, val);
    if (!rec)
        return true;
    for (size_t i = 0; in_period(rp, rec->occurred_ms) && i < rec->n_recipients; i++) {
        const Carebridge__V1__HandoffRecord__Recipient *r = rec->recipients[i];
        pair *p = strcmp(r->agency, rec->from_agency) ? pair_of(rp, rec->from_agency, r->agency) : NULL;
        if (!p)
            continue;
        p->r.sent++;
        if (r->acknowledged_ms)
            add_time(&p->ack, r->acknowledged_ms - rec->occurred_ms);
        if (r->decided_ms)
            add_time(&p->decide, r->decided_ms - rec->occurred_ms);
        if (r->stage == STAGE(DECLINED)) {
            p->r.declined++;
            p->r.declined_without_alternative += r->declined_without_alternative;
        }
        p->r.redirected += r->redirected;
        if (r->stage != STAGE(ACCEPTED))
            open_age(rp, p, rec->stored_ms); /* its INTER_AGENCY_HANDOFF */
    }
    carebridge__v1__handoff_record__free_unpacked(rec, NULL);
    return true;
}

static void count_field(pair *p, const char *field)
{
    for (size_t i = 0; i < p->n_fields; i++)
        if (!strcmp(p->fields[i].field, field)) {
            p->fields[i].count++;
            return;
        }
    if (p->n_fields < FIELDS_MAX && strlen(field) < sizeof p->fields[0].field) {
        strcpy(p->fields[p->n_fields].field, field);
        p->fields[p->n_fields++].count = 1;
    }
}

static bool count_flag(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    (void)key, (void)key_len;
    report *rp = arg;
    cb_flag *f = carebridge__v1__flag__unpack(NULL, len, val);
    if (!f)
        return true;
    int64_t raised = ms_of(f->raised_at);
    for (size_t i = 0; in_period(rp, raised) && f->from_agency[0] && i < f->n_to_agencies; i++) {
        pair *p = pair_of(rp, f->from_agency, f->to_agencies[i]);
        if (!p)
            continue;
        if (f->type == TYPE(BOUNCED))
            p->r.bounced++;
        for (size_t k = 0; f->type == TYPE(MISSING_INFORMATION) && k < f->n_fields; k++)
            count_field(p, f->fields[k]);
        if (f->status == FLAG_OPEN)
            open_age(rp, p, raised);
    }
    cb_flag_free(&f);
    return true;
}

static int by_pair(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    int c = strcmp(x->from, y->from);
    return c ? c : strcmp(x->to, y->to);
}

Carebridge__V1__ReportReply *cb_flags_report(const cb_config *cfg, cb_txn *txn,
                                             const Carebridge__V1__ReportRequest *req, uint64_t now_ms, cb_error *err)
{
    report rp = {cfg, ms_of(req->since), ms_of(req->until), (int64_t)now_ms, calloc(PAIRS_MAX, sizeof(pair)), 0};
    Carebridge__V1__ReportReply *r = malloc(sizeof *r);
    if (!rp.pairs || !r) {
        free(rp.pairs);
        free(r);
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    carebridge__v1__report_reply__init(r);
    cb_flagbook fb = cb_flagbook_broker();
    cb_kv_scan(txn, fb.handoffs, NULL, 0, NULL, 0, count_handoff, &rp);
    cb_kv_scan(txn, fb.flags, NULL, 0, NULL, 0, count_flag, &rp);
    if (rp.n)
        qsort(rp.pairs, rp.n, sizeof *rp.pairs, by_pair);
    static const char *const bands[] = {"<1d", "1-7d", ">7d"};
    r->pairs = calloc(rp.n + 1, sizeof *r->pairs);
    for (size_t i = 0; r->pairs && i < rp.n; i++) {
        pair *p = &rp.pairs[i];
        Carebridge__V1__AgencyPairReport *out = malloc(sizeof *out);
        if (!out)
            break;
        *out = p->r;
        out->from = cb_explain_dup(p->from);
        out->to = cb_explain_dup(p->to);
        out->acknowledged = p->ack.n;
        out->decided = p->decide.n;
        out->ack_median_ms = percentile(&p->ack, 50);
        out->ack_p90_ms = percentile(&p->ack, 90);
        out->decide_median_ms = percentile(&p->decide, 50);
        out->decide_p90_ms = percentile(&p->decide, 90);
        out->missing_fields = calloc(p->n_fields + 1, sizeof *out->missing_fields);
        for (size_t k = 0; out->missing_fields && k < p->n_fields; k++) {
            Carebridge__V1__AgencyPairReport__FieldCount *fc = malloc(sizeof *fc);
            if (!fc)
                break;
            carebridge__v1__agency_pair_report__field_count__init(fc);
            fc->field = cb_explain_dup(p->fields[k].field);
            fc->count = p->fields[k].count;
            out->missing_fields[out->n_missing_fields++] = fc;
        }
        out->open_flags_by_age = calloc(3, sizeof *out->open_flags_by_age);
        for (size_t b = 0; out->open_flags_by_age && b < 3; b++) {
            Carebridge__V1__AgencyPairReport__AgeBand *ab = p->bands[b] ? malloc(sizeof *ab) : NULL;
            if (!ab)
                continue;
            carebridge__v1__agency_pair_report__age_band__init(ab);
            ab->band = cb_explain_dup(bands[b]);
            ab->count = p->bands[b];
            out->open_flags_by_age[out->n_open_flags_by_age++] = ab;
        }
        free(p->ack.v);
        free(p->decide.v);
        r->pairs[r->n_pairs++] = out;
    }
    free(rp.pairs);
    return r;
}
