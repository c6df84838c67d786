/* HL7 ACKs (adapters/health/hl7_ack.c): in the version and separators of
 * the message answered, sides swapped, MSA echoing its control id, and ERR
 * segments as each version writes them, read back with the reader. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "hl7_ack.h"

static cb_hl7 *parse_ok(const char *text)
{
    cb_hl7_error err = {0};
    cb_hl7 *m = cb_hl7_parse(text, strlen(text), &err);
    if (!m)
        fail_msg("parse failed: %d %s", err.code, err.text);
    return m;
}

static void assert_at(const cb_hl7 *m, const char *seg, unsigned field, unsigned comp, unsigned sub, const char *want)
{
    char buf[256];
    long i = cb_hl7_find(m, seg, 0);
    assert_true(i >= 0);
    cb_hl7_kind k = cb_hl7_get(m, (cb_hl7_at){(size_t)i, field, 1, comp, sub}, buf, sizeof buf);
    if (!want[0]) {
        assert_int_equal(k, CB_HL7_ABSENT);
        return;
    }
    assert_int_equal(k, CB_HL7_VALUE);
    assert_string_equal(buf, want);
}

static void test_an_accept_swaps_the_sides_and_echoes_the_control_id(void **state)
{
    (void)state;
    cb_hl7 *m = parse_ok("MSH|^~\\&|PAS|RXH|CB|COUNCIL|20261202101112||ADT^A03^ADT_A03|MSG-7|P|2.4\rEVN|A03\r");
    char out[1024];
    size_t n = cb_hl7_ack(m, "AA", "CB000001", "20261202101113", NULL, 0, out, sizeof out);
    assert_true(n > 0);
    assert_int_equal(n, strlen(out));
    assert_string_equal(out, "MSH|^~\\&|CB|COUNCIL|PAS|RXH|20261202101113||ACK^A03^ACK|CB000001|P|2.4\rMSA|AA|MSG-7\r");
    cb_hl7 *ack = parse_ok(out);
    assert_at(ack, "MSA", 2, 0, 0, "MSG-7");
    cb_hl7_free(&ack);
    cb_hl7_free(&m);
}

/* A field longer than the standard allows is not echoed, so the answer
 * always fits: before, a 5,000-byte MSH-10 left no room and no ACK went out. */
static void test_an_answer_fits_whatever_the_message_holds(void **state)
{
    (void)state;
    static char text[6000];
    int n = snprintf(text, sizeof text, "MSH|^~\\&|PAS|RXH|CB|COUNCIL|20261202101112||ADT^A03|");
    memset(text + n, 'X', 5000);
    snprintf(text + n + 5000, sizeof text - (size_t)n - 5000, "|P|2.4\rEVN|A03\r");
    cb_hl7 *m = parse_ok(text);
    char out[1024];
    assert_true(cb_hl7_ack(m, "AE", "CB000002", "20261202101113", NULL, 0, out, sizeof out) > 0);
    cb_hl7 *ack = parse_ok(out);
    assert_at(ack, "MSA", 1, 0, 0, "AE");
    assert_at(ack, "MSA", 2, 0, 0, ""); /* the control id, too long to echo */
    cb_hl7_free(&ack);
    cb_hl7_free(&m);
}

/* Before v2.5 an error is ERR-1 (location and code, the code's parts in
 * subcomponents); from v2.5 ERR-2 location, ERR-3 code, ERR-4 severity and
 * ERR-8 the text a user reads. */
