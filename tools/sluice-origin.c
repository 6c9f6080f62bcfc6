/*
 * sluice-origin: a small, fast HTTP/1.1 origin (plus TCP and UDP echo) for sluice's
 * demo, integration tests and benchmarks. Usage and paths: docs/sluice-origin.md.
 *
 * It must never be the bottleneck in a benchmark, so: one edge-triggered epoll loop
 * per thread (SO_REUSEPORT listeners when --threads > 1), non-blocking sockets,
 * keep-alive and pipelining, per-connection buffers reused across requests (no
 * malloc per request), each batch of responses leaves in one write()/writev(), and
 * /bytes/N streams from a static pattern so gigabytes cost no memory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define IN_CAP     (16 * 1024)       /* http input buffer; grows once, to IN_MAX, for big heads */
#define HEAD_MAX   (64 * 1024)       /* largest request head (and trailer section) accepted */
#define IN_MAX     (HEAD_MAX + 1024) /* > HEAD_MAX so an oversized head is seen and refused */
#define ECHO_CAP   (64 * 1024)       /* tcp-echo buffer: reading stops while it is full */
#define OUT_HIGH   (64 * 1024)       /* stop parsing pipelined requests above this backlog */
#define CHUNK_LINE 4096              /* longest chunk-size line (with extensions) */
#define PAT_CHUNK  (256 * 1024)      /* /bytes/N: most bytes handed to one writev */
#define LINGER_MS  2000              /* after our FIN, wait this long for the peer's */
#define UDP_BATCH  32
#define UDP_MAX    65536

enum mode { MODE_HTTP, MODE_TCP_ECHO, MODE_UDP_ECHO };

/* A growable byte buffer; owned by whatever struct holds it. */
struct buf { char *p; size_t len, cap; };

/* Set once in main() before any thread starts; read-only afterwards. */
static struct {
    enum mode mode;
    int threads;
    bool expect_proxy, udp_tag;
    int udp_flood_ms;     /* --udp-flood: echo each datagram again and again this long */
    const char *name;
    size_t name_len;
    struct buf name_json; /* "NAME", JSON-escaped, quotes included */
    struct buf name_nl;   /* NAME "\n": the default body */
    struct buf udp_prefix; /* NAME ":" for --udp-tag */
} cfg;

static char pattern[PAT_CHUNK + 26]; /* /bytes/N body: byte i is 'a' + i % 26 */
static atomic_bool healthy = true;   /* flipped by POST /health/fail and /health/ok */

enum conn_state {
    S_PROXY,  /* --expect-proxy: deciding whether a PROXY header starts the stream */
    S_MAIN,   /* http: reading a request head; tcp-echo: echoing */
    S_BODY,   /* http: consuming a request body */
    S_DELAY,  /* http: /delay/MS; the response is due at ->deadline */
    S_LINGER, /* http: last response sent, our write side shut; discard until EOF */
};
enum body_kind { BODY_NONE, BODY_LENGTH, BODY_CHUNKED };
enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER };
enum route { R_NAME, R_BAD, R_DELAY, R_STATUS, R_BYTES, R_ECHO, R_UPLOAD,
             R_HEALTH, R_HEALTH_FAIL, R_HEALTH_OK, R_STATS };

struct sha256 { uint32_t h[8]; uint64_t len; unsigned char blk[64]; size_t n; };

/* One client connection. Owned by its worker (listed in worker->conns); freed by
 * conn_close(), the only place its fd is closed. */
struct conn {
    int fd;
    enum conn_state state;
    struct worker *w;
    struct conn *prev, *next;   /* worker->conns */
    struct conn *tprev, *tnext; /* worker's timer list, when in_timer */
    uint64_t deadline;          /* CLOCK_MONOTONIC ms */
    bool in_timer;
    /* Edge-triggered epoll: remember readiness until a syscall says EAGAIN. */
    bool can_read, can_write, rd_eof;
    bool rdhup;                 /* the peer's FIN is queued behind the data */
    bool closing;               /* http: close once the output is flushed */
    char *in;                   /* unparsed input is in[in_start, in_len) */
    size_t in_start, in_len, in_cap, in_max, scan;
    struct buf out;             /* responses not yet written, from out_off */
    size_t out_off;
    uint64_t stream_left, stream_pos; /* /bytes/N bytes still to send after out */
    /* The request being handled. */
    enum route route;
    uint64_t arg;               /* the number in /delay/, /status/, /bytes/ */
    bool http10, keep_alive, head_req, post;
    enum body_kind body;
    enum chunk_state chunk;
    uint64_t body_left, body_len, trailer_len;
    struct sha256 sha;
    struct buf json;            /* /echo: the JSON answer, built while parsing the head */
};

/* One event loop and its listening socket. Counters are written by this worker
 * only (relaxed store) and summed by whichever worker answers /stats; the alignment
 * keeps workers off each other's cache lines. */
struct worker {
    _Alignas(64) pthread_t tid;
    int lfd, epfd, efd;         /* listening socket, epoll, eventfd that says "stop" */
    struct conn *conns;
    struct conn *t_head, *t_tail; /* pending timers, ordered by deadline */
    _Atomic uint64_t requests, accepted, closed;
};
static struct worker *workers;

#define BUMP(x) atomic_store_explicit(&(x), atomic_load_explicit(&(x), memory_order_relaxed) + 1, \
                                      memory_order_relaxed)
#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

/* ---------- small helpers ---------- */

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fputs("sluice-origin: out of memory\n", stderr);
        abort();
    }
    return p;
}

static char *buf_room(struct buf *b, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap - b->len < n)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    return b->p + b->len;
}

static void buf_put(struct buf *b, const void *s, size_t n)
{
    memcpy(buf_room(b, n), s, n);
    b->len += n;
}

