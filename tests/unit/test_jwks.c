/* JSON Web Key Sets: sets made here from keys OpenSSL generates (RSA 2048
 * and 1024, EC P-256) and HMAC secrets read into keys, skipped or refused
 * with the right line and column; a set's lookup by kid and algorithm; a
 * source's generation across publishes; the URL check; and jwt_check with
 * a key set: the kid's key, an unknown kid, a kid on a token of another
 * algorithm, tokens without kid, and the cache forgetting a token when the
 * keys change. */
#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include "route/jwks.h"
#include "route/route.h"
#include "test.h"

static void b64u(const unsigned char *in, size_t len, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);

    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (char *p = out; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
}

/* {"kty":"RSA","n":..,"e":..} members of a fresh key of bits. */
static void rsa_members(int bits, char *out, size_t size)
{
    EVP_PKEY *k = EVP_RSA_gen((unsigned)bits);
    BIGNUM *n = NULL, *e = NULL;
    unsigned char nb[1024], eb[8];
    char ns[1400], es[16];
    int nl, el;

    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e);
    nl = BN_bn2bin(n, nb);
    el = BN_bn2bin(e, eb);
    b64u(nb, (size_t)nl, ns);
    b64u(eb, (size_t)el, es);
    snprintf(out, size, "\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"", ns, es);
    BN_free(n);
    BN_free(e);
    EVP_PKEY_free(k);
}

static void ec_members(char *out, size_t size, bool off_curve)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    unsigned char pub[65];
    size_t len = 0;
    char x[64], y[64];

    EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &len);
    if (off_curve)
        pub[64] ^= 1;
    b64u(pub + 1, 32, x);
    b64u(pub + 33, 32, y);
    snprintf(out, size, "\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"", x, y);
    EVP_PKEY_free(k);
}

static int warnings;
static int warn_line;

static void count_warning(void *ctx, int line, int col, const char *text)
{
    (void)ctx;
    (void)col;
    warnings++;
    warn_line = line;
    fprintf(stderr, "  (warning, expected: line %d: %s)\n", line, text);
}

static char rsa_a[1500], rsa_b[1500], rsa_small[1000], ec_a[300], ec_bad[300];
static const char *secret_b64 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"; /* 32 bytes */

static void test_parse_good(void)
{
    char doc[16384];
    struct jwks_error err;
    struct jwks_set *set;
    bool known;

    snprintf(doc, sizeof(doc),
             "{\"keys\": [\n"
             " {%s, \"kid\": \"r1\", \"use\": \"sig\", \"alg\": \"RS256\"},\n"
             " {%s, \"kid\": \"r2\", \"x5c\": [\"...\"], \"key_ops\": [\"verify\"]},\n"
             " {%s, \"kid\": \"e1\"},\n"
             " {\"kty\": \"oct\", \"k\": \"%s\", \"kid\": \"h1\"},\n"
             " {%s, \"kid\": \"enc\", \"use\": \"enc\"},\n"
             " {%s, \"kid\": \"r384\", \"alg\": \"RS384\"},\n"
             " {\"kty\": \"OKP\", \"crv\": \"Ed25519\", \"x\": \"AA\", \"kid\": \"ed\"},\n"
             " {\"kty\": \"EC\", \"crv\": \"P-384\", \"x\": \"AA\", \"y\": \"AA\"},\n"
             " {%s, \"kid\": \"r1\"}\n"
             "], \"other\": {\"x\": [1, 2]}}\n",
             rsa_a, rsa_b, ec_a, secret_b64, rsa_a, rsa_a, rsa_b);
    warnings = 0;
    set = jwks_parse(doc, strlen(doc), true, count_warning, NULL, &err);
    CHECK(set != NULL);
    if (!set) {
        fprintf(stderr, "  %d:%d %s\n", err.line, err.col, err.text);
        return;
    }
    CHECK_EQ_INT(set->nkeys, 4);
    CHECK_EQ_INT(warnings, 5);           /* enc, RS384, OKP, P-384, r1 again */
    CHECK_EQ_INT(warn_line, 10);
    CHECK(jwks_set_find(set, "r1", JWT_RS256, &known) == &set->keys[0] && known);
    CHECK(jwks_set_find(set, "r2", JWT_RS256, &known) == &set->keys[1]);
    CHECK(jwks_set_find(set, "e1", JWT_ES256, &known) == &set->keys[2]);
    CHECK(jwks_set_find(set, "h1", JWT_HS256, &known) == &set->keys[3]);
    CHECK(set->keys[3].secret_len == 32 &&
          memcmp(set->keys[3].secret, "0123456789abcdef", 16) == 0);
    CHECK(!jwks_set_find(set, "e1", JWT_RS256, &known) && known);     /* another alg */
    CHECK(!jwks_set_find(set, "nope", JWT_RS256, &known) && !known);
    CHECK(!jwks_set_find(set, "enc", JWT_RS256, &known) && !known);   /* skipped */
    jwks_set_release(set);

    /* From a URL a secret is skipped: nothing left is an error. */
    snprintf(doc, sizeof(doc), "{\"keys\":[{\"kty\":\"oct\",\"k\":\"%s\"}]}", secret_b64);
    warnings = 0;
    CHECK(!jwks_parse(doc, strlen(doc), false, count_warning, NULL, &err));
    CHECK_EQ_INT(warnings, 1);
    CHECK(strstr(err.text, "no usable key (1 skipped)") != NULL);
}

