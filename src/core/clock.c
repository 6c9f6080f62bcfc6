#include "core/clock.h"

#include <time.h>

__thread uint64_t clock_cached_ms;
__thread uint64_t clock_cached_us;

uint64_t clock_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t clock_update(void)
{
    clock_cached_us = clock_mono_us();
    clock_cached_ms = clock_cached_us / 1000u;
    return clock_cached_ms;
}

uint64_t clock_wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
