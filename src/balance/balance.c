/* The backend set shared by all workers and the per-worker balancer that
 * picks from it. */
#include "balance/balance.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "balance/internal.h"
#include "core/clock.h"
#include "core/log.h"
#include "route/route.h"

static const char *const state_names[] = {
    [BACKEND_UP] = "UP",
    [BACKEND_DOWN] = "DOWN",
    [BACKEND_DRAINING] = "DRAINING",
    [BACKEND_DISABLED] = "DISABLED",
    [BACKEND_SLOW_START] = "SLOW_START",
};

const char *backend_state_name(enum backend_state s)
{
    if ((unsigned)s < sizeof(state_names) / sizeof(state_names[0]))
        return state_names[s];
    return "?";
}

const struct balance_ops *balance_ops_for(enum balance_kind kind)
{
    switch (kind) {
    case BALANCE_ROUND_ROBIN:
        return &balance_round_robin;
    case BALANCE_LEAST_CONN:
        return &balance_least_conn;
    case BALANCE_RANDOM:
        return &balance_random;
    case BALANCE_EWMA:
        return &balance_ewma;
    case BALANCE_RING_HASH:
        return &balance_ring_hash;
    case BALANCE_MAGLEV:
        return &balance_maglev;
    case BALANCE_IP_HASH:
        return &balance_ip_hash;
    case BALANCE_P2C:
        break;
    }
    return &balance_p2c;
}

void pool_listed_init(struct pool *p)
{
    const struct conf_pool *conf = p->conf;

    p->nlisted = (uint32_t)conf->nbackends;
    for (uint32_t i = 0; i < p->nlisted; i++) {
        struct backend *b = &p->backends[i];
        b->conf = &conf->backends[i];
        b->pool = p;
        b->index = i;
        atomic_init(&b->state, BACKEND_UP);
        atomic_init(&b->weight, conf->backends[i].weight);
        atomic_init(&b->ramp_permille, 1000);
        b->sticky_id = sticky_id_for(conf->name, conf->backends[i].name);
    }
}

int pool_init(struct pool *p, const struct conf_pool *conf)
{
    memset(p, 0, sizeof(*p));
    p->conf = conf;
    atomic_init(&p->generation, 1);
    atomic_init(&p->retry_tokens, (int64_t)conf->retries.budget_min * 100);
    if (conf->discovery.dns)
        return pool_slots_init(p);
    p->nbackends = (uint32_t)conf->nbackends;
    p->backends = calloc(p->nbackends, sizeof(*p->backends));
    if (!p->backends)
        return -1;
    pool_listed_init(p);
    return 0;
}

void pool_destroy(struct pool *p)
{
    pool_slots_free(p);
    free(p->backends);
    p->backends = NULL;
    p->nbackends = 0;
}

struct backend *pool_find_backend(struct pool *p, const char *name)
{
    for (uint32_t i = 0; i < p->nbackends; i++)
        if (!backend_vacant(&p->backends[i]) && strcmp(p->backends[i].conf->name, name) == 0)
            return &p->backends[i];
    return NULL;
}

enum backend_state backend_set_state(struct backend *b, enum backend_state s,
                                     const char *why)
{
    enum backend_state old = (enum backend_state)atomic_exchange(&b->state, (int)s);

    if (old != s) {
        atomic_fetch_add(&b->pool->generation, 1);
        /* Back from anything that took no new work: a drained backend is
         * typically enabled again after a deploy, with cold caches. Its
         * failures in a row are from before (the last resort tries DOWN
         * backends): they must not eject it now that it is healthy. */
        if (s == BACKEND_UP &&
            (old == BACKEND_DOWN || old == BACKEND_DISABLED || old == BACKEND_DRAINING)) {
            atomic_store(&b->consecutive_failures, 0);
            backend_ramp_start(b, clock_now_ms());
        }
        if (s == BACKEND_DRAINING)
            b->draining_since_ms = clock_now_ms() ? clock_now_ms() : 1;
        else
            atomic_store(&b->drain_expired, 0);
        log_msg(s == BACKEND_DOWN ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
                "event=backend_state pool=%s backend=%s from=%s to=%s why=\"%s\"",
                b->pool->conf->name, b->conf->name, backend_state_name(old),
                backend_state_name(s), why);
    }
    return old;
}

