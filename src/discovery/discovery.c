/* DNS service discovery (see discovery.h): c-ares on the main loop, and
 * what each answer does to a pool's backend slots. */
#include "discovery/discovery.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "balance/balance.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/worker.h"
#include "health/health.h"
#include "proto/dns.h"

#define DISCOVERY_TICK_MS 250
#define DISCOVERY_TRIES 2         /* per server, as c-ares counts them */

#define DNS_CLASS_IN 1

/* What discovery knows of a slot (main thread only). */
enum slot_phase {
    SLOT_FREE,         /* vacant */
    SLOT_LIVE,         /* in the last answer */
    SLOT_GONE,         /* left the answer: draining until nothing uses it */
    SLOT_GRACE,        /* nothing used it: vacated once every worker has swept */
};

struct slot_info {
    uint8_t phase;     /* enum slot_phase */
    bool drained;      /* we made it DRAINING (not the operator) */
    bool seen;         /* in the answer being applied */
};

/* One address of an answer. */
struct found {
    struct addr addr;
    char text[ADDR_TEXT_MAX];
    uint32_t weight;
};

/* A c-ares socket, watched on the loop. Freed after the event batch (like
 * every io that a callback may close). */
struct dsock {
    struct io io;
    struct discovery_pool *dp;
    struct dsock *next;
    struct loop_task free_task;
};

/* A lookup of addresses: the pool's name (a, aaaa), or an SRV target. */
struct lookup {
    struct discovery_pool *dp;
    uint16_t port;
    uint32_t weight;
};

/* Owner: its struct discovery. */
struct discovery_pool {
    struct discovery *d;
    struct pool *pool;
    const struct conf_discovery *conf;
    ares_channel ch;
    bool ch_ok;
    struct dsock *socks;
    struct timer next;               /* the next resolution */
    struct timer ares_timer;         /* c-ares's own timeouts */
    struct slot_info *slots;         /* one per backend slot */
    /* The resolution under way. */
    bool running, initial, failed, stopping;
    char error[96];                  /* why it failed */
    uint32_t pending;                /* lookups not answered yet */
    struct found *found;
    size_t nfound, capfound;
    int64_t min_ttl;                 /* smallest TTL of its records, s; -1 = none seen */
    bool last_failed;                /* the previous one failed: log only changes */
    bool seedable;                   /* the first resolution failed (discovery_seed) */
};

static void resolve(struct discovery_pool *dp);

/* ---- c-ares on the loop ---- */

static void rearm_ares_timer(struct discovery_pool *dp)
{
    struct timeval tv;

    timer_cancel(&dp->d->loop->timers, &dp->ares_timer);
    if (ares_timeout(dp->ch, NULL, &tv))
        timer_arm(&dp->d->loop->timers, &dp->ares_timer,
                  clock_now_ms() + (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000 + 1);
}

static void sock_event(struct io *io, uint32_t events)
{
    struct dsock *s = (struct dsock *)io;
    struct discovery_pool *dp = s->dp;
    int fd = io->fd;

    if (fd < 0)
        return;              /* closed earlier in this batch */
    ares_process_fd(dp->ch, events & (EPOLLIN | EPOLLERR | EPOLLHUP) ? fd : ARES_SOCKET_BAD,
                    events & EPOLLOUT ? fd : ARES_SOCKET_BAD);
    rearm_ares_timer(dp);
}

static void sock_free(struct loop_task *t)
{
    free((char *)t - offsetof(struct dsock, free_task));
}

/* c-ares tells which of its sockets it waits on, and for what; (0, 0)
 * before it closes one. */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct discovery_pool *dp = data;
    struct dsock **pp = &dp->socks, *s;
    uint32_t events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);

    while (*pp && (*pp)->io.fd != fd)
        pp = &(*pp)->next;
    s = *pp;
    if (!events) {
        if (s) {
            *pp = s->next;
            loop_del(dp->d->loop, &s->io);
            s->io.fd = -1;
            loop_task_queue(dp->d->loop, &s->free_task);
        }
        return;
    }
    if (s) {
        loop_mod(dp->d->loop, &s->io, events);
        return;
    }
    if (!(s = calloc(1, sizeof(*s))))
        return;              /* the query times out and is retried */
    s->io.fd = fd;
    s->io.cb = sock_event;
    s->dp = dp;
    loop_task_init(&s->free_task, sock_free);
    if (loop_add(dp->d->loop, &s->io, events) < 0) {
        free(s);
        return;
    }
    s->next = dp->socks;
    dp->socks = s;
}

