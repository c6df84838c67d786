#include "fhir.h"

#include "cb_check.h"
#include "charset.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *fail(cb_fhir_error *err, int status, const char *code, const char *expression, const char *fmt, ...)
{
    if (err) {
        *err = (cb_fhir_error){.http_status = status};
        snprintf(err->code, sizeof err->code, "%s", code);
        snprintf(err->expression, sizeof err->expression, "%s", expression);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->text, sizeof err->text, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

/* A string element, or NULL when absent (or not a string: the caller says which is wrong). */
static const char *str(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) && json_string_length(v) ? json_string_value(v) : NULL;
}

/* s after sep (when buf is not empty), cut to fit, never past the end. */
static void append(char *buf, size_t cap, const char *sep, const char *s)
{
    size_t used = strlen(buf);
    if (used + 1 >= cap)
        return;
    snprintf(buf + used, cap - used, "%s%s", used ? sep : "", s);
    size_t n = strlen(buf);
    if (n + 1 < cap)
        return;
    /* Cut short: not inside a UTF-8 character, or the text is no JSON string. */
    while (n > used && ((unsigned char)buf[n - 1] & 0xC0) == 0x80)
        n--;
    if (n > used && ((unsigned char)buf[n - 1] & 0xC0) == 0xC0)
        n--;
    buf[n] = 0;
}

/* A coded value to quote back: short lowercase letters and hyphens only,
 * so no name or number in a wrong element is ever repeated. */
static const char *code_or(const char *v, const char *otherwise)
{
    size_t n = v ? strlen(v) : 0;
    if (!n || n > 32)
        return otherwise;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') || v[i] == '-'))
            return otherwise;
    return v;
}

static bool has_wrong_type(const json_t *o, const char *key, json_type want)
{
    const json_t *v = json_object_get(o, key);
    return v && json_typeof(v) != want;
}

/* Whether there is a modifierExtension under v, and (when path is not NULL)
 * its FHIRPath, the path so far in path. A modifier extension can change
 * what an element means ("not to be acted on"): FHIR lets no server that
 * does not know it process the resource as if it were not there. */
static bool modifier_at(const json_t *v, char *path, size_t cap)
{
    size_t len = path ? strlen(path) : 0;
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            if (path)
                snprintf(path + len, cap - len, "[%zu]", i);
            if (modifier_at(item, path, cap))
                return true;
        }
    } else if (json_is_object(v)) {
        const char *key;
        const json_t *item;
        json_object_foreach((json_t *)v, key, item)
        {
            if (path)
                snprintf(path + len, cap - len, ".%s", key);
            if (!strcmp(key, "modifierExtension") || modifier_at(item, path, cap))
                return true;
        }
    }
    if (path)
        path[len] = 0;
    return false;
}

json_t *cb_fhir_parse(const char *body, size_t len, const char *resource_type, cb_fhir_error *err)
{
    json_error_t je;
    size_t bom = cb_charset_bom(body, len); /* as some .NET clients send */
    body += bom;
    len -= bom;
    json_t *r = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!r)
        return fail(err, 400, "structure", "", "the body is not JSON (from line %d, column %d)", je.line, je.column);
    if (!json_is_object(r)) {
        json_decref(r);
        return fail(err, 400, "structure", "", "the body is not a FHIR resource (a JSON object)");
    }
    const char *type = str(r, "resourceType");
    if (!type || strcmp(type, resource_type)) {
        fail(err, 400, "structure", "resourceType", "resourceType is %s, not %s",
             type ? code_or(type, "not a resource type") : "missing", resource_type);
        json_decref(r);
        return NULL;
    }
    char path[128];
    snprintf(path, sizeof path, "%s", resource_type);
    if (modifier_at(r, NULL, 0) && modifier_at(r, path, sizeof path)) { /* the path only when there is one */
        fail(err, 422, "extension", path,
             "a modifierExtension changes what the resource means, and this server knows none: it is not "
             "processed (send it without, or as an extension)");
        json_decref(r);
        return NULL;
    }
    return r;
}

/* A CodeableConcept's words: its text, else its first coding's display, else code. */
static const char *concept_text(const json_t *cc)
{
    const char *t = str(cc, "text");
    const json_t *coding = json_array_get(json_object_get(cc, "coding"), 0);
    return t ? t : str(coding, "display") ? str(coding, "display") : str(coding, "code");
}

/* The contained resource a local reference ("#id") names, of type. */
static const json_t *contained(const json_t *r, const json_t *ref, const char *type)
{
    const char *to = str(ref, "reference");
    if (!to || to[0] != '#')
        return NULL;
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(r, "contained"), i, c)
    {
        const char *id = str(c, "id"), *t = str(c, "resourceType");
        if (id && t && !strcmp(id, to + 1) && !strcmp(t, type))
            return c;
    }
    return NULL;
}

/* Identifiers into person: the NHS number by its system, the rest as local ids. */
static void take_identifiers(const json_t *ids, json_t *person)
{
    size_t i;
    const json_t *id;
    json_array_foreach(ids, i, id)
    {
        const char *system = str(id, "system"), *value = str(id, "value");
        if (!value)
            continue;
        if (system && !strcmp(system, CB_FHIR_NHS_NUMBER)) {
            if (!json_object_get(person, "nhsNumber"))
                json_object_set_new(person, "nhsNumber", json_string(value));
            continue;
        }
        json_t *local = json_object_get(person, "localIds");
        if (!local)
            json_object_set_new(person, "localIds", local = json_array());
        json_array_append_new(local, json_pack("{s:s,s:s}", "system", system ? system : "fhir", "value", value));
    }
}

/* given names then family, for display (never logged) */
static void take_name(const json_t *patient, json_t *person)
{
    const json_t *name = json_array_get(json_object_get(patient, "name"), 0);
    char buf[300] = "";
    size_t i;
    const json_t *g;
    json_array_foreach(json_object_get(name, "given"), i, g)
    {
        if (json_is_string(g))
            append(buf, sizeof buf, " ", json_string_value(g));
    }
    if (str(name, "family"))
        append(buf, sizeof buf, " ", str(name, "family"));
    if (!buf[0] && str(name, "text"))
        append(buf, sizeof buf, "", str(name, "text"));
    if (buf[0])
        json_object_set_new(person, "name", json_string(buf));
}

/* The person a resource's reference element names (ServiceRequest.subject,
 * Task.for): by its identifier, or a Patient the resource contains. */
