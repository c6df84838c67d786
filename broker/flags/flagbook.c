#include "flagbook.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explain.h"
#include "keys.h"

const char *const cb_flagbook_keyspaces[] = {CB_FLAGBOOK_KEYSPACE_NAMES};

_Static_assert(sizeof cb_flagbook_keyspaces / sizeof *cb_flagbook_keyspaces == CB_FLAGBOOK_KEYSPACES &&
                   offsetof(cb_flagbook, deltas) == CB_FLAGBOOK_KEYSPACES * sizeof(cb_keyspace),
               "a name for every keyspace");

enum { IX_OPEN = 1, IX_RESOLVED = 2 };

cb_flagbook cb_flagbook_at(cb_keyspace base)
{
    return (cb_flagbook){base,     base + 1, base + 2, base + 3, base + 4, base + 5,
                         base + 6, base + 7, base + 8, base + 9, NULL};
}

/* ---- handoff records */

cb_handoff_record *cb_flagbook_record(const cb_flagbook *fb, cb_txn *txn, uint64_t seq)
{
    cb_key k;
    const uint8_t *val;
    size_t len;
    cb_key_make(&k, "Q", seq);
    if (!cb_kv_get(txn, fb->handoffs, k.b, k.len, &val, &len))
        return NULL;
    return carebridge__v1__handoff_record__unpack(NULL, len, val);
}

void cb_flagbook_free_record(cb_handoff_record **r_p)
{
    if (*r_p)
        carebridge__v1__handoff_record__free_unpacked(*r_p, NULL);
    *r_p = NULL;
}

void cb_flagbook_put_record(const cb_flagbook *fb, cb_txn *txn, uint64_t seq, const cb_handoff_record *r, bool fresh,
                            uint64_t old_due_ms, uint64_t new_due_ms)
{
    cb_key k;
    uint8_t small[512];
    size_t len = carebridge__v1__handoff_record__get_packed_size(r);
    uint8_t *buf = len <= sizeof small ? small : malloc(len);
    if (!buf)
        return; /* out of memory: the record is behind, which only delays a time-based flag */
    carebridge__v1__handoff_record__pack(r, buf);
    cb_key_make(&k, "Q", seq);
    if (fresh)
        cb_kv_append(txn, fb->handoffs, k.b, k.len, buf, len);
    else
        cb_kv_put(txn, fb->handoffs, k.b, k.len, buf, len);
    if (buf != small)
        free(buf);
    if (old_due_ms == new_due_ms)
        return;
    if (old_due_ms) {
        cb_key_make(&k, "QQ", old_due_ms, seq);
        cb_kv_del(txn, fb->due, k.b, k.len);
    }
    if (new_due_ms) {
        /* Deadlines mostly count from now, so most fall after every other: an append. */
        cb_key_make(&k, "QQ", new_due_ms, seq);
        cb_kv_append(txn, fb->due, k.b, k.len, "", 0);
    }
}

void cb_flagbook_drop_due(const cb_flagbook *fb, cb_txn *txn, uint64_t seq, uint64_t due_ms)
{
    cb_key k;
    cb_key_make(&k, "QQ", due_ms, seq);
    cb_kv_del(txn, fb->due, k.b, k.len);
}

/* Keys (ms, u64) at or before upto, earliest first, at most cap: the
 * deadlines due, and the flags resolved long enough ago. */
typedef struct {
    uint64_t upto;
    uint64_t *ms, *ids;
    size_t n, cap;
} until_scan;

static bool collect_until(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    (void)val, (void)len;
    until_scan *u = arg;
    uint64_t ms, id;
    if (!cb_key_parse(key, key_len, "QQ", &ms, &id) || ms > u->upto)
        return false;
    u->ms[u->n] = ms;
    u->ids[u->n] = id;
    return ++u->n < u->cap;
}

static size_t scan_until(cb_txn *txn, cb_keyspace ks, uint64_t upto, uint64_t *ms, uint64_t *ids, size_t cap)
{
    until_scan u = {upto, ms, ids, 0, cap};
    if (cap)
        cb_kv_scan(txn, ks, NULL, 0, NULL, 0, collect_until, &u);
    return u.n;
}

