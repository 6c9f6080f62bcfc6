/* JSON Web Key Sets (jwks.h has the contract): reading a set (RFC 7517)
 * with sluice's JSON reader (json.c) and base64url decoder (jwt.c) into
 * OpenSSL keys (proto/tls_jwk.c), and the source an auth block verifies
 * tokens against.
 *
 * What is read, per key: kty RSA (n, e; 2048 to 8192 bits) means RS256, EC
 * with crv P-256 (x, y) means ES256, oct (k, 32 bytes or more; files only)
 * means HS256. kid picks the key; alg, when given, must agree with kty;
 * use, when given, must be "sig". As JWKS consumers do, keys of a type or
 * algorithm sluice does not verify (RS384, PS256, OKP, P-384, ...) and
 * keys for encryption are skipped with a warning, so that a provider's set
 * that also holds those still serves; a key of a kind sluice does use but
 * that is unusable (a 1024-bit modulus, a point off the curve, bad
 * base64url, an alg that contradicts kty) refuses the whole set: it says
 * the set is not what its author meant. */
#include "route/jwks.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "config/config.h"
#include "proto/tls.h"
#include "proto/tls_jwks.h"
#include "route/internal.h"

#define RSA_MIN_BITS 2048
#define RSA_MAX_BYTES 1024               /* 8192 bits */
#define HMAC_MIN_BYTES 32
#define HMAC_MAX_BYTES 1000              /* as secret_file */

/* ---- a set ---- */

static void key_clear(struct jwks_key *k)
{
    tls_public_key_free(k->pkey);
    if (k->secret) {
        explicit_bzero(k->secret, k->secret_len);
        free(k->secret);
    }
}

void jwks_set_release(struct jwks_set *set)
{
    if (!set || atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < set->nkeys; i++)
        key_clear(&set->keys[i]);
    free(set);
}

const struct jwks_key *jwks_set_find(const struct jwks_set *set, const char *kid, int alg,
                                     bool *kid_known)
{
    *kid_known = false;
    for (size_t i = 0; i < set->nkeys; i++) {
        const struct jwks_key *k = &set->keys[i];

        if (!k->has_kid || strcmp(k->kid, kid) != 0)
            continue;
        *kid_known = true;
        if (k->alg == alg)
            return k;
    }
    return NULL;
}

/* ---- reading a set ---- */

/* The members of one key that sluice reads, as the document gives them;
 * seen has bit 1 << M_xxx for each one met. */
enum jwk_member { M_KTY, M_ALG, M_USE, M_CRV, M_KID, M_N, M_E, M_X, M_Y, M_K };
#define HAS(t, m) (((t)->seen >> (m)) & 1u)

struct jwk_text {
    const char *at;              /* the key's '{', for messages */
    char kty[16], alg[16], use[16], crv[16], kid[JWKS_MAX_KID];
    char n[RSA_MAX_BYTES * 4 / 3 + 4], e[16], x[48], y[48], k[HMAC_MAX_BYTES * 4 / 3 + 4];
    bool cut_kty, cut_alg, cut_use, cut_crv, cut_kid, cut_n, cut_e, cut_x, cut_y, cut_k;
    unsigned seen;               /* bit per member, to refuse one given twice */
};

struct jwks_read {
    struct jread r;
    bool secrets_ok;
    jwks_warn_fn warn;
    void *ctx;
    struct jwks_set *set;        /* room for JWKS_MAX_KEYS */
    size_t index;                /* keys met so far (kept or not) */
    size_t skipped;
    bool have_keys;
    const char *keys_at;         /* the "keys" array, for "no usable key" */
    const char *err_at;          /* a problem past the JSON's syntax: where */
    char err[sizeof(((struct jwks_error *)0)->text)];
    struct jwk_text *jk;         /* the key being read */
    unsigned char a[RSA_MAX_BYTES], b[RSA_MAX_BYTES];  /* decoded members (zeroed after) */
};