static void buf_str(struct buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_u64(struct buf *b, uint64_t v)
{
    char t[20];
    int i = 20;
    do t[--i] = (char)('0' + v % 10); while (v /= 10);
    buf_put(b, t + i, (size_t)(20 - i));
}

/* A JSON string, quotes included. Bytes outside printable ASCII become \u00XX, so the
 * output is valid JSON whatever the client sent (non-ASCII reads as Latin-1). */
static void buf_json(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *o = buf_room(b, n * 6 + 2);
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            *o++ = '\\';
            *o++ = (char)ch;
        } else if (ch >= 0x20 && ch < 0x7f) {
            *o++ = (char)ch;
        } else {
            memcpy(o, "\\u00", 4);
            o[4] = hex[ch >> 4];
            o[5] = hex[ch & 15];
            o += 6;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Writes a whole line to stdout with one write(2), so lines from several threads
 * never interleave. */
static void say(const char *line)
{
    ssize_t r = write(STDOUT_FILENO, line, strlen(line));
    (void)r;
}

/* ---------- SHA-256 (FIPS 180-4), for /echo's body_sha256 ---------- */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t *h, const unsigned char *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++)
        w[i] = w[i - 16] + w[i - 7] +
               (ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3)) +
               (ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10));
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    uint32_t v[8] = { a, b, c, d, e, f, g, k };
    for (int i = 0; i < 8; i++)
        h[i] += v[i];
}

static void sha256_init(struct sha256 *s)
{
    static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memcpy(s->h, iv, sizeof iv);
    s->len = 0;
    s->n = 0;
}

static void sha256_update(struct sha256 *s, const unsigned char *p, size_t n)
{
    s->len += n;
    if (s->n) {
        size_t k = 64 - s->n < n ? 64 - s->n : n;
        memcpy(s->blk + s->n, p, k);
        s->n += k, p += k, n -= k;
        if (s->n < 64)
            return;
        sha256_block(s->h, s->blk);
        s->n = 0;
    }
    for (; n >= 64; p += 64, n -= 64)
        sha256_block(s->h, p);
    memcpy(s->blk, p, n);
    s->n = n;
}

static void sha256_hex(struct sha256 *s, char out[65])
{
    unsigned char pad[72] = { 0x80 };
    uint64_t bits = s->len * 8;
    size_t padlen = (s->n < 56 ? 56 : 120) - s->n;
    for (int i = 0; i < 8; i++)
        pad[padlen + (size_t)i] = (unsigned char)(bits >> (56 - 8 * i));
    sha256_update(s, pad, padlen + 8);
    for (int i = 0; i < 8; i++)
        snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

/* ---------- connections and timers ---------- */

static void timer_del(struct conn *c)
{
    struct worker *w = c->w;
    if (!c->in_timer)
        return;
    if (c->tprev) c->tprev->tnext = c->tnext; else w->t_head = c->tnext;
    if (c->tnext) c->tnext->tprev = c->tprev; else w->t_tail = c->tprev;
    c->tprev = c->tnext = NULL;
    c->in_timer = false;
}

static void timer_set(struct conn *c, uint64_t delay)
{
    struct worker *w = c->w;
    timer_del(c);
    c->deadline = now_ms() + delay;
    /* Walk from the tail: deadlines mostly arrive in order, so this is O(1) in practice. */
    struct conn *at = w->t_tail;
    while (at && at->deadline > c->deadline)
        at = at->tprev;
    c->tprev = at;
    c->tnext = at ? at->tnext : w->t_head;
    if (c->tnext) c->tnext->tprev = c; else w->t_tail = c;
    if (at) at->tnext = c; else w->t_head = c;
    c->in_timer = true;
}

static void conn_close(struct conn *c)
{
    struct worker *w = c->w;
    timer_del(c);
    if (c->prev) c->prev->next = c->next; else w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    close(c->fd); /* also removes it from epoll */
    free(c->in);
    free(c->out.p);
    free(c->json.p);
    free(c);
    BUMP(w->closed);
}

/* Reads once into the input buffer. Returns -1 to close, 0 if nothing came, 1 if
 * data or EOF came. */
static int conn_read(struct conn *c)
{
    if (c->in_start == c->in_len)
        c->in_start = c->in_len = 0;
    if (c->in_len == c->in_cap) {
        if (c->in_start) {
            memmove(c->in, c->in + c->in_start, c->in_len - c->in_start);
            c->in_len -= c->in_start;
            c->in_start = 0;
        } else if (c->in_cap < c->in_max) {
            c->in_cap = c->in_max;
            c->in = xrealloc(c->in, c->in_cap);
        } else {
            return -1; /* the parsers refuse anything this big before we get here */
        }
    }
    size_t room = c->in_cap - c->in_len;
    ssize_t n = read(c->fd, c->in + c->in_len, room);
    if (n > 0) {
        c->in_len += (size_t)n;
        /* A short read drained the socket and epoll will report the next arrival,
         * unless a FIN came in the same edge: then read on until read() says 0. */
        if ((size_t)n < room && !c->rdhup)
            c->can_read = false;
        return 1;
    }
    if (n == 0) {
        c->rd_eof = true;
        c->can_read = false;
        return 1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->can_read = false;
        return 0;
    }
    return errno == EINTR ? 1 : -1;
}

/* ---------- PROXY protocol (only with --expect-proxy) ---------- */

static void log_proxy(int af, const void *src, const void *dst, unsigned sp, unsigned dp, int v)
{
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN], line[200];
    inet_ntop(af, src, s, sizeof s);
    inet_ntop(af, dst, d, sizeof d);
    if (af == AF_INET6)
        snprintf(line, sizeof line, "proxy [%s]:%u [%s]:%u v%d\n", s, sp, d, dp, v);
    else
        snprintf(line, sizeof line, "proxy %s:%u %s:%u v%d\n", s, sp, d, dp, v);
    say(line);
}

/* If the stream starts with a PROXY header, logs and strips it. Returns 1 when done
 * (stripped, or the stream does not start with one), 0 when more bytes are needed to
 * tell, -1 for a malformed header. */
