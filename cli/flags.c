/* carebridge flags, report and audit: the handoff flags, the gap report per
 * agency pair, and who has read what. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cb_json.h"
#include "cli.h"

#define REQUEST_TIMEOUT_MS 10000

static const char flags_usage[] =
    "Usage: carebridge flags [--open] [--type TYPE] [--agency AGENCY] [--person NHS-or-CHI]\n"
    "                        [--since DATE] [--limit N] [--json] [--broker ENDPOINT]\n"
    "\n"
    "Print the handoff flags, newest first: where care may be falling between agencies\n"
    "(README, \"Flags\"). Each filter narrows the list: --open only those not yet resolved;\n"
    "--type one of MISSING_INFORMATION, INTER_AGENCY_HANDOFF, NOT_ACKNOWLEDGED,\n"
    "NOT_ANSWERED, BOUNCED, DISCHARGE_AT_RISK, DECLINED_WITHOUT_ALTERNATIVE,\n"
    "NO_PERSON_OUTCOMES, OUTCOMES_NOT_CARRIED, IDENTITY_UNLINKABLE; --agency those involving\n"
    "that agency; --person those on the person's journey; --since those raised on or after\n"
    "DATE (YYYY-MM-DD, or an RFC 3339 time). At most N (default and most 1000) are printed.\n"
    "--json prints one JSON object per flag per line, with at least id, type, severity,\n"
    "status (OPEN or RESOLVED), eventIds, agencies, raisedAt, resolvedAt (null while open)\n"
    "and explanation.\n";

static const char report_usage[] =
    "Usage: carebridge report [--since DATE] [--until DATE] [--json] [--broker ENDPOINT]\n"
    "\n"
    "The gap report, for integration leads: per ordered pair of agencies, the handoffs sent\n"
    "(referrals, discharges and handovers that occurred from --since up to --until), the\n"
    "median and 90th-percentile time to acknowledge and to decide (accept, decline or\n"
    "redirect), declines and how many named no alternative, redirects, bounces, the fields\n"
    "missing-information flags named, and the flags still open by age. Counts and times\n"
    "only: no person appears in it.\n"
    "--json prints one JSON object per pair per line, with at least from, to, sent,\n"
    "ackMedianMs, ackP90Ms, decideMedianMs, decideP90Ms, declined,\n"
    "declinedWithoutAlternative, redirected, bounced, openFlags (numbers, 0 when none).\n";

/* "2026-12-02" (midnight UTC) or an RFC 3339 time; false on anything else. */
static bool parse_date(const char *text, Google__Protobuf__Timestamp *out)
{
    int y, mo, d, h = 0, mi = 0, s = 0, used = 0;
    if (sscanf(text, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || mo < 1 || mo > 12 || d < 1 || d > 31)
        return false;
    const char *rest = text + used;
    if (*rest) {
        int more = 0;
        if (sscanf(rest, "T%2d:%2d:%2d%n", &h, &mi, &s, &more) != 3 || strcmp(rest + more, "Z"))
            return false;
    }
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s};
    google__protobuf__timestamp__init(out);
    out->seconds = timegm(&tm);
    return true;
}

static bool refused(const cb_frame *reply, const char *command)
{
    if (reply->kind_case != CAREBRIDGE__V1__FRAME__KIND_NACK)
        return false;
    fprintf(stderr, "carebridge %s: %s: %s\n", command, cb_code_name((cb_code)reply->nack->code), reply->nack->reason);
    return true;
}

/* The broker's answer to f, or NULL with *status the exit status (a NACK
 * printed: 1; no answer: 2). */
static cb_frame *ask(const cli_globals *g, const char *command, cb_frame *f, int *status)
{
    cb_frame *reply = cli_request(g, command, f, REQUEST_TIMEOUT_MS);
    *status = reply ? CLI_FAILED : CLI_USAGE;
    if (reply && refused(reply, command))
        cb_frame_free(&reply);
    return reply;
}

/* --limit N: 1 to 1000. */
static bool limit_of(const char *command, const char *text, uint32_t *out)
{
    char *end;
    unsigned long n = strtoul(text, &end, 10);
    if (end == text || *end || !n || n > 1000) {
        fprintf(stderr, "carebridge %s: --limit must be 1 to 1000\n", command);
        return false;
    }
    *out = (uint32_t)n;
    return true;
}

/* The message's canonical JSON with the keys a script reads always there:
 * numbers as numbers (proto3 writes 64-bit ones as strings), missing ones as
 * 0, or null, or []. */
