/* One request sluice sends to a pool, its answer handed back whole (see
 * subrequest.h for the contract).
 *
 * Life: start picks a backend and takes an idle connection to it or opens
 * one; the first sending happens from the subrequest's task, so the caller
 * never hears back from inside subrequest_start (nor of a connect that
 * failed there at once: the task tells it). The request's bytes go out
 * (a buffer the subrequest took, or the caller's lent bytes), the answer
 * head is parsed in `in` and stays there, at its start,
 * while the body behind it is read through h1_body_take into `kept` (up to
 * max_body) and its raw bytes are dropped: the head's field slices stay
 * valid for the callback without copying them. Then the callback, then
 * the end: the task frees the struct once the current event batch is over
 * (an event for its connection may still be queued in it). */
#include "proxy/subrequest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "core/bytes.h"
#include "core/clock.h"
#include "proto/http1_body.h"
#include "proxy/h2_upstream.h"
#include "proxy/upstream.h"

/* Owner: its caller until the callback or subrequest_cancel; after that,
 * its own task, which frees it. */
struct subrequest {
    struct worker *w;
    struct pool *pool;
    subrequest_cb cb;
    void *arg;
    struct balance_req pick;            /* exclude points at tried */
    struct backend *tried[SUBREQUEST_MAX_TRIES];
    uint32_t ntried, tries;
    struct backend *b;                  /* the current try's; counted in b->active */
    struct backend *last;               /* the last one tried, for the answer */
    struct upstream_conn *up;
    bool reused;                        /* up came from the idle list */
    bool fresh_retry_done;              /* a stale idle connection was replaced once */
    enum h1_method method;
    struct buf *out;                    /* the request when taken as a buffer; else NULL */
    const char *req;                    /* the request's bytes (out's, or the caller's) */
    size_t req_len;
    size_t head_len;                    /* the head's bytes at req's start */
    size_t sent;                        /* bytes of req sent on this try */
    struct buf *in;                     /* the answer: its head, then unread body bytes */
    uint32_t head_end;                  /* in: where the head ends (once head_done) */
    uint32_t pos;                       /* in: the first body byte not yet taken */
    uint64_t got;                       /* answer bytes read on this try */
    struct h1_response resp;
    bool head_done;
    struct h1_body body;
    struct bytes kept;                  /* the body's first max_body bytes */
    uint32_t max_body;
    bool cut;                           /* the body had more than max_body */
    uint64_t start_us;                  /* this try's backend was picked */
    uint64_t deadline_ms;               /* 0: none */
    uint64_t active_ms;                 /* last progress, for the pool's timeouts */
    struct timer timer;
    struct loop_task task;              /* runs the first sending; frees once ended */
    const char *start_failed;           /* every try failed inside start: the task says so */
    bool ended;                         /* called back or cancelled: only freeing is left */
    bool delivering;                    /* inside the callback */
    struct h1_header slots[SUBREQUEST_MAX_HEADERS];
};

static void run(struct subrequest *s);
static void on_event(struct upstream_conn *u, uint32_t events);

/* ---- the end ---- */

static void release_backend(struct subrequest *s, bool failed)
{
    if (!s->b)
        return;
    if (failed) {
        atomic_fetch_add_explicit(&s->b->failures, 1, memory_order_relaxed);
        backend_report(s->b, false);
    }
    atomic_fetch_sub_explicit(&s->b->active, 1, memory_order_relaxed);
    s->b = NULL;
}

/* Everything held goes back; the struct itself waits for the task. */
static void finish(struct subrequest *s)
{
    timer_cancel(&s->w->loop.timers, &s->timer);
    if (s->up) {
        upstream_release(s->up, false);
        s->up = NULL;
    }
    release_backend(s, false);
    if (s->in)
        buf_put(&s->w->bufs, s->in);
    if (s->out)
        buf_put(&s->w->bufs, s->out);
    s->in = s->out = NULL;
    s->req = NULL;
    bytes_free(&s->kept);
    s->ended = true;
    loop_task_queue(&s->w->loop, &s->task);
}

/* May the connection serve another request? The whole request went out,
 * the answer ended where its framing said, and nothing followed it: not in
 * the buffer, nor in the socket (a read that filled the buffer spent the
 * edge, so the idle list would never notice such bytes). */
