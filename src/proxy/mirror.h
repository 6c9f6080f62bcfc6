/* Request mirroring (shadow traffic): a route's `mirror` sends a copy of a
 * share of its requests to another pool, reads that pool's answer and
 * throws it away. The client never waits for the copy and never sees its
 * answer; a slow or failing mirror pool costs the real traffic nothing but
 * the copy's bytes. This is NGINX's `mirror`, Envoy's request mirror policy
 * and the usual way to try a new version on real requests before a canary
 * gets any of its answers through.
 *
 * The copy is the request exactly as the route's own backend got it (the
 * route's rewrites and the forwarding headers applied, the same
 * X-Request-Id), sent once the whole request has gone to that backend.
 *
 * Its bytes are held, not streamed: while the request is forwarded, each
 * body byte sent to the route's backend is appended to the copy (struct
 * mirror_hold), so the copy's body is what that backend got, of either
 * framing, and a slow mirror pool can never slow the client (the copy
 * goes at the mirror's pace from its own memory). A copy's body is bounded
 * by the route's mirror.max_body_size, and all the copies a worker holds,
 * building or in flight, by MIRROR_MAX_HELD bytes; past either, the copy
 * is dropped and counted as skipped, the request itself untouched. Each
 * worker also keeps at most MIRROR_MAX_IN_FLIGHT copies in flight. */
#ifndef SLUICE_PROXY_MIRROR_H
#define SLUICE_PROXY_MIRROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "balance/balance.h"
#include "core/worker.h"
#include "proto/http1.h"

#define MIRROR_MAX_IN_FLIGHT 256                  /* copies in flight per worker */
/* Bytes of copies a worker holds, building or in flight: twice the
 * largest mirror.max_body_size (32 MiB, config/route.c), so that one copy
 * of the largest size fits beside others, and a bound on what many large
 * uploads to a slow mirror pool add to the process. */
#define MIRROR_MAX_HELD (64ull * 1024 * 1024)

/* A copy being built while its request goes to the route's backend: the
 * head as that backend got it (with the mirror's set_headers), then the
 * body bytes as they are sent, chunk framing included. Its capacity is
 * counted in the worker's w->mirror_held. Owner: the exchange, until
 * mirror_send_held takes the bytes. All zero = holds nothing. */
struct mirror_hold {
    char *p;
    size_t len, cap;
    size_t head_len;                    /* the head's bytes at the start of p */
    uint64_t max_body;                  /* the route's mirror.max_body_size */
};

/* Start a copy of a request whose head (a whole HTTP/1.1 request head as
 * sluice writes it) is head; the fields of set replace or join its own. A
 * Content-Length body gets its whole room now, a chunked one room that
 * grows geometrically. 0, or -EFBIG (the body is above max_body),
 * -ENOBUFS (the worker holds too much for copies), -ENOMEM, -EINVAL (the
 * head does not parse): the hold stays empty. */
struct conf_kv;
int mirror_hold_start(struct worker *w, struct mirror_hold *h, const char *head, size_t head_len,
                      const struct conf_kv *set, size_t nset, enum h1_body_kind body,
                      uint64_t content_length, uint64_t max_body);

/* Append n body bytes just sent to the route's backend; body_size is the
 * body's size with them (for a chunked body, its chunks' data so far, so
 * that the framing does not count against max_body_size). false: the body
 * passed max_body_size, the copy would take the worker past
 * MIRROR_MAX_HELD, or memory ran out; the caller drops it
 * (mirror_hold_drop) and counts it skipped. */
bool mirror_hold_append(struct worker *w, struct mirror_hold *h, const char *p, size_t n,
                        uint64_t body_size);

/* The request is sent again from its start (a retry): the body is
 * appended again as it goes. */
void mirror_hold_rewind(struct mirror_hold *h);

/* Free what h holds; h is empty after. */
void mirror_hold_drop(struct worker *w, struct mirror_hold *h);

/* Send the copy h holds (a whole request) to a backend of pool picked
 * with req. h's bytes become the copy's (not copied again) or are freed
 * when the copy is skipped; h is empty after. */
void mirror_send_held(struct worker *w, struct pool *pool, const struct balance_req *req,
                      struct mirror_hold *h, enum h1_method method);

/* A copy that was due but is not sent (its body was not held whole). */
void mirror_skipped(struct pool *pool);

/* Cut copies to backends whose drain_timeout ran out (the worker's sweep). */
void mirror_sweep(struct worker *w);

/* Abandon every copy in flight (the worker stops). */
void mirror_close_all(struct worker *w);

#endif
