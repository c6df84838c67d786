/* The flag rules (broker/flags/) through the commit that runs them: events
 * written as JSON, as an agency's system would send them, committed in
 * batches into a real LMDB environment, and the flags then stored read back
 * through the query the CLI uses. Time is the batch's wall clock, set by
 * each test: no test sleeps. Each rule is raised, resolved, and left quiet
 * by a complete, timely event. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixtures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "cb_check.h"
#include "cb_json.h"
#include "commit.h"
#include "flagquery.h"
#include "intake.h"
#include "keys.h"

#define MAP_BYTES (64ull << 20)
#define HOUR      3600000ull
#define DAY       (24 * HOUR)
#define T0        1796083200000ull /* 2026-12-01T00:00:00Z */
#define SENDER    3

#define NHS     "9434765919"
#define TYPE(t) CAREBRIDGE__V1__FLAG__TYPE__##t
#define BIT(t)  (1u << TYPE(t))

typedef struct {
    cb_test_store t;
    cb_config *cfg;
    cb_commit *commit;
    cb_batch *batch;
    int64_t mono;
    cb_frame *frames[8];
    size_t n_frames;
} fixture;

static void reset_batch(fixture *f)
{
    cb_batch *b = f->batch;
    cb_batch_free_out(b);
    b->n_pubs = b->n_acks = b->n_reqs = b->n_ops = 0;
    cb_arena_reset(b->arena);
    for (size_t i = 0; i < f->n_frames; i++)
        cb_frame_free(&f->frames[i]);
    f->n_frames = 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    if (!f || !(f->cfg = cb_test_config()) || !cb_test_store_open(&f->t, MAP_BYTES, 0.9))
        return -1;
    cb_error err = {0};
    f->commit = cb_commit_new(f->cfg, f->t.store, &err);
    f->batch = f->commit ? cb_batch_new(cb_commit_max_out(f->commit)) : NULL;
    if (!f->batch)
        return -1;
    /* The first batch runs the timer: let it run now, on nothing. */
    f->batch->now_ms = f->mono = 1;
    f->batch->wall_ms = T0;
    cb_commit_batch(f->commit, f->batch);
    reset_batch(f);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    reset_batch(f);
    cb_batch_free(&f->batch);
    cb_commit_free(&f->commit);
    cb_config_free(&f->cfg);
    int rc = cb_test_store_close(&f->t);
    free(f);
    return rc;
}

/* Commit one event given as JSON at wall time `wall`; returns the flag types
 * its ACK lists. The test fails unless it is stored. */
static uint32_t send_at(fixture *f, uint64_t wall, const char *json)
{
    cb_error err = {0};
    cb_envelope *ev = (cb_envelope *)cb_json_loads(&carebridge__v1__envelope__descriptor, json, strlen(json), &err);
    if (!ev)
        fail_msg("not an envelope: %s\n%s", err.reason, json);
    cb_frame *fr = calloc(1, sizeof *fr);
    Carebridge__V1__Publish *pub = calloc(1, sizeof *pub);
    assert_non_null(fr);
    assert_non_null(pub);
    carebridge__v1__frame__init(fr);
    carebridge__v1__publish__init(pub);
    pub->event = ev;
    fr->kind_case = CAREBRIDGE__V1__FRAME__KIND_PUBLISH;
    fr->publish = pub;
    f->frames[f->n_frames++] = fr;
    uint32_t warnings = cb_intake_normalise(ev);
    const cb_agency *sender = cb_config_agency(f->cfg, ev->from_agency);
    if (!sender || cb_intake_check(f->cfg, sender, ev, &err))
        fail_msg("not admissible: %s", err.reason);
    cb_publish *p = cb_batch_add_publish(f->batch, SENDER, 1, fr, warnings);
    assert_non_null(p);
    f->batch->now_ms = ++f->mono;
    f->batch->wall_ms = wall;
    cb_commit_batch(f->commit, f->batch);
    if (p->code)
        fail_msg("refused: %s", p->reason);
    uint32_t flags = p->flags;
    reset_batch(f);
    return flags;
}

/* Run the time-based rules at wall time `wall`. */
static void tick_at(fixture *f, uint64_t wall)
{
    f->mono += 86400 * 1000 + 1; /* past any tick interval */
    f->batch->now_ms = f->mono;
    f->batch->wall_ms = wall;
    cb_commit_batch(f->commit, f->batch);
    reset_batch(f);
}

/* The flags stored of a type (0: every type), as the CLI would be told. */
static Carebridge__V1__FlagsReply *flags_of(fixture *f, Carebridge__V1__Flag__Type type)
{
    Carebridge__V1__FlagsRequest req = CAREBRIDGE__V1__FLAGS_REQUEST__INIT;
    req.type = type;
    cb_error err = {0};
    cb_txn *txn = cb_test_begin(f->t.store, false);
    Carebridge__V1__FlagsReply *r = cb_flags_query(f->cfg, txn, &req, &err);
    cb_txn_abort(&txn);
    if (!r)
        fail_msg("flags query: %s", err.reason);
    return r;
}

static void free_reply(Carebridge__V1__FlagsReply **r)
{
    protobuf_c_message_free_unpacked(&(*r)->base, NULL);
    *r = NULL;
}

/* How many flags of the type are open, and how many resolved. */
static void count(fixture *f, Carebridge__V1__Flag__Type type, size_t *open, size_t *resolved)
{
    Carebridge__V1__FlagsReply *r = flags_of(f, type);
    *open = *resolved = 0;
    for (size_t i = 0; i < r->n_flags; i++)
        (r->flags[i]->status == CAREBRIDGE__V1__FLAG__STATUS__OPEN ? (*open)++ : (*resolved)++);
    free_reply(&r);
}

static void expect(fixture *f, Carebridge__V1__Flag__Type type, size_t open, size_t resolved)
{
    size_t o, r;
    count(f, type, &o, &r);
    if (o != open || r != resolved)
        fail_msg("%s: %zu open and %zu resolved, expected %zu and %zu",
                 protobuf_c_enum_descriptor_get_value(&carebridge__v1__flag__type__descriptor, type)->name, o, r, open,
                 resolved);
}

/* Every type but these has no flag at all. */
static void nothing_else(fixture *f, uint32_t except)
{
    for (unsigned t = 1; t < CB_FLAG_TYPES; t++)
        if (!(except & (1u << t)))
            expect(f, (Carebridge__V1__Flag__Type)t, 0, 0);
}

