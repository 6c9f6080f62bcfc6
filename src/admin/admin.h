/* The admin server: HTTP/1.1 on admin.listen, served on the main thread's
 * event loop (never on a worker), parsed with sluice's own h1 parser.
 *
 *   GET  /healthz, /metrics, /api/v1/status, /     open to anyone who can connect
 *   POST /api/v1/pools/P/backends/B/{drain,enable,disable}
 *   PUT  /api/v1/pools/P/backends/B/weight         {"weight": N}
 *   POST /api/v1/reload                            202: a new process is starting
 *
 * Mutating calls need "Authorization: Bearer TOKEN" whenever
 * admin.token_file is set (and the config refuses a non-loopback listen
 * without one). A change is an atomic store plus a pool->generation bump,
 * which every worker sees on its next pick.
 *
 * `sluice ctl` (ctl.c) is the command-line client of the same API. */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/loop.h"
#include "core/runtime.h"
#include "core/worker.h"
#include "health/health.h"

struct admin_conn;

/* The last reload, shown by GET /api/v1/status (main.c keeps it current),
 * so that `sluice ctl reload` can tell a failed start from a slow one. */
struct admin_reload_info {
    int new_pid;                   /* 0: none yet */
    const char *result;            /* "starting" or "failed" */
    char why[200];
};

/* Owner: main.c (struct main_state). */
struct admin_server {
    struct io io;                  /* listening socket; fd -1 when off */
    struct loop *loop;             /* the main thread's loop */
    struct runtime *rt;            /* backends change state through it */
    const struct worker *workers;  /* for /metrics: their counters */
    uint32_t nworkers;
    const struct health_checker *health;
    const struct peers *peers;     /* for /metrics; NULL or off without peers */
    const char *token;             /* NULL: mutating calls need no token */
    struct admin_conn *conns;      /* open connections */
    uint32_t nconns;
    uint64_t refused;              /* connections refused at the cap, not yet logged */
    uint64_t refused_log_ms;       /* when that was last logged (once a second at most) */
    bool stopping;                 /* a graceful stop began: /healthz says 503 */
    bool paused;                   /* listening socket out of the loop (admin_pause) */
    bool handed_over;              /* a reload's new process serves: changes made here
                                      would be lost (admin_close_listener) */
    /* POST /api/v1/reload (main.c): 0 and *new_pid, or -EINVAL with the
     * config's errors in errors (FILE:LINE:COL lines), or -errno. */
    int (*reload)(void *ctx, char **errors, int *new_pid);
    void *reload_ctx;
    struct admin_reload_info reload_info;
    uint64_t start_wall_us;
};

/* Bind admin.listen (when the config has an admin block) and start serving
 * on loop. Returns 0 (also when there is no admin block) or -errno; the
 * caller reports a failed bind at cfg->admin.listen_pos. */
int admin_start(struct admin_server *s, struct loop *loop, struct runtime *rt,
                const struct worker *workers, uint32_t nworkers,
                const struct health_checker *health);

/* A graceful stop began: /healthz answers 503 from now on. The server keeps
 * serving until admin_stop, so the drain can be watched. */
void admin_set_stopping(struct admin_server *s);

/* Stop accepting (a reload handed the socket over); open connections stay,
 * each closed after its next reply, and changes are refused on them: the
 * new process would never see them. */
void admin_close_listener(struct admin_server *s);

/* A reload's new process shares the old one's admin socket: it accepts on
 * it only once it serves, so that until then every admin call (a status
 * read, `sluice ctl reload` waiting for the new pid) reaches the old one. */
void admin_pause(struct admin_server *s);
void admin_resume(struct admin_server *s);

/* Close the listener and every connection (after the main loop ended). */
void admin_stop(struct admin_server *s);

/* `sluice ctl ...`: argv[0] is "ctl". Returns the exit status. */
int ctl_main(int argc, char **argv);

#endif
