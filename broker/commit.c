/* The commit: a batch's effects on the store and the delivery lanes, in one
 * transaction. Publishes are stored (deduplicated by event id in the same
 * transaction), acknowledged deliveries removed, replays queued again, the
 * lanes' next deliveries planned and packed, and the index merges the
 * batch's entries owe paid for. Only once the transaction has committed does
 * memory move to match it; a failed commit refuses what it did not store and
 * leaves memory as it was (the store reopened unless it was merely full).
 *
 * No threads here: the store thread (committer.c) calls it with each batch
 * it takes, and the unit tests call it directly. */
#include "commit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "broker.h"
#include "cb_check.h"
#include "cb_wire.h"
#include "intake.h"
#include "log.h"
#include "query.h"
#include "retention.h"
#include "rules.h"

/* Index entries merged per entry added: a handful of levels, with room to
 * catch up. Merges left over run when the broker has been idle a while. */
#define INDEX_WORK_PER_ENTRY 8

/* Handoff records a tick's transaction judges: a bounded write, the rest
 * left for the next tick, which then comes at once. */
#define TICK_BUDGET 512
/* Open flags a delivery carries at most. */
#define DELIVERY_FLAGS 32

struct cb_commit {
    const cb_config *cfg;
    cb_store *store;
    cb_delivery *delivery;
    uint64_t last_seq;
    cb_step *steps;
    size_t n_steps;
    cb_step *released; /* in flight to connections that said goodbye */
    size_t n_released;
    uint64_t *refused_acks; /* per agency, since start: for status */
    cb_rules *rules;
    int64_t next_tick_ms; /* monotonic: when the time-based rules next run */
    bool ticking;         /* this batch runs them */
    cb_retention *retention;
    bool retaining; /* this batch runs its step */
    /* Each lane's consumer's key, as its attach gave it: who a delivery's
     * audit record names. */
    char (*consumer_key)[CB_FINGERPRINT_LEN + 1];
};

_Static_assert(CB_REPLAY_ID_MAX == CB_EVENT_ID_MAX, "a replay's id holds any event id");

static unsigned agency_index(const cb_config *cfg, const char *id)
{
    return (unsigned)(cb_config_agency(cfg, id) - cfg->agencies);
}

static void store_publish(cb_commit *c, cb_txn *txn, cb_publish *pub, uint64_t wall_ms, uint64_t *seq,
                          cb_flag_feed *feed)
{
    const cb_envelope *ev = pub->frame->publish->event;
    uint8_t digest[CB_DIGEST_BYTES];
    uint64_t existing;
    /* After a failure nothing here is true any more (lookups find nothing, room
     * looks absent): leave the publish for refuse_publishes, which gives it the
     * code of what actually happened. */
    if (cb_txn_failed(txn))
        return;
    /* It may yet arrive (agencies are not ordered); the journey applies it then. */
    if (ev->correlation_id[0] && !cb_store_find_id(txn, ev->correlation_id, &existing, digest))
        pub->warnings |= 1u << CB_WARN_CORRELATION_UNKNOWN;
    if (cb_store_find_id(txn, ev->event_id, &existing, digest)) {
        pub->seq = existing;
        if (memcmp(digest, pub->digest, sizeof digest) == 0) {
            pub->duplicate = true;
            return;
        }
        pub->code = CB_DUPLICATE_ID;
        snprintf(pub->reason, sizeof pub->reason, "eventId is already stored as seq %llu with different content",
                 (unsigned long long)existing);
        return;
    }
    cb_room room = cb_store_room(txn);
    if (room != CB_ROOM) {
        pub->code = CB_STORE_FULL;
        cb_query_room_reason(c->cfg, room, pub->reason, sizeof pub->reason);
        return;
    }
    cb_person_key keys[CB_PERSON_KEYS_MAX];
    size_t n_keys = cb_intake_person_keys(ev->person, keys, CB_PERSON_KEYS_MAX);
    const char *key_ptrs[CB_PERSON_KEYS_MAX];
    for (size_t i = 0; i < n_keys; i++)
        key_ptrs[i] = keys[i];
    pub->seq = ++*seq;
    cb_stored_event stored = {.seq = pub->seq,
                              .bytes = pub->bytes,
                              .len = pub->len,
                              .event_id = ev->event_id,
                              .person_keys = key_ptrs,
                              .n_person_keys = n_keys,
                              .from_agency = ev->from_agency,
                              .case_ref = ev->case_ref[0] ? ev->case_ref : NULL,
                              .recipients = (const char *const *)ev->to_agencies,
                              .n_recipients = ev->n_to_agencies};
    cb_store_put_event(txn, &stored, wall_ms);
    pub->flags = cb_rules_event(c->rules, txn, ev, pub->person, pub->seq, wall_ms, feed);
}

