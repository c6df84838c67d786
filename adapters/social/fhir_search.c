#include "fhir_search.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include "fhir.h"

#define MAX_TERMS 8

typedef struct {
    char prefix[3]; /* eq, gt, ge, lt, le */
    char when[40];  /* the instant or its leading part, UTC */
} date_term;

struct fhir_query {
    char *patient[MAX_TERMS]; /* system|value tokens: any one matches */
    size_t n_patient;
    char *ident[MAX_TERMS]; /* the resource's own identifier, as tokens */
    size_t n_ident;
    char *ids[MAX_TERMS]; /* _id */
    size_t n_ids;
    char *status[MAX_TERMS];
    size_t n_status;
    date_term updated[MAX_TERMS]; /* all must hold */
    size_t n_updated;
    long count, offset; /* the page: -1 for the default size; where it starts among the matches */
    char error[200];
};

fhir_query *fhir_query_new(void)
{
    fhir_query *q = calloc(1, sizeof *q);
    if (q)
        q->count = -1;
    return q;
}

size_t fhir_query_page(const fhir_query *q, size_t *offset)
{
    *offset = (size_t)q->offset;
    return q->count < 0 ? FHIR_PAGE_DEFAULT : (size_t)q->count;
}

void fhir_query_free(fhir_query **q_p)
{
    fhir_query *q = *q_p;
    if (q) {
        for (size_t i = 0; i < q->n_patient; i++)
            free(q->patient[i]);
        for (size_t i = 0; i < q->n_status; i++)
            free(q->status[i]);
        for (size_t i = 0; i < q->n_ident; i++)
            free(q->ident[i]);
        for (size_t i = 0; i < q->n_ids; i++)
            free(q->ids[i]);
        free(q);
    }
    *q_p = NULL;
}

/* A comma-separated list of alternatives into items. */
static void split(char **items, size_t *n, const char *value)
{
    for (const char *p = value; *p && *n < MAX_TERMS;) {
        size_t len = strcspn(p, ",");
        if (len)
            items[(*n)++] = strndup(p, len);
        p += len + (p[len] ? 1 : 0);
    }
}

static void add_date(fhir_query *q, const char *value)
{
    static const char *const prefixes[] = {"eq", "gt", "ge", "lt", "le"};
    date_term t = {"eq", ""};
    for (size_t i = 0; i < 5; i++)
        if (!strncmp(value, prefixes[i], 2)) {
            memcpy(t.prefix, prefixes[i], 3);
            value += 2;
        }
    size_t len = strlen(value);
    /* UTC only: Z or +00:00 taken off, so the leading part compares as text. */
    if (len > 1 && value[len - 1] == 'Z')
        len--;
    else if (len > 6 && !strcmp(value + len - 6, "+00:00"))
        len -= 6;
    bool ok = len >= 4 && len < sizeof t.when && q->n_updated < MAX_TERMS;
    for (size_t i = 0; ok && i < len; i++)
        ok = strchr("0123456789-T:.", value[i]) != NULL;
    if (!ok || (len > 10 && memchr(value, 'T', len) == NULL)) {
        snprintf(q->error, sizeof q->error,
                 "_lastUpdated must be [eq|gt|ge|lt|le]YYYY[-MM[-DD[Thh:mm[:ss[.sss]]]]] in UTC (Z or +00:00)");
        return;
    }
    memcpy(t.when, value, len);
    t.when[len] = 0;
    q->updated[q->n_updated++] = t;
}

/* _count or _offset: a whole number from 0; a larger _count is cut to the most a page holds. */
static void page_term(fhir_query *q, const char *key, const char *value)
{
    char *end = NULL;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (!value[0] || *end || n < 0 || errno) {
        snprintf(q->error, sizeof q->error, "%s must be a whole number from 0", key);
        return;
    }
    if (key[1] == 'c')
        q->count = n < FHIR_PAGE_MOST ? n : FHIR_PAGE_MOST;
    else
        q->offset = n;
}

