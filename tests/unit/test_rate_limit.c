/* Rate limiter: GCRA arithmetic exact at chosen instants (burst, refill,
 * Retry-After), keys independent, the table's eviction rule, and four
 * threads on one key letting through exactly what one thread would. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "route/route.h"
#include "test.h"

#define MS 1000000ull

static struct conf_rate_limit conf(uint64_t interval_ns, uint32_t burst, uint32_t max_keys)
{
    return (struct conf_rate_limit){.interval_ns = interval_ns, .burst = burst,
                                    .max_keys = max_keys, .status = 429};
}

static void test_gcra(void)
{
    struct conf_rate_limit c = conf(100 * MS, 2, 1000);   /* 10/s, burst 2 */
    struct rate_limiter *rl = rate_limiter_new(&c);
    uint64_t t = 5000 * MS;

    CHECK(rl != NULL);
    if (!rl)
        return;
    /* 1 + burst at once, then the next must wait one interval. */
    CHECK_EQ_INT(rate_limiter_take(rl, 42, t), 0);
    CHECK_EQ_INT(rate_limiter_take(rl, 42, t), 0);
    CHECK_EQ_INT(rate_limiter_take(rl, 42, t), 0);
    CHECK_EQ_INT(rate_limiter_take(rl, 42, t), 100 * MS);
    CHECK_EQ_INT(rate_limiter_take(rl, 42, t + 40 * MS), 60 * MS);
    /* A refused request costs nothing: at +100 ms exactly one fits. */
    CHECK_EQ_INT(rate_limiter_take(rl, 42, t + 100 * MS), 0);
    CHECK_EQ_INT(rate_limiter_take(rl, 42, t + 100 * MS), 100 * MS);
    /* Another key has its own bucket. */
    CHECK_EQ_INT(rate_limiter_take(rl, 43, t + 100 * MS), 0);
    /* After a long pause the whole burst is back, no more. */
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(rate_limiter_take(rl, 42, t + 10000 * MS), 0);
    CHECK(rate_limiter_take(rl, 42, t + 10000 * MS) > 0);
    /* Steady at the rate: every request passes. */
    for (int i = 1; i <= 50; i++)
        CHECK_EQ_INT(rate_limiter_take(rl, 44, t + (uint64_t)i * 100 * MS), 0);
    CHECK_EQ_INT(rate_limiter_limited(rl), 4);
    CHECK_EQ_INT(rate_limiter_evicted(rl), 0);
    rate_limiter_free(rl);
}

/* max_keys 3: one bucket of three slots, every key in it. */
/* What peers let through (rate_limiter_charge) empties the bucket as local
 * requests would, and at most a full bucket plus one interval ahead. */
static void test_charge(void)
{
    struct conf_rate_limit c = conf(100 * MS, 2, 1000);   /* 10/s, burst 2 */
    struct rate_limiter *rl = rate_limiter_new(&c);
    uint64_t t = 5000 * MS;

    CHECK(rl != NULL);
    if (!rl)
        return;
    /* Two went through elsewhere: one of the three here is left. */
    rate_limiter_charge(rl, 7, 2, t);
    CHECK_EQ_INT(rate_limiter_take(rl, 7, t), 0);
    CHECK_EQ_INT(rate_limiter_take(rl, 7, t), 100 * MS);
    CHECK_EQ_INT(rate_limiter_take(rl, 7, t + 100 * MS), 0);
    /* A huge count locks the key out for a second past a full bucket, not
     * for count intervals. */
    rate_limiter_charge(rl, 8, 60000, t);
    CHECK_EQ_INT(rate_limiter_take(rl, 8, t), 1000 * MS);
    CHECK_EQ_INT(rate_limiter_take(rl, 8, t + 1000 * MS), 0);
    /* Below 1/s the cap is one interval: 1/min, one charged, one here
     * waits a minute. */
    {
        struct conf_rate_limit slow = conf(60000 * MS, 0, 10);
        struct rate_limiter *sl = rate_limiter_new(&slow);
        CHECK(sl != NULL);
        if (sl) {
            rate_limiter_charge(sl, 9, 5, t);
            CHECK_EQ_INT(rate_limiter_take(sl, 9, t), 60000 * MS);
            rate_limiter_free(sl);
        }
    }
    /* Charges do not count as refusals. */
    CHECK_EQ_INT(rate_limiter_limited(rl), 2);
    CHECK(rate_limiter_conf(rl) == &c);
    rate_limiter_free(rl);
}

static void test_eviction(void)
{
    struct conf_rate_limit c = conf(1000 * MS, 0, 3);     /* 1/s, no burst */
    struct rate_limiter *rl = rate_limiter_new(&c);
    uint64_t t = 1000 * MS;

    if (!rl)
        return;
    for (uint64_t k = 1; k <= 3; k++)
        CHECK_EQ_INT(rate_limiter_take(rl, k << 8, t + k * MS), 0);
    CHECK(rate_limiter_take(rl, 1 << 8, t + 10 * MS) > 0);
    /* A fourth key while all three are limited: the one free soonest (key
     * 1) is forgotten, counted, and may pass again. */
    CHECK_EQ_INT(rate_limiter_take(rl, 4 << 8, t + 10 * MS), 0);
    CHECK_EQ_INT(rate_limiter_evicted(rl), 1);
    CHECK_EQ_INT(rate_limiter_take(rl, 1 << 8, t + 11 * MS), 0);
    CHECK_EQ_INT(rate_limiter_evicted(rl), 2);
    /* Once their time has passed, slots are free: no eviction counted. */
    CHECK_EQ_INT(rate_limiter_take(rl, 5 << 8, t + 5000 * MS), 0);
    CHECK_EQ_INT(rate_limiter_evicted(rl), 2);
    rate_limiter_free(rl);
}

struct hammer {
    struct rate_limiter *rl;
    atomic_int allowed;
};

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;

    for (int i = 0; i < 20000; i++)
        if (rate_limiter_take(h->rl, 7, 1000 * MS + (uint64_t)(i / 100) * MS) == 0)
            atomic_fetch_add(&h->allowed, 1);
    return NULL;
}

/* Four threads, one key, time moving 1 ms per 100 calls per thread up to
 * +199 ms: exactly 1 + burst + 199 ms / 10 ms pass, as with one thread. */
static void test_threads(void)
{
    struct conf_rate_limit c = conf(10 * MS, 50, 1000);   /* 100/s, burst 50 */
    struct hammer h = {.rl = rate_limiter_new(&c)};
    pthread_t th[4];

    if (!h.rl)
        return;
    atomic_init(&h.allowed, 0);
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer_run, &h);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(atomic_load(&h.allowed), 1 + 50 + 19);
    CHECK_EQ_INT(rate_limiter_limited(h.rl), 80000 - (1 + 50 + 19));
    rate_limiter_free(h.rl);
}

/* A slow rate: 1 per hour, burst 1. Two at once, and the third is told to
 * come back in an hour. */
static void test_slow_rate(void)
{
    struct conf_rate_limit c = conf(3600000 * MS, 1, 10);
    struct rate_limiter *rl = rate_limiter_new(&c);

    if (!rl)
        return;
    CHECK_EQ_INT(rate_limiter_take(rl, 9, 1), 0);
    CHECK_EQ_INT(rate_limiter_take(rl, 9, 1), 0);
    CHECK_EQ_INT(rate_limiter_take(rl, 9, 1), 3600000 * MS);
    rate_limiter_free(rl);
}

int main(void)
{
    test_charge();
    test_gcra();
    test_eviction();
    test_threads();
    test_slow_rate();
    TEST_END();
}
