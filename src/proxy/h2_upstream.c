/* HTTP/2 to backends (pools with `http2: true`), for gRPC and any backend
 * that speaks HTTP/2 in the clear (prior knowledge).
 *
 * Per worker and backend, sessions: one TCP connection each, carrying many
 * streams at once (a new session only when the backend's
 * SETTINGS_MAX_CONCURRENT_STREAMS is reached). To proxy/http.c each stream
 * is an upstream_conn like any other, with no socket: the HTTP/1.1 request
 * it sends (http_write_request_head's head, then the body as framed) is
 * turned into HEADERS and DATA here (a chunked body's trailer section into
 * trailing HEADERS), and the response comes back to it as
 * HTTP/1.1: the head, then the body chunked, with the HTTP/2 trailers as
 * the chunked trailer section (gRPC's grpc-status rides there). So http.c's
 * balancing, retries, timeouts and logs apply per stream unchanged.
 *
 * Memory is bounded the same way as on the client side (proxy/h2.c): the
 * response bytes wait here until http.c reads them, and only what it read
 * goes back into the backend's window; request body bytes wait until the
 * backend's window takes them, and http.c is held (EAGAIN) meanwhile. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <nghttp2/nghttp2.h>

#include "core/bytes.h"
#include "core/clock.h"
#include "core/list.h"
#include "core/log.h"
#include "net/addr.h"
#include "proto/tls.h"
#include "proto/http1.h"
#include "proto/http1_body.h"
#include "proxy/h2_out.h"
#include "proxy/h2_upstream.h"
#include "proxy/http_message.h"

#define UP_TX_MAX 65536             /* request body bytes queued per stream */
#define UP_WINDOW 65535             /* per stream: response bytes we let wait */
#define UP_OUT_BATCH 32768
#define UP_HEAD_MAX 131072          /* a request head as http.c writes it */
/* Field lines of a head as http.c writes it: a client's up to 128
 * (limits.max_headers), the ones sluice adds (X-Forwarded-*, Forwarded,
 * X-Request-Id, ...) and a route's set_headers. */
#define UP_SLOTS (128 + 64)

struct h2_session;

/* One stream. Owner: the exchange (as its upstream_conn) until released;
 * then freed by its task. */
struct h2_ustream {
    struct upstream_conn u;         /* what http.c holds; u.h2 points back here */
    struct h2_session *s;           /* NULL once the session is gone */
    int32_t id;                     /* 0 until the request head is submitted */
    struct loop_task task;          /* delivers events, or frees once released */
    uint32_t events;                /* for u.cb, gathered until the task runs */
    bool released;
    bool failed;                    /* reset, or the session died */
    bool refused;                   /* reset unprocessed, before any answer: REFUSED_STREAM,
                                       or past a GOAWAY's last stream (RFC 9113 8.7) */
    /* request: HTTP/1.1 from http.c → HEADERS + DATA */
    struct bytes hd;
    struct h1_request req;
    struct h1_header slots[UP_SLOTS];
    bool head_sent;
    struct h1_body body;            /* the request body, out of its framing */
    struct bytes tx;
    struct bytes trailers;          /* a chunked body's trailer section, as received */
    bool deferred, want_room;       /* the body's end: body.done */
    /* response: HEADERS + DATA → HTTP/1.1 for http.c */
    struct bytes rx;
    uint32_t unacked;               /* DATA bytes not yet given back to the window */
    int status;                     /* of the head being received */
    bool rx_body, rx_end;
    bool rx_close;                  /* an HTTP/1.0 request: the body goes unframed,
                                       ended by EOF (chunked is HTTP/1.1 only) */
    bool head_length;               /* a HEAD answer's content-length is in rx */
    struct h2_ustream *prev, *next;
};

