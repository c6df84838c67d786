/* An unpacked message's fields read by their descriptors, the one way the
 * contract library reads them: whether a field is present, as proto3 and its
 * JSON mapping count presence (a singular field at its default is absent, a
 * oneof member only when it is the one chosen, a repeated field when it
 * holds anything); the values it holds; and a depth-first visit of every
 * present value with its JSON path, for checks that walk a whole message
 * (UTF-8 now, the flags' missing information next). */
#ifndef CB_FIELDS_H
#define CB_FIELDS_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

bool cb_field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd);
/* How many values the field holds (0 when absent), where the first is, and
 * the bytes from one to the next. A value is the field's storage: a string's
 * is its `char *`, a message's its pointer. */
size_t cb_field_values(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd, const void **first,
                       size_t *stride);

/* The bytes one value of a field of this type takes in an unpacked message. */
size_t cb_field_value_size(ProtobufCType type);

/* Given each value of each present field, depth first (a message field's
 * value before the fields inside it), with its JSON path ("person.nhsNumber",
 * "to[1]") when the visit formats paths, else NULL. False stops the visit. */
typedef bool (*cb_field_fn)(void *arg, const ProtobufCFieldDescriptor *fd, const void *value, const char *path);
/* False when fn stopped it; path (cap bytes) then holds the path of the
 * value it stopped at. With path NULL no path is formatted: the fast way,
 * for a walk that seldom stops. */
bool cb_fields_visit(const ProtobufCMessage *m, char *path, size_t cap, cb_field_fn fn, void *arg);

/* Paths of JSON names into a message ("discharge.plannedDate",
 * "referral.contact.name"), as configuration names the fields a rule needs.
 * A path is present when its last field is; through a repeated message,
 * when every element has the rest ("discharge.followUps.agency": each
 * follow-up names its agency, so none at all is no gap). */
bool cb_field_path_valid(const ProtobufCMessageDescriptor *d, const char *path);
bool cb_field_path_present(const ProtobufCMessage *m, const char *path);

/* A path resolved once to its fields, for checks made on every event. */
#define CB_FIELD_PATH_DEPTH 8
typedef struct {
    const ProtobufCFieldDescriptor *fd[CB_FIELD_PATH_DEPTH];
    unsigned n;
} cb_field_path;
/* False when path names no field of d (or is deeper than CB_FIELD_PATH_DEPTH). */
bool cb_field_path_compile(const ProtobufCMessageDescriptor *d, const char *path, cb_field_path *out);
/* cb_field_path_present for a compiled path; m must be of its descriptor. */
bool cb_field_path_holds(const ProtobufCMessage *m, const cb_field_path *p);

#endif