static json_t *person_of(const json_t *r, const char *type, const char *element, cb_fhir_error *err)
{
    char path[64];
    snprintf(path, sizeof path, "%s.%s", type, element);
    const json_t *ref = json_object_get(r, element);
    if (!ref)
        return fail(err, 422, "required", path, "the %s has no %s (the person it is about)", type, element);
    if (!json_is_object(ref))
        return fail(err, 422, "structure", path, "%s is not a Reference", path);
    json_t *person = json_object();
    const json_t *patient = contained(r, ref, "Patient");
    const json_t *ident = json_object_get(ref, "identifier");
    if (json_is_object(ident)) {
        json_t *one = json_array();
        json_array_append(one, (json_t *)ident);
        take_identifiers(one, person);
        json_decref(one);
    }
    if (patient) {
        take_identifiers(json_object_get(patient, "identifier"), person);
        take_name(patient, person);
        if (str(patient, "birthDate"))
            json_object_set_new(person, "birthDate", json_string(str(patient, "birthDate")));
    } else if (str(ref, "reference") && !json_object_size(person)) {
        json_decref(person);
        return fail(err, 422, "not-found", path,
                    "%s's reference cannot be resolved here: send the Patient contained (\"#id\") or an identifier "
                    "(system %s)",
                    path, CB_FHIR_NHS_NUMBER);
    }
    if (!json_object_size(person)) {
        json_decref(person);
        return fail(err, 422, "required", path, "%s has no identifier: give the NHS number (system %s)", path,
                    CB_FHIR_NHS_NUMBER);
    }
    return person;
}

/* The second of the pair whose first is key, in a table of code pairs; NULL when none is. */
typedef const char *const code_pair[2];
static const char *look_up(const code_pair *map, size_t n, const char *key)
{
    for (size_t i = 0; key && i < n; i++)
        if (!strcmp(key, map[i][0]))
            return map[i][1];
    return NULL;
}

#define LOOK_UP(map, key) look_up(map, sizeof map / sizeof map[0], key)

static const char *urgency_of(const char *priority)
{
    static code_pair map[] = {{"routine", "ROUTINE"}, {"urgent", "URGENT"}, {"asap", "URGENT"}, {"stat", "EMERGENCY"}};
    return LOOK_UP(map, priority);
}

/* The agency an agency id given as a Reference's identifier.value or display names. */
static const char *agency_by_id(const json_t *ref, const cb_fhir_opts *o)
{
    const char *names[] = {str(json_object_get(ref, "identifier"), "value"), str(ref, "display")};
    for (size_t k = 0; k < 2; k++)
        for (size_t a = 0; names[k] && a < o->n_agencies; a++)
            if (!strcmp(names[k], o->agencies[a]))
                return o->agencies[a];
    return NULL;
}

/* The agency an Identifier stands for (--org), or NULL. */
static const char *agency_by_org(const json_t *identifier, const cb_fhir_opts *o)
{
    const char *system = str(identifier, "system"), *value = str(identifier, "value");
    for (size_t i = 0; value && i < o->n_orgs; i++)
        if (!strcmp(value, o->orgs[i].value) && (!o->orgs[i].system || (system && !strcmp(system, o->orgs[i].system))))
            return o->orgs[i].agency;
    return NULL;
}

/* The configured agency a Reference in res names: by an agency id, by an
 * organisation identifier configured for one, or through what it points at
 * in res's contained resources (an Organization, or a PractitionerRole and
 * its organization), as e-RS and BaRS write a requester. NULL when none. */
static const char *agency_in(const json_t *res, const json_t *ref, const cb_fhir_opts *o, int depth)
{
    const char *named = agency_by_id(ref, o);
    if (!named)
        named = agency_by_org(json_object_get(ref, "identifier"), o);
    const char *to = str(ref, "reference");
    if (named || depth > 1 || !to || to[0] != '#')
        return named;
    size_t i, j;
    const json_t *c, *id;
    json_array_foreach(json_object_get(res, "contained"), i, c)
    {
        if (!str(c, "id") || strcmp(str(c, "id"), to + 1))
            continue;
        json_array_foreach(json_object_get(c, "identifier"), j, id)
        {
            if ((named = agency_by_org(id, o)))
                return named;
        }
        const json_t *org = json_object_get(c, "organization");
        return json_is_object(org) ? agency_in(res, org, o, depth + 1) : NULL;
    }
    return NULL;
}

static const char *agency_named(const json_t *res, const json_t *ref, const cb_fhir_opts *o)
{
    return json_is_object(ref) ? agency_in(res, ref, o, 0) : NULL;
}

static void configured_list(const cb_fhir_opts *o, char *list, size_t cap)
{
    list[0] = 0;
    for (size_t a = 0; a < o->n_agencies; a++)
        append(list, cap, ", ", o->agencies[a]);
}

/* The agencies the performers name. */
static json_t *recipients(const json_t *sr, const cb_fhir_opts *o, cb_fhir_error *err)
{
    json_t *to = json_array();
    size_t i;
    const json_t *p;
    json_array_foreach(json_object_get(sr, "performer"), i, p)
    {
        const char *a = agency_named(sr, p, o);
        if (a)
            json_array_append_new(to, json_string(a));
    }
    if (json_array_size(to))
        return to;
    json_decref(to);
    char list[300];
    configured_list(o, list, sizeof list);
    return fail(err, 422, json_object_get(sr, "performer") ? "value" : "required", "ServiceRequest.performer",
                "no performer names a configured agency, by its id as identifier.value or display or by an "
                "organisation identifier configured for it (--org) (configured: %s)",
                list);
}

/* Reasons in words, joined. */
static void take_reasons(const json_t *sr, json_t *referral)
{
    char buf[1000] = "";
    const char *keys[] = {"reasonCode", "reasonReference"};
    for (size_t k = 0; k < 2; k++) {
        size_t i;
        const json_t *r;
        json_array_foreach(json_object_get(sr, keys[k]), i, r)
        {
            const char *t = k == 0 ? concept_text(r) : str(r, "display");
            if (t)
                append(buf, sizeof buf, "; ", t);
        }
    }
    if (buf[0])
        json_object_set_new(referral, "reason", json_string(buf));
}

/* What supportingInfo references, contained: a Consent says whether the
 * person agreed to share; each Goal is one of their outcomes. */
