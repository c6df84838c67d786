/* libcsv calls back once per cell and once per row end. The file is fed a
 * physical line at a time, so a row's first line is the line being fed when
 * the row before it ended (a quoted cell may carry a row over many lines),
 * or, for a row begun after a bare CR, the line its first cell ended on. */
#include "csv_events.h"

#include <csv.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cb_check.h"
#include "cb_codec.h"
#include "cb_fields.h"
#include "cb_json.h"
#include "charset.h"

#define COLUMNS_MAX 256
#define ROW_BYTES   (1u << 20)

typedef struct {
    char name[96];
    cb_field_path path;
    int repeated_at; /* the path's repeated field, -1 when none */
} column;

typedef struct {
    column cols[COLUMNS_MAX];
    size_t n_cols;
    bool have_header, failed, stop;
    char *why;
    size_t why_cap;
    /* the row being read */
    char *cells[COLUMNS_MAX];
    size_t n_cells, row_bytes;
    size_t nul_cell; /* 1 + the first cell holding a NUL byte, 0 when none */
    bool too_many;
    unsigned long line, row_line;
    cb_csv_row_fn fn;
    void *arg;
} reader;

static void say(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

/* A header name fit to quote back: printable ASCII, cut short. */
static void quotable(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 1 < cap && n < 40; s++)
        out[n++] = *s >= 0x20 && *s < 0x7F ? *s : '?';
    out[n] = 0;
}

static bool compile_column(reader *r, const char *name)
{
    column *c = &r->cols[r->n_cols];
    char shown[48];
    quotable(name, shown, sizeof shown);
    size_t at = r->n_cols + 1;
    if (r->n_cols == COLUMNS_MAX) {
        say(r->why, r->why_cap, "the header has more than %d columns", COLUMNS_MAX);
        return false;
    }
    if (!name[0]) {
        say(r->why, r->why_cap, "header column %zu is empty: every column must name an event field", at);
        return false;
    }
    if (strlen(name) >= sizeof c->name ||
        !cb_field_path_compile(&carebridge__v1__envelope__descriptor, name, &c->path)) {
        say(r->why, r->why_cap,
            "header column %zu (%s) names no event field: use the field's JSON path, e.g. person.nhsNumber or "
            "referral.reason",
            at, shown);
        return false;
    }
    const ProtobufCFieldDescriptor *last = c->path.fd[c->path.n - 1];
    if (last->type == PROTOBUF_C_TYPE_MESSAGE && last->descriptor != &google__protobuf__timestamp__descriptor) {
        say(r->why, r->why_cap, "header column %zu (%s) names a group of fields, not one: name a field inside it", at,
            shown);
        return false;
    }
    c->repeated_at = -1;
    for (unsigned i = 0; i < c->path.n; i++) {
        if (c->path.fd[i]->label != PROTOBUF_C_LABEL_REPEATED)
            continue;
        if (c->repeated_at >= 0) {
            say(r->why, r->why_cap, "header column %zu (%s) passes through two repeated fields: a cell holds one list",
                at, shown);
            return false;
        }
        c->repeated_at = (int)i;
    }
    for (size_t k = 0; k < r->n_cols; k++)
        if (!strcmp(r->cols[k].name, name)) {
            say(r->why, r->why_cap, "header columns %zu and %zu both name %s", k + 1, at, shown);
            return false;
        }
    snprintf(c->name, sizeof c->name, "%s", name);
    r->n_cols++;
    return true;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

/* A cell's text as the JSON value its field takes; NULL with why. */
static json_t *value_of(const ProtobufCFieldDescriptor *fd, const char *text, const column *c, char *why, size_t cap)
{
    char *end;
    errno = 0;
    switch (fd->type) {
    case PROTOBUF_C_TYPE_BOOL:
        if (!strcasecmp(text, "true") || !strcasecmp(text, "yes") || !strcasecmp(text, "y") || !strcmp(text, "1"))
            return json_true();
        if (!strcasecmp(text, "false") || !strcasecmp(text, "no") || !strcasecmp(text, "n") || !strcmp(text, "0"))
            return json_false();
        say(why, cap, "column %s takes yes or no (true/false, 1/0)", c->name);
        return NULL;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: {
        long long v = strtoll(text, &end, 10);
        if (errno || *end || end == text) {
            say(why, cap, "column %s takes a whole number", c->name);
            return NULL;
        }
        return json_integer(v);
    }
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        if (text[0] == '-') {
            say(why, cap, "column %s takes a whole number, not below 0", c->name);
            return NULL;
        }
        unsigned long long v = strtoull(text, &end, 10);
        if (errno || *end || end == text) {
            say(why, cap, "column %s takes a whole number, not below 0", c->name);
            return NULL;
        }
        char digits[24];
        snprintf(digits, sizeof digits, "%llu", v);
        return json_string(digits); /* proto3 JSON writes 64-bit integers as strings */
    }
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        double v = strtod(text, &end);
        if (errno || *end || end == text) {
            say(why, cap, "column %s takes a number", c->name);
            return NULL;
        }
        return json_real(v);
    }
    default: {
        json_t *s = json_string(text); /* strings, enum names, times (RFC 3339), base64 bytes */
        if (!s)
            say(why, cap, "column %s is not UTF-8 text", c->name);
        return s;
    }
    }
}

