/* Consistent hashing on a ring with virtual nodes (Karger et al.; ketama;
 * Envoy's ring_hash). Each backend owns points on a 64-bit circle, as many
 * as its share of the weight; a key goes to the owner of the first point at
 * or after the key's hash, wrapping around.
 *
 * Point j of a backend is xxHash3 of (xxHash3(name), j), with fixed seeds:
 * it depends on the backend's name and nothing else (not its address, not
 * its position in the config, not the process), so every sluice builds the
 * same ring, and a backend that joins or leaves moves only the keys of the
 * arcs it gains or loses. A weight change only adds or removes a backend's
 * last points. (Not xxHash3(name) with seed + j: for inputs of 1 to 3
 * bytes xxHash3 only XORs the seed in before its final mix, so short names
 * like "b1" and "b10" then share hundreds of points.)
 *
 * Size: RING_POINTS_EACH points per backend at equal weights, at least
 * RING_POINTS_MIN in all, at most RING_POINTS_MAX: 1,024 points each up to
 * 256 backends (a backend's share is then within about ±3% of its weight),
 * fewer each beyond (26 at 10,000 backends: ±20%; Maglev does better
 * there). 16 bytes a point with the index below, per worker.
 *
 * Lookup: rather than a binary search over up to 2^18 points (18 dependent
 * cache misses), an index of 2^B buckets (2^B <= points) by the top B bits
 * of the hash gives the first point of the key's bucket, and a short scan
 * (about one point) finishes. The build sorts in linear time (qsort of
 * 262,144 points took 65 ms, and a slow-start weight ramp rebuilds). */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "balance/internal.h"

#define RING_POINTS_EACH 1024u
#define RING_POINTS_MIN 1024u
#define RING_POINTS_MAX (1u << 18)

struct ring_state {
    uint32_t npoints;
    uint32_t factor_milli;     /* bounded load, 0 = off */
    uint64_t *hash;            /* ascending */
    uint32_t *owner;           /* set index of each point's backend */
    uint32_t bits;             /* B: the index has 2^B buckets */
    uint32_t *bucket;          /* 2^B + 1 entries: first point of each bucket */
    void *fallback;            /* p2c, for requests without a key */
};

struct ring_point {
    uint64_t hash;
    uint32_t owner;
    uint32_t replica;
};

/* Point j of the backend whose name hashes to name_hash. */
static uint64_t ring_point_hash(uint64_t name_hash, uint32_t j)
{
    unsigned char buf[12];

    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(name_hash >> (8 * i));     /* little-endian: */
    for (int i = 0; i < 4; i++)                             /* same everywhere */
        buf[8 + i] = (unsigned char)(j >> (8 * i));
    return XXH3_64bits_withSeed(buf, sizeof(buf), BALANCE_SEED_RING);
}

/* Full order of the points: by hash, and equal hashes (astronomically
 * rare) by backend name, then replica, so that the order does not depend
 * on the config's. */
static bool ring_before(const struct balance_set *set, const struct ring_point *a,
                        const struct ring_point *b)
{
    int c;

    if (a->hash != b->hash)
        return a->hash < b->hash;
    if ((c = strcmp(set->b[a->owner]->conf->name, set->b[b->owner]->conf->name)) != 0)
        return c < 0;
    return a->replica < b->replica;
}

/* Sorts pts (tmp: scratch of the same size) and fills the bucket index,
 * in linear time. An LSD radix sort on the top 33 bits, 11 bits a pass:
 * 2,048 output streams keep the scatter within the caches (a counting sort
 * straight into 2^18 buckets missed the cache on every point: 25 ms at
 * 262,144 points). Points that share their top 33 bits (a handful in a
 * full ring) are then put in full order by an insertion sort, which costs
 * one comparison per point on a nearly sorted array. */
static void ring_sort(struct ring_state *st, const struct balance_set *set,
                      struct ring_point *pts, struct ring_point *tmp)
{
    uint32_t n = st->npoints, shift = 64 - st->bits;

    for (int pass = 0; pass < 3; pass++) {
        int at = 31 + 11 * pass;
        uint32_t count[2049] = {0};

        for (uint32_t k = 0; k < n; k++)
            count[((pts[k].hash >> at) & 2047) + 1]++;
        for (int d = 0; d < 2048; d++)
            count[d + 1] += count[d];
        for (uint32_t k = 0; k < n; k++)
            tmp[count[(pts[k].hash >> at) & 2047]++] = pts[k];
        struct ring_point *swap = pts;
        pts = tmp;
        tmp = swap;
    }
    /* Three passes: the sorted points are in the caller's tmp, now pts. */
    for (uint32_t k = 1; k < n; k++) {
        struct ring_point p = pts[k];
        uint32_t j = k;

        while (j > 0 && ring_before(set, &p, &pts[j - 1])) {
            pts[j] = pts[j - 1];
            j--;
        }
        pts[j] = p;
    }
    for (uint32_t k = 0; k < n; k++) {
        st->hash[k] = pts[k].hash;
        st->owner[k] = pts[k].owner;
    }
    /* bucket[b]: the first point whose top B bits are >= b. */
    for (uint64_t b = 0, k = 0; b <= (1ull << st->bits); b++) {
        while (k < n && (st->hash[k] >> shift) < b)
            k++;
        st->bucket[b] = (uint32_t)k;
    }
}

