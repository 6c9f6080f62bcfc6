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

/* Every parent due no later than its children, and each slot right. */
static int heap_ok(const struct timer_heap *h)
{
    for (uint32_t i = 0; i < h->n; i++) {
        if (h->a[i]->slot != i + 1)
            return 0;
        if (i > 0 && h->a[(i - 1) / 2]->when > h->a[i]->when)
            return 0;
    }
    return 1;
}

/* Callbacks that change the heap under timer_run: cancel other due timers,
 * move some later, arm new ones due now. */
enum { EQ = 300 };
static struct tt eq[EQ];
static int eq_fired[EQ];
static struct timer_heap *mess_heap;

static void mess(struct timer *t)
{
    int id = ((struct tt *)t)->id;

    eq_fired[id]++;
    if (id % 3 == 0 && id + 1 < EQ)
        timer_cancel(mess_heap, &eq[id + 1].t);         /* due too: never fires */
    if (id % 3 == 1 && id + 1 < EQ)
        timer_arm(mess_heap, &eq[id + 1].t, 5000);      /* moved past now */
    if (id % 7 == 0 && id + 2 < EQ && !timer_armed(&eq[id + 2].t) && !eq_fired[id + 2])
        timer_arm(mess_heap, &eq[id + 2].t, 100);       /* re-armed, due: fires now */
}

static void test_callbacks_change_the_heap(void)
{
    struct timer_heap h;
    int moved = 0, cancelled = 0;

    timer_heap_init(&h);
    mess_heap = &h;
    /* Many timers with one deadline: each fires once, whatever the
     * callbacks do to the others. */
    for (int i = 0; i < EQ; i++) {
        eq[i].id = i;
        timer_init(&eq[i].t, mess);
        timer_arm(&h, &eq[i].t, 100);
    }
    CHECK(heap_ok(&h));
    timer_run(&h, 100);
    CHECK(heap_ok(&h));
    /* Each fired at most once; one that did not was cancelled by its
     * neighbour or moved (a neighbour may also move one that fired). */
    for (int i = 0; i < EQ; i++) {
        CHECK(eq_fired[i] <= 1);
        if (timer_armed(&eq[i].t)) {
            CHECK_EQ_INT(eq[i].t.when, 5000);
            CHECK_EQ_INT((i - 1) % 3, 1);
            moved++;
        } else if (!eq_fired[i]) {
            CHECK_EQ_INT((i - 1) % 3, 0);
            cancelled++;
        }
    }
    CHECK(cancelled > 0 && moved > 0);
    CHECK_EQ_INT(timer_next(&h), moved ? 5000 : UINT64_MAX);
    CHECK_EQ_INT(timer_run(&h, 4999), 0);
    CHECK_EQ_INT(timer_run(&h, 5000), (unsigned)moved);
    CHECK_EQ_INT(h.n, 0);

    /* A destroyed heap leaves its timers unarmed: cancelling them later
     * (their owner closing) touches nothing. */
    timer_arm(&h, &eq[0].t, 1);
    timer_arm(&h, &eq[1].t, 2);
    timer_heap_destroy(&h);
    CHECK(!timer_armed(&eq[0].t) && !timer_armed(&eq[1].t));
    timer_cancel(&h, &eq[0].t);
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
    test_callbacks_change_the_heap();
    TEST_END();
}
