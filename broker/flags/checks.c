/* The rules about what an event says: missing information, an identity
 * that cannot be linked, a decline with nothing offered instead, a person
 * bounced between agencies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cb_check.h"
#include "cb_fields.h"
#include "handoff.h"
#include "rule.h"

#define LIST_MAX 600

/* "the referral of 2 Dec from health to social-care", for explanations. */
/* ---- MISSING_INFORMATION */

static bool applies(const cb_config *cfg, const cb_required *q, const cb_envelope *ev)
{
    if (strcmp(q->event, cb_explain_body(ev->body_case)))
        return false;
    if (!q->recipient_kind)
        return true;
    for (size_t i = 0; i < ev->n_to_agencies; i++) {
        const cb_agency *a = cb_config_agency(cfg, ev->to_agencies[i]);
        if (a && a->kind == q->recipient_kind)
            return true;
    }
    return false;
}

static void word_missing(cb_flag *f, const cb_envelope *ev)
{
    char about[400], fields[LIST_MAX];
    cb_explain_event(ev, about, sizeof about);
    cb_explain_list(f->fields, f->n_fields, fields, sizeof fields);
    cb_rule_set(&f->explanation, cb_explain("%s lacks %s", about, fields));
    cb_rule_set(&f->resolution,
                cb_explain("an update to this %s that supplies %s", cb_explain_body(ev->body_case), fields));
}

void cb_check_missing(cb_rule_ctx *ctx)
{
    const cb_config *cfg = ctx->rules->cfg;
    const cb_envelope *ev = ctx->ev;
    cb_flag *f = NULL;
    for (unsigned q = 0; q < ctx->cfg->n_required; q++) {
        const cb_required *req = &ctx->cfg->required[q];
        if (!applies(cfg, req, ev))
            continue;
        for (unsigned k = 0; k < req->n_fields; k++) {
            if (cb_field_path_holds(&ev->base, &ctx->rules->required[q][k]))
                continue;
            if (!f && !(f = cb_rule_flag(ctx, TYPE(MISSING_INFORMATION), ctx->seq, ctx->urgent, ev->event_id,
                                         ev->from_agency, NULL)))
                return;
            for (size_t i = 0; i < ev->n_to_agencies; i++)
                cb_rule_add_agency(f, ev->to_agencies[i]); /* who needs it, after who must supply it */
            bool listed = false;
            for (size_t i = 0; i < f->n_fields; i++)
                listed |= !strcmp(f->fields[i], req->fields[k]);
            if (!listed)
                cb_rule_add_field(f, req->fields[k]);
        }
    }
    if (!f)
        return;
    word_missing(f, ev);
    cb_rule_raise(ctx, f, false);
}

/* An update merged into the event it corrects supplies what it supplies. */
static bool merge_update(cb_envelope *target, const Carebridge__V1__Update *upd)
{
    const ProtobufCFieldDescriptor *body =
        protobuf_c_message_descriptor_get_field(&carebridge__v1__envelope__descriptor, target->body_case);
    const ProtobufCFieldDescriptor *patch =
        protobuf_c_message_descriptor_get_field(&carebridge__v1__update__descriptor, upd->patch_case);
    if (!body || !patch || body->descriptor != patch->descriptor)
        return false;
    ProtobufCMessage **dst = (ProtobufCMessage **)((char *)target + body->offset);
    const ProtobufCMessage *src = *(ProtobufCMessage *const *)((const char *)upd + patch->offset);
    return *dst && src && cb_merge(dst, src);
}

void cb_resolve_by_update(cb_rule_ctx *ctx)
{
    cb_flag *f = cb_rule_find_open(ctx, ctx->target_seq, TYPE(MISSING_INFORMATION), NULL);
    if (!f)
        return;
    if (merge_update(ctx->target, ctx->ev->update)) {
        size_t before = f->n_fields;
        for (size_t i = f->n_fields; i-- > 0;)
            if (cb_field_path_present(&ctx->target->base, f->fields[i]))
                cb_rule_drop_field(f, i);
        if (!f->n_fields) {
            char when[24];
            cb_explain_date(ctx->occurred_ms, when);
            char *how = cb_explain("the update of %s from %s supplied what was missing", when, ctx->ev->from_agency);
            cb_rule_resolve(ctx, f, how, false);
            free(how);
        } else if (f->n_fields < before) {
            word_missing(f, ctx->target);
            cb_rule_restate(ctx, f);
        }
    }
    cb_flag_free(&f);
}

