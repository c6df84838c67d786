#include "broker.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "cb_check.h"
#include "cb_codec.h"
#include "delivery.h"
#include "intake.h"
#include "log.h"
#include "query.h"
#include "store.h"

#define BATCH_MAX    1024 /* frames read per iteration: one transaction's worth */
#define PEERS_MAX    4096 /* > BATCH_MAX: a full table evicts a peer silent since before this batch */
#define RID_MAX      256
#define ENDPOINT_MAX 256

/* A connection, known by its ROUTER routing id. A peer becomes an agency's
 * peer by saying hello; queries need no hello. */
typedef struct {
    uint8_t rid[RID_MAX];
    size_t rid_len;
    int agency; /* index into cfg->agencies, -1 before hello */
    int64_t seen_ms;
    bool in_use;
} peer;

/* An admissible publish waiting for this iteration's commit. */
typedef struct {
    int peer;
    uint64_t ref;
    cb_frame *frame;
    uint8_t *bytes; /* the canonical packed Envelope: the stored form */
    size_t len;
    uint8_t digest[CB_DIGEST_BYTES];
    cb_code code; /* the answer, decided inside the transaction */
    char reason[160];
    uint64_t seq;
    bool duplicate;
} publish;

typedef struct {
    unsigned agency;
    uint64_t seq;
} delivery_ack;

typedef struct {
    int peer;
    uint64_t ref;
    cb_frame *frame;
    cb_code code;
    cb_error err;
    uint64_t seq; /* replay: the entry re-queued */
    bool was_parked;
} request;

struct cb_broker {
    const cb_config *cfg;
    cb_store *store;
    cb_delivery *delivery;
    void *zmq;
    void *router;
    void *feed;
    char endpoint[ENDPOINT_MAX];
    char feed_endpoint[ENDPOINT_MAX];
    uint64_t last_seq;
    int exit_status;

    peer peers[PEERS_MAX];
    int last_peer;

