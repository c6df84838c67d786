/* Retention (README, "Trust"): what has outlived its period (events with
 * everything kept about them, resolved flags, audit records) goes, on the
 * store thread's timer, a bounded step at a time inside the transaction of
 * the batch it rides with. Each step that removes anything is in the audit.
 * Used by the commit, on one thread. */
#ifndef CB_RETENTION_H
#define CB_RETENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "batch.h"
#include "config.h"
#include "rules.h"
#include "store.h"

typedef struct cb_retention cb_retention;

/* last_seq: the store's, when the commit opened it. NULL when out of memory. */
cb_retention *cb_retention_new(const cb_config *cfg, cb_rules *rules, uint64_t last_seq);
void cb_retention_free(cb_retention **r_p);

/* Whether a batch taken at now_ms is due a step. */
bool cb_retention_due(const cb_retention *r, int64_t now_ms);
/* Monotonic ms when the next step falls due (INT64_MAX: retention is off). */
int64_t cb_retention_next(const cb_retention *r);
/* The batch due a step is taken: the next is a timer's interval on, unless
 * the step finds more to do. */
void cb_retention_taken(cb_retention *r, int64_t now_ms);
/* The step, in the batch's transaction; last_seq is the seqs stored before
 * the batch's own. */
void cb_retention_step(cb_retention *r, cb_txn *txn, const cb_batch *b, uint64_t last_seq);
/* The batch's transaction committed: the step's log line is true now. */
void cb_retention_committed(cb_retention *r);
/* The batch's transaction did not commit: the step did not happen either;
 * again at the next batch. */
void cb_retention_lost(cb_retention *r, int64_t now_ms);

#endif
