/* The client library (adapters/client.c) with real ZeroMQ sockets.
 *
 * Its publish window bounds both the number of publishes awaiting an answer
 * and their packed bytes, so a sender of large events cannot hold hundreds of
 * megabytes for resending; nothing listens on those tests' endpoint, so every
 * publish stays unanswered, which is what a full window looks like.
 *
 * Its wait (run) sleeps on the socket's fd, which only signals a change: a
 * ROUTER on loopback answers the hello, and run must return with the answer
 * rather than sleep out its timeout. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include <cmocka.h>

#include "client.h"
#include "fixtures.h"

static size_t publish_until_full(cb_client *c, size_t reason_bytes)
{
    static char reason[8192];
    memset(reason, 'x', reason_bytes);
    reason[reason_bytes] = '\0';
    Carebridge__V1__Referral ref = CAREBRIDGE__V1__REFERRAL__INIT;
    ref.reason = reason;
    cb_envelope ev = CAREBRIDGE__V1__ENVELOPE__INIT;
    ev.event_id = "ev-window";
    ev.from_agency = "health";
    ev.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL;
    ev.referral = &ref;
    size_t n = 0;
    while (n < 1000 && cb_client_publish(c, &ev, NULL))
        n++;
    assert_false(cb_client_has_room(c));
    assert_int_equal(cb_client_unanswered(c), n);
    return n;
}

static cb_client *client(uint32_t window, size_t window_bytes)
{
    cb_client_opts o = {
        .endpoint = "tcp://127.0.0.1:9", .agency = "health", .window = window, .window_bytes = window_bytes};
    cb_error err = {0};
    cb_client *c = cb_client_new(&o, NULL, NULL, &err);
    assert_non_null(c);
    return c;
}

static void test_window_counts_publishes(void **state)
{
    (void)state;
    cb_client *c = client(3, 1 << 20);
    assert_int_equal(publish_until_full(c, 100), 3);
    cb_client_destroy(&c);
}

/* Each publish packs to a little over 1,000 bytes: the fourth takes the
 * window past 4,000 bytes, and then there is no room. */
static void test_window_bounds_bytes(void **state)
{
    (void)state;
    cb_client *c = client(100, 4000);
    assert_int_equal(publish_until_full(c, 1000), 4);
    cb_client_destroy(&c);
}

/* One publish larger than the whole byte bound still goes: an event is never
 * too big for the window, only for the broker's size limit. */
static void test_one_large_publish_fits(void **state)
{
    (void)state;
    cb_client *c = client(100, 1000);
    assert_int_equal(publish_until_full(c, 5000), 1);
    cb_client_destroy(&c);
}

/* Receive the client's next frame at the ROUTER; the identity goes in id. */
static cb_frame *router_recv(void *router, zmq_msg_t *id)
{
    zmq_msg_t body;
    zmq_msg_init(&body);
    assert_true(zmq_msg_recv(id, router, 0) >= 0);
    assert_true(zmq_msg_recv(&body, router, 0) >= 0);
    cb_frame *f = cb_frame_decode(zmq_msg_data(&body), zmq_msg_size(&body), SIZE_MAX, NULL);
    zmq_msg_close(&body);
    assert_non_null(f);
    return f;
}

/* Send f to the client whose identity is id (the send empties id). */
static void router_send(void *router, zmq_msg_t *id, const cb_frame *f)
{
    uint8_t *buf = NULL;
    size_t len = cb_pack(&f->base, &buf);
    assert_non_null(buf);
    assert_true(zmq_msg_send(id, router, ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(router, buf, len, 0) >= 0);
    free(buf);
}

static void router_send_welcome(void *router, zmq_msg_t *id)
{
    Carebridge__V1__Welcome w = CAREBRIDGE__V1__WELCOME__INIT;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_WELCOME;
    f.welcome = &w;
    router_send(router, id, &f);
}

typedef struct {
    void *router;
    zmq_msg_t *id;
} later_send;

/* The ROUTER's thread for a moment (a socket may move between threads; the
 * join is the barrier back). */
static void *send_later(void *arg)
{
    later_send *ls = arg;
    struct timespec pause = {0, 200 * 1000000L};
    nanosleep(&pause, NULL);
    router_send_welcome(ls->router, ls->id);
    return NULL;
}

/* Both ways a message can reach a waiting client: arriving during the wait,
 * and already queued when the wait begins (the fd has nothing new to say
 * then). Each wait is given 10 s and must end with the message, well
 * before its timeout: a wait that slept through a queued message would
 * still find it afterwards, so only the time tells. */
#define WAIT_US (10 * 1000000LL)
static void test_run_returns_with_an_answer(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_bind(router, "tcp://127.0.0.1:*"), 0);
    char endpoint[64];
    size_t n = sizeof endpoint;
    assert_int_equal(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &n), 0);

    cb_client_opts o = {.endpoint = endpoint, .agency = "health", .heartbeat_ms = 120000};
    cb_error err = {0};
    cb_client *c = cb_client_new(&o, NULL, NULL, &err);
    assert_non_null(c);
    zmq_msg_t id;
    zmq_msg_init(&id);
    cb_frame *hello = router_recv(router, &id);
    assert_int_equal(hello->kind_case, CAREBRIDGE__V1__FRAME__KIND_HELLO);
    cb_frame_free(&hello);

    /* Queued before the wait: the client has read nothing since its hello. */
    zmq_msg_t id_copy;
    zmq_msg_init(&id_copy);
    zmq_msg_copy(&id_copy, &id);
    router_send_welcome(router, &id_copy);
    struct timespec settle = {0, 200 * 1000000L};
    nanosleep(&settle, NULL);
    int64_t t0 = cb_client_now_ms();
    assert_true(cb_client_run_us(c, WAIT_US) > 0);
    assert_true(cb_client_welcomed(c));
    assert_true(cb_client_now_ms() - t0 < WAIT_US / 2000); /* ended by the message, not the timeout */

    /* Arriving during the wait: another thread sends it a moment later. */
    zmq_msg_init(&id_copy); /* the send above emptied it */
    zmq_msg_copy(&id_copy, &id);
    later_send ls = {.router = router, .id = &id_copy};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_later, &ls), 0);
    t0 = cb_client_now_ms();
    int handled = cb_client_run_us(c, WAIT_US);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(handled > 0);
    assert_true(cb_client_now_ms() - t0 < WAIT_US / 2000);

    zmq_msg_close(&id);
    zmq_msg_close(&id_copy);
    cb_client_destroy(&c);
    zmq_close(router);
    zmq_ctx_term(ctx);
}

