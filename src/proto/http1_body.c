/* HTTP/1.1 bodies out of their framing (see http1_body.h). */
#include "proto/http1_body.h"

void h1_body_init(struct h1_body *b, enum h1_body_kind kind, uint64_t content_length)
{
    b->kind = kind;
    b->left = content_length;
    h1_chunked_init(&b->chunk);
    b->done = kind == H1_BODY_NONE || (kind == H1_BODY_LENGTH && content_length == 0);
}

ssize_t h1_body_take(struct h1_body *b, const char *p, size_t n, struct bytes *data,
                     struct bytes *trailers)
{
    size_t used = 0;

    while (used < n && !b->done) {
        struct h1_slice d = {p + used, 0};
        bool trailer = false;
        ssize_t r;

        switch (b->kind) {
        case H1_BODY_LENGTH:
            r = (ssize_t)(n - used < b->left ? n - used : b->left);
            d.len = (uint32_t)r;
            b->left -= (uint64_t)r;
            b->done = b->left == 0;
            break;
        case H1_BODY_CHUNKED:
            r = h1_chunked_decode(&b->chunk, p + used, n - used, &d, &trailer, &b->done);
            if (r < 0 || (trailer && trailers && !bytes_put(trailers, p + used, (size_t)r)))
                return -1;
            break;
        case H1_BODY_CLOSE:
            r = (ssize_t)(n - used);
            d.len = (uint32_t)r;
            break;
        default:
            return (ssize_t)used;
        }
        if (d.len && data && !bytes_put(data, d.p, d.len))
            return -1;
        used += (size_t)r;
        if (r == 0 && !b->done)
            break;
    }
    return (ssize_t)used;
}
