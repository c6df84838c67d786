#include "outbox.h"

#include <endian.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "dirlock.h"
#include "store.h"

#define LOCK_NAME     "outbox.lock"
#define TO_BROKER     "broker" /* the one queue: what the broker has not acknowledged */
#define MERGE_PER_ADD 8        /* index merge work each addition pays, as the broker's commits do */
#define WHY_MAX       300

/* The outbox's keyspaces beside the store's own. */
enum { KS_TAKEN, KS_REFUSED, KS_SOURCES, KS_KEPT };
static const char *const keyspaces[] = {"taken", "refused", "sources", "kept"};

struct cb_outbox {
    cb_dirlock *lock;
    cb_store *store;
    uint64_t last_seq;
    bool in_batch;
};

struct cb_outbox_batch {
    cb_outbox *o;
    cb_txn *txn;
    uint64_t seq;
};

cb_outbox *cb_outbox_open(const char *dir, uint64_t map_bytes, cb_error *err)
{
    cb_outbox *o = calloc(1, sizeof *o);
    if (!o) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    pid_t holder = 0;
    cb_dirlock_result r = cb_dirlock_take(dir, LOCK_NAME, &o->lock, &holder);
    if (r != CB_DIRLOCK_TAKEN) {
        if (r == CB_DIRLOCK_IN_USE)
            cb_fail(err, CB_STORE_UNAVAILABLE, "the outbox %s is in use by another process (pid %ld)", dir,
                    (long)holder);
        else
            cb_fail(err, CB_STORE_UNAVAILABLE, "the outbox %s cannot be locked", dir);
        free(o);
        return NULL;
    }
    /* All of the map may be used: an outbox takes in, and empties by acks. */
    if (!(o->store = cb_store_open_with(dir, map_bytes, 1.0, keyspaces, 4, err))) {
        cb_outbox_close(&o);
        return NULL;
    }
    cb_txn *txn = cb_txn_begin(o->store, false, err);
    if (!txn) {
        cb_outbox_close(&o);
        return NULL;
    }
    o->last_seq = cb_store_last_seq(txn);
    cb_txn_abort(&txn);
    return o;
}

void cb_outbox_close(cb_outbox **o_p)
{
    cb_outbox *o = *o_p;
    if (o) {
        cb_store_destroy(&o->store);
        cb_dirlock_release(&o->lock); /* last: the store is closed */
        free(o);
    }
    *o_p = NULL;
}

cb_outbox_batch *cb_outbox_begin(cb_outbox *o, cb_error *err)
{
    if (o->in_batch) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "a batch is already open");
        return NULL;
    }
    cb_outbox_batch *b = calloc(1, sizeof *b);
    if (!b || !(b->txn = cb_txn_begin(o->store, true, err))) {
        if (!b)
            cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        free(b);
        return NULL;
    }
    b->o = o;
    b->seq = o->last_seq;
    o->in_batch = true;
    return b;
}

static void put_source(cb_txn *txn, const char *source, uint64_t seq)
{
    uint64_t be = htobe64(seq);
    if (source)
        cb_kv_put(txn, KS_SOURCES, source, strlen(source), &be, sizeof be);
}

cb_outbox_added cb_outbox_add(cb_outbox_batch *b, const char *event_id, const char *source, const uint8_t *bytes,
                              size_t len, uint64_t *seq)
{
    uint8_t stored[CB_DIGEST_BYTES], mine[CB_DIGEST_BYTES];
    if (cb_txn_failed(b->txn))
        return CB_OUTBOX_FAILED;
    if (cb_store_find_id(b->txn, event_id, seq, stored)) {
        crypto_generichash(mine, sizeof mine, bytes, len, NULL, 0);
        if (memcmp(mine, stored, sizeof mine))
            return CB_OUTBOX_CONFLICT;
        put_source(b->txn, source, *seq);
        return cb_txn_failed(b->txn) ? CB_OUTBOX_FAILED : CB_OUTBOX_AGAIN;
    }
    if (cb_txn_failed(b->txn))
        return CB_OUTBOX_FAILED;
    const char *to[] = {TO_BROKER};
    cb_stored_event ev = {.seq = ++b->seq,
                          .bytes = bytes,
                          .len = len,
                          .event_id = event_id,
                          .from_agency = "",
                          .recipients = to,
                          .n_recipients = 1};
    cb_store_put_event(b->txn, &ev, cb_wall_ms());
    put_source(b->txn, source, b->seq);
    *seq = b->seq;
    return cb_txn_failed(b->txn) ? CB_OUTBOX_FAILED : CB_OUTBOX_NEW;
}

