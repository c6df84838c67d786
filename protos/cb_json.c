#include "cb_json.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cb_check.h"
#include "cb_fields.h"
#include "google/protobuf/timestamp.pb-c.h"

/* One conversion in progress. The path names the field being converted, so an
 * error anywhere below can say where it happened without saying what was there. */
typedef struct {
    cb_error err;
    char path[200];
    size_t len;
    bool big; /* the JSON is load_big's: a string starting with U+0000 is an integer literal */
} walk;

/* Timestamps must lie in 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z. */
#define TS_MIN_SECONDS INT64_C(-62135596800)
#define TS_MAX_SECONDS INT64_C(253402300799)

/* ------------------------------------------------------------------ names */

/* proto3's JSON name drops each underscore and upper-cases the letter after
 * it. Yields the next character of that spelling of *name, '\0' at the end. */
static char camel_next(const char **name)
{
    bool upper = false;
    for (; **name == '_'; (*name)++)
        upper = true;
    char c = **name;
    if (c)
        (*name)++;
    return upper && c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static char *json_name(const char *name)
{
    char *out = malloc(strlen(name) + 1), *o = out;
    if (!out)
        return NULL;
    while ((*o++ = camel_next(&name)))
        ;
    return out;
}

void cb_json_field_name(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    for (char c; cap && n + 1 < cap && (c = camel_next(&name));)
        out[n++] = c;
    if (cap)
        out[n] = '\0';
}

/* Compared in place, so looking up a key allocates nothing. */
static bool json_name_is(const char *name, const char *key)
{
    for (char c; (c = camel_next(&name));)
        if (*key++ != c)
            return false;
    return *key == '\0';
}

static const ProtobufCFieldDescriptor *field_by_key(const ProtobufCMessageDescriptor *d, const char *key)
{
    for (unsigned i = 0; i < d->n_fields; i++)
        if (json_name_is(d->fields[i].name, key) || strcmp(d->fields[i].name, key) == 0)
            return &d->fields[i];
    return NULL;
}

/* ------------------------------------------------------------------- path */

/* Appends ".name" (JSON spelling) and returns the length to restore. A path
 * too long for the buffer is cut short: it only ever feeds an error reason. */
static size_t path_push(walk *w, const char *name)
{
    size_t old = w->len, n = old;
    if (old && n + 1 < sizeof w->path)
        w->path[n++] = '.';
    for (char c; n + 1 < sizeof w->path && (c = camel_next(&name));)
        w->path[n++] = c;
    w->path[n] = '\0';
    w->len = n;
    return old;
}

static size_t path_index(walk *w, size_t i)
{
    size_t old = w->len;
    int n = snprintf(w->path + old, sizeof w->path - old, "[%zu]", i);
    w->len = old + (n > 0 ? (size_t)n : 0);
    if (w->len >= sizeof w->path)
        w->len = sizeof w->path - 1;
    return old;
}

static void path_pop(walk *w, size_t old)
{
    w->len = old;
    w->path[old] = '\0';
}

/* Error text must not echo input, yet an unknown key or enum name is worth
 * naming: keep it to printable ASCII and at most cap - 1 bytes. Returns whether
 * s was cut short. */
static bool safe_text(char *out, size_t cap, const char *s, size_t len)
{
    size_t i = 0;
    for (; i < len && i + 1 < cap; i++)
        out[i] = s[i] > ' ' && s[i] < 0x7f && s[i] != '\'' ? s[i] : '?';
    out[i] = '\0';
    return i < len;
}

/* Hands the outcome to the caller. A failure with no reason recorded can only
 * have been an allocation inside jansson or here. */
static void report(const walk *w, cb_error *err)
{
    if (w->err.code != CB_OK) {
        if (err)
            *err = w->err;
        return;
    }
    cb_fail(err, CB_INVALID_FIELD, "out of memory converting %s", w->len ? w->path : "the message");
}

/* --------------------------------------------------------- input strings */

/* An integer literal outside int64, which only load_big lets through. */
static bool is_big(const walk *w, const json_t *j)
{
    return w->big && json_string_length(j) > 0 && json_string_value(j)[0] == '\0';
}

/* A string the input gave as a string. */
static bool is_text(const walk *w, const json_t *j)
{
    return json_is_string(j) && !is_big(w, j);
}

/* Whether a string is exactly word: a U+0000 inside must not end it early. */
static bool spelled(const json_t *j, const char *word)
{
    return json_string_length(j) == strlen(word) && strcmp(json_string_value(j), word) == 0;
}

/* The decimal text of a string, or of a big literal without its U+0000. */
static const char *integer_text(const walk *w, const json_t *j, size_t *len)
{
    size_t skip = is_big(w, j) ? 1 : 0;
    *len = json_string_length(j) - skip;
    return json_string_value(j) + skip;
}

/* ------------------------------------------------------------ timestamps */

/* Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static unsigned days_in_month(int y, int m)
{
    static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return days[m - 1] + (m == 2 && leap);
}

/* Exactly n ASCII digits; stops at the terminating NUL, so it never reads past it. */
static bool digits(const char *s, int n, int *out)
{
    *out = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *out = *out * 10 + (s[i] - '0');
    }
    return true;
}

