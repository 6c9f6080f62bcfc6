/* The runtime: what sluice builds from a loaded config and shares between
 * the main thread and the workers: pools with their backend state, and
 * listeners with their counters. Built once at startup on the main thread,
 * before any worker runs; afterwards only its atomics change. */
#ifndef SLUICE_CORE_RUNTIME_H
#define SLUICE_CORE_RUNTIME_H

#include <stddef.h>

#include "balance/balance.h"
#include "config/config.h"
#include "net/listener.h"

/* Owner: main.c. */
struct runtime {
    const struct config *cfg;
    struct pool *pools;            /* same order as cfg->pools */
    size_t npools;
    struct listener *listeners;    /* same order as cfg->listeners */
    size_t nlisteners;
    struct rate_limiter **limiters;  /* by conf_rate_limit.index */
    size_t nlimiters;
};

int runtime_init(struct runtime *rt, const struct config *cfg);
void runtime_destroy(struct runtime *rt);

/* The runtime pool built from a config pool. */
struct pool *runtime_pool(struct runtime *rt, const struct conf_pool *cp);
size_t runtime_pool_index(const struct runtime *rt, const struct pool *p);

/* The limiter of a rate_limit block of rt's config. */
static inline struct rate_limiter *runtime_limiter(const struct runtime *rt,
                                                   const struct conf_rate_limit *c)
{
    return rt->limiters[c->index];
}

#endif
