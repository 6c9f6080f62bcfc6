/* The admin API: routes a parsed request to its handler and builds the
 * reply. Runs on the main thread; the only shared state it writes is a
 * backend's state and weight (atomics, with a generation bump that every
 * worker's next pick sees). A request that fails changes nothing: every
 * check happens before the one store. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/internal.h"
#include "admin/metrics.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/version.h"
#include "net/addr.h"

#define API_MAX_SEGMENT 256

void admin_reply_error(struct admin_reply *out, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    out->status = status;
    out->content_type = "application/json";
    out->body.len = 0;
    admin_buf_puts(&out->body, "{\"error\":");
    admin_buf_json_str(&out->body, msg);
    admin_buf_puts(&out->body, "}\n");
}

static bool api_method(const struct admin_request *r, enum h1_method m)
{
    return r->req->method_id == m;
}

/* GET and HEAD read; anything else on a read endpoint is 405. */
static bool api_want_read(const struct admin_request *r, struct admin_reply *out)
{
    if (api_method(r, H1_GET) || api_method(r, H1_HEAD))
        return true;
    out->allow = "GET, HEAD";
    admin_reply_error(out, 405, "method %.*s is not allowed here; use GET", (int)r->req->method.len,
                      r->req->method.p);
    return false;
}

static bool api_want(const struct admin_request *r, struct admin_reply *out, enum h1_method m,
                     const char *name)
{
    if (api_method(r, m))
        return true;
    out->allow = name;
    admin_reply_error(out, 405, "method %.*s is not allowed here; use %s", (int)r->req->method.len,
                      r->req->method.p, name);
    return false;
}

/* Equal-time comparison: how long a wrong guess takes says nothing about
 * how much of it was right. */
static bool api_token_equal(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned char diff = alen != blen;

    for (size_t i = 0; i < blen; i++)
        diff |= (unsigned char)(b[i] ^ (i < alen ? a[i] : 0));
    return diff == 0;
}

/* A browser sends Origin with every cross-origin POST, and a page may
 * POST a form anywhere without asking first: the admin port on loopback
 * (no token needed there) is one click away from any web page the
 * operator opens (CSRF). Only the admin's own origin, or none (curl,
 * `sluice ctl`, scripts), may make a change. */
static bool api_same_origin(const struct admin_request *r)
{
    const struct h1_header *o = h1_find_header(r->req->headers, r->req->nheaders, "origin");
    struct h1_slice host = r->req->host;

    if (!o)
        return true;
    return host.p && o->value.len == 7 + host.len &&
           strncasecmp(o->value.p, "http://", 7) == 0 &&
           strncasecmp(o->value.p + 7, host.p, host.len) == 0;
}

/* Does the request name the admin by an address or localhost? A page
 * whose own name was rebound to 127.0.0.1 (DNS rebinding) is the admin's
 * origin to the browser and passes api_same_origin, but its Host is that
 * name. No Host (HTTP/1.0) is no browser. */
static bool api_host_is_address(const struct admin_request *r)
{
    struct h1_slice host;
    char text[INET_ADDRSTRLEN];
    struct in_addr a4;
    int port;

    if (!r->req->host.p)
        return true;
    h1_split_host(r->req->host, &host, &port);
    if (host.len && host.p[0] == '[')
        return true;                 /* an IPv6 literal: the parser checked it */
    if (host.len == 9 && strncasecmp(host.p, "localhost", 9) == 0)
        return true;
    if (host.len >= sizeof(text))
        return false;
    memcpy(text, host.p, host.len);
    text[host.len] = '\0';
    return inet_pton(AF_INET, text, &a4) == 1;
}

/* Mutating calls need the token whenever one is configured. */
static bool api_authorized(struct admin_server *s, const struct admin_request *r,
                           struct admin_reply *out)
{
    const struct h1_header *h;
    struct h1_slice v;

