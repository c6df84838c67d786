/* Keys of typed parts (broker/keys.c): byte order is part order, a key's
 * leading parts are a prefix of it, and nothing is truncated. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "keys.h"
#include "store.h"

static int cmp_keys(const cb_key *a, const cb_key *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->b, b->b, n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static void test_bytes_are_the_parts_big_endian(void **state)
{
    (void)state;
    cb_key k;
    assert_true(cb_key_make(&k, "SQLB", "housing", (uint64_t)0x0102030405060708ULL, (uint32_t)0x0A0B0C0D, 0xEEu));
    const uint8_t want[] = {'h', 'o', 'u', 's', 'i', 'n', 'g', 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x0A, 0x0B, 0x0C, 0x0D, 0xEE};
    assert_int_equal(k.len, sizeof want);
    assert_memory_equal(k.b, want, sizeof want);
}

/* Keys sort as their parts: by the first string (a shorter one first, never
 * mixed with a longer one sharing its bytes), then by the number. */
static void test_order_is_part_order(void **state)
{
    (void)state;
    cb_key a, b, c, d;
    assert_true(cb_key_make(&a, "SQ", "nhs:1", (uint64_t)2));
    assert_true(cb_key_make(&b, "SQ", "nhs:1", (uint64_t)256));
    assert_true(cb_key_make(&c, "SQ", "nhs:12", (uint64_t)0));
    assert_true(cb_key_make(&d, "SQ", "nhs:2", (uint64_t)0));
    assert_true(cmp_keys(&a, &b) < 0);
    assert_true(cmp_keys(&b, &c) < 0);
    assert_true(cmp_keys(&c, &d) < 0);
    cb_key prefix;
    assert_true(cb_key_make(&prefix, "S", "nhs:1"));
    assert_true(cb_key_has_prefix(a.b, a.len, &prefix));
    assert_true(cb_key_has_prefix(b.b, b.len, &prefix));
    assert_false(cb_key_has_prefix(c.b, c.len, &prefix)); /* "nhs:12" is another person */
}

static void test_parse_reads_back_and_checks_the_shape(void **state)
{
    (void)state;
    cb_key k;
    assert_true(cb_key_make(&k, "SSQ", "social-care", "case 7", (uint64_t)42));
    const char *agency, *ref;
    uint64_t seq;
    assert_true(cb_key_parse(k.b, k.len, "SSQ", &agency, &ref, &seq));
    assert_string_equal(agency, "social-care");
    assert_string_equal(ref, "case 7");
    assert_int_equal(seq, 42);
    assert_false(cb_key_parse(k.b, k.len, "SQ", &agency, &seq));            /* a string where a number is */
    assert_false(cb_key_parse(k.b, k.len - 1, "SSQ", &agency, &ref, &seq)); /* a number cut short */
    assert_false(cb_key_parse(k.b, k.len, "SS", &agency, &ref));            /* bytes left over */
}

static void test_what_does_not_fit_is_not_made(void **state)
{
    (void)state;
    char longest[CB_KEY_MAX + 2];
    memset(longest, 'x', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    cb_key k;
    assert_false(cb_key_make(&k, "SQ", longest, (uint64_t)1)); /* one byte over CB_KEY_MAX */
    assert_int_equal(k.len, 0);
    longest[CB_KEY_MAX] = '\0';
    assert_true(cb_key_make(&k, "SQ", longest, (uint64_t)1));
    assert_false(cb_key_make(&k, "SS", longest, longest)); /* two of them pass LMDB's 511 */
    assert_false(cb_key_make(&k, "X", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_are_the_parts_big_endian),
        cmocka_unit_test(test_order_is_part_order),
        cmocka_unit_test(test_parse_reads_back_and_checks_the_shape),
        cmocka_unit_test(test_what_does_not_fit_is_not_made),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
