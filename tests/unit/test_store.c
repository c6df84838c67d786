/* The store against a real LMDB environment in a temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixtures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

#include "keys.h"
#include "store.h"

#define BIG_MAP  (64ull << 20)
#define TINY_MAP (256ull << 10)

typedef struct {
    cb_test_store t;
    uint64_t map_bytes; /* as opened, to reopen it so */
    double fraction;
} fixture;

static int teardown(void **state)
{
    fixture *f = *state;
    int rc = cb_test_store_close(&f->t);
    free(f);
    return rc;
}

static int setup_with(void **state, uint64_t map_bytes, double fraction)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || !cb_test_store_open(&f->t, map_bytes, fraction)) {
        free(f);
        return -1;
    }
    *state = f;
    f->map_bytes = map_bytes;
    f->fraction = fraction;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, BIG_MAP, 0.9);
}

static int setup_tiny(void **state)
{
    return setup_with(state, TINY_MAP, 0.5);
}

static cb_txn *begin(fixture *f, bool write)
{
    return cb_test_begin(f->t.store, write);
}

static void commit_ok(cb_txn **txn)
{
    cb_error err = {0};
    assert_int_equal(cb_txn_commit(txn, &err), CB_OK);
    assert_null(*txn);
}

/* Event seq: id "ev-<seq>" as the stored form's field 1 (where the store
 * looks for it), then body (or "event <seq>"); indexed under person (if any)
 * and from/case_ref, queued for "housing". */
static void put_body(cb_txn *txn, uint64_t seq, const char *person, const char *from, const char *case_ref,
                     const uint8_t *body, size_t len, uint64_t now_ms)
{
    char id[32], text[32];
    const char *persons[] = {person};
    const char *to[] = {"housing"};
    snprintf(id, sizeof id, "ev-%llu", (unsigned long long)seq);
    if (!body) {
        snprintf(text, sizeof text, "event %llu", (unsigned long long)seq);
        body = (const uint8_t *)text;
        len = strlen(text);
    }
    size_t n = 2 + strlen(id) + len;
    uint8_t *bytes = malloc(n);
    assert_non_null(bytes);
    bytes[0] = 0x0A; /* field 1, length-delimited */
    bytes[1] = (uint8_t)strlen(id);
    memcpy(bytes + 2, id, strlen(id));
    memcpy(bytes + 2 + strlen(id), body, len);
    cb_stored_event ev = {.seq = seq,
                          .bytes = bytes,
                          .len = n,
                          .event_id = id,
                          .person_keys = persons,
                          .n_person_keys = person ? 1 : 0,
                          .from_agency = from,
                          .case_ref = case_ref,
                          .recipients = to,
                          .n_recipients = 1};
    cb_store_put_event(txn, &ev, now_ms);
    free(bytes);
}

/* The body put_body stored, after its id. */
static void assert_body(const uint8_t *bytes, size_t len, const char *want)
{
    assert_true(len >= 2 && len == 2u + bytes[1] + strlen(want));
    assert_memory_equal(bytes + 2 + bytes[1], want, strlen(want));
}

static void put_event(cb_txn *txn, uint64_t seq, const char *person, const char *from, const char *case_ref)
{
    put_body(txn, seq, person, from, case_ref, NULL, 0, 1000 + seq);
}

typedef struct {
    uint64_t seq[16];
    size_t n;
    size_t stop_at; /* stop after this many; 0: never */
} seq_list;

static bool collect_seq(void *arg, uint64_t seq)
{
    seq_list *l = arg;
    assert_true(l->n < 16);
    l->seq[l->n++] = seq;
    return l->n != l->stop_at;
}

typedef struct {
    cb_queue_entry e[16];
    size_t n;
} entry_list;

static bool collect_entry(void *arg, const cb_queue_entry *e)
{
    entry_list *l = arg;
    assert_true(l->n < 16);
    l->e[l->n++] = *e;
    return true;
}

