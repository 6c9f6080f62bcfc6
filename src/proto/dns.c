/* DNS queries in, answers out (see dns.h). */
#include <string.h>

#include "proto/dns.h"

#define DNS_QR 0x8000
#define DNS_AA 0x0400
#define DNS_TC 0x0200
#define DNS_RD 0x0100
#define DNS_OPCODE(f) (((f) >> 11) & 0xf)

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static bool label_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* The question's name: labels only, into q->name. Returns the offset after
 * it, or 0 when malformed. */
static size_t read_name(const uint8_t *p, size_t n, size_t at, struct dns_query *q)
{
    size_t out = 0, wire = 0;

    q->name_plain = true;
    for (;;) {
        uint8_t len;

        if (at >= n)
            return 0;
        len = p[at++];
        wire++;
        if (len == 0)
            break;
        if (len & 0xc0) {
            q->error = len >= 0xc0 ? "compression pointer in the question" : "bad label type";
            return 0;
        }
        if (at + len > n || wire + len > DNS_NAME_MAX) {
            q->error = "name runs past the packet or 255 bytes";
            return 0;
        }
        if (out)
            q->name[out++] = '.';
        for (uint8_t i = 0; i < len; i++) {
            uint8_t c = p[at + i];
            if (c >= 'A' && c <= 'Z')
                c = (uint8_t)(c + 32);
            if (!label_char(c))
                q->name_plain = false;   /* kept, but it names nothing of ours */
            q->name[out++] = (char)c;
        }
        at += len;
        wire += len;
    }
    q->name[out] = '\0';
    return at;
}

/* Skip a resource record's owner name (compression allowed there). */
static size_t skip_name(const uint8_t *p, size_t n, size_t at)
{
    for (int labels = 0; labels < 128; labels++) {
        uint8_t len;

        if (at >= n)
            return 0;
        len = p[at];
        if (len == 0)
            return at + 1;
        if ((len & 0xc0) == 0xc0)
            return at + 2 <= n ? at + 2 : 0;
        if (len & 0xc0)
            return 0;
        at += 1 + (size_t)len;
    }
    return 0;
}

/* The OPT record's options: only the client subnet is read, the others
 * (cookies, padding, ...) are stepped over. */
static int read_options(const uint8_t *p, size_t at, size_t end, struct dns_query *q)
{
    while (at < end) {
        uint16_t code, len;

        if (at + 4 > end || at + 4 + get16(p + at + 2) > end) {
            q->error = "EDNS option runs past its record";
            return DNS_FORMERR;
        }
        code = get16(p + at);
        len = get16(p + at + 2);
        at += 4;
        if (code == 8) {
            uint8_t family_bits, bytes;

            uint8_t source;

            if (q->ecs || len < 4) {
                q->error = "client subnet option repeated or too short";
                return DNS_FORMERR;
            }
            source = p[at + 2];
            family_bits = get16(p + at) == 1 ? 32 : get16(p + at) == 2 ? 128 : 0;
            bytes = (uint8_t)((source + 7) / 8);
            /* RFC 7871 7.1.1: a known family, a source within it, scope 0,
             * exactly the address bytes the source needs, no bits past it. */
            if (!family_bits || source > family_bits || p[at + 3] != 0 || len != 4 + bytes ||
                (bytes && (source % 8) && (p[at + 4 + bytes - 1] & (0xff >> (source % 8))))) {
                q->error = "bad client subnet option";
                return DNS_FORMERR;
            }
            q->ecs = true;
            q->ecs_family = (uint8_t)get16(p + at);
            q->ecs_source = source;
            memcpy(q->ecs_addr, p + at + 4, bytes);
        }
        at += len;
    }
    return DNS_NOERROR;
}

