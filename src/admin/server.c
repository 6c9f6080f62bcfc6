/* The admin server's connections: accept on admin.listen, read a request
 * with h1_parse_request, hand it to the API (api.c), write the reply, keep
 * the connection for the next request or close it.
 *
 * It runs on the main thread's loop, beside signals and health checks, so
 * it must never block: sockets are non-blocking and level-triggered
 * (admin traffic is a few requests a second, epoll_ctl per state change is
 * nothing), every connection has a deadline, and their number is capped so
 * a flood of connections cannot exhaust descriptors the proxy needs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin/internal.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/reload.h"
#include "net/addr.h"
#include "proxy/http_message.h"

#define ADMIN_MAX_CONNS 64
/* A request must arrive whole within this long of the connection's
 * accept or the end of the last reply, and a reply must not stall for
 * this long: else the connection closes. */
#define ADMIN_TIMEOUT_MS 15000
#define ADMIN_MAX_HEADERS 32
#define ADMIN_HEAD_MAX 8192
#define ADMIN_BODY_MAX 4096
#define ADMIN_IN_MAX (ADMIN_HEAD_MAX + ADMIN_BODY_MAX)

/* Owner: its server (linked in s->conns); freed by a loop task. */
struct admin_conn {
    struct io io;
    struct loop_task task;
    struct timer timer;
    struct admin_server *s;
    struct admin_conn *prev, *next;
    char peer[ADDR_TEXT_MAX];
    bool writing;                 /* a reply is going out; reading waits */
    bool close_after;
    bool closed;
    bool have_head;               /* req holds a parsed head; waiting for its body */
    uint32_t head_len;
    uint32_t in_len;
    struct admin_buf out;
    size_t out_off;
    struct h1_request req;
    struct h1_header slots[ADMIN_MAX_HEADERS];
    char in[ADMIN_IN_MAX];
};

static const struct h1_limits admin_limits = {
    .max_request_line = 4096, .max_head = ADMIN_HEAD_MAX, .max_headers = ADMIN_MAX_HEADERS,
};

static void admin_conn_process(struct admin_conn *c);

static void admin_conn_free_task(struct loop_task *t)
{
    free((char *)t - offsetof(struct admin_conn, task));
}

static void admin_conn_close(struct admin_conn *c)
{
    struct admin_server *s = c->s;

    if (c->closed)
        return;
    c->closed = true;
    timer_cancel(&s->loop->timers, &c->timer);
    loop_del(s->loop, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    admin_buf_free(&c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    /* Not freed here: this may run inside the connection's own callback. */
    loop_task_queue(s->loop, &c->task);
}

static void admin_conn_touch(struct admin_conn *c)
{
    timer_arm(&c->s->loop->timers, &c->timer, clock_now_ms() + ADMIN_TIMEOUT_MS);
}

static void admin_conn_write(struct admin_conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->io.fd, c->out.p + c->out_off, c->out.len - c->out_off,
                         MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            admin_conn_close(c);
            return;
        }
        c->out_off += (size_t)n;
        admin_conn_touch(c);
    }
    admin_buf_free(&c->out);
    c->out_off = 0;
    c->writing = false;
    if (c->close_after) {
        /* Let the client see our FIN after the reply, not a reset. */
        shutdown(c->io.fd, SHUT_WR);
        admin_conn_close(c);
        return;
    }
    loop_mod(c->s->loop, &c->io, EPOLLIN);
    admin_conn_process(c);   /* a pipelined request may be waiting */
}

/* Queue the reply's bytes and start writing. */
static void admin_conn_reply(struct admin_conn *c, struct admin_reply *r, bool head_only)
{
    struct admin_buf *o = &c->out;

    if (r->body.oom) {
        admin_buf_free(&r->body);
        admin_reply_error(r, 500, "out of memory");
    }
    admin_buf_printf(o, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\n", r->status, http_reason(r->status),
                     r->content_type ? r->content_type : "application/json", r->body.len);
    if (r->allow)
        admin_buf_printf(o, "Allow: %s\r\n", r->allow);
    if (r->www_authenticate)
        admin_buf_puts(o, "WWW-Authenticate: Bearer realm=\"sluice\"\r\n");
    admin_buf_puts(o, c->close_after ? "Connection: close\r\n\r\n" : "\r\n");
    if (!head_only && r->body.len)
        admin_buf_add(o, r->body.p, r->body.len);
    admin_buf_free(&r->body);
    if (o->oom) {
        admin_conn_close(c);
        return;
    }
    c->out_off = 0;
    c->writing = true;
    loop_mod(c->s->loop, &c->io, EPOLLOUT);
    admin_conn_write(c);
}

