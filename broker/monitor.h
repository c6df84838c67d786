/* The broker's HTTP side for monitoring, on libmicrohttpd's own thread:
 * GET /metrics (Prometheus text, metrics.h), /healthz (the process is
 * alive: 200) and /readyz (200 once the store is open and publishing is
 * not paused; 503 saying why otherwise), at broker.metrics. It reads the
 * store in read transactions of its own, as the query thread does, and
 * never touches the network or store threads' state but their counters. */
#ifndef CB_MONITOR_H
#define CB_MONITOR_H

#include "config.h"
#include "metrics.h"
#include "reader.h"
#include "store.h"

typedef struct cb_monitor cb_monitor;

/* Listen on host_port ("127.0.0.1:9570"; port 0: any free one), so a busy
 * port refuses the start before the store is opened; what was bound is
 * copied to bound. Until cb_monitor_serve, /readyz answers 503. */
cb_monitor *cb_monitor_start(const char *host_port, char bound[CB_ENDPOINT_MAX], cb_error *err);
/* Answer from these (the store read, never written), until stopped. */
void cb_monitor_serve(cb_monitor *m, const cb_config *cfg, cb_store *store, const cb_metrics *metrics, cb_live_fn *live,
                      void *live_arg);
/* Stop answering: before the store is closed. */
void cb_monitor_stop(cb_monitor **m_p);

#endif
