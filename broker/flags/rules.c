/* The rule table, one event's context, and the steps every rule raises and
 * resolves with. What each rule checks is in checks.c, outcomes.c and
 * timed.c; this file decides which run and keeps their bookkeeping in one
 * place. */
#include "rule.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "intake.h"
#include "keys.h"

/* The event-driven rules. A body may be judged by several; each gap raises
 * one flag (README, "Flags"). The time-based ones (NOT_ACKNOWLEDGED,
 * NOT_ANSWERED, DISCHARGE_AT_RISK) have no row: the handoff record the
 * INTER_AGENCY_HANDOFF row writes holds their deadlines. */
static const cb_rule table[] = {
    {TYPE(IDENTITY_UNLINKABLE), CAREBRIDGE__V1__FLAG__SEVERITY__MEDIUM, HANDED_OFF | BODY(CLOSURE),
     cb_check_unlinkable},
    {TYPE(MISSING_INFORMATION), CAREBRIDGE__V1__FLAG__SEVERITY__MEDIUM, HANDED_OFF, cb_check_missing},
    {TYPE(INTER_AGENCY_HANDOFF), CAREBRIDGE__V1__FLAG__SEVERITY__LOW, HANDED_OFF, cb_timed_record},
    {TYPE(NO_PERSON_OUTCOMES), CAREBRIDGE__V1__FLAG__SEVERITY__LOW, BODY(REFERRAL) | BODY(HANDOVER) | BODY(CLOSURE),
     cb_check_no_outcomes},
    {TYPE(OUTCOMES_NOT_CARRIED), CAREBRIDGE__V1__FLAG__SEVERITY__MEDIUM,
     BODY(DISCHARGE) | BODY(HANDOVER) | BODY(CLOSURE), cb_check_outcomes_carried},
    {TYPE(DECLINED_WITHOUT_ALTERNATIVE), CAREBRIDGE__V1__FLAG__SEVERITY__HIGH, BODY(RESPONSE), cb_check_declined},
    {TYPE(BOUNCED), CAREBRIDGE__V1__FLAG__SEVERITY__HIGH, HANDED_OFF | BODY(RESPONSE), cb_check_bounced},
};

/* Severity before urgency for every type, the time-based ones included. */
static Carebridge__V1__Flag__Severity severity_of(cb_flag_type type)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].type == type)
            return table[i].severity;
    return type == TYPE(DISCHARGE_AT_RISK) ? CAREBRIDGE__V1__FLAG__SEVERITY__HIGH
                                           : CAREBRIDGE__V1__FLAG__SEVERITY__MEDIUM;
}

const char *cb_flag_type_name(unsigned type)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&carebridge__v1__flag__type__descriptor, (int)type);
    return v ? v->name : "TYPE_UNSPECIFIED";
}

cb_rules *cb_rules_new(const cb_config *cfg, cb_store *store, cb_flagbook fb)
{
    cb_rules *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    *r = (cb_rules){.cfg = cfg, .store = store, .fb = fb};
    r->fb.deltas = &r->open_deltas;
    const cb_flags_config *f = &cfg->flags;
    r->newest = calloc(PERSON_CACHE, sizeof *r->newest);
    r->kept = cb_kept_new(KEPT_RECORDS);
    r->required = calloc(f->n_required + 1, sizeof *r->required);
    bool ok = r->newest && r->kept && r->required;
    for (unsigned i = 0; ok && i < f->n_required; i++) {
        ok = (r->required[i] = calloc(f->required[i].n_fields + 1, sizeof *r->required[i])) != NULL;
        for (unsigned k = 0; ok && k < f->required[i].n_fields; k++)
            cb_field_path_compile(&carebridge__v1__envelope__descriptor, f->required[i].fields[k],
                                  &r->required[i][k]); /* checked when loaded (config.c) */
    }
    if (!ok)
        cb_rules_free(&r);
    return r;
}

void cb_rules_free(cb_rules **r_p)
{
    cb_rules *r = *r_p;
    if (r) {
        for (unsigned i = 0; r->required && i < r->cfg->flags.n_required; i++)
            free(r->required[i]);
        free(r->required);
        cb_kept_free(&r->kept);
        free(r->newest);
        free(r);
    }
    *r_p = NULL;
}