/* The one flag of a type, copied. */
static cb_flag *the_flag(fixture *f, Carebridge__V1__Flag__Type type)
{
    Carebridge__V1__FlagsReply *r = flags_of(f, type);
    if (r->n_flags != 1)
        fail_msg("%zu flags of the type, expected one", r->n_flags);
    uint8_t *buf;
    size_t len = cb_pack(&r->flags[0]->base, &buf);
    cb_flag *fl = carebridge__v1__flag__unpack(NULL, len, buf);
    free(buf);
    free_reply(&r);
    return fl;
}

/* ---- events, as an agency's system writes them */

static char *text(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *text(const char *fmt, ...)
{
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof bufs[0], fmt, ap);
    va_end(ap);
    return b;
}

/* "2026-12-01T00:00:00Z" plus ms. */
static const char *at(uint64_t ms)
{
    static char bufs[4][32];
    static int next;
    char *b = bufs[next++ % 4];
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(b, sizeof bufs[0], "%Y-%m-%dT%H:%M:%SZ", &tm);
    return b;
}

#define COMPLETE_REFERRAL                                                                                              \
    "\"reason\":\"home support after a fall\",\"urgency\":\"%s\",\"consent\":\"GIVEN\","                               \
    "\"contact\":{\"name\":\"ward 7 discharge team\"},\"risks\":[{\"description\":\"none known\"}],"                   \
    "\"communicationNeeds\":[\"none\"],\"outcomes\":[{\"statement\":\"walk to the shops\",\"ref\":\"o-1\"}]"

static const char *referral(const char *id, const char *from, const char *to, uint64_t when, const char *urgency)
{
    return text("{\"eventId\":\"%s\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"%s\",\"toAgencies\":"
                "[\"%s\"],\"occurredAt\":\"%s\",\"referral\":{" COMPLETE_REFERRAL "}}",
                id, from, to, at(when), urgency);
}

static const char *response(const char *id, const char *from, const char *to, const char *answers, uint64_t when,
                            const char *status, const char *extra)
{
    return text("{\"eventId\":\"%s\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"%s\",\"toAgencies\":"
                "[\"%s\"],\"occurredAt\":\"%s\",\"correlationId\":\"%s\",\"response\":{\"status\":\"%s\"%s}}",
                id, from, to, at(when), answers, status, extra);
}

/* ---- a complete, timely journey raises only its handoffs */

static void test_complete_timely_referral_raises_only_its_handoff(void **state)
{
    fixture *f = *state;
    uint32_t raised = send_at(f, T0, referral("r-1", "health", "social-care", T0, "ROUTINE"));
    assert_int_equal(raised, BIT(INTER_AGENCY_HANDOFF));
    expect(f, TYPE(INTER_AGENCY_HANDOFF), 1, 0);
    assert_int_equal(
        send_at(f, T0 + HOUR, response("a-1", "social-care", "health", "r-1", T0 + HOUR, "ACKNOWLEDGED", "")), 0);
    tick_at(f, T0 + 5 * HOUR);
    assert_int_equal(send_at(f, T0 + DAY, response("a-2", "social-care", "health", "r-1", T0 + DAY, "ACCEPTED", "")),
                     0);
    tick_at(f, T0 + 10 * DAY);
    expect(f, TYPE(INTER_AGENCY_HANDOFF), 0, 1);
    nothing_else(f, BIT(INTER_AGENCY_HANDOFF));
    cb_flag *h = the_flag(f, TYPE(INTER_AGENCY_HANDOFF));
    assert_string_equal(h->resolved_by, "a-2");
    assert_string_equal(h->agencies[0], "social-care");
    assert_string_equal(h->agencies[1], "health");
    cb_flag_free(&h);
}

static void test_an_answer_stored_before_its_event_counts_when_the_event_arrives(void **state)
{
    fixture *f = *state;
    /* Agencies are not ordered: social care's accept is stored first. */
    send_at(f, T0 + HOUR, response("a-0", "social-care", "health", "r-0", T0 + HOUR, "ACCEPTED", ""));
    send_at(f, T0 + 2 * HOUR, referral("r-0", "health", "social-care", T0, "ROUTINE"));
    tick_at(f, T0 + 10 * DAY);
    expect(f, TYPE(INTER_AGENCY_HANDOFF), 0, 1);
    nothing_else(f, BIT(INTER_AGENCY_HANDOFF));
}

/* ---- MISSING_INFORMATION */

static void test_missing_information_names_the_fields_and_resolves_as_updates_supply_them(void **state)
{
    fixture *f = *state;
    const char *incomplete =
        "{\"eventId\":\"r-2\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"health\","
        "\"toAgencies\":[\"housing\"],\"occurredAt\":\"2026-12-01T09:00:00Z\",\"referral\":{"
        "\"reason\":\"eviction risk\",\"urgency\":\"SOON\",\"risks\":[{\"description\":\"none known\"}],"
        "\"communicationNeeds\":[\"none\"],\"outcomes\":[{\"statement\":\"stay in my flat\"}]}}";
    uint32_t raised = send_at(f, T0, incomplete);
    assert_int_equal(raised, BIT(INTER_AGENCY_HANDOFF) | BIT(MISSING_INFORMATION));
    cb_flag *m = the_flag(f, TYPE(MISSING_INFORMATION));
    assert_int_equal(m->n_fields, 2);
    assert_string_equal(m->fields[0], "referral.consent");
    assert_string_equal(m->fields[1], "referral.contact.name");
    assert_non_null(strstr(m->explanation, "lacks referral.consent and referral.contact.name"));
    assert_null(strstr(m->explanation, NHS));
    assert_int_equal(m->severity, CAREBRIDGE__V1__FLAG__SEVERITY__MEDIUM);
    cb_flag_free(&m);

    send_at(f, T0 + HOUR,
            "{\"eventId\":\"u-1\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"health\","
            "\"toAgencies\":[\"housing\"],\"occurredAt\":\"2026-12-01T10:00:00Z\",\"correlationId\":"
            "\"r-2\",\"update\":{\"referral\":{\"consent\":\"GIVEN\"}}}");
    m = the_flag(f, TYPE(MISSING_INFORMATION));
    assert_int_equal(m->status, CAREBRIDGE__V1__FLAG__STATUS__OPEN);
    assert_int_equal(m->n_fields, 1);
    assert_string_equal(m->fields[0], "referral.contact.name");
    cb_flag_free(&m);
    send_at(f, T0 + 2 * HOUR,
            "{\"eventId\":\"u-2\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"health\","
            "\"toAgencies\":[\"housing\"],\"occurredAt\":\"2026-12-01T11:00:00Z\",\"correlationId\":"
            "\"r-2\",\"update\":{\"referral\":{\"contact\":{\"name\":\"Sam at ward 7\"}}}}");
    m = the_flag(f, TYPE(MISSING_INFORMATION));
    assert_int_equal(m->status, CAREBRIDGE__V1__FLAG__STATUS__RESOLVED);
    assert_string_equal(m->resolved_by, "u-2");
    cb_flag_free(&m);
}

