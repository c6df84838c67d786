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
#include "flagbook.h"
#include "keys.h"
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
    cb_test_event events[1024];
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

/* The monotonic clock as it would read at wall time wall: a test's days
 * pass on both clocks (retention goes by the wall clock no faster than the
 * monotonic one), `now` counting what happens within them. */
static int64_t mono_at(uint64_t wall, int64_t now)
{
    return now + (int64_t)(wall - WALL);
}

/* Every audit record, as an operator asks for them. */
static Carebridge__V1__AuditReply *audit_all(fixture *f)
{
    cb_txn *txn = cb_test_begin(f->store, false);
    Carebridge__V1__AuditRequest req = CAREBRIDGE__V1__AUDIT_REQUEST__INIT;
    cb_error err = {0};
    Carebridge__V1__AuditReply *r = cb_audit_query(f->cfg, txn, &req, NULL, &err);
    cb_txn_abort(&txn);
    assert_non_null(r);
    return r;
}

/* One batch of n audit records about person, committed at wall and now. */
static void audit_batch(fixture *f, size_t n, const char *person, uint64_t wall, int64_t now)
{
    for (size_t i = 0; i < n; i++) {
        cb_audit_entry *a = &f->batch->audits[f->batch->n_audits++];
        *a = cb_audit_of(NULL, "health", "journey");
        snprintf(a->person, sizeof a->person, "%s", person);
    }
    f->batch->now_ms = mono_at(wall, now);
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
    for (int i = 0; i < 3; i++) /* 2,400 old records: more than four runs' budget */
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
        assert_true(before - left <= 500); /* a budget a transaction, plus the run's own record */
        before = left;
    }
    assert_int_equal(runs, 5);
    assert_int_equal(count_keys(f, by_person), 5); /* the new ones' entries, and only theirs */
    Carebridge__V1__AuditReply *r = audit_all(f);
    size_t retention = 0, kept = 0;
    for (size_t i = 0; i < r->n_records; i++) {
        retention += !strcmp(r->records[i]->action, "retention");
        kept += !strcmp(r->records[i]->person, "p-0000000new");
        assert_string_not_equal(r->records[i]->person, "p-0000000old");
    }
    assert_int_equal(retention, 5);
    assert_int_equal(kept, 5);
    carebridge__v1__audit_reply__free_unpacked(r, NULL);

    /* Once the new ones are old too, they go the same way. */
    audit_batch(f, 0, "", WALL + 51 * DAY_MS, now += 61000);
    assert_int_equal(count_keys(f, by_person), 0);
}

/* ---------------------------------------------------------------- event retention */

#define GENERATION 200 /* referrals a generation, every other one accepted */

/* The i-th NHS number (valid check digit) from 900 000 0000 on. */
static void nhs_number(unsigned i, char out[16])
{
    for (uint64_t n = 9000000000ull;; n++) {
        char d[11];
        snprintf(d, sizeof d, "%llu", (unsigned long long)n);
        unsigned sum = 0;
        for (int k = 0; k < 9; k++)
            sum += (unsigned)(d[k] - '0') * (unsigned)(10 - k);
        unsigned check = (11 - sum % 11) % 11;
        if (check != 10 && check == (unsigned)(d[9] - '0') && !i--) {
            snprintf(out, 16, "%s", d);
            return;
        }
    }
}

static void publish_batch(fixture *f, uint64_t wall, int64_t *now)
{
    f->batch->now_ms = mono_at(wall, *now += 1000);
    f->batch->wall_ms = wall;
    cb_commit_batch(f->commit, f->batch);
    assert_int_equal(f->batch->exit_status, 0);
    for (size_t i = 0; i < f->batch->n_pubs; i++)
        assert_int_equal(f->batch->pubs[i].code, CB_OK);
    next_batch(f);
    f->n_events = 0;
}

/* A generation g of events stored at wall: referrals for people of their
 * own (their handoff records, flags, queue entries, person records), half
 * of them accepted (resolved handoff flags, health's queue), and an answer
 * to an event never stored (an early answer). */
