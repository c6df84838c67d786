#include "reader.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

#include "cb_codec.h"
#include "clock.h"
#include "flagquery.h"
#include "log.h"
#include "access.h"
#include "thread.h"
#include "zap.h"

#define ENDPOINT_BURST    64 /* query endpoint frames answered before looking at the network thread's */
#define REFUSALS_LOGGED_S 20 /* refusals on the query endpoint logged a second; the rest are counted */

typedef struct {
    cb_peer_token peer;
    uint64_t ref;
    uint8_t *frame;
    size_t len;
    bool proven; /* who asked, when CURVE proved it */
    cb_principal who;
} request;

/* Requests and answers share one bound: a request is counted from its
 * submission until its answer is taken, so neither ring can overflow. */
struct cb_reader {
    const cb_config *cfg;
    pthread_mutex_t mu;
    pthread_cond_t changed; /* bound, given the store, or told to stop: until it serves */
    bool started, bound_ok, stopping;
    cb_error start_err;
    char *bound;
    cb_store *store;
    cb_live_fn *live;
    cb_audit_fn *audit;
    void *live_arg;

    void *zmq, *sock; /* the thread's own; touched only by it */
    const char *curve_secret;
    cb_keyring *ring;
    cb_zap *zap;
    bool rebind_asked, rebind_done; /* under mu */
    cb_error rebind_err;
    int submitted; /* eventfd: the network thread queued a request, or stop */
    request pending[CB_READER_WAITING];
    size_t pending_head, n_pending;
    int answered; /* eventfd: an answer for the network thread is ready */
    cb_answer answers[CB_READER_WAITING];
    size_t answers_head, n_answers;

    int64_t refusal_second_ms;
    unsigned refusals, refusals_unlogged;

    pthread_t thread;
    bool running;
};

static bool stopping(cb_reader *r)
{
    pthread_mutex_lock(&r->mu);
    bool stop = r->stopping;
    pthread_mutex_unlock(&r->mu);
    return stop;
}

static void pack_reply(uint64_t ref, cb_frame *reply, cb_answer *a)
{
    reply->ref = ref;
    if (!(a->len = cb_pack(&reply->base, &a->reply)))
        cb_fail(&a->err, CB_STORE_UNAVAILABLE, "out of memory");
}

/* ---------------------------------------------------------- the reads
 *
 * One row per request kind the query thread answers: the network thread and
 * the query endpoint both ask cb_reader_answers, so a new kind of read is a
 * row here and a function beside it. Each fills the reply's kind and
 * message and returns the message, to be freed once packed (NULL with err
 * set on failure). */

/* Each read names who asked (NULL without CURVE) and adds the audit records
 * its answer or refusal needs to *audit (room for READ_AUDITS). */
#define READ_AUDITS 64
typedef struct {
    const cb_principal *who;
    cb_audit_entry entries[READ_AUDITS];
    size_t n;
} audit_list;

typedef ProtobufCMessage *read_fn(cb_reader *r, cb_txn *txn, const cb_frame *f, cb_frame *reply, audit_list *audit,
                                  cb_error *err);

/* One record of this read, of person (NULL: none). */
static void record(audit_list *a, const char *action, const char *person, const cb_error *refused, const char *detail)
{
    if (a->n == READ_AUDITS)
        return;
    cb_audit_entry *e = &a->entries[a->n++];
    *e = cb_audit_of(a->who, NULL, action);
    if (person)
        snprintf(e->person, sizeof e->person, "%s", person);
    e->permitted = !refused;
    e->code = refused ? refused->code : CB_OK;
    snprintf(e->detail, sizeof e->detail, "%s", detail ? detail : "");
}

/* The pseudonym of the person a request names (as its journey finds them),
 * for the record of a read refused; "" when it names none. */
