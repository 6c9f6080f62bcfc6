/* Active health checks, run on the main thread's loop. Each checked backend
 * has its own timer; a check never blocks. A backend goes DOWN after
 * unhealthy_threshold consecutive failures and UP after healthy_threshold
 * consecutive passes, so one lost check changes nothing. A DOWN backend is
 * checked every unhealthy_interval instead of interval. States set by the
 * operator (DRAINING, DISABLED) are left alone. */
#ifndef SLUICE_HEALTH_H
#define SLUICE_HEALTH_H

#include <stdbool.h>

#include "core/loop.h"
#include "core/runtime.h"

struct health_target;

/* Owner: main.c. */
struct health_checker {
    struct loop *loop;
    struct runtime *rt;
    struct timer tick;            /* outlier detection and slow start, every 100 ms */
    size_t initial_pending;       /* first checks still running after start */
    struct health_target *targets;
    size_t ntargets;
    uint64_t rng;
};

int health_start(struct health_checker *hc, struct loop *loop, struct runtime *rt);

/* outlier.c: eject backends whose real traffic keeps failing, return them
 * when their time is up, and move slow-start ramps along. Runs from the
 * checker's tick on the main thread. */
void health_tick(struct health_checker *hc, uint64_t now_ms);
/* How long an ejection at this multiplier lasts: ejection_time × it (0
 * counts as 1), at most max_ejection_time. */
uint64_t outlier_ejection_ms(const struct conf_outlier *o, uint32_t multiplier);
void health_stop(struct health_checker *hc);

/* Would the checker let b take traffic? False only while b's last
 * unhealthy_threshold checks all failed; true for a backend without a check.
 * The admin API asks this when an operator enables a backend, so `enable`
 * does not put a dead backend back in rotation (it goes DOWN, and the
 * checker brings it UP after healthy_threshold passes). */
bool health_backend_passing(const struct health_checker *hc, const struct backend *b);

/* Reload (core/reload.c): the old process's checks of b were passing or
 * not. After the first round: where the first check disagrees, the state
 * the old process had stays, and the thresholds decide from there, so a
 * reload neither brings back a failing backend on one lucky check nor
 * takes out a healthy one on one failure. */
void health_seed(struct health_checker *hc, struct backend *b, bool passing);

/* Discovery (src/discovery/) filled or emptied b's slot: forget what the
 * checks knew, and check the new backend at once. A filled slot with checks
 * starts DOWN (the caller sets it) unless initial_up, as at start. */
void health_backend_slot_changed(struct health_checker *hc, struct backend *b);

#endif
