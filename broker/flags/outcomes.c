/* The rules about the person's own outcomes: recorded at all (not
 * service-led), and carried across every handover, discharge and closure
 * until achieved or no longer wanted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rule.h"

#define LIST_MAX 600

typedef Carebridge__V1__Outcome outcome_t;

/* How a flag's fields name an outcome: its ref when it has one. */
static const char *name_of(const outcome_t *o)
{
    return o->ref[0] ? o->ref : o->statement;
}

static bool ever_recorded(cb_rule_ctx *ctx)
{
    const cb_person_record *p = cb_rule_person(ctx);
    return p && p->outcomes_recorded;
}

/* ---- NO_PERSON_OUTCOMES */

void cb_check_no_outcomes(cb_rule_ctx *ctx)
{
    const cb_envelope *ev = ctx->ev;
    size_t n;
    cb_outcomes_of(ev, &n);
    bool referral = ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL;
    if (n || (!referral && ever_recorded(ctx)))
        return;
    cb_flag *f =
        cb_rule_flag(ctx, TYPE(NO_PERSON_OUTCOMES), ctx->seq, ctx->urgent, ev->event_id, ev->from_agency, NULL);
    if (!f)
        return;
    for (size_t i = 0; i < ev->n_to_agencies; i++)
        cb_rule_add_agency(f, ev->to_agencies[i]);
    char about[400];
    cb_explain_event(ev, about, sizeof about);
    if (referral)
        cb_rule_set(&f->explanation,
                    cb_explain("%s records nothing the person wants to achieve: it asks for %s, not what it is for",
                               about,
                               ev->referral->requested_service[0] ? ev->referral->requested_service : "a service"));
    else
        cb_rule_set(
            &f->explanation,
            cb_explain("%s carries no outcomes, and no agency has recorded what the person wants to achieve", about));
    bool closure = ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_CLOSURE;
    cb_rule_set(&f->resolution, closure ? cb_explain("an update to any of the person's events that adds their outcomes")
                                        : cb_explain("an update to this %s that adds the person's outcomes",
                                                     cb_explain_body(ev->body_case)));
    cb_rule_raise(ctx, f, closure); /* no update can patch a closure: it is resolved through the person */
}

/* ---- OUTCOMES_NOT_CARRIED */

void cb_check_outcomes_carried(cb_rule_ctx *ctx)
{
    const cb_envelope *ev = ctx->ev;
    size_t n_here;
    outcome_t *const *here = cb_outcomes_of(ev, &n_here);
    /* Every outcome recorded before, with the state the latest mention gave it. */
    const cb_person_record *p = cb_rule_person(ctx);
    outcome_t *const *earlier = p ? p->outcomes : NULL;
    size_t n = p ? p->n_outcomes : 0;
    cb_flag *f = NULL;
    for (size_t j = 0; j < n; j++) {
        if (earlier[j]->status != CAREBRIDGE__V1__OUTCOME__STATUS__ACTIVE || earlier[j]->for_carer)
            continue;
        bool carried = false;
        for (size_t k = 0; k < n_here && !carried; k++)
            carried = cb_same_outcome(earlier[j], here[k]);
        if (carried)
            continue;
        if (!f && !(f = cb_rule_flag(ctx, TYPE(OUTCOMES_NOT_CARRIED), ctx->seq, ctx->urgent, ev->event_id,
                                     ev->from_agency, NULL)))
            return;
        cb_rule_add_field(f, name_of(earlier[j]));
    }
    if (!f)
        return;
    for (size_t i = 0; i < ev->n_to_agencies; i++)
        cb_rule_add_agency(f, ev->to_agencies[i]);
    char about[400], list[LIST_MAX];
    cb_explain_event(ev, about, sizeof about);
    cb_explain_list(f->fields, f->n_fields, list, sizeof list);
    cb_rule_set(&f->explanation, cb_explain("%s leaves out %zu outcome%s recorded earlier for the person: %s", about,
                                            f->n_fields, f->n_fields == 1 ? "" : "s", list));
    cb_rule_set(&f->resolution,
                cb_explain("an update to this %s that carries them, or marks them achieved or no longer wanted",
                           cb_explain_body(ev->body_case)));
    cb_rule_raise(ctx, f, false);
}

/* ---- what an update's outcomes resolve */

void cb_resolve_outcomes_by_update(cb_rule_ctx *ctx)
{
    size_t n;
    outcome_t *const *added = cb_outcomes_of(ctx->ev, &n);
    if (!n)
        return;
    char when[24];
    cb_explain_date(ctx->occurred_ms, when);
    char *how = cb_explain("the update of %s from %s added the person's outcomes", when, ctx->ev->from_agency);
    cb_flag *f = cb_rule_find_open(ctx, ctx->target_seq, TYPE(NO_PERSON_OUTCOMES), NULL);
    if (f)
        cb_rule_resolve(ctx, f, how, ctx->target->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_CLOSURE);
    cb_flag_free(&f);
    /* A closure's: no update can patch one, so any of the person's does. */
    cb_flag *open[32];
    size_t k = cb_rule_person_open(ctx, BIT(TYPE(NO_PERSON_OUTCOMES)), open, 32);
    for (size_t i = 0; i < k; i++) {
        cb_rule_resolve(ctx, open[i], how, true);
        cb_flag_free(&open[i]);
    }
    free(how);

    if (!(f = cb_rule_find_open(ctx, ctx->target_seq, TYPE(OUTCOMES_NOT_CARRIED), NULL)))
        return;
    size_t before = f->n_fields;
    for (size_t i = f->n_fields; i-- > 0;)
        for (size_t j = 0; j < n; j++)
            if (cb_outcome_named(f->fields[i], added[j])) {
                cb_rule_drop_field(f, i);
                break;
            }
    if (!f->n_fields) {
        char *carried = cb_explain("the update of %s from %s carried them", when, ctx->ev->from_agency);
        cb_rule_resolve(ctx, f, carried, false);
        free(carried);
    } else if (f->n_fields < before) {
        char list[LIST_MAX];
        cb_explain_list(f->fields, f->n_fields, list, sizeof list);
        cb_rule_set(&f->explanation, cb_explain("%s; still left out: %s", f->explanation, list));
        cb_rule_restate(ctx, f);
    }
    cb_flag_free(&f);
}
