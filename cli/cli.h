/* The carebridge command line: one file per command, sharing these helpers. */
#ifndef CB_CLI_H
#define CB_CLI_H

#include <stdbool.h>
#include "client.h"

#define CLI_DEFAULT_BROKER "tcp://127.0.0.1:5570"
#define CLI_DEFAULT_FEED   "tcp://127.0.0.1:5571"

/* Exit statuses every command shares. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

typedef struct {
    const char *broker;     /* --broker, else $CAREBRIDGE_BROKER, else the default */
    const char *feed;       /* --feed, else $CAREBRIDGE_FEED, else the default */
    const char *key_file;   /* --key, else $CAREBRIDGE_KEY: CURVE, with ... */
    const char *broker_key; /* --broker-key, else $CAREBRIDGE_BROKER_KEY */
} cli_globals;

/* --key FILE and --broker-key KEY|FILE, which every command takes. */
enum { CLI_OPT_KEY = 0x200, CLI_OPT_BROKER_KEY };
#define CLI_KEY_OPTIONS                                                                                                \
    {"key", required_argument, 0, CLI_OPT_KEY},                                                                        \
    {                                                                                                                  \
        "broker-key", required_argument, 0, CLI_OPT_BROKER_KEY                                                         \
    }

/* Local ids given as --local SYSTEM:VALUE (split at the last ':', so
 * housing:hms:T-20417 is system housing:hms), as a request carries them. */
#define CLI_LOCALS_MAX 6 /* the broker's limit for one person */
typedef struct {
    Carebridge__V1__LocalId ids[CLI_LOCALS_MAX];
    Carebridge__V1__LocalId *ptrs[CLI_LOCALS_MAX];
    char systems[CLI_LOCALS_MAX][256]; /* longer than the broker takes: it names the limit */
    size_t n;
} cli_locals;
/* False when arg has no ':', or CLI_LOCALS_MAX are given already. */
bool cli_local_add(cli_locals *l, const char *arg);

/* A client's options for the broker g names, with its keys. */
cb_client_opts cli_client_opts(const cli_globals *g);

int cli_send(const cli_globals *g, int argc, char **argv);
int cli_recv(const cli_globals *g, int argc, char **argv);
int cli_journey(const cli_globals *g, int argc, char **argv);
int cli_status(const cli_globals *g, int argc, char **argv);
int cli_replay(const cli_globals *g, int argc, char **argv);
int cli_tail(const cli_globals *g, int argc, char **argv);
int cli_flags(const cli_globals *g, int argc, char **argv);
int cli_report(const cli_globals *g, int argc, char **argv);
int cli_demo(const cli_globals *g, int argc, char **argv);
int cli_keys(const cli_globals *g, int argc, char **argv);
int cli_audit(const cli_globals *g, int argc, char **argv);

/* Parse a positive number of seconds; false on anything else. */
bool cli_seconds(const char *text, double *out);
/* Print a message as canonical JSON on one line; false if it cannot be. */
bool cli_print_json(const ProtobufCMessage *m);
/* A query-only connection, one request, its answer (or NULL after printing why). */
cb_frame *cli_request(const cli_globals *g, const char *command, cb_frame *request, int timeout_ms);
/* "no answer from the broker within S s; is the broker running at ENDPOINT?",
 * the one way every command says it waited for a broker in vain. */
void cli_no_broker(const char *command, const char *endpoint, double seconds);

#endif
