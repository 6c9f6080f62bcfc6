/* A pool's `discovery` block: backends from DNS instead of a list. What is
 * done with the answers is in src/discovery/. */
#include "config/config.h"
#include "config/internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char *const config_discovery_types[] = { "a", "aaaa", "srv", NULL };

/* A DNS name as RFC 1035 spells it for hosts, plus '_' (SRV names start
 * with _service._proto): labels of 1..63 letters, digits, '-' and '_', 253
 * bytes in all, one final dot allowed. Written lower case into out. */
static bool config_dns_name(const char *s, char *out, size_t size)
{
    size_t len = strlen(s), label = 0;

    if (len && s[len - 1] == '.')
        len--;
    if (len == 0 || len > 253 || len >= size)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (isalnum(c) || c == '-' || c == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
        out[i] = (char)tolower(c);
    }
    out[len] = '\0';
    return label > 0;
}

static void config_read_resolvers(struct config_diag *d, const char *owner,
                                  const struct config_node *seq, struct conf_discovery *dc)
{
    if (config_want_seq(d, owner, "discovery.resolvers", seq) < 0)
        return;
    if (seq->n == 0 || seq->n > DISCOVERY_MAX_RESOLVERS) {
        config_diag_error(d, seq->line, seq->col, "%s: discovery.resolvers: give 1 to %d "
                          "addresses, or leave it out to use /etc/resolv.conf", owner,
                          DISCOVERY_MAX_RESOLVERS);
        return;
    }
    if (!(dc->resolvers = calloc(seq->n, sizeof(*dc->resolvers)))) {
        config_diag_error(d, seq->line, seq->col, "out of memory");
        return;
    }
    for (size_t i = 0; i < seq->n; i++) {
        if (config_want_addr_port(d, owner, "discovery.resolvers", seq->items[i],
                                  &dc->resolvers[dc->nresolvers]) == 0)
            dc->nresolvers++;
    }
}

void config_read_pool_discovery(struct config_diag *d, struct conf_pool *p, const char *owner,
                                const struct config_node *map)
{
    struct conf_discovery *dc = &p->discovery;
    const struct config_node *n;
    const char *s;
    char name[256], shown[96];
    int v;

    if (config_want_block(d, owner, "pools[]", "discovery", map) < 0)
        return;
    dc->record = DISCOVERY_A;
    dc->interval_ms = 5000;
    dc->timeout_ms = 1000;
    dc->max_backends = 32;
    dc->pos.line = map->line;
    dc->pos.col = map->col;
    if ((n = config_map_get(map, "type")) &&
        config_want_enum(d, owner, "discovery.type", n, config_discovery_types, NULL, &v) == 0)
        dc->record = (enum discovery_record)v;
    if (!(n = config_map_get(map, "dns"))) {
        config_missing(d, owner, map, "discovery.dns");
    } else if (config_want_string(d, owner, "discovery.dns", n, &s) == 0) {
        if (!config_dns_name(s, name, sizeof(name)))
            config_diag_error(d, n->line, n->col, "%s: discovery.dns: '%s' is not a DNS name "
                              "(dot-separated labels of letters, digits, '-' and '_')", owner,
                              config_show(shown, sizeof(shown), s));
        else if (dc->record == DISCOVERY_SRV && name[0] != '_')
            config_diag_error(d, n->line, n->col, "%s: discovery.dns: SRV names start with "
                              "_service._proto, as in _http._tcp.%s", owner, name);
        else
            dc->dns = config_strdup(d, name);
    }
    if ((n = config_map_get(map, "port"))) {
        uint64_t port;
        if (dc->record == DISCOVERY_SRV)
            config_diag_error(d, n->line, n->col, "%s: discovery.port: SRV records give each "
                              "backend's port; leave it out", owner);
        else if (config_want_uint(d, owner, "discovery.port", n, 1, 65535, &port) == 0)
            dc->port = (uint16_t)port;
    } else if (dc->record != DISCOVERY_SRV) {
        config_missing(d, owner, map, "discovery.port");
    }
    if ((n = config_map_get(map, "resolvers")))
        config_read_resolvers(d, owner, n, dc);
    if ((n = config_map_get(map, "interval")) &&
        config_want_timeout(d, owner, "discovery.interval", n, &dc->interval_ms) == 0 &&
        (dc->interval_ms < 100 || dc->interval_ms > 86400000))
        config_diag_error(d, n->line, n->col, "%s: discovery.interval: give 100ms to 24h", owner);
    if ((n = config_map_get(map, "timeout")) &&
        config_want_timeout(d, owner, "discovery.timeout", n, &dc->timeout_ms) == 0 &&
        (dc->timeout_ms < 10 || dc->timeout_ms > 30000))
        config_diag_error(d, n->line, n->col, "%s: discovery.timeout: give 10ms to 30s", owner);
    config_read_u32(d, owner, map, "max_backends", "discovery.max_backends", 1,
                    DISCOVERY_MAX_BACKENDS, &dc->max_backends);
    if ((n = config_map_get(map, "respect_ttl")))
        config_want_bool(d, owner, "discovery.respect_ttl", n, &dc->respect_ttl);
}

void config_free_discovery(struct conf_pool *p)
{
    free(p->discovery.dns);
    free(p->discovery.resolvers);
    p->discovery.dns = NULL;
    p->discovery.resolvers = NULL;
}