static void ares_timer_cb(struct timer *t)
{
    struct discovery_pool *dp = (void *)((char *)t - offsetof(struct discovery_pool, ares_timer));

    ares_process_fd(dp->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm_ares_timer(dp);
}

/* ---- applying an answer ---- */

static int found_cmp(const void *a, const void *b)
{
    const struct found *x = a, *y = b;
    int c = strcmp(x->text, y->text);

    /* One address from two SRV records: the heavier one, on every instance. */
    return c ? c : (x->weight < y->weight) - (x->weight > y->weight);
}

static void found_add(struct discovery_pool *dp, const struct sockaddr *sa, uint16_t port,
                      uint32_t weight)
{
    struct found *f;

    if (dp->nfound == dp->capfound) {
        size_t cap = dp->capfound ? dp->capfound * 2 : 16;
        struct found *n = realloc(dp->found, cap * sizeof(*n));
        if (!n) {
            dp->failed = true;
            snprintf(dp->error, sizeof(dp->error), "out of memory");
            return;
        }
        dp->found = n;
        dp->capfound = cap;
    }
    f = &dp->found[dp->nfound];
    memset(f, 0, sizeof(*f));
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&f->addr.ss;
        memcpy(in, sa, sizeof(*in));
        in->sin_port = htons(port);
        f->addr.len = sizeof(*in);
        if (in->sin_addr.s_addr == htonl(INADDR_ANY))
            return;          /* 0.0.0.0 names no host to connect to */
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&f->addr.ss;
        memcpy(in6, sa, sizeof(*in6));
        in6->sin6_port = htons(port);
        f->addr.len = sizeof(*in6);
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
            return;
    } else {
        return;
    }
    addr_format(&f->addr, f->text, sizeof(f->text));
    f->weight = weight;
    dp->nfound++;
}

static bool discovery_checked(const struct pool *p)
{
    return p->conf->health.type != HEALTH_NONE && !p->conf->health.initial_up;
}

static void slot_changed(struct discovery_pool *dp, struct backend *b)
{
    if (dp->d->hc)
        health_backend_slot_changed(dp->d->hc, b);
}

/* Back in the answer before its slot was vacated: it takes work again,
 * UP or DOWN as its checks say, unless the operator has it. */
static void slot_revive(struct discovery_pool *dp, struct backend *b, struct slot_info *si)
{
    si->phase = SLOT_LIVE;
    if (!si->drained)
        return;
    si->drained = false;
    if (atomic_load(&b->state) == BACKEND_DRAINING)
        backend_set_state(b, !dp->d->hc || health_backend_passing(dp->d->hc, b) ? BACKEND_UP
                                                                                : BACKEND_DOWN,
                          "discovery: back in DNS");
}

static void slot_remove(struct backend *b, struct slot_info *si)
{
    int state = atomic_load(&b->state);

    si->phase = SLOT_GONE;
    if (state != BACKEND_DRAINING && state != BACKEND_DISABLED) {
        si->drained = true;
        backend_set_state(b, BACKEND_DRAINING, "discovery: no longer in DNS");
    }
}

/* A pool may list backends besides its discovered ones: an address DNS
 * gives that one of them has already (or whose text names one) is not a
 * second backend, and the listed one stays as the config has it. Keeps
 * found[0..n) in order; returns how many remain. */
static size_t drop_listed(const struct pool *p, struct found *found, size_t n)
{
    size_t kept = 0;

    for (size_t i = 0; i < n; i++) {
        bool listed = false;
        for (uint32_t k = 0; k < p->nlisted && !listed; k++)
            listed = addr_equal(&p->backends[k].conf->address, &found[i].addr) ||
                     strcmp(p->backends[k].conf->name, found[i].text) == 0;
        if (!listed)
            found[kept++] = found[i];
    }
    return kept;
}