static int proxy_strip(struct conn *c)
{
    static const unsigned char sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                           0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };
    const unsigned char *p = (const unsigned char *)c->in + c->in_start;
    size_t n = c->in_len - c->in_start;
    if (n == 0)
        return c->rd_eof ? 1 : 0;

    if (!memcmp(p, "PROXY ", n < 6 ? n : 6)) {
        if (n < 6)
            return c->rd_eof ? 1 : 0; /* only a prefix, then EOF: plain data */
        const unsigned char *nl = memchr(p, '\n', n < 108 ? n : 108); /* v1 max is 107 */
        if (!nl)
            return n >= 108 || c->rd_eof ? -1 : 0;
        size_t len = (size_t)(nl - p) + 1;
        if (nl[-1] != '\r')
            return -1;
        char line[108], proto[8], src[64], dst[64];
        unsigned sp, dp;
        unsigned char sa[16], da[16];
        memcpy(line, p, len - 2);
        line[len - 2] = '\0';
        if (!strncmp(line, "PROXY UNKNOWN", 13)) {
            say("proxy UNKNOWN v1\n");
        } else {
            int af;
            if (sscanf(line, "PROXY %7s %63s %63s %u %u", proto, src, dst, &sp, &dp) != 5 ||
                sp > 65535 || dp > 65535)
                return -1;
            if (!strcmp(proto, "TCP4")) af = AF_INET;
            else if (!strcmp(proto, "TCP6")) af = AF_INET6;
            else return -1;
            if (inet_pton(af, src, sa) != 1 || inet_pton(af, dst, da) != 1)
                return -1;
            log_proxy(af, sa, da, sp, dp, 1);
        }
        c->in_start += len;
        return 1;
    }

    if (!memcmp(p, sig, n < 12 ? n : 12)) {
        if (n < 12)
            return c->rd_eof ? 1 : 0;
        if (n < 16)
            return c->rd_eof ? -1 : 0;
        size_t len = 16 + ((size_t)p[14] << 8 | p[15]);
        if (len > c->in_max || (p[12] >> 4) != 2)
            return -1;
        if (n < len)
            return c->rd_eof ? -1 : 0;
        const unsigned char *a = p + 16;
        if ((p[12] & 15) == 0)
            say("proxy LOCAL v2\n");
        else if ((p[13] >> 4) == 1 && len >= 16 + 12)
            log_proxy(AF_INET, a, a + 4, (unsigned)(a[8] << 8 | a[9]), (unsigned)(a[10] << 8 | a[11]), 2);
        else if ((p[13] >> 4) == 2 && len >= 16 + 36)
            log_proxy(AF_INET6, a, a + 16, (unsigned)(a[32] << 8 | a[33]), (unsigned)(a[34] << 8 | a[35]), 2);
        else
            say("proxy UNKNOWN v2\n");
        c->in_start += len;
        return 1;
    }
    return 1;
}

/* ---------- tcp-echo ---------- */

static void echo_drive(struct conn *c)
{
    for (;;) {
        bool progress = false;
        if (c->state == S_PROXY) {
            int r = proxy_strip(c);
            if (r < 0) { conn_close(c); return; }
            if (r > 0)
                c->state = S_MAIN;
        }
        size_t pend = c->in_len - c->in_start;
        if (c->state == S_MAIN && pend && c->can_write) {
            ssize_t n = write(c->fd, c->in + c->in_start, pend);
            if (n >= 0) {
                c->in_start += (size_t)n;
                progress = true;
                if ((size_t)n < pend)
                    c->can_write = false;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->can_write = false;
            } else if (errno != EINTR) { conn_close(c); return; }
        }
        if (c->state == S_MAIN && c->rd_eof && c->in_start == c->in_len) {
            /* The client is done sending and has all its bytes back: pass the EOF on. */
            shutdown(c->fd, SHUT_WR);
            conn_close(c);
            return;
        }
        /* Backpressure: read only while the buffer has room, i.e. the writes keep up. */
        if (!c->rd_eof && c->can_read && c->in_len - c->in_start < c->in_cap) {
            int r = conn_read(c);
            if (r < 0) { conn_close(c); return; }
            progress |= r > 0;
        }
        if (!progress)
            return;
    }
}

/* ---------- HTTP ---------- */

static const char *reason(unsigned code)
{
    static const struct { unsigned code; const char *text; } t[] = {
        { 200, "OK" }, { 100, "Continue" }, { 103, "Early Hints" }, { 201, "Created" },
        { 202, "Accepted" }, { 204, "No Content" }, { 301, "Moved Permanently" }, { 302, "Found" },
        { 304, "Not Modified" }, { 307, "Temporary Redirect" }, { 400, "Bad Request" },
        { 401, "Unauthorized" }, { 403, "Forbidden" }, { 404, "Not Found" },
        { 405, "Method Not Allowed" }, { 429, "Too Many Requests" },
        { 431, "Request Header Fields Too Large" }, { 500, "Internal Server Error" },
        { 502, "Bad Gateway" }, { 503, "Service Unavailable" }, { 504, "Gateway Timeout" } };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].code == code)
            return t[i].text;
    return "Status";
}

/* Appends a status line and headers. 204 and 304 carry no body and, as RFC 9110
 * requires for 204, no Content-Length. */
static void put_head(struct conn *c, unsigned code, const char *ctype, uint64_t clen)
{
    struct buf *o = &c->out;
    buf_str(o, "HTTP/1.1 ");
    buf_u64(o, code);
    buf_put(o, " ", 1);
    buf_str(o, reason(code));
    if (code != 204 && code != 304) {
        buf_str(o, "\r\nContent-Length: ");
        buf_u64(o, clen);
    }
    buf_str(o, "\r\nX-Origin: ");
    buf_put(o, cfg.name, cfg.name_len);
    buf_str(o, "\r\nContent-Type: ");
    buf_str(o, ctype);
    if (!c->keep_alive)
        buf_str(o, "\r\nConnection: close");
    else if (c->http10)
        buf_str(o, "\r\nConnection: keep-alive");
    buf_str(o, "\r\n\r\n");
    BUMP(c->w->requests);
}

static void reply(struct conn *c, unsigned code, const char *ctype, const char *body, size_t len)
{
    put_head(c, code, ctype, len);
    if (!c->head_req && code != 204 && code != 304)
        buf_put(&c->out, body, len);
}

/* A request we cannot frame or parse: answer and close, as we cannot find the next one. */
static void http_fail(struct conn *c, unsigned code)
{
    c->keep_alive = false;
    c->head_req = false;
    reply(c, code, "text/plain", code == 431 ? "headers too large\n" : "bad request\n",
          code == 431 ? 18 : 12);
    c->closing = true;
}

