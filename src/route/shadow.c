/* `sluice check`: rules that can never match because an earlier rule
 * catches every request they would.
 *
 * Rule i covers rule j when each condition of i holds for every request j
 * matches:
 *  - host: i has none; or both are the same exact name; or i is "*.s" and j
 *    is a name ending in ".s" (with a label before), or a wildcard "*.t"
 *    with t == s or t ending in ".s".
 *  - path: i has none (or the empty prefix); i is a prefix of j's exact path
 *    or of j's prefix; equal exact paths; identical regex sources. A regex
 *    is not reasoned about otherwise.
 *  - method: i has none; or j has some, all among i's (bits and other
 *    tokens).
 *  - headers, cookies, query: each of i's conditions is also one of j's,
 *    with the same value or with i's value "*".
 *  - source: i has none; or every block of j lies inside a block of i.
 * An identical rule so covers. Actions do not matter. This is sound (no
 * false warnings), not complete: a rule shadowed only by several earlier
 * rules together, or through a regex, is not reported.
 *
 * Only rules that can cover j on host and path are compared with it (see
 * struct index), so a table of 10,000 rules is checked in milliseconds. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "route/internal.h"

static bool host_covers(const struct conf_route *ri, const struct conf_route *rj)
{
    const char *si, *sj;
    size_t li, lj;
    enum route_host_kind ki = route_host_of(ri, &si, &li);
    enum route_host_kind kj = route_host_of(rj, &sj, &lj);

    if (ki == ROUTE_HOST_ANY)
        return true;
    if (kj == ROUTE_HOST_ANY)
        return false;
    if (ki == ROUTE_HOST_EXACT)
        return kj == ROUTE_HOST_EXACT && li == lj && strncasecmp(si, sj, li) == 0;
    /* i is "*.si": j's name (or wildcard suffix) must end in ".si", or, for a
     * wildcard j, be si itself */
    if (kj == ROUTE_HOST_WILDCARD && lj == li && strncasecmp(si, sj, li) == 0)
        return true;
    return lj > li + 1 && sj[lj - li - 1] == '.' && strncasecmp(si, sj + lj - li, li) == 0;
}

static bool path_covers(const struct conf_route *ri, const struct conf_route *rj)
{
    const char *pi = ri->path ? ri->path : "", *pj = rj->path ? rj->path : "";
    switch (ri->path_kind) {
    case ROUTE_PATH_ANY:
        return true;
    case ROUTE_PATH_PREFIX: {
        size_t n = strlen(pi);
        if (n == 0)
            return true;
        return (rj->path_kind == ROUTE_PATH_EXACT || rj->path_kind == ROUTE_PATH_PREFIX) &&
               strncmp(pi, pj, n) == 0;
    }
    case ROUTE_PATH_EXACT:
    case ROUTE_PATH_REGEX:
        return rj->path_kind == ri->path_kind && strcmp(pi, pj) == 0;
    }
    return false;
}

static bool has_token(char *const *list, size_t n, const char *tok)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], tok) == 0)
            return true;
    return false;
}

/* The H1_OTHER bit without tokens: any other method. */
static bool any_other(const struct conf_route *r)
{
    return ((r->methods >> H1_OTHER) & 1u) && !r->nother_methods;
}

static bool method_covers(const struct conf_route *ri, const struct conf_route *rj)
{
    const uint32_t other = 1u << H1_OTHER;
    if (!ri->methods && !ri->nother_methods)
        return true;
    if (!rj->methods && !rj->nother_methods)
        return false;
    if (rj->methods & ~ri->methods & ~other)
        return false;
    if (!(rj->methods & other) && !rj->nother_methods)
        return true;           /* j: standard methods only */
    if (any_other(ri))
        return true;
    if (any_other(rj))
        return false;
    for (size_t k = 0; k < rj->nother_methods; k++)
        if (!has_token(ri->other_methods, ri->nother_methods, rj->other_methods[k]))
            return false;
    return true;
}

/* Is every condition of ci[] also in cj[] (same value, or "*" in ci)? */
static bool kv_covers(const struct conf_kv *ci, size_t ni, const struct conf_kv *cj, size_t nj,
                      bool name_ci)
{
    for (size_t a = 0; a < ni; a++) {
        bool ok = false;
        for (size_t b = 0; b < nj && !ok; b++) {
            bool same = name_ci ? strcasecmp(ci[a].name, cj[b].name) == 0
                                : strcmp(ci[a].name, cj[b].name) == 0;
            ok = same && (strcmp(ci[a].value, "*") == 0 || strcmp(ci[a].value, cj[b].value) == 0);
        }
        if (!ok)
            return false;
    }
    return true;
}

