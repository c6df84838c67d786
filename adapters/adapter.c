#include "adapter.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cb_check.h"
#include "cb_json.h"
#include "client.h"
#include "dirlock.h"
#include "outbox.h"

#define SOURCE_MAX   200 /* fits an LMDB key (511) with room */
#define OUTBOX_BYTES (1ULL << 30)
#define RETRY_MS     1000 /* after the broker said "not now" (store full, busy) */
#define ANSWER_MAX   32   /* flags or warnings named in one answer */
#define WHY_MAX      300
#define SETTLE_MS    200  /* an acknowledgement waits this long for a batch's sync to ride */
#define SETTLE_MAX   4096 /* or until this many wait */
#define SETTLE_TAKE  64   /* refusals and deliveries taken settled at once */

typedef struct {
    uint64_t seq;
    char why[WHY_MAX];
} refusal;

typedef struct {
    uint64_t seq;
    char *event_id;
} taking;

/* A growable array of fixed-size items. */
typedef struct {
    void *items;
    size_t n, cap, size;
} list;

struct cb_adapter {
    cb_adapter_opts opts;
    cb_adapter_handlers handlers;
    void *arg;
    cb_outbox *outbox;
    cb_client *client;
    int64_t opened_ms;
    bool ever_connected;
    uint64_t newest;     /* the newest seq committed to the outbox */
    uint64_t pumped;     /* the newest given to the client's window */
    uint64_t retry_from; /* pump again from after this at retry_at_ms */
    int64_t retry_at_ms;
    list sent;                  /* uint64_t: acknowledged by the broker, to settle */
    int64_t sent_since_ms;      /* when the oldest of them was */
    int64_t settle_retry_at_ms; /* a settlement failed: not again before this */
    list refused;               /* refusal */
    list taken;                 /* taking: deliveries taken, to settle and then acknowledge */
    list later;                 /* uint64_t: deliveries the agency system has not yet taken */
};

/* The batch's first events, held to go to the broker while the outbox
 * syncs them; the rest are pumped from the outbox after. */
#define AHEAD_MAX 256

struct cb_adapter_batch {
    cb_adapter *a;
    cb_outbox_batch *b;
    uint64_t newest;
    cb_envelope *ahead[AHEAD_MAX]; /* seqs newest-of-the-outbox + 1 on, in order */
    size_t n_ahead;
    bool ahead_closed; /* one could not be held: none after it is */
};

static const char *const code_names[] = {
#define CB_X_ADAPTER_NAME(name, msg) #name,
    CB_ADAPTER_CODES(CB_X_ADAPTER_NAME)
#undef CB_X_ADAPTER_NAME
};

const char *cb_adapter_code_name(cb_adapter_code code)
{
    return (size_t)code < sizeof code_names / sizeof *code_names ? code_names[code] : "UNKNOWN";
}

static cb_adapter_code fail(cb_adapter_error *err, cb_adapter_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static cb_adapter_code fail(cb_adapter_error *err, cb_adapter_code code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->text, sizeof err->text, fmt, ap);
        va_end(ap);
    }
    return code;
}

static void *list_push(list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *items = realloc(l->items, cap * l->size);
        if (!items)
            return NULL;
        l->items = items;
        l->cap = cap;
    }
    return (char *)l->items + l->n++ * l->size;
}

static bool has_seq(const list *l, uint64_t seq)
{
    const uint64_t *s = l->items;
    for (size_t i = 0; i < l->n; i++)
        if (s[i] == seq)
            return true;
    return false;
}

static void drop_seq(list *l, uint64_t seq)
{
    uint64_t *s = l->items;
    for (size_t i = 0; i < l->n; i++)
        if (s[i] == seq) {
            s[i] = s[--l->n];
            return;
        }
}

/* ---- to the broker */

/* A publish's tag in the client's window is its outbox seq. */
static void *tag_of(uint64_t seq)
{
    return (void *)(uintptr_t)seq;
}

static bool pump_one(void *arg, uint64_t seq, const uint8_t *bytes, size_t len)
{
    cb_adapter *a = arg;
    if (!cb_client_has_room(a->client))
        return false;
    cb_envelope *ev = cb_envelope_decode(bytes, len);
    bool sent = !ev || cb_client_publish(a->client, ev, tag_of(seq));
    cb_envelope_free(&ev);
    if (sent) /* one that no longer decodes cannot be sent: passed over, still kept */
        a->pumped = seq;
    return sent;
}