static bool tchar(unsigned char ch)
{
    /* RFC 9110 token characters */
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_token(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!tchar((unsigned char)s[i]))
            return false;
    return n > 0;
}

static bool parse_u64(const char *s, size_t n, uint64_t *v)
{
    if (n == 0 || n > 18)
        return false;
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (uint64_t)(s[i] - '0');
    }
    return true;
}

/* Does the comma-separated list s contain tok (case-insensitive)? */
static bool has_token(const char *s, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i < n;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
            i++;
        size_t j = i;
        while (j < n && s[j] != ',')
            j++;
        size_t e = j;
        while (e > i && (s[e - 1] == ' ' || s[e - 1] == '\t'))
            e--;
        if (e - i == tl && !strncasecmp(s + i, tok, tl))
            return true;
        i = j;
    }
    return false;
}

/* Is the last coding in a Transfer-Encoding value "chunked"? */
static bool last_is_chunked(const char *s, size_t n)
{
    const char *comma = memrchr(s, ',', n);
    const char *t = comma ? comma + 1 : s;
    return has_token(t, (size_t)(s + n - t), "chunked");
}

static bool path_is(const char *p, size_t n, const char *lit)
{
    return n == strlen(lit) && !memcmp(p, lit, n);
}

/* "/echo" matches "/echo" and "/echo/anything". */
static bool path_under(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n >= l && !memcmp(p, lit, l) && (n == l || p[l] == '/');
}

static enum route route_for(struct conn *c, const char *t, size_t n)
{
    const char *end = t + n, *path = t;
    if (*t != '/') { /* absolute-form, as a proxy may send: skip scheme and authority */
        const char *s = memmem(t, n, "://", 3);
        path = s ? memchr(s + 3, '/', (size_t)(end - s - 3)) : NULL;
        if (!path)
            path = end;
    }
    const char *q = memchr(path, '?', (size_t)(end - path));
    size_t pl = (size_t)((q ? q : end) - path);
    if (path_is(path, pl, "/health")) return R_HEALTH;
    if (path_is(path, pl, "/health/fail")) return R_HEALTH_FAIL;
    if (path_is(path, pl, "/health/ok")) return R_HEALTH_OK;
    if (path_is(path, pl, "/stats")) return R_STATS;
    if (path_under(path, pl, "/echo")) return R_ECHO;
    if (path_under(path, pl, "/upload")) return R_UPLOAD;
    static const struct { const char *pfx; enum route r; } num[] = {
        { "/delay/", R_DELAY }, { "/status/", R_STATUS }, { "/bytes/", R_BYTES } };
    for (size_t i = 0; i < sizeof num / sizeof num[0]; i++) {
        size_t l = strlen(num[i].pfx);
        if (pl >= l && !memcmp(path, num[i].pfx, l))
            return parse_u64(path + l, pl - l, &c->arg) ? num[i].r : R_BAD;
    }
    return R_NAME;
}

/* Parses the head p[0, len), which ends with an empty line. Returns -1 if malformed. */
static int parse_head(struct conn *c, const char *p, size_t len)
{
    const char *end = p + len, *nl = memchr(p, '\n', len);
    const char *le = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
    const char *sp1 = memchr(p, ' ', (size_t)(le - p));
    if (!sp1 || !is_token(p, (size_t)(sp1 - p)))
        return -1;
    const char *t = sp1 + 1, *sp2 = memchr(t, ' ', (size_t)(le - t));
    if (!sp2 || sp2 == t || le - sp2 != 9 || memcmp(sp2 + 1, "HTTP/1.", 7) ||
        (sp2[8] != '0' && sp2[8] != '1'))
        return -1;
    for (const char *q = t; q < sp2; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return -1;
    size_t ml = (size_t)(sp1 - p), tl = (size_t)(sp2 - t);
    c->http10 = sp2[8] == '0';
    c->head_req = ml == 4 && !memcmp(p, "HEAD", 4);
    c->post = ml == 4 && !memcmp(p, "POST", 4);
    c->route = route_for(c, t, tl);
    bool echo = c->route == R_ECHO;
    if (echo) {
        struct buf *j = &c->json;
        j->len = 0;
        buf_str(j, "{\"name\":");
        buf_str(j, cfg.name_json.p);
        buf_str(j, ",\"method\":");
        buf_json(j, p, ml);
        buf_str(j, ",\"target\":");
        buf_json(j, t, tl);
        buf_str(j, c->http10 ? ",\"version\":\"HTTP/1.0\",\"headers\":["
                             : ",\"version\":\"HTTP/1.1\",\"headers\":[");
    }

    bool want_close = false, want_ka = false, te = false, chunked = false, has_cl = false;
    bool expect100 = false, first = true;
    uint64_t cl = 0;
    for (const char *l = nl + 1; l < end; l = nl + 1) {
        nl = memchr(l, '\n', (size_t)(end - l)); /* found: the head ends with one */
        le = nl > l && nl[-1] == '\r' ? nl - 1 : nl;
        if (le == l)
            break; /* the empty line */
        const char *colon = memchr(l, ':', (size_t)(le - l));
        if (!colon || !is_token(l, (size_t)(colon - l))) /* also refuses obs-fold */
            return -1;
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *q = v; q < ve; q++)
            if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
                return -1;
        size_t nlen = (size_t)(colon - l), vl = (size_t)(ve - v);
        if (nlen == 14 && !strncasecmp(l, "content-length", 14)) {
            uint64_t x;
            if (!parse_u64(v, vl, &x) || (has_cl && x != cl))
                return -1;
            has_cl = true;
            cl = x;
        } else if (nlen == 17 && !strncasecmp(l, "transfer-encoding", 17)) {
            te = true;
            chunked = last_is_chunked(v, vl);
        } else if (nlen == 10 && !strncasecmp(l, "connection", 10)) {
            want_close |= has_token(v, vl, "close");
            want_ka |= has_token(v, vl, "keep-alive");
        } else if (nlen == 6 && !strncasecmp(l, "expect", 6)) {
            expect100 = has_token(v, vl, "100-continue");
        }
        if (echo) {
            buf_str(&c->json, first ? "[" : ",[");
            buf_json(&c->json, l, nlen);
            buf_put(&c->json, ",", 1);
            buf_json(&c->json, v, vl);
            buf_put(&c->json, "]", 1);
            first = false;
        }
    }
    if (echo)
        buf_str(&c->json, "],");

    c->keep_alive = c->http10 ? want_ka && !want_close : !want_close;
    /* Both framings at once is how request smuggling starts: refuse (RFC 9112 6.1). */
    if (te && (!chunked || has_cl))
        return -1;
    c->body = te ? BODY_CHUNKED : has_cl && cl ? BODY_LENGTH : BODY_NONE;
    c->chunk = CH_SIZE;
    c->body_left = cl;
    c->body_len = 0;
    c->trailer_len = 0;
    if (echo)
        sha256_init(&c->sha);
    if (expect100 && !c->http10 && c->body != BODY_NONE)
        buf_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
}

