#include "committer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "broker.h"
#include "cb_check.h"
#include "clock.h"
#include "delivery.h"
#include "intake.h"
#include "log.h"
#include "query.h"
#include "thread.h"

#define RESERVE_STEP  (256 << 10) /* zeros written per idle step: usually a fraction of a millisecond */
#define RESERVE_LOW   0.25        /* refill once the reserve is down to this much of its target */
#define RESERVE_RETRY 10000       /* ms before trying again after the disk refused */

/* Index entries merged per entry added: a handful of levels, with room to
 * catch up. Merges left over run when the broker has been idle a while. */
#define INDEX_WORK_PER_ENTRY 8
#define INDEX_IDLE_BUDGET    8192

/* Work that no batch waits for (merges not yet paid for, refilling the
 * reserve) starts only once the store thread has had nothing to do for this
 * long, not in the gaps between commits at a steady rate: there a reserve
 * step that met a journal still busy with a burst's growth held the store
 * thread for 70 ms, and the commits after it for as long again. */
#define IDLE_WORK_AFTER_MS 100

/* Three batches circulate: the network thread fills one, the store thread
 * commits one, and the network thread answers one. */
#define N_BATCHES 3

struct cb_committer {
    const cb_config *cfg;
    cb_store *store;
    cb_delivery *delivery;
    uint64_t last_seq;
    cb_step *steps;
    size_t n_steps;
    cb_step *released; /* in flight to connections that said goodbye */
    size_t n_released;
    uint64_t *refused_acks; /* per agency, since start: for status */
    /* Copies for status, under live_mu: the network thread asks while it
     * holds mu (it fills the open batch under it). */
    pthread_mutex_t live_mu;
    uint32_t *live_in_flight;
    uint64_t *live_refused;
    /* mu orders everything the two threads share. The store thread sleeps on
     * `wake` until the open batch has input (or its own timers are due); the
     * network thread polls wake_fd, an eventfd the store thread bumps when a
     * batch is done or a full open batch has been taken. An eventfd stays
     * readable until it is read, so no wake-up can be lost between the
     * network thread looking at the done list and going back to poll. */
    int wake_fd;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    cb_batch *batches[N_BATCHES];
    cb_batch *open;             /* the network thread fills it, holding mu */
    cb_batch *spare[N_BATCHES]; /* answered and empty */
    size_t n_spare;
    cb_batch *done[N_BATCHES]; /* committed, to be answered, oldest first */
    size_t n_done;
    bool stopping, stopped;
    pthread_t thread;
    bool running;
    int64_t reserve_retry_ms; /* no growth before this (the disk refused) */
    int64_t last_work_ms;     /* when the last batch with work was taken */
    bool refilling;           /* from falling to RESERVE_LOW until full again */
};

_Static_assert(CB_REPLAY_ID_MAX == CB_EVENT_ID_MAX, "a replay's id holds any event id");

static unsigned agency_index(const cb_config *cfg, const char *id)
{
    return (unsigned)(cb_config_agency(cfg, id) - cfg->agencies);
}

/* ------------------------------------------------------------------ commit */

static void store_publish(cb_committer *c, cb_txn *txn, cb_publish *pub, uint64_t *seq)
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
    cb_store_put_event(txn, &stored, cb_wall_ms());
}

/* Queue a stored event again for one agency, or release it from parked. The
 * answer is packed, and logged, once the transaction has committed. */
static void replay(cb_committer *c, cb_txn *txn, cb_request *r)
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
        cb_store_queue_put(txn, q->agency, &(cb_queue_entry){r->replay_seq, cb_wall_ms(), 0});
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

static void free_out(cb_batch *b)
{
    for (size_t i = 0; i < b->n_out; i++)
        free(b->out[i].frame);
    b->n_out = 0;
}

/* Pack the plan's deliveries while the transaction still holds their bytes;
 * they are sent only if it commits. */
static void pack_deliveries(cb_committer *c, cb_txn *txn, cb_batch *b)
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
        o->len = cb_pack_deliver(s->seq, s->attempt, event, len, &o->frame);
        if (o->len)
            b->n_out++;
    }
}

/* A delivery returned by a goodbye was not processed, so it did not fail:
 * its attempt is given back (unless it was acknowledged meanwhile). */
