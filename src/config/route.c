/* The `routes` of an http listener: match conditions, one action, rewrites.
 * Everything a rule says is checked here with its position, so the proxy
 * never meets a rule it cannot carry out (a regex that does not compile, a
 * header value with a line break that would split the forwarded head). */
#include "config/config.h"
#include "config/internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <arpa/inet.h>
#include <ctype.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buffer.h"
#include "proto/http1.h"

#define CONFIG_MAX_ROUTES 100000

static const char *const method_names[] = {
    [H1_GET] = "GET", [H1_HEAD] = "HEAD", [H1_POST] = "POST", [H1_PUT] = "PUT",
    [H1_DELETE] = "DELETE", [H1_CONNECT] = "CONNECT", [H1_OPTIONS] = "OPTIONS",
    [H1_TRACE] = "TRACE", [H1_PATCH] = "PATCH",
};

static bool is_tchar(unsigned char c)
{
    return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A header or method name: an RFC 9110 token. */
static int want_token(struct config_diag *d, const char *owner, const char *path,
                      const struct config_node *n, const char **out)
{
    char where[256], shown[96];

    if (config_want_string(d, owner, path, n, out) < 0)
        return -1;
    for (const char *p = *out; *p; p++) {
        if (!is_tchar((unsigned char)*p)) {
            config_diag_error(d, n->line, n->col, "%s'%s' is not a valid token (letters, digits "
                              "and !#$%%&'*+-.^_`|~ only)",
                              config_where(where, sizeof(where), owner, path),
                              config_show(shown, sizeof(shown), *out));
            return -1;
        }
    }
    return 0;
}

/* A value that goes into a forwarded head or is compared with one: no
 * control bytes (CR/LF would let a config split the message). Empty is fine. */
static int want_field_value(struct config_diag *d, const char *owner, const char *path,
                            const struct config_node *n, const char **out)
{
    char where[256];

    if (n->kind == CONFIG_NODE_SCALAR && n->len == 0) {
        *out = "";
        return 0;
    }
    if (config_want_string(d, owner, path, n, out) < 0)
        return -1;
    for (const char *p = *out; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            config_diag_error(d, n->line, n->col, "%smust not contain control characters",
                              config_where(where, sizeof(where), owner, path));
            return -1;
        }
    }
    return 0;
}

