/* The durable store: one LMDB environment with named databases, so an event,
 * its indexes and its delivery-queue entries commit in one transaction. This
 * is the only file pair that includes <lmdb.h>.
 *
 * Databases (keys big-endian so byte order is numeric order):
 *   events   seq(u64)                      -> packed carebridge.v1.Envelope
 *   queue    agency + 0 + seq              -> enqueued_ms(u64) attempts(u32)
 *   parked   agency + 0 + seq              -> enqueued_ms(u64) attempts(u32)
 *   meta     name                          -> bytes (with each agency's queue
 *                                             counts, the index directories
 *                                             and the retention floor)
 *   stored   minute(u64)                   -> the first seq stored in it
 *   ks.NAME  the callers' keyspaces (below): keys and values of their own
 * and three layered indexes (store_index.c), each of (hash, seq) entries:
 *   ids      hash(event_id)
 *   persons  hash(person key: "nhs:..", "chi:..", "local:sys:val")
 *   cases    hash(from_agency + 0 + case_ref)
 * The hash is SipHash under a key kept in the store, so a lookup may find
 * an event of another key only by a 2^-64 chance no sender can steer: ids are
 * checked here, person and case matches by the caller.
 *
 * A transaction carries a sticky error (after CZ-NIC Knot's knot_lmdb): once
 * an operation fails, later ones do nothing and the commit reports the first
 * failure, so callers write straight-line code and check once. Not-found is a
 * plain false, never an error.
 *
 * Only one thread writes (and reopens); read transactions may be used on any
 * thread at the same time. */
#ifndef CB_STORE_H
#define CB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cb_error.h"

#define CB_DIGEST_BYTES 16
#define CB_KEY_MAX      400 /* longest index key part; LMDB keys stop at 511 bytes */

typedef struct cb_store cb_store;
typedef struct cb_txn cb_txn;

/* Given each seq an index holds for a key; false stops the lookup. It may
 * be called holding the readers' lock on the index tails, so it collects
 * seqs and must not look up an index itself. */
typedef bool (*cb_seq_fn)(void *arg, uint64_t seq);

typedef struct {
    uint64_t seq;
    uint64_t enqueued_ms; /* wall-clock ms since the epoch when queued */
    uint32_t attempts;    /* deliveries made so far */
} cb_queue_entry;

/* Open (creating dir and files as needed) with a map of map_bytes.
 * Publishes are refused (cb_store_room) once the pages in use pass
 * publish_fraction of the map, keeping headroom for deletes. NULL with err set
 * (code STORE_UNAVAILABLE, reason naming the step) on failure. */
cb_store *cb_store_open(const char *dir, uint64_t map_bytes, double publish_fraction, cb_error *err);
/* The same, with keyspaces of the caller's own (below), named by
 * n_keyspaces names of at most 32 printable bytes. */
#define CB_KEYSPACES_MAX 16
cb_store *cb_store_open_with(const char *dir, uint64_t map_bytes, double publish_fraction, const char *const *keyspaces,
                             size_t n_keyspaces, cb_error *err);
void cb_store_destroy(cb_store **store_p);

/* Close and reopen the environment after a failed commit or sync, so nothing
 * in memory survives from the failed transaction (and MDB_PANIC is cleared).
 * No transaction may be open. */
bool cb_store_reopen(cb_store *store, cb_error *err);

/* The map size: the most the store can hold. */
uint64_t cb_store_limit_bytes(const cb_store *store);
/* Number of successful write commits since open: each one was synced. */
uint64_t cb_store_commits(const cb_store *store);

/* One write transaction at a time, on the thread that owns the store; read
 * transactions on any thread, beside it. NULL only on failure (err set). */
cb_txn *cb_txn_begin(cb_store *store, bool write, cb_error *err);
/* Commit and sync. CB_OK, or STORE_FULL (map full, or a write that met a full
 * filesystem: ENOSPC, or any failure while the filesystem has under 1 MiB
 * available) or STORE_UNAVAILABLE (any other failure, including a failed sync),
 * with err->reason naming the step.
 * A sticky error aborts instead and returns it. Frees the txn either way. */
cb_code cb_txn_commit(cb_txn **txn_p, cb_error *err);
void cb_txn_abort(cb_txn **txn_p);
/* The sticky error so far (CB_OK if none). */
cb_code cb_txn_failed(const cb_txn *txn);

/* ---- events and their indexes */

/* The highest seq stored, 0 when empty. */
uint64_t cb_store_last_seq(cb_txn *txn);
uint64_t cb_store_event_count(cb_txn *txn);
/* True with seq and the digest of its stored bytes when event_id is stored. */
bool cb_store_find_id(cb_txn *txn, const char *event_id, uint64_t *seq, uint8_t digest[CB_DIGEST_BYTES]);

