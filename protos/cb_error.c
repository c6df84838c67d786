#include "cb_error.h"

#include <stdio.h>
#include <string.h>

static const struct {
    cb_code code;
    const char *message;
} messages[] = {
#define CB_X_MSG(name, msg) {CB_##name, msg},
    CB_CODES(CB_X_MSG)
#undef CB_X_MSG
};

const char *cb_code_name(cb_code code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&carebridge__v1__error_code__descriptor, (int)code);
    return v ? v->name : "UNKNOWN";
}

const char *cb_code_message(cb_code code)
{
    for (size_t i = 0; i < sizeof messages / sizeof messages[0]; i++)
        if (messages[i].code == code)
            return messages[i].message;
    return NULL;
}

cb_code cb_code_from_name(const char *name)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value_by_name(&carebridge__v1__error_code__descriptor, name);
    return v ? (cb_code)v->value : CB_OK;
}

cb_code cb_fail(cb_error *err, cb_code code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->reason, sizeof err->reason, fmt, ap);
        va_end(ap);
    }
    return code;
}
