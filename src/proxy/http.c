/* L7 HTTP/1.1: one client connection, one exchange at a time, read top to
 * bottom:
 *
 *   IDLE (keep-alive, holds no buffer) ─▶ HEAD (reading a request head,
 *   bounded by client_header) ─▶ route ─▶ LOCAL (sluice answers: error,
 *   redirect, respond) or FORWARD (pick a backend, take an idle upstream
 *   connection or connect, send the rewritten head, stream the body both
 *   ways) ─▶ done: the upstream connection goes back to its idle list when
 *   the exchange ended cleanly, the client goes back to IDLE (or serves the
 *   next pipelined request already in its buffer), or closes.
 *   A 101 answer to an Upgrade request turns the exchange into a TUNNEL.
 *
 * Framing is never guessed: request bodies are forwarded only as far as
 * Content-Length or the chunked framing (h1_chunked_scan) says, so a
 * pipelined request cannot be smuggled into the previous one's body.
 *
 * A retry happens only while nothing of the response has reached the client:
 * a refused or timed-out connect goes to the next backend; a reused
 * keep-alive connection that the backend had closed is replaced by a fresh
 * one, for requests without a body that may be replayed.
 *
 * Memory: an idle keep-alive connection is a struct http_conn and nothing
 * else. The exchange (header slots, parse state) exists only while a request
 * is in flight; buffers only while they hold bytes. The request head stays
 * at the start of conn->in until the exchange ends (the parsed slices point
 * into it; see `body_pos`). */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/list.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/offload.h"
#include "admin/metrics.h"
#include "proxy/access_log.h"
#include "proxy/end.h"
#include "proxy/ext_auth.h"
#include "proxy/grpc.h"
#include "proxy/h2.h"
#include "proxy/h2_upstream.h"
#include "proxy/http_message.h"
#include "proxy/mirror.h"
#include "proxy/proxy.h"
#include "proxy/pump.h"
#include "proxy/upstream.h"
#include "peers/peers.h"
#include "proto/tls.h"
#include "route/route.h"

#define HTTP_MAX_HEADERS 128
#define HTTP_MAX_TRIES 12
#define HTTP_RUN_ROUNDS 32
#define HTTP_LINGER_MS 2000       /* a closing connection drops the client's late bytes this long */

enum http_state {
    HC_IDLE,       /* between requests; no bytes of the next one yet */
    HC_HEAD,       /* some bytes of a request head */
    HC_FORWARD,    /* exchange with a backend */
    HC_AUTH,       /* a password being hashed on a helper thread (core/offload.c) */
    HC_LOCAL,      /* writing a response sluice made */
    HC_TUNNEL,     /* after 101: opaque bytes both ways */
    HC_LINGER,     /* answered and shut; dropping what the client still sends */
    HC_CLOSED,
};

/* One request/response. Owner: its http_conn. */
struct http_exchange {
    struct h1_request req;
    struct h1_response resp;
    const struct conf_route *route;
    struct pool *pool;
    struct balancer *balancer;
    struct backend *backend;            /* counted in backend->active */
    struct backend *tried[HTTP_MAX_TRIES];
    struct backend *sticky;             /* the backend the sticky cookie named, if any */
    unsigned retry_after_s;             /* Retry-After of a local 429/503; 0 = 1 s */
    const char *www_authenticate;       /* the challenge of a local 401 */
    struct conf_pool *cpool;            /* the pool routing chose, while auth runs */
    uint8_t tries;
    bool fresh_retry_done;              /* replaced a stale keep-alive connection once */
    bool counted;                       /* in pool->requests_active */
    bool pending;                       /* in pool->pending (connecting) */
    bool body_lost;                     /* body bytes were dropped after sending: no replay */
    bool mirror_due;                    /* the route's mirror gets a copy once it is sent */
    struct mirror_hold mirror;          /* that copy, built as the request is sent */
    uint8_t retries;                    /* tries sent again under the retry policy */
    uint32_t replay_pos;                /* offset in conn->in where the body starts */
    uint64_t try_start_ms;              /* the current try began (per_try_timeout) */
    uint64_t retry_at_ms;               /* backoff: the next try starts then (0: none) */
    struct upstream_conn *up;
    bool up_reused;
    struct buf *to_up;                  /* head (and buffered bytes) for the backend */
    struct buf *from_up;                /* bytes read from the backend */
    uint32_t approved;                  /* leading bytes of from_up cleared to go to the client */
    uint32_t body_pos;                  /* offset in conn->in where unconsumed bytes start */
    /* request body, client → backend */
    uint64_t req_left;                  /* Content-Length bytes still to forward */
    struct h1_chunked req_chunk;
    bool req_done;                      /* the whole request (head + body) is sent */
    bool req_body_read;                 /* the whole body was read from the client */
    uint64_t req_bytes;                 /* body bytes forwarded */
    /* response, backend → client */
    bool resp_head_done;
    bool resp_done;                     /* every response byte is approved */
    bool resp_started;                  /* a byte reached the client: no retry */
    uint64_t resp_left;
    struct h1_chunked resp_chunk;
    uint64_t resp_bytes;                /* bytes sent to the client, head included */
    int status;
    enum end_reason end;
    /* gRPC (proxy/grpc.h) */
    bool grpc;                          /* a gRPC call: sluice's own errors take gRPC's shape */
    int grpc_status;                    /* the grpc-status sluice answered itself; 0 = none */
    uint64_t grpc_deadline_ms;          /* from grpc-timeout: the call ends then; 0 = none */
    /* tunnel */
    struct pump_dir tun_up, tun_down;
    /* times */
    uint64_t start_us;
    uint64_t connect_start_us, connect_us;
    uint64_t sent_us, response_us;      /* request sent; response head received */
    uint64_t up_active_ms;              /* last progress on the upstream side */
    uint64_t connect_deadline_ms;
    char request_id[33];
    char *norm_path;                    /* req.path's bytes when normalising changed them */
    uint32_t norm_path_len;
    char *log_fields;                   /* a tunnel's copy of what the access log reads */
    struct h1_header req_slots[HTTP_MAX_HEADERS];
    struct h1_header resp_slots[HTTP_MAX_HEADERS];
};

/* Owner: its worker (linked in w->http_conns). */
struct http_conn {
    struct loop_task task;              /* resume work, or free once CLOSED */
    struct io cio;
    struct worker *w;
    struct listener *l;
    struct addr peer;
    enum http_state state;
    bool c_readable, c_writable;
    bool c_hup;                         /* epoll said the peer closed or failed */
    bool close_after;                   /* close once the current response is out */
    bool trusted;                       /* peer in trusted_proxies */
    struct buf *in;                     /* from the client */
    struct buf *out;                    /* to the client, before approved body bytes */
    struct http_exchange *x;
    struct timer timer;
    uint64_t last_active_ms;            /* client-side progress */
    uint64_t head_start_ms;             /* first byte of the current head */
    uint64_t requests;
    struct auth_job *auth_job;          /* HC_AUTH: the verification in flight */
    struct subrequest *ext_auth;        /* HC_AUTH: the external check in flight */
    SSL *tls;                           /* with a tls listener; NULL = plain */
    int tls_want;                       /* handshake: TLS_WANT_READ/WRITE it waits for */
    bool tls_ready;                     /* the handshake is done */
    char *client_subject;               /* mTLS: the client certificate's subject */
    struct h2_stream *h2s;              /* an HTTP/2 stream's exchange (no socket of its own:
                                           proxy/h2.c carries its bytes); NULL otherwise */
    bool is_stream;                     /* h2s was set (it stays true once detached) */
    struct http_conn *prev, *next;
};

static void conn_run(struct http_conn *c);
static void conn_close(struct http_conn *c, enum end_reason why);
static void up_event(struct upstream_conn *u, uint32_t events);
static void exchange_connect(struct http_conn *c);
static void arm_timer(struct http_conn *c);
static bool breaker_admit(struct http_conn *c);
static bool keep_body_for_replay(struct http_conn *c);
static void mirror_cancel(struct http_conn *c);
static void auth_detach(struct http_conn *c);
static bool client_output_pending(struct http_conn *c);

/* ---- list of connections ---- */

static void list_add(struct worker *w, struct http_conn *c)
{
    struct http_conn *head = w->http_conns;   /* void * in struct worker */

    DLIST_PUSH(head, c);
    w->http_conns = head;
    w->nsessions++;
}

static void list_del(struct worker *w, struct http_conn *c)
{
    struct http_conn *head = w->http_conns;

    DLIST_REMOVE(head, c);
    w->http_conns = head;
    w->nsessions--;
}

/* ---- buffers ---- */

static struct buf *buf_big(uint32_t size)
{
    struct buf *b = malloc(sizeof(*b) + size);

    if (b) {
        b->next_free = NULL;
        b->head = b->tail = 0;
        b->size = size;
    }
    return b;
}

/* buf_put frees buffers of another size than the pool's, so big ones are
 * returned the same way. */
static void buf_drop(struct worker *w, struct buf **b)
{
    buf_put(&w->bufs, *b);
    *b = NULL;
}

/* Move the client buffer's bytes into a buffer of size bytes (a request
 * head or a replayable body outgrew the pool's). false: out of memory, the
 * connection is closed. */
static bool grow_client_buffer(struct http_conn *c, uint32_t size)
{
    struct buf *big = buf_big(size);

    if (!big) {
        conn_close(c, END_NO_MEMORY);
        return false;
    }
    buf_append(big, c->in->data + c->in->head, buf_len(c->in));
    buf_drop(c->w, &c->in);
    c->in = big;
    return true;
}

/* ---- the access log ---- */

static void log_exchange(struct http_conn *c, struct http_exchange *x)
{
    struct access_http rec = {
        .listener = c->l->conf->name,
        .client = &c->peer,
        .method = x->req.method,
        .target = x->req.target,
        .version = c->is_stream ? "HTTP/2.0" : x->req.minor ? "HTTP/1.1" : "HTTP/1.0",
        .host = x->req.host,
        .referer = (struct h1_slice){0},
        .user_agent = (struct h1_slice){0},
        .status = x->status,
        .bytes_out = x->resp_bytes,
        .bytes_in = x->req_bytes,
        .route = x->route ? (int)x->route->index : -1,
        .pool = x->pool ? x->pool->conf->name : NULL,
        .backend = x->tries ? x->tried[x->tries - 1] : NULL,
        .connect_us = x->connect_us,
        .response_us = x->response_us && x->sent_us ? x->response_us - x->sent_us : 0,
        .total_us = clock_now_us() - x->start_us,
        .tries = x->tries,
        .request_id = x->request_id,
        .end = x->end,
        .grpc_status = x->grpc_status,
    };
    const struct h1_header *h;

    if (x->req.head_len == 0)
        return;   /* no request was parsed: nothing meaningful to log */
    if ((h = h1_find_header(x->req.headers, x->req.nheaders, "referer")))
        rec.referer = h->value;
    if ((h = h1_find_header(x->req.headers, x->req.nheaders, "user-agent")))
        rec.user_agent = h->value;
    metrics_http_request(c->w, c->l, x->pool, &rec);
    access_log_http(&rec);
}

/* A tunnel drops the client buffer its request head was parsed in, but the
 * access line is written when the tunnel ends: what log_exchange reads of
 * the head (method, target, host, Referer, User-Agent) is copied first, and
 * nothing of the request points into the buffer afterwards. Out of memory:
 * no line rather than one read from a reused buffer. */
static void keep_log_fields(struct http_exchange *x)
{
    const struct h1_header *ref = h1_find_header(x->req.headers, x->req.nheaders, "referer");
    const struct h1_header *ua = h1_find_header(x->req.headers, x->req.nheaders, "user-agent");
    struct h1_slice *f[5] = {&x->req.method, &x->req.target, &x->req.host, NULL, NULL};
    struct h1_header keep[2];
    uint32_t nkeep = 0, size = 0;
    char *p;

    if (ref)
        keep[nkeep++] = (struct h1_header){{"referer", 7}, ref->value};
    if (ua)
        keep[nkeep++] = (struct h1_header){{"user-agent", 10}, ua->value};
    for (uint32_t i = 0; i < nkeep; i++)
        f[3 + i] = &keep[i].value;
    for (int i = 0; i < 5; i++)
        size += f[i] ? f[i]->len : 0;
    if (!(x->log_fields = p = malloc(size ? size : 1))) {
        x->req.head_len = 0;
        return;
    }
    for (int i = 0; i < 5; i++) {
        if (!f[i] || !f[i]->p)
            continue;
        memcpy(p, f[i]->p, f[i]->len);
        f[i]->p = p;
        p += f[i]->len;
    }
    memcpy(x->req_slots, keep, nkeep * sizeof(keep[0]));
    x->req.headers = x->req_slots;
    x->req.nheaders = nkeep;
    x->req.path = x->req.query = (struct h1_slice){0};
}

/* ---- exchange lifecycle ---- */

/* Exchanges are large (header slots for request and response) and made per
 * request: a worker keeps a few freed ones instead of going back to malloc. */
#define HTTP_FREE_EXCHANGES 64

static struct http_exchange *exchange_new(struct http_conn *c)
{
    struct worker *w = c->w;
    struct http_exchange *x = w->free_exchanges;

    if (x) {
        w->free_exchanges = *(void **)x;
        w->nfree_exchanges--;
    } else if (!(x = malloc(sizeof(*x)))) {
        return NULL;
    }
    memset(x, 0, offsetof(struct http_exchange, req_slots));
    h1_request_init(&x->req, x->req_slots, HTTP_MAX_HEADERS);
    h1_response_init(&x->resp, x->resp_slots, HTTP_MAX_HEADERS);
    x->start_us = clock_now_us();
    x->end = END_NONE;
    return x;
}

static void exchange_release_backend(struct http_exchange *x)
{
    if (x->backend) {
        atomic_fetch_sub_explicit(&x->backend->active, 1, memory_order_relaxed);
        x->backend = NULL;
    }
}

/* Free the exchange; its upstream connection is kept only when reusable. */
static void exchange_free(struct http_conn *c, bool up_reusable)
{
    struct http_exchange *x = c->x;

    if (!x)
        return;
    if (x->up) {
        upstream_release(x->up, up_reusable);
        x->up = NULL;
    }
    exchange_release_backend(x);
    if (x->pending)
        atomic_fetch_sub_explicit(&x->pool->pending, 1, memory_order_relaxed);
    if (x->counted)
        atomic_fetch_sub_explicit(&x->pool->requests_active, 1, memory_order_relaxed);
    timer_cancel(&c->w->loop.timers, &c->timer);
    free(x->norm_path);
    free(x->log_fields);
    x->norm_path = x->log_fields = NULL;
    buf_drop(c->w, &x->to_up);
    buf_drop(c->w, &x->from_up);
    mirror_hold_drop(c->w, &x->mirror);
    pump_dir_release(c->w, &x->tun_up);
    pump_dir_release(c->w, &x->tun_down);
    if (c->w->nfree_exchanges < HTTP_FREE_EXCHANGES) {
        *(void **)x = c->w->free_exchanges;   /* the first bytes hold the link */
        c->w->free_exchanges = x;
        c->w->nfree_exchanges++;
    } else {
        free(x);
    }
    c->x = NULL;
}