/* Nanoseconds from ".f" with 1..9 digits; *p is left after them. */
static bool fraction(const char **p, int32_t *nanos)
{
    const char *s = *p + 1;
    int n = 0;
    *nanos = 0;
    for (; *s >= '0' && *s <= '9'; s++, n++) {
        if (n == 9)
            return false;
        *nanos = *nanos * 10 + (*s - '0');
    }
    for (int i = n; i < 9; i++)
        *nanos *= 10;
    *p = s;
    return n > 0;
}

/* "Z" or "+hh:mm" / "-hh:mm", as seconds east of UTC. */
static bool utc_offset(const char **p, int *offset)
{
    const char *s = *p;
    int hh, mm;
    if (*s == 'Z') {
        *offset = 0;
        *p = s + 1;
        return true;
    }
    if ((*s != '+' && *s != '-') || !digits(s + 1, 2, &hh) || s[3] != ':' || !digits(s + 4, 2, &mm) || hh > 23 ||
        mm > 59)
        return false;
    *offset = (*s == '-' ? -1 : 1) * (hh * 3600 + mm * 60);
    *p = s + 6;
    return true;
}

/* RFC 3339 as proto3 JSON accepts it: "YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|±hh:mm)". */
static bool parse_rfc3339(const char *s, size_t len, int64_t *seconds, int32_t *nanos)
{
    int y, mo, d, h, mi, sec, offset;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d) ||
        s[10] != 'T' || !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return false;
    const char *p = s + 19;
    *nanos = 0;
    if (*p == '.' && !fraction(&p, nanos))
        return false;
    if (!utc_offset(&p, &offset) || (size_t)(p - s) != len)
        return false;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || (unsigned)d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59)
        return false;
    *seconds = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    return *seconds >= TS_MIN_SECONDS && *seconds <= TS_MAX_SECONDS;
}

static json_t *timestamp_to_json(walk *w, const Google__Protobuf__Timestamp *ts)
{
    if (ts->seconds < TS_MIN_SECONDS || ts->seconds > TS_MAX_SECONDS || ts->nanos < 0 || ts->nanos > 999999999) {
        cb_fail(&w->err, CB_INVALID_FIELD, "%s: timestamp outside years 0001-9999", w->path);
        return NULL;
    }
    int64_t days = ts->seconds / 86400, rem = ts->seconds % 86400, y;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    /* As few fractional digits as carry the value, in groups of three. */
    char frac[16] = "";
    if (ts->nanos % 1000000 == 0 && ts->nanos)
        snprintf(frac, sizeof frac, ".%03" PRId32, ts->nanos / 1000000);
    else if (ts->nanos % 1000 == 0 && ts->nanos)
        snprintf(frac, sizeof frac, ".%06" PRId32, ts->nanos / 1000);
    else if (ts->nanos)
        snprintf(frac, sizeof frac, ".%09" PRId32, ts->nanos);
    char text[64];
    snprintf(text, sizeof text, "%04" PRId64 "-%02u-%02uT%02u:%02u:%02u%sZ", y, m, d, (unsigned)(rem / 3600),
             (unsigned)(rem / 60 % 60), (unsigned)(rem % 60), frac);
    return json_string(text);
}

static ProtobufCMessage *timestamp_from_json(walk *w, const json_t *j)
{
    int64_t seconds;
    int32_t nanos;
    if (!is_text(w, j) || !parse_rfc3339(json_string_value(j), json_string_length(j), &seconds, &nanos)) {
        cb_fail(&w->err, CB_INVALID_FIELD, "%s: expected an RFC 3339 UTC timestamp such as 2026-11-20T09:30:00Z",
                w->path);
        return NULL;
    }
    Google__Protobuf__Timestamp *ts = malloc(sizeof *ts);
    if (!ts)
        return NULL;
    google__protobuf__timestamp__init(ts);
    ts->seconds = seconds;
    ts->nanos = nanos;
    return &ts->base;
}

/* ------------------------------------------------------- message to JSON */

static json_t *message_to_json(walk *w, const ProtobufCMessage *m);

static json_t *string_to_json(walk *w, const char *s)
{
    if (!s) {
        cb_fail(&w->err, CB_INVALID_FIELD, "%s is a null string", w->path);
        return NULL;
    }
    if (!cb_utf8_valid(s, strlen(s))) {
        cb_fail(&w->err, CB_INVALID_UTF8, "%s is not valid UTF-8", w->path);
        return NULL;
    }
    return json_string(s);
}

