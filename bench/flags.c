/* cb-bench-flags: the flag rules' reads at scale. The broker's own commit
 * (broker/commit.c, the rules inside it) stores N referrals, each to one
 * agency and lacking its consent, so each raises an INTER_AGENCY_HANDOFF and
 * a MISSING_INFORMATION flag and leaves a deadline open: 2N flags and N open
 * deadlines, in batches as the store thread commits them, every commit
 * synced. People are picked from N/10, so a journey has about ten events.
 * Then, with nothing due:
 *   - a tick of the time-based rules (a write transaction reading the due
 *     index, then aborted, as a tick with nothing due commits nothing);
 *   - `carebridge flags --open --agency A` as the query thread answers it
 *     (a read transaction, the reply packed);
 *   - a person's journey, with its flags inline, the same way.
 * Each is timed over many repetitions for its p50 and p99. In process: the
 * sockets add the same to every query, and the broker's own load tool
 * measures those (cb-bench-load --probe).
 *
 * Prints one JSON object on stdout. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "commit.h"
#include "config.h"
#include "audit.h"
#include "flagbook.h"
#include "flagquery.h"
#include "intake.h"
#include "log.h"
#include "query.h"
#include "rules.h"

static const char usage[] = "Usage: cb-bench-flags [--events N] [--repeat R] [--tmp DIR]\n"
                            "  --events N  referrals stored first (default 1000000): 2N flags, N open deadlines\n"
                            "  --repeat R  timings of each read (default 2000)\n"
                            "  --tmp DIR   where to create the store (default /tmp)\n";

#define BATCH 1000

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void nhs_of(uint32_t p, char out[16])
{
    for (unsigned k = 0; k < 10; k++) {
        char d[10];
        snprintf(d, sizeof d, "6%08u", (unsigned)((p * 10u + k) % 100000000u));
        unsigned sum = 0;
        for (int i = 0; i < 9; i++)
            sum += (unsigned)(d[i] - '0') * (unsigned)(10 - i);
        unsigned check = (11 - sum % 11) % 11;
        if (check != 10) {
            snprintf(out, 16, "%s%u", d, check);
            return;
        }
    }
}

typedef struct {
    cb_frame frame;
    Carebridge__V1__Publish publish;
    cb_envelope ev;
    Carebridge__V1__Person person;
    Carebridge__V1__Referral referral;
    Carebridge__V1__Contact contact;
    Carebridge__V1__Risk risk, *risks[1];
    Carebridge__V1__Outcome outcome, *outcomes[1];
    Google__Protobuf__Timestamp at;
    char *to[1], *needs[1];
    char id[32], nhs[16];
} event;

static void event_init(event *e, uint64_t k, uint32_t person, int64_t at_s)
{
    memset(e, 0, sizeof *e);
    carebridge__v1__frame__init(&e->frame);
    carebridge__v1__publish__init(&e->publish);
    carebridge__v1__envelope__init(&e->ev);
    carebridge__v1__person__init(&e->person);
    carebridge__v1__referral__init(&e->referral);
    carebridge__v1__contact__init(&e->contact);
    carebridge__v1__risk__init(&e->risk);
    carebridge__v1__outcome__init(&e->outcome);
    google__protobuf__timestamp__init(&e->at);
    snprintf(e->id, sizeof e->id, "bf-%012llu", (unsigned long long)k);
    nhs_of(person, e->nhs);
    e->person.nhs_number = e->nhs;
    e->at.seconds = at_s;
    e->contact.name = "ward 7";
    e->risk.description = "none known";
    e->risks[0] = &e->risk;
    e->outcome.statement = "manage at home";
    e->outcomes[0] = &e->outcome;
    e->needs[0] = "none";
    e->referral.reason = "support at home";
    e->referral.urgency = CAREBRIDGE__V1__REFERRAL__URGENCY__ROUTINE; /* consent left out: MISSING_INFORMATION */
    e->referral.contact = &e->contact;
    e->referral.risks = e->risks;
    e->referral.n_risks = 1;
    e->referral.communication_needs = e->needs;
    e->referral.n_communication_needs = 1;
    e->referral.outcomes = e->outcomes;
    e->referral.n_outcomes = 1;
    e->to[0] = "social-care";
    e->ev.event_id = e->id;
    e->ev.person = &e->person;
    e->ev.from_agency = "health";
    e->ev.to_agencies = e->to;
    e->ev.n_to_agencies = 1;
    e->ev.occurred_at = &e->at;
    e->ev.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL;
    e->ev.referral = &e->referral;
    e->publish.event = &e->ev;
    e->frame.kind_case = CAREBRIDGE__V1__FRAME__KIND_PUBLISH;
    e->frame.publish = &e->publish;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(int64_t *ns, size_t n, unsigned pct)
{
    qsort(ns, n, sizeof *ns, cmp_i64);
    size_t rank = (n * pct + 99) / 100;
    return ns[rank ? rank - 1 : 0] / 1e6;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"events", required_argument, 0, 'n'}, {"repeat", required_argument, 0, 'r'},
                                         {"tmp", required_argument, 0, 't'},    {"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},      {0, 0, 0, 0}};
    uint64_t n_events = 1000000;
    size_t repeat = 2000;
    const char *tmp = "/tmp";
    int c;
    while ((c = getopt_long(argc, argv, "n:r:t:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'n': n_events = strtoull(optarg, NULL, 10); break;
        case 'r': repeat = strtoul(optarg, NULL, 10); break;
        case 't': tmp = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': puts("cb-bench-flags " CB_VERSION); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (n_events < 1000 || !repeat) {
        fputs(usage, stderr);
        return 2;
    }
    cb_log_init(CB_LOG_WARN);
    char err_text[256];
    cb_config *cfg = cb_config_load(NULL, err_text, sizeof err_text);
    char root[256];
    snprintf(root, sizeof root, "%s/cb-bench-flags-XXXXXX", tmp);
    if (!cfg || !mkdtemp(root)) {
        fprintf(stderr, "cb-bench-flags: set-up failed\n");
        return 1;
    }
    char dir[300];
    snprintf(dir, sizeof dir, "%s/data", root);
    cb_error err = {0};
    uint64_t map = (n_events * 3000 > (4ull << 30) ? n_events * 3000 : (4ull << 30));
    cb_store *store = cb_store_open_with(dir, map, 0.99, cb_broker_keyspaces, CB_BROKER_KEYSPACES, &err);
    cb_commit *commit = store ? cb_commit_new(cfg, store, &err) : NULL;
    cb_batch *b = commit ? cb_batch_new(cb_commit_max_out(commit)) : NULL;
    event *evs = calloc(BATCH, sizeof *evs);
    if (!b || !evs) {
        fprintf(stderr, "cb-bench-flags: %s\n", err.reason[0] ? err.reason : "out of memory");
        return 1;
    }
    uint32_t people = (uint32_t)(n_events / 10);
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    int64_t mono = 1;
    int64_t fill_start = now_ns();
    for (uint64_t done = 0; done < n_events;) {
        size_t n = n_events - done < BATCH ? (size_t)(n_events - done) : BATCH;
        uint64_t wall = wall_ms();
        for (size_t i = 0; i < n; i++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            event_init(&evs[i], done + i, (uint32_t)(seed % people), (int64_t)(wall / 1000));
            if (!cb_batch_add_publish(b, 1, done + i, &evs[i].frame, 0)) {
                fprintf(stderr, "cb-bench-flags: out of memory\n");
                return 1;
            }
        }
        b->now_ms = mono++; /* monotonic ms moves slowly: the tick runs once, at the first batch */
        b->wall_ms = wall;
        cb_commit_batch(commit, b);
        for (size_t i = 0; i < b->n_pubs; i++)
            if (b->pubs[i].code) {
                fprintf(stderr, "cb-bench-flags: refused: %s\n", b->pubs[i].reason);
                return 1;
            }
        cb_batch_free_out(b);
        b->n_pubs = 0;
        cb_arena_reset(b->arena);
        done += n;
    }
    double fill_s = (now_ns() - fill_start) / 1e9;
    /* The merges the fill left, as an idle broker pays them. */
    for (bool more = true; more;) {
        cb_txn *txn = cb_txn_begin(store, true, &err);
        more = txn && cb_store_index_work(txn, 1 << 16);
        if (!txn || cb_txn_commit(&txn, &err)) {
            fprintf(stderr, "cb-bench-flags: merge: %s\n", err.reason);
            return 1;
        }
    }

    int64_t *ns = calloc(repeat, sizeof *ns);
    cb_rules *rules = cb_rules_new(cfg, store, cb_flagbook_broker());
    if (!ns || !rules)
        return 1;
    /* A tick with nothing due: the deadlines are four hours ahead. */
    for (size_t i = 0; i < repeat; i++) {
        cb_flag_feed feed = {0};
        int64_t t0 = now_ns();
        cb_txn *txn = cb_txn_begin(store, true, &err);
        cb_rules_tick(rules, txn, wall_ms(), 512, &feed);
        cb_txn_abort(&txn);
        ns[i] = now_ns() - t0;
    }
    double tick_p50 = pct_ms(ns, repeat, 50), tick_p99 = pct_ms(ns, repeat, 99);

    /* carebridge flags --open --agency social-care */
    Carebridge__V1__FlagsRequest fr = CAREBRIDGE__V1__FLAGS_REQUEST__INIT;
    fr.open_only = true;
    fr.agency = "social-care";
    size_t answered = 0;
    for (size_t i = 0; i < repeat; i++) {
        int64_t t0 = now_ns();
        cb_txn *txn = cb_txn_begin(store, false, &err);
        Carebridge__V1__FlagsReply *r = cb_flags_query(cfg, txn, &fr, &err);
        cb_txn_abort(&txn);
        cb_frame reply = CAREBRIDGE__V1__FRAME__INIT;
        reply.kind_case = CAREBRIDGE__V1__FRAME__KIND_FLAGS_REPLY;
        reply.flags_reply = r;
        uint8_t *packed = NULL;
        if (r)
            cb_pack(&reply.base, &packed);
        ns[i] = now_ns() - t0;
        answered = r ? r->n_flags : 0;
        free(packed);
        if (r)
            protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    double flags_p50 = pct_ms(ns, repeat, 50), flags_p99 = pct_ms(ns, repeat, 99);

    /* A random person's journey, flags inline. */
    size_t steps = 0;
    for (size_t i = 0; i < repeat; i++) {
        char nhs[16];
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        nhs_of((uint32_t)(seed % people), nhs);
        Carebridge__V1__JourneyRequest jr = CAREBRIDGE__V1__JOURNEY_REQUEST__INIT;
        jr.person_id = nhs;
        int64_t t0 = now_ns();
        cb_txn *txn = cb_txn_begin(store, false, &err);
        Carebridge__V1__JourneyReply *r = cb_query_journey(cfg, txn, &jr, &err);
        cb_txn_abort(&txn);
        cb_frame reply = CAREBRIDGE__V1__FRAME__INIT;
        reply.kind_case = CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REPLY;
        reply.journey_reply = r;
        uint8_t *packed = NULL;
        if (r)
            cb_pack(&reply.base, &packed);
        ns[i] = now_ns() - t0;
        steps += r ? r->n_steps : 0;
        free(packed);
        if (r)
            protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    double journey_p50 = pct_ms(ns, repeat, 50), journey_p99 = pct_ms(ns, repeat, 99);

    printf("{\"events\": %llu, \"flags\": %llu, \"open_deadlines\": %llu, \"fill_s\": %.1f, "
           "\"tick_p50_ms\": %.3f, \"tick_p99_ms\": %.3f, \"flags_query_p50_ms\": %.3f, \"flags_query_p99_ms\": %.3f, "
           "\"flags_query_answered\": %zu, \"journey_p50_ms\": %.3f, \"journey_p99_ms\": %.3f, "
           "\"journey_steps_avg\": %.1f}\n",
           (unsigned long long)n_events, (unsigned long long)(2 * n_events), (unsigned long long)n_events, fill_s,
           tick_p50, tick_p99, flags_p50, flags_p99, answered, journey_p50, journey_p99, (double)steps / repeat);
    cb_rules_free(&rules);
    cb_batch_free(&b);
    cb_commit_free(&commit);
    cb_store_destroy(&store);
    cb_config_free(&cfg);
    free(evs);
    free(ns);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : 1;
}
