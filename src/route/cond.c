/* The conditions of a rule that the table does not index: source, method,
 * headers, cookies and query parameters, read straight from the request's
 * slices (nothing is copied or allocated).
 *
 *  - source: the client connection's address (the TCP peer, not
 *    X-Forwarded-For) is in one of the blocks; an IPv4-mapped IPv6
 *    address counts as its IPv4 address.
 *  - method: the bitmask of 1 << enum h1_method; an H1_OTHER method is
 *    compared, case and all, with other_methods (the config sets the
 *    H1_OTHER bit too). No method condition = any method.
 *  - headers: name case-insensitive, value exact or "*" (present). A request
 *    may repeat a header; one matching occurrence is enough.
 *  - cookies: the name=value pairs of every Cookie header, split at ';',
 *    SP/HTAB around names and values ignored. A pair without '=' is a name
 *    with an empty value. Names and values compare exactly (no unquoting).
 *  - query: the name=value pairs of the query string split at '&', raw (no
 *    percent-decoding); a pair without '=' has an empty value; empty pairs
 *    ("a=1&&b=2") are skipped. */
#include <string.h>

#include "net/addr.h"
#include "route/internal.h"

static bool is_any(const char *v)
{
    return v[0] == '*' && v[1] == '\0';
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

static bool eq_ci(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

static bool slice_is(const char *p, size_t n, const char *lit, size_t litn)
{
    return n == litn && (n == 0 || memcmp(p, lit, n) == 0);
}

bool route_source_ok(const struct conf_route *c, const struct route_request *r)
{
    return !c->nsources || (r->peer && addr_cidr_match(r->peer, c->sources, c->nsources) >= 0);
}

bool route_method_ok(const struct conf_route *c, const struct route_request *r)
{
    if (!c->methods && !c->nother_methods)
        return true;
    if (r->method != H1_OTHER)
        return (c->methods >> r->method) & 1u;
    /* the config sets the H1_OTHER bit along with the tokens; the bit alone
     * would mean any other method */
    if (!c->nother_methods)
        return (c->methods >> H1_OTHER) & 1u;
    for (size_t i = 0; i < c->nother_methods; i++)
        if (slice_is(r->method_name.p, r->method_name.len, c->other_methods[i],
                     strlen(c->other_methods[i])))
            return true;
    return false;
}

bool route_headers_ok(const struct conf_route *c, const struct route_request *r)
{
    for (size_t k = 0; k < c->nheaders; k++) {
        const char *name = c->headers[k].name, *want = c->headers[k].value;
        size_t nlen = strlen(name), wlen = strlen(want);
        bool any = is_any(want), found = false;
        for (uint32_t i = 0; i < r->nheaders && !found; i++) {
            const struct h1_header *h = &r->headers[i];
            if (h->name.len != nlen || !eq_ci(h->name.p, name, nlen))
                continue;
            found = any || slice_is(h->value.p, h->value.len, want, wlen);
        }
        if (!found)
            return false;
    }
    return true;
}

/* One name=value pair from *pp (< end), pairs separated by sep; trim: drop
 * SP/HTAB around the name and the value. Returns false when none is left. */
static bool next_pair(const char **pp, const char *end, char sep, bool trim,
                      struct h1_slice *name, struct h1_slice *value)
{
    const char *p = *pp;
    while (p < end && (*p == sep || (trim && is_ows(*p))))
        p++;
    if (p >= end) {
        *pp = p;
        return false;
    }
    const char *s = p;
    const char *eq = NULL;
    while (p < end && *p != sep) {
        if (*p == '=' && !eq)
            eq = p;
        p++;
    }
    const char *ne = eq ? eq : p, *vs = eq ? eq + 1 : p, *ve = p;
    if (trim) {
        while (ne > s && is_ows(ne[-1]))
            ne--;
        while (vs < ve && is_ows(*vs))
            vs++;
        while (ve > vs && is_ows(ve[-1]))
            ve--;
    }
    name->p = s;
    name->len = (uint32_t)(ne - s);
    value->p = vs;
    value->len = (uint32_t)(ve - vs);
    *pp = p;
    return true;
}

/* Does the list at p[0..len) have a pair name=want ("*": any value)? */
static bool pairs_have(const char *p, uint32_t len, char sep, bool trim, const char *name,
                       size_t nlen, const char *want, size_t wlen, bool any)
{
    if (!p || !len)
        return false;
    const char *end = p + len;
    struct h1_slice n, v;
    while (next_pair(&p, end, sep, trim, &n, &v))
        if (slice_is(n.p, n.len, name, nlen) && (any || slice_is(v.p, v.len, want, wlen)))
            return true;
    return false;
}

static bool cookie_has(const struct route_request *r, const char *name, const char *want)
{
    size_t nlen = strlen(name), wlen = strlen(want);
    bool any = is_any(want);
    for (uint32_t i = 0; i < r->nheaders; i++) {
        const struct h1_header *h = &r->headers[i];
        if (h->name.len == 6 && eq_ci(h->name.p, "cookie", 6) &&
            pairs_have(h->value.p, h->value.len, ';', true, name, nlen, want, wlen, any))
            return true;
    }
    return false;
}

bool route_cookies_ok(const struct conf_route *c, const struct route_request *r)
{
    for (size_t k = 0; k < c->ncookies; k++)
        if (!cookie_has(r, c->cookies[k].name, c->cookies[k].value))
            return false;
    return true;
}

bool route_query_ok(const struct conf_route *c, const struct route_request *r)
{
    for (size_t k = 0; k < c->nquery; k++) {
        const char *name = c->query[k].name, *want = c->query[k].value;
        if (!pairs_have(r->query.p, r->query.len, '&', false, name, strlen(name), want,
                        strlen(want), is_any(want)))
            return false;
    }
    return true;
}

/* ---- public helpers (route.h) ---- */

bool route_query_param(struct h1_slice query, const char *name, struct h1_slice *value)
{
    if (!query.p)
        return false;
    const char *p = query.p, *end = query.p + query.len;
    size_t nlen = strlen(name);
    struct h1_slice n, v;
    while (next_pair(&p, end, '&', false, &n, &v))
        if (slice_is(n.p, n.len, name, nlen)) {
            *value = v;
            return true;
        }
    return false;
}

bool route_cookie_next(const struct h1_header *headers, uint32_t nheaders, const char *name,
                       struct h1_slice *value)
{
    size_t nlen = strlen(name);
    const char *after = value->p ? value->p + value->len : NULL;
    for (uint32_t i = 0; i < nheaders; i++) {
        const struct h1_header *h = &headers[i];
        if (h->name.len != 6 || !eq_ci(h->name.p, "cookie", 6) || !h->value.p)
            continue;
        const char *p = h->value.p, *end = h->value.p + h->value.len;
        if (after) {
            /* Resume in the header that holds the last value found. */
            if (after < p || after > end)
                continue;
            p = after;
            after = NULL;
        }
        struct h1_slice n, v;
        while (next_pair(&p, end, ';', true, &n, &v))
            if (slice_is(n.p, n.len, name, nlen)) {
                *value = v;
                return true;
            }
    }
    return false;
}

bool route_cookie(const struct h1_header *headers, uint32_t nheaders, const char *name,
                  struct h1_slice *value)
{
    struct h1_slice v = {0};

    if (!route_cookie_next(headers, nheaders, name, &v))
        return false;
    *value = v;
    return true;
}
