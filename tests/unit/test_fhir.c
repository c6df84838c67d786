/* FHIR R4 ServiceRequests as referrals (adapters/social/fhir.c): the
 * mapping gives carebridge JSON the broker's own reader accepts; what cannot
 * be a referral gets the status, issue code and FHIRPath a FHIR server
 * gives, and never a value of the resource back. */
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
#include "fhir.h"
#include "fhir_search.h"
#include "fhir_kept.h"

static const char *const agencies[] = {"health", "housing", "social-care"};
static const cb_fhir_opts opts = {"social-care", agencies, 3, NULL, 0};

static const char full[] =
    "{\"resourceType\":\"ServiceRequest\",\"id\":\"sr1\",\"status\":\"active\",\"intent\":\"order\","
    "\"identifier\":[{\"system\":\"https://council.example/referrals\",\"value\":\"SC-REF-0001\"}],"
    "\"priority\":\"urgent\",\"code\":{\"text\":\"housing assessment\"},"
    "\"reasonCode\":[{\"text\":\"rent arrears\"},{\"coding\":[{\"display\":\"eviction risk\"}]}],"
    "\"subject\":{\"reference\":\"#pat\"},\"authoredOn\":\"2026-12-02T10:11:12+00:00\","
    "\"requester\":{\"display\":\"duty social worker\"},"
    "\"performer\":[{\"identifier\":{\"value\":\"housing\"}}],"
    "\"requisition\":{\"value\":\"CASE-77\"},"
    "\"supportingInfo\":[{\"reference\":\"#consent\"},{\"reference\":\"#g1\"}],"
    "\"contained\":[{\"resourceType\":\"Patient\",\"id\":\"pat\","
    "\"identifier\":[{\"system\":\"https://fhir.nhs.uk/Id/nhs-number\",\"value\":\"9999999484\"},"
    "{\"system\":\"https://council.example/person\",\"value\":\"P-12\"}],"
    "\"name\":[{\"family\":\"Test\",\"given\":[\"Rosie\",\"May\"]}],\"birthDate\":\"2002-03-04\","
    "\"communication\":[{\"language\":{\"text\":\"English\"},\"preferred\":true}]},"
    "{\"resourceType\":\"Consent\",\"id\":\"consent\",\"status\":\"active\"},"
    "{\"resourceType\":\"Goal\",\"id\":\"g1\",\"description\":{\"text\":\"keep my home\"}}]}";

static json_t *map(const char *text, cb_fhir_error *err)
{
    json_t *sr = cb_fhir_parse(text, strlen(text), "ServiceRequest", err);
    if (!sr)
        return NULL;
    json_t *ev = cb_fhir_referral(sr, &opts, err);
    json_decref(sr);
    return ev;
}

static void test_a_full_service_request_is_a_referral_the_broker_reads(void **state)
{
    (void)state;
    cb_fhir_error err = {0};
    json_t *ev = map(full, &err);
    assert_non_null(ev);
    cb_error cerr = {0};
    cb_envelope *env = (cb_envelope *)cb_json_to_message(&carebridge__v1__envelope__descriptor, ev, &cerr);
    if (!env)
        fail_msg("cb_json_to_message: %s", cerr.reason);
    assert_string_equal(env->event_id, "SC-REF-0001");
    assert_string_equal(env->from_agency, "social-care");
    assert_int_equal(env->n_to_agencies, 1);
    assert_string_equal(env->to_agencies[0], "housing");
    assert_string_equal(env->case_ref, "CASE-77");
    assert_string_equal(env->person->nhs_number, "9999999484");
    assert_string_equal(env->person->name, "Rosie May Test");
    assert_string_equal(env->person->birth_date, "2002-03-04");
    assert_int_equal(env->person->n_local_ids, 1);
    assert_string_equal(env->person->local_ids[0]->value, "P-12");
    assert_int_equal(env->occurred_at->seconds, 1796206272);
    Carebridge__V1__Referral *r = env->referral;
    assert_non_null(r);
    assert_string_equal(r->reason, "rent arrears; eviction risk");
    assert_int_equal(r->urgency, CAREBRIDGE__V1__REFERRAL__URGENCY__URGENT);
    assert_string_equal(r->requested_service, "housing assessment");
    assert_int_equal(r->consent, CAREBRIDGE__V1__REFERRAL__CONSENT__GIVEN);
    assert_string_equal(r->contact->name, "duty social worker");
    assert_int_equal(r->n_outcomes, 1);
    assert_string_equal(r->outcomes[0]->statement, "keep my home");
    assert_string_equal(r->outcomes[0]->ref, "g1");
    assert_int_equal(r->n_communication_needs, 1);
    assert_string_equal(r->communication_needs[0], "language: English (preferred)");
    cb_envelope_free(&env);
    json_decref(ev);
}

static void test_the_subject_by_identifier_alone(void **state)
{
    (void)state;
    cb_fhir_error err = {0};
    json_t *ev = map("{\"resourceType\":\"ServiceRequest\",\"id\":\"x\",\"status\":\"active\",\"intent\":\"order\","
                     "\"authoredOn\":\"2026-12-03\","
                     "\"subject\":{\"identifier\":{\"system\":\"https://fhir.nhs.uk/Id/nhs-number\","
                     "\"value\":\"9999999484\"}},\"performer\":[{\"display\":\"health\"}]}",
                     &err);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev, "person"), "nhsNumber")), "9999999484");
    assert_string_equal(json_string_value(json_object_get(ev, "eventId")), "x");
    assert_null(json_object_get(json_object_get(ev, "referral"), "urgency")); /* no priority: said to be missing */
    json_decref(ev);
}

static void expect(const char *text, int status, const char *code, const char *expression)
{
    cb_fhir_error err = {0};
    json_t *ev = map(text, &err);
    assert_null(ev);
    assert_int_equal(err.http_status, status);
    assert_string_equal(err.code, code);
    assert_string_equal(err.expression, expression);
    assert_true(strlen(err.text) > 15);
    assert_null(strstr(err.text, "9999999484"));
    assert_null(strstr(err.text, "Jane"));
}

#define SR(rest) "{\"resourceType\":\"ServiceRequest\",\"id\":\"x\"," rest "}"
#define SUBJ     "\"subject\":{\"identifier\":{\"system\":\"https://fhir.nhs.uk/Id/nhs-number\",\"value\":\"9999999484\"}}"

