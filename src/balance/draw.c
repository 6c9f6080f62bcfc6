/* Weighted random draws in O(1): Walker's alias method with Vose's
 * construction, in integers so that two builds from the same weights are
 * identical and no weight is lost to rounding.
 *
 * Every backend's weight is scaled by n, so that the n slots each hold
 * exactly `total` units. A slot that holds less than total after its own
 * backend's share is topped up from one backend with too much (its alias).
 * A draw picks a slot uniformly and flips a coin in [0, total): below
 * `keep`, the slot's own backend, else its alias. p2c, ewma and random draw
 * their candidates this way; a binary search over prefix sums would cost
 * log2(n) dependent cache misses at 10,000 backends instead of one. */
#include <stdlib.h>

#include "balance/internal.h"

int balance_draw_init(struct balance_draw *d, const struct balance_set *set)
{
    uint32_t n = set->n, nsmall = 0, nlarge = 0;
    uint64_t *scaled = malloc(n * sizeof(*scaled));
    uint32_t *small = malloc(n * sizeof(*small)), *large = malloc(n * sizeof(*large));

    d->n = n;
    d->total = set->total_weight;
    d->slot = malloc(n * sizeof(*d->slot));
    if (!scaled || !small || !large || !d->slot || n == 0 || d->total == 0) {
        free(scaled);
        free(small);
        free(large);
        balance_draw_free(d);
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        scaled[i] = (uint64_t)set->weight[i] * n;
        if (scaled[i] < d->total)
            small[nsmall++] = i;
        else
            large[nlarge++] = i;
    }
    while (nsmall && nlarge) {
        uint32_t s = small[--nsmall], l = large[nlarge - 1];

        d->slot[s].keep = scaled[s];
        d->slot[s].alias = l;
        /* l gives what s lacks; it may become small itself. */
        scaled[l] -= d->total - scaled[s];
        if (scaled[l] < d->total) {
            nlarge--;
            small[nsmall++] = l;
        }
    }
    /* What is left holds exactly total (integers: no rounding residue). */
    while (nlarge) {
        uint32_t l = large[--nlarge];
        d->slot[l].keep = d->total;
        d->slot[l].alias = l;
    }
    while (nsmall) {
        uint32_t s = small[--nsmall];
        d->slot[s].keep = d->total;
        d->slot[s].alias = s;
    }
    free(scaled);
    free(small);
    free(large);
    return 0;
}

void balance_draw_free(struct balance_draw *d)
{
    free(d->slot);
    d->slot = NULL;
    d->n = 0;
}

void *balance_draw_build(const struct balance_set *set)
{
    struct balance_draw *d = malloc(sizeof(*d));

    if (d && balance_draw_init(d, set) < 0) {
        free(d);
        return NULL;
    }
    return d;
}

void balance_draw_destroy(void *state)
{
    struct balance_draw *d = state;

    balance_draw_free(d);
    free(d);
}

uint32_t balance_draw(const struct balance_draw *d, uint64_t *rng)
{
    uint64_t r = balance_rand(rng);
    uint32_t i = balance_reduce(r, d->n);
    /* The low half picks the coin, independent of the high half's slot. */
    uint64_t coin = ((r & 0xffffffffu) * d->total) >> 32;

    return coin < d->slot[i].keep ? i : d->slot[i].alias;
}

int balance_draw_allowed(const struct balance_draw *d, const struct balance_set *set,
                         const struct balance_req *req, int avoid, uint64_t *rng)
{
    for (int tries = 0; tries < 8; tries++) {
        uint32_t i = balance_draw(d, rng);
        if ((int)i != avoid && !balance_excluded(req, set->b[i]))
            return (int)i;
    }
    uint32_t start = balance_rand_below(rng, d->n);
    for (uint32_t k = 0; k < d->n; k++) {
        uint32_t i = start + k < d->n ? start + k : start + k - d->n;
        if ((int)i != avoid && !balance_excluded(req, set->b[i]))
            return (int)i;
    }
    return -1;
}

int balance_draw_two(const struct balance_draw *d, const struct balance_set *set,
                     const struct balance_req *req, uint64_t *rng, int *a, int *b)
{
    *a = balance_draw_allowed(d, set, req, -1, rng);
    if (*a < 0)
        return 0;
    *b = balance_draw_allowed(d, set, req, *a, rng);
    return *b < 0 ? 1 : 2;
}
