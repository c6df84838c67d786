#include "store_impl.h"

#include <assert.h>
#include <errno.h>
#include <unistd.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sodium.h>
#include <stdio.h>
#include "cb_check.h"
#include "cb_wire.h"

static const char *const fixed_names[DB_FIXED] = {"events", "queue", "parked", "meta", "filters", "stored"};
/* Databases of the first layout (one B-tree per index), before the layered
 * indexes of store_index.c: a store that has them is refused, not misread. */
static const char *const old_layout_names[] = {"ids", "persons", "cases"};

/* A queue or parked value: enqueued_ms (u64) then attempts (u32), big-endian. */
#define ENTRY_BYTES 12

#define RESERVE_MAX (64ULL << 20) /* at most this much zeroed file ahead; an eighth of a small map */

/* A write that fails with less than this available has met a full
 * filesystem; publishing resumes once DISK_ROOM_AT is available again (the
 * gap keeps a nearly full disk from flapping between the two). */
#define DISK_FULL_BELOW (1ULL << 20)
#define DISK_ROOM_AT    (4ULL << 20)
#define OVERFLOW_MARGIN 0.05 /* of the map: the gap before publishing resumes after an overflow */

/* Bytes the store's filesystem has available to us; UINT64_MAX if unknown. */
static uint64_t disk_available(const cb_store *s)
{
    struct statvfs st;
    return statvfs(s->dir, &st) == 0 ? (uint64_t)st.f_bavail * st.f_frsize : UINT64_MAX;
}

/* Full (map, disk, txn) is the one failure a caller can wait out; everything
 * else means the store cannot be trusted until it is reopened. A real full
 * disk seldom says ENOSPC: LMDB's pwritev writes part of a run of pages and
 * reports EIO ("short write, filesystem full?"). So a system error is checked
 * against the filesystem's free space before it is called a failure.
 * Writes err's reason as "step: why". */
static cb_code classify(cb_store *s, int rc, const char *step, cb_error *err)
{
    uint64_t avail;
    if (rc == MDB_MAP_FULL)
        atomic_store(&s->map_overflowed, true);
    if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL)
        return cb_fail(err, CB_STORE_FULL, "%s: %s", step, mdb_strerror(rc));
    if (rc == ENOSPC || (rc > 0 && (avail = disk_available(s)) < DISK_FULL_BELOW)) {
        atomic_store(&s->disk_full, true);
        avail = disk_available(s);
        return cb_fail(err, CB_STORE_FULL, "%s: the filesystem holding the store is full (%llu KiB available; %s)",
                       step, avail == UINT64_MAX ? 0ULL : (unsigned long long)(avail >> 10), mdb_strerror(rc));
    }
    return cb_fail(err, CB_STORE_UNAVAILABLE, "%s: %s", step, mdb_strerror(rc));
}

/* Remember the first failure and abort the LMDB txn at once, so nothing more
 * can be written under it. Returns false, for `return cb_st_fail(...)`. */
bool cb_st_fail(cb_txn *txn, int rc, const char *step)
{
    if (txn_ok(txn)) {
        classify(txn->store, rc, step, &txn->err);
        mdb_txn_abort(txn->txn);
        txn->txn = NULL;
    }
    return false;
}

bool cb_st_check(cb_txn *txn, int rc, const char *step)
{
    return rc == 0 || cb_st_fail(txn, rc, step);
}

/* An event id or meta name used whole as a key. */
static MDB_val str_val(const char *s)
{
    size_t n = strlen(s);
    assert(n > 0 && n <= CB_KEY_MAX);
    return val(s, n);
}

/* A queue's or the parked entries' key: (agency, seq), so one agency's
 * entries are one range in seq order (keys.h). An over-long agency is a
 * caller bug; it fails the txn the way LMDB fails an over-long key. */
static bool entry_key(cb_txn *txn, const char *step, cb_key *k, const char *agency, uint64_t seq)
{
    return cb_key_make(k, "SQ", agency, seq) || cb_st_fail(txn, MDB_BAD_VALSIZE, step);
}

static bool db_get(cb_txn *txn, int db, MDB_val key, MDB_val *out, const char *step)
{
    if (!txn_ok(txn))
        return false;
    int rc = mdb_get(txn->txn, txn->store->dbi[db], &key, out);
    return rc != MDB_NOTFOUND && cb_st_check(txn, rc, step);
}

static void db_put_flags(cb_txn *txn, int db, MDB_val key, MDB_val data, unsigned flags, const char *step)
{
    if (txn_ok(txn))
        cb_st_check(txn, mdb_put(txn->txn, txn->store->dbi[db], &key, &data, flags), step);
}

static void db_put(cb_txn *txn, int db, MDB_val key, MDB_val data, const char *step)
{
    db_put_flags(txn, db, key, data, 0, step);
}

static bool db_del(cb_txn *txn, int db, MDB_val key, const char *step)
{
    if (!txn_ok(txn))
        return false;
    int rc = mdb_del(txn->txn, txn->store->dbi[db], &key, NULL);
    return rc != MDB_NOTFOUND && cb_st_check(txn, rc, step);
}

typedef bool (*row_fn)(cb_txn *txn, void *arg, uint64_t seq, MDB_val data);

/* Call fn for each (agency, seq) key of from's agency, from from's seq
 * upwards, until fn returns false. */
static void db_scan(cb_txn *txn, int db, const char *agency, const cb_key *from, row_fn fn, void *arg, const char *step)
{
    MDB_cursor *c;
    cb_key prefix;
    if (!txn_ok(txn) || !cb_key_make(&prefix, "S", agency) ||
        !cb_st_check(txn, mdb_cursor_open(txn->txn, txn->store->dbi[db], &c), step))
        return;
    MDB_val k = val(from->b, from->len), data;
    int rc = mdb_cursor_get(c, &k, &data, MDB_SET_RANGE);
    const char *part;
    uint64_t seq;
    for (; rc == 0; rc = mdb_cursor_get(c, &k, &data, MDB_NEXT))
        if (!cb_key_has_prefix(k.mv_data, k.mv_size, &prefix) ||
            !cb_key_parse(k.mv_data, k.mv_size, "SQ", &part, &seq) || !fn(txn, arg, seq, data) || !txn_ok(txn))
            break;
    /* If fn failed the txn, LMDB freed a write txn's cursors in the abort;
     * a read txn's cursor is still ours to close. */
    if (txn->txn || !txn->write)
        mdb_cursor_close(c);
    if (rc != 0 && rc != MDB_NOTFOUND)
        cb_st_fail(txn, rc, step);
}

