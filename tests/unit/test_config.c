/* cb_config: the embedded default, the shipped file, defaults for omitted
 * keys, and one test per way a file can be wrong. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ERR_CAP 512
/* Z85 public keys, as `carebridge keys new` prints them. */
#define KEY_A "rq:Ggz9:g4!Chp5v0#[X]xcR7!*]+Hr?D+TOz&ze"
#define KEY_B "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"

/* Writes yaml to a fresh temporary file; the caller unlinks path. */
static void write_temp(const char *yaml, char *path, size_t cap)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, cap, "%s/cb_config_XXXXXX", dir);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(yaml);
    assert_int_equal(write(fd, yaml, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static cb_config *load_text(const char *yaml, char *err)
{
    char path[256];
    write_temp(yaml, path, sizeof path);
    cb_config *cfg = cb_config_load(path, err, ERR_CAP);
    unlink(path);
    return cfg;
}

static void assert_default_numbers(const cb_config *cfg)
{
    assert_string_equal(cfg->endpoint, "tcp://127.0.0.1:5570");
    assert_string_equal(cfg->feed, "tcp://127.0.0.1:5571");
    assert_string_equal(cfg->queries, "tcp://127.0.0.1:5572");
    assert_string_equal(cfg->data_dir, "./var");
    assert_int_equal(cfg->map_size_mb, 1024);
    assert_int_equal(cfg->publish_fill_percent, 90);
    assert_int_equal(cfg->max_event_bytes, 262144);
    assert_int_equal(cfg->window, 128);
    assert_int_equal(cfg->redelivery_timeout_ms, 10000);
    assert_int_equal(cfg->redelivery_max_ms, 300000);
    assert_int_equal(cfg->max_attempts, 5);
    assert_int_equal(cfg->heartbeat_ms, 2000);
}

static void assert_agency(const cb_agency *a, const char *id, cb_agency_kind kind, const char *name)
{
    assert_string_equal(a->id, id);
    assert_int_equal(a->kind, kind);
    assert_string_equal(a->name, name);
}

static void assert_default_agencies(const cb_config *cfg)
{
    assert_int_equal(cfg->n_agencies, 4);
    assert_agency(&cfg->agencies[0], "health", CB_AGENCY_HEALTH, "General Hospital discharge team (demo)");
    assert_agency(&cfg->agencies[1], "housing", CB_AGENCY_HOUSING, "City Council housing options (demo)");
    assert_agency(&cfg->agencies[2], "social-care", CB_AGENCY_SOCIAL_CARE, "Adult social care (demo)");
    assert_agency(&cfg->agencies[3], "voluntary", CB_AGENCY_VOLUNTARY, "Community befriending service (demo)");
}

static void embedded_default_has_documented_values(void **state)
{
    (void)state;
    char err[ERR_CAP] = "";
    cb_config *cfg = cb_config_load(NULL, err, sizeof err);
    assert_non_null(cfg);
    assert_default_numbers(cfg);
    assert_default_agencies(cfg);
    cb_config_free(&cfg);
    assert_null(cfg);
}

/* A key missing from the embedded YAML would still load, from the C
 * defaults; the file is also the documentation, so each key must be there. */
static void embedded_default_states_every_key(void **state)
{
    (void)state;
    static const char *const keys[] = {
        "\nbroker:\n",
        "\n  endpoint: ",
        "\n  feed: ",
        "\n  queries: ",
        "\nstore:\n",
        "\n  path: ",
        "\n  map_size_mb: ",
        "\n  publish_fill_percent: ",
        "\nlimits:\n",
        "\n  max_event_bytes: ",
        "\n  window: ",
        "\n  redelivery_timeout_ms: ",
        "\n  redelivery_max_ms: ",
        "\n  max_attempts: ",
        "\n  heartbeat_ms: ",
        "\nflags:\n",
        "\n  enabled: ",
        "\n  acknowledge_hours: ",
        "\n  acknowledge_urgent_hours: ",
        "\n  decide_hours: ",
        "\n  decide_urgent_hours: ",
        "\n  bounce_days: ",
        "\n  bounce_agencies: ",
        "\n  discharge_confirm_hours: ",
        "\n  tick_seconds: ",
        "\n  required:\n",
        "\nretention:\n",
        "\n  audit_days: ",
        "\nagencies:\n",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(cb_config_default_yaml, keys[i]))
            fail_msg("embedded default lacks key '%s'", keys[i] + 1);
}

static void repo_file_matches_embedded_default(void **state)
{
    (void)state;
    char path[1024], err[ERR_CAP] = "";
    const char *src = getenv("CB_SRC");
    if (src)
        snprintf(path, sizeof path, "%s/config/carebridge.yaml", src);
    else
        snprintf(path, sizeof path, "../config/carebridge.yaml");

    cb_config *file = cb_config_load(path, err, sizeof err);
    assert_non_null(file);
    cb_config *embedded = cb_config_load(NULL, err, sizeof err);
    assert_non_null(embedded);

    assert_string_equal(file->endpoint, embedded->endpoint);
    assert_string_equal(file->feed, embedded->feed);
    assert_string_equal(file->queries, embedded->queries);
    assert_string_equal(file->data_dir, embedded->data_dir);
    assert_int_equal(file->map_size_mb, embedded->map_size_mb);
    assert_int_equal(file->publish_fill_percent, embedded->publish_fill_percent);
    assert_int_equal(file->max_event_bytes, embedded->max_event_bytes);
    assert_int_equal(file->window, embedded->window);
    assert_int_equal(file->redelivery_timeout_ms, embedded->redelivery_timeout_ms);
    assert_int_equal(file->redelivery_max_ms, embedded->redelivery_max_ms);
    assert_int_equal(file->max_attempts, embedded->max_attempts);
    assert_int_equal(file->heartbeat_ms, embedded->heartbeat_ms);
    assert_int_equal(file->n_agencies, embedded->n_agencies);
    for (unsigned i = 0; i < file->n_agencies; i++)
        assert_agency(&file->agencies[i], embedded->agencies[i].id, embedded->agencies[i].kind,
                      embedded->agencies[i].name);

    cb_config_free(&file);
    cb_config_free(&embedded);
}

static void partial_file_keeps_defaults_for_omitted_keys(void **state)
{
    (void)state;
    char err[ERR_CAP] = "";
    cb_config *cfg = load_text("broker:\n"
                               "  feed: \"tcp://127.0.0.1:6000\"\n"
                               "limits:\n"
                               "  window: 7\n",
                               err);
    assert_non_null(cfg);
    assert_string_equal(cfg->feed, "tcp://127.0.0.1:6000");
    assert_int_equal(cfg->window, 7);
    assert_string_equal(cfg->endpoint, "tcp://127.0.0.1:5570");
    assert_int_equal(cfg->max_event_bytes, 262144);
    assert_int_equal(cfg->heartbeat_ms, 2000);
    assert_int_equal(cfg->map_size_mb, 1024);
    assert_default_agencies(cfg);
    cb_config_free(&cfg);
}

static void agencies_only_file_replaces_the_list(void **state)
{
    (void)state;
    char err[ERR_CAP] = "";
    cb_config *cfg = load_text("agencies:\n"
                               "  - id: st-marys\n"
                               "    kind: HEALTH\n"
                               "    name: St Mary's ward 4\n"
                               "  - id: food-bank\n"
                               "    kind: VOLUNTARY\n"
                               "    name: Food bank\n",
                               err);
    assert_non_null(cfg);
    assert_default_numbers(cfg);
    assert_int_equal(cfg->n_agencies, 2);
    assert_agency(&cfg->agencies[0], "st-marys", CB_AGENCY_HEALTH, "St Mary's ward 4");
    assert_agency(&cfg->agencies[1], "food-bank", CB_AGENCY_VOLUNTARY, "Food bank");
    cb_config_free(&cfg);
}

static void empty_file_is_all_defaults(void **state)
{
    (void)state;
    char err[ERR_CAP] = "";
    cb_config *cfg = load_text("# nothing set\n", err);
    assert_non_null(cfg);
    assert_default_numbers(cfg);
    assert_default_agencies(cfg);
    cb_config_free(&cfg);
}

static void missing_file_is_named(void **state)
{
    (void)state;
    char err[ERR_CAP] = "";
    const char *path = "/nonexistent/carebridge-test.yaml";
    assert_null(cb_config_load(path, err, sizeof err));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "cannot open"));
}

