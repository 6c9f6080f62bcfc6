/* Active checks. tcp: a non-blocking connect that must complete within
 * `timeout`. http: then a request (method, path, Host) whose response must
 * arrive within the same `timeout`, with a status in expect_status and, if
 * set, expect_body somewhere in the first 16 KiB of the body. The next check starts `interval` after the previous one began,
 * minus up to 10% jitter so that checks of many backends spread out; jitter
 * only shortens the interval, so the detection window stays within
 * interval × unhealthy_threshold (+ one interval for the phase). While a
 * backend is DOWN, `unhealthy_interval` (default: interval) takes the place
 * of interval, with the same jitter, so the recovery window is
 * unhealthy_interval × healthy_threshold (+ one for the phase). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "balance/balance.h"
#include "core/clock.h"
#include "core/log.h"
#include "health/health.h"
#include "net/addr.h"
#include "proto/http1.h"
#include "proto/tls.h"

#define CHECK_RESPONSE_MAX (16u * 1024u)

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
    bool first_done;              /* the first check after start finished */
    bool initial;                 /* counted in hc->initial_pending until first_done */
    bool sent;                    /* http: the request is written */
    bool connected;               /* the connect completed */
    SSL *tls;                     /* http checks of a pool with tls */
    char *resp;                   /* http: response bytes, while a check runs */
    uint32_t resp_len;
    struct addr target;           /* the backend's address, or its health_check.port */
};

/* Is the backend down as far as the checks go? DRAINING and DISABLED belong
 * to the operator, and `enable` turns them into UP or DOWN by the checks
 * (health_backend_passing), so they are paced as what enable would give:
 * a backend enabled while failing is then already checked at the DOWN pace. */
static bool target_down(const struct health_target *t)
{
    int state = atomic_load(&t->b->state);

    if (state == BACKEND_DRAINING || state == BACKEND_DISABLED)
        return t->fails >= t->conf->unhealthy_threshold;
    return state == BACKEND_DOWN;
}

/* Called once the finished check is counted, so the check that takes a
 * backend DOWN already schedules the next at unhealthy_interval and the one
 * that brings it UP goes back to interval. */
static uint64_t next_delay(struct health_target *t)
{
    uint64_t iv = target_down(t) ? t->conf->unhealthy_interval_ms : t->conf->interval_ms;
    uint64_t jitter = iv / 10;

    return iv - (jitter ? balance_rand(&t->hc->rng) % (jitter + 1) : 0);
}

