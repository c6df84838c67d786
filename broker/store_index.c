/* The layered index: (hash, seq) entries that stay cheap to add as the store
 * grows to millions of events.
 *
 * LMDB copies every page a commit touches, so an index costs the number of
 * distinct pages a commit dirties. One B-tree of random keys (event ids,
 * people) puts each new entry on its own leaf once the tree has more leaves
 * than a batch has entries: about a page per entry, scattered over the file,
 * at ten million events. So an index is kept in layers, after log-structured
 * merge trees: new entries go to a small tail (a few dozen leaves, which a
 * batch dirties once between them); a full tail is sealed, as it stands, into
 * a run of level 0; and IX_FANIN runs of one level are merged, a step at a
 * time, into one run of the next, written in key order with MDB_APPEND
 * (full pages, each written once). An entry is rewritten once per level, a
 * handful of times in all, always in long sorted stretches.
 *
 * Every slot is its own LMDB database, opened once when the environment is,
 * and a merged run's sources are emptied with mdb_drop(0), so no database is
 * ever closed under a reader. The directory of slots lives in the meta
 * database: a read transaction sees the directory of its own snapshot, and a
 * merge that a crash interrupts is resumed from the last key it wrote.
 *
 * A lookup reads the tail and every run (a few dozen seeks at most, all in
 * the page cache); entries carry a hash of the key, not the key, so callers
 * check what they find against the event itself.
 *
 * Every publish looks its id up, and a new id is in no run: a seek into each
 * was most of the store thread's time at millions of events. The flag rules
 * look up the newest record of every event's person too, who is in one run
 * or none. So each run of the ids, persons and records indexes has a filter (a blocked Bloom filter, about 10 bits an
 * entry, 1% false positives): a 64-byte block chosen by the hash's top bits, so a run's blocks are in key order too and
 * are written, like the run, once and in order, a 16 KiB chunk at a time, in the "filters" database. A lookup reads one
 * block per run and seeks only into runs whose block says maybe; a chunk that is not there had no entries. */
#include "store_impl.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IX_VERSION  5
#define IX_LEVELS   32   /* far more than 40 slots can fill: six runs a level */
#define IX_TAIL_MAX 8192 /* entries before the tail is sealed: ~60 leaves, each dirtied once a batch */

static const char *const index_names[CB_INDEX_COUNT] = {"ids", "persons", "cases", "records"};

const char *cb_store_index_name(cb_index ix)
{
    return index_names[ix];
}

static MDB_dbi slot_dbi(const cb_txn *txn, cb_index ix, unsigned slot)
{
    return txn->store->dbi[DB_FIXED + ix * IX_SLOTS + slot];
}

/* What a slot holds is read from LMDB, never kept beside it: entries from
 * the database's own count, and where a merge stands from the last key its
 * run holds. So the directory changes only when slots change roles. */
static uint64_t slot_entries(cb_txn *txn, cb_index ix, unsigned slot)
{
    MDB_stat st;
    return cb_st_check(txn, mdb_stat(txn->txn, slot_dbi(txn, ix, slot), &st), "count index entries") ? st.ms_entries
                                                                                                     : 0;
}

static bool slot_last(cb_txn *txn, cb_index ix, unsigned slot, uint8_t last[IX_KEY])
{
    MDB_cursor *c;
    MDB_val k, data;
    if (!cb_st_check(txn, mdb_cursor_open(txn->txn, slot_dbi(txn, ix, slot), &c), "read index run"))
        return false;
    int rc = mdb_cursor_get(c, &k, &data, MDB_LAST);
    if (rc == 0 && k.mv_size == IX_KEY)
        memcpy(last, k.mv_data, IX_KEY);
    else if (rc == 0)
        rc = MDB_CORRUPTED;
    mdb_cursor_close(c);
    return rc == 0 || (rc != MDB_NOTFOUND && cb_st_check(txn, rc, "read index run"));
}

static void fresh_dir(ix_dir *d)
{
    memset(d, 0, sizeof *d);
    d->version = IX_VERSION;
    d->tail = 0;
    d->state[0] = SLOT_TAIL;
    for (int m = 0; m < IX_MERGES; m++)
        d->merges[m].out = IX_NONE;
}

/* A directory of version 4 had no max_seq: no entry of any of its runs (or
 * merges) is above the store's last seq now, so that bounds them all. */
_Static_assert(offsetof(ix_dir, max_seq) == 272, "version 4's directory is what precedes max_seq");
static bool upgrade_dir(cb_txn *txn, ix_dir *d, const void *stored)
{
    memcpy(d, stored, offsetof(ix_dir, max_seq));
    if (d->version != 4)
        return false;
    d->version = IX_VERSION;
    uint64_t last = cb_store_last_seq(txn);
    for (unsigned s = 0; s < IX_SLOTS; s++)
        d->max_seq[s] = last;
    return txn_ok(txn);
}

