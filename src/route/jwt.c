/* JWT bearer tokens at the edge (route.h has the contract): a compact JWS
 * (RFC 7515) with one of HS256, RS256 or ES256, checked against the one key
 * and algorithm the config names, or against the key a JSON Web Key Set
 * (jwks.h) holds under the token header's "kid". The token's own "alg"
 * must be the key's, so a token cannot choose "none" or swap an RSA key
 * for an HMAC secret. Then the claims exp, nbf, iss and aud (RFC 7519).
 *
 * Tokens that passed are remembered in the worker's auth cache, so a
 * client's next requests with the same token skip the signature; with a
 * key set, under the set's generation, so that a change of keys ends that.
 *
 * The JSON reader is sluice's own and small (json.c): exactly RFC 8259,
 * nested up to JSON_MAX_DEPTH, keeping only the top-level members sluice
 * needs. Untrusted bytes: fuzz/fuzz_request_keys.c feeds it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <xxhash.h>

#include "core/clock.h"
#include "proto/tls.h"
#include "route/internal.h"
#include "route/jwks.h"

#define JWT_MAX_TOKEN 8192
/* Seconds, some 30 million years: exp and nbf are held within it, and
 * clock_skew within a quarter of it (every date or skew beyond means the
 * same), so that jwt_check's sums and the cache's milliseconds cannot
 * overflow. */
#define JWT_MAX_DATE 1000000000000000ll

int jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t size)
{
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (len % 4 == 1)
        return -1;                       /* no encoding ends there */
    for (size_t i = 0; i < len; i++) {
        int v = route_b64_digit((unsigned char)in[i], true);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= size)
                return -1;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    /* Leftover bits must be zero: one text, one decoding. */
    if (bits && (acc & ((1u << bits) - 1)))
        return -1;
    return (int)n;
}

/* The members a token's header and payload may carry that sluice reads. */
struct jwt_fields {
    const char *audience;        /* to match aud against */
    char alg[16];
    bool has_exp, has_nbf, has_iss, has_kid, aud_match, bad_claim, bad_kid, cut;
    int64_t exp, nbf;
    char iss[512];
    char kid[JWKS_MAX_KID];
};

/* One element of aud: a string is matched, anything else skipped. */
static bool aud_elem(struct jread *j, void *ctx)
{
    struct jwt_fields *f = ctx;
    char aud[512];
    bool cut = false;

    if (j->p >= j->end || *j->p != '"')
        return jread_value(j, 2);
    if (!jread_string(j, aud, sizeof(aud), &cut))
        return false;
    f->aud_match |= f->audience && !cut && strcmp(aud, f->audience) == 0;
    return true;
}

static bool claim(struct jread *j, const char *key, void *ctx)
{
    struct jwt_fields *f = ctx;
    bool ok = false;
    int64_t v = 0;
    char c = j->p < j->end ? *j->p : 0;

    if (strcmp(key, "alg") == 0 && c == '"')
        return jread_string(j, f->alg, sizeof(f->alg), &f->cut);
    if (strcmp(key, "kid") == 0) {
        /* A kid that is not a string names no key (RFC 7515 4.1.4). */
        f->has_kid = true;
        if (c == '"')
            return jread_string(j, f->kid, sizeof(f->kid), &f->cut);
        f->bad_kid = true;
        return jread_value(j, 1);
    }
    if (strcmp(key, "iss") == 0 && c == '"') {
        f->has_iss = true;
        return jread_string(j, f->iss, sizeof(f->iss), &f->cut);
    }
    if (strcmp(key, "exp") == 0 || strcmp(key, "nbf") == 0) {
        /* A NumericDate is a number (RFC 7519 2): "exp": "1" or null is no
         * date, not a token without one. */
        if (c != '-' && (c < '0' || c > '9')) {
            f->bad_claim = true;
            return jread_value(j, 1);
        }
        if (!jread_number(j, &v, &ok))
            return false;
        f->bad_claim |= !ok;
        v = v > JWT_MAX_DATE ? JWT_MAX_DATE : v < -JWT_MAX_DATE ? -JWT_MAX_DATE : v;
        if (key[0] == 'e') {
            f->exp = v;
            f->has_exp = true;
        } else {
            f->nbf = v;
            f->has_nbf = true;
        }
        return true;
    }
    if (strcmp(key, "aud") == 0 && c == '"')
        return aud_elem(j, f);
    if (strcmp(key, "aud") == 0 && c == '[')
        return jread_array(j, 2, aud_elem, f);
    return jread_value(j, 1);
}

