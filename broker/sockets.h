/* The broker's bound sockets, set up one way: no linger at stop, deep queues,
 * and frames larger than any event allows refused by ZeroMQ before they are
 * read. */
#ifndef CB_SOCKETS_H
#define CB_SOCKETS_H

#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>
#include "cb_error.h"

#define CB_ENDPOINT_MAX 256

/* A socket of type on zmq context ctx bound to endpoint; bound receives what
 * it was bound to (a port given as * resolved). With curve_secret (Z85) it
 * is a CURVE server whose handshakes the context's ZAP handler decides.
 * NULL with err set. */
void *cb_bind(void *ctx, int type, const char *endpoint, uint32_t max_event_bytes, const char *curve_secret,
              char bound[CB_ENDPOINT_MAX], cb_error *err);
/* Close every connection to s by unbinding it from bound and binding it
 * again: at a key's revocation, every client reconnects and shakes hands
 * anew. False with err when the bind fails. */
bool cb_rebind(void *s, const char *bound, cb_error *err);

/* True for an endpoint only this machine can reach: ipc://, inproc://, and
 * tcp:// on 127.0.0.0/8, localhost or [::1]. Without CURVE the broker binds
 * nothing else. */
bool cb_endpoint_local(const char *endpoint);

/* A message read from a ROUTER: the sender's routing id and its frame. A
 * DEALER sends one frame a message; single is false when there were more,
 * which are read and dropped. */
typedef struct {
    zmq_msg_t rid, body;
    bool single;
} cb_routed;

/* The next message waiting on router, false when none is. The caller closes
 * it with cb_routed_close either way. */
bool cb_recv_routed(void *router, cb_routed *m);
void cb_routed_close(cb_routed *m);

#endif
