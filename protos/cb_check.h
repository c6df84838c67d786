/* Checks on decoded messages that belong to the contract rather than to any
 * one component. */
#ifndef CB_CHECK_H
#define CB_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#include "carebridge.pb-c.h"
#include "cb_error.h"

/* The contract's limits: what fits the store's keys. */
#define CB_EVENT_ID_MAX    128
#define CB_IDENTIFIER_MAX  64
#define CB_CASE_REF_MAX    128
#define CB_PERSON_KEYS_MAX 8

/* Whether an envelope is admissible on its own: an eventId, recipients named
 * once each, occurredAt, a body and a person identifier, within the limits
 * and printable. CB_OK, or the code and a reason naming the field. What needs
 * the broker's configuration (which agencies exist, whom a connection serves)
 * is the broker's to check (intake.h); an adapter asks this before it keeps an
 * event, so what the broker would refuse is refused to its sender at once.
 * Completeness is never judged here: a body with missing fields is admitted. */
cb_code cb_envelope_check(const Carebridge__V1__Envelope *ev, cb_error *err);

/* True when every string in m, recursively, is valid UTF-8. Otherwise writes
 * the path of the first bad one in JSON names ("person.localIds[0].value"). */
bool cb_check_utf8(const ProtobufCMessage *m, char *path, size_t cap);

/* True when s is valid UTF-8 of exactly len bytes (no overlongs, no surrogates). */
bool cb_utf8_valid(const char *s, size_t len);

/* True when s is valid UTF-8 without control characters (C0, DEL or C1):
 * safe to put in a log line, an index key or a reason. */
bool cb_printable(const char *s);

/* Identifier checks. They inform flags; they never refuse an event. */
bool cb_nhs_number_valid(const char *s);
bool cb_chi_number_valid(const char *s);

/* Whether ten digits (known to be digits) read as an NHS or a CHI number,
 * in one pass: for the logger, which asks it of every run of ten. */
bool cb_identifier_digits_valid(const char ten[10]);

/* An NHS or CHI number as people write it ("943 476 5919", "943-476-5919")
 * in its one stored form: spaces and dashes removed, in place. Returns s. */
char *cb_identifier_normalise(char *s);

/* What is wrong with an NHS or CHI number that is still accepted: NULL when
 * nothing, else "format" (not ten digits), "date" (a CHI number's first six
 * digits are not a date) or "check-digit". Give it the normalised form. */
const char *cb_nhs_number_problem(const char *s);
const char *cb_chi_number_problem(const char *s);

#endif