static void body_data(struct conn *c, size_t n)
{
    if (c->route == R_ECHO)
        sha256_update(&c->sha, (const unsigned char *)c->in + c->in_start, n);
    c->body_len += n;
    c->in_start += n;
    c->body_left -= n;
}

/* Consumes body bytes from the input buffer. Returns -1 if malformed, 0 if it needs
 * more input, 1 after progress, 2 when the body is complete. */
static int body_consume(struct conn *c)
{
    int progress = 0;
    for (;;) {
        const char *p = c->in + c->in_start;
        size_t avail = c->in_len - c->in_start;
        if (c->body == BODY_NONE)
            return 2;
        if (c->body == BODY_LENGTH || c->chunk == CH_DATA) {
            if (c->body_left == 0) {
                if (c->body == BODY_LENGTH)
                    return 2;
                c->chunk = CH_DATA_END;
                continue;
            }
            if (!avail)
                return progress;
            body_data(c, avail < c->body_left ? avail : (size_t)c->body_left);
            progress = 1;
            continue;
        }
        /* Chunked framing lines: need a whole line in the buffer. */
        const char *nl = memchr(p, '\n', avail);
        if (!nl) {
            size_t limit = c->chunk == CH_TRAILER ? HEAD_MAX : CHUNK_LINE;
            return avail > limit || c->rd_eof ? -1 : progress;
        }
        size_t ll = (size_t)(nl - p) + 1;
        size_t vl = nl > p && nl[-1] == '\r' ? ll - 2 : ll - 1;
        c->in_start += ll;
        progress = 1;
        if (c->chunk == CH_DATA_END) {
            if (vl != 0)
                return -1;
            c->chunk = CH_SIZE;
        } else if (c->chunk == CH_SIZE) {
            uint64_t size = 0;
            size_t i = 0;
            for (; i < vl && i < 16; i++) {
                char ch = p[i];
                int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                      : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
                if (d < 0)
                    break;
                size = size << 4 | (uint64_t)d;
            }
            /* Digits, then nothing, or chunk extensions we ignore. */
            if (i == 0 || i == 16 || (i < vl && p[i] != ';' && p[i] != ' ' && p[i] != '\t'))
                return -1;
            c->body_left = size;
            c->chunk = size ? CH_DATA : CH_TRAILER;
        } else { /* CH_TRAILER: trailer fields until the empty line */
            c->trailer_len += ll;
            if (vl == 0) {
                c->body = BODY_NONE;
                return 2;
            }
            if (c->trailer_len > HEAD_MAX)
                return -1;
        }
    }
}

/* The request is complete (head and body): write its response. */
static void respond(struct conn *c)
{
    struct buf *j = &c->json;
    char hex[65], tmp[640]; /* fits any answer built here: --name is at most 64 bytes */
    int n;
    switch (c->route) {
    case R_NAME:
    case R_DELAY:
        reply(c, 200, "text/plain", cfg.name_nl.p, cfg.name_nl.len);
        break;
    case R_BAD:
        reply(c, 400, "text/plain", "bad request\n", 12);
        break;
    case R_STATUS:
        if (c->arg < 100 || c->arg > 999 || c->arg == 101) {
            reply(c, 400, "text/plain", "bad status\n", 11);
            break;
        }
        if (c->arg < 200) { /* 1xx is interim: send it, then a 200 (not to HTTP/1.0) */
            if (!c->http10)
                buf_put(&c->out, tmp, (size_t)snprintf(tmp, sizeof tmp, "HTTP/1.1 %u %s\r\n\r\n",
                                                       (unsigned)c->arg, reason((unsigned)c->arg)));
            c->arg = 200;
        }
        reply(c, (unsigned)c->arg, "text/plain", cfg.name_nl.p, cfg.name_nl.len);
        break;
    case R_BYTES:
        put_head(c, 200, "application/octet-stream", c->arg);
        if (!c->head_req) {
            c->stream_left = c->arg;
            c->stream_pos = 0;
        }
        break;
    case R_ECHO:
        buf_str(j, "\"body_length\":");
        buf_u64(j, c->body_len);
        sha256_hex(&c->sha, hex);
        buf_str(j, ",\"body_sha256\":\"");
        buf_put(j, hex, 64);
        buf_str(j, "\"}\n");
        reply(c, 200, "application/json", j->p, j->len);
        break;
    case R_UPLOAD:
        n = snprintf(tmp, sizeof tmp, "{\"name\":%s,\"body_length\":%" PRIu64 "}\n",
                     cfg.name_json.p, c->body_len);
        reply(c, 200, "application/json", tmp, (size_t)n);
        break;
    case R_HEALTH:
        if (atomic_load(&healthy))
            reply(c, 200, "text/plain", "ok\n", 3);
        else
            reply(c, 503, "text/plain", "fail\n", 5);
        break;
    case R_HEALTH_FAIL:
    case R_HEALTH_OK:
        if (!c->post) {
            reply(c, 405, "text/plain", "use POST\n", 9);
            break;
        }
        atomic_store(&healthy, c->route == R_HEALTH_OK);
        reply(c, 200, "text/plain", "ok\n", 3);
        break;
    case R_STATS: {
        uint64_t req = 1, acc = 0, cl = 0; /* req counts this request too */
        for (int i = 0; i < cfg.threads; i++) {
            req += LOAD(workers[i].requests);
            acc += LOAD(workers[i].accepted);
            cl += LOAD(workers[i].closed);
        }
        n = snprintf(tmp, sizeof tmp, "{\"name\":%s,\"requests\":%" PRIu64 ",\"connections\":%" PRIu64
                     ",\"active_connections\":%" PRIu64 ",\"healthy\":%s}\n", cfg.name_json.p, req, acc,
                     acc > cl ? acc - cl : 0, atomic_load(&healthy) ? "true" : "false");
        reply(c, 200, "application/json", tmp, (size_t)n);
        break;
    }
    }
    if (!c->keep_alive)
        c->closing = true;
}

