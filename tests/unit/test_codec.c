/* The codec (protos/cb_codec.c): the one funnel that packs and unpacks
 * protobuf, its wire peek and its hand-built Deliver frame; and the JSON-named
 * paths of cb_check_utf8 (protos/cb_check.c). Buffers handed to the readers
 * are malloc'd at exactly their length, so ASan catches any read past them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "carebridge.pb-c.h"
#include "cb_arena.h"
#include "cb_check.h"
#include "cb_fields.h"
#include "cb_codec.h"

typedef Carebridge__V1__Envelope Envelope;
typedef Carebridge__V1__Frame Frame;
typedef Carebridge__V1__Referral Referral;

/* ---------------------------------------------------------------- helpers */

/* A full referral envelope, built on the stack: every pointer points into s,
 * so s must not move once sample_init has filled it. */
typedef struct {
    Envelope env;
    Carebridge__V1__Person person;
    Carebridge__V1__LocalId lid;
    Carebridge__V1__LocalId *lids[1];
    Google__Protobuf__Timestamp at;
    Referral referral;
    Carebridge__V1__Contact contact;
    Carebridge__V1__Risk risk;
    Carebridge__V1__Risk *risks[1];
    char *needs[1];
    char *to[2];
} sample;

static void sample_init(sample *s, const char *event_id)
{
    *s = (sample){
        .env = CAREBRIDGE__V1__ENVELOPE__INIT,
        .person = CAREBRIDGE__V1__PERSON__INIT,
        .lid = CAREBRIDGE__V1__LOCAL_ID__INIT,
        .at = GOOGLE__PROTOBUF__TIMESTAMP__INIT,
        .referral = CAREBRIDGE__V1__REFERRAL__INIT,
        .contact = CAREBRIDGE__V1__CONTACT__INIT,
        .risk = CAREBRIDGE__V1__RISK__INIT,
    };
    s->lid.system = "pas:general-hospital";
    s->lid.value = "H123456";
    s->lids[0] = &s->lid;
    s->person.nhs_number = "9434765919";
    s->person.name = "Margaret Example";
    s->person.birth_date = "1941-03-02";
    s->person.n_local_ids = 1;
    s->person.local_ids = s->lids;
    s->at.seconds = 1767225600;
    s->at.nanos = 500;
    s->contact.name = "Sam Ward";
    s->contact.phone = "0100 000 0000";
    s->risk.description = "falls on stairs";
    s->risk.level = CAREBRIDGE__V1__RISK__LEVEL__HIGH;
    s->risks[0] = &s->risk;
    s->needs[0] = "large print";
    s->referral.reason = "home care after discharge";
    s->referral.urgency = CAREBRIDGE__V1__REFERRAL__URGENCY__URGENT;
    s->referral.requested_service = "reablement";
    s->referral.consent = CAREBRIDGE__V1__REFERRAL__CONSENT__NOT_ASKED;
    s->referral.contact = &s->contact;
    s->referral.n_risks = 1;
    s->referral.risks = s->risks;
    s->referral.n_communication_needs = 1;
    s->referral.communication_needs = s->needs;
    s->referral.what_matters = "getting back to the allotment";
    s->to[0] = "social-care";
    s->to[1] = "housing";
    s->env.event_id = (char *)event_id;
    s->env.person = &s->person;
    s->env.case_ref = "CASE-1";
    s->env.from_agency = "health";
    s->env.n_to_agencies = 2;
    s->env.to_agencies = s->to;
    s->env.occurred_at = &s->at;
    s->env.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL;
    s->env.referral = &s->referral;
}

/* m packed into a new buffer of exactly its length (at least 1 byte). */
static uint8_t *pack_exact(const ProtobufCMessage *m, size_t *len)
{
    uint8_t *out = NULL;
    *len = cb_pack(m, &out);
    assert_non_null(out);
    assert_int_equal(*len, protobuf_c_message_get_packed_size(m));
    return out;
}

/* A Frame{ref, publish{event}} packed into a buffer of exactly its length. */
static uint8_t *pack_publish(uint64_t ref, Envelope *event, size_t *len)
{
    Carebridge__V1__Publish publish = CAREBRIDGE__V1__PUBLISH__INIT;
    Frame frame = CAREBRIDGE__V1__FRAME__INIT;
    publish.event = event;
    frame.ref = ref;
    frame.kind_case = CAREBRIDGE__V1__FRAME__KIND_PUBLISH;
    frame.publish = &publish;
    return pack_exact(&frame.base, len);
}

/* Copy of len bytes of src in a buffer of exactly len bytes (1 if len is 0,
 * never read then), so that a read past len trips ASan. */
static uint8_t *exact_copy(const uint8_t *src, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    assert_non_null(b);
    if (len)
        memcpy(b, src, len);
    return b;
}

/* True when a and b pack to the same bytes. */
static bool same_wire(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t la, lb;
    uint8_t *pa = pack_exact(a, &la), *pb = pack_exact(b, &lb);
    bool same = la == lb && memcmp(pa, pb, la) == 0;
    free(pa);
    free(pb);
    return same;
}

/* A heap copy of m (as cb_merge needs: it frees *dst), via its wire form. */
static ProtobufCMessage *heap_copy(const ProtobufCMessage *m)
{
    size_t len;
    uint8_t *b = pack_exact(m, &len);
    ProtobufCMessage *copy = protobuf_c_message_unpack(m->descriptor, NULL, len, b);
    free(b);
    assert_non_null(copy);
    return copy;
}

/* ------------------------------------------------------- cb_frame_decode */

static void test_decode_too_large_is_refused_without_reading(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-large");
    size_t len;
    uint8_t *b = pack_publish(1, &s.env, &len);
    cb_error err = {0};
    /* Claim one byte more than the buffer holds: decoding it would read past
     * the end (ASan); the size check must come first. */
    cb_frame *f = cb_frame_decode(b, len + 1, len, &err);
    assert_null(f);
    assert_int_equal(err.code, CB_TOO_LARGE);
    assert_non_null(strstr(err.reason, "limit"));
    free(b);

    /* A length no buffer could hold, and no buffer at all. */
    err = (cb_error){0};
    assert_null(cb_frame_decode(NULL, SIZE_MAX, 1024, &err));
    assert_int_equal(err.code, CB_TOO_LARGE);
}

static void test_decode_at_the_limit_decodes(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-limit");
    size_t len;
    uint8_t *b = pack_publish(2, &s.env, &len);
    cb_error err = {0};
    cb_frame *f = cb_frame_decode(b, len, len, &err);
    assert_non_null(f);
    assert_int_equal(err.code, CB_OK);
    cb_frame_free(&f);
    assert_null(f);
    cb_frame_free(&f); /* a no-op on NULL */
    free(b);
}

