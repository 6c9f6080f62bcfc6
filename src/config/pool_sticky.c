/* A pool's `sticky` block: cookie-based session affinity for http pools.
 * What the cookie says and how requests follow it is in balance/sticky.c. */
#include "config/config.h"
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>

/* A cookie Path value (RFC 6265 path-value): starts with '/', and no CTLs
 * or ';', which would end the attribute. */
static bool config_is_cookie_path(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > 256 || s[0] != '/')
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == ';')
            return false;
    return true;
}

void config_read_pool_sticky(struct config_diag *d, struct conf_pool *p, const char *owner,
                             const struct config_node *map)
{
    const struct config_node *n;
    const char *cookie = "SLUICE", *path = "/";
    struct conf_sticky s = {.http_only = true};

    if (config_want_block(d, owner, "pools[]", "sticky", map) < 0)
        return;
    if ((n = config_map_get(map, "cookie")) &&
        config_want_string(d, owner, "sticky.cookie", n, &cookie) == 0 &&
        !config_is_token(cookie))
        config_diag_error(d, n->line, n->col, "%s: sticky.cookie: '%s' is not a cookie name "
                          "(1..128 of letters, digits and !#$%%&'*+-.^_`|~)", owner, cookie);
    if ((n = config_map_get(map, "ttl")) &&
        config_want_duration(d, owner, "sticky.ttl", n, &s.ttl_ms) == 0 && s.ttl_ms % 1000)
        config_diag_error(d, n->line, n->col, "%s: sticky.ttl: the cookie's Max-Age is in "
                          "whole seconds; use 0 (a session cookie) or a value like 30m", owner);
    if ((n = config_map_get(map, "path")) &&
        config_want_string(d, owner, "sticky.path", n, &path) == 0 &&
        !config_is_cookie_path(path))
        config_diag_error(d, n->line, n->col, "%s: sticky.path: must start with '/' and hold "
                          "no ';' or control bytes", owner);
    if ((n = config_map_get(map, "secure")))
        config_want_bool(d, owner, "sticky.secure", n, &s.secure);
    if ((n = config_map_get(map, "http_only")))
        config_want_bool(d, owner, "sticky.http_only", n, &s.http_only);
    s.cookie = config_strdup(d, cookie);
    s.path = config_strdup(d, path);
    p->sticky = s;
}
