/* Outbound MLLP: events addressed to health sent one at a time to the
 * hospital's interface engine, each taken once it answers MSA-1 AA (or CA).
 * An AE or AR leaves the delivery untaken (the broker delivers it again,
 * and parks it after its attempts); no answer within the timeout, or a
 * lost connection, sends it again on a new connection, backing off while
 * the engine is unreachable. It lives in the caller's poll loop. */
#ifndef CB_MLLP_FORWARD_H
#define CB_MLLP_FORWARD_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cb_mllp_forward cb_mllp_forward;
/* taken: the engine answered AA or CA; false: AE, AR or anything else. */
typedef void (*cb_mllp_forwarded_fn)(void *arg, uint64_t seq, const char *event_id, bool taken);

/* NULL with why when host_port does not resolve. */
cb_mllp_forward *cb_mllp_forward_new(const char *host_port, cb_mllp_forwarded_fn fn, void *arg, char *why, size_t cap);
void cb_mllp_forward_free(cb_mllp_forward **f_p);

/* Queue message (unframed) for delivery seq. */
void cb_mllp_forward_send(cb_mllp_forward *f, uint64_t seq, const char *event_id, const char *msg, size_t len);

size_t cb_mllp_forward_fds(cb_mllp_forward *f, struct pollfd *fds, size_t cap);
void cb_mllp_forward_handle(cb_mllp_forward *f, const struct pollfd *fds, size_t n);
int cb_mllp_forward_due_ms(const cb_mllp_forward *f);

#endif
