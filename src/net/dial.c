#include "net/dial.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"

int64_t dial_now_ms(void)
{
    return (int64_t)(clock_mono_us() / 1000u);
}

int dial_wait(int fd, short events, int64_t deadline_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int64_t left = deadline_ms - dial_now_ms();

    if (left <= 0)
        return -1;
    return poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left) == 1 ? 0 : -1;
}

int dial_tcp(const char *host, const char *port, int64_t deadline_ms)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
    int fd = -1;

    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        int e = 0;
        socklen_t len = sizeof(e);

        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if ((connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) ||
            dial_wait(fd, POLLOUT, deadline_ms) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0 || e) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}
