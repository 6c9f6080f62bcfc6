/* How a rule's `host` reads: none, an exact name, or "*.suffix". The config
 * already lowercased it; a trailing dot (an absolute DNS name) is left out,
 * as it is from the request's host. */
#include <string.h>

#include "route/internal.h"

enum route_host_kind route_host_of(const struct conf_route *r, const char **name, size_t *len)
{
    const char *h = r->host;
    if (!h) {
        *name = "";
        *len = 0;
        return ROUTE_HOST_ANY;
    }
    size_t n = strlen(h);
    if (n > 0 && h[n - 1] == '.')
        n--;
    if (n >= 2 && h[0] == '*' && h[1] == '.') {
        *name = h + 2;
        *len = n - 2;
        return ROUTE_HOST_WILDCARD;
    }
    *name = h;
    *len = n;
    return ROUTE_HOST_EXACT;
}