static void end_batch(cb_outbox_batch **b_p)
{
    (*b_p)->o->in_batch = false;
    free(*b_p);
    *b_p = NULL;
}

cb_code cb_outbox_commit(cb_outbox_batch **b_p, cb_error *err)
{
    cb_outbox_batch *b = *b_p;
    uint64_t added = b->seq - b->o->last_seq;
    if (added)
        cb_store_index_pay(b->txn, MERGE_PER_ADD);
    cb_code code = cb_txn_commit(&b->txn, err);
    if (code == CB_OK)
        b->o->last_seq = b->seq;
    else
        cb_store_reopen(b->o->store, NULL); /* nothing of the failed txn stays in memory */
    end_batch(b_p);
    return code;
}

bool cb_outbox_batch_failed(const cb_outbox_batch *b)
{
    return cb_txn_failed(b->txn) != CB_OK;
}

void cb_outbox_abort(cb_outbox_batch **b_p)
{
    if (!*b_p)
        return;
    cb_txn_abort(&(*b_p)->txn);
    end_batch(b_p);
}

static bool settlement_empty(const cb_outbox_settlement *s)
{
    return !s->n_sent && !s->n_refused && !s->n_taken;
}

static void settle_in(cb_txn *txn, const cb_outbox_settlement *s)
{
    for (size_t i = 0; i < s->n_sent; i++)
        cb_store_ack(txn, TO_BROKER, s->sent[i]);
    for (size_t i = 0; i < s->n_refused; i++) {
        uint64_t key = htobe64(s->refused[i].seq);
        if (cb_store_park(txn, TO_BROKER, s->refused[i].seq))
            cb_kv_put(txn, KS_REFUSED, &key, sizeof key, s->refused[i].why, strnlen(s->refused[i].why, WHY_MAX));
    }
    uint64_t now = htobe64((uint64_t)cb_wall_ms());
    for (size_t i = 0; i < s->n_taken; i++)
        cb_kv_put(txn, KS_TAKEN, s->taken[i], strlen(s->taken[i]), &now, sizeof now);
}

cb_code cb_outbox_settle(cb_outbox *o, const cb_outbox_settlement *s, cb_error *err)
{
    cb_error mine;
    if (!err)
        err = &mine;
    if (settlement_empty(s))
        return CB_OK;
    cb_txn *txn = cb_txn_begin(o->store, true, err);
    if (!txn)
        return err->code;
    settle_in(txn, s);
    cb_code code = cb_txn_commit(&txn, err);
    if (code != CB_OK)
        cb_store_reopen(o->store, NULL);
    return code;
}

void cb_outbox_batch_settle(cb_outbox_batch *b, const cb_outbox_settlement *s)
{
    if (!settlement_empty(s))
        settle_in(b->txn, s); /* a failure is the batch's, at commit */
}

bool cb_outbox_find(cb_outbox *o, const char *event_id, uint64_t *seq)
{
    cb_txn *txn = cb_txn_begin(o->store, false, NULL);
    if (!txn)
        return false;
    uint8_t digest[CB_DIGEST_BYTES];
    bool found = cb_store_find_id(txn, event_id, seq, digest);
    cb_txn_abort(&txn);
    return found;
}

bool cb_outbox_source(cb_outbox *o, const char *source, uint64_t *seq)
{
    cb_txn *txn = cb_txn_begin(o->store, false, NULL);
    if (!txn)
        return false;
    const uint8_t *val;
    size_t len;
    bool found = cb_kv_get(txn, KS_SOURCES, source, strlen(source), &val, &len) && len == sizeof *seq;
    if (found) {
        memcpy(seq, val, sizeof *seq);
        *seq = be64toh(*seq);
    }
    cb_txn_abort(&txn);
    return found;
}

uint64_t cb_outbox_last_seq(const cb_outbox *o)
{
    return o->last_seq;
}

