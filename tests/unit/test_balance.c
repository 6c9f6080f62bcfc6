/* Balancers: round-robin weights exact over a cycle, random shares by
 * weight, least_conn and p2c prefer the less loaded (p2c weighing load as
 * Envoy does), and every algorithm skips ineligible and excluded backends
 * and rebuilds only when the pool changes. The hashing algorithms and ewma
 * have their own files (test_balance_hash.c, test_balance_ewma.c). */
#include <stdlib.h>

#include "balance/balance.h"
#include "proto/http1.h"
#include "route/route.h"
#include "test.h"

static struct conf_backend cb[8];
static struct conf_pool cp;
static char names[8][16];

static const enum balance_kind all_kinds[] = {
    BALANCE_P2C, BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN, BALANCE_RANDOM,
    BALANCE_EWMA, BALANCE_RING_HASH, BALANCE_MAGLEV, BALANCE_IP_HASH,
};

static void make_pool(struct pool *p, enum balance_kind kind, const uint32_t *weights, int n)
{
    memset(&cp, 0, sizeof(cp));
    cp.name = "p";
    cp.balance = kind;
    cp.backends = cb;
    cp.nbackends = (size_t)n;
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof(names[i]), "b%d", i);
        cb[i].name = names[i];
        cb[i].weight = weights[i];
    }
    CHECK_EQ_INT(pool_init(p, &cp), 0);
}

static int idx(struct pool *p, struct backend *b)
{
    return b ? (int)(b - p->backends) : -1;
}

static void test_round_robin(void)
{
    struct pool p;
    struct balancer bl;
    uint32_t w[3] = {5, 1, 1};
    int counts[3] = {0}, seq[7];

    make_pool(&p, BALANCE_ROUND_ROBIN, w, 3);
    balancer_init(&bl, &p, 1);
    /* One cycle of 7 picks gives exactly 5,1,1, interleaved like NGINX:
     * a a b a c a a. */
    for (int i = 0; i < 7; i++)
        seq[i] = idx(&p, balancer_pick(&bl, NULL));
    int expect[7] = {0, 0, 1, 0, 2, 0, 0};
    for (int i = 0; i < 7; i++)
        CHECK_EQ_INT(seq[i], expect[i]);
    for (int i = 0; i < 700; i++)
        counts[idx(&p, balancer_pick(&bl, NULL))]++;
    CHECK_EQ_INT(counts[0], 500);
    CHECK_EQ_INT(counts[1], 100);
    CHECK_EQ_INT(counts[2], 100);

    /* A DOWN backend gets nothing; the others share by weight. */
    backend_set_state(&p.backends[0], BACKEND_DOWN, "test");
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < 100; i++)
        counts[idx(&p, balancer_pick(&bl, NULL))]++;
    CHECK_EQ_INT(counts[0], 0);
    CHECK_EQ_INT(counts[1], 50);
    CHECK_EQ_INT(counts[2], 50);

    /* Exclusion: a retry must go elsewhere. */
    const struct backend *ex[1] = {&p.backends[1]};
    struct balance_req req = {.exclude = ex, .nexclude = 1};
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(idx(&p, balancer_pick(&bl, &req)), 2);
    const struct backend *ex2[2] = {&p.backends[1], &p.backends[2]};
    struct balance_req req2 = {.exclude = ex2, .nexclude = 2};
    CHECK(balancer_pick(&bl, &req2) == NULL);

    /* Weight 0 (set by an operator) takes no new work. */
    backend_set_state(&p.backends[0], BACKEND_UP, "test");
    backend_set_weight(&p.backends[1], 0);
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < 60; i++)
        counts[idx(&p, balancer_pick(&bl, NULL))]++;
    CHECK_EQ_INT(counts[1], 0);
    CHECK_EQ_INT(counts[0], 50);
    CHECK_EQ_INT(counts[2], 10);

    /* Nothing eligible: NULL, not a crash. */
    for (int i = 0; i < 3; i++)
        backend_set_state(&p.backends[i], BACKEND_DRAINING, "test");
    CHECK(balancer_pick(&bl, NULL) == NULL);
    balancer_destroy(&bl);
    pool_destroy(&p);
}