/* Queue a stored event again for one agency, or release it from parked. The
 * answer is packed, and logged, once the transaction has committed. */
static void replay(cb_commit *c, cb_txn *txn, cb_request *r, uint64_t wall_ms)
{
    const Carebridge__V1__ReplayRequest *q = r->frame->replay_request;
    uint8_t digest[CB_DIGEST_BYTES];
    cb_queue_entry e;
    if (!cb_config_agency(c->cfg, q->agency)) {
        cb_fail(&r->err, CB_UNKNOWN_AGENCY, "replay.agency names no configured agency (configured: %s)",
                c->cfg->agency_list);
        return;
    }
    /* Checked before the store sees it: a key LMDB cannot hold would fail the
     * whole shared transaction, everyone's publishes with it. */
    if (strlen(q->event_id) > CB_EVENT_ID_MAX || !cb_printable(q->event_id) || (!q->event_id[0] && !q->seq)) {
        cb_fail(&r->err, CB_INVALID_FIELD, "replay needs eventId (1 to %d printable bytes) or seq", CB_EVENT_ID_MAX);
        return;
    }
    const uint8_t *bytes;
    size_t len;
    bool found = q->event_id[0] && cb_store_find_id(txn, q->event_id, &r->replay_seq, digest);
    if (!found && q->seq && cb_store_get_event(txn, q->seq, &bytes, &len)) {
        cb_envelope *ev = cb_envelope_decode(bytes, len);
        found = ev != NULL;
        if (ev)
            snprintf(r->replay_id, sizeof r->replay_id, "%s", ev->event_id);
        cb_envelope_free(&ev);
        r->replay_seq = q->seq;
    } else if (found) {
        snprintf(r->replay_id, sizeof r->replay_id, "%s", q->event_id);
    }
    if (!found) {
        cb_fail(&r->err, CB_UNKNOWN_EVENT, "%s names no stored event",
                q->seq ? "replay.eventId or replay.seq" : "replay.eventId");
        return;
    }
    r->was_parked = cb_store_unpark(txn, q->agency, r->replay_seq);
    r->was_queued = !r->was_parked && cb_store_queue_get(txn, q->agency, r->replay_seq, &e);
    if (!r->was_parked && !r->was_queued)
        cb_store_queue_put(txn, q->agency, &(cb_queue_entry){r->replay_seq, wall_ms, 0});
}

/* Acknowledgements refused (not in flight to the connection that sent them:
 * another agency's delivery, say), one record per agency a batch, as the log
 * has them, so a flood of them cannot flood the audit. */
