/* The message is kept as sent (in UTF-8: one that is not, in a set
 * charset_of names, is converted first), with a table of where each segment lies; a
 * position is found by splitting at its separators when it is asked for,
 * and only then unescaped, so an escaped separator (\F\, \S\ ...) is never
 * taken for a real one. Messages are a few kilobytes: a scan per lookup
 * costs less than building a tree of every field no mapping reads. */
#include "hl7.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cb_check.h"
#include "charset.h"

typedef struct {
    size_t at, len;
    char name[4];
} segment;

struct cb_hl7 {
    char *text;
    size_t len;
    cb_hl7_delims d;
    segment *segs;
    size_t n;
};

typedef struct {
    const char *p;
    size_t len;
} span;

static void fail(cb_hl7_error *err, int code, const char *seg, unsigned seq, unsigned field, const char *fmt, ...)
{
    if (!err)
        return;
    *err = (cb_hl7_error){.code = code, .sequence = seq, .field = field};
    snprintf(err->segment, sizeof err->segment, "%s", seg ? seg : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
}

static bool is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static bool is_alnum(char c)
{
    return is_upper(c) || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_line_end(char c)
{
    return c == '\r' || c == '\n';
}

/* A separator must be none of the others, no letter or digit, no line end. */
static bool usable(char c, const char *taken, size_t n)
{
    if (is_alnum(c) || is_line_end(c) || c == ' ' || (unsigned char)c < 0x20)
        return false;
    return !memchr(taken, c, n);
}

/* MSH-1 and MSH-2. Older senders may name fewer than four encoding
 * characters; the rest take their usual values when those are free. */
static bool read_delims(const char *t, size_t len, cb_hl7_delims *d, cb_hl7_error *err)
{
    if (len >= 3 && (!memcmp(t, "FHS", 3) || !memcmp(t, "BHS", 3))) {
        fail(err, CB_HL7_SEGMENT_SEQUENCE, "MSH", 1, 0,
             "the message does not begin with an MSH segment: a batch (FHS/BHS) is not taken; send one message per "
             "MLLP frame");
        return false;
    }
    if (len < 4 || memcmp(t, "MSH", 3) != 0) {
        fail(err, CB_HL7_SEGMENT_SEQUENCE, "MSH", 1, 0, "the message does not begin with an MSH segment");
        return false;
    }
    char taken[6] = {0};
    size_t n = 0;
    d->field = t[3];
    if (!usable(d->field, taken, n)) {
        fail(err, CB_HL7_DATA_TYPE, "MSH", 1, 1, "MSH-1 is not a usable field separator");
        return false;
    }
    taken[n++] = d->field;
    size_t end = 4;
    while (end < len && t[end] != d->field && !is_line_end(t[end]))
        end++;
    size_t given = end - 4;
    if (given < 1 || given > 5) {
        fail(err, CB_HL7_DATA_TYPE, "MSH", 1, 2,
             "MSH-2 has %zu encoding characters (4 expected: component, repetition, "
             "escape, subcomponent)",
             given);
        return false;
    }
    const char usual[4] = {'^', '~', '\\', '&'};
    char *mine[4] = {&d->component, &d->repetition, &d->escape, &d->subcomponent};
    for (size_t i = 0; i < 4; i++) {
        char c = i < given ? t[4 + i] : usual[i];
        if (!usable(c, taken, n)) {
            fail(err, CB_HL7_DATA_TYPE, "MSH", 1, 2,
                 "MSH-2's encoding character %zu is not usable (a repeat, a letter, "
                 "a digit or a space)",
                 i + 1);
            return false;
        }
        *mine[i] = c;
        taken[n++] = c;
    }
    return true; /* a fifth (the truncation character of v2.7) is not used */
}

static bool blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t')
            return false;
    return true;
}

static bool add_segment(cb_hl7 *m, size_t at, size_t len, size_t *cap)
{
    if (m->n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        segment *s = realloc(m->segs, c * sizeof *s);
        if (!s)
            return false;
        m->segs = s, *cap = c;
    }
    segment *s = &m->segs[m->n++];
    s->at = at, s->len = len;
    memcpy(s->name, m->text + at, 3);
    s->name[3] = 0;
    return true;
}

void cb_hl7_free(cb_hl7 **m_p)
{
    cb_hl7 *m = *m_p;
    if (m) {
        free(m->text);
        free(m->segs);
        free(m);
    }
    *m_p = NULL;
}

static cb_hl7 *parse_text(const void *bytes, size_t len, cb_hl7_error *err)
{
    const char *t = bytes;
    size_t bom = cb_charset_bom(t, len);
    t += bom, len -= bom;
    while (len && (is_line_end(*t) || *t == ' ' || *t == '\t'))
        t++, len--;
    if (memchr(t, 0, len)) {
        fail(err, CB_HL7_DATA_TYPE, NULL, 0, 0, "the message contains a NUL byte");
        return NULL;
    }
    cb_hl7 *m = calloc(1, sizeof *m);
    if (!m || !(m->text = malloc(len + 1))) {
        free(m);
        fail(err, CB_HL7_INTERNAL, NULL, 0, 0, "out of memory");
        return NULL;
    }
    memcpy(m->text, t, len);
    m->text[len] = 0;
    m->len = len;
    if (!read_delims(m->text, len, &m->d, err)) {
        cb_hl7_free(&m);
        return NULL;
    }
    size_t cap = 0;
    for (size_t at = 0; at < len;) {
        size_t end = at;
        while (end < len && !is_line_end(m->text[end]))
            end++;
        size_t n = end - at;
        const char *s = m->text + at;
        if (n && !blank(s, n)) {
            if (n < 3 || !is_upper(s[0]) || !is_alnum(s[1]) || !is_alnum(s[2]) || (n > 3 && s[3] != m->d.field)) {
                fail(err, CB_HL7_SEGMENT_SEQUENCE, NULL, 0, 0,
                     "segment %zu does not begin with a segment name and a field separator", m->n + 1);
                cb_hl7_free(&m);
                return NULL;
            }
            if (!add_segment(m, at, n, &cap)) {
                fail(err, CB_HL7_INTERNAL, NULL, 0, 0, "out of memory");
                cb_hl7_free(&m);
                return NULL;
            }
        }
        at = end + 1; /* \r\n is a line end and an empty line */
    }
    return m;
}

/* The character set a message that is not UTF-8 is in, as iconv names it,
 * into out; false when it is to be read as sent. Text that is UTF-8 is
 * taken as UTF-8 whatever MSH-18 says (a template's 8859/1 over UTF-8 is a
 * common slip; real Latin-1 text is almost never valid UTF-8). MSH-18
 * 8859/1 (ISO IR100), none or ASCII: Windows-1252, of which 8859-1's
 * printable characters are a part and which UK PAS feeds send undeclared;
 * 8859/n: ISO-8859-n. Other sets (GB 18030, ISO IR87, ...), and
 * separators past ASCII, which a conversion would change: as sent. */
static bool charset_of(const cb_hl7 *m, char out[24])
{
    const cb_hl7_delims *d = &m->d;
    if (cb_utf8_valid(m->text, m->len) ||
        ((d->field | d->component | d->repetition | d->escape | d->subcomponent) & 0x80))
        return false;
    char set[40];
    if (cb_hl7_get(m, (cb_hl7_at){0, 18, 1, 1, 0}, set, sizeof set) != CB_HL7_VALUE)
        set[0] = 0;
    unsigned n;
    char end;
    if (!set[0] || !strcmp(set, "ASCII") || !strcmp(set, "8859/1") || !strcmp(set, "ISO IR100") ||
        !strcmp(set, "ISO IR 100")) {
        snprintf(out, 24, "WINDOWS-1252");
        return true;
    }
    if (sscanf(set, "8859/%u%c", &n, &end) == 1 && n >= 2 && n <= 16) {
        snprintf(out, 24, "ISO-8859-%u", n);
        return true;
    }
    return false;
}

cb_hl7 *cb_hl7_parse(const void *bytes, size_t len, cb_hl7_error *err)
{
    cb_hl7 *m = parse_text(bytes, len, err);
    size_t n, cap = 0;
    char charset[24], *utf8 = NULL;
    cb_hl7 *converted = m && charset_of(m, charset) && cb_charset_to_utf8(charset, m->text, m->len, &utf8, &cap, &n)
                            ? parse_text(utf8, n, NULL) /* the same segments, ASCII kept as it was */
                            : NULL;
    free(utf8);
    if (!converted) /* UTF-8 already, or bytes its set leaves undefined: read as they came */
        return m;
    cb_hl7_free(&m);
    return converted;
}

const cb_hl7_delims *cb_hl7_delimiters(const cb_hl7 *m)
{
    return &m->d;
}

size_t cb_hl7_segment_count(const cb_hl7 *m)
{
    return m->n;
}

const char *cb_hl7_segment_name(const cb_hl7 *m, size_t i)
{
    return i < m->n ? m->segs[i].name : "";
}

void cb_hl7_segment_text(const cb_hl7 *m, size_t i, const char **p, size_t *len)
{
    *p = i < m->n ? m->text + m->segs[i].at : "";
    *len = i < m->n ? m->segs[i].len : 0;
}

long cb_hl7_find(const cb_hl7 *m, const char *name, size_t from)
{
    for (size_t i = from; i < m->n; i++)
        if (!strcmp(m->segs[i].name, name))
            return (long)i;
    return -1;
}

/* The k-th piece (from 1) of s split at sep; false when there are fewer. */
static bool piece(span s, char sep, unsigned k, span *out)
{
    const char *p = s.p, *end = s.p + s.len;
    for (unsigned i = 1; i < k; i++) {
        const char *q = memchr(p, sep, (size_t)(end - p));
        if (!q)
            return false;
        p = q + 1;
    }
    const char *q = memchr(p, sep, (size_t)(end - p));
    *out = (span){p, (size_t)((q ? q : end) - p)};
    return true;
}

/* The field's text; false when the segment has no such field. MSH-1 and
 * MSH-2 are the separators themselves. */
static bool field_of(const cb_hl7 *m, size_t seg, unsigned field, span *out, bool *raw)
{
    *raw = false;
    if (seg >= m->n || field == 0)
        return false;
    const segment *s = &m->segs[seg];
    span all = {m->text + s->at, s->len};
    bool msh = !strcmp(s->name, "MSH");
    if (msh && field == 1) {
        *out = (span){all.p + 3, 1};
        *raw = true;
        return true;
    }
    /* Split after the name: PID|a|b gives "", "a", "b"; MSH|^~\&|c gives "", "^~\&", "c". */
    if (!piece((span){all.p + 3, all.len - 3}, m->d.field, (msh ? field - 1 : field) + 1, out))
        return false;
    *raw = msh && field == 2;
    return true;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

static int hex_val(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

typedef struct {
    char *buf;
    size_t cap, n;
    bool over;
} out_buf;

static void put(out_buf *o, const char *p, size_t n)
{
    if (o->n + n >= o->cap) {
        o->over = true;
        return;
    }
    memcpy(o->buf + o->n, p, n);
    o->n += n;
}

/* One escape sequence's meaning (the text between two escape characters):
 * false when it has none this reader knows, and is kept as written. */
static bool decode_escape(const cb_hl7_delims *d, const char *e, size_t n, out_buf *o)
{
    if (n == 1) {
        char c = *e == 'F'   ? d->field
                 : *e == 'S' ? d->component
                 : *e == 'T' ? d->subcomponent
                 : *e == 'R' ? d->repetition
                 : *e == 'E' ? d->escape
                             : 0;
        if (c) {
            put(o, &c, 1);
            return true;
        }
        return *e == 'H' || *e == 'N'; /* highlighting on and off: no text */
    }
    if (*e == 'X' && n > 1 && n % 2 == 1) {
        char bytes[64];
        size_t k = 0;
        for (size_t i = 1; i < n; i += 2) {
            if (!is_hex(e[i]) || !is_hex(e[i + 1]) || k == sizeof bytes)
                return false;
            bytes[k] = (char)(hex_val(e[i]) << 4 | hex_val(e[i + 1]));
            if (!bytes[k++])
                return false; /* a NUL would end the value */
        }
        put(o, bytes, k);
        return true;
    }
    if (*e == '.') { /* formatting: a line break or a skip becomes a new line, the rest nothing */
        if ((n == 3 && !memcmp(e, ".br", 3)) || (n >= 3 && !memcmp(e, ".sp", 3)))
            put(o, "\n", 1);
        return true;
    }
    if (*e == 'C' || *e == 'M') /* a switch of character set: the text stays as sent */
        return true;
    return false;
}

static void unescape(const cb_hl7_delims *d, span s, out_buf *o)
{
    const char *p = s.p, *end = s.p + s.len;
    while (p < end && !o->over) {
        const char *esc = memchr(p, d->escape, (size_t)(end - p));
        if (!esc) {
            put(o, p, (size_t)(end - p));
            return;
        }
        put(o, p, (size_t)(esc - p));
        const char *close = memchr(esc + 1, d->escape, (size_t)(end - esc - 1));
        if (!close) { /* an escape character never closed: taken as itself */
            put(o, esc, (size_t)(end - esc));
            return;
        }
        if (!decode_escape(d, esc + 1, (size_t)(close - esc - 1), o))
            put(o, esc, (size_t)(close - esc + 1));
        p = close + 1;
    }
}

cb_hl7_kind cb_hl7_get(const cb_hl7 *m, cb_hl7_at at, char *buf, size_t cap)
{
    if (cap)
        buf[0] = 0;
    span s;
    bool raw;
    if (!field_of(m, at.segment, at.field, &s, &raw))
        return CB_HL7_ABSENT;
    if (!raw) {
        if (!piece(s, m->d.repetition, at.rep ? at.rep : 1, &s))
            return CB_HL7_ABSENT;
        if (at.comp && !piece(s, m->d.component, at.comp, &s))
            return CB_HL7_ABSENT;
        if (at.comp && at.sub && !piece(s, m->d.subcomponent, at.sub, &s))
            return CB_HL7_ABSENT;
    } else if (at.rep > 1 || at.comp > 1 || at.sub > 1) {
        return CB_HL7_ABSENT;
    }
    if (!s.len)
        return CB_HL7_ABSENT;
    if (s.len == 2 && s.p[0] == '"' && s.p[1] == '"')
        return CB_HL7_NULL;
    out_buf o = {buf, cap, 0, false};
    if (raw)
        put(&o, s.p, s.len);
    else
        unescape(&m->d, s, &o);
    if (o.over || !cap) {
        if (cap)
            buf[0] = 0;
        return CB_HL7_TOO_LONG;
    }
    buf[o.n] = 0;
    return CB_HL7_VALUE;
}

bool cb_hl7_raw(const cb_hl7 *m, size_t segment, unsigned field, const char **p, size_t *len)
{
    span s;
    bool raw;
    if (!field_of(m, segment, field, &s, &raw) || !s.len)
        return false;
    *p = s.p;
    *len = s.len;
    return true;
}

unsigned cb_hl7_repetitions(const cb_hl7 *m, size_t segment, unsigned field)
{
    span s;
    bool raw;
    if (!field_of(m, segment, field, &s, &raw) || !s.len)
        return 0;
    if (raw)
        return 1;
    unsigned n = 1;
    for (size_t i = 0; i < s.len; i++)
        n += s.p[i] == m->d.repetition;
    return n;
}

size_t cb_hl7_escape(const cb_hl7_delims *d, const char *text, char *out, size_t cap)
{
    out_buf o = {out, cap, 0, false};
    for (const char *p = text; *p && !o.over; p++) {
        char code = *p == d->field          ? 'F'
                    : *p == d->component    ? 'S'
                    : *p == d->subcomponent ? 'T'
                    : *p == d->repetition   ? 'R'
                    : *p == d->escape       ? 'E'
                                            : 0;
        if (code) {
            char e[3] = {d->escape, code, d->escape};
            put(&o, e, 3);
        } else {
            put(&o, is_line_end(*p) ? " " : p, 1); /* a line end would end the segment */
        }
    }
    if (o.over || !cap) {
        if (cap)
            out[0] = 0;
        return 0;
    }
    out[o.n] = 0;
    return o.n;
}
