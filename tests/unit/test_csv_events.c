/* Events from housing CSV exports (adapters/housing/csv_events.c): a header
 * of field paths, lists in one cell, rows the broker's JSON reader takes,
 * the line each bad row began on while the rows around it go through, and
 * a header no field answers to refusing the whole file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cb_codec.h"
#include "cb_json.h"
#include "csv_events.h"

typedef struct {
    json_t *events[16];
    unsigned long lines[16];
    char why[16][300];
    size_t n;
} rows;

static bool keep(void *arg, unsigned long line, json_t *event, const char *why)
{
    rows *r = arg;
    assert_true(r->n < 16);
    r->events[r->n] = event;
    r->lines[r->n] = line;
    snprintf(r->why[r->n], sizeof r->why[r->n], "%s", why ? why : "");
    r->n++;
    return true;
}

static bool read_text(const char *text, rows *r, char *why, size_t cap)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    memset(r, 0, sizeof *r);
    bool ok = cb_csv_events_read(f, keep, r, why, cap);
    fclose(f);
    return ok;
}

static void free_rows(rows *r)
{
    for (size_t i = 0; i < r->n; i++)
        json_decref(r->events[i]);
}

static cb_envelope *envelope(json_t *ev)
{
    cb_error err = {0};
    cb_envelope *e = (cb_envelope *)cb_json_to_message(&carebridge__v1__envelope__descriptor, ev, &err);
    if (!e)
        fail_msg("the broker's reader refused the row: %s", err.reason);
    return e;
}

static void test_a_row_is_an_event_with_its_lists(void **state)
{
    (void)state;
    rows r;
    char why[300];
    assert_true(read_text("eventId,person.nhsNumber,fromAgency,toAgencies,referral.reason,referral.urgency,"
                          "referral.consent,referral.risks.description,referral.risks.level,referral.contact.name,"
                          "occurredAt,referral.outcomes.statement\n"
                          "HMS-1,9999999484,housing,social-care;health,rent arrears,URGENT,GIVEN,"
                          "eviction notice;none known,HIGH;LOW,tenancy officer,2026-12-02T10:11:12Z,"
                          "keep my home; pay what I owe\n",
                          &r, why, sizeof why));
    assert_int_equal(r.n, 1);
    assert_int_equal(r.lines[0], 2);
    cb_envelope *e = envelope(r.events[0]);
    assert_string_equal(e->event_id, "HMS-1");
    assert_string_equal(e->person->nhs_number, "9999999484");
    assert_int_equal(e->n_to_agencies, 2);
    assert_string_equal(e->to_agencies[1], "health");
    assert_string_equal(e->referral->reason, "rent arrears");
    assert_int_equal(e->referral->urgency, CAREBRIDGE__V1__REFERRAL__URGENCY__URGENT);
    assert_int_equal(e->referral->n_risks, 2);
    assert_string_equal(e->referral->risks[0]->description, "eviction notice");
    assert_int_equal(e->referral->risks[0]->level, CAREBRIDGE__V1__RISK__LEVEL__HIGH);
    assert_string_equal(e->referral->risks[1]->description, "none known");
    assert_int_equal(e->referral->risks[1]->level, CAREBRIDGE__V1__RISK__LEVEL__LOW);
    assert_string_equal(e->referral->contact->name, "tenancy officer");
    assert_int_equal(e->referral->n_outcomes, 2);
    assert_string_equal(e->referral->outcomes[1]->statement, "pay what I owe");
    assert_int_equal(e->occurred_at->seconds, 1796206272);
    cb_envelope_free(&e);
    free_rows(&r);
}

/* As spreadsheets write them: a byte-order mark, CRLF, quoted cells with
 * commas, doubled quotes and line breaks; blank lines and empty rows. */
static void test_quirks_of_real_exports_and_the_lines_rows_begin_on(void **state)
{
    (void)state;
    rows r;
    char why[300];
    assert_true(read_text("\xEF\xBB\xBF"
                          "eventId,fromAgency,toAgencies,referral.reason\r\n"
                          "A,housing,health,\"arrears, and \"\"damp\"\"\"\r\n"
                          "\r\n"
                          "B,housing,health,\"two\r\nlines\"\r\n"
                          ",,,\r\n"
                          "C,housing,health,last\r\n",
                          &r, why, sizeof why));
    assert_int_equal(r.n, 3);
    assert_int_equal(r.lines[0], 2);
    assert_int_equal(r.lines[1], 4);
    assert_int_equal(r.lines[2], 7);
    cb_envelope *e = envelope(r.events[0]);
    assert_string_equal(e->referral->reason, "arrears, and \"damp\"");
    cb_envelope_free(&e);
    e = envelope(r.events[1]);
    assert_string_equal(e->referral->reason, "two\r\nlines");
    cb_envelope_free(&e);
    free_rows(&r);
    /* No newline after the last row. */
    assert_true(read_text("eventId,fromAgency\nA,housing", &r, why, sizeof why));
    assert_int_equal(r.n, 1);
    free_rows(&r);
}

