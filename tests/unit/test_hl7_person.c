/* The patient and the times of an HL7 v2 message (adapters/health/
 * hl7_person.c), as UK systems write them. Numbers are from the synthetic
 * ranges (NHS 999..., CHI of impossible people), never a real person's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hl7_person.h"

static cb_hl7 *m_of(const char *pid)
{
    char text[1024];
    snprintf(text, sizeof text, "MSH|^~\\&|PAS|RXH|CB|X|20261202||ADT^A03|1|P|2.4\r%s\r", pid);
    cb_hl7_error err;
    cb_hl7 *m = cb_hl7_parse(text, strlen(text), &err);
    assert_non_null(m);
    return m;
}

static cb_hl7_person person(const char *pid)
{
    cb_hl7 *m = m_of(pid);
    cb_hl7_person p;
    cb_hl7_person_of(m, (size_t)cb_hl7_find(m, "PID", 0), &p);
    cb_hl7_free(&m);
    return p;
}

static void test_the_nhs_number_is_in_whichever_repetition_carries_it(void **state)
{
    (void)state;
    cb_hl7_person p = person("PID|1||M123^^^RXH^MR~9999999484^^^NHS^NH||TEST^ANNE^MAY||19400101|F");
    assert_string_equal(p.nhs, "9999999484");
    assert_string_equal(p.chi, "");
    assert_int_equal(p.n_local, 1);
    assert_string_equal(p.local[0].system, "RXH:MR");
    assert_string_equal(p.local[0].value, "M123");
    assert_string_equal(p.name, "ANNE MAY TEST");
    assert_string_equal(p.birth_date, "1940-01-01");
    /* By type alone, by authority alone, by the OID, with spaces. */
    assert_string_equal(person("PID|1||999 999 9484^^^^NH").nhs, "9999999484");
    assert_string_equal(person("PID|1||9999999484^^^NHS").nhs, "9999999484");
    assert_string_equal(person("PID|1||9999999484^^^2.16.840.1.113883.2.1.4.1^NH").nhs, "9999999484");
    assert_string_equal(person("PID|1||9999999484^^^&2.16.840.1.113883.2.1.4.1&ISO^NH").nhs, "9999999484");
    assert_string_equal(person("PID|1||999-999-9484^^^NHSNBR").nhs, "9999999484");
}

/* v2.3 and v2.4 senders in the UK often put the NHS number in PID-2. */
static void test_pid_2_when_pid_3_has_no_national_number(void **state)
{
    (void)state;
    cb_hl7_person p = person("PID|1|9999999484^^^NHS^NH|M123^^^RXH^MR");
    assert_string_equal(p.nhs, "9999999484");
    assert_int_equal(p.n_local, 1);
    p = person("PID|1|M999^^^OLD|9999999484^^^NHS^NH"); /* PID-3's wins; PID-2 is not read */
    assert_string_equal(p.nhs, "9999999484");
    assert_int_equal(p.n_local, 0);
}

/* Type NH covers CHI numbers too: told by authority or by range. */
static void test_a_chi_number_is_told_from_an_nhs_number(void **state)
{
    (void)state;
    cb_hl7_person p = person("PID|1||0101999990^^^^NH");
    assert_string_equal(p.chi, "0101999990");
    assert_string_equal(p.nhs, "");
    assert_string_equal(person("PID|1||4101999990^^^CHI^NH").chi, "4101999990");
    assert_string_equal(person("PID|1||4101999990^^^^NH").nhs, "4101999990");
    assert_string_equal(person("PID|1||3201999990^^^^NH").nhs, "3201999990"); /* Northern Ireland's range */
    assert_string_equal(person("PID|1||0113999990^^^^NH").nhs, "0113999990"); /* no month 13: not CHI */
}

static void test_what_is_not_a_national_number_is_a_local_id(void **state)
{
    (void)state;
    cb_hl7_person p = person("PID|1||12345^^^^NH~ABC^^^^PI~\"\"^^^NHS^NH");
    assert_string_equal(p.nhs, "");
    assert_int_equal(p.n_local, 2);
    assert_string_equal(p.local[0].system, "RXH:NH"); /* the sending facility when no authority */
    assert_string_equal(p.local[1].system, "RXH:PI");
    cb_hl7 *m = m_of("PID|1||||NOBODY");
    cb_hl7_person none;
    assert_false(cb_hl7_person_of(m, 1, &none));
    cb_hl7_free(&m);
    assert_string_equal(person("PID|1||x^^^^PI||||2026131").birth_date, "");
}

static void test_times_at_every_precision(void **state)
{
    (void)state;
    setenv("TZ", "Europe/London", 1);
    tzset();
    int64_t ms;
    assert_true(cb_hl7_time_ms("20261202101112+0000", &ms));
    assert_int_equal(ms, 1796206272000LL);
    assert_true(cb_hl7_time_ms("20261202101112", &ms)); /* winter in London: UTC */
    assert_int_equal(ms, 1796206272000LL);
    assert_true(cb_hl7_time_ms("20260701120000", &ms)); /* summer: an hour ahead */
    assert_true(cb_hl7_time_ms("20260701110000+0000", &ms) && 1);
    int64_t utc = ms;
    assert_true(cb_hl7_time_ms("20260701120000", &ms));
    assert_int_equal(ms, utc);
    assert_true(cb_hl7_time_ms("20261202101112.1234+0100", &ms));
    assert_int_equal(ms, 1796206272000LL - 3600000 + 123);
    assert_true(cb_hl7_time_ms("20261202101112-0500", &ms));
    assert_int_equal(ms, 1796206272000LL + 5 * 3600000);
    assert_true(cb_hl7_time_ms("202612021011+0000", &ms));
    assert_int_equal(ms, 1796206260000LL);
    assert_true(cb_hl7_time_ms("20261202", &ms));
    assert_true(cb_hl7_time_ms("2026", &ms));
    assert_true(cb_hl7_time_ms("20240229", &ms));
    const char *bad[] = {"",
                         "2026-12-02",
                         "20261302",
                         "20261232",
                         "20250229",
                         "2026120",
                         "20261202101160",
                         "202612021011.5",
                         "20261202101112+01",
                         "20261202101112 ",
                         "20261202101112.",
                         "abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(cb_hl7_time_ms(bad[i], &ms));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_nhs_number_is_in_whichever_repetition_carries_it),
        cmocka_unit_test(test_pid_2_when_pid_3_has_no_national_number),
        cmocka_unit_test(test_a_chi_number_is_told_from_an_nhs_number),
        cmocka_unit_test(test_what_is_not_a_national_number_is_a_local_id),
        cmocka_unit_test(test_times_at_every_precision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