static void give_back_attempts(cb_committer *c, cb_txn *txn)
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
static cb_code commit(cb_committer *c, cb_batch *b, bool with_publishes, cb_error *err)
{
    cb_txn *txn = cb_txn_begin(c->store, true, err);
    if (!txn)
        return err->code;
    uint64_t seq = c->last_seq;
    for (size_t i = 0; with_publishes && i < b->n_pubs; i++)
        if (b->pubs[i].code == CB_OK)
            store_publish(c, txn, &b->pubs[i], &seq);
    for (size_t i = 0; i < b->n_acks; i++)
        if (!b->acks[i].refused)
            cb_store_ack(txn, c->cfg->agencies[b->acks[i].agency].id, b->acks[i].seq);
    give_back_attempts(c, txn);
    for (size_t i = 0; i < b->n_reqs; i++) {
        cb_request *r = &b->reqs[i];
        r->err.code = CB_OK;
        replay(c, txn, r);
    }
    c->n_steps = cb_delivery_plan(c->delivery, txn, b->now_ms, c->steps, cb_delivery_max_steps(c->delivery));
    pack_deliveries(c, txn, b);
    /* Each batch pays for the index merges its own entries will need, so
     * merging keeps pace with publishing in small, sorted steps. Not while
     * the store is filling: a merge needs room before it frees any. */
    if (with_publishes && cb_store_room(txn) == CB_ROOM)
        cb_store_index_pay(txn, INDEX_WORK_PER_ENTRY);
    cb_code code = cb_txn_commit(&txn, err);
    if (code) {
        free_out(b);
        return code;
    }
    c->last_seq = seq;
    for (size_t i = 0; i < b->n_reqs; i++) {
        cb_request *r = &b->reqs[i];
        if (!r->err.code && !pack_replay_reply(r))
            cb_fail(&r->err, CB_STORE_UNAVAILABLE, "out of memory");
    }
    return CB_OK;
}

/* The commit failed: refuse every answer that does not rest on an event
 * committed before (last_seq has not moved). That includes a publish the
 * failed transaction never reached (seq 0), and a duplicate of, or a
 * DUPLICATE_ID against, an event earlier in the same batch; a duplicate of an
 * event committed before still gets its ACK. */
static void refuse_publishes(cb_committer *c, cb_batch *b, cb_code code, const char *why)
{
    for (size_t i = 0; i < b->n_pubs; i++) {
        cb_publish *pub = &b->pubs[i];
        bool rests_on_committed = pub->seq && pub->seq <= c->last_seq;
        if ((pub->code == CB_OK || pub->code == CB_DUPLICATE_ID) && !rests_on_committed) {
            pub->code = code;
            snprintf(pub->reason, sizeof pub->reason, "%s", why);
        }
    }
}

/* After a failed commit: refuse the publishes with the code of what happened,
 * and keep nothing in memory from the plan. A store that failed (not one that
 * is full) is reopened, so no state from the failed transaction survives (see
 * README, "When a commit or sync fails"); a full one is left as it is: LMDB
 * aborted the transaction, and reopening would not make room. */
static void recover(cb_committer *c, cb_batch *b, cb_code code, const cb_error *err)
{
    bool full = code == CB_STORE_FULL;
    cb_log(CB_LOG_ERROR, "commit failed (%s): %s; nothing from this batch is acknowledged%s", cb_code_name(code),
           err->reason, full ? "" : "; reopening the store");
    refuse_publishes(c, b, code,
                     full ? "the store is full; nothing was written, retry later"
                          : "the store failed to commit or sync; nothing was acknowledged");
    for (size_t i = 0; i < b->n_reqs; i++)
        if (!b->reqs[i].err.code)
            cb_fail(&b->reqs[i].err, code, "the store failed to commit: %s", err->reason);
    c->n_steps = 0;
    if (full)
        return;
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
static void committed(cb_committer *c, cb_batch *b)
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
        if (r->err.code)
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
        else if (s->kind == CB_STEP_SEND && s->attempt > 1)
            cb_log(CB_LOG_INFO, "redeliver agency=%s seq=%llu attempt=%u", agency, (unsigned long long)s->seq,
                   s->attempt);
    }
}

static bool has_work(const cb_committer *c, const cb_batch *b)
{
    return cb_batch_has_input(b) || c->n_released || cb_delivery_has_work(c->delivery, b->now_ms);
}

static void commit_batch(cb_committer *c, cb_batch *b)
{
    cb_error err = {0};
    cb_code code = commit(c, b, true, &err);
    if (code == CB_STORE_FULL) {
        cb_log(CB_LOG_WARN, "store full: %s; refusing this batch's publishes", err.reason);
        refuse_publishes(c, b, CB_STORE_FULL, err.reason);
        code = commit(c, b, false, &err); /* acks and deliveries still go through */
    }
    if (code)
        recover(c, b, code, &err);
    else
        committed(c, b);
}

