#include "hl7_events.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hl7_person.h"

static json_t *refuse(cb_hl7_refusal *why, int code, const char *segment, unsigned field, const char *fmt, ...)
{
    *why = (cb_hl7_refusal){.issue = {.code = code, .severity = 'E', .sequence = 1, .field = field}};
    snprintf(why->issue.segment, sizeof why->issue.segment, "%s", segment);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->text, sizeof why->text, fmt, ap);
    va_end(ap);
    why->issue.text = why->text;
    return NULL;
}

static cb_hl7_kind get(const cb_hl7 *m, long seg, unsigned field, unsigned comp, char *buf, size_t cap)
{
    if (seg < 0) {
        buf[0] = 0;
        return CB_HL7_ABSENT;
    }
    return cb_hl7_get(m, (cb_hl7_at){(size_t)seg, field, 1, comp, 0}, buf, cap);
}

/* Letters, digits and . _ - as they are; anything else '_', cut to max. */
static void id_part(const char *s, char *out, size_t max)
{
    size_t n = 0;
    for (; *s && n < max; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-';
        out[n++] = ok ? c : '_';
    }
    out[n] = 0;
}

void cb_hl7_event_id(const cb_hl7 *m, char *out, size_t cap)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 8);
    for (size_t i = 0; i < cb_hl7_segment_count(m); i++) {
        const char *p;
        size_t len;
        cb_hl7_segment_text(m, i, &p, &len);
        crypto_generichash_update(&st, (const unsigned char *)p, len);
        crypto_generichash_update(&st, (const unsigned char *)"\r", 1); /* however the sender ended its segments */
    }
    unsigned char h[8];
    crypto_generichash_final(&st, h, sizeof h);
    char facility[64], control[64], f[25], c[41];
    get(m, 0, 4, 1, facility, sizeof facility);
    get(m, 0, 10, 0, control, sizeof control);
    id_part(facility, f, 24);
    id_part(control, c, 40);
    snprintf(out, cap, "hl7:%s:%s:%02x%02x%02x%02x%02x%02x%02x%02x", f[0] ? f : "-", c[0] ? c : "-", h[0], h[1], h[2],
             h[3], h[4], h[5], h[6], h[7]);
}

/* The id a visit's admission or discharge goes by, so later messages can
 * update it. */
static bool visit_event_id(const cb_hl7 *m, long pv1, const char *kind, char *out, size_t cap)
{
    char facility[64], visit[64], f[25], v[41];
    if (get(m, pv1, 19, 1, visit, sizeof visit) != CB_HL7_VALUE)
        return false;
    get(m, 0, 4, 1, facility, sizeof facility);
    id_part(facility, f, 24);
    id_part(visit, v, 40);
    snprintf(out, cap, "hl7:%s:visit:%s:%s", f[0] ? f : "-", v, kind);
    return true;
}

static json_t *rfc3339(int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[40];
    if (!gmtime_r(&t, &tm))
        return NULL;
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(ms % 1000));
    return json_string(buf);
}

/* When it happened: EVN-6 (the event occurred), else EVN-2 (recorded), else MSH-7. */
static json_t *occurred(const cb_hl7 *m)
{
    long evn = cb_hl7_find(m, "EVN", 0);
    const struct {
        long seg;
        unsigned field;
    } from[] = {{evn, 6}, {evn, 2}, {0, 7}};
    char ts[40];
    int64_t ms;
    for (size_t i = 0; i < 3; i++)
        if (get(m, from[i].seg, from[i].field, 1, ts, sizeof ts) == CB_HL7_VALUE && cb_hl7_time_ms(ts, &ms))
            return rfc3339(ms);
    return NULL;
}