size_t cb_flagbook_due(const cb_flagbook *fb, cb_txn *txn, uint64_t now_ms, uint64_t *seqs, uint64_t *due_ms,
                       size_t cap)
{
    return scan_until(txn, fb->due, now_ms, due_ms, seqs, cap);
}

/* ---- flags */

static void put_flag(const cb_flagbook *fb, cb_txn *txn, const cb_flag *f)
{
    cb_key k;
    uint8_t small[1024];
    size_t len = carebridge__v1__flag__get_packed_size(f);
    uint8_t *buf = len <= sizeof small ? small : malloc(len);
    if (!buf)
        return;
    carebridge__v1__flag__pack(f, buf);
    cb_key_make(&k, "Q", f->id);
    cb_kv_put(txn, fb->flags, k.b, k.len, buf, len);
    if (buf != small)
        free(buf);
}

/* Add delta to the open flags of a type involving an agency, in the store. */
static void write_count(const cb_flagbook *fb, cb_txn *txn, const char *agency, unsigned type, int64_t delta)
{
    cb_key k;
    const uint8_t *val;
    size_t len;
    if (!delta || !cb_key_make(&k, "SB", agency, type))
        return;
    uint64_t n = cb_kv_get(txn, fb->open_count, k.b, k.len, &val, &len) && len == 8 ? cb_be64_get(val) : 0;
    n = delta < 0 && (uint64_t)-delta > n ? 0 : n + (uint64_t)delta;
    uint8_t b[8];
    cb_be64_put(b, n);
    if (n)
        cb_kv_put(txn, fb->open_count, k.b, k.len, b, sizeof b);
    else
        cb_kv_del(txn, fb->open_count, k.b, k.len);
}

/* The open flags of a type involving an agency, by delta: kept for the
 * transaction's end when the writer keeps deltas and there is room. */
static void count_open(const cb_flagbook *fb, cb_txn *txn, const char *agency, unsigned type, int delta)
{
    cb_open_deltas *d = fb->deltas;
    size_t i = 0;
    while (d && i < d->n && (d->d[i].type != type || strcmp(d->d[i].agency, agency)))
        i++;
    if (!d || strlen(agency) >= sizeof d->d[0].agency || (i == d->n && d->n == CB_OPEN_DELTAS)) {
        write_count(fb, txn, agency, type, delta);
        return;
    }
    if (i == d->n) {
        snprintf(d->d[i].agency, sizeof d->d[i].agency, "%s", agency);
        d->d[i].type = type;
        d->d[i].delta = 0;
        d->n++;
    }
    d->d[i].delta += delta;
}

void cb_flagbook_flush(const cb_flagbook *fb, cb_txn *txn)
{
    for (size_t i = 0; fb->deltas && i < fb->deltas->n; i++)
        write_count(fb, txn, fb->deltas->d[i].agency, fb->deltas->d[i].type, fb->deltas->d[i].delta);
    cb_flagbook_forget(fb);
}

void cb_flagbook_forget(const cb_flagbook *fb)
{
    if (fb->deltas)
        fb->deltas->n = 0;
}

/* Newest first: the index holds the id's complement. An open entry counts
 * in open_count while it is there. */
static void index_one(const cb_flagbook *fb, cb_txn *txn, const char *agency, unsigned status, uint64_t id, bool add,
                      unsigned type)
{
    cb_key k;
    const uint8_t *val;
    size_t len;
    if (!cb_key_make(&k, "SBQ", agency, status, ~id))
        return; /* agency ids are configured and short: this cannot happen */
    bool counted = status == IX_OPEN;
    if (add) {
        bool had = counted && cb_kv_get(txn, fb->ix, k.b, k.len, &val, &len);
        cb_kv_put(txn, fb->ix, k.b, k.len, "", 0);
        if (counted && !had)
            count_open(fb, txn, agency, type, +1);
    } else if (cb_kv_del(txn, fb->ix, k.b, k.len) && counted) {
        count_open(fb, txn, agency, type, -1);
    }
}

