/* The schema: every key the parser accepts, and the typed readers that turn a
 * node into a value or a message pointing at it. */
#include "config/config.h"
#include "config/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The one list of accepted keys. The parser checks every mapping against it
 * and docs/configuration.md must list exactly these, so adding a key here is
 * how a key becomes part of the language. */
const char *const config_known_keys[] = {
    "workers",
    "drain_timeout",
    "shutdown_delay",
    "log",
    "log.level",
    "log.access",
    "log.format",
    "admin",
    "admin.listen",
    "admin.token_file",
    "peers",
    "peers.listen",
    "peers.nodes",
    "peers.secret_file",
    "peers.interval",
    "listeners",
    "listeners[].name",
    "listeners[].bind",
    "listeners[].freebind",
    "listeners[].mode",
    "listeners[].http2",
    "listeners[].proxy_protocol",
    "listeners[].pool",
    "listeners[].timeouts",
    "listeners[].timeouts.client_idle",
    "listeners[].timeouts.udp_idle",
    "listeners[].max_flows",
    "listeners[].max_connections",
    "listeners[].timeouts.client_header",
    "listeners[].timeouts.client_body",
    "listeners[].timeouts.tunnel_idle",
    "listeners[].trusted_proxies",
    "listeners[].max_body_size",
    "listeners[].normalize_path",
    "listeners[].merge_slashes",
    "listeners[].escaped_slashes",
    "listeners[].headers_with_underscores",
    "listeners[].auth",
    "listeners[].auth.type",
    "listeners[].auth.realm",
    "listeners[].auth.users_file",
    "listeners[].auth.key_file",
    "listeners[].auth.secret_file",
    "listeners[].auth.jwks_file",
    "listeners[].auth.jwks_url",
    "listeners[].auth.jwks_refresh",
    "listeners[].auth.jwks_ca",
    "listeners[].auth.issuer",
    "listeners[].auth.audience",
    "listeners[].auth.clock_skew",
    "listeners[].auth.pool",
    "listeners[].auth.path",
    "listeners[].auth.timeout",
    "listeners[].auth.failure",
    "listeners[].auth.request_headers",
    "listeners[].auth.upstream_headers",
    "listeners[].auth.client_headers",
    "listeners[].tls",
    "listeners[].tls.certificates",
    "listeners[].tls.certificates[].cert",
    "listeners[].tls.certificates[].key",
    "listeners[].tls.certificates[].ocsp",
    "listeners[].tls.min_version",
    "listeners[].tls.client_ca",
    "listeners[].rate_limit",
    "listeners[].rate_limit.rate",
    "listeners[].rate_limit.burst",
    "listeners[].rate_limit.key",
    "listeners[].rate_limit.status",
    "listeners[].rate_limit.max_keys",
    "listeners[].rate_limit.shared",
    "listeners[].limits",
    "listeners[].limits.max_request_line",
    "listeners[].limits.max_header_size",
    "listeners[].limits.max_headers",
    "listeners[].routes",
    "listeners[].zone",
    "listeners[].zone.name",
    "listeners[].zone.nameservers",
    "listeners[].zone.hostmaster",
    "listeners[].zone.negative_ttl",
    "listeners[].geoip",
    "listeners[].geoip_asn",
    "listeners[].records",
    "listeners[].records[].name",
    "listeners[].records[].ttl",
    "listeners[].records[].policy",
    "listeners[].records[].answers",
    "listeners[].records[].regions",
    "listeners[].records[].regions[].name",
    "listeners[].records[].regions[].pool",
    "listeners[].records[].regions[].addresses",
    "listeners[].records[].regions[].clients",
    "listeners[].records[].regions[].countries",
    "listeners[].records[].regions[].continents",
    "listeners[].records[].regions[].asns",
    "listeners[].records[].regions[].location",
    "listeners[].records[].regions[].location.latitude",
    "listeners[].records[].regions[].location.longitude",
    "listeners[].records[].regions[].weight",
    "listeners[].routes[].match",
    "listeners[].routes[].match.host",
    "listeners[].routes[].match.path",
    "listeners[].routes[].match.path_prefix",
    "listeners[].routes[].match.path_regex",
    "listeners[].routes[].match.method",
    "listeners[].routes[].match.headers",
    "listeners[].routes[].match.cookies",
    "listeners[].routes[].match.query",
    "listeners[].routes[].match.source",
    "listeners[].routes[].pool",
    "listeners[].routes[].split",
    "listeners[].routes[].split[].pool",
    "listeners[].routes[].split[].weight",
    "listeners[].routes[].redirect",
    "listeners[].routes[].redirect.location",
    "listeners[].routes[].redirect.scheme",
    "listeners[].routes[].redirect.host",
    "listeners[].routes[].redirect.port",
    "listeners[].routes[].redirect.status",
    "listeners[].routes[].respond",
    "listeners[].routes[].respond.status",
    "listeners[].routes[].respond.body",
    "listeners[].routes[].set_headers",
    "listeners[].routes[].remove_headers",
    "listeners[].routes[].set_response_headers",
    "listeners[].routes[].remove_response_headers",
    "listeners[].routes[].strip_prefix",
    "listeners[].routes[].auth",
    "listeners[].routes[].auth.type",
    "listeners[].routes[].auth.realm",
    "listeners[].routes[].auth.users_file",
    "listeners[].routes[].auth.key_file",
    "listeners[].routes[].auth.secret_file",
    "listeners[].routes[].auth.jwks_file",
    "listeners[].routes[].auth.jwks_url",
    "listeners[].routes[].auth.jwks_refresh",
    "listeners[].routes[].auth.jwks_ca",
    "listeners[].routes[].auth.issuer",
    "listeners[].routes[].auth.audience",
    "listeners[].routes[].auth.clock_skew",
    "listeners[].routes[].auth.pool",
    "listeners[].routes[].auth.path",
    "listeners[].routes[].auth.timeout",
    "listeners[].routes[].auth.failure",
    "listeners[].routes[].auth.request_headers",
    "listeners[].routes[].auth.upstream_headers",
    "listeners[].routes[].auth.client_headers",
    "listeners[].routes[].rate_limit",
    "listeners[].routes[].rate_limit.rate",
    "listeners[].routes[].rate_limit.burst",
    "listeners[].routes[].rate_limit.key",
    "listeners[].routes[].rate_limit.status",
    "listeners[].routes[].rate_limit.max_keys",
    "listeners[].routes[].rate_limit.shared",
    "listeners[].routes[].rewrite_prefix",
    "listeners[].routes[].mirror",
    "listeners[].routes[].mirror.pool",
    "listeners[].routes[].mirror.percent",
    "listeners[].routes[].mirror.set_headers",
    "listeners[].routes[].mirror.max_body_size",
    "pools",
    "pools[].name",
    "pools[].balance",
    "pools[].hash_key",
    "pools[].hash_balance_factor",
    "pools[].timeouts",
    "pools[].timeouts.connect",
    "pools[].timeouts.upstream_response",
    "pools[].timeouts.upstream_idle",
    "pools[].max_idle_connections",
    "pools[].http2",
    "pools[].retries",
    "pools[].retries.attempts",
    "pools[].retries.retry_on",
    "pools[].retries.budget_percent",
    "pools[].retries.per_try_timeout",
    "pools[].retries.backoff",
    "pools[].retries.retry_buffer",
    "pools[].circuit_breaker",
    "pools[].circuit_breaker.max_connections",
    "pools[].circuit_breaker.max_pending_requests",
    "pools[].circuit_breaker.max_requests",
    "pools[].outlier_detection",
    "pools[].outlier_detection.consecutive_failures",
    "pools[].outlier_detection.ejection_time",
    "pools[].outlier_detection.max_ejection_time",
    "pools[].outlier_detection.interval",
    "pools[].outlier_detection.max_ejection_percent",
    "pools[].slow_start",
    "pools[].tls",
    "pools[].tls.verify",
    "pools[].tls.ca_file",
    "pools[].tls.server_name",
    "pools[].tls.cert",
    "pools[].tls.key",
    "pools[].sticky",
    "pools[].sticky.cookie",
    "pools[].sticky.ttl",
    "pools[].sticky.path",
    "pools[].sticky.secure",
    "pools[].sticky.http_only",
    "pools[].drain_timeout",
    "pools[].panic_threshold",
    "pools[].send_proxy",
    "pools[].discovery",
    "pools[].discovery.dns",
    "pools[].discovery.type",
    "pools[].discovery.port",
    "pools[].discovery.resolvers",
    "pools[].discovery.interval",
    "pools[].discovery.timeout",
    "pools[].discovery.max_backends",
    "pools[].discovery.respect_ttl",
    "pools[].backends",
    "pools[].backends[].name",
    "pools[].backends[].address",
    "pools[].backends[].weight",
    "pools[].health_check",
    "pools[].health_check.type",
    "pools[].health_check.interval",
    "pools[].health_check.unhealthy_interval",
    "pools[].health_check.timeout",
    "pools[].health_check.healthy_threshold",
    "pools[].health_check.unhealthy_threshold",
    "pools[].health_check.path",
    "pools[].health_check.method",
    "pools[].health_check.host",
    "pools[].health_check.expect_status",
    "pools[].health_check.expect_body",
    "pools[].health_check.port",
    "pools[].health_check.initial_state",
    NULL,
};

