/* Broker configuration: libcyaml loads what the file says, this module fills
 * in defaults, checks every value and copies the result into plain memory. */
#include "config.h"

#include <cyaml/cyaml.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cb_codec.h"
#include "cb_fields.h"
#include "curve.h"

#define MAX_AGENCIES    256
#define MAX_ID_LEN      63
#define EMBEDDED_SOURCE "(embedded default)"

/* The defaults, stated once. config/carebridge.yaml states them again for
 * readers and is what cb_config_load(NULL) parses; test_config fails if the
 * two disagree. */
static const struct {
    const char *endpoint, *feed, *queries, *metrics, *data_dir;
    int64_t map_size_mb, publish_fill_percent;
    int64_t max_event_bytes, window, redelivery_timeout_ms, redelivery_max_ms;
    int64_t max_attempts, heartbeat_ms;
    int64_t acknowledge_hours, acknowledge_urgent_hours, decide_hours, decide_urgent_hours;
    int64_t bounce_days, bounce_agencies, discharge_confirm_hours, tick_seconds;
    int64_t audit_days, event_days, closed_flag_days;
} defaults = {
    .endpoint = "tcp://127.0.0.1:5570",
    .feed = "tcp://127.0.0.1:5571",
    .queries = "tcp://127.0.0.1:5572",
    .metrics = "127.0.0.1:9570",
    .data_dir = "./var",
    .map_size_mb = 1024,
    .publish_fill_percent = 90,
    .max_event_bytes = 262144,
    .window = 128,
    .redelivery_timeout_ms = 10000,
    .redelivery_max_ms = 300000,
    .max_attempts = 5,
    .heartbeat_ms = 2000,
    .acknowledge_hours = 4,
    .acknowledge_urgent_hours = 1,
    .decide_hours = 48,
    .decide_urgent_hours = 24,
    .bounce_days = 14,
    .bounce_agencies = 3,
    .discharge_confirm_hours = 24,
    .tick_seconds = 60,
    .audit_days = 0,
    .event_days = 0,
    .closed_flag_days = 0,
};

/* What each kind of event must carry (domain.md, "The events"). */
static const char *const referral_needs[] = {
    "referral.reason",       "referral.urgency", "referral.consent",
    "referral.contact.name", "referral.risks",   "referral.communicationNeeds",
};
static const char *const discharge_needs[] = {"discharge.plannedDate", "discharge.destination", "discharge.setting",
                                              "discharge.followUps.agency"};
static const char *const discharge_social_needs[] = {"discharge.careNeeds", "discharge.medication"};
static const char *const discharge_housing_needs[] = {"discharge.housingStatus"};
static const char *const handover_needs[] = {"handover.summary", "handover.newLead", "handover.outstandingActions"};
#define NEEDS(event, kind, list)                                                                                       \
    {                                                                                                                  \
        event, kind, (char **)list, sizeof list / sizeof list[0]                                                       \
    }
static const cb_required default_required[] = {
    NEEDS("referral", 0, referral_needs),
    NEEDS("discharge", 0, discharge_needs),
    NEEDS("discharge", CB_AGENCY_SOCIAL_CARE, discharge_social_needs),
    NEEDS("discharge", CB_AGENCY_HOUSING, discharge_housing_needs),
    NEEDS("handover", 0, handover_needs),
};
#undef NEEDS

static const cb_agency default_agencies[] = {
    {"health", CB_AGENCY_HEALTH, "General Hospital discharge team (demo)", NULL, 0},
    {"housing", CB_AGENCY_HOUSING, "City Council housing options (demo)", NULL, 0},
    {"social-care", CB_AGENCY_SOCIAL_CARE, "Adult social care (demo)", NULL, 0},
    {"voluntary", CB_AGENCY_VOLUNTARY, "Community befriending service (demo)", NULL, 0},
};

/* One table names the kinds for the YAML schema, for messages and for
 * cb_agency_kind_name. */
static const cyaml_strval_t kind_names[] = {
    {"HEALTH", CB_AGENCY_HEALTH},
    {"HOUSING", CB_AGENCY_HOUSING},
    {"SOCIAL_CARE", CB_AGENCY_SOCIAL_CARE},
    {"VOLUNTARY", CB_AGENCY_VOLUNTARY},
};
#define N_KINDS (sizeof kind_names / sizeof kind_names[0])

static const cyaml_strval_t role_names[] = {
    {"agency", CB_ROLE_AGENCY},
    {"coordinator", CB_ROLE_COORDINATOR},
    {"lead", CB_ROLE_LEAD},
    {"operator", CB_ROLE_OPERATOR},
};
#define N_ROLES (sizeof role_names / sizeof role_names[0])

/* ---- What the file says, before defaults ------------------------------- */

/* A NULL member means the key was absent. Numbers are loaded as text and
 * parsed here, because libcyaml 1.3.1's integer parser takes "1.5" as 1,
 * "12abc" as 12 and "010" as octal 8 without complaint. */
