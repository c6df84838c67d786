/* The adapters' durable outbox (adapters/outbox.c) on a real LMDB store in
 * a temporary directory: what a batch commits is there after a restart and
 * after the writer is killed -9, a resend is known for what it is, an
 * acknowledged event is no longer waiting, and one process holds an outbox. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cb_codec.h"
#include "fixtures.h"
#include "outbox.h"

#define MAP (64u << 20)

typedef struct {
    char root[40], dir[64];
} box_dir;

static void make_dir(box_dir *d)
{
    assert_true(cb_test_mkdtemp(d->root, sizeof d->root));
    snprintf(d->dir, sizeof d->dir, "%s/outbox", d->root);
}

/* A packed referral with this id and reason, as the client packs events. */
static size_t packed(const char *id, const char *reason, uint8_t **out)
{
    cb_test_event e;
    cb_test_referral(&e, id, reason);
    return cb_pack(&e.ev.base, out);
}

static cb_outbox_added add(cb_outbox_batch *b, const char *id, const char *reason, uint64_t *seq)
{
    uint8_t *bytes;
    size_t len = packed(id, reason, &bytes);
    assert_true(len > 0);
    cb_outbox_added r = cb_outbox_add(b, id, NULL, bytes, len, seq);
    free(bytes);
    return r;
}

typedef struct {
    uint64_t seqs[64];
    size_t n;
} seen;

static bool collect(void *arg, uint64_t seq, const uint8_t *bytes, size_t len)
{
    seen *s = arg;
    cb_envelope *ev = cb_envelope_decode(bytes, len);
    assert_non_null(ev); /* what is waiting is the event as handed over */
    cb_envelope_free(&ev);
    s->seqs[s->n++] = seq;
    return s->n < 64;
}

static cb_code sent(cb_outbox *o, uint64_t seq)
{
    cb_error err = {0};
    cb_outbox_settlement s = {.sent = &seq, .n_sent = 1};
    return cb_outbox_settle(o, &s, &err);
}

static seen waiting(cb_outbox *o, uint64_t after)
{
    seen s = {.n = 0};
    cb_error err = {0};
    assert_int_equal(cb_outbox_waiting(o, after, collect, &s, &err), CB_OK);
    return s;
}

static void test_kept_until_sent_and_across_a_restart(void **state)
{
    (void)state;
    box_dir d;
    make_dir(&d);
    cb_error err = {0};
    cb_outbox *o = cb_outbox_open(d.dir, MAP, &err);
    assert_non_null(o);
    cb_outbox_batch *b = cb_outbox_begin(o, &err);
    uint64_t s1, s2, s3;
    assert_int_equal(add(b, "hl7-1", "one", &s1), CB_OUTBOX_NEW);
    assert_int_equal(add(b, "hl7-2", "two", &s2), CB_OUTBOX_NEW);
    assert_int_equal(add(b, "hl7-3", "three", &s3), CB_OUTBOX_NEW);
    assert_true(s1 < s2 && s2 < s3);
    assert_int_equal(cb_outbox_commit(&b, &err), CB_OK);
    assert_null(b);
    assert_int_equal(cb_outbox_count(o), 3);
    assert_int_equal(sent(o, s2), CB_OK);
    assert_int_equal(sent(o, s2), CB_OK); /* an ack twice is no error */
    seen w = waiting(o, 0);
    assert_int_equal(w.n, 2);
    assert_int_equal(w.seqs[0], s1);
    assert_int_equal(w.seqs[1], s3);
    assert_int_equal(waiting(o, s1).n, 1);
    cb_outbox_close(&o);

    o = cb_outbox_open(d.dir, MAP, &err);
    assert_non_null(o);
    assert_int_equal(cb_outbox_count(o), 2);
    b = cb_outbox_begin(o, &err);
    uint64_t s4;
    assert_int_equal(add(b, "hl7-4", "four", &s4), CB_OUTBOX_NEW);
    assert_true(s4 > s3); /* seqs go on after a restart */
    assert_int_equal(cb_outbox_commit(&b, &err), CB_OK);
    cb_outbox_close(&o);
    assert_int_equal(cb_test_remove_tree(d.root), 0);
}

/* An exact resend is the same event, whether still waiting or already sent;
 * another event under a used id is a conflict; neither adds anything. */
static void test_a_resend_is_known_and_a_reused_id_refused(void **state)
{
    (void)state;
    box_dir d;
    make_dir(&d);
    cb_error err = {0};
    cb_outbox *o = cb_outbox_open(d.dir, MAP, &err);
    cb_outbox_batch *b = cb_outbox_begin(o, &err);
    uint64_t s1, again;
    assert_int_equal(add(b, "MSG00001", "discharge", &s1), CB_OUTBOX_NEW);
    assert_int_equal(add(b, "MSG00001", "discharge", &again), CB_OUTBOX_AGAIN); /* in the same batch */
    assert_int_equal(again, s1);
    assert_int_equal(add(b, "MSG00001", "something else", &again), CB_OUTBOX_CONFLICT);
    assert_int_equal(again, s1);
    assert_int_equal(cb_outbox_commit(&b, &err), CB_OK);
    assert_int_equal(sent(o, s1), CB_OK);
    b = cb_outbox_begin(o, &err);
    assert_int_equal(add(b, "MSG00001", "discharge", &again), CB_OUTBOX_AGAIN); /* sent, still known */
    assert_int_equal(again, s1);
    assert_int_equal(cb_outbox_commit(&b, &err), CB_OK);
    assert_int_equal(cb_outbox_count(o), 0);
    cb_outbox_close(&o);
    assert_int_equal(cb_test_remove_tree(d.root), 0);
}

