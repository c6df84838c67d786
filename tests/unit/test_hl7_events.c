/* HL7 v2 discharges as carebridge events (adapters/health/hl7_events.c):
 * the visit's first admission or discharge message is its admission or
 * discharge and later ones update it; an exact resend has the same id and a reused control id does
 * not; what is not mapped is refused with the ERR it deserves. Every event
 * is checked by the broker's own JSON reader. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cb_codec.h"
#include "cb_json.h"
#include "hl7_events.h"

#define MSH(type, id) "MSH|^~\\&|PAS|RXH|CB|COUNCIL|20261202101112||" type "|" id "|P|2.4\r"
#define PID           "PID|1||M123^^^RXH^MR~9999999484^^^NHS^NH||TEST^ANNE||19400101|F\r"
#define PV1(visit, discharged)                                                                                         \
    "PV1|1|I|WARD7^^^RXH||||C1^Doctor^A||||||||||||" visit "||||||||||||||||||HOME|||||||20261130090000|" discharged   \
    "\r"

static const char *const to[] = {"social-care", "housing"};
static const char *known_id;

static bool known(void *arg, const char *event_id)
{
    (void)arg;
    return known_id && !strcmp(event_id, known_id);
}

static const char *const referral_to[] = {"social-care"};
static const char *const admission_to[] = {"social-care"};
static const char *const agencies[] = {"health", "housing", "social-care"};
static const cb_hl7_map_opts opts = {.agency = "health",
                                     .admission_to = admission_to,
                                     .n_admission_to = 1,
                                     .discharge_to = to,
                                     .n_discharge_to = 2,
                                     .referral_to = referral_to,
                                     .n_referral_to = 1,
                                     .agencies = agencies,
                                     .n_agencies = 3,
                                     .known = known};

static cb_hl7 *parse(const char *text)
{
    cb_hl7_error err;
    cb_hl7 *m = cb_hl7_parse(text, strlen(text), &err);
    if (!m)
        fail_msg("%s", err.text);
    return m;
}

static cb_envelope *event_of(const char *text)
{
    cb_hl7 *m = parse(text);
    cb_hl7_refusal why;
    json_t *ev = cb_hl7_event(m, &opts, &why);
    if (!ev)
        fail_msg("refused: %s", why.text);
    cb_error err = {0};
    cb_envelope *e = (cb_envelope *)cb_json_to_message(&carebridge__v1__envelope__descriptor, ev, &err);
    if (!e)
        fail_msg("the broker's reader refused it: %s", err.reason);
    json_decref(ev);
    cb_hl7_free(&m);
    return e;
}

static void test_a_pending_discharge_is_the_visits_discharge(void **state)
{
    (void)state;
    known_id = NULL;
    cb_envelope *e = event_of(MSH("ADT^A16", "MSG1") "EVN|A16|20261202101000||||20261202095500\r" PID PV1(
        "V0001", "") "PV2|||||||||20261204\r");
    assert_string_equal(e->event_id, "hl7:RXH:visit:V0001:discharge");
    assert_string_equal(e->from_agency, "health");
    assert_int_equal(e->n_to_agencies, 2);
    assert_string_equal(e->to_agencies[0], "social-care");
    assert_string_equal(e->case_ref, "V0001");
    assert_string_equal(e->person->nhs_number, "9999999484");
    assert_int_equal(e->body_case, CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE);
    assert_string_equal(e->discharge->planned_date, "2026-12-04");
    assert_string_equal(e->discharge->setting, "WARD7 (RXH)");
    assert_string_equal(e->discharge->destination, "HOME");
    assert_int_equal(e->occurred_at->seconds, 1796205300); /* EVN-6: when it happened, not when recorded */
    cb_envelope_free(&e);
}

/* The A03 after an A16 updates the visit's discharge with the day it
 * happened; an A03 with nothing before it is the discharge itself. */