static void entry_encode(uint8_t b[ENTRY_BYTES], const cb_queue_entry *e)
{
    cb_be64_put(b, e->enqueued_ms);
    for (int i = 0; i < 4; i++)
        b[8 + i] = (uint8_t)(e->attempts >> (24 - 8 * i));
}

static bool entry_decode(cb_txn *txn, MDB_val data, uint64_t seq, cb_queue_entry *e)
{
    if (data.mv_size != ENTRY_BYTES)
        return cb_st_fail(txn, MDB_CORRUPTED, "read queue entry");
    const uint8_t *b = data.mv_data;
    e->seq = seq;
    e->enqueued_ms = cb_be64_get(b);
    e->attempts = (uint32_t)b[8] << 24 | (uint32_t)b[9] << 16 | (uint32_t)b[10] << 8 | b[11];
    return true;
}

/* ---- the environment */

/* Create the directory, open the environment and every named database once
 * (creating it on first use); the handles stay valid until the env closes. */
/* Open (or create) the databases, and the index hash key, in one txn. */
static int open_databases(cb_store *s, const char **step)
{
    MDB_txn *txn;
    MDB_dbi old;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    for (size_t i = 0; i < sizeof old_layout_names / sizeof *old_layout_names && rc == 0; i++)
        if (mdb_dbi_open(txn, old_layout_names[i], 0, &old) == 0) {
            *step = "open databases: the store was written by an earlier carebridge, whose indexes are laid out "
                    "differently (move it aside, or empty the directory)";
            rc = MDB_INCOMPATIBLE;
        }
    for (int i = 0; i < DB_FIXED && rc == 0; i++)
        rc = mdb_dbi_open(txn, fixed_names[i], MDB_CREATE, &s->dbi[i]);
    for (size_t i = 0; i < s->n_spaces && rc == 0; i++)
        rc = mdb_dbi_open(txn, s->spaces[i], MDB_CREATE, &s->space_dbi[i]);
    for (int ix = 0; ix < CB_INDEX_COUNT && rc == 0; ix++)
        for (int slot = 0; slot < IX_SLOTS && rc == 0; slot++) {
            char name[32];
            snprintf(name, sizeof name, "%s.%02d", cb_store_index_name((cb_index)ix), slot);
            rc = mdb_dbi_open(txn, name, MDB_CREATE, &s->dbi[DB_FIXED + ix * IX_SLOTS + slot]);
        }
    MDB_val k = val("index_key", 9), v;
    if (rc == 0 && (rc = mdb_get(txn, s->dbi[DB_META], &k, &v)) == 0 && v.mv_size == sizeof s->hash_key) {
        memcpy(s->hash_key, v.mv_data, sizeof s->hash_key);
    } else if (rc == 0 || rc == MDB_NOTFOUND) {
        randombytes_buf(s->hash_key, sizeof s->hash_key);
        v = val(s->hash_key, sizeof s->hash_key);
        rc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
    }
    if (rc != 0)
        mdb_txn_abort(txn);
    else
        rc = mdb_txn_commit(txn);
    return rc;
}

static bool env_open(cb_store *s, cb_error *err)
{
    const char *step = "create directory";
    MDB_envinfo info;
    int rc = 0;

    if (mkdir(s->dir, 0700) != 0 && errno != EEXIST) {
        rc = errno;
        goto fail;
    }
    step = "create environment";
    /* Room for the old layout's names too, so they can be looked for. */
    if ((rc = mdb_env_create(&s->env)) != 0 ||
        (rc = mdb_env_set_maxdbs(s->env, IX_DB_COUNT + CB_KEYSPACES_MAX + 4)) != 0 ||
        (rc = mdb_env_set_mapsize(s->env, (size_t)s->map_bytes)) != 0)
        goto fail;
    /* Default flags: every write commit is fdatasync'ed before it returns.
     * MDB_NOTLS: the query thread's read txns are its own, not per thread. */
    step = "open environment";
    if ((rc = mdb_env_open(s->env, s->dir, MDB_NOTLS, 0600)) != 0 || (rc = mdb_env_info(s->env, &info)) != 0)
        goto fail;
    s->map_bytes = info.me_mapsize; /* LMDB grows the map to fit existing data */
    /* A reader slot left by a process that died holds its snapshot's pages
     * from reuse; LMDB resets the table only when no process has it open. */
    int dead;
    mdb_reader_check(s->env, &dead);
    step = "open databases";
    if ((rc = open_databases(s, &step)) == 0)
        return true;
fail:
    mdb_env_close(s->env);
    s->env = NULL;
    cb_fail(err, CB_STORE_UNAVAILABLE, "open store: %s: %s", step, mdb_strerror(rc));
    return false;
}

