#include "cb_codec.h"

#include <stdlib.h>
#include <string.h>

#include "cb_wire.h"

cb_frame *cb_frame_decode(const uint8_t *buf, size_t len, size_t max_len, cb_error *err)
{
    return cb_frame_decode_with(buf, len, max_len, NULL, err);
}

cb_frame *cb_frame_decode_with(const uint8_t *buf, size_t len, size_t max_len, ProtobufCAllocator *allocator,
                               cb_error *err)
{
    if (len > max_len) {
        cb_fail(err, CB_TOO_LARGE, "frame is %zu bytes; the limit is %zu", len, max_len);
        return NULL;
    }
    /* Read first by descriptor: what protobuf-c would cut short (a NUL) or
     * merge wrongly (a message given in parts) never reaches it, and what does
     * not decode is named by where it stops. */
    bool needs_merge = false;
    cb_error why = {0};
    if (!cb_wire_check(&carebridge__v1__frame__descriptor, buf, len, &needs_merge, err ? err : &why))
        return NULL;
    uint8_t *merged = needs_merge ? malloc(len) : NULL;
    if (needs_merge) {
        size_t merged_len = merged ? cb_wire_merge(&carebridge__v1__frame__descriptor, buf, len, merged) : 0;
        if (!merged_len) {
            free(merged);
            cb_fail(err, CB_DECODE_ERROR, "out of memory merging a message given in parts");
            return NULL;
        }
        buf = merged, len = merged_len;
    }
    cb_frame *f = carebridge__v1__frame__unpack(allocator, len, buf);
    free(merged);
    if (!f)
        cb_fail(err, CB_DECODE_ERROR, "the %zu bytes received are not a carebridge.v1.Frame", len);
    return f;
}

void cb_frame_free(cb_frame **frame_p)
{
    if (*frame_p)
        carebridge__v1__frame__free_unpacked(*frame_p, NULL);
    *frame_p = NULL;
}

cb_envelope *cb_envelope_decode(const uint8_t *buf, size_t len)
{
    return carebridge__v1__envelope__unpack(NULL, len, buf);
}

void cb_envelope_free(cb_envelope **env_p)
{
    if (*env_p)
        carebridge__v1__envelope__free_unpacked(*env_p, NULL);
    *env_p = NULL;
}

size_t cb_pack_into(const ProtobufCMessage *m, uint8_t *buf, size_t cap, uint8_t **out)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    if (len <= cap && buf) {
        *out = buf;
    } else {
        *out = malloc(len ? len : 1);
        if (!*out)
            return 0;
    }
    return protobuf_c_message_pack(m, *out);
}

size_t cb_pack_with(const ProtobufCMessage *m, ProtobufCAllocator *allocator, uint8_t **out)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    *out = allocator->alloc(allocator->allocator_data, len ? len : 1);
    return *out ? protobuf_c_message_pack(m, *out) : 0;
}

size_t cb_pack(const ProtobufCMessage *m, uint8_t **out)
{
    return cb_pack_into(m, NULL, 0, out);
}

/* ---- a minimal wire reader, just enough to find one nested string */

/* Find length-delimited field `id` in [p, end); returns its payload bounds. */
static bool find_field(const uint8_t *p, const uint8_t *end, uint32_t id, const uint8_t **out, size_t *out_len)
{
    while (p < end) {
        uint64_t key, n;
        if (!cb_wire_varint(&p, end, &key))
            return false;
        switch (key & 7) {
        case 0:
            if (!cb_wire_varint(&p, end, &n))
                return false;
            break;
        case 1:
        case 5:
            /* fixed64 and fixed32: skip only bytes that are there */
            if ((size_t)(end - p) < ((key & 7) == 1 ? 8u : 4u))
                return false;
            p += (key & 7) == 1 ? 8 : 4;
            break;
        case 2:
            if (!cb_wire_varint(&p, end, &n) || n > (uint64_t)(end - p))
                return false;
            if ((key >> 3) == id) {
                *out = p;
                *out_len = (size_t)n;
                return true;
            }
            p += n;
            break;
        default: return false;
        }
    }
    return false;
}

