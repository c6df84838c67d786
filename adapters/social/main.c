/* carebridge-social: the social care adapter. FHIR R4 JSON over HTTP
 * (libmicrohttpd, run from this program's own poll loop): a ServiceRequest
 * posted is a referral, a Task posted answers one, each kept in the durable
 * outbox before 201 and sent on to the broker; what is delivered to social
 * care is served back as ServiceRequests and Tasks. */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "adapter.h"
#include "fhir.h"
#include "fhir_kept.h"
#include "fhir_push.h"
#include "fhir_search.h"
#include "pending.h"
#include "program.h"
#include "tls.h"

static const char usage[] =
    "Usage: carebridge-social [--broker ENDPOINT] [--as AGENCY] [--data DIR]\n"
    "                         [--key FILE --broker-key KEY]\n"
    "                         [--listen HOST:PORT] [--agencies A,B,...]\n"
    "                         [--tls-cert FILE --tls-key FILE] [--token-file FILE] [--client-ca FILE]\n"
    "                         [--org [SYSTEM|]VALUE=AGENCY ...]\n"
    "                         [--max-body BYTES] [--ack-wait MS] [--push URL]\n"
    "\n"
    "The social care adapter: a FHIR R4 server (JSON) at /fhir.\n"
    "  POST /fhir/ServiceRequest   a referral (README, \"FHIR R4 (social care)\")\n"
    "  POST /fhir/Task             the answer to one: received, accepted, rejected,\n"
    "                              completed, cancelled\n"
    "  POST /fhir/$process-message a FHIR message (as NHS England's BaRS sends a\n"
    "                              referral): taken as a POST of its MessageHeader's\n"
    "                              focus, what that references in the Bundle contained\n"
    "  GET  /fhir/ServiceRequest   what was referred to social care, and what it posted;\n"
    "  GET  /fhir/Task             answers to its referrals, and what it posted: searchset\n"
    "                              Bundles, by patient:identifier (or subject:identifier,\n"
    "                              patient.identifier), identifier (the resource's own),\n"
    "                              _id, status and _lastUpdated (gt, ge, lt, le, eq);\n"
    "                              _count a page (100, at most 1000) from _offset, with\n"
    "                              total and a next link\n"
    "  GET  /fhir/Encounter        admissions to hospital, as the broker delivered them\n"
    "  GET  /fhir/ServiceRequest/ID, /fhir/Task/ID, /fhir/Encounter/ID\n"
    "  GET  /fhir/metadata         the CapabilityStatement\n"
    "A resource posted is kept in the durable outbox under DIR before the answer: 201\n"
    "Created (200 for a resend of one already kept) with an OperationOutcome whose\n"
    "warnings are the flags the event raised, when the broker answers within --ack-wait\n"
    "(Prefer: return=representation answers with the resource as served instead,\n"
    "return=minimal with nothing); 400 for what is not JSON or not the resource type,\n"
    "422 for a resource that cannot be mapped, 409 for another resource under the same\n"
    "identifier, 413 over --max-body, 415 for a content type other than\n"
    "application/fhir+json, application/json or application/json+fhir, 406 for a\n"
    "client whose Accept or _format takes no JSON, 503 when the outbox cannot keep it:\n"
    "each with an OperationOutcome naming the element by FHIRPath. If-None-Exist (a\n"
    "search) makes a create conditional: one found is the answer (200), two are 412.\n"
    "What is delivered to social care is kept and served; with --push, each resource\n"
    "is also PUT to URL/<type>/<id> (the social care system's own FHIR server), one at\n"
    "a time, and the delivery acknowledged on its 2xx: 408, 429, 5xx and a server that\n"
    "cannot be reached are tried again, backing off to 30 s; another answer leaves the\n"
    "delivery for the broker to deliver again, and park after its attempts.\n"
    "\n"
    "Options:\n"
    "  --broker ENDPOINT   the broker (default " CB_DEFAULT_BROKER ")\n"
    "  --as AGENCY         the agency served (default social-care)\n"
    "  --data DIR          outbox and served resources (default ./var/social)\n" CB_PROGRAM_KEY_USAGE
    "  --listen HOST:PORT  HTTP (default 127.0.0.1:8090); plain HTTP on loopback only\n"
    "  --tls-cert FILE     serve HTTPS (TLS 1.2 or 1.3) with this PEM certificate ...\n"
    "  --tls-key FILE      ... and its key (mode 0600); an expired certificate, a key\n"
    "                      open to others or not the certificate's stops start-up\n"
    "  --token-file FILE   callers must send 'Authorization: Bearer T', T a line of\n"
    "                      FILE (mode 0600), or ...\n"
    "  --client-ca FILE    ... present a client certificate this PEM CA signed; with\n"
    "                      TLS one of the two is required, and others get 401\n"
    "  --agencies LIST     the agency ids a performer or requester may name\n"
    "                      (default health,housing,social-care,voluntary)\n"
    "  --org [SYSTEM|]VALUE=AGENCY\n"
    "                      an organisation identifier (an ODS code, say) that names\n"
    "                      AGENCY as a performer or requester, directly or\n"
    "                      through a contained Organization or PractitionerRole\n"
    "                      (repeatable: --org RY6=health)\n"
    "  --max-body BYTES    larger bodies get 413 (default 1048576)\n"
    "  --ack-wait MS       how long an answer waits for the broker (default 2000)\n"
    "  --push URL          a FHIR base (http:// or https://) to PUT deliveries to\n"
    "  -h, --help          this text;  -V, --version  the version\n";

#define FHIR_JSON "application/fhir+json; charset=utf-8"

typedef struct request request;

#define ORGS_MAX 64

