/* Delivery lanes (broker/delivery.c) over a real store: a real LMDB
 * environment in a temporary directory, the embedded default configuration
 * with small limits (window 4, 3 attempts, redelivery after 100 ms doubling
 * to at most 400 ms). Each plan runs in a write transaction that is committed
 * before the plan is applied, as the broker's loop does. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixtures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "delivery.h"
#include "store.h"

#define MAP_BYTES (16ull << 20)
#define T0        1000000          /* monotonic ms of the first plan */
#define WALL      1767225600000ull /* wall-clock ms stored with queue entries */
#define PEER      7
#define MAX_STEPS 64

typedef struct {
    cb_test_store t;
    cb_config *cfg;
    cb_delivery *d;
    unsigned sc;      /* lane of "social-care" */
    unsigned housing; /* lane of "housing" */
    cb_step steps[MAX_STEPS];
} fixture;

/* ---------------------------------------------------------------- fixture */

static int teardown(void **state)
{
    fixture *f = *state;
    cb_delivery_destroy(&f->d);
    cb_config_free(&f->cfg);
    int rc = cb_test_store_close(&f->t);
    free(f);
    return rc;
}

static int agency_index(const cb_config *cfg, const char *id)
{
    for (unsigned a = 0; a < cfg->n_agencies; a++)
        if (strcmp(cfg->agencies[a].id, id) == 0)
            return (int)a;
    return -1;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    f->cfg = cb_test_config();
    if (!f->cfg) {
        teardown(state);
        return -1;
    }
    f->cfg->window = 4;
    f->cfg->max_attempts = 3;
    f->cfg->redelivery_timeout_ms = 100;
    f->cfg->redelivery_max_ms = 400;
    int sc = agency_index(f->cfg, "social-care"), housing = agency_index(f->cfg, "housing");
    if (sc < 0 || housing < 0) {
        teardown(state);
        return -1;
    }
    f->sc = (unsigned)sc;
    f->housing = (unsigned)housing;

    if (!cb_test_store_open(&f->t, MAP_BYTES, 0.9)) {
        teardown(state);
        return -1;
    }
    f->d = cb_delivery_new(f->cfg);
    if (!f->d || cb_delivery_max_steps(f->d) > MAX_STEPS) {
        teardown(state);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- helpers */

static cb_txn *begin(fixture *f, bool write)
{
    return cb_test_begin(f->t.store, write);
}

static void commit(cb_txn **txn)
{
    cb_error err = {0};
    cb_code code = cb_txn_commit(txn, &err);
    if (code != CB_OK)
        fail_msg("commit: %s", err.reason);
}

/* Events first..last, each queued for `to`; as after a publish, the lane is
 * told when notify is set. */
static void put_events_to(fixture *f, uint64_t first, uint64_t last, const char *to, bool notify)
{
    cb_txn *txn = begin(f, true);
    for (uint64_t seq = first; seq <= last; seq++) {
        char id[32], body[32];
        const char *recipients[] = {to};
        snprintf(id, sizeof id, "ev-%llu", (unsigned long long)seq);
        snprintf(body, sizeof body, "event %llu", (unsigned long long)seq);
        cb_stored_event ev = {.seq = seq,
                              .bytes = (const uint8_t *)body,
                              .len = strlen(body),
                              .event_id = id,
                              .from_agency = "health",
                              .recipients = recipients,
                              .n_recipients = 1};
        cb_store_put_event(txn, &ev, WALL + seq);
    }
    commit(&txn);
    if (notify) {
        int a = agency_index(f->cfg, to);
        assert_true(a >= 0);
        for (uint64_t seq = first; seq <= last; seq++)
            cb_delivery_enqueued(f->d, (unsigned)a, seq);
    }
}

static void put_events(fixture *f, uint64_t first, uint64_t last)
{
    put_events_to(f, first, last, "social-care", false);
}

/* Plan at now in a write transaction, commit, apply: the loop's order. */
static size_t plan_cap(fixture *f, int64_t now, size_t cap)
{
    assert_true(cap <= MAX_STEPS);
    memset(f->steps, 0xA5, sizeof f->steps);
    cb_txn *txn = begin(f, true);
    size_t n = cb_delivery_plan(f->d, txn, now, f->steps, cap);
    commit(&txn);
    assert_true(n <= cap);
    cb_delivery_apply(f->d, f->steps, n, now);
    return n;
}

static size_t plan(fixture *f, int64_t now)
{
    return plan_cap(f, now, cb_delivery_max_steps(f->d));
}

/* Plan at now and abort the transaction: the plan is never applied. */
static size_t plan_aborted(fixture *f, int64_t now)
{
    memset(f->steps, 0xA5, sizeof f->steps);
    cb_txn *txn = begin(f, true);
    size_t n = cb_delivery_plan(f->d, txn, now, f->steps, cb_delivery_max_steps(f->d));
    cb_txn_abort(&txn);
    assert_null(txn);
    return n;
}

/* The consumer acknowledged seq, as the committer takes it: only from the
 * peer holding it; delete its entry (queued or parked), commit, tell the lane. */
static void ack_from(fixture *f, unsigned agency, int peer, uint64_t seq)
{
    assert_true(cb_delivery_holds(f->d, agency, peer, seq));
    cb_txn *txn = begin(f, true);
    bool found = cb_store_ack(txn, f->cfg->agencies[agency].id, seq);
    commit(&txn);
    assert_true(found);
    cb_delivery_acked(f->d, agency, seq);
}

static void ack(fixture *f, unsigned agency, uint64_t seq)
{
    ack_from(f, agency, PEER, seq);
}

static void expect_step(const cb_step *s, cb_step_kind kind, unsigned agency, uint64_t seq, uint32_t attempt)
{
    if (s->kind != kind || s->agency != agency || s->seq != seq || s->attempt != attempt)
        fail_msg("step {kind %d, agency %u, seq %llu, attempt %u}; expected {%d, %u, %llu, %u}", (int)s->kind,
                 s->agency, (unsigned long long)s->seq, s->attempt, (int)kind, agency, (unsigned long long)seq,
                 attempt);
}

/* Exactly sends of seqs first..last to social-care, in order, at attempt. */
static void expect_sends(fixture *f, size_t n, uint64_t first, uint64_t last, uint32_t attempt)
{
    assert_int_equal(n, last - first + 1);
    for (uint64_t seq = first; seq <= last; seq++)
        expect_step(&f->steps[seq - first], CB_STEP_SEND, f->sc, seq, attempt);
}

static cb_queue_stats stats(fixture *f, unsigned agency)
{
    cb_queue_stats st;
    cb_txn *txn = begin(f, false);
    cb_store_queue_stats(txn, f->cfg->agencies[agency].id, &st);
    cb_txn_abort(&txn);
    return st;
}

/* The stored attempt count of agency's queue entry seq; -1 if not queued. */
static int64_t stored_attempts(fixture *f, unsigned agency, uint64_t seq)
{
    cb_queue_entry e;
    cb_txn *txn = begin(f, false);
    bool found = cb_store_queue_get(txn, f->cfg->agencies[agency].id, seq, &e);
    cb_txn_abort(&txn);
    return found ? (int64_t)e.attempts : -1;
}

/* One seq's entry deleted by someone other than this lane's consumer. */
static void delete_elsewhere(fixture *f, unsigned agency, uint64_t seq)
{
    cb_txn *txn = begin(f, true);
    bool found = cb_store_queue_del(txn, f->cfg->agencies[agency].id, seq);
    commit(&txn);
    assert_true(found);
}

/* Drive seq 1, alone in the queue, through all 3 attempts to its park. */
static void send_until_parked(fixture *f)
{
    expect_sends(f, plan(f, T0), 1, 1, 1);
    expect_sends(f, plan(f, T0 + 100), 1, 1, 2);
    expect_sends(f, plan(f, T0 + 300), 1, 1, 3);
    assert_int_equal(plan(f, T0 + 700), 1);
    expect_step(&f->steps[0], CB_STEP_PARK, f->sc, 1, 4);
}

/* ---------------------------------------------------------- the window */

static void test_plan_sends_in_seq_order_up_to_the_window(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 6);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    assert_int_equal(cb_delivery_consumer(f->d, f->sc), PEER);
    assert_true(cb_delivery_has_work(f->d, T0));
    expect_sends(f, plan(f, T0), 1, 4, 1);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 4);
    /* the attempts are durable */
    for (uint64_t seq = 1; seq <= 4; seq++)
        assert_int_equal(stored_attempts(f, f->sc, seq), 1);
    assert_int_equal(stored_attempts(f, f->sc, 5), 0);
}