void backend_set_weight(struct backend *b, uint32_t weight)
{
    if (weight > BACKEND_WEIGHT_MAX)
        weight = BACKEND_WEIGHT_MAX;
    if (atomic_exchange(&b->weight, weight) != weight)
        atomic_fetch_add(&b->pool->generation, 1);
}

bool backend_eligible(const struct backend *b)
{
    int s = atomic_load_explicit(&b->state, memory_order_relaxed);

    return (s == BACKEND_UP || s == BACKEND_SLOW_START) &&
           atomic_load_explicit(&b->weight, memory_order_relaxed) > 0 &&
           !atomic_load_explicit(&b->ejected, memory_order_relaxed);
}

void backend_ramp_start(struct backend *b, uint64_t now_ms)
{
    if (!b->pool->conf->slow_start_ms)
        return;
    b->ramp_since_ms = now_ms ? now_ms : 1;
    atomic_store(&b->ramp_permille, 100);
    /* SLOW_START is UP while the weight ramps, so that the status API and
     * metrics show it; the ramp's end (health/outlier.c) puts UP back. The
     * main thread is the only writer of states, so no CAS is needed. */
    if (atomic_load(&b->state) == BACKEND_UP)
        atomic_store(&b->state, BACKEND_SLOW_START);
    atomic_fetch_add(&b->pool->generation, 1);
}

/* Not eligible, but may take traffic in panic mode: the operator did not
 * take it out. */
static bool panic_candidate(const struct backend *b)
{
    int s = atomic_load_explicit(&b->state, memory_order_relaxed);

    return s != BACKEND_DRAINING && s != BACKEND_DISABLED &&
           atomic_load_explicit(&b->weight, memory_order_relaxed) > 0;
}

/* The state is two atomics, not one lock: the value is updated with a CAS
 * loop, so that a slow sample racing a fast one on another worker is never
 * overwritten by an update computed from a stale base (a lost peak would
 * hide a slow backend until its next slow response). The stamp is stored
 * after the value, unguarded: a reader may pair a value with the stamp of
 * the update just before or after it, which are microseconds apart, and
 * the decay over microseconds is nothing. */
void backend_observe_latency(struct backend *b, uint64_t rtt_us, uint64_t now_us)
{
    /* Capped at an hour; 0 means "no sample", so a sample is at least 1. */
    uint64_t rtt_ns = (rtt_us < 3600000000ULL ? rtt_us : 3600000000ULL) * 1000u;
    uint64_t old = atomic_load_explicit(&b->ewma_ns, memory_order_relaxed), next;

    if (rtt_ns == 0)
        rtt_ns = 1;
    do {
        uint64_t stamp = atomic_load_explicit(&b->ewma_stamp_us, memory_order_relaxed);
        double w = now_us > stamp ? exp(-(double)(now_us - stamp) / BACKEND_EWMA_TAU_US) : 1.0;
        double seen = (double)old * w;      /* what pickers see now */

        if (old == 0 || (double)rtt_ns >= seen)
            next = rtt_ns;                  /* the peak: slower at once */
        else
            next = (uint64_t)(seen + (double)rtt_ns * (1.0 - w));
    } while (!atomic_compare_exchange_weak_explicit(&b->ewma_ns, &old, next,
                                                    memory_order_relaxed,
                                                    memory_order_relaxed));
    atomic_store_explicit(&b->ewma_stamp_us, now_us, memory_order_relaxed);
}

uint64_t backend_latency_ns(const struct backend *b, uint64_t now_us)
{
    uint64_t v = atomic_load_explicit(&b->ewma_ns, memory_order_relaxed);
    uint64_t stamp = atomic_load_explicit(&b->ewma_stamp_us, memory_order_relaxed);
    uint64_t decayed;

    /* Under a millisecond the decay is below 0.01%: skip the exp(). */
    if (v == 0 || now_us < stamp + 1000)
        return v;
    decayed = (uint64_t)((double)v * exp(-(double)(now_us - stamp) / BACKEND_EWMA_TAU_US));
    return decayed ? decayed : 1;   /* sampled stays distinct from "no sample" */
}

