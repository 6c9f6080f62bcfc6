/* DNS queries (proto/dns), as the GSLB responder reads them from the
 * network, then the answer written for them. Invariants: no crash, nothing
 * read past the packet; an answer never exceeds what the client can take
 * (512 bytes, or its EDNS size up to 1232), echoes the query's id, and
 * holds the question exactly as it was asked; likewise with a zone's SOA
 * and NS records added. The same bytes also go, as a resolver's reply, to
 * dns_answer_min_ttl (discovery's respect_ttl): -1 or a TTL below 2^31;
 * and when the bytes cut by one already hold a whole answer section, the
 * last byte changes nothing (bytes after the answers are not read). */
#include <string.h>

#include "fuzz.h"
#include "proto/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dns_query q;
    struct dns_answer answers[40];
    uint8_t out[DNS_UDP_MAX];
    int rc = dns_parse_query(data, size, &q);
    size_t n, limit;
    int64_t ttl = dns_answer_min_ttl(data, size, DNS_TYPE_SRV);

    FUZZ_CHECK(ttl >= -1 && ttl < 0x80000000LL);
    if (size) {
        int64_t cut = dns_answer_min_ttl(data, size - 1, DNS_TYPE_SRV);
        FUZZ_CHECK(cut < 0 || cut == ttl);
    }
    if (rc < 0)
        return 0;
    for (int i = 0; i < 40; i++) {
        answers[i].type = i % 3 ? DNS_TYPE_A : DNS_TYPE_AAAA;
        memset(answers[i].addr, i, 16);
    }
    /* Every other input also gets a zone's SOA and NS records (the longest
     * names a config may hold), which must fit as the addresses do. */
    static const char long_name[] =
        "a23456789012345678901234567890123456789012345678901234567890123."
        "b23456789012345678901234567890123456789012345678901234567890123."
        "c23456789012345678901234567890123456789012345678901234567890123."
        "d234567890123456789012345678901234567890123456789012345678901";
    static const char *const ns[] = { long_name, "ns2.example.com", long_name, "ns4.example.com",
                                      long_name, "ns6.example.com", long_name, "ns8.example.com" };
    struct dns_soa soa = { long_name, long_name, "hostmaster.example.com", 1, 2, 3, 4, 5 };
    struct dns_extra x = { &soa, size & 2, ns, size % 9, size & 4, 30 };

    n = dns_write_response_ex(data, &q, rc, rc == DNS_NOERROR, answers, size % 41, 30,
                              q.ecs ? q.ecs_source : 0, size & 1 ? &x : NULL, out, sizeof(out));
    limit = q.edns ? (q.udp_size < DNS_UDP_MAX ? q.udp_size : DNS_UDP_MAX) : DNS_UDP_MIN;
    FUZZ_CHECK(n >= DNS_HEADER_LEN && n <= limit);
    FUZZ_CHECK(out[0] == data[0] && out[1] == data[1]);
    FUZZ_CHECK(out[2] & 0x80);
    if (rc == DNS_NOERROR) {
        FUZZ_CHECK(q.question_end <= size);
        FUZZ_CHECK(memcmp(out + DNS_HEADER_LEN, data + DNS_HEADER_LEN,
                          q.question_end - DNS_HEADER_LEN) == 0);
        FUZZ_CHECK(strlen(q.name) < sizeof(q.name));
    }
    return 0;
}
