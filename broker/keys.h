/* Keys made of typed parts, after CZ.NIC Knot's knot_lmdb_make_key. In a
 * key, integers are big-endian and a string ends with its NUL, so the byte
 * order of two keys is the order of their parts, part by part, and every key
 * that begins with some parts lies in one range: a prefix scan. A keyspace's
 * keys are described by one format, a character a part:
 *   'S' a string (const char *, at most CB_KEY_MAX bytes, no NUL inside)
 *   'Q' a uint64_t    'L' a uint32_t    'B' a uint8_t (passed as unsigned)
 * A key that does not fit is not made: never truncated. */
#ifndef CB_KEYS_H
#define CB_KEYS_H

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CB_KEY_BYTES 511 /* LMDB's longest key */

typedef struct {
    uint8_t b[CB_KEY_BYTES];
    size_t len;
} cb_key;

/* k holds the parts; false (k empty) when they do not fit or the format is unknown. */
bool cb_key_make(cb_key *k, const char *format, ...);
/* Read a key back by its format; a string part points into the key. False
 * when the key does not have exactly that shape. */
bool cb_key_parse(const void *key, size_t len, const char *format, ...);
/* True when key begins with prefix's bytes (a key of some leading parts). */
bool cb_key_has_prefix(const void *key, size_t len, const cb_key *prefix);

/* One 8-byte move each way: a key written a byte at a time and read back
 * as a word stalled the store's forwarding (a tenth of cb_key_make's time). */
static inline void cb_be64_put(uint8_t *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, sizeof v);
}

static inline uint64_t cb_be64_get(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return be64toh(v);
}

#endif