const char *config_show(char *buf, size_t size, const char *s)
{
    size_t i = 0, max = size - 4;   /* room for "..." and the NUL; size >= 4 */

    for (; *s && i < max; s++)
        buf[i++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
    if (*s) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

/* The key below PREFIX that ENTRY names directly, or NULL. */
static const char *config_schema_child(const char *entry, const char *prefix)
{
    size_t plen = strlen(prefix);
    const char *rest = entry;

    if (plen) {
        if (strncmp(entry, prefix, plen) != 0 || entry[plen] != '.')
            return NULL;
        rest = entry + plen + 1;
    }
    return strchr(rest, '.') ? NULL : rest;
}

void config_schema_check_keys(struct config_diag *d, const struct config_node *map,
                              const char *prefix, const char *where)
{
    char shown[96];

    for (size_t i = 0; i < map->n; i++) {
        const struct config_node *k = map->pairs[i].key;
        bool known = false;
        char *list = NULL;
        size_t len = 0;
        FILE *f;

        if (k->kind != CONFIG_NODE_SCALAR) {
            config_diag_error(d, k->line, k->col, "keys must be plain words, got %s in %s",
                              config_node_kind_name(k), where);
            continue;
        }
        for (const char *const *e = config_known_keys; *e && !known; e++) {
            const char *child = config_schema_child(*e, prefix);
            known = child && k->len == strlen(child) && strcmp(child, k->text) == 0;
        }
        /* Top-level "x-..." keys are free for the user: a place to define
         * YAML anchors that pools and listeners then merge in. */
        if (known || (!*prefix && strncmp(k->text, "x-", 2) == 0))
            continue;

        f = open_memstream(&list, &len);
        if (f) {
            const char *sep = "";
            for (const char *const *e = config_known_keys; *e; e++) {
                const char *child = config_schema_child(*e, prefix);
                if (child) {
                    fprintf(f, "%s%s", sep, child);
                    sep = ", ";
                }
            }
            fclose(f);
        }
        config_diag_error(d, k->line, k->col, "unknown key '%s' %s%s; expected one of: %s",
                          config_show(shown, sizeof(shown), k->text), *prefix ? "in " : "at ",
                          where, list ? list : "?");
        free(list);
    }
}

const char *config_where(char *buf, size_t size, const char *owner, const char *path)
{
    const char *o = owner ? owner : "", *p = path ? path : "";

    snprintf(buf, size, "%s%s%s%s", o, *o ? ": " : "", p, *p ? ": " : "");
    return buf;
}

static int config_want_kind(struct config_diag *d, const char *owner, const char *path,
                            const struct config_node *n, enum config_node_kind kind,
                            const char *what)
{
    char where[256];

    if (n->kind == kind)
        return 0;
    config_diag_error(d, n->line, n->col, "%sexpected %s, got %s",
                      config_where(where, sizeof(where), owner, path), what,
                      config_node_kind_name(n));
    return -1;
}

int config_want_map(struct config_diag *d, const char *owner, const char *path,
                    const struct config_node *n)
{
    return config_want_kind(d, owner, path, n, CONFIG_NODE_MAP, "a mapping");
}

int config_want_seq(struct config_diag *d, const char *owner, const char *path,
                    const struct config_node *n)
{
    return config_want_kind(d, owner, path, n, CONFIG_NODE_SEQ, "a list");
}

int config_want_string(struct config_diag *d, const char *owner, const char *path,
                       const struct config_node *n, const char **out)
{
    char where[256];

    if (config_want_kind(d, owner, path, n, CONFIG_NODE_SCALAR, "a string") < 0)
        return -1;
    config_where(where, sizeof(where), owner, path);
    if (n->len == 0) {
        config_diag_error(d, n->line, n->col, "%smust not be empty", where);
        return -1;
    }
    if (strlen(n->text) != n->len) {
        config_diag_error(d, n->line, n->col, "%smust not contain a NUL character", where);
        return -1;
    }
    *out = n->text;
    return 0;
}

int config_want_block(struct config_diag *d, const char *owner, const char *prefix,
                      const char *name, const struct config_node *map)
{
    char keys[128], where[320];

    if (config_want_map(d, owner, name, map) < 0)
        return -1;
    snprintf(keys, sizeof(keys), "%s.%s", prefix, name);
    snprintf(where, sizeof(where), "%s of %s", name, owner);
    config_schema_check_keys(d, map, keys, where);
    return 0;
}

bool config_is_token(const char *s)
{
    size_t len = strlen(s);

    return len > 0 && len <= 128 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                     "!#$%&'*+-.^_`|~") == len;
}

int config_want_bool(struct config_diag *d, const char *owner, const char *path,
                     const struct config_node *n, bool *out)
{
    char where[256];

    if (config_want_kind(d, owner, path, n, CONFIG_NODE_SCALAR, "true or false") < 0)
        return -1;
    if (n->plain && strcmp(n->text, "true") == 0) {
        *out = true;
        return 0;
    }
    if (n->plain && strcmp(n->text, "false") == 0) {
        *out = false;
        return 0;
    }
    config_where(where, sizeof(where), owner, path);
    config_diag_error(d, n->line, n->col, "%smust be true or false", where);
    return -1;
}

/* Deadlines are now + a duration in 64-bit milliseconds, and some durations
 * are multiplied (backoff, ejection time): one near 2^64 ms would wrap into
 * the past and time out at once. Ten years is past any real timeout or
 * cookie lifetime. */
#define CONFIG_MAX_DURATION_MS ((uint64_t)87600 * 3600000)

int config_want_duration(struct config_diag *d, const char *owner, const char *path,
                         const struct config_node *n, uint64_t *ms)
{
    char where[256], shown[96];
    const char *s;
    uint64_t v;

    if (config_want_string(d, owner, path, n, &s) < 0)
        return -1;
    if (config_parse_duration(s, &v) < 0) {
        config_diag_error(d, n->line, n->col,
                          "%sbad duration '%s': use a number followed by ms, s, m or h",
                          config_where(where, sizeof(where), owner, path),
                          config_show(shown, sizeof(shown), s));
        return -1;
    }
    if (v > CONFIG_MAX_DURATION_MS) {
        config_diag_error(d, n->line, n->col, "%sduration '%s' is too long; at most %" PRIu64
                          "h (10 years)", config_where(where, sizeof(where), owner, path),
                          config_show(shown, sizeof(shown), s), CONFIG_MAX_DURATION_MS / 3600000);
        return -1;
    }
    *ms = v;
    return 0;
}

int config_want_uint(struct config_diag *d, const char *owner, const char *path,
                     const struct config_node *n, uint64_t min, uint64_t max, uint64_t *out)
{
    char where[256], shown[96];
    const char *s;
    size_t digits;
    uint64_t v;

    if (config_want_string(d, owner, path, n, &s) < 0)
        return -1;
    /* 18 digits always fit in 64 bits, and every limit we use is far below. */
    digits = strspn(s, "0123456789");
    if (digits > 0 && digits <= 18 && s[digits] == '\0') {
        v = strtoull(s, NULL, 10);
        if (v >= min && v <= max) {
            *out = v;
            return 0;
        }
    }
    config_diag_error(d, n->line, n->col,
                      "%sexpected a whole number from %" PRIu64 " to %" PRIu64 ", got '%s'",
                      config_where(where, sizeof(where), owner, path), min, max,
                      config_show(shown, sizeof(shown), s));
    return -1;
}

void config_read_u32(struct config_diag *d, const char *owner, const struct config_node *map,
                     const char *key, const char *path, uint64_t min, uint64_t max,
                     uint32_t *out)
{
    const struct config_node *n = config_map_get(map, key);
    uint64_t v;

    if (n && config_want_uint(d, owner, path, n, min, max, &v) == 0)
        *out = (uint32_t)v;
}

static void config_word_list(char *buf, size_t size, const char *const *names)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; names[i] && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", names[i]);
}

