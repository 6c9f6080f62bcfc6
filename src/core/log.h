/* Logging. The error log goes to stderr, one line per event in a stable
 * key=value format:
 *     2026-11-22T22:31:12.123Z level=warn event=backend_down pool=app ...
 * The access log is a separate stream (stdout, a file, or off) that
 * SIGUSR1 reopens. A line is written whole with one write(2) or send(2), so
 * lines from different workers never interleave, and never waited for: a
 * log that cannot take a line now (a full disk, a pipe or socket whose
 * reader stalled) loses it, and the loss is counted (log_lines_dropped). */
#ifndef SLUICE_CORE_LOG_H
#define SLUICE_CORE_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* Once at startup, before any other thread: on a pipe, the error log gets
 * a non-blocking descriptor of its own; on a socket (journald's stream) it
 * is written with MSG_DONTWAIT, the descriptor's shared flags untouched.
 * Either way a stuck reader loses lines rather than stopping workers; the
 * access log on stdout does the same. */
void log_init(void);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

/* fmt continues the line after "level=...": pass "event=... key=val". */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LEVEL_DEBUG)) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)

/* Open the access log: NULL = off, "stdout", or a file path (appended).
 * Returns 0 or -errno. */
int log_access_open(const char *target);

/* Reopen the access log file in place (SIGUSR1, after logrotate moved it).
 * Writers keep using the same descriptor number, so no lock is needed. */
int log_access_reopen(void);

bool log_access_enabled(void);

/* Write one access-log line (it should end with '\n'; one that does not, or
 * is longer than PIPE_BUF, is cut there and given one). */
void log_access_write(const char *line, size_t len);

/* Lines lost because their log could not take them (a full disk, a pipe
 * whose reader stopped): never waited for, counted here. */
enum log_which { LOG_ERROR_LOG, LOG_ACCESS_LOG };
uint64_t log_lines_dropped(enum log_which which);

/* "2026-11-22T22:31:12.123Z" for the given wall time; buf >= 32 bytes. */
void log_format_time(char *buf, size_t size, unsigned long long wall_us);

/* Quote a string for key="value": escapes '"', '\\', control bytes and
 * bytes that are not well-formed UTF-8 (as \xHH), so the result is one line
 * of UTF-8 whatever src holds. Cut to size at a character boundary. */
size_t log_quote(char *dst, size_t size, const char *src);
/* The same for the inside of a JSON string: \u00HH instead of \xHH. */
size_t log_quote_json(char *dst, size_t size, const char *src);

#endif
