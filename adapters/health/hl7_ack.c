#include "hl7_ack.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int code;
    const char *text;
} codes[] = {
    {0, "Message accepted"},
    {CB_HL7_SEGMENT_SEQUENCE, "Segment sequence error"},
    {CB_HL7_REQUIRED_MISSING, "Required field missing"},
    {CB_HL7_DATA_TYPE, "Data type error"},
    {CB_HL7_TABLE_VALUE, "Table value not found"},
    {CB_HL7_UNSUPPORTED_TYPE, "Unsupported message type"},
    {CB_HL7_UNSUPPORTED_EVENT, "Unsupported event code"},
    {CB_HL7_UNSUPPORTED_PROCESSING, "Unsupported processing id"},
    {CB_HL7_UNSUPPORTED_VERSION, "Unsupported version id"},
    {CB_HL7_INTERNAL, "Application internal error"},
};

const char *cb_hl7_code_text(int code)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].code == code)
            return codes[i].text;
    return "Application error";
}

typedef struct {
    char *p;
    size_t n, cap;
    bool over;
    const cb_hl7_delims *d;
} writer;

static void put(writer *w, const char *s, size_t n)
{
    if (w->over || w->n + n >= w->cap) {
        w->over = true;
        return;
    }
    memcpy(w->p + w->n, s, n);
    w->n += n;
}

static void puts_(writer *w, const char *s)
{
    put(w, s, strlen(s));
}

static void sep(writer *w, char c)
{
    put(w, &c, 1);
}

/* Plain text, its separators escaped. */
static void text(writer *w, const char *s)
{
    char buf[1024];
    if (!*s)
        return;
    if (cb_hl7_escape(w->d, s, buf, sizeof buf))
        puts_(w, buf);
    else
        w->over = true;
}

/* A field of m as written, or fallback. Longer than any the standard
 * allows (MSH-10 is 199 at most in v2.5), it is not echoed: an ACK always
 * fits, whatever the message. */
#define ECHO_MAX 256
static void copy(writer *w, const cb_hl7 *m, unsigned field, const char *fallback)
{
    const char *p;
    size_t len;
    if (m && cb_hl7_raw(m, 0, field, &p, &len) && len <= ECHO_MAX)
        put(w, p, len);
    else
        puts_(w, fallback);
}

/* ERR-1's location and code (ELD) for v2.3 and v2.4; ERR-2's (ERL) and
 * ERR-3, -4 and -8 from v2.5, when ERR-1 was withdrawn. */
static void err_segment(writer *w, const cb_hl7_issue *is, bool old)
{
    const cb_hl7_delims *d = w->d;
    char num[16];
    puts_(w, "ERR");
    sep(w, d->field);
    if (!old)
        sep(w, d->field);
    if (is->segment[0]) {
        text(w, is->segment);
        sep(w, d->component);
        snprintf(num, sizeof num, "%u", is->sequence ? is->sequence : 1);
        puts_(w, num);
        sep(w, d->component);
        if (is->field) {
            snprintf(num, sizeof num, "%u", is->field);
            puts_(w, num);
        }
    } else if (old) {
        sep(w, d->component), sep(w, d->component);
    }
    snprintf(num, sizeof num, "%d", is->code);
    char coded = old ? d->subcomponent : d->component;
    if (old)
        sep(w, d->component);
    else
        sep(w, d->field);
    puts_(w, num);
    sep(w, coded);
    text(w, cb_hl7_code_text(is->code));
    sep(w, coded);
    puts_(w, "HL70357");
    if (!old) {
        sep(w, d->field);
        char sev = is->severity ? is->severity : 'E';
        put(w, &sev, 1);
        for (int i = 0; i < 4; i++)
            sep(w, d->field);
        if (is->text)
            text(w, is->text);
    }
    sep(w, '\r');
}

/* Versions before 2.5 (2.1 to 2.4) write ERR-1; 2.5 on, ERR-2 to -8. */
static bool before_2_5(const cb_hl7 *m)
{
    char v[16];
    if (!m || cb_hl7_get(m, (cb_hl7_at){0, 12, 1, 1, 0}, v, sizeof v) != CB_HL7_VALUE)
        return false;
    return !strncmp(v, "2.1", 3) || !strncmp(v, "2.2", 3) || !strncmp(v, "2.3", 3) || !strncmp(v, "2.4", 3);
}

size_t cb_hl7_ack(const cb_hl7 *m, const char *code, const char *control_id, const char *timestamp,
                  const cb_hl7_issue *issues, size_t n_issues, char *out, size_t cap)
{
    static const cb_hl7_delims standard = {'|', '^', '~', '\\', '&'};
    const cb_hl7_delims *d = m ? cb_hl7_delimiters(m) : &standard;
    writer w = {.p = out, .cap = cap, .d = d};
    char enc[4] = {d->component, d->repetition, d->escape, d->subcomponent};
    puts_(&w, "MSH");
    sep(&w, d->field);
    put(&w, enc, 4);
    unsigned from[4] = {5, 6, 3, 4}; /* receiving app and facility answer as sending, and back */
    for (int i = 0; i < 4; i++) {
        sep(&w, d->field);
        copy(&w, m, from[i], "");
    }
    sep(&w, d->field);
    text(&w, timestamp);
    sep(&w, d->field);
    sep(&w, d->field);
    puts_(&w, "ACK");
    char trigger[16];
    if (m && cb_hl7_get(m, (cb_hl7_at){0, 9, 1, 2, 0}, trigger, sizeof trigger) == CB_HL7_VALUE) {
        sep(&w, d->component);
        text(&w, trigger);
        sep(&w, d->component);
        puts_(&w, "ACK");
    }
    sep(&w, d->field);
    text(&w, control_id);
    sep(&w, d->field);
    copy(&w, m, 11, "P");
    sep(&w, d->field);
    copy(&w, m, 12, "2.5");
    sep(&w, '\r');
    puts_(&w, "MSA");
    sep(&w, d->field);
    puts_(&w, code);
    sep(&w, d->field);
    copy(&w, m, 10, "");
    bool old = before_2_5(m);
    if (old && n_issues) { /* before v2.5 ERR has no text of its own: MSA-3 carries it */
        char all[1024];
        size_t used = 0;
        for (size_t i = 0; i < n_issues && used < sizeof all; i++)
            if (issues[i].text && issues[i].text[0])
                used += (size_t)snprintf(all + used, sizeof all - used, "%s%s", used ? "; " : "", issues[i].text);
        sep(&w, d->field);
        text(&w, all);
    }
    sep(&w, '\r');
    for (size_t i = 0; i < n_issues; i++)
        if (!old || issues[i].code) /* an old version's warning is MSA-3's text alone: its ERR has no severity */
            err_segment(&w, &issues[i], old);
    if (w.over || !cap) {
        if (cap)
            out[0] = 0;
        return 0;
    }
    out[w.n] = 0;
    return w.n;
}