/* An error found before the request could be routed; the connection closes. */
static void admin_conn_fail(struct admin_conn *c, int status, const char *why)
{
    struct admin_reply r = { 0 };

    admin_reply_error(&r, status, "%s", why);
    c->close_after = true;
    c->in_len = 0;
    log_debug("event=admin_bad_request status=%d why=\"%s\" peer=%s", status, why, c->peer);
    admin_conn_reply(c, &r, false);
}

/* Parse and answer what is in c->in, as far as it goes. */
static void admin_conn_process(struct admin_conn *c)
{
    struct admin_request ar;
    struct admin_reply r = { 0 };
    uint32_t need;
    bool head_only;
    int rc;

    if (c->closed || c->writing || c->in_len == 0)
        return;
    if (!c->have_head) {
        rc = h1_parse_request(c->in, c->in_len, &admin_limits, &c->req);
        if (rc == 0) {
            if (c->in_len >= ADMIN_HEAD_MAX)
                admin_conn_fail(c, 431, "request head too large");
            return;
        }
        if (rc < 0) {
            admin_conn_fail(c, -rc, c->req.error ? c->req.error : "bad request");
            return;
        }
        c->have_head = true;
        c->head_len = (uint32_t)rc;
        if (c->req.body == H1_BODY_CHUNKED) {
            admin_conn_fail(c, 411, "chunked bodies are not accepted; send Content-Length");
            return;
        }
        if (c->req.content_length > ADMIN_BODY_MAX) {
            admin_conn_fail(c, 413, "body too large: the admin API takes at most 4096 bytes");
            return;
        }
    }
    need = c->head_len + (uint32_t)c->req.content_length;
    if (c->in_len < need)
        return;

    ar.req = &c->req;
    ar.body = c->in + c->head_len;
    ar.body_len = (size_t)c->req.content_length;
    ar.peer = c->peer;
    /* Handed over: the client's next request must reach the new process. */
    c->close_after = !c->req.keep_alive || c->s->handed_over;
    admin_api_handle(c->s, &ar, &r);
    log_debug("event=admin_request method=%.*s path=%.*s status=%d peer=%s",
              (int)c->req.method.len, c->req.method.p, (int)c->req.path.len, c->req.path.p,
              r.status, c->peer);
    /* The reply is built; the request bytes may go (ar.req is c->req:
     * read what the reply needs of it before it is reset). */
    head_only = c->req.method_id == H1_HEAD;
    memmove(c->in, c->in + need, c->in_len - need);
    c->in_len -= need;
    c->have_head = false;
    h1_request_init(&c->req, c->slots, ADMIN_MAX_HEADERS);
    admin_conn_reply(c, &r, head_only);
}

static void admin_conn_read(struct admin_conn *c)
{
    for (;;) {
        ssize_t n;

        if (c->in_len == sizeof(c->in)) {
            /* Full, and process() did not take it: cannot happen with the
             * head and body bounds, but never spin on it. */
            admin_conn_close(c);
            return;
        }
        n = recv(c->io.fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            admin_conn_close(c);
            return;
        }
        /* No touch here: bytes of a request do not buy it more time, or
         * one byte now and then would hold a connection for ever. */
        c->in_len += (uint32_t)n;
        admin_conn_process(c);
        if (c->closed || c->writing)
            return;
    }
}

static void admin_conn_event(struct io *io, uint32_t events)
{
    struct admin_conn *c = (struct admin_conn *)io;

    if (c->closed)
        return;
    if (c->writing)
        admin_conn_write(c);
    else
        admin_conn_read(c);
}

