/* Starting the broker's worker threads (the store thread, the query thread). */
#ifndef CB_THREAD_H
#define CB_THREAD_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

/* Start fn(arg) with SIGINT and SIGTERM blocked in the new thread, so a stop
 * request always reaches the network thread and wakes its poll at once. */
static inline bool cb_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t stop_signals, before;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, &before);
    bool started = pthread_create(thread, NULL, fn, arg) == 0;
    pthread_sigmask(SIG_SETMASK, &before, NULL);
    return started;
}

#endif
