/* PROXY protocol v1/v2 reader and writer (HAProxy's proxy-protocol.txt).
 *
 * The reader is incremental in the sense the header promises: it answers
 * NEED_MORE only while the bytes seen so far can still be completed into a
 * valid header, and BAD as soon as they cannot. It never looks past len, never
 * past the first 107 bytes of a v1 line, and never past PROXY_PROTO_MAX. */
#include "net/proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/crc32c.h"

#define V1_MAX 107                 /* longest v1 line, CRLF included */
#define V2_HDR 16                  /* signature + ver_cmd + fam + len */

static const uint8_t v2_sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

/* Outcome of one parsing step. */
enum step { STEP_OK, STEP_NEED, STEP_BAD };

/* ---- v1 ---------------------------------------------------------------- */

struct cur {
    const uint8_t *p;
    size_t n;                      /* bytes available: min(len, V1_MAX) */
    size_t i;
};

static enum step lit(struct cur *c, const char *s)
{
    for (; *s; s++) {
        if (c->i >= c->n)
            return STEP_NEED;
        if (c->p[c->i] != (uint8_t)*s)
            return STEP_BAD;
        c->i++;
    }
    return STEP_OK;
}

enum v1_proto { P_TCP4, P_TCP6, P_UNKNOWN };

/* The protocol word, and the byte after it (' ', or '\r' for UNKNOWN). */
static enum step v1_proto(struct cur *c, enum v1_proto *proto)
{
    static const char *const names[] = { "TCP4", "TCP6", "UNKNOWN" };
    size_t start = c->i, k;

    while (c->i < c->n && c->p[c->i] != ' ' && c->p[c->i] != '\r') {
        if (c->i - start >= 7)
            return STEP_BAD;
        c->i++;
    }
    size_t wl = c->i - start;
    int complete = c->i < c->n;
    for (k = 0; k < 3; k++) {
        size_t nl = strlen(names[k]);
        if (complete ? wl == nl : wl <= nl) {
            if (memcmp(c->p + start, names[k], wl) == 0)
                break;
        }
    }
    if (k == 3)
        return STEP_BAD;
    if (!complete)
        return STEP_NEED;
    *proto = (enum v1_proto)k;
    if (c->p[c->i] == '\r' && *proto != P_UNKNOWN)
        return STEP_BAD;
    if (c->p[c->i] == ' ')
        c->i++;
    return STEP_OK;
}

/* Prefix check for dotted-quad IPv4 text as inet_pton accepts it: four parts
 * of 0..255, no heading zeroes. Returns 0 when s[0..n) can't start one. */
static int ipv4_prefix_ok(const uint8_t *s, size_t n, int complete)
{
    int parts = 0, digits = 0, val = 0;

    for (size_t k = 0; k < n; k++) {
        if (s[k] >= '0' && s[k] <= '9') {
            if (digits > 0 && val == 0)
                return 0;
            val = val * 10 + (s[k] - '0');
            if (val > 255)
                return 0;
            digits++;
        } else if (s[k] == '.') {
            if (digits == 0 || parts == 3)
                return 0;
            parts++;
            digits = val = 0;
        } else {
            return 0;
        }
    }
    return complete ? parts == 3 && digits > 0 : 1;
}

/* Cheap prefix check for IPv6 text: hex groups of at most 4 digits, no
 * ":::", at most one "::", a dotted IPv4 tail only at the end. inet_pton
 * has the final word once the token is complete. */
