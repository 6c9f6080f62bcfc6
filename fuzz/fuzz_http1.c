/* libFuzzer target: the HTTP/1 parser on arbitrary bytes, as a request head,
 * as a response head and as a chunked body.
 *
 * Invariants checked beyond "no crash, no sanitizer report":
 *  - a head length is <= size and <= max_head; nheaders <= the slots lent;
 *    every slice (method, target, path, query, host, names, values, reason)
 *    lies inside the head, and an absent one is (NULL, 0);
 *  - incremental parsing agrees with one-shot parsing: the input fed as a
 *    prefix (split at a data-derived point, copied to a buffer that is freed
 *    before the next call, so a kept pointer trips ASan) then whole gives the
 *    same head length and fields when one-shot succeeds, 0 when it needs
 *    more, and never success when it fails; every prefix of a valid head
 *    gives 0;
 *  - the chunked scanner gives the same result split at a data-derived point,
 *    and decoding ends where scanning does
 *    (and byte by byte, for short inputs) as in one piece, never consumes
 *    more than it was given, and a chunked request body is scanned too.
 *
 * Build and run by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *       -std=gnu11 -D_GNU_SOURCE -Isrc fuzz/fuzz_http1.c src/proto/http1*.c -o /tmp/fh
 *   cp -r fuzz/corpus/http1 /tmp/corpus && /tmp/fh -max_total_time=120 /tmp/corpus
 * (scripts/fuzz.sh does the same on a scratch copy of fuzz/corpus/http1.) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http1.h"

#include "fuzz.h"

#define SLOTS 64

/* Small limits now and then, so 414/431 paths are reached by short inputs. */
static const struct h1_limits small_limits = { .max_request_line = 40, .max_head = 200,
                                               .max_headers = 4 };

static void slice_in(struct h1_slice s, const char *base, size_t n)
{
    if (!s.p) {
        FUZZ_CHECK(s.len == 0);
        return;
    }
    FUZZ_CHECK(s.p >= base && s.p <= base + n && s.len <= (size_t)(base + n - s.p));
}

static long off(struct h1_slice s, const char *base)
{
    return s.p ? (long)(s.p - base) : -1L;
}

static void check_request(const struct h1_request *req, int r, const char *base, size_t size,
                          const struct h1_limits *lim)
{
    FUZZ_CHECK(r <= (int)size);
    if (r <= 0)
        return;
    FUZZ_CHECK((uint32_t)r <= lim->max_head);
    FUZZ_CHECK(req->head_len == (uint32_t)r);
    FUZZ_CHECK(req->nheaders <= req->max_headers && req->nheaders <= lim->max_headers);
    FUZZ_CHECK(req->minor == 0 || req->minor == 1);
    FUZZ_CHECK(req->body != H1_BODY_CLOSE);
    FUZZ_CHECK((req->body == H1_BODY_LENGTH) == (req->content_length > 0));
    FUZZ_CHECK(req->method.len > 0 && req->target.len > 0);
    slice_in(req->method, base, (size_t)r);
    slice_in(req->target, base, (size_t)r);
    slice_in(req->path, base, (size_t)r);
    slice_in(req->query, base, (size_t)r);
    slice_in(req->host, base, (size_t)r);
    for (uint32_t i = 0; i < req->nheaders; i++) {
        FUZZ_CHECK(req->headers[i].name.len > 0);
        slice_in(req->headers[i].name, base, (size_t)r);
        slice_in(req->headers[i].value, base, (size_t)r);
        /* the helpers on whatever arrived */
        (void)h1_has_token(req->headers[i].value, "close");
    }
    if (req->host.p) {
        struct h1_slice h;
        int port;
        h1_split_host(req->host, &h, &port);
        slice_in(h, base, (size_t)r);
        FUZZ_CHECK(port >= -1 && port <= 65535);
    }
    if (req->minor == 1)
        FUZZ_CHECK(h1_find_header(req->headers, req->nheaders, "host") != NULL);
}

