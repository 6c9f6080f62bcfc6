/* The `listeners` section: where sluice accepts traffic, how (tcp or udp),
 * client-side timeouts, and the pool it goes to. */
#include "config/config.h"
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>

/* Same order as enum listener_mode. */
static const char *const config_modes[] = { "tcp", "udp", "http", "dns", NULL };
/* Modes people reach for that are settings of mode http. */
static const char *const config_modes_hint[][2] = {
    {"http2", "use mode: http with http2: true"},
    {"https", "use mode: http with a tls block"},
    {"h2c", "use mode: http with http2: true"},
};
static const char *const config_proxy_protocol[] = { "accept", NULL };

/* KEY is given (the pair p), but only means something in mode WANT. */
static void config_mode_only(struct config_diag *d, const char *owner,
                             const struct config_pair *p, const char *path,
                             enum listener_mode want)
{
    config_diag_error(d, p->key->line, p->key->col, "%s: %s only applies to mode %s",
                      owner, path, config_modes[want]);
}

static void config_read_timeouts(struct config_diag *d, struct conf_listener *l,
                                 const char *owner, const struct config_node *map,
                                 bool mode_ok)
{
    const struct config_pair *p;
    char where[320];

    if (config_want_map(d, owner, "timeouts", map) < 0)
        return;
    snprintf(where, sizeof(where), "timeouts of %s", owner);
    config_schema_check_keys(d, map, "listeners[].timeouts", where);

    if ((p = config_map_pair(map, "client_idle"))) {
        if (mode_ok && l->mode == LISTENER_UDP)
            config_mode_only(d, owner, p, "timeouts.client_idle", LISTENER_TCP);
        else
            config_want_timeout(d, owner, "timeouts.client_idle", p->value, &l->client_idle_ms);
    }
    static const struct {
        const char *key;
        size_t off;
    } http_timeouts[] = {
        {"client_header", offsetof(struct conf_listener, client_header_ms)},
        {"client_body", offsetof(struct conf_listener, client_body_ms)},
        {"tunnel_idle", offsetof(struct conf_listener, tunnel_idle_ms)},
    };
    for (size_t i = 0; i < sizeof(http_timeouts) / sizeof(http_timeouts[0]); i++) {
        char path[64];
        snprintf(path, sizeof(path), "timeouts.%s", http_timeouts[i].key);
        if (!(p = config_map_pair(map, http_timeouts[i].key)))
            continue;
        /* tcp: how long routes wait for a TLS ClientHello */
        if (mode_ok && l->mode == LISTENER_TCP && i == 0)
            config_want_timeout(d, owner, path, p->value, &l->client_header_ms);
        else if (mode_ok && l->mode != LISTENER_HTTP)
            config_mode_only(d, owner, p, path, LISTENER_HTTP);
        else
            config_want_timeout(d, owner, path, p->value,
                                (uint64_t *)((char *)l + http_timeouts[i].off));
    }
    if ((p = config_map_pair(map, "udp_idle"))) {
        if (mode_ok && l->mode != LISTENER_UDP)
            config_mode_only(d, owner, p, "timeouts.udp_idle", LISTENER_UDP);
        else
            config_want_timeout(d, owner, "timeouts.udp_idle", p->value, &l->udp_idle_ms);
    }
}

/* What the cross-listener checks need to know about one listener. */
struct config_listener_seen {
    bool mode_ok;                  /* mode was read: mode-specific checks apply */
    int name_line, name_col;       /* where its name is written */
    char bind_key[ADDR_TEXT_MAX + 8]; /* "tcp 127.0.0.1:80", canonical; "" if none */
};

struct conf_pool *config_find_pool(struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->npools; i++)
        if (cfg->pools[i].name && strcmp(cfg->pools[i].name, name) == 0)
            return &cfg->pools[i];
    return NULL;
}

/* normalize_path, merge_slashes, escaped_slashes (http): how request paths
 * are cleaned before routing, route/path.c; and headers_with_underscores,
 * the other reading of a request that the listener makes safe for what is
 * behind it. */
