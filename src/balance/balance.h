/* Backend sets and the balancer interface.
 *
 * A `struct pool` and its `struct backend`s are the runtime state of a
 * configured pool, shared by every worker and the main thread. Their mutable
 * fields are atomics: the health checker (main thread) changes state and
 * weight, workers count active work. Any change a picker must see bumps
 * pool->generation.
 *
 * A `struct balancer` is one worker's picker for one pool. It builds its
 * table (the eligible backends and their weights, plus whatever the
 * algorithm precomputes) when it sees a new generation, and `pick` reads it.
 * Being per worker, algorithm state such as round-robin's current weights
 * needs no lock. A retry passes the backends already tried as an exclusion
 * set. */
#ifndef SLUICE_BALANCE_H
#define SLUICE_BALANCE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct tls_client;

enum backend_state {
    BACKEND_UP,
    BACKEND_DOWN,
    BACKEND_DRAINING,
    BACKEND_DISABLED,
    BACKEND_SLOW_START,
};

#define BACKEND_WEIGHT_MAX 256

/* Owner: its pool. Shared by all threads: every mutable field is atomic. */
struct backend {
    const struct conf_backend *conf;  /* name, address (immutable) */
    struct pool *pool;
    uint32_t index;                   /* position in pool->backends */
    _Atomic int state;                /* enum backend_state; written by main thread */
    _Atomic uint32_t weight;          /* effective weight; 0 = takes no new work */
    _Atomic uint32_t active;          /* connections (L4) / requests (L7) in flight */
    _Atomic uint64_t total;           /* connections / requests sent to it */
    _Atomic uint64_t failures;        /* failed connects, resets, ... */
    /* Passive outlier detection (health/outlier.c): workers count failures
     * in a row; the main thread ejects and returns. */
    _Atomic uint32_t consecutive_failures;
    _Atomic int ejected;              /* out of rotation until ejected_until_ms */
    uint64_t ejected_until_ms;        /* main thread only */
    /* The ejection multiplier (main thread only): raised by each ejection,
     * lowered by one for each outlier_detection.interval without one,
     * which runs from ejection_decay_ms (0 = from the next tick). */
    uint32_t times_ejected;
    uint64_t ejection_decay_ms;
    _Atomic uint64_t ejections_total;
    /* Slow start: share of the weight while ramping up, 1..1000 (1000 = all). */
    _Atomic uint32_t ramp_permille;
    uint64_t ramp_since_ms;           /* main thread only; 0 = not ramping */
    /* Draining: since when (main thread), and whether drain_timeout ran out,
     * which tells workers to close what is still in flight to it. */
    uint64_t draining_since_ms;
    _Atomic int drain_expired;
    _Atomic uint64_t checks_passed;   /* active health checks */
    _Atomic uint64_t checks_failed;
    /* Peak-EWMA round-trip time (see backend_observe_latency): the estimate
     * in ns (0 = no sample yet) and when it was last updated. Written by the
     * workers that see responses, read by every `ewma` picker. */
    _Atomic uint64_t ewma_ns;
    _Atomic uint64_t ewma_stamp_us;
    uint64_t sticky_id;               /* what a sticky cookie names it by (route/sticky.c) */
    /* Discovery pools (src/discovery/): each backend is a slot that an
     * address from DNS fills. A vacant slot is DISABLED at weight 0, and
     * everything that lists backends skips it. `conf` of a slot is the
     * pool's own and is rewritten (main thread) only while the slot is
     * vacant and no worker can still hold it (see discovery.c). */
    _Atomic int vacant;
    _Atomic uint32_t epoch;           /* bumped each time the slot is filled */
};