int config_want_enum(struct config_diag *d, const char *owner, const char *path,
                     const struct config_node *n, const char *const *names,
                     const char *const *later, int *out)
{
    char prefix[160], list[160], shown[96];
    const char *s;

    if (config_want_string(d, owner, path, n, &s) < 0)
        return -1;
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], s) == 0) {
            *out = i;
            return 0;
        }
    }
    config_word_list(list, sizeof(list), names);
    config_where(prefix, sizeof(prefix), owner, NULL);
    config_show(shown, sizeof(shown), s);
    for (int i = 0; later && later[i]; i++) {
        if (strcmp(later[i], s) == 0) {
            config_diag_error(d, n->line, n->col,
                              "%s%s '%s' is not supported yet; expected one of: %s",
                              prefix, path, shown, list);
            return -1;
        }
    }
    config_diag_error(d, n->line, n->col, "%sunknown %s '%s'; expected one of: %s",
                      prefix, path, shown, list);
    return -1;
}

int config_want_timeout(struct config_diag *d, const char *owner, const char *path,
                        const struct config_node *n, uint64_t *ms)
{
    char where[256];

    if (config_want_duration(d, owner, path, n, ms) < 0)
        return -1;
    if (*ms > 0)
        return 0;
    config_diag_error(d, n->line, n->col, "%smust be longer than 0",
                      config_where(where, sizeof(where), owner, path));
    return -1;
}

