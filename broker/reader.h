/* The query thread: status and journey requests answered from LMDB read
 * transactions of its own, beside the store thread's commits. A query never
 * waits for a batch to commit, and a batch never waits for a query. A read
 * transaction begun after the request arrived sees every commit whose ACK
 * went out before it: so a journey includes every event acknowledged before
 * it was asked. */
#ifndef CB_READER_H
#define CB_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "batch.h"
#include "config.h"
#include "query.h"
#include "store.h"

#define CB_READER_WAITING 64 /* requests held at once; more are refused BUSY */

typedef struct cb_reader cb_reader;

typedef struct {
    cb_peer_token peer;
    uint64_t ref;
    uint8_t *reply; /* a packed Frame, or NULL with err set */
    size_t len;
    cb_error err;
} cb_answer;

/* Start the thread. It reads store but never writes it; stop it before the
 * store is closed. */
cb_reader *cb_reader_start(const cb_config *cfg, cb_store *store, cb_error *err);
void cb_reader_stop(cb_reader **r_p);

/* Readable when an answer is ready. */
int cb_reader_fd(const cb_reader *r);
/* Queue a packed Frame holding a status or journey request (copied) with
 * what only the broker knows of each agency (copied, for status). False when
 * CB_READER_WAITING requests are already held: refuse it as BUSY. */
bool cb_reader_submit(cb_reader *r, cb_peer_token peer, uint64_t ref, const uint8_t *frame, size_t len,
                      const cb_agency_live *live);
/* The oldest answer, false when there is none. The caller frees a->reply. */
bool cb_reader_answer(cb_reader *r, cb_answer *a);

#endif
