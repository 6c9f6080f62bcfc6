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
    _Atomic uint64_t checks_passed;   /* active health checks */
    _Atomic uint64_t checks_failed;
};

/* Owner: the runtime (main.c); lives as long as sluice runs. */
struct pool {
    const struct conf_pool *conf;
    struct backend *backends;
    uint32_t nbackends;
    _Atomic uint64_t generation;      /* bumped on any state or weight change */
};

/* What a balancer picks from: the eligible backends of one generation. */
struct balance_set {
    uint32_t n;
    struct backend **b;               /* eligible backends */
    uint32_t *weight;                 /* their effective weights (> 0) */
    uint64_t total_weight;
};

/* Per-pick input. */
struct balance_req {
    const struct backend *const *exclude;  /* backends already tried */
    uint32_t nexclude;
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

const struct balance_ops *balance_ops_for(enum balance_kind kind);

/* Owner: one worker. */
struct balancer {
    const struct balance_ops *ops;
    struct pool *pool;
    uint64_t built_generation;
    struct balance_set set;
    void *state;
    uint64_t rng;
};

/* Pool lifecycle (main thread). Backends start UP at full weight. */
int pool_init(struct pool *p, const struct conf_pool *conf);
void pool_destroy(struct pool *p);
struct backend *pool_find_backend(struct pool *p, const char *name);

/* Change a backend's state; bumps the generation and logs the change with
 * why. Returns the previous state. */
enum backend_state backend_set_state(struct backend *b, enum backend_state s,
                                     const char *why);
void backend_set_weight(struct backend *b, uint32_t weight);
const char *backend_state_name(enum backend_state s);
bool backend_eligible(const struct backend *b);

void balancer_init(struct balancer *bl, struct pool *pool, uint64_t seed);
void balancer_destroy(struct balancer *bl);

/* Choose a backend for new work, or NULL when none is eligible (or all
 * eligible ones are excluded). Rebuilds the table first if the pool changed. */
struct backend *balancer_pick(struct balancer *bl, const struct balance_req *req);

/* Helpers for algorithms. */
bool balance_excluded(const struct balance_req *req, const struct backend *b);
uint64_t balance_rand(uint64_t *rng);            /* xorshift64* */
uint32_t balance_rand_below(uint64_t *rng, uint32_t n);

#endif
