/* The client library every adapter and the CLI share: one DEALER connection
 * to the broker that says hello as its agency, keeps a bounded window of
 * publishes awaiting an answer and resends any left unanswered (safe: the
 * event id is the idempotency key), receives deliveries and acknowledges
 * them, keeps the connection alive with heartbeats at the interval the
 * broker's welcome gives (and takes three silent intervals for a dead
 * broker), and says hello again when a restarted broker no longer knows it. Single-threaded; call run() often. */
#ifndef CB_CLIENT_H
#define CB_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cb_codec.h"

typedef struct cb_client cb_client;

typedef struct {
    const char *endpoint;
    const char *agency;     /* NULL: a connection for queries only */
    bool receive;           /* ask for the agency's deliveries */
    uint32_t credit;        /* deliveries wanted in flight at once; 0: the broker's limit */
    uint32_t window;        /* publishes awaiting an answer; default 1024, at most 65536 */
    size_t window_bytes;    /* and their packed bytes (one publish may pass it); default 8 MiB */
    uint32_t resend_ms;     /* resend a publish unanswered this long; default 2000 */
    uint32_t heartbeat_ms;  /* until the broker's welcome gives its own interval; default 1000 */
    const char *name;       /* software name for the broker's log */
    const char *key_file;   /* CURVE: this client's secret key file (NAME.key) ... */
    const char *broker_key; /* ... and the broker's public key, as text or a file; both NULL: no CURVE */
} cb_client_opts;

typedef struct {
    /* A publish was answered: exactly one of ack and nack is set. */
    void (*answered)(void *arg, void *tag, const Carebridge__V1__Ack *ack, const Carebridge__V1__Nack *nack);
    /* A delivery arrived. Return true to acknowledge it to the broker now, or
     * false to acknowledge it later with cb_client_ack, once the agency system
     * has taken it (or never: it is delivered again after a timeout). */
    bool (*delivered)(void *arg, const Carebridge__V1__Deliver *deliver);
} cb_client_handlers;

/* Connects (asynchronously, as ZeroMQ does) and, with an agency, says hello. */
cb_client *cb_client_new(const cb_client_opts *opts, const cb_client_handlers *handlers, void *arg, cb_error *err);
/* Says goodbye, so what is in flight to this connection goes back to the
 * queue without counting as an attempt, then closes (lingering up to 2 s to
 * send the last acknowledgements). */
void cb_client_destroy(cb_client **client_p);

/* Queue ev for the broker; false when the window is full (run, then retry).
 * The default window is sized for group commit: the broker commits one batch
 * while it reads the next, so a sender needs about two commits' worth in
 * flight (two of LMDB's efficient batches of ~512) to keep the disk busy. */
bool cb_client_publish(cb_client *c, const cb_envelope *ev, void *tag);
size_t cb_client_unanswered(const cb_client *c);
/* Forget the unanswered publish with this tag: it is not sent again, and
 * an answer to it, should one come, is not handed on. False when none. */
bool cb_client_withdraw(cb_client *c, void *tag);
/* Acknowledge delivery seq (one the delivered handler left unacknowledged). */
void cb_client_ack(cb_client *c, uint64_t seq);
bool cb_client_has_room(const cb_client *c);

/* Handle traffic and timers for up to timeout_ms (returns early once
 * something was handled). -1 on a fatal socket error. */
int cb_client_run(cb_client *c, int timeout_ms);
/* The same, timed to the microsecond (a sender pacing itself between
 * publishes waits less than a millisecond at a time). */
int cb_client_run_us(cb_client *c, int64_t timeout_us);

/* To live inside another event loop: poll the fd for POLLIN and call
 * cb_client_run(c, 0) when it is readable or cb_client_due_ms(c) has
 * passed, whichever is first. The fd (ZeroMQ's ZMQ_FD) only signals that
 * the socket changed, so due_ms answers 0 while a message is already
 * waiting: ask it right before each sleep. */
int cb_client_fd(const cb_client *c);
int cb_client_due_ms(cb_client *c);

/* Why the connection cannot go on (the broker refused the hello or the
 * key at the handshake, or the socket failed), or NULL while it can. run() returns -1 once this is set. */
const char *cb_client_failure(const cb_client *c);

/* True once the broker has welcomed the current hello. */
bool cb_client_welcomed(const cb_client *c);
/* Monotonic ms when the broker last answered anything (0 before it ever has). */
int64_t cb_client_last_heard_ms(const cb_client *c);

/* Send a query frame and wait up to timeout_ms for its answer (the reply, or
 * a Nack frame). The caller frees the result. NULL with err set on timeout. */
cb_frame *cb_client_request(cb_client *c, cb_frame *request, int timeout_ms, cb_error *err);

int64_t cb_client_now_ms(void);

#endif