void cb_rules_forget(cb_rules *r)
{
    memset(r->newest, 0, PERSON_CACHE * sizeof *r->newest);
    cb_kept_clear(r->kept);
    cb_flagbook_forget(&r->fb);
}

void cb_rules_flush(cb_rules *r, cb_txn *txn)
{
    cb_flagbook_flush(&r->fb, txn);
}

void cb_flag_feed_clear(cb_flag_feed *feed)
{
    for (size_t i = 0; i < feed->n; i++) {
        free(feed->notes[i].frame);
        free(feed->notes[i].topics);
    }
    feed->n = 0;
}

/* ---- the steps */

void cb_rule_set(char **field, char *value)
{
    if (*field && *field != protobuf_c_empty_string)
        free(*field);
    *field = value ? value : (char *)protobuf_c_empty_string;
}

void cb_rule_add_field(cb_flag *f, const char *s)
{
    char **fields = realloc(f->fields, (f->n_fields + 1) * sizeof *fields);
    if (!fields)
        return;
    f->fields = fields;
    f->fields[f->n_fields++] = cb_explain_dup(s);
}

void cb_rule_drop_field(cb_flag *f, size_t i)
{
    cb_rule_set(&f->fields[i], NULL);
    memmove(&f->fields[i], &f->fields[i + 1], (f->n_fields - i - 1) * sizeof *f->fields);
    f->n_fields--;
}

void cb_rule_add_agency(cb_flag *f, const char *agency)
{
    for (size_t i = 0; i < f->n_agencies; i++)
        if (!strcmp(f->agencies[i], agency))
            return;
    char **agencies = realloc(f->agencies, (f->n_agencies + 1) * sizeof *agencies);
    if (agencies) {
        f->agencies = agencies;
        f->agencies[f->n_agencies++] = cb_explain_dup(agency);
    }
}

cb_flag *cb_rule_flag(cb_rule_ctx *ctx, cb_flag_type type, uint64_t seq, bool urgent, const char *event_id, ...)
{
    cb_flag *f = malloc(sizeof *f);
    if (!f)
        return NULL;
    carebridge__v1__flag__init(f);
    f->id = cb_flag_id(seq, cb_flagbook_next_number(ctx->fb, ctx->txn, seq));
    f->type = type;
    f->severity = severity_of(type);
    if (urgent && f->severity < CAREBRIDGE__V1__FLAG__SEVERITY__HIGH)
        f->severity++;
    f->status = FLAG_OPEN;
    f->event_ids = malloc(sizeof *f->event_ids);
    f->event_seqs = malloc(sizeof *f->event_seqs);
    if (f->event_ids && f->event_seqs) {
        f->event_ids[f->n_event_ids++] = cb_explain_dup(event_id);
        f->event_seqs[f->n_event_seqs++] = seq;
    }
    va_list ap;
    va_start(ap, event_id); /* after a named string: a bool would be promoted, which va_start may not follow */
    for (const char *a; (a = va_arg(ap, const char *));)
        cb_rule_add_agency(f, a);
    va_end(ap);
    f->person = cb_explain_dup(ctx->person);
    f->raised_at = cb_explain_timestamp((int64_t)ctx->wall_ms);
    if (ctx->ev)
        cb_rule_pair(f, ctx->ev->from_agency, (const char *const *)ctx->ev->to_agencies, ctx->ev->n_to_agencies);
    return f;
}

void cb_rule_pair(cb_flag *f, const char *from, const char *const *to, size_t n)
{
    for (size_t i = 0; i < f->n_to_agencies; i++)
        cb_rule_set(&f->to_agencies[i], NULL);
    free(f->to_agencies);
    f->n_to_agencies = 0;
    cb_rule_set(&f->from_agency, cb_explain_dup(from));
    f->to_agencies = n ? malloc(n * sizeof *f->to_agencies) : NULL;
    for (size_t i = 0; f->to_agencies && i < n; i++)
        f->to_agencies[f->n_to_agencies++] = cb_explain_dup(to[i]);
}