static void test_what_cannot_be_a_referral_is_refused_by_element(void **state)
{
    (void)state;
    expect("not json", 400, "structure", "");
    expect("[1,2]", 400, "structure", "");
    expect("{\"resourceType\":\"Task\"}", 400, "structure", "resourceType");
    expect("{\"resourceType\":\"Jane Smith 9999999484\"}", 400, "structure", "resourceType");
    expect("{\"resourceType\":\"ServiceRequest\",\"resourceType\":\"ServiceRequest\"}", 400, "structure", "");
    expect(SR("\"intent\":\"order\"," SUBJ), 422, "required", "ServiceRequest.status");
    expect(SR("\"status\":\"draft\",\"intent\":\"order\"," SUBJ), 422, "value", "ServiceRequest.status");
    expect(SR("\"status\":\"Jane Smith 9999999484\",\"intent\":\"order\"," SUBJ), 422, "value",
           "ServiceRequest.status");
    expect(SR("\"status\":\"active\"," SUBJ), 422, "required", "ServiceRequest.intent");
    expect(SR("\"status\":\"active\",\"intent\":\"order\",\"priority\":\"whenever\"," SUBJ), 422, "value",
           "ServiceRequest.priority");
    expect(SR("\"status\":\"active\",\"intent\":\"order\",\"performer\":[{\"display\":\"health\"}]"), 422, "required",
           "ServiceRequest.subject");
    expect(SR("\"status\":\"active\",\"intent\":\"order\",\"subject\":{\"reference\":\"Patient/123\"},"
              "\"performer\":[{\"display\":\"health\"}]"),
           422, "not-found", "ServiceRequest.subject");
    expect(SR("\"status\":\"active\",\"intent\":\"order\",\"subject\":{\"reference\":\"#gone\"},"
              "\"performer\":[{\"display\":\"health\"}]"),
           422, "not-found", "ServiceRequest.subject");
    expect(SR("\"status\":\"active\",\"intent\":\"order\",\"subject\":\"Patient/1\""), 422, "structure",
           "ServiceRequest.subject");
    expect(SR("\"status\":\"active\",\"intent\":\"order\"," SUBJ), 422, "required", "ServiceRequest.performer");
    expect(SR("\"status\":\"active\",\"intent\":\"order\"," SUBJ ",\"performer\":[{\"display\":\"police\"}]"), 422,
           "value", "ServiceRequest.performer");
    expect(SR("\"status\":\"active\",\"intent\":\"order\"," SUBJ ",\"identifier\":{\"value\":\"a\"}"), 422, "structure",
           "");
    expect("{\"resourceType\":\"ServiceRequest\",\"status\":\"active\",\"intent\":\"order\"," SUBJ
           ",\"performer\":[{\"display\":\"health\"}]}",
           422, "required", "ServiceRequest.identifier");
}

/* A search's page: _count cut to the most a page holds, _offset where it
 * starts; anything else in them an error, never a silent whole set. */
static void test_a_search_has_a_page(void **state)
{
    (void)state;
    size_t offset;
    fhir_query *q = fhir_query_new();
    assert_int_equal(fhir_query_page(q, &offset), FHIR_PAGE_DEFAULT);
    assert_int_equal(offset, 0);
    fhir_query_add(q, "_count", "7");
    fhir_query_add(q, "_offset", "14");
    assert_int_equal(fhir_query_page(q, &offset), 7);
    assert_int_equal(offset, 14);
    fhir_query_add(q, "_count", "100000");
    assert_int_equal(fhir_query_page(q, &offset), FHIR_PAGE_MOST);
    assert_null(fhir_query_error(q));
    fhir_query_free(&q);
    const char *bad[][2] = {{"_count", "x"}, {"_count", "-1"}, {"_count", ""}, {"_offset", "3x"}, {"_offset", "-2"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        q = fhir_query_new();
        fhir_query_add(q, bad[i][0], bad[i][1]);
        assert_non_null(fhir_query_error(q));
        fhir_query_free(&q);
    }
    char why[200];
    assert_null(fhir_query_parse("identifier=x&_offset=1", why, sizeof why)); /* not a condition */
}

/* A message's focus comes out as a resource posted alone would be: what it
 * references in the Bundle contained, however the reference is written. */
static void test_a_message_focus_brings_what_it_references(void **state)
{
    (void)state;
    json_t *bundle = json_loads(
        "{\"resourceType\":\"Bundle\",\"type\":\"message\",\"entry\":["
        "{\"resource\":{\"resourceType\":\"MessageHeader\",\"focus\":[{\"reference\":\"Task/t1\"}]}},"
        "{\"fullUrl\":\"https://x.org/fhir/Task/t1\",\"resource\":{\"resourceType\":\"Task\",\"id\":\"t1\","
        "\"contained\":[{\"resourceType\":\"Goal\",\"id\":\"g\"},{\"resourceType\":\"Goal\",\"id\":\"m1\"}],"
        "\"for\":{\"reference\":\"urn:uuid:p\"},\"owner\":{\"reference\":\"o1\"},"
        "\"requester\":{\"reference\":\"Organization/o1\"},\"focus\":{\"reference\":\"#g\"},"
        "\"basedOn\":[{\"reference\":\"ServiceRequest/elsewhere\"}]}},"
        "{\"fullUrl\":\"urn:uuid:p\",\"resource\":{\"resourceType\":\"Patient\",\"id\":\"p\","
        "\"managingOrganization\":{\"reference\":\"urn:uuid:o1\"},\"contained\":[{\"resourceType\":\"X\"}]}},"
        "{\"fullUrl\":\"urn:uuid:o1\",\"resource\":{\"resourceType\":\"Organization\",\"id\":\"o1\"}}]}",
        0, NULL);
    assert_non_null(bundle);
    char kind[16];
    cb_fhir_error err;
    json_t *task = cb_fhir_message_focus(bundle, kind, &err);
    assert_non_null(task);
    assert_string_equal(kind, "Task");
    json_t *c = json_object_get(task, "contained");
    assert_int_equal(json_array_size(c), 4); /* its own Goals, then the Patient and the Organization, once */
    assert_string_equal(json_string_value(json_object_get(json_array_get(c, 2), "resourceType")), "Patient");
    assert_null(json_object_get(json_array_get(c, 2), "contained"));
    const char *patient = json_string_value(json_object_get(json_array_get(c, 2), "id"));
    const char *org = json_string_value(json_object_get(json_array_get(c, 3), "id"));
    assert_string_not_equal(patient, "m1"); /* the focus had one of that id */
    assert_string_not_equal(org, "m1");
    assert_string_not_equal(patient, org);
    char want[24];
    snprintf(want, sizeof want, "#%s", patient);
    assert_string_equal(json_string_value(json_object_get(json_object_get(task, "for"), "reference")), want);
    snprintf(want, sizeof want, "#%s", org);
    assert_string_equal(json_string_value(json_object_get(json_object_get(task, "owner"), "reference")), want);
    assert_string_equal(json_string_value(json_object_get(json_object_get(task, "requester"), "reference")), want);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(json_array_get(c, 2), "managingOrganization"), "reference")),
        want);
    assert_string_equal(json_string_value(json_object_get(json_object_get(task, "focus"), "reference")), "#g");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(task, "basedOn"), 0), "reference")),
        "ServiceRequest/elsewhere"); /* not in the message: as it was */
    json_decref(task);
    json_decref(bundle);

    const char *bad[][2] = {
        {"{\"resourceType\":\"Bundle\",\"type\":\"collection\"}", "Bundle.type"},
        {"{\"resourceType\":\"Bundle\",\"type\":\"message\",\"entry\":[]}", "Bundle.entry[0].resource"},
        {"{\"resourceType\":\"Bundle\",\"type\":\"message\",\"entry\":[{\"resource\":{\"resourceType\":"
         "\"MessageHeader\"}}]}",
         "MessageHeader.focus"},
        {"{\"resourceType\":\"Bundle\",\"type\":\"message\",\"entry\":[{\"resource\":{\"resourceType\":"
         "\"MessageHeader\",\"focus\":[{\"reference\":\"urn:uuid:x\"}]}},{\"fullUrl\":\"urn:uuid:x\",\"resource\":"
         "{\"resourceType\":\"Patient\"}}]}",
         "MessageHeader.focus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *b = json_loads(bad[i][0], 0, NULL);
        assert_non_null(b);
        assert_null(cb_fhir_message_focus(b, kind, &err));
        assert_int_equal(err.http_status, 422);
        assert_string_equal(err.expression, bad[i][1]);
        json_decref(b);
    }
}

