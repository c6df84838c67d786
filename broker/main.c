/* carebridge-broker: configuration, signals, and the loop in broker.c. */
#include <getopt.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "config.h"
#include "log.h"

static volatile sig_atomic_t stop, reload;
static int failed;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reload = 1;
    else
        stop = 1;
}

/* SIGHUP: the keys and people of the configuration file again. A file that
 * does not load changes nothing. */
static void reload_keys(cb_broker *b, const char *config_path)
{
    char err_text[512];
    cb_config *next = cb_config_load(config_path, err_text, sizeof err_text);
    cb_error err = {0};
    if (!next)
        cb_log(CB_LOG_ERROR, "reload refused, nothing changed: %s", err_text);
    else if (!cb_broker_rekey(b, next, &err)) {
        /* An endpoint it could not bind again serves no one: stop, for the
         * supervisor to start the broker afresh. */
        cb_log(CB_LOG_ERROR, "reload: %s; stopping", err.reason);
        stop = 1;
        failed = 1;
    }
    cb_config_free(&next);
    cb_log_flush();
}

static const char usage[] =
    "Usage: carebridge-broker [--config FILE] [--data DIR] [--endpoint EP] [--feed EP] [--queries EP]\n"
    "                         [--metrics HOST:PORT] [--flag-tick SECONDS]\n"
    "\n"
    "Routes referrals, discharges and handovers between health, housing and social care\n"
    "agencies. Every event is committed and synced to the store before it is acknowledged,\n"
    "then delivered to each recipient until that recipient acknowledges it.\n"
    "\n"
    "  -c, --config FILE      YAML configuration (default: the embedded defaults, which are\n"
    "                         exactly config/carebridge.yaml)\n"
    "  -d, --data DIR         store directory (overrides store.path)\n"
    "  -e, --endpoint EP      ROUTER endpoint for agencies and the CLI (overrides\n"
    "                         broker.endpoint; tcp://127.0.0.1:* picks a free port)\n"
    "  -f, --feed EP          endpoint of the live feed, for SUB sockets (overrides broker.feed)\n"
    "  -q, --queries EP       ROUTER endpoint for status and journey requests only, answered\n"
    "                         on a thread of their own so they do not wait behind publishes\n"
    "                         (overrides broker.queries)\n"
    "  -m, --metrics HOST:PORT  serve GET /metrics (Prometheus text), /healthz and /readyz\n"
    "                         over plain HTTP here (overrides broker.metrics, default\n"
    "                         127.0.0.1:9570; port 0 picks a free one; off serves none)\n"
    "  -t, --flag-tick S      run the time-based flag rules (not acknowledged, not answered,\n"
    "                         discharge at risk) every S seconds, 1 to 86400 (overrides\n"
    "                         flags.tick_seconds; default 60)\n"
    "  -v, --verbose          log debug lines too\n"
    "  -h, --help             this text\n"
    "  -V, --version          the version\n"
    "\n"
    "Logs go to stderr, one line per event and per error; people appear only as keyed\n"
    "pseudonyms. A line 'ready endpoint=... feed=... queries=... metrics=...' says the broker\n"
    "is serving.\n"
    "SIGTERM or SIGINT stops it cleanly. SIGHUP reloads the keys and people from the\n"
    "configuration file (the rest waits for a restart); a revoked key's connections close.\n"
    "\n"
    "With broker.key_file set, every connection must prove a configured CURVE key\n"
    "(README, \"Trust\"). Without it the broker binds only 127.0.0.1, localhost,\n"
    "[::1], ipc:// and inproc:// endpoints, and refuses to start on any other.\n"
    "\n"
    "One broker per data directory: it holds DIR/broker.lock while it runs, and a\n"
    "second broker on the same directory refuses to start, naming the pid holding it.\n"
    "\n"
    "Exit status: 0 stopped by a signal; 1 could not start (store or endpoint);\n"
    "2 bad usage or configuration, or the data directory is in use by another broker;\n"
    "75 the store failed and could not be reopened.\n";

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},
        {"data", required_argument, 0, 'd'},
        {"endpoint", required_argument, 0, 'e'},
        {"feed", required_argument, 0, 'f'},
        {"queries", required_argument, 0, 'q'},
        {"flag-tick", required_argument, 0, 't'},
        {"metrics", required_argument, 0, 'm'},
        {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    const char *config_path = NULL, *data = NULL, *endpoint = NULL, *feed = NULL, *queries = NULL, *tick = NULL,
               *metrics = NULL;
    cb_log_level level = CB_LOG_INFO;
    int c;
    while ((c = getopt_long(argc, argv, "c:d:e:f:q:m:t:vhV", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'd': data = optarg; break;
        case 'e': endpoint = optarg; break;
        case 'f': feed = optarg; break;
        case 'q': queries = optarg; break;
        case 'm': metrics = optarg; break;
        case 't': tick = optarg; break;
        case 'v': level = CB_LOG_DEBUG; break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': puts("carebridge-broker " CB_VERSION); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "carebridge-broker: unexpected argument '%s'\n\n%s", argv[optind], usage);
        return 2;
    }
    if (sodium_init() < 0) {
        fputs("carebridge-broker: libsodium failed to initialise\n", stderr);
        return 1;
    }
    char err_text[512];
    cb_config *cfg = cb_config_load(config_path, err_text, sizeof err_text);
    if (!cfg) {
        fprintf(stderr, "carebridge-broker: %s\n", err_text);
        return 2;
    }
    /* The flags replace configured strings; the config owns and frees them. */
    const char *const overrides[] = {data, endpoint, feed, queries, metrics};
    char **fields[] = {&cfg->data_dir, &cfg->endpoint, &cfg->feed, &cfg->queries, &cfg->metrics};
    for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++) {
        if (!overrides[i])
            continue;
        char *copy = strdup(overrides[i]);
        if (!copy)
            return 1;
        free(*fields[i]);
        *fields[i] = copy;
    }

    if (tick) {
        char *end;
        long seconds = strtol(tick, &end, 10);
        if (end == tick || *end || seconds < 1 || seconds > 86400) {
            fprintf(stderr, "carebridge-broker: --flag-tick must be a whole number of seconds, 1 to 86400 (got '%s')\n",
                    tick);
            cb_config_free(&cfg);
            return 2;
        }
        cfg->flags.tick_seconds = (uint32_t)seconds;
    }

    cb_log_init(level);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    cb_error err = {0};
    int start_status;
    cb_broker *b = cb_broker_new(cfg, &start_status, &err);
    if (!b) {
        cb_log(CB_LOG_ERROR, "cannot start: %s", err.reason);
        cb_log_flush();
        cb_config_free(&cfg);
        return start_status;
    }
    cb_log(CB_LOG_INFO, "ready endpoint=%s feed=%s queries=%s metrics=%s data=%s agencies=%u", cb_broker_endpoint(b),
           cb_broker_feed(b), cb_broker_queries(b), cb_broker_metrics(b), cfg->data_dir, cfg->n_agencies);
    cb_log_flush();
    int status;
    while ((status = cb_broker_run(b, &stop, &reload)) == CB_BROKER_RELOAD) {
        reload = 0;
        reload_keys(b, config_path);
    }
    if (failed)
        status = 1;
    cb_broker_destroy(&b);
    cb_config_free(&cfg);
    return status;
}
