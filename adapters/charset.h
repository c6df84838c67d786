/* Text that agency systems send in their own character sets, as UTF-8:
 * HL7 v2 in the set MSH-18 names (or Windows-1252 undeclared), CSV as
 * Excel writes it on a UK machine. glibc's iconv does the converting. */
#ifndef CB_CHARSET_H
#define CB_CHARSET_H

#include <stdbool.h>
#include <stddef.h>

/* text of len bytes in charset (as iconv names it: "WINDOWS-1252",
 * "ISO-8859-2") as UTF-8 into *out, grown as needed (*cap its size;
 * NUL ended), its length in *out_len; false when text is not in charset
 * (a byte it leaves undefined) or memory ran out, *out then unchanged in
 * meaning. */
bool cb_charset_to_utf8(const char *charset, const char *text, size_t len, char **out, size_t *cap, size_t *out_len);

/* The bytes of the UTF-8 byte-order mark text begins with: 3, or 0 for none.
 * Excel's CSV, .NET's JSON and some HL7 senders write one; the text is the
 * rest (RFC 8259 lets JSON's be ignored). */
size_t cb_charset_bom(const char *text, size_t len);

#endif
