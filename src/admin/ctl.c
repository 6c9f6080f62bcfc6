/* `sluice ctl`: the admin API from a shell. A blocking HTTP/1.1 client (one
 * request, Connection: close) whose reply is read with sluice's own
 * response parser, then printed as tables, one line per change, or the raw
 * JSON with --json. Exit 0 on success, 1 when sluice said no or could not
 * be reached, 2 for a bad command line. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin/internal.h"
#include "core/clock.h"
#include "core/version.h"
#include "net/addr.h"

#define CTL_DEFAULT_ADMIN "127.0.0.1:9901"
#define CTL_TIMEOUT_MS 10000
#define CTL_MAX_REPLY (64u << 20)

static const char ctl_usage[] =
    "usage: sluice ctl [--admin ADDR] [--token-file FILE] [--json] COMMAND\n"
    "\n"
    "commands:\n"
    "  status                   listeners, pools and backends with their states\n"
    "  drain POOL/BACKEND       send BACKEND no new work; what it has in flight finishes\n"
    "  enable POOL/BACKEND      undo drain or disable (DOWN while its health check fails)\n"
    "  disable POOL/BACKEND     take BACKEND out of rotation\n"
    "  weight POOL/BACKEND N    set BACKEND's weight, 0..256 (0: no new work)\n"
    "  reload                   load the config file again: a new sluice process takes\n"
    "                           over the sockets, the old one drains; waits until the\n"
    "                           new one serves (config errors are printed, and nothing\n"
    "                           changes)\n"
    "\n"
    "options:\n"
    "  --admin ADDR             sluice's admin.listen address (default " CTL_DEFAULT_ADMIN ")\n"
    "  --token-file FILE        send the token in FILE; needed for changes when sluice\n"
    "                           has admin.token_file set\n"
    "  --json                   print sluice's JSON reply as it is\n"
    "  -h, --help               this text\n"
    "\n"
    "exit status: 0 done, 1 sluice refused or could not be reached, 2 bad usage\n";

struct ctl_opts {
    const char *admin;
    const char *token_file;
    bool json;
    const char *args[4];
    int nargs;
};

struct ctl_reply {
    int status;
    char *raw;                  /* the whole reply */
    const char *body;           /* into raw */
    size_t body_len;
};

static int ctl_bad_usage(const char *fmt, const char *arg)
{
    fputs("sluice ctl: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n\n", stderr);
    fputs(ctl_usage, stderr);
    return 2;
}

/* Connect within CTL_TIMEOUT_MS; returns the socket or -errno. */
static int ctl_connect(const struct addr *a)
{
    struct timeval tv = { CTL_TIMEOUT_MS / 1000, 0 };
    struct pollfd pfd;
    socklen_t len = sizeof(int);
    int fd, err = 0;

    fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
        if (errno != EINPROGRESS) {
            err = errno;
            close(fd);
            return -err;
        }
        pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
        if (poll(&pfd, 1, CTL_TIMEOUT_MS) <= 0) {
            close(fd);
            return -ETIMEDOUT;
        }
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            close(fd);
            return -err;
        }
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

static int ctl_read_token(const char *path, char **out)
{
    char buf[4200];
    size_t len;
    FILE *f = fopen(path, "r");

    if (!f) {
        fprintf(stderr, "sluice ctl: cannot read token file %s: %s\n", path, strerror(errno));
        return -1;
    }
    len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                   buf[len - 1] == '\t'))
        len--;
    buf[len] = '\0';
    if (len == 0 || strpbrk(buf, "\r\n")) {
        fprintf(stderr, "sluice ctl: token file %s must hold one line\n", path);
        return -1;
    }
    *out = strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    return *out ? 0 : -1;
}

