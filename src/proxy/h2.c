/* HTTP/2 client connections (see h2.h): nghttp2 does the framing, HPACK,
 * flow control and the protocol's checks; this file moves bytes between
 * the socket and nghttp2, and between nghttp2's streams and the exchanges
 * of proxy/http.c.
 *
 * A stream's life: HEADERS → its head is written as HTTP/1.1
 * (proto/h2_request) → END_HEADERS starts an http_conn for it (or sluice
 * answers a bad head itself: 400, 431, 501) → DATA is queued as body bytes
 * (chunk-framed when the client gave no content-length) → http.c writes its
 * response as HTTP/1.1 into h2_stream_write, which submits the head as
 * HEADERS and queues the decoded body for DATA frames → the body ends
 * (END_STREAM), or the exchange failed (RST_STREAM) → nghttp2 closes the
 * stream and it is freed.
 *
 * WebSockets (RFC 8441): SETTINGS_ENABLE_CONNECT_PROTOCOL lets a client
 * send an extended CONNECT (:protocol websocket), which proto/h2_request
 * writes as the HTTP/1.1 upgrade with a key made here; http.c routes and
 * forwards it like any upgrade. The backend's 101 (its accept checked
 * against that key) goes out as :status 200, and from then on the stream
 * is a tunnel: DATA in is raw bytes for http.c, what http.c writes is DATA
 * out, END_STREAM is a half-close either way, and the tunnel's end (the
 * backend closed, tunnel_idle) ends the stream. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "core/bytes.h"
#include "core/clock.h"
#include "core/list.h"
#include "core/log.h"
#include "core/worker.h"
#include "net/addr.h"
#include "net/listener.h"
#include "proto/h2_request.h"
#include "proto/http1.h"
#include "proto/http1_body.h"
#include "proto/tls.h"
#include "proxy/h2.h"
#include "proxy/h2_out.h"
#include "proxy/http_message.h"

#define H2_MAX_STREAMS 128          /* SETTINGS_MAX_CONCURRENT_STREAMS */
#define H2_WINDOW 65535             /* per stream; what one stream may have queued */
#define H2_TX_MAX 65536             /* response bytes queued per stream before http.c waits */
#define H2_OUT_BATCH 32768          /* frames gathered for one send */
#define H2_READ_ROUNDS 16           /* reads per turn before others run */
#define H2_RESP_HEAD_MAX 131072     /* an HTTP/1.1 response head as http.c writes it */
#define H2_RESP_SLOTS 128
#define H2_SPARE_STREAMS 8          /* freed streams a connection keeps, queues and all */

struct h2_conn;

/* Owner: its h2_conn (linked in h->streams) until nghttp2 closes it. */
struct h2_stream {
    struct h2_conn *h;
    int32_t id;
    struct http_conn *c;            /* the exchange; NULL before it starts and once detached */
    struct h2_request req;          /* the head being received */
    int req_error;                  /* a negative status for a bad head: answered here */
    enum h1_method method;
    bool started;                   /* c was made (or the error answered) */
    bool detached;                  /* http.c is done with it */
    struct bytes rq;                /* request bytes for http.c: head, then body */
    uint32_t unacked;               /* DATA bytes not yet given back to the windows */
    bool rq_end;                    /* END_STREAM seen */
    uint32_t rq_trailers;           /* bytes of the request's trailer section so far
                                       (written into rq after "0\r\n"); 0 = none */
    /* response: HTTP/1.1 from http.c, HTTP/2 to the client */
    struct bytes hd;                /* head bytes until parsed */
    bool head_sent;
    bool failed;                    /* the response cannot continue: reset */
    struct h1_body body;            /* the response body, out of its framing */
    struct bytes tx;                /* decoded body bytes for DATA frames */
    struct bytes trailers;          /* the chunked body's trailer section, as received */
    bool tx_end;                    /* the body is complete */
    bool tunnel;                    /* a WebSocket's 200 went out: DATA both ways is the
                                       tunnel's (RFC 8441), END_STREAM its half-close */
    bool deferred;                  /* the data source said DEFERRED: resume it */
    bool want_room;                 /* http.c was told EAGAIN */
    bool lingering;                 /* detached with its response still going out (h->nlinger) */
    uint64_t tx_active_ms;          /* lingering: when DATA last went out */
    struct h1_response resp;
    struct h1_header resp_slots[H2_RESP_SLOTS];
    struct h2_stream *prev, *next;
};