static void take_supporting(const json_t *sr, json_t *referral)
{
    size_t i;
    const json_t *ref;
    json_array_foreach(json_object_get(sr, "supportingInfo"), i, ref)
    {
        const json_t *consent = contained(sr, ref, "Consent"), *goal = contained(sr, ref, "Goal");
        const char *status = consent ? str(consent, "status") : NULL;
        if (status && !json_object_get(referral, "consent"))
            json_object_set_new(referral, "consent",
                                json_string(!strcmp(status, "active")     ? "GIVEN"
                                            : !strcmp(status, "rejected") ? "REFUSED"
                                                                          : "NOT_ASKED"));
        const char *said = goal ? concept_text(json_object_get(goal, "description")) : NULL;
        if (said) {
            json_t *outcomes = json_object_get(referral, "outcomes");
            if (!outcomes)
                json_object_set_new(referral, "outcomes", outcomes = json_array());
            json_t *o = json_pack("{s:s}", "statement", said);
            if (str(goal, "id"))
                json_object_set_new(o, "ref", json_string(str(goal, "id")));
            json_array_append_new(outcomes, o);
        }
    }
}

/* The contained Patient's languages, as communication needs. */
static void take_communication(const json_t *sr, json_t *referral)
{
    const json_t *patient = contained(sr, json_object_get(sr, "subject"), "Patient");
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(patient, "communication"), i, c)
    {
        const char *lang = concept_text(json_object_get(c, "language"));
        if (!lang)
            continue;
        json_t *needs = json_object_get(referral, "communicationNeeds");
        if (!needs)
            json_object_set_new(referral, "communicationNeeds", needs = json_array());
        char buf[200];
        snprintf(buf, sizeof buf, "language: %s%s", lang,
                 json_is_true(json_object_get(c, "preferred")) ? " (preferred)" : "");
        json_array_append_new(needs, json_string(buf));
    }
}

/* FHIR dateTime to RFC 3339: a date alone is its midnight UTC. */
static json_t *occurred(const char *dt)
{
    char buf[64];
    size_t n = dt ? strlen(dt) : 0;
    if (n == 10)
        snprintf(buf, sizeof buf, "%sT00:00:00Z", dt);
    else if (n && n < sizeof buf && strchr(dt, 'T'))
        snprintf(buf, sizeof buf, "%s", dt);
    else
        return NULL; /* a year or a month is too vague to count a deadline from; longer is no dateTime */
    return json_string(buf);
}

/* ev's occurredAt, from the resource's own element (a date counts from
 * midnight UTC), else from when its meta says it was last updated. None
 * is refused rather than stamped with the time it arrived: a resend would
 * then be another event under the same id. false, with err, for none and
 * for a year or a month alone. */
static bool set_occurred(json_t *ev, const json_t *res, const char *element, const char *path, cb_fhir_error *err)
{
    const char *dt = str(res, element), *type = str(res, "resourceType");
    char meta_path[64];
    if (!dt && (dt = str(json_object_get(res, "meta"), "lastUpdated"))) {
        snprintf(meta_path, sizeof meta_path, "%s.meta.lastUpdated", type ? type : "");
        path = meta_path;
    }
    if (!dt) {
        fail(err, 422, "required", path,
             "the %s says not when it happened (%s, or meta.lastUpdated): carebridge counts deadlines from it", type,
             path);
        return false;
    }
    json_t *at = occurred(dt);
    if (!at) {
        fail(err, 422, "value", path,
             "%s %s is not a date or a dateTime (a year or a month alone is too vague to count a deadline from)", path,
             code_or(dt, "(not a dateTime)"));
        return false;
    }
    json_object_set_new(ev, "occurredAt", at);
    return true;
}

json_t *cb_fhir_referral(const json_t *sr, const cb_fhir_opts *o, cb_fhir_error *err)
{
    static const char *const arrays[] = {"identifier",     "performer", "reasonCode", "reasonReference",
                                         "supportingInfo", "contained", "note"};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        if (has_wrong_type(sr, arrays[i], JSON_ARRAY))
            return fail(err, 422, "structure", "", "ServiceRequest.%s is not an array", arrays[i]);
    const char *status = str(sr, "status");
    if (!status)
        return fail(err, 422, "required", "ServiceRequest.status", "the ServiceRequest has no status");
    if (strcmp(status, "active"))
        return fail(err, 422, "value", "ServiceRequest.status",
                    "status %s is not a referral to act on: only an active ServiceRequest is one (a draft is not yet "
                    "sent; on-hold, revoked, completed and entered-in-error are not new referrals)",
                    code_or(status, "(not a status code)"));
    if (!str(sr, "intent"))
        return fail(err, 422, "required", "ServiceRequest.intent", "the ServiceRequest has no intent");
    const char *event_id = str(json_array_get(json_object_get(sr, "identifier"), 0), "value");
    if (!event_id)
        event_id = str(sr, "id");
    if (!event_id)
        return fail(err, 422, "required", "ServiceRequest.identifier",
                    "the ServiceRequest has neither an identifier nor an id to tell a resend by");
    const char *priority = str(sr, "priority");
    if (priority && !urgency_of(priority))
        return fail(err, 422, "value", "ServiceRequest.priority",
                    "priority %s is not one of routine, urgent, asap, stat", code_or(priority, "(not a code)"));
    json_t *person = person_of(sr, "ServiceRequest", "subject", err);
    if (!person)
        return NULL;
    json_t *to = recipients(sr, o, err);
    if (!to) {
        json_decref(person);
        return NULL;
    }
    json_t *referral = json_object();
    take_reasons(sr, referral);
    if (priority)
        json_object_set_new(referral, "urgency", json_string(urgency_of(priority)));
    const char *service = concept_text(json_object_get(sr, "code"));
    if (service)
        json_object_set_new(referral, "requestedService", json_string(service));
    const char *requester = str(json_object_get(sr, "requester"), "display");
    if (requester)
        json_object_set_new(referral, "contact", json_pack("{s:s}", "name", requester));
    take_supporting(sr, referral);
    take_communication(sr, referral);
    json_t *ev = json_pack("{s:s,s:o,s:s,s:o,s:o}", "eventId", event_id, "person", person, "fromAgency", o->agency,
                           "toAgencies", to, "referral", referral);
    if (!set_occurred(ev, sr, "authoredOn", "ServiceRequest.authoredOn", err)) {
        json_decref(ev);
        return NULL;
    }
    const char *case_ref = str(json_object_get(sr, "requisition"), "value");
    if (case_ref)
        json_object_set_new(ev, "caseRef", json_string(case_ref));
    return ev;
}

/* ---- Task: an answer to a referral */

/* What a Task's status says of the referral it is about: a response's
 * status, or "closure"; NULL for one that says nothing carebridge can carry. */
