/* Reading the flags: `carebridge flags` (by agency, type, person, time) and
 * the gap report per agency pair, from a read transaction on the query
 * thread; and the flags of one event, for journeys. */
#ifndef CB_FLAGQUERY_H
#define CB_FLAGQUERY_H

#include "cb_codec.h"
#include "config.h"
#include "keyring.h"
#include "flagbook.h"
#include "store.h"

#define CB_FLAGS_LIMIT 1000 /* flags one answer holds at most */

Carebridge__V1__FlagsReply *cb_flags_query(const cb_config *cfg, cb_txn *txn, const Carebridge__V1__FlagsRequest *req,
                                           cb_error *err);
/* The same, for who (NULL: anyone): a person's only when the journey's rule
 * lets who see them (query.h), else only flags involving an agency who
 * sees for. */
Carebridge__V1__FlagsReply *cb_flags_query_for(const cb_config *cfg, cb_txn *txn,
                                               const Carebridge__V1__FlagsRequest *req, const cb_principal *who,
                                               cb_error *err);

/* now_ms: the wall clock, for the open flags' ages. */
Carebridge__V1__ReportReply *cb_flags_report(const cb_config *cfg, cb_txn *txn,
                                             const Carebridge__V1__ReportRequest *req, uint64_t now_ms, cb_error *err);

/* Every flag raised on event seq, open or resolved, appended to *flags. */
void cb_flags_of_event(cb_txn *txn, uint64_t seq, cb_flag ***flags, size_t *n);

#endif
