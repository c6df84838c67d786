/* The network thread: connections, intake, answers. The store thread
 * (committer.c) commits; this one never touches the store after start-up.
 *
 * Each iteration: poll; read every frame that is ready into the open batch,
 * which the store thread takes the moment it is free; then answer each batch
 * the store thread has committed (ACK/NACK, query replies, deliveries,
 * feed). So one batch syncs while the next is read and the last answered. */
#include "broker.h"

#include <errno.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "access.h"
#include "batch.h"
#include "cb_check.h"
#include "cb_codec.h"
#include "clock.h"
#include "committer.h"
#include "dirlock.h"
#include "flagbook.h"
#include "intake.h"
#include "keyring.h"
#include "log.h"
#include "metrics.h"
#include "monitor.h"
#include "reader.h"
#include "sockets.h"
#include "store.h"
#include "zap.h"

#define BROKER_LOCK    "broker.lock" /* in the data directory: one broker per store */
#define SLOT_BITS      13
#define QUERY_EVERY    64               /* frames read or answered between looks for query answers */
#define READ_MAX       1024             /* frames read before answering and looking at the store thread again */
#define REFUSALS_PER_S 20               /* answers a second to a connection that has not said hello */
#define PEERS_MAX      (1 << SLOT_BITS) /* > BATCH_MAX: a full table evicts a peer silent since before this batch */
#define RID_MAX        256

/* A connection, known by its ROUTER routing id. A peer becomes an agency's
 * peer by saying hello; queries need no hello. */
typedef struct {
    uint8_t rid[RID_MAX];
    size_t rid_len;
    int agency; /* index into cfg->agencies, -1 before hello */
    int64_t seen_ms;
    /* Before hello, refusals are answered at a bounded rate: a flood from an
     * unknown connection cannot crowd out the agencies or flood the log. */
    int64_t refusal_second_ms;
    uint32_t refusals, refusals_dropped;
    int64_t heartbeat_answered_ms; /* a flood of heartbeats gets a few answers, not one each */
    unsigned generation;           /* bumped each time the slot is reused */
    bool in_use;
    bool proven; /* with CURVE: who is the principal its key proved */
    cb_principal who;
} peer;

struct cb_broker {
    const cb_config *cfg;
    cb_committer *committer;
    cb_reader *reader;
    cb_metrics *metrics; /* bumped here and on the store thread */
    cb_monitor *monitor; /* /metrics, /healthz, /readyz (NULL: broker.metrics off) */
    char metrics_endpoint[CB_ENDPOINT_MAX];
    void *zmq;
    void *router;
    void *feed;
    char endpoint[CB_ENDPOINT_MAX];
    char feed_endpoint[CB_ENDPOINT_MAX];
    char queries_endpoint[CB_ENDPOINT_MAX];
    /* Connections that have said hello, per agency: written here, read by
     * the query thread for status. */
    atomic_uint *connected;
    int exit_status;
    int feed_topics; /* distinct topics someone subscribes to */

    peer peers[PEERS_MAX];
    int last_peer;

    cb_batch *filling; /* the open batch, between cb_committer_open and _release */
    cb_dirlock *lock;  /* the data directory, held until the store is closed */

    /* CURVE (broker.key_file): the keys, and the handler that checks them
     * at each handshake on this thread's context. NULL without CURVE. */
    cb_keyring *ring;
    cb_zap *zap;
    cb_keypair keypair;
};

static int agency_index(const cb_config *cfg, const char *id)
{
    const cb_agency *a = cb_config_agency(cfg, id);
    return a ? (int)(a - cfg->agencies) : -1;
}

/* ------------------------------------------------------------------ peers */

static cb_peer_token token_of(const cb_broker *b, int p)
{
    return (int)((b->peers[p].generation & 0x7FFFF) << SLOT_BITS) | p;
}

/* The slot a token names, or -1 when that connection has gone. */
static int peer_of(const cb_broker *b, cb_peer_token t)
{
    int p = t & (PEERS_MAX - 1);
    return b->peers[p].in_use && token_of(b, p) == t ? p : -1;
}

static const cb_principal *who(const cb_broker *b, int p);

static void lane_op(cb_broker *b, cb_lane_op_kind kind, int agency, uint32_t window, int p)
{
    cb_batch *f = b->filling;
    if (f->n_ops == sizeof f->ops / sizeof f->ops[0])
        return;
    cb_lane_op *op = &f->ops[f->n_ops++];
    *op = (cb_lane_op){.kind = kind, .agency = (unsigned)agency, .window = window, .peer = token_of(b, p)};
    if (b->peers[p].proven)
        memcpy(op->fingerprint, b->peers[p].who.fingerprint, sizeof op->fingerprint);
}

/* Which agency peer p serves from now on (-1: none), kept in the per-agency
 * counts status reads. */
static void peer_serves(cb_broker *b, int p, int agency)
{
    if (b->peers[p].agency == agency)
        return;
    if (b->peers[p].agency >= 0)
        atomic_fetch_sub(&b->connected[b->peers[p].agency], 1);
    if (agency >= 0)
        atomic_fetch_add(&b->connected[agency], 1);
    b->peers[p].agency = agency;
}

static void forget_peer(cb_broker *b, int p)
{
    if (b->peers[p].agency >= 0)
        lane_op(b, CB_LANE_DETACH, 0, 0, p);
    peer_serves(b, p, -1);
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
    *p = (peer){.rid_len = len, .agency = -1, .seen_ms = now, .generation = p->generation + 1, .in_use = true};
    memcpy(p->rid, rid, len);
    return b->last_peer = free_slot;
}