int config_want_name(struct config_diag *d, const char *owner, const char *path,
                     const struct config_node *n, const char **out)
{
    char where[256], shown[96];
    const char *s;
    size_t len;

    if (config_want_string(d, owner, path, n, &s) < 0)
        return -1;
    len = strlen(s);
    if (len <= 128 && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789._-:[]") == len) {
        *out = s;
        return 0;
    }
    config_diag_error(d, n->line, n->col,
                      "%sbad name '%s': use up to 128 letters, digits and . _ - : [ ]",
                      config_where(where, sizeof(where), owner, path),
                      config_show(shown, sizeof(shown), s));
    return -1;
}

int config_regular_file(const char *file, uint64_t max)
{
    struct stat st;

    if (stat(file, &st) < 0)
        return -errno;
    return !S_ISREG(st.st_mode) || (max && (uint64_t)st.st_size > max);
}

int config_want_regular_file(struct config_diag *d, const char *owner, const char *path,
                             const struct config_node *n, const char *file, const char *what,
                             uint64_t max)
{
    char where[256];
    int rc = config_regular_file(file, max);

    config_where(where, sizeof(where), owner, path);
    if (rc < 0)
        config_diag_error(d, n->line, n->col, "%scannot read '%s': %s", where, file,
                          strerror(-rc));
    else if (rc > 0)
        config_diag_error(d, n->line, n->col, "%s'%s' is not %s", where, file, what);
    return rc ? -1 : 0;
}

void config_missing(struct config_diag *d, const char *owner, const struct config_node *map,
                    const char *key)
{
    char where[256];

    config_diag_error(d, map->line, map->col, "%smissing required key '%s'",
                      config_where(where, sizeof(where), owner, NULL), key);
}

char *config_strdup(struct config_diag *d, const char *s)
{
    char *c = strdup(s);

    if (!c)
        config_diag_error(d, 0, 0, "out of memory");
    return c;
}

void config_pos_set(struct conf_pos *pos, const struct config *cfg, const struct config_node *n)
{
    pos->file = cfg->file;
    pos->line = n->line;
    pos->col = n->col;
}

static int config_dup_cmp(const void *a, const void *b)
{
    const struct config_dup *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

void config_find_dups(struct config_dup *items, size_t n)
{
    if (n == 0)
        return;
    qsort(items, n, sizeof(*items), config_dup_cmp);
    for (size_t i = 0, run = 0; i < n; i++) {
        if (i > 0 && strcmp(items[i].key, items[run].key) == 0) {
            items[i].first = items[run].index;
        } else {
            run = i;
            items[i].first = CONFIG_NO_DUP;
        }
    }
}