static bool reusable(struct subrequest *s)
{
    struct upstream_conn *u = s->up;
    char extra;

    if (!s->head_done || !s->body.done || !s->resp.keep_alive || s->resp.body == H1_BODY_CLOSE ||
        s->sent != s->req_len || s->pos != s->in->tail)
        return false;
    if (!u->h2 && u->readable) {
        if (upstream_recv(u, &extra, 1) >= 0 || errno != EAGAIN)
            return false;
        u->readable = false;
    }
    return true;
}

/* Call back, once: error NULL for the answer in hand. */
static void deliver(struct subrequest *s, const char *error)
{
    struct subrequest_answer a = {
        .error = error,
        .head = error ? NULL : &s->resp,
        .body = bytes_len(&s->kept) ? bytes_data(&s->kept) : "",
        .body_len = error ? 0 : bytes_len(&s->kept),
        .body_cut = !error && s->cut,
        .backend = s->last,
    };

    timer_cancel(&s->w->loop.timers, &s->timer);
    if (s->up) {
        /* Back to the idle list before the caller runs: it may start the
         * next subrequest to the same pool at once. */
        upstream_release(s->up, !error && reusable(s));
        s->up = NULL;
    }
    release_backend(s, false);
    s->delivering = true;
    s->cb(s->arg, &a);
    s->delivering = false;
    finish(s);
}

/* The backend failed this try (or answered nonsense): counted against it. */
static void deliver_failure(struct subrequest *s, const char *why)
{
    release_backend(s, true);
    deliver(s, why);
}

/* ---- picking and connecting ---- */

/* A connection to s->b: an idle one unless fresh, else a new one (a stream
 * of an HTTP/2 session for an http2 pool). NULL, or why it failed at once. */
static const char *connect_backend(struct subrequest *s, bool fresh)
{
    int err = 0;

    s->active_ms = clock_now_ms();
    s->sent = 0;
    s->got = 0;
    if (s->pool->conf->http2) {
        s->reused = false;
        s->up = h2_upstream_open(s->w, s->b, on_event, s, &err);
        return s->up ? NULL : "cannot open an HTTP/2 stream";
    }
    s->up = fresh ? NULL : upstream_take_idle(s->w, s->b);
    if (s->up) {
        s->reused = true;
        upstream_attach(s->up, on_event, s);
        s->up->writable = true;
        return NULL;
    }
    s->reused = false;
    s->up = upstream_connect(s->w, s->b, on_event, s, &err);
    return s->up ? NULL : "connect failed";
}

/* Pick a backend not tried yet and connect to it, trying the next one
 * when a connect fails at once. NULL, or why no try is under way. */
static const char *try_backends(struct subrequest *s)
{
    const struct conf_breaker *br = &s->pool->conf->breaker;
    struct balancer *bl = &s->w->balancers[runtime_pool_index(s->w->rt, s->pool)];
    const char *why = "no backend available";

    while (s->ntried < s->tries) {
        struct backend *b;

        if (br->max_connections &&
            atomic_load_explicit(&s->pool->connections, memory_order_relaxed) >=
                br->max_connections)
            return "pool over its connection limit";
        s->pick.exclude = (const struct backend *const *)s->tried;
        s->pick.nexclude = s->ntried;
        if (!(b = balancer_pick(bl, &s->pick)))
            return why;
        s->tried[s->ntried++] = b;
        s->b = s->last = b;
        s->start_us = clock_now_us();
        atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->total, 1, memory_order_relaxed);
        if (!(why = connect_backend(s, false)))
            return NULL;
        release_backend(s, true);
    }
    return why;
}

/* ---- timers ---- */

/* When it must have made progress by: the pool's connect timeout until
 * connected, then its upstream_response, and never past the deadline. */
static uint64_t due_ms(const struct subrequest *s)
{
    const struct conf_pool *pc = s->pool->conf;
    uint64_t d = s->active_ms + (s->up && s->up->connected ? pc->upstream_response_ms
                                                           : pc->connect_timeout_ms);

    return s->deadline_ms && s->deadline_ms < d ? s->deadline_ms : d;
}

static void arm(struct subrequest *s)
{
    timer_arm(&s->w->loop.timers, &s->timer, due_ms(s));
}

/* A try that never got connected: the next backend while tries and time
 * are left, else the failure, told by the last try's own why (that no
 * other backend was left to try is not why it failed). */
