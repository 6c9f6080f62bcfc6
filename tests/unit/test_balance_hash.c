/* The hashing balancers (ring_hash, maglev, ip_hash) and their keys: shares
 * follow weights; a backend joining or leaving moves few keys; bounded load
 * holds; builds are identical whatever the process or the config order;
 * exclusion walks to the next backend; no key falls back to p2c; and the
 * key helpers hash what hash_key names. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <xxhash.h>

#include "balance/balance.h"
#include "balance/internal.h"
#include "proto/http1.h"
#include "test.h"

#define MAXB 64
#define KEYS 100000

/* A pool of n backends named b0.. (or by names[]) with the given weights.
 * Everything it allocates lives in the fixture. */
struct fixture {
    struct conf_backend cb[MAXB];
    struct conf_pool cp;
    char names[MAXB][16];
    struct pool p;
};

static void fixture_init(struct fixture *f, enum balance_kind kind, const uint32_t *weights,
                         int n, const int *name_of)
{
    memset(f, 0, sizeof(*f));
    f->cp.name = "p";
    f->cp.balance = kind;
    f->cp.backends = f->cb;
    f->cp.nbackends = (size_t)n;
    for (int i = 0; i < n; i++) {
        snprintf(f->names[i], sizeof(f->names[i]), "b%d", name_of ? name_of[i] : i);
        f->cb[i].name = f->names[i];
        f->cb[i].weight = weights ? weights[i] : 1;
    }
    CHECK_EQ_INT(pool_init(&f->p, &f->cp), 0);
}

/* Key k's hash: any good 64-bit mix will do; these stand for client keys. */
static uint64_t key_hash(uint64_t k)
{
    return XXH3_64bits_withSeed(&k, sizeof(k), 12345);
}

static struct backend *pick_key(struct balancer *bl, uint64_t k)
{
    struct balance_req req = {.hash = key_hash(k), .has_hash = true};

    return balancer_pick(bl, &req);
}

/* Fills map[k] with the index of key k's backend in the pool (-1: none). */
static void key_map(struct balancer *bl, struct pool *p, int *map)
{
    for (int k = 0; k < KEYS; k++) {
        struct backend *b = pick_key(bl, (uint64_t)k);
        map[k] = b ? (int)(b - p->backends) : -1;
    }
}

/* Shares over 100,000 random keys follow the weights. Maglev's table is
 * exact to an entry, so only the sampling noise of 100k keys is left (3σ ≈
 * 4% of a 5% share); a ring's arcs vary more (about ±3% at 1,024 points a
 * backend), so its bound is wider. */
static void test_shares(enum balance_kind kind, double rel_bound)
{
    static const uint32_t w[10] = {1, 1, 1, 1, 2, 2, 2, 3, 3, 4};
    struct fixture *f = malloc(sizeof(*f));
    struct balancer bl;
    int counts[10] = {0};

    fixture_init(f, kind, w, 10, NULL);
    balancer_init(&bl, &f->p, 1);
    for (int k = 0; k < KEYS; k++)
        counts[pick_key(&bl, (uint64_t)k) - f->p.backends]++;
    for (int i = 0; i < 10; i++) {
        double expect = KEYS * w[i] / 20.0;
        CHECK(fabs(counts[i] - expect) <= rel_bound * expect);
        if (fabs(counts[i] - expect) > rel_bound * expect)
            fprintf(stderr, "  %s b%d: %d keys, expected %.0f ± %.0f%%\n",
                    balance_ops_for(kind)->name, i, counts[i], expect, rel_bound * 100);
    }
    balancer_destroy(&bl);
    pool_destroy(&f->p);
    free(f);
}

/* An 11th backend joins 10: at most 1/11 + 2% of the keys move (all of
 * them to the newcomer, for a ring). One of 10 leaves: the ring moves only
 * its keys; Maglev moves under 1% of the others'. */