void cb_rule_note(cb_rule_ctx *ctx, const cb_flag *f)
{
    cb_flag_feed *feed = ctx->feed;
    if (!feed || !feed->wanted)
        return;
    if (feed->n == feed->cap) {
        size_t cap = feed->cap ? 2 * feed->cap : 16;
        cb_flag_note *notes = realloc(feed->notes, cap * sizeof *notes);
        if (!notes)
            return;
        feed->notes = notes, feed->cap = cap;
    }
    cb_frame fr = CAREBRIDGE__V1__FRAME__INIT;
    fr.kind_case = CAREBRIDGE__V1__FRAME__KIND_FLAG;
    fr.flag = (cb_flag *)f;
    cb_flag_note *n = &feed->notes[feed->n];
    size_t cap = 32 + f->n_agencies * 96;
    n->topics = malloc(cap);
    if (!n->topics || !(n->len = cb_pack(&fr.base, &n->frame))) {
        free(n->topics);
        return;
    }
    size_t used = 0;
    const char *type = cb_flag_type_name(f->type);
    for (size_t i = 0; i < f->n_agencies; i++)
        used += (size_t)snprintf(n->topics + used, cap - used, "flag.%s.%s\n", f->agencies[i], type);
    snprintf(n->topics + used, cap - used, "flag.*.%s", type);
    feed->n++;
}

void cb_rule_raise(cb_rule_ctx *ctx, cb_flag *f, bool by_person)
{
    if (!f)
        return;
    cb_flagbook_add(ctx->fb, ctx->txn, f, by_person ? ctx->person_hash : 0);
    ctx->raised |= BIT(f->type);
    cb_log(CB_LOG_INFO, "flag raised id=%llu type=%s person=%s seq=%llu%s", (unsigned long long)f->id,
           cb_flag_type_name(f->type), f->person, (unsigned long long)cb_flag_seq(f->id),
           f->status == FLAG_RESOLVE ? " resolved=at-once" : "");
    cb_rule_note(ctx, f);
    cb_flag_free(&f);
}

void cb_rule_resolve(cb_rule_ctx *ctx, cb_flag *f, const char *how, bool by_person)
{
    f->status = FLAG_RESOLVE;
    f->resolved_at = cb_explain_timestamp((int64_t)ctx->wall_ms);
    cb_rule_set(&f->resolved_by, cb_explain_dup(ctx->ev ? ctx->ev->event_id : ""));
    if (how)
        cb_rule_set(&f->explanation, cb_explain("%s; %s", f->explanation, how));
    cb_rule_set(&f->resolution, NULL);
    cb_flagbook_update(ctx->fb, ctx->txn, f, true, by_person ? ctx->person_hash : 0);
    cb_log(CB_LOG_INFO, "flag resolved id=%llu type=%s person=%s", (unsigned long long)f->id,
           cb_flag_type_name(f->type), f->person);
    cb_rule_note(ctx, f);
}

void cb_rule_restate(cb_rule_ctx *ctx, cb_flag *f)
{
    cb_flagbook_update(ctx->fb, ctx->txn, f, true, 0);
}

typedef struct {
    cb_flag_type type;
    const char *agency;
    cb_flag *found;
} find_arg;

static bool match_open(void *arg, cb_flag **fp)
{
    find_arg *a = arg;
    cb_flag *f = *fp;
    if (f->type != a->type || f->status != FLAG_OPEN ||
        (a->agency && (!f->n_agencies || strcmp(f->agencies[0], a->agency))))
        return true;
    a->found = f; /* the caller's now */
    *fp = NULL;
    return false;
}

cb_flag *cb_rule_find_open(cb_rule_ctx *ctx, uint64_t seq, cb_flag_type type, const char *agency)
{
    find_arg a = {type, agency, NULL};
    cb_flagbook_event_flags(ctx->fb, ctx->txn, seq, NULL, match_open, &a);
    return a.found;
}

/* ---- the entry points */

