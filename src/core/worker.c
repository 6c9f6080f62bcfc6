#include "core/worker.h"
#include "core/offload.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/metrics.h"
#include "route/route.h"
#include "core/clock.h"
#include "core/log.h"
#include "peers/peers.h"
#include "core/reload.h"
#include "gslb/gslb.h"
#include "proxy/proxy.h"

__thread struct worker *worker_self;

#define WORKER_FREE_BUFS 1024
#define WORKER_FREE_PIPES 256
/* Large pipes cut splice calls per megabyte; the kernel may refuse (per-user
 * pipe memory limits), and then the default 64 KiB pipe is used. */
#define WORKER_PIPE_SIZE (256u * 1024u)
#define ACCEPT_PAUSE_MS 100

static void listener_close(struct worker_listener *wl)
{
    if (wl->tcp_io.fd >= 0) {
        loop_del(&wl->w->loop, &wl->tcp_io);
        close(wl->tcp_io.fd);
        wl->tcp_io.fd = -1;
    }
    if (wl->io.fd < 0)
        return;
    timer_cancel(&wl->w->loop.timers, &wl->pause_timer);
    if (wl->l->conf->mode == LISTENER_UDP) {
        udp_listener_close(wl);
    } else {
        loop_del(&wl->w->loop, &wl->io);
        close(wl->io.fd);
    }
    wl->io.fd = -1;
}

static void resume_accept(struct timer *t)
{
    struct worker_listener *wl = (void *)((char *)t - offsetof(struct worker_listener, pause_timer));

    if (wl->io.fd >= 0 && !wl->w->draining && !wl->full && !wl->io.watched)
        loop_add(&wl->w->loop, &wl->io, EPOLLIN);
    if (wl->tcp_io.fd >= 0 && !wl->w->draining && !wl->tcp_io.watched)
        loop_add(&wl->w->loop, &wl->tcp_io, EPOLLIN);
}

void worker_pause_accept(struct worker_listener *wl, struct io *io)
{
    loop_del(&wl->w->loop, io);
    timer_arm(&wl->w->loop.timers, &wl->pause_timer, clock_now_ms() + ACCEPT_PAUSE_MS);
    log_warn("event=accept_paused listener=%s why=\"out of file descriptors\"",
             wl->l->conf->name);
}

/* max_connections: at the limit, a worker stops accepting on the listener
 * (connections wait in the kernel's backlog, as with HAProxy's maxconn)
 * until its count is below again. The count is the listener's, all
 * workers together; each checks it before each accept, so N workers
 * accepting at the same moment can pass the limit by N - 1. */
static bool listener_full(struct worker_listener *wl)
{
    uint32_t max = wl->l->conf->max_connections;

    return max && !wl->w->draining &&
           atomic_load_explicit(&wl->l->connections_active, memory_order_relaxed) >= max;
}

static void pause_full(struct worker_listener *wl)
{
    loop_del(&wl->w->loop, &wl->io);
    wl->full = true;
    wl->w->nfull++;
    atomic_fetch_add_explicit(&wl->l->full_pauses, 1, memory_order_relaxed);
    log_info("event=listener_full listener=%s max_connections=%u", wl->l->conf->name,
             wl->l->conf->max_connections);
}

/* A connection ended (here, or on another worker: the sweep calls this
 * too): take up accepting where the count is below the limit again. */
static void resume_full(struct worker *w)
{
    for (size_t i = 0; w->nfull && i < w->nlisteners; i++) {
        struct worker_listener *wl = &w->listeners[i];

        if (!wl->full || (wl->io.fd >= 0 && listener_full(wl)))
            continue;
        wl->full = false;
        w->nfull--;
        if (wl->io.fd >= 0 && !w->draining && !wl->io.watched &&
            !timer_armed(&wl->pause_timer))
            loop_add(&w->loop, &wl->io, EPOLLIN);
    }
}

static int listener_accept(struct worker_listener *wl)
{
    return wl->l->conf->mode == LISTENER_HTTP ? http_accept(wl) : tcp_accept(wl);
}

static void listener_cb(struct io *io, uint32_t events)
{
    struct worker_listener *wl = (struct worker_listener *)io;

    /* Closed by an earlier event of this batch (a drain begun by the
     * wake-up callback): this one is stale. A UDP listener's flow table is
     * already freed then. */
    if (wl->io.fd < 0)
        return;
    if (wl->l->conf->mode == LISTENER_UDP) {
        udp_listener_readable(wl);
        return;
    }
    if (wl->l->conf->mode == LISTENER_DNS) {
        gslb_readable(wl);
        return;
    }
    if (listener_accept(wl) == -EMFILE)
        worker_pause_accept(wl, &wl->io);
}

#define SWEEP_MS 250

/* Four times a second: close connections still in flight to a backend
 * whose drain_timeout ran out, and idle keep-alive connections to backends
 * that stopped being eligible. */
