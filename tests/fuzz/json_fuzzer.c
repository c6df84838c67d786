/* The JSON mapping on arbitrary text: never crashes, and whatever parses
 * prints back to JSON that parses to the same wire bytes. */
#include <stdlib.h>
#include <string.h>

#include "cb_codec.h"
#include "cb_json.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cb_error err = {0};
    ProtobufCMessage *m = cb_json_loads(&carebridge__v1__envelope__descriptor, (const char *)data, size, &err);
    if (!m)
        return 0;
    char *text = cb_json_dumps(m, &err);
    CHECK(text);
    ProtobufCMessage *again = cb_json_loads(&carebridge__v1__envelope__descriptor, text, strlen(text), &err);
    CHECK(again);
    uint8_t *a, *b;
    size_t la = cb_pack(m, &a), lb = cb_pack(again, &b);
    CHECK(la == lb && memcmp(a, b, la) == 0);
    free(a);
    free(b);
    free(text);
    protobuf_c_message_free_unpacked(again, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