/* Fill the client's window from the outbox, oldest first. The window
 * resends what it holds across broker restarts; the outbox refills it as
 * answers free room, and from the start after an adapter restart. */
static void pump(cb_adapter *a)
{
    if (a->retry_at_ms && cb_client_now_ms() >= a->retry_at_ms) {
        if (a->retry_from < a->pumped)
            a->pumped = a->retry_from;
        a->retry_at_ms = 0;
    }
    if (a->pumped < a->newest && cb_client_has_room(a->client))
        cb_outbox_waiting(a->outbox, a->pumped, pump_one, a, NULL);
}

static bool not_now(cb_code code)
{
    return code == CB_STORE_FULL || code == CB_STORE_UNAVAILABLE || code == CB_BUSY;
}

static void answered(void *arg, void *tag, const Carebridge__V1__Ack *ack, const Carebridge__V1__Nack *nack)
{
    cb_adapter *a = arg;
    uint64_t seq = (uintptr_t)tag;
    cb_adapter_answer ans = {.seq = seq};
    const char *flags[ANSWER_MAX];
    char warnings[ANSWER_MAX][160];
    const char *warning_ptrs[ANSWER_MAX];
    if (ack) {
        if (!a->sent.n)
            a->sent_since_ms = cb_client_now_ms();
        uint64_t *s = list_push(&a->sent);
        if (s)
            *s = seq;
        ans.event_id = ack->event_id;
        ans.accepted = true;
        ans.duplicate = ack->duplicate;
        for (size_t i = 0; i < ack->n_flags && ans.n_flags < ANSWER_MAX; i++) {
            const ProtobufCEnumValue *v =
                protobuf_c_enum_descriptor_get_value(&carebridge__v1__flag__type__descriptor, (int)ack->flags[i]);
            flags[ans.n_flags++] = v ? v->name : "UNKNOWN";
        }
        for (size_t i = 0; i < ack->n_warnings && ans.n_warnings < ANSWER_MAX; i++) {
            snprintf(warnings[i], sizeof warnings[i], "%s:%s", ack->warnings[i]->field, ack->warnings[i]->reason);
            warning_ptrs[ans.n_warnings++] = warnings[i];
        }
        ans.flags = flags;
        ans.warnings = warning_ptrs;
    } else {
        cb_code code = (cb_code)nack->code;
        if (not_now(code)) { /* nothing was stored: the event goes again shortly */
            if (!a->retry_at_ms || seq - 1 < a->retry_from)
                a->retry_from = seq - 1;
            if (!a->retry_at_ms)
                a->retry_at_ms = cb_client_now_ms() + RETRY_MS;
            return;
        }
        refusal *r = list_push(&a->refused);
        if (r) {
            r->seq = seq;
            snprintf(r->why, sizeof r->why, "%s: %s", cb_code_name(code), nack->reason);
        }
        ans.event_id = nack->event_id;
        ans.code = cb_code_name(code);
        ans.reason = nack->reason;
    }
    if (a->handlers.answered)
        a->handlers.answered(a->arg, &ans);
}

/* ---- from the broker */

static bool push_taken(cb_adapter *a, uint64_t seq, const char *event_id)
{
    taking *t = list_push(&a->taken);
    if (!t)
        return false;
    t->seq = seq;
    if (!(t->event_id = strdup(event_id))) {
        a->taken.n--;
        return false;
    }
    return true;
}

static bool being_taken(const cb_adapter *a, uint64_t seq)
{
    const taking *t = a->taken.items;
    for (size_t i = 0; i < a->taken.n; i++)
        if (t[i].seq == seq)
            return true;
    return has_seq(&a->later, seq);
}