/* The directory as this txn sees it; NULL only after a failure. */
static ix_dir *dir_of(cb_txn *txn, cb_index ix)
{
    if (txn->dirs[ix] || !txn_ok(txn))
        return txn->dirs[ix];
    ix_dir *d = malloc(sizeof *d);
    if (!d) {
        cb_st_fail(txn, ENOMEM, "read index directory");
        return NULL;
    }
    char name[32];
    snprintf(name, sizeof name, "index.%s", index_names[ix]);
    MDB_val v;
    if (cb_st_meta_get(txn, name, &v)) {
        /* Copied before it is read: LMDB values have no alignment. */
        bool known = false;
        if (v.mv_size == sizeof *d) {
            memcpy(d, v.mv_data, sizeof *d);
            known = d->version == IX_VERSION;
        } else if (v.mv_size == offsetof(ix_dir, max_seq) && upgrade_dir(txn, d, v.mv_data)) {
            known = true;
            txn->dirs_dirty[ix] = txn->write; /* written back as the new version */
        }
        if (!known) {
            free(d);
            cb_st_fail(txn, MDB_CORRUPTED, "read index directory");
            return NULL;
        }
    } else if (!txn_ok(txn)) {
        free(d);
        return NULL;
    } else {
        fresh_dir(d);
    }
    txn->dirs[ix] = d;
    return d;
}

void cb_st_index_flush(cb_txn *txn)
{
    for (int ix = 0; ix < CB_INDEX_COUNT; ix++) {
        if (!txn->dirs_dirty[ix] || !txn_ok(txn))
            continue;
        char name[32];
        snprintf(name, sizeof name, "index.%s", index_names[ix]);
        cb_store_meta_put(txn, name, txn->dirs[ix], sizeof *txn->dirs[ix]);
        txn->dirs_dirty[ix] = false;
    }
}

void cb_st_index_forget(cb_txn *txn)
{
    for (int ix = 0; ix < CB_INDEX_COUNT; ix++) {
        free(txn->dirs[ix]);
        txn->dirs[ix] = NULL;
        txn->dirs_dirty[ix] = false;
    }
}

static void ix_key(uint8_t k[IX_KEY], uint64_t hash, uint64_t seq)
{
    cb_be64_put(k, hash);
    cb_be64_put(k + 8, seq);
}

/* ---- filters (the ids index only) */

#define FILTER_BITS_PER_ENTRY 10
#define FILTER_PROBES         7 /* nine bits each, of a second hash */
#define FILTER_KEY            6 /* index, slot, chunk (u32) */

/* Every publish looks up its id, and the flag rules its person's newest
 * record: most often in no run at all (a new id, someone new) or in one. A
 * journey's person is in some runs, not all. Cases, looked up by answers
 * only, are not worth the filters' writes. */
static bool filtered(cb_index ix)
{
    return ix != CB_INDEX_CASES;
}

/* The store thread's own lookups: it keeps a table of these tails. */
static bool writer_tabled(cb_index ix)
{
    return ix == CB_INDEX_IDS || ix == CB_INDEX_RECORDS;
}

static uint32_t filter_blocks_for(uint64_t entries)
{
    uint64_t b = (entries * FILTER_BITS_PER_ENTRY + FILTER_BLOCK_BYTES * 8 - 1) / (FILTER_BLOCK_BYTES * 8);
    return b ? (b < UINT32_MAX ? (uint32_t)b : UINT32_MAX) : 1;
}

/* Monotonic in the hash, so entries in key order fill blocks in order. */
static uint32_t filter_block(uint64_t hash, uint32_t blocks)
{
    return (uint32_t)(((hash >> 32) * blocks) >> 32);
}

/* The smallest hash whose block is `block`. */
static uint64_t filter_block_start(uint32_t block, uint32_t blocks)
{
    uint64_t hi = (((uint64_t)block << 32) + blocks - 1) / blocks;
    return hi << 32;
}

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static void block_set(uint8_t *block, uint64_t hash)
{
    uint64_t g = mix(hash);
    for (int i = 0; i < FILTER_PROBES; i++, g >>= 9)
        block[(g & 511) >> 3] |= (uint8_t)(1u << (g & 7));
}

static bool block_test(const uint8_t *block, uint64_t hash)
{
    uint64_t g = mix(hash);
    for (int i = 0; i < FILTER_PROBES; i++, g >>= 9)
        if (!(block[(g & 511) >> 3] & (1u << (g & 7))))
            return false;
    return true;
}

static MDB_val filter_key(uint8_t k[FILTER_KEY], cb_index ix, unsigned slot, uint32_t chunk)
{
    k[0] = (uint8_t)ix;
    k[1] = (uint8_t)slot;
    for (int i = 0; i < 4; i++)
        k[2 + i] = (uint8_t)(chunk >> (24 - 8 * i));
    return val(k, FILTER_KEY);
}

/* False when the run surely lacks the hash. */
static bool filter_maybe(cb_txn *txn, cb_index ix, const ix_dir *d, unsigned slot, uint64_t hash)
{
    uint32_t blocks = d->filter_blocks[slot];
    if (!blocks)
        return true;
    uint32_t block = filter_block(hash, blocks);
    uint8_t k[FILTER_KEY];
    MDB_val key = filter_key(k, ix, slot, block / FILTER_CHUNK_BLOCKS), v;
    int rc = mdb_get(txn->txn, txn->store->dbi[DB_FILTERS], &key, &v);
    if (rc == MDB_NOTFOUND)
        return false; /* a chunk with no entries is not written */
    if (rc != 0)
        return cb_st_check(txn, rc, "read index filter");
    size_t at = (size_t)(block % FILTER_CHUNK_BLOCKS) * FILTER_BLOCK_BYTES;
    if (v.mv_size < at + FILTER_BLOCK_BYTES)
        return cb_st_fail(txn, MDB_CORRUPTED, "read index filter");
    return block_test((const uint8_t *)v.mv_data + at, hash);
}

