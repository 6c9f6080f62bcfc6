/* Hot reload by handing over to a new process, as HAProxy's seamless reload
 * and NGINX's binary upgrade do, rather than by changing the config inside a
 * running process:
 *
 *  1. The running sluice (the old one) loads and validates the config file;
 *     an invalid one is reported (FILE:LINE:COL) and nothing changes.
 *  2. It starts `sluice -c FILE` again, passing down its listening sockets,
 *     its admin socket and a snapshot of its backends' runtime state
 *     (descriptors named in the SLUICE_INHERIT environment variable).
 *  3. The new process takes every inherited socket whose address is still in
 *     its config (the same socket: no port is ever closed, no connection in
 *     an accept queue is lost), binds the new ones, keeps what the operator
 *     and the health checks knew of backends that still exist, runs its
 *     first health checks, starts serving and says "ready".
 *  4. The old process then stops accepting and drains as on SIGTERM, without
 *     shutdown_delay: requests in flight finish (up to drain_timeout),
 *     keep-alive clients get Connection: close, idle upstream connections
 *     close at once. A backend removed from the config thus gets no new work,
 *     and what it still serves finishes or is closed at drain_timeout.
 *
 * If the new process fails before it is ready (a port it cannot bind, ...)
 * the old one logs why and keeps serving. Processes rather than an in-place
 * swap: a reload cannot leave a half-applied config in a running process, and
 * the data path needs no locks or reference counts on config that could
 * change under it. */
#ifndef SLUICE_CORE_RELOAD_H
#define SLUICE_CORE_RELOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "net/addr.h"

struct runtime;
struct worker;
struct health_checker;

/* ---- the old process ---- */

/* Remember the executable and the config path (at startup: a reload runs the
 * binary found at that path then, so an upgraded binary takes over). */
void reload_set_command(const char *config_path);

/* A new process being started. Owner: main.c. */
struct reload_count;
struct reload_child {
    pid_t pid;                   /* 0: no reload in progress */
    int ready_fd;                /* read end of the child's "ready" pipe */
    uint64_t started_ms;
    char msg[16384];             /* what it wrote: "ready", then "took W I" lines */
    size_t msg_len;
    /* The backends' counters go down twice: at the start, and at the
     * handover what this process counted in between (see
     * reload_child_handover). */
    int state_fd;                /* the state file both processes share */
    int final_fd;                /* closing this pipe says the counts are in it */
    struct reload_count *counts; /* per backend, as written at the start */
};

/* Validate the config file (errors to err as FILE:LINE:COL lines), then
 * start the new process with every socket and the backends' state passed
 * down. 0 with *child set; -EINVAL for an invalid config; -errno else. */
int reload_spawn(const struct runtime *rt, const struct worker *workers, uint32_t nworkers,
                 int admin_fd, const struct health_checker *hc, FILE *err,
                 struct reload_child *child);

/* Read what the child wrote to its pipe: 0 while it may write more, 1 once
 * it closed the pipe (then ask reload_child_ready). */
int reload_child_read(struct reload_child *child);
/* It said "ready": mark the listening sockets it took as handed over (see
 * worker_listener.handed_over). */
bool reload_child_ready(struct reload_child *child, struct worker *workers, uint32_t nworkers);

/* After the child's pipe said nothing or hung up: reap it if it exited and
 * describe why it is gone ("exited with status 1", ...). */
void reload_child_gone(struct reload_child *child, char *why, size_t len);

/* It said "ready": write what the backends counted since the start into
 * the state file and tell it so. Requests served while the new process
 * started (its first health checks can take seconds) are counted there
 * too, and a counter never reads less in the new process than it did here
 * (Prometheus would take that for a reset). */
void reload_child_handover(struct reload_child *child, const struct runtime *rt,
                           const struct health_checker *hc);
/* Free what reload_spawn kept for a child (the reload ended either way). */
void reload_child_close(struct reload_child *child);

/* ---- the new process ---- */

/* Read SLUICE_INHERIT (and remove it from the environment). */
void reload_inherit_load(void);
bool reload_inherited(void);

/* An inherited socket of this kind ('l' a listener, one per old worker,
 * worker_id picks which; 'a' the admin socket) and type bound to addr, or
 * -1. The caller owns what it takes. */
int reload_take_socket(char kind, const struct addr *addr, int type, int worker_id);

/* Close the inherited sockets the new config did not take. */
void reload_close_unused(void);

/* Carry over, for each backend still in the config (same pool, name and
 * address): an operator's drain, disable or weight (unless the config's
 * weight changed), whether its health checks were passing, an ejection
 * still running, and its counters. Before the workers start. */
void reload_apply_state(struct runtime *rt, struct health_checker *hc);

/* Discovery pools whose first resolution failed start with the backends
 * the old process had (discovery_seed), so that a reload while the
 * resolver is down does not empty them. Before health checks start. */
struct discovery;
void reload_seed_discovery(struct discovery *d);

/* Serving: tell the old process (and systemd, which learns the new main
 * PID) that it can hand over, then add what its backends counted while
 * this process started (waits for that a few seconds at most; before the
 * admin API answers here, so no scrape sees the counters without it). */
void reload_notify_ready(struct runtime *rt);

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. */
void reload_sd_notify(const char *msg);

#endif