/* With no backend eligible at all, the ones that are only DOWN or ejected
 * still take traffic (the last resort); what an operator took out never. */
static void test_last_resort(void)
{
    struct pool p;
    struct balancer bl;
    uint32_t w[3] = {1, 1, 1};
    int counts[3] = {0};

    make_pool(&p, BALANCE_ROUND_ROBIN, w, 3);
    balancer_init(&bl, &p, 1);
    backend_set_state(&p.backends[0], BACKEND_DOWN, "test");
    backend_set_state(&p.backends[1], BACKEND_DOWN, "test");
    backend_set_state(&p.backends[2], BACKEND_DOWN, "test");
    for (int i = 0; i < 30; i++)
        counts[idx(&p, balancer_pick(&bl, NULL))]++;
    CHECK_EQ_INT(counts[0], 10);
    CHECK_EQ_INT(counts[1], 10);
    CHECK_EQ_INT(counts[2], 10);
    CHECK(bl.panic && bl.last_resort);
    /* One back UP: it alone serves (no threshold set: no panic). */
    backend_set_state(&p.backends[2], BACKEND_UP, "test");
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(idx(&p, balancer_pick(&bl, NULL)), 2);
    CHECK(!bl.panic && !bl.last_resort);
    /* Drained or disabled by an operator: never a last resort. */
    backend_set_state(&p.backends[2], BACKEND_DRAINING, "test");
    backend_set_state(&p.backends[0], BACKEND_DISABLED, "test");
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(idx(&p, balancer_pick(&bl, NULL)), 1);
    backend_set_state(&p.backends[1], BACKEND_DISABLED, "test");
    CHECK(balancer_pick(&bl, NULL) == NULL);
    balancer_destroy(&bl);
    pool_destroy(&p);
}

static void test_least_conn(void)
{
    struct pool p;
    struct balancer bl;
    uint32_t w[3] = {1, 1, 2};
    int counts[3] = {0};

    make_pool(&p, BALANCE_LEAST_CONN, w, 3);
    balancer_init(&bl, &p, 1);
    /* active 4, 1, 4 (weight 2 → 2 per unit): b1 has the least. */
    atomic_store(&p.backends[0].active, 4);
    atomic_store(&p.backends[1].active, 1);
    atomic_store(&p.backends[2].active, 4);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(idx(&p, balancer_pick(&bl, NULL)), 1);
    /* Weighted: 3 active at weight 2 (1.5 each) beats 2 at weight 1. */
    atomic_store(&p.backends[0].active, 2);
    atomic_store(&p.backends[1].active, 2);
    atomic_store(&p.backends[2].active, 3);
    CHECK_EQ_INT(idx(&p, balancer_pick(&bl, NULL)), 2);
    /* Ties rotate instead of piling onto the first. */
    for (int i = 0; i < 3; i++)
        atomic_store(&p.backends[i].active, 0);
    for (int i = 0; i < 30; i++)
        counts[idx(&p, balancer_pick(&bl, NULL))]++;
    CHECK_EQ_INT(counts[0], 10);
    CHECK_EQ_INT(counts[1], 10);
    CHECK_EQ_INT(counts[2], 10);
    /* Ties among the least loaded rotate evenly while another backend is
     * busy: b3 busy, b1 and b2 idle share exactly half and half. */
    atomic_store(&p.backends[2].active, 5);
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < 30; i++)
        counts[idx(&p, balancer_pick(&bl, NULL))]++;
    CHECK_EQ_INT(counts[0], 15);
    CHECK_EQ_INT(counts[1], 15);
    CHECK_EQ_INT(counts[2], 0);
    atomic_store(&p.backends[2].active, 0);
    memset(counts, 0, sizeof(counts));
    /* Simulated load: picks take a connection and keep it; the result is
     * proportional to weight (1:1:2). */
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < 400; i++) {
        struct backend *b = balancer_pick(&bl, NULL);
        atomic_fetch_add(&b->active, 1);
        counts[idx(&p, b)]++;
    }
    CHECK_EQ_INT(counts[0], 100);
    CHECK_EQ_INT(counts[1], 100);
    CHECK_EQ_INT(counts[2], 200);
    /* Exclusion. */
    const struct backend *ex[1] = {&p.backends[2]};
    struct balance_req req = {.exclude = ex, .nexclude = 1};
    atomic_store(&p.backends[2].active, 0);
    CHECK(idx(&p, balancer_pick(&bl, &req)) != 2);
    balancer_destroy(&bl);
    pool_destroy(&p);
}