static void connect_failed(struct subrequest *s, const char *why)
{
    uint32_t ntried = s->ntried;
    const char *next;

    if (s->up) {
        upstream_release(s->up, false);
        s->up = NULL;
    }
    release_backend(s, true);
    if (s->deadline_ms && clock_now_ms() >= s->deadline_ms) {
        deliver(s, why);
        return;
    }
    if ((next = try_backends(s))) {
        deliver(s, s->ntried > ntried ? next : why);
        return;
    }
    arm(s);
    loop_task_queue(&s->w->loop, &s->task);
}

static void timer_fired(struct timer *t)
{
    struct subrequest *s = (void *)((char *)t - offsetof(struct subrequest, timer));
    uint64_t now = clock_now_ms();

    if (now < due_ms(s)) {
        arm(s);
        return;
    }
    if (s->up && !s->up->connected && !s->reused && (!s->deadline_ms || now < s->deadline_ms))
        connect_failed(s, "connect timeout");
    else
        deliver_failure(s, s->up && s->up->connected ? "timeout" : "connect timeout");
}

/* ---- the exchange ---- */

/* A failure on the connection: a reused one that the backend had closed
 * as we took it (nothing read yet) is replaced by a fresh one, once. */
static void io_failed(struct subrequest *s, const char *why)
{
    if (s->reused && s->got == 0 && !s->fresh_retry_done) {
        const char *failed;

        s->fresh_retry_done = true;
        upstream_release(s->up, false);
        s->up = NULL;
        if ((failed = connect_backend(s, true))) {
            connect_failed(s, failed);
            return;
        }
        arm(s);
        return;
    }
    deliver_failure(s, why);
}

/* Take what `in` holds of the answer. false: s has ended (called back). */
static bool frame(struct subrequest *s)
{
    struct buf *b = s->in;

    while (!s->head_done) {
        int r = h1_parse_response(b->data + b->head, buf_len(b), s->method, NULL, &s->resp);

        if (r == 0) {
            if (buf_room(b) == 0) {
                buf_compact(b);
                if (buf_room(b) == 0) {
                    deliver_failure(s, "answer head too large");
                    return false;
                }
            }
            return true;
        }
        if (r < 0) {
            deliver_failure(s, s->resp.error ? s->resp.error : "malformed answer");
            return false;
        }
        if (s->resp.status < 200 && s->resp.status != 101) {
            /* 100 Continue and the like: the real answer follows. */
            buf_consume(b, (uint32_t)r);
            h1_response_init(&s->resp, s->slots, SUBREQUEST_MAX_HEADERS);
            continue;
        }
        s->head_done = true;
        s->head_end = s->pos = b->head + (uint32_t)r;
        backend_observe_latency(s->b, clock_now_us() - s->start_us, clock_now_us());
        backend_report(s->b, s->resp.status < 500);
        if (s->resp.status == 101 || s->resp.tunnel) {
            /* Nothing asked to be upgraded: whatever follows is not an
             * answer to read to its end. The head is the answer; the
             * connection goes (its body never reads as done). */
            deliver(s, NULL);
            return false;
        }
        h1_body_init(&s->body, s->resp.body, s->resp.content_length);
    }
    ssize_t k = h1_body_take(&s->body, b->data + s->pos, b->tail - s->pos,
                             s->cut || !s->max_body ? NULL : &s->kept, NULL);
    if (k < 0) {
        deliver_failure(s, "malformed chunked answer");
        return false;
    }
    s->pos += (uint32_t)k;
    if (!s->cut && bytes_len(&s->kept) > s->max_body) {
        /* Kept: at most one read past the bound, cut back at once. */
        s->cut = true;
        s->kept.len = s->kept.off + s->max_body;
    }
    if (s->body.done) {
        /* A close-delimited body is never done here: EOF ends it. */
        deliver(s, NULL);
        return false;
    }
    /* The body bytes taken are not needed any more: the room behind the
     * head takes the next read (what a chunk line left over moves up). */
    memmove(b->data + s->head_end, b->data + s->pos, b->tail - s->pos);
    b->tail = s->head_end + (b->tail - s->pos);
    s->pos = s->head_end;
    return true;
}