/* A TS field's day, YYYY-MM-DD, or "". */
static void day_of(const cb_hl7 *m, long seg, unsigned field, char out[11])
{
    char ts[40];
    int64_t ms;
    out[0] = 0;
    /* The sender's own day, not UTC's: a discharge at 00:30 BST is that day's. */
    if (get(m, seg, field, 1, ts, sizeof ts) == CB_HL7_VALUE && strlen(ts) >= 8 && cb_hl7_time_ms(ts, &ms))
        snprintf(out, 11, "%.4s-%.2s-%.2s", ts, ts + 4, ts + 6);
}

static json_t *person_json(const cb_hl7_person *p)
{
    json_t *j = json_object();
    if (p->nhs[0])
        json_object_set_new(j, "nhsNumber", json_string(p->nhs));
    if (p->chi[0])
        json_object_set_new(j, "chiNumber", json_string(p->chi));
    if (p->n_local) {
        json_t *ids = json_array();
        for (unsigned i = 0; i < p->n_local; i++)
            json_array_append_new(ids,
                                  json_pack("{s:s,s:s}", "system", p->local[i].system, "value", p->local[i].value));
        json_object_set_new(j, "localIds", ids);
    }
    json_t *name = p->name[0] ? json_string(p->name) : NULL; /* NULL when not UTF-8: left out */
    if (name)
        json_object_set_new(j, "name", name);
    if (p->birth_date[0])
        json_object_set_new(j, "birthDate", json_string(p->birth_date));
    return j;
}

static void set_text(json_t *o, const char *key, const char *s)
{
    json_t *v = s[0] ? json_string(s) : NULL;
    if (v)
        json_object_set_new(o, key, v);
}

static void to_agencies(json_t *ev, const char *const *list, size_t n)
{
    json_t *to = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(to, json_string(list[i]));
    json_object_set_new(ev, "toAgencies", to);
}

/* A person's name in an XPN/XCN field, given names then family, from component first. */
static void name_at(const cb_hl7 *m, long seg, unsigned field, unsigned first, char *out, size_t cap)
{
    char family[64], given[64];
    get(m, seg, field, first, family, sizeof family);
    get(m, seg, field, first + 1, given, sizeof given);
    snprintf(out, cap, "%s%s%s", given, given[0] && family[0] ? " " : "", family);
}

/* A CE/CWE's words: its text (component 2), else its code. */
static void words_at(const cb_hl7 *m, long seg, unsigned field, char *out, size_t cap)
{
    if (get(m, seg, field, 2, out, cap) != CB_HL7_VALUE)
        get(m, seg, field, 1, out, cap);
}

static void append(char *buf, size_t cap, const char *s)
{
    size_t n = strlen(buf);
    if (s[0] && n + 3 < cap)
        snprintf(buf + n, cap - n, "%s%s", n ? "; " : "", s);
}

/* A Contact; NULL when the name is empty or not UTF-8 (a sender's own
 * character set): a contact no one can name is no contact. */
static json_t *contact(const char *name, const char *role, const char *phone)
{
    json_t *c = json_object();
    set_text(c, "name", name);
    if (!json_object_get(c, "name")) {
        json_decref(c);
        return NULL;
    }
    set_text(c, "role", role);
    set_text(c, "phone", phone);
    return c;
}

/* The clinician responsible: PV1-7 (attending doctor, an XCN), else the
 * first ROL whose role (ROL-3, table 0443) is AT, with its phone (ROL-12).
 * NULL when neither names anyone. */
static json_t *attending(const cb_hl7 *m, long pv1)
{
    char name[140], phone[64] = "", role[8];
    name_at(m, pv1, 7, 2, name, sizeof name); /* XCN: the id first, then family and given names */
    for (long rol = cb_hl7_find(m, "ROL", 0); !name[0] && rol >= 0; rol = cb_hl7_find(m, "ROL", (size_t)rol + 1)) {
        get(m, rol, 3, 1, role, sizeof role);
        if (!strcmp(role, "AT")) {
            name_at(m, rol, 4, 2, name, sizeof name);
            get(m, rol, 12, 1, phone, sizeof phone);
        }
    }
    return contact(name, "attending doctor", phone);
}