/* The object at the path's step i of parent, made when absent. */
static json_t *member(json_t *parent, const ProtobufCFieldDescriptor *fd, bool array)
{
    char name[128];
    cb_json_field_name(fd->name, name, sizeof name);
    json_t *m = json_object_get(parent, name);
    if (!m) {
        m = array ? json_array() : json_object();
        json_object_set_new(parent, name, m);
    }
    return m;
}

/* One cell's values set into the event; false with why. */
static bool set_cell(json_t *ev, const column *c, char *cell, char *why, size_t cap)
{
    const cb_field_path *p = &c->path;
    size_t k = 0;
    for (char *piece = cell, *next; piece; piece = next, k++) {
        next = c->repeated_at >= 0 ? strchr(piece, CB_CSV_LIST_SEP) : NULL;
        if (next)
            *next++ = 0;
        char *text = trim(piece);
        if (!*text)
            continue; /* an empty element: its field left out */
        json_t *at = ev;
        for (unsigned i = 0; i + 1 < p->n; i++) {
            bool repeated = (int)i == c->repeated_at;
            at = member(at, p->fd[i], repeated);
            if (!json_is_object(at) && !json_is_array(at)) {
                say(why, cap, "column %s clashes with another column's field", c->name);
                return false;
            }
            if (repeated) {
                while (json_array_size(at) <= k)
                    json_array_append_new(at, json_object());
                at = json_array_get(at, k);
            }
        }
        const ProtobufCFieldDescriptor *last = p->fd[p->n - 1];
        json_t *v = value_of(last, text, c, why, cap);
        if (!v)
            return false;
        char name[128];
        cb_json_field_name(last->name, name, sizeof name);
        if (last->label == PROTOBUF_C_LABEL_REPEATED)
            json_array_append_new(member(at, last, true), v);
        else
            json_object_set_new(at, name, v);
    }
    return true;
}

static void end_row(reader *r)
{
    unsigned long line = r->row_line;
    if (!r->have_header) {
        for (size_t i = 0; i < r->n_cells && !r->failed; i++)
            r->failed = !compile_column(r, trim(r->cells[i]));
        if (!r->failed && r->too_many) {
            say(r->why, r->why_cap, "the header has more than %d columns", COLUMNS_MAX);
            r->failed = true;
        }
        r->have_header = !r->failed;
        r->stop = r->failed;
        return;
    }
    char why[300] = "";
    json_t *ev = NULL;
    if (r->too_many || r->n_cells > r->n_cols)
        say(why, sizeof why, "the row has %s%zu cells; the header names %zu columns", r->too_many ? "over " : "",
            r->n_cells, r->n_cols);
    else if (r->row_bytes > ROW_BYTES)
        say(why, sizeof why, "the row is over %u bytes", ROW_BYTES);
    else if (r->nul_cell)
        say(why, sizeof why, "column %s holds a NUL byte, which no text may", r->cols[r->nul_cell - 1].name);
    else {
        ev = json_object();
        for (size_t i = 0; i < r->n_cells && ev; i++)
            if (!set_cell(ev, &r->cols[i], r->cells[i], why, sizeof why)) {
                json_decref(ev);
                ev = NULL;
            }
        if (ev && !json_object_size(ev)) {
            json_decref(ev);
            ev = NULL; /* a row of empty cells: nothing to send, nothing wrong */
        }
    }
    bool empty = !ev && !why[0];
    if (!empty && !r->fn(r->arg, line, ev, why))
        r->stop = true;
}

