#include "sockets.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "zap.h"

void *cb_bind(void *ctx, int type, const char *endpoint, uint32_t max_event_bytes, const char *curve_secret,
              char bound[CB_ENDPOINT_MAX], cb_error *err)
{
    void *s = zmq_socket(ctx, type);
    int linger = 0, hwm = 100000;
    int64_t max_msg = 4 * (int64_t)max_event_bytes + 4096;
    size_t len = CB_ENDPOINT_MAX;
    if (!s) {
        cb_fail(err, CB_BAD_REQUEST, "zmq_socket: %s", zmq_strerror(errno));
        return NULL;
    }
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (type == ZMQ_ROUTER)
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg);
    if (curve_secret && !cb_zap_serve_curve(s, curve_secret, err)) {
        zmq_close(s);
        return NULL;
    }
    int one = 1; /* with CURVE, the broker judges each subscription (broker.c) */
    if (curve_secret && type == ZMQ_XPUB)
        zmq_setsockopt(s, ZMQ_XPUB_MANUAL, &one, sizeof one);
    if (zmq_bind(s, endpoint) < 0 || zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, bound, &len) < 0) {
        cb_fail(err, CB_BAD_REQUEST, "cannot bind %s: %s", endpoint, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    return s;
}

bool cb_recv_routed(void *router, cb_routed *m)
{
    zmq_msg_init(&m->rid);
    zmq_msg_init(&m->body);
    m->single = false;
    if (zmq_msg_recv(&m->rid, router, ZMQ_DONTWAIT) < 0)
        return false;
    bool received = zmq_msg_more(&m->rid) && zmq_msg_recv(&m->body, router, 0) >= 0;
    m->single = received && !zmq_msg_more(&m->body);
    while (received && zmq_msg_more(&m->body) && zmq_msg_recv(&m->body, router, 0) >= 0)
        ;
    return true;
}

void cb_routed_close(cb_routed *m)
{
    zmq_msg_close(&m->body);
    zmq_msg_close(&m->rid);
}

bool cb_rebind(void *s, const char *bound, cb_error *err)
{
    zmq_unbind(s, bound);
    /* The listener closes on ZeroMQ's I/O thread, a moment after unbind
     * returns: until then the address is still in use. */
    for (int tries = 0; tries < 400; tries++) {
        if (zmq_bind(s, bound) == 0)
            return true;
        if (errno != EADDRINUSE)
            break;
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    }
    cb_fail(err, CB_BAD_REQUEST, "cannot bind %s again: %s", bound, zmq_strerror(errno));
    return false;
}

bool cb_endpoint_local(const char *ep)
{
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9))
        return true;
    if (strncmp(ep, "tcp://", 6))
        return false;
    const char *host = ep + 6;
    if (!strncmp(host, "localhost:", 10) || !strncmp(host, "[::1]:", 6))
        return true;
    /* 127.a.b.c: digits and dots up to the port's colon. */
    if (strncmp(host, "127.", 4))
        return false;
    size_t len = strspn(host, "0123456789.");
    return host[len] == ':';
}