static void filter_flush(cb_txn *txn, filter_writer *w)
{
    if (!w->dirty || !txn_ok(txn))
        return;
    uint32_t first = w->chunk * FILTER_CHUNK_BLOCKS, n = w->blocks - first;
    if (n > FILTER_CHUNK_BLOCKS)
        n = FILTER_CHUNK_BLOCKS;
    uint8_t k[FILTER_KEY];
    MDB_val key = filter_key(k, (cb_index)w->ix, w->slot, w->chunk), data = val(w->buf, n * FILTER_BLOCK_BYTES);
    cb_st_check(txn, mdb_put(txn->txn, txn->store->dbi[DB_FILTERS], &key, &data, 0), "write index filter");
    w->dirty = false;
}

static void filter_begin(filter_writer *w, cb_index ix, unsigned slot, uint32_t blocks, uint64_t losses)
{
    w->active = true;
    w->ix = (uint8_t)ix;
    w->slot = (uint8_t)slot;
    w->blocks = blocks;
    w->chunk = UINT32_MAX;
    w->dirty = false;
    w->losses = losses;
}

/* Hashes come in key order: a new chunk means the last one is complete. */
static void filter_add(cb_txn *txn, filter_writer *w, uint64_t hash)
{
    uint32_t block = filter_block(hash, w->blocks);
    if (block / FILTER_CHUNK_BLOCKS != w->chunk) {
        filter_flush(txn, w);
        w->chunk = block / FILTER_CHUNK_BLOCKS;
        memset(w->buf, 0, sizeof w->buf);
    }
    block_set(w->buf + (size_t)(block % FILTER_CHUNK_BLOCKS) * FILTER_BLOCK_BYTES, hash);
    w->dirty = true;
}

/* Add the slot's entries from `from` on, in order. */
static void filter_scan(cb_txn *txn, filter_writer *w, MDB_dbi dbi, uint64_t from)
{
    MDB_cursor *c;
    if (!cb_st_check(txn, mdb_cursor_open(txn->txn, dbi, &c), "write index filter"))
        return;
    uint8_t start[IX_KEY];
    cb_be64_put(start, from);
    cb_be64_put(start + 8, 0);
    MDB_val k = val(start, sizeof start), data;
    int rc = mdb_cursor_get(c, &k, &data, MDB_SET_RANGE);
    for (; rc == 0 && txn_ok(txn); rc = mdb_cursor_get(c, &k, &data, MDB_NEXT))
        filter_add(txn, w, cb_be64_get(k.mv_data));
    if (txn_ok(txn))
        mdb_cursor_close(c);
    if (rc != 0 && rc != MDB_NOTFOUND)
        cb_st_check(txn, rc, "write index filter");
}

/* The writer for merge m, its chunk in progress rebuilt from the run written
 * so far when the one in memory cannot be trusted. */
static filter_writer *merge_filter(cb_txn *txn, cb_index ix, ix_dir *d, const ix_merge *m)
{
    filter_writer *w = &txn->store->merge_filters[ix][m - d->merges];
    uint32_t blocks = d->filter_blocks[m->out];
    if (w->active && w->slot == m->out && w->blocks == blocks && w->losses == txn->store->write_losses)
        return w;
    filter_begin(w, ix, m->out, blocks, txn->store->write_losses);
    uint8_t last[IX_KEY];
    if (slot_last(txn, ix, m->out, last)) {
        uint32_t block = filter_block(cb_be64_get(last), blocks);
        filter_scan(txn, w, slot_dbi(txn, ix, m->out),
                    filter_block_start(block / FILTER_CHUNK_BLOCKS * FILTER_CHUNK_BLOCKS, blocks));
    }
    return w;
}

