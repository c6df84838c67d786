/* What the unit tests share: temporary directories, a real store in one,
 * the embedded configuration, and events built as a sender's system builds
 * them. */
#ifndef CB_TEST_FIXTURES_H
#define CB_TEST_FIXTURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cb_codec.h"
#include "config.h"
#include "store.h"

/* Create a fresh directory under /tmp into out (at least 32 bytes); false on failure. */
int cb_test_mkdtemp(char *out, size_t cap);
/* Remove path and, if it is a directory, everything under it. 0 on success. */
int cb_test_remove_tree(const char *path);

/* A real LMDB store in a temporary directory of its own. */
typedef struct {
    char root[40]; /* removed with everything in it */
    char dir[48];  /* the store's directory: root/db, created by cb_store_open */
    cb_store *store;
} cb_test_store;

/* Open a fresh store; false, having printed why, on failure (nothing left behind). */
bool cb_test_store_open(cb_test_store *t, uint64_t map_bytes, double publish_fraction);
/* Close it (if open) and remove its directory; 0 on success. */
int cb_test_store_close(cb_test_store *t);

/* A transaction on store; the test fails, naming why, if there is none. */
cb_txn *cb_test_begin(cb_store *store, bool write);

/* The embedded default configuration; NULL, having printed why, on failure. */
cb_config *cb_test_config(void);

/* A publish frame as a sender's system makes one, owning every part: a
 * referral from health to social-care for NHS number 943 476 5919, with the
 * essentials intake asks for. Change the parts before using it. */
typedef struct {
    cb_frame frame;
    Carebridge__V1__Publish publish;
    cb_envelope ev;
    Carebridge__V1__Person person;
    Carebridge__V1__Referral referral;
    Carebridge__V1__Response response;
    char id[64], reason[64], nhs[16], answers[64];
    char *to[4];
} cb_test_event;

#define CB_TEST_NHS "9434765919"

void cb_test_referral(cb_test_event *e, const char *id, const char *reason);
/* social-care's answer (status) to health's event `answers`. */
void cb_test_response(cb_test_event *e, const char *id, const char *answers, Carebridge__V1__Response__Status status);

#endif
