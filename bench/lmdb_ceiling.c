/* cb-bench-lmdb: the LMDB ceiling. The broker's own store module, writing
 * per event exactly what the broker's commit writes for a publish to one
 * recipient (an id lookup that misses, then the event, its id, a person index
 * key, a case index key and one queue entry), B events per transaction, each
 * commit synced as the broker's is. No ZeroMQ, no protobuf, no hashing: no
 * broker built on this store can commit faster than this.
 *
 * Also times the machine's raw fdatasync (a 4 KiB pwrite then fdatasync,
 * repeated): every LMDB commit waits on the disk twice, an fdatasync of the
 * data pages and then the meta page written through a descriptor opened with
 * O_DSYNC, and that is the floor under every batch.
 *
 * With --rate, the ACK floor instead: events arrive on a steady schedule,
 * shaped as the scale phase's load (1,000,000 people, 1-2 recipients), and
 * one writer commits whatever has arrived the moment it is free, as the
 * store thread does. An event's latency is from its arrival to the end of
 * the commit that holds it: the broker's ACK at that rate less everything
 * but the store (sockets, threads, decoding). --store runs it on an existing
 * store, a stopped broker's, to have it at that store's size.
 *
 * Prints one JSON object on stdout. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

static const char usage[] =
    "Usage: cb-bench-lmdb [--batches B1,B2,...] [--events N] [--max-seconds S] [--size BYTES]\n"
    "                     [--syncs N] [--tmp DIR]\n"
    "       cb-bench-lmdb --rate R [--seconds S] [--store DIR --map-mb M | --prefill N]\n"
    "  --batches    events per synced commit, each measured in a fresh store (default 128,512;\n"
    "               'none' measures only the fdatasync cost)\n"
    "  --events N   events written per batch size (default 100000)\n"
    "  --max-seconds S  stop a batch size's run after S seconds (default 10)\n"
    "  --size B     stored event size (default 512)\n"
    "  --syncs N    4 KiB write+fdatasync rounds for the sync figure (default 1000; 0 skips)\n"
    "  --tmp DIR    where to create the temporary stores (default /tmp)\n"
    "  --rate R     the ACK floor: R events/s for --seconds S (default 10), each commit\n"
    "               taking what has arrived; latency from arrival to its commit's end\n"
    "  --store DIR  run the floor on the store in DIR (a stopped broker's data\n"
    "               directory, opened with a map of --map-mb M) instead of a fresh one\n"
    "  --prefill N  events written first (default 10000 into a fresh store, none into --store)\n";

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

/* Remove a temporary directory and the files directly in it (LMDB makes only
 * data.mdb and lock.mdb; nothing nests). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* What the broker's commit writes for one publish: the id looked up (it is
 * new), then the event under seq, its id, one person key and one case key
 * (person_no's), and a queue entry for each recipient. False if the id was
 * somehow stored already. */
static bool put_event(cb_txn *txn, uint64_t seq, const char *id, uint64_t person_no, const char *const *recipients,
                      size_t n_recipients, uint8_t *value, size_t size, uint64_t now_ms)
{
    char person[32], case_ref[32];
    uint64_t existing;
    uint8_t found[CB_DIGEST_BYTES];
    snprintf(person, sizeof person, "nhs:9%09llu", (unsigned long long)person_no);
    snprintf(case_ref, sizeof case_ref, "case-%07llu", (unsigned long long)person_no);
    if (cb_store_find_id(txn, id, &existing, found)) {
        fprintf(stderr, "cb-bench-lmdb: unexpected duplicate id\n");
        return false;
    }
    memcpy(value, &seq, sizeof seq); /* values differ, as events do */
    const char *keys[] = {person};
    cb_stored_event ev = {.seq = seq,
                          .bytes = value,
                          .len = size,
                          .event_id = id,
                          .person_keys = keys,
                          .n_person_keys = 1,
                          .from_agency = "health",
                          .case_ref = case_ref,
                          .recipients = recipients,
                          .n_recipients = n_recipients};
    cb_store_put_event(txn, &ev, now_ms);
    return true;
}

typedef struct {
    unsigned batch;
    uint64_t events, commits;
    double seconds, events_per_s, commit_ms_avg, commit_ms_p99, db_mb;
} batch_result;

