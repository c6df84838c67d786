/* cb-bench-load: publish load through the real client library and measure
 * how fast the broker acknowledges, and how long each ACK takes.
 *
 * S sender threads each own a cb_client (agency --from, events to --to), keep
 * up to W publishes unanswered, and record for every event the time from
 * cb_client_publish to the answered callback (CLOCK_MONOTONIC). The send time
 * lives in a record whose address is the tag given to cb_client_publish, so
 * the callback finds it without any lookup. With --rate the events follow a
 * fixed schedule spread evenly over the senders, so latency is measured at a
 * known offered load rather than at saturation.
 *
 * For the scale phase it can make the load of many independent systems
 * (--people: one of N people at random, each with a valid NHS number and a
 * case reference; --random-ids; --also: a second recipient for half the
 * events), drain an agency's deliveries while it publishes (--drain), and
 * time queries asked at a steady rate meanwhile (--probe journey|status).
 *
 * Prints one JSON object on stdout; diagnostics go to stderr. Exit 0 when
 * every event was answered (ACK or NACK; NACKs are counted, never hidden),
 * 1 when some stayed unanswered, 2 on bad usage or a connection failure. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "client.h"
#include "thread.h"

static const char usage[] =
    "Usage: cb-bench-load --endpoint EP [--senders S] [--window W] [--events N | --duration SEC]\n"
    "                     [--rate R] [--size BYTES] [--from AGENCY] [--to AGENCY]\n"
    "                     [--resend-ms MS] [--stall-s SEC] [--settle-ms MS] [--latencies FILE]\n"
    "                     [--people N] [--random-ids] [--also AGENCY] [--drain AGENCY]\n"
    "                     [--probe journey|status] [--probe-rate R] [--probe-endpoint EP]\n"
    "\n"
    "  --senders S    sender threads, each its own connection (default 1)\n"
    "  --window W     publishes in flight per sender (default 1024, the client default)\n"
    "  --events N     total events over all senders (default 50000)\n"
    "  --duration S   publish for S seconds instead of a fixed count\n"
    "  --rate R       steady R events/s in total, paced across the senders\n"
    "  --size B       packed envelope size in bytes (default 512)\n"
    "  --from A       publishing agency (default health)\n"
    "  --to A         recipient agency (default social-care)\n"
    "  --resend-ms M  the client's resend timer (default 2000, the client default)\n"
    "  --stall-s S    give up when nothing is answered for S seconds (default 15)\n"
    "  --settle-ms M  after connecting, wait M ms before publishing (default 500): a\n"
    "                 new sender's first ~150 ms run slower than its steady state\n"
    "  --latencies F  also write 'sender answered_ms latency_ms' per event to F, to see\n"
    "                 when in the run slow answers happened\n"
    "  --people N     each event names one of N people (valid NHS numbers, one case\n"
    "                 reference each), picked uniformly at random (default: 20000 in turn)\n"
    "  --random-ids   random event ids (UUID-like), as independent senders make them\n"
    "  --also A       half the events, picked at random, go to A as well as to --to\n"
    "  --drain A      while publishing, receive and acknowledge A's deliveries, and\n"
    "                 after, until the broker has none queued or in flight for A (while\n"
    "                 that shrinks within --stall-s), so the next run begins with none\n"
    "  --probe K      while publishing, ask the broker for K (a journey of a random\n"
    "                 person, or status) --probe-rate times a second (default 50) and\n"
    "                 report the answers' latency as probe_p50_ms, probe_p99_ms\n"
    "  --probe-endpoint EP  ask there (the broker's query endpoint, broker.queries)\n"
    "                 rather than at --endpoint\n"
    "With CAREBRIDGE_KEY and CAREBRIDGE_BROKER_KEY set, every connection uses those\n"
    "CURVE keys (a broker with broker.key_file).\n";

typedef struct {
    int senders;
    uint32_t window;
    uint64_t events; /* 0 with a duration */
    double duration_s;
    double rate;
    size_t size;
    const char *endpoint, *from, *to;
    uint32_t resend_ms;
    double stall_s;
    /* Connected and idle before the clock starts. Without it the first ~150
     * ms of a run answered at about twice the steady latency (mean 2 against
     * 1 ms at 5,000/s), after a burst or after 2 s idle alike, and 300 ms
     * connected first removed it: consistent with the scheduler's load
     * tracking of new threads (PELT, a 32 ms half-life) settling. */
    uint32_t settle_ms;
    const char *latencies;
    uint32_t people; /* 0: the 20000-in-turn scheme */
    bool random_ids;
    const char *also, *drain, *probe, *probe_endpoint;
    double probe_rate;
    char prefix[17]; /* random per run, so a rerun against the same store never collides */
} options;

