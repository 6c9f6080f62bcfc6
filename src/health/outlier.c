/* Passive health, on the main thread every 100 ms:
 *
 *  - Outlier detection. Workers count each backend's failures in a row on
 *    real traffic (backend_report). A backend at consecutive_failures is
 *    ejected, unless that would take out more than max_ejection_percent of
 *    the pool, for ejection_time × its ejection multiplier, at most
 *    max_ejection_time. Each ejection raises the multiplier by one (until
 *    the product reaches the cap); each `interval` the backend then spends
 *    without an ejection lowers it by one, down to 0, as Envoy does: a
 *    backend that keeps failing is kept out longer and longer, and one that
 *    behaved for a while is back to the base time, so a bad hour last week
 *    does not lengthen today's ejection. It returns on its own when the time
 *    is up, with its count of failures reset.
 *  - Slow start. A backend that came back ramps its share of the weight from
 *    10% to all of it over slow_start, in steps of at least 5%, each a
 *    generation bump so workers rebuild their tables.
 *
 * Ejection is a flag beside the state, not a state: an ejected backend is
 * still UP as far as the health checker and the operator are concerned. */
#include "balance/balance.h"
#include "core/log.h"
#include "health/health.h"

/* The multiplier at which ejection_time × multiplier reaches
 * max_ejection_time: raising it further would change nothing but the time
 * it takes to decay. */
static uint32_t multiplier_cap(const struct conf_outlier *o)
{
    uint64_t base = o->ejection_time_ms ? o->ejection_time_ms : 1;
    uint64_t cap = (o->max_ejection_time_ms + base - 1) / base;

    return cap < 1 ? 1 : cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
}

uint64_t outlier_ejection_ms(const struct conf_outlier *o, uint32_t multiplier)
{
    uint64_t base = o->ejection_time_ms ? o->ejection_time_ms : 1;

    if (!multiplier)
        multiplier = 1;
    /* Compared before multiplying: a multiplier from a reload under another
     * config may be far past this one's cap. */
    if (multiplier > o->max_ejection_time_ms / base)
        return o->max_ejection_time_ms > base ? o->max_ejection_time_ms : base;
    return base * multiplier;
}

/* b is not ejected: every `interval` of that lowers its multiplier by one.
 * The interval runs from the end of its last ejection, or from the last
 * step down; a backend whose multiplier came across a reload starts its
 * interval now. */
static void decay_multiplier(struct pool *p, struct backend *b, uint64_t now)
{
    if (!b->ejection_decay_ms) {
        b->ejection_decay_ms = now ? now : 1;
        return;
    }
    if (now - b->ejection_decay_ms < p->conf->outlier.interval_ms)
        return;
    b->times_ejected--;
    b->ejection_decay_ms = now ? now : 1;
    log_info("event=outlier_multiplier pool=%s backend=%s multiplier=%u next_ejection_ms=%llu",
             p->conf->name, b->conf->name, b->times_ejected,
             (unsigned long long)outlier_ejection_ms(&p->conf->outlier, b->times_ejected + 1));
}

static void outlier_pool(struct pool *p, uint64_t now)
{
    const struct conf_outlier *o = &p->conf->outlier;
    uint32_t ejected = 0, present = 0;

    for (uint32_t i = 0; i < p->nbackends; i++) {
        struct backend *b = &p->backends[i];
        present += !backend_vacant(b);
        if (!atomic_load(&b->ejected)) {
            if (b->times_ejected)
                decay_multiplier(p, b, now);
            continue;
        }
        if (now >= b->ejected_until_ms) {
            atomic_store(&b->consecutive_failures, 0);
            atomic_store(&b->ejected, 0);
            b->ejection_decay_ms = now ? now : 1;
            atomic_fetch_add(&p->generation, 1);
            backend_ramp_start(b, now);
            log_info("event=outlier_returned pool=%s backend=%s multiplier=%u",
                     p->conf->name, b->conf->name, b->times_ejected);
        } else {
            ejected++;
        }
    }
    if (!o->consecutive_failures)
        return;
    for (uint32_t i = 0; i < p->nbackends; i++) {
        struct backend *b = &p->backends[i];
        uint32_t fails = atomic_load_explicit(&b->consecutive_failures, memory_order_relaxed);
        uint64_t ms;

        if (fails < o->consecutive_failures || atomic_load(&b->ejected) || !backend_eligible(b))
            continue;
        if ((uint64_t)(ejected + 1) * 100 > (uint64_t)o->max_ejection_percent * present) {
            log_debug("event=outlier_not_ejected pool=%s backend=%s why=\"max_ejection_percent\"",
                      p->conf->name, b->conf->name);
            continue;
        }
        /* Past the cap only when it came across a reload from a config
         * with a higher one: it would take longer to decay for nothing. */
        if (b->times_ejected < multiplier_cap(o))
            b->times_ejected++;
        else
            b->times_ejected = multiplier_cap(o);
        ms = outlier_ejection_ms(o, b->times_ejected);
        b->ejected_until_ms = now + ms;
        atomic_store(&b->ejected, 1);
        atomic_fetch_add(&b->ejections_total, 1);
        atomic_fetch_add(&p->generation, 1);
        ejected++;
        log_warn("event=outlier_ejected pool=%s backend=%s consecutive_failures=%u "
                 "ejection_ms=%llu multiplier=%u", p->conf->name, b->conf->name, fails,
                 (unsigned long long)ms, b->times_ejected);
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