static const char *answer_of(const char *status)
{
    static code_pair map[] = {{"received", "ACKNOWLEDGED"},
                              {"accepted", "ACCEPTED"},
                              {"rejected", "DECLINED"},
                              {"completed", "closure"},
                              {"cancelled", "closure"}};
    return LOOK_UP(map, status);
}

/* The referral's eventId: focus.identifier.value, else the id in focus.reference ("ServiceRequest/<id>"). */
/* The id a literal reference gives a ServiceRequest: "ServiceRequest/<id>",
 * absolute ("https://host/fhir/ServiceRequest/<id>") or with "/_history/<v>";
 * its length (1..64), or 0 when it names none. */
static size_t service_request_id(const char *ref, const char **id)
{
    static const char type[] = "ServiceRequest/";
    const char *at = NULL;
    for (const char *p = ref ? strstr(ref, type) : NULL; p; p = strstr(p + 1, type))
        if (p == ref || p[-1] == '/')
            at = p + sizeof type - 1;
    if (!at)
        return 0;
    size_t n = strcspn(at, "/");
    if (!n || n > 64 || (at[n] && strncmp(at + n, "/_history/", 10)))
        return 0;
    *id = at;
    return n;
}

/* The Reference a Task names its referral by: focus ("the request being
 * actioned"), else the first basedOn ("the request fulfilled") that names a
 * ServiceRequest, by identifier or literal reference. */
static const json_t *referral_reference(const json_t *task)
{
    const json_t *focus = json_object_get(task, "focus"), *ref;
    const char *id;
    if (focus)
        return focus;
    size_t i;
    json_array_foreach(json_object_get(task, "basedOn"), i, ref)
    {
        const char *type = str(ref, "type");
        if (service_request_id(str(ref, "reference"), &id) ||
            (str(json_object_get(ref, "identifier"), "value") && (!type || !strcmp(type, "ServiceRequest"))))
            return ref;
    }
    return NULL;
}

/* The referral's eventId as the Task gives it (focus.identifier.value), else
 * the id it references; n is that id's length. */
static const char *focus_of(const json_t *task, size_t *n)
{
    const json_t *focus = referral_reference(task);
    const char *id = str(json_object_get(focus, "identifier"), "value");
    if (id) {
        *n = strlen(id);
        return id;
    }
    *n = service_request_id(str(focus, "reference"), &id);
    return *n ? id : NULL;
}

#define EVENT_ID_SYSTEM "urn:carebridge:event-id"

/* The eventId a ServiceRequest this adapter serves was delivered under. */
static const char *served_event_id(const json_t *sr)
{
    size_t i;
    const json_t *id;
    json_array_foreach(json_object_get(sr, "identifier"), i, id)
    {
        if (str(id, "system") && !strcmp(str(id, "system"), EVENT_ID_SYSTEM))
            return str(id, "value");
    }
    return NULL;
}

/* ---- FHIR messages */

#define MESSAGE_INLINED 32  /* resources a message's focus brings along, at most */
#define MESSAGE_LOOKUPS 512 /* references looked up among its entries, at most: each look reads them all */

/* The Bundle entry a reference names: by fullUrl, as "Type/id" (or a
 * fullUrl ending so), or, as some senders write one, by the bare id. */
static const json_t *entry_named(const json_t *entries, const char *ref)
{
    size_t i, n = strlen(ref);
    const json_t *e;
    json_array_foreach(entries, i, e)
    {
        const char *url = str(e, "fullUrl");
        const json_t *res = json_object_get(e, "resource");
        const char *type = str(res, "resourceType"), *id = str(res, "id");
        size_t ul = url ? strlen(url) : 0;
        if (!json_is_object(res))
            continue;
        if (url && (!strcmp(url, ref) || (ul > n && url[ul - n - 1] == '/' && !strcmp(url + ul - n, ref))))
            return res;
        if (type && id) {
            size_t tl = strlen(type);
            if ((n > tl && !strncmp(ref, type, tl) && ref[tl] == '/' && !strcmp(ref + tl + 1, id)) || !strcmp(ref, id))
                return res;
        }
        if (url && !strncmp(url, "urn:uuid:", 9) && !strcmp(url + 9, ref))
            return res;
    }
    return NULL;
}

typedef struct {
    const json_t *entries, *focus_entry;
    const json_t *had; /* the focus's own contained resources, whose ids are taken */
    json_t *contained;
    size_t lookups; /* left */
    const json_t *from[MESSAGE_INLINED];
    char ids[MESSAGE_INLINED][16];
    size_t n;
} inlining;

static bool contained_id_taken(const json_t *contained, const char *id)
{
    size_t i;
    const json_t *c;
    json_array_foreach(contained, i, c)
    {
        if (str(c, "id") && !strcmp(str(c, "id"), id))
            return true;
    }
    return false;
}

/* Every reference under v to an entry of the message: that entry inlined
 * (once) and the reference made local. Entries inlined are walked too. */
static void inline_references(inlining *in, json_t *v)
{
    size_t i;
    json_t *item;
    const char *key;
    if (json_is_array(v)) {
        json_array_foreach(v, i, item) inline_references(in, item);
        return;
    }
    if (!json_is_object(v))
        return;
    const char *ref = str(v, "reference");
    const json_t *to = ref && ref[0] != '#' && in->lookups && in->lookups-- ? entry_named(in->entries, ref) : NULL;
    if (to && to != in->focus_entry) {
        size_t k = 0;
        while (k < in->n && in->from[k] != to)
            k++;
        if (k == in->n && in->n < MESSAGE_INLINED) {
            in->from[k] = to;
            for (size_t n = k + 1; n == k + 1 || contained_id_taken(in->had, in->ids[k]); n += MESSAGE_INLINED)
                snprintf(in->ids[k], sizeof in->ids[k], "m%zu", n);
            json_t *copy = json_deep_copy(to);
            json_object_set_new(copy, "id", json_string(in->ids[k]));
            json_object_del(copy, "contained"); /* a contained resource contains none */
            json_array_append_new(in->contained, copy);
            in->n++;
            inline_references(in, copy);
        }
        if (k < in->n) {
            char local[20];
            snprintf(local, sizeof local, "#%s", in->ids[k]);
            json_object_set_new(v, "reference", json_string(local));
        }
    }
    json_object_foreach(v, key, item)
    {
        if (strcmp(key, "contained"))
            inline_references(in, item);
    }
}

