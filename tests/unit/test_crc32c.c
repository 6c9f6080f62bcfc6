/* CRC32C: the standard check value, RFC 3720's test vectors, every table
 * entry against a bit-at-a-time reference, and pieces against the whole. */
#include "core/crc32c.h"

#include <stdint.h>
#include <string.h>

#include "test.h"

/* The definition, one bit at a time: what the table must agree with. */
static uint32_t crc32c_bitwise(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;

    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (crc & 1 ? 0x82F63B78u : 0);
    }
    return ~crc;
}

static void test_vectors(void)
{
    uint8_t buf[32];

    CHECK_EQ_INT(crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ_INT(crc32c(0, "", 0), 0);
    CHECK_EQ_INT(crc32c(0x12345678u, "", 0), 0x12345678u);

    /* RFC 3720 (iSCSI) B.4. */
    memset(buf, 0, sizeof(buf));
    CHECK_EQ_INT(crc32c(0, buf, sizeof(buf)), 0x8A9136AAu);
    memset(buf, 0xFF, sizeof(buf));
    CHECK_EQ_INT(crc32c(0, buf, sizeof(buf)), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    CHECK_EQ_INT(crc32c(0, buf, sizeof(buf)), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    CHECK_EQ_INT(crc32c(0, buf, sizeof(buf)), 0x113FDB5Cu);
}

/* A one-byte input goes through exactly the table entry of its byte (xor
 * 0xFF), so these 256 cover every entry; longer ones mix them. */
static void test_table(void)
{
    uint8_t buf[600];
    int bad = 0;

    for (int b = 0; b < 256; b++) {
        uint8_t one = (uint8_t)b;
        if (crc32c(0, &one, 1) != crc32c_bitwise(&one, 1))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);

    uint32_t x = 2463534242u;               /* xorshift32: any fixed bytes */
    for (size_t i = 0; i < sizeof(buf); i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
    bad = 0;
    for (size_t n = 0; n <= sizeof(buf); n += 7)
        if (crc32c(0, buf, n) != crc32c_bitwise(buf, n))
            bad++;
    CHECK_EQ_INT(bad, 0);

    /* Piece by piece, split anywhere, is the same as all at once. */
    uint32_t whole = crc32c(0, buf, sizeof(buf));
    bad = 0;
    for (size_t cut = 0; cut <= sizeof(buf); cut++)
        if (crc32c(crc32c(0, buf, cut), buf + cut, sizeof(buf) - cut) != whole)
            bad++;
    CHECK_EQ_INT(bad, 0);
}

int main(void)
{
    test_vectors();
    test_table();
    TEST_END();
}