static void admin_conn_timeout(struct timer *t)
{
    struct admin_conn *c = (void *)((char *)t - offsetof(struct admin_conn, timer));

    log_debug("event=admin_timeout peer=%s", c->peer);
    admin_conn_close(c);
}

static void admin_accept(struct io *io, uint32_t events)
{
    struct admin_server *s = (struct admin_server *)io;

    for (int i = 0; i < 16; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        struct admin_conn *c;
        struct addr peer;
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                log_warn("event=admin_accept_failed error=\"%s\"", strerror(errno));
            return;
        }
        if (s->nconns >= ADMIN_MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
            /* A flood must not turn into a flood of log lines too. */
            s->refused++;
            if (clock_now_ms() >= s->refused_log_ms + 1000) {
                log_warn("event=admin_refused why=\"too many admin connections\" refused=%llu "
                         "max=%d", (unsigned long long)s->refused, ADMIN_MAX_CONNS);
                s->refused = 0;
                s->refused_log_ms = clock_now_ms();
            }
            close(fd);
            continue;
        }
        memcpy(&peer.ss, &ss, sizeof(ss));
        peer.len = len;
        addr_format(&peer, c->peer, sizeof(c->peer));
        c->s = s;
        c->io.fd = fd;
        c->io.cb = admin_conn_event;
        loop_task_init(&c->task, admin_conn_free_task);
        timer_init(&c->timer, admin_conn_timeout);
        h1_request_init(&c->req, c->slots, ADMIN_MAX_HEADERS);
        if (loop_add(s->loop, &c->io, EPOLLIN) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        admin_conn_touch(c);
    }
}

int admin_start(struct admin_server *s, struct loop *loop, struct runtime *rt,
                const struct worker *workers, uint32_t nworkers,
                const struct health_checker *health)
{
    const struct conf_admin *a = &rt->cfg->admin;
    int one = 1, fd, err;

    memset(s, 0, sizeof(*s));
    s->io.fd = -1;
    s->loop = loop;
    s->rt = rt;
    s->workers = workers;
    s->nworkers = nworkers;
    s->health = health;
    s->token = a->token;
    s->start_wall_us = clock_wall_us();
    if (!a->enabled)
        return 0;
    /* After a reload, the old process's socket (it stops accepting on it
     * once this process is ready). */
    fd = reload_take_socket('a', &a->listen, SOCK_STREAM, 0);
    if (fd >= 0)
        goto listening;
    fd = socket(a->listen.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* SO_REUSEADDR only: a second sluice must not share the admin port
     * and answer for the first. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)&a->listen.ss, a->listen.len) < 0 ||
        listen(fd, 64) < 0) {
        err = -errno;
        close(fd);
        return err;
    }
listening:
    s->io.fd = fd;
    s->io.cb = admin_accept;
    if ((err = loop_add(loop, &s->io, EPOLLIN)) < 0) {
        close(fd);
        s->io.fd = -1;
        return err;
    }
    log_info("event=admin_listening address=%s token=%s", a->listen_text,
             a->token ? "required" : "none");
    return 0;
}

void admin_set_stopping(struct admin_server *s)
{
    s->stopping = true;
}

void admin_stop(struct admin_server *s)
{
    if (s->io.fd >= 0) {
        loop_del(s->loop, &s->io);
        close(s->io.fd);
        s->io.fd = -1;
    }
    while (s->conns)
        admin_conn_close(s->conns);
    /* The loop has ended: run the frees the closes queued. */
    loop_run_tasks(s->loop);
}

void admin_close_listener(struct admin_server *s)
{
    s->handed_over = true;
    if (s->io.fd < 0)
        return;
    loop_del(s->loop, &s->io);
    close(s->io.fd);
    s->io.fd = -1;
}

void admin_pause(struct admin_server *s)
{
    if (s->io.fd < 0 || s->paused)
        return;
    loop_del(s->loop, &s->io);
    s->paused = true;
}

void admin_resume(struct admin_server *s)
{
    if (s->io.fd < 0 || !s->paused)
        return;
    if (loop_add(s->loop, &s->io, EPOLLIN) == 0)
        s->paused = false;
}