static void on_cell(void *s, size_t len, void *data)
{
    reader *r = data;
    if (!r->row_line) /* a row begun on the line of the last one's end (a bare CR ends a row too) */
        r->row_line = r->line;
    if (r->n_cells == COLUMNS_MAX) {
        r->too_many = true;
        return;
    }
    r->row_bytes += len;
    if (r->row_bytes > ROW_BYTES)
        len = 0; /* refused at the row's end; nothing more kept */
    char *cell = malloc(len + 1);
    if (!cell) {
        r->too_many = true;
        return;
    }
    if (len)
        memcpy(cell, s, len);
    cell[len] = 0;
    if (memchr(cell, 0, len) && !r->nul_cell) /* a NUL inside: cut there, the value would change */
        r->nul_cell = r->n_cells + 1;
    r->cells[r->n_cells++] = cell;
}

static void on_row(int c, void *data)
{
    (void)c;
    reader *r = data;
    if (!r->stop)
        end_row(r);
    for (size_t i = 0; i < r->n_cells; i++)
        free(r->cells[i]);
    r->n_cells = 0;
    r->row_bytes = 0;
    r->nul_cell = 0;
    r->too_many = false;
    r->row_line = 0;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != '\r' && s[i] != '\n' && s[i] != ' ' && s[i] != '\t')
            return false;
    return true;
}

bool cb_csv_events_read(FILE *in, cb_csv_row_fn fn, void *arg, char *why, size_t cap)
{
    struct csv_parser p;
    reader *r = calloc(1, sizeof *r);
    if (!r || csv_init(&p, 0) != 0) {
        free(r);
        say(why, cap, "out of memory");
        return false;
    }
    why[0] = 0;
    r->why = why, r->why_cap = cap, r->fn = fn, r->arg = arg;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t n;
    bool ok = true;
    char *utf8 = NULL;
    size_t utf8_cap = 0;
    while (!r->stop && (n = getline(&line, &line_cap, in)) >= 0) {
        r->line++;
        const char *s = line;
        if (r->line == 1) {
            size_t bom = cb_charset_bom(s, (size_t)n);
            s += bom, n -= (ssize_t)bom;
        }
        /* A line that is not UTF-8 is Windows-1252, as Excel's "CSV (Comma
         * delimited)" writes it on a UK machine; one that is neither is read as
         * it is, to be refused by column. A '\n' never falls inside a UTF-8
         * character, so a line is one or the other. */
        size_t converted;
        if (!cb_utf8_valid(s, (size_t)n) &&
            cb_charset_to_utf8("WINDOWS-1252", s, (size_t)n, &utf8, &utf8_cap, &converted)) {
            s = utf8;
            n = (ssize_t)converted;
        }
        if (!r->row_line) {
            if (blank(s, (size_t)n))
                continue; /* a blank line between rows */
            r->row_line = r->line;
        }
        if (csv_parse(&p, s, (size_t)n, on_cell, on_row, r) != (size_t)n) {
            say(why, cap, "line %lu: %s", r->line, csv_strerror(csv_error(&p)));
            ok = false;
            break;
        }
    }
    if (ok && ferror(in)) {
        say(why, cap, "the file could not be read: %s", strerror(errno));
        ok = false;
    }
    if (ok && !r->stop)
        csv_fini(&p, on_cell, on_row, r);
    for (size_t i = 0; i < r->n_cells; i++)
        free(r->cells[i]);
    csv_free(&p);
    free(line);
    free(utf8);
    if (ok && !r->have_header && !r->failed) {
        say(why, cap, "the file has no header row naming its columns");
        ok = false;
    }
    ok = ok && !r->failed;
    free(r);
    return ok;
}