static void config_read_request_hygiene(struct config_diag *d, struct conf_listener *l, const char *owner,
                              const struct config_node *map, bool mode_ok)
{
    static const char *const slashes[] = {"keep", "reject", "decode", NULL};
    static const char *const underscores[] = {"allow", "drop", "reject", NULL};
    static const char *const keys[] = {"normalize_path", "merge_slashes", "escaped_slashes",
                                       "headers_with_underscores"};
    const struct config_pair *p;
    int v;

    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        if ((p = config_map_pair(map, keys[k])) && mode_ok && l->mode != LISTENER_HTTP)
            config_mode_only(d, owner, p, keys[k], LISTENER_HTTP);
    if (mode_ok && l->mode != LISTENER_HTTP)
        return;
    if ((p = config_map_pair(map, "normalize_path")))
        config_want_bool(d, owner, "normalize_path", p->value, &l->paths.normalize);
    if ((p = config_map_pair(map, "merge_slashes")))
        config_want_bool(d, owner, "merge_slashes", p->value, &l->paths.merge_slashes);
    if ((p = config_map_pair(map, "escaped_slashes")) &&
        config_want_enum(d, owner, "escaped_slashes", p->value, slashes, NULL, &v) == 0)
        l->paths.escaped_slashes = (enum path_escaped_slashes)v;
    if ((p = config_map_pair(map, "headers_with_underscores")) &&
        config_want_enum(d, owner, "headers_with_underscores", p->value, underscores, NULL, &v) == 0)
        l->underscores = (enum underscore_headers)v;
}

static int config_mode_hint(const char *s)
{
    for (size_t i = 0; i < sizeof(config_modes_hint) / sizeof(config_modes_hint[0]); i++)
        if (strcmp(config_modes_hint[i][0], s) == 0)
            return (int)i;
    return -1;
}

static void config_read_listener(struct config_diag *d, struct config *cfg, size_t index,
                                 const struct config_node *map,
                                 struct config_listener_seen *seen)
{
    struct conf_listener *l = &cfg->listeners[index];
    const struct config_node *n;
    const struct config_pair *p;
    char owner[200];
    const char *s;
    bool mode_ok = false;
    uint64_t v;
    int m;

    l->mode = LISTENER_TCP;
    l->client_idle_ms = 0;             /* default set below, by mode */
    l->client_header_ms = 10000;
    l->client_body_ms = 30000;
    l->tunnel_idle_ms = 3600000;
    l->max_request_line = 8192;
    l->max_header_size = 65536;
    l->max_headers = 100;
    l->paths.normalize = true;
    l->paths.merge_slashes = true;
    l->paths.escaped_slashes = PATH_SLASHES_KEEP;
    l->udp_idle_ms = 30000;
    l->max_flows = 65536;
    config_pos_set(&l->pos, cfg, map);
    snprintf(owner, sizeof(owner), "listener #%zu", index + 1);
    if (config_want_map(d, owner, NULL, map) < 0)
        return;

    if (!(n = config_map_get(map, "name"))) {
        config_missing(d, owner, map, "name");
    } else if (config_want_name(d, owner, "name", n, &s) == 0) {
        l->name = config_strdup(d, s);
        seen->name_line = n->line;
        seen->name_col = n->col;
        snprintf(owner, sizeof(owner), "listener '%s'", s);
    }
    config_schema_check_keys(d, map, "listeners[]", owner);

    if (!(n = config_map_get(map, "bind"))) {
        config_missing(d, owner, map, "bind");
    } else if (config_want_string(d, owner, "bind", n, &s) == 0) {
        const char *why = "";
        char shown[96];

        config_pos_set(&l->bind_pos, cfg, n);
        if (addr_parse(s, &l->bind, &why) < 0)
            config_diag_error(d, n->line, n->col, "%s: bind: bad address '%s': %s", owner,
                              config_show(shown, sizeof(shown), s), why);
        else if (addr_port(&l->bind) == 0)
            /* Every worker binds on its own; port 0 would give each a
             * different random port. */
            config_diag_error(d, n->line, n->col, "%s: bind: port 0 is not allowed; "
                              "give the port to listen on", owner);
        else
            l->bind_text = config_strdup(d, s);
    }