typedef struct {
    cb_program_opts prog;
    const char *listen, *push_url;
    cb_tls_opts tls_opts;
    cb_tls *https;
    size_t max_body;
    int ack_wait_ms;
    cb_id_list agencies;
    cb_fhir_org orgs[ORGS_MAX]; /* --org, each string its own copy */
    size_t n_orgs;
    cb_fhir_opts map;
    cb_adapter *adapter;
    struct MHD_Daemon *http;
    cb_fhir_push *push;
    cb_adapter_batch *batch;
    cb_pending *owed;   /* answers waiting: for the batch, then for the broker */
    unsigned resumed;   /* connections resumed since MHD last ran */
    char base_url[300]; /* http://HOST:PORT/fhir, for a Bundle's fullUrls */
    unsigned long created, refused, served, batches;
    unsigned conns, requests; /* connections open; requests begun and not yet completed on them */
    int64_t batch_at_ms;      /* when the open batch took its first resource */
} social;

/* What a POST's answer carries (FHIR's Prefer: return=...): by default the
 * OperationOutcome, which alone has room for the flags raised. */
typedef enum { RETURN_OUTCOME, RETURN_MINIMAL, RETURN_REPRESENTATION } returning;

struct request {
    struct MHD_Connection *conn;
    returning prefer;
    char *body;
    size_t len, cap;
    char *if_none_exist; /* FHIR's conditional create: the search that must find nothing */
    bool too_big, wrong_type, unacceptable, suspended, unauthorized;
    /* the answer, once there is one */
    unsigned status;
    char *out;
    char location[160];
    /* while owed */
    uint64_t seq;
    bool fresh, existing; /* existing: the resource If-None-Exist found, nothing kept */
    char kind[16], id[65];
};

static void instant_now(char out[32])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + strlen(out), 32 - strlen(out), ".%03ldZ", ts.tv_nsec / 1000000);
}

/* ---- answers */

static char *outcome(const char *severity, const char *code, const char *expression, const char *text)
{
    cb_fhir_error e = {0};
    snprintf(e.code, sizeof e.code, "%s", code);
    snprintf(e.expression, sizeof e.expression, "%s", expression ? expression : "");
    snprintf(e.text, sizeof e.text, "%.*s", (int)sizeof e.text - 1, text); /* cut to fit, as meant */
    return cb_fhir_outcome(&e, 1, severity);
}

static void set_answer(request *r, unsigned status, char *out)
{
    r->status = status;
    free(r->out);
    r->out = out;
}

static void refuse(social *s, request *r, unsigned status, const char *code, const char *expression, const char *text)
{
    set_answer(r, status, outcome("error", code, expression, text));
    s->refused++;
}

/* A configured bearer token, or a client certificate the client CA signed. */
static bool authorized(const social *s, struct MHD_Connection *conn)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth && !strncasecmp(auth, "Bearer ", 7) && cb_tls_token_known(s->https, auth + 7 + strspn(auth + 7, " ")))
        return true;
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    return info && cb_tls_peer_verified(s->https, info->tls_session);
}

static void unauthorized(social *s, request *r)
{
    refuse(s, r, MHD_HTTP_UNAUTHORIZED, "login", NULL,
           "this server needs a bearer token (Authorization: Bearer ...) or a client certificate it trusts");
}

/* FHIR JSON is the one format served: a client that takes no other is told so. */
static void not_acceptable(social *s, request *r)
{
    refuse(s, r, MHD_HTTP_NOT_ACCEPTABLE, "not-supported", NULL,
           "only FHIR JSON is served here (application/fhir+json); the Accept header or _format asks for another "
           "format");
}

static json_t *kept(social *s, const char *kind, const char *id);

/* The answer to a resource kept: information that it was, and a warning per
 * flag raised; or, as the client prefers, nothing, or the resource as it is
 * served here (its id, meta.lastUpdated). */
static void created(social *s, request *r, const cb_adapter_answer *ans)
{
    snprintf(r->location, sizeof r->location, "/fhir/%s/%s", r->kind, r->id);
    unsigned status = r->fresh ? MHD_HTTP_CREATED : MHD_HTTP_OK;
    json_t *res = r->prefer == RETURN_REPRESENTATION ? kept(s, r->kind, r->id) : NULL;
    if (res || r->prefer == RETURN_MINIMAL) {
        set_answer(r, status, res ? json_dumps(res, JSON_COMPACT) : NULL);
        json_decref(res);
        s->created++;
        return;
    }
    size_t most = 1 + (ans ? ans->n_flags + ans->n_warnings : 0), n = 0;
    cb_fhir_issue *issues = calloc(most, sizeof *issues);
    char(*texts)[200] = calloc(most, sizeof *texts);
    if (!issues || !texts) {
        free(issues);
        free(texts);
        return set_answer(r, MHD_HTTP_SERVICE_UNAVAILABLE, NULL); /* answered with no body: post again */
    }
    snprintf(texts[n], sizeof texts[n], "%s %s %s", r->kind, r->id,
             r->existing ? "exists already (If-None-Exist found it): nothing was created"
             : ans       ? "kept and stored by carebridge"
                         : "kept; carebridge will have it once it is reachable");
    issues[n] = (cb_fhir_issue){"information", "informational", NULL, texts[n], NULL};
    n++;
    for (size_t i = 0; ans && i < ans->n_flags; i++, n++) {
        snprintf(texts[n], sizeof texts[n], "carebridge flag %s raised for this event", ans->flags[i]);
        issues[n] = (cb_fhir_issue){"warning", "business-rule", NULL, texts[n], ans->flags[i]};
    }
    for (size_t i = 0; ans && i < ans->n_warnings; i++, n++) {
        snprintf(texts[n], sizeof texts[n], "carebridge warning %s", ans->warnings[i]);
        issues[n] = (cb_fhir_issue){"warning", "business-rule", NULL, texts[n], NULL};
    }
    set_answer(r, status, cb_fhir_outcome_of(issues, n));
    free(issues);
    free(texts);
    s->created++;
}