/* Does block a hold all of block b? */
static bool cidr_holds(const struct conf_cidr *a, const struct conf_cidr *b)
{
    unsigned full = a->prefix / 8, rest = a->prefix % 8;

    return a->family == b->family && a->prefix <= b->prefix &&
           memcmp(a->addr, b->addr, full) == 0 &&
           (!rest || !((a->addr[full] ^ b->addr[full]) & (uint8_t)(0xff << (8 - rest))));
}

static bool source_covers(const struct conf_route *ri, const struct conf_route *rj)
{
    if (!ri->nsources)
        return true;
    for (size_t b = 0; b < rj->nsources; b++) {
        bool held = false;
        for (size_t a = 0; a < ri->nsources && !held; a++)
            held = cidr_holds(&ri->sources[a], &rj->sources[b]);
        if (!held)
            return false;
    }
    return rj->nsources > 0;
}

static bool covers(const struct conf_route *ri, const struct conf_route *rj)
{
    return host_covers(ri, rj) && path_covers(ri, rj) && method_covers(ri, rj) &&
           source_covers(ri, rj) &&
           kv_covers(ri->headers, ri->nheaders, rj->headers, rj->nheaders, true) &&
           kv_covers(ri->cookies, ri->ncookies, rj->cookies, rj->ncookies, false) &&
           kv_covers(ri->query, ri->nquery, rj->query, rj->nquery, false);
}

static void warn(const struct conf_listener *l, size_t j, size_t i, FILE *diag)
{
    const struct conf_route *rj = &l->routes[j];
    if (!diag)
        return;
    fprintf(diag,
            "%s:%d:%d: warning: route #%zu can never match: route #%zu (line %d) matches "
            "every request it would\n",
            rj->pos.file ? rj->pos.file : "config", rj->pos.line, rj->pos.col, j + 1, i + 1,
            l->routes[i].pos.line);
}

/* Every pair: for when the index below cannot be allocated, and for the
 * tests to compare with. */
int route_shadow_plain(const struct conf_listener *l, FILE *diag)
{
    int n = 0;
    for (size_t j = 1; j < l->nroutes; j++)
        for (size_t i = 0; i < j; i++)
            if (covers(&l->routes[i], &l->routes[j])) {
                warn(l, j, i, diag);
                n++;
                break;
            }
    return n;
}

/* The index. Rules are grouped by (host condition, path condition): the
 * map's key is the lowercased host name (or suffix), a NUL and the path,
 * its tag says which kinds they are. Each group is a list, ascending. For
 * rule j only the groups that can cover it are looked at: no host, j's
 * exact host, each wildcard suffix of j's host; and within each, no path,
 * every prefix of j's path, j's exact path, j's regex. */
struct index {
    char **keys;                 /* per rule: the key, NUL-terminated */
    uint32_t *keylen;
    uint32_t *next;              /* the next rule of its group, or ROUTE_NONE */
    uint32_t *head, *tail;       /* per group */
    uint32_t ngroups;
    struct hmap map;             /* (tag, key) → group */
    uint64_t prefix_lens;        /* bit min(len, 63) set for each path prefix length */
    char *buf;                   /* room for the longest key */
};

static void index_free(struct index *x, size_t nr)
{
    hmap_free(&x->map);
    if (x->keys)
        for (size_t i = 0; i < nr; i++)
            free(x->keys[i]);
    free(x->keys);
    free(x->keylen);
    free(x->next);
    free(x->head);
    free(x->tail);
    free(x->buf);
}

/* A rule's path kind for grouping: the empty prefix is no path condition. */
static enum route_path_kind path_kind_of(const struct conf_route *r)
{
    if (r->path_kind == ROUTE_PATH_PREFIX && (!r->path || !r->path[0]))
        return ROUTE_PATH_ANY;
    return r->path_kind;
}

static uint32_t tag_of(enum route_host_kind h, enum route_path_kind p)
{
    return (uint32_t)h * 4 + (uint32_t)p;
}

