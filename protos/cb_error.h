/* The broker's error codes: the wire enum carebridge.v1.ErrorCode, a short C
 * name for each, and its human message. One table (CB_CODES) is the only place
 * a message is written; tests/unit/test_error.c fails if a wire code lacks one. */
#ifndef CB_ERROR_H
#define CB_ERROR_H

#include <stdarg.h>
#include "carebridge.pb-c.h"

#define CB_CODES(X)                                                                                                    \
    X(DECODE_ERROR, "the frame does not decode as a carebridge.v1.Frame")                                              \
    X(TOO_LARGE, "the frame is larger than the broker accepts")                                                        \
    X(INVALID_UTF8, "a string field is not valid UTF-8")                                                               \
    X(MISSING_FIELD, "an essential field of the envelope is missing")                                                  \
    X(INVALID_FIELD, "a field is present but cannot be used")                                                          \
    X(UNKNOWN_AGENCY, "the event names an agency the broker does not know")                                            \
    X(AGENCY_MISMATCH, "fromAgency is not the agency this connection serves")                                          \
    X(HELLO_REQUIRED, "the connection must say hello as its agency first")                                             \
    X(DUPLICATE_ID, "the event id is already stored with different content")                                           \
    X(STORE_FULL, "the store is full; nothing was written, retry later")                                               \
    X(STORE_UNAVAILABLE, "the store failed to commit; nothing was acknowledged")                                       \
    X(UNKNOWN_EVENT, "no stored event has that id")                                                                    \
    X(BAD_REQUEST, "the broker does not accept that frame here")                                                       \
    X(NOT_IN_FLIGHT, "that delivery is not in flight to this connection; nothing was deleted")                         \
    X(BUSY, "the broker has too many queries waiting; retry shortly")                                                  \
    X(NOT_PERMITTED, "this connection's key does not permit that")                                                     \
    X(NOT_YOUR_QUEUE, "this connection's key may take its own agency's queue only")

typedef enum {
    CB_OK = CAREBRIDGE__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED,
#define CB_X_ENUM(name, msg) CB_##name = CAREBRIDGE__V1__ERROR_CODE__##name,
    CB_CODES(CB_X_ENUM)
#undef CB_X_ENUM
} cb_code;

/* A code with a reason that names the field and what is wrong with it; the
 * reason never quotes a value, since values may be personal data. */
typedef struct {
    cb_code code;
    char reason[240];
} cb_error;

/* The wire name of a code ("STORE_FULL"), or "UNKNOWN" for a value outside the enum. */
const char *cb_code_name(cb_code code);
/* The human message for a code; NULL only for a code the table lacks. */
const char *cb_code_message(cb_code code);
/* Parse a wire name; CB_OK (0) if it names no code. */
cb_code cb_code_from_name(const char *name);

/* Set code and a printf-style reason; returns the code so callers can `return cb_fail(...)`. */
cb_code cb_fail(cb_error *err, cb_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