static void same_request(const struct h1_request *a, const char *ba, const struct h1_request *b,
                         const char *bb)
{
    FUZZ_CHECK(a->head_len == b->head_len && a->nheaders == b->nheaders);
    FUZZ_CHECK(a->method_id == b->method_id && a->form == b->form && a->minor == b->minor);
    FUZZ_CHECK(a->body == b->body && a->content_length == b->content_length);
    FUZZ_CHECK(a->keep_alive == b->keep_alive && a->upgrade == b->upgrade &&
               a->expect_continue == b->expect_continue);
    FUZZ_CHECK(off(a->target, ba) == off(b->target, bb) && a->target.len == b->target.len);
    FUZZ_CHECK(off(a->path, ba) == off(b->path, bb) && a->path.len == b->path.len);
    FUZZ_CHECK(off(a->query, ba) == off(b->query, bb) && a->query.len == b->query.len);
    FUZZ_CHECK(off(a->host, ba) == off(b->host, bb) && a->host.len == b->host.len);
    for (uint32_t i = 0; i < a->nheaders; i++) {
        FUZZ_CHECK(off(a->headers[i].name, ba) == off(b->headers[i].name, bb));
        FUZZ_CHECK(off(a->headers[i].value, ba) == off(b->headers[i].value, bb));
        FUZZ_CHECK(a->headers[i].value.len == b->headers[i].value.len);
    }
}

static void check_response(const struct h1_response *resp, int r, const char *base, size_t size,
                           const struct h1_limits *lim)
{
    FUZZ_CHECK(r <= (int)size);
    FUZZ_CHECK(r >= 0 || r == H1_BAD_RESPONSE);
    if (r <= 0)
        return;
    FUZZ_CHECK((uint32_t)r <= lim->max_head && resp->head_len == (uint32_t)r);
    FUZZ_CHECK(resp->status >= 100 && resp->status <= 599);
    FUZZ_CHECK(resp->nheaders <= resp->max_headers && resp->nheaders <= lim->max_headers);
    FUZZ_CHECK(!(resp->body == H1_BODY_CLOSE && resp->keep_alive));
    slice_in(resp->reason, base, (size_t)r);
    for (uint32_t i = 0; i < resp->nheaders; i++) {
        slice_in(resp->headers[i].name, base, (size_t)r);
        slice_in(resp->headers[i].value, base, (size_t)r);
    }
}

/* Copy of data[0..n) in its own allocation (n may be 0). */
static char *copy(const uint8_t *data, size_t n)
{
    char *b = malloc(n ? n : 1);
    FUZZ_CHECK(b != NULL);
    memcpy(b, data, n);
    return b;
}

static void fuzz_request(const uint8_t *data, size_t size, const struct h1_limits *lim, size_t cut)
{
    static struct h1_header s1[SLOTS], s2[SLOTS];
    struct h1_request one, inc;
    const char *base = (const char *)data;

    h1_request_init(&one, s1, SLOTS);
    int r = h1_parse_request(base, size, lim, &one);
    check_request(&one, r, base, size, lim);
    FUZZ_CHECK(r > 0 || one.error != NULL || r == 0);
    FUZZ_CHECK(r >= 0 || one.error != NULL);

    /* prefix, then the whole, from moving buffers */
    h1_request_init(&inc, s2, SLOTS);
    char *a = copy(data, cut);
    int ra = h1_parse_request(a, cut, lim, &inc);
    free(a);
    if (r > 0 && cut < (size_t)r)
        FUZZ_CHECK(ra == 0);
    if (ra == 0) {
        char *b = copy(data, size);
        int rb = h1_parse_request(b, size, lim, &inc);
        check_request(&inc, rb, b, size, lim);
        if (r > 0) {
            FUZZ_CHECK(rb == r);
            same_request(&one, base, &inc, b);
        } else if (r == 0) {
            FUZZ_CHECK(rb == 0);
        } else {
            FUZZ_CHECK(rb <= 0);
        }
        free(b);
    } else if (r > 0) {
        FUZZ_CHECK(ra == r);   /* the cut was past the head */
    }

    /* A chunked request body: scan what follows the head. */
    if (r > 0 && one.body == H1_BODY_CHUNKED) {
        struct h1_chunked c;
        bool done;
        h1_chunked_init(&c);
        ssize_t n = h1_chunked_scan(&c, base + r, size - (size_t)r, &done);
        FUZZ_CHECK(n >= -1 && n <= (ssize_t)(size - (size_t)r));
    }
}

