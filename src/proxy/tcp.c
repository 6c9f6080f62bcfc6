/* L4 TCP: one session per client connection, read top to bottom:
 *
 *   accept ─▶ [PROXY_IN: read the PROXY header] ─▶ [HELLO: with routes, read the
 *   TLS ClientHello's server name and pick the pool] ─▶ CONNECTING (pick a backend,
 *   non-blocking connect; on refusal or timeout, the next backend, bounded)
 *   ─▶ FORWARDING (both directions pumped independently; EOF on one side is
 *   passed on as shutdown(SHUT_WR) of the other) ─▶ closed, counted, logged.
 *
 * Sockets are registered once, edge-triggered; the session keeps readable /
 * writable flags per socket and clears them only on EAGAIN. Bytes move with
 * splice(2) through a pipe per direction (taken from the worker's pipe pool
 * when the direction first carries data), or through a buffer for bytes
 * sluice itself had to read (the PROXY header's trailing bytes, the
 * ClientHello routes looked at) and when no pipe can be had.
 *
 * A session pumps at most PUMP_BUDGET bytes per event, then re-queues itself
 * as a loop task, so one bulk transfer cannot starve the other connections
 * of its worker. The session is freed from its task, never inside one of its
 * own callbacks. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/list.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/proxy_proto.h"
#include "admin/metrics.h"
#include "proxy/access_log.h"
#include "proxy/end.h"
#include "proxy/proxy.h"
#include "proxy/pump.h"
#include "peers/peers.h"
#include "proto/tls.h"
#include "proto/tls_hello.h"
#include "route/route.h"

#define TCP_MAX_TRIES 4
#define PROXY_IN_TIMEOUT_MS 10000
/* The longest PROXY header sent to a backend (v1 with two IPv6 addresses
 * is 104 bytes). Bytes read from the client before a backend is picked
 * leave this much of their buffer free, so that the header still fits in
 * front of them in one buffer: without it, a full buffer lost its last
 * bytes to the header. */
#define TCP_PROXY_OUT_MAX 128

enum tcp_state {
    TCP_PROXY_IN,        /* waiting for the client's PROXY header */
    TCP_HELLO,           /* routes: reading the client's TLS ClientHello */
    TCP_TLS_HANDSHAKE,   /* a tls listener: the client's handshake */
    TCP_CONNECTING,      /* connect() to a backend in progress */
    TCP_UP_TLS,          /* a pool with tls: the handshake with the backend */
    TCP_FORWARDING,
    TCP_CLOSED,          /* ended; freed by the task at the end of the iteration */
};

/* Owner: its worker (linked in the worker's session list). */
struct tcp_session {
    struct loop_task task;      /* resume pumping, or free once CLOSED */
    struct io cio;              /* client socket */
    struct io bio;              /* backend socket; fd -1 when none */
    struct worker *w;
    struct listener *l;
    struct pool *pool;
    struct balancer *balancer;
    struct backend *backend;    /* connecting to / connected to; counted in active */
    struct addr client;         /* the client (from PROXY header when trusted) */
    struct addr local;          /* the address the client connected to */
    enum tcp_state state;
    bool c_readable, c_writable, b_readable, b_writable;
    struct pump_dir up;          /* client → backend */
    struct pump_dir down;        /* backend → client */
    enum end_reason first_close;  /* who sent the first FIN */
    struct timer timer;         /* PROXY header / connect / idle timeout */
    uint64_t last_active_ms;
    uint64_t start_us;
    uint64_t connect_start_us;
    uint64_t connect_us;        /* time the successful connect took */
    uint8_t tries;
    struct backend *tried[TCP_MAX_TRIES];
    SSL *tls;                   /* a tls listener's client side; NULL = plain */
    int tls_want;               /* handshake: TLS_WANT_READ/WRITE it waits for */
    SSL *btls;                  /* a pool with tls: the backend side; NULL = plain */
    int btls_want;
    char *server_name;          /* routes: the TLS server name they saw (a DNS name) */
    struct tcp_session *prev, *next;
};

static void session_end(struct tcp_session *s, enum end_reason why);
static void connect_next(struct tcp_session *s);
static void route_connection(struct tcp_session *s, const char *server_name);
static void pump(struct tcp_session *s);
static bool rate_limit_admit(struct tcp_session *s);
static void backend_drop(struct tcp_session *s);

