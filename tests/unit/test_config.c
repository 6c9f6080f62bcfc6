/* Config loader: a full config read back field by field, defaults, every
 * kind of error at its exact LINE:COL, the scalar parsers, and the bind check. */
#include "config/config.h"
#include "net/listener.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <glob.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes text to a fresh temp file; the path goes into path[32]. */
static void write_temp(char path[32], const char *text)
{
    size_t len = strlen(text);
    int fd;

    strcpy(path, "/tmp/sluice-cfg-XXXXXX");
    fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, text, len) == (ssize_t)len);
    close(fd);
}

/* Loads text from a temp file. Returns config_load's result; the diagnostics
 * land in *out (malloc'd) and the file name in path. */
static int load_text(const char *text, char path[32], char **out, struct config **cfg)
{
    size_t len = 0;
    FILE *diag = open_memstream(out, &len);
    int rc;

    write_temp(path, text);
    rc = config_load(path, diag, cfg);
    fclose(diag);
    unlink(path);
    return rc;
}

/* Whether OUT has a line "PATH:WHERE: error: ...NEEDLE...". */
static int has_error(const char *out, const char *path, const char *where, const char *needle)
{
    char prefix[128];
    const char *line = out;

    snprintf(prefix, sizeof(prefix), "%s:%s: error: ", path, where);
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (n >= strlen(prefix) && strncmp(line, prefix, strlen(prefix)) == 0) {
            const char *hit = strstr(line, needle);
            if (hit && hit + strlen(needle) <= line + n)
                return 1;
        }
        line = end ? end + 1 : NULL;
    }
    return 0;
}

/* Loads a config that must load without a word; NULL (and failed checks)
 * when it does not. The temp file's name goes to path when given. */
