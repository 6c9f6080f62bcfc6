/* What requests and responses share: character classes, field lines, the
 * framing fields (Content-Length, Transfer-Encoding, Connection, ...), the
 * resumable head driver, and the small helpers the proxy uses. */
#include "proto/http1.h"

#include <string.h>

#include "proto/http1_lex.h"

const struct h1_limits h1_limits_default = H1_LIMITS_DEFAULT;

/* Generated from the RFC 9110/3986 grammars (tchar, field-vchar / SP / HTAB /
 * obs-text, path bytes, reg-name bytes, HEXDIG); see the H1_C_* bits. */
const uint8_t h1_ctype[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  /* 0x00 */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  /* 0x10 */
    0x02, 0x0f, 0x06, 0x03, 0x0f, 0x0f, 0x0f, 0x0f, 0x0e, 0x0e, 0x0f, 0x0f, 0x0e, 0x0f, 0x0f, 0x06,  /* 0x20 */
    0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x06, 0x0e, 0x06, 0x0e, 0x06, 0x02,  /* 0x30 */
    0x06, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f,  /* 0x40 */
    0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x06, 0x06, 0x06, 0x07, 0x0f,  /* 0x50 */
    0x07, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f,  /* 0x60 */
    0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x06, 0x07, 0x06, 0x0f, 0x00,  /* 0x70 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,  /* 0x80 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,  /* 0x90 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,  /* 0xa0 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,  /* 0xb0 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,  /* 0xc0 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,  /* 0xd0 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,  /* 0xe0 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,  /* 0xf0 */
};

static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* ---- field lines ---------------------------------------------------------- */

/* One field line at p (p < end, *p is not the CR of the empty line). Returns 1
 * with *h and *next filled, 0 if the line is incomplete, H1_BAD_REQUEST. */
static int field_line(const char *p, const char *end, struct h1_header *h,
                      const char **next, const char **why)
{
    const char *q = h1_scan_token(p, end);

    if (q == end)
        return 0;
    if (*q != ':') {
        if (q == p && is_ows(*q))
            *why = "obs-fold or whitespace before a field name";
        else if (is_ows(*q))
            *why = "whitespace between field name and colon";
        else if (*q == '\n')
            *why = "bare LF in head";
        else if (*q == '\r')
            *why = q == p ? "bare CR in head" : "field line without a colon";
        else
            *why = "invalid byte in field name";
        return H1_BAD_REQUEST;
    }
    if (q == p) {
        *why = "empty field name";
        return H1_BAD_REQUEST;
    }
    h->name.p = p;
    h->name.len = (uint32_t)(q - p);

    q++;
    while (q < end && is_ows(*q))
        q++;
    const char *v = q;
    q = h1_scan_value(q, end);
    if (q == end)
        return 0;
    if (*q != '\r') {
        *why = *q == '\n' ? "bare LF in head" : "control byte in field value";
        return H1_BAD_REQUEST;
    }
    if (q + 1 == end)
        return 0;
    if (q[1] != '\n') {
        *why = "bare CR in head";
        return H1_BAD_REQUEST;
    }
    *next = q + 2;
    while (q > v && is_ows(q[-1]))
        q--;
    h->value.p = v;
    h->value.len = (uint32_t)(q - v);
    return 1;
}

int h1_fields_parse(const char *p, const char *end, struct h1_header *slots, uint32_t cap,
                    uint32_t *n, const char **next, const char **why)
{
    for (;;) {
        if (p == end)
            break;
        if (*p == '\r') {
            if (p + 1 == end)
                break;
            if (p[1] != '\n') {
                *why = "bare CR in head";
                return H1_BAD_REQUEST;
            }
            *next = p + 2;
            return 1;
        }
        if (*n >= cap) {
            *why = "too many header fields";
            return H1_HEADERS_TOO_LARGE;
        }
        const char *after;
        int r = field_line(p, end, &slots[*n], &after, why);
        if (r == 0)
            break;
        if (r < 0)
            return r;
        (*n)++;
        p = after;
    }
    *next = p;
    return 0;
}

/* ---- framing fields ------------------------------------------------------- */

