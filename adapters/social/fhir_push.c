#include "fhir_push.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "program.h"

#define SOCKETS        8
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define PUT_TIMEOUT_MS 10000

typedef struct {
    uint64_t seq;
    char *event_id, *url, *body;
} item;

struct cb_fhir_push {
    CURLM *multi;
    CURL *easy; /* the PUT in flight, for the queue's head; NULL when none */
    struct curl_slist *headers;
    char base[512];
    item *q; /* a ring: head, n, cap */
    size_t head, n, cap;
    struct {
        curl_socket_t fd;
        short events;
    } socks[SOCKETS];
    size_t n_socks;
    int64_t timer_at_ms; /* libcurl's timeout; -1 none */
    int64_t retry_at_ms; /* when the head goes again */
    int backoff_ms;
    char error[CURL_ERROR_SIZE];
    cb_fhir_pushed_fn fn;
    void *arg;
};

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy, (void)socketp;
    cb_fhir_push *p = userp;
    size_t i = 0;
    while (i < p->n_socks && p->socks[i].fd != fd)
        i++;
    if (what == CURL_POLL_REMOVE) {
        if (i < p->n_socks)
            p->socks[i] = p->socks[--p->n_socks];
        return 0;
    }
    if (i == p->n_socks) {
        if (p->n_socks == SOCKETS)
            return -1;
        p->socks[p->n_socks++].fd = fd;
    }
    p->socks[i].events = (short)((what & CURL_POLL_IN ? POLLIN : 0) | (what & CURL_POLL_OUT ? POLLOUT : 0));
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    cb_fhir_push *p = userp;
    p->timer_at_ms = timeout_ms < 0 ? -1 : cb_now_ms() + timeout_ms;
    return 0;
}

static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data, (void)arg;
    return size * n;
}

cb_fhir_push *cb_fhir_push_new(const char *base, cb_fhir_pushed_fn fn, void *arg, char *why, size_t cap)
{
    size_t len = strlen(base);
    while (len && base[len - 1] == '/')
        len--;
    if ((strncmp(base, "http://", 7) && strncmp(base, "https://", 8)) || len >= 500) {
        snprintf(why, cap, "--push %s is not an http:// or https:// URL (a FHIR base, such as https://host/fhir)",
                 base);
        return NULL;
    }
    cb_fhir_push *p = calloc(1, sizeof *p);
    if (!p || curl_global_init(CURL_GLOBAL_DEFAULT)) {
        snprintf(why, cap, "libcurl cannot start");
        free(p);
        return NULL;
    }
    memcpy(p->base, base, len);
    p->multi = curl_multi_init();
    p->headers = curl_slist_append(NULL, "Content-Type: application/fhir+json");
    p->headers = p->headers ? curl_slist_append(p->headers, "Accept: application/fhir+json") : NULL;
    if (!p->multi || !p->headers) {
        snprintf(why, cap, "libcurl cannot start");
        cb_fhir_push_free(&p);
        return NULL;
    }
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
    p->timer_at_ms = -1;
    p->fn = fn;
    p->arg = arg;
    return p;
}

static void drop_easy(cb_fhir_push *p)
{
    if (p->easy) {
        curl_multi_remove_handle(p->multi, p->easy);
        curl_easy_cleanup(p->easy);
        p->easy = NULL;
    }
}

static void pop(cb_fhir_push *p)
{
    item *it = &p->q[p->head];
    free(it->event_id);
    free(it->url);
    free(it->body);
    p->head = (p->head + 1) % p->cap;
    p->n--;
}

void cb_fhir_push_free(cb_fhir_push **p_p)
{
    cb_fhir_push *p = *p_p;
    if (!p)
        return;
    drop_easy(p);
    while (p->n)
        pop(p);
    free(p->q);
    if (p->multi)
        curl_multi_cleanup(p->multi);
    curl_slist_free_all(p->headers);
    curl_global_cleanup();
    free(p);
    *p_p = NULL;
}

