#include "cb_check.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cb_fields.h"

/* Eight bytes at a time while they are all ASCII: nearly every string an
 * agency sends is, and this check runs over every byte of every event. */
static const unsigned char *skip_ascii(const unsigned char *s, const unsigned char *end)
{
    uint64_t w;
    while ((size_t)(end - s) >= sizeof w) {
        memcpy(&w, s, sizeof w);
        if (w & 0x8080808080808080u)
            break;
        s += sizeof w;
    }
    while (s < end && *s < 0x80)
        s++;
    return s;
}

bool cb_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    while ((s = skip_ascii(s, end)) < end) {
        unsigned c = *s;
        size_t n;
        unsigned min, cp;
        if ((c & 0xE0) == 0xC0) {
            n = 1, min = 0x80, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, min = 0x800, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return false;
        }
        if ((size_t)(end - s) <= n)
            return false;
        for (size_t i = 1; i <= n; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        s += n + 1;
    }
    return true;
}

bool cb_printable(const char *s)
{
    const unsigned char *c = (const unsigned char *)s;
    for (; *c; c++)
        if (*c < 0x20 || *c == 0x7F || (*c == 0xC2 && c[1] >= 0x80 && c[1] <= 0x9F))
            return false;
    return cb_utf8_valid(s, (size_t)(c - (const unsigned char *)s));
}

static bool string_valid(void *arg, const ProtobufCFieldDescriptor *fd, const void *value, const char *path)
{
    (void)arg, (void)path;
    const char *str = fd->type == PROTOBUF_C_TYPE_STRING ? *(const char *const *)value : NULL;
    return !str || cb_utf8_valid(str, strlen(str));
}

/* The common, valid case walks without formatting paths; only a failure
 * is walked again to name the field. */
bool cb_check_utf8(const ProtobufCMessage *m, char *path, size_t cap)
{
    if (cb_fields_visit(m, NULL, 0, string_valid, NULL))
        return true;
    char none[1];
    if (cap == 0)
        path = none, cap = 1;
    cb_fields_visit(m, path, cap, string_valid, NULL);
    return false;
}