static struct config *load_ok(const char *text, char *path)
{
    struct config *cfg = NULL;
    char own[32], *out = NULL;
    int rc = load_text(text, path ? path : own, &out, &cfg);

    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(out, "");
    free(out);
    return cfg;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static const char full_config[] =
    "workers: 4\n"                                            /* 1 */
    "drain_timeout: 45s\n"
    "log:\n"
    "  level: debug\n"
    "  access: /var/log/sluice/access.log\n"                 /* 5 */
    "  format: json\n"
    "x-check: &check\n"
    "  type: tcp\n"
    "  interval: 3s\n"
    "listeners:\n"                                            /* 10 */
    "  - name: web\n"
    "    bind: 127.0.0.1:8080\n"
    "    mode: tcp\n"
    "    proxy_protocol: accept\n"
    "    pool: app\n"                                         /* 15 */
    "    timeouts: {client_idle: 1m}\n"
    "  - name: dns\n"
    "    bind: \"[::1]:5353\"\n"
    "    mode: udp\n"
    "    pool: dns\n"                                         /* 20 */
    "    timeouts: {udp_idle: 45s}\n"
    "    max_flows: 1000\n"
    "pools:\n"
    "  - name: app\n"
    "    balance: least_conn\n"                               /* 25 */
    "    timeouts: {connect: 250ms}\n"
    "    send_proxy: v2\n"
    "    backends:\n"
    "      - {address: 127.0.0.1:9001}\n"
    "      - {name: b2, address: 127.0.0.1:9002, weight: 3}\n" /* 30 */
    "    health_check:\n"
    "      <<: *check\n"
    "      timeout: 2s\n"
    "      healthy_threshold: 3\n"
    "      unhealthy_threshold: 5\n"                          /* 35 */
    "  - name: dns\n"
    "    balance: round_robin\n"
    "    timeouts: {connect: 3s}\n"
    "    backends:\n"
    "      - address: \"[::1]:53\"\n"                         /* 40 */
    "        name: ns1\n";

/* addr_format_host formats IPv4 by hand (no inet_ntop): every octet width,
 * and a buffer too small gets an empty string, not a cut address. */
static void test_addr_format_host(void)
{
    static const char *cases[] = {"0.0.0.0", "255.255.255.255", "10.0.1.20", "127.0.0.1",
                                  "1.22.133.4", "100.9.99.200", "[::1]", "[2001:db8::7]"};
    char buf[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct addr a;
        char text[64], want[64];
        const char *why = NULL;
        size_t n = strlen(cases[i]);

        snprintf(text, sizeof(text), "%s:80", cases[i]);
        CHECK_EQ_INT(addr_parse(text, &a, &why), 0);
        snprintf(want, sizeof(want), "%.*s", cases[i][0] == '[' ? (int)n - 2 : (int)n,
                 cases[i] + (cases[i][0] == '['));
        CHECK_EQ_STR(addr_format_host(&a, buf, sizeof(buf)), want);
    }
    {
        struct addr a;
        const char *why = NULL;
        CHECK_EQ_INT(addr_parse("255.255.255.255:1", &a, &why), 0);
        CHECK_EQ_STR(addr_format_host(&a, buf, 16), "255.255.255.255");
        CHECK_EQ_STR(addr_format_host(&a, buf, 15), "");
    }
}

static void test_full(void)
{
    char path[32];
    struct config *cfg = load_ok(full_config, path);

    if (!cfg)
        return;
    CHECK_EQ_STR(cfg->file, path);
    CHECK_EQ_INT(cfg->workers, 4);
    CHECK_EQ_INT(cfg->drain_timeout_ms, 45000);
    CHECK_EQ_INT(cfg->log_level, LOG_LEVEL_DEBUG);
    CHECK_EQ_STR(cfg->access_log, "/var/log/sluice/access.log");
    CHECK_EQ_INT(cfg->access_format, ACCESS_FORMAT_JSON);

    CHECK_EQ_INT(cfg->nlisteners, 2);
    if (cfg->nlisteners == 2) {
        const struct conf_listener *web = &cfg->listeners[0], *dns = &cfg->listeners[1];
        char buf[ADDR_TEXT_MAX];

        CHECK_EQ_STR(web->name, "web");
        CHECK_EQ_STR(web->bind_text, "127.0.0.1:8080");
        CHECK_EQ_STR(addr_format(&web->bind, buf, sizeof(buf)), "127.0.0.1:8080");
        CHECK_EQ_INT(web->bind_pos.line, 12);
        CHECK_EQ_INT(web->bind_pos.col, 11);
        CHECK(web->bind_pos.file == cfg->file);
        CHECK_EQ_INT(web->pos.line, 11);
        CHECK_EQ_INT(web->pos.col, 5);
        CHECK_EQ_INT(web->mode, LISTENER_TCP);
        CHECK(web->proxy_protocol_accept);
        CHECK_EQ_STR(web->pool_name, "app");
        CHECK(web->pool == &cfg->pools[0]);
        CHECK_EQ_INT(web->client_idle_ms, 60000);
        CHECK_EQ_INT(web->udp_idle_ms, 30000);      /* default, unused for tcp */

        CHECK_EQ_STR(dns->name, "dns");
        CHECK_EQ_STR(addr_format(&dns->bind, buf, sizeof(buf)), "[::1]:5353");
        CHECK_EQ_INT(dns->mode, LISTENER_UDP);
        CHECK(!dns->proxy_protocol_accept);
        CHECK(dns->pool == &cfg->pools[1]);
        CHECK_EQ_INT(dns->udp_idle_ms, 45000);
        CHECK_EQ_INT(dns->max_flows, 1000);
    }

    CHECK_EQ_INT(cfg->npools, 2);
    if (cfg->npools == 2) {
        const struct conf_pool *app = &cfg->pools[0], *dns = &cfg->pools[1];

        CHECK_EQ_STR(app->name, "app");
        CHECK_EQ_INT(app->pos.line, 24);
        CHECK_EQ_INT(app->balance, BALANCE_LEAST_CONN);
        CHECK_EQ_STR(config_balance_name(app->balance), "least_conn");
        CHECK_EQ_INT(app->connect_timeout_ms, 250);
        CHECK_EQ_INT(app->send_proxy, PROXY_SEND_V2);
        CHECK_EQ_INT(app->nbackends, 2);
        if (app->nbackends == 2) {
            CHECK_EQ_STR(app->backends[0].name, "127.0.0.1:9001");   /* from the address */
            CHECK_EQ_STR(app->backends[0].address_text, "127.0.0.1:9001");
            CHECK_EQ_INT(addr_port(&app->backends[0].address), 9001);
            CHECK_EQ_INT(app->backends[0].weight, 1);
            CHECK_EQ_INT(app->backends[0].pos.line, 29);
            CHECK_EQ_INT(app->backends[0].pos.col, 9);
            CHECK_EQ_STR(app->backends[1].name, "b2");
            CHECK_EQ_INT(app->backends[1].weight, 3);
        }
        /* type and interval come through the merge key, the rest is local */
        CHECK_EQ_INT(app->health.type, HEALTH_TCP);
        CHECK_EQ_INT(app->health.interval_ms, 3000);
        CHECK_EQ_INT(app->health.unhealthy_interval_ms, 3000); /* follows the merged interval */
        CHECK_EQ_INT(app->health.timeout_ms, 2000);
        CHECK_EQ_INT(app->health.healthy_threshold, 3);
        CHECK_EQ_INT(app->health.unhealthy_threshold, 5);

        CHECK_EQ_STR(dns->name, "dns");
        CHECK_EQ_INT(dns->balance, BALANCE_ROUND_ROBIN);
        CHECK_EQ_INT(dns->send_proxy, PROXY_SEND_NONE);
        CHECK_EQ_INT(dns->connect_timeout_ms, 3000);
        CHECK_EQ_INT(dns->nbackends, 1);
        if (dns->nbackends == 1)
            CHECK_EQ_STR(dns->backends[0].name, "ns1");
        CHECK_EQ_INT(dns->health.type, HEALTH_NONE);
    }
    config_free(cfg);
}

static void test_defaults(void)
{
    static const char text[] =
        "listeners: [{name: l, bind: 127.0.0.1:8080, mode: tcp, pool: p}]\n"
        "pools:\n"
        "  - name: p\n"
        "    backends: [{address: 127.0.0.1:1}]\n"
        "    health_check: {type: tcp}\n";
    struct config *cfg = NULL;
    size_t len = 0;
    char *out = NULL;
    FILE *diag = open_memstream(&out, &len);
    int rc = config_load_string("mem.yaml", text, strlen(text), diag, &cfg);

    fclose(diag);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(out, "");
    free(out);
    if (!cfg)
        return;
    CHECK_EQ_STR(cfg->file, "mem.yaml");
    CHECK_EQ_INT(cfg->workers, 0);
    CHECK_EQ_INT(cfg->drain_timeout_ms, 30000);
    CHECK_EQ_INT(cfg->log_level, LOG_LEVEL_INFO);
    CHECK_EQ_STR(cfg->access_log, "stdout");
    CHECK_EQ_INT(cfg->access_format, ACCESS_FORMAT_COMBINED);
    CHECK_EQ_INT(cfg->listeners[0].client_idle_ms, 600000);
    CHECK_EQ_INT(cfg->listeners[0].udp_idle_ms, 30000);
    CHECK_EQ_INT(cfg->listeners[0].max_flows, 65536);
    CHECK(!cfg->listeners[0].proxy_protocol_accept);
    CHECK(!cfg->listeners[0].freebind);
    CHECK_EQ_INT(cfg->pools[0].balance, BALANCE_P2C);
    CHECK_EQ_STR(config_balance_name(cfg->pools[0].balance), "p2c");
    CHECK_EQ_INT(cfg->pools[0].connect_timeout_ms, 2000);
    CHECK_EQ_INT(cfg->pools[0].send_proxy, PROXY_SEND_NONE);
    CHECK_EQ_INT(cfg->pools[0].health.interval_ms, 2000);
    CHECK_EQ_INT(cfg->pools[0].health.unhealthy_interval_ms, 2000);
    CHECK_EQ_INT(cfg->pools[0].health.timeout_ms, 1000);
    CHECK_EQ_INT(cfg->pools[0].health.healthy_threshold, 2);
    CHECK_EQ_INT(cfg->pools[0].health.unhealthy_threshold, 2);
    config_free(cfg);

    /* workers: auto, access: off, a buffer that is not NUL-terminated */
    {
        static const char t2[] =
            "workers: auto\nlog: {access: off}\n"
            "listeners: [{name: l, bind: 127.0.0.1:8080, mode: udp, pool: p}]\n"
            "pools: [{name: p, backends: [{address: 127.0.0.1:1}]}]\nXXXX";
        cfg = NULL;
        rc = config_load_string("t2", t2, sizeof(t2) - 1 - 4, NULL, &cfg);
        CHECK_EQ_INT(rc, 0);
        if (cfg) {
            CHECK_EQ_INT(cfg->workers, 0);
            CHECK(cfg->access_log == NULL);
            CHECK_EQ_INT(cfg->pools[0].health.type, HEALTH_NONE);
            config_free(cfg);
        }
    }
    CHECK_EQ_STR(config_balance_name(BALANCE_ROUND_ROBIN), "round_robin");

    /* a NUL byte in the text */
    {
        static const char t3[] = "workers: 2\nlog: {level: in\0fo}\n";
        char *o = NULL;
        size_t olen = 0;
        FILE *f = open_memstream(&o, &olen);

        cfg = NULL;
        rc = config_load_string("t3", t3, sizeof(t3) - 1, f, &cfg);
        fclose(f);
        CHECK_EQ_INT(rc, -1);
        CHECK(cfg == NULL);
        CHECK_EQ_STR(o, "t3:2:16: error: the file contains a NUL byte; a config is text\n");
        free(o);
    }
}

/* A valid listener and pool, to build broken cases around. One line each. */
#define LST "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app}]\n"
#define POOL "pools: [{name: app, backends: [{address: 127.0.0.1:9001}]}]\n"

struct bad_case {
    const char *text;
    const char *where;     /* "LINE:COL" */
    const char *msg;       /* a substring of the message */
};

static const struct bad_case bad_cases[] = {
    /* unknown keys: the position is the key */
    { "bogus: 1\n" LST POOL, "1:1", "unknown key 'bogus' at the top level; expected one of: "
      "workers, drain_timeout, shutdown_delay, log, admin, peers, listeners, pools" },
    { LST POOL "log: {level: info, colour: yes}\n", "3:20", "unknown key 'colour' in log" },
    { "listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n    mode: tcp\n    pool: app\n"
      "    mtls: {}\n" POOL, "6:5", "unknown key 'mtls' in listener 'web'; expected one of: "
      "name, bind, freebind, mode, http2, proxy_protocol, pool, timeouts, max_flows" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app,\n"
      "              timeouts: {client_idel: 5s}}]\n" POOL,
      "2:26", "unknown key 'client_idel' in timeouts of listener 'web'" },
    { LST "pools:\n  - name: app\n    retries: 3\n    backends: [{address: 127.0.0.1:1}]\n",
      "4:14", "pool 'app': retries: expected a mapping" },
    { LST "pools:\n  - name: app\n    retries: {retry_on: [teapot]}\n    backends: [{address: 127.0.0.1:1}]\n",
      "4:26", "'teapot' is not one of connect_failure, reset, timeout" },
    { LST "pools:\n  - name: app\n    circuit_breaker: {max_requests: 0}\n    backends: [{address: 127.0.0.1:1}]\n",
      "4:37", "circuit_breaker.max_requests" },
    { LST "pools:\n  - name: app\n    retirees: 3\n    backends: [{address: 127.0.0.1:1}]\n",
      "4:5", "unknown key 'retirees' in pool 'app'" },
    { LST "pools:\n  - name: app\n    timeouts: {connect: 1s, read: 1s}\n"
      "    backends: [{address: 127.0.0.1:1}]\n", "4:29", "unknown key 'read' in timeouts of pool 'app'" },
    { LST "pools:\n  - name: app\n    backends:\n      - {address: 127.0.0.1:1, wieght: 2}\n",
      "5:32", "unknown key 'wieght' in backend '127.0.0.1:1' of pool 'app'" },
    { LST "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n"
      "    health_check: {type: tcp, pathh: /health}\n",
      "5:31", "unknown key 'pathh' in health_check of pool 'app'" },
    { LST "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n"
      "    health_check: {type: tcp, path: /health}\n",
      "5:37", "health_check.path only applies to type http" },
    { LST "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n"
      "    health_check: {type: http, expect_status: 200-99}\n",
      "5:47", "expect_status: use a status or a range" },

    /* wrong types: the position is the value */
    { "listeners: {web: 1}\n" POOL, "1:12", "listeners: expected a list, got a mapping" },
    { LST "pools: nope\n", "2:8", "pools: expected a list, got a string" },
    { "- a\n- b\n", "1:1", "expected a mapping, got a list" },
    { LST POOL "log: verbose\n", "3:6", "log: expected a mapping, got a string" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app, timeouts: 5s}]\n"
      POOL, "1:79", "listener 'web': timeouts: expected a mapping, got a string" },
    { "listeners: [{name: web, bind: [1, 2], mode: tcp, pool: app}]\n" POOL,
      "1:31", "listener 'web': bind: expected a string, got a list" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app}, oops]\n" POOL,
      "1:70", "listener #2: expected a mapping, got a string" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool:}]\n" POOL,
      "1:58", "listener 'web': pool: expected a string, got nothing" },

    /* bad scalars */
    { "drain_timeout: 5x\n" LST POOL, "1:16",
      "drain_timeout: bad duration '5x': use a number followed by ms, s, m or h" },
    { "drain_timeout: 30\n" LST POOL, "1:16", "bad duration '30'" },
    /* fits in 64 bits, but now + it would wrap a deadline into the past */
    { "drain_timeout: 18446744073709551615ms\n" LST POOL, "1:16",
      "drain_timeout: duration '18446744073709551615ms' is too long; at most 87600h" },
    { "drain_timeout: 87601h\n" LST POOL, "1:16", "is too long" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app,\n"
      "              timeouts: {client_idle: -1s}}]\n" POOL, "2:39",
      "listener 'web': timeouts.client_idle: bad duration '-1s'" },
    { LST "pools:\n  - name: app\n    timeouts: {connect: 0ms}\n"
      "    backends: [{address: 127.0.0.1:1}]\n", "4:25", "timeouts.connect: must be longer than 0" },
    { LST "pools:\n  - name: app\n    backends:\n      - {address: 127.0.0.1:1, weight: 0}\n",
      "5:40", "weight: expected a whole number from 1 to 256, got '0'" },
    { LST "pools:\n  - name: app\n    backends:\n      - {address: 127.0.0.1:1, weight: 257}\n",
      "5:40", "got '257'" },
    { LST "pools:\n  - name: app\n    backends:\n      - {address: 127.0.0.1:1, weight: 1.5}\n",
      "5:40", "got '1.5'" },
    { "workers: 0\n" LST POOL, "1:10", "workers: expected auto or a whole number from 1 to 1024" },
    { "workers: many\n" LST POOL, "1:10", "got 'many'" },
    { LST POOL "log: {level: loud}\n", "3:14", "unknown log.level 'loud'; expected one of: "
      "error, warn, info, debug" },
    { LST POOL "log: {access: access.log}\n", "3:15", "expected stdout, off or an absolute path" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: https, pool: app}]\n" POOL,
      "1:53", "mode: 'https' is not a mode; use mode: http with a tls block" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path_regex: '(unclosed'}, pool: app}]}]\n" POOL,
      "2:33", "match.path_regex: missing closing parenthesis" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}, pool: nope}]}]\n" POOL,
      "2:38", "pool 'nope' is not defined" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}}]}]\n" POOL,
      "2:12", "give one action" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}, pool: app, respond: {status: 200}}]}]\n" POOL,
      "2:12", "give only one action" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: a}, pool: app}]}]\n" POOL,
      "2:27", "must start with '/'" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a, path_prefix: /b}, pool: app}]}]\n" POOL,
      "2:44", "give only one of path" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {colour: red}, pool: app}]}]\n" POOL,
      "2:21", "unknown key 'colour'" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}, pool: app, set_headers: {\"x-a\": \"b\\r\\nevil: 1\"}}]}]\n" POOL,
      "2:64", "control characters" },
    /* the head sluice writes must say what the bytes after it are */
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}, pool: app, set_headers: {x-a: b, Content-Length: '0'}}]}]\n"
      POOL, "2:65", "set_headers: sluice writes 'Content-Length' itself" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}, pool: app, remove_response_headers: [transfer-encoding]}]}]\n"
      POOL, "2:69", "remove_response_headers: sluice writes 'transfer-encoding' itself" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}, pool: app, rewrite_prefix: /b}]}]\n" POOL,
      "2:59", "rewrite_prefix needs match.path_prefix" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: udp, pool: app,\n"
      "  max_connections: 10}]\n" POOL,
      "2:3", "max_connections only applies to mode tcp and http" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app,\n"
      "  max_connections: 0}]\n" POOL,
      "2:20", "max_connections: expected a whole number from 1 to 10000000" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}, redirect: {scheme: ftp}}]}]\n" POOL,
      "2:51", "redirect.scheme: use http or https" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}, redirect: {host: \"a.example:81\"}}]}]\n" POOL,
      "2:49", "is not a host name or address" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}, redirect: {host: \"a b\"}}]}]\n" POOL,
      "2:49", "is not a host name or address" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}, redirect: {location: /b, port: 81}}]}]\n" POOL,
      "2:53", "give location, or any of scheme, host and port, not both" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}, redirect: {status: 301}}]}]\n" POOL,
      "2:42", "give location, or any of scheme, host and port" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  trusted_proxies: [10.0.0.0/33]}]\n" POOL,
      "2:21", "bad prefix length" },
    /* a split entry with a bad weight: its pool name was kept, never freed */
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {path: /a}, split: [{pool: app, weight: x}]}]}]\n" POOL,
      "2:60", "split[].weight: expected a whole number" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  trusted_proxies: [10.0.0.0/+8]}]\n" POOL,
      "2:21", "bad prefix length in '10.0.0.0/+8'" },
    /* cut at 63 bytes it read as 192.168.0.0/0 */
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  trusted_proxies: ['192.168.0.0/00000000000000000000000000000000000000000000000000000016']}]\n"
      POOL, "2:21", "is not an address or ADDRESS/BITS block" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "  routes: [{match: {source: [10.0.0.0/8, 'office']}, pool: app}]}]\n" POOL,
      "2:42", "match.source: 'office' is not an address or ADDRESS/BITS block" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app,\n"
      "  routes: [{match: {path: /a}, pool: app}]}]\n" POOL,
      "2:12", "a tcp listener's routes match only on host (the TLS server name) and source" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: udp, pool: app,\n"
      "  routes: [{match: {host: a.test}, pool: app}]}]\n" POOL,
      "2:3", "routes only applies to mode http and tcp" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: sctp, pool: app}]\n" POOL,
      "1:53", "unknown mode 'sctp'; expected one of: tcp, udp" },
    { LST "pools: [{name: app, balance: maglv, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:30", "unknown balance 'maglv'; expected one of: p2c, round_robin, least_conn, random, "
      "ewma, ring_hash, maglev, ip_hash" },
    /* consistent hashing: hash_key and hash_balance_factor */
    { LST "pools: [{name: app, hash_key: path, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:21", "pool 'app': hash_key only applies to balance ring_hash or maglev (balance is p2c)" },
    { LST "pools: [{name: app, balance: ip_hash, hash_key: path, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:39", "hash_key only applies to balance ring_hash or maglev (balance is ip_hash)" },
    { LST "pools: [{name: app, balance: maglev, hash_key: 'header:x y', backends: [{address: 127.0.0.1:1}]}]\n",
      "2:48", "pool 'app': hash_key: bad header name 'x y'" },
    { LST "pools: [{name: app, balance: ring_hash, hash_key: ip, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:51", "unknown hash_key 'ip'; expected one of: source_ip, path, header:NAME, cookie:NAME, query:NAME" },
    { LST "pools: [{name: app, balance: maglev, hash_key: 'query:a=b', backends: [{address: 127.0.0.1:1}]}]\n",
      "2:48", "hash_key: bad query name 'a=b'" },
    { LST "pools: [{name: app, balance: round_robin, hash_balance_factor: 1.5, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:43", "hash_balance_factor only applies to balance ring_hash, maglev or ip_hash (balance is round_robin)" },
    { LST "pools: [{name: app, balance: maglev, hash_balance_factor: 1.0, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:59", "hash_balance_factor: expected a number above 1 and at most 10 (1.25 is typical), got '1.0'" },
    { LST "pools: [{name: app, balance: ip_hash, hash_balance_factor: 10.5, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:60", "got '10.5'" },
    { LST "pools: [{name: app, balance: ring_hash, hash_balance_factor: 1e1, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:62", "got '1e1'" },
    { LST "pools: [{name: app, send_proxy: v3, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:33", "unknown send_proxy 'v3'; expected one of: v1, v2" },
    /* Only tcp listeners send PROXY headers: refused, not ignored, for the
     * pool of an http listener (its default pool or a route's) or a udp one. */
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app}]\n"
      "pools: [{name: app, send_proxy: v2, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:33", "pool 'app': send_proxy only applies to pools of tcp listeners, and the http listener 'web'" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http,\n"
      "  routes: [{match: {path_prefix: /x/}, split: [{pool: a, weight: 1}, {pool: b, weight: 1}]}]}]\n"
      "pools: [{name: a, backends: [{address: 127.0.0.1:1}]},\n"
      "  {name: b, send_proxy: v1, backends: [{address: 127.0.0.1:1}]}]\n",
      "4:25", "pool 'b': send_proxy only applies to pools of tcp listeners" },
    { "listeners: [{name: dns, bind: 127.0.0.1:8080, mode: udp, pool: app}]\n"
      "pools: [{name: app, send_proxy: v1, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:33", "and the udp listener 'dns' uses this pool" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: udp, pool: app, max_flows: 0}]\n"
      POOL, "1:80", "max_flows: expected a whole number from 1 to 10000000" },
    { "listeners: [{name: 'web 1', bind: 127.0.0.1:8080, mode: tcp, pool: app}]\n" POOL,
      "1:20", "bad name 'web 1'" },

    /* addresses */
    { "listeners: [{name: web, bind: 127.0.0.1, mode: tcp, pool: app}]\n" POOL,
      "1:31", "listener 'web': bind: bad address '127.0.0.1': expected host:port" },
    { "listeners: [{name: web, bind: 'localhost:80', mode: tcp, pool: app}]\n" POOL,
      "1:31", "host names are not resolved" },
    { "listeners: [{name: web, bind: 127.0.0.1:0, mode: tcp, pool: app}]\n" POOL,
      "1:31", "port 0 is not allowed" },
    { LST "pools:\n  - name: app\n    backends:\n      - {name: b1, address: 10.0.0.1:99999}\n",
      "5:29", "pool 'app' backend 'b1': address: bad address '10.0.0.1:99999'" },
    { LST "pools:\n  - name: app\n    backends:\n      - {address: '0.0.0.0:80'}\n",
      "5:19", "is a wildcard" },

    /* duplicates: the position is the second one */
    { "listeners:\n  - {name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app}\n"
      "  - {name: web, bind: 127.0.0.1:8081, mode: tcp, pool: app}\n" POOL,
      "3:12", "duplicate listener name 'web' (first at 2:12)" },
    { LST "pools:\n  - {name: app, backends: [{address: 127.0.0.1:1}]}\n"
      "  - {name: app, backends: [{address: 127.0.0.1:2}]}\n",
      "4:12", "duplicate pool name 'app' (first at 3:12)" },
    { LST "pools:\n  - name: app\n    backends:\n      - {name: b1, address: 127.0.0.1:1}\n"
      "      - {name: b1, address: 127.0.0.1:2}\n", "6:16",
      "pool 'app': duplicate backend name 'b1' (first at 5:16)" },
    { LST "pools:\n  - name: app\n    backends:\n      - {address: 127.0.0.1:1}\n"
      "      - {address: 127.0.0.1:1, weight: 2}\n", "6:19",
      "duplicate backend name '127.0.0.1:1' (first at 5:19); a backend without a name is named by its address" },
    { "listeners:\n  - {name: a, bind: 127.0.0.1:8080, mode: udp, pool: app}\n"
      "  - {name: b, bind: 127.0.0.1:8080, mode: udp, pool: app}\n" POOL,
      "3:21", "listener 'b': bind: udp 127.0.0.1:8080 is already used by the listener at 2:5" },
    /* the admin API cannot share its port (sluice would not start) */
    { LST POOL "admin: {listen: 127.0.0.1:8080}\n", "1:31",
      "listener 'web': bind: tcp 127.0.0.1:8080 is already used by admin.listen at 3:17" },
    /* http and tcp are both stream sockets: SO_REUSEPORT would split the port */
    { "listeners:\n  - {name: a, bind: 127.0.0.1:8080, mode: tcp, pool: app}\n"
      "  - {name: b, bind: 127.0.0.1:8080, mode: http, pool: app}\n" POOL,
      "3:21", "listener 'b': bind: http 127.0.0.1:8080 is already used by the listener at 2:5" },
    { LST POOL "log: {level: info, level: debug}\n", "3:20", "duplicate key 'level' (first at 3:7)" },

    /* references and required keys */
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: ap}]\n" POOL,
      "1:64", "listener 'web': pool 'ap' is not defined" },
    { "listeners:\n  - name: web\n    mode: tcp\n    pool: app\n" POOL,
      "2:5", "listener 'web': missing required key 'bind'" },
    { "listeners: [{bind: 127.0.0.1:8080, mode: tcp, pool: app}]\n" POOL,
      "1:13", "listener #1: missing required key 'name'" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, pool: app}]\n" POOL,
      "1:13", "missing required key 'mode'" },
    { POOL, "1:1", "missing required key 'listeners'" },
    { LST, "1:1", "missing required key 'pools'" },
    { "listeners: []\n" POOL, "1:12", "listeners: must list at least one listener" },
    { LST "pools: [{name: app}]\n", "2:9", "pool 'app': missing required key 'backends'" },
    { LST "pools: [{name: app, backends: []}]\n", "2:31", "backends: must list at least one" },
    { LST "pools: [{name: app, backends: [{weight: 2}]}]\n", "2:32",
      "pool 'app' backend #1: missing required key 'address'" },
    { LST "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n"
      "    health_check: {interval: 1s}\n", "5:19", "health_check: missing required key 'type'" },

    /* mode-specific keys: the position is the key */
    { "listeners:\n  - name: dns\n    bind: 127.0.0.1:5353\n    mode: udp\n"
      "    proxy_protocol: accept\n    pool: app\n" POOL,
      "5:5", "listener 'dns': proxy_protocol only applies to mode tcp" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app,\n"
      "              timeouts: {udp_idle: 5s}}]\n" POOL, "2:26",
      "timeouts.udp_idle only applies to mode udp" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app, max_flows: 5}]\n"
      POOL, "1:69", "max_flows only applies to mode udp" },

    /* health check timing */
    { LST "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n"
      "    health_check: {type: tcp, interval: 2s, timeout: 5s}\n",
      "5:54", "health_check.timeout 5s is longer than health_check.interval 2s" },
    { LST "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n"
      "    health_check: {type: tcp, interval: 500ms}\n",
      "5:41", "health_check.interval 500ms is shorter than the default timeout 1s" },
    { LST "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n"
      "    health_check: {type: tcp, unhealthy_threshold: 0}\n",
      "5:52", "unhealthy_threshold: expected a whole number from 1 to 100" },
    { LST "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n"
      "    health_check: {type: tcp, unhealthy_interval: 0s}\n",
      "5:51", "pool 'app': health_check.unhealthy_interval: must be longer than 0" },
    { LST "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n"
      "    health_check: {type: tcp, unhealthy_interval: -1s}\n",
      "5:51", "health_check.unhealthy_interval: bad duration '-1s'" },
    { LST "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n"
      "    health_check: {type: tcp, timeout: 300ms, unhealthy_interval: 200ms}\n",
      "5:67", "health_check.unhealthy_interval 200ms is shorter than health_check.timeout 300ms" },
    { LST "pools:\n  - name: app\n    backends: [{address: 127.0.0.1:1}]\n"
      "    health_check: {type: tcp, unhealthy_interval: 500ms}\n",
      "5:51", "health_check.unhealthy_interval 500ms is shorter than the default timeout 1s; "
      "set health_check.timeout too" },

    /* discovery */
    { LST "pools: [{name: app, discovery: {dns: app.test, port: 80}, backends: []}]\n",
      "2:69", "backends: must list at least one backend" },
    { LST "pools: [{name: app, discovery: {dns: app.test}}]\n",
      "2:32", "missing required key 'discovery.port'" },
    { LST "pools: [{name: app, discovery: {port: 80}}]\n",
      "2:32", "missing required key 'discovery.dns'" },
    { LST "pools: [{name: app, discovery: {dns: 'a..b', port: 80}}]\n",
      "2:38", "discovery.dns: 'a..b' is not a DNS name" },
    { LST "pools: [{name: app, discovery: {dns: 'a b', port: 80}}]\n",
      "2:38", "discovery.dns: 'a b' is not a DNS name" },
    { LST "pools: [{name: app, discovery: {dns: app.test, type: srv}}]\n",
      "2:38", "discovery.dns: SRV names start with _service._proto, as in _http._tcp.app.test" },
    { LST "pools: [{name: app, discovery: {dns: _x._tcp.app, type: srv, port: 80}}]\n",
      "2:68", "discovery.port: SRV records give each backend's port" },
    { LST "pools: [{name: app, discovery: {dns: app.test, type: mx, port: 80}}]\n",
      "2:54", "discovery.type" },
    { LST "pools: [{name: app, discovery: {dns: app.test, port: 0}}]\n",
      "2:54", "discovery.port" },
    { LST "pools: [{name: app, discovery: {dns: app.test, port: 80, resolvers: [dns.google]}}]\n",
      "2:70", "discovery.resolvers: 'dns.google' is not IP:PORT" },
    { LST "pools: [{name: app, discovery: {dns: app.test, port: 80, resolvers: []}}]\n",
      "2:69", "discovery.resolvers: give 1 to 8 addresses" },
    { LST "pools: [{name: app, discovery: {dns: app.test, port: 80, interval: 10ms}}]\n",
      "2:68", "discovery.interval: give 100ms to 24h" },
    { LST "pools: [{name: app, discovery: {dns: app.test, port: 80, max_backends: 2000}}]\n",
      "2:72", "discovery.max_backends" },
    { LST "pools: [{name: app, discovery: {dns: app.test, port: 80, ttl: 5s}}]\n",
      "2:58", "unknown key 'ttl' in discovery of pool 'app'" },
    /* sticky */
    { LST "pools: [{name: app, sticky: {cookie: 'a b'}, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:38", "sticky.cookie: 'a b' is not a cookie name" },
    { LST "pools: [{name: app, sticky: {ttl: 1500ms}, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:35", "sticky.ttl: the cookie's Max-Age is in whole seconds" },
    { LST "pools: [{name: app, sticky: {path: app}, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:36", "sticky.path: must start with '/'" },
    { LST "pools: [{name: app, sticky: {secure: yes}, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:38", "sticky.secure: must be true or false" },
    { LST "pools: [{name: app, sticky: {http_only: 'true'}, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:41", "sticky.http_only: must be true or false" },
    { LST "pools: [{name: app, sticky: {coookie: a}, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:30", "unknown key 'coookie' in sticky of pool 'app'" },
    { LST "pools: [{name: app, sticky: SRV, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:29", "sticky: expected a mapping" },

    /* rate_limit */
