/* The proto3 JSON mapping (protos/cb_json.c) and the contract checks it relies
 * on (protos/cb_check.c). Example files are read from $CB_SRC/examples. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "carebridge.pb-c.h"
#include "cb_check.h"
#include "cb_json.h"

typedef Carebridge__V1__Envelope Envelope;

/* ---------------------------------------------------------------- helpers */

static FILE *open_example(const char *name)
{
    const char *src = getenv("CB_SRC");
    char path[512];
    snprintf(path, sizeof path, "%s/examples/%s", src ? src : "..", name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s (set CB_SRC to the source tree)", path);
    return f;
}

/* The next line without its newline, or NULL at the end; the caller frees it. */
static char *next_line(FILE *f)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    if (n < 0) {
        free(line);
        return NULL;
    }
    if (n > 0 && line[n - 1] == '\n')
        line[n - 1] = '\0';
    return line;
}

static ProtobufCMessage *load(const ProtobufCMessageDescriptor *d, const char *text, cb_error *err)
{
    return cb_json_loads(d, text, strlen(text), err);
}

static Envelope *load_envelope(const char *text)
{
    cb_error err = {0};
    ProtobufCMessage *m = load(&carebridge__v1__envelope__descriptor, text, &err);
    if (!m)
        fail_msg("did not load: %s", err.reason);
    return (Envelope *)m;
}

/* Loading text fails with exactly this code and reason. */
static void expect_load_error(const ProtobufCMessageDescriptor *d, const char *text, cb_code code, const char *reason)
{
    cb_error err = {0};
    ProtobufCMessage *m = load(d, text, &err);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    assert_null(m);
    assert_string_equal(cb_code_name(err.code), cb_code_name(code));
    if (reason)
        assert_string_equal(err.reason, reason);
}

static void expect_envelope_error(const char *text, const char *reason)
{
    expect_load_error(&carebridge__v1__envelope__descriptor, text, CB_INVALID_FIELD, reason);
}

/* Text in, canonical text out. */
static void expect_canonical(const ProtobufCMessageDescriptor *d, const char *in, const char *out)
{
    cb_error err = {0};
    ProtobufCMessage *m = load(d, in, &err);
    if (!m)
        fail_msg("did not load: %s", err.reason);
    char *text = cb_json_dumps(m, &err);
    assert_non_null(text);
    assert_string_equal(text, out);
    free(text);
    protobuf_c_message_free_unpacked(m, NULL);
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), *len);
    return buf;
}

/* A canonical line survives JSON -> message -> JSON unchanged, its wire form
 * decodes back to the same JSON, and re-reading the output packs identically. */
static void assert_round_trip(const ProtobufCMessageDescriptor *d, const char *line)
{
    cb_error err = {0};
    ProtobufCMessage *first = load(d, line, &err);
    if (!first)
        fail_msg("did not load: %s", err.reason);

    char *text = cb_json_dumps(first, &err);
    assert_non_null(text);
    assert_string_equal(text, line);

    json_t *expected = json_loads(line, 0, NULL), *got = cb_json_from_message(first, &err);
    assert_non_null(expected);
    assert_non_null(got);
    assert_true(json_equal(expected, got));
    json_decref(expected);
    json_decref(got);

    size_t len, again_len;
    uint8_t *wire = pack(first, &len);
    ProtobufCMessage *unpacked = protobuf_c_message_unpack(d, NULL, len, wire);
    assert_non_null(unpacked);
    char *from_wire = cb_json_dumps(unpacked, &err);
    assert_non_null(from_wire);
    assert_string_equal(from_wire, line);

    ProtobufCMessage *again = load(d, text, &err);
    assert_non_null(again);
    uint8_t *again_wire = pack(again, &again_len);
    assert_int_equal(again_len, len);
    assert_memory_equal(again_wire, wire, len);

    free(again_wire);
    protobuf_c_message_free_unpacked(again, NULL);
    free(from_wire);
    protobuf_c_message_free_unpacked(unpacked, NULL);
    free(wire);
    free(text);
    protobuf_c_message_free_unpacked(first, NULL);
}

static char *dumps_or_fail(const ProtobufCMessage *m)
{
    cb_error err = {0};
    char *text = cb_json_dumps(m, &err);
    if (!text)
        fail_msg("did not dump: %s", err.reason);
    return text;
}

/* ------------------------------------------------------------- examples */

/* One file per sender, so each can be sent as it is: `send --as A examples/bodies/A.ndjson`. */
static const char *const body_examples[] = {"bodies/health.ndjson", "bodies/social-care.ndjson",
                                            "bodies/voluntary.ndjson", "bodies/housing.ndjson"};

static void test_all_bodies_round_trip(void **state)
{
    (void)state;
    bool body[17] = {false}, status[8] = {false};
    for (size_t i = 0; i < sizeof body_examples / sizeof body_examples[0]; i++) {
        FILE *f = open_example(body_examples[i]);
        const char *sender = strrchr(body_examples[i], '/') + 1;
        char *line;
        while ((line = next_line(f))) {
            assert_round_trip(&carebridge__v1__envelope__descriptor, line);
            Envelope *env = load_envelope(line);
            assert_int_equal(strncmp(env->from_agency, sender, strlen(env->from_agency)), 0);
            assert_int_equal(sender[strlen(env->from_agency)], '.');
            assert_true(env->body_case < 17);
            body[env->body_case] = true;
            if (env->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE) {
                assert_true(env->response->status < 8);
                status[env->response->status] = true;
            }
            protobuf_c_message_free_unpacked(&env->base, NULL);
            free(line);
        }
        fclose(f);
    }
    assert_true(body[CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL]);
    assert_true(body[CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE]);
    assert_true(body[CAREBRIDGE__V1__ENVELOPE__BODY_HANDOVER]);
    assert_true(body[CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE]);
    assert_true(body[CAREBRIDGE__V1__ENVELOPE__BODY_UPDATE]);
    assert_true(body[CAREBRIDGE__V1__ENVELOPE__BODY_CLOSURE]);
    assert_true(body[CAREBRIDGE__V1__ENVELOPE__BODY_ADMISSION]);
    assert_true(status[CAREBRIDGE__V1__RESPONSE__STATUS__ACCEPTED]);
    assert_true(status[CAREBRIDGE__V1__RESPONSE__STATUS__DECLINED]);
    assert_true(status[CAREBRIDGE__V1__RESPONSE__STATUS__INFO_REQUESTED]);
    assert_true(status[CAREBRIDGE__V1__RESPONSE__STATUS__REDIRECTED]);
}

/* The README lists every enum's names, on one table line per enum. */
static void expect_enum_listed(const char *readme, const ProtobufCEnumDescriptor *ed)
{
    char cell[128];
    snprintf(cell, sizeof cell, "| `%s`", ed->name + strlen("carebridge.v1."));
    const char *line = strstr(readme, cell);
    if (!line)
        fail_msg("README.md has no line for %s", cell);
    const char *end = strchr(line, '\n');
    for (unsigned i = 0; i < ed->n_values; i++) {
        char name[80];
        snprintf(name, sizeof name, "`%s`", ed->values[i].name);
        const char *at = strstr(line, name);
        if (ed->values[i].value != 0 && (!at || at > end))
            fail_msg("README.md's line for %s does not list %s", cell, name);
    }
}

