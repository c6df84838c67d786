/* The protobuf wire format read directly, by descriptor, for what protobuf-c
 * 1.4.1 gets wrong or cannot say (the codec's own helpers; callers use
 * cb_codec.h):
 *   - a string must be UTF-8 (proto3 says so; INVALID_UTF8 names it), and one
 *     holding U+0000 would be cut at the NUL, so it is refused;
 *   - a singular message field given twice (two serialised messages laid end
 *     to end: protobuf's standard merge) keeps only its last part in
 *     protobuf-c when it is a oneof member, and loses proto3 scalars of a
 *     Timestamp; such a message is rewritten with each field given once, its
 *     parts merged as the protobuf spec says, before protobuf-c reads it;
 *   - bytes that do not decode are named by where they stop decoding
 *     ("publish.event does not decode as a carebridge.v1.Envelope: ..."). */
#ifndef CB_WIRE_H
#define CB_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "cb_error.h"

enum { CB_WIRE_VARINT = 0, CB_WIRE_64 = 1, CB_WIRE_LEN = 2, CB_WIRE_32 = 5 };

/* One field on the wire: its number, wire type, and value (a varint's value;
 * a length-delimited field's payload). */
typedef struct {
    uint32_t id;
    int type;
    const uint8_t *start, *payload;
    size_t len;
    uint64_t varint;
} cb_wire_field;

/* Read the field at *p (moving *p past it): NULL, or why it cannot be read. */
const char *cb_wire_next(const uint8_t **p, const uint8_t *end, cb_wire_field *f);

bool cb_wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);
/* Write v as a varint at p (at most 10 bytes); returns its length. */
size_t cb_wire_put_varint(uint8_t *p, uint64_t v);

/* Check a message of type d on the wire. False with err set: DECODE_ERROR
 * naming where and why it stops decoding, INVALID_UTF8 for a string that is
 * not UTF-8, or INVALID_FIELD for one with a NUL. *needs_merge is set when
 * some singular message field occurs twice. */
bool cb_wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, bool *needs_merge,
                   cb_error *err);

/* The same message with every singular message field given once (its parts
 * merged in order; of a oneof, only the member given last), written to out,
 * which must hold len bytes (the result is never longer). Returns its length,
 * 0 on allocation failure. buf must have passed cb_wire_check. */
size_t cb_wire_merge(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, uint8_t *out);

#endif
