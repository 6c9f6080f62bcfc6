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
 * An identical rule so covers. Actions do not matter. This is sound (no
 * false warnings), not complete: a rule shadowed only by several earlier
 * rules together, or through a regex, is not reported.
 *
 * Only rules that can cover j on host are compared with it: the rules
 * without a host, the wildcard ones and the ones with j's exact host. */
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

static bool method_covers(const struct conf_route *ri, const struct conf_route *rj)
{
    if (!ri->methods && !ri->nother_methods)
        return true;
    if (!rj->methods && !rj->nother_methods)
        return false;
    if (rj->methods & ~ri->methods)
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

static bool covers(const struct conf_route *ri, const struct conf_route *rj)
{
    return host_covers(ri, rj) && path_covers(ri, rj) && method_covers(ri, rj) &&
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

/* Every pair: for when the index below cannot be allocated. */
static int check_plain(const struct conf_listener *l, FILE *diag)
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

/* The index: prev_same[j] is the previous rule with j's exact host (or
 * ROUTE_NONE); general[] the rules without a host or with a wildcard. */
struct index {
    uint32_t *prev_same;
    uint32_t *general;
    uint32_t ngeneral;
    char **names;                /* lowercased exact hosts, the map's keys */
    struct hmap last;            /* exact host → last rule with it */
};

static void index_free(struct index *x, size_t nr)
{
    hmap_free(&x->last);
    if (x->names)
        for (size_t i = 0; i < nr; i++)
            free(x->names[i]);
    free(x->names);
    free(x->general);
    free(x->prev_same);
}

static int index_build(struct index *x, const struct conf_listener *l)
{
    size_t nr = l->nroutes;
    x->general = malloc(nr * sizeof(*x->general));
    x->prev_same = malloc(nr * sizeof(*x->prev_same));
    x->names = calloc(nr, sizeof(*x->names));
    if (!x->general || !x->prev_same || !x->names)
        return -1;
    for (uint32_t j = 0; j < nr; j++) {
        const char *name;
        size_t len;
        x->prev_same[j] = ROUTE_NONE;
        if (route_host_of(&l->routes[j], &name, &len) != ROUTE_HOST_EXACT) {
            x->general[x->ngeneral++] = j;
            continue;
        }
        if (len >= UINT32_MAX || !(x->names[j] = malloc(len + 1)))
            return -1;
        for (size_t c = 0; c < len; c++)
            x->names[j][c] = (name[c] >= 'A' && name[c] <= 'Z') ? (char)(name[c] + 32) : name[c];
        x->names[j][len] = '\0';
        bool created;
        uint32_t *v = hmap_put(&x->last, x->names[j], (uint32_t)len, 0, &created);
        if (!v)
            return -1;
        x->prev_same[j] = *v;
        *v = j;
    }
    return 0;
}

int route_check_shadowed(const struct conf_listener *l, FILE *diag)
{
    size_t nr = l->nroutes;
    struct index x = { 0 };
    int n = 0;

    if (nr < 2)
        return 0;
    if (nr >= ROUTE_NONE || index_build(&x, l) < 0) {
        index_free(&x, nr);
        return check_plain(l, diag);
    }
    for (uint32_t j = 1; j < nr; j++) {
        const struct conf_route *rj = &l->routes[j];
        uint32_t best = ROUTE_NONE;
        /* general is ascending: the first that covers is the lowest */
        for (uint32_t g = 0; g < x.ngeneral && x.general[g] < j; g++)
            if (covers(&l->routes[x.general[g]], rj)) {
                best = x.general[g];
                break;
            }
        for (uint32_t i = x.prev_same[j]; i != ROUTE_NONE; i = x.prev_same[i])
            if (i < best && covers(&l->routes[i], rj))
                best = i;
        if (best != ROUTE_NONE) {
            warn(l, j, best, diag);
            n++;
        }
    }
    index_free(&x, nr);
    return n;
}
