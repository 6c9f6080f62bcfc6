/* Socket addresses: parse "host:port" / "[v6]:port", format for logs. */
#ifndef SLUICE_NET_ADDR_H
#define SLUICE_NET_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* An address plus its length, the way the socket calls want it. */
struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Longest text addr_format() writes: "[v6]:port" plus NUL. */
#define ADDR_TEXT_MAX 64

/* Parse a numeric "1.2.3.4:80", "[::1]:80" or "*:80" / ":80" (any IPv4).
 * Host names are not resolved here. Returns 0, or -EINVAL with *why set to a
 * short static explanation. */
int addr_parse(const char *text, struct addr *out, const char **why);

/* "1.2.3.4:80" or "[::1]:80". Returns buf. */
char *addr_format(const struct addr *a, char *buf, size_t size);

/* Same, without the port. */
char *addr_format_host(const struct addr *a, char *buf, size_t size);

int addr_port(const struct addr *a);
int addr_equal(const struct addr *a, const struct addr *b);

/* The longest prefix among the n blocks that holds a's host (an IPv4
 * client on a dual-stack socket, ::ffff:a.b.c.d, counts as IPv4), or -1
 * when none does. */
struct conf_cidr;
int addr_cidr_match(const struct addr *a, const struct conf_cidr *cidrs, size_t n);

#endif
