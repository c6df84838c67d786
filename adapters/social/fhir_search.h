/* What the social care adapter's FHIR server answers beside the mapping:
 * searches over the resources it serves (by the patient's identifier,
 * status and _lastUpdated, as FHIR R4 search writes them), the searchset
 * Bundle, and the CapabilityStatement. */
#ifndef CB_FHIR_SEARCH_H
#define CB_FHIR_SEARCH_H

#include <jansson.h>
#include <stdbool.h>

typedef struct fhir_query fhir_query;

/* A searchset's page: _count entries (this many when it is not given, at
 * most the other), from _offset among the matches. */
#define FHIR_PAGE_DEFAULT 100
#define FHIR_PAGE_MOST    1000

fhir_query *fhir_query_new(void);
void fhir_query_free(fhir_query **q_p);
/* One search parameter as given (key, value URL-decoded); false for one it
 * does not know, which a search ignores, as a lenient FHIR server does.
 * _count and _offset choose the page. */
bool fhir_query_add(fhir_query *q, const char *key, const char *value);
/* A search given as query text ("identifier=sys%7Cval&status=active", as
 * If-None-Exist gives one), strictly: NULL with why when a parameter is not
 * one it searches by (ignoring it would match what it was meant to tell
 * apart), has no value, or there is none. */
fhir_query *fhir_query_parse(const char *text, char *why, size_t cap);
/* Why the query cannot be answered (a _lastUpdated it cannot read), or NULL. */
const char *fhir_query_error(const fhir_query *q);
bool fhir_query_matches(const fhir_query *q, const json_t *resource);
/* The page's size, and where it starts among the matches into *offset. */
size_t fhir_query_page(const fhir_query *q, size_t *offset);

/* A searchset Bundle of entries (one page of the resources found), total
 * the matches in all, fullUrl base/<type>/<id>, and links self and next
 * (when not NULL: the URLs of this page and the one after); the caller frees
 * the text. */
char *fhir_searchset(const json_t *entries, size_t total, const char *base, const char *self, const char *next);
char *fhir_capability_statement(void);

/* Whether a body of this Content-Type is FHIR JSON: application/fhir+json,
 * application/json, or DSTU2's application/json+fhir, which older clients
 * still send. */
bool fhir_json_content(const char *content_type);
/* Whether a client that sent this Accept header and _format parameter
 * (either may be NULL) takes FHIR JSON, the one format served here. As FHIR
 * R4's HTTP page has it, _format overrides Accept ("json" or a JSON type);
 * in Accept, a JSON type or a wildcard with q above 0 is enough. */
bool fhir_json_acceptable(const char *accept, const char *format);

#endif