static bool run_batch(const char *tmp, unsigned batch, uint64_t events, double max_s, size_t size, const char *prefix,
                      batch_result *out)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/cb-bench-lmdb.XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "cb-bench-lmdb: mkdtemp in %s: %s\n", tmp, strerror(errno));
        return false;
    }
    cb_error err = {0};
    cb_store *st = cb_store_open(dir, 8ULL << 30, 0.99, &err);
    uint8_t *value = malloc(size);
    uint64_t max_commits = events / batch + 2;
    int64_t *commit_ns = malloc(max_commits * sizeof *commit_ns);
    bool ok = st && value && commit_ns;
    if (!st)
        fprintf(stderr, "cb-bench-lmdb: %s\n", err.reason);
    for (size_t i = 0; value && i < size; i++)
        value[i] = (uint8_t)(i * 131 + 7);
    const char *recipients[] = {"social-care"};
    uint64_t seq = 0, commits = 0;
    int64_t t0 = now_ns(), max_ns = (int64_t)(max_s * 1e9);
    while (ok && seq < events && now_ns() - t0 < max_ns) {
        int64_t c0 = now_ns();
        cb_txn *txn = cb_txn_begin(st, true, &err);
        if (!txn) {
            ok = false;
            break;
        }
        uint64_t now = wall_ms();
        for (unsigned i = 0; ok && i < batch && seq < events; i++) {
            /* The same key shapes as cb-bench-load's events: a fixed-width
             * random-prefixed id, and 20000 people and cases. */
            char id[64];
            snprintf(id, sizeof id, "%s-00-%010llu", prefix, (unsigned long long)++seq);
            ok = put_event(txn, seq, id, seq % 20000, recipients, 1, value, size, now);
        }
        /* The merges its entries owe, as the broker's commit pays them. */
        cb_store_index_pay(txn, 8);
        if (!ok) {
            cb_txn_abort(&txn);
            break;
        }
        if (cb_txn_commit(&txn, &err) != CB_OK) {
            fprintf(stderr, "cb-bench-lmdb: commit: %s\n", err.reason);
            ok = false;
            break;
        }
        commit_ns[commits++] = now_ns() - c0;
    }
    int64_t t1 = now_ns();
    if (ok) {
        cb_txn *txn = cb_txn_begin(st, false, &err);
        uint64_t used = txn ? cb_store_used_bytes(txn) : 0;
        cb_txn_abort(&txn);
        int64_t sum = 0;
        for (uint64_t i = 0; i < commits; i++)
            sum += commit_ns[i];
        qsort(commit_ns, commits, sizeof *commit_ns, cmp_i64);
        uint64_t p99 = commits ? (uint64_t)((double)commits * 0.99 + 0.999999) : 1;
        *out = (batch_result){
            .batch = batch,
            .events = seq,
            .commits = commits,
            .seconds = (double)(t1 - t0) / 1e9,
            .events_per_s = (double)seq / ((double)(t1 - t0) / 1e9),
            .commit_ms_avg = commits ? (double)sum / (double)commits / 1e6 : 0,
            .commit_ms_p99 = commits ? (double)commit_ns[(p99 > commits ? commits : p99) - 1] / 1e6 : 0,
            .db_mb = (double)used / 1048576.0,
        };
    }
    cb_store_destroy(&st);
    free(value);
    free(commit_ns);
    remove_dir(dir);
    return ok;
}

/* ---- the ACK floor */

typedef struct {
    uint64_t events, commits;
    double p50_ms, p99_ms, p999_ms, max_ms;
} floor_result;

/* One event of the scale phase's load: one of 1,000,000 people (a case
 * reference each), to housing always and to social-care for half. */
static bool put_scale_event(cb_txn *txn, uint64_t seq, const char *prefix, uint8_t *value, size_t size, uint64_t now_ms)
{
    static const char *const recipients[] = {"housing", "social-care"};
    uint64_t mixed = seq * 0x9E3779B97F4A7C15ULL;
    char id[64];
    snprintf(id, sizeof id, "%s-%016llx", prefix, (unsigned long long)mixed);
    return put_event(txn, seq, id, (mixed >> 20) % 1000000, recipients, (mixed >> 63) ? 2 : 1, value, size, now_ms);
}

/* Write n events of the scale shape after the store's last, in one commit. */
static bool commit_events(cb_store *st, uint64_t n, const char *prefix, uint8_t *value, size_t size, uint64_t *seq)
{
    cb_error err = {0};
    cb_txn *txn = cb_txn_begin(st, true, &err);
    if (!txn) {
        fprintf(stderr, "cb-bench-lmdb: %s\n", err.reason);
        return false;
    }
    if (!*seq)
        *seq = cb_store_last_seq(txn);
    uint64_t now = wall_ms();
    for (uint64_t i = 0; i < n; i++)
        if (!put_scale_event(txn, ++*seq, prefix, value, size, now)) {
            cb_txn_abort(&txn);
            return false;
        }
    cb_store_index_pay(txn, 8); /* as the broker's commit pays for its entries' merges */
    if (cb_txn_commit(&txn, &err) != CB_OK) {
        fprintf(stderr, "cb-bench-lmdb: commit: %s\n", err.reason);
        return false;
    }
    return true;
}

