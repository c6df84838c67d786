/* An adapter's durable outbox: each event an agency system hands over is
 * synced here before the adapter tells that system "accepted", and kept
 * until the broker acknowledges it, across broker outages and adapter
 * restarts. It is a carebridge store of its own (broker/store.h: the same
 * sticky-error transactions, full-disk handling and directory lock as the
 * broker's, not a copy): each event stored under a seq with its id indexed,
 * and queued for the broker until acknowledged. One process per outbox
 * (DIR/outbox.lock). Events stay once sent or refused, so a resend of one already sent
 * is still known for what it is; retention is the trust issue's (12).
 *
 * Additions are gathered into a batch, one transaction and one sync for all
 * an adapter took in at once: at a few milliseconds a sync, a sync per
 * message would cap a busy MLLP feed at a few hundred a second. */
#ifndef CB_OUTBOX_H
#define CB_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cb_error.h"

typedef struct cb_outbox cb_outbox;
typedef struct cb_outbox_batch cb_outbox_batch;

/* Open dir (created 0700 when missing) with a map of map_bytes; NULL with
 * err when it cannot be, or when another process holds it. */
cb_outbox *cb_outbox_open(const char *dir, uint64_t map_bytes, cb_error *err);
void cb_outbox_close(cb_outbox **o_p);

/* One batch at a time. NULL with err on failure. */
cb_outbox_batch *cb_outbox_begin(cb_outbox *o, cb_error *err);

typedef enum {
    CB_OUTBOX_NEW,      /* kept under *seq once the batch commits */
    CB_OUTBOX_AGAIN,    /* the same bytes are already kept (or sent): *seq is theirs; nothing added */
    CB_OUTBOX_CONFLICT, /* another event is kept under that id: *seq is its; nothing added */
    CB_OUTBOX_FAILED,   /* the batch has failed: cb_outbox_commit says why */
} cb_outbox_added;

/* Add a packed Envelope whose eventId is event_id. source, when not NULL,
 * names the input it came from in the agency system's own terms (an HL7
 * message's facility, control id and hash; a file's digest and line): a
 * resend of that input is then known for what it is before it is mapped
 * again, when mapping it again could give a different event (a second A03
 * for a visit updates the first). */
cb_outbox_added cb_outbox_add(cb_outbox_batch *b, const char *event_id, const char *source, const uint8_t *bytes,
                              size_t len, uint64_t *seq);
/* The seq of the event added from source (committed batches only). */
bool cb_outbox_source(cb_outbox *o, const char *source, uint64_t *seq);
/* Commit and sync: only then is a NEW event the agency system's to forget.
 * CB_OK, or the store's code (STORE_FULL, STORE_UNAVAILABLE) with err, and
 * then nothing of the batch is kept. Frees the batch either way. */
cb_code cb_outbox_commit(cb_outbox_batch **b_p, cb_error *err);
void cb_outbox_abort(cb_outbox_batch **b_p);
/* Whether the batch has failed already (its commit will say why). */
bool cb_outbox_batch_failed(const cb_outbox_batch *b);

/* What became of events since the last settlement, written in one
 * transaction and one sync: the broker acknowledged some (they need not be
 * sent again), refused some (kept aside with why, never sent again: a
 * refusal names what is wrong with the event, so a resend would be refused
 * the same), and the agency system took some deliveries (their event ids,
 * so a redelivery of one is known for a duplicate). */
typedef struct {
    uint64_t seq;
    const char *why; /* "CODE: reason", as the broker gave it */
} cb_outbox_refusal;

typedef struct {
    const uint64_t *sent;
    size_t n_sent;
    const cb_outbox_refusal *refused;
    size_t n_refused;
    const char *const *taken;
    size_t n_taken;
} cb_outbox_settlement;

/* Settling one twice is no error: answers may come twice. In a
 * transaction and a sync of its own, or in a batch's (kept when it
 * commits): a busy adapter's settlements ride the syncs its input pays
 * for anyway. Never without a sync: LMDB committing unsynced (MDB_NOSYNC)
 * can leave the file corrupt after a power loss, not merely behind. */
cb_code cb_outbox_settle(cb_outbox *o, const cb_outbox_settlement *s, cb_error *err);
void cb_outbox_batch_settle(cb_outbox_batch *b, const cb_outbox_settlement *s);

/* Whether an event with this id is kept (sent or not), with its seq. */
bool cb_outbox_find(cb_outbox *o, const char *event_id, uint64_t *seq);
/* The newest seq kept (0 for none). */
uint64_t cb_outbox_last_seq(const cb_outbox *o);

/* Whether a delivery with this event id was taken (0 when it cannot be read). */
bool cb_outbox_taken(cb_outbox *o, const char *event_id);
/* Why the broker refused seq, into why; false when it did not. */
bool cb_outbox_refused(cb_outbox *o, uint64_t seq, char *why, size_t cap);

/* Each event waiting for the broker with seq > after, ascending, until fn
 * returns false; bytes are valid during the call only. */
typedef bool (*cb_outbox_fn)(void *arg, uint64_t seq, const uint8_t *bytes, size_t len);
cb_code cb_outbox_waiting(cb_outbox *o, uint64_t after, cb_outbox_fn fn, void *arg, cb_error *err);
/* Documents an adapter serves to its agency system (the FHIR resources
 * made of deliveries, say), by key, written and synced at once. A
 * document kept again under its key replaces the old. */
cb_code cb_outbox_keep(cb_outbox *o, const char *key, const void *bytes, size_t len, cb_error *err);
/* The same inside a batch: kept once it commits, in the same sync. */
void cb_outbox_batch_keep(cb_outbox_batch *b, const char *key, const void *bytes, size_t len);
/* Each document whose key begins with prefix, in key order, until fn
 * returns false; bytes are valid during the call only. */
typedef bool (*cb_outbox_doc_fn)(void *arg, const char *key, size_t key_len, const uint8_t *bytes, size_t len);
void cb_outbox_kept(cb_outbox *o, const char *prefix, cb_outbox_doc_fn fn, void *arg);

/* How many are waiting, and how many were refused (0 when it cannot be read). */
uint64_t cb_outbox_count(cb_outbox *o);
uint64_t cb_outbox_refused_count(cb_outbox *o);

#endif
