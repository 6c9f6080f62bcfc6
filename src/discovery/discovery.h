/* DNS service discovery: the backends of a pool with a `discovery` block
 * are the addresses its DNS name resolves to (A, AAAA, or SRV targets and
 * ports), resolved with c-ares on the main thread's loop every interval.
 *
 * - An address that appears fills a vacant backend slot (balance/slots.c),
 *   named by its address ("10.0.0.5:8080"), so two sluice instances, and a
 *   reloaded one, hash keys to the same backends and keep the same sticky
 *   cookies. With a health check it starts DOWN until a check passes. With
 *   slow_start it ramps (SLOW_START) from its first pass, or, without a
 *   check, from when it is added; not in the first answer at start.
 * - An address that disappears is DRAINING: it takes no new work, and what
 *   it has finishes (up to the pool's drain_timeout). Once nothing uses it
 *   and every worker has swept since (a grace period, so that no worker
 *   still holds it between a pick and its count), its slot is vacated and
 *   can take another address.
 * - A failed resolution (timeout, SERVFAIL, refused) changes nothing: the
 *   last answer stays until a resolution succeeds. A successful empty one
 *   (NXDOMAIN, no records) removes every backend.
 * - Answers are sorted by address and cut at max_backends, so instances
 *   that see the same answer keep the same subset. */
#ifndef SLUICE_DISCOVERY_H
#define SLUICE_DISCOVERY_H

#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "core/runtime.h"

struct health_checker;
struct worker;
struct discovery_pool;

/* Owner: main.c. */
struct discovery {
    struct loop *loop;
    struct runtime *rt;
    struct health_checker *hc;      /* NULL until attached */
    struct worker *workers;         /* for the grace period; none until attached */
    uint32_t nworkers;
    struct discovery_pool *pools;   /* one per discovery pool */
    size_t npools;
    size_t initial_pending;         /* first resolutions still running */
    struct timer tick;              /* moves removed backends towards vacant */
    uint64_t *grace_mark;           /* per worker: its sweeps when the grace began */
    bool grace_running;
};

/* Start resolving every discovery pool of rt at once. main() runs the loop
 * until initial_pending is 0 (each bounded by the pool's timeout and
 * tries) before health checks and workers start, so that a pool has its
 * backends from the first request. 0 or -errno. */
int discovery_start(struct discovery *d, struct loop *loop, struct runtime *rt);
/* From now on, tell hc of slots filled and vacated, and wait for these
 * workers' sweeps before vacating a slot (until then, with no worker
 * running, a slot is vacated once idle). 0 or -ENOMEM. */
int discovery_attach(struct discovery *d, struct health_checker *hc, struct worker *workers,
                     uint32_t nworkers);
void discovery_stop(struct discovery *d);

/* A reload's new process whose first resolution of POOL failed: take NAME
 * (a discovered backend's name is its address) as a backend until a
 * resolution succeeds, at WEIGHT (an SRV record's). Ignored for any other
 * pool. */
void discovery_seed(struct discovery *d, const char *pool, const char *name, uint32_t weight);

#endif