/* An event to store: its packed bytes under seq, its index entries, and a
 * queue entry (attempts 0) for each recipient. */
typedef struct {
    uint64_t seq; /* above every stored seq (events are appended), or the txn fails */
    const uint8_t *bytes;
    size_t len;
    const char *event_id;
    const char *const *person_keys;
    size_t n_person_keys;
    const char *from_agency;
    const char *case_ref; /* NULL: none */
    const char *const *recipients;
    size_t n_recipients;
} cb_stored_event;
void cb_store_put_event(cb_txn *txn, const cb_stored_event *ev, uint64_t now_ms);
/* The stored bytes of seq; valid until the transaction ends. */
bool cb_store_get_event(cb_txn *txn, uint64_t seq, const uint8_t **bytes, size_t *len);

/* Calls fn for each seq indexed under the key (in no order: callers sort)
 * until fn returns false. The match is by hash: check the event. */
void cb_store_person_seqs(cb_txn *txn, const char *person_key, cb_seq_fn fn, void *arg);
void cb_store_case_seqs(cb_txn *txn, const char *from_agency, const char *case_ref, cb_seq_fn fn, void *arg);

/* ---- retention
 *
 * The store notes, to the minute, when each seq was stored, so what has
 * outlived a period is found without reading an event. Events go oldest
 * first: the floor is the oldest seq kept, and no lookup (ids, persons,
 * cases, records) ever gives one below it. A removed event's index entries
 * are deleted from the tails at once; in a sealed run they stay, skipped,
 * until the floor has passed the whole run, which is then dropped. */

/* The oldest seq kept: 1 until retention has removed any. */
uint64_t cb_store_floor(cb_txn *txn);
/* Given each expired event just before it is removed (bytes valid until
 * fn returns), to remove what is kept about it in keyspaces. */
typedef void (*cb_expire_fn)(void *arg, uint64_t seq, const uint8_t *bytes, size_t len);
typedef struct {
    size_t events;      /* removed */
    size_t undelivered; /* queue and parked entries removed with them */
    bool more;          /* the budget stopped it */
} cb_expired;
/* Remove up to budget of the oldest events stored before before_ms (whole
 * minutes before it: an event is never removed early), each with its index
 * and queue entries (replays' too), once fn has seen it. Needs a write txn. */
void cb_store_expire(cb_txn *txn, uint64_t before_ms, size_t budget, cb_expire_fn fn, void *arg, cb_expired *out);

/* ---- the layered indexes (store_index.c) */

/* ids, persons and cases index every event (store.c); records is the flag
 * rules': a person's hash under each seq that stored a person record. */
typedef enum { CB_INDEX_IDS, CB_INDEX_PERSONS, CB_INDEX_CASES, CB_INDEX_RECORDS, CB_INDEX_COUNT } cb_index;

const char *cb_store_index_name(cb_index ix);
/* The store's keyed 64-bit hash of a key. */
uint64_t cb_store_hash(const cb_store *store, const void *key, size_t len);
void cb_store_index_add(cb_txn *txn, cb_index ix, uint64_t hash, uint64_t seq);
void cb_store_index_find(cb_txn *txn, cb_index ix, uint64_t hash, cb_seq_fn fn, void *arg);
/* Seal full tails and merge runs, writing up to budget entries per index.
 * True while merges remain (cb_store_index_pending says the same later). */
bool cb_store_index_work(cb_txn *txn, uint64_t budget);
bool cb_store_index_pending(const cb_store *store);
/* What a commit owes: per_entry merged entries for each entry it added to
 * an index, paid to that index. True while merges remain. */
bool cb_store_index_pay(cb_txn *txn, uint64_t per_entry);

typedef struct {
    unsigned layers;  /* the tail and the runs a lookup reads */
    unsigned merging; /* runs being written */
    uint64_t entries;
} cb_index_shape;
void cb_store_index_shape(cb_txn *txn, cb_index ix, cb_index_shape *out);

/* ---- delivery queues */

typedef bool (*cb_entry_fn)(void *arg, const cb_queue_entry *entry);
/* Entries of agency's queue with seq > after, ascending, until fn returns false. */
void cb_store_queue_scan(cb_txn *txn, const char *agency, uint64_t after, cb_entry_fn fn, void *arg);
bool cb_store_queue_get(cb_txn *txn, const char *agency, uint64_t seq, cb_queue_entry *out);
/* Insert or overwrite. */
void cb_store_queue_put(cb_txn *txn, const char *agency, const cb_queue_entry *entry);
/* False if there was no such entry. */
bool cb_store_queue_del(cb_txn *txn, const char *agency, uint64_t seq);
/* A delivery of seq was acknowledged: delete its entry, queued or parked (a
 * delivery parked while its consumer held it). False if there was neither. */
