#include "proxy/access_log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"

static enum access_format format = ACCESS_FORMAT_COMBINED;

void access_log_set_format(enum access_format f)
{
    format = f;
}

void access_log_l4(const struct access_l4 *r)
{
    char line[1024], when[40], client[ADDR_TEXT_MAX], baddr[ADDR_TEXT_MAX];
    const char *bname = "-";
    int n;

    if (!log_access_enabled())
        return;
    log_format_time(when, sizeof(when), clock_wall_us());
    addr_format(r->client, client, sizeof(client));
    if (r->backend) {
        bname = r->backend->conf->name;
        addr_format(&r->backend->conf->address, baddr, sizeof(baddr));
    } else {
        baddr[0] = '-';
        baddr[1] = '\0';
    }
    /* Names come from the config, which refuses quotes and control bytes in
     * them, and a server name is a checked DNS name (tls_hello_name), so
     * they need no escaping here. */
    if (format == ACCESS_FORMAT_JSON) {
        n = snprintf(line, sizeof(line),
                     "{\"time\":\"%s\",\"proto\":\"%s\",\"listener\":\"%s\",\"client\":\"%s\","
                     "\"pool\":\"%s\",\"backend\":%s%s%s,\"backend_address\":%s%s%s,"
                     "\"bytes_in\":%llu,\"bytes_out\":%llu,\"connect_ms\":%.3f,"
                     "\"duration_ms\":%.3f,\"tries\":%u,\"end\":\"%s\"%s%s%s%s}\n",
                     when, r->proto, r->listener, client, r->pool,
                     r->backend ? "\"" : "", r->backend ? bname : "null", r->backend ? "\"" : "",
                     r->backend ? "\"" : "", r->backend ? baddr : "null", r->backend ? "\"" : "",
                     (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
                     (double)r->connect_us / 1000.0, (double)r->duration_us / 1000.0, r->tries,
                     end_reason_name(r->end), r->routed ? ",\"server_name\":" : "",
                     r->routed && r->server_name ? "\"" : "",
                     r->routed ? (r->server_name ? r->server_name : "null") : "",
                     r->routed && r->server_name ? "\"" : "");
    } else {
        n = snprintf(line, sizeof(line),
                     "%s %s %s %s %s/%s %s in=%llu out=%llu connect_ms=%.3f duration_ms=%.3f "
                     "tries=%u end=%s%s%s\n",
                     when, r->proto, r->listener, client, r->pool, bname, baddr,
                     (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
                     (double)r->connect_us / 1000.0, (double)r->duration_us / 1000.0, r->tries,
                     end_reason_name(r->end), r->routed ? " sni=" : "",
                     r->routed ? (r->server_name ? r->server_name : "-") : "");
    }
    if (n > 0)
        log_access_write(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* Copy a slice for a quoted log field: quotes, backslashes, control bytes
 * and bytes that are not UTF-8 are escaped, the way the format reads them,
 * so a client can neither forge log lines nor make a json line invalid. */
static void field(char *dst, size_t size, struct h1_slice s)
{
    char tmp[1024];
    size_t n = s.len < sizeof(tmp) - 1 ? s.len : sizeof(tmp) - 1;

    if (!s.p || s.len == 0) {
        snprintf(dst, size, "-");
        return;
    }
    memcpy(tmp, s.p, n);
    tmp[n] = '\0';
    if (format == ACCESS_FORMAT_JSON)
        log_quote_json(dst, size, tmp);
    else
        log_quote(dst, size, tmp);
}

void access_log_http(const struct access_http *r)
{
    char line[4096], client[ADDR_TEXT_MAX], when[64], method[64], target[2048], referer[512],
        ua[512], host[256], grpc[32] = "";
    const char *bname = r->backend ? r->backend->conf->name : "-";
    int n;

    if (!log_access_enabled())
        return;
    addr_format_host(r->client, client, sizeof(client));
    field(method, sizeof(method), r->method);
    field(target, sizeof(target), r->target);
    field(referer, sizeof(referer), r->referer);
    field(ua, sizeof(ua), r->user_agent);
    field(host, sizeof(host), r->host);
    if (format == ACCESS_FORMAT_JSON) {
        /* A trusted peer's X-Request-Id is kept as sent: it may hold '\\'. */
        char rid[128];

        log_quote_json(rid, sizeof(rid), r->request_id ? r->request_id : "");
        if (r->grpc_status)
            snprintf(grpc, sizeof(grpc), ",\"grpc_status\":%d", r->grpc_status);
        log_format_time(when, sizeof(when), clock_wall_us());
        n = snprintf(line, sizeof(line),
                     "{\"time\":\"%s\",\"proto\":\"http\",\"listener\":\"%s\",\"client\":\"%s\","
                     "\"method\":\"%s\",\"target\":\"%s\",\"version\":\"%s\",\"host\":\"%s\","
                     "\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"referer\":\"%s\","
                     "\"user_agent\":\"%s\",\"route\":%d,\"pool\":%s%s%s,\"backend\":%s%s%s,"
                     "\"connect_ms\":%.3f,\"response_ms\":%.3f,\"total_ms\":%.3f,\"tries\":%u,"
                     "\"request_id\":\"%s\",\"end\":\"%s\"%s}\n",
                     when, r->listener, client, method, target, r->version, host, r->status,
                     (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out, referer, ua,
                     r->route, r->pool ? "\"" : "", r->pool ? r->pool : "null", r->pool ? "\"" : "",
                     r->backend ? "\"" : "", r->backend ? bname : "null", r->backend ? "\"" : "",
                     (double)r->connect_us / 1000.0, (double)r->response_us / 1000.0,
                     (double)r->total_us / 1000.0, r->tries, rid, end_reason_name(r->end), grpc);
    } else {
        time_t secs = (time_t)(clock_wall_us() / 1000000u);
        struct tm tm;
        gmtime_r(&secs, &tm);
        strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S +0000", &tm);
        if (r->grpc_status)
            snprintf(grpc, sizeof(grpc), " grpc_status=%d", r->grpc_status);
        n = snprintf(line, sizeof(line),
                     "%s - - [%s] \"%s %s %s\" %d %llu \"%s\" \"%s\" listener=%s route=%d "
                     "pool=%s backend=%s connect_ms=%.3f response_ms=%.3f total_ms=%.3f tries=%u "
                     "request_id=%s end=%s%s\n",
                     client, when, method, target, r->version, r->status,
                     (unsigned long long)r->bytes_out, referer, ua, r->listener, r->route,
                     r->pool ? r->pool : "-", bname, (double)r->connect_us / 1000.0,
                     (double)r->response_us / 1000.0, (double)r->total_us / 1000.0, r->tries,
                     r->request_id ? r->request_id : "-", end_reason_name(r->end), grpc);
    }
    if (n > 0)
        log_access_write(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}
