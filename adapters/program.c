#include "program.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *program = "carebridge-adapter";

int cb_program_option(int c, const char *arg, cb_program_opts *p, const char *name, const char *usage)
{
    switch (c) {
    case 'b': p->broker = arg; return 1;
    case 'a': p->agency = arg; return 1;
    case 'd': p->data = arg; return 1;
    case CB_OPT_KEY: p->key_file = arg; return 1;
    case CB_OPT_BROKER_KEY: p->broker_key = arg; return 1;
    case 'h': fputs(usage, stdout); return 0;
    case 'V': printf("%s %s\n", name, CB_VERSION); return 0;
    default: return -1;
    }
}

const char *cb_program_key(const cb_program_opts *p)
{
    return p->key_file ? p->key_file : getenv("CAREBRIDGE_KEY");
}

const char *cb_program_broker_key(const cb_program_opts *p)
{
    return p->broker_key ? p->broker_key : getenv("CAREBRIDGE_BROKER_KEY");
}

bool cb_program_number(const char *name, const char *option, const char *text, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "%s: %s must be a whole number from %ld to %ld\n", name, option, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

void cb_id_list_free(cb_id_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    l->n = 0;
}

bool cb_id_list_set(cb_id_list *l, const char *text)
{
    cb_id_list_free(l);
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        if (!len || l->n == CB_ID_LIST_MAX || !(l->items[l->n] = strndup(p, len)))
            return false;
        l->n++;
        p += len + (p[len] ? 1 : 0);
    }
    return l->n > 0;
}
static volatile sig_atomic_t stopping;

void cb_log_program(const char *name)
{
    program = name;
}

void cb_log(const char *fmt, ...)
{
    char when[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ %s: %s\n", when, ts.tv_nsec / 1000000, program, line);
}

static void on_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

void cb_program_signals(void)
{
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

bool cb_program_stopping(void)
{
    return stopping;
}

static int exit_status;

void cb_program_refused(void)
{
    exit_status = 2;
}

int cb_program_exit_status(void)
{
    return exit_status;
}

bool cb_mkdirs(const char *path)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return false;
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0700) < 0 && errno != EEXIST)
                return false;
            *s = '/';
        }
    return mkdir(p, 0700) == 0 || errno == EEXIST;
}

bool cb_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

bool cb_write_atomic(const char *dir, const char *name, const void *bytes, size_t len)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name) >= (int)sizeof tmp ||
        snprintf(final, sizeof final, "%s/%s", dir, name) >= (int)sizeof final)
        return false;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    const char *p = bytes;
    size_t left = len;
    while (left) {
        ssize_t put = write(fd, p, left);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            break;
        p += put;
        left -= (size_t)put;
    }
    bool ok = !left && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, final) < 0) {
        unlink(tmp);
        return false;
    }
    return cb_sync_dir(dir);
}

struct addrinfo *cb_resolve(const char *option, const char *host_port, int family, bool passive, char *why, size_t cap)
{
    const char *colon = strrchr(host_port, ':');
    char host[256];
    if (!colon || colon == host_port || !colon[1] || (size_t)(colon - host_port) >= sizeof host) {
        snprintf(why, cap, "%s %s is not HOST:PORT", option, host_port);
        return NULL;
    }
    memcpy(host, host_port, (size_t)(colon - host_port));
    host[colon - host_port] = 0;
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    struct addrinfo *ai;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc) {
        snprintf(why, cap, "%s %s: %s", option, host_port, gai_strerror(rc));
        return NULL;
    }
    return ai;
}

int cb_listen_loopback(const char *option, const char *host_port, char *why, size_t cap)
{
    struct addrinfo *ai = cb_resolve(option, host_port, AF_UNSPEC, true, why, cap);
    if (!ai)
        return -1;
    bool loopback = ai->ai_family == AF_INET
                        ? (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127
                        : IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
    freeaddrinfo(ai);
    return loopback;
}

int cb_dial(const char *host_port, int timeout_s)
{
    char why[300];
    struct addrinfo *ai = cb_resolve("", host_port, AF_UNSPEC, false, why, sizeof why);
    if (!ai)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = timeout_s};
    int one = 1;
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
                    connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

int64_t cb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
