/* Sticky sessions: a cookie that names the backend a client was sent to, so
 * that its next requests go there too (route.h has the contract). The
 * proxy asks sticky_lookup before it balances a request's first try, and
 * adds sticky_set_cookie's header to a response from any other backend. */
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "balance/balance.h"
#include "proto/http1.h"
#include "route/route.h"

#define STICKY_ID_DIGITS 16
#define STICKY_MAX_COOKIES 8     /* occurrences of the name looked at */
/* Fixed, like the balancers' seeds: every sluice must compute the same id. */
#define STICKY_SEED 0x736c756963655354ULL

uint64_t sticky_id_for(const char *pool, const char *backend)
{
    char key[512];
    int n;

    /* "POOL/BACKEND": a cookie from one pool never matches another pool's
     * backend of the same name. Names are at most 128 bytes (config). */
    n = snprintf(key, sizeof(key), "%s/%s", pool, backend);
    if (n < 0 || (size_t)n >= sizeof(key))
        n = (int)sizeof(key) - 1;
    return XXH3_64bits_withSeed(key, (size_t)n, STICKY_SEED);
}

/* Exactly 16 lowercase hex digits, as sticky_set_cookie writes them. */
static bool parse_id(struct h1_slice v, uint64_t *id)
{
    uint64_t x = 0;

    if (v.len != STICKY_ID_DIGITS)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.p[i];
        unsigned d;

        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        x = x << 4 | d;
    }
    *id = x;
    return true;
}

struct backend *sticky_lookup(struct pool *p, const struct h1_request *req)
{
    struct h1_slice v = {0};
    uint64_t id;

    if (!p->conf->sticky.cookie)
        return NULL;
    /* Every cookie of the name, the first that names a backend winning: a
     * browser sends one per Path and Domain (most specific first), and a
     * stale one, or one set by another pool or application, must not hide
     * the session's. A handful at most, so that a head stuffed with
     * thousands of them does not cost a scan of the pool each. */
    for (int seen = 0; seen < STICKY_MAX_COOKIES &&
         route_cookie_next(req->headers, req->nheaders, p->conf->sticky.cookie, &v); seen++) {
        if (!parse_id(v, &id))
            continue;
        /* A linear scan of integers: pools have tens of backends, and this
         * costs less than the cookie parse before it. */
        for (uint32_t i = 0; i < p->nbackends; i++)
            if (!backend_vacant(&p->backends[i]) && p->backends[i].sticky_id == id)
                return &p->backends[i];
    }
    return NULL;
}

bool sticky_usable(const struct backend *b)
{
    int s = atomic_load_explicit(&b->state, memory_order_relaxed);

    if (atomic_load_explicit(&b->ejected, memory_order_relaxed))
        return false;
    if (s == BACKEND_DRAINING)
        return !atomic_load_explicit(&b->drain_expired, memory_order_relaxed);
    return s == BACKEND_UP || s == BACKEND_SLOW_START;
}

int sticky_set_cookie(const struct conf_sticky *s, const struct backend *b, char *out,
                      size_t size)
{
    char max_age[40] = "";
    int n;

    if (s->ttl_ms)
        snprintf(max_age, sizeof(max_age), "; Max-Age=%llu",
                 (unsigned long long)(s->ttl_ms / 1000u));
    n = snprintf(out, size, "%s=%016llx; Path=%s%s%s%s", s->cookie,
                 (unsigned long long)b->sticky_id, s->path, max_age,
                 s->http_only ? "; HttpOnly" : "", s->secure ? "; Secure" : "");
    return n < 0 || (size_t)n >= size ? -1 : n;
}
