/* The housing CSV reader on arbitrary bytes: never crashes, rows come in
 * line order, every bad row has a reason, and every event
 * is one the broker's JSON reader takes or refuses with a reason. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cb_codec.h"
#include "cb_json.h"
#include "csv_events.h"
#include "fuzz_check.h"

static bool row(void *arg, unsigned long line, json_t *event, const char *why)
{
    unsigned long *last = arg;
    CHECK(line >= 1 && line >= *last); /* a row may begin on the header's line, after a bare CR */
    *last = line;
    if (!event) {
        CHECK(why && why[0]);
        return true;
    }
    cb_error err = {0};
    ProtobufCMessage *m = cb_json_to_message(&carebridge__v1__envelope__descriptor, event, &err);
    CHECK(m || err.reason[0]);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    json_decref(event);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0; /* fmemopen of nothing fails */
    FILE *f = fmemopen((void *)data, size, "r");
    if (!f)
        return 0;
    char why[300];
    unsigned long last = 0;
    if (!cb_csv_events_read(f, row, &last, why, sizeof why))
        CHECK(why[0]);
    fclose(f);
    return 0;
}
