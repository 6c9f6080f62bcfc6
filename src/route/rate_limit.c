/* Rate limiting: the generic cell rate algorithm (GCRA, the token bucket
 * written as one timestamp per key) over a fixed-size table that every
 * worker shares (route.h has the contract).
 *
 * A key's state is its "theoretical arrival time" (TAT): when the bucket
 * would be full again. A request at time t is allowed when
 * max(TAT, t) - t <= burst * T (T = 1 / rate), and then TAT becomes
 * max(TAT, t) + T. A key whose TAT has passed is in the same state as a key
 * never seen, which gives the table its eviction rule for free: any slot
 * whose TAT is in the past is empty.
 *
 * The table is an array of 64-byte buckets, each a small spin lock and
 * three slots; a key lives in the bucket its hash picks. When a bucket's
 * three slots all hold keys still limited, the one that is freest soonest
 * is replaced, so beyond max_keys busy keys the limit errs towards letting
 * requests through (counted in `evicted`), never towards refusing them. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "route/route.h"

#define RL_SLOTS 3
#define CHARGE_AHEAD_NS 1000000000ull

struct rl_slot {
    uint64_t key;                /* hash | 1; 0 = never used */
    uint64_t tat_ns;
};

struct rl_bucket {
    _Atomic uint32_t lock;
    uint32_t pad;
    struct rl_slot slot[RL_SLOTS];
    uint64_t pad2;
} __attribute__((aligned(64)));

struct rate_limiter {
    const struct conf_rate_limit *conf;
    uint64_t interval_ns;
    uint64_t tolerance_ns;       /* burst * interval */
    uint64_t mask;               /* buckets - 1 */
    struct rl_bucket *buckets;
    _Atomic uint64_t limited;    /* requests or connections refused */
    _Atomic uint64_t evicted;    /* keys dropped while still limited */
};

struct rate_limiter *rate_limiter_new(const struct conf_rate_limit *c)
{
    struct rate_limiter *rl = calloc(1, sizeof(*rl));
    uint64_t n = 1;

    if (!rl)
        return NULL;
    while (n * RL_SLOTS < c->max_keys)
        n <<= 1;
    rl->buckets = aligned_alloc(64, n * sizeof(*rl->buckets));
    if (!rl->buckets) {
        free(rl);
        return NULL;
    }
    memset(rl->buckets, 0, n * sizeof(*rl->buckets));
    rl->conf = c;
    rl->interval_ns = c->interval_ns ? c->interval_ns : 1;
    rl->tolerance_ns = (uint64_t)c->burst * rl->interval_ns;
    rl->mask = n - 1;
    atomic_init(&rl->limited, 0);
    atomic_init(&rl->evicted, 0);
    return rl;
}

void rate_limiter_free(struct rate_limiter *rl)
{
    if (!rl)
        return;
    free(rl->buckets);
    free(rl);
}

static void bucket_lock(struct rl_bucket *b)
{
    for (;;) {
        if (!atomic_exchange_explicit(&b->lock, 1, memory_order_acquire))
            return;
        while (atomic_load_explicit(&b->lock, memory_order_relaxed)) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
}

static void bucket_unlock(struct rl_bucket *b)
{
    atomic_store_explicit(&b->lock, 0, memory_order_release);
}

/* The bucket of hash, locked, and the key's slot in it (a new one if need
 * be). */
static struct rl_slot *slot_lock(struct rate_limiter *rl, uint64_t hash, uint64_t now_ns,
                                 struct rl_bucket **bp)
{
    /* Both halves of the hash pick the bucket; all of it names the key. */
    struct rl_bucket *b = &rl->buckets[(hash >> 32 ^ hash) & rl->mask];
    uint64_t key = hash | 1;
    struct rl_slot *s = NULL, *oldest = NULL;

    bucket_lock(b);
    *bp = b;
    for (int i = 0; i < RL_SLOTS; i++) {
        struct rl_slot *x = &b->slot[i];

        if (x->key == key)
            return x;
        if (!oldest || x->tat_ns < oldest->tat_ns)
            oldest = x;
    }
    /* A slot whose time has passed is free; else the freest one goes. */
    s = oldest;
    if (s->key && s->tat_ns > now_ns)
        atomic_fetch_add_explicit(&rl->evicted, 1, memory_order_relaxed);
    s->key = key;
    s->tat_ns = 0;
    return s;
}

uint64_t rate_limiter_take(struct rate_limiter *rl, uint64_t hash, uint64_t now_ns)
{
    struct rl_bucket *b;
    struct rl_slot *s = slot_lock(rl, hash, now_ns, &b);
    uint64_t tat, wait = 0;

    tat = s->tat_ns > now_ns ? s->tat_ns : now_ns;
    if (tat - now_ns > rl->tolerance_ns)
        wait = tat - now_ns - rl->tolerance_ns;     /* when one more would fit */
    else
        s->tat_ns = tat + rl->interval_ns;
    bucket_unlock(b);
    if (wait)
        atomic_fetch_add_explicit(&rl->limited, 1, memory_order_relaxed);
    return wait;
}

void rate_limiter_charge(struct rate_limiter *rl, uint64_t hash, uint32_t count, uint64_t now_ns)
{
    struct rl_bucket *b;
    struct rl_slot *s = slot_lock(rl, hash, now_ns, &b);
    uint64_t tat = s->tat_ns > now_ns ? s->tat_ns : now_ns;
    /* A second past a full bucket (or one interval, for rates below 1/s):
     * room for everything peers let through between two updates, and no
     * more, so a misbehaving peer cannot lock a key out here for long. */
    uint64_t cap = now_ns + rl->tolerance_ns +
                   (rl->interval_ns > CHARGE_AHEAD_NS ? rl->interval_ns : CHARGE_AHEAD_NS);

    tat += (uint64_t)count * rl->interval_ns;
    s->tat_ns = tat < cap ? tat : cap;
    bucket_unlock(b);
}

const struct conf_rate_limit *rate_limiter_conf(const struct rate_limiter *rl)
{
    return rl ? rl->conf : NULL;
}

uint64_t rate_limiter_limited(const struct rate_limiter *rl)
{
    return atomic_load_explicit(&rl->limited, memory_order_relaxed);
}

uint64_t rate_limiter_evicted(const struct rate_limiter *rl)
{
    return atomic_load_explicit(&rl->evicted, memory_order_relaxed);
}
