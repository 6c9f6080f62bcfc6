/* Routing: which rule of a listener's `routes` a request matches (first
 * match wins, in config order) and the edge of every rule's action.
 *
 * The table is built once per listener from the config and is immutable
 * afterwards, shared read-only by every worker. A lookup is not a scan of
 * the rules: hosts are looked up in a hash map (exact names) and a suffix
 * map (wildcards), then paths in a trie (prefixes) and a hash map (exact
 * paths); only the rules those give, plus the rules with a regex or with no
 * host/path condition, are tested in full, lowest index first. Regexes are
 * PCRE2, JIT-compiled, and only run for rules that need them. */
#ifndef SLUICE_ROUTE_H
#define SLUICE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <xxhash.h>

#include "config/config.h"
#include "proto/http1.h"

struct pool;
struct backend;

/* The parts of a request that routes look at; slices into the request
 * buffer (see proto/http1.h). */
struct route_request {
    struct h1_slice host;        /* without the port; any case */
    struct h1_slice path;        /* normalised as the listener says (route_path_normalize);
                                    "/" when empty */
    struct h1_slice query;       /* after '?'; p == NULL when none */
    enum h1_method method;
    struct h1_slice method_name; /* for H1_OTHER */
    const struct h1_header *headers;   /* Cookie is read from here too */
    uint32_t nheaders;
    const struct addr *peer;     /* the client connection's address; NULL = unknown
                                    (a rule with match.source does not match) */
};

struct route_table;

/* ---- path normalisation (route/path.c) ---- */

/* Would route_path_normalize change path under opt? Cheap; false for most
 * paths, which then need no copy. */
bool route_path_needs_normalizing(struct h1_slice path, const struct conf_path_norm *opt);

/* The normalised form of path into out (room for path.len bytes: it never
 * grows), its length in *out_len; returns 0. Steps, as opt says:
 *  - normalize: %XX of an unreserved character (RFC 3986 2.3) decoded, the
 *    hex digits of the other encodings upper-cased, and "." and ".."
 *    segments removed (RFC 3986 5.2.4). A '%' without two hex digits after
 *    it, or a ".." above the root, is an error;
 *  - escaped_slashes: %2F and %5C kept, refused (an error) or decoded;
 *  - merge_slashes: empty segments removed ("//" → "/").
 * A trailing dot segment leaves a trailing "/" ("/a/." → "/a/"). A path
 * that does not start with '/' ("*") is copied as it is. Returns -1 for an
 * error, *why saying which (static text); the proxy answers 400. */
int route_path_normalize(struct h1_slice path, const struct conf_path_norm *opt, char *out,
                         uint32_t *out_len, const char **why);

/* `sluice check`: warn, at the rule's position, about every path or
 * path_prefix rule that no normalised path can match ("/a/../b", "//x",
 * "/%7Euser"; a prefix's last, partial segment may hold dots). Returns the
 * number of warnings. */
int route_check_paths(const struct conf_listener *l, FILE *diag);

/* Build the table for a listener's routes. NULL on failure (out of memory or
 * a regex that does not compile — config_load already rejected those, with
 * their position). */
struct route_table *route_table_build(const struct conf_listener *l);
void route_table_free(struct route_table *t);

/* The first rule that matches, or NULL. */
const struct conf_route *route_match(const struct route_table *t, const struct route_request *r);

/* For a split: the pool chosen by weight for the given random number. */
struct conf_pool *route_split_pick(const struct conf_route *r, uint64_t random);

/* `sluice check`: warn, at the later rule's position, about every rule that
 * can never match because an earlier rule catches all its requests
 * ("FILE:LINE:COL: warning: route #3 can never match: route #1 (line 12)
 * matches every request it would"). Returns the number of warnings. */
int route_check_shadowed(const struct conf_listener *l, FILE *diag);

/* ---- added by the route module (not in the lead's first contract) ---- */

/* The first query parameter named name (exact, raw: no percent-decoding) and
 * its raw value, empty for a parameter without '='. The same reading routes
 * use (pairs split at '&'); for hash keys "query:NAME". */
bool route_query_param(struct h1_slice query, const char *name, struct h1_slice *value);

/* The first cookie named name (exact) in any Cookie header, pairs split at
 * ';' with SP/HTAB around names and values ignored; a pair without '=' has
 * an empty value. The reading routes use; for hash keys "cookie:NAME". */
bool route_cookie(const struct h1_header *headers, uint32_t nheaders, const char *name,
                  struct h1_slice *value);
/* The next cookie named name after *value, one found by route_cookie or an
 * earlier call; from the first when value->p is NULL. A client may send a
 * name twice (cookies of different Paths or Domains): this visits each. */
bool route_cookie_next(const struct h1_header *headers, uint32_t nheaders, const char *name,
                       struct h1_slice *value);

/* Compile pattern the way route_table_build does (PCRE2, no options: bytes,
 * not UTF-8; unanchored). 0 when it compiles; otherwise -1 with PCRE2's
 * message in msg and the byte offset of the error in *offset. For the
 * config's validation, so that it accepts exactly what the table builds. */
int route_regex_check(const char *pattern, char *msg, size_t msglen, size_t *offset);

/* Free the calling thread's regex scratch space (PCRE2 match data) now
 * rather than at thread exit, where it is freed anyway. Optional. */
void route_thread_done(void);

/* ---- edge filters ---- */

