/* Hot reload: the handover between the old and the new process. See
 * reload.h for the sequence and why it uses processes. */
#include "core/reload.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "balance/balance.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/worker.h"
#include "discovery/discovery.h"
#include "health/health.h"

extern char **environ;

#define INHERIT_ENV "SLUICE_INHERIT"
#define INHERIT_MAX 4096            /* sockets passed down, at most */
#define STATE_MAX (64u << 20)       /* the state snapshot, at most */

/* ---- the old process ---- */

static char exe_path[PATH_MAX];
static char *config_path;

void reload_set_command(const char *path)
{
    ssize_t n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);

    exe_path[n > 0 ? n : 0] = '\0';
    free(config_path);
    config_path = strdup(path);
}

/* A descriptor the child inherits: a copy without FD_CLOEXEC, listed in the
 * environment as "KIND:WORKER:INDEX:FD" (a listener: the old worker and the
 * listener's index there, which the new process reports back for the
 * sockets it took). */
struct passed {
    int fds[INHERIT_MAX];
    size_t n;
    char *env;
    size_t env_len, env_cap;
};

static int pass_fd(struct passed *p, char kind, int worker, int index, int fd)
{
    char item[64];
    int copy, len;

    if (fd < 0 || p->n >= INHERIT_MAX)
        return 0;
    copy = fcntl(fd, F_DUPFD, 3);   /* no FD_CLOEXEC: survives exec */
    if (copy < 0)
        return -errno;
    p->fds[p->n++] = copy;
    len = snprintf(item, sizeof(item), "%s%c:%d:%d:%d", p->env_len ? "," : "", kind, worker,
                   index, copy);
    if (p->env_len + (size_t)len + 1 > p->env_cap) {
        size_t cap = p->env_cap ? p->env_cap * 2 : 256;
        char *e = realloc(p->env, cap);
        if (!e)
            return -ENOMEM;
        p->env = e;
        p->env_cap = cap;
    }
    memcpy(p->env + p->env_len, item, (size_t)len + 1);
    p->env_len += (size_t)len;
    return 0;
}

static void passed_close(struct passed *p)
{
    for (size_t i = 0; i < p->n; i++)
        close(p->fds[i]);
    free(p->env);
}

/* Names and addresses go into a tab-separated line: refuse what would
 * break it (that backend then starts afresh in the new process). */
static bool field_ok(const char *s)
{
    return s && !strpbrk(s, "\t\n\r");
}

/* A backend's counters as the state file first gave them, so that the
 * handover can give what was counted since. Its file starts with
 * STATE_SINCE: a file without it is the first one, whose counts are in. */
#define STATE_COUNTERS 5
#define STATE_SINCE "since\n"
struct reload_count {
    uint64_t v[STATE_COUNTERS];
    uint32_t epoch;              /* a slot filled anew since counts from 0 */
};

static size_t state_nbackends(const struct runtime *rt)
{
    size_t n = 0;

    for (size_t i = 0; i < rt->npools; i++)
        n += rt->pools[i].nbackends;
    return n;
}

/* One line per backend: pool, name, address, its config weight, then the
 * runtime state. Written on the main thread, the only writer of the
 * main-thread-only fields it reads. The counters are recorded in counts;
 * with since, they are what was counted after counts was recorded. */
static int write_state(int fd, const struct runtime *rt, const struct health_checker *hc,
                       struct reload_count *counts, bool since)
{
    FILE *f;
    uint64_t now = clock_now_ms();
    size_t k = 0;

    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0 || !(f = fdopen(dup(fd), "w")))
        return -errno;
    if (since)
        fputs(STATE_SINCE, f);
    for (size_t i = 0; i < rt->npools; i++) {
        const struct pool *p = &rt->pools[i];
        for (uint32_t j = 0; j < p->nbackends; j++) {
            const struct backend *b = &p->backends[j];
            struct reload_count *c = &counts[k++];
            uint64_t left = atomic_load(&b->ejected) && b->ejected_until_ms > now
                                ? b->ejected_until_ms - now : 0;
            uint64_t v[STATE_COUNTERS] = {
                atomic_load(&b->total), atomic_load(&b->failures), atomic_load(&b->checks_passed),
                atomic_load(&b->checks_failed), atomic_load(&b->ejections_total),
            };
            uint32_t epoch = atomic_load(&b->epoch);

            for (int n = 0; n < STATE_COUNTERS; n++) {
                if (!since)
                    c->v[n] = v[n];
                else if (c->epoch == epoch)
                    v[n] = v[n] >= c->v[n] ? v[n] - c->v[n] : 0;
            }
            if (!since)
                c->epoch = epoch;
            if (backend_vacant(b) || !field_ok(p->conf->name) || !field_ok(b->conf->name) ||
                !field_ok(b->conf->address_text))
                continue;
            fprintf(f, "%s\t%s\t%s\t%u\t%d\t%u\t%d\t%llu\t%u\t%llu\t%llu\t%llu\t%llu\t%llu\n",
                    p->conf->name, b->conf->name, b->conf->address_text, b->conf->weight,
                    atomic_load(&b->state), atomic_load(&b->weight),
                    health_backend_passing(hc, b) ? 1 : 0, (unsigned long long)left,
                    b->times_ejected, (unsigned long long)v[0], (unsigned long long)v[1],
                    (unsigned long long)v[2], (unsigned long long)v[3], (unsigned long long)v[4]);
        }
    }
    if (fclose(f) != 0)
        return -EIO;
    return lseek(fd, 0, SEEK_SET) < 0 ? -errno : 0;
}