/* Owner: its worker (linked in w->h2_conns). */
struct h2_conn {
    struct loop_task task;          /* run: read, write, or free once closed */
    struct io io;
    struct worker *w;
    struct listener *l;
    struct addr peer;
    bool trusted;
    SSL *tls;
    char *client_subject;
    nghttp2_session *ng;
    struct bytes out;               /* frames not yet sent */
    bool readable, writable, closed, draining;
    bool hup;                       /* epoll said the peer closed or failed */
    struct timer timer;
    uint64_t last_active_ms;
    uint64_t blocked_ms;            /* since when frames wait on a full socket; 0 = they do not */
    struct h2_stream *streams;
    struct h2_stream *spare;        /* freed streams kept for the next ones (next-linked) */
    uint32_t nspare;
    uint32_t nlinger;               /* streams lingering */
    struct h2_conn *prev, *next;
};

static void conn_run(struct h2_conn *h);
static void conn_close(struct h2_conn *h);

int h2_preface_match(const char *p, size_t n)
{
    size_t k = n < H2_PREFACE_LEN ? n : H2_PREFACE_LEN;

    if (memcmp(p, H2_PREFACE, k) != 0)
        return -1;
    return n >= H2_PREFACE_LEN ? 1 : 0;
}

static void schedule(struct h2_conn *h)
{
    loop_task_queue(&h->w->loop, &h->task);
}

/* ---- streams ---- */

/* A stream is large (its response head's slots) and a connection opens
 * one after another: a few freed ones are kept, with their queues'
 * memory, instead of going back to malloc each time. */
static struct h2_stream *stream_new(struct h2_conn *h, int32_t id)
{
    struct h2_stream *s = h->spare;

    if (s) {
        struct bytes keep[4] = {s->rq, s->hd, s->tx, s->trailers};

        h->spare = s->next;
        h->nspare--;
        memset(s, 0, offsetof(struct h2_stream, resp_slots));
        s->prev = s->next = NULL;
        s->rq = keep[0];
        s->hd = keep[1];
        s->tx = keep[2];
        s->trailers = keep[3];
    } else if (!(s = calloc(1, sizeof(*s)))) {
        return NULL;
    }
    s->h = h;
    s->id = id;
    h2_request_init(&s->req, h->l->conf->max_header_size);
    h1_response_init(&s->resp, s->resp_slots, H2_RESP_SLOTS);
    DLIST_PUSH(h->streams, s);
    return s;
}

static void stream_free(struct h2_stream *s)
{
    struct h2_conn *h = s->h;

    DLIST_REMOVE(h->streams, s);
    if (s->lingering)
        h->nlinger--;
    h2_request_free(&s->req);
    if (h->nspare < H2_SPARE_STREAMS && !h->closed) {
        bytes_clear(&s->rq);
        bytes_clear(&s->hd);
        bytes_clear(&s->tx);
        bytes_clear(&s->trailers);
        s->next = h->spare;
        h->spare = s;
        h->nspare++;
        return;
    }
    bytes_free(&s->rq);
    bytes_free(&s->hd);
    bytes_free(&s->tx);
    bytes_free(&s->trailers);
    free(s);
}

/* Give DATA bytes back to the client's windows. */
static void stream_ack(struct h2_stream *s, uint32_t n)
{
    if (n > s->unacked)
        n = s->unacked;
    if (!n)
        return;
    s->unacked -= n;
    nghttp2_session_consume(s->h->ng, s->id, n);
    schedule(s->h);
}

/* http.c is done with a stream whose response has bytes still to go: only
 * the client's window moves them now, and no exchange timer watches it, so
 * the connection's timer does (see deadline). */
static void stream_linger(struct h2_stream *s)
{
    if (!s->lingering) {
        s->lingering = true;
        s->h->nlinger++;
    }
    s->tx_active_ms = clock_now_ms();
}

/* When a lingering stream's response has not moved for client_idle (see
 * stream_linger), or UINT64_MAX when it is not lingering. */
static uint64_t linger_deadline(const struct h2_stream *s, uint64_t idle)
{
    return s->lingering && !s->failed ? s->tx_active_ms + idle : UINT64_MAX;
}

