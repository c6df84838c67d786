/* The broker's bound sockets, set up one way: no linger at stop, deep queues,
 * and frames larger than any event allows refused by ZeroMQ before they are
 * read. */
#ifndef CB_SOCKETS_H
#define CB_SOCKETS_H

#include <stdint.h>
#include "cb_error.h"

#define CB_ENDPOINT_MAX 256

/* A socket of type on zmq context ctx bound to endpoint; bound receives what
 * it was bound to (a port given as * resolved). NULL with err set. */
void *cb_bind(void *ctx, int type, const char *endpoint, uint32_t max_event_bytes, char bound[CB_ENDPOINT_MAX],
              cb_error *err);

#endif
