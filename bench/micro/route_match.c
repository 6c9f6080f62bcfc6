/* Microbenchmark: ns per route_match() on a small table (10 rules, the kind
 * of thing a real config has) and on a large one (10,002 rules: 100 hosts ×
 * (97 prefixes, an exact path, a regex, a wildcard) plus a global regex and
 * a catch-all; and 10,000 rules with paths but no host), for requests that hit a prefix, an exact path, a regex, a
 * wildcard host, and that fall through to the last rule. Each request has
 * nine browser-like header fields. `make test-unit` builds it (so it keeps
 * building as the code moves) but does not run it:
 *
 *   make build/micro/route_match && build/micro/route_match [iterations]
 *
 * Each figure is the best of five runs of [iterations] (default 1,000,000)
 * matches. Also prints how long building each table and the shadow check
 * take, and what the path normalisation that runs before every match costs
 * (listener defaults) for a clean path, which is only scanned, and for
 * paths that are rewritten. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "route/route.h"

static struct conf_route *routes;
static size_t nroutes, cap;

static struct conf_route *add(const char *host, enum route_path_kind kind, const char *path)
{
    if (nroutes == cap) {
        cap = cap ? cap * 2 : 64;
        routes = realloc(routes, cap * sizeof(*routes));
    }
    struct conf_route *r = &routes[nroutes];
    memset(r, 0, sizeof(*r));
    r->index = (uint32_t)nroutes;
    r->pos = (struct conf_pos){ "bench.yaml", (int)nroutes + 1, 7 };
    r->host = host ? strdup(host) : NULL;
    r->path_kind = kind;
    r->path = path ? strdup(path) : NULL;
    r->action = ROUTE_RESPOND;
    nroutes++;
    return r;
}

static void add_header(struct conf_route *r, const char *name, const char *value)
{
    r->headers = realloc(r->headers, (r->nheaders + 1) * sizeof(*r->headers));
    r->headers[r->nheaders++] = (struct conf_kv){ .name = strdup(name), .value = strdup(value) };
}

static void free_routes(void)
{
    for (size_t i = 0; i < nroutes; i++) {
        free(routes[i].host);
        free(routes[i].path);
        for (size_t k = 0; k < routes[i].nheaders; k++) {
            free(routes[i].headers[k].name);
            free(routes[i].headers[k].value);
        }
        free(routes[i].headers);
    }
    free(routes);
    routes = NULL;
    nroutes = cap = 0;
}

static void small_table(void)
{
    struct conf_route *r = add("api.example.com", ROUTE_PATH_PREFIX, "/api/");
    add_header(r, "x-canary", "true");
    add("api.example.com", ROUTE_PATH_PREFIX, "/api/");
    add(NULL, ROUTE_PATH_EXACT, "/old");
    add(NULL, ROUTE_PATH_EXACT, "/ping");
    add(NULL, ROUTE_PATH_REGEX, "^/v[0-9]+/");
    add("*.cdn.example.com", ROUTE_PATH_PREFIX, "/static/");
    add("www.example.com", ROUTE_PATH_PREFIX, "/shop/");
    add("www.example.com", ROUTE_PATH_EXACT, "/");
    add(NULL, ROUTE_PATH_PREFIX, "/assets/");
    add(NULL, ROUTE_PATH_ANY, NULL);
}

static void large_table(void)
{
    char host[64], s[64];
    for (int h = 0; h < 100; h++) {
        snprintf(host, sizeof(host), "h%d.example.com", h);
        for (int p = 0; p < 97; p++) {
            snprintf(s, sizeof(s), "/svc%d/", p);
            struct conf_route *r = add(host, ROUTE_PATH_PREFIX, s);
            if (p % 10 == 3)
                add_header(r, "x-tenant", "blue");
        }
        snprintf(s, sizeof(s), "/exact%d/path", h);
        add(host, ROUTE_PATH_EXACT, s);
        snprintf(s, sizeof(s), "^/re%d/[0-9]+$", h);
        add(host, ROUTE_PATH_REGEX, s);
        snprintf(s, sizeof(s), "*.w%d.example.com", h);
        add(s, ROUTE_PATH_PREFIX, "/");
    }
    add(NULL, ROUTE_PATH_REGEX, "^/global/[a-z]+$");
    add(NULL, ROUTE_PATH_ANY, NULL);
}

/* 10,000 rules and no host anywhere: one trie (and the shadow check's
 * worst case: every earlier rule is a candidate) */
static void flat_table(void)
{
    char s[64];
    for (int p = 0; p < 9998; p++) {
        snprintf(s, sizeof(s), "/api/v%d/svc%d/", p % 7, p);
        add(NULL, p % 3 ? ROUTE_PATH_PREFIX : ROUTE_PATH_EXACT, s);
    }
    add(NULL, ROUTE_PATH_REGEX, "^/global/[a-z]+$");
    add(NULL, ROUTE_PATH_ANY, NULL);
}