static void test_join_leave(enum balance_kind kind)
{
    struct fixture *f = malloc(sizeof(*f));
    int *m10 = malloc(KEYS * sizeof(int)), *m11 = malloc(KEYS * sizeof(int));
    int *m9 = malloc(KEYS * sizeof(int));
    struct balancer bl;
    int moved = 0, moved_elsewhere = 0, others = 0, moved_others = 0, gone_used = 0;

    fixture_init(f, kind, NULL, 11, NULL);
    backend_set_state(&f->p.backends[10], BACKEND_DOWN, "test: not joined yet");
    balancer_init(&bl, &f->p, 1);
    key_map(&bl, &f->p, m10);
    backend_set_state(&f->p.backends[10], BACKEND_UP, "test: joins");
    key_map(&bl, &f->p, m11);
    for (int k = 0; k < KEYS; k++) {
        if (m10[k] != m11[k]) {
            moved++;
            if (m11[k] != 10)
                moved_elsewhere++;
        }
    }
    CHECK(moved <= KEYS / 11 + KEYS / 50);
    if (kind == BALANCE_RING_HASH)
        CHECK_EQ_INT(moved_elsewhere, 0);
    fprintf(stderr, "  %s: join 10 -> 11 moved %.2f%% of keys (bound %.2f%%)\n",
            balance_ops_for(kind)->name, 100.0 * moved / KEYS, 100.0 / 11 + 2);

    /* Back to the 10, then b3 leaves them. */
    backend_set_state(&f->p.backends[10], BACKEND_DOWN, "test: gone again");
    backend_set_state(&f->p.backends[3], BACKEND_DOWN, "test: leaves");
    key_map(&bl, &f->p, m9);
    for (int k = 0; k < KEYS; k++) {
        gone_used += m9[k] == 3;
        if (m10[k] == 3)
            continue;
        others++;
        if (m9[k] != m10[k])
            moved_others++;
    }
    CHECK_EQ_INT(gone_used, 0);
    if (kind == BALANCE_RING_HASH)
        CHECK_EQ_INT(moved_others, 0);
    else
        CHECK(moved_others * 100 < others);
    fprintf(stderr, "  %s: leave 10 -> 9 moved %.3f%% of the other backends' keys\n",
            balance_ops_for(kind)->name, 100.0 * moved_others / others);
    balancer_destroy(&bl);
    pool_destroy(&f->p);
    free(m9);
    free(m10);
    free(m11);
    free(f);
}

/* Weighted pools: a backend that leaves (DOWN), or whose weight changes (an
 * operator, a slow-start ramp), moves only keys to or from itself on a
 * ring; on Maglev few others move. */
static void test_weighted_stability(enum balance_kind kind)
{
    static const uint32_t w[10] = {1, 1, 1, 1, 2, 2, 2, 3, 3, 4};
    struct fixture *f = malloc(sizeof(*f));
    int *before = malloc(KEYS * sizeof(int)), *after = malloc(KEYS * sizeof(int));
    struct balancer bl;
    int others = 0, moved_leave = 0, moved_weight = 0;

    fixture_init(f, kind, w, 10, NULL);
    balancer_init(&bl, &f->p, 1);
    key_map(&bl, &f->p, before);
    backend_set_state(&f->p.backends[9], BACKEND_DOWN, "test: leaves");
    key_map(&bl, &f->p, after);
    for (int k = 0; k < KEYS; k++) {
        if (before[k] == 9)
            continue;
        others++;
        moved_leave += after[k] != before[k];
    }
    backend_set_state(&f->p.backends[9], BACKEND_UP, "test: back");
    backend_set_weight(&f->p.backends[0], 3);
    key_map(&bl, &f->p, after);
    for (int k = 0; k < KEYS; k++)
        moved_weight += after[k] != before[k] && after[k] != 0 && before[k] != 0;
    fprintf(stderr, "  %s weighted: leave moved %.3f%% of the others' keys, "
            "a weight change moved %.3f%% between the others\n", balance_ops_for(kind)->name,
            100.0 * moved_leave / others, 100.0 * moved_weight / KEYS);
    if (kind == BALANCE_RING_HASH) {
        CHECK_EQ_INT(moved_leave, 0);
        CHECK_EQ_INT(moved_weight, 0);
    } else {
        CHECK(moved_leave * 100 < others);
        CHECK(moved_weight * 100 < KEYS);
    }
    balancer_destroy(&bl);
    pool_destroy(&f->p);
    free(before);
    free(after);
    free(f);
}

