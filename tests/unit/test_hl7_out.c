/* Events addressed to health written as HL7 (adapters/health/hl7_out.c),
 * read back with the adapter's own parser: each body as its message type,
 * the patient's identifiers as PID-3 repetitions, text with the separators
 * in it escaped, and no message for what has no HL7 form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hl7.h"
#include "hl7_out.h"

static cb_hl7 *written(const char *json, const char **why)
{
    json_t *ev = json_loads(json, 0, NULL);
    assert_non_null(ev);
    char out[8192];
    size_t len = cb_hl7_of_event(ev, "CBD7", "20261202120000", out, sizeof out, why);
    json_decref(ev);
    if (!len)
        return NULL;
    assert_int_equal(strlen(out), len);
    cb_hl7_error err;
    cb_hl7 *m = cb_hl7_parse(out, len, &err);
    assert_non_null(m);
    return m;
}

static void expect(const cb_hl7 *m, const char *seg, unsigned field, unsigned rep, unsigned comp, const char *want)
{
    char buf[512];
    long i = cb_hl7_find(m, seg, 0);
    assert_true(i >= 0);
    assert_int_equal(cb_hl7_get(m, (cb_hl7_at){(size_t)i, field, rep, comp, 0}, buf, sizeof buf), CB_HL7_VALUE);
    assert_string_equal(buf, want);
}

static void test_a_referral_is_a_ref_i12_with_the_patient(void **state)
{
    (void)state;
    const char *why = NULL;
    cb_hl7 *m = written("{\"eventId\":\"sc-9\",\"fromAgency\":\"social-care\",\"occurredAt\":\"2026-12-01T09:30:00Z\","
                        "\"person\":{\"nhsNumber\":\"9434765919\",\"name\":\"Margaret Ann Jones\","
                        "\"birthDate\":\"1941-03-02\",\"localIds\":[{\"system\":\"lasc:mosaic\",\"value\":\"C-77\"}]},"
                        "\"referral\":{\"reason\":\"falls | dizziness ^ at night\",\"urgency\":\"URGENT\"}}",
                        &why);
    assert_non_null(m);
    expect(m, "MSH", 9, 1, 0, "REF^I12^REF_I12");
    expect(m, "MSH", 10, 1, 0, "CBD7");
    expect(m, "MSH", 12, 1, 0, "2.5.1");
    expect(m, "RF1", 2, 1, 0, "S"); /* urgent */
    expect(m, "RF1", 6, 1, 0, "sc-9");
    expect(m, "RF1", 9, 1, 0, "20261201093000+0000"); /* UTC said so: read as local, a UK summer is an hour out */
    /* REF_I12 needs a PRD before the PID: who referred, and to whom */
    assert_true(cb_hl7_find(m, "PRD", 0) >= 0 && cb_hl7_find(m, "PRD", 0) < cb_hl7_find(m, "PID", 0));
    expect(m, "PRD", 1, 1, 1, "RP");
    expect(m, "PRD", 2, 1, 1, "social-care");
    expect(m, "PID", 3, 1, 1, "9434765919");
    expect(m, "PID", 3, 1, 5, "NH");
    expect(m, "PID", 3, 2, 1, "C-77");
    expect(m, "PID", 3, 2, 4, "lasc:mosaic");
    expect(m, "PID", 5, 1, 1, "Jones");
    expect(m, "PID", 5, 1, 2, "Margaret Ann");
    expect(m, "PID", 7, 1, 0, "19410302");
    expect(m, "NTE", 3, 1, 0, "falls | dizziness ^ at night"); /* escaped as written, whole as read */
    cb_hl7_free(&m);
}

static void test_an_answer_is_an_rri_i12_with_its_status(void **state)
{
    (void)state;
    static const char *const cases[][2] = {{"ACCEPTED", "A"}, {"DECLINED", "R"}, {"ACKNOWLEDGED", "P"}};
    for (size_t i = 0; i < 3; i++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"eventId\":\"r-%zu\",\"correlationId\":\"hl7:RXH:referral:R1\",\"fromAgency\":\"social-care\","
                 "\"toAgencies\":[\"health\"],\"occurredAt\":\"2026-07-01T09:30:00.250+01:00\",\"person\":{"
                 "\"nhsNumber\":\"9434765919\"},\"response\":{\"status\":\"%s\",\"reason\":\"full\"}}",
                 i, cases[i][0]);
        const char *why = NULL;
        cb_hl7 *m = written(json, &why);
        assert_non_null(m);
        expect(m, "MSH", 9, 1, 0, "RRI^I12^RRI_I12");
        expect(m, "RF1", 1, 1, 0, cases[i][1]);
        expect(m, "RF1", 9, 1, 0, "20260701093000+0100");
        expect(m, "RF1", 6, 1, 0, "hl7:RXH:referral:R1"); /* the referral it answers */
        /* RRI_I12 too: the answerer is the one referred to, health the referrer */
        long prd = cb_hl7_find(m, "PRD", 0);
        assert_true(prd >= 0 && prd < cb_hl7_find(m, "PID", 0));
        char buf[64];
        assert_int_equal(cb_hl7_get(m, (cb_hl7_at){(size_t)prd, 1, 1, 1, 0}, buf, sizeof buf), CB_HL7_VALUE);
        assert_string_equal(buf, "RT");
        assert_int_equal(cb_hl7_get(m, (cb_hl7_at){(size_t)prd + 1, 1, 1, 1, 0}, buf, sizeof buf), CB_HL7_VALUE);
        assert_string_equal(buf, "RP");
        assert_int_equal(cb_hl7_get(m, (cb_hl7_at){(size_t)prd + 1, 2, 1, 1, 0}, buf, sizeof buf), CB_HL7_VALUE);
        assert_string_equal(buf, "health");
        cb_hl7_free(&m);
    }
}

static void test_a_discharge_has_no_hl7_form_and_says_so(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_null(written("{\"eventId\":\"d-1\",\"person\":{},\"discharge\":{\"plannedDate\":\"2026-12-03\"}}", &why));
    assert_non_null(why);
    assert_non_null(strstr(why, "discharge"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_referral_is_a_ref_i12_with_the_patient),
        cmocka_unit_test(test_an_answer_is_an_rri_i12_with_its_status),
        cmocka_unit_test(test_a_discharge_has_no_hl7_form_and_says_so),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
