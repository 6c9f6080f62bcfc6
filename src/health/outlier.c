/* Passive health, on the main thread every 100 ms:
 *
 *  - Outlier detection. Workers count each backend's failures in a row on
 *    real traffic (backend_report). A backend at consecutive_failures is
 *    ejected for ejection_time × the times it was ejected so far (at most
 *    10×), unless that would take out more than max_ejection_percent of the
 *    pool. It returns on its own when the time is up, with its count reset.
 *  - Slow start. A backend that came back ramps its share of the weight from
 *    10% to all of it over slow_start, in steps of at least 5%, each a
 *    generation bump so workers rebuild their tables.
 *
 * Ejection is a flag beside the state, not a state: an ejected backend is
 * still UP as far as the health checker and the operator are concerned. */
#include "balance/balance.h"
#include "core/log.h"
#include "health/health.h"

#define EJECTION_MULTIPLIER_MAX 10

static void outlier_pool(struct pool *p, uint64_t now)
{
    const struct conf_outlier *o = &p->conf->outlier;
    uint32_t ejected = 0, present = 0;

    for (uint32_t i = 0; i < p->nbackends; i++) {
        struct backend *b = &p->backends[i];
        present += !backend_vacant(b);
        if (!atomic_load(&b->ejected))
            continue;
        if (now >= b->ejected_until_ms) {
            atomic_store(&b->consecutive_failures, 0);
            atomic_store(&b->ejected, 0);
            atomic_fetch_add(&p->generation, 1);
            backend_ramp_start(b, now);
            log_info("event=outlier_returned pool=%s backend=%s", p->conf->name, b->conf->name);
        } else {
            ejected++;
        }
    }
    if (!o->consecutive_failures)
        return;
    for (uint32_t i = 0; i < p->nbackends; i++) {
        struct backend *b = &p->backends[i];
        uint32_t fails = atomic_load_explicit(&b->consecutive_failures, memory_order_relaxed);
        uint32_t mult;

        if (fails < o->consecutive_failures || atomic_load(&b->ejected) || !backend_eligible(b))
            continue;
        if ((uint64_t)(ejected + 1) * 100 > (uint64_t)o->max_ejection_percent * present) {
            log_debug("event=outlier_not_ejected pool=%s backend=%s why=\"max_ejection_percent\"",
                      p->conf->name, b->conf->name);
            continue;
        }
        b->times_ejected++;
        mult = b->times_ejected < EJECTION_MULTIPLIER_MAX ? b->times_ejected
                                                          : EJECTION_MULTIPLIER_MAX;
        b->ejected_until_ms = now + o->ejection_time_ms * mult;
        atomic_store(&b->ejected, 1);
        atomic_fetch_add(&b->ejections_total, 1);
        atomic_fetch_add(&p->generation, 1);
        ejected++;
        log_warn("event=outlier_ejected pool=%s backend=%s consecutive_failures=%u "
                 "ejection_ms=%llu times=%u", p->conf->name, b->conf->name, fails,
                 (unsigned long long)(o->ejection_time_ms * mult), b->times_ejected);
    }
}

static void ramp_pool(struct pool *p, uint64_t now)
{
    uint64_t window = p->conf->slow_start_ms;

    for (uint32_t i = 0; i < p->nbackends; i++) {
        struct backend *b = &p->backends[i];
        uint32_t old, next;

        if (!b->ramp_since_ms)
            continue;
        old = atomic_load(&b->ramp_permille);
        next = window ? (uint32_t)(100 + (now - b->ramp_since_ms) * 900 / window) : 1000;
        if (next >= 1000) {
            next = 1000;
            b->ramp_since_ms = 0;
            if (atomic_load(&b->state) == BACKEND_SLOW_START)
                atomic_store(&b->state, BACKEND_UP);
        } else if (next < old + 50) {
            continue;     /* not worth a rebuild in every worker yet */
        }
        atomic_store(&b->ramp_permille, next);
        atomic_fetch_add(&p->generation, 1);
    }
}

/* A DRAINING backend's in-flight work may finish for drain_timeout; then
 * workers are told (drain_expired) to close what is left. */
static void drain_pool(struct pool *p, uint64_t now)
{
    for (uint32_t i = 0; i < p->nbackends; i++) {
        struct backend *b = &p->backends[i];

        if (atomic_load(&b->state) != BACKEND_DRAINING || atomic_load(&b->drain_expired))
            continue;
        if (now < b->draining_since_ms + p->conf->drain_timeout_ms)
            continue;
        atomic_store(&b->drain_expired, 1);
        if (atomic_load(&b->active))
            log_warn("event=drain_timeout pool=%s backend=%s active=%u why=\"closing what is "
                     "still in flight\"", p->conf->name, b->conf->name, atomic_load(&b->active));
    }
}

void health_tick(struct health_checker *hc, uint64_t now_ms)
{
    for (size_t i = 0; i < hc->rt->npools; i++) {
        outlier_pool(&hc->rt->pools[i], now_ms);
        ramp_pool(&hc->rt->pools[i], now_ms);
        drain_pool(&hc->rt->pools[i], now_ms);
    }
}