static void audit_refused_acks(cb_commit *c, cb_txn *txn, const cb_batch *b)
{
    for (unsigned ag = 0; ag < c->cfg->n_agencies; ag++) {
        size_t n = 0;
        uint64_t first = 0;
        for (size_t i = 0; i < b->n_acks; i++)
            if (b->acks[i].refused && b->acks[i].agency == ag && !n++)
                first = b->acks[i].seq;
        if (!n)
            continue;
        cb_audit_entry a = cb_audit_of(NULL, c->cfg->agencies[ag].id, "deliveryAck");
        a.permitted = false;
        a.code = CB_NOT_IN_FLIGHT;
        snprintf(a.detail, sizeof a.detail, "refused %zu deliveryAck(s), first seq=%llu: not in flight to the sender",
                 n, (unsigned long long)first);
        cb_audit_put(txn, &a, b->wall_ms);
    }
}

/* A replay, or a refusal, as its audit record says it went. */
static void audit_request(cb_txn *txn, cb_request *r, uint64_t wall_ms)
{
    cb_audit_entry a = r->audit;
    a.permitted = !r->err.code;
    a.code = r->err.code;
    const uint8_t *bytes;
    size_t len;
    if (r->replay_seq && cb_store_get_event(txn, r->replay_seq, &bytes, &len))
        cb_audit_person_of_event(bytes, len, a.person);
    if (!r->refusal && r->frame)
        snprintf(a.detail, sizeof a.detail, "seq=%llu to=%.63s", (unsigned long long)r->replay_seq,
                 r->frame->replay_request->agency);
    cb_audit_put(txn, &a, wall_ms);
}

static size_t pack_replay_reply(cb_request *r)
{
    Carebridge__V1__ReplayReply rr = CAREBRIDGE__V1__REPLAY_REPLY__INIT;
    rr.seq = r->replay_seq;
    rr.was_parked = r->was_parked;
    rr.event_id = r->replay_id;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.ref = r->ref;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_REPLAY_REPLY;
    f.replay_reply = &rr;
    return r->reply_len = cb_pack(&f.base, &r->reply);
}

/* The flags open on an event, encoded as Deliver.flags fields. */
static size_t pack_open_flags(cb_commit *c, cb_txn *txn, uint64_t seq, uint8_t **out)
{
    cb_flag *open[DELIVERY_FLAGS];
    size_t n = cb_rules_open_flags(c->rules, txn, seq, open, DELIVERY_FLAGS), len = 0, cap = 0;
    for (size_t i = 0; i < n; i++)
        cap += carebridge__v1__flag__get_packed_size(open[i]) + 11;
    *out = cap ? malloc(cap) : NULL;
    for (size_t i = 0; *out && i < n; i++) {
        (*out)[len++] = (4 << 3) | 2; /* Deliver.flags, length-delimited */
        len += cb_wire_put_varint(*out + len, carebridge__v1__flag__get_packed_size(open[i]));
        len += carebridge__v1__flag__pack(open[i], *out + len);
    }
    for (size_t i = 0; i < n; i++)
        cb_flag_free(&open[i]);
    return *out ? len : 0;
}

/* Pack the plan's deliveries while the transaction still holds their bytes;
 * they are sent only if it commits. */
static void pack_deliveries(cb_commit *c, cb_txn *txn, cb_batch *b)
{
    for (size_t i = 0; i < c->n_steps; i++) {
        const cb_step *s = &c->steps[i];
        const uint8_t *event;
        size_t len;
        int peer = cb_delivery_consumer(c->delivery, s->agency);
        if (s->kind != CB_STEP_SEND || peer < 0 || !cb_store_get_event(txn, s->seq, &event, &len))
            continue;
        cb_outbound *o = &b->out[b->n_out];
        o->peer = peer;
        uint8_t *flags = NULL;
        size_t flags_len = pack_open_flags(c, txn, s->seq, &flags);
        o->len = cb_pack_deliver_with(s->seq, s->attempt, event, len, flags, flags_len, &o->frame);
        free(flags);
        if (!o->len)
            continue;
        b->n_out++;
        /* Sent only if this transaction commits, so its record is in it. */
        cb_audit_entry a = cb_audit_of(NULL, c->cfg->agencies[s->agency].id, "delivery");
        memcpy(a.fingerprint, c->consumer_key[s->agency], sizeof a.fingerprint);
        cb_audit_person_of_event(event, len, a.person);
        snprintf(a.detail, sizeof a.detail, "seq=%llu attempt=%u", (unsigned long long)s->seq, s->attempt);
        cb_audit_put(txn, &a, b->wall_ms);
    }
}

