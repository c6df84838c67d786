/* Entries live in one array, linked by index (0 is none): into a hash
 * bucket's chain, and into the order of use, newest first. */
#include "kept.h"

#include <stdlib.h>

typedef struct {
    uint64_t hash;
    Carebridge__V1__PersonRecord *rec;
    uint32_t chain;        /* the next in its bucket, or in the free list */
    uint32_t newer, older; /* in the order of use */
} entry;

struct cb_kept {
    entry *e; /* [1..cap] */
    uint32_t *bucket;
    uint32_t cap, mask, used, free, newest, oldest;
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

static void unlink_use(cb_kept *k, uint32_t i)
{
    entry *e = &k->e[i];
    if (e->newer)
        k->e[e->newer].older = e->older;
    else
        k->newest = e->older;
    if (e->older)
        k->e[e->older].newer = e->newer;
    else
        k->oldest = e->newer;
    e->newer = e->older = 0;
}

static void link_newest(cb_kept *k, uint32_t i)
{
    k->e[i].older = k->newest;
    k->e[i].newer = 0;
    if (k->newest)
        k->e[k->newest].newer = i;
    else
        k->oldest = i;
    k->newest = i;
}

/* Out of its bucket and the order of use, its record freed, onto the free list. */
static void remove_entry(cb_kept *k, uint32_t i)
{
    uint32_t *at = bucket_of(k, k->e[i].hash);
    while (*at != i)
        at = &k->e[*at].chain;
    *at = k->e[i].chain;
    unlink_use(k, i);
    if (k->e[i].rec)
        protobuf_c_message_free_unpacked(&k->e[i].rec->base, NULL);
    k->e[i] = (entry){.chain = k->free};
    k->free = i;
}

Carebridge__V1__PersonRecord *cb_kept_get(cb_kept *k, uint64_t hash)
{
    uint32_t i = find(k, hash);
    if (!i)
        return NULL;
    if (k->newest != i) {
        unlink_use(k, i);
        link_newest(k, i);
    }
    return k->e[i].rec;
}

void cb_kept_put(cb_kept *k, uint64_t hash, Carebridge__V1__PersonRecord *rec)
{
    uint32_t i = find(k, hash);
    if (i) {
        if (k->e[i].rec != rec)
            protobuf_c_message_free_unpacked(&k->e[i].rec->base, NULL);
        k->e[i].rec = rec;
        unlink_use(k, i);
        link_newest(k, i);
        return;
    }
    if (!k->free && k->used == k->cap)
        remove_entry(k, k->oldest);
    if (k->free) {
        i = k->free;
        k->free = k->e[i].chain;
    } else {
        i = ++k->used;
    }
    uint32_t *b = bucket_of(k, hash);
    k->e[i] = (entry){.hash = hash, .rec = rec, .chain = *b};
    *b = i;
    link_newest(k, i);
}

void cb_kept_drop(cb_kept *k, uint64_t hash)
{
    uint32_t i = find(k, hash);
    if (i)
        remove_entry(k, i);
}

void cb_kept_clear(cb_kept *k)
{
    while (k->newest)
        remove_entry(k, k->newest);
}