/* doc must be refused at line:col with text holding want. */
static void refused(const char *doc, int line, int col, const char *want)
{
    struct jwks_error err;
    struct jwks_set *set = jwks_parse(doc, strlen(doc), true, NULL, NULL, &err);

    CHECK(set == NULL);
    jwks_set_release(set);
    CHECK_EQ_INT(err.line, line);
    CHECK_EQ_INT(err.col, col);
    CHECK(strstr(err.text, want) != NULL);
    if (!strstr(err.text, want) || err.line != line || err.col != col)
        fprintf(stderr, "  got %d:%d %s; wanted %d:%d %s\n", err.line, err.col, err.text, line,
                col, want);
}

static void test_parse_bad(void)
{
    char doc[8192];

    refused("", 1, 1, "not a JSON object");
    refused("[]", 1, 1, "not a JSON object");
    refused("{\"keys\": [\n  {\"kty\": \"RSA\",}\n]}", 2, 17, "not valid JSON: expected a member");
    refused("{\"keys\": [\n  {\"kty\": \"RSA\"\n", 3, 1, "not valid JSON: expected ',' or '}'");
    refused("{\"keys\": [{\"kty\": \"RSA\", \"n\": \"a\u00e9\" 1}]}", 1, 36,
            "not valid JSON: expected ',' or '}'");
    refused("{\"keys\": []} x", 1, 14, "text after the JSON object");
    refused("{\"kids\": []}", 1, 1, "no \"keys\" member");
    refused("{\"keys\": {}}", 1, 10, "\"keys\" is not an array");
    refused("{\"keys\": []}", 1, 10, "no usable key (0 skipped)");
    refused("{\"keys\": [1]}", 1, 11, "key 1 is not an object");
    refused("{\"keys\": [{\"n\": \"AQAB\"}]}", 1, 11, "key 1 (no kid): no \"kty\"");
    refused("{\"keys\": [{\"kty\": \"RSA\", \"kid\": 7}]}", 1, 33, "\"kid\" is not a string");
    refused("{\"keys\": [{\"kty\": \"RSA\", \"kty\": \"RSA\"}]}", 1, 33, "\"kty\" appears twice");
    snprintf(doc, sizeof(doc), "{\"keys\": [\n {%s, \"kid\": \"weak\"}]}", rsa_small);
    refused(doc, 2, 2, "key 1 (kid \"weak\"): an RSA key of 1024 bits");
    snprintf(doc, sizeof(doc), "{\"keys\": [{%s, \"alg\": \"ES256\"}]}", rsa_a);
    refused(doc, 1, 11, "alg ES256 does not fit kty RSA");
    snprintf(doc, sizeof(doc), "{\"keys\": [{%s}, {%s}]}", ec_a, ec_bad);
    refused(doc, 1, (int)strlen(ec_a) + 15, "key 2 (no kid): not a valid EC public key");
    refused("{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"AAAA\", \"y\": \"AAAA\"}]}",
            1, 11, "\"x\" holds 3 bytes; P-256 wants 32");
    refused("{\"keys\": [{\"kty\": \"EC\", \"x\": \"AAAA\", \"y\": \"AAAA\"}]}", 1, 11,
            "an EC key without \"crv\"");
    refused("{\"keys\": [{\"kty\": \"RSA\", \"e\": \"AQAB\"}]}", 1, 11, "an RSA key without \"n\"");
    refused("{\"keys\": [{\"kty\": \"RSA\", \"n\": \"A=\", \"e\": \"AQAB\"}]}", 1, 11,
            "\"n\" is not base64url");
    refused("{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2hvcnQ\"}]}", 1, 11,
            "an HS256 secret of 5 bytes");
    /* More than JWKS_MAX_KEYS keys, even skipped ones. */
    {
        size_t n = snprintf(doc, sizeof(doc), "{\"keys\": [");
        for (int i = 0; i <= JWKS_MAX_KEYS; i++)
            n += snprintf(doc + n, sizeof(doc) - n, "%s{\"kty\":\"X\"}", i ? "," : "");
        snprintf(doc + n, sizeof(doc) - n, "]}");
        refused(doc, 1, 10 + 12 * JWKS_MAX_KEYS + 1, "more than 100 keys");
    }
}

