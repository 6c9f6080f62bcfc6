/* Per-worker counters and the Prometheus exposition built from them.
 * See metrics.h for the threading rules: one writer per counter (its
 * worker), relaxed loads and stores, summed by the scraper. */
#include "admin/metrics.h"
#include "core/log.h"
#include "proto/tls.h"
#include "route/route.h"
#include "peers/peers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "admin/internal.h"
#include "core/clock.h"

#define METRICS_CHUNK 256

/* One (listener, pool, backend, code) series. The key fields are written
 * before the cell is published and never again. */
struct metrics_cell {
    uint32_t listener;           /* index in rt->listeners */
    uint32_t pool;               /* index in rt->pools + 1; 0 = no pool */
    uint32_t backend;            /* index in the pool + 1; 0 = no backend */
    uint32_t epoch;              /* the backend's epoch: a discovery slot filled
                                    anew is another backend, with its own series */
    uint32_t code;               /* status; 0 = no response was sent */
    _Atomic uint64_t count;
};

/* Cells, append-only. `used` and `next` are published with release. */
struct metrics_chunk {
    _Atomic uint32_t used;
    _Atomic(struct metrics_chunk *) next;
    struct metrics_cell cells[METRICS_CHUNK];
};

struct metrics_hist {
    _Atomic uint64_t bucket[METRICS_NBUCKETS + 1];   /* not cumulative; last = +Inf */
    _Atomic uint64_t sum_us;
};

/* Owner: its worker (the only writer); read by the main thread. */
struct metrics_worker {
    struct metrics_chunk *first;       /* never changes after init */
    struct metrics_chunk *last;        /* writer only */
    struct metrics_cell **index;       /* writer only: open addressing */
    uint32_t index_cap, ncells;
    struct metrics_hist *hist;         /* one per pool */
    _Atomic uint64_t *retries;         /* one per pool */
    _Atomic uint64_t *http_bytes;      /* two per listener: in, out */
    _Atomic uint64_t dropped;          /* series not created: out of memory */
};

/* Upper bounds in microseconds; names for `le` alongside. */
static const uint64_t metrics_bounds_us[METRICS_NBUCKETS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, 30000000,
};
static const char *const metrics_bounds_text[METRICS_NBUCKETS] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
    "1", "2.5", "5", "10", "30",
};

/* The single writer's increment: no locked instruction needed. */
static inline void metrics_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline uint64_t metrics_get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

int metrics_worker_init(struct worker *w)
{
    const struct runtime *rt = w->rt;
    struct metrics_worker *m = calloc(1, sizeof(*m));

    w->metrics = m;
    if (!m)
        return -ENOMEM;
    m->first = m->last = calloc(1, sizeof(*m->first));
    m->hist = calloc(rt->npools ? rt->npools : 1, sizeof(*m->hist));
    m->retries = calloc(rt->npools ? rt->npools : 1, sizeof(*m->retries));
    m->http_bytes = calloc(rt->nlisteners ? rt->nlisteners * 2 : 1, sizeof(*m->http_bytes));
    if (!m->first || !m->hist || !m->retries || !m->http_bytes)
        return -ENOMEM;
    return 0;
}

void metrics_worker_free(struct worker *w)
{
    struct metrics_worker *m = w->metrics;
    struct metrics_chunk *c, *next;

    if (!m)
        return;
    for (c = m->first; c; c = next) {
        next = atomic_load_explicit(&c->next, memory_order_relaxed);
        free(c);
    }
    free(m->index);
    free(m->hist);
    free(m->retries);
    free(m->http_bytes);
    free(m);
    w->metrics = NULL;
}

static uint32_t metrics_hash(uint32_t l, uint32_t p, uint32_t b, uint32_t e, uint32_t code)
{
    uint64_t h = ((uint64_t)l << 48) ^ ((uint64_t)p << 32) ^ ((uint64_t)b << 10) ^ code ^
                 ((uint64_t)e << 24);

    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (uint32_t)h;
}

static bool metrics_index_put(struct metrics_cell **index, uint32_t cap, struct metrics_cell *c)
{
    uint32_t i = metrics_hash(c->listener, c->pool, c->backend, c->epoch, c->code) & (cap - 1);

    while (index[i])
        i = (i + 1) & (cap - 1);
    index[i] = c;
    return true;
}

