/* What the adapter programs share beside the library: their common
 * options, a log line, a clean stop on SIGINT or SIGTERM, directories and
 * files written so that a crash leaves either the old file or the new. */
#ifndef CB_PROGRAM_H
#define CB_PROGRAM_H

#include <stdbool.h>
#include <stddef.h>

#define CB_DEFAULT_BROKER "tcp://127.0.0.1:5570"

/* --broker, --as and --data, as every adapter takes them. */
typedef struct {
    const char *broker;
    const char *agency;
    const char *data;
} cb_program_opts;

/* A log line on stderr: time, program, text. Never an NHS or CHI number or
 * a name: callers log ids, codes and positions only. */
void cb_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cb_log_program(const char *name);

/* SIGINT and SIGTERM ask the loop to stop; SIGPIPE is ignored (a closed
 * connection is an error on the write, not the end of the process). */
void cb_program_signals(void);
bool cb_program_stopping(void);

/* mkdir -p, mode 0700 for what it creates. */
bool cb_mkdirs(const char *path);
/* dir/name holds bytes, or what it held before: written to a temporary
 * file, synced, renamed over, and the directory synced. */
bool cb_write_atomic(const char *dir, const char *name, const void *bytes, size_t len);
/* Sync a directory (a rename in it, made durable). */
bool cb_sync_dir(const char *dir);

#endif