    if ((n = config_map_get(map, "freebind")))
        config_want_bool(d, owner, "freebind", n, &l->freebind);

    if (!(n = config_map_get(map, "mode"))) {
        config_missing(d, owner, map, "mode");
    } else if (n->kind == CONFIG_NODE_SCALAR && n->text &&
               (m = config_mode_hint(n->text)) >= 0) {
        config_diag_error(d, n->line, n->col, "%s: mode: '%s' is not a mode; %s", owner, n->text,
                          config_modes_hint[m][1]);
    } else if (config_want_enum(d, owner, "mode", n, config_modes, NULL, &m) == 0) {
        l->mode = (enum listener_mode)m;
        mode_ok = true;
    }
    seen->mode_ok = mode_ok;
    if (mode_ok && l->bind_text) {
        char text[ADDR_TEXT_MAX];
        /* Keyed by socket type, not mode: udp and dns share the datagram
         * port space, tcp and http the stream one (an http and a tcp
         * listener on one port would both bind and split the connections). */
        snprintf(seen->bind_key, sizeof(seen->bind_key), "%s %s",
                 listener_datagram(l->mode) ? "udp" : "tcp",
                 addr_format(&l->bind, text, sizeof(text)));
    }

    if ((p = config_map_pair(map, "proxy_protocol"))) {
        if (mode_ok && l->mode != LISTENER_TCP)
            config_mode_only(d, owner, p, "proxy_protocol", LISTENER_TCP);
        else if (config_want_enum(d, owner, "proxy_protocol", p->value, config_proxy_protocol,
                                  NULL, &m) == 0)
            l->proxy_protocol_accept = true;
    }

    if (mode_ok && l->mode == LISTENER_DNS) {
        /* The GSLB responder: its records name their pools. */
        if ((p = config_map_pair(map, "pool")))
            config_diag_error(d, p->key->line, p->key->col, "%s: pool does not apply to mode dns "
                              "(each region of a record names its pool)", owner);
        if ((n = config_map_get(map, "geoip")))
            config_read_dns_geoip(d, l, owner, n);
        if ((n = config_map_get(map, "geoip_asn")))
            config_read_dns_geoip_asn(d, l, owner, n);
        if ((n = config_map_get(map, "zone")))
            config_read_dns_zone(d, l, owner, n);
        if (!(n = config_map_get(map, "records")))
            config_missing(d, owner, map, "records");
        else
            config_read_dns_records(d, cfg, l, owner, n);
        if ((p = config_map_pair(map, "timeouts")))
            config_diag_error(d, p->key->line, p->key->col, "%s: timeouts do not apply to mode dns",
                              owner);
    } else {
        if ((p = config_map_pair(map, "records")) && mode_ok)
            config_mode_only(d, owner, p, "records", LISTENER_DNS);
        if ((p = config_map_pair(map, "geoip")) && mode_ok)
            config_mode_only(d, owner, p, "geoip", LISTENER_DNS);
        if ((p = config_map_pair(map, "geoip_asn")) && mode_ok)
            config_mode_only(d, owner, p, "geoip_asn", LISTENER_DNS);
        if ((p = config_map_pair(map, "zone")) && mode_ok)
            config_mode_only(d, owner, p, "zone", LISTENER_DNS);
    }
    if (mode_ok && l->mode == LISTENER_DNS) {
        /* done above */
    } else if (!(n = config_map_get(map, "pool"))) {
        /* An http listener may route everything; without a match it 404s. */
        if (!(mode_ok && l->mode == LISTENER_HTTP))
            config_missing(d, owner, map, "pool");
    } else if (config_want_name(d, owner, "pool", n, &s) == 0) {
        l->pool_name = config_strdup(d, s);
        l->pool = config_find_pool(cfg, s);
        if (!l->pool)
            config_diag_error(d, n->line, n->col, "%s: pool '%s' is not defined", owner, s);
        else if (l->pool->tls && mode_ok && l->mode == LISTENER_UDP)
            config_diag_error(d, n->line, n->col, "%s: pool '%s' speaks TLS to its backends, "
                              "which a udp listener cannot", owner, s);
        else if (l->pool->http2 && mode_ok && l->mode != LISTENER_HTTP)
            config_diag_error(d, n->line, n->col, "%s: pool '%s' speaks HTTP/2 to its backends, "
                              "which only an http listener can use", owner, s);
    }

