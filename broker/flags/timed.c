/* Handoff records and the time-based rules. A referral, discharge or
 * handover that passes responsibility to other agencies gets a record:
 * where each recipient's handoff stands (its INTER_AGENCY_HANDOFF flag), and
 * the deadlines that count from its occurredAt (NOT_ACKNOWLEDGED,
 * NOT_ANSWERED, DISCHARGE_AT_RISK). The record is keyed in the due index by
 * its next deadline, so a tick reads only what has fallen due. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "handoff.h"
#include "rule.h"

#define HOUR_MS  3600000LL
#define LIST_MAX 600

/* Midnight UTC starting a "YYYY-MM-DD" date; 0 when it is not one. */
static int64_t day_ms(const char *date)
{
    int y, m, d, used = 0;
    if (sscanf(date, "%4d-%2d-%2d%n", &y, &m, &d, &used) != 3 || used != 10 || date[used] || m < 1 || m > 12 || d < 1 ||
        d > 31)
        return 0;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    time_t t = timegm(&tm);
    return t > 0 ? (int64_t)t * 1000 : 0;
}

static int64_t ack_due(const cb_flags_config *c, const cb_handoff_record *rec)
{
    return rec->occurred_ms + (rec->urgent ? c->acknowledge_urgent_hours : c->acknowledge_hours) * HOUR_MS;
}

static int64_t decide_due(const cb_flags_config *c, const cb_handoff_record *rec)
{
    return rec->occurred_ms + (rec->urgent ? c->decide_urgent_hours : c->decide_hours) * HOUR_MS;
}

static bool is_discharge(const cb_handoff_record *rec)
{
    return rec->body == CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE;
}

/* Each deadline of a record that can still pass: the same predicates decide
 * what is due (cb_timed_next_due) and what a tick raises (judge). */
static bool ack_pending(const cb_recipient *r)
{
    return !r->acknowledged_ms && !(r->raised & BIT(TYPE(NOT_ACKNOWLEDGED)));
}
static bool decide_pending(const cb_recipient *r)
{
    return !r->decided_ms && !(r->raised & BIT(TYPE(NOT_ANSWERED)));
}
static bool accept_pending(const cb_handoff_record *rec, const cb_recipient *r)
{
    return is_discharge(rec) && day_ms(rec->planned_date) && r->stage != STAGE(ACCEPTED) &&
           !(r->raised & BIT(TYPE(DISCHARGE_AT_RISK)));
}
static bool confirm_pending(const cb_handoff_record *rec)
{
    return is_discharge(rec) && day_ms(rec->planned_date) && rec->n_unconfirmed &&
           !(rec->raised & BIT(TYPE(DISCHARGE_AT_RISK)));
}
static int64_t confirm_due(const cb_flags_config *c, const cb_handoff_record *rec)
{
    return day_ms(rec->planned_date) - c->discharge_confirm_hours * HOUR_MS;
}

uint64_t cb_timed_next_due(const cb_flags_config *c, const cb_handoff_record *rec)
{
    int64_t due = INT64_MAX;
#define SOONER(t) (due = (t) < due ? (t) : due)
    for (size_t i = 0; i < rec->n_recipients; i++) {
        const cb_recipient *r = rec->recipients[i];
        if (ack_pending(r))
            SOONER(ack_due(c, rec));
        if (decide_pending(r))
            SOONER(decide_due(c, rec));
        if (accept_pending(rec, r))
            SOONER(day_ms(rec->planned_date));
    }
    if (confirm_pending(rec))
        SOONER(confirm_due(c, rec));
#undef SOONER
    return due == INT64_MAX ? 0 : due > 0 ? (uint64_t)due : 1;
}

static void add_string(char ***list, size_t *n, const char *s)
{
    char **l = realloc(*list, (*n + 1) * sizeof *l);
    if (!l)
        return;
    *list = l;
    l[(*n)++] = cb_explain_dup(s);
}

/* A discharge's follow-ups and dependencies by the names they are confirmed by. */
static void item_name(char *out, size_t cap, const Carebridge__V1__FollowUp *fu, const Carebridge__V1__Dependency *dep)
{
    if (fu)
        snprintf(out, cap, "follow-up by %s%s%s", fu->agency[0] ? fu->agency : "an unnamed agency",
                 fu->service[0] ? ": " : "", fu->service);
    else
        snprintf(out, cap, "%s", dep->description[0] ? dep->description : "an undescribed dependency");
}