static struct tcp_session *session_of_task(struct loop_task *t)
{
    return (struct tcp_session *)t;   /* task is the first member */
}

/* ---- session list of the worker ---- */

static void list_add(struct worker *w, struct tcp_session *s)
{
    struct tcp_session *head = w->sessions;   /* void * in struct worker */

    DLIST_PUSH(head, s);
    w->sessions = head;
    w->nsessions++;
}

static void list_del(struct worker *w, struct tcp_session *s)
{
    struct tcp_session *head = w->sessions;

    DLIST_REMOVE(head, s);
    w->sessions = head;
    w->nsessions--;
}

/* ---- small helpers ---- */

static void set_nodelay(int fd)
{
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Close with RST instead of FIN: used when the other side reset, so this
 * peer does not mistake a broken stream for a complete one. */
static void close_with_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static void io_close(struct tcp_session *s, struct io *io, bool reset)
{
    if (io->fd < 0)
        return;
    /* EPOLL_CTL_DEL before close(): while a reload spawns the new process,
     * that child holds a copy of every descriptor until its exec, and a
     * socket closed here in that moment would stay in the epoll set,
     * reporting events for freed memory. */
    loop_del(&s->w->loop, io);
    if (reset)
        close_with_reset(io->fd);
    else
        close(io->fd);
    io->fd = -1;
}

static void backend_release(struct tcp_session *s)
{
    if (s->backend) {
        atomic_fetch_sub_explicit(&s->backend->active, 1, memory_order_relaxed);
        s->backend = NULL;
    }
}

static void idle_touch(struct tcp_session *s)
{
    s->last_active_ms = clock_now_ms();
}

/* ---- access log ---- */

static void log_session(struct tcp_session *s, enum end_reason why)
{
    struct access_l4 rec = {
        .proto = "tcp",
        .listener = s->l->conf->name,
        .client = &s->client,
        .pool = s->pool->conf->name,
        .backend = s->tried[s->tries ? s->tries - 1 : 0],
        .bytes_in = s->up.bytes,
        .bytes_out = s->down.bytes,
        .duration_us = clock_mono_us() - s->start_us,
        .connect_us = s->connect_us,
        .tries = s->tries,
        .end = why,
        .routed = s->l->routes != NULL,
        .server_name = s->server_name,
    };

    if (s->tries == 0)
        rec.backend = NULL;
    metrics_l4_session(s->w, s->pool, &rec);
    access_log_l4(&rec);
}

/* ---- ending ---- */

static void session_end(struct tcp_session *s, enum end_reason why)
{
    struct listener *l = s->l;
    bool reset_client = why == END_BACKEND_RESET;
    bool reset_backend = why == END_CLIENT_RESET;

    if (s->state == TCP_CLOSED)
        return;
    timer_cancel(&s->w->loop.timers, &s->timer);
    if (why == END_BACKEND_RESET && s->backend) {
        atomic_fetch_add_explicit(&s->backend->failures, 1, memory_order_relaxed);
        backend_report(s->backend, false);
    }
    tls_free(s->tls);
    s->tls = NULL;
    tls_free(s->btls);
    s->btls = NULL;
    io_close(s, &s->cio, reset_client);
    io_close(s, &s->bio, reset_backend);
    pump_dir_release(s->w, &s->up);
    pump_dir_release(s->w, &s->down);
    backend_release(s);
    atomic_fetch_add_explicit(&l->bytes_in, s->up.bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->bytes_out, s->down.bytes, memory_order_relaxed);
    atomic_fetch_sub_explicit(&l->connections_active, 1, memory_order_relaxed);
    if (why == END_NO_BACKEND)
        atomic_fetch_add_explicit(&l->no_backend, 1, memory_order_relaxed);
    if (why == END_PROXY_BAD)
        atomic_fetch_add_explicit(&l->proxy_header_errors, 1, memory_order_relaxed);
    log_session(s, why);
    s->state = TCP_CLOSED;
    list_del(s->w, s);
    loop_task_queue(&s->w->loop, &s->task);
    worker_connection_ended(s->w);
}

static void session_free(struct tcp_session *s)
{
    free(s->server_name);
    free(s);
}

void tcp_close_all(struct worker *w)
{
    while (w->sessions)
        session_end(w->sessions, END_SHUTDOWN);
}

void tcp_sweep(struct worker *w)
{
    struct tcp_session *s = w->sessions, *next;

    for (; s; s = next) {
        next = s->next;
        if (s->backend && atomic_load_explicit(&s->backend->drain_expired, memory_order_relaxed))
            session_end(s, END_DRAINED);
    }
}

/* ---- timers ---- */

static void timer_fired(struct timer *t)
{
    struct tcp_session *s = (void *)((char *)t - offsetof(struct tcp_session, timer));
    uint64_t idle = s->l->conf->client_idle_ms, now = clock_now_ms();

    switch (s->state) {
    case TCP_PROXY_IN:
    case TCP_TLS_HANDSHAKE:
        session_end(s, END_IDLE_TIMEOUT);
        break;
    case TCP_HELLO:
        /* No whole ClientHello in time (a client that waits for the server
         * to speak first, say): the routes decide without a server name. */
        route_connection(s, "");
        break;
    case TCP_CONNECTING:
    case TCP_UP_TLS:
        /* This backend did not answer in time: count it, try the next. */
        atomic_fetch_add_explicit(&s->backend->failures, 1, memory_order_relaxed);
        backend_report(s->backend, false);
        log_debug("event=connect_timeout pool=%s backend=%s",
                  s->pool->conf->name, s->backend->conf->name);
        backend_drop(s);
        if (s->tries >= TCP_MAX_TRIES || s->tries >= s->pool->nbackends) {
            session_end(s, END_CONNECT_TIMEOUT);
            return;
        }
        connect_next(s);
        break;
    case TCP_FORWARDING:
        /* Idle check is lazy: activity only stamps last_active_ms, and the
         * timer re-arms itself here instead of on every byte. */
        if (now - s->last_active_ms >= idle)
            session_end(s, END_IDLE_TIMEOUT);
        else
            timer_arm(&s->w->loop.timers, &s->timer, s->last_active_ms + idle);
        break;
    case TCP_CLOSED:
        break;
    }
}

/* ---- pumping bytes ---- */

static void pump(struct tcp_session *s)
{
    enum pump_result r;
    bool more = false, up_failed;
    bool moved = false;

    r = s->tls || s->btls ? pump_dir_ends(s->w, &s->up, s->tls, s->cio.fd, s->btls, s->bio.fd,
                                          &s->c_readable, &s->b_writable, &moved)
               : pump_dir(s->w, &s->up, s->cio.fd, s->bio.fd, &s->c_readable, &s->b_writable,
                          &moved);
    if (r == PUMP_SRC_ERROR) {
        session_end(s, END_CLIENT_RESET);
        return;
    }
    /* Writing to the backend failed: it is gone, typically reset because
     * it answered and closed without reading all the client sent (an
     * HTTP 413, say). Its answer may already wait in its socket or our
     * pipe: pass it to the client below before ending, as a direct
     * connection would have delivered it. */
    up_failed = r == PUMP_DST_ERROR;
    if (up_failed)
        s->b_readable = true;   /* its answer may have come without an event yet */
    more |= r == PUMP_MORE;
    if (s->up.eof && s->first_close == END_NONE)
        s->first_close = END_CLIENT_CLOSE;

    r = s->tls || s->btls ? pump_dir_ends(s->w, &s->down, s->btls, s->bio.fd, s->tls, s->cio.fd,
                                          &s->b_readable, &s->c_writable, &moved)
               : pump_dir(s->w, &s->down, s->bio.fd, s->cio.fd, &s->b_readable, &s->c_writable,
                          &moved);
    if (r == PUMP_SRC_ERROR) {
        session_end(s, END_BACKEND_RESET);
        return;
    }
    if (r == PUMP_DST_ERROR) {
        session_end(s, END_CLIENT_RESET);
        return;
    }
    if (up_failed) {
        session_end(s, END_BACKEND_RESET);
        return;
    }
    more |= r == PUMP_MORE;
    if (s->down.eof && s->first_close == END_NONE)
        s->first_close = END_BACKEND_CLOSE;

    if (moved)
        idle_touch(s);
    if (s->up.shut && s->down.shut) {
        session_end(s, s->first_close);
        return;
    }
    if (more)
        loop_task_queue(&s->w->loop, &s->task);
}

static void task_cb(struct loop_task *t)
{
    struct tcp_session *s = session_of_task(t);

    if (s->state == TCP_CLOSED)
        session_free(s);
    else if (s->state == TCP_FORWARDING)
        pump(s);
}

/* A socket error that epoll reported (EPOLLERR) without data to read. */
static int pending_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);

    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    return err;
}

