/* An HTTP/1.1 body read out of its framing (Content-Length, chunked, or
 * until the close), for a peer that wants the data itself: the HTTP/2 sides
 * of the proxy turn it into DATA frames. */
#ifndef SLUICE_PROTO_HTTP1_BODY_H
#define SLUICE_PROTO_HTTP1_BODY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/bytes.h"
#include "proto/http1.h"

/* Owner: the stream reading the body. */
struct h1_body {
    enum h1_body_kind kind;
    uint64_t left;                  /* H1_BODY_LENGTH: bytes still to come */
    struct h1_chunked chunk;        /* H1_BODY_CHUNKED */
    bool done;                      /* the framing says the body is over */
};

void h1_body_init(struct h1_body *b, enum h1_body_kind kind, uint64_t content_length);

/* Take body bytes as framed from the n at p: the data goes to data (NULL:
 * dropped), a chunked body's trailer section (as received) to trailers
 * when given.
 * Returns the bytes used, which stop where the body ends (H1_BODY_NONE:
 * none; H1_BODY_CLOSE: all, its end is the caller's to know), or -1 when
 * the framing is malformed or memory ran out. */
ssize_t h1_body_take(struct h1_body *b, const char *p, size_t n, struct bytes *data,
                     struct bytes *trailers);

#endif
