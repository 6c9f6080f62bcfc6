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
 * Each worker keeps at most MIRROR_MAX_IN_FLIGHT copies in flight; beyond
 * that, and for bodies sluice did not keep whole, a copy is skipped and
 * counted. */
#ifndef SLUICE_PROXY_MIRROR_H
#define SLUICE_PROXY_MIRROR_H

#include <stddef.h>

#include "balance/balance.h"
#include "core/worker.h"
#include "proto/http1.h"

#define MIRROR_MAX_IN_FLIGHT 256       /* copies in flight per worker */
#define MIRROR_MAX_BODY (64u * 1024u)  /* request bodies kept whole for a copy */

/* Send a copy: head (the bytes the route's backend got, a whole HTTP/1.1
 * request head as sluice writes it) with the fields of set replacing or
 * joining its own, then body, to a backend of pool picked with req.
 * Everything is copied; the caller's bytes may go away at once. */
struct conf_kv;
void mirror_send(struct worker *w, struct pool *pool, const struct balance_req *req,
                 const char *head, size_t head_len, const struct conf_kv *set, size_t nset,
                 const char *body, size_t body_len, enum h1_method method);

/* A copy that was due but is not sent (its body was not kept whole). */
void mirror_skipped(struct pool *pool);

/* Cut copies to backends whose drain_timeout ran out (the worker's sweep). */
void mirror_sweep(struct worker *w);

/* Abandon every copy in flight (the worker stops). */
void mirror_close_all(struct worker *w);

#endif