static void asked_person(cb_reader *r, cb_txn *txn, const char *person_id, Carebridge__V1__LocalId **local_ids,
                         size_t n_local_ids, char person[CB_PSEUDONYM_LEN])
{
    person[0] = 0;
    if (!person_id[0] && !n_local_ids)
        return;
    Carebridge__V1__JourneyRequest jr = CAREBRIDGE__V1__JOURNEY_REQUEST__INIT;
    jr.person_id = (char *)person_id;
    jr.local_ids = local_ids;
    jr.n_local_ids = n_local_ids;
    cb_error ignored = {0};
    Carebridge__V1__JourneyReply *j = cb_query_journey_for(r->cfg, txn, &jr, NULL, person, &ignored);
    if (j)
        protobuf_c_message_free_unpacked(&j->base, NULL);
}

static void person_of_request(cb_reader *r, cb_txn *txn, const cb_frame *f, char person[CB_PSEUDONYM_LEN])
{
    person[0] = 0;
    if (f->kind_case == CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REQUEST)
        asked_person(r, txn, f->journey_request->person_id, f->journey_request->local_ids,
                     f->journey_request->n_local_ids, person);
    else if (f->kind_case == CAREBRIDGE__V1__FRAME__KIND_FLAGS_REQUEST)
        asked_person(r, txn, f->flags_request->person_id, f->flags_request->local_ids, f->flags_request->n_local_ids,
                     person);
    else if (f->kind_case == CAREBRIDGE__V1__FRAME__KIND_AUDIT_REQUEST)
        asked_person(r, txn, f->audit_request->person_id, f->audit_request->local_ids, f->audit_request->n_local_ids,
                     person);
}

static ProtobufCMessage *read_status(cb_reader *r, cb_txn *txn, const cb_frame *f, cb_frame *reply, audit_list *audit,
                                     cb_error *err)
{
    (void)f, (void)audit;
    cb_agency_live live[r->cfg->n_agencies];
    memset(live, 0, sizeof live);
    r->live(r->live_arg, live);
    reply->kind_case = CAREBRIDGE__V1__FRAME__KIND_STATUS_REPLY;
    reply->status_reply = cb_query_status(r->cfg, txn, live, cb_store_limit_bytes(r->store), err);
    return (ProtobufCMessage *)reply->status_reply;
}

static ProtobufCMessage *read_journey(cb_reader *r, cb_txn *txn, const cb_frame *f, cb_frame *reply, audit_list *audit,
                                      cb_error *err)
{
    char person[CB_PSEUDONYM_LEN];
    reply->kind_case = CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REPLY;
    reply->journey_reply = cb_query_journey_for(r->cfg, txn, f->journey_request, audit->who, person, err);
    char detail[64] = "";
    if (reply->journey_reply)
        snprintf(detail, sizeof detail, "steps=%zu", reply->journey_reply->n_steps);
    record(audit, "journey", person, reply->journey_reply ? NULL : err, detail);
    return (ProtobufCMessage *)reply->journey_reply;
}

/* One record per person the answer names a flag of (or one, naming none). */
static ProtobufCMessage *read_flags(cb_reader *r, cb_txn *txn, const cb_frame *f, cb_frame *reply, audit_list *audit,
                                    cb_error *err)
{
    const Carebridge__V1__FlagsRequest *q = f->flags_request;
    reply->kind_case = CAREBRIDGE__V1__FRAME__KIND_FLAGS_REPLY;
    Carebridge__V1__FlagsReply *fr = reply->flags_reply = cb_flags_query_for(r->cfg, txn, q, audit->who, err);
    if (!fr) {
        char person[CB_PSEUDONYM_LEN];
        person_of_request(r, txn, f, person);
        record(audit, "flags", person, err, NULL);
        return NULL;
    }
    size_t before = audit->n;
    for (size_t i = 0; i < fr->n_flags; i++) {
        bool seen = false;
        for (size_t k = before; k < audit->n && !seen; k++)
            seen = !strcmp(audit->entries[k].person, fr->flags[i]->person);
        if (!seen)
            record(audit, "flags", fr->flags[i]->person, NULL, "flags of this person answered");
    }
    if (audit->n == before)
        record(audit, "flags", NULL, NULL, "no flags answered");
    return (ProtobufCMessage *)fr;
}