#define RL_HTTP "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app, rate_limit: "
    { RL_HTTP "{rate: 10/x}}]\n" POOL, "1:89", "rate_limit.rate: expected N/s, N/m or N/h" },
    { RL_HTTP "{rate: 0/s}}]\n" POOL, "1:89", "rate_limit.rate: expected N/s" },
    { RL_HTTP "{rate: 2000000000/s}}]\n" POOL, "1:89", "rate_limit.rate: expected N/s" },
    { RL_HTTP "{burst: 5}}]\n" POOL, "1:82", "missing required key 'rate_limit.rate'" },
    { RL_HTTP "{rate: 1/s, status: 404}}]\n" POOL, "1:102", "rate_limit.status: use 429 or 503" },
    { RL_HTTP "{rate: 1/s, key: 'header:a b'}}]\n" POOL, "1:99",
      "rate_limit.key: bad header name 'a b'" },
    { RL_HTTP "{rate: 1/s, key: ip}}]\n" POOL, "1:99",
      "rate_limit.key: unknown rate_limit.key 'ip'; expected one of: source_ip, path, "
      "header:NAME, cookie:NAME, query:NAME, global" },
    { RL_HTTP "{rate: 1/s, burst: -1}}]\n" POOL, "1:101", "rate_limit.burst" },
    { RL_HTTP "{rate: 1/s, rte: 2}}]\n" POOL, "1:94", "unknown key 'rte' in rate_limit of listener 'web'" },
    { "listeners: [{name: l4, bind: 127.0.0.1:8080, mode: tcp, pool: app,\n"
      "  rate_limit: {rate: 1/s, key: 'header:x'}}]\n" POOL, "2:32",
      "rate_limit.key: a tcp listener counts connections" },
    { "listeners: [{name: l4, bind: 127.0.0.1:8080, mode: tcp, pool: app,\n"
      "  rate_limit: {rate: 1/s, status: 503}}]\n" POOL, "2:35",
      "rate_limit.status: a tcp listener closes connections" },
    { "listeners: [{name: u, bind: 127.0.0.1:8080, mode: udp, pool: app,\n"
      "  rate_limit: {rate: 1/s}}]\n" POOL, "2:3",
      "rate_limit only applies to mode http or tcp" },
    { "listeners:\n  - {name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "     routes: [{match: {path: /a}, pool: app, rate_limit: {rate: 5}}]}\n" POOL, "3:65",
      "listener 'web' route #1: rate_limit.rate: expected N/s" },

    /* auth (users files are checked by tests/integration/test_auth.py) */
