/* Events as people and systems hand them over: NDJSON, a JSON array of
 * objects, or objects one after another over several lines (the README's
 * examples pasted as they are), mixed in one stream if need be. The reader
 * cuts out each object's text as it arrives (so `send -` works on a pipe that
 * stays open) and says where it started; what is not an object is reported
 * with its line and column, and reading carries on at the next line. */
#ifndef CLI_INPUT_H
#define CLI_INPUT_H

#include <stddef.h>
#include <stdio.h>

#include "cb_json.h"

#define CLI_INPUT_OBJECT_MAX (16u << 20) /* longest object text read */

typedef struct cli_input cli_input;

cli_input *cli_input_new(FILE *in);
void cli_input_destroy(cli_input **r_p);

typedef enum {
    CLI_INPUT_OBJECT, /* *text (len bytes, until the next call) is one object's text, starting at *at */
    CLI_INPUT_ERROR,  /* what is at *at is not an object: why says so */
    CLI_INPUT_END,
} cli_input_result;

cli_input_result cli_input_next(cli_input *r, const char **text, size_t *len, cb_json_pos *at, char *why, size_t cap);

/* The object just returned did not parse: carry on reading at the line after
 * `error` (inside it, or past it), so one broken object costs its own lines,
 * not the rest of the input. */
void cli_input_resume_after(cli_input *r, cb_json_pos error);

#endif
