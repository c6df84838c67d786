#include "dirlock.h"

#include <dirent.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct cb_dirlock {
    int fd;
};

/* The pid the holder wrote into the file, 0 if it has not yet or is unreadable. */
static pid_t holder_of(int fd)
{
    char text[24] = "";
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    long pid = strtol(text, NULL, 10);
    return pid > 0 ? (pid_t)pid : 0;
}

/* Lock fd; on success record our pid in the file, so a refused broker can name us. */
static cb_dirlock_result lock_fd(int fd, cb_dirlock **lock_p, pid_t *holder)
{
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        cb_dirlock_result r = e == EWOULDBLOCK ? CB_DIRLOCK_IN_USE : CB_DIRLOCK_FAILED;
        *holder = r == CB_DIRLOCK_IN_USE ? holder_of(fd) : 0;
        close(fd);
        errno = e;
        return r;
    }
    char text[24];
    int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    cb_dirlock *lock = malloc(sizeof *lock);
    if (!lock || ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
        int e = lock ? errno : ENOMEM;
        free(lock);
        close(fd);
        errno = e;
        return CB_DIRLOCK_FAILED;
    }
    lock->fd = fd;
    *lock_p = lock;
    return CB_DIRLOCK_TAKEN;
}

static int open_lock_file(const char *dir, const char *name, int flags)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return open(path, flags | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
}

cb_dirlock_result cb_dirlock_try(const char *dir, const char *name, cb_dirlock **lock_p, pid_t *holder)
{
    *lock_p = NULL;
    *holder = 0;
    int fd = open_lock_file(dir, name, 0);
    if (fd < 0)
        return errno == ENOENT ? CB_DIRLOCK_ABSENT : CB_DIRLOCK_FAILED;
    return lock_fd(fd, lock_p, holder);
}

cb_dirlock_result cb_dirlock_take(const char *dir, const char *name, cb_dirlock **lock_p, pid_t *holder)
{
    *lock_p = NULL;
    *holder = 0;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return CB_DIRLOCK_FAILED;
    int fd = open_lock_file(dir, name, O_CREAT);
    if (fd < 0)
        return CB_DIRLOCK_FAILED;
    return lock_fd(fd, lock_p, holder);
}

void cb_dirlock_release(cb_dirlock **lock_p)
{
    cb_dirlock *lock = *lock_p;
    if (lock) {
        close(lock->fd); /* closing the only descriptor drops the flock */
        free(lock);
    }
    *lock_p = NULL;
}

bool cb_dir_private(const char *dir, const char *what, char *why, size_t cap)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return true; /* created 0700 when the broker starts */
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(why, cap, "%s %s is open to others (mode %03o): chmod 700 it", what, dir,
                 (unsigned)(st.st_mode & 0777));
        return false;
    }
    DIR *d = opendir(dir);
    if (!d)
        return true; /* the lock says why, next */
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(d))) {
        char path[4096];
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) && !S_ISLNK(st.st_mode)) {
            snprintf(why, cap, "%s in %s is open to others (mode %03o): chmod 600 it", path, what,
                     (unsigned)(st.st_mode & 0777));
            ok = false;
        }
    }
    closedir(d);
    return ok;
}