static json_t *bytes_to_json(const ProtobufCBinaryData *b)
{
    if (b->len == 0)
        return json_string("");
    size_t cap = sodium_base64_ENCODED_LEN(b->len, sodium_base64_VARIANT_ORIGINAL);
    char *text = malloc(cap);
    if (!text)
        return NULL;
    sodium_bin2base64(text, cap, b->data, b->len, sodium_base64_VARIANT_ORIGINAL);
    json_t *j = json_string(text);
    free(text);
    return j;
}

/* JSON has no NaN or infinities; proto3 spells them as strings. */
static json_t *number_to_json(double v)
{
    if (isnan(v))
        return json_string("NaN");
    if (isinf(v))
        return json_string(v > 0 ? "Infinity" : "-Infinity");
    return json_real(v);
}

static json_t *enum_to_json(const ProtobufCEnumDescriptor *ed, int value)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, value);
    return ev ? json_string(ev->name) : json_integer(value);
}

/* 64-bit integers travel as strings: JavaScript numbers lose precision past 2^53. */
static json_t *int64_to_json(int64_t v)
{
    char text[24];
    snprintf(text, sizeof text, "%" PRId64, v);
    return json_string(text);
}

static json_t *uint64_to_json(uint64_t v)
{
    char text[24];
    snprintf(text, sizeof text, "%" PRIu64, v);
    return json_string(text);
}