static void test_decode_garbage_is_decode_error(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11}, /* a varint that never ends */
        {"\x0f", 1},                                          /* wire type 7 */
        {"\x62\x7f\x0a", 3},                                  /* publish claims 127 bytes */
        {"\x62\x02\x0a\x05", 4},                              /* the event overruns publish */
        {"\x0b", 1},                                          /* a group start, never closed */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *b = exact_copy((const uint8_t *)cases[i].bytes, cases[i].len);
        cb_error err = {0};
        cb_frame *f = cb_frame_decode(b, cases[i].len, 1024, &err);
        if (f)
            fail_msg("case %zu decoded", i);
        assert_int_equal(err.code, CB_DECODE_ERROR);
        free(b);
    }
}

static void test_decode_round_trips_a_packed_frame(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-round-trip");
    size_t len;
    uint8_t *b = pack_publish(0x0123456789ULL, &s.env, &len);
    cb_error err = {0};
    cb_frame *f = cb_frame_decode(b, len, 1 << 20, &err);
    assert_non_null(f);
    assert_int_equal(f->ref, 0x0123456789ULL);
    assert_int_equal(f->kind_case, CAREBRIDGE__V1__FRAME__KIND_PUBLISH);
    assert_non_null(f->publish->event);
    const Envelope *e = f->publish->event;
    assert_string_equal(e->event_id, "ev-round-trip");
    assert_string_equal(e->person->nhs_number, "9434765919");
    assert_string_equal(e->person->local_ids[0]->value, "H123456");
    assert_int_equal(e->n_to_agencies, 2);
    assert_string_equal(e->to_agencies[1], "housing");
    assert_int_equal(e->occurred_at->seconds, 1767225600);
    assert_int_equal(e->body_case, CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL);
    assert_int_equal(e->referral->consent, CAREBRIDGE__V1__REFERRAL__CONSENT__NOT_ASKED);
    assert_string_equal(e->referral->risks[0]->description, "falls on stairs");
    assert_true(same_wire(&e->base, &s.env.base));
    /* and the whole frame packs back to the bytes it came from */
    size_t again_len;
    uint8_t *again = pack_exact(&f->base, &again_len);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, b, len);
    free(again);
    cb_frame_free(&f);
    free(b);
}

static void test_envelope_decode_reads_stored_bytes(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-stored");
    size_t len;
    uint8_t *b = pack_exact(&s.env.base, &len);
    cb_envelope *e = cb_envelope_decode(b, len);
    assert_non_null(e);
    assert_string_equal(e->event_id, "ev-stored");
    assert_true(same_wire(&e->base, &s.env.base));
    cb_envelope_free(&e);
    assert_null(e);
    free(b);
}

/* ---------------------------------------------------- cb_pack, cb_pack_into */

static void test_pack_into_uses_the_buffer_when_it_fits(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-stack");
    size_t want = protobuf_c_message_get_packed_size(&s.env.base);
    uint8_t buf[1024];
    assert_true(want <= sizeof buf);
    uint8_t *out = NULL;
    size_t len = cb_pack_into(&s.env.base, buf, sizeof buf, &out);
    assert_ptr_equal(out, buf);
    assert_int_equal(len, want);

    /* exactly the packed size still fits */
    uint8_t *exact = malloc(want);
    assert_non_null(exact);
    out = NULL;
    assert_int_equal(cb_pack_into(&s.env.base, exact, want, &out), want);
    assert_ptr_equal(out, exact);
    assert_memory_equal(exact, buf, want);
    free(exact);
}

static void test_pack_into_allocates_when_too_small(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-heap");
    size_t want = protobuf_c_message_get_packed_size(&s.env.base);
    uint8_t *small = malloc(want - 1); /* ASan: a write into it would overflow */
    assert_non_null(small);
    uint8_t *out = NULL;
    size_t len = cb_pack_into(&s.env.base, small, want - 1, &out);
    assert_int_equal(len, want);
    assert_non_null(out);
    assert_ptr_not_equal(out, small);
    cb_envelope *e = cb_envelope_decode(out, len);
    assert_non_null(e);
    assert_string_equal(e->event_id, "ev-heap");
    cb_envelope_free(&e);
    free(out);
    free(small);

    /* no buffer at all: cb_pack allocates */
    out = NULL;
    uint8_t stack[8];
    assert_int_equal(cb_pack_into(&s.env.base, NULL, sizeof stack, &out), want);
    assert_non_null(out);
    assert_ptr_not_equal(out, stack);
    free(out);
}

static void test_pack_empty_message_gives_zero_and_a_buffer(void **state)
{
    (void)state;
    Carebridge__V1__Heartbeat hb = CAREBRIDGE__V1__HEARTBEAT__INIT;
    uint8_t *out = NULL;
    assert_int_equal(cb_pack(&hb.base, &out), 0);
    assert_non_null(out);
    free(out);
}

/* --------------------------------------------------------- cb_peek_publish */

static void test_peek_reads_ref_and_event_id(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-peek-1");
    size_t len;
    uint8_t *b = pack_publish(0xfedcba9876543210ULL, &s.env, &len);
    uint64_t ref = 1;
    char id[64];
    cb_peek_publish(b, len, &ref, id, sizeof id);
    assert_int_equal(ref, 0xfedcba9876543210ULL);
    assert_string_equal(id, "ev-peek-1");
    free(b);
}