cb_store *cb_store_open_with(const char *dir, uint64_t map_bytes, double publish_fraction, const char *const *keyspaces,
                             size_t n_keyspaces, cb_error *err)
{
    bool named = n_keyspaces <= CB_KEYSPACES_MAX;
    for (size_t i = 0; named && i < n_keyspaces; i++)
        named = keyspaces[i][0] && strlen(keyspaces[i]) <= 32 && cb_printable(keyspaces[i]);
    if (!named) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "open store: at most %d keyspaces, each named by 1 to 32 printable bytes",
                CB_KEYSPACES_MAX);
        return NULL;
    }
    cb_store *s = calloc(1, sizeof *s);
    bool made = s && (s->dir = strdup(dir)) != NULL;
    for (; made && s->n_spaces < n_keyspaces; s->n_spaces++) {
        const char *name = keyspaces[s->n_spaces];
        made = (s->spaces[s->n_spaces] = malloc(strlen(name) + 4)) != NULL;
        if (made)
            sprintf(s->spaces[s->n_spaces], "ks.%s", name);
    }
    if (!made) {
        for (size_t i = 0; s && i < s->n_spaces; i++)
            free(s->spaces[i]);
        if (s)
            free(s->dir);
        free(s);
        cb_fail(err, CB_STORE_UNAVAILABLE, "open store: %s", strerror(ENOMEM));
        return NULL;
    }
    s->map_bytes = map_bytes;
    s->publish_fraction = publish_fraction;
    pthread_rwlock_init(&s->env_lock, NULL);
    pthread_mutex_init(&s->reader_tails_mu, NULL);
    if (!env_open(s, err)) {
        cb_store_destroy(&s);
        return NULL;
    }
    s->reserve_target = s->map_bytes / 8 < RESERVE_MAX ? s->map_bytes / 8 : RESERVE_MAX;
    cb_store_grow_reserve(s, s->reserve_target);
    return s;
}

cb_store *cb_store_open(const char *dir, uint64_t map_bytes, double publish_fraction, cb_error *err)
{
    return cb_store_open_with(dir, map_bytes, publish_fraction, NULL, 0, err);
}

/* Where LMDB's pages end and where the file ends, in bytes. */
static bool extent(const cb_store *s, uint64_t *used_end, uint64_t *file_end, int *fd)
{
    MDB_envinfo info;
    MDB_stat st;
    struct stat fs;
    if (!s->env || mdb_env_info(s->env, &info) || mdb_env_stat(s->env, &st) || mdb_env_get_fd(s->env, fd) ||
        fstat(*fd, &fs))
        return false;
    *used_end = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    *file_end = (uint64_t)fs.st_size;
    return true;
}

bool cb_store_reserve_below(const cb_store *s, double fraction)
{
    uint64_t used_end, file_end;
    int fd;
    return extent(s, &used_end, &file_end, &fd) && file_end < s->map_bytes &&
           file_end < used_end + (uint64_t)(fraction * (double)s->reserve_target);
}

bool cb_store_grow_reserve(cb_store *s, uint64_t budget)
{
    static const uint8_t zeros[1 << 16];
    uint64_t used_end, file_end;
    int fd;
    assert(!s->writing);
    if (!extent(s, &used_end, &file_end, &fd))
        return false;
    uint64_t goal = used_end + s->reserve_target;
    if (goal > s->map_bytes)
        goal = s->map_bytes;
    if (goal > file_end + budget)
        goal = file_end + budget;
    uint64_t at = file_end;
    while (at < goal) {
        size_t n = goal - at < sizeof zeros ? (size_t)(goal - at) : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, n, (off_t)at);
        if (w <= 0)
            break;
        at += (uint64_t)w;
    }
    return at > file_end && fdatasync(fd) == 0;
}

void cb_store_destroy(cb_store **store_p)
{
    cb_store *s = *store_p;
    if (!s)
        return;
    assert(!s->writing);
    mdb_env_close(s->env);
    pthread_rwlock_destroy(&s->env_lock);
    pthread_mutex_destroy(&s->reader_tails_mu);
    for (size_t i = 0; i < s->n_spaces; i++)
        free(s->spaces[i]);
    free(s->dir);
    free(s);
    *store_p = NULL;
}

bool cb_store_reopen(cb_store *store, cb_error *err)
{
    assert(!store->writing);
    pthread_rwlock_wrlock(&store->env_lock);
    store->write_losses++; /* whatever was kept between txns is stale now */
    mdb_env_close(store->env);
    store->env = NULL;
    bool opened = env_open(store, err);
    pthread_rwlock_unlock(&store->env_lock);
    return opened;
}

uint64_t cb_store_limit_bytes(const cb_store *store)
{
    return store->map_bytes;
}

uint64_t cb_store_commits(const cb_store *store)
{
    return store->commits;
}

/* ---- transactions */

cb_txn *cb_txn_begin(cb_store *store, bool write, cb_error *err)
{
    assert(!write || !store->writing);
    cb_txn *txn = calloc(1, sizeof *txn);
    if (!txn) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "begin txn: %s", strerror(ENOMEM));
        return NULL;
    }
    /* Only the store thread writes, and it alone reopens: a reader (on any
     * thread) holds the lock so the environment is not closed under it. */
    if (!write)
        pthread_rwlock_rdlock(&store->env_lock);
    int rc = store->env ? mdb_txn_begin(store->env, NULL, write ? 0 : MDB_RDONLY, &txn->txn) : -1;
    if (rc != 0) {
        if (!write)
            pthread_rwlock_unlock(&store->env_lock);
        free(txn);
        if (rc == -1)
            cb_fail(err, CB_STORE_UNAVAILABLE, "begin txn: the store is closed after a failed reopen");
        else
            classify(store, rc, "begin txn", err);
        return NULL;
    }
    txn->store = store;
    txn->write = write;
    if (write)
        store->writing = true;
    return txn;
}

static void txn_free(cb_txn *txn)
{
    if (txn->write && !txn->committed)
        txn->store->write_losses++;
    if (txn->write)
        txn->store->writing = false;
    else
        pthread_rwlock_unlock(&txn->store->env_lock);
    cb_st_index_forget(txn);
    free(txn->deltas);
    free(txn);
}

static void flush_counts(cb_txn *txn);

cb_code cb_txn_commit(cb_txn **txn_p, cb_error *err)
{
    cb_txn *txn = *txn_p;
    if (txn->write) {
        if (txn->floor_moved) {
            uint8_t b[8];
            cb_be64_put(b, txn->floor);
            cb_store_meta_put(txn, "floor", b, sizeof b);
            cb_st_index_drop_expired(txn);
        }
        cb_st_index_flush(txn);
        flush_counts(txn);
    }
    if (txn_ok(txn)) {
        int rc = mdb_txn_commit(txn->txn); /* ends the txn even when it fails */
        txn->txn = NULL;
        if (rc != 0)
            classify(txn->store, rc, "commit", &txn->err);
        else if (txn->write)
            txn->store->commits++;
        txn->committed = rc == 0;
    }
    if (err)
        *err = txn->err;
    cb_code code = txn->err.code;
    txn_free(txn);
    *txn_p = NULL;
    return code;
}

