/* Fixed-size byte buffers from a per-worker freelist. A connection takes a
 * buffer only while it has bytes to hold and gives it back as soon as it is
 * empty, so an idle connection holds none. */
#ifndef SLUICE_CORE_BUFFER_H
#define SLUICE_CORE_BUFFER_H

#include <stddef.h>
#include <stdint.h>

#define BUF_SIZE_DEFAULT (16u * 1024u)

/* Owner: the connection that took it from the pool, until buf_put. */
struct buf {
    struct buf *next_free;   /* freelist link while in the pool */
    uint32_t head;           /* first unread byte */
    uint32_t tail;           /* one past the last written byte */
    uint32_t size;           /* capacity of data[] */
    char data[];
};

/* Owner: one worker; never touched by another thread. */
struct buf_pool {
    struct buf *free;
    uint32_t nfree;
    uint32_t max_free;       /* beyond this, returned buffers go back to malloc */
    uint32_t size;           /* data bytes per buffer */
    uint64_t allocated;      /* live pool-sized buffers taken from malloc, for stats */
};

void buf_pool_init(struct buf_pool *p, uint32_t size, uint32_t max_free);
void buf_pool_destroy(struct buf_pool *p);

/* An empty buffer, or NULL when memory is exhausted. */
struct buf *buf_get(struct buf_pool *p);
/* Back to the pool, or freed. A buffer of another size (one grown past the
 * pool's by its owner) is freed and was never counted in allocated. */
void buf_put(struct buf_pool *p, struct buf *b);

static inline uint32_t buf_len(const struct buf *b)
{
    return b->tail - b->head;
}

/* Free space after tail. */
static inline uint32_t buf_room(const struct buf *b)
{
    return b->size - b->tail;
}

/* Mark n bytes as consumed; an emptied buffer rewinds to the start. */
static inline void buf_consume(struct buf *b, uint32_t n)
{
    b->head += n;
    if (b->head == b->tail)
        b->head = b->tail = 0;
}

/* Move unread bytes to the start so that room is maximal. */
void buf_compact(struct buf *b);

/* Append up to len bytes; returns how many fit. */
uint32_t buf_append(struct buf *b, const void *src, uint32_t len);

#endif