static void test_the_discharge_after_it_was_planned_updates_it(void **state)
{
    (void)state;
    known_id = "hl7:RXH:visit:V0001:discharge";
    cb_envelope *e = event_of(MSH("ADT^A03", "MSG2") "EVN|A03|20261203140000\r" PID PV1("V0001", "20261203135500"));
    assert_int_equal(e->body_case, CAREBRIDGE__V1__ENVELOPE__BODY_UPDATE);
    assert_string_equal(e->correlation_id, "hl7:RXH:visit:V0001:discharge");
    assert_int_equal(strncmp(e->event_id, "hl7:RXH:MSG2:", 13), 0);
    assert_string_equal(e->update->discharge->planned_date, "2026-12-03");
    assert_int_equal(e->n_to_agencies, 2); /* where the discharge went: the broker routes every event by its own */
    assert_string_equal(e->to_agencies[0], "social-care");
    cb_envelope_free(&e);
    known_id = NULL;
    e = event_of(MSH("ADT^A03", "MSG2") PID PV1("V0002", "20261203135500"));
    assert_int_equal(e->body_case, CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE);
    assert_string_equal(e->event_id, "hl7:RXH:visit:V0002:discharge");
    assert_string_equal(e->discharge->planned_date, "2026-12-03");
    cb_envelope_free(&e);
    e = event_of(MSH("ADT^A03", "MSG3") PID "PV1|1|I|WARD7\r"); /* no visit number: the message's own id */
    assert_int_equal(strncmp(e->event_id, "hl7:RXH:MSG3:", 13), 0);
    cb_envelope_free(&e);
}

/* ADT^A01: the visit's admission, from PV1 (ward, admission type, attending
 * doctor) and PV2 (reason, expected discharge date), to those configured for
 * admissions; the A02 after it updates it with the new ward and the old. */
static void test_an_admission_and_the_transfer_that_updates_it(void **state)
{
    (void)state;
    known_id = NULL;
    cb_envelope *e = event_of(MSH("ADT^A01^ADT_A01", "ADM1") "EVN|A01|20261202101000\r" PID
                                                             "PV1|1|I|AMU^^^RXH|E|||C1^Doctor^Ann||||||||||||V0009\r"
                                                             "PV2|||^Fall at home||||||20261209\r");
    assert_int_equal(e->body_case, CAREBRIDGE__V1__ENVELOPE__BODY_ADMISSION);
    assert_string_equal(e->event_id, "hl7:RXH:visit:V0009:admission");
    assert_string_equal(e->case_ref, "V0009");
    assert_int_equal(e->n_to_agencies, 1);
    assert_string_equal(e->to_agencies[0], "social-care");
    assert_string_equal(e->admission->setting, "AMU (RXH)");
    assert_string_equal(e->admission->previous_setting, "");
    assert_true(e->admission->emergency);
    assert_string_equal(e->admission->reason, "Fall at home");
    assert_string_equal(e->admission->expected_discharge_date, "2026-12-09");
    assert_string_equal(e->admission->contact->name, "Ann Doctor");
    assert_string_equal(e->admission->contact->role, "attending doctor");
    cb_envelope_free(&e);

    known_id = "hl7:RXH:visit:V0009:admission";
    e = event_of(MSH("ADT^A02^ADT_A02", "ADM2") "EVN|A02|20261203090000\r" PID
                                                "PV1|1|I|WARD7^^^RXH|E||AMU^^^RXH|||||||||||||V0009\r");
    assert_int_equal(e->body_case, CAREBRIDGE__V1__ENVELOPE__BODY_UPDATE);
    assert_string_equal(e->correlation_id, "hl7:RXH:visit:V0009:admission");
    assert_int_equal(e->update->patch_case, CAREBRIDGE__V1__UPDATE__PATCH_ADMISSION);
    assert_string_equal(e->update->admission->setting, "WARD7 (RXH)");
    assert_string_equal(e->update->admission->previous_setting, "AMU (RXH)");
    assert_string_equal(e->update->note, "transferred (ADT^A02)");
    assert_string_equal(e->to_agencies[0], "social-care");
    cb_envelope_free(&e);

    /* A transfer in a feed that began after the admission is the admission;
     * elective, no PV2: the diagnoses as the reason. */
    known_id = NULL;
    e = event_of(MSH("ADT^A02", "ADM3") PID "PV1|1|I|WARD7^^^RXH|C||AMU^^^RXH|||||||||||||V0010\r"
                                            "DG1|1||I10^Hypertension\r");
    assert_int_equal(e->body_case, CAREBRIDGE__V1__ENVELOPE__BODY_ADMISSION);
    assert_string_equal(e->event_id, "hl7:RXH:visit:V0010:admission");
    assert_string_equal(e->admission->previous_setting, "AMU (RXH)");
    assert_false(e->admission->emergency);
    assert_string_equal(e->admission->reason, "Hypertension");
    assert_null(e->admission->contact);
    cb_envelope_free(&e);
}