void cb_txn_abort(cb_txn **txn_p)
{
    cb_txn *txn = *txn_p;
    if (!txn)
        return;
    if (txn->txn)
        mdb_txn_abort(txn->txn);
    txn_free(txn);
    *txn_p = NULL;
}

cb_code cb_txn_failed(const cb_txn *txn)
{
    return txn->err.code;
}

/* ---- events and their indexes */

uint64_t cb_store_last_seq(cb_txn *txn)
{
    MDB_cursor *c;
    MDB_val k, data;
    if (!txn_ok(txn) || !cb_st_check(txn, mdb_cursor_open(txn->txn, txn->store->dbi[DB_EVENTS], &c), "find last event"))
        return 0;
    int rc = mdb_cursor_get(c, &k, &data, MDB_LAST);
    mdb_cursor_close(c);
    if (rc == 0 && k.mv_size != 8)
        rc = MDB_CORRUPTED;
    if (rc != MDB_NOTFOUND && !cb_st_check(txn, rc, "find last event"))
        return 0;
    uint64_t last = rc == 0 ? cb_be64_get(k.mv_data) : 0;
    /* Retention may have removed every event: seqs go on above the floor. */
    uint64_t removed = cb_store_floor(txn) - 1;
    if (!txn_ok(txn))
        return 0;
    return last > removed ? last : removed;
}

uint64_t cb_store_event_count(cb_txn *txn)
{
    MDB_stat st;
    if (!txn_ok(txn) || !cb_st_check(txn, mdb_stat(txn->txn, txn->store->dbi[DB_EVENTS], &st), "count events"))
        return 0;
    return st.ms_entries;
}

uint64_t cb_store_hash(const cb_store *store, const void *key, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, len, store->hash_key);
    return cb_be64_get(h);
}

static uint64_t str_hash(const cb_store *store, const char *a, const char *b)
{
    if (!b)
        return cb_store_hash(store, a, strlen(a));
    /* "agency\0case": the NUL keeps ("ab", "c") apart from ("a", "bc"). */
    size_t na = strlen(a), nb = strlen(b);
    char buf[2 * (CB_KEY_MAX + 1)];
    if (na > CB_KEY_MAX || nb > CB_KEY_MAX)
        return 0;
    memcpy(buf, a, na + 1);
    memcpy(buf + na + 1, b, nb);
    return cb_store_hash(store, buf, na + 1 + nb);
}

/* The event id in an event's stored bytes: its field 1, which protobuf-c
 * writes first. */
static bool stored_id_is(const uint8_t *bytes, size_t len, const char *event_id)
{
    const uint8_t *p = bytes, *end = bytes + len;
    cb_wire_field f;
    while (p < end && !cb_wire_next(&p, end, &f))
        if (f.id == 1 && f.type == CB_WIRE_LEN)
            return f.len == strlen(event_id) && memcmp(f.payload, event_id, f.len) == 0;
    return false;
}

typedef struct {
    uint64_t seqs[8];
    size_t n;
} candidates;

static bool push_candidate(void *arg, uint64_t seq)
{
    candidates *c = arg;
    if (c->n < sizeof c->seqs / sizeof *c->seqs)
        c->seqs[c->n++] = seq;
    return true;
}

bool cb_store_find_id(cb_txn *txn, const char *event_id, uint64_t *seq, uint8_t digest[CB_DIGEST_BYTES])
{
    /* The index holds the id's hash: each event it names is read to see
     * whether it really has this id (two ids sharing a hash is 2^-64 rare,
     * and the hash is keyed, so no sender can make it happen). */
    candidates c = {.n = 0};
    cb_store_index_find(txn, CB_INDEX_IDS, str_hash(txn->store, event_id, NULL), push_candidate, &c);
    for (size_t i = 0; i < c.n && txn_ok(txn); i++) {
        const uint8_t *bytes;
        size_t len;
        if (cb_store_get_event(txn, c.seqs[i], &bytes, &len) && stored_id_is(bytes, len, event_id)) {
            *seq = c.seqs[i];
            /* The digest is of the stored bytes, as the network thread made it of the published ones. */
            crypto_generichash(digest, CB_DIGEST_BYTES, bytes, len, NULL, 0);
            return true;
        }
    }
    return false;
}

/* ---- when each seq was stored, to the minute */

#define STORED_BUCKET_MS 60000

static bool first_seq(cb_txn *txn, int db, uint64_t *key, MDB_val *data, const char *step)
{
    MDB_cursor *c;
    MDB_val k;
    if (!cb_st_check(txn, mdb_cursor_open(txn->txn, txn->store->dbi[db], &c), step))
        return false;
    int rc = mdb_cursor_get(c, &k, data, MDB_FIRST);
    mdb_cursor_close(c);
    if (rc == 0 && k.mv_size != 8)
        rc = MDB_CORRUPTED;
    if (rc == MDB_NOTFOUND || !cb_st_check(txn, rc, step))
        return false;
    *key = cb_be64_get(k.mv_data);
    return true;
}

/* The first put in a minute later than the last stamped notes the minute
 * and its seq. A clock that has not moved on (or went back) stamps
 * nothing: those events count as stored in the latest minute, so they are
 * kept longer, never shorter. The first stamp of a store names its oldest
 * event, so events stored before stamps were kept count as stored now. */