/* ---- the client side ---- */

/* The PROXY header sent to the backend: its length in hdr, or -1. */
static int proxy_header(const struct tcp_session *s, uint8_t *hdr, size_t size)
{
    int version = s->pool->conf->send_proxy == PROXY_SEND_V1 ? 1 : 2;

    return proxy_proto_write(version, &s->client, &s->local, hdr, size);
}

static void start_forwarding(struct tcp_session *s)
{
    s->state = TCP_FORWARDING;
    s->connect_us = clock_mono_us() - s->connect_start_us;
    backend_observe_latency(s->backend, s->connect_us, s->connect_start_us + s->connect_us);
    idle_touch(s);
    timer_arm(&s->w->loop.timers, &s->timer, clock_now_ms() + s->l->conf->client_idle_ms);

    if (s->pool->conf->send_proxy != PROXY_SEND_NONE && !s->pool->tls) {
        /* The header must precede every byte of the client's stream,
         * including any already read along with an incoming header. (A
         * TLS pool's went out in the clear before its handshake.) */
        uint8_t hdr[TCP_PROXY_OUT_MAX];
        int n = proxy_header(s, hdr, sizeof(hdr));
        struct buf *b = buf_get(&s->w->bufs);

        if (n < 0 || !b) {
            buf_put(&s->w->bufs, b);
            session_end(s, END_NO_MEMORY);
            return;
        }
        buf_append(b, hdr, (uint32_t)n);
        /* Fits whole: the readers left TCP_PROXY_OUT_MAX bytes free. */
        if (s->up.buf) {
            buf_append(b, s->up.buf->data + s->up.buf->head, buf_len(s->up.buf));
            buf_put(&s->w->bufs, s->up.buf);
        }
        s->up.buf = b;   /* its bytes count in bytes_in like the client's */
    }
    pump(s);
}