static bool metrics_index_grow(struct metrics_worker *m)
{
    uint32_t cap = m->index_cap ? m->index_cap * 2 : 256;
    struct metrics_cell **index = calloc(cap, sizeof(*index));

    if (!index)
        return false;
    for (uint32_t i = 0; i < m->index_cap; i++)
        if (m->index[i])
            metrics_index_put(index, cap, m->index[i]);
    free(m->index);
    m->index = index;
    m->index_cap = cap;
    return true;
}

/* The cell for this key, created (and published) on first use. NULL only
 * when out of memory. */
static struct metrics_cell *metrics_cell(struct metrics_worker *m, uint32_t l, uint32_t p,
                                         uint32_t b, uint32_t e, uint32_t code)
{
    struct metrics_chunk *ch;
    struct metrics_cell *c;
    uint32_t i, used;

    if (m->index_cap) {
        i = metrics_hash(l, p, b, e, code) & (m->index_cap - 1);
        for (; (c = m->index[i]); i = (i + 1) & (m->index_cap - 1))
            if (c->listener == l && c->pool == p && c->backend == b && c->epoch == e &&
                c->code == code)
                return c;
    }
    if ((m->ncells + 1) * 2 > m->index_cap && !metrics_index_grow(m))
        return NULL;
    ch = m->last;
    used = atomic_load_explicit(&ch->used, memory_order_relaxed);
    if (used == METRICS_CHUNK) {
        struct metrics_chunk *n = calloc(1, sizeof(*n));
        if (!n)
            return NULL;
        atomic_store_explicit(&ch->next, n, memory_order_release);
        m->last = ch = n;
        used = 0;
    }
    c = &ch->cells[used];
    c->listener = l;
    c->pool = p;
    c->backend = b;
    c->epoch = e;
    c->code = code;
    atomic_store_explicit(&ch->used, used + 1, memory_order_release);
    metrics_index_put(m->index, m->index_cap, c);
    m->ncells++;
    return c;
}

void metrics_http_request(struct worker *w, const struct listener *l, const struct pool *p,
                          const struct access_http *rec)
{
    struct metrics_worker *m = w->metrics;
    const struct runtime *rt = w->rt;
    uint32_t li = (uint32_t)(l - rt->listeners), pi = 0, bi = 0, epoch = 0;
    struct metrics_cell *c;

    if (!m)
        return;
    if (rec->backend)
        p = rec->backend->pool;     /* the backend's pool is the one it was picked from */
    if (p)
        pi = (uint32_t)runtime_pool_index(rt, p) + 1;
    if (rec->backend) {
        bi = rec->backend->index + 1;
        epoch = atomic_load_explicit(&rec->backend->epoch, memory_order_relaxed);
    }
    if ((c = metrics_cell(m, li, pi, bi, epoch, rec->status > 0 ? (uint32_t)rec->status : 0)))
        metrics_add(&c->count, 1);
    else
        metrics_add(&m->dropped, 1);
    metrics_add(&m->http_bytes[li * 2], rec->bytes_in);
    metrics_add(&m->http_bytes[li * 2 + 1], rec->bytes_out);
    if (pi) {
        struct metrics_hist *h = &m->hist[pi - 1];
        uint32_t k = 0;
        while (k < METRICS_NBUCKETS && rec->total_us > metrics_bounds_us[k])
            k++;
        metrics_add(&h->bucket[k], 1);
        metrics_add(&h->sum_us, rec->total_us);
        if (rec->tries > 1)
            metrics_add(&m->retries[pi - 1], rec->tries - 1);
    }
}

void metrics_l4_session(struct worker *w, const struct pool *p, const struct access_l4 *rec)
{
    struct metrics_worker *m = w->metrics;

    if (m && p && rec->tries > 1)
        metrics_add(&m->retries[runtime_pool_index(w->rt, p)], rec->tries - 1);
}

/* ---- the exposition ---- */

/* Label values are config names (letters, digits, . _ - : [ ]), but escape
 * anyway: the format says \\, \" and \n. */
