/* The client library's publish window (adapters/client.c): it bounds both the
 * number of publishes awaiting an answer and their packed bytes, so a sender
 * of large events cannot hold hundreds of megabytes for resending. A real
 * client with a real ZeroMQ socket; nothing listens on its endpoint, so every
 * publish stays unanswered, which is what a full window looks like. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "client.h"

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
    cb_client_opts o = {.endpoint = "tcp://127.0.0.1:9", .agency = "health", .window = window,
                        .window_bytes = window_bytes};
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_counts_publishes),
        cmocka_unit_test(test_window_bounds_bytes),
        cmocka_unit_test(test_one_large_publish_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