static void test_readme_lists_every_enum_value(void **state)
{
    (void)state;
    const char *src = getenv("CB_SRC");
    char path[512];
    snprintf(path, sizeof path, "%s/README.md", src ? src : "..");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s (set CB_SRC to the source tree)", path);
    static char readme[1 << 18];
    size_t n = fread(readme, 1, sizeof readme - 1, f);
    fclose(f);
    readme[n] = '\0';
    /* Every enum an event or a journey can hold, found by walking the schema,
     * so a new one cannot be left out. */
    const ProtobufCMessageDescriptor *to_visit[32] = {&carebridge__v1__envelope__descriptor,
                                                      &carebridge__v1__journey_step__descriptor};
    size_t n_to_visit = 2, checked = 0;
    for (size_t m = 0; m < n_to_visit; m++) {
        for (unsigned i = 0; i < to_visit[m]->n_fields; i++) {
            const ProtobufCFieldDescriptor *fd = &to_visit[m]->fields[i];
            if (fd->type == PROTOBUF_C_TYPE_ENUM) {
                expect_enum_listed(readme, fd->descriptor);
                checked++;
            }
            bool seen = fd->type != PROTOBUF_C_TYPE_MESSAGE;
            for (size_t k = 0; !seen && k < n_to_visit; k++)
                seen = to_visit[k] == fd->descriptor;
            if (!seen && n_to_visit < sizeof to_visit / sizeof to_visit[0])
                to_visit[n_to_visit++] = fd->descriptor;
        }
    }
    assert_true(checked >= 7);
}

static void test_margaret_journey_round_trip(void **state)
{
    (void)state;
    static const struct {
        Carebridge__V1__Envelope__BodyCase body;
        Carebridge__V1__Response__Status status;
    } journey[] = {
        {CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL, 0},
        {CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE, CAREBRIDGE__V1__RESPONSE__STATUS__ACKNOWLEDGED},
        {CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE, CAREBRIDGE__V1__RESPONSE__STATUS__ACCEPTED},
        {CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE, 0},
    };
    static const char *steps[] = {"margaret/1-referral.ndjson", "margaret/2-responses.ndjson",
                                  "margaret/3-discharge.ndjson"};
    size_t i = 0;
    for (size_t step = 0; step < sizeof steps / sizeof steps[0]; step++) {
        FILE *f = open_example(steps[step]);
        char *line;
        while ((line = next_line(f))) {
            assert_true(i < sizeof journey / sizeof journey[0]);
            assert_round_trip(&carebridge__v1__envelope__descriptor, line);
            Envelope *env = load_envelope(line);
            char id[32];
            snprintf(id, sizeof id, "margaret-%04zu", i + 1);
            assert_string_equal(env->event_id, id);
            assert_string_equal(env->person->nhs_number, "9434765919");
            assert_int_equal(env->body_case, journey[i].body);
            if (env->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE) {
                assert_int_equal(env->response->status, journey[i].status);
                assert_string_equal(env->correlation_id, "margaret-0001");
            }
            protobuf_c_message_free_unpacked(&env->base, NULL);
            free(line);
            i++;
        }
        fclose(f);
    }
    assert_int_equal(i, sizeof journey / sizeof journey[0]);
}

/* Demo identifiers must pass their checks, or the rules would flag every demo event. */
static void test_example_people_have_valid_ids(void **state)
{
    (void)state;
    const char *files[] = {"bodies/health.ndjson",       "bodies/social-care.ndjson",  "bodies/voluntary.ndjson",
                           "bodies/housing.ndjson",      "margaret/1-referral.ndjson", "margaret/2-responses.ndjson",
                           "margaret/3-discharge.ndjson"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        FILE *f = open_example(files[i]);
        char *line;
        while ((line = next_line(f))) {
            Envelope *env = load_envelope(line);
            assert_non_null(env->person);
            const Carebridge__V1__Person *p = env->person;
            assert_true(*p->nhs_number || *p->chi_number || p->n_local_ids);
            if (*p->nhs_number)
                assert_true(cb_nhs_number_valid(p->nhs_number));
            if (*p->chi_number)
                assert_true(cb_chi_number_valid(p->chi_number));
            assert_true(*env->event_id && *env->from_agency && env->n_to_agencies);
            assert_non_null(env->occurred_at);
            assert_int_not_equal(env->body_case, CAREBRIDGE__V1__ENVELOPE__BODY__NOT_SET);
            protobuf_c_message_free_unpacked(&env->base, NULL);
            free(line);
        }
        fclose(f);
    }
}

/* ------------------------------------------------------------ input forms */

static void test_snake_case_names_accepted(void **state)
{
    (void)state;
    expect_canonical(&carebridge__v1__envelope__descriptor,
                     "{\"event_id\":\"e1\",\"person\":{\"nhs_number\":\"9434765919\",\"local_ids\":"
                     "[{\"system\":\"pas\",\"value\":\"1\"}]},\"to_agencies\":[\"housing\"],"
                     "\"referral\":{\"requested_service\":\"reablement\","
                     "\"what_has_helped\":\"x\"}}",
                     "{\"eventId\":\"e1\",\"person\":{\"nhsNumber\":\"9434765919\",\"localIds\":"
                     "[{\"system\":\"pas\",\"value\":\"1\"}]},\"toAgencies\":[\"housing\"],"
                     "\"referral\":{\"requestedService\":\"reablement\",\"whatHasHelped\":\"x\"}}");
}

static void test_enum_by_number(void **state)
{
    (void)state;
    expect_canonical(&carebridge__v1__referral__descriptor, "{\"urgency\":3,\"risks\":[{\"level\":1}]}",
                     "{\"urgency\":\"URGENT\",\"risks\":[{\"level\":\"LOW\"}]}");
}

/* proto3 enums are open: a number the schema does not name is kept and
 * written back as a number. */
static void test_unknown_enum_number_kept(void **state)
{
    (void)state;
    expect_canonical(&carebridge__v1__referral__descriptor, "{\"urgency\":99}", "{\"urgency\":99}");
}

/* The names on offer are listed, without the *_UNSPECIFIED zero value. */
static void test_unknown_enum_name_rejected(void **state)
{
    (void)state;
    expect_load_error(&carebridge__v1__referral__descriptor, "{\"urgency\":\"HIGH\"}", CB_INVALID_FIELD,
                      "urgency: 'HIGH' is not one of ROUTINE, SOON, URGENT, EMERGENCY");
    expect_envelope_error("{\"referral\":{\"urgency\":\"HIGH\"}}",
                          "referral.urgency: 'HIGH' is not one of ROUTINE, SOON, URGENT, EMERGENCY");
}

/* The name given is shown as printable ASCII, at most 32 bytes of it. */
static void test_unknown_enum_name_shown_safely(void **state)
{
    (void)state;
    expect_load_error(&carebridge__v1__referral__descriptor, "{\"urgency\":\"hi gh'\\u00e9x\"}", CB_INVALID_FIELD,
                      "urgency: 'hi?gh???x' is not one of ROUTINE, SOON, URGENT, EMERGENCY");
    expect_load_error(&carebridge__v1__referral__descriptor, "{\"urgency\":\"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345\"}",
                      CB_INVALID_FIELD,
                      "urgency: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345' is not one of ROUTINE, SOON, URGENT, EMERGENCY");
    expect_load_error(&carebridge__v1__referral__descriptor, "{\"urgency\":\"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456\"}",
                      CB_INVALID_FIELD,
                      "urgency: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345...' is not one of ROUTINE, SOON, URGENT, EMERGENCY");
}

static void test_int64_as_string_or_number(void **state)
{
    (void)state;
    expect_canonical(&carebridge__v1__frame__descriptor,
                     "{\"ref\":7,\"deliveryAck\":{\"seq\":\"18446744073709551615\"}}",
                     "{\"ref\":\"7\",\"deliveryAck\":{\"seq\":\"18446744073709551615\"}}");
    expect_load_error(&carebridge__v1__frame__descriptor, "{\"ref\":\"18446744073709551616\"}", CB_INVALID_FIELD,
                      "ref: integer out of range");
    expect_load_error(&carebridge__v1__frame__descriptor, "{\"ref\":\"-1\"}", CB_INVALID_FIELD,
                      "ref: integer out of range");
    expect_load_error(&carebridge__v1__frame__descriptor, "{\"ref\":\"12 \"}", CB_INVALID_FIELD,
                      "ref: expected an integer (a number or a decimal string)");
}

