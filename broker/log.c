#include "log.h"

#include <sodium.h>
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

void cb_log(cb_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < min_level)
        return;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    flockfile(stderr); /* both threads log: keep each line whole */
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
            tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level]);
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
    char id[512];
    if (p && p->nhs_number[0])
        snprintf(id, sizeof id, "nhs:%s", p->nhs_number);
    else if (p && p->chi_number[0])
        snprintf(id, sizeof id, "chi:%s", p->chi_number);
    else if (p && p->n_local_ids)
        snprintf(id, sizeof id, "local:%s:%s", p->local_ids[0]->system, p->local_ids[0]->value);
    else
        return strcpy(out, "p-none");
    uint8_t h[5];
    crypto_generichash(h, sizeof h, (const uint8_t *)id, strlen(id), pseudonym_key, sizeof pseudonym_key);
    snprintf(out, CB_PSEUDONYM_LEN, "p-%02x%02x%02x%02x%02x", h[0], h[1], h[2], h[3], h[4]);
    return out;
}
