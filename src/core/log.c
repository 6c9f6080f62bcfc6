#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"

static _Atomic int log_level = LOG_LEVEL_INFO;
static int access_fd = -1;            /* set at startup, before workers run */
static _Atomic uint64_t lines_dropped[2];   /* by enum log_which */
static int error_fd = STDERR_FILENO;  /* log_init: our own, on a pipe */
static char access_path[4096];        /* empty unless the access log is a file */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* fd, or on a pipe a descriptor of our own of the same pipe: a pipe whose
 * reader stopped reading (a stuck `| logger`, a container runtime) would
 * stop every worker in a blocking write(2). Ours can be non-blocking
 * without touching the description we share: a full pipe loses the line,
 * as a full disk does. A line is at most PIPE_BUF bytes, so it goes whole
 * or not at all. */
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

void log_init(void)
{
    error_fd = own_nonblocking(STDERR_FILENO);
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
    char line[2048];
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
    if (write(error_fd, line, n) < 0) {
        /* Nowhere left to report it but the count. */
        atomic_fetch_add_explicit(&lines_dropped[LOG_ERROR_LOG], 1, memory_order_relaxed);
    }
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

    if (access_fd > STDERR_FILENO)
        close(access_fd);
    access_fd = -1;
    access_path[0] = '\0';
    if (!target || strcmp(target, "off") == 0)
        return 0;
    if (strcmp(target, "stdout") == 0) {
        access_fd = own_nonblocking(STDOUT_FILENO);
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
    if (access_fd < 0)
        return;
    if (write(access_fd, line, len) < 0) {
        /* A full disk or pipe must not stop traffic; the line is lost. */
        atomic_fetch_add_explicit(&lines_dropped[LOG_ACCESS_LOG], 1, memory_order_relaxed);
    }
}

uint64_t log_lines_dropped(enum log_which which)
{
    return atomic_load_explicit(&lines_dropped[which], memory_order_relaxed);
}