static void content_length(struct h1_slice v, struct h1_fields_info *fi)
{
    uint64_t x = 0;

    if (++fi->cl_lines > 1) {
        /* Even an identical repeat is refused: the next hop might take either
         * line, and only one well-formed number is unambiguous. */
        fi->cl_bad = true;
        fi->cl_why = "more than one Content-Length";
        return;
    }
    if (v.len == 0 || v.len > 19)
        goto bad;
    for (uint32_t i = 0; i < v.len; i++) {
        unsigned d = (unsigned char)v.p[i] - '0';
        if (d > 9)
            goto bad;
        x = x * 10 + d;   /* 19 digits cannot overflow 64 bits */
    }
    if (x > (uint64_t)INT64_MAX)
        goto bad;
    fi->cl = x;
    return;
bad:
    fi->cl_bad = true;
    fi->cl_why = "invalid Content-Length";
}

/* Transfer-Encoding: 1#transfer-coding, with the lines of repeated fields
 * forming one list. We understand no parameters and accept no empty
 * elements: a next hop that reads the list differently would frame the body
 * differently. */
static void transfer_encoding(struct h1_slice v, struct h1_fields_info *fi, bool *seen_chunked)
{
    const char *p = v.p, *end = v.p + v.len;

    fi->te_lines++;
    for (;;) {
        while (p < end && is_ows(*p))
            p++;
        const char *s = p;
        p = h1_scan_token(p, end);
        uint32_t n = (uint32_t)(p - s);
        while (p < end && is_ows(*p))
            p++;
        if (n == 0 || (p < end && *p != ',')) {
            fi->te_bad = true;
            fi->te_why = n == 0 ? "empty Transfer-Encoding element"
                      : *p == ';' ? "Transfer-Encoding parameters"
                                  : "invalid Transfer-Encoding";
            return;
        }
        if (h1_name_is(s, n, "chunked", 7)) {
            if (*seen_chunked) {
                fi->te_bad = true;
                fi->te_why = "chunked applied twice";
                return;
            }
            *seen_chunked = true;
            fi->te_chunked = true;
        } else {
            fi->te_chunked = false;
            if (!h1_name_is(s, n, "gzip", 4) && !h1_name_is(s, n, "deflate", 7) &&
                !h1_name_is(s, n, "compress", 8) && !h1_name_is(s, n, "x-gzip", 6) &&
                !h1_name_is(s, n, "x-compress", 10))
                fi->te_unknown = true;
        }
        if (p == end)
            return;
        p++;   /* the ',' */
    }
}

static void connection(struct h1_slice v, struct h1_fields_info *fi)
{
    const char *p = v.p, *end = v.p + v.len;

    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && is_ows(e[-1]))
            e--;
        uint32_t n = (uint32_t)(e - s);
        if (h1_name_is(s, n, "close", 5))
            fi->conn_close = true;
        else if (h1_name_is(s, n, "keep-alive", 10))
            fi->conn_keep_alive = true;
        else if (h1_name_is(s, n, "upgrade", 7))
            fi->conn_upgrade = true;
    }
}

void h1_fields_scan(const struct h1_header *h, uint32_t n, struct h1_fields_info *fi)
{
    bool seen_chunked = false;

    memset(fi, 0, sizeof(*fi));
    for (uint32_t i = 0; i < n; i++) {
        const char *p = h[i].name.p;
        uint32_t len = h[i].name.len;
        /* Dispatch on length, then compare: most fields are none of these and
         * cost one switch. */
        switch (len) {
        case 4:
            if (h1_name_is(p, len, "host", 4)) {
                if (fi->host_lines++ == 0)
                    fi->host = &h[i];
            }
            break;
        case 6:
            if (h1_name_is(p, len, "expect", 6) && h1_slice_eq_ci(h[i].value, "100-continue"))
                fi->expect_continue = true;
            break;
        case 7:
            if (h1_name_is(p, len, "upgrade", 7)) {
                fi->upgrade_field = true;
                if (h1_has_token(h[i].value, "h2c"))
                    fi->upgrade_h2c = true;
            }
            break;
        case 10:
            if (h1_name_is(p, len, "connection", 10))
                connection(h[i].value, fi);
            break;
        case 14:
            if (h1_name_is(p, len, "content-length", 14))
                content_length(h[i].value, fi);
            break;
        case 17:
            if (h1_name_is(p, len, "transfer-encoding", 17))
                transfer_encoding(h[i].value, fi, &seen_chunked);
            break;
        default:
            break;
        }
    }
}

