/* The FHIR ServiceRequest and Task mappings on arbitrary bytes: never crashes; what
 * it refuses has an OperationOutcome that is JSON; what it maps is JSON the
 * broker's reader either takes or refuses with a reason, and a referral,
 * served back as a ServiceRequest, reads as a referral again. The same bytes as
 * HTTP header values (Accept, Content-Type, If-None-Exist) and as a kept
 * resource are read without a crash: a search either parses or says why. As
 * a FHIR message, its focus either maps as a resource does or is refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cb_codec.h"
#include "cb_json.h"
#include "fhir.h"
#include "fhir_search.h"
#include "fhir_kept.h"
#include "fuzz_check.h"

static void outcome_is_json(const cb_fhir_error *err)
{
    CHECK(err->http_status == 400 || err->http_status == 422);
    char *text = cb_fhir_outcome(err, 1, "error");
    CHECK(text);
    json_error_t je;
    json_t *oo = json_loads(text, 0, &je);
    CHECK(oo);
    json_decref(oo);
    free(text);
}

static void try_as(const char *type, const uint8_t *data, size_t size)
{
    static const char *const agencies[] = {"health", "housing", "social-care"};
    static const cb_fhir_org orgs[] = {{"https://fhir.nhs.uk/Id/ods-organization-code", "RY6", "health"},
                                       {NULL, "C81007", "housing"}};
    static const cb_fhir_opts opts = {"social-care", agencies, 3, orgs, 2};
    cb_fhir_error err;
    json_t *r = cb_fhir_parse((const char *)data, size, type, &err);
    if (!r) {
        outcome_is_json(&err);
        return;
    }
    json_t *ev =
        type[0] == 'T' ? cb_fhir_answer(r, size % 2 ? r : NULL, &opts, &err) : cb_fhir_referral(r, &opts, &err);
    json_decref(r);
    if (!ev) {
        outcome_is_json(&err);
        return;
    }
    if (type[0] == 'S') { /* served back as a ServiceRequest, it reads as a referral again */
        json_t *served = cb_fhir_service_request_of(ev);
        CHECK(served);
        cb_fhir_error again_err;
        json_t *again = cb_fhir_referral(served, &opts, &again_err);
        CHECK(again);
        json_decref(again);
        json_decref(served);
    }
    cb_error cerr = {0};
    ProtobufCMessage *m = cb_json_to_message(&carebridge__v1__envelope__descriptor, ev, &cerr);
    CHECK(m || cerr.reason[0]);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    json_decref(ev);
}

static void as_headers(const uint8_t *data, size_t size)
{
    char *text = strndup((const char *)data, size);
    CHECK(text);
    (void)fhir_json_content(text);
    (void)fhir_json_acceptable(text, size % 3 ? NULL : text);
    char why[200] = "";
    fhir_query *q = fhir_query_parse(text, why, sizeof why);
    CHECK(q || why[0]);
    fhir_query_free(&q);
    free(text);
    json_decref(cb_fhir_kept_resource(data, size));
}

/* As a message: its focus, when it has one, maps like a resource posted alone. */
static void as_message(const uint8_t *data, size_t size)
{
    cb_fhir_error err;
    json_t *bundle = cb_fhir_parse((const char *)data, size, "Bundle", &err);
    char kind[16];
    json_t *focus = bundle ? cb_fhir_message_focus(bundle, kind, &err) : NULL;
    CHECK(!bundle || focus || err.http_status == 422);
    if (focus) {
        char *text = json_dumps(focus, JSON_COMPACT);
        CHECK(text);
        try_as(kind, (const uint8_t *)text, strlen(text));
        free(text);
    }
    json_decref(focus);
    json_decref(bundle);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_headers(data, size);
    as_message(data, size);
    try_as("ServiceRequest", data, size);
    try_as("Task", data, size);
    return 0;
}
