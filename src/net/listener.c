#include "net/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

int listener_set_freebind(int fd, int family)
{
    int one = 1;

#ifdef IPV6_FREEBIND
    /* Linux 4.15 and later; older kernels take IP_FREEBIND on any inet socket. */
    if (family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one)) == 0)
        return 0;
#endif
    if (setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0)
        return -errno;
    return 0;
}

const char *listener_bind_hint(int err)
{
    if (err == EADDRNOTAVAIL)
        return " (set freebind: true to listen on an address this host does not have yet, "
               "e.g. a keepalived VIP)";
    return "";
}

int listener_socket(const struct conf_listener *c)
{
    return listener_socket_type(c, listener_datagram(c->mode) ? SOCK_DGRAM : SOCK_STREAM);
}

int listener_socket_type(const struct conf_listener *c, int type)
{
    int fd = socket(c->bind.ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* One socket per worker: the kernel spreads connections (and, for UDP,
     * keeps each client's datagrams on one worker) without a shared accept lock. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (c->bind.ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* Linux copies TCP_NODELAY into every accepted socket: set once here
     * rather than once per connection (one system call less per accept). */
    if (type == SOCK_STREAM)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* HTTP clients speak first: let the kernel wake us only once the
     * request has arrived, so it can be read right after accept (see
     * conn_start) instead of one epoll round later, and an idle connect
     * costs nothing. */
    if (c->mode == LISTENER_HTTP)
        setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof(one));
    /* freebind: bind an address this host does not have (yet), such as a
     * VIP that keepalived moves here on failover; the socket takes its
     * traffic from the moment the address arrives. */
    if (c->freebind) {
        int err = listener_set_freebind(fd, c->bind.ss.ss_family);
        if (err < 0) {
            close(fd);
            return err;
        }
    }
    if (bind(fd, (const struct sockaddr *)&c->bind.ss, c->bind.len) < 0)
        goto fail;
    if (type == SOCK_STREAM && listen(fd, 4096) < 0)
        goto fail;
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}
