/* Active TCP checks: a non-blocking connect that must complete within
 * `timeout`. The next check starts `interval` after the previous one began,
 * minus up to 10% jitter so that checks of many backends spread out; jitter
 * only shortens the interval, so the detection window stays within
 * interval × unhealthy_threshold (+ one interval for the phase). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "balance/balance.h"
#include "core/clock.h"
#include "core/log.h"
#include "health/health.h"

/* Owner: the health checker. */
struct health_target {
    struct io io;                 /* the check's socket; fd -1 between checks */
    struct timer timer;           /* next check, or the running check's timeout */
    struct health_checker *hc;
    struct backend *b;
    const struct conf_health *conf;
    uint32_t passes;              /* consecutive */
    uint32_t fails;               /* consecutive */
    uint64_t started_ms;
    bool running;
};

static uint64_t next_delay(struct health_target *t)
{
    uint64_t iv = t->conf->interval_ms;
    uint64_t jitter = iv / 10;

    return iv - (jitter ? balance_rand(&t->hc->rng) % (jitter + 1) : 0);
}

static void check_finish(struct health_target *t, bool ok, const char *why)
{
    struct backend *b = t->b;
    int state;

    if (t->io.fd >= 0) {
        loop_del(t->hc->loop, &t->io);
        close(t->io.fd);
        t->io.fd = -1;
    }
    t->running = false;
    timer_arm(&t->hc->loop->timers, &t->timer, t->started_ms + next_delay(t));

    state = atomic_load(&b->state);
    if (ok) {
        atomic_fetch_add_explicit(&b->checks_passed, 1, memory_order_relaxed);
        t->fails = 0;
        t->passes++;
        if (state == BACKEND_DOWN && t->passes >= t->conf->healthy_threshold)
            backend_set_state(b, BACKEND_UP, "health check passed");
    } else {
        atomic_fetch_add_explicit(&b->checks_failed, 1, memory_order_relaxed);
        t->passes = 0;
        t->fails++;
        log_debug("event=health_check_failed pool=%s backend=%s why=\"%s\" consecutive=%u",
                  b->pool->conf->name, b->conf->name, why, t->fails);
        if ((state == BACKEND_UP || state == BACKEND_SLOW_START) &&
            t->fails >= t->conf->unhealthy_threshold)
            backend_set_state(b, BACKEND_DOWN, why);
    }
}

static void check_io(struct io *io, uint32_t events)
{
    struct health_target *t = (struct health_target *)io;
    int err = 0;
    socklen_t len = sizeof(err);

    getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0 && (events & EPOLLOUT))
        check_finish(t, true, NULL);
    else
        check_finish(t, false, strerror(err ? err : ECONNREFUSED));
}

static void check_start(struct health_target *t)
{
    const struct addr *a = &t->b->conf->address;
    int fd;

    t->started_ms = clock_now_ms();
    t->running = true;
    fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        check_finish(t, false, strerror(errno));
        return;
    }
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        check_finish(t, false, strerror(err));
        return;
    }
    t->io.fd = fd;
    if (loop_add(t->hc->loop, &t->io, EPOLLOUT) < 0) {
        check_finish(t, false, "epoll");
        return;
    }
    timer_arm(&t->hc->loop->timers, &t->timer, t->started_ms + t->conf->timeout_ms);
}

static void check_timer(struct timer *tm)
{
    struct health_target *t = (void *)((char *)tm - offsetof(struct health_target, timer));

    if (t->running)
        check_finish(t, false, "timeout");
    else
        check_start(t);
}

int health_start(struct health_checker *hc, struct loop *loop, struct runtime *rt)
{
    size_t n = 0, k = 0;

    memset(hc, 0, sizeof(*hc));
    hc->loop = loop;
    hc->rng = clock_mono_us() | 1;
    for (size_t i = 0; i < rt->npools; i++)
        if (rt->pools[i].conf->health.type != HEALTH_NONE)
            n += rt->pools[i].nbackends;
    if (n == 0)
        return 0;
    hc->targets = calloc(n, sizeof(*hc->targets));
    if (!hc->targets)
        return -ENOMEM;
    for (size_t i = 0; i < rt->npools; i++) {
        struct pool *p = &rt->pools[i];
        if (p->conf->health.type == HEALTH_NONE)
            continue;
        for (uint32_t j = 0; j < p->nbackends; j++) {
            struct health_target *t = &hc->targets[k++];
            t->hc = hc;
            t->b = &p->backends[j];
            t->conf = &p->conf->health;
            t->io.fd = -1;
            t->io.cb = check_io;
            timer_init(&t->timer, check_timer);
            /* Spread the first checks over a quarter of the interval. */
            timer_arm(&loop->timers, &t->timer,
                      clock_now_ms() + balance_rand(&hc->rng) % (t->conf->interval_ms / 4 + 1));
        }
    }
    hc->ntargets = n;
    return 0;
}

void health_stop(struct health_checker *hc)
{
    for (size_t i = 0; i < hc->ntargets; i++) {
        struct health_target *t = &hc->targets[i];
        timer_cancel(&hc->loop->timers, &t->timer);
        if (t->io.fd >= 0) {
            loop_del(hc->loop, &t->io);
            close(t->io.fd);
        }
    }
    free(hc->targets);
    hc->targets = NULL;
    hc->ntargets = 0;
}

bool health_backend_passing(const struct health_checker *hc, const struct backend *b)
{
    for (size_t i = 0; i < hc->ntargets; i++) {
        const struct health_target *t = &hc->targets[i];
        if (t->b == b)
            return t->fails < t->conf->unhealthy_threshold;
    }
    return true;
}
