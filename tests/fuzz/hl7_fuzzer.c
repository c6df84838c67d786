/* The HL7 v2 reader on arbitrary bytes: never crashes, every value it
 * returns fits its buffer, and a value escaped with the message's own
 * separators, put into a message, reads back the same (line ends, which
 * would end a segment, as spaces; text that is not UTF-8 is converted). Whatever reads is mapped: to an event the
 * broker's JSON reader takes or refuses with a reason, or to a refusal whose
 * ACK can be written. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cb_check.h"
#include "cb_codec.h"
#include "cb_json.h"
#include "hl7_ack.h"
#include "hl7_events.h"
#include "fuzz_check.h"

static void round_trip(const cb_hl7_delims *d, const char *value)
{
    char esc[3 * 300 + 1], text[1100], back[301], want[301];
    /* Text that is not UTF-8 is read as Windows-1252 and comes back converted. */
    if (!cb_utf8_valid(value, strlen(value)) || !cb_hl7_escape(d, value, esc, sizeof esc))
        return;
    char *w = text;
    *w++ = 'M', *w++ = 'S', *w++ = 'H', *w++ = d->field;
    *w++ = d->component, *w++ = d->repetition, *w++ = d->escape, *w++ = d->subcomponent;
    *w++ = d->field;
    size_t n = strlen(esc);
    memcpy(w, esc, n);
    w[n] = 0;
    cb_hl7_error err;
    cb_hl7 *m = cb_hl7_parse(text, strlen(text), &err);
    CHECK(m);
    size_t i = 0;
    for (; value[i]; i++)
        want[i] = value[i] == '\r' || value[i] == '\n' ? ' ' : value[i];
    want[i] = 0;
    cb_hl7_kind k = cb_hl7_get(m, (cb_hl7_at){0, 3, 1, 0, 0}, back, sizeof back);
    /* Spaces alone, or "" itself, read back as nothing or the null. */
    CHECK(k == CB_HL7_VALUE ? strcmp(back, want) == 0 : k == CB_HL7_NULL ? strcmp(want, "\"\"") == 0 : 1);
    cb_hl7_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cb_hl7_error err;
    cb_hl7 *m = cb_hl7_parse(data, size, &err);
    if (!m) {
        CHECK(err.code >= 100 && err.code < 300 && memchr(err.text, 0, sizeof err.text));
        return 0;
    }
    char buf[301];
    for (size_t s = 0; s < cb_hl7_segment_count(m) && s < 64; s++) {
        CHECK(strlen(cb_hl7_segment_name(m, s)) == 3);
        for (unsigned f = 1; f <= 20; f++) {
            unsigned reps = cb_hl7_repetitions(m, s, f);
            for (unsigned r = 1; r <= reps && r <= 4; r++)
                for (unsigned c = 0; c <= 4; c++)
                    for (unsigned u = 0; u <= 2; u++) {
                        cb_hl7_kind k = cb_hl7_get(m, (cb_hl7_at){s, f, r, c, u}, buf, sizeof buf);
                        CHECK(strlen(buf) < sizeof buf);
                        CHECK(k == CB_HL7_VALUE || buf[0] == 0);
                        if (k == CB_HL7_VALUE && c && u && !(s == 0 && f <= 2))
                            round_trip(cb_hl7_delimiters(m), buf);
                    }
        }
    }
    static const char *const to[] = {"social-care"};
    static const cb_hl7_map_opts opts = {.agency = "health",
                                         .discharge_to = to,
                                         .n_discharge_to = 1,
                                         .referral_to = to,
                                         .n_referral_to = 1,
                                         .agencies = to,
                                         .n_agencies = 1};
    cb_hl7_refusal why;
    json_t *ev = cb_hl7_event(m, &opts, &why);
    if (ev) {
        cb_error cerr = {0};
        ProtobufCMessage *e = cb_json_to_message(&carebridge__v1__envelope__descriptor, ev, &cerr);
        CHECK(e || cerr.reason[0]);
        if (e)
            protobuf_c_message_free_unpacked(e, NULL);
        json_decref(ev);
    } else {
        char ack[4096];
        CHECK(why.issue.code >= 100 && why.issue.text == why.text);
        CHECK(cb_hl7_ack(m, "AE", "C1", "20261202", &why.issue, 1, ack, sizeof ack) > 0);
    }
    cb_hl7_free(&m);
    return 0;
}