static ProtobufCMessage *read_audit(cb_reader *r, cb_txn *txn, const cb_frame *f, cb_frame *reply, audit_list *audit,
                                    cb_error *err)
{
    const Carebridge__V1__AuditRequest *q = f->audit_request;
    reply->kind_case = CAREBRIDGE__V1__FRAME__KIND_AUDIT_REPLY;
    reply->audit_reply = cb_audit_query(r->cfg, txn, q, audit->who, err);
    char person[CB_PSEUDONYM_LEN];
    person_of_request(r, txn, f, person);
    char detail[64] = "";
    if (reply->audit_reply)
        snprintf(detail, sizeof detail, "records=%zu", reply->audit_reply->n_records);
    record(audit, "audit", person[0] ? person : NULL, reply->audit_reply ? NULL : err, detail);
    return (ProtobufCMessage *)reply->audit_reply;
}

static ProtobufCMessage *read_report(cb_reader *r, cb_txn *txn, const cb_frame *f, cb_frame *reply, audit_list *audit,
                                     cb_error *err)
{
    (void)audit;
    reply->kind_case = CAREBRIDGE__V1__FRAME__KIND_REPORT_REPLY;
    reply->report_reply = cb_flags_report(r->cfg, txn, f->report_request, cb_wall_ms(), err);
    return (ProtobufCMessage *)reply->report_reply;
}

static const struct {
    uint32_t kind; /* a Frame's kind_case */
    read_fn *fn;
} reads[] = {
    {CAREBRIDGE__V1__FRAME__KIND_STATUS_REQUEST, read_status},
    {CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REQUEST, read_journey},
    {CAREBRIDGE__V1__FRAME__KIND_FLAGS_REQUEST, read_flags},
    {CAREBRIDGE__V1__FRAME__KIND_REPORT_REQUEST, read_report},
    {CAREBRIDGE__V1__FRAME__KIND_AUDIT_REQUEST, read_audit},
};

static read_fn *read_of(uint32_t kind)
{
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++)
        if (reads[i].kind == kind)
            return reads[i].fn;
    return NULL;
}

bool cb_reader_answers(uint32_t frame_kind)
{
    return read_of(frame_kind) != NULL;
}

static const char *action_of(uint32_t kind)
{
    return kind == CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REQUEST ? "journey"
           : kind == CAREBRIDGE__V1__FRAME__KIND_FLAGS_REQUEST ? "flags"
           : kind == CAREBRIDGE__V1__FRAME__KIND_AUDIT_REQUEST ? "audit"
                                                               : "report";
}

/* A request of one of the kinds above, asked by who (NULL without CURVE),
 * answered from a read transaction begun now. What it reads of people is
 * answered only once its audit records are in the store: a read that
 * cannot be recorded is not answered. */
