/* What both HTTP/2 sides (proxy/h2.c to clients, proxy/h2_upstream.c to
 * backends) do to send: gather nghttp2's frames into one buffer, so that
 * many small frames leave in one system call. */
#ifndef SLUICE_PROXY_H2_OUT_H
#define SLUICE_PROXY_H2_OUT_H

#include <stdbool.h>
#include <stdio.h>

#include <nghttp2/nghttp2.h>

#include "core/bytes.h"
#include "proto/http1.h"

/* Append the frames nghttp2 has ready to out until it holds batch bytes
 * or there are none. false: nghttp2 failed, or out of memory. */
static inline bool h2_out_gather(nghttp2_session *ng, struct bytes *out, uint32_t batch)
{
    while (bytes_len(out) < batch) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(ng, &data);

        if (n < 0)
            return false;
        if (n == 0)
            break;
        if (!bytes_put(out, data, (size_t)n))
            return false;
    }
    return true;
}

/* An HTTP/1.1 field as an HTTP/2 one, its name lower-cased into lower
 * (name.len bytes, alive until nghttp2 has copied it). Values that belong
 * to one message alone (request ids, cookies, credentials, dates) stay out
 * of the HPACK dynamic table: there they would only push out what repeats,
 * and make every later lookup walk a long chain of same-named entries. */
static inline nghttp2_nv h2_field(const struct h1_header *f, uint8_t *lower)
{
    bool unique = h1_slice_eq_ci(f->name, "x-request-id") || h1_slice_eq_ci(f->name, "set-cookie") ||
                  h1_slice_eq_ci(f->name, "cookie") || h1_slice_eq_ci(f->name, "authorization") ||
                  h1_slice_eq_ci(f->name, "date");

    for (uint32_t k = 0; k < f->name.len; k++) {
        char ch = f->name.p[k];
        lower[k] = (uint8_t)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    return (nghttp2_nv){lower, (uint8_t *)f->value.p, f->name.len, f->value.len,
                        unique ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE};
}

/* A field no HTTP/2 message may carry (RFC 9113 8.2.2), and a TE that says
 * more than "trailers". */
static inline bool h2_connection_specific(struct h1_slice name, struct h1_slice value)
{
    return h1_slice_eq_ci(name, "connection") || h1_slice_eq_ci(name, "keep-alive") ||
           h1_slice_eq_ci(name, "proxy-connection") || h1_slice_eq_ci(name, "transfer-encoding") ||
           h1_slice_eq_ci(name, "upgrade") ||
           (h1_slice_eq_ci(name, "te") && !h1_slice_eq_ci(value, "trailers"));
}

#define H2_TRAILER_FIELDS 128       /* fields of a trailer section sent on; more are dropped */

/* A chunked body's trailer section (as the chunked scan checked it:
 * "name: value" lines, then an empty one; at most H1_TRAILERS_MAX bytes)
 * as a trailing HEADERS frame with END_STREAM on stream id, for either
 * side of the proxy. Names are lower-cased in place. Dropped: what an
 * HTTP/2 peer would reset the stream for (connection-specific fields, a
 * TE other than "trailers"), and what a trailer section must not carry
 * (RFC 9110 6.5.1: framing and routing; the chunked scan refuses most of
 * them already). false when no field is left, or nghttp2 refused. */
static inline bool h2_submit_trailer_section(nghttp2_session *ng, int32_t id, struct bytes *section)
{
    nghttp2_nv nv[H2_TRAILER_FIELDS];
    size_t n = 0;
    char *p = section->p + section->off, *end = p + bytes_len(section);

    while (p < end && n < H2_TRAILER_FIELDS) {
        char *eol = memchr(p, '\r', (size_t)(end - p)), *colon, *v, *ve;

        if (!eol || eol == p)
            break;
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && colon > p) {
            struct h1_slice name = {p, (uint32_t)(colon - p)};

            for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
                ;
            for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
                ;
            if (!h2_connection_specific(name, (struct h1_slice){v, (uint32_t)(ve - v)}) &&
                !h1_slice_eq_ci(name, "content-length") && !h1_slice_eq_ci(name, "host") &&
                !h1_slice_eq_ci(name, "trailer")) {
                for (char *c = p; c < colon; c++)
                    *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
                nv[n++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, (size_t)(colon - p),
                                       (size_t)(ve - v), NGHTTP2_NV_FLAG_NONE};
            }
        }
        p = eol + 2;
    }
    return n && nghttp2_submit_trailer(ng, id, nv, n) == 0;
}

/* DATA as an HTTP/1.1 chunk ("size CRLF data CRLF") for the HTTP/1.1 side
 * of the proxy. false: out of memory. */
static inline bool h2_put_chunk(struct bytes *q, const uint8_t *data, size_t len)
{
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);

    return bytes_put(q, size, (size_t)n) && bytes_put(q, data, len) && bytes_put(q, "\r\n", 2);
}

#endif