static void print_line(const ProtobufCMessage *m, const char *const *numbers, const char *const *nulls,
                       const char *const *lists)
{
    cb_error err = {0};
    json_t *j = cb_json_from_message(m, &err);
    if (!j) {
        fprintf(stderr, "carebridge: cannot print a message as JSON: %s\n", err.reason);
        return;
    }
    for (size_t i = 0; numbers && numbers[i]; i++) {
        json_t *v = json_object_get(j, numbers[i]);
        json_int_t n = v && json_is_string(v)    ? (json_int_t)strtoull(json_string_value(v), NULL, 10)
                       : v && json_is_integer(v) ? json_integer_value(v)
                                                 : 0;
        json_object_set_new(j, numbers[i], json_integer(n));
    }
    for (size_t i = 0; nulls && nulls[i]; i++)
        if (!json_object_get(j, nulls[i]))
            json_object_set_new(j, nulls[i], json_null());
    for (size_t i = 0; lists && lists[i]; i++)
        if (!json_object_get(j, lists[i]))
            json_object_set_new(j, lists[i], json_array());
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text)
        puts(text);
    free(text);
    json_decref(j);
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int value)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    return v ? v->name : "?";
}

static void print_flag(const Carebridge__V1__Flag *f)
{
    char when[32] = "";
    if (f->raised_at) {
        time_t t = (time_t)f->raised_at->seconds;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%MZ", &tm);
    }
    printf("%-8s %-28s %-6s %s  #%llu", f->status == CAREBRIDGE__V1__FLAG__STATUS__OPEN ? "OPEN" : "RESOLVED",
           enum_name(&carebridge__v1__flag__type__descriptor, f->type),
           enum_name(&carebridge__v1__flag__severity__descriptor, f->severity), when, (unsigned long long)f->id);
    for (size_t i = 0; i < f->n_event_ids; i++)
        printf("%s%s", i ? "," : " event ", f->event_ids[i]);
    printf("  %s\n      %s\n", f->person, f->explanation);
    if (f->resolution[0])
        printf("      resolves when: %s\n", f->resolution);
}

int cli_flags(const cli_globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"open", no_argument, 0, 'o'},
        {"type", required_argument, 0, 't'},
        {"agency", required_argument, 0, 'a'},
        {"person", required_argument, 0, 'p'},
        {"since", required_argument, 0, 's'},
        {"limit", required_argument, 0, 'n'},
        {"json", no_argument, 0, 'j'},
        {"broker", required_argument, 0, 'b'},
        CLI_KEY_OPTIONS,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    cli_globals globals = *g;
    Carebridge__V1__FlagsRequest req = CAREBRIDGE__V1__FLAGS_REQUEST__INIT;
    Google__Protobuf__Timestamp since;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ot:a:p:s:n:jb:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': req.open_only = true; break;
        case 't': {
            const ProtobufCEnumValue *v =
                protobuf_c_enum_descriptor_get_value_by_name(&carebridge__v1__flag__type__descriptor, optarg);
            if (!v || !v->value) {
                fprintf(stderr, "carebridge flags: --type '%s' is not a flag type\n\n%s", optarg, flags_usage);
                return CLI_USAGE;
            }
            req.type = (Carebridge__V1__Flag__Type)v->value;
            break;
        }
        case 'a': req.agency = optarg; break;
        case 'p': req.person_id = optarg; break;
        case 's':
            if (!parse_date(optarg, &since)) {
                fprintf(stderr, "carebridge flags: --since '%s' is not YYYY-MM-DD or an RFC 3339 UTC time\n", optarg);
                return CLI_USAGE;
            }
            req.since = &since;
            break;
        case 'n':
            if (!limit_of("flags", optarg, &req.limit))
                return CLI_USAGE;
            break;
        case 'j': json = true; break;
        case 'b': globals.broker = optarg; break;
        case CLI_OPT_KEY: globals.key_file = optarg; break;
        case CLI_OPT_BROKER_KEY: globals.broker_key = optarg; break;
        case 'h': fputs(flags_usage, stdout); return CLI_OK;
        default: fputs(flags_usage, stderr); return CLI_USAGE;
        }
    }
    if (optind < argc) {
        fputs(flags_usage, stderr);
        return CLI_USAGE;
    }
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_FLAGS_REQUEST;
    f.flags_request = &req;
    int status;
    cb_frame *reply = ask(&globals, "flags", &f, &status);
    if (!reply)
        return status;
    const Carebridge__V1__FlagsReply *r = reply->flags_reply;
    static const char *const numbers[] = {"id", "lateByMs", NULL};
    static const char *const nulls[] = {"resolvedAt", "resolvedBy", NULL};
    static const char *const lists[] = {"eventIds", "agencies", "fields", NULL};
    for (size_t i = 0; i < r->n_flags; i++)
        if (json)
            print_line(&r->flags[i]->base, numbers, nulls, lists);
        else
            print_flag(r->flags[i]);
    if (!json && !r->n_flags)
        puts("No flags match.");
    if (!json && r->truncated)
        printf("(more match than the %zu shown: narrow the filters)\n", r->n_flags);
    cb_frame_free(&reply);
    return CLI_OK;
}