static void test_source(void)
{
    char doc[8192], err[256];
    struct jwks_error e;
    struct jwks_set *a, *b, *same, *got;
    struct jwks_source *s;
    uint64_t g;

    snprintf(doc, sizeof(doc), "{\"keys\": [{%s, \"kid\": \"a\"}]}", ec_a);
    a = jwks_parse(doc, strlen(doc), false, NULL, NULL, &e);
    same = jwks_parse(doc, strlen(doc), false, NULL, NULL, &e);
    snprintf(doc, sizeof(doc), "{\"keys\": [{%s, \"kid\": \"b\"}]}", ec_a);
    b = jwks_parse(doc, strlen(doc), false, NULL, NULL, &e);
    CHECK(a && b && same && a->digest == same->digest && a->digest != b->digest);
    s = jwks_source_url("https://127.0.0.1:1/jwks", NULL, 60000, err, sizeof(err));
    CHECK(s != NULL);
    if (!s || !a || !b || !same)
        return;
    CHECK(jwks_source_acquire(s) == NULL);
    g = jwks_source_generation(s);
    CHECK(jwks_source_publish(s, a));
    CHECK(jwks_source_generation(s) != g);
    g = jwks_source_generation(s);
    CHECK(!jwks_source_publish(s, same));          /* the same keys: no change */
    CHECK_EQ_INT(jwks_source_generation(s), g);
    got = jwks_source_acquire(s);
    CHECK(got == a);
    CHECK(jwks_source_publish(s, b));
    CHECK(jwks_source_generation(s) != g);
    /* a lives on while a reader holds it. */
    CHECK(got->nkeys == 1 && strcmp(got->keys[0].kid, "a") == 0);
    jwks_set_release(got);
    jwks_source_free(s);

    /* The URL check. */
    static const struct { const char *url; const char *host, *port, *path; } good[] = {
        {"https://idp.example.com/.well-known/jwks.json", "idp.example.com", "443",
         "/.well-known/jwks.json"},
        {"https://idp.example.com:8443", "idp.example.com", "8443", "/"},
        {"https://[::1]:9443/k?x=1", "::1", "9443", "/k?x=1"},
        {"https://h?x", "h", "443", "/?x"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        s = jwks_source_url(good[i].url, NULL, 1000, err, sizeof(err));
        CHECK(s != NULL);
        if (s) {
            CHECK_EQ_STR(s->host, good[i].host);
            CHECK_EQ_STR(s->port, good[i].port);
            CHECK_EQ_STR(s->path, good[i].path);
        }
        jwks_source_free(s);
    }
    static const char *const bad[] = {
        "http://idp.example.com/jwks", "https://", "https:///x", "https://u@h/x",
        "https://h:0/", "https://h:99999/", "https://h:x/", "https://[::1/x", "https://h/x#f",
        "https://h/a b",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        s = jwks_source_url(bad[i], NULL, 1000, err, sizeof(err));
        CHECK(s == NULL);
        if (s)
            fprintf(stderr, "  accepted: %s\n", bad[i]);
        jwks_source_free(s);
    }
    CHECK(!jwks_source_url("https://h/", "/nonexistent/ca.pem", 1000, err, sizeof(err)));
    CHECK(strstr(err, "cannot load CA") != NULL);
}

/* ---- jwt_check against a set of HMAC keys ---- */

static char head[4096];

static enum auth_result check_token(struct auth_cache *c, const struct conf_auth *a,
                                    const char *tok, const char **why)
{
    struct h1_header slots[8];
    struct h1_request req;
    int n = snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer "
                     "%s\r\n\r\n", tok);

    h1_request_init(&req, slots, 8);
    CHECK(h1_parse_request(head, (size_t)n, NULL, &req) == n);
    return jwt_check(c, a, &req, 1700000000000ll, why);
}

static void hs256(const char *header, const char *payload, const char *secret, char *out)
{
    unsigned char mac[32];
    unsigned int len = 0;
    char h[512], p[512], sig[64];

    b64u((const unsigned char *)header, strlen(header), h);
    b64u((const unsigned char *)payload, strlen(payload), p);
    sprintf(out, "%s.%s", h, p);
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)out, strlen(out), mac, &len);
    b64u(mac, len, sig);
    strcat(out, ".");
    strcat(out, sig);
}

