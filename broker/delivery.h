/* Delivery lanes: for each agency, the connection receiving its queue, a
 * bounded window of deliveries in flight, and a cursor into the queue. The
 * queue itself lives in the store, never on the heap, so memory stays flat
 * however long an agency is offline.
 *
 * Planning happens inside the loop's write transaction (attempt counts are
 * durable, so a delivery that crashes its adapter is parked after N tries even
 * across reconnects); the plan is applied to memory only once that
 * transaction has committed. */
#ifndef CB_DELIVERY_H
#define CB_DELIVERY_H

#include <stdbool.h>
#include <stdint.h>
#include "config.h"
#include "store.h"

typedef struct cb_delivery cb_delivery;

typedef enum {
    CB_STEP_SEND,   /* deliver (or redeliver) seq to the lane's consumer */
    CB_STEP_PARK,   /* attempts exhausted: moved to the parked set; a delivery the
                       consumer still holds keeps its place in the window until it
                       is acknowledged or the consumer goes */
    CB_STEP_FORGET, /* no longer queued (acknowledged by an earlier connection) */
} cb_step_kind;

typedef struct {
    cb_step_kind kind;
    unsigned agency;
    uint64_t seq;
    uint32_t attempt;
} cb_step;

cb_delivery *cb_delivery_new(const cb_config *cfg);
void cb_delivery_destroy(cb_delivery **d_p);

/* Most steps one plan can produce: every flight redelivered plus a full window. */
size_t cb_delivery_max_steps(const cb_delivery *d);

/* Peer `peer` now receives agency's queue with at most `window` deliveries
 * in flight (0: limits.window); anything in flight to the previous consumer
 * is redelivered to it from the start of the queue. */
void cb_delivery_attach(cb_delivery *d, unsigned agency, int peer, uint32_t window);
/* The peer said goodbye: its lanes wait for the next attach, and what was in
 * flight to it is written to `released` (up to cap; kind FORGET, with the
 * attempt it was sent as) so the caller can give those attempts back. */
size_t cb_delivery_release_peer(cb_delivery *d, int peer, cb_step *released, size_t cap);
/* The peer has gone: lanes it consumed wait, queued, for the next attach. */
void cb_delivery_detach_peer(cb_delivery *d, int peer);
int cb_delivery_consumer(const cb_delivery *d, unsigned agency);
uint32_t cb_delivery_in_flight(const cb_delivery *d, unsigned agency);

/* After a commit queued seq for agency (publish or replay). */
void cb_delivery_enqueued(cb_delivery *d, unsigned agency, uint64_t seq);
/* Whether peer holds agency's seq in flight (parked or not): only the
 * connection a delivery was made to may acknowledge it. */
bool cb_delivery_holds(cb_delivery *d, unsigned agency, int peer, uint64_t seq);
/* After a commit deleted agency's entry seq (the consumer acknowledged it). */
void cb_delivery_acked(cb_delivery *d, unsigned agency, uint64_t seq);

/* True when a plan now would send or park something. */
bool cb_delivery_has_work(const cb_delivery *d, int64_t now_ms);
/* Monotonic ms of the next redelivery deadline, INT64_MAX if none. */
int64_t cb_delivery_next_deadline(const cb_delivery *d);

/* Inside a write transaction: bump attempts, park exhausted entries, and
 * choose what to send. Writes at most cap steps; returns how many. */
size_t cb_delivery_plan(cb_delivery *d, cb_txn *txn, int64_t now_ms, cb_step *steps, size_t cap);
/* The transaction committed: take the plan into memory. */
void cb_delivery_apply(cb_delivery *d, const cb_step *steps, size_t n, int64_t now_ms);

#endif
