/* Basic auth: base64 decoding (a table of good and bad inputs), reading the
 * Authorization header of real request heads, verifying against crypt(3)
 * hashes made here, and the per-worker cache of credentials that passed. */
#include <crypt.h>
#include <stdlib.h>

#include "route/route.h"
#include "test.h"

static void test_base64(void)
{
    static const struct { const char *in; const char *out; } good[] = {
        {"YW5uOnMzY3JldA==", "ann:s3cret"}, {"YQ==", "a"}, {"YWI=", "ab"}, {"YWJj", "abc"},
        {"Pz8/", "???"}, {"+/+/", "\xfb\xff\xbf"},
    };
    static const char *const bad[] = {
        "", "Y", "YW", "YW5", "YW5u=", "Y===", "=YWJ", "YW=j", "YWJj!", "YW\nj", "YQ==YQ==",
    };
    char out[64];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int n = auth_base64_decode(good[i].in, strlen(good[i].in), out, sizeof(out));
        CHECK_EQ_INT(n, (int)strlen(good[i].out));
        if (n >= 0) {
            out[n] = '\0';
            CHECK_EQ_STR(out, good[i].out);
        }
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(auth_base64_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -1);
    /* Output larger than the room: refused, not truncated. */
    CHECK_EQ_INT(auth_base64_decode("YWJj", 4, out, 2), -1);
}

static char head[1024];

static enum auth_result begin(struct auth_cache *c, const struct conf_auth *a, const char *auth,
                              uint64_t now, struct auth_request *r)
{
    struct h1_header slots[8];
    struct h1_request req;
    int n = snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: a\r\n%s%s%s\r\n",
                     auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");

    h1_request_init(&req, slots, 8);
    CHECK(h1_parse_request(head, (size_t)n, NULL, &req) == n);
    return auth_begin(c, a, &req, now, r);
}

static void test_begin_verify_cache(void)
{
    struct conf_user users[2];
    struct conf_auth a = {.users = users, .nusers = 2}, other = a;
    struct auth_cache *c = auth_cache_new();
    struct auth_request r;
    char h_ann[128], h_bob[128];

    /* Sorted by name, as the config leaves them. */
    strcpy(h_ann, crypt("s3cret", "$6$abcdefgh$"));
    strcpy(h_bob, crypt("pa:ss", "$5$ijklmnop$"));
    users[0] = (struct conf_user){.name = "ann", .hash = h_ann};
    users[1] = (struct conf_user){.name = "bob", .hash = h_bob};
    CHECK(c != NULL);

    CHECK_EQ_INT(begin(c, &a, NULL, 0, &r), AUTH_DENIED);
    CHECK_EQ_INT(begin(c, &a, "Bearer xyz", 0, &r), AUTH_DENIED);
    CHECK_EQ_INT(begin(c, &a, "Basic", 0, &r), AUTH_DENIED);
    CHECK_EQ_INT(begin(c, &a, "Basic bm9jb2xvbg==", 0, &r), AUTH_DENIED);   /* "nocolon" */
    CHECK_EQ_INT(begin(c, &a, "Basic YW5uAHg6eQ==", 0, &r), AUTH_DENIED);   /* "ann\0x:y" */

    CHECK_EQ_INT(begin(c, &a, "Basic YW5uOnMzY3JldA==", 0, &r), AUTH_VERIFY);
    CHECK_EQ_STR(r.user, "ann");
    CHECK_EQ_STR(r.password, "s3cret");
    CHECK(r.known && r.hash == h_ann);
    CHECK(auth_verify(&r));
    auth_cache_put(c, &r, 1000);
    /* Remembered for this block until it expires; not for another block. */
    CHECK_EQ_INT(begin(c, &a, "basic  YW5uOnMzY3JldA==", 2000, &r), AUTH_OK);
    /* A second field, even the same: sluice checks one, a backend may read the other. */
    CHECK_EQ_INT(begin(c, &a, "Basic YW5uOnMzY3JldA==\r\nAuthorization: Basic YW5uOnMzY3JldA==",
                       2000, &r), AUTH_DENIED);
    CHECK_EQ_INT(begin(c, &other, "Basic YW5uOnMzY3JldA==", 2000, &r), AUTH_VERIFY);
    CHECK_EQ_INT(begin(c, &a, "Basic YW5uOnMzY3JldA==", 1000 + 5 * 60 * 1000, &r), AUTH_VERIFY);

    /* A colon in the password; a wrong password; an unknown user hashes
     * against a real user's setting and fails. */
    CHECK_EQ_INT(begin(c, &a, "Basic Ym9iOnBhOnNz", 0, &r), AUTH_VERIFY);
    CHECK_EQ_STR(r.password, "pa:ss");
    CHECK(auth_verify(&r));
    CHECK_EQ_INT(begin(c, &a, "Basic YW5uOndyb25n", 0, &r), AUTH_VERIFY);    /* ann:wrong */
    CHECK(!auth_verify(&r));
    CHECK_EQ_INT(begin(c, &a, "Basic ZXZlOnMzY3JldA==", 0, &r), AUTH_VERIFY); /* eve:s3cret */
    CHECK(!r.known && r.hash == h_ann);
    CHECK(!auth_verify(&r));
    /* Failures are not remembered. */
    CHECK_EQ_INT(begin(c, &a, "Basic YW5uOndyb25n", 0, &r), AUTH_VERIFY);
    auth_cache_free(c);
}