static int ipv6_prefix_ok(const uint8_t *s, size_t n)
{
    int run = 0, dcolon = 0, dotted = 0;

    if (n > INET6_ADDRSTRLEN - 1)
        return 0;
    for (size_t k = 0; k < n; k++) {
        uint8_t ch = s[k];
        if (ch == ':') {
            if (dotted)
                return 0;
            if (k > 0 && s[k - 1] == ':') {
                if (dcolon || (k > 1 && s[k - 2] == ':'))
                    return 0;
                dcolon = 1;
            }
            run = 0;
        } else if (ch == '.') {
            dotted = 1;
            run = 0;
        } else if ((ch >= '0' && ch <= '9') || (!dotted &&
                   ((ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))) {
            if (++run > 4)
                return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

/* An address token followed by a single space; fills *a (port 0). */
static enum step v1_addr(struct cur *c, int af, struct addr *a)
{
    size_t start = c->i;
    char text[INET6_ADDRSTRLEN];

    while (c->i < c->n && c->p[c->i] != ' ')
        c->i++;
    size_t tl = c->i - start;
    int complete = c->i < c->n;
    int ok = af == AF_INET ? ipv4_prefix_ok(c->p + start, tl, complete)
                           : ipv6_prefix_ok(c->p + start, tl);
    if (!ok)
        return STEP_BAD;
    if (!complete)
        return STEP_NEED;
    if (tl == 0 || tl >= sizeof(text))
        return STEP_BAD;
    memcpy(text, c->p + start, tl);
    text[tl] = '\0';

    memset(a, 0, sizeof(*a));
    if (af == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
        if (inet_pton(AF_INET, text, &s4->sin_addr) != 1)
            return STEP_BAD;
        s4->sin_family = AF_INET;
        a->len = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
        if (inet_pton(AF_INET6, text, &s6->sin6_addr) != 1)
            return STEP_BAD;
        s6->sin6_family = AF_INET6;
        a->len = sizeof(*s6);
    }
    c->i++;                        /* the space */
    return STEP_OK;
}

/* A port 0..65535 without heading zeroes or sign, then the byte term. */
static enum step v1_port(struct cur *c, uint8_t term, int *port)
{
    size_t start = c->i;
    long v = 0;

    while (c->i < c->n && c->p[c->i] != term) {
        uint8_t ch = c->p[c->i];
        if (ch < '0' || ch > '9')
            return STEP_BAD;
        if (c->i > start && v == 0)
            return STEP_BAD;       /* "0" followed by more digits */
        v = v * 10 + (ch - '0');
        if (v > 65535)
            return STEP_BAD;
        c->i++;
    }
    if (c->i >= c->n)
        return STEP_NEED;
    if (c->i == start)
        return STEP_BAD;
    *port = (int)v;
    c->i++;                        /* term */
    return STEP_OK;
}

static void set_port(struct addr *a, int port)
{
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons((uint16_t)port);
}

static int v1_parse(const uint8_t *buf, size_t len, struct proxy_proto_info *info)
{
    struct cur c = { buf, len < V1_MAX ? len : V1_MAX, 0 };
    enum v1_proto proto;
    enum step s;
    int sport, dport;

    if ((s = lit(&c, "PROXY ")) != STEP_OK)
        goto stop;
    if ((s = v1_proto(&c, &proto)) != STEP_OK)
        goto stop;

    if (proto == P_UNKNOWN) {
        /* Whatever follows UNKNOWN up to CRLF is to be ignored; we still ask
         * that it be printable text. */
        while (c.i < c.n && c.p[c.i] != '\r') {
            if (c.p[c.i] < 0x20 || c.p[c.i] > 0x7e) {
                s = STEP_BAD;
                goto stop;
            }
            c.i++;
        }
        if (c.i >= c.n) {
            s = STEP_NEED;
            goto stop;
        }
        c.i++;                     /* '\r' */
        if ((s = lit(&c, "\n")) != STEP_OK)
            goto stop;
        info->version = 1;
        info->local = 1;
        return (int)c.i;
    }

    int af = proto == P_TCP4 ? AF_INET : AF_INET6;
    if ((s = v1_addr(&c, af, &info->src)) != STEP_OK ||
        (s = v1_addr(&c, af, &info->dst)) != STEP_OK ||
        (s = v1_port(&c, ' ', &sport)) != STEP_OK ||
        (s = v1_port(&c, '\r', &dport)) != STEP_OK ||
        (s = lit(&c, "\n")) != STEP_OK)
        goto stop;
    set_port(&info->src, sport);
    set_port(&info->dst, dport);
    info->version = 1;
    info->local = 0;
    return (int)c.i;

stop:
    /* Out of bytes at the 107-byte cap: the line is already too long. */
    if (s == STEP_NEED && len < V1_MAX)
        return PROXY_PROTO_NEED_MORE;
    return PROXY_PROTO_BAD;
}

/* ---- v2 ---------------------------------------------------------------- */

static size_t v2_addr_len(uint8_t fam)
{
    switch (fam) {
    case 0x00: return 0;               /* UNSPEC */
    case 0x11: case 0x12: return 12;   /* IPv4: 4 + 4 + 2 + 2 */
    case 0x21: case 0x22: return 36;   /* IPv6: 16 + 16 + 2 + 2 */
    case 0x31: case 0x32: return 216;  /* UNIX: 108 + 108 */
    default: return (size_t)-1;        /* unspecified: rejected, but for LOCAL */
    }
}

#define PP2_TYPE_CRC32C 0x03      /* its value: CRC32C of the header, 4 bytes */

/* True when the CRC32C TLV whose 4-byte value sits at buf[val] holds the
 * CRC32C of the whole header buf[0..end) with those 4 bytes read as zeroes
 * (proxy-protocol.txt 2.2.5; big-endian, as HAProxy writes and reads it).
 * The zeroes are fed in place of the value: buf is the caller's, read-only. */
static bool v2_crc32c_ok(const uint8_t *buf, size_t val, size_t end)
{
    static const uint8_t zero[4];
    uint32_t sent = (uint32_t)buf[val] << 24 | (uint32_t)buf[val + 1] << 16 |
                    (uint32_t)buf[val + 2] << 8 | buf[val + 3];
    uint32_t crc = crc32c(0, buf, val);

    crc = crc32c(crc, zero, sizeof(zero));
    crc = crc32c(crc, buf + val + 4, end - val - 4);
    return crc == sent;
}

/* The TLVs in buf[off..end) must tile it exactly: a length that runs past
 * the header means it is corrupt, whatever its addresses say (HAProxy
 * refuses it too). Only the bytes at hand (len) are read, so such a length
 * is refused as soon as it is seen. A CRC32C TLV must be 4 bytes long and
 * come at most once, and once the whole header is at hand its checksum
 * must match: a header that was damaged or altered on its way is not
 * believed, and the connection is closed as for any bad header. Whether
 * one was checked goes to *crc_checked. */
static bool v2_tlvs_ok(const uint8_t *buf, size_t len, size_t off, size_t end,
                       bool *crc_checked)
{
    bool crc_seen = false;

    *crc_checked = false;
    while (off < end) {
        if (end - off < 3)
            return false;
        if (off + 3 > len)
            return true;               /* the rest is still to come */
        size_t vlen = (size_t)buf[off + 1] << 8 | buf[off + 2];
        if (buf[off] == PP2_TYPE_CRC32C) {
            if (vlen != 4 || crc_seen)
                return false;
            crc_seen = true;
            if (off + 3 + vlen <= end && len >= end) {
                if (!v2_crc32c_ok(buf, off + 3, end))
                    return false;
                *crc_checked = true;
            }
        }
        off += 3 + vlen;
        if (off > end)
            return false;
    }
    return true;
}

static void v2_fill(struct addr *a, int af, const uint8_t *ip, const uint8_t *port)
{
    memset(a, 0, sizeof(*a));
    if (af == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, ip, 4);
        memcpy(&s4->sin_port, port, 2);     /* both network order */
        a->len = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, ip, 16);
        memcpy(&s6->sin6_port, port, 2);
        a->len = sizeof(*s6);
    }
}

static int v2_parse(const uint8_t *buf, size_t len, struct proxy_proto_info *info)
{
    size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);

    if (memcmp(buf, v2_sig, n) != 0)
        return PROXY_PROTO_BAD;
    if (len < 13)
        return PROXY_PROTO_NEED_MORE;
    uint8_t ver = buf[12] >> 4, cmd = buf[12] & 0x0F;
    if (ver != 2 || cmd > 1)
        return PROXY_PROTO_BAD;
    if (len < 14)
        return PROXY_PROTO_NEED_MORE;
    uint8_t fam = buf[13];
    size_t need = v2_addr_len(fam);
    /* LOCAL (a health check from the proxy itself) discards the whole
     * block, "including the family which is ignored". */
    if (cmd == 1 && need == (size_t)-1)
        return PROXY_PROTO_BAD;
    if (len < V2_HDR)
        return PROXY_PROTO_NEED_MORE;
    size_t body = (size_t)buf[14] << 8 | buf[15];
    if (V2_HDR + body > PROXY_PROTO_MAX)
        return PROXY_PROTO_BAD;
    /* LOCAL discards the address block, so its size is not held against it. */
    if (cmd == 1 && body < need)
        return PROXY_PROTO_BAD;
    /* TLVs are checked where the addresses are taken from the header, as
     * HAProxy checks them: elsewhere nothing in the header is believed. */
    bool crc_checked = false;
    if (cmd == 1 && ((fam >> 4) == 1 || (fam >> 4) == 2) &&
        !v2_tlvs_ok(buf, len, V2_HDR + need, V2_HDR + body, &crc_checked))
        return PROXY_PROTO_BAD;
    if (len < V2_HDR + body)
        return PROXY_PROTO_NEED_MORE;

    const uint8_t *a = buf + V2_HDR;
    info->version = 2;
    info->local = 1;
    info->crc32c = crc_checked;
    if (cmd == 1 && (fam >> 4) == 1) {
        v2_fill(&info->src, AF_INET, a, a + 8);
        v2_fill(&info->dst, AF_INET, a + 4, a + 10);
        info->local = 0;
    } else if (cmd == 1 && (fam >> 4) == 2) {
        v2_fill(&info->src, AF_INET6, a, a + 32);
        v2_fill(&info->dst, AF_INET6, a + 16, a + 34);
        info->local = 0;
    }
    /* UNSPEC and UNIX under PROXY, and anything under LOCAL: keep the real
     * peer. TLVs are not used otherwise (after IPv4 and IPv6 addresses,
     * their framing and checksum were checked above). */
    return (int)(V2_HDR + body);
}

int proxy_proto_parse(const uint8_t *buf, size_t len, struct proxy_proto_info *info)
{
    memset(info, 0, sizeof(*info));
    if (len == 0)
        return PROXY_PROTO_NEED_MORE;
    if (buf[0] == 'P')
        return v1_parse(buf, len, info);
    if (buf[0] == v2_sig[0])
        return v2_parse(buf, len, info);
    return PROXY_PROTO_BAD;
}

/* ---- writer ------------------------------------------------------------ */

/* AF_INET or AF_INET6 when both ends share it, else AF_UNSPEC. */
static int common_family(const struct addr *src, const struct addr *dst)
{
    if (!src || !dst || src->ss.ss_family != dst->ss.ss_family)
        return AF_UNSPEC;
    if (src->ss.ss_family == AF_INET || src->ss.ss_family == AF_INET6)
        return src->ss.ss_family;
    return AF_UNSPEC;
}

static int write_v1(int af, const struct addr *src, const struct addr *dst,
                    uint8_t *out, size_t size)
{
    char line[V1_MAX + 1], sh[INET6_ADDRSTRLEN], dh[INET6_ADDRSTRLEN];
    int n;

    if (af == AF_UNSPEC) {
        n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
    } else {
        const void *sa, *da;
        if (af == AF_INET) {
            sa = &((const struct sockaddr_in *)&src->ss)->sin_addr;
            da = &((const struct sockaddr_in *)&dst->ss)->sin_addr;
        } else {
            sa = &((const struct sockaddr_in6 *)&src->ss)->sin6_addr;
            da = &((const struct sockaddr_in6 *)&dst->ss)->sin6_addr;
        }
        if (!inet_ntop(af, sa, sh, sizeof(sh)) || !inet_ntop(af, da, dh, sizeof(dh)))
            return -1;
        n = snprintf(line, sizeof(line), "PROXY %s %s %s %d %d\r\n",
                     af == AF_INET ? "TCP4" : "TCP6", sh, dh,
                     addr_port(src), addr_port(dst));
    }
    if (n < 0 || (size_t)n >= sizeof(line) || (size_t)n > size)
        return -1;
    memcpy(out, line, (size_t)n);
    return n;
}

static int write_v2(int af, const struct addr *src, const struct addr *dst,
                    uint8_t *out, size_t size)
{
    size_t body = af == AF_INET ? 12 : af == AF_INET6 ? 36 : 0;

    if (size < V2_HDR + body)
        return -1;
    memcpy(out, v2_sig, sizeof(v2_sig));
    out[12] = 0x21;                                 /* v2, PROXY */
    out[13] = af == AF_INET ? 0x11 : af == AF_INET6 ? 0x21 : 0x00;
    out[14] = (uint8_t)(body >> 8);
    out[15] = (uint8_t)body;
    uint8_t *a = out + V2_HDR;
    if (af == AF_INET) {
        const struct sockaddr_in *s = (const void *)&src->ss, *d = (const void *)&dst->ss;
        memcpy(a, &s->sin_addr, 4);
        memcpy(a + 4, &d->sin_addr, 4);
        memcpy(a + 8, &s->sin_port, 2);
        memcpy(a + 10, &d->sin_port, 2);
    } else if (af == AF_INET6) {
        const struct sockaddr_in6 *s = (const void *)&src->ss, *d = (const void *)&dst->ss;
        memcpy(a, &s->sin6_addr, 16);
        memcpy(a + 16, &d->sin6_addr, 16);
        memcpy(a + 32, &s->sin6_port, 2);
        memcpy(a + 34, &d->sin6_port, 2);
    }
    return (int)(V2_HDR + body);
}

int proxy_proto_write(int version, const struct addr *src, const struct addr *dst,
                      uint8_t *out, size_t size)
{
    int af = common_family(src, dst);

    if (!out)
        return -1;
    if (version == 1)
        return write_v1(af, src, dst, out, size);
    if (version == 2)
        return write_v2(af, src, dst, out, size);
    return -1;
}
