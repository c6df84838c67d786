#include "mllp_forward.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hl7.h"
#include "mllp.h"
#include "program.h"

#define ACK_TIMEOUT_MS 10000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define ANSWER_MAX     (64 * 1024)

typedef struct {
    uint64_t seq;
    char *event_id;
    uint8_t *framed;
    size_t len;
} item;

typedef enum { IDLE, CONNECTING, SENDING, WAITING } state;

struct cb_mllp_forward {
    char target[300];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int family;
    cb_mllp_forwarded_fn fn;
    void *arg;
    item *q;
    size_t head, n, cap; /* a ring */
    state st;
    int fd;
    size_t sent;
    int64_t deadline_ms, retry_at_ms;
    int backoff_ms;
    cb_mllp *reader;
};

cb_mllp_forward *cb_mllp_forward_new(const char *host_port, cb_mllp_forwarded_fn fn, void *arg, char *why, size_t cap)
{
    struct addrinfo *ai = cb_resolve("--forward", host_port, AF_UNSPEC, false, why, cap);
    if (!ai)
        return NULL;
    cb_mllp_forward *f = calloc(1, sizeof *f);
    if (!f || !(f->reader = cb_mllp_new(ANSWER_MAX))) {
        snprintf(why, cap, "out of memory");
        free(f);
        freeaddrinfo(ai);
        return NULL;
    }
    snprintf(f->target, sizeof f->target, "%s", host_port);
    memcpy(&f->addr, ai->ai_addr, ai->ai_addrlen);
    f->addr_len = ai->ai_addrlen;
    f->family = ai->ai_family;
    freeaddrinfo(ai);
    f->fn = fn;
    f->arg = arg;
    f->fd = -1;
    f->backoff_ms = BACKOFF_MIN_MS;
    return f;
}

static void hang_up(cb_mllp_forward *f, const char *why)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    f->st = IDLE;
    cb_mllp_free(&f->reader);
    f->reader = cb_mllp_new(ANSWER_MAX);
    if (why) {
        cb_log("forward to %s: %s; trying again in %d ms", f->target, why, f->backoff_ms);
        f->retry_at_ms = cb_now_ms() + f->backoff_ms;
        f->backoff_ms = f->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : f->backoff_ms * 2;
    }
}

static void pop(cb_mllp_forward *f)
{
    item *it = &f->q[f->head];
    free(it->event_id);
    free(it->framed);
    f->head = (f->head + 1) % f->cap;
    f->n--;
    f->sent = 0;
}

void cb_mllp_forward_free(cb_mllp_forward **f_p)
{
    cb_mllp_forward *f = *f_p;
    if (f) {
        hang_up(f, NULL);
        while (f->n)
            pop(f);
        cb_mllp_free(&f->reader);
        free(f->q);
        free(f);
    }
    *f_p = NULL;
}

void cb_mllp_forward_send(cb_mllp_forward *f, uint64_t seq, const char *event_id, const char *msg, size_t len)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        item *q = malloc(cap * sizeof *q);
        if (!q)
            return; /* untaken: delivered again */
        for (size_t i = 0; i < f->n; i++)
            q[i] = f->q[(f->head + i) % f->cap];
        free(f->q);
        f->q = q;
        f->cap = cap;
        f->head = 0;
    }
    item it = {.seq = seq, .event_id = strdup(event_id), .framed = malloc(len + 3)};
    if (!it.event_id || !it.framed) {
        free(it.event_id);
        free(it.framed);
        return;
    }
    it.len = cb_mllp_wrap(msg, len, it.framed, len + 3);
    f->q[(f->head + f->n++) % f->cap] = it;
}