static void test_base64url(void)
{
    static const struct { const char *in; const char *out; } good[] = {
        {"eyJhbGciOiJIUzI1NiJ9", "{\"alg\":\"HS256\"}"}, {"YQ", "a"}, {"YWI", "ab"},
        {"YWJj", "abc"}, {"-_-_", "\xfb\xff\xbf"}, {"", ""},
    };
    /* Padding, the standard alphabet, a length no encoding has, and
     * leftover bits that are not zero (YR and YQ would both mean "a"). */
    static const char *const bad[] = {"YQ==", "+/+/", "Y", "YWJjZ", "YR", "YW J"};
    unsigned char out[64];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int n = jwt_b64url_decode(good[i].in, strlen(good[i].in), out, sizeof(out));
        CHECK_EQ_INT(n, (int)strlen(good[i].out));
        if (n >= 0)
            CHECK(memcmp(out, good[i].out, (size_t)n) == 0);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(jwt_b64url_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -1);
}

static void test_json(void)
{
    static const struct { const char *in; bool ok, match; } cases[] = {
        {"{}", true, false},
        {" {\"aud\":\"api\"} ", true, true},
        {"{\"aud\":[\"web\",\"api\"]}", true, true},
        {"{\"aud\":[\"web\",{\"x\":[1,2.5e3,true,null]}]}", true, false},
        {"{\"a\\u00e9\":\"\\\"\",\"exp\":-12}", true, false},
        {"{\"aud\":\"api\\u0000x\"}", true, false},       /* a NUL does not end it */
        {"{\"aud\":[\"api\\u0000\"]}", true, false},
        {"{\"aud\":\"api\"", false, false},              /* unclosed */
        {"{\"aud\":\"api\"} x", false, false},           /* trailing bytes */
        {"{\"a\":01}", false, false},                     /* leading zero */
        {"{\"a\":\"\x01\"}", false, false},             /* control byte in a string */
        {"{\"a\":tru}", false, false},
        {"{\"a\":\"\\x\"}", false, false},             /* bad escape */
        {"{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}", false, false},  /* too deep */
        {"[]", false, false},
        {"{,}", false, false},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool match = false;
        bool ok = jwt_json_object(cases[i].in, strlen(cases[i].in), "api", &match);
        CHECK_EQ_INT(ok, cases[i].ok);
        if (ok != cases[i].ok)
            fprintf(stderr, "  case %zu: %s\n", i, cases[i].in);
        if (ok)
            CHECK_EQ_INT(match, cases[i].match);
    }
}

int main(void)
{
    test_base64();
    test_base64url();
    test_json();
    test_begin_verify_cache();
    TEST_END();
}
