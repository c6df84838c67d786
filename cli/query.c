/* carebridge journey, status and replay: one request to the broker each. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

#define REQUEST_TIMEOUT_MS 5000

static const char journey_usage[] =
    "Usage: carebridge journey [NHS-or-CHI-number] [--local SYSTEM:VALUE]... [--json] [--broker ENDPOINT]\n"
    "\n"
    "Give the person's NHS or CHI number (spaces and dashes are fine: 943 476 5919), or a\n"
    "local system's identifier with --local (split at its last ':', so housing:hms:T-20417\n"
    "is system housing:hms, value T-20417), or several: the journey holds every event\n"
    "stored under any of them.\n"
    "\n"
    "Print the person's timeline across agencies, oldest first: when, what, from and to,\n"
    "and for each referral, discharge or handover where its handoff to each recipient\n"
    "stands (SENT, ACKNOWLEDGED, ACCEPTED, DECLINED, INFO_REQUESTED, REDIRECTED) and\n"
    "whether it has been delivered, then the flags raised on it, open or resolved (see\n"
    "carebridge flags). Updates are merged into the event they correct.\n"
    "--json prints the broker's JourneyReply as canonical JSON instead.\n"
    "--broker may name the broker's query endpoint (broker.queries, tcp://127.0.0.1:5572 by\n"
    "default), which answers without waiting behind publishes.\n";

static const char status_usage[] =
    "Usage: carebridge status [--json] [--broker ENDPOINT]\n"
    "\n"
    "Print, per agency: connected or not, events queued, in flight, parked, and the age\n"
    "of the oldest undelivered one; then the store's size, fill and last seq.\n"
    "--json prints the broker's StatusReply as canonical JSON instead.\n"
    "--broker may name the broker's query endpoint (broker.queries, tcp://127.0.0.1:5572 by\n"
    "default), which answers without waiting behind publishes.\n";

static const char replay_usage[] =
    "Usage: carebridge replay <eventId|seq> --to AGENCY [--broker ENDPOINT]\n"
    "\n"
    "Queue the stored event again for AGENCY: a parked delivery is released with its\n"
    "attempts reset, any other stored event is queued anew. Name it by its event id or by\n"
    "its seq (as status lists parked entries); a number is tried as an event id first.\n"
    "Prints 'REPLAYED <eventId> seq=<n> to <agency>'. Exit 1 if the broker refuses.\n";

/* Options shared by the three: --json, --to, --local, --broker, --help. */
typedef struct {
    cli_globals g;
    bool json;
    const char *to;
    const char *arg;
    cli_locals locals;
} query_args;

/* Which options a command takes besides --json, --broker and --help. */
enum { TAKES_TO = 1, TAKES_LOCAL = 2 };

static int parse(const cli_globals *g, int argc, char **argv, const char *usage, int takes, query_args *q)
{
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"to", required_argument, 0, 't'},
                                         {"local", required_argument, 0, 'l'},
                                         {"broker", required_argument, 0, 'b'},
                                         CLI_KEY_OPTIONS,
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    *q = (query_args){.g = *g};
    int c;
    while ((c = getopt_long(argc, argv, "jt:l:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': q->json = true; break;
        case 't':
            if (!(takes & TAKES_TO))
                goto bad;
            q->to = optarg;
            break;
        case 'l':
            if (!(takes & TAKES_LOCAL) || !cli_local_add(&q->locals, optarg))
                goto bad;
            break;
        case 'b': q->g.broker = optarg; break;
        case CLI_OPT_KEY: q->g.key_file = optarg; break;
        case CLI_OPT_BROKER_KEY: q->g.broker_key = optarg; break;
        case 'h': fputs(usage, stdout); return CLI_OK;
        default: goto bad;
        }
    }
    if (optind < argc)
        q->arg = argv[optind++];
    if (optind == argc)
        return -1;
bad:
    fputs(usage, stderr);
    return CLI_USAGE;
}

/* A Nack answer: print it and say the command failed. */
static bool refused(const cb_frame *reply, const char *command)
{
    if (reply->kind_case != CAREBRIDGE__V1__FRAME__KIND_NACK)
        return false;
    fprintf(stderr, "carebridge %s: %s: %s\n", command, cb_code_name((cb_code)reply->nack->code), reply->nack->reason);
    return true;
}

