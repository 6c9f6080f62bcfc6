/* Power of two choices: draw two distinct candidates at random, in
 * proportion to their weights, and keep the one with fewer active
 * connections/requests per unit of weight; on a tie keep the first draw.
 * An idle pool therefore gets exactly weighted-random shares, and a loaded
 * one steers away from its busiest backends at O(log n) per pick without
 * scanning them all (Mitzenmacher; Envoy's least_request). */
#include <stdlib.h>

#include "balance/balance.h"

struct p2c_state {
    uint32_t n;
    uint64_t cumulative[];   /* prefix sums of weights, for weighted draws */
};

static void *p2c_build(const struct balance_set *set)
{
    struct p2c_state *st = malloc(sizeof(*st) + set->n * sizeof(st->cumulative[0]));
    uint64_t sum = 0;

    if (!st)
        return NULL;
    st->n = set->n;
    for (uint32_t i = 0; i < set->n; i++) {
        sum += set->weight[i];
        st->cumulative[i] = sum;
    }
    return st;
}

static void p2c_destroy(void *state)
{
    free(state);
}

/* Index of a backend drawn with probability weight/total. */
static uint32_t draw(const struct p2c_state *st, uint64_t *rng)
{
    uint64_t total = st->cumulative[st->n - 1];
    uint64_t r = balance_rand(rng) % total;
    uint32_t lo = 0, hi = st->n - 1;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (st->cumulative[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* A weighted draw that avoids excluded backends and `avoid` (-1: none).
 * A few random tries first; then a scan so that a heavily excluded set
 * still finds its last candidates. */
static int draw_allowed(const struct p2c_state *st, const struct balance_set *set,
                        const struct balance_req *req, int avoid, uint64_t *rng)
{
    for (int tries = 0; tries < 8; tries++) {
        uint32_t i = draw(st, rng);
        if ((int)i != avoid && !balance_excluded(req, set->b[i]))
            return (int)i;
    }
    uint32_t start = balance_rand_below(rng, st->n);
    for (uint32_t k = 0; k < st->n; k++) {
        uint32_t i = (start + k) % st->n;
        if ((int)i != avoid && !balance_excluded(req, set->b[i]))
            return (int)i;
    }
    return -1;
}

static int p2c_pick(void *state, const struct balance_set *set,
                    const struct balance_req *req, uint64_t *rng)
{
    struct p2c_state *st = state;
    int a, b;
    uint64_t la, lb;

    a = draw_allowed(st, set, req, -1, rng);
    if (a < 0)
        return -1;
    b = draw_allowed(st, set, req, a, rng);
    if (b < 0)
        return a;
    la = atomic_load_explicit(&set->b[a]->active, memory_order_relaxed);
    lb = atomic_load_explicit(&set->b[b]->active, memory_order_relaxed);
    /* lb/wb < la/wa, without division. */
    if (lb * set->weight[a] < la * set->weight[b])
        return b;
    return a;
}

const struct balance_ops balance_p2c = {
    .name = "p2c",
    .build = p2c_build,
    .destroy = p2c_destroy,
    .pick = p2c_pick,
};