static void make_request_id(struct worker *w, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = balance_rand(&w->rng), b = balance_rand(&w->rng);

    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (i * 4)) & 15];
        out[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    out[32] = '\0';
}

/* ---- ending a connection ---- */

static void conn_close(struct http_conn *c, enum end_reason why)
{
    if (c->state == HC_CLOSED)
        return;
    /* Between exchanges (idle, drained, after a whole answer) a TLS client
     * gets close_notify before the FIN (RFC 9112 9.8), as from NGINX; in the
     * middle of an answer, or on a reset, it does not, so that a cut body
     * (a close-delimited one above all) never looks whole. */
    bool clean_end = (!c->x || (c->x->resp_done && !client_output_pending(c))) &&
                     why != END_CLIENT_RESET && why != END_BACKEND_RESET;

    if (c->h2s) {
        /* complete: x is gone (the exchange ended) or its response did; a
         * tunnel's, unless one side reset it (then so is the stream). */
        h2_stream_detach(c->h2s, (!c->x || c->x->resp_done) &&
                                     !(c->state == HC_TUNNEL && (why == END_CLIENT_RESET ||
                                                                 why == END_BACKEND_RESET)));
        c->h2s = NULL;
    }
    if (c->x) {
        if (c->x->end == END_NONE)
            c->x->end = why;
        if (c->x->status || c->x->req.head_len)
            log_exchange(c, c->x);
        exchange_free(c, false);
    }
    auth_detach(c);
    timer_cancel(&c->w->loop.timers, &c->timer);
    if (c->cio.fd >= 0) {
        /* EPOLL_CTL_DEL before close() (see tcp.c's io_close): a reload's
         * new process holds copies of our descriptors until its exec. */
        loop_del(&c->w->loop, &c->cio);
        if (why == END_BACKEND_RESET) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(c->cio.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        if (c->tls && clean_end)
            tls_shutdown(c->tls);
        tls_free(c->tls);
        c->tls = NULL;
        close(c->cio.fd);
        c->cio.fd = -1;
    }
    free(c->client_subject);
    c->client_subject = NULL;
    buf_drop(c->w, &c->in);
    buf_drop(c->w, &c->out);
    if (!c->is_stream)
        atomic_fetch_sub_explicit(&c->l->connections_active, 1, memory_order_relaxed);
    c->state = HC_CLOSED;
    list_del(c->w, c);
    loop_task_queue(&c->w->loop, &c->task);
    worker_connection_ended(c->w);
}

static void task_cb(struct loop_task *t)
{
    struct http_conn *c = (struct http_conn *)t;

    if (c->state == HC_CLOSED)
        free(c);
    else
        conn_run(c);
}

/* ---- writing to the client ---- */

/* sendmsg for a TLS client: the head and as much of the body as fits in
 * one record go together (copied, as sendmsg sends them in one segment).
 * Always filling the record also keeps a retry after WANT_WRITE at least as
 * long as the try before, which OpenSSL requires (the bytes only grow).
 * -1 with errno EAGAIN when TLS must wait for the socket. */
static ssize_t client_tls_write(struct http_conn *c, const struct iovec *iov, int cnt)
{
    static __thread char joined[16384];
    const void *p = iov[0].iov_base;
    size_t len = iov[0].iov_len;
    ssize_t n;

    if (cnt == 2 && len < sizeof(joined)) {
        size_t take = iov[1].iov_len < sizeof(joined) - len ? iov[1].iov_len : sizeof(joined) - len;

        memcpy(joined, iov[0].iov_base, len);
        memcpy(joined + len, iov[1].iov_base, take);
        p = joined;
        len += take;
    }
    n = tls_write(c->tls, p, len);
    if (n > 0)
        return n;
    errno = n == TLS_WANT_WRITE || n == TLS_WANT_READ ? EAGAIN : EPIPE;
    return -1;
}

/* The bytes being sent are the last of a connection that closes after them:
 * a complete send is followed at once by exchange_done's close (or the
 * shutdown of a lingering close), whose FIN then leaves in the same segment
 * when the send says MSG_MORE. The client gets one packet and one wake-up,
 * not two, per Connection: close request. After a short send, what is held
 * goes out with the next ACK, as without MSG_MORE. */
static bool last_bytes_before_close(const struct http_conn *c, const struct http_exchange *x)
{
    return x && x->resp_done && (c->close_after || c->w->draining) && c->state == HC_FORWARD;
}

/* Send c->out, then the approved bytes of from_up. Returns false when the
 * client failed (the connection is closed then). */
static bool flush_client(struct http_conn *c, bool *progress)
{
    struct http_exchange *x = c->x;

    while (c->c_writable) {
        struct iovec iov[2];
        struct msghdr msg = {.msg_iov = iov};
        uint32_t out_len = c->out ? buf_len(c->out) : 0;
        uint32_t body_len = x && x->from_up ? x->approved : 0;
        ssize_t n;

        /* The head sluice wrote and the body bytes approved straight from
         * the upstream buffer leave in one system call. */
        if (out_len) {
            iov[msg.msg_iovlen].iov_base = c->out->data + c->out->head;
            iov[msg.msg_iovlen++].iov_len = out_len;
        }
        if (body_len) {
            iov[msg.msg_iovlen].iov_base = x->from_up->data + x->from_up->head;
            iov[msg.msg_iovlen++].iov_len = body_len;
        }
        if (!msg.msg_iovlen)
            break;
        n = c->is_stream ? (c->h2s ? h2_stream_write(c->h2s, iov, (int)msg.msg_iovlen)
                                   : (errno = EPIPE, -1))
            : c->tls ? client_tls_write(c, iov, (int)msg.msg_iovlen)
                     : sendmsg(c->cio.fd, &msg, last_bytes_before_close(c, x) ?
                                                       MSG_NOSIGNAL | MSG_MORE : MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                /* The client is not taking what we send: from now on it
                 * has client_idle to read (see next_deadline). The timer
                 * may be set for a later deadline (upstream_response), so
                 * it is set again here; only a full socket pays for it. */
                c->c_writable = false;
                arm_timer(c);
                break;
            }
            conn_close(c, END_CLIENT_RESET);
            return false;
        }
        if (out_len) {
            uint32_t k = (uint32_t)n < out_len ? (uint32_t)n : out_len;
            buf_consume(c->out, k);
            n -= k;
        }
        if (n > 0) {
            buf_consume(x->from_up, (uint32_t)n);
            x->approved -= (uint32_t)n;
        }
        if (x) {
            x->resp_bytes += (uint64_t)(out_len + body_len) -
                             (uint64_t)((c->out ? buf_len(c->out) : 0) + x->approved);
            x->resp_started = true;
        }
        c->last_active_ms = clock_now_ms();
        *progress = true;
    }
    if (c->out && buf_len(c->out) == 0)
        buf_drop(c->w, &c->out);
    return true;
}

static bool client_output_pending(struct http_conn *c)
{
    return (c->out && buf_len(c->out)) || (c->x && c->x->approved);
}

/* ---- local responses ---- */

/* Answer the current request ourselves. The connection closes afterwards
 * when asked, when the request's body is not consumed, or when draining.
 * grpc_status: a gRPC call's answer in gRPC's shape (see respond_local),
 * with body as its grpc-message; 0 = a plain HTTP answer. */
static void reply_local(struct http_conn *c, int status, int grpc_status, const char *location,
                        const char *body, bool close, const struct conf_route *route)
{
    struct http_exchange *x = c->x;
    bool head_only = x && x->req.head_len && x->req.method_id == H1_HEAD;
    bool keep = !close && !c->w->draining && x && x->req.head_len && x->req.keep_alive &&
                x->req.body == H1_BODY_NONE;
    const char *challenge = x && status == 401 ? x->www_authenticate : NULL;
    int r;

    if (!c->out)
        c->out = buf_get(&c->w->bufs);
    if (!c->out) {
        conn_close(c, END_NO_MEMORY);
        return;
    }
    if (grpc_status) {
        /* Its text is the client's only clue to what went wrong: what the
         * log says too, at debug. */
        log_debug("event=grpc_local_reply listener=%s request_id=%s http_status=%d "
                  "grpc_status=%d end=%s", c->l->conf->name, x->request_id, status, grpc_status,
                  end_reason_name(x->end));
        r = http_write_grpc_local_response(c->out, grpc_status, body, keep, route, challenge);
        if (r < 0)      /* a route's headers that leave no room: without them */
            r = http_write_grpc_local_response(c->out, grpc_status, NULL, keep, NULL, NULL);
        status = 200;
    } else {
        r = http_write_local_response(c->out, status, location, body, keep, head_only, route,
                                      x ? x->retry_after_s : 0, challenge);
    }
    if (r < 0) {
        grpc_status = 0;
        status = 500;
        http_write_local_response(c->out, 500, NULL, NULL, false, false, NULL, 0, NULL);
    }
    if (x) {
        x->status = status;
        x->grpc_status = grpc_status;
        if (x->up) {
            upstream_release(x->up, false);
            x->up = NULL;
        }
        buf_drop(c->w, &x->from_up);
        x->approved = 0;
        x->resp_done = true;
        x->req_done = true;
    }
    c->close_after = !keep;
    c->state = HC_LOCAL;
    arm_timer(c);
}

/* Answer the current request ourselves (see reply_local). To a gRPC call,
 * an error (400 and above, a `respond` route's too) goes in gRPC's
 * "trailers-only" shape, as Envoy sends it: HTTP 200 with grpc-status
 * (gRPC's mapping of the HTTP status) and the text as grpc-message. A
 * gRPC client reads an HTTP error status only as a guess (grpcio's
 * "Received http2 header with status: 404"); this it reads as the call's
 * status. Answers below 400 (redirects, a `respond` of 200) are the
 * operator's and go as written. */
static void respond_local(struct http_conn *c, int status, const char *location,
                          const char *body, bool close, const struct conf_route *route)
{
    struct http_exchange *x = c->x;
    int grpc_status = x && x->grpc && status >= 400 ? (int)grpc_status_from_http(status) : 0;

    reply_local(c, status, grpc_status, location, body, close, route);
}

/* ---- finishing an exchange ---- */

/* Did the client possibly send bytes we never read: a request body not
 * read to its end, or a head that could not be parsed? */
static bool input_unread(const struct http_exchange *x)
{
    return x && (x->req.head_len == 0 || (x->req.body != H1_BODY_NONE && !x->req_body_read));
}

/* Bytes the client sent past x's request (a pipelined request that came
 * during the exchange): read already, or announced by an edge not yet read.
 * A close() with them unread sends a reset too. No system call, since this
 * runs for every Connection: close request; as with NGINX's lingering
 * close, a request that arrives after this look still meets a reset. */
static bool client_sent_more(const struct http_conn *c, const struct http_exchange *x)
{
    return c->c_readable ||
           (c->in && x && x->body_pos >= c->in->head && x->body_pos < c->in->tail);
}

/* Close after a response, gracefully when the client may still be sending:
 * a close() with unread bytes sends a reset, which can destroy the response
 * in the client's receive buffer before it reads it (a 413, a 502 to a POST
 * whose body was still coming). So: log the exchange, shut our side, then
 * read and drop what comes for up to HTTP_LINGER_MS (NGINX's lingering
 * close). */
static void conn_close_after_response(struct http_conn *c, enum end_reason why)
{
    struct http_exchange *x = c->x;

    if (c->is_stream) {
        /* A stream has no socket to shut: it ends with the response (the
         * client's unread body is dropped by proxy/h2.c). */
        if (x && x->end == END_NONE)
            x->end = why;
        if (x)
            log_exchange(c, x);
        exchange_free(c, false);
        conn_close(c, why);
        return;
    }
    if ((!input_unread(x) && !client_sent_more(c, x)) || c->c_hup) {
        if (c->tls)
            tls_shutdown(c->tls);
        shutdown(c->cio.fd, SHUT_WR);
        conn_close(c, why);
        return;
    }
    if (x->end == END_NONE)
        x->end = why;
    log_exchange(c, x);
    exchange_free(c, false);
    buf_drop(c->w, &c->in);
    buf_drop(c->w, &c->out);
    if (c->tls)
        tls_shutdown(c->tls);
    shutdown(c->cio.fd, SHUT_WR);
    c->state = HC_LINGER;
    c->head_start_ms = clock_now_ms();       /* the linger's start */
    arm_timer(c);
    loop_task_queue(&c->w->loop, &c->task);   /* drop what is already there */
}

static void step_linger(struct http_conn *c)
{
    static __thread char sink[16384];
    ssize_t n;

    while (c->c_readable) {
        n = c->tls ? tls_read(c->tls, sink, sizeof(sink)) : recv(c->cio.fd, sink, sizeof(sink), 0);
        if (n > 0)
            continue;
        if ((!c->tls && n < 0 && errno == EAGAIN) || n == TLS_WANT_READ || n == TLS_WANT_WRITE) {
            c->c_readable = false;
            return;
        }
        conn_close(c, END_CLIENT_CLOSE);        /* the client's FIN, or a reset */
        return;
    }
}

static void exchange_done(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    bool reusable;

    /* The upstream connection may serve another request only if both
     * messages ended exactly where their framing said. */
    if (x->from_up && buf_len(x->from_up) == 0)
        buf_drop(c->w, &x->from_up);
    reusable = x->up && x->resp_done && x->req_done && x->resp.keep_alive &&
               x->resp.body != H1_BODY_CLOSE && x->from_up == NULL;
    /* Bytes the backend sent past its response that no read took yet (the
     * last read filled the buffer, or they came after the response was
     * complete): their edge is spent, so the idle list would never notice
     * them, and the next request would read them as its answer. One read
     * that finds the socket drained settles it. */
    if (reusable && !x->up->h2 && x->up->readable) {
        char extra;

        if (upstream_recv(x->up, &extra, 1) >= 0 || errno != EAGAIN)
            reusable = false;
        else
            x->up->readable = false;
    }
    if (x->end == END_NONE)
        x->end = END_CLIENT_CLOSE;
    atomic_fetch_add_explicit(&c->l->requests_total, 1, memory_order_relaxed);
    if ((c->close_after || c->w->draining) && (input_unread(x) || client_sent_more(c, x))) {
        /* It logs and frees x: before c->in, which the log reads the
         * request head from, is moved or dropped, and only there. */
        conn_close_after_response(c, END_CLIENT_CLOSE);
        return;
    }
    log_exchange(c, x);
    c->requests++;

    /* Drop the head and body bytes; keep any pipelined bytes after them. */
    if (c->in) {
        if (x->body_pos > c->in->head && x->body_pos <= c->in->tail)
            c->in->head = x->body_pos;
        if (buf_len(c->in) == 0)
            buf_drop(c->w, &c->in);
        else
            buf_compact(c->in);
    }
    exchange_free(c, reusable);
    if (c->close_after || c->w->draining) {
        conn_close(c, END_CLIENT_CLOSE);
        return;
    }
    c->state = HC_IDLE;
    arm_timer(c);
}