static void test_an_aborted_batch_keeps_nothing_and_one_process_holds_it(void **state)
{
    (void)state;
    box_dir d;
    make_dir(&d);
    cb_error err = {0};
    cb_outbox *o = cb_outbox_open(d.dir, MAP, &err);
    cb_outbox_batch *b = cb_outbox_begin(o, &err);
    uint64_t seq;
    assert_int_equal(add(b, "a", "x", &seq), CB_OUTBOX_NEW);
    assert_null(cb_outbox_begin(o, &err)); /* one batch at a time */
    cb_outbox_abort(&b);
    assert_null(b);
    assert_int_equal(cb_outbox_count(o), 0);
    b = cb_outbox_begin(o, &err);
    uint64_t again;
    assert_int_equal(add(b, "a", "x", &again), CB_OUTBOX_NEW);
    assert_int_equal(again, seq); /* the aborted seq is given out again */
    assert_int_equal(cb_outbox_commit(&b, &err), CB_OK);

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) { /* another process: refused while this one holds it */
        cb_error e2 = {0};
        cb_outbox *other = cb_outbox_open(d.dir, MAP, &e2);
        _exit(other == NULL && strstr(e2.reason, "in use") ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cb_outbox_close(&o);
    assert_int_equal(cb_test_remove_tree(d.root), 0);
}

/* A writer killed -9 at any moment: every batch it reported committed is
 * there. (The page cache survives the kill, so this shows the commit order,
 * not the sync; the store's own tests count syncs.) */
static void test_what_was_committed_survives_kill_9(void **state)
{
    (void)state;
    box_dir d;
    make_dir(&d);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(fds[0]);
        cb_error e = {0};
        cb_outbox *o = cb_outbox_open(d.dir, MAP, &e);
        for (unsigned i = 0; o && i < 100000; i++) {
            char id[32];
            snprintf(id, sizeof id, "ev-%u", i);
            cb_outbox_batch *b = cb_outbox_begin(o, &e);
            uint64_t seq;
            if (!b || add(b, id, "kill me", &seq) != CB_OUTBOX_NEW || cb_outbox_commit(&b, &e) != CB_OK)
                _exit(2);
            if (write(fds[1], &seq, sizeof seq) != sizeof seq)
                _exit(3);
        }
        _exit(0);
    }
    close(fds[1]);
    uint64_t seq, last = 0;
    for (int i = 0; i < 40 && read(fds[0], &seq, sizeof seq) == sizeof seq; i++)
        last = seq;
    kill(child, SIGKILL);
    int status;
    waitpid(child, &status, 0);
    while (read(fds[0], &seq, sizeof seq) == sizeof seq) /* reported before the kill landed */
        last = seq;
    close(fds[0]);
    assert_true(last >= 40);
    cb_error err = {0};
    cb_outbox *o = cb_outbox_open(d.dir, MAP, &err); /* the dead writer's lock is gone with it */
    assert_non_null(o);
    seen w = waiting(o, last - 1);
    assert_true(w.n >= 1);
    assert_int_equal(w.seqs[0], last);
    assert_true(cb_outbox_count(o) >= last);
    cb_outbox_close(&o);
    assert_int_equal(cb_test_remove_tree(d.root), 0);
}

/* A refusal keeps the event aside with why, off the queue and across a
 * restart; a taken delivery is known by its event id. */
static void test_refused_kept_aside_and_taken_known(void **state)
{
    (void)state;
    box_dir d;
    make_dir(&d);
    cb_error err = {0};
    cb_outbox *o = cb_outbox_open(d.dir, MAP, &err);
    assert_non_null(o);
    cb_outbox_batch *b = cb_outbox_begin(o, &err);
    uint64_t s1, s2;
    assert_int_equal(add(b, "ev-1", "one", &s1), CB_OUTBOX_NEW);
    assert_int_equal(add(b, "ev-2", "two", &s2), CB_OUTBOX_NEW);
    assert_int_equal(cb_outbox_commit(&b, &err), CB_OK);
    cb_outbox_refusal no = {s1, "UNKNOWN_AGENCY: toAgencies[0] is not a configured agency"};
    const char *taken[] = {"delivered-1"};
    cb_outbox_settlement st = {.refused = &no, .n_refused = 1, .taken = taken, .n_taken = 1};
    assert_int_equal(cb_outbox_settle(o, &st, &err), CB_OK);
    assert_int_equal(cb_outbox_settle(o, &st, &err), CB_OK); /* twice is no error */
    cb_outbox_close(&o);
    o = cb_outbox_open(d.dir, MAP, &err);
    assert_non_null(o);
    seen w = waiting(o, 0);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.seqs[0], s2);
    assert_int_equal(cb_outbox_count(o), 1);
    assert_int_equal(cb_outbox_refused_count(o), 1);
    char why[300];
    assert_true(cb_outbox_refused(o, s1, why, sizeof why));
    assert_string_equal(why, no.why);
    assert_false(cb_outbox_refused(o, s2, why, sizeof why));
    assert_true(cb_outbox_taken(o, "delivered-1"));
    assert_false(cb_outbox_taken(o, "delivered-2"));
    cb_outbox_close(&o);
    assert_int_equal(cb_test_remove_tree(d.root), 0);
}

