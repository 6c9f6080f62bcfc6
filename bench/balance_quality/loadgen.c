/* loadgen: the HTTP/1.1 load client of bench/balance_quality.py.
 *
 *   loadgen PORT open RATE DURATION_S MAX_CONNS
 *   loadgen PORT closed CONNS DURATION_S
 *
 * open:   requests are scheduled at a fixed RATE (per second) for DURATION_S,
 *         whatever the answers do (an open loop: the same offered load for
 *         every balancer). Each goes out on an idle keep-alive connection, or
 *         a new one (up to MAX_CONNS), or waits for one. Its latency counts
 *         from its scheduled time, so waiting in the client is included (no
 *         coordinated omission).
 * closed: CONNS keep-alive connections, each sending its next request as soon
 *         as the previous answer is complete, for DURATION_S. Latency counts
 *         from the send.
 *
 * Every request is `GET / HTTP/1.1` to 127.0.0.1:PORT. Latencies are raw, one
 * per request (wrk, by contrast, adds synthetic samples to its histogram to
 * correct for coordinated omission, which makes its closed-loop percentiles
 * disagree with its own request count). The answer's X-Origin header is
 * counted per origin. After DURATION_S no request is started; those in flight
 * get up to 5 s more, then count as timeouts (with the time waited so far as
 * their latency).
 *
 * Prints one JSON object. Build: cc -O2 -o loadgen loadgen.c -lm */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GRACE_NS (5LL * 1000000000LL)
#define MAX_ORIGINS 16

enum { C_FREE, C_CONNECTING, C_IDLE, C_BUSY };

struct conn {
    int fd, state;
    int64_t sched_ns;      /* latency counts from here */
    char buf[16384];
    size_t len, head_len;
    long clen;
    int status;
    char origin[48];
};

static const char REQ[] = "GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: sluice-loadgen\r\n\r\n";
static struct conn *conns;
static int nconns, maxconns, ep, port;
static int *idle_stack, nidle;
static int64_t *pending, npending, pend_head, pend_cap;
static int64_t *lat, nlat, lat_cap;
static long long ok, errors, non2xx, timeouts, started, opened;
static char onames[MAX_ORIGINS][48];
static long long ocounts[MAX_ORIGINS];
static int norigins;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void record(int64_t l)
{
    if (nlat == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 65536;
        lat = realloc(lat, lat_cap * sizeof(*lat));
        if (!lat) {
            perror("realloc");
            exit(2);
        }
    }
    lat[nlat++] = l;
}

static void count_origin(const char *o)
{
    for (int i = 0; i < norigins; i++)
        if (!strcmp(onames[i], o)) {
            ocounts[i]++;
            return;
        }
    if (norigins < MAX_ORIGINS) {
        snprintf(onames[norigins], sizeof(onames[0]), "%s", o);
        ocounts[norigins++] = 1;
    }
}

static void conn_close(struct conn *c)
{
    if (c->state == C_IDLE) {     /* drop it from the idle stack */
        for (int i = 0; i < nidle; i++)
            if (&conns[idle_stack[i]] == c) {
                idle_stack[i] = idle_stack[--nidle];
                break;
            }
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = C_FREE;
}

static long long err_send;

static int send_req(struct conn *c)
{
    ssize_t n = send(c->fd, REQ, sizeof(REQ) - 1, MSG_NOSIGNAL);
    c->len = 0;
    c->head_len = 0;
    c->clen = -1;
    c->status = 0;
    c->origin[0] = 0;
    c->state = C_BUSY;
    if (n == (ssize_t)(sizeof(REQ) - 1))
        return 0;
    err_send++;
    return -1;
}

static int closed_mode;
static int64_t t_end_ns;
static int open_conn(int64_t sched);

/* The request on c failed (a connection error, EOF, or a malformed answer):
 * count it, close c, and keep the load going: closed loop, a new connection
 * takes its place; open loop, a waiting request gets a new connection. */
static long long err_connect, err_eof, err_io, err_parse;

static void fail(struct conn *c, int64_t now)
{
    errors++;
    record(now - c->sched_ns);
    conn_close(c);
    if (closed_mode && now < t_end_ns) {
        started++;
        open_conn(now);
    } else if (!closed_mode && pend_head < npending) {
        open_conn(pending[pend_head++]);
    }
}

/* Open a connection that will carry the request scheduled at sched. */
static int open_conn(int64_t sched)
{
    int i;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct epoll_event ev;
    int one = 1;

    for (i = 0; i < nconns; i++)
        if (conns[i].state == C_FREE)
            break;
    if (i == nconns) {
        if (nconns == maxconns)
            return -1;
        nconns++;
    }
    struct conn *c = &conns[i];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("socket");
        exit(2);
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    c->sched_ns = sched;
    c->state = C_CONNECTING;
    opened++;
    ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
    ev.data.u32 = (uint32_t)i;
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        errors++;      /* refused at once: counted, not replaced (no retry storm) */
        err_connect++;
        record(now_ns() - sched);
        conn_close(c);
    }
    return 0;
}