static void stream_reset(struct h2_stream *s, uint32_t code)
{
    s->failed = true;
    nghttp2_submit_rst_stream(s->h->ng, NGHTTP2_FLAG_NONE, s->id, code);
    schedule(s->h);
}

static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    struct h2_stream *s = src->ptr;
    size_t n = bytes_take(&s->tx, buf, len);

    if (n)
        s->tx_active_ms = clock_now_ms();
    if (bytes_len(&s->tx) == 0 && s->tx_end) {
        /* The body is over: END_STREAM goes on the trailers, if any. */
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (bytes_len(&s->trailers) && h2_submit_trailer_section(ng, s->id, &s->trailers))
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    } else if (n == 0) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (s->want_room && s->c && bytes_len(&s->tx) < H2_TX_MAX) {
        s->want_room = false;
        http_stream_wake(s->c, false, true);
    }
    return (ssize_t)n;
}

/* More body bytes (or its end) for a stream whose data source waits. */
static void stream_resume(struct h2_stream *s)
{
    if (s->deferred) {
        s->deferred = false;
        nghttp2_session_resume_data(s->h->ng, s->id);
    }
    schedule(s->h);
}

/* A short answer sluice gives itself (a head it could not translate). */
static void stream_answer(struct h2_stream *s, int status)
{
    char code[8], len[24];
    const char *reason = http_reason(status);
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = read_body};
    nghttp2_nv nv[3] = {
        {(uint8_t *)":status", (uint8_t *)code, 7, 0, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-length", (uint8_t *)len, 14, 0, NGHTTP2_NV_FLAG_NONE},
    };

    nv[0].valuelen = (size_t)snprintf(code, sizeof(code), "%d", status);
    bytes_clear(&s->tx);
    if (!bytes_put(&s->tx, reason, strlen(reason)) ||
        !bytes_put(&s->tx, "\n", 1)) {
        stream_reset(s, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    nv[2].valuelen = (size_t)snprintf(len, sizeof(len), "%u", bytes_len(&s->tx));
    s->tx_end = true;
    s->head_sent = true;
    s->detached = true;
    log_info("event=bad_request listener=%s client_status=%d why=\"HTTP/2 request head\"",
             s->h->l->conf->name, status);
    if (nghttp2_submit_response(s->h->ng, s->id, nv, 3, &prd) != 0)
        stream_reset(s, NGHTTP2_INTERNAL_ERROR);
    else
        stream_linger(s);
    schedule(s->h);
}

/* The head is complete: hand the stream to http.c. */
static void stream_start(struct h2_stream *s, bool end_stream)
{
    struct h2_conn *h = s->h;
    char key[WS_KEY_LEN + 1];
    int e = s->req_error;

    s->started = true;
    /* A WebSocket's extended CONNECT becomes an HTTP/1.1 upgrade, whose
     * key the HTTP/2 client does not send: sluice makes one. */
    if (!e && s->req.websocket && ws_key_new(key) < 0)
        e = -500;
    if (!e)
        e = h2_request_end(&s->req, !end_stream, s->req.websocket ? key : NULL);
    if (!e && !bytes_put(&s->rq, s->req.head, s->req.len))
        e = -500;
    if (e) {
        stream_answer(s, -e);
        return;
    }
    s->method = s->req.method && strcmp(s->req.method, "HEAD") == 0 ? H1_HEAD : H1_GET;
    s->rq_end = end_stream;
    if (!(s->c = http_stream_start(h->w, h->l, s, &h->peer, h->trusted, h->client_subject))) {
        s->detached = true;
        stream_reset(s, NGHTTP2_INTERNAL_ERROR);
    }
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2_conn *h = ud;
    struct h2_stream *s;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (h->draining) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    if (!(s = stream_new(h, f->hd.stream_id)))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, s);
    return 0;
}

/* A field of the request's trailers (a HEADERS frame after the DATA, which
 * nghttp2 has checked like any field and which ends the stream). A body
 * sent on chunked carries them as its trailer section: the last chunk goes
 * before the first of them. Fields a trailer section must not hold
 * (framing, routing) are dropped, as RFC 9110 6.5.1 allows; a body with a
 * Content-Length has no place for trailers, so they are dropped there too. */
static int request_trailer(struct h2_stream *s, const uint8_t *name, size_t namelen,
                           const uint8_t *value, size_t valuelen)
{
    static const char *const refused[] = {"content-length", "transfer-encoding", "host", "te",
                                          "trailer", NULL};

    if (!s->req.chunked || s->detached || s->failed || (namelen && name[0] == ':'))
        return 0;      /* nowhere to put it, or reset already */
    for (int i = 0; refused[i]; i++)
        if (namelen == strlen(refused[i]) && !memcmp(name, refused[i], namelen))
            return 0;
    if (s->rq_trailers + namelen + valuelen + 4 > H1_TRAILERS_MAX - 2) {
        stream_reset(s, NGHTTP2_ENHANCE_YOUR_CALM);
        return 0;
    }
    if ((!s->rq_trailers && !bytes_put(&s->rq, "0\r\n", 3)) || !bytes_put(&s->rq, name, namelen) ||
        !bytes_put(&s->rq, ": ", 2) || !bytes_put(&s->rq, value, valuelen) ||
        !bytes_put(&s->rq, "\r\n", 2))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    s->rq_trailers += (uint32_t)(namelen + valuelen + 4);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct h2_stream *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);

    if (!s || s->req_error)
        return 0;               /* a head already refused */
    if (s->started)
        return f->hd.type == NGHTTP2_HEADERS ? request_trailer(s, name, namelen, value, valuelen) : 0;
    s->req_error = h2_request_field(&s->req, name, namelen, value, valuelen);
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2_conn *h = ud;
    struct h2_stream *s;
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

    h->last_active_ms = clock_now_ms();
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    if (!(s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id)))
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && !s->started) {
        stream_start(s, end);
        return 0;
    }
    if (end && !s->rq_end) {
        s->rq_end = true;
        /* The last chunk (already written before trailers) and the end of
         * the trailer section. */
        if (s->req.chunked && !s->detached &&
            !(s->rq_trailers ? bytes_put(&s->rq, "\r\n", 2) : bytes_put(&s->rq, "0\r\n\r\n", 5)))
            stream_reset(s, NGHTTP2_INTERNAL_ERROR);
        if (s->c)
            http_stream_wake(s->c, true, false);
    }
    return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *ud)
{
    struct h2_stream *s = nghttp2_session_get_stream_user_data(ng, id);

    if (!s || s->detached || !s->started) {
        /* Nobody will read it: give the window back at once. */
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    s->unacked += (uint32_t)len;
    if (s->req.chunked) {
        /* An empty DATA frame must not become the last chunk. */
        if (len && !h2_put_chunk(&s->rq, data, len))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    } else if (!bytes_put(&s->rq, data, len)) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (s->c)
        http_stream_wake(s->c, true, false);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    struct h2_stream *s = nghttp2_session_get_stream_user_data(ng, id);
    struct http_conn *c;

    if (!s)
        return 0;
    /* Request bytes not read yet: the connection's window gets them back. */
    if (s->unacked)
        nghttp2_session_consume(ng, id, s->unacked);
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    if ((c = s->c)) {
        /* Closed with the whole response handed to nghttp2 (http.c has not
         * yet run its end): the exchange finishes normally. Else the client
         * reset it. */
        s->c = NULL;
        http_stream_abort(c, code == NGHTTP2_NO_ERROR && s->head_sent && s->tx_end);
    }
    stream_free(s);
    return 0;
}

/* A response sent in full while the client still had its request open:
 * RST_STREAM(NO_ERROR) tells it to stop sending (RFC 9113 8.1). */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    struct h2_stream *s;

    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id)) && !s->rq_end)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