static void too_many_agencies_is_refused(void **state)
{
    (void)state;
    size_t cap = 257 * 64 + 32, len = 0;
    char *yaml = malloc(cap), err[ERR_CAP] = "";
    assert_non_null(yaml);
    len += (size_t)snprintf(yaml + len, cap - len, "agencies:\n");
    for (int i = 0; i < 257; i++)
        len += (size_t)snprintf(yaml + len, cap - len, "  - {id: a%d, kind: HOUSING, name: A}\n", i);
    cb_config *cfg = load_text(yaml, err);
    free(yaml);
    assert_null(cfg);
    assert_non_null(strstr(err, "agencies: at most 256 are allowed (got 257)"));
}

static void agency_lookup_finds_and_misses(void **state)
{
    (void)state;
    char err[ERR_CAP] = "";
    cb_config *cfg = cb_config_load(NULL, err, sizeof err);
    assert_non_null(cfg);
    const cb_agency *a = cb_config_agency(cfg, "social-care");
    assert_non_null(a);
    assert_int_equal(a->kind, CB_AGENCY_SOCIAL_CARE);
    assert_null(cb_config_agency(cfg, "Social-Care"));
    assert_null(cb_config_agency(cfg, "nobody"));
    assert_null(cb_config_agency(cfg, NULL));
    cb_config_free(&cfg);
    cb_config_free(&cfg); /* second free of a NULL is a no-op */
}

