/* Timer heap: ordering, re-arming, cancelling, callbacks that re-arm. */
#include <stdlib.h>

#include "core/timer.h"
#include "test.h"

static int fired_order[64];
static int nfired;

struct tt {
    struct timer t;
    int id;
};

static void record(struct timer *t)
{
    fired_order[nfired++] = ((struct tt *)t)->id;
}

static struct timer_heap *rearm_heap;
static int rearm_left;

static void rearm(struct timer *t)
{
    nfired++;
    if (--rearm_left > 0)
        timer_arm(rearm_heap, t, t->when + 10);
}

int main(void)
{
    struct timer_heap h;
    struct tt ts[10];

    timer_heap_init(&h);
    CHECK_EQ_INT(timer_next(&h), UINT64_MAX);

    /* Arm out of order; they fire in deadline order. */
    int when[10] = {50, 10, 40, 20, 30, 90, 70, 60, 80, 100};
    for (int i = 0; i < 10; i++) {
        ts[i].id = when[i];
        timer_init(&ts[i].t, record);
        timer_arm(&h, &ts[i].t, (uint64_t)when[i]);
    }
    CHECK_EQ_INT(timer_next(&h), 10);
    /* Cancel 40 and move 90 to 5. */
    timer_cancel(&h, &ts[2].t);
    CHECK(!timer_armed(&ts[2].t));
    timer_arm(&h, &ts[5].t, 5);
    ts[5].id = 5;
    CHECK_EQ_INT(timer_run(&h, 35), 4);   /* 5, 10, 20, 30 */
    CHECK_EQ_INT(fired_order[0], 5);
    CHECK_EQ_INT(fired_order[1], 10);
    CHECK_EQ_INT(fired_order[2], 20);
    CHECK_EQ_INT(fired_order[3], 30);
    CHECK_EQ_INT(timer_run(&h, 1000), 5);  /* 50 60 70 80 100 */
    CHECK_EQ_INT(fired_order[4], 50);
    CHECK_EQ_INT(fired_order[8], 100);
    CHECK_EQ_INT(h.n, 0);
    /* Cancelling an unarmed timer is harmless. */
    timer_cancel(&h, &ts[0].t);

    /* A callback may re-arm its own timer. */
    struct timer r;
    nfired = 0;
    rearm_heap = &h;
    rearm_left = 3;
    timer_init(&r, rearm);
    timer_arm(&h, &r, 100);
    timer_run(&h, 105);
    CHECK_EQ_INT(nfired, 1);
    timer_run(&h, 1000);
    CHECK_EQ_INT(nfired, 3);
    CHECK(!timer_armed(&r));

    /* Many timers with random deadlines and random cancels: the heap always
     * yields them in order. */
    enum { N = 20000 };
    struct timer *many = calloc(N, sizeof(*many));
    uint64_t seed = 12345, last = 0;
    int bad = 0, left = 0;
    for (int i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ULL + 1;
        timer_init(&many[i], record);
        timer_arm(&h, &many[i], (seed >> 33) % 100000);
    }
    for (int i = 0; i < N; i += 3)
        timer_cancel(&h, &many[i]);
    for (int i = 0; i < N; i++)
        left += timer_armed(&many[i]);
    CHECK_EQ_INT(h.n, left);
    while (h.n) {
        struct timer *t = h.a[0];
        if (t->when < last)
            bad++;
        last = t->when;
        timer_cancel(&h, t);
    }
    CHECK_EQ_INT(bad, 0);
    free(many);
    timer_heap_destroy(&h);
    TEST_END();
}