/* ---- http.c's side of a stream ---- */

size_t h2_stream_read(struct h2_stream *s, char *dst, size_t room, bool *eof)
{
    size_t n = bytes_take(&s->rq, dst, room);
    size_t left = bytes_len(&s->rq);

    /* A tunnel's END_STREAM is its client's half-close, read as an EOF
     * once every byte before it was; an exchange's body ends by its
     * framing instead. */
    *eof = s->tunnel && s->rq_end && !left;
    /* Give back only DATA that has left rq: all that rq still holds stays
     * counted (the chunked framing put around DATA too, so at worst late,
     * never early; once rq is empty, everything is given back). Acking the
     * bytes read instead would count that framing as DATA: with one-byte
     * DATA frames, 6 bytes in rq each, every byte read would let in 6 more
     * and rq would grow without bound. */
    if (n && s->unacked > left)
        stream_ack(s, (uint32_t)(s->unacked - left));
    return n;
}

/* Submit the parsed head: a 1xx as an informational HEADERS, the final one
 * with a data source unless it has no body. A WebSocket's 101 (http.c has
 * checked its Sec-WebSocket-Accept, h2_stream_upgrade_accepted) is the
 * extended CONNECT's 200, the tunnel's bytes its DATA (RFC 8441 5). false:
 * cannot be carried. */
