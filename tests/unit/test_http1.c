/* HTTP/1.1 parser: valid and hostile requests and responses, every smuggling
 * shape we refuse, limits, incremental parsing (byte by byte, with the buffer
 * moving between calls), and chunked bodies split at every byte. */
#include "proto/http1.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define NSLOTS 128
static struct h1_header slots[NSLOTS];

#define OK 1   /* in a table: valid; the head ends after the first CRLFCRLF */

struct msg {
    const char *p;
    size_t n;
    int want;
    const char *name;
};

#define M(lit, want) { lit, sizeof(lit) - 1, want, #want ": " lit }

static size_t head_end(const char *p, size_t n)
{
    const char *e = memmem(p, n, "\r\n\r\n", 4);
    return e ? (size_t)(e - p) + 4 : 0;
}

static int preq(const char *p, size_t n, const struct h1_limits *lim, struct h1_request *req)
{
    h1_request_init(req, slots, NSLOTS);
    return h1_parse_request(p, n, lim, req);
}

static int presp(const char *p, size_t n, enum h1_method m, struct h1_response *resp)
{
    h1_response_init(resp, slots, NSLOTS);
    return h1_parse_response(p, n, m, NULL, resp);
}

static bool slice_is(struct h1_slice s, const char *lit)
{
    return s.p && s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

#define CHECK_SLICE(s, lit) do { \
    CHECK(slice_is((s), (lit))); \
    if (!slice_is((s), (lit))) \
        fprintf(stderr, "   got \"%.*s\", want \"%s\"\n", (int)(s).len, (s).p ? (s).p : "", (lit)); \
} while (0)

static void note_case(int failed_before, const char *name)
{
    if (test_failed != failed_before)
        fprintf(stderr, "   in case: %s\n", name);
}

/* ---- request table ---------------------------------------------------------- */

static const struct msg requests[] = {
    /* valid */
    M("GET / HTTP/1.1\r\nHost: a\r\n\r\n", OK),
    M("GET / HTTP/1.0\r\n\r\n", OK),
    M("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\n\r\n", OK),
    M("GET /?? HTTP/1.1\r\nHost: a\r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nHost: \r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nHost:a\r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nHost: \t a \t \r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nhOsT: a\r\nX-Empty:\r\nX-Spaces:   \r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nHost: a\r\nX-Obs: caf\xc3\xa9\r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nHost: a\r\nX-Tab: a\tb\r\n\r\n", OK),
    M("GET /%7euser/'!$&()*+,;=:@-._~\"<>\\^`{|} HTTP/1.1\r\nHost: a\r\n\r\n", OK),
    M("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", OK),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", OK),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n", OK),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n", OK),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", OK),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n", OK),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", OK),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", OK),
    M("POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", OK),
    M("GET http://example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n", OK),
    M("GET HTTPS://Example.com HTTP/1.1\r\nHost: Example.com\r\n\r\n", OK),
    M("GET http://example.com:81?q HTTP/1.1\r\nHost: example.com:81\r\n\r\n", OK),
    M("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", OK),
    M("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n", OK),
    M("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 0\r\n\r\n", OK),
    M("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", OK),
    M("PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n", OK),
    M("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n", -400),  /* "*" is for OPTIONS only */
    M("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", OK),
    M("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx", OK),
    M("GET / HTTP/1.1\r\nHost: a\r\nHost2: b\r\nContent-Length2: 5\r\nX: Content-Length: 5\r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nHost: xn--bcher-kva.example\r\n\r\n", OK),
    M("GET / HTTP/1.1\r\nHost: a%41b\r\n\r\n", OK),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\t\r\n\r\n", OK),
    M("GET http://a/ HTTP/1.1\r\nHost: \r\n\r\n", OK),   /* the authority is the host */
    M("get / HTTP/1.1\r\nHost: a\r\n\r\n", OK),            /* some method, not GET */

    /* request smuggling: framing ambiguity */
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5a\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 00000000000000000005\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n", -501),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n", -501),
    M("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n foo\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\n Host: a\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\n\tHost: a\r\n\r\n", -400),
    M("POST / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n", -400),
    M("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 5\r\n\r\n", -400),
    M("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nTransfer-Encoding: chunked\r\n\r\n", -400),

    /* line endings and control bytes */
    M("GET / HTTP/1.1\nHost: a\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\n\n", -400),
    M("GET / HTTP/1.1\n\n", -400),
    M("GET / HTTP/1.1\rHost: a\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nX\r: b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\n\rX", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nX\0: b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f" "b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b" "b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nX\x80: b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nX y: b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nX/y: b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\n\"X\": b\r\n\r\n", -400),
    M("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", -400),

    /* request line */
    M("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", -400),
    M(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET /\r\nHost: a\r\n\r\n", -400),
    M("GET / \r\nHost: a\r\n\r\n", -400),
    M("GET\r\n\r\n", -400),
    M("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET x HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET * HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET http:/a/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET http://a:99999/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("CONNECT http://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("CONNECT a:443/x HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("OPTIONS ** HTTP/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET / http/1.1\r\nHost: a\r\n\r\n", -400),
    M("GET / HTTP/1.1x\r\nHost: a\r\n\r\n", -400),
    M("GET / HTTP/11\r\nHost: a\r\n\r\n", -400),
    M("GET / HTTP/1.10\r\nHost: a\r\n\r\n", -400),
    M("GET / HTTP/1\r\nHost: a\r\n\r\n", -400),
    M("GET / HTTP/1.1.1\r\nHost: a\r\n\r\n", -400),
    M("GET / HTTP/1.2\r\nHost: a\r\n\r\n", -505),
    M("GET / HTTP/2.0\r\nHost: a\r\n\r\n", -505),
    M("GET / HTTP/0.9\r\nHost: a\r\n\r\n", -505),
    M("GET / HTTP/9.9\r\n\r\n", -505),
    M("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", -505),
    M("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", -400),

    /* Host */
    M("GET / HTTP/1.1\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nX: a\r\n\r\n", -400),
    M("GET http://a/ HTTP/1.1\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", -400),
    M("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a:\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a:x\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", -400),
    M("GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", -400),
};

/* The same fields, however the bytes arrive. */
static void req_same(const struct h1_request *a, const struct h1_request *b, const char *base_a,
                     const char *base_b)
{
#define OFF(r, base, f) ((r)->f.p ? (long)((r)->f.p - (base)) : -1L)
    CHECK_EQ_INT(a->head_len, b->head_len);
    CHECK_EQ_INT(a->nheaders, b->nheaders);
    CHECK_EQ_INT(a->method_id, b->method_id);
    CHECK_EQ_INT(a->form, b->form);
    CHECK_EQ_INT(a->minor, b->minor);
    CHECK_EQ_INT(a->body, b->body);
    CHECK_EQ_INT(a->content_length, b->content_length);
    CHECK_EQ_INT(a->keep_alive, b->keep_alive);
    CHECK_EQ_INT(a->upgrade, b->upgrade);
    CHECK_EQ_INT(a->expect_continue, b->expect_continue);
    CHECK_EQ_INT(OFF(a, base_a, target), OFF(b, base_b, target));
    CHECK_EQ_INT(a->target.len, b->target.len);
    CHECK_EQ_INT(OFF(a, base_a, host), OFF(b, base_b, host));
    CHECK_EQ_INT(a->host.len, b->host.len);
    CHECK_EQ_INT(OFF(a, base_a, query), OFF(b, base_b, query));
    CHECK_EQ_INT(OFF(a, base_a, path), OFF(b, base_b, path));
#undef OFF
}

/* Feed m one byte more at a time, each time from a fresh copy of the buffer
 * (so a parser that kept a pointer across calls trips ASan). Every prefix
 * before the end of the head must give 0; the first non-zero result must be
 * the one-shot result with the same fields. */
static void req_incremental(const struct msg *m, int want, const struct h1_request *one,
                            const struct h1_limits *lim)
{
    static struct h1_header inc_slots[NSLOTS];
    struct h1_request req;
    char *prev = NULL;
    int r = 0;
    size_t i;

    h1_request_init(&req, inc_slots, NSLOTS);
    for (i = 1; i <= m->n; i++) {
        char *b = malloc(i);
        memcpy(b, m->p, i);
        r = h1_parse_request(b, i, lim, &req);
        free(prev);
        prev = b;
        if (r != 0)
            break;
    }
    CHECK_EQ_INT(r, want);
    if (want > 0) {
        CHECK_EQ_INT(i, (size_t)want);
        req_same(&req, one, prev, m->p);
        for (uint32_t k = 0; k < req.nheaders; k++) {
            CHECK_EQ_INT(req.headers[k].name.p - prev, one->headers[k].name.p - m->p);
            CHECK_EQ_INT(req.headers[k].value.len, one->headers[k].value.len);
        }
    }
    free(prev);

    /* One-shot parses of every prefix agree: 0 until the end (for errors,
     * 0 until the same error shows). */
    bool prefix_ok = true;
    for (i = 0; i < m->n && prefix_ok; i++) {
        struct h1_request pr;
        h1_request_init(&pr, slots + 64, 64);
        int pr_r = h1_parse_request(m->p, i, lim, &pr);
        if (want > 0)
            prefix_ok = (i < (size_t)want) ? pr_r == 0 : pr_r == want;
        else
            prefix_ok = pr_r == 0 || pr_r == want;
    }
    CHECK(prefix_ok);
}

static void test_request_table(void)
{
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        const struct msg *m = &requests[i];
        struct h1_request req;
        int before = test_failed;
        int want = m->want == OK ? (int)head_end(m->p, m->n) : m->want;
        int r = preq(m->p, m->n, NULL, &req);
        CHECK_EQ_INT(r, want);
        if (r > 0) {
            CHECK_EQ_INT(req.head_len, r);
            CHECK(req.error == NULL);
        } else {
            CHECK(req.error != NULL);
        }
        if (r == want)
            req_incremental(m, want, &req, NULL);
        note_case(before, m->name);
        if (test_failed != before && req.error)
            fprintf(stderr, "   error: %s\n", req.error);
    }
}

