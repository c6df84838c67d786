/* The flags' records in the store: keyspaces of their own beside the
 * events, written in the commit that stores what raised them.
 *
 *   flags     id(u64)                   -> packed Flag
 *   flag_ix   agency 0 status(u8) ~id   -> nothing: every agency a flag involves,
 *                                          newest first, open and resolved apart
 *   handoffs  seq(u64)                  -> packed HandoffRecord
 *   due       due_ms(u64) seq(u64)      -> nothing: when a record's next
 *                                          time-based rule falls due
 *   person    person hash(u64) ~id      -> nothing: open flags a later event
 *                                          about the person may resolve
 *   people    seq(u64)                  -> packed PersonRecord, as the event left it (person.c)
 *   early     event id 0 seq(u64)       -> nothing: a response stored before the event it
 *                                          answers, applied when that event arrives
 *   closed    resolved_ms(u64) id(u64)  -> nothing: resolved flags, oldest first, for
 *                                          retention.closed_flag_days
 *   numbered  seq(u64)                  -> u32: the next number for the event's flags,
 *                                          once retention has removed its last one
 *   open_count agency 0 type(u8)        -> u64: the open flags of a type involving an agency
 *                                          (their open flag_ix entries), for the metrics
 *
 * A flag's id is its event's seq << 16 and a number within the event, so an
 * event's flags are one key range. An INTER_AGENCY_HANDOFF is not stored as a
 * Flag: its number is the recipient's place in the event's toAgencies, and it
 * is read from the handoff record, whose recipient's stage is its state (one
 * write per handed-off event, not one per recipient). Every other flag is a
 * stored Flag numbered from CB_FLAG_STORED. */
#ifndef CB_FLAGBOOK_H
#define CB_FLAGBOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cb_codec.h"
#include "store.h"

typedef Carebridge__V1__Flag cb_flag;
typedef Carebridge__V1__Flag__Type cb_flag_type;
typedef Carebridge__V1__HandoffRecord cb_handoff_record;

#define CB_FLAG_TYPES     11    /* Flag.Type values, TYPE_UNSPECIFIED included */
#define CB_FLAG_ID_BITS   16    /* a flag's number within its event */
#define CB_FLAG_STORED    256   /* numbers below: the handoff record's recipients */
#define CB_FLAG_PER_EVENT 65536 /* numbers in all */

/* The keyspaces, in the order cb_store_open_with is given them after
 * whatever the caller opens before: pass cb_flagbook_keyspaces and the base. */
extern const char *const cb_flagbook_keyspaces[];
#define CB_FLAGBOOK_KEYSPACES 10
#define CB_FLAGBOOK_KEYSPACE_NAMES                                                                                     \
    "flags", "flag_ix", "handoffs", "due", "person", "people", "early", "closed", "numbered", "open_count"

/* Changes to open_count a transaction has made, written once at its end
 * (cb_flagbook_flush): a flag opened or resolved costs an addition here, not
 * a read and a write of the keyspace. */
#define CB_OPEN_DELTAS 64
typedef struct {
    struct {
        char agency[64];
        unsigned type;
        int64_t delta;
    } d[CB_OPEN_DELTAS];
    size_t n;
} cb_open_deltas;

typedef struct {
    cb_keyspace flags, ix, handoffs, due, person, people, early, closed, numbered, open_count;
    cb_open_deltas *deltas; /* the writer's (cb_rules'); NULL: counts are written at once */
} cb_flagbook;

/* The keyspaces from `base`, the position of the first in the store's list. */
cb_flagbook cb_flagbook_at(cb_keyspace base);
/* Where the broker's store has them: it opens them first (broker.c), so the
 * commit and the query thread find them at the same place. */
static inline cb_flagbook cb_flagbook_broker(void)
{
    return cb_flagbook_at(0);
}

static inline uint64_t cb_flag_id(uint64_t seq, unsigned number)
{
    return seq << CB_FLAG_ID_BITS | number;
}
static inline uint64_t cb_flag_seq(uint64_t id)
{
    return id >> CB_FLAG_ID_BITS;
}

/* ---- handoff records */

/* The record of a handed-off event, unpacked (cb_flag_free_record), or NULL. */
cb_handoff_record *cb_flagbook_record(const cb_flagbook *fb, cb_txn *txn, uint64_t seq);
/* Store it (fresh: the event's first, so an append), and move its due
 * entry from old_due_ms to new_due_ms (0: none). */
void cb_flagbook_put_record(const cb_flagbook *fb, cb_txn *txn, uint64_t seq, const cb_handoff_record *r, bool fresh,
                            uint64_t old_due_ms, uint64_t new_due_ms);
