#include "hl7_out.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "hl7.h"

static const cb_hl7_delims delims = {'|', '^', '~', '\\', '&'};

typedef struct {
    char *p;
    size_t n, cap;
    bool over;
} writer;

static void raw(writer *w, const char *s)
{
    size_t len = strlen(s);
    if (w->n + len + 1 > w->cap) {
        w->over = true;
        return;
    }
    memcpy(w->p + w->n, s, len);
    w->n += len;
}

/* Text from the event, its separators escaped. */
static void text(writer *w, const char *s)
{
    if (!s || !*s || w->over)
        return;
    size_t len = cb_hl7_escape(&delims, s, w->p + w->n, w->cap - w->n);
    if (!len || w->n + len + 1 > w->cap)
        w->over = true;
    else
        w->n += len;
}

static const char *str(const json_t *o, const char *path)
{
    char key[64];
    const json_t *v = o;
    while (v && *path) {
        const char *dot = strchr(path, '.');
        size_t len = dot ? (size_t)(dot - path) : strlen(path);
        if (len >= sizeof key)
            return NULL;
        memcpy(key, path, len);
        key[len] = 0;
        v = json_object_get(v, key);
        path += len + (dot ? 1 : 0);
    }
    return json_string_value(v);
}

/* 2026-12-01T10:15:00Z -> 20261201101500+0000 (its offset kept: without
 * one a receiver reads the time as its own local time, an hour out in a UK
 * summer); 2026-12-01T10:15:00.250+01:00 -> 20261201101500+0100;
 * YYYY-MM-DD -> YYYYMMDD. */
