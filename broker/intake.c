#include "intake.h"

#include "cb_check.h"

#include <stdio.h>
#include <string.h>

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

static cb_code check_agencies(const cb_config *cfg, const cb_agency *sender, const cb_envelope *ev, cb_error *err)
{
    if (!ev->from_agency[0])
        return cb_fail(err, CB_MISSING_FIELD, "fromAgency is missing");
    if (!cb_config_agency(cfg, ev->from_agency))
        return cb_fail(err, CB_UNKNOWN_AGENCY, "fromAgency names no configured agency (configured: %s)",
                       cfg->agency_list);
    if (strcmp(ev->from_agency, sender->id) != 0)
        return cb_fail(err, CB_AGENCY_MISMATCH, "fromAgency is not '%s', the agency this connection serves",
                       sender->id);
    if (!ev->n_to_agencies)
        return cb_fail(err, CB_MISSING_FIELD, "toAgencies needs at least one agency");
    for (size_t i = 0; i < ev->n_to_agencies; i++) {
        if (!cb_config_agency(cfg, ev->to_agencies[i]))
            return cb_fail(err, CB_UNKNOWN_AGENCY, "toAgencies[%zu] names no configured agency (configured: %s)", i,
                           cfg->agency_list);
        for (size_t j = 0; j < i; j++)
            if (strcmp(ev->to_agencies[i], ev->to_agencies[j]) == 0)
                return cb_fail(err, CB_INVALID_FIELD, "toAgencies[%zu] repeats toAgencies[%zu]", i, j);
    }
    return CB_OK;
}

cb_code cb_intake_check(const cb_config *cfg, const cb_agency *sender, const cb_envelope *ev, cb_error *err)
{
    /* Every string is UTF-8 already: the codec refused the frame otherwise. */
    if (!ev->event_id[0])
        return cb_fail(err, CB_MISSING_FIELD, "eventId is missing");
    if (strlen(ev->event_id) > CB_EVENT_ID_MAX || !cb_printable(ev->event_id))
        return cb_fail(err, CB_INVALID_FIELD, "eventId is longer than %d bytes or has control characters",
                       CB_EVENT_ID_MAX);
    cb_code code = check_agencies(cfg, sender, ev, err);
    if (code)
        return code;
    if (!ev->occurred_at)
        return cb_fail(err, CB_MISSING_FIELD, "occurredAt is missing");
    if (ev->occurred_at->nanos < 0 || ev->occurred_at->nanos > 999999999 || ev->occurred_at->seconds < -62135596800LL ||
        ev->occurred_at->seconds > 253402300799LL)
        return cb_fail(err, CB_INVALID_FIELD, "occurredAt is outside 0001-01-01..9999-12-31");
    if (ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY__NOT_SET)
        return cb_fail(err, CB_MISSING_FIELD,
                       "the body is missing: one of referral, discharge, handover, response, update, closure, "
                       "admission");
    if ((code = check_person(ev->person, err)))
        return code;
    if (strlen(ev->case_ref) > CB_CASE_REF_MAX || !cb_printable(ev->case_ref))
        return cb_fail(err, CB_INVALID_FIELD, "caseRef is longer than %d bytes or has control characters",
                       CB_CASE_REF_MAX);
    if (strlen(ev->correlation_id) > CB_EVENT_ID_MAX || !cb_printable(ev->correlation_id))
        return cb_fail(err, CB_INVALID_FIELD, "correlationId is longer than %d bytes or has control characters",
                       CB_EVENT_ID_MAX);
    return CB_OK;
}

static const struct {
    const char *field, *reason;
} warnings[] = {
#define CB_X_WARNING(name, field, reason) {field, reason},
    CB_WARNINGS(CB_X_WARNING)
#undef CB_X_WARNING
};

const char *cb_warning_field(unsigned w)
{
    return w < CB_WARN_COUNT ? warnings[w].field : "?";
}

const char *cb_warning_reason(unsigned w)
{
    return w < CB_WARN_COUNT ? warnings[w].reason : "?";
}

/* The warning in the table for field's problem ("format", ...), as a set. */
static cb_warnings warning_for(const char *field, const char *problem)
{
    for (unsigned w = 0; problem && w < CB_WARN_COUNT; w++)
        if (!strcmp(warnings[w].field, field) && !strcmp(warnings[w].reason, problem))
            return 1u << w;
    return 0;
}

cb_warnings cb_intake_normalise(cb_envelope *ev)
{
    Carebridge__V1__Person *p = ev->person;
    cb_warnings found = 0;
    if (!p)
        return 0;
    /* Decoded strings are the frame's own (in its arena), so shortening them
     * in place is safe; protobuf-c's empty default is never written to. */
    if (p->nhs_number[0]) {
        found |= warning_for("person.nhsNumber", cb_nhs_number_problem(cb_identifier_normalise(p->nhs_number)));
    }
    if (p->chi_number[0]) {
        found |= warning_for("person.chiNumber", cb_chi_number_problem(cb_identifier_normalise(p->chi_number)));
    }
    return found;
}

size_t cb_intake_person_keys(const Carebridge__V1__Person *p, cb_person_key *keys, size_t cap)
{
    size_t n = 0;
    if (p->nhs_number[0] && n < cap)
        snprintf(keys[n++], sizeof keys[0], "nhs:%s", p->nhs_number);
    if (p->chi_number[0] && n < cap)
        snprintf(keys[n++], sizeof keys[0], "chi:%s", p->chi_number);
    for (size_t i = 0; i < p->n_local_ids && n < cap; i++)
        snprintf(keys[n++], sizeof keys[0], "local:%s\x1f%s", p->local_ids[i]->system, p->local_ids[i]->value);
    return n;
}
