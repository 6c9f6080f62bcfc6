#include "core/list.h"
#include "proxy/upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "proxy/h2_upstream.h"
#include "proto/tls.h"

/* Idle lists of one worker: [pool][backend], allocated on first use. */
struct idle_list {
    struct upstream_conn *head;
    uint32_t n;
};

struct upstream_idle {
    struct idle_list **by_pool;   /* by_pool[pool index][backend index] */
    uint64_t *swept;              /* pool generation at the last sweep */
    size_t npools;
};

static struct idle_list *list_for(struct worker *w, struct backend *b)
{
    struct upstream_idle *ui = w->upstream_idle;
    size_t pi = runtime_pool_index(w->rt, b->pool);

    if (!ui) {
        ui = calloc(1, sizeof(*ui));
        if (!ui)
            return NULL;
        ui->npools = w->rt->npools;
        ui->by_pool = calloc(ui->npools, sizeof(*ui->by_pool));
        ui->swept = calloc(ui->npools, sizeof(*ui->swept));
        if (!ui->by_pool || !ui->swept) {
            free(ui->by_pool);
            free(ui->swept);
            free(ui);
            return NULL;
        }
        w->upstream_idle = ui;
    }
    if (!ui->by_pool[pi]) {
        ui->by_pool[pi] = calloc(b->pool->nbackends, sizeof(struct idle_list));
        if (!ui->by_pool[pi])
            return NULL;
    }
    return &ui->by_pool[pi][b->index];
}

static void list_remove(struct idle_list *l, struct upstream_conn *u)
{
    DLIST_REMOVE(l->head, u);
    l->n--;
}

static void free_task(struct loop_task *t)
{
    free((char *)t - offsetof(struct upstream_conn, free_task));
}

/* Close now, free later: the epoll batch being dispatched may still hold an
 * event for this connection (a client event's failed send closes it, and
 * the kernel had already reported the same backend's reset), so the memory
 * must outlive the batch. Its event, if any, finds io.fd < 0 and is ignored. */
static void conn_free(struct upstream_conn *u)
{
    atomic_fetch_sub_explicit(&u->b->pool->connections, 1, memory_order_relaxed);
    timer_cancel(&u->w->loop.timers, &u->idle_timer);
    tls_free(u->tls);
    u->tls = NULL;
    if (u->io.fd >= 0) {
        /* EPOLL_CTL_DEL first (see tcp.c's io_close): a reload's new
         * process holds copies of our descriptors until its exec. */
        loop_del(&u->w->loop, &u->io);
        close(u->io.fd);
    }
    u->io.fd = -1;
    u->owner = NULL;
    loop_task_queue(&u->w->loop, &u->free_task);
}

/* An idle connection is not freed from its own callback's middle: nothing
 * else points at it (it is idle), and the io is not touched after. */
static void idle_close(struct upstream_conn *u)
{
    struct idle_list *l = list_for(u->w, u->b);

    if (l)
        list_remove(l, u);
    conn_free(u);
}

static void conn_event(struct io *io, uint32_t events)
{
    struct upstream_conn *u = (struct upstream_conn *)io;

    if (io->fd < 0)
        return;               /* closed earlier in this batch; freed after it */
    if (u->owner) {
        u->cb(u, events);
        return;
    }
    /* Idle: EOF, an error, or bytes nobody asked for close it. EPOLLOUT
     * alone only says the last request's bytes were acknowledged. */
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        idle_close(u);
}

static void idle_expired(struct timer *t)
{
    struct upstream_conn *u = (void *)((char *)t - offsetof(struct upstream_conn, idle_timer));

    idle_close(u);
}

struct upstream_conn *upstream_take_idle(struct worker *w, struct backend *b)
{
    struct idle_list *l = list_for(w, b);
    struct upstream_conn *u;

    if (!l || !l->head)
        return NULL;
    u = l->head;          /* most recently used: likeliest still open */
    list_remove(l, u);
    timer_cancel(&w->loop.timers, &u->idle_timer);
    return u;
}

void upstream_attach(struct upstream_conn *u, upstream_cb cb, void *owner)
{
    u->cb = cb;
    u->owner = owner;
}

