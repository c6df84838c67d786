#define _GNU_SOURCE /* ppoll */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "curve.h"

#define SLOT_BITS      16
#define SLOT_MASK      ((1u << SLOT_BITS) - 1)
#define REQUEST_REF    (1ULL << 63) /* query refs never collide with publish refs */
#define HELLO_RETRY_MS 200          /* first retry of an unanswered hello; doubles up to the heartbeat */

typedef struct {
    uint64_t ref; /* 0 when the slot is free */
    void *tag;
    uint8_t *frame;
    size_t len;
    int64_t sent_ms;
} slot;

struct cb_client {
    cb_client_opts opts;
    cb_client_handlers handlers;
    void *arg;
    void *zmq, *sock;
    int fd;        /* the socket's ZMQ_FD, for waits shorter than a millisecond */
    void *monitor; /* the socket's handshake failures: a refused key is final */
    int monitor_fd;
    unsigned handshakes_dropped; /* in a row, since the last handshake that succeeded */
    int64_t handshake_checked_ms;
    bool welcomed;
    int64_t hello_sent_ms, hello_retry_ms, last_heard_ms, last_sent_ms;
    uint32_t heartbeat_ms; /* the broker's, from its welcome; opts.heartbeat_ms until then */
    slot *slots;
    uint32_t n_used, free_hint;
    size_t used_bytes; /* packed publishes in the window */
    uint64_t generation, next_request;
    cb_frame *reply; /* answer to the outstanding request */
    char failure[300];
    int64_t next_resend_ms; /* no unanswered publish is due before this */
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t cb_client_now_ms(void)
{
    return now_us() / 1000;
}

static void send_raw(cb_client *c, const uint8_t *buf, size_t len)
{
    /* A frame that cannot be queued now is resent by a timer. */
    if (zmq_send(c->sock, buf, len, ZMQ_DONTWAIT) >= 0)
        c->last_sent_ms = cb_client_now_ms();
}

static void send_frame(cb_client *c, const cb_frame *f)
{
    uint8_t stack[1024], *buf;
    size_t len = cb_pack_into(&f->base, stack, sizeof stack, &buf);
    if (!buf)
        return;
    send_raw(c, buf, len);
    if (buf != stack)
        free(buf);
}

static void say_hello(cb_client *c)
{
    Carebridge__V1__Hello h = CAREBRIDGE__V1__HELLO__INIT;
    h.agency = (char *)c->opts.agency;
    h.receive = c->opts.receive;
    h.window = c->opts.credit;
    h.client = (char *)(c->opts.name ? c->opts.name : "carebridge-client " CB_VERSION);
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_HELLO;
    f.hello = &h;
    send_frame(c, &f);
    /* While the broker is away, hellos queue in the socket: back off so a
     * long outage does not become a burst of them on its return. */
    c->hello_retry_ms = c->welcomed || !c->hello_retry_ms         ? HELLO_RETRY_MS
                        : c->hello_retry_ms * 2 < c->heartbeat_ms ? c->hello_retry_ms * 2
                                                                  : c->heartbeat_ms;
    c->welcomed = false;
    c->hello_sent_ms = cb_client_now_ms();
}

/* The broker's ZAP handler refuses a key it does not know, and a CURVE
 * broker any client without keys: the handshake fails each time ZeroMQ
 * reconnects, and waiting longer cannot help. A refusal (ZAP's status) or
 * a protocol error (a mechanism the broker does not speak) says so at
 * once. A connection dropped during the handshake ("no detail": a broker
 * restarting, or one that cannot judge keys at all) is final only when it
 * happens again and again, with no handshake succeeding between. */
#define HANDSHAKE_DROPS_FINAL 3
static bool watch_handshake(cb_client *c)
{
    char ep[64];
    size_t len = sizeof c->monitor_fd;
    snprintf(ep, sizeof ep, "inproc://cb-client-handshake-%p", (void *)c);
    if (zmq_socket_monitor(c->sock, ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) < 0)
        return false;
    c->monitor = zmq_socket(c->zmq, ZMQ_PAIR);
    return c->monitor && zmq_connect(c->monitor, ep) == 0 &&
           zmq_getsockopt(c->monitor, ZMQ_FD, &c->monitor_fd, &len) == 0;
}

static void check_handshake(cb_client *c)
{
    uint8_t ev[6];
    char endpoint[256];
    while (!c->failure[0] && zmq_recv(c->monitor, ev, sizeof ev, ZMQ_DONTWAIT) == sizeof ev) {
        zmq_recv(c->monitor, endpoint, sizeof endpoint, ZMQ_DONTWAIT);
        uint16_t event = (uint16_t)(ev[0] | ev[1] << 8);
        uint32_t value = (uint32_t)ev[2] | (uint32_t)ev[3] << 8 | (uint32_t)ev[4] << 16 | (uint32_t)ev[5] << 24;
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            c->handshakes_dropped = 0;
            continue;
        }
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && ++c->handshakes_dropped < HANDSHAKE_DROPS_FINAL)
            continue;
        char detail[64] = "no detail";
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            snprintf(detail, sizeof detail, "ZAP status %u", value);
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
            snprintf(detail, sizeof detail, "ZMTP protocol error 0x%x", value);
        if (c->opts.key_file)
            snprintf(c->failure, sizeof c->failure,
                     "the broker at %s refused this client's key at the handshake (%s): is its public key in the "
                     "broker's configuration, and --broker-key the broker's own?",
                     c->opts.endpoint, detail);
        else
            snprintf(c->failure, sizeof c->failure,
                     "the broker at %s refused the handshake (%s): it may require CURVE keys (--key FILE and "
                     "--broker-key KEY)",
                     c->opts.endpoint, detail);
    }
}