/* Owner: the runtime (main.c); lives as long as sluice runs. */
struct pool {
    const struct conf_pool *conf;
    struct backend *backends;
    uint32_t nbackends;
    _Atomic uint64_t generation;      /* bumped on any state or weight change */
    /* L7 load and failure accounting, shared by all workers. */
    _Atomic uint32_t requests_active;     /* requests in flight to the pool */
    _Atomic int64_t retry_tokens;         /* retry budget, in 1/100 of a retry */
    _Atomic uint32_t connections;         /* upstream connections, open or idle */
    _Atomic uint32_t pending;             /* requests waiting for a connection */
    _Atomic uint64_t retries_total;
    _Atomic uint64_t retry_budget_exhausted;  /* retries refused by the budget */
    _Atomic uint64_t breaker_rejected;        /* requests answered 503 by the breaker */
    _Atomic uint64_t mirror_ok;               /* as a route's mirror: copies answered */
    _Atomic uint64_t mirror_failed;           /* ... failed (connect, reset, timeout) */
    _Atomic uint64_t mirror_skipped;          /* ... not sent (limit, body not kept) */
    struct tls_client *tls;                   /* with `tls`: built by the runtime, read-only */
    struct conf_backend *slots;               /* discovery: each backend's conf; NULL otherwise */
    uint32_t nlisted;                         /* backends[0..nlisted) are the config's own;
                                                 discovery slots follow them */
    _Atomic uint64_t discovery_resolutions;   /* discovery: answers applied */
    _Atomic uint64_t discovery_failures;      /* ... and resolutions that failed */
};

/* What a balancer picks from: the eligible backends of one generation. */
struct balance_set {
    uint32_t n;
    struct backend **b;               /* eligible backends */
    uint32_t *weight;                 /* their effective weights (> 0) */
    uint64_t total_weight;
};

/* Per-pick input. Zero-initialise it: every field has a meaning at 0. */
struct balance_req {
    const struct backend *const *exclude;  /* backends already tried */
    uint32_t nexclude;
    /* The request's key for the hashing algorithms (ring_hash, maglev,
     * ip_hash), from balance_hash_l4() / balance_hash_http(). Without one
     * they pick as p2c does; other algorithms ignore it. */
    uint64_t hash;
    bool has_hash;
    /* Monotonic time for `ewma` (the clock_mono_us() time base); 0 = read
     * the worker's cached clock. Tests set it to move time. */
    uint64_t now_us;
};

struct balance_ops {
    const char *name;
    /* Build algorithm state for a new set; NULL on failure (then pick
     * falls back to the first eligible backend). */
    void *(*build)(const struct balance_set *set);
    void (*destroy)(void *state);
    /* Index into set->b of the chosen backend, or -1 when every eligible
     * backend is excluded. rng is the worker's random state. */
    int (*pick)(void *state, const struct balance_set *set,
                const struct balance_req *req, uint64_t *rng);
};

extern const struct balance_ops balance_round_robin;
extern const struct balance_ops balance_least_conn;
extern const struct balance_ops balance_p2c;
extern const struct balance_ops balance_random;
extern const struct balance_ops balance_ewma;
extern const struct balance_ops balance_ring_hash;
extern const struct balance_ops balance_maglev;
extern const struct balance_ops balance_ip_hash;

const struct balance_ops *balance_ops_for(enum balance_kind kind);

/* Owner: one worker. */
struct balancer {
    const struct balance_ops *ops;
    struct pool *pool;
    uint64_t built_generation;
    bool panic;                       /* the last rebuild was in panic mode */
    bool last_resort;                 /* ... because no backend was eligible at all:
                                         a failed try then means "no backend
                                         available" (503), not a bad gateway */
    struct balance_set set;
    void *state;
    uint64_t rng;
};

/* Pool lifecycle (main thread). Backends start UP at full weight. */
int pool_init(struct pool *p, const struct conf_pool *conf);
void pool_destroy(struct pool *p);
struct backend *pool_find_backend(struct pool *p, const char *name);

static inline bool backend_vacant(const struct backend *b)
{
    return atomic_load_explicit(&b->vacant, memory_order_acquire) != 0;
}