static void hl7_time(writer *w, const char *iso)
{
    char out[24];
    size_t n = 0;
    const char *p = iso;
    for (; p && *p && *p != 'Z' && *p != '+' && *p != '.' && !(*p == '-' && n >= 8) && n < 14; p++)
        if (*p >= '0' && *p <= '9')
            out[n++] = *p;
    while (p && *p >= '0' && *p <= '9')
        p++; /* digits past the seconds */
    if (p && *p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ; /* fractions of a second: HL7 has room, the receivers seldom use it */
    if (n > 8 && p && *p == 'Z') {
        memcpy(out + n, "+0000", 5);
        n += 5;
    } else if (n > 8 && p && (*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        out[n++] = *p;
        out[n++] = p[1], out[n++] = p[2], out[n++] = p[4], out[n++] = p[5];
    }
    out[n] = 0;
    raw(w, out);
}

/* PRD (table 0286's role, the agency as the provider's name): a REF or RRI
 * carries one at least, before the PID. */
static void provider(writer *w, const char *role, const char *agency)
{
    raw(w, "PRD|");
    raw(w, role);
    raw(w, "^HL70286|");
    if (agency)
        text(w, agency);
    raw(w, "\r");
}

/* Who referred and to whom: for an answer, those it answers are the referrer. */
static void providers(writer *w, const json_t *event, bool answer)
{
    const char *referring = "RP^Referring Provider", *referred = "RT^Referred to Provider";
    provider(w, answer ? referred : referring, str(event, "fromAgency"));
    size_t i;
    const json_t *to;
    json_array_foreach(json_object_get(event, "toAgencies"), i, to)
    {
        provider(w, answer ? referring : referred, json_string_value(to));
    }
}

static void person(writer *w, const json_t *p)
{
    raw(w, "PID|1||");
    bool any = false;
    const char *nhs = str(p, "nhsNumber");
    if (nhs && *nhs) {
        text(w, nhs);
        raw(w, "^^^NHS^NH");
        any = true;
    }
    const char *chi = str(p, "chiNumber");
    if (chi && *chi) {
        raw(w, any ? "~" : "");
        text(w, chi);
        raw(w, "^^^CHI^NH");
        any = true;
    }
    size_t i;
    const json_t *id;
    json_array_foreach(json_object_get(p, "localIds"), i, id)
    {
        raw(w, any ? "~" : "");
        text(w, str(id, "value"));
        raw(w, "^^^");
        text(w, str(id, "system"));
        raw(w, "^PI");
        any = true;
    }
    raw(w, "||");
    /* One free-text name: its last word is taken for the family name. */
    const char *name = str(p, "name");
    if (name && *name) {
        const char *space = strrchr(name, ' ');
        char given[256];
        size_t glen = space ? (size_t)(space - name) : 0;
        if (glen >= sizeof given)
            glen = sizeof given - 1;
        memcpy(given, name, glen);
        given[glen] = 0;
        text(w, space ? space + 1 : name);
        if (glen) {
            raw(w, "^");
            text(w, given);
        }
    }
    raw(w, "||");
    hl7_time(w, str(p, "birthDate"));
    raw(w, "\r");
}

static const char *rf1_status(const char *status)
{
    static const char *const map[][2] = {
        {"ACKNOWLEDGED", "P"}, {"ACCEPTED", "A"}, {"DECLINED", "R"}, {"INFO_REQUESTED", "P"}, {"REDIRECTED", "R"}};
    for (size_t i = 0; status && i < sizeof map / sizeof *map; i++)
        if (!strcmp(status, map[i][0]))
            return map[i][1];
    return "P";
}

static void note(writer *w, unsigned *n, const char *label, const char *s)
{
    if (!s || !*s)
        return;
    char num[16];
    snprintf(num, sizeof num, "%u", ++*n);
    raw(w, "NTE|");
    raw(w, num);
    raw(w, "||");
    text(w, label);
    text(w, s);
    raw(w, "\r");
}

size_t cb_hl7_of_event(const json_t *event, const char *control_id, const char *timestamp, char *out, size_t cap,
                       const char **why)
{
    const char *type = NULL, *body_key = NULL;
    static const char *const kinds[][3] = {
        {"referral", "REF^I12^REF_I12", "I12"}, {"handover", "REF^I12^REF_I12", "I12"},
        {"update", "REF^I13^REF_I12", "I13"},   {"closure", "REF^I14^REF_I12", "I14"},
        {"response", "RRI^I12^RRI_I12", "I12"},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds && !type; i++)
        if (json_object_get(event, kinds[i][0])) {
            body_key = kinds[i][0];
            type = kinds[i][1];
        }
    if (!type) {
        *why = "an admission or a discharge has no HL7 form toward health: the hospital admits and discharges";
        return 0;
    }
    const json_t *body = json_object_get(event, body_key);
    writer w = {.p = out, .cap = cap};
    raw(&w, "MSH|^~\\&|CAREBRIDGE|");
    text(&w, str(event, "fromAgency"));
    raw(&w, "|||");
    raw(&w, timestamp);
    raw(&w, "||");
    raw(&w, type);
    raw(&w, "|");
    text(&w, control_id);
    raw(&w, "|P|2.5.1\r");
    /* RF1-1 status, -6 the originating referral: the event it answers, or this one. */
    raw(&w, "RF1|");
    if (!strcmp(body_key, "response"))
        raw(&w, rf1_status(str(body, "status")));
    else if (!strcmp(body_key, "closure"))
        raw(&w, "E");
    else
        raw(&w, "P");
    raw(&w, "|");
    const char *urgency = str(body, "urgency");
    raw(&w, urgency && (!strcmp(urgency, "URGENT") || !strcmp(urgency, "EMERGENCY")) ? "S" : "");
    raw(&w, "||||");
    const char *corr = str(event, "correlationId");
    text(&w, corr && *corr ? corr : str(event, "eventId"));
    raw(&w, "|||");
    hl7_time(&w, str(event, "occurredAt"));
    raw(&w, "\r");
    providers(&w, event, !strcmp(body_key, "response"));
    person(&w, json_object_get(event, "person"));
    unsigned n = 0;
    note(&w, &n, "", str(body, "reason"));
    note(&w, &n, "Alternative: ", str(body, "alternative"));
    note(&w, &n, "Redirected to: ", str(body, "redirectTo"));
    note(&w, &n, "", str(body, "note"));
    note(&w, &n, "Service: ", str(body, "requestedService"));
    note(&w, &n, "What matters: ", str(body, "whatMatters"));
    if (w.over || !cap) {
        *why = "the message is larger than the adapter writes";
        return 0;
    }
    out[w.n] = 0;
    return w.n;
}