#define AUTH_HTTP "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n  auth: "
    { AUTH_HTTP "{type: digest, users_file: /nonexistent}}]\n" POOL, "2:16",
      "auth.type: 'digest' is not one of: basic, jwt" },
    { AUTH_HTTP "{type: basic}}]\n" POOL, "2:9", "missing required key 'auth.users_file'" },
    { AUTH_HTTP "{type: jwt}}]\n" POOL, "2:9", "type jwt needs key_file (RS256, ES256) or secret_file" },
    { AUTH_HTTP "{type: jwt, key_file: /nonexistent}}]\n" POOL, "2:31",
      "auth.key_file: cannot load a PEM public key from '/nonexistent'" },
    { AUTH_HTTP "{type: jwt, secret_file: /nonexistent}}]\n" POOL, "2:34",
      "auth.secret_file: cannot read '/nonexistent'" },
    /* a device or a FIFO could block the load or never end */
    { AUTH_HTTP "{type: jwt, secret_file: /dev/null}}]\n" POOL, "2:34",
      "auth.secret_file: '/dev/null' is not a key file (a regular file)" },
    { AUTH_HTTP "{type: basic, users_file: /nonexistent, issuer: x}}]\n" POOL, "2:57",
      "auth.issuer only applies to type jwt" },
    { AUTH_HTTP "{type: basic, users_file: /nonexistent}}]\n" POOL, "2:35",
      "auth.users_file: cannot read '/nonexistent'" },
    { AUTH_HTTP "{type: basic, users_file: /tmp}}]\n" POOL, "2:35",
      "auth.users_file: '/tmp' is not a users file" },
    { AUTH_HTTP "{type: basic, realm: 'a\"b', users_file: /tmp}}]\n" POOL, "2:30",
      "auth.realm: up to 128 printable ASCII characters" },
    { AUTH_HTTP "on}]\n" POOL, "2:9", "auth: expected a mapping, got a string" },
    { "listeners: [{name: l4, bind: 127.0.0.1:8080, mode: tcp, pool: app,\n"
      "  auth: {type: basic, users_file: /tmp}}]\n" POOL, "2:3",
      "auth only applies to mode http" },
    { "listeners:\n  - {name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n"
      "     routes: [{match: {path: /a}, pool: app, auth: on}]}\n" POOL, "3:52",
      "route #1: auth: expected a mapping or off" },

    /* tls towards backends */