static void stamp(cb_txn *txn, uint64_t seq, uint64_t minute)
{
    MDB_cursor *c;
    MDB_val k, data;
    if (!cb_st_check(txn, mdb_cursor_open(txn->txn, txn->store->dbi[DB_STORED], &c), "note stored time"))
        return;
    int rc = mdb_cursor_get(c, &k, &data, MDB_LAST);
    mdb_cursor_close(c);
    if (rc == 0 && k.mv_size != 8)
        rc = MDB_CORRUPTED;
    if (rc != 0 && !(rc == MDB_NOTFOUND && txn_ok(txn)))
        return (void)cb_st_check(txn, rc, "note stored time");
    if (rc == 0 && cb_be64_get(k.mv_data) >= minute) {
        txn->stamped_minute = cb_be64_get(k.mv_data);
        return;
    }
    txn->stamped_minute = minute;
    uint64_t oldest;
    if (rc == MDB_NOTFOUND && first_seq(txn, DB_EVENTS, &oldest, &data, "note stored time"))
        seq = oldest;
    uint8_t kb[8], vb[8];
    cb_be64_put(kb, minute);
    cb_be64_put(vb, seq);
    db_put_flags(txn, DB_STORED, val(kb, 8), val(vb, 8), MDB_APPEND, "note stored time");
}

/* The minute seq counts as stored in; false when none is noted (keep it).
 * A write txn forgets the first stamp once no kept seq is below the next. */
static bool stored_minute(cb_txn *txn, uint64_t seq, uint64_t *minute)
{
    for (;;) {
        MDB_cursor *c;
        MDB_val k, v, k2, v2;
        if (!cb_st_check(txn, mdb_cursor_open(txn->txn, txn->store->dbi[DB_STORED], &c), "read stored times"))
            return false;
        int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
        int rc2 = rc == 0 ? mdb_cursor_get(c, &k2, &v2, MDB_NEXT) : rc;
        mdb_cursor_close(c);
        if (rc == 0 && (k.mv_size != 8 || v.mv_size != 8 || (rc2 == 0 && v2.mv_size != 8)))
            rc = MDB_CORRUPTED;
        if (rc != 0 || (rc2 != 0 && rc2 != MDB_NOTFOUND)) {
            if (rc != MDB_NOTFOUND)
                cb_st_check(txn, rc ? rc : rc2, "read stored times");
            return false;
        }
        if (cb_be64_get(v.mv_data) > seq)
            return false;
        if (rc2 == 0 && cb_be64_get(v2.mv_data) <= seq && txn->write) {
            db_del(txn, DB_STORED, k, "forget stored time");
            if (!txn_ok(txn))
                return false;
            continue;
        }
        *minute = cb_be64_get(k.mv_data);
        return true;
    }
}

uint64_t cb_store_floor(cb_txn *txn)
{
    if (!txn->floor_known) {
        uint8_t b[8];
        size_t len = 0;
        txn->floor = 1;
        if (cb_store_meta_get(txn, "floor", b, sizeof b, &len)) {
            if (len == 8)
                txn->floor = cb_be64_get(b);
            else
                cb_st_fail(txn, MDB_CORRUPTED, "read retention floor");
        }
        txn->floor_known = txn_ok(txn);
    }
    return txn->floor;
}

static size_t expire_entries(cb_txn *txn, int db, uint64_t floor);

void cb_store_expire(cb_txn *txn, uint64_t before_ms, size_t budget, cb_expire_fn fn, void *arg, cb_expired *out)
{
    size_t n = 0;
    *out = (cb_expired){0};
    bool *more = &out->more;
    while (txn_ok(txn)) {
        uint64_t seq, minute;
        MDB_val data;
        const uint8_t *bytes;
        size_t len;
        if (!first_seq(txn, DB_EVENTS, &seq, &data, "find oldest event") || !stored_minute(txn, seq, &minute) ||
            minute + STORED_BUCKET_MS > before_ms)
            break;
        if (n == budget) {
            *more = true;
            break;
        }
        /* Read again: stored_minute may have written since. */
        if (!cb_store_get_event(txn, seq, &bytes, &len))
            break;
        fn(arg, seq, bytes, len);
        cb_key k;
        cb_key_make(&k, "Q", seq);
        db_del(txn, DB_EVENTS, val(k.b, k.len), "remove expired event");
        cb_st_index_remove_seq(txn, seq);
        txn->floor = seq + 1;
        txn->floor_known = txn->floor_moved = true;
        n++;
    }
    out->events = n;
    if (n)
        out->undelivered = expire_entries(txn, DB_QUEUE, txn->floor) + expire_entries(txn, DB_PARKED, txn->floor);
}

void cb_store_put_event(cb_txn *txn, const cb_stored_event *ev, uint64_t now_ms)
{
    cb_key k;
    uint64_t minute = now_ms / STORED_BUCKET_MS * STORED_BUCKET_MS;
    if (!txn->stamped || minute > txn->stamped_minute) {
        txn->stamped = true;
        stamp(txn, ev->seq, minute);
    }
    cb_queue_entry entry = {.seq = ev->seq, .enqueued_ms = now_ms};
    cb_key_make(&k, "Q", ev->seq);
    /* Every seq is above the last: appending leaves full pages behind,
     * where a plain put splits each page in half and never fills it again. */
    db_put_flags(txn, DB_EVENTS, val(k.b, k.len), val(ev->bytes, ev->len), MDB_APPEND, "put event");
    txn->put_since_room += ev->len + 64 * (1 + ev->n_person_keys + ev->n_recipients);
    cb_store_index_add(txn, CB_INDEX_IDS, str_hash(txn->store, ev->event_id, NULL), ev->seq);
    for (size_t i = 0; i < ev->n_person_keys; i++)
        cb_store_index_add(txn, CB_INDEX_PERSONS, str_hash(txn->store, ev->person_keys[i], NULL), ev->seq);
    if (ev->case_ref)
        cb_store_index_add(txn, CB_INDEX_CASES, str_hash(txn->store, ev->from_agency, ev->case_ref), ev->seq);
    for (size_t i = 0; i < ev->n_recipients; i++)
        cb_store_queue_put(txn, ev->recipients[i], &entry);
}

bool cb_store_get_event(cb_txn *txn, uint64_t seq, const uint8_t **bytes, size_t *len)
{
    cb_key k;
    MDB_val data;
    cb_key_make(&k, "Q", seq);
    if (!db_get(txn, DB_EVENTS, val(k.b, k.len), &data, "read event"))
        return false;
    *bytes = data.mv_data;
    *len = data.mv_size;
    return true;
}

