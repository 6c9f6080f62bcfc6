/* libFuzzer target: what the edge filters and the hashing balancers read
 * from a request: cookie and query pairs (route_cookie, route_query_param),
 * the sticky cookie (sticky_lookup), every kind of request key
 * (balance_request_key) and the rate limiter fed with them, and the Basic
 * credentials of the Authorization header (auth_begin; no cache, so every
 * input is decoded), and a JWT's base64url and JSON (jwt_check, HS256: a
 * random token must be refused, and read safely).
 *
 * Input: byte 0 picks a name length n (0..15), bytes 1..n are the name
 * looked up, bytes n+1..n+8 a time for the limiter, the rest a request head.
 *
 * Invariants beyond "no crash, no sanitizer report":
 *  - a cookie or query value found lies inside the head;
 *  - sticky_lookup gives NULL or one of the pool's backends, and a cookie
 *    written by sticky_set_cookie for a backend, sent back, names that
 *    backend;
 *  - the limiter never asks a request to wait longer than one interval past
 *    the latest time it has seen (a key's timestamp never runs further
 *    ahead than that plus the burst).
 *
 * Build and run by hand: scripts/fuzz.sh 60 fuzz/fuzz_request_keys.c */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance/balance.h"
#include "proto/http1.h"
#include "route/route.h"

#include "fuzz.h"

#define SLOTS 32

static struct conf_backend cbs[3] = {{.name = "b1", .weight = 1}, {.name = "b2", .weight = 1},
                                     {.name = "b3", .weight = 1}};
static struct conf_pool cpool = {.name = "app", .backends = cbs, .nbackends = 3,
                                 .sticky = {.cookie = "S", .path = "/", .http_only = true}};
static struct conf_rate_limit crl = {.interval_ns = 1000000, .burst = 3, .max_keys = 16};
static struct conf_user cusers[1] = {{.name = "ann", .hash = "$6$abcdefgh$x"}};
static struct conf_auth cauth = {.users = cusers, .nusers = 1};
static unsigned char jsecret[32] = "0123456789abcdef0123456789abcdef";
static struct conf_auth cjwt = {.type = AUTH_JWT, .jwt_alg = JWT_HS256, .jwt_secret = jsecret,
                                .jwt_secret_len = 32, .issuer = "iss", .audience = "aud",
                                .clock_skew_ms = 60000};
static struct pool pool;
static struct rate_limiter *limiter;
static uint64_t latest;                 /* the latest time given to the limiter */

static void inside(struct h1_slice v, const char *head, size_t n)
{
    FUZZ_CHECK(!v.p || (v.p >= head && v.p + v.len <= head + n));
}

static void setup(void)
{
    if (limiter)
        return;
    if (pool_init(&pool, &cpool) < 0 || !(limiter = rate_limiter_new(&crl)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct h1_header slots[SLOTS];
    struct h1_request req;
    struct h1_slice v;
    char name[16], *head;
    size_t n, hlen;
    uint64_t now = 0, hash;
    int r;

    setup();
    if (size < 1)
        return 0;
    n = data[0] & 15u;
    if (size < 1 + n + 8)
        return 0;
    memcpy(name, data + 1, n);
    name[n] = '\0';
    memcpy(&now, data + 1 + n, 8);
    now >>= 8;                          /* keep clear of overflow at the top */
    if (now > latest)
        latest = now;
    hlen = size - 1 - n - 8;
    head = malloc(hlen ? hlen : 1);
    if (!head)
        return 0;
    memcpy(head, data + 1 + n + 8, hlen);
    h1_request_init(&req, slots, SLOTS);
    r = h1_parse_request(head, hlen, NULL, &req);
    if (r > 0) {
        if (n && strlen(name) == n) {
            if (route_cookie(req.headers, req.nheaders, name, &v))
                inside(v, head, (size_t)r);
            if (req.query.p && route_query_param(req.query, name, &v))
                inside(v, head, (size_t)r);
        }
        {
            struct auth_request ar;
            enum auth_result res = auth_begin(NULL, &cauth, &req, now, &ar);

            FUZZ_CHECK(res == AUTH_DENIED || res == AUTH_VERIFY);
            /* A random token never passes an HMAC check; it must only be read safely. */
            const char *why = NULL;
            FUZZ_CHECK(jwt_check(NULL, &cjwt, &req, (int64_t)(now >> 20), &why) == AUTH_DENIED && why);
            FUZZ_CHECK(res != AUTH_VERIFY || (strlen(ar.user) < sizeof(ar.user) &&
                                              !strchr(ar.user, ':') && ar.hash));
        }
        struct backend *b = sticky_lookup(&pool, &req);
        FUZZ_CHECK(!b || (b >= pool.backends && b < pool.backends + pool.nbackends));
        for (int k = HASH_KEY_SOURCE_IP; k <= HASH_KEY_GLOBAL; k++) {
            if (k == HASH_KEY_SOURCE_IP)
                continue;           /* no client address here */
            if ((k == HASH_KEY_HEADER || k == HASH_KEY_COOKIE || k == HASH_KEY_QUERY) &&
                (!n || strlen(name) != n))
                continue;
            if (balance_request_key((enum hash_key_kind)k, name, NULL, &req, &hash)) {
                uint64_t wait = rate_limiter_take(limiter, hash, now);
                FUZZ_CHECK(wait <= latest - now + crl.interval_ns);
            }
        }
    }
    free(head);

    /* base64 on the raw bytes: never more than 3/4 of the input out. */
    {
        char out[64];
        int m = auth_base64_decode((const char *)data, size < 80 ? size : 80, out, sizeof(out));
        FUZZ_CHECK(m == -1 || (m >= 1 && (size_t)m <= (size < 80 ? size : 80) / 4 * 3));
    }

    /* The JSON reader on the raw bytes: never past them, whatever they are. */
    {
        char *copy = malloc(size ? size : 1);
        bool match = false;

        if (copy) {
            memcpy(copy, data, size);
            if (jwt_json_object(copy, size, "aud", &match))
                FUZZ_CHECK(size >= 2 && memchr(copy, '{', size) && memchr(copy, '}', size));
            free(copy);
        }
    }

    /* base64url: at most 3/4 of the input out, and a decoding is unique. */
    {
        unsigned char out[64];
        size_t in = size < 80 ? size : 80;
        int m = jwt_b64url_decode((const char *)data, in, out, sizeof(out));
        FUZZ_CHECK(m == -1 || (size_t)m <= in * 3 / 4);
    }

    /* A cookie sluice wrote, sent back, names its backend. */
    {
        static char msg[256];
        char cookie[128];
        struct backend *want = &pool.backends[data[0] % 3];
        int len = sticky_set_cookie(&cpool.sticky, want, cookie, sizeof(cookie));
        int m;

        FUZZ_CHECK(len > 0);
        *strchr(cookie, ';') = '\0';
        m = snprintf(msg, sizeof(msg), "GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1; %s\r\n\r\n", cookie);
        h1_request_init(&req, slots, SLOTS);
        FUZZ_CHECK(h1_parse_request(msg, (size_t)m, NULL, &req) == m);
        FUZZ_CHECK(sticky_lookup(&pool, &req) == want);
    }
    return 0;
}