/* One connection to a backend. Owner: its worker (w->h2_sessions). */
struct h2_session {
    struct upstream_conn *conn;     /* the TCP connection (proxy/upstream.c's) */
    struct worker *w;
    struct backend *b;
    uint32_t epoch;                 /* b's epoch: a discovery slot filled anew is
                                       another backend, which this must not serve */
    nghttp2_session *ng;
    struct bytes out;
    bool tcp_up;                    /* the TCP connect completed */
    bool connected, dead;           /* connected: TCP (and TLS, ALPN h2) done */
    int error;                      /* why it died, for h2_upstream_error */
    uint32_t nstreams;
    struct h2_ustream *streams;
    struct timer idle;              /* closes it after upstream_idle without streams */
    struct loop_task task;          /* run: send what nghttp2 has */
    struct h2_session *prev, *next;
};

static void session_kill(struct h2_session *s, int error);

static void session_schedule(struct h2_session *s)
{
    loop_task_queue(&s->w->loop, &s->task);
}

/* Tell the exchange, after the current callbacks are done. */
static void stream_notify(struct h2_ustream *us, uint32_t events)
{
    us->events |= events;
    loop_task_queue(&us->u.w->loop, &us->task);
}

static void stream_task(struct loop_task *t)
{
    struct h2_ustream *us = (void *)((char *)t - offsetof(struct h2_ustream, task));
    uint32_t ev = us->events;

    if (us->released) {
        bytes_free(&us->hd);
        bytes_free(&us->tx);
        bytes_free(&us->trailers);
        bytes_free(&us->rx);
        free(us);
        return;
    }
    us->events = 0;
    if (ev && us->u.cb)
        us->u.cb(&us->u, ev);
}

static void stream_detach(struct h2_ustream *us)
{
    struct h2_session *s = us->s;

    if (!s)
        return;
    /* What http.c has not read yet goes back to the session's window now:
     * the stream can take no more, and the connection must not shrink. */
    if (us->id && us->unacked && !s->dead)
        nghttp2_session_consume(s->ng, us->id, us->unacked);
    us->unacked = 0;
    if (us->id)
        nghttp2_session_set_stream_user_data(s->ng, us->id, NULL);
    DLIST_REMOVE(s->streams, us);
    s->nstreams--;
    us->s = NULL;
    if (!s->nstreams && !s->dead)
        timer_arm(&s->w->loop.timers, &s->idle,
                  clock_now_ms() + s->b->pool->conf->upstream_idle_ms);
}

/* ---- nghttp2 callbacks (client side) ---- */

