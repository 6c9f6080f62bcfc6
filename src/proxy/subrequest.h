/* One HTTP/1.1 request that sluice itself sends to a pool, on the worker's
 * event loop, with its answer handed back whole: the status and fields, and
 * the body up to a bound. The exchange an external auth check is
 * (proxy/ext_auth.c) and a mirrored copy of a request is (proxy/mirror.c,
 * which keeps no body of the answer).
 *
 * The request goes to a backend the pool's balancer picks (with the
 * caller's hash key, if any), over one of the worker's idle keep-alive
 * connections to it or a new one (TLS for a pool with tls, a stream of an
 * HTTP/2 session for an http2 pool, as upstream.c and h2_upstream.c give
 * them). A connect that fails goes to another backend, up to `tries`; a
 * reused connection the backend had closed is replaced once by a fresh one.
 * The answer is read by its framing (h1_response parser, Content-Length,
 * chunked, or the close); a 1xx is skipped. The connection goes back to the
 * idle list only when the whole request went out and the answer ended
 * exactly where its framing said.
 *
 * The caller hears once, through its callback, never from inside
 * subrequest_start: an answer (error NULL) or a failure (error says why,
 * for a log line). Any whole answer is an answer, whatever its status: a
 * 5xx, and a 101 (or any answer that turns the connection into a tunnel),
 * which nothing asked for and of which only the head is read; judging it
 * is the caller's. Backends are counted as for proxied requests: active
 * while in use, a failure or a 5xx reported to outlier detection, the
 * answer's latency (from the connect) to ewma. */
#ifndef SLUICE_PROXY_SUBREQUEST_H
#define SLUICE_PROXY_SUBREQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "balance/balance.h"
#include "core/buffer.h"
#include "core/worker.h"
#include "proto/http1.h"

#define SUBREQUEST_MAX_HEADERS 100     /* answer fields; more is a bad answer */
#define SUBREQUEST_MAX_TRIES 4         /* backends tried when connects fail */

/* What came back. Valid only during the callback: head and body point
 * into the subrequest's own buffers, freed when the callback returns. */
struct subrequest_answer {
    const char *error;                 /* NULL: an answer; else why none (static text) */
    const struct h1_response *head;    /* error NULL: status and fields */
    const char *body;                  /* the body's first max_body bytes */
    size_t body_len;
    bool body_cut;                     /* the body was longer: body holds its start */
    struct backend *backend;           /* who answered or failed last; NULL: none picked */
};

typedef void (*subrequest_cb)(void *arg, const struct subrequest_answer *a);

struct subrequest_params {
    struct pool *pool;
    const struct balance_req *pick;    /* hash key for ring_hash/maglev/ip_hash; NULL: none */
    /* The request, head and body as sent, one of two ways: */
    struct buf *request;               /* taken (freed by the subrequest, also when start
                                          fails); or NULL, and then: */
    const char *request_bytes;         /* lent: the caller keeps them, unchanged, until the */
    size_t request_len;                /* callback or subrequest_cancel (of any size) */
    size_t head_len;                   /* the head's bytes at the request's start (an HTTP/2
                                          stream takes the head alone first); 0: all of it */
    enum h1_method method;             /* of the request: a HEAD's answer has no body */
    uint64_t deadline_ms;              /* the whole exchange ends by then (clock_now_ms
                                          time); 0: only the pool's timeouts */
    uint32_t max_body;                 /* answer body bytes kept; the rest is read, dropped.
                                          0: none kept, and body_cut stays false */
    uint32_t tries;                    /* 1..SUBREQUEST_MAX_TRIES */
    subrequest_cb cb;
    void *arg;
};

/* Owner: its caller, until the callback or subrequest_cancel. */
struct subrequest;

/* Start it. NULL when no backend could be tried at all (none to pick, the
 * pool's max_connections reached, out of memory): *why says which, and no
 * callback comes. Once a backend was picked, every end comes through the
 * callback, a connect that failed at once included. */
struct subrequest *subrequest_start(struct worker *w, const struct subrequest_params *p,
                                    const char **why);

/* The caller goes away first: no callback will come, and s is gone. Its
 * connection is closed (an answer half-read cannot be left on it). A no-op
 * from inside s's own callback, after which s is freed anyway. */
void subrequest_cancel(struct subrequest *s);

/* End s now as a failure of the backend it is on (counted against that
 * backend as any failed try is), for a caller that cuts it (the backend's
 * drain ran out, the worker stops) and still hears how it ended: the
 * callback comes from inside this call, with error why (static text). A
 * no-op from inside s's own callback. */
void subrequest_fail(struct subrequest *s, const char *why);

/* The backend s is on now; NULL between tries or once it ended. */
struct backend *subrequest_backend(const struct subrequest *s);

#endif