static void flags_defaults_are_the_documented_ones(void **state)
{
    (void)state;
    char err[ERR_CAP] = "";
    cb_config *cfg = cb_config_load(NULL, err, sizeof err);
    assert_non_null(cfg);
    const cb_flags_config *f = &cfg->flags;
    assert_true(f->enabled);
    assert_int_equal(f->acknowledge_hours, 4);
    assert_int_equal(f->acknowledge_urgent_hours, 1);
    assert_int_equal(f->decide_hours, 48);
    assert_int_equal(f->decide_urgent_hours, 24);
    assert_int_equal(f->bounce_days, 14);
    assert_int_equal(f->bounce_agencies, 3);
    assert_int_equal(f->discharge_confirm_hours, 24);
    assert_int_equal(f->tick_seconds, 60);
    assert_int_equal(f->n_required, 5);
    assert_string_equal(f->required[0].event, "referral");
    assert_int_equal(f->required[0].n_fields, 6);
    assert_string_equal(f->required[0].fields[3], "referral.contact.name");
    assert_int_equal(f->required[2].recipient_kind, CB_AGENCY_SOCIAL_CARE);
    assert_string_equal(f->required[2].fields[1], "discharge.medication");
    assert_int_equal(f->required[3].recipient_kind, CB_AGENCY_HOUSING);
    assert_string_equal(f->required[4].fields[2], "handover.outstandingActions");
    /* The C defaults, used when the key is absent, say the same. */
    cb_config *bare = load_text("# nothing set\n", err);
    assert_non_null(bare);
    assert_int_equal(bare->flags.n_required, f->n_required);
    for (unsigned i = 0; i < f->n_required; i++) {
        assert_string_equal(bare->flags.required[i].event, f->required[i].event);
        assert_int_equal(bare->flags.required[i].recipient_kind, f->required[i].recipient_kind);
        assert_int_equal(bare->flags.required[i].n_fields, f->required[i].n_fields);
        for (unsigned k = 0; k < f->required[i].n_fields; k++)
            assert_string_equal(bare->flags.required[i].fields[k], f->required[i].fields[k]);
    }
    cb_config_free(&bare);
    cb_config_free(&cfg);

    /* A file's list replaces the default one. */
    cfg = load_text("flags:\n  enabled: false\n", err);
    assert_non_null(cfg);
    assert_false(cfg->flags.enabled);
    assert_int_equal(cfg->flags.n_required, 5);
    assert_int_equal(cfg->flags.acknowledge_hours, 4);
    cb_config_free(&cfg);
    cfg = load_text(
        "flags:\n  required:\n    - {event: handover, recipient_kind: VOLUNTARY, fields: [handover.contact.phone]}\n",
        err);
    assert_non_null(cfg);
    assert_int_equal(cfg->flags.n_required, 1);
    assert_int_equal(cfg->flags.required[0].recipient_kind, CB_AGENCY_VOLUNTARY);
    assert_string_equal(cfg->flags.required[0].fields[0], "handover.contact.phone");
    cb_config_free(&cfg);
}