static void test_peek_absent_fields_give_zero_and_empty(void **state)
{
    (void)state;
    uint64_t ref;
    char id[64];

    /* a publish with no ref */
    sample s;
    sample_init(&s, "ev-no-ref");
    size_t len;
    uint8_t *b = pack_publish(0, &s.env, &len);
    ref = 99;
    cb_peek_publish(b, len, &ref, id, sizeof id);
    assert_int_equal(ref, 0);
    assert_string_equal(id, "ev-no-ref");
    free(b);

    /* a publish whose event has no id */
    s.env.event_id = (char *)protobuf_c_empty_string;
    b = pack_publish(17, &s.env, &len);
    strcpy(id, "stale");
    cb_peek_publish(b, len, &ref, id, sizeof id);
    assert_int_equal(ref, 17);
    assert_string_equal(id, "");
    free(b);

    /* a publish with no event */
    b = pack_publish(18, NULL, &len);
    strcpy(id, "stale");
    cb_peek_publish(b, len, &ref, id, sizeof id);
    assert_int_equal(ref, 18);
    assert_string_equal(id, "");
    free(b);

    /* not a publish at all */
    Carebridge__V1__Heartbeat hb = CAREBRIDGE__V1__HEARTBEAT__INIT;
    Frame frame = CAREBRIDGE__V1__FRAME__INIT;
    frame.ref = 5;
    frame.kind_case = CAREBRIDGE__V1__FRAME__KIND_HEARTBEAT;
    frame.heartbeat = &hb;
    b = pack_exact(&frame.base, &len);
    strcpy(id, "stale");
    cb_peek_publish(b, len, &ref, id, sizeof id);
    assert_int_equal(ref, 5);
    assert_string_equal(id, "");
    free(b);

    /* nothing at all */
    ref = 3;
    strcpy(id, "stale");
    cb_peek_publish((const uint8_t *)"", 0, &ref, id, sizeof id);
    assert_int_equal(ref, 0);
    assert_string_equal(id, "");
}

static void test_peek_id_that_does_not_fit_is_left_empty(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-0123456789"); /* 13 bytes */
    size_t len;
    uint8_t *b = pack_publish(7, &s.env, &len);
    uint64_t ref;
    char id[14];

    cb_peek_publish(b, len, &ref, id, 14); /* room for 13 and the NUL */
    assert_string_equal(id, "ev-0123456789");

    memset(id, 'x', sizeof id);
    cb_peek_publish(b, len, &ref, id, 13); /* one short: never truncated */
    assert_string_equal(id, "");
    assert_int_equal(ref, 7);

    memset(id, 'x', sizeof id);
    ref = 0;
    cb_peek_publish(b, len, &ref, id, 0); /* no room: id untouched, ref still read */
    assert_int_equal(ref, 7);
    assert_int_equal(id[0], 'x');
    free(b);
}

static void test_peek_every_prefix_stays_in_bounds(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-prefix");
    size_t len;
    const uint64_t want_ref = 300; /* a two-byte varint after its key */
    uint8_t *full = pack_publish(want_ref, &s.env, &len);
    const size_t ref_end = 3;
    for (size_t n = 0; n < len; n++) {
        uint8_t *b = exact_copy(full, n);
        uint64_t ref = 1;
        char id[64] = "stale";
        cb_peek_publish(b, n, &ref, id, sizeof id);
        if (strcmp(id, "") != 0)
            fail_msg("prefix %zu of %zu gave id '%s'", n, len, id);
        if (ref != (n >= ref_end ? want_ref : 0))
            fail_msg("prefix %zu of %zu gave ref %llu", n, len, (unsigned long long)ref);
        free(b);
    }
    free(full);
}

static void test_peek_garbage_stays_in_bounds(void **state)
{
    (void)state;
    /* Crafted: lengths past the end, fixed-width fields cut short, groups,
     * and an event id whose length overruns its event but not the buffer
     * (reading it would be a logic error ASan cannot see). */
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 12},
        {"\x62\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10},
        {"\x62\x80", 2},
        {"\x09\x01\x02\x03", 4},     /* fixed64 cut short */
        {"\x0d\x01", 2},             /* fixed32 cut short */
        {"\x62\x03\x0a\x01\x0a", 5}, /* event holds only a key */
        {"\x62\x04\x0a\x02\x0a\x09"
         "abcdefghijk",
         17},                            /* id overruns its event */
        {"\x62\x02\x09\x01", 4},         /* publish holds a cut fixed64 */
        {"\x0b\x0c", 2},                 /* groups */
        {"\x62\x04\x0a\x02\x0a\x00", 6}, /* an empty id */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *b = exact_copy((const uint8_t *)cases[i].bytes, cases[i].len);
        uint64_t ref = 1;
        char id[64] = "stale";
        cb_peek_publish(b, cases[i].len, &ref, id, sizeof id);
        if (strcmp(id, "") != 0)
            fail_msg("case %zu gave id '%s'", i, id);
        free(b);
    }

    /* Pseudo-random bytes of every length up to 64, from a fixed seed. */
    uint32_t x = 2463534242u;
    for (size_t n = 0; n <= 64; n++) {
        for (int round = 0; round < 64; round++) {
            uint8_t *b = malloc(n ? n : 1);
            assert_non_null(b);
            for (size_t k = 0; k < n; k++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                b[k] = (uint8_t)x;
            }
            if (n > 0 && round % 2)
                b[0] = 0x62; /* start like a publish */
            uint64_t ref;
            char id[16];
            cb_peek_publish(b, n, &ref, id, sizeof id);
            assert_true(strlen(id) < sizeof id);
            free(b);
        }
    }
}

/* --------------------------------------------------------- cb_pack_deliver */

/* cb_pack_deliver's bytes decode as Frame{deliver{seq, attempt, event}} with
 * the event equal to the input, and equal what protobuf-c packs for it. */
static void check_deliver(uint64_t seq, uint32_t attempt, const Envelope *env)
{
    size_t ev_len;
    uint8_t *ev = pack_exact(&env->base, &ev_len);
    uint8_t *out = NULL;
    size_t len = cb_pack_deliver(seq, attempt, ev, ev_len, &out);
    assert_true(len > ev_len);
    assert_non_null(out);
    uint8_t *wire = exact_copy(out, len);
    free(out);

    cb_error err = {0};
    cb_frame *f = cb_frame_decode(wire, len, SIZE_MAX, &err);
    if (!f)
        fail_msg("seq %llu attempt %u: %s", (unsigned long long)seq, attempt, err.reason);
    assert_int_equal(f->kind_case, CAREBRIDGE__V1__FRAME__KIND_DELIVER);
    assert_int_equal(f->ref, 0);
    assert_int_equal(f->deliver->seq, seq);
    assert_int_equal(f->deliver->attempt, attempt);
    assert_non_null(f->deliver->event);
    assert_string_equal(f->deliver->event->event_id, env->event_id);
    size_t back_len;
    uint8_t *back = pack_exact(&f->deliver->event->base, &back_len);
    assert_int_equal(back_len, ev_len);
    assert_memory_equal(back, ev, ev_len);
    free(back);

    Carebridge__V1__Deliver d = CAREBRIDGE__V1__DELIVER__INIT;
    Frame frame = CAREBRIDGE__V1__FRAME__INIT;
    d.seq = seq;
    d.attempt = attempt;
    d.event = (Envelope *)env;
    frame.kind_case = CAREBRIDGE__V1__FRAME__KIND_DELIVER;
    frame.deliver = &d;
    size_t ref_len;
    uint8_t *ref = pack_exact(&frame.base, &ref_len);
    assert_int_equal(ref_len, len);
    assert_memory_equal(ref, wire, len);
    free(ref);

    cb_frame_free(&f);
    free(wire);
    free(ev);
}

