/* Time. Each thread caches the monotonic clock once per event-loop
 * iteration: timers and idle checks read the cache, not the kernel. */
#ifndef SLUICE_CORE_CLOCK_H
#define SLUICE_CORE_CLOCK_H

#include <stdint.h>

extern __thread uint64_t clock_cached_ms;
extern __thread uint64_t clock_cached_us;

/* Read the monotonic clock now and refresh this thread's cache. */
uint64_t clock_update(void);

/* The cached monotonic time in milliseconds (as of the last clock_update). */
static inline uint64_t clock_now_ms(void)
{
    return clock_cached_ms;
}

/* The same cache in microseconds: the time this event-loop iteration began.
 * Request timings (access log, metrics, ewma samples) use it: the events of
 * one iteration share a timestamp, and a request costs no clock reads. */
static inline uint64_t clock_now_us(void)
{
    return clock_cached_us;
}

/* Monotonic time in microseconds, read from the kernel (for durations). */
uint64_t clock_mono_us(void);

/* Wall-clock time in microseconds since the epoch (for log stamps). */
uint64_t clock_wall_us(void);

#endif
