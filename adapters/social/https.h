/* The FHIR server's TLS, and who may call it: its certificate and key
 * (checked before it listens: a key open to others, an expired certificate
 * or a key that is not the certificate's stops start-up, naming the file),
 * and the callers' bearer tokens or client certificates. */
#ifndef CB_HTTPS_H
#define CB_HTTPS_H

#include <stdbool.h>
#include <stddef.h>
#include <microhttpd.h>

/* TLS 1.2 and 1.3 only. */
#define CB_HTTPS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

typedef struct cb_https cb_https;

typedef struct {
    const char *cert, *key; /* PEM files: TLS on when both are given */
    const char *client_ca;  /* PEM: callers may present a certificate it signed */
    const char *token_file; /* bearer tokens, one a line ('#' comments) */
} cb_https_opts;

/* NULL with why when a file cannot be used. */
cb_https *cb_https_load(const cb_https_opts *o, char *why, size_t cap);
void cb_https_free(cb_https **h_p);

bool cb_https_tls(const cb_https *h);
const char *cb_https_cert_pem(const cb_https *h);
const char *cb_https_key_pem(const cb_https *h);
const char *cb_https_trust_pem(const cb_https *h); /* NULL without --client-ca */
/* Whether callers must prove who they are: a token file or a client CA given. */
bool cb_https_required(const cb_https *h);
/* Whether conn's caller presented a configured bearer token, or a client
 * certificate the client CA signed. */
bool cb_https_authorized(const cb_https *h, struct MHD_Connection *conn);

#endif