static bool submit_head(struct h2_stream *s)
{
    nghttp2_nv nv[H2_RESP_SLOTS + 1];
    char names[H2_RESP_SLOTS][64], code[8];
    size_t n = 0;
    bool upgrade = s->resp.status == 101 && s->req.websocket;
    bool final = s->resp.status >= 200 || upgrade;
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = read_body};
    int rv;

    if (s->resp.status == 101 && !upgrade)
        return false;
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7,
                           (size_t)snprintf(code, sizeof(code), "%d",
                                            upgrade ? 200 : s->resp.status),
                           NGHTTP2_NV_FLAG_NONE};
    for (uint32_t i = 0; i < s->resp.nheaders; i++) {
        const struct h1_header *f = &s->resp.headers[i];
        uint8_t *lower;

        if (h2_connection_specific(f->name, f->value))
            continue;
        /* A WebSocket's 200 (RFC 8441 5): no accept (the key was sluice's)
         * and no length (the tunnel has none). */
        if (upgrade && (h1_slice_eq_ci(f->name, "sec-websocket-accept") ||
                        h1_slice_eq_ci(f->name, "content-length")))
            continue;
        /* HTTP/2 field names are lower case; long ones are rare enough to
         * allocate for (the copy nghttp2 makes is what it keeps). */
        lower = f->name.len < sizeof(names[0]) ? (uint8_t *)names[n - 1] : malloc(f->name.len);
        if (!lower)
            goto fail;
        nv[n++] = h2_field(f, lower);
    }
    if (!final)
        rv = nghttp2_submit_headers(s->h->ng, NGHTTP2_FLAG_NONE, s->id, NULL, nv, n, NULL);
    else
        rv = nghttp2_submit_response(s->h->ng, s->id, nv, n,
                                     s->resp.body == H1_BODY_NONE && !upgrade ? NULL : &prd);
    for (size_t i = 1; i < n; i++)
        if (nv[i].name != (uint8_t *)names[i - 1])
            free(nv[i].name);
    schedule(s->h);
    return rv == 0;
fail:
    for (size_t i = 1; i < n; i++)
        if (nv[i].name != (uint8_t *)names[i - 1])
            free(nv[i].name);
    return false;
}

/* Body bytes as http.c framed them (the backend's framing, or sluice's
 * Content-Length): the data goes to tx. Returns bytes used, -1 malformed. */
static ssize_t take_body(struct h2_stream *s, const char *p, size_t n)
{
    ssize_t r = h1_body_take(&s->body, p, n, &s->tx, &s->trailers);

    if (s->body.done)
        s->tx_end = true;
    return r;
}

/* Parse head bytes gathered in hd; after a final head, what follows it is
 * body. false: the response cannot continue. */
static bool take_head(struct h2_stream *s)
{
    for (;;) {
        int r = h1_parse_response(bytes_data(&s->hd), bytes_len(&s->hd), s->method, NULL, &s->resp);

        if (r == H1_NEED_MORE)
            return bytes_len(&s->hd) < H2_RESP_HEAD_MAX;
        if (r < 0 || !submit_head(s))
            return false;
        if (s->resp.status < 200 && !(s->resp.status == 101 && s->req.websocket)) {
            s->hd.off += (uint32_t)r;      /* the next head follows */
            h1_response_init(&s->resp, s->resp_slots, H2_RESP_SLOTS);
            continue;
        }
        s->head_sent = true;
        /* A WebSocket's tunnel: every byte after the 101 is DATA, until
         * http.c detaches (the backend closed, or the tunnel ended). */
        s->tunnel = s->resp.status == 101;
        /* A half-close that came before the tunnel opened is its EOF now:
         * no new frame will wake http.c for it. */
        if (s->tunnel && s->rq_end && s->c)
            http_stream_wake(s->c, true, false);
        h1_body_init(&s->body, s->tunnel ? H1_BODY_CLOSE : s->resp.body, s->resp.content_length);
        s->tx_end = s->body.done;
        if ((uint32_t)r < bytes_len(&s->hd) &&
            take_body(s, bytes_data(&s->hd) + r, bytes_len(&s->hd) - (uint32_t)r) < 0)
            return false;
        bytes_free(&s->hd);
        return true;
    }
}