static void test_uint32_range_checked(void **state)
{
    (void)state;
    expect_canonical(&carebridge__v1__welcome__descriptor, "{\"heartbeatMs\":4294967295}",
                     "{\"heartbeatMs\":4294967295}");
    expect_load_error(&carebridge__v1__welcome__descriptor, "{\"heartbeatMs\":4294967296}", CB_INVALID_FIELD,
                      "heartbeatMs: integer out of range");
    expect_load_error(&carebridge__v1__welcome__descriptor, "{\"window\":-1}", CB_INVALID_FIELD,
                      "window: integer out of range");
    expect_load_error(&carebridge__v1__welcome__descriptor, "{\"window\":1.5}", CB_INVALID_FIELD,
                      "window: expected an integer (a number or a decimal string)");
}

static void expect_timestamp(const char *in, const char *out)
{
    char json_in[128], json_out[128];
    snprintf(json_in, sizeof json_in, "{\"occurredAt\":\"%s\"}", in);
    snprintf(json_out, sizeof json_out, "{\"occurredAt\":\"%s\"}", out);
    expect_canonical(&carebridge__v1__envelope__descriptor, json_in, json_out);
}

static void test_timestamp_offsets_and_fractions_normalised(void **state)
{
    (void)state;
    expect_timestamp("2026-11-20T09:30:00Z", "2026-11-20T09:30:00Z");
    expect_timestamp("2026-11-20T10:30:00+01:00", "2026-11-20T09:30:00Z");
    expect_timestamp("2026-11-20T04:00:00-05:30", "2026-11-20T09:30:00Z");
    expect_timestamp("2027-01-01T00:30:00+01:00", "2026-12-31T23:30:00Z");
    expect_timestamp("2026-11-20T09:30:00.5Z", "2026-11-20T09:30:00.500Z");
    expect_timestamp("2026-11-20T09:30:00.120000000Z", "2026-11-20T09:30:00.120Z");
    expect_timestamp("2026-11-20T09:30:00.123456Z", "2026-11-20T09:30:00.123456Z");
    expect_timestamp("2026-11-20T09:30:00.000000001Z", "2026-11-20T09:30:00.000000001Z");
    expect_timestamp("2024-02-29T12:00:00Z", "2024-02-29T12:00:00Z");
    expect_timestamp("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.500Z");
    expect_timestamp("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z");
    expect_timestamp("9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59.999999999Z");
}

static void test_timestamp_seconds_and_nanos(void **state)
{
    (void)state;
    Envelope *env = load_envelope("{\"occurredAt\":\"2026-11-20T10:30:00.25+01:00\"}");
    assert_int_equal(env->occurred_at->seconds, 1795167000);
    assert_int_equal(env->occurred_at->nanos, 250000000);
    protobuf_c_message_free_unpacked(&env->base, NULL);
}

static void test_bad_timestamps_rejected(void **state)
{
    (void)state;
    static const char *bad[] = {
        "\"2026-11-20 09:30:00Z\"",
        "\"2026-11-20T09:30:00\"",
        "\"2026-11-20T09:30:00z\"",
        "\"0000-12-31T00:00:00Z\"",
        "\"10000-01-01T00:00:00Z\"",
        "\"2026-02-29T00:00:00Z\"",
        "\"2026-11-31T00:00:00Z\"",
        "\"2026-13-01T00:00:00Z\"",
        "\"2026-11-20T24:00:00Z\"",
        "\"2026-11-20T09:60:00Z\"",
        "\"2026-11-20T09:30:60Z\"",
        "\"2026-11-20T09:30:00.Z\"",
        "\"2026-11-20T09:30:00.1234567890Z\"",
        "\"2026-11-20T09:30:00+1:00\"",
        "\"2026-11-20T09:30:00+01:60\"",
        "\"2026-11-20T09:30:00+0100\"",
        "\"0001-01-01T00:30:00+01:00\"",
        "\"9999-12-31T23:30:00-01:00\"",
        "\"2026-11-20T09:30:00Zjunk\"",
        "\"\"",
        "\"2026\"",
        "1763631000",
        "{\"seconds\":1}",
        "true",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"eventId\":\"e\",\"occurredAt\":%s}", bad[i]);
        expect_envelope_error(json, "occurredAt: expected an RFC 3339 UTC timestamp such as "
                                    "2026-11-20T09:30:00Z");
    }
}

static void test_null_means_default(void **state)
{
    (void)state;
    expect_canonical(&carebridge__v1__envelope__descriptor,
                     "{\"eventId\":null,\"person\":null,\"toAgencies\":null,\"occurredAt\":null,"
                     "\"referral\":null,\"discharge\":{}}",
                     "{\"discharge\":{}}");
}

/* ---------------------------------------------------- errors name a path */

static void test_unknown_field_named_with_path(void **state)
{
    (void)state;
    expect_envelope_error("{\"referral\":{\"contact\":{\"name\":\"A\",\"foo\":1}}}",
                          "unknown field 'foo' in referral.contact");
    expect_envelope_error("{\"nhsNumber\":\"9434765919\"}", "unknown field 'nhsNumber' in Envelope");
    expect_envelope_error("{\"referral\":{\"risks\":[{},{\"lvl\":1}]}}", "unknown field 'lvl' in referral.risks[1]");
}

