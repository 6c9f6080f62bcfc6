/* Request mirroring: one copy of a request, its own upstream connection
 * (taken from the pool's idle list or newly connected, and given back when
 * the answer ended cleanly), and the answer read to its end by its framing
 * and dropped. See mirror.h for what is copied and when. */
#include "proxy/mirror.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "core/clock.h"
#include "core/list.h"
#include "core/log.h"
#include "proto/http1_body.h"
#include "proxy/h2_upstream.h"
#include "proxy/upstream.h"

#define MIRROR_MAX_HEADERS 100

enum mirror_result { MIRROR_OK, MIRROR_FAILED };

/* Owner: its worker (linked in w->mirrors). */
struct mirror {
    struct worker *w;
    struct pool *pool;
    struct backend *b;                  /* counted in b->active */
    struct upstream_conn *up;
    bool reused;                        /* up came from the idle list */
    bool fresh_retry_done;              /* a stale idle connection was replaced once */
    enum h1_method method;
    char *req;                          /* the copy: head and body (a mirror_hold's bytes) */
    size_t req_len, req_sent;
    size_t head_len;                    /* the head's bytes at the start of req */
    size_t held;                        /* req's capacity, counted in w->mirror_held */
    struct buf *in;                     /* the answer, dropped as it is framed */
    uint64_t got;                       /* answer bytes read */
    struct h1_response resp;
    bool head_done;
    struct h1_body body;                /* the answer's body, read and dropped */
    uint64_t start_us;
    uint64_t active_ms;                 /* last progress, for the timeout */
    struct timer timer;
    struct mirror *prev, *next;
    struct h1_header slots[MIRROR_MAX_HEADERS];
};

static void mirror_event(struct upstream_conn *u, uint32_t events);
static void mirror_connect(struct mirror *m);

static void count(struct pool *p, enum mirror_result r)
{
    atomic_fetch_add_explicit(r == MIRROR_OK ? &p->mirror_ok : &p->mirror_failed, 1,
                              memory_order_relaxed);
}

void mirror_skipped(struct pool *pool)
{
    atomic_fetch_add_explicit(&pool->mirror_skipped, 1, memory_order_relaxed);
}

static void mirror_free(struct mirror *m)
{
    struct worker *w = m->w;
    struct mirror *head = w->mirrors;

    timer_cancel(&w->loop.timers, &m->timer);
    if (m->b)
        atomic_fetch_sub_explicit(&m->b->active, 1, memory_order_relaxed);
    DLIST_REMOVE(head, m);
    w->mirrors = head;
    w->nmirrors--;
    if (m->in)
        buf_put(&w->bufs, m->in);
    w->mirror_held -= m->held;
    free(m->req);
    free(m);
}

/* The copy is over: its connection goes back to the idle list only after
 * an answer that ended cleanly with the whole request sent. */
static void mirror_end(struct mirror *m, enum mirror_result r, bool reusable, const char *why)
{
    if (r != MIRROR_OK) {
        atomic_fetch_add_explicit(&m->b->failures, 1, memory_order_relaxed);
        backend_report(m->b, false);
        log_debug("event=mirror_failed pool=%s backend=%s why=\"%s\"", m->pool->conf->name,
                  m->b->conf->name, why);
    }
    count(m->pool, r);
    if (m->up)
        upstream_release(m->up, reusable && m->req_sent == m->req_len &&
                                    (!m->in || buf_len(m->in) == 0));
    m->up = NULL;
    mirror_free(m);
}

/* A failure before any answer byte on a connection from the idle list is
 * the backend having closed it as we took it: once, on a fresh one. */
static void mirror_fail(struct mirror *m, const char *why)
{
    if (m->reused && m->got == 0 && !m->fresh_retry_done) {
        m->fresh_retry_done = true;
        upstream_release(m->up, false);
        m->up = NULL;
        m->req_sent = 0;
        mirror_connect(m);
        return;
    }
    mirror_end(m, MIRROR_FAILED, false, why);
}

/* How long the copy may go without progress: the mirror pool's connect
 * timeout until connected, then its upstream_response. */
static uint64_t quiet_limit_ms(const struct mirror *m)
{
    const struct conf_pool *pc = m->pool->conf;

    return m->up && m->up->connected ? pc->upstream_response_ms : pc->connect_timeout_ms;
}

static void arm(struct mirror *m)
{
    timer_arm(&m->w->loop.timers, &m->timer, m->active_ms + quiet_limit_ms(m));
}