/* ---- authority (Host, absolute-form, authority-form) ---------------------- */

bool h1_authority_valid(const char *p, uint32_t len, bool need_port)
{
    const char *end = p + len, *q = p;

    if (len == 0)
        return false;
    if (*q == '[') {
        /* IP-literal: hex digits, ':' and '.' (an IPv4 tail). IPvFuture and
         * zone ids are not something a client sends to a reverse proxy. */
        bool colon = false;
        for (q++; q < end && *q != ']'; q++) {
            if (*q == ':')
                colon = true;
            else if (*q != '.' && !h1_is((unsigned char)*q, H1_C_HEX))
                return false;
        }
        if (q == end || !colon || q - p < 3)
            return false;
        q++;
    } else {
        for (; q < end && *q != ':'; q++) {
            if (!h1_is((unsigned char)*q, H1_C_HOST))
                return false;
            if (*q == '%') {
                if (end - q < 3 || !h1_is((unsigned char)q[1], H1_C_HEX) ||
                    !h1_is((unsigned char)q[2], H1_C_HEX))
                    return false;
                q += 2;
            }
        }
        if (q == p)
            return false;
    }
    if (q == end)
        return !need_port;
    if (*q != ':')
        return false;
    q++;
    /* 1 to 5 digits, <= 65535: an empty or huge port is legal URI syntax but
     * no client needs it, and the router should not have to think about it. */
    if (end - q < 1 || end - q > 5)
        return false;
    unsigned port = 0;
    for (; q < end; q++) {
        unsigned d = (unsigned char)*q - '0';
        if (d > 9)
            return false;
        port = port * 10 + d;
    }
    return port <= 65535;
}

/* ---- the resumable head driver -------------------------------------------- */

static int head_lines(const char *buf, const char *end, struct h1_scan *scan,
                      h1_start_line_fn *start, void *msg, struct h1_header *slots,
                      uint32_t cap, const char **why)
{
    const char *p = buf + scan->line, *next;
    int r;

    if (scan->phase == 0) {
        r = start(buf, end, msg, &next, why);
        if (r <= 0)
            return r;
        scan->phase = 1;
        scan->n = 0;
        p = next;
        scan->line = (uint32_t)(p - buf);
    }
    r = h1_fields_parse(p, end, slots, cap, &scan->n, &next, why);
    if (r == 1)
        return (int)(next - buf);
    if (r == 0)
        scan->line = (uint32_t)(next - buf);
    return r;
}

/* Where the next resumed scan starts: after everything, except a final CR,
 * whose LF (or lack of one) the next call must see. */
static uint32_t seen_upto(const char *buf, size_t avail)
{
    return (uint32_t)(avail && buf[avail - 1] == '\r' ? avail - 1 : avail);
}