/* Close the socket to the current backend (and its TLS) and let it go. */
static void backend_drop(struct tcp_session *s)
{
    tls_free(s->btls);
    s->btls = NULL;
    s->btls_want = 0;
    io_close(s, &s->bio, false);
    backend_release(s);
}

/* The backend's connect, TLS handshake or PROXY header failed: it counts
 * against the backend, and the next one is tried. */
static void backend_failed(struct tcp_session *s)
{
    timer_cancel(&s->w->loop.timers, &s->timer);
    atomic_fetch_add_explicit(&s->backend->failures, 1, memory_order_relaxed);
    backend_report(s->backend, false);
    backend_drop(s);
    connect_next(s);
}

/* A pool with tls: the handshake with the backend, then forwarding. A
 * failure counts against the backend and tries the next, like a refused
 * connect. */
static void up_tls_step(struct tcp_session *s)
{
    char ip[ADDR_TEXT_MAX], who[320];
    int r;

    if (!s->btls) {
        addr_format_host(&s->backend->conf->address, ip, sizeof(ip));
        if (!(s->btls = tls_client_conn(s->pool->tls, s->bio.fd, ip))) {
            session_end(s, END_NO_MEMORY);
            return;
        }
    }
    r = tls_handshake_step(s->btls, &s->btls_want, &s->b_readable, &s->b_writable);
    if (r == 0)
        return;
    timer_cancel(&s->w->loop.timers, &s->timer);
    if (r == 1) {
        backend_report(s->backend, true);
        start_forwarding(s);
        return;
    }
    snprintf(who, sizeof(who), "pool=%s backend=%s", s->pool->conf->name, s->backend->conf->name);
    tls_log_failure(who, &s->backend->conf->address);
    backend_failed(s);
}

