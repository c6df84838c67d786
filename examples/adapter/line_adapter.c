/* A small adapter of one's own, built against the installed library alone
 * (README, "Writing an adapter"):
 *
 *   cc line_adapter.c $(pkg-config --cflags --libs carebridge-adapter) -o line-adapter
 *   ./line-adapter tcp://127.0.0.1:5570 voluntary ./outbox < events.ndjson
 *
 * Each line of standard input is one event in carebridge JSON: it is kept in
 * the outbox (synced) and "kept <eventId> <seq>" is printed, then sent on;
 * "accepted <seq> flags=..." or "refused <seq> <CODE>: <reason>" follows
 * when the broker answers. Each delivery to the agency is printed as one
 * JSON line, then acknowledged. It stops once standard input has ended,
 * every event has been answered, and nothing was delivered for a second. */
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <adapter.h>

static unsigned long owed;

static void answered(void *arg, const cb_adapter_answer *a)
{
    (void)arg;
    if (a->accepted) {
        printf("accepted %llu flags=", (unsigned long long)a->seq);
        for (size_t i = 0; i < a->n_flags; i++)
            printf("%s%s", i ? "," : "", a->flags[i]);
        printf("\n");
    } else {
        printf("refused %llu %s: %s\n", (unsigned long long)a->seq, a->code, a->reason);
    }
    fflush(stdout);
    owed--;
}

static cb_adapter_take delivered(void *arg, uint64_t seq, const char *event_id, const json_t *event)
{
    (void)arg;
    (void)seq;
    (void)event_id;
    char *text = json_dumps(event, JSON_COMPACT);
    printf("%s\n", text ? text : "{}");
    fflush(stdout);
    free(text);
    return CB_ADAPTER_TAKEN; /* printed: the agency system has it */
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "Usage: line-adapter BROKER AGENCY OUTBOX-DIR < events.ndjson\n");
        return 2;
    }
    cb_adapter_opts opts = {.broker = argv[1], .agency = argv[2], .outbox_dir = argv[3], .receive = true,
                            .name = "line-adapter 1.0"};
    cb_adapter_handlers handlers = {.answered = answered, .delivered = delivered};
    cb_adapter_error err = {0};
    cb_adapter *a = cb_adapter_open(&opts, &handlers, NULL, &err);
    if (!a) {
        fprintf(stderr, "line-adapter: %s: %s\n", cb_adapter_code_name(err.code), err.text);
        return 2;
    }
    bool input = true;
    long quiet_ms = 0;
    char line[65536];
    while (input || owed || quiet_ms < 1000) {
        struct pollfd fds[2] = {{.fd = cb_adapter_fd(a), .events = POLLIN}, {.fd = 0, .events = POLLIN}};
        int timeout = cb_adapter_due_ms(a) < 100 ? cb_adapter_due_ms(a) : 100;
        int n = poll(fds, input ? 2 : 1, timeout);
        quiet_ms = n > 0 ? 0 : quiet_ms + timeout;
        if (input && (fds[1].revents & (POLLIN | POLLHUP))) {
            if (!fgets(line, sizeof line, stdin)) {
                input = false;
            } else if (line[strspn(line, " \r\n")]) {
                json_error_t jerr;
                json_t *event = json_loads(line, 0, &jerr);
                cb_adapter_batch *b = cb_adapter_begin(a, &err);
                uint64_t seq = 0;
                cb_adapter_added added = event && b ? cb_adapter_add(b, event, NULL, &seq, &err) : CB_ADAPTER_FAILED;
                if (b && cb_adapter_commit(&b, &err) != CB_ADAPTER_OK)
                    added = CB_ADAPTER_FAILED;
                if (added == CB_ADAPTER_NEW) {
                    printf("kept %s %llu\n", json_string_value(json_object_get(event, "eventId")),
                           (unsigned long long)seq);
                    owed++;
                } else {
                    printf("not kept: %s\n", event ? err.text : jerr.text);
                }
                fflush(stdout);
                json_decref(event);
            }
        }
        if (cb_adapter_step(a, &err) == CB_ADAPTER_BROKER_REFUSED) {
            fprintf(stderr, "line-adapter: %s\n", err.text);
            break;
        }
    }
    cb_adapter_close(&a);
    return 0;
}
