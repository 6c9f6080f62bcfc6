#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"

/* The longest line either log writes, its '\n' included: PIPE_BUF, so that
 * on a pipe a line goes whole or not at all. */
#define LOG_LINE_MAX PIPE_BUF

/* A socket that one or both logs write to: journald's stream under
 * systemd (StandardOutput=journal, where stdout and stderr are the same
 * socket), a supervisor's socketpair, a TCP connection to a collector.
 * Its file status flags are shared with every process that holds it, so
 * they are left alone: each send() says MSG_DONTWAIT instead. A stream
 * socket may take only the start of a line when it is nearly full; the
 * rest is kept here and goes out before any other line (under lock, since
 * several workers write), so a reader sees a line late rather than two
 * lines run together. Owner: this file; set up at startup, before any
 * worker runs, and released at exit. */
struct log_socket {
    pthread_mutex_t lock;         /* one line at a time; held across non-blocking send()s only */
    dev_t dev;                    /* which socket (sockfs device and inode) */
    ino_t ino;
    int users;                    /* logs writing here: 0 = free slot */
    size_t owed;                  /* bytes of a cut line not sent yet (rest[0..owed)) */
    enum log_which owed_by;       /* the log whose line they end */
    char rest[LOG_LINE_MAX];
};

static _Atomic int log_level = LOG_LEVEL_INFO;
static int access_fd = -1;            /* set at startup, before workers run */
static struct log_socket *access_sock;   /* when access_fd is a socket */
static _Atomic uint64_t lines_dropped[2];   /* by enum log_which */
static int error_fd = STDERR_FILENO;  /* log_init: our own, on a pipe */
static struct log_socket *error_sock;    /* when error_fd is a socket */
static char access_path[4096];        /* empty unless the access log is a file */
static struct log_socket sockets[2] = {   /* at most one per log */
    { .lock = PTHREAD_MUTEX_INITIALIZER }, { .lock = PTHREAD_MUTEX_INITIALIZER },
};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static void count_dropped(enum log_which which)
{
    atomic_fetch_add_explicit(&lines_dropped[which], 1, memory_order_relaxed);
}

/* fd, or on a pipe a descriptor of our own of the same pipe: a pipe whose
 * reader stopped reading (a stuck `| logger`, a container runtime) would
 * stop every worker in a blocking write(2). Ours can be non-blocking
 * without touching the description we share: a full pipe loses the line,
 * as a full disk does. A line is at most PIPE_BUF bytes, so it goes whole
 * or not at all. (A socket cannot be reopened so; see struct log_socket.) */
static int own_nonblocking(int fd)
{
    struct stat st;
    char path[32];
    int own;

    if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode))
        return fd;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    own = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    return own >= 0 ? own : fd;
}

/* The log_socket for fd when it is a socket (shared with the other log
 * when both write to the same one), else NULL. Startup only. */
static struct log_socket *socket_take(int fd)
{
    struct log_socket *free_slot = NULL;
    struct stat st;

    if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
        return NULL;
    for (size_t i = 0; i < sizeof(sockets) / sizeof(sockets[0]); i++) {
        struct log_socket *k = &sockets[i];
        if (k->users > 0 && k->dev == st.st_dev && k->ino == st.st_ino) {
            k->users++;
            return k;
        }
        if (k->users == 0 && !free_slot)
            free_slot = k;
    }
    if (!free_slot)                       /* two logs, two slots: cannot happen */
        return NULL;
    free_slot->dev = st.st_dev;
    free_slot->ino = st.st_ino;
    free_slot->users = 1;
    free_slot->owed = 0;
    return free_slot;
}

static void socket_release(struct log_socket *k)
{
    if (k && --k->users == 0 && k->owed > 0) {
        k->owed = 0;                      /* never sent: that line is lost */
        count_dropped(k->owed_by);
    }
}

/* Send what is owed of a cut line; true once nothing is owed. Under
 * k->lock. A reader that is gone (EPIPE) will take none of it: the line is
 * counted lost and the debt cleared, so that what follows fails on its own. */
static bool socket_send_owed(int fd, struct log_socket *k)
{
    ssize_t n = send(fd, k->rest, k->owed, MSG_DONTWAIT | MSG_NOSIGNAL);

    if (n > 0) {
        k->owed -= (size_t)n;
        memmove(k->rest, k->rest + n, k->owed);
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        k->owed = 0;
        count_dropped(k->owed_by);
    }
    return k->owed == 0;
}

/* One whole line to a socket, never waiting; false when it is lost: the
 * socket is full (its reader stalled), the reader is gone, or the rest of
 * an earlier line is still waiting to go (it must go first). */
static bool socket_write(int fd, struct log_socket *k, enum log_which which,
                         const char *line, size_t len)
{
    ssize_t n;

    pthread_mutex_lock(&k->lock);
    if (k->owed > 0 && !socket_send_owed(fd, k)) {
        pthread_mutex_unlock(&k->lock);
        return false;
    }
    n = send(fd, line, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0 && (size_t)n < len) {
        /* The start of the line went: owe the rest, ahead of any line. */
        k->owed = len - (size_t)n;
        k->owed_by = which;
        memcpy(k->rest, line + n, k->owed);
        n = (ssize_t)len;
    }
    pthread_mutex_unlock(&k->lock);
    return n == (ssize_t)len;
}