static void generation(fixture *f, int g, uint64_t wall, int64_t *now)
{
    for (unsigned i = 0; i < GENERATION; i++) {
        char id[32];
        snprintf(id, sizeof id, "g%d-ref-%u", g, i);
        cb_test_event *e = &f->events[f->n_events];
        add_publish(f, id, "falls at home");
        nhs_number((unsigned)g * GENERATION + i, e->nhs);
        e->person.nhs_number = e->nhs;
        f->batch->n_pubs--; /* packed again with its own person */
        assert_non_null(cb_batch_add_publish(f->batch, SENDER, e->frame.ref, &e->frame, 0));
        if (f->n_events >= 100)
            publish_batch(f, wall, now);
    }
    publish_batch(f, wall, now);
    for (unsigned i = 0; i <= GENERATION; i += 2) {
        char id[32], answers[32];
        snprintf(id, sizeof id, "g%d-acc-%u", g, i);
        snprintf(answers, sizeof answers, i < GENERATION ? "g%d-ref-%u" : "g%d-never", g, i);
        cb_test_event *e = &f->events[f->n_events++];
        cb_test_response(e, id, answers, CAREBRIDGE__V1__RESPONSE__STATUS__ACCEPTED);
        e->frame.ref = f->n_events;
        nhs_number((unsigned)g * GENERATION + (i < GENERATION ? i : 0), e->nhs);
        e->person.nhs_number = e->nhs;
        assert_non_null(cb_batch_add_publish(f->batch, SENDER, e->frame.ref, &e->frame, 0));
        if (f->n_events >= 100)
            publish_batch(f, wall, now);
    }
    publish_batch(f, wall, now);
}

/* What the store and the flags' keyspaces hold. */
typedef struct {
    size_t ks[CB_FLAGBOOK_KEYSPACES];
    uint64_t events, queued_sc, queued_health, indexed;
} holdings;

static bool count_seq(void *arg, uint64_t seq)
{
    (void)seq;
    ++*(uint64_t *)arg;
    return true;
}

static void holdings_of(fixture *f, int g, holdings *h)
{
    memset(h, 0, sizeof *h);
    for (cb_keyspace ks = 0; ks < CB_FLAGBOOK_KEYSPACES; ks++)
        h->ks[ks] = count_keys(f, ks);
    cb_txn *txn = cb_test_begin(f->store, false);
    h->events = cb_store_event_count(txn);
    cb_queue_stats st;
    cb_store_queue_stats(txn, "social-care", &st);
    h->queued_sc = st.queued + st.parked;
    cb_store_queue_stats(txn, "health", &st);
    h->queued_health = st.queued + st.parked;
    for (unsigned i = 0; i < GENERATION; i++) { /* generation g's people, in the persons index */
        char nhs[16], key[24];
        nhs_number((unsigned)g * GENERATION + i, nhs);
        snprintf(key, sizeof key, "nhs:%s", nhs);
        cb_store_person_seqs(txn, key, count_seq, &h->indexed);
    }
    cb_txn_abort(&txn);
}

static size_t retention_records(fixture *f)
{
    Carebridge__V1__AuditReply *r = audit_all(f);
    size_t n = 0;
    for (size_t i = 0; i < r->n_records; i++)
        n += !strcmp(r->records[i]->action, "retention");
    carebridge__v1__audit_reply__free_unpacked(r, NULL);
    return n;
}

/* Two stores under the same configuration and clock: one given an old
 * generation (stored on day 0) and a new one (day 20), one given only the
 * new. On day 31, with events kept 30 days, retention leaves the first
 * holding exactly what the second holds: every record of the old generation
 * gone (events, index and queue entries, handoff records, deadlines, flags
 * raised on time since, person and early records), none of the new, a
 * budget a transaction, each run in the audit. */
