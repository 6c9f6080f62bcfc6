/* proto/dns: queries parsed strictly, answers written within the client's
 * size. */
#include <stdlib.h>
#include <string.h>

#include "proto/dns.h"
#include "test.h"

/* A query for name/type: header, question, and an OPT record when
 * udp_size > 0 (with one option of opt_len bytes). Returns its length. */
static size_t query(uint8_t *p, uint16_t id, uint16_t flags, const char *name, uint16_t type,
                    uint16_t udp_size, uint16_t opt_len)
{
    size_t at = 12;

    memset(p, 0, 12);
    p[0] = (uint8_t)(id >> 8);
    p[1] = (uint8_t)id;
    p[2] = (uint8_t)(flags >> 8);
    p[3] = (uint8_t)flags;
    p[5] = 1;
    p[11] = udp_size ? 1 : 0;
    at += dns_put_name(p + at, name);
    p[at++] = (uint8_t)(type >> 8);
    p[at++] = (uint8_t)type;
    p[at++] = 0;
    p[at++] = 1;
    if (udp_size) {
        p[at++] = 0;
        p[at++] = 0;
        p[at++] = 41;
        p[at++] = (uint8_t)(udp_size >> 8);
        p[at++] = (uint8_t)udp_size;
        memset(p + at, 0, 4);
        at += 4;
        p[at++] = (uint8_t)((opt_len ? opt_len + 4 : 0) >> 8);
        p[at++] = (uint8_t)(opt_len ? opt_len + 4 : 0);
        if (opt_len) {
            p[at++] = 0;
            p[at++] = 10;            /* COOKIE */
            p[at++] = (uint8_t)(opt_len >> 8);
            p[at++] = (uint8_t)opt_len;
            memset(p + at, 0xab, opt_len);
            at += opt_len;
        }
    }
    return at;
}

/* Append an EDNS option to a query whose OPT record is last; the OPT's
 * RDLENGTH is at rd_at. */
static size_t rd_at;
static size_t add_option(uint8_t *p, size_t n, uint16_t code, const uint8_t *data, uint16_t len)
{
    uint16_t rd = (uint16_t)(p[rd_at] << 8 | p[rd_at + 1]);

    rd = (uint16_t)(rd + 4 + len);
    p[rd_at] = (uint8_t)(rd >> 8);
    p[rd_at + 1] = (uint8_t)rd;
    p[n++] = (uint8_t)(code >> 8);
    p[n++] = (uint8_t)code;
    p[n++] = (uint8_t)(len >> 8);
    p[n++] = (uint8_t)len;
    memcpy(p + n, data, len);
    return n + len;
}

static uint16_t g16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* One answer record: owner a pointer to the question (0xc00c), type,
 * class IN, ttl, rdlen bytes of rdata (zeros). */
static size_t rr(uint8_t *p, size_t n, uint16_t type, uint32_t ttl, uint16_t rdlen)
{
    static const uint8_t ptr[2] = {0xc0, 0x0c};

    memcpy(p + n, ptr, 2);
    n += 2;
    p[n++] = (uint8_t)(type >> 8);
    p[n++] = (uint8_t)type;
    p[n++] = 0;
    p[n++] = 1;
    for (int s = 24; s >= 0; s -= 8)
        p[n++] = (uint8_t)(ttl >> s);
    p[n++] = (uint8_t)(rdlen >> 8);
    p[n++] = (uint8_t)rdlen;
    memset(p + n, 0, rdlen);
    return n + rdlen;
}