static void metrics_label(struct admin_buf *o, const char *name, const char *v)
{
    const char *run = v;

    admin_buf_puts(o, name);
    admin_buf_add(o, "=\"", 2);
    for (; *v; v++) {
        if (*v != '\\' && *v != '"' && *v != '\n')
            continue;
        admin_buf_add(o, run, (size_t)(v - run));
        admin_buf_add(o, *v == '\n' ? "\\n" : *v == '"' ? "\\\"" : "\\\\", 2);
        run = v + 1;
    }
    admin_buf_add(o, run, (size_t)(v - run));
    admin_buf_add(o, "\"", 1);
}

static void metrics_family(struct admin_buf *o, const char *name, const char *type,
                           const char *help)
{
    admin_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{pool="..",backend=".."} v */
static void metrics_backend_line(struct admin_buf *o, const char *name,
                                 const struct backend *b, uint64_t v)
{
    if (backend_vacant(b))
        return;
    admin_buf_puts(o, name);
    admin_buf_add(o, "{", 1);
    metrics_label(o, "pool", b->pool->conf->name);
    admin_buf_add(o, ",", 1);
    metrics_label(o, "backend", b->conf->name);
    admin_buf_add(o, "} ", 2);
    admin_buf_u64(o, v);
    admin_buf_add(o, "\n", 1);
}

struct metrics_row {
    uint32_t listener, pool, backend, epoch, code;
    uint64_t count;
};

static int metrics_row_cmp(const void *a, const void *b)
{
    const struct metrics_row *x = a, *y = b;

    if (x->listener != y->listener)
        return x->listener < y->listener ? -1 : 1;
    if (x->pool != y->pool)
        return x->pool < y->pool ? -1 : 1;
    if (x->backend != y->backend)
        return x->backend < y->backend ? -1 : 1;
    if (x->epoch != y->epoch)
        return x->epoch < y->epoch ? -1 : 1;
    return x->code < y->code ? -1 : x->code > y->code;
}

/* sluice_requests_total: every worker's cells, summed by key. */
static void metrics_requests(struct admin_buf *o, const struct runtime *rt,
                             const struct worker *workers, uint32_t nworkers)
{
    struct metrics_row *rows = NULL;
    size_t n = 0, cap = 0;

    metrics_family(o, "sluice_requests_total", "counter",
                   "HTTP exchanges finished, by the status sent (code 0: none was sent).");
    for (uint32_t i = 0; i < nworkers; i++) {
        const struct metrics_worker *m = workers[i].metrics;
        const struct metrics_chunk *ch = m ? m->first : NULL;

        for (; ch; ch = atomic_load_explicit(&((struct metrics_chunk *)ch)->next,
                                            memory_order_acquire)) {
            uint32_t used = atomic_load_explicit(&((struct metrics_chunk *)ch)->used,
                                                 memory_order_acquire);
            for (uint32_t k = 0; k < used; k++) {
                const struct metrics_cell *c = &ch->cells[k];
                if (n == cap) {
                    size_t ncap = cap ? cap * 2 : 256;
                    struct metrics_row *r = realloc(rows, ncap * sizeof(*r));
                    if (!r) {
                        o->oom = true;
                        free(rows);
                        return;
                    }
                    rows = r;
                    cap = ncap;
                }
                rows[n++] = (struct metrics_row){ c->listener, c->pool, c->backend, c->epoch,
                                                  c->code, metrics_get(&c->count) };
            }
        }
    }
    if (n)
        qsort(rows, n, sizeof(*rows), metrics_row_cmp);
    for (size_t i = 0; i < n;) {
        struct metrics_row r = rows[i];
        const struct pool *p = r.pool ? &rt->pools[r.pool - 1] : NULL;
        char code[16];

        const struct backend *b = p && r.backend ? &p->backends[r.backend - 1] : NULL;

        for (i++; i < n && metrics_row_cmp(&rows[i], &r) == 0; i++)
            r.count += rows[i].count;
        /* A backend discovery has removed: its series ends with it. */
        if (b && (backend_vacant(b) || atomic_load(&b->epoch) != r.epoch))
            continue;
        admin_buf_puts(o, "sluice_requests_total{");
        metrics_label(o, "listener", rt->listeners[r.listener].conf->name);
        admin_buf_add(o, ",", 1);
        metrics_label(o, "pool", p ? p->conf->name : "");
        admin_buf_add(o, ",", 1);
        metrics_label(o, "backend", b ? b->conf->name : "");
        admin_buf_add(o, ",", 1);
        snprintf(code, sizeof(code), "%u", r.code);
        metrics_label(o, "code", code);
        admin_buf_add(o, "} ", 2);
        admin_buf_u64(o, r.count);
        admin_buf_add(o, "\n", 1);
    }
    free(rows);
}

static void metrics_histograms(struct admin_buf *o, const struct runtime *rt,
                               const struct worker *workers, uint32_t nworkers)
{
    metrics_family(o, "sluice_request_duration_seconds", "histogram",
                   "Time from the first byte of a request to the end of its exchange, "
                   "for requests that went to a pool.");
    for (size_t p = 0; p < rt->npools; p++) {
        uint64_t b[METRICS_NBUCKETS + 1] = {0}, sum_us = 0, cum = 0;
        const char *name = rt->pools[p].conf->name;

        for (uint32_t i = 0; i < nworkers; i++) {
            const struct metrics_worker *m = workers[i].metrics;
            if (!m)
                continue;
            for (int k = 0; k <= METRICS_NBUCKETS; k++)
                b[k] += metrics_get(&m->hist[p].bucket[k]);
            sum_us += metrics_get(&m->hist[p].sum_us);
        }
        /* _count is the sum of the buckets read here, so +Inf == _count
         * holds in every scrape even while workers keep counting. */
        for (int k = 0; k <= METRICS_NBUCKETS; k++) {
            cum += b[k];
            admin_buf_puts(o, "sluice_request_duration_seconds_bucket{");
            metrics_label(o, "pool", name);
            admin_buf_printf(o, ",le=\"%s\"} ", k < METRICS_NBUCKETS ? metrics_bounds_text[k]
                                                                     : "+Inf");
            admin_buf_u64(o, cum);
            admin_buf_add(o, "\n", 1);
        }
        admin_buf_puts(o, "sluice_request_duration_seconds_sum{");
        metrics_label(o, "pool", name);
        admin_buf_printf(o, "} %llu.%06llu\n", (unsigned long long)(sum_us / 1000000),
                         (unsigned long long)(sum_us % 1000000));
        admin_buf_puts(o, "sluice_request_duration_seconds_count{");
        metrics_label(o, "pool", name);
        admin_buf_add(o, "} ", 2);
        admin_buf_u64(o, cum);
        admin_buf_add(o, "\n", 1);
    }
}

static void metrics_listeners(struct admin_buf *o, const struct runtime *rt,
                              const struct worker *workers, uint32_t nworkers)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } fams[] = {
        {"sluice_connections_active", "gauge", "Client connections (udp: flows) open now.",
         offsetof(struct listener, connections_active)},
        {"sluice_connections_total", "counter", "Client connections accepted (udp: flows created).",
         offsetof(struct listener, connections_total)},
        {"sluice_no_backend_total", "counter",
         "L4 connections and flows refused because no backend was eligible.",
         offsetof(struct listener, no_backend)},
        {"sluice_proxy_header_errors_total", "counter",
         "Connections closed for a bad or missing PROXY protocol header.",
         offsetof(struct listener, proxy_header_errors)},
        {"sluice_tls_handshake_errors_total", "counter",
         "Client connections closed because their TLS handshake failed (tls listeners).",
         offsetof(struct listener, tls_handshake_errors)},
        {"sluice_auth_failures_total", "counter",
         "Requests whose user or password was wrong (auth); missing credentials are not counted.",
         offsetof(struct listener, auth_failures)},
        {"sluice_ext_auth_denied_total", "counter",
         "Requests an external auth service (auth type external) answered with a denial.",
         offsetof(struct listener, ext_auth_denied)},
        {"sluice_ext_auth_errors_total", "counter",
         "External auth checks the service could not answer (down, timed out, 5xx, malformed).",
         offsetof(struct listener, ext_auth_errors)},
        {"sluice_dns_queries_total", "counter",
         "DNS queries answered, any rcode (dns listeners, the GSLB responder).",
         offsetof(struct listener, dns_queries)},
        {"sluice_listener_full_total", "counter",
         "Times a worker stopped accepting because the listener was at max_connections.",
         offsetof(struct listener, full_pauses)},
    };

    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        metrics_family(o, fams[f].name, fams[f].type, fams[f].help);
        for (size_t i = 0; i < rt->nlisteners; i++) {
            const struct listener *l = &rt->listeners[i];
            admin_buf_puts(o, fams[f].name);
            admin_buf_add(o, "{", 1);
            metrics_label(o, "listener", l->conf->name);
            admin_buf_add(o, "} ", 2);
            admin_buf_u64(o, metrics_get((const _Atomic uint64_t *)((const char *)l +
                                                                    fams[f].off)));
            admin_buf_add(o, "\n", 1);
        }
    }
    metrics_family(o, "sluice_tls_ocsp_stapled", "gauge",
                   "1 while the certificate has a current OCSP response to staple, 0 while it "
                   "has none (certificates with ocsp set only).");
    for (size_t i = 0; i < rt->nlisteners; i++) {
        const struct listener *l = &rt->listeners[i];

        for (size_t c = 0; l->tls && c < l->conf->tls->ncerts; c++) {
            int v = tls_ctx_ocsp_stapled(l->tls, c);
            if (v < 0)
                continue;
            admin_buf_puts(o, "sluice_tls_ocsp_stapled{");
            metrics_label(o, "listener", l->conf->name);
            admin_buf_add(o, ",", 1);
            metrics_label(o, "certificate", l->conf->tls->certs[c].cert);
            admin_buf_printf(o, "} %d\n", v);
        }
    }
    metrics_family(o, "sluice_bytes_total", "counter",
                   "Bytes from clients (in) and to clients (out); http: request bodies in, "
                   "responses with their heads out.");
    for (size_t i = 0; i < rt->nlisteners; i++) {
        const struct listener *l = &rt->listeners[i];
        uint64_t in = metrics_get(&l->bytes_in), out = metrics_get(&l->bytes_out);

        for (uint32_t k = 0; k < nworkers; k++) {
            const struct metrics_worker *m = workers[k].metrics;
            if (m) {
                in += metrics_get(&m->http_bytes[i * 2]);
                out += metrics_get(&m->http_bytes[i * 2 + 1]);
            }
        }
        for (int d = 0; d < 2; d++) {
            admin_buf_puts(o, "sluice_bytes_total{");
            metrics_label(o, "listener", l->conf->name);
            admin_buf_puts(o, d ? ",direction=\"out\"} " : ",direction=\"in\"} ");
            admin_buf_u64(o, d ? out : in);
            admin_buf_add(o, "\n", 1);
        }
    }
}

