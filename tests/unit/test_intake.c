/* Intake (broker/intake.c) against the embedded default configuration: what
 * is admissible, the code and reason of each refusal, and the person keys. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "carebridge.pb-c.h"
#include "config.h"
#include "intake.h"

typedef Carebridge__V1__Envelope Envelope;

#define NHS  "9434765919"
#define NAME "Margaret Example"

/* ---------------------------------------------------------------- fixture */

/* A valid referral from health to social-care. Every pointer points into the
 * fixture itself, so tests change one field and check again. */
typedef struct {
    cb_config *cfg;
    const cb_agency *sender;
    Envelope env;
    Carebridge__V1__Person person;
    Carebridge__V1__LocalId lid[8];
    Carebridge__V1__LocalId *lids[8];
    Google__Protobuf__Timestamp at;
    Carebridge__V1__Referral referral;
    char *to[4];
    char long_text[CB_CASE_REF_MAX + 2];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    char err[256] = "";
    f->cfg = cb_config_load(NULL, err, sizeof err);
    if (!f->cfg) {
        print_error("default config: %s\n", err);
        free(f);
        return -1;
    }
    f->sender = cb_config_agency(f->cfg, "health");
    if (!f->sender) {
        cb_config_free(&f->cfg);
        free(f);
        return -1;
    }
    f->env = (Envelope)CAREBRIDGE__V1__ENVELOPE__INIT;
    f->person = (Carebridge__V1__Person)CAREBRIDGE__V1__PERSON__INIT;
    for (int i = 0; i < 8; i++) {
        f->lid[i] = (Carebridge__V1__LocalId)CAREBRIDGE__V1__LOCAL_ID__INIT;
        f->lid[i].system = "pas:general-hospital";
        f->lid[i].value = "H123456";
        f->lids[i] = &f->lid[i];
    }
    f->at = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    f->referral = (Carebridge__V1__Referral)CAREBRIDGE__V1__REFERRAL__INIT;
    f->person.nhs_number = NHS;
    f->person.name = NAME;
    f->person.n_local_ids = 1;
    f->person.local_ids = f->lids;
    f->at.seconds = 1767225600;
    f->referral.reason = "home care after discharge";
    f->to[0] = "social-care";
    f->env.event_id = "ev-0001";
    f->env.person = &f->person;
    f->env.case_ref = "CASE-1";
    f->env.from_agency = "health";
    f->env.n_to_agencies = 1;
    f->env.to_agencies = f->to;
    f->env.occurred_at = &f->at;
    f->env.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL;
    f->env.referral = &f->referral;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cb_config_free(&f->cfg);
    free(f);
    return 0;
}

/* The code intake gives f's envelope; its reason in err. */
static cb_code check(fixture *f, cb_error *err)
{
    *err = (cb_error){0};
    cb_code code = cb_intake_check(f->cfg, f->sender, &f->env, err);
    assert_int_equal(err->code, code);
    if (code != CB_OK)
        assert_true(err->reason[0] != '\0');
    return code;
}

/* f's envelope is refused with code, its reason mentioning `names` and never
 * the person's NHS number or name. */
static void refused(fixture *f, cb_code code, const char *names)
{
    cb_error err;
    cb_code got = check(f, &err);
    if (got != code)
        fail_msg("expected %s, got %s (%s)", cb_code_name(code), cb_code_name(got), err.reason);
    if (!strstr(err.reason, names))
        fail_msg("reason '%s' does not name '%s'", err.reason, names);
    if (strstr(err.reason, NHS) || strstr(err.reason, NAME))
        fail_msg("reason '%s' quotes personal data", err.reason);
}

static void admitted(fixture *f)
{
    cb_error err;
    cb_code got = check(f, &err);
    if (got != CB_OK)
        fail_msg("refused with %s: %s", cb_code_name(got), err.reason);
}

/* s of n bytes of c in f->long_text (n <= CB_CASE_REF_MAX + 1). */
static char *repeat(fixture *f, char c, size_t n)
{
    assert_true(n < sizeof f->long_text);
    memset(f->long_text, c, n);
    f->long_text[n] = '\0';
    return f->long_text;
}

/* ------------------------------------------------------------- admissible */

static void test_valid_event_passes(void **state)
{
    admitted(*state);
}

