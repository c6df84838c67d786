/* cb-test-rawframe: send frames no well-behaved client would, and print the
 * broker's answers, for the integration tests of refusals.
 *
 *   cb-test-rawframe ENDPOINT [--as AGENCY] HEX...
 *   cb-test-rawframe ENDPOINT [--as AGENCY] --flood N HEX
 *
 * Says hello as AGENCY first when given (and waits for the welcome), then
 * sends each HEX string as one frame and prints the answer to each as
 * canonical JSON of a carebridge.v1.Frame, one line per frame, or "TIMEOUT".
 * With --flood it sends HEX N times as fast as the socket takes them, counts
 * the answers until none has come for a second, and prints
 * {"sent": N, "answers": M, "seconds": S}. With CAREBRIDGE_KEY and
 * CAREBRIDGE_BROKER_KEY set, it connects with those CURVE keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "cb_codec.h"
#include "cb_json.h"
#include "curve.h"

static size_t unhex(const char *hex, uint8_t **out)
{
    size_t n = strlen(hex) / 2;
    *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        sscanf(hex + 2 * i, "%2hhx", &(*out)[i]);
    return n;
}

/* The next frame from the broker that is not a heartbeat, or NULL after 3 s. */
static cb_frame *answer(void *sock)
{
    for (int tries = 0; tries < 30; tries++) {
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 100) <= 0)
            continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, sock, 0);
        cb_frame *f = cb_frame_decode(zmq_msg_data(&m), zmq_msg_size(&m), SIZE_MAX, NULL);
        zmq_msg_close(&m);
        if (f && f->kind_case != CAREBRIDGE__V1__FRAME__KIND_HEARTBEAT)
            return f;
        cb_frame_free(&f);
    }
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long drain(void *sock)
{
    long n = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) >= 0)
        n++;
    zmq_msg_close(&m);
    return n;
}

static int flood(void *sock, void *ctx, long n, const char *hex)
{
    uint8_t *buf;
    size_t len = unhex(hex, &buf);
    long answers = 0;
    double start = now_s();
    for (long k = 0; k < n; k++) {
        while (zmq_send(sock, buf, len, ZMQ_DONTWAIT) < 0) {
            answers += drain(sock); /* the socket is full: read what came back meanwhile */
            zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN | ZMQ_POLLOUT, 0};
            zmq_poll(&item, 1, 10);
        }
    }
    double sent = now_s();
    for (;;) {
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 1000) <= 0)
            break;
        answers += drain(sock);
    }
    printf("{\"sent\": %ld, \"answers\": %ld, \"seconds\": %.3f}\n", n, answers, sent - start);
    free(buf);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    static const char usage[] = "Usage: cb-test-rawframe ENDPOINT [--as AGENCY] [--flood N] HEX...\n"
                                "Send each HEX string as one frame to the broker (after a hello as AGENCY)\n"
                                "and print each answer as JSON, or TIMEOUT. For the refusal tests.\n";
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc == 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
        puts("cb-test-rawframe " CB_VERSION);
        return 0;
    }
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, i = 2;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    char why[300];
    if (!cb_curve_client(sock, getenv("CAREBRIDGE_KEY"), getenv("CAREBRIDGE_BROKER_KEY"), why, sizeof why)) {
        fprintf(stderr, "cb-test-rawframe: %s\n", why);
        return 2;
    }
    if (zmq_connect(sock, argv[1]) < 0)
        return 2;
    if (argc > 3 && !strcmp(argv[2], "--as")) {
        Carebridge__V1__Hello h = CAREBRIDGE__V1__HELLO__INIT;
        h.agency = argv[3];
        cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
        f.kind_case = CAREBRIDGE__V1__FRAME__KIND_HELLO;
        f.hello = &h;
        uint8_t *buf;
        size_t len = cb_pack(&f.base, &buf);
        zmq_send(sock, buf, len, 0);
        free(buf);
        cb_frame *w = answer(sock);
        if (!w || w->kind_case != CAREBRIDGE__V1__FRAME__KIND_WELCOME) {
            fputs("no welcome\n", stderr);
            return 2;
        }
        cb_frame_free(&w);
        i = 4;
    }
    if (i + 2 < argc && !strcmp(argv[i], "--flood"))
        return flood(sock, ctx, atol(argv[i + 1]), argv[i + 2]);
    for (; i < argc; i++) {
        uint8_t *buf;
        size_t len = unhex(argv[i], &buf);
        zmq_send(sock, buf, len, 0);
        free(buf);
        cb_frame *f = answer(sock);
        char *json = f ? cb_json_dumps(&f->base, NULL) : NULL;
        puts(json ? json : "TIMEOUT");
        free(json);
        cb_frame_free(&f);
    }
    fflush(stdout);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return 0;
}
