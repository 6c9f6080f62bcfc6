/* Peak-EWMA: the estimate jumps on a slow sample, blends lower ones in and
 * decays with time; a backend that turns slow loses its traffic at once and
 * gets it back after it recovers; in-flight requests count; an unsampled
 * backend is probed; idle equal backends share by weight; exclusion holds;
 * concurrent updates never lose a peak. Time is simulated through
 * balance_req.now_us and the now_us of each sample. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "balance/balance.h"
#include "test.h"

#define MS 1000ULL            /* in µs */
#define SEC 1000000ULL

static struct conf_backend cb[8];
static struct conf_pool cp;
static char names[8][16];

static void make_pool(struct pool *p, const uint32_t *weights, int n)
{
    memset(&cp, 0, sizeof(cp));
    cp.name = "p";
    cp.balance = BALANCE_EWMA;
    cp.backends = cb;
    cp.nbackends = (size_t)n;
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof(names[i]), "b%d", i);
        cb[i].name = names[i];
        cb[i].weight = weights ? weights[i] : 1;
    }
    CHECK_EQ_INT(pool_init(p, &cp), 0);
}

static void test_estimate(void)
{
    struct pool p;
    struct backend *b;
    uint64_t t = 1000 * SEC, v;

    make_pool(&p, NULL, 1);
    b = &p.backends[0];
    CHECK_EQ_INT(backend_latency_ns(b, t), 0);            /* no sample yet */
    backend_observe_latency(b, 1 * MS, t);
    CHECK_EQ_INT(backend_latency_ns(b, t), 1000000);
    /* Peak: a slow sample replaces the estimate at once. */
    backend_observe_latency(b, 200 * MS, t + 10);
    CHECK_EQ_INT(backend_latency_ns(b, t + 10), 200000000);
    /* Decay: after τ = 10 s without samples, e^-1 of it is left... */
    v = backend_latency_ns(b, t + 10 + 10 * SEC);
    CHECK(fabs((double)v - 200e6 / M_E) < 1e4);
    /* ...and a fast sample then is above what pickers see, so it is the
     * new estimate. */
    backend_observe_latency(b, 1 * MS, t + 10 + 60 * SEC);
    CHECK_EQ_INT(backend_latency_ns(b, t + 10 + 60 * SEC), 1000000);
    /* A lower sample soon after only pulls the estimate down a little:
     * 1 s later, weight 1 - e^-0.1 ≈ 9.5%. */
    backend_observe_latency(b, 50 * MS, t + 100 * SEC);
    backend_observe_latency(b, 10 * MS, t + 101 * SEC);
    v = backend_latency_ns(b, t + 101 * SEC);
    CHECK(fabs((double)v - (50e6 * exp(-0.1) + 10e6 * (1 - exp(-0.1)))) < 1e3);
    /* 0 µs is a sample, not "none". */
    backend_observe_latency(&p.backends[0], 0, t + 200 * SEC);
    CHECK(backend_latency_ns(b, t + 200 * SEC) > 0);
    pool_destroy(&p);
}

/* n picks at one per 100 µs of simulated time from *t; each pick observes
 * its backend's latency (lat_us[i]) as if its response came back then.
 * Counts land in counts[]. */
static void run(struct balancer *bl, struct pool *p, const uint64_t *lat_us, int n,
                uint64_t *t, int *counts)
{
    for (int k = 0; k < n; k++) {
        struct balance_req req = {.now_us = *t};
        struct backend *b = balancer_pick(bl, &req);
        int i = (int)(b - p->backends);

        counts[i]++;
        backend_observe_latency(b, lat_us[i], *t);
        *t += 100;
    }
}

static void test_slow_backend(void)
{
    struct pool p;
    struct balancer bl;
    uint64_t lat[4] = {1 * MS, 1 * MS, 1 * MS, 1 * MS}, t = 1000 * SEC;
    int counts[4] = {0}, first[4] = {0};

    make_pool(&p, NULL, 4);
    balancer_init(&bl, &p, 5);
    run(&bl, &p, lat, 10000, &t, counts);
    for (int i = 0; i < 4; i++)
        CHECK(abs(counts[i] - 2500) < 250);

    /* b0 turns slow: 1 ms → 200 ms. Over the next second (10,000 picks)
     * its share drops below 5%; in fact below 0.1%: its first slow
     * response makes it lose every comparison. */
    lat[0] = 200 * MS;
    memset(counts, 0, sizeof(counts));
    run(&bl, &p, lat, 1000, &t, first);
    memcpy(counts, first, sizeof(counts));
    run(&bl, &p, lat, 9000, &t, counts);
    CHECK(counts[0] < 500);
    CHECK(counts[0] < 10);
    CHECK(first[0] < 10);           /* within the first 100 ms */
    fprintf(stderr, "  ewma: after 1 ms -> 200 ms, the slow backend got %d of the "
            "next 10,000 picks (%d of the first 1,000)\n", counts[0], first[0]);

    /* It recovers: its estimate decays while it is avoided, a probe finds
     * it fast, and within a minute it has its share back. */
    lat[0] = 1 * MS;
    t += 60 * SEC;
    memset(counts, 0, sizeof(counts));
    run(&bl, &p, lat, 10000, &t, counts);
    CHECK(counts[0] > 2000);
    balancer_destroy(&bl);
    pool_destroy(&p);
}

/* cost = estimate × (active + 1): requests in flight count against a
 * backend before their responses arrive. */