static void test_default_config_has_the_demo_agencies(void **state)
{
    fixture *f = *state;
    assert_non_null(cb_config_agency(f->cfg, "health"));
    assert_non_null(cb_config_agency(f->cfg, "housing"));
    assert_non_null(cb_config_agency(f->cfg, "social-care"));
    assert_non_null(cb_config_agency(f->cfg, "voluntary"));
    assert_null(cb_config_agency(f->cfg, "police"));
}

static void test_several_recipients_pass(void **state)
{
    fixture *f = *state;
    f->to[1] = "housing";
    f->to[2] = "voluntary";
    f->env.n_to_agencies = 3;
    admitted(f);
}

static void test_body_with_no_fields_passes(void **state)
{
    fixture *f = *state;
    Carebridge__V1__Discharge empty = CAREBRIDGE__V1__DISCHARGE__INIT;
    f->env.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE;
    f->env.discharge = &empty;
    admitted(f);
    f->referral = (Carebridge__V1__Referral)CAREBRIDGE__V1__REFERRAL__INIT;
    f->env.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL;
    f->env.referral = &f->referral;
    admitted(f);
}

static void test_bad_nhs_check_digit_passes(void **state)
{
    fixture *f = *state;
    f->person.nhs_number = "9434765910"; /* check digit should be 9 */
    admitted(f);
    f->person.nhs_number = "not-a-number";
    admitted(f);
}

static void test_any_one_identifier_is_enough(void **state)
{
    fixture *f = *state;
    f->person.nhs_number = "";
    admitted(f); /* local id only */
    f->person.n_local_ids = 0;
    f->person.chi_number = "0101011234";
    admitted(f); /* CHI only */
    f->person.chi_number = "";
    f->person.nhs_number = NHS;
    admitted(f); /* NHS only */
}

static void test_lengths_at_the_limit_pass(void **state)
{
    fixture *f = *state;
    char id[CB_EVENT_ID_MAX + 1], nhs[CB_IDENTIFIER_MAX + 1];
    memset(id, 'e', CB_EVENT_ID_MAX);
    id[CB_EVENT_ID_MAX] = '\0';
    memset(nhs, '9', CB_IDENTIFIER_MAX);
    nhs[CB_IDENTIFIER_MAX] = '\0';
    f->env.event_id = id;
    f->person.nhs_number = nhs;
    f->env.case_ref = repeat(f, 'c', CB_CASE_REF_MAX);
    admitted(f);
}

static void test_timestamp_range_ends_pass(void **state)
{
    fixture *f = *state;
    f->at.seconds = -62135596800LL; /* 0001-01-01T00:00:00Z */
    f->at.nanos = 0;
    admitted(f);
    f->at.seconds = 253402300799LL; /* 9999-12-31T23:59:59Z */
    f->at.nanos = 999999999;
    admitted(f);
}

static void test_printable_edges_pass(void **state)
{
    fixture *f = *state;
    f->env.event_id = " ev 0001~"; /* 0x20 and 0x7E are not controls */
    f->env.case_ref = "CASE 1 / ~x";
    f->env.correlation_id = "ev 0000";
    f->lid[0].value = "H 123 456";
    admitted(f);
}

static void test_utf8_text_passes(void **state)
{
    fixture *f = *state;
    f->person.name = "Zo\xc3\xab \xe5\xbc\xa0";            /* Zoë 张 */
    f->referral.reason = "needs \xf0\x9f\xa6\xbd support"; /* a 4-byte character */
    admitted(f);
}

/* ---------------------------------------------------------- MISSING_FIELD */

static void test_missing_event_id(void **state)
{
    fixture *f = *state;
    f->env.event_id = "";
    refused(f, CB_MISSING_FIELD, "eventId");
}

static void test_missing_from_agency(void **state)
{
    fixture *f = *state;
    f->env.from_agency = "";
    refused(f, CB_MISSING_FIELD, "fromAgency");
}

static void test_missing_to_agencies(void **state)
{
    fixture *f = *state;
    f->env.n_to_agencies = 0;
    refused(f, CB_MISSING_FIELD, "toAgencies");
}

static void test_missing_occurred_at(void **state)
{
    fixture *f = *state;
    f->env.occurred_at = NULL;
    refused(f, CB_MISSING_FIELD, "occurredAt");
}

