#include "input.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct cli_input {
    FILE *in;
    /* Bytes given back by cli_input_resume_after, read before the stream's. */
    char *pending;
    size_t pending_len, pending_at;
    cb_json_pos pos; /* where the next byte is */
    bool started;    /* past a byte-order mark, if there was one */
    bool in_array;   /* inside a top-level [ ... ] */
    cb_json_pos array_at;
    char *obj; /* the object being cut out */
    size_t obj_len, obj_cap;
    cb_json_pos obj_at;
};

cli_input *cli_input_new(FILE *in)
{
    cli_input *r = calloc(1, sizeof *r);
    if (r) {
        r->in = in;
        r->pos = (cb_json_pos){1, 1};
    }
    return r;
}

void cli_input_destroy(cli_input **r_p)
{
    cli_input *r = *r_p;
    if (r) {
        free(r->pending);
        free(r->obj);
        free(r);
    }
    *r_p = NULL;
}

/* The next byte and where it is; EOF at the end. Columns count characters
 * (UTF-8 continuation bytes do not move them), as jansson's do. */
static int get(cli_input *r, cb_json_pos *at)
{
    int c;
    if (r->pending_at < r->pending_len)
        c = (unsigned char)r->pending[r->pending_at++];
    else
        c = getc(r->in);
    *at = r->pos;
    if (c == '\n')
        r->pos = (cb_json_pos){r->pos.line + 1, 1};
    else if (c != EOF && (c & 0xC0) != 0x80)
        r->pos.column++;
    return c;
}

static bool append(cli_input *r, int c)
{
    if (r->obj_len == r->obj_cap) {
        size_t cap = r->obj_cap ? 2 * r->obj_cap : 4096;
        char *obj = cap <= CLI_INPUT_OBJECT_MAX ? realloc(r->obj, cap) : NULL;
        if (!obj)
            return false;
        r->obj = obj;
        r->obj_cap = cap;
    }
    r->obj[r->obj_len++] = (char)c;
    return true;
}

/* The rest of an object whose '{' was just read, as far as it goes: to its
 * closing brace, or to the end of the input (jansson then says what is wrong). */
static bool cut_object(cli_input *r)
{
    int depth = 1;
    bool in_string = false, escaped = false;
    r->obj_len = 0;
    if (!append(r, '{'))
        return false;
    while (depth > 0) {
        cb_json_pos at;
        int c = get(r, &at);
        if (c == EOF)
            break;
        if (!append(r, c))
            return false;
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return true;
}

static void skip_line(cli_input *r)
{
    cb_json_pos at;
    int c;
    while ((c = get(r, &at)) != EOF && c != '\n')
        ;
}

/* A stream may open with a UTF-8 byte-order mark, as Windows editors write. */
static void skip_bom(cli_input *r)
{
    static const unsigned char bom[] = {0xEF, 0xBB, 0xBF};
    unsigned char seen[3];
    size_t n = 0;
    cb_json_pos at;
    r->started = true;
    while (n < sizeof bom) {
        int c = get(r, &at);
        if (c == EOF)
            break;
        seen[n++] = (unsigned char)c;
        if (seen[n - 1] != bom[n - 1])
            break;
    }
    if (n == sizeof bom && memcmp(seen, bom, n) == 0) {
        r->pos = (cb_json_pos){1, 1};
        return;
    }
    /* Not a mark: read those bytes again. */
    char *pending = malloc(n + 1);
    if (pending) {
        memcpy(pending, seen, n);
        free(r->pending);
        r->pending = pending;
        r->pending_len = n;
        r->pending_at = 0;
    }
    r->pos = (cb_json_pos){1, 1};
}

cli_input_result cli_input_next(cli_input *r, const char **text, size_t *len, cb_json_pos *at, char *why, size_t cap)
{
    static const char hint[] =
        "each event is one JSON object (NDJSON, a JSON array of objects, or objects one after another)";
    if (!r->started)
        skip_bom(r);
    for (;;) {
        int c = get(r, at);
        if (c == EOF) {
            if (!r->in_array)
                return CLI_INPUT_END;
            r->in_array = false;
            *at = r->array_at;
            snprintf(why, cap, "the JSON array opened here is not closed before the end of the input");
            return CLI_INPUT_ERROR;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',')
            continue;
        if (c == '[' && !r->in_array) {
            r->in_array = true;
            r->array_at = *at;
            continue;
        }
        if (c == ']' && r->in_array) {
            r->in_array = false;
            continue;
        }
        if (c == '{') {
            r->obj_at = *at;
            if (!cut_object(r)) {
                snprintf(why, cap, "an object longer than %u MiB", CLI_INPUT_OBJECT_MAX >> 20);
                skip_line(r);
                return CLI_INPUT_ERROR;
            }
            *text = r->obj;
            *len = r->obj_len;
            return CLI_INPUT_OBJECT;
        }
        snprintf(why, cap, "expected '{' here: %s", hint);
        skip_line(r);
        return CLI_INPUT_ERROR;
    }
}

void cli_input_resume_after(cli_input *r, cb_json_pos error)
{
    /* Find where the line after the error starts within the object's text. */
    int line = r->obj_at.line;
    size_t from = 0;
    while (from < r->obj_len && line <= error.line)
        if (r->obj[from++] == '\n')
            line++;
    if (from >= r->obj_len || line <= error.line)
        return; /* the error is on the object's last line: go on after it */
    size_t back = r->obj_len - from, rest = r->pending_len - r->pending_at;
    char *pending = malloc(back + rest + 1);
    if (!pending)
        return;
    memcpy(pending, r->obj + from, back);
    memcpy(pending + back, r->pending + r->pending_at, rest);
    free(r->pending);
    r->pending = pending;
    r->pending_len = back + rest;
    r->pending_at = 0;
    r->pos = (cb_json_pos){line, 1};
}