int dns_parse_query(const uint8_t *p, size_t n, struct dns_query *q)
{
    size_t at;
    uint16_t qd, an, ns, ar;

    memset(q, 0, sizeof(*q));
    q->udp_size = DNS_UDP_MIN;
    if (n < DNS_HEADER_LEN) {
        q->error = "shorter than a header";
        return -1;
    }
    q->id = get16(p);
    q->flags = get16(p + 2);
    if (q->flags & DNS_QR) {
        q->error = "a response, not a query";
        return -1;
    }
    if (DNS_OPCODE(q->flags) != 0) {
        q->error = "opcode other than QUERY";
        return DNS_NOTIMP;
    }
    qd = get16(p + 4);
    an = get16(p + 6);
    ns = get16(p + 8);
    ar = get16(p + 10);
    if (qd != 1 || an || ns || ar > 1) {
        q->error = "not one question and at most an OPT record";
        return DNS_FORMERR;
    }
    if (!(at = read_name(p, n, DNS_HEADER_LEN, q)) || at + 4 > n) {
        if (!q->error)
            q->error = "question cut short";
        return DNS_FORMERR;
    }
    q->qtype = get16(p + at);
    q->qclass = get16(p + at + 2);
    at += 4;
    q->question_end = (uint32_t)at;
    if (ar) {
        size_t rd;

        if (!(at = skip_name(p, n, at)) || at + 10 > n) {
            q->error = "additional record cut short";
            return DNS_FORMERR;
        }
        rd = get16(p + at + 8);
        if (at + 10 + rd > n) {
            q->error = "additional record cut short";
            return DNS_FORMERR;
        }
        if (get16(p + at) != DNS_TYPE_OPT) {
            q->error = "additional record other than OPT";
            return DNS_FORMERR;
        }
        q->edns = true;
        /* The class of an OPT record is the client's payload size;
         * options (cookies, client subnet) are read past. */
        q->udp_size = get16(p + at + 2);
        if (q->udp_size < DNS_UDP_MIN)
            q->udp_size = DNS_UDP_MIN;
        /* The TTL holds the extended rcode, then the VERSION: one we do
         * not speak is answered BADVERS, its options left unread (their
         * meaning is that version's). */
        if (p[at + 5] != 0) {
            q->error = "EDNS version other than 0";
            return DNS_BADVERS;
        }
        if (read_options(p, at + 10, at + 10 + rd, q) != DNS_NOERROR)
            return DNS_FORMERR;
        at += 10 + rd;
    }
    if (at != n) {
        q->error = "bytes after the last record";
        return DNS_FORMERR;
    }
    return DNS_NOERROR;
}