/* A run is gone: its filter too. */
static void filter_drop(cb_txn *txn, cb_index ix, ix_dir *d, unsigned slot)
{
    if (!d->filter_blocks[slot])
        return;
    d->filter_blocks[slot] = 0;
    MDB_cursor *c;
    if (!cb_st_check(txn, mdb_cursor_open(txn->txn, txn->store->dbi[DB_FILTERS], &c), "drop index filter"))
        return;
    uint8_t k[FILTER_KEY];
    MDB_val key = filter_key(k, ix, slot, 0), data;
    int rc = mdb_cursor_get(c, &key, &data, MDB_SET_RANGE);
    while (rc == 0 && key.mv_size == FILTER_KEY && ((const uint8_t *)key.mv_data)[0] == ix &&
           ((const uint8_t *)key.mv_data)[1] == slot) {
        if ((rc = mdb_cursor_del(c, 0)) != 0)
            break;
        rc = mdb_cursor_get(c, &key, &data, MDB_GET_CURRENT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND && rc != EINVAL)
        cb_st_check(txn, rc, "drop index filter");
    if (txn_ok(txn))
        mdb_cursor_close(c);
}

/* ---- the tail
 *
 * The tail is keyed (seq, hash): every entry is appended, so a commit dirties
 * one leaf of it however random its keys, where a tail in hash order took a
 * leaf per entry. A lookup looks in a table of it instead of reading it all:
 * the store thread keeps one of the ids tail, for the lookup every publish
 * makes; readers keep one of each tail, for journeys. Sealing sorts it into a
 * run. */

static void tail_key(uint8_t k[IX_KEY], uint64_t seq, uint64_t hash)
{
    cb_be64_put(k, seq);
    cb_be64_put(k + 8, hash);
}

static size_t table_at(uint64_t hash)
{
    return (size_t)(mix(hash) & (TAIL_TABLE_SLOTS - 1));
}

static void table_put(tail_table *t, uint64_t hash, uint64_t seq)
{
    if (t->n >= TAIL_TABLE_SLOTS / 2) {
        t->valid = false; /* a tail that could not be sealed: lookups read it instead */
        return;
    }
    size_t i = table_at(hash);
    while (t->seq[i])
        i = (i + 1) & (TAIL_TABLE_SLOTS - 1);
    t->hash[i] = hash;
    t->seq[i] = seq;
    t->n++;
}

static void table_clear(tail_table *t, unsigned slot, uint64_t losses)
{
    memset(t->seq, 0, sizeof t->seq);
    t->n = 0;
    t->slot = (uint8_t)slot;
    t->losses = losses;
    t->valid = true;
}

/* The store thread's table of the ids tail, rebuilt from the tail when it is
 * not for this slot or a write txn was lost since (a lost add left an entry
 * that is not there: harmless, as every match is checked, but not kept). */
static tail_table *writer_table(cb_txn *txn, cb_index ix, const ix_dir *d)
{
    if (!txn->write || !writer_tabled(ix))
        return NULL;
    tail_table *t = &txn->store->writer_tails[ix];
    if (t->built && t->slot == d->tail && t->losses == txn->store->write_losses)
        return t->valid ? t : NULL;
    table_clear(t, d->tail, txn->store->write_losses);
    t->built = true;
    MDB_cursor *c;
    if (!cb_st_check(txn, mdb_cursor_open(txn->txn, slot_dbi(txn, ix, d->tail), &c), "read index tail"))
        return NULL;
    MDB_val k, data;
    int rc = mdb_cursor_get(c, &k, &data, MDB_FIRST);
    for (; rc == 0 && k.mv_size == IX_KEY; rc = mdb_cursor_get(c, &k, &data, MDB_NEXT))
        table_put(t, cb_be64_get((const uint8_t *)k.mv_data + 8), cb_be64_get(k.mv_data));
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND) {
        t->built = false;
        cb_st_check(txn, rc == 0 ? MDB_CORRUPTED : rc, "read index tail");
        return NULL;
    }
    return t->valid ? t : NULL;
}

void cb_store_index_add(cb_txn *txn, cb_index ix, uint64_t hash, uint64_t seq)
{
    ix_dir *d = dir_of(txn, ix);
    if (!d)
        return;
    tail_table *t = writer_table(txn, ix, d);
    uint8_t k[IX_KEY];
    tail_key(k, seq, hash);
    MDB_val key = val(k, sizeof k), data = val("", 0);
    if (cb_st_check(txn, mdb_put(txn->txn, slot_dbi(txn, ix, d->tail), &key, &data, 0), "put index entry")) {
        txn->index_added[ix]++;
        if (t)
            table_put(t, hash, seq);
    }
}

static bool scan_tail(cb_txn *txn, MDB_dbi dbi, uint64_t hash, cb_seq_fn fn, void *arg)
{
    MDB_cursor *c;
    if (!cb_st_check(txn, mdb_cursor_open(txn->txn, dbi, &c), "scan index tail"))
        return false;
    MDB_val k, data;
    bool go_on = true;
    int rc = mdb_cursor_get(c, &k, &data, MDB_FIRST);
    for (; rc == 0 && go_on; rc = mdb_cursor_get(c, &k, &data, MDB_NEXT))
        if (k.mv_size == IX_KEY && cb_be64_get((const uint8_t *)k.mv_data + 8) == hash)
            go_on = fn(arg, cb_be64_get(k.mv_data));
    mdb_cursor_close(c);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return cb_st_check(txn, rc, "scan index tail");
    return go_on;
}

/* The readers' table of tail ix, brought up to this txn's snapshot by
 * reading what was appended since it was last read (the tail only grows
 * between seals), and returned locked, with *upto the snapshot's last seq in
 * it: a thread with a newer snapshot may have read further, and those
 * entries are not this txn's. A table of another tail (sealed and begun
 * again since: its first entry differs) is rebuilt. NULL, unlocked, when
 * the tail is too big for a table: read the tail instead. */
