/* Entries live in one array, linked by index (0 is none) into a hash
 * bucket's chain. Which makes way is chosen as by CLOCK (Corbató's
 * approximation of least recently used): a get marks its entry used, and a
 * hand sweeping the array spares, and unmarks, each marked entry it meets.
 * A get touches only its entry; keeping an order of use touched three more,
 * each a cache miss among 32,768 people. */
#include "kept.h"

#include <stdbool.h>
#include <stdlib.h>

typedef struct {
    uint64_t hash;
    Carebridge__V1__PersonRecord *rec; /* NULL: a free entry */
    uint32_t chain;                    /* the next in its bucket, or in the free list */
    bool used;                         /* got since the hand last passed */
} entry;

struct cb_kept {
    entry *e; /* [1..cap] */
    uint32_t *bucket;
    uint32_t cap, mask, made, free, hand;
};

cb_kept *cb_kept_new(uint32_t cap)
{
    cb_kept *k = calloc(1, sizeof *k);
    uint32_t buckets = 1;
    while (buckets < cap)
        buckets <<= 1;
    if (k) {
        k->e = calloc((size_t)cap + 1, sizeof *k->e);
        k->bucket = calloc(buckets, sizeof *k->bucket);
        k->cap = cap;
        k->mask = buckets - 1;
    }
    if (k && (!k->e || !k->bucket))
        cb_kept_free(&k);
    return k;
}

void cb_kept_free(cb_kept **k_p)
{
    cb_kept *k = *k_p;
    if (k) {
        if (k->e && k->bucket)
            cb_kept_clear(k);
        free(k->e);
        free(k->bucket);
        free(k);
    }
    *k_p = NULL;
}

/* Person hashes are already uniform; their low bits choose the bucket. */
static uint32_t *bucket_of(cb_kept *k, uint64_t hash)
{
    return &k->bucket[hash & k->mask];
}

static uint32_t find(cb_kept *k, uint64_t hash)
{
    uint32_t i = *bucket_of(k, hash);
    while (i && k->e[i].hash != hash)
        i = k->e[i].chain;
    return i;
}

/* Out of its bucket, its record freed, onto the free list. */
static void remove_entry(cb_kept *k, uint32_t i)
{
    uint32_t *at = bucket_of(k, k->e[i].hash);
    while (*at != i)
        at = &k->e[*at].chain;
    *at = k->e[i].chain;
    protobuf_c_message_free_unpacked(&k->e[i].rec->base, NULL);
    k->e[i] = (entry){.chain = k->free};
    k->free = i;
}

/* The first entry the hand finds unused since it last passed: every entry
 * is in use when this is asked for. */
static uint32_t victim(cb_kept *k)
{
    for (;;) {
        k->hand = k->hand % k->cap + 1;
        if (!k->e[k->hand].used)
            return k->hand;
        k->e[k->hand].used = false;
    }
}

Carebridge__V1__PersonRecord *cb_kept_get(cb_kept *k, uint64_t hash)
{
    uint32_t i = find(k, hash);
    if (!i)
        return NULL;
    k->e[i].used = true;
    return k->e[i].rec;
}

void cb_kept_put(cb_kept *k, uint64_t hash, Carebridge__V1__PersonRecord *rec)
{
    uint32_t i = find(k, hash);
    if (i) {
        if (k->e[i].rec != rec)
            protobuf_c_message_free_unpacked(&k->e[i].rec->base, NULL);
        k->e[i].rec = rec;
        k->e[i].used = true;
        return;
    }
    if (!k->free && k->made == k->cap)
        remove_entry(k, victim(k));
    if (k->free) {
        i = k->free;
        k->free = k->e[i].chain;
    } else {
        i = ++k->made;
    }
    uint32_t *b = bucket_of(k, hash);
    k->e[i] = (entry){.hash = hash, .rec = rec, .chain = *b};
    *b = i;
}

void cb_kept_drop(cb_kept *k, uint64_t hash)
{
    uint32_t i = find(k, hash);
    if (i)
        remove_entry(k, i);
}

void cb_kept_clear(cb_kept *k)
{
    for (uint32_t i = 1; i <= k->made; i++)
        if (k->e[i].rec)
            remove_entry(k, i);
    k->free = 0;
    k->made = 0;
    k->hand = 0;
}
