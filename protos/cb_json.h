/* The proto3 canonical JSON mapping for any protobuf-c message, by walking its
 * descriptor: no per-message code. Output uses lowerCamelCase names, enums by
 * name, Timestamps as RFC 3339 (UTC, "Z"), 64-bit integers as strings, bytes as
 * base64, and omits fields at their default (proto3). Input accepts lowerCamelCase
 * and original field names, enum names or numbers, 64-bit integers as strings or
 * numbers; an unknown field, a wrong type, two members of one oneof, or a string
 * that is not valid UTF-8 is an error whose reason names the field path
 * ("referral.risks[1].level"), never the value. */
#ifndef CB_JSON_H
#define CB_JSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include "cb_error.h"

/* The JSON (lowerCamelCase) name of a proto field name into out, truncated
 * to cap - 1 bytes: "to_agencies" -> "toAgencies". */
void cb_json_field_name(const char *name, char *out, size_t cap);

/* A new JSON value for m; NULL (err set, code INVALID_UTF8 or INVALID_FIELD) if
 * m holds something JSON cannot carry, such as a string that is not UTF-8. */
json_t *cb_json_from_message(const ProtobufCMessage *m, cb_error *err);

/* Compact one-line JSON text for m (malloc'd, caller frees); NULL with err set. */
char *cb_json_dumps(const ProtobufCMessage *m, cb_error *err);

/* A new message of type desc from a JSON object. Free it with
 * protobuf_c_message_free_unpacked(m, NULL). NULL with err set (code
 * INVALID_FIELD or INVALID_UTF8) when the JSON does not fit the schema. */
ProtobufCMessage *cb_json_to_message(const ProtobufCMessageDescriptor *desc, const json_t *json, cb_error *err);

/* Parse text (len bytes, need not be NUL-terminated) and convert it as above.
 * Text that is not JSON is an error too (code DECODE_ERROR, reason with the
 * line and column jansson reports). A uint64 may be a number up to 2^64 - 1,
 * though jansson itself holds no integer past int64. */
ProtobufCMessage *cb_json_loads(const ProtobufCMessageDescriptor *desc, const char *text, size_t len, cb_error *err);

/* A place in a text, 1-based, columns counted in characters as jansson does. */
typedef struct {
    int line, column;
} cb_json_pos;

/* cb_json_loads for text cut out of a larger text (NDJSON, an array, objects
 * over several lines), which starts at *at in it: a DECODE_ERROR's position is
 * given in the larger text's terms, in the reason and in *at, so a reader can
 * carry on after it. */
ProtobufCMessage *cb_json_loads_at(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                                   cb_json_pos *at, cb_error *err);

#endif