static void note_items(cb_handoff_record *rec, const Carebridge__V1__Discharge *d)
{
    char name[300];
    for (size_t i = 0; i < d->n_follow_ups + d->n_dependencies; i++) {
        bool fu = i < d->n_follow_ups;
        item_name(name, sizeof name, fu ? d->follow_ups[i] : NULL, fu ? NULL : d->dependencies[i - d->n_follow_ups]);
        bool confirmed = fu ? d->follow_ups[i]->confirmed : d->dependencies[i - d->n_follow_ups]->confirmed;
        size_t at = 0;
        while (at < rec->n_unconfirmed && strcasecmp(rec->unconfirmed[at], name))
            at++;
        if (confirmed && at < rec->n_unconfirmed) {
            free(rec->unconfirmed[at]);
            memmove(&rec->unconfirmed[at], &rec->unconfirmed[at + 1],
                    (rec->n_unconfirmed - at - 1) * sizeof *rec->unconfirmed);
            rec->n_unconfirmed--;
        } else if (!confirmed && at == rec->n_unconfirmed) {
            add_string(&rec->unconfirmed, &rec->n_unconfirmed, name);
        }
    }
}

static void note_handoff(cb_rule_ctx *ctx, const cb_handoff_record *rec, uint64_t seq, size_t i)
{
    if (!ctx->feed || !ctx->feed->wanted)
        return;
    cb_flag *f = cb_flagbook_handoff_flag(rec, seq, i);
    if (f)
        cb_rule_note(ctx, f);
    cb_flag_free(&f);
}

/* ---- the record of a handed-off event (the INTER_AGENCY_HANDOFF row) */

void cb_timed_record(cb_rule_ctx *ctx)
{
    const cb_envelope *ev = ctx->ev;
    size_t handed = 0, n = ev->n_to_agencies;
    for (size_t i = 0; i < n; i++)
        handed += strcmp(ev->to_agencies[i], ev->from_agency) != 0;
    if (!handed || n >= CB_FLAG_STORED)
        return; /* nothing passes to another agency */
    /* Built on the stack over the event's own strings: it is packed and gone. */
    cb_handoff_record rec = CAREBRIDGE__V1__HANDOFF_RECORD__INIT;
    cb_recipient rs[n], *ptrs[n];
    rec.event_id = ev->event_id;
    rec.from_agency = ev->from_agency;
    rec.body = (int32_t)ev->body_case;
    rec.occurred_ms = ctx->occurred_ms ? ctx->occurred_ms : (int64_t)ctx->wall_ms;
    rec.urgent = ctx->urgent;
    rec.person = ctx->person;
    rec.stored_ms = (int64_t)ctx->wall_ms;
    rec.recipients = ptrs;
    rec.n_recipients = n;
    for (size_t i = 0; i < n; i++) {
        carebridge__v1__handoff_record__recipient__init(&rs[i]);
        rs[i].agency = ev->to_agencies[i];
        /* To itself: no handoff. */
        rs[i].stage = strcmp(ev->to_agencies[i], ev->from_agency) ? STAGE(SENT) : STAGE(ACCEPTED);
        ptrs[i] = &rs[i];
    }
    if (ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE) {
        rec.planned_date = ev->discharge->planned_date;
        note_items(&rec, ev->discharge);
    }
    cb_flagbook_put_record(ctx->fb, ctx->txn, ctx->seq, &rec, true, 0, cb_timed_next_due(ctx->cfg, &rec));
    for (size_t i = 0; i < n; i++) {
        if (rs[i].stage == STAGE(ACCEPTED))
            continue;
        const char *agencies[] = {rs[i].agency, rec.from_agency};
        cb_flagbook_index_flag(ctx->fb, ctx->txn, cb_flag_id(ctx->seq, (unsigned)i), TYPE(INTER_AGENCY_HANDOFF),
                               agencies, 2, true, false, 0);
        note_handoff(ctx, &rec, ctx->seq, i);
    }
    ctx->raised |= BIT(TYPE(INTER_AGENCY_HANDOFF));
    cb_rules_early_answers(ctx);
    for (size_t i = 0; i < rec.n_unconfirmed; i++)
        cb_rule_set(&rec.unconfirmed[i], NULL);
    free(rec.unconfirmed);
}

