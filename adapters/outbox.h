/* An adapter's durable outbox: each event an agency system hands over is
 * synced here before the adapter tells that system "accepted", and kept
 * until the broker acknowledges it, across broker outages and adapter
 * restarts. It is a carebridge store of its own (broker/store.h: the same
 * sticky-error transactions, full-disk handling and directory lock as the
 * broker's, not a copy): each event stored under a seq with its id indexed,
 * and queued for the broker until acknowledged. One process per outbox
 * (DIR/outbox.lock). Events stay once sent, so a resend of one already sent
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

/* Add a packed Envelope whose eventId is event_id. */
cb_outbox_added cb_outbox_add(cb_outbox_batch *b, const char *event_id, const uint8_t *bytes, size_t len,
                              uint64_t *seq);
/* Commit and sync: only then is a NEW event the agency system's to forget.
 * CB_OK, or the store's code (STORE_FULL, STORE_UNAVAILABLE) with err, and
 * then nothing of the batch is kept. Frees the batch either way. */
cb_code cb_outbox_commit(cb_outbox_batch **b_p, cb_error *err);
void cb_outbox_abort(cb_outbox_batch **b_p);

/* The broker acknowledged these: they need not be sent again. */
cb_code cb_outbox_sent(cb_outbox *o, const uint64_t *seqs, size_t n, cb_error *err);

/* Each event waiting for the broker with seq > after, ascending, until fn
 * returns false; bytes are valid during the call only. */
typedef bool (*cb_outbox_fn)(void *arg, uint64_t seq, const uint8_t *bytes, size_t len);
cb_code cb_outbox_waiting(cb_outbox *o, uint64_t after, cb_outbox_fn fn, void *arg, cb_error *err);
/* How many are waiting (0 when it cannot be read). */
uint64_t cb_outbox_count(cb_outbox *o);

#endif