#define TLS_HTTP_EARLY "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n  tls: "
#define LST_HTTP "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app}]\n"
    { LST_HTTP "pools: [{name: app, tls: {verify: yes}, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:35", "tls.verify: must be true or false" },
    { LST_HTTP "pools: [{name: app, tls: {ca_file: /nonexistent}, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:36", "tls.ca_file: cannot read '/nonexistent'" },
    { LST_HTTP "pools: [{name: app, tls: {server_name: 'a b'}, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:40", "tls.server_name: expected a DNS name" },
    { LST_HTTP "pools: [{name: app, tls: {cert: /tmp}, backends: [{address: 127.0.0.1:1}]}]\n",
      "2:26", "missing required key 'tls.key'" },
    { LST_HTTP "pools: [{name: app, tls: {cert: /nonexistent, key: /nonexistent},\n"
      "         backends: [{address: 127.0.0.1:1}]}]\n", "2:33", "tls.cert: cannot read '/nonexistent'" },
    { TLS_HTTP_EARLY "{certificates: [{cert: /tmp, key: /tmp}], client_ca: /nonexistent}}]\n" POOL,
      "2:61", "tls.client_ca: cannot read '/nonexistent'" },
    { "listeners: [{name: u, bind: 127.0.0.1:8080, mode: udp, pool: app}]\n"
      "pools: [{name: app, tls: {verify: false}, backends: [{address: 127.0.0.1:1}]}]\n", "1:62",
      "pool 'app' speaks TLS to its backends, which a udp listener cannot" },

    /* tls (files that exist are checked by tests/integration/test_tls.py) */
#define TLS_HTTP "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app,\n  tls: "
    { TLS_HTTP "{}}]\n" POOL, "2:8", "missing required key 'tls.certificates'" },
    { TLS_HTTP "{certificates: []}}]\n" POOL, "2:23", "tls.certificates: give 1 to 256" },
    { TLS_HTTP "{certificates: [{cert: /nonexistent.pem, key: /nonexistent.key}]}}]\n" POOL,
      "2:31", "tls.certificates[].cert: cannot read '/nonexistent.pem'" },
    { TLS_HTTP "{certificates: [{cert: /tmp, key: /dev/null}]}}]\n" POOL, "2:31",
      "tls.certificates[].cert: '/tmp' is not a PEM file" },
    { TLS_HTTP "{certificates: [{cert: /tmp}]}}]\n" POOL, "2:24", "missing required key 'key'" },
    { TLS_HTTP "{certificates: [{cert: /tmp, key: /tmp}], ciphers: x}}]\n" POOL, "2:50",
      "unknown key 'ciphers' in tls of listener 'web'" },
    { "listeners: [{name: u, bind: 127.0.0.1:8080, mode: udp, pool: app,\n"
      "  tls: {certificates: [{cert: /tmp, key: /tmp}]}}]\n" POOL, "2:3",
      "tls only applies to mode http or tcp" },

    /* admin */
    { LST POOL "admin: {listen: 0.0.0.0:9901}\n", "3:17",
      "admin.listen: 0.0.0.0:9901 is not a loopback address; set admin.token_file" },
    { LST POOL "admin: {listen: 127.0.0.1:9901, token_file: /nonexistent/token}\n", "3:45",
      "admin.token_file: cannot read '/nonexistent/token': No such file or directory" },
    { LST POOL "admin: {listen: 127.0.0.1:9901, token_file: token.txt}\n", "3:45",
      "admin.token_file: expected an absolute path, got 'token.txt'" },
    { LST POOL "admin: {listen: 127.0.0.1:9901, token_file: /tmp}\n", "3:45",
      "admin.token_file: '/tmp' is not a regular file" },
    { LST POOL "admin: {listen: 127.0.0.1:0}\n", "3:17", "admin.listen: port 0 is refused" },
    { LST POOL "admin: {listen: localhost:9901}\n", "3:17", "admin.listen: bad address 'localhost:9901'" },
    { LST POOL "admin: {}\n", "3:8", "admin: missing required key 'listen'" },
    { LST POOL "admin: {listen: 127.0.0.1:9901, tokn: x}\n", "3:33",
      "unknown key 'tokn' in admin; expected one of: listen, token_file" },
    { LST POOL "admin: [127.0.0.1:9901]\n", "3:8", "admin: expected a mapping, got a list" },

    /* http2 */
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app, http2: true}]\n" POOL, "1:69",
      "listener 'web': http2 only applies to mode http" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app, http2: on}]\n" POOL, "1:77",
      "listener 'web': http2: must be true or false" },

    /* path normalisation */
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app, merge_slashes: false}]\n" POOL,
      "1:69", "listener 'web': merge_slashes only applies to mode http" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app, normalize_path: no}]\n" POOL,
      "1:86", "listener 'web': normalize_path: must be true or false" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app, escaped_slashes: drop}]\n" POOL,
      "1:87", "listener 'web': unknown escaped_slashes 'drop'; expected one of: keep, reject, decode" },

    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: app, headers_with_underscores: no}]\n" POOL,
      "1:96", "listener 'web': unknown headers_with_underscores 'no'; expected one of: allow, drop, reject" },
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: udp, pool: app, headers_with_underscores: drop}]\n" POOL,
      "1:69", "listener 'web': headers_with_underscores only applies to mode http" },

    /* freebind */
    { "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app, freebind: 2}]\n" POOL, "1:79",
      "listener 'web': freebind: must be true or false" },
    { "listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n    freebind: yes please\n"
      "    mode: http\n    pool: app\n" POOL, "4:15", "listener 'web': freebind: must be true or false" },

    /* YAML itself */
    { "listeners:\n  - name: a\n   bind: x\n" POOL, "3:4", "did not find expected '-' indicator" },
    { "listeners: \"open\n" POOL, "1:12", "double-quoted scalar" },
    { "listeners:\n\t- a\n", "2:1", "tab character" },
    { "listeners: *nowhere\n" POOL, "1:12", "alias '*nowhere' does not name an anchor" },
    { LST POOL "---\nworkers: 2\n", "3:1", "one YAML document" },
    { LST POOL "x-a: &a 5\nlog: {<<: *a}\n", "3:9", "merge key '<<' needs a mapping" },
    /* the earlier merge source wins; a repeat among written keys is still one */
    { LST POOL "x-a: &a {level: nope}\nx-b: &b {level: info}\nlog: {<<: [*a, *b]}\n", "3:17",
      "unknown log.level 'nope'" },
    { LST POOL "x-a: &a {level: info}\nlog: {<<: *a, format: json, format: json}\n", "4:29",
      "duplicate key 'format' (first at 4:15)" },
    { LST POOL "x-a: &a {}\nlog: {<<: [*a, *a], level: nope}\n", "4:28", "unknown log.level 'nope'" },
    { LST POOL "log: {level: \xc3\x28}\n", "3:14", "not valid UTF-8" },
    { "%\xf2\n", "1:2", "not valid UTF-8" },     /* used to hang libfyaml 0.7 */
    { "", "1:1", "the config is empty" },
    { "# nothing but a comment\n", "1:1", "the config is empty" },
    { "~\n", "1:1", "the config is empty" },
};

