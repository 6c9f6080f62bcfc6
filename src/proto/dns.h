/* DNS messages over UDP (RFC 1035, EDNS(0) from RFC 6891), as the GSLB
 * responder (src/gslb/) needs them: read one query, write its answer.
 *
 * Strict where a lenient reader could be tricked: exactly one question, no
 * compression pointers in it (a query has nothing to point back to), no
 * answer or authority records, at most one additional record and that one
 * OPT, every length checked against the packet, nothing read past it.
 * Parsing allocates nothing. Thread safety: none needed. */
#ifndef SLUICE_PROTO_DNS_H
#define SLUICE_PROTO_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_HEADER_LEN 12
#define DNS_NAME_MAX 255            /* wire form; the text form is shorter */
#define DNS_UDP_MIN 512             /* what every client takes */
#define DNS_UDP_MAX 1232            /* what sluice answers with EDNS (DNS flag day 2020) */

enum dns_type {
    DNS_TYPE_A = 1,
    DNS_TYPE_NS = 2,
    DNS_TYPE_SOA = 6,
    DNS_TYPE_AAAA = 28,
    DNS_TYPE_SRV = 33,
    DNS_TYPE_OPT = 41,
    DNS_TYPE_ANY = 255,
};

enum dns_rcode {
    DNS_NOERROR = 0,
    DNS_FORMERR = 1,
    DNS_SERVFAIL = 2,
    DNS_NXDOMAIN = 3,
    DNS_NOTIMP = 4,
    DNS_REFUSED = 5,
    DNS_BADVERS = 16,               /* EDNS: its upper 8 bits go in the OPT record */
};

/* One query. Owner: the caller (on its stack). */
struct dns_query {
    uint16_t id;
    uint16_t flags;                 /* as received */
    char name[DNS_NAME_MAX + 1];    /* lower case, dotted, no final dot; "" = the root */
    bool name_plain;                /* every label is letters, digits, '-' or '_' */
    uint16_t qtype, qclass;
    uint32_t question_end;          /* offset after the question */
    bool edns;                      /* an OPT record came */
    uint16_t udp_size;              /* the client's EDNS payload size (>= 512), else 512 */
    /* EDNS Client Subnet (RFC 7871): the network a resolver asks for */
    bool ecs;
    uint8_t ecs_family;             /* 1: IPv4, 2: IPv6 */
    uint8_t ecs_source;             /* source prefix length */
    uint8_t ecs_addr[16];           /* the address, bits past the prefix zero */
    const char *error;              /* why parsing failed (static), for the log */
    bool tcp;                       /* set by the caller: over TCP, no size limit but cap */
};

/* Parse a query. Returns DNS_NOERROR, or the rcode to answer with
 * (DNS_FORMERR, DNS_NOTIMP: the header was readable, so an answer with the
 * same id can go back; DNS_BADVERS: an EDNS version other than 0, RFC 6891
 * 6.1.3), or -1: not worth an answer (shorter than a header, or a
 * response, which must never be answered: it would loop). */
int dns_parse_query(const uint8_t *p, size_t n, struct dns_query *q);

/* One address to answer with. */
struct dns_answer {
    uint16_t type;                  /* DNS_TYPE_A (4 bytes) or DNS_TYPE_AAAA (16) */
    uint8_t addr[16];
};

/* Write the response to q (parsed from the n bytes at p) into out: the
 * question as received, then as many of the answers as fit in the client's
 * size (a subset rather than a truncated answer: any of them will do), then
 * an OPT record if the query had one, with the client subnet option echoed
 * and ecs_scope as its scope prefix length when the query had one. With
 * rcode FORMERR or NOTIMP the question is left out, with BADVERS the
 * answers (an extended rcode needs the query's OPT record). aa: authoritative.
 * Returns the length (> 0). */
size_t dns_write_response(const uint8_t *p, const struct dns_query *q, int rcode, bool aa,
                          const struct dns_answer *answers, size_t nanswers, uint32_t ttl,
                          uint8_t ecs_scope, uint8_t *out, size_t cap);

/* A zone's own records (the GSLB responder with a `zone`): its SOA, for
 * the answer to an SOA query at the apex and for the authority section of
 * negative answers (RFC 2308), and its NS names. Names are valid host
 * names (dns_name_valid), written uncompressed. */
struct dns_soa {
    const char *zone, *mname, *rname;
    uint32_t serial, refresh, retry, expire, minimum;
};

struct dns_extra {
    const struct dns_soa *soa;
    bool answer_soa;                /* the SOA in the answer section (owner: the question) */
    const char *const *ns;          /* NS records in the answer section (owner: the question) */
    size_t nns;
    bool authority_soa;             /* the SOA in the authority section: a negative answer */
    uint32_t soa_ttl;               /* TTL of the SOA and NS records written */
};

/* dns_write_response, with the zone records in x (NULL: none) after the
 * addresses. Records that do not fit in the client's size are left out. */
size_t dns_write_response_ex(const uint8_t *p, const struct dns_query *q, int rcode, bool aa,
                             const struct dns_answer *answers, size_t nanswers, uint32_t ttl,
                             uint8_t ecs_scope, const struct dns_extra *x, uint8_t *out,
                             size_t cap);

/* text (a dns_name_valid name, or "" for the root) in wire form at out:
 * its labels, then the root. Returns the length written (at most 255). */
size_t dns_put_name(uint8_t *out, const char *text);

/* Is text a host name sluice can answer for ("www.example.com", any case,
 * no final dot, labels of 1..63 letters, digits, '-', '_')? */
bool dns_name_valid(const char *text);

/* A response's answer section (a resolver's reply, for discovery): the
 * smallest TTL among its records of type rtype, in seconds (a TTL with the
 * top bit set counts as 0, RFC 2181 section 8). -1 when the message is cut
 * short or malformed, or has no such record. Compressed names are stepped
 * over, never followed. */
int64_t dns_answer_min_ttl(const uint8_t *p, size_t n, uint16_t rtype);

#endif
