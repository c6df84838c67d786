#include "access.h"

#include <string.h>

static const char *role_of(const cb_principal *who)
{
    return cb_role_name(who->role);
}

cb_code cb_access_hello(const cb_config *cfg, const cb_principal *who, const char *agency, bool receive, cb_error *err)
{
    (void)cfg;
    if (!who)
        return CB_OK;
    if (who->role != CB_ROLE_AGENCY)
        return cb_fail(err, CB_NOT_PERMITTED,
                       "this connection's key is %s's, whose role is %s: that role may query, but hello needs an "
                       "agency's key",
                       who->name, role_of(who));
    if (!strcmp(agency, who->name))
        return CB_OK;
    if (receive)
        return cb_fail(err, CB_NOT_YOUR_QUEUE,
                       "this connection's key is %s's: it may receive %s's queue only, not the one hello.agency names",
                       who->name, who->name);
    return cb_fail(err, CB_AGENCY_MISMATCH, "this connection's key is %s's; hello.agency names another agency",
                   who->name);
}

cb_code cb_access_agency_frame(const cb_principal *who, const char *what, cb_error *err)
{
    if (!who || who->role == CB_ROLE_AGENCY)
        return CB_OK;
    return cb_fail(err, CB_NOT_PERMITTED,
                   "this connection's key is %s's, whose role is %s: only an agency's key may %s", who->name,
                   role_of(who), what);
}

cb_code cb_access_replay(const cb_config *cfg, const cb_principal *who, int to_agency, cb_error *err)
{
    if (!who || who->role == CB_ROLE_OPERATOR)
        return CB_OK;
    if ((who->role == CB_ROLE_AGENCY || who->role == CB_ROLE_COORDINATOR) && to_agency >= 0 &&
        cb_principal_sees(who, (unsigned)to_agency))
        return CB_OK;
    return cb_fail(err, CB_NOT_PERMITTED,
                   "replay to %s needs an operator's key, or that agency's own or its coordinator's (this key is "
                   "%s's, whose role is %s)",
                   to_agency >= 0 ? cfg->agencies[to_agency].id : "that agency", who->name, role_of(who));
}

cb_code cb_access_read(const cb_principal *who, uint32_t frame_kind, cb_error *err)
{
    if (!who)
        return CB_OK;
    switch (frame_kind) {
    case CAREBRIDGE__V1__FRAME__KIND_STATUS_REQUEST: return CB_OK;
    case CAREBRIDGE__V1__FRAME__KIND_REPORT_REQUEST:
        if (who->role == CB_ROLE_LEAD)
            return CB_OK;
        return cb_fail(err, CB_NOT_PERMITTED,
                       "the gap report needs an integration lead's key (this key is %s's, whose role is %s)", who->name,
                       role_of(who));
    case CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REQUEST:
    case CAREBRIDGE__V1__FRAME__KIND_FLAGS_REQUEST:
        if (who->role == CB_ROLE_AGENCY || who->role == CB_ROLE_COORDINATOR)
            return CB_OK;
        return cb_fail(
            err, CB_NOT_PERMITTED,
            "%s name people: they need an agency's key or a coordinator's (this key is %s's, whose role is %s)",
            frame_kind == CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REQUEST ? "journeys" : "flags", who->name, role_of(who));
    case CAREBRIDGE__V1__FRAME__KIND_AUDIT_REQUEST: return CB_OK; /* cb_access_audit, with the request */
    default: return cb_fail(err, CB_BAD_REQUEST, "not a request the query thread answers");
    }
}

static bool sees(const cb_config *cfg, const cb_principal *who, const char *agency)
{
    const cb_agency *a = cb_config_agency(cfg, agency);
    return a && cb_principal_sees(who, (unsigned)(a - cfg->agencies));
}

bool cb_access_involved(const cb_config *cfg, const cb_principal *who, const cb_envelope *ev)
{
    if (!who)
        return true;
    if (sees(cfg, who, ev->from_agency))
        return true;
    for (size_t i = 0; i < ev->n_to_agencies; i++)
        if (sees(cfg, who, ev->to_agencies[i]))
            return true;
    return false;
}

cb_code cb_access_not_their_person(const cb_principal *who, cb_error *err)
{
    return cb_fail(err, CB_NOT_PERMITTED,
                   "a person's records are answered only to an agency that has sent or received an event about them, "
                   "or to its coordinator (this key is %s's, whose role is %s)",
                   who->name, role_of(who));
}

cb_code cb_access_audit(const cb_principal *who, bool names_person, cb_error *err)
{
    if (!who || who->role == CB_ROLE_OPERATOR)
        return CB_OK;
    if ((who->role == CB_ROLE_AGENCY || who->role == CB_ROLE_COORDINATOR) && names_person)
        return CB_OK;
    if (who->role == CB_ROLE_AGENCY || who->role == CB_ROLE_COORDINATOR)
        return cb_fail(err, CB_NOT_PERMITTED,
                       "the whole audit needs an operator's key; an agency's or coordinator's may ask about one person "
                       "(--person)");
    return cb_fail(err, CB_NOT_PERMITTED,
                   "the audit names people: it needs an operator's key, or an agency's or coordinator's for one of "
                   "their people (this key is %s's, whose role is %s)",
                   who->name, role_of(who));
}

bool cb_access_subscribe(const cb_config *cfg, const cb_principal *who, const char *topic, cb_error *err)
{
    const char *agency = !strncmp(topic, "flag.", 5) ? topic + 5 : topic;
    size_t len = strcspn(agency, ".");
    for (unsigned a = 0; agency[len] == '.' && a < cfg->n_agencies; a++)
        if (strlen(cfg->agencies[a].id) == len && !strncmp(cfg->agencies[a].id, agency, len))
            if (cb_principal_sees(who, a))
                return true;
    cb_fail(err, CB_NOT_PERMITTED,
            "the feed carries people's events: subscribe to '<agency>.' or 'flag.<agency>.' of an agency this key "
            "sees for (this key is %s's, whose role is %s)",
            who->name, role_of(who));
    return false;
}