static void test_deliver_first_attempt_zero(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-deliver-0");
    check_deliver(1, 0, &s.env);
}

static void test_deliver_with_attempts(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-deliver-n");
    check_deliver(1, 1, &s.env);
    check_deliver(42, 2, &s.env);
    check_deliver(127, 128, &s.env);
    check_deliver(128, UINT32_MAX, &s.env);
}

static void test_deliver_big_seqs(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-deliver-big");
    check_deliver(1ULL << 32, 3, &s.env);
    check_deliver(1ULL << 63, 1, &s.env);
    check_deliver(UINT64_MAX, UINT32_MAX, &s.env);
}

static void test_deliver_big_event(void **state)
{
    (void)state;
    /* an event over 16 KiB: its length varint takes three bytes */
    sample s;
    sample_init(&s, "ev-deliver-long");
    char *what = malloc(20000);
    assert_non_null(what);
    memset(what, 'w', 19999);
    what[19999] = '\0';
    s.referral.what_matters = what;
    check_deliver(300, 5, &s.env);
    free(what);
}

static void test_deliver_empty_event(void **state)
{
    (void)state;
    Envelope empty = CAREBRIDGE__V1__ENVELOPE__INIT;
    check_deliver(9, 1, &empty);
}

/* ---------------------------------------------------------------- cb_merge */

static Referral *merged_referral(const Referral *patch)
{
    sample s;
    sample_init(&s, "ev-merge");
    ProtobufCMessage *dst = heap_copy(&s.referral.base);
    assert_true(cb_merge(&dst, &patch->base));
    assert_ptr_equal(dst->descriptor, &carebridge__v1__referral__descriptor);
    return (Referral *)dst;
}