static void print_pair(const Carebridge__V1__AgencyPairReport *p)
{
    printf("%s -> %s: %llu sent", p->from, p->to, (unsigned long long)p->sent);
    if (p->acknowledged)
        printf("; acknowledged in %.1f h median, %.1f h p90 (%llu)", p->ack_median_ms / 3.6e6, p->ack_p90_ms / 3.6e6,
               (unsigned long long)p->acknowledged);
    if (p->decided)
        printf("; decided in %.1f h median, %.1f h p90 (%llu)", p->decide_median_ms / 3.6e6, p->decide_p90_ms / 3.6e6,
               (unsigned long long)p->decided);
    printf("\n      declined %llu (%llu with no alternative), redirected %llu, bounced %llu, open flags %llu",
           (unsigned long long)p->declined, (unsigned long long)p->declined_without_alternative,
           (unsigned long long)p->redirected, (unsigned long long)p->bounced, (unsigned long long)p->open_flags);
    for (size_t i = 0; i < p->n_open_flags_by_age; i++)
        printf("%s%s: %llu", i ? ", " : " (", p->open_flags_by_age[i]->band,
               (unsigned long long)p->open_flags_by_age[i]->count);
    printf("%s\n", p->n_open_flags_by_age ? ")" : "");
    for (size_t i = 0; i < p->n_missing_fields; i++)
        printf("%s%s %llu", i ? ", " : "      missing: ", p->missing_fields[i]->field,
               (unsigned long long)p->missing_fields[i]->count);
    if (p->n_missing_fields)
        putchar('\n');
}

int cli_report(const cli_globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"since", required_argument, 0, 's'},
        {"until", required_argument, 0, 'u'},
        {"json", no_argument, 0, 'j'},
        {"broker", required_argument, 0, 'b'},
        CLI_KEY_OPTIONS,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    cli_globals globals = *g;
    Carebridge__V1__ReportRequest req = CAREBRIDGE__V1__REPORT_REQUEST__INIT;
    Google__Protobuf__Timestamp since, until;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:u:jb:h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
        case 'u':
            if (!parse_date(optarg, c == 's' ? &since : &until)) {
                fprintf(stderr, "carebridge report: --%s '%s' is not YYYY-MM-DD or an RFC 3339 UTC time\n",
                        c == 's' ? "since" : "until", optarg);
                return CLI_USAGE;
            }
            if (c == 's')
                req.since = &since;
            else
                req.until = &until;
            break;
        case 'j': json = true; break;
        case 'b': globals.broker = optarg; break;
        case CLI_OPT_KEY: globals.key_file = optarg; break;
        case CLI_OPT_BROKER_KEY: globals.broker_key = optarg; break;
        case 'h': fputs(report_usage, stdout); return CLI_OK;
        default: fputs(report_usage, stderr); return CLI_USAGE;
        }
    }
    if (optind < argc) {
        fputs(report_usage, stderr);
        return CLI_USAGE;
    }
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_REPORT_REQUEST;
    f.report_request = &req;
    int status;
    cb_frame *reply = ask(&globals, "report", &f, &status);
    if (!reply)
        return status;
    const Carebridge__V1__ReportReply *r = reply->report_reply;
    static const char *const numbers[] = {"sent",
                                          "ackMedianMs",
                                          "ackP90Ms",
                                          "decideMedianMs",
                                          "decideP90Ms",
                                          "declined",
                                          "declinedWithoutAlternative",
                                          "redirected",
                                          "bounced",
                                          "openFlags",
                                          "acknowledged",
                                          "decided",
                                          NULL};
    static const char *const lists[] = {"missingFields", "openFlagsByAge", NULL};
    for (size_t i = 0; i < r->n_pairs; i++)
        if (json)
            print_line(&r->pairs[i]->base, numbers, NULL, lists);
        else
            print_pair(r->pairs[i]);
    if (!json && !r->n_pairs)
        puts("No handoffs in that period.");
    cb_frame_free(&reply);
    return CLI_OK;
}

static const char audit_usage[] =
    "Usage: carebridge audit [--person NHS-or-CHI] [--local SYSTEM:VALUE]... [--agency WHO] [--since DATE]\n"
    "                        [--limit N] [--json]\n"
    "                        [--broker ENDPOINT] [--key FILE --broker-key KEY]\n"
    "\n"
    "Who has seen this person's record? The broker's audit, newest first: every read of\n"
    "personal data (journeys, flags, deliveries, replays, feed subscriptions) and every\n"
    "refusal, each with when, who (an agency's id or a person's name, and their key's\n"
    "fingerprint), their role, what they did, the person as a pseudonym, and the decision.\n"
    "--person those about the person (or --local, a local system's id, as for journey);\n"
    "--agency those by that agency or person; --since\n"
    "those on or after DATE (YYYY-MM-DD, or an RFC 3339 time). At most N (default and most\n"
    "1000). With CURVE, an operator's key reads all of it; an agency's or coordinator's\n"
    "reads one person's (--person), when it may see that person's journey.\n"
    "--json prints one JSON object per record per line, with at least at, who, role,\n"
    "action, person, decision (PERMITTED or REFUSED), code and detail.\n";