/* A resolver's reply, as discovery reads it for the TTL to follow. */
static void test_answer_ttl(void)
{
    uint8_t p[512];
    size_t n = query(p, 7, 0x8180, "_http._tcp.example.com", DNS_TYPE_SRV, 0, 0);

    p[7] = 4;                                   /* ANCOUNT */
    n = rr(p, n, DNS_TYPE_SRV, 300, 20);
    n = rr(p, n, DNS_TYPE_SRV, 30, 20);
    n = rr(p, n, DNS_TYPE_A, 5, 4);             /* another type: not counted for SRV */
    n = rr(p, n, DNS_TYPE_SRV, 0x80000001u, 20);   /* top bit set: counts as 0 */
    CHECK_EQ_INT(dns_answer_min_ttl(p, n, DNS_TYPE_SRV), 0);
    CHECK_EQ_INT(dns_answer_min_ttl(p, n, DNS_TYPE_A), 5);
    CHECK_EQ_INT(dns_answer_min_ttl(p, n, DNS_TYPE_AAAA), -1);
    p[7] = 2;                                   /* only the first two */
    CHECK_EQ_INT(dns_answer_min_ttl(p, n, DNS_TYPE_SRV), 30);
    p[7] = 4;
    /* Cut anywhere inside the records: malformed, never read past. */
    for (size_t cut = 12; cut < n; cut++) {
        uint8_t *c = malloc(cut);
        memcpy(c, p, cut);
        CHECK_EQ_INT(dns_answer_min_ttl(c, cut, DNS_TYPE_SRV), -1);
        free(c);
    }
    p[2] &= 0x7f;                               /* a query, not a reply */
    CHECK_EQ_INT(dns_answer_min_ttl(p, n, DNS_TYPE_SRV), -1);
}

/* An EDNS version sluice does not speak (RFC 6891 6.1.3): BADVERS, whose
 * upper bits travel in the answer's OPT record, and no answer records. */
static void test_edns_badvers(void)
{
    uint8_t p[512], out[DNS_UDP_MAX];
    struct dns_query q;
    struct dns_answer a = {DNS_TYPE_A, {192, 0, 2, 1}};
    size_t n = query(p, 0x4242, 0x0100, "www.example.com", DNS_TYPE_A, 1232, 0), m;
    size_t opt = n - 11;                        /* the OPT record, last */

    p[opt + 6] = 1;                             /* VERSION 1 */
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_BADVERS);
    CHECK(q.edns);
    m = dns_write_response(p, &q, DNS_BADVERS, false, &a, 1, 30, 0, out, sizeof(out));
    CHECK_EQ_INT(g16(out), 0x4242);
    CHECK_EQ_INT(out[3] & 0xf, 0);              /* 16 = 1 << 4 | 0 */
    CHECK_EQ_INT(g16(out + 6), 0);              /* no answers */
    CHECK_EQ_INT(g16(out + 10), 1);             /* the OPT record */
    CHECK_EQ_INT(out[m - 11 + 5], 1);           /* extended RCODE: BADVERS >> 4 */
    CHECK_EQ_INT(out[m - 11 + 6], 0);           /* our VERSION */
    p[opt + 6] = 0;
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_NOERROR);
    m = dns_write_response(p, &q, DNS_NOERROR, true, &a, 1, 30, 0, out, sizeof(out));
    CHECK_EQ_INT(out[m - 11 + 5], 0);
}