bool fhir_query_add(fhir_query *q, const char *key, const char *value)
{
    if (!strcmp(key, "patient:identifier") || !strcmp(key, "subject:identifier") ||
        !strcmp(key, "patient.identifier") || !strcmp(key, "subject.identifier"))
        split(q->patient, &q->n_patient, value);
    else if (!strcmp(key, "identifier")) /* the resource's own, as FHIR defines it: not the patient's */
        split(q->ident, &q->n_ident, value);
    else if (!strcmp(key, "_id"))
        split(q->ids, &q->n_ids, value);
    else if (!strcmp(key, "status"))
        split(q->status, &q->n_status, value);
    else if (!strcmp(key, "_lastUpdated"))
        add_date(q, value);
    else if (!strcmp(key, "_count") || !strcmp(key, "_offset"))
        page_term(q, key, value);
    else
        return false;
    return true;
}

/* %XX decoded in place. */
static void unescape(char *s)
{
    char *out = s;
    for (; *s; s++) {
        unsigned hex;
        if (*s == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2]) &&
            sscanf(s + 1, "%2x", &hex) == 1 && hex) {
            *out++ = (char)hex;
            s += 2;
        } else {
            *out++ = *s;
        }
    }
    *out = 0;
}

fhir_query *fhir_query_parse(const char *text, char *why, size_t cap)
{
    fhir_query *q = fhir_query_new();
    char *copy = strdup(text ? text : "");
    if (!q || !copy) {
        snprintf(why, cap, "out of memory");
        fhir_query_free(&q);
        free(copy);
        return NULL;
    }
    size_t known = 0;
    char *save = NULL;
    for (char *pair = strtok_r(copy + (copy[0] == '?'), "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(pair, '=');
        if (eq)
            *eq = 0;
        unescape(pair);
        if (eq)
            unescape(eq + 1);
        if (!eq || !eq[1] || !fhir_query_add(q, pair, eq + 1) || !strcmp(pair, "_count") || !strcmp(pair, "_offset")) {
            snprintf(why, cap,
                     "%.60s%s is not a search this server makes: it searches by identifier, patient:identifier, _id, "
                     "status and _lastUpdated",
                     pair, eq ? "" : " (no value)");
            fhir_query_free(&q);
            break;
        }
        known++;
    }
    free(copy);
    if (q && !known) {
        snprintf(why, cap, "no search parameters");
        fhir_query_free(&q);
    }
    if (q && fhir_query_error(q)) {
        snprintf(why, cap, "%s", fhir_query_error(q));
        fhir_query_free(&q);
    }
    return q;
}

const char *fhir_query_error(const fhir_query *q)
{
    return q->error[0] ? q->error : NULL;
}

/* token: "system|value", "system|", "|value" (no system) or "value" (any system). */
static bool token_matches(const char *token, const json_t *identifier)
{
    const char *system = json_string_value(json_object_get(identifier, "system"));
    const char *value = json_string_value(json_object_get(identifier, "value"));
    const char *bar = strchr(token, '|');
    if (!bar)
        return value && !strcmp(token, value);
    size_t slen = (size_t)(bar - token);
    bool system_ok = slen ? system && strlen(system) == slen && !strncmp(system, token, slen) : !system;
    return system_ok && (!bar[1] || (value && !strcmp(bar + 1, value)));
}

/* The patient's identifiers: subject (or for) by identifier, or the contained Patient it references. */
static bool patient_matches(const fhir_query *q, const json_t *res)
{
    const json_t *subject = json_object_get(res, "subject");
    if (!subject)
        subject = json_object_get(res, "for");
    json_t *ids = json_array();
    const json_t *direct = json_object_get(subject, "identifier");
    if (direct)
        json_array_append(ids, (json_t *)direct);
    const char *ref = json_string_value(json_object_get(subject, "reference"));
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(res, "contained"), i, c)
    {
        const char *id = json_string_value(json_object_get(c, "id"));
        if (ref && ref[0] == '#' && id && !strcmp(ref + 1, id)) {
            size_t k;
            const json_t *one;
            json_array_foreach(json_object_get(c, "identifier"), k, one) json_array_append(ids, (json_t *)one);
        }
    }
    bool found = false;
    for (size_t t = 0; t < q->n_patient && !found; t++) {
        const json_t *one;
        json_array_foreach(ids, i, one) found = found || token_matches(q->patient[t], one);
    }
    json_decref(ids);
    return found;
}