/* The person's informal contact for a referral: the first NK1 whose
 * relationship (NK1-3, table 0063) is CGV, a caregiver; else the first next
 * of kin (NK1-7 N, or no contact role). Name NK1-2, phone NK1-5. */
static json_t *carer(const cb_hl7 *m)
{
    long chosen = -1;
    char code[16], buf[140];
    for (long nk1 = cb_hl7_find(m, "NK1", 0); nk1 >= 0; nk1 = cb_hl7_find(m, "NK1", (size_t)nk1 + 1)) {
        get(m, nk1, 3, 1, code, sizeof code);
        if (!strcmp(code, "CGV")) {
            chosen = nk1;
            break;
        }
        get(m, nk1, 7, 1, code, sizeof code);
        if (chosen < 0 && (!code[0] || !strcmp(code, "N")))
            chosen = nk1;
    }
    if (chosen < 0)
        return NULL;
    char name[140], phone[64], role[200] = "carer";
    name_at(m, chosen, 2, 1, name, sizeof name);
    get(m, chosen, 5, 1, phone, sizeof phone);
    get(m, chosen, 3, 1, code, sizeof code);
    if (strcmp(code, "CGV")) {
        words_at(m, chosen, 3, buf, sizeof buf); /* "daughter", or the code itself */
        snprintf(role, sizeof role, "next of kin%s%s", buf[0] ? ": " : "", buf);
    }
    return contact(name, role, phone);
}

/* A PL (person location) as "WARD7 (RXH)": point of care and facility. */
static void location_at(const cb_hl7 *m, long seg, unsigned field, char *out, size_t cap)
{
    char ward[64], facility[64];
    get(m, seg, field, 1, ward, sizeof ward);
    get(m, seg, field, 4, facility, sizeof facility);
    if (ward[0] && facility[0])
        snprintf(out, cap, "%s (%s)", ward, facility);
    else
        snprintf(out, cap, "%s", ward[0] ? ward : facility);
}

/* A visit's first message of a kind is the event itself, under the visit's
 * id; once the outbox holds that, later ones update it (an update goes
 * where the event went), without the body's first_only field. */
static json_t *of_visit(const cb_hl7 *m, const cb_hl7_map_opts *o, long pv1, const char *kind, json_t *body,
                        const char *first_only, const char *note, json_t *ev)
{
    char id[128];
    bool visit = visit_event_id(m, pv1, kind, id, sizeof id);
    if (visit && o->known && o->known(o->known_arg, id)) {
        if (first_only)
            json_object_del(body, first_only);
        json_object_set_new(ev, "correlationId", json_string(id));
        json_object_set_new(ev, "update", json_pack("{s:o,s:s}", kind, body, "note", note));
        return ev;
    }
    if (visit)
        json_object_set_new(ev, "eventId", json_string(id));
    json_object_set_new(ev, kind, body);
    return ev;
}

/* ADT^A16 (pending discharge, PV2-9 its expected date) and ADT^A03 (the
 * discharge, PV1-45 its date): the visit's discharge, or an update of it. */
static json_t *discharge(const cb_hl7 *m, const cb_hl7_map_opts *o, bool done, json_t *ev, cb_hl7_refusal *why)
{
    long pv1 = cb_hl7_find(m, "PV1", 0), pv2 = cb_hl7_find(m, "PV2", 0);
    if (pv1 < 0)
        return refuse(why, CB_HL7_SEGMENT_SEQUENCE, "PV1", 0, "a discharge needs its PV1 segment (the visit)");
    json_t *d = json_object();
    char setting[140], where[120], date[11];
    location_at(m, pv1, 3, setting, sizeof setting);
    set_text(d, "setting", setting);
    get(m, pv1, 37, 1, where, sizeof where);
    set_text(d, "destination", where);
    day_of(m, done ? pv1 : pv2, done ? 45 : 9, date);
    set_text(d, "plannedDate", date);
    json_t *who = attending(m, pv1);
    if (who)
        json_object_set_new(d, "contact", who);
    to_agencies(ev, o->discharge_to, o->n_discharge_to);
    /* The ward a later message names is where the discharge is from, not a correction of it. */
    return of_visit(m, o, pv1, "discharge", d, "setting",
                    done ? "discharged (ADT^A03)" : "discharge planned again (ADT^A16)", ev);
}