static void sweep_cb(struct timer *t)
{
    struct worker *w = (void *)((char *)t - offsetof(struct worker, sweep));

    tcp_sweep(w);
    http_sweep(w);
    resume_full(w);
    atomic_fetch_add_explicit(&w->sweeps, 1, memory_order_release);
    timer_arm(&w->loop.timers, &w->sweep, clock_now_ms() + SWEEP_MS);
}

#define ACCEPT_BUDGET_MAX 64
#define ACCEPT_GROW_AFTER 4

/* The listening socket is level-triggered, so a queue left non-empty is
 * reported again by the next epoll_wait: there is no need to call accept4
 * until it fails with EAGAIN, and that failing call is one system call per
 * connection when they arrive one at a time (as with short-lived client
 * connections). The budget doubles after a few rounds in a row took all it
 * allowed (a burst), and halves when the queue runs dry early, so a trickle
 * costs little more than one accept4 per connection and a burst is taken up
 * to 64 at a time. */
int worker_accept(struct worker_listener *wl,
                  void (*start)(struct worker_listener *wl, int fd, const struct addr *peer))
{
    uint32_t budget = wl->accept_budget ? wl->accept_budget : 1, n = 0;

    while (n < budget) {
        struct addr peer;
        int fd;

        if (listener_full(wl)) {
            pause_full(wl);
            return 0;
        }
        peer.len = sizeof(peer.ss);
        fd = accept4(wl->io.fd, (struct sockaddr *)&peer.ss, &peer.len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                return -EMFILE;
            /* EAGAIN, or a connection aborted before accept: dry. */
            wl->accept_budget = budget > 1 && n <= budget / 2 ? budget / 2 : budget;
            wl->accept_full_rounds = 0;
            return 0;
        }
        n++;
        start(wl, fd, &peer);
    }
    if (++wl->accept_full_rounds >= ACCEPT_GROW_AFTER && budget < ACCEPT_BUDGET_MAX) {
        wl->accept_budget = budget * 2;
        wl->accept_full_rounds = 0;
    } else {
        wl->accept_budget = budget;
    }
    return 0;
}

/* Is a connection waiting in the listener's accept queue? */
static bool accept_pending(struct worker_listener *wl)
{
    struct pollfd p = {.fd = wl->io.fd, .events = POLLIN};

    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void maybe_finish(struct worker *w)
{
    if (w->draining && w->nsessions == 0)
        loop_stop(&w->loop);
}

void worker_connection_ended(struct worker *w)
{
    if (w->nfull)
        resume_full(w);
    maybe_finish(w);
}

static void on_wake(struct loop *l)
{
    struct worker *w = l->data;
    int cmd = atomic_load(&w->command);

    offload_complete(w);

    if (cmd >= WORKER_DRAIN && !w->draining) {
        w->draining = 1;
        for (size_t i = 0; i < w->nlisteners; i++) {
            struct worker_listener *wl = &w->listeners[i];
            /* Closing a listening socket resets the connections still in its
             * accept queue: take them first, and serve them like the rest.
             * Not on a reload: the new process has the same socket and
             * takes them (closing our copy closes nothing). */
            bool take_queue = wl->io.fd >= 0 && !atomic_load(&wl->handed_over) &&
                              !listener_datagram(wl->l->conf->mode);
            while (take_queue && listener_accept(wl) == 0 && accept_pending(wl))
                ;
            listener_close(wl);
        }
        http_drain(w);
        gslb_close_all(w);       /* DNS over TCP: a client asks again elsewhere */
    }
    if (cmd == WORKER_STOP) {
        tcp_close_all(w);
        http_close_all(w);
        gslb_close_all(w);
    }
    maybe_finish(w);
}

int worker_init(struct worker *w, int id, struct runtime *rt,
                const struct conf_listener **failed)
{
    int err;

    memset(w, 0, sizeof(*w));
    w->id = id;
    w->rt = rt;
    w->rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)(id + 1) * 0xBF58476D1CE4E5B9ULL) ^ clock_mono_us();
    atomic_init(&w->command, WORKER_RUN);
    atomic_init(&w->finished, 0);
    err = loop_init(&w->loop);
    if (err < 0)
        return err;
    w->loop.data = w;
    w->loop.on_wake = on_wake;
    pthread_mutex_init(&w->offload_lock, NULL);
    timer_init(&w->sweep, sweep_cb);
    timer_arm(&w->loop.timers, &w->sweep, clock_now_ms() + SWEEP_MS);
    buf_pool_init(&w->bufs, BUF_SIZE_DEFAULT, WORKER_FREE_BUFS);

    w->balancers = calloc(rt->npools ? rt->npools : 1, sizeof(*w->balancers));
    w->listeners = calloc(rt->nlisteners ? rt->nlisteners : 1, sizeof(*w->listeners));
    if (!w->balancers || !w->listeners)
        return -ENOMEM;
    for (size_t i = 0; i < rt->npools; i++)
        balancer_init(&w->balancers[i], &rt->pools[i], w->rng + i);
    if (metrics_worker_init(w) < 0)
        return -ENOMEM;
    if (rt->cfg->peers && !(w->peers_out = calloc(1, sizeof(*w->peers_out))))
        return -ENOMEM;

    for (size_t i = 0; i < rt->nlisteners; i++) {
        struct worker_listener *wl = &w->listeners[i];
        wl->w = w;
        wl->l = &rt->listeners[i];
        wl->io.cb = listener_cb;
        wl->tcp_io.fd = -1;
        timer_init(&wl->pause_timer, resume_accept);
        wl->io.fd = reload_take_socket('l', &wl->l->conf->bind,
                                       listener_datagram(wl->l->conf->mode) ? SOCK_DGRAM : SOCK_STREAM,
                                       id);
        if (wl->io.fd < 0)
            wl->io.fd = listener_socket(wl->l->conf);
        if (wl->io.fd < 0) {
            *failed = wl->l->conf;
            err = wl->io.fd;
            wl->io.fd = -1;
            return err;
        }
        w->nlisteners++;
        if (wl->l->conf->mode == LISTENER_UDP) {
            err = udp_listener_init(wl);
            if (err < 0)
                return err;
        } else {
            err = loop_add(&w->loop, &wl->io, EPOLLIN);
            if (err < 0)
                return err;
        }
        if (wl->l->conf->mode == LISTENER_DNS) {
            /* DNS over TCP on the same address (RFC 7766). */
            wl->tcp_io.cb = gslb_tcp_accept;
            wl->tcp_io.fd = reload_take_socket('t', &wl->l->conf->bind, SOCK_STREAM, id);
            if (wl->tcp_io.fd < 0)
                wl->tcp_io.fd = listener_socket_type(wl->l->conf, SOCK_STREAM);
            if (wl->tcp_io.fd < 0) {
                *failed = wl->l->conf;
                err = wl->tcp_io.fd;
                wl->tcp_io.fd = -1;
                return err;
            }
            if ((err = loop_add(&w->loop, &wl->tcp_io, EPOLLIN)) < 0)
                return err;
        }
    }
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    worker_self = w;
    clock_update();
    loop_run(&w->loop);
    for (size_t i = 0; i < w->nlisteners; i++)
        listener_close(&w->listeners[i]);
    tcp_close_all(w);
    http_close_all(w);
    gslb_close_all(w);
    loop_run_tasks(&w->loop);
    atomic_store(&w->finished, 1);
    return NULL;
}