/* Finds the end of a request head: the index just past its empty line, or 0 if it is
 * not all here yet. *scan remembers where to resume, so a slowly arriving head is not
 * rescanned from the start each time. */
static size_t head_end(const char *p, size_t n, size_t *scan)
{
    for (size_t i = *scan; i < n;) {
        const char *nl = memchr(p + i, '\n', n - i);
        if (!nl)
            break;
        size_t k = (size_t)(nl - p) + 1;
        if (k < n && p[k] == '\n')
            return k + 1;
        if (k + 1 < n && p[k] == '\r' && p[k + 1] == '\n')
            return k + 2;
        if (k == n || (k + 1 == n && p[k] == '\r')) {
            *scan = k - 1; /* cannot tell yet: look at this '\n' again next time */
            return 0;
        }
        i = k;
    }
    *scan = n;
    return 0;
}

/* Makes progress on buffered input. Returns 1 if it did something, 0 if it needs
 * more input. */
static int http_process(struct conn *c)
{
    if (c->state == S_PROXY) {
        int r = proxy_strip(c);
        if (r < 0)
            http_fail(c, 400);
        else if (r > 0)
            c->state = S_MAIN;
        return r != 0;
    }
    if (c->state == S_MAIN) {
        /* Blank lines before a request line are allowed (RFC 9112 2.2). */
        while (c->in_start < c->in_len && (c->in[c->in_start] == '\r' || c->in[c->in_start] == '\n'))
            c->in_start++, c->scan = 0;
        const char *p = c->in + c->in_start;
        size_t avail = c->in_len - c->in_start;
        size_t hl = head_end(p, avail, &c->scan);
        if (!hl) {
            if (avail > HEAD_MAX)
                http_fail(c, 431);
            return avail > HEAD_MAX;
        }
        c->scan = 0;
        c->in_start += hl;
        if (hl > HEAD_MAX) {
            http_fail(c, 431);
        } else if (parse_head(c, p, hl) < 0) {
            http_fail(c, 400);
        } else {
            c->state = S_BODY;
        }
        return 1;
    }
    if (c->state == S_BODY) {
        int r = body_consume(c);
        if (r < 0) {
            http_fail(c, 400);
            return 1;
        }
        if (r < 2)
            return r;
        c->state = S_MAIN;
        if (c->route == R_DELAY && c->arg > 0) {
            c->state = S_DELAY; /* respond() runs from timers_run() */
            timer_set(c, c->arg);
        } else {
            respond(c);
        }
        return 1;
    }
    return 0;
}

/* Writes pending output: the out buffer, then /bytes/N pattern. Returns -1 to close,
 * 0 if nothing was written, 1 if something was. */
static int http_flush(struct conn *c)
{
    struct iovec iov[2];
    int cnt = 0;
    size_t pend = c->out.len - c->out_off, total = pend;
    if (pend)
        iov[cnt++] = (struct iovec){ c->out.p + c->out_off, pend };
    if (c->stream_left) {
        size_t n = c->stream_left < PAT_CHUNK ? (size_t)c->stream_left : PAT_CHUNK;
        iov[cnt++] = (struct iovec){ pattern + c->stream_pos % 26, n };
        total += n;
    }
    ssize_t n = cnt == 1 ? write(c->fd, iov[0].iov_base, iov[0].iov_len) : writev(c->fd, iov, cnt);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->can_write = false;
            return 0;
        }
        return errno == EINTR ? 0 : -1;
    }
    if ((size_t)n < total)
        c->can_write = false; /* the socket buffer is full; wait for EPOLLOUT */
    size_t m = (size_t)n < pend ? (size_t)n : pend;
    c->out_off += m;
    c->stream_left -= (size_t)n - m;
    c->stream_pos += (size_t)n - m;
    if (c->out_off == c->out.len)
        c->out_off = c->out.len = 0;
    return 1;
}

static void http_drive(struct conn *c)
{
    for (;;) {
        bool progress = false;
        bool has_out = c->out.len > c->out_off || c->stream_left;
        if (has_out && c->can_write) {
            int r = http_flush(c);
            if (r < 0) { conn_close(c); return; }
            progress = r > 0;
            has_out = c->out.len > c->out_off || c->stream_left;
        }
        if (!has_out && c->closing && c->state != S_LINGER) {
            if (c->rd_eof) { conn_close(c); return; }
            /* Shut our side, then read until the peer's FIN: closing with unread
             * input would send an RST that can destroy the response in flight. */
            shutdown(c->fd, SHUT_WR);
            c->state = S_LINGER;
            timer_set(c, LINGER_MS);
        }
        bool want_input = false;
        if (c->state == S_LINGER) {
            c->in_start = c->in_len = 0; /* discard */
            want_input = true;
        } else if (!c->closing && !c->stream_left && c->state != S_DELAY &&
                   c->out.len - c->out_off < OUT_HIGH) {
            if (http_process(c))
                continue;
            want_input = true;
        }
        if (want_input) {
            if (c->rd_eof) {
                if (c->state == S_LINGER) { conn_close(c); return; }
                c->closing = true; /* a partial request can never complete now */
                progress = true;
            } else if (c->can_read) {
                int r = conn_read(c);
                if (r < 0) { conn_close(c); return; }
                progress |= r > 0;
            }
        }
        if (!progress)
            return;
    }
}

/* ---------- event loops ---------- */

static void timers_run(struct worker *w)
{
    uint64_t now = w->t_head ? now_ms() : 0;
    while (w->t_head && w->t_head->deadline <= now) {
        struct conn *c = w->t_head;
        timer_del(c);
        if (c->state == S_LINGER) { /* the peer never closed: give up on it */
            conn_close(c);
            continue;
        }
        c->state = S_MAIN; /* S_DELAY: the response is due */
        respond(c);
        http_drive(c);
    }
}