/* One top-level object: the members sluice reads into f; nothing after
 * it, and no value it keeps cut short. */
static bool read_object(const char *p, size_t n, const char *audience, struct jwt_fields *f)
{
    struct jread j = {p, p, p + n, NULL};

    f->audience = audience;
    jread_ws(&j);
    if (j.p >= j.end || *j.p != '{' || !jread_object(&j, 1, claim, f))
        return false;
    jread_ws(&j);
    return j.p == j.end && !f->cut;
}

bool jwt_json_object(const char *p, size_t n, const char *audience, bool *aud_match)
{
    struct jwt_fields f;

    memset(&f, 0, sizeof(f));
    if (!read_object(p, n, audience, &f))
        return false;
    *aud_match = f.aud_match;
    return true;
}

static const char *const alg_names[] = {"", "HS256", "RS256", "ES256"};

/* The signature of data (header.payload) against the key of the source's
 * current set that the header names: its kid's key when it has a kid,
 * else each key of its alg in turn, JWKS_MAX_TRIES at most. false with
 * *why for the log. A kid the set lacks asks the fetcher for a new set
 * (rate-limited): the issuer may have begun signing with a new key. */
static bool jwks_verify(struct jwks_source *src, const struct jwt_fields *hf, const void *data,
                        size_t len, const unsigned char *sig, size_t siglen, const char **why)
{
    struct jwks_set *set;
    int alg = 0;
    bool ok = false;

    for (int i = 1; i <= 3; i++)
        if (strcmp(hf->alg, alg_names[i]) == 0)
            alg = i;
    *why = "wrong algorithm";
    if (!alg)
        return false;
    *why = "no key set";
    if (!(set = jwks_source_acquire(src)))
        return false;
    if (hf->has_kid) {
        bool known;
        const struct jwks_key *k = jwks_set_find(set, hf->kid, alg, &known);

        *why = known ? "wrong algorithm" : "unknown key";
        if (k) {
            *why = "bad signature";
            ok = tls_jws_verify(alg, k->pkey, k->secret, k->secret_len, data, len, sig, siglen);
        } else if (!known) {
            jwks_source_ask(src, (int64_t)(clock_now_ms()));
        }
    } else {
        int tries = 0;

        *why = "wrong algorithm";
        for (size_t i = 0; i < set->nkeys && tries < JWKS_MAX_TRIES && !ok; i++) {
            const struct jwks_key *k = &set->keys[i];
            if (k->alg != alg)
                continue;
            tries++;
            *why = "bad signature";
            ok = tls_jws_verify(alg, k->pkey, k->secret, k->secret_len, data, len, sig, siglen);
        }
    }
    jwks_set_release(set);
    return ok;
}

/* A token that passed is remembered (in the worker's auth cache) until its
 * exp, or for JWT_CACHE_TTL_S: a client sends the same token on every
 * request, and an RSA or ECDSA verification costs tens of microseconds. */
#define JWT_CACHE_TTL_S 300