bool cb_outbox_taken(cb_outbox *o, const char *event_id)
{
    cb_txn *txn = cb_txn_begin(o->store, false, NULL);
    if (!txn)
        return false;
    const uint8_t *val;
    size_t len;
    bool taken = cb_kv_get(txn, KS_TAKEN, event_id, strlen(event_id), &val, &len);
    cb_txn_abort(&txn);
    return taken;
}

bool cb_outbox_refused(cb_outbox *o, uint64_t seq, char *why, size_t cap)
{
    cb_txn *txn = cb_txn_begin(o->store, false, NULL);
    if (!txn)
        return false;
    uint64_t key = htobe64(seq);
    const uint8_t *val;
    size_t len;
    bool refused = cb_kv_get(txn, KS_REFUSED, &key, sizeof key, &val, &len);
    if (refused && cap)
        snprintf(why, cap, "%.*s", (int)len, (const char *)val);
    cb_txn_abort(&txn);
    return refused;
}

typedef struct {
    cb_txn *txn;
    cb_outbox_fn fn;
    void *arg;
} walk;

static bool visit(void *arg, const cb_queue_entry *e)
{
    walk *w = arg;
    const uint8_t *bytes;
    size_t len;
    if (!cb_store_get_event(w->txn, e->seq, &bytes, &len))
        return !cb_txn_failed(w->txn); /* queued but not stored cannot happen: skip, never stop the rest */
    return w->fn(w->arg, e->seq, bytes, len);
}

cb_code cb_outbox_waiting(cb_outbox *o, uint64_t after, cb_outbox_fn fn, void *arg, cb_error *err)
{
    cb_error mine;
    if (!err)
        err = &mine;
    cb_txn *txn = cb_txn_begin(o->store, false, err);
    if (!txn)
        return err->code;
    walk w = {txn, fn, arg};
    cb_store_queue_scan(txn, TO_BROKER, after, visit, &w);
    cb_code code = cb_txn_failed(txn);
    cb_txn_abort(&txn);
    if (code)
        cb_fail(err, code, "read the outbox");
    return code;
}

/* The broker queue's counts (all 0 when they cannot be read). */
static cb_queue_stats queue_stats(cb_outbox *o)
{
    cb_queue_stats st = {0};
    cb_txn *txn = cb_txn_begin(o->store, false, NULL);
    if (txn) {
        cb_store_queue_stats(txn, TO_BROKER, &st);
        cb_txn_abort(&txn);
    }
    return st;
}

uint64_t cb_outbox_count(cb_outbox *o)
{
    return queue_stats(o).queued;
}

cb_code cb_outbox_keep(cb_outbox *o, const char *key, const void *bytes, size_t len, cb_error *err)
{
    cb_error mine;
    if (!err)
        err = &mine;
    cb_txn *txn = cb_txn_begin(o->store, true, err);
    if (!txn)
        return err->code;
    cb_kv_put(txn, KS_KEPT, key, strlen(key), bytes, len);
    cb_code code = cb_txn_commit(&txn, err);
    if (code != CB_OK)
        cb_store_reopen(o->store, NULL);
    return code;
}

void cb_outbox_batch_keep(cb_outbox_batch *b, const char *key, const void *bytes, size_t len)
{
    cb_kv_put(b->txn, KS_KEPT, key, strlen(key), bytes, len); /* a failure is the batch's, at commit */
}

typedef struct {
    cb_outbox_doc_fn fn;
    void *arg;
} doc_walk;

static bool visit_doc(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    doc_walk *w = arg;
    return w->fn(w->arg, (const char *)key, key_len, val, len);
}

void cb_outbox_kept(cb_outbox *o, const char *prefix, cb_outbox_doc_fn fn, void *arg)
{
    cb_txn *txn = cb_txn_begin(o->store, false, NULL);
    if (!txn)
        return;
    doc_walk w = {fn, arg};
    cb_kv_scan(txn, KS_KEPT, prefix, strlen(prefix), NULL, 0, visit_doc, &w);
    cb_txn_abort(&txn);
}

uint64_t cb_outbox_refused_count(cb_outbox *o)
{
    return queue_stats(o).parked;
}
