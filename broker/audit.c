#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "access.h"
#include "cb_codec.h"
#include "cb_wire.h"
#include "flagbook.h"
#include "keys.h"
#include "query.h"

const char *const cb_broker_keyspaces[] = {CB_FLAGBOOK_KEYSPACE_NAMES, "audit", "audit_person"};

_Static_assert(CB_AUDIT_BASE == CB_FLAGBOOK_KEYSPACES, "the audit's keyspaces follow the flags'");
_Static_assert(sizeof cb_broker_keyspaces / sizeof *cb_broker_keyspaces == CB_BROKER_KEYSPACES,
               "a name for every keyspace");

enum { KS_AUDIT = CB_AUDIT_BASE, KS_PERSON };

cb_audit_entry cb_audit_of(const cb_principal *who, const char *agency, const char *action)
{
    cb_audit_entry e = {.role = CB_ROLE_AGENCY, .action = action, .permitted = true};
    if (who) {
        snprintf(e.who, sizeof e.who, "%s", who->name);
        snprintf(e.fingerprint, sizeof e.fingerprint, "%s", who->fingerprint);
        e.role = who->role;
    } else {
        snprintf(e.who, sizeof e.who, "%s", agency && agency[0] ? agency : "-");
    }
    return e;
}

/* Keys newest first: the time and a counter, each inverted. The counter
 * starts at the microsecond the broker started, so a restart within the same
 * millisecond cannot meet a key written before it. */
static uint64_t next_number(void)
{
    static uint64_t n; /* the store thread's alone */
    if (!n) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        n = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    }
    return ++n;
}

void cb_audit_put(cb_txn *txn, const cb_audit_entry *e, uint64_t wall_ms)
{
    Carebridge__V1__AuditRecord r = CAREBRIDGE__V1__AUDIT_RECORD__INIT;
    Google__Protobuf__Timestamp at = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    at.seconds = (int64_t)(wall_ms / 1000);
    at.nanos = (int32_t)(wall_ms % 1000) * 1000000;
    r.at = &at;
    r.who = (char *)e->who;
    r.role = (char *)cb_role_name(e->role);
    r.fingerprint = (char *)e->fingerprint;
    r.action = (char *)e->action;
    r.person = (char *)e->person;
    r.decision = e->permitted ? CAREBRIDGE__V1__AUDIT_RECORD__DECISION__PERMITTED
                              : CAREBRIDGE__V1__AUDIT_RECORD__DECISION__REFUSED;
    r.code = (Carebridge__V1__ErrorCode)e->code;
    r.detail = (char *)e->detail;
    uint8_t buf[512];
    size_t len = carebridge__v1__audit_record__get_packed_size(&r);
    if (len > sizeof buf)
        return; /* every field is bounded: cannot happen */
    carebridge__v1__audit_record__pack(&r, buf);
    uint64_t n = next_number();
    cb_key k;
    if (cb_key_make(&k, "QQ", ~wall_ms, ~n))
        cb_kv_put(txn, KS_AUDIT, k.b, k.len, buf, len);
    /* The person's index holds keys only: the record is written once. */
    if (e->person[0] && cb_key_make(&k, "SQQ", e->person, ~wall_ms, ~n))
        cb_kv_put(txn, KS_PERSON, k.b, k.len, "", 0);
}

void cb_audit_person_of_event(const uint8_t *bytes, size_t len, char out[CB_PSEUDONYM_LEN])
{
    /* Envelope.person is field 2: read it alone off the wire. */
    const uint8_t *p = bytes, *end = bytes + len;
    cb_wire_field f;
    while (p < end && !cb_wire_next(&p, end, &f))
        if (f.id == 2 && f.type == CB_WIRE_LEN) {
            Carebridge__V1__Person *person = carebridge__v1__person__unpack(NULL, f.len, f.payload);
            cb_log_person(person, out);
            if (person)
                carebridge__v1__person__free_unpacked(person, NULL);
            return;
        }
    cb_log_person(NULL, out);
}

typedef struct {
    cb_txn *txn; /* set while scanning a person's index */
    Carebridge__V1__AuditReply *reply;
    uint64_t since_ms;
    const char *agency;
    size_t limit;
    bool failed;
} gather;

