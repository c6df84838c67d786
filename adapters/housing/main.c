/* carebridge-housing: the housing adapter. A housing management system
 * drops CSV or JSON exports into an inbox; each row or object becomes an
 * event, kept in the durable outbox (one sync per file) before the file
 * moves to done/ with its rejected rows beside it. Events addressed to
 * housing are written to an outbox directory as JSON files. */
#define _GNU_SOURCE /* strndup */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "adapter.h"
#include "csv_events.h"
#include "input.h"
#include "program.h"

static const char usage[] = "Usage: carebridge-housing [--broker ENDPOINT] [--as AGENCY] [--data DIR]\n"
                            "                          [--key FILE --broker-key KEY]\n"
                            "                          [--inbox DIR] [--outbox DIR] [--settle S]\n"
                            "                          [--ack-wait MS]\n"
                            "\n"
                            "The housing adapter. Watches the inbox (inotify) for files a housing management\n"
                            "system exports: .csv (a header row of event field paths; README, \"CSV drops\")\n"
                            "or .json, .ndjson, .jsonl (one event object, an array of them, or one a line).\n"
                            "A file is read once it is closed after writing, or moved in; files whose names\n"
                            "begin with '.' are not read (write to .name, then rename). Each row or object is\n"
                            "an event (eventId, if it has none: housing:<file digest>:<line>; fromAgency: the\n"
                            "agency served), kept in the durable outbox under DIR with one sync for the file\n"
                            "(one for every 4096 rows of a larger one), then sent on to the broker, whose\n"
                            "answers it waits for (--ack-wait). The file then moves to INBOX/done/, and the\n"
                            "rows that could not be events, or that the broker refused, to\n"
                            "INBOX/done/<file>.rejected beside it, one line each: 'line N: reason'; the rows\n"
                            "around them go through. A refusal that comes after the wait is only logged. A\n"
                            "file the adapter was stopped or killed while reading is read again at the next\n"
                            "start; what was kept from it is known by file digest and line, and not sent\n"
                            "twice. Events addressed to housing are written to the outbox directory as\n"
                            "<seq>.json (temp file, fsync, rename).\n"
                            "\n"
                            "Options:\n"
                            "  --broker ENDPOINT  the broker (default " CB_DEFAULT_BROKER ")\n"
                            "  --as AGENCY        the agency served (default housing)\n"
                            "  --data DIR         outbox and state (default ./var/housing)\n" CB_PROGRAM_KEY_USAGE
                            "  --inbox DIR        files in (default DATA/inbox)\n"
                            "  --outbox DIR       deliveries out (default DATA/outbox)\n"
                            "  --settle S         at start, a file unchanged this long is taken as written\n"
                            "                     (default 2); after that only close and move events count\n"
                            "  --ack-wait MS      how long a file waits for the broker's answers to its rows\n"
                            "                     before it moves to done/ (default 2000; 0: not at all)\n"
                            "  -h, --help         this text;  -V, --version  the version\n";

#define DIGEST_HEX 32
#define DIR_MAX    (PATH_MAX - NAME_MAX - 2) /* a directory, so that DIR/NAME fits PATH_MAX */
#define RETRY_MS   5000
/* Rows in one outbox batch: a file of more commits as it goes, so a nightly
 * full export neither holds the loop (heartbeats, answers, a stop) for
 * minutes nor grows one transaction past what the outbox's index and LMDB
 * take cheaply. A file's rows are known by digest and line, so one read
 * again after a kill between batches sends none of them twice. */
#define ROWS_PER_BATCH 4096

typedef struct {
    unsigned long line;
    size_t order; /* as found: the sort by line keeps it among equals */
    char why[300];
} rejection;

/* A row kept fresh, until the broker answers it. */
typedef struct {
    uint64_t seq;
    unsigned long line;
    bool answered;
} sent_row;

typedef struct {
    cb_program_opts prog;
    char inbox[DIR_MAX], done[DIR_MAX], outbox[DIR_MAX];
    int settle_s, ack_wait_ms;
    cb_adapter *adapter;
    struct reading *awaiting; /* the file whose rows' answers are waited for */
    int inotify;
    int64_t retry_at_ms; /* a file could not be kept: scan again then */
    unsigned long files, events, rejected, delivered;
} housing;

