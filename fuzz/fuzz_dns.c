/* DNS queries (proto/dns), as the GSLB responder reads them from the
 * network, then the answer written for them. Invariants: no crash, nothing
 * read past the packet; an answer never exceeds what the client can take
 * (512 bytes, or its EDNS size up to 1232), echoes the query's id, and
 * holds the question exactly as it was asked. */
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

    if (rc < 0)
        return 0;
    for (int i = 0; i < 40; i++) {
        answers[i].type = i % 3 ? DNS_TYPE_A : DNS_TYPE_AAAA;
        memset(answers[i].addr, i, 16);
    }
    n = dns_write_response(data, &q, rc, rc == DNS_NOERROR, answers, size % 41, 30,
                           q.ecs ? q.ecs_source : 0, out, sizeof(out));
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
