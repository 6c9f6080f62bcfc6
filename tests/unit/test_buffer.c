/* Buffers: freelist reuse, bounds, consume/compact/append. */
#include <stdlib.h>

#include "core/buffer.h"
#include "test.h"

int main(void)
{
    struct buf_pool p;
    struct buf *a, *b, *c;

    buf_pool_init(&p, 64, 2);
    a = buf_get(&p);
    CHECK(a != NULL);
    CHECK_EQ_INT(a->size, 64);
    CHECK_EQ_INT(buf_len(a), 0);
    CHECK_EQ_INT(buf_room(a), 64);

    CHECK_EQ_INT(buf_append(a, "hello world", 11), 11);
    CHECK_EQ_INT(buf_len(a), 11);
    buf_consume(a, 6);
    CHECK_EQ_INT(buf_len(a), 5);
    CHECK(memcmp(a->data + a->head, "world", 5) == 0);
    /* Appending more than the room left compacts first, then truncates. */
    char big[100];
    memset(big, 'x', sizeof(big));
    CHECK_EQ_INT(buf_append(a, big, 100), 59);
    CHECK_EQ_INT(a->head, 0);
    CHECK(memcmp(a->data, "world", 5) == 0);
    CHECK_EQ_INT(buf_room(a), 0);
    /* Consuming everything rewinds. */
    buf_consume(a, buf_len(a));
    CHECK_EQ_INT(a->head, 0);
    CHECK_EQ_INT(a->tail, 0);

    /* The freelist hands back the same memory, bounded by max_free. */
    b = buf_get(&p);
    c = buf_get(&p);
    CHECK_EQ_INT(p.allocated, 3);
    buf_put(&p, a);
    buf_put(&p, b);
    buf_put(&p, c);          /* beyond max_free: freed */
    CHECK_EQ_INT(p.nfree, 2);
    CHECK_EQ_INT(p.allocated, 2);
    struct buf *d = buf_get(&p);
    CHECK(d == b);
    CHECK_EQ_INT(buf_len(d), 0);
    buf_put(&p, d);
    buf_put(&p, NULL);       /* harmless */
    /* One of another size (grown by its owner, never counted): freed, and
     * the count of pool buffers stays. */
    struct buf *grown = malloc(sizeof(*grown) + 1000);
    CHECK(grown != NULL);
    grown->size = 1000;
    grown->head = grown->tail = 0;
    buf_put(&p, grown);
    CHECK_EQ_INT(p.allocated, 2);
    CHECK_EQ_INT(p.nfree, 2);
    buf_pool_destroy(&p);
    CHECK_EQ_INT(p.nfree, 0);
    TEST_END();
}