static void test_jwt_check(void)
{
    const char *s1 = "0123456789abcdef0123456789abcdef", *s2 = "fedcba9876543210fedcba9876543210";
    char doc[1024], k1[64], k2[64], tok[2048];
    struct jwks_error e;
    struct jwks_set *set;
    struct conf_auth a = {.type = AUTH_JWT, .clock_skew_ms = 60000};
    struct auth_cache *c = auth_cache_new();
    const char *why;

    b64u((const unsigned char *)s1, 32, k1);
    b64u((const unsigned char *)s2, 32, k2);
    snprintf(doc, sizeof(doc), "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"one\",\"k\":\"%s\"},"
             "{\"kty\":\"oct\",\"kid\":\"two\",\"k\":\"%s\"},{%s,\"kid\":\"ec\"}]}", k1, k2, ec_a);
    set = jwks_parse(doc, strlen(doc), true, NULL, NULL, &e);
    CHECK(set != NULL);
    if (!set)
        return;
    /* A url source, so that a change of keys can be published. */
    a.jwks = jwks_source_url("https://127.0.0.1:1/", NULL, 60000, doc, sizeof(doc));
    CHECK(a.jwks != NULL);
    if (!a.jwks)
        return;
    hs256("{\"alg\":\"HS256\",\"kid\":\"two\"}", "{\"sub\":\"ann\"}", s2, tok);
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_DENIED);
    CHECK_EQ_STR(why, "no key set");
    jwks_source_publish(a.jwks, set);

    hs256("{\"alg\":\"HS256\",\"kid\":\"two\"}", "{\"sub\":\"ann\"}", s2, tok);
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_OK);
    hs256("{\"alg\":\"HS256\",\"kid\":\"one\"}", "{\"sub\":\"ann\"}", s2, tok);
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_DENIED);
    CHECK_EQ_STR(why, "bad signature");
    hs256("{\"alg\":\"HS256\",\"kid\":\"three\"}", "{\"sub\":\"ann\"}", s2, tok);
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_DENIED);
    CHECK_EQ_STR(why, "unknown key");
    hs256("{\"alg\":\"HS256\",\"kid\":\"ec\"}", "{\"sub\":\"ann\"}", s2, tok);
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_DENIED);
    CHECK_EQ_STR(why, "wrong algorithm");
    hs256("{\"alg\":\"HS256\",\"kid\":2}", "{\"sub\":\"ann\"}", s2, tok);
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_DENIED);
    CHECK_EQ_STR(why, "malformed token");
    hs256("{\"alg\":\"HS512\",\"kid\":\"one\"}", "{\"sub\":\"ann\"}", s1, tok);
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_DENIED);
    CHECK_EQ_STR(why, "wrong algorithm");
    /* No kid: each HS256 key is tried. */
    hs256("{\"alg\":\"HS256\"}", "{\"sub\":\"bob\"}", s2, tok);
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_OK);
    hs256("{\"alg\":\"HS256\"}", "{\"sub\":\"bob\"}", "another secret, 32 bytes or more..", tok);
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_DENIED);
    CHECK_EQ_STR(why, "bad signature");
    hs256("{\"alg\":\"none\"}", "{\"sub\":\"bob\"}", s2, tok);
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_DENIED);
    CHECK_EQ_STR(why, "wrong algorithm");

    /* A remembered token is forgotten when the keys change: "two" goes. */
    hs256("{\"alg\":\"HS256\",\"kid\":\"two\"}", "{\"sub\":\"cat\"}", s2, tok);
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_OK);
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_OK);       /* from the cache */
    snprintf(doc, sizeof(doc), "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"one\",\"k\":\"%s\"}]}", k1);
    CHECK(jwks_source_publish(a.jwks, jwks_parse(doc, strlen(doc), true, NULL, NULL, &e)));
    CHECK_EQ_INT(check_token(c, &a, tok, &why), AUTH_DENIED);
    CHECK_EQ_STR(why, "unknown key");
    jwks_source_free(a.jwks);
    auth_cache_free(c);
}

int main(void)
{
    rsa_members(2048, rsa_a, sizeof(rsa_a));
    rsa_members(2048, rsa_b, sizeof(rsa_b));
    rsa_members(1024, rsa_small, sizeof(rsa_small));
    ec_members(ec_a, sizeof(ec_a), false);
    ec_members(ec_bad, sizeof(ec_bad), true);
    test_parse_good();
    test_parse_bad();
    test_source();
    test_jwt_check();
    TEST_END();
}
