/* One process per store: an exclusive flock(2) on a lock file in its
 * directory (the broker's <dir>/broker.lock, an adapter outbox's
 * outbox.lock), held for the process's whole life and released by the
 * kernel when the process ends, however it ends. LMDB's own lock file lets two processes open one
 * environment as writers (it only serialises their transactions), so without
 * this two brokers would both assign the same seqs and deliver the same
 * queues twice.
 *
 * Taking the lock is split in two so that a start that is refused touches
 * nothing: cb_dirlock_try locks an existing lock file without creating
 * anything; cb_dirlock_take (after the endpoints are bound) creates the
 * directory and the file when they are missing. */
#ifndef CB_DIRLOCK_H
#define CB_DIRLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct cb_dirlock cb_dirlock;

typedef enum {
    CB_DIRLOCK_TAKEN,  /* *lock_p holds the lock */
    CB_DIRLOCK_ABSENT, /* no lock file yet (try only): nothing was created */
    CB_DIRLOCK_IN_USE, /* another process holds it; *holder is its pid, 0 if unknown */
    CB_DIRLOCK_FAILED, /* the directory or file could not be used; errno says why */
} cb_dirlock_result;

/* Lock dir's lock file name if it exists, creating nothing. */
cb_dirlock_result cb_dirlock_try(const char *dir, const char *name, cb_dirlock **lock_p, pid_t *holder);
/* Create dir (mode 0700) and its lock file name as needed, and lock it. */
cb_dirlock_result cb_dirlock_take(const char *dir, const char *name, cb_dirlock **lock_p, pid_t *holder);
/* Whether dir (if it exists) and every file in it are closed to group and
 * others, as the store makes them (0700, 0600): personal data must not be
 * readable by other users. False with why naming what it is ("the data
 * directory"), the path and its mode. */
bool cb_dir_private(const char *dir, const char *what, char *why, size_t cap);
/* Release the lock (the file stays: the next broker reuses it). */
void cb_dirlock_release(cb_dirlock **lock_p);

#endif
