/* The command line and the main thread: load the config, bind every
 * listener (reporting a port in use at its FILE:LINE:COL), start the
 * workers, then own signals, health checks and reloads (core/reload.h)
 * until a graceful stop. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin/admin.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/offload.h"
#include "core/reload.h"
#include "core/runtime.h"
#include "core/version.h"
#include "core/worker.h"
#include "proto/tls.h"
#include "discovery/discovery.h"
#include "peers/peers.h"
#include "health/health.h"
#include "net/listener.h"
#include "proxy/access_log.h"
#include "route/route.h"
#include "route/jwks.h"

#define STOP_POLL_MS 20
/* A new process that is not serving by then is given up on (it runs its
 * first health checks before it is ready: each bounded by its timeout). */
#define RELOAD_READY_TIMEOUT_MS 60000

static const char usage[] =
    "usage:\n"
    "  sluice -c FILE              run in the foreground\n"
    "  sluice check -c FILE        validate FILE; exit 0, or 1 with FILE:LINE:COL errors\n"
    "  sluice ctl [--admin ADDR] [--token-file FILE] [--json]\n"
    "             status | drain POOL/BACKEND | enable POOL/BACKEND\n"
    "             | disable POOL/BACKEND | weight POOL/BACKEND N | reload\n"
    "                              talk to a running sluice's admin API\n"
    "                              (`sluice ctl --help` for details)\n"
    "  sluice --version            print the version\n"
    "  sluice --help               this text\n"
    "\n"
    "options:\n"
    "  -c FILE, --config FILE      the YAML config (docs/configuration.md)\n"
    "\n"
    "signals: SIGTERM/SIGINT stop gracefully (a second one stops at once),\n"
    "         SIGHUP reloads the config (a new process takes over the sockets,\n"
    "         this one drains), SIGUSR1 reopens the access log file.\n";

/* Owner: main(); the main thread's state. */
struct main_state {
    struct loop loop;
    struct io signal_io;
    struct runtime rt;
    struct health_checker health;
    struct discovery discovery;    /* backends from DNS */
    struct peers peers;            /* shared rate limits with other instances */
    struct admin_server admin;     /* on this loop; closed only after the drain */
    struct worker *workers;
    uint32_t nworkers;
    struct timer stop_timer;       /* polls for the workers to finish */
    uint64_t drain_deadline_ms;    /* 0 = not stopping */
    uint64_t drain_starts_ms;      /* shutdown_delay: listeners close then; 0 = done */
    bool forced;
    struct reload_child reload;    /* a new process starting; pid 0 = none */
    struct io reload_io;           /* its "ready" pipe */
    struct timer reload_timer;     /* gives up on it after RELOAD_READY_TIMEOUT_MS */
};

static void stop_poll(struct timer *t)
{
    struct main_state *m = (void *)((char *)t - offsetof(struct main_state, stop_timer));
    uint32_t done = 0;

    if (m->drain_starts_ms) {
        if (clock_now_ms() < m->drain_starts_ms) {
            timer_arm(&m->loop.timers, &m->stop_timer, clock_now_ms() + STOP_POLL_MS);
            return;
        }
        m->drain_starts_ms = 0;
        log_info("event=draining");
        for (uint32_t i = 0; i < m->nworkers; i++)
            worker_command(&m->workers[i], WORKER_DRAIN);
    }
    for (uint32_t i = 0; i < m->nworkers; i++)
        done += (uint32_t)atomic_load(&m->workers[i].finished);
    if (done == m->nworkers) {
        loop_stop(&m->loop);
        return;
    }
    if (!m->forced && clock_now_ms() >= m->drain_deadline_ms) {
        log_warn("event=drain_timeout why=\"connections still open after drain_timeout; closing them\"");
        m->forced = true;
        for (uint32_t i = 0; i < m->nworkers; i++)
            worker_command(&m->workers[i], WORKER_STOP);
    }
    timer_arm(&m->loop.timers, &m->stop_timer, clock_now_ms() + STOP_POLL_MS);
}

static void reload_end(struct main_state *m)
{
    timer_cancel(&m->loop.timers, &m->reload_timer);
    if (m->reload_io.fd >= 0) {
        loop_del(&m->loop, &m->reload_io);
        close(m->reload_io.fd);
        m->reload_io.fd = -1;
    }
    reload_child_close(&m->reload);
    m->reload.pid = 0;
}