static void metrics_backends(struct admin_buf *o, const struct runtime *rt)
{
    static const enum backend_state states[] = {
        BACKEND_UP, BACKEND_DOWN, BACKEND_DRAINING, BACKEND_DISABLED, BACKEND_SLOW_START,
    };

    metrics_family(o, "sluice_backend_up", "gauge",
                   "1 when the backend takes new work (state UP or SLOW_START), else 0.");
    for (size_t p = 0; p < rt->npools; p++)
        for (uint32_t i = 0; i < rt->pools[p].nbackends; i++) {
            const struct backend *b = &rt->pools[p].backends[i];
            int s = atomic_load_explicit(&b->state, memory_order_relaxed);
            metrics_backend_line(o, "sluice_backend_up", b,
                                 s == BACKEND_UP || s == BACKEND_SLOW_START);
        }

    metrics_family(o, "sluice_backend_state", "gauge",
                   "1 for the state the backend is in, 0 for the others.");
    for (size_t p = 0; p < rt->npools; p++)
        for (uint32_t i = 0; i < rt->pools[p].nbackends; i++) {
            const struct backend *b = &rt->pools[p].backends[i];
            int s = atomic_load_explicit(&b->state, memory_order_relaxed);
            if (backend_vacant(b))
                continue;
            for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++) {
                admin_buf_puts(o, "sluice_backend_state{");
                metrics_label(o, "pool", b->pool->conf->name);
                admin_buf_add(o, ",", 1);
                metrics_label(o, "backend", b->conf->name);
                admin_buf_add(o, ",", 1);
                metrics_label(o, "state", backend_state_name(states[k]));
                admin_buf_puts(o, (int)states[k] == s ? "} 1\n" : "} 0\n");
            }
        }

    static const struct {
        const char *name, *type, *help;
        size_t off;
        int width;   /* 32 or 64 bits */
    } fams[] = {
        {"sluice_backend_weight", "gauge", "Effective weight (0: takes no new work).",
         offsetof(struct backend, weight), 32},
        {"sluice_backend_active_requests", "gauge",
         "Work in flight on the backend: requests (http pools) or connections and flows (L4).",
         offsetof(struct backend, active), 32},
        {"sluice_backend_sent_total", "counter",
         "Requests (http) or connections and flows (L4) sent to the backend, retries included.",
         offsetof(struct backend, total), 64},
        {"sluice_backend_failures_total", "counter",
         "Failed connects, connect timeouts, resets and broken responses.",
         offsetof(struct backend, failures), 64},
    };
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        metrics_family(o, fams[f].name, fams[f].type, fams[f].help);
        for (size_t p = 0; p < rt->npools; p++)
            for (uint32_t i = 0; i < rt->pools[p].nbackends; i++) {
                const struct backend *b = &rt->pools[p].backends[i];
                const char *field = (const char *)b + fams[f].off;
                uint64_t v = fams[f].width == 32
                    ? atomic_load_explicit((_Atomic uint32_t *)field, memory_order_relaxed)
                    : atomic_load_explicit((_Atomic uint64_t *)field, memory_order_relaxed);
                metrics_backend_line(o, fams[f].name, b, v);
            }
    }

    metrics_family(o, "sluice_health_checks_total", "counter",
                   "Active health checks by result (pass, fail); pools with a health_check only.");
    for (size_t p = 0; p < rt->npools; p++) {
        if (rt->pools[p].conf->health.type == HEALTH_NONE)
            continue;
        for (uint32_t i = 0; i < rt->pools[p].nbackends; i++) {
            const struct backend *b = &rt->pools[p].backends[i];
            if (backend_vacant(b))
                continue;
            for (int r = 0; r < 2; r++) {
                admin_buf_puts(o, "sluice_health_checks_total{");
                metrics_label(o, "pool", b->pool->conf->name);
                admin_buf_add(o, ",", 1);
                metrics_label(o, "backend", b->conf->name);
                admin_buf_puts(o, r ? ",result=\"fail\"} " : ",result=\"pass\"} ");
                admin_buf_u64(o, metrics_get(r ? &b->checks_failed : &b->checks_passed));
                admin_buf_add(o, "\n", 1);
            }
        }
    }
}