static const char *discharge(const char *id, const char *to, uint64_t when, const char *planned, const char *rest)
{
    return text("{\"eventId\":\"%s\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"health\","
                "\"toAgencies\":[%s],\"occurredAt\":\"%s\",\"discharge\":{\"setting\":\"ward 7\",\"destination\":"
                "\"own home\",\"plannedDate\":\"%s\",\"outcomes\":[{\"statement\":\"walk to the shops\",\"ref\":"
                "\"o-1\"}]%s}}",
                id, to, at(when), planned, rest);
}

static void test_missing_information_depends_on_who_receives_it(void **state)
{
    fixture *f = *state;
    /* To housing, a discharge must say where the person will live; to the
     * befriending service it need not. */
    assert_false(send_at(f, T0, discharge("d-1", "\"voluntary\"", T0, "2026-12-20", "")) & BIT(MISSING_INFORMATION));
    assert_true(send_at(f, T0, discharge("d-2", "\"housing\"", T0, "2026-12-20", "")) & BIT(MISSING_INFORMATION));
    cb_flag *m = the_flag(f, TYPE(MISSING_INFORMATION));
    assert_int_equal(m->n_fields, 1);
    assert_string_equal(m->fields[0], "discharge.housingStatus");
    cb_flag_free(&m);
    assert_false(send_at(f, T0, discharge("d-3", "\"housing\"", T0, "2026-12-20", ",\"housingStatus\":\"HOUSED\"")) &
                 BIT(MISSING_INFORMATION));
}

/* ---- IDENTITY_UNLINKABLE and the check digits behind it */