static void count_answer(void *arg, void *tag, const Carebridge__V1__Ack *ack, const Carebridge__V1__Nack *nack)
{
    (void)nack;
    uintptr_t *answered = arg;
    assert_non_null(ack);
    answered[(uintptr_t)tag]++;
}

static void router_send_acks(void *router, zmq_msg_t *id, const uint64_t *refs, size_t n)
{
    Carebridge__V1__Ack acks[4], *ptrs[4];
    for (size_t i = 0; i < n; i++) {
        carebridge__v1__ack__init(&acks[i]);
        acks[i].ref = refs[i];
        acks[i].event_id = "ev-withdraw";
        ptrs[i] = &acks[i];
    }
    Carebridge__V1__Acks a = CAREBRIDGE__V1__ACKS__INIT;
    a.acks = ptrs;
    a.n_acks = n;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_ACKS;
    f.acks = &a;
    router_send(router, id, &f);
}

/* A publish withdrawn (its batch did not reach the outbox's disk) is not
 * sent again when its resend falls due, and its answer is not handed on:
 * its outbox seq goes to another event next. The other publish is. */
static void test_a_withdrawn_publish_is_neither_resent_nor_answered(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0, timeout = 2000;
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(router, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    assert_int_equal(zmq_bind(router, "tcp://127.0.0.1:*"), 0);
    char endpoint[64];
    size_t n = sizeof endpoint;
    assert_int_equal(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &n), 0);

    uintptr_t answered[3] = {0};
    cb_client_opts o = {.endpoint = endpoint, .agency = "health", .heartbeat_ms = 120000, .resend_ms = 100};
    cb_client_handlers h = {.answered = count_answer};
    cb_error err = {0};
    cb_client *c = cb_client_new(&o, &h, answered, &err);
    assert_non_null(c);
    zmq_msg_t id, id_copy;
    zmq_msg_init(&id);
    cb_frame *f = router_recv(router, &id);
    assert_int_equal(f->kind_case, CAREBRIDGE__V1__FRAME__KIND_HELLO);
    cb_frame_free(&f);
    zmq_msg_init(&id_copy);
    zmq_msg_copy(&id_copy, &id);
    router_send_welcome(router, &id_copy);
    for (int i = 0; i < 100 && !cb_client_welcomed(c); i++)
        cb_client_run(c, 50);
    assert_true(cb_client_welcomed(c));

    cb_test_event e;
    cb_test_referral(&e, "ev-withdraw", "a reason");
    assert_true(cb_client_publish(c, &e.ev, (void *)1));
    assert_true(cb_client_publish(c, &e.ev, (void *)2));
    uint64_t refs[2];
    for (int i = 0; i < 2; i++) {
        zmq_msg_t who;
        zmq_msg_init(&who);
        f = router_recv(router, &who);
        assert_int_equal(f->kind_case, CAREBRIDGE__V1__FRAME__KIND_PUBLISH);
        refs[i] = f->ref;
        cb_frame_free(&f);
        zmq_msg_close(&who);
    }
    assert_true(cb_client_withdraw(c, (void *)1));
    assert_false(cb_client_withdraw(c, (void *)1));
    assert_int_equal(cb_client_unanswered(c), 1);

    /* Past the resend interval: only the second comes again. */
    struct timespec pause = {0, 250 * 1000000L};
    nanosleep(&pause, NULL);
    cb_client_run(c, 0);
    zmq_msg_t who;
    zmq_msg_init(&who);
    f = router_recv(router, &who);
    assert_int_equal(f->kind_case, CAREBRIDGE__V1__FRAME__KIND_PUBLISH);
    assert_true(f->ref == refs[1]);
    cb_frame_free(&f);
    zmq_msg_close(&who);

    zmq_msg_init(&id_copy);
    zmq_msg_copy(&id_copy, &id);
    router_send_acks(router, &id_copy, refs, 2);
    for (int i = 0; i < 100 && cb_client_unanswered(c); i++)
        cb_client_run(c, 50);
    cb_client_run(c, 100); /* the first's answer, had it been handed on, is in by now */
    assert_int_equal(answered[1], 0);
    assert_int_equal(answered[2], 1);
    assert_int_equal(cb_client_unanswered(c), 0);

    zmq_msg_close(&id);
    zmq_msg_close(&id_copy);
    cb_client_destroy(&c);
    zmq_close(router);
    zmq_ctx_term(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_counts_publishes),
        cmocka_unit_test(test_window_bounds_bytes),
        cmocka_unit_test(test_one_large_publish_fits),
        cmocka_unit_test(test_run_returns_with_an_answer),
        cmocka_unit_test(test_a_withdrawn_publish_is_neither_resent_nor_answered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
