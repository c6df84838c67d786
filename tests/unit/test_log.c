/* The broker's logger (broker/log.c): the line format operators and tests
 * read, and the pseudonyms that stand in for a person. The reference
 * pseudonyms were computed with Python's hashlib.blake2b (key, digest_size=5),
 * an implementation independent of libsodium: a pseudonym must stay the same
 * for the same person across releases, or old and new log lines stop
 * correlating. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "log.h"
#include "fixtures.h"

static int setup(void **state)
{
    (void)state;
    uint8_t key[CB_PSEUDONYM_KEY_BYTES];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)i;
    if (sodium_init() < 0)
        return -1;
    cb_log_set_pseudonym_key(key);
    return 0;
}

static void test_pseudonym_matches_keyed_blake2b(void **state)
{
    (void)state;
    char out[CB_PSEUDONYM_LEN];
    Carebridge__V1__Person p = CAREBRIDGE__V1__PERSON__INIT;
    p.nhs_number = "9434765919";
    p.chi_number = "0101011234";
    assert_string_equal(cb_log_person(&p, out), "p-4f83318872"); /* NHS number first */
    p.nhs_number = "";
    assert_string_equal(cb_log_person(&p, out), "p-8e8febc107");
}

static void test_pseudonym_of_local_id(void **state)
{
    (void)state;
    char out[CB_PSEUDONYM_LEN];
    Carebridge__V1__LocalId lid = CAREBRIDGE__V1__LOCAL_ID__INIT, *lids[] = {&lid};
    Carebridge__V1__Person p = CAREBRIDGE__V1__PERSON__INIT;
    p.n_local_ids = 1;
    p.local_ids = lids;
    lid.system = "PAS";
    lid.value = "H123456";
    assert_string_equal(cb_log_person(&p, out), "p-6d19f72da8");
    lid.system = ""; /* the separator stays: "local::H1" */
    lid.value = "H1";
    assert_string_equal(cb_log_person(&p, out), "p-634e68d6ca");
}

static void test_pseudonym_without_identifier(void **state)
{
    (void)state;
    char out[CB_PSEUDONYM_LEN];
    Carebridge__V1__Person p = CAREBRIDGE__V1__PERSON__INIT;
    assert_string_equal(cb_log_person(&p, out), "p-none");
    assert_string_equal(cb_log_person(NULL, out), "p-none");
}

/* "2026-11-24T07:31:35.343Z info <message>", UTC to the millisecond. */
static void test_line_format(void **state)
{
    (void)state;
    char dir[64], path[96];
    assert_true(cb_test_mkdtemp(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/log", dir);
    int saved = dup(STDERR_FILENO); /* cmocka reports on stderr: give it back after */
    assert_non_null(freopen(path, "w+", stderr));
    cb_log_init(CB_LOG_INFO);
    time_t before = time(NULL);
    cb_log(CB_LOG_INFO, "event id=%s seq=%d", "ev-1", 7);
    cb_log(CB_LOG_DEBUG, "not at this level");
    cb_log(CB_LOG_WARN, "second %s", "line");
    cb_log_flush();
    dup2(saved, fileno(stderr));
    close(saved);
    char text[256] = "";
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    assert_int_equal(cb_test_remove_tree(dir), 0);
    text[n] = '\0';

    int y, mo, d, h, mi, s, ms, used = 0;
    assert_int_equal(sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ %n", &y, &mo, &d, &h, &mi, &s, &ms, &used), 7);
    assert_int_equal(used, 25);
    assert_int_equal(text[23], 'Z');
    struct tm tm;
    gmtime_r(&before, &tm);
    assert_int_equal(y, tm.tm_year + 1900);
    assert_true(ms >= 0 && ms <= 999);
    const char *second = strchr(text, '\n');
    assert_non_null(second);
    assert_int_equal(strncmp(text + 25, "info event id=ev-1 seq=7\n", 25), 0);
    assert_int_equal(strncmp(second + 1 + 25, "warn second line\n", 17), 0);
    assert_int_equal(strlen(second + 1), 25 + 17); /* the debug line was not written */
}

/* ---- sender text in a log line */

static void expect_text(const char *in, const char *out)
{
    cb_log_text_buf buf;
    assert_string_equal(cb_log_text(in, buf), out);
}

static void test_log_text_masks_nhs_and_chi_numbers_however_written(void **state)
{
    (void)state;
    expect_text("ref-9434765919-001", "ref-xxxxxxxxxx-xxx"); /* the whole run, the tail too */
    expect_text("943 476 5919", "xxx xxx xxxx");
    expect_text("for 943-476-5919 today", "for xxx-xxx-xxxx today");
    expect_text("chi1203843569", "chixxxxxxxxxx");
    expect_text("x4857773456y", "xxxxxxxxxxxy"); /* ten digits, check digit failing: still masked */
    expect_text("ev-00012345678901234-9434765919", "ev-xxxxxxxxxxxxxxxxx-xxxxxxxxxx"); /* found inside a longer run */
    expect_text("margaret-0001", "margaret-0001");
    expect_text("2026-11-20T09:30:00Z", "2026-11-20T09:30:00Z"); /* a date is not a number of ten */
    expect_text("seq 123456789", "seq 123456789");
}

static void test_log_text_keeps_to_printable_ascii_and_a_bounded_length(void **state)
{
    (void)state;
    expect_text("", "-");
    expect_text(NULL, "-");
    expect_text("caf\xc3\xa9\x1b[31m", "caf???[31m");
    char longer[200];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    cb_log_text_buf buf;
    cb_log_text(longer, buf);
    assert_int_equal(strlen(buf), CB_LOG_TEXT_MAX + 3);
    assert_string_equal(buf + CB_LOG_TEXT_MAX, "...");
    /* a number the cut would split is masked before the cut, and the head of
     * any other run of digits at the cut is not left either */
    char cut[100];
    snprintf(cut, sizeof cut, "%.*s9434765919", CB_LOG_TEXT_MAX - 4, longer);
    cb_log_text(cut, buf);
    assert_string_equal(buf + CB_LOG_TEXT_MAX - 4, "xxxx...");
    snprintf(cut, sizeof cut, "%.*s12345678", CB_LOG_TEXT_MAX - 4, longer);
    cb_log_text(cut, buf);
    assert_string_equal(buf + CB_LOG_TEXT_MAX - 4, "xxxx...");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_text_masks_nhs_and_chi_numbers_however_written),
        cmocka_unit_test(test_log_text_keeps_to_printable_ascii_and_a_bounded_length),
        cmocka_unit_test(test_pseudonym_matches_keyed_blake2b),
        cmocka_unit_test(test_pseudonym_of_local_id),
        cmocka_unit_test(test_pseudonym_without_identifier),
        cmocka_unit_test(test_line_format),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