/* ---- reading the request head ---- */

static bool read_client(struct http_conn *c, bool *eof)
{
    ssize_t n;

    *eof = false;
    if (!c->in && !(c->in = buf_get(&c->w->bufs)))
        return false;
    if (buf_room(c->in) == 0)
        return false;
    if (c->is_stream) {
        size_t got = c->h2s ? h2_stream_read(c->h2s, c->in->data + c->in->tail, buf_room(c->in), eof)
                            : 0;

        if (got < buf_room(c->in))
            c->c_readable = false;      /* http_stream_wake says when more came */
        if (!got)
            return false;
        c->in->tail += (uint32_t)got;
        c->last_active_ms = clock_now_ms();
        return true;
    }
    if (c->tls) {
        /* One record at most per call, and bytes may wait inside OpenSSL:
         * only WANT_READ says the socket is drained. */
        n = tls_read(c->tls, c->in->data + c->in->tail, buf_room(c->in));
        if (n > 0) {
            c->in->tail += (uint32_t)n;
            c->last_active_ms = clock_now_ms();
            return true;
        }
        if (n == TLS_WANT_READ)
            c->c_readable = false;
        else if (n == TLS_WANT_WRITE)
            c->c_writable = false;
        else
            *eof = true;
        return false;
    }
    n = recv(c->cio.fd, c->in->data + c->in->tail, buf_room(c->in), 0);
    if (n > 0) {
        /* A short read drained the socket: skip the recv that would only
         * say EAGAIN (new data brings a new edge). Not when epoll also
         * reported a hang-up: that EOF would then never be read. */
        if ((uint32_t)n < buf_room(c->in) && !c->c_hup)
            c->c_readable = false;
        c->in->tail += (uint32_t)n;
        c->last_active_ms = clock_now_ms();
        return true;
    }
    if (n == 0) {
        *eof = true;
        return false;
    }
    if (errno == EAGAIN)
        c->c_readable = false;
    else
        *eof = true;   /* a reset reads as the end of the connection */
    return false;
}

static void start_exchange(struct http_conn *c);

/* The client spoke the HTTP/2 preface: its socket, TLS and the bytes read
 * so far go to an h2 connection (proxy/h2.c), and this http_conn ends
 * without touching the socket. The h2 connection counts as the listener's
 * active connection from now on. */
static void hand_to_h2(struct http_conn *c)
{
    int fd = c->cio.fd;
    SSL *tls = c->tls;
    char *subject = c->client_subject;

    loop_del(&c->w->loop, &c->cio);
    c->cio.fd = -1;
    c->tls = NULL;
    c->client_subject = NULL;
    if (h2_conn_start(c->w, c->l, fd, tls, &c->peer, c->trusted, subject,
                      c->in->data + c->in->head, buf_len(c->in)))
        atomic_fetch_add_explicit(&c->l->connections_active, 1, memory_order_relaxed);
    conn_close(c, END_CLIENT_CLOSE);
}

/* The listener's bounds on a request head: the first parse and any parse
 * again of the same head (keep_body_for_replay) must judge it alike. */
static struct h1_limits request_limits(const struct conf_listener *lc)
{
    return (struct h1_limits){
        .max_request_line = lc->max_request_line,
        .max_head = lc->max_header_size,
        .max_headers = lc->max_headers < HTTP_MAX_HEADERS ? lc->max_headers : HTTP_MAX_HEADERS,
    };
}

/* Read and parse until a head is complete. Returns true on progress. */
static bool step_head(struct http_conn *c)
{
    const struct conf_listener *lc = c->l->conf;
    struct h1_limits lim = request_limits(lc);
    bool progress = false, eof = false;
    int r;

    if (!c->in || buf_len(c->in) == 0 || c->state == HC_HEAD) {
        if (!c->c_readable && !(c->in && buf_len(c->in) && c->state == HC_IDLE))
            return false;
        if (c->c_readable)
            progress = read_client(c, &eof);
        if (eof) {
            conn_close(c, c->in && buf_len(c->in) ? END_CLIENT_RESET : END_CLIENT_CLOSE);
            return false;
        }
        if (!c->in || buf_len(c->in) == 0) {
            if (c->in)
                buf_drop(c->w, &c->in);   /* an idle connection holds no buffer */
            return progress;
        }
    }
    if (!c->x && c->requests == 0 && c->l->conf->http2 && !c->is_stream) {
        int m = h2_preface_match(c->in->data + c->in->head, buf_len(c->in));

        if (m == 0)
            return progress;            /* a beginning of the preface: wait for the rest */
        if (m > 0) {
            hand_to_h2(c);
            return false;
        }
    }
    if (!c->x) {
        c->x = exchange_new(c);
        if (!c->x) {
            conn_close(c, END_NO_MEMORY);
            return false;
        }
        c->head_start_ms = clock_now_ms();
        c->state = HC_HEAD;
        arm_timer(c);
    }
    r = h1_parse_request(c->in->data + c->in->head, buf_len(c->in), &lim, &c->x->req);
    if (r == H1_NEED_MORE) {
        if (buf_room(c->in) == 0) {
            /* The head outgrew a pool buffer: move it to one as large as
             * the limit allows, once. */
            if (c->in->size >= lc->max_header_size) {
                respond_local(c, 431, NULL, "request header fields too large\n", true, NULL);
                return true;
            }
            return grow_client_buffer(c, lc->max_header_size + 1024);
        }
        return progress;
    }
    if (r < 0) {
        log_info("event=bad_request listener=%s client_status=%d why=\"%s\"", lc->name, -r,
                 c->x->req.error ? c->x->req.error : "malformed");
        c->x->req.head_len = 0;   /* slices are not trustworthy: log no request line */
        respond_local(c, -r, NULL, "bad request\n", true, NULL);
        c->x->status = -r;
        return true;
    }
    c->x->body_pos = c->in->head + (uint32_t)r;
    start_exchange(c);
    return true;
}

/* ---- authentication ---- */

/* A password being hashed off the loop. Owner: the offload queue until
 * done; c is NULL once the connection went away (done then only frees). */
struct auth_job {
    struct offload_job base;
    struct http_conn *c;
    struct auth_request r;
    bool ok;
};

static void forward_start(struct http_conn *c);

static void auth_detach(struct http_conn *c)
{
    if (c->auth_job) {
        c->auth_job->c = NULL;
        c->auth_job = NULL;
    }
    if (c->ext_auth) {
        subrequest_cancel(c->ext_auth);     /* its callback will not come */
        c->ext_auth = NULL;
    }
}

static void auth_run(struct offload_job *j)
{
    struct auth_job *a = (struct auth_job *)j;

    a->ok = auth_verify(&a->r);
}

static void auth_challenge(struct http_conn *c, const struct conf_auth *a)
{
    c->x->www_authenticate = a->challenge;
    respond_local(c, 401, NULL, "authentication required\n", false, c->x->route);
}

static void auth_done(struct offload_job *j)
{
    struct auth_job *a = (struct auth_job *)j;
    struct http_conn *c = a->c;

    explicit_bzero(a->r.password, sizeof(a->r.password));
    if (c && !j->cancelled && c->state == HC_AUTH) {
        c->auth_job = NULL;
        if (a->ok) {
            auth_cache_put(c->w->auth_cache, &a->r, clock_now_ms());
            forward_start(c);
        } else {
            char peer[ADDR_TEXT_MAX], user[sizeof(a->r.user)];
            size_t i;

            /* The name is the client's: printable ASCII only in the log. */
            for (i = 0; a->r.user[i] && i < sizeof(user) - 1; i++) {
                unsigned char ch = (unsigned char)a->r.user[i];
                user[i] = ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\' ? '?' : (char)ch;
            }
            user[i] = '\0';
            atomic_fetch_add_explicit(&c->l->auth_failures, 1, memory_order_relaxed);
            log_info("event=auth_failed listener=%s client=%s user=\"%s\"%s", c->l->conf->name,
                     addr_format(&c->peer, peer, sizeof(peer)), user,
                     a->r.known ? "" : " unknown_user=true");
            auth_challenge(c, a->r.conf);
        }
        if (c->state != HC_CLOSED)
            conn_run(c);
    }
    free(a);
}

/* ---- external authentication (proxy/ext_auth.h) ---- */

/* The auth block the current exchange is under (as start_exchange chose). */
static const struct conf_auth *exchange_auth(const struct http_conn *c)
{
    const struct conf_route *route = c->x->route;

    return route && route->auth_off ? NULL : route && route->auth ? route->auth : c->l->conf->auth;
}

/* HC_AUTH with the client's socket reporting trouble: a reset client is
 * let go at once (its check is cancelled) rather than when the check
 * ends. A FIN alone is not an end: HTTP/1.1 lets a client half-close
 * after its request, and the answer may still be read. */
static void auth_wait(struct http_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (c->is_stream || !c->c_hup || c->cio.fd < 0)
        return;
    getsockopt(c->cio.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        c->x->end = END_CLIENT_RESET;
        conn_close(c, END_CLIENT_RESET);
    }
}

/* The request goes on: its head rewritten when upstream_headers asks
 * (answer: the 2xx whose fields join it; NULL for a failure let through,
 * which only removes the client's fields of those names). The head is
 * built anew in a buffer of its own, the body bytes already read follow
 * it, and it is parsed again: everything of x->req points there after.
 * false: answered (431) or closed (out of memory). */
static bool ext_auth_pass(struct http_conn *c, const struct conf_ext_auth *ea,
                          const struct h1_response *answer)
{
    struct http_exchange *x = c->x;
    struct h1_header slots[HTTP_MAX_HEADERS];
    struct h1_limits lim = request_limits(c->l->conf);
    struct h1_request req;
    const char *head = c->in->data + x->body_pos - x->req.head_len;
    uint32_t rest = c->in->tail - x->body_pos;
    size_t need;
    struct buf *nb;
    int n;

    if (!ext_auth_head_changes(ea, &x->req, answer))
        return true;
    need = ext_auth_head_size(ea, x->req.head_len, answer) + rest;
    nb = need <= c->w->bufs.size ? buf_get(&c->w->bufs) : buf_big((uint32_t)need + 1024);
    if (!nb) {
        conn_close(c, END_NO_MEMORY);
        return false;
    }
    n = ext_auth_head_rewrite(ea, &x->req, head, x->req.head_len, answer, nb->data, nb->size);
    if (n > 0 && (size_t)n + rest <= nb->size) {
        memcpy(nb->data + n, c->in->data + x->body_pos, rest);
        nb->tail = (uint32_t)n + rest;
        /* The service's fields may take the head past the client's
         * limits: those bound what a client sends, not what sluice adds. */
        lim.max_head = (uint32_t)n > lim.max_head ? (uint32_t)n : lim.max_head;
        lim.max_headers = HTTP_MAX_HEADERS;
        h1_request_init(&req, slots, HTTP_MAX_HEADERS);
        if (h1_parse_request(nb->data, nb->tail, &lim, &req) != n)
            n = -1;
    } else {
        n = -1;
    }
    if (n < 0) {
        buf_drop(c->w, &nb);
        log_info("event=auth_error listener=%s why=\"the auth service's fields do not fit the "
                 "request\"", c->l->conf->name);
        respond_local(c, 431, NULL, "request header fields too large\n", true, x->route);
        return false;
    }
    memcpy(x->req_slots, slots, req.nheaders * sizeof(slots[0]));
    req.headers = x->req_slots;
    req.max_headers = HTTP_MAX_HEADERS;
    x->req = req;
    if (x->norm_path)    /* the normalised path routing saw, which did not move */
        x->req.path = (struct h1_slice){x->norm_path, x->norm_path_len};
    buf_drop(c->w, &c->in);
    c->in = nb;
    x->body_pos = (uint32_t)n;
    return true;
}

/* A denial: the service's answer goes to the client in place of the
 * backend's. The connection stays open when nothing of the request is
 * left unread: no body, or a Content-Length body already whole in c->in
 * (dropped with the head); else it closes after the answer, lingering. */
static void ext_auth_relay(struct http_conn *c, const struct conf_ext_auth *ea,
                           const struct subrequest_answer *ans)
{
    struct http_exchange *x = c->x;
    int status = ans->head->status;
    const char *body = ans->body;
    size_t body_len = ans->body_len;
    bool keep;
    int r;

    if (x->grpc) {
        /* A gRPC client reads grpc-status, not an HTTP status or a page,
         * and follows no redirect to a login page: a 3xx is a 401 to it. */
        respond_local(c, status >= 400 ? status : 401, NULL, "denied by the auth service", false,
                      x->route);
        return;
    }
    if (ans->body_cut) {
        log_warn("event=auth_denial_body_dropped listener=%s status=%d why=\"body over %u "
                 "bytes\"", c->l->conf->name, status, EXT_AUTH_MAX_BODY);
        body_len = 0;
    }
    if (x->req.body == H1_BODY_LENGTH && c->in &&
        c->in->tail - x->body_pos >= x->req.content_length) {
        x->body_pos += (uint32_t)x->req.content_length;
        x->req_body_read = true;
    }
    keep = !c->w->draining && x->req.keep_alive &&
           (x->req.body == H1_BODY_NONE || x->req_body_read);
    if (!c->out && !(c->out = buf_get(&c->w->bufs))) {
        conn_close(c, END_NO_MEMORY);
        return;
    }
    r = ext_auth_write_denial(c->out, ea, ans->head, body, body_len, x->route, keep,
                              x->req.method_id == H1_HEAD, x->req.minor == 0, x->request_id);
    if (r < 0) {
        /* Larger than a pool buffer: one of its own size. */
        buf_drop(c->w, &c->out);
        c->out = buf_big((uint32_t)ext_auth_denial_size(ans->head, body_len, x->route));
        if (!c->out || ext_auth_write_denial(c->out, ea, ans->head, body, body_len, x->route,
                                             keep, x->req.method_id == H1_HEAD,
                                             x->req.minor == 0, x->request_id) < 0) {
            buf_drop(c->w, &c->out);
            respond_local(c, 500, NULL, NULL, true, x->route);
            return;
        }
    }
    x->status = status;
    x->resp_done = true;
    x->req_done = true;
    if (!keep)
        c->close_after = true;     /* an HTTP/2 stream's is set already: one exchange */
    c->state = HC_LOCAL;
    arm_timer(c);
}

