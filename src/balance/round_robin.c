/* Smooth weighted round-robin (as NGINX does it): every pick adds each
 * backend's weight to its current value, takes the highest, and subtracts
 * the total from the winner. Over one cycle of total_weight picks each
 * backend is chosen exactly weight times, interleaved rather than in runs
 * (weights 5,1,1 give a a b a c a a, not a a a a a b c). */
#include <stdlib.h>

#include "balance/balance.h"

struct rr_state {
    uint32_t n;
    int64_t current[];
};

static void *rr_build(const struct balance_set *set)
{
    struct rr_state *st = calloc(1, sizeof(*st) + set->n * sizeof(st->current[0]));

    if (st)
        st->n = set->n;
    return st;
}

static void rr_destroy(void *state)
{
    free(state);
}

static int rr_pick(void *state, const struct balance_set *set,
                   const struct balance_req *req, uint64_t *rng)
{
    struct rr_state *st = state;
    int64_t total = 0;
    int best = -1;

    for (uint32_t i = 0; i < st->n; i++) {
        if (balance_excluded(req, set->b[i]))
            continue;
        st->current[i] += set->weight[i];
        total += set->weight[i];
        if (best < 0 || st->current[i] > st->current[best])
            best = (int)i;
    }
    if (best >= 0)
        st->current[best] -= total;
    return best;
}

const struct balance_ops balance_round_robin = {
    .name = "round_robin",
    .build = rr_build,
    .destroy = rr_destroy,
    .pick = rr_pick,
};
