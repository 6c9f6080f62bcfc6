/* L4 UDP: datagrams are grouped into flows by client address, per worker
 * (SO_REUSEPORT keeps one client's datagrams on one worker's socket).
 *
 *   datagram ─▶ flow lookup ─▶ (new flow: pick a backend, open a socket
 *   connected to it) ─▶ send ─ ─ ─ reply on the flow's socket ─▶ sendto the
 *   client from the listener's socket, so the reply comes from the address
 *   the client talked to.
 *
 * A flow ends after timeouts.udp_idle without datagrams either way, when its
 * backend stops being eligible (the next datagram opens a flow to another),
 * when the backend refuses (ICMP port unreachable), or when the table is full
 * and it is the least recently used. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/clock.h"
#include "core/log.h"
#include "proxy/access_log.h"
#include "proxy/end.h"
#include "proxy/proxy.h"

#define UDP_DGRAM_MAX 65536
#define UDP_BATCH 64      /* datagrams one socket may read per wake-up */

struct udp_flow_table;

/* Owner: its flow table. */
struct udp_flow {
    struct loop_task task;          /* frees the flow once closed */
    struct io io;                   /* socket connected to the backend */
    struct udp_flow_table *t;
    struct addr client;
    struct backend *backend;        /* counted in backend->active */
    uint64_t last_active_ms;
    uint64_t start_us;
    uint64_t bytes_in, bytes_out;
    struct timer timer;             /* idle expiry, re-armed lazily */
    struct udp_flow *hnext;         /* hash chain */
    struct udp_flow *older, *newer; /* LRU list */
    bool closed;
};

/* Owner: one worker listener. */
struct udp_flow_table {
    struct worker_listener *wl;
    struct udp_flow **buckets;
    uint32_t mask;                  /* buckets - 1 (a power of two) */
    uint32_t count;
    uint32_t max;
    struct udp_flow *oldest, *newest;
    char *dgram;                    /* receive buffer, UDP_DGRAM_MAX bytes */
};

static uint64_t client_hash(const struct addr *a)
{
    /* Fixed seed: the table is per worker and never shared, and an attacker
     * who floods one bucket only slows their own worker's lookups, bounded
     * by max_flows. */
    return XXH3_64bits(&a->ss, a->len);
}

static struct udp_flow **bucket_of(struct udp_flow_table *t, const struct addr *a)
{
    return &t->buckets[client_hash(a) & t->mask];
}

static struct udp_flow *flow_find(struct udp_flow_table *t, const struct addr *a)
{
    for (struct udp_flow *f = *bucket_of(t, a); f; f = f->hnext)
        if (addr_equal(&f->client, a))
            return f;
    return NULL;
}

static void lru_unlink(struct udp_flow_table *t, struct udp_flow *f)
{
    if (f->older)
        f->older->newer = f->newer;
    else
        t->oldest = f->newer;
    if (f->newer)
        f->newer->older = f->older;
    else
        t->newest = f->older;
    f->older = f->newer = NULL;
}

static void lru_push(struct udp_flow_table *t, struct udp_flow *f)
{
    f->older = t->newest;
    f->newer = NULL;
    if (t->newest)
        t->newest->newer = f;
    else
        t->oldest = f;
    t->newest = f;
}

static void flow_touch(struct udp_flow *f)
{
    struct udp_flow_table *t = f->t;

    f->last_active_ms = clock_now_ms();
    if (t->newest != f) {
        lru_unlink(t, f);
        lru_push(t, f);
    }
}

static void flow_task(struct loop_task *task)
{
    free(task);   /* task is the first member of struct udp_flow */
}