static ssize_t read_request_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                                 uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct h2_ustream *us = src->ptr;
    size_t n = bytes_take(&us->tx, buf, len);

    if (!bytes_len(&us->tx) && us->body.done) {
        /* The body is over: END_STREAM goes on its trailers, if any. */
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (bytes_len(&us->trailers) && h2_submit_trailer_section(ng, id, &us->trailers))
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    } else if (!n) {
        us->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (us->want_room && bytes_len(&us->tx) < UP_TX_MAX) {
        us->want_room = false;
        stream_notify(us, EPOLLOUT);
    }
    return (ssize_t)n;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct h2_ustream *us = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    bool ok = true;

    /* After the answer's end (a HEAD's head), nothing more joins rx; nor
     * do trailers where there is no chunked trailer section for them. */
    if (!us || us->failed || us->rx_end || (us->rx_close && us->rx_body))
        return 0;
    /* A backend's head (or trailers) larger than any http.c takes: the
     * stream is reset rather than buffered. */
    if (bytes_len(&us->rx) + namelen + valuelen > UP_HEAD_MAX)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        char line[64];
        int status = atoi((const char *)value);
        int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, http_reason(status));

        us->status = status;
        ok = bytes_put(&us->rx, line, (size_t)n);
    } else if (namelen == 14 && memcmp(name, "content-length", 14) == 0 &&
               us->req.method_id == H1_HEAD && us->status >= 200 && !us->rx_body &&
               !us->head_length) {
        /* A HEAD answer has no body, and its content-length is the GET's
         * body length: it is passed on as it is. */
        ok = bytes_put(&us->rx, "content-length: ", 16) && bytes_put(&us->rx, value, valuelen) &&
             bytes_put(&us->rx, "\r\n", 2);
        us->head_length = ok;
    } else if (name[0] == ':' || (namelen == 14 && memcmp(name, "content-length", 14) == 0) ||
               (namelen == 17 && memcmp(name, "transfer-encoding", 17) == 0) ||
               (namelen == 10 && memcmp(name, "connection", 10) == 0)) {
        return 0;                   /* the framing is ours: chunked */
    } else {
        ok = bytes_put(&us->rx, name, namelen) && bytes_put(&us->rx, ": ", 2) &&
             bytes_put(&us->rx, value, valuelen) && bytes_put(&us->rx, "\r\n", 2);
    }
    if (!ok)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2_ustream *us = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);

    /* Trailers: the chunked body's last chunk, then the fields. */
    if (us && f->headers.cat == NGHTTP2_HCAT_HEADERS && us->rx_body && !us->rx_close &&
        !bytes_put(&us->rx, "0\r\n", 3))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2_ustream *us;
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(us = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id)) || us->failed ||
        us->rx_end)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && !us->rx_body) {
        /* The head is complete. A 1xx is followed by the real head; a
         * body (or trailers) follows unless END_STREAM came with it. */
        if (us->status < 200) {
            if (!bytes_put(&us->rx, "\r\n", 2))
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        } else if (end || us->req.method_id == H1_HEAD) {
            /* No body: 204 and 304 say so themselves, and a HEAD answer
             * with the backend's content-length. A HEAD answer ends here
             * even without END_STREAM: what follows can only be empty. */
            const char *tail = us->status == 204 || us->status == 304 || us->head_length
                                   ? "\r\n" : "content-length: 0\r\n\r\n";
            if (!bytes_put(&us->rx, tail, strlen(tail)))
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            us->rx_end = true;
        } else {
            /* An HTTP/1.0 client must not get chunked (RFC 9112 6.1), and
             * http.c passes the framing on as it is: its body ends with
             * the stream, as an EOF (h2_upstream_recv). */
            us->rx_close = us->req.minor == 0;
            if (!bytes_put(&us->rx, us->rx_close ? "\r\n" : "transfer-encoding: chunked\r\n\r\n",
                           us->rx_close ? 2 : 30))
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            us->rx_body = true;
        }
    } else if (end && us->rx_body && !us->rx_end) {
        /* The end of the body: after trailers, their empty line; else the
         * last chunk too; unframed, nothing. */
        const char *tail = us->rx_close ? "" : f->hd.type == NGHTTP2_HEADERS ? "\r\n" : "0\r\n\r\n";
        if (!bytes_put(&us->rx, tail, strlen(tail)))
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        us->rx_end = true;
    }
    /* An unframed body's end is an EOF to read, as a socket's would be:
     * RDHUP keeps http.c reading past a short read until it gets it. */
    stream_notify(us, us->rx_close && us->rx_end ? EPOLLIN | EPOLLRDHUP : EPOLLIN);
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *ud)
{
    struct h2_ustream *us = nghttp2_session_get_stream_user_data(ng, id);

    if (!us || us->failed || us->rx_end) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    us->unacked += (uint32_t)len;
    /* An empty DATA frame must not become the last chunk. */
    if (len && !(us->rx_close ? bytes_put(&us->rx, data, len) : h2_put_chunk(&us->rx, data, len)))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    stream_notify(us, EPOLLIN);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    struct h2_ustream *us = nghttp2_session_get_stream_user_data(ng, id);

    if (!us)
        return 0;
    if (!us->rx_end) {
        /* Reset before the response ended: http.c sees a reset backend
         * (and may retry a refused stream elsewhere). */
        us->failed = true;
        us->refused = code == NGHTTP2_REFUSED_STREAM && !us->status;
        log_debug("event=h2_upstream_reset pool=%s backend=%s code=%u", us->u.b->pool->conf->name,
                  us->u.b->conf->name, code);
    }
    stream_detach(us);
    stream_notify(us, EPOLLIN | EPOLLOUT);
    return 0;
}

/* ---- the session's connection ---- */