bool cb_fhir_push_send(cb_fhir_push *p, uint64_t seq, const char *event_id, const char *path, const char *resource)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        item *q = malloc(cap * sizeof *q);
        if (!q)
            return false;
        for (size_t i = 0; i < p->n; i++)
            q[i] = p->q[(p->head + i) % p->cap];
        free(p->q);
        p->q = q;
        p->cap = cap;
        p->head = 0;
    }
    size_t url_len = strlen(p->base) + strlen(path) + 2;
    item it = {.seq = seq, .event_id = strdup(event_id), .url = malloc(url_len), .body = strdup(resource)};
    if (!it.event_id || !it.url || !it.body) {
        free(it.event_id);
        free(it.url);
        free(it.body);
        return false;
    }
    snprintf(it.url, url_len, "%s/%s", p->base, path);
    p->q[(p->head + p->n++) % p->cap] = it;
    return true;
}

/* The head's PUT, when none is in flight and its backoff is over. */
static void start(cb_fhir_push *p)
{
    if (p->easy || !p->n || cb_now_ms() < p->retry_at_ms)
        return;
    const item *it = &p->q[p->head];
    CURL *e = curl_easy_init();
    if (!e)
        return; /* tried again on the next step */
    curl_easy_setopt(e, CURLOPT_URL, it->url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, it->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(it->body));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, p->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)PUT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, p->error);
    p->error[0] = 0;
    if (curl_multi_add_handle(p->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        return;
    }
    p->easy = e;
}

static void finished(cb_fhir_push *p, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &status);
    drop_easy(p);
    item *it = &p->q[p->head];
    if (rc == CURLE_OK && status >= 200 && status < 300) {
        p->backoff_ms = 0;
        p->fn(p->arg, it->seq, it->event_id, true, NULL);
        pop(p);
        return;
    }
    char why[CURL_ERROR_SIZE + 64];
    if (rc != CURLE_OK)
        snprintf(why, sizeof why, "%s", p->error[0] ? p->error : curl_easy_strerror(rc));
    else
        snprintf(why, sizeof why, "the server answered %ld", status);
    if (rc != CURLE_OK || status == 408 || status == 429 || status >= 500) {
        p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (p->backoff_ms > BACKOFF_MAX_MS)
            p->backoff_ms = BACKOFF_MAX_MS;
        p->retry_at_ms = cb_now_ms() + p->backoff_ms;
        cb_log("push of delivery %" PRIu64 " (%s): %s; again in %d ms", it->seq, it->event_id, why, p->backoff_ms);
        return;
    }
    p->fn(p->arg, it->seq, it->event_id, false, why);
    pop(p);
}

size_t cb_fhir_push_fds(cb_fhir_push *p, struct pollfd *fds, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_socks && n < cap; i++)
        fds[n++] = (struct pollfd){.fd = p->socks[i].fd, .events = p->socks[i].events};
    return n;
}

void cb_fhir_push_handle(cb_fhir_push *p, const struct pollfd *fds, size_t n)
{
    int running;
    for (size_t i = 0; i < n; i++)
        if (fds[i].revents) {
            int ev = (fds[i].revents & POLLIN ? CURL_CSELECT_IN : 0) |
                     (fds[i].revents & POLLOUT ? CURL_CSELECT_OUT : 0) |
                     (fds[i].revents & (POLLERR | POLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(p->multi, fds[i].fd, ev, &running);
        }
    if (p->timer_at_ms >= 0 && cb_now_ms() >= p->timer_at_ms) {
        p->timer_at_ms = -1;
        curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(p->multi, &left)))
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == p->easy)
            finished(p, msg->data.result);
    start(p); /* libcurl asks for a new PUT's first step through its timer */
}

int cb_fhir_push_due_ms(const cb_fhir_push *p)
{
    int64_t now = cb_now_ms(), at = -1;
    if (p->timer_at_ms >= 0)
        at = p->timer_at_ms;
    if (!p->easy && p->n && (at < 0 || p->retry_at_ms < at))
        at = p->retry_at_ms;
    if (at < 0)
        return 1000;
    return at <= now ? 0 : (int)(at - now > 1000 ? 1000 : at - now);
}