static void id_of(const char *text, char *out, size_t cap)
{
    cb_hl7 *m = parse(text);
    cb_hl7_event_id(m, out, cap);
    cb_hl7_free(&m);
}

static void test_an_exact_resend_has_the_same_id_and_a_reused_control_id_does_not(void **state)
{
    (void)state;
    char a[128], b[128], c[128], d[128];
    id_of(MSH("ADT^A03", "MSG9") PID PV1("V1", "20261203"), a, sizeof a);
    id_of(MSH("ADT^A03", "MSG9") PID PV1("V1", "20261203"), b, sizeof b);
    id_of("MSH|^~\\&|PAS|RXH|CB|COUNCIL|20261202101112||ADT^A03|MSG9|P|2.4\r\n" PID PV1("V1", "20261203") "\n", c,
          sizeof c); /* the same message over another line ending */
    id_of(MSH("ADT^A03", "MSG9") PID PV1("V2", "20261203"), d, sizeof d);
    assert_string_equal(a, b);
    assert_int_equal(strncmp(a, "hl7:RXH:MSG9:", 13), 0);
    assert_int_equal(strlen(a), 13 + 16);
    assert_string_equal(a, c);
    assert_string_not_equal(a, d);
    id_of(MSH("ADT^A03", "a b/c|d") PID, a, sizeof a); /* a control id with odd bytes: a printable id */
    for (const char *p = a; *p; p++)
        assert_true(*p > ' ' && *p < 0x7F);
}

static void expect_refused(const char *text, int code, const char *segment)
{
    cb_hl7 *m = parse(text);
    cb_hl7_refusal why;
    assert_null(cb_hl7_event(m, &opts, &why));
    assert_int_equal(why.issue.code, code);
    assert_string_equal(why.issue.segment, segment);
    assert_ptr_equal(why.issue.text, why.text);
    assert_null(strstr(why.text, "9999999484"));
    cb_hl7_free(&m);
}

static void test_what_is_not_mapped_is_refused_with_its_err(void **state)
{
    (void)state;
    expect_refused(MSH("ADT^A08", "1") PID, CB_HL7_UNSUPPORTED_EVENT, "MSH");
    expect_refused(MSH("REF^I13", "1") PID, CB_HL7_UNSUPPORTED_EVENT, "MSH");
    expect_refused(MSH("ORU^R01", "1") PID, CB_HL7_UNSUPPORTED_TYPE, "MSH");
    expect_refused("MSH|^~\\&|PAS|RXH|CB|X|1||||P|2.4\r", CB_HL7_REQUIRED_MISSING, "MSH");
    expect_refused(MSH("ADT^A03", "1") PV1("V", "20261203"), CB_HL7_SEGMENT_SEQUENCE, "PID");
    expect_refused(MSH("ADT^A03", "1") "PID|1||||TEST^ANNE\r" PV1("V", "20261203"), CB_HL7_REQUIRED_MISSING, "PID");
    expect_refused(MSH("ADT^A03", "1") PID, CB_HL7_SEGMENT_SEQUENCE, "PV1");
    expect_refused(MSH("ADT^A01", "1") PID, CB_HL7_SEGMENT_SEQUENCE, "PV1");
}

