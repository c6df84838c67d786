#include "charset.h"

#include <iconv.h>
#include <stdlib.h>
#include <string.h>

bool cb_charset_to_utf8(const char *charset, const char *text, size_t len, char **out, size_t *cap, size_t *out_len)
{
    size_t need = 3 * len + 1; /* no character of these sets takes more than three bytes */
    if (*cap < need) {
        char *grown = realloc(*out, need);
        if (!grown)
            return false;
        *out = grown, *cap = need;
    }
    iconv_t cd = iconv_open("UTF-8", charset);
    if (cd == (iconv_t)-1)
        return false;
    char *in = (char *)text, *o = *out;
    size_t in_left = len, left = *cap - 1;
    bool ok = iconv(cd, &in, &in_left, &o, &left) != (size_t)-1 && !in_left;
    iconv_close(cd);
    if (!ok)
        return false;
    *o = 0;
    *out_len = (size_t)(o - *out);
    return true;
}

size_t cb_charset_bom(const char *text, size_t len)
{
    return len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3) ? 3 : 0;
}
