/* PROXY protocol v1 (text) and v2 (binary), as HAProxy specifies it:
 * read the header a trusted L4 in front of us prepends, and write one towards
 * backends so they learn the real client address. */
#ifndef SLUICE_NET_PROXY_PROTO_H
#define SLUICE_NET_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/addr.h"

/* Longest header we read: v1 is at most 107 bytes; v2 is 16 + a length we cap
 * (TLVs beyond this are refused rather than buffered without bound). */
#define PROXY_PROTO_MAX 536

enum proxy_proto_result {
    PROXY_PROTO_NEED_MORE = 0,     /* a valid prefix; read more bytes */
    PROXY_PROTO_BAD = -1,          /* not a PROXY header, or malformed */
};

struct proxy_proto_info {
    int version;           /* 1 or 2 */
    int local;             /* 1: v2 LOCAL command or v1 UNKNOWN: keep the real peer */
    struct addr src;       /* the client as the proxy in front saw it */
    struct addr dst;       /* the address it connected to */
    bool crc32c;           /* v2: a PP2_TYPE_CRC32C TLV was there and matched */
};

/* Parse a header at the start of buf[0..len). Returns the header's total length
 * (> 0) with *info filled, PROXY_PROTO_NEED_MORE when buf is a valid prefix
 * that is still incomplete, or PROXY_PROTO_BAD. Never reads past len; any
 * byte string is safe input (this is a fuzz target). TLVs after v2 IPv4 and
 * IPv6 addresses must be well framed, and a PP2_TYPE_CRC32C TLV among them
 * must match the header (BAD otherwise); other TLVs' contents are skipped.
 * A v2 LOCAL header is accepted whatever its family and block hold. */
int proxy_proto_parse(const uint8_t *buf, size_t len, struct proxy_proto_info *info);

/* Write a header announcing a connection from src to dst. version is 1 or 2;
 * mixed or unknown families give "PROXY UNKNOWN" (v1) or a LOCAL-less UNSPEC
 * (v2). Returns bytes written, or -1 if size is too small (108 is enough for
 * both). */
int proxy_proto_write(int version, const struct addr *src, const struct addr *dst,
                      uint8_t *out, size_t size);

#endif