/* If-None-Exist's search is read strictly: a parameter ignored would match
 * what it was meant to tell apart. */
static void test_a_conditional_search_is_read_strictly(void **state)
{
    (void)state;
    char why[200];
    json_t *sr = json_loads("{\"resourceType\":\"ServiceRequest\",\"id\":\"a\",\"status\":\"active\","
                            "\"identifier\":[{\"system\":\"https://x.org/r\",\"value\":\"R 1\"}]}",
                            0, NULL);
    fhir_query *q = fhir_query_parse("?identifier=https%3A%2F%2Fx.org%2Fr%7CR%201&status=active", why, sizeof why);
    assert_non_null(q);
    assert_true(fhir_query_matches(q, sr));
    fhir_query_free(&q);
    q = fhir_query_parse("identifier=https://x.org/r|R 2", why, sizeof why);
    assert_false(fhir_query_matches(q, sr));
    fhir_query_free(&q);
    const char *bad[] = {"colour=blue", "identifier", "identifier=",           "_count=1", "",
                         "&",           NULL,         "_lastUpdated=yesterday"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        why[0] = 0;
        assert_null(fhir_query_parse(bad[i], why, sizeof why));
        assert_true(why[0]);
    }
    json_decref(sr);
}

/* Content negotiation as FHIR clients really send it. */
static void test_formats_are_negotiated(void **state)
{
    (void)state;
    assert_true(fhir_json_content("application/fhir+json; charset=UTF-8"));
    assert_true(fhir_json_content(" Application/JSON"));
    assert_true(fhir_json_content("application/json+fhir;charset=utf-8"));
    assert_false(fhir_json_content("application/fhir+xml"));
    assert_false(fhir_json_content("application/jsonx"));
    assert_false(fhir_json_content(NULL));
    const char *yes[][2] = {
        {NULL, NULL},
        {"", NULL},
        {"application/fhir+json", NULL},
        {"application/fhir+xml;q=1.0, application/fhir+json;q=1.0, application/json+fhir;q=0.9", NULL},
        {"text/html, application/*; q=0.2", NULL},
        {"*/*", NULL},
        {"application/fhir+json; fhirVersion=4.0", NULL},
        {"application/fhir+xml", "json"},
        {NULL, "application/fhir json"}, /* the '+' of a form-encoded query */
        {NULL, "application/json+fhir"}};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        assert_true(fhir_json_acceptable(yes[i][0], yes[i][1]));
    const char *no[][2] = {{"application/fhir+xml", NULL},         {"application/fhir+json;q=0, application/xml", NULL},
                           {"application/fhir+json; q=0.0", NULL}, {"text/html", NULL},
                           {"application/fhir+json", "xml"},       {NULL, "text/turtle"}};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        assert_false(fhir_json_acceptable(no[i][0], no[i][1]));
}

/* A resource is kept as it came, and served with the id and lastUpdated it
 * goes by here, never the sender's. */