/* Count one check's result and move the backend's state by it. */
static void check_count(struct health_target *t, bool ok, const char *why)
{
    struct backend *b = t->b;
    int state = atomic_load(&b->state);

    if (!t->first_done) {
        bool at_start = t->initial;

        t->first_done = true;
        if (t->initial) {
            t->initial = false;
            t->hc->initial_pending--;
        }
        if (!t->conf->initial_up)
            log_info("event=health_initial pool=%s backend=%s result=%s why=\"%s\"",
                     b->pool->conf->name, b->conf->name, ok ? "pass" : "fail",
                     ok ? "first check passed" : why);
        /* Down until the first pass: one pass is enough to start. */
        if (ok && state == BACKEND_DOWN && !t->conf->initial_up) {
            atomic_fetch_add_explicit(&b->checks_passed, 1, memory_order_relaxed);
            t->passes = 1;
            atomic_store(&b->state, BACKEND_UP);
            atomic_fetch_add(&b->pool->generation, 1);
            /* A backend discovery added while serving is as cold as one
             * that came back; at start, the whole pool starts together. */
            if (!at_start)
                backend_ramp_start(b, clock_now_ms());
            return;
        }
    }
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

/* End the running check, if any, without counting it. */
static void check_abandon(struct health_target *t)
{
    if (t->io.fd >= 0) {
        loop_del(t->hc->loop, &t->io);
        tls_free(t->tls);        /* before its socket closes */
        t->tls = NULL;
        close(t->io.fd);
        t->io.fd = -1;
    }
    free(t->resp);
    t->resp = NULL;
    t->resp_len = 0;
    t->sent = false;
    t->connected = false;
    t->running = false;
}

static void check_finish(struct health_target *t, bool ok, const char *why)
{
    check_abandon(t);
    check_count(t, ok, why);
    timer_arm(&t->hc->loop->timers, &t->timer, t->started_ms + next_delay(t));
}

static bool http_send(struct health_target *t)
{
    const struct conf_health *h = t->conf;
    char req[2048], host[ADDR_TEXT_MAX];
    int n;

    if (!h->host)
        addr_format(&t->b->conf->address, host, sizeof(host));
    n = snprintf(req, sizeof(req),
                 "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-health-check\r\n"
                 "Accept: */*\r\nConnection: close\r\n\r\n",
                 h->method ? h->method : "GET", h->path ? h->path : "/", h->host ? h->host : host);
    if (n <= 0 || (size_t)n >= sizeof(req))
        return false;
    /* A fresh socket's buffer takes a small request whole. */
    if (t->tls)
        return tls_write(t->tls, req, (size_t)n) == n;
    return send(t->io.fd, req, (size_t)n, MSG_NOSIGNAL) == n;
}

/* The data of a chunked body, without its framing, into out (len bytes:
 * data is never longer than its framing). *last once the last chunk came;
 * *bad if the framing is malformed. Returns the data's length. */
static size_t dechunk(const char *p, size_t len, char *out, bool *last, bool *bad)
{
    struct h1_chunked ck;
    size_t n = 0;

    h1_chunked_init(&ck);
    while (len && !*last) {
        struct h1_slice data;
        bool trailer;
        ssize_t used = h1_chunked_decode(&ck, p, len, &data, &trailer, last);

        if (used < 0)
            *bad = true;
        if (used <= 0)
            break;
        if (data.len)
            memcpy(out + n, data.p, data.len);
        n += data.len;
        p += used;
        len -= (size_t)used;
    }
    return n;
}

/* Read what the backend answered; finish the check once it decided. */
static void http_read(struct health_target *t)
{
    const struct conf_health *h = t->conf;
    struct h1_header slots[64];
    struct h1_response resp;
    bool eof = false;
    int r;

    if (!t->resp && !(t->resp = malloc(CHECK_RESPONSE_MAX))) {
        check_finish(t, false, "out of memory");
        return;
    }
    for (;;) {
        ssize_t n;
        if (t->resp_len == CHECK_RESPONSE_MAX)
            break;
        if (t->tls) {
            n = tls_read(t->tls, t->resp + t->resp_len, CHECK_RESPONSE_MAX - t->resp_len);
            if (n == TLS_CLOSED)
                n = 0;
            else if (n == TLS_WANT_READ || n == TLS_WANT_WRITE)
                break;
            else if (n < 0) {
                check_finish(t, false, "TLS read failed");
                return;
            }
        } else {
            n = recv(t->io.fd, t->resp + t->resp_len, CHECK_RESPONSE_MAX - t->resp_len, 0);
        }
        if (n > 0) {
            t->resp_len += (uint32_t)n;
            continue;
        }
        if (n == 0) {
            eof = true;
            break;
        }
        if (errno == EAGAIN)
            break;
        check_finish(t, false, strerror(errno));
        return;
    }
    h1_response_init(&resp, slots, 64);
    r = h1_parse_response(t->resp, t->resp_len,
                          h->method && strcmp(h->method, "HEAD") == 0 ? H1_HEAD : H1_GET, NULL,
                          &resp);
    if (r == H1_NEED_MORE) {
        if (eof || t->resp_len == CHECK_RESPONSE_MAX)
            check_finish(t, false, "incomplete response");
        return;
    }
    if (r < 0) {
        check_finish(t, false, "malformed response");
        return;
    }
    if ((uint32_t)resp.status < h->status_min || (uint32_t)resp.status > h->status_max) {
        char why[64];
        snprintf(why, sizeof(why), "status %d", resp.status);
        check_finish(t, false, why);
        return;
    }
    if (!h->expect_body) {
        check_finish(t, true, NULL);
        return;
    }
    /* Look for the expected text in what arrived of the body so far: for
     * a chunked body, in its data, which a chunk boundary may split. */
    const char *body = t->resp + r;
    size_t body_len = t->resp_len - (uint32_t)r;
    char *plain = NULL;
    bool last = false, bad = false, found;

    if (resp.body == H1_BODY_CHUNKED) {
        if (!(plain = malloc(body_len + 1))) {
            check_finish(t, false, "out of memory");
            return;
        }
        body_len = dechunk(body, body_len, plain, &last, &bad);
        body = plain;
    }
    found = memmem(body, body_len, h->expect_body, strlen(h->expect_body)) != NULL;
    free(plain);
    if (found) {
        check_finish(t, true, NULL);
        return;
    }
    if (bad) {
        check_finish(t, false, "malformed chunked body");
        return;
    }
    if (eof || t->resp_len == CHECK_RESPONSE_MAX || last ||
        (resp.body == H1_BODY_LENGTH && t->resp_len - (uint32_t)r >= resp.content_length) ||
        resp.body == H1_BODY_NONE)
        check_finish(t, false, "expected body text not found");
}

/* An http check of a pool with tls: the handshake first, as requests to
 * the pool do (checked against the same CAs and name). true once done;
 * false while it waits (the socket's interest set to what it waits for)
 * or when it failed (the check is finished then). */
static bool tls_step(struct health_target *t)
{
    char ip[ADDR_TEXT_MAX], why[320], err[256];
    int r;

    if (!t->tls) {
        addr_format_host(&t->b->conf->address, ip, sizeof(ip));
        if (!(t->tls = tls_client_conn(t->b->pool->tls, t->io.fd, ip))) {
            check_finish(t, false, "out of memory");
            return false;
        }
    }
    r = tls_handshake(t->tls);
    if (r == 1)
        return true;
    if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) {
        loop_mod(t->hc->loop, &t->io, r == TLS_WANT_READ ? EPOLLIN | EPOLLRDHUP : EPOLLOUT);
        return false;
    }
    snprintf(why, sizeof(why), "TLS handshake: %s", tls_error(err, sizeof(err)));
    check_finish(t, false, why);
    return false;
}