static bool take(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    (void)key, (void)key_len;
    gather *g = arg;
    if (g->txn) { /* a person's index entry: the record is under its time and number */
        const char *person;
        uint64_t at, n;
        cb_key k;
        if (!cb_key_parse(key, key_len, "SQQ", &person, &at, &n) || !cb_key_make(&k, "QQ", at, n) ||
            !cb_kv_get(g->txn, KS_AUDIT, k.b, k.len, &val, &len))
            return true;
    }
    Carebridge__V1__AuditRecord *r = carebridge__v1__audit_record__unpack(NULL, len, val);
    if (!r)
        return true; /* never written so: skip rather than stop */
    uint64_t at = r->at ? (uint64_t)r->at->seconds * 1000 + (uint64_t)r->at->nanos / 1000000 : 0;
    if (at < g->since_ms) {
        carebridge__v1__audit_record__free_unpacked(r, NULL);
        return false; /* newest first: all the rest are older */
    }
    if (g->agency && strcmp(r->who, g->agency)) {
        carebridge__v1__audit_record__free_unpacked(r, NULL);
        return true;
    }
    if (g->reply->n_records == g->limit) {
        g->reply->truncated = true;
        carebridge__v1__audit_record__free_unpacked(r, NULL);
        return false;
    }
    Carebridge__V1__AuditRecord **more =
        realloc(g->reply->records, (g->reply->n_records + 1) * sizeof *g->reply->records);
    if (!more) {
        g->failed = true;
        carebridge__v1__audit_record__free_unpacked(r, NULL);
        return false;
    }
    g->reply->records = more;
    g->reply->records[g->reply->n_records++] = r;
    return true;
}

static int newest_first(const void *a, const void *b)
{
    const Carebridge__V1__AuditRecord *x = *(Carebridge__V1__AuditRecord *const *)a;
    const Carebridge__V1__AuditRecord *y = *(Carebridge__V1__AuditRecord *const *)b;
    int64_t tx = x->at ? x->at->seconds * 1000 + x->at->nanos / 1000000 : 0;
    int64_t ty = y->at ? y->at->seconds * 1000 + y->at->nanos / 1000000 : 0;
    return tx > ty ? -1 : tx < ty;
}

