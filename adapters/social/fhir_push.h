/* Outbound FHIR: each resource served to social care is also PUT to the
 * social care system's own FHIR server (--push BASE, as BASE/<type>/<id>:
 * an update that creates, so sending it again is harmless), one at a time
 * in the order delivered, so a later version never lands before an earlier
 * one. A 2xx answer takes the delivery. 408, 429, a 5xx and a server that
 * cannot be reached are the server's trouble, not the resource's: the same
 * PUT goes again, backing off from 1 s to 30 s. Any other answer leaves the
 * delivery untaken (the broker delivers it again and parks it after its
 * attempts), the status in the log. It lives in the caller's poll loop
 * (libcurl's multi socket interface). */
#ifndef CB_FHIR_PUSH_H
#define CB_FHIR_PUSH_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cb_fhir_push cb_fhir_push;
/* taken: the server answered 2xx; otherwise why says what it answered. */
typedef void (*cb_fhir_pushed_fn)(void *arg, uint64_t seq, const char *event_id, bool taken, const char *why);

/* NULL with why when base is not an http:// or https:// URL, or libcurl
 * cannot start. */
cb_fhir_push *cb_fhir_push_new(const char *base, cb_fhir_pushed_fn fn, void *arg, char *why, size_t cap);
void cb_fhir_push_free(cb_fhir_push **p_p);

/* Queue resource (JSON text, copied) for delivery seq, to BASE/path
 * ("Encounter/<id>"). False when out of memory: the delivery stays untaken. */
bool cb_fhir_push_send(cb_fhir_push *p, uint64_t seq, const char *event_id, const char *path, const char *resource);

size_t cb_fhir_push_fds(cb_fhir_push *p, struct pollfd *fds, size_t cap);
void cb_fhir_push_handle(cb_fhir_push *p, const struct pollfd *fds, size_t n);
int cb_fhir_push_due_ms(const cb_fhir_push *p);

#endif