static void apply(struct discovery_pool *dp)
{
    struct pool *p = dp->pool;
    uint32_t added = 0, removed = 0, full = 0;
    size_t n = 0;

    qsort(dp->found, dp->nfound, sizeof(*dp->found), found_cmp);
    for (size_t i = 0; i < dp->nfound; i++)      /* the same address twice is one */
        if (n == 0 || strcmp(dp->found[n - 1].text, dp->found[i].text) != 0)
            dp->found[n++] = dp->found[i];
    n = drop_listed(p, dp->found, n);
    if (n > p->nbackends - p->nlisted) {
        log_warn("event=discovery_truncated pool=%s dns=%s addresses=%zu max_backends=%u",
                 p->conf->name, dp->conf->dns, n, p->nbackends - p->nlisted);
        n = p->nbackends - p->nlisted;
    }
    for (uint32_t i = 0; i < p->nbackends; i++)
        dp->slots[i].seen = false;
    for (size_t i = 0; i < n; i++) {
        const struct found *f = &dp->found[i];
        struct backend *b = pool_find_backend(p, f->text);

        if (b) {
            struct slot_info *si = &dp->slots[b->index];
            si->seen = true;
            if (si->phase != SLOT_LIVE)
                slot_revive(dp, b, si);
            /* SRV weights may change; an operator's weight stays until then. */
            if (b->conf->weight != f->weight) {
                p->slots[b->index].weight = f->weight;
                backend_set_weight(b, f->weight);
            }
            continue;
        }
        if (!(b = pool_slot_fill(p, f->text, &f->addr, f->weight, discovery_checked(p)))) {
            full++;          /* every slot busy: removed backends still draining */
            continue;
        }
        dp->slots[b->index] = (struct slot_info){.phase = SLOT_LIVE, .seen = true};
        slot_changed(dp, b);
        /* A new backend is as cold as one that came back, so with
         * slow_start it ramps. One with checks ramps after its first pass
         * (health/check.c); one without takes traffic now, so it ramps now.
         * Not the first answer's: at start the whole pool starts together. */
        if (!discovery_checked(p) && !dp->initial)
            backend_ramp_start(b, clock_now_ms());
        added++;
    }
    for (uint32_t i = 0; i < p->nbackends; i++) {
        struct slot_info *si = &dp->slots[i];
        if (si->phase == SLOT_LIVE && !si->seen) {
            slot_remove(&p->backends[i], si);
            removed++;
        }
    }
    if (full)
        log_warn("event=discovery_full pool=%s waiting=%u why=\"no vacant slot: removed "
                 "backends are still draining; raise discovery.max_backends\"",
                 p->conf->name, full);
    if (added || removed)
        log_info("event=discovery_update pool=%s dns=%s added=%u removed=%u addresses=%zu",
                 p->conf->name, dp->conf->dns, added, removed, n);
}

/* ---- a resolution ---- */

/* With respect_ttl, an answer is good for its smallest TTL, and the next
 * resolution comes when that runs out: at least 1 s later (a TTL of 0 must
 * not make sluice resolve in a loop), at most an hour. A failure or an
 * answer without records comes back after the interval. */
#define DISCOVERY_TTL_MIN_MS 1000
#define DISCOVERY_TTL_MAX_MS 3600000

static void note_ttl(struct discovery_pool *dp, int64_t ttl)
{
    if (ttl >= 0 && (dp->min_ttl < 0 || ttl < dp->min_ttl))
        dp->min_ttl = ttl;
}

static void schedule(struct discovery_pool *dp)
{
    uint64_t delay = dp->conf->interval_ms;

    if (dp->conf->respect_ttl && !dp->failed && dp->min_ttl >= 0) {
        delay = (uint64_t)dp->min_ttl * 1000;
        if (delay < DISCOVERY_TTL_MIN_MS)
            delay = DISCOVERY_TTL_MIN_MS;
        if (delay > DISCOVERY_TTL_MAX_MS)
            delay = DISCOVERY_TTL_MAX_MS;
    }
    log_debug("event=discovery_next pool=%s dns=%s in_ms=%llu", dp->pool->conf->name,
              dp->conf->dns, (unsigned long long)delay);
    timer_arm(&dp->d->loop->timers, &dp->next, clock_now_ms() + delay);
}