/* A receiver's credit is its own window, within limits.window. */
static void test_a_consumer_credit_narrows_the_window(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 4);
    cb_delivery_attach(f->d, f->sc, PEER, 2);
    expect_sends(f, plan(f, T0), 1, 2, 1);
    assert_int_equal(plan(f, T0 + 1), 0);
}

/* A goodbye hands back what was in flight with the attempt it was sent as,
 * and leaves the lane without a consumer. */
static void test_release_returns_what_was_in_flight(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 3);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 3, 1);
    cb_step released[8];
    size_t n = cb_delivery_release_peer(f->d, PEER, released, 8);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(released[i].kind, CB_STEP_FORGET);
        assert_int_equal(released[i].attempt, 1);
        assert_int_equal(released[i].agency, f->sc);
    }
    assert_int_equal(cb_delivery_consumer(f->d, f->sc), -1);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 0);
    assert_int_equal(cb_delivery_release_peer(f->d, PEER, released, 8), 0);
}

static void test_nothing_beyond_the_window_until_acks(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 7);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 4, 1);
    assert_false(cb_delivery_has_work(f->d, T0 + 50));
    assert_int_equal(plan(f, T0 + 50), 0);

    ack(f, f->sc, 2);
    ack(f, f->sc, 3);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 2);
    assert_true(cb_delivery_has_work(f->d, T0 + 50));
    expect_sends(f, plan(f, T0 + 50), 5, 6, 1); /* two freed, two sent: 7 waits */
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 4);
    assert_false(cb_delivery_has_work(f->d, T0 + 50));

    ack(f, f->sc, 5);
    expect_sends(f, plan(f, T0 + 60), 7, 7, 1);
}

