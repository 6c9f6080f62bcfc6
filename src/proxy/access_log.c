#include "proxy/access_log.h"

#include <stdio.h>

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
     * them, so they need no escaping here. */
    if (format == ACCESS_FORMAT_JSON) {
        n = snprintf(line, sizeof(line),
                     "{\"time\":\"%s\",\"proto\":\"%s\",\"listener\":\"%s\",\"client\":\"%s\","
                     "\"pool\":\"%s\",\"backend\":%s%s%s,\"backend_address\":%s%s%s,"
                     "\"bytes_in\":%llu,\"bytes_out\":%llu,\"connect_ms\":%.3f,"
                     "\"duration_ms\":%.3f,\"tries\":%u,\"end\":\"%s\"}\n",
                     when, r->proto, r->listener, client, r->pool,
                     r->backend ? "\"" : "", r->backend ? bname : "null", r->backend ? "\"" : "",
                     r->backend ? "\"" : "", r->backend ? baddr : "null", r->backend ? "\"" : "",
                     (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
                     (double)r->connect_us / 1000.0, (double)r->duration_us / 1000.0, r->tries,
                     end_reason_name(r->end));
    } else {
        n = snprintf(line, sizeof(line),
                     "%s %s %s %s %s/%s %s in=%llu out=%llu connect_ms=%.3f duration_ms=%.3f "
                     "tries=%u end=%s\n",
                     when, r->proto, r->listener, client, r->pool, bname, baddr,
                     (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
                     (double)r->connect_us / 1000.0, (double)r->duration_us / 1000.0, r->tries,
                     end_reason_name(r->end));
    }
    if (n > 0)
        log_access_write(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}