static void index_person(const cb_flagbook *fb, cb_txn *txn, uint64_t person_hash, uint64_t id, bool add)
{
    cb_key k;
    if (!person_hash)
        return;
    cb_key_make(&k, "QQ", person_hash, ~id);
    if (add)
        cb_kv_put(txn, fb->person, k.b, k.len, "", 0);
    else
        cb_kv_del(txn, fb->person, k.b, k.len);
}

static void index_closed(const cb_flagbook *fb, cb_txn *txn, uint64_t resolved_ms, uint64_t id, bool add)
{
    cb_key k;
    cb_key_make(&k, "QQ", resolved_ms, id);
    if (add)
        cb_kv_put(txn, fb->closed, k.b, k.len, "", 0);
    else
        cb_kv_del(txn, fb->closed, k.b, k.len);
}

static uint64_t timestamp_ms(const Google__Protobuf__Timestamp *t)
{
    return t && t->seconds > 0 ? (uint64_t)t->seconds * 1000 + (uint64_t)t->nanos / 1000000 : 0;
}

/* When a resolved stored flag counts as resolved from. */
static uint64_t resolved_ms(const cb_flag *f)
{
    uint64_t at = timestamp_ms(f->resolved_at);
    return at ? at : timestamp_ms(f->raised_at);
}

void cb_flagbook_add(const cb_flagbook *fb, cb_txn *txn, const cb_flag *f, uint64_t person_hash)
{
    bool open = f->status == CAREBRIDGE__V1__FLAG__STATUS__OPEN;
    put_flag(fb, txn, f);
    for (size_t i = 0; i < f->n_agencies; i++)
        index_one(fb, txn, f->agencies[i], open ? IX_OPEN : IX_RESOLVED, f->id, true, f->type);
    if (open)
        index_person(fb, txn, person_hash, f->id, true);
    else
        index_closed(fb, txn, resolved_ms(f), f->id, true);
}

void cb_flagbook_update(const cb_flagbook *fb, cb_txn *txn, const cb_flag *f, bool was_open, uint64_t person_hash)
{
    put_flag(fb, txn, f);
    if (!was_open || f->status == CAREBRIDGE__V1__FLAG__STATUS__OPEN)
        return;
    cb_flagbook_index_flag(fb, txn, f->id, f->type, (const char *const *)f->agencies, f->n_agencies, false, true,
                           resolved_ms(f));
    index_person(fb, txn, person_hash, f->id, false);
}

void cb_flagbook_index_flag(const cb_flagbook *fb, cb_txn *txn, uint64_t id, cb_flag_type type,
                            const char *const *agencies, size_t n_agencies, bool now_open, bool was_open,
                            uint64_t resolved_at)
{
    for (size_t i = 0; i < n_agencies; i++) {
        if (was_open && !now_open)
            index_one(fb, txn, agencies[i], IX_OPEN, id, false, type);
        index_one(fb, txn, agencies[i], now_open ? IX_OPEN : IX_RESOLVED, id, true, type);
    }
    if (!now_open)
        index_closed(fb, txn, resolved_at, id, true);
}

/* An event's ids share their first six bytes (seq < 2^48): one prefix scan. */
#define EVENT_PREFIX 6

static bool last_key(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    (void)val, (void)len;
    cb_key_parse(key, key_len, "Q", (uint64_t *)arg);
    return true;
}

static unsigned numbered(const cb_flagbook *fb, cb_txn *txn, uint64_t seq)
{
    cb_key k;
    const uint8_t *val;
    size_t len;
    cb_key_make(&k, "Q", seq);
    if (!cb_kv_get(txn, fb->numbered, k.b, k.len, &val, &len) || len != 4)
        return 0;
    return (unsigned)val[0] << 24 | (unsigned)val[1] << 16 | (unsigned)val[2] << 8 | val[3];
}

