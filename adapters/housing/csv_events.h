/* Events from a CSV export of a housing management system. The header row
 * names, for each column, the event field it fills by the field's path of
 * JSON names, as carebridge's JSON writes it: `eventId`, `person.nhsNumber`,
 * `toAgencies`, `referral.reason`, `referral.risks.description`. A repeated
 * field's values are separated by `;` in one cell (`toAgencies` of
 * `social-care;health`), and the columns of one repeated group line up by
 * position (`referral.risks.description` and `referral.risks.level`). An
 * empty cell leaves its field out. Every row becomes one event in carebridge
 * JSON, for the broker's JSON reader to check as it checks any event.
 *
 * Rows are read with libcsv: quoted cells across lines, CRLF, a byte-order
 * mark. A column no field answers to rejects the whole file (nothing of it
 * is sent), so no column is silently dropped; a bad row is reported with the
 * line it began on while the rows around it go on. Reasons name columns and
 * lines, never a cell's value. */
#ifndef CB_CSV_EVENTS_H
#define CB_CSV_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#define CB_CSV_LIST_SEP ';'

/* One row: its event (the callee's to json_decref), or NULL and why. False
 * stops the reading. */
typedef bool (*cb_csv_row_fn)(void *arg, unsigned long line, json_t *event, const char *why);

/* Read in to its end; false with why (and no row given) when the header
 * cannot be used, or when in could not be read. */
bool cb_csv_events_read(FILE *in, cb_csv_row_fn fn, void *arg, char *why, size_t cap);

#endif