int reload_spawn(const struct runtime *rt, const struct worker *workers, uint32_t nworkers,
                 int admin_fd, const struct health_checker *hc, FILE *err,
                 struct reload_child *child)
{
    struct passed p = {0};
    struct config *cfg;
    int ready[2] = {-1, -1}, final[2] = {-1, -1}, state = -1, rc;
    char *argv[4], **envp = NULL;
    size_t nenv = 0;
    pid_t pid;

    if (!config_path || !exe_path[0])
        return -ENOENT;
    /* Validate first: a config that would not load changes nothing. */
    if (config_load(config_path, err, &cfg) < 0)
        return -EINVAL;
    config_free(cfg);

    child->msg_len = 0;
    child->state_fd = child->final_fd = -1;
    child->counts = calloc(state_nbackends(rt) + 1, sizeof(*child->counts));
    if (!child->counts)
        return -ENOMEM;
    if (pipe2(ready, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(final, O_CLOEXEC) < 0) {
        rc = -errno;
        goto out;
    }
    state = memfd_create("sluice-state", MFD_CLOEXEC);
    if (state < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = write_state(state, rt, hc, child->counts, false)) < 0)
        goto out;
    for (uint32_t w = 0; w < nworkers; w++)
        for (size_t i = 0; i < workers[w].nlisteners; i++)
            if ((rc = pass_fd(&p, 'l', (int)w, (int)i, workers[w].listeners[i].io.fd)) < 0 ||
                (workers[w].listeners[i].tcp_io.fd >= 0 &&
                 (rc = pass_fd(&p, 't', (int)w, (int)i, workers[w].listeners[i].tcp_io.fd)) < 0))
                goto out;
    if ((rc = pass_fd(&p, 'a', 0, 0, admin_fd)) < 0 || (rc = pass_fd(&p, 's', 0, 0, state)) < 0 ||
        (rc = pass_fd(&p, 'r', 0, 0, ready[1])) < 0 || (rc = pass_fd(&p, 'f', 0, 0, final[0])) < 0)
        goto out;

    for (char **e = environ; *e; e++)
        nenv++;
    envp = calloc(nenv + 2, sizeof(*envp));
    if (!envp) {
        rc = -ENOMEM;
        goto out;
    }
    nenv = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, INHERIT_ENV "=", sizeof(INHERIT_ENV)) != 0)
            envp[nenv++] = *e;
    envp[nenv] = malloc(sizeof(INHERIT_ENV) + 1 + p.env_len);
    if (!envp[nenv]) {
        rc = -ENOMEM;
        goto out;
    }
    sprintf(envp[nenv], INHERIT_ENV "=%s", p.env ? p.env : "");
    argv[0] = exe_path;
    argv[1] = "-c";
    argv[2] = config_path;
    argv[3] = NULL;
    /* posix_spawn: no fork of a multi-threaded process running our code. */
    rc = posix_spawn(&pid, exe_path, NULL, NULL, argv, envp);
    free(envp[nenv]);
    if (rc != 0) {
        rc = -rc;
        goto out;
    }
    child->pid = pid;
    child->ready_fd = ready[0];
    child->started_ms = clock_now_ms();
    child->state_fd = state;
    child->final_fd = final[1];
    ready[0] = state = final[1] = -1;
    rc = 0;
out:
    free(envp);
    passed_close(&p);
    if (state >= 0)
        close(state);
    for (int i = 0; i < 2; i++) {
        if (ready[i] >= 0)
            close(ready[i]);
        if (final[i] >= 0)
            close(final[i]);
    }
    if (rc < 0)
        reload_child_close(child);
    return rc;
}