/* One publish in flight; its address is the tag, so the callback can find
 * the send time. A sender owns window of these on a free list. */
typedef struct rec {
    int64_t sent_ns;
    struct rec *next_free;
} rec;

typedef struct {
    const options *o;
    int index;
    pthread_t thread;
    cb_client *client;
    rec *recs, *free_recs;
    int64_t *lat_ns, *at_ns; /* latency and answer time, one per answered event */
    size_t n_lat, cap_lat;
    uint64_t quota; /* events this sender publishes; UINT64_MAX with a duration */
    uint64_t sent, acked, nacks, duplicates;
    int64_t last_answer_ns, last_progress_ns;
    int failed; /* 0 ok, 1 stalled, 2 connection error */
    char first_nack[200];
    uint64_t rng;
} sender;

static pthread_barrier_t start_barrier;
static atomic_int publishing_done; /* every sender has finished: the drain and the probe stop */
static int64_t start_ns;           /* set by sender 0 after the barrier, read after a second one */
static atomic_int any_failed;      /* a sender that could not connect: the others stop too */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void answered(void *arg, void *tag, const Carebridge__V1__Ack *ack, const Carebridge__V1__Nack *nack)
{
    sender *s = arg;
    rec *r = tag;
    int64_t t = now_ns();
    if (s->n_lat == s->cap_lat) {
        size_t cap = s->cap_lat ? 2 * s->cap_lat : 65536;
        int64_t *grown = realloc(s->lat_ns, cap * sizeof *grown);
        if (grown)
            s->lat_ns = grown;
        int64_t *grown_at = grown ? realloc(s->at_ns, cap * sizeof *grown_at) : NULL;
        if (!grown_at) {
            fputs("cb-bench-load: out of memory\n", stderr);
            exit(2);
        }
        s->at_ns = grown_at, s->cap_lat = cap;
    }
    s->at_ns[s->n_lat] = t;
    s->lat_ns[s->n_lat++] = t - r->sent_ns;
    s->last_answer_ns = s->last_progress_ns = t;
    r->next_free = s->free_recs;
    s->free_recs = r;
    if (ack) {
        s->acked++;
        s->duplicates += ack->duplicate; /* only a resend can make one in a fresh run */
        return;
    }
    if (!s->nacks++)
        snprintf(s->first_nack, sizeof s->first_nack, "%s: %s", cb_code_name((cb_code)nack->code), nack->reason);
}

/* The event template: a complete Referral (everything the flag rules ask
 * of one, so the rules cost what they cost on a good event: its handoff),
 * whose reason is padded until the packed Envelope is exactly o->size bytes
 * (ids are fixed-width, so every event of the run packs to the same size). */
typedef struct {
    cb_envelope env;
    Carebridge__V1__Person person;
    Carebridge__V1__Referral referral;
    Carebridge__V1__Contact contact;
    Carebridge__V1__Risk risk, *risks[1];
    Carebridge__V1__Outcome outcome, *outcomes[1];
    char *needs[1];
    Google__Protobuf__Timestamp at;
    char *to[2];
    char event_id[64], nhs[16], case_ref[32];
    char *reason;
} event;

