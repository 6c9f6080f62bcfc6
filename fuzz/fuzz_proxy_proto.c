/* libFuzzer target: proxy_proto_parse on arbitrary bytes.
 *
 * Invariants checked beyond "no crash, no sanitizer report":
 *  - a header length is > 0, <= size and <= PROXY_PROTO_MAX;
 *  - parsing is monotonic: one byte less never turns BAD into something else,
 *    and gives NEED_MORE exactly when the header needed that last byte;
 *  - a parsed header re-written with proxy_proto_write parses back to the
 *    same version, locality and addresses;
 *  - a PP2_TYPE_CRC32C TLV: a fuzzer cannot guess a checksum, so an input
 *    whose v2 header carries one is also tried with the checksum made right
 *    (the same invariants hold for it); making it right never turns an
 *    accepted header into a refused one, and an accepted v2 PROXY header
 *    with it says it was checked. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/crc32c.h"
#include "net/addr.h"
#include "net/proxy_proto.h"

#include "fuzz.h"

static const uint8_t v2_sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

/* The invariants above for buf[0..size); the parse result. */
static int check(const uint8_t *buf, size_t size, struct proxy_proto_info *info)
{
    struct proxy_proto_info again;
    uint8_t out[108];

    int r = proxy_proto_parse(buf, size, info);
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
        FUZZ_CHECK(info->version == 1 || info->version == 2);
        FUZZ_CHECK(info->local == 0 || info->local == 1);
        FUZZ_CHECK(!info->crc32c || (info->version == 2 && !info->local));
        if (!info->local) {
            int fam = info->src.ss.ss_family;
            FUZZ_CHECK(fam == AF_INET || fam == AF_INET6);
            FUZZ_CHECK(info->dst.ss.ss_family == fam);
            FUZZ_CHECK(info->src.len > 0 && info->dst.len == info->src.len);
        }

        /* Write it back the way we would towards a backend, and re-read. */
        int n = proxy_proto_write(info->version, &info->src, &info->dst, out, sizeof(out));
        FUZZ_CHECK(n > 0 && (size_t)n <= sizeof(out));
        int r2 = proxy_proto_parse(out, (size_t)n, &again);
        FUZZ_CHECK(r2 == n);
        FUZZ_CHECK(again.version == info->version);
        FUZZ_CHECK(again.local == info->local);
        if (!info->local) {
            FUZZ_CHECK(addr_equal(&again.src, &info->src));
            FUZZ_CHECK(addr_equal(&again.dst, &info->dst));
            /* A v1 line we write is canonical: writing it again is identical. */
            uint8_t out2[108];
            int n2 = proxy_proto_write(again.version, &again.src, &again.dst,
                                       out2, sizeof(out2));
            FUZZ_CHECK(n2 == n && memcmp(out, out2, (size_t)n) == 0);
        }
        /* The other version carries the same information. */
        int other = info->version == 1 ? 2 : 1;
        n = proxy_proto_write(other, &info->src, &info->dst, out, sizeof(out));
        FUZZ_CHECK(n > 0);
        FUZZ_CHECK(proxy_proto_parse(out, (size_t)n, &again) == n);
        FUZZ_CHECK(again.local == info->local);
        if (!info->local)
            FUZZ_CHECK(addr_equal(&again.src, &info->src) && addr_equal(&again.dst, &info->dst));
    }
    return r;
}

/* When buf holds a whole v2 PROXY header over IPv4 or IPv6 whose first
 * CRC32C TLV (4 bytes, reached by walking the TLVs as the parser does) is
 * at hand, write the right checksum into it; true when it did. The
 * parser's own walk is not reused: this one is written apart so that the
 * two check each other. */
static int fix_crc32c(uint8_t *buf, size_t size)
{
    static const uint8_t zero[4];

    if (size < 16 || memcmp(buf, v2_sig, sizeof(v2_sig)) != 0 || buf[12] != 0x21)
        return 0;
    size_t addrs = (buf[13] >> 4) == 1 ? 12 : (buf[13] >> 4) == 2 ? 36 : 0;
    size_t end = 16 + ((size_t)buf[14] << 8 | buf[15]);
    if (addrs == 0 || end > size)
        return 0;
    for (size_t off = 16 + addrs; off + 3 <= end;
         off += 3 + ((size_t)buf[off + 1] << 8 | buf[off + 2])) {
        if (buf[off] != 0x03)
            continue;
        if (buf[off + 1] != 0 || buf[off + 2] != 4 || off + 7 > end)
            return 0;
        uint32_t crc = crc32c(0, buf, off + 3);
        crc = crc32c(crc, zero, 4);
        crc = crc32c(crc, buf + off + 7, end - off - 7);
        buf[off + 3] = (uint8_t)(crc >> 24);
        buf[off + 4] = (uint8_t)(crc >> 16);
        buf[off + 5] = (uint8_t)(crc >> 8);
        buf[off + 6] = (uint8_t)crc;
        return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_proto_info info, fixed;

    /* Copy so that ASan sees any read past size, even with a larger input. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);

    int r = check(buf, size, &info);
    if (fix_crc32c(buf, size)) {
        int rf = check(buf, size, &fixed);
        /* Setting the checksum right cannot make an accepted header bad. */
        if (r > 0)
            FUZZ_CHECK(rf == r);
        if (rf > 0 && !fixed.local)
            FUZZ_CHECK(fixed.crc32c);
    }

    free(buf);
    return 0;
}