/* REF^I12: RF1's priority and type, the referring provider as the contact,
 * a referred-to provider naming a configured agency as the recipient (else
 * those configured for referrals), diagnoses as the reason. */
static void test_a_referral_from_rf1_prd_and_dg1(void **state)
{
    (void)state;
    cb_envelope *e = event_of(MSH("REF^I12^REF_I12", "R1") "RF1|P|A|HOM^home care|||RF-77^PAS|20261202080000\r"
                                                           "PRD|RP|Jones^Sam^^^Dr|||01234 567890^WPN^PH\r"
                                                           "PRD|RT|Adult Social Care|||||housing\r" PID
                                                           "DG1|1||S72.0^Fractured neck of femur\r"
                                                           "DG1|2||^^^|falls at home\r");
    assert_int_equal(e->body_case, CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL);
    assert_string_equal(e->event_id, "hl7:RXH:referral:RF-77");
    assert_int_equal(e->referral->urgency, CAREBRIDGE__V1__REFERRAL__URGENCY__URGENT);
    assert_string_equal(e->referral->requested_service, "home care");
    assert_string_equal(e->referral->reason, "Fractured neck of femur; falls at home");
    assert_string_equal(e->referral->contact->name, "Sam Jones");
    assert_string_equal(e->referral->contact->role, "referring provider");
    assert_string_equal(e->referral->contact->phone, "01234 567890");
    assert_int_equal(e->n_to_agencies, 1);
    assert_string_equal(e->to_agencies[0], "housing");
    assert_int_equal(e->occurred_at->seconds, 1796198400); /* RF1-7, the referral's effective date */
    cb_envelope_free(&e);
    /* No referred-to provider naming an agency, no RF1-6: the configured recipients, the message's id. */
    e = event_of(MSH("REF^I12", "R2") "RF1|P|R\r" PID "PRD|RT|Someone Else|||||police\r");
    assert_string_equal(e->to_agencies[0], "social-care");
    assert_int_equal(e->referral->urgency, CAREBRIDGE__V1__REFERRAL__URGENCY__ROUTINE);
    assert_int_equal(strncmp(e->event_id, "hl7:RXH:R2:", 11), 0);
    cb_envelope_free(&e);
}

/* NK1 and ROL: the caregiver (NK1-3 CGV) before any next of kin as the
 * referral's carer; a referring provider given only by ROL as its contact;
 * a discharge's attending doctor from ROL when PV1-7 is empty; a name in
 * another character set is left out, never a crash. */