static void kind_names_match_the_yaml_spelling(void **state)
{
    (void)state;
    assert_string_equal(cb_agency_kind_name(CB_AGENCY_HEALTH), "HEALTH");
    assert_string_equal(cb_agency_kind_name(CB_AGENCY_HOUSING), "HOUSING");
    assert_string_equal(cb_agency_kind_name(CB_AGENCY_SOCIAL_CARE), "SOCIAL_CARE");
    assert_string_equal(cb_agency_kind_name(CB_AGENCY_VOLUNTARY), "VOLUNTARY");
    assert_string_equal(cb_agency_kind_name((cb_agency_kind)0), "UNKNOWN");
}

/* ---- Invalid files: each must fail with a message naming the file and
 * the key, and saying what is wrong. ---- */

struct invalid_case {
    const char *name;
    const char *yaml;
    const char *expect;
};

#define AGENCY(id, kind, name) "  - {id: " id ", kind: " kind ", name: " name "}\n"

static struct invalid_case invalid_cases[] = {
    {"window_zero", "limits: {window: 0}\n", "limits.window: must be between 1 and 10000 (got 0)"},
    {"window_too_large", "limits: {window: 10001}\n", "limits.window: must be between 1 and 10000 (got 10001)"},
    {"window_negative", "limits: {window: -1}\n", "limits.window: must be between 1 and 10000 (got -1)"},
    {"window_fraction", "limits: {window: 1.5}\n", "limits.window: must be a whole number (got '1.5')"},
    {"window_trailing_text", "limits: {window: 12abc}\n", "limits.window: must be a whole number (got '12abc')"},
    {"window_empty", "limits: {window: }\n", "limits.window: must be a whole number (got '')"},
    {"window_list", "limits: {window: [1]}\n", "limits.window: must be a single value"},
    {"max_event_bytes_too_small", "limits: {max_event_bytes: 1023}\n",
     "limits.max_event_bytes: must be between 1024 and 16777216 (got 1023)"},
    {"max_event_bytes_too_large", "limits: {max_event_bytes: 16777217}\n",
     "limits.max_event_bytes: must be between 1024 and 16777216 (got 16777217)"},
    {"redelivery_timeout_too_small", "limits: {redelivery_timeout_ms: 9}\n",
     "limits.redelivery_timeout_ms: must be at least 10 (got 9)"},
    {"redelivery_timeout_above_max", "limits: {redelivery_timeout_ms: 400000}\n",
     "limits.redelivery_timeout_ms: must not exceed limits.redelivery_max_ms (400000 > 300000)"},
    {"redelivery_max_too_large", "limits: {redelivery_max_ms: 4294967296}\n",
     "limits.redelivery_max_ms: must be between 10 and 4294967295 (got 4294967296)"},
    {"max_attempts_zero", "limits: {max_attempts: 0}\n", "limits.max_attempts: must be at least 1 (got 0)"},
    {"heartbeat_too_small", "limits: {heartbeat_ms: 49}\n",
     "limits.heartbeat_ms: must be between 50 and 600000 (got 49)"},
    {"heartbeat_too_large", "limits: {heartbeat_ms: 600001}\n",
     "limits.heartbeat_ms: must be between 50 and 600000 (got 600001)"},
    {"fill_percent_too_small", "store: {publish_fill_percent: 9}\n",
     "store.publish_fill_percent: must be between 10 and 99 (got 9)"},
    {"fill_percent_too_large", "store: {publish_fill_percent: 100}\n",
     "store.publish_fill_percent: must be between 10 and 99 (got 100)"},
    {"map_size_zero", "store: {map_size_mb: 0}\n", "store.map_size_mb: must be between 1 and 1048576 (got 0)"},
    {"map_size_too_large", "store: {map_size_mb: 1048577}\n",
     "store.map_size_mb: must be between 1 and 1048576 (got 1048577)"},
    {"endpoint_empty", "broker: {endpoint: \"\"}\n", "broker.endpoint: must not be empty"},
    {"feed_null", "broker:\n  feed:\n", "broker.feed: must not be empty"},
    {"queries_null", "broker:\n  queries:\n", "broker.queries: must not be empty"},
    {"store_path_empty", "store: {path: \"\"}\n", "store.path: must not be empty"},
    {"unknown_key", "limits:\n  window: 3\n  windw: 4\n", "limits.windw: unknown key (near line 2)"},
    {"unknown_top_level_key", "brokers: {}\n", "brokers: unknown key"},
    {"unknown_agency_key", "agencies:\n" AGENCY("a", "HEALTH", "A") "  - {id: b, kind: HEALTH, nmae: B}\n",
     "agencies[1].nmae: unknown key"},
    {"duplicate_key", "limits: {window: 1, heartbeat_ms: 100, window: 2}\n", "limits.window: is given more than once"},
    {"section_not_mapping", "limits: 5\n", "limits: must be a mapping"},
    {"top_level_not_mapping", "- a\n- b\n", "the top level must be a mapping"},
    {"agencies_not_sequence", "agencies: {id: a}\n", "agencies: must be a sequence"},
    {"agencies_empty", "agencies: []\n", "agencies: must not be empty"},
    {"agency_not_mapping", "agencies:\n" AGENCY("a", "HEALTH", "A") "  - 3\n", "agencies[1]: must be a mapping"},
    {"agency_id_upper_case",
     "agencies:\n" AGENCY("health", "HEALTH", "H") AGENCY("care", "SOCIAL_CARE", "C") AGENCY("Housing", "HOUSING", "X"),
     "agencies[2].id: 'Housing' must match [a-z0-9][a-z0-9-]* and be at most 63 characters"},
    {"agency_id_leading_dash", "agencies:\n" AGENCY("-x", "HEALTH", "X"), "agencies[0].id: '-x' must match"},
    {"agency_id_too_long",
     "agencies:\n" AGENCY("a123456789012345678901234567890123456789012345678901234567890123", "HEALTH", "X"),
     "agencies[0].id: 'a123456789012345678901234567890123456789012345678901234567890123' "
     "must match [a-z0-9][a-z0-9-]* and be at most 63 characters"},
    {"agency_id_empty", "agencies:\n  - {id: \"\", kind: HEALTH, name: X}\n", "agencies[0].id: '' must match"},
    {"agency_id_twice", "agencies:\n" AGENCY("health", "HEALTH", "A") AGENCY("health", "HOUSING", "B"),
     "agencies[1].id: 'health' is listed twice"},
    {"agency_kind_unknown", "agencies:\n" AGENCY("a", "HOSPITAL", "A"),
     "agencies[0].kind: must be one of HEALTH, HOUSING, SOCIAL_CARE, VOLUNTARY (got 'HOSPITAL')"},
    {"agency_kind_wrong_case", "agencies:\n" AGENCY("a", "Health", "A"),
     "agencies[0].kind: must be one of HEALTH, HOUSING, SOCIAL_CARE, VOLUNTARY (got 'Health')"},
    {"agency_kind_number", "agencies:\n" AGENCY("a", "1", "A"), "agencies[0].kind: must be one of"},
    {"agency_name_empty", "agencies:\n  - {id: a, kind: HEALTH, name: \"\"}\n", "agencies[0].name: must not be empty"},
    {"agency_name_missing", "agencies:\n" AGENCY("a", "HEALTH", "A") "  - {id: b, kind: HEALTH}\n",
     "agencies[1].name: is required"},
    {"agency_id_missing", "agencies:\n  - {}\n", "agencies[0].id: is required"},
    {"flags_enabled_not_boolean", "flags: {enabled: yes}\n", "flags.enabled: must be true or false (got 'yes')"},
    {"flags_acknowledge_zero", "flags: {acknowledge_hours: 0}\n",
     "flags.acknowledge_hours: must be between 1 and 8760 (got 0)"},
    {"flags_bounce_agencies_one", "flags: {bounce_agencies: 1}\n",
     "flags.bounce_agencies: must be between 2 and 64 (got 1)"},
    {"flags_tick_too_large", "flags: {tick_seconds: 86401}\n",
     "flags.tick_seconds: must be between 1 and 86400 (got 86401)"},
    {"flags_required_unknown_event", "flags:\n  required:\n    - {event: closure, fields: [closure.reason]}\n",
     "flags.required[0].event: must be referral, discharge or handover (got 'closure')"},
    {"flags_required_misspelt_field", "flags:\n  required:\n    - {event: referral, fields: [referral.consnet]}\n",
     "flags.required[0].fields[0]: 'referral.consnet' names no field of a referral"},
    {"flags_required_proto_name", "flags:\n  required:\n    - {event: discharge, fields: [discharge.planned_date]}\n",
     "flags.required[0].fields[0]: 'discharge.planned_date' names no field of a discharge"},
    {"flags_required_another_body", "flags:\n  required:\n    - {event: referral, fields: [discharge.setting]}\n",
     "flags.required[0].fields[0]: 'discharge.setting' names no field of a referral"},
    {"flags_required_empty", "flags:\n  required: []\n", "flags.required: must not be empty"},
    {"flags_required_no_fields", "flags:\n  required:\n    - {event: referral, fields: []}\n",
     "flags.required[0].fields: must not be empty"},
    {"flags_required_unknown_kind",
     "flags:\n  required:\n    - {event: referral, recipient_kind: NHS, fields: [referral.reason]}\n",
     "flags.required[0].recipient_kind: must be one of HEALTH"},
    {"key_not_z85", "broker: {key_file: b.key}\nagencies:\n  - {id: a, kind: HEALTH, name: A, keys: [\"short\"]}\n",
     "agencies[0].keys[0]: not a CURVE public key (40 Z85 characters"},
    {"key_listed_twice",
     "broker: {key_file: b.key}\nagencies:\n  - {id: a, kind: HEALTH, name: A, keys: [\"" KEY_A "\"]}\n"
     "people:\n  - {name: ann, role: operator, key: \"" KEY_A "\"}\n",
     "people[0].key: the same key is already listed as agencies[0].keys[0]"},
    {"keys_without_curve", "agencies:\n  - {id: a, kind: HEALTH, name: A, keys: [\"" KEY_A "\"]}\n",
     "agencies[0].keys[0]: keys are listed but CURVE is off: set broker.key_file"},
    {"person_role_unknown", "broker: {key_file: b.key}\npeople:\n  - {name: ann, role: admin, key: \"" KEY_A "\"}\n",
     "people[0].role: must be one of coordinator, lead, operator (got 'admin')"},
    {"person_role_agency", "broker: {key_file: b.key}\npeople:\n  - {name: ann, role: agency, key: \"" KEY_A "\"}\n",
     "people[0].role: must be one of coordinator, lead, operator (got 'agency')"},
    {"person_named_as_an_agency",
     "broker: {key_file: b.key}\npeople:\n  - {name: health, role: operator, key: \"" KEY_A "\"}\n",
     "people[0].name: 'health' is an agency's id"},
    {"coordinator_without_agencies",
     "broker: {key_file: b.key}\npeople:\n  - {name: ann, role: coordinator, key: \"" KEY_A "\"}\n",
     "people[0].agencies: a coordinator must be tied to at least one agency"},
    {"coordinator_of_an_unknown_agency",
     "broker: {key_file: b.key}\npeople:\n  - {name: ann, role: coordinator, agencies: [nowhere], key: \"" KEY_A
     "\"}\n",
     "people[0].agencies[0]: 'nowhere' names no configured agency"},
    {"operator_with_agencies",
     "broker: {key_file: b.key}\npeople:\n  - {name: ann, role: operator, agencies: [health], key: \"" KEY_A "\"}\n",
     "people[0].agencies: only a coordinator is tied to agencies (this role is operator)"},
    {"person_without_key", "broker: {key_file: b.key}\npeople:\n  - {name: ann, role: lead}\n",
     "people[0].key: is required"},
    {"not_yaml", "limits:\n  window: 3\n heartbeat_ms: 4\n", "not valid YAML: "},
    {"unterminated_quote", "broker: {endpoint: \"tcp://\n", "not valid YAML: "},
};

