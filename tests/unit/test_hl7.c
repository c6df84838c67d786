/* The HL7 v2 reader (adapters/health/hl7.c) on messages as hospital systems
 * send them: every segment terminator, a byte-order mark, separators of the
 * sender's choosing, escapes, repetitions, the "" null and Z-segments; and a
 * clear error, never a crash, for what is not HL7 at all. The messages are
 * made up (no real person): NHS numbers from the synthetic range 999. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "hl7.h"

#define A03                                                                                                            \
    "MSH|^~\\&|PAS|RXH|CAREBRIDGE|COUNCIL|20261202101112||ADT^A03^ADT_A03|MSG00001|P|2.4|||AL|NE\r"                    \
    "EVN|A03|20261202101000\r"                                                                                         \
    "PID|1||M123456^^^RXH^MR~9999999484^^^NHS^NH||TEST^PATIENT^ONE^^MS||19400101|F|||1 Any Road^^Town^^AB1 2CD\r"      \
    "ZU1|local|stuff\r"                                                                                                \
    "PV1|1|I|WARD7^^^RXH||||C1234^Doctor^A|||GER||||19|||||V0001|||||||||||||||||01|HOME|||||||20261201090000|"        \
    "20261202100000\r"

static cb_hl7 *parse_ok(const char *text)
{
    cb_hl7_error err = {0};
    cb_hl7 *m = cb_hl7_parse(text, strlen(text), &err);
    if (!m)
        fail_msg("parse failed: %d %s", err.code, err.text);
    return m;
}

static cb_hl7_kind get(const cb_hl7 *m, const char *seg, unsigned field, unsigned rep, unsigned comp, unsigned sub,
                       char *buf, size_t cap)
{
    long i = cb_hl7_find(m, seg, 0);
    assert_true(i >= 0);
    return cb_hl7_get(m, (cb_hl7_at){(size_t)i, field, rep, comp, sub}, buf, cap);
}

static void assert_value(const cb_hl7 *m, const char *seg, unsigned field, unsigned rep, unsigned comp, unsigned sub,
                         const char *want)
{
    char buf[256];
    assert_int_equal(get(m, seg, field, rep, comp, sub, buf, sizeof buf), CB_HL7_VALUE);
    assert_string_equal(buf, want);
}

static void test_msh_fields_are_counted_from_the_separator(void **state)
{
    (void)state;
    cb_hl7 *m = parse_ok(A03);
    assert_int_equal(cb_hl7_segment_count(m), 5);
    assert_value(m, "MSH", 1, 0, 0, 0, "|");
    assert_value(m, "MSH", 2, 0, 0, 0, "^~\\&");
    assert_value(m, "MSH", 3, 0, 0, 0, "PAS");
    assert_value(m, "MSH", 9, 0, 1, 0, "ADT");
    assert_value(m, "MSH", 9, 0, 2, 0, "A03");
    assert_value(m, "MSH", 10, 0, 0, 0, "MSG00001");
    assert_value(m, "MSH", 12, 0, 0, 0, "2.4");
    assert_value(m, "PID", 1, 0, 0, 0, "1");
    assert_value(m, "PV1", 44, 0, 0, 0, "20261201090000");
    assert_value(m, "PV1", 45, 0, 0, 0, "20261202100000");
    assert_value(m, "PV1", 37, 0, 0, 0, "HOME");
    cb_hl7_free(&m);
    assert_null(m);
}

/* \r is the standard's; files and some interfaces use \n or \r\n, and
 * trailing blank lines are common. All read the same. */
static void test_every_segment_terminator_reads_the_same(void **state)
{
    (void)state;
    const char *forms[] = {"\r", "\n", "\r\n", "\n\r"};
    for (size_t f = 0; f < 4; f++) {
        char text[2048] = "", *w = text;
        for (const char *p = A03; *p; p++)
            if (*p == '\r')
                w += sprintf(w, "%s", forms[f]);
            else
                *w++ = *p;
        w += sprintf(w, "%s%s", forms[f], forms[f]);
        cb_hl7 *m = parse_ok(text);
        assert_int_equal(cb_hl7_segment_count(m), 5);
        assert_value(m, "PV1", 45, 0, 0, 0, "20261202100000");
        assert_string_equal(cb_hl7_segment_name(m, 3), "ZU1");
        cb_hl7_free(&m);
    }
}

static void test_a_byte_order_mark_and_leading_lines_are_skipped(void **state)
{
    (void)state;
    cb_hl7 *m = parse_ok("\xEF\xBB\xBF\r\n" A03);
    assert_value(m, "MSH", 9, 0, 2, 0, "A03");
    cb_hl7_free(&m);
}