static bool run_floor(const char *store_dir, uint64_t map_mb, const char *tmp, uint64_t prefill, double rate,
                      double seconds, size_t size, const char *prefix, floor_result *out)
{
    char dir[4096];
    if (store_dir) {
        snprintf(dir, sizeof dir, "%s", store_dir);
    } else {
        snprintf(dir, sizeof dir, "%s/cb-bench-lmdb.XXXXXX", tmp);
        if (!mkdtemp(dir)) {
            fprintf(stderr, "cb-bench-lmdb: mkdtemp in %s: %s\n", tmp, strerror(errno));
            return false;
        }
    }
    cb_error err = {0};
    cb_store *st = cb_store_open(dir, map_mb << 20, 0.99, &err);
    uint64_t total = (uint64_t)(rate * seconds);
    uint8_t *value = calloc(1, size);
    int64_t *lat = malloc((total ? total : 1) * sizeof *lat);
    bool ok = st && value && lat && total;
    if (!st)
        fprintf(stderr, "cb-bench-lmdb: %s\n", err.reason);
    uint64_t seq = 0, commits = 0, done = 0;
    for (uint64_t left = prefill != UINT64_MAX ? prefill : store_dir ? 0 : 10000; ok && left;) {
        uint64_t n = left < 512 ? left : 512;
        ok = commit_events(st, n, prefix, value, size, &seq);
        left -= n;
    }
    int64_t start = now_ns();
    while (ok && done < total) {
        int64_t t = now_ns();
        uint64_t due = (uint64_t)((double)(t - start) * rate / 1e9) + 1;
        if (due > total)
            due = total;
        if (due == done) { /* nothing has arrived: sleep until the next one does */
            int64_t at = start + (int64_t)((double)done * 1e9 / rate);
            struct timespec ts = {.tv_sec = at / 1000000000, .tv_nsec = at % 1000000000};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            continue;
        }
        ok = commit_events(st, due - done, prefix, value, size, &seq);
        int64_t end = now_ns();
        for (; done < due; done++)
            lat[done] = end - (start + (int64_t)((double)done * 1e9 / rate));
        commits++;
    }
    if (ok) {
        qsort(lat, done, sizeof *lat, cmp_i64);
#define PCT(p) ((double)lat[(uint64_t)((double)done * (p) / 100.0 + 0.999999) - 1] / 1e6)
        *out = (floor_result){.events = done,
                              .commits = commits,
                              .p50_ms = PCT(50),
                              .p99_ms = PCT(99),
                              .p999_ms = PCT(99.9),
                              .max_ms = (double)lat[done - 1] / 1e6};
#undef PCT
    }
    cb_store_destroy(&st);
    free(value);
    free(lat);
    if (!store_dir)
        remove_dir(dir);
    return ok;
}

/* 4 KiB overwritten in place then fdatasync'ed, n times: the cost of one
 * durable write on this disk, which LMDB waits for twice per commit. */