/* Two independent builds, from configs that list the backends in different
 * orders, give the same tables and the same key → backend names. */
static void test_identical_builds(enum balance_kind kind)
{
    static const int order_a[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    static const int order_b[8] = {5, 2, 7, 0, 3, 6, 1, 4};
    uint32_t wa[8], wb[8];
    struct fixture *fa = malloc(sizeof(*fa)), *fb = malloc(sizeof(*fb));
    struct balancer ba, bb;
    int same = 1;

    for (int i = 0; i < 8; i++) {
        wa[i] = (uint32_t)order_a[i] % 3 + 1;       /* weight follows the name */
        wb[i] = (uint32_t)order_b[i] % 3 + 1;
    }
    fixture_init(fa, kind, wa, 8, order_a);
    fixture_init(fb, kind, wb, 8, order_b);
    balancer_init(&ba, &fa->p, 1);
    balancer_init(&bb, &fb->p, 999);   /* another worker's random state */
    CHECK(pick_key(&ba, 0) != NULL);
    CHECK(pick_key(&bb, 0) != NULL);

    if (kind == BALANCE_RING_HASH) {
        const uint32_t *oa, *ob;
        uint32_t na, nb;
        const uint64_t *ha = balance_ring_points(ba.state, &oa, &na);
        const uint64_t *hb = balance_ring_points(bb.state, &ob, &nb);

        CHECK_EQ_INT(na, nb);
        for (uint32_t k = 0; k < na && k < nb; k++)
            same &= ha[k] == hb[k] &&
                    strcmp(ba.set.b[oa[k]]->conf->name, bb.set.b[ob[k]]->conf->name) == 0;
        /* Sorted, and a key goes to the first point at or after its hash
         * (checked against a plain binary search). */
        int sorted = 1, found = 1;
        for (uint32_t k = 1; k < na; k++)
            sorted &= ha[k - 1] <= ha[k];
        CHECK(sorted);
        for (uint64_t key = 0; key < KEYS; key++) {
            uint64_t h = key_hash(key);
            uint32_t lo = 0, hi = na;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (ha[mid] < h)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            found &= pick_key(&ba, key) == ba.set.b[oa[lo == na ? 0 : lo]];
        }
        CHECK(found);
    } else {
        uint32_t ma, mb;
        const uint32_t *ta = balance_maglev_table(ba.state, &ma);
        const uint32_t *tb = balance_maglev_table(bb.state, &mb);

        CHECK_EQ_INT(ma, 65537);
        CHECK_EQ_INT(ma, mb);
        for (uint32_t k = 0; k < ma && k < mb; k++)
            same &= strcmp(ba.set.b[ta[k]]->conf->name, bb.set.b[tb[k]]->conf->name) == 0;
    }
    CHECK(same);
    same = 1;
    for (uint64_t k = 0; k < KEYS; k++)
        same &= strcmp(pick_key(&ba, k)->conf->name, pick_key(&bb, k)->conf->name) == 0;
    CHECK(same);
    balancer_destroy(&ba);
    balancer_destroy(&bb);
    pool_destroy(&fa->p);
    pool_destroy(&fb->p);
    free(fa);
    free(fb);
}

/* Pinned: these keys mapped to these backends when the seeds were chosen.
 * If this fails, sluice instances of different versions would disagree on
 * every key: change the seeds only on purpose. */
static void test_pinned(void)
{
    struct fixture *f = malloc(sizeof(*f));
    struct balancer bl;
    const char *got[2][4];
    static const char *const want[2][4] = {
        {"b3", "b2", "b3", "b3"},    /* ring_hash */
        {"b0", "b4", "b4", "b1"},    /* maglev */
    };
    static const char *const keys[4] = {"alice", "bob", "10.0.0.1", "/index.html"};

    for (int a = 0; a < 2; a++) {
        fixture_init(f, a ? BALANCE_MAGLEV : BALANCE_RING_HASH, NULL, 5, NULL);
        balancer_init(&bl, &f->p, 1);
        for (int k = 0; k < 4; k++) {
            struct balance_req req = {.has_hash = true,
                                      .hash = XXH3_64bits_withSeed(keys[k], strlen(keys[k]),
                                                                   BALANCE_SEED_KEY)};
            got[a][k] = balancer_pick(&bl, &req)->conf->name;
            CHECK_EQ_STR(got[a][k], want[a][k]);
        }
        balancer_destroy(&bl);
        pool_destroy(&f->p);
    }
    free(f);
}

/* Bounded load: every key is the same hot key, requests never finish, and
 * yet no backend ever holds more than ceil(factor × average), weighted. */
static void test_bounded(enum balance_kind kind, const uint32_t *w, int n, double factor)
{
    struct fixture *f = malloc(sizeof(*f));
    struct balancer bl;
    struct balance_req req = {.hash = key_hash(7), .has_hash = true};
    uint64_t W = 0, total = 0;
    int ok = 1, used = 0;

    fixture_init(f, kind, w, n, NULL);
    f->cp.hash_balance_factor = factor;
    for (int i = 0; i < n; i++)
        W += w ? w[i] : 1;
    balancer_init(&bl, &f->p, 1);
    for (int pick = 0; pick < 10000; pick++) {
        struct backend *b = balancer_pick(&bl, &req);
        atomic_fetch_add(&b->active, 1);
        total++;
        for (int i = 0; i < n; i++) {
            double cap = ceil(factor * (double)total * (w ? w[i] : 1) / (double)W - 1e-9);
            ok &= atomic_load(&f->p.backends[i].active) <= cap;
        }
    }
    CHECK(ok);
    /* The load spills along the walk: the first backends reached fill to
     * their caps, which add up to factor × total, so about n / factor of
     * them take it all. */
    for (int i = 0; i < n; i++)
        used += atomic_load(&f->p.backends[i].active) > 0;
    CHECK(used >= (int)floor(n / factor));
    /* Without the factor the hot key stays on one backend. */
    for (int i = 0; i < n; i++)
        atomic_store(&f->p.backends[i].active, 0);
    f->cp.hash_balance_factor = 0;
    backend_set_weight(&f->p.backends[0], 2);   /* any change: rebuild */
    backend_set_weight(&f->p.backends[0], w ? w[0] : 1);
    struct backend *first = balancer_pick(&bl, &req);
    for (int pick = 0; pick < 1000; pick++)
        atomic_fetch_add(&balancer_pick(&bl, &req)->active, 1);
    CHECK_EQ_INT(atomic_load(&first->active), 1000);
    balancer_destroy(&bl);
    pool_destroy(&f->p);
    free(f);
}

/* A retry walks to the next distinct backend, the same one every time for
 * a key; excluding everything gives NULL. */
static void test_exclusion(enum balance_kind kind)
{
    struct fixture *f = malloc(sizeof(*f));
    struct balancer bl;
    int ok = 1;

    fixture_init(f, kind, NULL, 6, NULL);
    balancer_init(&bl, &f->p, 1);
    for (uint64_t k = 0; k < 2000; k++) {
        struct balance_req req = {.hash = key_hash(k), .has_hash = true};
        const struct backend *ex[6];
        struct backend *first = balancer_pick(&bl, &req), *second, *again;

        ex[0] = first;
        req.exclude = ex;
        req.nexclude = 1;
        second = balancer_pick(&bl, &req);
        again = balancer_pick(&bl, &req);
        ok &= second && second != first && second == again;
        for (int i = 0; i < 6; i++)
            ex[i] = &f->p.backends[i];
        req.nexclude = 6;
        ok &= balancer_pick(&bl, &req) == NULL;
        req.nexclude = 5;    /* only backends[5] left */
        ok &= balancer_pick(&bl, &req) == &f->p.backends[5];
    }
    CHECK(ok);
    /* Ineligible backends hold no keys. */
    backend_set_state(&f->p.backends[2], BACKEND_DRAINING, "test");
    backend_set_weight(&f->p.backends[4], 0);
    for (uint64_t k = 0; k < 10000; k++) {
        struct backend *b = pick_key(&bl, k);
        ok &= b != &f->p.backends[2] && b != &f->p.backends[4];
    }
    CHECK(ok);
    balancer_destroy(&bl);
    pool_destroy(&f->p);
    free(f);
}

/* Without a key the pick is p2c's: spread, and away from the loaded. */
static void test_no_key(enum balance_kind kind)
{
    struct fixture *f = malloc(sizeof(*f));
    struct balancer bl;
    struct balance_req req = {0};
    int counts[4] = {0};

    fixture_init(f, kind, NULL, 4, NULL);
    balancer_init(&bl, &f->p, 3);
    for (int i = 0; i < 40000; i++)
        counts[balancer_pick(&bl, &req) - f->p.backends]++;
    for (int i = 0; i < 4; i++)
        CHECK(abs(counts[i] - 10000) < 400);
    atomic_store(&f->p.backends[1].active, 50);
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < 10000; i++)
        counts[balancer_pick(&bl, NULL) - f->p.backends]++;
    CHECK_EQ_INT(counts[1], 0);
    balancer_destroy(&bl);
    pool_destroy(&f->p);
    free(f);
}

