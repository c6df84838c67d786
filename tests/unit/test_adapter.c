/* The adapter library (adapters/adapter.c) with a real outbox (LMDB in a
 * temporary directory) and a real ZeroMQ ROUTER on loopback standing in for
 * the broker, so the test sees every frame the adapter sends.
 *
 * A batch goes to the broker while the outbox syncs it; a batch that has
 * already failed (its outbox is full) cannot commit, so none of it may be
 * sent: the broker would keep events the agency system was told were not.
 * And a failed batch must not make the adapter pass over events kept
 * before it that were still waiting for room in the client's window. An event
 * the broker would refuse on its own terms is refused before it is kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include <cmocka.h>

#include "adapter.h"
#include "cb_codec.h"
#include "fixtures.h"

typedef struct {
    void *ctx, *router;
    char endpoint[64];
    zmq_msg_t id; /* the adapter's connection */
} fake_broker;

static void broker_bind(fake_broker *fb)
{
    fb->ctx = zmq_ctx_new();
    fb->router = zmq_socket(fb->ctx, ZMQ_ROUTER);
    int linger = 0, timeout = 300;
    zmq_setsockopt(fb->router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(fb->router, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    assert_int_equal(zmq_bind(fb->router, "tcp://127.0.0.1:*"), 0);
    size_t n = sizeof fb->endpoint;
    assert_int_equal(zmq_getsockopt(fb->router, ZMQ_LAST_ENDPOINT, fb->endpoint, &n), 0);
    zmq_msg_init(&fb->id);
}

/* The adapter's next frame, or NULL when none comes within the timeout
 * (at once with ZMQ_DONTWAIT). */
static cb_frame *broker_recv_flags(fake_broker *fb, int flags)
{
    zmq_msg_t body;
    zmq_msg_close(&fb->id);
    zmq_msg_init(&fb->id);
    if (zmq_msg_recv(&fb->id, fb->router, flags) < 0)
        return NULL;
    zmq_msg_init(&body);
    assert_true(zmq_msg_recv(&body, fb->router, 0) >= 0);
    cb_frame *f = cb_frame_decode(zmq_msg_data(&body), zmq_msg_size(&body), SIZE_MAX, NULL);
    zmq_msg_close(&body);
    assert_non_null(f);
    return f;
}

static cb_frame *broker_recv(fake_broker *fb)
{
    return broker_recv_flags(fb, 0);
}

static void broker_send(fake_broker *fb, const cb_frame *f)
{
    uint8_t *buf = NULL;
    size_t len = cb_pack(&f->base, &buf);
    assert_non_null(buf);
    zmq_msg_t id;
    zmq_msg_init(&id);
    zmq_msg_copy(&id, &fb->id);
    assert_true(zmq_msg_send(&id, fb->router, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(fb->router, buf, len, 0) >= 0);
    free(buf);
}

/* Acknowledge a publish, as the broker does once it is stored. */
static void broker_ack(fake_broker *fb, const cb_frame *pub)
{
    Carebridge__V1__Ack ack = CAREBRIDGE__V1__ACK__INIT, *acks[] = {&ack};
    ack.ref = pub->ref;
    ack.event_id = pub->publish->event->event_id;
    Carebridge__V1__Acks all = CAREBRIDGE__V1__ACKS__INIT;
    all.acks = acks;
    all.n_acks = 1;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_ACKS;
    f.acks = &all;
    broker_send(fb, &f);
}

static void broker_welcome(fake_broker *fb)
{
    Carebridge__V1__Welcome w = CAREBRIDGE__V1__WELCOME__INIT;
    w.heartbeat_ms = 60000;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_WELCOME;
    f.welcome = &w;
    broker_send(fb, &f);
}

static void broker_close(fake_broker *fb)
{
    zmq_msg_close(&fb->id);
    zmq_close(fb->router);
    zmq_ctx_term(fb->ctx);
}

/* Publishes among the frames that come within the timeout. */
static int publishes_seen(fake_broker *fb)
{
    int n = 0;
    cb_frame *f;
    while ((f = broker_recv(fb))) {
        n += f->kind_case == CAREBRIDGE__V1__FRAME__KIND_PUBLISH;
        cb_frame_free(&f);
    }
    return n;
}

static json_t *referral(int i, const char *reason)
{
    char id[32];
    snprintf(id, sizeof id, "adapter-test-%d", i);
    return json_pack("{s:s,s:s,s:{s:s},s:[s],s:{s:s}}", "eventId", id, "occurredAt", "2026-12-03T09:00:00Z", "person",
                     "nhsNumber", "9434765919", "toAgencies", "housing", "referral", "reason", reason);
}

/* An adapter on an outbox of map_bytes in root, welcomed by fb. */
static cb_adapter *connected(fake_broker *fb, char root[40], char box[64], uint64_t map_bytes)
{
    assert_true(cb_test_mkdtemp(root, 40));
    snprintf(box, 64, "%s/outbox", root);
    broker_bind(fb);
    cb_adapter_opts o = {.broker = fb->endpoint, .agency = "health", .outbox_dir = box, .outbox_bytes = map_bytes};
    cb_adapter_error err = {0};
    cb_adapter *a = cb_adapter_open(&o, NULL, NULL, &err);
    assert_non_null(a);
    cb_frame *hello = broker_recv(fb);
    assert_non_null(hello);
    assert_int_equal(hello->kind_case, CAREBRIDGE__V1__FRAME__KIND_HELLO);
    cb_frame_free(&hello);
    broker_welcome(fb);
    for (int i = 0; i < 100 && !cb_adapter_connected(a); i++) {
        zmq_pollitem_t p = {NULL, cb_adapter_fd(a), ZMQ_POLLIN, 0};
        zmq_poll(&p, 1, 20);
        cb_adapter_step(a, &err);
    }
    assert_true(cb_adapter_connected(a));
    return a;
}

/* Add referrals first.. until one is not NEW; the last answer. */
static cb_adapter_added add_until(cb_adapter_batch *b, int first, int last, const char *reason, int *added)
{
    cb_adapter_error err = {0};
    cb_adapter_added r = CB_ADAPTER_NEW;
    uint64_t seq;
    *added = 0;
    for (int i = first; i <= last && r == CB_ADAPTER_NEW; i++) {
        json_t *ev = referral(i, reason);
        r = cb_adapter_add(b, ev, NULL, &seq, &err);
        json_decref(ev);
        *added += r == CB_ADAPTER_NEW;
    }
    return r;
}

static void test_a_batch_that_failed_is_never_sent(void **state)
{
    (void)state;
    char root[40], box[64];
    fake_broker fb;
    cb_adapter_error err = {0};
    cb_adapter *a = connected(&fb, root, box, 1u << 20);

    /* One that is kept goes to the broker. */
    cb_adapter_batch *b = cb_adapter_begin(a, &err);
    uint64_t seq;
    json_t *ev = referral(0, "a fall at home");
    assert_int_equal(cb_adapter_add(b, ev, NULL, &seq, &err), CB_ADAPTER_NEW);
    json_decref(ev);
    assert_int_equal(cb_adapter_commit(&b, &err), CB_ADAPTER_OK);
    assert_int_equal(publishes_seen(&fb), 1);

    /* A batch that fills the outbox's 1 MiB map fails at an add; its
     * commit says so, and none of it reaches the broker. */
    static char reason[8001];
    memset(reason, 'r', sizeof reason - 1);
    b = cb_adapter_begin(a, &err);
    int added;
    assert_int_equal(add_until(b, 1, 1000, reason, &added), CB_ADAPTER_FAILED);
    assert_true(added > 1); /* some were added before the map filled */
    assert_int_equal(cb_adapter_commit(&b, &err), CB_ADAPTER_OUTBOX_FULL);
    for (int k = 0; k < 5; k++)
        cb_adapter_step(a, &err);
    assert_int_equal(publishes_seen(&fb), 0);
    assert_int_equal(cb_adapter_waiting(a), 1); /* the first, still unanswered */

    cb_adapter_close(&a);
    broker_close(&fb);
    assert_int_equal(cb_test_remove_tree(root), 0);
}

/* What the broker would refuse on its own terms (no occurredAt, a recipient
 * named twice, a control character in the eventId) is refused at the add,
 * with the broker's reason, so the agency system hears of it from its
 * adapter; none of it is kept or sent. */
static void test_what_the_broker_would_refuse_is_refused_before_it_is_kept(void **state)
{
    (void)state;
    char root[40], box[64];
    fake_broker fb;
    cb_adapter_error err = {0};
    cb_adapter *a = connected(&fb, root, box, 1u << 20);
    cb_adapter_batch *b = cb_adapter_begin(a, &err);
    uint64_t seq;
    static const struct {
        const char *field, *value, *reason;
    } bad[] = {
        {"occurredAt", NULL, "occurredAt is missing"},
        {"toAgencies", "twice", "toAgencies[1] repeats toAgencies[0]"},
        {"eventId", "adapter-test-\x01", "eventId is longer than 128 bytes or has control characters"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *ev = referral(100 + (int)i, "a fall at home");
        if (!bad[i].value)
            json_object_del(ev, bad[i].field);
        else if (!strcmp(bad[i].field, "toAgencies"))
            json_object_set_new(ev, "toAgencies", json_pack("[s,s]", "housing", "housing"));
        else
            json_object_set_new(ev, bad[i].field, json_string("adapter-test-\x01"));
        memset(&err, 0, sizeof err);
        assert_int_equal(cb_adapter_add(b, ev, NULL, &seq, &err), CB_ADAPTER_REFUSED);
        assert_int_equal(err.code, CB_ADAPTER_NOT_AN_EVENT);
        assert_string_equal(err.text, bad[i].reason);
        json_decref(ev);
    }
    json_t *ev = referral(0, "a fall at home");
    assert_int_equal(cb_adapter_add(b, ev, NULL, &seq, &err), CB_ADAPTER_NEW);
    json_decref(ev);
    assert_int_equal(cb_adapter_commit(&b, &err), CB_ADAPTER_OK);
    assert_int_equal(publishes_seen(&fb), 1);
    assert_int_equal(cb_adapter_waiting(a), 1);

    cb_adapter_close(&a);
    broker_close(&fb);
    assert_int_equal(cb_test_remove_tree(root), 0);
}

/* 1,100 events kept; the client's window holds 1,024 unanswered, so the
 * rest wait in the outbox for room. Then a batch fails (the map is full).
 * Once the broker answers, every one of the 1,100 must still reach it. */
static void test_a_failed_batch_passes_over_nothing_kept_before_it(void **state)
{
    (void)state;
    enum { KEPT = 1100 };
    char root[40], box[64];
    fake_broker fb;
    cb_adapter_error err = {0};
    cb_adapter *a = connected(&fb, root, box, 12u << 20);
    static char reason[4001];
    memset(reason, 'r', sizeof reason - 1);
    cb_adapter_batch *b = cb_adapter_begin(a, &err);
    int added;
    assert_int_equal(add_until(b, 0, KEPT - 1, reason, &added), CB_ADAPTER_NEW);
    assert_int_equal(added, KEPT);
    assert_int_equal(cb_adapter_commit(&b, &err), CB_ADAPTER_OK);
    b = cb_adapter_begin(a, &err);
    assert_int_equal(add_until(b, KEPT, 10 * KEPT, reason, &added), CB_ADAPTER_FAILED);
    assert_int_equal(cb_adapter_commit(&b, &err), CB_ADAPTER_OUTBOX_FULL);

    static bool seen[KEPT];
    int distinct = 0;
    for (int round = 0; round < 500 && distinct < KEPT; round++) {
        cb_frame *f;
        while ((f = broker_recv_flags(&fb, ZMQ_DONTWAIT))) {
            if (f->kind_case == CAREBRIDGE__V1__FRAME__KIND_PUBLISH) {
                int i = atoi(f->publish->event->event_id + strlen("adapter-test-"));
                assert_true(i >= 0 && i < KEPT); /* nothing of the failed batch */
                distinct += !seen[i];
                seen[i] = true;
                broker_ack(&fb, f);
            }
            cb_frame_free(&f);
        }
        zmq_pollitem_t p = {NULL, cb_adapter_fd(a), ZMQ_POLLIN, 0};
        zmq_poll(&p, 1, 10);
        cb_adapter_step(a, &err);
    }
    assert_int_equal(distinct, KEPT);

    cb_adapter_close(&a);
    broker_close(&fb);
    assert_int_equal(cb_test_remove_tree(root), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_batch_that_failed_is_never_sent),
        cmocka_unit_test(test_a_failed_batch_passes_over_nothing_kept_before_it),
        cmocka_unit_test(test_what_the_broker_would_refuse_is_refused_before_it_is_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
