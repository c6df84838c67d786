/* cb-bench-audit-fill: a broker store holding N audit records written D days
 * ago, for bench/run's retention phase (a broker that starts on it with
 * retention.audit_days below D has all of them to remove while it serves).
 *
 *   cb-bench-audit-fill --dir DIR --records N --days-ago D [--map-mb M]
 *
 * Prints {"records": N, "seconds": S}. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "clock.h"
#include "store.h"

#define PER_TXN 20000

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"dir", required_argument, 0, 'd'},
                                         {"records", required_argument, 0, 'n'},
                                         {"days-ago", required_argument, 0, 'a'},
                                         {"map-mb", required_argument, 0, 'm'},
                                         {"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},
                                         {0, 0, 0, 0}};
    const char *dir = NULL;
    unsigned long long n = 0, days = 0, map_mb = 4096;
    int c;
    while ((c = getopt_long(argc, argv, "d:n:a:m:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 'a': days = strtoull(optarg, NULL, 10); break;
        case 'm': map_mb = strtoull(optarg, NULL, 10); break;
        case 'h': puts("Usage: cb-bench-audit-fill --dir DIR --records N --days-ago D [--map-mb M]"); return 0;
        case 'V': puts("cb-bench-audit-fill " CB_VERSION); return 0;
        default: return 2;
        }
    }
    if (!dir || !n || !days) {
        fputs("cb-bench-audit-fill: --dir, --records and --days-ago are required\n", stderr);
        return 2;
    }
    cb_error err = {0};
    cb_store *store = cb_store_open_with(dir, map_mb << 20, 0.99, cb_broker_keyspaces, CB_BROKER_KEYSPACES, &err);
    if (!store) {
        fprintf(stderr, "cb-bench-audit-fill: %s\n", err.reason);
        return 1;
    }
    uint64_t then = cb_wall_ms() - days * 86400000ull;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned long long done = 0; done < n;) {
        cb_txn *txn = cb_txn_begin(store, true, &err);
        if (!txn) {
            fprintf(stderr, "cb-bench-audit-fill: %s\n", err.reason);
            return 1;
        }
        for (unsigned i = 0; i < PER_TXN && done < n; i++, done++) {
            cb_audit_entry e = cb_audit_of(NULL, "social-care", "delivery");
            snprintf(e.person, sizeof e.person, "p-%010llx", done % 100000);
            snprintf(e.detail, sizeof e.detail, "seq=%llu attempt=1", done + 1);
            cb_audit_put(txn, &e, then + done / 100); /* a hundred a millisecond, in order */
        }
        if (cb_txn_commit(&txn, &err)) {
            fprintf(stderr, "cb-bench-audit-fill: %s\n", err.reason);
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cb_store_destroy(&store);
    printf("{\"records\": %llu, \"seconds\": %.3f}\n", n,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