static bool date_holds(const date_term *t, const char *updated)
{
    if (!updated)
        return false;
    size_t len = strlen(t->when);
    int cmp = strncmp(updated, t->when, len); /* the stored instant's leading part, as precise as asked */
    if (!strcmp(t->prefix, "eq"))
        return cmp == 0;
    if (!strcmp(t->prefix, "gt"))
        return cmp > 0;
    if (!strcmp(t->prefix, "ge"))
        return cmp >= 0;
    if (!strcmp(t->prefix, "lt"))
        return cmp < 0;
    return cmp <= 0;
}

static bool own_identifier_matches(const fhir_query *q, const json_t *res)
{
    size_t i;
    const json_t *one;
    for (size_t t = 0; t < q->n_ident; t++)
        json_array_foreach(json_object_get(res, "identifier"), i, one) if (token_matches(q->ident[t], one)) return true;
    return false;
}

static bool id_matches(const fhir_query *q, const json_t *res)
{
    const char *id = json_string_value(json_object_get(res, "id"));
    for (size_t t = 0; id && t < q->n_ids; t++)
        if (!strcmp(id, q->ids[t]))
            return true;
    return false;
}

bool fhir_query_matches(const fhir_query *q, const json_t *res)
{
    if (q->n_patient && !patient_matches(q, res))
        return false;
    if ((q->n_ident && !own_identifier_matches(q, res)) || (q->n_ids && !id_matches(q, res)))
        return false;
    if (q->n_status) {
        const char *status = json_string_value(json_object_get(res, "status"));
        bool any = false;
        for (size_t i = 0; i < q->n_status && !any; i++)
            any = status && !strcmp(status, q->status[i]);
        if (!any)
            return false;
    }
    const char *updated = json_string_value(json_object_get(json_object_get(res, "meta"), "lastUpdated"));
    for (size_t i = 0; i < q->n_updated; i++)
        if (!date_holds(&q->updated[i], updated))
            return false;
    return true;
}

char *fhir_searchset(const json_t *entries, size_t total, const char *base, const char *self, const char *next)
{
    json_t *list = json_array();
    size_t i;
    const json_t *res;
    json_array_foreach(entries, i, res)
    {
        char url[400];
        snprintf(url, sizeof url, "%s/%s/%s", base, json_string_value(json_object_get(res, "resourceType")),
                 json_string_value(json_object_get(res, "id")));
        json_array_append_new(
            list, json_pack("{s:s,s:O,s:{s:s}}", "fullUrl", url, "resource", res, "search", "mode", "match"));
    }
    json_t *links = json_array();
    if (self)
        json_array_append_new(links, json_pack("{s:s,s:s}", "relation", "self", "url", self));
    if (next)
        json_array_append_new(links, json_pack("{s:s,s:s}", "relation", "next", "url", next));
    json_t *bundle = json_pack("{s:s,s:s,s:I,s:o,s:o}", "resourceType", "Bundle", "type", "searchset", "total",
                               (json_int_t)total, "link", links, "entry", list);
    if (!json_array_size(links)) /* FHIR's JSON has no empty arrays */
        json_object_del(bundle, "link");
    if (!json_array_size(list))
        json_object_del(bundle, "entry");
    char *text = json_dumps(bundle, JSON_COMPACT);
    json_decref(bundle);
    return text;
}