/* The NHS number is in whichever repetition of PID-3 carries it. */
static void test_repetitions_and_components(void **state)
{
    (void)state;
    cb_hl7 *m = parse_ok(A03);
    long pid = cb_hl7_find(m, "PID", 0);
    assert_int_equal(cb_hl7_repetitions(m, (size_t)pid, 3), 2);
    assert_int_equal(cb_hl7_repetitions(m, (size_t)pid, 2), 0);
    assert_value(m, "PID", 3, 1, 1, 0, "M123456");
    assert_value(m, "PID", 3, 2, 1, 0, "9999999484");
    assert_value(m, "PID", 3, 2, 4, 0, "NHS");
    assert_value(m, "PID", 3, 2, 5, 0, "NH");
    assert_value(m, "PID", 3, 2, 0, 0, "9999999484^^^NHS^NH"); /* the whole repetition */
    char buf[64];
    assert_int_equal(get(m, "PID", 3, 3, 1, 0, buf, sizeof buf), CB_HL7_ABSENT);
    assert_int_equal(get(m, "PID", 3, 2, 9, 0, buf, sizeof buf), CB_HL7_ABSENT); /* past the last component */
    assert_int_equal(get(m, "PID", 3, 2, 2, 0, buf, sizeof buf), CB_HL7_ABSENT); /* empty */
    assert_int_equal(get(m, "PID", 99, 0, 0, 0, buf, sizeof buf), CB_HL7_ABSENT);
    assert_string_equal(buf, "");
    cb_hl7_free(&m);
}

/* A sender's own separators, declared in MSH-1 and MSH-2. */
static void test_separators_are_the_senders(void **state)
{
    (void)state;
    cb_hl7 *m = parse_ok("MSH#$*@!#PAS#RXH#CB#X#20261202##ADT$A03#1#P#2.5.1\r"
                         "PID#1##A$B!C*9999999484$$$NHS$NH##SMITH@S@JONES\r");
    const cb_hl7_delims *d = cb_hl7_delimiters(m);
    assert_int_equal(d->field, '#');
    assert_int_equal(d->component, '$');
    assert_int_equal(d->repetition, '*');
    assert_int_equal(d->escape, '@');
    assert_int_equal(d->subcomponent, '!');
    assert_value(m, "MSH", 9, 0, 2, 0, "A03");
    assert_value(m, "PID", 3, 1, 2, 2, "C");
    assert_value(m, "PID", 3, 2, 1, 0, "9999999484");
    assert_value(m, "PID", 5, 0, 1, 0, "SMITH$JONES"); /* @S@ is an escaped component separator */
    cb_hl7_free(&m);
}

static void test_escape_sequences(void **state)
{
    (void)state;
    cb_hl7 *m = parse_ok("MSH|^~\\&|A|B|C|D|20261202||REF^I12|1|P|2.5\r"
                         "NTE|1||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f|\\X43C3A9\\ line\\.br\\two \\H\\bold\\N\\|"
                         "keep \\Q\\ and \\unclosed|\\X00\\|\\Cxxyy\\text\r");
    assert_value(m, "NTE", 3, 0, 1, 0, "a|b^c&d~e\\f");
    assert_value(m, "NTE", 4, 0, 1, 0, "C\xC3\xA9 line\ntwo bold");
    assert_value(m, "NTE", 5, 0, 1, 0, "keep \\Q\\ and \\unclosed"); /* unknown and unclosed: as written */
    assert_value(m, "NTE", 6, 0, 1, 0, "\\X00\\");                   /* never a NUL inside a value */
    assert_value(m, "NTE", 7, 0, 1, 0, "text");                      /* a character set switch: no text */
    cb_hl7_free(&m);
}

/* "" is the sender saying "no value, delete it"; empty says nothing. */
static void test_the_quoted_null_is_not_an_empty_field(void **state)
{
    (void)state;
    cb_hl7 *m = parse_ok("MSH|^~\\&|A|B|C|D|20261202||ADT^A08|1|P|2.3\rPID|1||9999999484^^^NHS^NH||\"\"|x^\"\"^y||\r");
    char buf[32];
    assert_int_equal(get(m, "PID", 5, 0, 1, 0, buf, sizeof buf), CB_HL7_NULL);
    assert_int_equal(get(m, "PID", 6, 0, 2, 0, buf, sizeof buf), CB_HL7_NULL);
    assert_int_equal(get(m, "PID", 6, 0, 3, 0, buf, sizeof buf), CB_HL7_VALUE);
    assert_int_equal(get(m, "PID", 7, 0, 1, 0, buf, sizeof buf), CB_HL7_ABSENT);
    cb_hl7_free(&m);
}