static void keys_and_people_are_loaded(void **state)
{
    (void)state;
    char err[ERR_CAP] = "";
    cb_config *cfg =
        load_text("broker: {key_file: keys/broker.key}\n"
                  "agencies:\n  - {id: health, kind: HEALTH, name: H, keys: [\"" KEY_A "\", \"" KEY_B "\"]}\n"
                  "  - {id: housing, kind: HOUSING, name: Ho}\n"
                  "people:\n  - {name: ann.lee, role: coordinator, agencies: [health, housing], key: \"" KEY_B "x\"}\n",
                  err);
    assert_null(cfg); /* KEY_B with a character more is not a key */
    assert_non_null(strstr(err, "people[0].key: not a CURVE public key"));
    cfg =
        load_text("broker: {key_file: keys/broker.key}\n"
                  "agencies:\n  - {id: health, kind: HEALTH, name: H, keys: [\"" KEY_A "\"]}\n"
                  "  - {id: housing, kind: HOUSING, name: Ho}\n"
                  "people:\n  - {name: ann.lee, role: coordinator, agencies: [health, housing], key: \"" KEY_B "\"}\n",
                  err);
    assert_non_null(cfg);
    assert_string_equal(cfg->key_file, "keys/broker.key");
    assert_int_equal(cfg->agencies[0].n_keys, 1);
    assert_string_equal(cfg->agencies[0].keys[0], KEY_A);
    assert_int_equal(cfg->agencies[1].n_keys, 0);
    assert_int_equal(cfg->n_people, 1);
    assert_string_equal(cfg->people[0].name, "ann.lee");
    assert_int_equal(cfg->people[0].role, CB_ROLE_COORDINATOR);
    assert_int_equal(cfg->people[0].n_agencies, 2);
    assert_string_equal(cfg->people[0].agencies[1], "housing");
    assert_string_equal(cfg->people[0].key, KEY_B);
    cb_config_free(&cfg);
    cfg = cb_config_load(NULL, err, sizeof err);
    assert_null(cfg->key_file); /* the embedded default: CURVE off, loopback only */
    assert_int_equal(cfg->n_people, 0);
    cb_config_free(&cfg);
}