static void lookup_done(struct discovery_pool *dp)
{
    if (--dp->pending || dp->stopping)
        return;
    dp->running = false;
    atomic_fetch_add(dp->failed ? &dp->pool->discovery_failures : &dp->pool->discovery_resolutions,
                     1);
    if (dp->failed) {
        /* The last answer stands: a resolver outage must not empty pools. */
        if (!dp->last_failed || dp->initial)
            log_warn("event=discovery_failed pool=%s dns=%s why=\"%s\" keeping=%s",
                     dp->pool->conf->name, dp->conf->dns, dp->error,
                     dp->initial ? "nothing" : "the last answer");
    } else {
        if (dp->last_failed)
            log_info("event=discovery_recovered pool=%s dns=%s", dp->pool->conf->name,
                     dp->conf->dns);
        apply(dp);
    }
    dp->last_failed = dp->failed;
    dp->seedable = dp->initial && dp->failed;
    if (dp->initial) {
        dp->initial = false;
        dp->d->initial_pending--;
    }
    schedule(dp);
}

static void lookup_failed(struct discovery_pool *dp, int status, const char *name)
{
    dp->failed = true;
    snprintf(dp->error, sizeof(dp->error), "%s: %s", name, ares_strerror(status));
}

static void addrinfo_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct lookup *lk = arg;
    struct discovery_pool *dp = lk->dp;

    if (status == ARES_EDESTRUCTION) {
        free(lk);
        return;
    }
    if (status == ARES_SUCCESS) {
        for (struct ares_addrinfo_node *n = res->nodes; n; n = n->ai_next) {
            found_add(dp, n->ai_addr, lk->port, lk->weight);
            note_ttl(dp, n->ai_ttl);
        }
    } else if (status != ARES_ENOTFOUND && status != ARES_ENODATA) {
        /* No such name, or no address of the type: an answer, and empty. */
        lookup_failed(dp, status, dp->conf->dns);
    }
    if (res)
        ares_freeaddrinfo(res);
    free(lk);
    lookup_done(dp);
}

static void lookup_addresses(struct discovery_pool *dp, const char *name, int family,
                             uint16_t port, uint32_t weight)
{
    struct ares_addrinfo_hints hints = {.ai_family = family, .ai_flags = ARES_AI_NOSORT};
    struct lookup *lk = malloc(sizeof(*lk));

    dp->pending++;
    if (!lk) {
        dp->failed = true;
        snprintf(dp->error, sizeof(dp->error), "out of memory");
        lookup_done(dp);
        return;
    }
    *lk = (struct lookup){.dp = dp, .port = port, .weight = weight};
    ares_getaddrinfo(dp->ch, name, NULL, &hints, addrinfo_cb, lk);
}

/* SRV weights are shares among targets of one priority (RFC 2782), as a
 * backend's weight is; 0 ("almost never") becomes the smallest, 1. */
static uint32_t srv_weight(unsigned short w)
{
    return w == 0 ? 1 : w > BACKEND_WEIGHT_MAX ? BACKEND_WEIGHT_MAX : w;
}

static void srv_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct discovery_pool *dp = arg;
    struct ares_srv_reply *srv = NULL;
    int lowest = -1;

    if (status == ARES_EDESTRUCTION)
        return;
    if (status == ARES_SUCCESS) {
        status = ares_parse_srv_reply(abuf, alen, &srv);
        note_ttl(dp, dns_answer_min_ttl(abuf, (size_t)alen, DNS_TYPE_SRV));
    }
    if (status != ARES_SUCCESS) {
        if (status != ARES_ENOTFOUND && status != ARES_ENODATA)
            lookup_failed(dp, status, dp->conf->dns);
        lookup_done(dp);
        return;
    }
    /* Only the most preferred priority serves; the others are its
     * failover, and health checks do that job here. */
    for (struct ares_srv_reply *r = srv; r; r = r->next)
        if (r->port && strcmp(r->host, ".") && (lowest < 0 || r->priority < lowest))
            lowest = r->priority;
    for (struct ares_srv_reply *r = srv; r; r = r->next)
        if (r->port && strcmp(r->host, ".") && r->priority == lowest)
            lookup_addresses(dp, r->host, AF_UNSPEC, r->port, srv_weight(r->weight));
    ares_free_data(srv);
    lookup_done(dp);
}