static void test_in_flight(void)
{
    struct pool p;
    struct balancer bl;
    int counts[3] = {0};
    uint64_t t = 1000 * SEC;

    make_pool(&p, NULL, 3);
    balancer_init(&bl, &p, 9);
    backend_observe_latency(&p.backends[0], 10 * MS, t);
    backend_observe_latency(&p.backends[1], 2 * MS, t);
    backend_observe_latency(&p.backends[2], 10 * MS, t);
    atomic_store(&p.backends[0].active, 10);
    for (int k = 0; k < 3000; k++) {
        struct balance_req req = {.now_us = t};
        counts[balancer_pick(&bl, &req) - p.backends]++;
    }
    CHECK_EQ_INT(counts[0], 0);
    /* b1 is 5× faster than b2: with picks holding their requests, b1 ends
     * with about 5× the in-flight count (costs equalise). */
    atomic_store(&p.backends[0].active, 0);
    backend_set_state(&p.backends[0], BACKEND_DISABLED, "test");
    for (int k = 0; k < 6000; k++) {
        struct balance_req req = {.now_us = t};
        atomic_fetch_add(&balancer_pick(&bl, &req)->active, 1);
    }
    uint32_t a1 = atomic_load(&p.backends[1].active), a2 = atomic_load(&p.backends[2].active);
    CHECK(fabs((double)(a1 + 1) / (a2 + 1) - 5.0) < 0.1);
    balancer_destroy(&bl);
    pool_destroy(&p);
}

/* A backend with no sample is priced like its rival, so load decides: it
 * is probed at once, and not flooded while its first requests are out. */
static void test_new_backend(void)
{
    struct pool p;
    struct balancer bl;
    uint64_t t = 1000 * SEC;
    int picked = 0;

    make_pool(&p, NULL, 3);
    balancer_init(&bl, &p, 11);
    backend_observe_latency(&p.backends[0], 5 * MS, t);
    backend_observe_latency(&p.backends[1], 5 * MS, t);
    for (int k = 0; k < 300; k++) {
        struct balance_req req = {.now_us = t};
        struct backend *b = balancer_pick(&bl, &req);
        atomic_fetch_add(&b->active, 1);       /* nothing completes */
        picked += b == &p.backends[2];
    }
    CHECK(picked > 0);
    CHECK(picked <= 101 && picked >= 99);      /* a third, like the others */
    balancer_destroy(&bl);
    pool_destroy(&p);
}

/* Idle backends with equal estimates share by weight; exclusion holds. */
static void test_weights_exclusion(void)
{
    static const uint32_t w[4] = {1, 1, 1, 3};
    struct pool p;
    struct balancer bl;
    int counts[4] = {0};
    const int N = 100000;
    uint64_t t = 1000 * SEC;

    make_pool(&p, w, 4);
    balancer_init(&bl, &p, 13);
    for (int k = 0; k < N; k++) {
        struct balance_req req = {.now_us = t};
        counts[balancer_pick(&bl, &req) - p.backends]++;
    }
    for (int i = 0; i < 3; i++)
        CHECK(abs(counts[i] - N / 6) < N / 100);
    CHECK(abs(counts[3] - N / 2) < N / 100);
    for (int i = 0; i < 4; i++)
        backend_observe_latency(&p.backends[i], 3 * MS, t);
    memset(counts, 0, sizeof(counts));
    for (int k = 0; k < N; k++) {
        struct balance_req req = {.now_us = t};
        counts[balancer_pick(&bl, &req) - p.backends]++;
    }
    CHECK(abs(counts[3] - N / 2) < N / 100);

    const struct backend *ex[3] = {&p.backends[3], &p.backends[0], &p.backends[1]};
    struct balance_req req = {.exclude = ex, .nexclude = 3, .now_us = t};
    for (int k = 0; k < 100; k++)
        CHECK(balancer_pick(&bl, &req) == &p.backends[2]);
    const struct backend *all[4] = {&p.backends[0], &p.backends[1], &p.backends[2],
                                    &p.backends[3]};
    struct balance_req none = {.exclude = all, .nexclude = 4, .now_us = t};
    CHECK(balancer_pick(&bl, &none) == NULL);
    balancer_destroy(&bl);
    pool_destroy(&p);
}

/* Two threads racing fast and slow samples: the CAS loop never loses a
 * peak, so after the race the estimate reflects the slow samples. */
struct racer {
    struct backend *b;
    uint64_t rtt_us;
};

static void *race(void *arg)
{
    struct racer *r = arg;

    for (int k = 0; k < 200000; k++)
        backend_observe_latency(r->b, r->rtt_us, 1000 * SEC + (uint64_t)k);
    return NULL;
}

static void test_race(void)
{
    struct pool p;
    pthread_t t1, t2;
    struct racer fast, slow;
    uint64_t v;

    make_pool(&p, NULL, 1);
    fast = (struct racer){&p.backends[0], 1 * MS};
    slow = (struct racer){&p.backends[0], 100 * MS};
    pthread_create(&t1, NULL, race, &fast);
    pthread_create(&t2, NULL, race, &slow);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    /* Samples 1 µs apart barely decay: the peak holds near 100 ms. */
    v = backend_latency_ns(&p.backends[0], 1000 * SEC);
    CHECK(v > 90000000 && v <= 100000000);
    pool_destroy(&p);
}

int main(void)
{
    test_estimate();
    test_slow_backend();
    test_in_flight();
    test_new_backend();
    test_weights_exclusion();
    test_race();
    TEST_END();
}