/* The person by their first identifier (NHS, else CHI, else the first local one). */
static uint64_t person_hash(const cb_rules *r, const Carebridge__V1__Person *p)
{
    cb_person_key keys[1];
    if (!p || !cb_intake_person_keys(p, keys, 1))
        return 0;
    uint64_t h = cb_store_hash(r->store, keys[0], strlen(keys[0]));
    return h ? h : 1;
}

static void begin(cb_rule_ctx *ctx, const cb_rules *r, cb_txn *txn, uint64_t wall_ms, cb_flag_feed *feed)
{
    *ctx = (cb_rule_ctx){.rules = r, .cfg = &r->cfg->flags, .fb = &r->fb, .txn = txn, .wall_ms = wall_ms, .feed = feed};
    strcpy(ctx->person, "p-none");
}

static void end(cb_rule_ctx *ctx)
{
    cb_rule_person_free(ctx);
}

static bool urgent(const cb_envelope *ev)
{
    return ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL &&
           ev->referral->urgency >= CAREBRIDGE__V1__REFERRAL__URGENCY__URGENT;
}

/* The event an answer names, decoded; seq 0 when it names none stored. */
static cb_envelope *target_of(cb_rule_ctx *ctx, uint64_t *seq)
{
    uint8_t digest[CB_DIGEST_BYTES];
    const uint8_t *bytes;
    size_t len;
    *seq = 0;
    if (!ctx->ev->correlation_id[0] || !cb_store_find_id(ctx->txn, ctx->ev->correlation_id, seq, digest) ||
        !cb_store_get_event(ctx->txn, *seq, &bytes, &len))
        return NULL;
    return cb_envelope_decode(bytes, len);
}

uint32_t cb_rules_event(cb_rules *r, cb_txn *txn, const cb_envelope *ev, const char *person, uint64_t seq,
                        uint64_t wall_ms, cb_flag_feed *feed)
{
    if (!r->cfg->flags.enabled)
        return 0;
    cb_rule_ctx ctx;
    begin(&ctx, r, txn, wall_ms, feed);
    ctx.ev = ev;
    ctx.seq = seq;
    ctx.occurred_ms = cb_occurred_ms(ev);
    ctx.urgent = urgent(ev);
    snprintf(ctx.person, sizeof ctx.person, "%s", person);
    ctx.person_hash = person_hash(r, ev->person);

    uint32_t body = 1u << ev->body_case;
    if (body & (BODY(RESPONSE) | BODY(UPDATE)))
        ctx.target = target_of(&ctx, &ctx.target_seq);
    if (ctx.target && ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE)
        ctx.urgent = urgent(ctx.target); /* an answer is as urgent as what it answers */
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].bodies & body)
            table[i].check(&ctx);

    /* Answers: what they resolve in the event they name; a response to an
     * event not yet stored waits for it (agencies are not ordered). */
    if (!ctx.target && ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE && ev->correlation_id[0]) {
        cb_key k;
        if (cb_key_make(&k, "SQ", ev->correlation_id, seq))
            cb_kv_put(txn, r->fb.early, k.b, k.len, "", 0);
    }
    if (ctx.target && ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE) {
        cb_timed_response(&ctx);
        if (ev->response->status == RESPONSE(ACCEPTED))
            cb_resolve_by_accept(&ctx);
    } else if (ctx.target && ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_UPDATE) {
        cb_resolve_outcomes_by_update(&ctx);
        cb_timed_update(&ctx);
        cb_resolve_by_update(&ctx); /* merges the update into the target: last */
    }
    cb_rule_person_note(&ctx);
    cb_envelope_free(&ctx.target);
    end(&ctx);
    return ctx.raised;
}

typedef struct {
    uint64_t seqs[64];
    size_t n;
} early_seqs;

static bool collect_early(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    (void)val, (void)len;
    early_seqs *e = arg;
    const char *id;
    uint64_t seq;
    if (cb_key_parse(key, key_len, "SQ", &id, &seq))
        e->seqs[e->n++] = seq;
    return e->n < sizeof e->seqs / sizeof e->seqs[0];
}