static void resolve(struct discovery_pool *dp)
{
    const struct conf_discovery *c = dp->conf;

    if (dp->running || !dp->ch_ok)
        return;
    dp->running = true;
    dp->failed = false;
    dp->nfound = 0;
    dp->min_ttl = -1;
    dp->pending = 1;         /* this function's own, so that a lookup answered at
                                once (from /etc/hosts) cannot end the round */
    if (c->record == DISCOVERY_SRV) {
        dp->pending++;
        ares_query(dp->ch, c->dns, DNS_CLASS_IN, DNS_TYPE_SRV, srv_cb, dp);
    } else {
        lookup_addresses(dp, c->dns, c->record == DISCOVERY_AAAA ? AF_INET6 : AF_INET, c->port, 1);
    }
    lookup_done(dp);
    if (dp->ch_ok)
        rearm_ares_timer(dp);
}

static void next_cb(struct timer *t)
{
    resolve((void *)((char *)t - offsetof(struct discovery_pool, next)));
}

/* ---- removed backends: draining, grace, vacant ---- */

/* A backend DNS dropped takes no new work until its slot is vacated, even
 * if an operator enabled it meanwhile: the grace period is only sound for
 * a backend no worker can pick. */
static bool slot_ineligible(struct backend *b, struct slot_info *si)
{
    int state = atomic_load(&b->state);

    if (state == BACKEND_DRAINING || state == BACKEND_DISABLED)
        return true;
    si->drained = true;
    backend_set_state(b, BACKEND_DRAINING, "discovery: no longer in DNS");
    return false;
}

static bool grace_over(const struct discovery *d)
{
    for (uint32_t i = 0; i < d->nworkers; i++)
        if (!atomic_load(&d->workers[i].finished) &&
            atomic_load_explicit(&d->workers[i].sweeps, memory_order_acquire) <= d->grace_mark[i])
            return false;
    return true;
}

static void tick_cb(struct timer *t)
{
    struct discovery *d = (void *)((char *)t - offsetof(struct discovery, tick));
    bool any = false;

    /* A slot whose grace is over and still idle is vacant. Work may have
     * reached it in the meantime (a pick made just before it was drained),
     * and then it waits again. */
    if (d->grace_running && grace_over(d)) {
        for (size_t i = 0; i < d->npools; i++) {
            struct discovery_pool *dp = &d->pools[i];
            for (uint32_t k = 0; k < dp->pool->nbackends; k++) {
                struct backend *b = &dp->pool->backends[k];
                if (dp->slots[k].phase != SLOT_GRACE)
                    continue;
                if (!slot_ineligible(b, &dp->slots[k]) || atomic_load(&b->active)) {
                    dp->slots[k].phase = SLOT_GONE;
                    continue;
                }
                pool_slot_vacate(b);
                dp->slots[k] = (struct slot_info){.phase = SLOT_FREE};
                slot_changed(dp, b);
            }
        }
        d->grace_running = false;
    }
    if (!d->grace_running) {
        for (size_t i = 0; i < d->npools; i++) {
            struct discovery_pool *dp = &d->pools[i];
            for (uint32_t k = 0; k < dp->pool->nbackends; k++)
                if (dp->slots[k].phase == SLOT_GONE &&
                    slot_ineligible(&dp->pool->backends[k], &dp->slots[k]) &&
                    !atomic_load(&dp->pool->backends[k].active)) {
                    dp->slots[k].phase = SLOT_GRACE;
                    any = true;
                }
        }
        if (any) {
            for (uint32_t i = 0; i < d->nworkers; i++)
                d->grace_mark[i] = atomic_load_explicit(&d->workers[i].sweeps,
                                                        memory_order_acquire);
            d->grace_running = true;
        }
    }
    timer_arm(&d->loop->timers, &d->tick, clock_now_ms() + DISCOVERY_TICK_MS);
}

void discovery_seed(struct discovery *d, const char *pool, const char *name, uint32_t weight)
{
    for (size_t i = 0; i < d->npools; i++) {
        struct discovery_pool *dp = &d->pools[i];
        struct backend *b;
        struct addr a;
        const char *why;

        if (!dp->seedable || strcmp(dp->pool->conf->name, pool) != 0)
            continue;
        if (addr_parse(name, &a, &why) < 0 || pool_find_backend(dp->pool, name))
            return;
        if (!(b = pool_slot_fill(dp->pool, name, &a, weight, discovery_checked(dp->pool))))
            return;
        dp->slots[b->index] = (struct slot_info){.phase = SLOT_LIVE};
        log_info("event=discovery_seeded pool=%s backend=%s why=\"the first resolution "
                 "failed: the old process's backend, until DNS answers\"", pool, name);
        return;
    }
}