static void ring_destroy(void *state)
{
    struct ring_state *st = state;

    if (!st)
        return;
    if (st->fallback)
        balance_p2c.destroy(st->fallback);
    free(st->hash);
    free(st->owner);
    free(st->bucket);
    free(st);
}

/* Points per backend: its rounded share of target points, at least one,
 * where a share is its weight over ref_weight. Returns the sum. */
static uint64_t ring_counts(const struct balance_set *set, uint64_t target,
                            uint64_t ref_weight, uint32_t *count)
{
    uint64_t total = 0;

    for (uint32_t i = 0; i < set->n; i++) {
        uint64_t c = (target * set->weight[i] + ref_weight / 2) / ref_weight;
        count[i] = c ? (uint32_t)c : 1;
        total += count[i];
    }
    return total;
}

static void *ring_build(const struct balance_set *set)
{
    struct ring_state *st = calloc(1, sizeof(*st));
    const struct pool *p = set->b[0]->pool;
    uint32_t *count = calloc(set->n, sizeof(*count));
    struct ring_point *pts = NULL, *tmp = NULL;
    uint64_t target, total, ref_n = 0, ref_weight = 0;

    if (!st || !count)
        goto fail;
    /* The point counts are relative to the pool as configured (every
     * backend it lists, at its configured weight, scaled as the set's are),
     * not to the eligible set: a backend that goes DOWN, drains, or whose
     * weight changes (operator, slow start) then keeps every other
     * backend's points, so only its own keys move. Relative to the set,
     * every other backend's count changed with the total weight, and their
     * lost or gained last points moved keys between them. */
    for (uint32_t i = 0; i < p->nbackends; i++) {
        if (backend_vacant(&p->backends[i]))
            continue;
        ref_n++;
        ref_weight += (uint64_t)p->backends[i].conf->weight * 100u;
    }
    target = (uint64_t)RING_POINTS_EACH * ref_n;
    if (target < RING_POINTS_MIN)
        target = RING_POINTS_MIN;
    if (target > RING_POINTS_MAX)
        target = RING_POINTS_MAX;
    /* Weights raised far above the configured ones would pass the size
     * cap: share the cap by the set's weights then. */
    total = ref_weight ? ring_counts(set, target, ref_weight, count) : 0;
    if (!total || total > RING_POINTS_MAX)
        total = ring_counts(set, target, set->total_weight, count);
    st->npoints = (uint32_t)total;
    for (st->bits = 1; (2ull << st->bits) <= total; st->bits++)
        ;
    pts = malloc(total * sizeof(*pts));
    tmp = malloc(total * sizeof(*tmp));
    st->hash = malloc(total * sizeof(*st->hash));
    st->owner = malloc(total * sizeof(*st->owner));
    st->bucket = malloc(((1ull << st->bits) + 1) * sizeof(*st->bucket));
    st->fallback = balance_p2c.build(set);
    if (!pts || !tmp || !st->hash || !st->owner || !st->bucket || !st->fallback)
        goto fail;
    total = 0;
    for (uint32_t i = 0; i < set->n; i++) {
        const char *name = set->b[i]->conf->name;
        uint64_t name_hash = XXH3_64bits_withSeed(name, strlen(name), BALANCE_SEED_RING);

        for (uint32_t j = 0; j < count[i]; j++)
            pts[total++] = (struct ring_point){
                .hash = ring_point_hash(name_hash, j), .owner = i, .replica = j,
            };
    }
    ring_sort(st, set, pts, tmp);
    st->factor_milli = balance_factor_milli(set);
    free(pts);
    free(tmp);
    free(count);
    return st;
fail:
    free(pts);
    free(tmp);
    free(count);
    ring_destroy(st);
    return NULL;
}

/* The first point at or after h, wrapping. Every point of the buckets
 * before h's is below h and every point of the buckets after is above, so
 * the answer is in h's bucket or is the first point after it. */
static uint32_t ring_find(const struct ring_state *st, uint64_t h)
{
    uint64_t b = h >> (64 - st->bits);
    uint32_t k = st->bucket[b], end = st->bucket[b + 1];

    while (k < end && st->hash[k] < h)
        k++;
    return k == st->npoints ? 0 : k;
}

static int ring_pick(void *state, const struct balance_set *set,
                     const struct balance_req *req, uint64_t *rng)
{
    struct ring_state *st = state;
    struct balance_walk w;
    uint32_t k, last = UINT32_MAX;

    if (!req || !req->has_hash)
        return balance_p2c.pick(st->fallback, set, req, rng);
    k = ring_find(st, req->hash);
    /* The common case: no exclusion, no bound. */
    if (req->nexclude == 0 && !st->factor_milli)
        return (int)st->owner[k];
    if (balance_all_excluded(set, req))
        return -1;
    balance_walk_init(&w, set, req, st->factor_milli);
    for (uint32_t step = 0; step < st->npoints; step++) {
        uint32_t i = st->owner[k];

        /* Neighbouring points of one backend: one look is enough. */
        if (i != last && balance_walk_takes(&w, i))
            return (int)i;
        last = i;
        k = k + 1 == st->npoints ? 0 : k + 1;
    }
    return w.fallback;
}

const uint64_t *balance_ring_points(const void *state, const uint32_t **owner, uint32_t *n)
{
    const struct ring_state *st = state;

    *owner = st->owner;
    *n = st->npoints;
    return st->hash;
}

const struct balance_ops balance_ring_hash = {
    .name = "ring_hash",
    .build = ring_build,
    .destroy = ring_destroy,
    .pick = ring_pick,
};
