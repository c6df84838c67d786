/* carebridge-health: the health adapter. HL7 v2 in over MLLP from a
 * hospital's PAS or interface engine, each message answered with an HL7
 * ACK once its event is durable in the adapter's outbox (and, when the
 * broker answers within --ack-wait, carrying the flags it raised); events
 * addressed to health out as HL7 v2, to --forward over MLLP or as files. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapter.h"
#include "hl7.h"
#include "hl7_ack.h"
#include "hl7_events.h"
#include "hl7_out.h"
#include "mllp_forward.h"
#include "mllp_server.h"
#include "pending.h"
#include "program.h"
#include "tls.h"

static const char usage[] = "Usage: carebridge-health [--broker ENDPOINT] [--as AGENCY] [--data DIR]\n"
                            "                         [--key FILE --broker-key KEY]\n"
                            "                         [--listen HOST:PORT] [--forward HOST:PORT]\n"
                            "                         [--tls-cert FILE --tls-key FILE --client-ca FILE]\n"
                            "                         [--admission-to A,B] [--discharge-to A,B] [--referral-to A,B]\n"
                            "                         [--agencies A,B,...]\n"
                            "                         [--max-message BYTES] [--read-timeout S] [--ack-wait MS]\n"
                            "\n"
                            "The health adapter. Listens for HL7 v2 (2.3 to 2.5.1) over MLLP, maps ADT^A01\n"
                            "and ADT^A02 (admission, transfer), ADT^A03 and ADT^A16 (discharge), their\n"
                            "cancellations ADT^A11, A13 and A25 (a closure of the admission or discharge)\n"
                            "and REF^I12 (referral) to carebridge events (README, \"HL7 v2 (health)\"),\n"
                            "keeps each in a durable outbox under DIR before answering, and sends it on to\n"
                            "the broker, across broker outages and restarts.\n"
                            "Each message is answered in order with an HL7 ACK in its own version and\n"
                            "separators: MSA|AA once its event is durable (waiting up to --ack-wait for the\n"
                            "broker, so the ACK can carry the flags the event raised as ERR segments of\n"
                            "severity W); MSA|AE with an ERR naming segment, field and HL7 error code for a\n"
                            "message it cannot map; MSA|AR for a type or version it does not take, or when\n"
                            "the outbox cannot keep it (send again). Events addressed to health leave as HL7\n"
                            "(REF^I12, REF^I13, REF^I14, RRI^I12): to --forward over MLLP, each delivery\n"
                            "acknowledged once that system answers AA; without --forward, as files in\n"
                            "DIR/outbox/<seq>.hl7.\n"
                            "\n"
                            "Options:\n"
                            "  --broker ENDPOINT    the broker (default " CB_DEFAULT_BROKER ")\n"
                            "  --as AGENCY          the agency served (default health)\n"
                            "  --data DIR           outbox and state (default ./var/health)\n" CB_PROGRAM_KEY_USAGE
                            "  --listen HOST:PORT   MLLP in (default 127.0.0.1:2575); plain MLLP on loopback only\n"
                            "  --tls-cert FILE      MLLP over TLS (1.2 or 1.3) with this PEM certificate ...\n"
                            "  --tls-key FILE       ... and its key (mode 0600); an expired certificate, a key\n"
                            "                       open to others or not the certificate's stops start-up\n"
                            "  --client-ca FILE     with TLS, required: each sender presents a certificate\n"
                            "                       this PEM CA signed, or its connection is closed\n"
                            "  --forward HOST:PORT  MLLP out, for events addressed to health\n"
                            "  --admission-to LIST  who an admission goes to (default social-care,housing)\n"
                            "  --discharge-to LIST  who a discharge goes to (default social-care,housing)\n"
                            "  --referral-to LIST   who a referral goes to unless its PRD names an agency\n"
                            "                       (default social-care)\n"
                            "  --agencies LIST      the agency ids a PRD-7 may name\n"
                            "                       (default health,housing,social-care,voluntary)\n"
                            "  --max-message BYTES  larger messages are refused with AR (default 1048576)\n"
                            "  --read-timeout S     a connection silent this long mid-message is closed\n"
                            "                       (default 30); idle between messages, it stays open\n"
                            "  --ack-wait MS        how long an ACK waits for the broker (default 2000)\n"
                            "  -h, --help           this text;  -V, --version  the version\n";

#define ACK_MAX 8192
#define ISSUES  (2 * 32)
#define OUT_MAX (256 * 1024)
#define MAX_FDS 1100

/* A message whose answer waits (pending.h). */
typedef struct {
    cb_mllp_ticket ticket;
    cb_hl7 *m;
} owed;