static void test_p2c(void)
{
    struct pool p;
    struct balancer bl;
    uint32_t w[4] = {1, 1, 1, 3};
    int counts[4] = {0};
    const int N = 100000;

    make_pool(&p, BALANCE_P2C, w, 4);
    balancer_init(&bl, &p, 42);
    /* Idle pool: shares follow weights (1/6, 1/6, 1/6, 1/2) within 1%: the
     * first, weighted, draw wins between idle candidates. */
    for (int i = 0; i < N; i++)
        counts[idx(&p, balancer_pick(&bl, NULL))]++;
    for (int i = 0; i < 3; i++)
        CHECK(abs(counts[i] - N / 6) < N / 100);
    CHECK(abs(counts[3] - N / 2) < N / 100);

    /* A loaded backend loses most of its share: b0 has 50 in flight, the
     * others none. It wins only when drawn twice... which p2c forbids. */
    atomic_store(&p.backends[0].active, 50);
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < N; i++)
        counts[idx(&p, balancer_pick(&bl, NULL))]++;
    CHECK_EQ_INT(counts[0], 0);

    /* The two choices are distinct and exclusion holds. */
    atomic_store(&p.backends[0].active, 0);
    const struct backend *ex[3] = {&p.backends[0], &p.backends[1], &p.backends[3]};
    struct balance_req req = {.exclude = ex, .nexclude = 3};
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(idx(&p, balancer_pick(&bl, &req)), 2);
    const struct backend *all[4] = {&p.backends[0], &p.backends[1], &p.backends[2], &p.backends[3]};
    struct balance_req none = {.exclude = all, .nexclude = 4};
    CHECK(balancer_pick(&bl, &none) == NULL);

    /* Load spreads: simulated long-lived connections end up balanced per
     * weight (the most loaded per unit of weight is never above the least
     * by more than a small margin). */
    for (int i = 0; i < 4; i++)
        atomic_store(&p.backends[i].active, 0);
    for (int i = 0; i < 6000; i++)
        atomic_fetch_add(&balancer_pick(&bl, NULL)->active, 1);
    for (int i = 0; i < 3; i++)
        CHECK(abs((int)atomic_load(&p.backends[i].active) - 1000) < 100);
    CHECK(abs((int)atomic_load(&p.backends[3].active) - 3000) < 300);

    /* Same seed, same picks: determinism for tests. */
    struct balancer b1, b2;
    balancer_init(&b1, &p, 7);
    balancer_init(&b2, &p, 7);
    int same = 1;
    for (int i = 0; i < 1000; i++)
        same &= balancer_pick(&b1, NULL) == balancer_pick(&b2, NULL);
    CHECK(same);
    balancer_destroy(&b1);
    balancer_destroy(&b2);
    balancer_destroy(&bl);
    pool_destroy(&p);
}

/* p2c weighs load as Envoy does, weight / (active + 1): a weight-3
 * backend with one request in flight (3/2) beats an idle weight-1 one
 * (1/1); with three in flight (3/4) it loses. */
