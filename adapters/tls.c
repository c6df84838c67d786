#include "tls.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sodium.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define TOKENS_MAX 64
#define TOKEN_MAX  256

struct cb_tls {
    char *cert, *key, *trust;
    gnutls_certificate_credentials_t cred; /* for cb_tls_accept, made at load */
    char *tokens[TOKENS_MAX];
    size_t n_tokens;
};

/* A whole file; a secret (private) one must be closed to group and others. */
static char *slurp(const char *option, const char *path, bool secret, char *why, size_t cap)
{
    struct stat st;
    FILE *f = fopen(path, "r");
    if (!f || fstat(fileno(f), &st) < 0) {
        snprintf(why, cap, "%s %s: %s", option, path, strerror(errno));
        if (f)
            fclose(f);
        return NULL;
    }
    if (secret && (st.st_mode & (S_IRWXG | S_IRWXO))) {
        snprintf(why, cap, "%s %s is open to others (mode %03o): chmod 600 it", option, path,
                 (unsigned)(st.st_mode & 0777));
        fclose(f);
        return NULL;
    }
    char *text = malloc((size_t)st.st_size + 1);
    size_t n = text ? fread(text, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (!text) {
        snprintf(why, cap, "%s %s: out of memory", option, path);
        return NULL;
    }
    text[n] = 0;
    return text;
}

static bool check_pair(const cb_tls_opts *o, const char *cert, const char *key, char *why, size_t cap)
{
    gnutls_datum_t c = {(unsigned char *)cert, (unsigned)strlen(cert)};
    gnutls_datum_t k = {(unsigned char *)key, (unsigned)strlen(key)};
    gnutls_x509_crt_t crt;
    gnutls_x509_crt_init(&crt);
    int rc = gnutls_x509_crt_import(crt, &c, GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
        snprintf(why, cap, "--tls-cert %s holds no PEM certificate: %s", o->cert, gnutls_strerror(rc));
        gnutls_x509_crt_deinit(crt);
        return false;
    }
    time_t now = time(NULL), until = gnutls_x509_crt_get_expiration_time(crt),
           from = gnutls_x509_crt_get_activation_time(crt);
    gnutls_x509_crt_deinit(crt);
    char when[32];
    if (until != (time_t)-1 && until < now) {
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&until));
        snprintf(why, cap, "--tls-cert %s expired at %s", o->cert, when);
        return false;
    }
    if (from != (time_t)-1 && from > now) {
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&from));
        snprintf(why, cap, "--tls-cert %s is not valid until %s", o->cert, when);
        return false;
    }
    gnutls_certificate_credentials_t cred;
    gnutls_certificate_allocate_credentials(&cred);
    rc = gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(cred);
    if (rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
        snprintf(why, cap, "--tls-key %s is not the key of the certificate in --tls-cert %s", o->key, o->cert);
        return false;
    }
    if (rc < 0) {
        snprintf(why, cap, "--tls-key %s cannot be used with --tls-cert %s: %s", o->key, o->cert, gnutls_strerror(rc));
        return false;
    }
    return true;
}

static bool read_tokens(cb_tls *h, const char *path, char *why, size_t cap)
{
    char *text = slurp("--token-file", path, true, why, cap);
    if (!text)
        return false;
    for (char *line = strtok(text, "\r\n"); line; line = strtok(NULL, "\r\n")) {
        line += strspn(line, " \t");
        size_t len = strcspn(line, " \t");
        if (!len || *line == '#')
            continue;
        if (h->n_tokens == TOKENS_MAX || len > TOKEN_MAX || !(h->tokens[h->n_tokens] = strndup(line, len))) {
            snprintf(why, cap, "--token-file %s: at most %d tokens of at most %d characters", path, TOKENS_MAX,
                     TOKEN_MAX);
            sodium_memzero(text, strlen(text));
            free(text);
            return false;
        }
        h->n_tokens++;
    }
    free(text);
    if (!h->n_tokens) {
        snprintf(why, cap, "--token-file %s holds no token", path);
        return false;
    }
    return true;
}