static void test_plan_respects_cap(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 5);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan_cap(f, T0, 2), 1, 2, 1);
    /* stopped by the cap, not by the queue: still work to do */
    assert_true(cb_delivery_has_work(f->d, T0));
    expect_sends(f, plan_cap(f, T0, 2), 3, 4, 1);
    assert_false(cb_delivery_has_work(f->d, T0));
}

static void test_lanes_are_independent(void **state)
{
    fixture *f = *state;
    put_events_to(f, 1, 2, "social-care", false);
    put_events_to(f, 3, 8, "housing", false);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 2, 1); /* housing has no consumer */

    cb_delivery_attach(f->d, f->housing, PEER + 1, 0);
    assert_int_equal(plan(f, T0 + 10), 4);
    for (size_t i = 0; i < 4; i++)
        expect_step(&f->steps[i], CB_STEP_SEND, f->housing, 3 + i, 1);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 2);
    assert_int_equal(cb_delivery_in_flight(f->d, f->housing), 4);
    assert_int_equal(cb_delivery_consumer(f->d, f->housing), PEER + 1);
}

/* ---------------------------------------------------- no busy loop */

static void test_no_work_when_the_queue_is_exhausted(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 2);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 2, 1);
    /* the window has room, but the queue is empty and nothing is due */
    assert_false(cb_delivery_has_work(f->d, T0));
    assert_false(cb_delivery_has_work(f->d, T0 + 99));
    assert_true(cb_delivery_has_work(f->d, T0 + 100));
}

static void test_no_work_after_planning_an_empty_queue(void **state)
{
    fixture *f = *state;
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    assert_true(cb_delivery_has_work(f->d, T0)); /* it must look once */
    assert_int_equal(plan(f, T0), 0);
    assert_false(cb_delivery_has_work(f->d, T0));
    assert_false(cb_delivery_has_work(f->d, INT64_MAX));
    assert_int_equal(cb_delivery_next_deadline(f->d), INT64_MAX);
}

static void test_full_window_then_ack_with_empty_queue_settles(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 4); /* exactly a window: the plan cannot know it was the last */
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 4, 1);
    ack(f, f->sc, 1);
    assert_true(cb_delivery_has_work(f->d, T0));
    assert_int_equal(plan(f, T0), 0);
    assert_false(cb_delivery_has_work(f->d, T0)); /* looked once, found nothing */
}

static void test_enqueued_wakes_a_dry_lane(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 1);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 1, 1);
    assert_false(cb_delivery_has_work(f->d, T0));
    put_events_to(f, 2, 3, "social-care", true);
    assert_true(cb_delivery_has_work(f->d, T0 + 1));
    expect_sends(f, plan(f, T0 + 1), 2, 3, 1);
}