static void test_p2c_weights(void)
{
    struct pool p;
    struct balancer bl;
    uint32_t w[2] = {1, 3};

    make_pool(&p, BALANCE_P2C, w, 2);
    balancer_init(&bl, &p, 5);
    atomic_store(&p.backends[1].active, 1);
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(idx(&p, balancer_pick(&bl, NULL)), 1);
    atomic_store(&p.backends[1].active, 3);
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(idx(&p, balancer_pick(&bl, NULL)), 0);
    balancer_destroy(&bl);
    pool_destroy(&p);
}

static void test_random(void)
{
    struct pool p;
    struct balancer bl;
    uint32_t w[4] = {1, 2, 3, 4};
    int counts[4] = {0};
    const int N = 100000;

    make_pool(&p, BALANCE_RANDOM, w, 4);
    balancer_init(&bl, &p, 17);
    /* Shares within 1% of N of the weights (3σ is about 0.45%)... */
    for (int i = 0; i < N; i++)
        counts[idx(&p, balancer_pick(&bl, NULL))]++;
    for (int i = 0; i < 4; i++)
        CHECK(abs(counts[i] - N * (int)w[i] / 10) < N / 100);
    /* ...and load does not matter to it. */
    atomic_store(&p.backends[3].active, 1000);
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < N; i++)
        counts[idx(&p, balancer_pick(&bl, NULL))]++;
    CHECK(abs(counts[3] - N * 4 / 10) < N / 100);
    balancer_destroy(&bl);
    pool_destroy(&p);
}

/* Every algorithm: never an ineligible or excluded backend, NULL when all
 * are excluded, shares that follow the weights, and a table rebuilt only
 * when the pool changes (membership, weight, state). */
static void test_all(void)
{
    for (size_t a = 0; a < sizeof(all_kinds) / sizeof(all_kinds[0]); a++) {
        enum balance_kind kind = all_kinds[a];
        const char *name = balance_ops_for(kind)->name;
        uint32_t w[5] = {1, 2, 1, 3, 1};
        struct pool p;
        struct balancer bl;
        uint64_t rng = 99;
        int bad = 0, counts[5] = {0};
        void *state;

        make_pool(&p, kind, w, 5);
        balancer_init(&bl, &p, 23);
        CHECK_EQ_STR(bl.ops->name, name);
        /* Shares over 100,000 picks (random keys for the hashing ones)
         * within 10% of each weight's share; the per-algorithm tests hold
         * tighter bounds. No load: least_conn rotates, which is exact. */
        for (int i = 0; i < 100000; i++) {
            struct balance_req req = {.hash = balance_rand(&rng), .has_hash = true};
            counts[idx(&p, balancer_pick(&bl, &req))]++;
        }
        for (int i = 0; i < 5; i++) {
            double expect = kind == BALANCE_LEAST_CONN ? 20000 : 100000.0 * w[i] / 8;
            CHECK(abs(counts[i] - (int)expect) < expect / 10);
            if (abs(counts[i] - (int)expect) >= expect / 10)
                fprintf(stderr, "  %s: b%d got %d, expected %.0f\n", name, i, counts[i], expect);
        }

        state = bl.state;
        for (int i = 0; i < 100; i++)
            balancer_pick(&bl, NULL);
        CHECK(bl.state == state);                  /* no change, no rebuild */
        backend_set_state(&p.backends[1], BACKEND_DOWN, "test");
        backend_set_weight(&p.backends[3], 0);
        for (int i = 0; i < 2000; i++) {
            struct balance_req req = {.hash = balance_rand(&rng), .has_hash = i % 2};
            int k = idx(&p, balancer_pick(&bl, &req));
            bad += k == 1 || k == 3 || k < 0;
        }
        CHECK_EQ_INT(bad, 0);
        CHECK(bl.built_generation == atomic_load(&p.generation));
        CHECK_EQ_INT(bl.set.n, 3);

        /* Random exclusion sets over the eligible 0, 2, 4. */
        for (int i = 0; i < 2000; i++) {
            const struct backend *ex[3];
            uint32_t nex = 0, mask = (uint32_t)balance_rand(&rng) & 7;
            struct balance_req req = {.exclude = ex, .hash = balance_rand(&rng),
                                      .has_hash = i % 2};
            struct backend *b;

            for (int j = 0; j < 3; j++)
                if (mask & (1u << j))
                    ex[nex++] = &p.backends[j * 2];
            req.nexclude = nex;
            b = balancer_pick(&bl, &req);
            if (nex == 3)
                bad += b != NULL;
            else
                bad += !b || balance_excluded(&req, b) || idx(&p, b) % 2;
        }
        CHECK_EQ_INT(bad, 0);
        if (bad)
            fprintf(stderr, "  %s: %d bad picks\n", name, bad);
        balancer_destroy(&bl);
        pool_destroy(&p);
    }
}

