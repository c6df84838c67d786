/* The store thread: it alone writes the store and touches the delivery
 * lanes. It takes the batch the network thread is filling, commits it
 * (commit.h: all of the batch's effects in one transaction, synced; a failed
 * commit is never acknowledged), and puts it on the done list; when idle it
 * merges indexes and refills the file's reserve. Status and journeys are the
 * query thread's (reader.h). */
#ifndef CB_COMMITTER_H
#define CB_COMMITTER_H

#include <stdbool.h>
#include "batch.h"
#include "config.h"
#include "metrics.h"
#include "query.h"
#include "store.h"

typedef struct cb_committer cb_committer;

/* Start the thread; it takes ownership of store, and counts each commit
 * in metrics (NULL: none). */
cb_committer *cb_committer_start(const cb_config *cfg, cb_store *store, cb_metrics *metrics, cb_error *err);
/* Let the store thread finish what it holds and stop; its last batches are
 * then waiting in cb_committer_done. False if it did not stop within a
 * minute. */
bool cb_committer_quiesce(cb_committer *c);
/* Stop the thread (if it is still running) and close the store. */
void cb_committer_stop(cb_committer **c_p);

/* Readable when a batch is done, or the full open batch was taken. */
int cb_committer_fd(const cb_committer *c);
/* The batch to read frames into. The store thread takes it whenever it is
 * free, so it is the network thread's only between open and release. */
cb_batch *cb_committer_open(cb_committer *c);
void cb_committer_release(cb_committer *c);
/* Whether the open batch can take another frame. Asked after the last
 * cb_committer_done, so a full batch taken later still wakes the poll. */
bool cb_committer_open_has_room(cb_committer *c);
/* A committed batch to answer, oldest first; NULL when there is none. */
cb_batch *cb_committer_done(cb_committer *c);
/* Give back an answered, emptied batch. */
void cb_committer_recycle(cb_committer *c, cb_batch *b);

/* Have entries written to the store before the caller answers what they
 * record: they go in the next commit, and this waits until it is done. False
 * when that commit failed, or the store thread is stopping: then nothing may
 * be answered. For the query thread; the network thread puts its own in the
 * batch it fills. */
bool cb_committer_audit(cb_committer *c, const cb_audit_entry *entries, size_t n);

/* The store it owns, for the query thread's read transactions. */
cb_store *cb_committer_store(const cb_committer *c);
/* Each agency's deliveries in flight and refused acks, as of the last batch. */
void cb_committer_live(cb_committer *c, cb_agency_live *live);

#endif
