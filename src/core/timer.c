#include "core/timer.h"

#include <stdio.h>
#include <stdlib.h>

void timer_heap_init(struct timer_heap *h)
{
    h->a = NULL;
    h->n = h->cap = 0;
}

void timer_heap_destroy(struct timer_heap *h)
{
    for (uint32_t i = 0; i < h->n; i++)
        h->a[i]->slot = 0;
    free(h->a);
    h->a = NULL;
    h->n = h->cap = 0;
}

static void place(struct timer_heap *h, uint32_t i, struct timer *t)
{
    h->a[i] = t;
    t->slot = i + 1;
}

static void sift_up(struct timer_heap *h, uint32_t i)
{
    struct timer *t = h->a[i];

    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (h->a[parent]->when <= t->when)
            break;
        place(h, i, h->a[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(struct timer_heap *h, uint32_t i)
{
    struct timer *t = h->a[i];

    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->a[c + 1]->when < h->a[c]->when)
            c++;
        if (t->when <= h->a[c]->when)
            break;
        place(h, i, h->a[c]);
        i = c;
    }
    place(h, i, t);
}

void timer_arm(struct timer_heap *h, struct timer *t, uint64_t when_ms)
{
    if (t->slot) {
        uint64_t old = t->when;
        t->when = when_ms;
        if (when_ms < old)
            sift_up(h, t->slot - 1);
        else if (when_ms > old)
            sift_down(h, t->slot - 1);
        return;
    }
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 256;
        struct timer **a = realloc(h->a, cap * sizeof(*a));
        if (!a) {
            /* A bounded allocation of pointers: failing here means the
             * machine is out of memory; carrying on would lose timeouts. */
            fprintf(stderr, "sluice: out of memory growing the timer heap\n");
            abort();
        }
        h->a = a;
        h->cap = cap;
    }
    t->when = when_ms;
    h->a[h->n] = t;
    t->slot = h->n + 1;
    h->n++;
    sift_up(h, h->n - 1);
}

void timer_cancel(struct timer_heap *h, struct timer *t)
{
    uint32_t i;
    struct timer *last;

    if (!t->slot)
        return;
    i = t->slot - 1;
    t->slot = 0;
    h->n--;
    if (i == h->n)
        return;
    last = h->a[h->n];
    place(h, i, last);
    if (i > 0 && h->a[(i - 1) / 2]->when > last->when)
        sift_up(h, i);
    else
        sift_down(h, i);
}

uint64_t timer_next(const struct timer_heap *h)
{
    return h->n ? h->a[0]->when : UINT64_MAX;
}

unsigned timer_run(struct timer_heap *h, uint64_t now_ms)
{
    unsigned fired = 0;

    while (h->n && h->a[0]->when <= now_ms) {
        struct timer *t = h->a[0];
        timer_cancel(h, t);
        fired++;
        t->cb(t);
    }
    return fired;
}