/* ---- a deadline passed */

static cb_flag *timed_flag(cb_rule_ctx *ctx, cb_flag_type type, const cb_handoff_record *rec, uint64_t seq,
                           const char *agency, int64_t due)
{
    cb_flag *f = cb_rule_flag(ctx, type, seq, rec->urgent, rec->event_id, agency ? agency : rec->from_agency,
                              rec->from_agency, NULL);
    if (f) {
        f->due_at = cb_explain_timestamp(due);
        cb_rule_set(&f->person, cb_explain_dup(rec->person));
        const char *to[rec->n_recipients + 1];
        size_t n = 0;
        for (size_t i = 0; i < rec->n_recipients; i++)
            if (!agency || !strcmp(rec->recipients[i]->agency, agency))
                to[n++] = rec->recipients[i]->agency;
        cb_rule_pair(f, rec->from_agency, to, n);
    }
    return f;
}

static void word_late(cb_flag *f, const cb_flags_config *c, const cb_handoff_record *rec, const char *agency)
{
    char when[24];
    cb_explain_date(rec->occurred_ms, when);
    bool ack = f->type == TYPE(NOT_ACKNOWLEDGED);
    uint32_t hours = ack ? (rec->urgent ? c->acknowledge_urgent_hours : c->acknowledge_hours)
                         : (rec->urgent ? c->decide_urgent_hours : c->decide_hours);
    cb_rule_set(&f->explanation,
                cb_explain("%s has not %s the %s of %s from %s within %u h%s", agency,
                           ack ? "acknowledged" : "accepted, declined or redirected", cb_explain_body(rec->body), when,
                           rec->from_agency, hours, rec->urgent ? " (it is urgent)" : ""));
    cb_rule_set(&f->resolution,
                cb_explain("%s %s it", agency,
                           ack ? "acknowledges, accepts, declines or redirects" : "accepts, declines or redirects"));
}

static void word_at_risk(cb_flag *f, const cb_flags_config *c, const cb_handoff_record *rec, const char *agency)
{
    char planned[24];
    cb_explain_date(day_ms(rec->planned_date), planned);
    if (agency) {
        cb_rule_set(&f->explanation, cb_explain("%s has not accepted the discharge from %s planned for %s", agency,
                                                rec->from_agency, planned));
        cb_rule_set(&f->resolution, cb_explain("%s accepts it, or an update sets a new planned date", agency));
        return;
    }
    char list[LIST_MAX];
    cb_explain_list(rec->unconfirmed, rec->n_unconfirmed, list, sizeof list);
    cb_rule_set(&f->explanation,
                cb_explain("The discharge from %s planned for %s still has %zu thing%s unconfirmed %u h before: %s",
                           rec->from_agency, planned, rec->n_unconfirmed, rec->n_unconfirmed == 1 ? "" : "s",
                           c->discharge_confirm_hours, list));
    cb_rule_set(&f->resolution, cb_explain("an update that confirms them, or sets a new planned date"));
    for (size_t i = 0; i < rec->n_unconfirmed; i++)
        cb_rule_add_field(f, rec->unconfirmed[i]);
}

