/* Where a handoff stands (broker/handoff.c): the stage each response moves
 * it to, and what a coordinator is told beside it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "handoff.h"

#define STAGE(s)  CAREBRIDGE__V1__JOURNEY_STEP__STAGE__##s
#define STATUS(s) CAREBRIDGE__V1__RESPONSE__STATUS__##s

static void test_each_response_moves_the_stage(void **state)
{
    (void)state;
    static const struct {
        cb_stage now;
        Carebridge__V1__Response__Status status;
        cb_stage next;
    } rows[] = {
        {STAGE(SENT), STATUS(ACKNOWLEDGED), STAGE(ACKNOWLEDGED)},
        {STAGE(SENT), STATUS(ACCEPTED), STAGE(ACCEPTED)},
        {STAGE(ACKNOWLEDGED), STATUS(DECLINED), STAGE(DECLINED)},
        {STAGE(SENT), STATUS(INFO_REQUESTED), STAGE(INFO_REQUESTED)},
        {STAGE(INFO_REQUESTED), STATUS(ACCEPTED), STAGE(ACCEPTED)},
        {STAGE(SENT), STATUS(REDIRECTED), STAGE(REDIRECTED)},
        {STAGE(DECLINED), STATUS(ACCEPTED), STAGE(ACCEPTED)}, /* a change of mind counts */
        /* An acknowledgement arriving late never moves a decision back. */
        {STAGE(ACCEPTED), STATUS(ACKNOWLEDGED), STAGE(ACCEPTED)},
        {STAGE(DECLINED), STATUS(ACKNOWLEDGED), STAGE(DECLINED)},
        {STAGE(ACKNOWLEDGED), STATUS(ACKNOWLEDGED), STAGE(ACKNOWLEDGED)},
        /* A response with no status says nothing. */
        {STAGE(SENT), STATUS(STATUS_UNSPECIFIED), STAGE(SENT)},
        {STAGE(ACCEPTED), STATUS(STATUS_UNSPECIFIED), STAGE(ACCEPTED)},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        assert_int_equal(cb_handoff_next(rows[i].now, rows[i].status), rows[i].next);
}

static void expect_note(Carebridge__V1__Response *r, const char *want)
{
    char *note = cb_handoff_note(r);
    if (!want) {
        assert_null(note);
        return;
    }
    assert_non_null(note);
    assert_string_equal(note, want);
    free(note);
}

static void test_what_the_coordinator_is_told(void **state)
{
    (void)state;
    Carebridge__V1__Response r = CAREBRIDGE__V1__RESPONSE__INIT;
    r.status = STATUS(DECLINED);
    expect_note(&r, "no alternative offered");
    r.alternative = "the housing options team";
    expect_note(&r, "alternative offered: the housing options team");
    r.status = STATUS(REDIRECTED);
    r.redirect_to = "housing";
    expect_note(&r, "redirected to housing");
    r.status = STATUS(INFO_REQUESTED);
    expect_note(&r, "information requested");
    r.status = STATUS(ACCEPTED);
    expect_note(&r, NULL);
    r.status = STATUS(ACKNOWLEDGED);
    expect_note(&r, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_response_moves_the_stage),
        cmocka_unit_test(test_what_the_coordinator_is_told),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
