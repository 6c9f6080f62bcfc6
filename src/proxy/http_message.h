/* Writing HTTP/1.1 heads: the request sluice sends upstream (rewritten and
 * sanitised), the response head it sends the client, and responses sluice
 * answers itself (errors, redirects, `respond`). */
#ifndef SLUICE_PROXY_HTTP_MESSAGE_H
#define SLUICE_PROXY_HTTP_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/buffer.h"
#include "net/addr.h"
#include "proto/http1.h"

/* What the forwarded request must say about where it came from. */
struct http_forward {
    const struct addr *peer;     /* the TCP peer (or PROXY-header client) */
    bool peer_trusted;           /* in trusted_proxies: its X-Forwarded-* is kept */
    const char *request_id;      /* X-Request-Id to send */
    bool upstream_http10;        /* the client spoke 1.0: so do we, upstream */
    bool tls;                    /* the client reached us over TLS: X-Forwarded-Proto https */
    const char *client_subject;  /* mTLS: the client certificate's subject, sent as
                                    X-Client-Cert-Subject; NULL = none */
    bool drop_underscores;       /* headers_with_underscores: drop */
};

/* Has the field name an '_' (headers_with_underscores)? */
bool http_name_has_underscore(struct h1_slice name);

/* Append the upstream request head for req to b. Hop-by-hop fields are
 * dropped (Upgrade kept for a WebSocket upgrade); X-Forwarded-For and
 * Forwarded (RFC 7239) are appended to (trusted peer) or replaced (anyone
 * else); X-Forwarded-Proto and X-Forwarded-Host are kept from a trusted
 * peer and set otherwise; X-Request-Id is set; the route's path and header
 * rewrites are applied.
 * The fields sluice writes or vouches for (those, X-Real-IP, Forwarded,
 * X-Forwarded-Host, X-Client-Cert-Subject, a route's set_headers and
 * remove_headers) are matched as CGI-style backends read names: a client's
 * X_Forwarded_For is dropped like its X-Forwarded-For.
 * Returns 0, or -ENOSPC when b is too small. */
int http_write_request_head(struct buf *b, const struct h1_request *req,
                            const struct conf_route *route, const struct http_forward *fwd);

/* What sluice adds to a response head besides the route's rewrites. */
struct http_response_extra {
    const char *request_id;      /* X-Request-Id, unless the backend sent one */
    const char *sticky_cookie;   /* the pool's sticky cookie name: a Set-Cookie
                                    of that name from the backend is dropped */
    const char *set_cookie;      /* a Set-Cookie value to add (final responses) */
};

/* Append the client-facing response head for resp. keep_alive says whether
 * the client connection stays open after this response. extra may be NULL. */
int http_write_response_head(struct buf *b, const struct h1_response *resp,
                             const struct conf_route *route, bool keep_alive,
                             bool client_http10, const struct http_response_extra *extra);

/* Append a whole response sluice makes itself. location: for redirects
 * (NULL otherwise). body may be NULL. head_only: for HEAD requests.
 * retry_after_s: the Retry-After of a 429 or 503 (0: 1 second).
 * www_authenticate: the challenge of a 401. */
int http_write_local_response(struct buf *b, int status, const char *location,
                              const char *body, bool keep_alive, bool head_only,
                              const struct conf_route *route, unsigned retry_after_s,
                              const char *www_authenticate);

/* Append sluice's answer to a gRPC call (proxy/grpc.h) in gRPC's
 * "trailers-only" shape: 200, content-type application/grpc, grpc-status
 * and grpc-message (message: plain text, percent-encoded here; NULL or ""
 * for none) in the head, Content-Length: 0, so that over HTTP/2 it leaves
 * as one HEADERS frame with END_STREAM. The route's response headers are
 * added, but never in place of those fields. www_authenticate: the
 * challenge of the 401 this stands for (NULL otherwise). */
int http_write_grpc_local_response(struct buf *b, int grpc_status, const char *message,
                                   bool keep_alive, const struct conf_route *route,
                                   const char *www_authenticate);

/* The reason phrase of a status line (also the admin API's); "Unknown" for
 * a code the registry does not name. */
const char *http_reason(int status);

/* May this request be sent again after a failure (idempotent method, or an
 * Idempotency-Key header)? */
bool http_request_replayable(const struct h1_request *req);

/* The pre-rewrite path a route rewrite yields, written to out (NUL-ended).
 * Returns its length, or -1 when it does not fit. */
int http_rewrite_path(const struct h1_request *req, const struct conf_route *route, char *out,
                      size_t size);

/* The Location of a redirect route without a fixed location: the request's
 * URL with the route's scheme (else tls ? https : http), host (else the
 * request's, without its port) and port, and its path as the route's
 * strip_prefix/rewrite_prefix leave it, query kept. Written to out
 * (NUL-ended); returns its length, 0 when the request has no host and the
 * route names none (the caller answers 400), -1 when it does not fit. */
int http_redirect_location(const struct h1_request *req, const struct conf_route *route,
                           bool tls, char *out, size_t size);

/* Is the peer in one of the blocks? */
bool http_peer_trusted(const struct addr *peer, const struct conf_cidr *cidrs, size_t n);

#endif