ssize_t h2_stream_write(struct h2_stream *s, const struct iovec *iov, int cnt)
{
    size_t total = 0, asked = 0;

    if (s->failed) {
        errno = EPIPE;
        return -1;
    }
    for (int i = 0; i < cnt; i++) {
        const char *p = iov[i].iov_base;
        size_t n = iov[i].iov_len;

        asked += n;
        if (!s->head_sent) {
            /* Gather head bytes; the whole piece is taken (the head is
             * bounded by http.c's buffers) and parsed at once. */
            if (!bytes_put(&s->hd, p, n) || !take_head(s))
                goto fail;
            total += n;
            continue;
        }
        if (bytes_len(&s->tx) >= H2_TX_MAX)
            break;
        size_t room = H2_TX_MAX - bytes_len(&s->tx);
        ssize_t r = take_body(s, p, n < room ? n : room);

        if (r < 0)
            goto fail;
        total += (size_t)r;
        if ((size_t)r < n)
            break;
    }
    if (s->head_sent)
        stream_resume(s);
    if (total == 0 && asked) {
        s->want_room = true;
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)total;
fail:
    log_warn("event=h2_response_failed listener=%s stream=%d", s->h->l->conf->name, s->id);
    stream_reset(s, NGHTTP2_INTERNAL_ERROR);
    errno = EPIPE;
    return -1;
}

bool h2_stream_end_with_trailers(struct h2_stream *s, const char *section, size_t len)
{
    if (s->failed || !s->head_sent || s->tx_end)
        return false;
    /* The call is over: body bytes still queued would only hold the
     * trailers behind the client's window. */
    bytes_clear(&s->tx);
    bytes_clear(&s->trailers);
    if (!bytes_put(&s->trailers, section, len))
        return false;
    s->tx_end = true;
    stream_resume(s);
    return true;
}

bool h2_stream_upgrade_accepted(const struct h2_stream *s, const struct h1_response *resp)
{
    const struct h1_header *a;

    if (!s->req.websocket)
        return true;
    a = h1_find_header(resp->headers, resp->nheaders, "sec-websocket-accept");
    if (a && ws_accept_matches(s->req.ws_key, WS_KEY_LEN, a->value.p, a->value.len))
        return true;
    log_warn("event=bad_response listener=%s stream=%d why=\"a 101 whose Sec-WebSocket-Accept "
             "does not answer the key sent\"", s->h->l->conf->name, s->id);
    return false;
}

void h2_stream_detach(struct h2_stream *s, bool complete)
{
    s->c = NULL;
    s->detached = true;
    if (!s->failed) {
        if (complete && s->head_sent && s->body.kind == H1_BODY_CLOSE)
            s->tx_end = true;           /* close-delimited: the backend closed */
        if (complete && s->head_sent && s->tx_end) {
            stream_linger(s);
            stream_resume(s);
        } else {
            stream_reset(s, NGHTTP2_INTERNAL_ERROR);
        }
    }
    /* Request bytes nobody will read: back to the client's window. */
    bytes_clear(&s->rq);
    stream_ack(s, s->unacked);
}

/* ---- the connection ---- */

static bool send_out(struct h2_conn *h)
{
    while (h->writable && bytes_len(&h->out)) {
        ssize_t r = tls_sock_send(h->tls, h->io.fd, bytes_data(&h->out), bytes_len(&h->out));

        if (r < 0 && errno == EAGAIN) {
            h->writable = false;
            if (!h->blocked_ms)
                h->blocked_ms = clock_now_ms();
            return true;
        }
        if (r <= 0)
            return false;
        h->out.off += (uint32_t)r;
        h->last_active_ms = clock_now_ms();
        h->blocked_ms = 0;
    }
    if (!bytes_len(&h->out))
        bytes_clear(&h->out);
    return true;
}

