/* The one funnel through which carebridge packs and unpacks protobuf: size
 * limits are checked before anything is allocated, and the error text lives
 * here once. */
#ifndef CB_CODEC_H
#define CB_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "carebridge.pb-c.h"
#include "cb_error.h"

typedef Carebridge__V1__Frame cb_frame;
typedef Carebridge__V1__Envelope cb_envelope;

/* Decode one frame. Frames over max_len get TOO_LARGE before any allocation;
 * bytes that are not a Frame get DECODE_ERROR. Free with cb_frame_free. */
cb_frame *cb_frame_decode(const uint8_t *buf, size_t len, size_t max_len, cb_error *err);
void cb_frame_free(cb_frame **frame_p);
/* The same, allocating from `allocator` (an arena: never cb_frame_free these). */
cb_frame *cb_frame_decode_with(const uint8_t *buf, size_t len, size_t max_len, ProtobufCAllocator *allocator,
                               cb_error *err);

/* Decode a stored envelope (the store holds exactly the packed Envelope). */
cb_envelope *cb_envelope_decode(const uint8_t *buf, size_t len);
void cb_envelope_free(cb_envelope **env_p);

/* Pack any message into a new malloc'd buffer; returns its length, 0 on
 * allocation failure (an empty message packs to 0 bytes: *out is then non-NULL). */
size_t cb_pack(const ProtobufCMessage *m, uint8_t **out);

/* Pack into memory from `allocator` (an arena); 0 on allocation failure. */
size_t cb_pack_with(const ProtobufCMessage *m, ProtobufCAllocator *allocator, uint8_t **out);

/* Pack into buf when it is big enough, else into a new buffer; *out says which. */
size_t cb_pack_into(const ProtobufCMessage *m, uint8_t *buf, size_t cap, uint8_t **out);

/* The ref and event id of a Publish frame, read from the wire without decoding
 * the rest, so even a frame too large to decode can be answered by name.
 * Either may be left empty (0, "") when absent or unreadable. */
void cb_peek_publish(const uint8_t *buf, size_t len, uint64_t *ref, char *id, size_t cap);

/* Which member of Frame.kind a frame holds (its field number: 12 for publish),
 * read from the wire without decoding; 0 when none or unreadable. Cheap enough
 * to refuse a flood of frames without decoding them. */
uint32_t cb_peek_kind(const uint8_t *buf, size_t len);

/* A Frame{deliver{seq, attempt, event}} around an already packed Envelope,
 * without unpacking it: the wire form of an embedded message is its bytes.
 * Returns the length written to a new malloc'd *out, 0 on allocation failure. */
size_t cb_pack_deliver(uint64_t seq, uint32_t attempt, const uint8_t *event, size_t len, uint8_t **out);
/* The same with more of the Deliver's fields after the event, already
 * encoded (its flags: each a tag, a length and a packed Flag). */
size_t cb_pack_deliver_with(uint64_t seq, uint32_t attempt, const uint8_t *event, size_t len, const uint8_t *more,
                            size_t more_len, uint8_t **out);

/* Merge src into *dst by protobuf's rules (set scalars replace, repeated
 * fields append, messages merge): the parse of the two wire forms laid end to
 * end. Both must have the same descriptor. One exception, from protobuf-c's
 * parser: a oneof member set on both sides is replaced, not merged, so merge
 * bodies (Referral into Referral), not envelopes. False (and *dst unchanged)
 * on allocation failure. */
bool cb_merge(ProtobufCMessage **dst, const ProtobufCMessage *src);

/* "referral", "discharge", "handover", "response", "update", "closure", or "none". */
const char *cb_body_name(const cb_envelope *env);

#endif