typedef struct {
    cb_program_opts prog;
    const char *listen, *forward;
    cb_tls_opts tls_opts;
    cb_tls *tls;
    size_t max_message;
    int read_timeout_ms, ack_wait_ms;
    cb_id_list admission_to, discharge_to, referral_to, agencies;
    cb_hl7_map_opts map;
    cb_adapter *adapter;
    cb_mllp_server *server;
    cb_mllp_forward *fwd;
    cb_adapter_batch *batch;
    cb_pending *owed;
    uint64_t control_no;
    char outbox[PATH_MAX];
    unsigned long taken, refused_in, accepted_in;
} health;

static void hl7_now(char out[24])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 24, "%Y%m%d%H%M%S+0000", &tm); /* UTC, and said so: a receiver reads a bare time as its own */
}

/* ---- answers */

static void answer(health *h, cb_mllp_ticket ticket, const cb_hl7 *m, const char *code, const cb_hl7_issue *issues,
                   size_t n)
{
    char control[32], ts[24], out[ACK_MAX];
    snprintf(control, sizeof control, "CB%" PRIu64, ++h->control_no);
    hl7_now(ts);
    size_t len = cb_hl7_ack(m, code, control, ts, issues, n, out, sizeof out);
    if (!len) /* the issues' texts did not fit: the code alone still answers */
        len = cb_hl7_ack(m, code, control, ts, NULL, 0, out, sizeof out);
    cb_mllp_server_answer(h->server, ticket, out, len);
}

static void refuse(health *h, cb_mllp_ticket ticket, const cb_hl7 *m, const cb_hl7_issue *issue)
{
    /* AR for what it does not take at all (table 0357's 200s), AE for a message it cannot use. */
    answer(h, ticket, m, issue->code >= 200 ? "AR" : "AE", issue, 1);
    h->refused_in++;
}

static void refuse_text(health *h, cb_mllp_ticket ticket, const cb_hl7 *m, const char *code, const char *text)
{
    cb_hl7_issue is = {.code = CB_HL7_INTERNAL, .severity = 'E', .text = text};
    answer(h, ticket, m, code, &is, 1);
    h->refused_in++;
}

static void forget(owed *o)
{
    cb_hl7_free(&o->m);
    free(o);
}

static void accepted(void *arg, void *item, const cb_adapter_answer *ans)
{
    health *h = arg;
    owed *o = item;
    cb_hl7_issue issues[ISSUES];
    char texts[ISSUES][200];
    size_t n = 0;
    for (size_t k = 0; ans && k < ans->n_flags && n < ISSUES; k++, n++) {
        snprintf(texts[n], sizeof texts[n], "carebridge flag %s raised for this event", ans->flags[k]);
        issues[n] = (cb_hl7_issue){.code = 0, .severity = 'W', .text = texts[n]};
    }
    for (size_t k = 0; ans && k < ans->n_warnings && n < ISSUES; k++, n++) {
        snprintf(texts[n], sizeof texts[n], "carebridge warning %s", ans->warnings[k]);
        issues[n] = (cb_hl7_issue){.code = 0, .severity = 'W', .text = texts[n]};
    }
    answer(h, o->ticket, o->m, "AA", issues, n);
    h->accepted_in++;
    forget(o);
}

static void refused(void *arg, void *item, const char *why)
{
    owed *o = item;
    char text[360];
    snprintf(text, sizeof text, "refused by carebridge: %s", why);
    refuse_text(arg, o->ticket, o->m, "AE", text);
    forget(o);
}

static void failed(void *arg, void *item)
{
    owed *o = item;
    refuse_text(arg, o->ticket, o->m, "AR", "the message could not be kept; send it again");
    forget(o);
}

