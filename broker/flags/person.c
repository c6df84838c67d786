/* The person record: what the rules that look across a journey need to
 * know of the events before this one. Each event that changes it stores the
 * record as it then stands under its own seq, so writing it is an append
 * (a record keyed by person would be a write at a random place in a tree of
 * everyone, a page per event at scale), and adds (person, seq) to the
 * store's records index; reading it is a look there for the newest seq. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "rule.h"

#define PASSED_ON_MAX   64
#define ACCEPTED_BY_MAX 64
#define OUTCOMES_MAX    256

typedef Carebridge__V1__PersonRecord__PassedOn passed_on_t;

int64_t cb_occurred_ms(const cb_envelope *ev)
{
    const Google__Protobuf__Timestamp *t = ev->occurred_at;
    return t ? t->seconds * 1000 + t->nanos / 1000000 : 0;
}

#define NEWEST_TRIED 4 /* of the person's record seqs, newest first: another person's only if hashes collide */

typedef struct {
    uint64_t below, best[NEWEST_TRIED];
    size_t n;
} newest;

/* Keep the NEWEST_TRIED highest seqs below `below`, highest first. */
static bool keep_newest(void *arg, uint64_t seq)
{
    newest *w = arg;
    if (seq >= w->below)
        return true;
    size_t at = w->n;
    while (at > 0 && w->best[at - 1] < seq)
        at--;
    if (at > 0 && w->best[at - 1] == seq)
        return true; /* indexed twice */
    if (at == NEWEST_TRIED)
        return true;
    size_t n = w->n < NEWEST_TRIED ? w->n : NEWEST_TRIED - 1;
    memmove(&w->best[at + 1], &w->best[at], (n - at) * sizeof *w->best);
    w->best[at] = seq;
    w->n = n + 1;
    return true;
}

/* The cache of newest records: sets of PERSON_WAYS entries, each a tag of
 * the person hash's top bits over the seq's low CB_SEQ_BITS (so a million
 * people take 8 MiB), the oldest in a set making way. A tag can match
 * another person's: the record it leads to says whose it is. */
#define SEQ_BITS 40
#define SEQ_MASK ((1ull << SEQ_BITS) - 1)

static uint64_t *set_of(cb_rule_ctx *ctx)
{
    cb_rules *r = (cb_rules *)ctx->rules;
    return &r->newest[(ctx->person_hash & (PERSON_CACHE / PERSON_WAYS - 1)) * PERSON_WAYS];
}

static uint64_t tag_of(const cb_rule_ctx *ctx)
{
    return ctx->person_hash >> SEQ_BITS << SEQ_BITS;
}

/* The seq the cache holds for the person, 0 when none. */
static uint64_t cached(cb_rule_ctx *ctx)
{
    const uint64_t *set = set_of(ctx);
    for (size_t i = 0; i < PERSON_WAYS; i++)
        if (set[i] && (set[i] & ~SEQ_MASK) == tag_of(ctx))
            return set[i] & SEQ_MASK;
    return 0;
}

static void remember(cb_rule_ctx *ctx, uint64_t seq)
{
    uint64_t *set = set_of(ctx);
    size_t at = 0;
    for (size_t i = 0; i < PERSON_WAYS; i++) {
        if (set[i] && (set[i] & ~SEQ_MASK) == tag_of(ctx)) {
            at = i;
            break;
        }
        if ((set[i] & SEQ_MASK) < (set[at] & SEQ_MASK))
            at = i;
    }
    set[at] = tag_of(ctx) | (seq & SEQ_MASK);
}

/* The record stored under seq, if it is this person's: the index matches
 * by hash, and the cache by a slot, so the record says whose it is. */
static cb_person_record *record_at(cb_rule_ctx *ctx, uint64_t seq)
{
    cb_key k;
    const uint8_t *val;
    size_t len;
    cb_key_make(&k, "Q", seq);
    if (!cb_kv_get(ctx->txn, ctx->fb->people, k.b, k.len, &val, &len))
        return NULL;
    cb_person_record *p = carebridge__v1__person_record__unpack(NULL, len, val);
    if (p && p->person_hash != ctx->person_hash) {
        protobuf_c_message_free_unpacked(&p->base, NULL);
        p = NULL;
    }
    return p;
}