/* ------------------------------------------------------------------ thread */

static void apply_lane_ops(cb_committer *c, const cb_batch *b)
{
    for (size_t i = 0; i < b->n_ops; i++) {
        const cb_lane_op *op = &b->ops[i];
        if (op->kind == CB_LANE_DETACH)
            cb_delivery_detach_peer(c->delivery, op->peer);
        else if (op->kind == CB_LANE_RELEASE)
            c->n_released += cb_delivery_release_peer(c->delivery, op->peer, c->released + c->n_released,
                                                      cb_delivery_max_steps(c->delivery) - c->n_released);
        else if (cb_delivery_consumer(c->delivery, op->agency) != op->peer)
            cb_delivery_attach(c->delivery, op->agency, op->peer, op->window); /* a repeated hello keeps its window */
    }
}

static bool idle_long_enough(const cb_committer *c, int64_t now)
{
    return now >= c->last_work_ms + IDLE_WORK_AFTER_MS;
}

/* The file's reserve wants refilling and the disk has not refused lately.
 * Refills start only when it runs low, so a burst spends the reserve without
 * its idle moments going to small refills, and they stop when it is full. */
static bool reserve_wanted(cb_committer *c, int64_t now)
{
    c->refilling = cb_store_reserve_below(c->store, c->refilling ? 1.0 : RESERVE_LOW);
    return c->refilling && now >= c->reserve_retry_ms && idle_long_enough(c, now);
}

static bool index_work_wanted(const cb_committer *c, int64_t now)
{
    return cb_store_index_pending(c->store) && idle_long_enough(c, now);
}

/* One transaction of merging; a failure leaves the merge where its last
 * committed step left it, for the next batch's commit to report. */
static void merge_indexes(cb_committer *c)
{
    cb_error err = {0};
    cb_txn *txn = cb_txn_begin(c->store, true, &err);
    if (!txn)
        return;
    if (cb_store_room(txn) == CB_ROOM)
        cb_store_index_work(txn, INDEX_IDLE_BUDGET);
    else
        c->last_work_ms = cb_mono_ms(); /* wait for room: not a busy loop */
    cb_txn_commit(&txn, &err);
    if (err.code)
        c->last_work_ms = cb_mono_ms();
}

/* Only the connection holding a delivery may acknowledge it. Judged before
 * the batch's lane changes, because a connection's frames are read in order:
 * its acknowledgements came before a goodbye (or a takeover) in the same batch. */
static void judge_acks(cb_committer *c, cb_batch *b)
{
    for (size_t i = 0; i < b->n_acks; i++) {
        cb_delivery_ack *a = &b->acks[i];
        a->refused = !cb_delivery_holds(c->delivery, a->agency, a->peer, a->seq);
    }
}

/* What status reports of the delivery lanes, copied for the network thread. */
static void publish_live(cb_committer *c)
{
    pthread_mutex_lock(&c->live_mu);
    for (unsigned a = 0; a < c->cfg->n_agencies; a++) {
        c->live_in_flight[a] = cb_delivery_in_flight(c->delivery, a);
        c->live_refused[a] = c->refused_acks[a];
    }
    pthread_mutex_unlock(&c->live_mu);
}

static void process(cb_committer *c, cb_batch *b)
{
    b->n_out = 0;
    b->exit_status = 0;
    judge_acks(c, b);
    apply_lane_ops(c, b);
    if (has_work(c, b)) {
        commit_batch(c, b);
        c->n_released = 0; /* given back, or after a failed commit left counted: the safe side */
    }
    publish_live(c);
    cb_log_flush();
}

/* Sleep until `deadline_ms` (monotonic; INT64_MAX: until woken). */
static void wait_until(cb_committer *c, int64_t deadline_ms)
{
    if (deadline_ms == INT64_MAX) {
        pthread_cond_wait(&c->wake, &c->mu);
        return;
    }
    struct timespec ts = {.tv_sec = deadline_ms / 1000, .tv_nsec = (deadline_ms % 1000) * 1000000};
    pthread_cond_timedwait(&c->wake, &c->mu, &ts);
}

/* The store thread. The moment a commit is done it takes the open batch,
 * whatever it holds by then: no round trip through the network thread
 * between one commit and the next, so the disk is never idle while events
 * wait. Holds mu except while it works. */
