/* Shared inside src/balance/ only: the pieces several algorithms are built
 * from. balance.h is the folder's face; nothing outside includes this. */
#ifndef SLUICE_BALANCE_INTERNAL_H
#define SLUICE_BALANCE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "balance/balance.h"

/* Fixed xxHash seeds. They are part of sluice's behaviour: two sluice
 * processes (active-active, or old and new across an upgrade) must place
 * every key and every backend at the same point, so nothing here may be
 * random per process. One seed per use keeps the uses independent. */
#define BALANCE_SEED_KEY      0x736c756963654b59ULL   /* request keys */
#define BALANCE_SEED_RING     0x736c756963655247ULL   /* ring points */
#define BALANCE_SEED_OFFSET   0x736c75696365304fULL   /* maglev permutation offset */
#define BALANCE_SEED_SKIP     0x736c756963655350ULL   /* maglev permutation skip */

/* ---- discovery slots (slots.c) ----
 * A discovery pool's backends are conf->discovery.max_backends slots, all
 * vacant at first. */
int pool_slots_init(struct pool *p);
/* backends[0..conf->nbackends): the config's own, UP at their weights. */
void pool_listed_init(struct pool *p);
void pool_slots_free(struct pool *p);

/* ---- weighted draws (draw.c) ----
 * Walker's alias method (Vose's construction, in integers): O(1) per draw
 * whatever the number of backends, exactly proportional to the weights
 * (up to the 32-bit coin). Built once per set. */
struct balance_draw_slot {
    uint64_t keep;       /* this slot keeps its own index when coin < keep */
    uint32_t alias;      /* else it gives this one */
};

struct balance_draw {
    uint32_t n;
    uint64_t total;      /* sum of weights: the coin's range */
    struct balance_draw_slot *slot;
};

int balance_draw_init(struct balance_draw *d, const struct balance_set *set);
void balance_draw_free(struct balance_draw *d);
/* Two distinct allowed candidates for the power-of-two-choices pickers
 * (p2c, ewma): 2 with *a and *b set, 1 when only *a is allowed, 0 when
 * nothing is. */
int balance_draw_two(const struct balance_draw *d, const struct balance_set *set,
                     const struct balance_req *req, uint64_t *rng, int *a, int *b);
/* build/destroy of the algorithms whose state is just a draw table
 * (random, p2c, ewma). */
void *balance_draw_build(const struct balance_set *set);
void balance_draw_destroy(void *state);
/* An index into the set, with probability weight / total. */
uint32_t balance_draw(const struct balance_draw *d, uint64_t *rng);
/* A weighted draw that avoids excluded backends and index `avoid` (-1:
 * none): a few random tries, then a scan from a random place so that a
 * heavily excluded set still finds its last candidates. -1 if none is left. */
int balance_draw_allowed(const struct balance_draw *d, const struct balance_set *set,
                         const struct balance_req *req, int avoid, uint64_t *rng);

/* ---- the walk of the hashing algorithms (hash_walk.c) ----
 * A hashing algorithm looks the key up in its ring or table and gets a
 * position; the walk takes the backend there unless it is excluded or
 * (bounded load) full, in which case it moves to the next position, and so
 * on: the next distinct backend on the ring, the next entry of the table. */
struct balance_walk {
    const struct balance_set *set;
    const struct balance_req *req;
    uint32_t factor_milli;  /* bounded load; 0 = none */
    uint64_t num, den;   /* backend i is full when active_i >= ceil(num *
                            w_i / den); den == 0: not summed yet */
    int fallback;        /* first backend seen that only the bound refused */
};

/* factor_milli: hash_balance_factor × 1000, 0 = off. With a bound, the
 * actives of the set are summed (O(n)) at the first busy backend met. */
void balance_walk_init(struct balance_walk *w, const struct balance_set *set,
                       const struct balance_req *req, uint32_t factor_milli);
/* Whether the exclusion set covers the whole set, so that a walk would
 * go round the whole ring or table for nothing. Cheap: with fewer
 * (distinct) exclusions than backends, some backend must be left. */
bool balance_all_excluded(const struct balance_set *set, const struct balance_req *req);
/* Whether the walk stops at set index i. */
bool balance_walk_takes(struct balance_walk *w, uint32_t i);
/* The pool's hash_balance_factor in thousandths, 0 = off. */
uint32_t balance_factor_milli(const struct balance_set *set);

/* ---- maglev, also behind ip_hash (maglev.c) ---- */
void *balance_maglev_build(const struct balance_set *set);
void balance_maglev_destroy(void *state);
int balance_maglev_pick(void *state, const struct balance_set *set,
                        const struct balance_req *req, uint64_t *rng);

/* The prime table size maglev uses for n backends (65,537 up to 655). */
uint32_t balance_maglev_size(uint32_t n);
/* Read access for tests: the table's entries (set indexes), size in *m. */
const uint32_t *balance_maglev_table(const void *state, uint32_t *m);
/* The ring's points, for tests: hashes and set indexes, count in *n. */
const uint64_t *balance_ring_points(const void *state, const uint32_t **owner, uint32_t *n);

/* Multiply-shift reduction of a 64-bit hash to [0, n): uniform, and much
 * cheaper than a division. */
static inline uint32_t balance_reduce(uint64_t hash, uint32_t n)
{
    return (uint32_t)(((unsigned __int128)hash * n) >> 64);
}

#endif