void reload_child_handover(struct reload_child *child, const struct runtime *rt,
                           const struct health_checker *hc)
{
    int rc;

    if (child->state_fd < 0 || !child->counts)
        return;
    if ((rc = write_state(child->state_fd, rt, hc, child->counts, true)) < 0) {
        /* Nothing rather than part of it. */
        if (ftruncate(child->state_fd, 0) < 0)
            rc = -errno;
        log_warn("event=reload_counts_unsent error=\"%s\"", strerror(-rc));
    }
    /* Closed either way: the new process waits for this. */
    reload_child_close(child);
}

void reload_child_close(struct reload_child *child)
{
    if (child->final_fd >= 0)
        close(child->final_fd);
    if (child->state_fd >= 0)
        close(child->state_fd);
    child->final_fd = child->state_fd = -1;
    free(child->counts);
    child->counts = NULL;
}

int reload_child_read(struct reload_child *child)
{
    for (;;) {
        ssize_t n;
        if (child->msg_len == sizeof(child->msg) - 1)
            return 1;              /* more than any real message: stop here */
        n = read(child->ready_fd, child->msg + child->msg_len,
                 sizeof(child->msg) - 1 - child->msg_len);
        if (n > 0) {
            child->msg_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        child->msg[child->msg_len] = '\0';
        return 1;                  /* EOF (or an error: the same to us) */
    }
}

bool reload_child_ready(struct reload_child *child, struct worker *workers, uint32_t nworkers)
{
    char *line, *save = NULL;

    child->msg[child->msg_len] = '\0';
    if (strncmp(child->msg, "ready\n", 6) != 0)
        return false;
    for (line = strtok_r(child->msg + 6, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        unsigned w, i;
        if (sscanf(line, "took %u %u", &w, &i) == 2 && w < nworkers && i < workers[w].nlisteners)
            atomic_store(&workers[w].listeners[i].handed_over, 1);
    }
    return true;
}

void reload_child_gone(struct reload_child *child, char *why, size_t len)
{
    int status = 0;
    pid_t r = 0;

    /* Its pipe closes while it exits, a moment before its status can be
     * collected: wait for that moment, briefly (this is the failure path,
     * and an exiting process is gone within milliseconds). */
    for (int i = 0; i < 400 && r == 0; i++) {
        r = waitpid(child->pid, &status, WNOHANG);
        if (r == 0)
            usleep(5000);
    }

    if (r == child->pid && WIFEXITED(status))
        snprintf(why, len, "the new process exited with status %d", WEXITSTATUS(status));
    else if (r == child->pid && WIFSIGNALED(status))
        snprintf(why, len, "the new process was killed by signal %d", WTERMSIG(status));
    else
        snprintf(why, len, "the new process closed its ready pipe without starting");
}

/* ---- the new process ---- */

struct inherited {
    char kind;
    int worker, index;           /* a listener: where it was in the old process */
    int fd;
    bool taken;
    bool closed;                 /* taken by nothing, closed */
};

static struct inherited *inh;
static size_t ninh;

void reload_inherit_load(void)
{
    const char *e = getenv(INHERIT_ENV);
    char *copy, *item, *save = NULL;
    size_t cap = 0;

    if (!e)
        return;
    copy = strdup(e);
    unsetenv(INHERIT_ENV);
    if (!copy)
        return;
    for (const char *c = copy; *c; c++)
        cap += *c == ',';
    inh = calloc(cap + 1, sizeof(*inh));
    for (item = strtok_r(copy, ",", &save); inh && item; item = strtok_r(NULL, ",", &save)) {
        char kind;
        int worker, index, fd, used = 0;

        if (sscanf(item, "%c:%d:%d:%d%n", &kind, &worker, &index, &fd, &used) != 4 ||
            item[used] || fd < 3 || ninh > cap)
            continue;
        /* Ours again, and not to be passed on to anything we start. */
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        inh[ninh++] = (struct inherited){.kind = kind, .worker = worker, .index = index, .fd = fd};
    }
    free(copy);
}

bool reload_inherited(void)
{
    return ninh > 0;
}

static bool socket_matches(int fd, const struct addr *addr, int type)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    struct addr got;
    int t = 0;
    socklen_t tl = sizeof(t);

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &tl) < 0 || t != type ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return false;
    memset(&got, 0, sizeof(got));
    memcpy(&got.ss, &ss, len);
    got.len = len;
    return addr_equal(&got, addr);
}