/* The service could not say: `failure` decides. true: allow, and the
 * request may go on; false: answered 503 (or closed). */
static bool ext_auth_failed(struct http_conn *c, const struct conf_ext_auth *ea,
                            const char *why, const struct backend *b)
{
    char peer[ADDR_TEXT_MAX];

    atomic_fetch_add_explicit(&c->l->ext_auth_errors, 1, memory_order_relaxed);
    log_warn("event=auth_error listener=%s client=%s pool=%s backend=%s why=\"%s\" "
             "failure=%s request_id=%s", c->l->conf->name,
             addr_format(&c->peer, peer, sizeof(peer)), ea->pool->name,
             b ? b->conf->name : "-", why, ea->failure_allow ? "allow" : "deny",
             c->x->request_id);
    if (ea->failure_allow)
        return ext_auth_pass(c, ea, NULL);
    respond_local(c, 503, NULL, "authentication service unavailable\n", false, c->x->route);
    return false;
}

static void ext_auth_answered(void *arg, const struct subrequest_answer *ans)
{
    struct http_conn *c = arg;
    const struct conf_auth *a;
    const char *why = NULL;
    char peer[ADDR_TEXT_MAX];

    c->ext_auth = NULL;
    if (c->state != HC_AUTH || !c->x || !(a = exchange_auth(c)) || !a->ext)
        return;              /* cannot be: leaving HC_AUTH cancels the check */
    switch (ext_auth_verdict(ans, &why)) {
    case EXT_AUTH_ALLOW:
        if (ext_auth_pass(c, a->ext, ans->head))
            forward_start(c);
        break;
    case EXT_AUTH_DENY:
        atomic_fetch_add_explicit(&c->l->ext_auth_denied, 1, memory_order_relaxed);
        log_info("event=auth_denied listener=%s client=%s status=%d request_id=%s",
                 c->l->conf->name, addr_format(&c->peer, peer, sizeof(peer)), ans->head->status,
                 c->x->request_id);
        ext_auth_relay(c, a->ext, ans);
        break;
    case EXT_AUTH_ERROR:
        if (ext_auth_failed(c, a->ext, why, ans->backend))
            forward_start(c);
        break;
    }
    if (c->state != HC_CLOSED)
        conn_run(c);
}

/* Send the check and wait in HC_AUTH for its answer. true only when the
 * check could not start and failure: allow lets the request through. */
static bool ext_auth_admit(struct http_conn *c, const struct conf_auth *a)
{
    struct http_exchange *x = c->x;
    const struct ext_auth_client cl = {
        .peer = &c->peer,
        .peer_trusted = c->trusted,
        .tls = c->l->tls != NULL,
        .request_id = x->request_id,
    };
    const char *why = NULL;

    c->ext_auth = ext_auth_start(c->w, a->ext, &x->req, &cl, ext_auth_answered, c, &why);
    if (c->ext_auth) {
        c->state = HC_AUTH;
        arm_timer(c);
        return false;
    }
    return ext_auth_failed(c, a->ext, why, NULL);
}

/* true: no auth here, or the worker's cache knows these credentials. Else
 * the request was answered (401, or 503 when the helpers are swamped) or
 * waits in HC_AUTH for a helper thread to hash the password. */
static bool auth_admit(struct http_conn *c, const struct conf_auth *a)
{
    struct http_exchange *x = c->x;
    struct auth_request r;
    struct auth_job *job;

    if (!a)
        return true;
    if (a->type == AUTH_EXTERNAL)
        return ext_auth_admit(c, a);
    if (!c->w->auth_cache)
        c->w->auth_cache = auth_cache_new();
    if (a->type == AUTH_JWT) {
        const char *why;
        char peer[ADDR_TEXT_MAX];

        /* A signature check is microseconds: no helper thread needed. */
        if (jwt_check(c->w->auth_cache, a, &x->req, (int64_t)(clock_wall_us() / 1000u),
                      &why) == AUTH_OK)
            return true;
        if (strcmp(why, "no bearer token") != 0) {
            atomic_fetch_add_explicit(&c->l->auth_failures, 1, memory_order_relaxed);
            log_info("event=auth_failed listener=%s client=%s why=\"%s\"", c->l->conf->name,
                     addr_format(&c->peer, peer, sizeof(peer)), why);
        }
        auth_challenge(c, a);
        return false;
    }
    switch (auth_begin(c->w->auth_cache, a, &x->req, clock_now_ms(), &r)) {
    case AUTH_OK:                        /* the common case: no allocation */
        return true;
    case AUTH_DENIED:
        auth_challenge(c, a);
        return false;
    case AUTH_VERIFY:
        break;
    }
    job = calloc(1, sizeof(*job));
    if (job)
        job->r = r;
    explicit_bzero(r.password, sizeof(r.password));
    if (!job) {
        conn_close(c, END_NO_MEMORY);
        return false;
    }
    job->c = c;
    job->base.run = auth_run;
    job->base.done = auth_done;
    if (!offload_submit(c->w, &job->base)) {
        explicit_bzero(job->r.password, sizeof(job->r.password));
        free(job);
        log_warn("event=auth_busy listener=%s", c->l->conf->name);
        respond_local(c, 503, NULL, "authentication is busy\n", false, x->route);
        return false;
    }
    c->auth_job = job;
    c->state = HC_AUTH;
    arm_timer(c);
    return false;
}

/* ---- routing and starting the exchange ---- */

/* A redirect route: its fixed location, or one built from the request. */
static void redirect(struct http_conn *c, const struct conf_route *route)
{
    char loc[16384];              /* a path up to 8 KiB (limits.max_request_line) and more */
    int n;

    if (route->redirect_location) {
        respond_local(c, route->redirect_status, route->redirect_location, NULL, false, route);
        return;
    }
    n = http_redirect_location(&c->x->req, route, c->l->tls != NULL, loc, sizeof(loc));
    if (n > 0)
        respond_local(c, route->redirect_status, loc, NULL, false, route);
    else if (n == 0)
        respond_local(c, 400, NULL, "no host to redirect to\n", true, route);
    else
        respond_local(c, 414, NULL, "URI too long to redirect\n", true, route);
}

/* A split between pools with sticky sessions keeps a session in its pool:
 * the first pool of the split (with a weight above 0, so that setting a
 * canary's weight to 0 moves its sessions out) whose sticky cookie names a
 * backend that may take it. NULL: split by weight as usual. */
static struct conf_pool *split_sticky_pool(struct http_conn *c, const struct conf_route *route)
{
    for (size_t i = 0; i < route->nsplit; i++) {
        const struct conf_split *sp = &route->split[i];
        struct backend *b;

        if (!sp->weight || !sp->pool->sticky.cookie)
            continue;
        b = sticky_lookup(runtime_pool(c->w->rt, sp->pool), &c->x->req);
        if (b && sticky_usable(b))
            return sp->pool;
    }
    return NULL;
}

/* Count the request against a rate_limit block; over it, answer its status
 * with a Retry-After of when the key may come back, and return false.
 * Requests without the key (a missing header, say) are not counted, as in
 * NGINX's limit_req. */
static bool rate_limit_admit(struct http_conn *c, const struct conf_rate_limit *rl,
                             const struct conf_route *route)
{
    struct http_exchange *x = c->x;
    uint64_t hash, wait;

    if (!balance_request_key(rl->key, rl->key_name, &c->peer, &x->req, &hash))
        return true;
    wait = rate_limiter_take(runtime_limiter(c->w->rt, rl), hash, clock_now_us() * 1000u);
    if (!wait) {
        peers_note(c->w->peers_out, rl, hash);
        return true;
    }
    log_debug("event=rate_limited listener=%s limit=%s rate=%s", c->l->conf->name, rl->label,
              rl->rate_text);
    x->end = END_RATE_LIMITED;
    x->retry_after_s = (unsigned)((wait + 999999999u) / 1000000000u);
    respond_local(c, rl->status, NULL, "too many requests\n", false, route);
    return false;
}

/* Routing, the request's keys and the head sent upstream all take the path
 * normalised as the listener says (route/path.c), so that the backend sees
 * the path the rules saw; the access log keeps the target as received.
 * false: answered (400), or out of memory (closed). */
static bool normalize_path(struct http_conn *c, struct http_exchange *x)
{
    const struct conf_listener *lc = c->l->conf;
    const char *why = NULL;
    uint32_t n;

    if (!route_path_needs_normalizing(x->req.path, &lc->paths))
        return true;
    if (!(x->norm_path = malloc(x->req.path.len))) {
        conn_close(c, END_NO_MEMORY);
        return false;
    }
    if (route_path_normalize(x->req.path, &lc->paths, x->norm_path, &n, &why) < 0) {
        log_info("event=bad_request listener=%s client_status=400 why=\"%s\"", lc->name, why);
        respond_local(c, 400, NULL, "bad request\n", true, NULL);
        return false;
    }
    x->norm_path_len = n;
    x->req.path = (struct h1_slice){x->norm_path, n};
    return true;
}

/* headers_with_underscores: reject. false: answered 400. */
static bool underscores_allowed(struct http_conn *c, struct http_exchange *x)
{
    if (c->l->conf->underscores != UNDERSCORES_REJECT)
        return true;
    for (uint32_t i = 0; i < x->req.nheaders; i++) {
        if (http_name_has_underscore(x->req.headers[i].name)) {
            log_info("event=bad_request listener=%s client_status=400 why=\"underscore in header "
                     "name (headers_with_underscores: reject)\"", c->l->conf->name);
            respond_local(c, 400, NULL, "bad request\n", true, NULL);
            return false;
        }
    }
    return true;
}

/* Is the request a gRPC call, and has it a deadline? Read once its head is
 * parsed: from here on sluice's answers to it are gRPC's (respond_local).
 * grpc-timeout is still forwarded as sent, like any field; sluice only
 * keeps the deadline too (see grpc_deadline_passed). */
static void grpc_call_start(struct http_exchange *x)
{
    const struct h1_header *ct = h1_find_header(x->req.headers, x->req.nheaders, "content-type");
    const struct h1_header *to;
    uint64_t ms;

    if (!ct || !grpc_content_type(ct->value.p, ct->value.len))
        return;
    x->grpc = true;
    if ((to = h1_find_header(x->req.headers, x->req.nheaders, "grpc-timeout")) &&
        (ms = grpc_timeout_ms(to->value.p, to->value.len)))
        x->grpc_deadline_ms = clock_now_ms() + ms;
}

static void start_exchange(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    const struct conf_listener *lc = c->l->conf;
    struct route_request rr;
    const struct conf_route *route = NULL;
    struct conf_pool *cp = NULL;
    int port;

    make_request_id(c->w, x->request_id);
    if (c->trusted) {
        const struct h1_header *rid = h1_find_header(x->req.headers, x->req.nheaders, "x-request-id");
        if (rid && rid->value.len > 0 && rid->value.len < sizeof(x->request_id)) {
            bool ok = true;
            for (uint32_t i = 0; i < rid->value.len; i++)
                ok &= rid->value.p[i] > 0x20 && rid->value.p[i] < 0x7f && rid->value.p[i] != '"';
            if (ok) {
                memcpy(x->request_id, rid->value.p, rid->value.len);
                x->request_id[rid->value.len] = '\0';
            }
        }
    }
    grpc_call_start(x);
    if (x->req.method_id == H1_CONNECT) {
        respond_local(c, 405, NULL, "CONNECT is not supported\n", true, NULL);
        return;
    }
    if (!normalize_path(c, x) || !underscores_allowed(c, x))
        return;
    memset(&rr, 0, sizeof(rr));
    h1_split_host(x->req.host, &rr.host, &port);
    rr.path = x->req.path;
    if (rr.path.len == 0) {
        rr.path.p = "/";
        rr.path.len = 1;
    }
    rr.query = x->req.query;
    rr.method = x->req.method_id;
    rr.method_name = x->req.method;
    rr.headers = x->req.headers;
    rr.nheaders = x->req.nheaders;
    rr.peer = &c->peer;
    if (c->l->routes)
        route = route_match(c->l->routes, &rr);
    x->route = route;
    if (route) {
        switch (route->action) {
        case ROUTE_RESPOND:
            respond_local(c, route->respond_status, NULL, route->respond_body, false, route);
            return;
        case ROUTE_REDIRECT:
            redirect(c, route);
            return;
        case ROUTE_POOL:
            cp = route->pool;
            break;
        case ROUTE_SPLIT:
            if (!(cp = split_sticky_pool(c, route)))
                cp = route_split_pick(route, balance_rand(&c->w->rng));
            break;
        }
    } else {
        cp = lc->pool;
    }
    if (!cp) {
        respond_local(c, 404, NULL, "no route\n", false, NULL);
        return;
    }
    if ((lc->rate_limit && !rate_limit_admit(c, lc->rate_limit, route)) ||
        (route && route->rate_limit && !rate_limit_admit(c, route->rate_limit, route)))
        return;
    x->cpool = cp;
    if (!auth_admit(c, exchange_auth(c)))
        return;
    forward_start(c);
}

/* The request goes to x->cpool: limits, breaker, the head for the backend,
 * then a backend. */
