/* The query thread: status and journey requests answered from LMDB read
 * transactions of its own, beside the store thread's commits. A query never
 * waits for a batch to commit, and a batch never waits for a query. A read
 * transaction begun after the request arrived sees every commit whose ACK
 * went out before it: so a journey includes every event acknowledged before
 * it was asked.
 *
 * Requests come two ways. On the query endpoint (broker.queries), a ROUTER
 * the thread owns on a ZeroMQ context of its own: neither the request nor
 * its answer waits for the network thread, which may be busy with a batch
 * for milliseconds, or shares its I/O thread. And from the network thread,
 * for those sent to the main endpoint, answered through it. */
#ifndef CB_READER_H
#define CB_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "batch.h"
#include "config.h"
#include "audit.h"
#include "keyring.h"
#include "query.h"
#include "sockets.h"
#include "store.h"

#define CB_READER_WAITING 64 /* requests from the network thread held at once; more are refused BUSY */

typedef struct cb_reader cb_reader;

/* Fills cfg->n_agencies entries with what only the running broker knows;
 * called on the query thread. */
typedef void cb_live_fn(void *arg, cb_agency_live *live);
/* Write audit records before the reads they record are answered; false when
 * they could not be (then the read is refused). Called on the query thread. */
typedef bool cb_audit_fn(void *arg, const cb_audit_entry *entries, size_t n);

typedef struct {
    cb_peer_token peer;
    uint64_t ref;
    uint8_t *reply; /* a packed Frame, or NULL with err set */
    size_t len;
    cb_error err;
} cb_answer;

/* Start the thread and bind cfg->queries (what was bound is copied to
 * bound), so a busy endpoint refuses the start before the store is opened.
 * With curve_secret, a CURVE server whose handshakes a ZAP handler on the
 * thread's own context checks against ring.
 * Nothing is answered until cb_reader_serve. */
cb_reader *cb_reader_start(const cb_config *cfg, const char *curve_secret, cb_keyring *ring,
                           char bound[CB_ENDPOINT_MAX], cb_error *err);
/* Close every connection to the query endpoint (a key was revoked), waiting
 * until the thread has bound it again. */
bool cb_reader_rebind(cb_reader *r, cb_error *err);
/* Answer from store, which the thread reads but never writes; stop the
 * thread before the store is closed. */
void cb_reader_serve(cb_reader *r, cb_store *store, cb_live_fn *live, cb_audit_fn *audit, void *arg);
void cb_reader_stop(cb_reader **r_p);

/* True for a Frame kind (kind_case) the query thread answers: the reads. */
bool cb_reader_answers(uint32_t frame_kind);

/* Readable when an answer for the network thread is ready. */
int cb_reader_fd(const cb_reader *r);
/* Queue a packed Frame of a kind cb_reader_answers (copied), asked by who
 * (NULL without CURVE), whose need-to-know it is answered within. False
 * when CB_READER_WAITING requests are already held: refuse it as BUSY. */
bool cb_reader_submit(cb_reader *r, cb_peer_token peer, uint64_t ref, const uint8_t *frame, size_t len,
                      const cb_principal *who);
/* The oldest answer, false when there is none. The caller frees a->reply. */
bool cb_reader_answer(cb_reader *r, cb_answer *a);

#endif
