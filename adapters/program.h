/* What the adapter programs share beside the library: their common
 * options, a log line, a clean stop on SIGINT or SIGTERM, directories and
 * files written so that a crash leaves either the old file or the new. */
#ifndef CB_PROGRAM_H
#define CB_PROGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <getopt.h>

#define CB_DEFAULT_BROKER "tcp://127.0.0.1:5570"

/* --broker, --as, --data, --key and --broker-key, as every adapter takes them. */
typedef struct {
    const char *broker;
    const char *agency;
    const char *data;
    const char *key_file;   /* --key, else $CAREBRIDGE_KEY (cb_program_key) */
    const char *broker_key; /* --broker-key, else $CAREBRIDGE_BROKER_KEY */
} cb_program_opts;

enum { CB_OPT_KEY = 0x300, CB_OPT_BROKER_KEY };

/* The long options every adapter takes, first in its table. */
#define CB_PROGRAM_LONG_OPTIONS                                                                                        \
    {"broker", required_argument, NULL, 'b'}, {"as", required_argument, NULL, 'a'},                                    \
        {"data", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'},                                      \
        {"key", required_argument, NULL, CB_OPT_KEY}, {"broker-key", required_argument, NULL, CB_OPT_BROKER_KEY},      \
    {                                                                                                                  \
        "version", no_argument, NULL, 'V'                                                                              \
    }

/* The usage lines for --key and --broker-key, the same in every adapter. */
#define CB_PROGRAM_KEY_USAGE                                                                                           \
    "  --key FILE             this adapter's CURVE secret key file (default $CAREBRIDGE_KEY),\n"                       \
    "                         for a broker with broker.key_file set; with --broker-key\n"                              \
    "  --broker-key KEY       the broker's public key: 40 Z85 characters, or a file holding\n"                         \
    "                         them (default $CAREBRIDGE_BROKER_KEY)\n"

/* The keys to connect with: the options, else the environment. */
const char *cb_program_key(const cb_program_opts *p);
const char *cb_program_broker_key(const cb_program_opts *p);

/* getopt_long's c if it is one of those: 1 taken; 0 for --help or
 * --version, printed (exit 0); -1 when it is not one of them. */
int cb_program_option(int c, const char *arg, cb_program_opts *p, const char *name, const char *usage);

/* text as a whole number from lo to hi; false, saying so on stderr for option, otherwise. */
bool cb_program_number(const char *name, const char *option, const char *text, long lo, long hi, long *out);

/* A comma-separated list of agency ids, each non-empty, at most CB_ID_LIST_MAX. */
#define CB_ID_LIST_MAX 16
typedef struct {
    char *items[CB_ID_LIST_MAX];
    size_t n;
} cb_id_list;
bool cb_id_list_set(cb_id_list *l, const char *text);
void cb_id_list_free(cb_id_list *l);

/* A log line on stderr: time, program, text. Never an NHS or CHI number or
 * a name: callers log ids, codes and positions only. */
void cb_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cb_log_program(const char *name);

/* SIGINT and SIGTERM ask the loop to stop; SIGPIPE is ignored (a closed
 * connection is an error on the write, not the end of the process). */
void cb_program_signals(void);
bool cb_program_stopping(void);
/* The connection to the broker cannot go on (a refused hello or key): the
 * program stops, and exits 2. */
void cb_program_refused(void);
int cb_program_exit_status(void);

/* HOST:PORT (split at the last colon) resolved for a TCP socket of family
 * (AF_UNSPEC, AF_INET), passive for a listener. NULL otherwise, with why
 * naming option: "--listen X is not HOST:PORT", "--listen X: <resolver's
 * reason>". The caller freeaddrinfo()s it. */
struct addrinfo *cb_resolve(const char *option, const char *host_port, int family, bool passive, char *why, size_t cap);
/* Whether HOST:PORT resolves to a loopback address (127.0.0.0/8, ::1), where
 * a plain listener is allowed: -1 with why when it does not resolve. */
int cb_listen_loopback(const char *option, const char *host_port, char *why, size_t cap);
/* A blocking TCP connection to HOST:PORT, with TCP_NODELAY and reads timing
 * out after timeout_s (0: never); -1 when it cannot be made. */
int cb_dial(const char *host_port, int timeout_s);

/* The monotonic clock in milliseconds, for deadlines and back-offs. */
int64_t cb_now_ms(void);

/* mkdir -p, mode 0700 for what it creates. */
bool cb_mkdirs(const char *path);
/* dir/name holds bytes, or what it held before: written to a temporary
 * file, synced, renamed over, and the directory synced. */
bool cb_write_atomic(const char *dir, const char *name, const void *bytes, size_t len);
/* Sync a directory (a rename in it, made durable). */
bool cb_sync_dir(const char *dir);

#endif
