/* JWT bearer tokens at the edge (route.h has the contract): a compact JWS
 * (RFC 7515) with one of HS256, RS256 or ES256, checked against the one key
 * and algorithm the config names (the token's own "alg" must agree, so a
 * token cannot choose "none" or swap an RSA key for an HMAC secret), then
 * the claims exp, nbf, iss and aud (RFC 7519).
 *
 * Tokens that passed are remembered in the worker's auth cache, so a
 * client's next requests with the same token skip the signature.
 *
 * The JSON reader is sluice's own and small: it accepts exactly RFC 8259
 * objects, nested up to JWT_MAX_DEPTH, and keeps only the top-level members
 * it needs. Untrusted bytes: fuzz/fuzz_request_keys.c feeds it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <xxhash.h>

#include "proto/tls.h"
#include "route/internal.h"

#define JWT_MAX_TOKEN 8192
#define JWT_MAX_DEPTH 16
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

/* ---- the JSON reader ---- */

struct json {
    const char *p, *end;
};

static void ws(struct json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hex4(const char *p)
{
    int v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* A string; its UTF-8 bytes into out (NUL-ended, cut at size - 1) when out
 * is given. *cut is set when it did not fit, or holds a NUL ("\u0000"),
 * which a C string cannot: "api\u0000x" must not read as "api". */
static bool string(struct json *j, char *out, size_t size, bool *cut)
{
    size_t n = 0;

    if (j->p >= j->end || *j->p != '"')
        return false;
    j->p++;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p++;
        char buf[4];
        size_t k = 0;

        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (j->p >= j->end)
                return false;
            c = (unsigned char)*j->p++;
            switch (c) {
            case '"': case '\\': case '/': buf[k++] = (char)c; break;
            case 'b': buf[k++] = '\b'; break;
            case 'f': buf[k++] = '\f'; break;
            case 'n': buf[k++] = '\n'; break;
            case 'r': buf[k++] = '\r'; break;
            case 't': buf[k++] = '\t'; break;
            case 'u': {
                int v;
                if (j->end - j->p < 4 || (v = hex4(j->p)) < 0)
                    return false;
                j->p += 4;
                if (v < 0x80) {
                    buf[k++] = (char)v;
                } else if (v < 0x800) {
                    buf[k++] = (char)(0xc0 | v >> 6);
                    buf[k++] = (char)(0x80 | (v & 0x3f));
                } else {
                    buf[k++] = (char)(0xe0 | v >> 12);
                    buf[k++] = (char)(0x80 | ((v >> 6) & 0x3f));
                    buf[k++] = (char)(0x80 | (v & 0x3f));
                }
                break;
            }
            default:
                return false;
            }
        } else {
            buf[k++] = (char)c;
        }
        for (size_t i = 0; i < k; i++) {
            if (out && buf[i] && n + 1 < size)
                out[n++] = buf[i];
            else if (out)
                *cut = true;
        }
    }
    if (j->p >= j->end)
        return false;
    j->p++;
    if (out)
        out[n] = '\0';
    return true;
}

/* A number; its integer part into *v when it is a plain integer or decimal
 * that fits (an exponent or a huge value leaves *ok false). */
static bool number(struct json *j, int64_t *v, bool *ok)
{
    bool neg = false, expo = false, big = false;
    int64_t x = 0;

    if (j->p < j->end && *j->p == '-') {
        neg = true;
        j->p++;
    }
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return false;
    if (*j->p == '0' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9')
        return false;                    /* no leading zeros */
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        if (x > (INT64_MAX - 9) / 10)
            big = true;
        else
            x = x * 10 + (*j->p - '0');
        j->p++;
    }
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return false;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        expo = true;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return false;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (v) {
        *ok = !expo && !big;
        *v = neg ? -x : x;
    }
    return true;
}

static bool literal(struct json *j, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return false;
    j->p += n;
    return true;
}

/* Arrays and objects are walked by one function each; a callback (or, when
 * none, value()) reads each element or member's value. */
typedef bool (*json_elem_fn)(struct json *j, void *ctx);
typedef bool (*json_member_fn)(struct json *j, const char *key, void *ctx);

static bool value(struct json *j, int depth);

/* Expects "," or the closing byte after an element: 1 more, 0 done, -1 bad. */
static int next(struct json *j, char close)
{
    ws(j);
    if (j->p < j->end && *j->p == ',') {
        j->p++;
        ws(j);
        return 1;
    }
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return 0;
    }
    return -1;
}

