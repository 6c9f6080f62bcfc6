/* Blind TCP relay in two I/O models, to measure what io_uring would save a
 * proxy on this host: the same relay (one upstream connection per client,
 * bytes copied both ways, no parsing) once with epoll + recv/send and once
 * with io_uring (multishot accept, multishot recv into a provided-buffer ring,
 * sends queued and submitted together with the wait, DEFER_TASKRUN).
 * Driven by bench/relay_io.py; not part of sluice.
 *
 *   relay_io epoll|uring LISTEN_PORT UPSTREAM_PORT[,UPSTREAM_PORT...]
 *
 * Each client connection gets its own upstream connection, to the upstream
 * ports in turn.
 * Single thread, loopback only, runs until SIGTERM. Messages are small
 * (HTTP requests and short answers), so a send that does not complete at
 * once is treated as fatal for the connection pair: an experiment, not a
 * proxy. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define BUF_SIZE 16384
#define NBUFS 1024

#define MAX_UP 16

static int peer_of[MAX_FD];
static int up_ports[MAX_UP], n_up, next_up;
static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 1024)) {
        perror("listen");
        exit(1);
    }
    return fd;
}

/* Blocking connect, then non-blocking: the relay's set-up is not measured. */
static int connect_upstream(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static int pair_up(int c)
{
    int one = 1, u;
    if (c >= MAX_FD)
        return -1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    u = connect_upstream(up_ports[next_up++ % n_up]);
    if (u < 0 || u >= MAX_FD) {
        if (u >= 0)
            close(u);
        return -1;
    }
    peer_of[c] = u;
    peer_of[u] = c;
    return u;
}

/* ---- epoll: what sluice and NGINX do ---- */

/* Close a client connection and its upstream one (epfd < 0: io_uring).
 * shutdown() first: an io_uring request on the peer holds its file open,
 * and shutdown ends that request and the connection at once. */
static void (*before_close)(void);   /* io_uring: submit queued sends first */

static void close_pair(int epfd, int fd)
{
    int p = peer_of[fd];
    if (before_close)
        before_close();
    if (p >= 0) {
        if (epfd >= 0)
            epoll_ctl(epfd, EPOLL_CTL_DEL, p, NULL);
        peer_of[p] = -1;
        shutdown(p, SHUT_RDWR);
        close(p);
    }
    if (epfd >= 0)
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    peer_of[fd] = -1;
    close(fd);
}

static int run_epoll(int lfd)
{
    static char buf[BUF_SIZE];
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd }, evs[64];
    int epfd = epoll_create1(0);
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    while (!stop) {
        int n = epoll_wait(epfd, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK), u;
                if (c < 0)
                    continue;
                if ((u = pair_up(c)) < 0) {
                    close(c);
                    continue;
                }
                ev.events = EPOLLIN;
                ev.data.fd = c;
                epoll_ctl(epfd, EPOLL_CTL_ADD, c, &ev);
                ev.data.fd = u;
                epoll_ctl(epfd, EPOLL_CTL_ADD, u, &ev);
                continue;
            }
            if (peer_of[fd] < 0)
                continue;           /* closed by an earlier event of this batch */
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                close_pair(epfd, fd);
                continue;
            }
            if (send(peer_of[fd], buf, r, MSG_NOSIGNAL | MSG_DONTWAIT) != r)
                close_pair(epfd, fd);
        }
    }
    return 0;
}

/* ---- io_uring ---- */

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_POLL };
#define UD(op, fd, buf) (((__u64)(op) << 56) | ((__u64)(buf) << 32) | (__u32)(fd))

static struct io_uring ring;
/* Variants, to see where io_uring's saving comes from:
 *   uring        multishot recv into provided buffers, sends queued
 *   uring-ssend  multishot recv, then a send() system call at once
 *   upoll        multishot poll (readiness, as epoll) + recv()/send() calls
 *   upoll-qsend  multishot poll + recv() call, sends queued */
static bool ring_recv = true, queue_send = true;
static struct io_uring_buf_ring *br;
static char *bufs;

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
    if (!s) {
        io_uring_submit(&ring);
        s = io_uring_get_sqe(&ring);
    }
    return s;
}

static void arm_recv(int fd)
{
    struct io_uring_sqe *s = sqe_get();
    if (!ring_recv) {
        io_uring_prep_poll_multishot(s, fd, POLLIN);
        io_uring_sqe_set_data64(s, UD(OP_POLL, fd, 0));
        return;
    }
    io_uring_prep_recv_multishot(s, fd, NULL, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = 0;
    io_uring_sqe_set_data64(s, UD(OP_RECV, fd, 0));
}

static int free_bids[NBUFS], n_free;

static void buf_return(int bid)
{
    if (!ring_recv) {
        free_bids[n_free++] = bid;
        return;
    }
    io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
                          io_uring_buf_ring_mask(NBUFS), 0);
    io_uring_buf_ring_advance(br, 1);
}