static void test_event_retention(void **state)
{
    fixture *f = *state, *only_new = calloc(1, sizeof *only_new);
    assert_non_null(only_new);
    assert_int_equal(open_all(only_new, 0.9), 0);
    f->cfg->retention.event_days = only_new->cfg->retention.event_days = 30;
    int64_t now = NOW, now_b = NOW;
    generation(f, 0, WALL, &now);
    generation(f, 1, WALL + 20 * DAY_MS, &now);
    generation(only_new, 1, WALL + 20 * DAY_MS, &now_b);
    /* A minute on, retention finds nothing yet: what it removes from now on
     * is a budget of 100 a transaction, and as many as were stored since. */
    now += 61000, now_b += 61000;
    publish_batch(f, WALL + 20 * DAY_MS, &now);
    publish_batch(only_new, WALL + 20 * DAY_MS, &now_b);
    holdings before, old_gone, want;
    holdings_of(f, 0, &before);
    assert_true(before.events == 2 * (GENERATION + GENERATION / 2 + 1));
    assert_true(before.indexed >= GENERATION);
    assert_int_equal(stored_seq_of(f, "g0-ref-7"), 8);
    uint64_t last = cb_commit_last_seq(f->commit);

    uint64_t later = WALL + 31 * DAY_MS;
    size_t runs = 0;
    for (uint64_t left = before.events; runs < 10; runs++) {
        now += 61000, now_b += 61000;
        publish_batch(f, later, &now);
        publish_batch(only_new, later, &now_b);
        holdings_of(f, 0, &old_gone);
        assert_true(left - old_gone.events <= 100); /* a budget a transaction */
        if (left == old_gone.events)
            break;
        left = old_gone.events;
    }
    assert_int_equal(runs, 4); /* 301 old events: four runs, and one that found none */
    assert_int_equal(retention_records(f), 4);
    assert_int_equal(old_gone.indexed, 0);
    assert_int_equal(stored_seq_of(f, "g0-ref-7"), 0);
    assert_int_not_equal(stored_seq_of(f, "g1-ref-7"), 0);
    holdings_of(f, 1, &old_gone);
    holdings_of(only_new, 1, &want);
    assert_true(want.events == GENERATION + GENERATION / 2 + 1 && want.queued_sc == GENERATION);
    assert_int_equal(old_gone.events, want.events);
    assert_int_equal(old_gone.queued_sc, want.queued_sc);
    assert_int_equal(old_gone.queued_health, want.queued_health);
    assert_int_equal(old_gone.indexed, want.indexed);
    for (cb_keyspace ks = 0; ks < CB_FLAGBOOK_KEYSPACES; ks++) {
        print_message("keyspace %s: %zu before, %zu after, %zu for the new alone\n", cb_flagbook_keyspaces[ks],
                      before.ks[ks], old_gone.ks[ks], want.ks[ks]);
        assert_int_equal(old_gone.ks[ks], want.ks[ks]);
        assert_true(before.ks[ks] >= want.ks[ks]);
    }
    /* Seqs go on from the last; an old id is new again. */
    cb_test_event *e = &f->events[f->n_events];
    add_publish(f, "g0-ref-7", "falls at home");
    (void)e;
    publish_batch(f, later, &now);
    assert_int_equal(stored_seq_of(f, "g0-ref-7"), last + 1);
    cb_batch_free(&only_new->batch);
    cb_commit_free(&only_new->commit);
    cb_config_free(&only_new->cfg);
    assert_int_equal(cb_test_store_close(&only_new->t), 0);
    free(only_new);
}

/* A store past its publish fraction: publishes are refused STORE_FULL
 * before they are written, and retention, a step a batch, makes room until
 * they are taken again. (The fraction's headroom is what lets a delete
 * commit: LMDB copies every page it changes, so a map filled to its last
 * page cannot commit even one; the configuration allows at most 99%.) */
static int setup_little_headroom(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    return f ? open_all(f, 0.5) : -1;
}

