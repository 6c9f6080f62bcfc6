/* Metrics: counters the workers keep for the admin server's /metrics.
 *
 * Each worker owns a `struct metrics_worker` (hung off worker->metrics) and
 * is its only writer: a counter update is a relaxed load and a relaxed
 * store, no lock and no read-modify-write shared with another core. The
 * main thread reads the same atomics (relaxed) when /metrics is scraped and
 * sums over the workers, so a scrape costs the workers nothing.
 *
 * Per-request series (listener, pool, backend, code) are created on first
 * use. They live in append-only chunks that are published with release
 * stores, so the scraper can walk them while the worker adds more; the
 * worker finds them again through a hash index only it touches. */
#ifndef SLUICE_ADMIN_METRICS_H
#define SLUICE_ADMIN_METRICS_H

#include <stdint.h>

#include "core/worker.h"
#include "proxy/access_log.h"

struct admin_buf;

/* Request duration histogram bounds, seconds (Prometheus `le`). */
#define METRICS_NBUCKETS 15

/* worker.c: allocate and free w->metrics (needs w->rt). worker_init fails
 * with -ENOMEM when this does. */
int metrics_worker_init(struct worker *w);
void metrics_worker_free(struct worker *w);

/* proxy/http.c, once per finished exchange (where it is logged). */
void metrics_http_request(struct worker *w, const struct listener *l, const struct pool *p,
                          const struct access_http *rec);

/* proxy/tcp.c, once per finished session: counts its retries. */
void metrics_l4_session(struct worker *w, const struct pool *p, const struct access_l4 *rec);

/* The whole exposition (text format 0.0.4), from the main thread. */
struct peers;
void metrics_render(struct admin_buf *out, const struct runtime *rt,
                    const struct worker *workers, uint32_t nworkers, uint64_t start_wall_us,
                    const struct peers *peers);

#endif
