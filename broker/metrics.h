/* The broker's counters for Prometheus (README, "Metrics"): bumped by the
 * network thread (answers) and the store thread (commits) with relaxed
 * atomic adds, which cost the hot path nothing it would notice, and read
 * by the monitor's thread, which renders them with what status knows (per
 * agency queues, the store's size) in the text exposition format. They
 * carry no personal data: counts by event type, error code and agency. */
#ifndef CB_METRICS_H
#define CB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "cb_error.h"
#include "config.h"

typedef struct cb_metrics cb_metrics;

cb_metrics *cb_metrics_new(void);
void cb_metrics_free(cb_metrics **m_p);

/* The network thread: n ACKs sent (duplicates among them), one NACK of code. */
void cb_metrics_acks(cb_metrics *m, size_t n, size_t duplicates);
void cb_metrics_nack(cb_metrics *m, cb_code code);
/* The store thread: a batch that committed in took_us microseconds. */
void cb_metrics_committed(cb_metrics *m, const cb_batch *b, int64_t took_us);

/* What the monitor renders beside the counters. */
typedef struct {
    const Carebridge__V1__StatusReply *status; /* per agency, and the store */
    uint64_t syncs;                            /* write commits, each synced */
    /* Open flags: flags_open[agency * n_types + type], agencies in status's
     * order, types by Flag.Type value (NULL: none known). */
    const uint64_t *flags_open;
    unsigned n_types;
} cb_metrics_view;

/* The text exposition (version 0.0.4), malloc'ed; NULL when out of memory. */
char *cb_metrics_render(const cb_metrics *m, const cb_metrics_view *v, size_t *len);

#endif
