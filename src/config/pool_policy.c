/* The failure policies of a pool: `retries` and `circuit_breaker`, which
 * only mean something for pools that http listeners use, and
 * `outlier_detection`. */
#include "config/config.h"
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>

static void read_retry_on(struct config_diag *d, const char *owner, const struct config_node *seq,
                          struct conf_retries *r)
{
    if (config_want_seq(d, owner, "retries.retry_on", seq) < 0)
        return;
    r->on_connect_failure = r->on_reset = r->on_timeout = false;
    r->on_status = 0;
    for (size_t i = 0; i < seq->n; i++) {
        const struct config_node *n = seq->items[i];
        const char *s;
        char *end;
        long code;

        if (config_want_string(d, owner, "retries.retry_on[]", n, &s) < 0)
            continue;
        if (strcmp(s, "connect_failure") == 0) {
            r->on_connect_failure = true;
            continue;
        }
        if (strcmp(s, "reset") == 0) {
            r->on_reset = true;
            continue;
        }
        if (strcmp(s, "timeout") == 0) {
            r->on_timeout = true;
            continue;
        }
        code = strtol(s, &end, 10);
        if (*end == '\0' && code >= 500 && code <= 563) {
            r->on_status |= 1ull << (code - 500);
            continue;
        }
        config_diag_error(d, n->line, n->col, "%s: retries.retry_on: '%s' is not one of "
                          "connect_failure, reset, timeout or a status code 500..563", owner, s);
    }
}

static void read_retries(struct config_diag *d, const char *owner, const struct config_node *map,
                         struct conf_retries *r)
{
    const struct config_node *n;

    if (config_want_map(d, owner, "retries", map) < 0)
        return;
    config_schema_check_keys(d, map, "pools[].retries", owner);
    /* With a retries block and no retry_on, the usual safe set. */
    r->attempts = 2;
    r->on_connect_failure = r->on_reset = true;
    r->on_status = (1ull << 2) | (1ull << 3) | (1ull << 4);   /* 502, 503, 504 */
    config_read_u32(d, owner, map, "attempts", "retries.attempts", 0, 10, &r->attempts);
    if ((n = config_map_get(map, "retry_on")))
        read_retry_on(d, owner, n, r);
    config_read_u32(d, owner, map, "budget_percent", "retries.budget_percent",
                    0, 1000, &r->budget_percent);
    if ((n = config_map_get(map, "per_try_timeout")))
        config_want_timeout(d, owner, "retries.per_try_timeout", n, &r->per_try_timeout_ms);
    if ((n = config_map_get(map, "backoff")))
        config_want_duration(d, owner, "retries.backoff", n, &r->backoff_ms);
    if ((n = config_map_get(map, "retry_buffer"))) {
        const char *s;
        if (config_want_string(d, owner, "retries.retry_buffer", n, &s) == 0 &&
            (config_parse_size(s, &r->retry_buffer) < 0 || r->retry_buffer > (1u << 20)))
            config_diag_error(d, n->line, n->col, "%s: retries.retry_buffer: use a size up to "
                              "1m, like 64k", owner);
    }
}

static void read_breaker(struct config_diag *d, const char *owner, const struct config_node *map,
                         struct conf_breaker *b)
{
    if (config_want_map(d, owner, "circuit_breaker", map) < 0)
        return;
    config_schema_check_keys(d, map, "pools[].circuit_breaker", owner);
    config_read_u32(d, owner, map, "max_connections", "circuit_breaker.max_connections",
                    1, 10000000, &b->max_connections);
    config_read_u32(d, owner, map, "max_pending_requests", "circuit_breaker.max_pending_requests",
                    1, 10000000, &b->max_pending_requests);
    config_read_u32(d, owner, map, "max_requests", "circuit_breaker.max_requests",
                    1, 10000000, &b->max_requests);
}

/* Envoy's defaults: a cap of 300 s, or ejection_time where that is longer;
 * the multiplier drops by one every 10 s without an ejection. */
#define OUTLIER_MAX_EJECTION_DEFAULT_MS 300000
#define OUTLIER_INTERVAL_DEFAULT_MS 10000

static void read_outlier(struct config_diag *d, const char *owner, const struct config_node *map,
                         struct conf_outlier *o)
{
    const struct config_node *n, *max_node;
    char a[32], b[32];

    if (config_want_map(d, owner, "outlier_detection", map) < 0)
        return;
    config_schema_check_keys(d, map, "pools[].outlier_detection", owner);
    o->consecutive_failures = 5;
    config_read_u32(d, owner, map, "consecutive_failures", "outlier_detection.consecutive_failures",
                    1, 1000, &o->consecutive_failures);
    if ((n = config_map_get(map, "ejection_time")))
        config_want_timeout(d, owner, "outlier_detection.ejection_time", n, &o->ejection_time_ms);
    if ((n = config_map_get(map, "interval")))
        config_want_timeout(d, owner, "outlier_detection.interval", n, &o->interval_ms);
    config_read_u32(d, owner, map, "max_ejection_percent", "outlier_detection.max_ejection_percent",
                    0, 100, &o->max_ejection_percent);
    if (!(max_node = config_map_get(map, "max_ejection_time"))) {
        if (o->max_ejection_time_ms < o->ejection_time_ms)
            o->max_ejection_time_ms = o->ejection_time_ms;
        return;
    }
    if (config_want_timeout(d, owner, "outlier_detection.max_ejection_time", max_node,
                            &o->max_ejection_time_ms) < 0)
        return;
    /* A cap below the base would make every ejection shorter than the
     * ejection_time the operator wrote: one of the two is a mistake. */
    if (o->max_ejection_time_ms < o->ejection_time_ms)
        config_diag_error(d, max_node->line, max_node->col,
                          "%s: outlier_detection.max_ejection_time %s is shorter than "
                          "outlier_detection.ejection_time %s", owner,
                          config_duration_text(a, sizeof(a), o->max_ejection_time_ms),
                          config_duration_text(b, sizeof(b), o->ejection_time_ms));
}

void config_read_pool_policies(struct config_diag *d, struct conf_pool *p, const char *owner,
                               const struct config_node *map)
{
    const struct config_node *n;

    p->retries = (struct conf_retries){
        .attempts = 0, .on_connect_failure = true, .budget_percent = 20, .budget_min = 3,
        .backoff_ms = 25, .retry_buffer = 64 * 1024,
    };
    memset(&p->breaker, 0, sizeof(p->breaker));
    p->outlier = (struct conf_outlier){
        .consecutive_failures = 0, .ejection_time_ms = 30000,
        .max_ejection_time_ms = OUTLIER_MAX_EJECTION_DEFAULT_MS,
        .interval_ms = OUTLIER_INTERVAL_DEFAULT_MS, .max_ejection_percent = 50,
    };
    if ((n = config_map_get(map, "retries")))
        read_retries(d, owner, n, &p->retries);
    if ((n = config_map_get(map, "circuit_breaker")))
        read_breaker(d, owner, n, &p->breaker);
    if ((n = config_map_get(map, "outlier_detection")))
        read_outlier(d, owner, n, &p->outlier);
    p->drain_timeout_ms = 30000;
    if ((n = config_map_get(map, "drain_timeout")))
        config_want_duration(d, owner, "drain_timeout", n, &p->drain_timeout_ms);
    if ((n = config_map_get(map, "slow_start")))
        config_want_timeout(d, owner, "slow_start", n, &p->slow_start_ms);
    config_read_u32(d, owner, map, "panic_threshold", "panic_threshold", 0, 100,
                    &p->panic_threshold);
}