/* ---- the decoded records kept */

static void keep(cb_rule_ctx *ctx)
{
    cb_kept_put(((cb_rules *)ctx->rules)->kept, ctx->person_hash, ctx->person_rec);
    ctx->person_kept = true;
}

/* A record that could not be written is not what the store has: let it go. */
static void unkeep(cb_rule_ctx *ctx)
{
    if (ctx->person_kept)
        cb_kept_drop(((cb_rules *)ctx->rules)->kept, ctx->person_hash); /* frees it */
    else
        cb_rule_person_free(ctx);
    ctx->person_rec = NULL;
    ctx->person_kept = false;
}

cb_person_record *cb_rule_person(cb_rule_ctx *ctx)
{
    if (ctx->person_rec || !ctx->person_hash)
        return ctx->person_rec;
    if ((ctx->person_rec = cb_kept_get(((cb_rules *)ctx->rules)->kept, ctx->person_hash))) {
        ctx->person_kept = true;
        return ctx->person_rec;
    }
    uint64_t seen = cached(ctx);
    if (seen && seen < ctx->seq)
        ctx->person_rec = record_at(ctx, seen);
    if (!ctx->person_rec) {
        newest w = {.below = ctx->seq};
        cb_store_index_find(ctx->txn, CB_INDEX_RECORDS, ctx->person_hash, keep_newest, &w);
        for (size_t i = 0; i < w.n && !ctx->person_rec; i++)
            if ((ctx->person_rec = record_at(ctx, w.best[i])))
                remember(ctx, w.best[i]); /* found the long way: the next event need not look */
    }
    if (!ctx->person_rec && (ctx->person_rec = malloc(sizeof *ctx->person_rec))) {
        carebridge__v1__person_record__init(ctx->person_rec);
        ctx->person_rec->person_hash = ctx->person_hash;
    }
    if (ctx->person_rec)
        keep(ctx);
    return ctx->person_rec;
}

