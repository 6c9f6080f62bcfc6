/* Timers: a binary min-heap of intrusive timer nodes, one heap per event
 * loop. Arming and cancelling are O(log n) with no allocation once the heap
 * has grown; thousands of connections each with an idle timeout are cheap.
 *
 * Idle timeouts should not be re-armed on every byte: keep a "last active"
 * stamp and let the callback re-arm itself when activity happened since
 * (see proxy/tcp.c). */
#ifndef SLUICE_CORE_TIMER_H
#define SLUICE_CORE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

struct timer;
typedef void (*timer_cb)(struct timer *t);

/* Embedded in the object it times; owner: that object. */
struct timer {
    uint64_t when;       /* deadline, monotonic ms */
    uint32_t slot;       /* heap index + 1; 0 = not armed */
    timer_cb cb;
};

/* Owner: one event loop. */
struct timer_heap {
    struct timer **a;
    uint32_t n;
    uint32_t cap;
};

void timer_heap_init(struct timer_heap *h);
void timer_heap_destroy(struct timer_heap *h);

static inline void timer_init(struct timer *t, timer_cb cb)
{
    t->when = 0;
    t->slot = 0;
    t->cb = cb;
}

static inline bool timer_armed(const struct timer *t)
{
    return t->slot != 0;
}

/* Arm (or move) t to fire at absolute time when_ms. */
void timer_arm(struct timer_heap *h, struct timer *t, uint64_t when_ms);
void timer_cancel(struct timer_heap *h, struct timer *t);

/* Deadline of the earliest timer, or UINT64_MAX when none is armed. */
uint64_t timer_next(const struct timer_heap *h);

/* Fire every timer due at or before now_ms, earliest first. A callback may
 * arm or cancel any timer, itself included. Returns how many fired. */
unsigned timer_run(struct timer_heap *h, uint64_t now_ms);

#endif
