/* Weighted least-connections: the backend with the fewest active
 * connections (L4) or requests (L7) per unit of weight. The next scan
 * starts just after the backend picked, so ties rotate evenly instead of
 * piling onto the first backend: with b3 busy and b1, b2 idle, b1 and b2
 * alternate (a scan start that merely advanced by one would give b1 two
 * picks in three, every time the start lands on b3). Counts are shared atomics, read relaxed: a pick
 * that races with another worker's is still a good pick. */
#include <stdlib.h>

#include "balance/balance.h"

struct lc_state {
    uint32_t next;       /* where the next scan starts */
};

static void *lc_build(const struct balance_set *set)
{
    return calloc(1, sizeof(struct lc_state));
}

static void lc_destroy(void *state)
{
    free(state);
}

static int lc_pick(void *state, const struct balance_set *set,
                   const struct balance_req *req, uint64_t *rng)
{
    struct lc_state *st = state;
    int best = -1;
    uint64_t best_active = 0, best_weight = 1;

    for (uint32_t k = 0; k < set->n; k++) {
        uint32_t i = (st->next + k) % set->n;
        uint64_t active, w;

        if (balance_excluded(req, set->b[i]))
            continue;
        active = atomic_load_explicit(&set->b[i]->active, memory_order_relaxed);
        w = set->weight[i];
        /* active/w < best_active/best_weight, without division. */
        if (best < 0 || active * best_weight < best_active * w) {
            best = (int)i;
            best_active = active;
            best_weight = w;
        }
    }
    if (best >= 0)
        st->next = ((uint32_t)best + 1) % set->n;
    return best;
}

const struct balance_ops balance_least_conn = {
    .name = "least_conn",
    .build = lc_build,
    .destroy = lc_destroy,
    .pick = lc_pick,
};