static void start(cb_mllp_forward *f)
{
    f->fd = socket(f->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f->fd < 0) {
        hang_up(f, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(f->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    f->sent = 0;
    if (connect(f->fd, (struct sockaddr *)&f->addr, f->addr_len) == 0)
        f->st = SENDING;
    else if (errno == EINPROGRESS)
        f->st = CONNECTING;
    else
        hang_up(f, strerror(errno));
}

size_t cb_mllp_forward_fds(cb_mllp_forward *f, struct pollfd *fds, size_t cap)
{
    if (f->st == IDLE && f->n && cb_now_ms() >= f->retry_at_ms)
        start(f);
    if (f->st == WAITING && f->n && f->sent < f->q[f->head].len)
        f->st = SENDING; /* one queued while the connection stood idle */
    if (f->fd < 0 || !cap)
        return 0;
    short ev = f->st == WAITING ? POLLIN : POLLOUT;
    fds[0] = (struct pollfd){.fd = f->fd, .events = ev};
    return 1;
}

/* The engine's answer to the message at the head. */
static void on_answer(cb_mllp_forward *f, const uint8_t *msg, size_t len)
{
    cb_hl7_error err;
    cb_hl7 *m = cb_hl7_parse(msg, len, &err);
    char code[8] = "";
    long msa = m ? cb_hl7_find(m, "MSA", 0) : -1;
    if (msa >= 0)
        cb_hl7_get(m, (cb_hl7_at){(size_t)msa, 1, 1, 1, 0}, code, sizeof code);
    cb_hl7_free(&m);
    item *it = &f->q[f->head];
    bool taken = !strcmp(code, "AA") || !strcmp(code, "CA");
    f->fn(f->arg, it->seq, it->event_id, taken);
    if (taken) {
        f->backoff_ms = BACKOFF_MIN_MS;
    } else {
        cb_log("forward to %s: delivery %llu (%s) answered %s; left for the broker to deliver again", f->target,
               (unsigned long long)it->seq, it->event_id, code[0] ? code : "without an MSA");
    }
    pop(f);
    f->st = f->n ? SENDING : WAITING; /* with none queued the connection stays open for the next */
}

void cb_mllp_forward_handle(cb_mllp_forward *f, const struct pollfd *fds, size_t n)
{
    short rev = n && f->fd >= 0 && fds[0].fd == f->fd ? fds[0].revents : 0;
    if (f->st == CONNECTING && rev) {
        int e = 0;
        socklen_t el = sizeof e;
        getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &e, &el);
        if (e) {
            hang_up(f, strerror(e));
            return;
        }
        f->st = SENDING;
    }
    if (f->st == SENDING && f->n && (rev & POLLOUT)) {
        item *it = &f->q[f->head];
        ssize_t put = send(f->fd, it->framed + f->sent, it->len - f->sent, MSG_NOSIGNAL);
        if (put < 0 && errno != EAGAIN && errno != EINTR) {
            hang_up(f, strerror(errno));
            return;
        }
        if (put > 0 && (f->sent += (size_t)put) == it->len) {
            f->st = WAITING;
            f->deadline_ms = cb_now_ms() + ACK_TIMEOUT_MS;
        }
    } else if (f->st == SENDING && !f->n) {
        f->st = WAITING;
    }
    if (f->st == WAITING && (rev & (POLLIN | POLLHUP | POLLERR))) {
        uint8_t buf[8192];
        ssize_t got = recv(f->fd, buf, sizeof buf, 0);
        if (got <= 0) {
            if (got == 0 || (errno != EAGAIN && errno != EINTR))
                hang_up(f, got == 0 ? "the engine closed the connection" : strerror(errno));
            return;
        }
        for (size_t off = 0; off < (size_t)got && f->fd >= 0;) {
            size_t used;
            const uint8_t *msg;
            size_t len;
            cb_mllp_status st = cb_mllp_feed(f->reader, buf + off, (size_t)got - off, &used, &msg, &len);
            off += used;
            if (st == CB_MLLP_MESSAGE && f->n && f->sent == f->q[f->head].len)
                on_answer(f, msg, len);
        }
    }
    if (f->st == WAITING && f->n && f->sent == f->q[f->head].len && cb_now_ms() >= f->deadline_ms)
        hang_up(f, "no answer in time");
}

int cb_mllp_forward_due_ms(const cb_mllp_forward *f)
{
    int64_t now = cb_now_ms();
    if (f->st == IDLE && f->n)
        return f->retry_at_ms <= now ? 0 : (int)(f->retry_at_ms - now);
    if (f->st == WAITING && f->n && f->sent == f->q[f->head].len)
        return f->deadline_ms <= now ? 0 : (int)(f->deadline_ms - now);
    return 1000;
}