/* An input's source name finds the event added from it, once committed;
 * a resend of the same event from another input names that input too. */
static void test_an_input_is_known_by_its_source(void **state)
{
    (void)state;
    box_dir d;
    make_dir(&d);
    cb_error err = {0};
    cb_outbox *o = cb_outbox_open(d.dir, MAP, &err);
    assert_non_null(o);
    uint8_t *bytes;
    size_t len = packed("ev-1", "one", &bytes);
    uint64_t s1, s2, found;
    cb_outbox_batch *b = cb_outbox_begin(o, &err);
    assert_int_equal(cb_outbox_add(b, "ev-1", "hl7:RXH:M1:aaaa", bytes, len, &s1), CB_OUTBOX_NEW);
    assert_false(cb_outbox_source(o, "hl7:RXH:M1:aaaa", &found)); /* not before the commit */
    assert_int_equal(cb_outbox_add(b, "ev-1", "hl7:RXH:M2:bbbb", bytes, len, &s2), CB_OUTBOX_AGAIN);
    assert_int_equal(s2, s1);
    assert_int_equal(cb_outbox_commit(&b, &err), CB_OK);
    free(bytes);
    assert_true(cb_outbox_source(o, "hl7:RXH:M1:aaaa", &found));
    assert_int_equal(found, s1);
    assert_true(cb_outbox_source(o, "hl7:RXH:M2:bbbb", &found));
    assert_int_equal(found, s1);
    assert_false(cb_outbox_source(o, "hl7:RXH:M3:cccc", &found));
    cb_outbox_close(&o);
    assert_int_equal(cb_test_remove_tree(d.root), 0);
}

/* A settlement can ride a batch: kept with it when it commits (one sync
 * for both), and not at all when it does not. */
static void test_a_settlement_rides_its_batch(void **state)
{
    (void)state;
    box_dir d;
    make_dir(&d);
    cb_error err = {0};
    cb_outbox *o = cb_outbox_open(d.dir, MAP, &err);
    assert_non_null(o);
    cb_outbox_batch *b = cb_outbox_begin(o, &err);
    uint64_t s1, s2, s3;
    assert_int_equal(add(b, "hl7-1", "one", &s1), CB_OUTBOX_NEW);
    assert_int_equal(add(b, "hl7-2", "two", &s2), CB_OUTBOX_NEW);
    assert_int_equal(cb_outbox_commit(&b, &err), CB_OK);

    const char *taken[] = {"delivered-1"};
    cb_outbox_settlement st = {.sent = &s1, .n_sent = 1, .taken = taken, .n_taken = 1};
    b = cb_outbox_begin(o, &err);
    cb_outbox_batch_settle(b, &st);
    cb_outbox_abort(&b);
    assert_int_equal(cb_outbox_count(o), 2); /* aborted: s1 still waits */
    assert_false(cb_outbox_taken(o, "delivered-1"));

    b = cb_outbox_begin(o, &err);
    cb_outbox_batch_settle(b, &st);
    assert_int_equal(add(b, "hl7-3", "three", &s3), CB_OUTBOX_NEW);
    assert_int_equal(cb_outbox_commit(&b, &err), CB_OK);
    cb_outbox_close(&o);

    o = cb_outbox_open(d.dir, MAP, &err); /* what the commit kept, read afresh */
    assert_non_null(o);
    seen w = waiting(o, 0);
    assert_int_equal(w.n, 2);
    assert_int_equal(w.seqs[0], s2);
    assert_int_equal(w.seqs[1], s3);
    assert_true(cb_outbox_taken(o, "delivered-1"));
    cb_outbox_close(&o);
    assert_int_equal(cb_test_remove_tree(d.root), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_until_sent_and_across_a_restart),
        cmocka_unit_test(test_a_resend_is_known_and_a_reused_id_refused),
        cmocka_unit_test(test_an_aborted_batch_keeps_nothing_and_one_process_holds_it),
        cmocka_unit_test(test_what_was_committed_survives_kill_9),
        cmocka_unit_test(test_refused_kept_aside_and_taken_known),
        cmocka_unit_test(test_an_input_is_known_by_its_source),
        cmocka_unit_test(test_a_settlement_rides_its_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