/* A TLS pool's PROXY header goes before the TLS handshake, in the clear, as
 * HAProxy's send-proxy with ssl and NGINX's proxy_protocol with proxy_ssl
 * send it, and as a backend's PROXY-then-TLS listener reads it. A socket
 * just connected takes its hundred bytes at once; if not, or on an error,
 * the backend counts as failed and the next is tried. false: so handled. */
static bool send_proxy_in_clear(struct tcp_session *s)
{
    uint8_t hdr[TCP_PROXY_OUT_MAX];
    int n = proxy_header(s, hdr, sizeof(hdr));

    if (n > 0 && send(s->bio.fd, hdr, (size_t)n, MSG_NOSIGNAL) == n)
        return true;
    if (n < 0) {
        session_end(s, END_NO_MEMORY);
        return false;
    }
    log_debug("event=connect_failed pool=%s backend=%s error=\"the PROXY header could not be sent\"",
              s->pool->conf->name, s->backend->conf->name);
    backend_failed(s);
    return false;
}

static void backend_cb(struct io *io, uint32_t events)
{
    struct tcp_session *s = (void *)((char *)io - offsetof(struct tcp_session, bio));
    int err;

    if (s->state == TCP_CLOSED)
        return;
    if (s->state == TCP_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        err = pending_error(io->fd);
        if (err == 0 && (events & EPOLLOUT)) {
            s->b_writable = true;
            s->b_readable = (events & (EPOLLIN | EPOLLRDHUP)) != 0;
            if (s->pool->tls) {
                if (s->pool->conf->send_proxy != PROXY_SEND_NONE && !send_proxy_in_clear(s))
                    return;
                s->state = TCP_UP_TLS;      /* the connect timer bounds it too */
                up_tls_step(s);
                return;
            }
            timer_cancel(&s->w->loop.timers, &s->timer);
            backend_report(s->backend, true);
            start_forwarding(s);
            return;
        }
        /* Refused or unreachable: this backend failed; the client does not
         * need to know while another one can take it. */
        log_debug("event=connect_failed pool=%s backend=%s error=\"%s\"", s->pool->conf->name,
                  s->backend->conf->name, strerror(err ? err : ECONNREFUSED));
        backend_failed(s);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->b_readable = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        s->b_writable = true;
    if (s->state == TCP_UP_TLS) {
        up_tls_step(s);
        return;
    }
    /* An error (a reset) is acted on after pumping, not before: what the
     * backend sent before it still waits in the socket and must reach the
     * client (reading SO_ERROR first would also clear it, so that the
     * pump would take the reset for a clean end). */
    pump(s);
    if ((events & EPOLLERR) && s->state == TCP_FORWARDING && pending_error(io->fd) != 0)
        session_end(s, END_BACKEND_RESET);
}

/* Pick the next backend not tried yet and start a non-blocking connect. */
static void connect_next(struct tcp_session *s)
{
    uint64_t hash = 0;
    bool has_hash = balance_hash_l4(s->pool->conf, &s->client, &hash);
    struct balance_req req = {.exclude = (const struct backend *const *)s->tried,
                              .nexclude = s->tries, .hash = hash, .has_hash = has_hash};

    while (s->tries < TCP_MAX_TRIES) {
        struct backend *b = balancer_pick(s->balancer, &req);
        const struct addr *a;
        int fd;

        if (!b) {
            session_end(s, s->tries && !s->balancer->last_resort ? END_CONNECT_FAILED
                                                                  : END_NO_BACKEND);
            return;
        }
        s->tried[s->tries++] = b;
        req.nexclude = s->tries;
        a = &b->conf->address;
        fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            session_end(s, END_NO_MEMORY);
            return;
        }
        set_nodelay(fd);
        s->connect_start_us = clock_mono_us();
        if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
            int err = errno;
            atomic_fetch_add_explicit(&b->failures, 1, memory_order_relaxed);
            backend_report(b, false);
            log_debug("event=connect_failed pool=%s backend=%s error=\"%s\"",
                      s->pool->conf->name, b->conf->name, strerror(err));
            close(fd);
            continue;
        }
        s->backend = b;
        atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->total, 1, memory_order_relaxed);
        s->bio.fd = fd;
        s->bio.cb = backend_cb;
        s->b_readable = s->b_writable = false;
        if (loop_add(&s->w->loop, &s->bio, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
            session_end(s, END_NO_MEMORY);
            return;
        }
        s->state = TCP_CONNECTING;
        timer_arm(&s->w->loop.timers, &s->timer,
                  clock_now_ms() + s->pool->conf->connect_timeout_ms);
        return;
    }
    session_end(s, END_CONNECT_FAILED);
}