static tail_table *reader_table(cb_txn *txn, cb_index ix, const ix_dir *d, uint64_t *upto)
{
    cb_store *s = txn->store;
    tail_table *t = &s->reader_tails[ix];
    MDB_cursor *c;
    if (!cb_st_check(txn, mdb_cursor_open(txn->txn, slot_dbi(txn, ix, d->tail), &c), "read index tail"))
        return NULL;
    MDB_val k, data;
    int rc = mdb_cursor_get(c, &k, &data, MDB_LAST);
    *upto = rc == 0 && k.mv_size == IX_KEY ? cb_be64_get(k.mv_data) : 0;
    rc = mdb_cursor_get(c, &k, &data, MDB_FIRST);
    uint64_t first = rc == 0 && k.mv_size == IX_KEY ? cb_be64_get(k.mv_data) : 0;
    pthread_mutex_lock(&s->reader_tails_mu);
    if (!t->built || t->slot != d->tail || t->first_seq != first) {
        table_clear(t, d->tail, 0);
        t->built = true;
        t->first_seq = first;
    } else if (t->n) {
        k = val(t->last, IX_KEY);
        rc = mdb_cursor_get(c, &k, &data, MDB_SET_RANGE);
        if (rc == 0 && k.mv_size == IX_KEY && memcmp(k.mv_data, t->last, IX_KEY) == 0)
            rc = mdb_cursor_get(c, &k, &data, MDB_NEXT);
    }
    for (; rc == 0 && k.mv_size == IX_KEY && t->valid; rc = mdb_cursor_get(c, &k, &data, MDB_NEXT)) {
        table_put(t, cb_be64_get((const uint8_t *)k.mv_data + 8), cb_be64_get(k.mv_data));
        memcpy(t->last, k.mv_data, IX_KEY);
    }
    mdb_cursor_close(c);
    if (!t->valid) { /* kept so, built: its lookups read the tail until it is sealed */
        pthread_mutex_unlock(&s->reader_tails_mu);
        return NULL;
    }
    if (rc != MDB_NOTFOUND) {
        t->built = false;
        pthread_mutex_unlock(&s->reader_tails_mu);
        cb_st_check(txn, rc ? rc : MDB_CORRUPTED, "read index tail"); /* 0: a key that is no index entry */
        return NULL;
    }
    return t;
}

static bool find_in_tail(cb_txn *txn, cb_index ix, const ix_dir *d, uint64_t hash, cb_seq_fn fn, void *arg)
{
    uint64_t upto = UINT64_MAX;
    tail_table *t = txn->write ? writer_table(txn, ix, d) : reader_table(txn, ix, d, &upto);
    if (!t)
        return txn_ok(txn) && scan_tail(txn, slot_dbi(txn, ix, d->tail), hash, fn, arg);
    bool go_on = true;
    for (size_t i = table_at(hash); go_on && t->seq[i]; i = (i + 1) & (TAIL_TABLE_SLOTS - 1))
        if (t->hash[i] == hash && t->seq[i] <= upto)
            go_on = fn(arg, t->seq[i]);
    if (!txn->write)
        pthread_mutex_unlock(&txn->store->reader_tails_mu);
    return go_on;
}

static bool seek_hash(cb_txn *txn, MDB_dbi dbi, uint64_t hash, cb_seq_fn fn, void *arg)
{
    MDB_cursor *c;
    if (!cb_st_check(txn, mdb_cursor_open(txn->txn, dbi, &c), "scan index"))
        return false;
    uint8_t from[IX_KEY];
    ix_key(from, hash, 0);
    MDB_val k = val(from, sizeof from), data;
    bool go_on = true;
    int rc = mdb_cursor_get(c, &k, &data, MDB_SET_RANGE);
    for (; rc == 0 && go_on; rc = mdb_cursor_get(c, &k, &data, MDB_NEXT)) {
        if (k.mv_size != IX_KEY || memcmp(k.mv_data, from, 8) != 0)
            break;
        go_on = fn(arg, cb_be64_get((const uint8_t *)k.mv_data + 8));
    }
    mdb_cursor_close(c);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return cb_st_check(txn, rc, "scan index");
    return go_on;
}

/* Entries of removed events stay in their runs until the whole run has
 * expired: no lookup gives a seq below the floor. */
typedef struct {
    cb_seq_fn fn;
    void *arg;
    uint64_t floor;
} above_floor;

static bool if_kept(void *arg, uint64_t seq)
{
    above_floor *a = arg;
    return seq < a->floor || a->fn(a->arg, seq);
}

void cb_store_index_find(cb_txn *txn, cb_index ix, uint64_t hash, cb_seq_fn user_fn, void *user_arg)
{
    above_floor kept = {user_fn, user_arg, cb_store_floor(txn)};
    cb_seq_fn fn = if_kept;
    void *arg = &kept;
    ix_dir *d = dir_of(txn, ix);
    for (unsigned s = 0; d && s < IX_SLOTS && txn_ok(txn); s++)
        if (d->state[s] == SLOT_TAIL ? !find_in_tail(txn, ix, d, hash, fn, arg)
                                     : d->state[s] == SLOT_RUN && filter_maybe(txn, ix, d, s, hash) &&
                                           !seek_hash(txn, slot_dbi(txn, ix, s), hash, fn, arg))
            return;
}

/* ---- sealing and merging */

static int free_slot(const ix_dir *d)
{
    for (int s = 0; s < IX_SLOTS; s++)
        if (d->state[s] == SLOT_FREE)
            return s;
    return -1;
}

/* A full tail becomes a level-0 run where it stands; an empty slot becomes
 * the tail. Without a free slot the tail goes on growing, which costs more
 * per entry but loses nothing. */