/* One file being read. */
typedef struct reading {
    housing *h;
    cb_adapter_batch *batch;
    char digest[DIGEST_HEX + 1];
    rejection *rej;
    size_t n_rej, cap_rej;
    sent_row *rows; /* seq order */
    size_t n_rows, cap_rows, n_answered;
    unsigned long kept, known, in_batch;
    bool failed, stopped; /* the outbox failed; the adapter is stopping */
} reading;

static void reject(reading *r, unsigned long line, const char *why)
{
    if (r->n_rej == r->cap_rej) {
        size_t cap = r->cap_rej ? r->cap_rej * 2 : 16;
        rejection *p = realloc(r->rej, cap * sizeof *p);
        if (!p)
            return;
        r->rej = p;
        r->cap_rej = cap;
    }
    rejection *x = &r->rej[r->n_rej];
    x->line = line;
    x->order = r->n_rej++;
    snprintf(x->why, sizeof x->why, "%.*s", (int)sizeof x->why - 1, why); /* cut to fit */
}

static void remember(reading *r, uint64_t seq, unsigned long line)
{
    if (r->n_rows == r->cap_rows) {
        size_t cap = r->cap_rows ? r->cap_rows * 2 : 64;
        sent_row *p = realloc(r->rows, cap * sizeof *p);
        if (!p)
            return; /* its answer is not waited for: a refusal is logged only */
        r->rows = p;
        r->cap_rows = cap;
    }
    r->rows[r->n_rows++] = (sent_row){seq, line, false};
}

static sent_row *row_of(reading *r, uint64_t seq)
{
    size_t lo = 0, hi = r->n_rows;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->rows[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->n_rows && r->rows[lo].seq == seq ? &r->rows[lo] : NULL;
}

/* A row kept before (this file read again) that the broker refused then. */
static void refused_before(reading *r, uint64_t seq, unsigned long line)
{
    char why[320], text[360];
    if (cb_adapter_refusal(r->h->adapter, seq, why, sizeof why)) {
        snprintf(text, sizeof text, "refused by carebridge: %s", why);
        reject(r, line, text);
    }
}

/* The batch so far committed, and the next begun, with the adapter stepped
 * between (answers, heartbeats, the window). False when the file cannot go
 * on now: the outbox failed, or the adapter is stopping. */
static bool next_batch(reading *r)
{
    cb_adapter_error err = {0};
    if (cb_adapter_commit(&r->batch, &err) != CB_ADAPTER_OK) {
        cb_log("the outbox could not keep rows: %s: %s", cb_adapter_code_name(err.code), err.text);
        r->failed = true;
        return false;
    }
    r->in_batch = 0;
    cb_adapter_step(r->h->adapter, &err); /* a failed connection is the main loop's to report */
    if (cb_program_stopping()) {
        r->stopped = true;
        return false;
    }
    if (!(r->batch = cb_adapter_begin(r->h->adapter, &err))) {
        cb_log("the outbox cannot take rows: %s", err.text);
        r->failed = true;
        return false;
    }
    return true;
}

/* One row or object of the file: an event for the batch, unless it was kept before. */
static bool take_event(reading *r, unsigned long line, json_t *event)
{
    char source[80];
    snprintf(source, sizeof source, "drop:%s:%lu", r->digest, line);
    uint64_t seq;
    if (cb_adapter_source(r->h->adapter, source, &seq)) { /* read before the adapter was stopped */
        r->known++;
        refused_before(r, seq, line);
        return true;
    }
    if (!json_is_object(event)) {
        reject(r, line, "not a JSON object: each event is one object");
        return true;
    }
    if (!json_object_get(event, "eventId")) {
        char id[80];
        snprintf(id, sizeof id, "housing:%.16s:%lu", r->digest, line);
        json_object_set_new(event, "eventId", json_string(id));
    }
    cb_adapter_error err = {0};
    switch (cb_adapter_add(r->batch, event, source, &seq, &err)) {
    case CB_ADAPTER_NEW:
        r->kept++;
        remember(r, seq, line);
        if (++r->in_batch == ROWS_PER_BATCH)
            return next_batch(r);
        break;
    case CB_ADAPTER_AGAIN:
        r->known++;
        refused_before(r, seq, line);
        break;
    case CB_ADAPTER_REFUSED: reject(r, line, err.text); break;
    case CB_ADAPTER_FAILED: r->failed = true; return false;
    }
    return true;
}

static bool csv_row(void *arg, unsigned long line, json_t *event, const char *why)
{
    reading *r = arg;
    if (!event) {
        reject(r, line, why);
        return true;
    }
    bool go_on = take_event(r, line, event);
    json_decref(event);
    return go_on;
}

static void read_json(reading *r, FILE *f)
{
    cli_input *in = cli_input_new(f);
    if (!in) {
        r->failed = true;
        return;
    }
    for (;;) {
        const char *text;
        size_t len;
        cb_json_pos at;
        char why[240];
        cli_input_result res = cli_input_next(in, &text, &len, &at, why, sizeof why);
        if (res == CLI_INPUT_END)
            break;
        if (res == CLI_INPUT_ERROR) {
            reject(r, (unsigned long)at.line, why);
            continue;
        }
        json_error_t jerr;
        json_t *event = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!event) {
            char text_why[300];
            snprintf(text_why, sizeof text_why, "not JSON: %s", jerr.text);
            reject(r, (unsigned long)at.line, text_why);
            cb_json_pos err_at = {at.line + jerr.line - 1, jerr.column};
            cli_input_resume_after(in, err_at);
            continue;
        }
        bool go_on = take_event(r, (unsigned long)at.line, event);
        json_decref(event);
        if (!go_on)
            break;
    }
    cli_input_destroy(&in);
}