/* A table is rebuilt when membership, weight or state changes, not per
 * pick (the generation), and a rebuild of the same set is the same table. */
static void test_rebuild(void)
{
    struct fixture *f = malloc(sizeof(*f));
    struct balancer bl;
    void *state;
    uint32_t m;
    uint32_t *copy = malloc(65537 * sizeof(uint32_t));

    fixture_init(f, BALANCE_MAGLEV, NULL, 5, NULL);
    balancer_init(&bl, &f->p, 1);
    pick_key(&bl, 1);
    state = bl.state;
    memcpy(copy, balance_maglev_table(state, &m), 65537 * sizeof(uint32_t));
    for (int k = 0; k < 100; k++)
        pick_key(&bl, (uint64_t)k);
    CHECK(bl.state == state);
    backend_set_weight(&f->p.backends[1], 1);   /* unchanged: no new generation */
    pick_key(&bl, 1);
    CHECK(bl.state == state);
    backend_set_weight(&f->p.backends[1], 3);
    pick_key(&bl, 1);
    CHECK(bl.state != state);
    backend_set_weight(&f->p.backends[1], 1);
    pick_key(&bl, 1);
    CHECK(memcmp(copy, balance_maglev_table(bl.state, &m), 65537 * sizeof(uint32_t)) == 0);
    balancer_destroy(&bl);
    pool_destroy(&f->p);
    free(copy);
    free(f);
}