static size_t publish_many(fixture *f, const char *prefix, unsigned from, unsigned n, uint64_t wall, int64_t *now)
{
    size_t refused = 0;
    for (unsigned i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "%s-%u", prefix, from + i);
        add_publish(f, id, "falls at home");
    }
    f->batch->now_ms = mono_at(wall, *now += 1000);
    f->batch->wall_ms = wall;
    cb_commit_batch(f->commit, f->batch);
    assert_int_equal(f->batch->exit_status, 0);
    for (size_t i = 0; i < f->batch->n_pubs; i++)
        refused += f->batch->pubs[i].code == CB_STORE_FULL;
    next_batch(f);
    f->n_events = 0;
    return refused;
}

static void test_retention_makes_room_in_a_full_store(void **state)
{
    fixture *f = *state;
    f->cfg->retention.event_days = 1;
    int64_t now = NOW;
    unsigned sent = 0;
    while (!publish_many(f, "old", sent, 100, WALL, &now) && sent < 200000)
        sent += 100;
    assert_true(sent > 0 && sent < 200000);
    cb_txn *txn = cb_test_begin(f->store, false);
    uint64_t full = cb_store_event_count(txn);
    cb_txn_abort(&txn);

    /* Two days on, the old events have expired. */
    uint64_t later = WALL + 2 * DAY_MS;
    size_t batches = 0;
    while (publish_many(f, "new", 0, 10, later, &now) && batches < 1000)
        batches++;
    txn = cb_test_begin(f->store, false);
    uint64_t left = cb_store_event_count(txn);
    cb_txn_abort(&txn);
    print_message("a full store of %llu events; publishes taken again after %zu refused batches, %llu events left\n",
                  (unsigned long long)full, batches, (unsigned long long)left);
    assert_true(batches >= 1 && batches < 1000);
    assert_true(left < full);
    assert_int_not_equal(stored_seq_of(f, "new-0"), 0);
}

/* The wall clock stepped a year ahead while the broker runs (NTP, a VM
 * restored) expires nothing that has not had its time by the monotonic
 * clock; once it has, it goes. */
static void test_a_wall_clock_stepped_forward_expires_nothing_early(void **state)
{
    fixture *f = *state;
    f->cfg->retention.event_days = 30;
    int64_t now = NOW;
    for (unsigned i = 0; i < 3; i++)
        publish_many(f, "kept", i * 10, 10, WALL, &now);
    uint64_t stepped = WALL + 365 * DAY_MS;
    f->batch->now_ms = now += 120000; /* two minutes on, by the monotonic clock */
    f->batch->wall_ms = stepped;
    cb_commit_batch(f->commit, f->batch);
    next_batch(f);
    cb_txn *txn = cb_test_begin(f->store, false);
    assert_int_equal(cb_store_event_count(txn), 30);
    cb_txn_abort(&txn);
    f->batch->now_ms = now += 31 * (int64_t)DAY_MS; /* and a month on, by both */
    f->batch->wall_ms = stepped + 31 * DAY_MS;
    cb_commit_batch(f->commit, f->batch);
    next_batch(f);
    txn = cb_test_begin(f->store, false);
    assert_int_equal(cb_store_event_count(txn), 0);
    cb_txn_abort(&txn);
}

/* ---------------------------------------------------------------- closed flags */

typedef struct {
    uint64_t cutoff;
    size_t closed_before, closed_after; /* closed entries resolved before and after the cutoff */
    size_t open, resolved;              /* agency index entries */
} flag_tally;

static bool tally_closed(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    (void)v, (void)vl;
    flag_tally *t = arg;
    uint64_t ms, id;
    assert_true(cb_key_parse(k, kl, "QQ", &ms, &id));
    if (ms < t->cutoff)
        t->closed_before++;
    else
        t->closed_after++;
    return true;
}

static bool tally_ix(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    (void)v, (void)vl;
    flag_tally *t = arg;
    const char *agency;
    uint8_t status;
    uint64_t not_id;
    assert_true(cb_key_parse(k, kl, "SBQ", &agency, &status, &not_id));
    if (status == 1)
        t->open++;
    else
        t->resolved++;
    return true;
}