static bool digest_of(FILE *f, char out[DIGEST_HEX + 1])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, DIGEST_HEX / 2);
    unsigned char buf[65536], d[DIGEST_HEX / 2];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        crypto_generichash_update(&st, buf, n);
    if (ferror(f))
        return false;
    crypto_generichash_final(&st, d, sizeof d);
    sodium_bin2hex(out, DIGEST_HEX + 1, d, sizeof d);
    rewind(f);
    return true;
}

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && !strcasecmp(name + n - k, suffix);
}

/* done/<name>, or done/<name>.<n> when a file of that name was done before. */
static void done_name(const housing *h, const char *name, char *out, size_t cap)
{
    struct stat st;
    snprintf(out, cap, "%s", name);
    for (unsigned n = 1; n < 100000; n++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", h->done, out);
        if (lstat(path, &st) < 0)
            return;
        snprintf(out, cap, "%s.%u", name, n);
    }
}

static int by_line(const void *a, const void *b)
{
    const rejection *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void write_rejected(const housing *h, const char *done, reading *r)
{
    qsort(r->rej, r->n_rej, sizeof *r->rej, by_line); /* the broker's refusals came after the file's own */
    size_t cap = 64 + r->n_rej * 360, len = 0;
    char *text = malloc(cap);
    if (!text)
        return;
    for (size_t i = 0; i < r->n_rej; i++)
        len += (size_t)snprintf(text + len, cap - len, "line %lu: %s\n", r->rej[i].line, r->rej[i].why);
    char name[NAME_MAX + 1];
    snprintf(name, sizeof name, "%.*s.rejected", NAME_MAX - 10, done);
    if (!cb_write_atomic(h->done, name, text, len))
        cb_log("could not write %s/%s: %s", h->done, name, strerror(errno));
    free(text);
}

/* The broker's answers to the file's fresh rows, for at most --ack-wait
 * while it is connected: what it refuses goes to .rejected with the rest.
 * (Deliveries that come meanwhile are taken as ever.) */
static void await_answers(housing *h, reading *r)
{
    int64_t until = cb_now_ms() + h->ack_wait_ms;
    while (r->n_answered < r->n_rows && cb_adapter_answers_expected(h->adapter) && !cb_program_stopping()) {
        int64_t left = until - cb_now_ms();
        if (left <= 0)
            break;
        int timeout = cb_adapter_due_ms(h->adapter);
        struct pollfd p = {.fd = cb_adapter_fd(h->adapter), .events = POLLIN};
        if (poll(&p, 1, timeout < left ? timeout : (int)left) < 0 && errno != EINTR)
            break;
        cb_adapter_error err = {0};
        cb_adapter_code code = cb_adapter_step(h->adapter, &err);
        if (code == CB_ADAPTER_BROKER_REFUSED || code == CB_ADAPTER_CONNECTION_FAILED)
            break; /* the main loop says so and stops */
    }
}

/* Read one file of the inbox to the outbox, then move it to done/. False
 * when it could not be kept (it stays, to be read again). */
static bool take_file(housing *h, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", h->inbox, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT; /* gone already: nothing to do */
    reading r = {.h = h};
    cb_adapter_error err = {0};
    h->awaiting = &r; /* answers to rows of earlier batches come while it is read */
    if (!digest_of(f, r.digest) || !(r.batch = cb_adapter_begin(h->adapter, &err))) {
        cb_log("cannot read %s now: %s", name, err.text[0] ? err.text : strerror(errno));
        fclose(f);
        h->awaiting = NULL;
        return false;
    }
    char why[300] = "";
    if (has_suffix(name, ".csv")) {
        if (!cb_csv_events_read(f, csv_row, &r, why, sizeof why) && !r.failed && !r.stopped)
            reject(&r, 1, why); /* the header: no row of it is an event */
    } else if (has_suffix(name, ".json") || has_suffix(name, ".ndjson") || has_suffix(name, ".jsonl")) {
        read_json(&r, f);
    } else {
        reject(&r, 1, "not a file this adapter reads: .csv, .json, .ndjson or .jsonl");
    }
    fclose(f);
    bool ok = !r.failed && !r.stopped;
    if (r.batch && !r.failed && cb_adapter_commit(&r.batch, &err) != CB_ADAPTER_OK) {
        cb_log("the outbox could not keep %s: %s: %s", name, cb_adapter_code_name(err.code), err.text);
        r.failed = true;
        ok = false;
    }
    cb_adapter_abort(&r.batch);
    if (r.failed)
        cb_log("%s stays in the inbox, to be read again: what of it was kept is not sent twice", name);
    else if (r.stopped)
        cb_log("stopping: %s is read again at the next start (%lu rows kept so far)", name, r.kept);
    if (ok) {
        await_answers(h, &r);
        char done[NAME_MAX + 1], to[PATH_MAX];
        done_name(h, name, done, sizeof done);
        snprintf(to, sizeof to, "%s/%s", h->done, done);
        if (r.n_rej)
            write_rejected(h, done, &r);
        if (rename(path, to) < 0 || !cb_sync_dir(h->done) || !cb_sync_dir(h->inbox))
            cb_log("could not move %s to done/: %s", name, strerror(errno));
        cb_log("%s: %lu events kept, %lu kept before, %zu rows rejected%s", name, r.kept, r.known, r.n_rej,
               r.n_rej ? " (done/<file>.rejected)" : "");
        h->files++;
        h->events += r.kept;
        h->rejected += r.n_rej;
    }
    h->awaiting = NULL;
    free(r.rej);
    free(r.rows);
    return ok || r.stopped; /* stopped: not a failure to retry */
}

static bool readable_name(const char *name)
{
    return name[0] != '.' && !has_suffix(name, ".rejected");
}

/* Every file now in the inbox unchanged for settle seconds: at start, after
 * a failure, after lost inotify events. */
static void scan(housing *h, int settle_s)
{
    DIR *d = opendir(h->inbox);
    if (!d)
        return;
    struct dirent *e;
    time_t now = time(NULL);
    bool failed = false;
    int64_t next = 0; /* when the youngest file skipped will have settled */
    while ((e = readdir(d)) && !cb_program_stopping()) {
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", h->inbox, e->d_name);
        if (!readable_name(e->d_name) || lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (now - st.st_mtime < settle_s) { /* perhaps still being written: look again once it would have settled */
            int64_t at = cb_now_ms() + (int64_t)(st.st_mtime + settle_s - now + 1) * 1000;
            next = !next || at < next ? at : next;
            continue;
        }
        failed |= !take_file(h, e->d_name);
    }
    closedir(d);
    if (failed)
        next = !next || cb_now_ms() + RETRY_MS < next ? cb_now_ms() + RETRY_MS : next;
    h->retry_at_ms = next;
}

static void on_inotify(housing *h)
{
    char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n = read(h->inotify, buf, sizeof buf);
    for (char *p = buf; n > 0 && p < buf + n;) {
        struct inotify_event *ev = (struct inotify_event *)p;
        if (ev->mask & IN_Q_OVERFLOW)
            scan(h, h->settle_s); /* events were lost: look at what is there */
        else if (ev->len && readable_name(ev->name) && !(ev->mask & IN_ISDIR) && !take_file(h, ev->name))
            h->retry_at_ms = cb_now_ms() + RETRY_MS;
        p += sizeof *ev + ev->len;
    }
}

/* ---- deliveries */

static cb_adapter_take delivered(void *arg, uint64_t seq, const char *event_id, const json_t *event)
{
    housing *h = arg;
    char *text = json_dumps(event, JSON_COMPACT);
    char name[40];
    snprintf(name, sizeof name, "%020" PRIu64 ".json", seq);
    size_t len = text ? strlen(text) : 0;
    if (text)
        text[len] = '\n'; /* one line, as NDJSON: json_dumps left room for its NUL */
    bool ok = text && cb_write_atomic(h->outbox, name, text, len + 1);
    free(text);
    if (!ok) {
        cb_log("delivery %" PRIu64 " (%s) could not be written to %s: %s; it will come again", seq, event_id, h->outbox,
               strerror(errno));
        return CB_ADAPTER_NOT_TAKEN;
    }
    h->delivered++;
    return CB_ADAPTER_TAKEN;
}

static void answered(void *arg, const cb_adapter_answer *ans)
{
    housing *h = arg;
    sent_row *row = h->awaiting ? row_of(h->awaiting, ans->seq) : NULL;
    if (row && !row->answered) {
        row->answered = true;
        h->awaiting->n_answered++;
        if (!ans->accepted) {
            char text[360];
            snprintf(text, sizeof text, "refused by carebridge: %s: %s", ans->code, ans->reason);
            reject(h->awaiting, row->line, text);
        }
    }
    if (!ans->accepted)
        cb_log("the broker refused outbox event %" PRIu64 " (%s): %s: %s%s", ans->seq, ans->event_id, ans->code,
               ans->reason, row ? "" : " (its file is done: only this log says so)");
}

/* ---- the program */

static int parse(int argc, char **argv, housing *h, const char **inbox, const char **outbox)
{
    enum { O_INBOX = 256, O_OUTBOX, O_SETTLE, O_WAIT };
    static const struct option opts[] = {
        CB_PROGRAM_LONG_OPTIONS,
        {"inbox", required_argument, NULL, O_INBOX},
        {"outbox", required_argument, NULL, O_OUTBOX},
        {"settle", required_argument, NULL, O_SETTLE},
        {"ack-wait", required_argument, NULL, O_WAIT},
        {0, 0, 0, 0},
    };
    int c, taken;
    long v;
    while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        if ((taken = cb_program_option(c, optarg, &h->prog, "carebridge-housing", usage)) >= 0) {
            if (!taken)
                return 0;
            continue;
        }
        switch (c) {
        case O_INBOX: *inbox = optarg; break;
        case O_OUTBOX: *outbox = optarg; break;
        case O_SETTLE:
            if (!cb_program_number("carebridge-housing", "--settle", optarg, 0, 3600, &v))
                return 2;
            h->settle_s = (int)v;
            break;
        case O_WAIT:
            if (!cb_program_number("carebridge-housing", "--ack-wait", optarg, 0, 60000, &v))
                return 2;
            h->ack_wait_ms = (int)v;
            break;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "carebridge-housing: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return -1;
}

int main(int argc, char **argv)
{
    housing h = {
        .prog = {CB_DEFAULT_BROKER, "housing", "./var/housing"}, .settle_s = 2, .ack_wait_ms = 2000, .inotify = -1};
    const char *inbox = NULL, *outbox = NULL;
    cb_log_program("carebridge-housing");
    int rc = parse(argc, argv, &h, &inbox, &outbox);
    if (rc >= 0)
        return rc;
    char box[DIR_MAX];
    int a = inbox ? snprintf(h.inbox, sizeof h.inbox, "%s", inbox)
                  : snprintf(h.inbox, sizeof h.inbox, "%s/inbox", h.prog.data);
    int b = outbox ? snprintf(h.outbox, sizeof h.outbox, "%s", outbox)
                   : snprintf(h.outbox, sizeof h.outbox, "%s/outbox", h.prog.data);
    int c = snprintf(h.done, sizeof h.done, "%s/done", h.inbox);
    int d = snprintf(box, sizeof box, "%s/outbox.lmdb", h.prog.data);
    if (a >= DIR_MAX || b >= DIR_MAX || c >= DIR_MAX || d >= DIR_MAX) {
        fprintf(stderr, "carebridge-housing: a directory path is longer than %d bytes\n", DIR_MAX - 1);
        return 2;
    }
    const char *dirs[] = {h.prog.data, h.inbox, h.done, h.outbox};
    for (size_t i = 0; i < 4; i++)
        if (!cb_mkdirs(dirs[i])) {
            fprintf(stderr, "carebridge-housing: cannot create %s: %s\n", dirs[i], strerror(errno));
            return 2;
        }
    if (sodium_init() < 0)
        return 2;
    cb_program_signals();
    cb_adapter_opts aopts = {.broker = h.prog.broker,
                             .key_file = cb_program_key(&h.prog),
                             .broker_key = cb_program_broker_key(&h.prog),
                             .agency = h.prog.agency,
                             .outbox_dir = box,
                             .receive = true,
                             .name = "carebridge-housing " CB_VERSION};
    cb_adapter_handlers handlers = {.answered = answered, .delivered = delivered};
    cb_adapter_error err = {0};
    if (!(h.adapter = cb_adapter_open(&aopts, &handlers, &h, &err))) {
        fprintf(stderr, "carebridge-housing: %s\n", err.text);
        return 2;
    }
    h.inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (h.inotify < 0 || inotify_add_watch(h.inotify, h.inbox, IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
        fprintf(stderr, "carebridge-housing: cannot watch %s: %s\n", h.inbox, strerror(errno));
        cb_adapter_close(&h.adapter);
        return 2;
    }
    cb_log("watching %s as %s; deliveries to %s; broker %s; outbox %s; %" PRIu64 " waiting for the broker", h.inbox,
           h.prog.agency, h.outbox, h.prog.broker, box, cb_adapter_waiting(h.adapter));
    scan(&h, h.settle_s);
    while (!cb_program_stopping()) {
        struct pollfd fds[2] = {{.fd = cb_adapter_fd(h.adapter), .events = POLLIN},
                                {.fd = h.inotify, .events = POLLIN}};
        int timeout = cb_adapter_due_ms(h.adapter);
        if (h.retry_at_ms) {
            int64_t left = h.retry_at_ms - cb_now_ms();
            timeout = left <= 0 ? 0 : left < timeout ? (int)left : timeout;
        }
        if (poll(fds, 2, timeout) < 0 && errno != EINTR)
            break;
        if (fds[1].revents & POLLIN)
            on_inotify(&h);
        if (h.retry_at_ms && cb_now_ms() >= h.retry_at_ms)
            scan(&h, h.settle_s);
        cb_adapter_code code = cb_adapter_step(h.adapter, &err);
        if (code == CB_ADAPTER_BROKER_REFUSED || code == CB_ADAPTER_CONNECTION_FAILED) {
            cb_log("stopping: %s", err.text);
            cb_program_refused();
            break;
        }
        if (code != CB_ADAPTER_OK)
            cb_log("%s", err.text);
    }
    cb_log("stopped: %lu files, %lu events kept, %lu rows rejected, %lu delivered", h.files, h.events, h.rejected,
           h.delivered);
    close(h.inotify);
    cb_adapter_close(&h.adapter);
    return cb_program_exit_status();
}
