/* The `listeners` section: where sluice accepts traffic, how (tcp or udp),
 * client-side timeouts, and the pool it goes to. */
#include "config/config.h"
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>

/* Same order as enum listener_mode. */
static const char *const config_modes[] = { "tcp", "udp", NULL };
static const char *const config_modes_later[] = { "http", NULL };
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
        if (mode_ok && l->mode != LISTENER_TCP)
            config_mode_only(d, owner, p, "timeouts.client_idle", LISTENER_TCP);
        else
            config_want_timeout(d, owner, "timeouts.client_idle", p->value, &l->client_idle_ms);
    }
    if ((p = config_map_pair(map, "udp_idle"))) {
        if (mode_ok && l->mode != LISTENER_UDP)
            config_mode_only(d, owner, p, "timeouts.udp_idle", LISTENER_UDP);
        else
            config_want_timeout(d, owner, "timeouts.udp_idle", p->value, &l->udp_idle_ms);
    }
}

static struct conf_pool *config_find_pool(struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->npools; i++)
        if (cfg->pools[i].name && strcmp(cfg->pools[i].name, name) == 0)
            return &cfg->pools[i];
    return NULL;
}

/* Returns whether the listener's mode is known (mode-specific checks need it). */
static bool config_read_listener(struct config_diag *d, struct config *cfg, size_t index,
                                 const struct config_node *map)
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
    l->client_idle_ms = 600000;
    l->udp_idle_ms = 30000;
    l->max_flows = 65536;
    config_pos_set(&l->pos, cfg, map);
    snprintf(owner, sizeof(owner), "listener #%zu", index + 1);
    if (config_want_map(d, owner, NULL, map) < 0)
        return false;

    if (!(n = config_map_get(map, "name"))) {
        config_missing(d, owner, map, "name");
    } else if (config_want_name(d, owner, "name", n, &s) == 0) {
        for (size_t j = 0; j < index; j++) {
            const struct conf_listener *o = &cfg->listeners[j];
            if (o->name && strcmp(o->name, s) == 0) {
                config_diag_error(d, n->line, n->col,
                                  "duplicate listener name '%s' (first at %d:%d)", s,
                                  o->pos.line, o->pos.col);
                break;
            }
        }
        l->name = config_strdup(d, s);
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

    if (!(n = config_map_get(map, "mode"))) {
        config_missing(d, owner, map, "mode");
    } else if (config_want_enum(d, owner, "mode", n, config_modes, config_modes_later,
                                &m) == 0) {
        l->mode = (enum listener_mode)m;
        mode_ok = true;
    }

    if ((p = config_map_pair(map, "proxy_protocol"))) {
        if (mode_ok && l->mode != LISTENER_TCP)
            config_mode_only(d, owner, p, "proxy_protocol", LISTENER_TCP);
        else if (config_want_enum(d, owner, "proxy_protocol", p->value, config_proxy_protocol,
                                  NULL, &m) == 0)
            l->proxy_protocol_accept = true;
    }

    if (!(n = config_map_get(map, "pool"))) {
        config_missing(d, owner, map, "pool");
    } else if (config_want_name(d, owner, "pool", n, &s) == 0) {
        l->pool_name = config_strdup(d, s);
        l->pool = config_find_pool(cfg, s);
        if (!l->pool)
            config_diag_error(d, n->line, n->col, "%s: pool '%s' is not defined", owner, s);
    }

    if ((n = config_map_get(map, "timeouts")))
        config_read_timeouts(d, l, owner, n, mode_ok);

    if ((p = config_map_pair(map, "max_flows"))) {
        if (mode_ok && l->mode != LISTENER_UDP)
            config_mode_only(d, owner, p, "max_flows", LISTENER_UDP);
        else if (config_want_uint(d, owner, "max_flows", p->value, 1, 10000000, &v) == 0)
            l->max_flows = (uint32_t)v;
    }
    return mode_ok;
}

void config_read_listeners(struct config_diag *d, struct config *cfg,
                           const struct config_node *seq)
{
    bool *mode_ok;

    cfg->listeners = calloc(seq->n, sizeof(*cfg->listeners));
    mode_ok = calloc(seq->n, sizeof(*mode_ok));
    if (!cfg->listeners || !mode_ok) {
        free(mode_ok);
        config_diag_error(d, seq->line, seq->col, "out of memory");
        return;
    }
    cfg->nlisteners = seq->n;
    for (size_t i = 0; i < seq->n; i++)
        mode_ok[i] = config_read_listener(d, cfg, i, seq->items[i]);

    /* With SO_REUSEPORT both would bind and silently split the traffic. */
    for (size_t i = 0; i < seq->n; i++) {
        const struct conf_listener *l = &cfg->listeners[i];
        for (size_t j = 0; j < i && l->bind_text && mode_ok[i]; j++) {
            const struct conf_listener *o = &cfg->listeners[j];
            char owner[200];

            if (!o->bind_text || !mode_ok[j] || o->mode != l->mode ||
                !addr_equal(&o->bind, &l->bind))
                continue;
            if (l->name)
                snprintf(owner, sizeof(owner), "listener '%s'", l->name);
            else
                snprintf(owner, sizeof(owner), "listener #%zu", i + 1);
            config_diag_error(d, l->bind_pos.line, l->bind_pos.col,
                              "%s: bind: %s %s is already used by the listener at %d:%d",
                              owner, config_modes[l->mode], l->bind_text, o->pos.line,
                              o->pos.col);
            break;
        }
    }
    free(mode_ok);
}