/* Weighted Maglev: entries in proportion to weight, to within one round. */
static void test_maglev_entries(void)
{
    static const uint32_t w[4] = {1, 2, 3, 256};
    struct fixture *f = malloc(sizeof(*f));
    struct balancer bl;
    uint32_t m, counts[4] = {0};
    const uint32_t *t;

    fixture_init(f, BALANCE_MAGLEV, w, 4, NULL);
    balancer_init(&bl, &f->p, 1);
    pick_key(&bl, 1);
    t = balance_maglev_table(bl.state, &m);
    for (uint32_t k = 0; k < m; k++)
        counts[t[k]]++;
    for (int i = 0; i < 4; i++)
        CHECK(fabs(counts[i] - 65537.0 * w[i] / 262) <= 1.0 + w[i] / 256.0);
    CHECK_EQ_INT(balance_maglev_size(655), 65537);
    CHECK_EQ_INT(balance_maglev_size(656), 262147);
    CHECK_EQ_INT(balance_maglev_size(100000), 1048583);
    balancer_destroy(&bl);
    pool_destroy(&f->p);
    free(f);
}

/* ---- keys ---- */

static void set_v4(struct addr *a, const char *ip, int port)
{
    struct sockaddr_in *s = (struct sockaddr_in *)&a->ss;

    memset(a, 0, sizeof(*a));
    s->sin_family = AF_INET;
    s->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &s->sin_addr);
    a->len = sizeof(*s);
}