bool balance_excluded(const struct balance_req *req, const struct backend *b)
{
    if (!req)
        return false;
    for (uint32_t i = 0; i < req->nexclude; i++)
        if (req->exclude[i] == b)
            return true;
    return false;
}

uint64_t balance_rand(uint64_t *rng)
{
    uint64_t x = *rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

uint32_t balance_rand_below(uint64_t *rng, uint32_t n)
{
    /* Multiply-shift: unbiased enough for n far below 2^32. */
    return (uint32_t)(((balance_rand(rng) >> 32) * (uint64_t)n) >> 32);
}

void balancer_init(struct balancer *bl, struct pool *pool, uint64_t seed)
{
    memset(bl, 0, sizeof(*bl));
    bl->pool = pool;
    bl->ops = balance_ops_for(pool->conf->balance);
    bl->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
}

static void set_free(struct balancer *bl)
{
    if (bl->state)
        bl->ops->destroy(bl->state);
    bl->state = NULL;
    free(bl->set.b);
    free(bl->set.weight);
    memset(&bl->set, 0, sizeof(bl->set));
}

void balancer_destroy(struct balancer *bl)
{
    set_free(bl);
}

static void rebuild(struct balancer *bl, uint64_t gen)
{
    struct pool *p = bl->pool;
    struct balance_set *s = &bl->set;

    set_free(bl);
    s->b = malloc(p->nbackends * sizeof(*s->b));
    s->weight = malloc(p->nbackends * sizeof(*s->weight));
    if (!s->b || !s->weight) {
        set_free(bl);
        return;          /* retried on the next pick: built_generation stays */
    }
    uint32_t eligible = 0, candidates = 0;
    bool panic;

    for (uint32_t i = 0; i < p->nbackends; i++) {
        eligible += backend_eligible(&p->backends[i]);
        candidates += panic_candidate(&p->backends[i]);
    }
    /* Panic: too few left to carry the load; spread over every backend the
     * operator did not take out, rather than crush the survivors. And, with
     * or without a threshold, when none is left at all: a pool whose every
     * check fails at once more often has a checker problem (checks timing
     * out on an overloaded host) than backends that all died together, and
     * a backend that really is dead refuses the connect, and when none
     * accepts the proxies still answer 503 (see last_resort). */
    panic = candidates &&
            (eligible == 0 ||
             (p->conf->panic_threshold &&
              (uint64_t)eligible * 100 < (uint64_t)p->conf->panic_threshold * candidates));
    for (uint32_t i = 0; i < p->nbackends; i++) {
        struct backend *b = &p->backends[i];
        uint32_t ramp;
        /* The acquire of `vacant` makes a slot's conf (its name, which the
         * hashing algorithms read) visible before it is used. */
        if (backend_vacant(b) || !(panic ? panic_candidate(b) : backend_eligible(b)))
            continue;
        s->b[s->n] = b;
        /* Weights are scaled by 100 so that slow start can ramp even a
         * weight-1 backend in small steps. */
        ramp = atomic_load(&b->ramp_permille);
        if (ramp == 0 || ramp > 1000)
            ramp = 1000;
        s->weight[s->n] = (atomic_load(&b->weight) * 100u * ramp + 999u) / 1000u;
        s->total_weight += s->weight[s->n];
        s->n++;
    }
    bl->panic = panic;
    bl->last_resort = panic && eligible == 0;
    bl->state = s->n ? bl->ops->build(s) : NULL;
    bl->built_generation = gen;
}

struct backend *balancer_pick(struct balancer *bl, const struct balance_req *req)
{
    uint64_t gen = atomic_load_explicit(&bl->pool->generation, memory_order_acquire);
    int i;

    if (gen != bl->built_generation)
        rebuild(bl, gen);
    if (bl->set.n == 0)
        return NULL;
    if (!bl->state) {
        /* The algorithm could not build its table (out of memory): any
         * eligible backend beats failing the request. */
        for (uint32_t k = 0; k < bl->set.n; k++)
            if (!balance_excluded(req, bl->set.b[k]))
                return bl->set.b[k];
        return NULL;
    }
    i = bl->ops->pick(bl->state, &bl->set, req, &bl->rng);
    return i < 0 ? NULL : bl->set.b[i];
}
