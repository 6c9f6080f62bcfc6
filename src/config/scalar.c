/* The scalar forms of the config language: durations and sizes. */
#include "config/config.h"
#include "config/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

/* Reads the leading decimal digits of s into *v. Returns the first byte after
 * them, or NULL when there are none or the number does not fit in 64 bits. */
static const char *config_parse_digits(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    const char *p = s;

    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return NULL;
        x = x * 10 + d;
    }
    if (p == s)
        return NULL;
    *v = x;
    return p;
}

int config_parse_duration(const char *s, uint64_t *ms)
{
    static const struct { const char *unit; uint64_t ms; } units[] = {
        { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
    };
    const char *p;
    uint64_t v;

    if (!s || !(p = config_parse_digits(s, &v)))
        return -EINVAL;
    /* A bare number is refused: "30" could mean seconds or milliseconds, and
     * guessing wrong by a factor of 1000 is worse than asking. */
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].unit) != 0)
            continue;
        if (v > UINT64_MAX / units[i].ms)
            return -EINVAL;
        *ms = v * units[i].ms;
        return 0;
    }
    return -EINVAL;
}

int config_parse_size(const char *s, uint64_t *bytes)
{
    const char *p;
    uint64_t v, mult;

    if (!s || !(p = config_parse_digits(s, &v)))
        return -EINVAL;
    switch (*p) {
    case '\0':
        *bytes = v;
        return 0;
    case 'k': case 'K':
        mult = 1024;
        break;
    case 'm': case 'M':
        mult = 1024 * 1024;
        break;
    case 'g': case 'G':
        mult = 1024 * 1024 * 1024;
        break;
    default:
        return -EINVAL;
    }
    if (p[1] != '\0' || v > UINT64_MAX / mult)
        return -EINVAL;
    *bytes = v * mult;
    return 0;
}

const char *config_duration_text(char *buf, size_t size, uint64_t ms)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, size, "%" PRIu64 "h", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, size, "%" PRIu64 "m", ms / 60000);
    else if (ms % 1000 == 0)
        snprintf(buf, size, "%" PRIu64 "s", ms / 1000);
    else
        snprintf(buf, size, "%" PRIu64 "ms", ms);
    return buf;
}

int config_want_addr_port(struct config_diag *d, const char *owner, const char *path,
                          const struct config_node *n, struct addr *out)
{
    const char *s, *why = "";
    char shown[96];

    if (config_want_string(d, owner, path, n, &s) < 0)
        return -1;
    if (addr_parse(s, out, &why) < 0 || addr_port(out) == 0) {
        config_diag_error(d, n->line, n->col, "%s: %s: '%s' is not IP:PORT or [IPv6]:PORT%s%s",
                          owner, path, config_show(shown, sizeof(shown), s), *why ? ": " : "",
                          why);
        return -1;
    }
    return 0;
}