static void test_a_kept_resource_is_served_with_its_own_id_and_time(void **state)
{
    (void)state;
    const char body[] = "\xEF\xBB\xBF {\"resourceType\":\"ServiceRequest\",\"id\":\"theirs\","
                        "\"meta\":{\"versionId\":\"7\"},\"status\":\"active\"}\n";
    size_t len;
    char *text = cb_fhir_kept_text("SC-1", "2026-12-04T10:11:12.345Z", body, sizeof body - 1, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    json_t *res = cb_fhir_kept_resource((const uint8_t *)text, len);
    assert_non_null(res);
    assert_string_equal(json_string_value(json_object_get(res, "id")), "SC-1");
    assert_string_equal(json_string_value(json_object_get(res, "status")), "active");
    json_t *meta = json_object_get(res, "meta");
    assert_int_equal(json_object_size(meta), 1);
    assert_string_equal(json_string_value(json_object_get(meta, "lastUpdated")), "2026-12-04T10:11:12.345Z");
    json_decref(res);
    free(text);

    const char *earlier = "{\"resourceType\":\"Task\",\"id\":\"T-1\",\"meta\":{\"lastUpdated\":\"x\"}}";
    res = cb_fhir_kept_resource((const uint8_t *)earlier, strlen(earlier)); /* an earlier adapter's form */
    assert_string_equal(json_string_value(json_object_get(res, "id")), "T-1");
    json_decref(res);
    const char *bad[] = {"", "SC-1", "SC-1\n2026", "\n2026\n{}", "SC-1\n2026\n[1]", "SC-1\n2026\n{"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_null(cb_fhir_kept_resource((const uint8_t *)bad[i], strlen(bad[i])));
}

/* The answer to every POST is written out by hand: it must still be JSON that
 * says what it was given, whatever the strings hold. */
static void test_an_operation_outcome_is_json_whatever_its_strings_hold(void **state)
{
    (void)state;
    cb_fhir_issue issues[] = {
        {"information", "informational", NULL, "ServiceRequest \"SC-1\" kept \\ \t\x01 caf\xc3\xa9", NULL},
        {"warning", "business-rule", NULL, "carebridge flag raised", "MISSING_INFORMATION"},
        {"error", NULL, "Task.statusReason", "cut mid-character \xc3", NULL},
    };
    char *text = cb_fhir_outcome_of(issues, 3);
    assert_non_null(text);
    json_error_t je;
    json_t *oo = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    assert_non_null(oo);
    assert_string_equal(json_string_value(json_object_get(oo, "resourceType")), "OperationOutcome");
    json_t *is = json_object_get(oo, "issue");
    assert_int_equal(json_array_size(is), 3);
    json_t *first = json_array_get(is, 0), *flag = json_array_get(is, 1), *last = json_array_get(is, 2);
    assert_string_equal(json_string_value(json_object_get(first, "diagnostics")),
                        "ServiceRequest \"SC-1\" kept \\ \t\x01 caf\xc3\xa9");
    assert_null(json_object_get(first, "details"));
    json_t *coding = json_array_get(json_object_get(json_object_get(flag, "details"), "coding"), 0);
    assert_string_equal(json_string_value(json_object_get(coding, "system")), "urn:carebridge:flag-type");
    assert_string_equal(json_string_value(json_object_get(coding, "code")), "MISSING_INFORMATION");
    assert_string_equal(json_string_value(json_object_get(last, "code")), "processing");
    assert_string_equal(json_string_value(json_object_get(last, "diagnostics")), "cut mid-character ?");
    assert_string_equal(json_string_value(json_array_get(json_object_get(last, "expression"), 0)), "Task.statusReason");
    json_decref(oo);
    free(text);
}

static void test_an_operation_outcome_names_each_element(void **state)
{
    (void)state;
    cb_fhir_error errs[2] = {{422, "value", "ServiceRequest.status", "status draft is not a referral"},
                             {422, "required", "", "no subject"}};
    char *text = cb_fhir_outcome(errs, 2, "error");
    assert_non_null(text);
    json_error_t je;
    json_t *oo = json_loads(text, 0, &je);
    assert_non_null(oo);
    assert_string_equal(json_string_value(json_object_get(oo, "resourceType")), "OperationOutcome");
    json_t *issues = json_object_get(oo, "issue");
    assert_int_equal(json_array_size(issues), 2);
    json_t *first = json_array_get(issues, 0);
    assert_string_equal(json_string_value(json_object_get(first, "severity")), "error");
    assert_string_equal(json_string_value(json_object_get(first, "code")), "value");
    assert_string_equal(json_string_value(json_array_get(json_object_get(first, "expression"), 0)),
                        "ServiceRequest.status");
    assert_null(json_object_get(json_array_get(issues, 1), "expression"));
    json_decref(oo);
    free(text);
}

static json_t *answer(const char *text, cb_fhir_error *err)
{
    json_t *task = cb_fhir_parse(text, strlen(text), "Task", err);
    if (!task)
        return NULL;
    json_t *ev = cb_fhir_answer(task, NULL, &opts, err);
    json_decref(task);
    return ev;
}

#define TASK(status, rest)                                                                                             \
    "{\"resourceType\":\"Task\",\"id\":\"t1\",\"status\":\"" status "\",\"intent\":\"order\","                         \
    "\"focus\":{\"identifier\":{\"value\":\"HX-REF-9\"}},\"requester\":{\"display\":\"health\"},"                      \
    "\"for\":{\"identifier\":{\"system\":\"https://fhir.nhs.uk/Id/nhs-number\",\"value\":\"9999999484\"}},"            \
    "\"lastModified\":\"2026-12-02T12:00:00Z\"" rest "}"

/* Each status that says something a referrer can act on, as the broker reads it. */
static void test_task_statuses_are_answers_the_broker_reads(void **state)
{
    (void)state;
    static const struct {
        const char *task;
        Carebridge__V1__Envelope__BodyCase body;
        int status;
    } cases[] = {
        {TASK("received", ""), CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE, CAREBRIDGE__V1__RESPONSE__STATUS__ACKNOWLEDGED},
        {TASK("accepted", ""), CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE, CAREBRIDGE__V1__RESPONSE__STATUS__ACCEPTED},
        {TASK("rejected", ",\"statusReason\":{\"text\":\"no capacity this month\"},\"note\":[{\"text\":\"try the "
                          "voluntary sector\"}]"),
         CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE, CAREBRIDGE__V1__RESPONSE__STATUS__DECLINED},
        {TASK("completed", ""), CAREBRIDGE__V1__ENVELOPE__BODY_CLOSURE, 0},
        {TASK("cancelled", ",\"statusReason\":{\"text\":\"person moved away\"}"),
         CAREBRIDGE__V1__ENVELOPE__BODY_CLOSURE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cb_fhir_error err = {0};
        json_t *ev = answer(cases[i].task, &err);
        if (!ev)
            fail_msg("case %zu: %s", i, err.text);
        cb_error cerr = {0};
        cb_envelope *env = (cb_envelope *)cb_json_to_message(&carebridge__v1__envelope__descriptor, ev, &cerr);
        if (!env)
            fail_msg("case %zu: %s", i, cerr.reason);
        assert_int_equal(env->body_case, cases[i].body);
        assert_string_equal(env->event_id, "t1");
        assert_string_equal(env->correlation_id, "HX-REF-9");
        assert_string_equal(env->from_agency, "social-care");
        assert_string_equal(env->to_agencies[0], "health");
        assert_string_equal(env->person->nhs_number, "9999999484");
        assert_int_equal(env->occurred_at->seconds, 1796212800);
        if (env->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE)
            assert_int_equal(env->response->status, cases[i].status);
        if (i == 2) {
            assert_string_equal(env->response->reason, "no capacity this month");
            assert_string_equal(env->response->note, "try the voluntary sector");
        }
        if (i == 4)
            assert_string_equal(env->closure->reason, "cancelled: person moved away");
        cb_envelope_free(&env);
        json_decref(ev);
    }
}

static void expect_task(const char *text, const char *code, const char *expression)
{
    cb_fhir_error err = {0};
    assert_null(answer(text, &err));
    assert_int_equal(err.http_status, 422);
    assert_string_equal(err.code, code);
    assert_string_equal(err.expression, expression);
    assert_null(strstr(err.text, "9999999484"));
}

static void test_a_task_that_says_nothing_to_carry_is_refused(void **state)
{
    (void)state;
    const char *unmapped[] = {"draft", "requested", "ready", "in-progress", "on-hold", "failed", "entered-in-error"};
    for (size_t i = 0; i < sizeof unmapped / sizeof unmapped[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, TASK("%s", ""), unmapped[i]);
        cb_fhir_error err = {0};
        assert_null(answer(text, &err));
        assert_string_equal(err.expression, "Task.status");
        assert_non_null(strstr(err.text, unmapped[i])); /* the status is named */
    }
    expect_task("{\"resourceType\":\"Task\",\"id\":\"t\"}", "required", "Task.status");
    expect_task("{\"resourceType\":\"Task\",\"id\":\"t\",\"status\":\"accepted\"}", "required", "Task.focus");
    expect_task("{\"resourceType\":\"Task\",\"id\":\"t\",\"status\":\"accepted\",\"focus\":{\"reference\":"
                "\"ServiceRequest/abc\"}}",
                "required", "Task.requester");
    expect_task("{\"resourceType\":\"Task\",\"id\":\"t\",\"status\":\"accepted\",\"focus\":{\"reference\":"
                "\"ServiceRequest/abc\"},\"requester\":{\"display\":\"health\"},\"for\":{\"reference\":\"Patient/1\"}}",
                "not-found", "Task.for");
    expect_task("{\"resourceType\":\"Task\",\"status\":\"accepted\"}", "required", "Task.identifier");
}

/* A delivered referral served as a ServiceRequest: the patient, consent and
 * outcomes contained and referenced (FHIR's dom-3), ids FHIR allows, and
 * read back by cb_fhir_referral to the same referral. */
static void test_a_delivered_referral_is_served_as_a_service_request(void **state)
{
    (void)state;
    json_error_t je;
    json_t *ev =
        json_loads("{\"eventId\":\"hx/ref 1\",\"person\":{\"nhsNumber\":\"9999999484\",\"name\":\"Rosie Test\","
                   "\"birthDate\":\"2002-03-04\",\"localIds\":[{\"system\":\"pas\",\"value\":\"M1\"}]},"
                   "\"fromAgency\":\"health\",\"toAgencies\":[\"social-care\"],\"caseRef\":\"V9\","
                   "\"occurredAt\":\"2026-12-02T10:11:12Z\",\"referral\":{\"reason\":\"falls\","
                   "\"urgency\":\"EMERGENCY\",\"requestedService\":\"reablement\",\"consent\":\"GIVEN\","
                   "\"contact\":{\"name\":\"ward sister\"},\"outcomes\":[{\"statement\":\"walk to the shop\","
                   "\"ref\":\"o1\"},{\"statement\":\"see friends\",\"status\":\"ACHIEVED\"}]}}",
                   0, &je);
    assert_non_null(ev);
    json_t *sr = cb_fhir_service_request_of(ev);
    assert_non_null(sr);
    const char *id = json_string_value(json_object_get(sr, "id"));
    assert_true(strlen(id) <= 64 &&
                strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == strlen(id));
    assert_string_equal(json_string_value(json_object_get(sr, "priority")), "stat");
    json_t *contained = json_object_get(sr, "contained");
    assert_int_equal(json_array_size(contained), 4); /* the patient, the consent, two goals */
    json_t *goal = json_array_get(contained, 3);
    assert_string_equal(json_string_value(json_object_get(goal, "resourceType")), "Goal");
    assert_string_equal(json_string_value(json_object_get(goal, "lifecycleStatus")), "completed");
    /* Every contained resource is referenced from the ServiceRequest. */
    char *text = json_dumps(sr, JSON_COMPACT);
    size_t i;
    json_t *c;
    json_array_foreach(contained, i, c)
    {
        char ref[80];
        snprintf(ref, sizeof ref, "\"reference\":\"#%s\"", json_string_value(json_object_get(c, "id")));
        assert_non_null(strstr(text, ref));
    }
    /* And read back: the same referral. */
    cb_fhir_error err = {0};
    json_t *parsed = cb_fhir_parse(text, strlen(text), "ServiceRequest", &err);
    assert_non_null(parsed);
    json_t *back = cb_fhir_referral(parsed, &opts, &err);
    if (!back)
        fail_msg("%s", err.text);
    cb_error cerr = {0};
    cb_envelope *e = (cb_envelope *)cb_json_to_message(&carebridge__v1__envelope__descriptor, back, &cerr);
    assert_non_null(e);
    assert_string_equal(e->event_id, "hx/ref 1");
    assert_string_equal(e->person->nhs_number, "9999999484");
    assert_string_equal(e->person->birth_date, "2002-03-04");
    assert_string_equal(e->case_ref, "V9");
    assert_string_equal(e->to_agencies[0], "social-care");
    assert_string_equal(e->referral->reason, "falls");
    assert_string_equal(e->referral->requested_service, "reablement");
    assert_int_equal(e->referral->urgency, CAREBRIDGE__V1__REFERRAL__URGENCY__EMERGENCY);
    assert_int_equal(e->referral->consent, CAREBRIDGE__V1__REFERRAL__CONSENT__GIVEN);
    assert_string_equal(e->referral->contact->name, "ward sister");
    assert_int_equal(e->referral->n_outcomes, 2);
    assert_string_equal(e->referral->outcomes[0]->ref, "o1");
    assert_int_equal(e->occurred_at->seconds, 1796206272);
    cb_envelope_free(&e);
    json_decref(back);
    json_decref(parsed);
    free(text);
    json_decref(sr);
    json_t *not_referral = json_pack("{s:s,s:{}}", "eventId", "x", "closure");
    assert_null(cb_fhir_service_request_of(not_referral));
    json_decref(not_referral);
    json_decref(ev);
}

/* A discharge social care must act on is served as a ServiceRequest too,
 * its planned day as the occurrence. */
static void test_a_delivered_discharge_is_served_as_a_service_request(void **state)
{
    (void)state;
    json_t *ev = json_loads("{\"eventId\":\"hl7:RXH:visit:V1:discharge\",\"fromAgency\":\"health\","
                            "\"toAgencies\":[\"social-care\",\"housing\"],\"person\":{\"nhsNumber\":\"9999999484\"},"
                            "\"discharge\":{\"setting\":\"WARD7 (RXH)\",\"destination\":\"HOME\","
                            "\"plannedDate\":\"2026-12-03\"}}",
                            0, NULL);
    assert_non_null(ev);
    json_t *sr = cb_fhir_service_request_of(ev);
    assert_non_null(sr);
    assert_string_equal(json_string_value(json_object_get(sr, "occurrenceDateTime")), "2026-12-03");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(sr, "category"), 0), "text")),
                        "discharge");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(sr, "note"), 1), "text")),
                        "to: HOME");
    assert_null(strchr(json_string_value(json_object_get(sr, "id")), ':'));
    json_decref(sr);
    json_decref(ev);
}