/* A delivery returned by a goodbye was not processed, so it did not fail:
 * its attempt is given back (unless it was acknowledged meanwhile). */
static void give_back_attempts(cb_commit *c, cb_txn *txn)
{
    for (size_t i = 0; i < c->n_released; i++) {
        const char *agency = c->cfg->agencies[c->released[i].agency].id;
        cb_queue_entry e;
        if (cb_store_queue_get(txn, agency, c->released[i].seq, &e) && e.attempts > 0) {
            e.attempts--;
            cb_store_queue_put(txn, agency, &e);
        }
    }
}

/* One transaction for everything the batch changes. On failure nothing in
 * memory moves: the caller refuses the publishes and the rest is retried. */
static cb_code commit(cb_commit *c, cb_batch *b, bool with_publishes, cb_error *err)
{
    cb_txn *txn = cb_txn_begin(c->store, true, err);
    if (!txn)
        return err->code;
    uint64_t seq = c->last_seq;
    for (size_t i = 0; with_publishes && i < b->n_pubs; i++)
        if (b->pubs[i].code == CB_OK)
            store_publish(c, txn, &b->pubs[i], b->wall_ms, &seq, &b->feed);
    for (size_t i = 0; i < b->n_acks; i++)
        if (!b->acks[i].refused)
            cb_store_ack(txn, c->cfg->agencies[b->acks[i].agency].id, b->acks[i].seq);
    audit_refused_acks(c, txn, b);
    give_back_attempts(c, txn);
    /* Before replays: one of an event that expires now is answered as unknown. */
    if (c->retaining && with_publishes)
        cb_retention_step(c->retention, txn, b, c->last_seq);
    for (size_t i = 0; i < b->n_reqs; i++) {
        cb_request *r = &b->reqs[i];
        if (!r->refusal) {
            r->err.code = CB_OK;
            replay(c, txn, r, b->wall_ms);
        }
        if (r->audited)
            audit_request(txn, r, b->wall_ms);
    }
    for (size_t i = 0; i < b->n_audits; i++)
        cb_audit_put(txn, &b->audits[i], b->wall_ms);
    if (c->ticking && with_publishes && cb_store_room(txn) == CB_ROOM &&
        cb_rules_tick(c->rules, txn, b->wall_ms, TICK_BUDGET, &b->feed))
        c->next_tick_ms = b->now_ms; /* more are due: go on at the next batch */
    c->n_steps = cb_delivery_plan(c->delivery, txn, b->now_ms, c->steps, cb_delivery_max_steps(c->delivery));
    pack_deliveries(c, txn, b);
    /* Each batch pays for the index merges its own entries will need, so
     * merging keeps pace with publishing in small, sorted steps. Not while
     * the store is filling: a merge needs room before it frees any. */
    if (with_publishes && cb_store_room(txn) == CB_ROOM)
        cb_store_index_pay(txn, INDEX_WORK_PER_ENTRY);
    cb_rules_flush(c->rules, txn);
    cb_code code = cb_txn_commit(&txn, err);
    if (code) {
        cb_batch_free_out(b); /* the deliveries and flag notes of what did not commit */
        cb_rules_forget(c->rules);
        for (size_t i = 0; i < b->n_pubs; i++)
            b->pubs[i].flags = 0;
        return code;
    }
    c->last_seq = seq;
    for (size_t i = 0; i < b->n_reqs; i++) {
        cb_request *r = &b->reqs[i];
        if (!r->refusal && !r->err.code && !pack_replay_reply(r))
            cb_fail(&r->err, CB_STORE_UNAVAILABLE, "out of memory");
    }
    return CB_OK;
}