static bool session_flush(struct h2_session *s)
{
    struct upstream_conn *c = s->conn;

    for (;;) {
        while (c->writable && bytes_len(&s->out)) {
            ssize_t r = tls_sock_send(c->tls, c->io.fd, bytes_data(&s->out), bytes_len(&s->out));

            if (r < 0 && errno == EAGAIN) {
                c->writable = false;
                return true;
            }
            if (r <= 0)
                return false;
            s->out.off += (uint32_t)r;
        }
        if (bytes_len(&s->out))
            return true;
        bytes_clear(&s->out);
        if (!h2_out_gather(s->ng, &s->out, UP_OUT_BATCH))
            return false;
        if (!bytes_len(&s->out))
            return true;
    }
}

static void session_run(struct h2_session *s)
{
    struct upstream_conn *c = s->conn;
    char buf[16384];

    if (s->dead || !s->connected)
        return;
    while (c->readable) {
        ssize_t n = tls_sock_recv(c->tls, c->io.fd, buf, sizeof(buf));

        if (n < 0 && errno == EAGAIN) {
            c->readable = false;
            break;
        }
        if (n <= 0) {
            session_kill(s, n == 0 ? ECONNRESET : errno);
            return;
        }
        if (nghttp2_session_mem_recv(s->ng, (const uint8_t *)buf, (size_t)n) < 0) {
            session_flush(s);
            session_kill(s, EPROTO);
            return;
        }
        if ((size_t)n < sizeof(buf) && !c->hup && !c->tls)
            c->readable = false;
    }
    if (!session_flush(s)) {
        session_kill(s, ECONNRESET);
        return;
    }
    if (!nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng) &&
        !bytes_len(&s->out))
        session_kill(s, ECONNRESET);    /* GOAWAY both ways, nothing left */
}

static void session_task(struct loop_task *t)
{
    struct h2_session *s = (void *)((char *)t - offsetof(struct h2_session, task));

    if (s->dead)
        free(s);
    else
        session_run(s);
}

/* Events of the TCP connection (upstream.c calls this as its owner). */
static void session_event(struct upstream_conn *c, uint32_t events)
{
    struct h2_session *s = c->owner;

    if (s->dead)
        return;
    upstream_note_events(c, events);
    if (!s->tcp_up) {
        int err = upstream_socket_error(c);

        if (err || !(events & EPOLLOUT)) {
            session_kill(s, err ? err : ECONNREFUSED);
            return;
        }
        s->tcp_up = true;
        c->connected = true;
        if (s->b->pool->tls) {
            char ip[ADDR_TEXT_MAX];

            addr_format_host(&s->b->conf->address, ip, sizeof(ip));
            if (!(c->tls = tls_client_conn(s->b->pool->tls, c->io.fd, ip))) {
                session_kill(s, ENOMEM);
                return;
            }
        }
    }
    if (!s->connected) {
        if (c->tls) {
            char who[320];
            int r = tls_handshake_step(c->tls, &c->tls_want, &c->readable, &c->writable);

            if (r == 0)
                return;
            snprintf(who, sizeof(who), "pool=%s backend=%s", s->b->pool->conf->name,
                     s->b->conf->name);
            if (r < 0) {
                tls_log_failure(who, &s->b->conf->address);
                session_kill(s, ECONNREFUSED);
                return;
            }
            if (!tls_alpn_h2(c->tls)) {
                log_warn("event=h2_upstream_failed %s why=\"the backend did not agree to h2 in "
                         "ALPN\"", who);
                session_kill(s, ECONNREFUSED);
                return;
            }
        }
        s->connected = true;
        for (struct h2_ustream *us = s->streams; us; us = us->next)
            stream_notify(us, EPOLLOUT);
    }
    session_run(s);
}

static void session_idle(struct timer *t)
{
    struct h2_session *s = (void *)((char *)t - offsetof(struct h2_session, idle));

    if (!s->nstreams)
        session_kill(s, 0);
}

/* The session ends: its streams fail, the connection closes, it is freed
 * after this event batch. */
