/* The decoded person records of the people seen most recently, by person
 * hash: a map in which one seen least recently makes way (kept.c: how).
 * Unpacking a record from the store was a sixth of the rules' time; a
 * set-associative table thrashed whenever more people met in one set than it
 * had ways (a fifth of lookups missed with 20,000 people in 32,768 places).
 * It owns its records; a record it hands out is borrowed. */
#ifndef CB_KEPT_H
#define CB_KEPT_H

#include <stddef.h>
#include <stdint.h>

#include "carebridge.pb-c.h"

typedef struct cb_kept cb_kept;

cb_kept *cb_kept_new(uint32_t cap);
void cb_kept_free(cb_kept **k_p);

/* The person's record, now marked used; NULL when not kept. */
Carebridge__V1__PersonRecord *cb_kept_get(cb_kept *k, uint64_t hash);

/* Keep rec (taken) as the person's, freeing the record it replaces and,
 * when full, one not used lately. */
void cb_kept_put(cb_kept *k, uint64_t hash, Carebridge__V1__PersonRecord *rec);

/* Let the person's record go, freed. */
void cb_kept_drop(cb_kept *k, uint64_t hash);

/* Let every record go. */
void cb_kept_clear(cb_kept *k);

#endif