static bool delivered(void *arg, const Carebridge__V1__Deliver *d)
{
    cb_adapter *a = arg;
    if (!d->event || being_taken(a, d->seq))
        return false; /* a redelivery of one in hand: its own acknowledgement is coming */
    const char *id = d->event->event_id;
    if (cb_outbox_taken(a->outbox, id))
        return true; /* taken before (its acknowledgement was lost): drop it */
    cb_error jerr = {0};
    json_t *event = cb_json_from_message(&d->event->base, &jerr);
    if (!event || !a->handlers.delivered)
        return false; /* redelivered until the broker parks it */
    cb_adapter_take take = a->handlers.delivered(a->arg, d->seq, id, event);
    json_decref(event);
    /* NOT_TAKEN: nothing held, so its redelivery is handed over again */
    if (take == CB_ADAPTER_TAKEN) {
        push_taken(a, d->seq, id);
    } else if (take == CB_ADAPTER_LATER) {
        uint64_t *s = list_push(&a->later);
        if (s)
            *s = d->seq;
    }
    return false; /* acknowledged once the outbox knows it was taken */
}

void cb_adapter_taken(cb_adapter *a, uint64_t seq, const char *event_id)
{
    drop_seq(&a->later, seq);
    push_taken(a, seq, event_id);
}

void cb_adapter_not_taken(cb_adapter *a, uint64_t seq)
{
    drop_seq(&a->later, seq);
}

/* ---- what became of events and deliveries, to the outbox */

typedef struct {
    cb_outbox_settlement s;
    cb_outbox_refusal refusals[SETTLE_TAKE];
    const char *ids[SETTLE_TAKE];
} settlement;

static bool nothing_to_settle(const cb_adapter *a)
{
    return !a->sent.n && !a->refused.n && !a->taken.n;
}

/* Refusals are recorded at once (a resend of a refused event is answered
 * from the record), deliveries taken too (their acknowledgements wait for
 * it); acknowledgements wait a while for a batch's sync to share. */
static int settle_due_ms(const cb_adapter *a)
{
    int64_t now = cb_client_now_ms(), due;
    if (a->refused.n || a->taken.n || a->sent.n >= SETTLE_MAX)
        due = now;
    else if (a->sent.n)
        due = a->sent_since_ms + SETTLE_MS;
    else
        return INT32_MAX;
    if (due < a->settle_retry_at_ms) /* a failing disk is not retried in a busy loop */
        due = a->settle_retry_at_ms;
    return due <= now ? 0 : (int)(due - now);
}

static void gather(const cb_adapter *a, settlement *st)
{
    size_t n_refused = a->refused.n < SETTLE_TAKE ? a->refused.n : SETTLE_TAKE;
    size_t n_taken = a->taken.n < SETTLE_TAKE ? a->taken.n : SETTLE_TAKE;
    const refusal *r = a->refused.items;
    const taking *t = a->taken.items;
    for (size_t i = 0; i < n_refused; i++)
        st->refusals[i] = (cb_outbox_refusal){r[i].seq, r[i].why};
    for (size_t i = 0; i < n_taken; i++)
        st->ids[i] = t[i].event_id;
    st->s = (cb_outbox_settlement){a->sent.items, a->sent.n, st->refusals, n_refused, st->ids, n_taken};
}

/* The settlement is in the outbox: forget it, and acknowledge the deliveries taken. */
static void settled(cb_adapter *a, const settlement *st)
{
    a->settle_retry_at_ms = 0;
    a->sent.n = 0;
    refusal *r = a->refused.items;
    if (a->refused.n > st->s.n_refused)
        memmove(r, r + st->s.n_refused, (a->refused.n - st->s.n_refused) * sizeof *r);
    a->refused.n -= st->s.n_refused;
    taking *t = a->taken.items;
    for (size_t i = 0; i < st->s.n_taken; i++) {
        cb_client_ack(a->client, t[i].seq);
        free(t[i].event_id);
    }
    if (a->taken.n > st->s.n_taken)
        memmove(t, t + st->s.n_taken, (a->taken.n - st->s.n_taken) * sizeof *t);
    a->taken.n -= st->s.n_taken;
}

