/* carebridge tail: the broker's live feed of committed events. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cli.h"
#include "curve.h"

static const char usage[] =
    "Usage: carebridge tail [--flags] [--agency AGENCY] [--type TYPE] [--count N] [--timeout S]\n"
    "                       [--feed ENDPOINT]\n"
    "\n"
    "Print every event the broker commits from now on, as JSON {\"seq\":..., \"event\":...}\n"
    "one per line. --agency keeps the events sent to AGENCY (a configured agency: the\n"
    "broker is asked, at --broker); --type keeps one body type (referral, discharge,\n"
    "handover, response, update, closure, admission). The feed is not durable: use\n"
    "recv for guaranteed delivery. Stops after N events or S seconds without one.\n"
    "Topics on the wire are '<recipient>.<type>' and '*.<type>'.\n"
    "--flags prints the handoff flags instead, each as JSON when it is raised and again\n"
    "when it is resolved; --agency keeps those involving AGENCY, --type one flag type\n"
    "(MISSING_INFORMATION, ...). Their topics are 'flag.<agency>.<TYPE>' and 'flag.*.<TYPE>'.\n"
    "Exit 0 normally, 1 if --count was not reached before --timeout, 2 on a usage error,\n"
    "an agency or type that names nothing, or a feed that cannot be reached within 5 s.\n";

#define CONNECT_WAIT_MS 5000

/* Whether type names a body of Envelope's oneof ("referral", ...); if not,
 * the names it could have been, for the message. */
static bool body_type(const char *type, char *names, size_t cap)
{
    const ProtobufCMessageDescriptor *d = &carebridge__v1__envelope__descriptor;
    const ProtobufCFieldDescriptor *referral =
        protobuf_c_message_descriptor_get_field(d, CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL);
    size_t used = 0;
    names[0] = '\0';
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        if (!(fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || fd->quantifier_offset != referral->quantifier_offset)
            continue;
        if (!strcmp(fd->name, type))
            return true;
        used += (size_t)snprintf(names + used, used < cap ? cap - used : 0, "%s%s", used ? ", " : "", fd->name);
    }
    return false;
}

/* Whether the broker knows agency; prints why not (or that the broker did not answer). */
static bool configured_agency(const cli_globals *g, const char *agency)
{
    Carebridge__V1__StatusRequest req = CAREBRIDGE__V1__STATUS_REQUEST__INIT;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_STATUS_REQUEST;
    f.status_request = &req;
    cb_frame *reply = cli_request(g, "tail", &f, CONNECT_WAIT_MS);
    if (!reply)
        return false;
    bool known = false;
    char names[512] = "";
    size_t used = 0;
    if (reply->kind_case == CAREBRIDGE__V1__FRAME__KIND_STATUS_REPLY) {
        const Carebridge__V1__StatusReply *s = reply->status_reply;
        for (size_t i = 0; i < s->n_agencies && !known; i++) {
            known = !strcmp(s->agencies[i]->id, agency);
            used += (size_t)snprintf(names + used, used < sizeof names ? sizeof names - used : 0, "%s%s", i ? ", " : "",
                                     s->agencies[i]->id);
        }
    }
    if (!known)
        fprintf(stderr, "carebridge tail: --agency '%s' names no configured agency (configured: %s)\n", agency, names);
    cb_frame_free(&reply);
    return known;
}

/* Connect the SUB socket to the feed and wait until it has: ZeroMQ connects
 * in the background and would otherwise wait in silence for a feed that is
 * not there. The monitor is watching before the connect starts, or a quick
 * connection's event would come and go unseen. -1 when the connect itself
 * fails, 0 when the feed did not answer in time, 1 when connected. */
static int feed_connect(void *ctx, void *sub, const char *feed)
{
    static const char monitor_ep[] = "inproc://carebridge-tail-monitor";
    if (zmq_socket_monitor(sub, monitor_ep, ZMQ_EVENT_CONNECTED) < 0)
        return zmq_connect(sub, feed) < 0 ? -1 : 1; /* cannot watch: let the timeout speak */
    void *mon = zmq_socket(ctx, ZMQ_PAIR);
    bool connected = false;
    if (!mon || zmq_connect(mon, monitor_ep) != 0 || zmq_connect(sub, feed) < 0) {
        zmq_socket_monitor(sub, NULL, 0);
        if (mon)
            zmq_close(mon);
        return -1;
    }
    int64_t deadline = cb_client_now_ms() + CONNECT_WAIT_MS;
    for (int64_t left; !connected && (left = deadline - cb_client_now_ms()) > 0;) {
        zmq_pollitem_t item = {mon, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)left) <= 0)
            continue;
        zmq_msg_t event, endpoint;
        zmq_msg_init(&event);
        zmq_msg_init(&endpoint);
        if (zmq_msg_recv(&event, mon, 0) >= 0 && zmq_msg_size(&event) >= 2) {
            uint16_t id;
            memcpy(&id, zmq_msg_data(&event), sizeof id);
            connected = id == ZMQ_EVENT_CONNECTED;
        }
        if (zmq_msg_more(&event))
            zmq_msg_recv(&endpoint, mon, 0);
        zmq_msg_close(&event);
        zmq_msg_close(&endpoint);
    }
    zmq_socket_monitor(sub, NULL, 0);
    zmq_close(mon);
    return connected;
}

