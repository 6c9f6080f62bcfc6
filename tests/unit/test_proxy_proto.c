/* PROXY protocol v1/v2: round trips, incremental parsing, refusals. */
#include "net/proxy_proto.h"

#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "net/addr.h"
#include "test.h"

#define SIG "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"

struct bytes {
    const char *name;
    const char *p;
    size_t n;
};

/* A byte-string literal with its length (NULs included). */
#define B(name, lit) { name, lit, sizeof(lit) - 1 }

static struct addr mk(const char *text)
{
    struct addr a;
    const char *why = NULL;
    int rc = addr_parse(text, &a, &why);
    CHECK_EQ_INT(rc, 0);
    return a;
}

static int parse(const void *p, size_t n, struct proxy_proto_info *info)
{
    return proxy_proto_parse((const uint8_t *)p, n, info);
}

static int parse_s(const char *s, struct proxy_proto_info *info)
{
    return parse(s, strlen(s), info);
}

static const char *fmt(const struct addr *a, char *buf)
{
    return addr_format(a, buf, ADDR_TEXT_MAX);
}

/* write -> parse, for one version and a pair of addresses. */
static void round_trip(int version, const char *src, const char *dst)
{
    struct addr s = mk(src), d = mk(dst);
    struct proxy_proto_info info;
    uint8_t out[108];
    char b[ADDR_TEXT_MAX];

    int n = proxy_proto_write(version, &s, &d, out, sizeof(out));
    CHECK(n > 0);
    if (n <= 0)
        return;
    CHECK_EQ_INT(parse(out, (size_t)n, &info), n);
    CHECK_EQ_INT(info.version, version);
    CHECK_EQ_INT(info.local, 0);
    CHECK(addr_equal(&info.src, &s));
    CHECK(addr_equal(&info.dst, &d));
    CHECK_EQ_STR(fmt(&info.src, b), src);
    CHECK_EQ_STR(fmt(&info.dst, b), dst);
    CHECK_EQ_INT(info.src.len, s.len);

    /* Every shorter output buffer is refused, the exact size is enough. */
    for (int k = 0; k < n; k++)
        CHECK_EQ_INT(proxy_proto_write(version, &s, &d, out, (size_t)k), -1);
    CHECK_EQ_INT(proxy_proto_write(version, &s, &d, out, (size_t)n), n);
}

