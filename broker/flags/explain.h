/* The words of a flag: what a coordinator reads to act on it. They name
 * agencies, fields and dates, never an NHS or CHI number or a name. */
#ifndef CB_EXPLAIN_H
#define CB_EXPLAIN_H

#include <stdint.h>

#include "cb_codec.h"

/* A timestamp of wall-clock ms, malloc'd (NULL for 0), for a Flag's times. */
Google__Protobuf__Timestamp *cb_explain_timestamp(int64_t ms);
/* "2 Dec 2026" (UTC), for ms since the epoch. */
const char *cb_explain_date(int64_t ms, char out[24]);
/* "4 h", "2 days", "35 min": a span for "late by". */
const char *cb_explain_span(int64_t ms, char out[32]);
/* "referral", "discharge", "handover", "response", "update", "closure". */
const char *cb_explain_body(int body_case);
/* A copy of s (NULL: "") for a message field; protobuf-c's empty default,
 * which its free leaves alone, when out of memory. */
char *cb_explain_dup(const char *s);
/* "The referral of 2 Dec 2026 from health to social-care", to begin a sentence. */
const char *cb_explain_event(const cb_envelope *ev, char *out, size_t cap);
/* A string from a format, malloc'd; NULL when out of memory. */
char *cb_explain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "a, b and c" of n strings into out (cap bytes). */
const char *cb_explain_list(char *const *items, size_t n, char *out, size_t cap);

/* An INTER_AGENCY_HANDOFF's words, from its record. */
char *cb_explain_handoff(const Carebridge__V1__HandoffRecord *rec, const Carebridge__V1__HandoffRecord__Recipient *r);

#endif