/* The principal a proven connection is; NULL without CURVE (README, "Trust"). */
static const cb_principal *who(const cb_broker *b, int p)
{
    return b->ring && b->peers[p].proven ? &b->peers[p].who : NULL;
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

static void send_nack_frame(cb_broker *b, int p, uint64_t ref, const Carebridge__V1__Nack *nack)
{
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.ref = ref;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_NACK;
    f.nack = (Carebridge__V1__Nack *)nack;
    send_frame(b, p, &f);
}

/* Whether to answer a refusal to peer p now: always once it has said hello;
 * before that, REFUSALS_PER_S a second. (The client library needs only one
 * HELLO_REQUIRED to say hello again, and its resend timer covers the rest.) */
static bool refusal_allowed(cb_broker *b, int p)
{
    peer *pe = &b->peers[p];
    if (pe->agency >= 0)
        return true;
    int64_t now = pe->seen_ms;
    if (now - pe->refusal_second_ms >= 1000) {
        if (pe->refusals_dropped)
            cb_log(CB_LOG_WARN,
                   "left %u frames unanswered from a connection that has not said hello (over %d a "
                   "second)",
                   pe->refusals_dropped, REFUSALS_PER_S);
        pe->refusal_second_ms = now;
        pe->refusals = pe->refusals_dropped = 0;
    }
    if (pe->refusals < REFUSALS_PER_S) {
        pe->refusals++;
        return true;
    }
    if (!pe->refusals_dropped++)
        cb_log(CB_LOG_WARN,
               "more than %d frames this second from a connection that has not said hello: the rest "
               "go unanswered",
               REFUSALS_PER_S);
    return false;
}

static void send_nack(cb_broker *b, int p, uint64_t ref, const char *event_id, cb_code code, const char *reason,
                      uint64_t existing)
{
    if (!refusal_allowed(b, p))
        return;
    Carebridge__V1__Nack nack = CAREBRIDGE__V1__NACK__INIT;
    nack.event_id = (char *)event_id;
    nack.code = (Carebridge__V1__ErrorCode)code;
    nack.reason = (char *)reason;
    nack.existing_seq = existing;
    cb_metrics_nack(b->metrics, code);
    /* Logged (a warning is flushed at once) before the sender can read the answer. */
    cb_log_text_buf id;
    cb_log(CB_LOG_WARN, "nack event=%s from=%s code=%s: %s", cb_log_text(event_id, id), peer_name(b, p),
           cb_code_name(code), reason);
    send_nack_frame(b, p, ref, &nack);
}

/* A refusal the audit records: answered only once its record is committed,
 * so no refusal leaves unrecorded (README, "Trust"). */
static void refuse_audited(cb_broker *b, int p, uint64_t ref, const char *event_id, const cb_error *err,
                           const char *action, const char *agency)
{
    cb_batch *bt = b->filling;
    if (bt->n_reqs == BATCH_REPLAYS) { /* cannot happen: the batch had room for this frame */
        send_nack(b, p, ref, event_id, CB_BUSY, "the broker is busy; retry shortly", 0);
        return;
    }
    cb_request *r = &bt->reqs[bt->n_reqs++];
    *r = (cb_request){.peer = token_of(b, p), .ref = ref, .refusal = true, .audited = true, .err = *err};
    snprintf(r->replay_id, sizeof r->replay_id, "%s", event_id);
    r->audit = cb_audit_of(who(b, p), peer_name(b, p), action);
    r->audit.permitted = false;
    r->audit.code = err->code;
    snprintf(r->audit.detail, sizeof r->audit.detail, "asked for agency=%.63s", agency ? agency : "-");
}

/* ------------------------------------------------------------------ intake */

static void on_hello(cb_broker *b, int p, const cb_frame *f)
{
    const Carebridge__V1__Hello *h = f->hello;
    int a = agency_index(b->cfg, h->agency);
    cb_error err = {0};
    if (cb_access_hello(b->cfg, who(b, p), h->agency, h->receive, &err)) {
        refuse_audited(b, p, f->ref, "", &err, "hello", cb_printable(h->agency) ? h->agency : "?");
        return;
    }
    if (a < 0) {
        char reason[240];
        snprintf(reason, sizeof reason, "hello.agency names no configured agency (configured: %s)",
                 b->cfg->agency_list);
        send_nack(b, p, f->ref, "", CB_UNKNOWN_AGENCY, reason, 0);
        return;
    }
    if (b->peers[p].agency >= 0 && b->peers[p].agency != a)
        lane_op(b, CB_LANE_DETACH, 0, 0, p); /* it served another agency until now */
    peer_serves(b, p, a);
    if (h->receive)
        lane_op(b, CB_LANE_ATTACH, a, h->window, p);
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
    cb_log_text_buf client;
    cb_log(CB_LOG_INFO, "hello agency=%s receive=%s client=%s", h->agency, h->receive ? "yes" : "no",
           cb_log_text(h->client, client));
}

static void on_publish(cb_broker *b, int p, cb_frame *f)
{
    cb_envelope *ev = f->publish->event;
    /* Intake refuses an id that is not printable; until then, never echo it. */
    const char *id = ev && cb_printable(ev->event_id) ? ev->event_id : "";
    cb_error err = {0};
    if (cb_access_agency_frame(who(b, p), "publish", &err)) {
        refuse_audited(b, p, f->ref, id, &err, "publish", NULL);
        return;
    }
    if (b->peers[p].agency < 0) {
        send_nack(b, p, f->ref, id, CB_HELLO_REQUIRED, "say hello as your agency before publishing", 0);
        return;
    }
    if (!ev) {
        send_nack(b, p, f->ref, "", CB_MISSING_FIELD, "publish.event is missing", 0);
        return;
    }
    cb_warnings warnings = cb_intake_normalise(ev);
    if (cb_intake_check(b->cfg, &b->cfg->agencies[b->peers[p].agency], ev, &err)) {
        if (err.code == CB_AGENCY_MISMATCH) /* acting as another agency: recorded, like a mismatched hello */
            refuse_audited(b, p, f->ref, id, &err, "publish", cb_printable(ev->from_agency) ? ev->from_agency : "?");
        else
            send_nack(b, p, f->ref, id, err.code, err.reason, 0);
        return;
    }
    if (!cb_batch_add_publish(b->filling, token_of(b, p), f->ref, f, warnings))
        send_nack(b, p, f->ref, id, CB_STORE_UNAVAILABLE, "the broker is out of memory", 0);
}

static void on_delivery_ack(cb_broker *b, int p, const cb_frame *f)
{
    cb_error err = {0};
    if (cb_access_agency_frame(who(b, p), "acknowledge a delivery", &err)) {
        refuse_audited(b, p, f->ref, "", &err, "deliveryAck", NULL);
        return;
    }
    if (b->peers[p].agency < 0) {
        send_nack(b, p, f->ref, "", CB_HELLO_REQUIRED, "say hello as your agency before acknowledging", 0);
        return;
    }
    cb_batch *bt = b->filling;
    bt->acks[bt->n_acks++] =
        (cb_delivery_ack){token_of(b, p), f->ref, (unsigned)b->peers[p].agency, f->delivery_ack->seq, false};
    cb_log(CB_LOG_DEBUG, "delivered agency=%s seq=%llu", peer_name(b, p), (unsigned long long)f->delivery_ack->seq);
}

/* A clean close: what was in flight to the connection goes back uncounted,
 * and it is no longer connected. */
static void on_goodbye(cb_broker *b, int p)
{
    if (b->peers[p].agency >= 0) {
        lane_op(b, CB_LANE_RELEASE, 0, 0, p);
        cb_log(CB_LOG_INFO, "goodbye agency=%s", peer_name(b, p));
    }
    peer_serves(b, p, -1);
    b->peers[p].in_use = false;
}

/* An agency's connection that a restarted broker, or the peer expiry, has
 * forgotten learns so from its next heartbeat and says hello again. A known
 * one is answered, but no more often than four times a heartbeat interval:
 * its client needs to hear something once in three intervals, and a flood of
 * heartbeats would otherwise cost a send each. */
static void on_heartbeat(cb_broker *b, int p, uint64_t ref)
{
    peer *pe = &b->peers[p];
    if (pe->agency < 0) {
        send_nack(b, p, ref, "", CB_HELLO_REQUIRED, "this connection is not known: say hello again", 0);
        return;
    }
    if (pe->heartbeat_answered_ms && pe->seen_ms - pe->heartbeat_answered_ms < b->cfg->heartbeat_ms / 4)
        return;
    pe->heartbeat_answered_ms = pe->seen_ms;
    Carebridge__V1__Heartbeat hb = CAREBRIDGE__V1__HEARTBEAT__INIT;
    cb_frame reply = CAREBRIDGE__V1__FRAME__INIT;
    reply.ref = ref;
    reply.kind_case = CAREBRIDGE__V1__FRAME__KIND_HEARTBEAT;
    reply.heartbeat = &hb;
    send_frame(b, p, &reply);
}

/* What only the running broker knows of each agency, for status: which are
 * connected, and the store thread's lanes. On the query thread. */
static void live_of(void *arg, cb_agency_live *live)
{
    cb_broker *b = arg;
    for (unsigned a = 0; a < b->cfg->n_agencies; a++)
        live[a].connected = atomic_load(&b->connected[a]) > 0;
    cb_committer_live(b->committer, live);
}

/* The query thread's audit records, written by the store thread before
 * their reads are answered. On the query thread. */
static bool audit_of(void *arg, const cb_audit_entry *entries, size_t n)
{
    cb_broker *b = arg;
    return cb_committer_audit(b->committer, entries, n);
}

static void submit_query(cb_broker *b, int p, uint64_t ref, const uint8_t *buf, size_t len)
{
    if (!cb_reader_submit(b->reader, token_of(b, p), ref, buf, len, who(b, p))) {
        char reason[96];
        snprintf(reason, sizeof reason, "the broker has %d queries waiting; retry shortly", CB_READER_WAITING);
        send_nack(b, p, ref, "", CB_BUSY, reason, 0);
    }
}

/* Frames answered from their bytes alone, nothing decoded: a heartbeat, and
 * a publish or acknowledgement from a connection that has not said hello
 * (refused). (The handlers below check the hello again: they index the
 * agency table.) */
static bool answered_from_bytes(cb_broker *b, int p, const uint8_t *buf, size_t len)
{
    uint64_t ref;
    char id[CB_EVENT_ID_MAX + 1];
    uint32_t kind = cb_peek_kind(buf, len);
    if (kind == CAREBRIDGE__V1__FRAME__KIND_HEARTBEAT) {
        cb_peek_publish(buf, len, &ref, id, 0);
        on_heartbeat(b, p, ref);
        return true;
    }
    if (b->peers[p].agency >= 0 || who(b, p))
        return false; /* a proven key's frames are decoded: its refusals name its role */
    switch (kind) {
    case CAREBRIDGE__V1__FRAME__KIND_PUBLISH:
        cb_peek_publish(buf, len, &ref, id, sizeof id);
        send_nack(b, p, ref, cb_printable(id) ? id : "", CB_HELLO_REQUIRED,
                  "say hello as your agency before publishing", 0);
        return true;
    case CAREBRIDGE__V1__FRAME__KIND_DELIVERY_ACK:
        cb_peek_publish(buf, len, &ref, id, 0);
        send_nack(b, p, ref, "", CB_HELLO_REQUIRED, "this connection is not known: say hello again", 0);
        return true;
    default: return false;
    }
}

static void dispatch(cb_broker *b, int p, const uint8_t *buf, size_t len)
{
    cb_error err = {0};
    cb_frame *f = cb_frame_decode_with(buf, len, b->cfg->max_event_bytes, cb_arena_allocator(b->filling->arena), &err);
    if (!f) {
        uint64_t ref;
        char id[CB_EVENT_ID_MAX + 1];
        cb_peek_publish(buf, len, &ref, id, sizeof id);
        if (err.code == CB_TOO_LARGE)
            cb_fail(&err, CB_TOO_LARGE, "the frame is %zu bytes; limits.max_event_bytes is %u", len,
                    b->cfg->max_event_bytes);
        send_nack(b, p, ref, cb_printable(id) ? id : "", err.code, err.reason, 0);
        return;
    }
    switch (f->kind_case) {
    case CAREBRIDGE__V1__FRAME__KIND_HELLO: on_hello(b, p, f); break;
    case CAREBRIDGE__V1__FRAME__KIND_PUBLISH: on_publish(b, p, f); break;
    case CAREBRIDGE__V1__FRAME__KIND_DELIVERY_ACK: on_delivery_ack(b, p, f); break;
    case CAREBRIDGE__V1__FRAME__KIND_HEARTBEAT: on_heartbeat(b, p, f->ref); break;
    case CAREBRIDGE__V1__FRAME__KIND_GOODBYE: on_goodbye(b, p); break;
    case CAREBRIDGE__V1__FRAME__KIND_REPLAY_REQUEST: {
        const char *to = f->replay_request->agency;
        if (cb_access_replay(b->cfg, who(b, p), agency_index(b->cfg, to), &err)) {
            refuse_audited(b, p, f->ref, "", &err, "replay", cb_printable(to) ? to : "?");
            break;
        }
        cb_request *r = &b->filling->reqs[b->filling->n_reqs++];
        *r = (cb_request){.peer = token_of(b, p), .ref = f->ref, .frame = f, .audited = true};
        r->audit = cb_audit_of(who(b, p), peer_name(b, p), "replay");
        snprintf(r->audit.detail, sizeof r->audit.detail, "asked for agency=%.63s", cb_printable(to) ? to : "?");
        break;
    }
    default:
        if (cb_reader_answers(f->kind_case))
            submit_query(b, p, f->ref, buf, len);
        else
            send_nack(b, p, f->ref, "", CB_BAD_REQUEST,
                      "agencies may send hello, publish, deliveryAck, heartbeat, goodbye and queries", 0);
        break;
    }
}

/* With CURVE, a connection is the principal its key proved at the handshake
 * (the User-Id and Fingerprint ZAP gave it), checked on every frame: a
 * routing id a closed connection had may come back on another's. False when the key
 * is no longer known (revoked since the handshake): the frame is dropped.
 * (A proven agency still says hello: that is what makes it connected, and
 * asks for its queue.) */
static bool identify(cb_broker *b, int *p, const uint8_t *rid, size_t rid_len, const char *uid, const char *fp,
                     int64_t now)
{
    peer *pe = &b->peers[*p];
    if (pe->proven && uid && fp && !strcmp(pe->who.name, uid) && !strcmp(pe->who.fingerprint, fp))
        return true;
    if (pe->proven) {
        forget_peer(b, *p);
        pe = &b->peers[ *p = peer_for(b, rid, rid_len, now)];
    }
    if (!uid || !fp || !cb_keyring_find_named(b->ring, uid, fp, &pe->who))
        return false;
    pe->proven = true;
    return true;
}

static void on_frame(cb_broker *b, const uint8_t *rid, size_t rid_len, const uint8_t *buf, size_t len, const char *uid,
                     const char *fp, int64_t now)
{
    int p = peer_for(b, rid, rid_len, now);
    if (b->ring && !identify(b, &p, rid, rid_len, uid, fp, now))
        return;
    if (answered_from_bytes(b, p, buf, len))
        return;
    /* Decoded into the batch's arena, freed all at once when the batch is
     * answered; a frame the batch does not keep gives its memory back now. */
    cb_batch *bt = b->filling;
    cb_arena_mark mark = cb_arena_save(bt->arena);
    size_t kept = bt->n_pubs + bt->n_reqs;
    dispatch(b, p, buf, len);
    if (bt->n_pubs + bt->n_reqs == kept)
        cb_arena_restore(bt->arena, mark);
}

static void answer_queries(cb_broker *b);

/* Read what is ready, until the batch is full or READ_MAX frames have been
 * read: frames that give the store nothing to do count too, so a flood of
 * them cannot hold the open batch (and the store thread) back. Answers the
 * query thread has ready go out between, so none waits for the whole read. */
static void read_batch(cb_broker *b, int64_t now)
{
    for (int frames = 0; frames < READ_MAX && cb_batch_has_room(b->filling); frames++) {
        if (frames % QUERY_EVERY == QUERY_EVERY - 1)
            answer_queries(b);
        cb_routed m;
        bool got = cb_recv_routed(b->router, &m);
        const char *uid = NULL, *fp = NULL;
        if (got && m.single && b->ring) {
            uid = zmq_msg_gets(&m.body, "User-Id");
            fp = zmq_msg_gets(&m.body, "Fingerprint");
        }
        if (got && m.single)
            on_frame(b, zmq_msg_data(&m.rid), zmq_msg_size(&m.rid), zmq_msg_data(&m.body), zmq_msg_size(&m.body), uid,
                     fp, now);
        cb_routed_close(&m);
        if (!got)
            return;
    }
}

/* ------------------------------------------------------------------ answers */

static void log_event(const cb_publish *pub)
{
    const cb_envelope *ev = pub->frame->publish->event;
    char to[512] = "";
    cb_log_text_buf id;
    size_t used = 0;
    for (size_t i = 0; i < ev->n_to_agencies && used < sizeof to; i++)
        used += (size_t)snprintf(to + used, sizeof to - used, "%s%s", i ? "," : "", ev->to_agencies[i]);
    cb_log(CB_LOG_INFO, "event id=%s type=%s from=%s to=%s seq=%llu person=%s%s", cb_log_text(ev->event_id, id),
           cb_body_name(ev), ev->from_agency, to, (unsigned long long)pub->seq, pub->person,
           pub->duplicate ? " duplicate=yes" : "");
}

/* XPUB passes on the first subscription to a topic and the last
 * unsubscription from it: their difference says whether anyone listens. */
/* With CURVE the feed is ZMQ_XPUB_MANUAL: a subscription takes effect only
 * when the subscriber's key may see what it asks for (its own agency's
 * topics, or a coordinator's agencies'), and each is audited. Anything is
 * packed then, as who listens is not counted. Read only while the batch is
 * open, where the audit records go. */
static void judge_subscriptions(cb_broker *b)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (b->filling && cb_batch_has_room(b->filling) && zmq_msg_recv(&m, b->feed, ZMQ_DONTWAIT) > 0) {
        const char *topic = zmq_msg_data(&m);
        size_t len = zmq_msg_size(&m) - 1;
        const char *uid = zmq_msg_gets(&m, "User-Id"), *fp = zmq_msg_gets(&m, "Fingerprint");
        cb_principal who;
        bool known = uid && fp && cb_keyring_find_named(b->ring, uid, fp, &who);
        if (topic[0] == 0) { /* an unsubscription, the subscriber's own or its connection's end */
            zmq_setsockopt(b->feed, ZMQ_UNSUBSCRIBE, topic + 1, len);
            continue;
        }
        char asked[128];
        snprintf(asked, sizeof asked, "%.*s", (int)(len < 100 ? len : 100), topic + 1);
        cb_error err = {0};
        bool ok = known && cb_access_subscribe(b->cfg, &who, asked, &err);
        if (ok)
            zmq_setsockopt(b->feed, ZMQ_SUBSCRIBE, topic + 1, len);
        else if (!known)
            cb_fail(&err, CB_NOT_PERMITTED, "the subscriber's key is no longer known");
        cb_audit_entry *a = &b->filling->audits[b->filling->n_audits++];
        *a = cb_audit_of(known ? &who : NULL, NULL, "subscribe");
        a->permitted = ok;
        a->code = err.code;
        cb_log_text_buf t;
        snprintf(a->detail, sizeof a->detail, "topic=%.80s", cb_log_text(asked, t));
        if (!ok)
            cb_log(CB_LOG_WARN, "feed: refused a subscription to '%s' by %s: %s", cb_log_text(asked, t),
                   known ? who.name : "-", err.reason);
    }
    zmq_msg_close(&m);
}