/* One request; fills *rep. Returns 0, or 1 after printing why it failed. */
static int ctl_request(const struct ctl_opts *o, const char *method, enum h1_method mid,
                       const char *path, const char *body, struct ctl_reply *rep)
{
    struct h1_header slots[64];
    struct h1_response resp;
    struct admin_buf req, in;
    struct addr a;
    char *token = NULL;
    const char *why;
    int fd, rc;

    memset(rep, 0, sizeof(*rep));
    if (addr_parse(o->admin, &a, &why) < 0) {
        fprintf(stderr, "sluice ctl: bad --admin address '%s': %s\n", o->admin, why);
        return 1;
    }
    if (o->token_file && ctl_read_token(o->token_file, &token) < 0)
        return 1;
    fd = ctl_connect(&a);
    if (fd < 0) {
        fprintf(stderr, "sluice ctl: cannot connect to %s: %s — is sluice running with "
                        "admin.listen set?\n", o->admin, strerror(-fd));
        free(token);
        return 1;
    }
    admin_buf_init(&req);
    admin_buf_printf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-ctl/%s\r\n"
                           "Connection: close\r\n", method, path, o->admin, SLUICE_VERSION);
    if (token)
        admin_buf_printf(&req, "Authorization: Bearer %s\r\n", token);
    if (body)
        admin_buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                         strlen(body), body);
    else if (mid == H1_POST || mid == H1_PUT)
        admin_buf_puts(&req, "Content-Length: 0\r\n\r\n");
    else
        admin_buf_puts(&req, "\r\n");
    if (token) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    for (size_t off = 0; !req.oom && off < req.len;) {
        ssize_t n = send(fd, req.p + off, req.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "sluice ctl: sending to %s failed: %s\n", o->admin,
                    strerror(errno));
            goto fail;
        }
        off += (size_t)n;
    }
    admin_buf_init(&in);
    for (;;) {
        char chunk[16384];
        ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "sluice ctl: reading from %s failed: %s\n", o->admin,
                    errno == EAGAIN ? "timed out" : strerror(errno));
            admin_buf_free(&in);
            goto fail;
        }
        if (n == 0)
            break;
        admin_buf_add(&in, chunk, (size_t)n);
        if (in.oom || in.len > CTL_MAX_REPLY) {
            fprintf(stderr, "sluice ctl: reply from %s too large\n", o->admin);
            admin_buf_free(&in);
            goto fail;
        }
    }
    close(fd);
    admin_buf_free(&req);
    h1_response_init(&resp, slots, 64);
    rc = in.len ? h1_parse_response(in.p, in.len, mid, NULL, &resp) : 0;
    if (rc <= 0) {
        fprintf(stderr, "sluice ctl: bad reply from %s: %s\n", o->admin,
                rc == 0 ? "incomplete or empty; is this sluice's admin address?"
                        : resp.error ? resp.error : "not HTTP");
        admin_buf_free(&in);
        return 1;
    }
    rep->status = resp.status;
    rep->raw = in.p;
    rep->body = in.p + rc;
    rep->body_len = in.len - (size_t)rc;
    if (resp.body == H1_BODY_LENGTH && resp.content_length < rep->body_len)
        rep->body_len = (size_t)resp.content_length;
    return 0;
fail:
    close(fd);
    admin_buf_free(&req);
    return 1;
}

/* ---- output ---- */

/* A plain text table: widths from the content, numbers right-aligned. */
#define CTL_COLS 8
struct ctl_table {
    const char *indent;
    int ncols;
    bool numeric[CTL_COLS];
    char *(*cell)[CTL_COLS];
    int nrows, cap;
};

static void ctl_row(struct ctl_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        int cap = t->cap ? t->cap * 2 : 16;
        char *(*c)[CTL_COLS] = realloc(t->cell, (size_t)cap * sizeof(*c));
        if (!c)
            return;
        t->cell = c;
        t->cap = cap;
    }
    for (int i = 0; i < t->ncols; i++)
        t->cell[t->nrows][i] = strdup(cells[i] ? cells[i] : "");
    t->nrows++;
}