unsigned cb_flagbook_next_number(const cb_flagbook *fb, cb_txn *txn, uint64_t seq)
{
    cb_key from;
    uint64_t last = 0;
    cb_key_make(&from, "Q", cb_flag_id(seq, CB_FLAG_STORED));
    cb_kv_scan(txn, fb->flags, from.b, EVENT_PREFIX, from.b, from.len, last_key, &last);
    unsigned next = last ? (unsigned)(last & (CB_FLAG_PER_EVENT - 1)) + 1 : CB_FLAG_STORED;
    /* A number retention has freed is never given again: it was a flag. */
    unsigned freed = numbered(fb, txn, seq);
    if (freed > next)
        next = freed;
    return next < CB_FLAG_PER_EVENT ? next : CB_FLAG_PER_EVENT - 1;
}

void cb_flag_free(cb_flag **f_p)
{
    if (*f_p)
        carebridge__v1__flag__free_unpacked(*f_p, NULL);
    *f_p = NULL;
}

cb_flag *cb_flagbook_handoff_flag(const cb_handoff_record *rec, uint64_t seq, size_t i)
{
    if (i >= rec->n_recipients || rec->recipients[i]->flag_removed)
        return NULL;
    const Carebridge__V1__HandoffRecord__Recipient *r = rec->recipients[i];
    cb_flag *f = malloc(sizeof *f);
    if (!f)
        return NULL;
    carebridge__v1__flag__init(f);
    f->id = cb_flag_id(seq, (unsigned)i);
    f->type = CAREBRIDGE__V1__FLAG__TYPE__INTER_AGENCY_HANDOFF;
    f->severity = rec->urgent ? CAREBRIDGE__V1__FLAG__SEVERITY__MEDIUM : CAREBRIDGE__V1__FLAG__SEVERITY__LOW;
    bool open = r->stage != CAREBRIDGE__V1__JOURNEY_STEP__STAGE__ACCEPTED;
    f->status = open ? CAREBRIDGE__V1__FLAG__STATUS__OPEN : CAREBRIDGE__V1__FLAG__STATUS__RESOLVED;
    f->event_ids = calloc(1, sizeof *f->event_ids);
    f->event_seqs = calloc(1, sizeof *f->event_seqs);
    f->agencies = calloc(2, sizeof *f->agencies);
    if (f->event_ids && f->event_seqs) {
        f->event_ids[f->n_event_ids++] = cb_explain_dup(rec->event_id);
        f->event_seqs[f->n_event_seqs++] = seq;
    }
    if (f->agencies) {
        f->agencies[f->n_agencies++] = cb_explain_dup(r->agency);
        f->agencies[f->n_agencies++] = cb_explain_dup(rec->from_agency);
    }
    f->person = cb_explain_dup(rec->person);
    f->raised_at = cb_explain_timestamp(rec->stored_ms);
    f->from_agency = cb_explain_dup(rec->from_agency);
    f->to_agencies = calloc(1, sizeof *f->to_agencies);
    if (f->to_agencies)
        f->to_agencies[f->n_to_agencies++] = cb_explain_dup(r->agency);
    if (!open) {
        f->resolved_at = cb_explain_timestamp(r->resolved_ms);
        f->resolved_by = cb_explain_dup(r->accepted_by);
    }
    f->explanation = cb_explain_handoff(rec, r);
    f->resolution = open ? cb_explain("%s accepts it", r->agency) : NULL;
    if (!f->resolution)
        f->resolution = (char *)protobuf_c_empty_string;
    if (!f->explanation)
        f->explanation = (char *)protobuf_c_empty_string;
    return f;
}

typedef struct {
    cb_flag_fn fn;
    void *arg;
    bool stopped;
} flag_visit;

static bool visit_stored(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    (void)key, (void)key_len;
    flag_visit *v = arg;
    cb_flag *f = carebridge__v1__flag__unpack(NULL, len, val);
    if (!f)
        return true; /* not ours to judge: skip what does not unpack */
    bool go_on = v->fn(v->arg, &f);
    cb_flag_free(&f);
    v->stopped = !go_on;
    return go_on;
}