/* A tls listener's handshake; once done, the session connects. Its time is
 * bounded like the PROXY header's. */
static void tls_step(struct tcp_session *s)
{
    int r = tls_handshake_step(s->tls, &s->tls_want, &s->c_readable, &s->c_writable);
    char who[160];

    if (r < 0) {
        snprintf(who, sizeof(who), "listener=%s", s->l->conf->name);
        tls_log_failure(who, &s->client);
        atomic_fetch_add_explicit(&s->l->tls_handshake_errors, 1, memory_order_relaxed);
        session_end(s, END_CLIENT_RESET);
    } else if (r == 1) {
        timer_cancel(&s->w->loop.timers, &s->timer);
        if (s->l->routes)
            route_connection(s, tls_server_name(s->tls));
        else
            connect_next(s);
    }
}

/* The listener's routes pick the pool from what the connection shows: the
 * server name the client asked for ("" or NULL: none) and its address.
 * Without a match, the listener's own pool. */
static void route_connection(struct tcp_session *s, const char *server_name)
{
    struct route_request rr = {0};
    const struct conf_route *route;
    struct conf_pool *cp = NULL;
    char name[TLS_HELLO_NAME_MAX + 1];

    timer_cancel(&s->w->loop.timers, &s->timer);
    /* What the client sent as its name is logged and matched only as a
     * lower-case DNS name (a terminating listener's comes from OpenSSL
     * unchecked); anything else counts as no name. */
    if (server_name && tls_hello_name((const uint8_t *)server_name, strlen(server_name), name))
        s->server_name = strdup(name);
    if (s->up.buf && buf_len(s->up.buf) == 0) {
        buf_put(&s->w->bufs, s->up.buf);   /* the pump holds a buffer only with bytes in it */
        s->up.buf = NULL;
    }
    rr.host.p = s->server_name ? s->server_name : "";
    rr.host.len = (uint32_t)strlen(rr.host.p);
    rr.path.p = "/";
    rr.path.len = 1;
    rr.method = H1_OTHER;
    rr.peer = &s->client;
    route = route_match(s->l->routes, &rr);
    if (route)
        cp = route->action == ROUTE_SPLIT ? route_split_pick(route, balance_rand(&s->w->rng))
                                          : route->pool;
    if (cp) {
        s->pool = runtime_pool(s->w->rt, cp);
        s->balancer = &s->w->balancers[runtime_pool_index(s->w->rt, s->pool)];
    }
    log_debug("event=tcp_route listener=%s server_name=\"%s\" route=%d pool=%s",
              s->l->conf->name, rr.host.p, route ? (int)route->index + 1 : 0,
              s->pool->conf->name);
    connect_next(s);
}

/* Room for client bytes read before a backend is picked: the buffer's
 * free space less what a PROXY header out needs in front of them. */
static uint32_t early_room(const struct buf *b)
{
    return buf_room(b) > TCP_PROXY_OUT_MAX ? buf_room(b) - TCP_PROXY_OUT_MAX : 0;
}

/* Read what the client sent into b (flags: 0 or MSG_PEEK). true: bytes
 * came. false: wait for more (c_readable cleared), or the session ended
 * because the client closed or failed. */
static bool client_read_into(struct tcp_session *s, struct buf *b, int flags)
{
    ssize_t n = recv(s->cio.fd, b->data + b->tail, early_room(b), flags);

    if (n > 0) {
        b->tail += (uint32_t)n;
        return true;
    }
    if (n < 0 && errno == EAGAIN)
        s->c_readable = false;
    else if (n == 0 && s->state == TCP_HELLO && buf_len(b))
        s->up.eof = true;   /* a half-close after bytes: read_hello routes them */
    else
        session_end(s, n == 0 ? END_CLIENT_CLOSE : END_CLIENT_RESET);
    return false;
}