/* ---- request fields --------------------------------------------------------- */

static void test_request_fields(void)
{
    struct h1_request req;
    const char *s;
    int r;

    s = "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\nrest";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_INT(r, (int)strlen(s) - 4);
    CHECK_EQ_INT(req.head_len, (uint32_t)r);
    CHECK_SLICE(req.method, "GET");
    CHECK_EQ_INT(req.method_id, H1_GET);
    CHECK_EQ_INT(req.form, H1_TARGET_ORIGIN);
    CHECK_SLICE(req.target, "/a/b?x=1&y=2");
    CHECK_SLICE(req.path, "/a/b");
    CHECK_SLICE(req.query, "x=1&y=2");
    CHECK_SLICE(req.host, "example.com");
    CHECK_EQ_INT(req.minor, 1);
    CHECK_EQ_INT(req.body, H1_BODY_NONE);
    CHECK_EQ_INT(req.content_length, 0);
    CHECK(req.keep_alive);
    CHECK(!req.upgrade);
    CHECK(!req.expect_continue);
    CHECK_EQ_INT(req.nheaders, 2);
    CHECK_SLICE(req.headers[0].name, "Host");
    CHECK_SLICE(req.headers[0].value, "example.com");
    CHECK_SLICE(req.headers[1].name, "User-Agent");
    CHECK_SLICE(req.headers[1].value, "t");
    CHECK(req.target.p == s + 4);   /* zero-copy: slices point into the input */

    s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_SLICE(req.path, "/");
    CHECK(req.query.p == NULL);
    CHECK_EQ_INT(req.query.len, 0);

    s = "GET /x? HTTP/1.1\r\nHost: a\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK_SLICE(req.path, "/x");
    CHECK(req.query.p != NULL);
    CHECK_EQ_INT(req.query.len, 0);

    s = "GET /x?a?b HTTP/1.1\r\nHost: a\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_SLICE(req.query, "a?b");

    /* value trimming */
    s = "GET / HTTP/1.1\r\nHost: \t a \t \r\nX-E:\r\nX-S:    \r\nX-In: a  b\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK_SLICE(req.host, "a");
    CHECK_EQ_INT(req.nheaders, 4);
    CHECK_EQ_INT(req.headers[1].value.len, 0);
    CHECK_EQ_INT(req.headers[2].value.len, 0);
    CHECK_SLICE(req.headers[3].value, "a  b");

    /* HTTP/1.0: no Host needed, close by default */
    s = "GET / HTTP/1.0\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_INT(r, (int)strlen(s));
    CHECK_EQ_INT(req.minor, 0);
    CHECK(!req.keep_alive);
    CHECK(req.host.p == NULL);
    CHECK_EQ_INT(req.nheaders, 0);

    s = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK(req.keep_alive);
    CHECK_SLICE(req.host, "h");

    s = "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(!req.keep_alive);

    s = "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK(!req.keep_alive);

    s = "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\nConnection: close\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(!req.keep_alive);

    s = "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(req.keep_alive);

    /* upgrade */
    s = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK(req.upgrade);
    CHECK(req.keep_alive);
    s = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(!req.upgrade);
    s = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(!req.upgrade);
    s = "GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK(!req.upgrade);
    /* h2c is not offered: such a request is plain HTTP/1.1 (no tunnel). */
    s = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: H2C\r\n"
        "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK(!req.upgrade);
    s = "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK(!req.upgrade);

    /* expect */
    s = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 10\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK(req.expect_continue);
    CHECK_EQ_INT(req.body, H1_BODY_LENGTH);
    CHECK_EQ_INT(req.content_length, 10);
    s = "PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK(!req.expect_continue);
    s = "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(!req.expect_continue);

    /* bodies */
    s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_INT(req.body, H1_BODY_NONE);
    CHECK_EQ_INT(req.content_length, 0);
    s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_INT(req.body, H1_BODY_LENGTH);
    CHECK(req.content_length == 9223372036854775807ULL);
    s = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK_EQ_INT(req.body, H1_BODY_CHUNKED);
    s = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_INT(req.body, H1_BODY_CHUNKED);
    s = "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_INT(r, (int)strlen(s) - 3);
    CHECK_EQ_INT(req.body, H1_BODY_LENGTH);

    /* methods */
    static const struct { const char *m; enum h1_method id; } methods[] = {
        { "GET", H1_GET }, { "HEAD", H1_HEAD }, { "POST", H1_POST }, { "PUT", H1_PUT },
        { "DELETE", H1_DELETE }, { "OPTIONS", H1_OPTIONS }, { "TRACE", H1_TRACE },
        { "PATCH", H1_PATCH }, { "get", H1_OTHER }, { "PROPFIND", H1_OTHER },
        { "GETS", H1_OTHER }, { "X", H1_OTHER }, { "!#$%&'*+-.^_`|~", H1_OTHER },
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        char b[128];
        int n = snprintf(b, sizeof(b), "%s /m HTTP/1.1\r\nHost: a\r\n\r\n", methods[i].m);
        r = preq(b, (size_t)n, NULL, &req);
        CHECK_EQ_INT(r, n);
        CHECK_EQ_INT(req.method_id, methods[i].id);
        CHECK_SLICE(req.method, methods[i].m);
    }

    /* absolute-form: host from the target, not the Host field */
    s = "GET http://example.com:8080/x/y?q=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK_EQ_INT(req.form, H1_TARGET_ABSOLUTE);
    CHECK_SLICE(req.host, "example.com:8080");
    CHECK_SLICE(req.path, "/x/y");
    CHECK_SLICE(req.query, "q=1");
    s = "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_SLICE(req.host, "example.com");
    CHECK_EQ_INT(req.path.len, 0);
    CHECK(req.query.p == NULL);

    /* authority-form */
    s = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK_EQ_INT(req.method_id, H1_CONNECT);
    CHECK_EQ_INT(req.form, H1_TARGET_AUTHORITY);
    CHECK_SLICE(req.host, "example.com:443");
    CHECK(req.path.p == NULL);
    CHECK_EQ_INT(req.body, H1_BODY_NONE);

    /* asterisk-form */
    s = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK(r > 0);
    CHECK_EQ_INT(req.form, H1_TARGET_ASTERISK);
    CHECK_SLICE(req.path, "*");
    CHECK_SLICE(req.host, "a");

    /* one leading CRLF is skipped */
    s = "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_INT(r, (int)strlen(s));
    CHECK(req.method.p == s + 2);

    /* pipelining: the second request starts at head_len */
    s = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_INT(r, (int)strlen(s) / 2);
    CHECK_SLICE(req.path, "/1");
    r = h1_parse_request(s + r, strlen(s) - (size_t)r, NULL, &req);
    CHECK_EQ_INT(r, (int)strlen(s) / 2);
    CHECK_SLICE(req.path, "/2");

    /* error reasons are there for the log */
    s = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_INT(r, H1_BAD_REQUEST);
    CHECK_EQ_STR(req.error, "both Content-Length and Transfer-Encoding");
    s = "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_STR(req.error, "obs-fold or whitespace before a field name");
    s = "GET / HTTP/1.1\r\nHost : a\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_STR(req.error, "whitespace between field name and colon");
    s = "GET / HTTP/1.1\nHost: a\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_STR(req.error, "bare LF in head");
    s = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_STR(req.error, "more than one Host");
    s = "GET / HTTP/1.1\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_STR(req.error, "no Host in HTTP/1.1 request");
    s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_STR(req.error, "more than one empty line before the request line");
    s = "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_STR(req.error, "invalid Content-Length");
    s = "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_STR(req.error, "chunked applied twice");
    s = "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_STR(req.error, "final transfer coding is not chunked");
    s = "GET / HTTP/2.0\r\nHost: a\r\n\r\n";
    r = preq(s, strlen(s), NULL, &req);
    CHECK_EQ_STR(req.error, "HTTP version not supported");
}