static void answered(void *arg, const cb_adapter_answer *ans)
{
    health *h = arg;
    if (!ans->accepted)
        cb_log("the broker refused outbox event %" PRIu64 " (%s): %s: %s", ans->seq, ans->event_id, ans->code,
               ans->reason);
    cb_pending_answered(h->owed, ans);
}

/* ---- messages in */

static bool owe(health *h, cb_mllp_ticket ticket, cb_hl7 *m, uint64_t seq, bool fresh)
{
    owed *o = malloc(sizeof *o);
    if (!o)
        return false;
    *o = (owed){ticket, m};
    if (!cb_pending_add(h->owed, o, seq, fresh)) {
        free(o);
        return false;
    }
    return true;
}

static bool known(void *arg, const char *event_id)
{
    return cb_adapter_known(((health *)arg)->adapter, event_id);
}

static void on_message(void *arg, cb_mllp_ticket ticket, const uint8_t *msg, size_t len, bool too_big)
{
    health *h = arg;
    cb_hl7_error perr = {0};
    cb_hl7 *m = cb_hl7_parse(msg, len, &perr);
    if (too_big) {
        char text[160];
        snprintf(text, sizeof text, "the message is larger than this adapter takes (%zu bytes)", h->max_message);
        refuse_text(h, ticket, m, "AR", text);
        cb_hl7_free(&m);
        return;
    }
    if (!m) {
        cb_hl7_issue is = {
            .code = perr.code, .severity = 'E', .sequence = perr.sequence, .field = perr.field, .text = perr.text};
        memcpy(is.segment, perr.segment, sizeof is.segment);
        cb_log("refused a message that is not HL7 v2: %s", perr.text);
        refuse(h, ticket, NULL, &is);
        return;
    }
    /* A resend of a message already kept is answered as the first was,
     * not mapped again: mapped now it could mean something else (a second
     * A03 for a visit updates the discharge the first one made). */
    char id[200];
    cb_hl7_event_id(m, id, sizeof id);
    uint64_t seq = 0;
    if (cb_adapter_source(h->adapter, id, &seq)) {
        if (!owe(h, ticket, m, seq, false)) {
            refuse_text(h, ticket, m, "AR", "the message could not be kept; send it again");
            cb_hl7_free(&m);
        }
        return;
    }
    cb_hl7_refusal why;
    json_t *event = cb_hl7_event(m, &h->map, &why);
    if (!event) {
        cb_log("refused %s: %d %s", id, why.issue.code, why.text);
        refuse(h, ticket, m, &why.issue);
        cb_hl7_free(&m);
        return;
    }
    cb_adapter_error err = {0};
    if (!h->batch && !(h->batch = cb_adapter_begin(h->adapter, &err))) {
        cb_log("the outbox cannot take messages: %s", err.text);
        refuse_text(h, ticket, m, "AR", "the message could not be kept; send it again");
        cb_hl7_free(&m);
        json_decref(event);
        return;
    }
    cb_adapter_added added = cb_adapter_add(h->batch, event, id, &seq, &err);
    json_decref(event);
    if (added == CB_ADAPTER_REFUSED) {
        cb_log("refused a message: %s: %s", cb_adapter_code_name(err.code), err.text);
        refuse_text(h, ticket, m, "AE", err.text);
        cb_hl7_free(&m);
        return;
    }
    if (added == CB_ADAPTER_FAILED || !owe(h, ticket, m, seq, added == CB_ADAPTER_NEW)) {
        refuse_text(h, ticket, m, "AR", "the message could not be kept; send it again");
        cb_hl7_free(&m);
    }
}

/* The batch the last poll gathered, committed with one sync; then its
 * messages may be answered. */
static void commit(health *h)
{
    cb_adapter_error err = {0};
    bool ok = !h->batch || cb_adapter_commit(&h->batch, &err) == CB_ADAPTER_OK;
    if (!ok)
        cb_log("the outbox could not keep a batch: %s: %s", cb_adapter_code_name(err.code), err.text);
    cb_pending_committed(h->owed, ok);
}

/* ---- deliveries out */