static void test_merge_consent_patch_keeps_the_rest(void **state)
{
    (void)state;
    Referral patch = CAREBRIDGE__V1__REFERRAL__INIT;
    patch.consent = CAREBRIDGE__V1__REFERRAL__CONSENT__GIVEN;
    Referral *r = merged_referral(&patch);
    assert_int_equal(r->consent, CAREBRIDGE__V1__REFERRAL__CONSENT__GIVEN);
    /* everything the patch leaves unset is the original's */
    sample s;
    sample_init(&s, "ev-merge");
    s.referral.consent = CAREBRIDGE__V1__REFERRAL__CONSENT__GIVEN;
    assert_true(same_wire(&r->base, &s.referral.base));
    assert_string_equal(r->reason, "home care after discharge");
    assert_int_equal(r->urgency, CAREBRIDGE__V1__REFERRAL__URGENCY__URGENT);
    assert_string_equal(r->contact->name, "Sam Ward");
    assert_int_equal(r->n_risks, 1);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void test_merge_set_scalars_replace(void **state)
{
    (void)state;
    Referral patch = CAREBRIDGE__V1__REFERRAL__INIT;
    patch.reason = "reablement declined; home care instead";
    patch.urgency = CAREBRIDGE__V1__REFERRAL__URGENCY__SOON;
    Referral *r = merged_referral(&patch);
    assert_string_equal(r->reason, "reablement declined; home care instead");
    assert_int_equal(r->urgency, CAREBRIDGE__V1__REFERRAL__URGENCY__SOON);
    assert_string_equal(r->requested_service, "reablement");
    assert_int_equal(r->consent, CAREBRIDGE__V1__REFERRAL__CONSENT__NOT_ASKED);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void test_merge_repeated_fields_append(void **state)
{
    (void)state;
    Carebridge__V1__Risk risk = CAREBRIDGE__V1__RISK__INIT;
    Carebridge__V1__Risk *risks[] = {&risk};
    char *needs[] = {"BSL interpreter", "easy read"};
    Referral patch = CAREBRIDGE__V1__REFERRAL__INIT;
    risk.description = "self-neglect";
    risk.level = CAREBRIDGE__V1__RISK__LEVEL__MEDIUM;
    patch.n_risks = 1;
    patch.risks = risks;
    patch.n_communication_needs = 2;
    patch.communication_needs = needs;
    Referral *r = merged_referral(&patch);
    assert_int_equal(r->n_risks, 2);
    assert_string_equal(r->risks[0]->description, "falls on stairs");
    assert_int_equal(r->risks[0]->level, CAREBRIDGE__V1__RISK__LEVEL__HIGH);
    assert_string_equal(r->risks[1]->description, "self-neglect");
    assert_int_equal(r->risks[1]->level, CAREBRIDGE__V1__RISK__LEVEL__MEDIUM);
    assert_int_equal(r->n_communication_needs, 3);
    assert_string_equal(r->communication_needs[0], "large print");
    assert_string_equal(r->communication_needs[1], "BSL interpreter");
    assert_string_equal(r->communication_needs[2], "easy read");
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void test_merge_sub_messages_merge(void **state)
{
    (void)state;
    Carebridge__V1__Contact contact = CAREBRIDGE__V1__CONTACT__INIT;
    Carebridge__V1__Contact carer = CAREBRIDGE__V1__CONTACT__INIT;
    Referral patch = CAREBRIDGE__V1__REFERRAL__INIT;
    contact.email = "sam.ward@example.org";
    contact.phone = "0100 111 1111";
    carer.name = "Jo Example";
    patch.contact = &contact;
    patch.carer = &carer; /* absent from the original: taken whole */
    Referral *r = merged_referral(&patch);
    assert_non_null(r->contact);
    assert_string_equal(r->contact->name, "Sam Ward");              /* kept */
    assert_string_equal(r->contact->phone, "0100 111 1111");        /* replaced */
    assert_string_equal(r->contact->email, "sam.ward@example.org"); /* added */
    assert_non_null(r->carer);
    assert_string_equal(r->carer->name, "Jo Example");
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void test_merge_empty_patch_changes_nothing(void **state)
{
    (void)state;
    Referral patch = CAREBRIDGE__V1__REFERRAL__INIT;
    Referral *r = merged_referral(&patch);
    sample s;
    sample_init(&s, "ev-merge");
    assert_true(same_wire(&r->base, &s.referral.base));
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* The documented exception: protobuf-c's parser (parse_oneof_member) frees
 * the first of two same oneof members and keeps the second, so an envelope
 * merged into an envelope ends with the patch as its body. The journey merges
 * body into body (query.c apply_update), which the tests above cover. */
static void test_merge_replaces_a_oneof_member_set_on_both_sides(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-orig");
    ProtobufCMessage *dst = heap_copy(&s.env.base);
    Referral patch = CAREBRIDGE__V1__REFERRAL__INIT;
    Envelope penv = CAREBRIDGE__V1__ENVELOPE__INIT;
    patch.consent = CAREBRIDGE__V1__REFERRAL__CONSENT__GIVEN;
    penv.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL;
    penv.referral = &patch;
    assert_true(cb_merge(&dst, &penv.base));
    Envelope *e = (Envelope *)dst;
    /* read everything before asserting, so a failure leaks nothing */
    bool kept_envelope = strcmp(e->event_id, "ev-orig") == 0 && e->n_to_agencies == 2;
    bool is_referral = e->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL;
    bool patched = is_referral && e->referral->consent == CAREBRIDGE__V1__REFERRAL__CONSENT__GIVEN;
    bool kept_reason = is_referral && strcmp(e->referral->reason, "home care after discharge") == 0;
    bool kept_risks = is_referral && e->referral->n_risks == 1;
    protobuf_c_message_free_unpacked(dst, NULL);
    assert_true(kept_envelope);
    assert_true(patched);
    assert_false(kept_reason);
    assert_false(kept_risks);
}

/* ------------------------------------------------------------ cb_body_name */

static void test_body_name_for_every_body(void **state)
{
    (void)state;
    Referral referral = CAREBRIDGE__V1__REFERRAL__INIT;
    Carebridge__V1__Discharge discharge = CAREBRIDGE__V1__DISCHARGE__INIT;
    Carebridge__V1__Handover handover = CAREBRIDGE__V1__HANDOVER__INIT;
    Carebridge__V1__Response response = CAREBRIDGE__V1__RESPONSE__INIT;
    Carebridge__V1__Update update = CAREBRIDGE__V1__UPDATE__INIT;
    Carebridge__V1__Closure closure = CAREBRIDGE__V1__CLOSURE__INIT;
    Envelope e = CAREBRIDGE__V1__ENVELOPE__INIT;
    assert_string_equal(cb_body_name(&e), "none");
    e.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL, e.referral = &referral;
    assert_string_equal(cb_body_name(&e), "referral");
    e.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE, e.discharge = &discharge;
    assert_string_equal(cb_body_name(&e), "discharge");
    e.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_HANDOVER, e.handover = &handover;
    assert_string_equal(cb_body_name(&e), "handover");
    e.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE, e.response = &response;
    assert_string_equal(cb_body_name(&e), "response");
    e.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_UPDATE, e.update = &update;
    assert_string_equal(cb_body_name(&e), "update");
    e.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_CLOSURE, e.closure = &closure;
    assert_string_equal(cb_body_name(&e), "closure");
}

static void test_body_name_of_a_decoded_envelope(void **state)
{
    (void)state;
    /* an empty body still decodes as its case */
    Carebridge__V1__Closure closure = CAREBRIDGE__V1__CLOSURE__INIT;
    Envelope e = CAREBRIDGE__V1__ENVELOPE__INIT;
    e.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_CLOSURE, e.closure = &closure;
    size_t len;
    uint8_t *b = pack_exact(&e.base, &len);
    cb_envelope *d = cb_envelope_decode(b, len);
    assert_non_null(d);
    assert_string_equal(cb_body_name(d), "closure");
    cb_envelope_free(&d);
    free(b);
}

/* -------------------------------------------------- cb_check_utf8 JSON paths */

static void test_check_utf8_path_uses_json_names(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-utf8");
    char path[128];
    assert_true(cb_check_utf8(&s.env.base, path, sizeof path));

    s.lid.value = "H12\xc3\x28";
    assert_false(cb_check_utf8(&s.env.base, path, sizeof path));
    assert_string_equal(path, "person.localIds[0].value");
    s.lid.value = "H123456";

    s.to[1] = "hous\xff";
    assert_false(cb_check_utf8(&s.env.base, path, sizeof path));
    assert_string_equal(path, "toAgencies[1]");
    s.to[1] = "housing";

    s.needs[0] = "\xed\xa0\x80"; /* a surrogate */
    assert_false(cb_check_utf8(&s.env.base, path, sizeof path));
    assert_string_equal(path, "referral.communicationNeeds[0]");
    s.needs[0] = "large print";

    s.referral.requested_service = "\xc0\xaf"; /* overlong */
    assert_false(cb_check_utf8(&s.env.base, path, sizeof path));
    assert_string_equal(path, "referral.requestedService");
}

static void test_check_utf8_path_truncates_to_cap(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-utf8-cap");
    s.lid.value = "\x80";
    char path[10];
    memset(path, 'x', sizeof path);
    assert_false(cb_check_utf8(&s.env.base, path, sizeof path));
    assert_true(memchr(path, '\0', sizeof path) != NULL);
    assert_int_equal(strncmp(path, "person.localIds[0].value", strlen(path)), 0);
    assert_false(cb_check_utf8(&s.env.base, NULL, 0));
}

/* -------------------------------------------------- cb_fields: presence and the visit */

typedef struct {
    char paths[64][64];
    size_t n;
    const char *stop_at; /* a path to stop at, or NULL */
} seen_paths;

static bool record_path(void *arg, const ProtobufCFieldDescriptor *fd, const void *value, const char *path)
{
    (void)fd, (void)value;
    seen_paths *s = arg;
    assert_non_null(path);
    assert_true(s->n < 64);
    snprintf(s->paths[s->n++], sizeof s->paths[0], "%s", path);
    return !s->stop_at || strcmp(path, s->stop_at) != 0;
}

static bool seen(const seen_paths *s, const char *path)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->paths[i], path) == 0)
            return true;
    return false;
}

/* Every present value, a message before what is inside it, by JSON path; an
 * absent field (a string left empty, a number at zero, an unchosen oneof
 * member) is not visited, a chosen one at its default is. */
static void test_fields_visit_every_present_value(void **state)
{
    (void)state;
    sample s;
    sample_init(&s, "ev-visit");
    s.env.case_ref = "";
    seen_paths v = {0};
    char path[128];
    assert_true(cb_fields_visit(&s.env.base, path, sizeof path, record_path, &v));
    assert_string_equal(v.paths[0], "eventId");
    assert_true(seen(&v, "person"));
    assert_true(seen(&v, "person.localIds[0].system"));
    assert_true(seen(&v, "toAgencies[1]"));
    assert_true(seen(&v, "occurredAt.nanos"));
    assert_true(seen(&v, "referral.risks[0].level"));
    assert_false(seen(&v, "caseRef"));
    assert_false(seen(&v, "correlationId"));
    assert_false(seen(&v, "discharge"));
    size_t person = 0, nhs = 0;
    for (size_t i = 0; i < v.n; i++) {
        person = strcmp(v.paths[i], "person") == 0 ? i : person;
        nhs = strcmp(v.paths[i], "person.nhsNumber") == 0 ? i : nhs;
    }
    assert_true(person < nhs);

    /* Stopped, it says so, and the path names where. */
    seen_paths stop = {.stop_at = "referral.contact.name"};
    assert_false(cb_fields_visit(&s.env.base, path, sizeof path, record_path, &stop));
    assert_string_equal(path, "referral.contact.name");

    Carebridge__V1__Referral empty = CAREBRIDGE__V1__REFERRAL__INIT;
    s.env.referral = &empty; /* chosen, though all of it is at its default */
    assert_true(cb_field_present(&s.env.base, protobuf_c_message_descriptor_get_field_by_name(
                                                  &carebridge__v1__envelope__descriptor, "referral")));
    assert_false(cb_field_present(&s.env.base, protobuf_c_message_descriptor_get_field_by_name(
                                                   &carebridge__v1__envelope__descriptor, "discharge")));
}

static void test_field_paths_by_json_name(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *env = &carebridge__v1__envelope__descriptor;
    assert_true(cb_field_path_valid(env, "referral.consent"));
    assert_true(cb_field_path_valid(env, "referral.contact.name"));
    assert_true(cb_field_path_valid(env, "discharge.followUps.agency"));
    assert_false(cb_field_path_valid(env, "discharge.follow_ups.agency")); /* proto names are not JSON names */
    assert_false(cb_field_path_valid(env, "referral.consent.more"));       /* through a scalar */
    assert_false(cb_field_path_valid(env, "referral.nothing"));
    assert_false(cb_field_path_valid(env, "referral."));

    sample s;
    sample_init(&s, "ev-paths");
    assert_true(cb_field_path_present(&s.env.base, "referral.contact.name"));
    assert_true(cb_field_path_present(&s.env.base, "referral.risks"));
    assert_true(cb_field_path_present(&s.env.base, "referral.communicationNeeds"));
    assert_false(cb_field_path_present(&s.env.base, "referral.whatHasHelped"));
    assert_false(cb_field_path_present(&s.env.base, "discharge.plannedDate")); /* another body */
    s.env.referral->contact = NULL;
    assert_false(cb_field_path_present(&s.env.base, "referral.contact.name"));

    /* Through a repeated message: every element, and none is no gap. */
    Carebridge__V1__Discharge d = CAREBRIDGE__V1__DISCHARGE__INIT;
    Carebridge__V1__FollowUp a = CAREBRIDGE__V1__FOLLOW_UP__INIT, b = CAREBRIDGE__V1__FOLLOW_UP__INIT;
    Carebridge__V1__FollowUp *ups[] = {&a, &b};
    s.env.body_case = CAREBRIDGE__V1__ENVELOPE__BODY_DISCHARGE;
    s.env.discharge = &d;
    assert_true(cb_field_path_present(&s.env.base, "discharge.followUps.agency"));
    d.follow_ups = ups;
    d.n_follow_ups = 2;
    a.agency = "housing";
    assert_false(cb_field_path_present(&s.env.base, "discharge.followUps.agency"));
    b.agency = "voluntary";
    assert_true(cb_field_path_present(&s.env.base, "discharge.followUps.agency"));
}

/* ---- the wire read before protobuf-c: NULs, messages given in parts, and naming
 * where bytes stop decoding. Frames are built by hand as an encoder that is
 * not protobuf-c may send them (two serialised messages laid end to end). */

typedef struct {
    uint8_t b[1024];
    size_t n;
} wire_buf;

static void wb_varint(wire_buf *w, uint64_t v)
{
    while (v >= 0x80) {
        w->b[w->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    w->b[w->n++] = (uint8_t)v;
}

static void wb_bytes(wire_buf *w, uint32_t id, const void *data, size_t len)
{
    wb_varint(w, (uint64_t)id << 3 | 2);
    wb_varint(w, len);
    memcpy(w->b + w->n, data, len);
    w->n += len;
}

static void wb_msg(wire_buf *w, uint32_t id, const wire_buf *m)
{
    wb_bytes(w, id, m->b, m->n);
}

static void wb_uint(wire_buf *w, uint32_t id, uint64_t v)
{
    wb_varint(w, (uint64_t)id << 3);
    wb_varint(w, v);
}

/* The essentials of an event (ids, agencies), to which a test adds its body. */
static wire_buf event_head_n(const char *id, size_t id_len)
{
    wire_buf e = {.n = 0}, person = {.n = 0};
    wb_bytes(&person, 1, "9434765919", 10);
    wb_bytes(&e, 1, id, id_len);
    wb_msg(&e, 2, &person);
    wb_bytes(&e, 4, "health", 6);
    wb_bytes(&e, 5, "social-care", 11);
    return e;
}

static wire_buf event_head(const char *id)
{
    return event_head_n(id, strlen(id));
}

static cb_frame *decode_publish(const wire_buf *event, cb_error *err)
{
    wire_buf publish = {.n = 0}, frame = {.n = 0};
    wb_msg(&publish, 1, event);
    wb_uint(&frame, 1, 7);
    wb_msg(&frame, 12, &publish);
    uint8_t *b = exact_copy(frame.b, frame.n);
    cb_frame *f = cb_frame_decode(b, frame.n, 1 << 20, err);
    free(b);
    return f;
}

static void test_wire_nul_in_a_string_is_refused_by_name(void **state)
{
    (void)state;
    wire_buf e = event_head("ev-nul"), referral = {.n = 0};
    wb_bytes(&referral, 1, "home\0care", 9);
    wb_msg(&e, 10, &referral);
    cb_error err = {0};
    assert_null(decode_publish(&e, &err));
    assert_int_equal(err.code, CB_INVALID_FIELD);
    assert_string_equal(err.reason, "referral.reason contains a NUL character (U+0000)");

    e = event_head_n("ev\0id", 5);
    assert_null(decode_publish(&e, &err));
    assert_string_equal(err.reason, "eventId contains a NUL character (U+0000)");

    wire_buf need = event_head("ev-nul-2"), r2 = {.n = 0};
    wb_bytes(&r2, 7, "ok", 2);
    wb_bytes(&r2, 7, "\0", 1);
    wb_msg(&need, 10, &r2);
    assert_null(decode_publish(&need, &err));
    assert_string_equal(err.reason, "referral.communicationNeeds[1] contains a NUL character (U+0000)");
}

/* proto3 strings are UTF-8: what is not is refused as it is decoded, by path,
 * before anything else about the event is looked at. */
static void test_wire_invalid_utf8_is_refused_by_name(void **state)
{
    (void)state;
    static const struct {
        const char *bytes, *path;
    } cases[] = {
        {"H123\xc3", "person.localIds[0].value"}, /* a sequence cut short */
        {"Marg\xe0\x80\xafret", "person.name"},   /* overlong */
        {"\xed\xa0\x80", "referral.reason"},      /* a surrogate */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wire_buf e = event_head(""), person = {.n = 0}, lid = {.n = 0}, referral = {.n = 0};
        const char *bad = cases[i].bytes;
        if (!strcmp(cases[i].path, "person.localIds[0].value")) {
            wb_bytes(&lid, 1, "pas", 3);
            wb_bytes(&lid, 2, bad, strlen(bad));
            wb_msg(&person, 3, &lid);
        } else if (!strcmp(cases[i].path, "person.name")) {
            wb_bytes(&person, 4, bad, strlen(bad));
        } else {
            wb_bytes(&referral, 1, bad, strlen(bad));
        }
        wb_msg(&e, 2, &person);
        wb_msg(&e, 10, &referral);
        cb_error err = {0};
        assert_null(decode_publish(&e, &err)); /* an empty eventId too: UTF-8 is found first */
        assert_int_equal(err.code, CB_INVALID_UTF8);
        char expected[128];
        snprintf(expected, sizeof expected, "%s is not valid UTF-8", cases[i].path);
        assert_string_equal(err.reason, expected);
    }
}

static void test_wire_a_oneof_message_given_in_two_parts_is_merged(void **state)
{
    (void)state;
    wire_buf e = event_head("ev-parts"), part1 = {.n = 0}, part2 = {.n = 0}, c1 = {.n = 0}, c2 = {.n = 0};
    wb_bytes(&c1, 1, "Sam Ward", 8);
    wb_bytes(&part1, 1, "home support", 12);
    wb_msg(&part1, 5, &c1);
    wb_bytes(&part1, 7, "large print", 11);
    wb_uint(&part2, 2, CAREBRIDGE__V1__REFERRAL__URGENCY__URGENT);
    wb_bytes(&c2, 3, "0100", 4);
    wb_msg(&part2, 5, &c2);
    wb_bytes(&part2, 7, "interpreter", 11);
    wb_msg(&e, 10, &part1);
    wb_msg(&e, 10, &part2);
    cb_error err = {0};
    cb_frame *f = decode_publish(&e, &err);
    assert_non_null(f);
    const Referral *r = f->publish->event->referral;
    assert_int_equal(f->publish->event->body_case, CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL);
    assert_string_equal(r->reason, "home support");                          /* from the first part */
    assert_int_equal(r->urgency, CAREBRIDGE__V1__REFERRAL__URGENCY__URGENT); /* from the second */
    assert_string_equal(r->contact->name, "Sam Ward");                       /* sub-messages merge */
    assert_string_equal(r->contact->phone, "0100");
    assert_int_equal(r->n_communication_needs, 2); /* repeated fields append, in order */
    assert_string_equal(r->communication_needs[0], "large print");
    assert_string_equal(r->communication_needs[1], "interpreter");
    assert_string_equal(f->publish->event->event_id, "ev-parts");
    assert_int_equal(f->ref, 7);
    cb_frame_free(&f);
}

static void test_wire_a_timestamp_given_in_two_parts_is_merged(void **state)
{
    (void)state;
    wire_buf e = event_head("ev-ts"), s1 = {.n = 0}, s2 = {.n = 0}, referral = {.n = 0};
    wb_uint(&s1, 1, 1767225600);
    wb_uint(&s2, 2, 250000000);
    wb_msg(&e, 6, &s1);
    wb_msg(&e, 6, &s2);
    wb_msg(&e, 10, &referral);
    cb_error err = {0};
    cb_frame *f = decode_publish(&e, &err);
    assert_non_null(f);
    assert_int_equal(f->publish->event->occurred_at->seconds, 1767225600);
    assert_int_equal(f->publish->event->occurred_at->nanos, 250000000);
    cb_frame_free(&f);
}

/* Of a oneof, the member given last wins; given again after another, it starts afresh. */
static void test_wire_a_oneof_keeps_the_member_given_last(void **state)
{
    (void)state;
    wire_buf e = event_head("ev-last"), ref1 = {.n = 0}, dis = {.n = 0}, ref2 = {.n = 0};
    wb_bytes(&ref1, 1, "first", 5);
    wb_bytes(&dis, 2, "own home", 8);
    wb_uint(&ref2, 2, CAREBRIDGE__V1__REFERRAL__URGENCY__SOON);
    wb_msg(&e, 10, &ref1);
    wb_msg(&e, 11, &dis);
    wb_msg(&e, 10, &ref2);
    cb_error err = {0};
    cb_frame *f = decode_publish(&e, &err);
    assert_non_null(f);
    assert_int_equal(f->publish->event->body_case, CAREBRIDGE__V1__ENVELOPE__BODY_REFERRAL);
    assert_string_equal(f->publish->event->referral->reason, ""); /* the first referral was replaced */
    assert_int_equal(f->publish->event->referral->urgency, CAREBRIDGE__V1__REFERRAL__URGENCY__SOON);
    cb_frame_free(&f);
}

/* Two whole frames laid end to end merge too: publish, event and all. */
static void test_wire_two_frames_end_to_end_merge(void **state)
{
    (void)state;
    wire_buf a = event_head("ev-two"), b = {.n = 0}, pa = {.n = 0}, pb = {.n = 0}, fa = {.n = 0}, fb = {.n = 0};
    wire_buf referral = {.n = 0}, when = {.n = 0};
    wb_bytes(&referral, 1, "r", 1);
    wb_uint(&when, 1, 1767225600);
    wb_msg(&a, 10, &referral);
    wb_msg(&b, 6, &when);
    wb_msg(&pa, 1, &a);
    wb_msg(&pb, 1, &b);
    wb_uint(&fa, 1, 9);
    wb_msg(&fa, 12, &pa);
    wb_msg(&fb, 12, &pb);
    memcpy(fa.b + fa.n, fb.b, fb.n);
    fa.n += fb.n;
    cb_error err = {0};
    cb_frame *f = cb_frame_decode(fa.b, fa.n, 1 << 20, &err);
    assert_non_null(f);
    assert_string_equal(f->publish->event->event_id, "ev-two");
    assert_string_equal(f->publish->event->referral->reason, "r");
    assert_int_equal(f->publish->event->occurred_at->seconds, 1767225600);
    cb_frame_free(&f);
}

static void test_wire_an_event_that_does_not_decode_is_named_as_the_event(void **state)
{
    (void)state;
    wire_buf e = event_head("ev-bad");
    uint8_t cut[] = {0x32, 0x05, 0x08}; /* occurredAt claims 5 bytes, has 1 */
    memcpy(e.b + e.n, cut, sizeof cut);
    e.n += sizeof cut;
    cb_error err = {0};
    assert_null(decode_publish(&e, &err));
    assert_int_equal(err.code, CB_DECODE_ERROR);
    assert_string_equal(err.reason, "publish.event does not decode as a carebridge.v1.Envelope: a length runs "
                                    "past the end of the bytes, at its top level");

    wire_buf w = event_head("ev-type"), person = {.n = 0};
    wb_uint(&person, 1, 12); /* nhsNumber given as a number */
    wb_msg(&w, 2, &person);
    assert_null(decode_publish(&w, &err));
    assert_string_equal(err.reason, "publish.event does not decode as a carebridge.v1.Envelope: the field has the "
                                    "wrong wire type for its type, at person.nhsNumber (field 1)");

    uint8_t frame[] = {0x0b}; /* a group start: not the event, the frame */
    assert_null(cb_frame_decode(frame, sizeof frame, 1 << 20, &err));
    assert_int_equal(err.code, CB_DECODE_ERROR);
    assert_non_null(strstr(err.reason, "are not a carebridge.v1.Frame"));
}

/* ---- the arena's marks: a frame the batch does not keep gives its memory back */

static void test_arena_restore_gives_back_what_came_after_the_mark(void **state)
{
    (void)state;
    cb_arena *a = cb_arena_new();
    assert_non_null(cb_arena_alloc(a, 100));
    cb_arena_mark mark = cb_arena_save(a);
    void *after = cb_arena_alloc(a, 100);
    for (int i = 0; i < 8; i++)
        assert_non_null(cb_arena_alloc(a, 1 << 20)); /* each its own block */
    cb_arena_restore(a, mark);
    assert_ptr_equal(cb_arena_alloc(a, 100), after); /* the same memory again */
    cb_arena_restore(a, mark);
    cb_arena_destroy(&a);
    assert_null(a);
}

static void test_peek_kind_names_the_oneof_member(void **state)
{
    (void)state;
    Carebridge__V1__Heartbeat hb = CAREBRIDGE__V1__HEARTBEAT__INIT;
    cb_frame f = CAREBRIDGE__V1__FRAME__INIT;
    f.ref = 42;
    f.kind_case = CAREBRIDGE__V1__FRAME__KIND_HEARTBEAT;
    f.heartbeat = &hb;
    uint8_t *buf;
    size_t len = cb_pack(&f.base, &buf);
    assert_int_equal(cb_peek_kind(buf, len), CAREBRIDGE__V1__FRAME__KIND_HEARTBEAT);
    assert_int_equal(cb_peek_kind(buf, 1), 0); /* cut short */
    free(buf);
    assert_int_equal(cb_peek_kind((const uint8_t *)"\xff\xff", 2), 0);
    assert_int_equal(cb_peek_kind(NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_too_large_is_refused_without_reading),
        cmocka_unit_test(test_decode_at_the_limit_decodes),
        cmocka_unit_test(test_decode_garbage_is_decode_error),
        cmocka_unit_test(test_decode_round_trips_a_packed_frame),
        cmocka_unit_test(test_envelope_decode_reads_stored_bytes),
        cmocka_unit_test(test_pack_into_uses_the_buffer_when_it_fits),
        cmocka_unit_test(test_pack_into_allocates_when_too_small),
        cmocka_unit_test(test_pack_empty_message_gives_zero_and_a_buffer),
        cmocka_unit_test(test_peek_reads_ref_and_event_id),
        cmocka_unit_test(test_peek_absent_fields_give_zero_and_empty),
        cmocka_unit_test(test_peek_id_that_does_not_fit_is_left_empty),
        cmocka_unit_test(test_peek_every_prefix_stays_in_bounds),
        cmocka_unit_test(test_peek_garbage_stays_in_bounds),
        cmocka_unit_test(test_deliver_first_attempt_zero),
        cmocka_unit_test(test_deliver_with_attempts),
        cmocka_unit_test(test_deliver_big_seqs),
        cmocka_unit_test(test_deliver_big_event),
        cmocka_unit_test(test_deliver_empty_event),
        cmocka_unit_test(test_merge_consent_patch_keeps_the_rest),
        cmocka_unit_test(test_merge_set_scalars_replace),
        cmocka_unit_test(test_merge_repeated_fields_append),
        cmocka_unit_test(test_merge_sub_messages_merge),
        cmocka_unit_test(test_merge_empty_patch_changes_nothing),
        cmocka_unit_test(test_merge_replaces_a_oneof_member_set_on_both_sides),
        cmocka_unit_test(test_body_name_for_every_body),
        cmocka_unit_test(test_body_name_of_a_decoded_envelope),
        cmocka_unit_test(test_check_utf8_path_uses_json_names),
        cmocka_unit_test(test_check_utf8_path_truncates_to_cap),
        cmocka_unit_test(test_fields_visit_every_present_value),
        cmocka_unit_test(test_field_paths_by_json_name),
        cmocka_unit_test(test_wire_nul_in_a_string_is_refused_by_name),
        cmocka_unit_test(test_wire_invalid_utf8_is_refused_by_name),
        cmocka_unit_test(test_wire_a_oneof_message_given_in_two_parts_is_merged),
        cmocka_unit_test(test_wire_a_timestamp_given_in_two_parts_is_merged),
        cmocka_unit_test(test_wire_a_oneof_keeps_the_member_given_last),
        cmocka_unit_test(test_wire_two_frames_end_to_end_merge),
        cmocka_unit_test(test_wire_an_event_that_does_not_decode_is_named_as_the_event),
        cmocka_unit_test(test_arena_restore_gives_back_what_came_after_the_mark),
        cmocka_unit_test(test_peek_kind_names_the_oneof_member),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