/* A key is shown only as printable ASCII and cut short: keys may be pasted data. */
static void test_unknown_field_key_sanitised(void **state)
{
    (void)state;
    expect_envelope_error("{\"na me\\u00e9'x\":1}", "unknown field 'na?me???x' in Envelope");
    char key[71], json[128], reason[128];
    memset(key, 'a', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    snprintf(json, sizeof json, "{\"%s\":1}", key);
    snprintf(reason, sizeof reason, "unknown field '%.47s' in Envelope", key);
    expect_envelope_error(json, reason);
}

static void test_wrong_type_named_with_path(void **state)
{
    (void)state;
    expect_envelope_error("{\"referral\":{\"urgency\":true}}", "referral.urgency: expected an enum name or number");
    expect_envelope_error("{\"referral\":{\"risks\":[{\"level\":\"LOW\"},{\"level\":[]}]}}",
                          "referral.risks[1].level: expected an enum name or number");
    expect_envelope_error("{\"eventId\":5}", "eventId: expected a string");
    expect_envelope_error("{\"toAgencies\":\"housing\"}", "toAgencies: expected an array");
    expect_envelope_error("{\"toAgencies\":[\"housing\",7]}", "toAgencies[1]: expected a string");
    expect_envelope_error("{\"person\":[]}", "person: expected an object");
    expect_envelope_error("{\"discharge\":{\"followUps\":[{\"confirmed\":\"yes\"}]}}",
                          "discharge.followUps[0].confirmed: expected true or false");
}

static void test_null_array_element_rejected(void **state)
{
    (void)state;
    expect_envelope_error("{\"toAgencies\":[\"housing\",null]}", "toAgencies[1]: expected a value, not null");
}

static void test_two_oneof_members_named(void **state)
{
    (void)state;
    expect_envelope_error("{\"referral\":{},\"discharge\":{}}",
                          "referral and discharge are members of one oneof: set only one");
    expect_envelope_error("{\"update\":{\"handover\":{},\"referral\":{}}}",
                          "update.handover and update.referral are members of one oneof: "
                          "set only one");
}

static void test_both_spellings_rejected(void **state)
{
    (void)state;
    expect_envelope_error("{\"eventId\":\"a\",\"event_id\":\"b\"}", "eventId: given twice, as event_id and eventId");
}

static void test_nul_inside_string_rejected(void **state)
{
    (void)state;
    json_t *j = json_pack("{s:s%}", "eventId", "a\0b", (size_t)3);
    assert_non_null(j);
    cb_error err = {0};
    assert_null(cb_json_to_message(&carebridge__v1__envelope__descriptor, j, &err));
    assert_int_equal(err.code, CB_INVALID_FIELD);
    assert_string_equal(err.reason, "eventId contains a NUL character (U+0000)");
    json_decref(j);
}

/* In text too, U+0000 is refused naming the field, not as text that is not JSON. */
static void test_nul_in_text_string_names_path(void **state)
{
    (void)state;
    expect_envelope_error("{\"person\":{\"name\":\"Marg\\u0000aret\"}}",
                          "person.name contains a NUL character (U+0000)");
    expect_envelope_error("{\"toAgencies\":[\"housing\",\"\\u0000\"]}",
                          "toAgencies[1] contains a NUL character (U+0000)");
}

/* A key holding U+0000 must not be read as the field its first part names. */
static void test_nul_in_key_refused(void **state)
{
    (void)state;
    expect_load_error(&carebridge__v1__envelope__descriptor, "{\"event\\u0000Id\":\"x\"}", CB_DECODE_ERROR,
                      "not valid JSON: NUL byte in object key not supported (line 1, column 16)");
    expect_load_error(&carebridge__v1__envelope__descriptor, "{\"eventId\\u0000\":\"x\"}", CB_DECODE_ERROR,
                      "not valid JSON: NUL byte in object key not supported (line 1, column 16)");

    json_t *j = json_object();
    assert_int_equal(json_object_setn_new(j, "eventId\0x", 9, json_string("a")), 0);
    cb_error err = {0};
    assert_null(cb_json_to_message(&carebridge__v1__envelope__descriptor, j, &err));
    assert_int_equal(err.code, CB_INVALID_FIELD);
    assert_string_equal(err.reason, "unknown field 'eventId?x' in Envelope");
    json_decref(j);
}

/* jansson refuses invalid UTF-8 in text, so this builds the value directly. */
static void test_invalid_utf8_json_string_rejected(void **state)
{
    (void)state;
    json_t *j = json_object();
    json_object_set_new(j, "caseRef", json_stringn_nocheck("\xc3\x28", 2));
    cb_error err = {0};
    assert_null(cb_json_to_message(&carebridge__v1__envelope__descriptor, j, &err));
    assert_int_equal(err.code, CB_INVALID_UTF8);
    assert_string_equal(err.reason, "caseRef is not valid UTF-8");
    json_decref(j);
}

static void test_invalid_utf8_in_message_named(void **state)
{
    (void)state;
    Carebridge__V1__Person person = CAREBRIDGE__V1__PERSON__INIT;
    Envelope env = CAREBRIDGE__V1__ENVELOPE__INIT;
    person.name = "Margaret \xc3\x28xample";
    env.event_id = "e1";
    env.person = &person;
    cb_error err = {0};
    assert_null(cb_json_dumps(&env.base, &err));
    assert_int_equal(err.code, CB_INVALID_UTF8);
    assert_string_equal(err.reason, "person.name is not valid UTF-8");

    char *agencies[] = {"health", "hous\xed\xa0\x80ing"};
    person.name = "Margaret";
    env.n_to_agencies = 2;
    env.to_agencies = agencies;
    err = (cb_error){0};
    assert_null(cb_json_from_message(&env.base, &err));
    assert_int_equal(err.code, CB_INVALID_UTF8);
    assert_string_equal(err.reason, "toAgencies[1] is not valid UTF-8");
}

static void test_not_json(void **state)
{
    (void)state;
    cb_error err = {0};
    assert_null(load(&carebridge__v1__envelope__descriptor, "Margaret", &err));
    assert_int_equal(err.code, CB_DECODE_ERROR);
    assert_non_null(strstr(err.reason, "column"));
    assert_null(strstr(err.reason, "Margaret"));

    expect_load_error(&carebridge__v1__envelope__descriptor, "", CB_DECODE_ERROR, NULL);
    expect_load_error(&carebridge__v1__envelope__descriptor, "{\"eventId\":", CB_DECODE_ERROR, NULL);
    assert_null(cb_json_loads(&carebridge__v1__envelope__descriptor, NULL, 0, &err));
    assert_int_equal(err.code, CB_DECODE_ERROR);
}

static void test_trailing_garbage(void **state)
{
    (void)state;
    cb_error err = {0};
    assert_null(load(&carebridge__v1__envelope__descriptor, "{\"eventId\":\"a\"} Margaret", &err));
    assert_int_equal(err.code, CB_DECODE_ERROR);
    assert_non_null(strstr(err.reason, "column"));
    assert_null(strstr(err.reason, "Margaret"));
    expect_load_error(&carebridge__v1__envelope__descriptor, "{}{}", CB_DECODE_ERROR, NULL);
}

static void test_length_bounds_the_text(void **state)
{
    (void)state;
    const char *text = "{\"eventId\":\"a\"}GARBAGE";
    cb_error err = {0};
    ProtobufCMessage *m = cb_json_loads(&carebridge__v1__envelope__descriptor, text, 15, &err);
    assert_non_null(m);
    assert_string_equal(((Envelope *)m)->event_id, "a");
    protobuf_c_message_free_unpacked(m, NULL);
}

static void test_duplicate_keys_rejected(void **state)
{
    (void)state;
    expect_load_error(&carebridge__v1__envelope__descriptor, "{\"eventId\":\"a\",\"eventId\":\"b\"}", CB_DECODE_ERROR,
                      NULL);
}

static void test_top_level_must_be_object(void **state)
{
    (void)state;
    expect_envelope_error("[]", "expected a JSON object for Envelope");
    json_t *j = json_string("x");
    cb_error err = {0};
    assert_null(cb_json_to_message(&carebridge__v1__envelope__descriptor, j, &err));
    assert_string_equal(err.reason, "expected a JSON object for Envelope");
    json_decref(j);
}

/* ----------------------------------------------------------------- output */

static void test_defaults_omitted(void **state)
{
    (void)state;
    Carebridge__V1__Person person = CAREBRIDGE__V1__PERSON__INIT;
    Carebridge__V1__FollowUp follow = CAREBRIDGE__V1__FOLLOW_UP__INIT;
    Carebridge__V1__FollowUp *follows[] = {&follow};
    Carebridge__V1__Discharge discharge = CAREBRIDGE__V1__DISCHARGE__INIT;
    Envelope env = CAREBRIDGE__V1__ENVELOPE__INIT;
    follow.agency = "housing";
    follow.confirmed = 0;
    discharge.n_follow_ups = 1;
    discharge.follow_ups = follows;
    env.person = &person;
    env.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE;
    env.discharge = &discharge;
    char *text = dumps_or_fail(&env.base);
    assert_string_equal(text, "{\"person\":{},\"discharge\":{\"followUps\":[{\"agency\":\"housing\"}]}}");
    free(text);

    Envelope empty = CAREBRIDGE__V1__ENVELOPE__INIT;
    text = dumps_or_fail(&empty.base);
    assert_string_equal(text, "{}");
    free(text);
}

static void test_set_empty_oneof_member_emitted(void **state)
{
    (void)state;
    Carebridge__V1__Heartbeat beat = CAREBRIDGE__V1__HEARTBEAT__INIT;
    Carebridge__V1__Frame frame = CAREBRIDGE__V1__FRAME__INIT;
    frame.kind_case = CAREBRIDGE__V1__FRAME__KIND_HEARTBEAT;
    frame.heartbeat = &beat;
    char *text = dumps_or_fail(&frame.base);
    assert_string_equal(text, "{\"heartbeat\":{}}");

    cb_error err = {0};
    Carebridge__V1__Frame *back = (Carebridge__V1__Frame *)load(&carebridge__v1__frame__descriptor, text, &err);
    assert_non_null(back);
    assert_int_equal(back->kind_case, CAREBRIDGE__V1__FRAME__KIND_HEARTBEAT);
    assert_non_null(back->heartbeat);
    protobuf_c_message_free_unpacked(&back->base, NULL);
    free(text);
}

/* ------------------------------- every scalar type, via a hand-built descriptor */

/* carebridge.proto has no bytes, float, double or sint fields, and no oneof of
 * scalars; this message (what protoc-c would generate) exercises them. */
typedef struct {
    ProtobufCMessage base;
    double double_value;
    float float_value;
    int64_t zigzag_64;
    uint64_t fixed_64;
    int32_t zigzag_32;
    ProtobufCBinaryData blob;
    size_t n_blob_list;
    ProtobufCBinaryData *blob_list;
    size_t n_int_list;
    int64_t *int_list;
    uint32_t pick_case;
    union {
        char *label;
        int32_t code;
    };
} Scalars;

static const ProtobufCMessageDescriptor scalars_descriptor;

static void scalars_init(ProtobufCMessage *m)
{
    static const Scalars init = {PROTOBUF_C_MESSAGE_INIT(&scalars_descriptor), .pick_case = 0};
    memcpy(m, &init, sizeof init);
}

#define SCALAR(name, id, type)                                                                                         \
    {                                                                                                                  \
#name, id, PROTOBUF_C_LABEL_NONE, type, 0, offsetof(Scalars, name), NULL, NULL, 0, 0, NULL, NULL               \
    }
static const ProtobufCFieldDescriptor scalars_fields[] = {
    SCALAR(double_value, 1, PROTOBUF_C_TYPE_DOUBLE),
    SCALAR(float_value, 2, PROTOBUF_C_TYPE_FLOAT),
    SCALAR(zigzag_64, 3, PROTOBUF_C_TYPE_SINT64),
    SCALAR(fixed_64, 4, PROTOBUF_C_TYPE_FIXED64),
    SCALAR(zigzag_32, 5, PROTOBUF_C_TYPE_SINT32),
    SCALAR(blob, 6, PROTOBUF_C_TYPE_BYTES),
    {"blob_list", 7, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_BYTES, offsetof(Scalars, n_blob_list),
     offsetof(Scalars, blob_list), NULL, NULL, 0, 0, NULL, NULL},
    {"int_list", 8, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_INT64, offsetof(Scalars, n_int_list),
     offsetof(Scalars, int_list), NULL, NULL, PROTOBUF_C_FIELD_FLAG_PACKED, 0, NULL, NULL},
    {"label", 9, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, offsetof(Scalars, pick_case), offsetof(Scalars, label),
     NULL, &protobuf_c_empty_string, PROTOBUF_C_FIELD_FLAG_ONEOF, 0, NULL, NULL},
    {"code", 10, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_INT32, offsetof(Scalars, pick_case), offsetof(Scalars, code),
     NULL, NULL, PROTOBUF_C_FIELD_FLAG_ONEOF, 0, NULL, NULL},
};
#undef SCALAR
static const unsigned scalars_by_name[] = {5, 6, 9, 0, 3, 1, 7, 8, 4, 2};
static const ProtobufCIntRange scalars_ranges[] = {{1, 0}, {0, 10}};
static const ProtobufCMessageDescriptor scalars_descriptor = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                              "cbtest.Scalars",
                                                              "Scalars",
                                                              "Scalars",
                                                              "cbtest",
                                                              sizeof(Scalars),
                                                              10,
                                                              scalars_fields,
                                                              scalars_by_name,
                                                              1,
                                                              scalars_ranges,
                                                              scalars_init,
                                                              NULL,
                                                              NULL,
                                                              NULL};