static void timer_fired(struct timer *t)
{
    struct mirror *m = (void *)((char *)t - offsetof(struct mirror, timer));

    if (clock_now_ms() < m->active_ms + quiet_limit_ms(m)) {
        arm(m);
        return;
    }
    mirror_end(m, MIRROR_FAILED, false, m->up && m->up->connected ? "timeout" : "connect timeout");
}

/* Read the answer's framing from m->in and drop it. false: the copy ended
 * (m is freed). */
static bool frame(struct mirror *m)
{
    for (;;) {
        struct buf *b = m->in;
        uint32_t len = buf_len(b);

        if (!m->head_done) {
            int r = h1_parse_response(b->data + b->head, len, m->method, NULL, &m->resp);
            if (r == 0) {
                if (buf_room(b) == 0) {
                    buf_compact(b);
                    if (buf_room(b) == 0) {
                        mirror_end(m, MIRROR_FAILED, false, "response head too large");
                        return false;
                    }
                }
                return true;
            }
            if (r < 0) {
                mirror_end(m, MIRROR_FAILED, false, m->resp.error ? m->resp.error : "bad response");
                return false;
            }
            buf_consume(b, (uint32_t)r);
            if (m->resp.status < 200 && m->resp.status != 101) {
                /* 100 Continue and the like: the real answer follows. */
                h1_response_init(&m->resp, m->slots, MIRROR_MAX_HEADERS);
                continue;
            }
            m->head_done = true;
            backend_observe_latency(m->b, clock_now_us() - m->start_us, clock_now_us());
            backend_report(m->b, m->resp.status < 500);
            if (m->resp.status == 101 || m->resp.tunnel) {
                /* The copy asked for nothing to be upgraded; whatever this
                 * is, it is not an answer to read to its end. */
                mirror_end(m, MIRROR_OK, false, NULL);
                return false;
            }
            h1_body_init(&m->body, m->resp.body, m->resp.content_length);
            len = buf_len(b);
        }
        ssize_t k = h1_body_take(&m->body, b->data + b->head, len, NULL, NULL);
        if (k < 0) {
            mirror_end(m, MIRROR_FAILED, false, "chunked answer malformed");
            return false;
        }
        buf_consume(b, (uint32_t)k);
        if (m->body.done) {
            /* A close-delimited body is never done here: EOF ends it. */
            mirror_end(m, MIRROR_OK, m->resp.keep_alive, NULL);
            return false;
        }
        return true;
    }
}

/* A mirror pool with tls: the handshake on a new connection (a reused one
 * has it). true when done; false while it waits, or when it failed (the
 * copy has ended then). */
static bool tls_ready(struct mirror *m)
{
    int r = upstream_tls_step(m->up);

    if (r < 0)
        mirror_end(m, MIRROR_FAILED, false, r == -2 ? "out of memory" : "TLS handshake failed");
    else if (r == 0)
        arm(m);
    return r == 1;
}

static void mirror_run(struct mirror *m)
{
    struct upstream_conn *u = m->up;

    if (m->pool->tls && !u->tls_ready && !tls_ready(m))
        return;
    while (u->writable && m->req_sent < m->req_len) {
        /* An HTTP/2 stream takes the head alone first: given more in that
         * call, it would keep the whole body with the head, past its own
         * bound on buffered body bytes. */
        size_t end = u->h2 && m->req_sent < m->head_len ? m->head_len : m->req_len;
        ssize_t n = upstream_send(u, m->req + m->req_sent, end - m->req_sent);
        if (n < 0) {
            if (errno == EAGAIN) {
                u->writable = false;
                break;
            }
            mirror_fail(m, "reset while sending");
            return;
        }
        m->req_sent += (size_t)n;
        m->active_ms = clock_now_ms();
    }
    while (u->readable) {
        ssize_t n;

        if (!m->in && !(m->in = buf_get(&m->w->bufs))) {
            mirror_end(m, MIRROR_FAILED, false, "out of memory");
            return;
        }
        n = upstream_recv(u, m->in->data + m->in->tail, buf_room(m->in));
        if (n > 0) {
            m->in->tail += (uint32_t)n;
            m->got += (uint64_t)n;
            m->active_ms = clock_now_ms();
            if (!frame(m))
                return;
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            u->readable = false;
            break;
        }
        if (n == 0 && m->head_done && m->resp.body == H1_BODY_CLOSE) {
            mirror_end(m, MIRROR_OK, false, NULL);
            return;
        }
        mirror_fail(m, n == 0 ? "closed before the answer ended" : "reset");
        return;
    }
    arm(m);
}

