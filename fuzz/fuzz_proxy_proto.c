/* libFuzzer target: proxy_proto_parse on arbitrary bytes.
 *
 * Invariants checked beyond "no crash, no sanitizer report":
 *  - a header length is > 0, <= size and <= PROXY_PROTO_MAX;
 *  - parsing is monotonic: one byte less never turns BAD into something else,
 *    and gives NEED_MORE exactly when the header needed that last byte;
 *  - a parsed header re-written with proxy_proto_write parses back to the
 *    same version, locality and addresses. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "net/addr.h"
#include "net/proxy_proto.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_proto_info info, again;
    uint8_t out[108];

    /* Copy so that ASan sees any read past size, even with a larger input. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);

    int r = proxy_proto_parse(buf, size, &info);
    FUZZ_CHECK(r == PROXY_PROTO_NEED_MORE || r == PROXY_PROTO_BAD || r > 0);

    if (size > 0) {
        int p = proxy_proto_parse(buf, size - 1, &again);
        if (r == PROXY_PROTO_NEED_MORE)
            FUZZ_CHECK(p == PROXY_PROTO_NEED_MORE);
        else if (r == PROXY_PROTO_BAD)
            FUZZ_CHECK(p == PROXY_PROTO_BAD || p == PROXY_PROTO_NEED_MORE);
        else if ((size_t)r == size)
            FUZZ_CHECK(p == PROXY_PROTO_NEED_MORE);
        else
            FUZZ_CHECK(p == r);
    }

    if (r > 0) {
        FUZZ_CHECK((size_t)r <= size);
        FUZZ_CHECK(r <= PROXY_PROTO_MAX);
        FUZZ_CHECK(info.version == 1 || info.version == 2);
        FUZZ_CHECK(info.local == 0 || info.local == 1);
        if (!info.local) {
            int fam = info.src.ss.ss_family;
            FUZZ_CHECK(fam == AF_INET || fam == AF_INET6);
            FUZZ_CHECK(info.dst.ss.ss_family == fam);
            FUZZ_CHECK(info.src.len > 0 && info.dst.len == info.src.len);
        }

        /* Write it back the way we would towards a backend, and re-read. */
        int n = proxy_proto_write(info.version, &info.src, &info.dst, out, sizeof(out));
        FUZZ_CHECK(n > 0 && (size_t)n <= sizeof(out));
        int r2 = proxy_proto_parse(out, (size_t)n, &again);
        FUZZ_CHECK(r2 == n);
        FUZZ_CHECK(again.version == info.version);
        FUZZ_CHECK(again.local == info.local);
        if (!info.local) {
            FUZZ_CHECK(addr_equal(&again.src, &info.src));
            FUZZ_CHECK(addr_equal(&again.dst, &info.dst));
            /* A v1 line we write is canonical: writing it again is identical. */
            uint8_t out2[108];
            int n2 = proxy_proto_write(again.version, &again.src, &again.dst,
                                       out2, sizeof(out2));
            FUZZ_CHECK(n2 == n && memcmp(out, out2, (size_t)n) == 0);
        }
        /* The other version carries the same information. */
        int other = info.version == 1 ? 2 : 1;
        n = proxy_proto_write(other, &info.src, &info.dst, out, sizeof(out));
        FUZZ_CHECK(n > 0);
        FUZZ_CHECK(proxy_proto_parse(out, (size_t)n, &again) == n);
        FUZZ_CHECK(again.local == info.local);
        if (!info.local)
            FUZZ_CHECK(addr_equal(&again.src, &info.src) && addr_equal(&again.dst, &info.dst));
    }

    free(buf);
    return 0;
}
