/* What every adapter is built on, and all a third party's adapter needs
 * (README, "Writing an adapter"). Events an agency system hands over go
 * into a durable outbox, synced before the adapter tells that system
 * "accepted", and on to the broker, resent across broker outages and
 * adapter restarts until the broker answers. Deliveries come out, are
 * acknowledged to the broker only once the agency system has taken them,
 * and one redelivered after it was taken is dropped by its event id.
 *
 * Events are carebridge JSON both ways (jansson; the README's event
 * format), so no protobuf type shows through. Single-threaded; it lives in
 * the caller's event loop through cb_adapter_fd, cb_adapter_due_ms and
 * cb_adapter_step. */
#ifndef CB_ADAPTER_H
#define CB_ADAPTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Local failures, the adapter's own (the broker's refusals of an event
 * come as a cb_adapter_answer). */
#define CB_ADAPTER_CODES(X)                                                                                            \
    X(OK, "no error")                                                                                                  \
    X(NOT_AN_EVENT, "the JSON is not a carebridge event")                                                              \
    X(ID_CONFLICT, "another event is already in the outbox under that event id")                                       \
    X(OUTBOX_FULL, "the outbox has no room; nothing was kept")                                                         \
    X(OUTBOX_FAILED, "the outbox could not be written or read; nothing was kept")                                      \
    X(OUTBOX_IN_USE, "another process holds the outbox")                                                               \
    X(BROKER_REFUSED, "the broker refused this adapter's hello, or its key at the handshake")                          \
    X(CONNECTION_FAILED, "the connection to the broker cannot be used")                                                \
    X(NO_MEMORY, "out of memory")

typedef enum {
#define CB_X_ADAPTER_CODE(name, msg) CB_ADAPTER_##name,
    CB_ADAPTER_CODES(CB_X_ADAPTER_CODE)
#undef CB_X_ADAPTER_CODE
} cb_adapter_code;

typedef struct {
    cb_adapter_code code;
    char text[320]; /* names the field or the step; never a value from the event */
} cb_adapter_error;

const char *cb_adapter_code_name(cb_adapter_code code);

typedef struct cb_adapter cb_adapter;

typedef struct {
    const char *broker;     /* endpoint, "tcp://127.0.0.1:5570" */
    const char *agency;     /* the agency this adapter serves */
    const char *outbox_dir; /* its own LMDB environment, created 0700 */
    uint64_t outbox_bytes;  /* the outbox's map; default 1 GiB */
    bool receive;           /* take the agency's deliveries */
    uint32_t credit;        /* deliveries in flight at once; 0: the broker's limit */
    const char *name;       /* software name and version, for the broker's log */
    const char *key_file;   /* CURVE: the adapter's secret key file, and ... */
    const char *broker_key; /* ... the broker's public key (text or file); both NULL: no CURVE */
} cb_adapter_opts;

/* The broker's answer to an event from the outbox. */
typedef struct {
    uint64_t seq; /* the event's outbox seq, as cb_adapter_add gave it */
    const char *event_id;
    bool accepted;            /* stored by the broker; else refused, and kept aside in the outbox */
    bool duplicate;           /* accepted: it was stored already */
    const char *const *flags; /* accepted: the handoff flag types it raised ("MISSING_INFORMATION") */
    size_t n_flags;
    const char *const *warnings; /* accepted: "field:reason" for the sending system to put right */
    size_t n_warnings;
    const char *code;   /* refused: the broker's code ("UNKNOWN_AGENCY") */
    const char *reason; /* refused: what is wrong, naming the field */
} cb_adapter_answer;

typedef enum {
    CB_ADAPTER_TAKEN,     /* the agency system has it: acknowledge */
    CB_ADAPTER_LATER,     /* it will be taken later: cb_adapter_taken (or _not_taken) then */
    CB_ADAPTER_NOT_TAKEN, /* it cannot be taken now (a full disk): the broker delivers it again after
                             its redelivery timeout, and parks it after its attempts */
} cb_adapter_take;

typedef struct {
    void (*answered)(void *arg, const cb_adapter_answer *answer);
    /* A delivery (event is the envelope in carebridge JSON, valid during
     * the call; seq is the broker's). Never called again for an event id
     * already taken. */
    cb_adapter_take (*delivered)(void *arg, uint64_t seq, const char *event_id, const json_t *event);
} cb_adapter_handlers;

/* Opens the outbox and connects (ZeroMQ connects in the background: a
 * broker that is down now is no error). NULL with err when the outbox
 * cannot be opened. */
cb_adapter *cb_adapter_open(const cb_adapter_opts *opts, const cb_adapter_handlers *handlers, void *arg,
                            cb_adapter_error *err);