json_t *cb_fhir_message_focus(const json_t *bundle, char kind[16], cb_fhir_error *err)
{
    const char *type = str(bundle, "type");
    if (!type || strcmp(type, "message"))
        return fail(err, 422, type ? "value" : "required", "Bundle.type",
                    "a message is a Bundle of type message (this one is %s)",
                    type ? code_or(type, "another") : "untyped");
    const json_t *entries = json_object_get(bundle, "entry");
    const json_t *header = json_object_get(json_array_get(entries, 0), "resource");
    const char *first = str(header, "resourceType");
    if (!first || strcmp(first, "MessageHeader"))
        return fail(err, 422, "required", "Bundle.entry[0].resource",
                    "a message's first entry is its MessageHeader (this one is %s)",
                    first ? code_or(first, "another resource") : "none");
    const char *ref = str(json_array_get(json_object_get(header, "focus"), 0), "reference");
    const json_t *focus = ref ? entry_named(entries, ref) : NULL;
    if (!focus)
        return fail(err, 422, ref ? "not-found" : "required", "MessageHeader.focus",
                    ref ? "the MessageHeader's focus names no entry of the message"
                        : "the MessageHeader names no focus: the ServiceRequest or Task it is about");
    const char *focus_type = str(focus, "resourceType");
    if (!focus_type || (strcmp(focus_type, "ServiceRequest") && strcmp(focus_type, "Task")))
        return fail(err, 422, "not-supported", "MessageHeader.focus",
                    "the message is about a %s: only a ServiceRequest (a referral) or a Task (its answer) is taken",
                    focus_type ? code_or(focus_type, "resource of another type") : "resource of no type");
    json_t *res = json_deep_copy(focus);
    inlining in = {.entries = entries,
                   .focus_entry = focus,
                   .had = json_object_get(res, "contained"),
                   .contained = json_array(),
                   .lookups = MESSAGE_LOOKUPS};
    inline_references(&in, res);
    if (in.n) {
        json_t *had = json_object_get(res, "contained");
        if (json_is_array(had))
            json_array_extend(had, in.contained);
        else
            json_object_set(res, "contained", in.contained);
    }
    json_decref(in.contained);
    snprintf(kind, 16, "%s", focus_type);
    return res;
}

bool cb_fhir_focus_id(const json_t *task, char out[65])
{
    const json_t *focus = referral_reference(task);
    const char *id;
    size_t n = service_request_id(str(focus, "reference"), &id);
    if (n) {
        memcpy(out, id, n);
        out[n] = 0;
        return true;
    }
    if (!(id = str(json_object_get(focus, "identifier"), "value")))
        return false;
    cb_fhir_id(id, out);
    return true;
}

json_t *cb_fhir_answer(const json_t *task, const json_t *referral, const cb_fhir_opts *o, cb_fhir_error *err)
{
    const char *status = str(task, "status");
    if (!status)
        return fail(err, 422, "required", "Task.status", "the Task has no status");
    const char *answer = answer_of(status);
    if (!answer)
        return fail(err, 422, "value", "Task.status",
                    "status %s says nothing a referral's sender can act on: received, accepted, rejected, completed "
                    "and cancelled are carried (draft, requested, ready, in-progress, on-hold, failed and "
                    "entered-in-error are not)",
                    code_or(status, "(not a status code)"));
    const char *event_id = str(json_array_get(json_object_get(task, "identifier"), 0), "value");
    if (!event_id)
        event_id = str(task, "id");
    if (!event_id)
        return fail(err, 422, "required", "Task.identifier",
                    "the Task has neither an identifier nor an id to tell a resend by");
    size_t n_focus = 0;
    const char *named = referral && served_event_id(referral) ? served_event_id(referral) : focus_of(task, &n_focus);
    if (!named)
        return fail(err, 422, "required", "Task.focus",
                    "the Task names no referral: give focus (or basedOn) identifier.value (the referral's eventId) "
                    "or reference ServiceRequest/<id>");
    char focus[256];
    snprintf(focus, sizeof focus, "%.*s", (int)(n_focus ? n_focus : strlen(named)), named);
    const char *to = agency_named(task, json_object_get(task, "requester"), o);
    if (!to && referral) { /* the referral's own sender, unless that is us */
        to = agency_named(referral, json_object_get(referral, "requester"), o);
        if (to && !strcmp(to, o->agency))
            to = NULL;
    }
    if (!to) {
        char list[300];
        configured_list(o, list, sizeof list);
        return fail(err, 422, json_object_get(task, "requester") ? "value" : "required", "Task.requester",
                    "the requester (the agency that referred) names no configured agency, by its id as "
                    "identifier.value or display or by an organisation identifier configured for it (--org), and "
                    "the referral the focus names is not one served here (configured: %s)",
                    list);
    }
    json_t *person = !json_object_get(task, "for") && referral ? person_of(referral, "ServiceRequest", "subject", err)
                                                               : person_of(task, "Task", "for", err);
    if (!person)
        return NULL;
    const char *why = concept_text(json_object_get(task, "statusReason"));
    const char *note = str(json_array_get(json_object_get(task, "note"), 0), "text");
    json_t *body = json_object();
    if (!strcmp(answer, "closure")) {
        char reason[400];
        snprintf(reason, sizeof reason, "%s%s%s", status, why ? ": " : "", why ? why : "");
        json_object_set_new(body, "reason", json_string(reason));
    } else {
        json_object_set_new(body, "status", json_string(answer));
        if (why)
            json_object_set_new(body, "reason", json_string(why));
        if (note)
            json_object_set_new(body, "note", json_string(note));
    }
    json_t *ev = json_pack("{s:s,s:o,s:s,s:[s],s:s}", "eventId", event_id, "person", person, "fromAgency", o->agency,
                           "toAgencies", to, "correlationId", focus);
    json_object_set_new(ev, strcmp(answer, "closure") ? "response" : "closure", body);
    const char *when = str(task, "lastModified") ? "lastModified" : "authoredOn";
    if (!set_occurred(ev, task, when, !strcmp(when, "lastModified") ? "Task.lastModified" : "Task.authoredOn", err)) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}

/* ---- serving: a delivered referral as a ServiceRequest */

const char *const cb_fhir_served[3] = {"ServiceRequest", "Task", "Encounter"};
#define FHIR_ID_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-"

