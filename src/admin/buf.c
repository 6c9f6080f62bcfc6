/* The growable text buffer admin replies and metrics are written into. */
#include "admin/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void admin_buf_init(struct admin_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void admin_buf_free(struct admin_buf *b)
{
    free(b->p);
    admin_buf_init(b);
}

/* Room for n more bytes and a NUL. */
static bool admin_buf_reserve(struct admin_buf *b, size_t n)
{
    size_t cap;
    char *p;

    if (b->oom)
        return false;
    if (b->len + n + 1 <= b->cap)
        return true;
    cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1)
        cap *= 2;
    p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void admin_buf_add(struct admin_buf *b, const char *s, size_t n)
{
    if (!admin_buf_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void admin_buf_puts(struct admin_buf *b, const char *s)
{
    admin_buf_add(b, s, strlen(s));
}

void admin_buf_printf(struct admin_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!admin_buf_reserve(b, 128))
        return;
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n >= b->cap - b->len) {
        if (!admin_buf_reserve(b, (size_t)n))
            return;
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

/* Metrics print tens of thousands of numbers; this skips printf's parsing. */
void admin_buf_u64(struct admin_buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    admin_buf_add(b, tmp + i, sizeof(tmp) - i);
}

void admin_buf_json_str(struct admin_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s, *end = s + strlen(s);

    admin_buf_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[6];
        size_t n;

        if (c >= 0x80 && (n = admin_utf8_len((const unsigned char *)s,
                                             (const unsigned char *)end))) {
            s += n - 1;
            continue;
        }
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\')
            continue;
        admin_buf_add(b, run, (size_t)(s - run));
        run = s + 1;
        if (c >= 0x80) {
            admin_buf_add(b, "\\ufffd", 6);
            continue;
        }
        switch (c) {
        case '"': admin_buf_add(b, "\\\"", 2); break;
        case '\\': admin_buf_add(b, "\\\\", 2); break;
        case '\n': admin_buf_add(b, "\\n", 2); break;
        case '\r': admin_buf_add(b, "\\r", 2); break;
        case '\t': admin_buf_add(b, "\\t", 2); break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            admin_buf_add(b, esc, 6);
        }
    }
    admin_buf_add(b, run, (size_t)(s - run));
    admin_buf_add(b, "\"", 1);
}
