#include "zap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "log.h"
#include "thread.h"

/* libzmq 4.3 has it, behind its draft API: without it a CURVE socket whose
 * ZAP handler is missing lets every key in. */
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

#define ZAP_ENDPOINT               "inproc://zeromq.zap.01"
#define REFUSALS_LOGGED_PER_MINUTE 20

struct cb_zap {
    void *rep;
    cb_keyring *ring;
    pthread_t thread;
    atomic_bool stop;
    char name[16];
    int64_t minute;
    unsigned refused_this_minute, refused_unlogged;
};

bool cb_zap_serve_curve(void *sock, const char *secret_z85, cb_error *err)
{
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) < 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret_z85, strlen(secret_z85)) < 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, CB_ZAP_DOMAIN, strlen(CB_ZAP_DOMAIN)) < 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_ENFORCE_DOMAIN, &one, sizeof one) < 0) {
        cb_fail(err, CB_BAD_REQUEST, "cannot make a CURVE server socket: %s", zmq_strerror(errno));
        return false;
    }
    return true;
}

/* A ZMTP property: a name of up to 255 bytes, a 4-byte big-endian length, the value. */
static size_t property(uint8_t *out, const char *name, const char *value)
{
    size_t n = strlen(name), v = strlen(value);
    out[0] = (uint8_t)n;
    memcpy(out + 1, name, n);
    out[1 + n] = (uint8_t)(v >> 24), out[2 + n] = (uint8_t)(v >> 16), out[3 + n] = (uint8_t)(v >> 8),
            out[4 + n] = (uint8_t)v;
    memcpy(out + 5 + n, value, v);
    return 5 + n + v;
}

static void reply(cb_zap *z, const zmq_msg_t *request_id, const char *status, const char *text, const cb_principal *who)
{
    uint8_t meta[256];
    size_t meta_len = 0;
    if (who) {
        meta_len += property(meta, "Role", cb_role_name(who->role));
        meta_len += property(meta + meta_len, "Fingerprint", who->fingerprint);
    }
    zmq_send(z->rep, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(z->rep, zmq_msg_data((zmq_msg_t *)request_id), zmq_msg_size((zmq_msg_t *)request_id), ZMQ_SNDMORE);
    zmq_send(z->rep, status, strlen(status), ZMQ_SNDMORE);
    zmq_send(z->rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(z->rep, who ? who->name : "", who ? strlen(who->name) : 0, ZMQ_SNDMORE);
    zmq_send(z->rep, meta, meta_len, 0);
}

/* A flood of handshakes from an unknown key must not flood the log. */
static void log_refusal(cb_zap *z, const char *why, const char *fingerprint, const char *address)
{
    int64_t minute = (int64_t)time(NULL) / 60;
    if (minute != z->minute) {
        if (z->refused_unlogged)
            cb_log(CB_LOG_WARN, "zap: %u more handshakes refused last minute, not logged one by one",
                   z->refused_unlogged);
        z->minute = minute;
        z->refused_this_minute = z->refused_unlogged = 0;
    }
    if (z->refused_this_minute++ < REFUSALS_LOGGED_PER_MINUTE)
        cb_log(CB_LOG_WARN, "zap: refused a handshake from %s: %s (key fingerprint %s)", address, why, fingerprint);
    else
        z->refused_unlogged++;
}

/* version, request id, domain, address, routing id, mechanism, credentials... */
#define ZAP_FRAMES 7

static void answer(cb_zap *z)
{
    zmq_msg_t f[ZAP_FRAMES + 1];
    int n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->rep, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < ZAP_FRAMES + 1)
            f[n++] = m;
        else
            zmq_msg_close(&m);
    }
    if (n < 6) { /* not a ZAP request: libzmq sends none such, but answer it so REP can go on */
        zmq_msg_t empty;
        zmq_msg_init(&empty);
        reply(z, n > 1 ? &f[1] : &empty, "500", "malformed ZAP request", NULL);
        zmq_msg_close(&empty);
    } else {
        char address[64] = "?", mechanism[16] = "";
        snprintf(address, sizeof address, "%.*s", (int)zmq_msg_size(&f[3]), (const char *)zmq_msg_data(&f[3]));
        snprintf(mechanism, sizeof mechanism, "%.*s", (int)zmq_msg_size(&f[5]), (const char *)zmq_msg_data(&f[5]));
        bool domain = zmq_msg_size(&f[2]) == strlen(CB_ZAP_DOMAIN) &&
                      !memcmp(zmq_msg_data(&f[2]), CB_ZAP_DOMAIN, strlen(CB_ZAP_DOMAIN));
        bool curve = !strcmp(mechanism, "CURVE") && n == 7 && zmq_msg_size(&f[6]) == 32;
        cb_principal who;
        char fingerprint[CB_FINGERPRINT_LEN + 1] = "-";
        if (curve)
            cb_key_fingerprint(zmq_msg_data(&f[6]), fingerprint);
        if (!domain || !curve) {
            log_refusal(z, domain ? "not a CURVE handshake" : "not carebridge's ZAP domain", fingerprint, address);
            reply(z, &f[1], "400", "carebridge takes CURVE keys only", NULL);
        } else if (!cb_keyring_find(z->ring, zmq_msg_data(&f[6]), &who)) {
            log_refusal(z, "the key is not in the configuration", fingerprint, address);
            reply(z, &f[1], "400", "this key is not in carebridge's configuration", NULL);
        } else {
            cb_log(CB_LOG_DEBUG, "zap: let in %s (%s, key fingerprint %s) from %s", who.name, cb_role_name(who.role),
                   who.fingerprint, address);
            reply(z, &f[1], "200", "OK", &who);
        }
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static void *run(void *arg)
{
    cb_zap *z = arg;
    cb_thread_name(z->name);
    while (!atomic_load(&z->stop)) {
        zmq_pollitem_t item = {z->rep, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&item, 1, 100);
        if (rc < 0 && errno == ETERM)
            break;
        if (rc > 0)
            answer(z);
    }
    return NULL;
}

cb_zap *cb_zap_start(void *ctx, cb_keyring *ring, const char *thread_name, cb_error *err)
{
    cb_zap *z = calloc(1, sizeof *z);
    if (!z) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    z->ring = ring;
    snprintf(z->name, sizeof z->name, "%s", thread_name);
    int linger = 0;
    if (!(z->rep = zmq_socket(ctx, ZMQ_REP)) || zmq_setsockopt(z->rep, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
        zmq_bind(z->rep, ZAP_ENDPOINT) < 0) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "cannot start the ZAP handler: %s", zmq_strerror(errno));
        if (z->rep)
            zmq_close(z->rep);
        free(z);
        return NULL;
    }
    /* Bound here, served there: a socket may move between threads with a
     * full barrier between, which pthread_create gives. */
    if (!cb_thread_start(&z->thread, run, z)) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "cannot start the ZAP handler's thread");
        zmq_close(z->rep);
        free(z);
        return NULL;
    }
    return z;
}

void cb_zap_stop(cb_zap **zap_p)
{
    cb_zap *z = *zap_p;
    if (z) {
        atomic_store(&z->stop, true);
        pthread_join(z->thread, NULL);
        zmq_close(z->rep);
        free(z);
    }
    *zap_p = NULL;
}
