/* The broker's one logger: a line per event or error on stderr, buffered and
 * flushed once per loop iteration. Personal identifiers reach it only as
 * pseudonyms: a keyed hash (libsodium), stable for the same person across
 * restarts because the key lives in the store. */
#ifndef CB_LOG_H
#define CB_LOG_H

#include <stdint.h>
#include "carebridge.pb-c.h"

typedef enum { CB_LOG_DEBUG, CB_LOG_INFO, CB_LOG_WARN, CB_LOG_ERROR } cb_log_level;

#define CB_PSEUDONYM_KEY_BYTES 32
#define CB_PSEUDONYM_LEN       14 /* "p-" + 10 hex digits + NUL, rounded */

void cb_log_init(cb_log_level min_level);
void cb_log_set_pseudonym_key(const uint8_t key[CB_PSEUDONYM_KEY_BYTES]);
void cb_log(cb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cb_log_flush(void);

/* A short pseudonym for the person ("p-3fa9c01b2e"), from their NHS number,
 * else CHI number, else first local id; "p-none" when they have none. */
const char *cb_log_person(const Carebridge__V1__Person *person, char out[CB_PSEUDONYM_LEN]);

/* Text a sender chose (an event id, a client name) made fit for a log line:
 * every run of digits that reads as an NHS or CHI number (its check digit
 * passing, written whole or in groups split by spaces or dashes), and every
 * run of exactly ten digits, is replaced
 * by 'x's, any byte that is not printable ASCII by '?', and what is longer
 * than CB_LOG_TEXT_MAX is cut short with "...". "-" for an empty text. */
#define CB_LOG_TEXT_MAX 64
typedef char cb_log_text_buf[CB_LOG_TEXT_MAX + 4];
const char *cb_log_text(const char *sender_text, cb_log_text_buf out);

#endif