static bool sync_cost(const char *tmp, int n, double *avg_ms, double *p99_ms)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/cb-bench-sync.XXXXXX", tmp);
    if (!mkdtemp(dir))
        return false;
    snprintf(path, sizeof path, "%s/sync", dir);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    int64_t *t = malloc((size_t)n * sizeof *t);
    char block[4096];
    memset(block, 's', sizeof block);
    bool ok = fd >= 0 && t;
    /* Lay the blocks down first, so the timed loop measures data syncs and
     * not the file growing. */
    for (int i = 0; ok && i < 64; i++)
        ok = pwrite(fd, block, sizeof block, (off_t)i * 4096) == (ssize_t)sizeof block;
    ok = ok && fsync(fd) == 0;
    int64_t sum = 0;
    for (int i = 0; ok && i < n; i++) {
        int64_t t0 = now_ns();
        block[0] = (char)i;
        ok = pwrite(fd, block, sizeof block, (off_t)(i % 64) * 4096) == (ssize_t)sizeof block && fdatasync(fd) == 0;
        t[i] = now_ns() - t0;
        sum += t[i];
    }
    if (ok) {
        qsort(t, (size_t)n, sizeof *t, cmp_i64);
        *avg_ms = (double)sum / n / 1e6;
        *p99_ms = (double)t[(int)((double)n * 0.99 + 0.999999) - 1] / 1e6;
    }
    if (fd >= 0)
        close(fd);
    free(t);
    remove_dir(dir);
    return ok;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"batches", required_argument, 0, 'b'},     {"events", required_argument, 0, 'n'},
        {"max-seconds", required_argument, 0, 'm'}, {"size", required_argument, 0, 'z'},
        {"syncs", required_argument, 0, 'y'},       {"tmp", required_argument, 0, 't'},
        {"rate", required_argument, 0, 'r'},        {"seconds", required_argument, 0, 's'},
        {"store", required_argument, 0, 'd'},       {"map-mb", required_argument, 0, 'M'},
        {"prefill", required_argument, 0, 'p'},     {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},           {0, 0, 0, 0}};
    char batches_arg[256] = "128,512";
    uint64_t events = 100000;
    double max_s = 10;
    size_t size = 512;
    int syncs = 1000;
    const char *tmp = "/tmp", *store_dir = NULL;
    double rate = 0, seconds = 10;
    uint64_t map_mb = 8192, prefill = UINT64_MAX; /* default: 10,000 into a fresh store, none into --store */
    int c;
    while ((c = getopt_long(argc, argv, "b:n:m:z:y:t:r:s:d:M:p:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': snprintf(batches_arg, sizeof batches_arg, "%s", optarg); break;
        case 'n': events = strtoull(optarg, NULL, 10); break;
        case 'm': max_s = strtod(optarg, NULL); break;
        case 'z': size = strtoul(optarg, NULL, 10); break;
        case 'y': syncs = atoi(optarg); break;
        case 't': tmp = optarg; break;
        case 'r': rate = strtod(optarg, NULL); break;
        case 's': seconds = strtod(optarg, NULL); break;
        case 'd': store_dir = optarg; break;
        case 'M': map_mb = strtoull(optarg, NULL, 10); break;
        case 'p': prefill = strtoull(optarg, NULL, 10); break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': puts("cb-bench-lmdb " CB_VERSION); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!events || max_s <= 0 || size < 8 || size > (1 << 20) || syncs < 0 || rate < 0 || rate > 1e6 || seconds <= 0 ||
        seconds > 3600 || !map_mb) {
        fputs(usage, stderr);
        return 2;
    }
    uint8_t rnd[8];
    char prefix[17];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        memset(rnd, 0x5a, sizeof rnd);
    for (int i = 0; i < 8; i++)
        snprintf(prefix + 2 * i, 3, "%02x", rnd[i]);

    if (rate > 0) {
        floor_result f;
        if (!run_floor(store_dir, map_mb, tmp, prefill, rate, seconds, size, prefix, &f))
            return 1;
        printf("{\"rate\": %.0f, \"events\": %llu, \"commits\": %llu, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
               "\"p999_ms\": %.3f, \"max_ms\": %.3f}\n",
               rate, (unsigned long long)f.events, (unsigned long long)f.commits, f.p50_ms, f.p99_ms, f.p999_ms,
               f.max_ms);
        return 0;
    }
    double sync_avg = 0, sync_p99 = 0;
    if (syncs && !sync_cost(tmp, syncs, &sync_avg, &sync_p99)) {
        fprintf(stderr, "cb-bench-lmdb: the fdatasync test failed: %s\n", strerror(errno));
        return 1;
    }

    batch_result results[16];
    int n = 0;
    double best = 0;
    char *save = NULL;
    char *first = strcmp(batches_arg, "none") == 0 ? NULL : strtok_r(batches_arg, ",", &save);
    for (char *tok = first; tok && n < 16; tok = strtok_r(NULL, ",", &save)) {
        long b = strtol(tok, NULL, 10);
        if (b < 1 || b > 100000) {
            fputs(usage, stderr);
            return 2;
        }
        if (!run_batch(tmp, (unsigned)b, events, max_s, size, prefix, &results[n]))
            return 1;
        if (results[n].events_per_s > best)
            best = results[n].events_per_s;
        n++;
    }

    printf("{\"event_bytes\": %zu, \"fdatasync_ms_avg\": %.3f, \"fdatasync_ms_p99\": %.3f, \"events_per_s\": %.1f, "
           "\"batches\": [",
           size, sync_avg, sync_p99, best);
    for (int i = 0; i < n; i++)
        printf("%s{\"batch\": %u, \"events\": %llu, \"commits\": %llu, \"seconds\": %.3f, \"events_per_s\": %.1f, "
               "\"commit_ms_avg\": %.3f, \"commit_ms_p99\": %.3f, \"store_mb\": %.1f}",
               i ? ", " : "", results[i].batch, (unsigned long long)results[i].events,
               (unsigned long long)results[i].commits, results[i].seconds, results[i].events_per_s,
               results[i].commit_ms_avg, results[i].commit_ms_p99, results[i].db_mb);
    printf("]}\n");
    return 0;
}