/* The expected discharge date an Encounter carries, by R5's cross-version extension. */
static const char *planned_end(const json_t *enc)
{
    const json_t *e = json_array_get(json_object_get(enc, "extension"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "url")),
                        "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate");
    return json_string_value(json_object_get(e, "valueDateTime"));
}

/* An admission is served as an Encounter; its transfer moves the active
 * location; an update applied twice (redelivered) is applied once, to an
 * Encounter and to a ServiceRequest. */
static void test_an_admission_is_an_encounter_and_updates_apply_once(void **state)
{
    (void)state;
    json_t *ev = json_loads("{\"eventId\":\"hl7:RXH:visit:V9:admission\",\"fromAgency\":\"health\","
                            "\"person\":{\"nhsNumber\":\"9999999484\"},\"occurredAt\":\"2026-12-02T10:00:00Z\","
                            "\"admission\":{\"setting\":\"AMU (RXH)\",\"emergency\":true,\"reason\":\"fall\","
                            "\"expectedDischargeDate\":\"2026-12-09\"}}",
                            0, NULL);
    json_t *enc = cb_fhir_encounter_of(ev);
    assert_non_null(enc);
    assert_string_equal(json_string_value(json_object_get(enc, "resourceType")), "Encounter");
    assert_string_equal(json_string_value(json_object_get(enc, "status")), "in-progress");
    assert_string_equal(json_string_value(json_object_get(json_object_get(enc, "period"), "start")),
                        "2026-12-02T10:00:00Z");
    assert_string_equal(planned_end(enc), "2026-12-09");
    assert_null(cb_fhir_service_request_of(ev));
    json_t *moved = json_loads("{\"eventId\":\"m\",\"correlationId\":\"hl7:RXH:visit:V9:admission\","
                               "\"update\":{\"admission\":{\"setting\":\"WARD7 (RXH)\","
                               "\"expectedDischargeDate\":\"2026-12-11\"},\"note\":\"moved\"}}",
                               0, NULL);
    assert_true(cb_fhir_apply_update(enc, moved));
    assert_true(cb_fhir_apply_update(enc, moved));
    const json_t *where = json_object_get(enc, "location");
    assert_int_equal(json_array_size(where), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(where, 0), "status")), "completed");
    assert_string_equal(json_string_value(json_object_get(json_array_get(where, 1), "status")), "active");
    assert_null(json_object_get(enc, "note"));                               /* R4's Encounter has none */
    assert_int_equal(json_array_size(json_object_get(enc, "extension")), 1); /* replaced, not added */
    assert_string_equal(planned_end(enc), "2026-12-11");
    json_t *dis = json_loads("{\"eventId\":\"d\",\"discharge\":{\"plannedDate\":\"2026-12-03\"}}", 0, NULL);
    json_t *sr = cb_fhir_service_request_of(dis);
    json_t *upd = json_loads("{\"eventId\":\"u\",\"correlationId\":\"d\",\"update\":{\"discharge\":"
                             "{\"destination\":\"HOME\"},\"note\":\"discharged\"}}",
                             0, NULL);
    assert_true(cb_fhir_apply_update(sr, upd));
    assert_true(cb_fhir_apply_update(sr, upd));
    assert_int_equal(json_array_size(json_object_get(sr, "note")), 2); /* "to: HOME", "discharged": once each */
    json_decref(upd);
    json_decref(sr);
    json_decref(dis);
    json_decref(moved);
    json_decref(enc);
    json_decref(ev);
}