/* ADT^A11 (cancel admit), ADT^A13 (cancel discharge) and ADT^A25 (cancel
 * pending discharge): the visit's admission or discharge is off, so those
 * preparing for it hear so (domain.md: a discharge agreed and then
 * cancelled on the day). A closure of that event, sent where it went. */
static json_t *cancellation(const cb_hl7 *m, const cb_hl7_map_opts *o, const char *kind, const char *trigger,
                            json_t *ev, cb_hl7_refusal *why)
{
    long pv1 = cb_hl7_find(m, "PV1", 0);
    char id[128], reason[120];
    if (pv1 < 0)
        return refuse(why, CB_HL7_SEGMENT_SEQUENCE, "PV1", 0, "a cancellation needs its PV1 segment (the visit)");
    if (!visit_event_id(m, pv1, kind, id, sizeof id))
        return refuse(why, CB_HL7_REQUIRED_MISSING, "PV1", 19,
                      "PV1-19 (the visit number) is empty: a cancellation names the visit whose %s it cancels", kind);
    snprintf(reason, sizeof reason, "%s cancelled (ADT^%s)", !strcmp(trigger, "A25") ? "pending discharge" : kind,
             trigger);
    json_object_set_new(ev, "correlationId", json_string(id));
    json_object_set_new(ev, "closure", json_pack("{s:s}", "reason", reason));
    if (!strcmp(kind, "admission"))
        to_agencies(ev, o->admission_to, o->n_admission_to);
    else
        to_agencies(ev, o->discharge_to, o->n_discharge_to);
    return ev;
}

/* Every DG1's description (DG1-4), else its code's text (DG1-3), joined. */
static void diagnoses(const cb_hl7 *m, char *out, size_t cap)
{
    char buf[300];
    out[0] = 0;
    for (long dg1 = cb_hl7_find(m, "DG1", 0); dg1 >= 0; dg1 = cb_hl7_find(m, "DG1", (size_t)dg1 + 1)) {
        if (get(m, dg1, 4, 1, buf, sizeof buf) != CB_HL7_VALUE)
            words_at(m, dg1, 3, buf, sizeof buf);
        append(out, cap, buf);
    }
}

/* ADT^A01 (admit) and ADT^A02 (transfer, PV1-6 where from): the visit's
 * admission, or an update of it. */
static json_t *admission(const cb_hl7 *m, const cb_hl7_map_opts *o, bool transfer, json_t *ev, cb_hl7_refusal *why)
{
    long pv1 = cb_hl7_find(m, "PV1", 0), pv2 = cb_hl7_find(m, "PV2", 0);
    if (pv1 < 0)
        return refuse(why, CB_HL7_SEGMENT_SEQUENCE, "PV1", 0, "an admission needs its PV1 segment (the visit)");
    json_t *a = json_object();
    char buf[600], date[11];
    location_at(m, pv1, 3, buf, sizeof buf);
    set_text(a, "setting", buf);
    if (transfer) {
        location_at(m, pv1, 6, buf, sizeof buf);
        set_text(a, "previousSetting", buf);
    }
    words_at(m, pv2, 3, buf, sizeof buf);
    if (!buf[0])
        diagnoses(m, buf, sizeof buf);
    set_text(a, "reason", buf);
    /* Table 0007: A accident, E emergency, U urgent are unplanned. */
    get(m, pv1, 4, 1, buf, sizeof buf);
    if (!strcmp(buf, "A") || !strcmp(buf, "E") || !strcmp(buf, "U"))
        json_object_set_new(a, "emergency", json_true());
    day_of(m, pv2, 9, date);
    set_text(a, "expectedDischargeDate", date);
    json_t *who = attending(m, pv1);
    if (who)
        json_object_set_new(a, "contact", who);
    to_agencies(ev, o->admission_to, o->n_admission_to);
    return of_visit(m, o, pv1, "admission", a, NULL, transfer ? "transferred (ADT^A02)" : "admitted again (ADT^A01)",
                    ev);
}

