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

/* ---- peeking: a field or two read from the wire without decoding the rest */

/* The first field `id` of wire type `type` in [p, end). */
static bool find_field(const uint8_t *p, const uint8_t *end, uint32_t id, int type, cb_wire_field *out)
{
    while (p < end) {
        if (cb_wire_next(&p, end, out))
            return false;
        if (out->id == id && out->type == type)
            return true;
    }
    return false;
}

uint32_t cb_peek_kind(const uint8_t *buf, size_t len)
{
    const uint8_t *p = buf, *end = buf + len;
    uint32_t kind = 0;
    cb_wire_field f;
    while (p < end) {
        if (cb_wire_next(&p, end, &f))
            return 0;
        if (f.type == CB_WIRE_LEN && protobuf_c_message_descriptor_get_field(&carebridge__v1__frame__descriptor, f.id))
            kind = f.id; /* of a oneof, the last member wins */
    }
    return kind;
}

void cb_peek_publish(const uint8_t *buf, size_t len, uint64_t *ref, char *out, size_t cap)
{
    cb_wire_field f, publish, event, id;
    *ref = find_field(buf, buf + len, 1 /* Frame.ref */, CB_WIRE_VARINT, &f) ? f.varint : 0;
    if (!cap)
        return;
    out[0] = '\0';
    if (!find_field(buf, buf + len, 12 /* Frame.publish */, CB_WIRE_LEN, &publish) ||
        !find_field(publish.payload, publish.payload + publish.len, 1 /* Publish.event */, CB_WIRE_LEN, &event) ||
        !find_field(event.payload, event.payload + event.len, 1 /* Envelope.event_id */, CB_WIRE_LEN, &id) ||
        id.len >= cap)
        return;
    memcpy(out, id.payload, id.len);
    out[id.len] = '\0';
}

size_t cb_pack_deliver(uint64_t seq, uint32_t attempt, const uint8_t *event, size_t len, uint8_t **out)
{
    return cb_pack_deliver_with(seq, attempt, event, len, NULL, 0, out);
}

size_t cb_pack_deliver_with(uint64_t seq, uint32_t attempt, const uint8_t *event, size_t len, const uint8_t *more,
                            size_t more_len, uint8_t **out)
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
    hn += cb_wire_put_varint(head + hn, in + len + more_len);
    *out = malloc(hn + in + len + more_len);
    if (!*out)
        return 0;
    memcpy(*out, head, hn);
    memcpy(*out + hn, inner, in);
    memcpy(*out + hn + in, event, len);
    if (more_len)
        memcpy(*out + hn + in + len, more, more_len);
    return hn + in + len + more_len;
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
