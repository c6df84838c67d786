/* The broker's two clocks: monotonic for timeouts and heartbeats, wall time
 * for what is recorded (when an entry was queued) and for what counts from a
 * recorded time (a deadline from an event's occurredAt). Code that judges
 * time takes both readings from its caller (a batch's now_ms and wall_ms,
 * read together by the store thread), so tests set them; nothing below the
 * thread that took them reads a clock. */
#ifndef CB_CLOCK_H
#define CB_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t cb_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t cb_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline uint64_t cb_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