static void forward_start(struct http_conn *c)
{
    const struct conf_listener *lc = c->l->conf;
    struct http_exchange *x = c->x;
    const struct conf_route *route = x->route;
    struct conf_pool *cp = x->cpool;

    if (lc->max_body_size && x->req.body == H1_BODY_LENGTH &&
        x->req.content_length > lc->max_body_size) {
        respond_local(c, 413, NULL, "request body too large\n", true, route);
        return;
    }
    if (x->req.upgrade && cp->http2) {
        /* An upgrade cannot cross an HTTP/2 backend connection (and RFC
         * 8441 towards backends is not offered): said plainly, rather than
         * forwarded as a GET whose answer opens no tunnel. */
        respond_local(c, 501, NULL, "WebSocket to an http2 pool is not supported\n", true, route);
        return;
    }
    x->pool = runtime_pool(c->w->rt, cp);
    x->balancer = &c->w->balancers[runtime_pool_index(c->w->rt, x->pool)];
    if (!breaker_admit(c))
        return;
    x->mirror_due = route && route->mirror_pool && !x->req.upgrade &&
                    balance_rand(&c->w->rng) % 100 < route->mirror_percent;
    if (!keep_body_for_replay(c))
        return;
    x->req_left = x->req.body == H1_BODY_LENGTH ? x->req.content_length : 0;
    x->replay_pos = x->body_pos;
    h1_chunked_init(&x->req_chunk);
    x->req_body_read = x->req.body == H1_BODY_NONE;

    /* The head for the backend, built once (a retry sends it again). */
    struct http_forward fwd = {
        .peer = &c->peer,
        .peer_trusted = c->trusted,
        .request_id = x->request_id,
        .upstream_http10 = x->req.minor == 0,
        .tls = c->l->tls != NULL,
        .client_subject = c->client_subject,
        .drop_underscores = c->l->conf->underscores == UNDERSCORES_DROP,
    };
    x->to_up = buf_get(&c->w->bufs);
    if (!x->to_up) {
        conn_close(c, END_NO_MEMORY);
        return;
    }
    if (http_write_request_head(x->to_up, &x->req, route, &fwd) < 0) {
        buf_drop(c->w, &x->to_up);
        x->to_up = buf_big(x->req.head_len * 2 + 16384);
        if (!x->to_up || http_write_request_head(x->to_up, &x->req, route, &fwd) < 0) {
            respond_local(c, 431, NULL, "request header fields too large\n", true, route);
            return;
        }
    }
    if (x->mirror_due && mirror_hold_start(c->w, &x->mirror, x->to_up->data, x->to_up->tail,
                                           route->mirror_set_headers, route->nmirror_set_headers,
                                           x->req.body, x->req.content_length,
                                           route->mirror_max_body) < 0)
        mirror_cancel(c);
    if (!c->x->req.keep_alive)
        c->close_after = true;
    c->state = HC_FORWARD;
    exchange_connect(c);
}

/* ---- circuit breaking and retries ---- */

enum retry_kind {
    RETRY_RESET,      /* the backend closed or reset before its response head */
    RETRY_TIMEOUT,    /* per_try_timeout or upstream_response ran out */
    RETRY_STATUS,     /* a response head with a status in retry_on */
};

/* Count the request against the pool's limits, or answer 503 at once. Each
 * admitted request also feeds the retry budget. */
static bool breaker_admit(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    const struct conf_pool *pc = x->pool->conf;
    uint32_t active = atomic_fetch_add_explicit(&x->pool->requests_active, 1,
                                                memory_order_relaxed);
    int64_t cap = ((int64_t)pc->retries.budget_min + 10) * 100;

    x->counted = true;
    if (pc->breaker.max_requests && active >= pc->breaker.max_requests) {
        atomic_fetch_add_explicit(&x->pool->breaker_rejected, 1, memory_order_relaxed);
        log_info("event=circuit_breaker pool=%s limit=max_requests value=%u", pc->name,
                 pc->breaker.max_requests);
        x->end = END_NO_BACKEND;
        respond_local(c, 503, NULL, "pool over its request limit\n", false, x->route);
        return false;
    }
    if (pc->retries.attempts &&
        atomic_load_explicit(&x->pool->retry_tokens, memory_order_relaxed) < cap)
        atomic_fetch_add_explicit(&x->pool->retry_tokens, pc->retries.budget_percent,
                                  memory_order_relaxed);
    return true;
}

/* A new upstream connection is about to be opened for this request. */
static bool breaker_allows_connect(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    const struct conf_breaker *br = &x->pool->conf->breaker;
    const char *limit = NULL;

    if (br->max_connections &&
        atomic_load_explicit(&x->pool->connections, memory_order_relaxed) >= br->max_connections)
        limit = "max_connections";
    else if (br->max_pending_requests && !x->pending &&
             atomic_load_explicit(&x->pool->pending, memory_order_relaxed) >=
                 br->max_pending_requests)
        limit = "max_pending_requests";
    if (!limit)
        return true;
    atomic_fetch_add_explicit(&x->pool->breaker_rejected, 1, memory_order_relaxed);
    log_info("event=circuit_breaker pool=%s limit=%s", x->pool->conf->name, limit);
    exchange_release_backend(x);
    x->end = END_NO_BACKEND;
    respond_local(c, 503, NULL, "pool over its connection limit\n", false, x->route);
    return false;
}

/* With retries on, a Content-Length body that fits retry_buffer is kept
 * whole in the client buffer so it can be sent again. (A mirror's copy
 * holds its own, see mirror_copy.) The buffer may have to grow, and then
 * the head is parsed again in its new place (the parsed fields point into
 * the buffer). */
static bool keep_body_for_replay(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    const struct conf_retries *r = &x->pool->conf->retries;
    uint64_t keep = r->attempts ? r->retry_buffer : 0, need;
    struct h1_limits lim = request_limits(c->l->conf);

    if (!keep || x->req.body != H1_BODY_LENGTH || x->req.content_length > keep)
        return true;
    need = (uint64_t)x->req.head_len + x->req.content_length;
    if (need <= c->in->size - c->in->head)
        return true;
    if (!grow_client_buffer(c, (uint32_t)need + 1024))
        return false;
    h1_request_init(&x->req, x->req_slots, HTTP_MAX_HEADERS);
    if (h1_parse_request(c->in->data, buf_len(c->in), &lim, &x->req) <= 0) {
        respond_local(c, 400, NULL, "bad request\n", true, NULL);
        return false;
    }
    if (x->norm_path)    /* the normalised path routing saw, which did not move */
        x->req.path = (struct h1_slice){x->norm_path, x->norm_path_len};
    x->body_pos = x->req.head_len;
    return true;
}

/* May the failed try be sent again? Only before any response byte reached
 * the client, for a replayable request whose body is still whole, within
 * the policy's attempts and the pool's retry budget. */