static void flag_tally_of(fixture *f, uint64_t cutoff, flag_tally *t)
{
    cb_flagbook fb = cb_flagbook_broker();
    *t = (flag_tally){.cutoff = cutoff};
    cb_txn *txn = cb_test_begin(f->store, false);
    cb_kv_scan(txn, fb.closed, NULL, 0, NULL, 0, tally_closed, t);
    cb_kv_scan(txn, fb.ix, NULL, 0, NULL, 0, tally_ix, t);
    cb_txn_abort(&txn);
}

static bool no_resolved_before(void *arg, cb_flag **f)
{
    const uint64_t *cutoff = arg;
    assert_int_equal((*f)->status, CAREBRIDGE__V1__FLAG__STATUS__RESOLVED);
    assert_true((uint64_t)(*f)->resolved_at->seconds * 1000 >= *cutoff);
    return true;
}

/* With resolved flags kept 10 days, those resolved on day 0 go on day 25
 * (stored and handoff flags alike, their index entries with them), those
 * resolved on day 20 stay, no open flag is touched and no event removed. */
static void test_closed_flag_retention(void **state)
{
    fixture *f = *state;
    int64_t now = NOW;
    generation(f, 0, WALL, &now);
    generation(f, 1, WALL + 20 * DAY_MS, &now);
    uint64_t cutoff = WALL + 15 * DAY_MS, later = WALL + 25 * DAY_MS;
    for (int i = 0; i < 5; i++) { /* the deadlines passed by day 25 raise their flags first */
        now += 61000;
        publish_batch(f, later, &now);
    }
    f->cfg->retention.closed_flag_days = 10;
    flag_tally before, after;
    flag_tally_of(f, cutoff, &before);
    assert_true(before.closed_before >= GENERATION / 2 && before.closed_after >= GENERATION / 2);
    cb_txn *txn = cb_test_begin(f->store, false);
    uint64_t events = cb_store_event_count(txn);
    cb_txn_abort(&txn);

    for (int i = 0; i < 3; i++) {
        now += 61000;
        publish_batch(f, later, &now);
    }
    flag_tally_of(f, cutoff, &after);
    print_message("closed %zu+%zu -> %zu+%zu; open %zu -> %zu; resolved %zu -> %zu\n", before.closed_before,
                  before.closed_after, after.closed_before, after.closed_after, before.open, after.open,
                  before.resolved, after.resolved);
    assert_int_equal(after.closed_before, 0);
    assert_int_equal(after.closed_after, before.closed_after);
    assert_int_equal(after.open, before.open);
    assert_true(after.resolved < before.resolved);
    assert_int_equal(retention_records(f), 1);
    txn = cb_test_begin(f->store, false);
    assert_int_equal(cb_store_event_count(txn), events);
    cb_flagbook fb = cb_flagbook_broker();
    const char *agencies[] = {"health", "social-care"};
    for (int a = 0; a < 2; a++)
        cb_flagbook_agency_flags(&fb, txn, agencies[a], false, 0, no_resolved_before, &cutoff);
    /* The handoff flag of g0-ref-0, accepted on day 0, is built no more. */
    uint64_t seq = 0;
    assert_true(cb_store_find_id(txn, "g0-ref-0", &seq, (uint8_t[CB_DIGEST_BYTES]){0}));
    assert_null(cb_flagbook_get(&fb, txn, cb_flag_id(seq, 0)));
    cb_handoff_record *rec = cb_flagbook_record(&fb, txn, seq);
    assert_non_null(rec);
    assert_true(rec->recipients[0]->flag_removed);
    cb_flagbook_free_record(&rec);
    cb_txn_abort(&txn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publishes_are_stored_and_queued_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedupe_by_event_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_and_who_may_acknowledge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_store_refuses_publishes, setup_full, teardown),
        cmocka_unit_test_setup_teardown(test_audit_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_flag_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_makes_room_in_a_full_store, setup_little_headroom, teardown),
        cmocka_unit_test_setup_teardown(test_a_wall_clock_stepped_forward_expires_nothing_early, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
