#include "keys.h"

#include <stdarg.h>
#include <string.h>

#include "store.h"

/* 'L' parts are read with va_arg(ap, uint32_t): it must not be promoted. */
_Static_assert(sizeof(uint32_t) >= sizeof(int), "uint32_t is passed to varargs unpromoted");

static bool put(cb_key *k, const void *p, size_t n)
{
    if (n > sizeof k->b - k->len)
        return false;
    memcpy(k->b + k->len, p, n);
    k->len += n;
    return true;
}

static bool put_be(cb_key *k, uint64_t v, size_t bytes)
{
    uint8_t b[8];
    cb_be64_put(b, v << (64 - 8 * bytes)); /* its low bytes first, in the order they are kept */
    return put(k, b, bytes);
}

bool cb_key_make(cb_key *k, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    k->len = 0;
    bool ok = true;
    for (const char *f = format; ok && *f; f++) {
        switch (*f) {
        case 'S': {
            const char *s = va_arg(ap, const char *);
            size_t n = strlen(s);
            ok = n <= CB_KEY_MAX && put(k, s, n + 1);
            break;
        }
        case 'Q': ok = put_be(k, va_arg(ap, uint64_t), 8); break;
        case 'L': ok = put_be(k, va_arg(ap, uint32_t), 4); break;
        case 'B': ok = put_be(k, va_arg(ap, unsigned) & 0xFF, 1); break;
        default: ok = false; break;
        }
    }
    va_end(ap);
    if (!ok)
        k->len = 0;
    return ok;
}

bool cb_key_parse(const void *key, size_t len, const char *format, ...)
{
    const uint8_t *p = key, *end = p + len;
    va_list ap;
    va_start(ap, format);
    bool ok = true;
    for (const char *f = format; ok && *f; f++) {
        size_t n = *f == 'Q' ? 8 : *f == 'L' ? 4 : *f == 'B' ? 1 : 0;
        if (*f == 'S') {
            const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
            if ((ok = nul != NULL)) {
                *va_arg(ap, const char **) = (const char *)p;
                p = nul + 1;
            }
            continue;
        }
        if (!n || (size_t)(end - p) < n) {
            ok = false;
            break;
        }
        uint8_t b[8] = {0};
        memcpy(b + 8 - n, p, n);
        uint64_t v = cb_be64_get(b);
        if (*f == 'Q')
            *va_arg(ap, uint64_t *) = v;
        else if (*f == 'L')
            *va_arg(ap, uint32_t *) = (uint32_t)v;
        else
            *va_arg(ap, uint8_t *) = (uint8_t)v;
        p += n;
    }
    va_end(ap);
    return ok && p == end;
}

bool cb_key_has_prefix(const void *key, size_t len, const cb_key *prefix)
{
    return len >= prefix->len && memcmp(key, prefix->b, prefix->len) == 0;
}