static void answer(cb_reader *r, const uint8_t *frame, size_t len, const cb_principal *who, cb_answer *a)
{
    cb_frame *f = cb_frame_decode(frame, len, len, &a->err);
    read_fn *fn = f ? read_of(f->kind_case) : NULL;
    audit_list audit = {.who = who};
    cb_error refused = {0};
    bool allowed = fn && !cb_access_read(who, f->kind_case, &refused);
    cb_txn *txn = fn ? cb_txn_begin(r->store, false, &a->err) : NULL;
    ProtobufCMessage *m = NULL;
    cb_frame reply = CAREBRIDGE__V1__FRAME__INIT;
    if (txn && !allowed) {
        a->err = refused;
        if (f->kind_case != CAREBRIDGE__V1__FRAME__KIND_REPORT_REQUEST) { /* the report names no one */
            char person[CB_PSEUDONYM_LEN];
            person_of_request(r, txn, f, person);
            record(&audit, action_of(f->kind_case), person, &a->err, "refused by role");
        }
        cb_txn_abort(&txn);
    } else if (txn) {
        m = fn(r, txn, f, &reply, &audit, &a->err);
        cb_txn_abort(&txn);
    } else if (f && !fn && !a->err.code) {
        cb_fail(&a->err, CB_BAD_REQUEST, "not a request the query thread answers");
    }
    if (audit.n && !r->audit(r->live_arg, audit.entries, audit.n)) {
        cb_fail(&a->err, CB_STORE_UNAVAILABLE, "the read could not be recorded in the audit, so it is not answered");
        if (m)
            protobuf_c_message_free_unpacked(m, NULL);
        m = NULL;
    }
    if (m) {
        pack_reply(f->ref, &reply, a);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    cb_frame_free(&f);
}

/* ---------------------------------------------------------- the endpoint */

/* Logged as the main endpoint logs its NACKs, but a flood of bad frames
 * cannot flood the log: past REFUSALS_LOGGED_S a second they are counted,
 * and the count is logged once the second is over. */
static void log_refusal(cb_reader *r, const cb_error *err)
{
    int64_t now = cb_mono_ms();
    if (now - r->refusal_second_ms >= 1000) {
        if (r->refusals_unlogged)
            cb_log(CB_LOG_WARN, "query endpoint: %u more refusals in that second, not logged one by one",
                   r->refusals_unlogged);
        r->refusal_second_ms = now;
        r->refusals = r->refusals_unlogged = 0;
    }
    if (r->refusals++ < REFUSALS_LOGGED_S)
        cb_log(CB_LOG_WARN, "nack on the query endpoint code=%s: %s", cb_code_name(err->code), err->reason);
    else
        r->refusals_unlogged++;
}

static void answer_endpoint_frame(cb_reader *r, const uint8_t *frame, size_t len, const cb_principal *who, cb_answer *a)
{
    uint64_t ref;
    cb_peek_publish(frame, len, &ref, NULL, 0);
    cb_frame reply = CAREBRIDGE__V1__FRAME__INIT;
    if (cb_reader_answers(cb_peek_kind(frame, len))) {
        answer(r, frame, len, who, a);
    } else {
        /* Bytes that are not a Frame are named as such, as on the main endpoint. */
        cb_frame *f = cb_frame_decode(frame, len, r->cfg->max_event_bytes, &a->err);
        if (f)
            cb_fail(&a->err, CB_BAD_REQUEST,
                    "the query endpoint answers status and journey requests only; hello, publish, replay and "
                    "heartbeats go to broker.endpoint");
        cb_frame_free(&f);
    }
    if (a->reply)
        return;
    log_refusal(r, &a->err);
    Carebridge__V1__Nack nack = CAREBRIDGE__V1__NACK__INIT;
    nack.event_id = "";
    nack.code = (Carebridge__V1__ErrorCode)a->err.code;
    nack.reason = a->err.reason;
    reply.kind_case = CAREBRIDGE__V1__FRAME__KIND_NACK;
    reply.nack = &nack;
    pack_reply(ref, &reply, a);
}

static bool proven(cb_reader *r, zmq_msg_t *msg, cb_principal *who)
{
    const char *uid = zmq_msg_gets(msg, "User-Id"), *fp = zmq_msg_gets(msg, "Fingerprint");
    return uid && fp && cb_keyring_find_named(r->ring, uid, fp, who);
}

/* What has arrived on the query endpoint, ENDPOINT_BURST frames at most.
 * Each is answered at once, before the next is read. */
static void serve_endpoint(cb_reader *r)
{
    for (int i = 0; i < ENDPOINT_BURST; i++) {
        cb_routed m;
        bool got = cb_recv_routed(r->sock, &m);
        cb_answer a = {0};
        /* With CURVE, who the handshake proved the connection to be; a key
         * revoked since is answered nothing. */
        cb_principal who;
        bool known = got && m.single && (!r->ring || proven(r, &m.body, &who));
        if (known)
            answer_endpoint_frame(r, zmq_msg_data(&m.body), zmq_msg_size(&m.body), r->ring ? &who : NULL, &a);
        if (a.reply && zmq_send(r->sock, zmq_msg_data(&m.rid), zmq_msg_size(&m.rid), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
            zmq_send(r->sock, a.reply, a.len, ZMQ_DONTWAIT);
        free(a.reply);
        cb_routed_close(&m);
        if (!got)
            return;
    }
}

/* ---------------------------------------------------- the network thread's */

/* The oldest of the *n items (each size bytes) of a ring, or false when it
 * is empty, having reset fd while holding mu: an item added after that wakes
 * the poll again. */
static bool ring_take(cb_reader *r, void *ring, size_t size, size_t *head, size_t *n, int fd, void *out)
{
    pthread_mutex_lock(&r->mu);
    bool any = *n > 0;
    if (any) {
        memcpy(out, (char *)ring + *head * size, size);
        *head = (*head + 1) % CB_READER_WAITING;
        (*n)--;
    } else {
        eventfd_t v;
        eventfd_read(fd, &v);
    }
    pthread_mutex_unlock(&r->mu);
    return any;
}

static bool take_request(cb_reader *r, request *q)
{
    return ring_take(r, r->pending, sizeof *r->pending, &r->pending_head, &r->n_pending, r->submitted, q);
}

static void serve_submitted(cb_reader *r)
{
    request q;
    while (take_request(r, &q)) {
        cb_answer a = {.peer = q.peer, .ref = q.ref};
        answer(r, q.frame, q.len, q.proven ? &q.who : NULL, &a);
        free(q.frame);
        pthread_mutex_lock(&r->mu);
        r->answers[(r->answers_head + r->n_answers++) % CB_READER_WAITING] = a;
        pthread_mutex_unlock(&r->mu);
        eventfd_write(r->answered, 1);
    }
}

/* ---------------------------------------------------------- the thread */

/* The context is made here, after the slice is asked for, so the I/O thread
 * it starts for the endpoint inherits the slice too. */
static bool bind_endpoint(cb_reader *r, char *bound, cb_error *err)
{
    cb_thread_prefer_short_slice();
    if (!(r->zmq = zmq_ctx_new())) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "zmq_ctx_new: %s", zmq_strerror(errno));
        return false;
    }
    if (r->curve_secret && !getenv("CAREBRIDGE_TEST_NO_ZAP") &&
        !(r->zap = cb_zap_start(r->zmq, r->ring, "cb-query-zap", err)))
        return false;
    r->sock = cb_bind(r->zmq, ZMQ_ROUTER, r->cfg->queries, r->cfg->max_event_bytes, r->curve_secret, bound, err);
    return r->sock != NULL;
}

static void rebind_if_asked(cb_reader *r)
{
    pthread_mutex_lock(&r->mu);
    if (r->rebind_asked) {
        r->rebind_asked = false;
        r->rebind_err = (cb_error){0};
        cb_rebind(r->sock, r->bound, &r->rebind_err);
        r->rebind_done = true;
        pthread_cond_broadcast(&r->changed);
    }
    pthread_mutex_unlock(&r->mu);
}

bool cb_reader_rebind(cb_reader *r, cb_error *err)
{
    pthread_mutex_lock(&r->mu);
    r->rebind_asked = true;
    r->rebind_done = false;
    eventfd_write(r->submitted, 1);
    while (!r->rebind_done && !r->stopping)
        pthread_cond_wait(&r->changed, &r->mu);
    bool ok = !r->rebind_err.code;
    if (!ok)
        *err = r->rebind_err;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static void *run(void *arg)
{
    cb_reader *r = arg;
    cb_thread_name("cb-query");
    char bound[CB_ENDPOINT_MAX] = "";
    cb_error err = {0};
    bool ok = bind_endpoint(r, bound, &err);
    pthread_mutex_lock(&r->mu);
    r->started = true;
    r->bound_ok = ok;
    r->start_err = err;
    memcpy(r->bound, bound, sizeof bound);
    pthread_cond_broadcast(&r->changed);
    while (ok && !r->stopping && !r->store)
        pthread_cond_wait(&r->changed, &r->mu);
    pthread_mutex_unlock(&r->mu);

    while (ok && !stopping(r)) {
        zmq_pollitem_t items[] = {{r->sock, 0, ZMQ_POLLIN, 0}, {NULL, r->submitted, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, -1) < 0 && errno != EINTR) {
            cb_log(CB_LOG_ERROR, "query thread: poll: %s: no more queries are answered", zmq_strerror(errno));
            break;
        }
        serve_endpoint(r);
        serve_submitted(r);
        rebind_if_asked(r);
        cb_log_flush();
    }
    if (r->sock)
        zmq_close(r->sock);
    cb_zap_stop(&r->zap);
    if (r->zmq)
        zmq_ctx_term(r->zmq);
    return NULL;
}

cb_reader *cb_reader_start(const cb_config *cfg, const char *curve_secret, cb_keyring *ring,
                           char bound[CB_ENDPOINT_MAX], cb_error *err)
{
    cb_reader *r = calloc(1, sizeof *r);
    if (!r) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    r->cfg = cfg;
    r->curve_secret = curve_secret;
    r->ring = ring;
    r->bound = bound;
    r->submitted = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->answered = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->changed, NULL);
    r->running = r->submitted >= 0 && r->answered >= 0 && cb_thread_start(&r->thread, run, r);
    if (!r->running) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "cannot start the query thread");
        cb_reader_stop(&r);
        return NULL;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->started)
        pthread_cond_wait(&r->changed, &r->mu);
    bool ok = r->bound_ok;
    if (!ok)
        *err = r->start_err;
    pthread_mutex_unlock(&r->mu);
    if (!ok)
        cb_reader_stop(&r);
    return r;
}

