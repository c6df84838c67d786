/* carebridge tail: the broker's live feed of committed events. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cli.h"

static const char usage[] =
    "Usage: carebridge tail [--agency AGENCY] [--type TYPE] [--count N] [--timeout S] [--feed ENDPOINT]\n"
    "\n"
    "Print every event the broker commits from now on, as JSON {\"seq\":..., \"event\":...}\n"
    "one per line. --agency keeps the events sent to AGENCY; --type keeps one body type\n"
    "(referral, discharge, handover, response, update, closure). The feed is not\n"
    "durable: use recv for guaranteed delivery. Stops after N events or S seconds\n"
    "without one. Topics on the wire are '<recipient>.<type>' and '*.<type>'.\n";

int cli_tail(const cli_globals *g_in, int argc, char **argv)
{
    static const struct option opts[] = {{"agency", required_argument, 0, 'a'},
                                         {"type", required_argument, 0, 'y'},
                                         {"count", required_argument, 0, 'n'},
                                         {"timeout", required_argument, 0, 't'},
                                         {"feed", required_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    cli_globals g = *g_in;
    const char *agency = "*", *type = "";
    double timeout_s = 0;
    long count = 0;
    int c;
    while ((c = getopt_long(argc, argv, "a:y:n:t:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'a': agency = optarg; break;
        case 'y': type = optarg; break;
        case 'f': g.feed = optarg; break;
        case 'n': count = strtol(optarg, NULL, 10); break;
        case 't':
            if (!cli_seconds(optarg, &timeout_s)) {
                fputs("carebridge tail: --timeout needs a positive number of seconds\n", stderr);
                return CLI_USAGE;
            }
            break;
        case 'h': fputs(usage, stdout); return CLI_OK;
        default: fputs(usage, stderr); return CLI_USAGE;
        }
    }
    if (optind < argc || count < 0) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    char topic[256];
    /* With a type the topic is exact up to the frame end; prefix match on
     * "agency." alone keeps every type. */
    snprintf(topic, sizeof topic, "%s.%s", agency, type);
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int status = CLI_OK;
    if (zmq_connect(sub, g.feed) < 0) {
        fprintf(stderr, "carebridge tail: cannot connect to %s: %s\n", g.feed, zmq_strerror(errno));
        status = CLI_USAGE;
        goto out;
    }
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topic, strlen(topic));
    int64_t last = cb_client_now_ms();
    for (long seen = 0; !count || seen < count;) {
        zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 200) < 0)
            break;
        if (timeout_s && cb_client_now_ms() - last > timeout_s * 1000)
            break;
        if (!(item.revents & ZMQ_POLLIN))
            continue;
        zmq_msg_t t, body;
        zmq_msg_init(&t);
        zmq_msg_init(&body);
        bool ok = zmq_msg_recv(&t, sub, 0) >= 0 && zmq_msg_more(&t) && zmq_msg_recv(&body, sub, 0) >= 0;
        /* Subscriptions match prefixes: "health.re" would also match "health.referral". */
        bool exact = !type[0] || zmq_msg_size(&t) == strlen(topic);
        cb_frame *f = ok && exact ? cb_frame_decode(zmq_msg_data(&body), zmq_msg_size(&body), SIZE_MAX, NULL) : NULL;
        if (f && f->kind_case == CAREBRIDGE__V1__FRAME__KIND_DELIVER) {
            cli_print_json(&f->deliver->base);
            fflush(stdout);
            seen++;
            last = cb_client_now_ms();
        }
        cb_frame_free(&f);
        zmq_msg_close(&t);
        zmq_msg_close(&body);
    }
out:
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return status;
}
