/* The store thread: it alone touches the store and the delivery lanes. It
 * takes a batch from the network thread, writes all of the batch's effects in
 * one transaction (group commit), syncs, plans and packs deliveries, answers
 * queries, and hands the batch back. A failed commit is never acknowledged:
 * the batch's publishes are refused and the store is reopened. */
#ifndef CB_COMMITTER_H
#define CB_COMMITTER_H

#include <stdbool.h>
#include "batch.h"
#include "config.h"
#include "store.h"

typedef struct cb_committer cb_committer;

/* Start the thread; it takes ownership of store. zmq is the context for the
 * inproc pair between the two threads. */
cb_committer *cb_committer_start(const cb_config *cfg, cb_store *store, void *zmq, cb_error *err);
/* Stop the thread (after collecting any batch it holds) and close the store. */
void cb_committer_stop(cb_committer **c_p);

/* The network thread's end of the pair: readable when a batch comes back. */
void *cb_committer_socket(cb_committer *c);
/* Hand over a batch; the network thread must not touch it until collected. */
bool cb_committer_submit(cb_committer *c, cb_batch *batch);
/* The batch handed over, once done; NULL if it is not back yet (wait: block). */
cb_batch *cb_committer_collect(cb_committer *c, bool wait);
/* Room for every delivery one batch can carry (size of cb_batch.out). */
size_t cb_committer_max_out(const cb_committer *c);

#endif
