#include "reader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cb_codec.h"
#include "log.h"
#include "thread.h"

typedef struct {
    cb_peer_token peer;
    uint64_t ref;
    uint8_t *frame;
    size_t len;
    cb_agency_live *live;
} request;

/* Requests and answers share one bound: a request is counted from its
 * submission until its answer is taken, so neither ring can overflow. */
struct cb_reader {
    const cb_config *cfg;
    cb_store *store;
    int fd;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    request pending[CB_READER_WAITING];
    size_t pending_head, n_pending;
    cb_answer answers[CB_READER_WAITING];
    size_t answers_head, n_answers;
    bool stopping;
    pthread_t thread;
    bool running;
};

static size_t pack_reply(uint64_t ref, cb_frame *reply, cb_answer *a)
{
    reply->ref = ref;
    return a->len = cb_pack(&reply->base, &a->reply);
}

static void answer(cb_reader *r, const request *q, cb_answer *a)
{
    cb_error err = {0};
    *a = (cb_answer){.peer = q->peer, .ref = q->ref};
    cb_frame *f = cb_frame_decode(q->frame, q->len, q->len, &err);
    cb_txn *txn = f ? cb_txn_begin(r->store, false, &a->err) : NULL;
    if (!f) {
        a->err = err;
        return;
    }
    if (!txn) {
        cb_frame_free(&f);
        return;
    }
    cb_frame reply = CAREBRIDGE__V1__FRAME__INIT;
    ProtobufCMessage *m;
    if (f->kind_case == CAREBRIDGE__V1__FRAME__KIND_STATUS_REQUEST) {
        reply.kind_case = CAREBRIDGE__V1__FRAME__KIND_STATUS_REPLY;
        reply.status_reply = cb_query_status(r->cfg, txn, q->live, cb_store_limit_bytes(r->store), &a->err);
        m = (ProtobufCMessage *)reply.status_reply;
    } else {
        reply.kind_case = CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REPLY;
        reply.journey_reply = cb_query_journey(r->cfg, txn, f->journey_request, &a->err);
        m = (ProtobufCMessage *)reply.journey_reply;
    }
    cb_txn_abort(&txn);
    if (m && !pack_reply(q->ref, &reply, a))
        cb_fail(&a->err, CB_STORE_UNAVAILABLE, "out of memory");
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    cb_frame_free(&f);
}

static void *run(void *arg)
{
    cb_reader *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        if (!r->n_pending) {
            pthread_cond_wait(&r->wake, &r->mu);
            continue;
        }
        request q = r->pending[r->pending_head];
        r->pending_head = (r->pending_head + 1) % CB_READER_WAITING;
        r->n_pending--;
        pthread_mutex_unlock(&r->mu);
        cb_answer a;
        answer(r, &q, &a);
        free(q.frame);
        free(q.live);
        pthread_mutex_lock(&r->mu);
        r->answers[(r->answers_head + r->n_answers++) % CB_READER_WAITING] = a;
        pthread_mutex_unlock(&r->mu);
        eventfd_write(r->fd, 1);
        cb_log_flush();
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

cb_reader *cb_reader_start(const cb_config *cfg, cb_store *store, cb_error *err)
{
    cb_reader *r = calloc(1, sizeof *r);
    if (!r) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    r->cfg = cfg;
    r->store = store;
    r->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->wake, NULL);
    r->running = r->fd >= 0 && cb_thread_start(&r->thread, run, r);
    if (!r->running) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "cannot start the query thread");
        cb_reader_stop(&r);
    }
    return r;
}

void cb_reader_stop(cb_reader **r_p)
{
    cb_reader *r = *r_p;
    if (!r)
        return;
    if (r->running) {
        pthread_mutex_lock(&r->mu);
        r->stopping = true;
        pthread_cond_signal(&r->wake);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->thread, NULL);
    }
    for (size_t i = 0; i < r->n_pending; i++) {
        request *q = &r->pending[(r->pending_head + i) % CB_READER_WAITING];
        free(q->frame);
        free(q->live);
    }
    for (size_t i = 0; i < r->n_answers; i++)
        free(r->answers[(r->answers_head + i) % CB_READER_WAITING].reply);
    if (r->fd >= 0)
        close(r->fd);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->mu);
    free(r);
    *r_p = NULL;
}

int cb_reader_fd(const cb_reader *r)
{
    return r->fd;
}

bool cb_reader_submit(cb_reader *r, cb_peer_token peer, uint64_t ref, const uint8_t *frame, size_t len,
                      const cb_agency_live *live)
{
    pthread_mutex_lock(&r->mu);
    bool room = r->n_pending + r->n_answers < CB_READER_WAITING;
    pthread_mutex_unlock(&r->mu);
    if (!room)
        return false;
    request q = {.peer = peer, .ref = ref, .frame = malloc(len ? len : 1), .len = len};
    q.live = malloc(r->cfg->n_agencies * sizeof *q.live);
    if (!q.frame || !q.live) {
        free(q.frame);
        free(q.live);
        return false;
    }
    memcpy(q.frame, frame, len);
    memcpy(q.live, live, r->cfg->n_agencies * sizeof *q.live);
    pthread_mutex_lock(&r->mu);
    r->pending[(r->pending_head + r->n_pending++) % CB_READER_WAITING] = q;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->mu);
    return true;
}

bool cb_reader_answer(cb_reader *r, cb_answer *a)
{
    pthread_mutex_lock(&r->mu);
    bool any = r->n_answers > 0;
    if (any) {
        *a = r->answers[r->answers_head];
        r->answers_head = (r->answers_head + 1) % CB_READER_WAITING;
        r->n_answers--;
    } else {
        eventfd_t n;
        eventfd_read(r->fd, &n); /* reset while holding mu: an answer added after this wakes the poll again */
    }
    pthread_mutex_unlock(&r->mu);
    return any;
}