static char *lower_dup(struct config_diag *d, const char *s)
{
    char *c = config_strdup(d, s);

    for (char *p = c; p && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return c;
}

/* Fields sluice writes itself, from the message it forwards: Host, the
 * framing and the connection fields. A route that set or removed one would
 * send a head that says something else than the bytes that follow (a
 * Content-Length beside a streamed body: the backend reads the rest as the
 * next request), or no Host. The one exception, with host_settable: a
 * route's set_headers may give Host, which then replaces the client's
 * (NGINX's proxy_set_header Host; http_write_request_head). */
static bool written_by_sluice(const char *name, bool host_settable)
{
    static const char *const names[] = {"host", "content-length", "transfer-encoding",
                                        "connection", "keep-alive", "proxy-connection", "te",
                                        "trailer", "upgrade", NULL};

    for (size_t i = host_settable ? 1 : 0; names[i]; i++)
        if (strcasecmp(name, names[i]) == 0)
            return true;
    return false;
}

static void refuse_written(struct config_diag *d, const char *owner, const char *path,
                           int line, int col, const char *name)
{
    config_diag_error(d, line, col, "%s: %s: sluice writes '%s' itself, from the message it "
                      "forwards; a route cannot set or remove it", owner, path, name);
}

/* What read_kv refuses among the names: nothing (matches), the fields
 * sluice writes, or those but Host (a route's request set_headers). */
enum kv_written { KV_ANY, KV_NOT_WRITTEN, KV_NOT_WRITTEN_BUT_HOST };

/* A mapping of name → value (headers, cookies, query, set_headers). */
static void read_kv(struct config_diag *d, struct config *cfg, const char *owner,
                    const char *path, const struct config_node *n, bool token_names,
                    bool lower, enum kv_written written, struct conf_kv **out, size_t *nout)
{
    char where[256];

    if (config_want_map(d, owner, path, n) < 0)
        return;
    if (n->n == 0)
        return;
    *out = calloc(n->n, sizeof(**out));
    if (!*out) {
        config_diag_error(d, n->line, n->col, "out of memory");
        return;
    }
    snprintf(where, sizeof(where), "%s", path);
    for (size_t i = 0; i < n->n; i++) {
        const struct config_node *k = n->pairs[i].key, *v = n->pairs[i].value;
        const char *name, *value;
        int rc = token_names ? want_token(d, owner, where, k, &name)
                             : config_want_string(d, owner, where, k, &name);
        if (rc < 0 || want_field_value(d, owner, where, v, &value) < 0)
            continue;
        if (written != KV_ANY && written_by_sluice(name, written == KV_NOT_WRITTEN_BUT_HOST)) {
            refuse_written(d, owner, path, k->line, k->col, name);
            continue;
        }
        struct conf_kv *kv = &(*out)[(*nout)++];
        kv->name = lower ? lower_dup(d, name) : config_strdup(d, name);
        kv->value = config_strdup(d, value);
        config_pos_set(&kv->pos, cfg, k);
    }
}

/* A list of header names (remove_headers). */
static void read_names(struct config_diag *d, const char *owner, const char *path,
                       const struct config_node *n, char ***out, size_t *nout)
{
    if (config_want_seq(d, owner, path, n) < 0 || n->n == 0)
        return;
    *out = calloc(n->n, sizeof(**out));
    if (!*out)
        return;
    for (size_t i = 0; i < n->n; i++) {
        const char *name;
        if (want_token(d, owner, path, n->items[i], &name) < 0)
            continue;
        if (written_by_sluice(name, false))
            refuse_written(d, owner, path, n->items[i]->line, n->items[i]->col, name);
        else
            (*out)[(*nout)++] = lower_dup(d, name);
    }
}

static void read_methods(struct config_diag *d, const char *owner, const struct config_node *n,
                         struct conf_route *r)
{
    const struct config_node *one = n;
    size_t count = 1;

    if (n->kind == CONFIG_NODE_SEQ) {
        count = n->n;
        if (count == 0) {
            config_diag_error(d, n->line, n->col, "%s: match.method: an empty list matches "
                              "nothing; leave it out to match every method", owner);
            return;
        }
        r->other_methods = calloc(count, sizeof(*r->other_methods));
    }
    for (size_t i = 0; i < count; i++) {
        const char *m;
        int k;

        if (n->kind == CONFIG_NODE_SEQ)
            one = n->items[i];
        if (want_token(d, owner, "match.method", one, &m) < 0)
            continue;
        for (k = 0; k < H1_OTHER; k++)
            if (strcmp(m, method_names[k]) == 0)
                break;
        if (k < H1_OTHER) {
            r->methods |= 1u << k;
        } else {
            if (!r->other_methods)
                r->other_methods = calloc(1, sizeof(*r->other_methods));
            if (r->other_methods)
                r->other_methods[r->nother_methods++] = config_strdup(d, m);
            r->methods |= 1u << H1_OTHER;
        }
    }
}

static int want_path(struct config_diag *d, const char *owner, const char *path,
                     const struct config_node *n, const char **out)
{
    char where[256];

    if (config_want_string(d, owner, path, n, out) < 0)
        return -1;
    if ((*out)[0] != '/') {
        config_diag_error(d, n->line, n->col, "%smust start with '/'",
                          config_where(where, sizeof(where), owner, path));
        return -1;
    }
    for (const char *p = *out; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '?' || *p == '#') {
            config_diag_error(d, n->line, n->col, "%smust be a path without spaces, control "
                              "characters, '?' or '#'",
                              config_where(where, sizeof(where), owner, path));
            return -1;
        }
    }
    return 0;
}

