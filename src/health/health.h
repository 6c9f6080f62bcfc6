/* Active health checks, run on the main thread's loop. Each checked backend
 * has its own timer; a check never blocks. A backend goes DOWN after
 * unhealthy_threshold consecutive failures and UP after healthy_threshold
 * consecutive passes, so one lost check changes nothing. States set by the
 * operator (DRAINING, DISABLED) are left alone. */
#ifndef SLUICE_HEALTH_H
#define SLUICE_HEALTH_H

#include "core/loop.h"
#include "core/runtime.h"

struct health_target;

/* Owner: main.c. */
struct health_checker {
    struct loop *loop;
    struct health_target *targets;
    size_t ntargets;
    uint64_t rng;
};

int health_start(struct health_checker *hc, struct loop *loop, struct runtime *rt);
void health_stop(struct health_checker *hc);

#endif