/* Takes the last settlements to the outbox, says goodbye and closes. */
void cb_adapter_close(cb_adapter **a_p);

/* ---- taking events in: a batch per burst the agency system sends, one
 * sync for all of it. */
typedef struct cb_adapter_batch cb_adapter_batch;

cb_adapter_batch *cb_adapter_begin(cb_adapter *a, cb_adapter_error *err);
typedef enum {
    CB_ADAPTER_NEW,     /* kept under *seq once the batch commits */
    CB_ADAPTER_AGAIN,   /* the same event is in the outbox already, under *seq */
    CB_ADAPTER_REFUSED, /* not kept: err says why (NOT_AN_EVENT: not the schema, or what the
                         * broker refuses on its own terms, cb_envelope_check; ID_CONFLICT) */
    CB_ADAPTER_FAILED,  /* the batch has failed: cb_adapter_commit says why */
} cb_adapter_added;
/* source, when not NULL (at most 200 bytes), names the input the event
 * came from in the agency system's terms (an HL7 message's facility,
 * control id and hash; a file's digest and row), so that a resend of the
 * input is known by cb_adapter_source before it is mapped again. */
cb_adapter_added cb_adapter_add(cb_adapter_batch *b, const json_t *event, const char *source, uint64_t *seq,
                                cb_adapter_error *err);
/* Sync: only after CB_ADAPTER_OK may the agency system be told "accepted".
 * Otherwise nothing of the batch is kept here, and the agency system is to
 * send it again. The batch's events go to the broker while the outbox
 * syncs, so the broker may hold some of a failed batch: a resend is then
 * its duplicate, by event id. Answers received so far are recorded in the
 * same sync. Frees the batch either way. */
cb_adapter_code cb_adapter_commit(cb_adapter_batch **b_p, cb_adapter_error *err);
void cb_adapter_abort(cb_adapter_batch **b_p);

/* The outbox seq of the event added from source, when one was. */
bool cb_adapter_source(cb_adapter *a, const char *source, uint64_t *seq);
/* Whether an event with this id is in the outbox (sent or not). */
bool cb_adapter_known(cb_adapter *a, const char *event_id);
/* Why the broker refused outbox event seq ("CODE: reason"); false when it
 * has not (a resend of a refused event can be answered as the first was). */
bool cb_adapter_refusal(cb_adapter *a, uint64_t seq, char *why, size_t cap);

/* ---- the loop */
int cb_adapter_fd(const cb_adapter *a); /* poll for POLLIN */
int cb_adapter_due_ms(cb_adapter *a);   /* step within this; 0 while something waits */
/* Handle what arrived and what is due, never blocking. CB_ADAPTER_OK, or
 * with err: BROKER_REFUSED or CONNECTION_FAILED, which end the adapter;
 * OUTBOX_FAILED, answers that could not be recorded, tried again at the
 * next step (log it and go on). */
cb_adapter_code cb_adapter_step(cb_adapter *a, cb_adapter_error *err);

/* A delivery the handler left for later has been taken. */
void cb_adapter_taken(cb_adapter *a, uint64_t seq, const char *event_id);
/* ... or will not be (the agency system refused it): the broker delivers
 * it again after its redelivery timeout, and parks it after its attempts. */
void cb_adapter_not_taken(cb_adapter *a, uint64_t seq);

/* Documents the adapter serves its agency system, kept (and synced) in
 * the outbox beside the events: a key of at most 400 bytes, any bytes. */
cb_adapter_code cb_adapter_keep(cb_adapter *a, const char *key, const void *bytes, size_t len, cb_adapter_error *err);
/* The same inside a batch: kept when it commits, in its one sync. */
void cb_adapter_batch_keep(cb_adapter_batch *b, const char *key, const void *bytes, size_t len);
typedef bool (*cb_adapter_doc_fn)(void *arg, const char *key, size_t key_len, const uint8_t *bytes, size_t len);
/* Each kept document whose key begins with prefix, in key order, until fn returns false. */
void cb_adapter_kept(cb_adapter *a, const char *prefix, cb_adapter_doc_fn fn, void *arg);

/* Events in the outbox not yet answered by the broker, and refused by it. */
uint64_t cb_adapter_waiting(cb_adapter *a);
uint64_t cb_adapter_refused(cb_adapter *a);
bool cb_adapter_connected(const cb_adapter *a);
/* Whether an answer from the broker is to be expected soon: connected, or
 * in the first second after opening, before the first welcome (the agency
 * system's first message may come before the broker's welcome does). */
bool cb_adapter_answers_expected(const cb_adapter *a);

#endif
