/* Microbenchmark: ns per parse of a typical browser request head (~500 bytes
 * of Chrome-like fields), of a small response head, of a request arriving in
 * three reads, and of scanning a chunked body. `make test-unit` builds it
 * but does not run it (bench/http.py's `parser` test builds and runs its own
 * copy, from src/proto/http1*.c alone):
 *
 *   make build/micro/http1_parse && build/micro/http1_parse [iterations]
 *
 * Each timed loop includes h1_*_init, as a connection does per message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/http1.h"

static const char request[] =
    "GET /products/12345/reviews?sort=newest HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "Connection: keep-alive\r\n"
    "sec-ch-ua: \"Chromium\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n"
    "sec-ch-ua-mobile: ?0\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Cookie: session=3f2a9c0e7b1d4e5f\r\n"
    "\r\n";

static const char response[] =
    "HTTP/1.1 200 OK\r\n"
    "Date: Sun, 22 Nov 2026 22:44:52 GMT\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "Content-Length: 1234\r\n"
    "Connection: keep-alive\r\n"
    "Cache-Control: no-cache\r\n"
    "\r\n";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile long sink;

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 10000000;
    struct h1_header slots[100];
    struct h1_request req;
    struct h1_response resp;
    size_t rlen = sizeof(request) - 1, slen = sizeof(response) - 1;
    double t0, t1;
    long acc = 0;

    /* sanity first: a benchmark of a parser that fails is no benchmark */
    h1_request_init(&req, slots, 100);
    if (h1_parse_request(request, rlen, NULL, &req) != (int)rlen) {
        fprintf(stderr, "request did not parse: %s\n", req.error);
        return 1;
    }
    h1_response_init(&resp, slots, 100);
    if (h1_parse_response(response, slen, H1_GET, NULL, &resp) != (int)slen) {
        fprintf(stderr, "response did not parse: %s\n", resp.error);
        return 1;
    }

    t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        h1_request_init(&req, slots, 100);
        acc += h1_parse_request(request, rlen, NULL, &req);
        __asm__ volatile("" : : "r"(&req) : "memory");
    }
    t1 = now_ns();
    double req_ns = (t1 - t0) / (double)iters;
    printf("request  (%zu bytes, %u fields): %6.1f ns/parse  %5.2f GB/s\n", rlen, req.nheaders,
           req_ns, (double)rlen / req_ns);

    t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        h1_response_init(&resp, slots, 100);
        acc += h1_parse_response(response, slen, H1_GET, NULL, &resp);
        __asm__ volatile("" : : "r"(&resp) : "memory");
    }
    t1 = now_ns();
    double resp_ns = (t1 - t0) / (double)iters;
    printf("response (%zu bytes, %u fields): %6.1f ns/parse  %5.2f GB/s\n", slen, resp.nheaders,
           resp_ns, (double)slen / resp_ns);

    /* the same request in three reads: two calls that return 0, then one */
    long split_iters = iters / 4;
    t0 = now_ns();
    for (long i = 0; i < split_iters; i++) {
        h1_request_init(&req, slots, 100);
        acc += h1_parse_request(request, 100, NULL, &req);
        acc += h1_parse_request(request, 300, NULL, &req);
        acc += h1_parse_request(request, rlen, NULL, &req);
        __asm__ volatile("" : : "r"(&req) : "memory");
    }
    t1 = now_ns();
    printf("request in 3 reads:                %6.1f ns/request\n",
           (t1 - t0) / (double)split_iters);

    /* chunked: 16 KiB body in 1 KiB chunks with an extension, and trailers */
    static char body[20000];
    size_t bn = 0;
    for (int c = 0; c < 16; c++) {
        bn += (size_t)sprintf(body + bn, "400;n=%d\r\n", c);
        memset(body + bn, 'x', 1024);
        bn += 1024;
        bn += (size_t)sprintf(body + bn, "\r\n");
    }
    bn += (size_t)sprintf(body + bn, "0\r\nX-Checksum: abc\r\n\r\n");
    long chunk_iters = iters / 10;
    struct h1_chunked ch;
    bool done = false;
    t0 = now_ns();
    for (long i = 0; i < chunk_iters; i++) {
        h1_chunked_init(&ch);
        acc += h1_chunked_scan(&ch, body, bn, &done);
        __asm__ volatile("" : : "r"(&ch) : "memory");
    }
    t1 = now_ns();
    if (!done)
        fprintf(stderr, "chunked body did not end\n");
    printf("chunked  (%zu bytes, 16 chunks): %6.1f ns/body\n", bn,
           (t1 - t0) / (double)chunk_iters);

    sink = acc;
    return 0;
}