static void test_a_value_too_long_for_the_buffer_says_so(void **state)
{
    (void)state;
    cb_hl7 *m = parse_ok(A03);
    char buf[4];
    assert_int_equal(get(m, "MSH", 10, 0, 0, 0, buf, sizeof buf), CB_HL7_TOO_LONG);
    assert_string_equal(buf, "");
    cb_hl7_free(&m);
}

static void expect_error(const char *text, size_t len, int code, const char *segment, unsigned field)
{
    cb_hl7_error err = {0};
    cb_hl7 *m = cb_hl7_parse(text, len, &err);
    assert_null(m);
    assert_int_equal(err.code, code);
    assert_string_equal(err.segment, segment);
    assert_int_equal(err.field, field);
    assert_true(strlen(err.text) > 10);
}

static void test_what_is_not_hl7_gets_a_specific_error(void **state)
{
    (void)state;
    expect_error("", 0, CB_HL7_SEGMENT_SEQUENCE, "MSH", 0);
    expect_error("\r\n\r\n", 4, CB_HL7_SEGMENT_SEQUENCE, "MSH", 0);
    expect_error("PID|1\r", 6, CB_HL7_SEGMENT_SEQUENCE, "MSH", 0);
    expect_error("{\"resourceType\":\"Patient\"}", 26, CB_HL7_SEGMENT_SEQUENCE, "MSH", 0);
    expect_error("MSHA^~\\&|x\r", 11, CB_HL7_DATA_TYPE, "MSH", 1);
    expect_error("MSH|^^\\&|x\r", 11, CB_HL7_DATA_TYPE, "MSH", 2);
    expect_error("MSH|^~\\&ab|x\r", 13, CB_HL7_DATA_TYPE, "MSH", 2);
    expect_error("MSH||x\r", 7, CB_HL7_DATA_TYPE, "MSH", 2);
    expect_error("MSH|^~\\&|A\rpid|1\r", 17, CB_HL7_SEGMENT_SEQUENCE, "", 0);
    expect_error("MSH|^~\\&|A\rPID1|1\r", 18, CB_HL7_SEGMENT_SEQUENCE, "", 0);
    expect_error("MSH|^~\\&|A\rPID|1\0\r", 17, CB_HL7_DATA_TYPE, "", 0);
    /* Every prefix of a good message is an answer, never a crash. */
    for (size_t n = 0; n < strlen(A03); n++) {
        cb_hl7_error err = {0};
        cb_hl7 *m = cb_hl7_parse(A03, n, &err);
        assert_true(m || err.code);
        cb_hl7_free(&m);
    }
}

/* Older senders declare fewer encoding characters; MSH-2 may also carry
 * v2.7's truncation character. */
static void test_short_and_long_encoding_characters(void **state)
{
    (void)state;
    cb_hl7 *m = parse_ok("MSH|^~|A|B|C|D|20261202||ADT^A01|1|P|2.3\rPID|1||a\\S\\b&c\r");
    assert_int_equal(cb_hl7_delimiters(m)->escape, '\\');
    assert_value(m, "PID", 3, 0, 1, 1, "a^b");
    assert_value(m, "PID", 3, 0, 1, 2, "c");
    cb_hl7_free(&m);
    m = parse_ok("MSH|^~\\&#|A|B|C|D|20261202||ADT^A01|1|P|2.7\r");
    assert_value(m, "MSH", 9, 0, 2, 0, "A01");
    cb_hl7_free(&m);
}

static void test_escaped_text_reads_back_as_written(void **state)
{
    (void)state;
    cb_hl7 *m = parse_ok(A03);
    char esc[256], text[512], back[256];
    const char *said = "PID-3 ^ has | odd & chars ~ and \\ too\r";
    assert_true(cb_hl7_escape(cb_hl7_delimiters(m), said, esc, sizeof esc) > 0);
    assert_null(strchr(esc, '|'));
    snprintf(text, sizeof text, "MSH|^~\\&|A|B|C|D|1||ACK|1|P|2.4\rMSA|AE|1\rERR|||||||%s\r", esc);
    cb_hl7 *ack = parse_ok(text);
    assert_int_equal(get(ack, "ERR", 7, 0, 1, 0, back, sizeof back), CB_HL7_VALUE);
    assert_string_equal(back, "PID-3 ^ has | odd & chars ~ and \\ too "); /* the line end, a space */
    assert_int_equal(cb_hl7_escape(cb_hl7_delimiters(m), said, esc, 8), 0);
    cb_hl7_free(&ack);
    cb_hl7_free(&m);
}