static void test_round_trips(void)
{
    round_trip(1, "1.2.3.4:1111", "5.6.7.8:2222");
    round_trip(2, "1.2.3.4:1111", "5.6.7.8:2222");
    round_trip(1, "[2001:db8::1]:443", "[2001:db8::2]:65535");
    round_trip(2, "[2001:db8::1]:443", "[2001:db8::2]:65535");
    round_trip(1, "0.0.0.0:0", "255.255.255.255:65535");
    round_trip(2, "[::ffff:1.2.3.4]:1", "[::]:0");
    round_trip(1, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535",
               "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
}

static void test_write_text(void)
{
    struct addr s4 = mk("1.2.3.4:1111"), d4 = mk("5.6.7.8:2222");
    struct addr s6 = mk("[2001:db8::1]:1111");
    struct addr none;
    struct proxy_proto_info info;
    uint8_t out[108];
    int n;

    memset(&none, 0, sizeof(none));

    n = proxy_proto_write(1, &s4, &d4, out, sizeof(out));
    CHECK_EQ_INT(n, (int)strlen("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n"));
    CHECK(n > 0 && memcmp(out, "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n", (size_t)n) == 0);

    /* Mixed or unknown families. */
    n = proxy_proto_write(1, &s6, &d4, out, sizeof(out));
    CHECK_EQ_INT(n, 15);
    CHECK(n > 0 && memcmp(out, "PROXY UNKNOWN\r\n", 15) == 0);
    CHECK_EQ_INT(parse(out, (size_t)n, &info), 15);
    CHECK_EQ_INT(info.version, 1);
    CHECK_EQ_INT(info.local, 1);
    CHECK_EQ_INT(proxy_proto_write(1, &none, &none, out, sizeof(out)), 15);
    CHECK_EQ_INT(proxy_proto_write(1, NULL, &d4, out, sizeof(out)), 15);
    CHECK_EQ_INT(proxy_proto_write(1, &s4, &d4, out, 14), -1);

    n = proxy_proto_write(2, &s4, &s6, out, sizeof(out));
    CHECK_EQ_INT(n, 16);
    CHECK(n > 0 && memcmp(out, SIG "\x21\x00\x00\x00", 16) == 0);
    CHECK_EQ_INT(parse(out, (size_t)n, &info), 16);
    CHECK_EQ_INT(info.version, 2);
    CHECK_EQ_INT(info.local, 1);
    CHECK_EQ_INT(proxy_proto_write(2, &s4, &s6, out, 15), -1);

    n = proxy_proto_write(2, &s4, &d4, out, sizeof(out));
    CHECK_EQ_INT(n, 28);
    CHECK(n > 0 && memcmp(out, SIG "\x21\x11\x00\x0c" "\x01\x02\x03\x04" "\x05\x06\x07\x08"
                          "\x04\x57" "\x08\xae", 28) == 0);

    CHECK_EQ_INT(proxy_proto_write(3, &s4, &d4, out, sizeof(out)), -1);
    CHECK_EQ_INT(proxy_proto_write(0, &s4, &d4, out, sizeof(out)), -1);
}

/* Bodies (after the 16 bytes up to the length) of v2 headers that carry a
 * CRC32C TLV; CRC32C over the whole header, the value read as zeroes:
 * 0x65a60e1e and 0x8285f236. */
#define V2_TCP4_CRC_BODY "\x01\x02\x03\x04" "\x05\x06\x07\x08" "\x00\x01" "\x00\x02" \
    "\x03\x00\x04" "\x65\xa6\x0e\x1e"
#define V2_TCP4_CRC_AT 31                  /* offset of the CRC value */
#define V2_TCP6_CRC_BODY \
    "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" \
    "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02" \
    "\x01\xbb" "\xff\xff" "\x02\x00\x05" "a.com" "\x03\x00\x04" "\x82\x85\xf2\x36" \
    "\x04\x00\x03" "abc"

/* Valid headers: every strict prefix wants more, the whole is its length,
 * and whatever follows is not consumed. */
static const struct bytes valid[] = {
    B("v1 tcp4", "PROXY TCP4 192.168.0.1 10.0.0.1 56324 443\r\n"),
    B("v1 tcp6", "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n"),
    B("v1 tcp6 v4 tail", "PROXY TCP6 ::ffff:1.2.3.4 fe80::1 1 2\r\n"),
    B("v1 unknown", "PROXY UNKNOWN\r\n"),
    B("v1 unknown with rest", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
    B("v1 107 bytes", "PROXY UNKNOWN "
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "012345678901234567890\r\n"),
    B("v2 tcp4", SIG "\x21\x11\x00\x0c" "\x7f\x00\x00\x01" "\x0a\x00\x00\x02" "\x30\x39" "\x00\x50"),
    B("v2 udp4", SIG "\x21\x12\x00\x0c" "\x7f\x00\x00\x01" "\x0a\x00\x00\x02" "\x30\x39" "\x00\x50"),
    B("v2 tcp6", SIG "\x21\x21\x00\x24"
      "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
      "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"
      "\x01\xbb" "\xff\xff"),
    B("v2 local", SIG "\x20\x00\x00\x00"),
    B("v2 tcp4 + tlvs", SIG "\x21\x11\x00\x1a" "\x01\x02\x03\x04" "\x05\x06\x07\x08" "\x00\x01" "\x00\x02"
      "\x04\x00\x03" "abc"             /* PP2_TYPE_NOOP */
      "\x02\x00\x05" "a.com"),         /* PP2_TYPE_AUTHORITY */
    /* With a PP2_TYPE_CRC32C TLV whose value matches (computed apart from
     * sluice's code, with a bit-at-a-time CRC32C). */
    B("v2 tcp4 + crc32c", SIG "\x21\x11\x00\x13" V2_TCP4_CRC_BODY),
    B("v2 tcp6 + authority, crc32c, noop", SIG "\x21\x21\x00\x39" V2_TCP6_CRC_BODY),
};

static void test_prefixes(void)
{
    struct proxy_proto_info info;
    uint8_t buf[PROXY_PROTO_MAX + 32];

    for (size_t t = 0; t < sizeof(valid) / sizeof(valid[0]); t++) {
        const struct bytes *v = &valid[t];
        for (size_t k = 0; k < v->n; k++) {
            int r = parse(v->p, k, &info);
            if (r != PROXY_PROTO_NEED_MORE)
                fprintf(stderr, "  %s: prefix of %zu bytes gave %d\n", v->name, k, r);
            CHECK_EQ_INT(r, PROXY_PROTO_NEED_MORE);
        }
        int r = parse(v->p, v->n, &info);
        if (r != (int)v->n)
            fprintf(stderr, "  %s: gave %d\n", v->name, r);
        CHECK_EQ_INT(r, (int)v->n);

        /* Followed by request bytes: still exactly the header's length. */
        memcpy(buf, v->p, v->n);
        memcpy(buf + v->n, "GET / HTTP/1.1\r\n\r\n", 18);
        CHECK_EQ_INT(parse(buf, v->n + 18, &info), (int)v->n);
        /* ... and by a second header, which is left alone as well. */
        memcpy(buf + v->n, v->p, v->n < 32 ? v->n : 32);
        CHECK_EQ_INT(parse(buf, v->n + (v->n < 32 ? v->n : 32), &info), (int)v->n);
    }
}

static void test_fields(void)
{
    struct proxy_proto_info info;
    char b[ADDR_TEXT_MAX];

    CHECK_EQ_INT(parse_s("PROXY TCP4 192.168.0.1 10.0.0.1 56324 443\r\n", &info), 43);
    CHECK_EQ_INT(info.version, 1);
    CHECK_EQ_INT(info.local, 0);
    CHECK_EQ_STR(fmt(&info.src, b), "192.168.0.1:56324");
    CHECK_EQ_STR(fmt(&info.dst, b), "10.0.0.1:443");
    CHECK_EQ_INT(info.src.len, sizeof(struct sockaddr_in));
    CHECK_EQ_INT(((struct sockaddr_in *)&info.src.ss)->sin_port, htons(56324));

    CHECK(parse_s("PROXY TCP6 2001:DB8::1 ::1 0 65535\r\n", &info) > 0);
    CHECK_EQ_STR(fmt(&info.src, b), "[2001:db8::1]:0");
    CHECK_EQ_STR(fmt(&info.dst, b), "[::1]:65535");
    CHECK_EQ_INT(info.dst.len, sizeof(struct sockaddr_in6));

    CHECK_EQ_INT(parse_s("PROXY UNKNOWN\r\n", &info), 15);
    CHECK_EQ_INT(info.local, 1);
    CHECK_EQ_INT(info.src.ss.ss_family, AF_UNSPEC);

    const struct bytes *v2 = &valid[6];          /* v2 tcp4 */
    CHECK_EQ_INT(parse(v2->p, v2->n, &info), 28);
    CHECK_EQ_INT(info.version, 2);
    CHECK_EQ_INT(info.local, 0);
    CHECK_EQ_STR(fmt(&info.src, b), "127.0.0.1:12345");
    CHECK_EQ_STR(fmt(&info.dst, b), "10.0.0.2:80");

    v2 = &valid[7];                              /* udp4: addresses still used */
    CHECK_EQ_INT(parse(v2->p, v2->n, &info), 28);
    CHECK_EQ_INT(info.local, 0);
    CHECK_EQ_STR(fmt(&info.src, b), "127.0.0.1:12345");

    v2 = &valid[8];                              /* tcp6 */
    CHECK_EQ_INT(parse(v2->p, v2->n, &info), 52);
    CHECK_EQ_STR(fmt(&info.src, b), "[2001:db8::1]:443");
    CHECK_EQ_STR(fmt(&info.dst, b), "[2001:db8::2]:65535");

    /* TLVs are skipped: the length covers them, the addresses are read. */
    v2 = &valid[10];
    CHECK_EQ_INT(parse(v2->p, v2->n, &info), 16 + 26);
    CHECK_EQ_INT(info.local, 0);
    CHECK_EQ_STR(fmt(&info.src, b), "1.2.3.4:1");
    CHECK_EQ_STR(fmt(&info.dst, b), "5.6.7.8:2");
}

static void test_local(void)
{
    struct proxy_proto_info info;
    static const char local0[] = SIG "\x20\x00\x00\x00";
    static const char local4[] = SIG "\x20\x11\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02";
    static const char local4_short[] = SIG "\x20\x11\x00\x00";
    static const char proxy_unspec[] = SIG "\x21\x00\x00\x03" "abc";
    static uint8_t unix_stream[16 + 216];

    CHECK_EQ_INT(parse(local0, sizeof(local0) - 1, &info), 16);
    CHECK_EQ_INT(info.version, 2);
    CHECK_EQ_INT(info.local, 1);

    /* LOCAL: the family and addresses are ignored, the real peer is kept. */
    CHECK_EQ_INT(parse(local4, sizeof(local4) - 1, &info), 28);
    CHECK_EQ_INT(info.local, 1);
    CHECK_EQ_INT(info.src.ss.ss_family, AF_UNSPEC);
    CHECK_EQ_INT(parse(local4_short, sizeof(local4_short) - 1, &info), 16);
    CHECK_EQ_INT(info.local, 1);

    /* PROXY with UNSPEC: local too, its bytes skipped. */
    CHECK_EQ_INT(parse(proxy_unspec, sizeof(proxy_unspec) - 1, &info), 19);
    CHECK_EQ_INT(info.local, 1);

    /* AF_UNIX: valid, but nothing we can use: local. */
    memcpy(unix_stream, SIG "\x21\x31\x00\xd8", 16);
    memcpy(unix_stream + 16, "/run/a.sock", 11);
    CHECK_EQ_INT(parse(unix_stream, sizeof(unix_stream), &info), 232);
    CHECK_EQ_INT(info.local, 1);
    CHECK_EQ_INT(info.version, 2);
    CHECK_EQ_INT(parse(unix_stream, 231, &info), PROXY_PROTO_NEED_MORE);
    unix_stream[13] = 0x32;
    CHECK_EQ_INT(parse(unix_stream, sizeof(unix_stream), &info), 232);
    CHECK_EQ_INT(info.local, 1);

    /* LOCAL discards the whole block, the family byte included (the spec:
     * "must accept this connection as valid ... discard the protocol block
     * including the family which is ignored"): an unspecified family, or
     * bytes that are not TLVs, do not make a health check fail. */
    static const char local_fam40[] = SIG "\x20\x40\x00\x00";
    static const char local_fam13[] = SIG "\x20\x13\x00\x05" "abcde";
    static const char local_junk[] = SIG "\x20\x11\x00\x0e" "\x01\x02\x03\x04\x05\x06\x07\x08"
        "\x00\x01\x00\x02" "\x04\x00";
    CHECK_EQ_INT(parse(local_fam40, sizeof(local_fam40) - 1, &info), 16);
    CHECK_EQ_INT(info.local, 1);
    CHECK_EQ_INT(info.version, 2);
    CHECK_EQ_INT(parse(local_fam40, 14, &info), PROXY_PROTO_NEED_MORE);
    CHECK_EQ_INT(parse(local_fam13, sizeof(local_fam13) - 1, &info), 21);
    CHECK_EQ_INT(info.local, 1);
    CHECK_EQ_INT(parse(local_junk, sizeof(local_junk) - 1, &info), 30);
    CHECK_EQ_INT(info.local, 1);
}

static const struct bytes bad[] = {
    B("empty-ish garbage", "\x00"),
    B("http request", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    B("http request, first byte", "G"),
    B("leading space", " PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    B("leading garbage", "XPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    B("lower case", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    B("PROXY without space", "PROXYTCP4"),
    B("bad protocol", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"),
    B("bad protocol, early", "PROXY TCX"),
    B("protocol too long", "PROXY UNKNOWNX\r\n"),
    B("double space after PROXY", "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    B("double space after proto", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"),
    B("double space, incomplete", "PROXY TCP4 1.2.3.4  "),
    B("double space before port", "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n"),
    B("double space between ports", "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n"),
    B("trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
    B("tab separator", "PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"),
    B("missing CR", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
    B("CR without LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"),
    B("CR CR LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"),
    B("missing dport", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
    B("TCP4 alone", "PROXY TCP4\r\n"),
    B("port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
    B("dport 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"),
    B("port 99999, early", "PROXY TCP4 1.2.3.4 5.6.7.8 99999"),
    B("port with plus", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"),
    B("port with minus", "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"),
    B("port heading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"),
    B("port 00", "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n"),
    B("port hex", "PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n"),
    B("port garbage", "PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n"),
    B("IPv6 in TCP4", "PROXY TCP4 ::1 ::1 1 2\r\n"),
    B("IPv4 in TCP6", "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"),
    B("mixed in TCP6", "PROXY TCP6 ::1 5.6.7.8 1 2\r\n"),
    B("IPv4 octet 256", "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n"),
    B("IPv4 three parts", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"),
    B("IPv4 five parts", "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n"),
    B("IPv4 heading zero", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"),
    B("IPv4 host name", "PROXY TCP4 localhost 5.6.7.8 1 2\r\n"),
    B("IPv6 triple colon", "PROXY TCP6 1:::2 ::1 1 2\r\n"),
    B("IPv6 two double colons", "PROXY TCP6 1::2::3 ::1 1 2\r\n"),
    B("IPv6 group of 5", "PROXY TCP6 12345::1 ::1 1 2\r\n"),
    B("IPv6 zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),
    B("IPv6 brackets", "PROXY TCP6 [::1] [::1] 1 2\r\n"),
    B("unknown with LF only", "PROXY UNKNOWN\n"),
    B("unknown with control byte", "PROXY UNKNOWN \x01\r\n"),
    B("overlong line", "PROXY UNKNOWN "
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "0123456789012345678901\r\n"),                    /* 108 bytes */
    B("overlong, no CRLF", "PROXY UNKNOWN "
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "0123456789012345678901234567890123456789"),      /* 124 bytes */
    B("bad signature", "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x58\x0A\x21\x00\x00\x00"),
    B("bad signature, early", "\x0D\x0A\x0D\x0B"),
    B("v2 version 1", SIG "\x11\x00\x00\x00"),
    B("v2 version 3", SIG "\x31\x00\x00\x00"),
    B("v2 version 1, early", SIG "\x11"),
    B("v2 command 2", SIG "\x22\x00\x00\x00"),
    B("v2 command F", SIG "\x2f\x11\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"),
    B("v2 family 0x13", SIG "\x21\x13\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"),
    B("v2 family 0x01, early", SIG "\x21\x01"),
    B("v2 ipv4 block truncated", SIG "\x21\x11\x00\x08" "\x01\x02\x03\x04\x05\x06\x07\x08"),
    B("v2 ipv4 length 0", SIG "\x21\x11\x00\x00"),
    B("v2 ipv6 with ipv4 length", SIG "\x21\x21\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"),
    B("v2 unix block truncated", SIG "\x21\x31\x00\x24"),
    B("v2 oversize length", SIG "\x21\x11\x02\x09"),   /* 16 + 521 = 537 */
    B("v2 oversize length 0xffff", SIG "\x21\x11\xff\xff"),
    /* After the addresses, TLVs must tile the rest of the header exactly. */
    B("v2 tlv longer than the header", SIG "\x21\x11\x00\x12" "\x01\x02\x03\x04\x05\x06\x07\x08"
      "\x00\x01\x00\x02" "\x04\x00\x04" "abc"),
    B("v2 tlv length 0xffff", SIG "\x21\x11\x00\x11" "\x01\x02\x03\x04\x05\x06\x07\x08"
      "\x00\x01\x00\x02" "\x04\xff\xff" "ab"),
    B("v2 tlv header cut", SIG "\x21\x11\x00\x0e" "\x01\x02\x03\x04\x05\x06\x07\x08"
      "\x00\x01\x00\x02" "\x04\x00"),
    B("v2 one stray byte after tlvs", SIG "\x21\x21\x00\x29"
      "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
      "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"
      "\x01\xbb" "\xff\xff" "\x04\x00\x01" "a" "\x04"),
};

static void test_bad(void)
{
    struct proxy_proto_info info;

    for (size_t t = 0; t < sizeof(bad) / sizeof(bad[0]); t++) {
        int r = parse(bad[t].p, bad[t].n, &info);
        if (r != PROXY_PROTO_BAD)
            fprintf(stderr, "  bad input \"%s\" gave %d\n", bad[t].name, r);
        CHECK_EQ_INT(r, PROXY_PROTO_BAD);
    }

    /* Refused as soon as it can no longer become a header. */
    CHECK_EQ_INT(parse_s("G", &info), PROXY_PROTO_BAD);
    CHECK_EQ_INT(parse_s("PROXX", &info), PROXY_PROTO_BAD);
    CHECK_EQ_INT(parse_s("PROXY TCP4 1.2.3.4 ", &info), PROXY_PROTO_NEED_MORE);
    CHECK_EQ_INT(parse_s("PROXY TCP4 1.2.3.4 :", &info), PROXY_PROTO_BAD);
    CHECK_EQ_INT(parse_s("PROXY TCP4 1.2.3.4 5.6.7.8 6553", &info), PROXY_PROTO_NEED_MORE);
    CHECK_EQ_INT(parse_s("PROXY TCP4 1.2.3.4 5.6.7.8 65536", &info), PROXY_PROTO_BAD);
    CHECK_EQ_INT(parse_s("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", &info), PROXY_PROTO_NEED_MORE);

    /* The largest length we accept, and one more: the addresses, then one
     * NOOP TLV over the rest. */
    static uint8_t big[PROXY_PROTO_MAX + 1];
    memcpy(big, SIG "\x21\x11", 14);
    big[14] = (uint8_t)((PROXY_PROTO_MAX - 16) >> 8);
    big[15] = (uint8_t)(PROXY_PROTO_MAX - 16);
    big[28] = 0x04;
    big[29] = (uint8_t)((PROXY_PROTO_MAX - 16 - 12 - 3) >> 8);
    big[30] = (uint8_t)(PROXY_PROTO_MAX - 16 - 12 - 3);
    CHECK_EQ_INT(parse(big, 16, &info), PROXY_PROTO_NEED_MORE);
    CHECK_EQ_INT(parse(big, PROXY_PROTO_MAX - 1, &info), PROXY_PROTO_NEED_MORE);
    CHECK_EQ_INT(parse(big, PROXY_PROTO_MAX, &info), PROXY_PROTO_MAX);
    CHECK_EQ_INT(parse(big, sizeof(big), &info), PROXY_PROTO_MAX);
    big[15]++;
    CHECK_EQ_INT(parse(big, 16, &info), PROXY_PROTO_BAD);
    CHECK_EQ_INT(parse(big, sizeof(big), &info), PROXY_PROTO_BAD);

    /* A TLV that runs past the header is refused as soon as its length is
     * seen, not after the rest of the header arrived. */
    static const char tlv_long[] = SIG "\x21\x11\x00\x20" "\x01\x02\x03\x04\x05\x06\x07\x08"
        "\x00\x01\x00\x02" "\x04\x00\x12";
    CHECK_EQ_INT(parse(tlv_long, 30, &info), PROXY_PROTO_NEED_MORE);
    CHECK_EQ_INT(parse(tlv_long, 31, &info), PROXY_PROTO_BAD);

    /* 107 bytes with no CRLF in them: too long, whatever follows. */
    static uint8_t line[200];
    memset(line, 'a', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    CHECK_EQ_INT(parse(line, 106, &info), PROXY_PROTO_NEED_MORE);
    CHECK_EQ_INT(parse(line, 107, &info), PROXY_PROTO_BAD);
    CHECK_EQ_INT(parse(line, sizeof(line), &info), PROXY_PROTO_BAD);
    line[105] = '\r';
    line[106] = '\n';
    CHECK_EQ_INT(parse(line, sizeof(line), &info), 107);
}

/* PP2_TYPE_CRC32C (proxy-protocol.txt 2.2.5): the checksum of the whole
 * header with its own 4 bytes read as zeroes. A match is noted; a mismatch,
 * or a CRC32C TLV that is not 4 bytes or comes twice, makes the header BAD,
 * and the connection is closed (as HAProxy does). */
static void test_crc32c(void)
{
    static const char tcp4[] = SIG "\x21\x11\x00\x13" V2_TCP4_CRC_BODY;
    static const char tcp6[] = SIG "\x21\x21\x00\x39" V2_TCP6_CRC_BODY;
    static const char plain[] = SIG "\x21\x11\x00\x0c" "\x01\x02\x03\x04\x05\x06\x07\x08"
        "\x00\x01\x00\x02";
    struct proxy_proto_info info;
    uint8_t h[sizeof(tcp6)];
    char b[ADDR_TEXT_MAX];
    int refused;

    CHECK_EQ_INT(parse(tcp4, sizeof(tcp4) - 1, &info), 35);
    CHECK_EQ_INT(info.crc32c, 1);
    CHECK_EQ_INT(info.local, 0);
    CHECK_EQ_STR(fmt(&info.src, b), "1.2.3.4:1");
    CHECK_EQ_INT(parse(tcp6, sizeof(tcp6) - 1, &info), 73);
    CHECK_EQ_INT(info.crc32c, 1);
    CHECK_EQ_STR(fmt(&info.dst, b), "[2001:db8::2]:65535");
    CHECK_EQ_INT(parse(plain, sizeof(plain) - 1, &info), 28);
    CHECK_EQ_INT(info.crc32c, 0);

    /* One bit changed anywhere in the header, the checksum included: never
     * believed (BAD; or, where the length grew, still incomplete). */
    refused = 0;
    int tries = 0;
    for (size_t i = 0; i < sizeof(tcp4) - 1; i++) {
        if (i >= 28 && i < V2_TCP4_CRC_AT)
            continue;              /* the TLV's type and length: other checks */
        for (int bit = 0; bit < 8; bit++) {
            if (i == 12 && bit == 0)
                continue;          /* PROXY turned LOCAL: its block is not read */
            memcpy(h, tcp4, sizeof(tcp4) - 1);
            h[i] ^= (uint8_t)(1u << bit);
            tries++;
            if (parse(h, sizeof(tcp4) - 1, &info) <= 0)
                refused++;
            else
                fprintf(stderr, "  crc32c: byte %zu bit %d changed, still accepted\n", i, bit);
        }
    }
    CHECK_EQ_INT(refused, tries);

    /* ... and in the tcp6 header's other TLVs, which the sum covers too. */
    refused = 0;
    tries = 0;
    for (size_t i = 52; i < sizeof(tcp6) - 1; i++) {
        memcpy(h, tcp6, sizeof(tcp6) - 1);
        h[i] ^= 0x20;
        if (i == 52 || i == 60 || i == 67)
            continue;              /* a TLV type: may turn into another TLV */
        tries++;
        if (parse(h, sizeof(tcp6) - 1, &info) == PROXY_PROTO_BAD)
            refused++;
    }
    CHECK_EQ_INT(refused, tries);

    /* The value written little-endian is not the value. */
    memcpy(h, tcp4, sizeof(tcp4) - 1);
    h[V2_TCP4_CRC_AT] = 0x1e;
    h[V2_TCP4_CRC_AT + 1] = 0x0e;
    h[V2_TCP4_CRC_AT + 2] = 0xa6;
    h[V2_TCP4_CRC_AT + 3] = 0x65;
    CHECK_EQ_INT(parse(h, sizeof(tcp4) - 1, &info), PROXY_PROTO_BAD);
    /* All zeroes (a sender that forgot to fill it in): refused. */
    memset(h + V2_TCP4_CRC_AT, 0, 4);
    CHECK_EQ_INT(parse(h, sizeof(tcp4) - 1, &info), PROXY_PROTO_BAD);

    /* A wrong checksum is only known once the header is whole: before
     * that, more is wanted; then BAD, whatever follows. */
    memcpy(h, tcp4, sizeof(tcp4) - 1);
    h[V2_TCP4_CRC_AT + 3] ^= 1;
    for (size_t k = 0; k < sizeof(tcp4) - 1; k++)
        CHECK_EQ_INT(parse(h, k, &info), PROXY_PROTO_NEED_MORE);
    CHECK_EQ_INT(parse(h, sizeof(tcp4) - 1, &info), PROXY_PROTO_BAD);
    memcpy(h + sizeof(tcp4) - 1, "GET /", 5);
    CHECK_EQ_INT(parse(h, sizeof(tcp4) - 1 + 5, &info), PROXY_PROTO_BAD);

    /* The TLV must be exactly 4 bytes (HAProxy refuses other lengths),
     * which is known as soon as its length is seen. */
    static const char crc3[] = SIG "\x21\x11\x00\x12" "\x01\x02\x03\x04\x05\x06\x07\x08"
        "\x00\x01\x00\x02" "\x03\x00\x03" "\x65\xa6\x0e";
    static const char crc5[] = SIG "\x21\x11\x00\x14" "\x01\x02\x03\x04\x05\x06\x07\x08"
        "\x00\x01\x00\x02" "\x03\x00\x05" "\x65\xa6\x0e\x1e\x00";
    CHECK_EQ_INT(parse(crc3, sizeof(crc3) - 1, &info), PROXY_PROTO_BAD);
    CHECK_EQ_INT(parse(crc3, 31, &info), PROXY_PROTO_BAD);
    CHECK_EQ_INT(parse(crc3, 30, &info), PROXY_PROTO_NEED_MORE);
    CHECK_EQ_INT(parse(crc5, sizeof(crc5) - 1, &info), PROXY_PROTO_BAD);

    /* A second checksum TLV: one header has one checksum. */
    static const char crc_twice[] = SIG "\x21\x11\x00\x1a" V2_TCP4_CRC_BODY
        "\x03\x00\x04" "\x65\xa6\x0e\x1e";
    CHECK_EQ_INT(parse(crc_twice, sizeof(crc_twice) - 1, &info), PROXY_PROTO_BAD);
    CHECK_EQ_INT(parse(crc_twice, 38, &info), PROXY_PROTO_BAD);

    /* LOCAL (the proxy's own health check) discards its block unread, as
     * HAProxy does: nothing in it is believed, so a checksum there is not
     * checked, and the real peer is kept. */
    memcpy(h, tcp4, sizeof(tcp4) - 1);
    h[12] = 0x20;
    h[V2_TCP4_CRC_AT] ^= 0xff;
    CHECK_EQ_INT(parse(h, sizeof(tcp4) - 1, &info), 35);
    CHECK_EQ_INT(info.local, 1);
    CHECK_EQ_INT(info.crc32c, 0);
}

int main(void)
{
    test_round_trips();
    test_write_text();
    test_prefixes();
    test_fields();
    test_local();
    test_bad();
    test_crc32c();
    TEST_END();
}