static void count_subscriptions(cb_broker *b)
{
    if (b->ring) {
        judge_subscriptions(b);
        b->feed_topics = 1;
        return;
    }
    uint8_t msg[256];
    int n;
    while ((n = zmq_recv(b->feed, msg, sizeof msg, ZMQ_DONTWAIT)) > 0)
        b->feed_topics += msg[0] == 1 ? 1 : msg[0] == 0 && b->feed_topics > 0 ? -1 : 0;
}

static void feed(cb_broker *b, const cb_publish *pub)
{
    if (!b->feed_topics)
        return; /* nobody listens: pack nothing */
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

/* One Acks frame per connection for all it is owed in this batch. Few
 * connections share a batch, so grouping by a scan per connection is cheap. */
static void send_acks(cb_broker *b, cb_batch *bt)
{
    ProtobufCAllocator *arena = cb_arena_allocator(bt->arena);
    bool *sent = arena->alloc(arena->allocator_data, bt->n_pubs * sizeof *sent + 1);
    Carebridge__V1__Ack *acks = arena->alloc(arena->allocator_data, bt->n_pubs * sizeof *acks + 1);
    Carebridge__V1__Ack **ptrs = arena->alloc(arena->allocator_data, bt->n_pubs * sizeof *ptrs + 1);
    Carebridge__V1__Warning *warnings = arena->alloc(arena->allocator_data, CB_WARN_COUNT * sizeof *warnings);
    if (!sent || !acks || !ptrs || !warnings)
        return; /* out of memory: the senders resend, and are answered as duplicates */
    /* Each warning's message is the same for every ACK that carries it. */
    for (unsigned w = 0; w < CB_WARN_COUNT; w++) {
        carebridge__v1__warning__init(&warnings[w]);
        warnings[w].field = (char *)cb_warning_field(w);
        warnings[w].reason = (char *)cb_warning_reason(w);
    }
    for (size_t i = 0; i < bt->n_pubs; i++)
        sent[i] = bt->pubs[i].code != CB_OK;
    for (size_t i = 0; i < bt->n_pubs; i++) {
        if (sent[i])
            continue;
        size_t n = 0;
        for (size_t j = i; j < bt->n_pubs; j++) {
            const cb_publish *pub = &bt->pubs[j];
            if (sent[j] || pub->peer != bt->pubs[i].peer)
                continue;
            sent[j] = true;
            carebridge__v1__ack__init(&acks[n]);
            acks[n].event_id = pub->frame->publish->event->event_id;
            acks[n].seq = pub->seq;
            acks[n].duplicate = pub->duplicate;
            acks[n].ref = pub->ref;
            acks[n].warnings = arena->alloc(arena->allocator_data, CB_WARN_COUNT * sizeof *acks[n].warnings);
            for (unsigned w = 0; acks[n].warnings && w < CB_WARN_COUNT; w++)
                if (pub->warnings & (1u << w))
                    acks[n].warnings[acks[n].n_warnings++] = &warnings[w];
            acks[n].flags =
                pub->flags ? arena->alloc(arena->allocator_data, CB_FLAG_TYPES * sizeof *acks[n].flags) : NULL;
            for (unsigned t = 0; acks[n].flags && t < CB_FLAG_TYPES; t++)
                if (pub->flags & (1u << t))
                    acks[n].flags[acks[n].n_flags++] = (Carebridge__V1__Flag__Type)t;
            ptrs[n] = &acks[n];
            n++;
        }
        int p = peer_of(b, bt->pubs[i].peer);
        if (p < 0)
            continue;
        size_t duplicates = 0;
        for (size_t k = 0; k < n; k++)
            duplicates += acks[k].duplicate;
        cb_metrics_acks(b->metrics, n, duplicates);
        Carebridge__V1__Acks all = CAREBRIDGE__V1__ACKS__INIT;
        all.acks = ptrs;
        all.n_acks = n;
        cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
        f.kind_case = CAREBRIDGE__V1__FRAME__KIND_ACKS;
        f.acks = &all;
        send_frame(b, p, &f);
    }
}

static void answer_publishes(cb_broker *b, cb_batch *bt)
{
    count_subscriptions(b);
    /* The log has each event's line before its sender has the ACK. */
    for (size_t i = 0; i < bt->n_pubs; i++) {
        if (!bt->pubs[i].code)
            log_event(&bt->pubs[i]);
        if (i % QUERY_EVERY == QUERY_EVERY - 1)
            answer_queries(b); /* a full batch takes milliseconds to answer */
    }
    cb_log_flush();
    send_acks(b, bt);
    for (size_t i = 0; i < bt->n_pubs; i++) {
        cb_publish *pub = &bt->pubs[i];
        if (i % QUERY_EVERY == QUERY_EVERY - 1)
            answer_queries(b);
        int p = peer_of(b, pub->peer);
        if (pub->code && p >= 0)
            send_nack(b, p, pub->ref, pub->frame->publish->event->event_id, pub->code, pub->reason,
                      pub->code == CB_DUPLICATE_ID ? pub->seq : 0);
        else if (!pub->code && !pub->duplicate)
            feed(b, pub);
    }
    bt->n_pubs = 0;
}

/* Each flag raised or resolved, under a topic per agency it involves and
 * one for everyone ("flag.<agency>.<TYPE>", "flag.*.<TYPE>"). */
static void send_flag_notes(cb_broker *b, cb_batch *bt)
{
    for (size_t i = 0; i < bt->feed.n; i++) {
        const cb_flag_note *n = &bt->feed.notes[i];
        for (const char *topic = n->topics; *topic;) {
            size_t len = strcspn(topic, "\n");
            if (zmq_send(b->feed, topic, len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
                zmq_send(b->feed, n->frame, n->len, ZMQ_DONTWAIT);
            topic += len + (topic[len] == '\n');
        }
    }
    cb_flag_feed_clear(&bt->feed);
}

static void answer_requests(cb_broker *b, cb_batch *bt)
{
    for (size_t i = 0; i < bt->n_reqs; i++) {
        cb_request *r = &bt->reqs[i];
        int p = peer_of(b, r->peer);
        if (p >= 0 && r->err.code)
            send_nack(b, p, r->ref, r->refusal ? r->replay_id : "", r->err.code, r->err.reason, 0);
        else if (p >= 0 && r->reply)
            send_bytes(b, p, r->reply, r->reply_len);
        free(r->reply);
    }
    bt->n_reqs = 0;
}

/* A refused deliveryAck gets its NACK; the log gets one line per batch and
 * agency, not one per frame, so a flood of them cannot flood the log. */
static void answer_delivery_acks(cb_broker *b, cb_batch *bt)
{
    unsigned refused[b->cfg->n_agencies];
    uint64_t first[b->cfg->n_agencies];
    memset(refused, 0, sizeof refused);
    for (size_t i = 0; i < bt->n_acks; i++) {
        const cb_delivery_ack *a = &bt->acks[i];
        int p = peer_of(b, a->peer);
        if (!a->refused)
            continue;
        if (!refused[a->agency]++)
            first[a->agency] = a->seq;
        if (p < 0)
            continue;
        char reason[160];
        snprintf(reason, sizeof reason, "deliveryAck.seq %llu is not in flight to this connection; nothing was deleted",
                 (unsigned long long)a->seq);
        Carebridge__V1__Nack nack = CAREBRIDGE__V1__NACK__INIT;
        nack.code = CAREBRIDGE__V1__ERROR_CODE__NOT_IN_FLIGHT;
        nack.reason = reason;
        nack.seq = a->seq;
        send_nack_frame(b, p, a->ref, &nack);
    }
    for (unsigned ag = 0; ag < b->cfg->n_agencies; ag++)
        if (refused[ag])
            cb_log(CB_LOG_WARN,
                   "refused %u deliveryAck(s) from agency=%s (first seq=%llu) code=NOT_IN_FLIGHT: not in "
                   "flight to the connection that sent them; nothing was deleted",
                   refused[ag], b->cfg->agencies[ag].id, (unsigned long long)first[ag]);
}

static void send_deliveries(cb_broker *b, cb_batch *bt)
{
    for (size_t i = 0; i < bt->n_out; i++) {
        int p = peer_of(b, bt->out[i].peer);
        if (p >= 0)
            send_bytes(b, p, bt->out[i].frame, bt->out[i].len);
        free(bt->out[i].frame);
    }
    bt->n_out = 0;
}

/* The store thread is done with a batch: answer everything in it, and
 * empty it to be filled again. */
static void finish(cb_broker *b, cb_batch *bt)
{
    answer_publishes(b, bt);
    answer_queries(b); /* a batch's answers can take milliseconds to send */
    answer_delivery_acks(b, bt);
    answer_requests(b, bt);
    send_deliveries(b, bt);
    send_flag_notes(b, bt);
    bt->n_acks = bt->n_ops = bt->n_audits = 0;
    cb_arena_reset(bt->arena);
    if (bt->exit_status)
        b->exit_status = bt->exit_status;
}

static void answer_queries(cb_broker *b)
{
    cb_answer a;
    while (cb_reader_answer(b->reader, &a)) {
        int p = peer_of(b, a.peer);
        if (p >= 0 && !a.reply)
            send_nack(b, p, a.ref, "", a.err.code, a.err.reason, 0);
        else if (p >= 0)
            send_bytes(b, p, a.reply, a.len);
        free(a.reply);
    }
}

static void answer_done(cb_broker *b)
{
    cb_batch *done;
    while ((done = cb_committer_done(b->committer))) {
        finish(b, done);
        cb_committer_recycle(b->committer, done);
    }
}

/* ------------------------------------------------------------------ timers */

static void expire_peers(cb_broker *b, int64_t now)
{
    int64_t silent = 3 * (int64_t)b->cfg->heartbeat_ms;
    for (int p = 0; p < PEERS_MAX && cb_batch_has_room(b->filling); p++) {
        if (!b->peers[p].in_use || now - b->peers[p].seen_ms <= silent)
            continue;
        if (b->peers[p].agency >= 0)
            cb_log(CB_LOG_INFO, "connection of agency=%s silent for %lld ms: forgetting it", peer_name(b, p),
                   (long long)(now - b->peers[p].seen_ms));
        forget_peer(b, p);
    }
}

int cb_broker_run(cb_broker *b, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    int64_t next_expiry = cb_mono_ms() + b->cfg->heartbeat_ms;
    bool room = true;
    while (!*stop && !b->exit_status) {
        if (reload && *reload)
            return CB_BROKER_RELOAD; /* the store thread goes on committing meanwhile */
        int64_t now = cb_mono_ms();
        /* The network only while the open batch has room, so a full batch
         * waits for the store thread without this thread spinning. */
        zmq_pollitem_t items[] = {{NULL, cb_committer_fd(b->committer), ZMQ_POLLIN, 0},
                                  {NULL, cb_reader_fd(b->reader), ZMQ_POLLIN, 0},
                                  {b->router, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, room ? 3 : 2, next_expiry > now ? (long)(next_expiry - now) : 0) < 0 && errno != EINTR) {
            cb_log(CB_LOG_ERROR, "poll: %s", zmq_strerror(errno));
            return 1;
        }
        now = cb_mono_ms();
        b->filling = cb_committer_open(b->committer);
        count_subscriptions(b);
        b->filling->feed.wanted = b->feed_topics > 0; /* else the store thread packs no flag notes */
        read_batch(b, now);
        if (now >= next_expiry) {
            expire_peers(b, now);
            next_expiry = now + b->cfg->heartbeat_ms;
        }
        b->filling = NULL;
        cb_committer_release(b->committer);
        answer_done(b);
        answer_queries(b);
        room = cb_committer_open_has_room(b->committer);
        cb_log_flush();
    }
    if (cb_committer_quiesce(b->committer)) {
        answer_done(b); /* committed: their senders get their ACKs */
        answer_queries(b);
    } else {
        cb_log(CB_LOG_ERROR, "the store thread did not stop; stopping without its answers");
        b->exit_status = 1;
    }
    cb_log(CB_LOG_INFO, "stopping");
    cb_log_flush();
    return b->exit_status;
}

/* ------------------------------------------------------------------ set-up */

static bool load_identity(cb_store *store, cb_error *err)
{
    uint8_t key[CB_PSEUDONYM_KEY_BYTES];
    size_t len = 0;
    cb_txn *txn = cb_txn_begin(store, true, err);
    if (!txn)
        return false;
    if (!cb_store_meta_get(txn, "pseudonym_key", key, sizeof key, &len) || len != sizeof key) {
        randombytes_buf(key, sizeof key);
        cb_store_meta_put(txn, "pseudonym_key", key, sizeof key);
    }
    if (cb_txn_commit(&txn, err))
        return false;
    cb_log_set_pseudonym_key(key);
    sodium_memzero(key, sizeof key);
    return true;
}

/* The data directory, locked without creating anything when it already has
 * a lock file, else created and locked once the endpoints are bound: a start
 * refused for a busy directory or a busy endpoint leaves no trace. */
static bool lock_data(cb_broker *b, bool may_create, int *exit_status, cb_error *err)
{
    const char *dir = b->cfg->data_dir;
    pid_t holder;
    cb_dirlock_result r = may_create ? cb_dirlock_take(dir, BROKER_LOCK, &b->lock, &holder)
                                     : cb_dirlock_try(dir, BROKER_LOCK, &b->lock, &holder);
    if (r == CB_DIRLOCK_IN_USE) {
        char pid[32] = "a pid it has not yet written";
        if (holder)
            snprintf(pid, sizeof pid, "pid %ld", (long)holder);
        cb_fail(err, CB_STORE_UNAVAILABLE,
                "the data directory %s is in use by another broker (%s): stop it, or give "
                "this broker another --data",
                dir, pid);
        *exit_status = CB_EXIT_IN_USE;
        return false;
    }
    if (r == CB_DIRLOCK_FAILED) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "cannot lock the data directory %s: %s", dir, strerror(errno));
        return false;
    }
    return true;
}

/* Without CURVE anyone who can reach an endpoint can claim any agency: so
 * then only this machine may reach them. */
static bool exposure_allowed(const cb_config *cfg, cb_error *err)
{
    const char *names[] = {"broker.endpoint", "broker.feed", "broker.queries"};
    const char *eps[] = {cfg->endpoint, cfg->feed, cfg->queries};
    for (size_t i = 0; i < 3 && !cfg->key_file; i++)
        if (!cb_endpoint_local(eps[i])) {
            cb_fail(err, CB_BAD_REQUEST,
                    "%s %s is reachable from other machines, and CURVE is off: set broker.key_file (its key pair from "
                    "`carebridge keys new`) and each agency's keys, or bind to 127.0.0.1 or ipc://",
                    names[i], eps[i]);
            return false;
        }
    return true;
}

/* CURVE on, from broker.key_file: the broker's key pair, the keyring, and
 * the ZAP handler, running before any socket that needs it binds. */
static bool start_curve(cb_broker *b, cb_error *err)
{
    char why[400];
    if (!b->cfg->key_file)
        return true;
    if (!cb_keypair_read(b->cfg->key_file, &b->keypair, why, sizeof why)) {
        cb_fail(err, CB_BAD_REQUEST, "broker.key_file: %s", why);
        return false;
    }
    if (!(b->ring = cb_keyring_new(b->cfg, b->cfg))) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return false;
    }
    /* For the test that a broker whose handler is missing still lets no one
     * in (ZMQ_ZAP_ENFORCE_DOMAIN): it can only make the broker refuse more. */
    if (getenv("CAREBRIDGE_TEST_NO_ZAP"))
        cb_log(CB_LOG_WARN, "CAREBRIDGE_TEST_NO_ZAP is set: no ZAP handler, so every handshake will fail");
    else if (!(b->zap = cb_zap_start(b->zmq, b->ring, "cb-zap", err)))
        return false;
    cb_log(CB_LOG_INFO, "curve on: broker key %s, %zu client keys known", b->keypair.public_z85,
           cb_keyring_size(b->ring));
    return true;
}