static bool retry_allowed(struct http_conn *c, enum retry_kind kind, int status)
{
    struct http_exchange *x = c->x;
    const struct conf_retries *r = &x->pool->conf->retries;
    int64_t tokens;

    if (x->resp_started || x->retries >= r->attempts)
        return false;
    switch (kind) {
    case RETRY_RESET:
        if (!r->on_reset)
            return false;
        break;
    case RETRY_TIMEOUT:
        if (!r->on_timeout)
            return false;
        break;
    case RETRY_STATUS:
        if (status < 500 || status > 563 || !(r->on_status & (1ull << (status - 500))))
            return false;
        break;
    }
    if (!http_request_replayable(&x->req) || x->body_lost)
        return false;
    if (x->req.body == H1_BODY_LENGTH && x->req.content_length > r->retry_buffer)
        return false;
    if (x->req.body == H1_BODY_CHUNKED && x->req_bytes > r->retry_buffer)
        return false;
    if (x->tries >= x->pool->nbackends || x->tries >= HTTP_MAX_TRIES)
        return false;   /* no backend left that was not tried */
    /* The budget: a token bucket fed by every request (budget_percent
     * hundredths of a retry each), so retries stay a fraction of traffic
     * however sick the pool is. */
    tokens = atomic_load_explicit(&x->pool->retry_tokens, memory_order_relaxed);
    do {
        if (tokens < 100) {
            atomic_fetch_add_explicit(&x->pool->retry_budget_exhausted, 1, memory_order_relaxed);
            log_info("event=retry_budget_exhausted pool=%s", x->pool->conf->name);
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(&x->pool->retry_tokens, &tokens, tokens - 100,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

/* Put the request back at its start, to be sent again. */
static void rewind_request(struct http_conn *c)
{
    struct http_exchange *x = c->x;

    x->to_up->head = 0;
    x->body_pos = x->replay_pos;
    x->req_left = x->req.body == H1_BODY_LENGTH ? x->req.content_length : 0;
    h1_chunked_init(&x->req_chunk);
    x->req_done = false;
    x->req_body_read = x->req.body == H1_BODY_NONE;
    x->req_bytes = 0;
    mirror_hold_rewind(&x->mirror);
    h1_response_init(&x->resp, x->resp_slots, HTTP_MAX_HEADERS);
    x->resp_head_done = false;
    x->resp_done = false;
    x->approved = 0;
}

/* Send the request again, to a backend not tried yet, after a backoff. */
static void retry_start(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    const struct conf_retries *r = &x->pool->conf->retries;
    uint64_t delay = 0;

    x->retries++;
    atomic_fetch_add_explicit(&x->pool->retries_total, 1, memory_order_relaxed);
    rewind_request(c);
    if (r->backoff_ms) {
        /* base × 2^(n-1), times a jitter of 0.5..1.5 so retries of many
         * requests do not arrive in step. */
        uint64_t base = r->backoff_ms << (x->retries - 1 < 6 ? x->retries - 1 : 6);
        delay = base / 2 + balance_rand(&c->w->rng) % (base + 1);
    }
    if (delay == 0) {
        exchange_connect(c);
        return;
    }
    x->retry_at_ms = clock_now_ms() + delay;
    arm_timer(c);
}

/* Pick a backend not tried yet and get a connection to it. */
static void exchange_connect(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    struct balance_req req = {0};
    int err = 0;

    /* The hashing algorithms' key: computed once per try; a retry walks on
     * from the same point, excluding what it tried. */
    req.has_hash = balance_hash_http(x->pool->conf, &c->peer, &x->req, &req.hash);
    for (;;) {
        struct backend *b;

        req.exclude = (const struct backend *const *)x->tried;
        req.nexclude = x->tries;
        /* A sticky session goes back to its backend on the first try; a
         * retry is balanced, and the response then moves the session. */
        b = NULL;
        if (!x->tries && (x->sticky = sticky_lookup(x->pool, &x->req)) &&
            sticky_usable(x->sticky))
            b = x->sticky;
        if (!b && (x->tries >= HTTP_MAX_TRIES || !(b = balancer_pick(x->balancer, &req)))) {
            /* Every backend DOWN and the last resort failed too: the pool
             * has nothing to offer, which is a 503 (with Retry-After). */
            bool none = !x->tries || x->balancer->last_resort;
            x->end = none ? END_NO_BACKEND : END_CONNECT_FAILED;
            respond_local(c, none ? 503 : 502, NULL,
                          none ? "no backend available\n" : "bad gateway\n", false, x->route);
            return;
        }
        x->tried[x->tries++] = b;
        x->backend = b;
        atomic_fetch_add_explicit(&b->active, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->total, 1, memory_order_relaxed);
        x->connect_start_us = clock_now_us();
        x->up = x->pool->conf->http2 ? NULL : upstream_take_idle(c->w, b);
        if (x->up) {
            x->up_reused = true;
            upstream_attach(x->up, up_event, c);
            x->up->writable = true;
            x->up_active_ms = clock_now_ms();
            x->try_start_ms = clock_now_ms();
            arm_timer(c);
            return;
        }
        x->up_reused = false;
        if (!breaker_allows_connect(c))
            return;
        /* HTTP/2 pools: a stream on a shared session, which completes like
         * a connect (EPOLLOUT once the session is up). */
        x->up = x->pool->conf->http2 ? h2_upstream_open(c->w, b, up_event, c, &err)
                                     : upstream_connect(c->w, b, up_event, c, &err);
        if (x->up) {
            x->connect_deadline_ms = clock_now_ms() + x->pool->conf->connect_timeout_ms;
            x->up_active_ms = clock_now_ms();
            x->try_start_ms = clock_now_ms();
            if (!x->pending) {
                x->pending = true;
                atomic_fetch_add_explicit(&x->pool->pending, 1, memory_order_relaxed);
            }
            arm_timer(c);
            return;
        }
        atomic_fetch_add_explicit(&b->failures, 1, memory_order_relaxed);
        backend_report(b, false);
        exchange_release_backend(x);
        if (err == -EMFILE || err == -ENFILE || err == -ENOMEM) {
            x->end = END_NO_MEMORY;
            respond_local(c, 503, NULL, "out of resources\n", true, x->route);
            return;
        }
    }
}

/* The upstream failed before any response byte reached the client: try
 * again where that is safe, else answer 502/504. */
static void upstream_failed(struct http_conn *c, enum end_reason why, bool connect_phase)
{
    struct http_exchange *x = c->x;
    /* A backend that closed the kept-alive connection under us, not one
     * that took the request and stayed silent (a timeout): that is a
     * failure of the backend, retried only as the policy says. */
    bool stale = x->up_reused && !connect_phase && x->from_up == NULL &&
                 why != END_IDLE_TIMEOUT;

    if (x->backend && !stale) {
        atomic_fetch_add_explicit(&x->backend->failures, 1, memory_order_relaxed);
        backend_report(x->backend, false);
        /* A backend that hangs must look slow to ewma, not unsampled. */
        if (why == END_IDLE_TIMEOUT)
            backend_observe_latency(x->backend, clock_now_us() - x->connect_start_us,
                                    clock_now_us());
    }
    if (x->up) {
        upstream_release(x->up, false);
        x->up = NULL;
    }
    exchange_release_backend(x);
    buf_drop(c->w, &x->from_up);
    x->approved = 0;
    if (!x->resp_started && !x->resp_head_done) {
        /* Nothing of the request body consumed yet means it can be sent again. */
        bool body_intact = x->req.body == H1_BODY_NONE;
        if (connect_phase && x->pool->conf->retries.on_connect_failure) {
            exchange_connect(c);     /* the next backend; none is sent twice */
            return;
        }
        if (connect_phase) {
            /* retry_on without connect_failure: the operator wants none
             * (NGINX's proxy_next_upstream without `error`). */
            x->end = why;
            respond_local(c, 502, NULL, "bad gateway\n", true, x->route);
            return;
        }
        if (stale && body_intact && !x->fresh_retry_done && http_request_replayable(&x->req)) {
            /* The backend closed a keep-alive connection as we reused it:
             * the same backend on a fresh connection. */
            x->fresh_retry_done = true;
            x->tries--;
            rewind_request(c);
            exchange_connect(c);
            return;
        }
        if (retry_allowed(c, why == END_IDLE_TIMEOUT ? RETRY_TIMEOUT : RETRY_RESET, 0)) {
            retry_start(c);
            return;
        }
        x->end = why;
        respond_local(c, why == END_IDLE_TIMEOUT ? 504 : 502, NULL,
                      why == END_IDLE_TIMEOUT ? "gateway timeout\n" : "bad gateway\n", true,
                      x->route);
        return;
    }
    x->end = why;
    conn_close(c, why);
}

/* A send or receive on the upstream failed (errno says why). An HTTP/2
 * stream the backend refused unprocessed (ECONNREFUSED: REFUSED_STREAM, or
 * past a GOAWAY's last stream; RFC 9113 8.7 makes it safe to send again)
 * fails like a refused connect: to the next backend, whatever the method,
 * while the body can still be sent again. */
static void upstream_io_failed(struct http_conn *c, enum end_reason why)
{
    struct http_exchange *x = c->x;

    if (errno == ECONNREFUSED && x->up && x->up->h2 && !x->resp_head_done && !x->body_lost) {
        rewind_request(c);
        upstream_failed(c, END_CONNECT_FAILED, true);
        return;
    }
    upstream_failed(c, why, false);
}

/* ---- forwarding ---- */

/* A new connection to a pool with tls: the handshake, then the request.
 * true when done; false while it waits, or when it failed (a connect
 * failure then: retried on another backend like a refused connect). */
static bool upstream_tls_ready(struct http_conn *c)
{
    int r = upstream_tls_step(c->x->up);

    if (r < 0)
        upstream_failed(c, r == -2 ? END_NO_MEMORY : END_CONNECT_FAILED, true);
    return r == 1;
}

static bool forward_request(struct http_conn *c, bool *progress)
{
    struct http_exchange *x = c->x;
    struct upstream_conn *u = x->up;
    bool eof;

    while (u->writable) {
        ssize_t n;

        /* The head (and, on a retry, nothing else) first. */
        if (x->to_up && buf_len(x->to_up)) {
            n = upstream_send(u, x->to_up->data + x->to_up->head, buf_len(x->to_up));
            if (n < 0) {
                if (errno == EAGAIN) {
                    u->writable = false;
                    break;
                }
                upstream_io_failed(c, END_BACKEND_RESET);
                return false;
            }
            x->to_up->head += (uint32_t)n;
            x->up_active_ms = clock_now_ms();
            *progress = true;
            if (buf_len(x->to_up) == 0 && x->req_body_read && !x->req_done) {
                x->req_done = true;
                x->sent_us = clock_now_us();
            }
            continue;
        }
        if (x->req_done)
            break;
        /* Body bytes waiting in conn->in after the head. */
        uint32_t avail = c->in ? c->in->tail - x->body_pos : 0;
        uint32_t take = 0;
        bool done = false;
        if (avail) {
            if (x->req.body == H1_BODY_LENGTH) {
                take = avail < x->req_left ? avail : (uint32_t)x->req_left;
                done = take == x->req_left;
            } else if (x->req.body == H1_BODY_CHUNKED) {
                ssize_t k = h1_chunked_scan(&x->req_chunk, c->in->data + x->body_pos, avail, &done);
                if (k < 0) {
                    log_info("event=bad_request listener=%s why=\"chunked body: %s\"",
                             c->l->conf->name, x->req_chunk.error ? x->req_chunk.error : "malformed");
                    x->req_done = true;
                    respond_local(c, 400, NULL, "bad request body\n", true, x->route);
                    return false;
                }
                take = (uint32_t)k;
            }
        }
        if (take) {
            n = upstream_send(u, c->in->data + x->body_pos, take);
            if (n < 0) {
                if (errno == EAGAIN) {
                    u->writable = false;
                    break;
                }
                upstream_io_failed(c, END_BACKEND_RESET);
                return false;
            }
            /* A chunked scan consumed `take`; if send took less, the rest
             * stays for next time and must not be scanned again. */
            if (x->req.body == H1_BODY_CHUNKED && (uint32_t)n < take) {
                /* Keep the unsent tail in to_up so the scan stays exact. */
                if (!x->to_up && !(x->to_up = buf_get(&c->w->bufs))) {
                    conn_close(c, END_NO_MEMORY);
                    return false;
                }
                /* The head a retry would send again is overwritten
                 * (rewind_request sends to_up from its start): no replay
                 * of this try. */
                x->body_lost = true;
                x->to_up->head = x->to_up->tail = 0;
                buf_append(x->to_up, c->in->data + x->body_pos + n, take - (uint32_t)n);
                u->writable = false;
                n = take;
            }
            if (x->mirror_due &&
                !mirror_hold_append(c->w, &x->mirror, c->in->data + x->body_pos, (size_t)n,
                                    x->req.body == H1_BODY_CHUNKED
                                        ? x->req_chunk.data
                                        : x->req_bytes + (uint64_t)n))
                mirror_cancel(c);   /* past its max_body_size or the worker's bound */
            x->body_pos += (uint32_t)n;
            x->req_bytes += (uint64_t)n;
            if (x->req.body == H1_BODY_LENGTH)
                x->req_left -= (uint64_t)n;
            x->up_active_ms = clock_now_ms();
            *progress = true;
            /* Only once the last byte went out: after a short send the
             * rest of the body is still at body_pos, to be sent, not
             * parsed as the next request. */
            if (done && (uint32_t)n == take)
                x->req_body_read = true;
            if (c->in->tail == x->body_pos && c->in->tail > c->in->head + x->req.head_len &&
                buf_room(c->in) == 0) {
                /* All body bytes sent and the buffer is full: reuse the
                 * room after the head (this body can no longer be replayed). */
                c->in->tail = x->body_pos = c->in->head + x->req.head_len;
                x->body_lost = true;
            }
            if (x->req_body_read && (!x->to_up || buf_len(x->to_up) == 0)) {
                x->req_done = true;
                x->sent_us = clock_now_us();
            }
            continue;
        }
        if (x->req_body_read) {
            x->req_done = true;
            x->sent_us = clock_now_us();
            break;
        }
        /* Need more body from the client. */
        if (!c->c_readable)
            break;
        if (!read_client(c, &eof)) {
            if (eof) {
                x->end = END_CLIENT_RESET;
                conn_close(c, END_CLIENT_RESET);
                return false;
            }
            if (c->in && buf_room(c->in) == 0)
                break;   /* full of unsent body: wait for the backend */
            break;
        }
        if (c->l->conf->max_body_size &&
            x->req_bytes + (c->in->tail - x->body_pos) > c->l->conf->max_body_size &&
            x->req.body == H1_BODY_CHUNKED && !x->resp_started) {
            x->req_done = true;
            respond_local(c, 413, NULL, "request body too large\n", true, x->route);
            return false;
        }
        *progress = true;
    }
    return true;
}

/* The final response head for the client: the route's rewrites, the
 * request id, and the sticky cookie when the session is new or moved. */
static int write_response_head(struct http_conn *c, bool keep)
{
    struct http_exchange *x = c->x;
    const struct conf_sticky *st = &x->pool->conf->sticky;
    struct http_response_extra extra = {.request_id = x->request_id};
    char cookie[512];

    if (st->cookie) {
        extra.sticky_cookie = st->cookie;
        if (x->backend && x->backend != x->sticky &&
            sticky_set_cookie(st, x->backend, cookie, sizeof(cookie)) > 0)
            extra.set_cookie = cookie;
    }
    return http_write_response_head(c->out, &x->resp, x->route, keep, x->req.minor == 0, &extra);
}

/* Approve response bytes in from_up for the client, per the framing. */
static bool frame_response(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    struct buf *b = x->from_up;

    while (b && !x->resp_done) {
        uint32_t unapproved = buf_len(b) - x->approved;
        const char *p = b->data + b->head + x->approved;

        if (!x->resp_head_done) {
            int r = h1_parse_response(b->data + b->head, buf_len(b), x->req.method_id, NULL,
                                      &x->resp);
            if (r == H1_NEED_MORE) {
                if (buf_room(b) == 0 && b->head == 0) {
                    upstream_failed(c, END_BACKEND_RESET, false);
                    return false;
                }
                return true;
            }
            if (r < 0) {
                log_warn("event=bad_response pool=%s backend=%s why=\"%s\"", x->pool->conf->name,
                         x->tried[x->tries - 1]->conf->name, x->resp.error ? x->resp.error : "malformed");
                x->end = END_BACKEND_RESET;
                if (x->up) {
                    upstream_release(x->up, false);
                    x->up = NULL;
                }
                buf_drop(c->w, &x->from_up);
                respond_local(c, 502, NULL, "bad gateway\n", true, x->route);
                return false;
            }
            if (!c->out && !(c->out = buf_get(&c->w->bufs))) {
                conn_close(c, END_NO_MEMORY);
                return false;
            }
            if (x->resp.status < 200 && x->resp.status != 101) {
                /* 100 Continue and friends: pass on, then the real head;
                 * but never to an HTTP/1.0 client (RFC 9110 15.2), which
                 * would take the 1xx for the final answer: dropped. */
                if (x->req.minor != 0 &&
                    http_write_response_head(c->out, &x->resp, NULL, true, false, NULL) < 0) {
                    upstream_failed(c, END_BACKEND_RESET, false);
                    return false;
                }
                buf_consume(b, (uint32_t)r);
                h1_response_init(&x->resp, x->resp_slots, HTTP_MAX_HEADERS);
                if (buf_len(b) == 0) {
                    buf_drop(c->w, &x->from_up);
                    return true;
                }
                continue;
            }
            /* An HTTP/2 client's WebSocket: sluice sent the key, so sluice
             * checks the accept (proxy/h2.c). */
            if (x->resp.status == 101 &&
                (!x->req.upgrade || (c->h2s && !h2_stream_upgrade_accepted(c->h2s, &x->resp)))) {
                upstream_failed(c, END_BACKEND_RESET, false);
                return false;
            }
            if (retry_allowed(c, RETRY_STATUS, x->resp.status)) {
                log_debug("event=retry pool=%s backend=%s status=%d", x->pool->conf->name,
                          x->tried[x->tries - 1]->conf->name, x->resp.status);
                if (x->backend) {
                    atomic_fetch_add_explicit(&x->backend->failures, 1, memory_order_relaxed);
                    backend_report(x->backend, false);
                }
                if (x->up) {
                    upstream_release(x->up, false);
                    x->up = NULL;
                }
                exchange_release_backend(x);
                buf_drop(c->w, &x->from_up);
                retry_start(c);
                return false;
            }
            x->status = x->resp.status;
            x->response_us = clock_now_us();
            /* Peak-EWMA: time from pick to response head, connect included. */
            if (x->backend)
                backend_observe_latency(x->backend, x->response_us - x->connect_start_us,
                                        x->response_us);
            if (x->backend)
                backend_report(x->backend, x->resp.status < 500);
            bool keep = x->req.keep_alive && !c->close_after && !c->w->draining &&
                        x->resp.body != H1_BODY_CLOSE && x->resp.status != 101;
            if (!keep)
                c->close_after = true;
            if (write_response_head(c, keep) < 0) {
                upstream_failed(c, END_BACKEND_RESET, false);
                return false;
            }
            buf_consume(b, (uint32_t)r);
            x->resp_head_done = true;
            x->resp_left = x->resp.body == H1_BODY_LENGTH ? x->resp.content_length : 0;
            h1_chunked_init(&x->resp_chunk);
            if (x->resp.status == 101 || x->resp.body == H1_BODY_NONE) {
                x->resp_done = true;
                if (buf_len(b) == 0)
                    buf_drop(c->w, &x->from_up);
                return true;
            }
            if (buf_len(b) == 0) {
                buf_drop(c->w, &x->from_up);
                return true;
            }
            continue;
        }
        if (unapproved == 0)
            return true;
        switch (x->resp.body) {
        case H1_BODY_LENGTH: {
            uint32_t take = unapproved < x->resp_left ? unapproved : (uint32_t)x->resp_left;
            x->approved += take;
            x->resp_left -= take;
            if (x->resp_left == 0)
                x->resp_done = true;
            break;
        }
        case H1_BODY_CHUNKED: {
            bool done = false;
            ssize_t k = h1_chunked_scan(&x->resp_chunk, p, unapproved, &done);
            if (k < 0) {
                log_warn("event=bad_response pool=%s why=\"chunked body: %s\"", x->pool->conf->name,
                         x->resp_chunk.error ? x->resp_chunk.error : "malformed");
                upstream_failed(c, END_BACKEND_RESET, false);
                return false;
            }
            x->approved += (uint32_t)k;
            if (done)
                x->resp_done = true;
            break;
        }
        case H1_BODY_CLOSE:
            x->approved += unapproved;
            break;
        case H1_BODY_NONE:
            x->resp_done = true;
            break;
        }
        return true;
    }
    return true;
}

/* Read what the backend sent. */
static bool read_upstream(struct http_conn *c, bool *progress)
{
    struct http_exchange *x = c->x;
    struct upstream_conn *u = x->up;

    while (u && u->readable && !x->resp_done) {
        struct buf *b = x->from_up;
        ssize_t n;

        if (!b) {
            b = x->from_up = buf_get(&c->w->bufs);
            if (!b) {
                conn_close(c, END_NO_MEMORY);
                return false;
            }
        }
        if (x->approved == buf_len(b) && x->resp_head_done) {
            /* Everything approved was sent or is waiting; rewind when empty. */
            if (buf_len(b) == 0)
                b->head = b->tail = 0;
        }
        if (buf_room(b) == 0) {
            if (b->head > 0 && x->approved == 0 && !x->resp_head_done)
                buf_compact(b);
            else if (b->head > 0 && x->approved == buf_len(b))
                buf_compact(b);
            if (buf_room(b) == 0)
                break;   /* wait for the client to take what is approved */
        }
        n = upstream_recv(u, b->data + b->tail, buf_room(b));
        if (n > 0) {
            if ((uint32_t)n < buf_room(b) && !u->hup && !u->tls)
                u->readable = false;   /* drained; see read_client */
            b->tail += (uint32_t)n;
            x->up_active_ms = clock_now_ms();
            *progress = true;
            if (!frame_response(c))
                return false;
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            u->readable = false;
            break;
        }
        /* EOF or reset from the backend. */
        if (x->resp_head_done && x->resp.body == H1_BODY_CLOSE && n == 0) {
            x->resp_done = true;   /* close-delimited body: EOF ends it */
            *progress = true;
            break;
        }
        if (n == 0)
            upstream_failed(c, END_BACKEND_CLOSE, false);
        else
            upstream_io_failed(c, END_BACKEND_RESET);
        return false;
    }
    return true;
}

/* ---- tunnels (WebSocket after 101) ---- */

static void tunnel_start(struct http_conn *c)
{
    struct http_exchange *x = c->x;

    /* The 101 head and any bytes the backend sent after it go first to the
     * client; any bytes the client sent after its request go first to the
     * backend. */
    x->tun_down.buf = c->out;
    c->out = NULL;
    if (x->from_up && buf_len(x->from_up)) {
        if (!x->tun_down.buf) {
            x->tun_down.buf = x->from_up;
            x->from_up = NULL;
        } else {
            buf_append(x->tun_down.buf, x->from_up->data + x->from_up->head, buf_len(x->from_up));
        }
    }
    buf_drop(c->w, &x->from_up);
    x->approved = 0;
    keep_log_fields(x);             /* before c->in goes: it reads the head there */
    if (c->in && c->in->tail > x->body_pos) {
        /* The client buffer itself becomes the tunnel's first bytes: no
         * copy, so none is lost when they are more than a pool buffer
         * holds (a head that grew c->in) and no allocation that could
         * fail. pump.c returns it with buf_put, which frees one of
         * another size than the pool's. */
        c->in->head = x->body_pos;
        x->tun_up.buf = c->in;
        c->in = NULL;
    }
    buf_drop(c->w, &c->in);
    x->resp_started = true;
    c->state = HC_TUNNEL;
    c->close_after = true;
    arm_timer(c);
}

/* An HTTP/2 stream's tunnel (a WebSocket, RFC 8441): the client side has
 * no socket, so bytes go through the tunnel's buffers, from proxy/h2.c
 * (the client's DATA, h2_stream_read) to the backend, and from the backend
 * to h2.c (its DATA, h2_stream_write). Flow control bounds both: h2.c
 * holds at most a stream window of the client's bytes, and takes the
 * backend's only while its queue has room (EAGAIN, then a wake). The
 * client's END_STREAM is a FIN to the backend; the backend's FIN ends the
 * stream (END_STREAM once h2.c sent what it holds); a reset either way
 * resets the other side. */
static void step_stream_tunnel(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    struct upstream_conn *u = x->up;
    struct pump_dir *up = &x->tun_up, *down = &x->tun_down;
    bool moved = false, eof = false;
    ssize_t n;

    /* client → backend */
    for (;;) {
        if (up->buf && buf_len(up->buf)) {
            if (!u->writable)
                break;
            if ((n = upstream_send(u, up->buf->data + up->buf->head, buf_len(up->buf))) < 0) {
                if (errno == EAGAIN) {
                    u->writable = false;
                    break;
                }
                x->end = END_BACKEND_RESET;
                conn_close(c, END_BACKEND_RESET);
                return;
            }
            buf_consume(up->buf, (uint32_t)n);
            up->bytes += (uint64_t)n;
            moved = true;
            continue;
        }
        if (up->eof || !c->c_readable || !c->h2s)
            break;
        if (!up->buf && !(up->buf = buf_get(&c->w->bufs))) {
            conn_close(c, END_NO_MEMORY);
            return;
        }
        up->buf->head = up->buf->tail = 0;
        up->buf->tail = (uint32_t)h2_stream_read(c->h2s, up->buf->data, up->buf->size, &eof);
        if (buf_len(up->buf) < up->buf->size)
            c->c_readable = false;      /* http_stream_wake says when more came */
        up->eof = eof;
        if (!buf_len(up->buf) && !eof)
            break;
        moved = true;
    }
    if (up->buf && !buf_len(up->buf))
        buf_drop(c->w, &up->buf);
    if (up->eof && !up->shut && !up->buf) {
        if (u->tls)
            tls_shutdown(u->tls);
        shutdown(u->io.fd, SHUT_WR);
        up->shut = true;
    }
    /* backend → client */
    for (;;) {
        if (down->buf && buf_len(down->buf)) {
            struct iovec iov = {down->buf->data + down->buf->head, buf_len(down->buf)};

            if (!c->c_writable || !c->h2s)
                break;
            if ((n = h2_stream_write(c->h2s, &iov, 1)) < 0) {
                if (errno == EAGAIN) {
                    c->c_writable = false;
                    break;
                }
                x->end = END_CLIENT_RESET;
                conn_close(c, END_CLIENT_RESET);
                return;
            }
            buf_consume(down->buf, (uint32_t)n);
            down->bytes += (uint64_t)n;
            moved = true;
            continue;
        }
        if (down->eof || !u->readable)
            break;
        if (!down->buf && !(down->buf = buf_get(&c->w->bufs))) {
            conn_close(c, END_NO_MEMORY);
            return;
        }
        down->buf->head = down->buf->tail = 0;
        if ((n = upstream_recv(u, down->buf->data, down->buf->size)) > 0) {
            if ((uint32_t)n < down->buf->size && !u->hup && !u->tls)
                u->readable = false;    /* drained; see read_client */
            down->buf->tail = (uint32_t)n;
            moved = true;
        } else if (n == 0) {
            down->eof = true;
        } else if (errno == EAGAIN) {
            u->readable = false;
        } else {
            x->end = END_BACKEND_RESET;
            conn_close(c, END_BACKEND_RESET);
            return;
        }
    }
    if (down->buf && !buf_len(down->buf))
        buf_drop(c->w, &down->buf);
    if (moved)
        c->last_active_ms = clock_now_ms();
    x->req_bytes = up->bytes;
    x->resp_bytes = down->bytes;
    if (down->eof && !down->buf) {
        /* The backend closed: the stream ends once h2.c sent the rest. */
        x->end = END_BACKEND_CLOSE;
        conn_close(c, END_BACKEND_CLOSE);
    }
}

static void step_tunnel(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    struct upstream_conn *u = x->up;
    bool moved = false;
    enum pump_result r;

    if (c->is_stream) {
        step_stream_tunnel(c);
        return;
    }

    /* splice where both sides are plain; through a buffer when either
     * speaks TLS. */
    bool plain = !c->tls && !u->tls;

    r = plain ? pump_dir(c->w, &x->tun_up, c->cio.fd, u->io.fd, &c->c_readable, &u->writable,
                         &moved)
              : pump_dir_ends(c->w, &x->tun_up, c->tls, c->cio.fd, u->tls, u->io.fd,
                              &c->c_readable, &u->writable, &moved);
    if (r == PUMP_SRC_ERROR || r == PUMP_DST_ERROR) {
        x->end = r == PUMP_SRC_ERROR ? END_CLIENT_RESET : END_BACKEND_RESET;
        conn_close(c, x->end);
        return;
    }
    bool more = r == PUMP_MORE;
    r = plain ? pump_dir(c->w, &x->tun_down, u->io.fd, c->cio.fd, &u->readable, &c->c_writable,
                         &moved)
              : pump_dir_ends(c->w, &x->tun_down, u->tls, u->io.fd, c->tls, c->cio.fd,
                              &u->readable, &c->c_writable, &moved);
    if (r == PUMP_SRC_ERROR || r == PUMP_DST_ERROR) {
        x->end = r == PUMP_SRC_ERROR ? END_BACKEND_RESET : END_CLIENT_RESET;
        conn_close(c, x->end);
        return;
    }
    more |= r == PUMP_MORE;
    if (moved)
        c->last_active_ms = clock_now_ms();
    if (x->tun_down.bytes)
        x->resp_bytes = x->tun_down.bytes;
    x->req_bytes = x->tun_up.bytes;
    if (x->tun_up.shut && x->tun_down.shut) {
        x->end = x->tun_up.eof ? END_CLIENT_CLOSE : END_BACKEND_CLOSE;
        conn_close(c, x->end);
        return;
    }
    if (more)
        loop_task_queue(&c->w->loop, &c->task);
}

/* ---- the engine ---- */

/* The request's copy will not be sent after all. */
static void mirror_cancel(struct http_conn *c)
{
    c->x->mirror_due = false;
    mirror_hold_drop(c->w, &c->x->mirror);
    mirror_skipped(runtime_pool(c->w->rt, c->x->route->mirror_pool));
}

/* The whole request went to the route's backend: the mirror's copy now.
 * x->mirror holds it: the head as sent, with the mirror's set_headers, and
 * every body byte appended as forward_request sent it (chunked framing
 * included), so the copy's body is the backend's byte for byte. */
static void mirror_copy(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    struct pool *mp = runtime_pool(c->w->rt, x->route->mirror_pool);
    struct balance_req req = {0};

    if (x->req.body == H1_BODY_LENGTH &&
        x->mirror.len - x->mirror.head_len != x->req.content_length) {
        mirror_cancel(c);   /* cannot happen: the framing sends exactly that */
        return;
    }
    x->mirror_due = false;
    req.has_hash = balance_hash_http(mp->conf, &c->peer, &x->req, &req.hash);
    mirror_send_held(c->w, mp, &req, &x->mirror, x->req.method_id);
}

/* The 101 head still to send and the backend's tunnel bytes behind it are
 * more than one buffer holds (see step_forward). */
static bool tunnel_bytes_overflow(const struct http_conn *c, const struct http_exchange *x)
{
    return c->out && x->from_up && buf_len(c->out) + buf_len(x->from_up) > c->out->size;
}

static bool step_forward(struct http_conn *c)
{
    struct http_exchange *x = c->x;
    bool progress = false;

    if (!x->up)
        return false;
    if (!x->up->connected) {
        if (!x->up_reused)
            return false;          /* waiting for connect */
        x->up->connected = true;
    }
    if (x->pool->tls && !x->up->tls_ready && !upstream_tls_ready(c))
        /* Waiting: no progress. Failed: a retry is connecting (the same),
         * or an answer (502) waits to be sent, which is progress. */
        return c->x == x && c->state != HC_FORWARD && c->state != HC_CLOSED;
    if (!forward_request(c, &progress) || c->x != x || c->state != HC_FORWARD)
        return c->state != HC_CLOSED;
    if (x->mirror_due && x->req_done)
        mirror_copy(c);
    if (!read_upstream(c, &progress) || c->x != x || c->state != HC_FORWARD)
        return c->state != HC_CLOSED;
    if (!frame_response(c) || c->x != x || c->state != HC_FORWARD)
        return c->state != HC_CLOSED;
    if (x->resp_head_done && x->resp.status == 101 && x->resp_done) {
        /* tunnel_start joins the 101 head and the backend's first tunnel
         * bytes in one buffer; the rewritten head can be longer than the
         * one read (a route's response headers), and then they do not fit:
         * send them to the client first rather than drop the tail. */
        if (tunnel_bytes_overflow(c, x)) {
            x->approved = buf_len(x->from_up);
            if (!flush_client(c, &progress))
                return false;
            if (tunnel_bytes_overflow(c, x))
                return progress;
        }
        tunnel_start(c);
        return true;
    }
    if (!flush_client(c, &progress))
        return false;
    if (x->resp_done && !client_output_pending(c)) {
        if (!x->req_done) {
            /* The backend answered before taking the whole body (an early
             * 413, say): that connection and this one cannot be reused. */
            if (x->up) {
                upstream_release(x->up, false);
                x->up = NULL;
            }
            c->close_after = true;
            x->req_done = true;
        }
        exchange_done(c);
        return true;
    }
    return progress;
}

static bool step_local(struct http_conn *c)
{
    bool progress = false;

    if (!flush_client(c, &progress))
        return false;
    if (client_output_pending(c))
        return progress;
    if (c->x) {
        c->x->resp_done = true;
        if (c->x->end == END_NONE)
            c->x->end = END_CLIENT_CLOSE;
        if (c->close_after) {
            /* Let the client read the answer: shut our side, then close. */
            conn_close_after_response(c, c->x->end);
            return false;
        }
        exchange_done(c);
        return true;
    }
    conn_close(c, END_CLIENT_CLOSE);
    return false;
}

/* The TLS handshake comes before anything else on a tls listener's
 * connection. true once done; false while it waits for the socket, or
 * when it failed (the connection is closed then). Its time counts against
 * client_header, like the first request's head. */
static bool tls_handshake_done(struct http_conn *c)
{
    int r = tls_handshake_step(c->tls, &c->tls_want, &c->c_readable, &c->c_writable);
    char who[160];

    if (r == 1) {
        char subject[1024];

        c->tls_ready = true;
        if (c->l->conf->tls->client_ca && tls_peer_subject(c->tls, subject, sizeof(subject)) > 0)
            c->client_subject = strdup(subject);
    }
    if (r < 0) {
        snprintf(who, sizeof(who), "listener=%s", c->l->conf->name);
        tls_log_failure(who, &c->peer);
        atomic_fetch_add_explicit(&c->l->tls_handshake_errors, 1, memory_order_relaxed);
        conn_close(c, END_CLIENT_RESET);
    }
    return r == 1;
}

/* A new client socket is not in the epoll set: sluice reads its request
 * at once (the listener defers accept until it came) and, for a one-shot
 * connection, sends the answer and closes it without ever waiting on it.
 * That saves the EPOLL_CTL_ADD and the DEL of such a connection. It joins
 * the set the first time sluice waits for it: to read, to write, or after
 * CLIENT_WATCH_MS waiting on the upstream, so that a client that leaves a
 * slow request is noticed. Edge-triggered registration reports what is
 * already pending, so nothing is missed by joining late. */
#define CLIENT_WATCH_MS 100

static bool waits_on_upstream_only(struct http_conn *c)
{
    return c->state == HC_FORWARD && c->x && c->x->req_done && !client_output_pending(c);
}

static void client_watch(struct http_conn *c)
{
    if (c->cio.watched || c->cio.fd < 0)
        return;
    if (loop_add(&c->w->loop, &c->cio, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0)
        conn_close(c, END_NO_MEMORY);
}

static void conn_steps(struct http_conn *c)
{
    if (c->tls && !c->tls_ready && !tls_handshake_done(c))
        return;
    for (int round = 0; round < HTTP_RUN_ROUNDS; round++) {
        bool progress = false;

        switch (c->state) {
        case HC_IDLE:
        case HC_HEAD:
            progress = step_head(c);
            break;
        case HC_FORWARD:
            progress = step_forward(c);
            break;
        case HC_LOCAL:
            progress = step_local(c);
            break;
        case HC_TUNNEL:
            step_tunnel(c);
            return;
        case HC_LINGER:
            step_linger(c);
            return;
        case HC_AUTH:               /* the check's answer resumes it */
            auth_wait(c);
            return;
        case HC_CLOSED:
            return;
        }
        if (!progress || c->state == HC_CLOSED)
            return;
    }
    /* Still busy after many rounds (a long pipeline, a fast transfer):
     * let the worker's other connections run first. */
    loop_task_queue(&c->w->loop, &c->task);
}

static void conn_run(struct http_conn *c)
{
    conn_steps(c);
    if (c->state != HC_CLOSED && !waits_on_upstream_only(c))
        client_watch(c);
}

/* ---- timers: one per connection, its meaning set by the state ---- */

static uint64_t next_deadline(struct http_conn *c)
{
    const struct conf_listener *lc = c->l->conf;
    struct http_exchange *x = c->x;

    switch (c->state) {
    case HC_IDLE:
        /* The first request gets client_header, like any head; after that
         * a keep-alive connection may idle for client_idle. */
        return (c->requests ? c->last_active_ms + lc->client_idle_ms
                            : c->last_active_ms + lc->client_header_ms);
    case HC_HEAD:
    case HC_AUTH:
        return c->head_start_ms + lc->client_header_ms;
    case HC_FORWARD: {
        uint64_t d = UINT64_MAX;
        if (x && x->retry_at_ms)
            d = x->retry_at_ms;
        else if (x && x->up && !x->up->connected && !x->up_reused)
            d = x->connect_deadline_ms;
        else if (x && x->up && !client_output_pending(c))
            /* Not while the client has output to take: sluice stops
             * reading the backend then (its buffer is full), and that
             * silence is the client's, which client_idle limits below. */
            d = x->up_active_ms + x->pool->conf->upstream_response_ms;
        if (x && x->up && !x->resp_head_done && x->pool->conf->retries.per_try_timeout_ms) {
            uint64_t t = x->try_start_ms + x->pool->conf->retries.per_try_timeout_ms;
            d = t < d ? t : d;
        }
        /* The client's body clock: not during a retry's backoff (nothing
         * is read from the client then, and its body may be whole in
         * c->in already), and restarted by each try, which rewinds the
         * body and waits for the client only once it has sent what it
         * holds. Else an earlier body deadline starts the retry before
         * its backoff ends, or answers 408 to a client that owes nothing. */
        if (x && !x->req_body_read && x->req.body != H1_BODY_NONE && !x->retry_at_ms) {
            uint64_t since = c->last_active_ms > x->try_start_ms ? c->last_active_ms
                                                                 : x->try_start_ms;
            uint64_t b = since + lc->client_body_ms;
            d = b < d ? b : d;
        }
        if (client_output_pending(c)) {
            uint64_t s = c->last_active_ms + lc->client_idle_ms;
            d = s < d ? s : d;
        }
        /* A gRPC call's deadline, until its response is all in hand: it
         * never lengthens the others, which stay due when they come first. */
        if (x && x->grpc_deadline_ms && !x->resp_done && x->grpc_deadline_ms < d)
            d = x->grpc_deadline_ms;
        if (!c->cio.watched && c->cio.fd >= 0) {
            uint64_t wt = c->last_active_ms + CLIENT_WATCH_MS;
            d = wt < d ? wt : d;
        }
        return d;
    }
    case HC_LOCAL:
        return c->last_active_ms + lc->client_idle_ms;
    case HC_TUNNEL:
        return c->last_active_ms + lc->tunnel_idle_ms;
    case HC_LINGER:
        return c->head_start_ms + HTTP_LINGER_MS;
    case HC_CLOSED:
        break;
    }
    return UINT64_MAX;
}

static void arm_timer(struct http_conn *c)
{
    uint64_t d = next_deadline(c);

    if (d == UINT64_MAX)
        timer_cancel(&c->w->loop.timers, &c->timer);
    else
        timer_arm(&c->w->loop.timers, &c->timer, d);
}

/* The grpc-message of a call whose deadline ran out. */
#define GRPC_DEADLINE_MESSAGE "deadline exceeded"

/* A gRPC call's deadline (grpc-timeout) came before its response ended.
 * Without a response head yet, sluice answers DEADLINE_EXCEEDED itself
 * (trailers-only). With the response going, an HTTP/2 stream ends with
 * trailers saying DEADLINE_EXCEEDED, even in the middle of a message (the
 * client drops a cut message; Envoy does the same); an HTTP/1.1 client,
 * whose body cannot take a trailer section at any byte, has its connection
 * closed. Either way the backend's side is given up as for
 * upstream_response (an http2 pool's stream reset with CANCEL, an HTTP/1.1
 * connection closed), but the backend is not blamed: the deadline is the
 * client's, not a sign of a sick backend. true: it acted. */
static bool grpc_deadline_passed(struct http_conn *c, uint64_t now)
{
    static const char trailers[] = "grpc-status: 4\r\ngrpc-message: " GRPC_DEADLINE_MESSAGE
                                   "\r\n\r\n";
    struct http_exchange *x = c->x;

    if (!x->grpc_deadline_ms || x->resp_done || now < x->grpc_deadline_ms)
        return false;
    log_debug("event=grpc_deadline listener=%s request_id=%s response_started=%s",
              c->l->conf->name, x->request_id, x->resp_head_done ? "true" : "false");
    x->end = END_GRPC_DEADLINE;
    x->retry_at_ms = 0;
    if (!x->resp_head_done) {
        reply_local(c, 504, GRPC_DEADLINE_EXCEEDED, NULL, GRPC_DEADLINE_MESSAGE, false, x->route);
        return true;
    }
    x->grpc_status = GRPC_DEADLINE_EXCEEDED;
    if (c->h2s && h2_stream_end_with_trailers(c->h2s, trailers, sizeof(trailers) - 1))
        x->resp_done = true;        /* so the stream is detached as complete */
    conn_close(c, END_GRPC_DEADLINE);
    return true;
}

static void timer_fired(struct timer *t)
{
    struct http_conn *c = (void *)((char *)t - offsetof(struct http_conn, timer));
    const struct conf_listener *lc = c->l->conf;
    struct http_exchange *x = c->x;
    uint64_t now = clock_now_ms();

    if (c->state == HC_FORWARD && !c->cio.watched) {
        client_watch(c);   /* a slow upstream: notice the client leaving */
        if (c->state == HC_CLOSED)
            return;
    }
    if (now < next_deadline(c)) {
        arm_timer(c);    /* activity since: lazily re-armed */
        return;
    }
    switch (c->state) {
    case HC_IDLE:
        conn_close(c, END_IDLE_TIMEOUT);
        return;
    case HC_HEAD:
        log_info("event=client_header_timeout listener=%s", lc->name);
        x->req.head_len = 0;
        x->end = END_IDLE_TIMEOUT;
        respond_local(c, 408, NULL, "request timeout\n", true, NULL);
        conn_run(c);
        return;
    case HC_FORWARD:
        if (grpc_deadline_passed(c, now)) {
            if (c->state != HC_CLOSED)
                conn_run(c);
            return;
        }
        if (x->retry_at_ms && !x->up && now >= x->retry_at_ms) {
            x->retry_at_ms = 0;
            exchange_connect(c);
        } else if (x->up && !x->up->connected && !x->up_reused && now >= x->connect_deadline_ms) {
            log_debug("event=connect_timeout pool=%s backend=%s", x->pool->conf->name,
                      x->tried[x->tries - 1]->conf->name);
            upstream_failed(c, END_CONNECT_TIMEOUT, true);
        } else if (x->up && !x->resp_head_done && x->pool->conf->retries.per_try_timeout_ms &&
                   now >= x->try_start_ms + x->pool->conf->retries.per_try_timeout_ms) {
            log_info("event=per_try_timeout pool=%s backend=%s", x->pool->conf->name,
                     x->tried[x->tries - 1]->conf->name);
            upstream_failed(c, END_IDLE_TIMEOUT, false);
        } else if (x->up && !client_output_pending(c) &&
                   now >= x->up_active_ms + x->pool->conf->upstream_response_ms) {
            log_info("event=upstream_timeout pool=%s backend=%s", x->pool->conf->name,
                     x->tried[x->tries - 1]->conf->name);
            upstream_failed(c, END_IDLE_TIMEOUT, false);
        } else {
            x->end = END_IDLE_TIMEOUT;
            if (!x->resp_started && !x->req_body_read) {
                respond_local(c, 408, NULL, "request timeout\n", true, x->route);
            } else {
                conn_close(c, END_IDLE_TIMEOUT);
                return;
            }
        }
        if (c->state != HC_CLOSED)
            conn_run(c);
        return;
    case HC_AUTH:
        /* The helpers did not get to it within client_header. */
        auth_detach(c);
        log_warn("event=auth_timeout listener=%s", lc->name);
        respond_local(c, 503, NULL, "authentication timed out\n", true, x->route);
        conn_run(c);
        return;
    case HC_LOCAL:
    case HC_TUNNEL:
        if (x)
            x->end = END_IDLE_TIMEOUT;
        conn_close(c, END_IDLE_TIMEOUT);
        return;
    case HC_LINGER:
        conn_close(c, END_CLIENT_CLOSE);
        return;
    case HC_CLOSED:
        return;
    }
}

/* ---- events ---- */

static void up_event(struct upstream_conn *u, uint32_t events)
{
    struct http_conn *c = u->owner;
    struct http_exchange *x = c->x;

    if (c->state == HC_CLOSED || !x || x->up != u)
        return;
    upstream_note_events(u, events);
    if (!u->connected && !x->up_reused) {
        int err = upstream_socket_error(u);
        if (err || !(events & EPOLLOUT)) {
            log_debug("event=connect_failed pool=%s backend=%s error=\"%s\"", x->pool->conf->name,
                      u->b->conf->name, strerror(err ? err : ECONNREFUSED));
            upstream_failed(c, END_CONNECT_FAILED, true);
            if (c->state != HC_CLOSED)
                conn_run(c);
            return;
        }
        u->connected = true;
        if (x->pending) {
            x->pending = false;
            atomic_fetch_sub_explicit(&x->pool->pending, 1, memory_order_relaxed);
        }
        x->connect_us = clock_now_us() - x->connect_start_us;
        x->up_active_ms = clock_now_ms();
        arm_timer(c);
    }
    conn_run(c);
}

static void client_event(struct io *io, uint32_t events)
{
    struct http_conn *c = (void *)((char *)io - offsetof(struct http_conn, cio));

    if (c->state == HC_CLOSED)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->c_readable = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->c_writable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->c_hup = true;
    if (c->state == HC_FORWARD && (events & (EPOLLHUP | EPOLLERR))) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->cio.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            c->x->end = END_CLIENT_RESET;
            conn_close(c, END_CLIENT_RESET);
            return;
        }
    }
    conn_run(c);
}

/* ---- accepting, draining ---- */

static void conn_start(struct worker_listener *wl, int fd, const struct addr *peer)
{
    struct worker *w = wl->w;
    struct http_conn *c = calloc(1, sizeof(*c));

    if (!c) {
        close(fd);
        return;
    }
    loop_task_init(&c->task, task_cb);
    c->w = w;
    c->l = wl->l;
    c->peer = *peer;
    c->cio.fd = fd;
    c->cio.cb = client_event;
    c->state = HC_IDLE;
    c->trusted = http_peer_trusted(peer, c->l->conf->trusted_proxies,
                                   c->l->conf->ntrusted_proxies);
    c->close_after = w->draining != 0;   /* taken from the queue while draining */
    c->last_active_ms = clock_now_ms();
    timer_init(&c->timer, timer_fired);
    list_add(w, c);   /* TCP_NODELAY: inherited from the listening socket */
    atomic_fetch_add_explicit(&c->l->connections_total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->l->connections_active, 1, memory_order_relaxed);
    if (c->l->tls && !(c->tls = tls_new(c->l->tls, fd))) {
        conn_close(c, END_NO_MEMORY);
        return;
    }
    arm_timer(c);
    /* The listener defers accept until the client's first bytes arrived
     * (TCP_DEFER_ACCEPT): read them now rather than one epoll round later
     * (a new socket is writable too). Should nothing be there (the kernel
     * gave up waiting), the recv says EAGAIN and conn_run puts the socket
     * in the epoll set (see client_watch). */
    c->c_readable = true;
    c->c_writable = true;
    conn_run(c);
}

int http_accept(struct worker_listener *wl)
{
    return worker_accept(wl, conn_start);
}

/* While draining, a keep-alive connection idle this long is closed; one
 * used more recently may be about to carry the client's next request, and
 * closing it under that request would reset it: it gets answered (with
 * Connection: close) instead. */
#define DRAIN_IDLE_CLOSE_MS 500

static void drain_idle(struct worker *w)
{
    struct http_conn *c = w->http_conns, *next;
    uint64_t now = clock_now_ms();

    for (; c; c = next) {
        next = c->next;
        c->close_after = true;
        if (c->state == HC_IDLE && (!c->in || buf_len(c->in) == 0) &&
            now - c->last_active_ms >= DRAIN_IDLE_CLOSE_MS)
            conn_close(c, END_SHUTDOWN);
    }
}

void http_drain(struct worker *w)
{
    /* Busy connections close after their answer (which says
     * Connection: close); idle ones as soon as they are idle enough. */
    drain_idle(w);
    h2_drain(w);
    upstream_close_idle(w);
    h2_upstream_close_idle(w);
}

void http_sweep(struct worker *w)
{
    struct http_conn *c, *next;

    if (w->draining)
        drain_idle(w);
    c = w->http_conns;
    for (; c; c = next) {
        next = c->next;
        if (c->x && c->x->backend &&
            atomic_load_explicit(&c->x->backend->drain_expired, memory_order_relaxed)) {
            c->x->end = END_DRAINED;
            conn_close(c, END_DRAINED);
        }
    }
    mirror_sweep(w);
    upstream_sweep(w);
}

/* ---- HTTP/2 streams (proxy/h2.h) ---- */

struct http_conn *http_stream_start(struct worker *w, struct listener *l, struct h2_stream *s,
                                    const struct addr *peer, bool trusted,
                                    const char *client_subject)
{
    struct http_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    if (client_subject && !(c->client_subject = strdup(client_subject))) {
        free(c);
        return NULL;
    }
    loop_task_init(&c->task, task_cb);
    c->w = w;
    c->l = l;
    c->peer = *peer;
    c->cio.fd = -1;
    c->h2s = s;
    c->is_stream = true;
    c->state = HC_IDLE;
    c->trusted = trusted;
    c->close_after = true;              /* one exchange per stream */
    c->last_active_ms = clock_now_ms();
    timer_init(&c->timer, timer_fired);
    list_add(w, c);
    arm_timer(c);
    http_stream_wake(c, true, true);
    return c;
}

void http_stream_wake(struct http_conn *c, bool readable, bool writable)
{
    if (c->state == HC_CLOSED)
        return;
    c->c_readable |= readable;
    c->c_writable |= writable;
    loop_task_queue(&c->w->loop, &c->task);
}

void http_stream_abort(struct http_conn *c, bool complete)
{
    c->h2s = NULL;
    if (complete) {
        http_stream_wake(c, false, true);
        return;
    }
    if (c->x && c->x->end == END_NONE)
        c->x->end = END_CLIENT_RESET;
    conn_close(c, END_CLIENT_RESET);
}

void http_close_all(struct worker *w)
{
    mirror_close_all(w);
    h2_close_all(w);
    while (w->http_conns)
        conn_close(w->http_conns, END_SHUTDOWN);
    h2_upstream_close_all(w);
    upstream_close_idle(w);
    while (w->free_exchanges) {
        void *x = w->free_exchanges;
        w->free_exchanges = *(void **)x;
        free(x);
    }
    w->nfree_exchanges = 0;
}