int main(void)
{
    uint8_t p[2048], out[DNS_UDP_MAX];
    struct dns_query q;
    size_t n;

    test_answer_ttl();
    test_edns_badvers();

    /* A plain query, case folded. */
    n = query(p, 0x1234, 0x0100, "WWW.Example.COM", DNS_TYPE_A, 0, 0);
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_NOERROR);
    CHECK_EQ_STR(q.name, "www.example.com");
    CHECK(q.name_plain);
    CHECK_EQ_INT(q.qtype, DNS_TYPE_A);
    CHECK_EQ_INT(q.question_end, n);
    CHECK(!q.edns);
    CHECK_EQ_INT(q.udp_size, 512);
    {
        struct dns_answer a[2] = {{DNS_TYPE_A, {192, 0, 2, 1}}, {DNS_TYPE_A, {192, 0, 2, 2}}};
        size_t m = dns_write_response(p, &q, DNS_NOERROR, true, a, 2, 30, 0, out, sizeof(out));
        CHECK_EQ_INT(m, n + 2 * 16);
        CHECK_EQ_INT(g16(out), 0x1234);
        CHECK_EQ_INT(g16(out + 2), 0x8000 | 0x0400 | 0x0100);   /* QR AA RD, NOERROR */
        CHECK_EQ_INT(g16(out + 4), 1);
        CHECK_EQ_INT(g16(out + 6), 2);
        CHECK_EQ_INT(g16(out + 10), 0);
        CHECK(memcmp(out + 12, p + 12, n - 12) == 0);          /* the question as asked */
        CHECK_EQ_INT(g16(out + n), 0xc00c);
        CHECK_EQ_INT(g16(out + n + 2), DNS_TYPE_A);
        CHECK_EQ_INT(g16(out + n + 8), 30);
        CHECK(memcmp(out + n + 12, "\xc0\x00\x02\x01", 4) == 0);
    }

    /* EDNS with a cookie option: read past; the answer has our OPT. */
    n = query(p, 7, 0, "a.b", DNS_TYPE_AAAA, 4096, 8);
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_NOERROR);
    CHECK(q.edns);
    CHECK_EQ_INT(q.udp_size, 4096);
    {
        struct dns_answer a[64];
        size_t m;
        for (int i = 0; i < 64; i++) {
            a[i].type = DNS_TYPE_AAAA;
            memset(a[i].addr, i, 16);
        }
        /* 64 AAAA answers do not fit in 1232 bytes: a subset, and the OPT. */
        m = dns_write_response(p, &q, DNS_NOERROR, true, a, 64, 5, 0, out, sizeof(out));
        CHECK(m <= DNS_UDP_MAX);
        CHECK(g16(out + 6) > 30 && g16(out + 6) < 64);
        CHECK_EQ_INT(g16(out + 10), 1);
        CHECK_EQ_INT(out[m - 11], 0);
        CHECK_EQ_INT(g16(out + m - 10), DNS_TYPE_OPT);
        /* Without EDNS the limit is 512 bytes. */
        n = query(p, 7, 0, "a.b", DNS_TYPE_AAAA, 0, 0);
        CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_NOERROR);
        m = dns_write_response(p, &q, DNS_NOERROR, true, a, 64, 5, 0, out, sizeof(out));
        CHECK(m <= 512 && m > 400);
        /* Over TCP the answer may fill the buffer: all 64 go. */
        q.tcp = true;
        uint8_t big[4096];
        m = dns_write_response(p, &q, DNS_NOERROR, true, a, 64, 5, 0, big, sizeof(big));
        CHECK_EQ_INT(g16(big + 6), 64);
        CHECK_EQ_INT(m, q.question_end + 64 * 28);
    }

    /* EDNS Client Subnet: read, and echoed with the scope given. */
    n = query(p, 9, 0, "a.b", DNS_TYPE_A, 1232, 0);
    rd_at = n - 2;
    n = add_option(p, n, 8, (const uint8_t *)"\x00\x01\x18\x00\x0a\x01\x02", 7);
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_NOERROR);
    CHECK(q.ecs && q.ecs_family == 1 && q.ecs_source == 24);
    CHECK(memcmp(q.ecs_addr, "\x0a\x01\x02\x00", 4) == 0);
    {
        struct dns_answer a[1] = {{DNS_TYPE_A, {192, 0, 2, 1}}};
        size_t m = dns_write_response(p, &q, DNS_NOERROR, true, a, 1, 30, 24, out, sizeof(out));
        /* ... OPT: name, type, size, ttl (4), rdlen 11, then code 8, len 7,
         * family 1, source 24, scope 24, 10.1.2 */
        CHECK_EQ_INT(m, q.question_end + 16 + 11 + 11);
        CHECK(memcmp(out + m - 13, "\x00\x0b\x00\x08\x00\x07\x00\x01\x18\x18\x0a\x01\x02", 13) == 0);
    }
    /* A cookie and a subnet of 0 bits (the client asks not to be located). */
    n = query(p, 9, 0, "a.b", DNS_TYPE_A, 1232, 0);
    rd_at = n - 2;
    n = add_option(p, n, 10, (const uint8_t *)"\xab\xab\xab\xab\xab\xab\xab\xab", 8);
    n = add_option(p, n, 8, (const uint8_t *)"\x00\x02\x00\x00", 4);
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_NOERROR);
    CHECK(q.ecs && q.ecs_family == 2 && q.ecs_source == 0);
    /* Refused subnets: bits past the prefix, a scope in a query, the wrong
     * number of address bytes, an unknown family, a prefix too long, twice. */
    {
        static const struct {
            const char *opt;
            uint16_t len;
        } bad[] = {
            {"\x00\x01\x17\x00\x0a\x01\x03", 7},
            {"\x00\x01\x18\x08\x0a\x01\x02", 7},
            {"\x00\x01\x18\x00\x0a\x01", 6},
            {"\x00\x01\x18\x00\x0a\x01\x02\x00", 8},
            {"\x00\x03\x08\x00\x0a", 5},
            {"\x00\x01\x21\x00\x0a\x01\x02\x03\x04", 9},
            {"\x00\x01\x00", 3},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            n = query(p, 9, 0, "a.b", DNS_TYPE_A, 1232, 0);
        rd_at = n - 2;
            rd_at = n - 2;
    rd_at = n - 2;
            n = add_option(p, n, 8, (const uint8_t *)bad[i].opt, bad[i].len);
            CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_FORMERR);
            CHECK(!q.ecs);
        }
        n = query(p, 9, 0, "a.b", DNS_TYPE_A, 1232, 0);
        rd_at = n - 2;
    rd_at = n - 2;
        n = add_option(p, n, 8, (const uint8_t *)"\x00\x01\x08\x00\x0a", 5);
        n = add_option(p, n, 8, (const uint8_t *)"\x00\x01\x08\x00\x0a", 5);
        CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_FORMERR);
        n = query(p, 9, 0, "a.b", DNS_TYPE_A, 1232, 0);
        rd_at = n - 2;
    rd_at = n - 2;
        n = add_option(p, n, 8, (const uint8_t *)"\x00\x01\x08\x00\x0a", 5);
        p[n - 6] = 9;                               /* option longer than its record */
        CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_FORMERR);
    }

    /* What is refused. */
    n = query(p, 1, 0x8000, "a.b", DNS_TYPE_A, 0, 0);
    CHECK_EQ_INT(dns_parse_query(p, n, &q), -1);                /* a response */
    CHECK_EQ_INT(dns_parse_query(p, 11, &q), -1);               /* no header */
    n = query(p, 1, 0x2800, "a.b", DNS_TYPE_A, 0, 0);           /* opcode UPDATE */
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_NOTIMP);
    {
        size_t m = dns_write_response(p, &q, DNS_NOTIMP, false, NULL, 0, 0, 0, out, sizeof(out));
        CHECK_EQ_INT(m, 12);
        CHECK_EQ_INT(g16(out + 2) & 0xf, DNS_NOTIMP);
        CHECK_EQ_INT(g16(out + 4), 0);
    }
    n = query(p, 1, 0, "a.b", DNS_TYPE_A, 0, 0);
    p[5] = 2;                                                   /* two questions */
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_FORMERR);
    p[5] = 1;
    p[7] = 1;                                                   /* an answer in a query */
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_FORMERR);
    p[7] = 0;
    CHECK_EQ_INT(dns_parse_query(p, n - 1, &q), DNS_FORMERR);   /* cut short */
    p[n] = 0;
    CHECK_EQ_INT(dns_parse_query(p, n + 1, &q), DNS_FORMERR);   /* a byte too many */
    p[12] = 0xc0;                                               /* a pointer in the question */
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_FORMERR);
    p[12] = 0x40;                                               /* a reserved label type */
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_FORMERR);
    p[12] = 60;                                                 /* a label past the end */
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_FORMERR);
    n = query(p, 1, 0, "a\x01.b", DNS_TYPE_A, 0, 0);
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_NOERROR);
    CHECK(!q.name_plain);                                       /* names nothing of ours */
    n = query(p, 1, 0, "a.b", DNS_TYPE_A, 1232, 0);
    p[n - 9] = 1;                                               /* OPT → another type */
    CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_FORMERR);
    {
        /* A name of 256 wire bytes. */
        char long_name[300];
        size_t k = 0;
        for (int i = 0; i < 4; i++) {
            memset(long_name + k, 'x', 63);
            k += 63;
            long_name[k++] = '.';
        }
        memcpy(long_name + k, "abc", 4);
        n = query(p, 1, 0, long_name, DNS_TYPE_A, 0, 0);
        CHECK_EQ_INT(dns_parse_query(p, n, &q), DNS_FORMERR);
    }

    /* Names a config may give. */
    CHECK(dns_name_valid("www.example.com"));
    CHECK(dns_name_valid("A-b_c.d"));
    CHECK(!dns_name_valid(""));
    CHECK(!dns_name_valid("a..b"));
    CHECK(!dns_name_valid("a.b."));
    CHECK(!dns_name_valid("a b.c"));
    {
        char l64[80];
        memset(l64, 'a', 64);
        l64[64] = '\0';
        CHECK(!dns_name_valid(l64));
        l64[63] = '\0';
        CHECK(dns_name_valid(l64));
    }
    TEST_END();
}