static bool make_credentials(cb_tls *h, const cb_tls_opts *o, char *why, size_t cap)
{
    gnutls_datum_t c = {(unsigned char *)h->cert, (unsigned)strlen(h->cert)};
    gnutls_datum_t k = {(unsigned char *)h->key, (unsigned)strlen(h->key)};
    int rc = gnutls_certificate_allocate_credentials(&h->cred);
    if (rc >= 0)
        rc = gnutls_certificate_set_x509_key_mem(h->cred, &c, &k, GNUTLS_X509_FMT_PEM);
    if (rc >= 0 && h->trust) {
        gnutls_datum_t t = {(unsigned char *)h->trust, (unsigned)strlen(h->trust)};
        rc = gnutls_certificate_set_x509_trust_mem(h->cred, &t, GNUTLS_X509_FMT_PEM);
        if (rc == 0)
            rc = GNUTLS_E_NO_CERTIFICATE_FOUND;
    }
    if (rc < 0) {
        snprintf(why, cap, "%s: %s", rc == GNUTLS_E_NO_CERTIFICATE_FOUND ? o->client_ca : o->cert, gnutls_strerror(rc));
        return false;
    }
    return true;
}

cb_tls *cb_tls_load(const cb_tls_opts *o, char *why, size_t cap)
{
    cb_tls *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    if (!o->cert != !o->key) {
        snprintf(why, cap, "--tls-cert and --tls-key go together");
        goto fail;
    }
    if (o->cert &&
        (!(h->cert = slurp("--tls-cert", o->cert, false, why, cap)) ||
         !(h->key = slurp("--tls-key", o->key, true, why, cap)) || !check_pair(o, h->cert, h->key, why, cap)))
        goto fail;
    if (o->client_ca && !o->cert) {
        snprintf(why, cap, "--client-ca needs TLS: give --tls-cert and --tls-key too");
        goto fail;
    }
    if (o->client_ca && !(h->trust = slurp("--client-ca", o->client_ca, false, why, cap)))
        goto fail;
    if (o->token_file && !read_tokens(h, o->token_file, why, cap))
        goto fail;
    if (h->cert && !make_credentials(h, o, why, cap))
        goto fail;
    return h;
fail:
    cb_tls_free(&h);
    return NULL;
}

void cb_tls_free(cb_tls **h_p)
{
    cb_tls *h = *h_p;
    if (h) {
        if (h->key)
            sodium_memzero(h->key, strlen(h->key));
        free(h->cert);
        free(h->key);
        free(h->trust);
        if (h->cred)
            gnutls_certificate_free_credentials(h->cred);
        for (size_t i = 0; i < h->n_tokens; i++) {
            sodium_memzero(h->tokens[i], strlen(h->tokens[i]));
            free(h->tokens[i]);
        }
        free(h);
    }
    *h_p = NULL;
}

bool cb_tls_on(const cb_tls *h)
{
    return h->cert != NULL;
}

const char *cb_tls_cert_pem(const cb_tls *h)
{
    return h->cert;
}

const char *cb_tls_key_pem(const cb_tls *h)
{
    return h->key;
}

const char *cb_tls_trust_pem(const cb_tls *h)
{
    return h->trust;
}

bool cb_tls_required(const cb_tls *h)
{
    return h->n_tokens || h->trust;
}

/* Compared in constant time, so a guess learns nothing from how long it took. */
bool cb_tls_token_known(const cb_tls *h, const char *given)
{
    size_t len = strlen(given);
    bool known = false;
    for (size_t i = 0; i < h->n_tokens; i++)
        known |= strlen(h->tokens[i]) == len && !sodium_memcmp(h->tokens[i], given, len);
    return known;
}

bool cb_tls_peer_verified(const cb_tls *h, gnutls_session_t session)
{
    unsigned status = 1;
    return h->trust && session && gnutls_certificate_verify_peers2(session, &status) == 0 && status == 0;
}

gnutls_session_t cb_tls_accept(cb_tls *h, int fd)
{
    gnutls_session_t s;
    if (!h->cred || gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK) < 0)
        return NULL;
    if (gnutls_priority_set_direct(s, CB_TLS_PRIORITIES, NULL) < 0 ||
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, h->cred) < 0) {
        gnutls_deinit(s);
        return NULL;
    }
    if (h->trust)
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
    gnutls_transport_set_int(s, fd);
    return s;
}