/* In a sync of its own: when due, or now (closing). */
static cb_adapter_code settle(cb_adapter *a, bool now, cb_adapter_error *err)
{
    if (nothing_to_settle(a) || (!now && settle_due_ms(a) > 0))
        return CB_ADAPTER_OK;
    settlement st;
    gather(a, &st);
    cb_error oerr = {0};
    if (cb_outbox_settle(a->outbox, &st.s, &oerr) != CB_OK) {
        /* An acknowledgement unrecorded costs a harmless resend; refusals
         * and deliveries taken wait for the next step. */
        a->sent.n = 0;
        a->settle_retry_at_ms = cb_client_now_ms() + RETRY_MS;
        return fail(err, CB_ADAPTER_OUTBOX_FAILED, "recording answers in the outbox: %s", oerr.reason);
    }
    settled(a, &st);
    return CB_ADAPTER_OK;
}

/* ---- the adapter */

cb_adapter *cb_adapter_open(const cb_adapter_opts *opts, const cb_adapter_handlers *handlers, void *arg,
                            cb_adapter_error *err)
{
    cb_adapter *a = calloc(1, sizeof *a);
    if (!a) {
        fail(err, CB_ADAPTER_NO_MEMORY, "out of memory");
        return NULL;
    }
    a->opts = *opts;
    if (handlers)
        a->handlers = *handlers;
    a->arg = arg;
    a->sent.size = a->later.size = sizeof(uint64_t);
    a->refused.size = sizeof(refusal);
    a->taken.size = sizeof(taking);
    cb_error oerr = {0};
    char why[600];
    /* The outbox holds people's records: closed to other users, as the broker's store is. */
    if (!cb_dir_private(opts->outbox_dir, "the outbox", why, sizeof why)) {
        fail(err, CB_ADAPTER_OUTBOX_FAILED, "%s", why);
        free(a);
        return NULL;
    }
    if (!(a->outbox =
              cb_outbox_open(opts->outbox_dir, opts->outbox_bytes ? opts->outbox_bytes : OUTBOX_BYTES, &oerr))) {
        fail(err, strstr(oerr.reason, "in use") ? CB_ADAPTER_OUTBOX_IN_USE : CB_ADAPTER_OUTBOX_FAILED, "%s",
             oerr.reason);
        free(a);
        return NULL;
    }
    a->newest = cb_outbox_last_seq(a->outbox);
    a->opened_ms = cb_client_now_ms();
    cb_client_opts copts = {.endpoint = opts->broker,
                            .agency = opts->agency,
                            .receive = opts->receive,
                            .credit = opts->credit,
                            .name = opts->name,
                            .key_file = opts->key_file,
                            .broker_key = opts->broker_key};
    cb_client_handlers ch = {.answered = answered, .delivered = delivered};
    cb_error cerr = {0};
    if (!(a->client = cb_client_new(&copts, &ch, a, &cerr))) {
        fail(err, CB_ADAPTER_CONNECTION_FAILED, "%s", cerr.reason);
        cb_adapter_close(&a);
        return NULL;
    }
    pump(a);
    return a;
}

void cb_adapter_close(cb_adapter **a_p)
{
    cb_adapter *a = *a_p;
    if (a) {
        if (a->client)
            settle(a, true, NULL);
        cb_client_destroy(&a->client);
        cb_outbox_close(&a->outbox);
        taking *t = a->taken.items;
        for (size_t i = 0; i < a->taken.n; i++)
            free(t[i].event_id);
        free(a->sent.items);
        free(a->refused.items);
        free(a->taken.items);
        free(a->later.items);
        free(a);
    }
    *a_p = NULL;
}

cb_adapter_batch *cb_adapter_begin(cb_adapter *a, cb_adapter_error *err)
{
    cb_adapter_batch *b = calloc(1, sizeof *b);
    cb_error oerr = {0};
    if (!b || !(b->b = cb_outbox_begin(a->outbox, &oerr))) {
        fail(err, b ? CB_ADAPTER_OUTBOX_FAILED : CB_ADAPTER_NO_MEMORY, "%s", b ? oerr.reason : "out of memory");
        free(b);
        return NULL;
    }
    b->a = a;
    return b;
}