/* Frames from nghttp2, gathered and sent. false: the connection failed. */
static bool flush(struct h2_conn *h)
{
    for (;;) {
        if (!send_out(h))
            return false;
        if (bytes_len(&h->out))
            return true;            /* the socket is full: the rest waits */
        if (!h2_out_gather(h->ng, &h->out, H2_OUT_BATCH))
            return false;
        if (!bytes_len(&h->out))
            return true;
    }
}

static bool read_in(struct h2_conn *h)
{
    char buf[16384];

    for (int round = 0; round < H2_READ_ROUNDS && h->readable; round++) {
        ssize_t n = tls_sock_recv(h->tls, h->io.fd, buf, sizeof(buf));

        if (n < 0 && errno == EAGAIN) {
            h->readable = false;
            break;
        }
        if (n <= 0)
            return false;           /* the client closed or failed */
        /* A short read drained the socket: skip the recv that would only
         * say EAGAIN (new bytes bring a new edge), unless epoll also saw a
         * hang-up, whose EOF must still be read. TLS may hold more inside. */
        if (!h->tls && (size_t)n < sizeof(buf) && !h->hup)
            h->readable = false;
        h->last_active_ms = clock_now_ms();
        if (nghttp2_session_mem_recv(h->ng, (const uint8_t *)buf, (size_t)n) < 0)
            return false;           /* nghttp2 queued a GOAWAY where it could */
        if (round == H2_READ_ROUNDS - 1)
            schedule(h);
    }
    return true;
}

static uint64_t deadline(struct h2_conn *h)
{
    uint64_t idle = h->l->conf->client_idle_ms, d = h->last_active_ms + idle;

    /* A lingering response that does not move for client_idle ends then,
     * however busy the client keeps the connection (PINGs, other streams)
     * while it keeps that stream's window shut. */
    if (h->nlinger)
        for (struct h2_stream *s = h->streams; s; s = s->next)
            if (linger_deadline(s, idle) < d)
                d = linger_deadline(s, idle);
    /* A client that reads nothing for client_idle is gone, whatever it
     * still sends (PRIORITY, WINDOW_UPDATE frames cost it nothing). */
    if (h->blocked_ms && h->blocked_ms + idle < d)
        d = h->blocked_ms + idle;
    return d;
}

static void conn_run(struct h2_conn *h)
{
    if (h->closed)
        return;
    if (!read_in(h)) {
        flush(h);                   /* a GOAWAY nghttp2 queued, if the socket takes it */
        conn_close(h);
        return;
    }
    if (!flush(h)) {
        conn_close(h);
        return;
    }
    if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng) && !bytes_len(&h->out)) {
        conn_close(h);
        return;
    }
    timer_arm(&h->w->loop.timers, &h->timer, deadline(h));
}

static void task_cb(struct loop_task *t)
{
    struct h2_conn *h = (struct h2_conn *)t;

    if (h->closed)
        free(h);
    else
        conn_run(h);
}

static void conn_event(struct io *io, uint32_t events)
{
    struct h2_conn *h = (void *)((char *)io - offsetof(struct h2_conn, io));

    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        h->readable = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        h->writable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        h->hup = true;
    conn_run(h);
}

/* Idle for client_idle: no exchange in flight (those keep their own
 * timers, http.c's) and nothing read or written. */
static void conn_timer_fired(struct timer *t)
{
    struct h2_conn *h = (void *)((char *)t - offsetof(struct h2_conn, timer));
    bool busy = false;

    if (h->nlinger)
        for (struct h2_stream *s = h->streams; s; s = s->next)
            if (clock_now_ms() >= linger_deadline(s, h->l->conf->client_idle_ms)) {
                log_info("event=h2_stream_stalled listener=%s stream=%d", h->l->conf->name, s->id);
                stream_reset(s, NGHTTP2_CANCEL);
            }
    for (struct h2_stream *s = h->streams; s && !busy; s = s->next)
        busy = s->c != NULL;
    if (busy && !bytes_len(&h->out))
        h->last_active_ms = clock_now_ms();
    if (clock_now_ms() < deadline(h)) {
        timer_arm(&h->w->loop.timers, &h->timer, deadline(h));
        return;
    }
    nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
    flush(h);
    conn_close(h);
}

