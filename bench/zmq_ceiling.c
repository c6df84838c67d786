/* cb-bench-zmq: the ZeroMQ ceiling. The same transport the broker uses
 * (DEALER clients, one ROUTER, TCP on loopback, the same high-water marks) but
 * no decoding, no storage and no sync: a ROUTER thread answers every message
 * at once with a 40-byte reply. S sender threads, each with its own context
 * as cb_client has, keep W messages of --size bytes in flight. No broker can
 * acknowledge faster than this on the same machine, so the broker's figure is
 * read against it.
 *
 * Prints one JSON object on stdout. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define ANSWER_BYTES 40
#define HWM          100000 /* as the broker and the client library set it */

static const char usage[] = "Usage: cb-bench-zmq [--senders S] [--window W] [--events N] [--size BYTES]\n"
                            "  --senders S  DEALER threads (default 1)\n"
                            "  --window W   messages in flight per sender (default 1024)\n"
                            "  --events N   total messages over all senders (default 200000)\n"
                            "  --size B     request size (default 512)\n";

static int senders = 1, window_ = 1024;
static uint64_t events = 200000;
static size_t size = 512;
static char endpoint[256];
static atomic_int router_stop;
static pthread_barrier_t start_barrier;
static int64_t start_ns;

typedef struct {
    int index;
    pthread_t thread;
    uint64_t quota, answered;
    int64_t *lat_ns;
    int64_t last_ns;
    int failed;
} sender;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void set_hwm(void *s)
{
    int hwm = HWM, linger = 0;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
}

/* Reads everything ready, as the broker's loop does, but answers each
 * message straight away: the cost of the transport alone. */