/* Keys (hash, seq) read from the tail in seq order, into key order: a
 * stable radix sort on the hash's eight bytes, least significant first, so
 * the keys of one hash stay in seq order. (qsort took 1-4 ms a tail, all of
 * it in the commit that seals.) False when there is no memory for it. */
static bool sort_by_hash(uint8_t (*keys)[IX_KEY], size_t n)
{
    uint8_t(*tmp)[IX_KEY] = malloc(n * IX_KEY);
    if (!tmp)
        return false;
    uint8_t(*from)[IX_KEY] = keys, (*to)[IX_KEY] = tmp;
    for (int byte = 7; byte >= 0; byte--) { /* an even number of passes: it ends in keys */
        size_t at[257] = {0};
        for (size_t i = 0; i < n; i++)
            at[from[i][byte] + 1]++;
        for (int b = 0; b < 256; b++)
            at[b + 1] += at[b];
        for (size_t i = 0; i < n; i++)
            memcpy(to[at[from[i][byte]]++], from[i], IX_KEY);
        uint8_t(*swap)[IX_KEY] = from;
        from = to;
        to = swap;
    }
    free(tmp);
    return true;
}

/* A full tail is written, in hash order, as a run of level 0 in an empty
 * slot (with its filter), and emptied to go on as the tail. Without a free
 * slot the tail goes on growing, which costs its lookups more but loses
 * nothing. */
static void seal(cb_txn *txn, cb_index ix, ix_dir *d)
{
    uint64_t n = slot_entries(txn, ix, d->tail);
    /* Each event adds to all three indexes: at one size their tails would be
     * sealed in the same commit, which would then take three seals long. */
    int out = n >= IX_TAIL_MAX + (uint64_t)ix * IX_TAIL_MAX / 4 ? free_slot(d) : -1;
    uint8_t(*keys)[IX_KEY] = out >= 0 ? malloc(n * IX_KEY) : NULL;
    if (out < 0 || !keys) {
        free(keys);
        return;
    }
    MDB_cursor *c;
    MDB_val k, data;
    size_t got = 0;
    if (!cb_st_check(txn, mdb_cursor_open(txn->txn, slot_dbi(txn, ix, d->tail), &c), "seal index tail")) {
        free(keys);
        return;
    }
    uint64_t max_seq = 0;
    int rc = mdb_cursor_get(c, &k, &data, MDB_FIRST);
    for (; rc == 0 && got < n && k.mv_size == IX_KEY; rc = mdb_cursor_get(c, &k, &data, MDB_NEXT), got++) {
        const uint8_t *tk = k.mv_data; /* (seq, hash) becomes (hash, seq) */
        memcpy(keys[got], tk + 8, 8);
        memcpy(keys[got] + 8, tk, 8);
        max_seq = cb_be64_get(tk); /* in seq order: the last is the highest */
    }
    mdb_cursor_close(c);
    if (got != n) {
        free(keys);
        cb_st_fail(txn, rc && rc != MDB_NOTFOUND ? rc : MDB_CORRUPTED, "seal index tail");
        return;
    }
    if (!sort_by_hash(keys, n)) {
        free(keys); /* the tail goes on growing, as without a free slot */
        return;
    }
    filter_writer *w = &txn->store->seal_filter;
    d->filter_blocks[out] = filtered(ix) ? filter_blocks_for(n) : 0;
    if (filtered(ix))
        filter_begin(w, ix, (unsigned)out, d->filter_blocks[out], txn->store->write_losses);
    if (cb_st_check(txn, mdb_cursor_open(txn->txn, slot_dbi(txn, ix, (unsigned)out), &c), "seal index tail")) {
        for (size_t i = 0; i < n && txn_ok(txn); i++) {
            MDB_val key = val(keys[i], IX_KEY), none = val("", 0);
            if (cb_st_check(txn, mdb_cursor_put(c, &key, &none, MDB_APPEND), "seal index tail") && filtered(ix))
                filter_add(txn, w, cb_be64_get(keys[i]));
        }
        if (txn_ok(txn))
            mdb_cursor_close(c);
    }
    free(keys);
    if (filtered(ix)) {
        filter_flush(txn, w);
        w->active = false;
    }
    if (!cb_st_check(txn, mdb_drop(txn->txn, slot_dbi(txn, ix, d->tail), 0), "seal index tail"))
        return;
    if (writer_tabled(ix))
        txn->store->writer_tails[ix].built = false; /* the same slot, emptied */
    d->state[out] = SLOT_RUN;
    d->level[out] = 0;
    d->max_seq[out] = max_seq;
    txn->dirs_dirty[ix] = true;
}

static bool merging(const ix_dir *d, unsigned s)
{
    for (int m = 0; m < IX_MERGES; m++)
        for (unsigned i = 0; d->merges[m].out != IX_NONE && i < d->merges[m].n_src; i++)
            if (d->merges[m].src[i] == s)
                return true;
    return false;
}

/* Start merging the lowest level that has IX_FANIN runs not already being
 * merged, when a merge and a slot are free. */