bool cb_store_ack(cb_txn *txn, const char *agency, uint64_t seq);
/* Move an entry from the queue to the parked set (kept, never dropped). */
bool cb_store_park(cb_txn *txn, const char *agency, uint64_t seq);
/* Move a parked entry back to the queue with attempts reset to 0. */
bool cb_store_unpark(cb_txn *txn, const char *agency, uint64_t seq);
void cb_store_parked_scan(cb_txn *txn, const char *agency, uint64_t after, cb_entry_fn fn, void *arg);
bool cb_store_parked_get(cb_txn *txn, const char *agency, uint64_t seq, cb_queue_entry *out);

/* Kept counts, read in constant time; the oldest is looked for among the
 * first entries in line. */
typedef struct {
    uint64_t queued;
    uint64_t parked;
    uint64_t oldest_enqueued_ms; /* 0 when both are empty */
} cb_queue_stats;
void cb_store_queue_stats(cb_txn *txn, const char *agency, cb_queue_stats *out);

/* ---- the file's reserve
 *
 * fdatasync on a file that grows must also commit its new size and extents
 * (a filesystem journal commit): measured here, that makes it about 40%
 * slower on average and up to ten times slower at the tail. So the store keeps
 * a reserve of real zeroed blocks beyond LMDB's last page: filled at open,
 * and topped up a step at a time when the broker is idle, so no commit pays
 * for the growth. Zeros are written only past the end of the file and only
 * between transactions, so they never overwrite a page LMDB has written. */

/* True while the reserve is below `fraction` of its target (1.0: not full). */
bool cb_store_reserve_below(const cb_store *store, double fraction);
/* Extend the file by up to `budget` bytes of zeros (never past the map) and
 * sync them. No transaction may be open. False when it could add nothing (a
 * full disk: LMDB reports that where it matters, as STORE_FULL). */
bool cb_store_grow_reserve(cb_store *store, uint64_t budget);

/* ---- room and metadata */

/* Bytes in pages used by all databases (not the map's high-water mark). */
uint64_t cb_store_used_bytes(cb_txn *txn);

typedef enum {
    CB_ROOM,            /* publishes may be written */
    CB_ROOM_MAP_FILLED, /* the pages in use have passed the publish fraction of the map */
    CB_ROOM_DISK_FULL,  /* a write met a full filesystem, and it has not yet got room back */
} cb_room;
/* Whether a publish may be written now. A txn with a sticky error answers
 * CB_ROOM: its failure, not room, is what refuses it. */
cb_room cb_store_room(cb_txn *txn);

/* Small named values (the pseudonym key, the schema version). Get copies at
 * most cap bytes and sets *len to the stored length. */
bool cb_store_meta_get(cb_txn *txn, const char *name, void *buf, size_t cap, size_t *len);
void cb_store_meta_put(cb_txn *txn, const char *name, const void *buf, size_t len);

/* ---- keyspaces: databases for the modules beside the store
 *
 * A module that keeps records of its own (flags, deadlines, outcomes) names
 * its keyspaces when the store is opened and reads and writes them here, in
 * the same transactions as everything else: keys made with keys.h, values
 * its own bytes. A keyspace is the position of its name in the list given
 * to cb_store_open_with. The store adds nothing to them and reads nothing of
 * them. Failures are the transaction's sticky error, as everywhere. */

typedef unsigned cb_keyspace;

/* True with the value (valid until the transaction ends) when key is there. */
bool cb_kv_get(cb_txn *txn, cb_keyspace ks, const void *key, size_t key_len, const uint8_t **val, size_t *len);
/* Insert or overwrite. */
void cb_kv_put(cb_txn *txn, cb_keyspace ks, const void *key, size_t key_len, const void *val, size_t len);
/* The same for a key above every key in the keyspace (a seq just given
 * out): LMDB puts it at the end without searching the tree. A key that is
 * not above them all is put as by cb_kv_put. */
void cb_kv_append(cb_txn *txn, cb_keyspace ks, const void *key, size_t key_len, const void *val, size_t len);
/* True when there was one to delete. */
bool cb_kv_del(cb_txn *txn, cb_keyspace ks, const void *key, size_t key_len);
/* Each entry whose key begins with prefix, in key order from the first at
 * or after from (NULL: from the prefix), until fn returns false. */
typedef bool (*cb_kv_fn)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len);
void cb_kv_scan(cb_txn *txn, cb_keyspace ks, const void *prefix, size_t prefix_len, const void *from, size_t from_len,
                cb_kv_fn fn, void *arg);

#endif