    if (!api_same_origin(r)) {
        admin_reply_error(out, 403, "a change from a web page of another origin is refused");
        log_warn("event=admin_denied why=\"cross-origin request\" peer=%s", r->peer);
        return false;
    }
    if (!s->token && !api_host_is_address(r)) {
        admin_reply_error(out, 403, "without admin.token_file, a change must name the admin by "
                                    "its address or localhost in Host");
        log_warn("event=admin_denied why=\"host is a name\" peer=%s", r->peer);
        return false;
    }
    if (!s->token)
        return true;
    h = h1_find_header(r->req->headers, r->req->nheaders, "authorization");
    if (!h) {
        out->www_authenticate = true;
        admin_reply_error(out, 401, "this call needs \"Authorization: Bearer TOKEN\" "
                                    "(the token is in admin.token_file)");
        log_warn("event=admin_denied why=\"no token\" peer=%s", r->peer);
        return false;
    }
    v = h->value;
    if (v.len > 7 && strncasecmp(v.p, "bearer ", 7) == 0) {
        v.p += 7;
        v.len -= 7;
        while (v.len && (*v.p == ' ' || *v.p == '\t')) {
            v.p++;
            v.len--;
        }
        if (api_token_equal(v.p, v.len, s->token))
            return true;
    }
    out->www_authenticate = true;
    admin_reply_error(out, 401, "bad token");
    log_warn("event=admin_denied why=\"bad token\" peer=%s", r->peer);
    return false;
}

/* After a reload's handover this process only finishes its work: a
 * change made here would never reach the process that serves, so the
 * client is told to connect again rather than answered 200. */
static bool api_serving(struct admin_server *s, struct admin_reply *out)
{
    if (!s->handed_over)
        return true;
    admin_reply_error(out, 503, "this process handed over to pid %d at a reload and is "
                                "finishing its work; connect again to reach the new one",
                      s->reload_info.new_pid);
    return false;
}

/* ---- reload ---- */

/* Start a reload (core/reload.h): 202 once the new process is starting;
 * the old one hands over when it is ready, and GET /api/v1/status shows
 * the new pid from then on. */
static void api_reload(struct admin_server *s, const struct admin_request *r,
                       struct admin_reply *out)
{
    char *errors = NULL;
    int new_pid = 0, rc;

    if (!s->reload) {
        admin_reply_error(out, 503, "reload is not available");
        return;
    }
    rc = s->reload(s->reload_ctx, &errors, &new_pid);
    if (rc == -EINVAL) {
        /* The config's own FILE:LINE:COL messages, one string each. */
        out->status = 400;
        out->content_type = "application/json";
        out->body.len = 0;
        admin_buf_puts(&out->body, "{\"error\":\"the config has errors; nothing was changed\","
                                   "\"details\":[");
        for (char *line = errors, *next, first = 1; line && *line; line = next, first = 0) {
            next = strchr(line, '\n');
            if (next)
                *next++ = '\0';
            if (!first)
                admin_buf_puts(&out->body, ",");
            admin_buf_json_str(&out->body, line);
        }
        admin_buf_puts(&out->body, "]}\n");
    } else if (rc == -EBUSY) {
        admin_reply_error(out, 409, "a reload is already in progress");
    } else if (rc == -ESHUTDOWN) {
        admin_reply_error(out, 409, "sluice is stopping");
    } else if (rc < 0) {
        admin_reply_error(out, 500, "cannot start the new process: %s", strerror(-rc));
    } else {
        log_info("event=admin_reload peer=%s new_pid=%d", r->peer, new_pid);
        out->status = 202;
        out->content_type = "application/json";
        admin_buf_printf(&out->body, "{\"status\":\"reloading\",\"pid\":%d,\"new_pid\":%d}\n",
                         (int)getpid(), new_pid);
    }
    free(errors);
}

/* ---- reads ---- */

