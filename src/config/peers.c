/* The top-level `peers` block: the other sluice instances that count shared
 * rate limits with this one, and the key their messages are signed with.
 * What is sent and how it is counted is in src/peers/. */
#include "config/config.h"
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>

void config_read_peers(struct config_diag *d, struct config *cfg, const struct config_node *map)
{
    struct conf_peers *p;
    const struct config_node *n;

    if (config_want_map(d, NULL, "peers", map) < 0)
        return;
    config_schema_check_keys(d, map, "peers", "peers");
    if (!(p = calloc(1, sizeof(*p)))) {
        config_diag_error(d, map->line, map->col, "out of memory");
        return;
    }
    cfg->peers = p;
    p->interval_ms = 50;
    if (!(n = config_map_get(map, "listen")))
        config_missing(d, "peers", map, "listen");
    else if (config_want_addr_port(d, "peers", "listen", n, &p->listen) == 0) {
        p->listen_text = config_strdup(d, n->text);
        config_pos_set(&p->listen_pos, cfg, n);
    }
    if (!(n = config_map_get(map, "nodes"))) {
        config_missing(d, "peers", map, "nodes");
    } else if (config_want_seq(d, "peers", "nodes", n) == 0) {
        if (n->n == 0 || n->n > PEERS_MAX_NODES) {
            config_diag_error(d, n->line, n->col, "peers: nodes: give 1 to %d addresses",
                              PEERS_MAX_NODES);
        } else if ((p->nodes = calloc(n->n, sizeof(*p->nodes)))) {
            for (size_t i = 0; i < n->n; i++)
                if (config_want_addr_port(d, "peers", "nodes", n->items[i],
                                          &p->nodes[p->nnodes]) == 0)
                    p->nnodes++;
        }
    }
    if (!(n = config_map_get(map, "secret_file")))
        config_missing(d, "peers", map, "secret_file");
    else
        config_read_secret_file(d, "peers", "secret_file", n, &p->secret, &p->secret_len);
    if ((n = config_map_get(map, "interval")) &&
        config_want_timeout(d, NULL, "peers.interval", n, &p->interval_ms) == 0 &&
        (p->interval_ms < 10 || p->interval_ms > 10000))
        config_diag_error(d, n->line, n->col, "peers.interval: give 10ms to 10s");
}

void config_free_peers(struct config *cfg)
{
    struct conf_peers *p = cfg->peers;

    if (!p)
        return;
    free(p->listen_text);
    free(p->nodes);
    if (p->secret)
        explicit_bzero(p->secret, p->secret_len);
    free(p->secret);
    free(p);
    cfg->peers = NULL;
}