static void accept_all(struct worker *w)
{
    for (;;) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                perror("sluice-origin: accept");
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = xrealloc(NULL, sizeof *c);
        memset(c, 0, sizeof *c);
        c->fd = fd;
        c->w = w;
        c->in_cap = cfg.mode == MODE_TCP_ECHO ? ECHO_CAP : IN_CAP;
        c->in_max = cfg.mode == MODE_TCP_ECHO ? ECHO_CAP : IN_MAX;
        c->in = xrealloc(NULL, c->in_cap);
        c->state = cfg.expect_proxy ? S_PROXY : S_MAIN;
        c->can_write = true;
        c->next = w->conns;
        if (w->conns)
            w->conns->prev = c;
        w->conns = c;
        BUMP(w->accepted);
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            conn_close(c);
    }
}

static void tcp_loop(struct worker *w)
{
    struct epoll_event evs[256];
    for (;;) {
        int timeout = -1;
        if (w->t_head) {
            uint64_t now = now_ms();
            uint64_t d = w->t_head->deadline > now ? w->t_head->deadline - now : 0;
            timeout = d > 60000 ? 60000 : (int)d; /* a huge /delay/N must not overflow */
        }
        int n = epoll_wait(w->epfd, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &w->lfd) {
                accept_all(w);
            } else if (ptr == &w->efd) {
                return;
            } else {
                struct conn *c = ptr;
                uint32_t e = evs[i].events;
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    c->can_read = true;
                if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    c->rdhup = true;
                if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
                    c->can_write = true;
                if (cfg.mode == MODE_TCP_ECHO)
                    echo_drive(c);
                else
                    http_drive(c);
            }
        }
        timers_run(w);
    }
}

/* --udp-flood: a backend that answers far faster than a proxy can relay
 * (a datagram per sendmmsg slot, against the proxy's recv and send), for
 * tests of fairness. Sends copies of msgs[0] for cfg.udp_flood_ms. */
static void udp_flood(int fd, struct mmsghdr *msgs)
{
    static _Thread_local struct mmsghdr copies[UDP_BATCH];
    uint64_t end = now_ms() + (uint64_t)cfg.udp_flood_ms;

    for (int i = 0; i < UDP_BATCH; i++)
        copies[i].msg_hdr = msgs[0].msg_hdr;
    while (now_ms() < end)
        sendmmsg(fd, copies, UDP_BATCH, MSG_DONTWAIT);
}

/* udp-echo: batches of datagrams in with recvmmsg, back out with sendmmsg. */
static void udp_loop(struct worker *w)
{
    static _Thread_local struct mmsghdr msgs[UDP_BATCH];
    static _Thread_local struct iovec iov[UDP_BATCH][2];
    static _Thread_local struct sockaddr_storage addrs[UDP_BATCH];
    char *bufs = xrealloc(NULL, (size_t)UDP_BATCH * UDP_MAX);
    struct epoll_event ev;
    for (;;) {
        if (epoll_wait(w->epfd, &ev, 1, -1) < 1)
            continue;
        if (ev.data.ptr == &w->efd)
            break;
        for (;;) {
            for (int i = 0; i < UDP_BATCH; i++) {
                iov[i][0] = (struct iovec){ bufs + (size_t)i * UDP_MAX, UDP_MAX };
                msgs[i].msg_hdr = (struct msghdr){ .msg_name = &addrs[i], .msg_namelen = sizeof addrs[i],
                                                   .msg_iov = iov[i], .msg_iovlen = 1 };
            }
            int n = recvmmsg(w->lfd, msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
            if (n <= 0) {
                if (n < 0 && errno == EINTR)
                    continue;
                break; /* EAGAIN: drained */
            }
            for (int i = 0; i < n; i++) {
                size_t len = msgs[i].msg_len;
                if (cfg.udp_tag) {
                    iov[i][1] = (struct iovec){ iov[i][0].iov_base, len };
                    iov[i][0] = (struct iovec){ cfg.udp_prefix.p, cfg.udp_prefix.len };
                    msgs[i].msg_hdr.msg_iovlen = 2;
                } else {
                    iov[i][0].iov_len = len;
                }
            }
            if (cfg.udp_flood_ms) {
                udp_flood(w->lfd, msgs);
                continue;
            }
            /* UDP may drop: a datagram the kernel refuses (full buffer, too big) is skipped. */
            for (int k = 0; k < n;) {
                int s = sendmmsg(w->lfd, msgs + k, (unsigned)(n - k), MSG_DONTWAIT);
                k += s > 0 ? s : 1;
            }
        }
    }
    free(bufs);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (cfg.mode == MODE_UDP_ECHO)
        udp_loop(w);
    else
        tcp_loop(w);
    while (w->conns)
        conn_close(w->conns);
    return NULL;
}

/* ---------- startup ---------- */

static void die(const char *msg, const char *arg)
{
    fprintf(stderr, "sluice-origin: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    exit(2);
}

static void usage(void)
{
    fputs("usage: sluice-origin --listen HOST:PORT|[V6]:PORT [--name NAME] [--threads N]\n"
          "                     [--mode http|tcp-echo|udp-echo] [--expect-proxy] [--udp-tag]\n"
          "                     [--udp-flood MS]\n"
          "Prints \"listening HOST:PORT\" once bound (port 0 picks a free one).\n"
          "HTTP paths: / (NAME), /delay/MS, /status/CODE, /bytes/N, /echo, /upload,\n"
          "/health, POST /health/fail, POST /health/ok, /stats. See docs/sluice-origin.md.\n",
          stderr);
}

static void resolve(const char *spec, int type, struct sockaddr_storage *ss, socklen_t *sl)
{
    char host[256];
    const char *port;
    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - spec - 1) >= sizeof host)
            die("bad --listen address (want [V6]:PORT)", spec);
        memcpy(host, spec + 1, (size_t)(rb - spec - 1));
        host[rb - spec - 1] = '\0';
        port = rb + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon || (size_t)(colon - spec) >= sizeof host)
            die("bad --listen address (want HOST:PORT)", spec);
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }
    struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = type }, *res;
    bool any = !host[0] || !strcmp(host, "*");
    int err = getaddrinfo(any ? NULL : host, port, &hints, &res);
    if (err)
        die("cannot resolve --listen address", gai_strerror(err));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sl = res->ai_addrlen;
    freeaddrinfo(res);
}