static void read_match(struct config_diag *d, struct config *cfg, const char *owner,
                       const struct config_node *m, struct conf_route *r)
{
    const struct config_node *n;
    const char *s;
    int npath = 0;

    if (config_want_map(d, owner, "match", m) < 0)
        return;
    config_schema_check_keys(d, m, "listeners[].routes[].match", owner);
    if ((n = config_map_get(m, "host")) && config_want_string(d, owner, "match.host", n, &s) == 0) {
        bool ok = true;
        const char *h = s[0] == '*' ? s + 1 : s;
        if (s[0] == '*' && (s[1] != '.' || s[2] == '\0'))
            ok = false;
        for (const char *p = h; *p && ok; p++)
            ok = isalnum((unsigned char)*p) || *p == '-' || *p == '.' || *p == '_' ||
                 *p == ':' || *p == '[' || *p == ']';
        /* Requests are matched on their host without its port, IPv6 in
         * brackets (and TLS server names have neither): a port, or a bare
         * IPv6 address, here would never match. */
        const char *rb = h[0] == '[' ? strchr(h, ']') : NULL;
        bool port = h[0] == '[' ? !rb || rb[1] != '\0' : strchr(h, ':') != NULL;
        if (!ok)
            config_diag_error(d, n->line, n->col, "%s: match.host: '%s' is not a host name; use "
                              "an exact name or *.suffix", owner, s);
        else if (port)
            config_diag_error(d, n->line, n->col, "%s: match.host: '%s' can never match: hosts "
                              "are matched without their port, IPv6 addresses in brackets "
                              "('[::1]')", owner, s);
        else
            r->host = lower_dup(d, s);
    }
    static const struct {
        const char *key;
        enum route_path_kind kind;
    } paths[] = {{"path", ROUTE_PATH_EXACT},
                 {"path_prefix", ROUTE_PATH_PREFIX},
                 {"path_regex", ROUTE_PATH_REGEX}};
    for (size_t i = 0; i < 3; i++) {
        char what[32];
        if (!(n = config_map_get(m, paths[i].key)))
            continue;
        if (++npath > 1) {
            config_diag_error(d, n->line, n->col, "%s: match: give only one of path, "
                              "path_prefix and path_regex", owner);
            continue;
        }
        snprintf(what, sizeof(what), "match.%s", paths[i].key);
        if (paths[i].kind == ROUTE_PATH_REGEX) {
            int err;
            PCRE2_SIZE off;
            pcre2_code *re;
            if (config_want_string(d, owner, what, n, &s) < 0)
                continue;
            re = pcre2_compile((PCRE2_SPTR)s, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
            if (!re) {
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(err, msg, sizeof(msg));
                config_diag_error(d, n->line, n->col, "%s: match.path_regex: %s at offset %zu",
                                  owner, (const char *)msg, (size_t)off);
                continue;
            }
            pcre2_code_free(re);
        } else if (want_path(d, owner, what, n, &s) < 0) {
            continue;
        }
        r->path_kind = paths[i].kind;
        r->path = config_strdup(d, s);
    }
    if ((n = config_map_get(m, "method")))
        read_methods(d, owner, n, r);
    if ((n = config_map_get(m, "headers")))
        read_kv(d, cfg, owner, "match.headers", n, true, true, KV_ANY, &r->headers, &r->nheaders);
    if ((n = config_map_get(m, "cookies")))
        read_kv(d, cfg, owner, "match.cookies", n, false, false, KV_ANY, &r->cookies,
                &r->ncookies);
    if ((n = config_map_get(m, "query")))
        read_kv(d, cfg, owner, "match.query", n, false, false, KV_ANY, &r->query, &r->nquery);
    if ((n = config_map_get(m, "source")))
        config_read_cidrs(d, owner, "match.source", n, &r->sources, &r->nsources);
}

/* redirect: a fixed location, or the request's own URL with its scheme,
 * host or port replaced (HAProxy's "redirect scheme https", NGINX's
 * "return 301 https://$host$request_uri"). */
static void read_redirect_target(struct config_diag *d, const char *owner,
                                 const struct config_node *n, struct conf_route *r)
{
    const struct config_node *k, *loc = config_map_get(n, "location");
    const char *s;
    uint64_t v;
    bool parts = false;

    if ((k = config_map_get(n, "scheme")) &&
        config_want_string(d, owner, "redirect.scheme", k, &s) == 0) {
        parts = true;
        if (strcmp(s, "http") != 0 && strcmp(s, "https") != 0)
            config_diag_error(d, k->line, k->col, "%s: redirect.scheme: use http or https",
                              owner);
        else
            r->redirect_scheme = config_strdup(d, s);
    }
    if ((k = config_map_get(n, "host")) &&
        config_want_string(d, owner, "redirect.host", k, &s) == 0) {
        struct h1_slice host;
        int port;

        parts = true;
        h1_split_host((struct h1_slice){s, (uint32_t)strlen(s)}, &host, &port);
        if (!h1_authority_valid(s, (uint32_t)strlen(s), false) || port >= 0)
            config_diag_error(d, k->line, k->col, "%s: redirect.host: '%s' is not a host name "
                              "or address (give a port with redirect.port)", owner, s);
        else
            r->redirect_host = config_strdup(d, s);
    }
    if ((k = config_map_get(n, "port")) &&
        config_want_uint(d, owner, "redirect.port", k, 1, 65535, &v) == 0) {
        parts = true;
        r->redirect_port = (int)v;
    }
    if (loc && parts)
        config_diag_error(d, loc->line, loc->col, "%s: redirect: give location, or any of "
                          "scheme, host and port, not both", owner);
    else if (!loc && !parts)
        config_diag_error(d, n->line, n->col, "%s: redirect: give location, or any of scheme, "
                          "host and port", owner);
    else if (loc && config_want_string(d, owner, "redirect.location", loc, &s) == 0 &&
             want_field_value(d, owner, "redirect.location", loc, &s) == 0)
        r->redirect_location = config_strdup(d, s);
}

static void read_split(struct config_diag *d, struct config *cfg, const char *owner,
                       const struct config_node *seq, struct conf_route *r)
{
    uint64_t total = 0;

    if (config_want_seq(d, owner, "split", seq) < 0)
        return;
    if (seq->n == 0) {
        config_diag_error(d, seq->line, seq->col, "%s: split: give at least one pool", owner);
        return;
    }
    r->split = calloc(seq->n, sizeof(*r->split));
    if (!r->split)
        return;
    for (size_t i = 0; i < seq->n; i++) {
        const struct config_node *it = seq->items[i], *n;
        struct conf_split *sp = &r->split[r->nsplit];
        const char *s;
        uint64_t w = 1;

        if (config_want_map(d, owner, "split[]", it) < 0)
            continue;
        config_schema_check_keys(d, it, "listeners[].routes[].split[]", owner);
        if (!(n = config_map_get(it, "pool"))) {
            config_missing(d, owner, it, "pool");
            continue;
        }
        if (config_want_name(d, owner, "split[].pool", n, &s) < 0)
            continue;
        if (!(sp->pool = config_find_pool(cfg, s)))
            config_diag_error(d, n->line, n->col, "%s: split: pool '%s' is not defined", owner, s);
        /* Before the name is kept: an entry left out is not freed. */
        if ((n = config_map_get(it, "weight")) &&
            config_want_uint(d, owner, "split[].weight", n, 0, 1000000, &w) < 0)
            continue;
        sp->pool_name = config_strdup(d, s);
        sp->weight = (uint32_t)w;
        total += w;
        r->nsplit++;
    }
    if (r->nsplit == seq->n && total == 0)
        config_diag_error(d, seq->line, seq->col, "%s: split: every weight is 0; at least one "
                          "pool must get traffic", owner);
}

/* mirror: {pool, percent, set_headers, max_body_size}. The copy is sent by
 * proxy/mirror.c, in the mirror pool's own protocol (HTTP/1.1, TLS, HTTP/2). */
static void read_mirror(struct config_diag *d, struct config *cfg, const char *owner,
                        const struct config_node *map, struct conf_route *r)
{
    const struct config_node *n;
    const char *s;
    uint64_t v;

    if (config_want_map(d, owner, "mirror", map) < 0)
        return;
    config_schema_check_keys(d, map, "listeners[].routes[].mirror", owner);
    if (r->action != ROUTE_POOL && r->action != ROUTE_SPLIT)
        config_diag_error(d, map->line, map->col, "%s: mirror needs a route that forwards "
                          "(pool or split)", owner);
    r->mirror_percent = 100;
    if ((n = config_map_get(map, "set_headers")))
        read_kv(d, cfg, owner, "mirror.set_headers", n, true, false, KV_NOT_WRITTEN,
                &r->mirror_set_headers, &r->nmirror_set_headers);
    if ((n = config_map_get(map, "percent")) &&
        config_want_uint(d, owner, "mirror.percent", n, 0, 100, &v) == 0)
        r->mirror_percent = (uint32_t)v;
    /* Bodies are held whole for the copy (proxy/mirror.c); the largest
     * one allowed is half the worker's bound on held copies (64 MiB). */
    r->mirror_max_body = 1024 * 1024;
    if ((n = config_map_get(map, "max_body_size")) &&
        config_want_string(d, owner, "mirror.max_body_size", n, &s) == 0) {
        if (config_parse_size(s, &v) < 0)
            config_diag_error(d, n->line, n->col, "%s: mirror.max_body_size: bad size '%s': "
                              "use a number with an optional k, m or g", owner, s);
        else if (v > 32 * 1024 * 1024)
            config_diag_error(d, n->line, n->col, "%s: mirror.max_body_size: use a size up to "
                              "32m", owner);
        else
            r->mirror_max_body = v;
    }
    if (!(n = config_map_get(map, "pool"))) {
        config_missing(d, owner, map, "mirror.pool");
        return;
    }
    if (config_want_name(d, owner, "mirror.pool", n, &s) < 0)
        return;
    r->mirror_pool_name = config_strdup(d, s);
    if (!(r->mirror_pool = config_find_pool(cfg, s)))
        config_diag_error(d, n->line, n->col, "%s: mirror.pool: pool '%s' is not defined",
                          owner, s);
    else
        r->mirror_pool->mirror_target = true;
}

/* A `respond` answer is written whole into one client buffer
 * (core/buffer.h): one that cannot fit would be a 500 on every request. */
static void check_respond_fits(struct config_diag *d, const char *owner,
                               const struct config_node *body, const struct conf_route *r)
{
    /* the status line, Server, Content-Type, Content-Length, Retry-After,
     * Connection and the blank line take well under this */
    size_t head = 256, blen = strlen(r->respond_body);

    for (size_t i = 0; i < r->nset_response_headers; i++)
        head += strlen(r->set_response_headers[i].name) +
                strlen(r->set_response_headers[i].value) + 4;
    if (blen + head > BUF_SIZE_DEFAULT)
        config_diag_error(d, body->line, body->col, "%s: respond.body: %zu bytes; with its head "
                          "(%zu bytes) the answer must fit in %u bytes", owner, blen, head,
                          BUF_SIZE_DEFAULT);
}

static void read_route(struct config_diag *d, struct config *cfg, struct conf_listener *l,
                       size_t index, const struct config_node *map)
{
    struct conf_route *r = &l->routes[index];
    const struct config_node *n;
    const char *s;
    char owner[256];
    int actions = 0;
    uint64_t v;

    r->index = (uint32_t)index;
    config_pos_set(&r->pos, cfg, map);
    snprintf(owner, sizeof(owner), "listener '%s' route #%zu", l->name ? l->name : "?", index + 1);
    if (config_want_map(d, owner, NULL, map) < 0)
        return;
    config_schema_check_keys(d, map, "listeners[].routes[]", owner);
    if ((n = config_map_get(map, "match")))
        read_match(d, cfg, owner, n, r);

    if ((n = config_map_get(map, "pool"))) {
        actions++;
        r->action = ROUTE_POOL;
        if (config_want_name(d, owner, "pool", n, &s) == 0) {
            r->pool_name = config_strdup(d, s);
            r->pool = config_find_pool(cfg, s);
            if (!r->pool)
                config_diag_error(d, n->line, n->col, "%s: pool '%s' is not defined", owner, s);
        }
    }
    if ((n = config_map_get(map, "split"))) {
        actions++;
        r->action = ROUTE_SPLIT;
        read_split(d, cfg, owner, n, r);
    }
    if ((n = config_map_get(map, "redirect"))) {
        const struct config_node *k;
        actions++;
        r->action = ROUTE_REDIRECT;
        r->redirect_status = 302;
        if (config_want_map(d, owner, "redirect", n) == 0) {
            config_schema_check_keys(d, n, "listeners[].routes[].redirect", owner);
            read_redirect_target(d, owner, n, r);
            if ((k = config_map_get(n, "status")) &&
                config_want_uint(d, owner, "redirect.status", k, 300, 308, &v) == 0) {
                if (v != 301 && v != 302 && v != 303 && v != 307 && v != 308)
                    config_diag_error(d, k->line, k->col, "%s: redirect.status: use 301, 302, "
                                      "303, 307 or 308", owner);
                r->redirect_status = (int)v;
            }
        }
    }
    if ((n = config_map_get(map, "respond"))) {
        const struct config_node *k;
        actions++;
        r->action = ROUTE_RESPOND;
        r->respond_status = 200;
        if (config_want_map(d, owner, "respond", n) == 0) {
            config_schema_check_keys(d, n, "listeners[].routes[].respond", owner);
            if ((k = config_map_get(n, "status")) &&
                config_want_uint(d, owner, "respond.status", k, 200, 599, &v) == 0)
                r->respond_status = (int)v;
            if ((k = config_map_get(n, "body"))) {
                if (k->kind == CONFIG_NODE_SCALAR && strlen(k->text) == k->len)
                    r->respond_body = config_strdup(d, k->text);
                else
                    config_want_string(d, owner, "respond.body", k, &s);
            }
        }
    }
    if (actions == 0)
        config_diag_error(d, map->line, map->col, "%s: give one action: pool, split, redirect "
                          "or respond", owner);
    else if (actions > 1)
        config_diag_error(d, map->line, map->col, "%s: give only one action of pool, split, "
                          "redirect and respond", owner);

    if ((n = config_map_get(map, "set_headers")))
        read_kv(d, cfg, owner, "set_headers", n, true, false, KV_NOT_WRITTEN_BUT_HOST,
                &r->set_headers, &r->nset_headers);
    if ((n = config_map_get(map, "remove_headers")))
        read_names(d, owner, "remove_headers", n, &r->remove_headers, &r->nremove_headers);
    if ((n = config_map_get(map, "set_response_headers")))
        read_kv(d, cfg, owner, "set_response_headers", n, true, false, KV_NOT_WRITTEN,
                &r->set_response_headers, &r->nset_response_headers);
    if ((n = config_map_get(map, "remove_response_headers")))
        read_names(d, owner, "remove_response_headers", n, &r->remove_response_headers,
                   &r->nremove_response_headers);
    if (r->respond_body)
        check_respond_fits(d, owner, config_map_get(config_map_get(map, "respond"), "body"), r);
    if ((n = config_map_get(map, "strip_prefix")) &&
        want_path(d, owner, "strip_prefix", n, &s) == 0)
        r->strip_prefix = config_strdup(d, s);
    if ((n = config_map_get(map, "rewrite_prefix")) &&
        want_path(d, owner, "rewrite_prefix", n, &s) == 0) {
        if (r->path_kind != ROUTE_PATH_PREFIX)
            config_diag_error(d, n->line, n->col, "%s: rewrite_prefix needs match.path_prefix "
                              "(it replaces the matched prefix)", owner);
        else if (r->strip_prefix)
            config_diag_error(d, n->line, n->col, "%s: give strip_prefix or rewrite_prefix, "
                              "not both", owner);
        else
            r->rewrite_prefix = config_strdup(d, s);
    }
    if ((n = config_map_get(map, "auth"))) {
        if (n->kind == CONFIG_NODE_SCALAR && n->plain && n->text && strcmp(n->text, "off") == 0)
            r->auth_off = true;
        else if (n->kind == CONFIG_NODE_SCALAR)
            config_diag_error(d, n->line, n->col, "%s: auth: expected a mapping or off", owner);
        else
            r->auth = config_read_auth(d, cfg, owner, "listeners[].routes[]", n);
    }
    if ((n = config_map_get(map, "mirror")))
        read_mirror(d, cfg, owner, n, r);
    if ((n = config_map_get(map, "rate_limit"))) {
        char label[32];

        snprintf(label, sizeof(label), "route%zu", index + 1);
        r->rate_limit = config_read_rate_limit(d, cfg, owner, "listeners[].routes[]", n, false,
                                               label);
    }
}

/* A tcp listener's routes see a connection, not a request: the TLS server
 * name (match.host) and the client's address (match.source), and forward
 * to a pool or a split. */
void config_check_tcp_routes(struct config_diag *d, const struct conf_listener *l)
{
    for (size_t i = 0; i < l->nroutes; i++) {
        const struct conf_route *r = &l->routes[i];
        const char *what = NULL;

        if (r->path_kind != ROUTE_PATH_ANY || r->methods || r->nother_methods ||
            r->nheaders || r->ncookies || r->nquery)
            what = "match only on host (the TLS server name) and source";
        else if (r->action == ROUTE_REDIRECT || r->action == ROUTE_RESPOND)
            what = "forward to a pool or a split";
        else if (r->nset_headers || r->nremove_headers || r->nset_response_headers ||
                 r->nremove_response_headers || r->strip_prefix || r->rewrite_prefix ||
                 r->auth || r->auth_off || r->rate_limit || r->mirror_pool)
            what = "have no header, path, auth, rate_limit or mirror settings";
        if (what)
            config_diag_error(d, r->pos.line, r->pos.col, "listener '%s' route #%zu: a tcp "
                              "listener's routes %s", l->name ? l->name : "?", i + 1, what);
    }
}

void config_read_routes(struct config_diag *d, struct config *cfg, struct conf_listener *l,
                        const char *owner, const struct config_node *seq)
{
    if (config_want_seq(d, owner, "routes", seq) < 0 || seq->n == 0)
        return;
    if (seq->n > CONFIG_MAX_ROUTES) {
        config_diag_error(d, seq->line, seq->col, "%s: routes: %zu entries; at most %d are "
                          "supported", owner, seq->n, CONFIG_MAX_ROUTES);
        return;
    }
    l->routes = calloc(seq->n, sizeof(*l->routes));
    if (!l->routes) {
        config_diag_error(d, seq->line, seq->col, "out of memory");
        return;
    }
    l->nroutes = seq->n;
    for (size_t i = 0; i < seq->n; i++)
        read_route(d, cfg, l, i, seq->items[i]);
}

/* "10.0.0.0/8", "192.168.1.1", "::1", "fd00::/8" */
void config_read_trusted(struct config_diag *d, struct conf_listener *l, const char *owner,
                         const struct config_node *seq)
{
    config_read_cidrs(d, owner, "trusted_proxies", seq, &l->trusted_proxies, &l->ntrusted_proxies);
}

void config_read_cidrs(struct config_diag *d, const char *owner, const char *key,
                       const struct config_node *seq, struct conf_cidr **out, size_t *nout)
{
    if (config_want_seq(d, owner, key, seq) < 0 || seq->n == 0)
        return;
    *out = calloc(seq->n, sizeof(**out));
    if (!*out)
        return;
    for (size_t i = 0; i < seq->n; i++) {
        const struct config_node *n = seq->items[i];
        struct conf_cidr *c = &(*out)[*nout];
        char host[64], *slash;
        const char *s;
        long bits;
        bool fits;

        if (config_want_string(d, owner, key, n, &s) < 0)
            continue;
        /* Longer is no address, and cut short its prefix length would read
         * as another one ("/000...016" as /0: every address). */
        fits = strlen(s) < sizeof(host);
        snprintf(host, sizeof(host), "%s", s);
        slash = strchr(host, '/');
        if (slash)
            *slash = '\0';
        if (fits && inet_pton(AF_INET, host, c->addr) == 1) {
            c->family = AF_INET;
            bits = 32;
        } else if (fits && inet_pton(AF_INET6, host, c->addr) == 1) {
            c->family = AF_INET6;
            bits = 128;
        } else {
            config_diag_error(d, n->line, n->col, "%s: %s: '%s' is not an address "
                              "or ADDRESS/BITS block", owner, key, s);
            continue;
        }
        if (slash) {
            /* Digits only: strtol would also take a sign or spaces. */
            size_t digits = strspn(slash + 1, "0123456789");
            long b = digits && digits <= 3 ? strtol(slash + 1, NULL, 10) : -1;
            if (slash[1 + digits] || b < 0 || b > bits) {
                config_diag_error(d, n->line, n->col, "%s: %s: bad prefix length "
                                  "in '%s' (0 to %ld)", owner, key, s, bits);
                continue;
            }
            bits = b;
        }
        c->prefix = (uint8_t)bits;
        /* Zero the host bits so matching compares only the network. */
        for (int k = 0; k < 16; k++) {
            int keep = (int)bits - k * 8;
            if (keep <= 0)
                c->addr[k] = 0;
            else if (keep < 8)
                c->addr[k] &= (uint8_t)(0xff << (8 - keep));
        }
        (*nout)++;
    }
}

static void free_kv(struct conf_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].name);
        free(kv[i].value);
    }
    free(kv);
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void config_free_routes(struct conf_listener *l)
{
    for (size_t i = 0; i < l->nroutes; i++) {
        struct conf_route *r = &l->routes[i];
        free(r->host);
        free(r->path);
        free_names(r->other_methods, r->nother_methods);
        free_kv(r->headers, r->nheaders);
        free_kv(r->cookies, r->ncookies);
        free(r->sources);
        free_kv(r->query, r->nquery);
        free(r->pool_name);
        free(r->mirror_pool_name);
        for (size_t k = 0; k < r->nsplit; k++)
            free(r->split[k].pool_name);
        free(r->split);
        free(r->redirect_location);
        free(r->respond_body);
        free_kv(r->set_headers, r->nset_headers);
        free_kv(r->mirror_set_headers, r->nmirror_set_headers);
        free_names(r->remove_headers, r->nremove_headers);
        free_kv(r->set_response_headers, r->nset_response_headers);
        free_names(r->remove_response_headers, r->nremove_response_headers);
        free(r->redirect_scheme);
        free(r->redirect_host);
        free(r->strip_prefix);
        free(r->rewrite_prefix);
        config_free_rate_limit(r->rate_limit);
        config_free_auth(r->auth);
    }
    free(l->routes);
    free(l->trusted_proxies);
    l->routes = NULL;
    l->trusted_proxies = NULL;
}