/* Two events never share an id: a hash stands for the characters FHIR refuses. */
void cb_fhir_id(const char *event_id, char out[65])
{
    size_t n = strlen(event_id), k = 0;
    bool fit = n && n <= 64;
    for (size_t i = 0; i < n && fit; i++)
        fit = strchr(FHIR_ID_CHARS, event_id[i]) != NULL;
    if (fit) {
        memcpy(out, event_id, n + 1);
        return;
    }
    uint64_t h = 1469598103934665603ULL; /* FNV-1a: a name, not a secret */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)event_id[i]) * 1099511628211ULL;
    for (size_t i = 0; i < n && k < 46; i++)
        out[k++] = strchr(FHIR_ID_CHARS, event_id[i]) ? event_id[i] : '-';
    snprintf(out + k, 65 - k, "-%016llx", (unsigned long long)h);
}

static const char *priority_of(const char *urgency)
{
    static code_pair map[] = {{"ROUTINE", "routine"}, {"SOON", "urgent"}, {"URGENT", "urgent"}, {"EMERGENCY", "stat"}};
    return LOOK_UP(map, urgency);
}

static json_t *reference(const char *id)
{
    char ref[70];
    snprintf(ref, sizeof ref, "#%s", id);
    return json_pack("{s:s}", "reference", ref);
}

static json_t *patient_of(const json_t *person)
{
    json_t *p = json_pack("{s:s,s:s}", "resourceType", "Patient", "id", "patient");
    json_t *ids = json_array();
    if (str(person, "nhsNumber"))
        json_array_append_new(ids,
                              json_pack("{s:s,s:s}", "system", CB_FHIR_NHS_NUMBER, "value", str(person, "nhsNumber")));
    size_t i;
    const json_t *l;
    json_array_foreach(json_object_get(person, "localIds"), i, l)
    {
        if (str(l, "value"))
            json_array_append_new(ids,
                                  json_pack("{s:s,s:s}", "system", str(l, "system") ? str(l, "system") : "urn:local",
                                            "value", str(l, "value")));
    }
    if (json_array_size(ids))
        json_object_set_new(p, "identifier", ids);
    else
        json_decref(ids);
    if (str(person, "name"))
        json_object_set_new(p, "name", json_pack("[{s:s}]", "text", str(person, "name")));
    if (str(person, "birthDate"))
        json_object_set_new(p, "birthDate", json_string(str(person, "birthDate")));
    return p;
}

json_t *cb_fhir_service_request_of(const json_t *ev)
{
    const json_t *r = json_object_get(ev, "referral"), *d = json_object_get(ev, "discharge");
    const char *event_id = str(ev, "eventId");
    if ((!json_is_object(r) && !json_is_object(d)) || !event_id)
        return NULL;
    if (!json_is_object(r))
        r = NULL;
    else
        d = NULL;
    const json_t *body = r ? r : d;
    char id[65];
    cb_fhir_id(event_id, id);
    json_t *sr = json_pack("{s:s,s:s,s:[{s:s,s:s}],s:s,s:s}", "resourceType", "ServiceRequest", "id", id, "identifier",
                           "system", EVENT_ID_SYSTEM, "value", event_id, "status", "active", "intent", "order");
    json_t *contained = json_array();
    json_array_append_new(contained, patient_of(json_object_get(ev, "person")));
    json_object_set_new(sr, "subject", reference("patient"));
    const char *priority = priority_of(str(r, "urgency"));
    if (priority)
        json_object_set_new(sr, "priority", json_string(priority));
    if (str(r, "requestedService"))
        json_object_set_new(sr, "code", json_pack("{s:s}", "text", str(r, "requestedService")));
    if (str(r, "reason"))
        json_object_set_new(sr, "reasonCode", json_pack("[{s:s}]", "text", str(r, "reason")));
    if (d) { /* support the person needs on leaving hospital, from the day planned */
        json_object_set_new(sr, "category", json_pack("[{s:s}]", "text", "discharge"));
        json_object_set_new(sr, "code", json_pack("{s:s}", "text", "support on discharge"));
        if (str(d, "plannedDate"))
            json_object_set_new(sr, "occurrenceDateTime", json_string(str(d, "plannedDate")));
        if (str(d, "careNeeds"))
            json_object_set_new(sr, "reasonCode", json_pack("[{s:s}]", "text", str(d, "careNeeds")));
        json_t *notes = json_array();
        static const char *const said[][2] = {
            {"setting", "from: "}, {"destination", "to: "}, {"medication", "medication: "}};
        for (size_t k = 0; k < sizeof said / sizeof *said; k++)
            if (str(d, said[k][0])) {
                char text[600];
                snprintf(text, sizeof text, "%s%s", said[k][1], str(d, said[k][0]));
                json_array_append_new(notes, json_pack("{s:s}", "text", text));
            }
        if (json_array_size(notes))
            json_object_set_new(sr, "note", notes);
        else
            json_decref(notes);
    }
    if (str(ev, "occurredAt"))
        json_object_set_new(sr, "authoredOn", json_string(str(ev, "occurredAt")));
    if (str(ev, "fromAgency"))
        json_object_set_new(sr, "requester",
                            json_pack("{s:{s:s},s:s}", "identifier", "value", str(ev, "fromAgency"), "display",
                                      str(json_object_get(r, "contact"), "name")
                                          ? str(json_object_get(r, "contact"), "name")
                                          : str(ev, "fromAgency")));
    json_t *performers = json_array();
    size_t i;
    const json_t *a;
    json_array_foreach(json_object_get(ev, "toAgencies"), i, a)
    {
        if (json_is_string(a))
            json_array_append_new(performers, json_pack("{s:{s:s}}", "identifier", "value", json_string_value(a)));
    }
    json_object_set_new(sr, "performer", performers);
    if (str(ev, "caseRef"))
        json_object_set_new(sr, "requisition", json_pack("{s:s}", "value", str(ev, "caseRef")));
    json_t *support = json_array();
    const char *consent = str(r, "consent");
    if (consent) { /* Consent's required elements, with the codes R4's own examples use */
        const char *status = !strcmp(consent, "GIVEN") || !strcmp(consent, "BEST_INTERESTS") ? "active"
                             : !strcmp(consent, "REFUSED")                                   ? "rejected"
                                                                                             : "proposed";
        json_array_append_new(contained,
                              json_pack("{s:s,s:s,s:s,s:{s:[{s:s,s:s}]},s:[{s:[{s:s,s:s}]}],s:o}", "resourceType",
                                        "Consent", "id", "consent", "status", status, "scope", "coding", "system",
                                        "http://terminology.hl7.org/CodeSystem/consentscope", "code", "patient-privacy",
                                        "category", "coding", "system", "http://loinc.org", "code", "59284-0",
                                        "patient", reference("patient")));
        json_array_append_new(support, reference("consent"));
    }
    const json_t *o;
    json_array_foreach(json_object_get(body, "outcomes"), i, o)
    {
        const char *said = str(o, "statement");
        if (!said)
            continue;
        char gid[65];
        if (str(o, "ref"))
            cb_fhir_id(str(o, "ref"), gid);
        else
            snprintf(gid, sizeof gid, "outcome-%zu", i + 1);
        const char *status = str(o, "status");
        const char *life = !status || !strcmp(status, "ACTIVE") ? "active"
                           : !strcmp(status, "ACHIEVED")        ? "completed"
                                                                : "cancelled";
        json_array_append_new(contained, json_pack("{s:s,s:s,s:s,s:{s:s},s:o}", "resourceType", "Goal", "id", gid,
                                                   "lifecycleStatus", life, "description", "text", said, "subject",
                                                   reference("patient")));
        json_array_append_new(support, reference(gid));
    }
    if (json_array_size(support))
        json_object_set_new(sr, "supportingInfo", support);
    else
        json_decref(support);
    json_object_set_new(sr, "contained", contained);
    return sr;
}

