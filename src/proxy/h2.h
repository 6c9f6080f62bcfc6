/* HTTP/2 on http listeners with `http2: true` (RFC 9113), through nghttp2.
 *
 * A client connection that starts with the HTTP/2 preface (after ALPN h2
 * on TLS, or with prior knowledge on plain TCP) is handed from proxy/http.c
 * to an h2 connection here. Each stream becomes an exchange of http.c of
 * its own, an http_conn without a socket: its request arrives as the
 * HTTP/1.1 head that means the same (proto/h2_request) with the body behind
 * it, and what http.c would send a client (an HTTP/1.1 response head and
 * body, as framed upstream) is turned back into HEADERS and DATA here. So
 * routing, auth, rate limits, balancing, retries, sticky sessions, logs and
 * metrics are the HTTP/1.1 code's, per stream, and every stream of one
 * connection is balanced on its own over the upstream keep-alive pools.
 *
 * Flow control bounds memory: a stream's request bytes wait here until
 * http.c takes them, and only what it took is given back to the client's
 * window; response bytes wait until the client's window lets them go, and
 * http.c is stopped (EAGAIN) while 64 KiB are waiting. */
#ifndef SLUICE_PROXY_H2_H
#define SLUICE_PROXY_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <openssl/ssl.h>

struct worker;
struct listener;
struct addr;
struct h2_stream;
struct http_conn;
struct h1_response;

#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

/* Do the n bytes at p start with the client preface? 1: all of it is
 * there; 0: what is there matches so far; -1: not HTTP/2. */
int h2_preface_match(const char *p, size_t n);

/* Take over a client connection whose first bytes (early, n of them, the
 * preface at least) were already read: fd, its TLS (or NULL) and the mTLS
 * subject (or NULL) now belong to the h2 connection. false: out of memory,
 * and fd, tls and subject were freed. */
bool h2_conn_start(struct worker *w, struct listener *l, int fd, SSL *tls, const struct addr *peer,
                   bool trusted, char *client_subject, const char *early, size_t n);

/* Worker-wide: drain (GOAWAY, close once streams are done) and close all. */
void h2_drain(struct worker *w);
void h2_close_all(struct worker *w);

/* For http.c, on a stream's http_conn. */

/* Copy request bytes (head, then body framed as the head says) into dst.
 * Returns the count; 0 with *eof false when none are waiting yet. *eof
 * true: a WebSocket tunnel's client sent END_STREAM and every byte before
 * it was read (the tunnel's half-close); never for other streams, whose
 * body ends where its framing says. */
size_t h2_stream_read(struct h2_stream *s, char *dst, size_t room, bool *eof);

/* Take response bytes (an HTTP/1.1 head, then its body as framed). Returns
 * the bytes taken; -1 with errno EAGAIN when the stream holds enough
 * already (http_stream_wake says when to come back), or EPIPE when the
 * stream is gone or the response cannot be carried over HTTP/2. */
ssize_t h2_stream_write(struct h2_stream *s, const struct iovec *iov, int cnt);

/* May the 101 in resp open the stream's tunnel? For a WebSocket's
 * extended CONNECT (RFC 8441), whose Sec-WebSocket-Key sluice made, only
 * when its Sec-WebSocket-Accept answers that key (RFC 6455 4.1: else the
 * handshake failed; the client cannot check it, having sent no key).
 * true for any other stream (http.c's own checks apply). */
bool h2_stream_upgrade_accepted(const struct h2_stream *s, const struct h1_response *resp);

/* The http_conn is done with the stream: complete says the response
 * ended as its framing said (or, close-delimited, when the backend closed);
 * otherwise the stream is reset. */
void h2_stream_detach(struct h2_stream *s, bool complete);

/* End the response now, before its body did: what of the body still waits
 * here is dropped, and the trailer section (HTTP/1.1 "name: value\r\n"
 * lines, then an empty one) goes out as a HEADERS frame with END_STREAM,
 * as soon as the stream's window lets the end of its DATA go (a client
 * that keeps it shut meets the lingering rule: reset after client_idle).
 * For a gRPC call's deadline. false: no head was sent yet, the body is
 * over already, or the stream failed; nothing changed. */
bool h2_stream_end_with_trailers(struct h2_stream *s, const char *section, size_t len);

/* Provided by proxy/http.c. */
struct http_conn *http_stream_start(struct worker *w, struct listener *l, struct h2_stream *s,
                                    const struct addr *peer, bool trusted,
                                    const char *client_subject);
/* Bytes to read (readable) or room to write (writable): run it soon. */
void http_stream_wake(struct http_conn *c, bool readable, bool writable);
/* The stream is gone. complete: with the whole response handed over (the
 * exchange ends normally); otherwise the client reset it or the connection
 * ended, and the exchange is dropped. */
void http_stream_abort(struct http_conn *c, bool complete);

#endif