/* Routes without tls: read the ClientHello into up.buf (which may hold the
 * bytes after a PROXY header already), where it stays to go to the backend
 * first, and route on its server name. Not TLS, or a hello too long for
 * the buffer: routed without a name. */
static void read_hello(struct tcp_session *s)
{
    char name[TLS_HELLO_NAME_MAX + 1];
    struct buf *b;
    int r = TLS_HELLO_NEED_MORE;

    if (!s->up.buf && !(s->up.buf = buf_get(&s->w->bufs))) {
        session_end(s, END_NO_MEMORY);
        return;
    }
    b = s->up.buf;
    for (;;) {
        if (buf_len(b)) {
            r = tls_hello_sni((const uint8_t *)b->data + b->head, buf_len(b), name);
            if (r != TLS_HELLO_NEED_MORE)
                break;
        }
        if (early_room(b) == 0) {
            if (b->head == 0)
                break;                  /* a hello longer than the buffer */
            buf_compact(b);
        }
        if (!client_read_into(s, b, 0) && !s->up.eof)
            return;
        /* The client's FIN came after some bytes but before a whole
         * ClientHello: they still go to a backend (routed without a name)
         * instead of being dropped, and the pump passes the FIN on after
         * them while the backend's answer flows back. */
        if (s->up.eof)
            break;
    }
    route_connection(s, r == TLS_HELLO_OK ? name : "");
}

/* The client is admitted (PROXY header read, rate limit passed): a TLS
 * handshake first when the listener has tls, else straight to a backend.
 * A handshake costs more than the limit's check, so it comes after. */
static void client_ready(struct tcp_session *s)
{
    uint64_t t = s->l->conf->client_idle_ms;

    if (!s->tls && s->l->routes) {
        s->state = TCP_HELLO;
        timer_arm(&s->w->loop.timers, &s->timer, clock_now_ms() + s->l->conf->client_header_ms);
        s->c_readable = true;
        read_hello(s);
        return;
    }
    if (!s->tls) {
        connect_next(s);
        return;
    }
    s->state = TCP_TLS_HANDSHAKE;
    timer_arm(&s->w->loop.timers, &s->timer,
              clock_now_ms() + (t < PROXY_IN_TIMEOUT_MS ? t : PROXY_IN_TIMEOUT_MS));
    s->c_readable = s->c_writable = true;
    tls_step(s);
}

/* Read the PROXY header; bytes after it stay in up.buf for the backend. */
static void read_proxy_header(struct tcp_session *s)
{
    struct proxy_proto_info info;
    struct buf *b;
    int r;

    if (!s->up.buf && !(s->up.buf = buf_get(&s->w->bufs))) {
        session_end(s, END_NO_MEMORY);
        return;
    }
    b = s->up.buf;
    for (;;) {
        /* With TLS the bytes after the header are the handshake's, which
         * OpenSSL reads from the socket itself: look without taking, and
         * take exactly the header once it is whole. */
        if (s->tls)
            b->head = b->tail = 0;
        if (!client_read_into(s, b, s->tls ? MSG_PEEK : 0))
            return;
        r = proxy_proto_parse((const uint8_t *)b->data + b->head, buf_len(b), &info);
        if (r == PROXY_PROTO_BAD) {
            log_info("event=proxy_header_bad listener=%s", s->l->conf->name);
            session_end(s, END_PROXY_BAD);
            return;
        }
        if (r > 0)
            break;
        if (buf_len(b) >= PROXY_PROTO_MAX) {
            session_end(s, END_PROXY_BAD);
            return;
        }
        if (s->tls) {
            s->c_readable = false;      /* all there is was peeked: wait for more */
            return;
        }
    }
    if (s->tls) {
        /* Take the header; what was peeked after it stays in the socket. */
        if (recv(s->cio.fd, b->data, (size_t)r, 0) != r) {
            session_end(s, END_CLIENT_RESET);
            return;
        }
        b->head = 0;
        b->tail = (uint32_t)r;
    }
    buf_consume(b, (uint32_t)r);
    if (buf_len(b) == 0) {
        buf_put(&s->w->bufs, b);
        s->up.buf = NULL;
    }
    if (!info.local) {
        s->client = info.src;
        s->local = info.dst;
    }
    timer_cancel(&s->w->loop.timers, &s->timer);
    if (rate_limit_admit(s))
        client_ready(s);
}