json_t *cb_fhir_task_of(const json_t *ev)
{
    const json_t *resp = json_object_get(ev, "response"), *closure = json_object_get(ev, "closure");
    const char *event_id = str(ev, "eventId");
    if ((!json_is_object(resp) && !json_is_object(closure)) || !event_id)
        return NULL;
    static code_pair statuses[] = {{"ACKNOWLEDGED", "received"},
                                   {"ACCEPTED", "accepted"},
                                   {"DECLINED", "rejected"},
                                   {"REDIRECTED", "rejected"},
                                   {"INFO_REQUESTED", "received"}};
    const json_t *body = resp ? resp : closure;
    const char *said = resp ? str(resp, "status") : NULL;
    const char *status = resp ? LOOK_UP(statuses, said) : "completed";
    if (!status)
        return NULL;
    char id[65];
    cb_fhir_id(event_id, id);
    json_t *task = json_pack("{s:s,s:s,s:[{s:s,s:s}],s:s,s:s}", "resourceType", "Task", "id", id, "identifier",
                             "system", EVENT_ID_SYSTEM, "value", event_id, "status", status, "intent", "order");
    if (str(ev, "correlationId"))
        json_object_set_new(
            task, "focus",
            json_pack("{s:{s:s,s:s}}", "identifier", "system", EVENT_ID_SYSTEM, "value", str(ev, "correlationId")));
    json_object_set_new(task, "contained", json_pack("[o]", patient_of(json_object_get(ev, "person"))));
    json_object_set_new(task, "for", reference("patient"));
    if (str(ev, "fromAgency"))
        json_object_set_new(
            task, "requester",
            json_pack("{s:{s:s},s:s}", "identifier", "value", str(ev, "fromAgency"), "display", str(ev, "fromAgency")));
    const json_t *to = json_array_get(json_object_get(ev, "toAgencies"), 0);
    if (json_is_string(to))
        json_object_set_new(task, "owner", json_pack("{s:{s:s}}", "identifier", "value", json_string_value(to)));
    char reason[600] = "";
    if (said && !strcmp(said, "REDIRECTED") && str(resp, "redirectTo"))
        snprintf(reason, sizeof reason, "redirected to %s%s%s", str(resp, "redirectTo"),
                 str(resp, "reason") ? ": " : "", str(resp, "reason") ? str(resp, "reason") : "");
    else if (str(body, "reason"))
        snprintf(reason, sizeof reason, "%s", str(body, "reason"));
    if (reason[0])
        json_object_set_new(task, "statusReason", json_pack("{s:s}", "text", reason));
    if (said && !strcmp(said, "INFO_REQUESTED")) {
        char wanted[600] = "information requested";
        size_t i;
        const json_t *f;
        json_array_foreach(json_object_get(resp, "requestedFields"), i, f)
        {
            if (json_is_string(f))
                append(wanted, sizeof wanted, i ? ", " : ": ", json_string_value(f));
        }
        json_object_set_new(task, "businessStatus", json_pack("{s:s}", "text", wanted));
    }
    if (resp && str(resp, "note"))
        json_object_set_new(task, "note", json_pack("[{s:s}]", "text", str(resp, "note")));
    if (str(ev, "occurredAt")) {
        json_object_set_new(task, "authoredOn", json_string(str(ev, "occurredAt")));
        json_object_set_new(task, "lastModified", json_string(str(ev, "occurredAt")));
    }
    return task;
}

/* R4's Encounter has no planned end; R5's Encounter.plannedEndDate ("the
 * planned end date/time (or discharge date)") reaches R4 through HL7's
 * cross-version extension for it (the xver-r5.r4 package). Set again, it
 * is replaced. */
#define PLANNED_END_URL "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate"

static void set_planned_end(json_t *enc, const char *date)
{
    json_t *exts = json_object_get(enc, "extension");
    if (!json_is_array(exts)) {
        exts = json_array();
        json_object_set_new(enc, "extension", exts);
    }
    size_t i;
    json_t *e;
    json_array_foreach(exts, i, e)
    {
        if (str(e, "url") && !strcmp(str(e, "url"), PLANNED_END_URL)) {
            json_object_set_new(e, "valueDateTime", json_string(date));
            return;
        }
    }
    json_array_append_new(exts, json_pack("{s:s,s:s}", "url", PLANNED_END_URL, "valueDateTime", date));
}

/* Where the person is: the location now active; the one before completed.
 * Moving to where they are already changes nothing, so an update applied
 * twice (its delivery redelivered) is applied once. */
static void move_to(json_t *enc, const char *setting, const char *previous)
{
    json_t *where = json_object_get(enc, "location");
    if (!json_is_array(where)) {
        where = json_array();
        json_object_set_new(enc, "location", where);
    }
    const json_t *last = json_array_get(where, json_array_size(where) - 1);
    const char *now_at = str(json_object_get(last, "location"), "display");
    if (setting && now_at && !strcmp(now_at, setting))
        return;
    size_t i;
    json_t *l;
    json_array_foreach(where, i, l)
    {
        json_object_set_new(l, "status", json_string("completed"));
    }
    if (previous && !json_array_size(where))
        json_array_append_new(where,
                              json_pack("{s:{s:s},s:s}", "location", "display", previous, "status", "completed"));
    if (setting)
        json_array_append_new(where, json_pack("{s:{s:s},s:s}", "location", "display", setting, "status", "active"));
}