    if ((n = config_map_get(map, "timeouts")) && !(mode_ok && l->mode == LISTENER_DNS))
        config_read_timeouts(d, l, owner, n, mode_ok);

    if ((p = config_map_pair(map, "max_flows"))) {
        if (mode_ok && l->mode != LISTENER_UDP)
            config_mode_only(d, owner, p, "max_flows", LISTENER_UDP);
        else if (config_want_uint(d, owner, "max_flows", p->value, 1, 10000000, &v) == 0)
            l->max_flows = (uint32_t)v;
    }
    if ((p = config_map_pair(map, "max_connections"))) {
        if (mode_ok && listener_datagram(l->mode))
            config_diag_error(d, p->key->line, p->key->col, "%s: max_connections only applies "
                              "to mode tcp and http", owner);
        else if (config_want_uint(d, owner, "max_connections", p->value, 1, 10000000, &v) == 0)
            l->max_connections = (uint32_t)v;
    }
    if (!l->client_idle_ms)
        l->client_idle_ms = l->mode == LISTENER_HTTP ? 60000 : 600000;

    /* mode: http (tcp: routes on the TLS server name, see config_check_tcp_routes) */
    if ((p = config_map_pair(map, "routes"))) {
        if (mode_ok && l->mode != LISTENER_HTTP && l->mode != LISTENER_TCP) {
            config_diag_error(d, p->key->line, p->key->col, "%s: routes only applies to mode "
                              "http and tcp", owner);
        } else {
            config_read_routes(d, cfg, l, owner, p->value);
            if (mode_ok && l->mode == LISTENER_TCP)
                config_check_tcp_routes(d, l);
        }
    }
    if ((p = config_map_pair(map, "trusted_proxies"))) {
        if (mode_ok && l->mode != LISTENER_HTTP)
            config_mode_only(d, owner, p, "trusted_proxies", LISTENER_HTTP);
        else
            config_read_trusted(d, l, owner, p->value);
    }
    if ((p = config_map_pair(map, "max_body_size"))) {
        const char *sz;
        if (mode_ok && l->mode != LISTENER_HTTP)
            config_mode_only(d, owner, p, "max_body_size", LISTENER_HTTP);
        else if (config_want_string(d, owner, "max_body_size", p->value, &sz) == 0 &&
                 config_parse_size(sz, &l->max_body_size) < 0)
            config_diag_error(d, p->value->line, p->value->col, "%s: max_body_size: bad size "
                              "'%s': use a number with an optional k, m or g", owner, sz);
    }
    config_read_request_hygiene(d, l, owner, map, mode_ok);
    if ((p = config_map_pair(map, "http2"))) {
        if (mode_ok && l->mode != LISTENER_HTTP)
            config_mode_only(d, owner, p, "http2", LISTENER_HTTP);
        else
            config_want_bool(d, owner, "http2", p->value, &l->http2);
    }
    if ((p = config_map_pair(map, "auth"))) {
        if (mode_ok && l->mode != LISTENER_HTTP)
            config_mode_only(d, owner, p, "auth", LISTENER_HTTP);
        else
            l->auth = config_read_auth(d, cfg, owner, "listeners[]", p->value);
    }
    if ((p = config_map_pair(map, "tls"))) {
        if (mode_ok && (l->mode == LISTENER_UDP || l->mode == LISTENER_DNS))
            config_diag_error(d, p->key->line, p->key->col, "%s: tls only applies to mode http "
                              "or tcp", owner);
        else
            l->tls = config_read_tls(d, owner, p->value);
    }
    if ((p = config_map_pair(map, "rate_limit"))) {
        if (mode_ok && (l->mode == LISTENER_UDP || l->mode == LISTENER_DNS))
            config_diag_error(d, p->key->line, p->key->col, "%s: rate_limit only applies to "
                              "mode http or tcp", owner);
        else
            l->rate_limit = config_read_rate_limit(d, cfg, owner, "listeners[]", p->value,
                                                   mode_ok && l->mode == LISTENER_TCP,
                                                   "listener");
    }
    if ((p = config_map_pair(map, "limits"))) {
        if (mode_ok && l->mode != LISTENER_HTTP) {
            config_mode_only(d, owner, p, "limits", LISTENER_HTTP);
        } else if (config_want_map(d, owner, "limits", p->value) == 0) {
            const struct config_node *lim = p->value, *k;
            config_schema_check_keys(d, lim, "listeners[].limits", owner);
            if ((k = config_map_get(lim, "max_request_line")) &&
                config_want_uint(d, owner, "limits.max_request_line", k, 64, 65536, &v) == 0)
                l->max_request_line = (uint32_t)v;
            if ((k = config_map_get(lim, "max_header_size")) &&
                config_want_uint(d, owner, "limits.max_header_size", k, 1024, 1048576, &v) == 0)
                l->max_header_size = (uint32_t)v;
            if ((k = config_map_get(lim, "max_headers")) &&
                config_want_uint(d, owner, "limits.max_headers", k, 1, 128, &v) == 0)
                l->max_headers = (uint32_t)v;
        }
    }
}