/* One counter per pool, read from an atomic field of struct pool. */
static void metrics_pool_counter(struct admin_buf *o, const struct runtime *rt, const char *name,
                                 const char *help, size_t offset)
{
    metrics_family(o, name, "counter", help);
    for (size_t p = 0; p < rt->npools; p++) {
        const _Atomic uint64_t *v = (const _Atomic uint64_t *)((const char *)&rt->pools[p] + offset);
        admin_buf_puts(o, name);
        admin_buf_add(o, "{", 1);
        metrics_label(o, "pool", rt->pools[p].conf->name);
        admin_buf_add(o, "} ", 2);
        admin_buf_u64(o, metrics_get(v));
        admin_buf_add(o, "\n", 1);
    }
}

static void metrics_pools(struct admin_buf *o, const struct runtime *rt,
                          const struct worker *workers, uint32_t nworkers)
{
    metrics_family(o, "sluice_retries_total", "counter",
                   "Attempts on another backend after a refused, failed or timed-out connect.");
    for (size_t p = 0; p < rt->npools; p++) {
        uint64_t v = 0;
        for (uint32_t i = 0; i < nworkers; i++)
            if (workers[i].metrics)
                v += metrics_get(&((const struct metrics_worker *)workers[i].metrics)->retries[p]);
        admin_buf_puts(o, "sluice_retries_total{");
        metrics_label(o, "pool", rt->pools[p].conf->name);
        admin_buf_add(o, "} ", 2);
        admin_buf_u64(o, v);
        admin_buf_add(o, "\n", 1);
    }
    metrics_pool_counter(o, rt, "sluice_retry_budget_exhausted_total",
                         "Retries not made because the pool's retry budget was used up.",
                         offsetof(struct pool, retry_budget_exhausted));
    metrics_pool_counter(o, rt, "sluice_circuit_breaker_rejected_total",
                         "Requests answered 503 at once because the pool was over a "
                         "circuit_breaker limit.", offsetof(struct pool, breaker_rejected));

    metrics_family(o, "sluice_mirror_requests_total", "counter",
                   "Copies of requests sent to the pool as a route's mirror, by result: ok (an "
                   "answer was read to its end and dropped), failed (connect failure, reset, "
                   "timeout, bad answer) or skipped (not sent: too many in flight, no backend, "
                   "a body not kept whole).");
    for (size_t p = 0; p < rt->npools; p++) {
        static const char *const result[] = {"ok", "failed", "skipped"};
        const struct pool *pl = &rt->pools[p];
        const _Atomic uint64_t *v[] = {&pl->mirror_ok, &pl->mirror_failed, &pl->mirror_skipped};

        if (!pl->conf->mirror_target)
            continue;
        for (int r = 0; r < 3; r++) {
            admin_buf_puts(o, "sluice_mirror_requests_total{");
            metrics_label(o, "pool", pl->conf->name);
            admin_buf_printf(o, ",result=\"%s\"} ", result[r]);
            admin_buf_u64(o, metrics_get(v[r]));
            admin_buf_add(o, "\n", 1);
        }
    }

    metrics_family(o, "sluice_discovery_resolutions_total", "counter",
                   "DNS resolutions of a discovery pool's name, by result: ok (the answer was "
                   "applied) or failed (the last answer was kept).");
    for (size_t p = 0; p < rt->npools; p++) {
        if (!rt->pools[p].conf->discovery.dns)
            continue;
        for (int r = 0; r < 2; r++) {
            admin_buf_puts(o, "sluice_discovery_resolutions_total{");
            metrics_label(o, "pool", rt->pools[p].conf->name);
            admin_buf_puts(o, r ? ",result=\"failed\"} " : ",result=\"ok\"} ");
            admin_buf_u64(o, metrics_get(r ? &rt->pools[p].discovery_failures
                                           : &rt->pools[p].discovery_resolutions));
            admin_buf_add(o, "\n", 1);
        }
    }

    metrics_family(o, "sluice_outlier_ejections_total", "counter",
                   "Times passive outlier detection took the backend out of rotation.");
    for (size_t p = 0; p < rt->npools; p++)
        for (uint32_t i = 0; i < rt->pools[p].nbackends; i++) {
            const struct backend *b = &rt->pools[p].backends[i];
            metrics_backend_line(o, "sluice_outlier_ejections_total", b,
                                 metrics_get(&b->ejections_total));
        }
    metrics_family(o, "sluice_backend_ejected", "gauge",
                   "1 while outlier detection keeps the backend out of rotation.");
    for (size_t p = 0; p < rt->npools; p++)
        for (uint32_t i = 0; i < rt->pools[p].nbackends; i++) {
            const struct backend *b = &rt->pools[p].backends[i];
            metrics_backend_line(o, "sluice_backend_ejected", b,
                                 (uint64_t)atomic_load_explicit(&b->ejected, memory_order_relaxed));
        }
}