json_t *cb_fhir_encounter_of(const json_t *ev)
{
    const json_t *a = json_object_get(ev, "admission");
    const char *event_id = str(ev, "eventId");
    if (!json_is_object(a) || !event_id)
        return NULL;
    char id[65];
    cb_fhir_id(event_id, id);
    json_t *enc =
        json_pack("{s:s,s:s,s:[{s:s,s:s}],s:s,s:{s:s,s:s,s:s}}", "resourceType", "Encounter", "id", id, "identifier",
                  "system", EVENT_ID_SYSTEM, "value", event_id, "status", "in-progress", "class", "system",
                  "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code", "IMP", "display", "inpatient encounter");
    if (json_is_true(json_object_get(a, "emergency")))
        json_object_set_new(enc, "priority",
                            json_pack("{s:[{s:s,s:s,s:s}]}", "coding", "system",
                                      "http://terminology.hl7.org/CodeSystem/v3-ActPriority", "code", "EM", "display",
                                      "emergency"));
    json_object_set_new(enc, "subject", reference("patient"));
    const json_t *contact = json_object_get(a, "contact");
    if (str(contact, "name"))
        json_object_set_new(enc, "participant",
                            json_pack("[{s:[{s:[{s:s,s:s,s:s}]}],s:{s:s}}]", "type", "coding", "system",
                                      "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code", "ATND",
                                      "display", "attender", "individual", "display", str(contact, "name")));
    if (str(ev, "occurredAt"))
        json_object_set_new(enc, "period", json_pack("{s:s}", "start", str(ev, "occurredAt")));
    if (str(a, "reason"))
        json_object_set_new(enc, "reasonCode", json_pack("[{s:s}]", "text", str(a, "reason")));
    if (str(a, "expectedDischargeDate"))
        set_planned_end(enc, str(a, "expectedDischargeDate"));
    move_to(enc, str(a, "setting"), str(a, "previousSetting"));
    if (str(ev, "fromAgency"))
        json_object_set_new(
            enc, "serviceProvider",
            json_pack("{s:{s:s},s:s}", "identifier", "value", str(ev, "fromAgency"), "display", str(ev, "fromAgency")));
    json_object_set_new(enc, "contained", json_pack("[o]", patient_of(json_object_get(ev, "person"))));
    return enc;
}

/* A note, unless the resource has it already (an update applied again). */
static void add_note(json_t *sr, const char *label, const char *text)
{
    char line[600];
    snprintf(line, sizeof line, "%s%s", label, text);
    json_t *notes = json_object_get(sr, "note");
    if (!json_is_array(notes)) {
        notes = json_array();
        json_object_set_new(sr, "note", notes);
    }
    size_t i;
    const json_t *n;
    json_array_foreach(notes, i, n)
    {
        if (str(n, "text") && !strcmp(str(n, "text"), line))
            return;
    }
    json_array_append_new(notes, json_pack("{s:s}", "text", line));
}

bool cb_fhir_apply_update(json_t *sr, const json_t *ev)
{
    const json_t *u = json_object_get(ev, "update");
    if (!strcmp(str(sr, "resourceType") ? str(sr, "resourceType") : "", "Encounter")) {
        const json_t *a = json_object_get(u, "admission");
        if (str(a, "setting"))
            move_to(sr, str(a, "setting"), NULL);
        if (str(a, "expectedDischargeDate"))
            set_planned_end(sr, str(a, "expectedDischargeDate"));
        return str(a, "setting") || str(a, "expectedDischargeDate");
    }
    const json_t *d = json_object_get(u, "discharge"), *r = json_object_get(u, "referral");
    bool changed = false;
    if (str(d, "plannedDate")) {
        json_object_set_new(sr, "occurrenceDateTime", json_string(str(d, "plannedDate")));
        changed = true;
    }
    if (str(d, "destination")) {
        add_note(sr, "to: ", str(d, "destination"));
        changed = true;
    }
    if (str(r, "reason")) {
        json_object_set_new(sr, "reasonCode", json_pack("[{s:s}]", "text", str(r, "reason")));
        changed = true;
    }
    if (str(u, "note")) {
        add_note(sr, "", str(u, "note"));
        changed = true;
    }
    return changed;
}

/* s as a JSON string: its plain runs written whole. */
static void put_string(FILE *f, const char *s)
{
    bool utf8 = cb_utf8_valid(s, strlen(s));
    putc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c;) {
        const unsigned char *run = c;
        while (*c >= 0x20 && *c != '"' && *c != '\\' && (*c < 0x80 || utf8))
            c++;
        fwrite(run, 1, (size_t)(c - run), f);
        if (!*c)
            break;
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            putc('?', f);
        c++;
    }
    putc('"', f);
}

static void put_member(FILE *f, const char *key, const char *value)
{
    fprintf(f, ",\"%s\":", key);
    put_string(f, value);
}

char *cb_fhir_outcome_of(const cb_fhir_issue *issues, size_t n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fputs("{\"resourceType\":\"OperationOutcome\",\"issue\":[", f);
    for (size_t i = 0; i < n; i++) {
        const cb_fhir_issue *is = &issues[i];
        fprintf(f, "%s{\"severity\":", i ? "," : "");
        put_string(f, is->severity);
        put_member(f, "code", is->code ? is->code : "processing");
        if (is->flag) {
            fputs(",\"details\":{\"coding\":[{\"system\":\"urn:carebridge:flag-type\",\"code\":", f);
            put_string(f, is->flag);
            fputs("}]}", f);
        }
        if (is->diagnostics)
            put_member(f, "diagnostics", is->diagnostics);
        if (is->expression) {
            fputs(",\"expression\":[", f);
            put_string(f, is->expression);
            putc(']', f);
        }
        putc('}', f);
    }
    fputs("]}", f);
    if (ferror(f) | fclose(f)) {
        free(text);
        return NULL;
    }
    return text;
}

char *cb_fhir_outcome(const cb_fhir_error *errors, size_t n, const char *severity)
{
    cb_fhir_issue *issues = calloc(n ? n : 1, sizeof *issues);
    if (!issues)
        return NULL;
    for (size_t i = 0; i < n; i++)
        issues[i] = (cb_fhir_issue){.severity = severity,
                                    .code = errors[i].code[0] ? errors[i].code : NULL,
                                    .expression = errors[i].expression[0] ? errors[i].expression : NULL,
                                    .diagnostics = errors[i].text};
    char *text = cb_fhir_outcome_of(issues, n);
    free(issues);
    return text;
}