cb_broker *cb_broker_new(const cb_config *cfg, int *exit_status, cb_error *err)
{
    *exit_status = 1;
    cb_broker *b = calloc(1, sizeof *b);
    if (!b) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    b->cfg = cfg;
    cb_store *store = NULL;
    if (!exposure_allowed(cfg, err)) {
        *exit_status = 2;
        goto fail;
    }
    char why[600];
    if (!cb_dir_private(cfg->data_dir, "the data directory", why, sizeof why)) {
        cb_fail(err, CB_BAD_REQUEST, "%s", why);
        *exit_status = 2;
        goto fail;
    }
    if (!lock_data(b, false, exit_status, err))
        goto fail;
    if (!(b->zmq = zmq_ctx_new())) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "zmq_ctx_new: %s", zmq_strerror(errno));
        goto fail;
    }
    if (!start_curve(b, err)) {
        *exit_status = 2;
        goto fail;
    }
    const char *secret = b->ring ? b->keypair.secret_z85 : NULL;
    if (!(b->connected = calloc(cfg->n_agencies, sizeof *b->connected))) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        goto fail;
    }
    for (unsigned a = 0; a < cfg->n_agencies; a++)
        atomic_init(&b->connected[a], 0);
    if (!(b->router = cb_bind(b->zmq, ZMQ_ROUTER, cfg->endpoint, cfg->max_event_bytes, secret, b->endpoint, err)) ||
        !(b->feed = cb_bind(b->zmq, ZMQ_XPUB, cfg->feed, cfg->max_event_bytes, secret, b->feed_endpoint, err)) ||
        !(b->reader = cb_reader_start(cfg, secret, b->ring, b->queries_endpoint, err)))
        goto fail;
    if (!(b->metrics = cb_metrics_new())) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        goto fail;
    }
    snprintf(b->metrics_endpoint, sizeof b->metrics_endpoint, "off");
    if (strcmp(cfg->metrics, "off") && !(b->monitor = cb_monitor_start(cfg->metrics, b->metrics_endpoint, err)))
        goto fail;
    if (!b->lock && !lock_data(b, true, exit_status, err))
        goto fail;
    store = cb_store_open_with(cfg->data_dir, cfg->map_size_mb << 20, cfg->publish_fill_percent / 100.0,
                               cb_broker_keyspaces, CB_BROKER_KEYSPACES, err);
    if (!store || !load_identity(store, err)) {
        cb_store_destroy(&store);
        goto fail;
    }
    b->committer = cb_committer_start(cfg, store, b->metrics, err);
    if (!b->committer)
        goto fail;
    cb_reader_serve(b->reader, cb_committer_store(b->committer), live_of, audit_of, b);
    if (b->monitor)
        cb_monitor_serve(b->monitor, cfg, cb_committer_store(b->committer), b->metrics, live_of, b);
    *exit_status = 0;
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
        cb_reader_stop(&b->reader);   /* before the store it reads is closed */
        cb_monitor_stop(&b->monitor); /* the same */
        cb_committer_stop(&b->committer);
        cb_metrics_free(&b->metrics);
        cb_zap_stop(&b->zap); /* its socket too must close before the context can end */
        if (b->zmq)
            zmq_ctx_term(b->zmq);
        cb_keyring_free(&b->ring);
        sodium_memzero(&b->keypair, sizeof b->keypair);
        cb_dirlock_release(&b->lock); /* last: the store is closed */
        free(b->connected);
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