/* The new process serves: stop accepting (it has the same sockets) and
 * drain as on SIGTERM, without shutdown_delay: nothing needs to move
 * clients elsewhere first, the new process already takes them. */
static void hand_over(struct main_state *m)
{
    log_info("event=reload_handover new_pid=%d drain_timeout_ms=%llu", (int)m->reload.pid,
             (unsigned long long)m->rt.cfg->drain_timeout_ms);
    reload_child_handover(&m->reload, &m->rt, &m->health);
    reload_end(m);
    /* New admin connections go to the new process. /healthz stays 200 here
     * for connections already open: the service is not going away, and a
     * monitor on a kept-alive connection must not see it stopping. */
    admin_close_listener(&m->admin);
    /* The peers' socket too: both processes are bound to peers.listen
     * (SO_REUSEPORT), and the kernel would go on handing this one the
     * updates of some peers for the whole drain, lost to the new process's
     * shared limits. What the workers let through so far is sent first;
     * draining, they take no new requests. */
    peers_stop(&m->peers);
    m->drain_deadline_ms = clock_now_ms() + m->rt.cfg->drain_timeout_ms;
    m->drain_starts_ms = clock_now_ms();
    timer_arm(&m->loop.timers, &m->stop_timer, clock_now_ms());
}

static void reload_failed(struct main_state *m, const char *why)
{
    m->admin.reload_info.result = "failed";
    snprintf(m->admin.reload_info.why, sizeof(m->admin.reload_info.why), "%s", why);
    log_error("event=reload_failed new_pid=%d why=\"%s; this process keeps serving\"",
              (int)m->reload.pid, why);
    reload_end(m);
}

static void reload_ready_cb(struct io *io, uint32_t events)
{
    struct main_state *m = (void *)((char *)io - offsetof(struct main_state, reload_io));
    char why[128];

    if (reload_child_read(&m->reload) == 0)
        return;                    /* more to come */
    if (reload_child_ready(&m->reload, m->workers, m->nworkers)) {
        hand_over(m);
        return;
    }
    reload_child_gone(&m->reload, why, sizeof(why));
    reload_failed(m, why);
}

static void reload_timeout(struct timer *t)
{
    struct main_state *m = (void *)((char *)t - offsetof(struct main_state, reload_timer));

    /* Our own child, by PID: it may hold sockets it will never serve. */
    kill(m->reload.pid, SIGKILL);
    waitpid(m->reload.pid, NULL, 0);
    reload_failed(m, "the new process was not ready within 60 s and was killed");
}

/* SIGHUP or POST /api/v1/reload. Config errors go to err. */
static int reload_begin(struct main_state *m, FILE *err)
{
    int rc;

    if (m->drain_deadline_ms)
        return -ESHUTDOWN;
    if (m->reload.pid)
        return -EBUSY;
    rc = reload_spawn(&m->rt, m->workers, m->nworkers, m->admin.io.fd, &m->health, err,
                      &m->reload);
    if (rc < 0)
        return rc;
    m->reload_io.fd = m->reload.ready_fd;
    m->reload_io.cb = reload_ready_cb;
    if (loop_add(&m->loop, &m->reload_io, EPOLLIN) < 0) {
        close(m->reload_io.fd);
        m->reload_io.fd = -1;
        kill(m->reload.pid, SIGKILL);
        waitpid(m->reload.pid, NULL, 0);
        reload_child_close(&m->reload);
        m->reload.pid = 0;
        return -ENOMEM;
    }
    timer_arm(&m->loop.timers, &m->reload_timer, clock_now_ms() + RELOAD_READY_TIMEOUT_MS);
    m->admin.reload_info.new_pid = (int)m->reload.pid;
    m->admin.reload_info.result = "starting";
    m->admin.reload_info.why[0] = '\0';
    log_info("event=reload_started new_pid=%d", (int)m->reload.pid);
    return 0;
}