/* Start the request scheduled at sched: on an idle connection, a new one,
 * or wait for one. */
static void dispatch(int64_t sched)
{
    started++;
    if (nidle) {
        struct conn *c = &conns[idle_stack[--nidle]];
        c->sched_ns = sched;
        if (send_req(c) < 0)
            fail(c, now_ns());
        return;
    }
    if (open_conn(sched) == 0)
        return;
    if (npending == pend_cap) {
        /* compact, then grow */
        memmove(pending, pending + pend_head, (npending - pend_head) * sizeof(*pending));
        npending -= pend_head;
        pend_head = 0;
        if (npending == pend_cap) {
            pend_cap = pend_cap ? pend_cap * 2 : 4096;
            pending = realloc(pending, pend_cap * sizeof(*pending));
        }
    }
    pending[npending++] = sched;
}

/* c is ready for a new request: a waiting one, the next closed-loop one, or
 * it goes idle. */
static void ready(struct conn *c, int closed, int64_t now, int64_t t_end)
{
    if (closed) {
        if (now < t_end) {
            started++;
            c->sched_ns = now;
            if (send_req(c) < 0)
                fail(c, now);
            return;
        }
    } else if (pend_head < npending) {
        c->sched_ns = pending[pend_head++];
        if (send_req(c) < 0)
            fail(c, now);
        return;
    }
    c->state = C_IDLE;
    idle_stack[nidle++] = (int)(c - conns);
}

/* Parse what arrived; returns 1 when the response is complete, 0 for more,
 * -1 on a malformed answer. */
static int parse(struct conn *c)
{
    if (!c->head_len) {
        char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!e)
            return c->len >= sizeof(c->buf) ? -1 : 0;
        c->head_len = (size_t)(e - c->buf) + 4;
        if (c->len < 12 || memcmp(c->buf, "HTTP/1.", 7))
            return -1;
        c->status = atoi(c->buf + 9);
        for (char *p = memmem(c->buf, c->head_len, "\r\n", 2); p && p < e; ) {
            char *line = p + 2, *next = memmem(line, (size_t)(e + 2 - line), "\r\n", 2);
            if (!next)
                break;
            if (!strncasecmp(line, "content-length:", 15))
                c->clen = strtol(line + 15, NULL, 10);
            else if (!strncasecmp(line, "x-origin:", 9)) {
                char *v = line + 9;
                while (*v == ' ')
                    v++;
                size_t n = (size_t)(next - v);
                if (n >= sizeof(c->origin))
                    n = sizeof(c->origin) - 1;
                memcpy(c->origin, v, n);
                c->origin[n] = 0;
            }
            p = next;
        }
        if (c->clen < 0)
            return -1;       /* the origins always send Content-Length */
    }
    return c->len >= c->head_len + (size_t)c->clen ? 1 : 0;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (!nlat)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)nlat);
    if (i >= (size_t)nlat)
        i = (size_t)nlat - 1;
    return (double)lat[i] / 1000.0;
}

