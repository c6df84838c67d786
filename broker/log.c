#include "log.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>

#include "cb_check.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static cb_log_level min_level = CB_LOG_INFO;
static uint8_t pseudonym_key[CB_PSEUDONYM_KEY_BYTES];
static char stderr_buf[1 << 16];

void cb_log_init(cb_log_level level)
{
    min_level = level;
    /* Fully buffered: a line per event must not cost a write(2) per event. */
    setvbuf(stderr, stderr_buf, _IOFBF, sizeof stderr_buf);
}

void cb_log_set_pseudonym_key(const uint8_t key[CB_PSEUDONYM_KEY_BYTES])
{
    memcpy(pseudonym_key, key, sizeof pseudonym_key);
}

/* "2026-11-20T09:30:00." for the current second, kept per thread: formatting
 * the date costs more than the rest of an event's line, and a second holds
 * many lines. */
static const char *second_prefix(time_t sec)
{
    static _Thread_local time_t cached = -1;
    static _Thread_local char text[64]; /* room for any int gmtime_r gives */
    if (sec != cached) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached = sec;
    }
    return text;
}

void cb_log(cb_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug ", "info ", "warn ", "error "};
    if (level < min_level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned ms = (unsigned)(ts.tv_nsec / 1000000);
    char millis[] = {(char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', ' '};
    const char *prefix = second_prefix(ts.tv_sec);
    flockfile(stderr); /* both threads log: keep each line whole */
    fputs(prefix, stderr);
    fwrite(millis, 1, sizeof millis, stderr);
    fputs(names[level], stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (level >= CB_LOG_WARN)
        fflush(stderr);
    funlockfile(stderr);
}

void cb_log_flush(void)
{
    fflush(stderr);
}

const char *cb_log_person(const Carebridge__V1__Person *p, char out[CB_PSEUDONYM_LEN])
{
    /* Hashed as "nhs:<number>", "chi:<number>" or "local:<system>:<value>". */
    const char *scheme, *system = NULL, *value;
    if (p && p->nhs_number[0])
        scheme = "nhs:", value = p->nhs_number;
    else if (p && p->chi_number[0])
        scheme = "chi:", value = p->chi_number;
    else if (p && p->n_local_ids)
        scheme = "local:", system = p->local_ids[0]->system, value = p->local_ids[0]->value;
    else
        return strcpy(out, "p-none");
    crypto_generichash_state st;
    crypto_generichash_init(&st, pseudonym_key, sizeof pseudonym_key, 5);
    crypto_generichash_update(&st, (const uint8_t *)scheme, strlen(scheme));
    if (system) {
        crypto_generichash_update(&st, (const uint8_t *)system, strlen(system));
        crypto_generichash_update(&st, (const uint8_t *)":", 1);
    }
    crypto_generichash_update(&st, (const uint8_t *)value, strlen(value));
    uint8_t h[5];
    crypto_generichash_final(&st, h, sizeof h);
    out[0] = 'p', out[1] = '-';
    sodium_bin2hex(out + 2, CB_PSEUDONYM_LEN - 2, h, sizeof h);
    return out;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Mask, in place, each run of digits (single spaces or dashes may join its
 * groups, as people write "943 476 5919") that holds ten consecutive digits
 * reading as an NHS or CHI number: the whole run, so no part of it is left.
 * A run of exactly ten digits is masked even when its check digit fails: a
 * mistyped number is still somebody's. */
static void mask_identifiers(char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        if (!is_digit(s[i])) {
            i++;
            continue;
        }
        char digits[CB_LOG_TEXT_MAX * 4];
        size_t end = i, n = 0;
        while (end < len && n < sizeof digits) {
            if (is_digit(s[end]))
                digits[n++] = s[end++];
            else if ((s[end] == ' ' || s[end] == '-') && end + 1 < len && is_digit(s[end + 1]))
                end++;
            else
                break;
        }
        bool found = n == 10;
        for (size_t from = 0; !found && from + 10 <= n; from++)
            found = cb_identifier_digits_valid(digits + from);
        for (size_t k = i; found && k < end; k++)
            if (is_digit(s[k]))
                s[k] = 'x';
        i = end;
    }
}

const char *cb_log_text(const char *text, cb_log_text_buf out)
{
    if (!text || !text[0])
        return strcpy(out, "-");
    /* Masked whole before it is cut, so a cut cannot leave part of a number
     * the masking would not have recognised. */
    size_t len = strnlen(text, 4 * CB_LOG_TEXT_MAX);
    char work[4 * CB_LOG_TEXT_MAX];
    memcpy(work, text, len);
    mask_identifiers(work, len);
    size_t n = len > CB_LOG_TEXT_MAX ? CB_LOG_TEXT_MAX : len;
    for (size_t i = 0; i < n; i++)
        out[i] = work[i] >= 0x20 && work[i] < 0x7f ? work[i] : '?';
    /* A cut through a run of digits leaves its head, which alone proves nothing either way. */
    for (size_t i = n; n < len && i > 0 && is_digit(out[i - 1]) && is_digit(work[n]); i--)
        out[i - 1] = 'x';
    strcpy(out + n, n < len ? "..." : "");
    return out;
}