static void ctl_table_print(struct ctl_table *t)
{
    size_t w[CTL_COLS] = {0};

    for (int r = 0; r < t->nrows; r++)
        for (int i = 0; i < t->ncols; i++)
            if (t->cell[r][i] && strlen(t->cell[r][i]) > w[i])
                w[i] = strlen(t->cell[r][i]);
    for (int r = 0; r < t->nrows; r++) {
        fputs(t->indent, stdout);
        for (int i = 0; i < t->ncols; i++) {
            const char *c = t->cell[r][i] ? t->cell[r][i] : "?";
            bool last = i == t->ncols - 1;
            if (t->numeric[i] && r > 0)
                printf("%*s%s", (int)w[i], c, last ? "" : "  ");
            else
                printf("%-*s%s", last ? 0 : (int)w[i], c, last ? "" : "  ");
            free(t->cell[r][i]);
        }
        putchar('\n');
    }
    free(t->cell);
    t->cell = NULL;
    t->nrows = t->cap = 0;
}

static void ctl_num(char *buf, size_t size, const struct admin_json *obj, const char *key)
{
    snprintf(buf, size, "%lld", (long long)admin_json_int(obj, key));
}

static void ctl_print_status(const struct admin_json *j)
{
    const struct admin_json *ls = admin_json_get(j, "listeners"), *ps = admin_json_get(j, "pools");
    struct ctl_table tab, *t = &tab;
    char n1[24], n2[24], n3[24], n4[24], n5[24];

    printf("sluice %s, up %llds%s\n\n", admin_json_str(j, "version"),
           (long long)admin_json_int(j, "uptime_seconds"),
           admin_json_get(j, "stopping") && admin_json_get(j, "stopping")->boolean
               ? ", stopping (draining connections)" : "");
    *t = (struct ctl_table){ .indent = "", .ncols = 6, .numeric = {0, 0, 0, 0, 1, 1} };
    ctl_row(t, (const char *[]){ "LISTENER", "ADDRESS", "MODE", "POOL", "ACTIVE", "TOTAL" });
    for (const struct admin_json *l = ls ? ls->child : NULL; l; l = l->next) {
        ctl_num(n1, sizeof(n1), l, "active_connections");
        ctl_num(n2, sizeof(n2), l, "total_connections");
        ctl_row(t, (const char *[]){ admin_json_str(l, "name"), admin_json_str(l, "address"),
                                     admin_json_str(l, "mode"),
                                     *admin_json_str(l, "pool") ? admin_json_str(l, "pool") : "-",
                                     n1, n2 });
    }
    ctl_table_print(t);
    for (const struct admin_json *p = ps ? ps->child : NULL; p; p = p->next) {
        const struct admin_json *st = admin_json_get(p, "states"), *bs = admin_json_get(p, "backends");
        const char *sep = "";

        printf("\npool %s (%s):", admin_json_str(p, "name"), admin_json_str(p, "algorithm"));
        for (const struct admin_json *s = st ? st->child : NULL; s; s = s->next) {
            if (s->is_int && s->integer > 0) {
                printf("%s %lld %s", sep, (long long)s->integer, s->key);
                sep = ",";
            }
        }
        printf("\n");
        *t = (struct ctl_table){ .indent = "  ", .ncols = 7,
                                 .numeric = {0, 0, 0, 1, 1, 1, 1} };
        ctl_row(t, (const char *[]){ "BACKEND", "ADDRESS", "STATE", "WEIGHT", "ACTIVE",
                                     "REQUESTS", "FAILURES" });
        for (const struct admin_json *b = bs ? bs->child : NULL; b; b = b->next) {
            ctl_num(n3, sizeof(n3), b, "weight");
            ctl_num(n4, sizeof(n4), b, "active_requests");
            ctl_num(n5, sizeof(n5), b, "requests_total");
            ctl_num(n1, sizeof(n1), b, "failures_total");
            ctl_row(t, (const char *[]){ admin_json_str(b, "name"), admin_json_str(b, "address"),
                                         admin_json_str(b, "state"), n3, n4, n5, n1 });
        }
        ctl_table_print(t);
    }
}