static void session_kill(struct h2_session *s, int error)
{
    struct h2_session *head = s->w->h2_sessions;

    if (s->dead)
        return;
    s->dead = true;
    s->error = error ? error : ECONNRESET;
    while (s->streams) {
        struct h2_ustream *us = s->streams;

        if (!us->rx_end)
            us->failed = true;
        stream_detach(us);
        stream_notify(us, EPOLLIN | EPOLLOUT | EPOLLERR);
    }
    nghttp2_session_del(s->ng);
    bytes_free(&s->out);
    timer_cancel(&s->w->loop.timers, &s->idle);
    upstream_release(s->conn, false);
    DLIST_REMOVE(head, s);
    s->w->h2_sessions = head;
    loop_task_queue(&s->w->loop, &s->task);
}

static struct h2_session *session_new(struct worker *w, struct backend *b, int *err)
{
    struct h2_session *s = calloc(1, sizeof(*s)), *head;
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, UP_WINDOW},
    };

    if (!s || nghttp2_session_callbacks_new(&cbs)) {
        free(s);
        *err = -ENOMEM;
        return NULL;
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    if (nghttp2_option_new(&opt)) {
        nghttp2_session_callbacks_del(cbs);
        free(s);
        *err = -ENOMEM;
        return NULL;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* The connection's window as large as it goes: each stream's own
     * window (UP_WINDOW) already bounds what waits here for its client. A
     * connection window of one stream's size would let a single client that
     * stops reading take all of it, and stall every other stream of the
     * session until that client times out. */
    if (nghttp2_session_client_new2(&s->ng, cbs, s, opt) ||
        nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, 2) ||
        nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_MAX_WINDOW_SIZE)) {
        nghttp2_session_callbacks_del(cbs);
        nghttp2_option_del(opt);
        if (s->ng)
            nghttp2_session_del(s->ng);
        free(s);
        *err = -ENOMEM;
        return NULL;
    }
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    if (!(s->conn = upstream_connect(w, b, session_event, s, err))) {
        nghttp2_session_del(s->ng);
        free(s);
        return NULL;
    }
    s->w = w;
    s->b = b;
    s->epoch = atomic_load_explicit(&b->epoch, memory_order_relaxed);
    timer_init(&s->idle, session_idle);
    loop_task_init(&s->task, session_task);
    head = w->h2_sessions;
    DLIST_PUSH(head, s);
    w->h2_sessions = head;
    return s;
}