/* The backend a request's sticky cookie names, parsed from a real head. */
static struct backend *sticky_of(struct pool *p, const char *cookie)
{
    static char head[512];
    struct h1_header slots[8];
    struct h1_request req;
    int n = snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: a\r\n%s%s%s\r\n",
                     cookie ? "Cookie: " : "", cookie ? cookie : "", cookie ? "\r\n" : "");

    h1_request_init(&req, slots, 8);
    CHECK(h1_parse_request(head, (size_t)n, NULL, &req) > 0);
    return sticky_lookup(p, &req);
}

static void test_sticky(void)
{
    struct pool p;
    uint32_t w[3] = {1, 1, 0};
    char cookie[128], want[64];
    int n;

    make_pool(&p, BALANCE_ROUND_ROBIN, w, 3);
    /* Pinned: the value must never change by accident, or every session
     * of every upgraded sluice moves (see balancing.md). */
    CHECK(sticky_id_for("p", "b0") == p.backends[0].sticky_id);
    snprintf(want, sizeof(want), "%016llx", (unsigned long long)sticky_id_for("app", "b1"));
    CHECK_EQ_STR(want, "d888ea58bda0ee58");
    CHECK(sticky_id_for("p", "b0") != sticky_id_for("q", "b0"));
    CHECK(sticky_id_for("p", "b0") != sticky_id_for("p", "b1"));

    /* Off: no lookup at all. */
    snprintf(cookie, sizeof(cookie), "SLUICE=%016llx", (unsigned long long)p.backends[1].sticky_id);
    CHECK(sticky_of(&p, cookie) == NULL);
    cp.sticky = (struct conf_sticky){.cookie = "SLUICE", .path = "/", .http_only = true};
    CHECK(sticky_of(&p, cookie) == &p.backends[1]);
    snprintf(cookie, sizeof(cookie), "a=1; SLUICE=%016llx; b=2",
             (unsigned long long)p.backends[2].sticky_id);
    CHECK(sticky_of(&p, cookie) == &p.backends[2]);
    CHECK(sticky_of(&p, NULL) == NULL);
    CHECK(sticky_of(&p, "SLUICE=") == NULL);
    CHECK(sticky_of(&p, "SLUICE=zz") == NULL);
    CHECK(sticky_of(&p, "SLUICEX=0") == NULL);
    snprintf(cookie, sizeof(cookie), "SLUICE=%016llX", (unsigned long long)p.backends[1].sticky_id);
    CHECK(sticky_of(&p, cookie) == NULL);         /* upper case: not ours */
    snprintf(cookie, sizeof(cookie), "SLUICE=%016llx0", (unsigned long long)p.backends[1].sticky_id);
    CHECK(sticky_of(&p, cookie) == NULL);         /* 17 digits */
    /* Sent twice (one per Path or Domain): the first that names a backend
     * of the pool, after a stale or malformed one. */
    snprintf(cookie, sizeof(cookie), "SLUICE=0123456789abcdef; SLUICE=%016llx",
             (unsigned long long)p.backends[1].sticky_id);
    CHECK(sticky_of(&p, cookie) == &p.backends[1]);
    snprintf(cookie, sizeof(cookie), "SLUICE=zz; a=1; SLUICE=%016llx; SLUICE=%016llx",
             (unsigned long long)p.backends[2].sticky_id,
             (unsigned long long)p.backends[1].sticky_id);
    CHECK(sticky_of(&p, cookie) == &p.backends[2]);

    /* Usable: UP whatever the weight (b2 has 0), slow start, draining until
     * drain_timeout; not DOWN, DISABLED or ejected. */
    CHECK(sticky_usable(&p.backends[2]));
    backend_set_state(&p.backends[0], BACKEND_SLOW_START, "test");
    CHECK(sticky_usable(&p.backends[0]));
    backend_set_state(&p.backends[0], BACKEND_DRAINING, "test");
    CHECK(sticky_usable(&p.backends[0]));
    atomic_store(&p.backends[0].drain_expired, 1);
    CHECK(!sticky_usable(&p.backends[0]));
    backend_set_state(&p.backends[0], BACKEND_DOWN, "test");
    CHECK(!sticky_usable(&p.backends[0]));
    backend_set_state(&p.backends[0], BACKEND_DISABLED, "test");
    CHECK(!sticky_usable(&p.backends[0]));
    atomic_store(&p.backends[1].ejected, 1);
    CHECK(!sticky_usable(&p.backends[1]));

    /* The Set-Cookie value, with and without the optional attributes. */
    n = sticky_set_cookie(&cp.sticky, &p.backends[1], cookie, sizeof(cookie));
    snprintf(want, sizeof(want), "SLUICE=%016llx; Path=/; HttpOnly",
             (unsigned long long)p.backends[1].sticky_id);
    CHECK_EQ_STR(cookie, want);
    CHECK_EQ_INT(n, (int)strlen(want));
    cp.sticky = (struct conf_sticky){.cookie = "S", .path = "/app", .ttl_ms = 3600000,
                                     .secure = true};
    sticky_set_cookie(&cp.sticky, &p.backends[1], cookie, sizeof(cookie));
    snprintf(want, sizeof(want), "S=%016llx; Path=/app; Max-Age=3600; Secure",
             (unsigned long long)p.backends[1].sticky_id);
    CHECK_EQ_STR(cookie, want);
    CHECK_EQ_INT(sticky_set_cookie(&cp.sticky, &p.backends[1], cookie, 20), -1);
    pool_destroy(&p);
}