static bool array(struct json *j, int depth, json_elem_fn fn, void *ctx)
{
    int more;

    j->p++;                              /* '[' */
    ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return true;
    }
    do {
        if (!(fn ? fn(j, ctx) : value(j, depth)))
            return false;
    } while ((more = next(j, ']')) == 1);
    return more == 0;
}

/* Keys longer than 15 bytes reach fn as "" (no member sluice reads is). */
static bool object(struct json *j, int depth, json_member_fn fn, void *ctx)
{
    int more;

    j->p++;                              /* '{' */
    ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return true;
    }
    do {
        char key[16];
        bool cut = false;

        if (!string(j, key, sizeof(key), &cut))
            return false;
        ws(j);
        if (j->p >= j->end || *j->p++ != ':')
            return false;
        ws(j);
        if (!(fn ? fn(j, cut ? "" : key, ctx) : value(j, depth)))
            return false;
    } while ((more = next(j, '}')) == 1);
    return more == 0;
}

static bool value(struct json *j, int depth)
{
    if (j->p >= j->end || depth > JWT_MAX_DEPTH)
        return false;
    switch (*j->p) {
    case '"': return string(j, NULL, 0, NULL);
    case '{': return object(j, depth + 1, NULL, NULL);
    case '[': return array(j, depth + 1, NULL, NULL);
    case 't': return literal(j, "true");
    case 'f': return literal(j, "false");
    case 'n': return literal(j, "null");
    default: return number(j, NULL, NULL);
    }
}

/* The members a token's header and payload may carry that sluice reads. */
struct jwt_fields {
    const char *audience;        /* to match aud against */
    char alg[16];
    bool has_exp, has_nbf, has_iss, aud_match, bad_claim, cut;
    int64_t exp, nbf;
    char iss[512];
};

/* One element of aud: a string is matched, anything else skipped. */
static bool aud_elem(struct json *j, void *ctx)
{
    struct jwt_fields *f = ctx;
    char aud[512];
    bool cut = false;

    if (j->p >= j->end || *j->p != '"')
        return value(j, 2);
    if (!string(j, aud, sizeof(aud), &cut))
        return false;
    f->aud_match |= f->audience && !cut && strcmp(aud, f->audience) == 0;
    return true;
}

static bool claim(struct json *j, const char *key, void *ctx)
{
    struct jwt_fields *f = ctx;
    bool ok = false;
    int64_t v = 0;
    char c = j->p < j->end ? *j->p : 0;

    if (strcmp(key, "alg") == 0 && c == '"')
        return string(j, f->alg, sizeof(f->alg), &f->cut);
    if (strcmp(key, "iss") == 0 && c == '"') {
        f->has_iss = true;
        return string(j, f->iss, sizeof(f->iss), &f->cut);
    }
    if (strcmp(key, "exp") == 0 || strcmp(key, "nbf") == 0) {
        /* A NumericDate is a number (RFC 7519 2): "exp": "1" or null is no
         * date, not a token without one. */
        if (c != '-' && (c < '0' || c > '9')) {
            f->bad_claim = true;
            return value(j, 1);
        }
        if (!number(j, &v, &ok))
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
        return array(j, 2, aud_elem, f);
    return value(j, 1);
}

/* One top-level object: the members sluice reads into f; nothing after
 * it, and no value it keeps cut short. */
static bool read_object(const char *p, size_t n, const char *audience, struct jwt_fields *f)
{
    struct json j = {p, p + n};

    f->audience = audience;
    ws(&j);
    if (j.p >= j.end || *j.p != '{' || !object(&j, 1, claim, f))
        return false;
    ws(&j);
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
    if (n <= 0 || !read_object((const char *)buf, (size_t)n, NULL, &hf))
        return AUTH_DENIED;
    if (strcmp(hf.alg, alg_names[a->jwt_alg]) != 0) {
        *why = "wrong algorithm";
        return AUTH_DENIED;
    }
    siglen = jwt_b64url_decode(dot2 + 1, (size_t)(end - dot2 - 1), sig, sizeof(sig));
    if (siglen <= 0)
        return AUTH_DENIED;
    *why = "bad signature";
    if (!tls_jws_verify(a->jwt_alg, a->jwt_key, a->jwt_secret, a->jwt_secret_len, tok,
                        (size_t)(dot2 - tok), sig, (size_t)siglen))
        return AUTH_DENIED;
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