static void print_when(const Google__Protobuf__Timestamp *ts)
{
    struct tm tm;
    time_t t = ts ? (time_t)ts->seconds : 0;
    gmtime_r(&t, &tm);
    printf("%04d-%02d-%02d %02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int value)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    return v ? v->name : "?";
}

/* "; " between the parts of one line, none before the first. */
typedef struct {
    bool any;
} parts;

static void part(parts *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void part(parts *p, const char *fmt, ...)
{
    fputs(p->any ? "; " : "      ", stdout);
    p->any = true;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

static void end_line(parts *p)
{
    if (p->any)
        putchar('\n');
    p->any = false;
}

static void print_admission(const Carebridge__V1__Admission *a)
{
    parts p = {false};
    part(&p, "admitted%s to %s", a->emergency ? " as an emergency" : "", a->setting[0] ? a->setting : "?");
    if (a->previous_setting[0])
        part(&p, "moved from %s", a->previous_setting);
    if (a->reason[0])
        part(&p, "%s", a->reason);
    if (a->expected_discharge_date[0])
        part(&p, "discharge expected %s", a->expected_discharge_date);
    end_line(&p);
}

static void print_discharge(const Carebridge__V1__Discharge *d)
{
    parts p = {false};
    part(&p, "from %s to %s on %s", d->setting[0] ? d->setting : "?", d->destination[0] ? d->destination : "?",
         d->planned_date[0] ? d->planned_date : "no planned date");
    end_line(&p);
    /* What must still be confirmed, by name: "1 of 3 unconfirmed" tells a
     * coordinator nothing to act on. */
    size_t items = d->n_follow_ups + d->n_dependencies, open = 0;
    for (size_t i = 0; i < d->n_follow_ups; i++) {
        const Carebridge__V1__FollowUp *f = d->follow_ups[i];
        if (f->confirmed)
            continue;
        printf(open++ ? "; " : "      unconfirmed: ");
        printf("follow-up %s", f->service[0] ? f->service : "(no service named)");
        if (f->agency[0])
            printf(" (%s)", f->agency);
    }
    for (size_t i = 0; i < d->n_dependencies; i++) {
        const Carebridge__V1__Dependency *dep = d->dependencies[i];
        if (dep->confirmed)
            continue;
        printf(open++ ? "; " : "      unconfirmed: ");
        printf("dependency %s", dep->description[0] ? dep->description : "(not described)");
        if (dep->owner[0])
            printf(" (owner %s)", dep->owner);
    }
    if (open)
        putchar('\n');
    else if (items)
        printf("      all %zu follow-ups and dependencies confirmed\n", items);
}

static void print_response(const Carebridge__V1__Response *r)
{
    parts p = {false};
    if (r->status == CAREBRIDGE__V1__RESPONSE__STATUS__REDIRECTED)
        part(&p, "redirected to %s", r->redirect_to[0] ? r->redirect_to : "(no agency named)");
    if (r->reason[0])
        part(&p, "reason: %s", r->reason);
    if (r->alternative[0])
        part(&p, "alternative: %s", r->alternative);
    else if (r->status == CAREBRIDGE__V1__RESPONSE__STATUS__DECLINED)
        part(&p, "no alternative offered");
    for (size_t i = 0; i < r->n_requested_fields; i++)
        printf(i ? ", %s" : p.any ? "; requested: %s" : (p.any = true, "      requested: %s"), r->requested_fields[i]);
    if (r->note[0])
        part(&p, "note: %s", r->note);
    end_line(&p);
}

/* What the event says, so the timeline reads without --json. */
static void print_gist(const cb_envelope *ev)
{
    parts p = {false};
    switch (ev->body_case) {
    case CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL:
        printf("      %s%s%s; urgency %s; consent %s; %zu outcome(s)\n", ev->referral->reason,
               ev->referral->requested_service[0] ? "; wants " : "", ev->referral->requested_service,
               enum_name(&carebridge__v1__referral__urgency__descriptor, ev->referral->urgency),
               enum_name(&carebridge__v1__referral__consent__descriptor, ev->referral->consent),
               ev->referral->n_outcomes);
        break;
    case CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE: print_discharge(ev->discharge); break;
    case CAREBRIDGE__V1__ENVELOPE__BODY_HANDOVER:
        printf("      lead passes to %s; %zu outcome(s) to sustain\n",
               ev->handover->new_lead[0] ? ev->handover->new_lead : "?", ev->handover->n_outcomes_to_sustain);
        for (size_t i = 0; i < ev->handover->n_outstanding_actions; i++)
            printf(i ? "; %s" : "      outstanding: %s", ev->handover->outstanding_actions[i]);
        if (ev->handover->n_outstanding_actions)
            putchar('\n');
        break;
    case CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE: print_response(ev->response); break;
    case CAREBRIDGE__V1__ENVELOPE__BODY_UPDATE:
        if (ev->update->note[0])
            part(&p, "note: %s", ev->update->note);
        end_line(&p);
        break;
    case CAREBRIDGE__V1__ENVELOPE__BODY_CLOSURE: printf("      %s\n", ev->closure->reason); break;
    case CAREBRIDGE__V1__ENVELOPE__BODY_ADMISSION: print_admission(ev->admission); break;
    default: break;
    }
}

/* How long since `when`, coarsely: a coordinator reads days, not seconds. */
static void print_waited(const Google__Protobuf__Timestamp *when)
{
    time_t now = time(NULL);
    if (!when || when->seconds > now)
        return;
    int64_t s = now - when->seconds;
    if (s < 60)
        printf("; for <1m");
    else if (s < 3600)
        printf("; for %lldm", (long long)(s / 60));
    else if (s < 86400)
        printf("; for %lldh", (long long)(s / 3600));
    else
        printf("; for %lldd", (long long)(s / 86400));
}

static void print_handoff(const Carebridge__V1__JourneyStep__Handoff *h)
{
    printf("      %-12s %-15s ", h->agency, enum_name(&carebridge__v1__journey_step__stage__descriptor, h->stage));
    if (h->not_a_recipient)
        printf("answered, though the event was not sent to it");
    else if (h->delivered)
        printf("delivered");
    else if (h->parked)
        printf("parked (%u attempts)", h->attempts);
    else if (h->attempts)
        printf("not yet delivered (%u attempt%s)", h->attempts, h->attempts == 1 ? "" : "s");
    else
        printf("not yet delivered");
    if (h->note[0])
        printf("; %s", h->note);
    print_waited(h->since);
    putchar('\n');
}

static void print_step(const Carebridge__V1__JourneyStep *s)
{
    const cb_envelope *ev = s->event;
    print_when(ev->occurred_at);
    printf("  #%-5llu %-9s", (unsigned long long)s->seq, cb_body_name(ev));
    if (ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE)
        printf(" %s", enum_name(&carebridge__v1__response__status__descriptor, ev->response->status));
    printf("  %s ->", ev->from_agency);
    for (size_t i = 0; i < ev->n_to_agencies; i++)
        printf("%s %s", i ? "," : "", ev->to_agencies[i]);
    printf("  [%s]", ev->event_id);
    if (ev->case_ref[0])
        printf(" case %s", ev->case_ref);
    if (ev->correlation_id[0])
        printf(" answers %s%s", ev->correlation_id, s->answers_unseen ? " (an event carebridge has not seen)" : "");
    putchar('\n');
    print_gist(ev);
    for (size_t i = 0; i < s->n_handoffs; i++)
        print_handoff(s->handoffs[i]);
    for (size_t i = 0; i < s->n_flags; i++) {
        const Carebridge__V1__Flag *f = s->flags[i];
        printf("      flag %s %s: %s\n", enum_name(&carebridge__v1__flag__type__descriptor, f->type),
               f->status == CAREBRIDGE__V1__FLAG__STATUS__OPEN ? "OPEN" : "resolved", f->explanation);
    }
    if (s->n_updated_by) {
        printf("      updated by");
        for (size_t i = 0; i < s->n_updated_by; i++)
            printf(" #%llu", (unsigned long long)s->updated_by[i]);
        putchar('\n');
    }
}

int cli_journey(const cli_globals *g, int argc, char **argv)
{
    query_args q;
    int rc = parse(g, argc, argv, journey_usage, TAKES_LOCAL, &q);
    if (rc >= 0)
        return rc;
    if (!q.arg && !q.locals.n) {
        fputs(journey_usage, stderr);
        return CLI_USAGE;
    }
    Carebridge__V1__JourneyRequest req = CAREBRIDGE__V1__JOURNEY_REQUEST__INIT;
    req.person_id = (char *)(q.arg ? q.arg : "");
    req.n_local_ids = q.locals.n;
    req.local_ids = q.locals.ptrs;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REQUEST;
    f.journey_request = &req;
    cb_frame *reply = cli_request(&q.g, "journey", &f, REQUEST_TIMEOUT_MS);
    if (!reply)
        return CLI_USAGE;
    if (refused(reply, "journey")) {
        cb_frame_free(&reply);
        return CLI_FAILED;
    }
    const Carebridge__V1__JourneyReply *j = reply->journey_reply;
    if (q.json) {
        cli_print_json(&j->base);
    } else if (!j->n_steps) {
        puts("No events are stored for that person.");
    } else {
        printf("Journey: %zu event(s)\n", j->n_steps);
        for (size_t i = 0; i < j->n_steps; i++)
            print_step(j->steps[i]);
    }
    cb_frame_free(&reply);
    return CLI_OK;
}

static void print_age(uint64_t ms)
{
    if (!ms)
        printf("-");
    else if (ms < 60000)
        printf("<1m");
    else if (ms < 3600000)
        printf("%llum", (unsigned long long)(ms / 60000));
    else
        printf("%lluh", (unsigned long long)(ms / 3600000));
}

int cli_status(const cli_globals *g, int argc, char **argv)
{
    query_args q;
    int rc = parse(g, argc, argv, status_usage, 0, &q);
    if (rc >= 0)
        return rc;
    if (q.arg) {
        fputs(status_usage, stderr);
        return CLI_USAGE;
    }
    Carebridge__V1__StatusRequest req = CAREBRIDGE__V1__STATUS_REQUEST__INIT;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_STATUS_REQUEST;
    f.status_request = &req;
    cb_frame *reply = cli_request(&q.g, "status", &f, REQUEST_TIMEOUT_MS);
    if (!reply)
        return CLI_USAGE;
    if (refused(reply, "status")) {
        cb_frame_free(&reply);
        return CLI_FAILED;
    }
    const Carebridge__V1__StatusReply *s = reply->status_reply;
    if (q.json) {
        cli_print_json(&s->base);
        cb_frame_free(&reply);
        return CLI_OK;
    }
    printf("%-14s %-12s %-9s %8s %9s %7s  %s\n", "AGENCY", "KIND", "CONNECTED", "QUEUED", "IN-FLIGHT", "PARKED",
           "OLDEST");
    for (size_t i = 0; i < s->n_agencies; i++) {
        const Carebridge__V1__AgencyStatus *a = s->agencies[i];
        printf("%-14s %-12s %-9s %8llu %9u %7llu  ", a->id, a->kind, a->connected ? "yes" : "no",
               (unsigned long long)a->queued, a->in_flight, (unsigned long long)a->parked);
        print_age(a->oldest_undelivered_ms);
        putchar('\n');
        if (a->n_parked_seqs) {
            printf("  parked:");
            for (size_t k = 0; k < a->n_parked_seqs; k++)
                printf("%s %s (seq %llu)", k ? "," : "", k < a->n_parked_event_ids ? a->parked_event_ids[k] : "?",
                       (unsigned long long)a->parked_seqs[k]);
            printf("%s  (carebridge replay <eventId|seq> --to %s)\n", a->parked > a->n_parked_seqs ? ", ..." : "",
                   a->id);
        }
    }
    printf("store: %llu events, last seq %llu, %.1f of %.0f MiB in use\n", (unsigned long long)s->events,
           (unsigned long long)s->last_seq, s->store_used_bytes / 1048576.0, s->store_limit_bytes / 1048576.0);
    if (s->publishing_paused)
        printf("FULL: publishes are refused: %s\n", s->paused_reason);
    cb_frame_free(&reply);
    return CLI_OK;
}

int cli_replay(const cli_globals *g, int argc, char **argv)
{
    query_args q;
    int rc = parse(g, argc, argv, replay_usage, TAKES_TO, &q);
    if (rc >= 0)
        return rc;
    if (!q.arg || !q.to) {
        fputs(replay_usage, stderr);
        return CLI_USAGE;
    }
    Carebridge__V1__ReplayRequest req = CAREBRIDGE__V1__REPLAY_REQUEST__INIT;
    req.event_id = (char *)q.arg;
    req.agency = (char *)q.to;
    /* A number may be a seq; the broker tries it as an event id first. */
    char *end;
    unsigned long long seq = strtoull(q.arg, &end, 10);
    if (q.arg[0] >= '0' && q.arg[0] <= '9' && !*end)
        req.seq = seq;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_REPLAY_REQUEST;
    f.replay_request = &req;
    cb_frame *reply = cli_request(&q.g, "replay", &f, REQUEST_TIMEOUT_MS);
    if (!reply)
        return CLI_USAGE;
    int status = CLI_FAILED;
    if (!refused(reply, "replay")) {
        printf("REPLAYED %s seq=%llu to %s%s\n", reply->replay_reply->event_id,
               (unsigned long long)reply->replay_reply->seq, q.to,
               reply->replay_reply->was_parked ? " (released from parked)" : "");
        status = CLI_OK;
    }
    cb_frame_free(&reply);
    return status;
}