static void api_status(struct admin_server *s, struct admin_reply *out)
{
    static const enum backend_state states[] = {
        BACKEND_UP, BACKEND_SLOW_START, BACKEND_DRAINING, BACKEND_DOWN, BACKEND_DISABLED,
    };
    static const char *const modes[] = { "tcp", "udp", "http", "dns" };
    const struct runtime *rt = s->rt;
    struct admin_buf *o = &out->body;

    out->status = 200;
    out->content_type = "application/json";
    admin_buf_printf(o, "{\"version\":\"%s\",\"pid\":%d,\"stopping\":%s,\"uptime_seconds\":%llu,",
                     SLUICE_VERSION, (int)getpid(), s->stopping ? "true" : "false",
                     (unsigned long long)((clock_wall_us() - s->start_wall_us) / 1000000));
    if (s->reload_info.new_pid) {
        /* The last reload this process started: `sluice ctl reload` reads
         * it to tell a failed start from a slow one. */
        admin_buf_printf(o, "\"reload\":{\"new_pid\":%d,\"result\":", s->reload_info.new_pid);
        admin_buf_json_str(o, s->reload_info.result);
        admin_buf_puts(o, ",\"why\":");
        admin_buf_json_str(o, s->reload_info.why);
        admin_buf_puts(o, "},");
    }
    admin_buf_puts(o, "\"listeners\":[");
    for (size_t i = 0; i < rt->nlisteners; i++) {
        const struct listener *l = &rt->listeners[i];
        admin_buf_puts(o, i ? ",{\"name\":" : "{\"name\":");
        admin_buf_json_str(o, l->conf->name);
        admin_buf_puts(o, ",\"address\":");
        admin_buf_json_str(o, l->conf->bind_text);
        admin_buf_printf(o, ",\"mode\":\"%s\",\"pool\":", modes[l->conf->mode]);
        if (l->pool)
            admin_buf_json_str(o, l->pool->conf->name);
        else
            admin_buf_puts(o, "null");
        admin_buf_printf(o, ",\"active_connections\":%llu,\"total_connections\":%llu}",
                         (unsigned long long)atomic_load(&l->connections_active),
                         (unsigned long long)atomic_load(&l->connections_total));
    }
    admin_buf_puts(o, "],\"pools\":[");
    for (size_t i = 0; i < rt->npools; i++) {
        const struct pool *p = &rt->pools[i];
        uint32_t count[8] = {0};
        int *st = malloc(p->nbackends * sizeof(*st) + 1);

        if (!st) {
            o->oom = true;
            return;
        }
        /* One load per backend, so the counts and the list agree. */
        for (uint32_t k = 0; k < p->nbackends; k++) {
            st[k] = backend_vacant(&p->backends[k]) ? -1 : atomic_load(&p->backends[k].state);
            if ((unsigned)st[k] < 8)
                count[st[k]]++;
        }
        admin_buf_puts(o, i ? ",{\"name\":" : "{\"name\":");
        admin_buf_json_str(o, p->conf->name);
        admin_buf_printf(o, ",\"algorithm\":\"%s\",\"states\":{",
                         config_balance_name(p->conf->balance));
        for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++)
            admin_buf_printf(o, "%s\"%s\":%u", k ? "," : "", backend_state_name(states[k]),
                             count[states[k]]);
        admin_buf_puts(o, "},\"backends\":[");
        for (uint32_t k = 0, shown = 0; k < p->nbackends; k++) {
            const struct backend *b = &p->backends[k];
            unsigned long long active = atomic_load(&b->active);
            if (st[k] < 0)
                continue;     /* a vacant discovery slot */
            admin_buf_puts(o, shown++ ? ",{\"name\":" : "{\"name\":");
            admin_buf_json_str(o, b->conf->name);
            admin_buf_puts(o, ",\"address\":");
            admin_buf_json_str(o, b->conf->address_text);
            /* active counts connections in L4 pools and requests in http
             * pools; both fields report it (docs/operations.md). */
            admin_buf_printf(o, ",\"state\":\"%s\",\"weight\":%u,\"active_connections\":%llu,"
                                "\"active_requests\":%llu,\"requests_total\":%llu,"
                                "\"failures_total\":%llu}",
                             backend_state_name((enum backend_state)st[k]),
                             (unsigned)atomic_load(&b->weight), active, active,
                             (unsigned long long)atomic_load(&b->total),
                             (unsigned long long)atomic_load(&b->failures));
        }
        admin_buf_puts(o, "]}");
        free(st);
    }
    admin_buf_puts(o, "]}\n");
}

/* ---- changes ---- */

enum api_action { API_DRAIN, API_ENABLE, API_DISABLE, API_WEIGHT };
static const char *const api_action_names[] = { "drain", "enable", "disable", "weight" };

