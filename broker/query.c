#include "query.h"

#include "access.h"

#include "flagquery.h"
#include "handoff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cb_check.h"
#include "cb_codec.h"
#include "clock.h"
#include "handoff.h"
#include "intake.h"

#define PARKED_SHOWN 10

typedef Carebridge__V1__JourneyStep step_t;
typedef Carebridge__V1__JourneyStep__Handoff handoff_t;

/* Replies are freed by protobuf_c_message_free_unpacked, which leaves a
 * string alone when it is the field's default: so a failed copy degrades to
 * an empty string instead of a crash. */
static char *dup(const char *s)
{
    char *d = strdup(s);
    return d ? d : (char *)protobuf_c_empty_string;
}

typedef struct {
    uint64_t *seqs;
    size_t n, cap;
} seq_list;

static bool push_seq(void *arg, uint64_t seq)
{
    seq_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        uint64_t *s = realloc(l->seqs, cap * sizeof *s);
        if (!s)
            return false;
        l->seqs = s, l->cap = cap;
    }
    l->seqs[l->n++] = seq;
    return true;
}

static bool push_parked(void *arg, const cb_queue_entry *e)
{
    return push_seq(arg, e->seq) && ((seq_list *)arg)->n < PARKED_SHOWN;
}

const char *cb_query_room_reason(const cb_config *cfg, cb_room room, char *buf, size_t cap)
{
    if (room == CB_ROOM_DISK_FULL)
        snprintf(buf, cap, "the filesystem holding the store is full; publishing resumes once it has room again");
    else if (room == CB_ROOM_MAP_FILLED)
        snprintf(buf, cap,
                 "the store is past store.publish_fill_percent (%u%%); publishing resumes as deliveries drain it",
                 cfg->publish_fill_percent);
    else
        snprintf(buf, cap, "%s", "");
    return buf;
}

/* The id of the event stored as seq, as a reply's string ("" when unreadable). */
static char *event_id_of(cb_txn *txn, uint64_t seq)
{
    const uint8_t *bytes;
    size_t len;
    cb_envelope *ev = cb_store_get_event(txn, seq, &bytes, &len) ? cb_envelope_decode(bytes, len) : NULL;
    char *id = dup(ev ? ev->event_id : "");
    cb_envelope_free(&ev);
    return id;
}

Carebridge__V1__StatusReply *cb_query_status(const cb_config *cfg, cb_txn *txn, const cb_agency_live *live,
                                             uint64_t limit_bytes, cb_error *err)
{
    Carebridge__V1__StatusReply *r = malloc(sizeof *r);
    if (!r) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    carebridge__v1__status_reply__init(r);
    r->agencies = calloc(cfg->n_agencies, sizeof *r->agencies);
    uint64_t now = cb_wall_ms();
    for (unsigned a = 0; r->agencies && a < cfg->n_agencies; a++) {
        Carebridge__V1__AgencyStatus *s = malloc(sizeof *s);
        if (!s)
            break;
        carebridge__v1__agency_status__init(s);
        r->agencies[r->n_agencies++] = s;
        s->id = dup(cfg->agencies[a].id);
        s->kind = dup(cb_agency_kind_name(cfg->agencies[a].kind));
        s->name = dup(cfg->agencies[a].name);
        s->connected = live[a].connected;
        s->in_flight = live[a].in_flight;
        s->refused_acks = live[a].refused_acks;
        cb_queue_stats st;
        cb_store_queue_stats(txn, cfg->agencies[a].id, &st);
        s->queued = st.queued;
        s->parked = st.parked;
        s->oldest_undelivered_ms =
            st.oldest_enqueued_ms && now > st.oldest_enqueued_ms ? now - st.oldest_enqueued_ms : 0;
        seq_list parked = {0};
        if (st.parked)
            cb_store_parked_scan(txn, cfg->agencies[a].id, 0, push_parked, &parked);
        s->parked_seqs = parked.seqs;
        s->n_parked_seqs = parked.n;
        /* By event id too: that is what the sending system knows them by. */
        s->parked_event_ids = parked.n ? calloc(parked.n, sizeof *s->parked_event_ids) : NULL;
        for (size_t i = 0; s->parked_event_ids && i < parked.n; i++) {
            s->parked_event_ids[i] = event_id_of(txn, parked.seqs[i]);
            s->n_parked_event_ids++;
        }
    }
    r->last_seq = cb_store_last_seq(txn);
    r->events = cb_store_event_count(txn);
    r->store_used_bytes = cb_store_used_bytes(txn);
    r->store_limit_bytes = limit_bytes;
    cb_room room = cb_store_room(txn);
    r->publishing_paused = room != CB_ROOM;
    if (r->publishing_paused) {
        char why[200];
        r->paused_reason = dup(cb_query_room_reason(cfg, room, why, sizeof why));
    }
    return r;
}

