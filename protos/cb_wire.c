#include "cb_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "carebridge.pb-c.h"
#include "cb_check.h"
#include "cb_json.h"

#define TRACKED 32 /* fields per message whose occurrences are counted; ours have fewer than 20 */

bool cb_wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

const char *cb_wire_next(const uint8_t **p, const uint8_t *end, cb_wire_field *f)
{
    uint64_t key, n;
    f->start = *p;
    if (!cb_wire_varint(p, end, &key))
        return "a field's key is cut short";
    if (key >> 3 == 0 || key >> 3 > 0x1FFFFFFF)
        return "a field number is out of range";
    f->id = (uint32_t)(key >> 3);
    f->type = (int)(key & 7);
    f->payload = *p;
    switch (f->type) {
    case CB_WIRE_VARINT:
        if (!cb_wire_varint(p, end, &f->varint))
            return "a number is cut short";
        break;
    case CB_WIRE_64:
    case CB_WIRE_32:
        if ((size_t)(end - *p) < (f->type == CB_WIRE_64 ? 8u : 4u))
            return "a fixed-width number is cut short";
        *p += f->type == CB_WIRE_64 ? 8 : 4;
        break;
    case CB_WIRE_LEN:
        if (!cb_wire_varint(p, end, &n) || n > (uint64_t)(end - *p))
            return "a length runs past the end of the bytes";
        f->payload = *p;
        *p += n;
        break;
    default: return "a field has wire type 3 or 4 (groups), which proto3 does not have";
    }
    f->len = (size_t)(*p - f->payload);
    return NULL;
}

static int wire_type_of(const ProtobufCFieldDescriptor *fd)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return CB_WIRE_64;
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FLOAT: return CB_WIRE_32;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE: return CB_WIRE_LEN;
    default: return CB_WIRE_VARINT;
    }
}

static bool singular_message(const ProtobufCFieldDescriptor *fd)
{
    return fd->type == PROTOBUF_C_TYPE_MESSAGE && fd->label != PROTOBUF_C_LABEL_REPEATED;
}

/* ------------------------------------------------------------------ check */

/* One check in progress: the fields descended through, so that a failure can
 * be named ("publish.event.referral.reason") without a name being written
 * while nothing fails, and the depth of the innermost Envelope, so a failure
 * inside an event is named from the event, as its sender wrote it. */
#define DEPTH_MAX 32 /* the schema nests less than ten deep: deeper is not ours */

typedef struct {
    const ProtobufCFieldDescriptor *fd;
    unsigned index; /* of a repeated field's element */
} level;

typedef struct {
    cb_error *err;
    level at[DEPTH_MAX];
    int depth;
    int event_depth; /* levels above the innermost Envelope; -1 outside one */
    bool merge;
} check;

/* The JSON path of levels [from, to), with the field being read when fd is given. */
static void path_of(const check *c, int from, int to, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = from; i < to && n < cap; i++) {
        char json[64];
        const ProtobufCFieldDescriptor *fd = c->at[i].fd;
        cb_json_field_name(fd->name, json, sizeof json);
        int w = fd->label == PROTOBUF_C_LABEL_REPEATED
                    ? snprintf(out + n, cap - n, "%s%s[%u]", n ? "." : "", json, c->at[i].index)
                    : snprintf(out + n, cap - n, "%s%s", n ? "." : "", json);
        n = w < 0 ? n : n + (size_t)w;
    }
}

/* The path from the innermost event (or the top), down to level `to`. */
static void field_path(const check *c, int to, char *out, size_t cap)
{
    path_of(c, c->event_depth < 0 ? 0 : c->event_depth, to, out, cap);
}

static bool broken(check *c, const ProtobufCMessageDescriptor *d, const char *what, const cb_wire_field *f,
                   const ProtobufCFieldDescriptor *fd)
{
    char at[200], where[280], envelope[200];
    field_path(c, c->depth, at, sizeof at);
    if (f && fd) {
        char name[64];
        cb_json_field_name(fd->name, name, sizeof name);
        snprintf(where, sizeof where, "%s%s%s (field %u)", at, at[0] ? "." : "", name, f->id);
    } else {
        snprintf(where, sizeof where, "%s", at[0] ? at : "its top level");
    }
    if (c->event_depth < 0) {
        cb_fail(c->err, CB_DECODE_ERROR, "the bytes are not a %s: %s, at %s", d->name, what, where);
        return false;
    }
    path_of(c, 0, c->event_depth, envelope, sizeof envelope);
    cb_fail(c->err, CB_DECODE_ERROR, "%s does not decode as a carebridge.v1.Envelope: %s, at %s",
            envelope[0] ? envelope : "the event", what, where);
    return false;
}

static bool packed_ok(const cb_wire_field *f, int element)
{
    if (element == CB_WIRE_64 || element == CB_WIRE_32)
        return f->len % (element == CB_WIRE_64 ? 8 : 4) == 0;
    const uint8_t *p = f->payload, *end = f->payload + f->len;
    uint64_t v;
    while (p < end)
        if (!cb_wire_varint(&p, end, &v))
            return false;
    return true;
}

static bool check_message(check *c, const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end);

