/* The commit: one batch's effects on the store and the delivery lanes, in
 * one transaction, and memory moved to match only once it has committed
 * (commit.c says what each part of a batch does). It owns the delivery
 * lanes; the store stays its caller's. Used by one thread at a time. */
#ifndef CB_COMMIT_H
#define CB_COMMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "config.h"
#include "delivery.h"
#include "store.h"

typedef struct cb_commit cb_commit;

/* Seqs go on from the store's last. NULL with err set on failure. */
cb_commit *cb_commit_new(const cb_config *cfg, cb_store *store, cb_error *err);
void cb_commit_free(cb_commit **c_p);

/* Judge the batch's acknowledgements, apply its lane changes, and when
 * there is anything to write (its input, deliveries due at b->now_ms, or
 * deliveries a goodbye gave back) commit it: the batch's results (each
 * publish's answer, replay replies, packed deliveries in b->out, exit_status
 * when the store is lost) are then filled in. b->out must hold
 * cb_commit_max_out entries. What is recorded is stamped b->wall_ms: the
 * commit reads no clock. */
void cb_commit_batch(cb_commit *c, cb_batch *b);
/* True when a batch with no input would still have work at now_ms. */
bool cb_commit_has_work(const cb_commit *c, int64_t now_ms);
/* Monotonic ms when the next redelivery falls due (INT64_MAX: none). */
int64_t cb_commit_next_deadline(const cb_commit *c);
/* The most deliveries one batch can carry out. */
size_t cb_commit_max_out(const cb_commit *c);
uint64_t cb_commit_last_seq(const cb_commit *c);
/* One agency's deliveries in flight, and acknowledgements refused since start. */
void cb_commit_lane(const cb_commit *c, unsigned agency, uint32_t *in_flight, uint64_t *refused_acks);

#endif