    publish pubs[BATCH_MAX];
    size_t n_pubs;
    delivery_ack acks[BATCH_MAX];
    size_t n_acks;
    request reqs[BATCH_MAX];
    size_t n_reqs;
    cb_step *steps;
    size_t n_steps;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int agency_index(const cb_config *cfg, const char *id)
{
    for (unsigned i = 0; i < cfg->n_agencies; i++)
        if (strcmp(cfg->agencies[i].id, id) == 0)
            return (int)i;
    return -1;
}

/* ------------------------------------------------------------------ peers */

static void forget_peer(cb_broker *b, int p)
{
    cb_delivery_detach_peer(b->delivery, p);
    b->peers[p].in_use = false;
}

static int peer_for(cb_broker *b, const uint8_t *rid, size_t len, int64_t now)
{
    peer *last = &b->peers[b->last_peer];
    if (last->in_use && last->rid_len == len && memcmp(last->rid, rid, len) == 0) {
        last->seen_ms = now;
        return b->last_peer;
    }
    int free_slot = -1, oldest = 0;
    for (int i = 0; i < PEERS_MAX; i++) {
        peer *p = &b->peers[i];
        if (!p->in_use) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (p->rid_len == len && memcmp(p->rid, rid, len) == 0) {
            p->seen_ms = now;
            return b->last_peer = i;
        }
        if (p->seen_ms < b->peers[oldest].seen_ms)
            oldest = i;
    }
    if (free_slot < 0) {
        cb_log(CB_LOG_WARN, "peer table full: forgetting the longest-silent connection");
        forget_peer(b, free_slot = oldest);
    }
    peer *p = &b->peers[free_slot];
    *p = (peer){.rid_len = len, .agency = -1, .seen_ms = now, .in_use = true};
    memcpy(p->rid, rid, len);
    return b->last_peer = free_slot;
}

static const char *peer_name(const cb_broker *b, int p)
{
    return p >= 0 && b->peers[p].agency >= 0 ? b->cfg->agencies[b->peers[p].agency].id : "-";
}

/* ------------------------------------------------------------------ sending */

static void send_bytes(cb_broker *b, int p, const uint8_t *buf, size_t len)
{
    const peer *pe = &b->peers[p];
    /* A full or vanished peer loses the frame; its resend or our redelivery
     * timer recovers it, so the loop never blocks on one slow connection. */
    if (zmq_send(b->router, pe->rid, pe->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    zmq_send(b->router, buf, len, ZMQ_DONTWAIT);
}

static void send_frame(cb_broker *b, int p, const cb_frame *f)
{
    uint8_t stack[4096], *buf;
    size_t len = cb_pack_into(&f->base, stack, sizeof stack, &buf);
    if (!buf)
        return;
    send_bytes(b, p, buf, len);
    if (buf != stack)
        free(buf);
}

static void send_nack(cb_broker *b, int p, uint64_t ref, const char *event_id, cb_code code, const char *reason,
                      uint64_t existing)
{
    Carebridge__V1__Nack nack = CAREBRIDGE__V1__NACK__INIT;
    nack.event_id = (char *)event_id;
    nack.code = (Carebridge__V1__ErrorCode)code;
    nack.reason = (char *)reason;
    nack.existing_seq = existing;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.ref = ref;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_NACK;
    f.nack = &nack;
    /* Logged (a warning is flushed at once) before the sender can read the answer. */
    cb_log(CB_LOG_WARN, "nack event=%s from=%s code=%s: %s", event_id[0] ? event_id : "-", peer_name(b, p),
           cb_code_name(code), reason);
    send_frame(b, p, &f);
}

/* ------------------------------------------------------------------ intake */

static void on_hello(cb_broker *b, int p, const cb_frame *f)
{
    const Carebridge__V1__Hello *h = f->hello;
    int a = agency_index(b->cfg, h->agency);
    if (a < 0) {
        send_nack(b, p, f->ref, "", CB_UNKNOWN_AGENCY, "hello.agency names no configured agency", 0);
        return;
    }
    if (b->peers[p].agency != a)
        cb_delivery_detach_peer(b->delivery, p); /* it served another agency until now */
    b->peers[p].agency = a;
    /* A repeated hello from the current consumer keeps its window as it is. */
    if (h->receive && cb_delivery_consumer(b->delivery, (unsigned)a) != p)
        cb_delivery_attach(b->delivery, (unsigned)a, p);
    Carebridge__V1__Welcome w = CAREBRIDGE__V1__WELCOME__INIT;
    w.broker = "carebridge-broker " CB_VERSION;
    w.heartbeat_ms = b->cfg->heartbeat_ms;
    w.max_event_bytes = b->cfg->max_event_bytes;
    w.window = b->cfg->window;
    cb_frame reply = CAREBRIDGE__V1__FRAME__INIT;
    reply.ref = f->ref;
    reply.kind_case = CAREBRIDGE__V1__FRAME__KIND_WELCOME;
    reply.welcome = &w;
    send_frame(b, p, &reply);
    cb_log(CB_LOG_INFO, "hello agency=%s receive=%s client=%s", h->agency, h->receive ? "yes" : "no",
           h->client[0] && cb_printable(h->client) ? h->client : "-");
}

/* Returns true when the frame was kept (ownership moved into the batch). */
static bool on_publish(cb_broker *b, int p, cb_frame *f)
{
    const cb_envelope *ev = f->publish->event;
    /* Intake refuses an id that is not loggable; until then, never echo it. */
    const char *id = ev && cb_printable(ev->event_id) ? ev->event_id : "";
    cb_error err = {0};
    if (b->peers[p].agency < 0) {
        send_nack(b, p, f->ref, id, CB_HELLO_REQUIRED, "say hello as your agency before publishing", 0);
        return false;
    }
    if (!ev) {
        send_nack(b, p, f->ref, "", CB_MISSING_FIELD, "publish.event is missing", 0);
        return false;
    }
    if (cb_intake_check(b->cfg, &b->cfg->agencies[b->peers[p].agency], ev, &err)) {
        send_nack(b, p, f->ref, id, err.code, err.reason, 0);
        return false;
    }
    publish *pub = &b->pubs[b->n_pubs];
    *pub = (publish){.peer = p, .ref = f->ref, .frame = f};
    pub->len = cb_pack(&ev->base, &pub->bytes);
    if (!pub->bytes) {
        send_nack(b, p, f->ref, id, CB_STORE_UNAVAILABLE, "the broker is out of memory", 0);
        return false;
    }
    crypto_generichash(pub->digest, sizeof pub->digest, pub->bytes, pub->len, NULL, 0);
    b->n_pubs++;
    return true;
}

static void on_delivery_ack(cb_broker *b, int p, const cb_frame *f)
{
    if (b->peers[p].agency < 0) {
        send_nack(b, p, f->ref, "", CB_HELLO_REQUIRED, "say hello as your agency before acknowledging", 0);
        return;
    }
    b->acks[b->n_acks++] = (delivery_ack){(unsigned)b->peers[p].agency, f->delivery_ack->seq};
    cb_log(CB_LOG_DEBUG, "delivered agency=%s seq=%llu", peer_name(b, p), (unsigned long long)f->delivery_ack->seq);
}

/* An agency's connection that a restarted broker, or the peer expiry, has
 * forgotten learns so from its next heartbeat and says hello again. */
static void on_heartbeat(cb_broker *b, int p, const cb_frame *f)
{
    if (b->peers[p].agency < 0) {
        send_nack(b, p, f->ref, "", CB_HELLO_REQUIRED, "this connection is not known: say hello again", 0);
        return;
    }
    Carebridge__V1__Heartbeat hb = CAREBRIDGE__V1__HEARTBEAT__INIT;
    cb_frame reply = CAREBRIDGE__V1__FRAME__INIT;
    reply.ref = f->ref;
    reply.kind_case = CAREBRIDGE__V1__FRAME__KIND_HEARTBEAT;
    reply.heartbeat = &hb;
    send_frame(b, p, &reply);
}

static void on_frame(cb_broker *b, const uint8_t *rid, size_t rid_len, const uint8_t *buf, size_t len, int64_t now)
{
    int p = peer_for(b, rid, rid_len, now);
    cb_error err = {0};
    if (len > b->cfg->max_event_bytes) {
        uint64_t ref;
        char id[CB_EVENT_ID_MAX + 1];
        cb_peek_publish(buf, len, &ref, id, sizeof id);
        cb_fail(&err, CB_TOO_LARGE, "the frame is %zu bytes; limits.max_event_bytes is %u", len,
                b->cfg->max_event_bytes);
        send_nack(b, p, ref, cb_printable(id) ? id : "", err.code, err.reason, 0);
        return;
    }
    cb_frame *f = cb_frame_decode(buf, len, b->cfg->max_event_bytes, &err);
    if (!f) {
        uint64_t ref;
        char id[CB_EVENT_ID_MAX + 1];
        cb_peek_publish(buf, len, &ref, id, sizeof id);
        send_nack(b, p, ref, cb_printable(id) ? id : "", err.code, err.reason, 0);
        return;
    }
    switch (f->kind_case) {
    case CAREBRIDGE__V1__FRAME__KIND_HELLO: on_hello(b, p, f); break;
    case CAREBRIDGE__V1__FRAME__KIND_PUBLISH:
        if (on_publish(b, p, f))
            return;
        break;
    case CAREBRIDGE__V1__FRAME__KIND_DELIVERY_ACK: on_delivery_ack(b, p, f); break;
    case CAREBRIDGE__V1__FRAME__KIND_HEARTBEAT: on_heartbeat(b, p, f); break;
    case CAREBRIDGE__V1__FRAME__KIND_STATUS_REQUEST:
    case CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REQUEST:
    case CAREBRIDGE__V1__FRAME__KIND_REPLAY_REQUEST:
        b->reqs[b->n_reqs++] = (request){.peer = p, .ref = f->ref, .frame = f};
        return;
    default:
        send_nack(b, p, f->ref, "", CB_BAD_REQUEST,
                  "agencies may send hello, publish, deliveryAck, heartbeat and queries", 0);
        break;
    }
    cb_frame_free(&f);
}

/* Read every frame that is ready, up to one batch. */
static void read_batch(cb_broker *b, int64_t now)
{
    while (b->n_pubs < BATCH_MAX && b->n_acks < BATCH_MAX && b->n_reqs < BATCH_MAX) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, b->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&rid);
            return;
        }
        zmq_msg_init(&body);
        bool received = zmq_msg_more(&rid) && zmq_msg_recv(&body, b->router, 0) >= 0;
        if (received && !zmq_msg_more(&body))
            on_frame(b, zmq_msg_data(&rid), zmq_msg_size(&rid), zmq_msg_data(&body), zmq_msg_size(&body), now);
        /* A DEALER sends one frame per message: anything more is dropped unread. */
        while (received && zmq_msg_more(&body) && zmq_msg_recv(&body, b->router, 0) >= 0)
            ;
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
}

/* ------------------------------------------------------------------ commit */

static void store_publish(cb_broker *b, cb_txn *txn, publish *pub, uint64_t *seq)
{
    const cb_envelope *ev = pub->frame->publish->event;
    uint8_t digest[CB_DIGEST_BYTES];
    uint64_t existing;
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
    if (!cb_store_has_room(txn)) {
        pub->code = CB_STORE_FULL;
        snprintf(pub->reason, sizeof pub->reason,
                 "the store is past store.publish_fill_percent (%u%%); publishing resumes as deliveries drain it",
                 b->cfg->publish_fill_percent);
        return;
    }
    cb_person_key keys[CB_PERSON_KEYS_MAX];
    size_t n_keys = cb_intake_person_keys(ev->person, keys, CB_PERSON_KEYS_MAX);
    const char *key_ptrs[CB_PERSON_KEYS_MAX];
    for (size_t i = 0; i < n_keys; i++)
        key_ptrs[i] = keys[i];
    pub->seq = ++*seq;
    cb_store_put_event(txn, pub->seq, pub->bytes, pub->len, ev->event_id, pub->digest, key_ptrs, n_keys,
                       ev->from_agency, ev->case_ref[0] ? ev->case_ref : NULL, (const char *const *)ev->to_agencies,
                       ev->n_to_agencies, wall_ms());
}

static void replay(cb_broker *b, cb_txn *txn, request *r)
{
    const Carebridge__V1__ReplayRequest *q = r->frame->replay_request;
    int a = agency_index(b->cfg, q->agency);
    uint8_t digest[CB_DIGEST_BYTES];
    if (a < 0) {
        r->code = cb_fail(&r->err, CB_UNKNOWN_AGENCY, "replay.agency names no configured agency");
        return;
    }
    /* Checked before the store sees it: a key LMDB cannot hold would fail the
     * whole shared transaction, everyone's publishes with it. */
    if (!q->event_id[0] || strlen(q->event_id) > CB_EVENT_ID_MAX || !cb_printable(q->event_id)) {
        r->code = cb_fail(&r->err, CB_INVALID_FIELD, "replay.eventId must be 1 to %d printable bytes", CB_EVENT_ID_MAX);
        return;
    }
    if (!cb_store_find_id(txn, q->event_id, &r->seq, digest)) {
        r->code = cb_fail(&r->err, CB_UNKNOWN_EVENT, "replay.eventId names no stored event");
        return;
    }
    r->was_parked = cb_store_unpark(txn, q->agency, r->seq);
    cb_queue_entry e;
    bool queued = !r->was_parked && cb_store_queue_get(txn, q->agency, r->seq, &e);
    if (!r->was_parked && !queued)
        cb_store_queue_put(txn, q->agency, &(cb_queue_entry){r->seq, wall_ms(), 0});
    cb_log(CB_LOG_INFO, "replay event=%s agency=%s seq=%llu %s", q->event_id, q->agency, (unsigned long long)r->seq,
           r->was_parked ? "released from parked"
           : queued      ? "already queued"
                         : "queued again");
}

static bool has_work(const cb_broker *b, int64_t now)
{
    if (b->n_acks || b->n_pubs)
        return true;
    for (size_t i = 0; i < b->n_reqs; i++)
        if (b->reqs[i].frame->kind_case == CAREBRIDGE__V1__FRAME__KIND_REPLAY_REQUEST)
            return true;
    return cb_delivery_has_work(b->delivery, now);
}

/* One transaction for everything this iteration changes. On failure nothing
 * in memory moves: the publishes are refused and the rest is retried. */
static cb_code commit(cb_broker *b, bool with_publishes, int64_t now, cb_error *err)
{
    cb_txn *txn = cb_txn_begin(b->store, true, err);
    if (!txn)
        return err->code;
    uint64_t seq = b->last_seq;
    for (size_t i = 0; with_publishes && i < b->n_pubs; i++)
        if (b->pubs[i].code == CB_OK)
            store_publish(b, txn, &b->pubs[i], &seq);
    for (size_t i = 0; i < b->n_acks; i++)
        cb_store_queue_del(txn, b->cfg->agencies[b->acks[i].agency].id, b->acks[i].seq);
    for (size_t i = 0; i < b->n_reqs; i++)
        if (b->reqs[i].frame->kind_case == CAREBRIDGE__V1__FRAME__KIND_REPLAY_REQUEST)
            replay(b, txn, &b->reqs[i]);
    b->n_steps = cb_delivery_plan(b->delivery, txn, now, b->steps, cb_delivery_max_steps(b->delivery));
    cb_code code = cb_txn_commit(&txn, err);
    if (code)
        return code;
    b->last_seq = seq;
    return CB_OK;
}

/* The commit failed: refuse every answer that rests on a seq this batch would
 * have created (b->last_seq has not moved). That includes a duplicate of, or a
 * DUPLICATE_ID against, an event earlier in the same batch; a duplicate of an
 * event committed before still gets its ACK. */
static void refuse_publishes(cb_broker *b, cb_code code, const char *why)
{
    for (size_t i = 0; i < b->n_pubs; i++) {
        publish *pub = &b->pubs[i];
        if ((pub->code == CB_OK || pub->code == CB_DUPLICATE_ID) && pub->seq > b->last_seq) {
            pub->code = code;
            snprintf(pub->reason, sizeof pub->reason, "%s", why);
        }
    }
}

/* After a failed commit: refuse the publishes, keep nothing in memory from
 * the plan, and reopen the store so no state from the failed transaction
 * survives (see README, "When the store fails"). */
static void recover(cb_broker *b, cb_code code, const cb_error *err)
{
    cb_log(CB_LOG_ERROR, "commit failed (%s): %s; nothing from this batch is acknowledged; reopening the store",
           cb_code_name(code), err->reason);
    refuse_publishes(b, CB_STORE_UNAVAILABLE, "the store failed to commit or sync; nothing was acknowledged");
    for (size_t i = 0; i < b->n_reqs; i++)
        if (b->reqs[i].frame->kind_case == CAREBRIDGE__V1__FRAME__KIND_REPLAY_REQUEST && !b->reqs[i].code)
            b->reqs[i].code = cb_fail(&b->reqs[i].err, CB_STORE_UNAVAILABLE, "the store failed to commit");
    b->n_steps = 0;
    cb_error reopen_err = {0};
    if (!cb_store_reopen(b->store, &reopen_err)) {
        cb_log(CB_LOG_ERROR, "cannot reopen the store: %s; stopping", reopen_err.reason);
        b->exit_status = CB_EXIT_STORE_LOST;
    }
}

/* The transaction committed: move memory to match it. */
static void committed(cb_broker *b, int64_t now)
{
    for (size_t i = 0; i < b->n_pubs; i++) {
        const publish *pub = &b->pubs[i];
        if (pub->code || pub->duplicate)
            continue;
        const cb_envelope *ev = pub->frame->publish->event;
        for (size_t t = 0; t < ev->n_to_agencies; t++)
            cb_delivery_enqueued(b->delivery, (unsigned)agency_index(b->cfg, ev->to_agencies[t]), pub->seq);
    }
    for (size_t i = 0; i < b->n_acks; i++)
        cb_delivery_acked(b->delivery, b->acks[i].agency, b->acks[i].seq);
    for (size_t i = 0; i < b->n_reqs; i++) {
        request *r = &b->reqs[i];
        if (r->frame->kind_case == CAREBRIDGE__V1__FRAME__KIND_REPLAY_REQUEST && !r->code)
            cb_delivery_enqueued(b->delivery, (unsigned)agency_index(b->cfg, r->frame->replay_request->agency), r->seq);
    }
    cb_delivery_apply(b->delivery, b->steps, b->n_steps, now);
}

static void commit_batch(cb_broker *b, int64_t now)
{
    if (!has_work(b, now))
        return;
    cb_error err = {0};
    cb_code code = commit(b, true, now, &err);
    if (code == CB_STORE_FULL) {
        cb_log(CB_LOG_WARN, "store full: %s; refusing this batch's publishes", err.reason);
        refuse_publishes(b, CB_STORE_FULL, "the store is full; nothing was written, retry later");
        code = commit(b, false, now, &err); /* acks and deliveries still go through */
    }
    if (code)
        recover(b, code, &err);
    else
        committed(b, now);
    b->n_acks = 0; /* applied, or left queued to be redelivered */
}

/* ------------------------------------------------------------------ answers */

static void log_event(const publish *pub)
{
    const cb_envelope *ev = pub->frame->publish->event;
    char to[512] = "", who[CB_PSEUDONYM_LEN];
    size_t used = 0;
    for (size_t i = 0; i < ev->n_to_agencies && used < sizeof to; i++)
        used += (size_t)snprintf(to + used, sizeof to - used, "%s%s", i ? "," : "", ev->to_agencies[i]);
    cb_log(CB_LOG_INFO, "event id=%s type=%s from=%s to=%s seq=%llu person=%s%s", ev->event_id, cb_body_name(ev),
           ev->from_agency, to, (unsigned long long)pub->seq, cb_log_person(ev->person, who),
           pub->duplicate ? " duplicate=yes" : "");
}

static void feed(cb_broker *b, const publish *pub)
{
    const cb_envelope *ev = pub->frame->publish->event;
    uint8_t *buf;
    size_t len = cb_pack_deliver(pub->seq, 0, pub->bytes, pub->len, &buf);
    if (!len)
        return;
    char topic[160];
    for (size_t i = 0; i <= ev->n_to_agencies; i++) {
        /* One copy per recipient so a subscriber can filter by agency, and one
         * under "*" for whoever watches everything. */
        snprintf(topic, sizeof topic, "%s.%s", i < ev->n_to_agencies ? ev->to_agencies[i] : "*", cb_body_name(ev));
        if (zmq_send(b->feed, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
            zmq_send(b->feed, buf, len, ZMQ_DONTWAIT);
    }
    free(buf);
}

static void answer_publishes(cb_broker *b)
{
    /* The log has each event's line before its sender has the ACK. */
    for (size_t i = 0; i < b->n_pubs; i++)
        if (!b->pubs[i].code)
            log_event(&b->pubs[i]);
    cb_log_flush();
    for (size_t i = 0; i < b->n_pubs; i++) {
        publish *pub = &b->pubs[i];
        const char *id = pub->frame->publish->event->event_id;
        if (pub->code) {
            send_nack(b, pub->peer, pub->ref, id, pub->code, pub->reason, pub->code == CB_DUPLICATE_ID ? pub->seq : 0);
        } else {
            Carebridge__V1__Ack ack = CAREBRIDGE__V1__ACK__INIT;
            ack.event_id = (char *)id;
            ack.seq = pub->seq;
            ack.duplicate = pub->duplicate;
            cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
            f.ref = pub->ref;
            f.kind_case = CAREBRIDGE__V1__FRAME__KIND_ACK;
            f.ack = &ack;
            send_frame(b, pub->peer, &f);
            if (!pub->duplicate)
                feed(b, pub);
        }
        cb_frame_free(&pub->frame);
        free(pub->bytes);
    }
    b->n_pubs = 0;
}

static void answer_requests(cb_broker *b)
{
    if (!b->n_reqs)
        return;
    cb_error err = {0};
    cb_txn *txn = cb_txn_begin(b->store, false, &err);
    cb_agency_live live[b->cfg->n_agencies];
    for (unsigned a = 0; a < b->cfg->n_agencies; a++)
        live[a] = (cb_agency_live){false, cb_delivery_in_flight(b->delivery, a)};
    for (int p = 0; p < PEERS_MAX; p++)
        if (b->peers[p].in_use && b->peers[p].agency >= 0)
            live[b->peers[p].agency].connected = true;
    for (size_t i = 0; i < b->n_reqs; i++) {
        request *r = &b->reqs[i];
        cb_frame reply = CAREBRIDGE__V1__FRAME__INIT;
        Carebridge__V1__ReplayReply replayed = CAREBRIDGE__V1__REPLAY_REPLY__INIT;
        ProtobufCMessage *owned = NULL;
        reply.ref = r->ref;
        if (!r->code && !txn)
            r->err = err, r->code = err.code;
        if (!r->code) {
            switch (r->frame->kind_case) {
            case CAREBRIDGE__V1__FRAME__KIND_STATUS_REQUEST:
                reply.kind_case = CAREBRIDGE__V1__FRAME__KIND_STATUS_REPLY;
                reply.status_reply = cb_query_status(b->cfg, txn, live, cb_store_limit_bytes(b->store), &r->err);
                owned = (ProtobufCMessage *)reply.status_reply;
                break;
            case CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REQUEST:
                reply.kind_case = CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REPLY;
                reply.journey_reply = cb_query_journey(b->cfg, txn, r->frame->journey_request->person_id, &r->err);
                owned = (ProtobufCMessage *)reply.journey_reply;
                break;
            default:
                reply.kind_case = CAREBRIDGE__V1__FRAME__KIND_REPLAY_REPLY;
                reply.replay_reply = &replayed;
                replayed.seq = r->seq;
                replayed.was_parked = r->was_parked;
                owned = &replayed.base; /* marks success; not freed */
                break;
            }
            if (!owned)
                r->code = r->err.code;
        }
        if (r->code)
            send_nack(b, r->peer, r->ref, "", r->code, r->err.reason, 0);
        else
            send_frame(b, r->peer, &reply);
        if (owned && owned != &replayed.base)
            protobuf_c_message_free_unpacked(owned, NULL);
        cb_frame_free(&r->frame);
    }
    cb_txn_abort(&txn);
    b->n_reqs = 0;
}

static void send_deliveries(cb_broker *b)
{
    if (!b->n_steps)
        return;
    cb_error err = {0};
    cb_txn *txn = cb_txn_begin(b->store, false, &err);
    for (size_t i = 0; txn && i < b->n_steps; i++) {
        const cb_step *s = &b->steps[i];
        const char *agency = b->cfg->agencies[s->agency].id;
        if (s->kind == CB_STEP_PARK)
            cb_log(CB_LOG_WARN, "parked agency=%s seq=%llu after %u attempts; `carebridge replay` releases it", agency,
                   (unsigned long long)s->seq, b->cfg->max_attempts);
        if (s->kind != CB_STEP_SEND)
            continue;
        const uint8_t *event;
        size_t len;
        uint8_t *buf;
        int p = cb_delivery_consumer(b->delivery, s->agency);
        if (p < 0 || !cb_store_get_event(txn, s->seq, &event, &len))
            continue;
        size_t n = cb_pack_deliver(s->seq, s->attempt, event, len, &buf);
        if (n)
            send_bytes(b, p, buf, n);
        free(buf);
        cb_log(CB_LOG_DEBUG, "deliver agency=%s seq=%llu attempt=%u", agency, (unsigned long long)s->seq, s->attempt);
        if (s->attempt > 1)
            cb_log(CB_LOG_INFO, "redeliver agency=%s seq=%llu attempt=%u", agency, (unsigned long long)s->seq,
                   s->attempt);
    }
    cb_txn_abort(&txn);
    b->n_steps = 0;
}

/* ------------------------------------------------------------------ timers */

static void expire_peers(cb_broker *b, int64_t now)
{
    int64_t silent = 3 * (int64_t)b->cfg->heartbeat_ms;
    for (int p = 0; p < PEERS_MAX; p++) {
        if (!b->peers[p].in_use || now - b->peers[p].seen_ms <= silent)
            continue;
        if (b->peers[p].agency >= 0)
            cb_log(CB_LOG_INFO, "connection of agency=%s silent for %lld ms: forgetting it", peer_name(b, p),
                   (long long)(now - b->peers[p].seen_ms));
        forget_peer(b, p);
    }
}

int cb_broker_run(cb_broker *b, volatile sig_atomic_t *stop)
{
    int64_t next_expiry = mono_ms() + b->cfg->heartbeat_ms;
    while (!*stop && !b->exit_status) {
        int64_t now = mono_ms();
        int64_t wake = cb_delivery_next_deadline(b->delivery);
        if (wake > next_expiry)
            wake = next_expiry;
        long timeout = cb_delivery_has_work(b->delivery, now) ? 0 : wake > now ? (long)(wake - now) : 0;
        zmq_pollitem_t item = {b->router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, timeout) < 0 && errno != EINTR) {
            cb_log(CB_LOG_ERROR, "poll: %s", zmq_strerror(errno));
            return 1;
        }
        now = mono_ms();
        read_batch(b, now);
        commit_batch(b, now);
        answer_publishes(b);
        answer_requests(b);
        send_deliveries(b);
        if (now >= next_expiry) {
            expire_peers(b, now);
            next_expiry = now + b->cfg->heartbeat_ms;
        }
        cb_log_flush();
    }
    cb_log(CB_LOG_INFO, "stopping: last_seq=%llu", (unsigned long long)b->last_seq);
    cb_log_flush();
    return b->exit_status;
}

/* ------------------------------------------------------------------ set-up */

static bool load_identity(cb_broker *b, cb_error *err)
{
    uint8_t key[CB_PSEUDONYM_KEY_BYTES];
    size_t len = 0;
    cb_txn *txn = cb_txn_begin(b->store, true, err);
    if (!txn)
        return false;
    if (!cb_store_meta_get(txn, "pseudonym_key", key, sizeof key, &len) || len != sizeof key) {
        randombytes_buf(key, sizeof key);
        cb_store_meta_put(txn, "pseudonym_key", key, sizeof key);
    }
    b->last_seq = cb_store_last_seq(txn);
    if (cb_txn_commit(&txn, err))
        return false;
    cb_log_set_pseudonym_key(key);
    sodium_memzero(key, sizeof key);
    return true;
}

static void *bind_socket(cb_broker *b, int type, const char *endpoint, char *bound, cb_error *err)
{
    void *s = zmq_socket(b->zmq, type);
    int linger = 0, hwm = 100000;
    int64_t max_msg = 4 * (int64_t)b->cfg->max_event_bytes + 4096;
    size_t len = ENDPOINT_MAX;
    if (!s) {
        cb_fail(err, CB_BAD_REQUEST, "zmq_socket: %s", zmq_strerror(errno));
        return NULL;
    }
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (type == ZMQ_ROUTER)
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg);
    if (zmq_bind(s, endpoint) < 0 || zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, bound, &len) < 0) {
        cb_fail(err, CB_BAD_REQUEST, "cannot bind %s: %s", endpoint, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    return s;
}

cb_broker *cb_broker_new(const cb_config *cfg, cb_error *err)
{
    cb_broker *b = calloc(1, sizeof *b);
    if (!b) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    b->cfg = cfg;
    b->store = cb_store_open(cfg->data_dir, cfg->map_size_mb << 20, cfg->publish_fill_percent / 100.0, err);
    if (!b->store || !load_identity(b, err))
        goto fail;
    b->delivery = cb_delivery_new(cfg);
    b->steps = b->delivery ? calloc(cb_delivery_max_steps(b->delivery), sizeof *b->steps) : NULL;
    b->zmq = zmq_ctx_new();
    if (!b->steps || !b->zmq) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        goto fail;
    }
    b->router = bind_socket(b, ZMQ_ROUTER, cfg->endpoint, b->endpoint, err);
    if (!b->router)
        goto fail;
    b->feed = bind_socket(b, ZMQ_PUB, cfg->feed, b->feed_endpoint, err);
    if (!b->feed)
        goto fail;
    return b;
fail:
    cb_broker_destroy(&b);
    return NULL;
}

void cb_broker_destroy(cb_broker **b_p)
{
    cb_broker *b = *b_p;
    if (b) {
        if (b->router)
            zmq_close(b->router);
        if (b->feed)
            zmq_close(b->feed);
        if (b->zmq)
            zmq_ctx_term(b->zmq);
        free(b->steps);
        cb_delivery_destroy(&b->delivery);
        cb_store_destroy(&b->store);
        free(b);
    }
    *b_p = NULL;
}

const char *cb_broker_endpoint(const cb_broker *b)
{
    return b->endpoint;
}

const char *cb_broker_feed(const cb_broker *b)
{
    return b->feed_endpoint;
}