static void ctl_print_change(const struct admin_json *j)
{
    const char *pool = admin_json_str(j, "pool"), *be = admin_json_str(j, "backend");
    const struct admin_json *changed = admin_json_get(j, "changed");
    bool did = changed && changed->boolean;

    if (strcmp(admin_json_str(j, "action"), "weight") == 0) {
        printf("%s/%s: weight %lld -> %lld%s\n", pool, be,
               (long long)admin_json_int(j, "previous_weight"),
               (long long)admin_json_int(j, "weight"), did ? "" : " (unchanged)");
        return;
    }
    if (did)
        printf("%s/%s: %s -> %s\n", pool, be, admin_json_str(j, "previous_state"),
               admin_json_str(j, "state"));
    else
        printf("%s/%s: already %s (unchanged)\n", pool, be, admin_json_str(j, "state"));
}

/* ---- commands ---- */

/* POOL/BACKEND into a percent-encoded "/api/v1/pools/P/backends/B/ACTION". */
/* After a 202 from /api/v1/reload: wait until the new process answers on
 * the admin port (it took over the same socket), or it is gone. */
#define CTL_RELOAD_WAIT_MS 60000

static int ctl_reload_wait(const struct ctl_opts *o, const struct admin_json *j)
{
    int64_t old_pid = admin_json_int(j, "pid"), new_pid = admin_json_int(j, "new_pid");
    uint64_t deadline = clock_mono_us() / 1000 + CTL_RELOAD_WAIT_MS;

    while (clock_mono_us() / 1000 < deadline) {
        struct ctl_reply rep;
        struct admin_json *s;
        const char *err;
        int64_t pid = 0;

        if (ctl_request(o, "GET", H1_GET, "/api/v1/status", NULL, &rep) == 0) {
            if ((s = admin_json_parse(rep.body, rep.body_len, &err))) {
                const struct admin_json *r = admin_json_get(s, "reload");
                pid = admin_json_int(s, "pid");
                if (pid != new_pid && r && admin_json_int(r, "new_pid") == new_pid &&
                    strcmp(admin_json_str(r, "result"), "failed") == 0) {
                    fprintf(stderr, "sluice ctl: reload failed: %s\n", admin_json_str(r, "why"));
                    admin_json_free(s);
                    free(rep.raw);
                    return 1;
                }
                admin_json_free(s);
            }
            free(rep.raw);
        }
        if (pid == new_pid) {
            printf("reloaded: pid %lld handed over to pid %lld\n", (long long)old_pid,
                   (long long)new_pid);
            return 0;
        }
        usleep(50000);
    }
    fprintf(stderr, "sluice ctl: pid %lld did not take over within %d s\n", (long long)new_pid,
            CTL_RELOAD_WAIT_MS / 1000);
    return 1;
}

static int ctl_backend_path(const char *target, const char *action, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *slash = strchr(target, '/');
    size_t n = 0;

    if (!slash || slash == target || !slash[1] || strchr(slash + 1, '/'))
        return -1;
    n = (size_t)snprintf(out, size, "/api/v1/pools/");
    for (const char *p = target; *p && n + 40 < size; p++) {
        unsigned char c = (unsigned char)*p;
        if (p == slash) {
            n += (size_t)snprintf(out + n, size - n, "/backends/");
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '.' || c == '_' || c == '-' || c == ':') {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    if (n + 40 >= size)
        return -1;
    snprintf(out + n, size - n, "/%s", action);
    return 0;
}

static int ctl_parse_args(int argc, char **argv, struct ctl_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->admin = CTL_DEFAULT_ADMIN;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "help") == 0) {
            fputs(ctl_usage, stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (strcmp(a, "--admin") == 0 || strcmp(a, "--token-file") == 0) {
            if (i + 1 >= argc)
                return ctl_bad_usage("%s needs a value", a);
            if (a[2] == 'a')
                o->admin = argv[++i];
            else
                o->token_file = argv[++i];
        } else if (strncmp(a, "--admin=", 8) == 0) {
            o->admin = a + 8;
        } else if (strncmp(a, "--token-file=", 13) == 0) {
            o->token_file = a + 13;
        } else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) {
            return ctl_bad_usage("unknown option '%s'", a);
        } else if (o->nargs == 4) {
            return ctl_bad_usage("too many arguments at '%s'", a);
        } else {
            o->args[o->nargs++] = a;
        }
    }
    if (o->nargs == 0)
        return ctl_bad_usage("%s", "missing COMMAND");
    return -1;
}