static void flow_close(struct udp_flow *f, enum end_reason why)
{
    struct udp_flow_table *t = f->t;
    struct worker *w = t->wl->w;
    struct listener *l = t->wl->l;
    struct udp_flow **pp;

    if (f->closed)
        return;
    f->closed = true;
    for (pp = bucket_of(t, &f->client); *pp; pp = &(*pp)->hnext) {
        if (*pp == f) {
            *pp = f->hnext;
            break;
        }
    }
    lru_unlink(t, f);
    t->count--;
    timer_cancel(&w->loop.timers, &f->timer);
    loop_del(&w->loop, &f->io);
    close(f->io.fd);
    f->io.fd = -1;
    atomic_fetch_sub_explicit(&f->backend->active, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&l->connections_active, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->bytes_in, f->bytes_in, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->bytes_out, f->bytes_out, memory_order_relaxed);

    struct access_l4 rec = {
        .proto = "udp",
        .listener = l->conf->name,
        .client = &f->client,
        .pool = l->pool->conf->name,
        .backend = f->backend,
        .bytes_in = f->bytes_in,
        .bytes_out = f->bytes_out,
        .duration_us = clock_mono_us() - f->start_us,
        .tries = 1,
        .end = why,
    };
    access_log_l4(&rec);
    loop_task_queue(&w->loop, &f->task);
}

static void flow_timer(struct timer *tm)
{
    struct udp_flow *f = (void *)((char *)tm - offsetof(struct udp_flow, timer));
    uint64_t idle = f->t->wl->l->conf->udp_idle_ms;

    if (clock_now_ms() - f->last_active_ms >= idle)
        flow_close(f, END_IDLE_TIMEOUT);
    else
        timer_arm(&f->t->wl->w->loop.timers, &f->timer, f->last_active_ms + idle);
}

/* Replies from the backend go back to the client from the listener socket. */
static void flow_readable(struct io *io, uint32_t events)
{
    struct udp_flow *f = (void *)((char *)io - offsetof(struct udp_flow, io));
    struct udp_flow_table *t = f->t;

    /* Level-triggered and at most UDP_BATCH per wake-up, as on the
     * listener: a backend that sends faster than a recv and a sendto take
     * must not keep the worker from every other flow it serves. */
    for (int i = 0; i < UDP_BATCH && !f->closed; i++) {
        ssize_t n = recv(io->fd, t->dgram, UDP_DGRAM_MAX, 0);
        if (n < 0) {
            if (errno == EAGAIN)
                return;
            /* ECONNREFUSED: the backend's port is closed (ICMP). */
            atomic_fetch_add_explicit(&f->backend->failures, 1, memory_order_relaxed);
            flow_close(f, END_BACKEND_RESET);
            return;
        }
        f->bytes_out += (uint64_t)n;
        flow_touch(f);
        /* If the client's socket buffer is full the datagram is dropped, as
         * UDP would drop it anywhere on the path. */
        sendto(t->wl->io.fd, t->dgram, (size_t)n, MSG_DONTWAIT,
               (const struct sockaddr *)&f->client.ss, f->client.len);
    }
}

static struct udp_flow *flow_open(struct udp_flow_table *t, const struct addr *client,
                                  struct backend *exclude)
{
    struct worker *w = t->wl->w;
    struct listener *l = t->wl->l;
    struct balancer *bl = &w->balancers[runtime_pool_index(w->rt, l->pool)];
    const struct backend *ex[1] = {exclude};
    uint64_t hash = 0;
    bool has_hash = balance_hash_l4(l->pool->conf, client, &hash);
    struct balance_req req = {.exclude = ex, .nexclude = exclude ? 1 : 0,
                              .hash = hash, .has_hash = has_hash};
    struct backend *b;
    struct udp_flow *f;
    int fd;