/* ---- journey */

/* Timeline order: when it happened, then the order the broker stored it. */
static int cmp_when(const void *a, const void *b)
{
    const step_t *x = *(step_t *const *)a, *y = *(step_t *const *)b;
    int64_t xs = x->event->occurred_at ? x->event->occurred_at->seconds : 0;
    int64_t ys = y->event->occurred_at ? y->event->occurred_at->seconds : 0;
    if (xs != ys)
        return xs < ys ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_seq(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Where the recipient's copy stands: acknowledged, still queued (with the
 * attempts made so far), or parked. */
static void delivery_of(cb_txn *txn, const char *agency, uint64_t seq, handoff_t *h)
{
    cb_queue_entry e;
    if (cb_store_queue_get(txn, agency, seq, &e)) {
        h->attempts = e.attempts;
    } else if (cb_store_parked_get(txn, agency, seq, &e)) {
        h->parked = true;
        h->attempts = e.attempts;
    } else {
        h->delivered = true;
    }
}

static step_t *find_step(Carebridge__V1__JourneyReply *r, const char *event_id)
{
    for (size_t i = r->n_steps; event_id[0] && i-- > 0;)
        if (strcmp(r->steps[i]->event->event_id, event_id) == 0)
            return r->steps[i];
    return NULL;
}

/* A copy of m for a reply that frees its parts one by one: by its wire form. */
static void *copy_message(const ProtobufCMessage *m)
{
    uint8_t *buf;
    size_t len = cb_pack(m, &buf);
    if (!buf)
        return NULL;
    void *copy = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
    free(buf);
    return copy;
}

static void set_since(handoff_t *h, const Google__Protobuf__Timestamp *when)
{
    if (h->since)
        protobuf_c_message_free_unpacked(&h->since->base, NULL);
    h->since = when ? copy_message(&when->base) : NULL;
}

static handoff_t *add_handoff(step_t *s, const char *agency, Carebridge__V1__JourneyStep__Stage stage)
{
    handoff_t **hs = realloc(s->handoffs, (s->n_handoffs + 1) * sizeof *hs);
    handoff_t *h = malloc(sizeof *h);
    if (hs)
        s->handoffs = hs;
    if (!hs || !h) {
        free(h);
        return NULL;
    }
    carebridge__v1__journey_step__handoff__init(h);
    h->agency = dup(agency);
    h->stage = stage;
    s->handoffs[s->n_handoffs++] = h;
    return h;
}

/* A response moves the responder's handoff on (handoff.h). A response from
 * an agency the event was never sent to is kept as such, not taken for a
 * recipient. */
static void apply_response(step_t *s, uint64_t seq, const cb_envelope *ev)
{
    const Carebridge__V1__Response *resp = ev->response;
    if (resp->status == CAREBRIDGE__V1__RESPONSE__STATUS__STATUS_UNSPECIFIED)
        return;
    handoff_t *h = NULL;
    for (size_t i = 0; i < s->n_handoffs && !h; i++)
        if (strcmp(s->handoffs[i]->agency, ev->from_agency) == 0)
            h = s->handoffs[i];
    if (!h) {
        if (!(h = add_handoff(s, ev->from_agency,
                              cb_handoff_next(CAREBRIDGE__V1__JOURNEY_STEP__STAGE__SENT, resp->status))))
            return;
        h->not_a_recipient = true;
    }
    cb_stage next = cb_handoff_next(h->stage, resp->status);
    if (next != cb_handoff_next(CAREBRIDGE__V1__JOURNEY_STEP__STAGE__SENT, resp->status))
        return; /* it moved nothing: an acknowledgement after a later stage */
    h->stage = next;
    set_since(h, ev->occurred_at);
    if (h->response)
        protobuf_c_message_free_unpacked(&h->response->base, NULL);
    h->response = copy_message(&resp->base);
    h->response_seq = seq;
    char *note = cb_handoff_note(resp);
    if (note) {
        if (h->note != protobuf_c_empty_string)
            free(h->note);
        h->note = note;
    }
}

/* Merge an update's partial body into the body it corrects, when their types match. */
static bool apply_update(step_t *s, const cb_envelope *upd)
{
    const ProtobufCFieldDescriptor *body =
        protobuf_c_message_descriptor_get_field(&carebridge__v1__envelope__descriptor, s->event->body_case);
    const ProtobufCFieldDescriptor *patch =
        protobuf_c_message_descriptor_get_field(&carebridge__v1__update__descriptor, upd->update->patch_case);
    if (!body || !patch || body->descriptor != patch->descriptor)
        return false;
    ProtobufCMessage **dst = (ProtobufCMessage **)((char *)s->event + body->offset);
    const ProtobufCMessage *src = *(ProtobufCMessage *const *)((const char *)upd->update + patch->offset);
    return *dst && src && cb_merge(dst, src);
}

static step_t *new_step(Carebridge__V1__JourneyReply *r, uint64_t seq, cb_envelope *ev, cb_txn *txn)
{
    step_t **steps = realloc(r->steps, (r->n_steps + 1) * sizeof *steps);
    step_t *s = malloc(sizeof *s);
    if (steps)
        r->steps = steps;
    if (!steps || !s) {
        free(s);
        return NULL;
    }
    carebridge__v1__journey_step__init(s);
    s->seq = seq;
    s->event = ev;
    r->steps[r->n_steps++] = s;
    cb_flags_of_event(txn, seq, &s->flags, &s->n_flags);
    if (ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE)
        return s; /* a response hands nothing off: it moves the handoff it answers */
    for (size_t i = 0; i < ev->n_to_agencies; i++) {
        handoff_t *h = add_handoff(s, ev->to_agencies[i], CAREBRIDGE__V1__JOURNEY_STEP__STAGE__SENT);
        if (h) {
            delivery_of(txn, ev->to_agencies[i], seq, h);
            set_since(h, ev->occurred_at);
        }
    }
    return s;
}

typedef struct {
    uint64_t seq;
    cb_envelope *ev;
} stored;

/* Every event becomes a step, then the answers are applied in the order they
 * were stored, whichever came first: agencies are not ordered, so a response
 * may be stored before the event it answers. An update merges into the event
 * it corrects; one whose event is not in the journey stands on its own. */
static void build(Carebridge__V1__JourneyReply *r, stored *evs, size_t n, cb_txn *txn)
{
    for (size_t i = 0; i < n; i++)
        if (evs[i].ev->body_case != CAREBRIDGE__V1__ENVELOPE__BODY_UPDATE && !new_step(r, evs[i].seq, evs[i].ev, txn))
            cb_envelope_free(&evs[i].ev);
    for (size_t i = 0; i < n; i++) {
        cb_envelope *ev = evs[i].ev;
        if (!ev)
            continue;
        step_t *target = find_step(r, ev->correlation_id);
        if (ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_RESPONSE && target) {
            apply_response(target, evs[i].seq, ev);
        } else if (ev->body_case == CAREBRIDGE__V1__ENVELOPE__BODY_UPDATE) {
            uint64_t *u = target ? realloc(target->updated_by, (target->n_updated_by + 1) * sizeof *u) : NULL;
            if (u && apply_update(target, ev)) {
                target->updated_by = u;
                u[target->n_updated_by++] = evs[i].seq;
                cb_envelope_free(&evs[i].ev);
            } else {
                if (u)
                    target->updated_by = u;
                if (!new_step(r, evs[i].seq, ev, txn))
                    cb_envelope_free(&evs[i].ev);
            }
        }
    }
    /* An answer to nothing in the journey may answer an event stored under
     * other identifiers; only one that names no stored event is unseen. */
    for (size_t i = 0; i < r->n_steps; i++) {
        const char *corr = r->steps[i]->event->correlation_id;
        uint64_t seq;
        uint8_t digest[CB_DIGEST_BYTES];
        if (corr[0] && !find_step(r, corr))
            r->steps[i]->answers_unseen = !cb_store_find_id(txn, corr, &seq, digest);
    }
}

/* The request's identifiers as a Person, so its index keys come from the one
 * place that makes them (intake): the number is tried as NHS and as CHI. */
static bool requested_person(const Carebridge__V1__JourneyRequest *req, char number[CB_IDENTIFIER_MAX + 1],
                             Carebridge__V1__Person *p, cb_error *err)
{
    if (strlen(req->person_id) > CB_IDENTIFIER_MAX) {
        cb_fail(err, CB_INVALID_FIELD, "journey.personId is longer than %d characters", CB_IDENTIFIER_MAX);
        return false;
    }
    cb_identifier_normalise(strcpy(number, req->person_id));
    if (req->n_local_ids > CB_PERSON_KEYS_MAX - 2) {
        cb_fail(err, CB_INVALID_FIELD, "journey.localIds has more than %d entries", CB_PERSON_KEYS_MAX - 2);
        return false;
    }
    for (size_t i = 0; i < req->n_local_ids; i++) {
        const Carebridge__V1__LocalId *l = req->local_ids[i];
        if (!l->system[0] || !l->value[0] || strlen(l->system) > CB_IDENTIFIER_MAX ||
            strlen(l->value) > CB_IDENTIFIER_MAX) {
            cb_fail(err, CB_INVALID_FIELD, "journey.localIds[%zu] needs a system and a value of 1 to %d characters", i,
                    CB_IDENTIFIER_MAX);
            return false;
        }
    }
    if (!number[0] && !req->n_local_ids) {
        cb_fail(err, CB_INVALID_FIELD, "a journey needs personId (an NHS or CHI number) or localIds");
        return false;
    }
    carebridge__v1__person__init(p);
    p->nhs_number = p->chi_number = number;
    p->n_local_ids = req->n_local_ids;
    p->local_ids = req->local_ids;
    return true;
}

/* The index matches by hash: an event is the person's only if it carries
 * one of the identifiers asked for. */
static bool names_person(const cb_envelope *ev, cb_person_key *asked, size_t n_asked)
{
    cb_person_key keys[CB_PERSON_KEYS_MAX];
    size_t n = cb_intake_person_keys(ev->person, keys, CB_PERSON_KEYS_MAX);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < n_asked; k++)
            if (strcmp(keys[i], asked[k]) == 0)
                return true;
    return false;
}