static void mirror_event(struct upstream_conn *u, uint32_t events)
{
    struct mirror *m = u->owner;

    upstream_note_events(u, events);
    if (!u->connected) {
        if (upstream_socket_error(u) || !(events & EPOLLOUT)) {
            mirror_end(m, MIRROR_FAILED, false, "connect failed");
            return;
        }
        u->connected = true;
        m->active_ms = clock_now_ms();
    }
    mirror_run(m);
}

/* An idle connection to the picked backend, or a new one; for an http2
 * pool, a stream on one of the worker's sessions to it. */
static void mirror_connect(struct mirror *m)
{
    int err = 0;

    m->active_ms = clock_now_ms();
    if (m->pool->conf->http2) {
        m->reused = false;
        if (!(m->up = h2_upstream_open(m->w, m->b, mirror_event, m, &err)))
            mirror_end(m, MIRROR_FAILED, false, "cannot open an HTTP/2 stream");
        else
            arm(m);
        return;
    }
    m->up = m->fresh_retry_done ? NULL : upstream_take_idle(m->w, m->b);
    if (m->up) {
        m->reused = true;
        upstream_attach(m->up, mirror_event, m);
        m->up->writable = true;
        mirror_run(m);
        return;
    }
    m->reused = false;
    if (!(m->up = upstream_connect(m->w, m->b, mirror_event, m, &err))) {
        mirror_end(m, MIRROR_FAILED, false, "connect failed");
        return;
    }
    arm(m);
}

/* The most bytes write_head writes for a head of head_len bytes. */
static size_t head_size(size_t head_len, const struct conf_kv *set, size_t nset)
{
    for (size_t i = 0; i < nset; i++)
        head_len += strlen(set[i].name) + strlen(set[i].value) + 4;
    return head_len;
}

/* Write the copy's head into out: head without the fields set names, then
 * set's fields and the blank line. The head is sluice's own, one "Name:
 * value" per line; it is parsed again to find the lines to leave out. The
 * bytes written, or -1 when the head does not parse. */
static ssize_t write_head(char *out, const char *head, size_t head_len, const struct conf_kv *set,
                          size_t nset)
{
    struct h1_header slots[MIRROR_MAX_HEADERS + 64];   /* a client's 128 fields and ours */
    struct h1_request req;
    const char *line;
    size_t at;

    if (!nset) {
        memcpy(out, head, head_len);
        return (ssize_t)head_len;
    }
    /* Bounded by the head itself, not by the parser's defaults: the
     * listener let the client's through (max_request_line up to 64 KiB). */
    const struct h1_limits lim = {.max_request_line = (uint32_t)head_len,
                                  .max_head = (uint32_t)head_len,
                                  .max_headers = sizeof(slots) / sizeof(slots[0])};

    h1_request_init(&req, slots, sizeof(slots) / sizeof(slots[0]));
    if (h1_parse_request(head, head_len, &lim, &req) != (int)head_len)
        return -1;
    /* The request line, then each field line not replaced. */
    line = req.nheaders ? req.headers[0].name.p : head + head_len - 2;
    memcpy(out, head, (size_t)(line - head));
    at = (size_t)(line - head);
    for (uint32_t h = 0; h < req.nheaders; h++) {
        const struct h1_header *f = &req.headers[h];
        const char *end = h + 1 < req.nheaders ? req.headers[h + 1].name.p : head + head_len - 2;
        bool replaced = false;
        for (size_t i = 0; i < nset && !replaced; i++)
            replaced = h1_slice_eq_ci(f->name, set[i].name);
        if (!replaced) {
            memcpy(out + at, f->name.p, (size_t)(end - f->name.p));
            at += (size_t)(end - f->name.p);
        }
    }
    for (size_t i = 0; i < nset; i++)
        at += (size_t)sprintf(out + at, "%s: %s\r\n", set[i].name, set[i].value);
    memcpy(out + at, "\r\n", 2);
    return (ssize_t)(at + 2);
}

/* The first room for a chunked body; it doubles from there as the body
 * comes, within the worker's bound. */
#define MIRROR_CHUNKED_FIRST (64u * 1024u)