void cb_flagbook_event_flags(const cb_flagbook *fb, cb_txn *txn, uint64_t seq, const cb_handoff_record *rec,
                             cb_flag_fn fn, void *arg)
{
    for (size_t i = 0; rec && i < rec->n_recipients; i++) {
        cb_flag *f = cb_flagbook_handoff_flag(rec, seq, i);
        bool go_on = !f || fn(arg, &f);
        cb_flag_free(&f);
        if (!go_on)
            return;
    }
    cb_key from;
    cb_key_make(&from, "Q", cb_flag_id(seq, CB_FLAG_STORED));
    flag_visit v = {fn, arg, false};
    cb_kv_scan(txn, fb->flags, from.b, EVENT_PREFIX, from.b, from.len, visit_stored, &v);
}

cb_flag *cb_flagbook_get(const cb_flagbook *fb, cb_txn *txn, uint64_t id)
{
    unsigned number = (unsigned)(id & (CB_FLAG_PER_EVENT - 1));
    if (number < CB_FLAG_STORED) {
        cb_handoff_record *rec = cb_flagbook_record(fb, txn, cb_flag_seq(id));
        cb_flag *f = rec ? cb_flagbook_handoff_flag(rec, cb_flag_seq(id), number) : NULL;
        cb_flagbook_free_record(&rec);
        return f;
    }
    cb_key k;
    const uint8_t *val;
    size_t len;
    cb_key_make(&k, "Q", id);
    return cb_kv_get(txn, fb->flags, k.b, k.len, &val, &len) ? carebridge__v1__flag__unpack(NULL, len, val) : NULL;
}

typedef struct {
    const cb_flagbook *fb;
    cb_txn *txn;
    flag_visit v;
    const char *format; /* the index key's shape, the complemented id last */
} by_index;

static bool visit_indexed(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    (void)val, (void)len;
    by_index *b = arg;
    const char *agency;
    uint8_t status;
    uint64_t hash, not_id;
    bool shaped = b->format[0] == 'S' ? cb_key_parse(key, key_len, "SBQ", &agency, &status, &not_id)
                                      : cb_key_parse(key, key_len, "QQ", &hash, &not_id);
    cb_flag *f = shaped ? cb_flagbook_get(b->fb, b->txn, ~not_id) : NULL;
    if (!f)
        return true;
    bool go_on = b->v.fn(b->v.arg, &f);
    cb_flag_free(&f);
    return go_on;
}

void cb_flagbook_person_flags(const cb_flagbook *fb, cb_txn *txn, uint64_t person_hash, cb_flag_fn fn, void *arg)
{
    cb_key prefix;
    cb_key_make(&prefix, "Q", person_hash);
    by_index b = {fb, txn, {fn, arg, false}, "QQ"};
    cb_kv_scan(txn, fb->person, prefix.b, prefix.len, NULL, 0, visit_indexed, &b);
}

void cb_flagbook_agency_flags(const cb_flagbook *fb, cb_txn *txn, const char *agency, bool open, uint64_t before,
                              cb_flag_fn fn, void *arg)
{
    cb_key prefix, from;
    unsigned status = open ? IX_OPEN : IX_RESOLVED;
    if (!cb_key_make(&prefix, "SB", agency, status) || !cb_key_make(&from, "SBQ", agency, status, ~(before - 1)))
        return;
    by_index b = {fb, txn, {fn, arg, false}, "SBQ"};
    cb_kv_scan(txn, fb->ix, prefix.b, prefix.len, before ? from.b : NULL, before ? from.len : 0, visit_indexed, &b);
}

/* ---- retention */

static void unindex(const cb_flagbook *fb, cb_txn *txn, uint64_t id, unsigned type, const char *const *agencies,
                    size_t n)
{
    for (size_t i = 0; i < n; i++) {
        index_one(fb, txn, agencies[i], IX_OPEN, id, false, type);
        index_one(fb, txn, agencies[i], IX_RESOLVED, id, false, type);
    }
}

static bool first_key(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    (void)val, (void)len;
    cb_key_parse(key, key_len, "Q", (uint64_t *)arg);
    return false;
}