static void run(struct subrequest *s)
{
    struct upstream_conn *u = s->up;

    if (s->pool->tls && !u->tls_ready) {
        int r = upstream_tls_step(u);

        if (r < 0) {
            connect_failed(s, r == -2 ? "out of memory" : "TLS handshake failed");
            return;
        }
        if (r == 0) {
            arm(s);
            return;
        }
    }
    while (u->writable && s->sent < s->req_len) {
        /* An HTTP/2 stream takes the head alone first: given more in that
         * call, it would keep the whole body with the head, past its own
         * bound on buffered body bytes. */
        size_t end = u->h2 && s->sent < s->head_len ? s->head_len : s->req_len;
        ssize_t n = upstream_send(u, s->req + s->sent, end - s->sent);
        if (n < 0) {
            if (errno == EAGAIN) {
                u->writable = false;
                break;
            }
            io_failed(s, "reset while sending");
            return;
        }
        s->sent += (size_t)n;
        s->active_ms = clock_now_ms();
    }
    while (u->readable) {
        ssize_t n;

        if (!s->in && !(s->in = buf_get(&s->w->bufs))) {
            deliver(s, "out of memory");
            return;
        }
        if (buf_room(s->in) == 0) {
            deliver_failure(s, "answer head too large");
            return;
        }
        n = upstream_recv(u, s->in->data + s->in->tail, buf_room(s->in));
        if (n > 0) {
            s->in->tail += (uint32_t)n;
            s->got += (uint64_t)n;
            s->active_ms = clock_now_ms();
            if (!frame(s))
                return;
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            u->readable = false;
            break;
        }
        if (n == 0 && s->head_done && s->resp.body == H1_BODY_CLOSE) {
            s->body.done = true;      /* the close ends it; the connection goes */
            deliver(s, NULL);
            return;
        }
        io_failed(s, n == 0 ? "closed before the answer ended" : "reset");
        return;
    }
    arm(s);
}

static void on_event(struct upstream_conn *u, uint32_t events)
{
    struct subrequest *s = u->owner;

    upstream_note_events(u, events);
    if (!u->connected) {
        if (upstream_socket_error(u) || !(events & EPOLLOUT)) {
            connect_failed(s, "connect failed");
            return;
        }
        u->connected = true;
        s->active_ms = clock_now_ms();
    }
    run(s);
}

/* The first sending of a try, out of the caller's stack, or the failure
 * of every try start made; or the free. */
static void task_run(struct loop_task *t)
{
    struct subrequest *s = (void *)((char *)t - offsetof(struct subrequest, task));

    if (s->ended)
        free(s);
    else if (s->start_failed)
        deliver(s, s->start_failed);     /* each backend tried was counted failed */
    else if (s->up && (s->up->connected || s->reused))
        run(s);
}

struct subrequest *subrequest_start(struct worker *w, const struct subrequest_params *p,
                                    const char **why)
{
    struct subrequest *s = calloc(1, sizeof(*s));

    if (!s) {
        buf_put(&w->bufs, p->request);      /* NULL: lent bytes, the caller's */
        *why = "out of memory";
        return NULL;
    }
    s->w = w;
    s->pool = p->pool;
    s->cb = p->cb;
    s->arg = p->arg;
    if (p->pick)
        s->pick = *p->pick;
    s->tries = p->tries < 1 ? 1 : p->tries > SUBREQUEST_MAX_TRIES ? SUBREQUEST_MAX_TRIES
                                                                  : p->tries;
    s->method = p->method;
    s->out = p->request;
    s->req = s->out ? s->out->data + s->out->head : p->request_bytes;
    s->req_len = s->out ? buf_len(s->out) : p->request_len;
    s->head_len = p->head_len && p->head_len < s->req_len ? p->head_len : s->req_len;
    s->max_body = p->max_body;
    s->deadline_ms = p->deadline_ms;
    h1_response_init(&s->resp, s->slots, SUBREQUEST_MAX_HEADERS);
    timer_init(&s->timer, timer_fired);
    loop_task_init(&s->task, task_run);
    if ((*why = try_backends(s))) {
        if (s->ntried) {
            /* Backends were tried and failed at once: that is an end the
             * caller hears of, through the callback, as of any try. */
            s->start_failed = *why;
            *why = NULL;
            loop_task_queue(&w->loop, &s->task);
            return s;
        }
        buf_put(&w->bufs, s->out);
        free(s);
        return NULL;
    }
    arm(s);
    loop_task_queue(&w->loop, &s->task);
    return s;
}

void subrequest_cancel(struct subrequest *s)
{
    if (!s || s->delivering || s->ended)
        return;
    finish(s);
}

void subrequest_fail(struct subrequest *s, const char *why)
{
    if (!s || s->delivering || s->ended)
        return;
    deliver_failure(s, why);
}

struct backend *subrequest_backend(const struct subrequest *s)
{
    return s->ended ? NULL : s->b;
}