int mirror_hold_start(struct worker *w, struct mirror_hold *h, const char *head, size_t head_len,
                      const struct conf_kv *set, size_t nset, enum h1_body_kind body,
                      uint64_t content_length, uint64_t max_body)
{
    size_t hs = head_size(head_len, set, nset), room;
    ssize_t n;

    memset(h, 0, sizeof(*h));
    if (body == H1_BODY_LENGTH && content_length > max_body)
        return -EFBIG;
    room = body == H1_BODY_LENGTH ? (size_t)content_length
         : body == H1_BODY_CHUNKED ? (max_body < MIRROR_CHUNKED_FIRST ? (size_t)max_body
                                                                      : MIRROR_CHUNKED_FIRST)
         : 0;
    if (w->mirror_held + hs + room > MIRROR_MAX_HELD)
        return -ENOBUFS;
    if (!(h->p = malloc(hs + room)))
        return -ENOMEM;
    if ((n = write_head(h->p, head, head_len, set, nset)) < 0) {
        free(h->p);
        h->p = NULL;
        return -EINVAL;
    }
    h->len = h->head_len = (size_t)n;
    h->cap = hs + room;
    h->max_body = body == H1_BODY_NONE ? 0 : max_body;
    w->mirror_held += h->cap;
    return 0;
}

bool mirror_hold_append(struct worker *w, struct mirror_hold *h, const char *p, size_t n,
                        uint64_t body_size)
{
    if (!h->p || body_size > h->max_body)
        return false;
    if (n > h->cap - h->len) {
        /* Doubling: a body of any size is moved O(1) times per byte, and
         * never one allocation per chunk; the last step takes only what
         * the worker's bound has left. */
        size_t most = (size_t)(MIRROR_MAX_HELD - (w->mirror_held - h->cap));
        size_t cap = h->cap, grow;
        char *q;

        while (cap - h->len < n && cap < most)
            cap = cap > most / 2 ? most : cap * 2;
        if (cap - h->len < n || !(q = realloc(h->p, cap)))
            return false;
        grow = cap - h->cap;
        h->p = q;
        h->cap = cap;
        w->mirror_held += grow;
    }
    memcpy(h->p + h->len, p, n);
    h->len += n;
    return true;
}

void mirror_hold_rewind(struct mirror_hold *h)
{
    h->len = h->head_len;
}

void mirror_hold_drop(struct worker *w, struct mirror_hold *h)
{
    if (h->p) {
        w->mirror_held -= h->cap;
        free(h->p);
    }
    memset(h, 0, sizeof(*h));
}

void mirror_send_held(struct worker *w, struct pool *pool, const struct balance_req *req,
                      struct mirror_hold *h, enum h1_method method)
{
    const struct conf_breaker *br = &pool->conf->breaker;
    struct balancer *bl = &w->balancers[runtime_pool_index(w->rt, pool)];
    struct mirror *m, *list;
    struct backend *b;

    if (!h->p || w->nmirrors >= MIRROR_MAX_IN_FLIGHT || w->draining ||
        (br->max_connections &&
         atomic_load_explicit(&pool->connections, memory_order_relaxed) >= br->max_connections) ||
        !(b = balancer_pick(bl, req)) || !(m = calloc(1, sizeof(*m)))) {
        mirror_hold_drop(w, h);
        mirror_skipped(pool);
        return;
    }
    /* The held bytes become the copy's, still counted in mirror_held
     * until mirror_free. */
    m->req = h->p;
    m->req_len = h->len;
    m->head_len = h->head_len;
    m->held = h->cap;
    memset(h, 0, sizeof(*h));
    m->w = w;
    m->pool = pool;
    m->b = b;
    m->method = method;
    m->start_us = clock_now_us();
    h1_response_init(&m->resp, m->slots, MIRROR_MAX_HEADERS);
    timer_init(&m->timer, timer_fired);
    list = w->mirrors;
    DLIST_PUSH(list, m);
    w->mirrors = list;
    w->nmirrors++;
    atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->total, 1, memory_order_relaxed);
    mirror_connect(m);
}

void mirror_sweep(struct worker *w)
{
    struct mirror *m = w->mirrors, *next;

    for (; m; m = next) {
        next = m->next;
        if (atomic_load_explicit(&m->b->drain_expired, memory_order_relaxed))
            mirror_end(m, MIRROR_FAILED, false, "backend drained");
    }
}

void mirror_close_all(struct worker *w)
{
    while (w->mirrors)
        mirror_end(w->mirrors, MIRROR_FAILED, false, "sluice stops");
}