static void invalid_file_is_explained(void **state)
{
    const struct invalid_case *c = *state;
    char path[256], err[ERR_CAP] = "";
    write_temp(c->yaml, path, sizeof path);
    cb_config *cfg = cb_config_load(path, err, sizeof err);
    unlink(path);
    if (cfg) {
        cb_config_free(&cfg);
        fail_msg("loaded; expected \"%s\"", c->expect);
    }
    if (!strstr(err, path) || !strstr(err, c->expect))
        fail_msg("got \"%s\"\nexpected the file name and \"%s\"", err, c->expect);
}

#define N_INVALID (sizeof invalid_cases / sizeof invalid_cases[0])

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(embedded_default_has_documented_values),
        cmocka_unit_test(embedded_default_states_every_key),
        cmocka_unit_test(flags_defaults_are_the_documented_ones),
        cmocka_unit_test(repo_file_matches_embedded_default),
        cmocka_unit_test(partial_file_keeps_defaults_for_omitted_keys),
        cmocka_unit_test(agencies_only_file_replaces_the_list),
        cmocka_unit_test(empty_file_is_all_defaults),
        cmocka_unit_test(missing_file_is_named),
        cmocka_unit_test(too_many_agencies_is_refused),
        cmocka_unit_test(agency_lookup_finds_and_misses),
        cmocka_unit_test(kind_names_match_the_yaml_spelling),
        cmocka_unit_test(keys_and_people_are_loaded),
    };
    /* Each invalid case is its own named test, so a failure says which. */
    struct CMUnitTest tests[sizeof fixed / sizeof fixed[0] + N_INVALID];
    size_t n = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        tests[n++] = fixed[i];
    for (size_t i = 0; i < N_INVALID; i++)
        tests[n++] = (struct CMUnitTest){
            .name = invalid_cases[i].name,
            .test_func = invalid_file_is_explained,
            .initial_state = &invalid_cases[i],
        };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
