/* The commit (broker/commit.c) without threads: batches built as the
 * network thread builds them, committed into a real LMDB environment in a
 * temporary directory under the embedded default configuration, and what
 * each part of the batch was answered checked against what the store then
 * holds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixtures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "batch.h"
#include "commit.h"
#include "config.h"
#include "store.h"

#define MAP_BYTES (16ull << 20)
#define SENDER    3                /* the publishing connection's peer token */
#define RECEIVER  5                /* social-care's receiving connection */
#define NOW       1000000          /* monotonic ms when each batch is taken */
#define WALL      1767225600000ull /* and the wall clock then: 2026-01-01 */

typedef struct {
    cb_test_store t;
    cb_config *cfg;
    cb_store *store; /* t's */
    cb_commit *commit;
    cb_batch *batch;
    unsigned sc; /* social-care's lane */
    cb_test_event events[8];
    size_t n_events;
} fixture;

static int teardown(void **state)
{
    fixture *f = *state;
    cb_batch_free(&f->batch);
    cb_commit_free(&f->commit);
    cb_config_free(&f->cfg);
    int rc = cb_test_store_close(&f->t);
    free(f);
    return rc;
}

static int open_all(fixture *f, double publish_fraction)
{
    f->cfg = cb_test_config();
    if (!f->cfg || !cb_config_agency(f->cfg, "social-care") || !cb_test_store_open(&f->t, MAP_BYTES, publish_fraction))
        return -1;
    f->store = f->t.store;
    f->sc = (unsigned)(cb_config_agency(f->cfg, "social-care") - f->cfg->agencies);
    cb_error err = {0};
    f->commit = cb_commit_new(f->cfg, f->store, &err);
    f->batch = f->commit ? cb_batch_new(cb_commit_max_out(f->commit)) : NULL;
    if (!f->batch) {
        print_error("set-up: %s\n", err.reason);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    return f ? open_all(f, 0.9) : -1;
}

/* A store whose room for publishes is gone before the first one. */
static int setup_full(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    return f ? open_all(f, 1e-6) : -1;
}

/* ---------------------------------------------------------------- helpers */

static cb_publish *add_publish(fixture *f, const char *id, const char *reason)
{
    assert_true(f->n_events < sizeof f->events / sizeof f->events[0]);
    cb_test_event *e = &f->events[f->n_events++];
    cb_test_referral(e, id, reason);
    e->frame.ref = f->n_events;
    cb_publish *pub = cb_batch_add_publish(f->batch, SENDER, e->frame.ref, &e->frame, 0);
    assert_non_null(pub);
    return pub;
}

static void add_ack(fixture *f, cb_peer_token peer, uint64_t seq)
{
    f->batch->acks[f->batch->n_acks++] = (cb_delivery_ack){.peer = peer, .agency = f->sc, .seq = seq};
}

static void attach(fixture *f, cb_peer_token peer)
{
    f->batch->ops[f->batch->n_ops++] = (cb_lane_op){.kind = CB_LANE_ATTACH, .agency = f->sc, .peer = peer};
}

/* Commit the batch; what it answered stays in it until the next one. */
static void commit(fixture *f)
{
    f->batch->now_ms = NOW;
    f->batch->wall_ms = WALL;
    cb_commit_batch(f->commit, f->batch);
    assert_int_equal(f->batch->exit_status, 0);
}

/* Empty the batch for the next one, as the network thread does once answered. */
static void next_batch(fixture *f)
{
    cb_batch *b = f->batch;
    cb_batch_free_out(b);
    b->n_pubs = b->n_acks = b->n_reqs = b->n_ops = b->n_audits = 0;
}

/* Whether seq is queued for social-care, and when it was queued. */
static bool queued_at(fixture *f, uint64_t seq, uint64_t *enqueued_ms)
{
    cb_txn *txn = cb_test_begin(f->store, false);
    cb_queue_entry e = {0};
    bool found = cb_store_queue_get(txn, "social-care", seq, &e);
    cb_txn_abort(&txn);
    *enqueued_ms = e.enqueued_ms;
    return found;
}

static bool queued(fixture *f, uint64_t seq)
{
    uint64_t at;
    return queued_at(f, seq, &at);
}

static uint64_t stored_seq_of(fixture *f, const char *id)
{
    cb_txn *txn = cb_test_begin(f->store, false);
    uint64_t seq = 0;
    uint8_t digest[CB_DIGEST_BYTES];
    if (!cb_store_find_id(txn, id, &seq, digest))
        seq = 0;
    cb_txn_abort(&txn);
    return seq;
}

/* ---------------------------------------------------------------- tests */

static void test_publishes_are_stored_and_queued_in_order(void **state)
{
    fixture *f = *state;
    cb_publish *a = add_publish(f, "ev-a", "falls at home");
    cb_publish *b = add_publish(f, "ev-b", "needs a care package");
    commit(f);
    assert_int_equal(a->code, CB_OK);
    assert_int_equal(b->code, CB_OK);
    assert_int_equal(a->seq, 1);
    assert_int_equal(b->seq, 2);
    assert_false(a->duplicate);
    assert_int_equal(stored_seq_of(f, "ev-a"), 1);
    assert_int_equal(stored_seq_of(f, "ev-b"), 2);
    uint64_t at = 0;
    assert_true(queued_at(f, 1, &at));
    assert_int_equal(at, WALL); /* the batch's clock, not the machine's */
    assert_true(queued(f, 2));
    assert_int_equal(cb_commit_last_seq(f->commit), 2);
}

/* The same id with the same bytes is the same event (the same seq, nothing
 * stored twice); with other bytes it is refused, naming the stored seq. In
 * the same batch as in a later one. */
static void test_dedupe_by_event_id(void **state)
{
    fixture *f = *state;
    cb_publish *first = add_publish(f, "ev-1", "falls at home");
    cb_publish *again = add_publish(f, "ev-1", "falls at home");
    commit(f);
    assert_int_equal(first->code, CB_OK);
    assert_int_equal(again->code, CB_OK);
    assert_true(again->duplicate);
    assert_int_equal(again->seq, first->seq);
    next_batch(f);
    cb_publish *later = add_publish(f, "ev-1", "falls at home");
    cb_publish *other = add_publish(f, "ev-1", "a different reason");
    commit(f);
    assert_true(later->duplicate);
    assert_int_equal(later->seq, 1);
    assert_int_equal(other->code, CB_DUPLICATE_ID);
    assert_non_null(strstr(other->reason, "seq 1"));
    assert_int_equal(cb_commit_last_seq(f->commit), 1);
}

/* A receiver attached in the batch gets the batch's publish delivered, packed
 * in the batch's out; only the connection holding it may acknowledge it. */
static void test_delivery_and_who_may_acknowledge(void **state)
{
    fixture *f = *state;
    attach(f, RECEIVER);
    add_publish(f, "ev-d", "falls at home");
    commit(f);
    /* The plan reads the queue in the transaction that stored the event, so
     * the batch that stores it also delivers it. */
    assert_int_equal(f->batch->n_out, 1);
    assert_int_equal(f->batch->out[0].peer, RECEIVER);
    uint32_t in_flight;
    uint64_t refused;
    cb_commit_lane(f->commit, f->sc, &in_flight, &refused);
    assert_int_equal(in_flight, 1);

    next_batch(f);
    add_ack(f, SENDER, 1); /* not the holder */
    commit(f);
    assert_true(f->batch->acks[0].refused);
    assert_true(queued(f, 1));
    cb_commit_lane(f->commit, f->sc, &in_flight, &refused);
    assert_int_equal(refused, 1);

    next_batch(f);
    add_ack(f, RECEIVER, 1);
    commit(f);
    assert_false(f->batch->acks[0].refused);
    assert_false(queued(f, 1));
    cb_commit_lane(f->commit, f->sc, &in_flight, &refused);
    assert_int_equal(in_flight, 0);
}

/* With no room, every publish is refused STORE_FULL and nothing is stored;
 * the seq does not move. */
static void test_full_store_refuses_publishes(void **state)
{
    fixture *f = *state;
    cb_publish *pub = add_publish(f, "ev-full", "falls at home");
    commit(f);
    assert_int_equal(pub->code, CB_STORE_FULL);
    assert_true(pub->reason[0] != '\0');
    assert_int_equal(stored_seq_of(f, "ev-full"), 0);
    assert_int_equal(cb_commit_last_seq(f->commit), 0);
}

/* ---------------------------------------------------------------- retention */

#define DAY_MS 86400000ull

static bool count(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    (void)k, (void)kl, (void)v, (void)vl;
    ++*(size_t *)arg;
    return true;
}

static size_t count_keys(fixture *f, cb_keyspace ks)
{
    size_t n = 0;
    cb_txn *txn = cb_test_begin(f->store, false);
    cb_kv_scan(txn, ks, NULL, 0, NULL, 0, count, &n);
    cb_txn_abort(&txn);
    return n;
}

/* One batch of n audit records about person, committed at wall and now. */
static void audit_batch(fixture *f, size_t n, const char *person, uint64_t wall, int64_t now)
{
    for (size_t i = 0; i < n; i++) {
        cb_audit_entry *a = &f->batch->audits[f->batch->n_audits++];
        *a = cb_audit_of(NULL, "health", "journey");
        snprintf(a->person, sizeof a->person, "%s", person);
    }
    f->batch->now_ms = now;
    f->batch->wall_ms = wall;
    cb_commit_batch(f->commit, f->batch);
    assert_int_equal(f->batch->exit_status, 0);
    next_batch(f);
}

/* With the clock moved past the period, every expired record goes (and its
 * person index entry), none unexpired, at most a budget a transaction, and
 * each run that removed any is in the audit itself. */
static void test_audit_retention(void **state)
{
    fixture *f = *state;
    f->cfg->retention.audit_days = 30;
    cb_keyspace records = CB_AUDIT_BASE, by_person = CB_AUDIT_BASE + 1;
    int64_t now = NOW;
    for (int i = 0; i < 3; i++) /* 2,400 old records: more than one run's budget */
        audit_batch(f, BATCH_AUDITS - 224, "p-0000000old", WALL + (uint64_t)i, now += 1);
    audit_batch(f, 5, "p-0000000new", WALL + 20 * DAY_MS, now += 1);
    assert_int_equal(count_keys(f, records), 2405);
    assert_int_equal(count_keys(f, by_person), 2405);

    /* 31 days on: the old records have expired, the new have 19 days to go. */
    uint64_t later = WALL + 31 * DAY_MS;
    size_t before = count_keys(f, records), runs = 0;
    while (count_keys(f, records) > 5 + runs && runs < 10) {
        audit_batch(f, 0, "", later, now += 61000); /* each batch a run */
        size_t left = count_keys(f, records);
        runs++;
        assert_true(before - left <= 1000); /* a budget a transaction, plus the run's own record */
        before = left;
    }
    assert_int_equal(runs, 3);
    assert_int_equal(count_keys(f, by_person), 5); /* the new ones' entries, and only theirs */
    cb_txn *txn = cb_test_begin(f->store, false);
    Carebridge__V1__AuditRequest req = CAREBRIDGE__V1__AUDIT_REQUEST__INIT;
    cb_error err = {0};
    Carebridge__V1__AuditReply *r = cb_audit_query(f->cfg, txn, &req, NULL, &err);
    cb_txn_abort(&txn);
    assert_non_null(r);
    size_t retention = 0, kept = 0;
    for (size_t i = 0; i < r->n_records; i++) {
        retention += !strcmp(r->records[i]->action, "retention");
        kept += !strcmp(r->records[i]->person, "p-0000000new");
        assert_string_not_equal(r->records[i]->person, "p-0000000old");
    }
    assert_int_equal(retention, 3);
    assert_int_equal(kept, 5);
    carebridge__v1__audit_reply__free_unpacked(r, NULL);

    /* Once the new ones are old too, they go the same way. */
    audit_batch(f, 0, "", WALL + 51 * DAY_MS, now += 61000);
    assert_int_equal(count_keys(f, by_person), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publishes_are_stored_and_queued_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedupe_by_event_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_and_who_may_acknowledge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_store_refuses_publishes, setup_full, teardown),
        cmocka_unit_test_setup_teardown(test_audit_retention, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
