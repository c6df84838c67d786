#define _GNU_SOURCE /* accept4 */
#include "mllp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mllp.h"
#include "program.h"

#define SLOT_BITS 12 /* tickets: slot | generation | message number */
#define GEN_BITS  20
#define READ_MAX  65536

typedef struct {
    uint8_t *bytes; /* framed; NULL until answered */
    size_t len;
} answer;

typedef struct {
    int fd; /* -1: free */
    uint32_t gen;
    cb_mllp *mllp;
    answer *owed; /* a ring by message number, owed_cap (a power of two) long */
    uint32_t owed_cap;
    uint32_t issued, sent; /* tickets handed out, answers written out */
    uint8_t *out;          /* framed answers not yet written */
    size_t out_len, out_off, out_cap;
    int64_t last_read_ms;
    bool eof;             /* the sender closed: answer what is owed, then close */
    gnutls_session_t tls; /* with TLS: until handshaken, nothing else is read */
    bool handshaken;
    size_t tls_sending; /* a record send GnuTLS has yet to finish: its length */
} conn;

struct cb_mllp_server {
    cb_mllp_server_opts opts;
    cb_mllp_message_fn fn;
    void *arg;
    int lfd, port;
    conn *conns;
    uint32_t next_gen;
};

cb_mllp_server *cb_mllp_server_open(const cb_mllp_server_opts *opts, cb_mllp_message_fn fn, void *arg, char *why,
                                    size_t cap)
{
    struct addrinfo *ai = cb_resolve("--listen", opts->listen, AF_UNSPEC, true, why, cap);
    if (!ai)
        return NULL;
    cb_mllp_server *s = calloc(1, sizeof *s);
    if (s)
        s->conns = calloc(opts->max_conns, sizeof *s->conns);
    int fd = -1;
    if (s && s->conns) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
                        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0)) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {
        snprintf(why, cap, "cannot listen on %s: %s", opts->listen, s && s->conns ? strerror(errno) : "out of memory");
        freeaddrinfo(ai);
        if (s)
            free(s->conns);
        free(s);
        return NULL;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    s->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                             : ((struct sockaddr_in *)&sa)->sin_port);
    s->opts = *opts;
    s->fn = fn;
    s->arg = arg;
    s->lfd = fd;
    for (unsigned i = 0; i < opts->max_conns; i++)
        s->conns[i].fd = -1;
    return s;
}

static answer *owed_at(const conn *c, uint32_t no)
{
    return &c->owed[no & (c->owed_cap - 1)];
}

/* Room for one more owed answer. One read may hold more messages than
 * max_pending (which only stops further reads): the ring grows for them. */
static bool owe_one_more(conn *c)
{
    if (c->issued - c->sent < c->owed_cap)
        return true;
    uint32_t cap = c->owed_cap ? c->owed_cap * 2 : 16;
    answer *owed = calloc(cap, sizeof *owed);
    if (!owed)
        return false;
    for (uint32_t no = c->sent; no != c->issued; no++)
        owed[no & (cap - 1)] = *owed_at(c, no);
    free(c->owed);
    c->owed = owed;
    c->owed_cap = cap;
    return true;
}

static void drop(conn *c)
{
    if (c->tls)
        gnutls_deinit(c->tls);
    close(c->fd);
    c->fd = -1;
    cb_mllp_free(&c->mllp);
    for (uint32_t no = c->sent; no != c->issued; no++)
        free(owed_at(c, no)->bytes);
    free(c->owed);
    free(c->out);
    *c = (conn){.fd = -1, .gen = c->gen};
}

void cb_mllp_server_close(cb_mllp_server **s_p)
{
    cb_mllp_server *s = *s_p;
    if (s) {
        for (unsigned i = 0; i < s->opts.max_conns; i++)
            if (s->conns[i].fd >= 0)
                drop(&s->conns[i]);
        close(s->lfd);
        free(s->conns);
        free(s);
    }
    *s_p = NULL;
}

int cb_mllp_server_port(const cb_mllp_server *s)
{
    return s->port;
}

/* Past max_pending owed, a connection is not read: a sender that does not
 * wait for its answers is slowed by its own TCP window, not dropped. */
static bool owes_room(const cb_mllp_server *s, const conn *c)
{
    return c->issued - c->sent < s->opts.max_pending;
}