struct raw_broker {
    char *endpoint, *feed, *queries, *metrics, *key_file;
};

struct raw_store {
    char *path, *map_size_mb, *publish_fill_percent;
};

struct raw_limits {
    char *max_event_bytes, *window, *redelivery_timeout_ms, *redelivery_max_ms;
    char *max_attempts, *heartbeat_ms;
};

struct raw_flags {
    char *enabled, *acknowledge_hours, *acknowledge_urgent_hours, *decide_hours, *decide_urgent_hours;
    char *bounce_days, *bounce_agencies, *discharge_confirm_hours, *tick_seconds;
    cb_required *required; /* already its final shape */
    unsigned n_required;
};

struct raw_retention {
    char *audit_days;
    char *event_days;
    char *closed_flag_days;
};

struct raw_config {
    struct raw_broker *broker;
    struct raw_retention *retention;
    struct raw_store *store;
    struct raw_limits *limits;
    struct raw_flags *flags;
    cb_agency *agencies;
    unsigned n_agencies;
    cb_person *people;
    unsigned n_people;
};

#define OPTIONAL_TEXT(key, type, member)                                                                               \
    CYAML_FIELD_STRING_PTR(key, CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, type, member, 0, CYAML_UNLIMITED)
#define REQUIRED_TEXT(key, type, member)                                                                               \
    CYAML_FIELD_STRING_PTR(key, CYAML_FLAG_POINTER, type, member, 0, CYAML_UNLIMITED)

static const cyaml_schema_field_t broker_fields[] = {
    OPTIONAL_TEXT("endpoint", struct raw_broker, endpoint), OPTIONAL_TEXT("feed", struct raw_broker, feed),
    OPTIONAL_TEXT("queries", struct raw_broker, queries),   OPTIONAL_TEXT("metrics", struct raw_broker, metrics),
    OPTIONAL_TEXT("key_file", struct raw_broker, key_file), CYAML_FIELD_END,
};

static const cyaml_schema_field_t store_fields[] = {
    OPTIONAL_TEXT("path", struct raw_store, path),
    OPTIONAL_TEXT("map_size_mb", struct raw_store, map_size_mb),
    OPTIONAL_TEXT("publish_fill_percent", struct raw_store, publish_fill_percent),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t limits_fields[] = {
    OPTIONAL_TEXT("max_event_bytes", struct raw_limits, max_event_bytes),
    OPTIONAL_TEXT("window", struct raw_limits, window),
    OPTIONAL_TEXT("redelivery_timeout_ms", struct raw_limits, redelivery_timeout_ms),
    OPTIONAL_TEXT("redelivery_max_ms", struct raw_limits, redelivery_max_ms),
    OPTIONAL_TEXT("max_attempts", struct raw_limits, max_attempts),
    OPTIONAL_TEXT("heartbeat_ms", struct raw_limits, heartbeat_ms),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t field_path_schema = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, CYAML_UNLIMITED),
};

static const cyaml_schema_value_t text_schema = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED),
};

/* Strict: without it libcyaml also accepts a kind's number ("kind: 2"). */
static const cyaml_schema_field_t agency_fields[] = {
    REQUIRED_TEXT("id", cb_agency, id),
    CYAML_FIELD_ENUM("kind", CYAML_FLAG_CASE_SENSITIVE | CYAML_FLAG_STRICT, cb_agency, kind, kind_names, N_KINDS),
    REQUIRED_TEXT("name", cb_agency, name),
    CYAML_FIELD_SEQUENCE_COUNT("keys", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, cb_agency, keys, n_keys, &text_schema,
                               0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

/* "agency" is no person's role: an agency's keys are listed with it. */
static const cyaml_schema_field_t person_fields[] = {
    REQUIRED_TEXT("name", cb_person, name),
    CYAML_FIELD_ENUM("role", CYAML_FLAG_CASE_SENSITIVE | CYAML_FLAG_STRICT, cb_person, role, role_names + 1,
                     N_ROLES - 1),
    CYAML_FIELD_SEQUENCE_COUNT("agencies", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, cb_person, agencies, n_agencies,
                               &text_schema, 0, CYAML_UNLIMITED),
    REQUIRED_TEXT("key", cb_person, key),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t person_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, cb_person, person_fields),
};

static const cyaml_schema_value_t agency_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, cb_agency, agency_fields),
};

static const cyaml_schema_field_t required_fields[] = {
    REQUIRED_TEXT("event", cb_required, event),
    CYAML_FIELD_ENUM("recipient_kind", CYAML_FLAG_CASE_SENSITIVE | CYAML_FLAG_STRICT | CYAML_FLAG_OPTIONAL, cb_required,
                     recipient_kind, kind_names, N_KINDS),
    CYAML_FIELD_SEQUENCE_COUNT("fields", CYAML_FLAG_POINTER, cb_required, fields, n_fields, &field_path_schema, 1,
                               CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t required_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, cb_required, required_fields),
};

