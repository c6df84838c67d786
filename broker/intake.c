#include "intake.h"

#include "cb_check.h"

#include <stdio.h>
#include <string.h>

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
    for (size_t i = 0; i < ev->n_to_agencies; i++)
        if (!cb_config_agency(cfg, ev->to_agencies[i]))
            return cb_fail(err, CB_UNKNOWN_AGENCY, "toAgencies[%zu] names no configured agency (configured: %s)", i,
                           cfg->agency_list);
    return CB_OK;
}

cb_code cb_intake_check(const cb_config *cfg, const cb_agency *sender, const cb_envelope *ev, cb_error *err)
{
    cb_code code = check_agencies(cfg, sender, ev, err);
    return code ? code : cb_envelope_check(ev, err);
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