/* s for a message: printable ASCII kept, the rest shown as '?'. */
static const char *show(char *buf, size_t size, const char *s)
{
    size_t i = 0;

    for (; s[i] && i + 1 < size; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\' ? s[i] : '?';
    buf[i] = '\0';
    return buf;
}

/* "key 2 (kid "abc")" for the key being read. */
static const char *key_name(const struct jwks_read *jr, char *buf, size_t size)
{
    char kid[64];

    if (HAS(jr->jk, M_KID))
        snprintf(buf, size, "key %zu (kid \"%s\")", jr->index, show(kid, sizeof(kid), jr->jk->kid));
    else
        snprintf(buf, size, "key %zu (no kid)", jr->index);
    return buf;
}

static bool refuse(struct jwks_read *jr, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool refuse(struct jwks_read *jr, const char *at, const char *fmt, ...)
{
    char name[128];
    int n = 0;
    va_list ap;

    if (jr->err_at)
        return false;
    jr->err_at = at;
    if (jr->jk)
        n = snprintf(jr->err, sizeof(jr->err), "%s: ", key_name(jr, name, sizeof(name)));
    va_start(ap, fmt);
    vsnprintf(jr->err + n, sizeof(jr->err) - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static void skip(struct jwks_read *jr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void skip(struct jwks_read *jr, const char *fmt, ...)
{
    char text[sizeof(jr->err)], name[128];
    int n, line, col;
    va_list ap;

    jr->skipped++;
    if (!jr->warn)
        return;
    n = snprintf(text, sizeof(text), "%s: ", key_name(jr, name, sizeof(name)));
    va_start(ap, fmt);
    vsnprintf(text + n, sizeof(text) - (size_t)n, fmt, ap);
    va_end(ap);
    jread_position(&jr->r, jr->jk->at, &line, &col);
    jr->warn(jr->ctx, line, col, text);
}

static bool key_member(struct jread *r, const char *key, void *ctx)
{
    /* In enum jwk_member's order. */
    static const char *const names[] = {"kty", "alg", "use", "crv", "kid", "n", "e", "x", "y",
                                        "k"};
    struct jwks_read *jr = ctx;
    struct jwk_text *t = jr->jk;
    struct { char *buf; size_t size; bool *cut; } slot[] = {
        {t->kty, sizeof(t->kty), &t->cut_kty}, {t->alg, sizeof(t->alg), &t->cut_alg},
        {t->use, sizeof(t->use), &t->cut_use}, {t->crv, sizeof(t->crv), &t->cut_crv},
        {t->kid, sizeof(t->kid), &t->cut_kid}, {t->n, sizeof(t->n), &t->cut_n},
        {t->e, sizeof(t->e), &t->cut_e},       {t->x, sizeof(t->x), &t->cut_x},
        {t->y, sizeof(t->y), &t->cut_y},       {t->k, sizeof(t->k), &t->cut_k},
    };

    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(key, names[i]) != 0)
            continue;
        if (t->seen & 1u << i)
            return refuse(jr, r->p, "\"%s\" appears twice", key);
        if (r->p >= r->end || *r->p != '"')
            return refuse(jr, r->p, "\"%s\" is not a string", key);
        t->seen |= 1u << i;
        return jread_string(r, slot[i].buf, slot[i].size, slot[i].cut);
    }
    return jread_value(r, 3);            /* x5c, key_ops, ...: not read */
}

/* b64 (a member's text) decoded into out, exactly want bytes when want is
 * not 0; its length, or -1 refused. */
static int decode(struct jwks_read *jr, const char *name, const char *b64, bool cut,
                  unsigned char *out, size_t size, size_t want)
{
    int n;

    if (cut || strlen(b64) / 4 * 3 > size)
        return refuse(jr, jr->jk->at, "\"%s\" is too long", name), -1;
    n = jwt_b64url_decode(b64, strlen(b64), out, size);
    if (n <= 0)
        return refuse(jr, jr->jk->at, "\"%s\" is not base64url (RFC 7515, no padding)", name), -1;
    if (want && (size_t)n != want)
        return refuse(jr, jr->jk->at, "\"%s\" holds %d bytes; P-256 wants %zu", name, n, want), -1;
    return n;
}

/* The key just read: kept in the set, skipped with a warning, or refused
 * (false). */
static bool key_finish(struct jwks_read *jr)
{
    static const char *const algs[] = {"", "HS256", "RS256", "ES256"};
    struct jwk_text *t = jr->jk;
    struct jwks_key *key = &jr->set->keys[jr->set->nkeys];
    int want, alg = 0, n, elen = 0;
    unsigned char *a = jr->a, *b = jr->b;
    char why[256], s[64];
    const unsigned char *m = a;

    if (!HAS(t, M_KTY))
        return refuse(jr, t->at, "no \"kty\"");
    if (t->cut_kid)
        return refuse(jr, t->at, "\"kid\" is longer than %d bytes", JWKS_MAX_KID - 1);
    if (HAS(t, M_USE) && (t->cut_use || strcmp(t->use, "sig") != 0)) {
        skip(jr, "use \"%s\" is not \"sig\"; skipped", show(s, sizeof(s), t->use));
        return true;
    }
    want = t->cut_kty ? 0 : strcmp(t->kty, "RSA") == 0 ? JWT_RS256
           : strcmp(t->kty, "EC") == 0 ? JWT_ES256 : strcmp(t->kty, "oct") == 0 ? JWT_HS256 : 0;
    if (!want) {
        skip(jr, "kty \"%s\" is not one sluice verifies (RSA, EC, oct); skipped",
             show(s, sizeof(s), t->kty));
        return true;
    }
    if (HAS(t, M_ALG)) {
        for (int i = 1; i <= 3 && !t->cut_alg; i++)
            if (strcmp(t->alg, algs[i]) == 0)
                alg = i;
        if (!alg) {
            skip(jr, "alg \"%s\" is not one sluice verifies (RS256, ES256, HS256); skipped",
                 show(s, sizeof(s), t->alg));
            return true;
        }
        if (alg != want)
            return refuse(jr, t->at, "alg %s does not fit kty %s (%s)", algs[alg], t->kty,
                          algs[want]);
    }
    if (want == JWT_ES256 && (t->cut_crv || strcmp(t->crv, "P-256") != 0)) {
        if (!HAS(t, M_CRV))
            return refuse(jr, t->at, "an EC key without \"crv\"");
        skip(jr, "crv \"%s\" is not one sluice verifies (P-256); skipped",
             show(s, sizeof(s), t->crv));
        return true;
    }
    if (want == JWT_HS256 && !jr->secrets_ok) {
        skip(jr, "a shared secret (kty oct) published at a URL would let anyone who fetches it "
             "sign tokens; skipped");
        return true;
    }
    /* A kid given twice for one algorithm: the first key keeps it. */
    if (HAS(t, M_KID)) {
        bool known;
        if (jwks_set_find(jr->set, t->kid, want, &known)) {
            skip(jr, "its kid is taken by an earlier %s key; skipped", algs[want]);
            return true;
        }
    }
    memset(key, 0, sizeof(*key));
    if (want == JWT_RS256) {
        if (!HAS(t, M_N) || !HAS(t, M_E))
            return refuse(jr, t->at, "an RSA key without \"%s\"", HAS(t, M_N) ? "e" : "n");
        if ((n = decode(jr, "n", t->n, t->cut_n, a, RSA_MAX_BYTES, 0)) < 0 ||
            (elen = decode(jr, "e", t->e, t->cut_e, b, RSA_MAX_BYTES, 0)) < 0)
            return false;
        if (elen > 8)
            return refuse(jr, t->at, "\"e\" holds %d bytes; an exponent has 8 at most", elen);
        while (n > 1 && !*m) {           /* leading zeros say nothing of the size */
            m++;
            n--;
        }
        {
            int bits = (n - 1) * 8;
            for (unsigned top = *m; top; top >>= 1)
                bits++;
            if (bits < RSA_MIN_BITS)
                return refuse(jr, t->at, "an RSA key of %d bits; RS256 keys must have %d or more",
                              bits, RSA_MIN_BITS);
        }
        if (!(key->pkey = tls_jwk_rsa(m, (size_t)n, b, (size_t)elen, why, sizeof(why))))
            return refuse(jr, t->at, "%s", why);
    } else if (want == JWT_ES256) {
        if (!HAS(t, M_X) || !HAS(t, M_Y))
            return refuse(jr, t->at, "an EC key without \"%s\"", HAS(t, M_X) ? "y" : "x");
        if (decode(jr, "x", t->x, t->cut_x, a, RSA_MAX_BYTES, 32) < 0 ||
            decode(jr, "y", t->y, t->cut_y, b, RSA_MAX_BYTES, 32) < 0)
            return false;
        if (!(key->pkey = tls_jwk_ec_p256(a, b, why, sizeof(why))))
            return refuse(jr, t->at, "%s", why);
        n = 64;
        memcpy(a + 32, b, 32);
    } else {
        if (!HAS(t, M_K))
            return refuse(jr, t->at, "an oct key without \"k\"");
        if ((n = decode(jr, "k", t->k, t->cut_k, a, RSA_MAX_BYTES, 0)) < 0)
            return false;
        if (n < HMAC_MIN_BYTES)
            return refuse(jr, t->at, "an HS256 secret of %d bytes; %d or more, or it can be "
                          "guessed", n, HMAC_MIN_BYTES);
        if (!(key->secret = malloc((size_t)n)))
            return refuse(jr, t->at, "out of memory");
        memcpy(key->secret, a, (size_t)n);
        key->secret_len = (size_t)n;
    }
    key->alg = want;
    key->has_kid = HAS(t, M_KID);
    if (key->has_kid)
        memcpy(key->kid, t->kid, strlen(t->kid) + 1);
    /* The digest: what a token's check depends on, so that a refetch of
     * the same keys is not a change. */
    {
        uint64_t h = jr->set->digest ^ key->has_kid;
        h = XXH3_64bits_withSeed(key->kid, strlen(key->kid) + 1, h);
        h = XXH3_64bits_withSeed(&key->alg, sizeof(key->alg), h);
        h = XXH3_64bits_withSeed(m, (size_t)n, h);
        jr->set->digest = XXH3_64bits_withSeed(b, (size_t)elen, h);
    }
    jr->set->nkeys++;
    return true;
}

static bool key_elem(struct jread *r, void *ctx)
{
    struct jwks_read *jr = ctx;
    struct jwk_text t;
    bool ok;

    jr->index++;
    if (jr->index > JWKS_MAX_KEYS)
        return refuse(jr, r->p, "more than %d keys", JWKS_MAX_KEYS);
    if (r->p >= r->end || *r->p != '{')
        return refuse(jr, r->p, "key %zu is not an object", jr->index);
    memset(&t, 0, sizeof(t));
    t.at = r->p;
    jr->jk = &t;
    ok = jread_object(r, 3, key_member, jr) && key_finish(jr);
    explicit_bzero(t.k, sizeof(t.k));
    jr->jk = NULL;
    return ok;
}

static bool top_member(struct jread *r, const char *key, void *ctx)
{
    struct jwks_read *jr = ctx;

    if (strcmp(key, "keys") != 0)
        return jread_value(r, 1);
    if (jr->have_keys)
        return refuse(jr, r->p, "\"keys\" appears twice");
    jr->have_keys = true;
    jr->keys_at = r->p;
    if (r->p >= r->end || *r->p != '[')
        return refuse(jr, r->p, "\"keys\" is not an array");
    return jread_array(r, 2, key_elem, jr);
}

struct jwks_set *jwks_parse(const char *doc, size_t len, bool secrets_ok, jwks_warn_fn warn,
                            void *ctx, struct jwks_error *err)
{
    struct jwks_read jr = {.r = {doc, doc, doc + len, NULL}, .secrets_ok = secrets_ok,
                           .warn = warn, .ctx = ctx};
    struct jwks_set *set;
    bool ok;

    memset(err, 0, sizeof(*err));
    if (!(jr.set = calloc(1, sizeof(*jr.set) + JWKS_MAX_KEYS * sizeof(struct jwks_key)))) {
        snprintf(err->text, sizeof(err->text), "out of memory");
        return NULL;
    }
    jread_ws(&jr.r);
    if (jr.r.p >= jr.r.end || *jr.r.p != '{')
        ok = refuse(&jr, jr.r.p, "not a JSON object (a JWKS is {\"keys\": [...]})");
    else
        ok = jread_object(&jr.r, 1, top_member, &jr);
    if (ok) {
        jread_ws(&jr.r);
        if (jr.r.p != jr.r.end)
            ok = refuse(&jr, jr.r.p, "text after the JSON object");
        else if (!jr.have_keys)
            ok = refuse(&jr, doc, "no \"keys\" member");
        else if (!jr.set->nkeys)
            ok = refuse(&jr, jr.keys_at, "no usable key (%zu skipped)", jr.skipped);
    }
    explicit_bzero(jr.a, sizeof(jr.a));
    if (!ok) {
        jread_position(&jr.r, jr.err_at ? jr.err_at : jr.r.p, &err->line, &err->col);
        if (jr.err_at)
            snprintf(err->text, sizeof(err->text), "%s", jr.err);
        else
            snprintf(err->text, sizeof(err->text), "not valid JSON: %s",
                     jr.r.why ? jr.r.why : "unexpected text");
        atomic_init(&jr.set->refs, 1);
        jwks_set_release(jr.set);
        return NULL;
    }
    set = realloc(jr.set, sizeof(*set) + jr.set->nkeys * sizeof(struct jwks_key));
    set = set ? set : jr.set;
    atomic_init(&set->refs, 1);
    return set;
}

/* ---- a source ---- */

static struct jwks_source *source_new(void)
{
    struct jwks_source *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    atomic_init(&s->generation, 0);
    /* Far enough back that the first unknown kid asks at once. */
    atomic_init(&s->asked_ms, INT64_MIN / 2);
    return s;
}

struct jwks_source *jwks_source_fixed(struct jwks_set *set)
{
    struct jwks_source *s = source_new();

    if (!s) {
        jwks_set_release(set);
        return NULL;
    }
    s->set = set;
    return s;
}

/* "https://host[:port][/path]": host a name or an IPv4 address, or an IPv6
 * one in brackets; no user, no fragment. */
static int parse_url(struct jwks_source *s, const char *url, char *err, size_t errlen)
{
    const char *h, *hend, *p, *slash;
    char port[8] = "443";

    if (strncmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "'%s' is not an https:// URL (keys fetched over plain http could be "
                 "anyone's)", url);
        return -1;
    }
    h = url + 8;
    slash = h + strcspn(h, "/?#");
    if (memchr(h, '@', (size_t)(slash - h)) || strchr(url, '#') || strpbrk(url, " \t\r\n")) {
        snprintf(err, errlen, "'%s': no user, fragment or white space in a jwks_url", url);
        return -1;
    }
    if (*h == '[') {
        hend = memchr(h, ']', (size_t)(slash - h));
        if (!hend) {
            snprintf(err, errlen, "'%s': an IPv6 address without its ']'", url);
            return -1;
        }
        p = hend + 1;
        h++;
    } else {
        hend = memchr(h, ':', (size_t)(slash - h));
        hend = hend ? hend : slash;
        p = hend;
    }
    if (hend == h) {
        snprintf(err, errlen, "'%s' names no host", url);
        return -1;
    }
    if (p < slash) {
        char *end;
        unsigned long v;
        if (*p != ':' || p + 1 == slash || slash - p - 1 > 5 ||
            (v = strtoul(p + 1, &end, 10)) == 0 || v > 65535 || end != slash) {
            snprintf(err, errlen, "'%s': the port is not a number from 1 to 65535", url);
            return -1;
        }
        snprintf(port, sizeof(port), "%lu", v);
    }
    if (!(s->host = strndup(h, (size_t)(hend - h))) || !(s->port = strdup(port)) ||
        !(s->path = *slash == '/' ? strdup(slash) : malloc(strlen(slash) + 2)) ||
        !(s->url = strdup(url))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (*slash != '/')
        sprintf(s->path, "/%s", slash);  /* "https://h" or "https://h?q" */
    return 0;
}

struct jwks_source *jwks_source_url(const char *url, const char *ca_file, uint64_t refresh_ms,
                                    char *err, size_t errlen)
{
    struct jwks_source *s = source_new();

    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (parse_url(s, url, err, errlen) < 0 ||
        !(s->client = tls_get_client_new(ca_file, err, errlen))) {
        jwks_source_free(s);
        return NULL;
    }
    s->refresh_ms = refresh_ms;
    return s;
}

void jwks_source_free(struct jwks_source *s)
{
    if (!s)
        return;
    jwks_set_release(s->set);
    tls_get_client_free(s->client);
    free(s->url);
    free(s->host);
    free(s->port);
    free(s->path);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

struct jwks_set *jwks_source_acquire(struct jwks_source *s)
{
    struct jwks_set *set;

    pthread_mutex_lock(&s->lock);
    set = s->set;
    if (set)
        atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->lock);
    return set;
}

bool jwks_source_publish(struct jwks_source *s, struct jwks_set *set)
{
    struct jwks_set *old;

    pthread_mutex_lock(&s->lock);
    old = s->set;
    if (old && old->digest == set->digest && old->nkeys == set->nkeys) {
        pthread_mutex_unlock(&s->lock);
        jwks_set_release(set);
        return false;
    }
    s->set = set;
    pthread_mutex_unlock(&s->lock);
    /* After the swap: a worker that sees the new generation takes the new
     * set; one that saw the old remembers its token under the old one,
     * which nobody looks up again. */
    atomic_fetch_add_explicit(&s->generation, 1, memory_order_release);
    jwks_set_release(old);
    return true;
}

void jwks_source_ask(struct jwks_source *s, int64_t now_ms)
{
    int_fast64_t last = atomic_load_explicit(&s->asked_ms, memory_order_relaxed);

    if (!s->url || now_ms - last < JWKS_ASK_INTERVAL_MS ||
        !atomic_compare_exchange_strong(&s->asked_ms, &last, now_ms))
        return;
    jwks_fetcher_wake(s);
}