Carebridge__V1__AuditReply *cb_audit_query(const cb_config *cfg, cb_txn *txn, const Carebridge__V1__AuditRequest *req,
                                           const cb_principal *who, cb_error *err)
{
    bool person = req->person_id[0] || req->n_local_ids;
    if (cb_access_audit(who, person, err))
        return NULL;
    if (req->agency[0] && !cb_config_agency(cfg, req->agency)) {
        bool named = false; /* a person's name is a "who" too */
        for (unsigned i = 0; i < cfg->n_people && !named; i++)
            named = !strcmp(cfg->people[i].name, req->agency);
        if (!named) {
            cb_fail(err, CB_UNKNOWN_AGENCY, "audit.agency names no configured agency or person");
            return NULL;
        }
    }
    Carebridge__V1__AuditReply *r = malloc(sizeof *r);
    if (!r) {
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    carebridge__v1__audit_reply__init(r);
    gather g = {.reply = r,
                .since_ms =
                    req->since ? (uint64_t)req->since->seconds * 1000 + (uint64_t)req->since->nanos / 1000000 : 0,
                .agency = req->agency[0] ? req->agency : NULL,
                .limit = req->limit && req->limit < CB_AUDIT_LIMIT ? req->limit : CB_AUDIT_LIMIT};
    if (!person) {
        cb_kv_scan(txn, KS_AUDIT, NULL, 0, NULL, 0, take, &g);
    } else {
        /* The person as the journey finds them, under each pseudonym their
         * events carry, and only if who may see that journey. */
        Carebridge__V1__JourneyRequest jr = CAREBRIDGE__V1__JOURNEY_REQUEST__INIT;
        jr.person_id = req->person_id;
        jr.local_ids = req->local_ids;
        jr.n_local_ids = req->n_local_ids;
        char asked[CB_PSEUDONYM_LEN];
        const cb_principal *bound = who && who->role != CB_ROLE_OPERATOR ? who : NULL; /* an operator reads all */
        Carebridge__V1__JourneyReply *j = cb_query_journey_for(cfg, txn, &jr, bound, asked, err);
        if (!j) {
            carebridge__v1__audit_reply__free_unpacked(r, NULL);
            return NULL;
        }
        char seen[16][CB_PSEUDONYM_LEN];
        size_t n_seen = 0;
        snprintf(seen[n_seen++], CB_PSEUDONYM_LEN, "%s", asked);
        for (size_t i = 0; i < j->n_steps && n_seen < 16; i++) {
            char p[CB_PSEUDONYM_LEN];
            cb_log_person(j->steps[i]->event ? j->steps[i]->event->person : NULL, p);
            bool dup = false;
            for (size_t k = 0; k < n_seen && !dup; k++)
                dup = !strcmp(seen[k], p);
            if (!dup)
                snprintf(seen[n_seen++], CB_PSEUDONYM_LEN, "%s", p);
        }
        protobuf_c_message_free_unpacked(&j->base, NULL);
        for (size_t k = 0; k < n_seen && !g.failed; k++) {
            cb_key prefix;
            g.limit = (req->limit && req->limit < CB_AUDIT_LIMIT ? req->limit : CB_AUDIT_LIMIT); /* each, then cut */
            size_t before = r->n_records;
            g.limit += before;
            g.txn = txn;
            if (cb_key_make(&prefix, "S", seen[k]))
                cb_kv_scan(txn, KS_PERSON, prefix.b, prefix.len, NULL, 0, take, &g);
        }
        if (r->n_records)
            qsort(r->records, r->n_records, sizeof *r->records, newest_first);
        size_t limit = req->limit && req->limit < CB_AUDIT_LIMIT ? req->limit : CB_AUDIT_LIMIT;
        while (r->n_records > limit) {
            carebridge__v1__audit_record__free_unpacked(r->records[--r->n_records], NULL);
            r->truncated = true;
        }
    }
    if (g.failed) {
        carebridge__v1__audit_reply__free_unpacked(r, NULL);
        cb_fail(err, CB_STORE_UNAVAILABLE, "out of memory");
        return NULL;
    }
    return r;
}

typedef struct {
    cb_key *keys;
    char (*people)[CB_PSEUDONYM_LEN];
    size_t n, cap;
    bool more;
} expiring;

static bool expired(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t len)
{
    expiring *x = arg;
    if (x->n == x->cap) {
        x->more = true;
        return false;
    }
    memcpy(x->keys[x->n].b, key, key_len);
    x->keys[x->n].len = key_len;
    x->people[x->n][0] = 0;
    Carebridge__V1__AuditRecord *r = carebridge__v1__audit_record__unpack(NULL, len, val);
    if (r) {
        snprintf(x->people[x->n], CB_PSEUDONYM_LEN, "%s", r->person);
        carebridge__v1__audit_record__free_unpacked(r, NULL);
    }
    x->n++;
    return true;
}

size_t cb_audit_expire(cb_txn *txn, uint64_t before_ms, size_t budget, bool *more)
{
    *more = false;
    if (!before_ms || !budget)
        return 0;
    /* Newest first: a record older than before_ms has its inverted time at
     * or above ~(before_ms - 1), so they are the keys from there to the end. */
    cb_key from;
    if (!cb_key_make(&from, "QQ", ~(before_ms - 1), (uint64_t)0))
        return 0;
    expiring x = {.keys = malloc(budget * sizeof *x.keys), .people = malloc(budget * sizeof *x.people), .cap = budget};
    if (!x.keys || !x.people) {
        free(x.keys);
        free(x.people);
        *more = true;
        return 0;
    }
    cb_kv_scan(txn, KS_AUDIT, NULL, 0, from.b, from.len, expired, &x);
    for (size_t i = 0; i < x.n; i++) {
        uint64_t at, n;
        cb_key k;
        cb_kv_del(txn, KS_AUDIT, x.keys[i].b, x.keys[i].len);
        if (x.people[i][0] && cb_key_parse(x.keys[i].b, x.keys[i].len, "QQ", &at, &n) &&
            cb_key_make(&k, "SQQ", x.people[i], at, n))
            cb_kv_del(txn, KS_PERSON, k.b, k.len);
    }
    free(x.keys);
    free(x.people);
    *more = x.more;
    return x.n;
}