size_t dns_put_name(uint8_t *out, const char *text)
{
    size_t at = 0;

    while (*text) {
        const char *dot = strchr(text, '.');
        size_t len = dot ? (size_t)(dot - text) : strlen(text);
        out[at++] = (uint8_t)len;
        memcpy(out + at, text, len);
        at += len;
        text += len + (dot ? 1 : 0);
    }
    out[at++] = 0;
    return at;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* One record at out + at: owner (a pointer to the question, or the name
 * `owner` written out), type, class IN, ttl; rdata from the caller.
 * Returns the offset of rdlength's end (where rdata goes). */
static size_t put_rr_head(uint8_t *out, size_t at, const char *owner, uint16_t type, uint32_t ttl)
{
    if (owner) {
        at += dns_put_name(out + at, owner);
    } else {
        put16(out + at, 0xc000 | DNS_HEADER_LEN);
        at += 2;
    }
    put16(out + at, type);
    put16(out + at + 2, 1);
    put32(out + at + 4, ttl);
    return at + 10;
}

/* The wire length of a host name. */
static size_t name_len(const char *text)
{
    return *text ? strlen(text) + 2 : 1;
}

static size_t soa_len(const struct dns_soa *s, const char *owner)
{
    return (owner ? name_len(owner) : 2) + 10 + name_len(s->mname) + name_len(s->rname) + 20;
}

static size_t put_soa(uint8_t *out, size_t at, const struct dns_soa *s, const char *owner,
                      uint32_t ttl)
{
    size_t rd = put_rr_head(out, at, owner, DNS_TYPE_SOA, ttl), end = rd;

    end += dns_put_name(out + end, s->mname);
    end += dns_put_name(out + end, s->rname);
    put32(out + end, s->serial);
    put32(out + end + 4, s->refresh);
    put32(out + end + 8, s->retry);
    put32(out + end + 12, s->expire);
    put32(out + end + 16, s->minimum);
    end += 20;
    put16(out + rd - 2, (uint16_t)(end - rd));
    return end;
}

size_t dns_write_response(const uint8_t *p, const struct dns_query *q, int rcode, bool aa,
                          const struct dns_answer *answers, size_t nanswers, uint32_t ttl,
                          uint8_t ecs_scope, uint8_t *out, size_t cap)
{
    return dns_write_response_ex(p, q, rcode, aa, answers, nanswers, ttl, ecs_scope, NULL, out,
                                 cap);
}

size_t dns_write_response_ex(const uint8_t *p, const struct dns_query *q, int rcode, bool aa,
                             const struct dns_answer *answers, size_t nanswers, uint32_t ttl,
                             uint8_t ecs_scope, const struct dns_extra *x, uint8_t *out,
                             size_t cap)
{
    size_t limit = q->tcp ? cap
                          : q->edns ? (q->udp_size < DNS_UDP_MAX ? q->udp_size : DNS_UDP_MAX) : DNS_UDP_MIN;
    size_t ecs_len = q->ecs ? 8 + (size_t)(q->ecs_source + 7) / 8 : 0;
    size_t opt = q->edns ? 11 + ecs_len : 0, at = DNS_HEADER_LEN;
    bool with_question = rcode != DNS_FORMERR && rcode != DNS_NOTIMP && q->question_end;
    uint16_t count = 0;

    if (limit > cap)
        limit = cap;
    put16(out, q->id);
    put16(out + 2, (uint16_t)(DNS_QR | (q->flags & (0x7800 | DNS_RD)) | (aa ? DNS_AA : 0) |
                              (rcode & 0xf)));
    if (rcode == DNS_BADVERS) {
        nanswers = 0;               /* an error: the question alone */
        x = NULL;
    }
    put16(out + 4, with_question ? 1 : 0);
    put16(out + 6, 0);
    put16(out + 8, 0);
    put16(out + 10, 0);
    if (with_question && q->question_end - DNS_HEADER_LEN + opt + at <= limit) {
        memcpy(out + at, p + DNS_HEADER_LEN, q->question_end - DNS_HEADER_LEN);
        at = q->question_end;
    } else if (with_question) {
        put16(out + 4, 0);          /* cannot happen with names <= 255 bytes; be safe */
    }
    for (size_t i = 0; i < nanswers && with_question; i++) {
        size_t len = answers[i].type == DNS_TYPE_A ? 4 : 16;

        if (at + 12 + len + opt > limit)
            break;                  /* the rest do not fit: a subset */
        put16(out + at, 0xc000 | DNS_HEADER_LEN);   /* the name: the question's */
        put16(out + at + 2, answers[i].type);
        put16(out + at + 4, 1);                     /* IN */
        put16(out + at + 6, (uint16_t)(ttl >> 16));
        put16(out + at + 8, (uint16_t)ttl);
        put16(out + at + 10, (uint16_t)len);
        memcpy(out + at + 12, answers[i].addr, len);
        at += 12 + len;
        count++;
    }
    if (x && with_question) {
        if (x->answer_soa && at + soa_len(x->soa, NULL) + opt <= limit) {
            at = put_soa(out, at, x->soa, NULL, x->soa_ttl);
            count++;
        }
        for (size_t i = 0; i < x->nns && at + 12 + name_len(x->ns[i]) + opt <= limit; i++) {
            size_t rd = put_rr_head(out, at, NULL, DNS_TYPE_NS, x->soa_ttl);
            size_t n = dns_put_name(out + rd, x->ns[i]);
            put16(out + rd - 2, (uint16_t)n);
            at = rd + n;
            count++;
        }
        if (x->authority_soa && at + soa_len(x->soa, x->soa->zone) + opt <= limit) {
            at = put_soa(out, at, x->soa, x->soa->zone, x->soa_ttl);
            put16(out + 8, 1);
        }
    }
    put16(out + 6, count);
    if (q->edns && at + opt <= cap) {
        out[at] = 0;                                /* the root */
        put16(out + at + 1, DNS_TYPE_OPT);
        put16(out + at + 3, DNS_UDP_MAX);           /* our payload size */
        out[at + 5] = (uint8_t)(rcode >> 4);        /* extended rcode */
        out[at + 6] = 0;                            /* version 0 */
        put16(out + at + 7, 0);                     /* no DO */
        put16(out + at + 9, (uint16_t)ecs_len);
        if (q->ecs) {
            size_t bytes = ecs_len - 8;
            put16(out + at + 11, 8);
            put16(out + at + 13, (uint16_t)(ecs_len - 4));
            put16(out + at + 15, q->ecs_family);
            out[at + 17] = q->ecs_source;
            out[at + 18] = ecs_scope;
            memcpy(out + at + 19, q->ecs_addr, bytes);
        }
        at += opt;
        put16(out + 10, 1);
    }
    return at;
}

int64_t dns_answer_min_ttl(const uint8_t *p, size_t n, uint16_t rtype)
{
    size_t at = DNS_HEADER_LEN;
    uint16_t qd, an;
    int64_t best = -1;

    if (n < DNS_HEADER_LEN || !(get16(p + 2) & DNS_QR))
        return -1;
    qd = get16(p + 4);
    an = get16(p + 6);
    for (uint16_t i = 0; i < qd; i++) {
        if (!(at = skip_name(p, n, at)) || at + 4 > n)
            return -1;
        at += 4;
    }
    for (uint16_t i = 0; i < an; i++) {
        uint32_t ttl;
        size_t rd;

        if (!(at = skip_name(p, n, at)) || at + 10 > n)
            return -1;
        rd = get16(p + at + 8);
        if (at + 10 + rd > n)
            return -1;
        ttl = (uint32_t)get16(p + at + 4) << 16 | get16(p + at + 6);
        if (ttl & 0x80000000u)
            ttl = 0;
        if (get16(p + at) == rtype && (best < 0 || ttl < best))
            best = ttl;
        at += 10 + rd;
    }
    return best;
}

bool dns_name_valid(const char *text)
{
    size_t label = 0, total = 0;

    if (!*text)
        return false;
    for (const char *s = text; ; s++) {
        if (*s == '.' || *s == '\0') {
            if (label == 0 || label > 63)
                return false;
            total += label + 1;
            label = 0;
            if (*s == '\0')
                break;
            continue;
        }
        uint8_t c = (uint8_t)*s;
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c + 32);
        if (!label_char(c))
            return false;
        label++;
    }
    return total + 1 <= DNS_NAME_MAX;
}