char *fhir_capability_statement(void)
{
    json_t *resources = json_array();
    for (size_t i = 0; i < sizeof cb_fhir_served / sizeof *cb_fhir_served; i++) {
        json_t *does = json_pack("[{s:s},{s:s}]", "code", "read", "code", "search-type");
        bool posted = strcmp(cb_fhir_served[i], "Encounter"); /* Encounters are served, never posted */
        if (posted)
            json_array_insert_new(does, 0, json_pack("{s:s}", "code", "create"));
        json_t *res = json_pack("{s:s,s:o,s:[{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s}]}", "type",
                                cb_fhir_served[i], "interaction", does, "searchParam", "name", "patient", "type",
                                "reference", "name", "identifier", "type", "token", "name", "_id", "type", "token",
                                "name", "status", "type", "token", "name", "_lastUpdated", "type", "date");
        if (posted)
            json_object_set_new(res, "conditionalCreate", json_true());
        json_array_append_new(resources, res);
    }
    json_t *cs = json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:s},s:{s:s},s:s,s:[s,s],s:[{s:s,s:o}]}", "resourceType",
                           "CapabilityStatement", "status", "active", "date", "2026-12-02", "kind", "instance",
                           "software", "name", "carebridge-social", "version", CB_VERSION, "implementation",
                           "description", "carebridge social care adapter", "fhirVersion", "4.0.1", "format",
                           "application/fhir+json", "json", "rest", "mode", "server", "resource", resources);
    json_object_set_new(json_array_get(json_object_get(cs, "rest"), 0), "operation",
                        json_pack("[{s:s,s:s}]", "name", "process-message", "definition",
                                  "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message"));
    char *text = json_dumps(cs, JSON_COMPACT);
    json_decref(cs);
    return text;
}

/* A media type (no parameters) FHIR JSON is served as. */
static bool json_media_type(const char *type, size_t n)
{
    static const char *const json[] = {"application/fhir+json", "application/json", "application/json+fhir"};
    for (size_t i = 0; i < sizeof json / sizeof *json; i++)
        if (n == strlen(json[i]) && !strncasecmp(type, json[i], n))
            return true;
    return false;
}

bool fhir_json_content(const char *content_type)
{
    if (!content_type)
        return false;
    content_type += strspn(content_type, " \t");
    return json_media_type(content_type, strcspn(content_type, "; \t"));
}

/* The q of a media range's parameters (";q=0.5"), 1 when it has none. */
static double quality(const char *params, size_t n)
{
    for (const char *p = params; p && p < params + n; p = memchr(p + 1, ';', (size_t)(params + n - p - 1))) {
        const char *at = p + 1 + strspn(p + 1, " \t");
        if ((at[0] == 'q' || at[0] == 'Q') && at[1] == '=')
            return strtod(at + 2, NULL);
    }
    return 1;
}

bool fhir_json_acceptable(const char *accept, const char *format)
{
    if (format && format[0]) { /* '+' may have come as a space: the query is form-encoded */
        char f[64];
        snprintf(f, sizeof f, "%s", format);
        for (char *c = f; *c; c++)
            *c = *c == ' ' ? '+' : *c;
        size_t n = strcspn(f, ";");
        return (n == 4 && !strncasecmp(f, "json", 4)) || json_media_type(f, n);
    }
    if (!accept || !accept[strspn(accept, " \t")])
        return true;
    for (const char *range = accept; range; range = strchr(range, ',')) {
        range += strspn(range, ", \t");
        size_t len = strcspn(range, ","), type = strcspn(range, ";, \t");
        const char *params = memchr(range, ';', len);
        bool json = json_media_type(range, type) || (type == 3 && !strncmp(range, "*/*", 3)) ||
                    (type == 13 && !strncasecmp(range, "application/*", 13));
        if (json && quality(params, params ? len - (size_t)(params - range) : 0) > 0)
            return true;
    }
    return false;
}
