/* Microbenchmark: ns per balancer_pick() for every algorithm at 3, 100 and
 * 10,000 backends (equal weights; the hashing ones with a random key per
 * pick, and again with hash_balance_factor 1.25), and how long building a
 * Maglev table and a ring takes. Single thread, warm caches, no other load:
 * the cost of the choice itself, not of a proxy around it. `make test-unit`
 * builds it (so it keeps building as the code moves) but does not run it:
 *
 *   make build/micro/balance_pick && build/micro/balance_pick
 *
 * Each pick figure is the best of five runs of a batch sized to take at
 * least 50 ms; each build figure the best of five builds. Active counts
 * are 0 (p2c, least_conn and ewma read them either way; the values do not
 * change the work), except in the "busy" rows: hash_balance_factor 1.25
 * with one request in flight on every backend, where bounded load must sum
 * the actives of the pool on every pick ("idle": it need not). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balance/balance.h"
#include "core/clock.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct bench_pool {
    struct conf_backend *cb;
    struct conf_pool cp;
    char (*names)[24];
    struct pool p;
};

static void bench_pool_init(struct bench_pool *bp, enum balance_kind kind, uint32_t n,
                            double factor, bool busy)
{
    memset(bp, 0, sizeof(*bp));
    bp->cb = calloc(n, sizeof(*bp->cb));
    bp->names = calloc(n, sizeof(*bp->names));
    bp->cp.name = "bench";
    bp->cp.balance = kind;
    bp->cp.hash_balance_factor = factor;
    bp->cp.backends = bp->cb;
    bp->cp.nbackends = n;
    for (uint32_t i = 0; i < n; i++) {
        snprintf(bp->names[i], sizeof(bp->names[i]), "app-%05u.internal", i);
        bp->cb[i].name = bp->names[i];
        bp->cb[i].weight = 1;
    }
    if (pool_init(&bp->p, &bp->cp) < 0)
        abort();
    /* A latency sample for every backend, a second old, so that ewma does
     * its full work (the decay's exp() included). */
    for (uint32_t i = 0; i < n; i++)
        backend_observe_latency(&bp->p.backends[i], 1000 + i % 7, clock_mono_us() - 1000000);
    /* busy: one request in flight everywhere, so that bounded load must sum
     * the actives (an idle backend is taken without). */
    for (uint32_t i = 0; i < n && busy; i++)
        atomic_store(&bp->p.backends[i].active, 1);
}

static void bench_pool_free(struct bench_pool *bp)
{
    pool_destroy(&bp->p);
    free(bp->cb);
    free(bp->names);
}

#define NKEYS 4096
static uint64_t keys[NKEYS];
static volatile uintptr_t sink;

static double run_batch(struct balancer *bl, long iters)
{
    struct balance_req req = {.has_hash = true};
    double t0 = now_s();

    for (long i = 0; i < iters; i++) {
        req.hash = keys[i & (NKEYS - 1)];
        sink += (uintptr_t)balancer_pick(bl, &req);
    }
    return now_s() - t0;
}

static double ns_per_pick(enum balance_kind kind, uint32_t n, double factor, bool busy)
{
    struct bench_pool bp;
    struct balancer bl;
    long iters = 1000;
    double best = 1e9;

    bench_pool_init(&bp, kind, n, factor, busy);
    balancer_init(&bl, &bp.p, 42);
    run_batch(&bl, 1);                     /* build the table outside the timing */
    while (run_batch(&bl, iters) < 0.05)
        iters *= 2;
    for (int r = 0; r < 5; r++) {
        double t = run_batch(&bl, iters) / (double)iters * 1e9;
        if (t < best)
            best = t;
    }
    balancer_destroy(&bl);
    bench_pool_free(&bp);
    return best;
}

static double build_ms(const struct balance_ops *ops, uint32_t n)
{
    struct bench_pool bp;
    struct balance_set set = {0};
    double best = 1e9;

    bench_pool_init(&bp, BALANCE_P2C, n, 0, false);
    set.n = n;
    set.b = malloc(n * sizeof(*set.b));
    set.weight = malloc(n * sizeof(*set.weight));
    for (uint32_t i = 0; i < n; i++) {
        set.b[i] = &bp.p.backends[i];
        set.weight[i] = 100;            /* weight 1, scaled as balance.c does */
        set.total_weight += 100;
    }
    for (int r = 0; r < 5; r++) {
        double t0 = now_s(), t;
        void *st = ops->build(&set);

        t = (now_s() - t0) * 1e3;
        ops->destroy(st);
        if (t < best)
            best = t;
    }
    free(set.b);
    free(set.weight);
    bench_pool_free(&bp);
    return best;
}

int main(void)
{
    static const struct {
        enum balance_kind kind;
        double factor;
        bool busy;
        const char *label;
    } algos[] = {
        {BALANCE_ROUND_ROBIN, 0, false, "round_robin"},
        {BALANCE_LEAST_CONN, 0, false, "least_conn"},
        {BALANCE_RANDOM, 0, false, "random"},
        {BALANCE_P2C, 0, false, "p2c"},
        {BALANCE_EWMA, 0, false, "ewma"},
        {BALANCE_RING_HASH, 0, false, "ring_hash"},
        {BALANCE_MAGLEV, 0, false, "maglev"},
        {BALANCE_IP_HASH, 0, false, "ip_hash"},
        {BALANCE_RING_HASH, 1.25, false, "ring_hash, factor, idle"},
        {BALANCE_MAGLEV, 1.25, false, "maglev, factor, idle"},
        {BALANCE_RING_HASH, 1.25, true, "ring_hash, factor, busy"},
        {BALANCE_MAGLEV, 1.25, true, "maglev, factor, busy"},
    };
    static const uint32_t sizes[] = {3, 100, 10000};
    uint64_t rng = 0x1234567;

    clock_update();    /* as a worker does each loop iteration (ewma reads it) */
    for (int i = 0; i < NKEYS; i++)
        keys[i] = balance_rand(&rng);
    printf("ns per pick (best of 5)       %10s %10s %10s\n", "3", "100", "10,000");
    for (size_t a = 0; a < sizeof(algos) / sizeof(algos[0]); a++) {
        printf("%-28s", algos[a].label);
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            printf(" %10.1f", ns_per_pick(algos[a].kind, sizes[s], algos[a].factor,
                                          algos[a].busy));
            fflush(stdout);
        }
        printf("\n");
    }
    printf("\nbuild time, ms (best of 5)    %10s %10s %10s %10s\n", "3", "100", "1,000",
           "10,000");
    static const uint32_t build_sizes[] = {3, 100, 1000, 10000};
    static const struct { const struct balance_ops *ops; const char *label; } builds[] = {
        {&balance_maglev, "maglev"},
        {&balance_ring_hash, "ring_hash"},
        {&balance_p2c, "p2c (alias table)"},
    };
    for (size_t b = 0; b < sizeof(builds) / sizeof(builds[0]); b++) {
        printf("%-28s", builds[b].label);
        for (size_t s = 0; s < sizeof(build_sizes) / sizeof(build_sizes[0]); s++) {
            printf(" %10.3f", build_ms(builds[b].ops, build_sizes[s]));
            fflush(stdout);
        }
        printf("\n");
    }
    return 0;
}