/* Every key a script reads is there, also when proto3 would leave it out. */
static void print_audit_line(const Carebridge__V1__AuditRecord *r)
{
    cb_error err = {0};
    json_t *j = cb_json_from_message(&r->base, &err);
    if (!j) {
        fprintf(stderr, "carebridge: cannot print a message as JSON: %s\n", err.reason);
        return;
    }
    static const char *const texts[] = {"who", "role", "fingerprint", "action", "person", "detail"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (!json_object_get(j, texts[i]))
            json_object_set_new(j, texts[i], json_string(""));
    if (!json_object_get(j, "code"))
        json_object_set_new(j, "code", json_string("ERROR_CODE_UNSPECIFIED"));
    if (!json_object_get(j, "at"))
        json_object_set_new(j, "at", json_null());
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text)
        puts(text);
    free(text);
    json_decref(j);
}

static void print_record(const Carebridge__V1__AuditRecord *r)
{
    char when[32] = "-";
    if (r->at) {
        time_t t = (time_t)r->at->seconds;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    bool permitted = r->decision == CAREBRIDGE__V1__AUDIT_RECORD__DECISION__PERMITTED;
    printf("%s  %-10s %-20s %-11s %-14s %s", when, r->action, r->who, r->role, r->person[0] ? r->person : "-",
           permitted ? "PERMITTED" : "REFUSED");
    if (!permitted)
        printf(" %s", cb_code_name((cb_code)r->code));
    printf("%s%s\n", r->detail[0] ? "  " : "", r->detail);
}

int cli_audit(const cli_globals *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"person", required_argument, 0, 'p'}, {"local", required_argument, 0, 'l'},
        {"agency", required_argument, 0, 'a'}, {"since", required_argument, 0, 's'},
        {"limit", required_argument, 0, 'n'},  {"json", no_argument, 0, 'j'},
        {"broker", required_argument, 0, 'b'}, CLI_KEY_OPTIONS,
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0},
    };
    cli_globals globals = *g;
    cli_locals locals = {0};
    Carebridge__V1__AuditRequest req = CAREBRIDGE__V1__AUDIT_REQUEST__INIT;
    Google__Protobuf__Timestamp since;
    bool json = false;
    int c;
    while ((c = getopt_long(argc, argv, "p:l:a:s:n:jb:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p': req.person_id = optarg; break;
        case 'l':
            if (!cli_local_add(&locals, optarg)) {
                fprintf(stderr, "carebridge audit: --local needs SYSTEM:VALUE, at most %d times\n", CLI_LOCALS_MAX);
                return CLI_USAGE;
            }
            req.local_ids = locals.ptrs;
            req.n_local_ids = locals.n;
            break;
        case 'a': req.agency = optarg; break;
        case 's':
            if (!parse_date(optarg, &since)) {
                fprintf(stderr, "carebridge audit: --since must be YYYY-MM-DD or an RFC 3339 time (got '%s')\n",
                        optarg);
                return CLI_USAGE;
            }
            req.since = &since;
            break;
        case 'n':
            if (!limit_of("audit", optarg, &req.limit))
                return CLI_USAGE;
            break;
        case 'j': json = true; break;
        case 'b': globals.broker = optarg; break;
        case CLI_OPT_KEY: globals.key_file = optarg; break;
        case CLI_OPT_BROKER_KEY: globals.broker_key = optarg; break;
        case 'h': fputs(audit_usage, stdout); return CLI_OK;
        default: fputs(audit_usage, stderr); return CLI_USAGE;
        }
    }
    if (optind < argc) {
        fputs(audit_usage, stderr);
        return CLI_USAGE;
    }
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_AUDIT_REQUEST;
    f.audit_request = &req;
    int status;
    cb_frame *reply = ask(&globals, "audit", &f, &status);
    if (!reply)
        return status;
    const Carebridge__V1__AuditReply *r = reply->audit_reply;
    for (size_t i = 0; i < r->n_records; i++)
        if (json)
            print_audit_line(r->records[i]);
        else
            print_record(r->records[i]);
    if (!json && !r->n_records)
        puts("No audit records match.");
    if (!json && r->truncated)
        printf("(more match than the %zu shown: narrow the filters)\n", r->n_records);
    cb_frame_free(&reply);
    return CLI_OK;
}
