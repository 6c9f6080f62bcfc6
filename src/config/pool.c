/* The `pools` section: each pool's balancing, backend-side timeouts, PROXY
 * header, backends and active health check. */
#include "config/config.h"
#include "config/internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* Same order as enum balance_kind. */
static const char *const config_balances[] = { "p2c", "round_robin", "least_conn", NULL };
/* On the roadmap (DESIGN.md §3); named so the message can say "not yet". */
static const char *const config_balances_later[] = {
    "ewma", "ring_hash", "maglev", "ip_hash", "random", NULL,
};
static const char *const config_send_proxy[] = { "v1", "v2", NULL };
static const char *const config_health_types[] = { "tcp", NULL };
static const char *const config_health_types_later[] = { "http", NULL };

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
                                const struct config_node *map)
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

    /* Runtime state is keyed by pool and backend name, so names must differ. */
    for (size_t j = 0; name && j < index; j++) {
        const struct conf_backend *o = &pool->backends[j];
        if (o->name && strcmp(o->name, name) == 0) {
            config_diag_error(d, name_at->line, name_at->col,
                              "pool '%s': duplicate backend name '%s' (first at %d:%d)%s",
                              pool_name, name, o->pos.line, o->pos.col,
                              name_node ? "" : "; a backend without a name is named "
                              "by its address");
            break;
        }
    }
}

static void config_read_backends(struct config_diag *d, struct config *cfg,
                                 struct conf_pool *p, const char *owner,
                                 const struct config_node *map)
{
    const struct config_node *seq = config_map_get(map, "backends");

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
    p->backends = calloc(seq->n, sizeof(*p->backends));
    if (!p->backends) {
        config_diag_error(d, seq->line, seq->col, "out of memory");
        return;
    }
    p->nbackends = seq->n;
    for (size_t i = 0; i < seq->n; i++)
        config_read_backend(d, cfg, p, i, seq->items[i]);
}

static void config_read_health(struct config_diag *d, struct conf_pool *p, const char *owner,
                               const struct config_node *map)
{
    const struct config_node *n, *interval, *timeout;
    char where[320], a[32], b[32];
    bool times_ok = true;
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

    /* A check that may run longer than its interval would overlap the next. */
    if (!times_ok || p->health.timeout_ms <= p->health.interval_ms)
        return;
    config_duration_text(a, sizeof(a), p->health.timeout_ms);
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

static void config_read_pool(struct config_diag *d, struct config *cfg, size_t index,
                             const struct config_node *map)
{
    struct conf_pool *p = &cfg->pools[index];
    const struct config_node *n, *name_node;
    char owner[200], where[320];
    const char *name;
    int v;

    p->balance = BALANCE_P2C;
    p->connect_timeout_ms = 2000;
    p->send_proxy = PROXY_SEND_NONE;
    p->health = (struct conf_health){
        .type = HEALTH_NONE, .interval_ms = 2000, .timeout_ms = 1000,
        .healthy_threshold = 2, .unhealthy_threshold = 2,
    };
    config_pos_set(&p->pos, cfg, map);
    snprintf(owner, sizeof(owner), "pool #%zu", index + 1);
    if (config_want_map(d, owner, NULL, map) < 0)
        return;

    if (!(name_node = config_map_get(map, "name"))) {
        config_missing(d, owner, map, "name");
    } else if (config_want_name(d, owner, "name", name_node, &name) == 0) {
        for (size_t j = 0; j < index; j++) {
            const struct conf_pool *o = &cfg->pools[j];
            if (o->name && strcmp(o->name, name) == 0) {
                config_diag_error(d, name_node->line, name_node->col,
                                  "duplicate pool name '%s' (first at %d:%d)", name,
                                  o->pos.line, o->pos.col);
                break;
            }
        }
        p->name = config_strdup(d, name);
        snprintf(owner, sizeof(owner), "pool '%s'", name);
    }
    config_schema_check_keys(d, map, "pools[]", owner);

    if ((n = config_map_get(map, "balance")) &&
        config_want_enum(d, owner, "balance", n, config_balances, config_balances_later,
                         &v) == 0)
        p->balance = (enum balance_kind)v;
    if ((n = config_map_get(map, "timeouts")) &&
        config_want_map(d, owner, "timeouts", n) == 0) {
        const struct config_node *t;

        snprintf(where, sizeof(where), "timeouts of %s", owner);
        config_schema_check_keys(d, n, "pools[].timeouts", where);
        if ((t = config_map_get(n, "connect")))
            config_want_timeout(d, owner, "timeouts.connect", t, &p->connect_timeout_ms);
    }
    if ((n = config_map_get(map, "send_proxy")) &&
        config_want_enum(d, owner, "send_proxy", n, config_send_proxy, NULL, &v) == 0)
        p->send_proxy = (enum proxy_send)(PROXY_SEND_V1 + v);
    config_read_backends(d, cfg, p, owner, map);
    if ((n = config_map_get(map, "health_check")))
        config_read_health(d, p, owner, n);
}

void config_read_pools(struct config_diag *d, struct config *cfg, const struct config_node *seq)
{
    cfg->pools = calloc(seq->n, sizeof(*cfg->pools));
    if (!cfg->pools) {
        config_diag_error(d, seq->line, seq->col, "out of memory");
        return;
    }
    cfg->npools = seq->n;
    for (size_t i = 0; i < seq->n; i++)
        config_read_pool(d, cfg, i, seq->items[i]);
}