/* REF^I12: RF1 (priority, type, the sender's referral id), the PRD of the
 * referring provider (RP) as the contact, a referred-to provider (RT) whose
 * PRD-7 names a configured agency as the recipient, DG1 as the reason. */
static json_t *referral(const cb_hl7 *m, const cb_hl7_map_opts *o, json_t *ev)
{
    long rf1 = cb_hl7_find(m, "RF1", 0);
    json_t *r = json_object(), *to = json_array();
    char buf[300];
    static const char *const urgency[][2] = {{"S", "EMERGENCY"}, {"A", "URGENT"}, {"R", "ROUTINE"}};
    get(m, rf1, 2, 1, buf, sizeof buf);
    for (size_t i = 0; i < 3; i++)
        if (!strcmp(buf, urgency[i][0]))
            json_object_set_new(r, "urgency", json_string(urgency[i][1]));
    words_at(m, rf1, 3, buf, sizeof buf);
    set_text(r, "requestedService", buf);
    char reason[600];
    diagnoses(m, reason, sizeof reason);
    if (!reason[0])
        words_at(m, rf1, 10, reason, sizeof reason);
    set_text(r, "reason", reason);
    for (long prd = cb_hl7_find(m, "PRD", 0); prd >= 0; prd = cb_hl7_find(m, "PRD", (size_t)prd + 1)) {
        char role[8], id[64];
        get(m, prd, 1, 1, role, sizeof role);
        if (!strcmp(role, "RP") && !json_object_get(r, "contact")) {
            char phone[64];
            name_at(m, prd, 2, 1, buf, sizeof buf);
            get(m, prd, 5, 1, phone, sizeof phone);
            json_t *c = contact(buf, "referring provider", phone);
            if (c)
                json_object_set_new(r, "contact", c);
        }
        get(m, prd, 7, 1, id, sizeof id);
        for (size_t a = 0; !strcmp(role, "RT") && a < o->n_agencies; a++)
            if (!strcmp(id, o->agencies[a]))
                json_array_append_new(to, json_string(o->agencies[a]));
    }
    for (long rol = cb_hl7_find(m, "ROL", 0); !json_object_get(r, "contact") && rol >= 0;
         rol = cb_hl7_find(m, "ROL", (size_t)rol + 1)) { /* no PRD for the referring provider: its ROL */
        char role[8];
        get(m, rol, 3, 1, role, sizeof role);
        name_at(m, rol, 4, 2, buf, sizeof buf);
        char phone[64];
        get(m, rol, 12, 1, phone, sizeof phone);
        json_t *c = strcmp(role, "RP") ? NULL : contact(buf, "referring provider", phone);
        if (c)
            json_object_set_new(r, "contact", c);
    }
    json_t *nok = carer(m);
    if (nok)
        json_object_set_new(r, "carer", nok);
    for (size_t i = 0; !json_array_size(to) && i < o->n_referral_to; i++)
        json_array_append_new(to, json_string(o->referral_to[i]));
    long pid = cb_hl7_find(m, "PID", 0);
    words_at(m, pid, 15, buf, sizeof buf);
    if (buf[0]) {
        char need[340];
        snprintf(need, sizeof need, "language: %s", buf);
        json_object_set_new(r, "communicationNeeds", json_pack("[s]", need));
    }
    char ref[64], f[41], facility[64], fac[25], id[128];
    if (get(m, rf1, 6, 1, ref, sizeof ref) == CB_HL7_VALUE) { /* the sender's own id for the referral */
        get(m, 0, 4, 1, facility, sizeof facility);
        id_part(facility, fac, 24);
        id_part(ref, f, 40);
        snprintf(id, sizeof id, "hl7:%s:referral:%s", fac[0] ? fac : "-", f);
        json_object_set_new(ev, "eventId", json_string(id));
    }
    char ts[40];
    int64_t ms;
    json_t *at = get(m, rf1, 7, 1, ts, sizeof ts) == CB_HL7_VALUE && cb_hl7_time_ms(ts, &ms) ? rfc3339(ms) : NULL;
    if (at)
        json_object_set_new(ev, "occurredAt", at);
    json_object_set_new(ev, "toAgencies", to);
    json_object_set_new(ev, "referral", r);
    return ev;
}