/* ---- start and stop ---- */

static int channel_init(struct discovery_pool *dp)
{
    const struct conf_discovery *c = dp->conf;
    struct ares_options o = {
        .timeout = (int)c->timeout_ms,
        .tries = DISCOVERY_TRIES,
        .sock_state_cb = sock_state,
        .sock_state_cb_data = dp,
    };
    int rc = ares_init_options(&dp->ch, &o,
                               ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB);

    if (rc != ARES_SUCCESS) {
        log_error("event=discovery_init_failed pool=%s why=\"%s\"", dp->pool->conf->name,
                  ares_strerror(rc));
        return -EINVAL;
    }
    dp->ch_ok = true;
    if (c->nresolvers) {
        char csv[DISCOVERY_MAX_RESOLVERS * (ADDR_TEXT_MAX + 1)] = "";
        size_t len = 0;
        for (size_t i = 0; i < c->nresolvers; i++) {
            char text[ADDR_TEXT_MAX];
            addr_format(&c->resolvers[i], text, sizeof(text));
            len += (size_t)snprintf(csv + len, sizeof(csv) - len, "%s%s", i ? "," : "", text);
        }
        if ((rc = ares_set_servers_ports_csv(dp->ch, csv)) != ARES_SUCCESS) {
            log_error("event=discovery_init_failed pool=%s why=\"resolvers %s: %s\"",
                      dp->pool->conf->name, csv, ares_strerror(rc));
            return -EINVAL;
        }
    }
    return 0;
}

int discovery_start(struct discovery *d, struct loop *loop, struct runtime *rt)
{
    size_t n = 0, k = 0;

    memset(d, 0, sizeof(*d));
    d->loop = loop;
    d->rt = rt;
    timer_init(&d->tick, tick_cb);
    for (size_t i = 0; i < rt->npools; i++)
        n += rt->pools[i].conf->discovery.dns != NULL;
    if (n == 0)
        return 0;
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
        return -ENOMEM;
    if (!(d->pools = calloc(n, sizeof(*d->pools))))
        return -ENOMEM;
    d->npools = n;
    for (size_t i = 0; i < rt->npools; i++) {
        struct discovery_pool *dp;
        int err;

        if (!rt->pools[i].conf->discovery.dns)
            continue;
        dp = &d->pools[k++];
        dp->d = d;
        dp->pool = &rt->pools[i];
        dp->conf = &dp->pool->conf->discovery;
        timer_init(&dp->next, next_cb);
        timer_init(&dp->ares_timer, ares_timer_cb);
        if (!(dp->slots = calloc(dp->pool->nbackends, sizeof(*dp->slots))))
            return -ENOMEM;
        if ((err = channel_init(dp)) < 0)
            return err;
        dp->initial = true;
        d->initial_pending++;
        resolve(dp);
    }
    timer_arm(&loop->timers, &d->tick, clock_now_ms() + DISCOVERY_TICK_MS);
    return 0;
}

int discovery_attach(struct discovery *d, struct health_checker *hc, struct worker *workers,
                     uint32_t nworkers)
{
    d->hc = hc;
    if (!d->npools)
        return 0;
    if (!(d->grace_mark = calloc(nworkers, sizeof(*d->grace_mark))))
        return -ENOMEM;
    d->workers = workers;
    d->nworkers = nworkers;
    return 0;
}

void discovery_stop(struct discovery *d)
{
    if (!d->loop)
        return;              /* never started */
    timer_cancel(&d->loop->timers, &d->tick);
    for (size_t i = 0; i < d->npools; i++) {
        struct discovery_pool *dp = &d->pools[i];
        timer_cancel(&d->loop->timers, &dp->next);
        timer_cancel(&d->loop->timers, &dp->ares_timer);
        dp->stopping = true;
        if (dp->ch_ok)
            ares_destroy(dp->ch);   /* closes its sockets: sock_state frees ours */
        free(dp->slots);
        free(dp->found);
    }
    free(d->pools);
    free(d->grace_mark);
    d->pools = NULL;
    d->npools = 0;
    d->grace_mark = NULL;
    if (d->loop)
        loop_run_tasks(d->loop);    /* the sockets' deferred frees */
}