static void test_bad_cases(void)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct config *cfg = (struct config *)1;
        char path[32], *out = NULL;
        int rc = load_text(c->text, path, &out, &cfg);
        int found = has_error(out, path, c->where, c->msg);

        CHECK_EQ_INT(rc, -1);
        CHECK(cfg == NULL);
        CHECK(found);
        if (!found)
            fprintf(stderr, "  case %zu: wanted %s: ...%s...\n  got:\n%s", i, c->where,
                    c->msg, out);
        free(out);
    }
}

/* Every error is reported, not only the first, and in file order. */
static void test_all_errors(void)
{
    static const char text[] =
        "workers: 0\n"
        "drain_timeout: 5x\n"
        "listeners: [{name: web, bind: nowhere, mode: tcp, pool: missing}]\n"
        "pools: [{name: app, backends: [{address: 127.0.0.1:1, weight: 0}]}]\n";
    struct config *cfg = NULL;
    char path[32], *out = NULL;
    int rc = load_text(text, path, &out, &cfg);

    CHECK_EQ_INT(rc, -1);
    CHECK_EQ_INT(count_lines(out), 5);
    CHECK(has_error(out, path, "1:10", "workers"));
    CHECK(has_error(out, path, "2:16", "bad duration"));
    CHECK(has_error(out, path, "3:31", "bad address 'nowhere'"));
    CHECK(has_error(out, path, "3:57", "pool 'missing' is not defined"));
    CHECK(has_error(out, path, "4:63", "weight"));
    CHECK(strstr(out, "1:10") < strstr(out, "2:16"));
    CHECK(strstr(out, "3:57") < strstr(out, "4:63"));
    free(out);
}

static void test_missing_file(void)
{
    struct config *cfg = (struct config *)1;
    size_t len = 0;
    char *out = NULL;
    FILE *diag = open_memstream(&out, &len);
    int rc = config_load("/tmp/sluice-no-such-dir/none.yaml", diag, &cfg);

    fclose(diag);
    CHECK_EQ_INT(rc, -1);
    CHECK(cfg == NULL);
    CHECK_EQ_STR(out, "/tmp/sluice-no-such-dir/none.yaml: error: cannot open: "
                 "No such file or directory\n");
    free(out);

    out = NULL;
    diag = open_memstream(&out, &len);
    rc = config_load("/tmp", diag, &cfg);
    fclose(diag);
    CHECK_EQ_INT(rc, -1);
    CHECK(strstr(out, "/tmp: error: cannot read: ") == out);
    free(out);
}

static void test_duration_size(void)
{
    static const struct { const char *s; int rc; uint64_t v; } durations[] = {
        { "250ms", 0, 250 }, { "2s", 0, 2000 }, { "5m", 0, 300000 }, { "1h", 0, 3600000 },
        { "0s", 0, 0 }, { "007s", 0, 7000 },
        { "18446744073709551615ms", 0, UINT64_MAX },
        { "18446744073709551616ms", -EINVAL, 0 },   /* the number overflows */
        { "18446744073709552s", -EINVAL, 0 },       /* the product overflows */
        { "5124095576030432h", -EINVAL, 0 },
        { "", -EINVAL, 0 }, { "5", -EINVAL, 0 }, { "s", -EINVAL, 0 }, { "ms", -EINVAL, 0 },
        { "-5s", -EINVAL, 0 }, { "+5s", -EINVAL, 0 }, { "5x", -EINVAL, 0 },
        { "5 s", -EINVAL, 0 }, { " 5s", -EINVAL, 0 }, { "5s ", -EINVAL, 0 },
        { "1.5s", -EINVAL, 0 }, { "5S", -EINVAL, 0 }, { "5sec", -EINVAL, 0 },
        { "1m30s", -EINVAL, 0 }, { "0x10s", -EINVAL, 0 },
    };
    static const struct { const char *s; int rc; uint64_t v; } sizes[] = {
        { "512", 0, 512 }, { "0", 0, 0 }, { "16k", 0, 16384 }, { "16K", 0, 16384 },
        { "1m", 0, 1048576 }, { "1g", 0, 1073741824 },
        { "17179869183g", 0, 17179869183ull << 30 },
        { "17179869184g", -EINVAL, 0 }, { "99999999999999999999", -EINVAL, 0 },
        { "", -EINVAL, 0 }, { "k", -EINVAL, 0 }, { "-1", -EINVAL, 0 }, { "1kb", -EINVAL, 0 },
        { "1t", -EINVAL, 0 }, { "1.5k", -EINVAL, 0 }, { " 1k", -EINVAL, 0 },
    };
    uint64_t v;

    for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
        v = 12345;
        CHECK_EQ_INT(config_parse_duration(durations[i].s, &v), durations[i].rc);
        if (durations[i].rc == 0)
            CHECK(v == durations[i].v);
        else
            CHECK_EQ_INT(v, 12345);
    }
    CHECK_EQ_INT(config_parse_duration(NULL, &v), -EINVAL);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        v = 12345;
        CHECK_EQ_INT(config_parse_size(sizes[i].s, &v), sizes[i].rc);
        if (sizes[i].rc == 0)
            CHECK(v == sizes[i].v);
    }
}

