/* The `pools` section: each pool's balancing, backend-side timeouts, PROXY
 * header, backends and active health check. */
#include "config/config.h"
#include "config/internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* Same order as enum balance_kind. */
static const char *const config_balances[] = {
    "p2c", "round_robin", "least_conn", "random", "ewma", "ring_hash", "maglev", "ip_hash", NULL,
};
static const char *const config_send_proxy[] = { "v1", "v2", NULL };
static const char *const config_health_types[] = { "tcp", "http", NULL };
static const char *const config_health_types_later[] = { NULL };

/* A name and where it is written, for "duplicate name" errors found after
 * the whole list is read. */
struct config_name_seen {
    const char *name;              /* NULL: no usable name */
    int line, col;
    bool from_address;             /* a backend named by its address */
};

/* Reports every entry whose name an earlier entry already has, at the later
 * one. WHAT is "pool" or "backend"; OWNER prefixes the message. */
static void config_name_dups(struct config_diag *d, const struct config_name_seen *seen,
                             size_t n, const char *what, const char *owner)
{
    struct config_dup *dups = calloc(n ? n : 1, sizeof(*dups));
    size_t m = 0;

    if (!dups) {
        config_diag_error(d, 0, 0, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (seen[i].name)
            dups[m++] = (struct config_dup){ .key = seen[i].name, .index = i };
    config_find_dups(dups, m);
    for (size_t k = 0; k < m; k++) {
        const struct config_name_seen *at = &seen[dups[k].index], *first;

        if (dups[k].first == CONFIG_NO_DUP)
            continue;
        first = &seen[dups[k].first];
        config_diag_error(d, at->line, at->col, "%s%sduplicate %s name '%s' (first at %d:%d)%s",
                          owner, *owner ? ": " : "", what, at->name, first->line, first->col,
                          at->from_address ?
                          "; a backend without a name is named by its address" : "");
    }
    free(dups);
}

/* Whether A is 0.0.0.0 or [::]: fine to listen on, meaningless to connect to. */
static bool config_addr_is_any(const struct addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
    return false;
}

static void config_read_backend(struct config_diag *d, struct config *cfg,
                                struct conf_pool *pool, size_t index,
                                const struct config_node *map, struct config_name_seen *seen)
{
    struct conf_backend *b = &pool->backends[index];
    const char *pool_name = pool->name ? pool->name : "?";
    const struct config_node *n, *name_node, *addr_node, *name_at = NULL;
    char owner[320], where[320];
    const char *name = NULL, *text;
    uint64_t v;

    b->weight = 1;
    config_pos_set(&b->pos, cfg, map);
    snprintf(owner, sizeof(owner), "pool '%s' backend #%zu", pool_name, index + 1);
    if (config_want_map(d, owner, NULL, map) < 0)
        return;

    name_node = config_map_get(map, "name");
    if (name_node && config_want_name(d, owner, "name", name_node, &name) == 0) {
        name_at = name_node;
        snprintf(owner, sizeof(owner), "pool '%s' backend '%s'", pool_name, name);
    }

    if (!(addr_node = config_map_get(map, "address"))) {
        config_missing(d, owner, map, "address");
    } else if (config_want_string(d, owner, "address", addr_node, &text) == 0) {
        const char *why = "";
        char shown[96];

        if (addr_parse(text, &b->address, &why) < 0) {
            config_diag_error(d, addr_node->line, addr_node->col,
                              "%s: address: bad address '%s': %s", owner,
                              config_show(shown, sizeof(shown), text), why);
        } else if (addr_port(&b->address) == 0) {
            config_diag_error(d, addr_node->line, addr_node->col,
                              "%s: address: port 0 cannot be connected to", owner);
        } else if (config_addr_is_any(&b->address)) {
            config_diag_error(d, addr_node->line, addr_node->col,
                              "%s: address: '%s' is a wildcard; a backend needs the "
                              "address of one host", owner, config_show(shown, sizeof(shown), text));
        } else if (!name_node) {
            /* Unnamed backends are named by their address, as written. */
            name = text;
            name_at = addr_node;
            snprintf(owner, sizeof(owner), "pool '%s' backend '%s'", pool_name, name);
        }
        b->address_text = config_strdup(d, text);
    }
    if (name)
        b->name = config_strdup(d, name);

    if (name)
        snprintf(where, sizeof(where), "backend '%s' of pool '%s'", name, pool_name);
    else
        snprintf(where, sizeof(where), "backend #%zu of pool '%s'", index + 1, pool_name);
    config_schema_check_keys(d, map, "pools[].backends[]", where);

    if ((n = config_map_get(map, "weight")) &&
        config_want_uint(d, owner, "weight", n, 1, 256, &v) == 0)
        b->weight = (uint32_t)v;

    if (b->name) {
        seen->name = b->name;
        seen->line = name_at->line;
        seen->col = name_at->col;
        seen->from_address = name_at == addr_node;
    }
}

static void config_read_backends(struct config_diag *d, struct config *cfg,
                                 struct conf_pool *p, const char *owner,
                                 const struct config_node *map, size_t *total)
{
    const struct config_node *seq = config_map_get(map, "backends");
    struct config_name_seen *seen;
    char prefix[220];

    if (!seq) {
        config_missing(d, owner, map, "backends");
        return;
    }
    if (config_want_seq(d, owner, "backends", seq) < 0)
        return;
    if (seq->n == 0) {
        config_diag_error(d, seq->line, seq->col, "%s: backends: must list at least one backend",
                          owner);
        return;
    }
    /* Runtime state is per backend; aliases could otherwise multiply a
     * small file into millions of them. */
    if (seq->n > CONFIG_MAX_BACKENDS - *total) {
        config_diag_error(d, seq->line, seq->col, "%s: backends: more than %d backends in all "
                          "pools together are not supported", owner, CONFIG_MAX_BACKENDS);
        return;
    }
    *total += seq->n;
    p->backends = calloc(seq->n, sizeof(*p->backends));
    seen = calloc(seq->n, sizeof(*seen));
    if (!p->backends || !seen) {
        free(seen);
        config_diag_error(d, seq->line, seq->col, "out of memory");
        return;
    }
    p->nbackends = seq->n;
    for (size_t i = 0; i < seq->n; i++)
        config_read_backend(d, cfg, p, i, seq->items[i], &seen[i]);
    /* Runtime state is keyed by pool and backend name, so names must differ. */
    snprintf(prefix, sizeof(prefix), "pool '%s'", p->name ? p->name : "?");
    config_name_dups(d, seen, p->nbackends, "backend", prefix);
    free(seen);
}

static void config_read_health(struct config_diag *d, struct conf_pool *p, const char *owner,
                               const struct config_node *map)
{
    const struct config_node *n, *interval, *down_interval, *timeout;
    char where[320], a[32], b[32];
    bool times_ok = true, down_ok = true;
    uint64_t v;
    int type;

    if (config_want_map(d, owner, "health_check", map) < 0)
        return;
    snprintf(where, sizeof(where), "health_check of %s", owner);
    config_schema_check_keys(d, map, "pools[].health_check", where);

    /* The type is required: an empty block checking "something" by default
     * would hide a typo in the key that was meant. */
    if (!(n = config_map_get(map, "type"))) {
        snprintf(where, sizeof(where), "%s: health_check", owner);
        config_missing(d, where, map, "type");
    } else if (config_want_enum(d, owner, "health_check.type", n, config_health_types,
                                config_health_types_later, &type) == 0) {
        p->health.type = (enum health_type)(HEALTH_TCP + type);
    }
    if ((interval = config_map_get(map, "interval")) &&
        config_want_timeout(d, owner, "health_check.interval", interval,
                            &p->health.interval_ms) < 0)
        times_ok = false;
    /* Unset, a DOWN backend is checked at the same pace as an UP one. */
    if ((down_interval = config_map_get(map, "unhealthy_interval")) &&
        config_want_timeout(d, owner, "health_check.unhealthy_interval", down_interval,
                            &p->health.unhealthy_interval_ms) < 0)
        down_ok = false;
    if (!down_interval)
        p->health.unhealthy_interval_ms = p->health.interval_ms;
    if ((timeout = config_map_get(map, "timeout")) &&
        config_want_timeout(d, owner, "health_check.timeout", timeout,
                            &p->health.timeout_ms) < 0)
        times_ok = false;
    if ((n = config_map_get(map, "healthy_threshold")) &&
        config_want_uint(d, owner, "health_check.healthy_threshold", n, 1, 100, &v) == 0)
        p->health.healthy_threshold = (uint32_t)v;
    if ((n = config_map_get(map, "unhealthy_threshold")) &&
        config_want_uint(d, owner, "health_check.unhealthy_threshold", n, 1, 100, &v) == 0)
        p->health.unhealthy_threshold = (uint32_t)v;
    config_read_health_http(d, p, owner, map);

    /* A check that may run longer than its interval would overlap the next. */
    if (!times_ok)
        return;
    config_duration_text(a, sizeof(a), p->health.timeout_ms);
    if (p->health.timeout_ms > p->health.interval_ms) {
        config_duration_text(b, sizeof(b), p->health.interval_ms);
        if (timeout)
            config_diag_error(d, timeout->line, timeout->col,
                              "%s: health_check.timeout %s is longer than health_check.interval %s",
                              owner, a, b);
        else
            config_diag_error(d, interval->line, interval->col,
                              "%s: health_check.interval %s is shorter than the default timeout %s; "
                              "set health_check.timeout too", owner, b, a);
    }
    /* The same holds while a backend is DOWN. Reported at unhealthy_interval
     * even when timeout is written: a clash with interval is reported at
     * timeout above, and a separate position tells the two apart. */
    if (!down_interval || !down_ok || p->health.timeout_ms <= p->health.unhealthy_interval_ms)
        return;
    config_duration_text(b, sizeof(b), p->health.unhealthy_interval_ms);
    if (timeout)
        config_diag_error(d, down_interval->line, down_interval->col,
                          "%s: health_check.unhealthy_interval %s is shorter than "
                          "health_check.timeout %s", owner, b, a);
    else
        config_diag_error(d, down_interval->line, down_interval->col,
                          "%s: health_check.unhealthy_interval %s is shorter than the default "
                          "timeout %s; set health_check.timeout too", owner, b, a);
}

static void config_read_pool(struct config_diag *d, struct config *cfg, size_t index,
                             const struct config_node *map, struct config_name_seen *seen,
                             size_t *total_backends)
{
    struct conf_pool *p = &cfg->pools[index];
    const struct config_node *n, *name_node;
    char owner[200], where[320];
    const char *name;
    int v;

    p->balance = BALANCE_P2C;
    p->connect_timeout_ms = 2000;
    p->upstream_response_ms = 30000;
    p->upstream_idle_ms = 60000;
    p->max_idle_connections = 64;
    p->send_proxy = PROXY_SEND_NONE;
    p->health = (struct conf_health){
        .type = HEALTH_NONE, .interval_ms = 2000, .unhealthy_interval_ms = 2000,
        .timeout_ms = 1000, .healthy_threshold = 2, .unhealthy_threshold = 2,
    };
    config_pos_set(&p->pos, cfg, map);
    snprintf(owner, sizeof(owner), "pool #%zu", index + 1);
    if (config_want_map(d, owner, NULL, map) < 0)
        return;

    if (!(name_node = config_map_get(map, "name"))) {
        config_missing(d, owner, map, "name");
    } else if (config_want_name(d, owner, "name", name_node, &name) == 0) {
        p->name = config_strdup(d, name);
        seen->name = p->name;
        seen->line = name_node->line;
        seen->col = name_node->col;
        snprintf(owner, sizeof(owner), "pool '%s'", name);
    }
    config_schema_check_keys(d, map, "pools[]", owner);

    if ((n = config_map_get(map, "balance")) &&
        config_want_enum(d, owner, "balance", n, config_balances, NULL, &v) == 0)
        p->balance = (enum balance_kind)v;
    config_read_pool_hash(d, p, owner, map);
    if ((n = config_map_get(map, "timeouts")) &&
        config_want_map(d, owner, "timeouts", n) == 0) {
        const struct config_node *t;

        snprintf(where, sizeof(where), "timeouts of %s", owner);
        config_schema_check_keys(d, n, "pools[].timeouts", where);
        if ((t = config_map_get(n, "connect")))
            config_want_timeout(d, owner, "timeouts.connect", t, &p->connect_timeout_ms);
        if ((t = config_map_get(n, "upstream_response")))
            config_want_timeout(d, owner, "timeouts.upstream_response", t,
                                &p->upstream_response_ms);
        if ((t = config_map_get(n, "upstream_idle")))
            config_want_timeout(d, owner, "timeouts.upstream_idle", t, &p->upstream_idle_ms);
    }
    if ((n = config_map_get(map, "max_idle_connections"))) {
        uint64_t k;
        if (config_want_uint(d, owner, "max_idle_connections", n, 0, 100000, &k) == 0)
            p->max_idle_connections = (uint32_t)k;
    }
    if ((n = config_map_get(map, "send_proxy")) &&
        config_want_enum(d, owner, "send_proxy", n, config_send_proxy, NULL, &v) == 0) {
        p->send_proxy = (enum proxy_send)(PROXY_SEND_V1 + v);
        p->send_proxy_pos = (struct conf_pos){d->file, n->line, n->col};
    }
    config_read_pool_policies(d, p, owner, map);
    if ((n = config_map_get(map, "sticky")))
        config_read_pool_sticky(d, p, owner, n);
    if ((n = config_map_get(map, "tls")))
        p->tls = config_read_upstream_tls(d, owner, n);
    if ((n = config_map_get(map, "http2")) && config_want_bool(d, owner, "http2", n, &p->http2) == 0 &&
        p->http2) {
        const struct config_node *k;
        if ((k = config_map_get(map, "send_proxy")))
            config_diag_error(d, k->line, k->col, "%s: send_proxy does not apply to an http2 pool",
                              owner);
    }
    if ((n = config_map_get(map, "discovery"))) {
        config_read_pool_discovery(d, p, owner, n);
        /* Listed backends stay whatever DNS says; discovered ones join them. */
        if (config_map_get(map, "backends"))
            config_read_backends(d, cfg, p, owner, map, total_backends);
        if (p->discovery.max_backends > CONFIG_MAX_BACKENDS - *total_backends)
            config_diag_error(d, n->line, n->col, "%s: discovery.max_backends: more than %d "
                              "backends in all pools together are not supported", owner,
                              CONFIG_MAX_BACKENDS);
        else
            *total_backends += p->discovery.max_backends;
    } else {
        config_read_backends(d, cfg, p, owner, map, total_backends);
    }
    if ((n = config_map_get(map, "health_check"))) {
        config_read_health(d, p, owner, n);
        if (p->http2 && p->health.type == HEALTH_HTTP)
            config_diag_warning(d, n->line, n->col, "%s: http health checks speak HTTP/1.1, which "
                                "an HTTP/2-only backend (a gRPC server) refuses; use type: tcp",
                                owner);
    }
}

void config_read_pools(struct config_diag *d, struct config *cfg, const struct config_node *seq)
{
    struct config_name_seen *seen;
    size_t total_backends = 0;

    if (seq->n > CONFIG_MAX_POOLS) {
        config_diag_error(d, seq->line, seq->col, "pools: %zu entries; at most %d are supported",
                          seq->n, CONFIG_MAX_POOLS);
        return;
    }
    cfg->pools = calloc(seq->n, sizeof(*cfg->pools));
    seen = calloc(seq->n, sizeof(*seen));
    if (!cfg->pools || !seen) {
        free(seen);
        config_diag_error(d, seq->line, seq->col, "out of memory");
        return;
    }
    cfg->npools = seq->n;
    for (size_t i = 0; i < seq->n; i++)
        config_read_pool(d, cfg, i, seq->items[i], &seen[i], &total_backends);
    config_name_dups(d, seen, cfg->npools, "pool", "");
    free(seen);
}
