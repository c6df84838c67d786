/* Who holds which CURVE key: each configured key names its principal (an
 * agency, or a person with a role) and the agencies whose people it may
 * see. The ZAP handlers look keys up here at each handshake; a reload
 * replaces the whole table at once. */
#ifndef CB_KEYRING_H
#define CB_KEYRING_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "curve.h"

#define CB_PRINCIPAL_NAME_MAX 64
#define CB_AGENCY_SET_BYTES   32 /* a bit per configured agency (at most 256) */

typedef struct {
    uint8_t key[32];
    char fingerprint[CB_FINGERPRINT_LEN + 1];
    char name[CB_PRINCIPAL_NAME_MAX]; /* the agency's id, or the person's name: the ZAP User-Id */
    cb_role role;
    int agency;                            /* an agency's index in the running configuration; else -1 */
    uint8_t agencies[CB_AGENCY_SET_BYTES]; /* whose people it may see: an agency itself, a coordinator's */
} cb_principal;

typedef struct cb_keyring cb_keyring;

/* The keys cfg lists, for a broker running with agencies from running
 * (the same configuration at start; at a reload, the reloaded one's keys
 * against the agencies the broker started with). NULL when out of memory. */
cb_keyring *cb_keyring_new(const cb_config *running, const cb_config *cfg);
void cb_keyring_free(cb_keyring **ring_p);
/* Take the keys of next (freed): true when a key known before is now
 * unknown or names another principal, whose connections must then go. */
bool cb_keyring_replace(cb_keyring *ring, cb_keyring **next_p);
size_t cb_keyring_size(cb_keyring *ring);

/* The principal holding key, copied out; false when no one does. Safe from
 * any thread. */
bool cb_keyring_find(cb_keyring *ring, const uint8_t key[32], cb_principal *out);
/* ... by the name a ZAP handler gave a connection as its User-Id, and the
 * fingerprint of its key. */
bool cb_keyring_find_named(cb_keyring *ring, const char *name, const char *fingerprint, cb_principal *out);

static inline bool cb_principal_sees(const cb_principal *p, unsigned agency)
{
    return agency < 8 * CB_AGENCY_SET_BYTES && (p->agencies[agency / 8] >> (agency % 8) & 1);
}

#endif