    if (t->count >= t->max && t->oldest)
        flow_close(t->oldest, END_FLOW_EVICTED);
    b = balancer_pick(bl, &req);
    if (!b) {
        atomic_fetch_add_explicit(&l->no_backend, 1, memory_order_relaxed);
        return NULL;
    }
    fd = socket(b->conf->address.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    if (connect(fd, (const struct sockaddr *)&b->conf->address.ss, b->conf->address.len) < 0) {
        close(fd);
        atomic_fetch_add_explicit(&b->failures, 1, memory_order_relaxed);
        return NULL;
    }
    f = calloc(1, sizeof(*f));
    if (!f) {
        close(fd);
        return NULL;
    }
    loop_task_init(&f->task, flow_task);
    f->io.fd = fd;
    f->io.cb = flow_readable;
    if (loop_add(&w->loop, &f->io, EPOLLIN) < 0) {
        close(fd);
        free(f);
        return NULL;
    }
    f->t = t;
    f->client = *client;
    f->backend = b;
    f->start_us = clock_mono_us();
    f->last_active_ms = clock_now_ms();
    timer_init(&f->timer, flow_timer);
    timer_arm(&w->loop.timers, &f->timer, f->last_active_ms + l->conf->udp_idle_ms);
    struct udp_flow **bk = bucket_of(t, client);
    f->hnext = *bk;
    *bk = f;
    lru_push(t, f);
    t->count++;
    atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->connections_total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->connections_active, 1, memory_order_relaxed);
    return f;
}

static void forward(struct udp_flow_table *t, const struct addr *client, size_t len)
{
    struct udp_flow *f = flow_find(t, client);
    struct backend *failed = NULL;

    /* A flow whose backend went DOWN or was drained moves on its next
     * datagram instead of blackholing until it idles out. */
    if (f && !backend_eligible(f->backend)) {
        flow_close(f, END_BACKEND_CLOSE);
        f = NULL;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!f)
            f = flow_open(t, client, failed);
        if (!f)
            return;
        if (send(f->io.fd, t->dgram, len, MSG_DONTWAIT) >= 0 || errno == EAGAIN) {
            f->bytes_in += len;
            flow_touch(f);
            return;
        }
        /* An earlier datagram drew an ICMP refusal: try another backend. */
        atomic_fetch_add_explicit(&f->backend->failures, 1, memory_order_relaxed);
        failed = f->backend;
        flow_close(f, END_BACKEND_RESET);
        f = NULL;
    }
}

void udp_listener_readable(struct worker_listener *wl)
{
    struct udp_flow_table *t = wl->flows;

    for (int i = 0; i < UDP_BATCH; i++) {
        struct addr client;
        ssize_t n;

        client.len = sizeof(client.ss);
        n = recvfrom(wl->io.fd, t->dgram, UDP_DGRAM_MAX, 0,
                     (struct sockaddr *)&client.ss, &client.len);
        if (n < 0)
            return;   /* EAGAIN; level-triggered, so nothing is lost */
        forward(t, &client, (size_t)n);
    }
}

int udp_listener_init(struct worker_listener *wl)
{
    struct udp_flow_table *t = calloc(1, sizeof(*t));
    uint32_t nb = 1024;

    if (!t)
        return -ENOMEM;
    t->wl = wl;
    t->max = wl->l->conf->max_flows ? wl->l->conf->max_flows : 65536;
    while (nb < t->max && nb < (1u << 20))
        nb <<= 1;
    t->buckets = calloc(nb, sizeof(*t->buckets));
    t->dgram = malloc(UDP_DGRAM_MAX);
    if (!t->buckets || !t->dgram) {
        free(t->buckets);
        free(t->dgram);
        free(t);
        return -ENOMEM;
    }
    t->mask = nb - 1;
    wl->flows = t;
    return loop_add(&wl->w->loop, &wl->io, EPOLLIN);
}

/* Close every flow and the socket. The table itself is freed here: flows
 * are freed by their tasks, which no longer touch the table. */
void udp_listener_close(struct worker_listener *wl)
{
    struct udp_flow_table *t = wl->flows;

    if (t) {
        while (t->oldest)
            flow_close(t->oldest, END_SHUTDOWN);
        free(t->buckets);
        free(t->dgram);
        free(t);
        wl->flows = NULL;
    }
    loop_del(&wl->w->loop, &wl->io);
    close(wl->io.fd);
}