static uint64_t next_random(uint64_t *state)
{
    /* xorshift64*: plenty for picking people and ids, and the same in every run's shape */
    uint64_t x = *state;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* The valid NHS number of person p (p < 10^7). Nine digits are 4 then
 * p * 10 + k in eight; the tenth is the modulus 11 check digit. A stem whose
 * check would be 10 has no valid number, so k steps through the gap of ten
 * each person owns. cb-bench-load's probe asks for the same people. */
static void nhs_number_of(uint32_t p, char out[16])
{
    for (unsigned k = 0; k < 10; k++) {
        char d[10];
        snprintf(d, sizeof d, "4%08llu", (unsigned long long)(((uint64_t)p * 10 + k) % 100000000ULL));
        unsigned sum = 0;
        for (int i = 0; i < 9; i++)
            sum += (unsigned)(d[i] - '0') * (unsigned)(10 - i);
        unsigned check = (11 - sum % 11) % 11;
        if (check == 10)
            continue;
        snprintf(out, 16, "%s%u", d, check);
        return;
    }
    snprintf(out, 16, "%s", "9434765919"); /* unreachable: the check changes with k */
}

static void event_fill(event *e, const options *o, sender *s, uint64_t k)
{
    if (o->random_ids) {
        uint64_t a = next_random(&s->rng), b = next_random(&s->rng);
        snprintf(e->event_id, sizeof e->event_id, "%08llx-%04llx-4%03llx-a%03llx-%012llx",
                 (unsigned long long)(a >> 32), (unsigned long long)(a >> 16 & 0xffff), (unsigned long long)(a & 0xfff),
                 (unsigned long long)(b >> 52), (unsigned long long)(b & 0xffffffffffffULL));
    } else {
        snprintf(e->event_id, sizeof e->event_id, "%s-%02d-%010llu", o->prefix, s->index, (unsigned long long)k);
    }
    if (o->people) {
        uint32_t p = (uint32_t)(next_random(&s->rng) % o->people);
        nhs_number_of(p, e->nhs);
        snprintf(e->case_ref, sizeof e->case_ref, "case-%08u", p);
    } else {
        /* Events spread over 20000 people and cases: index keys repeat as
         * they do for real people, rather than each event opening a fresh
         * key range. */
        uint64_t g = k * (uint64_t)o->senders + (uint64_t)s->index;
        nhs_number_of((uint32_t)(g % 20000), e->nhs);
        snprintf(e->case_ref, sizeof e->case_ref, "case-%06llu", (unsigned long long)(g % 20000));
    }
    e->env.n_to_agencies = o->also && next_random(&s->rng) >> 63 ? 2 : 1;
}

static bool event_init(event *e, const options *o, sender *s)
{
    memset(e, 0, sizeof *e);
    carebridge__v1__envelope__init(&e->env);
    carebridge__v1__person__init(&e->person);
    carebridge__v1__referral__init(&e->referral);
    google__protobuf__timestamp__init(&e->at);
    e->at.seconds = time(NULL);
    e->to[0] = (char *)o->to;
    e->to[1] = (char *)o->also;
    e->person.nhs_number = e->nhs;
    e->referral.urgency = CAREBRIDGE__V1__REFERRAL__URGENCY__ROUTINE;
    e->referral.consent = CAREBRIDGE__V1__REFERRAL__CONSENT__GIVEN;
    e->referral.requested_service = "reablement";
    carebridge__v1__contact__init(&e->contact);
    e->contact.name = "discharge coordinator";
    e->referral.contact = &e->contact;
    carebridge__v1__risk__init(&e->risk);
    e->risk.description = "none known";
    e->risks[0] = &e->risk;
    e->referral.risks = e->risks;
    e->referral.n_risks = 1;
    e->needs[0] = "none";
    e->referral.communication_needs = e->needs;
    e->referral.n_communication_needs = 1;
    carebridge__v1__outcome__init(&e->outcome);
    e->outcome.statement = "manage at home";
    e->outcomes[0] = &e->outcome;
    e->referral.outcomes = e->outcomes;
    e->referral.n_outcomes = 1;
    e->env.event_id = e->event_id;
    e->env.person = &e->person;
    e->env.case_ref = e->case_ref;
    e->env.from_agency = (char *)o->from;
    e->env.n_to_agencies = 1;
    e->env.to_agencies = e->to;
    e->env.occurred_at = &e->at;
    e->env.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL;
    e->env.referral = &e->referral;
    event_fill(e, o, s, 0);
    e->env.n_to_agencies = 1; /* the padding is set for one recipient: a second adds its name */

    e->reason = malloc(o->size + 1);
    if (!e->reason)
        return false;
    /* Length prefixes are varints, so adding n bytes of padding can add a
     * byte or two more; converge on the exact size in a few steps. */
    size_t pad = 0;
    for (int i = 0; i < 8; i++) {
        memset(e->reason, 'x', pad);
        e->reason[pad] = '\0';
        e->referral.reason = e->reason;
        size_t got = protobuf_c_message_get_packed_size(&e->env.base);
        if (got == o->size)
            return true;
        if (got > o->size) {
            if (pad == 0)
                return true; /* the essentials alone are bigger: send them as they are */
            pad -= got - o->size < pad ? got - o->size : pad;
        } else {
            pad += o->size - got;
        }
    }
    return true; /* within a byte of the target */
}

/* The k-th event of this sender is due at start + (k*S + i)/R: the senders'
 * schedules interleave into one steady stream of R events/s. */
static int64_t due_ns(const sender *s, uint64_t k)
{
    double slot = (double)k * s->o->senders + s->index;
    return start_ns + (int64_t)(slot * 1e9 / s->o->rate);
}

static void *sender_main(void *arg)
{
    sender *s = arg;
    const options *o = s->o;
    event ev;
    cb_error err = {0};
    char name[64];
    snprintf(name, sizeof name, "cb-bench-load %d", s->index);
    cb_client_opts copts = {.endpoint = o->endpoint,
                            .agency = o->from,
                            .window = o->window,
                            .resend_ms = o->resend_ms,
                            .name = name,
                            .key_file = getenv("CAREBRIDGE_KEY"),
                            .broker_key = getenv("CAREBRIDGE_BROKER_KEY")};
    cb_client_handlers h = {.answered = answered};
    bool ready = event_init(&ev, o, s);
    if (ready)
        s->client = cb_client_new(&copts, &h, s, &err);
    if (!ready || !s->client) {
        fprintf(stderr, "cb-bench-load: sender %d: %s\n", s->index, ready ? err.reason : "out of memory");
        s->failed = 2;
        atomic_store(&any_failed, 1);
    }
    /* Connect and be welcomed before the clock starts, so connection set-up
     * is not counted as ACK latency. */
    int64_t deadline = now_ns() + 10 * 1000000000LL;
    while (!s->failed && !cb_client_welcomed(s->client)) {
        if (cb_client_run(s->client, 50) < 0 || now_ns() > deadline) {
            fprintf(stderr, "cb-bench-load: sender %d: no welcome from %s\n", s->index, o->endpoint);
            s->failed = 2;
            atomic_store(&any_failed, 1);
        }
    }
    /* Then stay connected, publishing nothing, for --settle-ms (options says why). */
    for (int64_t until = now_ns() + (int64_t)o->settle_ms * 1000000; !s->failed && now_ns() < until;)
        if (cb_client_run(s->client, 10) < 0) {
            fprintf(stderr, "cb-bench-load: sender %d: %s\n", s->index, cb_client_failure(s->client));
            s->failed = 2;
            atomic_store(&any_failed, 1);
        }
    pthread_barrier_wait(&start_barrier);
    if (s->index == 0)
        start_ns = now_ns();
    pthread_barrier_wait(&start_barrier);
    if (atomic_load(&any_failed)) {
        s->failed = s->failed ? s->failed : 2;
        goto out;
    }

    int64_t end_ns = o->duration_s > 0 ? start_ns + (int64_t)(o->duration_s * 1e9) : INT64_MAX;
    int64_t stall_ns = (int64_t)(o->stall_s * 1e9);
    s->last_progress_ns = start_ns;
    for (;;) {
        int64_t t = now_ns();
        bool more = s->sent < s->quota && t < end_ns;
        if (!more && !cb_client_unanswered(s->client))
            break;
        int64_t next_due = INT64_MAX;
        while (more && cb_client_has_room(s->client) && s->free_recs) {
            if (o->rate > 0 && (next_due = due_ns(s, s->sent)) > t)
                break;
            event_fill(&ev, o, s, s->sent);
            rec *r = s->free_recs;
            s->free_recs = r->next_free;
            r->sent_ns = now_ns();
            if (!cb_client_publish(s->client, &ev.env, r)) {
                fprintf(stderr, "cb-bench-load: sender %d: publish failed (out of memory)\n", s->index);
                r->next_free = s->free_recs, s->free_recs = r;
                s->failed = 2;
                goto out;
            }
            s->sent++;
            t = now_ns();
            more = s->sent < s->quota && t < end_ns;
            next_due = INT64_MAX;
        }
        /* Wait for answers, or until the next scheduled publish (at most
         * 100 ms, so the stall check runs). The wait is timed to the
         * microsecond and an answer wakes it at once, so an ACK is timed
         * when it arrives, not when a nap ends. */
        int64_t wait_ns = next_due == INT64_MAX ? 100 * 1000000LL : next_due - now_ns();
        if (wait_ns > 100 * 1000000LL)
            wait_ns = 100 * 1000000LL;
        if (cb_client_run_us(s->client, wait_ns > 0 ? wait_ns / 1000 : 0) < 0) {
            fprintf(stderr, "cb-bench-load: sender %d: socket error\n", s->index);
            s->failed = 2;
            goto out;
        }
        if (cb_client_unanswered(s->client) && now_ns() - s->last_progress_ns > stall_ns) {
            fprintf(stderr, "cb-bench-load: sender %d: nothing answered for %.0f s; %zu unanswered\n", s->index,
                    o->stall_s, cb_client_unanswered(s->client));
            s->failed = 1;
            goto out;
        }
    }
out:
    free(ev.reason);
    return NULL;
}

/* ---- the drain: one consumer acknowledging every delivery at once */

typedef struct {
    const options *o;
    pthread_t thread;
    uint64_t received;
    double catch_up_s;    /* after publishing, until nothing was queued or in flight for it */
    uint64_t status_asks; /* status requests it made meanwhile, answered by the broker's query thread */
    int failed;
} drain;

static bool drained(void *arg, const Carebridge__V1__Deliver *d)
{
    (void)d;
    ((drain *)arg)->received++;
    return true;
}

/* What the broker holds for the drained agency, queued or in flight; -1 when
 * it does not answer. Asked on the drain's own connection, whose deliveries
 * go on being acknowledged while it waits. */
static int64_t drain_backlog(cb_client *c, const char *agency)
{
    Carebridge__V1__StatusRequest sr = CAREBRIDGE__V1__STATUS_REQUEST__INIT;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_STATUS_REQUEST;
    f.status_request = &sr;
    cb_error err = {0};
    cb_frame *reply = cb_client_request(c, &f, 5000, &err);
    int64_t left = -1;
    if (reply && reply->kind_case == CAREBRIDGE__V1__FRAME__KIND_STATUS_REPLY)
        for (size_t i = 0; i < reply->status_reply->n_agencies; i++) {
            const Carebridge__V1__AgencyStatus *a = reply->status_reply->agencies[i];
            if (strcmp(a->id, agency) == 0)
                left = (int64_t)(a->queued + a->in_flight);
        }
    cb_frame_free(&reply);
    return left;
}

static void *drain_main(void *arg)
{
    drain *d = arg;
    cb_error err = {0};
    cb_client_opts copts = {.endpoint = d->o->endpoint,
                            .agency = d->o->drain,
                            .receive = true,
                            .name = "cb-bench-load drain",
                            .key_file = getenv("CAREBRIDGE_KEY"),
                            .broker_key = getenv("CAREBRIDGE_BROKER_KEY")};
    cb_client_handlers h = {.delivered = drained};
    cb_client *c = cb_client_new(&copts, &h, d, &err);
    if (!c) {
        fprintf(stderr, "cb-bench-load: drain: %s\n", err.reason);
        d->failed = 2;
        return NULL;
    }
    while (!atomic_load(&publishing_done))
        if (cb_client_run(c, 50) < 0) {
            fprintf(stderr, "cb-bench-load: drain: %s\n", cb_client_failure(c));
            d->failed = 2;
            break;
        }
    /* Catch up before leaving, so the next run against this broker does not
     * begin with this one's backlog being delivered beside it. Status is
     * asked every 20 ms, for as long as the backlog keeps shrinking. */
    int64_t t0 = now_ns(), shrank_ns = t0, least = INT64_MAX;
    while (!d->failed) {
        int64_t left = drain_backlog(c, d->o->drain);
        d->status_asks++;
        if (left == 0)
            break;
        if (left > 0 && left < least)
            least = left, shrank_ns = now_ns();
        if (left < 0 || now_ns() - shrank_ns > (int64_t)(d->o->stall_s * 1e9)) {
            if (left < 0)
                fprintf(stderr, "cb-bench-load: drain: no status for %s\n", d->o->drain);
            else
                fprintf(stderr, "cb-bench-load: drain: %lld left for %s, none taken for %.0f s\n", (long long)left,
                        d->o->drain, d->o->stall_s);
            d->failed = 1;
            break;
        }
        for (int64_t until = now_ns() + 20 * 1000000LL, t; !d->failed && (t = now_ns()) < until;)
            if (cb_client_run_us(c, (until - t) / 1000) < 0) {
                fprintf(stderr, "cb-bench-load: drain: %s\n", cb_client_failure(c));
                d->failed = 2;
            }
    }
    d->catch_up_s = (double)(now_ns() - t0) / 1e9;
    cb_client_destroy(&c);
    return NULL;
}

/* ---- the probe: queries at a steady rate while the senders publish */

typedef struct {
    const options *o;
    pthread_t thread;
    int64_t *lat_ns;
    size_t n, cap;
    uint64_t refused;
    int failed;
    char first_refusal[200];
} probe;

static void *probe_main(void *arg)
{
    probe *p = arg;
    const options *o = p->o;
    cb_error err = {0};
    /* Someone waits on each answer, and the senders keep both CPUs busy: the
     * probe asks for the broker query thread's short slice too, before its
     * client (and so the client's I/O thread) is made. */
    cb_thread_prefer_short_slice();
    cb_client_opts copts = {.endpoint = o->probe_endpoint ? o->probe_endpoint : o->endpoint,
                            .name = "cb-bench-load probe",
                            .key_file = getenv("CAREBRIDGE_KEY"),
                            .broker_key = getenv("CAREBRIDGE_BROKER_KEY")};
    cb_client_handlers h = {0};
    cb_client *c = cb_client_new(&copts, &h, p, &err);
    if (!c) {
        fprintf(stderr, "cb-bench-load: probe: %s\n", err.reason);
        p->failed = 2;
        return NULL;
    }
    uint64_t rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)now_ns();
    bool journey = strcmp(o->probe, "journey") == 0;
    char nhs[16];
    int64_t next = now_ns();
    while (!atomic_load(&publishing_done)) {
        int64_t wait_ns = next - now_ns();
        if (wait_ns > 0) {
            struct timespec ts = {wait_ns / 1000000000, wait_ns % 1000000000};
            nanosleep(&ts, NULL);
        }
        next += (int64_t)(1e9 / o->probe_rate);
        Carebridge__V1__JourneyRequest jr = CAREBRIDGE__V1__JOURNEY_REQUEST__INIT;
        Carebridge__V1__StatusRequest sr = CAREBRIDGE__V1__STATUS_REQUEST__INIT;
        cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
        if (journey) {
            nhs_number_of((uint32_t)(next_random(&rng) % (o->people ? o->people : 20000)), nhs);
            jr.person_id = nhs;
            f.kind_case = CAREBRIDGE__V1__FRAME__KIND_JOURNEY_REQUEST;
            f.journey_request = &jr;
        } else {
            f.kind_case = CAREBRIDGE__V1__FRAME__KIND_STATUS_REQUEST;
            f.status_request = &sr;
        }
        int64_t t0 = now_ns();
        cb_frame *reply = cb_client_request(c, &f, 10000, &err);
        int64_t t1 = now_ns();
        if (!reply) {
            fprintf(stderr, "cb-bench-load: probe: %s\n", err.reason);
            p->failed = 1;
            break;
        }
        if (reply->kind_case == CAREBRIDGE__V1__FRAME__KIND_NACK && !p->refused++)
            snprintf(p->first_refusal, sizeof p->first_refusal, "%s", reply->nack->reason);
        cb_frame_free(&reply);
        if (p->n == p->cap) {
            size_t cap = p->cap ? 2 * p->cap : 4096;
            int64_t *grown = realloc(p->lat_ns, cap * sizeof *grown);
            if (!grown)
                break;
            p->lat_ns = grown, p->cap = cap;
        }
        p->lat_ns[p->n++] = t1 - t0;
    }
    cb_client_destroy(&c);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array, in ms. */
static double pct_ms(const int64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)v[rank - 1] / 1e6;
}