static void *router_main(void *arg)
{
    void *router = arg;
    uint8_t answer[ANSWER_BYTES];
    memset(answer, 'a', sizeof answer);
    while (!atomic_load(&router_stop)) {
        zmq_pollitem_t item = {router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 100) < 0 && errno != EINTR)
            break;
        for (;;) {
            zmq_msg_t rid, body;
            zmq_msg_init(&rid);
            if (zmq_msg_recv(&rid, router, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&rid);
                break;
            }
            zmq_msg_init(&body);
            if (zmq_msg_more(&rid) && zmq_msg_recv(&body, router, 0) >= 0) {
                /* Echo the request's first 8 bytes (the sender's clock) so the
                 * sender can time the round trip. */
                if (zmq_msg_size(&body) >= 8)
                    memcpy(answer, zmq_msg_data(&body), 8);
                if (zmq_send(router, zmq_msg_data(&rid), zmq_msg_size(&rid), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
                    zmq_send(router, answer, sizeof answer, ZMQ_DONTWAIT);
            }
            zmq_msg_close(&body);
            zmq_msg_close(&rid);
        }
    }
    return NULL;
}

static void *sender_main(void *arg)
{
    sender *s = arg;
    void *ctx = zmq_ctx_new();
    void *d = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    uint8_t *req = calloc(1, size < 8 ? 8 : size);
    uint8_t buf[ANSWER_BYTES];
    uint64_t sent = 0, inflight = 0;
    if (!d || !req || (set_hwm(d), zmq_connect(d, endpoint)) < 0) {
        s->failed = 1;
        pthread_barrier_wait(&start_barrier);
        pthread_barrier_wait(&start_barrier);
        goto out;
    }
    memset(req + 8, 'p', size > 8 ? size - 8 : 0);
    /* One round trip before the clock starts: the connection is up. */
    if (zmq_send(d, req, size, 0) < 0 || zmq_recv(d, buf, sizeof buf, 0) < 0)
        s->failed = 1;
    pthread_barrier_wait(&start_barrier);
    if (s->index == 0)
        start_ns = now_ns();
    pthread_barrier_wait(&start_barrier);
    while (!s->failed && (s->answered < s->quota)) {
        while (sent < s->quota && inflight < (uint64_t)window_) {
            int64_t t = now_ns();
            memcpy(req, &t, 8);
            if (zmq_send(d, req, size, ZMQ_DONTWAIT) < 0)
                break;
            sent++, inflight++;
        }
        zmq_pollitem_t item = {d, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 5000) <= 0) {
            fprintf(stderr, "cb-bench-zmq: sender %d: no answer for 5 s\n", s->index);
            s->failed = 1;
            break;
        }
        int n;
        while ((n = zmq_recv(d, buf, sizeof buf, ZMQ_DONTWAIT)) >= 0) {
            int64_t t0, t = now_ns();
            memcpy(&t0, buf, 8);
            s->lat_ns[s->answered++] = t - t0;
            s->last_ns = t;
            inflight--;
        }
    }
out:
    free(req);
    if (d)
        zmq_close(d);
    if (ctx)
        zmq_ctx_term(ctx);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(const int64_t *v, size_t n, double p)
{
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return n ? (double)v[rank - 1] / 1e6 : 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"senders", required_argument, 0, 's'},
                                             {"window", required_argument, 0, 'w'},
                                             {"events", required_argument, 0, 'n'},
                                             {"size", required_argument, 0, 'z'},
                                             {"help", no_argument, 0, 'h'},
                                             {"version", no_argument, 0, 'V'},
                                             {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "s:w:n:z:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 's': senders = atoi(optarg); break;
        case 'w': window_ = atoi(optarg); break;
        case 'n': events = strtoull(optarg, NULL, 10); break;
        case 'z': size = strtoul(optarg, NULL, 10); break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': puts("cb-bench-zmq " CB_VERSION); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (senders < 1 || senders > 64 || window_ < 1 || events < (uint64_t)senders || size < 8 || size > 1 << 20) {
        fputs(usage, stderr);
        return 2;
    }

    void *ctx = zmq_ctx_new();
    void *router = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    size_t len = sizeof endpoint;
    if (!router || (set_hwm(router), zmq_bind(router, "tcp://127.0.0.1:*")) < 0 ||
        zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &len) < 0) {
        fprintf(stderr, "cb-bench-zmq: cannot bind: %s\n", zmq_strerror(errno));
        return 2;
    }
    pthread_t rt;
    pthread_create(&rt, NULL, router_main, router);

    sender *ss = calloc((size_t)senders, sizeof *ss);
    pthread_barrier_init(&start_barrier, NULL, (unsigned)senders);
    for (int i = 0; i < senders; i++) {
        ss[i].index = i;
        ss[i].quota = events / (uint64_t)senders + ((uint64_t)i < events % (uint64_t)senders);
        ss[i].lat_ns = malloc(ss[i].quota * sizeof(int64_t));
        if (!ss[i].lat_ns)
            return 2;
        pthread_create(&ss[i].thread, NULL, sender_main, &ss[i]);
    }
    uint64_t answered = 0;
    int64_t last = 0;
    int failed = 0;
    for (int i = 0; i < senders; i++) {
        pthread_join(ss[i].thread, NULL);
        answered += ss[i].answered;
        last = ss[i].last_ns > last ? ss[i].last_ns : last;
        failed |= ss[i].failed;
    }
    atomic_store(&router_stop, 1);
    pthread_join(rt, NULL);
    zmq_close(router);
    zmq_ctx_term(ctx);

    int64_t *all = malloc((answered ? answered : 1) * sizeof *all);
    size_t at = 0;
    for (int i = 0; i < senders; i++) {
        memcpy(all + at, ss[i].lat_ns, ss[i].answered * sizeof *all);
        at += ss[i].answered;
        free(ss[i].lat_ns);
    }
    qsort(all, answered, sizeof *all, cmp_i64);
    double secs = (double)(last - start_ns) / 1e9;
    printf("{\"senders\": %d, \"window\": %d, \"event_bytes\": %zu, \"events\": %llu, \"seconds\": %.3f, "
           "\"events_per_s\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f}\n",
           senders, window_, size, (unsigned long long)answered, secs, secs > 0 ? (double)answered / secs : 0.0,
           pct_ms(all, answered, 50), pct_ms(all, answered, 99));
    free(all);
    free(ss);
    pthread_barrier_destroy(&start_barrier);
    return failed ? 1 : 0;
}
