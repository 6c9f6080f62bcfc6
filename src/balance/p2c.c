/* Power of two choices (Mitzenmacher; Envoy's least_request): draw two
 * distinct eligible candidates at random, in proportion to their weights,
 * and keep the one with fewer active connections (L4) or requests (L7) for
 * its weight. Load is weighed as Envoy weighs it, weight / (active + 1):
 * the +1 counts the request being placed, so a weight-3 backend with one
 * request in flight (3/2) still beats an idle weight-1 one (1/1), and the
 * loads settle in proportion to the weights.
 *
 * When both candidates are idle, load says nothing and the first (weighted)
 * draw wins: an idle pool gets exactly weighted-random shares, as Envoy's
 * weighted least_request does, instead of always the heavier of the two.
 * Ties keep the first draw too. A loaded pool steers away from its busiest
 * backends at O(1) per pick, without scanning them all. */

#include "balance/internal.h"

static int p2c_pick(void *state, const struct balance_set *set,
                    const struct balance_req *req, uint64_t *rng)
{
    int a, b, n = balance_draw_two(state, set, req, rng, &a, &b);
    uint64_t la, lb;

    if (n < 2)
        return n ? a : -1;
    la = atomic_load_explicit(&set->b[a]->active, memory_order_relaxed);
    lb = atomic_load_explicit(&set->b[b]->active, memory_order_relaxed);
    if (la == 0 && lb == 0)
        return a;
    /* wb / (lb + 1) > wa / (la + 1), without division. */
    if ((lb + 1) * set->weight[a] < (la + 1) * set->weight[b])
        return b;
    return a;
}

const struct balance_ops balance_p2c = {
    .name = "p2c",
    .build = balance_draw_build,
    .destroy = balance_draw_destroy,
    .pick = p2c_pick,
};