static const cyaml_schema_field_t flags_fields[] = {
    OPTIONAL_TEXT("enabled", struct raw_flags, enabled),
    OPTIONAL_TEXT("acknowledge_hours", struct raw_flags, acknowledge_hours),
    OPTIONAL_TEXT("acknowledge_urgent_hours", struct raw_flags, acknowledge_urgent_hours),
    OPTIONAL_TEXT("decide_hours", struct raw_flags, decide_hours),
    OPTIONAL_TEXT("decide_urgent_hours", struct raw_flags, decide_urgent_hours),
    OPTIONAL_TEXT("bounce_days", struct raw_flags, bounce_days),
    OPTIONAL_TEXT("bounce_agencies", struct raw_flags, bounce_agencies),
    OPTIONAL_TEXT("discharge_confirm_hours", struct raw_flags, discharge_confirm_hours),
    OPTIONAL_TEXT("tick_seconds", struct raw_flags, tick_seconds),
    CYAML_FIELD_SEQUENCE_COUNT("required", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_flags, required,
                               n_required, &required_schema, 1, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t retention_fields[] = {
    OPTIONAL_TEXT("audit_days", struct raw_retention, audit_days),
    OPTIONAL_TEXT("event_days", struct raw_retention, event_days),
    OPTIONAL_TEXT("closed_flag_days", struct raw_retention, closed_flag_days),
    CYAML_FIELD_END,
};

/* At least one entry: an empty list would otherwise look like no list and
 * silently bring back the demo agencies. The upper bound is checked later,
 * with a clearer message than libcyaml's. */
static const cyaml_schema_field_t root_fields[] = {
    CYAML_FIELD_MAPPING_PTR("broker", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_config, broker,
                            broker_fields),
    CYAML_FIELD_MAPPING_PTR("store", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_config, store, store_fields),
    CYAML_FIELD_MAPPING_PTR("limits", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_config, limits,
                            limits_fields),
    CYAML_FIELD_MAPPING_PTR("flags", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_config, flags, flags_fields),
    CYAML_FIELD_MAPPING_PTR("retention", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_config, retention,
                            retention_fields),
    CYAML_FIELD_SEQUENCE_COUNT("agencies", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_config, agencies,
                               n_agencies, &agency_schema, 1, CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE_COUNT("people", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct raw_config, people, n_people,
                               &person_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t root_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct raw_config, root_fields),
};

/* ---- Errors ------------------------------------------------------------- */

/* The first failure, prefixed with the source; later ones are dropped so the
 * message names the first thing to fix, and checks can run straight-line. */
struct report {
    const char *source;
    char *err;
    size_t cap;
    bool failed;
};

__attribute__((format(printf, 2, 3))) static void fail(struct report *r, const char *fmt, ...)
{
    if (r->failed)
        return;
    r->failed = true;
    if (!r->err || r->cap == 0)
        return;
    int n = snprintf(r->err, r->cap, "%s: ", r->source);
    if (n < 0 || (size_t)n >= r->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + n, r->cap - (size_t)n, fmt, ap);
    va_end(ap);
}

/* libcyaml reports a schema error as one log line followed by a backtrace,
 * innermost frame first:
 *     Load: Unexpected key: windw
 *     Load: Backtrace:
 *       in mapping (line: 3, column: 11)
 *       in mapping field 'limits' (line: 3, column: 3)
 * The log callback keeps the first message and its frames; explain_cyaml
 * turns them into "limits.windw: unknown key (near line 3)". */
enum frame_kind { FRAME_MAPPING, FRAME_FIELD, FRAME_ENTRY };

struct frame {
    enum frame_kind kind;
    char name[64]; /* field key, or the 1-based sequence entry number */
    unsigned line; /* 0 when libcyaml gave none */
};

struct cyaml_log {
    char message[256];
    struct frame frames[8];
    unsigned n_frames;
    bool done; /* a second message arrived: the first one is the cause */
};

static void add_frame(struct cyaml_log *log, const char *text)
{
    if (log->n_frames == sizeof log->frames / sizeof log->frames[0])
        return;
    struct frame *f = &log->frames[log->n_frames];
    *f = (struct frame){0};
    if (sscanf(text, "mapping field '%63[^']' (line: %u", f->name, &f->line) >= 1) {
        f->kind = FRAME_FIELD;
    } else if (sscanf(text, "sequence entry '%63[^']' (line: %u", f->name, &f->line) >= 1) {
        f->kind = FRAME_ENTRY;
    } else if (strncmp(text, "mapping (", 9) == 0) {
        f->kind = FRAME_MAPPING;
        sscanf(text, "mapping (line: %u", &f->line);
    } else {
        return;
    }
    log->n_frames++;
}

static void capture_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    struct cyaml_log *log = ctx;
    char line[256];

    (void)level;
    vsnprintf(line, sizeof line, fmt, args);
    line[strcspn(line, "\n")] = '\0';

    const char *text = strncmp(line, "Load: ", 6) == 0 ? line + 6 : line;
    if (log->done || strcmp(text, "Backtrace:") == 0)
        return;
    if (strncmp(line, "  in ", 5) == 0) {
        if (log->message[0])
            add_frame(log, line + 5);
    } else if (log->message[0]) {
        log->done = true;
    } else {
        snprintf(log->message, sizeof log->message, "%s", text);
    }
}

/* How a libcyaml message maps to ours. `drop` removes innermost frames that
 * do not belong in the key path (for a missing key libcyaml still shows the
 * last field it read; for a short sequence, the entry it did not find);
 * `key` appends the key named after the prefix; `path` false leaves the
 * path out, for syntax errors where it only says where parsing stopped. */
static const struct {
    const char *prefix;
    const char *says; /* NULL: the kinds, for an enum */
    unsigned drop;
    bool key, path;
} cyaml_messages[] = {
    {"Unexpected key: ", "unknown key", 0, true, true},
    {"Missing required mapping field: ", "is required", 1, true, true},
    {"Mapping field already seen: ", "is given more than once", 0, false, true},
    {"Insufficient entries", "must not be empty", 1, false, true},
    {"Invalid ENUM value: ", NULL, 0, false, true},
    {"Expecting MAPPING", "must be a mapping", 0, false, true},
    {"Expecting SEQUENCE", "must be a sequence", 0, false, true},
    {"Expecting ", "must be a single value, not a list or mapping", 0, false, true},
    {"libyaml: ", "not valid YAML:", 0, false, false},
};

/* "agencies[1].name": frames from outermost to innermost, less `drop`. */
static void key_path(const struct cyaml_log *log, unsigned drop, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (unsigned i = log->n_frames; i > drop; i--) {
        const struct frame *f = &log->frames[i - 1];
        int n = 0;
        if (f->kind == FRAME_FIELD)
            n = snprintf(out + len, cap - len, "%s%s", len ? "." : "", f->name);
        else if (f->kind == FRAME_ENTRY)
            n = snprintf(out + len, cap - len, "[%ld]", strtol(f->name, NULL, 10) - 1);
        if (n < 0 || (size_t)n >= cap - len)
            return;
        len += (size_t)n;
    }
}

static void append_key(char *path, size_t cap, const char *key)
{
    size_t len = strlen(path);
    snprintf(path + len, cap - len, "%s%s", len ? "." : "", key);
}

static void kind_choices(char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < N_KINDS && len < cap; i++) {
        int n = snprintf(out + len, cap - len, "%s%s", i ? ", " : "", kind_names[i].str);
        if (n < 0)
            return;
        len += (size_t)n;
    }
}

static void explain_cyaml(struct report *r, const struct cyaml_log *log, cyaml_err_t rc)
{
    size_t i = 0, n = sizeof cyaml_messages / sizeof cyaml_messages[0];
    while (i < n && strncmp(log->message, cyaml_messages[i].prefix, strlen(cyaml_messages[i].prefix)) != 0)
        i++;
    if (!log->message[0] || i == n) {
        fail(r, "%s", log->message[0] ? log->message : cyaml_strerror(rc));
        return;
    }

    const char *rest = log->message + strlen(cyaml_messages[i].prefix);
    char path[256], says[256], where[32] = "";
    key_path(log, cyaml_messages[i].drop, path, sizeof path);
    if (cyaml_messages[i].key)
        append_key(path, sizeof path, rest);
    if (!cyaml_messages[i].path)
        path[0] = '\0';

    if (cyaml_messages[i].says) {
        snprintf(says, sizeof says, "%s", cyaml_messages[i].says);
    } else {
        char kinds[128];
        size_t len = strlen(path);
        if (len >= 4 && !strcmp(path + len - 4, "role"))
            snprintf(kinds, sizeof kinds, "coordinator, lead, operator");
        else
            kind_choices(kinds, sizeof kinds);
        snprintf(says, sizeof says, "must be one of %s (got '%s')", kinds, rest);
    }
    if (log->n_frames && log->frames[0].line)
        snprintf(where, sizeof where, " (near line %u)", log->frames[0].line);

    if (!cyaml_messages[i].path)
        fail(r, "%s %s%s", says, rest, where);
    else if (path[0])
        fail(r, "%s: %s%s", path, says, where);
    else
        fail(r, "the top level %s%s", says, where);
}

/* ---- Defaults and checks ------------------------------------------------ */

/* A decimal integer and nothing else: no octal, hex, fraction or suffix. */
static bool parse_decimal(const char *text, int64_t *out)
{
    const char *digits = text + (text[0] == '-');
    if (!digits[0] || strspn(digits, "0123456789") != strlen(digits))
        return false;
    errno = 0;
    long long v = strtoll(text, NULL, 10);
    if (errno == ERANGE)
        return false;
    *out = v;
    return true;
}

/* An optional number: the default when absent, else the given value if it
 * lies in [min, max]. On failure the default is returned so later checks
 * see a sane value; only the first message is kept anyway. */
static int64_t number(struct report *r, const char *key, const char *given, int64_t dflt, int64_t min, int64_t max)
{
    int64_t v;
    if (!given)
        return dflt;
    if (!parse_decimal(given, &v)) {
        fail(r, "%s: must be a whole number (got '%s')", key, given);
        return dflt;
    }
    if (v >= min && v <= max)
        return v;
    if (v < min && max == UINT32_MAX)
        fail(r, "%s: must be at least %lld (got %lld)", key, (long long)min, (long long)v);
    else
        fail(r, "%s: must be between %lld and %lld (got %lld)", key, (long long)min, (long long)max, (long long)v);
    return dflt;
}

static char *copy(struct report *r, const char *s)
{
    char *c = strdup(s);
    if (!c)
        fail(r, "out of memory");
    return c;
}

/* An optional string: the default when absent; given, it must not be empty. */
static char *text(struct report *r, const char *key, const char *given, const char *dflt)
{
    if (given && !given[0])
        fail(r, "%s: must not be empty", key);
    return copy(r, given && given[0] ? given : dflt);
}

/* [a-z0-9][a-z0-9-]*, at most MAX_ID_LEN: safe in store keys and topics. */
static bool valid_id(const char *id)
{
    size_t len = strlen(id);
    return len >= 1 && len <= MAX_ID_LEN && id[0] != '-' && strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") == len;
}

static void check_agency(struct report *r, const cb_agency *list, unsigned i)
{
    const cb_agency *a = &list[i];
    if (!valid_id(a->id))
        fail(r, "agencies[%u].id: '%s' must match [a-z0-9][a-z0-9-]* and be at most %d characters", i, a->id,
             MAX_ID_LEN);
    for (unsigned j = 0; j < i; j++)
        if (strcmp(list[j].id, a->id) == 0)
            fail(r, "agencies[%u].id: '%s' is listed twice (first as agencies[%u])", i, a->id, j);
    if (!a->name[0])
        fail(r, "agencies[%u].name: must not be empty", i);
}

/* The given list replaces the default list entirely: merging entry by entry
 * would keep demo agencies in a real deployment. */
static void copy_agencies(struct report *r, cb_config *cfg, const cb_agency *list, unsigned n)
{
    if (n > MAX_AGENCIES) {
        fail(r, "agencies: at most %d are allowed (got %u)", MAX_AGENCIES, n);
        return;
    }
    cfg->agencies = calloc(n, sizeof *cfg->agencies);
    if (!cfg->agencies) {
        fail(r, "out of memory");
        return;
    }
    cfg->n_agencies = n;
    size_t used = 0, cap = sizeof cfg->agency_list;
    for (unsigned i = 0; i < n && !r->failed; i++) {
        check_agency(r, list, i);
        cfg->agencies[i].id = copy(r, list[i].id);
        cfg->agencies[i].kind = list[i].kind;
        cfg->agencies[i].name = copy(r, list[i].name);
        cfg->agencies[i].keys = calloc(list[i].n_keys + 1, sizeof *cfg->agencies[i].keys);
        if (!cfg->agencies[i].keys)
            fail(r, "out of memory");
        for (unsigned k = 0; k < list[i].n_keys && cfg->agencies[i].keys; k++)
            cfg->agencies[i].keys[cfg->agencies[i].n_keys++] = copy(r, list[i].keys[k]);
        /* Room is kept for ", ..." after the last name that fits. */
        const char *sep = i ? ", " : "";
        if (used + strlen(sep) + strlen(list[i].id) + sizeof ", ..." <= cap)
            used += (size_t)snprintf(cfg->agency_list + used, cap - used, "%s%s", sep, list[i].id);
        else if (used + sizeof ", ..." <= cap)
            used += (size_t)snprintf(cfg->agency_list + used, cap - used, ", ...");
    }
}

/* A person's name is the audit's "who": printable, and never an agency's id,
 * so a record cannot be read as the other. */
static bool valid_person_name(const char *name)
{
    size_t len = strlen(name);
    return len >= 1 && len <= MAX_ID_LEN && name[0] != '.' && name[0] != '-' &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

static void copy_people(struct report *r, cb_config *cfg, const cb_person *list, unsigned n)
{
    cfg->people = calloc(n + 1, sizeof *cfg->people);
    if (!cfg->people) {
        fail(r, "out of memory");
        return;
    }
    for (unsigned i = 0; i < n && !r->failed; i++) {
        const cb_person *q = &list[i];
        if (!valid_person_name(q->name))
            fail(r, "people[%u].name: '%s' must be letters, digits, '.', '_' and '-', at most %d", i, q->name,
                 MAX_ID_LEN);
        if (cb_config_agency(cfg, q->name))
            fail(r, "people[%u].name: '%s' is an agency's id; a person needs a name of their own", i, q->name);
        for (unsigned j = 0; j < i; j++)
            if (!strcmp(list[j].name, q->name))
                fail(r, "people[%u].name: '%s' is listed twice (first as people[%u])", i, q->name, j);
        if (q->role == CB_ROLE_COORDINATOR && !q->n_agencies)
            fail(r, "people[%u].agencies: a coordinator must be tied to at least one agency", i);
        if (q->role != CB_ROLE_COORDINATOR && q->n_agencies)
            fail(r, "people[%u].agencies: only a coordinator is tied to agencies (this role is %s)", i,
                 cb_role_name(q->role));
        cb_person *to = &cfg->people[cfg->n_people++];
        to->name = copy(r, q->name);
        to->role = q->role;
        to->key = copy(r, q->key);
        to->agencies = calloc(q->n_agencies + 1, sizeof *to->agencies);
        if (!to->agencies) {
            fail(r, "out of memory");
            return;
        }
        for (unsigned k = 0; k < q->n_agencies && !r->failed; k++) {
            if (!cb_config_agency(cfg, q->agencies[k]))
                fail(r, "people[%u].agencies[%u]: '%s' names no configured agency (configured: %s)", i, k,
                     q->agencies[k], cfg->agency_list);
            to->agencies[to->n_agencies++] = copy(r, q->agencies[k]);
        }
    }
}

/* Where the key text is listed: "agencies[1].keys[0]" or "people[2].key". */
struct key_at {
    const char *text;
    char where[48];
};

/* Every key is a Z85 public key, listed once: a key shared by two
 * principals would let one act as the other. Keys without CURVE would not
 * be checked at all, so they are refused rather than ignored. */
static void check_keys(struct report *r, const cb_config *cfg)
{
    size_t n = 0, cap = cfg->n_people;
    for (unsigned a = 0; a < cfg->n_agencies; a++)
        cap += cfg->agencies[a].n_keys;
    struct key_at *all = calloc(cap + 1, sizeof *all);
    if (!all) {
        fail(r, "out of memory");
        return;
    }
    for (unsigned a = 0; a < cfg->n_agencies; a++)
        for (unsigned k = 0; k < cfg->agencies[a].n_keys; k++) {
            all[n].text = cfg->agencies[a].keys[k];
            snprintf(all[n++].where, sizeof all->where, "agencies[%u].keys[%u]", a, k);
        }
    for (unsigned p = 0; p < cfg->n_people; p++) {
        all[n].text = cfg->people[p].key;
        snprintf(all[n++].where, sizeof all->where, "people[%u].key", p);
    }
    for (size_t i = 0; i < n; i++) {
        if (!cb_z85_key(all[i].text, NULL))
            fail(r, "%s: not a CURVE public key (40 Z85 characters, as `carebridge keys new` prints)", all[i].where);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(all[i].text, all[j].text))
                fail(r, "%s: the same key is already listed as %s", all[i].where, all[j].where);
    }
    if (n && !cfg->key_file)
        fail(r, "%s: keys are listed but CURVE is off: set broker.key_file to the broker's secret key file",
             all[0].where);
    free(all);
}

static bool boolean(struct report *r, const char *key, const char *given, bool dflt)
{
    if (!given)
        return dflt;
    if (!strcmp(given, "true") || !strcmp(given, "false"))
        return given[0] == 't';
    fail(r, "%s: must be true or false (got '%s')", key, given);
    return dflt;
}

/* Each path must name a field of the event's own body, so a misspelt one
 * cannot silently require nothing. */
static void copy_required(struct report *r, cb_flags_config *f, const cb_required *list, unsigned n)
{
    static const char *const events[] = {"referral", "discharge", "handover"};
    f->required = calloc(n + 1, sizeof *f->required);
    if (!f->required) {
        fail(r, "out of memory");
        return;
    }
    for (unsigned i = 0; i < n && !r->failed; i++) {
        const cb_required *q = &list[i];
        bool known = false;
        for (size_t e = 0; e < sizeof events / sizeof events[0]; e++)
            known |= !strcmp(q->event, events[e]);
        if (!known)
            fail(r, "flags.required[%u].event: must be referral, discharge or handover (got '%s')", i, q->event);
        cb_required *to = &f->required[f->n_required++];
        to->event = copy(r, q->event);
        to->recipient_kind = q->recipient_kind;
        to->fields = calloc(q->n_fields + 1, sizeof *to->fields);
        if (!to->fields) {
            fail(r, "out of memory");
            return;
        }
        for (unsigned k = 0; k < q->n_fields && !r->failed; k++) {
            size_t len = strlen(q->event);
            if (strncmp(q->fields[k], q->event, len) || q->fields[k][len] != '.' ||
                !cb_field_path_valid(&carebridge__v1__envelope__descriptor, q->fields[k]))
                fail(r, "flags.required[%u].fields[%u]: '%s' names no field of a %s (JSON names, as '%s.%s')", i, k,
                     q->fields[k], q->event, q->event, !strcmp(q->event, "referral") ? "consent" : "summary");
            to->fields[to->n_fields++] = copy(r, q->fields[k]);
        }
    }
}

static void build_flags(struct report *r, cb_flags_config *f, const struct raw_flags *g)
{
    f->enabled = boolean(r, "flags.enabled", g->enabled, true);
    f->acknowledge_hours =
        (uint32_t)number(r, "flags.acknowledge_hours", g->acknowledge_hours, defaults.acknowledge_hours, 1, 8760);
    f->acknowledge_urgent_hours = (uint32_t)number(r, "flags.acknowledge_urgent_hours", g->acknowledge_urgent_hours,
                                                   defaults.acknowledge_urgent_hours, 1, 8760);
    f->decide_hours = (uint32_t)number(r, "flags.decide_hours", g->decide_hours, defaults.decide_hours, 1, 8760);
    f->decide_urgent_hours =
        (uint32_t)number(r, "flags.decide_urgent_hours", g->decide_urgent_hours, defaults.decide_urgent_hours, 1, 8760);
    f->bounce_days = (uint32_t)number(r, "flags.bounce_days", g->bounce_days, defaults.bounce_days, 1, 365);
    f->bounce_agencies =
        (uint32_t)number(r, "flags.bounce_agencies", g->bounce_agencies, defaults.bounce_agencies, 2, 64);
    f->discharge_confirm_hours = (uint32_t)number(r, "flags.discharge_confirm_hours", g->discharge_confirm_hours,
                                                  defaults.discharge_confirm_hours, 1, 720);
    f->tick_seconds = (uint32_t)number(r, "flags.tick_seconds", g->tick_seconds, defaults.tick_seconds, 1, 86400);
    if (g->required)
        copy_required(r, f, g->required, g->n_required);
    else
        copy_required(r, f, default_required, sizeof default_required / sizeof default_required[0]);
}

static cb_config *build(struct report *r, const struct raw_config *raw)
{
    const struct raw_broker *b = raw->broker ? raw->broker : &(struct raw_broker){0};
    const struct raw_store *s = raw->store ? raw->store : &(struct raw_store){0};
    const struct raw_limits *l = raw->limits ? raw->limits : &(struct raw_limits){0};
    cb_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        fail(r, "out of memory");
        return NULL;
    }

    cfg->endpoint = text(r, "broker.endpoint", b->endpoint, defaults.endpoint);
    cfg->feed = text(r, "broker.feed", b->feed, defaults.feed);
    cfg->queries = text(r, "broker.queries", b->queries, defaults.queries);
    cfg->metrics = text(r, "broker.metrics", b->metrics, defaults.metrics);
    if (b->key_file)
        cfg->key_file = text(r, "broker.key_file", b->key_file, "");
    cfg->data_dir = text(r, "store.path", s->path, defaults.data_dir);
    cfg->map_size_mb = (uint64_t)number(r, "store.map_size_mb", s->map_size_mb, defaults.map_size_mb, 1, 1048576);
    cfg->publish_fill_percent = (uint32_t)number(r, "store.publish_fill_percent", s->publish_fill_percent,
                                                 defaults.publish_fill_percent, 10, 99);
    cfg->max_event_bytes =
        (uint32_t)number(r, "limits.max_event_bytes", l->max_event_bytes, defaults.max_event_bytes, 1024, 16777216);
    cfg->window = (uint32_t)number(r, "limits.window", l->window, defaults.window, 1, 10000);
    cfg->redelivery_timeout_ms = (uint32_t)number(r, "limits.redelivery_timeout_ms", l->redelivery_timeout_ms,
                                                  defaults.redelivery_timeout_ms, 10, UINT32_MAX);
    cfg->redelivery_max_ms = (uint32_t)number(r, "limits.redelivery_max_ms", l->redelivery_max_ms,
                                              defaults.redelivery_max_ms, 10, UINT32_MAX);
    if (cfg->redelivery_timeout_ms > cfg->redelivery_max_ms)
        fail(r,
             "limits.redelivery_timeout_ms: must not exceed limits.redelivery_max_ms "
             "(%u > %u)",
             cfg->redelivery_timeout_ms, cfg->redelivery_max_ms);
    cfg->max_attempts =
        (uint32_t)number(r, "limits.max_attempts", l->max_attempts, defaults.max_attempts, 1, UINT32_MAX);
    cfg->heartbeat_ms = (uint32_t)number(r, "limits.heartbeat_ms", l->heartbeat_ms, defaults.heartbeat_ms, 50, 600000);
    build_flags(r, &cfg->flags, raw->flags ? raw->flags : &(struct raw_flags){0});
    const struct raw_retention *ret = raw->retention ? raw->retention : &(struct raw_retention){0};
    cfg->retention.audit_days =
        (uint32_t)number(r, "retention.audit_days", ret->audit_days, defaults.audit_days, 0, 36500);
    cfg->retention.event_days =
        (uint32_t)number(r, "retention.event_days", ret->event_days, defaults.event_days, 0, 36500);
    cfg->retention.closed_flag_days =
        (uint32_t)number(r, "retention.closed_flag_days", ret->closed_flag_days, defaults.closed_flag_days, 0, 36500);
    if (raw->agencies)
        copy_agencies(r, cfg, raw->agencies, raw->n_agencies);
    else
        copy_agencies(r, cfg, default_agencies, sizeof default_agencies / sizeof default_agencies[0]);
    if (!r->failed)
        copy_people(r, cfg, raw->people, raw->n_people);
    if (!r->failed)
        check_keys(r, cfg);

    if (r->failed)
        cb_config_free(&cfg);
    return cfg;
}