/* {"weight": N} with N a whole number 0..BACKEND_WEIGHT_MAX, nothing else. */
static bool api_read_weight(const struct admin_request *r, struct admin_reply *out,
                            uint32_t *weight)
{
    const struct admin_json *w;
    struct admin_json *j;
    const char *err = NULL;
    bool ok = false;

    if (r->body_len == 0) {
        admin_reply_error(out, 400, "missing body; send {\"weight\": N}");
        return false;
    }
    if (!(j = admin_json_parse(r->body, r->body_len, &err))) {
        admin_reply_error(out, 400, "body is not valid JSON: %s", err);
        return false;
    }
    w = admin_json_get(j, "weight");
    if (j->type != ADMIN_JSON_OBJECT || !w || j->n != 1)
        admin_reply_error(out, 400, "expected {\"weight\": N} and nothing else");
    else if (w->type != ADMIN_JSON_NUMBER || !w->is_int || w->integer < 0 ||
             w->integer > BACKEND_WEIGHT_MAX)
        admin_reply_error(out, 400, "weight must be a whole number from 0 to %d",
                          BACKEND_WEIGHT_MAX);
    else {
        *weight = (uint32_t)w->integer;
        ok = true;
    }
    admin_json_free(j);
    return ok;
}

static void api_change_reply(struct admin_reply *out, const struct backend *b,
                             const char *action, bool changed, enum backend_state from,
                             uint32_t old_weight)
{
    struct admin_buf *o = &out->body;

    out->status = 200;
    out->content_type = "application/json";
    admin_buf_puts(o, "{\"pool\":");
    admin_buf_json_str(o, b->pool->conf->name);
    admin_buf_puts(o, ",\"backend\":");
    admin_buf_json_str(o, b->conf->name);
    admin_buf_printf(o, ",\"action\":\"%s\",\"changed\":%s,\"previous_state\":\"%s\","
                        "\"state\":\"%s\",\"previous_weight\":%u,\"weight\":%u}\n",
                     action, changed ? "true" : "false", backend_state_name(from),
                     backend_state_name((enum backend_state)atomic_load(&b->state)),
                     old_weight, (unsigned)atomic_load(&b->weight));
}

static void api_backend_change(struct admin_server *s, const struct admin_request *r,
                               struct admin_reply *out, const char *pool_name,
                               const char *backend_name, enum api_action action)
{
    enum backend_state from, to;
    struct pool *p = NULL;
    struct backend *b;
    uint32_t old_weight, weight = 0;
    char why[160];
    bool changed;

    if (!api_want(r, out, action == API_WEIGHT ? H1_PUT : H1_POST,
                  action == API_WEIGHT ? "PUT" : "POST") ||
        !api_authorized(s, r, out) || !api_serving(s, out))
        return;
    for (size_t i = 0; i < s->rt->npools && !p; i++)
        if (strcmp(s->rt->pools[i].conf->name, pool_name) == 0)
            p = &s->rt->pools[i];
    if (!p) {
        admin_reply_error(out, 404, "no pool named '%s'", pool_name);
        return;
    }
    if (!(b = pool_find_backend(p, backend_name))) {
        admin_reply_error(out, 404, "pool '%s' has no backend named '%s'", pool_name,
                          backend_name);
        return;
    }
    if (action == API_WEIGHT && !api_read_weight(r, out, &weight))
        return;

    from = (enum backend_state)atomic_load(&b->state);
    old_weight = atomic_load(&b->weight);
    to = from;
    switch (action) {
    case API_DRAIN:
        /* A disabled backend takes nothing already; "draining" it would
         * quietly undo the disable once drained backends come back. */
        if (from == BACKEND_DISABLED) {
            admin_reply_error(out, 409, "%s/%s is DISABLED; enable it before draining it",
                              pool_name, backend_name);
            return;
        }
        to = BACKEND_DRAINING;
        break;
    case API_ENABLE:
        /* Only operator states are undone; UP, SLOW_START and DOWN belong
         * to the health checker. */
        if (from == BACKEND_DRAINING || from == BACKEND_DISABLED)
            to = health_backend_passing(s->health, b) ? BACKEND_UP : BACKEND_DOWN;
        break;
    case API_DISABLE:
        to = BACKEND_DISABLED;
        break;
    case API_WEIGHT:
        break;
    }
    snprintf(why, sizeof(why), "admin %s from %s", api_action_names[action], r->peer);
    if (to != from)
        backend_set_state(b, to, why);
    if (action == API_WEIGHT)
        backend_set_weight(b, weight);
    changed = to != from || (action == API_WEIGHT && weight != old_weight);
    if (action == API_WEIGHT)
        log_info("event=admin_change action=weight pool=%s backend=%s from=%u to=%u "
                 "changed=%s peer=%s", pool_name, backend_name, old_weight, weight,
                 changed ? "yes" : "no", r->peer);
    else
        log_info("event=admin_change action=%s pool=%s backend=%s from=%s to=%s "
                 "changed=%s peer=%s", api_action_names[action], pool_name, backend_name,
                 backend_state_name(from), backend_state_name(to), changed ? "yes" : "no",
                 r->peer);
    api_change_reply(out, b, api_action_names[action], changed, from, old_weight);
}

