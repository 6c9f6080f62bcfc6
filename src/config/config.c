/* Loading a config: read the file, build the YAML tree, read the top level
 * (workers, drain_timeout, log) and hand pools and listeners to their own
 * files; then either return the finished struct or print every error. */
#include "config/config.h"
#include "config/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A config this big is a wrong path, not a config. */
#define CONFIG_MAX_FILE (16u << 20)

static const char *const config_balance_names[] = {
    "p2c", "round_robin", "least_conn", "random", "ewma", "ring_hash", "maglev", "ip_hash", NULL,
};

const char *config_balance_name(enum balance_kind b)
{
    if ((unsigned)b < sizeof(config_balance_names) / sizeof(config_balance_names[0]) - 1)
        return config_balance_names[b];
    return "?";
}

static void config_read_workers(struct config_diag *d, struct config *cfg,
                                const struct config_node *n)
{
    char shown[96];
    const char *s;
    size_t digits;

    if (config_want_string(d, NULL, "workers", n, &s) < 0)
        return;
    if (strcmp(s, "auto") == 0) {
        cfg->workers = 0;
        return;
    }
    digits = strspn(s, "0123456789");
    if (digits > 0 && digits <= 4 && s[digits] == '\0') {
        unsigned long v = strtoul(s, NULL, 10);
        if (v >= 1 && v <= 1024) {
            cfg->workers = (uint32_t)v;
            return;
        }
    }
    config_diag_error(d, n->line, n->col,
                      "workers: expected auto or a whole number from 1 to 1024, got '%s'",
                      config_show(shown, sizeof(shown), s));
}

static void config_read_log(struct config_diag *d, struct config *cfg,
                            const struct config_node *map)
{
    static const char *const levels[] = { "error", "warn", "info", "debug", NULL };
    static const char *const formats[] = { "combined", "json", NULL };
    const struct config_node *n;
    int v;

    if (config_want_map(d, NULL, "log", map) < 0)
        return;
    config_schema_check_keys(d, map, "log", "log");

    if ((n = config_map_get(map, "level")) &&
        config_want_enum(d, NULL, "log.level", n, levels, NULL, &v) == 0)
        cfg->log_level = (enum log_level)v;
    if ((n = config_map_get(map, "format")) &&
        config_want_enum(d, NULL, "log.format", n, formats, NULL, &v) == 0)
        cfg->access_format = (enum access_format)v;
    if ((n = config_map_get(map, "access"))) {
        char shown[96];
        const char *s;

        if (config_want_string(d, NULL, "log.access", n, &s) < 0)
            return;
        if (strcmp(s, "off") == 0) {
            free(cfg->access_log);
            cfg->access_log = NULL;
        } else if (strcmp(s, "stdout") == 0 || s[0] == '/') {
            /* A relative path is refused: it would depend on the directory
             * sluice was started from, and "stdot" would silently be a file. */
            free(cfg->access_log);
            cfg->access_log = config_strdup(d, s);
        } else {
            config_diag_error(d, n->line, n->col,
                              "log.access: expected stdout, off or an absolute path, got '%s'",
                              config_show(shown, sizeof(shown), s));
        }
    }
}

/* A required, non-empty list at the top level. Returns it or NULL. */
static const struct config_node *config_top_list(struct config_diag *d,
                                                 const struct config_node *root,
                                                 const char *key, const char *what)
{
    const struct config_node *n = config_map_get(root, key);

    if (!n) {
        config_missing(d, NULL, root, key);
        return NULL;
    }
    if (config_want_seq(d, NULL, key, n) < 0)
        return NULL;
    if (n->n == 0) {
        config_diag_error(d, n->line, n->col, "%s: must list at least one %s", key, what);
        return NULL;
    }
    return n;
}