/* An owed request has its answer: let MHD send it. */
static void release(social *s, request *r)
{
    if (r->suspended) {
        r->suspended = false;
        MHD_resume_connection(r->conn);
        s->resumed++;
    }
}

static void accepted(void *arg, void *item, const cb_adapter_answer *ans)
{
    created(arg, item, ans);
    release(arg, item);
}

static void refused(void *arg, void *item, const char *why)
{
    char text[360];
    snprintf(text, sizeof text, "refused by carebridge: %s", why);
    refuse(arg, item, 422, "processing", NULL, text);
    release(arg, item);
}

static void failed(void *arg, void *item)
{
    refuse(arg, item, MHD_HTTP_SERVICE_UNAVAILABLE, "transient", NULL, "the resource could not be kept; try again");
    release(arg, item);
}

static void answered(void *arg, const cb_adapter_answer *ans)
{
    social *s = arg;
    if (!ans->accepted)
        cb_log("the broker refused outbox event %" PRIu64 " (%s): %s: %s", ans->seq, ans->event_id, ans->code,
               ans->reason);
    cb_pending_answered(s->owed, ans);
}

/* ---- resources in */

/* The ServiceRequest served here that a Task's focus names, if any. */
static json_t *referral_of(social *s, const json_t *task)
{
    char id[65];
    return cb_fhir_focus_id(task, id) ? kept(s, "ServiceRequest", id) : NULL;
}

static size_t search(social *s, const char *kind, fhir_query *q, size_t skip, size_t limit, size_t stop, json_t **page);

/* FHIR's conditional create (If-None-Exist: a search): when the search finds
 * one resource, that one is the answer (200, nothing kept); two, 412; a
 * search it cannot make, 400. True when it has answered. It searches what
 * is served, as GET does. */
static bool exists(social *s, request *r, const char *kind)
{
    char why[200];
    fhir_query *q = fhir_query_parse(r->if_none_exist, why, sizeof why);
    if (!q) {
        char text[260];
        snprintf(text, sizeof text, "If-None-Exist: %s", why);
        refuse(s, r, MHD_HTTP_BAD_REQUEST, "not-supported", NULL, text);
        return true;
    }
    json_t *found;
    size_t matches = search(s, kind, q, 0, 1, 2, &found);
    fhir_query_free(&q);
    if (matches == 1) {
        snprintf(r->id, sizeof r->id, "%s", json_string_value(json_object_get(json_array_get(found, 0), "id")));
        r->existing = true;
        created(s, r, NULL);
    } else if (matches > 1) {
        refuse(s, r, MHD_HTTP_PRECONDITION_FAILED, "multiple-matches", NULL,
               "If-None-Exist: the search finds more than one resource, so this one is not created");
    }
    json_decref(found);
    return matches > 0;
}

static void take(social *s, request *r, const char *kind)
{
    snprintf(r->kind, sizeof r->kind, "%s", kind);
    if (r->wrong_type)
        return refuse(s, r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "not-supported", NULL,
                      "the body must be FHIR JSON: Content-Type application/fhir+json or application/json");
    if (r->too_big) {
        char text[120];
        snprintf(text, sizeof text, "the body is larger than this server takes (%zu bytes)", s->max_body);
        return refuse(s, r, MHD_HTTP_CONTENT_TOO_LARGE, "too-costly", NULL, text);
    }
    cb_fhir_error err = {0};
    json_t *res = cb_fhir_parse(r->body ? r->body : "", r->len, kind, &err), *event = NULL;
    if (res && r->if_none_exist && exists(s, r, kind)) {
        json_decref(res);
        return;
    }
    if (res && !strcmp(kind, "ServiceRequest")) {
        event = cb_fhir_referral(res, &s->map, &err);
    } else if (res) {
        json_t *referral = referral_of(s, res);
        event = cb_fhir_answer(res, referral, &s->map, &err);
        json_decref(referral);
    }
    if (!event) {
        json_decref(res);
        cb_log("refused a %s: %d %s at %s: %s", kind, err.http_status, err.code, err.expression, err.text);
        return refuse(s, r, (unsigned)err.http_status, err.code, err.expression, err.text);
    }
    const char *event_id = json_string_value(json_object_get(event, "eventId"));
    cb_fhir_id(event_id, r->id);
    cb_adapter_error aerr = {0};
    if (!s->batch)
        s->batch_at_ms = cb_now_ms();
    if (!s->batch && !(s->batch = cb_adapter_begin(s->adapter, &aerr))) {
        json_decref(res);
        json_decref(event);
        cb_log("the outbox cannot take resources: %s", aerr.text);
        return refuse(s, r, MHD_HTTP_SERVICE_UNAVAILABLE, "transient", NULL,
                      "the resource could not be kept; try again");
    }
    cb_adapter_added added = cb_adapter_add(s->batch, event, NULL, &r->seq, &aerr);
    json_decref(event);
    if (added == CB_ADAPTER_NEW) {
        /* Served back as posted, with the id it goes by here. */
        char when[32], key[120];
        instant_now(when);
        size_t len;
        char *text = cb_fhir_kept_text(r->id, when, r->body, r->len, &len);
        snprintf(key, sizeof key, "%s/%s", kind, r->id);
        if (text)
            cb_adapter_batch_keep(s->batch, key, text, len);
        free(text);
    }
    json_decref(res);
    if (added == CB_ADAPTER_REFUSED) {
        cb_log("refused a %s: %s: %s", kind, cb_adapter_code_name(aerr.code), aerr.text);
        return refuse(s, r, aerr.code == CB_ADAPTER_ID_CONFLICT ? MHD_HTTP_CONFLICT : 422,
                      aerr.code == CB_ADAPTER_ID_CONFLICT ? "duplicate" : "processing",
                      aerr.code == CB_ADAPTER_ID_CONFLICT ? "identifier" : NULL, aerr.text);
    }
    if (added == CB_ADAPTER_FAILED)
        return refuse(s, r, MHD_HTTP_SERVICE_UNAVAILABLE, "transient", NULL,
                      "the resource could not be kept; try again");
    r->fresh = added == CB_ADAPTER_NEW;
    if (!cb_pending_add(s->owed, r, r->seq, r->fresh))
        refuse(s, r, MHD_HTTP_SERVICE_UNAVAILABLE, "transient", NULL, "the resource could not be kept; try again");
}