static void client_cb(struct io *io, uint32_t events)
{
    struct tcp_session *s = (void *)((char *)io - offsetof(struct tcp_session, cio));
    int err;

    if (s->state == TCP_CLOSED)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->c_readable = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        s->c_writable = true;
    /* Forwarding, an error is acted on after pumping (as in backend_cb):
     * the bytes the client sent before its reset still go to the backend. */
    if ((events & EPOLLERR) && s->state != TCP_FORWARDING &&
        (err = pending_error(io->fd)) != 0) {
        session_end(s, END_CLIENT_RESET);
        return;
    }
    if (s->state == TCP_PROXY_IN && s->c_readable)
        read_proxy_header(s);
    else if (s->state == TCP_HELLO && s->c_readable)
        read_hello(s);
    else if (s->state == TCP_TLS_HANDSHAKE)
        tls_step(s);
    else if (s->state == TCP_FORWARDING) {
        pump(s);
        if ((events & EPOLLERR) && s->state == TCP_FORWARDING && pending_error(io->fd) != 0)
            session_end(s, END_CLIENT_RESET);
    }
    /* CONNECTING: the flags wait for the backend. */
}

/* The listener's rate_limit, counted per connection from the client's
 * address (the PROXY header's, when there is one): over it, the
 * connection is closed before any backend is tried. */
static bool rate_limit_admit(struct tcp_session *s)
{
    const struct conf_rate_limit *rl = s->l->conf->rate_limit;
    uint64_t hash;

    if (!rl || !balance_request_key(rl->key, NULL, &s->client, NULL, &hash))
        return true;
    if (!rate_limiter_take(runtime_limiter(s->w->rt, rl), hash, clock_now_us() * 1000u)) {
        peers_note(s->w->peers_out, rl, hash);
        return true;
    }
    log_debug("event=rate_limited listener=%s limit=%s rate=%s", s->l->conf->name, rl->label,
              rl->rate_text);
    session_end(s, END_RATE_LIMITED);
    return false;
}

static void session_start(struct worker_listener *wl, int fd, const struct addr *peer)
{
    struct worker *w = wl->w;
    struct tcp_session *s = calloc(1, sizeof(*s));

    if (!s) {
        close(fd);
        return;
    }
    loop_task_init(&s->task, task_cb);
    s->w = w;
    s->l = wl->l;
    s->pool = wl->l->pool;
    s->balancer = &w->balancers[runtime_pool_index(w->rt, s->pool)];
    s->client = *peer;
    s->local.len = sizeof(s->local.ss);
    getsockname(fd, (struct sockaddr *)&s->local.ss, &s->local.len);
    s->cio.fd = fd;
    s->cio.cb = client_cb;
    s->bio.fd = -1;
    s->start_us = clock_mono_us();
    s->first_close = END_NONE;
    timer_init(&s->timer, timer_fired);
    list_add(w, s);   /* TCP_NODELAY: inherited from the listening socket */
    atomic_fetch_add_explicit(&s->l->connections_total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->l->connections_active, 1, memory_order_relaxed);

    if (loop_add(&w->loop, &s->cio, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
        session_end(s, END_NO_MEMORY);
        return;
    }
    if (s->l->tls && !(s->tls = tls_new(s->l->tls, fd))) {
        session_end(s, END_NO_MEMORY);
        return;
    }
    if (s->l->conf->proxy_protocol_accept) {
        uint64_t t = s->l->conf->client_idle_ms;
        s->state = TCP_PROXY_IN;
        timer_arm(&w->loop.timers, &s->timer,
                  clock_now_ms() + (t < PROXY_IN_TIMEOUT_MS ? t : PROXY_IN_TIMEOUT_MS));
        return;   /* the header is read when the client socket turns readable */
    }
    if (rate_limit_admit(s))
        client_ready(s);
}

int tcp_accept(struct worker_listener *wl)
{
    return worker_accept(wl, session_start);
}
