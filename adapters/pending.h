/* The answers an adapter owes its agency system: each message or request
 * that became an event waits, first for the batch it joined to commit (only
 * then is it the system's to forget), then for the broker's answer, so the
 * answer can carry the flags the event raised, but no longer than the wait
 * (the event is durable either way). The health and social care adapters
 * answer through this; each item is the caller's own (a connection's ticket
 * and message, an HTTP request). */
#ifndef CB_PENDING_H
#define CB_PENDING_H

#include <stdbool.h>
#include <stdint.h>

#include "adapter.h"

typedef struct cb_pending cb_pending;

typedef struct {
    /* Kept: ans is the broker's answer, or NULL when it was not waited for or did not come in time. */
    void (*accepted)(void *arg, void *item, const cb_adapter_answer *ans);
    /* Refused by the broker (now, or the first time it was sent): why is "CODE: reason". */
    void (*refused)(void *arg, void *item, const char *why);
    /* Not kept: the batch it joined did not commit (or the adapter is stopping first). */
    void (*failed)(void *arg, void *item);
} cb_pending_fns;

/* wait_ms: how long an answer waits for the broker (0: not at all). */
cb_pending *cb_pending_new(cb_adapter *a, int wait_ms, const cb_pending_fns *fns, void *arg);
/* Kept ones are answered accepted, the rest failed; then it is freed. */
void cb_pending_end(cb_pending **p_p);

/* An item whose event is in the open batch under seq (fresh: NEW there;
 * false: AGAIN, or a resend of an input kept before). False when out of memory. */
bool cb_pending_add(cb_pending *p, void *item, uint64_t seq, bool fresh);
/* The batch was committed (ok) or not: items waiting for it are answered, or now wait for the broker. */
void cb_pending_committed(cb_pending *p, bool ok);
/* From the adapter's answered handler. */
void cb_pending_answered(cb_pending *p, const cb_adapter_answer *ans);
/* Answer what has waited its time for the broker. */
void cb_pending_expire(cb_pending *p);
/* Until the next item's wait is over (1000 when none waits). */
int cb_pending_due_ms(const cb_pending *p);
/* Forget an item without answering it (its connection is gone). p may be
 * NULL: after cb_pending_end nothing is owed, but the server still reports
 * the end of each connection as it stops. */
void cb_pending_drop(cb_pending *p, void *item);

#endif