static void submit_queued(void)
{
    io_uring_submit(&ring);
}

/* Pass len bytes of buffer bid on to fd's peer: queued, or sent at once
 * and the buffer given back. */
static void forward(int fd, int bid, int len)
{
    char *b = bufs + (size_t)bid * BUF_SIZE;

    if (queue_send) {
        struct io_uring_sqe *s = sqe_get();
        io_uring_prep_send(s, peer_of[fd], b, len, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(s, UD(OP_SEND, peer_of[fd], bid));
        return;
    }
    send(peer_of[fd], b, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    buf_return(bid);
}

/* upoll variants: fd is readable; one recv() per readiness, as sluice does
 * for small messages. */
static void on_poll(int fd)
{
    ssize_t r;
    int bid;

    if (!n_free)
        return;
    bid = free_bids[--n_free];
    r = recv(fd, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, MSG_DONTWAIT);
    if (r > 0) {
        forward(fd, bid, (int)r);
        return;
    }
    buf_return(bid);
    if (r == 0 || (errno != EAGAIN && errno != EINTR))
        close_pair(-1, fd);
}

static void arm_accept(int lfd)
{
    struct io_uring_sqe *s = sqe_get();
    io_uring_prep_multishot_accept(s, lfd, NULL, NULL, 0);
    io_uring_sqe_set_data64(s, UD(OP_ACCEPT, lfd, 0));
}

static int run_uring(int lfd)
{
    struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                          IORING_SETUP_COOP_TASKRUN };
    struct io_uring_buf_reg reg = { 0 };
    int ret = io_uring_queue_init_params(4096, &ring, &p);
    if (ret) {
        fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-ret));
        return 1;
    }
    if (posix_memalign((void **)&br, 4096, NBUFS * sizeof(struct io_uring_buf)) ||
        !(bufs = malloc((size_t)NBUFS * BUF_SIZE)))
        return 1;
    io_uring_buf_ring_init(br);
    reg.ring_addr = (unsigned long)br;
    reg.ring_entries = NBUFS;
    reg.bgid = 0;
    if ((ret = io_uring_register_buf_ring(&ring, &reg, 0))) {
        fprintf(stderr, "register_buf_ring: %s\n", strerror(-ret));
        return 1;
    }
    for (int i = 0; i < NBUFS; i++)
        free_bids[n_free++] = NBUFS - 1 - i;
    for (int i = 0; i < NBUFS; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * BUF_SIZE, BUF_SIZE, i,
                              io_uring_buf_ring_mask(NBUFS), i);
    io_uring_buf_ring_advance(br, NBUFS);
    arm_accept(lfd);
    while (!stop) {
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        ret = io_uring_submit_and_wait(&ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -ETIME) {
            fprintf(stderr, "submit_and_wait: %s\n", strerror(-ret));
            return 1;
        }
        io_uring_for_each_cqe(&ring, head, cqe) {
            __u64 ud = cqe->user_data;
            int op = ud >> 56, fd = (int)(__u32)ud, res = cqe->res;
            seen++;
            if (op == OP_ACCEPT) {
                if (res >= 0) {
                    int u = pair_up(res);
                    if (u < 0) {
                        close(res);
                    } else {
                        arm_recv(res);
                        arm_recv(u);
                    }
                }
                if (!(cqe->flags & IORING_CQE_F_MORE))
                    arm_accept(lfd);
            } else if (op == OP_RECV) {
                if (res > 0) {
                    forward(fd, cqe->flags >> IORING_CQE_BUFFER_SHIFT, res);
                    if (!(cqe->flags & IORING_CQE_F_MORE))
                        arm_recv(fd);
                } else if (res == -ENOBUFS) {
                    arm_recv(fd);
                } else if (!(cqe->flags & IORING_CQE_F_MORE) && peer_of[fd] >= 0) {
                    /* end of stream or error: close both; the peer's
                     * multishot recv then ends with an error we ignore */
                    close_pair(-1, fd);
                }
            } else if (op == OP_POLL) {
                if (peer_of[fd] >= 0)
                    on_poll(fd);
                if (!(cqe->flags & IORING_CQE_F_MORE) && peer_of[fd] >= 0)
                    arm_recv(fd);
            } else if (op == OP_SEND) {
                buf_return((int)((ud >> 32) & 0xffffff));
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: relay_io epoll|uring LISTEN_PORT UPSTREAM_PORT[,UPSTREAM_PORT...]\n");
        return 2;
    }
    for (char *t = strtok(argv[3], ","); t && n_up < MAX_UP; t = strtok(NULL, ","))
        up_ports[n_up++] = atoi(t);
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(atoi(argv[2]));
    if (!strcmp(argv[1], "epoll"))
        return run_epoll(lfd);
    before_close = submit_queued;
    ring_recv = strncmp(argv[1], "upoll", 5) != 0;
    queue_send = strcmp(argv[1], "uring-ssend") && strcmp(argv[1], "upoll");
    return run_uring(lfd);
}