static void *run(void *arg)
{
    cb_committer *c = arg;
    cb_thread_name("cb-store");
    pthread_mutex_lock(&c->mu);
    while (!c->stopping) {
        int64_t now = cb_mono_ms();
        bool work = cb_batch_has_input(c->open) || c->n_released || cb_delivery_has_work(c->delivery, now);
        if (work && c->n_spare) {
            cb_batch *b = c->open;
            bool was_full = !cb_batch_has_room(b);
            c->open = c->spare[--c->n_spare];
            pthread_mutex_unlock(&c->mu);
            /* A network thread that found the batch full stopped reading the
             * network and waits on wake_fd: tell it there is room again. */
            if (was_full)
                eventfd_write(c->wake_fd, 1);
            b->now_ms = now;
            c->last_work_ms = now;
            process(c, b);
            pthread_mutex_lock(&c->mu);
            c->done[c->n_done++] = b;
            pthread_mutex_unlock(&c->mu);
            eventfd_write(c->wake_fd, 1);
            pthread_mutex_lock(&c->mu);
        } else if (!work && index_work_wanted(c, now)) {
            /* Idle a while: merges the batches have not yet paid for. */
            pthread_mutex_unlock(&c->mu);
            merge_indexes(c);
            pthread_mutex_lock(&c->mu);
        } else if (!work && reserve_wanted(c, now)) {
            /* Idle a while: a step of the reserve, so commits under load need not grow the file. */
            pthread_mutex_unlock(&c->mu);
            if (!cb_store_grow_reserve(c->store, RESERVE_STEP))
                c->reserve_retry_ms = now + RESERVE_RETRY;
            pthread_mutex_lock(&c->mu);
        } else {
            /* Nothing to do until a redelivery falls due, or work waits
             * for the network thread to give back a batch it has answered. */
            int64_t next = cb_delivery_next_deadline(c->delivery);
            int64_t idle_at = c->last_work_ms + IDLE_WORK_AFTER_MS;
            int64_t reserve_at = idle_at > c->reserve_retry_ms ? idle_at : c->reserve_retry_ms;
            if (cb_store_index_pending(c->store) && idle_at < next)
                next = idle_at;
            if (c->refilling && reserve_at < next)
                next = reserve_at;
            wait_until(c, work ? INT64_MAX : next);
        }
    }
    c->stopped = true; /* everything done is in c->done */
    pthread_mutex_unlock(&c->mu);
    eventfd_write(c->wake_fd, 1);
    return NULL;
}

static void free_batch(cb_batch **bt_p)
{
    cb_batch *bt = *bt_p;
    if (bt) {
        for (size_t i = 0; i < bt->n_reqs; i++)
            free(bt->reqs[i].reply);
        free_out(bt);
        cb_arena_destroy(&bt->arena);
        free(bt->out);
        free(bt);
    }
    *bt_p = NULL;
}

static cb_batch *new_batch(const cb_committer *c)
{
    cb_batch *bt = calloc(1, sizeof *bt);
    if (!bt)
        return NULL;
    bt->arena = cb_arena_new();
    bt->out = calloc(cb_delivery_max_steps(c->delivery), sizeof *bt->out);
    if (!bt->arena || !bt->out)
        free_batch(&bt);
    return bt;
}

cb_committer *cb_committer_start(const cb_config *cfg, cb_store *store, cb_error *err)
{
    cb_committer *c = calloc(1, sizeof *c);
    if (!c) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    c->cfg = cfg;
    c->store = store;
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->live_mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* the clock cb_mono_ms reads */
    pthread_cond_init(&c->wake, &attr);
    pthread_condattr_destroy(&attr);
    c->delivery = cb_delivery_new(cfg);
    c->steps = c->delivery ? calloc(cb_delivery_max_steps(c->delivery), sizeof *c->steps) : NULL;
    c->released = c->delivery ? calloc(cb_delivery_max_steps(c->delivery), sizeof *c->released) : NULL;
    c->refused_acks = calloc(cfg->n_agencies, sizeof *c->refused_acks);
    c->live_in_flight = calloc(cfg->n_agencies, sizeof *c->live_in_flight);
    c->live_refused = calloc(cfg->n_agencies, sizeof *c->live_refused);
    bool made = c->delivery && c->refused_acks && c->live_in_flight && c->live_refused;
    for (size_t i = 0; made && i < N_BATCHES; i++)
        made = (c->batches[i] = new_batch(c)) != NULL;
    if (made) {
        c->open = c->batches[0];
        for (size_t i = 1; i < N_BATCHES; i++)
            c->spare[c->n_spare++] = c->batches[i];
    }
    cb_txn *txn = c->steps && c->released && made ? cb_txn_begin(store, false, err) : NULL;
    if (txn) {
        c->last_seq = cb_store_last_seq(txn);
        cb_txn_abort(&txn);
    }
    bool started = c->steps && c->released && made && c->wake_fd >= 0 && cb_thread_start(&c->thread, run, c);
    if (!started) {
        if (!err->code)
            cb_fail(err, CB_STORE_UNAVAILABLE, "cannot start the store thread");
        cb_committer_stop(&c);
        return NULL;
    }
    c->running = true;
    return c;
}