/* Names are unique; and with SO_REUSEPORT, two listeners of one socket type
 * on one address would both bind and silently split the traffic. */
static void config_listener_dups(struct config_diag *d, struct config *cfg,
                                 const struct config_listener_seen *seen,
                                 struct config_dup *dups)
{
    char text[ADDR_TEXT_MAX], admin_key[ADDR_TEXT_MAX + 8], peers_key[ADDR_TEXT_MAX + 8];
    size_t n = 0;

    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].name)
            dups[n++] = (struct config_dup){ .key = cfg->listeners[i].name, .index = i };
    config_find_dups(dups, n);
    for (size_t k = 0; k < n; k++) {
        size_t i = dups[k].index;

        if (dups[k].first == CONFIG_NO_DUP)
            continue;
        config_diag_error(d, seen[i].name_line, seen[i].name_col,
                          "duplicate listener name '%s' (first at %d:%d)",
                          cfg->listeners[i].name, seen[dups[k].first].name_line,
                          seen[dups[k].first].name_col);
    }

    /* The admin API's socket (index 0; SO_REUSEADDR only, so sluice could
     * not start) and the peers' (index 1; SO_REUSEPORT, so it would take a
     * share of a udp listener's datagrams) count too; listener i is i + 2. */
    n = 0;
    if (cfg->admin.listen_text) {
        snprintf(admin_key, sizeof(admin_key), "tcp %s",
                 addr_format(&cfg->admin.listen, text, sizeof(text)));
        dups[n++] = (struct config_dup){ .key = admin_key, .index = 0 };
    }
    if (cfg->peers && cfg->peers->listen_text) {
        snprintf(peers_key, sizeof(peers_key), "udp %s",
                 addr_format(&cfg->peers->listen, text, sizeof(text)));
        dups[n++] = (struct config_dup){ .key = peers_key, .index = 1 };
    }
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (seen[i].bind_key[0])
            dups[n++] = (struct config_dup){ .key = seen[i].bind_key, .index = i + 2 };
    config_find_dups(dups, n);
    for (size_t k = 0; k < n; k++) {
        const struct conf_listener *l;
        const struct conf_pos *first;
        const char *what = "the listener";
        char owner[200];

        if (dups[k].first == CONFIG_NO_DUP)
            continue;
        l = &cfg->listeners[dups[k].index - 2];
        if (dups[k].first == 0) {
            first = &cfg->admin.listen_pos;
            what = "admin.listen";
        } else if (dups[k].first == 1) {
            first = &cfg->peers->listen_pos;
            what = "peers.listen";
        } else {
            first = &cfg->listeners[dups[k].first - 2].pos;
        }
        if (l->name)
            snprintf(owner, sizeof(owner), "listener '%s'", l->name);
        else
            snprintf(owner, sizeof(owner), "listener #%zu", dups[k].index - 1);
        config_diag_error(d, l->bind_pos.line, l->bind_pos.col,
                          "%s: bind: %s %s is already used by %s at %d:%d",
                          owner, config_modes[l->mode], l->bind_text, what, first->line,
                          first->col);
    }
}