static int open_listener(struct sockaddr_storage *ss, socklen_t sl, int type, const char *spec)
{
    int fd = socket(ss->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        die("socket", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* Only with several threads: then each has its own socket on the same port and
     * the kernel spreads connections. With one, a port clash should fail loudly. */
    if (cfg.threads > 1 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        die("SO_REUSEPORT", strerror(errno));
    if (type == SOCK_DGRAM) {
        int sz = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    if (bind(fd, (struct sockaddr *)ss, sl) < 0 || (type == SOCK_STREAM && listen(fd, 4096) < 0)) {
        fprintf(stderr, "sluice-origin: cannot listen on %s: %s\n", spec, strerror(errno));
        exit(2);
    }
    /* Port 0: the other threads must bind the port the kernel just picked. */
    getsockname(fd, (struct sockaddr *)ss, &sl);
    return fd;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' }, { "name", required_argument, NULL, 'n' },
        { "threads", required_argument, NULL, 't' }, { "mode", required_argument, NULL, 'm' },
        { "expect-proxy", no_argument, NULL, 'p' }, { "udp-tag", no_argument, NULL, 'u' },
        { "udp-flood", required_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
    const char *listen_at = "127.0.0.1:0";
    cfg.name = "origin";
    cfg.threads = 1;
    for (int o; (o = getopt_long(argc, argv, "l:n:t:m:puf:h", opts, NULL)) != -1;) {
        switch (o) {
        case 'l': listen_at = optarg; break;
        case 'n': cfg.name = optarg; break;
        case 't':
            cfg.threads = atoi(optarg);
            if (cfg.threads < 1 || cfg.threads > 256)
                die("--threads wants 1..256", optarg);
            break;
        case 'm':
            if (!strcmp(optarg, "http")) cfg.mode = MODE_HTTP;
            else if (!strcmp(optarg, "tcp-echo")) cfg.mode = MODE_TCP_ECHO;
            else if (!strcmp(optarg, "udp-echo")) cfg.mode = MODE_UDP_ECHO;
            else die("--mode wants http, tcp-echo or udp-echo", optarg);
            break;
        case 'p': cfg.expect_proxy = true; break;
        case 'u': cfg.udp_tag = true; break;
        case 'f':
            cfg.udp_flood_ms = atoi(optarg);
            if (cfg.udp_flood_ms < 1 || cfg.udp_flood_ms > 60000)
                die("--udp-flood wants 1..60000 (ms)", optarg);
            break;
        case 'h': usage(); return 0;
        default: usage(); return 2;
        }
    }
    if (optind < argc) {
        usage();
        return 2;
    }
    /* The name goes into a response header: keep it to visible ASCII. */
    cfg.name_len = strlen(cfg.name);
    for (const char *s = cfg.name; *s; s++)
        if (*s <= 0x20 || *s >= 0x7f || cfg.name_len > 64)
            die("--name must be 1..64 visible ASCII characters", cfg.name);
    if (!cfg.name_len)
        die("--name must be 1..64 visible ASCII characters", cfg.name);
    buf_json(&cfg.name_json, cfg.name, cfg.name_len);
    buf_put(&cfg.name_json, "", 1); /* NUL-terminated too, for snprintf's %s */
    buf_str(&cfg.name_nl, cfg.name);
    buf_str(&cfg.name_nl, "\n");
    buf_str(&cfg.udp_prefix, cfg.name);
    buf_str(&cfg.udp_prefix, ":");
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (char)('a' + i % 26);

    /* Writes to a closed peer return EPIPE instead of killing us. SIGTERM/SIGINT are
     * blocked in every thread and taken with sigwait() below, for a clean exit. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) { /* many connections */
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    int type = cfg.mode == MODE_UDP_ECHO ? SOCK_DGRAM : SOCK_STREAM;
    struct sockaddr_storage ss;
    socklen_t sl;
    resolve(listen_at, type, &ss, &sl);
    workers = aligned_alloc(64, sizeof *workers * (size_t)cfg.threads);
    if (!workers)
        die("out of memory", NULL);
    memset(workers, 0, sizeof *workers * (size_t)cfg.threads);
    for (int i = 0; i < cfg.threads; i++)
        workers[i].lfd = open_listener(&ss, sl, type, listen_at);

    /* Tests start us on port 0 and read the real port from this line. */
    char host[INET6_ADDRSTRLEN];
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    bool v6 = ss.ss_family == AF_INET6;
    inet_ntop(ss.ss_family, v6 ? (void *)&a6->sin6_addr : (void *)&a4->sin_addr, host, sizeof host);
    printf("listening %s%s%s:%u\n", v6 ? "[" : "", host, v6 ? "]" : "",
           ntohs(v6 ? a6->sin6_port : a4->sin_port));
    fflush(stdout);

    for (int i = 0; i < cfg.threads; i++) {
        struct worker *w = &workers[i];
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->epfd < 0 || w->efd < 0)
            die("epoll/eventfd", strerror(errno));
        /* Edge-triggered for TCP: accept_all() drains the backlog. UDP is level-triggered. */
        struct epoll_event ev = { .events = EPOLLIN | (type == SOCK_STREAM ? EPOLLET : 0),
                                  .data.ptr = &w->lfd };
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->lfd, &ev);
        ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &w->efd };
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->efd, &ev);
        if (pthread_create(&w->tid, NULL, worker_main, w))
            die("pthread_create", NULL);
    }

    int sig;
    sigwait(&sigs, &sig);
    for (int i = 0; i < cfg.threads; i++) {
        uint64_t one = 1;
        ssize_t r = write(workers[i].efd, &one, sizeof one);
        (void)r;
    }
    for (int i = 0; i < cfg.threads; i++) {
        pthread_join(workers[i].tid, NULL);
        close(workers[i].lfd);
        close(workers[i].epfd);
        close(workers[i].efd);
    }
    free(workers);
    free(cfg.name_json.p);
    free(cfg.name_nl.p);
    free(cfg.udp_prefix.p);
    return 0;
}