/* MSH-18 says which character set the text is in; UK PAS feeds often send
 * Windows-1252 (or ISO 8859-1) and some do not say so. Either way a name
 * reads as UTF-8; UTF-8 stays as it is. */
static void test_names_in_latin_character_sets_read_as_utf8(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "MSH|^~\\&|PAS|RXH|CB|C|20261202||ADT^A03|1|P|2.4||||||8859/1\rPID|1||1^^^RXH||ZO\xCB^CH\xC2TEAU\r",
        "MSH|^~\\&|PAS|RXH|CB|C|20261202||ADT^A03|1|P|2.4\rPID|1||1^^^RXH||ZO\xCB^CH\xC2TEAU\r",
        "MSH|^~\\&|PAS|RXH|CB|C|20261202||ADT^A03|1|P|2.4||||||UNICODE "
        "UTF-8\rPID|1||1^^^RXH||ZO\xC3\x8B^CH\xC3\x82TEAU\r",
        "MSH|^~\\&|PAS|RXH|CB|C|20261202||ADT^A03|1|P|2.4\rPID|1||1^^^RXH||ZO\xC3\x8B^CH\xC3\x82TEAU\r"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        cb_hl7 *m = parse_ok(texts[i]);
        char buf[64];
        assert_int_equal(cb_hl7_get(m, (cb_hl7_at){1, 5, 1, 1, 0}, buf, sizeof buf), CB_HL7_VALUE);
        assert_string_equal(buf, "ZO\xC3\x8B");
        assert_int_equal(cb_hl7_get(m, (cb_hl7_at){1, 5, 1, 2, 0}, buf, sizeof buf), CB_HL7_VALUE);
        assert_string_equal(buf, "CH\xC3\x82TEAU");
        cb_hl7_free(&m);
    }
    /* UTF-8 under a template's 8859/1 stays UTF-8; 8859/2 is 8859/2 (0xA3 is a capital L
     * with stroke there, a pound sign in 1252); a set it does not convert is read as sent */
    static const struct {
        const char *text, *want;
    } sets[] = {
        {"MSH|^~\\&|PAS|RXH|CB|C|20261202||ADT^A03|1|P|2.4||||||8859/1\rPID|1||1^^^RXH||ZO\xC3\x8B\r", "ZO\xC3\x8B"},
        {"MSH|^~\\&|PAS|RXH|CB|C|20261202||ADT^A03|1|P|2.4||||||8859/2\rPID|1||1^^^RXH||\xA3ODZ\r", "\xC5\x81ODZ"},
        {"MSH|^~\\&|PAS|RXH|CB|C|20261202||ADT^A03|1|P|2.4||||||GB 18030\rPID|1||1^^^RXH||\xD5\xC5\r", "\xD5\xC5"}};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        cb_hl7 *m = parse_ok(sets[i].text);
        char buf[64];
        assert_int_equal(cb_hl7_get(m, (cb_hl7_at){1, 5, 1, 1, 0}, buf, sizeof buf), CB_HL7_VALUE);
        assert_string_equal(buf, sets[i].want);
        cb_hl7_free(&m);
    }
    /* Windows-1252's own characters: the euro sign and curly quotes */
    cb_hl7 *m = parse_ok("MSH|^~\\&|PAS|RXH|CB|C|20261202||ADT^A03|1|P|2.4||||||8859/1\rNTE|1||\x80"
                         "5 \x93ok\x94\r");
    char buf[64];
    assert_int_equal(cb_hl7_get(m, (cb_hl7_at){1, 3, 1, 0, 0}, buf, sizeof buf), CB_HL7_VALUE);
    assert_string_equal(buf, "\xE2\x82\xAC"
                             "5 \xE2\x80\x9Cok\xE2\x80\x9D");
    cb_hl7_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msh_fields_are_counted_from_the_separator),
        cmocka_unit_test(test_every_segment_terminator_reads_the_same),
        cmocka_unit_test(test_a_byte_order_mark_and_leading_lines_are_skipped),
        cmocka_unit_test(test_repetitions_and_components),
        cmocka_unit_test(test_separators_are_the_senders),
        cmocka_unit_test(test_escape_sequences),
        cmocka_unit_test(test_the_quoted_null_is_not_an_empty_field),
        cmocka_unit_test(test_a_value_too_long_for_the_buffer_says_so),
        cmocka_unit_test(test_what_is_not_hl7_gets_a_specific_error),
        cmocka_unit_test(test_short_and_long_encoding_characters),
        cmocka_unit_test(test_escaped_text_reads_back_as_written),
        cmocka_unit_test(test_names_in_latin_character_sets_read_as_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
