/* TLS for the adapters' listeners (the FHIR server's HTTPS, MLLP over TLS),
 * and who may call them: the certificate and key (checked before anything
 * listens: a key open to others, an expired certificate or a key that is not
 * the certificate's stops start-up, naming the file), and the callers'
 * bearer tokens (HTTP) or client certificates. */
#ifndef CB_TLS_H
#define CB_TLS_H

#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <stddef.h>

/* TLS 1.2 and 1.3 only. */
#define CB_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

typedef struct cb_tls cb_tls;

typedef struct {
    const char *cert, *key; /* PEM files: TLS on when both are given */
    const char *client_ca;  /* PEM: callers may present a certificate it signed */
    const char *token_file; /* bearer tokens, one a line ('#' comments) */
} cb_tls_opts;

/* NULL with why when a file cannot be used. */
cb_tls *cb_tls_load(const cb_tls_opts *o, char *why, size_t cap);
void cb_tls_free(cb_tls **t_p);

bool cb_tls_on(const cb_tls *t);
const char *cb_tls_cert_pem(const cb_tls *t);
const char *cb_tls_key_pem(const cb_tls *t);
const char *cb_tls_trust_pem(const cb_tls *t); /* NULL without a client CA */
/* Whether callers must prove who they are: a token file or a client CA given. */
bool cb_tls_required(const cb_tls *t);
bool cb_tls_token_known(const cb_tls *t, const char *token);
/* Whether the peer of session presented a certificate the client CA signed. */
bool cb_tls_peer_verified(const cb_tls *t, gnutls_session_t session);
/* A server session on fd (non-blocking), or NULL: for a listener of its own. */
gnutls_session_t cb_tls_accept(cb_tls *t, int fd);

#endif