/* FHIR messaging, as BaRS sends a referral: a message Bundle posted to
 * $process-message is taken as a POST of its focus (a ServiceRequest or a
 * Task), with what it references in the Bundle inlined, and answered so. */
static void take_message(social *s, request *r)
{
    if (r->wrong_type || r->too_big)
        return take(s, r, "Bundle"); /* refused for that before it is read */
    cb_fhir_error err = {0};
    char kind[16];
    json_t *bundle = cb_fhir_parse(r->body ? r->body : "", r->len, "Bundle", &err);
    json_t *focus = bundle ? cb_fhir_message_focus(bundle, kind, &err) : NULL;
    json_decref(bundle);
    if (!focus) {
        cb_log("refused a message: %d %s at %s: %s", err.http_status, err.code, err.expression, err.text);
        return refuse(s, r, (unsigned)err.http_status, err.code, err.expression, err.text);
    }
    char *text = json_dumps(focus, JSON_COMPACT);
    json_decref(focus);
    if (!text)
        return refuse(s, r, MHD_HTTP_SERVICE_UNAVAILABLE, "transient", NULL,
                      "the message could not be read; try again");
    free(r->body);
    r->body = text;
    r->len = strlen(text);
    r->cap = r->len + 1;
    take(s, r, kind);
}

/* The batch the last poll gathered, in one sync; then its requests may be answered. */
/* Group commit: one sync for every resource the connections have in hand.
 * While an open connection has not yet sent its request, the batch waits
 * for it, at most GATHER_MS after its first resource: a system posting on
 * several connections at once shares one sync instead of taking turns. */
#define GATHER_MS 1

static int gather_ms(const social *s)
{
    if (!s->batch || s->requests >= s->conns)
        return 0;
    int64_t left = s->batch_at_ms + GATHER_MS - cb_now_ms();
    return left > 0 ? (int)left : 0;
}

static void commit(social *s)
{
    if (gather_ms(s))
        return;
    cb_adapter_error err = {0};
    s->batches += s->batch != NULL;
    bool ok = !s->batch || cb_adapter_commit(&s->batch, &err) == CB_ADAPTER_OK;
    if (!ok)
        cb_log("the outbox could not keep a batch: %s: %s", cb_adapter_code_name(err.code), err.text);
    cb_pending_committed(s->owed, ok);
}

/* ---- resources out */

typedef struct {
    fhir_query *q;
    json_t *entries;    /* the matches from the skip-th, at most limit of them */
    size_t skip, limit; /* the page */
    size_t matched;     /* all so far */
    size_t stop;        /* matches after which to look no further; 0: look at all */
} searching;

static bool collect(void *arg, const char *key, size_t key_len, const uint8_t *bytes, size_t len)
{
    (void)key;
    (void)key_len;
    searching *w = arg;
    json_t *res = cb_fhir_kept_resource(bytes, len);
    if (res && fhir_query_matches(w->q, res) && w->matched++ >= w->skip && json_array_size(w->entries) < w->limit)
        json_array_append(w->entries, res);
    json_decref(res);
    return !w->stop || w->matched < w->stop;
}

/* The resources of kind served here that q finds, in id order: a page of
 * them (limit from the skip-th) into *page, and how many there are in all
 * (or stop, when it finds that many first: then it looks no further). */
static size_t search(social *s, const char *kind, fhir_query *q, size_t skip, size_t limit, size_t stop, json_t **page)
{
    char prefix[40];
    snprintf(prefix, sizeof prefix, "%s/", kind);
    searching w = {q, json_array(), skip, limit, 0, stop};
    cb_adapter_kept(s->adapter, prefix, collect, &w);
    *page = w.entries;
    return w.matched;
}

typedef struct {
    char *text;
    size_t len;
    FILE *f;
} query_text;

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    query_text *t = cls;
    if (!strcmp(key, "_offset"))
        return MHD_YES;
    char *k = curl_easy_escape(NULL, key, 0), *v = curl_easy_escape(NULL, value ? value : "", 0);
    if (k && v)
        fprintf(t->f, "%s%s=%s", ftell(t->f) ? "&" : "", k, v);
    curl_free(k);
    curl_free(v);
    return MHD_YES;
}

/* The URL of the search r asked for, at offset among its matches: a page's
 * self or next link. The caller frees it. */
static char *page_url(const social *s, request *r, const char *kind, size_t offset)
{
    query_text t = {NULL, 0, NULL};
    if (!(t.f = open_memstream(&t.text, &t.len)))
        return NULL;
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_arg, &t);
    if (offset)
        fprintf(t.f, "%s_offset=%zu", ftell(t.f) ? "&" : "", offset);
    if (fclose(t.f)) {
        free(t.text);
        return NULL;
    }
    char *url = NULL;
    if (asprintf(&url, "%s/%s%s%s", s->base_url, kind, t.len ? "?" : "", t.text) < 0)
        url = NULL;
    free(t.text);
    return url;
}

typedef struct {
    json_t *found;
} reading;

static bool read_one(void *arg, const char *key, size_t key_len, const uint8_t *bytes, size_t len)
{
    (void)key;
    (void)key_len;
    ((reading *)arg)->found = cb_fhir_kept_resource(bytes, len);
    return false;
}