/* One line of a rate_limit family: listener and limit ("listener", "routeN"). */
static void metrics_limit_line(struct admin_buf *o, const char *name, const char *listener,
                               const struct conf_rate_limit *c, uint64_t v)
{
    admin_buf_puts(o, name);
    admin_buf_add(o, "{", 1);
    metrics_label(o, "listener", listener);
    admin_buf_add(o, ",", 1);
    metrics_label(o, "limit", c->label);
    admin_buf_add(o, "} ", 2);
    admin_buf_u64(o, v);
    admin_buf_add(o, "\n", 1);
}

static void metrics_rate_limits(struct admin_buf *o, const struct runtime *rt)
{
    static const struct {
        const char *name, *help;
        uint64_t (*get)(const struct rate_limiter *);
    } fams[] = {
        {"sluice_rate_limited_total",
         "Requests (http) or connections (tcp) refused by a rate_limit.", rate_limiter_limited},
        {"sluice_rate_limit_evictions_total",
         "Keys a rate_limit forgot while still limited, for lack of room (raise max_keys).",
         rate_limiter_evicted},
    };

    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        metrics_family(o, fams[f].name, "counter", fams[f].help);
        for (size_t i = 0; i < rt->nlisteners; i++) {
            const struct conf_listener *l = rt->listeners[i].conf;

            if (l->rate_limit)
                metrics_limit_line(o, fams[f].name, l->name, l->rate_limit,
                                   fams[f].get(runtime_limiter(rt, l->rate_limit)));
            for (size_t r = 0; r < l->nroutes; r++)
                if (l->routes[r].rate_limit)
                    metrics_limit_line(o, fams[f].name, l->name, l->routes[r].rate_limit,
                                       fams[f].get(runtime_limiter(rt, l->routes[r].rate_limit)));
        }
    }
}