struct upstream_conn *upstream_connect(struct worker *w, struct backend *b, upstream_cb cb,
                                       void *owner, int *err)
{
    const struct addr *a = &b->conf->address;
    struct upstream_conn *u;
    int fd, one = 1;

    fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = -errno;
        return NULL;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
        *err = -errno;
        close(fd);
        return NULL;
    }
    u = calloc(1, sizeof(*u));
    if (!u) {
        close(fd);
        *err = -ENOMEM;
        return NULL;
    }
    atomic_fetch_add_explicit(&b->pool->connections, 1, memory_order_relaxed);
    u->io.fd = fd;
    u->io.cb = conn_event;
    u->w = w;
    u->b = b;
    u->cb = cb;
    u->owner = owner;
    timer_init(&u->idle_timer, idle_expired);
    loop_task_init(&u->free_task, free_task);
    if (loop_add(&w->loop, &u->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
        *err = -errno;
        atomic_fetch_sub_explicit(&b->pool->connections, 1, memory_order_relaxed);
        close(fd);
        free(u);
        return NULL;
    }
    return u;
}

ssize_t upstream_send(struct upstream_conn *u, const void *p, size_t n)
{
    if (u->h2)
        return h2_upstream_send(u, p, n);
    return tls_sock_send(u->tls, u->io.fd, p, n);
}

ssize_t upstream_recv(struct upstream_conn *u, void *p, size_t n)
{
    if (u->h2)
        return h2_upstream_recv(u, p, n);
    return tls_sock_recv(u->tls, u->io.fd, p, n);
}

int upstream_tls_step(struct upstream_conn *u)
{
    char ip[ADDR_TEXT_MAX], who[320];
    int r;

    if (!u->tls) {
        addr_format_host(&u->b->conf->address, ip, sizeof(ip));
        if (!(u->tls = tls_client_conn(u->b->pool->tls, u->io.fd, ip)))
            return -2;
    }
    r = tls_handshake_step(u->tls, &u->tls_want, &u->readable, &u->writable);
    if (r == 1) {
        u->tls_ready = true;
        return 1;
    }
    if (r < 0) {
        snprintf(who, sizeof(who), "pool=%s backend=%s", u->b->pool->conf->name,
                 u->b->conf->name);
        tls_log_failure(who, &u->b->conf->address);
        return -1;
    }
    return 0;
}

void upstream_release(struct upstream_conn *u, bool reusable)
{
    struct worker *w = u->w;
    struct idle_list *l;
    const struct conf_pool *pc = u->b->pool->conf;

    if (u->h2) {
        h2_upstream_release(u);
        return;
    }
    u->owner = NULL;
    u->cb = NULL;
    u->requests++;
    if (!reusable || w->draining || !backend_eligible(u->b) || !(l = list_for(w, u->b)) ||
        l->n >= pc->max_idle_connections) {
        conn_free(u);
        return;
    }
    DLIST_PUSH(l->head, u);
    l->n++;
    timer_arm(&w->loop.timers, &u->idle_timer, clock_now_ms() + pc->upstream_idle_ms);
}

void upstream_close_idle_ineligible(struct worker *w, struct pool *p)
{
    struct upstream_idle *ui = w->upstream_idle;
    size_t pi = runtime_pool_index(w->rt, p);

    if (!ui || !ui->by_pool[pi])
        return;
    for (uint32_t i = 0; i < p->nbackends; i++) {
        if (backend_eligible(&p->backends[i]))
            continue;
        while (ui->by_pool[pi][i].head)
            idle_close(ui->by_pool[pi][i].head);
    }
}

void upstream_close_idle(struct worker *w)
{
    struct upstream_idle *ui = w->upstream_idle;

    if (!ui)
        return;
    for (size_t pi = 0; pi < ui->npools; pi++) {
        if (!ui->by_pool[pi])
            continue;
        for (uint32_t i = 0; i < w->rt->pools[pi].nbackends; i++)
            while (ui->by_pool[pi][i].head)
                idle_close(ui->by_pool[pi][i].head);
        free(ui->by_pool[pi]);
    }
    free(ui->by_pool);
    free(ui->swept);
    free(ui);
    w->upstream_idle = NULL;
}

void upstream_sweep(struct worker *w)
{
    struct upstream_idle *ui = w->upstream_idle;

    if (!ui)
        return;
    for (size_t pi = 0; pi < ui->npools; pi++) {
        uint64_t gen = atomic_load_explicit(&w->rt->pools[pi].generation, memory_order_relaxed);
        if (gen == ui->swept[pi])
            continue;
        ui->swept[pi] = gen;
        upstream_close_idle_ineligible(w, &w->rt->pools[pi]);
    }
}

int upstream_socket_error(struct upstream_conn *u)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (u->h2)
        return h2_upstream_error(u);
    getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    return err;
}