/* ---------------------------------------------------- redelivery */

static void test_next_deadline_is_now_plus_timeout(void **state)
{
    fixture *f = *state;
    assert_int_equal(cb_delivery_next_deadline(f->d), INT64_MAX);
    put_events(f, 1, 2);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    assert_int_equal(cb_delivery_next_deadline(f->d), INT64_MAX);
    plan(f, T0);
    assert_int_equal(cb_delivery_next_deadline(f->d), T0 + 100);
    put_events_to(f, 3, 3, "social-care", true);
    plan(f, T0 + 30);
    assert_int_equal(cb_delivery_next_deadline(f->d), T0 + 100); /* the earliest */
    ack(f, f->sc, 1);
    ack(f, f->sc, 2);
    assert_int_equal(cb_delivery_next_deadline(f->d), T0 + 130);
    ack(f, f->sc, 3);
    assert_int_equal(cb_delivery_next_deadline(f->d), INT64_MAX);
}

static void test_redelivery_after_deadline_with_doubling_backoff(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 1);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 1, 1);
    assert_int_equal(cb_delivery_next_deadline(f->d), T0 + 100);

    assert_false(cb_delivery_has_work(f->d, T0 + 99));
    assert_int_equal(plan(f, T0 + 99), 0); /* not yet due */

    expect_sends(f, plan(f, T0 + 100), 1, 1, 2);
    assert_int_equal(cb_delivery_next_deadline(f->d), T0 + 100 + 200);
    assert_int_equal(stored_attempts(f, f->sc, 1), 2);

    expect_sends(f, plan(f, T0 + 300), 1, 1, 3);
    assert_int_equal(cb_delivery_next_deadline(f->d), T0 + 300 + 400);
    assert_int_equal(stored_attempts(f, f->sc, 1), 3);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 1);
}

static void test_backoff_is_capped(void **state)
{
    fixture *f = *state;
    f->cfg->max_attempts = 10;
    f->cfg->redelivery_max_ms = 250;
    put_events(f, 1, 1);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    const int64_t waits[] = {100, 200, 250, 250, 250};
    int64_t now = T0;
    for (uint32_t attempt = 1; attempt <= 5; attempt++) {
        expect_sends(f, plan(f, now), 1, 1, attempt);
        assert_int_equal(cb_delivery_next_deadline(f->d), now + waits[attempt - 1]);
        now += waits[attempt - 1];
    }
}

static void test_backoff_cap_holds_for_large_attempts(void **state)
{
    fixture *f = *state;
    /* An entry already tried many times (before a restart): the doubling
     * must stop at the cap rather than overflow. */
    f->cfg->max_attempts = UINT32_MAX;
    put_events(f, 1, 1);
    cb_txn *txn = begin(f, true);
    cb_queue_entry e = {.seq = 1, .enqueued_ms = WALL, .attempts = 200};
    cb_store_queue_put(txn, "social-care", &e);
    commit(&txn);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 1, 201);
    assert_int_equal(cb_delivery_next_deadline(f->d), T0 + 400);
}

/* ---------------------------------------------------- parking */

static void test_parked_after_max_attempts(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 1);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    send_until_parked(f);
    cb_queue_stats st = stats(f, f->sc);
    assert_int_equal(st.parked, 1);
    assert_int_equal(st.queued, 0);
    assert_int_equal(stored_attempts(f, f->sc, 1), -1);
    /* the consumer still holds it: it keeps its place, but is never redelivered */
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 1);
    assert_true(cb_delivery_holds(f->d, f->sc, PEER, 1));
    assert_int_equal(cb_delivery_next_deadline(f->d), INT64_MAX);
}

static void test_parked_entry_is_never_sent_again(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 1);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    send_until_parked(f);
    assert_false(cb_delivery_has_work(f->d, T0 + 100000));
    assert_int_equal(plan(f, T0 + 100000), 0);
    /* not to a new consumer either */
    cb_delivery_attach(f->d, f->sc, PEER + 1, 0);
    assert_int_equal(plan(f, T0 + 100001), 0);
    assert_int_equal(stats(f, f->sc).parked, 1);
}

