/* JSON Web Key Sets (RFC 7517) for `auth: {type: jwt}` with `jwks_file`
 * or `jwks_url`: the keys a token's header `kid` picks from.
 *
 * A set is parsed once (jwks.c) into an immutable struct jwks_set of
 * OpenSSL keys. A struct jwks_source is what an auth block points at: the
 * set from a file (fixed for the process's life: a reload reads the file
 * again), or the latest set fetched from a URL by one helper thread
 * (jwks_fetch.c), which swaps it in while workers verify with it.
 *
 * Sharing: a worker takes a reference on the current set under the
 * source's lock (a pointer copy and an increment), verifies with it
 * unlocked, and drops it; whoever drops the last reference frees the set.
 * That lock is taken only when a token is not in the worker's auth cache,
 * i.e. when a signature is about to be checked (tens of microseconds),
 * never for a remembered token. The source's generation changes whenever
 * its keys do, and is part of the auth cache's key, so that a token is
 * never remembered across a change of keys: one signed by a key the issuer
 * removed stops passing as soon as sluice has the new set. */
#ifndef SLUICE_ROUTE_JWKS_H
#define SLUICE_ROUTE_JWKS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;

#define JWKS_MAX_KEYS 100                /* in one set */
#define JWKS_MAX_KID 256                 /* bytes of a kid, its NUL included */
#define JWKS_FILE_MAX_BYTES (1 << 20)    /* jwks_file */
#define JWKS_URL_MAX_BYTES (256 * 1024)  /* a fetched set */
#define JWKS_MAX_TRIES 4                 /* keys tried for a token without kid */
#define JWKS_REFRESH_DEFAULT_MS (10 * 60 * 1000)

struct jwks_key {
    char kid[JWKS_MAX_KID];      /* "" when the key has none (has_kid false) */
    bool has_kid;
    int alg;                     /* JWT_RS256, JWT_ES256 or JWT_HS256 (config.h) */
    void *pkey;                  /* EVP_PKEY for RS256/ES256 (proto/tls_jwk.c) */
    unsigned char *secret;       /* HS256 (kty oct) */
    size_t secret_len;
};

/* Owner: its references (refs): the source holds one while the set is
 * current, a worker one while it verifies a token. Immutable once made. */
struct jwks_set {
    atomic_uint refs;
    uint64_t digest;             /* of every key's kid, alg and material, in order */
    size_t nkeys;
    struct jwks_key keys[];
};

/* Where a parse failed: line and column in the document, and why. */
struct jwks_error {
    int line, col;
    char text[320];
};
/* A key left out of a set (unknown kty, alg or crv, use other than "sig",
 * a duplicate kid, a secret from a URL): where and why, for a warning. */
typedef void (*jwks_warn_fn)(void *ctx, int line, int col, const char *text);

/* Read a JWKS document. secrets_ok: kty "oct" keys (HS256 secrets) are
 * taken (files); a URL's are skipped, since anyone who can fetch the URL
 * could sign with them. Returns a set with one reference, or NULL with
 * err filled: bad JSON, a key sluice knows but that is unusable (an RSA
 * modulus under 2048 bits, a point off the curve, an alg that contradicts
 * kty, a member of the wrong type), more than JWKS_MAX_KEYS keys, or no
 * usable key at all. warn (may be NULL) hears about each key skipped. */
struct jwks_set *jwks_parse(const char *doc, size_t len, bool secrets_ok, jwks_warn_fn warn,
                            void *ctx, struct jwks_error *err);
void jwks_set_release(struct jwks_set *set);

/* The key of set with this kid that signs with alg; NULL when none does.
 * *kid_known: some key has this kid (with another alg, then). */
const struct jwks_key *jwks_set_find(const struct jwks_set *set, const char *kid, int alg,
                                     bool *kid_known);

/* Owner: the auth block (struct conf_auth) that names it. */
struct jwks_source {
    pthread_mutex_t lock;        /* set: swapped by the fetcher, referenced by workers */
    struct jwks_set *set;        /* current; NULL until a first fetch */
    atomic_uint_fast64_t generation;   /* changes after set does (to new keys) */
    /* jwks_url only: set at config load, read-only after */
    char *url;                   /* for logs */
    char *host, *port, *path;
    void *client;                /* proto/tls_get.c's TLS client */
    uint64_t refresh_ms;
    atomic_int_fast64_t asked_ms;  /* monotonic ms of the last refetch a token's
                                      unknown kid asked for */
    /* the fetcher's (jwks_fetch.c), under its lock */
    int64_t due_ms;              /* next fetch, monotonic; INT64_MIN: the first, at
                                    once; INT64_MAX: one is running */
    uint64_t retry_ms;           /* backoff after failures; 0 after a success */
    bool asked;                  /* the next fetch is a token's kid's doing */
    bool tried;                  /* a first fetch ended, well or not */
    struct jwks_source *next;
};

/* A source for the set in a file (takes set's reference). */
struct jwks_source *jwks_source_fixed(struct jwks_set *set);
/* A source for a URL: "https://host[:port][/path]" checked (0, or -1 with
 * why in err); ca_file NULL for the system's CAs. Nothing is fetched
 * until jwks_fetcher_start. */
struct jwks_source *jwks_source_url(const char *url, const char *ca_file, uint64_t refresh_ms,
                                    char *err, size_t errlen);
void jwks_source_free(struct jwks_source *s);

/* The current set with a reference taken (release it), or NULL. */
struct jwks_set *jwks_source_acquire(struct jwks_source *s);
/* Make set (its reference taken over) current, when its keys differ from
 * the current ones (else it is released). true when they differed. */
bool jwks_source_publish(struct jwks_source *s, struct jwks_set *set);
static inline uint64_t jwks_source_generation(struct jwks_source *s)
{
    return atomic_load_explicit(&s->generation, memory_order_acquire);
}
/* A token named a kid the set lacks: the issuer may have rotated its keys.
 * Asks the fetcher for the set now, at most once per JWKS_ASK_INTERVAL_MS
 * per source (tokens with made-up kids must not turn into a stream of
 * fetches). No-op for files. Cheap, never blocks on the network. */
#define JWKS_ASK_INTERVAL_MS 30000
void jwks_source_ask(struct jwks_source *s, int64_t now_ms);

/* The fetcher thread (jwks_fetch.c), for every jwks_url of cfg's auth
 * blocks: started after the config is loaded (never by `sluice check` or
 * a reload's validation), stopped before the config is freed. A first
 * fetch for each source happens at once. 0, or -errno. */
int jwks_fetcher_start(const struct config *cfg);
void jwks_fetcher_stop(void);
/* Wait until every source's first fetch ended (well or not), at most
 * timeout_ms. For a process that takes over from another at a reload: the
 * old one serves meanwhile, so the new one need not start with no keys. A
 * fresh start does not wait. */
void jwks_fetcher_wait_first(uint64_t timeout_ms);
#define JWKS_FETCH_TIMEOUT_MS 5000
/* Wakes the fetcher for a source whose due_ms was moved (jwks.c). */
void jwks_fetcher_wake(struct jwks_source *s);

#endif