/* A stored flag and its index entries. */
static void remove_flag(const cb_flagbook *fb, cb_txn *txn, uint64_t id, uint64_t person_hash)
{
    cb_flag *f = cb_flagbook_get(fb, txn, id);
    if (f) {
        unindex(fb, txn, id, f->type, (const char *const *)f->agencies, f->n_agencies);
        if (f->status == CAREBRIDGE__V1__FLAG__STATUS__OPEN)
            index_person(fb, txn, person_hash, id, false);
        else
            index_closed(fb, txn, resolved_ms(f), id, false);
        cb_flag_free(&f);
    }
    cb_key k;
    cb_key_make(&k, "Q", id);
    cb_kv_del(txn, fb->flags, k.b, k.len);
}

void cb_flagbook_forget_event(const cb_flagbook *fb, cb_txn *txn, uint64_t seq, const cb_handoff_record *rec,
                              uint64_t person_hash, const char *answered_id)
{
    cb_key k;
    for (size_t i = 0; rec && i < rec->n_recipients; i++) {
        const Carebridge__V1__HandoffRecord__Recipient *r = rec->recipients[i];
        const char *agencies[] = {r->agency, rec->from_agency};
        uint64_t id = cb_flag_id(seq, (unsigned)i);
        unindex(fb, txn, id, CAREBRIDGE__V1__FLAG__TYPE__INTER_AGENCY_HANDOFF, agencies, 2);
        if (r->resolved_ms)
            index_closed(fb, txn, (uint64_t)r->resolved_ms, id, false);
    }
    cb_key_make(&k, "Q", seq);
    cb_kv_del(txn, fb->handoffs, k.b, k.len);
    cb_kv_del(txn, fb->people, k.b, k.len);

    cb_kv_del(txn, fb->numbered, k.b, k.len);
    /* The first of the event's stored flags, again and again: nothing to
     * allocate, so nothing is left behind for want of memory. */
    cb_key from;
    cb_key_make(&from, "Q", cb_flag_id(seq, CB_FLAG_STORED));
    for (uint64_t id; cb_txn_failed(txn) == CB_OK;) {
        id = 0;
        cb_kv_scan(txn, fb->flags, from.b, EVENT_PREFIX, from.b, from.len, first_key, &id);
        if (!id)
            break;
        remove_flag(fb, txn, id, person_hash);
    }

    if (answered_id && cb_key_make(&k, "SQ", answered_id, seq))
        cb_kv_del(txn, fb->early, k.b, k.len);
}

/* A stored flag about to be removed keeps its number from being given
 * again to the event's next flag. */
static void note_numbered(const cb_flagbook *fb, cb_txn *txn, uint64_t id)
{
    uint64_t seq = cb_flag_seq(id);
    unsigned next = (unsigned)(id & (CB_FLAG_PER_EVENT - 1)) + 1;
    if (next <= numbered(fb, txn, seq))
        return;
    cb_key k;
    uint8_t v[4] = {(uint8_t)(next >> 24), (uint8_t)(next >> 16), (uint8_t)(next >> 8), (uint8_t)next};
    cb_key_make(&k, "Q", seq);
    cb_kv_put(txn, fb->numbered, k.b, k.len, v, sizeof v);
}

/* A handoff flag lives in its event's record: retention marks it removed
 * there, so it is built no more, and takes its index entries away. */
static void remove_handoff_flag(const cb_flagbook *fb, cb_txn *txn, uint64_t id)
{
    uint64_t seq = cb_flag_seq(id);
    size_t i = (size_t)(id & (CB_FLAG_PER_EVENT - 1));
    cb_handoff_record *rec = cb_flagbook_record(fb, txn, seq);
    if (rec && i < rec->n_recipients) {
        Carebridge__V1__HandoffRecord__Recipient *r = rec->recipients[i];
        const char *agencies[] = {r->agency, rec->from_agency};
        unindex(fb, txn, id, CAREBRIDGE__V1__FLAG__TYPE__INTER_AGENCY_HANDOFF, agencies, 2);
        r->flag_removed = true;
        cb_flagbook_put_record(fb, txn, seq, rec, false, 0, 0);
    }
    cb_flagbook_free_record(&rec);
}

