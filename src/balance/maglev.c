/* Maglev hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
 * Network Load Balancer", NSDI 2016, §3.4): a lookup table of prime size M
 * that backends fill by taking turns, each claiming the next free entry of
 * its own permutation of 0..M-1. A key goes to table[hash mod M]: one
 * memory access per pick, and every backend gets M/N entries give or take
 * one, so shares are even (far more even than a ring's arcs). When a
 * backend joins or leaves, the other backends' permutations are unchanged,
 * so few of their entries move (the paper measures about 1%).
 *
 * The permutation of a backend comes from two xxHash3s of its name with
 * fixed seeds: offset = h1 mod M, skip = h2 mod (M - 1) + 1, entry j =
 * (offset + j × skip) mod M (M prime: every skip visits every entry). The
 * backends take their turns in the order of their names, not the config's,
 * so the table depends only on the names and weights: every sluice builds
 * the same one.
 *
 * Weights (as Envoy's weighted Maglev): a backend of weight w takes a turn
 * in w/w_max of the rounds, so its entries are in proportion to its weight.
 * In integers: it takes round r when r × w reaches its next target, which
 * grows by w_max per turn.
 *
 * Size: 65,537 entries (a prime) up to 655 backends, so each backend has at
 * least 100 entries, which the paper finds keeps shares within a few
 * percent; a larger prime beyond. Crossing a size remaps most keys, like
 * building a new table. The table holds set indexes (4 bytes an entry, per
 * worker): 256 KiB at 65,537. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "balance/internal.h"

#define MAGLEV_EMPTY UINT32_MAX

struct maglev_state {
    uint32_t m;
    uint32_t factor_milli;     /* bounded load, 0 = off */
    uint32_t *table;           /* set indexes */
    void *fallback;            /* p2c, for requests without a key */
};

/* One backend's progress through its permutation while filling. */
struct maglev_fill {
    const char *name;
    uint32_t index;            /* in the set */
    uint32_t pos, skip;
    uint64_t target;
};

uint32_t balance_maglev_size(uint32_t n)
{
    static const uint32_t primes[] = { 65537, 262147, 1048583 };

    for (size_t i = 0; i < sizeof(primes) / sizeof(primes[0]); i++)
        if ((uint64_t)n * 100 <= primes[i])
            return primes[i];
    return primes[sizeof(primes) / sizeof(primes[0]) - 1];
}

/* Names are unique in a pool, so the order is total. */
static int maglev_name_cmp(const void *x, const void *y)
{
    const struct maglev_fill *a = x, *b = y;

    return strcmp(a->name, b->name);
}

void balance_maglev_destroy(void *state)
{
    struct maglev_state *st = state;

    if (!st)
        return;
    if (st->fallback)
        balance_p2c.destroy(st->fallback);
    free(st->table);
    free(st);
}

void *balance_maglev_build(const struct balance_set *set)
{
    struct maglev_state *st = calloc(1, sizeof(*st));
    struct maglev_fill *f = calloc(set->n, sizeof(*f));
    uint64_t wmax = 0;
    uint32_t m, filled = 0;

    if (!st || !f)
        goto fail;
    st->m = m = balance_maglev_size(set->n);
    st->table = malloc(m * sizeof(*st->table));
    st->fallback = balance_p2c.build(set);
    if (!st->table || !st->fallback)
        goto fail;
    for (uint32_t i = 0; i < set->n; i++) {
        f[i].index = i;
        f[i].name = set->b[i]->conf->name;
        if (set->weight[i] > wmax)
            wmax = set->weight[i];
    }
    qsort(f, set->n, sizeof(*f), maglev_name_cmp);
    for (uint32_t k = 0; k < set->n; k++) {
        size_t len = strlen(f[k].name);

        f[k].pos = (uint32_t)(XXH3_64bits_withSeed(f[k].name, len, BALANCE_SEED_OFFSET) % m);
        f[k].skip = (uint32_t)(XXH3_64bits_withSeed(f[k].name, len, BALANCE_SEED_SKIP) % (m - 1)) + 1;
        f[k].target = wmax;
    }
    memset(st->table, 0xff, m * sizeof(*st->table));
    for (uint64_t round = 1; filled < m; round++) {
        for (uint32_t k = 0; k < set->n && filled < m; k++) {
            struct maglev_fill *e = &f[k];

            if (round * set->weight[e->index] < e->target)
                continue;
            e->target += wmax;
            while (st->table[e->pos] != MAGLEV_EMPTY)
                e->pos = e->pos + e->skip >= m ? e->pos + e->skip - m : e->pos + e->skip;
            st->table[e->pos] = e->index;
            filled++;
        }
    }
    st->factor_milli = balance_factor_milli(set);
    free(f);
    return st;
fail:
    free(f);
    balance_maglev_destroy(st);
    return NULL;
}

int balance_maglev_pick(void *state, const struct balance_set *set,
                        const struct balance_req *req, uint64_t *rng)
{
    struct maglev_state *st = state;
    struct balance_walk w;
    uint32_t k, last = UINT32_MAX;

    if (!req || !req->has_hash)
        return balance_p2c.pick(st->fallback, set, req, rng);
    k = balance_reduce(req->hash, st->m);
    /* The common case, one load: no exclusion, no bound. */
    if (req->nexclude == 0 && !st->factor_milli)
        return (int)st->table[k];
    if (balance_all_excluded(set, req))
        return -1;
    balance_walk_init(&w, set, req, st->factor_milli);
    for (uint32_t step = 0; step < st->m; step++) {
        uint32_t i = st->table[k];

        if (i != last && balance_walk_takes(&w, i))
            return (int)i;
        last = i;
        k = k + 1 == st->m ? 0 : k + 1;
    }
    return w.fallback;
}

const uint32_t *balance_maglev_table(const void *state, uint32_t *m)
{
    const struct maglev_state *st = state;

    *m = st->m;
    return st->table;
}

const struct balance_ops balance_maglev = {
    .name = "maglev",
    .build = balance_maglev_build,
    .destroy = balance_maglev_destroy,
    .pick = balance_maglev_pick,
};
