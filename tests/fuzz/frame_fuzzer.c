/* What the broker does with a frame from the network before storing it:
 * peek, decode, and for a publish the intake checks. Never crashes. */
#include <stdlib.h>

#include "cb_codec.h"
#include "config.h"
#include "intake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cb_config *cfg;
    char errbuf[256];
    if (!cfg && !(cfg = cb_config_load(NULL, errbuf, sizeof errbuf)))
        abort();
    uint64_t ref;
    char id[CB_EVENT_ID_MAX + 1];
    cb_peek_publish(data, size, &ref, id, sizeof id);
    cb_error err = {0};
    cb_frame *f = cb_frame_decode(data, size, 1 << 20, &err);
    if (f && f->kind_case == CAREBRIDGE__V1__FRAME__KIND_PUBLISH && f->publish->event) {
        if (cb_intake_check(cfg, &cfg->agencies[0], f->publish->event, &err) == CB_OK) {
            cb_person_key keys[CB_PERSON_KEYS_MAX];
            cb_intake_person_keys(f->publish->event->person, keys, CB_PERSON_KEYS_MAX);
        }
    }
    cb_frame_free(&f);
    return 0;
}
