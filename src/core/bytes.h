/* A growable byte queue (malloc'd): bytes are put at the end and taken from
 * the front. For data whose size a protocol bounds rather than a buffer
 * does (HTTP/2 streams' queues, bounded by flow control windows). Owner:
 * the struct that holds it; bytes_free releases it. */
#ifndef SLUICE_CORE_BYTES_H
#define SLUICE_CORE_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct bytes {
    char *p;
    uint32_t off, len, cap;      /* unread bytes are p[off..len) */
};

static inline uint32_t bytes_len(const struct bytes *q)
{
    return q->len - q->off;
}

static inline const char *bytes_data(const struct bytes *q)
{
    return q->p + q->off;
}

/* Append n bytes; false when out of memory. */
static inline bool bytes_put(struct bytes *q, const void *src, size_t n)
{
    if (q->off && q->len + n > q->cap) {
        memmove(q->p, q->p + q->off, q->len - q->off);
        q->len -= q->off;
        q->off = 0;
    }
    if (q->len + n > q->cap) {
        size_t c = q->cap ? q->cap : 4096;
        char *np;

        while (c < q->len + n)
            c *= 2;
        if (c > UINT32_MAX || !(np = realloc(q->p, c)))
            return false;
        q->p = np;
        q->cap = (uint32_t)c;
    }
    if (n)
        memcpy(q->p + q->len, src, n);
    q->len += (uint32_t)n;
    return true;
}

/* Copy up to room bytes from the front into dst and drop them. */
static inline size_t bytes_take(struct bytes *q, void *dst, size_t room)
{
    size_t n = bytes_len(q) < room ? bytes_len(q) : room;

    if (n)
        memcpy(dst, q->p + q->off, n);
    q->off += (uint32_t)n;
    if (q->off == q->len)
        q->off = q->len = 0;
    return n;
}

static inline void bytes_clear(struct bytes *q)
{
    q->off = q->len = 0;
}

static inline void bytes_free(struct bytes *q)
{
    free(q->p);
    *q = (struct bytes){0};
}

#endif
