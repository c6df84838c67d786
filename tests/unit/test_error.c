/* The error table: every wire code has a name and a message, and names round-trip. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "cb_error.h"

static void every_wire_code_has_a_message(void **state)
{
    (void)state;
    const ProtobufCEnumDescriptor *d = &carebridge__v1__error_code__descriptor;
    for (unsigned i = 0; i < d->n_values; i++) {
        cb_code code = (cb_code)d->values[i].value;
        if (code == CB_OK)
            continue;
        const char *msg = cb_code_message(code);
        if (!msg)
            fail_msg("%s has no message in CB_CODES", d->values[i].name);
        assert_true(strlen(msg) > 10);
    }
}

static void names_round_trip(void **state)
{
    (void)state;
    assert_string_equal(cb_code_name(CB_STORE_FULL), "STORE_FULL");
    assert_int_equal(cb_code_from_name("DUPLICATE_ID"), CB_DUPLICATE_ID);
    assert_int_equal(cb_code_from_name("NOT_A_CODE"), CB_OK);
    assert_string_equal(cb_code_name((cb_code)999), "UNKNOWN");
}

static void fail_formats_the_reason(void **state)
{
    (void)state;
    cb_error err = {0};
    assert_int_equal(cb_fail(&err, CB_MISSING_FIELD, "%s is missing", "occurredAt"), CB_MISSING_FIELD);
    assert_int_equal(err.code, CB_MISSING_FIELD);
    assert_string_equal(err.reason, "occurredAt is missing");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_wire_code_has_a_message),
        cmocka_unit_test(names_round_trip),
        cmocka_unit_test(fail_formats_the_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