/* The resource kept as kind/id; NULL when none is (a longer id is another). */
static json_t *kept(social *s, const char *kind, const char *id)
{
    char key[120];
    reading rd = {NULL};
    if (!id[0] || strchr(id, '/') || snprintf(key, sizeof key, "%s/%s", kind, id) >= (int)sizeof key)
        return NULL;
    cb_adapter_kept(s->adapter, key, read_one, &rd);
    const char *found = json_string_value(json_object_get(rd.found, "id"));
    if (found && !strcmp(found, id))
        return rd.found;
    json_decref(rd.found);
    return NULL;
}

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    fhir_query_add(cls, key, value ? value : "");
    return MHD_YES;
}

static void serve_get(social *s, request *r, const char *url)
{
    if (!strcmp(url, "/fhir/metadata")) {
        set_answer(r, MHD_HTTP_OK, fhir_capability_statement());
        return;
    }
    for (size_t k = 0; k < sizeof cb_fhir_served / sizeof *cb_fhir_served; k++) {
        const char *const *kinds = cb_fhir_served;
        char base[40];
        size_t n = (size_t)snprintf(base, sizeof base, "/fhir/%s", kinds[k]);
        if (strncmp(url, base, n) || (url[n] && url[n] != '/'))
            continue;
        if (url[n] == '/') { /* a read */
            json_t *found = kept(s, kinds[k], url + n + 1);
            if (!found) {
                char text[120];
                snprintf(text, sizeof text, "no %s with that id", kinds[k]);
                return refuse(s, r, MHD_HTTP_NOT_FOUND, "not-found", NULL, text);
            }
            set_answer(r, MHD_HTTP_OK, json_dumps(found, JSON_COMPACT));
            json_decref(found);
            return;
        }
        fhir_query *q = fhir_query_new();
        MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_arg, q);
        if (fhir_query_error(q)) {
            char bad[200];
            snprintf(bad, sizeof bad, "%s", fhir_query_error(q));
            fhir_query_free(&q);
            return refuse(s, r, MHD_HTTP_BAD_REQUEST, "not-supported", NULL, bad);
        }
        size_t offset, count = fhir_query_page(q, &offset);
        json_t *found;
        size_t total = search(s, kinds[k], q, offset, count, 0, &found);
        fhir_query_free(&q);
        char *self = page_url(s, r, kinds[k], offset);
        char *next = offset + count < total && count ? page_url(s, r, kinds[k], offset + count) : NULL;
        set_answer(r, MHD_HTTP_OK, fhir_searchset(found, total, s->base_url, self, next));
        free(self);
        free(next);
        json_decref(found);
        s->served++;
        return;
    }
    refuse(s, r, MHD_HTTP_NOT_FOUND, "not-found", NULL,
           "no such endpoint: /fhir/ServiceRequest, /fhir/Task, /fhir/Encounter, /fhir/metadata");
}

