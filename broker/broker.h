/* The broker: a ZeroMQ ROUTER for agencies and the CLI, an XPUB feed, and the
 * store. Two threads: this one reads every frame that is ready into a batch and
 * answers; the store thread (committer.h) writes each batch's effects in one
 * LMDB transaction (group commit) and syncs it before any answer leaves. */
#ifndef CB_BROKER_H
#define CB_BROKER_H

#include <signal.h>
#include "cb_error.h"
#include "config.h"

typedef struct cb_broker cb_broker;

/* Exit status when the store cannot be reopened after a failed commit: the
 * process stops for its supervisor rather than serve from a store it cannot
 * trust (EX_TEMPFAIL). */
#define CB_EXIT_STORE_LOST 75
/* Exit status when another broker holds the data directory: a usage error. */
#define CB_EXIT_IN_USE 2

/* Lock the data directory, bind the three endpoints (port * allowed: see
 * endpoint()) and open the store, in that order, so a start refused for a
 * directory or an endpoint in use opens and creates nothing. NULL with err
 * set and *exit_status the status main should exit with. */
cb_broker *cb_broker_new(const cb_config *cfg, int *exit_status, cb_error *err);
void cb_broker_destroy(cb_broker **broker_p);

/* The endpoints as bound, with any wildcard port resolved. */
const char *cb_broker_endpoint(const cb_broker *b);
const char *cb_broker_feed(const cb_broker *b);
const char *cb_broker_queries(const cb_broker *b);
/* HOST:PORT serving /metrics, /healthz and /readyz, or "off". */
const char *cb_broker_metrics(const cb_broker *b);

/* Serve until *stop is set (by a signal handler): returns a process exit
 * status. Or until *reload is set (SIGHUP; reload may be NULL): returns
 * CB_BROKER_RELOAD, to be called again once the caller has reloaded. */
#define CB_BROKER_RELOAD (-1)
int cb_broker_run(cb_broker *b, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);

/* Take the keys and people of next, a reloaded configuration (its other
 * settings wait for a restart). A key revoked, or now another principal's,
 * closes every connection, so each must shake hands again. */
bool cb_broker_rekey(cb_broker *b, const cb_config *next, cb_error *err);

#endif
