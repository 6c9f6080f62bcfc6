/* The request keys of the hashing algorithms: what the proxies hash before
 * they pick, per the pool's balance and hash_key (balance.h has the
 * contract). xxHash3 with a fixed seed, so the same key gives the same hash
 * in every sluice process. */
#include <netinet/in.h>
#include <string.h>
#include <xxhash.h>

#include "balance/internal.h"
#include "proto/http1.h"
#include "route/route.h"

/* The client's IP, without the port. An IPv4-mapped IPv6 address (a v4
 * client on a dual-stack socket) hashes as plain IPv4, so the same client
 * maps the same way whichever kind of socket took it. */
static bool hash_key_ip(const struct addr *a, uint64_t *hash)
{
    const void *p;
    size_t len;

    if (!a)
        return false;
    if (a->ss.ss_family == AF_INET) {
        p = &((const struct sockaddr_in *)&a->ss)->sin_addr;
        len = 4;
    } else if (a->ss.ss_family == AF_INET6) {
        const struct in6_addr *v6 = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;

        p = IN6_IS_ADDR_V4MAPPED(v6) ? (const void *)&v6->s6_addr[12] : (const void *)v6;
        len = IN6_IS_ADDR_V4MAPPED(v6) ? 4 : 16;
    } else {
        return false;
    }
    *hash = XXH3_64bits_withSeed(p, len, BALANCE_SEED_KEY);
    return true;
}

/* An empty value is no key: requests without a real one must not all pile
 * onto a single backend. */
static bool hash_key_slice(struct h1_slice s, uint64_t *hash)
{
    if (!s.p || s.len == 0)
        return false;
    *hash = XXH3_64bits_withSeed(s.p, s.len, BALANCE_SEED_KEY);
    return true;
}

bool balance_hash_l4(const struct conf_pool *p, const struct addr *client, uint64_t *hash)
{
    if (p->balance == BALANCE_IP_HASH ||
        ((p->balance == BALANCE_RING_HASH || p->balance == BALANCE_MAGLEV) &&
         p->hash_key == HASH_KEY_SOURCE_IP))
        return hash_key_ip(client, hash);
    return false;
}

bool balance_request_key(enum hash_key_kind kind, const char *name, const struct addr *client,
                         const struct h1_request *req, uint64_t *hash)
{
    const struct h1_header *h;
    struct h1_slice v;

    switch (kind) {
    case HASH_KEY_SOURCE_IP:
        return hash_key_ip(client, hash);
    case HASH_KEY_PATH:
        /* "http://host" and "http://host?q" have an empty path: "/". */
        v = req->path.len ? req->path : (struct h1_slice){ "/", 1 };
        return hash_key_slice(v, hash);
    case HASH_KEY_HEADER:
        h = h1_find_header(req->headers, req->nheaders, name);
        return h && hash_key_slice(h->value, hash);
    case HASH_KEY_COOKIE:
        return route_cookie(req->headers, req->nheaders, name, &v) && hash_key_slice(v, hash);
    case HASH_KEY_QUERY:
        return req->query.p && route_query_param(req->query, name, &v) &&
               hash_key_slice(v, hash);
    case HASH_KEY_GLOBAL:
        *hash = BALANCE_SEED_KEY;
        return true;
    }
    return false;
}

bool balance_hash_http(const struct conf_pool *p, const struct addr *client,
                       const struct h1_request *req, uint64_t *hash)
{
    if (p->balance == BALANCE_IP_HASH)
        return hash_key_ip(client, hash);
    if (p->balance != BALANCE_RING_HASH && p->balance != BALANCE_MAGLEV)
        return false;
    return balance_request_key(p->hash_key, p->hash_key_name, client, req, hash);
}