static enum MHD_Result send_answer(request *r)
{
    const char *body = r->out ? r->out : "";
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    if (*body)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, FHIR_JSON);
    if (r->location[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
    if (r->status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET");
    if (r->status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"carebridge\"");
    enum MHD_Result ok = MHD_queue_response(r->conn, r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* Prefer: return=minimal | representation | OperationOutcome (RFC 7240, among
 * other preferences); anything else, the OperationOutcome. */
static returning preferred(const char *prefer)
{
    const char *at = prefer ? strcasestr(prefer, "return=") : NULL;
    if (!at)
        return RETURN_OUTCOME;
    at += 7;
    size_t n = strcspn(at, " ,;");
    if (n == 7 && !strncasecmp(at, "minimal", n))
        return RETURN_MINIMAL;
    if (n == 14 && !strncasecmp(at, "representation", n))
        return RETURN_REPRESENTATION;
    return RETURN_OUTCOME;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_len, void **state)
{
    (void)version;
    social *s = cls;
    request *r = *state;
    if (!r) {
        if (!(r = calloc(1, sizeof *r)))
            return MHD_NO;
        r->conn = conn;
        *state = r;
        s->requests++;
        r->unauthorized = cb_tls_required(s->https) && !authorized(s, conn);
        r->unacceptable = !fhir_json_acceptable(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept"),
                                                MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "_format"));
        if (!strcmp(method, "POST")) {
            r->wrong_type = !fhir_json_content(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"));
            r->prefer = preferred(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Prefer"));
            const char *ine = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Exist");
            if (ine && ine[strspn(ine, " \t")] && !(r->if_none_exist = strdup(ine)))
                return MHD_NO;
        }
        return MHD_YES;
    }
    if (r->status)
        return send_answer(r); /* resumed with its answer */
    if (!strcmp(method, "POST")) {
        if (*upload_len) { /* read to the end whatever it is, so the answer can be sent */
            if (!r->too_big && !r->wrong_type) {
                if (r->len + *upload_len > s->max_body) {
                    r->too_big = true;
                    free(r->body);
                    r->body = NULL;
                    r->len = 0;
                } else {
                    if (r->len + *upload_len + 1 > r->cap) {
                        size_t cap = (r->len + *upload_len + 1) * 2;
                        char *b = realloc(r->body, cap);
                        if (!b)
                            return MHD_NO;
                        r->body = b;
                        r->cap = cap;
                    }
                    memcpy(r->body + r->len, upload, *upload_len);
                    r->len += *upload_len;
                }
            }
            *upload_len = 0;
            return MHD_YES;
        }
        if (r->unauthorized)
            unauthorized(s, r);
        else if (r->unacceptable && r->prefer != RETURN_MINIMAL) /* nothing kept: it could not be answered */
            not_acceptable(s, r);
        else if (!strcmp(url, "/fhir/ServiceRequest") || !strcmp(url, "/fhir/Task"))
            take(s, r, url + 6);
        else if (!strcmp(url, "/fhir/$process-message"))
            take_message(s, r);
        else if (!strcmp(url, "/fhir/Encounter"))
            refuse(s, r, MHD_HTTP_METHOD_NOT_ALLOWED, "not-supported", NULL,
                   "Encounters are served (admissions the broker delivered), not posted");
        else
            refuse(s, r, MHD_HTTP_NOT_FOUND, "not-supported", NULL,
                   "resources are posted to /fhir/ServiceRequest or /fhir/Task, messages to /fhir/$process-message");
        if (r->status)
            return send_answer(r);
        r->suspended = true; /* until it is durable, and the broker has answered or the wait is over */
        MHD_suspend_connection(conn);
        return MHD_YES;
    }
    if (r->unauthorized)
        unauthorized(s, r);
    else if ((!strcmp(method, "GET") || !strcmp(method, "HEAD")) && r->unacceptable)
        not_acceptable(s, r);
    else if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
        serve_get(s, r, url);
    else
        refuse(s, r, MHD_HTTP_METHOD_NOT_ALLOWED, "not-supported", NULL, "GET and POST only");
    return send_answer(r);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)conn, (void)socket_context;
    social *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        s->conns++;
    else if (s->conns)
        s->conns--;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **state, enum MHD_RequestTerminationCode why)
{
    (void)conn;
    (void)why;
    social *s = cls;
    request *r = *state;
    if (r) {
        s->requests--;
        cb_pending_drop(s->owed, r);
        free(r->body);
        free(r->if_none_exist);
        free(r->out);
        free(r);
    }
    *state = NULL;
}

/* ---- deliveries */

/* The resource served for the event an update names (an Encounter for an
 * admission's, else a ServiceRequest), patched. */
static json_t *updated(social *s, const json_t *event, const char **kind)
{
    const char *of = json_string_value(json_object_get(event, "correlationId"));
    const json_t *u = json_object_get(event, "update");
    if (!of || !u)
        return NULL;
    *kind = json_object_get(u, "admission") ? "Encounter" : "ServiceRequest";
    char id[65], key[120];
    cb_fhir_id(of, id);
    snprintf(key, sizeof key, "%s/%s", *kind, id);
    reading rd = {NULL};
    cb_adapter_kept(s->adapter, key, read_one, &rd);
    const char *found = json_string_value(json_object_get(rd.found, "id"));
    if (!found || strcmp(found, id) || !cb_fhir_apply_update(rd.found, event)) {
        json_decref(rd.found);
        return NULL;
    }
    return rd.found;
}

static cb_adapter_take delivered(void *arg, uint64_t seq, const char *event_id, const json_t *event)
{
    social *s = arg;
    json_t *res = cb_fhir_service_request_of(event);
    const char *kind = "ServiceRequest";
    if (!res && (res = cb_fhir_encounter_of(event)))
        kind = "Encounter";
    if (!res)
        res = updated(s, event, &kind);
    if (!res) {
        res = cb_fhir_task_of(event);
        kind = "Task";
    }
    if (!res) {
        cb_log("delivery %" PRIu64 " (%s) taken: it has no FHIR form here (a handover, or an update of nothing"
               " served)",
               seq, event_id);
        return CB_ADAPTER_TAKEN;
    }
    char when[32], key[120];
    instant_now(when);
    json_object_set_new(res, "meta", json_pack("{s:s}", "lastUpdated", when));
    const char *id = json_string_value(json_object_get(res, "id"));
    snprintf(key, sizeof key, "%s/%s", kind, id);
    char *text = json_dumps(res, JSON_COMPACT);
    size_t len = 0;
    char *keep = text && id ? cb_fhir_kept_text(id, when, text, strlen(text), &len) : NULL;
    json_decref(res);
    cb_adapter_error err = {0};
    bool kept = keep && cb_adapter_keep(s->adapter, key, keep, len, &err) == CB_ADAPTER_OK;
    free(keep);
    bool pushing = kept && s->push && cb_fhir_push_send(s->push, seq, event_id, key, text);
    free(text);
    if (!kept) {
        cb_log("delivery %" PRIu64 " could not be kept: %s; it will come again", seq, err.text);
        return CB_ADAPTER_NOT_TAKEN;
    }
    if (s->push && !pushing)
        return CB_ADAPTER_NOT_TAKEN; /* out of memory: it will come again */
    return pushing ? CB_ADAPTER_LATER : CB_ADAPTER_TAKEN;
}

static void pushed(void *arg, uint64_t seq, const char *event_id, bool taken, const char *why)
{
    social *s = arg;
    if (taken) {
        cb_adapter_taken(s->adapter, seq, event_id);
        return;
    }
    cb_log("push of delivery %" PRIu64 " (%s): %s; the broker will deliver it again", seq, event_id, why);
    cb_adapter_not_taken(s->adapter, seq);
}

/* ---- the program */

/* --org [SYSTEM|]VALUE=AGENCY; whether AGENCY is configured is checked once
 * every option is read. */
static bool add_org(social *s, const char *arg)
{
    const char *eq = strrchr(arg, '=');
    if (s->n_orgs == ORGS_MAX || !eq || eq == arg || !eq[1]) {
        fprintf(stderr,
                "carebridge-social: --org takes [SYSTEM|]VALUE=AGENCY (an ODS code, say: --org RY6=health), "
                "at most %d times\n",
                ORGS_MAX);
        return false;
    }
    const char *bar = memchr(arg, '|', (size_t)(eq - arg));
    cb_fhir_org *o = &s->orgs[s->n_orgs++];
    o->system = bar ? strndup(arg, (size_t)(bar - arg)) : NULL;
    o->value = strndup(bar ? bar + 1 : arg, (size_t)(eq - (bar ? bar + 1 : arg)));
    o->agency = strdup(eq + 1);
    if (!o->value || !o->agency || (bar && !o->system)) {
        fprintf(stderr, "carebridge-social: --org %s: %s\n", arg, strerror(ENOMEM));
        return false;
    }
    if (!o->value[0]) {
        fprintf(stderr, "carebridge-social: --org %s: the value is empty\n", arg);
        return false;
    }
    return true;
}

/* Every --org names a configured agency. */
static bool orgs_configured(const social *s)
{
    for (size_t i = 0; i < s->n_orgs; i++) {
        bool known = false;
        for (size_t a = 0; a < s->agencies.n; a++)
            known |= !strcmp(s->orgs[i].agency, s->agencies.items[a]);
        if (!known) {
            fprintf(stderr, "carebridge-social: --org %s=%s: %s is not one of the agencies (--agencies)\n",
                    s->orgs[i].value, s->orgs[i].agency, s->orgs[i].agency);
            return false;
        }
    }
    return true;
}

static int parse(int argc, char **argv, social *s)
{
    enum { O_LISTEN = 256, O_AGENCIES, O_ORG, O_MAX, O_WAIT, O_PUSH, O_CERT, O_KEY, O_CA, O_TOKENS };
    static const struct option opts[] = {
        CB_PROGRAM_LONG_OPTIONS,
        {"listen", required_argument, NULL, O_LISTEN},
        {"tls-cert", required_argument, NULL, O_CERT},
        {"tls-key", required_argument, NULL, O_KEY},
        {"client-ca", required_argument, NULL, O_CA},
        {"token-file", required_argument, NULL, O_TOKENS},
        {"agencies", required_argument, NULL, O_AGENCIES},
        {"org", required_argument, NULL, O_ORG},
        {"max-body", required_argument, NULL, O_MAX},
        {"ack-wait", required_argument, NULL, O_WAIT},
        {"push", required_argument, NULL, O_PUSH},
        {0, 0, 0, 0},
    };
    int c, taken;
    long v;
    while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        if ((taken = cb_program_option(c, optarg, &s->prog, "carebridge-social", usage)) >= 0) {
            if (!taken)
                return 0;
            continue;
        }
        switch (c) {
        case O_LISTEN: s->listen = optarg; break;
        case O_CERT: s->tls_opts.cert = optarg; break;
        case O_KEY: s->tls_opts.key = optarg; break;
        case O_CA: s->tls_opts.client_ca = optarg; break;
        case O_TOKENS: s->tls_opts.token_file = optarg; break;
        case O_PUSH: s->push_url = optarg; break;
        case O_AGENCIES:
            if (!cb_id_list_set(&s->agencies, optarg)) {
                fprintf(stderr, "carebridge-social: --agencies needs 1 to %d agency ids, comma-separated\n",
                        CB_ID_LIST_MAX);
                return 2;
            }
            break;
        case O_ORG:
            if (!add_org(s, optarg))
                return 2;
            break;
        case O_MAX:
            if (!cb_program_number("carebridge-social", "--max-body", optarg, 1, 64L << 20, &v))
                return 2;
            s->max_body = (size_t)v;
            break;
        case O_WAIT:
            if (!cb_program_number("carebridge-social", "--ack-wait", optarg, 0, 60000, &v))
                return 2;
            s->ack_wait_ms = (int)v;
            break;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "carebridge-social: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return -1;
}

/* Checked before anything is made on disk. Without TLS, what a caller sends
 * (tokens, people's records) crosses the wire in the clear: so only on
 * loopback. With it, callers must prove who they are. */
static bool exposure_allowed(const social *s, char *why, size_t cap)
{
    int loopback = cb_listen_loopback("--listen", s->listen, why, cap);
    if (loopback < 0)
        return false;
    if (!cb_tls_on(s->https) && !loopback) {
        snprintf(why, cap,
                 "--listen %s is not loopback: plain HTTP is served on 127.0.0.1 only; give --tls-cert and "
                 "--tls-key",
                 s->listen);
        return false;
    }
    if (cb_tls_on(s->https) && !cb_tls_required(s->https)) {
        snprintf(why, cap, "with TLS, callers must prove who they are: give --token-file or --client-ca");
        return false;
    }
    return true;
}

static struct MHD_Daemon *start_http(social *s, char *why, size_t cap)
{
    struct addrinfo *ai = cb_resolve("--listen", s->listen, AF_INET, true, why, cap);
    if (!ai)
        return NULL;
    struct sockaddr_in sa;
    memcpy(&sa, ai->ai_addr, sizeof sa);
    freeaddrinfo(ai);
    bool tls = cb_tls_on(s->https);
    const char *trust = cb_tls_trust_pem(s->https);
    struct MHD_OptionItem tls_options[] = {
        {tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)cb_tls_cert_pem(s->https)},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)cb_tls_key_pem(s->https)},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)CB_TLS_PRIORITIES},
        {trust ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0, (void *)trust},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | (tls ? MHD_USE_TLS : 0), 0, NULL, NULL,
        on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000, MHD_OPTION_ARRAY, tls_options, MHD_OPTION_END);
    if (!d)
        snprintf(why, cap, "cannot listen on %s: %s", s->listen, strerror(errno));
    return d;
}