/* One whole line (ending in '\n', at most LOG_LINE_MAX bytes) to a log's
 * descriptor; counted as dropped when it could not go. A file, a tty or our
 * own non-blocking pipe descriptor takes it in one write(2). */
static void log_out(int fd, struct log_socket *k, enum log_which which,
                    const char *line, size_t len)
{
    bool ok = k ? socket_write(fd, k, which, line, len)
                : write(fd, line, len) == (ssize_t)len;
    if (!ok)
        count_dropped(which);     /* nowhere left to report it but the count */
}

void log_init(void)
{
    error_fd = own_nonblocking(STDERR_FILENO);
    error_sock = socket_take(error_fd);
}

void log_set_level(enum log_level level)
{
    atomic_store(&log_level, (int)level);
}

bool log_enabled(enum log_level level)
{
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void log_format_time(char *buf, size_t size, unsigned long long wall_us)
{
    time_t secs = (time_t)(wall_us / 1000000u);
    struct tm tm;
    char day[24];

    gmtime_r(&secs, &tm);
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03uZ", day, (unsigned)((wall_us / 1000u) % 1000u));
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char line[2048];              /* <= LOG_LINE_MAX */
    size_t n;
    int m;
    va_list ap;

    if (!log_enabled(level))
        return;
    log_format_time(line, sizeof(line), clock_wall_us());
    n = strlen(line);
    m = snprintf(line + n, sizeof(line) - n, " level=%s ", level_names[level]);
    n += (size_t)m;
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += (size_t)m;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line: concurrent workers' lines never interleave. */
    log_out(error_fd, error_sock, LOG_ERROR_LOG, line, n);
}

/* Length of the well-formed UTF-8 sequence that s starts (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF), 0 when s starts
 * none. s is NUL-terminated: a NUL fails a test before the next is read. */
static size_t utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (s[0] >= 0xe0 && s[0] <= 0xef) {
        unsigned lo = s[0] == 0xe0 ? 0xa0 : 0x80, hi = s[0] == 0xed ? 0x9f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        unsigned lo = s[0] == 0xf0 ? 0x90 : 0x80, hi = s[0] == 0xf4 ? 0x8f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* Client bytes into a quoted field that stays one line of valid UTF-8 (and
 * of valid JSON): a byte that is not part of well-formed UTF-8 is escaped
 * like a control byte, as \xHH, or for JSON (which has no \x) as \u00HH,
 * the byte read as ISO-8859-1, as RFC 9110 5.5 reads obs-text. Whole
 * characters only: a cut never leaves half of one. */
static size_t quote(char *dst, size_t size, const char *src, bool json)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t n = 0;

    if (size == 0)
        return 0;
    while (*s) {
        char esc[8];
        const char *out = (const char *)s;
        size_t len = utf8_len(s), take = len;

        if (*s == '"' || *s == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*s;
            out = esc;
            len = 2;
        } else if (len == 0 || *s < 0x20 || *s == 0x7f) {
            len = (size_t)snprintf(esc, sizeof(esc), json ? "\\u%04x" : "\\x%02x", *s);
            out = esc;
            take = 1;
        }
        if (n + len >= size)
            break;
        memcpy(dst + n, out, len);
        n += len;
        s += take;
    }
    dst[n] = '\0';
    return n;
}

size_t log_quote(char *dst, size_t size, const char *src)
{
    return quote(dst, size, src, false);
}

size_t log_quote_json(char *dst, size_t size, const char *src)
{
    return quote(dst, size, src, true);
}

int log_access_open(const char *target)
{
    int fd;

    socket_release(access_sock);
    access_sock = NULL;
    if (access_fd > STDERR_FILENO)
        close(access_fd);
    access_fd = -1;
    access_path[0] = '\0';
    if (!target || strcmp(target, "off") == 0)
        return 0;
    if (strcmp(target, "stdout") == 0) {
        access_fd = own_nonblocking(STDOUT_FILENO);
        access_sock = socket_take(access_fd);
        return 0;
    }
    fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    snprintf(access_path, sizeof(access_path), "%s", target);
    access_fd = fd;
    return 0;
}

int log_access_reopen(void)
{
    int fd;

    if (access_path[0] == '\0' || access_fd < 0)
        return 0;
    fd = open(access_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    /* dup3 swaps the file under the same descriptor number atomically:
     * a worker writing at this moment writes to the old or the new file. */
    if (dup3(fd, access_fd, O_CLOEXEC) < 0) {   /* not inherited by a reload */
        int err = errno;
        close(fd);
        return -err;
    }
    close(fd);
    return 0;
}

bool log_access_enabled(void)
{
    return access_fd >= 0;
}

void log_access_write(const char *line, size_t len)
{
    char cut[LOG_LINE_MAX];

    if (access_fd < 0 || len == 0)
        return;
    /* A line that was cut short (or is too long to go whole) still ends in
     * '\n': on a pipe or socket, the next line must start a line of its own. */
    if (len > LOG_LINE_MAX || line[len - 1] != '\n') {
        if (len > LOG_LINE_MAX - 1)
            len = LOG_LINE_MAX - 1;
        memcpy(cut, line, len);
        cut[len++] = '\n';
        line = cut;
    }
    /* A full disk, pipe or socket must not stop traffic; the line is lost. */
    log_out(access_fd, access_sock, LOG_ACCESS_LOG, line, len);
}

uint64_t log_lines_dropped(enum log_which which)
{
    return atomic_load_explicit(&lines_dropped[which], memory_order_relaxed);
}
