/* One transaction's work, passed from the network thread to the store
 * thread and back. While the store thread commits and syncs one batch, the
 * network thread reads and checks the next and answers the one before; each
 * batch is owned by one thread at a time (committer.c says how they pass).
 *
 * The network thread fills the inputs (admissible publishes, delivery
 * acknowledgements, queries, lane changes); the store thread fills the
 * results (each publish's answer, packed query replies, packed deliveries)
 * and the network thread sends them. */
#ifndef CB_BATCH_H
#define CB_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "cb_arena.h"
#include "audit.h"
#include "cb_codec.h"
#include "log.h"
#include "rules.h"
#include "store.h"

/* One transaction's most frames: enough for several senders' full windows
 * (1024 each by default), so at full load the open batch seldom fills and
 * the network thread goes on reading while a commit runs; queries above all,
 * which the query thread answers beside the commit. */
#define BATCH_MAX        4096
#define BATCH_REPLAYS    256  /* replay requests (and refusals to record) in one transaction */
#define BATCH_AUDITS     1024 /* audit records handed in by the threads, beside those the commit makes */
#define CB_REPLAY_ID_MAX 128  /* an event id's longest (intake.h: CB_EVENT_ID_MAX) */

/* A connection as the store thread knows it: its slot in the network thread's
 * peer table and that slot's generation, so a delivery planned for a
 * connection that has since gone is never sent to its slot's next occupant. */
typedef int cb_peer_token;

typedef struct {
    cb_peer_token peer;
    uint64_t ref;
    cb_frame *frame; /* in the batch's arena, as is bytes */
    uint8_t *bytes;  /* the canonical packed Envelope: the stored form */
    size_t len;
    uint8_t digest[CB_DIGEST_BYTES];
    uint32_t warnings;             /* a cb_warnings set (intake.h): intake's, then the store thread's */
    char person[CB_PSEUDONYM_LEN]; /* its person's pseudonym, for the log and the flags */
    /* results */
    uint32_t flags; /* the flag types its commit raised, as 1u << type: its ACK lists them */
    cb_code code;
    char reason[160];
    uint64_t seq;
    bool duplicate;
} cb_publish;

/* A deliveryAck. Only the connection holding the delivery in flight may
 * acknowledge it; any other is refused (NOT_IN_FLIGHT) and deletes nothing. */
typedef struct {
    cb_peer_token peer;
    uint64_t ref;
    unsigned agency;
    uint64_t seq;
    bool refused; /* result */
} cb_delivery_ack;

/* A replay request, or a refusal to answer once its audit record is
 * committed (refusal: err is set, and audit says what was refused). */
typedef struct {
    cb_peer_token peer;
    uint64_t ref;
    cb_frame *frame; /* a replay request; NULL with refusal */
    bool refusal;
    bool audited;         /* write audit for it in the commit */
    cb_audit_entry audit; /* who asked, and what: the commit fills in the outcome */
    /* results: a packed reply frame, or a refusal */
    uint8_t *reply;
    size_t reply_len;
    cb_error err;
    uint64_t replay_seq;                  /* replay: the entry queued again */
    char replay_id[CB_REPLAY_ID_MAX + 1]; /* replay: its event id */
    bool was_parked;                      /* replay: released from parked */
    bool was_queued;                      /* replay: it was still queued, nothing to do */
} cb_request;

typedef enum {
    CB_LANE_ATTACH,  /* the peer receives the agency's queue */
    CB_LANE_DETACH,  /* the peer has gone: what was in flight counts as attempted */
    CB_LANE_RELEASE, /* the peer said goodbye: what was in flight is returned uncounted */
} cb_lane_op_kind;

typedef struct {
    cb_lane_op_kind kind;
    unsigned agency; /* attach only */
    uint32_t window; /* attach only: the peer's credit, 0 for the broker's limit */
    cb_peer_token peer;
    char fingerprint[CB_FINGERPRINT_LEN + 1]; /* attach only: its key's, for the deliveries' audit */
} cb_lane_op;

typedef struct {
    cb_peer_token peer;
    uint8_t *frame; /* a packed Frame{deliver} */
    size_t len;
} cb_outbound;

typedef struct {
    cb_arena *arena;  /* every frame decoded into the batch, and the stored forms */
    int64_t now_ms;   /* monotonic, when the store thread took the batch, */
    uint64_t wall_ms; /* and the wall clock read with it (clock.h) */
    cb_publish pubs[BATCH_MAX];
    size_t n_pubs;
    cb_delivery_ack acks[BATCH_MAX];
    size_t n_acks;
    cb_request reqs[BATCH_REPLAYS];
    size_t n_reqs;
    cb_lane_op ops[2 * BATCH_MAX];
    size_t n_ops;
    cb_audit_entry audits[BATCH_AUDITS]; /* written in the commit, as they are */
    size_t n_audits;
    uint64_t generation; /* which batch: whoever handed in audits waits for it (committer.h) */
    bool audits_written; /* result: the commit that holds them succeeded */

    /* results of the store thread */
    cb_outbound *out; /* capacity: cb_delivery_max_steps */
    size_t n_out;
    size_t n_redelivered; /* of them, deliveries made again (attempt > 1) */
    cb_flag_feed feed;    /* flags raised and resolved, for the feed (wanted: set by the network thread) */
    int exit_status;      /* non-zero: the store is lost, stop */
} cb_batch;

/* A batch whose out holds max_out deliveries; NULL when out of memory. */
cb_batch *cb_batch_new(size_t max_out);
void cb_batch_free(cb_batch **b_p);

/* Add an admitted publish of frame f (decoded into the batch's arena, or
 * living as long as the batch holds it): its stored form packed into the
 * arena and its digest taken. NULL when out of memory (nothing added). The
 * batch must have room. */
cb_publish *cb_batch_add_publish(cb_batch *b, cb_peer_token peer, uint64_t ref, cb_frame *f, uint32_t warnings);

/* Free the packed deliveries, sent or not. */
static inline void cb_batch_free_out(cb_batch *b)
{
    for (size_t i = 0; i < b->n_out; i++)
        free(b->out[i].frame);
    b->n_out = 0;
    cb_flag_feed_clear(&b->feed);
}

/* True when the batch carries anything for the store thread. */
static inline bool cb_batch_has_input(const cb_batch *b)
{
    return b->n_pubs || b->n_acks || b->n_reqs || b->n_ops || b->n_audits;
}

/* True while the network thread may read another frame into the batch (a
 * frame can add up to two lane operations). */
static inline bool cb_batch_has_room(const cb_batch *b)
{
    return b->n_pubs < BATCH_MAX && b->n_acks < BATCH_MAX && b->n_reqs < BATCH_REPLAYS &&
           b->n_ops + 2 <= sizeof b->ops / sizeof b->ops[0] && b->n_audits < BATCH_AUDITS;
}

#endif
