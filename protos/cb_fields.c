#include "cb_fields.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cb_json.h"

/* proto3 leaves a singular field at its default off the wire; JSON follows suit. */
static bool is_default(const ProtobufCFieldDescriptor *fd, const void *p)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM: return *(const uint32_t *)p == 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return *(const uint64_t *)p == 0;
    case PROTOBUF_C_TYPE_FLOAT: return *(const float *)p == 0;
    case PROTOBUF_C_TYPE_DOUBLE: return *(const double *)p == 0;
    case PROTOBUF_C_TYPE_BOOL: return !*(const protobuf_c_boolean *)p;
    case PROTOBUF_C_TYPE_STRING: return !*(const char *const *)p || !**(const char *const *)p;
    case PROTOBUF_C_TYPE_BYTES: return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE: return !*(const void *const *)p;
    }
    return true;
}

/* A oneof member that is chosen is present even at its default, since which
 * member is chosen is itself information; one whose pointer is NULL is not,
 * as protobuf-c's packer skips it. */
bool cb_field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd)
{
    const char *base = (const char *)m;
    const void *p = base + fd->offset;
    if (fd->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)(base + fd->quantifier_offset) > 0;
    if (!(fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        return !is_default(fd, p);
    if (*(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
        return false;
    return (fd->type != PROTOBUF_C_TYPE_STRING && fd->type != PROTOBUF_C_TYPE_MESSAGE) || *(const void *const *)p;
}

size_t cb_field_value_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    default: return 4;
    }
}

size_t cb_field_values(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd, const void **first,
                       size_t *stride)
{
    const char *base = (const char *)m;
    *stride = cb_field_value_size(fd->type);
    if (!cb_field_present(m, fd))
        return 0;
    if (fd->label != PROTOBUF_C_LABEL_REPEATED) {
        *first = base + fd->offset;
        return 1;
    }
    *first = *(const void *const *)(base + fd->offset);
    return *(const size_t *)(base + fd->quantifier_offset);
}

static bool visit(const ProtobufCMessage *m, char *path, size_t cap, size_t used, cb_field_fn fn, void *arg)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned f = 0; f < d->n_fields; f++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[f];
        const void *first;
        size_t stride, n = cb_field_values(m, fd, &first, &stride);
        for (size_t i = 0; i < n; i++) {
            const void *value = (const char *)first + i * stride;
            size_t next = used;
            if (path) {
                char name[128];
                cb_json_field_name(fd->name, name, sizeof name);
                int w = fd->label == PROTOBUF_C_LABEL_REPEATED
                            ? snprintf(path + used, cap - used, "%s%s[%zu]", used ? "." : "", name, i)
                            : snprintf(path + used, cap - used, "%s%s", used ? "." : "", name);
                next = w < 0 ? used : used + (size_t)w >= cap ? cap - 1 : used + (size_t)w;
            }
            if (!fn(arg, fd, value, path))
                return false;
            const ProtobufCMessage *inner =
                fd->type == PROTOBUF_C_TYPE_MESSAGE ? *(const ProtobufCMessage *const *)value : NULL;
            if (inner && !visit(inner, path, cap, next, fn, arg))
                return false;
            if (path)
                path[used] = '\0';
        }
    }
    return true;
}

bool cb_fields_visit(const ProtobufCMessage *m, char *path, size_t cap, cb_field_fn fn, void *arg)
{
    if (path && cap == 0)
        path = NULL;
    if (path)
        path[0] = '\0';
    return visit(m, path, cap, 0, fn, arg);
}

/* The field of d named by the path's first segment (its JSON name); *rest
 * is set to what follows it (NULL at the end). */
static const ProtobufCFieldDescriptor *segment(const ProtobufCMessageDescriptor *d, const char *path, const char **rest)
{
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    *rest = dot ? dot + 1 : NULL;
    for (unsigned f = 0; d && f < d->n_fields; f++) {
        char name[128];
        cb_json_field_name(d->fields[f].name, name, sizeof name);
        if (strlen(name) == len && memcmp(name, path, len) == 0)
            return &d->fields[f];
    }
    return NULL;
}

bool cb_field_path_valid(const ProtobufCMessageDescriptor *d, const char *path)
{
    const char *rest;
    const ProtobufCFieldDescriptor *fd = segment(d, path, &rest);
    if (!fd || !rest)
        return fd != NULL;
    return fd->type == PROTOBUF_C_TYPE_MESSAGE && cb_field_path_valid(fd->descriptor, rest);
}

bool cb_field_path_present(const ProtobufCMessage *m, const char *path)
{
    const char *rest;
    const ProtobufCFieldDescriptor *fd = segment(m->descriptor, path, &rest);
    if (!fd)
        return false;
    if (!rest)
        return cb_field_present(m, fd);
    if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
        return false;
    const void *first;
    size_t stride, n = cb_field_values(m, fd, &first, &stride);
    if (fd->label == PROTOBUF_C_LABEL_REPEATED && n == 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (!cb_field_path_present(*(const ProtobufCMessage *const *)((const char *)first + i * stride), rest))
            return false;
    return n > 0;
}

bool cb_field_path_compile(const ProtobufCMessageDescriptor *d, const char *path, cb_field_path *out)
{
    out->n = 0;
    for (const char *rest = path; rest;) {
        const ProtobufCFieldDescriptor *fd = segment(d, rest, &rest);
        if (!fd || out->n == CB_FIELD_PATH_DEPTH || (rest && fd->type != PROTOBUF_C_TYPE_MESSAGE))
            return false;
        out->fd[out->n++] = fd;
        d = fd->descriptor;
    }
    return out->n > 0;
}

static bool holds_from(const ProtobufCMessage *m, const cb_field_path *p, unsigned at)
{
    const ProtobufCFieldDescriptor *fd = p->fd[at];
    if (at + 1 == p->n)
        return cb_field_present(m, fd);
    const void *first;
    size_t stride, n = cb_field_values(m, fd, &first, &stride);
    if (fd->label == PROTOBUF_C_LABEL_REPEATED && n == 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (!holds_from(*(const ProtobufCMessage *const *)((const char *)first + i * stride), p, at + 1))
            return false;
    return n > 0;
}

bool cb_field_path_holds(const ProtobufCMessage *m, const cb_field_path *p)
{
    return p->n && holds_from(m, p, 0);
}
