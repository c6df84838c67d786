/* carebridge send: events in (NDJSON, a JSON array, or objects one after
 * another), one ACK or NACK line out per event. */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cb_json.h"
#include "cli.h"
#include "input.h"

static const char usage[] =
    "Usage: carebridge send --as AGENCY [--timeout S] [--window N] [--broker ENDPOINT] [FILE|-]\n"
    "\n"
    "Publish events from FILE (or standard input) as AGENCY. Each event is one JSON\n"
    "object: give them as NDJSON (one per line), as a JSON array of objects, or as\n"
    "objects one after another over several lines (the README's examples pasted as\n"
    "they are); a UTF-8 byte-order mark and CRLF line ends are fine.\n"
    "Prints 'ACK <eventId> seq=<n>' (then ' duplicate' when it was stored already,\n"
    "' flags=<TYPE>,...' for the handoff flags the event raised, such as\n"
    "MISSING_INFORMATION, and ' warnings=<field>:<reason>,...' for what the sending\n"
    "system should put right, such as person.nhsNumber:check-digit) or 'NACK <eventId> <CODE>: <reason>' per event, "
    "and\n"
    "'ERROR line <n>[, column <c>]: <reason>' for what is not an event (reading goes on\n"
    "at the next line). Keeps up to N events\n"
    "(default 1024, and at most 8 MiB of them) in flight and resends any not answered,\n"
    "including across a broker restart: the event id makes a resend harmless.\n"
    "Exit 0 when every event was acknowledged, 1 on any NACK or bad line, 2 on a usage\n"
    "or connection error or when nothing is answered for S seconds (default 5).\n";

typedef struct {
    unsigned long acked, refused;
    int64_t last_progress;
} tally;

static void answered(void *arg, void *tag, const Carebridge__V1__Ack *ack, const Carebridge__V1__Nack *nack)
{
    tally *t = arg;
    t->last_progress = cb_client_now_ms();
    if (ack) {
        printf("ACK %s seq=%llu%s", ack->event_id, (unsigned long long)ack->seq, ack->duplicate ? " duplicate" : "");
        for (size_t i = 0; i < ack->n_flags; i++) {
            const ProtobufCEnumValue *v =
                protobuf_c_enum_descriptor_get_value(&carebridge__v1__flag__type__descriptor, (int)ack->flags[i]);
            printf("%s%s", i ? "," : " flags=", v ? v->name : "UNKNOWN");
        }
        for (size_t i = 0; i < ack->n_warnings; i++)
            printf("%s%s:%s", i ? "," : " warnings=", ack->warnings[i]->field, ack->warnings[i]->reason);
        putchar('\n');
        t->acked++;
        return;
    }
    t->refused++;
    if (nack->event_id[0])
        printf("NACK %s %s: %s\n", nack->event_id, cb_code_name((cb_code)nack->code), nack->reason);
    else
        printf("NACK (line %lu) %s: %s\n", (unsigned long)(uintptr_t)tag, cb_code_name((cb_code)nack->code),
               nack->reason);
}

/* The next event; NULL at the end of the input. What is not an event is
 * reported, with where it is, and counted, never sent. *line is where the
 * event starts. */
static cb_envelope *next_event(cli_input *in, unsigned long *line, tally *t, bool *eof)
{
    for (;;) {
        const char *text;
        size_t len;
        cb_json_pos at;
        char why[240];
        cli_input_result r = cli_input_next(in, &text, &len, &at, why, sizeof why);
        if (r == CLI_INPUT_END) {
            *eof = true;
            return NULL;
        }
        if (r == CLI_INPUT_ERROR) {
            printf("ERROR line %d, column %d: %s\n", at.line, at.column, why);
            t->refused++;
            continue;
        }
        cb_json_pos start = at;
        cb_error err = {0};
        cb_envelope *ev = (cb_envelope *)cb_json_loads_at(&carebridge__v1__envelope__descriptor, text, len, &at, &err);
        if (ev) {
            *line = (unsigned long)start.line;
            return ev;
        }
        t->refused++;
        if (err.code == CB_DECODE_ERROR) {
            /* Not JSON: say where, and read on from the line after it. */
            printf("ERROR line %d: %s; each event is one JSON object\n", at.line, err.reason);
            cli_input_resume_after(in, at);
        } else {
            printf("ERROR line %d: %s\n", start.line, err.reason);
        }
    }
}

