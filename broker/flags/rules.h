/* The handoff rules: where care may be falling between agencies. They run
 * inside the commit, in the transaction that stores the event, so a flag is
 * never lost and never raised for an event that was not stored; the
 * time-based ones run when the store thread's timer ticks, judged by the
 * wall-clock time it passes in (deadlines count from occurredAt). README,
 * "Flags", is the catalogue: what each means, raises and resolves it.
 *
 * A rule writes only keys and values it has checked (ids, configured
 * agencies, packed records), so nothing about an event can set the
 * transaction's sticky error and fail the batch. */
#ifndef CB_RULES_H
#define CB_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cb_codec.h"
#include "config.h"
#include "flagbook.h"
#include "store.h"

/* A flag raised or resolved, for the feed: its packed Frame{flag} and the
 * topics to publish it under, "flag.<agency>.<TYPE>" for each agency it
 * involves and "flag.*.<TYPE>", separated by '\n'. */
typedef struct {
    uint8_t *frame;
    size_t len;
    char *topics;
} cb_flag_note;

typedef struct {
    bool wanted; /* someone subscribes: pack notes (else nothing is packed) */
    cb_flag_note *notes;
    size_t n, cap;
} cb_flag_feed;

void cb_flag_feed_clear(cb_flag_feed *feed);

typedef struct cb_rules cb_rules;

/* Rules under cfg->flags, keeping their records in fb's keyspaces of store. */
cb_rules *cb_rules_new(const cb_config *cfg, cb_store *store, cb_flagbook fb);
void cb_rules_free(cb_rules **r_p);
/* Bring what the rules keep in the store up to this build, in a write txn
 * before the first event (true when it wrote anything). */
bool cb_rules_prepare(cb_rules *r, cb_txn *txn);

/* ev has just been stored as seq: raise what it lacks and resolve what it
 * supplies or answers. person is its pseudonym (cb_log_person). Returns the
 * types it raised, as a set of 1u << type. */
uint32_t cb_rules_event(cb_rules *r, cb_txn *txn, const cb_envelope *ev, const char *person, uint64_t seq,
                        uint64_t wall_ms, cb_flag_feed *feed);
/* A commit failed: forget what was learnt from it. */
void cb_rules_forget(cb_rules *r);
/* Write what the rules keep for the end of a transaction (the open flags'
 * counts), just before it commits. */
void cb_rules_flush(cb_rules *r, cb_txn *txn);

/* The time-based rules whose deadlines have passed by wall_ms, for at most
 * budget records. True while more are due. */
bool cb_rules_tick(cb_rules *r, cb_txn *txn, uint64_t wall_ms, size_t budget, cb_flag_feed *feed);

/* The flags open on event seq (at most cap) but its handoffs, for a
 * delivery; the caller frees each with cb_flag_free. */
size_t cb_rules_open_flags(const cb_rules *r, cb_txn *txn, uint64_t seq, cb_flag **out, size_t cap);

/* Retention is removing event seq (ev: it decoded, NULL if it did not):
 * remove what the rules keep about it, in the same transaction, and in
 * memory. (Stored events decode: they were checked and packed here.) */
void cb_rules_expire_event(cb_rules *r, cb_txn *txn, uint64_t seq, const cb_envelope *ev);
/* Remove up to budget flags resolved before before_ms (flagbook.h). */
size_t cb_rules_expire_closed(cb_rules *r, cb_txn *txn, uint64_t before_ms, size_t budget, bool *more);

/* "MISSING_INFORMATION", ...: the Flag.Type's name. */
const char *cb_flag_type_name(unsigned type);

#endif