/* Sticky sessions (sticky.c), for pools with a `sticky` block. The cookie's
 * value is 16 hex digits of a fixed-seed hash of "POOL/BACKEND": it does
 * not reveal the address, and every sluice process (active-active, or old
 * and new across a reload) gives a backend the same value.
 *
 * sticky_lookup: the backend the request's cookie names, in any state, or
 * NULL (no cookie, a malformed value, or one no backend of the pool has).
 * sticky_usable: may it take this request? UP and SLOW_START backends, and
 * DRAINING ones until drain_timeout ends (a drain lets sessions finish, as
 * in HAProxy and NGINX), whatever their weight; never DOWN, DISABLED or
 * ejected ones, whose clients are balanced anew and get a new cookie.
 * sticky_set_cookie: the Set-Cookie value that sends the client to b
 * ("NAME=ID; Path=/; Max-Age=N; HttpOnly"); its length, or -1 when it does
 * not fit in size. */
uint64_t sticky_id_for(const char *pool, const char *backend);
struct backend *sticky_lookup(struct pool *p, const struct h1_request *req);
bool sticky_usable(const struct backend *b);
int sticky_set_cookie(const struct conf_sticky *s, const struct backend *b, char *out,
                      size_t size);

/* Rate limiting (rate_limit.c): one limiter per `rate_limit` block, shared
 * by every worker (the runtime owns them; a reload starts them afresh).
 * rate_limiter_take counts one request (or connection) of key `hash` at
 * now_ns (monotonic) and returns 0 when it is allowed, else the ns until
 * one more of that key would be. At most 1 + burst pass at once, then one
 * per 1/rate. A limiter tracks about max_keys keys; beyond that the keys
 * freest soonest are forgotten (counted), which lets requests through
 * rather than refusing them. */
struct rate_limiter;
struct rate_limiter *rate_limiter_new(const struct conf_rate_limit *c);
void rate_limiter_free(struct rate_limiter *rl);
uint64_t rate_limiter_take(struct rate_limiter *rl, uint64_t hash, uint64_t now_ns);
/* count requests of key `hash` that another instance let through (peers/):
 * the key's bucket empties as if they had come here, though by no more
 * than a full bucket and one second (or one interval, if longer) past now,
 * so that a burst a peer let through cannot lock the key out here for
 * long. */
void rate_limiter_charge(struct rate_limiter *rl, uint64_t hash, uint32_t count, uint64_t now_ns);
const struct conf_rate_limit *rate_limiter_conf(const struct rate_limiter *rl);
uint64_t rate_limiter_limited(const struct rate_limiter *rl);
uint64_t rate_limiter_evicted(const struct rate_limiter *rl);

/* HTTP Basic authentication (auth.c) for routes and listeners with `auth`.
 * auth_begin reads the request's Authorization header: AUTH_OK when this
 * worker's cache holds these credentials as good; AUTH_DENIED when they are
 * missing or malformed (answer 401); AUTH_VERIFY when the password must be
 * hashed: r holds what auth_verify needs, to run on a helper thread
 * (core/offload.c), and a match goes into the cache with auth_cache_put.
 * The cache is per worker (one thread), 1024 entries, 5 minutes. */
enum auth_result { AUTH_OK, AUTH_DENIED, AUTH_VERIFY };
struct auth_request {
    const struct conf_auth *conf;
    const char *hash;            /* the user's crypt(3) hash (another user's when unknown) */
    bool known;                  /* the user exists */
    XXH128_hash_t key;           /* the cache's key for the header value */
    char user[256];
    char password[256];
};
struct auth_cache;
struct auth_cache *auth_cache_new(void);
void auth_cache_free(struct auth_cache *c);
enum auth_result auth_begin(struct auth_cache *c, const struct conf_auth *a,
                            const struct h1_request *req, uint64_t now_ms, struct auth_request *r);
bool auth_verify(const struct auth_request *r);
void auth_cache_put(struct auth_cache *c, const struct auth_request *r, uint64_t now_ms);
/* The cache underneath, for JWTs too: a keyed hash of credentials (seeded
 * per cache; c may be NULL), and entries good for one auth block within a
 * time window. */
XXH128_hash_t auth_cache_key(const struct auth_cache *c, const void *p, size_t len);
bool auth_cache_hit(struct auth_cache *c, const struct conf_auth *a, XXH128_hash_t key,
                    int64_t now_ms);
void auth_cache_store(struct auth_cache *c, const struct conf_auth *a, XXH128_hash_t key,
                      int64_t from_ms, int64_t until_ms);
/* JWT bearer tokens (jwt.c), for auth type jwt: the Authorization
 * header's token checked against the block's key or secret and claims at
 * now_ms (wall clock). AUTH_OK, or AUTH_DENIED with *why ("expired",
 * "bad signature", ...; "no bearer token" when there was none). */
enum auth_result jwt_check(struct auth_cache *cache, const struct conf_auth *a,
                           const struct h1_request *req, int64_t now_ms, const char **why);
/* The JSON reader jwt_check reads token parts with: is p..p+n one RFC 8259
 * object (nesting up to 16), and does its "aud" name audience? For the fuzz
 * target and tests. */
bool jwt_json_object(const char *p, size_t n, const char *audience, bool *aud_match);
/* base64url without padding (RFC 7515); the decoded length or -1. */
int jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t size);
/* RFC 4648 base64 with padding; the decoded length, or -1 (bad input, or
 * more than size bytes). For tests and the fuzz target too. */
int auth_base64_decode(const char *in, size_t len, char *out, size_t size);

#endif