static cb_adapter_take delivered(void *arg, uint64_t seq, const char *event_id, const json_t *event)
{
    health *h = arg;
    char control[32], ts[24], *out = malloc(OUT_MAX);
    const char *why = NULL;
    if (!out)
        return CB_ADAPTER_NOT_TAKEN;
    snprintf(control, sizeof control, "CBD%" PRIu64, seq);
    hl7_now(ts);
    size_t len = cb_hl7_of_event(event, control, ts, out, OUT_MAX, &why);
    if (!len) {
        cb_log("delivery %" PRIu64 " (%s) taken without a message: %s", seq, event_id, why);
        free(out);
        return CB_ADAPTER_TAKEN;
    }
    cb_adapter_take take = CB_ADAPTER_NOT_TAKEN;
    if (h->fwd) {
        cb_mllp_forward_send(h->fwd, seq, event_id, out, len);
        take = CB_ADAPTER_LATER;
    } else {
        char name[40];
        snprintf(name, sizeof name, "%020" PRIu64 ".hl7", seq);
        if (cb_write_atomic(h->outbox, name, out, len)) {
            take = CB_ADAPTER_TAKEN;
            h->taken++;
        } else {
            cb_log("delivery %" PRIu64 " could not be written to %s: %s; it will come again", seq, h->outbox,
                   strerror(errno));
        }
    }
    free(out);
    return take;
}

static void forwarded(void *arg, uint64_t seq, const char *event_id, bool taken)
{
    health *h = arg;
    if (!taken) {
        cb_adapter_not_taken(h->adapter, seq);
        return;
    }
    cb_adapter_taken(h->adapter, seq, event_id);
    h->taken++;
}

/* ---- the program */

