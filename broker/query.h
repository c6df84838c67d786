/* Read-only answers built from a store transaction: the status of every
 * agency's queue, and a person's journey across agencies. Each returns a
 * message freed with protobuf_c_message_free_unpacked(m, NULL). */
#ifndef CB_QUERY_H
#define CB_QUERY_H

#include <stdbool.h>
#include "carebridge.pb-c.h"
#include "cb_error.h"
#include "config.h"
#include "keyring.h"
#include "log.h"
#include "store.h"

/* What only the running broker knows about each agency, indexed like cfg->agencies. */
typedef struct {
    bool connected;
    uint32_t in_flight;
    uint64_t refused_acks;
} cb_agency_live;

/* Why publishes are refused while the store has no room: for the sender's
 * NACK and for status. */
const char *cb_query_room_reason(const cb_config *cfg, cb_room room, char *buf, size_t cap);

Carebridge__V1__StatusReply *cb_query_status(const cb_config *cfg, cb_txn *txn, const cb_agency_live *live,
                                             uint64_t limit_bytes, cb_error *err);

/* Every event stored for the person under any identifier the request names
 * (an NHS or CHI number, normalised as intake does, and local ids), ordered by
 * occurredAt: updates merged into the event they correct, and for each
 * recipient of a referral, discharge or handover the stage its responses have
 * reached. */
Carebridge__V1__JourneyReply *cb_query_journey(const cb_config *cfg, cb_txn *txn,
                                               const Carebridge__V1__JourneyRequest *req, cb_error *err);
/* The same, for who (NULL: anyone), with the person's pseudonym in person
 * (as their events name them, else as asked). NULL with NOT_PERMITTED
 * unless every identifier asked for that names stored events names one sent
 * by or to an agency who sees for: so a journey cannot borrow a person who
 * sees to show another, and an unknown person is refused like one of
 * somebody else's. */
Carebridge__V1__JourneyReply *cb_query_journey_for(const cb_config *cfg, cb_txn *txn,
                                                   const Carebridge__V1__JourneyRequest *req, const cb_principal *who,
                                                   char person[CB_PSEUDONYM_LEN], cb_error *err);

#endif