int cli_send(const cli_globals *g_in, int argc, char **argv)
{
    static const struct option opts[] = {{"as", required_argument, 0, 'a'},
                                         {"timeout", required_argument, 0, 't'},
                                         {"window", required_argument, 0, 'w'},
                                         {"broker", required_argument, 0, 'b'},
                                         CLI_KEY_OPTIONS,
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    cli_globals g = *g_in;
    const char *agency = NULL;
    double timeout_s = 5;
    long window = 1024;
    int c;
    while ((c = getopt_long(argc, argv, "a:t:w:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'a': agency = optarg; break;
        case 'b': g.broker = optarg; break;
        case CLI_OPT_KEY: g.key_file = optarg; break;
        case CLI_OPT_BROKER_KEY: g.broker_key = optarg; break;
        case 't':
            if (!cli_seconds(optarg, &timeout_s)) {
                fprintf(stderr, "carebridge send: --timeout needs a positive number of seconds\n");
                return CLI_USAGE;
            }
            break;
        case 'w':
            window = strtol(optarg, NULL, 10);
            if (window < 1 || window > 65536) {
                fprintf(stderr, "carebridge send: --window must be between 1 and 65536\n");
                return CLI_USAGE;
            }
            break;
        case 'h': fputs(usage, stdout); return CLI_OK;
        default: fputs(usage, stderr); return CLI_USAGE;
        }
    }
    if (!agency || argc - optind > 1) {
        fputs(agency ? "carebridge send: give at most one FILE\n" : "carebridge send: --as AGENCY is required\n",
              stderr);
        return CLI_USAGE;
    }
    const char *path = optind < argc ? argv[optind] : "-";
    FILE *file = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!file) {
        fprintf(stderr, "carebridge send: cannot open %s: %s\n", path, strerror(errno));
        return CLI_USAGE;
    }
    cli_input *in = cli_input_new(file);
    if (!in) {
        fputs("carebridge send: out of memory\n", stderr);
        return CLI_USAGE;
    }

    tally t = {0, 0, cb_client_now_ms()};
    cb_error err = {0};
    cb_client_opts copts = cli_client_opts(&g);
    copts.agency = agency;
    copts.window = (uint32_t)window;
    copts.name = "carebridge send " CB_VERSION;
    cb_client_handlers h = {.answered = answered};
    cb_client *client = cb_client_new(&copts, &h, &t, &err);
    if (!client) {
        fprintf(stderr, "carebridge send: %s\n", err.reason);
        cli_input_destroy(&in);
        if (file != stdin)
            fclose(file);
        return CLI_USAGE;
    }
    int status = CLI_OK;
    unsigned long line_no = 0;
    bool eof = false;
    int64_t timeout_ms = (int64_t)(timeout_s * 1000);
    while (!eof || cb_client_unanswered(client)) {
        while (!eof && cb_client_has_room(client)) {
            cb_envelope *ev = next_event(in, &line_no, &t, &eof);
            if (ev && !cb_client_publish(client, ev, (void *)(uintptr_t)line_no)) {
                printf("ERROR line %lu: out of memory\n", line_no);
                t.refused++;
            }
            cb_envelope_free(&ev);
        }
        if (cb_client_run(client, 100) < 0) {
            fprintf(stderr, "carebridge send: %s\n", cb_client_failure(client));
            status = CLI_USAGE;
            break;
        }
        if (cb_client_unanswered(client) && cb_client_now_ms() - t.last_progress > timeout_ms) {
            cli_no_broker("send", g.broker, timeout_s);
            fprintf(stderr, "carebridge send: %zu event(s) left unacknowledged\n", cb_client_unanswered(client));
            status = CLI_USAGE;
            break;
        }
    }
    fflush(stdout);
    cb_client_destroy(&client);
    cli_input_destroy(&in);
    if (file != stdin)
        fclose(file);
    if (status == CLI_OK && t.refused)
        status = CLI_FAILED;
    return status;
}
