/* cb-bench-retention-fill: a broker store holding N audit records and E
 * events (each a referral from health, queued for housing, indexed by id and
 * person) written D days ago, for bench/run's retention phase: a broker that
 * starts on it keeping both for less than D days has all of them to remove
 * while it serves.
 *
 *   cb-bench-retention-fill --dir DIR --records N [--events E] --days-ago D [--map-mb M]
 *                           [--person NHS]
 *
 * --person makes every event about that one person (the retention test's),
 * and every audit record too; else they are about a million people.
 *
 * Prints {"records": N, "events": E, "seconds": S}. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "cb_codec.h"
#include "clock.h"
#include "store.h"

#define PER_TXN 20000

static bool fill_audit(cb_store *store, unsigned long long n, uint64_t then, const char *one, cb_error *err)
{
    for (unsigned long long done = 0; done < n;) {
        cb_txn *txn = cb_txn_begin(store, true, err);
        if (!txn)
            return false;
        for (unsigned i = 0; i < PER_TXN && done < n; i++, done++) {
            cb_audit_entry e = cb_audit_of(NULL, "social-care", "delivery");
            snprintf(e.person, sizeof e.person, "p-%010llx", one ? 0 : done % 100000);
            snprintf(e.detail, sizeof e.detail, "seq=%llu attempt=1", done + 1);
            cb_audit_put(txn, &e, then + done / 100); /* a hundred a millisecond, in order */
        }
        if (cb_txn_commit(&txn, err))
            return false;
    }
    return true;
}

/* Events as a sender's system makes them: a referral with a person and a
 * reason, packed by protobuf-c, stored as the commit stores one. */
static bool fill_events(cb_store *store, unsigned long long n, uint64_t then, const char *one, cb_error *err)
{
    Carebridge__V1__Envelope ev = CAREBRIDGE__V1__ENVELOPE__INIT;
    Carebridge__V1__Person person = CAREBRIDGE__V1__PERSON__INIT;
    Carebridge__V1__Referral referral = CAREBRIDGE__V1__REFERRAL__INIT;
    char id[32], nhs[16], key[24];
    char *to[] = {"housing"};
    ev.event_id = id;
    ev.from_agency = "health";
    ev.to_agencies = to;
    ev.n_to_agencies = 1;
    ev.person = &person;
    person.nhs_number = nhs;
    ev.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL;
    ev.referral = &referral;
    referral.reason = "Fall at home; lives alone; needs a package of care before discharge";
    uint8_t buf[1024];
    for (unsigned long long done = 0; done < n;) {
        cb_txn *txn = cb_txn_begin(store, true, err);
        if (!txn)
            return false;
        uint64_t seq = cb_store_last_seq(txn);
        for (unsigned i = 0; i < PER_TXN && done < n; i++, done++) {
            snprintf(id, sizeof id, "fill-%llu", done);
            if (one)
                snprintf(nhs, sizeof nhs, "%s", one);
            else
                snprintf(nhs, sizeof nhs, "90%08llu", done % 1000000);
            snprintf(key, sizeof key, "nhs:%s", nhs);
            const char *keys[] = {key};
            size_t len = carebridge__v1__envelope__pack(&ev, buf);
            cb_stored_event s = {.seq = ++seq,
                                 .bytes = buf,
                                 .len = len,
                                 .event_id = id,
                                 .person_keys = keys,
                                 .n_person_keys = 1,
                                 .from_agency = "health",
                                 .recipients = (const char *const *)to,
                                 .n_recipients = 1};
            cb_store_put_event(txn, &s, then + done / 100);
        }
        cb_store_index_work(txn, 8 * PER_TXN);
        if (cb_txn_commit(&txn, err))
            return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"dir", required_argument, 0, 'd'},
                                         {"records", required_argument, 0, 'n'},
                                         {"events", required_argument, 0, 'e'},
                                         {"days-ago", required_argument, 0, 'a'},
                                         {"map-mb", required_argument, 0, 'm'},
                                         {"person", required_argument, 0, 'p'},
                                         {"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},
                                         {0, 0, 0, 0}};
    const char *dir = NULL, *person = NULL;
    unsigned long long n = 0, events = 0, days = 0, map_mb = 4096;
    int c;
    while ((c = getopt_long(argc, argv, "d:n:e:a:m:p:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 'e': events = strtoull(optarg, NULL, 10); break;
        case 'a': days = strtoull(optarg, NULL, 10); break;
        case 'm': map_mb = strtoull(optarg, NULL, 10); break;
        case 'p': person = optarg; break;
        case 'h':
            puts("Usage: cb-bench-retention-fill --dir DIR --records N [--events E] --days-ago D [--map-mb M] "
                 "[--person NHS]");
            return 0;
        case 'V': puts("cb-bench-retention-fill " CB_VERSION); return 0;
        default: return 2;
        }
    }
    if (!dir || !(n || events) || !days) {
        fputs("cb-bench-retention-fill: --dir, --records or --events, and --days-ago are required\n", stderr);
        return 2;
    }
    if (person && strlen(person) != 10) {
        fputs("cb-bench-retention-fill: --person takes a ten-digit NHS number\n", stderr);
        return 2;
    }
    cb_error err = {0};
    cb_store *store = cb_store_open_with(dir, map_mb << 20, 0.99, cb_broker_keyspaces, CB_BROKER_KEYSPACES, &err);
    if (!store) {
        fprintf(stderr, "cb-bench-retention-fill: %s\n", err.reason);
        return 1;
    }
    uint64_t then = cb_wall_ms() - days * 86400000ull;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool ok = fill_events(store, events, then, person, &err) && fill_audit(store, n, then, person, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cb_store_destroy(&store);
    if (!ok) {
        fprintf(stderr, "cb-bench-retention-fill: %s\n", err.reason);
        return 1;
    }
    printf("{\"records\": %llu, \"events\": %llu, \"seconds\": %.3f}\n", n, events,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