/* The commit failed: refuse every answer that does not rest on an event
 * committed before (last_seq has not moved). That includes a publish the
 * failed transaction never reached (seq 0), and a duplicate of, or a
 * DUPLICATE_ID against, an event earlier in the same batch; a duplicate of an
 * event committed before still gets its ACK. */
static void refuse_publishes(cb_commit *c, cb_batch *b, cb_code code, const char *why)
{
    for (size_t i = 0; i < b->n_pubs; i++) {
        cb_publish *pub = &b->pubs[i];
        bool rests_on_committed = pub->seq && pub->seq <= c->last_seq;
        if ((pub->code == CB_OK || pub->code == CB_DUPLICATE_ID) && !rests_on_committed) {
            pub->code = code;
            snprintf(pub->reason, sizeof pub->reason, "%.*s", (int)sizeof pub->reason - 1, why); /* cut to fit */
        }
    }
}

static void reopen_store(cb_commit *c, cb_batch *b);

/* After a failed commit: refuse the publishes with the code of what happened,
 * and keep nothing in memory from the plan. A store that failed (not one that
 * is full) is reopened, so no state from the failed transaction survives (see
 * README, "When a commit or sync fails"); a full one is left as it is: LMDB
 * aborted the transaction, and reopening would not make room. */
static void recover(cb_commit *c, cb_batch *b, cb_code code, const cb_error *err)
{
    bool full = code == CB_STORE_FULL;
    cb_log(CB_LOG_ERROR, "commit failed (%s): %s; nothing from this batch is acknowledged%s", cb_code_name(code),
           err->reason, full ? "" : "; reopening the store");
    refuse_publishes(c, b, code,
                     full ? "the store is full; nothing was written, retry later"
                          : "the store failed to commit or sync; nothing was acknowledged");
    for (size_t i = 0; i < b->n_reqs; i++)
        if (!b->reqs[i].err.code || b->reqs[i].refusal) /* a refusal not recorded is not answered as one */
            cb_fail(&b->reqs[i].err, code, "the store failed to commit: %s", err->reason);
    c->n_steps = 0;
    if (!full)
        reopen_store(c, b);
}

/* A store that failed (not one that is full) is reopened, so nothing in
 * memory survives from the failed transaction. */
static void reopen_store(cb_commit *c, cb_batch *b)
{
    cb_error reopen_err = {0};
    cb_txn *txn = cb_store_reopen(c->store, &reopen_err) ? cb_txn_begin(c->store, false, &reopen_err) : NULL;
    if (!txn) {
        cb_log(CB_LOG_ERROR, "cannot reopen the store: %s; stopping", reopen_err.reason);
        b->exit_status = CB_EXIT_STORE_LOST;
        return;
    }
    c->last_seq = cb_store_last_seq(txn); /* the store, not memory, says where seqs go on */
    cb_txn_abort(&txn);
}