size_t cb_mllp_server_fds(cb_mllp_server *s, struct pollfd *fds, size_t cap)
{
    size_t n = 0;
    if (n < cap)
        fds[n++] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
    for (unsigned i = 0; i < s->opts.max_conns && n < cap; i++) {
        conn *c = &s->conns[i];
        if (c->fd < 0)
            continue;
        short ev = 0;
        if (!c->eof && owes_room(s, c) && c->out_len - c->out_off < (1u << 20))
            ev |= POLLIN;
        if (c->out_off < c->out_len)
            ev |= POLLOUT;
        if (c->tls && !c->handshaken) /* the handshake waits for whichever way GnuTLS says */
            ev = gnutls_record_get_direction(c->tls) ? POLLOUT : POLLIN;
        fds[n++] = (struct pollfd){.fd = c->fd, .events = ev};
    }
    return n;
}

static void accept_all(cb_mllp_server *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        conn *c = NULL;
        for (unsigned i = 0; i < s->opts.max_conns && !c; i++)
            if (s->conns[i].fd < 0)
                c = &s->conns[i];
        if (!c) { /* full: the sender retries, as it would after any refused connection */
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        *c = (conn){.fd = fd,
                    .gen = (++s->next_gen) & ((1u << GEN_BITS) - 1),
                    .mllp = cb_mllp_new(s->opts.max_message),
                    .last_read_ms = cb_now_ms()};
        if (s->opts.tls && !(c->tls = cb_tls_accept(s->opts.tls, fd)))
            drop(c);
        else if (!c->mllp)
            drop(c);
    }
}

static cb_mllp_ticket ticket_of(const cb_mllp_server *s, const conn *c, uint32_t no)
{
    uint64_t slot = (uint64_t)(c - s->conns);
    return slot << (GEN_BITS + 32) | (uint64_t)c->gen << 32 | no;
}

/* With TLS: the handshake, then the sender's certificate checked against
 * the client CA. 1 done, 0 to be continued when the fd is ready, -1 failed. */
static int handshake(cb_mllp_server *s, conn *c)
{
    int rc = gnutls_handshake(c->tls);
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED)
        return 0;
    if (rc < 0 || !cb_tls_peer_verified(s->opts.tls, c->tls)) {
        cb_log("mllp: refused a TLS connection: %s",
               rc < 0 ? gnutls_strerror(rc) : "its certificate is not signed by --client-ca");
        return -1;
    }
    c->handshaken = true;
    return 1;
}

/* Bytes in, plain or through TLS: as recv(2), errno EAGAIN when none yet. */
static ssize_t conn_recv(conn *c, uint8_t *buf, size_t cap)
{
    if (!c->tls)
        return recv(c->fd, buf, cap, 0);
    ssize_t got = gnutls_record_recv(c->tls, buf, cap);
    if (got == GNUTLS_E_AGAIN || got == GNUTLS_E_INTERRUPTED) {
        errno = EAGAIN;
        return -1;
    }
    if (got < 0) {
        errno = EPROTO;
        return -1;
    }
    return got;
}

static ssize_t conn_send(conn *c, const uint8_t *buf, size_t len)
{
    if (!c->tls)
        return send(c->fd, buf, len, MSG_NOSIGNAL);
    /* GnuTLS finishes a record it began: asked again with nothing, it says when. */
    ssize_t put = c->tls_sending ? gnutls_record_send(c->tls, NULL, 0) : gnutls_record_send(c->tls, buf, len);
    if (put == GNUTLS_E_AGAIN || put == GNUTLS_E_INTERRUPTED) {
        if (!c->tls_sending)
            c->tls_sending = len;
        errno = EAGAIN;
        return -1;
    }
    if (put < 0) {
        errno = EPROTO;
        return -1;
    }
    if (c->tls_sending) {
        put = (ssize_t)c->tls_sending;
        c->tls_sending = 0;
    }
    return put;
}