int main(int argc, char **argv)
{
    int closed;
    double rate = 0, dur;
    int64_t t0, t_end, interval = 0, next;

    if (argc < 5) {
        fprintf(stderr, "usage: loadgen PORT open RATE DURATION_S MAX_CONNS | PORT closed CONNS DURATION_S\n");
        return 2;
    }
    port = atoi(argv[1]);
    closed = !strcmp(argv[2], "closed");
    dur = atof(argv[4]);
    if (closed) {
        maxconns = atoi(argv[3]);
    } else {
        rate = atof(argv[3]);
        maxconns = argc > 5 ? atoi(argv[5]) : 1000;
        interval = (int64_t)(1e9 / rate);
    }
    conns = calloc((size_t)maxconns, sizeof(*conns));
    idle_stack = calloc((size_t)maxconns, sizeof(*idle_stack));
    ep = epoll_create1(EPOLL_CLOEXEC);
    t0 = now_ns();
    t_end = t0 + (int64_t)(dur * 1e9);
    closed_mode = closed;
    t_end_ns = t_end;
    next = t0;
    if (closed)
        for (int i = 0; i < maxconns; i++) {
            started++;
            open_conn(t0);
        }

    struct epoll_event evs[256];
    for (;;) {
        int64_t now = now_ns(), wait_ns;
        if (!closed)
            while (next <= now && next < t_end) {
                dispatch(next);
                next += interval;
            }
        int inflight = 0;
        for (int i = 0; i < nconns; i++)
            inflight += conns[i].state == C_BUSY || conns[i].state == C_CONNECTING;
        if (now >= t_end && (closed || next >= t_end) && !inflight && pend_head == npending)
            break;
        if (now >= t_end + GRACE_NS) {
            for (int i = 0; i < nconns; i++)
                if (conns[i].state == C_BUSY || conns[i].state == C_CONNECTING) {
                    timeouts++;
                    record(now - conns[i].sched_ns);
                }
            for (; pend_head < npending; pend_head++) {
                timeouts++;
                record(now - pending[pend_head]);
            }
            break;
        }
        wait_ns = (!closed && next < t_end ? next : t_end + GRACE_NS) - now;
        if (wait_ns > 50000000)
            wait_ns = 50000000;
        if (wait_ns < 0)
            wait_ns = 0;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = wait_ns};
        int n = epoll_pwait2(ep, evs, 256, &ts, NULL);
        if (n < 0 && errno != EINTR) {
            perror("epoll_pwait2");
            return 2;
        }
        now = now_ns();
        for (int k = 0; k < n; k++) {
            struct conn *c = &conns[evs[k].data.u32];
            uint32_t e = evs[k].events;
            if (c->state == C_FREE)
                continue;
            if (c->state == C_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof(err);
                if (!(e & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                    continue;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || (e & (EPOLLERR | EPOLLHUP))) {
                    err_connect++;
                    fail(c, now);
                    continue;
                }
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = evs[k].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                if (send_req(c) < 0)
                    fail(c, now);
                continue;
            }
            if (c->state == C_IDLE) {
                /* the server closed an idle connection: forget it */
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                    conn_close(c);
                    if (!closed && pend_head < npending)
                        open_conn(pending[pend_head++]);
                }
                continue;
            }
            /* C_BUSY */
            for (;;) {
                ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
                if (r > 0) {
                    c->len += (size_t)r;
                    int p = parse(c);
                    if (p < 0) {
                        err_parse++;
                        fail(c, now);
                        break;
                    }
                    if (p == 0)
                        continue;
                    record(now - c->sched_ns);
                    if (c->status >= 200 && c->status < 300)
                        ok++;
                    else
                        non2xx++;
                    count_origin(c->origin[0] ? c->origin : "?");
                    ready(c, closed, now, t_end);
                    break;
                }
                if (r < 0 && errno == EAGAIN)
                    break;
                if (r == 0)
                    err_eof++;
                else
                    err_io++;
                fail(c, now);     /* EOF or error before the answer was complete */
                break;
            }
        }
    }

    qsort(lat, (size_t)nlat, sizeof(*lat), cmp64);
    double sum = 0;
    for (int64_t i = 0; i < nlat; i++)
        sum += (double)lat[i];
    double secs = (double)(now_ns() - t0) / 1e9;
    printf("{\"mode\": \"%s\", \"started\": %lld, \"ok\": %lld, \"non2xx\": %lld, \"errors\": %lld, "
           "\"timeouts\": %lld, \"err_connect\": %lld, \"err_eof\": %lld, \"err_io\": %lld, "
           "\"err_parse\": %lld, \"err_send\": %lld, \"connections_opened\": %lld, \"duration_s\": %.3f, "
           "\"window_s\": %.3f, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, "
           "\"p999_us\": %.1f, \"max_us\": %.1f, \"mean_us\": %.1f, \"origins\": {",
           closed ? "closed" : "open", started, ok, non2xx, errors, timeouts, err_connect, err_eof,
           err_io, err_parse, err_send, opened, secs, dur,
           pct(50), pct(90), pct(99), pct(99.9), nlat ? (double)lat[nlat - 1] / 1000.0 : 0.0,
           nlat ? sum / (double)nlat / 1000.0 : 0.0);
    for (int i = 0; i < norigins; i++)
        printf("%s\"%s\": %lld", i ? ", " : "", onames[i], ocounts[i]);
    printf("}}\n");
    return 0;
}