static void start_merge(cb_txn *txn, cb_index ix, ix_dir *d)
{
    ix_merge *m = NULL;
    for (int i = 0; i < IX_MERGES && !m; i++)
        if (d->merges[i].out == IX_NONE)
            m = &d->merges[i];
    int out = m ? free_slot(d) : -1;
    if (out < 0)
        return;
    /* The lowest level with IX_FANIN runs free to merge, in one pass. */
    unsigned free_runs[IX_LEVELS] = {0}, level = IX_LEVELS;
    for (unsigned s = 0; s < IX_SLOTS; s++)
        if (d->state[s] == SLOT_RUN && d->level[s] < IX_LEVELS && !merging(d, s) &&
            ++free_runs[d->level[s]] == IX_FANIN && d->level[s] < level)
            level = d->level[s];
    if (level == IX_LEVELS)
        return;
    uint8_t src[IX_FANIN];
    unsigned n = 0;
    for (unsigned s = 0; s < IX_SLOTS && n < IX_FANIN; s++)
        if (d->state[s] == SLOT_RUN && d->level[s] == level && !merging(d, s))
            src[n++] = (uint8_t)s;
    memset(m, 0, sizeof *m);
    m->out = (uint8_t)out;
    m->n_src = (uint8_t)n;
    memcpy(m->src, src, n);
    d->state[out] = SLOT_BUILD;
    d->level[out] = (uint8_t)(level + 1);
    uint64_t entries = 0;
    d->max_seq[out] = 0;
    for (unsigned i = 0; i < n; i++) {
        entries += slot_entries(txn, ix, src[i]);
        if (d->max_seq[src[i]] > d->max_seq[out])
            d->max_seq[out] = d->max_seq[src[i]];
    }
    d->filter_blocks[out] = filtered(ix) ? filter_blocks_for(entries) : 0;
    txn->dirs_dirty[ix] = true;
}

/* The merge's sources are written out: its run takes their place. */
static void finish_merge(cb_txn *txn, cb_index ix, ix_dir *d, ix_merge *m)
{
    for (unsigned i = 0; i < m->n_src; i++) {
        unsigned s = m->src[i];
        filter_drop(txn, ix, d, s);
        if (!cb_st_check(txn, mdb_drop(txn->txn, slot_dbi(txn, ix, s), 0), "empty merged index run"))
            return;
        d->state[s] = SLOT_FREE;
    }
    d->state[m->out] = SLOT_RUN;
    m->out = IX_NONE;
    txn->dirs_dirty[ix] = true;
}

/* Write up to budget entries of merge m; the entries written. */
static uint64_t merge_step(cb_txn *txn, cb_index ix, ix_dir *d, ix_merge *m, uint64_t budget)
{
    MDB_cursor *src[IX_FANIN] = {0}, *out = NULL;
    MDB_val key[IX_FANIN];
    bool live[IX_FANIN] = {0};
    uint64_t written = 0;
    uint8_t last[IX_KEY];
    bool resume = slot_last(txn, ix, m->out, last);
    filter_writer *filter = filtered(ix) ? merge_filter(txn, ix, d, m) : NULL;
    if (!txn_ok(txn) ||
        !cb_st_check(txn, mdb_cursor_open(txn->txn, slot_dbi(txn, ix, m->out), &out), "merge index runs"))
        return 0;
    for (unsigned i = 0; i < m->n_src && txn_ok(txn); i++) {
        MDB_val data;
        if (!cb_st_check(txn, mdb_cursor_open(txn->txn, slot_dbi(txn, ix, m->src[i]), &src[i]), "merge index runs"))
            break;
        int rc;
        if (resume) {
            key[i] = val(last, IX_KEY);
            rc = mdb_cursor_get(src[i], &key[i], &data, MDB_SET_RANGE);
            if (rc == 0 && key[i].mv_size == IX_KEY && memcmp(key[i].mv_data, last, IX_KEY) == 0)
                rc = mdb_cursor_get(src[i], &key[i], &data, MDB_NEXT);
        } else {
            rc = mdb_cursor_get(src[i], &key[i], &data, MDB_FIRST);
        }
        live[i] = rc == 0;
        if (rc != 0 && rc != MDB_NOTFOUND)
            cb_st_check(txn, rc, "merge index runs");
    }
    while (txn_ok(txn) && written < budget) {
        int best = -1;
        for (unsigned i = 0; i < m->n_src; i++)
            if (live[i] && (best < 0 || memcmp(key[i].mv_data, key[best].mv_data, IX_KEY) < 0))
                best = (int)i;
        if (best < 0)
            break;
        MDB_val data = val("", 0);
        if (key[best].mv_size != IX_KEY) {
            cb_st_fail(txn, MDB_CORRUPTED, "merge index runs");
            break;
        }
        memcpy(last, key[best].mv_data, IX_KEY);
        MDB_val k = val(last, IX_KEY);
        if (!cb_st_check(txn, mdb_cursor_put(out, &k, &data, MDB_APPEND), "merge index runs"))
            break;
        if (filter)
            filter_add(txn, filter, cb_be64_get(last));
        written++;
        int rc = mdb_cursor_get(src[best], &key[best], &data, MDB_NEXT);
        live[best] = rc == 0;
        if (rc != 0 && rc != MDB_NOTFOUND)
            cb_st_check(txn, rc, "merge index runs");
    }
    bool done = true;
    for (unsigned i = 0; i < m->n_src; i++)
        done = done && !live[i];
    /* A write txn's cursors are freed by LMDB if the txn was aborted. */
    if (txn_ok(txn)) {
        for (unsigned i = 0; i < m->n_src; i++)
            if (src[i])
                mdb_cursor_close(src[i]);
        mdb_cursor_close(out);
    }
    if (!txn_ok(txn))
        return written;
    if (done && filter) {
        filter_flush(txn, filter);
        filter->active = false;
    }
    if (done)
        finish_merge(txn, ix, d, m);
    return written;
}