/* Need-to-know (access.h): each identifier asked for that names events
 * names one involving an agency who sees for, and some identifier names
 * events at all. */
static bool may_see(const cb_config *cfg, const cb_principal *who, const stored *evs, size_t n, cb_person_key *keys,
                    size_t n_keys)
{
    for (size_t k = 0; k < n_keys; k++) {
        bool named = false, involved = false;
        for (size_t i = 0; i < n && !involved; i++)
            if (names_person(evs[i].ev, &keys[k], 1)) {
                named = true;
                involved = cb_access_involved(cfg, who, evs[i].ev);
            }
        if (named && !involved)
            return false;
    }
    return n > 0;
}

Carebridge__V1__JourneyReply *cb_query_journey(const cb_config *cfg, cb_txn *txn,
                                               const Carebridge__V1__JourneyRequest *req, cb_error *err)
{
    char person[CB_PSEUDONYM_LEN];
    return cb_query_journey_for(cfg, txn, req, NULL, person, err);
}

Carebridge__V1__JourneyReply *cb_query_journey_for(const cb_config *cfg, cb_txn *txn,
                                                   const Carebridge__V1__JourneyRequest *req, const cb_principal *who,
                                                   char pseudonym[CB_PSEUDONYM_LEN], cb_error *err)
{
    char number[CB_IDENTIFIER_MAX + 1];
    Carebridge__V1__Person person;
    strcpy(pseudonym, "p-none");
    if (!requested_person(req, number, &person, err))
        return NULL;
    /* As asked, an NHS number: the scheme most journeys are asked by. */
    Carebridge__V1__Person asked = person;
    asked.chi_number = "";
    cb_log_person(&asked, pseudonym);
    cb_person_key keys[CB_PERSON_KEYS_MAX];
    size_t n_keys = cb_intake_person_keys(&person, keys, CB_PERSON_KEYS_MAX);
    seq_list seqs = {0};
    for (size_t k = 0; k < n_keys; k++)
        cb_store_person_seqs(txn, keys[k], push_seq, &seqs);
    if (seqs.n) /* qsort may not be given NULL, even for nothing */
        qsort(seqs.seqs, seqs.n, sizeof *seqs.seqs, cmp_seq);

    Carebridge__V1__JourneyReply *r = malloc(sizeof *r);
    if (!r) {
        free(seqs.seqs);
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    carebridge__v1__journey_reply__init(r);
    stored *evs = calloc(seqs.n + 1, sizeof *evs);
    size_t n = 0;
    for (size_t i = 0; evs && i < seqs.n; i++) {
        const uint8_t *bytes;
        size_t len;
        if (i && seqs.seqs[i] == seqs.seqs[i - 1])
            continue; /* indexed under more than one of the identifiers */
        if (!cb_store_get_event(txn, seqs.seqs[i], &bytes, &len))
            continue;
        cb_envelope *ev = cb_envelope_decode(bytes, len);
        if (ev && names_person(ev, keys, n_keys))
            evs[n++] = (stored){seqs.seqs[i], ev};
        else
            cb_envelope_free(&ev);
    }
    free(seqs.seqs);
    if (n)
        cb_log_person(evs[0].ev->person, pseudonym);
    if (who && (!evs || !may_see(cfg, who, evs, n, keys, n_keys))) {
        for (size_t i = 0; evs && i < n; i++)
            cb_envelope_free(&evs[i].ev);
        free(evs);
        free(r);
        cb_access_not_their_person(who, err);
        return NULL;
    }
    if (evs)
        build(r, evs, n, txn);
    free(evs);
    if (r->n_steps)
        qsort(r->steps, r->n_steps, sizeof *r->steps, cmp_when);
    return r;
}