void cb_flagbook_free_record(cb_handoff_record **r_p);
/* Forget a due entry whose record is not there. */
void cb_flagbook_drop_due(const cb_flagbook *fb, cb_txn *txn, uint64_t seq, uint64_t due_ms);

/* Seqs of records due at or before now_ms, earliest first, at most cap. */
size_t cb_flagbook_due(const cb_flagbook *fb, cb_txn *txn, uint64_t now_ms, uint64_t *seqs, uint64_t *due_ms,
                       size_t cap);

/* ---- flags */

/* Store a new flag (f->id set by the caller, status OPEN or RESOLVED) and
 * index it under each of its agencies; person_hash non-zero also indexes it
 * for the person while it is open. */
void cb_flagbook_add(const cb_flagbook *fb, cb_txn *txn, const cb_flag *f, uint64_t person_hash);
/* Store a changed flag: when it has just been resolved, its open index
 * entries move to resolved. */
void cb_flagbook_update(const cb_flagbook *fb, cb_txn *txn, const cb_flag *f, bool was_open, uint64_t person_hash);

/* A flag's index entries, as it opens or is resolved (at resolved_ms). */
void cb_flagbook_index_flag(const cb_flagbook *fb, cb_txn *txn, uint64_t id, cb_flag_type type,
                            const char *const *agencies, size_t n_agencies, bool now_open, bool was_open,
                            uint64_t resolved_ms);
/* The open flags of each type involving each agency: fn(arg, agency, type,
 * count) for every count above 0, by agency then type. */
typedef void (*cb_open_count_fn)(void *arg, const char *agency, unsigned type, uint64_t count);
void cb_flagbook_open_counts(const cb_flagbook *fb, cb_txn *txn, cb_open_count_fn fn, void *arg);
/* Write the transaction's open_count changes (before it commits); forget
 * them instead when it did not. */
void cb_flagbook_flush(const cb_flagbook *fb, cb_txn *txn);
void cb_flagbook_forget(const cb_flagbook *fb);

/* The first number free for a stored flag of seq. */
unsigned cb_flagbook_next_number(const cb_flagbook *fb, cb_txn *txn, uint64_t seq);

/* Each flag of an event, stored and handoff alike, unpacked for fn, which
 * may keep it by taking *f (setting it NULL; it frees it later). False from
 * fn stops. The handoff flags need the event's record (NULL: none). */
typedef bool (*cb_flag_fn)(void *arg, cb_flag **f);
void cb_flagbook_event_flags(const cb_flagbook *fb, cb_txn *txn, uint64_t seq, const cb_handoff_record *rec,
                             cb_flag_fn fn, void *arg);
/* The open flags indexed for a person. */
void cb_flagbook_person_flags(const cb_flagbook *fb, cb_txn *txn, uint64_t person_hash, cb_flag_fn fn, void *arg);
/* The flags involving agency, newest first, open or resolved ones, from
 * before id `before` (0: from the newest). */
void cb_flagbook_agency_flags(const cb_flagbook *fb, cb_txn *txn, const char *agency, bool open, uint64_t before,
                              cb_flag_fn fn, void *arg);
/* One flag by id, unpacked (free with cb_flag_free), or NULL. */
cb_flag *cb_flagbook_get(const cb_flagbook *fb, cb_txn *txn, uint64_t id);
void cb_flag_free(cb_flag **f_p);

/* ---- retention */

/* Everything kept about event seq, which retention is removing: its handoff
 * record (rec, NULL: none; its due entry is the caller's), its flags with
 * their index entries (person_hash: the event's person), its person record,
 * and the early answer it is to answered_id (NULL: none). */
void cb_flagbook_forget_event(const cb_flagbook *fb, cb_txn *txn, uint64_t seq, const cb_handoff_record *rec,
                              uint64_t person_hash, const char *answered_id);
/* A store written before the closed and open_count keyspaces: index its
 * resolved flags and count its open ones, once (true when it wrote). */
bool cb_flagbook_prepare(const cb_flagbook *fb, cb_txn *txn);
/* Remove up to budget flags resolved before before_ms: a stored flag goes
 * with its index entries; a handoff flag's index entries go and its record
 * notes it removed (the record stays with its event). The number removed;
 * *more when the budget stopped it. */
size_t cb_flagbook_expire_closed(const cb_flagbook *fb, cb_txn *txn, uint64_t before_ms, size_t budget, bool *more);

/* The INTER_AGENCY_HANDOFF flag of recipient i of a record, built from it
 * (NULL once retention has removed it). */
cb_flag *cb_flagbook_handoff_flag(const cb_handoff_record *rec, uint64_t seq, size_t i);

#endif