/* ---- IDENTITY_UNLINKABLE */

void cb_check_unlinkable(cb_rule_ctx *ctx)
{
    const cb_envelope *ev = ctx->ev;
    const Carebridge__V1__Person *p = ev->person;
    if (p && (cb_nhs_number_valid(p->nhs_number) || cb_chi_number_valid(p->chi_number)))
        return;
    cb_flag *f =
        cb_rule_flag(ctx, TYPE(IDENTITY_UNLINKABLE), ctx->seq, ctx->urgent, ev->event_id, ev->from_agency, NULL);
    if (!f)
        return;
    const char *has = p && p->nhs_number[0]   ? "its NHS number fails the format or check-digit test"
                      : p && p->chi_number[0] ? "its CHI number fails the date or check-digit test"
                                              : "it has only local identifiers";
    char about[400];
    cb_explain_event(ev, about, sizeof about);
    cb_rule_set(&f->explanation,
                (cb_explain("%s carries no NHS or CHI number that passes its check (%s), so it cannot be "
                            "joined to the rest of the person's journey",
                            about, has)));
    cb_rule_set(&f->resolution,
                cb_explain("%s corrects the person's NHS or CHI number in its record", ev->from_agency));
    cb_rule_add_field(f, p && p->chi_number[0] && !p->nhs_number[0] ? "person.chiNumber" : "person.nhsNumber");
    cb_rule_raise(ctx, f, false);
}

/* ---- DECLINED_WITHOUT_ALTERNATIVE */

void cb_check_declined(cb_rule_ctx *ctx)
{
    const cb_envelope *ev = ctx->ev;
    const Carebridge__V1__Response *resp = ev->response;
    if (resp->status != RESPONSE(DECLINED) || resp->alternative[0] || resp->redirect_to[0] || !ctx->target)
        return;
    const cb_person_record *p = cb_rule_person(ctx);
    for (size_t i = 0; p && i < p->n_accepted_by; i++)
        if (strcmp(p->accepted_by[i], ev->from_agency))
            return; /* another agency has the person */
    cb_flag *f = cb_rule_flag(ctx, TYPE(DECLINED_WITHOUT_ALTERNATIVE), ctx->seq, ctx->urgent, ev->event_id,
                              ctx->target->from_agency, ev->from_agency, NULL);
    if (!f)
        return;
    const char *decliner = ev->from_agency;
    cb_rule_pair(f, ctx->target->from_agency, &decliner, 1);
    char when[24];
    cb_explain_date(cb_occurred_ms(ctx->target), when);
    cb_rule_set(&f->explanation,
                cb_explain("%s declined the %s of %s from %s with no alternative; no other agency "
                           "has accepted the person",
                           ev->from_agency, cb_explain_body(ctx->target->body_case), when, ctx->target->from_agency));
    cb_rule_set(&f->resolution, cb_explain("any agency accepts a later referral or handover for the person"));
    cb_rule_raise(ctx, f, true);
}

/* ---- BOUNCED */

#define AGENCIES_MAX 64

typedef struct {
    bool found;
} any_arg;

static bool any_open(void *arg, cb_flag **f)
{
    any_arg *a = arg;
    a->found |= (*f)->type == TYPE(BOUNCED) && (*f)->status == FLAG_OPEN;
    return !a->found;
}

static bool bounced_already(cb_rule_ctx *ctx)
{
    any_arg a = {false};
    cb_flagbook_person_flags(ctx->fb, ctx->txn, ctx->person_hash, any_open, &a);
    return a.found;
}