static void set_v6(struct addr *a, const char *ip, int port)
{
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a->ss;

    memset(a, 0, sizeof(*a));
    s->sin6_family = AF_INET6;
    s->sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, ip, &s->sin6_addr);
    a->len = sizeof(*s);
}

static void test_keys(void)
{
    struct conf_pool cp = {.name = "p", .balance = BALANCE_IP_HASH};
    struct addr a, b;
    uint64_t h1 = 0, h2 = 0, h3 = 0;

    /* The address, not the port; v4-mapped v6 is the v4 address. */
    set_v4(&a, "192.0.2.7", 1000);
    set_v4(&b, "192.0.2.7", 2000);
    CHECK(balance_hash_l4(&cp, &a, &h1));
    CHECK(balance_hash_l4(&cp, &b, &h2));
    CHECK(h1 == h2);
    CHECK(h1 == XXH3_64bits_withSeed("\xc0\x00\x02\x07", 4, BALANCE_SEED_KEY));
    set_v6(&b, "::ffff:192.0.2.7", 3000);
    CHECK(balance_hash_l4(&cp, &b, &h2));
    CHECK(h1 == h2);
    set_v4(&b, "192.0.2.8", 1000);
    CHECK(balance_hash_l4(&cp, &b, &h2));
    CHECK(h1 != h2);
    set_v6(&a, "2001:db8::1", 1);
    set_v6(&b, "2001:db8::1", 2);
    CHECK(balance_hash_l4(&cp, &a, &h1));
    CHECK(balance_hash_l4(&cp, &b, &h2));
    CHECK(h1 == h2);
    set_v6(&b, "2001:db8::2", 2);
    CHECK(balance_hash_l4(&cp, &b, &h3));
    CHECK(h1 != h3);

    /* Pools that do not hash, and L4 with an L7 key, give no key. */
    cp.balance = BALANCE_P2C;
    CHECK(!balance_hash_l4(&cp, &a, &h1));
    cp.balance = BALANCE_RING_HASH;
    cp.hash_key = HASH_KEY_SOURCE_IP;
    CHECK(balance_hash_l4(&cp, &a, &h1));
    cp.hash_key = HASH_KEY_HEADER;
    cp.hash_key_name = "x-user";
    CHECK(!balance_hash_l4(&cp, &a, &h1));

    /* L7 keys. */
    static const char text[] =
        "GET /cart/items?user=alice&empty=&x=1 HTTP/1.1\r\nHost: shop\r\n"
        "X-User: bob\r\nX-Empty:\r\nCookie: theme=dark; sid=s3cr3t\r\n\r\n";
    static const char text2[] =
        "GET /cart/items HTTP/1.1\r\nHost: shop\r\nx-user: bob\r\n\r\n";
    struct h1_header slots[16], slots2[16];
    struct h1_request req, req2;

    h1_request_init(&req, slots, 16);
    CHECK(h1_parse_request(text, sizeof(text) - 1, NULL, &req) > 0);
    h1_request_init(&req2, slots2, 16);
    CHECK(h1_parse_request(text2, sizeof(text2) - 1, NULL, &req2) > 0);
#define VALUE_HASH(s) XXH3_64bits_withSeed(s, strlen(s), BALANCE_SEED_KEY)
    cp.balance = BALANCE_MAGLEV;
    cp.hash_key = HASH_KEY_HEADER;
    cp.hash_key_name = "X-User";
    CHECK(balance_hash_http(&cp, &a, &req, &h1) && h1 == VALUE_HASH("bob"));
    CHECK(balance_hash_http(&cp, &a, &req2, &h2) && h2 == h1);     /* any case */
    cp.hash_key_name = "x-empty";
    CHECK(!balance_hash_http(&cp, &a, &req, &h1));
    cp.hash_key_name = "x-absent";
    CHECK(!balance_hash_http(&cp, &a, &req, &h1));
    cp.hash_key = HASH_KEY_COOKIE;
    cp.hash_key_name = "sid";
    CHECK(balance_hash_http(&cp, &a, &req, &h1) && h1 == VALUE_HASH("s3cr3t"));
    CHECK(!balance_hash_http(&cp, &a, &req2, &h1));
    cp.hash_key = HASH_KEY_QUERY;
    cp.hash_key_name = "user";
    CHECK(balance_hash_http(&cp, &a, &req, &h1) && h1 == VALUE_HASH("alice"));
    CHECK(!balance_hash_http(&cp, &a, &req2, &h1));
    cp.hash_key_name = "empty";
    CHECK(!balance_hash_http(&cp, &a, &req, &h1));
    cp.hash_key = HASH_KEY_PATH;
    CHECK(balance_hash_http(&cp, &a, &req, &h1) && h1 == VALUE_HASH("/cart/items"));
    CHECK(balance_hash_http(&cp, &a, &req2, &h2) && h2 == h1);     /* query not part */
    cp.hash_key = HASH_KEY_SOURCE_IP;
    CHECK(balance_hash_http(&cp, &a, &req, &h1));
    CHECK(balance_hash_l4(&cp, &a, &h2) && h1 == h2);
    cp.balance = BALANCE_IP_HASH;
    cp.hash_key = HASH_KEY_PATH;     /* ip_hash ignores hash_key */
    CHECK(balance_hash_http(&cp, &a, &req, &h3) && h3 == h1);
    cp.balance = BALANCE_EWMA;
    CHECK(!balance_hash_http(&cp, &a, &req, &h1));
#undef VALUE_HASH
}