static void assert_seqs(const seq_list *l, const uint64_t *want, size_t n)
{
    assert_int_equal(l->n, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(l->seq[i], want[i]);
}

static void assert_entry_seqs(const entry_list *l, const uint64_t *want, size_t n)
{
    assert_int_equal(l->n, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(l->e[i].seq, want[i]);
}

/* ---- opening */

static void test_open_creates_private_directory(void **state)
{
    fixture *f = *state;
    struct stat st;
    assert_int_equal(stat(f->t.dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(cb_store_limit_bytes(f->t.store), BIG_MAP);
    assert_int_equal(cb_store_commits(f->t.store), 0);
}

static void test_open_failure_names_the_step(void **state)
{
    fixture *f = *state;
    char file[64], dir[80];
    snprintf(file, sizeof file, "%s/file", f->t.root);
    snprintf(dir, sizeof dir, "%s/db", file);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    cb_error err = {0};
    assert_null(cb_store_open(dir, BIG_MAP, 0.9, &err));
    assert_int_equal(err.code, CB_STORE_UNAVAILABLE);
    assert_non_null(strstr(err.reason, "create directory"));
}

/* ---- events */

static void test_put_event_then_find(void **state)
{
    fixture *f = *state;
    cb_txn *txn = begin(f, true);
    assert_int_equal(cb_store_last_seq(txn), 0);
    assert_int_equal(cb_store_event_count(txn), 0);
    put_event(txn, 1, "nhs:1", "health", "c1");
    put_event(txn, 2, "nhs:1", "health", NULL);
    commit_ok(&txn);

    txn = begin(f, false);
    uint64_t seq = 0;
    uint8_t digest[CB_DIGEST_BYTES], want[CB_DIGEST_BYTES];
    const uint8_t *bytes;
    size_t len;
    assert_true(cb_store_find_id(txn, "ev-2", &seq, digest));
    assert_int_equal(seq, 2);
    /* the digest is of the stored bytes, as the broker makes it of a publish's */
    assert_true(cb_store_get_event(txn, 2, &bytes, &len));
    crypto_generichash(want, sizeof want, bytes, len, NULL, 0);
    assert_memory_equal(digest, want, sizeof want);
    assert_false(cb_store_find_id(txn, "ev-9", &seq, digest));
    assert_int_equal(cb_txn_failed(txn), CB_OK); /* not found is not an error */

    assert_true(cb_store_get_event(txn, 2, &bytes, &len));
    assert_body(bytes, len, "event 2");
    assert_false(cb_store_get_event(txn, 3, &bytes, &len));
    assert_int_equal(cb_store_last_seq(txn), 2);
    assert_int_equal(cb_store_event_count(txn), 2);
    assert_int_equal(cb_txn_failed(txn), CB_OK);
    commit_ok(&txn);
}

static void test_person_index_in_seq_order_and_isolated(void **state)
{
    fixture *f = *state;
    cb_txn *txn = begin(f, true);
    /* 256 before 3 numerically, after it in little-endian byte order */
    /* 256 sorts after 3 only if the seq is big-endian in the key. */
    put_event(txn, 1, "nhs:1", "health", NULL);
    put_event(txn, 2, "nhs:12", "health", NULL);
    put_event(txn, 3, "nhs:1", "health", NULL);
    put_event(txn, 4, "nhs:12", "health", NULL);
    put_event(txn, 256, "nhs:1", "health", NULL);
    commit_ok(&txn);

    txn = begin(f, false);
    seq_list one = {0}, twelve = {0}, stem = {0}, first_two = {.stop_at = 2};
    cb_store_person_seqs(txn, "nhs:1", collect_seq, &one);
    cb_store_person_seqs(txn, "nhs:12", collect_seq, &twelve);
    cb_store_person_seqs(txn, "nhs:", collect_seq, &stem);
    cb_store_person_seqs(txn, "nhs:1", collect_seq, &first_two);
    assert_seqs(&one, (uint64_t[]){1, 3, 256}, 3);
    assert_seqs(&twelve, (uint64_t[]){2, 4}, 2);
    assert_seqs(&stem, NULL, 0);
    assert_seqs(&first_two, (uint64_t[]){1, 3}, 2);
    assert_int_equal(cb_txn_failed(txn), CB_OK);
    commit_ok(&txn);
}

/* Events are appended: a seq that is not above every stored one is a
 * caller's bug, and fails the transaction rather than overwrite or reorder. */
static void test_event_seq_must_rise(void **state)
{
    fixture *f = *state;
    cb_txn *txn = begin(f, true);
    put_event(txn, 5, "nhs:1", "health", NULL);
    commit_ok(&txn);
    txn = begin(f, true);
    put_event(txn, 5, "nhs:1", "health", NULL);
    cb_error err = {0};
    assert_int_equal(cb_txn_commit(&txn, &err), CB_STORE_UNAVAILABLE);
    assert_non_null(strstr(err.reason, "put event"));
    txn = begin(f, false);
    assert_int_equal(cb_store_last_seq(txn), 5);
    cb_txn_abort(&txn);
}

static void test_case_index_in_seq_order_and_isolated(void **state)
{
    fixture *f = *state;
    cb_txn *txn = begin(f, true);
    put_event(txn, 1, NULL, "health", "c1");
    put_event(txn, 2, NULL, "health", "c12");
    put_event(txn, 3, NULL, "health", "c1");
    put_event(txn, 4, NULL, "housing", "c1");
    put_event(txn, 5, NULL, "health", NULL);
    commit_ok(&txn);

    txn = begin(f, false);
    seq_list c1 = {0}, c12 = {0}, other = {0};
    cb_store_case_seqs(txn, "health", "c1", collect_seq, &c1);
    cb_store_case_seqs(txn, "health", "c12", collect_seq, &c12);
    cb_store_case_seqs(txn, "housing", "c1", collect_seq, &other);
    assert_seqs(&c1, (uint64_t[]){1, 3}, 2);
    assert_seqs(&c12, (uint64_t[]){2}, 1);
    assert_seqs(&other, (uint64_t[]){4}, 1);
    commit_ok(&txn);
}

/* ---- delivery queues */

static void test_queue_scan_order_and_after(void **state)
{
    fixture *f = *state;
    cb_txn *txn = begin(f, true);
    uint64_t order[] = {300, 2, 256, 1};
    for (size_t i = 0; i < 4; i++)
        cb_store_queue_put(txn, "housing", &(cb_queue_entry){order[i], 7000 + order[i], 2});
    cb_store_queue_put(txn, "housing-east", &(cb_queue_entry){5, 1, 0});
    commit_ok(&txn);

    txn = begin(f, false);
    entry_list all = {0}, after2 = {0}, after300 = {0}, after_max = {0};
    cb_store_queue_scan(txn, "housing", 0, collect_entry, &all);
    cb_store_queue_scan(txn, "housing", 2, collect_entry, &after2);
    cb_store_queue_scan(txn, "housing", 300, collect_entry, &after300);
    cb_store_queue_scan(txn, "housing", UINT64_MAX, collect_entry, &after_max);
    assert_entry_seqs(&all, (uint64_t[]){1, 2, 256, 300}, 4);
    assert_int_equal(all.e[2].enqueued_ms, 7256);
    assert_int_equal(all.e[2].attempts, 2);
    assert_entry_seqs(&after2, (uint64_t[]){256, 300}, 2);
    assert_entry_seqs(&after300, NULL, 0);
    assert_entry_seqs(&after_max, NULL, 0);
    commit_ok(&txn);
}

static void test_queue_put_overwrites(void **state)
{
    fixture *f = *state;
    cb_txn *txn = begin(f, true);
    cb_store_queue_put(txn, "housing", &(cb_queue_entry){7, 100, 0});
    cb_store_queue_put(txn, "housing", &(cb_queue_entry){7, 100, 3});
    commit_ok(&txn);

    txn = begin(f, false);
    cb_queue_entry e;
    assert_true(cb_store_queue_get(txn, "housing", 7, &e));
    assert_int_equal(e.seq, 7);
    assert_int_equal(e.enqueued_ms, 100);
    assert_int_equal(e.attempts, 3);
    entry_list l = {0};
    cb_store_queue_scan(txn, "housing", 0, collect_entry, &l);
    assert_int_equal(l.n, 1);
    commit_ok(&txn);
}

static void test_queue_del(void **state)
{
    fixture *f = *state;
    cb_txn *txn = begin(f, true);
    put_event(txn, 1, "nhs:1", "health", NULL);
    commit_ok(&txn);

    txn = begin(f, true);
    cb_queue_entry e;
    assert_true(cb_store_queue_get(txn, "housing", 1, &e));
    assert_int_equal(e.enqueued_ms, 1001);
    assert_int_equal(e.attempts, 0);
    assert_true(cb_store_queue_del(txn, "housing", 1));
    assert_false(cb_store_queue_del(txn, "housing", 1));
    assert_false(cb_store_queue_get(txn, "housing", 1, &e));
    assert_int_equal(cb_txn_failed(txn), CB_OK);
    commit_ok(&txn);

    txn = begin(f, false);
    entry_list l = {0};
    cb_store_queue_scan(txn, "housing", 0, collect_entry, &l);
    assert_int_equal(l.n, 0);
    assert_true(cb_store_get_event(txn, 1, &(const uint8_t *){0}, &(size_t){0}));
    commit_ok(&txn);
}

static void test_park_and_unpark(void **state)
{
    fixture *f = *state;
    cb_txn *txn = begin(f, true);
    cb_store_queue_put(txn, "housing", &(cb_queue_entry){1, 1000, 5});
    cb_store_queue_put(txn, "housing", &(cb_queue_entry){2, 2000, 0});
    assert_true(cb_store_park(txn, "housing", 1));
    assert_false(cb_store_park(txn, "housing", 9));
    commit_ok(&txn);

    txn = begin(f, true);
    cb_queue_entry e;
    entry_list queued = {0}, parked = {0};
    cb_queue_stats stats;
    assert_false(cb_store_queue_get(txn, "housing", 1, &e));
    cb_store_queue_scan(txn, "housing", 0, collect_entry, &queued);
    cb_store_parked_scan(txn, "housing", 0, collect_entry, &parked);
    assert_entry_seqs(&queued, (uint64_t[]){2}, 1);
    assert_entry_seqs(&parked, (uint64_t[]){1}, 1);
    assert_int_equal(parked.e[0].attempts, 5);
    cb_store_queue_stats(txn, "housing", &stats);
    assert_int_equal(stats.queued, 1);
    assert_int_equal(stats.parked, 1);
    assert_int_equal(stats.oldest_enqueued_ms, 1000);

    assert_true(cb_store_unpark(txn, "housing", 1));
    assert_false(cb_store_unpark(txn, "housing", 1));
    commit_ok(&txn);

    txn = begin(f, false);
    assert_true(cb_store_queue_get(txn, "housing", 1, &e));
    assert_int_equal(e.attempts, 0);
    assert_int_equal(e.enqueued_ms, 1000);
    parked.n = 0;
    cb_store_parked_scan(txn, "housing", 0, collect_entry, &parked);
    assert_int_equal(parked.n, 0);
    cb_store_queue_stats(txn, "housing", &stats);
    assert_int_equal(stats.queued, 2);
    assert_int_equal(stats.parked, 0);
    assert_int_equal(cb_txn_failed(txn), CB_OK);
    commit_ok(&txn);
}

static void test_queue_stats_oldest_over_queue_and_parked(void **state)
{
    fixture *f = *state;
    cb_txn *txn = begin(f, true);
    cb_queue_stats stats;
    cb_store_queue_stats(txn, "housing", &stats);
    assert_int_equal(stats.queued, 0);
    assert_int_equal(stats.parked, 0);
    assert_int_equal(stats.oldest_enqueued_ms, 0);

    cb_store_queue_put(txn, "housing", &(cb_queue_entry){1, 5000, 0});
    cb_store_queue_put(txn, "housing", &(cb_queue_entry){2, 3000, 0});
    cb_store_queue_put(txn, "housing", &(cb_queue_entry){3, 4000, 0});
    cb_store_queue_put(txn, "housing-east", &(cb_queue_entry){4, 10, 0});
    assert_true(cb_store_park(txn, "housing", 3));
    cb_store_queue_stats(txn, "housing", &stats);
    assert_int_equal(stats.queued, 2);
    assert_int_equal(stats.parked, 1);
    assert_int_equal(stats.oldest_enqueued_ms, 3000);

    /* the oldest now waits in the parked set, and still counts */
    assert_true(cb_store_park(txn, "housing", 2));
    cb_store_queue_stats(txn, "housing", &stats);
    assert_int_equal(stats.queued, 1);
    assert_int_equal(stats.parked, 2);
    assert_int_equal(stats.oldest_enqueued_ms, 3000);
    commit_ok(&txn);
}

/* ---- durability and failure */

static void assert_event_one_stored(fixture *f)
{
    cb_txn *txn = begin(f, false);
    uint64_t seq;
    uint8_t digest[CB_DIGEST_BYTES];
    const uint8_t *bytes;
    size_t len;
    cb_queue_entry e;
    seq_list persons = {0};
    char buf[8];
    assert_true(cb_store_find_id(txn, "ev-1", &seq, digest));
    assert_int_equal(seq, 1);
    assert_true(cb_store_get_event(txn, 1, &bytes, &len));
    assert_body(bytes, len, "event 1");
    assert_true(cb_store_queue_get(txn, "housing", 1, &e));
    cb_store_person_seqs(txn, "nhs:1", collect_seq, &persons);
    assert_seqs(&persons, (uint64_t[]){1}, 1);
    assert_true(cb_store_meta_get(txn, "schema", buf, sizeof buf, &len));
    assert_memory_equal(buf, "1", len);
    commit_ok(&txn);
}

static void put_event_one(fixture *f)
{
    cb_txn *txn = begin(f, true);
    put_event(txn, 1, "nhs:1", "health", "c1");
    cb_store_meta_put(txn, "schema", "1", 1);
    commit_ok(&txn);
}

static void test_data_survives_destroy_and_open(void **state)
{
    fixture *f = *state;
    put_event_one(f);
    cb_store_destroy(&f->t.store);
    assert_null(f->t.store);
    cb_store_destroy(&f->t.store); /* a no-op on NULL */

    cb_error err = {0};
    f->t.store = cb_store_open(f->t.dir, f->map_bytes, f->fraction, &err);
    assert_non_null(f->t.store);
    assert_event_one_stored(f);
}

static void test_reopen_keeps_data(void **state)
{
    fixture *f = *state;
    put_event_one(f);
    cb_error err = {0};
    assert_true(cb_store_reopen(f->t.store, &err));
    assert_event_one_stored(f);

    /* the database handles were opened again */
    cb_txn *txn = begin(f, true);
    put_event(txn, 2, "nhs:1", "health", NULL);
    commit_ok(&txn);
    assert_int_equal(cb_store_commits(f->t.store), 2);
}

static void test_commits_count_write_commits_only(void **state)
{
    fixture *f = *state;
    cb_txn *txn = begin(f, true);
    commit_ok(&txn);
    assert_int_equal(cb_store_commits(f->t.store), 1);
    txn = begin(f, false);
    commit_ok(&txn);
    txn = begin(f, true);
    cb_store_meta_put(txn, "schema", "1", 1);
    cb_txn_abort(&txn);
    assert_null(txn);
    cb_txn_abort(&txn); /* a no-op on NULL */
    assert_int_equal(cb_store_commits(f->t.store), 1);
}

/* Publish 1000-byte events into a 256 KiB map until a commit fails. */
static void test_map_full_loses_nothing_and_deletes_still_commit(void **state)
{
    fixture *f = *state;
    uint8_t body[1000];
    uint64_t seq = 0, room_lost_at = 0;
    cb_code code = CB_OK;
    cb_error err = {0};
    while (code == CB_OK) {
        assert_true(seq < 10000);
        cb_txn *txn = begin(f, true);
        if (cb_store_room(txn) != CB_ROOM && !room_lost_at) {
            room_lost_at = seq + 1;
            assert_true(cb_store_used_bytes(txn) >= TINY_MAP / 2);
        }
        seq++;
        memset(body, (int)(seq & 0xff), sizeof body);
        put_body(txn, seq, "nhs:1", "health", NULL, body, sizeof body, seq);
        code = cb_txn_commit(&txn, &err);
    }
    uint64_t committed = seq - 1;
    assert_int_equal(code, CB_STORE_FULL);
    assert_non_null(strstr(err.reason, "MDB_MAP_FULL"));
    assert_true(room_lost_at > 1 && room_lost_at < seq);
    assert_int_equal(cb_store_commits(f->t.store), committed);

    cb_txn *txn = begin(f, false);
    assert_int_equal(cb_store_event_count(txn), committed);
    assert_int_equal(cb_store_last_seq(txn), committed);
    for (uint64_t s = 1; s <= committed; s++) {
        const uint8_t *bytes;
        size_t len;
        memset(body, (int)(s & 0xff), sizeof body);
        assert_true(cb_store_get_event(txn, s, &bytes, &len));
        assert_true(len > sizeof body);
        assert_memory_equal(bytes + len - sizeof body, body, sizeof body);
    }
    assert_int_equal(cb_store_room(txn), CB_ROOM_MAP_FILLED);
    assert_int_equal(cb_txn_failed(txn), CB_OK);
    commit_ok(&txn);

    /* delivery acks delete, and the headroom lets them commit */
    txn = begin(f, true);
    for (uint64_t s = 1; s <= committed; s++)
        assert_true(cb_store_queue_del(txn, "housing", s));
    commit_ok(&txn);
    txn = begin(f, false);
    cb_queue_stats stats;
    cb_store_queue_stats(txn, "housing", &stats);
    assert_int_equal(stats.queued, 0);
    commit_ok(&txn);
}

static void test_sticky_error_makes_later_ops_no_ops(void **state)
{
    fixture *f = *state;
    put_event_one(f);

    cb_txn *txn = begin(f, true);
    cb_store_meta_put(txn, "before", "x", 1);
    size_t huge_len = 2 * TINY_MAP;
    uint8_t *huge = calloc(1, huge_len);
    assert_non_null(huge);
    put_body(txn, 2, "nhs:1", "health", NULL, huge, huge_len, 2);
    free(huge);
    assert_int_equal(cb_txn_failed(txn), CB_STORE_FULL);

    /* everything after the failure does nothing, reads included */
    const uint8_t *bytes;
    size_t len;
    cb_queue_entry e;
    uint64_t seq;
    uint8_t digest[CB_DIGEST_BYTES];
    cb_store_meta_put(txn, "after", "y", 1);
    cb_store_queue_put(txn, "housing", &(cb_queue_entry){9, 9, 0});
    assert_false(cb_store_get_event(txn, 1, &bytes, &len));
    assert_false(cb_store_find_id(txn, "ev-1", &seq, digest));
    assert_false(cb_store_queue_get(txn, "housing", 1, &e));
    assert_false(cb_store_queue_del(txn, "housing", 1));
    assert_int_equal(cb_store_last_seq(txn), 0);
    /* a failed txn is refused for its failure, never reported as full */
    assert_int_equal(cb_store_room(txn), CB_ROOM);
    cb_error err = {0};
    assert_int_equal(cb_txn_commit(&txn, &err), CB_STORE_FULL);
    assert_null(txn);
    assert_int_equal(err.code, CB_STORE_FULL);
    assert_string_equal(err.reason, "put event: MDB_MAP_FULL: Environment mapsize limit reached");

    txn = begin(f, false);
    char buf[4];
    assert_false(cb_store_meta_get(txn, "before", buf, sizeof buf, &len));
    assert_false(cb_store_meta_get(txn, "after", buf, sizeof buf, &len));
    assert_false(cb_store_queue_get(txn, "housing", 9, &e));
    assert_int_equal(cb_store_last_seq(txn), 1);
    commit_ok(&txn);
    assert_event_one_stored(f);
}

static void test_failed_txn_can_be_aborted(void **state)
{
    fixture *f = *state;
    cb_txn *txn = begin(f, false);
    cb_store_meta_put(txn, "schema", "1", 1); /* a write in a read txn */
    assert_int_equal(cb_txn_failed(txn), CB_STORE_UNAVAILABLE);
    cb_txn_abort(&txn);
    assert_null(txn);

    txn = begin(f, false);
    cb_store_queue_put(txn, "housing", &(cb_queue_entry){1, 1, 0});
    cb_error err = {0};
    assert_int_equal(cb_txn_commit(&txn, &err), CB_STORE_UNAVAILABLE);
    assert_string_equal(err.reason, "put queue entry: Permission denied");
}

typedef struct {
    cb_txn *txn;
    size_t huge_len; /* the callback writes a meta value this long */
    size_t calls;
} failing_visit;

static bool fail_in_callback(void *arg, const cb_queue_entry *e)
{
    failing_visit *v = arg;
    (void)e;
    v->calls++;
    uint8_t *huge = calloc(1, v->huge_len);
    assert_non_null(huge);
    cb_store_meta_put(v->txn, "huge", huge, v->huge_len);
    free(huge);
    return true;
}

static void commit_three_entries(fixture *f)
{
    cb_txn *txn = begin(f, true);
    for (uint64_t s = 1; s <= 3; s++)
        cb_store_queue_put(txn, "housing", &(cb_queue_entry){s, s, 0});
    commit_ok(&txn);
}

/* A failure inside a scan's callback ends the scan; the txn (and the scan's
 * cursor, freed with a write txn, closed by the store for a read txn) is gone. */
static void test_failure_in_scan_callback_stops_the_scan(void **state)
{
    fixture *f = *state;
    commit_three_entries(f);

    failing_visit v = {.txn = begin(f, true), .huge_len = 2 * TINY_MAP};
    cb_store_queue_scan(v.txn, "housing", 0, fail_in_callback, &v);
    assert_int_equal(v.calls, 1);
    cb_error err = {0};
    assert_int_equal(cb_txn_commit(&v.txn, &err), CB_STORE_FULL);
    assert_non_null(strstr(err.reason, "put meta: MDB_MAP_FULL"));

    v = (failing_visit){.txn = begin(f, false), .huge_len = 1};
    cb_store_queue_scan(v.txn, "housing", 0, fail_in_callback, &v);
    assert_int_equal(v.calls, 1);
    assert_int_equal(cb_txn_failed(v.txn), CB_STORE_UNAVAILABLE);
    cb_txn_abort(&v.txn);
}

/* ---- room and metadata */

static void test_used_bytes_counts_pages(void **state)
{
    fixture *f = *state;
    long page = sysconf(_SC_PAGESIZE);
    cb_txn *txn = begin(f, true);
    uint64_t empty = cb_store_used_bytes(txn);
    assert_true(empty >= 3 * (uint64_t)page); /* two meta pages and the main DB */
    assert_int_equal(empty % (uint64_t)page, 0);
    uint8_t body[1000] = {0};
    for (uint64_t s = 1; s <= 100; s++)
        put_body(txn, s, "nhs:1", "health", NULL, body, sizeof body, s);
    assert_true(cb_store_used_bytes(txn) >= empty + 100 * sizeof body);
    assert_true(cb_store_room(txn) == CB_ROOM);
    commit_ok(&txn);
}

/* The flag rules keep more in their keyspaces than the events take: what they
 * hold counts against the map too, or publishing would go on until LMDB
 * itself refuses, with no room left for the deletes that drain a queue. */
static void test_used_bytes_counts_keyspaces(void **state)
{
    fixture *f = *state;
    cb_txn *txn = begin(f, true);
    uint64_t before = cb_store_used_bytes(txn);
    uint8_t value[1000] = {0};
    for (uint64_t i = 0; i < 100; i++) {
        uint8_t key[8];
        cb_be64_put(key, i);
        cb_kv_put(txn, 0, key, sizeof key, value, sizeof value);
    }
    assert_true(cb_store_used_bytes(txn) >= before + 100 * sizeof value);
    commit_ok(&txn);
}

static void test_meta_get_and_put(void **state)
{
    fixture *f = *state;
    uint8_t key[32], buf[9];
    size_t len = 0;
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)i;

    cb_txn *txn = begin(f, true);
    assert_false(cb_store_meta_get(txn, "pseudonym-key", buf, sizeof buf, &len));
    cb_store_meta_put(txn, "pseudonym-key", key, sizeof key);
    cb_store_meta_put(txn, "schema", "1", 1);
    commit_ok(&txn);

    txn = begin(f, false);
    memset(buf, 0xee, sizeof buf);
    assert_true(cb_store_meta_get(txn, "pseudonym-key", buf, 8, &len));
    assert_int_equal(len, sizeof key);
    assert_memory_equal(buf, key, 8);
    assert_int_equal(buf[8], 0xee); /* nothing past cap */
    assert_true(cb_store_meta_get(txn, "schema", buf, sizeof buf, &len));
    assert_int_equal(len, 1);
    assert_memory_equal(buf, "1", 1);
    commit_ok(&txn);
}

/* ---- the layered indexes, through seals and merges */

#define LAYER_EVENTS 120000 /* past two merges of six 8192-entry runs */
#define LAYER_PEOPLE 5000

static bool count_seq(void *arg, uint64_t seq)
{
    (void)seq;
    (*(size_t *)arg)++;
    return true;
}

static void put_layer_events(fixture *f, uint64_t first, uint64_t last, uint64_t budget)
{
    for (uint64_t seq = first; seq <= last;) {
        cb_txn *txn = begin(f, true);
        for (int i = 0; i < 2000 && seq <= last; i++, seq++) {
            char person[32];
            snprintf(person, sizeof person, "nhs:%llu", (unsigned long long)(seq * 7919 % LAYER_PEOPLE));
            put_body(txn, seq, person, "health", NULL, NULL, 0, seq);
        }
        cb_store_index_work(txn, budget);
        commit_ok(&txn);
    }
}

/* Every id is found as the store thread looks (its table of the ids tail)
 * and as a reader does (reading the tail). */
static void assert_ids_found(fixture *f, uint64_t events, bool write)
{
    cb_txn *txn = begin(f, write);
    /* Every one as the store thread looks: a filter must never say no to an
     * id it holds. A reader reads the whole tail for each: a sample. */
    for (uint64_t seq = 1; seq <= events; seq += write ? 1 : 13) {
        char id[32];
        uint64_t found = 0;
        uint8_t digest[CB_DIGEST_BYTES];
        snprintf(id, sizeof id, "ev-%llu", (unsigned long long)seq);
        assert_true(cb_store_find_id(txn, id, &found, digest));
        assert_int_equal(found, seq);
    }
    uint64_t missing = 0;
    assert_false(cb_store_find_id(txn, "ev-0", &missing, (uint8_t[CB_DIGEST_BYTES]){0}));
    assert_int_equal(cb_txn_failed(txn), CB_OK);
    if (write)
        cb_txn_abort(&txn);
    else
        commit_ok(&txn);
}

/* The events of person p among the first `upto` that put_layer_events
 * stores, as a reader finds them, against how many there are. */
static void assert_person_found(cb_txn *txn, unsigned p, uint64_t upto)
{
    char person[32];
    size_t n = 0, want = 0;
    snprintf(person, sizeof person, "nhs:%u", p);
    cb_store_person_seqs(txn, person, count_seq, &n);
    for (uint64_t seq = 1; seq <= upto; seq++)
        want += seq * 7919 % LAYER_PEOPLE == p;
    assert_int_equal(n, want);
    assert_true(want > 0 || upto < LAYER_PEOPLE); /* a person with no events would prove nothing */
    assert_int_equal(cb_txn_failed(txn), CB_OK);
}

static void assert_layers_complete(fixture *f, uint64_t events)
{
    assert_ids_found(f, events, true);
    assert_ids_found(f, events, false);
    cb_txn *txn = begin(f, false);
    for (unsigned p = 0; p < LAYER_PEOPLE; p += 499)
        assert_person_found(txn, p, events);
    cb_index_shape shape;
    cb_store_index_shape(txn, CB_INDEX_IDS, &shape);
    assert_int_equal(shape.entries, events); /* every entry once: none lost or doubled by a merge */
    assert_int_equal(cb_txn_failed(txn), CB_OK);
    commit_ok(&txn);
}

static void test_layered_index_finds_everything_through_merges(void **state)
{
    fixture *f = *state;
    put_layer_events(f, 1, LAYER_EVENTS, 8 * 2000);
    cb_txn *txn = begin(f, false);
    cb_index_shape shape;
    cb_store_index_shape(txn, CB_INDEX_IDS, &shape);
    commit_ok(&txn);
    /* 14 full tails: merged, the layers a lookup reads are far fewer than the runs sealed */
    assert_true(shape.layers >= 2 && shape.layers < 10);
    assert_layers_complete(f, LAYER_EVENTS);
}

/* ---- retention */

#define RETAIN_EVENTS 60000 /* stored a minute a thousand: runs sealed, a merge done */

typedef struct {
    uint64_t next; /* the seq fn expects: events go oldest first */
    size_t n;
} expiring;

static void expect_oldest(void *arg, uint64_t seq, const uint8_t *bytes, size_t len)
{
    expiring *x = arg;
    char id[32];
    snprintf(id, sizeof id, "ev-%llu", (unsigned long long)seq);
    assert_int_equal(seq, x->next);
    assert_true(len > 2 && bytes[1] == strlen(id) && memcmp(bytes + 2, id, strlen(id)) == 0);
    x->next++;
    x->n++;
}

/* Expire what was stored before before_ms, a budget a transaction. */
static size_t expire_all(fixture *f, uint64_t before_ms, size_t budget, expiring *x)
{
    size_t txns = 0, undelivered = 0;
    cb_expired out;
    do {
        cb_txn *txn = begin(f, true);
        cb_store_expire(txn, before_ms, budget, expect_oldest, x, &out);
        assert_true(out.events <= budget);
        undelivered += out.undelivered;
        commit_ok(&txn);
        txns++;
    } while (out.more && txns < 1000);
    assert_int_equal(undelivered, x->n); /* each was queued for housing, never delivered */
    return x->n;
}

static void put_timed_events(fixture *f, uint64_t first, uint64_t last)
{
    for (uint64_t seq = first; seq <= last;) {
        cb_txn *txn = begin(f, true);
        for (int i = 0; i < 2000 && seq <= last; i++, seq++) {
            char person[32];
            snprintf(person, sizeof person, "nhs:%llu", (unsigned long long)(seq * 7919 % LAYER_PEOPLE));
            put_body(txn, seq, person, "health", NULL, NULL, 0, seq * 60); /* a thousand a minute */
        }
        cb_store_index_work(txn, 16000);
        commit_ok(&txn);
    }
}

static void assert_kept_from(fixture *f, uint64_t floor, uint64_t last)
{
    for (int write = 0; write < 2; write++) {
        cb_txn *txn = begin(f, write);
        assert_int_equal(cb_store_floor(txn), floor);
        assert_int_equal(cb_store_last_seq(txn), last);
        assert_int_equal(cb_store_event_count(txn), last - floor + 1);
        for (uint64_t seq = 1; seq <= last; seq += write ? 1 : 7) {
            char id[32];
            uint64_t found = 0;
            snprintf(id, sizeof id, "ev-%llu", (unsigned long long)seq);
            assert_int_equal(cb_store_find_id(txn, id, &found, (uint8_t[CB_DIGEST_BYTES]){0}), seq >= floor);
        }
        for (unsigned p = 0; p < LAYER_PEOPLE; p += 499) {
            char person[32];
            size_t n = 0, want = 0;
            snprintf(person, sizeof person, "nhs:%u", p);
            cb_store_person_seqs(txn, person, count_seq, &n);
            for (uint64_t seq = floor; seq <= last; seq++)
                want += seq * 7919 % LAYER_PEOPLE == p;
            assert_int_equal(n, want);
        }
        cb_queue_stats st;
        cb_store_queue_stats(txn, "housing", &st);
        assert_int_equal(st.queued, last - floor + 1);
        assert_int_equal(cb_txn_failed(txn), CB_OK);
        cb_txn_abort(&txn);
    }
}

/* Events stored before the time given are removed oldest first, exactly
 * those (to the minute), with their queue entries; no lookup finds one, a
 * restart keeps it so, seqs go on above them, and once every event is gone
 * so is every index entry: the tails' at once, the runs' as whole runs. */
static void test_retention_removes_the_oldest_and_their_index_entries(void **state)
{
    fixture *f = *state;
    put_timed_events(f, 1, RETAIN_EVENTS);
    /* Minute 30 begins with seq 30000 (stored at 1,800,000 ms). */
    expiring x = {.next = 1};
    assert_int_equal(expire_all(f, 1800000, 5000, &x), 29999);
    assert_kept_from(f, 30000, RETAIN_EVENTS);

    cb_error err = {0};
    cb_store_destroy(&f->t.store);
    f->t.store = cb_store_open(f->t.dir, f->map_bytes, f->fraction, &err);
    assert_non_null(f->t.store);
    assert_kept_from(f, 30000, RETAIN_EVENTS);

    x.n = 0;
    assert_int_equal(expire_all(f, UINT64_MAX / 2, 5000, &x), RETAIN_EVENTS - 29999);
    cb_txn *txn = begin(f, true);
    cb_store_index_work(txn, 1000000); /* a merge left over is finished, and dropped */
    commit_ok(&txn);
    txn = begin(f, true);
    cb_store_index_work(txn, 1000000);
    commit_ok(&txn);
    txn = begin(f, false);
    assert_int_equal(cb_store_event_count(txn), 0);
    assert_int_equal(cb_store_last_seq(txn), RETAIN_EVENTS);
    for (int ix = 0; ix < CB_INDEX_COUNT; ix++) {
        cb_index_shape shape;
        cb_store_index_shape(txn, (cb_index)ix, &shape);
        assert_int_equal(shape.entries, 0);
        assert_int_equal(shape.merging, 0);
    }
    cb_txn_abort(&txn);

    txn = begin(f, true);
    put_event(txn, RETAIN_EVENTS + 1, "nhs:1", "health", NULL);
    commit_ok(&txn);
    assert_kept_from(f, RETAIN_EVENTS + 1, RETAIN_EVENTS + 1);
}

/* A store whose index directories are of version 4 (no max_seq): read as
 * they are, and once retention has removed every event, no entry is left
 * in any of their runs either. */
static void test_retention_on_a_store_from_before_max_seq(void **state)
{
    fixture *f = *state;
    put_timed_events(f, 1, 20000); /* sealed runs in each index */
    cb_txn *txn = begin(f, true);
    for (int ix = 0; ix < CB_INDEX_COUNT; ix++) {
        char name[32];
        uint8_t dir[1024];
        size_t len = 0;
        snprintf(name, sizeof name, "index.%s", cb_store_index_name((cb_index)ix));
        if (!cb_store_meta_get(txn, name, dir, sizeof dir, &len)) {
            assert_true(ix == CB_INDEX_CASES || ix == CB_INDEX_RECORDS); /* put_timed_events fills ids and persons */
            continue;
        }
        assert_true(len > 272 && len <= sizeof dir);
        uint32_t v4 = 4;
        memcpy(dir, &v4, sizeof v4); /* the version, first; max_seq, after the first 272 bytes, gone */
        cb_store_meta_put(txn, name, dir, 272);
    }
    commit_ok(&txn);
    cb_error err = {0};
    cb_store_destroy(&f->t.store);
    f->t.store = cb_store_open(f->t.dir, f->map_bytes, f->fraction, &err);
    assert_non_null(f->t.store);
    assert_kept_from(f, 1, 20000);
    expiring x = {.next = 1};
    assert_int_equal(expire_all(f, UINT64_MAX / 2, 5000, &x), 20000);
    for (int i = 0; i < 2; i++) {
        txn = begin(f, true);
        cb_store_index_work(txn, 1000000);
        commit_ok(&txn);
    }
    txn = begin(f, false);
    for (int ix = 0; ix < CB_INDEX_COUNT; ix++) {
        cb_index_shape shape;
        cb_store_index_shape(txn, (cb_index)ix, &shape);
        assert_int_equal(shape.entries, 0);
    }
    cb_txn_abort(&txn);
}

/* A merge cut short by a restart resumes from the last key it wrote. */
static void test_layered_index_merge_resumes_after_reopen(void **state)
{
    fixture *f = *state;
    /* Tails are sealed by the work call after each 2000 events, once past
     * 8192: at 10000, 20000 ... so six runs, and no merging paid. */
    put_layer_events(f, 1, 62000, 0);
    cb_txn *txn = begin(f, true);
    assert_true(cb_store_index_work(txn, 5000)); /* a merge begun, far from done */
    commit_ok(&txn);
    /* A step that never commits: its filter chunks went with it, and the
     * next step must not trust what it had in memory. */
    txn = begin(f, true);
    assert_true(cb_store_index_work(txn, 20000));
    cb_txn_abort(&txn);
    txn = begin(f, true);
    assert_true(cb_store_index_work(txn, 20000));
    commit_ok(&txn);
    cb_store_destroy(&f->t.store);
    cb_error err = {0};
    f->t.store = cb_store_open(f->t.dir, f->map_bytes, f->fraction, &err);
    assert_non_null(f->t.store);
    for (int i = 0; i < 40; i++) {
        txn = begin(f, true);
        bool more = cb_store_index_work(txn, 3000);
        commit_ok(&txn);
        if (!more)
            break;
    }
    assert_false(cb_store_index_pending(f->t.store));
    assert_layers_complete(f, 62000);
}

/* Readers look in a table of each tail, read up to their own snapshot at
 * each lookup. One that began before a commit finds nothing of it, though a
 * later reader has read it into the table; the table follows the tail
 * through seals. */
static void test_readers_table_of_the_tail_keeps_to_each_snapshot(void **state)
{
    fixture *f = *state;
    put_layer_events(f, 1, 3000, 0);
    cb_txn *before = begin(f, false);
    for (unsigned p = 0; p < LAYER_PEOPLE; p += 97)
        assert_person_found(before, p, 3000); /* builds the table */
    put_layer_events(f, 3001, 6000, 0);
    cb_txn *after = begin(f, false);
    uint64_t seq = 0;
    uint8_t digest[CB_DIGEST_BYTES];
    assert_true(cb_store_find_id(after, "ev-5000", &seq, digest)); /* read into the table */
    assert_int_equal(seq, 5000);
    for (unsigned p = 0; p < LAYER_PEOPLE; p += 97)
        assert_person_found(after, p, 6000);
    for (unsigned p = 0; p < LAYER_PEOPLE; p += 97)
        assert_person_found(before, p, 3000);
    assert_false(cb_store_find_id(before, "ev-5000", &seq, digest));
    assert_true(cb_store_find_id(before, "ev-2999", &seq, digest));
    commit_ok(&before);
    commit_ok(&after);
    /* Past three seals of each tail: each reader's table is of the tail as
     * it is now, and the runs hold the rest. */
    put_layer_events(f, 6001, 40000, 0);
    cb_txn *txn = begin(f, false);
    cb_index_shape shape;
    cb_store_index_shape(txn, CB_INDEX_PERSONS, &shape);
    assert_true(shape.layers >= 4);
    for (unsigned p = 0; p < LAYER_PEOPLE; p += 97)
        assert_person_found(txn, p, 40000);
    commit_ok(&txn);
    assert_ids_found(f, 40000, false);
}

/* ---- keyspaces */

typedef struct {
    uint64_t seqs[8];
    size_t n;
} seen_keys;

static bool collect_key(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    seen_keys *s = arg;
    const char *agency;
    uint64_t seq;
    assert_true(cb_key_parse(key, key_len, "SQ", &agency, &seq));
    assert_int_equal(len, 1);
    assert_int_equal(val[0], (uint8_t)seq);
    s->seqs[s->n++] = seq;
    return s->n < sizeof s->seqs / sizeof s->seqs[0];
}

static void put_keyed(cb_txn *txn, cb_keyspace ks, const char *agency, uint64_t seq)
{
    cb_key k;
    uint8_t v = (uint8_t)seq;
    assert_true(cb_key_make(&k, "SQ", agency, seq));
    cb_kv_put(txn, ks, k.b, k.len, &v, 1);
}

/* A caller's keyspaces: put, get, delete, a prefix scan in key order from a
 * point, each its own (one keyspace's keys are not another's), and kept
 * across a reopen. */
static void test_keyspaces_of_the_callers_own(void **state)
{
    fixture *f = *state;
    cb_test_store_close(&f->t);
    assert_true(cb_test_mkdtemp(f->t.root, sizeof f->t.root));
    snprintf(f->t.dir, sizeof f->t.dir, "%s/db", f->t.root);
    const char *spaces[] = {"flags", "deadlines"};
    cb_error err = {0};
    f->t.store = cb_store_open_with(f->t.dir, BIG_MAP, 0.9, spaces, 2, &err);
    assert_non_null(f->t.store);
    enum { FLAGS, DEADLINES };

    cb_txn *txn = begin(f, true);
    put_keyed(txn, FLAGS, "housing", 300);
    put_keyed(txn, FLAGS, "housing", 2);
    put_keyed(txn, FLAGS, "housing-options", 1); /* shares housing's bytes, not its parts */
    put_keyed(txn, FLAGS, "health", 7);
    put_keyed(txn, DEADLINES, "housing", 5);
    commit_ok(&txn);

    assert_true(cb_store_reopen(f->t.store, &err));
    txn = begin(f, true);
    cb_key prefix, from;
    assert_true(cb_key_make(&prefix, "S", "housing"));
    seen_keys seen = {0};
    cb_kv_scan(txn, FLAGS, prefix.b, prefix.len, NULL, 0, collect_key, &seen);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.seqs[0], 2);
    assert_int_equal(seen.seqs[1], 300);
    assert_true(cb_key_make(&from, "SQ", "housing", (uint64_t)3));
    seen.n = 0;
    cb_kv_scan(txn, FLAGS, prefix.b, prefix.len, from.b, from.len, collect_key, &seen);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.seqs[0], 300);
    cb_key before;
    assert_true(cb_key_make(&before, "SQ", "health", (uint64_t)0)); /* below health 7, below housing */
    seen.n = 0;
    cb_kv_scan(txn, FLAGS, prefix.b, prefix.len, before.b, before.len, collect_key, &seen);
    assert_int_equal(seen.n, 2);
    seen.n = 0;
    cb_kv_scan(txn, DEADLINES, prefix.b, prefix.len, NULL, 0, collect_key, &seen);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.seqs[0], 5);

    cb_key k;
    const uint8_t *v;
    size_t len;
    assert_true(cb_key_make(&k, "SQ", "health", (uint64_t)7));
    assert_true(cb_kv_get(txn, FLAGS, k.b, k.len, &v, &len));
    assert_int_equal(len, 1);
    assert_int_equal(v[0], 7);
    assert_false(cb_kv_get(txn, DEADLINES, k.b, k.len, &v, &len));
    assert_true(cb_kv_del(txn, FLAGS, k.b, k.len));
    assert_false(cb_kv_del(txn, FLAGS, k.b, k.len));
    assert_false(cb_kv_get(txn, FLAGS, k.b, k.len, &v, &len));
    commit_ok(&txn);

    const char *bad[] = {""};
    assert_null(cb_store_open_with(f->t.dir, BIG_MAP, 0.9, bad, 1, &err));
    assert_int_equal(err.code, CB_STORE_UNAVAILABLE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_private_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_failure_names_the_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_event_then_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_person_index_in_seq_order_and_isolated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_seq_must_rise, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case_index_in_seq_order_and_isolated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_scan_order_and_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_put_overwrites, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_park_and_unpark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_stats_oldest_over_queue_and_parked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_survives_destroy_and_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commits_count_write_commits_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full_loses_nothing_and_deletes_still_commit, setup_tiny, teardown),
        cmocka_unit_test_setup_teardown(test_sticky_error_makes_later_ops_no_ops, setup_tiny, teardown),
        cmocka_unit_test_setup_teardown(test_failed_txn_can_be_aborted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_in_scan_callback_stops_the_scan, setup_tiny, teardown),
        cmocka_unit_test_setup_teardown(test_used_bytes_counts_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_used_bytes_counts_keyspaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta_get_and_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layered_index_finds_everything_through_merges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layered_index_merge_resumes_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_removes_the_oldest_and_their_index_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_on_a_store_from_before_max_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readers_table_of_the_tail_keeps_to_each_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyspaces_of_the_callers_own, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
