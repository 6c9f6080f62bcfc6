/* Peak-EWMA latency (Finagle's and Linkerd's balancer): draw two distinct
 * eligible candidates at random in proportion to their weights, and keep
 * the one with the lower cost
 *
 *     cost = latency estimate × (active + 1) / weight
 *
 * The estimate (backend_observe_latency in balance.c) jumps up at once on a
 * slow response and decays with a 10 s time constant, so a backend that
 * turns slow stops winning comparisons with its first slow response, well
 * within a second and without a health check; and as its estimate decays
 * while it is avoided, it is probed again and comes back if it recovered.
 * The in-flight factor (active + 1) makes requests stuck on a backend count
 * against it before their slow responses arrive, and spreads a burst.
 *
 * A backend without a sample (new, or never picked yet) is priced with its
 * rival's estimate, so the choice falls to load alone: it gets probed at
 * once, but not flooded, because its in-flight requests still count. Two
 * idle candidates with the same estimate keep the first (weighted) draw, so
 * an idle pool of equal backends gets exactly weighted shares. */

#include "balance/internal.h"
#include "core/clock.h"

static uint64_t ewma_now_us(const struct balance_req *req)
{
    if (req && req->now_us)
        return req->now_us;
    /* The worker's clock, cached once per loop iteration: same base as
     * clock_mono_us(), which the proxies stamp samples with. */
    return clock_now_ms() ? clock_now_ms() * 1000u : clock_mono_us();
}

static int ewma_pick(void *state, const struct balance_set *set,
                     const struct balance_req *req, uint64_t *rng)
{
    uint64_t now, ea, eb, la, lb;
    int a, b, n = balance_draw_two(state, set, req, rng, &a, &b);

    if (n < 2)
        return n ? a : -1;
    now = ewma_now_us(req);
    ea = backend_latency_ns(set->b[a], now);
    eb = backend_latency_ns(set->b[b], now);
    if (ea == 0)
        ea = eb ? eb : 1;
    if (eb == 0)
        eb = ea;
    la = atomic_load_explicit(&set->b[a]->active, memory_order_relaxed);
    lb = atomic_load_explicit(&set->b[b]->active, memory_order_relaxed);
    if (la == 0 && lb == 0 && ea == eb)
        return a;
    /* eb (lb + 1) / wb < ea (la + 1) / wa, without division; in doubles,
     * as ns × active × weight can pass 2^64. */
    if ((double)eb * (double)(lb + 1) * set->weight[a] <
        (double)ea * (double)(la + 1) * set->weight[b])
        return b;
    return a;
}

const struct balance_ops balance_ewma = {
    .name = "ewma",
    .build = balance_draw_build,
    .destroy = balance_draw_destroy,
    .pick = ewma_pick,
};