static void test_every_scalar_type_round_trip(void **state)
{
    (void)state;
    assert_round_trip(&scalars_descriptor, "{\"doubleValue\":2.5,\"floatValue\":-0.25,"
                                           "\"zigzag64\":\"-9223372036854775808\","
                                           "\"fixed64\":\"18446744073709551615\",\"zigzag32\":-7,\"blob\":\"AAEC/w==\","
                                           "\"blobList\":[\"aGk=\",\"\"],\"intList\":[\"1\",\"-2\"],"
                                           "\"code\":-2147483648}");
}

/* A set oneof member at its default is still emitted: which member is set is information. */
static void test_set_empty_oneof_string_emitted(void **state)
{
    (void)state;
    assert_round_trip(&scalars_descriptor, "{\"label\":\"\"}");
    assert_round_trip(&scalars_descriptor, "{\"code\":0}");
}

static void test_nan_and_infinity(void **state)
{
    (void)state;
    cb_error err = {0};
    Scalars *s = (Scalars *)load(&scalars_descriptor, "{\"doubleValue\":\"NaN\",\"floatValue\":\"-Infinity\"}", &err);
    assert_non_null(s);
    assert_true(isnan(s->double_value));
    assert_true(isinf(s->float_value) && s->float_value < 0);
    char *text = dumps_or_fail(&s->base);
    assert_string_equal(text, "{\"doubleValue\":\"NaN\",\"floatValue\":\"-Infinity\"}");
    free(text);
    protobuf_c_message_free_unpacked(&s->base, NULL);
    expect_canonical(&scalars_descriptor, "{\"double_value\":\"Infinity\"}", "{\"doubleValue\":\"Infinity\"}");
}