static void loop(social *s)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->http, MHD_DAEMON_INFO_EPOLL_FD);
    int http_fd = info ? info->epoll_fd : -1;
    while (!cb_program_stopping()) {
        struct pollfd fds[2 + 8] = {{.fd = cb_adapter_fd(s->adapter), .events = POLLIN},
                                    {.fd = http_fd, .events = POLLIN}};
        size_t n = 2 + (s->push ? cb_fhir_push_fds(s->push, fds + 2, 8) : 0);
        /* While a batch gathers, the outbox's one write transaction is its:
         * the adapter steps (settling answers, keeping deliveries) after it. */
        int timeout = s->batch ? gather_ms(s) : cb_adapter_due_ms(s->adapter);
        if (s->push && cb_fhir_push_due_ms(s->push) < timeout)
            timeout = cb_fhir_push_due_ms(s->push);
        MHD_UNSIGNED_LONG_LONG mhd_ms;
        if (MHD_get_timeout(s->http, &mhd_ms) == MHD_YES && mhd_ms < (MHD_UNSIGNED_LONG_LONG)timeout)
            timeout = (int)mhd_ms;
        int owed_ms = cb_pending_due_ms(s->owed);
        timeout = owed_ms < timeout ? owed_ms : timeout;
        if (poll(fds, n, timeout) < 0 && errno != EINTR) {
            cb_log("poll: %s", strerror(errno));
            return;
        }
        MHD_run(s->http);
        if (s->push)
            cb_fhir_push_handle(s->push, fds + 2, n - 2);
        commit(s);
        cb_adapter_error err = {0};
        cb_adapter_code code = s->batch ? CB_ADAPTER_OK : cb_adapter_step(s->adapter, &err);
        if (code == CB_ADAPTER_BROKER_REFUSED || code == CB_ADAPTER_CONNECTION_FAILED) {
            cb_log("stopping: %s", err.text);
            cb_program_refused();
            return;
        }
        if (code != CB_ADAPTER_OK)
            cb_log("%s", err.text);
        cb_pending_expire(s->owed);
        /* A resumed connection is taken up by one run, which has its handler
         * queue the answer; writing it may take another. Neither wakes the
         * epoll fd again, nor shortens MHD's timeout: run until they are done. */
        if (s->resumed) {
            s->resumed = 0;
            MHD_run(s->http);
            MHD_run(s->http);
        }
    }
}

