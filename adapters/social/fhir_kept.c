#include "fhir_kept.h"

#include "charset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *cb_fhir_kept_text(const char *id, const char *last_updated, const char *json, size_t len, size_t *out_len)
{
    size_t bom = cb_charset_bom(json, len);
    json += bom;
    len -= bom;
    size_t head = strlen(id) + 1 + strlen(last_updated) + 1;
    char *text = malloc(head + len + 1);
    if (!text)
        return NULL;
    snprintf(text, head + 1, "%s\n%s\n", id, last_updated);
    memcpy(text + head, json, len);
    text[head + len] = '\0';
    *out_len = head + len;
    return text;
}

json_t *cb_fhir_kept_resource(const uint8_t *bytes, size_t len)
{
    const char *text = (const char *)bytes;
    if (len && text[0] == '{')
        return json_loadb(text, len, 0, NULL);
    const char *id_end = memchr(text, '\n', len);
    const char *when = id_end ? id_end + 1 : NULL;
    const char *when_end = when ? memchr(when, '\n', len - (size_t)(when - text)) : NULL;
    if (!when_end || id_end == text)
        return NULL;
    const char *json = when_end + 1;
    json_t *res = json_loadb(json, len - (size_t)(json - text), 0, NULL);
    if (!json_is_object(res)) {
        json_decref(res);
        return NULL;
    }
    json_object_set_new(res, "id", json_stringn(text, (size_t)(id_end - text)));
    json_object_set_new(res, "meta", json_pack("{s:s%}", "lastUpdated", when, (size_t)(when_end - when)));
    return res;
}