static void test_missing_body(void **state)
{
    fixture *f = *state;
    f->env.body_case = CAREBRIDGE__V1__ENVELOPE__BODY__NOT_SET;
    f->env.referral = NULL;
    refused(f, CB_MISSING_FIELD, "body");
}

static void test_missing_person(void **state)
{
    fixture *f = *state;
    f->env.person = NULL;
    refused(f, CB_MISSING_FIELD, "person");
}

static void test_person_without_identifiers(void **state)
{
    fixture *f = *state;
    f->person.nhs_number = "";
    f->person.n_local_ids = 0;
    refused(f, CB_MISSING_FIELD, "person.nhsNumber");
    refused(f, CB_MISSING_FIELD, "person.chiNumber");
    refused(f, CB_MISSING_FIELD, "person.localIds");
}

static void test_local_id_with_empty_system(void **state)
{
    fixture *f = *state;
    f->person.n_local_ids = 2;
    f->lid[1].system = "";
    refused(f, CB_MISSING_FIELD, "person.localIds[1]");
}

static void test_local_id_with_empty_value(void **state)
{
    fixture *f = *state;
    f->lid[0].value = "";
    refused(f, CB_MISSING_FIELD, "person.localIds[0]");
}

/* ---------------------------------------------- UNKNOWN_AGENCY, MISMATCH */

static void test_unknown_from_agency(void **state)
{
    fixture *f = *state;
    f->env.from_agency = "police";
    refused(f, CB_UNKNOWN_AGENCY, "fromAgency");
}

static void test_unknown_to_agency_is_named_by_index(void **state)
{
    fixture *f = *state;
    f->to[1] = "housing";
    f->to[2] = "police";
    f->env.n_to_agencies = 3;
    refused(f, CB_UNKNOWN_AGENCY, "toAgencies[2]");
    f->to[0] = "Social-Care"; /* ids are exact */
    refused(f, CB_UNKNOWN_AGENCY, "toAgencies[0]");
}

static void test_from_other_than_sender_is_mismatch(void **state)
{
    fixture *f = *state;
    f->env.from_agency = "housing"; /* known, but the connection is health */
    refused(f, CB_AGENCY_MISMATCH, "fromAgency");
}

/* ---------------------------------------------------------- INVALID_FIELD */

static void test_repeated_recipient(void **state)
{
    fixture *f = *state;
    f->to[1] = "housing";
    f->to[2] = "social-care";
    f->env.n_to_agencies = 3;
    refused(f, CB_INVALID_FIELD, "toAgencies[2]");
}

static void test_over_long_event_id(void **state)
{
    fixture *f = *state;
    f->env.event_id = repeat(f, 'e', CB_EVENT_ID_MAX + 1);
    refused(f, CB_INVALID_FIELD, "eventId");
}

static void test_over_long_identifiers(void **state)
{
    fixture *f = *state;
    char id[CB_IDENTIFIER_MAX + 2];
    memset(id, '9', CB_IDENTIFIER_MAX + 1);
    id[CB_IDENTIFIER_MAX + 1] = '\0';

    f->person.nhs_number = id;
    refused(f, CB_INVALID_FIELD, "person.nhsNumber");
    f->person.nhs_number = NHS;

    f->person.chi_number = id;
    refused(f, CB_INVALID_FIELD, "person.chiNumber");
    f->person.chi_number = "";

    f->lid[0].value = id;
    refused(f, CB_INVALID_FIELD, "person.localIds[0]");
    f->lid[0].value = "H123456";

    f->lid[0].system = id;
    refused(f, CB_INVALID_FIELD, "person.localIds[0]");
}

static void test_too_many_local_ids(void **state)
{
    fixture *f = *state;
    f->person.n_local_ids = CB_PERSON_KEYS_MAX - 2;
    admitted(f);
    f->person.n_local_ids = CB_PERSON_KEYS_MAX - 1;
    refused(f, CB_INVALID_FIELD, "person.localIds");
}

static void test_over_long_case_ref(void **state)
{
    fixture *f = *state;
    f->env.case_ref = repeat(f, 'c', CB_CASE_REF_MAX + 1);
    refused(f, CB_INVALID_FIELD, "caseRef");
}