/* ---- Public ------------------------------------------------------------- */

cb_config *cb_config_load(const char *path, char *err, size_t cap)
{
    struct report r = {.source = path ? path : EMBEDDED_SOURCE, .err = err, .cap = cap};
    struct cyaml_log log = {0};
    const cyaml_config_t cy = {
        .log_fn = capture_log,
        .log_ctx = &log,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_WARNING,
        .flags = CYAML_CFG_DEFAULT,
    };
    cyaml_data_t *data = NULL;
    cyaml_err_t rc;

    if (path)
        rc = cyaml_load_file(path, &cy, &root_schema, &data, NULL);
    else
        rc = cyaml_load_data((const uint8_t *)cb_config_default_yaml, strlen(cb_config_default_yaml), &cy, &root_schema,
                             &data, NULL);
    if (rc == CYAML_ERR_FILE_OPEN) {
        fail(&r, "cannot open (%s)", strerror(errno));
        return NULL;
    }
    if (rc != CYAML_OK) {
        explain_cyaml(&r, &log, rc);
        return NULL;
    }

    /* An empty document loads as NULL: every key absent. */
    struct raw_config *raw = data;
    cb_config *cfg = build(&r, raw ? raw : &(struct raw_config){0});
    cyaml_free(&cy, &root_schema, data, 0);
    return cfg;
}