void cb_store_person_seqs(cb_txn *txn, const char *person_key, cb_seq_fn fn, void *arg)
{
    cb_store_index_find(txn, CB_INDEX_PERSONS, str_hash(txn->store, person_key, NULL), fn, arg);
}

void cb_store_case_seqs(cb_txn *txn, const char *from_agency, const char *case_ref, cb_seq_fn fn, void *arg)
{
    cb_store_index_find(txn, CB_INDEX_CASES, str_hash(txn->store, from_agency, case_ref), fn, arg);
}

/* ---- delivery queues */

struct entry_visit {
    cb_entry_fn fn;
    void *arg;
};

static bool visit_entry(cb_txn *txn, void *arg, uint64_t seq, MDB_val data)
{
    struct entry_visit *v = arg;
    cb_queue_entry e;
    return entry_decode(txn, data, seq, &e) && v->fn(v->arg, &e);
}

static void entry_scan(cb_txn *txn, int db, const char *agency, uint64_t after, row_fn fn, void *arg, const char *step)
{
    cb_key k;
    if (after < UINT64_MAX && entry_key(txn, step, &k, agency, after + 1))
        db_scan(txn, db, agency, &k, fn, arg, step);
}

void cb_store_queue_scan(cb_txn *txn, const char *agency, uint64_t after, cb_entry_fn fn, void *arg)
{
    struct entry_visit v = {fn, arg};
    entry_scan(txn, DB_QUEUE, agency, after, visit_entry, &v, "scan queue");
}

void cb_store_parked_scan(cb_txn *txn, const char *agency, uint64_t after, cb_entry_fn fn, void *arg)
{
    struct entry_visit v = {fn, arg};
    entry_scan(txn, DB_PARKED, agency, after, visit_entry, &v, "scan parked");
}

static bool entry_get(cb_txn *txn, int db, const char *agency, uint64_t seq, cb_queue_entry *out, const char *step)
{
    cb_key k;
    MDB_val data;
    return entry_key(txn, step, &k, agency, seq) && db_get(txn, db, val(k.b, k.len), &data, step) &&
           entry_decode(txn, data, seq, out);
}

/* ---- kept counts: each agency's queued and parked entries, in the meta
 * database ("queue.<agency>": two u64), changed with the entries themselves,
 * so status reads two numbers instead of counting millions of entries. */

typedef struct {
    uint64_t queued, parked;
} counts;

static void count_change(cb_txn *txn, int db, const char *agency, int64_t by)
{
    count_delta *d = NULL;
    for (size_t i = 0; i < txn->n_deltas && !d; i++)
        if (strcmp(txn->deltas[i].agency, agency) == 0)
            d = &txn->deltas[i];
    if (!d) {
        count_delta *grown = realloc(txn->deltas, (txn->n_deltas + 1) * sizeof *grown);
        if (!grown || strlen(agency) >= sizeof grown->agency) {
            if (grown)
                txn->deltas = grown;
            cb_st_fail(txn, grown ? MDB_BAD_VALSIZE : ENOMEM, "count queue entries");
            return;
        }
        txn->deltas = grown;
        d = &txn->deltas[txn->n_deltas++];
        memset(d, 0, sizeof *d);
        strcpy(d->agency, agency);
    }
    if (db == DB_QUEUE)
        d->queued += by;
    else
        d->parked += by;
}

static void counts_name(char *name, size_t cap, const char *agency)
{
    snprintf(name, cap, "queue.%s", agency);
}

static counts stored_counts(cb_txn *txn, const char *agency)
{
    char name[80];
    counts c = {0, 0};
    MDB_val v;
    counts_name(name, sizeof name, agency);
    if (cb_st_meta_get(txn, name, &v)) {
        if (v.mv_size == sizeof c)
            memcpy(&c, v.mv_data, sizeof c);
        else
            cb_st_fail(txn, MDB_CORRUPTED, "read queue counts");
    }
    return c;
}

static void flush_counts(cb_txn *txn)
{
    for (size_t i = 0; i < txn->n_deltas && txn_ok(txn); i++) {
        const count_delta *d = &txn->deltas[i];
        if (!d->queued && !d->parked)
            continue;
        counts c = stored_counts(txn, d->agency);
        c.queued = (uint64_t)((int64_t)c.queued + d->queued);
        c.parked = (uint64_t)((int64_t)c.parked + d->parked);
        char name[80];
        counts_name(name, sizeof name, d->agency);
        cb_store_meta_put(txn, name, &c, sizeof c);
    }
    txn->n_deltas = 0;
}

/* Insert or overwrite; only an insert is counted. */
static void entry_put(cb_txn *txn, int db, const char *agency, const cb_queue_entry *e, const char *step)
{
    cb_key k;
    uint8_t b[ENTRY_BYTES];
    entry_encode(b, e);
    if (!txn_ok(txn) || !entry_key(txn, step, &k, agency, e->seq))
        return;
    MDB_val key = val(k.b, k.len), data = val(b, sizeof b);
    int rc = mdb_put(txn->txn, txn->store->dbi[db], &key, &data, MDB_NOOVERWRITE);
    if (rc == 0)
        count_change(txn, db, agency, +1);
    else if (rc == MDB_KEYEXIST) /* which pointed data at the stored value */
        cb_st_check(txn, mdb_put(txn->txn, txn->store->dbi[db], &key, &(MDB_val){sizeof b, b}, 0), step);
    else
        cb_st_check(txn, rc, step);
}

static bool entry_del(cb_txn *txn, int db, const char *agency, uint64_t seq, const char *step)
{
    cb_key k;
    bool deleted = entry_key(txn, step, &k, agency, seq) && db_del(txn, db, val(k.b, k.len), step);
    if (deleted)
        count_change(txn, db, agency, -1);
    return deleted;
}