/* A socket on a free loopback port; with reuseport it shares like sluice. */
static int hold_port(int type, int reuseport, int *port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof(sa);
    int one = 1, fd = socket(AF_INET, type, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0 ||
        (type == SOCK_STREAM && listen(fd, 1) < 0)) {
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static void check_binds_case(int type, int reuseport, int want_errors)
{
    char text[512], path[32], *out = NULL, *bout = NULL, where[32];
    struct config *cfg = NULL;
    size_t blen = 0;
    int port = 0, fd = hold_port(type, reuseport, &port);
    FILE *diag;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    snprintf(text, sizeof(text),
             "listeners:\n"
             "  - name: held\n"
             "    bind: 127.0.0.1:%d\n"
             "    mode: %s\n"
             "    pool: app\n" POOL, port, type == SOCK_STREAM ? "tcp" : "udp");
    CHECK_EQ_INT(load_text(text, path, &out, &cfg), 0);
    free(out);
    if (!cfg) {
        close(fd);
        return;
    }
    diag = open_memstream(&bout, &blen);
    CHECK_EQ_INT(config_check_binds(cfg, diag), want_errors);
    fclose(diag);
    if (want_errors) {
        char msg[128];
        snprintf(where, sizeof(where), "3:11");
        snprintf(msg, sizeof(msg), "listener 'held': cannot bind 127.0.0.1:%d: %s", port,
                 strerror(EADDRINUSE));
        CHECK(has_error(bout, path, where, msg));
        if (!has_error(bout, path, where, msg))
            fprintf(stderr, "  got: %s", bout);
    } else {
        CHECK_EQ_STR(bout, "");
    }
    free(bout);
    close(fd);

    /* Once the port is free again, the same config passes. */
    CHECK_EQ_INT(config_check_binds(cfg, NULL), 0);
    config_free(cfg);
}

static void test_check_binds(void)
{
    check_binds_case(SOCK_STREAM, 0, 1);    /* another program holds the port */
    check_binds_case(SOCK_DGRAM, 0, 1);
    check_binds_case(SOCK_STREAM, 1, 0);    /* a sluice of ours shares it */
}

/* freebind: read back for every mode; an address this host does not have
 * (192.0.2.1, TEST-NET-1) binds with it, and without it fails with a hint. */
static void test_freebind(void)
{
    static const char text[] =
        "listeners:\n"
        "  - {name: web, bind: 192.0.2.1:8080, freebind: true, mode: http, pool: app}\n"
        "  - {name: l4, bind: 192.0.2.1:8084, freebind: true, mode: tcp, pool: app}\n"
        "  - {name: u, bind: 192.0.2.1:8080, freebind: true, mode: udp, pool: app}\n"
        "  - {name: v6, bind: \"[2001:db8::1]:8081\", freebind: true, mode: tcp, pool: app}\n"
        "  - {name: off, bind: 192.0.2.1:8082, freebind: false, mode: tcp, pool: app}\n"
        "  - {name: dflt, bind: 192.0.2.1:8083, mode: udp, pool: app}\n" POOL;
    char path[32], *bout = NULL, msg[200];
    struct config *cfg = load_ok(text, path);
    int nonlocal = 0;
    size_t blen = 0;
    FILE *f, *diag;

    if (!cfg)
        return;
    CHECK_EQ_INT(cfg->nlisteners, 6);
    for (size_t i = 0; i < 4; i++)
        CHECK(cfg->listeners[i].freebind);
    CHECK(!cfg->listeners[4].freebind);
    CHECK(!cfg->listeners[5].freebind);

    /* Where the host already binds any address (ip_nonlocal_bind), there is
     * no failure to see; only the freebind half is checked. */
    if ((f = fopen("/proc/sys/net/ipv4/ip_nonlocal_bind", "r"))) {
        if (fscanf(f, "%d", &nonlocal) != 1)
            nonlocal = 0;
        fclose(f);
    }
    diag = open_memstream(&bout, &blen);
    if (nonlocal) {
        config_check_binds(cfg, diag);
    } else {
        /* Only the last two fail: 192.0.2.1 is not on this host. */
        CHECK_EQ_INT(config_check_binds(cfg, diag), 2);
    }
    fclose(diag);
    CHECK(strstr(bout, "'web'") == NULL && strstr(bout, "'l4'") == NULL &&
          strstr(bout, "'u'") == NULL);
    if (!nonlocal) {
        snprintf(msg, sizeof(msg), "listener 'off': cannot bind 192.0.2.1:8082: %s (set freebind: "
                 "true to listen on an address this host does not have yet, e.g. a keepalived VIP)",
                 strerror(EADDRNOTAVAIL));
        CHECK(has_error(bout, path, "6:23", msg));
        CHECK(has_error(bout, path, "7:24", "listener 'dflt': cannot bind 192.0.2.1:8083: "));
        if (!has_error(bout, path, "6:23", msg))
            fprintf(stderr, "  got: %s", bout);
    }
    free(bout);
    config_free(cfg);
}

/* The freebind hint is for EADDRNOTAVAIL only: a port in use gets none. */
static void test_bind_hint(void)
{
    CHECK(strstr(listener_bind_hint(EADDRNOTAVAIL), "set freebind: true") != NULL);
    CHECK_EQ_STR(listener_bind_hint(EADDRINUSE), "");
    CHECK_EQ_STR(listener_bind_hint(EACCES), "");
}

/* admin: the token is read at load, its trailing newline stripped; the
 * loopback test decides whether a token is required. */
static void test_admin(void)
{
    static const char base[] = LST POOL;
    char tok[32], path[32], text[512], *out = NULL;
    struct config *cfg = NULL;

    write_temp(tok, "s3cret-token\n");
    chmod(tok, 0600);
    snprintf(text, sizeof(text), "%sadmin: {listen: 0.0.0.0:9901, token_file: %s}\n", base, tok);
    CHECK_EQ_INT(load_text(text, path, &out, &cfg), 0);
    if (cfg) {
        CHECK(cfg->admin.enabled);
        CHECK(!cfg->admin.loopback);
        CHECK_EQ_STR(cfg->admin.token, "s3cret-token");
        CHECK_EQ_STR(cfg->admin.listen_text, "0.0.0.0:9901");
        CHECK_EQ_INT(cfg->admin.listen_pos.line, 3);
        config_free(cfg);
    }
    free(out);

    snprintf(text, sizeof(text), "%sadmin: {listen: \"[::1]:9901\"}\n", base);
    CHECK_EQ_INT(load_text(text, path, &out, &cfg), 0);
    if (cfg) {
        CHECK(cfg->admin.loopback);
        CHECK(cfg->admin.token == NULL);
        config_free(cfg);
    }
    free(out);

    CHECK_EQ_INT(load_text(base, path, &out, &cfg), 0);
    if (cfg) {
        CHECK(!cfg->admin.enabled);
        config_free(cfg);
    }
    free(out);

    /* An empty token file, a token with a space, a world-readable one. */
    unlink(tok);
    write_temp(tok, "\n");
    snprintf(text, sizeof(text), "%sadmin: {listen: 127.0.0.1:9901, token_file: %s}\n", base, tok);
    CHECK_EQ_INT(load_text(text, path, &out, &cfg), -1);
    CHECK(has_error(out, path, "3:45", "is empty"));
    free(out);
    unlink(tok);
    write_temp(tok, "two words\n");
    snprintf(text, sizeof(text), "%sadmin: {listen: 127.0.0.1:9901, token_file: %s}\n", base, tok);
    CHECK_EQ_INT(load_text(text, path, &out, &cfg), -1);
    CHECK(has_error(out, path, "3:45", "one line of printable characters"));
    free(out);
    unlink(tok);
    write_temp(tok, "ok\n");
    chmod(tok, 0644);
    snprintf(text, sizeof(text), "%sadmin: {listen: 127.0.0.1:9901, token_file: %s}\n", base, tok);
    CHECK_EQ_INT(load_text(text, path, &out, &cfg), 0);
    CHECK(out && strstr(out, "warning: admin.token_file") && strstr(out, "readable by every user"));
    config_free(cfg);
    free(out);
    unlink(tok);
}

static void test_known_keys(void)
{
    size_t n = 0;
    FILE *f;

    for (const char *const *k = config_known_keys; *k; k++, n++) {
        CHECK(strchr(*k, ' ') == NULL);
        for (const char *const *j = config_known_keys; j < k; j++)
            CHECK(strcmp(*j, *k) != 0);
    }
    CHECK(n >= 30);

    /* docs/configuration.md lists exactly these keys, one table row each;
     * only when run from the repository root, as make does. */
    f = fopen("docs/configuration.md", "r");
    if (!f)
        return;
    {
        char line[512];
        size_t rows = 0;
        int *seen = calloc(n, sizeof(*seen));

        while (fgets(line, sizeof(line), f)) {
            char *a, *b;
            if (strncmp(line, "| `", 3) != 0)
                continue;
            a = line + 3;
            if (!(b = strchr(a, '`')))
                continue;
            *b = '\0';
            rows++;
            for (size_t i = 0; i < n; i++)
                if (strcmp(config_known_keys[i], a) == 0)
                    seen[i]++;
        }
        fclose(f);
        CHECK_EQ_INT(rows, n);
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ_INT(seen[i], 1);
            if (seen[i] != 1)
                fprintf(stderr, "  docs: %s listed %d times\n", config_known_keys[i], seen[i]);
        }
        free(seen);
    }
}

/* The balancing algorithms and the consistent-hashing keys read back. */
static void test_hash_config(void)
{
    static const char text[] =
        "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: a}]\n"
        "pools:\n"
        "  - {name: a, balance: maglev, hash_key: 'cookie:sid', hash_balance_factor: 1.25,\n"
        "     backends: [{address: 127.0.0.1:1}]}\n"
        "  - {name: b, balance: ring_hash, backends: [{address: 127.0.0.1:1}]}\n"
        "  - {name: c, balance: ring_hash, hash_key: 'header:X-User', backends: [{address: 127.0.0.1:1}]}\n"
        "  - {name: d, balance: ip_hash, hash_balance_factor: 2, backends: [{address: 127.0.0.1:1}]}\n"
        "  - {name: e, balance: maglev, hash_key: path, backends: [{address: 127.0.0.1:1}]}\n"
        "  - {name: f, balance: ewma, backends: [{address: 127.0.0.1:1}]}\n"
        "  - {name: g, balance: random, backends: [{address: 127.0.0.1:1}]}\n"
        "  - {name: h, balance: maglev, hash_key: 'query:user', backends: [{address: 127.0.0.1:1}]}\n";
    struct config *cfg = NULL;
    char path[32], *out = NULL;
    int rc = load_text(text, path, &out, &cfg);

    CHECK_EQ_INT(rc, 0);
    if (rc != 0)
        fprintf(stderr, "%s", out);
    free(out);
    if (!cfg)
        return;
    CHECK_EQ_INT(cfg->pools[0].balance, BALANCE_MAGLEV);
    CHECK_EQ_INT(cfg->pools[0].hash_key, HASH_KEY_COOKIE);
    CHECK_EQ_STR(cfg->pools[0].hash_key_name, "sid");
    CHECK(cfg->pools[0].hash_balance_factor == 1.25);
    CHECK_EQ_INT(cfg->pools[1].hash_key, HASH_KEY_SOURCE_IP);
    CHECK(cfg->pools[1].hash_key_name == NULL);
    CHECK(cfg->pools[1].hash_balance_factor == 0);
    CHECK_EQ_INT(cfg->pools[2].hash_key, HASH_KEY_HEADER);
    CHECK_EQ_STR(cfg->pools[2].hash_key_name, "X-User");
    CHECK_EQ_INT(cfg->pools[3].balance, BALANCE_IP_HASH);
    CHECK(cfg->pools[3].hash_balance_factor == 2.0);
    CHECK_EQ_INT(cfg->pools[4].hash_key, HASH_KEY_PATH);
    CHECK_EQ_STR(config_balance_name(cfg->pools[5].balance), "ewma");
    CHECK_EQ_STR(config_balance_name(cfg->pools[6].balance), "random");
    CHECK_EQ_INT(cfg->pools[7].hash_key, HASH_KEY_QUERY);
    CHECK_EQ_STR(cfg->pools[7].hash_key_name, "user");
    CHECK_EQ_STR(config_balance_name(BALANCE_RING_HASH), "ring_hash");
    CHECK_EQ_STR(config_balance_name(BALANCE_IP_HASH), "ip_hash");
    config_free(cfg);

    /* A bad balance gets its own error only, not "hash_key does not apply". */
    cfg = NULL;
    rc = load_text("listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app}]\n"
                   "pools: [{name: app, balance: maglv, hash_key: path, hash_balance_factor: 2,\n"
                   "         backends: [{address: 127.0.0.1:1}]}]\n", path, &out, &cfg);
    CHECK_EQ_INT(rc, -1);
    CHECK_EQ_INT(count_lines(out), 1);
    free(out);
}

/* discovery read back: every key, and the defaults. */
static void test_discovery_config(void)
{
    static const char text[] =
        "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: a}]\n"
        "pools:\n"
        "  - {name: a, discovery: {dns: App.Example.COM., port: 8080}}\n"
        "  - {name: b, discovery: {dns: _grpc._tcp.b.test, type: srv, interval: 2s, timeout: 300ms,\n"
        "                          max_backends: 5, resolvers: ['127.0.0.1:5353', '[::1]:53']}}\n"
        "  - {name: c, discovery: {dns: c.test, type: aaaa, port: 1}}\n";
    struct config *cfg = load_ok(text, NULL);

    if (!cfg)
        return;
    CHECK_EQ_STR(cfg->pools[0].discovery.dns, "app.example.com");
    CHECK_EQ_INT(cfg->pools[0].discovery.record, DISCOVERY_A);
    CHECK_EQ_INT(cfg->pools[0].discovery.port, 8080);
    CHECK_EQ_INT(cfg->pools[0].discovery.interval_ms, 5000);
    CHECK_EQ_INT(cfg->pools[0].discovery.timeout_ms, 1000);
    CHECK_EQ_INT(cfg->pools[0].discovery.max_backends, 32);
    CHECK_EQ_INT(cfg->pools[0].discovery.nresolvers, 0);
    CHECK_EQ_INT(cfg->pools[0].nbackends, 0);
    CHECK_EQ_INT(cfg->pools[1].discovery.record, DISCOVERY_SRV);
    CHECK_EQ_INT(cfg->pools[1].discovery.port, 0);
    CHECK_EQ_INT(cfg->pools[1].discovery.interval_ms, 2000);
    CHECK_EQ_INT(cfg->pools[1].discovery.timeout_ms, 300);
    CHECK_EQ_INT(cfg->pools[1].discovery.max_backends, 5);
    CHECK_EQ_INT(cfg->pools[1].discovery.nresolvers, 2);
    CHECK_EQ_INT(addr_port(&cfg->pools[1].discovery.resolvers[0]), 5353);
    CHECK_EQ_INT(cfg->pools[2].discovery.record, DISCOVERY_AAAA);
    config_free(cfg);
}

/* sticky read back: every key, and the defaults of an empty block. */
static void test_sticky_config(void)
{
    static const char text[] =
        "listeners: [{name: web, bind: 127.0.0.1:8080, mode: http, pool: a}]\n"
        "pools:\n"
        "  - {name: a, backends: [{address: 127.0.0.1:1}],\n"
        "     sticky: {cookie: SRV, ttl: 1h, path: /app, secure: true, http_only: false}}\n"
        "  - {name: b, backends: [{address: 127.0.0.1:1}], sticky: {}}\n"
        "  - {name: c, backends: [{address: 127.0.0.1:1}]}\n";
    struct config *cfg = load_ok(text, NULL);

    if (!cfg)
        return;
    CHECK_EQ_STR(cfg->pools[0].sticky.cookie, "SRV");
    CHECK_EQ_INT(cfg->pools[0].sticky.ttl_ms, 3600000);
    CHECK_EQ_STR(cfg->pools[0].sticky.path, "/app");
    CHECK(cfg->pools[0].sticky.secure);
    CHECK(!cfg->pools[0].sticky.http_only);
    CHECK_EQ_STR(cfg->pools[1].sticky.cookie, "SLUICE");
    CHECK_EQ_INT(cfg->pools[1].sticky.ttl_ms, 0);
    CHECK_EQ_STR(cfg->pools[1].sticky.path, "/");
    CHECK(!cfg->pools[1].sticky.secure);
    CHECK(cfg->pools[1].sticky.http_only);
    CHECK(cfg->pools[2].sticky.cookie == NULL);
    config_free(cfg);
}

/* rate_limit read back, on a listener and on a route. */
static void test_rate_limit_config(void)
{
    static const char text[] =
        "listeners:\n"
        "  - name: web\n"
        "    bind: 127.0.0.1:8080\n"
        "    mode: http\n"
        "    pool: a\n"
        "    rate_limit: {rate: 100/s, burst: 20}\n"
        "    routes:\n"
        "      - {match: {path: /x}, pool: a}\n"
        "      - match: {path: /login}\n"
        "        pool: a\n"
        "        rate_limit: {rate: 30/m, key: 'header:X-User', status: 503, max_keys: 1000}\n"
        "  - {name: l4, bind: 127.0.0.1:8081, mode: tcp, pool: a, rate_limit: {rate: 1/h, key: global}}\n"
        "pools: [{name: a, backends: [{address: 127.0.0.1:1}]}]\n";
    struct config *cfg = load_ok(text, NULL);
    const struct conf_rate_limit *rl;

    if (!cfg)
        return;
    CHECK_EQ_INT(cfg->nrate_limits, 3);
    rl = cfg->listeners[0].rate_limit;
    CHECK(rl != NULL);
    if (rl) {
        CHECK_EQ_INT(rl->interval_ns, 10000000);
        CHECK_EQ_INT(rl->burst, 20);
        CHECK_EQ_INT(rl->key, HASH_KEY_SOURCE_IP);
        CHECK_EQ_INT(rl->status, 429);
        CHECK_EQ_INT(rl->max_keys, 65536);
        CHECK_EQ_STR(rl->label, "listener");
        CHECK_EQ_STR(rl->rate_text, "100/s");
    }
    CHECK(cfg->listeners[0].routes[0].rate_limit == NULL);
    rl = cfg->listeners[0].routes[1].rate_limit;
    CHECK(rl != NULL);
    if (rl) {
        CHECK_EQ_INT(rl->interval_ns, 2000000000);
        CHECK_EQ_INT(rl->key, HASH_KEY_HEADER);
        CHECK_EQ_STR(rl->key_name, "X-User");
        CHECK_EQ_INT(rl->status, 503);
        CHECK_EQ_INT(rl->max_keys, 1000);
        CHECK_EQ_STR(rl->label, "route2");
    }
    rl = cfg->listeners[1].rate_limit;
    CHECK(rl != NULL);
    if (rl) {
        CHECK_EQ_INT(rl->interval_ns, 3600000000000ull);
        CHECK_EQ_INT(rl->key, HASH_KEY_GLOBAL);
        /* every block has its own limiter index */
        CHECK(rl->index != cfg->listeners[0].rate_limit->index);
    }
    config_free(cfg);
}

/* unhealthy_interval read back: shorter or longer than interval, and unset
 * (it follows interval, so nothing changes for configs without it). */
static void test_unhealthy_interval(void)
{
    static const char text[] =
        "listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: a}]\n"
        "pools:\n"
        "  - {name: a, backends: [{address: 127.0.0.1:1}],\n"
        "     health_check: {type: tcp, interval: 5s, unhealthy_interval: 250ms, timeout: 200ms}}\n"
        "  - {name: b, backends: [{address: 127.0.0.1:1}],\n"
        "     health_check: {type: http, interval: 1s, unhealthy_interval: 1m}}\n"
        "  - {name: c, backends: [{address: 127.0.0.1:1}],\n"
        "     health_check: {type: tcp, interval: 7s}}\n";
    struct config *cfg = load_ok(text, NULL);
    char path[32], *out = NULL;
    int rc;

    if (!cfg)
        return;
    CHECK_EQ_INT(cfg->pools[0].health.interval_ms, 5000);
    CHECK_EQ_INT(cfg->pools[0].health.unhealthy_interval_ms, 250);
    CHECK_EQ_INT(cfg->pools[1].health.interval_ms, 1000);
    CHECK_EQ_INT(cfg->pools[1].health.unhealthy_interval_ms, 60000);
    CHECK_EQ_INT(cfg->pools[2].health.unhealthy_interval_ms, 7000);
    config_free(cfg);

    /* Both clashes with timeout are reported, each at its own key. */
    cfg = NULL;
    rc = load_text("listeners: [{name: web, bind: 127.0.0.1:8080, mode: tcp, pool: app}]\n"
                   "pools: [{name: app, backends: [{address: 127.0.0.1:1}],\n"
                   "         health_check: {type: tcp, interval: 1s, unhealthy_interval: 100ms,\n"
                   "                        timeout: 2s}}]\n", path, &out, &cfg);
    CHECK_EQ_INT(rc, -1);
    CHECK_EQ_INT(count_lines(out), 2);
    CHECK(has_error(out, path, "3:70", "unhealthy_interval 100ms is shorter than "
                    "health_check.timeout 2s"));
    CHECK(has_error(out, path, "4:34", "health_check.timeout 2s is longer than "
                    "health_check.interval 1s"));
    free(out);
}

/* Every config in examples/ and one folder down (examples/ha/) loads without
 * a word (run from the repository root, as make does; skipped elsewhere).
 * Not examples/tls.yaml: its certificates live in /etc/sluice; test_tls.py
 * checks it with certificates made for it. */
static void test_examples(void)
{
    glob_t g;

    if (glob("examples/*.yaml", 0, NULL, &g) != 0)
        return;
    glob("examples/*/*.yaml", GLOB_APPEND, NULL, &g);     /* examples/ha/ */
    CHECK(g.gl_pathc >= 5);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        struct config *cfg = NULL;
        char *out = NULL;
        size_t len = 0;
        FILE *diag;
        int rc;

        if (strcmp(g.gl_pathv[i], "examples/tls.yaml") == 0)
            continue;
        diag = open_memstream(&out, &len);
        rc = config_load(g.gl_pathv[i], diag, &cfg);

        fclose(diag);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_STR(out, "");
        if (rc != 0 || (out && *out))
            fprintf(stderr, "  %s:\n%s", g.gl_pathv[i], out);
        free(out);
        config_free(cfg);
    }
    globfree(&g);
}

int main(void)
{
    test_addr_format_host();
    test_full();
    test_defaults();
    test_bad_cases();
    test_hash_config();
    test_unhealthy_interval();
    test_sticky_config();
    test_discovery_config();
    test_rate_limit_config();
    test_all_errors();
    test_missing_file();
    test_duration_size();
    test_check_binds();
    test_freebind();
    test_bind_hint();
    test_admin();
    test_known_keys();
    test_examples();
    TEST_END();
}
