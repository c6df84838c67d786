/* cb-test-slowrecv: a receiver that is alive but slow, as an adapter behind
 * a busy agency system is: it takes every delivery into a queue and
 * acknowledges one every D ms, duplicates included, through the client
 * library. It reports how many distinct deliveries it ever held
 * unacknowledged at once, for the window tests.
 *
 *   cb-test-slowrecv ENDPOINT AGENCY CREDIT ACK_EVERY_MS UNTIL_ACKED TIMEOUT_S
 *
 * Prints one JSON line: {"acked": distinct seqs acknowledged, "deliveries":
 * frames received, "max_held": most distinct seqs held unacknowledged}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

#define MAX_SEQ  (1 << 16)
#define FIFO_CAP (1 << 16)

typedef struct {
    uint64_t fifo[FIFO_CAP];
    size_t head, tail;
    unsigned char held[MAX_SEQ], acked[MAX_SEQ];
    unsigned n_held, max_held, n_acked, deliveries;
} receiver;

static bool delivered(void *arg, const Carebridge__V1__Deliver *d)
{
    receiver *r = arg;
    r->deliveries++;
    if (d->seq >= MAX_SEQ || r->tail - r->head == FIFO_CAP)
        return false;
    if (!r->acked[d->seq] && !r->held[d->seq]) {
        r->held[d->seq] = 1;
        if (++r->n_held > r->max_held)
            r->max_held = r->n_held;
    }
    r->fifo[r->tail++ % FIFO_CAP] = d->seq;
    return false; /* acknowledged later, in turn */
}

int main(int argc, char **argv)
{
    static const char usage[] = "Usage: cb-test-slowrecv ENDPOINT AGENCY CREDIT ACK_EVERY_MS UNTIL_ACKED TIMEOUT_S\n"
                                "Receive as AGENCY and acknowledge one delivery every ACK_EVERY_MS, for the\n"
                                "window tests; prints {\"acked\", \"deliveries\", \"max_held\"} as JSON.\n";
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc == 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
        puts("cb-test-slowrecv " CB_VERSION);
        return 0;
    }
    if (argc != 7) {
        fputs(usage, stderr);
        return 2;
    }
    static receiver r;
    int64_t every = atol(argv[4]), until = atol(argv[5]), deadline = cb_client_now_ms() + 1000 * atol(argv[6]);
    cb_client_opts o = {.endpoint = argv[1],
                        .agency = argv[2],
                        .receive = true,
                        .credit = (uint32_t)atol(argv[3]),
                        .name = "cb-test-slowrecv"};
    cb_client_handlers h = {.delivered = delivered};
    cb_error err = {0};
    cb_client *c = cb_client_new(&o, &h, &r, &err);
    if (!c) {
        fprintf(stderr, "cb-test-slowrecv: %s\n", err.reason);
        return 2;
    }
    int64_t next_ack = cb_client_now_ms() + every;
    while (r.n_acked < until && cb_client_now_ms() < deadline) {
        int64_t now = cb_client_now_ms();
        if (cb_client_run(c, next_ack > now ? (int)(next_ack - now) : 0) < 0) {
            fprintf(stderr, "cb-test-slowrecv: %s\n", cb_client_failure(c));
            return 2;
        }
        if (cb_client_now_ms() < next_ack || r.head == r.tail)
            continue;
        next_ack = cb_client_now_ms() + every;
        uint64_t seq = r.fifo[r.head++ % FIFO_CAP];
        cb_client_ack(c, seq);
        if (!r.acked[seq]) {
            r.acked[seq] = 1;
            r.held[seq] = 0;
            r.n_held--;
            r.n_acked++;
        }
    }
    printf("{\"acked\": %u, \"deliveries\": %u, \"max_held\": %u}\n", r.n_acked, r.deliveries, r.max_held);
    cb_client_destroy(&c);
    return 0;
}
