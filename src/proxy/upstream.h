/* Upstream connections for L7: per worker, per backend lists of idle
 * keep-alive connections, and new non-blocking connects.
 *
 * A connection is either in use by one exchange (owner set; events go to the
 * owner's callback) or idle in its backend's list (owner NULL; any event
 * means the backend closed it or sent bytes nobody asked for, and it is
 * closed). A connection goes back to the list only after an exchange that
 * ended cleanly: the whole response read, the whole request sent, nothing
 * extra received. */
#ifndef SLUICE_PROXY_UPSTREAM_H
#define SLUICE_PROXY_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "balance/balance.h"
#include "core/loop.h"
#include "core/worker.h"

struct upstream_conn;
typedef void (*upstream_cb)(struct upstream_conn *u, uint32_t events);

/* Owner: the exchange using it, or its backend's idle list. */
typedef struct ssl_st SSL;

struct upstream_conn {
    struct io io;
    struct worker *w;
    struct backend *b;
    upstream_cb cb;              /* the owner's event handler */
    void *owner;                 /* the exchange; NULL while idle */
    struct upstream_conn *prev, *next;   /* idle list */
    struct timer idle_timer;     /* closes it after upstream_idle */
    struct loop_task free_task;  /* frees it once the current event batch is done */
    uint64_t requests;           /* exchanges served, for logs */
    bool readable, writable;
    bool hup;                    /* epoll reported a hang-up: read to EOF */
    bool connected;
    SSL *tls;                    /* a pool with tls: the connection's; NULL = plain */
    int tls_want;                /* handshake: TLS_WANT_READ/WRITE it waits for */
    bool tls_ready;              /* handshake done (a reused connection's is) */
    struct h2_ustream *h2;       /* a stream of an HTTP/2 session (proxy/h2_upstream.c):
                                    no socket of its own; NULL = a connection */
};

/* An idle connection to b, taken off its list, or NULL. */
struct upstream_conn *upstream_take_idle(struct worker *w, struct backend *b);

/* Start a non-blocking connect to b. NULL with *err set (-errno) when it
 * failed at once (refused on loopback, out of descriptors). On success the
 * caller is told of completion through cb (EPOLLOUT, or an error). */
struct upstream_conn *upstream_connect(struct worker *w, struct backend *b, upstream_cb cb,
                                       void *owner, int *err);

/* Adopt a taken idle connection. */
void upstream_attach(struct upstream_conn *u, upstream_cb cb, void *owner);

/* The exchange is done with u: keep it for reuse (reusable) or close it. */
void upstream_release(struct upstream_conn *u, bool reusable);

/* Close every idle connection of the worker (drain, shutdown). */
void upstream_close_idle(struct worker *w);

/* Close idle connections to backends that are no longer eligible (drained,
 * disabled, down): called when a worker sees a pool generation change. */
void upstream_close_idle_ineligible(struct worker *w, struct pool *p);

/* Close idle connections to backends that stopped being eligible (drained,
 * disabled, down, ejected) since the last sweep. */
void upstream_sweep(struct worker *w);

/* What an epoll event says of u, for its owner's callback: readable on
 * input or a hang-up (to read the EOF or error), writable on EPOLLOUT or a
 * hang-up (a send reports the error), hup once the peer is gone. */
static inline void upstream_note_events(struct upstream_conn *u, uint32_t events)
{
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        u->readable = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        u->writable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        u->hup = true;
}

/* A new connection to a pool with tls: one step of its handshake, run when
 * the socket flag it waits for is set. 1: done (tls_ready). 0: waiting.
 * -1: failed (logged as event=tls_handshake_failed). -2: out of memory. */
int upstream_tls_step(struct upstream_conn *u);

/* send and recv to a backend, whatever carries the connection: a plain
 * socket, TLS for a pool with tls, or an HTTP/2 stream (u->h2). -1 with
 * errno EAGAIN when it must wait. A TLS or HTTP/2 read may leave bytes
 * inside: only EAGAIN says the connection is drained. */
ssize_t upstream_send(struct upstream_conn *u, const void *p, size_t n);
ssize_t upstream_recv(struct upstream_conn *u, void *p, size_t n);

/* Pending socket error of u (SO_ERROR), 0 if none. */
int upstream_socket_error(struct upstream_conn *u);

#endif