/* ---- limits ----------------------------------------------------------------- */

static void test_request_limits(void)
{
    struct h1_request req;
    char *b = malloc(200000);
    int n, r;

    /* request line: the default is 8192 bytes without the CRLF */
    n = sprintf(b, "GET /");
    memset(b + n, 'a', 8192 - 14);
    n += 8192 - 14;
    n += sprintf(b + n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    r = preq(b, (size_t)n, NULL, &req);
    CHECK_EQ_INT(r, n);                         /* exactly at the limit */
    b[5] = 'a';
    memmove(b + 6, b + 5, (size_t)n - 5);       /* one byte more */
    n++;
    r = preq(b, (size_t)n, NULL, &req);
    CHECK_EQ_INT(r, H1_URI_TOO_LONG);
    r = preq(b, 8200, NULL, &req);              /* no CRLF yet, but too long */
    CHECK_EQ_INT(r, H1_URI_TOO_LONG);
    r = preq(b, 8000, NULL, &req);
    CHECK_EQ_INT(r, 0);
    memset(b, 'G', 10000);                      /* a method that never ends */
    r = preq(b, 10000, NULL, &req);
    CHECK_EQ_INT(r, H1_URI_TOO_LONG);

    /* small limits, and the error seen however the bytes arrive */
    struct h1_limits lim = { .max_request_line = 20, .max_head = 100, .max_headers = 3 };
    const char *s = "GET /0123456789 HTTP/1.1\r\nHost: a\r\n\r\n";       /* line: 24 */
    r = preq(s, strlen(s), &lim, &req);
    CHECK_EQ_INT(r, H1_URI_TOO_LONG);
    struct msg m = { s, strlen(s), H1_URI_TOO_LONG, "414 small" };
    req_incremental(&m, H1_URI_TOO_LONG, NULL, &lim);
    s = "GET /012345 HTTP/1.1\r\nHost: a\r\n\r\n";                       /* line: 20 */
    r = preq(s, strlen(s), &lim, &req);
    CHECK_EQ_INT(r, (int)strlen(s));
    m = (struct msg){ s, strlen(s), (int)strlen(s), "ok at line limit" };
    req_incremental(&m, (int)strlen(s), &req, &lim);

    s = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    r = preq(s, strlen(s), &lim, &req);
    CHECK_EQ_INT(r, (int)strlen(s));
    s = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    r = preq(s, strlen(s), &lim, &req);
    CHECK_EQ_INT(r, H1_HEADERS_TOO_LARGE);
    CHECK_EQ_STR(req.error, "too many header fields");
    m = (struct msg){ s, strlen(s), H1_HEADERS_TOO_LARGE, "431 count" };
    req_incremental(&m, H1_HEADERS_TOO_LARGE, NULL, &lim);
    r = preq(s, 40, &lim, &req);    /* the 4th field has only begun: 431 already */
    CHECK_EQ_INT(r, H1_HEADERS_TOO_LARGE);

    /* fewer slots than max_headers: the slots win */
    h1_request_init(&req, slots, 2);
    r = h1_parse_request(s, strlen(s), NULL, &req);
    CHECK_EQ_INT(r, H1_HEADERS_TOO_LARGE);
    h1_request_init(&req, NULL, 0);
    s = "GET / HTTP/1.0\r\n\r\n";
    r = h1_parse_request(s, strlen(s), NULL, &req);
    CHECK_EQ_INT(r, (int)strlen(s));

    /* head size: exactly 100 is fine, 101 is not */
    n = sprintf(b, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(b + n, 'v', 100 - (size_t)n - 4);
    n = 100 - 4;
    n += sprintf(b + n, "\r\n\r\n");
    CHECK_EQ_INT(n, 100);
    r = preq(b, (size_t)n, &lim, &req);
    CHECK_EQ_INT(r, 100);
    memmove(b + 30, b + 29, 72);
    r = preq(b, 101, &lim, &req);
    CHECK_EQ_INT(r, H1_HEADERS_TOO_LARGE);
    r = preq(b, 100, &lim, &req);               /* still incomplete at the limit */
    CHECK_EQ_INT(r, H1_HEADERS_TOO_LARGE);
    r = preq(b, 99, &lim, &req);
    CHECK_EQ_INT(r, 0);
    m = (struct msg){ b, 101, H1_HEADERS_TOO_LARGE, "431 size" };
    req_incremental(&m, H1_HEADERS_TOO_LARGE, NULL, &lim);

    /* default head limit: 65536 */
    n = sprintf(b, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 90; i++) {
        n += sprintf(b + n, "X-%02d: ", i);
        memset(b + n, 'x', 800);
        n += 800;
        n += sprintf(b + n, "\r\n");
    }
    n += sprintf(b + n, "\r\n");
    r = preq(b, (size_t)n, NULL, &req);
    CHECK_EQ_INT(r, H1_HEADERS_TOO_LARGE);
    r = preq(b, 65536, NULL, &req);
    CHECK_EQ_INT(r, H1_HEADERS_TOO_LARGE);
    r = preq(b, 65535, NULL, &req);
    CHECK_EQ_INT(r, 0);

    /* default count limit: 100 */
    n = sprintf(b, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 99; i++)
        n += sprintf(b + n, "X%d: y\r\n", i);
    int n99 = n;
    n += sprintf(b + n, "\r\n");
    r = preq(b, (size_t)n, NULL, &req);
    CHECK_EQ_INT(r, n);
    CHECK_EQ_INT(req.nheaders, 100);
    n = n99 + sprintf(b + n99, "Z: 1\r\n\r\n");
    r = preq(b, (size_t)n, NULL, &req);
    CHECK_EQ_INT(r, H1_HEADERS_TOO_LARGE);
    free(b);
}

/* A slow client feeding a large head a byte at a time costs linear work:
 * here just that it works at the size limit and gives the same result. */
static void test_request_trickle(void)
{
    char *b = malloc(70000);
    struct h1_request req, one;
    static struct h1_header s2[NSLOTS];
    int n = sprintf(b, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 60; i++) {
        n += sprintf(b + n, "X-%02d: ", i);
        memset(b + n, 'x', 1000);
        n += 1000;
        n += sprintf(b + n, "\r\n");
    }
    n += sprintf(b + n, "\r\n");
    h1_request_init(&one, s2, NSLOTS);
    int want = h1_parse_request(b, (size_t)n, NULL, &one);
    CHECK_EQ_INT(want, n);

    h1_request_init(&req, slots, NSLOTS);
    int r = 0, calls = 0;
    for (int i = 1; i <= n && r == 0; i++, calls++)
        r = h1_parse_request(b, (size_t)i, NULL, &req);
    CHECK_EQ_INT(r, n);
    CHECK_EQ_INT(calls, n);
    CHECK_EQ_INT(req.nheaders, 61);
    req_same(&req, &one, b, b);

    /* a caller that starts over on a new buffer without init: still right */
    const char *s = "GET /z HTTP/1.1\r\nHost: b\r\n\r\n";
    h1_request_init(&req, slots, NSLOTS);
    CHECK_EQ_INT(h1_parse_request(b, 5000, NULL, &req), 0);
    CHECK_EQ_INT(h1_parse_request(s, strlen(s), NULL, &req), (int)strlen(s));
    CHECK_SLICE(req.path, "/z");
    free(b);
}

/* ---- responses -------------------------------------------------------------- */

struct rcase {
    const char *p;
    size_t n;
    enum h1_method method;
    int want;                 /* OK, or H1_BAD_RESPONSE */
    int status;
    enum h1_body_kind body;
    uint64_t cl;
    bool keep_alive, tunnel;
};

#define R(lit, method, want, status, body, cl, ka, tun) \
    { lit, sizeof(lit) - 1, method, want, status, body, cl, ka, tun }

static const struct rcase responses[] = {
    R("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", H1_GET, OK, 200, H1_BODY_LENGTH, 5, true, false),
    R("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", H1_GET, OK, 200, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", H1_GET, OK, 200, H1_BODY_CHUNKED, 0, true, false),
    R("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", H1_POST, OK, 200, H1_BODY_CHUNKED, 0, true, false),
    R("HTTP/1.1 200 OK\r\n\r\n", H1_GET, OK, 200, H1_BODY_CLOSE, 0, false, false),
    R("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", H1_GET, OK, 200, H1_BODY_CLOSE, 0, false, false),
    R("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", H1_GET, OK, 200, H1_BODY_CLOSE, 0, false, false),
    R("HTTP/1.1 200 OK\r\nTransfer-Encoding: foo\r\n\r\n", H1_GET, OK, 200, H1_BODY_CLOSE, 0, false, false),
    R("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", H1_HEAD, OK, 200, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", H1_HEAD, OK, 200, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 200 OK\r\n\r\n", H1_HEAD, OK, 200, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 204 No Content\r\n\r\n", H1_GET, OK, 204, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", H1_GET, OK, 204, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", H1_GET, OK, 304, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", H1_GET, OK, 304, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 100 Continue\r\n\r\n", H1_PUT, OK, 100, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", H1_GET, OK, 103, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", H1_GET, OK, 101, H1_BODY_NONE, 0, false, true),
    R("HTTP/1.1 200 Connection established\r\n\r\n", H1_CONNECT, OK, 200, H1_BODY_NONE, 0, false, true),
    R("HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: y\r\n\r\n", H1_CONNECT, OK, 200, H1_BODY_NONE, 0, false, true),
    R("HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\nabc", H1_CONNECT, OK, 407, H1_BODY_LENGTH, 3, true, false),
    R("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", H1_GET, OK, 200, H1_BODY_LENGTH, 2, false, false),
    R("HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi", H1_GET, OK, 200, H1_BODY_LENGTH, 2, true, false),
    R("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", H1_GET, OK, 200, H1_BODY_CLOSE, 0, false, false),
    R("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi", H1_GET, OK, 200, H1_BODY_LENGTH, 2, false, false),
    R("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", H1_GET, OK, 200, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", H1_GET, OK, 200, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 599 Whatever \xff\tx\r\nContent-Length: 0\r\n\r\n", H1_GET, OK, 599, H1_BODY_NONE, 0, true, false),
    R("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nServer: x\r\nDate: y\r\n\r\nnot found", H1_GET, OK, 404, H1_BODY_LENGTH, 9, true, false),

    R("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 304 Not Modified\r\nContent-Length: abc\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 200 OK\r\nContent-Length: 5\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 200 OK\rContent-Length: 5\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 200 O\x01K\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 600 Nope\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 099 Nope\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 20 OK\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 2000 OK\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1 20x OK\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.1  200 OK\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/1.2 200 OK\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/2 200 OK\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("HTTP/2.0 200 OK\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("http/1.1 200 OK\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("\r\nHTTP/1.1 200 OK\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
    R("ICY 200 OK\r\n\r\n", H1_GET, H1_BAD_RESPONSE, 0, 0, 0, 0, 0),
};

static void test_response_table(void)
{
    for (size_t i = 0; i < sizeof(responses) / sizeof(responses[0]); i++) {
        const struct rcase *c = &responses[i];
        struct h1_response resp;
        int before = test_failed;
        int want = c->want == OK ? (int)head_end(c->p, c->n) : c->want;
        int r = presp(c->p, c->n, c->method, &resp);
        CHECK_EQ_INT(r, want);
        if (r > 0 && c->want == OK) {
            CHECK_EQ_INT(resp.head_len, r);
            CHECK_EQ_INT(resp.status, c->status);
            CHECK_EQ_INT(resp.body, c->body);
            CHECK_EQ_INT(resp.content_length, c->cl);
            CHECK_EQ_INT(resp.keep_alive, c->keep_alive);
            CHECK_EQ_INT(resp.tunnel, c->tunnel);
        }
        if (r < 0)
            CHECK(resp.error != NULL);

        /* byte by byte, moving buffer: 0 until done, then the same */
        struct h1_response inc;
        static struct h1_header s2[NSLOTS];
        char *prev = NULL;
        int ri = 0;
        size_t k;
        h1_response_init(&inc, s2, NSLOTS);
        for (k = 1; k <= c->n; k++) {
            char *b = malloc(k);
            memcpy(b, c->p, k);
            ri = h1_parse_response(b, k, c->method, NULL, &inc);
            free(prev);
            prev = b;
            if (ri != 0)
                break;
        }
        free(prev);
        CHECK_EQ_INT(ri, want);
        if (ri > 0) {
            CHECK_EQ_INT(inc.status, resp.status);
            CHECK_EQ_INT(inc.body, resp.body);
            CHECK_EQ_INT(inc.nheaders, resp.nheaders);
            CHECK_EQ_INT(inc.reason.len, resp.reason.len);
        }
        note_case(before, c->p);
        if (test_failed != before && resp.error)
            fprintf(stderr, "   error: %s\n", resp.error);
    }
}

static void test_response_fields(void)
{
    struct h1_response resp;
    const char *s = "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nServer: x\r\n\r\nnot found";
    int r = presp(s, strlen(s), H1_GET, &resp);
    CHECK_EQ_INT(r, (int)strlen(s) - 9);
    CHECK_EQ_INT(resp.status, 404);
    CHECK_EQ_INT(resp.minor, 1);
    CHECK_SLICE(resp.reason, "Not Found");
    CHECK_EQ_INT(resp.nheaders, 2);
    CHECK_SLICE(resp.headers[1].name, "Server");
    CHECK_SLICE(resp.headers[1].value, "x");

    s = "HTTP/1.1 200\r\n\r\n";
    r = presp(s, strlen(s), H1_GET, &resp);
    CHECK_EQ_INT(r, (int)strlen(s));
    CHECK_EQ_INT(resp.reason.len, 0);

    /* 100 Continue, then the real response after it */
    s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    r = presp(s, strlen(s), H1_PUT, &resp);
    CHECK_EQ_INT(r, 25);
    CHECK_EQ_INT(resp.status, 100);
    r = presp(s + r, strlen(s) - 25, H1_PUT, &resp);
    CHECK_EQ_INT(r, (int)strlen(s) - 25);
    CHECK_EQ_INT(resp.status, 201);

    /* response limits: too many fields or too large → bad */
    struct h1_limits lim = { .max_request_line = 10, .max_head = 64, .max_headers = 1 };
    s = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
    h1_response_init(&resp, slots, NSLOTS);
    CHECK_EQ_INT(h1_parse_response(s, strlen(s), H1_GET, &lim, &resp), H1_BAD_RESPONSE);
    s = "HTTP/1.1 200 OK\r\nA: 1\r\n\r\n";
    h1_response_init(&resp, slots, NSLOTS);
    CHECK_EQ_INT(h1_parse_response(s, strlen(s), H1_GET, &lim, &resp), (int)strlen(s));
    s = "HTTP/1.1 200 OK\r\nA: 0123456789012345678901234567890123456789012345\r\n\r\n";
    h1_response_init(&resp, slots, NSLOTS);
    CHECK_EQ_INT(h1_parse_response(s, strlen(s), H1_GET, &lim, &resp), H1_BAD_RESPONSE);
}

/* ---- chunked ---------------------------------------------------------------- */

static ssize_t scan_all(const char *p, size_t n, bool *done)
{
    struct h1_chunked c;
    h1_chunked_init(&c);
    return h1_chunked_scan(&c, p, n, done);
}

/* Split p[0..n) into pieces ending at the offsets in cuts[] (ascending); the
 * consumed total and done must match the one-shot scan. */
static void scan_split(const char *p, size_t n, const size_t *cuts, size_t ncuts,
                       ssize_t *total, bool *done)
{
    struct h1_chunked c;
    size_t at = 0;
    *total = 0;
    *done = false;
    h1_chunked_init(&c);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        ssize_t r = h1_chunked_scan(&c, p + at, to - at, done);
        if (r < 0) {
            *total = -1;
            return;
        }
        *total += r;
        if (*done)
            return;
        if (r != (ssize_t)(to - at)) {
            *total = -2;   /* not done, yet not everything consumed */
            return;
        }
        at = to;
    }
}

/* h1_chunked_decode: the data it hands out, over every split of the input,
 * is the data the chunks carry, and it ends where the scan ends. */
static void test_chunked_decode(void)
{
    static const char body[] =
        "5;ext=val\r\nhello\r\n0A\r\n0123456789\r\n1\r\n!\r\n0\r\nT: x\r\n\r\nNEXT";
    size_t n = sizeof(body) - 1, blen = n - 4;
    int bad = 0;

    for (size_t cut = 0; cut <= n; cut++) {
        struct h1_chunked c;
        char out[64], trailers[64];
        size_t olen = 0, at = 0, tlen = 0;
        bool done = false;

        h1_chunked_init(&c);
        while (!done) {
            size_t end = at < cut ? cut : n;
            struct h1_slice d;
            bool tr;
            ssize_t r = h1_chunked_decode(&c, body + at, end - at, &d, &tr, &done);
            if (r < 0 || (r == 0 && !done && end == n))
                break;
            if (d.len) {
                memcpy(out + olen, d.p, d.len);
                olen += d.len;
            }
            if (tr) {
                memcpy(trailers + tlen, body + at, (size_t)r);
                tlen += (size_t)r;
            }
            at += (size_t)r;
        }
        if (!done || at != blen || olen != 16 || memcmp(out, "hello0123456789!", 16) != 0 ||
            tlen != 8 || memcmp(trailers, "T: x\r\n\r\n", 8) != 0)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    {
        struct h1_chunked c;
        struct h1_slice d;
        bool done, tr;
        h1_chunked_init(&c);
        CHECK_EQ_INT(h1_chunked_decode(&c, "zz\r\n", 4, &d, &tr, &done), -1);
    }
}

static void test_chunked(void)
{
    static const char body[] =
        "5;ext=val;q=\"quo\\\"ted\\\\ str\" ; flag\r\nhello\r\n"
        "0A\r\n0123456789\r\n"
        "1 ;a=b\r\n!\r\n"
        "000\r\nTrailer-A: x\r\nB:\r\nX-Long-Trailer-Name-Here: \t v \xff\r\n\r\n";
    static const char next[] = "GET / HTTP/1.1\r\n";
    size_t blen = sizeof(body) - 1;
    char buf[512];
    memcpy(buf, body, blen);
    memcpy(buf + blen, next, sizeof(next));
    size_t n = blen + sizeof(next) - 1;
    bool done;

    ssize_t r = scan_all(buf, n, &done);
    CHECK_EQ_INT(r, (ssize_t)blen);
    CHECK(done);

    /* split at every byte */
    int bad = 0;
    for (size_t i = 0; i <= n; i++) {
        ssize_t t;
        scan_split(buf, n, &i, 1, &t, &done);
        if (t != (ssize_t)blen || !done)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* every pair of split points */
    bad = 0;
    for (size_t i = 0; i <= n; i++)
        for (size_t j = i; j <= n; j++) {
            size_t cuts[2] = { i, j };
            ssize_t t;
            scan_split(buf, n, cuts, 2, &t, &done);
            if (t != (ssize_t)blen || !done)
                bad++;
        }
    CHECK_EQ_INT(bad, 0);
    /* byte by byte */
    {
        size_t cuts[512];
        for (size_t i = 0; i < n; i++)
            cuts[i] = i + 1;
        ssize_t t;
        scan_split(buf, n, cuts, n - 1, &t, &done);
        CHECK_EQ_INT(t, (ssize_t)blen);
        CHECK(done);
    }
    /* random splits */
    bad = 0;
    srand(1234);
    for (int iter = 0; iter < 2000; iter++) {
        size_t cuts[64], nc = 0, at = 0;
        while (nc < 64) {
            at += (size_t)(rand() % 12);
            if (at >= n)
                break;
            cuts[nc++] = at;
        }
        ssize_t t;
        scan_split(buf, n, cuts, nc, &t, &done);
        if (t != (ssize_t)blen || !done)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);

    /* after done: nothing more is consumed */
    struct h1_chunked c;
    h1_chunked_init(&c);
    r = h1_chunked_scan(&c, buf, n, &done);
    CHECK_EQ_INT(r, (ssize_t)blen);
    r = h1_chunked_scan(&c, buf + r, n - (size_t)r, &done);
    CHECK_EQ_INT(r, 0);
    CHECK(done);

    /* incomplete bodies: all consumed, not done */
    static const char *partial[] = {
        "5\r\nhel", "5\r\nhello", "5\r\nhello\r", "5\r\nhello\r\n", "0\r\n", "0\r\nX: y\r\n",
        "0\r\n\r", "7fffffffffffffff\r\n", "0000000000000000000000000000001\r\n", "a;b=\"c",
        "", "5", "5;", "5 ", "5;a ", "5;a=", "0\r\nX",
    };
    for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++) {
        r = scan_all(partial[i], strlen(partial[i]), &done);
        CHECK_EQ_INT(r, (ssize_t)strlen(partial[i]));
        CHECK(!done);
        if (r != (ssize_t)strlen(partial[i]))
            fprintf(stderr, "   in case: %s\n", partial[i]);
    }

    /* valid odd ones */
    static const char *valid[] = {
        "0\r\n\r\n", "000000\r\n\r\n", "A\r\n0123456789\r\n0\r\n\r\n",
        "a\r\n0123456789\r\n0\r\n\r\n", "1;a\r\nx\r\n0;b;c=d\r\n\r\n",
        "1;a=\"\"\r\nx\r\n0\r\n\r\n", "1\t;\ta\t=\tb\r\nx\r\n0\r\n\r\n",
        "0\r\nA:1\r\nB: 2 \r\n\r\n", "0\r\nContent-Type: x\r\n\r\n",
        "0\r\nHostname: x\r\n\r\n", "0\r\nContent-Length-X: 1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        r = scan_all(valid[i], strlen(valid[i]), &done);
        CHECK_EQ_INT(r, (ssize_t)strlen(valid[i]));
        CHECK(done);
        if (r != (ssize_t)strlen(valid[i]) || !done)
            fprintf(stderr, "   in case: %s\n", valid[i]);
    }

    /* invalid: -1, whether in one piece or byte by byte */
    static const struct { const char *p; size_t n; } invalid[] = {
#define X(lit) { lit, sizeof(lit) - 1 }
        X("-1\r\n"), X("zz\r\n"), X("\r\n"), X(";a\r\n"), X(" 5\r\n"), X("+5\r\n"), X("0x5\r\n"),
        X("10000000000000000\r\n"), X("8000000000000000\r\n"), X("ffffffffffffffffff\r\n"),
        X("5\nhello\r\n"), X("5\r\rhello"), X("5 \r\n"), X("5\t\r\n"), X("5;\r\n"), X("5; \r\n"),
        X("5;a=\r\n"), X("5;a b\r\n"), X("5;a=b c\r\n"), X("5;a=\"b\r\n"), X("5;a=\"b\"c\r\n"),
        X("5;a=\"\x01\"\r\n"), X("5;a=b=c\r\n"), X("5;=b\r\n"), X("5;a=\"\\\x01\"\r\n"),
        X("5\r\nhelloXX"), X("5\r\nhello\n"), X("5\r\nhello\rX"), X("5\r\nhelloo\r\n"),
        X("5\r\nhello\r\n\r\n"), X("0\r\nX: y\r\n z\r\n\r\n"), X("0\r\n X: y\r\n\r\n"),
        X("0\r\nX : y\r\n\r\n"), X("0\r\nX\r\n\r\n"), X("0\r\n:y\r\n\r\n"), X("0\r\nX: a\0b\r\n\r\n"),
        X("0\r\nX: a\nb\r\n\r\n"), X("0\r\nX: y\n\r\n"), X("0\r\n\n"), X("0\r\n\r\r"),
        X("0\r\nContent-Length: 5\r\n\r\n"), X("0\r\ntransfer-encoding: chunked\r\n\r\n"),
        X("0\r\nHOST: x\r\n\r\n"), X("5\0\r\n"), X("\xff\r\n"), X("5\r\nhello\r\n-"),
#undef X
    };
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        int before = test_failed;
        r = scan_all(invalid[i].p, invalid[i].n, &done);
        CHECK_EQ_INT(r, -1);
        size_t cuts[64];
        for (size_t k = 0; k + 1 < invalid[i].n && k < 64; k++)
            cuts[k] = k + 1;
        ssize_t t;
        size_t nc = invalid[i].n > 0 ? invalid[i].n - 1 : 0;
        scan_split(invalid[i].p, invalid[i].n, cuts, nc < 64 ? nc : 64, &t, &done);
        CHECK_EQ_INT(t, -1);
        note_case(before, invalid[i].p);
    }

    /* the state stays failed */
    h1_chunked_init(&c);
    CHECK_EQ_INT(h1_chunked_scan(&c, "zz", 2, &done), -1);
    CHECK(c.error != NULL);
    CHECK_EQ_INT(h1_chunked_scan(&c, "0\r\n\r\n", 5, &done), -1);

    /* size line limit: 4096 bytes with CRLF */
    char *line = malloc(H1_CHUNK_LINE_MAX + 16);
    if (!line)
        return;
    memcpy(line, "1;", 2);
    memset(line + 2, 'a', H1_CHUNK_LINE_MAX - 4);
    memcpy(line + H1_CHUNK_LINE_MAX - 2, "\r\nx\r\n0\r\n\r\n", 10);
    r = scan_all(line, H1_CHUNK_LINE_MAX + 8, &done);
    CHECK_EQ_INT(r, H1_CHUNK_LINE_MAX + 8);
    CHECK(done);
    memset(line + 2, 'a', H1_CHUNK_LINE_MAX - 3);
    memcpy(line + H1_CHUNK_LINE_MAX - 1, "\r\nx\r\n0\r\n\r\n", 10);
    r = scan_all(line, H1_CHUNK_LINE_MAX + 9, &done);
    CHECK_EQ_INT(r, -1);
    memset(line, '0', H1_CHUNK_LINE_MAX + 16);   /* endless leading zeros */
    r = scan_all(line, H1_CHUNK_LINE_MAX + 16, &done);
    CHECK_EQ_INT(r, -1);
    free(line);

    /* trailer section limit */
    char *tr = malloc(H1_TRAILERS_MAX + 64);
    if (!tr)
        return;
    size_t tn = (size_t)sprintf(tr, "0\r\nX: ");
    memset(tr + tn, 'v', H1_TRAILERS_MAX);
    tn += H1_TRAILERS_MAX;
    memcpy(tr + tn, "\r\n\r\n", 4);
    r = scan_all(tr, tn + 4, &done);
    CHECK_EQ_INT(r, -1);
    free(tr);

    /* big chunk sizes pass through the data state in pieces */
    h1_chunked_init(&c);
    r = h1_chunked_scan(&c, "7fffffffffffffff\r\n", 18, &done);
    CHECK_EQ_INT(r, 18);
    CHECK(c.remain == 0x7fffffffffffffffULL);
    char zeros[4096] = { 0 };
    r = h1_chunked_scan(&c, zeros, sizeof(zeros), &done);
    CHECK_EQ_INT(r, 4096);
    CHECK(c.remain == 0x7fffffffffffffffULL - 4096);
    CHECK(!done);
}

/* ---- helpers ---------------------------------------------------------------- */

static struct h1_slice sl(const char *s)
{
    return (struct h1_slice){ s, (uint32_t)strlen(s) };
}

static void test_helpers(void)
{
    struct h1_header h[3] = {
        { sl("Host"), sl("a") }, { sl("X-Forwarded-For"), sl("1.2.3.4") }, { sl("x-forwarded-for"), sl("5") },
    };
    CHECK(h1_find_header(h, 3, "host") == &h[0]);
    CHECK(h1_find_header(h, 3, "X-FORWARDED-FOR") == &h[1]);
    CHECK(h1_find_header(h, 3, "X-Forwarded") == NULL);
    CHECK(h1_find_header(h, 0, "host") == NULL);

    CHECK(h1_slice_eq_ci(sl("Keep-Alive"), "keep-alive"));
    CHECK(!h1_slice_eq_ci(sl("Keep-Alive2"), "keep-alive"));
    CHECK(!h1_slice_eq_ci(sl("Keep-Aliv"), "keep-alive"));
    CHECK(h1_slice_eq_ci(sl(""), ""));
    CHECK(!h1_slice_eq_ci(sl("@"), "`"));

    CHECK(h1_has_token(sl("keep-alive, Upgrade"), "upgrade"));
    CHECK(h1_has_token(sl("Upgrade"), "upgrade"));
    CHECK(h1_has_token(sl(" \t upgrade \t "), "upgrade"));
    CHECK(h1_has_token(sl(",,upgrade,,"), "upgrade"));
    CHECK(!h1_has_token(sl("upgrades"), "upgrade"));
    CHECK(!h1_has_token(sl("x-upgrade"), "upgrade"));
    CHECK(!h1_has_token(sl(""), "upgrade"));
    CHECK(!h1_has_token(sl("close"), "upgrade"));

    struct h1_slice host;
    int port;
    h1_split_host(sl("example.com:8080"), &host, &port);
    CHECK_SLICE(host, "example.com");
    CHECK_EQ_INT(port, 8080);
    h1_split_host(sl("example.com"), &host, &port);
    CHECK_SLICE(host, "example.com");
    CHECK_EQ_INT(port, -1);
    h1_split_host(sl("[::1]:443"), &host, &port);
    CHECK_SLICE(host, "[::1]");
    CHECK_EQ_INT(port, 443);
    h1_split_host(sl("[::1]"), &host, &port);
    CHECK_SLICE(host, "[::1]");
    CHECK_EQ_INT(port, -1);
    h1_split_host(sl(""), &host, &port);
    CHECK_EQ_INT(host.len, 0);
    CHECK_EQ_INT(port, -1);

    /* absent slices (p == NULL) and empty inputs are safe everywhere */
    struct h1_slice none = { NULL, 0 };
    CHECK(!h1_has_token(none, "close"));
    CHECK(h1_slice_eq_ci(none, ""));
    CHECK(!h1_slice_eq_ci(none, "x"));
    h1_split_host(none, &host, &port);
    CHECK(host.p == NULL && host.len == 0);
    CHECK_EQ_INT(port, -1);
    struct h1_request req;
    struct h1_response resp;
    h1_request_init(&req, slots, NSLOTS);
    CHECK_EQ_INT(h1_parse_request(NULL, 0, NULL, &req), 0);
    h1_response_init(&resp, slots, NSLOTS);
    CHECK_EQ_INT(h1_parse_response(NULL, 0, H1_GET, NULL, &resp), 0);
    struct h1_chunked c;
    bool done;
    h1_chunked_init(&c);
    CHECK_EQ_INT(h1_chunked_scan(&c, NULL, 0, &done), 0);
    CHECK(!done);
    struct h1_limits zero = { 0, 0, 0 };
    h1_request_init(&req, slots, NSLOTS);
    CHECK_EQ_INT(h1_parse_request("GET", 3, &zero, &req), H1_HEADERS_TOO_LARGE);
}

int main(void)
{
    test_request_table();
    test_request_fields();
    test_request_limits();
    test_request_trickle();
    test_response_table();
    test_response_fields();
    test_chunked();
    test_chunked_decode();
    test_helpers();
    TEST_END();
}