int reload_take_socket(char kind, const struct addr *addr, int type, int worker_id)
{
    struct inherited *any = NULL;

    for (size_t i = 0; i < ninh; i++) {
        struct inherited *h = &inh[i];
        if (h->taken || h->kind != kind || !socket_matches(h->fd, addr, type))
            continue;
        if (kind == 'a' || h->worker == worker_id) {
            h->taken = true;
            return h->fd;
        }
        if (!any)
            any = h;
    }
    /* More workers than before: share another worker's socket rather than
     * bind a new one that would split the port's connections anew. */
    if (any) {
        any->taken = true;
        return any->fd;
    }
    return -1;
}

void reload_close_unused(void)
{
    /* The old process takes the accept queues of these before it closes
     * them (it is told which ones we took). */
    for (size_t i = 0; i < ninh; i++) {
        if (!inh[i].taken && !inh[i].closed &&
            (inh[i].kind == 'l' || inh[i].kind == 't' || inh[i].kind == 'a')) {
            close(inh[i].fd);
            inh[i].closed = true;
        }
    }
}

static int inherited_fd(char kind)
{
    for (size_t i = 0; i < ninh; i++)
        if (inh[i].kind == kind && !inh[i].closed)
            return inh[i].fd;
    return -1;
}

static void release(char kind)
{
    for (size_t i = 0; i < ninh; i++) {
        if (inh[i].kind == kind && !inh[i].closed) {
            close(inh[i].fd);
            inh[i].closed = true;
        }
    }
}

static struct backend *find_backend(struct runtime *rt, const char *pool, const char *name)
{
    for (size_t i = 0; i < rt->npools; i++)
        if (strcmp(rt->pools[i].conf->name, pool) == 0)
            return pool_find_backend(&rt->pools[i], name);
    return NULL;
}

#define STATE_FIELDS 14

/* A line of the state file split at its tabs; false if it has not
 * STATE_FIELDS fields. */
static bool state_fields(char *line, char *f[STATE_FIELDS])
{
    char *save = NULL;
    int n = 0;

    for (char *t = strtok_r(line, "\t", &save); t && n < STATE_FIELDS; t = strtok_r(NULL, "\t", &save))
        f[n++] = t;
    return n == STATE_FIELDS;
}

/* A line of the state file; with counts_only (the handover's), only its
 * counters, which are then what was counted since the first. */
static void apply_line(struct runtime *rt, struct health_checker *hc, char *line, bool counts_only)
{
    char *f[STATE_FIELDS];
    struct backend *b;
    uint32_t conf_weight, weight, times;
    int state, passing;
    unsigned long long left, total, failures, passed, failed, ejections;

    if (!state_fields(line, f) || sscanf(f[3], "%u", &conf_weight) != 1 || sscanf(f[4], "%d", &state) != 1 ||
        sscanf(f[5], "%u", &weight) != 1 || sscanf(f[6], "%d", &passing) != 1 ||
        sscanf(f[7], "%llu", &left) != 1 || sscanf(f[8], "%u", &times) != 1 ||
        sscanf(f[9], "%llu", &total) != 1 || sscanf(f[10], "%llu", &failures) != 1 ||
        sscanf(f[11], "%llu", &passed) != 1 || sscanf(f[12], "%llu", &failed) != 1 ||
        sscanf(f[13], "%llu", &ejections) != 1)
        return;
    b = find_backend(rt, f[0], f[1]);
    /* Same name at another address: a new backend, nothing to keep. */
    if (!b || strcmp(b->conf->address_text, f[2]) != 0)
        return;
    atomic_fetch_add(&b->total, total);
    atomic_fetch_add(&b->failures, failures);
    atomic_fetch_add(&b->checks_passed, passed);
    atomic_fetch_add(&b->checks_failed, failed);
    atomic_fetch_add(&b->ejections_total, ejections);
    if (counts_only)
        return;
    /* An operator's weight stays, unless the file now says otherwise. */
    if (weight != conf_weight && b->conf->weight == conf_weight && weight <= BACKEND_WEIGHT_MAX)
        backend_set_weight(b, weight);
    health_seed(hc, b, passing != 0);
    if (state == BACKEND_DRAINING || state == BACKEND_DISABLED)
        backend_set_state(b, (enum backend_state)state, "kept across reload");
    /* The ejection multiplier, ejected now or not: a reload must not
     * forgive a backend that keeps failing. Its decay interval starts anew. */
    b->times_ejected = times;
    if (left) {
        b->ejected_until_ms = clock_now_ms() + left;
        atomic_store(&b->ejected, 1);
        atomic_fetch_add(&b->pool->generation, 1);
    }
}