/* An answer delivered to social care is served as a Task that reads back
 * as the same answer: the status, the referral it answers, the reason. */
static void test_a_delivered_answer_is_served_as_a_task(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"ACKNOWLEDGED", "received"}, {"ACCEPTED", "accepted"}, {"DECLINED", "rejected"}};
    for (size_t i = 0; i < 3; i++) {
        char text[600];
        snprintf(text, sizeof text,
                 "{\"eventId\":\"hl7:RXH:R1:answer\",\"correlationId\":\"sc-ref-1\",\"fromAgency\":\"health\","
                 "\"toAgencies\":[\"social-care\"],\"occurredAt\":\"2026-12-02T10:00:00Z\","
                 "\"person\":{\"nhsNumber\":\"9999999484\"},\"response\":{\"status\":\"%s\",\"reason\":\"ward full\"}}",
                 cases[i][0]);
        json_t *ev = json_loads(text, 0, NULL);
        assert_non_null(ev);
        json_t *task = cb_fhir_task_of(ev);
        assert_non_null(task);
        assert_string_equal(json_string_value(json_object_get(task, "status")), cases[i][1]);
        assert_string_equal(json_string_value(json_object_get(task, "intent")), "order");
        const char *id = json_string_value(json_object_get(task, "id"));
        assert_non_null(id);
        assert_null(strchr(id, ':')); /* a FHIR id */
        /* read back by the adapter's own Task mapping, as the health side would send it */
        static const char *const back[] = {"health", "housing", "social-care"};
        cb_fhir_opts as_health = {"health", back, 3, NULL, 0};
        json_object_set_new(task, "requester", json_pack("{s:{s:s}}", "identifier", "value", "social-care"));
        cb_fhir_error err = {0};
        json_t *again = cb_fhir_answer(task, NULL, &as_health, &err);
        if (!again)
            fail_msg("case %zu: %s (%s)", i, err.text, err.expression);
        assert_string_equal(json_string_value(json_object_get(again, "correlationId")), "sc-ref-1");
        const json_t *resp = json_object_get(again, "response");
        assert_string_equal(json_string_value(json_object_get(resp, "status")), cases[i][0]);
        assert_string_equal(json_string_value(json_object_get(resp, "reason")), "ward full");
        json_decref(again);
        json_decref(task);
        json_decref(ev);
    }
    json_t *referral = json_loads("{\"eventId\":\"x\",\"referral\":{}}", 0, NULL);
    assert_null(cb_fhir_task_of(referral)); /* not an answer */
    json_decref(referral);
}

/* Real resources name organisations by ODS code (NHS England's DPP
 * referral: a performer Reference with an ods-organization-code
 * identifier; e-RS: a requester that is a contained PractitionerRole
 * whose organization has one). With --org those name the agency. */
