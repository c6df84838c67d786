/* carebridge send: NDJSON events in, one ACK or NACK line out per event. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cb_json.h"
#include "cli.h"

static const char usage[] =
    "Usage: carebridge send --as AGENCY [--timeout S] [--window N] [--broker ENDPOINT] [FILE|-]\n"
    "\n"
    "Publish events from FILE (or standard input), one JSON event per line, as AGENCY.\n"
    "Prints 'ACK <eventId> seq=<n>' (then ' duplicate' when it was stored already, and\n"
    "' warnings=<field>:<reason>,...' for what the sending system should put right, such\n"
    "as person.nhsNumber:check-digit) or 'NACK <eventId> <CODE>: <reason>' per event, and\n"
    "'ERROR line <n>: <reason>' for a line that is not an event. Keeps up to N events\n"
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

/* Read the next event line into an envelope; NULL at end of input. Lines
 * that are not events are reported and counted, never sent. */
static cb_envelope *next_event(FILE *in, unsigned long *line_no, tally *t, bool *eof)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    cb_envelope *ev = NULL;
    while (!ev && (len = getline(&line, &cap, in)) >= 0) {
        ++*line_no;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (!len)
            continue;
        cb_error err = {0};
        ev = (cb_envelope *)cb_json_loads(&carebridge__v1__envelope__descriptor, line, (size_t)len, &err);
        if (!ev) {
            printf("ERROR line %lu: %s\n", *line_no, err.reason);
            t->refused++;
        }
    }
    free(line);
    if (!ev)
        *eof = true;
    return ev;
}

int cli_send(const cli_globals *g_in, int argc, char **argv)
{
    static const struct option opts[] = {{"as", required_argument, 0, 'a'},     {"timeout", required_argument, 0, 't'},
                                         {"window", required_argument, 0, 'w'}, {"broker", required_argument, 0, 'b'},
                                         {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    cli_globals g = *g_in;
    const char *agency = NULL;
    double timeout_s = 5;
    long window = 1024;
    int c;
    while ((c = getopt_long(argc, argv, "a:t:w:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'a': agency = optarg; break;
        case 'b': g.broker = optarg; break;
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
    FILE *in = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!in) {
        fprintf(stderr, "carebridge send: cannot open %s\n", path);
        return CLI_USAGE;
    }

    tally t = {0, 0, cb_client_now_ms()};
    cb_error err = {0};
    cb_client_opts copts = {
        .endpoint = g.broker, .agency = agency, .window = (uint32_t)window, .name = "carebridge send " CB_VERSION};
    cb_client_handlers h = {.answered = answered};
    cb_client *client = cb_client_new(&copts, &h, &t, &err);
    if (!client) {
        fprintf(stderr, "carebridge send: %s\n", err.reason);
        if (in != stdin)
            fclose(in);
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
            fprintf(stderr, "carebridge send: no answer from %s for %.0f s; %zu events unacknowledged\n", g.broker,
                    timeout_s, cb_client_unanswered(client));
            status = CLI_USAGE;
            break;
        }
    }
    fflush(stdout);
    cb_client_destroy(&client);
    if (in != stdin)
        fclose(in);
    if (status == CLI_OK && t.refused)
        status = CLI_FAILED;
    return status;
}