static void reload_signal(struct main_state *m)
{
    int rc = reload_begin(m, stderr);

    if (rc == -EINVAL)
        log_error("event=reload_rejected why=\"the config has errors (above); nothing was changed\"");
    else if (rc == -EBUSY)
        log_warn("event=reload_rejected why=\"a reload is already in progress\"");
    else if (rc == -ESHUTDOWN)
        log_warn("event=reload_rejected why=\"stopping\"");
    else if (rc < 0)
        log_error("event=reload_failed why=\"cannot start the new process: %s\"", strerror(-rc));
}

/* admin.h's reload hook: the config's errors come back in *errors as well. */
static int reload_api(void *ctx, char **errors, int *new_pid)
{
    struct main_state *m = ctx;
    size_t len = 0;
    FILE *err = open_memstream(errors, &len);
    int rc = reload_begin(m, err ? err : stderr);

    if (err)
        fclose(err);
    if (rc == -EINVAL && *errors)
        fputs(*errors, stderr);   /* in the log too, as for SIGHUP */
    *new_pid = (int)m->reload.pid;
    return rc;
}

static void begin_stop(struct main_state *m, int signo)
{
    if (m->drain_deadline_ms) {
        /* A second signal: the operator does not want to wait. */
        m->drain_deadline_ms = clock_now_ms();
        if (m->drain_starts_ms)
            m->drain_starts_ms = clock_now_ms();
        log_warn("event=stop_now signal=%s", strsignal(signo));
        return;
    }
    if (m->reload.pid) {
        /* Our child, by PID: a stop wins over a reload not finished. */
        log_warn("event=reload_abandoned new_pid=%d why=\"stopping\"", (int)m->reload.pid);
        kill(m->reload.pid, SIGKILL);
        waitpid(m->reload.pid, NULL, 0);
        reload_end(m);
    }
    log_info("event=stopping signal=%s shutdown_delay_ms=%llu drain_timeout_ms=%llu",
             strsignal(signo), (unsigned long long)m->rt.cfg->shutdown_delay_ms,
             (unsigned long long)m->rt.cfg->drain_timeout_ms);
    /* /healthz turns 503 first; listeners close after shutdown_delay, so the
     * tier in front moves new clients elsewhere before we refuse them. */
    admin_set_stopping(&m->admin);
    m->drain_deadline_ms = clock_now_ms() + m->rt.cfg->shutdown_delay_ms +
                           m->rt.cfg->drain_timeout_ms;
    m->drain_starts_ms = clock_now_ms() + m->rt.cfg->shutdown_delay_ms;
    timer_arm(&m->loop.timers, &m->stop_timer, clock_now_ms() + STOP_POLL_MS);
}

static void signal_cb(struct io *io, uint32_t events)
{
    struct main_state *m = (void *)((char *)io - offsetof(struct main_state, signal_io));
    struct signalfd_siginfo si;

    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            begin_stop(m, (int)si.ssi_signo);
            break;
        case SIGUSR1:
            if (log_access_reopen() < 0)
                log_error("event=access_log_reopen_failed error=\"%s\"", strerror(errno));
            else
                log_info("event=access_log_reopened");
            break;
        case SIGHUP:
            reload_signal(m);
            break;
        }
    }
}

/* Enough descriptors for thousands of spliced connections (a socket pair and
 * two pipes each). */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static uint32_t worker_count(const struct config *cfg)
{
    long n;

    if (cfg->workers)
        return cfg->workers;
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (uint32_t)n : 1;
}

/* A start that failed after the workers were built: undo what began (each
 * stop is a no-op for what did not). */
static void unwind_start(struct main_state *m)
{
    peers_stop(&m->peers);
    discovery_stop(&m->discovery);
    admin_stop(&m->admin);
    for (uint32_t j = 0; j < m->nworkers; j++)
        worker_destroy(&m->workers[j]);
}