static void test_number_ranges_checked(void **state)
{
    (void)state;
    expect_load_error(&scalars_descriptor, "{\"floatValue\":1e39}", CB_INVALID_FIELD,
                      "floatValue: number out of range");
    expect_load_error(&scalars_descriptor, "{\"doubleValue\":\"1.5\"}", CB_INVALID_FIELD,
                      "doubleValue: expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"");
    expect_load_error(&scalars_descriptor, "{\"code\":2147483648}", CB_INVALID_FIELD, "code: integer out of range");
    expect_load_error(&scalars_descriptor, "{\"zigzag32\":\"-2147483649\"}", CB_INVALID_FIELD,
                      "zigzag32: integer out of range");
    expect_load_error(&scalars_descriptor, "{\"zigzag64\":\"-9223372036854775809\"}", CB_INVALID_FIELD,
                      "zigzag64: integer out of range");
    expect_load_error(&scalars_descriptor, "{\"intList\":[1,1e300]}", CB_INVALID_FIELD,
                      "intList[1]: integer out of range");
    expect_canonical(&scalars_descriptor, "{\"zigzag32\":\"-12\",\"fixed64\":1e3}",
                     "{\"fixed64\":\"1000\",\"zigzag32\":-12}");
}

static void test_bytes_base64_forms(void **state)
{
    (void)state;
    expect_canonical(&scalars_descriptor, "{\"blob\":\"_-8\"}", "{\"blob\":\"/+8=\"}");
    expect_canonical(&scalars_descriptor, "{\"blob\":\"/+8\"}", "{\"blob\":\"/+8=\"}");
    expect_canonical(&scalars_descriptor, "{\"blob\":\"_-8=\"}", "{\"blob\":\"/+8=\"}");
    expect_load_error(&scalars_descriptor, "{\"blobList\":[\"aGk=\",\"a!b=\"]}", CB_INVALID_FIELD,
                      "blobList[1]: expected a base64 string");
    expect_load_error(&scalars_descriptor, "{\"blob\":42}", CB_INVALID_FIELD, "blob: expected a base64 string");
}

static void test_two_scalar_oneof_members_named(void **state)
{
    (void)state;
    expect_load_error(&scalars_descriptor, "{\"code\":1,\"label\":\"x\"}", CB_INVALID_FIELD,
                      "code and label are members of one oneof: set only one");
}

/* Names are compared as C strings, which a U+0000 would end early. */
static void test_nul_does_not_end_a_name(void **state)
{
    (void)state;
    expect_load_error(&carebridge__v1__referral__descriptor, "{\"urgency\":\"URGENT\\u0000\"}", CB_INVALID_FIELD,
                      "urgency: 'URGENT?' is not one of ROUTINE, SOON, URGENT, EMERGENCY");
    expect_load_error(&scalars_descriptor, "{\"doubleValue\":\"NaN\\u0000\"}", CB_INVALID_FIELD,
                      "doubleValue: expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"");
}

/* -------------------------------------------------- integers beyond int64 */

static void test_uint64_number_beyond_int64(void **state)
{
    (void)state;
    cb_error err = {0};
    Carebridge__V1__Frame *f = (Carebridge__V1__Frame *)load(
        &carebridge__v1__frame__descriptor, "{\n  \"deliveryAck\": {\"seq\": 18446744073709551615}\n}", &err);
    assert_non_null(f);
    assert_true(f->delivery_ack->seq == UINT64_MAX);
    protobuf_c_message_free_unpacked(&f->base, NULL);
    f = (Carebridge__V1__Frame *)load(&carebridge__v1__frame__descriptor,
                                      "{\"deliveryAck\":{\"seq\":9223372036854775808}}", &err);
    assert_non_null(f);
    assert_true(f->delivery_ack->seq == UINT64_C(1) << 63);
    protobuf_c_message_free_unpacked(&f->base, NULL);
    expect_canonical(&carebridge__v1__frame__descriptor,
                     "{\"ref\":18446744073709551614,\"deliveryAck\":{\"seq\":9223372036854775809}}",
                     "{\"ref\":\"18446744073709551614\",\"deliveryAck\":{\"seq\":\"9223372036854775809\"}}");
    expect_canonical(&scalars_descriptor, "{\"fixed64\":18446744073709551615,\"doubleValue\":18446744073709551616}",
                     "{\"doubleValue\":1.8446744073709552e19,\"fixed64\":\"18446744073709551615\"}");
}

static void test_integer_number_beyond_range_refused(void **state)
{
    (void)state;
    expect_load_error(&carebridge__v1__frame__descriptor, "{\"deliveryAck\":{\"seq\":18446744073709551616}}",
                      CB_INVALID_FIELD, "deliveryAck.seq: integer out of range");
    expect_load_error(&carebridge__v1__frame__descriptor, "{\"deliveryAck\":{\"seq\":-9223372036854775809}}",
                      CB_INVALID_FIELD, "deliveryAck.seq: integer out of range");
    expect_load_error(&scalars_descriptor, "{\"zigzag64\":9223372036854775808}", CB_INVALID_FIELD,
                      "zigzag64: integer out of range");
    expect_load_error(&scalars_descriptor, "{\"zigzag64\":-9223372036854775809}", CB_INVALID_FIELD,
                      "zigzag64: integer out of range");
    expect_load_error(&scalars_descriptor, "{\"code\":9223372036854775808}", CB_INVALID_FIELD,
                      "code: integer out of range");
    expect_load_error(&carebridge__v1__welcome__descriptor, "{\"heartbeatMs\":18446744073709551615}", CB_INVALID_FIELD,
                      "heartbeatMs: integer out of range");
    expect_load_error(&scalars_descriptor, "{\"intList\":[1,9223372036854775808]}", CB_INVALID_FIELD,
                      "intList[1]: integer out of range");
    expect_load_error(&scalars_descriptor, "{\"floatValue\":1000000000000000000000000000000000000000}",
                      CB_INVALID_FIELD, "floatValue: number out of range");

    /* Past DBL_MAX too: the number is read as text, never through jansson's double. */
    char json[512];
    int n = snprintf(json, sizeof json, "{\"fixed64\":");
    memset(json + n, '9', 400);
    snprintf(json + n + 400, sizeof json - (size_t)n - 400, "}");
    expect_load_error(&scalars_descriptor, json, CB_INVALID_FIELD, "fixed64: integer out of range");
    n = snprintf(json, sizeof json, "{\"doubleValue\":");
    memset(json + n, '9', 400);
    snprintf(json + n + 400, sizeof json - (size_t)n - 400, "}");
    expect_load_error(&scalars_descriptor, json, CB_INVALID_FIELD, "doubleValue: number out of range");
}

/* Where a number is the wrong type, a big one is too, with the same reason. */
static void test_integer_number_beyond_int64_in_other_types(void **state)
{
    (void)state;
    expect_envelope_error("{\"eventId\":18446744073709551616}", "eventId: expected a string");
    expect_envelope_error("{\"referral\":{\"urgency\":18446744073709551616}}",
                          "referral.urgency: expected an enum name or number");
    expect_envelope_error("{\"referral\":{\"urgency\":-99999999999999999999}}",
                          "referral.urgency: expected an enum name or number");
    expect_envelope_error("{\"discharge\":{\"followUps\":[{\"confirmed\":18446744073709551616}]}}",
                          "discharge.followUps[0].confirmed: expected true or false");
    expect_envelope_error("{\"person\":18446744073709551616}", "person: expected an object");
    expect_envelope_error("{\"toAgencies\":18446744073709551616}", "toAgencies: expected an array");
    expect_envelope_error("{\"occurredAt\":18446744073709551616}",
                          "occurredAt: expected an RFC 3339 UTC timestamp such as 2026-11-20T09:30:00Z");
    expect_load_error(&scalars_descriptor, "{\"blob\":18446744073709551616}", CB_INVALID_FIELD,
                      "blob: expected a base64 string");
    expect_load_error(&carebridge__v1__envelope__descriptor, "18446744073709551616", CB_DECODE_ERROR,
                      "not valid JSON: '[' or '{' expected (line 1, column 20)");
}

/* Digits inside strings stay text, and no genuine string passes for a big number. */
static void test_big_number_fallback_keeps_strings_apart(void **state)
{
    (void)state;
    cb_error err = {0};
    Scalars *s = (Scalars *)load(
        &scalars_descriptor, "{\"label\":\"x\\\"18446744073709551616\\\\\",\"fixed64\":18446744073709551615}", &err);
    assert_non_null(s);
    assert_string_equal(s->label, "x\"18446744073709551616\\");
    assert_true(s->fixed_64 == UINT64_MAX);
    protobuf_c_message_free_unpacked(&s->base, NULL);

    expect_canonical(&scalars_descriptor, "{\"label\":\"\",\"fixed64\":9223372036854775808}",
                     "{\"fixed64\":\"9223372036854775808\",\"label\":\"\"}");
    expect_canonical(&scalars_descriptor,
                     "{\"fixed64\":\"18446744073709551615\",\"zigzag64\":-9223372036854775808,"
                     "\"intList\":[9223372036854775807],\"blobList\":[\"\"],\"label\":\"-12345678901234567890\"}",
                     "{\"zigzag64\":\"-9223372036854775808\",\"fixed64\":\"18446744073709551615\",\"blobList\":[\"\"],"
                     "\"intList\":[\"9223372036854775807\"],\"label\":\"-12345678901234567890\"}");
    expect_load_error(&scalars_descriptor, "{\"label\":\"a\\u0000\",\"fixed64\":18446744073709551615}",
                      CB_INVALID_FIELD, "label contains a NUL character (U+0000)");
    /* "\u00001" would otherwise read as the number 1. */
    expect_load_error(&scalars_descriptor, "{\"fixed64\":\"\\u00001\",\"doubleValue\":18446744073709551616}",
                      CB_DECODE_ERROR,
                      "not valid JSON: a string starting with U+0000 cannot be read alongside an integer outside "
                      "int64 (line 1, column 18)");
    expect_load_error(&scalars_descriptor, "{\"fixed64\":\"\\u00001\"}", CB_INVALID_FIELD,
                      "fixed64: expected an integer (a number or a decimal string)");
}

/* An error elsewhere in text with a big number is placed as in the text given. */
static void test_big_number_fallback_error_positions(void **state)
{
    (void)state;
    expect_load_error(&scalars_descriptor, "{\"fixed64\":18446744073709551615,}", CB_DECODE_ERROR,
                      "not valid JSON: string or '}' expected (line 1, column 33)");
    expect_load_error(&scalars_descriptor,
                      "{\"fixed64\":18446744073709551615,\n\"intList\":[18446744073709551616, 1 2]}", CB_DECODE_ERROR,
                      "not valid JSON: ']' expected (line 2, column 36)");
    expect_load_error(&scalars_descriptor, "{\"fixed64\":18446744073709551615,\"doubleValue\":1e400}", CB_DECODE_ERROR,
                      "not valid JSON: real number overflow (line 1, column 51)");
    expect_load_error(&scalars_descriptor, "{\"doubleValue\":1e400}", CB_DECODE_ERROR,
                      "not valid JSON: real number overflow (line 1, column 20)");
    expect_load_error(&scalars_descriptor, "{18446744073709551615:1}", CB_DECODE_ERROR,
                      "not valid JSON: string or '}' expected (line 1, column 21)");
}

/* ------------------------------------------ an enum too long to list in full */

typedef struct {
    ProtobufCMessage base;
    int pick;
} Choice;

#define LETTERS(X)                                                                                                     \
    X(A, 1)                                                                                                            \
    X(B, 2)                                                                                                            \
    X(C, 3)                                                                                                            \
    X(D, 4)                                                                                                            \
    X(E, 5)                                                                                                            \
    X(F, 6)                                                                                                            \
    X(G, 7)                                                                                                            \
    X(H, 8)                                                                                                            \
    X(I, 9)                                                                                                            \
    X(J, 10)                                                                                                           \
    X(K, 11)                                                                                                           \
    X(L, 12)
#define OPTION_VALUE(letter, n) {"OPTION_LETTERED_" #letter, "OPTION_LETTERED_" #letter, n},
#define OPTION_INDEX(letter, n) {"OPTION_LETTERED_" #letter, n},
static const ProtobufCEnumValue option_values[] = {{"AUTO", "AUTO", 0}, LETTERS(OPTION_VALUE)};
static const ProtobufCEnumValueIndex option_by_name[] = {{"AUTO", 0}, LETTERS(OPTION_INDEX)};
#undef OPTION_INDEX
#undef OPTION_VALUE
#undef LETTERS
static const ProtobufCIntRange option_ranges[] = {{0, 0}, {0, 13}};
static const ProtobufCEnumDescriptor option_descriptor = {PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC,
                                                          "cbtest.Option",
                                                          "Option",
                                                          "Option",
                                                          "cbtest",
                                                          13,
                                                          option_values,
                                                          13,
                                                          option_by_name,
                                                          1,
                                                          option_ranges,
                                                          NULL,
                                                          NULL,
                                                          NULL,
                                                          NULL};

static const ProtobufCMessageDescriptor choice_descriptor;

static void choice_init(ProtobufCMessage *m)
{
    static const Choice init = {PROTOBUF_C_MESSAGE_INIT(&choice_descriptor), 0};
    memcpy(m, &init, sizeof init);
}

static const ProtobufCFieldDescriptor choice_fields[] = {
    {"pick", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_ENUM, 0, offsetof(Choice, pick), &option_descriptor, NULL, 0, 0,
     NULL, NULL},
};
static const unsigned choice_by_name[] = {0};
static const ProtobufCIntRange choice_ranges[] = {{1, 0}, {0, 1}};
static const ProtobufCMessageDescriptor choice_descriptor = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                             "cbtest.Choice",
                                                             "Choice",
                                                             "Choice",
                                                             "cbtest",
                                                             sizeof(Choice),
                                                             1,
                                                             choice_fields,
                                                             choice_by_name,
                                                             1,
                                                             choice_ranges,
                                                             choice_init,
                                                             NULL,
                                                             NULL,
                                                             NULL};

/* The reason stays within cb_error's buffer and says the list goes on:
 * OPTION_LETTERED_K would fit, but ", ..." after it would not. A zero value not
 * named *_UNSPECIFIED is a real choice and is listed. */
static void test_unknown_enum_name_list_cut_to_fit(void **state)
{
    (void)state;
    cb_error err = {0};
    expect_canonical(&choice_descriptor, "{\"pick\":\"OPTION_LETTERED_L\"}", "{\"pick\":\"OPTION_LETTERED_L\"}");
    assert_null(load(&choice_descriptor, "{\"pick\":\"X\"}", &err));
    assert_string_equal(err.reason, "pick: 'X' is not one of AUTO, OPTION_LETTERED_A, OPTION_LETTERED_B, "
                                    "OPTION_LETTERED_C, OPTION_LETTERED_D, OPTION_LETTERED_E, OPTION_LETTERED_F, "
                                    "OPTION_LETTERED_G, OPTION_LETTERED_H, OPTION_LETTERED_I, OPTION_LETTERED_J, ...");
    assert_true(strlen(err.reason) < sizeof err.reason);
}

/* ------------------------------------------------------------ cb_json_loads_at */

/* Positions are given in the enclosing text: the first line's columns shift, the lines below keep theirs. */
static void test_loads_at_shifts_positions(void **state)
{
    (void)state;
    const char *first = "{\"eventId\":\"a\",}", *second = "{\"eventId\":\"a\",\n\"x\" 1}";
    const char *big = "{\"fixed64\":18446744073709551615,}";
    cb_error err = {0};
    cb_json_pos at = {3, 10};
    assert_null(cb_json_loads_at(&carebridge__v1__envelope__descriptor, first, strlen(first), &at, &err));
    assert_int_equal(err.code, CB_DECODE_ERROR);
    assert_string_equal(err.reason, "not valid JSON: string or '}' expected (line 3, column 25)");
    assert_int_equal(at.line, 3);
    assert_int_equal(at.column, 25);
    at = (cb_json_pos){3, 10};
    assert_null(cb_json_loads_at(&carebridge__v1__envelope__descriptor, second, strlen(second), &at, &err));
    assert_string_equal(err.reason, "not valid JSON: ':' expected (line 4, column 5)");
    assert_int_equal(at.line, 4);
    at = (cb_json_pos){2, 5};
    assert_null(cb_json_loads_at(&scalars_descriptor, big, strlen(big), &at, &err));
    assert_string_equal(err.reason, "not valid JSON: string or '}' expected (line 2, column 37)");
    assert_null(cb_json_loads(&carebridge__v1__envelope__descriptor, first, strlen(first), &err));
    assert_string_equal(err.reason, "not valid JSON: string or '}' expected (line 1, column 16)");

    at = (cb_json_pos){7, 3};
    Envelope *env = (Envelope *)cb_json_loads_at(&carebridge__v1__envelope__descriptor, first, 14, &at, &err);
    assert_null(env);
    at = (cb_json_pos){7, 3};
    env = (Envelope *)cb_json_loads_at(&carebridge__v1__envelope__descriptor, "{\"eventId\":\"a\"}", 15, &at, &err);
    assert_non_null(env);
    assert_string_equal(env->event_id, "a");
    protobuf_c_message_free_unpacked(&env->base, NULL);
}

/* --------------------------------------------------------- cb_check.h */

static void test_utf8_valid_multibyte(void **state)
{
    (void)state;
    assert_true(cb_utf8_valid("", 0));
    assert_true(cb_utf8_valid("Margaret", 8));
    assert_true(cb_utf8_valid("\xc2\xa3", 2));         /* £ */
    assert_true(cb_utf8_valid("\xe2\x82\xac", 3));     /* € */
    assert_true(cb_utf8_valid("\xf0\x9f\x98\x80", 4)); /* U+1F600 */
    assert_true(cb_utf8_valid("\xf4\x8f\xbf\xbf", 4)); /* U+10FFFF, the last code point */
    assert_true(cb_utf8_valid("\xed\x9f\xbf", 3));     /* U+D7FF, just below the surrogates */
}

static void test_utf8_rejects_overlong(void **state)
{
    (void)state;
    assert_false(cb_utf8_valid("\xc0\xaf", 2));
    assert_false(cb_utf8_valid("\xc1\xbf", 2));
    assert_false(cb_utf8_valid("\xe0\x80\xaf", 3));
    assert_false(cb_utf8_valid("\xf0\x80\x80\xaf", 4));
}

static void test_utf8_rejects_surrogates(void **state)
{
    (void)state;
    assert_false(cb_utf8_valid("\xed\xa0\x80", 3)); /* U+D800 */
    assert_false(cb_utf8_valid("\xed\xbf\xbf", 3)); /* U+DFFF */
}

static void test_utf8_rejects_truncated(void **state)
{
    (void)state;
    assert_false(cb_utf8_valid("\xe2\x82", 2));
    assert_false(cb_utf8_valid("ok\xf0\x9f\x98", 5));
    assert_false(cb_utf8_valid("\xc2", 1));
    assert_false(cb_utf8_valid("\x80", 1));             /* a continuation byte alone */
    assert_false(cb_utf8_valid("\xc2\x41", 2));         /* lead byte, no continuation */
    assert_false(cb_utf8_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_false(cb_utf8_valid("\xff", 1));
}

/* ASCII is skipped a word at a time: a bad byte or a multibyte character
 * must be found at every offset in and around those words, and a string
 * must never be read past its length. */
static void test_utf8_every_offset_in_ascii(void **state)
{
    (void)state;
    char buf[40];
    for (size_t at = 0; at + 3 <= sizeof buf; at++) {
        memset(buf, 'a', sizeof buf);
        memcpy(buf + at, "\xe2\x82\xac", 3); /* € */
        assert_true(cb_utf8_valid(buf, sizeof buf));
        buf[at + 1] = 'a'; /* the lead byte now lacks its continuation */
        assert_false(cb_utf8_valid(buf, sizeof buf));
        memset(buf, 'a', sizeof buf);
        buf[at] = (char)0xff;
        assert_false(cb_utf8_valid(buf, sizeof buf));
        assert_int_equal(cb_utf8_valid(buf, at), true); /* the bad byte is just past the end */
    }
}

static void test_check_utf8_names_path(void **state)
{
    (void)state;
    Carebridge__V1__Risk ok = CAREBRIDGE__V1__RISK__INIT, bad = CAREBRIDGE__V1__RISK__INIT;
    Carebridge__V1__Risk *risks[] = {&ok, &bad};
    Carebridge__V1__Referral referral = CAREBRIDGE__V1__REFERRAL__INIT;
    Carebridge__V1__Person person = CAREBRIDGE__V1__PERSON__INIT;
    Envelope env = CAREBRIDGE__V1__ENVELOPE__INIT;
    ok.description = "falls on stairs";
    bad.description = "falls \xe0\x80\xaf";
    referral.n_risks = 2;
    referral.risks = risks;
    person.name = "Margaret";
    env.person = &person;
    env.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL;
    env.referral = &referral;
    char path[64];
    assert_false(cb_check_utf8(&env.base, path, sizeof path));
    assert_string_equal(path, "referral.risks[1].description");

    bad.description = "falls";
    assert_true(cb_check_utf8(&env.base, path, sizeof path));

    person.name = "\xc3";
    assert_false(cb_check_utf8(&env.base, path, sizeof path));
    assert_string_equal(path, "person.name");
}

static void test_nhs_number_check(void **state)
{
    (void)state;
    assert_true(cb_nhs_number_valid("9434765919"));
    assert_false(cb_nhs_number_valid("9434765918"));
    assert_true(cb_nhs_number_valid("9434765870"));
    assert_true(cb_nhs_number_valid("9876543210"));
    assert_false(cb_nhs_number_valid("943476591"));
    assert_false(cb_nhs_number_valid("94347659l9"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_bodies_round_trip),
        cmocka_unit_test(test_readme_lists_every_enum_value),
        cmocka_unit_test(test_margaret_journey_round_trip),
        cmocka_unit_test(test_example_people_have_valid_ids),
        cmocka_unit_test(test_snake_case_names_accepted),
        cmocka_unit_test(test_enum_by_number),
        cmocka_unit_test(test_unknown_enum_number_kept),
        cmocka_unit_test(test_unknown_enum_name_rejected),
        cmocka_unit_test(test_unknown_enum_name_shown_safely),
        cmocka_unit_test(test_int64_as_string_or_number),
        cmocka_unit_test(test_uint32_range_checked),
        cmocka_unit_test(test_timestamp_offsets_and_fractions_normalised),
        cmocka_unit_test(test_timestamp_seconds_and_nanos),
        cmocka_unit_test(test_bad_timestamps_rejected),
        cmocka_unit_test(test_null_means_default),
        cmocka_unit_test(test_unknown_field_named_with_path),
        cmocka_unit_test(test_unknown_field_key_sanitised),
        cmocka_unit_test(test_wrong_type_named_with_path),
        cmocka_unit_test(test_null_array_element_rejected),
        cmocka_unit_test(test_two_oneof_members_named),
        cmocka_unit_test(test_both_spellings_rejected),
        cmocka_unit_test(test_nul_inside_string_rejected),
        cmocka_unit_test(test_nul_in_text_string_names_path),
        cmocka_unit_test(test_nul_in_key_refused),
        cmocka_unit_test(test_invalid_utf8_json_string_rejected),
        cmocka_unit_test(test_invalid_utf8_in_message_named),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_length_bounds_the_text),
        cmocka_unit_test(test_duplicate_keys_rejected),
        cmocka_unit_test(test_top_level_must_be_object),
        cmocka_unit_test(test_defaults_omitted),
        cmocka_unit_test(test_set_empty_oneof_member_emitted),
        cmocka_unit_test(test_every_scalar_type_round_trip),
        cmocka_unit_test(test_set_empty_oneof_string_emitted),
        cmocka_unit_test(test_nan_and_infinity),
        cmocka_unit_test(test_number_ranges_checked),
        cmocka_unit_test(test_bytes_base64_forms),
        cmocka_unit_test(test_two_scalar_oneof_members_named),
        cmocka_unit_test(test_nul_does_not_end_a_name),
        cmocka_unit_test(test_uint64_number_beyond_int64),
        cmocka_unit_test(test_integer_number_beyond_range_refused),
        cmocka_unit_test(test_integer_number_beyond_int64_in_other_types),
        cmocka_unit_test(test_big_number_fallback_keeps_strings_apart),
        cmocka_unit_test(test_big_number_fallback_error_positions),
        cmocka_unit_test(test_unknown_enum_name_list_cut_to_fit),
        cmocka_unit_test(test_loads_at_shifts_positions),
        cmocka_unit_test(test_utf8_valid_multibyte),
        cmocka_unit_test(test_utf8_rejects_overlong),
        cmocka_unit_test(test_utf8_rejects_surrogates),
        cmocka_unit_test(test_utf8_rejects_truncated),
        cmocka_unit_test(test_utf8_every_offset_in_ascii),
        cmocka_unit_test(test_check_utf8_names_path),
        cmocka_unit_test(test_nhs_number_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
