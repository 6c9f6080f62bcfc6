/* HTTP/2 request heads written as HTTP/1.1 (proto/h2_request): the input
 * is a list of fields, "name\0value\n" each (the last line may lack its
 * \n), then whether DATA follows (the input's first byte, odd = yes).
 * Invariants: no crash, no leak; when the builder accepts the fields, the
 * HTTP/1.1 parser either refuses the head or reads exactly all of it (a
 * field can never end the head early or add a line of its own), a request
 * that gets a body gets exactly one framing for it, and a WebSocket's
 * extended CONNECT is an upgrade without one (its DATA is the tunnel's). */
#include <string.h>

#include "fuzz.h"
#include "proto/h2_request.h"
#include "proto/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct h2_request r;
    struct h1_header slots[128];
    struct h1_request req;
    bool has_body;
    size_t at = 1;
    int e = 0;

    if (size < 1)
        return 0;
    has_body = data[0] & 1;
    h2_request_init(&r, 4096);
    while (at < size && !e) {
        const uint8_t *line = data + at, *nl = memchr(line, '\n', size - at), *nul;
        size_t len = nl ? (size_t)(nl - line) : size - at;

        at += len + 1;
        nul = memchr(line, '\0', len);
        if (!nul)
            continue;
        e = h2_request_field(&r, line, (size_t)(nul - line), nul + 1, len - (size_t)(nul - line) - 1);
    }
    if (!e)
        e = h2_request_end(&r, has_body, r.websocket ? "AAAAAAAAAAAAAAAAAAAAAA==" : NULL);
    if (!e) {
        int n;

        FUZZ_CHECK(r.len >= 4 && memcmp(r.head + r.len - 4, "\r\n\r\n", 4) == 0);
        h1_request_init(&req, slots, 128);
        n = h1_parse_request(r.head, r.len, NULL, &req);
        FUZZ_CHECK(n != 0);                       /* complete: never "need more" */
        FUZZ_CHECK(n < 0 || (uint32_t)n == r.len);
        if (n > 0 && r.websocket)
            FUZZ_CHECK(req.upgrade && req.body == H1_BODY_NONE && req.method_id == H1_GET);
        else if (n > 0 && has_body)
            FUZZ_CHECK(req.body != H1_BODY_NONE || (r.has_length && req.content_length == 0));
    }
    h2_request_free(&r);
    return 0;
}