void cb_reader_serve(cb_reader *r, cb_store *store, cb_live_fn *live, cb_audit_fn *audit, void *live_arg)
{
    pthread_mutex_lock(&r->mu);
    r->live = live;
    r->audit = audit;
    r->live_arg = live_arg;
    r->store = store;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->mu);
}

void cb_reader_stop(cb_reader **r_p)
{
    cb_reader *r = *r_p;
    if (!r)
        return;
    if (r->running) {
        pthread_mutex_lock(&r->mu);
        r->stopping = true;
        pthread_cond_broadcast(&r->changed);
        pthread_mutex_unlock(&r->mu);
        eventfd_write(r->submitted, 1);
        pthread_join(r->thread, NULL);
    }
    for (size_t i = 0; i < r->n_pending; i++)
        free(r->pending[(r->pending_head + i) % CB_READER_WAITING].frame);
    for (size_t i = 0; i < r->n_answers; i++)
        free(r->answers[(r->answers_head + i) % CB_READER_WAITING].reply);
    if (r->submitted >= 0)
        close(r->submitted);
    if (r->answered >= 0)
        close(r->answered);
    pthread_cond_destroy(&r->changed);
    pthread_mutex_destroy(&r->mu);
    free(r);
    *r_p = NULL;
}

int cb_reader_fd(const cb_reader *r)
{
    return r->answered;
}

bool cb_reader_submit(cb_reader *r, cb_peer_token peer, uint64_t ref, const uint8_t *frame, size_t len,
                      const cb_principal *who)
{
    pthread_mutex_lock(&r->mu);
    bool room = r->n_pending + r->n_answers < CB_READER_WAITING;
    pthread_mutex_unlock(&r->mu);
    if (!room)
        return false;
    request q = {.peer = peer, .ref = ref, .frame = malloc(len ? len : 1), .len = len, .proven = who != NULL};
    if (who)
        q.who = *who;
    if (!q.frame)
        return false;
    memcpy(q.frame, frame, len);
    pthread_mutex_lock(&r->mu);
    r->pending[(r->pending_head + r->n_pending++) % CB_READER_WAITING] = q;
    pthread_mutex_unlock(&r->mu);
    eventfd_write(r->submitted, 1);
    return true;
}

bool cb_reader_answer(cb_reader *r, cb_answer *a)
{
    return ring_take(r, r->answers, sizeof *r->answers, &r->answers_head, &r->n_answers, r->answered, a);
}