/* A pool with send_proxy used by an http or udp listener (as its pool, a
 * route's, a split's or a mirror's): only tcp listeners send the header.
 * An http pool's connections are shared by every client, so one header at
 * a connection's start cannot name each request's client (X-Forwarded-For
 * and Forwarded do, per request); a udp listener sends none. Refused
 * rather than silently ignored. */
static void check_send_proxy(struct config_diag *d, const struct config *cfg, bool *told,
                             const struct conf_listener *l, const struct conf_pool *p)
{
    if (!p || p->send_proxy == PROXY_SEND_NONE || l->mode == LISTENER_TCP ||
        l->mode == LISTENER_DNS || told[p - cfg->pools])
        return;
    told[p - cfg->pools] = true;   /* once per pool, however many use it */
    config_diag_error(d, p->send_proxy_pos.line, p->send_proxy_pos.col,
                      "pool '%s': send_proxy only applies to pools of tcp listeners, and the %s "
                      "listener '%s' uses this pool%s", p->name,
                      l->mode == LISTENER_HTTP ? "http" : "udp", l->name,
                      l->mode == LISTENER_HTTP ?
                      " (its connections are shared by clients: sluice sends X-Forwarded-For "
                      "and Forwarded with each request instead)" : "");
}

static void check_send_proxy_users(struct config_diag *d, const struct config *cfg)
{
    bool *told = calloc(cfg->npools + 1, sizeof(*told));

    if (!told)
        return;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct conf_listener *l = &cfg->listeners[i];

        check_send_proxy(d, cfg, told, l, l->pool);
        for (size_t j = 0; j < l->nroutes; j++) {
            const struct conf_route *r = &l->routes[j];
            check_send_proxy(d, cfg, told, l, r->pool);
            check_send_proxy(d, cfg, told, l, r->mirror_pool);
            for (size_t k = 0; k < r->nsplit; k++)
                check_send_proxy(d, cfg, told, l, r->split[k].pool);
        }
    }
    free(told);
}

void config_read_listeners(struct config_diag *d, struct config *cfg,
                           const struct config_node *seq)
{
    struct config_listener_seen *seen;
    struct config_dup *dups;

    if (seq->n > CONFIG_MAX_LISTENERS) {
        config_diag_error(d, seq->line, seq->col, "listeners: %zu entries; at most %d are "
                          "supported", seq->n, CONFIG_MAX_LISTENERS);
        return;
    }
    cfg->listeners = calloc(seq->n, sizeof(*cfg->listeners));
    seen = calloc(seq->n, sizeof(*seen));
    dups = calloc(seq->n + 2, sizeof(*dups));      /* + admin and peers */
    if (!cfg->listeners || !seen || !dups) {
        free(seen);
        free(dups);
        config_diag_error(d, seq->line, seq->col, "out of memory");
        return;
    }
    cfg->nlisteners = seq->n;
    for (size_t i = 0; i < seq->n; i++)
        config_read_listener(d, cfg, i, seq->items[i], &seen[i]);
    config_listener_dups(d, cfg, seen, dups);
    check_send_proxy_users(d, cfg);
    free(seen);
    free(dups);
}
