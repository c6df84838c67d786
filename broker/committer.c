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

#include "clock.h"
#include "commit.h"
#include "log.h"
#include "thread.h"

#define RESERVE_STEP  (256 << 10) /* zeros written per idle step: usually a fraction of a millisecond */
#define RESERVE_LOW   0.25        /* refill once the reserve is down to this much of its target */
#define RESERVE_RETRY 10000       /* ms before trying again after the disk refused */

/* Index entries merged per idle transaction (commits pay for their own
 * entries' merges as they go: commit.c). */
#define INDEX_IDLE_BUDGET 8192

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
    cb_metrics *metrics; /* the commits' counters (NULL: none kept) */
    cb_commit *commit;   /* the store thread's, once started */
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
    /* Audit records handed in by the query thread wait, under mu, for the
     * batch that holds them (by generation) to commit. */
    pthread_cond_t audited;
    uint64_t next_generation, committed_generation;
    struct {
        uint64_t generation;
        bool written;
    } outcomes[64]; /* by generation: a waiter may wake a few commits late */
    pthread_t thread;
    bool running;
    int64_t reserve_retry_ms; /* no growth before this (the disk refused) */
    int64_t last_work_ms;     /* when the last batch with work was taken */
    bool refilling;           /* from falling to RESERVE_LOW until full again */
};

/* ------------------------------------------------------------------ thread */

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

/* What status reports of the delivery lanes, copied for the network thread. */
static void publish_live(cb_committer *c)
{
    pthread_mutex_lock(&c->live_mu);
    for (unsigned a = 0; a < c->cfg->n_agencies; a++)
        cb_commit_lane(c->commit, a, &c->live_in_flight[a], &c->live_refused[a]);
    pthread_mutex_unlock(&c->live_mu);
}

static void process(cb_committer *c, cb_batch *b)
{
    uint64_t commits = cb_store_commits(c->store);
    int64_t began = cb_mono_us();
    cb_commit_batch(c->commit, b);
    if (c->metrics && cb_store_commits(c->store) != commits)
        cb_metrics_committed(c->metrics, b, cb_mono_us() - began);
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
        bool work = cb_batch_has_input(c->open) || cb_commit_has_work(c->commit, now);
        if (work && c->n_spare) {
            cb_batch *b = c->open;
            bool was_full = !cb_batch_has_room(b);
            c->open = c->spare[--c->n_spare];
            c->open->generation = ++c->next_generation;
            pthread_mutex_unlock(&c->mu);
            /* A network thread that found the batch full stopped reading the
             * network and waits on wake_fd: tell it there is room again. */
            if (was_full)
                eventfd_write(c->wake_fd, 1);
            b->now_ms = now;
            b->wall_ms = cb_wall_ms(); /* read with now: the batch's one moment */
            c->last_work_ms = now;
            process(c, b);
            pthread_mutex_lock(&c->mu);
            c->outcomes[b->generation % 64].generation = b->generation;
            c->outcomes[b->generation % 64].written = b->audits_written;
            c->committed_generation = b->generation;
            pthread_cond_broadcast(&c->audited);
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
            int64_t next = cb_commit_next_deadline(c->commit);
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
    pthread_cond_broadcast(&c->audited);
    pthread_mutex_unlock(&c->mu);
    eventfd_write(c->wake_fd, 1);
    return NULL;
}

cb_committer *cb_committer_start(const cb_config *cfg, cb_store *store, cb_metrics *metrics, cb_error *err)
{
    cb_committer *c = calloc(1, sizeof *c);
    if (!c) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    c->cfg = cfg;
    c->store = store;
    c->metrics = metrics;
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->live_mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* the clock cb_mono_ms reads */
    pthread_cond_init(&c->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&c->audited, NULL);
    c->commit = cb_commit_new(cfg, store, err);
    c->live_in_flight = calloc(cfg->n_agencies, sizeof *c->live_in_flight);
    c->live_refused = calloc(cfg->n_agencies, sizeof *c->live_refused);
    bool made = c->commit && c->live_in_flight && c->live_refused;
    for (size_t i = 0; made && i < N_BATCHES; i++)
        made = (c->batches[i] = cb_batch_new(cb_commit_max_out(c->commit))) != NULL;
    if (made) {
        c->open = c->batches[0];
        c->open->generation = c->next_generation = 1;
        for (size_t i = 1; i < N_BATCHES; i++)
            c->spare[c->n_spare++] = c->batches[i];
    }
    bool started = made && c->wake_fd >= 0 && cb_thread_start(&c->thread, run, c);
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
    cb_log(CB_LOG_INFO, "store closed: last_seq=%llu", (unsigned long long)cb_commit_last_seq(c->commit));
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
            cb_batch_free(&c->batches[i]);
        free(c->live_in_flight);
        free(c->live_refused);
        cb_commit_free(&c->commit);
        cb_store_destroy(&c->store);
        pthread_cond_destroy(&c->wake);
        pthread_cond_destroy(&c->audited);
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

bool cb_committer_audit(cb_committer *c, const cb_audit_entry *entries, size_t n)
{
    if (n > BATCH_AUDITS)
        return false;
    pthread_mutex_lock(&c->mu);
    while (!c->stopped && !c->stopping && c->open->n_audits + n > BATCH_AUDITS)
        pthread_cond_wait(&c->audited, &c->mu); /* the open batch is full of them: wait for the next */
    if (c->stopped || c->stopping) {
        pthread_mutex_unlock(&c->mu);
        return false;
    }
    memcpy(&c->open->audits[c->open->n_audits], entries, n * sizeof *entries);
    c->open->n_audits += n;
    uint64_t ticket = c->open->generation;
    pthread_cond_signal(&c->wake);
    while (!c->stopped && c->committed_generation < ticket)
        pthread_cond_wait(&c->audited, &c->mu);
    bool written = c->committed_generation >= ticket && c->outcomes[ticket % 64].generation == ticket &&
                   c->outcomes[ticket % 64].written;
    pthread_mutex_unlock(&c->mu);
    return written;
}