/* ---- retention: what the floor leaves behind */

/* Runs the floor has passed (a merge's, once it is finished). */
static void drop_expired(cb_txn *txn, cb_index ix, ix_dir *d)
{
    uint64_t floor = cb_store_floor(txn);
    for (unsigned s = 0; s < IX_SLOTS && txn_ok(txn); s++) {
        if (d->state[s] != SLOT_RUN || d->max_seq[s] >= floor || merging(d, s))
            continue;
        filter_drop(txn, ix, d, s);
        if (!cb_st_check(txn, mdb_drop(txn->txn, slot_dbi(txn, ix, s), 0), "drop expired index run"))
            return;
        d->state[s] = SLOT_FREE;
        txn->dirs_dirty[ix] = true;
    }
}

void cb_st_index_drop_expired(cb_txn *txn)
{
    for (int ix = 0; ix < CB_INDEX_COUNT && txn_ok(txn); ix++) {
        ix_dir *d = dir_of(txn, (cb_index)ix);
        if (d)
            drop_expired(txn, (cb_index)ix, d);
    }
}

void cb_st_index_remove_seq(cb_txn *txn, uint64_t seq)
{
    for (int ix = 0; ix < CB_INDEX_COUNT && txn_ok(txn); ix++) {
        ix_dir *d = dir_of(txn, (cb_index)ix);
        MDB_cursor *c;
        if (!d || !cb_st_check(txn, mdb_cursor_open(txn->txn, slot_dbi(txn, (cb_index)ix, d->tail), &c),
                               "remove index entries"))
            return;
        uint8_t from[IX_KEY];
        tail_key(from, seq, 0);
        for (;;) {
            MDB_val k = val(from, sizeof from), data;
            int rc = mdb_cursor_get(c, &k, &data, MDB_SET_RANGE);
            if (rc == 0 && (k.mv_size != IX_KEY || memcmp(k.mv_data, from, 8) != 0))
                rc = MDB_NOTFOUND;
            if (rc == 0)
                rc = mdb_cursor_del(c, 0);
            /* The store thread's table keeps what it was given: built again,
             * it keeps no entry a tail that is never sealed no longer has. */
            if (rc == 0 && writer_tabled((cb_index)ix))
                txn->store->writer_tails[ix].built = false;
            if (rc != 0) {
                if (rc != MDB_NOTFOUND)
                    cb_st_check(txn, rc, "remove index entries");
                break;
            }
        }
        if (txn_ok(txn))
            mdb_cursor_close(c);
    }
}

static ix_merge *lowest_merge(ix_dir *d)
{
    ix_merge *low = NULL;
    for (int i = 0; i < IX_MERGES; i++)
        if (d->merges[i].out != IX_NONE && (!low || d->level[d->merges[i].out] < d->level[low->out]))
            low = &d->merges[i];
    return low;
}

/* Seal and merge index ix, writing up to budget entries. */
static void work_on(cb_txn *txn, cb_index ix, uint64_t budget, bool *more)
{
    ix_dir *d = dir_of(txn, ix);
    if (!d)
        return;
    seal(txn, ix, d);
    if (cb_store_floor(txn) > 1)
        drop_expired(txn, ix, d);
    for (uint64_t left = budget;;) {
        start_merge(txn, ix, d);
        ix_merge *m = lowest_merge(d);
        if (!m || !left || !txn_ok(txn))
            break;
        left -= merge_step(txn, ix, d, m, left);
    }
    *more = *more || lowest_merge(d) != NULL;
}

bool cb_store_index_work(cb_txn *txn, uint64_t budget)
{
    bool more = false;
    for (int ix = 0; ix < CB_INDEX_COUNT && txn_ok(txn); ix++)
        work_on(txn, (cb_index)ix, budget, &more);
    txn->store->index_work = more && txn_ok(txn);
    return txn->store->index_work;
}

bool cb_store_index_pay(cb_txn *txn, uint64_t per_entry)
{
    bool more = false;
    for (int ix = 0; ix < CB_INDEX_COUNT && txn_ok(txn); ix++)
        work_on(txn, (cb_index)ix, per_entry * txn->index_added[ix], &more);
    txn->store->index_work = more && txn_ok(txn);
    return txn->store->index_work;
}
bool cb_store_index_pending(const cb_store *store)
{
    return store->index_work;
}

void cb_store_index_shape(cb_txn *txn, cb_index ix, cb_index_shape *out)
{
    memset(out, 0, sizeof *out);
    ix_dir *d = dir_of(txn, ix);
    for (unsigned s = 0; d && s < IX_SLOTS; s++) {
        if (d->state[s] == SLOT_RUN || d->state[s] == SLOT_TAIL) {
            out->layers++;
            out->entries += slot_entries(txn, ix, s);
        }
        if (d->state[s] == SLOT_BUILD)
            out->merging++;
    }
}
