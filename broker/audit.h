/* The audit: a record of every read of personal data (a journey, flags, a
 * delivery, a replay) and every refusal, in keyspaces of its own, written
 * only by the store thread in the transaction that made the read, or, for
 * the query thread's reads, before their answers leave (committer.h,
 * cb_committer_audit). Never changed. Records name people only by the log's
 * pseudonym (log.h), and are found newest first, by person or from a date. */
#ifndef CB_AUDIT_H
#define CB_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "cb_error.h"
#include "config.h"
#include "curve.h"
#include "keyring.h"
#include "log.h"
#include "store.h"

/* The broker's keyspaces: the flags' (flagbook.h), then the audit's. */
extern const char *const cb_broker_keyspaces[];
#define CB_AUDIT_BASE       10 /* CB_FLAGBOOK_KEYSPACES */
#define CB_BROKER_KEYSPACES (CB_AUDIT_BASE + 2)

#define CB_AUDIT_LIMIT 1000 /* records in one answer at most */

/* One record, as the threads hand it to the store thread: plain memory. */
typedef struct {
    char who[CB_PRINCIPAL_NAME_MAX];
    cb_role role;
    char fingerprint[CB_FINGERPRINT_LEN + 1]; /* empty without CURVE */
    const char *action;                       /* a string literal: "journey", "delivery", ... */
    char person[CB_PSEUDONYM_LEN];            /* empty when none */
    bool permitted;
    cb_code code; /* refused: why */
    char detail[96];
} cb_audit_entry;

/* An entry for who doing action (who NULL: without CURVE, the agency it said
 * it was, or "-" for a connection that said nothing). */
cb_audit_entry cb_audit_of(const cb_principal *who, const char *agency, const char *action);

/* Write e as of wall_ms. Only the store thread writes. */
void cb_audit_put(cb_txn *txn, const cb_audit_entry *e, uint64_t wall_ms);

/* Retention: remove audit records written before before_ms (wall clock),
 * at most budget of them in this transaction; returns how many, and sets
 * *more when expired ones remain. Only the store thread calls it. */
size_t cb_audit_expire(cb_txn *txn, uint64_t before_ms, size_t budget, bool *more);

/* The person a stored event is about, as a pseudonym: only its person is
 * decoded. "p-none" when it has none. */
void cb_audit_person_of_event(const uint8_t *bytes, size_t len, char out[CB_PSEUDONYM_LEN]);

/* The records req asks for, newest first, that who may see: an operator
 * all; an agency or coordinator those about a person it may see (so it must
 * name one); a lead none. NULL with err (NOT_PERMITTED) otherwise. The
 * persons are checked by the journey's rule (cb_query_journey). */
Carebridge__V1__AuditReply *cb_audit_query(const cb_config *cfg, cb_txn *txn, const Carebridge__V1__AuditRequest *req,
                                           const cb_principal *who, cb_error *err);

#endif