/* A live session to b with room for one more stream. */
static struct h2_session *session_for(struct worker *w, struct backend *b)
{
    for (struct h2_session *s = w->h2_sessions; s; s = s->next) {
        uint32_t max;

        if (s->b != b || s->dead || s->epoch != atomic_load_explicit(&b->epoch, memory_order_relaxed))
            continue;
        max = nghttp2_session_get_remote_settings(s->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if (s->nstreams < max && nghttp2_session_check_request_allowed(s->ng))
            return s;
    }
    return NULL;
}

/* ---- http.c's side ---- */

struct upstream_conn *h2_upstream_open(struct worker *w, struct backend *b, upstream_cb cb,
                                       void *owner, int *err)
{
    struct h2_session *s = session_for(w, b);
    struct h2_ustream *us;

    if (!s && !(s = session_new(w, b, err)))
        return NULL;
    if (!(us = calloc(1, sizeof(*us)))) {
        *err = -ENOMEM;
        return NULL;
    }
    us->u.io.fd = -1;
    us->u.w = w;
    us->u.b = b;
    us->u.cb = cb;
    us->u.owner = owner;
    us->u.h2 = us;
    us->u.tls_ready = true;            /* TLS, if any, is the session's */
    us->s = s;
    loop_task_init(&us->task, stream_task);
    h1_request_init(&us->req, us->slots, UP_SLOTS);
    DLIST_PUSH(s->streams, us);
    s->nstreams++;
    timer_cancel(&w->loop.timers, &s->idle);
    if (s->connected)
        stream_notify(us, EPOLLOUT);    /* as a connect completing */
    return &us->u;
}

int h2_upstream_error(struct upstream_conn *u)
{
    struct h2_ustream *us = u->h2;

    return us->failed ? (us->s ? ECONNRESET : ECONNREFUSED) : 0;
}

/* The request head, parsed (it is http.c's own writing), as HEADERS. */
static int submit_request(struct h2_ustream *us)
{
    struct h2_session *s = us->s;
    nghttp2_nv nv[UP_SLOTS + 5];
    char names[UP_SLOTS][48];
    uint8_t *allocated[UP_SLOTS];
    size_t n = 0, nalloc = 0;
    nghttp2_data_provider prd = {.source.ptr = us, .read_callback = read_request_body};
    struct h1_request *r = &us->req;
    const struct h1_header *host = h1_find_header(r->headers, r->nheaders, "host");
    int32_t id;

#define NV(name, value, vlen) \
    (nv[n++] = (nghttp2_nv){(uint8_t *)(name), (uint8_t *)(value), strlen(name), (vlen), NGHTTP2_NV_FLAG_NONE})
    NV(":method", r->method.p, r->method.len);
    NV(":scheme", "http", 4);
    NV(":path", r->target.p, r->target.len);
    if (host)
        NV(":authority", host->value.p, host->value.len);
    /* gRPC servers ask for it; HTTP/2 allows no other TE. */
    NV("te", "trailers", 8);
    for (uint32_t i = 0; i < r->nheaders; i++) {
        const struct h1_header *f = &r->headers[i];
        uint8_t *lower;

        if (h1_slice_eq_ci(f->name, "host") || h1_slice_eq_ci(f->name, "connection") ||
            h1_slice_eq_ci(f->name, "keep-alive") || h1_slice_eq_ci(f->name, "transfer-encoding") ||
            h1_slice_eq_ci(f->name, "upgrade") || h1_slice_eq_ci(f->name, "te") ||
            h1_slice_eq_ci(f->name, "proxy-connection"))
            continue;
        if (f->name.len < sizeof(names[0]))
            lower = (uint8_t *)names[i];
        else if (!(lower = allocated[nalloc++] = malloc(f->name.len)))
            goto fail;
        nv[n++] = h2_field(f, lower);
    }
#undef NV
    id = nghttp2_submit_request(s->ng, NULL, nv, n, r->body == H1_BODY_NONE ? NULL : &prd, us);
    while (nalloc)
        free(allocated[--nalloc]);
    if (id < 0)
        return -1;
    us->id = id;
    us->head_sent = true;
    h1_body_init(&us->body, r->body, r->content_length);
    session_schedule(s);
    return 0;
fail:
    while (nalloc)
        free(allocated[--nalloc]);
    return -1;
}

/* Request body bytes, framed as the head said, into tx. Bytes used, -1.
 * A chunked body's trailer section (an HTTP/1.1 client's, or an HTTP/2
 * client's request trailers as proxy/h2.c wrote them) goes to trailers,
 * bounded by the chunked scan (H1_TRAILERS_MAX), and leaves as a trailing
 * HEADERS frame once the DATA has (read_request_body). */
static ssize_t take_body(struct h2_ustream *us, const char *p, size_t n)
{
    return h1_body_take(&us->body, p, n, &us->tx, &us->trailers);
}

ssize_t h2_upstream_send(struct upstream_conn *u, const void *p, size_t n)
{
    struct h2_ustream *us = u->h2;
    size_t used = 0;

    if (us->failed || !us->s) {
        errno = us->refused ? ECONNREFUSED : EPIPE;
        return -1;
    }
    if (!us->head_sent) {
        const struct h1_limits lim = {.max_request_line = UP_HEAD_MAX, .max_head = UP_HEAD_MAX,
                                      .max_headers = UP_SLOTS};
        int r;

        if (!bytes_put(&us->hd, p, n))
            goto fail;
        used = n;
        r = h1_parse_request(bytes_data(&us->hd), bytes_len(&us->hd), &lim, &us->req);
        if (r == H1_NEED_MORE) {
            if (bytes_len(&us->hd) > UP_HEAD_MAX)
                goto fail;
            return (ssize_t)n;
        }
        if (r < 0 || us->req.method_id == H1_CONNECT || submit_request(us) < 0)
            goto fail;
        if ((uint32_t)r < bytes_len(&us->hd) &&
            take_body(us, bytes_data(&us->hd) + r, bytes_len(&us->hd) - (uint32_t)r) < 0)
            goto fail;
        /* The head's slices point into hd: it stays until the stream ends. */
    } else {
        size_t room = bytes_len(&us->tx) < UP_TX_MAX ? UP_TX_MAX - bytes_len(&us->tx) : 0;
        ssize_t r;

        if (!room) {
            us->want_room = true;
            errno = EAGAIN;
            return -1;
        }
        if ((r = take_body(us, p, n < room ? n : room)) < 0)
            goto fail;
        used = (size_t)r;
        /* Short: http.c waits for the room (a socket's EPOLLOUT). */
        if (used < n)
            us->want_room = true;
    }
    if (us->deferred && (bytes_len(&us->tx) || us->body.done)) {
        us->deferred = false;
        nghttp2_session_resume_data(us->s->ng, us->id);
    }
    session_schedule(us->s);
    return (ssize_t)used;
fail:
    log_warn("event=h2_upstream_request_failed pool=%s backend=%s", u->b->pool->conf->name,
             u->b->conf->name);
    us->failed = true;
    if (us->id)
        nghttp2_submit_rst_stream(us->s->ng, NGHTTP2_FLAG_NONE, us->id, NGHTTP2_INTERNAL_ERROR);
    session_schedule(us->s);
    errno = EPIPE;
    return -1;
}

ssize_t h2_upstream_recv(struct upstream_conn *u, void *p, size_t n)
{
    struct h2_ustream *us = u->h2;
    size_t got = bytes_take(&us->rx, p, n);

    if (got) {
        if (us->s && us->id) {
            /* Give back to the window only DATA that has left rx: all that
             * rx still holds stays counted. Acking the bytes read instead
             * would count the chunked framing (and the head) as DATA: with
             * one-byte DATA frames, 6 bytes in rx each, every byte read
             * would let in 6 more and rx would grow without bound. Once rx
             * is empty, everything received is given back. */
            uint32_t left = bytes_len(&us->rx);
            uint32_t ack = us->unacked > left ? us->unacked - left : 0;
            if (ack) {
                us->unacked -= ack;
                nghttp2_session_consume(us->s->ng, us->id, ack);
                session_schedule(us->s);
            }
        }
        return (ssize_t)got;
    }
    /* An EOF only where it ends an unframed body; else the chunked
     * framing says where the response ends. */
    if (us->rx_close && us->rx_end && !us->failed)
        return 0;
    /* ECONNREFUSED: http.c may send the request elsewhere, as after a
     * refused connect. */
    errno = !us->failed ? EAGAIN : us->refused ? ECONNREFUSED : ECONNRESET;
    return -1;
}

void h2_upstream_release(struct upstream_conn *u)
{
    struct h2_ustream *us = u->h2;
    struct h2_session *s = us->s;

    us->released = true;
    u->cb = NULL;
    u->owner = NULL;
    /* A stream still attached is still open in nghttp2: the response has
     * not ended, or it has but the request body has not (an early answer).
     * Either way nghttp2 keeps the body's source, which points at us: reset
     * the stream so that it never reads from us once freed (a late
     * WINDOW_UPDATE would), and so the stream does not stay open forever,
     * counted against the backend's concurrent streams. */
    if (s && us->id)
        nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, us->id, NGHTTP2_CANCEL);
    stream_detach(us);
    if (s)
        session_schedule(s);
    loop_task_queue(&u->w->loop, &us->task);     /* frees it */
}

void h2_upstream_close_idle(struct worker *w)
{
    struct h2_session *s = w->h2_sessions, *next;

    for (; s; s = next) {
        next = s->next;
        if (!s->nstreams)
            session_kill(s, 0);
    }
}

void h2_upstream_close_all(struct worker *w)
{
    while (w->h2_sessions)
        session_kill(w->h2_sessions, ECONNRESET);
}
