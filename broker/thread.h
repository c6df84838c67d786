/* Starting the broker's worker threads (the store thread, the query thread),
 * naming them, and asking the kernel to run one promptly. */
#ifndef CB_THREAD_H
#define CB_THREAD_H

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Start fn(arg) with SIGINT, SIGTERM and SIGHUP blocked in the new thread,
 * so a stop or reload request always reaches the network thread and wakes
 * its poll at once. */
static inline bool cb_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t stop_signals, before;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, &before);
    bool started = pthread_create(thread, NULL, fn, arg) == 0;
    pthread_sigmask(SIG_SETMASK, &before, NULL);
    return started;
}

/* Name the calling thread (at most 15 characters), as top -H and
 * /proc/PID/task/TID/comm show it: cb-store, cb-query. */
static inline void cb_thread_name(const char *name)
{
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

#define CB_SHORT_SLICE_NS 100000

/* For a thread that mostly sleeps and has someone waiting when it wakes: ask
 * for a 0.1 ms time slice in place of the default (about 3 ms on 2 CPUs).
 * Linux 6.12 and later (EEVDF) run a woken thread with a shorter slice
 * ahead of busy ones, so it does not queue behind a commit for a slice or
 * two; older kernels ignore sched_runtime for SCHED_OTHER. The caller's
 * priority and share of the CPU are unchanged; threads it creates afterwards
 * inherit the slice. (sched_setattr sets the nice value too, so it is given
 * the thread's own.) No privilege is needed; a refusal leaves things as they
 * were, so it is not reported. */
static inline void cb_thread_prefer_short_slice(void)
{
    struct {
        uint32_t size, policy;
        uint64_t flags;
        int32_t nice;
        uint32_t priority;
        uint64_t runtime, deadline, period;
    } attr = {.size = sizeof attr,
              .policy = SCHED_OTHER,
              .nice = getpriority(PRIO_PROCESS, 0), /* on Linux, of the calling thread */
              .runtime = CB_SHORT_SLICE_NS};
    (void)syscall(SYS_sched_setattr, 0, &attr, 0);
}

#endif