/* Queue or parked entries of events below the floor (replays included,
 * whoever they were queued for): each agency's entries begin its range of
 * keys (agency 0 seq), so a seek an agency finds them. */
static size_t expire_entries(cb_txn *txn, int db, uint64_t floor)
{
    size_t n = 0;
    uint8_t from[CB_KEY_MAX + 2];
    size_t from_len = 0;
    while (txn_ok(txn)) {
        MDB_cursor *c;
        MDB_val k = val(from, from_len), data;
        if (!cb_st_check(txn, mdb_cursor_open(txn->txn, txn->store->dbi[db], &c), "remove expired entries"))
            break;
        int rc = mdb_cursor_get(c, &k, &data, from_len ? MDB_SET_RANGE : MDB_FIRST);
        mdb_cursor_close(c);
        const char *agency;
        uint64_t seq;
        if (rc == 0 && !cb_key_parse(k.mv_data, k.mv_size, "SQ", &agency, &seq))
            rc = MDB_CORRUPTED;
        if (rc != 0) {
            if (rc != MDB_NOTFOUND)
                cb_st_check(txn, rc, "remove expired entries");
            break;
        }
        char name[CB_KEY_MAX + 1];
        size_t len = strlen(agency);
        if (len > CB_KEY_MAX)
            break;
        memcpy(name, agency, len + 1); /* the key's bytes go with the delete */
        if (seq < floor) {
            n += entry_del(txn, db, name, seq, "remove expired entries");
            continue;
        }
        memcpy(from, name, len); /* past this agency's keys: "agency\1" */
        from[len] = 1;
        from_len = len + 1;
    }
    return n;
}

bool cb_store_queue_get(cb_txn *txn, const char *agency, uint64_t seq, cb_queue_entry *out)
{
    return entry_get(txn, DB_QUEUE, agency, seq, out, "read queue entry");
}

bool cb_store_parked_get(cb_txn *txn, const char *agency, uint64_t seq, cb_queue_entry *out)
{
    return entry_get(txn, DB_PARKED, agency, seq, out, "read parked entry");
}

void cb_store_queue_put(cb_txn *txn, const char *agency, const cb_queue_entry *entry)
{
    entry_put(txn, DB_QUEUE, agency, entry, "put queue entry");
}

bool cb_store_queue_del(cb_txn *txn, const char *agency, uint64_t seq)
{
    return entry_del(txn, DB_QUEUE, agency, seq, "delete queue entry");
}

bool cb_store_ack(cb_txn *txn, const char *agency, uint64_t seq)
{
    return cb_store_queue_del(txn, agency, seq) || entry_del(txn, DB_PARKED, agency, seq, "delete parked entry");
}

bool cb_store_park(cb_txn *txn, const char *agency, uint64_t seq)
{
    cb_queue_entry e;
    if (!entry_get(txn, DB_QUEUE, agency, seq, &e, "park: read queue entry"))
        return false;
    entry_del(txn, DB_QUEUE, agency, seq, "park: delete queue entry");
    entry_put(txn, DB_PARKED, agency, &e, "park: put parked entry");
    return txn_ok(txn);
}

bool cb_store_unpark(cb_txn *txn, const char *agency, uint64_t seq)
{
    cb_queue_entry e;
    if (!entry_get(txn, DB_PARKED, agency, seq, &e, "unpark: read parked entry"))
        return false;
    e.attempts = 0;
    entry_del(txn, DB_PARKED, agency, seq, "unpark: delete parked entry");
    entry_put(txn, DB_QUEUE, agency, &e, "unpark: put queue entry");
    return txn_ok(txn);
}

#define OLDEST_LOOKED_AT 64

struct oldest_visit {
    unsigned seen;
    uint64_t oldest;
};

static bool visit_oldest(cb_txn *txn, void *arg, uint64_t seq, MDB_val data)
{
    struct oldest_visit *v = arg;
    cb_queue_entry e;
    if (!entry_decode(txn, data, seq, &e))
        return false;
    if (e.enqueued_ms < v->oldest)
        v->oldest = e.enqueued_ms;
    return ++v->seen < OLDEST_LOOKED_AT;
}

void cb_store_queue_stats(cb_txn *txn, const char *agency, cb_queue_stats *out)
{
    counts c = stored_counts(txn, agency);
    for (size_t i = 0; i < txn->n_deltas; i++)
        if (strcmp(txn->deltas[i].agency, agency) == 0) {
            c.queued = (uint64_t)((int64_t)c.queued + txn->deltas[i].queued);
            c.parked = (uint64_t)((int64_t)c.parked + txn->deltas[i].parked);
        }
    out->queued = c.queued;
    out->parked = c.parked;
    /* Entries are in seq order, which is the order they were queued in,
     * except one queued again by a replay: the first few cover that. */
    struct oldest_visit v = {.oldest = UINT64_MAX};
    entry_scan(txn, DB_QUEUE, agency, 0, visit_oldest, &v, "find oldest queued");
    v.seen = 0;
    entry_scan(txn, DB_PARKED, agency, 0, visit_oldest, &v, "find oldest parked");
    out->oldest_enqueued_ms = c.queued + c.parked && v.oldest != UINT64_MAX ? v.oldest : 0;
}

/* ---- room and metadata */

uint64_t cb_store_used_bytes(cb_txn *txn)
{
    if (txn->used_known)
        return txn->used;
    /* Every tree counts: the free list (DBI 0), the main DB (1) holding the
     * names, ours and the caller's keyspaces; plus the two meta pages. */
    const cb_store *s = txn->store;
    MDB_stat st = {0};
    uint64_t pages = 2;
    for (size_t i = 0; i < 2 + IX_DB_COUNT + s->n_spaces && txn_ok(txn); i++) {
        MDB_dbi dbi = i < 2 ? (MDB_dbi)i : i < 2 + IX_DB_COUNT ? s->dbi[i - 2] : s->space_dbi[i - 2 - IX_DB_COUNT];
        if (cb_st_check(txn, mdb_stat(txn->txn, dbi, &st), "measure store"))
            pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    }
    txn->used_known = !txn->write && txn_ok(txn);
    txn->used = txn_ok(txn) ? pages * st.ms_psize : 0;
    return txn->used;
}