static void test_check_digits_of_published_and_computed_numbers(void **state)
{
    (void)state;
    static const struct {
        const char *number;
        bool nhs, chi;
    } cases[] = {
        {"9434765919", true, false}, /* NHS Digital's test numbers */
        {"9434765870", true, false},  {"9876543210", true, false},
        {"9434765918", false, false}, /* the check digit off by one */
        {"1234567890", false, false}, /* modulus 11 gives 10: no valid number */
        {"943476591", false, false},  /* nine digits */
        {"1203456786", true, true},   /* CHI 12 Mar 45, modulus 11 */
        {"1203456783", false, true},  /* the same stem, modulus 10 (Luhn) only */
        {"1203456780", false, false}, /* neither */
        {"3112990013", true, true},   /* 31 Dec 99, modulus 11 */
        {"3112990019", false, true},  /* and modulus 10 */
        {"2902001126", true, true},   /* 29 Feb 00: 2000 was a leap year */
        {"1506905551", false, true},  /* modulus 10 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cb_nhs_number_valid(cases[i].number) != cases[i].nhs)
            fail_msg("%s as an NHS number: expected %s", cases[i].number, cases[i].nhs ? "valid" : "invalid");
        if (cb_chi_number_valid(cases[i].number) != cases[i].chi)
            fail_msg("%s as a CHI number: expected %s", cases[i].number, cases[i].chi ? "valid" : "invalid");
    }
    /* Not a date: 31 February, 29 February of a year leap in neither century. */
    assert_string_equal(cb_chi_number_problem("3102991234"), "date");
    assert_string_equal(cb_chi_number_problem("2902011234"), "date");
    assert_string_equal(cb_chi_number_problem("0013991234"), "date");
}

static void test_unlinkable_identity_is_flagged_once_and_a_valid_one_is_quiet(void **state)
{
    fixture *f = *state;
    const char *bad =
        "{\"eventId\":\"r-3\",\"person\":{\"nhsNumber\":\"9434765918\"},\"fromAgency\":\"health\","
        "\"toAgencies\":[\"social-care\"],\"occurredAt\":\"2026-12-01T09:00:00Z\",\"referral\":{" COMPLETE_REFERRAL
        "}}";
    assert_true(send_at(f, T0, text(bad, "ROUTINE")) & BIT(IDENTITY_UNLINKABLE));
    const char *local =
        "{\"eventId\":\"r-4\",\"person\":{\"localIds\":[{\"system\":\"housing:hms\",\"value\":\"T-1\"}]},"
        "\"fromAgency\":\"housing\",\"toAgencies\":[\"social-care\"],\"occurredAt\":\"2026-12-01T09:00:00Z\","
        "\"referral\":{" COMPLETE_REFERRAL "}}";
    assert_true(send_at(f, T0, text(local, "ROUTINE")) & BIT(IDENTITY_UNLINKABLE));
    const char *scot =
        "{\"eventId\":\"r-5\",\"person\":{\"chiNumber\":\"1203456783\"},\"fromAgency\":\"health\","
        "\"toAgencies\":[\"social-care\"],\"occurredAt\":\"2026-12-01T09:00:00Z\",\"referral\":{" COMPLETE_REFERRAL
        "}}";
    assert_false(send_at(f, T0, text(scot, "ROUTINE")) & BIT(IDENTITY_UNLINKABLE));
    assert_false(send_at(f, T0, referral("r-6", "health", "social-care", T0, "ROUTINE")) & BIT(IDENTITY_UNLINKABLE));
    expect(f, TYPE(IDENTITY_UNLINKABLE), 2, 0);
    /* A response joins the journey through what it answers: not flagged. */
    const char *answer =
        "{\"eventId\":\"a-5\",\"person\":{\"localIds\":[{\"system\":\"sc\",\"value\":\"9\"}]},"
        "\"fromAgency\":\"social-care\",\"toAgencies\":[\"health\"],\"occurredAt\":\"2026-12-01T10:00:00Z\","
        "\"correlationId\":\"r-6\",\"response\":{\"status\":\"ACKNOWLEDGED\"}}";
    assert_false(send_at(f, T0, answer) & BIT(IDENTITY_UNLINKABLE));
}

/* ---- NOT_ACKNOWLEDGED, NOT_ANSWERED */

static void test_not_acknowledged_after_four_hours_resolves_with_how_late(void **state)
{
    fixture *f = *state;
    send_at(f, T0, referral("r-7", "health", "social-care", T0, "ROUTINE"));
    tick_at(f, T0 + 3 * HOUR);
    expect(f, TYPE(NOT_ACKNOWLEDGED), 0, 0);
    tick_at(f, T0 + 5 * HOUR);
    expect(f, TYPE(NOT_ACKNOWLEDGED), 1, 0);
    tick_at(f, T0 + 6 * HOUR); /* raised once, not at every tick */
    expect(f, TYPE(NOT_ACKNOWLEDGED), 1, 0);
    send_at(f, T0 + 6 * HOUR, response("a-7", "social-care", "health", "r-7", T0 + 6 * HOUR, "ACKNOWLEDGED", ""));
    cb_flag *n = the_flag(f, TYPE(NOT_ACKNOWLEDGED));
    assert_int_equal(n->status, CAREBRIDGE__V1__FLAG__STATUS__RESOLVED);
    assert_int_equal(n->late_by_ms, 2 * HOUR);
    assert_string_equal(n->resolved_by, "a-7");
    assert_string_equal(n->agencies[0], "social-care");
    cb_flag_free(&n);
    expect(f, TYPE(NOT_ANSWERED), 0, 0);
    tick_at(f, T0 + 49 * HOUR);
    expect(f, TYPE(NOT_ANSWERED), 1, 0);
    send_at(f, T0 + 50 * HOUR, response("a-8", "social-care", "health", "r-7", T0 + 50 * HOUR, "ACCEPTED", ""));
    expect(f, TYPE(NOT_ANSWERED), 0, 1);
}

/* A resolved flag removed by retention (retention.closed_flag_days) frees
 * no number: the event's next flag is numbered after it, so no one who saw
 * the first takes the second for it. */
static void test_a_flag_removed_by_retention_leaves_its_number_taken(void **state)
{
    fixture *f = *state;
    send_at(f, T0, referral("r-7", "health", "social-care", T0, "ROUTINE"));
    tick_at(f, T0 + 5 * HOUR);
    send_at(f, T0 + 6 * HOUR, response("a-7", "social-care", "health", "r-7", T0 + 6 * HOUR, "ACKNOWLEDGED", ""));
    cb_flag *n = the_flag(f, TYPE(NOT_ACKNOWLEDGED));
    uint64_t first = n->id;
    assert_int_equal(n->status, CAREBRIDGE__V1__FLAG__STATUS__RESOLVED);
    assert_int_equal(first & (CB_FLAG_PER_EVENT - 1), CB_FLAG_STORED);
    cb_flag_free(&n);
    f->cfg->retention.closed_flag_days = 1;
    tick_at(f, T0 + 31 * HOUR); /* a day after it was resolved, it goes */
    expect(f, TYPE(NOT_ACKNOWLEDGED), 0, 0);
    tick_at(f, T0 + 49 * HOUR);
    n = the_flag(f, TYPE(NOT_ANSWERED));
    assert_int_equal(n->id, first + 1);
    cb_flag_free(&n);
}

/* The open flags counted by agency and type (for the metrics) are what the
 * flags themselves say, as they are raised, resolved and removed. */
typedef struct {
    char agency[64];
    unsigned type;
    uint64_t n;
} open_tally;

static void tally_count(void *arg, const char *agency, unsigned type, uint64_t count)
{
    open_tally *t = arg;
    for (; t->agency[0]; t++)
        ;
    snprintf(t->agency, sizeof t->agency, "%s", agency);
    t->type = type;
    t->n = count;
}

static uint64_t tally_of(const open_tally *t, const char *agency, unsigned type)
{
    for (; t->agency[0]; t++)
        if (!strcmp(t->agency, agency) && t->type == type)
            return t->n;
    return 0;
}

static size_t assert_counts_match(fixture *f)
{
    open_tally counted[64] = {0};
    cb_flagbook fb = cb_flagbook_broker();
    cb_txn *txn = cb_test_begin(f->t.store, false);
    cb_flagbook_open_counts(&fb, txn, tally_count, counted);
    cb_txn_abort(&txn);
    Carebridge__V1__FlagsReply *r = flags_of(f, 0);
    size_t open = 0, total = 0;
    for (unsigned a = 0; a < f->cfg->n_agencies; a++)
        for (unsigned t = 1; t < CB_FLAG_TYPES; t++) {
            uint64_t want = 0;
            for (size_t i = 0; i < r->n_flags; i++)
                for (size_t k = 0; r->flags[i]->status == CAREBRIDGE__V1__FLAG__STATUS__OPEN &&
                                   r->flags[i]->type == t && k < r->flags[i]->n_agencies;
                     k++)
                    want += !strcmp(r->flags[i]->agencies[k], f->cfg->agencies[a].id);
            assert_int_equal(tally_of(counted, f->cfg->agencies[a].id, t), want);
            total += want;
        }
    for (size_t i = 0; i < r->n_flags; i++)
        open += r->flags[i]->status == CAREBRIDGE__V1__FLAG__STATUS__OPEN;
    free_reply(&r);
    assert_true(total >= open);
    return open;
}

static void test_open_flags_are_counted_by_agency_and_type(void **state)
{
    fixture *f = *state;
    send_at(f, T0, referral("r-7", "health", "social-care", T0, "ROUTINE"));
    assert_int_equal(assert_counts_match(f), 1); /* the handoff */
    tick_at(f, T0 + 5 * HOUR);
    assert_int_equal(assert_counts_match(f), 2); /* and NOT_ACKNOWLEDGED */
    send_at(f, T0 + 6 * HOUR, response("a-7", "social-care", "health", "r-7", T0 + 6 * HOUR, "ACKNOWLEDGED", ""));
    assert_int_equal(assert_counts_match(f), 1);
    tick_at(f, T0 + 49 * HOUR);
    assert_int_equal(assert_counts_match(f), 2); /* NOT_ANSWERED */
    send_at(f, T0 + 50 * HOUR, response("a-8", "social-care", "health", "r-7", T0 + 50 * HOUR, "ACCEPTED", ""));
    assert_int_equal(assert_counts_match(f), 0);
    send_at(f, T0 + 51 * HOUR, referral("r-8", "health", "housing", T0 + 51 * HOUR, "ROUTINE"));
    assert_int_equal(assert_counts_match(f), 1);
    f->cfg->retention.event_days = 1; /* the referral's event goes, and its open flag with it */
    tick_at(f, T0 + 80 * HOUR);
    assert_int_equal(assert_counts_match(f), 0);
}

static void test_urgent_deadlines_are_shorter_and_severity_higher(void **state)
{
    fixture *f = *state;
    send_at(f, T0, referral("r-9", "health", "social-care", T0, "URGENT"));
    tick_at(f, T0 + 90 * 60000); /* 1.5 h */
    cb_flag *n = the_flag(f, TYPE(NOT_ACKNOWLEDGED));
    assert_int_equal(n->severity, CAREBRIDGE__V1__FLAG__SEVERITY__HIGH);
    cb_flag_free(&n);
    tick_at(f, T0 + 25 * HOUR);
    expect(f, TYPE(NOT_ANSWERED), 1, 0);
}

static void test_a_late_answer_before_any_tick_is_on_record_all_the_same(void **state)
{
    fixture *f = *state;
    send_at(f, T0, referral("r-10", "health", "social-care", T0, "ROUTINE"));
    uint32_t raised =
        send_at(f, T0 + 5 * HOUR, response("a-10", "social-care", "health", "r-10", T0 + 5 * HOUR, "ACCEPTED", ""));
    assert_int_equal(raised, BIT(NOT_ACKNOWLEDGED)); /* its sender is told it was late */
    cb_flag *n = the_flag(f, TYPE(NOT_ACKNOWLEDGED));
    assert_int_equal(n->status, CAREBRIDGE__V1__FLAG__STATUS__RESOLVED);
    assert_int_equal(n->late_by_ms, HOUR);
    cb_flag_free(&n);
    tick_at(f, T0 + 10 * DAY);
    expect(f, TYPE(NOT_ACKNOWLEDGED), 0, 1);
    expect(f, TYPE(NOT_ANSWERED), 0, 0);
}

static void test_an_event_that_arrives_late_is_judged_by_when_it_happened(void **state)
{
    fixture *f = *state;
    /* Sent at T0 + 6 h about a referral made at T0: overdue the moment it is stored. */
    send_at(f, T0 + 6 * HOUR, referral("r-11", "health", "social-care", T0, "ROUTINE"));
    tick_at(f, T0 + 6 * HOUR + 1000);
    expect(f, TYPE(NOT_ACKNOWLEDGED), 1, 0);
}

/* ---- DISCHARGE_AT_RISK */

static void test_discharge_at_risk_a_day_before_and_resolved_by_confirming(void **state)
{
    fixture *f = *state;
    /* Planned for 10 Dec; the doctor's sign-off is not confirmed. */
    send_at(f, T0,
            discharge("d-4", "\"social-care\"", T0, "2026-12-10",
                      ",\"careNeeds\":\"help with stairs\",\"medication\":\"as per letter\","
                      "\"dependencies\":[{\"description\":\"doctor's sign-off\",\"owner\":\"health\"}]"));
    send_at(f, T0 + HOUR, response("a-12", "social-care", "health", "d-4", T0 + HOUR, "ACCEPTED", ""));
    uint64_t planned = T0 + 9 * DAY;
    tick_at(f, planned - 25 * HOUR);
    expect(f, TYPE(DISCHARGE_AT_RISK), 0, 0);
    tick_at(f, planned - 23 * HOUR);
    cb_flag *d = the_flag(f, TYPE(DISCHARGE_AT_RISK));
    assert_int_equal(d->n_fields, 1);
    assert_string_equal(d->fields[0], "doctor's sign-off");
    assert_non_null(strstr(d->explanation, "planned for 10 Dec 2026"));
    cb_flag_free(&d);
    send_at(f, planned - 20 * HOUR,
            text("{\"eventId\":\"u-4\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"health\",\"toAgencies\":"
                 "[\"social-care\"],\"occurredAt\":\"%s\",\"correlationId\":\"d-4\",\"update\":{\"discharge\":{"
                 "\"dependencies\":[{\"description\":\"Doctor's sign-off\",\"confirmed\":true}]}}}",
                 at(planned - 20 * HOUR)));
    expect(f, TYPE(DISCHARGE_AT_RISK), 0, 1);
    tick_at(f, planned + DAY);
    expect(f, TYPE(DISCHARGE_AT_RISK), 0, 1); /* accepted, confirmed: nothing more */
}

static void test_discharge_not_accepted_by_the_planned_date_and_a_new_date(void **state)
{
    fixture *f = *state;
    send_at(f, T0, discharge("d-5", "\"voluntary\"", T0, "2026-12-03", ""));
    tick_at(f, T0 + 2 * DAY + HOUR);
    expect(f, TYPE(DISCHARGE_AT_RISK), 1, 0);
    send_at(f, T0 + 2 * DAY + 2 * HOUR,
            text("{\"eventId\":\"u-5\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"health\",\"toAgencies\":"
                 "[\"voluntary\"],\"occurredAt\":\"%s\",\"correlationId\":\"d-5\",\"update\":{\"discharge\":{"
                 "\"plannedDate\":\"2026-12-08\"}}}",
                 at(T0 + 2 * DAY + 2 * HOUR)));
    expect(f, TYPE(DISCHARGE_AT_RISK), 0, 1);
    tick_at(f, T0 + 7 * DAY + HOUR); /* the new date passes, still not accepted */
    expect(f, TYPE(DISCHARGE_AT_RISK), 1, 1);
    send_at(f, T0 + 7 * DAY + 2 * HOUR, response("a-13", "voluntary", "health", "d-5", T0 + 7 * DAY, "ACCEPTED", ""));
    expect(f, TYPE(DISCHARGE_AT_RISK), 0, 2);
}

/* ---- DECLINED_WITHOUT_ALTERNATIVE, BOUNCED */

static void test_declined_without_alternative_until_someone_accepts(void **state)
{
    fixture *f = *state;
    send_at(f, T0, referral("r-14", "health", "housing", T0, "ROUTINE"));
    uint32_t raised = send_at(
        f, T0 + HOUR,
        response("a-14", "housing", "health", "r-14", T0 + HOUR, "DECLINED", ",\"reason\":\"not in our area\""));
    assert_int_equal(raised, BIT(DECLINED_WITHOUT_ALTERNATIVE));
    cb_flag *d = the_flag(f, TYPE(DECLINED_WITHOUT_ALTERNATIVE));
    assert_non_null(
        strstr(d->explanation, "housing declined the referral of 1 Dec 2026 from health with no alternative"));
    assert_string_equal(d->from_agency, "health");
    cb_flag_free(&d);
    send_at(f, T0 + 2 * HOUR, referral("r-15", "health", "social-care", T0 + 2 * HOUR, "ROUTINE"));
    send_at(f, T0 + 3 * HOUR, response("a-15", "social-care", "health", "r-15", T0 + 3 * HOUR, "ACCEPTED", ""));
    expect(f, TYPE(DECLINED_WITHOUT_ALTERNATIVE), 0, 1);
    /* Once the person has an agency, a decline elsewhere leaves no one without. */
    send_at(f, T0 + 4 * HOUR, referral("r-16", "social-care", "voluntary", T0 + 4 * HOUR, "ROUTINE"));
    assert_int_equal(
        send_at(f, T0 + 5 * HOUR, response("a-16", "voluntary", "social-care", "r-16", T0 + 5 * HOUR, "DECLINED", "")),
        0);
    expect(f, TYPE(DECLINED_WITHOUT_ALTERNATIVE), 0, 1);
}

static void test_a_decline_with_an_alternative_is_quiet(void **state)
{
    fixture *f = *state;
    send_at(f, T0, referral("r-17", "health", "housing", T0, "ROUTINE"));
    assert_int_equal(send_at(f, T0 + HOUR,
                             response("a-17", "housing", "health", "r-17", T0 + HOUR, "DECLINED",
                                      ",\"alternative\":\"the tenancy support service\"")),
                     0);
    nothing_else(f, BIT(INTER_AGENCY_HANDOFF));
}

static void test_bounced_through_three_agencies_with_none_accepting(void **state)
{
    fixture *f = *state;
    send_at(f, T0, referral("r-18", "health", "social-care", T0, "ROUTINE"));
    send_at(f, T0 + HOUR,
            response("a-18", "social-care", "health", "r-18", T0 + HOUR, "REDIRECTED", ",\"redirectTo\":\"housing\""));
    expect(f, TYPE(BOUNCED), 0, 0);
    send_at(f, T0 + 2 * HOUR, referral("r-19", "health", "housing", T0 + 2 * HOUR, "ROUTINE"));
    uint32_t raised = send_at(f, T0 + 3 * HOUR,
                              response("a-19", "housing", "health", "r-19", T0 + 3 * HOUR, "DECLINED",
                                       ",\"alternative\":\"back to social care\""));
    assert_true(raised & BIT(BOUNCED));
    cb_flag *b = the_flag(f, TYPE(BOUNCED));
    assert_non_null(strstr(b->explanation, "passed on by 3 agencies within 14 days"));
    assert_int_equal(b->severity, CAREBRIDGE__V1__FLAG__SEVERITY__HIGH);
    cb_flag_free(&b);
    send_at(f, T0 + 4 * HOUR, referral("r-20", "health", "voluntary", T0 + 4 * HOUR, "ROUTINE"));
    expect(f, TYPE(BOUNCED), 1, 0); /* one gap, one flag */
    send_at(f, T0 + 5 * HOUR, response("a-20", "voluntary", "health", "r-20", T0 + 5 * HOUR, "ACCEPTED", ""));
    expect(f, TYPE(BOUNCED), 0, 1);
}

static void test_passed_back_to_the_agency_that_passed_them_on(void **state)
{
    fixture *f = *state;
    send_at(f, T0, referral("r-21", "health", "social-care", T0, "ROUTINE"));
    uint32_t raised = send_at(
        f, T0 + HOUR,
        response("a-21", "social-care", "health", "r-21", T0 + HOUR, "REDIRECTED", ",\"redirectTo\":\"health\""));
    assert_true(raised & BIT(BOUNCED));
    cb_flag *b = the_flag(f, TYPE(BOUNCED));
    if (!strstr(b->explanation, "social-care passes the person back to health"))
        fail_msg("%s", b->explanation);
    cb_flag_free(&b);
}

static void test_handed_on_after_an_accept_is_not_bounced(void **state)
{
    fixture *f = *state;
    send_at(f, T0, referral("r-22", "health", "social-care", T0, "ROUTINE"));
    send_at(f, T0 + HOUR, response("a-22", "social-care", "health", "r-22", T0 + HOUR, "ACCEPTED", ""));
    send_at(f, T0 + DAY, referral("r-23", "social-care", "housing", T0 + DAY, "ROUTINE"));
    send_at(f, T0 + 2 * DAY, referral("r-24", "housing", "health", T0 + 2 * DAY, "ROUTINE"));
    expect(f, TYPE(BOUNCED), 0, 0);
}

/* The broker started again: what the rules remember in memory is gone. */
static void restart(fixture *f)
{
    cb_commit_free(&f->commit);
    cb_error err = {0};
    f->commit = cb_commit_new(f->cfg, f->t.store, &err);
    assert_non_null(f->commit);
}

static void test_a_history_is_found_behind_many_events_that_changed_nothing(void **state)
{
    fixture *f = *state;
    send_at(f, T0, referral("r-40", "health", "social-care", T0, "ROUTINE"));
    /* Each passes the person on from health again within the hour: the
     * person's record stays as r-40 left it. */
    for (int i = 1; i <= 20; i++)
        send_at(f, T0 + (uint64_t)i * 60000,
                referral(text("r-40-%d", i), "health", "social-care", T0 + (uint64_t)i * 60000, "ROUTINE"));
    restart(f);
    uint32_t raised = send_at(
        f, T0 + 2 * HOUR,
        response("a-40", "social-care", "health", "r-40", T0 + 2 * HOUR, "REDIRECTED", ",\"redirectTo\":\"health\""));
    assert_true(raised & BIT(BOUNCED));
}

/* A store written before the records index: its records are indexed when
 * the rules first open it, so the journeys they began are still judged. */
static void test_records_stored_before_the_records_index_are_found(void **state)
{
    fixture *f = *state;
    cb_commit_free(&f->commit);
    cb_test_store old;
    assert_true(cb_test_store_open(&old, MAP_BYTES, 0.9));
    cb_txn *txn = cb_test_begin(old.store, true);
    Carebridge__V1__PersonRecord rec = CAREBRIDGE__V1__PERSON_RECORD__INIT;
    Carebridge__V1__PersonRecord__PassedOn on = CAREBRIDGE__V1__PERSON_RECORD__PASSED_ON__INIT, *ons[] = {&on};
    on.agency = "health";
    on.at_ms = (int64_t)T0;
    rec.passed_on = ons;
    rec.n_passed_on = 1;
    rec.person_hash = cb_store_hash(old.store, "nhs:" NHS, strlen("nhs:" NHS));
    uint8_t buf[256];
    size_t len = carebridge__v1__person_record__pack(&rec, buf);
    cb_key k;
    cb_key_make(&k, "Q", (uint64_t)3); /* as an old build left it: no index entry */
    cb_kv_append(txn, cb_flagbook_broker().people, k.b, k.len, buf, len);
    cb_error err = {0};
    assert_int_equal(cb_txn_commit(&txn, &err), CB_OK);
    /* The fixture's batch goes on, over the old store. */
    int rc = cb_test_store_close(&f->t);
    assert_int_equal(rc, 0);
    f->t = old;
    f->commit = cb_commit_new(f->cfg, f->t.store, &err);
    assert_non_null(f->commit);
    for (int i = 0; i < 4; i++) /* seqs 1-4, someone else's */
        send_at(f, T0,
                text("{\"eventId\":\"n-%d\",\"person\":{\"nhsNumber\":\"4010232137\"},\"fromAgency\":\"health\","
                     "\"toAgencies\":[\"housing\"],\"occurredAt\":\"%s\",\"referral\":{" COMPLETE_REFERRAL "}}",
                     i, at(T0), "ROUTINE"));
    uint32_t raised = send_at(f, T0 + HOUR, referral("r-41", "social-care", "health", T0 + HOUR, "ROUTINE"));
    assert_true(raised & BIT(BOUNCED));
}

/* A flag resolved in a store from before the closed keyspace is indexed
 * there when the rules first open it, so retention finds it too; an open
 * one from before open_count is counted then. */
static void test_flags_resolved_before_the_closed_index_are_found_by_retention(void **state)
{
    fixture *f = *state;
    cb_commit_free(&f->commit);
    cb_test_store old;
    assert_true(cb_test_store_open(&old, MAP_BYTES, 0.9));
    cb_txn *txn = cb_test_begin(old.store, true);
    cb_flagbook fb = cb_flagbook_broker();
    cb_flag fl = CAREBRIDGE__V1__FLAG__INIT;
    Google__Protobuf__Timestamp when = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    char *agencies[] = {"social-care", "health"};
    when.seconds = (int64_t)(T0 / 1000);
    fl.id = cb_flag_id(1, CB_FLAG_STORED);
    fl.type = TYPE(NOT_ACKNOWLEDGED);
    fl.status = CAREBRIDGE__V1__FLAG__STATUS__RESOLVED;
    fl.agencies = agencies;
    fl.n_agencies = 2;
    fl.raised_at = fl.resolved_at = &when;
    cb_flagbook_add(&fb, txn, &fl, 0);
    cb_key k;
    cb_key_make(&k, "QQ", T0, fl.id); /* as an old build left it: not in closed */
    assert_true(cb_kv_del(txn, fb.closed, k.b, k.len));
    /* And an open one, not counted. */
    cb_flag open = fl;
    open.id = cb_flag_id(2, CB_FLAG_STORED);
    open.type = TYPE(MISSING_INFORMATION);
    open.status = CAREBRIDGE__V1__FLAG__STATUS__OPEN;
    open.resolved_at = NULL;
    cb_flagbook_add(&fb, txn, &open, 0);
    for (int a = 0; a < 2; a++) {
        assert_true(cb_key_make(&k, "SB", agencies[a], TYPE(MISSING_INFORMATION)));
        assert_true(cb_kv_del(txn, fb.open_count, k.b, k.len));
    }
    cb_error err = {0};
    assert_int_equal(cb_txn_commit(&txn, &err), CB_OK);
    assert_int_equal(cb_test_store_close(&f->t), 0);
    f->t = old;
    f->commit = cb_commit_new(f->cfg, f->t.store, &err);
    assert_non_null(f->commit);
    expect(f, TYPE(NOT_ACKNOWLEDGED), 0, 1);
    assert_int_equal(assert_counts_match(f), 1); /* the open one, counted at open */
    f->cfg->retention.closed_flag_days = 1;
    tick_at(f, T0 + 2 * DAY);
    expect(f, TYPE(NOT_ACKNOWLEDGED), 0, 0);
}

/* ---- NO_PERSON_OUTCOMES, OUTCOMES_NOT_CARRIED */

static void test_a_service_led_referral_until_an_update_adds_outcomes(void **state)
{
    fixture *f = *state;
    const char *led =
        "{\"eventId\":\"r-25\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"health\","
        "\"toAgencies\":[\"social-care\"],\"occurredAt\":\"2026-12-01T09:00:00Z\",\"referral\":{"
        "\"reason\":\"care package\",\"urgency\":\"ROUTINE\",\"requestedService\":\"day centre\","
        "\"consent\":\"GIVEN\",\"contact\":{\"name\":\"ward 7\"},\"risks\":[{\"description\":\"none known\"}],"
        "\"communicationNeeds\":[\"none\"]}}";
    assert_true(send_at(f, T0, led) & BIT(NO_PERSON_OUTCOMES));
    cb_flag *n = the_flag(f, TYPE(NO_PERSON_OUTCOMES));
    assert_non_null(strstr(n->explanation, "asks for day centre"));
    assert_int_equal(n->severity, CAREBRIDGE__V1__FLAG__SEVERITY__LOW);
    cb_flag_free(&n);
    send_at(f, T0 + HOUR,
            "{\"eventId\":\"u-25\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"health\","
            "\"toAgencies\":[\"social-care\"],\"occurredAt\":\"2026-12-01T10:00:00Z\",\"correlationId\":"
            "\"r-25\",\"update\":{\"referral\":{\"outcomes\":[{\"statement\":\"see my friends\"}]}}}");
    expect(f, TYPE(NO_PERSON_OUTCOMES), 0, 1);
}

static const char *handover(const char *id, uint64_t when, const char *outcomes)
{
    return text("{\"eventId\":\"%s\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"social-care\","
                "\"toAgencies\":[\"voluntary\"],\"occurredAt\":\"%s\",\"handover\":{\"newLead\":\"voluntary\","
                "\"summary\":\"reablement ends\",\"outstandingActions\":[\"none\"],\"outcomesToSustain\":[%s]}}",
                id, at(when), outcomes);
}

static void test_outcomes_left_behind_by_a_handover(void **state)
{
    fixture *f = *state;
    const char *two = "{\"eventId\":\"r-26\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"health\","
                      "\"toAgencies\":[\"social-care\"],\"occurredAt\":\"2026-12-01T09:00:00Z\",\"referral\":{"
                      "\"reason\":\"r\",\"urgency\":\"ROUTINE\",\"consent\":\"GIVEN\",\"contact\":{\"name\":\"w\"},"
                      "\"risks\":[{\"description\":\"none known\"}],\"communicationNeeds\":[\"none\"],\"outcomes\":["
                      "{\"statement\":\"Walk to the bus stop \"},{\"statement\":\"see friends\",\"ref\":\"o-2\"},"
                      "{\"statement\":\"be free of pain\"}]}}";
    send_at(f, T0, two);
    /* Carried: one by its words (case and space aside), one by its ref. */
    uint32_t raised = send_at(f, T0 + DAY,
                              handover("h-1", T0 + DAY,
                                       "{\"statement\":\"walk to the bus stop\"},"
                                       "{\"statement\":\"seeing my friends\",\"ref\":\"o-2\"}"));
    assert_true(raised & BIT(OUTCOMES_NOT_CARRIED));
    cb_flag *o = the_flag(f, TYPE(OUTCOMES_NOT_CARRIED));
    assert_int_equal(o->n_fields, 1);
    assert_string_equal(o->fields[0], "be free of pain");
    cb_flag_free(&o);
    send_at(f, T0 + DAY + HOUR,
            "{\"eventId\":\"u-26\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"social-care\","
            "\"toAgencies\":[\"voluntary\"],\"occurredAt\":\"2026-12-02T10:00:00Z\",\"correlationId\":\"h-1\","
            "\"update\":{\"handover\":{\"outcomesToSustain\":[{\"statement\":\"be free of pain\",\"status\":"
            "\"ACHIEVED\"}]}}}");
    expect(f, TYPE(OUTCOMES_NOT_CARRIED), 0, 1);
    /* Achieved, it need not be carried again. */
    assert_false(send_at(f, T0 + 2 * DAY,
                         handover("h-2", T0 + 2 * DAY, "{\"statement\":\"walk to the bus stop\"},{\"ref\":\"o-2\"}")) &
                 BIT(OUTCOMES_NOT_CARRIED));
}

static void test_a_closure_with_nothing_ever_recorded_for_the_person(void **state)
{
    fixture *f = *state;
    const char *closure = "{\"eventId\":\"c-1\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":\"social-care\","
                          "\"toAgencies\":[\"health\"],\"occurredAt\":\"2026-12-01T09:00:00Z\",\"closure\":{\"reason\":"
                          "\"no longer needed\"}}";
    assert_true(send_at(f, T0, closure) & BIT(NO_PERSON_OUTCOMES));
    send_at(f, T0 + DAY, referral("r-27", "health", "social-care", T0 + DAY, "ROUTINE")); /* has an outcome */
    expect(f, TYPE(NO_PERSON_OUTCOMES), 1, 0); /* only an update resolves it */
    send_at(f, T0 + DAY + HOUR,
            "{\"eventId\":\"u-27\",\"person\":{\"nhsNumber\":\"" NHS "\"},\"fromAgency\":"
            "\"health\",\"toAgencies\":[\"social-care\"],\"occurredAt\":\"2026-12-02T10:00:00Z\","
            "\"correlationId\":\"r-27\",\"update\":{\"referral\":{\"outcomes\":[{\"statement\":"
            "\"get back to the allotment\"}]}}}");
    expect(f, TYPE(NO_PERSON_OUTCOMES), 0, 1);
}

static void test_rules_off_raise_nothing(void **state)
{
    fixture *f = *state;
    cb_commit_free(&f->commit);
    f->cfg->flags.enabled = false;
    cb_error err = {0};
    f->commit = cb_commit_new(f->cfg, f->t.store, &err);
    assert_non_null(f->commit);
    assert_int_equal(send_at(f, T0, referral("r-28", "health", "social-care", T0, "ROUTINE")), 0);
    tick_at(f, T0 + 10 * DAY);
    nothing_else(f, 0);
}

int main(void)
{
    cb_log_init(CB_LOG_WARN);
    const struct CMUnitTest tests[] = {
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
        T(test_complete_timely_referral_raises_only_its_handoff),
        T(test_an_answer_stored_before_its_event_counts_when_the_event_arrives),
        T(test_missing_information_names_the_fields_and_resolves_as_updates_supply_them),
        T(test_missing_information_depends_on_who_receives_it),
        cmocka_unit_test(test_check_digits_of_published_and_computed_numbers),
        T(test_unlinkable_identity_is_flagged_once_and_a_valid_one_is_quiet),
        T(test_not_acknowledged_after_four_hours_resolves_with_how_late),
        T(test_a_flag_removed_by_retention_leaves_its_number_taken),
        T(test_open_flags_are_counted_by_agency_and_type),
        T(test_urgent_deadlines_are_shorter_and_severity_higher),
        T(test_a_late_answer_before_any_tick_is_on_record_all_the_same),
        T(test_an_event_that_arrives_late_is_judged_by_when_it_happened),
        T(test_discharge_at_risk_a_day_before_and_resolved_by_confirming),
        T(test_discharge_not_accepted_by_the_planned_date_and_a_new_date),
        T(test_declined_without_alternative_until_someone_accepts),
        T(test_a_decline_with_an_alternative_is_quiet),
        T(test_bounced_through_three_agencies_with_none_accepting),
        T(test_passed_back_to_the_agency_that_passed_them_on),
        T(test_handed_on_after_an_accept_is_not_bounced),
        T(test_a_history_is_found_behind_many_events_that_changed_nothing),
        T(test_records_stored_before_the_records_index_are_found),
        T(test_flags_resolved_before_the_closed_index_are_found_by_retention),
        T(test_a_service_led_referral_until_an_update_adds_outcomes),
        T(test_outcomes_left_behind_by_a_handover),
        T(test_a_closure_with_nothing_ever_recorded_for_the_person),
        T(test_rules_off_raise_nothing),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