static void test_organisation_identifiers_name_agencies(void **state)
{
    (void)state;
    static const cb_fhir_org orgs[] = {{"https://fhir.nhs.uk/Id/ods-organization-code", "RY6", "health"},
                                       {NULL, "C81007", "housing"}};
    const cb_fhir_opts with_orgs = {"social-care", agencies, 3, orgs, 2};
    static const char dpp[] =
        SR("\"status\":\"active\",\"intent\":\"order\",\"authoredOn\":\"2026-12-03\"," SUBJ
           ",\"performer\":[{\"reference\":\"Organization/af79\","
           "\"identifier\":{\"system\":\"https://fhir.nhs.uk/Id/ods-organization-code\",\"value\":\"RY6\"},"
           "\"display\":\"Leeds Community Healthcare Nhs Trust (RY6)\"}]");
    cb_fhir_error err = {0};
    json_t *sr = cb_fhir_parse(dpp, strlen(dpp), "ServiceRequest", &err);
    json_t *ev = cb_fhir_referral(sr, &with_orgs, &err);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_array_get(json_object_get(ev, "toAgencies"), 0)), "health");
    json_decref(ev);
    assert_null(cb_fhir_referral(sr, &opts, &err)); /* without the mapping the ODS code names no agency */
    assert_string_equal(err.expression, "ServiceRequest.performer");
    json_decref(sr);
    /* the same value under another system is another organisation */
    static const char other[] =
        SR("\"status\":\"active\",\"intent\":\"order\"," SUBJ ",\"performer\":[{\"identifier\":{\"system\":"
           "\"https://example.org/orgs\",\"value\":\"RY6\"}}]");
    sr = cb_fhir_parse(other, strlen(other), "ServiceRequest", &err);
    assert_null(cb_fhir_referral(sr, &with_orgs, &err));
    json_decref(sr);
    /* a Task whose requester is a contained PractitionerRole of a mapped organisation */
    static const char task[] =
        "{\"resourceType\":\"Task\",\"id\":\"t9\",\"status\":\"accepted\",\"intent\":\"order\","
        "\"authoredOn\":\"2026-12-03\","
        "\"focus\":{\"identifier\":{\"value\":\"HX-REF-9\"}},\"requester\":{\"reference\":\"#requester\"},"
        "\"for\":{\"identifier\":{\"system\":\"https://fhir.nhs.uk/Id/nhs-number\",\"value\":\"9999999484\"}},"
        "\"contained\":[{\"resourceType\":\"PractitionerRole\",\"id\":\"requester\",\"practitioner\":{"
        "\"identifier\":{\"system\":\"https://fhir.nhs.uk/Id/sds-user-id\",\"value\":\"921600556514\"}},"
        "\"organization\":{\"identifier\":{\"system\":\"https://fhir.nhs.uk/Id/ods-organization-code\","
        "\"value\":\"C81007\"}}}]}";
    json_t *t = cb_fhir_parse(task, strlen(task), "Task", &err);
    ev = cb_fhir_answer(t, NULL, &with_orgs, &err);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_array_get(json_object_get(ev, "toAgencies"), 0)), "housing");
    json_decref(ev);
    json_decref(t);
}

/* A case system answering a referral it was served often sends only the
 * status, its own id and the focus: who referred, and about whom, are in
 * the ServiceRequest served here, and its eventId is what the answer
 * correlates by (the served id can be a hash of it). */
static void test_a_task_takes_what_it_omits_from_the_referral_served(void **state)
{
    (void)state;
    json_t *ev = json_pack("{s:s,s:{s:s},s:s,s:[s],s:{s:s}}", "eventId", "hl7:RXH:visit:V1:referral", "person",
                           "nhsNumber", "9999999484", "fromAgency", "health", "toAgencies", "social-care", "referral",
                           "reason", "needs a care assessment");
    json_t *served = cb_fhir_service_request_of(ev);
    assert_non_null(served);
    char id[65];
    cb_fhir_id("hl7:RXH:visit:V1:referral", id);
    assert_string_equal(json_string_value(json_object_get(served, "id")), id);
    char text[400];
    snprintf(text, sizeof text,
             "{\"resourceType\":\"Task\",\"id\":\"t-7\",\"status\":\"accepted\",\"intent\":\"order\","
             "\"lastModified\":\"2026-12-03T09:00:00Z\",\"focus\":{\"reference\":\"ServiceRequest/%s/_history/1\"}}",
             id);
    cb_fhir_error err = {0};
    json_t *task = cb_fhir_parse(text, strlen(text), "Task", &err);
    char focus[65];
    assert_true(cb_fhir_focus_id(task, focus));
    assert_string_equal(focus, id);
    assert_null(cb_fhir_answer(task, NULL, &opts, &err)); /* alone it names neither */
    assert_string_equal(err.expression, "Task.requester");
    json_t *answer = cb_fhir_answer(task, served, &opts, &err);
    if (!answer)
        fail_msg("%s (%s)", err.text, err.expression);
    assert_string_equal(json_string_value(json_array_get(json_object_get(answer, "toAgencies"), 0)), "health");
    assert_string_equal(json_string_value(json_object_get(answer, "correlationId")), "hl7:RXH:visit:V1:referral");
    assert_string_equal(json_string_value(json_object_get(json_object_get(answer, "person"), "nhsNumber")),
                        "9999999484");
    json_decref(answer);
    /* a referral this adapter sent itself is not answered back to its sender, itself */
    json_object_set_new(served, "requester", json_pack("{s:{s:s}}", "identifier", "value", "social-care"));
    assert_null(cb_fhir_answer(task, served, &opts, &err));
    assert_string_equal(err.expression, "Task.requester");
    json_decref(task);
    json_decref(served);
    json_decref(ev);
}

/* Systems name the referral a Task answers in every form R4 allows: a
 * relative or absolute literal reference, with or without its version, by
 * focus or, failing that, by basedOn (the request the Task fulfils). */
