/* MLLP framing (adapters/health/mllp.c): frames come out whole however the
 * bytes are split, noise between frames is skipped, an FS without its CR
 * still ends a frame, and a frame over the limit is refused with its head
 * while the next one is read as usual. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "mllp.h"

typedef struct {
    char msgs[8][256];
    cb_mllp_status status[8];
    size_t n;
} got;

static void feed_all(cb_mllp *m, const uint8_t *in, size_t len, got *g)
{
    while (len) {
        size_t used = 0, n = 0;
        const uint8_t *msg = NULL;
        cb_mllp_status s = cb_mllp_feed(m, in, len, &used, &msg, &n);
        assert_true(used <= len);
        if (s == CB_MLLP_MESSAGE || s == CB_MLLP_TOO_BIG) {
            assert_true(g->n < 8);
            size_t k = n < 255 ? n : 255;
            memcpy(g->msgs[g->n], msg, k);
            g->msgs[g->n][k] = 0;
            g->status[g->n++] = s;
        } else {
            assert_int_equal(s, CB_MLLP_MORE);
            assert_int_equal(used, len);
        }
        in += used, len -= used;
    }
}

static const uint8_t stream[] = "\r\n\x0bMSH|one\rPID|1\x1c\r\x0bMSH|two\x1c\r\n\x0bMSH|three\x1c\x0bMSH|four\x1c";

static void test_frames_come_out_whole_however_the_bytes_are_split(void **state)
{
    (void)state;
    size_t len = sizeof stream - 1;
    for (size_t step = 1; step <= len; step++) {
        cb_mllp *m = cb_mllp_new(1 << 20);
        got g = {0};
        for (size_t at = 0; at < len; at += step)
            feed_all(m, stream + at, at + step <= len ? step : len - at, &g);
        assert_int_equal(g.n, 4);
        assert_string_equal(g.msgs[0], "MSH|one\rPID|1");
        assert_string_equal(g.msgs[1], "MSH|two");
        assert_string_equal(g.msgs[2], "MSH|three"); /* its FS had no CR */
        assert_string_equal(g.msgs[3], "MSH|four");
        for (size_t i = 0; i < 4; i++)
            assert_int_equal(g.status[i], CB_MLLP_MESSAGE);
        assert_false(cb_mllp_in_frame(m));
        cb_mllp_free(&m);
        assert_null(m);
    }
}

static void test_a_frame_over_the_limit_is_refused_with_its_head(void **state)
{
    (void)state;
    cb_mllp *m = cb_mllp_new(2000);
    uint8_t big[6000];
    big[0] = CB_MLLP_START;
    memcpy(big + 1, "MSH|^~\\&|BIG", 12);
    memset(big + 13, 'x', sizeof big - 13 - 2);
    big[sizeof big - 2] = CB_MLLP_END;
    big[sizeof big - 1] = CB_MLLP_CR;
    got g = {0};
    for (size_t at = 0; at < sizeof big; at += 700)
        feed_all(m, big + at, at + 700 <= sizeof big ? 700 : sizeof big - at, &g);
    feed_all(m, (const uint8_t *)"\x0bMSH|next\x1c\r", 12, &g);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.status[0], CB_MLLP_TOO_BIG);
    assert_memory_equal(g.msgs[0], "MSH|^~\\&|BIG", 12);
    assert_int_equal(g.status[1], CB_MLLP_MESSAGE);
    assert_string_equal(g.msgs[1], "MSH|next");
    cb_mllp_free(&m);
}

static void test_a_frame_cut_short_is_seen(void **state)
{
    (void)state;
    cb_mllp *m = cb_mllp_new(100);
    got g = {0};
    feed_all(m, (const uint8_t *)"noise\x0bMSH|half", 14, &g);
    assert_int_equal(g.n, 0);
    assert_true(cb_mllp_in_frame(m));
    cb_mllp_free(&m);
}

static void test_wrap_frames_a_message(void **state)
{
    (void)state;
    uint8_t out[16];
    assert_int_equal(cb_mllp_wrap("MSH|x", 5, out, sizeof out), 8);
    assert_memory_equal(out, "\x0bMSH|x\x1c\r", 8);
    assert_int_equal(cb_mllp_wrap("MSH|x", 5, out, 7), 0);
    cb_mllp *m = cb_mllp_new(100);
    got g = {0};
    feed_all(m, out, 8, &g);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.msgs[0], "MSH|x");
    cb_mllp_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_come_out_whole_however_the_bytes_are_split),
        cmocka_unit_test(test_a_frame_over_the_limit_is_refused_with_its_head),
        cmocka_unit_test(test_a_frame_cut_short_is_seen),
        cmocka_unit_test(test_wrap_frames_a_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