int cli_tail(const cli_globals *g_in, int argc, char **argv)
{
    static const struct option opts[] = {{"agency", required_argument, 0, 'a'},
                                         {"type", required_argument, 0, 'y'},
                                         {"count", required_argument, 0, 'n'},
                                         {"timeout", required_argument, 0, 't'},
                                         {"feed", required_argument, 0, 'f'},
                                         {"broker", required_argument, 0, 'b'},
                                         CLI_KEY_OPTIONS,
                                         {"flags", no_argument, 0, 'F'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    cli_globals g = *g_in;
    bool flags = false;
    const char *agency = "*", *type = "";
    double timeout_s = 0;
    long count = 0;
    int c;
    while ((c = getopt_long(argc, argv, "a:y:n:t:f:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'a': agency = optarg; break;
        case 'y': type = optarg; break;
        case 'F': flags = true; break;
        case 'f': g.feed = optarg; break;
        case 'b': g.broker = optarg; break;
        case CLI_OPT_KEY: g.key_file = optarg; break;
        case CLI_OPT_BROKER_KEY: g.broker_key = optarg; break;
        case 'n': count = strtol(optarg, NULL, 10); break;
        case 't':
            if (!cli_seconds(optarg, &timeout_s)) {
                fputs("carebridge tail: --timeout needs a positive number of seconds\n", stderr);
                return CLI_USAGE;
            }
            break;
        case 'h': fputs(usage, stdout); return CLI_OK;
        default: fputs(usage, stderr); return CLI_USAGE;
        }
    }
    if (optind < argc || count < 0) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    char names[160];
    const ProtobufCEnumValue *flag_type =
        flags && type[0] ? protobuf_c_enum_descriptor_get_value_by_name(&carebridge__v1__flag__type__descriptor, type)
                         : NULL;
    if (flags && type[0] && (!flag_type || !flag_type->value)) {
        fprintf(stderr, "carebridge tail: --type '%s' is not a flag type\n", type);
        return CLI_USAGE;
    }
    if (!flags && type[0] && !body_type(type, names, sizeof names)) {
        fprintf(stderr, "carebridge tail: --type '%s' is not one of %s\n", type, names);
        return CLI_USAGE;
    }
    if (strcmp(agency, "*") && !configured_agency(&g, agency))
        return CLI_USAGE;
    char topic[256];
    /* With a type the topic is exact up to the frame end; prefix match on
     * "agency." alone keeps every type. */
    snprintf(topic, sizeof topic, "%s%s.%s", flags ? "flag." : "", agency, type);
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int status = CLI_OK;
    long seen = 0;
    char why[300];
    if (!cb_curve_client(sub, g.key_file, g.broker_key, why, sizeof why)) {
        fprintf(stderr, "carebridge tail: %s\n", why);
        status = CLI_USAGE;
        goto out;
    }
    int reached = feed_connect(ctx, sub, g.feed);
    if (reached < 0) {
        fprintf(stderr, "carebridge tail: cannot connect to %s: %s\n", g.feed, zmq_strerror(errno));
        status = CLI_USAGE;
        goto out;
    }
    if (!reached) {
        fprintf(stderr,
                "carebridge tail: cannot reach the feed within %d s; is the broker running with its feed at %s?\n",
                CONNECT_WAIT_MS / 1000, g.feed);
        status = CLI_USAGE;
        goto out;
    }
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topic, strlen(topic));
    int64_t last = cb_client_now_ms();
    while (!count || seen < count) {
        zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 200) < 0)
            break;
        if (timeout_s && cb_client_now_ms() - last > timeout_s * 1000)
            break;
        if (!(item.revents & ZMQ_POLLIN))
            continue;
        zmq_msg_t t, body;
        zmq_msg_init(&t);
        zmq_msg_init(&body);
        bool ok = zmq_msg_recv(&t, sub, 0) >= 0 && zmq_msg_more(&t) && zmq_msg_recv(&body, sub, 0) >= 0;
        /* Subscriptions match prefixes: "health.re" would also match "health.referral". */
        bool exact = !type[0] || zmq_msg_size(&t) == strlen(topic);
        cb_frame *f = ok && exact ? cb_frame_decode(zmq_msg_data(&body), zmq_msg_size(&body), SIZE_MAX, NULL) : NULL;
        if (f && (flags ? f->kind_case == CAREBRIDGE__V1__FRAME__KIND_FLAG
                        : f->kind_case == CAREBRIDGE__V1__FRAME__KIND_DELIVER)) {
            cli_print_json(flags ? &f->flag->base : &f->deliver->base);
            fflush(stdout);
            seen++;
            last = cb_client_now_ms();
        }
        cb_frame_free(&f);
        zmq_msg_close(&t);
        zmq_msg_close(&body);
    }
    if (count && seen < count) {
        fprintf(stderr, "carebridge tail: %ld of %ld events before the timeout\n", seen, count);
        status = CLI_FAILED;
    }
out:
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return status;
}