/* Shared rate limits: messages between the peers (peers/peers.h). */
static void metrics_peers(struct admin_buf *o, const struct peers *p)
{
    const struct { const char *dir; uint64_t v; } rows[] = {
        {"sent", p->sent}, {"received", p->received}, {"rejected", p->rejected},
        {"send_failed", p->send_errors},
    };

    metrics_family(o, "sluice_peer_messages_total", "counter",
                   "Shared rate-limit messages: sent (per node), received and counted, rejected "
                   "(bad signature, stale, replayed or malformed), send_failed.");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        admin_buf_printf(o, "sluice_peer_messages_total{result=\"%s\"} %llu\n", rows[i].dir,
                         (unsigned long long)rows[i].v);
    metrics_family(o, "sluice_peer_notes_dropped_total", "counter",
                   "Requests let through by a shared limit that the peers were not told of "
                   "(a worker's ring was full).");
    admin_buf_printf(o, "sluice_peer_notes_dropped_total %llu\n",
                     (unsigned long long)peers_dropped(p));
}

void metrics_render(struct admin_buf *o, const struct runtime *rt,
                    const struct worker *workers, uint32_t nworkers, uint64_t start_wall_us,
                    const struct peers *peers)
{
    uint64_t dropped = 0;

    metrics_family(o, "sluice_start_time_seconds", "gauge",
                   "When this sluice started, seconds since the Unix epoch.");
    admin_buf_printf(o, "sluice_start_time_seconds %llu\n",
                     (unsigned long long)(start_wall_us / 1000000));
    metrics_family(o, "sluice_log_lines_dropped_total", "counter",
                   "Log lines lost because the log could not take them (full disk or pipe).");
    admin_buf_printf(o, "sluice_log_lines_dropped_total{log=\"error\"} %llu\n"
                        "sluice_log_lines_dropped_total{log=\"access\"} %llu\n",
                     (unsigned long long)log_lines_dropped(LOG_ERROR_LOG),
                     (unsigned long long)log_lines_dropped(LOG_ACCESS_LOG));
    metrics_requests(o, rt, workers, nworkers);
    metrics_histograms(o, rt, workers, nworkers);
    metrics_listeners(o, rt, workers, nworkers);
    metrics_backends(o, rt);
    metrics_pools(o, rt, workers, nworkers);
    metrics_rate_limits(o, rt);
    if (peers && peers->conf)
        metrics_peers(o, peers);
    for (uint32_t i = 0; i < nworkers; i++)
        if (workers[i].metrics)
            dropped += metrics_get(&((const struct metrics_worker *)workers[i].metrics)->dropped);
    metrics_family(o, "sluice_metrics_dropped_total", "counter",
                   "Requests not counted in sluice_requests_total for lack of memory.");
    admin_buf_puts(o, "sluice_metrics_dropped_total ");
    admin_buf_u64(o, dropped);
    admin_buf_add(o, "\n", 1);
}
