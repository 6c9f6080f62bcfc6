#include "net/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

static int parse_port(const char *s, const char **why)
{
    char *end;
    long v;

    if (*s == '\0') {
        *why = "missing port after ':'";
        return -1;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (*end != '\0' || errno || v < 0 || v > 65535 || end == s) {
        *why = "port must be a number from 0 to 65535";
        return -1;
    }
    return (int)v;
}

int addr_parse(const char *text, struct addr *out, const char **why)
{
    char host[ADDR_TEXT_MAX];
    const char *colon, *hs;
    size_t hl;
    int port;
    static const char *dummy;

    if (!why)
        why = &dummy;
    memset(out, 0, sizeof(*out));
    if (text[0] == '[') {
        const char *rb = strchr(text, ']');
        if (!rb || rb[1] != ':') {
            *why = "expected [IPv6]:port";
            return -EINVAL;
        }
        hs = text + 1;
        hl = (size_t)(rb - hs);
        colon = rb + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon) {
            *why = "expected host:port";
            return -EINVAL;
        }
        if (memchr(text, ':', (size_t)(colon - text))) {
            *why = "IPv6 addresses need brackets: [::1]:port";
            return -EINVAL;
        }
        hs = text;
        hl = (size_t)(colon - text);
    }
    if (hl >= sizeof(host)) {
        *why = "host too long";
        return -EINVAL;
    }
    memcpy(host, hs, hl);
    host[hl] = '\0';
    port = parse_port(colon + 1, why);
    if (port < 0)
        return -EINVAL;

    if (text[0] == '[') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
            *why = "not a numeric IPv6 address";
            return -EINVAL;
        }
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*s6);
        return 0;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
    if (hl == 0 || strcmp(host, "*") == 0) {
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
        *why = "not a numeric IPv4 address (host names are not resolved)";
        return -EINVAL;
    }
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    out->len = sizeof(*s4);
    return 0;
}

/* Dotted quad without inet_ntop, which goes through sprintf: this runs for
 * every proxied request (X-Forwarded-For), and the printf machinery was
 * the largest libc cost of a keep-alive request after the system calls. */
static void format_ipv4(const struct in_addr *in, char *buf, size_t size)
{
    const unsigned char *o = (const unsigned char *)&in->s_addr;
    char tmp[16], *p = tmp;

    for (int i = 0; i < 4; i++) {
        unsigned v = o[i];
        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
        *p++ = i < 3 ? '.' : '\0';
    }
    if ((size_t)(p - tmp) <= size)
        memcpy(buf, tmp, (size_t)(p - tmp));
    else if (size)
        buf[0] = '\0';
}

char *addr_format_host(const struct addr *a, char *buf, size_t size)
{
    if (a->ss.ss_family == AF_INET) {
        format_ipv4(&((const struct sockaddr_in *)&a->ss)->sin_addr, buf, size);
        return buf;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t)size);
    } else {
        snprintf(buf, size, "-");
    }
    return buf;
}

char *addr_format(const struct addr *a, char *buf, size_t size)
{
    char host[ADDR_TEXT_MAX];

    addr_format_host(a, host, sizeof(host));
    if (a->ss.ss_family == AF_INET6)
        snprintf(buf, size, "[%s]:%d", host, addr_port(a));
    else if (a->ss.ss_family == AF_INET)
        snprintf(buf, size, "%s:%d", host, addr_port(a));
    else
        snprintf(buf, size, "-");
    return buf;
}

int addr_port(const struct addr *a)
{
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return 0;
}

int addr_equal(const struct addr *a, const struct addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family)
        return 0;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return 0;
}

/* Blocks are few (trusted proxies, a region's client networks): a scan. */
int addr_cidr_match(const struct addr *peer, const struct conf_cidr *cidrs, size_t n)
{
    const uint8_t *a;
    int family = peer->ss.ss_family;
    uint8_t mapped[4];
    int best = -1;

    if (family == AF_INET) {
        a = (const uint8_t *)&((const struct sockaddr_in *)&peer->ss)->sin_addr;
    } else if (family == AF_INET6) {
        a = ((const struct sockaddr_in6 *)&peer->ss)->sin6_addr.s6_addr;
        /* An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d. */
        static const uint8_t v4map[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, v4map, 12) == 0) {
            memcpy(mapped, a + 12, 4);
            a = mapped;
            family = AF_INET;
        }
    } else {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const struct conf_cidr *c = &cidrs[i];
        unsigned bits = c->prefix, full = bits / 8, rest = bits % 8;

        if (c->family != family)
            continue;
        if (memcmp(a, c->addr, full) != 0)
            continue;
        if (rest && ((a[full] ^ c->addr[full]) & (uint8_t)(0xff << (8 - rest))))
            continue;
        if ((int)bits > best)
            best = (int)bits;
    }
    return best;
}