static bool ten_digits(const char *s)
{
    if (!s || strlen(s) != 10)
        return false;
    for (int i = 0; i < 10; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Modulus 11 over the first nine digits, weights 10..2; a remainder that
 * gives check 10 means the number is invalid, 11 means check digit 0. */
static int mod11_check(const char *s)
{
    int sum = 0;
    for (int i = 0; i < 9; i++)
        sum += (s[i] - '0') * (10 - i);
    int check = 11 - sum % 11;
    return check == 11 ? 0 : check;
}

const char *cb_nhs_number_problem(const char *s)
{
    if (!ten_digits(s))
        return "format";
    return mod11_check(s) == s[9] - '0' ? NULL : "check-digit";
}

bool cb_nhs_number_valid(const char *s)
{
    return !cb_nhs_number_problem(s);
}

/* CHI: DDMMYY then four digits; digit 9 encodes sex; the check digit is
 * modulus 11, or, for numbers issued since NHS Scotland ran out of modulus-11
 * numbers for some birth dates, modulus 10: Luhn over the first nine digits
 * (Public Health Scotland's chi_check accepts either). It only informs flags
 * (an unlinkable identity), never a refusal. */
static int mod10_check(const char *s)
{
    int sum = 0;
    for (int i = 0; i < 9; i++) {
        int d = (s[i] - '0') * (i % 2 == 0 ? 2 : 1);
        sum += d > 9 ? d - 9 : d;
    }
    return (10 - sum % 10) % 10;
}

/* DDMMYY is a real day: 29 February only in a year that is leap in one of
 * the centuries YY may be (00 is, as 2000). */
static bool chi_date_valid(const char *s)
{
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int day = (s[0] - '0') * 10 + (s[1] - '0'), month = (s[2] - '0') * 10 + (s[3] - '0');
    int year = (s[4] - '0') * 10 + (s[5] - '0');
    if (month < 1 || month > 12 || day < 1 || day > days[month - 1])
        return false;
    return month != 2 || day != 29 || year % 4 == 0;
}

const char *cb_chi_number_problem(const char *s)
{
    if (!ten_digits(s))
        return "format";
    if (!chi_date_valid(s))
        return "date";
    return mod11_check(s) == s[9] - '0' || mod10_check(s) == s[9] - '0' ? NULL : "check-digit";
}

bool cb_chi_number_valid(const char *s)
{
    return !cb_chi_number_problem(s);
}

bool cb_identifier_digits_valid(const char ten[10])
{
    /* NHS and CHI numbers share the modulus-11 weights, so one sum serves both. */
    if (mod11_check(ten) == ten[9] - '0')
        return true;
    return chi_date_valid(ten) && mod10_check(ten) == ten[9] - '0';
}

char *cb_identifier_normalise(char *s)
{
    char *out = s;
    for (const char *in = s; *in; in++)
        if (*in != ' ' && *in != '-')
            *out++ = *in;
    *out = '\0';
    return s;
}

/* ---- envelopes */

static cb_code check_person(const Carebridge__V1__Person *p, cb_error *err)
{
    if (!p || (!p->nhs_number[0] && !p->chi_number[0] && !p->n_local_ids))
        return cb_fail(err, CB_MISSING_FIELD,
                       "person needs at least one identifier: person.nhsNumber, person.chiNumber or person.localIds");
    if (strlen(p->nhs_number) > CB_IDENTIFIER_MAX || !cb_printable(p->nhs_number))
        return cb_fail(err, CB_INVALID_FIELD, "person.nhsNumber is longer than %d characters or has control characters",
                       CB_IDENTIFIER_MAX);
    if (strlen(p->chi_number) > CB_IDENTIFIER_MAX || !cb_printable(p->chi_number))
        return cb_fail(err, CB_INVALID_FIELD, "person.chiNumber is longer than %d characters or has control characters",
                       CB_IDENTIFIER_MAX);
    if (p->n_local_ids > CB_PERSON_KEYS_MAX - 2)
        return cb_fail(err, CB_INVALID_FIELD, "person.localIds has more than %d entries", CB_PERSON_KEYS_MAX - 2);
    for (size_t i = 0; i < p->n_local_ids; i++) {
        const Carebridge__V1__LocalId *l = p->local_ids[i];
        if (!l->system[0] || !l->value[0])
            return cb_fail(err, CB_MISSING_FIELD, "person.localIds[%zu] needs both system and value", i);
        if (strlen(l->system) > CB_IDENTIFIER_MAX || strlen(l->value) > CB_IDENTIFIER_MAX || !cb_printable(l->system) ||
            !cb_printable(l->value))
            return cb_fail(
                err, CB_INVALID_FIELD,
                "person.localIds[%zu] system or value is longer than %d characters or has control characters", i,
                CB_IDENTIFIER_MAX);
    }
    return CB_OK;
}

cb_code cb_envelope_check(const Carebridge__V1__Envelope *ev, cb_error *err)
{
    /* Every string is UTF-8 already: the codec and the JSON mapping refuse it otherwise. */
    if (!ev->event_id[0])
        return cb_fail(err, CB_MISSING_FIELD, "eventId is missing");
    if (strlen(ev->event_id) > CB_EVENT_ID_MAX || !cb_printable(ev->event_id))
        return cb_fail(err, CB_INVALID_FIELD, "eventId is longer than %d bytes or has control characters",
                       CB_EVENT_ID_MAX);
    if (!ev->n_to_agencies)
        return cb_fail(err, CB_MISSING_FIELD, "toAgencies needs at least one agency");
    for (size_t i = 0; i < ev->n_to_agencies; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(ev->to_agencies[i], ev->to_agencies[j]) == 0)
                return cb_fail(err, CB_INVALID_FIELD, "toAgencies[%zu] repeats toAgencies[%zu]", i, j);
    if (!ev->occurred_at)
        return cb_fail(err, CB_MISSING_FIELD, "occurredAt is missing");
    if (ev->occurred_at->nanos < 0 || ev->occurred_at->nanos > 999999999 || ev->occurred_at->seconds < -62135596800LL ||
        ev->occurred_at->seconds > 253402300799LL)
        return cb_fail(err, CB_INVALID_FIELD, "occurredAt is outside 0001-01-01..9999-12-31");
    if (ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY__NOT_SET)
        return cb_fail(err, CB_MISSING_FIELD,
                       "the body is missing: one of referral, discharge, handover, response, update, closure, "
                       "admission");
    cb_code code = check_person(ev->person, err);
    if (code)
        return code;
    if (strlen(ev->case_ref) > CB_CASE_REF_MAX || !cb_printable(ev->case_ref))
        return cb_fail(err, CB_INVALID_FIELD, "caseRef is longer than %d bytes or has control characters",
                       CB_CASE_REF_MAX);
    if (strlen(ev->correlation_id) > CB_EVENT_ID_MAX || !cb_printable(ev->correlation_id))
        return cb_fail(err, CB_INVALID_FIELD, "correlationId is longer than %d bytes or has control characters",
                       CB_EVENT_ID_MAX);
    return CB_OK;
}