static int parse(int argc, char **argv, health *h)
{
    enum {
        O_LISTEN = 256,
        O_FORWARD,
        O_ADMISSION,
        O_DISCHARGE,
        O_REFERRAL,
        O_AGENCIES,
        O_MAX,
        O_TIMEOUT,
        O_WAIT,
        O_CERT,
        O_KEY,
        O_CA
    };
    static const struct option opts[] = {
        CB_PROGRAM_LONG_OPTIONS,
        {"listen", required_argument, NULL, O_LISTEN},
        {"tls-cert", required_argument, NULL, O_CERT},
        {"tls-key", required_argument, NULL, O_KEY},
        {"client-ca", required_argument, NULL, O_CA},
        {"forward", required_argument, NULL, O_FORWARD},
        {"admission-to", required_argument, NULL, O_ADMISSION},
        {"discharge-to", required_argument, NULL, O_DISCHARGE},
        {"referral-to", required_argument, NULL, O_REFERRAL},
        {"agencies", required_argument, NULL, O_AGENCIES},
        {"max-message", required_argument, NULL, O_MAX},
        {"read-timeout", required_argument, NULL, O_TIMEOUT},
        {"ack-wait", required_argument, NULL, O_WAIT},
        {0, 0, 0, 0},
    };
    int c, taken;
    long v;
    while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        if ((taken = cb_program_option(c, optarg, &h->prog, "carebridge-health", usage)) >= 0) {
            if (!taken)
                return 0;
            continue;
        }
        switch (c) {
        case O_LISTEN: h->listen = optarg; break;
        case O_CERT: h->tls_opts.cert = optarg; break;
        case O_KEY: h->tls_opts.key = optarg; break;
        case O_CA: h->tls_opts.client_ca = optarg; break;
        case O_FORWARD: h->forward = optarg; break;
        case O_ADMISSION:
        case O_DISCHARGE:
        case O_REFERRAL:
        case O_AGENCIES:
            if (!cb_id_list_set(c == O_ADMISSION   ? &h->admission_to
                                : c == O_DISCHARGE ? &h->discharge_to
                                : c == O_REFERRAL  ? &h->referral_to
                                                   : &h->agencies,
                                optarg)) {
                fprintf(stderr, "carebridge-health: %s needs 1 to %d agency ids, comma-separated\n", argv[optind - 2],
                        CB_ID_LIST_MAX);
                return 2;
            }
            break;
        case O_MAX:
            if (!cb_program_number("carebridge-health", "--max-message", optarg, 1, 64L << 20, &v))
                return 2;
            h->max_message = (size_t)v;
            break;
        case O_TIMEOUT:
            if (!cb_program_number("carebridge-health", "--read-timeout", optarg, 1, 3600, &v))
                return 2;
            h->read_timeout_ms = (int)v * 1000;
            break;
        case O_WAIT:
            if (!cb_program_number("carebridge-health", "--ack-wait", optarg, 0, 60000, &v))
                return 2;
            h->ack_wait_ms = (int)v;
            break;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "carebridge-health: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return -1;
}

static void set_default(cb_id_list *l, const char *text)
{
    if (!l->n)
        cb_id_list_set(l, text);
}

static void loop(health *h)
{
    struct pollfd fds[MAX_FDS];
    while (!cb_program_stopping()) {
        size_t n = 0;
        fds[n++] = (struct pollfd){.fd = cb_adapter_fd(h->adapter), .events = POLLIN};
        size_t fwd_at = n;
        if (h->fwd)
            n += cb_mllp_forward_fds(h->fwd, fds + n, MAX_FDS - n);
        size_t srv_at = n;
        n += cb_mllp_server_fds(h->server, fds + n, MAX_FDS - n);
        int timeout = cb_adapter_due_ms(h->adapter);
        int t2 = cb_mllp_server_due_ms(h->server), t3 = cb_pending_due_ms(h->owed);
        timeout = t2 < timeout ? t2 : timeout;
        timeout = t3 < timeout ? t3 : timeout;
        if (h->fwd) {
            int t4 = cb_mllp_forward_due_ms(h->fwd);
            timeout = t4 < timeout ? t4 : timeout;
        }
        if (poll(fds, n, timeout) < 0 && errno != EINTR) {
            cb_log("poll: %s", strerror(errno));
            return;
        }
        cb_mllp_server_handle(h->server, fds + srv_at, n - srv_at);
        commit(h);
        if (h->fwd)
            cb_mllp_forward_handle(h->fwd, fds + fwd_at, srv_at - fwd_at);
        cb_adapter_error err = {0};
        cb_adapter_code code = cb_adapter_step(h->adapter, &err);
        if (code == CB_ADAPTER_BROKER_REFUSED || code == CB_ADAPTER_CONNECTION_FAILED) {
            cb_log("stopping: %s", err.text);
            cb_program_refused();
            return;
        }
        if (code != CB_ADAPTER_OK)
            cb_log("%s", err.text);
        cb_pending_expire(h->owed);
    }
}

/* What main opened, closed in order; rc returned. A batch not yet durable
 * is answered AR, to be sent again. */
/* Without TLS the messages, people's records, cross the wire in the clear:
 * so only on loopback. With it, each sender proves itself by certificate. */
static bool exposure_allowed(const health *h, char *why, size_t cap)
{
    int loopback = cb_listen_loopback("--listen", h->listen, why, cap);
    if (loopback < 0)
        return false;
    if (!cb_tls_on(h->tls) && !loopback) {
        snprintf(why, cap,
                 "--listen %s is not loopback: plain MLLP is served on 127.0.0.1 only; give --tls-cert, "
                 "--tls-key and --client-ca",
                 h->listen);
        return false;
    }
    if (cb_tls_on(h->tls) && !cb_tls_trust_pem(h->tls)) {
        snprintf(why, cap, "with TLS, each sender must prove itself: give --client-ca");
        return false;
    }
    if (h->tls_opts.token_file || (!cb_tls_on(h->tls) && h->tls_opts.client_ca)) {
        snprintf(why, cap, "--client-ca needs --tls-cert and --tls-key");
        return false;
    }
    return true;
}

static int close_all(health *h, int rc)
{
    cb_adapter_abort(&h->batch);
    cb_pending_end(&h->owed);
    if (h->server)
        cb_log("stopped: %lu accepted, %lu refused, %lu delivered", h->accepted_in, h->refused_in, h->taken);
    cb_mllp_forward_free(&h->fwd);
    cb_mllp_server_close(&h->server);
    if (h->tls)
        cb_tls_free(&h->tls);
    cb_adapter_close(&h->adapter);
    cb_id_list_free(&h->admission_to);
    cb_id_list_free(&h->discharge_to);
    cb_id_list_free(&h->referral_to);
    cb_id_list_free(&h->agencies);
    return rc;
}

int main(int argc, char **argv)
{
    health h = {.prog = {CB_DEFAULT_BROKER, "health", "./var/health"},
                .listen = "127.0.0.1:2575",
                .max_message = 1 << 20,
                .read_timeout_ms = 30000,
                .ack_wait_ms = 2000};
    cb_log_program("carebridge-health");
    int rc = parse(argc, argv, &h);
    if (rc >= 0)
        return rc;
    char unusable[600];
    if (!(h.tls = cb_tls_load(&h.tls_opts, unusable, sizeof unusable)) ||
        !exposure_allowed(&h, unusable, sizeof unusable)) {
        fprintf(stderr, "carebridge-health: %s\n", unusable); /* before anything is made on disk */
        return close_all(&h, 2);
    }
    set_default(&h.admission_to, "social-care,housing");
    set_default(&h.discharge_to, "social-care,housing");
    set_default(&h.referral_to, "social-care");
    set_default(&h.agencies, "health,housing,social-care,voluntary");
    h.map = (cb_hl7_map_opts){.agency = h.prog.agency,
                              .admission_to = (const char *const *)h.admission_to.items,
                              .n_admission_to = h.admission_to.n,
                              .discharge_to = (const char *const *)h.discharge_to.items,
                              .n_discharge_to = h.discharge_to.n,
                              .referral_to = (const char *const *)h.referral_to.items,
                              .n_referral_to = h.referral_to.n,
                              .agencies = (const char *const *)h.agencies.items,
                              .n_agencies = h.agencies.n,
                              .known = known,
                              .known_arg = &h};
    char box[PATH_MAX];
    if (snprintf(box, sizeof box, "%s/outbox.lmdb", h.prog.data) >= (int)sizeof box ||
        snprintf(h.outbox, sizeof h.outbox, "%s/outbox", h.prog.data) >= (int)sizeof h.outbox ||
        !cb_mkdirs(h.prog.data) || (!h.forward && !cb_mkdirs(h.outbox))) {
        fprintf(stderr, "carebridge-health: cannot create %s: %s\n", h.prog.data, strerror(errno));
        return close_all(&h, 2);
    }
    cb_program_signals();
    cb_adapter_error err = {0};
    cb_adapter_opts aopts = {.broker = h.prog.broker,
                             .key_file = cb_program_key(&h.prog),
                             .broker_key = cb_program_broker_key(&h.prog),
                             .agency = h.prog.agency,
                             .outbox_dir = box,
                             .receive = true,
                             .name = "carebridge-health " CB_VERSION};
    cb_adapter_handlers handlers = {.answered = answered, .delivered = delivered};
    cb_pending_fns owing = {.accepted = accepted, .refused = refused, .failed = failed};
    if (!(h.adapter = cb_adapter_open(&aopts, &handlers, &h, &err)) ||
        !(h.owed = cb_pending_new(h.adapter, h.ack_wait_ms, &owing, &h))) {
        fprintf(stderr, "carebridge-health: %s\n", h.adapter ? "out of memory" : err.text);
        return close_all(&h, 2);
    }
    char why[300];
    cb_mllp_server_opts sopts = {.listen = h.listen,
                                 .max_message = h.max_message,
                                 .read_timeout_ms = h.read_timeout_ms,
                                 .max_pending = 64,
                                 .max_conns = 1024,
                                 .tls = cb_tls_on(h.tls) ? h.tls : NULL};
    if (!(h.server = cb_mllp_server_open(&sopts, on_message, &h, why, sizeof why)) ||
        (h.forward && !(h.fwd = cb_mllp_forward_new(h.forward, forwarded, &h, why, sizeof why)))) {
        fprintf(stderr, "carebridge-health: %s\n", why);
        return close_all(&h, 2);
    }
    cb_log("listening for MLLP on %s (port %d) as %s; broker %s; outbox %s; %" PRIu64 " waiting for the broker",
           h.listen, cb_mllp_server_port(h.server), h.prog.agency, h.prog.broker, box, cb_adapter_waiting(h.adapter));
    loop(&h);
    return close_all(&h, cb_program_exit_status());
}