cb_room cb_store_room(cb_txn *txn)
{
    cb_store *s = txn->store;
    if (txn->room_known && txn->put_since_room < s->map_bytes / 128 && !atomic_load(&s->disk_full))
        return txn->room;
    if (atomic_load(&s->disk_full)) {
        if (disk_available(s) < DISK_ROOM_AT)
            return CB_ROOM_DISK_FULL;
        if (txn->write) /* the writer decides; a reader only reports */
            atomic_store(&s->disk_full, false);
    }
    /* Measuring reads every database's size: done again only once the txn
     * has put a 128th of the map since. */
    uint64_t used = cb_store_used_bytes(txn);
    txn->put_since_room = 0;
    /* A map that overflowed before the fraction was reached (a batch's
     * copied pages, and pages LMDB cannot reuse yet, count against it too)
     * stays full until deliveries have drained it some way below where it
     * stood then, or below the fraction, whichever is lower. */
    double limit = s->publish_fraction * (double)s->map_bytes;
    if (atomic_load(&s->map_overflowed)) {
        uint64_t at = atomic_load(&s->overflow_used);
        if (!at && txn->write)
            atomic_store(&s->overflow_used, at = used ? used : 1);
        if (at && (double)at < limit)
            limit = (double)at;
        limit -= OVERFLOW_MARGIN * (double)s->map_bytes;
    }
    bool room = (double)used < limit;
    if (room && txn->write) {
        atomic_store(&s->map_overflowed, false);
        atomic_store(&s->overflow_used, 0);
    }
    txn->room = !txn_ok(txn) || room ? CB_ROOM : CB_ROOM_MAP_FILLED;
    txn->room_known = txn_ok(txn);
    return txn->room;
}

bool cb_st_meta_get(cb_txn *txn, const char *name, MDB_val *out)
{
    return db_get(txn, DB_META, str_val(name), out, "read meta");
}

bool cb_store_meta_get(cb_txn *txn, const char *name, void *buf, size_t cap, size_t *len)
{
    MDB_val data;
    if (!db_get(txn, DB_META, str_val(name), &data, "read meta"))
        return false;
    if (cap > 0)
        memcpy(buf, data.mv_data, data.mv_size < cap ? data.mv_size : cap);
    *len = data.mv_size;
    return true;
}

void cb_store_meta_put(cb_txn *txn, const char *name, const void *buf, size_t len)
{
    db_put(txn, DB_META, str_val(name), val(buf, len), "put meta");
}

/* ---- keyspaces */

static MDB_dbi space(const cb_txn *txn, cb_keyspace ks)
{
    assert(ks < txn->store->n_spaces);
    return txn->store->space_dbi[ks];
}

bool cb_kv_get(cb_txn *txn, cb_keyspace ks, const void *key, size_t key_len, const uint8_t **val_out, size_t *len)
{
    if (!txn_ok(txn))
        return false;
    MDB_val k = val(key, key_len), v;
    int rc = mdb_get(txn->txn, space(txn, ks), &k, &v);
    if (rc == MDB_NOTFOUND || !cb_st_check(txn, rc, "read keyspace"))
        return false;
    *val_out = v.mv_data;
    *len = v.mv_size;
    return true;
}

void cb_kv_put(cb_txn *txn, cb_keyspace ks, const void *key, size_t key_len, const void *data, size_t len)
{
    if (!txn_ok(txn))
        return;
    MDB_val k = val(key, key_len), v = val(data, len);
    if (cb_st_check(txn, mdb_put(txn->txn, space(txn, ks), &k, &v, 0), "write keyspace"))
        txn->put_since_room += key_len + len + 16;
}

void cb_kv_append(cb_txn *txn, cb_keyspace ks, const void *key, size_t key_len, const void *data, size_t len)
{
    if (!txn_ok(txn))
        return;
    MDB_val k = val(key, key_len), v = val(data, len);
    int rc = mdb_put(txn->txn, space(txn, ks), &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST) /* not above the last key after all: an ordinary put, never an error */
        rc = mdb_put(txn->txn, space(txn, ks), &k, &v, 0);
    if (cb_st_check(txn, rc, "write keyspace"))
        txn->put_since_room += key_len + len + 16;
}

bool cb_kv_del(cb_txn *txn, cb_keyspace ks, const void *key, size_t key_len)
{
    if (!txn_ok(txn))
        return false;
    MDB_val k = val(key, key_len);
    int rc = mdb_del(txn->txn, space(txn, ks), &k, NULL);
    return rc != MDB_NOTFOUND && cb_st_check(txn, rc, "delete from keyspace");
}

void cb_kv_scan(cb_txn *txn, cb_keyspace ks, const void *prefix, size_t prefix_len, const void *from, size_t from_len,
                cb_kv_fn fn, void *arg)
{
    MDB_cursor *c;
    if (!txn_ok(txn) || !cb_st_check(txn, mdb_cursor_open(txn->txn, space(txn, ks), &c), "scan keyspace"))
        return;
    /* A from below the prefix's range would stop at once: start at the range. */
    size_t common = from_len < prefix_len ? from_len : prefix_len;
    int order = common ? memcmp(from, prefix, common) : 0; /* memcmp may not be given NULL, even for nothing */
    bool from_inside = from && (order > 0 || (order == 0 && from_len >= prefix_len));
    MDB_val k = from_inside ? val(from, from_len) : val(prefix, prefix_len), v;
    int rc = k.mv_size ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(c, &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
        if (k.mv_size < prefix_len || (prefix_len && memcmp(k.mv_data, prefix, prefix_len) != 0) ||
            !fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size) || !txn_ok(txn))
            break;
    /* If fn failed the txn, LMDB freed a write txn's cursors in the abort. */
    if (txn->txn || !txn->write)
        mdb_cursor_close(c);
    if (rc != 0 && rc != MDB_NOTFOUND)
        cb_st_fail(txn, rc, "scan keyspace");
}