static void test_over_long_correlation_id(void **state)
{
    fixture *f = *state;
    f->env.correlation_id = repeat(f, 'r', CB_EVENT_ID_MAX + 1);
    refused(f, CB_INVALID_FIELD, "correlationId");
}

static void test_control_characters(void **state)
{
    fixture *f = *state;
    f->env.event_id = "ev\n0001";
    refused(f, CB_INVALID_FIELD, "eventId");
    f->env.event_id = "ev\x1f"
                      "0001"; /* the last C0 control */
    refused(f, CB_INVALID_FIELD, "eventId");
    f->env.event_id = "ev-0001";

    f->env.case_ref = "CASE\t1";
    refused(f, CB_INVALID_FIELD, "caseRef");
    f->env.case_ref = "CASE-1";

    f->env.correlation_id = "ev\x1b[0m";
    refused(f, CB_INVALID_FIELD, "correlationId");
    f->env.correlation_id = "";

    f->person.nhs_number = "943476\x7f"
                           "5919";
    refused(f, CB_INVALID_FIELD, "person.nhsNumber");
    f->person.nhs_number = NHS;

    f->lid[0].value = "H12\r3456";
    refused(f, CB_INVALID_FIELD, "person.localIds[0]");
}

static void test_timestamp_out_of_range(void **state)
{
    fixture *f = *state;
    f->at.seconds = 253402300800LL; /* 10000-01-01 */
    refused(f, CB_INVALID_FIELD, "occurredAt");
    f->at.seconds = -62135596801LL; /* before 0001-01-01 */
    refused(f, CB_INVALID_FIELD, "occurredAt");
    f->at.seconds = 0;
    f->at.nanos = -1;
    refused(f, CB_INVALID_FIELD, "occurredAt");
    f->at.nanos = 1000000000;
    refused(f, CB_INVALID_FIELD, "occurredAt");
}

/* ---------------------------------------------------- reasons and privacy */

static void test_reasons_never_quote_nhs_number_or_name(void **state)
{
    fixture *f = *state;
    /* An NHS number that is also the event id, case ref and local id: any
     * reason quoting a value would quote it. refused() checks each reason. */
    char nhs_long[CB_IDENTIFIER_MAX + 16];
    snprintf(nhs_long, sizeof nhs_long, "%s%s%s%s%s%s%s", NHS, NHS, NHS, NHS, NHS, NHS, NHS);

    f->env.event_id = NHS "\n";
    refused(f, CB_INVALID_FIELD, "eventId");
    f->env.event_id = "ev-0001";

    f->person.nhs_number = nhs_long;
    refused(f, CB_INVALID_FIELD, "person.nhsNumber");
    f->person.nhs_number = NHS "\t";
    refused(f, CB_INVALID_FIELD, "person.nhsNumber");
    f->person.nhs_number = NHS;

    f->lid[0].value = NHS "\x01";
    refused(f, CB_INVALID_FIELD, "person.localIds[0]");
    f->lid[0].value = NHS;

    f->env.case_ref = NAME "\x7f";
    refused(f, CB_INVALID_FIELD, "caseRef");
    f->env.case_ref = "CASE-1";

    f->to[0] = NAME;
    refused(f, CB_UNKNOWN_AGENCY, "toAgencies[0]");
    f->to[0] = "social-care";

    f->env.from_agency = NHS;
    refused(f, CB_UNKNOWN_AGENCY, "fromAgency");
}

/* ------------------------------------------------------------ person keys */

static void test_person_keys_in_order(void **state)
{
    fixture *f = *state;
    f->person.chi_number = "0101011234";
    f->person.n_local_ids = 2;
    f->lid[1].system = "housing:hms";
    f->lid[1].value = "T-998";
    cb_person_key keys[CB_PERSON_KEYS_MAX];
    size_t n = cb_intake_person_keys(&f->person, keys, CB_PERSON_KEYS_MAX);
    assert_int_equal(n, 4);
    assert_string_equal(keys[0], "nhs:" NHS);
    assert_string_equal(keys[1], "chi:0101011234");
    assert_string_equal(keys[2], "local:pas:general-hospital\x1fH123456");
    assert_string_equal(keys[3], "local:housing:hms\x1fT-998");
}

