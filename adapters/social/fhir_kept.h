/* What the social care adapter keeps of each resource it serves: the id and
 * meta.lastUpdated it is served with, then the resource's JSON as it came
 * (posted, or mapped from a delivery). A POST is kept as its body, not
 * parsed and written out again: every POST keeps one, and writing it out
 * was a tenth of the adapter's time. */
#ifndef CB_FHIR_KEPT_H
#define CB_FHIR_KEPT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* "<id>\n<last_updated>\n<json>" with a leading UTF-8 byte-order mark of
 * json left out, and its length in *out_len; NULL when out of memory. The
 * caller frees it. */
char *cb_fhir_kept_text(const char *id, const char *last_updated, const char *json, size_t len, size_t *out_len);

/* The resource kept, its id and meta.lastUpdated set (any meta it came with
 * is not served: it was the sender's); NULL when the bytes are not one. An
 * earlier adapter kept the resource's JSON alone, id and meta in it: read as
 * it is. */
json_t *cb_fhir_kept_resource(const uint8_t *bytes, size_t len);

#endif
