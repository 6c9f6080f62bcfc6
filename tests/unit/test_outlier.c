/* Outlier detection's ejection multiplier (health/outlier.c), driven tick
 * by tick with a made-up clock: each ejection raises it, the ejection lasts
 * ejection_time × it but never past max_ejection_time, and every `interval`
 * without an ejection lowers it by one, so a backend that behaved for long
 * enough is back to the base ejection time. */
#include "balance/balance.h"
#include "health/health.h"
#include "test.h"

static struct conf_backend cb[2] = {{.name = "b0", .weight = 1}, {.name = "b1", .weight = 1}};
static struct conf_pool cp;

static void setup(struct pool *p, struct runtime *rt, struct health_checker *hc)
{
    memset(&cp, 0, sizeof(cp));
    cp.name = "p";
    cp.balance = BALANCE_ROUND_ROBIN;
    cp.backends = cb;
    cp.nbackends = 2;
    cp.outlier = (struct conf_outlier){
        .consecutive_failures = 3, .ejection_time_ms = 1000, .max_ejection_time_ms = 2500,
        .interval_ms = 5000, .max_ejection_percent = 50,
    };
    CHECK_EQ_INT(pool_init(p, &cp), 0);
    memset(rt, 0, sizeof(*rt));
    rt->pools = p;
    rt->npools = 1;
    memset(hc, 0, sizeof(*hc));
    hc->rt = rt;
}

/* b fails enough at `now` to be ejected by the tick; returns how long for
 * (0 if it was not ejected). */
static uint64_t fail_and_tick(struct health_checker *hc, struct backend *b, uint64_t now)
{
    atomic_store(&b->consecutive_failures, 3);
    health_tick(hc, now);
    return atomic_load(&b->ejected) ? b->ejected_until_ms - now : 0;
}

static void test_grows_to_the_cap_and_decays_to_the_base(void)
{
    struct pool p;
    struct runtime rt;
    struct health_checker hc;
    struct backend *b;
    uint64_t t = 1000;

    setup(&p, &rt, &hc);
    b = &p.backends[0];
    CHECK_EQ_INT(fail_and_tick(&hc, b, t), 1000);         /* × 1 */
    CHECK_EQ_INT(b->times_ejected, 1);
    health_tick(&hc, t += 999);
    CHECK(atomic_load(&b->ejected));
    health_tick(&hc, t += 1);
    CHECK(!atomic_load(&b->ejected));                     /* its time is up */
    CHECK_EQ_INT(fail_and_tick(&hc, b, t += 100), 2000);  /* × 2: failed again at once */
    health_tick(&hc, t += 2000);
    CHECK_EQ_INT(fail_and_tick(&hc, b, t += 100), 2500);  /* × 3, cut at max_ejection_time */
    health_tick(&hc, t += 2500);
    CHECK_EQ_INT(fail_and_tick(&hc, b, t += 100), 2500);  /* stays at the cap ... */
    CHECK_EQ_INT(b->times_ejected, 3);                    /* ... and so does the multiplier */
    health_tick(&hc, t += 2500);
    CHECK(!atomic_load(&b->ejected));

    /* Healthy from now on: one step down per interval, none before. */
    for (uint64_t end = t + 4900; t < end;)
        health_tick(&hc, t += 100);
    CHECK_EQ_INT(b->times_ejected, 3);
    health_tick(&hc, t += 100);
    CHECK_EQ_INT(b->times_ejected, 2);
    for (uint64_t end = t + 10000; t < end;)
        health_tick(&hc, t += 100);
    CHECK_EQ_INT(b->times_ejected, 0);
    health_tick(&hc, t += 60000);
    CHECK_EQ_INT(b->times_ejected, 0);                    /* never below 0 */
    CHECK_EQ_INT(fail_and_tick(&hc, b, t += 100), 1000);  /* the base time again */
    CHECK_EQ_INT(b->times_ejected, 1);
    CHECK_EQ_INT(p.backends[1].times_ejected, 0);
    CHECK_EQ_INT(atomic_load(&b->ejections_total), 5);
    pool_destroy(&p);
}

/* An interval only counts when it passes without an ejection: a backend
 * ejected again before it ends keeps its multiplier and goes up by one. */
static void test_an_ejection_restarts_the_interval(void)
{
    struct pool p;
    struct runtime rt;
    struct health_checker hc;
    struct backend *b;
    uint64_t t = 1000;

    setup(&p, &rt, &hc);
    b = &p.backends[0];
    CHECK_EQ_INT(fail_and_tick(&hc, b, t), 1000);
    health_tick(&hc, t += 1000);
    CHECK_EQ_INT(fail_and_tick(&hc, b, t += 4000), 2000);  /* 4 s of the 5 s interval */
    health_tick(&hc, t += 2000);
    health_tick(&hc, t += 4000);                           /* 4 s into the next */
    CHECK_EQ_INT(b->times_ejected, 2);
    health_tick(&hc, t += 1000);
    CHECK_EQ_INT(b->times_ejected, 1);
    CHECK_EQ_INT(fail_and_tick(&hc, b, t += 100), 2000);   /* from 1, × 2 */
    pool_destroy(&p);
}

/* A multiplier that came across a reload (core/reload.c sets it, not the
 * interval's start) decays from the first tick that sees it, not at once. */
static void test_multiplier_from_a_reload(void)
{
    struct pool p;
    struct runtime rt;
    struct health_checker hc;
    struct backend *b;

    setup(&p, &rt, &hc);
    b = &p.backends[0];
    b->times_ejected = 2;
    health_tick(&hc, 100000);
    CHECK_EQ_INT(b->times_ejected, 2);
    health_tick(&hc, 104900);
    CHECK_EQ_INT(b->times_ejected, 2);
    health_tick(&hc, 105000);
    CHECK_EQ_INT(b->times_ejected, 1);
    /* From a config whose cap was higher: ejected for this one's cap, and
     * the multiplier comes down to where this config's cap is. */
    b->times_ejected = 4000000000u;
    CHECK_EQ_INT(fail_and_tick(&hc, b, 105100), 2500);
    CHECK_EQ_INT(b->times_ejected, 3);
    pool_destroy(&p);
}

static void test_ejection_time(void)
{
    struct conf_outlier o = {.ejection_time_ms = 30000, .max_ejection_time_ms = 300000};

    CHECK_EQ_INT(outlier_ejection_ms(&o, 0), 30000);
    CHECK_EQ_INT(outlier_ejection_ms(&o, 1), 30000);
    CHECK_EQ_INT(outlier_ejection_ms(&o, 10), 300000);
    CHECK_EQ_INT(outlier_ejection_ms(&o, 11), 300000);
    CHECK_EQ_INT(outlier_ejection_ms(&o, UINT32_MAX), 300000);   /* no overflow */
    o = (struct conf_outlier){.ejection_time_ms = 87600ull * 3600000, .max_ejection_time_ms =
                              87600ull * 3600000};               /* ten years, the longest */
    CHECK_EQ_INT(outlier_ejection_ms(&o, UINT32_MAX), 87600ull * 3600000);
}

int main(void)
{
    test_grows_to_the_cap_and_decays_to_the_base();
    test_an_ejection_restarts_the_interval();
    test_multiplier_from_a_reload();
    test_ejection_time();
    TEST_END();
}