static void test_a_task_names_its_referral_by_focus_or_based_on(void **state)
{
    (void)state;
    static const struct {
        const char *names, *id; /* NULL: none */
    } cases[] = {
        {"\"focus\":{\"reference\":\"ServiceRequest/sr-1\"}", "sr-1"},
        {"\"focus\":{\"reference\":\"https://sc.example.org/fhir/ServiceRequest/sr-2/_history/3\"}", "sr-2"},
        {"\"basedOn\":[{\"reference\":\"CarePlan/cp-1\"},{\"reference\":\"http://h/fhir/ServiceRequest/sr-3\"}]",
         "sr-3"},
        {"\"basedOn\":[{\"type\":\"ServiceRequest\",\"identifier\":{\"value\":\"sr-4\"}}]", "sr-4"},
        {"\"basedOn\":[{\"type\":\"CarePlan\",\"identifier\":{\"value\":\"cp-2\"}}]", NULL},
        {"\"focus\":{\"reference\":\"ServiceRequest/sr-5/extra\"}", NULL},
        {"\"focus\":{\"reference\":\"MyServiceRequest/sr-6\"}", NULL},
        {"\"focus\":{\"reference\":\"urn:uuid:5b1c7a5e-6d2f-4f1a-9a57-3d1c2b0e4f10\"}", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[600];
        snprintf(text, sizeof text,
                 "{\"resourceType\":\"Task\",\"id\":\"t-%zu\",\"status\":\"accepted\",\"intent\":\"order\","
                 "\"lastModified\":\"2026-12-03T09:00:00Z\",\"requester\":{\"display\":\"health\"},"
                 "\"for\":{\"identifier\":{\"system\":\"https://fhir.nhs.uk/Id/nhs-number\",\"value\":"
                 "\"9434765919\"}},%s}",
                 i, cases[i].names);
        cb_fhir_error err = {0};
        json_t *task = cb_fhir_parse(text, strlen(text), "Task", &err);
        assert_non_null(task);
        char id[65];
        if (!cases[i].id) {
            assert_false(cb_fhir_focus_id(task, id));
            assert_null(cb_fhir_answer(task, NULL, &opts, &err));
            assert_string_equal(err.expression, "Task.focus");
            json_decref(task);
            continue;
        }
        assert_true(cb_fhir_focus_id(task, id));
        assert_string_equal(id, cases[i].id);
        json_t *answer = cb_fhir_answer(task, NULL, &opts, &err);
        if (!answer)
            fail_msg("%zu: %s (%s)", i, err.text, err.expression);
        assert_string_equal(json_string_value(json_object_get(answer, "correlationId")), cases[i].id);
        json_decref(answer);
        json_decref(task);
    }
}

/* A modifier extension can turn a referral into "not to be acted on": a
 * server that knows none may not process the resource (FHIR's rule), so it
 * is refused where it stands, at any depth. An ordinary extension is not;
 * nor is the byte-order mark some clients put before the JSON. */
static void test_a_modifier_extension_is_refused_where_it_stands(void **state)
{
    (void)state;
    static const struct {
        const char *text, *path; /* NULL: taken */
    } cases[] = {
        {SR("\"modifierExtension\":[{\"url\":\"https://x.org/not-to-act\",\"valueBoolean\":true}]"),
         "ServiceRequest.modifierExtension"},
        {SR("\"contained\":[{\"resourceType\":\"Patient\",\"id\":\"p\"},{\"resourceType\":\"Consent\","
            "\"id\":\"c\",\"modifierExtension\":[{\"url\":\"https://x.org/m\",\"valueCode\":\"no\"}]}]"),
         "ServiceRequest.contained[1].modifierExtension"},
        {SR("\"subject\":{\"identifier\":{\"value\":\"1\",\"modifierExtension\":[]}}"),
         "ServiceRequest.subject.identifier.modifierExtension"},
        {SR("\"extension\":[{\"url\":\"https://x.org/plain\",\"valueString\":\"y\"}]"), NULL},
        {"\xEF\xBB\xBF" SR("\"status\":\"active\""), NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cb_fhir_error err = {0};
        json_t *r = cb_fhir_parse(cases[i].text, strlen(cases[i].text), "ServiceRequest", &err);
        if (!cases[i].path) {
            if (!r)
                fail_msg("%zu: %s", i, err.text);
            json_decref(r);
            continue;
        }
        assert_null(r);
        assert_int_equal(err.http_status, 422);
        assert_string_equal(err.code, "extension");
        assert_string_equal(err.expression, cases[i].path);
    }
}

/* When it happened: its own date, else meta.lastUpdated. None is refused
 * by name, not stamped with the moment it arrived (a resend would then be
 * another event under its id), and so is a year alone. */
static void test_a_resource_says_when_it_happened_or_is_refused(void **state)
{
    (void)state;
    cb_fhir_error err = {0};
    static const char *const texts[] = {
        SR("\"status\":\"active\",\"intent\":\"order\"," SUBJ ",\"performer\":[{\"display\":\"housing\"}]"),
        SR("\"status\":\"active\",\"intent\":\"order\"," SUBJ ",\"performer\":[{\"display\":\"housing\"}],"
           "\"meta\":{\"lastUpdated\":\"2025-05-06T07:08:09Z\"}"),
        SR("\"status\":\"active\",\"intent\":\"order\"," SUBJ ",\"performer\":[{\"display\":\"housing\"}],"
           "\"authoredOn\":\"2026\""),
        SR("\"status\":\"active\",\"intent\":\"order\"," SUBJ ",\"performer\":[{\"display\":\"housing\"}],"
           "\"meta\":{\"lastUpdated\":\"2025-05\"}")};
    static const char *const refused[] = {"ServiceRequest.authoredOn", NULL, "ServiceRequest.authoredOn",
                                          "ServiceRequest.meta.lastUpdated"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        json_t *sr = cb_fhir_parse(texts[i], strlen(texts[i]), "ServiceRequest", &err);
        json_t *ev = cb_fhir_referral(sr, &opts, &err);
        if (refused[i]) {
            assert_null(ev);
            assert_string_equal(err.expression, refused[i]);
        } else {
            assert_string_equal(json_string_value(json_object_get(ev, "occurredAt")), "2025-05-06T07:08:09Z");
        }
        json_decref(ev);
        json_decref(sr);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_organisation_identifiers_name_agencies),
        cmocka_unit_test(test_a_resource_says_when_it_happened_or_is_refused),
        cmocka_unit_test(test_a_task_takes_what_it_omits_from_the_referral_served),
        cmocka_unit_test(test_a_task_names_its_referral_by_focus_or_based_on),
        cmocka_unit_test(test_a_modifier_extension_is_refused_where_it_stands),
        cmocka_unit_test(test_a_full_service_request_is_a_referral_the_broker_reads),
        cmocka_unit_test(test_the_subject_by_identifier_alone),
        cmocka_unit_test(test_what_cannot_be_a_referral_is_refused_by_element),
        cmocka_unit_test(test_an_operation_outcome_names_each_element),
        cmocka_unit_test(test_an_operation_outcome_is_json_whatever_its_strings_hold),
        cmocka_unit_test(test_a_kept_resource_is_served_with_its_own_id_and_time),
        cmocka_unit_test(test_formats_are_negotiated),
        cmocka_unit_test(test_a_conditional_search_is_read_strictly),
        cmocka_unit_test(test_a_message_focus_brings_what_it_references),
        cmocka_unit_test(test_a_search_has_a_page),
        cmocka_unit_test(test_task_statuses_are_answers_the_broker_reads),
        cmocka_unit_test(test_a_task_that_says_nothing_to_carry_is_refused),
        cmocka_unit_test(test_a_delivered_referral_is_served_as_a_service_request),
        cmocka_unit_test(test_an_admission_is_an_encounter_and_updates_apply_once),
        cmocka_unit_test(test_a_delivered_answer_is_served_as_a_task),
        cmocka_unit_test(test_a_delivered_discharge_is_served_as_a_service_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