static int run(const char *path)
{
    struct main_state m;
    struct config *cfg;
    sigset_t mask;
    int rc = 1, err;

    memset(&m, 0, sizeof(m));
    m.reload_io.fd = -1;
    reload_inherit_load();       /* sockets and state from the process we replace */
    reload_set_command(path);
    if (config_load(path, stderr, &cfg) < 0)
        return 1;
    log_init();
    log_set_level(cfg->log_level);
    access_log_set_format(cfg->access_format);
    if ((err = log_access_open(cfg->access_log)) < 0) {
        fprintf(stderr, "%s: error: cannot open access log '%s': %s\n", path, cfg->access_log,
                strerror(-err));
        config_free(cfg);
        return 1;
    }
    raise_fd_limit();

    /* Signals are blocked in every thread (workers inherit the mask) and
     * read from a signalfd on the main loop. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (runtime_init(&m.rt, cfg) < 0 || loop_init(&m.loop) < 0) {
        fprintf(stderr, "sluice: out of memory\n");
        goto out_cfg;
    }
    m.nworkers = worker_count(cfg);
    m.workers = calloc(m.nworkers, sizeof(*m.workers));
    if (!m.workers)
        goto out_rt;
    for (uint32_t i = 0; i < m.nworkers; i++) {
        const struct conf_listener *failed = NULL;
        err = worker_init(&m.workers[i], (int)i, &m.rt, &failed);
        if (err < 0) {
            if (failed)
                fprintf(stderr, "%s:%d:%d: error: listener '%s': cannot bind %s: %s%s\n",
                        failed->bind_pos.file, failed->bind_pos.line, failed->bind_pos.col,
                        failed->name, failed->bind_text, strerror(-err),
                        listener_bind_hint(-err));
            else
                fprintf(stderr, "sluice: cannot start worker %u: %s\n", i, strerror(-err));
            for (uint32_t j = 0; j <= i; j++)
                worker_destroy(&m.workers[j]);
            goto out_workers;
        }
    }

    if ((err = admin_start(&m.admin, &m.loop, &m.rt, m.workers, m.nworkers, &m.health)) < 0) {
        const struct conf_admin *a = &cfg->admin;
        fprintf(stderr, "%s:%d:%d: error: admin.listen: cannot bind %s: %s\n",
                a->listen_pos.file, a->listen_pos.line, a->listen_pos.col, a->listen_text,
                strerror(-err));
        for (uint32_t j = 0; j < m.nworkers; j++)
            worker_destroy(&m.workers[j]);
        goto out_workers;
    }
    reload_close_unused();       /* sockets the new config has no use for */
    if (reload_inherited())
        admin_pause(&m.admin);   /* the old process answers until we serve */
    m.admin.reload = reload_api;
    m.admin.reload_ctx = &m;
    m.signal_io.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    m.signal_io.cb = signal_cb;
    loop_add(&m.loop, &m.signal_io, EPOLLIN);
    timer_init(&m.stop_timer, stop_poll);
    timer_init(&m.reload_timer, reload_timeout);
    /* Pools with discovery get their first answer (or give up on it,
     * bounded by their timeout) before anything else: their health checks
     * and first requests need backends. */
    if ((err = discovery_start(&m.discovery, &m.loop, &m.rt)) < 0) {
        fprintf(stderr, "sluice: cannot start DNS discovery: %s\n", strerror(-err));
        unwind_start(&m);
        goto out_workers;
    }
    while (m.discovery.initial_pending && !m.loop.stop)
        loop_run_once(&m.loop, 100);
    reload_seed_discovery(&m.discovery);
    if ((err = peers_start(&m.peers, &m.loop, &m.rt, m.workers, m.nworkers)) < 0) {
        fprintf(stderr, "%s: error: peers.listen: cannot use %s: %s\n", cfg->file,
                cfg->peers->listen_text, strerror(-err));
        unwind_start(&m);
        goto out_workers;
    }
    m.admin.peers = &m.peers;
    if (health_start(&m.health, &m.loop, &m.rt) < 0 ||
        discovery_attach(&m.discovery, &m.health, m.workers, m.nworkers) < 0) {
        fprintf(stderr, "sluice: out of memory\n");
        unwind_start(&m);
        goto out_workers;
    }
    /* Backends with checks start DOWN until their first pass: run the first
     * round before serving (each bounded by its timeout) so that a healthy
     * pool serves from the first request. */
    while (m.health.initial_pending && !m.loop.stop)
        loop_run_once(&m.loop, 100);
    reload_apply_state(&m.rt, &m.health);
    /* Password hashes are verified off the event loops (core/offload.c). */
    if (config_uses_basic_auth(cfg) && (err = offload_start(OFFLOAD_THREADS)) < 0) {
        fprintf(stderr, "sluice: cannot start helper threads: %s\n", strerror(-err));
        abort();
    }
    if ((err = tls_ocsp_fetcher_start()) < 0) {
        fprintf(stderr, "sluice: cannot start the OCSP fetcher thread: %s\n", strerror(-err));
        abort();
    }
    if ((err = jwks_fetcher_start(cfg)) < 0) {     /* jwks_url: first fetches, off the loop */
        fprintf(stderr, "sluice: cannot start the JWKS fetcher thread: %s\n", strerror(-err));
        abort();
    }
    if (reload_inherited())       /* the old process serves while this one fetches its keys */
        jwks_fetcher_wait_first(JWKS_FETCH_TIMEOUT_MS + 1000);
    for (uint32_t i = 0; i < m.nworkers; i++) {
        if ((err = worker_start(&m.workers[i])) < 0) {
            fprintf(stderr, "sluice: cannot start worker thread: %s\n", strerror(-err));
            abort();   /* threads already running cannot be unwound cleanly */
        }
    }
    log_info("event=started version=%s workers=%u listeners=%zu pools=%zu pid=%d%s",
             SLUICE_VERSION, m.nworkers, cfg->nlisteners, cfg->npools, (int)getpid(),
             reload_inherited() ? " reloaded=true" : "");
    reload_notify_ready(&m.rt);
    admin_resume(&m.admin);

    loop_run(&m.loop);

    admin_stop(&m.admin);
    for (uint32_t i = 0; i < m.nworkers; i++)
        worker_join(&m.workers[i]);
    offload_stop(m.workers, m.nworkers);
    health_stop(&m.health);
    discovery_stop(&m.discovery);
    peers_stop(&m.peers);
    for (uint32_t i = 0; i < m.nworkers; i++)
        worker_destroy(&m.workers[i]);
    close(m.signal_io.fd);
    log_info("event=stopped");
    rc = 0;
out_workers:
    free(m.workers);
out_rt:
    tls_ocsp_fetcher_stop();      /* before the contexts it fetches for go */
    jwks_fetcher_stop();          /* before the config's key sources go */
    loop_destroy(&m.loop);
    runtime_destroy(&m.rt);
out_cfg:
    config_free(cfg);
    log_access_open(NULL);
    return rc;
}