/* A backend back in rotation (from DOWN, DISABLED or DRAINING) is
 * SLOW_START while its weight ramps, and its failures in a row from before
 * are forgotten, so that outlier detection does not eject it for them. */
static void test_back_in_rotation(void)
{
    static const enum backend_state from[] = {BACKEND_DOWN, BACKEND_DISABLED, BACKEND_DRAINING};
    struct pool p;
    uint32_t w[2] = {1, 1};

    for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
        make_pool(&p, BALANCE_ROUND_ROBIN, w, 2);
        cp.slow_start_ms = 30000;
        backend_set_state(&p.backends[0], from[i], "test");
        atomic_store(&p.backends[0].consecutive_failures, 7);
        backend_set_state(&p.backends[0], BACKEND_UP, "test");
        CHECK_EQ_INT(atomic_load(&p.backends[0].state), BACKEND_SLOW_START);
        CHECK_EQ_INT(atomic_load(&p.backends[0].ramp_permille), 100);
        CHECK_EQ_INT(atomic_load(&p.backends[0].consecutive_failures), 0);
        CHECK(backend_eligible(&p.backends[0]));
        pool_destroy(&p);
    }
    /* Without slow_start, UP is UP. */
    make_pool(&p, BALANCE_ROUND_ROBIN, w, 2);
    backend_set_state(&p.backends[0], BACKEND_DRAINING, "test");
    backend_set_state(&p.backends[0], BACKEND_UP, "test");
    CHECK_EQ_INT(atomic_load(&p.backends[0].state), BACKEND_UP);
    pool_destroy(&p);
}

int main(void)
{
    test_round_robin();
    test_back_in_rotation();
    test_least_conn();
    test_last_resort();
    test_sticky();
    test_p2c();
    test_p2c_weights();
    test_random();
    test_all();
    TEST_END();
}