/* A slow consumer still holds what was parked under it: sending more would
 * let it hold more than its window. Its acknowledgements free the places and
 * take the entries out of parked. */
static void test_parking_under_a_connected_consumer_keeps_the_window(void **state)
{
    fixture *f = *state;
    f->cfg->max_attempts = 1;
    put_events(f, 1, 5);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 4, 1);
    size_t n = plan(f, T0 + 100);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++)
        expect_step(&f->steps[i], CB_STEP_PARK, f->sc, i + 1, 2);
    assert_int_equal(stats(f, f->sc).parked, 4);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 4);
    assert_false(cb_delivery_has_work(f->d, T0 + 100000));
    assert_int_equal(plan(f, T0 + 100000), 0);

    ack(f, f->sc, 2); /* late, but it was processed */
    cb_queue_stats st = stats(f, f->sc);
    assert_int_equal(st.parked, 3);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 3);
    expect_sends(f, plan(f, T0 + 100001), 5, 5, 1);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 4);

    /* when the consumer goes, its parked deliveries stay parked, uncounted again */
    cb_step released[8];
    assert_int_equal(cb_delivery_release_peer(f->d, PEER, released, 8), 4);
    assert_int_equal(stats(f, f->sc).parked, 3);
}

/* Only the connection a delivery was made to may acknowledge it. */
static void test_only_the_holder_may_acknowledge(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 5);
    cb_delivery_attach(f->d, f->sc, PEER, 2);
    expect_sends(f, plan(f, T0), 1, 2, 1);
    assert_true(cb_delivery_holds(f->d, f->sc, PEER, 1));
    assert_false(cb_delivery_holds(f->d, f->sc, PEER + 1, 1));  /* another connection */
    assert_false(cb_delivery_holds(f->d, f->sc, PEER, 3));      /* queued, never delivered */
    assert_false(cb_delivery_holds(f->d, f->housing, PEER, 1)); /* another agency's lane */
    ack(f, f->sc, 1);
    assert_false(cb_delivery_holds(f->d, f->sc, PEER, 1)); /* acknowledged already */
    cb_delivery_detach_peer(f->d, PEER);
    assert_false(cb_delivery_holds(f->d, f->sc, PEER, 2)); /* its connection has gone */
}

/* A parked entry its consumer still holds, replayed, is delivered anew. */
static void test_replay_of_a_held_parked_entry_delivers_it_again(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 1);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    send_until_parked(f);
    cb_txn *txn = begin(f, true);
    assert_true(cb_store_unpark(txn, "social-care", 1));
    commit(&txn);
    cb_delivery_enqueued(f->d, f->sc, 1);
    expect_sends(f, plan(f, T0 + 800), 1, 1, 1);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 1);
    assert_int_equal(cb_delivery_next_deadline(f->d), T0 + 900);
}

static void test_attempts_survive_a_new_consumer(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 2);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 2, 1);

    /* the adapter crashed on it; a new connection takes the lane over */
    cb_delivery_attach(f->d, f->sc, PEER + 1, 0);
    assert_int_equal(cb_delivery_consumer(f->d, f->sc), PEER + 1);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 0);
    expect_sends(f, plan(f, T0 + 1), 1, 2, 2); /* from the start, counts continue */

    cb_delivery_attach(f->d, f->sc, PEER + 2, 0);
    expect_sends(f, plan(f, T0 + 2), 1, 2, 3);

    cb_delivery_attach(f->d, f->sc, PEER + 3, 0);
    assert_int_equal(plan(f, T0 + 3), 2);
    expect_step(&f->steps[0], CB_STEP_PARK, f->sc, 1, 4);
    expect_step(&f->steps[1], CB_STEP_PARK, f->sc, 2, 4);
    cb_queue_stats st = stats(f, f->sc);
    assert_int_equal(st.parked, 2);
    assert_int_equal(st.queued, 0);
}

static void test_unparked_entry_is_sent_again(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 1);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    send_until_parked(f);
    /* a replay moves it back with attempts reset */
    cb_txn *txn = begin(f, true);
    bool unparked = cb_store_unpark(txn, "social-care", 1);
    commit(&txn);
    assert_true(unparked);
    cb_delivery_enqueued(f->d, f->sc, 1);
    assert_true(cb_delivery_has_work(f->d, T0 + 800));
    expect_sends(f, plan(f, T0 + 800), 1, 1, 1);
    assert_int_equal(stats(f, f->sc).parked, 0);
}

