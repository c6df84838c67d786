/* /metrics, /healthz and /readyz over plain HTTP (metrics name no one, so
 * no TLS is needed for them; the default binds loopback), one request at a
 * time on libmicrohttpd's thread: a scrape every few seconds needs no more. */
#include "monitor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flagbook.h"
#include "query.h"

struct cb_monitor {
    struct MHD_Daemon *http;
    /* Set once by cb_monitor_serve, then only read on the daemon's thread. */
    const cb_config *cfg;
    cb_store *store;
    const cb_metrics *metrics;
    cb_live_fn *live;
    void *live_arg;
    atomic_bool serving;
};

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *type, char *body, size_t len,
                              bool owned)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!r) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result plain(struct MHD_Connection *conn, unsigned status, const char *body)
{
    return answer(conn, status, "text/plain; charset=utf-8", (char *)body, strlen(body), false);
}

/* Status as the query thread builds it, in a read transaction of our own
 * (txn, when given, is left open for more). */
static Carebridge__V1__StatusReply *status_of(cb_monitor *m, cb_txn **txn_p, cb_error *err)
{
    cb_agency_live live[m->cfg->n_agencies];
    memset(live, 0, sizeof live);
    m->live(m->live_arg, live);
    cb_txn *txn = cb_txn_begin(m->store, false, err);
    if (!txn)
        return NULL;
    Carebridge__V1__StatusReply *s = cb_query_status(m->cfg, txn, live, cb_store_limit_bytes(m->store), err);
    if (s && txn_p)
        *txn_p = txn;
    else
        cb_txn_abort(&txn);
    return s;
}

typedef struct {
    const cb_config *cfg;
    uint64_t *open; /* [agency * CB_FLAG_TYPES + type] */
} open_arg;

static void count_of(void *arg, const char *agency, unsigned type, uint64_t count)
{
    open_arg *o = arg;
    const cb_agency *a = cb_config_agency(o->cfg, agency);
    if (a && type < CB_FLAG_TYPES)
        o->open[(size_t)(a - o->cfg->agencies) * CB_FLAG_TYPES + type] = count;
}

static enum MHD_Result metrics(cb_monitor *m, struct MHD_Connection *conn)
{
    cb_error err = {0};
    cb_txn *txn = NULL;
    Carebridge__V1__StatusReply *s = status_of(m, &txn, &err);
    if (!s) {
        char why[300];
        snprintf(why, sizeof why, "the store cannot be read: %s\n", err.reason);
        return plain(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
    }
    uint64_t *open = calloc((size_t)m->cfg->n_agencies * CB_FLAG_TYPES, sizeof *open);
    cb_flagbook fb = cb_flagbook_broker();
    if (open)
        cb_flagbook_open_counts(&fb, txn, count_of, &(open_arg){m->cfg, open});
    cb_txn_abort(&txn);
    cb_metrics_view v = {
        .status = s, .syncs = cb_store_commits(m->store), .flags_open = open, .n_types = CB_FLAG_TYPES};
    size_t len = 0;
    char *text = cb_metrics_render(m->metrics, &v, &len);
    free(open);
    carebridge__v1__status_reply__free_unpacked(s, NULL);
    if (!text)
        return plain(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory\n");
    return answer(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len, true);
}

static enum MHD_Result ready(cb_monitor *m, struct MHD_Connection *conn)
{
    cb_error err = {0};
    Carebridge__V1__StatusReply *s = status_of(m, NULL, &err);
    char why[400];
    unsigned code = MHD_HTTP_SERVICE_UNAVAILABLE;
    if (!s)
        snprintf(why, sizeof why, "not ready: the store cannot be read: %s\n", err.reason);
    else if (s->publishing_paused)
        snprintf(why, sizeof why, "not ready: publishing is paused: %s\n", s->paused_reason);
    else
        code = MHD_HTTP_OK, snprintf(why, sizeof why, "ready\n");
    if (s)
        carebridge__v1__status_reply__free_unpacked(s, NULL);
    return plain(conn, code, why);
}

static enum MHD_Result on_request(void *arg, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_len, void **state)
{
    (void)version, (void)upload, (void)state;
    cb_monitor *m = arg;
    if (*upload_len)
        return MHD_NO; /* a GET carries no body */
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
        return plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET /metrics, /healthz or /readyz\n");
    if (!strcmp(url, "/healthz"))
        return plain(conn, MHD_HTTP_OK, "ok\n");
    bool serving = atomic_load(&m->serving);
    if (!strcmp(url, "/readyz"))
        return serving ? ready(m, conn) : plain(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: starting\n");
    if (!strcmp(url, "/metrics"))
        return serving ? metrics(m, conn) : plain(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "starting\n");
    return plain(conn, MHD_HTTP_NOT_FOUND, "GET /metrics, /healthz or /readyz\n");
}

static bool resolve(const char *host_port, struct sockaddr_in *sa, cb_error *err)
{
    const char *colon = strrchr(host_port, ':');
    char host[128];
    if (!colon || (size_t)(colon - host_port) >= sizeof host || !colon[1]) {
        cb_fail(err, CB_INVALID_FIELD, "broker.metrics %s is not HOST:PORT", host_port);
        return false;
    }
    memcpy(host, host_port, (size_t)(colon - host_port));
    host[colon - host_port] = 0;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc) {
        cb_fail(err, CB_INVALID_FIELD, "broker.metrics %s: %s", host_port, gai_strerror(rc));
        return false;
    }
    memcpy(sa, ai->ai_addr, sizeof *sa);
    freeaddrinfo(ai);
    return true;
}

cb_monitor *cb_monitor_start(const char *host_port, char bound[CB_ENDPOINT_MAX], cb_error *err)
{
    struct sockaddr_in sa;
    if (!resolve(host_port, &sa, err))
        return NULL;
    cb_monitor *m = calloc(1, sizeof *m);
    if (!m) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    atomic_init(&m->serving, false);
    m->http = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, m,
                               MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_TIMEOUT,
                               (unsigned)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
    if (!m->http) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "broker.metrics: cannot listen on %s: %s", host_port, strerror(errno));
        free(m);
        return NULL;
    }
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(m->http, MHD_DAEMON_INFO_BIND_PORT);
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
    snprintf(bound, CB_ENDPOINT_MAX, "%s:%u", ip, port ? (unsigned)port->port : 0);
    return m;
}

void cb_monitor_serve(cb_monitor *m, const cb_config *cfg, cb_store *store, const cb_metrics *metrics, cb_live_fn *live,
                      void *live_arg)
{
    m->cfg = cfg;
    m->store = store;
    m->metrics = metrics;
    m->live = live;
    m->live_arg = live_arg;
    atomic_store(&m->serving, true); /* publishes the fields above to the daemon's thread */
}

void cb_monitor_stop(cb_monitor **m_p)
{
    cb_monitor *m = *m_p;
    if (m) {
        MHD_stop_daemon(m->http);
        free(m);
    }
    *m_p = NULL;
}
