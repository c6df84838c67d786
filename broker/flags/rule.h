/* What the rules share inside the flags module: one event's context, the
 * table a rule is a row of, and the steps every rule raises and resolves
 * flags with. Not for use outside broker/flags. */
#ifndef CB_RULE_H
#define CB_RULE_H

#include "cb_fields.h"
#include "explain.h"
#include "kept.h"
#include "log.h"
#include "rules.h"

#define BIT(type) (1u << (type))

typedef Carebridge__V1__HandoffRecord__Recipient cb_recipient;
typedef Carebridge__V1__PersonRecord cb_person_record;

#define PERSON_CACHE (1u << 20) /* people whose newest record the rules remember, */
#define PERSON_WAYS  4          /* in sets of four */
#define KEPT_RECORDS (1u << 15) /* people whose record they keep decoded */

struct cb_rules {
    const cb_config *cfg;
    cb_store *store;
    cb_flagbook fb; /* its deltas are open_deltas */
    cb_open_deltas open_deltas;
    /* cfg->flags.required's paths, resolved once: [entry][field] */
    cb_field_path **required;
    /* The seq of a person's newest record, by person hash (set-associative):
     * what the records index would say, without its lookup. Forgotten after a
     * failed commit, whose seqs are given out again. */
    uint64_t *newest; /* person.c says how an entry is made */
    /* The records of the people seen most recently, decoded: changed in
     * place as events change them, so forgotten, like newest, after a failed
     * commit. */
    cb_kept *kept;
};

/* One event as the rules see it, or one tick (ev NULL). */
typedef struct {
    const cb_rules *rules;
    const cb_flags_config *cfg;
    const cb_flagbook *fb;
    cb_txn *txn;
    uint64_t wall_ms;
    cb_flag_feed *feed;
    uint32_t raised; /* the types this event raised: its ACK's flags */

    const cb_envelope *ev;
    uint64_t seq;
    int64_t occurred_ms;
    char person[CB_PSEUDONYM_LEN];
    uint64_t person_hash; /* of its first identifier; 0: the event names no one */
    bool urgent;
    cb_envelope *target; /* a response's or update's event, when stored */
    uint64_t target_seq;

    cb_person_record *person_rec; /* loaded on first use (cb_rule_person) */
    bool person_kept;             /* it is r->kept's, not this event's to free */
} cb_rule_ctx;

/* A row of the table: a flag type, its severity before urgency, the bodies
 * (as 1u << Envelope body_case) whose events it judges, and the check. */
typedef struct {
    cb_flag_type type;
    Carebridge__V1__Flag__Severity severity;
    uint32_t bodies;
    void (*check)(cb_rule_ctx *ctx);
} cb_rule;

#define BODY(b)      (1u << CAREBRIDGE__V1__ENVELOPE__BODY_##b)
#define HANDED_OFF   (BODY(REFERRAL) | BODY(DISCHARGE) | BODY(HANDOVER))
#define FLAG_OPEN    CAREBRIDGE__V1__FLAG__STATUS__OPEN
#define FLAG_RESOLVE CAREBRIDGE__V1__FLAG__STATUS__RESOLVED
#define STAGE(s)     CAREBRIDGE__V1__JOURNEY_STEP__STAGE__##s
#define RESPONSE(s)  CAREBRIDGE__V1__RESPONSE__STATUS__##s
#define TYPE(t)      CAREBRIDGE__V1__FLAG__TYPE__##t

/* ---- the person record (person.c) */

/* The person's record as the events before this one left it (empty for a
 * first event); NULL when the event names no one. */
cb_person_record *cb_rule_person(cb_rule_ctx *ctx);
/* Bring it up to date with this event, after every rule has judged it. */
void cb_rule_person_note(cb_rule_ctx *ctx);
void cb_rule_person_free(cb_rule_ctx *ctx);
/* A sender of a referral, discharge or handover, or an agency that declines
 * or redirects, passes the person on. */
bool cb_passes_on(const cb_envelope *ev);
/* The outcomes an event records, by its body (an update's, by its patch). */
Carebridge__V1__Outcome *const *cb_outcomes_of(const cb_envelope *ev, size_t *n);
/* The same outcome: refs match, or without refs statements match ignoring
 * case and surrounding space. */