static void test_errors_as_each_version_writes_them(void **state)
{
    (void)state;
    cb_hl7_issue issues[] = {
        {CB_HL7_REQUIRED_MISSING, 'E', "PID", 1, 3, "PID-3 has no NHS number | or any id"},
        {CB_HL7_UNSUPPORTED_EVENT, 'E', "", 0, 0, "ADT^A08 is not mapped"},
    };
    char out[2048];
    cb_hl7 *old = parse_ok("MSH|^~\\&|PAS|RXH|CB|COUNCIL|20261202||ADT^A08|M1|P|2.3.1\r");
    assert_true(cb_hl7_ack(old, "AE", "C1", "20261202", issues, 2, out, sizeof out) > 0);
    cb_hl7 *ack = parse_ok(out);
    assert_at(ack, "MSA", 1, 0, 0, "AE");
    assert_at(ack, "MSA", 3, 0, 0, "PID-3 has no NHS number | or any id; ADT^A08 is not mapped");
    assert_at(ack, "ERR", 1, 1, 0, "PID");
    assert_at(ack, "ERR", 1, 2, 0, "1");
    assert_at(ack, "ERR", 1, 3, 0, "3");
    assert_at(ack, "ERR", 1, 4, 1, "101");
    assert_at(ack, "ERR", 1, 4, 2, "Required field missing");
    assert_at(ack, "ERR", 1, 4, 3, "HL70357");
    long second = cb_hl7_find(ack, "ERR", (size_t)cb_hl7_find(ack, "ERR", 0) + 1);
    assert_true(second > 0);
    char buf[64];
    assert_int_equal(cb_hl7_get(ack, (cb_hl7_at){(size_t)second, 1, 1, 4, 1}, buf, sizeof buf), CB_HL7_VALUE);
    assert_string_equal(buf, "201");
    cb_hl7_free(&ack);
    cb_hl7_free(&old);

    cb_hl7 *new = parse_ok("MSH|^~\\&|PAS|RXH|CB|COUNCIL|20261202||ADT^A08|M1|P|2.5.1\r");
    assert_true(cb_hl7_ack(new, "AE", "C1", "20261202", issues, 2, out, sizeof out) > 0);
    ack = parse_ok(out);
    assert_at(ack, "ERR", 1, 0, 0, "");
    assert_at(ack, "ERR", 2, 1, 0, "PID");
    assert_at(ack, "ERR", 2, 3, 0, "3");
    assert_at(ack, "ERR", 3, 1, 0, "101");
    assert_at(ack, "ERR", 3, 3, 0, "HL70357");
    assert_at(ack, "ERR", 4, 0, 0, "E");
    assert_at(ack, "ERR", 8, 0, 0, "PID-3 has no NHS number | or any id"); /* escaped, and read back */
    assert_at(ack, "MSH", 12, 0, 0, "2.5.1");
    cb_hl7_free(&ack);
    cb_hl7_free(&new);
}

/* A flag goes back as a warning beside the accept. */
static void test_a_warning_beside_an_accept(void **state)
{
    (void)state;
    cb_hl7 *m = parse_ok("MSH|^~\\&|PAS|RXH|CB|COUNCIL|20261202||ADT^A03|M1|P|2.5\r");
    cb_hl7_issue flag = {0, 'W', "", 0, 0, "MISSING_INFORMATION: discharge.destination"};
    char out[1024];
    assert_true(cb_hl7_ack(m, "AA", "C1", "20261202", &flag, 1, out, sizeof out) > 0);
    cb_hl7 *ack = parse_ok(out);
    assert_at(ack, "MSA", 1, 0, 0, "AA");
    assert_at(ack, "ERR", 3, 1, 0, "0");
    assert_at(ack, "ERR", 4, 0, 0, "W");
    assert_at(ack, "ERR", 8, 0, 0, "MISSING_INFORMATION: discharge.destination");
    cb_hl7_free(&ack);
    cb_hl7_free(&m);
}

static void test_the_senders_separators_are_answered_in(void **state)
{
    (void)state;
    cb_hl7 *m = parse_ok("MSH#$*@!#PAS#RXH#CB#X#20261202##ADT$A01#9#T#2.5\r");
    cb_hl7_issue is = {CB_HL7_DATA_TYPE, 'E', "PID", 1, 7, "a # and a $ in text"};
    char out[1024];
    assert_true(cb_hl7_ack(m, "AE", "C1", "20261202", &is, 1, out, sizeof out) > 0);
    assert_memory_equal(out, "MSH#$*@!#CB#X#PAS#RXH#20261202##ACK$A01$ACK#C1#T#2.5\r", 52);
    cb_hl7 *ack = parse_ok(out);
    assert_at(ack, "ERR", 8, 0, 0, "a # and a $ in text");
    cb_hl7_free(&ack);
    cb_hl7_free(&m);
}

/* A message that could not be read at all still gets an answer. */
static void test_an_unreadable_message_is_answered_in_the_standards_terms(void **state)
{
    (void)state;
    cb_hl7_issue is = {CB_HL7_SEGMENT_SEQUENCE, 'E', "MSH", 1, 0, "the message does not begin with an MSH segment"};
    char out[1024];
    assert_true(cb_hl7_ack(NULL, "AR", "C1", "20261202", &is, 1, out, sizeof out) > 0);
    cb_hl7 *ack = parse_ok(out);
    assert_at(ack, "MSH", 9, 1, 0, "ACK");
    assert_at(ack, "MSH", 12, 0, 0, "2.5");
    assert_at(ack, "MSA", 1, 0, 0, "AR");
    assert_at(ack, "MSA", 2, 0, 0, "");
    assert_at(ack, "ERR", 3, 1, 0, "100");
    cb_hl7_free(&ack);
    assert_int_equal(cb_hl7_ack(NULL, "AR", "C1", "20261202", &is, 1, out, 40), 0);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_accept_swaps_the_sides_and_echoes_the_control_id),
        cmocka_unit_test(test_an_answer_fits_whatever_the_message_holds),
        cmocka_unit_test(test_errors_as_each_version_writes_them),
        cmocka_unit_test(test_a_warning_beside_an_accept),
        cmocka_unit_test(test_the_senders_separators_are_answered_in),
        cmocka_unit_test(test_an_unreadable_message_is_answered_in_the_standards_terms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
