/* Routing: each kind of condition alone and together, first match wins
 * across the table's indexes (host buckets, exact paths, prefix trie,
 * regex/any lists), wildcard hosts, cookie and query parsing, split weights,
 * the shadowed-rule warnings, and a 10,000-rule table checked against a
 * plain linear reference matcher (correctness only; timing is in
 * bench/micro/route_match.c). Routes are built by hand, without YAML. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "route/internal.h"   /* route_shadow_plain, to compare with */
#include "route/route.h"
#include "test.h"

/* ---- building listeners by hand ---- */

static struct conf_listener L;
static size_t cap_routes;

static char *dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void reset(void)
{
    for (size_t i = 0; i < L.nroutes; i++) {
        struct conf_route *r = &L.routes[i];
        free(r->host);
        free(r->path);
        for (size_t k = 0; k < r->nother_methods; k++)
            free(r->other_methods[k]);
        free(r->other_methods);
        struct conf_kv *lists[3] = { r->headers, r->cookies, r->query };
        size_t ns[3] = { r->nheaders, r->ncookies, r->nquery };
        for (int a = 0; a < 3; a++) {
            for (size_t k = 0; k < ns[a]; k++) {
                free(lists[a][k].name);
                free(lists[a][k].value);
            }
            free(lists[a]);
        }
        free(r->split);
        free(r->sources);
    }
    free(L.routes);
    memset(&L, 0, sizeof(L));
    cap_routes = 0;
}

/* A rule at line 10 + index, column 7 of "routes.yaml". */
static struct conf_route *add(const char *host, enum route_path_kind kind, const char *path)
{
    if (L.nroutes == cap_routes) {
        cap_routes = cap_routes ? cap_routes * 2 : 16;
        L.routes = realloc(L.routes, cap_routes * sizeof(*L.routes));
    }
    struct conf_route *r = &L.routes[L.nroutes];
    memset(r, 0, sizeof(*r));
    r->index = (uint32_t)L.nroutes;
    r->pos = (struct conf_pos){ .file = "routes.yaml", .line = 10 + (int)L.nroutes, .col = 7 };
    r->host = dup(host);
    r->path_kind = kind;
    r->path = dup(path);
    r->action = ROUTE_RESPOND;
    L.nroutes++;
    return r;
}

static void kv(struct conf_kv **arr, size_t *n, const char *name, const char *value)
{
    *arr = realloc(*arr, (*n + 1) * sizeof(**arr));
    (*arr)[*n] = (struct conf_kv){ .name = dup(name), .value = dup(value) };
    (*n)++;
}

static void header(struct conf_route *r, const char *n, const char *v) { kv(&r->headers, &r->nheaders, n, v); }
static void cookie(struct conf_route *r, const char *n, const char *v) { kv(&r->cookies, &r->ncookies, n, v); }
static void query(struct conf_route *r, const char *n, const char *v) { kv(&r->query, &r->nquery, n, v); }

/* "10.0.0.0/8", "::1/128": as config_read_cidrs stores it (host bits zero). */
static void source(struct conf_route *r, const char *block)
{
    char host[64];
    struct conf_cidr *c;
    const char *slash = strchr(block, '/');

    snprintf(host, sizeof(host), "%.*s", (int)(slash - block), block);
    r->sources = realloc(r->sources, (r->nsources + 1) * sizeof(*r->sources));
    c = &r->sources[r->nsources++];
    memset(c, 0, sizeof(*c));
    c->family = strchr(host, ':') ? AF_INET6 : AF_INET;
    CHECK(inet_pton(c->family, host, c->addr) == 1);
    c->prefix = (uint8_t)atoi(slash + 1);
}

static struct addr peer_addr;

/* The request r from client address ip ("10.1.2.3", "::1"). */
static struct route_request from(struct route_request r, const char *ip)
{
    memset(&peer_addr, 0, sizeof(peer_addr));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&peer_addr.ss;
        s6->sin6_family = AF_INET6;
        CHECK(inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&peer_addr.ss;
        s4->sin_family = AF_INET;
        CHECK(inet_pton(AF_INET, ip, &s4->sin_addr) == 1);
    }
    r.peer = &peer_addr;
    return r;
}

#define M(x) (1u << (x))

/* as the config does it: the token, and the H1_OTHER bit */
static void other_method(struct conf_route *r, const char *m)
{
    r->methods |= M(H1_OTHER);
    r->other_methods = realloc(r->other_methods, (r->nother_methods + 1) * sizeof(char *));
    r->other_methods[r->nother_methods++] = dup(m);
}

/* ---- requests ---- */

static const char *const method_names[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT",
                                            "OPTIONS", "TRACE", "PATCH" };

static enum h1_method method_id(const char *m)
{
    for (int i = 0; i < 9; i++)
        if (strcmp(m, method_names[i]) == 0)
            return (enum h1_method)i;
    return H1_OTHER;
}

static struct h1_header hdrs[32];
static char target_buf[512];

/* method, host (NULL: none), target "/path?query", then header name/value
 * pairs, NULL-terminated. Slices point at the arguments and target_buf. */
