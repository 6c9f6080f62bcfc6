#include "core/buffer.h"

#include <stdlib.h>
#include <string.h>

void buf_pool_init(struct buf_pool *p, uint32_t size, uint32_t max_free)
{
    memset(p, 0, sizeof(*p));
    p->size = size;
    p->max_free = max_free;
}

void buf_pool_destroy(struct buf_pool *p)
{
    while (p->free) {
        struct buf *b = p->free;
        p->free = b->next_free;
        free(b);
    }
    p->nfree = 0;
}

struct buf *buf_get(struct buf_pool *p)
{
    struct buf *b = p->free;

    if (b) {
        p->free = b->next_free;
        p->nfree--;
    } else {
        b = malloc(sizeof(*b) + p->size);
        if (!b)
            return NULL;
        b->size = p->size;
        p->allocated++;
    }
    b->next_free = NULL;
    b->head = b->tail = 0;
    return b;
}

void buf_put(struct buf_pool *p, struct buf *b)
{
    if (!b)
        return;
    if (b->size != p->size) {
        free(b);            /* a grown one (proxy/http.c): never counted */
        return;
    }
    if (p->nfree >= p->max_free) {
        free(b);
        p->allocated--;
        return;
    }
    b->next_free = p->free;
    p->free = b;
    p->nfree++;
}

void buf_compact(struct buf *b)
{
    uint32_t n = buf_len(b);

    if (b->head == 0)
        return;
    memmove(b->data, b->data + b->head, n);
    b->head = 0;
    b->tail = n;
}

uint32_t buf_append(struct buf *b, const void *src, uint32_t len)
{
    if (len > buf_room(b))
        buf_compact(b);
    if (len > buf_room(b))
        len = buf_room(b);
    memcpy(b->data + b->tail, src, len);
    b->tail += len;
    return len;
}