/* The transaction committed: move memory to match it. */
static void committed(cb_commit *c, cb_batch *b)
{
    cb_delivery_apply(c->delivery, c->steps, c->n_steps, b->now_ms);
    for (size_t i = 0; i < b->n_pubs; i++) {
        const cb_publish *pub = &b->pubs[i];
        if (pub->code || pub->duplicate)
            continue;
        const cb_envelope *ev = pub->frame->publish->event;
        for (size_t t = 0; t < ev->n_to_agencies; t++)
            cb_delivery_enqueued(c->delivery, agency_index(c->cfg, ev->to_agencies[t]), pub->seq);
    }
    for (size_t i = 0; i < b->n_acks; i++) {
        const cb_delivery_ack *a = &b->acks[i];
        if (a->refused)
            c->refused_acks[a->agency]++;
        else
            cb_delivery_acked(c->delivery, a->agency, a->seq);
    }
    for (size_t i = 0; i < b->n_reqs; i++) {
        const cb_request *r = &b->reqs[i];
        if (r->err.code || r->refusal)
            continue;
        const Carebridge__V1__ReplayRequest *q = r->frame->replay_request;
        cb_delivery_enqueued(c->delivery, agency_index(c->cfg, q->agency), r->replay_seq);
        cb_log_text_buf id;
        cb_log(CB_LOG_INFO, "replay event=%s agency=%s seq=%llu %s", cb_log_text(r->replay_id, id), q->agency,
               (unsigned long long)r->replay_seq,
               r->was_parked   ? "released from parked"
               : r->was_queued ? "already queued"
                               : "queued again");
    }
    for (size_t i = 0; i < c->n_steps; i++) {
        const cb_step *s = &c->steps[i];
        const char *agency = c->cfg->agencies[s->agency].id;
        if (s->kind == CB_STEP_PARK)
            cb_log(CB_LOG_WARN, "parked agency=%s seq=%llu after %u attempts; `carebridge replay` releases it", agency,
                   (unsigned long long)s->seq, c->cfg->max_attempts);
        else if (s->kind == CB_STEP_SEND && s->attempt > 1) {
            b->n_redelivered++;
            cb_log(CB_LOG_INFO, "redeliver agency=%s seq=%llu attempt=%u", agency, (unsigned long long)s->seq,
                   s->attempt);
        }
    }
}

static void commit_batch(cb_commit *c, cb_batch *b)
{
    cb_error err = {0};
    cb_code code = commit(c, b, true, &err);
    bool full = code == CB_STORE_FULL;
    if (full) {
        cb_log(CB_LOG_WARN, "store full: %s; refusing this batch's publishes", err.reason);
        refuse_publishes(c, b, CB_STORE_FULL, err.reason);
        code = commit(c, b, false, &err); /* acks and deliveries still go through */
    }
    b->audits_written = !code;
    if (code)
        recover(c, b, code, &err);
    else
        committed(c, b);
    /* Retention did not commit unless the first transaction did; it is what
     * makes room, so it goes again at the next batch (whose publishes the
     * store's room then refuses before they are written). */
    if (c->retaining && (full || code))
        cb_retention_lost(c->retention, b->now_ms);
    else if (c->retaining)
        cb_retention_committed(c->retention);
}

/* Only the connection holding a delivery may acknowledge it. Judged before
 * the batch's lane changes, because a connection's frames are read in order:
 * its acknowledgements came before a goodbye (or a takeover) in the same batch. */
static void judge_acks(cb_commit *c, cb_batch *b)
{
    for (size_t i = 0; i < b->n_acks; i++) {
        cb_delivery_ack *a = &b->acks[i];
        a->refused = !cb_delivery_holds(c->delivery, a->agency, a->peer, a->seq);
    }
}

static void apply_lane_ops(cb_commit *c, const cb_batch *b)
{
    for (size_t i = 0; i < b->n_ops; i++) {
        const cb_lane_op *op = &b->ops[i];
        if (op->kind == CB_LANE_DETACH)
            cb_delivery_detach_peer(c->delivery, op->peer);
        else if (op->kind == CB_LANE_RELEASE)
            c->n_released += cb_delivery_release_peer(c->delivery, op->peer, c->released + c->n_released,
                                                      cb_delivery_max_steps(c->delivery) - c->n_released);
        else if (cb_delivery_consumer(c->delivery, op->agency) != op->peer) {
            cb_delivery_attach(c->delivery, op->agency, op->peer, op->window); /* a repeated hello keeps its window */
            memcpy(c->consumer_key[op->agency], op->fingerprint, sizeof op->fingerprint);
        }
    }
}