int ctl_main(int argc, char **argv)
{
    static const struct {
        const char *name, *method;
        enum h1_method mid;
        int nargs;
    } cmds[] = {
        { "status", "GET", H1_GET, 1 },
        { "drain", "POST", H1_POST, 2 },
        { "enable", "POST", H1_POST, 2 },
        { "disable", "POST", H1_POST, 2 },
        { "weight", "PUT", H1_PUT, 3 },
        { "reload", "POST", H1_POST, 1 },
    };
    struct ctl_opts o;
    struct ctl_reply rep;
    struct admin_json *j;
    const char *err = NULL, *body = NULL;
    char path[1024], body_buf[64];
    size_t c;
    int rc;

    if ((rc = ctl_parse_args(argc, argv, &o)) >= 0)
        return rc;
    for (c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++)
        if (strcmp(cmds[c].name, o.args[0]) == 0)
            break;
    if (c == sizeof(cmds) / sizeof(cmds[0]))
        return ctl_bad_usage("unknown command '%s'", o.args[0]);
    if (o.nargs != cmds[c].nargs)
        return ctl_bad_usage(cmds[c].nargs == 1 ? "'%s' takes no arguments"
                             : cmds[c].nargs == 2 ? "'%s' needs POOL/BACKEND"
                                                  : "'%s' needs POOL/BACKEND and a weight",
                             o.args[0]);
    if (c == 0) {
        snprintf(path, sizeof(path), "/api/v1/status");
    } else if (cmds[c].nargs == 1) {
        snprintf(path, sizeof(path), "/api/v1/reload");
    } else if (ctl_backend_path(o.args[1], o.args[0], path, sizeof(path)) < 0) {
        return ctl_bad_usage("expected POOL/BACKEND, got '%s'", o.args[1]);
    }
    if (cmds[c].nargs == 3) {
        char *end;
        long w;
        errno = 0;
        w = strtol(o.args[2], &end, 10);
        if (errno || *end || end == o.args[2] || w < 0 || w > 256)
            return ctl_bad_usage("weight must be a whole number from 0 to 256, got '%s'",
                                 o.args[2]);
        snprintf(body_buf, sizeof(body_buf), "{\"weight\": %ld}", w);
        body = body_buf;
    }

    if (ctl_request(&o, cmds[c].method, cmds[c].mid, path, body, &rep) != 0)
        return 1;
    if (o.json) {
        fwrite(rep.body, 1, rep.body_len, stdout);
        if (rep.body_len && rep.body[rep.body_len - 1] != '\n')
            putchar('\n');
    }
    j = admin_json_parse(rep.body, rep.body_len, &err);
    if (rep.status >= 300) {
        const char *msg = j ? admin_json_str(j, "error") : "";
        const struct admin_json *details = j ? admin_json_get(j, "details") : NULL;
        fprintf(stderr, "sluice ctl: %s (HTTP %d)%s\n", *msg ? msg : "request refused",
                rep.status, rep.status == 401 ? "; pass --token-file with admin.token_file's token" : "");
        for (const struct admin_json *d = details ? details->child : NULL; d; d = d->next)
            if (d->str)
                fprintf(stderr, "%s\n", d->str);
        rc = 1;
    } else if (!j) {
        fprintf(stderr, "sluice ctl: bad JSON from %s: %s\n", o.admin, err);
        rc = 1;
    } else {
        rc = 0;
        if (cmds[c].nargs == 1 && c != 0)
            rc = ctl_reload_wait(&o, j);
        else if (!o.json && c == 0)
            ctl_print_status(j);
        else if (!o.json)
            ctl_print_change(j);
    }
    admin_json_free(j);
    free(rep.raw);
    return rc;
}