/* ---------------------------------------------------- detach, replay, forget */

static void test_detached_lane_plans_nothing(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 3);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 3, 1);
    cb_delivery_detach_peer(f->d, PEER);
    assert_int_equal(cb_delivery_consumer(f->d, f->sc), -1);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 0);
    assert_false(cb_delivery_has_work(f->d, T0 + 100000));
    assert_int_equal(cb_delivery_next_deadline(f->d), INT64_MAX);
    put_events_to(f, 4, 4, "social-care", true);
    assert_false(cb_delivery_has_work(f->d, T0 + 100000));
    assert_int_equal(plan(f, T0 + 100000), 0);
    /* the entries wait, queued, with their counts */
    assert_int_equal(stats(f, f->sc).queued, 4);
    assert_int_equal(stored_attempts(f, f->sc, 1), 1);
}

static void test_detach_leaves_other_peers_lanes(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 1);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    cb_delivery_detach_peer(f->d, PEER + 1);
    assert_int_equal(cb_delivery_consumer(f->d, f->sc), PEER);
    expect_sends(f, plan(f, T0), 1, 1, 1);
}

static void test_replay_behind_the_cursor_is_sent_again(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 3);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 3, 1);
    ack(f, f->sc, 1);
    ack(f, f->sc, 2);

    /* a replay queues seq 1 again, behind the lane's cursor */
    cb_txn *txn = begin(f, true);
    cb_queue_entry e = {.seq = 1, .enqueued_ms = WALL + 50, .attempts = 0};
    cb_store_queue_put(txn, "social-care", &e);
    commit(&txn);
    assert_false(cb_delivery_has_work(f->d, T0 + 10)); /* not told yet */
    cb_delivery_enqueued(f->d, f->sc, 1);
    assert_true(cb_delivery_has_work(f->d, T0 + 10));
    /* seq 3, still in flight, is not sent twice */
    expect_sends(f, plan(f, T0 + 10), 1, 1, 1);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 2);
    assert_int_equal(plan(f, T0 + 10), 0);
}

/* The store thread's order (committer.c commit and committed): the replay's
 * queue entry for `seq` is written in the same transaction as the plan, and
 * the lane is told after the commit, before the plan is applied. Returns the
 * number of steps that plan made. */
static size_t replay_during_plan(fixture *f, uint64_t seq, int64_t now)
{
    cb_txn *txn = begin(f, true);
    cb_queue_entry e = {.seq = seq, .enqueued_ms = WALL + 50, .attempts = 0};
    cb_store_queue_put(txn, "social-care", &e);
    size_t n = cb_delivery_plan(f->d, txn, now, f->steps, cb_delivery_max_steps(f->d));
    commit(&txn);
    cb_delivery_enqueued(f->d, f->sc, seq);
    cb_delivery_apply(f->d, f->steps, n, now);
    return n;
}

static void test_replay_in_the_planning_txn_is_sent_on_the_next_plan(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 3);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 3, 1);
    ack(f, f->sc, 1);
    assert_int_equal(plan(f, T0 + 5), 0);

    /* that plan scanned from the cursor (3) and could not see seq 1 */
    assert_int_equal(replay_during_plan(f, 1, T0 + 10), 0);
    assert_true(cb_delivery_has_work(f->d, T0 + 10));
    expect_sends(f, plan(f, T0 + 10), 1, 1, 1);
}

/* As above, with a plan that does send something (a new publish), so apply
 * moves the cursor: it must not move it past the replayed entry. */
static void test_replay_told_between_plan_and_apply_is_sent(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 2);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 2, 1);
    ack(f, f->sc, 1);
    put_events_to(f, 3, 3, "social-care", true);

    size_t n = replay_during_plan(f, 1, T0 + 10);
    assert_int_equal(n, 1);
    expect_step(&f->steps[0], CB_STEP_SEND, f->sc, 3, 1);

    /* seq 1 is queued and the lane is idle: the next plan must send it */
    assert_int_equal(stored_attempts(f, f->sc, 1), 0);
    assert_true(cb_delivery_has_work(f->d, T0 + 10));
    expect_sends(f, plan(f, T0 + 10), 1, 1, 1);
}

