/* The walk every hashing algorithm ends with, and bounded load.
 *
 * Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
 * 2017; HAProxy's hash-balance-factor): with factor c, a backend may hold at
 * most ceil(c × (m + 1) × w / W) of the m + 1 requests in flight once this
 * one is placed (w / W its share of the weight). A key whose backend is full
 * goes to the next backend along the ring or table, which is itself
 * consistent: the same hot key overflows to the same few places. Since the
 * capacities add up to at least c (m + 1) > m, some backend always has room.
 * The sum of the actives is taken at pick time over the eligible set, which
 * costs O(n) atomic loads (about 6 µs at 10,000 backends); pools that do not
 * set a factor skip it, and so does a pick whose backend is idle, since
 * every capacity is at least 1. */
#include "balance/internal.h"

uint32_t balance_factor_milli(const struct balance_set *set)
{
    double f;

    if (set->n == 0)
        return 0;
    f = set->b[0]->pool->conf->hash_balance_factor;
    return f > 1.0 ? (uint32_t)(f * 1000.0 + 0.5) : 0;
}

void balance_walk_init(struct balance_walk *w, const struct balance_set *set,
                       const struct balance_req *req, uint32_t factor_milli)
{
    w->set = set;
    w->req = req;
    w->fallback = -1;
    w->factor_milli = factor_milli;
    w->num = w->den = 0;
}

/* The capacities, from the sum of the actives; once per pick, when first
 * needed. */
static void balance_walk_sum(struct balance_walk *w)
{
    const struct balance_set *set = w->set;
    uint64_t sum = 0;

    for (uint32_t i = 0; i < set->n; i++)
        sum += atomic_load_explicit(&set->b[i]->active, memory_order_relaxed);
    w->num = (uint64_t)w->factor_milli * (sum + 1);
    w->den = 1000u * set->total_weight;
}

bool balance_all_excluded(const struct balance_set *set, const struct balance_req *req)
{
    if (!req || req->nexclude < set->n)
        return false;
    for (uint32_t i = 0; i < set->n; i++)
        if (!balance_excluded(req, set->b[i]))
            return false;
    return true;
}

bool balance_walk_takes(struct balance_walk *w, uint32_t i)
{
    const struct backend *b = w->set->b[i];
    uint64_t active, cap;

    if (balance_excluded(w->req, b))
        return false;
    if (!w->factor_milli)
        return true;
    active = atomic_load_explicit(&b->active, memory_order_relaxed);
    if (active == 0)
        return true;
    if (!w->den)
        balance_walk_sum(w);
    cap = (w->num * w->set->weight[i] + w->den - 1) / w->den;
    if (active < cap)
        return true;
    /* Full, but allowed: the answer if everything allowed is full (only
     * possible when the exclusion set holds the backends with room). */
    if (w->fallback < 0)
        w->fallback = (int)i;
    return false;
}