cb_client *cb_client_new(const cb_client_opts *opts, const cb_client_handlers *handlers, void *arg, cb_error *err)
{
    cb_client *c = calloc(1, sizeof *c);
    if (!c) {
        cb_fail(err, CB_BAD_REQUEST, "out of memory");
        return NULL;
    }
    c->opts = *opts;
    if (!c->opts.window)
        c->opts.window = 1024;
    if (!c->opts.window_bytes)
        c->opts.window_bytes = 8u << 20;
    if (c->opts.window > SLOT_MASK + 1)
        c->opts.window = SLOT_MASK + 1;
    if (!c->opts.resend_ms)
        c->opts.resend_ms = 2000;
    if (!c->opts.heartbeat_ms)
        c->opts.heartbeat_ms = 1000;
    c->heartbeat_ms = c->opts.heartbeat_ms;
    if (handlers)
        c->handlers = *handlers;
    c->arg = arg;
    c->slots = calloc(c->opts.window, sizeof *c->slots);
    c->zmq = zmq_ctx_new();
    c->sock = c->zmq ? zmq_socket(c->zmq, ZMQ_DEALER) : NULL;
    if (!c->slots || !c->sock) {
        cb_fail(err, CB_BAD_REQUEST, "cannot create a ZeroMQ socket");
        cb_client_destroy(&c);
        return NULL;
    }
    int linger = 2000, hwm = 100000, ivl = 100, ivl_max = 1000;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(c->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(c->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(c->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    size_t fd_len = sizeof c->fd;
    if (zmq_getsockopt(c->sock, ZMQ_FD, &c->fd, &fd_len) < 0 || !watch_handshake(c)) {
        cb_fail(err, CB_BAD_REQUEST, "cannot read the ZeroMQ socket's fd: %s", zmq_strerror(errno));
        cb_client_destroy(&c);
        return NULL;
    }
    char why[300];
    if (!cb_curve_client(c->sock, opts->key_file, opts->broker_key, why, sizeof why)) {
        cb_fail(err, CB_BAD_REQUEST, "%s", why);
        cb_client_destroy(&c);
        return NULL;
    }
    if (zmq_connect(c->sock, opts->endpoint) < 0) {
        cb_fail(err, CB_BAD_REQUEST, "cannot connect to %s: %s", opts->endpoint, zmq_strerror(errno));
        cb_client_destroy(&c);
        return NULL;
    }
    if (c->opts.agency)
        say_hello(c);
    return c;
}

void cb_client_destroy(cb_client **c_p)
{
    cb_client *c = *c_p;
    if (c) {
        if (c->sock && c->opts.agency && c->welcomed) {
            Carebridge__V1__Goodbye bye = CAREBRIDGE__V1__GOODBYE__INIT;
            cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
            f.kind_case = CAREBRIDGE__V1__FRAME__KIND_GOODBYE;
            f.goodbye = &bye;
            send_frame(c, &f);
        }
        for (uint32_t i = 0; c->slots && i < c->opts.window; i++)
            free(c->slots[i].frame);
        free(c->slots);
        cb_frame_free(&c->reply);
        if (c->monitor) {
            zmq_socket_monitor(c->sock, NULL, 0);
            zmq_close(c->monitor);
        }
        if (c->sock)
            zmq_close(c->sock);
        if (c->zmq)
            zmq_ctx_term(c->zmq);
        free(c);
    }
    *c_p = NULL;
}

bool cb_client_has_room(const cb_client *c)
{
    return c->n_used < c->opts.window && c->used_bytes < c->opts.window_bytes;
}

size_t cb_client_unanswered(const cb_client *c)
{
    return c->n_used;
}

const char *cb_client_failure(const cb_client *c)
{
    return c->failure[0] ? c->failure : NULL;
}

bool cb_client_welcomed(const cb_client *c)
{
    return c->welcomed;
}

int64_t cb_client_last_heard_ms(const cb_client *c)
{
    return c->last_heard_ms;
}

bool cb_client_publish(cb_client *c, const cb_envelope *ev, void *tag)
{
    if (!cb_client_has_room(c))
        return false;
    uint32_t i = c->free_hint;
    while (c->slots[i].ref)
        i = (i + 1) % c->opts.window;
    slot *s = &c->slots[i];
    Carebridge__V1__Publish pub = CAREBRIDGE__V1__PUBLISH__INIT;
    pub.event = (cb_envelope *)ev;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.ref = (++c->generation << SLOT_BITS) | i;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_PUBLISH;
    f.publish = &pub;
    s->len = cb_pack(&f.base, &s->frame);
    if (!s->frame)
        return false;
    s->ref = f.ref;
    s->tag = tag;
    s->sent_ms = cb_client_now_ms();
    if (s->sent_ms + c->opts.resend_ms < c->next_resend_ms)
        c->next_resend_ms = s->sent_ms + c->opts.resend_ms;
    c->n_used++;
    c->used_bytes += s->len;
    c->free_hint = (i + 1) % c->opts.window;
    if (c->welcomed)
        send_raw(c, s->frame, s->len);
    return true;
}

static slot *slot_for(cb_client *c, uint64_t ref)
{
    slot *s = &c->slots[(ref & SLOT_MASK) % c->opts.window];
    return ref && s->ref == ref ? s : NULL;
}

static void release(cb_client *c, slot *s)
{
    free(s->frame);
    c->used_bytes -= s->len;
    *s = (slot){0};
    c->n_used--;
}

bool cb_client_withdraw(cb_client *c, void *tag)
{
    for (uint32_t i = 0; i < c->opts.window; i++)
        if (c->slots[i].ref && c->slots[i].tag == tag) {
            release(c, &c->slots[i]); /* its ref is never used again: a late answer finds no slot */
            return true;
        }
    return false;
}

/* Resend what was sent at or before older_than. A scan also notes the
 * oldest send it leaves alone, so timers() scans again only when something
 * can be due: a window of thousands costs nothing per call in between. */
static void resend_all(cb_client *c, int64_t older_than)
{
    int64_t now = cb_client_now_ms(), oldest = INT64_MAX;
    for (uint32_t i = 0; i < c->opts.window; i++) {
        slot *s = &c->slots[i];
        if (!s->ref)
            continue;
        if (s->sent_ms <= older_than) {
            send_raw(c, s->frame, s->len);
            s->sent_ms = now;
        }
        if (s->sent_ms < oldest)
            oldest = s->sent_ms;
    }
    c->next_resend_ms = oldest == INT64_MAX ? INT64_MAX : oldest + c->opts.resend_ms;
}

/* The answer to the publish with this ref: an ACK or a NACK. */
static void on_answer(cb_client *c, uint64_t ref, const Carebridge__V1__Ack *ack, const Carebridge__V1__Nack *nack)
{
    slot *s = slot_for(c, ref);
    if (!s)
        return; /* a second answer to a resent publish */
    if (nack && nack->code == CAREBRIDGE__V1__ERROR_CODE__HELLO_REQUIRED) {
        if (c->opts.agency && (c->welcomed || cb_client_now_ms() - c->hello_sent_ms > c->hello_retry_ms))
            say_hello(c); /* the broker restarted or forgot us: the publish waits for the welcome */
        return;
    }
    if (c->handlers.answered)
        c->handlers.answered(c->arg, s->tag, ack, nack);
    release(c, s);
}

void cb_client_ack(cb_client *c, uint64_t seq)
{
    Carebridge__V1__DeliveryAck ack = CAREBRIDGE__V1__DELIVERY_ACK__INIT;
    ack.seq = seq;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_DELIVERY_ACK;
    f.delivery_ack = &ack;
    send_frame(c, &f);
}

static void on_deliver(cb_client *c, const Carebridge__V1__Deliver *d)
{
    if (c->handlers.delivered && c->handlers.delivered(c->arg, d))
        cb_client_ack(c, d->seq);
}

static void on_frame(cb_client *c, cb_frame *f)
{
    c->last_heard_ms = cb_client_now_ms();
    if (f->ref & REQUEST_REF) {
        cb_frame_free(&c->reply);
        c->reply = f;
        return;
    }
    switch (f->kind_case) {
    case CAREBRIDGE__V1__FRAME__KIND_WELCOME:
        /* The broker forgets a connection silent for three of its intervals,
         * so its interval, not ours, is the one to keep. */
        if (f->welcome->heartbeat_ms)
            c->heartbeat_ms = f->welcome->heartbeat_ms;
        c->welcomed = true;
        c->hello_retry_ms = 0;
        resend_all(c, INT64_MAX);
        break;
    case CAREBRIDGE__V1__FRAME__KIND_ACKS:
        for (size_t i = 0; i < f->acks->n_acks; i++)
            on_answer(c, f->acks->acks[i]->ref, f->acks->acks[i], NULL);
        break;
    case CAREBRIDGE__V1__FRAME__KIND_NACK:
        if (f->ref)
            on_answer(c, f->ref, NULL, f->nack);
        else if (f->nack->code == CAREBRIDGE__V1__ERROR_CODE__HELLO_REQUIRED && c->opts.agency &&
                 cb_client_now_ms() - c->hello_sent_ms > c->hello_retry_ms)
            say_hello(c);
        else if (!c->welcomed && f->nack->code != CAREBRIDGE__V1__ERROR_CODE__HELLO_REQUIRED)
            snprintf(c->failure, sizeof c->failure, "the broker refused hello as '%s': %s: %s", c->opts.agency,
                     cb_code_name((cb_code)f->nack->code), f->nack->reason);
        break;
    case CAREBRIDGE__V1__FRAME__KIND_DELIVER: on_deliver(c, f->deliver); break;
    default: break;
    }
    cb_frame_free(&f);
}

static void timers(cb_client *c, int64_t now)
{
    /* Three heartbeats without a word: the broker is gone or restarting.
     * Hello again; the welcome from whichever broker answers resends. */
    if (c->opts.agency && c->welcomed && now - c->last_heard_ms > 3 * (int64_t)c->heartbeat_ms)
        say_hello(c);
    if (c->opts.agency && !c->welcomed && now - c->hello_sent_ms > c->hello_retry_ms)
        say_hello(c);
    if (c->welcomed && now >= c->next_resend_ms)
        resend_all(c, now - c->opts.resend_ms);
    if (c->opts.agency && now - c->last_sent_ms >= c->heartbeat_ms) {
        Carebridge__V1__Heartbeat hb = CAREBRIDGE__V1__HEARTBEAT__INIT;
        cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
        f.kind_case = CAREBRIDGE__V1__FRAME__KIND_HEARTBEAT;
        f.heartbeat = &hb;
        send_frame(c, &f);
    }
}

/* Wait until a message is ready or timeout_us passes: 1, 0, or -1 with errno.
 * zmq_poll counts whole milliseconds, too coarse for a sender that publishes
 * every 200 us and sleeps between; the socket's own fd waits to the microsecond.
 * That fd only signals a change, so ZMQ_EVENTS is asked right before each
 * sleep: a message already queued is never slept through. */
static int wait_readable(cb_client *c, int64_t timeout_us)
{
    int64_t deadline = now_us() + timeout_us;
    for (;;) {
        int events = 0;
        size_t n = sizeof events;
        if (zmq_getsockopt(c->sock, ZMQ_EVENTS, &events, &n) < 0)
            return -1;
        if (events & ZMQ_POLLIN)
            return 1;
        int64_t left = deadline - now_us();
        if (left <= 0)
            return 0;
        struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = c->monitor_fd, .events = POLLIN}};
        struct timespec ts = {.tv_sec = left / 1000000, .tv_nsec = left % 1000000 * 1000};
        if (ppoll(p, 2, &ts, NULL) < 0)
            return -1;
        if (p[1].revents) { /* only then: the monitor is off the path of every publish */
            check_handshake(c);
            if (c->failure[0])
                return 0;
        }
    }
}

int cb_client_fd(const cb_client *c)
{
    return c->fd;
}

int cb_client_due_ms(cb_client *c)
{
    int events = 0;
    size_t n = sizeof events;
    if (zmq_getsockopt(c->sock, ZMQ_EVENTS, &events, &n) < 0 || (events & ZMQ_POLLIN) || c->failure[0])
        return 0;
    int64_t due = c->last_sent_ms + c->heartbeat_ms;
    if (c->opts.agency && !c->welcomed && c->hello_sent_ms + c->hello_retry_ms < due)
        due = c->hello_sent_ms + c->hello_retry_ms;
    if (c->opts.agency && c->welcomed && c->last_heard_ms + 3 * (int64_t)c->heartbeat_ms < due)
        due = c->last_heard_ms + 3 * (int64_t)c->heartbeat_ms;
    if (c->welcomed && c->next_resend_ms < due)
        due = c->next_resend_ms;
    int64_t left = due - cb_client_now_ms() + 1; /* timers fire once strictly past */
    return left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

int cb_client_run_us(cb_client *c, int64_t timeout_us)
{
    int64_t now = cb_client_now_ms();
    int64_t next = c->last_sent_ms + c->heartbeat_ms;
    if (timeout_us > (next - now) * 1000)
        timeout_us = next > now ? (next - now) * 1000 : 0;
    if (c->failure[0])
        return -1;
    if (wait_readable(c, timeout_us) < 0) {
        if (errno == EINTR)
            return 0;
        snprintf(c->failure, sizeof c->failure, "connection to %s failed: %s", c->opts.endpoint, zmq_strerror(errno));
        return -1;
    }
    int handled = 0;
    for (;;) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            break;
        }
        cb_frame *f = cb_frame_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), SIZE_MAX, NULL);
        zmq_msg_close(&msg);
        if (f) {
            on_frame(c, f);
            handled++;
        }
    }
    now = cb_client_now_ms();
    timers(c, now);
    /* ZMQ_FD signals an edge: what it signalled while the socket was being
     * read is looked at here, a few times a second at most. */
    if (now - c->handshake_checked_ms >= 100) {
        c->handshake_checked_ms = now;
        check_handshake(c);
    }
    return c->failure[0] ? -1 : handled;
}

int cb_client_run(cb_client *c, int timeout_ms)
{
    return cb_client_run_us(c, timeout_ms > 0 ? (int64_t)timeout_ms * 1000 : 0);
}

cb_frame *cb_client_request(cb_client *c, cb_frame *request, int timeout_ms, cb_error *err)
{
    request->ref = REQUEST_REF | ++c->next_request;
    send_frame(c, request);
    int64_t deadline = cb_client_now_ms() + timeout_ms;
    for (int64_t now = cb_client_now_ms(); now < deadline; now = cb_client_now_ms()) {
        if (cb_client_run(c, (int)(deadline - now)) < 0)
            break;
        if (c->reply && c->reply->ref == request->ref) {
            cb_frame *reply = c->reply;
            c->reply = NULL;
            return reply;
        }
    }
    if (c->failure[0])
        cb_fail(err, CB_BAD_REQUEST, "%s", c->failure);
    else
        cb_fail(err, CB_BAD_REQUEST, "no answer from %s within %d ms", c->opts.endpoint, timeout_ms);
    return NULL;
}