/* Discovery slots (slots.c; main thread). Fill a vacant slot with a
 * backend named NAME at A; it starts DOWN when start_down (its checks must
 * pass first), else UP. NULL when no slot is vacant. Vacate only a slot
 * that no worker can still be using (discovery.c's grace period). */
struct backend *pool_slot_fill(struct pool *p, const char *name, const struct addr *a,
                               uint32_t weight, bool start_down);
void pool_slot_vacate(struct backend *b);

/* Change a backend's state; bumps the generation and logs the change with
 * why. Returns the previous state. */
enum backend_state backend_set_state(struct backend *b, enum backend_state s,
                                     const char *why);
void backend_set_weight(struct backend *b, uint32_t weight);
const char *backend_state_name(enum backend_state s);
bool backend_eligible(const struct backend *b);

/* What real traffic said about b: a failure (connect failure, reset,
 * timeout, 5xx) or a success. Workers call it; outlier detection reads it. */
static inline void backend_report(struct backend *b, bool ok)
{
    if (ok) {
        if (atomic_load_explicit(&b->consecutive_failures, memory_order_relaxed))
            atomic_store_explicit(&b->consecutive_failures, 0, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&b->consecutive_failures, 1, memory_order_relaxed);
    }
}

/* Start b's slow-start ramp (main thread; no-op when the pool has none).
 * An UP backend is SLOW_START until the ramp ends. */
void backend_ramp_start(struct backend *b, uint64_t now_ms);

/* Peak EWMA of a backend's round trip (Finagle, Linkerd): a sample above
 * the estimate replaces it at once; a lower one is blended in with weight
 * 1 - exp(-dt / 10 s), dt being the time since the last update; and the
 * estimate decays towards 0 at that rate when no sample comes, so a backend
 * that was shunned for being slow is tried again after a while. Called by
 * the proxies: http when a response head arrives (rtt from pick to head),
 * tcp when a connect completes. now_us is clock_mono_us(). */
void backend_observe_latency(struct backend *b, uint64_t rtt_us, uint64_t now_us);
/* The estimate as of now_us, in ns; 0 = no sample yet. */
uint64_t backend_latency_ns(const struct backend *b, uint64_t now_us);
#define BACKEND_EWMA_TAU_US 10000000ULL   /* the decay's time constant */

void balancer_init(struct balancer *bl, struct pool *pool, uint64_t seed);
void balancer_destroy(struct balancer *bl);

/* Choose a backend for new work, or NULL when none is eligible (or all
 * eligible ones are excluded). Rebuilds the table first if the pool changed. */
struct backend *balancer_pick(struct balancer *bl, const struct balance_req *req);

/* The request key the hashing algorithms need, computed by the proxies
 * once per request (a retry reuses it). false (nothing to hash: the pool
 * does not hash, or the request lacks the key) leaves *hash alone and the
 * balancer falls back to p2c.
 *
 * ip_hash hashes the client's IP address (never the port; an IPv4-mapped
 * IPv6 address hashes as the IPv4 one); ring_hash and maglev hash what the
 * pool's hash_key names. At L4 only source_ip exists. An empty header,
 * cookie or query value counts as missing, so that requests without a real
 * key do not all pile onto one backend. Keys hash with a fixed seed: every
 * sluice maps a key to the same backend. */
struct h1_request;
bool balance_hash_l4(const struct conf_pool *p, const struct addr *client, uint64_t *hash);
bool balance_hash_http(const struct conf_pool *p, const struct addr *client,
                       const struct h1_request *req, uint64_t *hash);
/* The request key of one kind (name: of header:/cookie:/query:), also for
 * the rate limiter; req may be NULL for source_ip and global. */
bool balance_request_key(enum hash_key_kind kind, const char *name, const struct addr *client,
                         const struct h1_request *req, uint64_t *hash);

/* Helpers for algorithms. */
bool balance_excluded(const struct balance_req *req, const struct backend *b);
uint64_t balance_rand(uint64_t *rng);            /* xorshift64* */
uint32_t balance_rand_below(uint64_t *rng, uint32_t n);

#endif