int worker_start(struct worker *w)
{
    return -pthread_create(&w->thread, NULL, worker_main, w);
}

void worker_command(struct worker *w, enum worker_command cmd)
{
    atomic_store(&w->command, (int)cmd);
    loop_wake(&w->loop);
}

void worker_join(struct worker *w)
{
    pthread_join(w->thread, NULL);
}

void worker_destroy(struct worker *w)
{
    pthread_mutex_destroy(&w->offload_lock);
    auth_cache_free(w->auth_cache);
    free(w->peers_out);
    w->peers_out = NULL;
    for (size_t i = 0; i < w->nlisteners; i++)
        listener_close(&w->listeners[i]);
    for (size_t i = 0; w->balancers && i < w->rt->npools; i++)
        balancer_destroy(&w->balancers[i]);
    free(w->balancers);
    free(w->listeners);
    metrics_worker_free(w);
    while (w->free_pipes) {
        struct worker_pipe *p = w->free_pipes;
        w->free_pipes = p->next;
        close(p->fd[0]);
        close(p->fd[1]);
        free(p);
    }
    buf_pool_destroy(&w->bufs);
    loop_destroy(&w->loop);
}

struct worker_pipe *worker_pipe_get(struct worker *w)
{
    struct worker_pipe *p = w->free_pipes;
    int sz;

    if (p) {
        w->free_pipes = p->next;
        w->nfree_pipes--;
        p->next = NULL;
        return p;
    }
    p = malloc(sizeof(*p));
    if (!p)
        return NULL;
    if (pipe2(p->fd, O_NONBLOCK | O_CLOEXEC) < 0) {
        free(p);
        return NULL;
    }
    p->next = NULL;
    fcntl(p->fd[1], F_SETPIPE_SZ, (int)WORKER_PIPE_SIZE);
    sz = fcntl(p->fd[1], F_GETPIPE_SZ);
    p->cap = sz > 0 ? (uint32_t)sz : 65536u;
    return p;
}

void worker_pipe_put(struct worker *w, struct worker_pipe *p, int empty)
{
    if (!p)
        return;
    /* A pipe with bytes left in it would leak them into the next session. */
    if (!empty || w->nfree_pipes >= WORKER_FREE_PIPES) {
        close(p->fd[0]);
        close(p->fd[1]);
        free(p);
        return;
    }
    p->next = w->free_pipes;
    w->free_pipes = p;
    w->nfree_pipes++;
}