static int index_build(struct index *x, const struct conf_listener *l)
{
    size_t nr = l->nroutes, maxkey = 0;
    x->keys = calloc(nr, sizeof(*x->keys));
    x->keylen = malloc(nr * sizeof(*x->keylen));
    x->next = malloc(nr * sizeof(*x->next));
    x->head = malloc(nr * sizeof(*x->head));
    x->tail = malloc(nr * sizeof(*x->tail));
    if (!x->keys || !x->keylen || !x->next || !x->head || !x->tail)
        return -1;
    for (uint32_t i = 0; i < nr; i++) {
        const struct conf_route *r = &l->routes[i];
        const char *name;
        size_t hlen;
        enum route_host_kind hk = route_host_of(r, &name, &hlen);
        enum route_path_kind pk = path_kind_of(r);
        const char *path = pk == ROUTE_PATH_ANY || !r->path ? "" : r->path;
        size_t plen = strlen(path), klen = hlen + 1 + plen;
        if (klen >= UINT32_MAX / 2 || !(x->keys[i] = malloc(klen + 1)))
            return -1;
        for (size_t c = 0; c < hlen; c++)
            x->keys[i][c] = (name[c] >= 'A' && name[c] <= 'Z') ? (char)(name[c] + 32) : name[c];
        x->keys[i][hlen] = '\0';
        memcpy(x->keys[i] + hlen + 1, path, plen + 1);
        x->keylen[i] = (uint32_t)klen;
        if (klen > maxkey)
            maxkey = klen;
        if (pk == ROUTE_PATH_PREFIX)
            x->prefix_lens |= 1ull << (plen < 63 ? plen : 63);

        bool created;
        uint32_t *g = hmap_put(&x->map, x->keys[i], (uint32_t)klen, tag_of(hk, pk), &created);
        if (!g)
            return -1;
        x->next[i] = ROUTE_NONE;
        if (created) {
            *g = x->ngroups++;
            x->head[*g] = i;
        } else {
            x->next[x->tail[*g]] = i;
        }
        x->tail[*g] = i;
    }
    return (x->buf = malloc(maxkey + 1)) ? 0 : -1;
}

/* The lowest rule below *best in group (tag, buf[0..len)) that covers j. */
static void probe(const struct index *x, const struct conf_listener *l, uint32_t j, uint32_t tag,
                  uint32_t len, uint32_t *best)
{
    uint32_t g = hmap_get(&x->map, x->buf, len, tag);
    if (g == ROUTE_NONE)
        return;
    for (uint32_t i = x->head[g]; i != ROUTE_NONE && i < *best; i = x->next[i])
        if (covers(&l->routes[i], &l->routes[j])) {
            *best = i;
            return;
        }
}

/* The groups under host key (hk, name[0..nlen)) that may cover j. */
static void probe_host(const struct index *x, const struct conf_listener *l, uint32_t j,
                       enum route_host_kind hk, const char *name, uint32_t nlen, uint32_t *best)
{
    const struct conf_route *rj = &l->routes[j];
    enum route_path_kind pk = path_kind_of(rj);
    const char *key = x->keys[j];
    uint32_t base = nlen + 1, plen = x->keylen[j] - (uint32_t)strlen(key) - 1;
    const char *path = key + strlen(key) + 1;

    memmove(x->buf, name, nlen);
    x->buf[nlen] = '\0';
    memcpy(x->buf + base, path, plen);
    probe(x, l, j, tag_of(hk, ROUTE_PATH_ANY), base, best);
    if (pk == ROUTE_PATH_EXACT || pk == ROUTE_PATH_PREFIX)
        for (uint32_t n = 1; n <= plen; n++)
            if ((x->prefix_lens >> (n < 63 ? n : 63)) & 1u)
                probe(x, l, j, tag_of(hk, ROUTE_PATH_PREFIX), base + n, best);
    if (pk == ROUTE_PATH_EXACT || pk == ROUTE_PATH_REGEX)
        probe(x, l, j, tag_of(hk, pk), base + plen, best);
}

/* The lowest earlier rule that covers j, or ROUTE_NONE. */
static uint32_t covering(const struct index *x, const struct conf_listener *l, uint32_t j)
{
    const char *name = x->keys[j];
    uint32_t nlen = (uint32_t)strlen(name), best = j;
    const char *n;
    size_t len;
    enum route_host_kind hk = route_host_of(&l->routes[j], &n, &len);

    probe_host(x, l, j, ROUTE_HOST_ANY, "", 0, &best);
    if (hk == ROUTE_HOST_EXACT || hk == ROUTE_HOST_WILDCARD) {
        /* the same name (or suffix), then every wildcard suffix of it */
        probe_host(x, l, j, hk, name, nlen, &best);
        for (uint32_t k = 1; k + 1 < nlen; k++)
            if (name[k] == '.')
                probe_host(x, l, j, ROUTE_HOST_WILDCARD, name + k + 1, nlen - k - 1, &best);
    }
    return best == j ? ROUTE_NONE : best;
}

int route_check_shadowed(const struct conf_listener *l, FILE *diag)
{
    size_t nr = l->nroutes;
    struct index x = { 0 };
    int n = 0;

    if (nr < 2)
        return 0;
    if (nr >= ROUTE_NONE / 2 || index_build(&x, l) < 0) {
        index_free(&x, nr);
        return route_shadow_plain(l, diag);
    }
    for (uint32_t j = 1; j < nr; j++) {
        uint32_t best = covering(&x, l, j);
        if (best != ROUTE_NONE) {
            warn(l, j, best, diag);
            n++;
        }
    }
    index_free(&x, nr);
    return n;
}