static void fuzz_response(const uint8_t *data, size_t size, enum h1_method m,
                          const struct h1_limits *lim, size_t cut)
{
    static struct h1_header s1[SLOTS], s2[SLOTS];
    struct h1_response one, inc;
    const char *base = (const char *)data;

    h1_response_init(&one, s1, SLOTS);
    int r = h1_parse_response(base, size, m, lim, &one);
    check_response(&one, r, base, size, lim);

    h1_response_init(&inc, s2, SLOTS);
    char *a = copy(data, cut);
    int ra = h1_parse_response(a, cut, m, lim, &inc);
    free(a);
    if (r > 0 && cut < (size_t)r)
        FUZZ_CHECK(ra == 0);
    if (ra == 0) {
        char *b = copy(data, size);
        int rb = h1_parse_response(b, size, m, lim, &inc);
        check_response(&inc, rb, b, size, lim);
        if (r > 0) {
            FUZZ_CHECK(rb == r);
            FUZZ_CHECK(inc.status == one.status && inc.body == one.body &&
                       inc.content_length == one.content_length &&
                       inc.keep_alive == one.keep_alive && inc.tunnel == one.tunnel &&
                       inc.nheaders == one.nheaders && inc.reason.len == one.reason.len);
        } else if (r == 0) {
            FUZZ_CHECK(rb == 0);
        } else {
            FUZZ_CHECK(rb <= 0);
        }
        free(b);
    }
}

static void fuzz_chunked(const uint8_t *data, size_t size, size_t cut)
{
    const char *p = (const char *)data;
    struct h1_chunked c;
    bool done1, done2;

    h1_chunked_init(&c);
    ssize_t r1 = h1_chunked_scan(&c, p, size, &done1);
    FUZZ_CHECK(r1 >= -1 && r1 <= (ssize_t)size);
    if (r1 >= 0 && !done1)
        FUZZ_CHECK(r1 == (ssize_t)size);

    /* two pieces */
    h1_chunked_init(&c);
    ssize_t ra = h1_chunked_scan(&c, p, cut, &done2), total = ra;
    if (ra >= 0 && !done2) {
        FUZZ_CHECK(ra == (ssize_t)cut);
        ssize_t rb = h1_chunked_scan(&c, p + cut, size - cut, &done2);
        total = rb < 0 ? -1 : ra + rb;
    }
    FUZZ_CHECK(total == r1 && (r1 < 0 || done1 == done2));

    /* byte by byte, for short inputs */
    if (size <= 512) {
        ssize_t t = 0;
        bool d = false;
        h1_chunked_init(&c);
        for (size_t i = 0; i < size && !d; i++) {
            ssize_t r = h1_chunked_scan(&c, p + i, 1, &d);
            if (r < 0) {
                t = -1;
                break;
            }
            t += r;
        }
        FUZZ_CHECK(t == r1 && (r1 < 0 || d == done1));
    }

    /* decoding (for HTTP/2 clients) ends where scanning ends, and its data
     * and trailer bytes are pieces of what it consumed */
    {
        ssize_t t = 0;
        bool d = false;
        size_t data_bytes = 0;
        h1_chunked_init(&c);
        while (!d && (size_t)t < size) {
            struct h1_slice piece;
            bool tr;
            ssize_t r = h1_chunked_decode(&c, p + t, size - (size_t)t, &piece, &tr, &d);
            if (r < 0) {
                t = -1;
                break;
            }
            if (r == 0)
                break;
            FUZZ_CHECK(piece.len == 0 || (piece.p == p + t && piece.len == (uint32_t)r && !tr));
            data_bytes += piece.len;
            t += r;
        }
        FUZZ_CHECK(t == r1 && (r1 < 0 || d == done1));
        FUZZ_CHECK(r1 < 0 || data_bytes <= (size_t)r1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The split point and the knobs come from the data itself, from its end,
     * so that the start of the input still looks like a message. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    size_t cut = size ? h % (size + 1) : 0;
    const struct h1_limits *lim = (h >> 24) % 8 == 0 ? &small_limits : &h1_limits_default;
    enum h1_method m = (enum h1_method)((h >> 16) % (H1_OTHER + 1));

    fuzz_request(data, size, lim, cut);
    fuzz_response(data, size, m, lim, cut);
    fuzz_chunked(data, size, cut);
    return 0;
}