int main(void)
{
    test_shares(BALANCE_MAGLEV, 0.05);
    test_shares(BALANCE_IP_HASH, 0.05);
    test_shares(BALANCE_RING_HASH, 0.12);
    test_join_leave(BALANCE_RING_HASH);
    test_join_leave(BALANCE_MAGLEV);
    test_weighted_stability(BALANCE_RING_HASH);
    test_weighted_stability(BALANCE_MAGLEV);
    test_identical_builds(BALANCE_RING_HASH);
    test_identical_builds(BALANCE_MAGLEV);
    test_pinned();
    static const uint32_t w10[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    static const uint32_t wmix[5] = {1, 2, 3, 1, 5};
    test_bounded(BALANCE_RING_HASH, w10, 10, 1.25);
    test_bounded(BALANCE_MAGLEV, w10, 10, 1.25);
    test_bounded(BALANCE_IP_HASH, w10, 10, 1.5);
    test_bounded(BALANCE_MAGLEV, wmix, 5, 1.25);
    test_bounded(BALANCE_RING_HASH, wmix, 5, 2.0);
    test_exclusion(BALANCE_RING_HASH);
    test_exclusion(BALANCE_MAGLEV);
    test_exclusion(BALANCE_IP_HASH);
    test_no_key(BALANCE_RING_HASH);
    test_no_key(BALANCE_MAGLEV);
    test_rebuild();
    test_maglev_entries();
    test_keys();
    TEST_END();
}