bool cb_same_outcome(const Carebridge__V1__Outcome *a, const Carebridge__V1__Outcome *b);
/* A flag's field (an outcome's ref, else its statement) names o. */
bool cb_outcome_named(const char *name, const Carebridge__V1__Outcome *o);
/* occurredAt in ms since the epoch (0 when absent). */
int64_t cb_occurred_ms(const cb_envelope *ev);

/* A new flag of type on event (seq, event_id), urgent raising its severity,
 * involving the agencies given (NULL-terminated), for the caller to word and
 * then raise. NULL when out of memory. */
cb_flag *cb_rule_flag(cb_rule_ctx *ctx, cb_flag_type type, uint64_t seq, bool urgent, const char *event_id, ...);
/* The handoff a flag is about, for the gap report: from one agency to
 * others (cb_rule_flag sets the event's own). */
void cb_rule_pair(cb_flag *f, const char *from, const char *const *to, size_t n);
/* Store it (OPEN, or already RESOLVED with its resolution set) and tell the
 * feed; by_person indexes it for the person while open. Frees f. */
void cb_rule_raise(cb_rule_ctx *ctx, cb_flag *f, bool by_person);
/* Resolve an open flag by this event (or the tick), with the words `how`
 * added to its explanation (NULL: none). Does not free f. */
void cb_rule_resolve(cb_rule_ctx *ctx, cb_flag *f, const char *how, bool by_person);
/* A changed flag still open (fields, explanation): store it again. */
void cb_rule_restate(cb_rule_ctx *ctx, cb_flag *f);
/* Tell the feed of a handoff flag raised or resolved. */
void cb_rule_note(cb_rule_ctx *ctx, const cb_flag *f);

/* The first stored flag of seq of this type, open, involving agency first
 * (NULL: any), or NULL. The caller frees it. */
cb_flag *cb_rule_find_open(cb_rule_ctx *ctx, uint64_t seq, cb_flag_type type, const char *agency);

/* The person's open flags of these types (a set of BIT(type)), copied:
 * the caller resolves and frees them. */
size_t cb_rule_person_open(cb_rule_ctx *ctx, uint32_t types, cb_flag **out, size_t cap);
/* Add an agency to a flag's, unless it is there. */
void cb_rule_add_agency(cb_flag *f, const char *agency);

/* Replace a string field of a flag (freeing the old one unless it is protobuf-c's empty default). */
void cb_rule_set(char **field, char *value);
/* Append a copy of s to a flag's fields. */
void cb_rule_add_field(cb_flag *f, const char *s);
/* Drop fields[i]. */
void cb_rule_drop_field(cb_flag *f, size_t i);

/* The checks (checks.c, outcomes.c, timed.c). */
void cb_check_missing(cb_rule_ctx *ctx);
void cb_check_unlinkable(cb_rule_ctx *ctx);
void cb_check_bounced(cb_rule_ctx *ctx);
void cb_check_declined(cb_rule_ctx *ctx);
void cb_check_no_outcomes(cb_rule_ctx *ctx);
void cb_check_outcomes_carried(cb_rule_ctx *ctx);
/* Resolutions an update brings to the event it corrects. */
void cb_resolve_by_update(cb_rule_ctx *ctx);
void cb_resolve_outcomes_by_update(cb_rule_ctx *ctx);
/* Resolutions an accept brings to the person's open flags. */
void cb_resolve_by_accept(cb_rule_ctx *ctx);

/* Handoff records and the time-based rules (timed.c). */
void cb_timed_record(cb_rule_ctx *ctx);
void cb_timed_response(cb_rule_ctx *ctx);
void cb_timed_update(cb_rule_ctx *ctx);
void cb_timed_due(cb_rule_ctx *ctx, uint64_t seq, uint64_t due_ms);
/* When a record's next time-based rule falls due (0: none): its due entry. */
uint64_t cb_timed_next_due(const cb_flags_config *c, const cb_handoff_record *rec);
/* Responses stored before this handed-off event, applied to its record now. */
void cb_rules_early_answers(cb_rule_ctx *ctx);

#endif