int h1_head_parse(const char *buf, size_t len, uint32_t max_start_line, uint32_t max_head,
                  struct h1_scan *scan, h1_start_line_fn *start, void *msg,
                  struct h1_header *slots, uint32_t cap, uint32_t *nheaders,
                  const char **why)
{
    /* A head must end within max_head bytes, so nothing past them is read. */
    if (max_head > INT32_MAX)
        max_head = INT32_MAX;
    size_t avail = len < max_head ? len : max_head;
    int r;

    if (avail == 0) {
        /* Nothing to look at (buf may even be NULL): only the limit applies. */
        memset(scan, 0, sizeof(*scan));
        goto incomplete;
    }
    const char *end = buf + avail;

    if (scan->seen > avail)
        memset(scan, 0, sizeof(*scan));   /* not our buffer any more: start afresh */
    if (scan->seen) {
        /* Resumed: only the new bytes are looked at. Until one of them is a
         * control byte (the CR or LF ending a line, or something no head may
         * hold) the lines checked so far stand and the incomplete one has
         * not gone wrong in a way we check cheaply; so a byte-at-a-time
         * client costs a vector scan per call, and each line is checked in
         * full only when its CR and its LF arrive. */
        if (h1_scan_value(buf + scan->seen, end) == end) {
            scan->seen = seen_upto(buf, avail);
            goto incomplete;
        }
        r = head_lines(buf, end, scan, start, msg, slots, cap, why);
        if (r == 0) {
            scan->seen = seen_upto(buf, avail);
            goto incomplete;
        }
        if (r < 0)
            goto fail;
        /* Complete: parse it again from the start, since the slots filled by
         * earlier calls may point into where the buffer used to be. */
    }
    memset(scan, 0, sizeof(*scan));
    r = head_lines(buf, end, scan, start, msg, slots, cap, why);
    if (r > 0) {
        *nheaders = scan->n;
        memset(scan, 0, sizeof(*scan));
        return r;
    }
    if (r < 0)
        goto fail;
    scan->seen = seen_upto(buf, avail);   /* 0 (nothing yet): start afresh */

incomplete:
    if (scan->phase == 0) {
        /* The start line is incomplete. One CRLF before a request line does
         * not count; a CR at the end may be the line's own. */
        size_t skip = avail >= 2 && buf[0] == '\r' && buf[1] == '\n' ? 2 : 0;
        if (avail - skip > (size_t)max_start_line + 1) {
            *why = "request line too long";
            r = H1_URI_TOO_LONG;
            goto fail;
        }
    }
    if (avail >= max_head) {
        *why = "header section too large";
        r = H1_HEADERS_TOO_LARGE;
        goto fail;
    }
    return 0;

fail:
    memset(scan, 0, sizeof(*scan));
    return r;
}

/* ---- helpers -------------------------------------------------------------- */

static inline unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static bool eq_ci(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

bool h1_slice_eq_ci(struct h1_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && eq_ci(s.p, lit, n);
}

const struct h1_header *h1_find_header(const struct h1_header *h, uint32_t n, const char *name)
{
    size_t len = strlen(name);
    for (uint32_t i = 0; i < n; i++)
        if (h[i].name.len == len && eq_ci(h[i].name.p, name, len))
            return &h[i];
    return NULL;
}

bool h1_has_token(struct h1_slice value, const char *token)
{
    if (!value.len)
        return false;   /* and no arithmetic on an absent slice's NULL */
    const char *p = value.p, *end = value.p + value.len;
    size_t n = strlen(token);

    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && is_ows(e[-1]))
            e--;
        if ((size_t)(e - s) == n && eq_ci(s, token, n))
            return true;
    }
    return false;
}

void h1_split_host(struct h1_slice authority, struct h1_slice *host, int *port)
{
    *port = -1;
    *host = authority;
    if (!authority.len)
        return;
    const char *p = authority.p, *end = p + authority.len, *colon = NULL;

    if (*p == '[') {
        const char *rb = memchr(p, ']', authority.len);
        if (rb && rb + 1 < end && rb[1] == ':')
            colon = rb + 1;
    } else {
        colon = memrchr(p, ':', authority.len);
    }
    if (!colon)
        return;
    host->len = (uint32_t)(colon - p);
    int v = 0;
    const char *q = colon + 1;
    if (q == end || end - q > 5)
        return;
    for (; q < end; q++) {
        if (*q < '0' || *q > '9')
            return;
        v = v * 10 + (*q - '0');
    }
    *port = v;
}

void h1_request_init(struct h1_request *req, struct h1_header *slots, uint32_t nslots)
{
    memset(req, 0, sizeof(*req));
    req->headers = slots;
    req->max_headers = slots ? nslots : 0;
}

void h1_response_init(struct h1_response *resp, struct h1_header *slots, uint32_t nslots)
{
    memset(resp, 0, sizeof(*resp));
    resp->headers = slots;
    resp->max_headers = slots ? nslots : 0;
}
