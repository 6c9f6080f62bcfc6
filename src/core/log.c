#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"

static _Atomic int log_level = LOG_LEVEL_INFO;
static int access_fd = -1;            /* set at startup, before workers run */
static char access_path[4096];        /* empty unless the access log is a file */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

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
    if (write(STDERR_FILENO, line, n) < 0) {
        /* Nowhere left to report a failing error log. */
    }
}

size_t log_quote(char *dst, size_t size, const char *src)
{
    size_t n = 0;

    if (size == 0)
        return 0;
    for (; *src && n + 5 < size; src++) {
        unsigned char c = (unsigned char)*src;
        if (c == '"' || c == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(dst + n, size - n, "\\x%02x", c);
        } else {
            dst[n++] = (char)c;
        }
    }
    dst[n] = '\0';
    return n;
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
        access_fd = STDOUT_FILENO;
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
        /* A full disk must not stop traffic; the line is lost. */
    }
}
