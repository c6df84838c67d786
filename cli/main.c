/* carebridge: send and receive events, and ask the broker about queues and journeys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>

#include "cb_json.h"
#include "cli.h"

static const char usage[] =
    "Usage: carebridge [--broker ENDPOINT] [--feed ENDPOINT] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  send --as AGENCY [--timeout S] [--window N] [FILE|-]\n"
    "        publish events: NDJSON, a JSON array, or JSON objects one after another;\n"
    "        prints per event\n"
    "        'ACK <eventId> seq=<n>[ duplicate][ warnings=<field>:<reason>,...]' or\n"
    "        'NACK <eventId> <CODE>: <reason>', and\n"
    "        'ERROR line <n>[, column <c>]: <reason>' for what is not an event.\n"
    "        Unacknowledged events are resent, also across a broker restart.\n"
    "        Exit 0 all acked, 1 any NACK or bad line, 2 usage, connection, or no\n"
    "        progress for S seconds (default 5).\n"
    "  recv --as AGENCY [--count N] [--timeout S] [--no-ack]\n"
    "        print delivered events as canonical JSON, one per line, acknowledging\n"
    "        each after printing it. Stops after N events, or after S seconds\n"
    "        without one. Exit 1 if fewer than N arrived.\n"
    "  journey [NHS-or-CHI-number] [--local SYSTEM:VALUE]... [--json]\n"
    "        the person's timeline across agencies, where each handoff stands, and\n"
    "        the flags on each event\n"
    "  flags [--open] [--type T] [--agency A] [--person N] [--since DATE] [--json]\n"
    "        the handoff flags, newest first, with what would resolve each\n"
    "  report [--since DATE] [--until DATE] [--json]\n"
    "        the gap report per agency pair: times to acknowledge and decide,\n"
    "        declines, redirects, bounces, missing fields, open flags\n"
    "  status [--json]\n"
    "        per agency: connected, queued, in flight, parked, oldest undelivered;\n"
    "        the store's size and last seq\n"
    "  replay <eventId|seq> --to AGENCY\n"
    "        queue a stored (or parked) event again for one recipient\n"
    "  tail [--agency AGENCY] [--type TYPE] [--count N] [--timeout S]\n"
    "        print the live feed of committed events as JSON {seq, event}\n"
    "  audit [--person N] [--agency WHO] [--since DATE] [--limit N] [--json]\n"
    "        who has read what: every read of personal data and every refusal,\n"
    "        newest first, people as pseudonyms\n"
    "  keys new --name NAME --out DIR\n"
    "        write a CURVE key pair: DIR/NAME.key (the secret, mode 0600) and\n"
    "        DIR/NAME.pub; prints the public key to list in the broker's configuration\n"
    "  demo [--health HOST:PORT] [--social HOST:PORT] [--inbox DIR]\n"
    "        play Margaret's discharge through the running adapters (`make run`): HL7\n"
    "        over MLLP, FHIR over HTTP, a housing CSV; then print her journey\n"
    "\n"
    "Options:\n"
    "  --broker ENDPOINT   broker endpoint (default $CAREBRIDGE_BROKER or " CLI_DEFAULT_BROKER ")\n"
    "  --feed ENDPOINT     feed endpoint for tail (default $CAREBRIDGE_FEED or " CLI_DEFAULT_FEED ")\n"
    "  --key FILE          this user's CURVE secret key file (default $CAREBRIDGE_KEY), for a\n"
    "                      broker with broker.key_file set; with --broker-key\n"
    "  --broker-key KEY    the broker's public key, as its 40 Z85 characters or a file\n"
    "                      holding them (default $CAREBRIDGE_BROKER_KEY)\n"
    "  -h, --help          this text;  -V, --version  the version\n"
    "Every command also takes --help.\n";

static const struct {
    const char *name;
    int (*run)(const cli_globals *, int, char **);
} commands[] = {
    {"send", cli_send},     {"recv", cli_recv}, {"journey", cli_journey}, {"status", cli_status},
    {"replay", cli_replay}, {"tail", cli_tail}, {"flags", cli_flags},     {"report", cli_report},
    {"demo", cli_demo},     {"keys", cli_keys}, {"audit", cli_audit},
};

bool cli_seconds(const char *text, double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !(v > 0) || v > 86400 * 365)
        return false;
    *out = v;
    return true;
}

bool cli_print_json(const ProtobufCMessage *m)
{
    cb_error err = {0};
    char *text = cb_json_dumps(m, &err);
    if (!text) {
        fprintf(stderr, "carebridge: cannot print a message as JSON: %s\n", err.reason);
        return false;
    }
    puts(text);
    free(text);
    return true;
}

void cli_no_broker(const char *command, const char *endpoint, double seconds)
{
    fprintf(stderr, "carebridge %s: no answer from the broker within %g s; is the broker running at %s?\n", command,
            seconds, endpoint);
}

bool cli_local_add(cli_locals *l, const char *arg)
{
    const char *colon = strrchr(arg, ':');
    if (!colon || l->n == CLI_LOCALS_MAX)
        return false;
    Carebridge__V1__LocalId *id = &l->ids[l->n];
    carebridge__v1__local_id__init(id);
    snprintf(l->systems[l->n], sizeof l->systems[l->n], "%.*s", (int)(colon - arg), arg);
    id->system = l->systems[l->n];
    id->value = (char *)colon + 1;
    l->ptrs[l->n++] = id;
    return true;
}

cb_client_opts cli_client_opts(const cli_globals *g)
{
    return (cb_client_opts){.endpoint = g->broker, .key_file = g->key_file, .broker_key = g->broker_key};
}

cb_frame *cli_request(const cli_globals *g, const char *command, cb_frame *request, int timeout_ms)
{
    cb_error err = {0};
    cb_client_opts opts = cli_client_opts(g);
    cb_client *c = cb_client_new(&opts, NULL, NULL, &err);
    if (!c) {
        fprintf(stderr, "carebridge %s: %s\n", command, err.reason);
        return NULL;
    }
    cb_frame *reply = cb_client_request(c, request, timeout_ms, &err);
    if (!reply && cb_client_failure(c))
        fprintf(stderr, "carebridge %s: %s\n", command, cb_client_failure(c));
    else if (!reply)
        cli_no_broker(command, g->broker, timeout_ms / 1000.0);
    cb_client_destroy(&c);
    return reply;
}

int main(int argc, char **argv)
{
    cli_globals g = {getenv("CAREBRIDGE_BROKER"), getenv("CAREBRIDGE_FEED"), getenv("CAREBRIDGE_KEY"),
                     getenv("CAREBRIDGE_BROKER_KEY")};
    if (!g.broker)
        g.broker = CLI_DEFAULT_BROKER;
    if (!g.feed)
        g.feed = CLI_DEFAULT_FEED;
    signal(SIGPIPE, SIG_IGN);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return CLI_OK;
        }
        if (!strcmp(argv[i], "-V") || !strcmp(argv[i], "--version")) {
            puts("carebridge " CB_VERSION);
            return CLI_OK;
        }
        const char **global = !strcmp(argv[i], "--broker")       ? &g.broker
                              : !strcmp(argv[i], "--feed")       ? &g.feed
                              : !strcmp(argv[i], "--key")        ? &g.key_file
                              : !strcmp(argv[i], "--broker-key") ? &g.broker_key
                                                                 : NULL;
        if (global && i + 1 < argc) {
            *global = argv[++i];
            continue;
        }
        fprintf(stderr, "carebridge: unknown option '%s'\n\n%s", argv[i], usage);
        return CLI_USAGE;
    }
    if (i == argc) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    for (size_t c = 0; c < sizeof commands / sizeof commands[0]; c++)
        if (!strcmp(argv[i], commands[c].name))
            return commands[c].run(&g, argc - i, argv + i);
    fprintf(stderr, "carebridge: unknown command '%s'\n\n%s", argv[i], usage);
    return CLI_USAGE;
}
