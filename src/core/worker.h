/* Worker threads: one event loop each, with its own listening sockets
 * (SO_REUSEPORT), connections, balancers and buffer freelist. A connection
 * lives and dies on one worker; nothing on the data path takes a lock.
 *
 * The main thread talks to a worker only through worker->command (an atomic)
 * and loop_wake(). */
#ifndef SLUICE_CORE_WORKER_H
#define SLUICE_CORE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "balance/balance.h"
#include "core/buffer.h"
#include "core/loop.h"
#include "core/runtime.h"

struct worker;
struct udp_flow_table;
struct offload_job;
struct auth_cache;
struct peers_outbox;

enum worker_command {
    WORKER_RUN,
    WORKER_DRAIN,       /* stop accepting; exit when the last connection ends */
    WORKER_STOP,        /* close every connection now and exit */
};

/* One listening socket of one worker. Owner: the worker. */
struct worker_listener {
    struct io io;
    struct io tcp_io;                /* dns listeners: DNS over TCP too (gslb/); fd -1 otherwise */
    struct worker *w;
    struct listener *l;
    struct timer pause_timer;        /* accept paused after EMFILE */
    bool full;                       /* accept paused at max_connections */
    struct udp_flow_table *flows;    /* udp listeners only */
    _Atomic int handed_over;         /* set by main before DRAIN on a reload: the new
                                        process took this very socket */
    uint32_t accept_budget;          /* accept4 calls per readiness, see worker_accept */
    uint32_t accept_full_rounds;     /* rounds in a row that took the whole budget */
};

/* A pipe kept for splice(2), reused between connections. */
struct worker_pipe {
    struct worker_pipe *next;
    int fd[2];
    uint32_t cap;                    /* bytes the pipe holds */
};

/* Owner: main.c creates it; after start, only its own thread touches it
 * (except `command`). */
struct worker {
    int id;
    pthread_t thread;
    struct loop loop;
    struct runtime *rt;
    struct buf_pool bufs;
    struct worker_listener *listeners;   /* one per rt->listeners */
    size_t nlisteners;
    uint32_t nfull;                      /* listeners paused at max_connections */
    struct balancer *balancers;          /* one per rt->pools */
    struct worker_pipe *free_pipes;
    uint32_t nfree_pipes;
    void *sessions;                      /* proxy/tcp.c: list of live sessions */
    void *http_conns;                    /* proxy/http.c: list of client connections */
    void *h2_conns;                      /* proxy/h2.c: list of HTTP/2 client connections */
    void *h2_sessions;                   /* proxy/h2_upstream.c: HTTP/2 sessions to backends */
    void *mirrors;                       /* proxy/mirror.c: request copies in flight */
    uint32_t nmirrors;
    uint64_t mirror_held;                /* proxy/mirror.c: bytes of copies held, building
                                            or in flight (bounded by MIRROR_MAX_HELD) */
    void *dns_conns;                     /* gslb/gslb.c: DNS-over-TCP client connections,
                                            most recently active first */
    uint32_t dns_nconns;                 /* how many */
    uint32_t nsessions;                  /* live tcp sessions + http connections */
    void *upstream_idle;                 /* proxy/upstream.c: idle keep-alive lists */
    void *free_exchanges;                /* proxy/http.c: exchanges kept for reuse */
    struct timer sweep;                  /* closes work to backends whose drain timed out */
    uint32_t nfree_exchanges;
    void *metrics;                       /* admin/metrics.c: this worker's counters */
    uint64_t rng;
    _Atomic int command;                 /* enum worker_command, set by main */
    _Atomic int finished;                /* set by the worker when its loop ended */
    _Atomic uint64_t sweeps;             /* sweeps done: each one is a moment when the
                                            worker holds no backend it has not counted
                                            (discovery.c's grace period) */
    int draining;                        /* DRAIN seen: listeners closed */
    pthread_mutex_t offload_lock;        /* guards offload_done */
    struct offload_job *offload_done;    /* core/offload.c: finished jobs to hand back */
    struct auth_cache *auth_cache;       /* route/auth.c: credentials that passed; lazily made */
    struct peers_outbox *peers_out;      /* peers/: shared rate limits let through; NULL
                                            without peers */
};

extern __thread struct worker *worker_self;

/* Build the worker and bind its sockets. On a bind failure, returns -errno
 * and sets *failed to the listener that could not bind. */
int worker_init(struct worker *w, int id, struct runtime *rt,
                const struct conf_listener **failed);
int worker_start(struct worker *w);
void worker_command(struct worker *w, enum worker_command cmd);
void worker_join(struct worker *w);
void worker_destroy(struct worker *w);

/* Called when a connection of this worker ended: a draining worker exits
 * once none is left. */
void worker_connection_ended(struct worker *w);

/* Accept what the listener has, up to an adaptive budget, and hand each
 * connection to start. 0, or -EMFILE when out of descriptors (the caller
 * pauses the listener). */
struct addr;
int worker_accept(struct worker_listener *wl,
                  void (*start)(struct worker_listener *wl, int fd, const struct addr *peer));

/* Out of descriptors on io, a listening socket of wl (wl->io, or a dns
 * listener's tcp_io): a level-triggered accept would spin, so io leaves the
 * loop for a moment while connections wait in the kernel's backlog. */
void worker_pause_accept(struct worker_listener *wl, struct io *io);

/* Pipes for splice; NULL when none can be made (then buffers are used). */
struct worker_pipe *worker_pipe_get(struct worker *w);
void worker_pipe_put(struct worker *w, struct worker_pipe *p, int empty);

#endif
