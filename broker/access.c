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
                       "this connection's key is %s's, a %s's: a %s may query, but hello needs an agency's key",
                       who->name, role_of(who), role_of(who));
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
    return cb_fail(err, CB_NOT_PERMITTED, "this connection's key is %s's, a %s's: only an agency's key may %s",
                   who->name, role_of(who), what);
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
                   "%s's, a %s's)",
                   to_agency >= 0 ? cfg->agencies[to_agency].id : "that agency", who->name, role_of(who));
}
