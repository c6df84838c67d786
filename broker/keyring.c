#include "keyring.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Sorted by key, so a handshake's lookup is a binary search; swapped whole
 * under the lock, so a handshake never sees half a reload. */
typedef struct {
    cb_principal *all;
    size_t n;
} table;

struct cb_keyring {
    pthread_mutex_t lock;
    table t;
};

static int by_key(const void *a, const void *b)
{
    return memcmp(((const cb_principal *)a)->key, ((const cb_principal *)b)->key, 32);
}

static int agency_index(const cb_config *cfg, const char *id)
{
    const cb_agency *a = cb_config_agency(cfg, id);
    return a ? (int)(a - cfg->agencies) : -1;
}

static void add_agency(cb_principal *p, int a)
{
    if (a >= 0 && a < 8 * CB_AGENCY_SET_BYTES)
        p->agencies[a / 8] |= (uint8_t)(1u << (a % 8));
}

static bool add(table *t, const char *z85, const char *name, cb_role role)
{
    cb_principal *p = &t->all[t->n];
    *p = (cb_principal){.role = role, .agency = -1};
    if (!cb_z85_key(z85, p->key)) /* the configuration checked it */
        return false;
    cb_key_fingerprint(p->key, p->fingerprint);
    snprintf(p->name, sizeof p->name, "%s", name);
    t->n++;
    return true;
}

cb_keyring *cb_keyring_new(const cb_config *running, const cb_config *cfg)
{
    cb_keyring *ring = calloc(1, sizeof *ring);
    size_t cap = cfg->n_people;
    for (unsigned a = 0; a < cfg->n_agencies; a++)
        cap += cfg->agencies[a].n_keys;
    if (!ring || !(ring->t.all = calloc(cap + 1, sizeof *ring->t.all))) {
        free(ring);
        return NULL;
    }
    pthread_mutex_init(&ring->lock, NULL);
    for (unsigned a = 0; a < cfg->n_agencies; a++) {
        /* An agency added by a reload has no queue until a restart: its keys wait too. */
        int index = agency_index(running, cfg->agencies[a].id);
        for (unsigned k = 0; index >= 0 && k < cfg->agencies[a].n_keys; k++)
            if (add(&ring->t, cfg->agencies[a].keys[k], cfg->agencies[a].id, CB_ROLE_AGENCY)) {
                ring->t.all[ring->t.n - 1].agency = index;
                add_agency(&ring->t.all[ring->t.n - 1], index);
            }
    }
    for (unsigned i = 0; i < cfg->n_people; i++) {
        const cb_person *person = &cfg->people[i];
        if (!add(&ring->t, person->key, person->name, person->role))
            continue;
        for (unsigned k = 0; k < person->n_agencies; k++)
            add_agency(&ring->t.all[ring->t.n - 1], agency_index(running, person->agencies[k]));
    }
    qsort(ring->t.all, ring->t.n, sizeof *ring->t.all, by_key);
    return ring;
}

void cb_keyring_free(cb_keyring **ring_p)
{
    cb_keyring *ring = *ring_p;
    if (ring) {
        pthread_mutex_destroy(&ring->lock);
        free(ring->t.all);
        free(ring);
    }
    *ring_p = NULL;
}

static const cb_principal *lookup(const table *t, const uint8_t key[32])
{
    cb_principal probe;
    memcpy(probe.key, key, 32);
    return bsearch(&probe, t->all, t->n, sizeof *t->all, by_key);
}

static bool same(const cb_principal *a, const cb_principal *b)
{
    return a->role == b->role && a->agency == b->agency && !strcmp(a->name, b->name) &&
           !memcmp(a->agencies, b->agencies, sizeof a->agencies);
}

bool cb_keyring_replace(cb_keyring *ring, cb_keyring **next_p)
{
    cb_keyring *next = *next_p;
    pthread_mutex_lock(&ring->lock);
    bool revoked = false;
    for (size_t i = 0; i < ring->t.n && !revoked; i++) {
        const cb_principal *was = &ring->t.all[i], *now = lookup(&next->t, was->key);
        revoked = !now || !same(was, now);
    }
    table old = ring->t;
    ring->t = next->t;
    next->t = old;
    pthread_mutex_unlock(&ring->lock);
    cb_keyring_free(next_p);
    return revoked;
}

size_t cb_keyring_size(cb_keyring *ring)
{
    pthread_mutex_lock(&ring->lock);
    size_t n = ring->t.n;
    pthread_mutex_unlock(&ring->lock);
    return n;
}

bool cb_keyring_find(cb_keyring *ring, const uint8_t key[32], cb_principal *out)
{
    pthread_mutex_lock(&ring->lock);
    const cb_principal *p = lookup(&ring->t, key);
    if (p)
        *out = *p;
    pthread_mutex_unlock(&ring->lock);
    return p != NULL;
}

bool cb_keyring_find_named(cb_keyring *ring, const char *name, const char *fingerprint, cb_principal *out)
{
    bool found = false;
    pthread_mutex_lock(&ring->lock);
    for (size_t i = 0; i < ring->t.n && !found; i++)
        if (!strcmp(ring->t.all[i].fingerprint, fingerprint) && !strcmp(ring->t.all[i].name, name)) {
            *out = ring->t.all[i];
            found = true;
        }
    pthread_mutex_unlock(&ring->lock);
    return found;
}