static int check(const char *path)
{
    struct config *cfg;
    int errors;

    if (config_load(path, stderr, &cfg) < 0)
        return 1;
    errors = config_check_binds(cfg, stderr);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (cfg->listeners[i].mode == LISTENER_HTTP) {
            route_check_paths(&cfg->listeners[i], stderr);
            route_check_shadowed(&cfg->listeners[i], stderr);
        }
    config_free(cfg);
    if (errors)
        return 1;
    printf("%s: ok\n", path);
    return 0;
}

/* The value of "-c FILE" / "--config FILE" / "--config=FILE", which must be
 * the only arguments from argv[from] on; else NULL, after saying why. An
 * argument passed over would leave `sluice -c FILE -t` (nginx's "test the
 * config") serving traffic, or `sluice check` passing a check it never ran. */
static const char *config_arg(int argc, char **argv, int from, const char *cmd)
{
    const char *path = NULL;

    for (int i = from; i < argc; i++) {
        const char *v = NULL;

        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "%s: %s needs a FILE\n", cmd, argv[i]);
                return NULL;
            }
            v = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            v = argv[i] + 9;
        }
        if (!v || path) {
            fprintf(stderr, "%s: %s '%s'\n", cmd, v ? "a second config file" : "unknown argument",
                    v ? v : argv[i]);
            return NULL;
        }
        path = v;
    }
    if (!path)
        fprintf(stderr, "%s: missing -c FILE\n", cmd);
    return path;
}

int main(int argc, char **argv)
{
    const char *path;

    clock_update();
    if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)) {
        printf("sluice %s\n", SLUICE_VERSION);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "ctl") == 0)
        return ctl_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "check") == 0) {
        path = config_arg(argc, argv, 2, "sluice check");
        if (!path) {
            fputs(usage, stderr);
            return 2;
        }
        return check(path);
    }
    if (argc >= 2 && argv[1][0] != '-') {
        fprintf(stderr, "sluice: unknown command '%s'\n%s", argv[1], usage);
        return 2;
    }
    path = config_arg(argc, argv, 1, "sluice");
    if (!path) {
        fputs(usage, stderr);
        return 2;
    }
    return run(path);
}