/* The old process's state file, whole and NUL-terminated; NULL if there
 * is none. Read with pread, so it can be read again. */
static char *state_read(void)
{
    int fd = inherited_fd('s');
    struct stat st;
    size_t len = 0;
    ssize_t r;
    char *data;

    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0 || (uint64_t)st.st_size >= STATE_MAX ||
        !(data = malloc((size_t)st.st_size + 1)))
        return NULL;
    while (len < (size_t)st.st_size &&
           (r = pread(fd, data + len, (size_t)st.st_size - len, (off_t)len)) > 0)
        len += (size_t)r;
    data[len] = '\0';
    return data;
}

static void apply_state(struct runtime *rt, struct health_checker *hc, bool counts_only)
{
    char *data = state_read(), *line, *save = NULL;

    if (data && (!counts_only || strncmp(data, STATE_SINCE, strlen(STATE_SINCE)) == 0)) {
        for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
            apply_line(rt, hc, line, counts_only);
    }
    free(data);
}

void reload_apply_state(struct runtime *rt, struct health_checker *hc)
{
    /* The file stays open: the handover's counts come in it. */
    apply_state(rt, hc, false);
}

/* How long a new process waits for the old one's handover counts. It
 * writes them when it reads "ready", on its main loop: milliseconds. */
#define FINAL_WAIT_MS 5000

/* After "ready": the old process writes what it counted since the state
 * file was written, then closes its end of the 'f' pipe. */
static void apply_final(struct runtime *rt)
{
    struct pollfd pfd = {.fd = inherited_fd('f'), .events = POLLIN};
    uint64_t deadline = clock_mono_us() / 1000 + FINAL_WAIT_MS;
    char byte;
    ssize_t n;

    if (pfd.fd < 0)
        return;
    for (;;) {
        int64_t left = (int64_t)(deadline - clock_mono_us() / 1000);
        int r = left > 0 ? poll(&pfd, 1, (int)left) : 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            log_warn("event=reload_counts_missing why=\"the old process did not send what it "
                     "counted during the reload\"");
            return;
        }
        n = read(pfd.fd, &byte, 1);
        if (n == 0)
            break;                    /* closed: the counts are written */
        if (n < 0 && errno != EINTR)
            return;
    }
    apply_state(rt, NULL, true);
}

void reload_seed_discovery(struct discovery *d)
{
    char *data = state_read(), *line, *save = NULL, *f[STATE_FIELDS];
    unsigned weight;
    int state;

    if (!data)
        return;
    for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        /* What the old process was sending work to; not what it was
         * draining, which may be what its DNS had already dropped. */
        if (state_fields(line, f) && sscanf(f[3], "%u", &weight) == 1 &&
            sscanf(f[4], "%d", &state) == 1 && state != BACKEND_DRAINING &&
            state != BACKEND_DISABLED && weight >= 1 && weight <= BACKEND_WEIGHT_MAX)
            discovery_seed(d, f[0], f[1], weight);
    }
    free(data);
}

void reload_sd_notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len;
    int fd;

    if (!path || (path[0] != '/' && path[0] != '@') || (len = strlen(path)) >= sizeof(sa.sun_path))
        return;
    memcpy(sa.sun_path, path, len);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';      /* an abstract socket */
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    close(fd);
}

void reload_notify_ready(struct runtime *rt)
{
    int fd = inherited_fd('r');
    char msg[64];

    /* systemd first: it must know the new main PID before the old process
     * (the main PID until now) drains and exits. */
    snprintf(msg, sizeof(msg), "MAINPID=%d\nREADY=1", (int)getpid());
    reload_sd_notify(msg);
    if (fd >= 0) {
        /* "ready", then the old listening sockets this process took: the
         * old process closes its copies of those without touching their
         * queues, and takes the queues of the others before closing them. */
        FILE *f = fdopen(fd, "w");
        if (f) {
            fputs("ready\n", f);
            for (size_t i = 0; i < ninh; i++)
                if (inh[i].kind == 'l' && inh[i].taken)
                    fprintf(f, "took %d %d\n", inh[i].worker, inh[i].index);
            if (fclose(f) != 0)
                log_warn("event=reload_ready_unsent error=\"%s\"", strerror(errno));
        } else {
            close(fd);
        }
        for (size_t i = 0; i < ninh; i++)
            if (inh[i].kind == 'r')
                inh[i].closed = true;
        apply_final(rt);
    }
    release('s');
    release('f');
    free(inh);
    inh = NULL;
    ninh = 0;
}