cb_adapter_added cb_adapter_add(cb_adapter_batch *b, const json_t *event, const char *source, uint64_t *seq,
                                cb_adapter_error *err)
{
    cb_error jerr = {0};
    cb_envelope *ev = (cb_envelope *)cb_json_to_message(&carebridge__v1__envelope__descriptor, event, &jerr);
    if (!ev) {
        fail(err, CB_ADAPTER_NOT_AN_EVENT, "%s", jerr.reason);
        return CB_ADAPTER_REFUSED;
    }
    cb_adapter_added added = CB_ADAPTER_REFUSED;
    cb_error cerr = {0};
    if (source && strlen(source) > SOURCE_MAX)
        fail(err, CB_ADAPTER_NOT_AN_EVENT, "the source name is longer than %d bytes", SOURCE_MAX);
    else if (ev->from_agency[0] && strcmp(ev->from_agency, b->a->opts.agency))
        fail(err, CB_ADAPTER_NOT_AN_EVENT, "fromAgency is not the agency this adapter serves");
    else if (cb_envelope_check(ev, &cerr)) /* what the broker would refuse, its sender hears of now */
        fail(err, CB_ADAPTER_NOT_AN_EVENT, "%s", cerr.reason);
    else {
        if (!ev->from_agency[0]) { /* the adapter knows whom it speaks for */
            if (ev->from_agency != protobuf_c_empty_string)
                free(ev->from_agency);
            ev->from_agency = strdup(b->a->opts.agency);
        }
        uint8_t *bytes;
        size_t len = ev->from_agency ? cb_pack(&ev->base, &bytes) : 0;
        if (!ev->from_agency || !bytes) {
            fail(err, CB_ADAPTER_NO_MEMORY, "out of memory");
            added = CB_ADAPTER_FAILED;
        } else {
            switch (cb_outbox_add(b->b, ev->event_id, source, bytes, len, seq)) {
            case CB_OUTBOX_NEW:
                added = CB_ADAPTER_NEW;
                b->newest = *seq;
                if (!b->ahead_closed && b->n_ahead < AHEAD_MAX) {
                    b->ahead[b->n_ahead++] = ev;
                    ev = NULL;
                } else {
                    b->ahead_closed = true;
                }
                break;
            case CB_OUTBOX_AGAIN: added = CB_ADAPTER_AGAIN; break;
            case CB_OUTBOX_CONFLICT:
                fail(err, CB_ADAPTER_ID_CONFLICT, "another event is already in the outbox under this eventId");
                break;
            case CB_OUTBOX_FAILED:
                fail(err, CB_ADAPTER_OUTBOX_FAILED, "the outbox batch has failed");
                added = CB_ADAPTER_FAILED;
                break;
            }
            free(bytes);
        }
    }
    cb_envelope_free(&ev);
    return added;
}

/* The batch's first events go to the broker before the outbox syncs them,
 * so the broker's commit and the outbox's sync overlap instead of taking
 * turns. Only when nothing older is waiting to be sent: the broker sees
 * an agency's events in outbox order. */
static size_t send_ahead(cb_adapter *a, const cb_adapter_batch *b)
{
    if (a->pumped != a->newest || a->retry_at_ms)
        return 0;
    size_t n = 0;
    while (n < b->n_ahead && cb_client_has_room(a->client) &&
           cb_client_publish(a->client, b->ahead[n], tag_of(a->newest + 1 + n)))
        n++;
    a->pumped = a->newest + n;
    return n;
}

static void free_batch(cb_adapter_batch **b_p)
{
    cb_adapter_batch *b = *b_p;
    for (size_t i = 0; i < b->n_ahead; i++)
        cb_envelope_free(&b->ahead[i]);
    free(b);
    *b_p = NULL;
}

cb_adapter_code cb_adapter_commit(cb_adapter_batch **b_p, cb_adapter_error *err)
{
    cb_adapter_batch *b = *b_p;
    cb_adapter *a = b->a;
    cb_error oerr = {0};
    settlement st;
    gather(a, &st);
    cb_outbox_batch_settle(b->b, &st.s);
    uint64_t pumped = a->pumped;
    size_t ahead = cb_outbox_batch_failed(b->b) ? 0 : send_ahead(a, b); /* a failed batch cannot commit */
    cb_code code = cb_outbox_commit(&b->b, &oerr);
    uint64_t newest = b->newest;
    free_batch(b_p);
    if (code != CB_OK) {
        /* Not kept, so never to be sent again from here. The broker may
         * have stored some already: a resend is then its duplicate. */
        for (size_t i = 0; i < ahead; i++)
            cb_client_withdraw(a->client, tag_of(a->newest + 1 + i));
        a->pumped = pumped; /* not past committed ones still to send */
        return fail(err, code == CB_STORE_FULL ? CB_ADAPTER_OUTBOX_FULL : CB_ADAPTER_OUTBOX_FAILED, "%s", oerr.reason);
    }
    settled(a, &st);
    if (newest > a->newest)
        a->newest = newest;
    pump(a);
    return CB_ADAPTER_OK;
}