/* What main opened, closed in order: answers owed first (kept ones 201, the
 * rest 503, to be posted again), so they go out in the server's last run. */
static int close_all(social *s, int rc)
{
    cb_adapter_abort(&s->batch);
    cb_pending_end(&s->owed);
    if (s->http) {
        MHD_run(s->http);
        cb_log("stopped: %lu kept in %lu batches, %lu refused, %lu searches served", s->created, s->batches, s->refused,
               s->served);
        MHD_stop_daemon(s->http);
    }
    cb_adapter_close(&s->adapter); /* what is still being pushed goes back to the broker's queue */
    cb_fhir_push_free(&s->push);
    if (s->https)
        cb_tls_free(&s->https);
    cb_id_list_free(&s->agencies);
    for (size_t i = 0; i < s->n_orgs; i++) {
        free((char *)s->orgs[i].system);
        free((char *)s->orgs[i].value);
        free((char *)s->orgs[i].agency);
    }
    return rc;
}

int main(int argc, char **argv)
{
    social s = {.prog = {CB_DEFAULT_BROKER, "social-care", "./var/social"},
                .listen = "127.0.0.1:8090",
                .max_body = 1 << 20,
                .ack_wait_ms = 2000};
    cb_log_program("carebridge-social");
    int rc = parse(argc, argv, &s);
    if (rc >= 0)
        return close_all(&s, rc);
    if (!s.agencies.n)
        cb_id_list_set(&s.agencies, "health,housing,social-care,voluntary");
    if (!orgs_configured(&s))
        return close_all(&s, 2);
    s.map = (cb_fhir_opts){s.prog.agency, (const char *const *)s.agencies.items, s.agencies.n, s.orgs, s.n_orgs};
    char why[600];
    if (!(s.https = cb_tls_load(&s.tls_opts, why, sizeof why)) || !exposure_allowed(&s, why, sizeof why)) {
        fprintf(stderr, "carebridge-social: %s\n", why);
        return close_all(&s, 2);
    }
    if (s.push_url && !(s.push = cb_fhir_push_new(s.push_url, pushed, &s, why, sizeof why))) {
        fprintf(stderr, "carebridge-social: %s\n", why); /* before anything is made on disk */
        return close_all(&s, 2);
    }
    char box[PATH_MAX];
    if (snprintf(box, sizeof box, "%s/outbox.lmdb", s.prog.data) >= (int)sizeof box || !cb_mkdirs(s.prog.data)) {
        fprintf(stderr, "carebridge-social: cannot create %s: %s\n", s.prog.data, strerror(errno));
        return close_all(&s, 2);
    }
    cb_program_signals();
    cb_adapter_opts aopts = {.broker = s.prog.broker,
                             .key_file = cb_program_key(&s.prog),
                             .broker_key = cb_program_broker_key(&s.prog),
                             .agency = s.prog.agency,
                             .outbox_dir = box,
                             .receive = true,
                             .name = "carebridge-social " CB_VERSION};
    cb_adapter_handlers handlers = {.answered = answered, .delivered = delivered};
    cb_adapter_error err = {0};
    cb_pending_fns owing = {.accepted = accepted, .refused = refused, .failed = failed};
    if (!(s.adapter = cb_adapter_open(&aopts, &handlers, &s, &err)) ||
        !(s.owed = cb_pending_new(s.adapter, s.ack_wait_ms, &owing, &s))) {
        fprintf(stderr, "carebridge-social: %s\n", s.adapter ? "out of memory" : err.text);
        return close_all(&s, 2);
    }
    if (!(s.http = start_http(&s, why, sizeof why))) {
        fprintf(stderr, "carebridge-social: %s\n", why);
        return close_all(&s, 2);
    }
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(s.http, MHD_DAEMON_INFO_BIND_PORT);
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(strrchr(s.listen, ':') - s.listen), s.listen);
    const char *scheme = cb_tls_on(s.https) ? "https" : "http";
    snprintf(s.base_url, sizeof s.base_url, "%s://%s:%u/fhir", scheme, host, port ? port->port : 0);
    cb_log("serving FHIR R4 at %s://%s/fhir (port %u) as %s; broker %s; outbox %s; %" PRIu64
           " waiting for the broker%s",
           scheme, s.listen, port ? port->port : 0, s.prog.agency, s.prog.broker, box, cb_adapter_waiting(s.adapter),
           cb_tls_required(s.https) ? "; callers must prove who they are" : "");
    loop(&s);
    return close_all(&s, cb_program_exit_status());
}
