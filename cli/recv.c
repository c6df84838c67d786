/* carebridge recv: print delivered events, acknowledging each once printed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "Usage: carebridge recv --as AGENCY [--count N] [--timeout S] [--no-ack] [--flags] [--broker ENDPOINT]\n"
    "\n"
    "Receive AGENCY's deliveries and print each event as canonical JSON on one line,\n"
    "acknowledging it to the broker only after it is printed. Events queued while\n"
    "AGENCY was offline arrive first, in order. A redelivered event may be printed\n"
    "again (delivery is at least once). Stops after N events, or after S seconds\n"
    "without a delivery (default: run until interrupted). With --count N it asks the\n"
    "broker for only N, and on leaving it says goodbye: what it held unprinted goes back\n"
    "to the queue without counting as a failed delivery.\n"
    "--no-ack prints without acknowledging: the events stay queued and are redelivered\n"
    "(and parked after limits.max_attempts), as with an adapter that fails on them.\n"
    "Exit 0 normally, 1 if --count was not reached, 2 on a usage or connection error\n"
    "(the broker must answer within 5 s).\n"
    "--flags prints each delivery whole instead, {\"seq\", \"attempt\", \"event\", \"flags\"}: the\n"
    "handoff flags open on the event when it was sent, for the receiving system to show.\n";

typedef struct {
    bool ack, flags;
    unsigned long printed, count;
    int64_t last_delivery;
} progress;

static bool delivered(void *arg, const Carebridge__V1__Deliver *d)
{
    progress *p = arg;
    if (p->count && p->printed >= p->count)
        return false; /* not printed, so not acknowledged: it stays queued */
    if (!d->event || !cli_print_json(p->flags ? &d->base : &d->event->base))
        return false;
    fflush(stdout);
    p->printed++;
    p->last_delivery = cb_client_now_ms();
    return p->ack;
}

int cli_recv(const cli_globals *g_in, int argc, char **argv)
{
    static const struct option opts[] = {{"as", required_argument, 0, 'a'},
                                         {"count", required_argument, 0, 'n'},
                                         {"timeout", required_argument, 0, 't'},
                                         {"broker", required_argument, 0, 'b'},
                                         CLI_KEY_OPTIONS,
                                         {"no-ack", no_argument, 0, 'N'},
                                         {"flags", no_argument, 0, 'F'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    cli_globals g = *g_in;
    const char *agency = NULL;
    double timeout_s = 0;
    long count = 0;
    bool ack = true, flags = false;
    int c;
    while ((c = getopt_long(argc, argv, "a:n:t:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'N': ack = false; break;
        case 'F': flags = true; break;
        case 'a': agency = optarg; break;
        case 'b': g.broker = optarg; break;
        case CLI_OPT_KEY: g.key_file = optarg; break;
        case CLI_OPT_BROKER_KEY: g.broker_key = optarg; break;
        case 'n':
            count = strtol(optarg, NULL, 10);
            if (count < 1) {
                fputs("carebridge recv: --count needs a positive number\n", stderr);
                return CLI_USAGE;
            }
            break;
        case 't':
            if (!cli_seconds(optarg, &timeout_s)) {
                fputs("carebridge recv: --timeout needs a positive number of seconds\n", stderr);
                return CLI_USAGE;
            }
            break;
        case 'h': fputs(usage, stdout); return CLI_OK;
        default: fputs(usage, stderr); return CLI_USAGE;
        }
    }
    if (!agency || optind < argc) {
        fputs(agency ? "carebridge recv: unexpected argument\n" : "carebridge recv: --as AGENCY is required\n", stderr);
        return CLI_USAGE;
    }
    progress p = {ack, flags, 0, (unsigned long)count, cb_client_now_ms()};
    cb_error err = {0};
    /* With --count N, take only N: what a receiver holds but does not print
     * would come back as a failed attempt if it went away uncleanly. */
    cb_client_opts copts = cli_client_opts(&g);
    copts.agency = agency;
    copts.receive = true;
    copts.credit = (uint32_t)count;
    copts.name = "carebridge recv " CB_VERSION;
    cb_client_handlers h = {.delivered = delivered};
    cb_client *client = cb_client_new(&copts, &h, &p, &err);
    if (!client) {
        fprintf(stderr, "carebridge recv: %s\n", err.reason);
        return CLI_USAGE;
    }
    int status = CLI_OK;
    int64_t start = cb_client_now_ms(), timeout_ms = (int64_t)(timeout_s * 1000);
    while (!p.count || p.printed < p.count) {
        if (cb_client_run(client, 100) < 0) {
            fprintf(stderr, "carebridge recv: %s\n", cb_client_failure(client));
            status = CLI_USAGE;
            break;
        }
        int64_t now = cb_client_now_ms();
        if (!cb_client_last_heard_ms(client) && now - start > 5000) {
            cli_no_broker("recv", g.broker, 5);
            status = CLI_USAGE;
            break;
        }
        if (timeout_ms && now - p.last_delivery > timeout_ms)
            break;
    }
    if (status == CLI_OK && p.count && p.printed < p.count) {
        fprintf(stderr, "carebridge recv: %lu of %lu events received\n", p.printed, p.count);
        status = CLI_FAILED;
    }
    cb_client_destroy(&client); /* lingers until the last acknowledgements are sent */
    return status;
}