/* ---- routing ---- */

static int api_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Splits the path after "/api/v1/" into percent-decoded segments. Returns
 * the count, or -1 for a bad escape or a segment too long to be a name. */
static int api_segments(struct h1_slice path, char seg[][API_MAX_SEGMENT], int max)
{
    int n = 0;
    uint32_t i = 0;

    while (i < path.len) {
        size_t len = 0;

        if (n == max)
            return max + 1;
        while (i < path.len && path.p[i] != '/') {
            char c = path.p[i];
            if (c == '%') {
                int hi, lo;
                if (i + 2 >= path.len + 0u || (hi = api_hex(path.p[i + 1])) < 0 ||
                    (lo = api_hex(path.p[i + 2])) < 0 || (hi == 0 && lo == 0))
                    return -1;
                c = (char)(hi << 4 | lo);
                i += 2;
            }
            if (len + 1 >= API_MAX_SEGMENT)
                return -1;
            seg[n][len++] = c;
            i++;
        }
        seg[n++][len] = '\0';
        i++;   /* the '/' */
    }
    return n;
}

void admin_api_handle(struct admin_server *s, const struct admin_request *r,
                      struct admin_reply *out)
{
    struct h1_slice path = r->req->path;
    char seg[6][API_MAX_SEGMENT];
    int n;

#define PATH_IS(lit) (path.len == sizeof(lit) - 1 && memcmp(path.p, lit, sizeof(lit) - 1) == 0)
    if (PATH_IS("/")) {
        if (api_want_read(r, out)) {
            out->status = 200;
            out->content_type = "text/html; charset=utf-8";
            admin_buf_puts(&out->body, admin_dashboard_html);
        }
        return;
    }
    if (PATH_IS("/healthz")) {
        if (api_want_read(r, out)) {
            out->status = s->stopping ? 503 : 200;
            out->content_type = "text/plain; charset=utf-8";
            admin_buf_puts(&out->body, s->stopping ? "stopping\n" : "ok\n");
        }
        return;
    }
    if (PATH_IS("/metrics")) {
        if (api_want_read(r, out)) {
            out->status = 200;
            out->content_type = "text/plain; version=0.0.4; charset=utf-8";
            metrics_render(&out->body, s->rt, s->workers, s->nworkers, s->start_wall_us,
                           s->peers);
        }
        return;
    }
    if (PATH_IS("/api/v1/status")) {
        if (api_want_read(r, out))
            api_status(s, out);
        return;
    }
    if (PATH_IS("/api/v1/reload")) {
        if (api_want(r, out, H1_POST, "POST") && api_authorized(s, r, out) &&
            api_serving(s, out))
            api_reload(s, r, out);
        return;
    }
#undef PATH_IS
    if (path.len > 8 && memcmp(path.p, "/api/v1/", 8) == 0) {
        path.p += 8;
        path.len -= 8;
        n = api_segments(path, seg, 5);
        if (n < 0) {
            admin_reply_error(out, 400, "bad path: a bad %%-escape or a name longer than %d",
                              API_MAX_SEGMENT - 1);
            return;
        }
        if (n == 5 && strcmp(seg[0], "pools") == 0 && strcmp(seg[2], "backends") == 0 &&
            seg[1][0] && seg[3][0]) {
            for (int a = 0; a < 4; a++) {
                if (strcmp(seg[4], api_action_names[a]) == 0) {
                    api_backend_change(s, r, out, seg[1], seg[3], (enum api_action)a);
                    return;
                }
            }
        }
    }
    admin_reply_error(out, 404, "no such endpoint: %.*s; see GET / or docs/operations.md",
                      (int)(r->req->path.len > 200 ? 200 : r->req->path.len), r->req->path.p);
}