/* Excel's "CSV (Comma delimited)" on a UK machine writes Windows-1252:
 * a name like Zoë, rent in pounds. Each line that is not UTF-8 is read
 * as 1252; one that is stays as it is. */
static void test_a_windows_1252_export_reads_as_utf8(void **state)
{
    (void)state;
    rows r;
    char why[300];
    assert_true(read_text("eventId,fromAgency,toAgencies,referral.reason\r\n"
                          "A,housing,health,Zo\xEB owes \xA3"
                          "200\r\n"
                          "B,housing,health,Zo\xC3\xAB owes \xC2\xA3"
                          "200\r\n",
                          &r, why, sizeof why));
    assert_int_equal(r.n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(r.why[i], "");
        cb_envelope *e = envelope(r.events[i]);
        assert_string_equal(e->referral->reason, "Zo\xC3\xAB owes \xC2\xA3"
                                                 "200");
        cb_envelope_free(&e);
    }
    assert_int_equal(r.lines[1], 3);
    free_rows(&r);
}

static void test_a_bad_row_is_reported_by_line_and_its_neighbours_go_through(void **state)
{
    (void)state;
    rows r;
    char why[300];
    assert_true(read_text("eventId,fromAgency,toAgencies,discharge.followUps.agency,discharge.followUps.confirmed\n"
                          "A,housing,health,social-care,yes\n"
                          "B,housing,health,social-care,perhaps 9999999484\n"
                          "C,housing,health,social-care;health,no;1\n"
                          "D,housing,health,x,yes,extra\n"
                          "E,housing,health,,\n",
                          &r, why, sizeof why));
    assert_int_equal(r.n, 5);
    assert_non_null(r.events[0]);
    assert_null(r.events[1]);
    assert_int_equal(r.lines[1], 3);
    assert_non_null(strstr(r.why[1], "discharge.followUps.confirmed"));
    assert_null(strstr(r.why[1], "perhaps"));
    assert_null(strstr(r.why[1], "9999999484"));
    cb_envelope *e = envelope(r.events[2]);
    assert_int_equal(e->discharge->n_follow_ups, 2);
    assert_true(e->discharge->follow_ups[1]->confirmed);
    cb_envelope_free(&e);
    assert_null(r.events[3]);
    assert_int_equal(r.lines[3], 5);
    assert_non_null(strstr(r.why[3], "6 cells"));
    assert_non_null(r.events[4]);
    free_rows(&r);
    /* A NUL byte in a cell: that row refused, naming the column. */
    static const char with_nul[] = "eventId,referral.reason\nA,ok\nB,bad\0byte\nC,ok\n";
    FILE *f = fmemopen((void *)with_nul, sizeof with_nul - 1, "r");
    memset(&r, 0, sizeof r);
    assert_true(cb_csv_events_read(f, keep, &r, why, sizeof why));
    fclose(f);
    assert_int_equal(r.n, 3);
    assert_null(r.events[1]);
    assert_non_null(strstr(r.why[1], "referral.reason holds a NUL byte"));
    assert_non_null(r.events[2]);
    free_rows(&r);
}

static void expect_header_refused(const char *text, const char *says)
{
    rows r;
    char why[300];
    assert_false(read_text(text, &r, why, sizeof why));
    assert_int_equal(r.n, 0); /* nothing of the file is sent */
    if (!strstr(why, says))
        fail_msg("'%s' does not say '%s'", why, says);
}

static void test_a_header_no_field_answers_refuses_the_file(void **state)
{
    (void)state;
    expect_header_refused("eventId,tenancyNotes\nA,x\n", "column 2 (tenancyNotes) names no event field");
    expect_header_refused("eventId,referral.contact\nA,x\n", "names a group of fields");
    expect_header_refused("eventId,eventId\nA,B\n", "both name eventId");
    expect_header_refused("eventId,,fromAgency\nA,,x\n", "column 2 is empty");
    expect_header_refused("", "no header row");
    expect_header_refused("\n\n", "no header row");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_row_is_an_event_with_its_lists),
        cmocka_unit_test(test_quirks_of_real_exports_and_the_lines_rows_begin_on),
        cmocka_unit_test(test_a_windows_1252_export_reads_as_utf8),
        cmocka_unit_test(test_a_bad_row_is_reported_by_line_and_its_neighbours_go_through),
        cmocka_unit_test(test_a_header_no_field_answers_refuses_the_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