cb_commit *cb_commit_new(const cb_config *cfg, cb_store *store, cb_error *err)
{
    cb_commit *c = calloc(1, sizeof *c);
    if (c) {
        c->cfg = cfg;
        c->store = store;
        c->delivery = cb_delivery_new(cfg);
        c->steps = c->delivery ? calloc(cb_delivery_max_steps(c->delivery), sizeof *c->steps) : NULL;
        c->released = c->delivery ? calloc(cb_delivery_max_steps(c->delivery), sizeof *c->released) : NULL;
        c->refused_acks = calloc(cfg->n_agencies, sizeof *c->refused_acks);
        c->consumer_key = calloc(cfg->n_agencies, sizeof *c->consumer_key);
        c->rules = cb_rules_new(cfg, store, cb_flagbook_broker());
    }
    if (!c || !c->steps || !c->released || !c->refused_acks || !c->consumer_key || !c->rules) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        cb_commit_free(&c);
        return NULL;
    }
    cb_txn *txn = cb_txn_begin(store, true, err);
    if (!txn) {
        cb_commit_free(&c);
        return NULL;
    }
    c->last_seq = cb_store_last_seq(txn);
    c->retention = cb_retention_new(cfg, c->rules, c->last_seq);
    if (!c->retention) {
        cb_txn_abort(&txn);
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        cb_commit_free(&c);
        return NULL;
    }
    if (!cb_rules_prepare(c->rules, txn)) {
        cb_txn_abort(&txn);
    } else if (cb_txn_commit(&txn, err) != CB_OK) {
        cb_commit_free(&c);
        return NULL;
    }
    return c;
}

void cb_commit_free(cb_commit **c_p)
{
    cb_commit *c = *c_p;
    if (c) {
        free(c->steps);
        free(c->released);
        free(c->refused_acks);
        free(c->consumer_key);
        cb_retention_free(&c->retention);
        cb_rules_free(&c->rules);
        cb_delivery_destroy(&c->delivery);
        free(c);
    }
    *c_p = NULL;
}

void cb_commit_batch(cb_commit *c, cb_batch *b)
{
    b->n_out = b->n_redelivered = 0;
    b->exit_status = 0;
    judge_acks(c, b);
    apply_lane_ops(c, b);
    if (cb_batch_has_input(b) || cb_commit_has_work(c, b->now_ms)) {
        c->ticking = c->cfg->flags.enabled && b->now_ms >= c->next_tick_ms;
        if (c->ticking)
            c->next_tick_ms = b->now_ms + (int64_t)c->cfg->flags.tick_seconds * 1000;
        c->retaining = cb_retention_due(c->retention, b->now_ms);
        if (c->retaining)
            cb_retention_taken(c->retention, b->now_ms);
        commit_batch(c, b);
        c->n_released = 0; /* given back, or after a failed commit left counted: the safe side */
        c->ticking = c->retaining = false;
    }
}

bool cb_commit_has_work(const cb_commit *c, int64_t now_ms)
{
    return c->n_released || cb_delivery_has_work(c->delivery, now_ms) ||
           (c->cfg->flags.enabled && now_ms >= c->next_tick_ms) || cb_retention_due(c->retention, now_ms);
}

int64_t cb_commit_next_deadline(const cb_commit *c)
{
    int64_t redelivery = cb_delivery_next_deadline(c->delivery);
    int64_t tick = c->cfg->flags.enabled ? c->next_tick_ms : INT64_MAX;
    int64_t retention = cb_retention_next(c->retention);
    int64_t next = tick < redelivery ? tick : redelivery;
    return retention < next ? retention : next;
}

size_t cb_commit_max_out(const cb_commit *c)
{
    return cb_delivery_max_steps(c->delivery);
}

uint64_t cb_commit_last_seq(const cb_commit *c)
{
    return c->last_seq;
}

void cb_commit_lane(const cb_commit *c, unsigned agency, uint32_t *in_flight, uint64_t *refused_acks)
{
    *in_flight = cb_delivery_in_flight(c->delivery, agency);
    *refused_acks = c->refused_acks[agency];
}