static void read_some(cb_mllp_server *s, conn *c)
{
    if (c->tls && !c->handshaken) {
        int rc = handshake(s, c);
        if (rc < 0)
            drop(c);
        if (rc <= 0)
            return;
    }
    uint8_t buf[READ_MAX];
    ssize_t got = conn_recv(c, buf, sizeof buf);
    if (got == 0) {
        c->eof = true;
        return;
    }
    if (got < 0) {
        if (errno != EAGAIN && errno != EINTR)
            drop(c);
        return;
    }
    c->last_read_ms = cb_now_ms();
    size_t off = 0;
    uint32_t gen = c->gen;
    while (off < (size_t)got) {
        size_t used;
        const uint8_t *msg;
        size_t len;
        cb_mllp_status st = cb_mllp_feed(c->mllp, buf + off, (size_t)got - off, &used, &msg, &len);
        off += used;
        if (st == CB_MLLP_NOMEM) {
            drop(c);
            return;
        }
        if (st == CB_MLLP_MORE)
            continue;
        if (!owe_one_more(c)) {
            drop(c);
            return;
        }
        uint32_t no = c->issued++;
        s->fn(s->arg, ticket_of(s, c, no), msg, len, st == CB_MLLP_TOO_BIG);
        if (c->fd < 0 || c->gen != gen)
            return; /* the handler's answer failed the connection */
    }
    /* TLS may hold decrypted bytes the fd will not signal again. */
    if (c->tls && gnutls_record_check_pending(c->tls) && owes_room(s, c))
        read_some(s, c);
}

static void write_some(conn *c)
{
    while (c->out_off < c->out_len) {
        size_t left = c->out_len - c->out_off;
        ssize_t put = conn_send(c, c->out + c->out_off, c->tls && left > 16384 ? 16384 : left);
        if (put < 0) {
            if (errno != EAGAIN && errno != EINTR)
                drop(c);
            return;
        }
        c->out_off += (size_t)put;
    }
    c->out_off = c->out_len = 0;
}

void cb_mllp_server_handle(cb_mllp_server *s, const struct pollfd *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!fds[i].revents)
            continue;
        if (fds[i].fd == s->lfd) {
            accept_all(s);
            continue;
        }
        conn *c = NULL;
        for (unsigned k = 0; k < s->opts.max_conns && !c; k++)
            if (s->conns[k].fd == fds[i].fd)
                c = &s->conns[k];
        if (!c)
            continue;
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) || (c->tls && !c->handshaken))
            read_some(s, c);
        if (c->fd >= 0 && (fds[i].revents & POLLOUT))
            write_some(c);
    }
    int64_t now = cb_now_ms();
    for (unsigned i = 0; i < s->opts.max_conns; i++) {
        conn *c = &s->conns[i];
        if (c->fd < 0)
            continue;
        bool owed = c->issued != c->sent || c->out_off < c->out_len;
        /* Idle between messages is how feeds wait; silent mid-message, or
         * mid-handshake, is a stalled sender. */
        bool midway = cb_mllp_in_frame(c->mllp) || (c->tls && !c->handshaken);
        if ((c->eof && !owed) || (midway && now - c->last_read_ms > s->opts.read_timeout_ms))
            drop(c);
    }
}

int cb_mllp_server_due_ms(const cb_mllp_server *s)
{
    int64_t now = cb_now_ms(), due = now + 1000;
    for (unsigned i = 0; i < s->opts.max_conns; i++) {
        const conn *c = &s->conns[i];
        if (c->fd >= 0 && (cb_mllp_in_frame(c->mllp) || (c->tls && !c->handshaken)) &&
            c->last_read_ms + s->opts.read_timeout_ms < due)
            due = c->last_read_ms + s->opts.read_timeout_ms;
    }
    return due <= now ? 0 : (int)(due - now);
}

static bool append_out(conn *c, const uint8_t *bytes, size_t len)
{
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        uint8_t *out = realloc(c->out, cap);
        if (!out)
            return false;
        c->out = out;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, bytes, len);
    c->out_len += len;
    return true;
}

void cb_mllp_server_answer(cb_mllp_server *s, cb_mllp_ticket ticket, const void *bytes, size_t len)
{
    uint64_t slot = ticket >> (GEN_BITS + 32);
    uint32_t gen = (uint32_t)(ticket >> 32) & ((1u << GEN_BITS) - 1), no = (uint32_t)ticket;
    if (slot >= s->opts.max_conns)
        return;
    conn *c = &s->conns[slot];
    if (c->fd < 0 || c->gen != gen || no - c->sent >= c->issued - c->sent)
        return; /* its connection is gone, or it was answered already */
    answer *a = owed_at(c, no);
    if (a->bytes)
        return;
    if (!(a->bytes = malloc(len + 3))) {
        drop(c);
        return;
    }
    a->len = cb_mllp_wrap(bytes, len, a->bytes, len + 3);
    while (c->sent != c->issued) {
        answer *next = owed_at(c, c->sent);
        if (!next->bytes)
            break;
        bool ok = append_out(c, next->bytes, next->len);
        free(next->bytes);
        *next = (answer){0};
        c->sent++;
        if (!ok) {
            drop(c);
            return;
        }
    }
    write_some(c);
}