static void test_forget_when_the_entry_was_deleted_elsewhere(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 2);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 2, 1);
    /* acknowledged by an earlier connection: gone from the queue, but the
     * lane was never told */
    delete_elsewhere(f, f->sc, 1);
    assert_int_equal(plan(f, T0 + 99), 0);

    assert_int_equal(plan(f, T0 + 100), 2);
    const cb_step *forget = f->steps[0].seq == 1 ? &f->steps[0] : &f->steps[1];
    const cb_step *resend = f->steps[0].seq == 1 ? &f->steps[1] : &f->steps[0];
    expect_step(forget, CB_STEP_FORGET, f->sc, 1, 0);
    expect_step(resend, CB_STEP_SEND, f->sc, 2, 2);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 1);
    assert_int_equal(cb_delivery_next_deadline(f->d), T0 + 100 + 200);
    assert_int_equal(plan(f, T0 + 299), 0); /* seq 1 is not sent again */
}

/* ---------------------------------------------------- transactions */

static void test_aborted_plan_changes_nothing(void **state)
{
    fixture *f = *state;
    put_events(f, 1, 3);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan_aborted(f, T0), 1, 3, 1);
    assert_int_equal(stored_attempts(f, f->sc, 1), 0);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 0);
    assert_true(cb_delivery_has_work(f->d, T0));
    expect_sends(f, plan(f, T0), 1, 3, 1); /* the same plan again */

    /* a redelivery plan aborted: attempts and deadlines stay */
    expect_sends(f, plan_aborted(f, T0 + 100), 1, 3, 2);
    assert_int_equal(stored_attempts(f, f->sc, 2), 1);
    assert_int_equal(cb_delivery_next_deadline(f->d), T0 + 100);
    expect_sends(f, plan(f, T0 + 100), 1, 3, 2);
    assert_int_equal(cb_delivery_next_deadline(f->d), T0 + 300);
}

static void test_aborted_park_changes_nothing(void **state)
{
    fixture *f = *state;
    f->cfg->max_attempts = 1;
    put_events(f, 1, 1);
    cb_delivery_attach(f->d, f->sc, PEER, 0);
    expect_sends(f, plan(f, T0), 1, 1, 1);
    assert_int_equal(plan_aborted(f, T0 + 100), 1);
    expect_step(&f->steps[0], CB_STEP_PARK, f->sc, 1, 2);
    cb_queue_stats st = stats(f, f->sc);
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.parked, 0);
    assert_int_equal(cb_delivery_in_flight(f->d, f->sc), 1);
    assert_int_equal(plan(f, T0 + 100), 1);
    expect_step(&f->steps[0], CB_STEP_PARK, f->sc, 1, 2);
    assert_int_equal(stats(f, f->sc).parked, 1);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_plan_sends_in_seq_order_up_to_the_window),
        T(test_nothing_beyond_the_window_until_acks),
        T(test_plan_respects_cap),
        T(test_lanes_are_independent),
        T(test_no_work_when_the_queue_is_exhausted),
        T(test_no_work_after_planning_an_empty_queue),
        T(test_full_window_then_ack_with_empty_queue_settles),
        T(test_enqueued_wakes_a_dry_lane),
        T(test_next_deadline_is_now_plus_timeout),
        T(test_redelivery_after_deadline_with_doubling_backoff),
        T(test_backoff_is_capped),
        T(test_backoff_cap_holds_for_large_attempts),
        T(test_parked_after_max_attempts),
        T(test_parked_entry_is_never_sent_again),
        T(test_parking_under_a_connected_consumer_keeps_the_window),
        T(test_only_the_holder_may_acknowledge),
        T(test_replay_of_a_held_parked_entry_delivers_it_again),
        T(test_attempts_survive_a_new_consumer),
        T(test_unparked_entry_is_sent_again),
        T(test_detached_lane_plans_nothing),
        T(test_detach_leaves_other_peers_lanes),
        T(test_replay_behind_the_cursor_is_sent_again),
        T(test_replay_in_the_planning_txn_is_sent_on_the_next_plan),
        T(test_replay_told_between_plan_and_apply_is_sent),
        T(test_forget_when_the_entry_was_deleted_elsewhere),
        T(test_a_consumer_credit_narrows_the_window),
        T(test_release_returns_what_was_in_flight),
        T(test_aborted_plan_changes_nothing),
        T(test_aborted_park_changes_nothing),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