const char *cb_broker_queries(const cb_broker *b)
{
    return b->queries_endpoint;
}

const char *cb_broker_metrics(const cb_broker *b)
{
    return b->metrics_endpoint;
}

bool cb_broker_rekey(cb_broker *b, const cb_config *next, cb_error *err)
{
    if (!b->ring) {
        if (next->key_file)
            cb_log(CB_LOG_WARN, "reload: broker.key_file is set, but this broker started without CURVE: restart it to "
                                "turn CURVE on");
        return true;
    }
    cb_keyring *ring = cb_keyring_new(b->cfg, next);
    if (!ring) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return false;
    }
    for (unsigned a = 0; a < next->n_agencies; a++)
        if (!cb_config_agency(b->cfg, next->agencies[a].id))
            cb_log(CB_LOG_WARN, "reload: agency %s is new: its keys take effect when the broker restarts",
                   next->agencies[a].id);
    size_t known = cb_keyring_size(ring);
    bool revoked = cb_keyring_replace(b->ring, &ring);
    cb_log(CB_LOG_INFO, "reload: %zu client keys known%s", known,
           revoked ? "; a key was revoked or changed hands: closing every connection, so each shakes hands again" : "");
    if (!revoked)
        return true;
    /* ZeroMQ cannot close one connection of a ROUTER: unbinding closes them
     * all, and the clients whose keys are still known reconnect at once. */
    b->filling = cb_committer_open(b->committer); /* where forgetting a receiver's lane is written */
    for (int p = 0; p < PEERS_MAX; p++)
        if (b->peers[p].in_use)
            forget_peer(b, p);
    b->filling = NULL;
    cb_committer_release(b->committer);
    return cb_rebind(b->router, b->endpoint, err) && cb_rebind(b->feed, b->feed_endpoint, err) &&
           cb_reader_rebind(b->reader, err);
}