void cb_adapter_abort(cb_adapter_batch **b_p)
{
    if (*b_p) {
        cb_outbox_abort(&(*b_p)->b);
        free_batch(b_p);
    }
}

bool cb_adapter_source(cb_adapter *a, const char *source, uint64_t *seq)
{
    return cb_outbox_source(a->outbox, source, seq);
}

bool cb_adapter_known(cb_adapter *a, const char *event_id)
{
    uint64_t seq;
    return cb_outbox_find(a->outbox, event_id, &seq);
}

bool cb_adapter_refusal(cb_adapter *a, uint64_t seq, char *why, size_t cap)
{
    return cb_outbox_refused(a->outbox, seq, why, cap);
}

int cb_adapter_fd(const cb_adapter *a)
{
    return cb_client_fd(a->client);
}

int cb_adapter_due_ms(cb_adapter *a)
{
    int due = cb_client_due_ms(a->client), settle_ms = settle_due_ms(a);
    if (settle_ms < due)
        due = settle_ms;
    if (a->retry_at_ms) {
        int64_t left = a->retry_at_ms - cb_client_now_ms();
        if (left < due)
            due = left < 0 ? 0 : (int)left;
    }
    return due;
}

cb_adapter_code cb_adapter_step(cb_adapter *a, cb_adapter_error *err)
{
    if (cb_client_run(a->client, 0) < 0) {
        const char *why = cb_client_failure(a->client);
        return fail(err, why && strstr(why, "refused") ? CB_ADAPTER_BROKER_REFUSED : CB_ADAPTER_CONNECTION_FAILED, "%s",
                    why ? why : "the connection failed");
    }
    a->ever_connected |= cb_client_welcomed(a->client);
    cb_adapter_code code = settle(a, false, err);
    pump(a);
    return code;
}

cb_adapter_code cb_adapter_keep(cb_adapter *a, const char *key, const void *bytes, size_t len, cb_adapter_error *err)
{
    if (strlen(key) > 400)
        return fail(err, CB_ADAPTER_NOT_AN_EVENT, "a document key is longer than 400 bytes");
    cb_error oerr = {0};
    cb_code code = cb_outbox_keep(a->outbox, key, bytes, len, &oerr);
    if (code != CB_OK)
        return fail(err, code == CB_STORE_FULL ? CB_ADAPTER_OUTBOX_FULL : CB_ADAPTER_OUTBOX_FAILED, "%s", oerr.reason);
    return CB_ADAPTER_OK;
}

void cb_adapter_batch_keep(cb_adapter_batch *b, const char *key, const void *bytes, size_t len)
{
    if (strlen(key) <= 400)
        cb_outbox_batch_keep(b->b, key, bytes, len);
}

void cb_adapter_kept(cb_adapter *a, const char *prefix, cb_adapter_doc_fn fn, void *arg)
{
    cb_outbox_kept(a->outbox, prefix, fn, arg);
}

uint64_t cb_adapter_waiting(cb_adapter *a)
{
    return cb_outbox_count(a->outbox);
}

uint64_t cb_adapter_refused(cb_adapter *a)
{
    return cb_outbox_refused_count(a->outbox);
}

bool cb_adapter_connected(const cb_adapter *a)
{
    return cb_client_welcomed(a->client);
}

#define FIRST_WELCOME_MS 1000 /* a broker on loopback or a LAN welcomes well inside this */

bool cb_adapter_answers_expected(const cb_adapter *a)
{
    if (cb_client_welcomed(a->client))
        return true;
    return !a->ever_connected && cb_client_now_ms() - a->opened_ms < FIRST_WELCOME_MS;
}