void cb_rules_early_answers(cb_rule_ctx *ctx)
{
    cb_key prefix, k;
    early_seqs e = {.n = 0};
    if (!cb_key_make(&prefix, "S", ctx->ev->event_id))
        return;
    cb_kv_scan(ctx->txn, ctx->fb->early, prefix.b, prefix.len, NULL, 0, collect_early, &e);
    for (size_t i = 0; i < e.n; i++) {
        const uint8_t *bytes;
        size_t len;
        cb_envelope *resp =
            cb_store_get_event(ctx->txn, e.seqs[i], &bytes, &len) ? cb_envelope_decode(bytes, len) : NULL;
        if (resp && resp->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE) {
            /* As if it arrived now, answering this event: with its own time and sender. */
            cb_rule_ctx sub = *ctx;
            sub.ev = resp;
            sub.seq = e.seqs[i];
            sub.occurred_ms = cb_occurred_ms(resp);
            sub.target = (cb_envelope *)ctx->ev;
            sub.target_seq = ctx->seq;
            cb_timed_response(&sub);
            if (resp->response->status == RESPONSE(ACCEPTED))
                cb_resolve_by_accept(&sub);
            ctx->person_rec = sub.person_rec;
            ctx->person_kept = sub.person_kept;
        }
        cb_envelope_free(&resp);
        cb_key_make(&k, "SQ", ctx->ev->event_id, e.seqs[i]);
        cb_kv_del(ctx->txn, ctx->fb->early, k.b, k.len);
    }
}

bool cb_rules_tick(cb_rules *r, cb_txn *txn, uint64_t wall_ms, size_t budget, cb_flag_feed *feed)
{
    if (!r->cfg->flags.enabled || !budget)
        return false;
    uint64_t seqs[64], due[64];
    size_t cap = budget < 64 ? budget : 64;
    size_t n = cb_flagbook_due(&r->fb, txn, wall_ms, seqs, due, cap);
    for (size_t i = 0; i < n; i++) {
        cb_rule_ctx ctx;
        begin(&ctx, r, txn, wall_ms, feed);
        cb_timed_due(&ctx, seqs[i], due[i]);
        end(&ctx);
    }
    return n == cap;
}

void cb_rules_expire_event(cb_rules *r, cb_txn *txn, uint64_t seq, const cb_envelope *ev)
{
    cb_handoff_record *rec = cb_flagbook_record(&r->fb, txn, seq);
    uint64_t due = rec ? cb_timed_next_due(&r->cfg->flags, rec) : 0;
    if (due)
        cb_flagbook_drop_due(&r->fb, txn, seq, due);
    bool answers = ev && ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE && ev->correlation_id[0];
    uint64_t person = ev ? person_hash(r, ev->person) : 0;
    cb_flagbook_forget_event(&r->fb, txn, seq, rec, person, answers ? ev->correlation_id : NULL);
    cb_flagbook_free_record(&rec);
    /* The person's record as kept may be the one just removed. (The cache of
     * newest seqs needs nothing: a record that is not there is looked for
     * in the index, which finds none below the floor.) */
    if (person)
        cb_kept_drop(r->kept, person);
}

size_t cb_rules_expire_closed(cb_rules *r, cb_txn *txn, uint64_t before_ms, size_t budget, bool *more)
{
    return cb_flagbook_expire_closed(&r->fb, txn, before_ms, budget, more);
}

typedef struct {
    cb_flag **out;
    size_t n, cap;
} open_arg;

static bool keep_open(void *arg, cb_flag **f)
{
    open_arg *a = arg;
    if ((*f)->status != FLAG_OPEN)
        return true;
    a->out[a->n++] = *f;
    *f = NULL;
    return a->n < a->cap;
}

size_t cb_rules_open_flags(const cb_rules *r, cb_txn *txn, uint64_t seq, cb_flag **out, size_t cap)
{
    if (!cap)
        return 0;
    /* Its INTER_AGENCY_HANDOFF flags aside: the delivery is that handoff, and
     * reading them back from the record cost a tenth of the store thread's
     * time with a receiver draining its queue. */
    open_arg a = {out, 0, cap};
    cb_flagbook_event_flags(&r->fb, txn, seq, NULL, keep_open, &a);
    return a.n;
}