void cb_timed_due(cb_rule_ctx *ctx, uint64_t seq, uint64_t due_ms)
{
    cb_handoff_record *rec = cb_flagbook_record(ctx->fb, ctx->txn, seq);
    if (!rec) {
        cb_flagbook_drop_due(ctx->fb, ctx->txn, seq, due_ms);
        return;
    }
    snprintf(ctx->person, sizeof ctx->person, "%s", rec->person);
    const cb_flags_config *c = ctx->cfg;
    int64_t now = (int64_t)ctx->wall_ms;
    for (size_t i = 0; i < rec->n_recipients; i++) {
        cb_recipient *r = rec->recipients[i];
        struct {
            bool pending;
            int64_t due;
            cb_flag_type type;
        } checks[] = {
            {ack_pending(r), ack_due(c, rec), TYPE(NOT_ACKNOWLEDGED)},
            {decide_pending(r), decide_due(c, rec), TYPE(NOT_ANSWERED)},
            {accept_pending(rec, r), day_ms(rec->planned_date), TYPE(DISCHARGE_AT_RISK)},
        };
        for (size_t k = 0; k < sizeof checks / sizeof checks[0]; k++) {
            if (!checks[k].pending || checks[k].due > now)
                continue;
            cb_flag *f = timed_flag(ctx, checks[k].type, rec, seq, r->agency, checks[k].due);
            if (!f)
                continue;
            if (checks[k].type == TYPE(DISCHARGE_AT_RISK))
                word_at_risk(f, c, rec, r->agency);
            else
                word_late(f, c, rec, r->agency);
            r->raised |= BIT(checks[k].type);
            cb_rule_raise(ctx, f, false);
        }
    }
    if (confirm_pending(rec) && confirm_due(c, rec) <= now) {
        cb_flag *f = timed_flag(ctx, TYPE(DISCHARGE_AT_RISK), rec, seq, NULL, confirm_due(c, rec));
        if (f) {
            word_at_risk(f, c, rec, NULL);
            rec->raised |= BIT(TYPE(DISCHARGE_AT_RISK));
            cb_rule_raise(ctx, f, false);
        }
    }
    uint64_t next = cb_timed_next_due(c, rec);
    /* Every deadline due by now was raised or no longer holds, so the next
     * lies ahead; were it not, dropping it keeps a tick from spinning. */
    cb_flagbook_put_record(ctx->fb, ctx->txn, seq, rec, false, due_ms, next > ctx->wall_ms ? next : 0);
    cb_flagbook_free_record(&rec);
}

/* ---- a response from a recipient */

/* The answer settles a deadline: a flag raised for it is resolved, saying
 * how late the answer came; an answer that came late before any tick saw
 * the deadline pass raises the flag resolved at once, so the lateness is on
 * record all the same. */
static void settle(cb_rule_ctx *ctx, cb_flag_type type, const cb_handoff_record *rec, cb_recipient *r, int64_t due)
{
    int64_t t = ctx->occurred_ms ? ctx->occurred_ms : (int64_t)ctx->wall_ms;
    uint64_t late = t > due ? (uint64_t)(t - due) : 0;
    char span[32];
    cb_flag *f = cb_rule_find_open(ctx, ctx->target_seq, type, r->agency);
    if (f) {
        f->late_by_ms = late;
        char *how = late ? cb_explain("%s answered %s late", r->agency, cb_explain_span((int64_t)late, span))
                         : cb_explain("%s answered in time; the answer reached carebridge late", r->agency);
        cb_rule_resolve(ctx, f, how, false);
        free(how);
        cb_flag_free(&f);
        return;
    }
    if (!late || (r->raised & BIT(type)))
        return;
    if (!(f = timed_flag(ctx, type, rec, ctx->target_seq, r->agency, due)))
        return;
    word_late(f, ctx->cfg, rec, r->agency);
    f->late_by_ms = late;
    f->status = FLAG_RESOLVE;
    f->resolved_at = cb_explain_timestamp((int64_t)ctx->wall_ms);
    cb_rule_set(&f->resolved_by, cb_explain_dup(ctx->ev->event_id));
    cb_rule_set(&f->explanation,
                cb_explain("%s; %s answered %s late", f->explanation, r->agency, cb_explain_span((int64_t)late, span)));
    cb_rule_set(&f->resolution, NULL);
    r->raised |= BIT(type);
    cb_rule_raise(ctx, f, false);
}

static void resolve_at_risk(cb_rule_ctx *ctx, const char *agency, const char *how)
{
    cb_flag *f;
    while ((f = cb_rule_find_open(ctx, ctx->target_seq, TYPE(DISCHARGE_AT_RISK), agency))) {
        cb_rule_resolve(ctx, f, how, false);
        cb_flag_free(&f);
        if (agency)
            return;
    }
}