static void test_next_of_kin_and_roles(void **state)
{
    (void)state;
    cb_envelope *e = event_of(MSH("REF^I12", "R3") "RF1|P|R\r" PID "NK1|1|Smith^Jane|DAU^daughter|||07700 900123|N\r"
                                                   "NK1|2|Smith^Bob|CGV^care giver||07700 900456\r"
                                                   "ROL|1|AD|RP|C9^Jones^Sam||||||||01234 567000\r");
    assert_string_equal(e->referral->carer->name, "Bob Smith");
    assert_string_equal(e->referral->carer->role, "carer");
    assert_string_equal(e->referral->carer->phone, "07700 900456");
    assert_string_equal(e->referral->contact->name, "Sam Jones");
    assert_string_equal(e->referral->contact->role, "referring provider");
    assert_string_equal(e->referral->contact->phone, "01234 567000");
    cb_envelope_free(&e);
    e = event_of(MSH("REF^I12", "R4") "RF1|P|R\r" PID "NK1|1|Smith^Jane|DAU^daughter||07700 900123||N\r"
                                      "NK1|2|Acme^Ltd|EMP^employer||||E\r");
    assert_string_equal(e->referral->carer->name, "Jane Smith");
    assert_string_equal(e->referral->carer->role, "next of kin: daughter");
    assert_null(e->referral->contact);
    cb_envelope_free(&e);
    known_id = NULL;
    e = event_of(MSH("ADT^A03", "D5") PID "PV1|1|I|WARD7^^^RXH||||||||||||||||V77\r"
                                          "ROL|1|AD|AT|C2^Patel^Priya||||||||01234 567111\r"
                                          "NK1|1|M\xfcller^Hans|SON^son\r");
    assert_string_equal(e->discharge->contact->name, "Priya Patel");
    assert_string_equal(e->discharge->contact->role, "attending doctor");
    assert_string_equal(e->discharge->contact->phone, "01234 567111");
    cb_envelope_free(&e);
    e = event_of(MSH("REF^I12", "R6") "RF1|P|R\r" PID "NK1|1|M\xfcller^Hans|SON^son\r");
    assert_string_equal(e->referral->carer->name, "Hans M\xc3\xbcller"); /* Latin-1, undeclared: read as UTF-8 */
    cb_envelope_free(&e);
}

/* A discharge agreed and then called off (domain.md's Wednesday): ADT^A13
 * and A25 close the visit's discharge where it went, A11 its admission. */
static void test_a_cancellation_closes_the_visits_event(void **state)
{
    (void)state;
    known_id = "hl7:RXH:visit:V0009:discharge";
    static const struct {
        const char *trigger, *correlation, *reason, *to;
    } cases[] = {{"ADT^A13", "hl7:RXH:visit:V0009:discharge", "discharge cancelled (ADT^A13)", "housing"},
                 {"ADT^A25", "hl7:RXH:visit:V0009:discharge", "pending discharge cancelled (ADT^A25)", "housing"},
                 {"ADT^A11", "hl7:RXH:visit:V0009:admission", "admission cancelled (ADT^A11)", NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[1024];
        snprintf(text, sizeof text, MSH("%s", "C%zu") "EVN||20261202101000\r" PID PV1("V0009", ""), cases[i].trigger,
                 i);
        cb_envelope *e = event_of(text);
        assert_non_null(e->closure);
        assert_string_equal(e->correlation_id, cases[i].correlation);
        assert_string_equal(e->closure->reason, cases[i].reason);
        assert_int_equal(e->n_to_agencies, cases[i].to ? 2 : 1);
        if (cases[i].to)
            assert_string_equal(e->to_agencies[1], cases[i].to);
        cb_envelope_free(&e);
    }
    /* without the visit number there is nothing to name */
    cb_hl7 *m = parse(MSH("ADT^A13", "C9") PID "PV1|1|I|WARD7\r");
    cb_hl7_refusal why;
    assert_null(cb_hl7_event(m, &opts, &why));
    assert_int_equal(why.issue.code, 101);
    assert_string_equal(why.issue.segment, "PV1");
    cb_hl7_free(&m);
    known_id = NULL;
}

int main(void)
{
    setenv("TZ", "Europe/London", 1); /* the sender's local time, as the adapter runs by default */
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_pending_discharge_is_the_visits_discharge),
        cmocka_unit_test(test_the_discharge_after_it_was_planned_updates_it),
        cmocka_unit_test(test_an_admission_and_the_transfer_that_updates_it),
        cmocka_unit_test(test_an_exact_resend_has_the_same_id_and_a_reused_control_id_does_not),
        cmocka_unit_test(test_what_is_not_mapped_is_refused_with_its_err),
        cmocka_unit_test(test_a_referral_from_rf1_prd_and_dg1),
        cmocka_unit_test(test_next_of_kin_and_roles),
        cmocka_unit_test(test_a_cancellation_closes_the_visits_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
