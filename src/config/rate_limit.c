/* A `rate_limit` block, on a listener or a route. How requests are counted
 * against it is in route/rate_limit.c. */
#include "config/config.h"
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* "N/s", "N/m" or "N/h", N a whole number from 1 to 1,000,000,000: the
 * steady rate, as the spacing between two requests in ns. */
static int parse_rate(const char *s, uint64_t *interval_ns)
{
    static const struct { const char *unit; uint64_t ns; } units[] = {
        { "/s", 1000000000ull }, { "/m", 60000000000ull }, { "/h", 3600000000000ull },
    };
    size_t digits = strspn(s, "0123456789");
    uint64_t n;

    if (digits == 0 || digits > 10 || s[0] == '0')
        return -1;
    n = strtoull(s, NULL, 10);
    if (n > 1000000000ull)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(s + digits, units[i].unit) == 0) {
            *interval_ns = units[i].ns / n;
            return 0;
        }
    return -1;
}

struct conf_rate_limit *config_read_rate_limit(struct config_diag *d, struct config *cfg,
                                               const char *owner, const char *prefix,
                                               const struct config_node *map, bool tcp,
                                               const char *label)
{
    struct conf_rate_limit *rl;
    const struct config_node *n;
    char shown[96];
    const char *s;
    uint64_t v;
    int errors = d->errors;

    if (config_want_block(d, owner, prefix, "rate_limit", map) < 0)
        return NULL;
    rl = calloc(1, sizeof(*rl));
    if (!rl) {
        config_diag_error(d, map->line, map->col, "out of memory");
        return NULL;
    }
    rl->key = HASH_KEY_SOURCE_IP;
    rl->status = 429;
    rl->max_keys = 65536;
    if (!(n = config_map_get(map, "rate")))
        config_missing(d, owner, map, "rate_limit.rate");
    else if (config_want_string(d, owner, "rate_limit.rate", n, &s) == 0) {
        if (parse_rate(s, &rl->interval_ns) < 0)
            config_diag_error(d, n->line, n->col, "%s: rate_limit.rate: expected N/s, N/m or "
                              "N/h with N a whole number from 1 to 1000000000, like 100/s, "
                              "got '%s'", owner, config_show(shown, sizeof(shown), s));
        else
            rl->rate_text = config_strdup(d, s);
    }
    config_read_u32(d, owner, map, "burst", "rate_limit.burst", 0, 1000000, &rl->burst);
    if ((n = config_map_get(map, "key")) &&
        config_read_request_key(d, owner, "rate_limit.key", n, true, &rl->key,
                                &rl->key_name) == 0 &&
        tcp && rl->key != HASH_KEY_SOURCE_IP && rl->key != HASH_KEY_GLOBAL)
        config_diag_error(d, n->line, n->col, "%s: rate_limit.key: a tcp listener counts "
                          "connections, which have only source_ip or global", owner);
    if ((n = config_map_get(map, "status")) &&
        config_want_uint(d, owner, "rate_limit.status", n, 0, 999, &v) == 0) {
        if (tcp)
            config_diag_error(d, n->line, n->col, "%s: rate_limit.status: a tcp listener "
                              "closes connections over the limit; there is no status", owner);
        else if (v != 429 && v != 503)
            config_diag_error(d, n->line, n->col, "%s: rate_limit.status: use 429 or 503",
                              owner);
        else
            rl->status = (int)v;
    }
    config_read_u32(d, owner, map, "max_keys", "rate_limit.max_keys", 1, 16777216,
                    &rl->max_keys);
    if ((n = config_map_get(map, "shared")) &&
        config_want_bool(d, owner, "rate_limit.shared", n, &rl->shared) == 0 && rl->shared &&
        !cfg->peers)
        config_diag_error(d, n->line, n->col, "%s: rate_limit.shared: needs a top-level peers "
                          "block (the instances to share it with)", owner);
    /* What names this limit to the peers: where it is in the config (the
     * same on every instance, whose configs must agree). */
    rl->share_id = XXH3_64bits_withSeed(owner, strlen(owner), XXH3_64bits(label, strlen(label)));
    rl->label = config_strdup(d, label);
    if (d->errors != errors) {
        config_free_rate_limit(rl);
        return NULL;
    }
    rl->index = (uint32_t)cfg->nrate_limits++;
    return rl;
}

void config_free_rate_limit(struct conf_rate_limit *rl)
{
    if (!rl)
        return;
    free(rl->key_name);
    free(rl->label);
    free(rl->rate_text);
    free(rl);
}