static void check_io(struct io *io, uint32_t events)
{
    struct health_target *t = (struct health_target *)io;
    int err = 0;
    socklen_t len = sizeof(err);

    if (t->conf->type == HEALTH_HTTP && t->sent) {
        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))
            http_read(t);
        return;
    }
    if (!t->connected) {
        getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || !(events & EPOLLOUT)) {
            check_finish(t, false, strerror(err ? err : ECONNREFUSED));
            return;
        }
        t->connected = true;
    }
    if (t->conf->type != HEALTH_HTTP) {
        check_finish(t, true, NULL);
        return;
    }
    if (t->b->pool->tls && !tls_step(t))
        return;
    if (!http_send(t)) {
        check_finish(t, false, "could not send the request");
        return;
    }
    t->sent = true;
    loop_mod(t->hc->loop, &t->io, EPOLLIN | EPOLLRDHUP);
}

static void check_start(struct health_target *t)
{
    const struct addr *a = &t->target;
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

/* Where the checks of t's backend go: its address, or health_check.port. */
static void target_address(struct health_target *t)
{
    t->target = t->b->conf->address;
    if (t->conf->port) {
        if (t->target.ss.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&t->target.ss)->sin6_port = htons((uint16_t)t->conf->port);
        else
            ((struct sockaddr_in *)&t->target.ss)->sin_port = htons((uint16_t)t->conf->port);
    }
}

#define HEALTH_TICK_MS 100

static void tick_cb(struct timer *t)
{
    struct health_checker *hc = (void *)((char *)t - offsetof(struct health_checker, tick));

    health_tick(hc, clock_now_ms());
    timer_arm(&hc->loop->timers, &hc->tick, clock_now_ms() + HEALTH_TICK_MS);
}

int health_start(struct health_checker *hc, struct loop *loop, struct runtime *rt)
{
    size_t n = 0, k = 0;

    memset(hc, 0, sizeof(*hc));
    hc->loop = loop;
    hc->rt = rt;
    hc->rng = clock_mono_us() | 1;
    timer_init(&hc->tick, tick_cb);
    timer_arm(&loop->timers, &hc->tick, clock_now_ms() + HEALTH_TICK_MS);
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
            if (backend_vacant(t->b))
                continue;         /* a discovery slot: checked once filled */
            target_address(t);
            /* The first checks run at once: main() waits for them before
             * serving, so backends that start DOWN are known. */
            if (!t->conf->initial_up)
                atomic_store(&t->b->state, BACKEND_DOWN);
            t->initial = true;
            hc->initial_pending++;
            timer_arm(&loop->timers, &t->timer, clock_now_ms());
        }
    }
    hc->ntargets = n;
    return 0;
}

void health_stop(struct health_checker *hc)
{
    timer_cancel(&hc->loop->timers, &hc->tick);
    for (size_t i = 0; i < hc->ntargets; i++) {
        struct health_target *t = &hc->targets[i];
        timer_cancel(&hc->loop->timers, &t->timer);
        check_abandon(t);         /* a running check's TLS state too */
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

void health_seed(struct health_checker *hc, struct backend *b, bool passing)
{
    for (size_t i = 0; i < hc->ntargets; i++) {
        struct health_target *t = &hc->targets[i];
        int state;

        if (t->b != b)
            continue;
        state = atomic_load(&b->state);
        if (passing && state == BACKEND_DOWN && t->conf->unhealthy_threshold > 1) {
            t->fails = 1;          /* this failure counts towards taking it out */
            t->passes = 0;
            atomic_store(&b->state, BACKEND_UP);
            atomic_fetch_add(&b->pool->generation, 1);
        } else if (!passing && (state == BACKEND_UP || state == BACKEND_SLOW_START) &&
                   t->conf->healthy_threshold > 1) {
            t->passes = 1;         /* this pass counts towards bringing it back */
            t->fails = t->conf->unhealthy_threshold;
            atomic_store(&b->state, BACKEND_DOWN);
            atomic_fetch_add(&b->pool->generation, 1);
        }
        return;
    }
}

void health_backend_slot_changed(struct health_checker *hc, struct backend *b)
{
    for (size_t i = 0; i < hc->ntargets; i++) {
        struct health_target *t = &hc->targets[i];

        if (t->b != b)
            continue;
        check_abandon(t);
        timer_cancel(&hc->loop->timers, &t->timer);
        t->passes = t->fails = 0;
        t->first_done = false;
        if (t->initial) {
            t->initial = false;
            hc->initial_pending--;
        }
        if (backend_vacant(b))
            return;
        /* A new backend: DOWN until its first check passes, as at start. */
        target_address(t);
        timer_arm(&hc->loop->timers, &t->timer, clock_now_ms());
        return;
    }
}