json_t *cb_hl7_event(const cb_hl7 *m, const cb_hl7_map_opts *o, cb_hl7_refusal *why)
{
    char type[16], trigger[16];
    if (get(m, 0, 9, 1, type, sizeof type) != CB_HL7_VALUE)
        return refuse(why, CB_HL7_REQUIRED_MISSING, "MSH", 9, "MSH-9 (the message type) is empty");
    get(m, 0, 9, 2, trigger, sizeof trigger);
    bool adt = !strcmp(type, "ADT"), ref = !strcmp(type, "REF");
    bool a01 = adt && !strcmp(trigger, "A01"), a02 = adt && !strcmp(trigger, "A02");
    bool a03 = adt && !strcmp(trigger, "A03"), a16 = adt && !strcmp(trigger, "A16"),
         i12 = ref && !strcmp(trigger, "I12");
    bool cancel = adt && (!strcmp(trigger, "A11") || !strcmp(trigger, "A13") || !strcmp(trigger, "A25"));
    if (!adt && !ref)
        return refuse(why, CB_HL7_UNSUPPORTED_TYPE, "MSH", 9, "message type %.8s is not mapped (ADT and REF are)",
                      type);
    if (!a01 && !a02 && !a03 && !a16 && !i12 && !cancel)
        return refuse(why, CB_HL7_UNSUPPORTED_EVENT, "MSH", 9,
                      "%s^%.8s is not mapped: ADT^A01 (admission), ADT^A02 (transfer), ADT^A03 (discharge), "
                      "ADT^A16 (pending discharge), their cancellations A11, A13, A25, and REF^I12 (referral) are",
                      type, trigger);
    long pid = cb_hl7_find(m, "PID", 0);
    if (pid < 0)
        return refuse(why, CB_HL7_SEGMENT_SEQUENCE, "PID", 0, "the message has no PID segment (the patient)");
    cb_hl7_person p;
    if (!cb_hl7_person_of(m, (size_t)pid, &p))
        return refuse(why, CB_HL7_REQUIRED_MISSING, "PID", 3, "PID-3 holds no patient identifier");
    char id[128];
    cb_hl7_event_id(m, id, sizeof id);
    json_t *ev = json_pack("{s:s,s:o,s:s}", "eventId", id, "person", person_json(&p), "fromAgency", o->agency);
    json_t *at = occurred(m);
    if (at)
        json_object_set_new(ev, "occurredAt", at);
    char visit[64];
    long pv1 = cb_hl7_find(m, "PV1", 0);
    if (get(m, pv1, 19, 1, visit, sizeof visit) == CB_HL7_VALUE)
        set_text(ev, "caseRef", visit);
    if (i12)
        return referral(m, o, ev);
    if (!(cancel       ? cancellation(m, o, !strcmp(trigger, "A11") ? "admission" : "discharge", trigger, ev, why)
          : a01 || a02 ? admission(m, o, a02, ev, why)
                       : discharge(m, o, a03, ev, why))) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}