static void config_read_top(struct config_diag *d, struct config *cfg,
                            const struct config_node *root)
{
    const struct config_node *n, *pools, *listeners;

    if (config_want_map(d, NULL, "the top level", root) < 0)
        return;
    config_schema_check_keys(d, root, "", "the top level");

    if ((n = config_map_get(root, "workers")))
        config_read_workers(d, cfg, n);
    if ((n = config_map_get(root, "drain_timeout")))
        config_want_duration(d, NULL, "drain_timeout", n, &cfg->drain_timeout_ms);
    if ((n = config_map_get(root, "shutdown_delay")))
        config_want_duration(d, NULL, "shutdown_delay", n, &cfg->shutdown_delay_ms);
    if ((n = config_map_get(root, "log")))
        config_read_log(d, cfg, n);
    if ((n = config_map_get(root, "admin")))
        config_read_admin(d, cfg, n);
    /* Before the listeners: their rate limits may be shared with the peers. */
    if ((n = config_map_get(root, "peers")))
        config_read_peers(d, cfg, n);

    listeners = config_top_list(d, root, "listeners", "listener");
    pools = config_top_list(d, root, "pools", "pool");
    if (pools)
        config_read_pools(d, cfg, pools);
    if (listeners)
        config_read_listeners(d, cfg, listeners);
}

static struct config *config_new(const char *name)
{
    struct config *cfg = calloc(1, sizeof(*cfg));

    if (!cfg)
        return NULL;
    cfg->file = strdup(name);
    cfg->access_log = strdup("stdout");
    if (!cfg->file || !cfg->access_log) {
        config_free(cfg);
        return NULL;
    }
    cfg->workers = 0;
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->access_format = ACCESS_FORMAT_COMBINED;
    cfg->drain_timeout_ms = 30000;
    return cfg;
}

int config_load_string(const char *name, const char *buf, size_t len, FILE *diag,
                       struct config **out)
{
    struct config_diag d = { .file = name };
    struct config_yaml y;
    struct config *cfg;

    *out = NULL;
    cfg = config_new(name);
    if (!cfg) {
        if (diag)
            fprintf(diag, "%s: error: out of memory\n", name);
        return -1;
    }
    if (config_yaml_parse(buf, len, &d, &y) == 0) {
        if (!y.root || y.root->kind == CONFIG_NODE_NULL)
            config_diag_error(&d, 1, 1, "the config is empty; it needs at least "
                              "'listeners' and 'pools'");
        else
            config_read_top(&d, cfg, y.root);
    }
    config_yaml_free(&y);
    config_diag_flush(&d, diag);
    if (d.errors) {
        config_free(cfg);
        return -1;
    }
    *out = cfg;
    return 0;
}

/* Reads all of fd; a pipe or /dev/stdin works as well as a file. */
static int config_read_fd(int fd, char **bufp, size_t *lenp)
{
    size_t len = 0, cap = 0;
    char *buf = NULL;

    for (;;) {
        ssize_t r;

        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16384;
            char *nb;

            if (cap >= CONFIG_MAX_FILE) {
                free(buf);
                return -EFBIG;
            }
            nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                return -ENOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int err = errno;
            free(buf);
            return -err;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    *bufp = buf;
    *lenp = len;
    return 0;
}

int config_load(const char *path, FILE *diag, struct config **out)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd, rc;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (diag)
            fprintf(diag, "%s: error: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
        rc = -EISDIR;
    else
        rc = config_read_fd(fd, &buf, &len);
    close(fd);
    if (rc == -EFBIG) {
        if (diag)
            fprintf(diag, "%s: error: cannot read: larger than %u MiB; is this the config?\n",
                    path, CONFIG_MAX_FILE >> 20);
        return -1;
    }
    if (rc < 0) {
        if (diag)
            fprintf(diag, "%s: error: cannot read: %s\n", path, strerror(-rc));
        return -1;
    }
    rc = config_load_string(path, buf ? buf : "", len, diag, out);
    free(buf);
    return rc;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        struct conf_listener *l = &cfg->listeners[i];
        free(l->name);
        free(l->bind_text);
        free(l->pool_name);
        config_free_routes(l);
        config_free_dns_records(l);
        config_free_rate_limit(l->rate_limit);
        config_free_tls(l->tls);
        config_free_auth(l->auth);
    }
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->npools; i++) {
        struct conf_pool *p = &cfg->pools[i];
        for (size_t j = 0; j < p->nbackends; j++) {
            free(p->backends[j].name);
            free(p->backends[j].address_text);
        }
        free(p->backends);
        free(p->hash_key_name);
        free(p->name);
        config_free_upstream_tls(p->tls);
        free(p->sticky.cookie);
        free(p->sticky.path);
        config_free_health(p);
        config_free_discovery(p);
    }
    free(cfg->pools);
    config_free_admin(cfg);
    config_free_peers(cfg);
    free(cfg->access_log);
    free(cfg->file);
    free(cfg);
}