static bool parse_num(const char *s, double min, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < min)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"endpoint", required_argument, 0, 'e'},
                                             {"senders", required_argument, 0, 's'},
                                             {"window", required_argument, 0, 'w'},
                                             {"events", required_argument, 0, 'n'},
                                             {"duration", required_argument, 0, 'd'},
                                             {"rate", required_argument, 0, 'r'},
                                             {"size", required_argument, 0, 'z'},
                                             {"from", required_argument, 0, 'f'},
                                             {"to", required_argument, 0, 't'},
                                             {"resend-ms", required_argument, 0, 'R'},
                                             {"stall-s", required_argument, 0, 'S'},
                                             {"settle-ms", required_argument, 0, 'W'},
                                             {"latencies", required_argument, 0, 'L'},
                                             {"people", required_argument, 0, 'P'},
                                             {"random-ids", no_argument, 0, 'I'},
                                             {"also", required_argument, 0, 'A'},
                                             {"drain", required_argument, 0, 'D'},
                                             {"probe", required_argument, 0, 'Q'},
                                             {"probe-rate", required_argument, 0, 'q'},
                                             {"probe-endpoint", required_argument, 0, 'E'},
                                             {"help", no_argument, 0, 'h'},
                                             {"version", no_argument, 0, 'V'},
                                             {0, 0, 0, 0}};
    options o = {.senders = 1,
                 .window = 1024,
                 .events = 50000,
                 .size = 512,
                 .from = "health",
                 .to = "social-care",
                 .resend_ms = 2000,
                 .stall_s = 15,
                 .settle_ms = 500,
                 .probe_rate = 50};
    double v;
    bool events_given = false;
    int c;
    while ((c = getopt_long(argc, argv, "e:s:w:n:d:r:z:f:t:R:S:W:L:P:IA:D:Q:q:E:hV", longopts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'e': o.endpoint = optarg; break;
        case 'E': o.probe_endpoint = optarg; break;
        case 's':
            ok = parse_num(optarg, 1, &v) && v <= 64;
            o.senders = (int)v;
            break;
        case 'w':
            ok = parse_num(optarg, 1, &v) && v <= 65536;
            o.window = (uint32_t)v;
            break;
        case 'n':
            ok = parse_num(optarg, 1, &v);
            o.events = (uint64_t)v;
            events_given = true;
            break;
        case 'd': ok = parse_num(optarg, 0.001, &o.duration_s); break;
        case 'r': ok = parse_num(optarg, 1, &o.rate); break;
        case 'z':
            ok = parse_num(optarg, 64, &v) && v <= 200000;
            o.size = (size_t)v;
            break;
        case 'f': o.from = optarg; break;
        case 't': o.to = optarg; break;
        case 'R':
            ok = parse_num(optarg, 10, &v);
            o.resend_ms = (uint32_t)v;
            break;
        case 'S': ok = parse_num(optarg, 0.1, &o.stall_s); break;
        case 'W':
            ok = parse_num(optarg, 0, &v) && v <= 60000;
            o.settle_ms = (uint32_t)v;
            break;
        case 'L': o.latencies = optarg; break;
        case 'P':
            ok = parse_num(optarg, 1, &v) && v <= 10000000;
            o.people = (uint32_t)v;
            break;
        case 'I': o.random_ids = true; break;
        case 'A': o.also = optarg; break;
        case 'D': o.drain = optarg; break;
        case 'Q':
            o.probe = optarg;
            ok = strcmp(optarg, "journey") == 0 || strcmp(optarg, "status") == 0;
            break;
        case 'q': ok = parse_num(optarg, 0.1, &o.probe_rate) && o.probe_rate <= 100000; break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': puts("cb-bench-load " CB_VERSION); return 0;
        default: ok = false; break;
        }
        if (!ok) {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!o.endpoint || optind < argc) {
        fputs(usage, stderr);
        return 2;
    }
    if (o.duration_s > 0 && !events_given)
        o.events = 0;
    uint8_t rnd[8];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        uint64_t t = (uint64_t)now_ns();
        memcpy(rnd, &t, sizeof rnd);
    }
    for (int i = 0; i < 8; i++)
        snprintf(o.prefix + 2 * i, 3, "%02x", rnd[i]);

    sender *ss = calloc((size_t)o.senders, sizeof *ss);
    if (!ss)
        return 2;
    pthread_barrier_init(&start_barrier, NULL, (unsigned)o.senders);
    for (int i = 0; i < o.senders; i++) {
        sender *s = &ss[i];
        s->o = &o;
        s->index = i;
        s->quota =
            o.events ? o.events / (uint64_t)o.senders + ((uint64_t)i < o.events % (uint64_t)o.senders) : UINT64_MAX;
        s->rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1) ^ (uint64_t)now_ns();
        s->recs = calloc(o.window, sizeof *s->recs);
        if (!s->recs)
            return 2;
        for (uint32_t k = 0; k < o.window; k++) {
            s->recs[k].next_free = s->free_recs;
            s->free_recs = &s->recs[k];
        }
    }
    drain dr = {.o = &o};
    probe pr = {.o = &o};
    if ((o.drain && pthread_create(&dr.thread, NULL, drain_main, &dr) != 0) ||
        (o.probe && pthread_create(&pr.thread, NULL, probe_main, &pr) != 0)) {
        fputs("cb-bench-load: cannot start a thread\n", stderr);
        return 2;
    }
    for (int i = 0; i < o.senders; i++)
        if (pthread_create(&ss[i].thread, NULL, sender_main, &ss[i]) != 0) {
            fputs("cb-bench-load: cannot start a thread\n", stderr);
            return 2;
        }
    for (int i = 0; i < o.senders; i++)
        pthread_join(ss[i].thread, NULL);
    for (int i = 0; i < o.senders; i++) /* goodbye now: the drain may take a while yet */
        cb_client_destroy(&ss[i].client);
    atomic_store(&publishing_done, 1);
    if (o.drain)
        pthread_join(dr.thread, NULL);
    if (o.probe)
        pthread_join(pr.thread, NULL);
    if (pr.refused)
        fprintf(stderr, "cb-bench-load: %llu probes refused; the first: %s\n", (unsigned long long)pr.refused,
                pr.first_refusal);
    if (pr.n)
        qsort(pr.lat_ns, pr.n, sizeof *pr.lat_ns, cmp_i64);

    uint64_t sent = 0, acked = 0, nacks = 0, dups = 0;
    size_t n = 0;
    int64_t last = start_ns;
    int failed = 0;
    const char *first_nack = "";
    for (int i = 0; i < o.senders; i++) {
        sender *s = &ss[i];
        sent += s->sent, acked += s->acked, nacks += s->nacks, dups += s->duplicates, n += s->n_lat;
        if (s->last_answer_ns > last)
            last = s->last_answer_ns;
        if (s->failed > failed)
            failed = s->failed;
        if (s->nacks && !first_nack[0])
            first_nack = s->first_nack;
    }
    FILE *lf = o.latencies ? fopen(o.latencies, "w") : NULL;
    if (o.latencies && !lf)
        fprintf(stderr, "cb-bench-load: cannot write %s\n", o.latencies);
    if (lf) /* the run's start on CLOCK_MONOTONIC, to line the file up with other traces */
        fprintf(lf, "# start_monotonic_ns %lld\n", (long long)start_ns);
    for (int i = 0; lf && i < o.senders; i++)
        for (size_t k = 0; k < ss[i].n_lat; k++)
            fprintf(lf, "%d %.3f %.3f\n", i, (double)(ss[i].at_ns[k] - start_ns) / 1e6, (double)ss[i].lat_ns[k] / 1e6);
    if (lf)
        fclose(lf);
    int64_t *all = malloc((n ? n : 1) * sizeof *all);
    if (!all)
        return 2;
    size_t at = 0;
    for (int i = 0; i < o.senders; i++) {
        memcpy(all + at, ss[i].lat_ns, ss[i].n_lat * sizeof *all);
        at += ss[i].n_lat;
    }
    qsort(all, n, sizeof *all, cmp_i64);
    double secs = (double)(last - start_ns) / 1e9;
    if (nacks)
        fprintf(stderr, "cb-bench-load: %llu NACKs; the first: %s\n", (unsigned long long)nacks, first_nack);
    /* events counts ACKed events only: a NACK is an answer, not a stored event. */
    printf("{\"senders\": %d, \"window\": %u, \"event_bytes\": %zu, \"rate\": %.0f, \"sent\": %llu, "
           "\"events\": %llu, \"seconds\": %.3f, \"events_per_s\": %.1f, \"p50_ms\": %.3f, \"p90_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"p999_ms\": %.3f, \"max_ms\": %.3f, \"nacks\": %llu, \"duplicates\": %llu, "
           "\"unanswered\": %llu, \"drained\": %llu, \"drain_catch_up_s\": %.3f, \"drain_status_asks\": %llu, "
           "\"probes\": %zu, \"probes_refused\": %llu, "
           "\"probe_p50_ms\": %.3f, \"probe_p99_ms\": %.3f, \"probe_max_ms\": %.3f}\n",
           o.senders, o.window, o.size, o.rate, (unsigned long long)sent, (unsigned long long)acked, secs,
           secs > 0 ? (double)acked / secs : 0.0, pct_ms(all, n, 50), pct_ms(all, n, 90), pct_ms(all, n, 99),
           pct_ms(all, n, 99.9), n ? (double)all[n - 1] / 1e6 : 0.0, (unsigned long long)nacks,
           (unsigned long long)dups, (unsigned long long)(sent - acked - nacks), (unsigned long long)dr.received,
           dr.catch_up_s, (unsigned long long)dr.status_asks, pr.n, (unsigned long long)pr.refused,
           pct_ms(pr.lat_ns, pr.n, 50), pct_ms(pr.lat_ns, pr.n, 99), pr.n ? (double)pr.lat_ns[pr.n - 1] / 1e6 : 0.0);
    free(pr.lat_ns);
    if (dr.failed > failed)
        failed = dr.failed;
    if (pr.failed > failed)
        failed = pr.failed;
    for (int i = 0; i < o.senders; i++) {
        free(ss[i].recs);
        free(ss[i].lat_ns);
        free(ss[i].at_ns);
    }
    free(all);
    free(ss);
    pthread_barrier_destroy(&start_barrier);
    return failed ? failed : 0;
}
