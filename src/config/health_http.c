/* The keys of a `health_check` block beyond timing: the port to check, and
 * for an http check what request to send and what answer counts as a pass. */
#include "config/config.h"
#include "config/internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* "200", "200-399": a status or an inclusive range within 100..599. */
static int parse_status_range(const char *s, uint32_t *lo, uint32_t *hi)
{
    char *end;
    long a = strtol(s, &end, 10), b;

    if (end == s || a < 100 || a > 599)
        return -1;
    if (*end == '\0') {
        *lo = *hi = (uint32_t)a;
        return 0;
    }
    if (*end != '-')
        return -1;
    s = end + 1;
    b = strtol(s, &end, 10);
    if (end == s || *end || b < a || b > 599)
        return -1;
    *lo = (uint32_t)a;
    *hi = (uint32_t)b;
    return 0;
}

static bool printable(const char *s, bool allow_space)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 - (allow_space ? 1 : 0) || (unsigned char)*s == 0x7f)
            return false;
    return true;
}

void config_read_health_http(struct config_diag *d, struct conf_pool *p, const char *owner,
                             const struct config_node *map)
{
    static const char *const keys[] = {"path", "method", "host", "expect_status", "expect_body",
                                       NULL};
    struct conf_health *h = &p->health;
    const struct config_node *n;
    const char *s;
    uint64_t v;

    h->status_min = 200;
    h->status_max = 399;
    if ((n = config_map_get(map, "port")) &&
        config_want_uint(d, owner, "health_check.port", n, 1, 65535, &v) == 0)
        h->port = (uint32_t)v;
    if ((n = config_map_get(map, "initial_state")) &&
        config_want_string(d, owner, "health_check.initial_state", n, &s) == 0) {
        if (strcmp(s, "up") == 0)
            h->initial_up = true;
        else if (strcmp(s, "down") != 0)
            config_diag_error(d, n->line, n->col, "%s: health_check.initial_state: use up or "
                              "down", owner);
    }
    if (h->type != HEALTH_HTTP) {
        /* Say so rather than ignore an http key in a tcp check. */
        for (int i = 0; keys[i]; i++)
            if ((n = config_map_get(map, keys[i])))
                config_diag_error(d, n->line, n->col, "%s: health_check.%s only applies to "
                                  "type http", owner, keys[i]);
        return;
    }
    if ((n = config_map_get(map, "path")) &&
        config_want_string(d, owner, "health_check.path", n, &s) == 0) {
        if (s[0] != '/' || !printable(s, false))
            config_diag_error(d, n->line, n->col, "%s: health_check.path: must start with '/' "
                              "and hold no spaces or control characters", owner);
        else
            h->path = config_strdup(d, s);
    }
    if ((n = config_map_get(map, "method")) &&
        config_want_string(d, owner, "health_check.method", n, &s) == 0) {
        bool ok = true;
        for (const char *c = s; *c; c++)
            ok &= isupper((unsigned char)*c) != 0;
        if (!ok)
            config_diag_error(d, n->line, n->col, "%s: health_check.method: use an upper-case "
                              "method such as GET or HEAD", owner);
        else
            h->method = config_strdup(d, s);
    }
    if ((n = config_map_get(map, "host")) &&
        config_want_string(d, owner, "health_check.host", n, &s) == 0) {
        if (!printable(s, false))
            config_diag_error(d, n->line, n->col, "%s: health_check.host: no spaces or control "
                              "characters", owner);
        else
            h->host = config_strdup(d, s);
    }
    if ((n = config_map_get(map, "expect_status")) && n->kind == CONFIG_NODE_SCALAR &&
        parse_status_range(n->text, &h->status_min, &h->status_max) < 0)
        config_diag_error(d, n->line, n->col, "%s: health_check.expect_status: use a status or "
                          "a range like 200-399 (100..599)", owner);
    else if (n && n->kind != CONFIG_NODE_SCALAR)
        config_want_string(d, owner, "health_check.expect_status", n, &s);
    if ((n = config_map_get(map, "expect_body")) &&
        config_want_string(d, owner, "health_check.expect_body", n, &s) == 0)
        h->expect_body = config_strdup(d, s);
}

void config_free_health(struct conf_pool *p)
{
    free(p->health.path);
    free(p->health.method);
    free(p->health.host);
    free(p->health.expect_body);
}