/* Whether the store thread has stopped, waiting up to a minute for it: a
 * store thread stuck in a sync is not waited for forever. */
static bool await_stopped(cb_committer *c)
{
    int64_t give_up = cb_mono_ms() + 60000;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        bool stopped = c->stopped;
        pthread_mutex_unlock(&c->mu);
        int64_t left = give_up - cb_mono_ms();
        if (stopped || left <= 0)
            return stopped;
        struct pollfd p = {.fd = c->wake_fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) > 0) {
            eventfd_t n;
            eventfd_read(c->wake_fd, &n);
        }
    }
}

bool cb_committer_quiesce(cb_committer *c)
{
    if (!c->running)
        return true;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mu);
    if (!await_stopped(c))
        return false;
    pthread_join(c->thread, NULL);
    c->running = false;
    cb_log(CB_LOG_INFO, "store closed: last_seq=%llu", (unsigned long long)c->last_seq);
    cb_log_flush();
    return true;
}

void cb_committer_stop(cb_committer **c_p)
{
    cb_committer *c = *c_p;
    if (c) {
        if (c->running && !cb_committer_quiesce(c)) {
            /* A stuck store thread still owns the store and a batch: leave
             * them to the process's exit rather than free them under it. */
            *c_p = NULL;
            return;
        }
        if (c->wake_fd >= 0)
            close(c->wake_fd);
        for (size_t i = 0; i < N_BATCHES; i++)
            free_batch(&c->batches[i]);
        free(c->steps);
        free(c->released);
        free(c->refused_acks);
        free(c->live_in_flight);
        free(c->live_refused);
        cb_delivery_destroy(&c->delivery);
        cb_store_destroy(&c->store);
        pthread_cond_destroy(&c->wake);
        pthread_mutex_destroy(&c->mu);
        pthread_mutex_destroy(&c->live_mu);
        free(c);
    }
    *c_p = NULL;
}

int cb_committer_fd(const cb_committer *c)
{
    return c->wake_fd;
}

cb_batch *cb_committer_open(cb_committer *c)
{
    pthread_mutex_lock(&c->mu);
    return c->open;
}

void cb_committer_release(cb_committer *c)
{
    bool input = cb_batch_has_input(c->open);
    pthread_mutex_unlock(&c->mu);
    if (input)
        pthread_cond_signal(&c->wake);
}

bool cb_committer_open_has_room(cb_committer *c)
{
    pthread_mutex_lock(&c->mu);
    bool room = cb_batch_has_room(c->open);
    pthread_mutex_unlock(&c->mu);
    return room;
}

cb_batch *cb_committer_done(cb_committer *c)
{
    eventfd_t n;
    eventfd_read(c->wake_fd, &n); /* reset before looking, so a later batch wakes the poll again */
    pthread_mutex_lock(&c->mu);
    cb_batch *b = NULL;
    if (c->n_done) {
        b = c->done[0];
        memmove(c->done, c->done + 1, --c->n_done * sizeof *c->done);
    }
    pthread_mutex_unlock(&c->mu);
    return b;
}

void cb_committer_recycle(cb_committer *c, cb_batch *b)
{
    pthread_mutex_lock(&c->mu);
    c->spare[c->n_spare++] = b;
    pthread_mutex_unlock(&c->mu);
    pthread_cond_signal(&c->wake); /* the store thread may be waiting for a spare */
}

cb_store *cb_committer_store(const cb_committer *c)
{
    return c->store;
}

void cb_committer_live(cb_committer *c, cb_agency_live *live)
{
    pthread_mutex_lock(&c->live_mu);
    for (unsigned a = 0; a < c->cfg->n_agencies; a++) {
        live[a].in_flight = c->live_in_flight[a];
        live[a].refused_acks = c->live_refused[a];
    }
    pthread_mutex_unlock(&c->live_mu);
}