static void conn_close(struct h2_conn *h)
{
    struct worker *w = h->w;
    struct h2_conn *head = w->h2_conns;

    if (h->closed)
        return;
    h->closed = true;
    /* Exchanges first: they detach from their streams. */
    for (struct h2_stream *s = h->streams; s; s = s->next)
        if (s->c) {
            struct http_conn *c = s->c;
            s->c = NULL;
            http_stream_abort(c, false);
        }
    nghttp2_session_del(h->ng);
    while (h->streams)
        stream_free(h->streams);
    while (h->spare) {
        struct h2_stream *s = h->spare;

        h->spare = s->next;
        bytes_free(&s->rq);
        bytes_free(&s->hd);
        bytes_free(&s->tx);
        bytes_free(&s->trailers);
        free(s);
    }
    timer_cancel(&w->loop.timers, &h->timer);
    /* close_notify before the FIN (RFC 9112 9.8, as from NGINX): HTTP/2
     * frames its streams' ends, so a cut one never looks whole for it. */
    if (h->tls)
        tls_shutdown(h->tls);
    tls_free(h->tls);
    loop_del(&w->loop, &h->io);      /* first: see tcp.c's io_close */
    close(h->io.fd);
    free(h->client_subject);
    bytes_free(&h->out);
    DLIST_REMOVE(head, h);
    w->h2_conns = head;
    w->nsessions--;
    atomic_fetch_sub_explicit(&h->l->connections_active, 1, memory_order_relaxed);
    loop_task_queue(&w->loop, &h->task);     /* frees it */
    worker_connection_ended(w);
}

bool h2_conn_start(struct worker *w, struct listener *l, int fd, SSL *tls, const struct addr *peer,
                   bool trusted, char *client_subject, const char *early, size_t n)
{
    struct h2_conn *h = calloc(1, sizeof(*h)), *head;
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, l->conf->max_header_size},
        /* WebSockets over HTTP/2 (RFC 8441): offered on every http2
         * listener, as any route may lead to a WebSocket backend; a route
         * or pool that cannot take one answers the request itself. */
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    int rv = -1;

    if (!h || nghttp2_session_callbacks_new(&cbs) || nghttp2_option_new(&opt))
        goto fail;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    /* The windows open as http.c takes request bytes, not as they arrive. */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_settings(opt, 32);
    rv = nghttp2_session_server_new2(&h->ng, cbs, h, opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    /* The connection's window as large as it goes (as NGINX sets it): each
     * stream's own window (H2_WINDOW) bounds what waits here for it. With a
     * connection window of one stream's size, one upload whose backend does
     * not take it held all of it, and stopped every other stream's body. */
    if (rv || nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) ||
        nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_MAX_WINDOW_SIZE))
        goto fail;
    loop_task_init(&h->task, task_cb);
    h->w = w;
    h->l = l;
    h->peer = *peer;
    h->trusted = trusted;
    h->tls = tls;
    h->client_subject = client_subject;
    h->io.fd = fd;
    h->io.cb = conn_event;
    h->last_active_ms = clock_now_ms();
    h->draining = w->draining != 0;
    timer_init(&h->timer, conn_timer_fired);
    if (loop_add(&w->loop, &h->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0)
        goto fail;
    head = w->h2_conns;
    DLIST_PUSH(head, h);
    w->h2_conns = head;
    w->nsessions++;
    if (h->draining)
        nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
    h->readable = true;
    h->writable = true;
    if (nghttp2_session_mem_recv(h->ng, (const uint8_t *)early, n) < 0) {
        flush(h);
        conn_close(h);
        return true;
    }
    conn_run(h);
    return true;
fail:
    if (h && h->ng)
        nghttp2_session_del(h->ng);
    free(h);
    tls_free(tls);
    close(fd);
    free(client_subject);
    return false;
}

void h2_drain(struct worker *w)
{
    for (struct h2_conn *h = w->h2_conns; h; h = h->next) {
        if (h->draining)
            continue;
        h->draining = true;
        nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(h->ng), NGHTTP2_NO_ERROR,
                              NULL, 0);
        schedule(h);
    }
}

void h2_close_all(struct worker *w)
{
    while (w->h2_conns)
        conn_close(w->h2_conns);
}