void cb_check_bounced(cb_rule_ctx *ctx)
{
    const cb_envelope *ev = ctx->ev;
    if (!ctx->person_hash || !cb_passes_on(ev))
        return;
    const cb_person_record *p = cb_rule_person(ctx);
    int64_t start = ctx->occurred_ms - (int64_t)ctx->cfg->bounce_days * 86400000;
    if (!p || (p->accepted_ms >= start && p->accepted_ms <= ctx->occurred_ms))
        return; /* an agency took the person on in the window: not bounced */
    /* Who passed the person on in the window, this event's sender included. */
    const char *passers[AGENCIES_MAX];
    int64_t when[AGENCIES_MAX];
    size_t n = 0;
    bool sender_listed = false;
    for (size_t i = 0; i < p->n_passed_on && n < AGENCIES_MAX - 1; i++) {
        const Carebridge__V1__PersonRecord__PassedOn *e = p->passed_on[i];
        if (e->at_ms < start || e->at_ms > ctx->occurred_ms)
            continue;
        sender_listed |= !strcmp(e->agency, ev->from_agency);
        passers[n] = e->agency, when[n++] = e->at_ms;
    }
    if (!sender_listed)
        passers[n] = ev->from_agency, when[n++] = ctx->occurred_ms;
    /* Passed back: to an agency that passed the person on in the window. */
    const char *to[AGENCIES_MAX];
    size_t n_to = 0;
    if (ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE && ev->response->redirect_to[0])
        to[n_to++] = ev->response->redirect_to;
    for (size_t i = 0; (1u << ev->body_case) & HANDED_OFF && i < ev->n_to_agencies && n_to < AGENCIES_MAX; i++)
        to[n_to++] = ev->to_agencies[i];
    char *why = NULL;
    for (size_t i = 0; i < n_to && !why; i++)
        for (size_t k = 0; k < n && !why; k++)
            if (!strcmp(to[i], passers[k]) && strcmp(to[i], ev->from_agency)) {
                char date[24];
                why = cb_explain("%s passes the person back to %s, which passed them on on %s, and no agency has "
                                 "accepted them since",
                                 ev->from_agency, to[i], cb_explain_date(when[k], date));
            }
    if (!why && n >= ctx->cfg->bounce_agencies) {
        char list[LIST_MAX];
        cb_explain_list((char *const *)passers, n, list, sizeof list);
        why = cb_explain("The person has been passed on by %zu agencies within %u days (%s) and none has accepted them",
                         n, ctx->cfg->bounce_days, list);
    }
    if (!why || bounced_already(ctx)) {
        free(why);
        return;
    }
    cb_flag *f = cb_rule_flag(ctx, TYPE(BOUNCED), ctx->seq, ctx->urgent, ev->event_id, NULL);
    if (!f) {
        free(why);
        return;
    }
    for (size_t i = 0; i < n_to; i++)
        cb_rule_add_field(f, to[i]); /* where the person was passed to */
    cb_rule_pair(f, ev->from_agency, to, n_to);
    for (size_t i = 0; i < n_to + n; i++)
        cb_rule_add_agency(f, i < n_to ? to[i] : passers[i - n_to]);
    cb_rule_set(&f->explanation, why); /* it may begin with an agency id, which is written as configured */
    cb_rule_set(&f->resolution, cb_explain("an agency accepts the person"));
    cb_rule_raise(ctx, f, true);
}

/* ---- an accept: the person has an agency again */

typedef struct {
    cb_flag *found[32];
    size_t n;
    uint32_t types;
} collect_arg;

static bool collect_types(void *arg, cb_flag **f)
{
    collect_arg *a = arg;
    if ((*f)->status != FLAG_OPEN || !(a->types & BIT((*f)->type)))
        return true;
    a->found[a->n++] = *f;
    *f = NULL;
    return a->n < sizeof a->found / sizeof a->found[0];
}

size_t cb_rule_person_open(cb_rule_ctx *ctx, uint32_t types, cb_flag **out, size_t cap)
{
    collect_arg a = {.types = types};
    if (ctx->person_hash)
        cb_flagbook_person_flags(ctx->fb, ctx->txn, ctx->person_hash, collect_types, &a);
    size_t n = a.n < cap ? a.n : cap;
    memcpy(out, a.found, n * sizeof *out);
    for (size_t i = n; i < a.n; i++)
        cb_flag_free(&a.found[i]);
    return n;
}

void cb_resolve_by_accept(cb_rule_ctx *ctx)
{
    uint32_t types = BIT(TYPE(BOUNCED));
    if (ctx->target->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL ||
        ctx->target->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_HANDOVER)
        types |= BIT(TYPE(DECLINED_WITHOUT_ALTERNATIVE));
    cb_flag *open[32];
    size_t n = cb_rule_person_open(ctx, types, open, 32);
    char when[24];
    cb_explain_date(ctx->occurred_ms, when);
    char *how = cb_explain("%s accepted the person on %s", ctx->ev->from_agency, when);
    for (size_t i = 0; i < n; i++) {
        cb_rule_resolve(ctx, open[i], how, true);
        cb_flag_free(&open[i]);
    }
    free(how);
}