/* One value of field fd, stored at p (the member itself, or one array element). */
static json_t *value_to_json(walk *w, const ProtobufCFieldDescriptor *fd, const void *p)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: return int64_to_json(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return uint64_to_json(*(const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT: return number_to_json(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE: return number_to_json(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL: return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: return enum_to_json(fd->descriptor, *(const int *)p);
    case PROTOBUF_C_TYPE_STRING: return string_to_json(w, *(const char *const *)p);
    case PROTOBUF_C_TYPE_BYTES: return bytes_to_json(p);
    case PROTOBUF_C_TYPE_MESSAGE:
        if (!*(const ProtobufCMessage *const *)p) {
            cb_fail(&w->err, CB_INVALID_FIELD, "%s is a null message", w->path);
            return NULL;
        }
        return message_to_json(w, *(const ProtobufCMessage *const *)p);
    }
    cb_fail(&w->err, CB_INVALID_FIELD, "%s has a type JSON cannot carry", w->path);
    return NULL;
}

static json_t *repeated_to_json(walk *w, const ProtobufCFieldDescriptor *fd, const ProtobufCMessage *m)
{
    const void *first;
    size_t stride, n = cb_field_values(m, fd, &first, &stride);
    json_t *array = json_array();
    for (size_t i = 0; array && i < n; i++) {
        size_t old = path_index(w, i);
        json_t *v = value_to_json(w, fd, (const char *)first + i * stride);
        if (json_array_append_new(array, v) != 0) {
            json_decref(array);
            return NULL;
        }
        path_pop(w, old);
    }
    return array;
}

static bool field_to_json(walk *w, const ProtobufCFieldDescriptor *fd, const ProtobufCMessage *m, json_t *obj)
{
    char *key = json_name(fd->name);
    if (!key)
        return false;
    size_t old = path_push(w, fd->name);
    json_t *v = fd->label == PROTOBUF_C_LABEL_REPEATED ? repeated_to_json(w, fd, m)
                                                       : value_to_json(w, fd, (const char *)m + fd->offset);
    bool ok = json_object_set_new(obj, key, v) == 0;
    free(key);
    if (ok)
        path_pop(w, old);
    return ok;
}

static json_t *message_to_json(walk *w, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &google__protobuf__timestamp__descriptor)
        return timestamp_to_json(w, (const Google__Protobuf__Timestamp *)m);
    json_t *obj = json_object();
    for (unsigned i = 0; obj && i < d->n_fields; i++) {
        if (cb_field_present(m, &d->fields[i]) && !field_to_json(w, &d->fields[i], m, obj)) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* ----------------------------------------------------- JSON to message */

static ProtobufCMessage *message_from_json(walk *w, const ProtobufCMessageDescriptor *d, const json_t *j);

static bool fail_type(walk *w, const char *expected)
{
    cb_fail(&w->err, CB_INVALID_FIELD, "%s: expected %s", w->path, expected);
    return false;
}

typedef enum { INT_OK, INT_NOT_INTEGER, INT_OUT_OF_RANGE } int_status;

/* An integer given as a JSON number (1e2 counts) or a decimal string. */
static int_status signed_from_json(const walk *w, const json_t *j, int64_t min, int64_t max, int64_t *out)
{
    if (json_is_integer(j)) {
        *out = json_integer_value(j);
    } else if (json_is_real(j)) {
        double v = json_real_value(j);
        if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0))
            return INT_OUT_OF_RANGE;
        *out = (int64_t)v;
        if ((double)*out != v)
            return INT_NOT_INTEGER;
    } else if (json_is_string(j)) {
        size_t len;
        const char *s = integer_text(w, j, &len);
        char *end;
        if (!((s[0] >= '0' && s[0] <= '9') || (s[0] == '-' && s[1] >= '0' && s[1] <= '9')))
            return INT_NOT_INTEGER;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if ((size_t)(end - s) != len)
            return INT_NOT_INTEGER;
        if (errno == ERANGE)
            return INT_OUT_OF_RANGE;
        *out = v;
    } else {
        return INT_NOT_INTEGER;
    }
    return *out < min || *out > max ? INT_OUT_OF_RANGE : INT_OK;
}

static int_status unsigned_from_json(const walk *w, const json_t *j, uint64_t max, uint64_t *out)
{
    if (json_is_integer(j)) {
        if (json_integer_value(j) < 0)
            return INT_OUT_OF_RANGE;
        *out = (uint64_t)json_integer_value(j);
    } else if (json_is_real(j)) {
        double v = json_real_value(j);
        if (!(v >= 0 && v < 18446744073709551616.0))
            return INT_OUT_OF_RANGE;
        *out = (uint64_t)v;
        if ((double)*out != v)
            return INT_NOT_INTEGER;
    } else if (json_is_string(j)) {
        size_t len;
        const char *s = integer_text(w, j, &len);
        char *end;
        if (s[0] == '-' && s[1] >= '0' && s[1] <= '9')
            return INT_OUT_OF_RANGE;
        if (s[0] < '0' || s[0] > '9')
            return INT_NOT_INTEGER;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if ((size_t)(end - s) != len)
            return INT_NOT_INTEGER;
        if (errno == ERANGE)
            return INT_OUT_OF_RANGE;
        *out = v;
    } else {
        return INT_NOT_INTEGER;
    }
    return *out > max ? INT_OUT_OF_RANGE : INT_OK;
}

static bool int_ok(walk *w, int_status status)
{
    if (status == INT_OUT_OF_RANGE)
        cb_fail(&w->err, CB_INVALID_FIELD, "%s: integer out of range", w->path);
    else if (status == INT_NOT_INTEGER)
        fail_type(w, "an integer (a number or a decimal string)");
    return status == INT_OK;
}

static bool signed_into(walk *w, const json_t *j, int64_t min, int64_t max, int64_t *out)
{
    return int_ok(w, signed_from_json(w, j, min, max, out));
}

static bool unsigned_into(walk *w, const json_t *j, uint64_t max, uint64_t *out)
{
    return int_ok(w, unsigned_from_json(w, j, max, out));
}

static bool number_from_json(walk *w, const json_t *j, double max, double *out)
{
    if (json_is_number(j) || is_big(w, j)) {
        /* strtod rounds a big literal as jansson rounds a real; past DBL_MAX it gives HUGE_VAL. */
        *out = json_is_number(j) ? json_number_value(j) : strtod(json_string_value(j) + 1, NULL);
        if (*out > max || *out < -max) {
            cb_fail(&w->err, CB_INVALID_FIELD, "%s: number out of range", w->path);
            return false;
        }
    } else if (spelled(j, "NaN")) {
        *out = NAN;
    } else if (spelled(j, "Infinity")) {
        *out = INFINITY;
    } else if (spelled(j, "-Infinity")) {
        *out = -INFINITY;
    } else {
        return fail_type(w, "a number, \"NaN\", \"Infinity\" or \"-Infinity\"");
    }
    return true;
}

/* A zero value named *_UNSPECIFIED only stands for "not set": no sender means it. */
static bool is_unspecified(const ProtobufCEnumValue *ev)
{
    static const char suffix[] = "_UNSPECIFIED";
    size_t n = strlen(ev->name);
    return ev->value == 0 && n >= sizeof suffix - 1 && strcmp(ev->name + n - (sizeof suffix - 1), suffix) == 0;
}

/* Appends ed's names in number order to reason (cap bytes). Those that do not
 * fit give way to ", ...", so the reader knows the list is cut. */
static void append_enum_names(char *reason, size_t cap, const ProtobufCEnumDescriptor *ed)
{
    size_t start = strlen(reason), n = start, keep = start;
    for (unsigned i = 0; i < ed->n_values; i++) {
        if (is_unspecified(&ed->values[i]))
            continue;
        const char *sep = n > start ? ", " : "", *name = ed->values[i].name;
        if (n + strlen(sep) + strlen(name) >= cap) {
            snprintf(reason + keep, cap - keep, "%s...", keep > start ? ", " : "");
            return;
        }
        n += (size_t)snprintf(reason + n, cap - n, "%s%s", sep, name);
        if (n + sizeof ", ..." <= cap)
            keep = n;
    }
}

/* An enum name is schema, not personal data, so the given one is shown (made
 * safe) next to the names that would have been accepted. */
static bool fail_enum_name(walk *w, const ProtobufCEnumDescriptor *ed, const json_t *j)
{
    enum { SHOWN = 32 };
    char shown[SHOWN + sizeof "..."];
    if (safe_text(shown, SHOWN + 1, json_string_value(j), json_string_length(j)))
        memcpy(shown + SHOWN, "...", sizeof "...");
    cb_fail(&w->err, CB_INVALID_FIELD, "%s: '%s' is not one of ", w->path, shown);
    append_enum_names(w->err.reason, sizeof w->err.reason, ed);
    return false;
}

static bool enum_from_json(walk *w, const ProtobufCEnumDescriptor *ed, const json_t *j, int *out)
{
    if (is_text(w, j)) {
        const char *name = json_string_value(j);
        /* The lookup compares C strings: a U+0000 inside would end the name early. */
        const ProtobufCEnumValue *ev =
            strlen(name) == json_string_length(j) ? protobuf_c_enum_descriptor_get_value_by_name(ed, name) : NULL;
        if (!ev)
            return fail_enum_name(w, ed, j);
        *out = ev->value;
        return true;
    }
    /* proto3 enums are open: an unknown number is kept, as on the wire. */
    int64_t v;
    if (!json_is_integer(j) || signed_from_json(w, j, INT32_MIN, INT32_MAX, &v) != INT_OK)
        return fail_type(w, "an enum name or number");
    *out = (int)v;
    return true;
}

static bool string_from_json(walk *w, const json_t *j, char **out)
{
    if (!is_text(w, j))
        return fail_type(w, "a string");
    const char *s = json_string_value(j);
    size_t len = json_string_length(j);
    if (!cb_utf8_valid(s, len)) {
        cb_fail(&w->err, CB_INVALID_UTF8, "%s is not valid UTF-8", w->path);
        return false;
    }
    /* protobuf-c strings end at the first NUL: one inside would cut the value short. */
    if (memchr(s, '\0', len)) {
        cb_fail(&w->err, CB_INVALID_FIELD, "%s contains a NUL character (U+0000)", w->path);
        return false;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return false;
    memcpy(copy, s, len + 1);
    *out = copy;
    return true;
}

/* Standard base64 as proto3 writes it; URL-safe and unpadded forms are read too. */
static bool bytes_from_json(walk *w, const json_t *j, ProtobufCBinaryData *out)
{
    static const int variants[] = {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                                   sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};
    if (!is_text(w, j))
        return fail_type(w, "a base64 string");
    size_t len = json_string_length(j);
    if (len == 0) {
        *out = (ProtobufCBinaryData){0, NULL};
        return true;
    }
    size_t cap = len / 4 * 3 + 3;
    uint8_t *data = malloc(cap);
    if (!data)
        return false;
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        size_t n;
        if (sodium_base642bin(data, cap, json_string_value(j), len, NULL, &n, NULL, variants[i]) == 0) {
            *out = (ProtobufCBinaryData){n, data};
            return true;
        }
    }
    free(data);
    return fail_type(w, "a base64 string");
}

/* One value of field fd from j, stored at p. Nothing is left allocated on failure. */
static bool value_from_json(walk *w, const ProtobufCFieldDescriptor *fd, const json_t *j, void *p)
{
    int64_t s;
    uint64_t u;
    double d;
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (!signed_into(w, j, INT32_MIN, INT32_MAX, &s))
            return false;
        *(int32_t *)p = (int32_t)s;
        return true;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (!unsigned_into(w, j, UINT32_MAX, &u))
            return false;
        *(uint32_t *)p = (uint32_t)u;
        return true;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: return signed_into(w, j, INT64_MIN, INT64_MAX, p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return unsigned_into(w, j, UINT64_MAX, p);
    case PROTOBUF_C_TYPE_FLOAT:
        if (!number_from_json(w, j, FLT_MAX, &d))
            return false;
        *(float *)p = (float)d;
        return true;
    case PROTOBUF_C_TYPE_DOUBLE: return number_from_json(w, j, DBL_MAX, p);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(j))
            return fail_type(w, "true or false");
        *(protobuf_c_boolean *)p = json_is_true(j);
        return true;
    case PROTOBUF_C_TYPE_ENUM: return enum_from_json(w, fd->descriptor, j, p);
    case PROTOBUF_C_TYPE_STRING: return string_from_json(w, j, p);
    case PROTOBUF_C_TYPE_BYTES: return bytes_from_json(w, j, p);
    case PROTOBUF_C_TYPE_MESSAGE: return (*(ProtobufCMessage **)p = message_from_json(w, fd->descriptor, j)) != NULL;
    }
    return fail_type(w, "a value of a type this mapping knows");
}

/* The array is hung on the message before it is filled, and its count grows
 * with each element, so freeing the message mid-way frees exactly what exists. */
static bool repeated_from_json(walk *w, const ProtobufCFieldDescriptor *fd, const json_t *j, ProtobufCMessage *m)
{
    if (!json_is_array(j))
        return fail_type(w, "an array");
    size_t n = json_array_size(j), size = cb_field_value_size(fd->type);
    if (n == 0)
        return true;
    char *items = calloc(n, size);
    if (!items)
        return false;
    size_t *count = (size_t *)((char *)m + fd->quantifier_offset);
    *(char **)((char *)m + fd->offset) = items;
    for (size_t i = 0; i < n; i++) {
        size_t old = path_index(w, i);
        const json_t *item = json_array_get(j, i);
        if (json_is_null(item))
            return fail_type(w, "a value, not null");
        if (!value_from_json(w, fd, item, items + i * size))
            return false;
        (*count)++;
        path_pop(w, old);
    }
    return true;
}

/* Refuses a second member of fd's oneof, naming both. The path ends with fd;
 * parent is its length without it. */
static bool oneof_free(walk *w, size_t parent, const ProtobufCFieldDescriptor *fd, const ProtobufCMessage *m)
{
    uint32_t set = *(const uint32_t *)((const char *)m + fd->quantifier_offset);
    if (set == 0)
        return true;
    /* Only field_from_json sets the case, always to a member's number. */
    const ProtobufCFieldDescriptor *other = protobuf_c_message_descriptor_get_field(m->descriptor, (unsigned)set);
    char second[sizeof w->path];
    memcpy(second, w->path, w->len + 1);
    path_pop(w, parent);
    path_push(w, other->name);
    cb_fail(&w->err, CB_INVALID_FIELD, "%s and %s are members of one oneof: set only one", w->path, second);
    return false;
}

static bool field_from_json(walk *w, size_t parent, const ProtobufCFieldDescriptor *fd, const json_t *j,
                            ProtobufCMessage *m)
{
    char *base = (char *)m;
    if (fd->label == PROTOBUF_C_LABEL_REPEATED)
        return repeated_from_json(w, fd, j, m);
    if (!(fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        return value_from_json(w, fd, j, base + fd->offset);
    if (!oneof_free(w, parent, fd, m) || !value_from_json(w, fd, j, base + fd->offset))
        return false;
    *(uint32_t *)(base + fd->quantifier_offset) = fd->id;
    return true;
}

/* Both spellings of one field in one object would set it twice. */
static bool spelled_twice(const json_t *obj, const char *key, const ProtobufCFieldDescriptor *fd)
{
    if (strcmp(key, fd->name) != 0 || json_name_is(fd->name, fd->name))
        return false;
    char *camel = json_name(fd->name);
    bool twice = camel && json_object_get(obj, camel);
    free(camel);
    return twice;
}

static bool fields_from_json(walk *w, const json_t *j, ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *key;
    size_t key_len;
    json_t *value;
    /* jansson's iterators take a mutable object; they do not change it. */
    json_object_keylen_foreach((json_t *)j, key, key_len, value)
    {
        /* A key holding U+0000 (jansson's parser refuses one; its API does not)
         * names no field, though its C string might. */
        const ProtobufCFieldDescriptor *fd = strlen(key) == key_len ? field_by_key(d, key) : NULL;
        if (!fd) {
            char shown[48];
            safe_text(shown, sizeof shown, key, key_len);
            cb_fail(&w->err, CB_INVALID_FIELD, "unknown field '%s' in %s", shown, w->len ? w->path : d->short_name);
            return false;
        }
        size_t old = path_push(w, fd->name);
        if (spelled_twice(j, key, fd)) {
            cb_fail(&w->err, CB_INVALID_FIELD, "%s: given twice, as %s and %s", w->path, fd->name,
                    w->path + old + (old ? 1 : 0));
            return false;
        }
        /* null stands for the default, which is what an absent field already holds. */
        if (!json_is_null(value) && !field_from_json(w, old, fd, value, m))
            return false;
        path_pop(w, old);
    }
    return true;
}

static ProtobufCMessage *message_from_json(walk *w, const ProtobufCMessageDescriptor *d, const json_t *j)
{
    if (d == &google__protobuf__timestamp__descriptor)
        return timestamp_from_json(w, j);
    if (!json_is_object(j)) {
        if (w->len)
            fail_type(w, "an object");
        else
            cb_fail(&w->err, CB_INVALID_FIELD, "expected a JSON object for %s", d->short_name);
        return NULL;
    }
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (!m)
        return NULL;
    protobuf_c_message_init(d, m);
    if (!fields_from_json(w, j, m)) {
        protobuf_c_message_free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

/* ------------------------------------------------- integers beyond int64 */

/* jansson holds an integer in a long long and fails the whole parse on a
 * literal outside int64, though proto3 allows uint64 numbers up to 2^64 - 1.
 * Only after that failure is the text parsed again, with each such literal
 * rewritten as a string: U+0000 (BIG_MARK) then the literal itself, which the
 * converter reads as the number it was. A genuine string that also began with
 * U+0000 would be taken for one, so text holding both is refused; no field
 * takes such a string anyway. */
#define BIG_MARK "\\u0000"
#define BIG_WRAP (sizeof "\"" BIG_MARK "\"" - 1) /* what the rewrite adds around a literal */

/* JSON_ALLOW_NUL lets U+0000 in a string reach the converter, whose reason names
 * the field (jansson still refuses one in a key); load_big needs it for BIG_MARK. */
#define LOAD_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

/* The text as load_big rewrites it. Built twice: to measure, with out NULL, then for real. */
typedef struct {
    const char *text;
    size_t len;
    char *out;
    size_t out_len;
    size_t *ends; /* where each rewritten literal ends in out */
    size_t n_big;
    size_t nul_at; /* just past the U+0000 opening the first genuine string that has one, or 0 */
} big_text;

static void put(big_text *b, const char *s, size_t n)
{
    if (b->out)
        memcpy(b->out + b->out_len, s, n);
    b->out_len += n;
}

static size_t digits_end(const char *t, size_t len, size_t i)
{
    while (i < len && t[i] >= '0' && t[i] <= '9')
        i++;
    return i;
}

/* Just past the string token opening at t[i], or len if it is not closed. */
static size_t string_end(const char *t, size_t len, size_t i)
{
    for (i++; i < len && t[i] != '"'; i++)
        if (t[i] == '\\')
            i++;
    return i < len ? i + 1 : len;
}

/* Just past the number token at t[i], split where jansson's lexer splits it;
 * *integer says it has neither fraction nor exponent. */
static size_t number_end(const char *t, size_t len, size_t i, bool *integer)
{
    size_t j = digits_end(t, len, i + (t[i] == '-'));
    *integer = j == len || (t[j] != '.' && t[j] != 'e' && t[j] != 'E');
    if (j < len && t[j] == '.')
        j = digits_end(t, len, j + 1);
    if (j < len && (t[j] == 'e' || t[j] == 'E')) {
        j++;
        if (j < len && (t[j] == '+' || t[j] == '-'))
            j++;
        j = digits_end(t, len, j);
    }
    return j;
}

/* Whether the integer literal s (n bytes) lies outside int64. One with a
 * leading zero is left as it is, for jansson to refuse. */
static bool beyond_int64(const char *s, size_t n)
{
    bool negative = *s == '-';
    const char *limit = negative ? "9223372036854775808" : "9223372036854775807";
    size_t digits = strlen(limit);
    s += negative;
    n -= negative;
    return n > 0 && *s != '0' && (n > digits || (n == digits && memcmp(s, limit, digits) > 0));
}

/* One pass over the text, token by token as jansson's lexer splits it, so that
 * digits inside a string are never taken for a number. */
static void big_scan(big_text *b)
{
    const char *t = b->text;
    b->out_len = b->n_big = 0;
    for (size_t i = 0, end; i < b->len; i = end) {
        bool integer = false;
        if (t[i] == '"') {
            end = string_end(t, b->len, i);
            if (!b->nul_at && end - i > strlen(BIG_MARK) && memcmp(t + i + 1, BIG_MARK, strlen(BIG_MARK)) == 0)
                b->nul_at = i + 1 + strlen(BIG_MARK);
        } else if (t[i] == '-' || (t[i] >= '0' && t[i] <= '9')) {
            end = number_end(t, b->len, i, &integer);
        } else {
            end = i + 1;
        }
        if (!integer || !beyond_int64(t + i, end - i)) {
            put(b, t + i, end - i);
            continue;
        }
        put(b, "\"" BIG_MARK, strlen("\"" BIG_MARK));
        put(b, t + i, end - i);
        put(b, "\"", 1);
        if (b->ends)
            b->ends[b->n_big] = b->out_len;
        b->n_big++;
    }
}

/* The line and column jansson reports once offset bytes of text are read:
 * it counts columns in characters, not bytes. */
static void text_position(const char *text, size_t offset, int *line, int *column)
{
    *line = 1;
    *column = 0;
    for (size_t i = 0; i < offset; i++) {
        if (text[i] == '\n') {
            ++*line;
            *column = 0;
        } else if (((unsigned char)text[i] & 0xc0) != 0x80) {
            ++*column;
        }
    }
}

/* Moves jansson's error in the rewrite back onto the original text. */
static void big_error(const big_text *b, json_error_t *je)
{
    size_t at = je->position > 0 ? (size_t)je->position : 0, before = 0;
    bool after_big = false;
    for (; before < b->n_big && b->ends[before] <= at; before++)
        after_big = b->ends[before] == at;
    /* A literal where a key belongs was rewritten into a key holding U+0000;
     * say what jansson says of any other number there. */
    if (after_big && json_error_code(je) == json_error_null_byte_in_key)
        snprintf(je->text, sizeof je->text, "string or '}' expected");
    /* An error inside a rewritten literal (out of memory) is put at most at the end. */
    size_t offset = at - before * BIG_WRAP;
    text_position(b->text, offset < b->len ? offset : b->len, &je->line, &je->column);
}

/* The parse after jansson refused a literal outside int64. NULL with je set,
 * as jansson would set it for text, if text fails for another reason too. */
static json_t *load_big(const char *text, size_t len, json_error_t *je)
{
    big_text b = {.text = text, .len = len};
    big_scan(&b);
    if (b.n_big == 0)
        return NULL; /* the number refused was a real beyond DBL_MAX: that error stands */
    json_t *j = NULL;
    b.out = malloc(b.out_len);
    b.ends = malloc(b.n_big * sizeof *b.ends);
    if (!b.out || !b.ends) {
        snprintf(je->text, sizeof je->text, "out of memory");
    } else {
        big_scan(&b);
        j = json_loadb(b.out, b.out_len, LOAD_FLAGS, je);
        if (!j)
            big_error(&b, je);
    }
    if (j && b.nul_at) {
        json_decref(j);
        j = NULL;
        snprintf(je->text, sizeof je->text, "%s",
                 "a string starting with U+0000 cannot be read alongside an integer outside int64");
        text_position(text, b.nul_at, &je->line, &je->column);
    }
    free(b.out);
    free(b.ends);
    return j;
}

/* ------------------------------------------------------------ public API */

json_t *cb_json_from_message(const ProtobufCMessage *m, cb_error *err)
{
    walk w = {.len = 0};
    if (!m) {
        cb_fail(err, CB_INVALID_FIELD, "no message to convert");
        return NULL;
    }
    json_t *j = message_to_json(&w, m);
    if (!j)
        report(&w, err);
    return j;
}

char *cb_json_dumps(const ProtobufCMessage *m, cb_error *err)
{
    json_t *j = cb_json_from_message(m, err);
    if (!j)
        return NULL;
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!text)
        cb_fail(err, CB_INVALID_FIELD, "out of memory writing JSON text");
    return text;
}

static ProtobufCMessage *to_message(const ProtobufCMessageDescriptor *desc, const json_t *json, bool big, cb_error *err)
{
    walk w = {.big = big};
    ProtobufCMessage *m = message_from_json(&w, desc, json);
    if (!m)
        report(&w, err);
    return m;
}

ProtobufCMessage *cb_json_to_message(const ProtobufCMessageDescriptor *desc, const json_t *json, cb_error *err)
{
    return to_message(desc, json, false, err);
}

/* je's position is in the text alone; the caller's text starts at (line, column). */
static void fail_decode(cb_error *err, json_error_t *je, cb_json_pos *at)
{
    /* jansson appends " near '<token>'", and the token may be personal data. */
    char *near = strstr(je->text, " near ");
    if (near)
        *near = '\0';
    *at = (cb_json_pos){je->line + at->line - 1, je->line == 1 ? je->column + at->column - 1 : je->column};
    cb_fail(err, CB_DECODE_ERROR, "not valid JSON: %s (line %d, column %d)", je->text, at->line, at->column);
}

ProtobufCMessage *cb_json_loads_at(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                                   cb_json_pos *at, cb_error *err)
{
    json_error_t je;
    const char *t = text ? text : "";
    size_t n = text ? len : 0;
    bool big = false;
    json_t *j = json_loadb(t, n, LOAD_FLAGS, &je);
    if (!j && json_error_code(&je) == json_error_numeric_overflow)
        big = (j = load_big(t, n, &je)) != NULL;
    if (!j) {
        fail_decode(err, &je, at);
        return NULL;
    }
    ProtobufCMessage *m = to_message(desc, j, big, err);
    json_decref(j);
    return m;
}

ProtobufCMessage *cb_json_loads(const ProtobufCMessageDescriptor *desc, const char *text, size_t len, cb_error *err)
{
    cb_json_pos at = {1, 1};
    return cb_json_loads_at(desc, text, len, &at, err);
}