static bool find_varint(const uint8_t *p, const uint8_t *end, uint32_t id, uint64_t *out)
{
    while (p < end) {
        uint64_t key, n;
        if (!cb_wire_varint(&p, end, &key))
            return false;
        if ((key & 7) == 0) {
            if (!cb_wire_varint(&p, end, &n))
                return false;
            if ((key >> 3) == id) {
                *out = n;
                return true;
            }
        } else if ((key & 7) == 2) {
            if (!cb_wire_varint(&p, end, &n) || n > (uint64_t)(end - p))
                return false;
            p += n;
        } else if ((key & 7) == 1 || (key & 7) == 5) {
            if ((size_t)(end - p) < ((key & 7) == 1 ? 8u : 4u))
                return false;
            p += (key & 7) == 1 ? 8 : 4;
        } else {
            return false;
        }
    }
    return false;
}

uint32_t cb_peek_kind(const uint8_t *buf, size_t len)
{
    const uint8_t *p = buf, *end = buf + len;
    uint32_t kind = 0;
    while (p < end) {
        uint64_t key, n;
        if (!cb_wire_varint(&p, end, &key))
            return 0;
        switch (key & 7) {
        case 0:
            if (!cb_wire_varint(&p, end, &n))
                return 0;
            break;
        case 1:
        case 5:
            if ((size_t)(end - p) < ((key & 7) == 1 ? 8u : 4u))
                return 0;
            p += (key & 7) == 1 ? 8 : 4;
            break;
        case 2:
            if (!cb_wire_varint(&p, end, &n) || n > (uint64_t)(end - p))
                return 0;
            p += n;
            if (protobuf_c_message_descriptor_get_field(&carebridge__v1__frame__descriptor, (unsigned)(key >> 3)))
                kind = (uint32_t)(key >> 3); /* of a oneof, the last member wins */
            break;
        default: return 0;
        }
    }
    return kind;
}

void cb_peek_publish(const uint8_t *buf, size_t len, uint64_t *ref, char *out, size_t cap)
{
    const uint8_t *publish, *event, *id;
    size_t publish_len, event_len, id_len;
    *ref = 0;
    if (!find_varint(buf, buf + len, 1 /* Frame.ref */, ref))
        *ref = 0;
    if (!cap)
        return;
    out[0] = '\0';
    if (!find_field(buf, buf + len, 12 /* Frame.publish */, &publish, &publish_len) ||
        !find_field(publish, publish + publish_len, 1 /* Publish.event */, &event, &event_len) ||
        !find_field(event, event + event_len, 1 /* Envelope.event_id */, &id, &id_len) || id_len >= cap)
        return;
    memcpy(out, id, id_len);
    out[id_len] = '\0';
}

size_t cb_pack_deliver(uint64_t seq, uint32_t attempt, const uint8_t *event, size_t len, uint8_t **out)
{
    uint8_t head[40], inner[32];
    size_t in = 0, hn = 0;
    inner[in++] = 0x08; /* Deliver.seq, varint */
    in += cb_wire_put_varint(inner + in, seq);
    if (attempt) {
        inner[in++] = 0x10; /* Deliver.attempt, varint */
        in += cb_wire_put_varint(inner + in, attempt);
    }
    inner[in++] = 0x1A; /* Deliver.event, length-delimited */
    in += cb_wire_put_varint(inner + in, len);
    head[hn++] = (15 << 3) | 2; /* Frame.deliver, length-delimited */
    hn += cb_wire_put_varint(head + hn, in + len);
    *out = malloc(hn + in + len);
    if (!*out)
        return 0;
    memcpy(*out, head, hn);
    memcpy(*out + hn, inner, in);
    memcpy(*out + hn + in, event, len);
    return hn + in + len;
}

bool cb_merge(ProtobufCMessage **dst, const ProtobufCMessage *src)
{
    size_t a = protobuf_c_message_get_packed_size(*dst), b = protobuf_c_message_get_packed_size(src);
    uint8_t *buf = malloc(a + b + 1);
    if (!buf)
        return false;
    protobuf_c_message_pack(*dst, buf);
    protobuf_c_message_pack(src, buf + a);
    ProtobufCMessage *merged = protobuf_c_message_unpack((*dst)->descriptor, NULL, a + b, buf);
    free(buf);
    if (!merged)
        return false;
    protobuf_c_message_free_unpacked(*dst, NULL);
    *dst = merged;
    return true;
}

const char *cb_body_name(const cb_envelope *env)
{
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field(&carebridge__v1__envelope__descriptor, env->body_case);
    return fd ? fd->name : "none";
}