void cb_timed_response(cb_rule_ctx *ctx)
{
    const Carebridge__V1__Response *resp = ctx->ev->response;
    if (resp->status == RESPONSE(STATUS_UNSPECIFIED))
        return;
    cb_handoff_record *rec = cb_flagbook_record(ctx->fb, ctx->txn, ctx->target_seq);
    if (!rec)
        return;
    cb_recipient *r = NULL;
    size_t i = 0;
    while (i < rec->n_recipients && strcmp(rec->recipients[i]->agency, ctx->ev->from_agency))
        i++;
    if (i == rec->n_recipients) {
        cb_flagbook_free_record(&rec);
        return; /* an answer from an agency it was not sent to hands nothing over */
    }
    r = rec->recipients[i];
    uint64_t old_due = cb_timed_next_due(ctx->cfg, rec);
    int64_t t = ctx->occurred_ms ? ctx->occurred_ms : (int64_t)ctx->wall_ms;
    bool was_open = r->stage != STAGE(ACCEPTED);
    if (!r->acknowledged_ms) {
        settle(ctx, TYPE(NOT_ACKNOWLEDGED), rec, r, ack_due(ctx->cfg, rec));
        r->acknowledged_ms = t;
    }
    bool decides = resp->status == RESPONSE(ACCEPTED) || resp->status == RESPONSE(DECLINED) ||
                   resp->status == RESPONSE(REDIRECTED);
    if (decides && !r->decided_ms) {
        settle(ctx, TYPE(NOT_ANSWERED), rec, r, decide_due(ctx->cfg, rec));
        r->decided_ms = t;
        r->declined_without_alternative =
            resp->status == RESPONSE(DECLINED) && !resp->alternative[0] && !resp->redirect_to[0];
        r->redirected = resp->status == RESPONSE(REDIRECTED);
    }
    r->stage = cb_handoff_next(r->stage, resp->status);
    if (was_open && r->stage == STAGE(ACCEPTED)) {
        cb_rule_set(&r->accepted_by, cb_explain_dup(ctx->ev->event_id));
        r->resolved_ms = (int64_t)ctx->wall_ms;
        const char *agencies[] = {r->agency, rec->from_agency};
        cb_flagbook_index_flag(ctx->fb, ctx->txn, cb_flag_id(ctx->target_seq, (unsigned)i), TYPE(INTER_AGENCY_HANDOFF),
                               agencies, 2, false, true, (uint64_t)r->resolved_ms);
        note_handoff(ctx, rec, ctx->target_seq, i);
        char *how = cb_explain("%s accepted it", r->agency);
        resolve_at_risk(ctx, r->agency, how);
        free(how);
    }
    cb_flagbook_put_record(ctx->fb, ctx->txn, ctx->target_seq, rec, false, old_due, cb_timed_next_due(ctx->cfg, rec));
    cb_flagbook_free_record(&rec);
}

/* ---- an update to a discharge: confirmations and a new date */

void cb_timed_update(cb_rule_ctx *ctx)
{
    const Carebridge__V1__Update *u = ctx->ev->update;
    if (u->patch_case != CAREBRIDGE__V1__UPDATE__PATCH_DISCHARGE || !u->discharge)
        return;
    cb_handoff_record *rec = cb_flagbook_record(ctx->fb, ctx->txn, ctx->target_seq);
    if (!rec || !is_discharge(rec)) {
        cb_flagbook_free_record(&rec);
        return;
    }
    uint64_t old_due = cb_timed_next_due(ctx->cfg, rec);
    const Carebridge__V1__Discharge *d = u->discharge;
    if (d->planned_date[0] && strcmp(d->planned_date, rec->planned_date)) {
        char when[24];
        char *how = cb_explain("an update set a new planned date, %s", cb_explain_date(day_ms(d->planned_date), when));
        resolve_at_risk(ctx, NULL, how);
        free(how);
        cb_rule_set(&rec->planned_date, cb_explain_dup(d->planned_date));
        rec->raised &= ~BIT(TYPE(DISCHARGE_AT_RISK));
        for (size_t i = 0; i < rec->n_recipients; i++)
            rec->recipients[i]->raised &= ~BIT(TYPE(DISCHARGE_AT_RISK));
    }
    size_t before = rec->n_unconfirmed;
    note_items(rec, d);
    if (before && !rec->n_unconfirmed) {
        cb_flag *f = cb_rule_find_open(ctx, ctx->target_seq, TYPE(DISCHARGE_AT_RISK), rec->from_agency);
        /* The event's own is the one whose first agency is the sender. */
        if (f) {
            cb_rule_resolve(ctx, f, "an update confirmed everything", false);
            cb_flag_free(&f);
        }
    }
    cb_flagbook_put_record(ctx->fb, ctx->txn, ctx->target_seq, rec, false, old_due, cb_timed_next_due(ctx->cfg, rec));
    cb_flagbook_free_record(&rec);
}
