/* An MLLP listener: many connections at once, each read as frames
 * (mllp.h), with a size limit per message and a read timeout, answering
 * each message in the order it came (interface engines match ACKs to
 * messages by order as much as by control id). A message is answered
 * later, when its event is durable: the server hands out a ticket per
 * message and sends an answer once it and every earlier one on that
 * connection is ready. It lives in the caller's poll loop. */
#ifndef CB_MLLP_SERVER_H
#define CB_MLLP_SERVER_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tls.h"

typedef struct cb_mllp_server cb_mllp_server;
typedef uint64_t cb_mllp_ticket;

typedef struct {
    const char *listen;   /* "HOST:PORT"; port 0 picks one (cb_mllp_server_port) */
    size_t max_message;   /* bytes; a bigger message gets handler(too_big) */
    int read_timeout_ms;  /* a connection silent this long mid-message is closed (idle between messages, it stays) */
    unsigned max_pending; /* answers owed on one connection before it is read no more */
    unsigned max_conns;
    cb_tls *tls; /* MLLP over TLS (with its client CA, each sender's certificate verified); NULL: plain */
} cb_mllp_server_opts;

/* A message arrived (msg valid during the call only); too_big: msg is only
 * its first bytes. Answer it with cb_mllp_server_answer(ticket), now or later. */
typedef void (*cb_mllp_message_fn)(void *arg, cb_mllp_ticket ticket, const uint8_t *msg, size_t len, bool too_big);

/* NULL with why on failure (the address does not parse, cannot be bound). */
cb_mllp_server *cb_mllp_server_open(const cb_mllp_server_opts *opts, cb_mllp_message_fn fn, void *arg, char *why,
                                    size_t cap);
void cb_mllp_server_close(cb_mllp_server **s_p);
int cb_mllp_server_port(const cb_mllp_server *s);

/* Its fds, for poll: at most cap written, the count returned. */
size_t cb_mllp_server_fds(cb_mllp_server *s, struct pollfd *fds, size_t cap);
/* After poll: read, accept, write and time out what the fds say. */
void cb_mllp_server_handle(cb_mllp_server *s, const struct pollfd *fds, size_t n);
/* The longest the caller may wait before handle() is due for timeouts. */
int cb_mllp_server_due_ms(const cb_mllp_server *s);

/* The answer to a ticket's message (framed here). One whose connection has
 * closed is dropped: the sender resends, and the resend is known. */
void cb_mllp_server_answer(cb_mllp_server *s, cb_mllp_ticket ticket, const void *bytes, size_t len);

#endif