static bool check_field(check *c, const ProtobufCFieldDescriptor *fd, const cb_wire_field *f, unsigned index)
{
    /* proto3 strings are UTF-8, and protobuf-c would cut one at a NUL. */
    bool nul = false;
    if (fd->type == PROTOBUF_C_TYPE_STRING &&
        ((nul = memchr(f->payload, 0, f->len) != NULL) || !cb_utf8_valid((const char *)f->payload, f->len))) {
        char path[200];
        c->at[c->depth] = (level){fd, index};
        field_path(c, c->depth + 1, path, sizeof path);
        if (nul)
            cb_fail(c->err, CB_INVALID_FIELD, "%s contains a NUL character (U+0000)", path);
        else
            cb_fail(c->err, CB_INVALID_UTF8, "%s is not valid UTF-8", path);
        return false;
    }
    if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
        return true;
    if (c->depth == DEPTH_MAX)
        return broken(c, fd->descriptor, "messages are nested deeper than the schema allows", NULL, NULL);
    c->at[c->depth++] = (level){fd, index};
    int event_depth = c->event_depth;
    if (fd->descriptor == &carebridge__v1__envelope__descriptor)
        c->event_depth = c->depth;
    bool ok = check_message(c, fd->descriptor, f->payload, f->payload + f->len);
    c->event_depth = event_depth;
    if (ok)
        c->depth--;
    return ok;
}

static bool check_message(check *c, const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end)
{
    unsigned count[TRACKED] = {0};
    while (p < end) {
        cb_wire_field f;
        const char *why = cb_wire_next(&p, end, &f);
        if (why)
            return broken(c, d, why, NULL, NULL);
        const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, f.id);
        if (!fd)
            continue; /* unknown fields are kept as they came */
        size_t i = (size_t)(fd - d->fields);
        int expected = wire_type_of(fd);
        bool packed = fd->label == PROTOBUF_C_LABEL_REPEATED && f.type == CB_WIRE_LEN && expected != CB_WIRE_LEN;
        if (f.type != expected && !packed)
            return broken(c, d, "the field has the wrong wire type for its type", &f, fd);
        if (packed && !packed_ok(&f, expected))
            return broken(c, d, "a packed list is cut short", &f, fd);
        unsigned index = i < TRACKED ? count[i] : 0;
        if (i < TRACKED && count[i] < UINT32_MAX)
            count[i]++;
        if (singular_message(fd) && i < TRACKED && count[i] > 1)
            c->merge = true;
        if (!check_field(c, fd, &f, index))
            return false;
    }
    return true;
}

bool cb_wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, bool *needs_merge,
                   cb_error *err)
{
    check c = {.err = err, .event_depth = d == &carebridge__v1__envelope__descriptor ? 0 : -1};
    bool ok = check_message(&c, d, buf ? buf : (const uint8_t *)"", buf ? buf + len : (const uint8_t *)"");
    *needs_merge = ok && c.merge;
    return ok;
}

/* ------------------------------------------------------------------ merge */

size_t cb_wire_put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Where a oneof's members are told apart: fields sharing a quantifier offset. */
static bool same_oneof(const ProtobufCFieldDescriptor *a, const ProtobufCFieldDescriptor *b)
{
    return (a->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && (b->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           a->quantifier_offset == b->quantifier_offset;
}

typedef struct {
    const ProtobufCFieldDescriptor *fd;
    const uint8_t *payload;
    size_t len;
} part;

/* A singular message field given in parts is given once: key, length, and the
 * parts laid end to end (protobuf's merge is the parse of the concatenation),
 * merged again in turn, since the parts may repeat fields of their own. */
static size_t put_merged(const ProtobufCFieldDescriptor *fd, const part *parts, size_t n, uint8_t *out)
{
    size_t total = 0;
    for (size_t k = 0; k < n; k++)
        if (parts[k].fd == fd)
            total += parts[k].len;
    uint8_t *joined = malloc(total ? total : 1), *merged = malloc(total ? total : 1);
    size_t len = 0, used = 0;
    if (joined && merged) {
        for (size_t k = 0; k < n; k++)
            if (parts[k].fd == fd) {
                memcpy(joined + used, parts[k].payload, parts[k].len);
                used += parts[k].len;
            }
        len = total ? cb_wire_merge(fd->descriptor, joined, total, merged) : 0;
    }
    size_t w = 0;
    if (joined && merged && (len || !total)) {
        w = cb_wire_put_varint(out, (uint64_t)fd->id << 3 | CB_WIRE_LEN);
        w += cb_wire_put_varint(out + w, len);
        memcpy(out + w, merged, len);
        w += len;
    }
    free(joined);
    free(merged);
    return w ? w : SIZE_MAX;
}

size_t cb_wire_merge(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, uint8_t *out)
{
    /* Every other field is copied in its order (so repeated fields keep theirs,
     * and of scalars given twice the last still wins); the singular messages
     * follow, each once. Of a oneof only the member given last is kept. */
    part *parts = malloc((len / 2 + 1) * sizeof *parts); /* a field takes at least two bytes */
    if (!parts)
        return 0;
    size_t n = 0, w = 0;
    const uint8_t *p = buf, *end = buf + len;
    while (p < end) {
        cb_wire_field f;
        if (cb_wire_next(&p, end, &f)) {
            free(parts);
            return 0; /* cannot happen after cb_wire_check */
        }
        const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, f.id);
        if (!fd || !singular_message(fd)) {
            memcpy(out + w, f.start, (size_t)(p - f.start));
            w += (size_t)(p - f.start);
            continue;
        }
        for (size_t k = 0; k < n; k++)
            if (parts[k].fd && parts[k].fd != fd && same_oneof(parts[k].fd, fd))
                parts[k].fd = NULL; /* another member of its oneof was given later */
        parts[n++] = (part){fd, f.payload, f.len};
    }
    for (size_t k = 0; k < n; k++) {
        const ProtobufCFieldDescriptor *fd = parts[k].fd;
        bool first = fd != NULL;
        for (size_t j = 0; first && j < k; j++)
            first = parts[j].fd != fd;
        if (!first)
            continue;
        size_t wrote = put_merged(fd, parts, n, out + w);
        if (wrote == SIZE_MAX) {
            free(parts);
            return 0;
        }
        w += wrote;
    }
    free(parts);
    return w;
}