size_t cb_flagbook_expire_closed(const cb_flagbook *fb, cb_txn *txn, uint64_t before_ms, size_t budget, bool *more)
{
    size_t removed = 0;
    *more = false;
    while (removed < budget && cb_txn_failed(txn) == CB_OK) {
        uint64_t ms[256], ids[256];
        size_t cap = budget - removed < 256 ? budget - removed : 256;
        size_t n = scan_until(txn, fb->closed, before_ms - 1, ms, ids, cap);
        for (size_t i = 0; i < n; i++) {
            if ((ids[i] & (CB_FLAG_PER_EVENT - 1)) < CB_FLAG_STORED) {
                remove_handoff_flag(fb, txn, ids[i]);
                continue;
            }
            note_numbered(fb, txn, ids[i]);
            remove_flag(fb, txn, ids[i], 0);
        }
        for (size_t i = 0; i < n; i++)
            index_closed(fb, txn, ms[i], ids[i], false);
        removed += n;
        if (n < cap)
            return removed;
    }
    /* The budget is spent: whether more have expired is the next run's to find. */
    *more = removed == budget;
    return removed;
}

/* ---- a store from before the closed and open_count keyspaces */

/* What to do for each flag an older store indexes with a status. */
typedef void (*indexed_fn)(const cb_flagbook *fb, cb_txn *txn, const char *agency, const cb_flag *f);

typedef struct {
    const cb_flagbook *fb;
    cb_txn *txn;
    unsigned status;
    indexed_fn fn;
} prepare_arg;

static bool each_indexed(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    (void)val, (void)len;
    prepare_arg *p = arg;
    const char *agency;
    uint8_t status;
    uint64_t not_id;
    if (!cb_key_parse(key, key_len, "SBQ", &agency, &status, &not_id) || status != p->status)
        return true;
    cb_flag *f = cb_flagbook_get(p->fb, p->txn, ~not_id);
    if (f)
        p->fn(p->fb, p->txn, agency, f);
    cb_flag_free(&f);
    return true;
}

static void index_resolved(const cb_flagbook *fb, cb_txn *txn, const char *agency, const cb_flag *f)
{
    (void)agency;
    if (f->status == CAREBRIDGE__V1__FLAG__STATUS__RESOLVED)
        index_closed(fb, txn, resolved_ms(f), f->id, true);
}

static void count_indexed(const cb_flagbook *fb, cb_txn *txn, const char *agency, const cb_flag *f)
{
    count_open(fb, txn, agency, f->type, +1);
}

/* Once, behind a mark in meta: fn for each flag indexed with status. */
static bool once(const cb_flagbook *fb, cb_txn *txn, const char *mark, unsigned status, indexed_fn fn)
{
    char done;
    size_t len;
    if (cb_store_meta_get(txn, mark, &done, 1, &len))
        return false;
    prepare_arg p = {fb, txn, status, fn};
    cb_kv_scan(txn, fb->ix, NULL, 0, NULL, 0, each_indexed, &p);
    cb_store_meta_put(txn, mark, "1", 1);
    return true;
}

bool cb_flagbook_prepare(const cb_flagbook *fb, cb_txn *txn)
{
    bool closed = once(fb, txn, "flags.closed_indexed", IX_RESOLVED, index_resolved);
    bool counted = once(fb, txn, "flags.open_counted", IX_OPEN, count_indexed);
    return closed || counted;
}

typedef struct {
    cb_open_count_fn fn;
    void *arg;
} count_visit;

static bool visit_count(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    count_visit *v = arg;
    const char *agency;
    uint8_t type;
    if (len == 8 && cb_key_parse(key, key_len, "SB", &agency, &type))
        v->fn(v->arg, agency, type, cb_be64_get(val));
    return true;
}

void cb_flagbook_open_counts(const cb_flagbook *fb, cb_txn *txn, cb_open_count_fn fn, void *arg)
{
    count_visit v = {fn, arg};
    cb_kv_scan(txn, fb->open_count, NULL, 0, NULL, 0, visit_count, &v);
}
