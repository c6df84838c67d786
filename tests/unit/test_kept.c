/* The kept records (broker/flags/kept.c): one not used lately makes way, whatever the hashes (people that share a
 * bucket included), and every record it lets go is freed (ASan's leak check sees the rest). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "kept.h"

static Carebridge__V1__PersonRecord *record(uint64_t hash)
{
    Carebridge__V1__PersonRecord *r = malloc(sizeof *r);
    assert_non_null(r);
    carebridge__v1__person_record__init(r);
    r->person_hash = hash;
    return r;
}

static void test_one_not_used_lately_makes_way(void **state)
{
    (void)state;
    cb_kept *k = cb_kept_new(3);
    assert_non_null(k);
    for (uint64_t h = 1; h <= 3; h++)
        cb_kept_put(k, h, record(h));
    assert_non_null(cb_kept_get(k, 1)); /* used: the hand spares it, and 2 goes */
    cb_kept_put(k, 4, record(4));
    assert_null(cb_kept_get(k, 2));
    assert_int_equal(cb_kept_get(k, 1)->person_hash, 1);
    assert_int_equal(cb_kept_get(k, 3)->person_hash, 3);
    assert_int_equal(cb_kept_get(k, 4)->person_hash, 4);
    cb_kept_free(&k);
    assert_null(k);
}

/* A cycle of people that fits is always found: the case a set-associative
 * table lost whenever more people met in one set than it had ways. */
static void test_a_cycle_that_fits_always_hits(void **state)
{
    (void)state;
    enum { CAP = 1024, PEOPLE = 1000 };
    cb_kept *k = cb_kept_new(CAP);
    /* Hashes that all share their low bits, so share one bucket. */
    for (uint64_t p = 1; p <= PEOPLE; p++)
        cb_kept_put(k, p << 20, record(p << 20));
    for (int round = 0; round < 3; round++)
        for (uint64_t p = 1; p <= PEOPLE; p++) {
            Carebridge__V1__PersonRecord *r = cb_kept_get(k, p << 20);
            assert_non_null(r);
            assert_int_equal(r->person_hash, p << 20);
        }
    cb_kept_free(&k);
}

static void test_put_replaces_and_drop_forgets(void **state)
{
    (void)state;
    cb_kept *k = cb_kept_new(4);
    cb_kept_put(k, 7, record(7));
    Carebridge__V1__PersonRecord *newer = record(7);
    newer->accepted_ms = 5;
    cb_kept_put(k, 7, newer); /* frees the first */
    assert_ptr_equal(cb_kept_get(k, 7), newer);
    cb_kept_put(k, 7, newer); /* the same record again: kept, not freed */
    assert_ptr_equal(cb_kept_get(k, 7), newer);
    cb_kept_drop(k, 7);
    assert_null(cb_kept_get(k, 7));
    cb_kept_drop(k, 7); /* not there: nothing happens */
    /* A dropped place is used again, and filling past it still evicts in order. */
    for (uint64_t h = 10; h < 16; h++)
        cb_kept_put(k, h, record(h));
    for (uint64_t h = 10; h < 12; h++)
        assert_null(cb_kept_get(k, h));
    for (uint64_t h = 12; h < 16; h++)
        assert_non_null(cb_kept_get(k, h));
    cb_kept_clear(k);
    assert_null(cb_kept_get(k, 12));
    cb_kept_put(k, 20, record(20));
    assert_non_null(cb_kept_get(k, 20));
    cb_kept_free(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_not_used_lately_makes_way),
        cmocka_unit_test(test_a_cycle_that_fits_always_hits),
        cmocka_unit_test(test_put_replaces_and_drop_forgets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