enum auth_result jwt_check(struct auth_cache *cache, const struct conf_auth *a,
                           const struct h1_request *req, int64_t now_ms, const char **why)
{
    bool twice;
    const struct h1_header *h = route_auth_field(req, &twice);
    static __thread unsigned char buf[JWT_MAX_TOKEN];
    struct jwt_fields hf, f;
    XXH128_hash_t key;
    const char *tok, *dot1, *dot2, *end;
    unsigned char sig[512];
    int n, siglen;
    int64_t skew = a->clock_skew_ms / 1000 > JWT_MAX_DATE / 4
                       ? JWT_MAX_DATE / 4 : (int64_t)(a->clock_skew_ms / 1000);
    int64_t now = now_ms / 1000;

    uint64_t generation = a->jwks ? jwks_source_generation(a->jwks) : 0;

    *why = "two Authorization fields";
    if (twice)
        return AUTH_DENIED;
    *why = "no bearer token";
    if (!h || !h->value.p || h->value.len < 7 || strncasecmp(h->value.p, "bearer ", 7) != 0)
        return AUTH_DENIED;
    tok = h->value.p + 7;
    end = h->value.p + h->value.len;
    while (tok < end && *tok == ' ')
        tok++;
    key = auth_cache_key(cache, tok, (size_t)(end - tok));
    /* A token passed under one set of keys is not remembered under the
     * next (a generation changes only with the keys). */
    key.low64 ^= generation;
    key.high64 ^= generation * 0x9E3779B97F4A7C15ull;
    if (auth_cache_hit(cache, a, key, now_ms)) {
        *why = NULL;
        return AUTH_OK;
    }
    *why = "malformed token";
    if (end - tok > JWT_MAX_TOKEN || !(dot1 = memchr(tok, '.', (size_t)(end - tok))) ||
        !(dot2 = memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1))) ||
        memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)))
        return AUTH_DENIED;
    memset(&hf, 0, sizeof(hf));
    memset(&f, 0, sizeof(f));
    /* The header: the algorithm must be the one configured. */
    n = jwt_b64url_decode(tok, (size_t)(dot1 - tok), buf, sizeof(buf));
    if (n <= 0 || !read_object((const char *)buf, (size_t)n, NULL, &hf) || hf.bad_kid)
        return AUTH_DENIED;
    if (!a->jwks && strcmp(hf.alg, alg_names[a->jwt_alg]) != 0) {
        *why = "wrong algorithm";
        return AUTH_DENIED;
    }
    siglen = jwt_b64url_decode(dot2 + 1, (size_t)(end - dot2 - 1), sig, sizeof(sig));
    if (siglen <= 0)
        return AUTH_DENIED;
    *why = "bad signature";
    if (a->jwks) {
        if (!jwks_verify(a->jwks, &hf, tok, (size_t)(dot2 - tok), sig, (size_t)siglen, why))
            return AUTH_DENIED;
    } else if (!tls_jws_verify(a->jwt_alg, a->jwt_key, a->jwt_secret, a->jwt_secret_len, tok,
                               (size_t)(dot2 - tok), sig, (size_t)siglen)) {
        return AUTH_DENIED;
    }
    /* The payload, once the signature says it is the issuer's. */
    *why = "malformed claims";
    n = jwt_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf, sizeof(buf));
    if (n <= 0 || !read_object((const char *)buf, (size_t)n, a->audience, &f) || f.bad_claim)
        return AUTH_DENIED;
    *why = "expired";
    if (f.has_exp && now > f.exp + skew)
        return AUTH_DENIED;
    *why = "not valid yet";
    if (f.has_nbf && now + skew < f.nbf)
        return AUTH_DENIED;
    *why = "wrong issuer";
    if (a->issuer && (!f.has_iss || strcmp(f.iss, a->issuer) != 0))
        return AUTH_DENIED;
    *why = "wrong audience";
    if (a->audience && !f.aud_match)
        return AUTH_DENIED;
    {
        int64_t until = now + JWT_CACHE_TTL_S;

        if (f.has_exp && f.exp + skew < until)
            until = f.exp + skew;
        /* Whole seconds, as the checks above count them. */
        auth_cache_store(cache, a, key, f.has_nbf ? (f.nbf - skew) * 1000 : INT64_MIN,
                         until * 1000 + 999);
    }
    *why = NULL;
    return AUTH_OK;
}