void cb_config_free(cb_config **cfg_p)
{
    if (!cfg_p || !*cfg_p)
        return;
    cb_config *cfg = *cfg_p;
    free(cfg->endpoint);
    free(cfg->feed);
    free(cfg->queries);
    free(cfg->metrics);
    free(cfg->data_dir);
    free(cfg->key_file);
    for (unsigned i = 0; i < cfg->n_agencies; i++) {
        free(cfg->agencies[i].id);
        free(cfg->agencies[i].name);
        for (unsigned k = 0; k < cfg->agencies[i].n_keys; k++)
            free(cfg->agencies[i].keys[k]);
        free(cfg->agencies[i].keys);
    }
    free(cfg->agencies);
    for (unsigned i = 0; i < cfg->n_people; i++) {
        free(cfg->people[i].name);
        free(cfg->people[i].key);
        for (unsigned k = 0; k < cfg->people[i].n_agencies; k++)
            free(cfg->people[i].agencies[k]);
        free(cfg->people[i].agencies);
    }
    free(cfg->people);
    for (unsigned i = 0; i < cfg->flags.n_required; i++) {
        for (unsigned k = 0; k < cfg->flags.required[i].n_fields; k++)
            free(cfg->flags.required[i].fields[k]);
        free(cfg->flags.required[i].fields);
        free(cfg->flags.required[i].event);
    }
    free(cfg->flags.required);
    free(cfg);
    *cfg_p = NULL;
}

const cb_agency *cb_config_agency(const cb_config *cfg, const char *id)
{
    if (!cfg || !id)
        return NULL;
    for (unsigned i = 0; i < cfg->n_agencies; i++)
        if (strcmp(cfg->agencies[i].id, id) == 0)
            return &cfg->agencies[i];
    return NULL;
}

const char *cb_agency_kind_name(cb_agency_kind kind)
{
    for (size_t i = 0; i < N_KINDS; i++)
        if (kind_names[i].val == (int64_t)kind)
            return kind_names[i].str;
    return "UNKNOWN";
}

const char *cb_role_name(cb_role role)
{
    for (size_t i = 0; i < N_ROLES; i++)
        if (role_names[i].val == (int64_t)role)
            return role_names[i].str;
    return "unknown";
}