/* Statements compared ignoring case and the space around them. */
static bool same_words(const char *a, const char *b)
{
    while (isspace((unsigned char)*a))
        a++;
    while (isspace((unsigned char)*b))
        b++;
    size_t la = strlen(a), lb = strlen(b);
    while (la && isspace((unsigned char)a[la - 1]))
        la--;
    while (lb && isspace((unsigned char)b[lb - 1]))
        lb--;
    if (la != lb || !la)
        return false;
    for (size_t i = 0; i < la; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
            return false;
    return true;
}

bool cb_same_outcome(const Carebridge__V1__Outcome *a, const Carebridge__V1__Outcome *b)
{
    if (a->ref[0] && b->ref[0])
        return !strcmp(a->ref, b->ref);
    return same_words(a->statement, b->statement);
}

bool cb_outcome_named(const char *name, const Carebridge__V1__Outcome *o)
{
    return (o->ref[0] && !strcmp(name, o->ref)) || same_words(name, o->statement);
}

Carebridge__V1__Outcome *const *cb_outcomes_of(const cb_envelope *ev, size_t *n)
{
    *n = 0;
    switch (ev->body_case) {
    case CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL: return *n = ev->referral->n_outcomes, ev->referral->outcomes;
    case CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE: return *n = ev->discharge->n_outcomes, ev->discharge->outcomes;
    case CAREBRIDGE__V1__ENVELOPE__BODY_HANDOVER:
        return *n = ev->handover->n_outcomes_to_sustain, ev->handover->outcomes_to_sustain;
    case CAREBRIDGE__V1__ENVELOPE__BODY_CLOSURE:
        return *n = ev->closure->n_outcomes_achieved, ev->closure->outcomes_achieved;
    case CAREBRIDGE__V1__ENVELOPE__BODY_UPDATE: {
        const Carebridge__V1__Update *u = ev->update;
        if (u->patch_case == CAREBRIDGE__V1__UPDATE__PATCH_REFERRAL && u->referral)
            return *n = u->referral->n_outcomes, u->referral->outcomes;
        if (u->patch_case == CAREBRIDGE__V1__UPDATE__PATCH_DISCHARGE && u->discharge)
            return *n = u->discharge->n_outcomes, u->discharge->outcomes;
        if (u->patch_case == CAREBRIDGE__V1__UPDATE__PATCH_HANDOVER && u->handover)
            return *n = u->handover->n_outcomes_to_sustain, u->handover->outcomes_to_sustain;
        return NULL;
    }
    default: return NULL;
    }
}

bool cb_passes_on(const cb_envelope *ev)
{
    if ((1u << ev->body_case) & HANDED_OFF)
        return true;
    return ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE &&
           (ev->response->status == RESPONSE(DECLINED) || ev->response->status == RESPONSE(REDIRECTED));
}

/* Times move on only by more than this: a later event that changes nothing
 * else writes no record (an hour on a window of days). */
#define GRAIN_MS 3600000LL

static bool note_passed_on(cb_person_record *p, const char *agency, int64_t at, int64_t window)
{
    bool changed = false;
    int64_t latest = at;
    for (size_t i = 0; i < p->n_passed_on; i++)
        latest = p->passed_on[i]->at_ms > latest ? p->passed_on[i]->at_ms : latest;
    /* Forget what lies outside the window of the latest, so the record stays small. */
    size_t kept = 0;
    bool found = false;
    for (size_t i = 0; i < p->n_passed_on; i++) {
        passed_on_t *e = p->passed_on[i];
        if (!strcmp(e->agency, agency)) {
            found = true;
            if (at > e->at_ms + GRAIN_MS)
                e->at_ms = at, changed = true;
        }
        if (e->at_ms >= latest - window)
            p->passed_on[kept++] = e;
        else
            protobuf_c_message_free_unpacked(&e->base, NULL);
    }
    p->n_passed_on = kept;
    if (found || at < latest - window || kept >= PASSED_ON_MAX)
        return changed;
    passed_on_t **list = realloc(p->passed_on, (kept + 1) * sizeof *list);
    passed_on_t *e = list ? malloc(sizeof *e) : NULL;
    if (list)
        p->passed_on = list;
    if (!e)
        return changed;
    carebridge__v1__person_record__passed_on__init(e);
    e->agency = cb_explain_dup(agency);
    e->at_ms = at;
    p->passed_on[p->n_passed_on++] = e;
    return true;
}

static bool note_accepted(cb_person_record *p, const char *agency, int64_t at)
{
    bool changed = !p->accepted_ms || at > p->accepted_ms + GRAIN_MS;
    if (at > p->accepted_ms)
        p->accepted_ms = at;
    for (size_t i = 0; i < p->n_accepted_by; i++)
        if (!strcmp(p->accepted_by[i], agency))
            return changed;
    char **list =
        p->n_accepted_by < ACCEPTED_BY_MAX ? realloc(p->accepted_by, (p->n_accepted_by + 1) * sizeof *list) : NULL;
    if (!list)
        return changed;
    p->accepted_by = list;
    p->accepted_by[p->n_accepted_by++] = cb_explain_dup(agency);
    return true;
}

/* A copy of an outcome for the record (its category and carer flag do not matter here). */
static Carebridge__V1__Outcome *copy_outcome(const Carebridge__V1__Outcome *o)
{
    Carebridge__V1__Outcome *c = malloc(sizeof *c);
    if (c) {
        carebridge__v1__outcome__init(c);
        c->statement = cb_explain_dup(o->statement);
        c->ref = cb_explain_dup(o->ref);
        c->status = o->status;
        c->for_carer = o->for_carer;
    }
    return c;
}

static bool note_outcomes(cb_person_record *p, Carebridge__V1__Outcome *const *list, size_t n)
{
    bool changed = n && !p->outcomes_recorded;
    for (size_t k = 0; k < n; k++) {
        p->outcomes_recorded = true;
        size_t j = 0;
        while (j < p->n_outcomes && !cb_same_outcome(p->outcomes[j], list[k]))
            j++;
        if (j < p->n_outcomes) {
            changed |= p->outcomes[j]->status != list[k]->status;
            p->outcomes[j]->status = list[k]->status; /* the latest mention says where it stands */
            continue;
        }
        Carebridge__V1__Outcome **grown =
            p->n_outcomes < OUTCOMES_MAX ? realloc(p->outcomes, (p->n_outcomes + 1) * sizeof *grown) : NULL;
        Carebridge__V1__Outcome *c = grown ? copy_outcome(list[k]) : NULL;
        if (grown)
            p->outcomes = grown;
        if (c)
            p->outcomes[p->n_outcomes++] = c, changed = true;
    }
    return changed;
}

void cb_rule_person_note(cb_rule_ctx *ctx)
{
    const cb_envelope *ev = ctx->ev;
    size_t n;
    Carebridge__V1__Outcome *const *list = cb_outcomes_of(ev, &n);
    bool accepts =
        ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE && ev->response->status == RESPONSE(ACCEPTED);
    if (!ctx->person_hash || (!n && !accepts && !cb_passes_on(ev)))
        return; /* nothing a later rule asks about */
    cb_person_record *p = cb_rule_person(ctx);
    if (!p)
        return;
    bool changed = false;
    if (cb_passes_on(ev))
        changed |= note_passed_on(p, ev->from_agency, ctx->occurred_ms, (int64_t)ctx->cfg->bounce_days * 86400000);
    if (accepts)
        changed |= note_accepted(p, ev->from_agency, ctx->occurred_ms);
    changed |= note_outcomes(p, list, n);
    if (!changed)
        return; /* the newest record still says it all */
    cb_key k;
    cb_key_make(&k, "Q", ctx->seq);
    size_t len = carebridge__v1__person_record__get_packed_size(p);
    uint8_t *buf = malloc(len + 1);
    if (!buf) {
        unkeep(ctx); /* out of memory: the record misses this event, which only quiets a rule */
        return;
    }
    carebridge__v1__person_record__pack(p, buf);
    cb_kv_append(ctx->txn, ctx->fb->people, k.b, k.len, buf, len);
    cb_store_index_add(ctx->txn, CB_INDEX_RECORDS, ctx->person_hash, ctx->seq);
    free(buf);
    remember(ctx, ctx->seq);
}

static bool index_record(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    cb_txn *txn = arg;
    uint64_t seq;
    cb_person_record *p = carebridge__v1__person_record__unpack(NULL, len, val);
    if (p && cb_key_parse(key, key_len, "Q", &seq))
        cb_store_index_add(txn, CB_INDEX_RECORDS, p->person_hash, seq);
    if (p)
        protobuf_c_message_free_unpacked(&p->base, NULL);
    return true;
}

bool cb_rules_prepare(cb_rules *r, cb_txn *txn)
{
    static const char mark[] = "flags.records_indexed";
    char done;
    size_t len;
    bool closed = cb_flagbook_prepare(&r->fb, txn);
    cb_flagbook_flush(&r->fb, txn);
    if (cb_store_meta_get(txn, mark, &done, 1, &len))
        return closed;
    /* A store written before the records index: its records, once. */
    cb_kv_scan(txn, r->fb.people, NULL, 0, NULL, 0, index_record, txn);
    cb_store_meta_put(txn, mark, "1", 1);
    return true;
}

void cb_rule_person_free(cb_rule_ctx *ctx)
{
    if (ctx->person_rec && !ctx->person_kept)
        protobuf_c_message_free_unpacked(&ctx->person_rec->base, NULL);
    ctx->person_rec = NULL;
    ctx->person_kept = false;
}