static struct h1_header headers[] = {
    { { "Host", 4 }, { "h42.example.com", 15 } },
    { { "User-Agent", 10 }, { "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0", 48 } },
    { { "Accept", 6 }, { "text/html,application/xhtml+xml,*/*;q=0.8", 41 } },
    { { "Accept-Encoding", 15 }, { "gzip, deflate, br", 17 } },
    { { "Accept-Language", 15 }, { "en-US,en;q=0.9", 14 } },
    { { "Connection", 10 }, { "keep-alive", 10 } },
    { { "Cookie", 6 }, { "session=3f2a9c0e7b1d4e5f; theme=dark", 36 } },
    { { "Sec-Fetch-Mode", 14 }, { "navigate", 8 } },
    { { "X-Tenant", 8 }, { "green", 5 } },
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void run(const struct route_table *t, const char *what, const char *host,
                const char *path, const char *query, long iters)
{
    struct route_request r;
    memset(&r, 0, sizeof(r));
    r.host = (struct h1_slice){ host, (uint32_t)strlen(host) };
    r.path = (struct h1_slice){ path, (uint32_t)strlen(path) };
    if (query)
        r.query = (struct h1_slice){ query, (uint32_t)strlen(query) };
    r.method = H1_GET;
    r.method_name = (struct h1_slice){ "GET", 3 };
    r.headers = headers;
    r.nheaders = sizeof(headers) / sizeof(headers[0]);

    const struct conf_route *m = NULL;
    uintptr_t sink = 0;
    for (long i = 0; i < iters / 10; i++)      /* warm up */
        sink += (uintptr_t)route_match(t, &r);
    double ns = 1e30;
    for (int rep = 0; rep < 5; rep++) {   /* the best of five: other load only adds */
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            m = route_match(t, &r);
            sink += (uintptr_t)m;
            __asm__ volatile("" : : "r"(sink) : "memory");
        }
        double d = (now_ns() - t0) / (double)iters;
        if (d < ns)
            ns = d;
    }
    printf("  %-34s %7.1f ns/match  (rule #%d)\n", what, ns, m ? (int)m->index + 1 : 0);
}

/* What the proxy does per request before routing (route_path_normalize
 * into a buffer only when route_path_needs_normalizing). */
static void run_norm(const char *what, const char *path, long iters)
{
    const struct conf_path_norm opt = {.normalize = true, .merge_slashes = true};
    struct h1_slice p = { path, (uint32_t)strlen(path) };
    char out[256];
    uint32_t n = p.len;
    const char *why;
    uintptr_t sink = 0;
    double ns = 1e30;

    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            __asm__ volatile("" : "+r"(p.p) : : "memory");
            if (route_path_needs_normalizing(p, &opt) &&
                route_path_normalize(p, &opt, out, &n, &why) < 0)
                n = 0;
            sink += n;
            __asm__ volatile("" : : "r"(sink) : "memory");
        }
        double d = (now_ns() - t0) / (double)iters;
        if (d < ns)
            ns = d;
    }
    if (!route_path_needs_normalizing(p, &opt))
        printf("  %-34s %7.1f ns/path  (%s, unchanged)\n", what, ns, path);
    else
        printf("  %-34s %7.1f ns/path  (%s -> %.*s)\n", what, ns, path, (int)n, out);
}

static struct route_table *build(const char *name)
{
    struct conf_listener l = { .name = "bench", .routes = routes, .nroutes = nroutes };
    double t0 = now_ns();
    struct route_table *t = route_table_build(&l);
    double t1 = now_ns();
    FILE *null = fopen("/dev/null", "w");
    int shadowed = route_check_shadowed(&l, null);
    double t2 = now_ns();
    fclose(null);
    printf("%s: %zu rules, built in %.2f ms, shadow check %.2f ms (%d shadowed)\n", name, nroutes,
           (t1 - t0) / 1e6, (t2 - t1) / 1e6, shadowed);
    if (!t) {
        fprintf(stderr, "build failed\n");
        exit(1);
    }
    return t;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 1000000;

    printf("path normalisation (normalize_path, merge_slashes):\n");
    run_norm("clean path (scan only)", "/api/v1/users/42/orders", iters);
    run_norm("dot segments", "/api/v1/../v2/./users/42", iters);
    run_norm("encoded letters, double slash", "/api//v1/%75sers/42%7e", iters);

    small_table();
    struct route_table *t = build("small table");
    run(t, "host + prefix", "api.example.com", "/api/v1/users/42", "page=2", iters);
    run(t, "exact path (any host)", "www.example.com", "/ping", NULL, iters);
    run(t, "regex", "www.example.com", "/v2/items", NULL, iters);
    run(t, "wildcard host + prefix", "img.cdn.example.com", "/static/a.png", NULL, iters);
    run(t, "fall through to catch-all", "other.example.org", "/nothing/here", NULL, iters);
    route_table_free(t);
    free_routes();

    large_table();
    t = build("large table");
    run(t, "host + prefix", "h42.example.com", "/svc57/items/123", NULL, iters);
    run(t, "host + prefix, header fails", "h42.example.com", "/svc53/items/123", NULL, iters);
    run(t, "host + exact path", "h42.example.com", "/exact42/path", NULL, iters);
    run(t, "host regex", "h42.example.com", "/re42/123456", NULL, iters);
    run(t, "wildcard host", "a.b.w42.example.com", "/x", NULL, iters);
    run(t, "global regex", "unknown.example.net", "/global/abc", NULL, iters);
    run(t, "fall through to catch-all", "h42.example.com", "/nothing/here", NULL, iters);
    route_table_free(t);
    free_routes();

    flat_table();
    t = build("large table, no hosts");
    run(t, "prefix", "h42.example.com", "/api/v1/svc4999/items", NULL, iters);
    run(t, "exact path", "h42.example.com", "/api/v0/svc4998/", NULL, iters);
    run(t, "regex", "h42.example.com", "/global/abc", NULL, iters);
    run(t, "fall through to catch-all", "h42.example.com", "/api/v3/nothing", NULL, iters);
    route_table_free(t);
    free_routes();
    route_thread_done();
    return 0;
}
