/* The store's insides, shared by its two files: store.c (the environment,
 * transactions, events, queues, metadata) and store_index.c (the layered
 * indexes). Nothing outside them includes this, or <lmdb.h>. */
#ifndef CB_STORE_IMPL_H
#define CB_STORE_IMPL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include "keys.h"
#include "store.h"

/* The fixed databases. Each index also has IX_SLOTS databases of its own. */
enum { DB_EVENTS, DB_QUEUE, DB_PARKED, DB_META, DB_FILTERS, DB_STORED, DB_FIXED };

/* ---- the layered index (store_index.c says why and how)
 *
 * An index is a pool of slots, each an LMDB database of 16-byte keys
 * (hash, seq): one slot takes new entries (the tail), some are sealed runs,
 * and a merge writes sorted runs of a level into one run of the next. */
#define IX_SLOTS    40
#define IX_MERGES   3 /* merges in progress at once, lowest level first */
#define IX_FANIN    6 /* runs of one level merged into one of the next */
#define IX_NONE     0xFF
#define IX_KEY      16
#define IX_DB_COUNT (DB_FIXED + CB_INDEX_COUNT * IX_SLOTS)

enum { SLOT_FREE, SLOT_TAIL, SLOT_RUN, SLOT_BUILD };

typedef struct {
    uint8_t out; /* IX_NONE: this merge is not in use */
    uint8_t n_src;
    uint8_t src[IX_FANIN];
} ix_merge;

/* Stored whole in the meta database under "index.<name>", so a reader's
 * snapshot has the directory that matches its slots. */
typedef struct {
    uint32_t version;
    uint8_t tail;
    uint8_t state[IX_SLOTS];
    uint8_t level[IX_SLOTS];
    uint32_t filter_blocks[IX_SLOTS]; /* a run's filter size (0: none) */
    ix_merge merges[IX_MERGES];
    /* No entry of a run has a seq above its max_seq: once the store's floor
     * has passed it, the whole run has expired and is dropped. */
    uint64_t max_seq[IX_SLOTS];
} ix_dir;

/* A run's filter is written in key order, a chunk of FILTER_CHUNK_BLOCKS
 * 64-byte blocks at a time (store_index.c). A merge's chunk in progress
 * lives here between its steps, good only while no write txn has been lost
 * since (one that did not commit may have put chunks that are not there). */
#define FILTER_BLOCK_BYTES  64
#define FILTER_CHUNK_BLOCKS 256
typedef struct {
    bool active;
    uint8_t ix, slot;
    uint32_t blocks, chunk;
    bool dirty;
    uint64_t losses; /* the store's write_losses when it was last good */
    uint8_t buf[FILTER_CHUNK_BLOCKS * FILTER_BLOCK_BYTES];
} filter_writer;

/* A tail in memory: open addressing on the hash, seq 0 marking an empty
 * place (seqs start at 1). The store thread keeps one of the ids and the
 * records tails (every publish looks up its id, and the flag rules its
 * person's newest record); the readers keep one of each tail (store_index.c). */
#define TAIL_TABLE_SLOTS (1u << 15) /* kept under half full: a tail of up to 16384 */
typedef struct {
    bool built, valid;
    uint8_t slot;
    uint64_t losses;
    uint64_t first_seq;   /* readers': the tail's first entry when built (0: empty), */
    uint8_t last[IX_KEY]; /* and the last entry read into it */
    size_t n;
    uint64_t hash[TAIL_TABLE_SLOTS];
    uint64_t seq[TAIL_TABLE_SLOTS];
} tail_table;

struct cb_store {
    MDB_env *env; /* NULL after a failed reopen */
    MDB_dbi dbi[IX_DB_COUNT];
    char *spaces[CB_KEYSPACES_MAX]; /* the callers' keyspaces: "ks.<name>" */
    MDB_dbi space_dbi[CB_KEYSPACES_MAX];
    size_t n_spaces;
    char *dir;
    uint64_t map_bytes;
    double publish_fraction;
    uint64_t commits;
    uint8_t hash_key[16];           /* keys the index hash, so colliding ids cannot be chosen */
    bool writing;                   /* a write txn is open (only the store thread writes) */
    atomic_bool disk_full;          /* a write failed on a full filesystem; cleared once room returns */
    atomic_bool map_overflowed;     /* a write met MDB_MAP_FULL; cleared once well below the fraction */
    _Atomic uint64_t overflow_used; /* the pages in use the first time room was measured after it */
    uint64_t reserve_target;        /* zeroed bytes to keep beyond LMDB's last page */
    bool index_work;                /* the last write txn left index work to do */
    uint64_t write_losses;          /* write txns that did not commit */
    filter_writer merge_filters[CB_INDEX_COUNT][IX_MERGES];
    filter_writer seal_filter;
    tail_table writer_tails[CB_INDEX_COUNT]; /* ids and records: the store thread's alone */
    /* The readers' tables of the tails, one lock for all: a lookup reads only
     * what was appended since the last. */
    tail_table reader_tails[CB_INDEX_COUNT];
    pthread_mutex_t reader_tails_mu;
    /* Read transactions may run on any thread; reopening the environment
     * takes this for writing, so no reader is inside it meanwhile. */
    pthread_rwlock_t env_lock;
};

/* A change to one agency's queued and parked counts, kept until commit. */
typedef struct {
    char agency[64];
    int64_t queued, parked;
} count_delta;

struct cb_txn {
    cb_store *store;
    MDB_txn *txn; /* NULL once a failure has aborted it */
    bool write;
    bool committed;
    cb_error err; /* sticky: the first failure */
    /* Index directories, read on first use; a write txn's changes are
     * written back at commit. */
    ix_dir *dirs[CB_INDEX_COUNT];
    bool dirs_dirty[CB_INDEX_COUNT];
    uint64_t index_added[CB_INDEX_COUNT]; /* entries added to each: the merge work this txn owes */
    count_delta *deltas;
    size_t n_deltas;
    bool used_known; /* a read txn's size of the store, measured once: it cannot change */
    uint64_t used;
    bool room_known; /* room as last measured, and bytes put since */
    cb_room room;
    uint64_t put_since_room;
    bool stamped; /* the time index is known up to stamped_minute */
    uint64_t stamped_minute;
    bool floor_known; /* the oldest seq kept (cb_store_floor), read once */
    bool floor_moved; /* this txn removed events: runs may have expired */
    uint64_t floor;
};

static inline MDB_val val(const void *p, size_t n)
{
    return (MDB_val){.mv_size = n, .mv_data = (void *)p};
}

static inline bool txn_ok(const cb_txn *txn)
{
    return txn->err.code == CB_OK;
}

/* Remember the first failure and abort the LMDB txn at once. Returns false. */
bool cb_st_fail(cb_txn *txn, int rc, const char *step);
/* rc == 0, or the txn fails with it. */
bool cb_st_check(cb_txn *txn, int rc, const char *step);
bool cb_st_meta_get(cb_txn *txn, const char *name, MDB_val *out);

/* store_index.c: write back the directories a write txn changed; forget them. */
void cb_st_index_flush(cb_txn *txn);
void cb_st_index_forget(cb_txn *txn);
/* Drop the runs the floor has passed. */
void cb_st_index_drop_expired(cb_txn *txn);
/* Delete seq's entries from every index's tail (keyed seq first). */
void cb_st_index_remove_seq(cb_txn *txn, uint64_t seq);

#endif
