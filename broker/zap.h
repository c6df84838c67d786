/* The ZAP handler (RFC 27) of one ZeroMQ context: at each CURVE handshake
 * on a socket of that context it answers whether the client's key is in the
 * keyring. A known key is let in with its principal's name as the User-Id,
 * and "Role" and "Fingerprint" as properties every message from that
 * connection carries; any other key, mechanism or domain is refused. */
#ifndef CB_ZAP_H
#define CB_ZAP_H

#include "cb_error.h"
#include "keyring.h"

#define CB_ZAP_DOMAIN "carebridge"

typedef struct cb_zap cb_zap;

/* Bound and serving once this returns: start it before binding sockets
 * that need it. NULL with err set. */
cb_zap *cb_zap_start(void *ctx, cb_keyring *ring, const char *thread_name, cb_error *err);
void cb_zap_stop(cb_zap **zap_p);

/* Make sock, before it binds, a CURVE server with the broker's secret key:
 * every handshake goes to the ZAP handler, and fails when none answers. */
bool cb_zap_serve_curve(void *sock, const char *secret_z85, cb_error *err);

#endif