static struct route_request mkreq(const char *method, const char *host, const char *target, ...)
{
    struct route_request r;
    memset(&r, 0, sizeof(r));
    r.method = method_id(method);
    r.method_name = (struct h1_slice){ method, (uint32_t)strlen(method) };
    if (host)
        r.host = (struct h1_slice){ host, (uint32_t)strlen(host) };
    snprintf(target_buf, sizeof(target_buf), "%s", target);
    char *q = strchr(target_buf, '?');
    r.path = (struct h1_slice){ target_buf, (uint32_t)(q ? q - target_buf : (long)strlen(target_buf)) };
    if (q)
        r.query = (struct h1_slice){ q + 1, (uint32_t)strlen(q + 1) };
    va_list ap;
    va_start(ap, target);
    const char *n;
    while ((n = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        hdrs[r.nheaders].name = (struct h1_slice){ n, (uint32_t)strlen(n) };
        hdrs[r.nheaders].value = (struct h1_slice){ v, (uint32_t)strlen(v) };
        r.nheaders++;
    }
    va_end(ap);
    r.headers = hdrs;
    return r;
}

static struct route_table *T;

static void build(void)
{
    route_table_free(T);
    T = route_table_build(&L);
    CHECK(T != NULL);
}

static int idx(struct route_request r)
{
    const struct conf_route *m = route_match(T, &r);
    if (m && (m < L.routes || m >= L.routes + L.nroutes)) {
        CHECK(!"a rule outside the listener's list");
        return -2;
    }
    return m ? (int)(m - L.routes) : -1;
}

/* GET(host, target[, header name, value]...) */
#define GET(host, ...) idx(mkreq("GET", host, __VA_ARGS__, NULL))

static void done(void)
{
    route_table_free(T);
    T = NULL;
    reset();
}

/* ---- one kind of condition at a time ---- */

static void test_host(void)
{
    add("api.example.com", ROUTE_PATH_ANY, NULL);
    add("www.example.com.", ROUTE_PATH_ANY, NULL);   /* trailing dot in the config */
    build();
    CHECK_EQ_INT(GET("api.example.com", "/"), 0);
    CHECK_EQ_INT(GET("API.Example.COM", "/x"), 0);
    CHECK_EQ_INT(GET("api.example.com.", "/"), 0);
    CHECK_EQ_INT(GET("www.example.com", "/"), 1);
    CHECK_EQ_INT(GET("www.example.com.", "/"), 1);
    CHECK_EQ_INT(GET("api.example.co", "/"), -1);
    CHECK_EQ_INT(GET("xapi.example.com", "/"), -1);
    CHECK_EQ_INT(GET("a.api.example.com", "/"), -1);
    CHECK_EQ_INT(GET("", "/"), -1);
    CHECK_EQ_INT(GET(".", "/"), -1);
    CHECK_EQ_INT(GET(NULL, "/"), -1);
    done();
}

static void test_wildcard(void)
{
    add("*.example.com", ROUTE_PATH_ANY, NULL);
    build();
    CHECK_EQ_INT(GET("a.example.com", "/"), 0);
    CHECK_EQ_INT(GET("a.b.example.com", "/"), 0);
    CHECK_EQ_INT(GET("A.B.EXAMPLE.com.", "/"), 0);
    CHECK_EQ_INT(GET("example.com", "/"), -1);
    CHECK_EQ_INT(GET(".example.com", "/"), -1);
    CHECK_EQ_INT(GET("aexample.com", "/"), -1);
    CHECK_EQ_INT(GET("a.example.org", "/"), -1);
    CHECK_EQ_INT(GET("a.example.com.evil.net", "/"), -1);
    done();

    /* two wildcards for the same host: the first in config order wins */
    add("*.example.com", ROUTE_PATH_ANY, NULL);
    add("*.b.example.com", ROUTE_PATH_ANY, NULL);
    add("b.example.com", ROUTE_PATH_ANY, NULL);
    build();
    CHECK_EQ_INT(GET("a.b.example.com", "/"), 0);
    CHECK_EQ_INT(GET("b.example.com", "/"), 0);
    done();
    add("b.example.com", ROUTE_PATH_ANY, NULL);
    add("*.b.example.com", ROUTE_PATH_ANY, NULL);
    add("*.example.com", ROUTE_PATH_ANY, NULL);
    build();
    CHECK_EQ_INT(GET("a.b.example.com", "/"), 1);
    CHECK_EQ_INT(GET("x.a.b.example.com", "/"), 1);
    CHECK_EQ_INT(GET("b.example.com", "/"), 0);
    CHECK_EQ_INT(GET("c.example.com", "/"), 2);
    CHECK_EQ_INT(GET("example.com", "/"), -1);
    done();

    /* a very long request host, longer than the stack buffer */
    char longhost[700];
    memset(longhost, 'a', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = '\0';
    memcpy(longhost + sizeof(longhost) - 1 - strlen(".example.com"), ".example.com", 12);
    add("*.example.com", ROUTE_PATH_ANY, NULL);
    add(longhost, ROUTE_PATH_ANY, NULL);
    build();
    CHECK_EQ_INT(GET(longhost, "/"), 0);
    done();
    add(longhost, ROUTE_PATH_ANY, NULL);
    add("*.example.com", ROUTE_PATH_ANY, NULL);
    build();
    CHECK_EQ_INT(GET(longhost, "/"), 0);
    longhost[0] = 'b';
    CHECK_EQ_INT(GET(longhost, "/"), 1);
    done();
}

static void test_path(void)
{
    add(NULL, ROUTE_PATH_EXACT, "/a");
    add(NULL, ROUTE_PATH_PREFIX, "/api/");
    add(NULL, ROUTE_PATH_PREFIX, "/st");
    add(NULL, ROUTE_PATH_EXACT, "/");
    build();
    CHECK_EQ_INT(GET("h", "/a"), 0);
    CHECK_EQ_INT(GET("h", "/a?x=1"), 0);
    CHECK_EQ_INT(GET("h", "/a/"), -1);
    CHECK_EQ_INT(GET("h", "/ab"), -1);
    CHECK_EQ_INT(GET("h", "/A"), -1);
    CHECK_EQ_INT(GET("h", "/api/"), 1);
    CHECK_EQ_INT(GET("h", "/api/v1/users"), 1);
    CHECK_EQ_INT(GET("h", "/api"), -1);
    CHECK_EQ_INT(GET("h", "/st"), 2);
    CHECK_EQ_INT(GET("h", "/static/x.css"), 2);   /* a plain byte prefix */
    CHECK_EQ_INT(GET("h", "/s"), -1);
    CHECK_EQ_INT(GET("h", "/"), 3);
    CHECK_EQ_INT(GET("h", ""), 3);                /* empty path reads as "/" */
    CHECK_EQ_INT(GET("h", "/?q"), 3);
    CHECK_EQ_INT(GET("h", "*"), -1);
    done();

    /* nested prefixes, both orders */
    add(NULL, ROUTE_PATH_PREFIX, "/api/v2/");
    add(NULL, ROUTE_PATH_PREFIX, "/api/");
    add(NULL, ROUTE_PATH_PREFIX, "/api/v2/admin/");
    add(NULL, ROUTE_PATH_PREFIX, "/");
    add(NULL, ROUTE_PATH_PREFIX, "/apx");
    build();
    CHECK_EQ_INT(GET("h", "/api/v2/x"), 0);
    CHECK_EQ_INT(GET("h", "/api/v2/admin/x"), 0);
    CHECK_EQ_INT(GET("h", "/api/v1/x"), 1);
    CHECK_EQ_INT(GET("h", "/api/v2"), 1);
    CHECK_EQ_INT(GET("h", "/apx/1"), 3);
    CHECK_EQ_INT(GET("h", "/ap"), 3);
    CHECK_EQ_INT(GET("h", "*"), -1);
    done();
    add(NULL, ROUTE_PATH_PREFIX, "/api/");
    add(NULL, ROUTE_PATH_PREFIX, "/api/v2/");
    add(NULL, ROUTE_PATH_PREFIX, "");            /* the empty prefix: everything */
    build();
    CHECK_EQ_INT(GET("h", "/api/v2/x"), 0);
    CHECK_EQ_INT(GET("h", "/x"), 2);
    CHECK_EQ_INT(GET("h", "*"), 2);
    done();
}

static void test_regex(void)
{
    add(NULL, ROUTE_PATH_REGEX, "^/v[0-9]+/");
    add(NULL, ROUTE_PATH_REGEX, "[0-9]{3}$");
    add("r.example.com", ROUTE_PATH_REGEX, "\\.php$");
    build();
    CHECK_EQ_INT(GET("h", "/v2/users"), 0);
    CHECK_EQ_INT(GET("h", "/v/users"), -1);
    CHECK_EQ_INT(GET("h", "/x/v2/"), -1);          /* anchored by the pattern */
    CHECK_EQ_INT(GET("h", "/users/123"), 1);       /* unanchored otherwise */
    CHECK_EQ_INT(GET("h", "/users/123?x=456"), 1);
    CHECK_EQ_INT(GET("h", "/users/12?x=456"), -1); /* the query is not the path */
    CHECK_EQ_INT(GET("r.example.com", "/a/index.php"), 2);
    CHECK_EQ_INT(GET("s.example.com", "/a/index.php"), -1);
    done();

    /* a regex that does not compile: no table */
    add(NULL, ROUTE_PATH_REGEX, "(unclosed");
    CHECK(route_table_build(&L) == NULL);
    done();

    char msg[128];
    size_t off = 0;
    CHECK_EQ_INT(route_regex_check("^/v[0-9]+/", msg, sizeof(msg), &off), 0);
    CHECK_EQ_INT(route_regex_check("/a(b", msg, sizeof(msg), &off), -1);
    CHECK_EQ_INT(off, 4);
    CHECK(strstr(msg, "parenthes") != NULL);
}

static void test_method(void)
{
    struct conf_route *r = add(NULL, ROUTE_PATH_ANY, NULL);
    r->methods = M(H1_GET) | M(H1_HEAD);
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    other_method(r, "PURGE");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    r->methods = M(H1_DELETE);
    other_method(r, "BREW");
    build();
    CHECK_EQ_INT(idx(mkreq("GET", "h", "/", NULL)), 0);
    CHECK_EQ_INT(idx(mkreq("HEAD", "h", "/", NULL)), 0);
    CHECK_EQ_INT(idx(mkreq("POST", "h", "/", NULL)), -1);
    CHECK_EQ_INT(idx(mkreq("PURGE", "h", "/", NULL)), 1);
    CHECK_EQ_INT(idx(mkreq("purge", "h", "/", NULL)), -1);   /* methods are case-sensitive */
    CHECK_EQ_INT(idx(mkreq("PURGEX", "h", "/", NULL)), -1);
    CHECK_EQ_INT(idx(mkreq("DELETE", "h", "/", NULL)), 2);
    CHECK_EQ_INT(idx(mkreq("BREW", "h", "/", NULL)), 2);
    done();

    /* the H1_OTHER bit alone: any other method; a token without the bit */
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    r->methods = M(H1_OTHER);
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    r->other_methods = calloc(1, sizeof(char *));
    r->other_methods[r->nother_methods++] = strdup("GET");   /* never an H1_OTHER */
    r->methods = M(H1_POST);
    build();
    CHECK_EQ_INT(idx(mkreq("BREW", "h", "/", NULL)), 0);
    CHECK_EQ_INT(idx(mkreq("GET", "h", "/", NULL)), -1);
    CHECK_EQ_INT(idx(mkreq("POST", "h", "/", NULL)), 1);
    done();
}

static void test_headers(void)
{
    struct conf_route *r = add(NULL, ROUTE_PATH_ANY, NULL);
    header(r, "x-canary", "true");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    header(r, "x-debug", "*");
    build();
    CHECK_EQ_INT(GET("h", "/", "X-Canary", "true"), 0);
    CHECK_EQ_INT(GET("h", "/", "x-canary", "true"), 0);
    CHECK_EQ_INT(GET("h", "/", "x-canary", "TRUE"), -1);    /* values are exact */
    CHECK_EQ_INT(GET("h", "/", "x-canary", "true1"), -1);
    CHECK_EQ_INT(GET("h", "/", "x-canary", ""), -1);
    CHECK_EQ_INT(GET("h", "/", "x-canar", "true"), -1);
    CHECK_EQ_INT(GET("h", "/", "x-canary", "no", "X-CANARY", "true"), 0);  /* any occurrence */
    CHECK_EQ_INT(GET("h", "/", "X-Debug", ""), 1);          /* "*": present, even empty */
    CHECK_EQ_INT(GET("h", "/", "x-debug", "1", "x-canary", "true"), 0);
    CHECK_EQ_INT(GET("h", "/"), -1);
    done();
}

static void test_source(void)
{
    struct conf_route *r = add(NULL, ROUTE_PATH_PREFIX, "/admin/");
    source(r, "10.0.0.0/8");
    source(r, "fd00::/8");
    r = add(NULL, ROUTE_PATH_PREFIX, "/admin/");      /* everyone else: 403, say */
    r = add(NULL, ROUTE_PATH_EXACT, "/one");
    source(r, "192.168.1.7/32");
    build();
    CHECK_EQ_INT(idx(from(mkreq("GET", "h", "/admin/x", NULL), "10.200.1.1")), 0);
    CHECK_EQ_INT(idx(from(mkreq("GET", "h", "/admin/x", NULL), "11.0.0.1")), 1);
    CHECK_EQ_INT(idx(from(mkreq("GET", "h", "/admin/x", NULL), "fd12::1")), 0);
    CHECK_EQ_INT(idx(from(mkreq("GET", "h", "/admin/x", NULL), "fe80::1")), 1);
    /* an IPv4 client on a dual-stack listener */
    CHECK_EQ_INT(idx(from(mkreq("GET", "h", "/admin/x", NULL), "::ffff:10.9.9.9")), 0);
    CHECK_EQ_INT(idx(mkreq("GET", "h", "/admin/x", NULL)), 1);   /* no address known */
    CHECK_EQ_INT(idx(from(mkreq("GET", "h", "/one", NULL), "192.168.1.7")), 2);
    CHECK_EQ_INT(idx(from(mkreq("GET", "h", "/one", NULL), "192.168.1.8")), -1);
    done();
}

static void test_cookies(void)
{
    struct conf_route *r = add(NULL, ROUTE_PATH_ANY, NULL);
    cookie(r, "beta", "1");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    cookie(r, "flag", "");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    cookie(r, "sid", "*");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    cookie(r, "tok", "a=b");
    build();
    CHECK_EQ_INT(GET("h", "/", "Cookie", "beta=1"), 0);
    CHECK_EQ_INT(GET("h", "/", "cookie", "a=2; beta=1; c=3"), 0);
    CHECK_EQ_INT(GET("h", "/", "Cookie", "a=2;beta=1"), 0);
    CHECK_EQ_INT(GET("h", "/", "Cookie", "a=2 ;  beta = 1 ;"), 0);
    CHECK_EQ_INT(GET("h", "/", "Cookie", "a=2\t;\tbeta=1"), 0);
    CHECK_EQ_INT(GET("h", "/", "Cookie", "beta=10"), -1);
    CHECK_EQ_INT(GET("h", "/", "Cookie", "xbeta=1"), -1);
    CHECK_EQ_INT(GET("h", "/", "Cookie", "Beta=1"), -1);         /* names are exact */
    CHECK_EQ_INT(GET("h", "/", "Cookie", "beta=\"1\""), -1);     /* no unquoting */
    CHECK_EQ_INT(GET("h", "/", "Cookie", "a=1", "Cookie", "beta=1"), 0);  /* repeated header */
    CHECK_EQ_INT(GET("h", "/", "Cookie", "beta=2", "Cookie", "beta=1"), 0);
    CHECK_EQ_INT(GET("h", "/", "X-Cookie", "beta=1"), -1);
    CHECK_EQ_INT(GET("h", "/", "Cookie", "flag"), 1);            /* no '=': empty value */
    CHECK_EQ_INT(GET("h", "/", "Cookie", "flag="), 1);
    CHECK_EQ_INT(GET("h", "/", "Cookie", "a=1; flag ;b=2"), 1);
    CHECK_EQ_INT(GET("h", "/", "Cookie", "flag=0"), -1);
    CHECK_EQ_INT(GET("h", "/", "Cookie", "sid="), 2);
    CHECK_EQ_INT(GET("h", "/", "Cookie", ";; sid=abc"), 2);
    CHECK_EQ_INT(GET("h", "/", "Cookie", "tok=a=b"), 3);         /* value holds '=' */
    CHECK_EQ_INT(GET("h", "/", "Cookie", "tok=a"), -1);
    CHECK_EQ_INT(GET("h", "/", "Cookie", ""), -1);
    CHECK_EQ_INT(GET("h", "/", "Cookie", " ; ;"), -1);
    CHECK_EQ_INT(GET("h", "/"), -1);
    done();

    struct h1_header h[2] = {
        { { "Cookie", 6 }, { "a=1; b = two ", 13 } },
        { { "cookie", 6 }, { "c", 1 } },
    };
    struct h1_slice v;
    CHECK(route_cookie(h, 2, "b", &v));
    CHECK(v.len == 3 && memcmp(v.p, "two", 3) == 0);
    CHECK(route_cookie(h, 2, "c", &v));
    CHECK_EQ_INT(v.len, 0);
    CHECK(!route_cookie(h, 2, "d", &v));

    /* Every occurrence in turn, across headers; empty values included. */
    struct h1_header dup[3] = {
        { { "Cookie", 6 }, { "s=1; x=0; s=2", 13 } },
        { { "X-Cookie", 8 }, { "s=9", 3 } },
        { { "cookie", 6 }, { "s; s=3", 6 } },
    };
    static const char *const want[] = { "1", "2", "", "3" };
    struct h1_slice it = {0};
    int k = 0;
    while (route_cookie_next(dup, 3, "s", &it)) {
        CHECK(k < 4 && it.len == strlen(want[k]) && memcmp(it.p, want[k], it.len) == 0);
        k++;
    }
    CHECK_EQ_INT(k, 4);
    it = (struct h1_slice){0};
    CHECK(!route_cookie_next(dup, 3, "x-none", &it));
}

static void test_query(void)
{
    struct conf_route *r = add(NULL, ROUTE_PATH_ANY, NULL);
    query(r, "debug", "1");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    query(r, "flag", "");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    query(r, "v", "*");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    query(r, "q", "a%20b");
    build();
    CHECK_EQ_INT(GET("h", "/?debug=1"), 0);
    CHECK_EQ_INT(GET("h", "/p?a=2&debug=1&c"), 0);
    CHECK_EQ_INT(GET("h", "/p?&&debug=1&&"), 0);
    CHECK_EQ_INT(GET("h", "/p?debug=1&debug=2"), 0);
    CHECK_EQ_INT(GET("h", "/p?debug=2&debug=1"), 0);
    CHECK_EQ_INT(GET("h", "/p?debug=10"), -1);
    CHECK_EQ_INT(GET("h", "/p?xdebug=1"), -1);
    CHECK_EQ_INT(GET("h", "/p?debug%3D1"), -1);
    CHECK_EQ_INT(GET("h", "/p?debug= 1"), -1);      /* no trimming in queries */
    CHECK_EQ_INT(GET("h", "/p?debug"), -1);
    CHECK_EQ_INT(GET("h", "/p?flag"), 1);           /* no '=': empty value */
    CHECK_EQ_INT(GET("h", "/p?a=1&flag&b=2"), 1);
    CHECK_EQ_INT(GET("h", "/p?flag="), 1);
    CHECK_EQ_INT(GET("h", "/p?flag=0"), -1);
    CHECK_EQ_INT(GET("h", "/p?v"), 2);
    CHECK_EQ_INT(GET("h", "/p?v=x=y"), 2);
    CHECK_EQ_INT(GET("h", "/p?q=a%20b"), 3);       /* raw, undecoded */
    CHECK_EQ_INT(GET("h", "/p?q=a b"), -1);
    CHECK_EQ_INT(GET("h", "/p?"), -1);
    CHECK_EQ_INT(GET("h", "/p"), -1);
    CHECK_EQ_INT(GET("h", "/p", "debug", "1"), -1);
    done();

    struct h1_slice v, q = { "a=1&b&c=x%20y", 13 };
    CHECK(route_query_param(q, "c", &v));
    CHECK(v.len == 5 && memcmp(v.p, "x%20y", 5) == 0);
    CHECK(route_query_param(q, "b", &v));
    CHECK_EQ_INT(v.len, 0);
    CHECK(!route_query_param(q, "d", &v));
    CHECK(!route_query_param((struct h1_slice){ NULL, 0 }, "a", &v));
}

static void test_combined(void)
{
    struct conf_route *r = add("api.example.com", ROUTE_PATH_PREFIX, "/api/");
    r->methods = M(H1_GET) | M(H1_HEAD);
    header(r, "x-canary", "true");
    cookie(r, "beta", "1");
    query(r, "debug", "1");
    build();
    CHECK_EQ_INT(idx(mkreq("GET", "api.example.com", "/api/x?debug=1", "x-canary", "true",
                           "cookie", "beta=1", NULL)), 0);
    CHECK_EQ_INT(idx(mkreq("HEAD", "API.example.com", "/api/?debug=1", "Cookie", "beta=1",
                           "X-Canary", "true", NULL)), 0);
    /* each condition failing alone */
    CHECK_EQ_INT(idx(mkreq("GET", "www.example.com", "/api/x?debug=1", "x-canary", "true",
                           "cookie", "beta=1", NULL)), -1);
    CHECK_EQ_INT(idx(mkreq("GET", "api.example.com", "/apix?debug=1", "x-canary", "true",
                           "cookie", "beta=1", NULL)), -1);
    CHECK_EQ_INT(idx(mkreq("POST", "api.example.com", "/api/x?debug=1", "x-canary", "true",
                           "cookie", "beta=1", NULL)), -1);
    CHECK_EQ_INT(idx(mkreq("GET", "api.example.com", "/api/x?debug=1", "x-canary", "false",
                           "cookie", "beta=1", NULL)), -1);
    CHECK_EQ_INT(idx(mkreq("GET", "api.example.com", "/api/x?debug=1", "x-canary", "true",
                           "cookie", "beta=0", NULL)), -1);
    CHECK_EQ_INT(idx(mkreq("GET", "api.example.com", "/api/x?debug=0", "x-canary", "true",
                           "cookie", "beta=1", NULL)), -1);
    done();
}

/* ---- order ---- */

static void test_first_match_wins(void)
{
    /* specific at 2, broad at 5 */
    add("other.example.com", ROUTE_PATH_ANY, NULL);
    add(NULL, ROUTE_PATH_EXACT, "/nothing");
    add("api.example.com", ROUTE_PATH_PREFIX, "/api/v2/");
    add(NULL, ROUTE_PATH_REGEX, "^/zzz");
    add("*.example.org", ROUTE_PATH_ANY, NULL);
    add(NULL, ROUTE_PATH_ANY, NULL);
    build();
    CHECK_EQ_INT(GET("api.example.com", "/api/v2/users"), 2);
    CHECK_EQ_INT(GET("api.example.com", "/api/v1/users"), 5);
    CHECK_EQ_INT(GET("www.example.com", "/api/v2/users"), 5);
    CHECK_EQ_INT(GET("x.example.org", "/api/v2/users"), 4);
    CHECK_EQ_INT(GET("other.example.com", "/nothing"), 0);
    CHECK_EQ_INT(GET("h", "/nothing"), 1);
    CHECK_EQ_INT(GET(NULL, "/zzz"), 3);
    done();

    /* broad at 2, specific at 5: the broad one takes everything */
    add("other.example.com", ROUTE_PATH_ANY, NULL);
    add(NULL, ROUTE_PATH_EXACT, "/nothing");
    add(NULL, ROUTE_PATH_ANY, NULL);
    add(NULL, ROUTE_PATH_REGEX, "^/zzz");
    add("*.example.org", ROUTE_PATH_ANY, NULL);
    add("api.example.com", ROUTE_PATH_PREFIX, "/api/v2/");
    build();
    CHECK_EQ_INT(GET("api.example.com", "/api/v2/users"), 2);
    CHECK_EQ_INT(GET("x.example.org", "/"), 2);
    CHECK_EQ_INT(GET("other.example.com", "/"), 0);
    CHECK_EQ_INT(GET("h", "/nothing"), 1);
    done();

    /* a broad rule that does not hold (a header) lets a later one match */
    struct conf_route *r = add(NULL, ROUTE_PATH_PREFIX, "/");
    header(r, "x-a", "1");
    add("h.example.com", ROUTE_PATH_EXACT, "/x");
    r = add("*.example.com", ROUTE_PATH_PREFIX, "/x");
    header(r, "x-b", "1");
    add(NULL, ROUTE_PATH_EXACT, "/x");
    build();
    CHECK_EQ_INT(GET("h.example.com", "/x", "x-a", "1"), 0);
    CHECK_EQ_INT(GET("h.example.com", "/x", "x-b", "1"), 1);
    CHECK_EQ_INT(GET("g.example.com", "/x", "x-b", "1"), 2);
    CHECK_EQ_INT(GET("g.example.com", "/x"), 3);
    CHECK_EQ_INT(GET("g.example.com", "/y"), -1);
    done();
}

/* More candidate lists than a lookup gathers at once (32): 40 nested
 * prefixes, longest first, each asking for its own header value, in two
 * host buckets, interleaved so that the lower indices come from the lists
 * gathered last. */
static void test_many_candidates(void)
{
    char path[64], val[16];
    for (int i = 0; i < 80; i++) {
        int depth = 40 - i / 2;
        memset(path, 0, sizeof(path));
        path[0] = '/';
        memset(path + 1, 'x', (size_t)depth - 1);
        struct conf_route *r = add(i % 2 ? "h.example.com" : NULL, ROUTE_PATH_PREFIX, path);
        snprintf(val, sizeof(val), "%d", i);
        header(r, "x-n", val);
    }
    add(NULL, ROUTE_PATH_PREFIX, "/");
    build();
    char target[64];
    memset(target, 0, sizeof(target));
    target[0] = '/';
    memset(target + 1, 'x', 45);
    for (int i = 0; i < 80; i++) {
        snprintf(val, sizeof(val), "%d", i);
        CHECK_EQ_INT(GET("h.example.com", target, "x-n", val), i);
        CHECK_EQ_INT(GET("other", target, "x-n", val), i % 2 ? 80 : i);
    }
    CHECK_EQ_INT(GET("h.example.com", target, "x-n", "0", "x-n", "79"), 0);
    CHECK_EQ_INT(GET("h.example.com", target, "x-n", "79", "x-n", "78"), 78);
    CHECK_EQ_INT(GET("h.example.com", "/xx", "x-n", "77"), 77);   /* "/x" */
    CHECK_EQ_INT(GET("h.example.com", "/xx", "x-n", "74"), 74);   /* "/xx" */
    CHECK_EQ_INT(GET("h.example.com", "/xx", "x-n", "73"), 80);   /* "/xxx": no */
    done();
}

static void test_empty(void)
{
    build();
    CHECK_EQ_INT(GET("h", "/"), -1);
    done();
    CHECK(route_match(NULL, &(struct route_request){ 0 }) == NULL);
    route_table_free(NULL);
}

/* ---- split ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void test_split(void)
{
    struct conf_pool pools[3] = { { .name = "stable" }, { .name = "canary" }, { .name = "off" } };
    struct conf_split s[3] = {
        { .pool_name = "stable", .pool = &pools[0], .weight = 95 },
        { .pool_name = "off", .pool = &pools[2], .weight = 0 },
        { .pool_name = "canary", .pool = &pools[1], .weight = 5 },
    };
    struct conf_route r = { .action = ROUTE_SPLIT, .split = s, .nsplit = 3 };
    int counts[3] = { 0 };
    const int n = 100000;
    int none = 0;
    for (int i = 0; i < n; i++) {
        struct conf_pool *p = route_split_pick(&r, rnd());
        if (p)
            counts[p - pools]++;
        else
            none++;
    }
    CHECK_EQ_INT(none, 0);
    CHECK(counts[0] > n * 94 / 100 && counts[0] < n * 96 / 100);
    CHECK(counts[1] > n * 4 / 100 && counts[1] < n * 6 / 100);
    CHECK_EQ_INT(counts[2], 0);
    /* deterministic: the same number, the same pool; the edges of the shares */
    CHECK(route_split_pick(&r, 12345) == route_split_pick(&r, 12345));
    CHECK(route_split_pick(&r, 0) == &pools[0]);
    CHECK(route_split_pick(&r, 94) == &pools[0]);
    CHECK(route_split_pick(&r, 95) == &pools[1]);
    CHECK(route_split_pick(&r, 99) == &pools[1]);
    CHECK(route_split_pick(&r, 100) == &pools[0]);
    CHECK(route_split_pick(&r, UINT64_MAX) == route_split_pick(&r, UINT64_MAX % 100));
}

/* ---- shadowed rules ---- */

static char *shadow_out;

static int shadow(void)
{
    size_t len;
    FILE *f = open_memstream(&shadow_out, &len);
    int n = route_check_shadowed(&L, f);
    fclose(f);
    return n;
}

static void shadow_case(const char *what, int expect, const char *first_line)
{
    int n = shadow();
    if (n != expect || (first_line && strncmp(shadow_out, first_line, strlen(first_line)) != 0))
        fprintf(stderr, "shadow case %s: %d warnings, output:\n%s", what, n, shadow_out);
    CHECK_EQ_INT(n, expect);
    if (first_line)
        CHECK(strncmp(shadow_out, first_line, strlen(first_line)) == 0);
    else
        CHECK_EQ_STR(shadow_out, "");
    free(shadow_out);
    shadow_out = NULL;
    reset();
}

static void test_shadow(void)
{
    /* the issue's example: /api/ before /api/v2/ */
    add(NULL, ROUTE_PATH_PREFIX, "/api/");
    add(NULL, ROUTE_PATH_PREFIX, "/api/v2/");
    add(NULL, ROUTE_PATH_PREFIX, "/other/");
    shadow_case("prefix", 1,
                "routes.yaml:11:7: warning: route #2 can never match: route #1 (line 10) "
                "matches every request it would\n");

    add(NULL, ROUTE_PATH_PREFIX, "/api/v2/");   /* the other way round: fine */
    add(NULL, ROUTE_PATH_PREFIX, "/api/");
    shadow_case("prefix reversed", 0, NULL);

    /* the first covering rule is named; every shadowed rule is reported */
    add("a.example.com", ROUTE_PATH_EXACT, "/x");
    add(NULL, ROUTE_PATH_ANY, NULL);
    add("a.example.com", ROUTE_PATH_PREFIX, "/");
    add(NULL, ROUTE_PATH_REGEX, "^/y");
    add("b.example.com", ROUTE_PATH_EXACT, "/x");
    shadow_case("catch-all", 3,
                "routes.yaml:12:7: warning: route #3 can never match: route #2 (line 11) "
                "matches every request it would\n"
                "routes.yaml:13:7: warning: route #4 can never match: route #2 (line 11) "
                "matches every request it would\n"
                "routes.yaml:14:7: warning: route #5 can never match: route #2 (line 11) "
                "matches every request it would\n");

    add("*.example.com", ROUTE_PATH_ANY, NULL);
    add("a.example.com", ROUTE_PATH_EXACT, "/x");
    add("*.b.example.com", ROUTE_PATH_ANY, NULL);
    add("*.example.com", ROUTE_PATH_PREFIX, "/x");
    add("example.com", ROUTE_PATH_ANY, NULL);       /* not covered by *.example.com */
    add("*.com", ROUTE_PATH_ANY, NULL);
    add("a.xexample.com", ROUTE_PATH_ANY, NULL);     /* covered by *.com only */
    shadow_case("wildcards", 4, "routes.yaml:11:7: warning: route #2 can never match: route #1 (line 10)");

    add("example.com", ROUTE_PATH_ANY, NULL);
    add("a.example.com", ROUTE_PATH_ANY, NULL);
    add("*.example.com", ROUTE_PATH_PREFIX, "/x");   /* an exact name never covers a wildcard */
    add("b.example.com", ROUTE_PATH_PREFIX, "/");   /* the wildcard above asks for /x */
    add("*.xample.com", ROUTE_PATH_ANY, NULL);
    add(NULL, ROUTE_PATH_ANY, NULL);
    shadow_case("wildcards not covered", 0, NULL);

    add("A.example.com", ROUTE_PATH_ANY, NULL);     /* case and trailing dot do not count */
    add("a.example.com.", ROUTE_PATH_ANY, NULL);
    shadow_case("host spelling", 1, "routes.yaml:11:7: warning: route #2");

    /* methods */
    struct conf_route *r = add(NULL, ROUTE_PATH_ANY, NULL);
    r->methods = M(H1_GET) | M(H1_HEAD) | M(H1_POST);
    other_method(r, "PURGE");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    r->methods = M(H1_GET);
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    r->methods = M(H1_GET) | M(H1_PUT);
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    other_method(r, "PURGE");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    other_method(r, "BREW");
    add(NULL, ROUTE_PATH_ANY, NULL);                 /* any method: not covered */
    shadow_case("methods", 2, "routes.yaml:11:7: warning: route #2 can never match: route #1 (line 10)");

    r = add(NULL, ROUTE_PATH_ANY, NULL);
    r->methods = M(H1_HEAD) | M(H1_OTHER);           /* HEAD and any other method */
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    other_method(r, "BREW");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    r->methods = M(H1_HEAD);
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    r->methods = M(H1_GET);                          /* not covered */
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    r->methods = M(H1_OTHER);
    shadow_case("any other method", 3,
                "routes.yaml:11:7: warning: route #2 can never match: route #1 (line 10)");

    /* headers, cookies, query */
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    header(r, "x-canary", "*");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    header(r, "X-Canary", "true");
    query(r, "a", "1");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    header(r, "x-other", "true");
    shadow_case("header *", 1, "routes.yaml:11:7: warning: route #2 can never match: route #1 (line 10)");

    r = add(NULL, ROUTE_PATH_ANY, NULL);
    source(r, "10.0.0.0/8");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    source(r, "10.1.0.0/16");                       /* inside #1: shadowed */
    source(r, "10.2.3.4/32");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    source(r, "10.1.0.0/16");
    source(r, "11.0.0.0/8");                        /* partly outside #1 */
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    source(r, "::/0");                              /* another family */
    r = add(NULL, ROUTE_PATH_ANY, NULL);            /* no source: wider than all */
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    source(r, "0.0.0.0/0");                         /* shadowed by #5 */
    shadow_case("sources", 2, "routes.yaml:11:7: warning: route #2 can never match: route #1 (line 10) "
                "matches every request it would\n"
                "routes.yaml:15:7: warning: route #6 can never match: route #5 (line 14) "
                "matches every request it would\n");

    r = add(NULL, ROUTE_PATH_ANY, NULL);
    header(r, "x-canary", "true");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    header(r, "x-canary", "*");                     /* wider than the first */
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    header(r, "x-canary", "false");
    r = add(NULL, ROUTE_PATH_ANY, NULL);            /* no header: wider */
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    cookie(r, "beta", "1");
    shadow_case("headers not covered", 2, "routes.yaml:12:7: warning: route #3 can never match: route #2 (line 11) "
                "matches every request it would\n"
                "routes.yaml:14:7: warning: route #5 can never match: route #4 (line 13) "
                "matches every request it would\n");

    r = add(NULL, ROUTE_PATH_ANY, NULL);
    cookie(r, "beta", "1");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    cookie(r, "Beta", "1");                         /* cookie names are exact */
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    cookie(r, "beta", "1");
    cookie(r, "x", "2");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    query(r, "q", "*");
    r = add(NULL, ROUTE_PATH_ANY, NULL);
    query(r, "q", "");
    shadow_case("cookies and query", 2, "routes.yaml:12:7: warning: route #3 can never match: route #1 (line 10)");

    /* paths */
    add(NULL, ROUTE_PATH_EXACT, "/a");
    add(NULL, ROUTE_PATH_EXACT, "/a");               /* identical */
    add(NULL, ROUTE_PATH_PREFIX, "/a");              /* wider */
    add(NULL, ROUTE_PATH_EXACT, "/ab");              /* under the prefix above */
    add(NULL, ROUTE_PATH_REGEX, "^/a");              /* a prefix does not cover a regex */
    add(NULL, ROUTE_PATH_REGEX, "^/a");              /* identical regex */
    add(NULL, ROUTE_PATH_PREFIX, "/ac");             /* prefix covers prefix */
    add(NULL, ROUTE_PATH_EXACT, "/b");
    add(NULL, ROUTE_PATH_PREFIX, "/b");              /* an exact path does not cover a prefix */
    shadow_case("paths", 4, "routes.yaml:11:7: warning: route #2 can never match: route #1 (line 10)");

    r = add(NULL, ROUTE_PATH_REGEX, "^/");
    add(NULL, ROUTE_PATH_EXACT, "/x");               /* a regex is not reasoned about */
    add(NULL, ROUTE_PATH_PREFIX, "");                /* the empty prefix covers everything */
    add(NULL, ROUTE_PATH_REGEX, "x");
    add(NULL, ROUTE_PATH_ANY, NULL);
    shadow_case("regex", 2, "routes.yaml:13:7: warning: route #4 can never match: route #3 (line 12)");

    /* an identical rule, every condition set */
    for (int k = 0; k < 2; k++) {
        r = add("*.example.com", ROUTE_PATH_PREFIX, "/api/");
        r->methods = M(H1_GET);
        other_method(r, "PURGE");
        header(r, "x-h", "1");
        cookie(r, "c", "*");
        query(r, "q", "2");
    }
    shadow_case("identical", 1, "routes.yaml:11:7: warning: route #2 can never match: route #1 (line 10)");

    CHECK_EQ_INT(route_check_shadowed(&L, stderr), 0);   /* no rules */
}

/* ---- a reference matcher: every rule in order, the obvious way ---- */

static bool ref_slice_eq(const char *p, size_t n, const char *s)
{
    return strlen(s) == n && memcmp(p, s, n) == 0;
}

static bool ref_pairs(const char *s, size_t n, char sep, bool trim, const char *name,
                      const char *want)
{
    char buf[1024];
    if (!s || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *save = NULL;
    char seps[2] = { sep, '\0' };
    for (char *tok = strtok_r(buf, seps, &save); tok; tok = strtok_r(NULL, seps, &save)) {
        char *eq = strchr(tok, '=');
        char *nm = tok, *val = eq ? eq + 1 : tok + strlen(tok);
        if (eq)
            *eq = '\0';
        if (trim) {
            while (*nm == ' ' || *nm == '\t')
                nm++;
            for (char *e = nm + strlen(nm); e > nm && (e[-1] == ' ' || e[-1] == '\t');)
                *--e = '\0';
            while (*val == ' ' || *val == '\t')
                val++;
            for (char *e = val + strlen(val); e > val && (e[-1] == ' ' || e[-1] == '\t');)
                *--e = '\0';
            if (!*nm && !eq)
                continue;
        }
        if (strcmp(nm, name) == 0 && (strcmp(want, "*") == 0 || strcmp(val, want) == 0))
            return true;
    }
    return false;
}

static bool ref_rule(const struct conf_route *c, pcre2_code *re, const struct route_request *r)
{
    if (c->host) {
        char h[1024];
        size_t n = r->host.p ? r->host.len : 0;
        if (n >= sizeof(h))
            return false;
        for (size_t i = 0; i < n; i++)
            h[i] = (char)((r->host.p[i] >= 'A' && r->host.p[i] <= 'Z') ? r->host.p[i] + 32 : r->host.p[i]);
        h[n] = '\0';
        if (n && h[n - 1] == '.')
            h[--n] = '\0';
        char ch[1024];
        snprintf(ch, sizeof(ch), "%s", c->host);
        if (ch[0] && ch[strlen(ch) - 1] == '.')
            ch[strlen(ch) - 1] = '\0';
        if (strncmp(ch, "*.", 2) == 0) {
            size_t s = strlen(ch + 1);   /* ".suffix" */
            if (n <= s || strcmp(h + n - s, ch + 1) != 0)
                return false;
        } else if (strcmp(h, ch) != 0) {
            return false;
        }
    }
    const char *p = r->path.p;
    size_t plen = r->path.len;
    switch (c->path_kind) {
    case ROUTE_PATH_ANY:
        break;
    case ROUTE_PATH_EXACT:
        if (!ref_slice_eq(p, plen, c->path))
            return false;
        break;
    case ROUTE_PATH_PREFIX:
        if (plen < strlen(c->path) || memcmp(p, c->path, strlen(c->path)) != 0)
            return false;
        break;
    case ROUTE_PATH_REGEX: {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
        int rc = pcre2_match(re, (PCRE2_SPTR)p, plen, 0, 0, md, NULL);
        pcre2_match_data_free(md);
        if (rc < 0)
            return false;
        break;
    }
    }
    if (c->methods || c->nother_methods) {
        bool ok = false;
        if (r->method != H1_OTHER)
            ok = c->methods & M(r->method);
        for (size_t i = 0; i < c->nother_methods && r->method == H1_OTHER; i++)
            ok |= ref_slice_eq(r->method_name.p, r->method_name.len, c->other_methods[i]);
        if (!ok)
            return false;
    }
    for (size_t k = 0; k < c->nheaders; k++) {
        bool ok = false;
        for (uint32_t i = 0; i < r->nheaders; i++)
            ok |= r->headers[i].name.len == strlen(c->headers[k].name) &&
                  strncasecmp(r->headers[i].name.p, c->headers[k].name, r->headers[i].name.len) == 0 &&
                  (strcmp(c->headers[k].value, "*") == 0 ||
                   ref_slice_eq(r->headers[i].value.p, r->headers[i].value.len, c->headers[k].value));
        if (!ok)
            return false;
    }
    for (size_t k = 0; k < c->ncookies; k++) {
        bool ok = false;
        for (uint32_t i = 0; i < r->nheaders; i++)
            ok |= r->headers[i].name.len == 6 && strncasecmp(r->headers[i].name.p, "cookie", 6) == 0 &&
                  ref_pairs(r->headers[i].value.p, r->headers[i].value.len, ';', true,
                            c->cookies[k].name, c->cookies[k].value);
        if (!ok)
            return false;
    }
    for (size_t k = 0; k < c->nquery; k++)
        if (!ref_pairs(r->query.p, r->query.len, '&', false, c->query[k].name, c->query[k].value))
            return false;
    return true;
}

static pcre2_code **ref_compile(void)
{
    pcre2_code **re = calloc(L.nroutes + 1, sizeof(*re));
    for (size_t i = 0; i < L.nroutes; i++)
        if (L.routes[i].path_kind == ROUTE_PATH_REGEX) {
            int err;
            PCRE2_SIZE off;
            re[i] = pcre2_compile((PCRE2_SPTR)L.routes[i].path, PCRE2_ZERO_TERMINATED, 0, &err,
                                  &off, NULL);
        }
    return re;
}

static void ref_free(pcre2_code **re)
{
    for (size_t i = 0; i < L.nroutes; i++)
        pcre2_code_free(re[i]);
    free(re);
}

static int ref_match(pcre2_code **re, const struct route_request *r)
{
    for (size_t i = 0; i < L.nroutes; i++)
        if (ref_rule(&L.routes[i], re[i], r))
            return (int)i;
    return -1;
}

/* ---- 10,000 rules ---- */

static void test_large(void)
{
    char s[128];
    /* 100 hosts × 100 prefixes, some exact paths, regexes, wildcards and a
     * catch-all at the end */
    for (int h = 0; h < 100; h++) {
        char host[64];
        snprintf(host, sizeof(host), "h%d.example.com", h);
        for (int p = 0; p < 97; p++) {
            snprintf(s, sizeof(s), "/svc%d/", p);
            struct conf_route *r = add(host, ROUTE_PATH_PREFIX, s);
            if (p % 10 == 3)
                header(r, "x-tenant", "blue");
        }
        snprintf(s, sizeof(s), "/svc%d/exact", h);
        add(host, ROUTE_PATH_EXACT, s);
        snprintf(s, sizeof(s), "^/re%d/[0-9]+$", h);
        add(host, ROUTE_PATH_REGEX, s);
        snprintf(s, sizeof(s), "*.w%d.example.com", h);
        add(s, ROUTE_PATH_PREFIX, "/");
    }
    add(NULL, ROUTE_PATH_REGEX, "^/global/[a-z]+$");
    add(NULL, ROUTE_PATH_ANY, NULL);
    CHECK_EQ_INT(L.nroutes, 10002);
    build();

    /* hand-picked */
    CHECK_EQ_INT(GET("h0.example.com", "/svc0/x"), 0);
    CHECK_EQ_INT(GET("h7.example.com", "/svc42/a/b"), 7 * 100 + 42);
    CHECK_EQ_INT(GET("H99.EXAMPLE.COM", "/svc96/"), 99 * 100 + 96);
    CHECK_EQ_INT(GET("h7.example.com", "/svc13/x"), 10001);                 /* header missing */
    CHECK_EQ_INT(GET("h7.example.com", "/svc13/x", "X-Tenant", "blue"), 713);
    CHECK_EQ_INT(GET("h7.example.com", "/svc7/exact"), 707);                /* the prefix first */
    CHECK_EQ_INT(GET("h98.example.com", "/svc98/exact"), 9897);
    CHECK_EQ_INT(GET("h5.example.com", "/re5/123"), 598);
    CHECK_EQ_INT(GET("h5.example.com", "/re6/123"), 10001);
    CHECK_EQ_INT(GET("a.w5.example.com", "/svc1/"), 599);
    CHECK_EQ_INT(GET("w5.example.com", "/svc1/"), 10001);
    CHECK_EQ_INT(GET("nowhere", "/global/abc"), 10000);
    CHECK_EQ_INT(GET("h1.example.com", "/global/abc"), 10000);
    CHECK_EQ_INT(GET("nowhere", "/svc1/"), 10001);

    /* a sample against the reference */
    pcre2_code **re = ref_compile();
    int bad = 0;
    for (int i = 0; i < 3000; i++) {
        char host[64], target[128];
        int h = (int)(rnd() % 110), p = (int)(rnd() % 105);
        switch (rnd() % 4) {
        case 0: snprintf(host, sizeof(host), "h%d.example.com", h); break;
        case 1: snprintf(host, sizeof(host), "H%d.Example.com.", h); break;
        case 2: snprintf(host, sizeof(host), "x.w%d.example.com", h); break;
        default: snprintf(host, sizeof(host), "w%d.example.com", h); break;
        }
        switch (rnd() % 5) {
        case 0: snprintf(target, sizeof(target), "/svc%d/exact", p); break;
        case 1: snprintf(target, sizeof(target), "/re%d/%d", h, p); break;
        case 2: snprintf(target, sizeof(target), "/global/x%s", p % 2 ? "y" : "1"); break;
        case 3: snprintf(target, sizeof(target), "/svc%d", p); break;
        default: snprintf(target, sizeof(target), "/svc%d/items/%d", p, h); break;
        }
        struct route_request rq = rnd() % 2 ? mkreq("GET", host, target, "x-tenant", "blue", NULL)
                                            : mkreq("GET", host, target, NULL);
        int want = ref_match(re, &rq), got = idx(rq);
        if (want != got && bad++ < 5)
            fprintf(stderr, "large: %s %s: got %d, want %d\n", host, target, got, want);
    }
    CHECK_EQ_INT(bad, 0);
    ref_free(re);

    /* the shadow check on the same table: "/svc{h}/exact" is shadowed by
     * the prefix "/svc{h}/" of its host for h < 97, except where that one
     * asks for a header (h % 10 == 3): 87 rules; then one more */
    FILE *f = fopen("/dev/null", "w");
    CHECK_EQ_INT(route_check_shadowed(&L, f), 87);
    add("h3.example.com", ROUTE_PATH_PREFIX, "/svc4/deeper/");
    CHECK_EQ_INT(route_check_shadowed(&L, f), 88);
    fclose(f);
    done();
}

/* ---- random tables against the reference ---- */

static const char *pick(const char *const *a, size_t n)
{
    return a[rnd() % n];
}

#define PICK(a) pick(a, sizeof(a) / sizeof(a[0]))

static const char *const r_hosts[] = { "a.example.com", "b.example.com", "*.example.com",
                                       "*.b.example.com", "example.com", "*.org", "x.org" };
static const char *const r_paths[] = { "/", "/a", "/a/", "/a/b", "/ab", "/b", "", "/a/b/c" };
static const char *const r_regex[] = { "^/a", "b$", "^/[ab]/", "/c", "^/$" };
static const char *const r_names[] = { "x", "y", "z" };
static const char *const r_values[] = { "1", "2", "", "*" };
static const char *const q_hosts[] = { "a.example.com", "A.EXAMPLE.COM.", "b.example.com",
                                       "c.b.example.com", "example.com", "q.x.org", "x.org",
                                       "other", "" };
static const char *const q_paths[] = { "/", "/a", "/a/", "/a/b", "/ab", "/abc", "/b", "/a/b/c",
                                       "/b/a", "/c" };
static const char *const q_cookies[] = { "x=1", "x=2; y=1", " y = 2 ;x", "z", "z=; x=1",
                                         "y=1;;z=2" };
static const char *const q_queries[] = { "", "?x=1", "?y=2&x", "?x=1&y=1&z=", "?z&&x=2", "?x" };
static const char *const q_methods[] = { "GET", "POST", "PURGE", "HEAD" };

static void test_random(void)
{
    int bad = 0;
    for (int round = 0; round < 40; round++) {
        int n = 1 + (int)(rnd() % 60);
        for (int i = 0; i < n; i++) {
            enum route_path_kind k = (enum route_path_kind)(rnd() % 4);
            const char *host = rnd() % 3 ? PICK(r_hosts) : NULL;
            struct conf_route *r = add(host, k, k == ROUTE_PATH_ANY ? NULL
                                                : k == ROUTE_PATH_REGEX ? PICK(r_regex)
                                                                        : PICK(r_paths));
            if (rnd() % 4 == 0)
                r->methods = (uint32_t)(rnd() % 8);
            if (rnd() % 6 == 0)
                other_method(r, "PURGE");
            if (rnd() % 4 == 0)
                header(r, PICK(r_names), PICK(r_values));
            if (rnd() % 4 == 0)
                cookie(r, PICK(r_names), PICK(r_values));
            if (rnd() % 4 == 0)
                query(r, PICK(r_names), PICK(r_values));
        }
        build();
        pcre2_code **re = ref_compile();

        /* the rules the shadow check calls dead */
        char *out = NULL;
        size_t outlen;
        FILE *f = open_memstream(&out, &outlen);
        int nshadow = route_check_shadowed(&L, f);
        fclose(f);
        bool *dead = calloc((size_t)n, sizeof(bool));
        int counted = 0;
        for (const char *p = out; (p = strstr(p, "warning: route #")) != NULL; p++) {
            int j = atoi(p + strlen("warning: route #"));
            CHECK(j >= 2 && j <= n);
            if (j >= 2 && j <= n)
                dead[j - 1] = true;
            counted++;
        }
        CHECK_EQ_INT(counted, nshadow);
        /* the same warnings as comparing every pair */
        char *plain = NULL;
        size_t plainlen;
        f = open_memstream(&plain, &plainlen);
        route_shadow_plain(&L, f);
        fclose(f);
        CHECK_EQ_STR(out, plain);
        free(plain);
        free(out);

        for (int q = 0; q < 500; q++) {
            char target[64];
            snprintf(target, sizeof(target), "%s%s", PICK(q_paths), PICK(q_queries));
            const char *host = PICK(q_hosts);
            struct route_request rq;
            switch (rnd() % 3) {
            case 0: rq = mkreq(PICK(q_methods), host, target, NULL); break;
            case 1:
                rq = mkreq(PICK(q_methods), host, target, PICK(r_names), PICK(r_values), "Cookie",
                           PICK(q_cookies), NULL);
                break;
            default:
                rq = mkreq(PICK(q_methods), host, target, "cookie", PICK(q_cookies),
                           PICK(r_names), PICK(r_values), "COOKIE", PICK(q_cookies), NULL);
                break;
            }
            int want = ref_match(re, &rq), got = idx(rq);
            if (want != got && bad++ < 5)
                fprintf(stderr, "random round %d: %s %s: got %d, want %d\n", round, host, target,
                        got, want);
            /* a rule called shadowed never matches first */
            if (want >= 0 && dead[want] && bad++ < 5)
                fprintf(stderr, "random round %d: %s %s: rule %d matched, called shadowed\n",
                        round, host, target, want);
        }
        ref_free(re);
        free(dead);
        done();
    }
    CHECK_EQ_INT(bad, 0);
}

/* Random tables over a small alphabet, so that hosts share labels and
 * suffixes and paths share prefixes: long hosts (past the lookup's 256-byte
 * stack copy), trailing dots and upper case on both sides, many nested
 * prefixes (past the 32 candidate lists a lookup gathers at once), rules
 * that fail on a header. Against the plain reference, with the rule's host
 * read as the config leaves it (lowercased; a trailing dot is no part of
 * the name). */
static void rand_host(char *out, size_t size, bool rule)
{
    static const char *const labels[] = { "a", "b", "ab", "A", "x-1" };
    char long_label[300];
    size_t n = 0;
    int nl = 1 + (int)(rnd() % 4);

    memset(long_label, 'a', 250);
    long_label[250] = '\0';
    out[0] = '\0';
    if (rule && rnd() % 3 == 0)
        n += (size_t)snprintf(out + n, size - n, "*.");
    for (int i = 0; i < nl && n < size; i++)
        n += (size_t)snprintf(out + n, size - n, "%s%s", i ? "." : "",
                              rnd() % 8 == 0 ? long_label : labels[rnd() % 5]);
    if (rnd() % 5 == 0 && n < size)
        snprintf(out + n, size - n, ".");
    if (rule)
        for (char *c = out; *c; c++)
            *c = (char)((*c >= 'A' && *c <= 'Z') ? *c + 32 : *c);
}

static void rand_path(char *out, size_t len_max)
{
    size_t n = 1 + rnd() % len_max;
    out[0] = '/';
    for (size_t i = 1; i < n; i++)
        out[i] = "/ab"[rnd() % 3];
    out[n] = '\0';
}

static void test_random_hosts_and_prefixes(void)
{
    int bad = 0;
    for (int round = 0; round < 30; round++) {
        int n = 1 + (int)(rnd() % 120);
        for (int i = 0; i < n; i++) {
            char host[1200], path[64];
            enum route_path_kind k = (enum route_path_kind)(rnd() % 3);   /* no regex */
            rand_host(host, sizeof(host), true);
            rand_path(path, 12);
            struct conf_route *r = add(rnd() % 4 ? host : NULL, k, k ? path : NULL);
            if (rnd() % 3 == 0)
                header(r, "x", rnd() % 2 ? "1" : "2");
        }
        build();
        pcre2_code **re = ref_compile();
        for (int q = 0; q < 400; q++) {
            char host[1200], path[64];
            rand_host(host, sizeof(host), false);
            rand_path(path, 14);
            struct route_request rq = rnd() % 2 ? mkreq("GET", host, path, "x", "1", NULL)
                                                : mkreq("GET", host, path, NULL);
            int want = ref_match(re, &rq), got = idx(rq);
            if (want != got && bad++ < 5)
                fprintf(stderr, "hosts round %d: %.60s %s: got %d, want %d\n", round, host, path,
                        got, want);
        }
        ref_free(re);
        done();
    }
    CHECK_EQ_INT(bad, 0);
}

/* ---- threads share one table ---- */

static void *thread_main(void *arg)
{
    long bad = 0;
    for (int i = 0; i < 2000; i++) {
        struct route_request rq;
        memset(&rq, 0, sizeof(rq));
        char path[32];
        int n = snprintf(path, sizeof(path), "/v%d/x", i % 7);
        rq.method = H1_GET;
        rq.path = (struct h1_slice){ path, (uint32_t)n };
        rq.host = (struct h1_slice){ "h", 1 };
        const struct conf_route *m = route_match(T, &rq);
        bad += !m || m->index != (i % 7 < 5 ? 0u : 1u);
    }
    return (void *)bad;
}

static void test_threads(void)
{
    add(NULL, ROUTE_PATH_REGEX, "^/v[0-4]/");
    add(NULL, ROUTE_PATH_ANY, NULL);
    build();
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(pthread_create(&th[i], NULL, thread_main, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        pthread_join(th[i], &bad);
        CHECK_EQ_INT((long)bad, 0);
    }
    done();
}

/* ---- path normalisation (route/path.c) ---- */

/* in under opt → want ("!" = error). Also: needs_normalizing agrees with
 * whether anything changed, and the result is a fixed point. */
static void norm_case(const char *in, const struct conf_path_norm *opt, const char *want, int line)
{
    struct h1_slice p = {in, (uint32_t)strlen(in)};
    char out[256], again[256], got[260];
    const char *why = NULL;
    uint32_t n, n2;
    int r = route_path_normalize(p, opt, out, &n, &why);

    if (r < 0) {
        snprintf(got, sizeof(got), "!");
        CHECK(why != NULL);
    } else {
        snprintf(got, sizeof(got), "%.*s", (int)n, out);
        CHECK(n <= p.len);
        /* nothing to do ⇔ unchanged (a '%' may need no change: "%2F") */
        if (!route_path_needs_normalizing(p, opt))
            CHECK(n == p.len && memcmp(out, in, n) == 0);
        CHECK_EQ_INT(route_path_normalize((struct h1_slice){out, n}, opt, again, &n2, &why), 0);
        CHECK(n2 == n && memcmp(again, out, n) == 0);
    }
    if (strcmp(got, want) != 0) {
        test_failed++;
        fprintf(stderr, "%s:%d: normalize \"%s\": got \"%s\", want \"%s\"\n", __FILE__, line, in,
                got, want);
    }
    test_checks++;
}

static void test_path_normalize(void)
{
    const struct conf_path_norm std = {.normalize = true, .merge_slashes = true},
                                nomerge = {.normalize = true},
                                merge_only = {.merge_slashes = true},
                                reject = {.normalize = true, .merge_slashes = true,
                                          .escaped_slashes = PATH_SLASHES_REJECT},
                                decode = {.normalize = true, .merge_slashes = true,
                                          .escaped_slashes = PATH_SLASHES_DECODE},
                                off = {0};
#define N(in, opt, want) norm_case(in, &(opt), want, __LINE__)
    N("/", std, "/");
    N("/a/b/c", std, "/a/b/c");
    N("/a/b/", std, "/a/b/");
    /* RFC 3986 5.2.4 */
    N("/a/b/c/./../../g", std, "/a/g");
    N("/mid/content=5/../6", std, "/mid/6");
    N("/x/../admin/", std, "/admin/");
    N("/./admin", std, "/admin");
    N("/a/.", std, "/a/");
    N("/a/..", std, "/");
    N("/a/b/..", std, "/a/");
    N("/.", std, "/");
    N("/..", std, "!");
    N("/../admin", std, "!");
    N("/a/../../b", std, "!");
    N("/a/.../b", std, "/a/.../b");      /* "..." is a name */
    N("/a/.b/..c/b.", std, "/a/.b/..c/b.");
    /* percent-decoding of unreserved characters; hex case */
    N("/%61dmin/", std, "/admin/");
    N("/%2e%2E/admin", std, "!");
    N("/x/%2e%2e/admin", std, "/admin");
    N("/a%2fb", std, "/a%2Fb");           /* reserved: kept, upper-cased */
    N("/a%3F%3d", std, "/a%3F%3D");
    N("/a%7e%41%30%2D%5f", std, "/a~A0-_");
    N("/%00", std, "/%00");
    N("/%C3%A9t%c3%a9", std, "/%C3%A9t%C3%A9");
    N("/a%", std, "!");
    N("/a%2", std, "!");
    N("/a%zz", std, "!");
    N("/a%2g", std, "!");
    /* slashes */
    N("//admin", std, "/admin");
    N("/a//b///c//", std, "/a/b/c/");
    N("//", std, "/");
    N("/a//..", std, "/");
    N("/a//b", nomerge, "/a//b");
    N("/a//..", nomerge, "/a/");         /* ".." takes the empty segment */
    N("/a//b/./c", merge_only, "/a/b/./c");
    N("/%61//b", merge_only, "/%61/b");
    /* escaped slashes */
    N("/a%2Fb", reject, "!");
    N("/a%5cb", reject, "!");
    N("/a%2Fb", decode, "/a/b");
    N("/a%2F..%2Fb", decode, "/b");
    N("/a%2F%2Fb", decode, "/a/b");
    N("/a%5Cb", decode, "/a\\b");
    /* off: every byte passes */
    N("/x/../%61//", off, "/x/../%61//");
    N("/a%zz", off, "/a%zz");
    /* not a path */
    N("*", std, "*");
#undef N
}

/* route_check_paths: rules no normalised path can reach. */
static void test_check_paths(void)
{
    char *out = NULL;
    size_t outlen = 0;
    FILE *f;

    L.paths = (struct conf_path_norm){.normalize = true, .merge_slashes = true};
    add(NULL, ROUTE_PATH_EXACT, "/a/b");          /* fine */
    add(NULL, ROUTE_PATH_EXACT, "/a/../b");       /* #2 */
    add(NULL, ROUTE_PATH_PREFIX, "//admin/");     /* #3 */
    add(NULL, ROUTE_PATH_PREFIX, "/api/.well");   /* fine: a partial last segment */
    add(NULL, ROUTE_PATH_PREFIX, "/api/..");      /* fine: "/api/..x" reaches it */
    add(NULL, ROUTE_PATH_PREFIX, "/%7Euser");     /* #6: "~" after normalising */
    add(NULL, ROUTE_PATH_PREFIX, "/files/a%2F");  /* fine: an encoded slash is kept */
    add(NULL, ROUTE_PATH_EXACT, "/x/%zz");        /* #8: a request like it gets 400 */
    add(NULL, ROUTE_PATH_REGEX, "^//x");          /* regexes are not judged */
    add(NULL, ROUTE_PATH_ANY, NULL);
    f = open_memstream(&out, &outlen);
    CHECK_EQ_INT(route_check_paths(&L, f), 4);
    fclose(f);
    CHECK(strstr(out, "routes.yaml:11:7: warning: route #2 can never match: its path '/a/../b' "
                      "is not normalised") == out);
    CHECK(strstr(out, "routes.yaml:12:7: warning: route #3 ") != NULL);
    CHECK(strstr(out, "routes.yaml:15:7: warning: route #6 ") != NULL);
    CHECK(strstr(out, "routes.yaml:17:7: warning: route #8 ") != NULL);
    free(out);
    /* With normalisation off, every path can be asked for as it is. */
    L.paths = (struct conf_path_norm){0};
    CHECK_EQ_INT(route_check_paths(&L, NULL), 0);
    reset();
}

int main(void)
{
    test_host();
    test_wildcard();
    test_path();
    test_regex();
    test_method();
    test_headers();
    test_source();
    test_cookies();
    test_query();
    test_combined();
    test_first_match_wins();
    test_many_candidates();
    test_empty();
    test_split();
    test_shadow();
    test_large();
    test_random();
    test_random_hosts_and_prefixes();
    test_threads();
    test_path_normalize();
    test_check_paths();
    route_thread_done();
    TEST_END();
}