static void test_person_keys_skip_absent_identifiers(void **state)
{
    fixture *f = *state;
    f->person.nhs_number = "";
    cb_person_key keys[CB_PERSON_KEYS_MAX];
    size_t n = cb_intake_person_keys(&f->person, keys, CB_PERSON_KEYS_MAX);
    assert_int_equal(n, 1);
    assert_string_equal(keys[0], "local:pas:general-hospital\x1fH123456");

    f->person.n_local_ids = 0;
    f->person.chi_number = "0101011234";
    n = cb_intake_person_keys(&f->person, keys, CB_PERSON_KEYS_MAX);
    assert_int_equal(n, 1);
    assert_string_equal(keys[0], "chi:0101011234");
}

static void test_person_keys_respect_cap(void **state)
{
    fixture *f = *state;
    f->person.chi_number = "0101011234";
    f->person.n_local_ids = 3;
    /* a sentinel after the cap: ASan would not see a write into the array */
    cb_person_key keys[4];
    memset(keys, 'z', sizeof keys);
    size_t n = cb_intake_person_keys(&f->person, keys, 2);
    assert_int_equal(n, 2);
    assert_string_equal(keys[0], "nhs:" NHS);
    assert_string_equal(keys[1], "chi:0101011234");
    assert_int_equal(keys[2][0], 'z');

    n = cb_intake_person_keys(&f->person, keys, 3);
    assert_int_equal(n, 3);
    assert_string_equal(keys[2], "local:pas:general-hospital\x1fH123456");
    assert_int_equal(keys[3][0], 'z');

    memset(keys, 'z', sizeof keys);
    assert_int_equal(cb_intake_person_keys(&f->person, keys, 0), 0);
    assert_int_equal(keys[0][0], 'z');
}

static void test_person_keys_of_the_longest_admitted_identifiers_fit(void **state)
{
    fixture *f = *state;
    char sys[CB_IDENTIFIER_MAX + 1], value[CB_IDENTIFIER_MAX + 1];
    memset(sys, 's', CB_IDENTIFIER_MAX);
    sys[CB_IDENTIFIER_MAX] = '\0';
    memset(value, 'v', CB_IDENTIFIER_MAX);
    value[CB_IDENTIFIER_MAX] = '\0';
    f->lid[0].system = sys;
    f->lid[0].value = value;
    f->person.nhs_number = "";
    admitted(f);
    cb_person_key keys[1];
    assert_int_equal(cb_intake_person_keys(&f->person, keys, 1), 1);
    char want[sizeof keys[0]];
    snprintf(want, sizeof want, "local:%s\x1f%s", sys, value);
    assert_string_equal(keys[0], want);
    assert_int_equal(strlen(keys[0]), 6 + 2 * CB_IDENTIFIER_MAX + 1);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_valid_event_passes),
        T(test_default_config_has_the_demo_agencies),
        T(test_several_recipients_pass),
        T(test_body_with_no_fields_passes),
        T(test_bad_nhs_check_digit_passes),
        T(test_any_one_identifier_is_enough),
        T(test_lengths_at_the_limit_pass),
        T(test_timestamp_range_ends_pass),
        T(test_printable_edges_pass),
        T(test_utf8_text_passes),
        T(test_missing_event_id),
        T(test_missing_from_agency),
        T(test_missing_to_agencies),
        T(test_missing_occurred_at),
        T(test_missing_body),
        T(test_missing_person),
        T(test_person_without_identifiers),
        T(test_local_id_with_empty_system),
        T(test_local_id_with_empty_value),
        T(test_unknown_from_agency),
        T(test_unknown_to_agency_is_named_by_index),
        T(test_from_other_than_sender_is_mismatch),
        T(test_repeated_recipient),
        T(test_over_long_event_id),
        T(test_over_long_identifiers),
        T(test_too_many_local_ids),
        T(test_over_long_case_ref),
        T(test_over_long_correlation_id),
        T(test_control_characters),
        T(test_timestamp_out_of_range),
        T(test_reasons_never_quote_nhs_number_or_name),
        T(test_person_keys_in_order),
        T(test_person_keys_skip_absent_identifiers),
        T(test_person_keys_respect_cap),
        T(test_person_keys_of_the_longest_admitted_identifiers_fit),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
