/* Private to src/proto/http1*.c: character classes and the scanning loops the
 * head parsers share. Not part of the http1 interface. */
#ifndef SLUICE_PROTO_HTTP1_LEX_H
#define SLUICE_PROTO_HTTP1_LEX_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "proto/http1.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Bits of h1_ctype[]: one table lookup answers "may this byte be here?". */
#define H1_C_TOKEN 0x01  /* tchar (RFC 9110 5.6.2) */
#define H1_C_VALUE 0x02  /* field-vchar, SP, HTAB, obs-text (RFC 9110 5.5) */
#define H1_C_PATH  0x04  /* request-target byte other than '?' and '#' */
#define H1_C_HOST  0x08  /* reg-name byte: unreserved, sub-delims, '%' */
#define H1_C_HEX   0x10

extern const uint8_t h1_ctype[256];

static inline bool h1_is(unsigned char c, uint8_t cls)
{
    return (h1_ctype[c] & cls) != 0;
}

/* First byte at or after p that is not a token char, or end. Names and
 * methods are short: a table walk beat a 16-byte SSE2 test of the dozen
 * delimiter ranges in bench/micro/http1_parse.c (about 20% slower). */
static inline const char *h1_scan_token(const char *p, const char *end)
{
    while (p < end && h1_is((unsigned char)*p, H1_C_TOKEN))
        p++;
    return p;
}

/* First byte at or after p that may not appear in a field value (a control
 * byte other than HTAB, or DEL), or end. The CR that ends a valid line is
 * such a byte, so this finds the line's end and validates it in one pass;
 * 16 bytes at a time where SSE2 is there (always, on x86-64). */
static inline const char *h1_scan_value(const char *p, const char *end)
{
#if defined(__SSE2__)
    const __m128i c1f = _mm_set1_epi8(0x1f), tab = _mm_set1_epi8('\t');
    const __m128i del = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* x <= 0x1f unsigned: max(x, 0x1f) == 0x1f */
        __m128i ctl = _mm_cmpeq_epi8(_mm_max_epu8(x, c1f), c1f);
        ctl = _mm_andnot_si128(_mm_cmpeq_epi8(x, tab), ctl);
        ctl = _mm_or_si128(ctl, _mm_cmpeq_epi8(x, del));
        int m = _mm_movemask_epi8(ctl);
        if (m)
            return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#endif
    while (p < end && h1_is((unsigned char)*p, H1_C_VALUE))
        p++;
    return p;
}

/* First byte at or after p that may not be in a path: anything <= SP, >= DEL,
 * '?' or '#'; or end. */
static inline const char *h1_scan_path(const char *p, const char *end)
{
#if defined(__SSE2__)
    const __m128i sp = _mm_set1_epi8(0x20), x7e = _mm_set1_epi8(0x7e);
    const __m128i q = _mm_set1_epi8('?'), hash = _mm_set1_epi8('#');
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i bad = _mm_cmpeq_epi8(_mm_max_epu8(x, sp), sp);            /* <= 0x20 */
        bad = _mm_or_si128(bad, _mm_xor_si128(_mm_cmpeq_epi8(_mm_min_epu8(x, x7e), x),
                                              _mm_set1_epi8(-1)));         /* > 0x7e */
        bad = _mm_or_si128(bad, _mm_cmpeq_epi8(x, q));
        bad = _mm_or_si128(bad, _mm_cmpeq_epi8(x, hash));
        int m = _mm_movemask_epi8(bad);
        if (m)
            return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#endif
    while (p < end && h1_is((unsigned char)*p, H1_C_PATH))
        p++;
    return p;
}

/* Case-insensitive compare of a slice with a literal made of lowercase
 * letters, digits and '-' only: for those, OR-ing 0x20 into a token byte
 * equals the literal's byte exactly when the two match ignoring case. Eight
 * bytes at a time: these run for every field line of every message. */
static inline bool h1_name_is(const char *p, uint32_t len, const char *lower, uint32_t n)
{
    uint32_t i = 0;

    if (len != n)
        return false;
    for (; i + 8 <= n; i += 8) {
        uint64_t a, b;
        memcpy(&a, p + i, 8);
        memcpy(&b, lower + i, 8);
        if ((a | 0x2020202020202020ULL) != b)
            return false;
    }
    for (; i < n; i++)
        if ((p[i] | 0x20) != lower[i])
            return false;
    return true;
}

/* What the framing-relevant fields of a head say; filled by h1_fields_scan
 * and then judged differently for requests and responses. */
struct h1_fields_info {
    uint32_t cl_lines;        /* Content-Length field lines */
    bool cl_bad;              /* a Content-Length value that is not 1*DIGIT */
    uint64_t cl;
    uint32_t te_lines;        /* Transfer-Encoding field lines */
    bool te_bad;              /* syntax error, or chunked not only last */
    bool te_chunked;          /* chunked is the final coding */
    bool te_unknown;          /* a coding other than the compression ones */
    uint32_t host_lines;
    const struct h1_header *host;
    bool conn_close, conn_keep_alive, conn_upgrade;
    bool upgrade_field;       /* an Upgrade field line */
    bool upgrade_h2c;         /* an Upgrade field names h2c */
    bool expect_continue;
    const char *cl_why, *te_why;  /* what was wrong, for the error field */
};

/* Parse field lines from p up to and including the empty line that ends the
 * head, storing them in slots[*n..cap). Returns 1 with *next after the empty
 * line; 0 when the bytes end first (*next: start of the incomplete line, which
 * was checked as far as it goes); H1_BAD_REQUEST or H1_HEADERS_TOO_LARGE with
 * *why set. */
int h1_fields_parse(const char *p, const char *end, struct h1_header *slots, uint32_t cap,
                    uint32_t *n, const char **next, const char **why);

/* One pass over parsed fields for what framing and connection handling need. */
void h1_fields_scan(const struct h1_header *h, uint32_t n, struct h1_fields_info *fi);

/* Parse a start line at buf (the head's first byte) up to end. Returns 1 with
 * *next after its CRLF, 0 when the bytes end first (the part seen is valid), or
 * a negative enum h1_result with *why set. */
typedef int h1_start_line_fn(const char *buf, const char *end, void *msg,
                             const char **next, const char **why);

/* The driver both parsers share: resume from scan, find and check the start
 * line and the field lines, apply max_start_line (incomplete lines; a complete
 * one is the start-line function's to check) and max_head. Returns head_len,
 * 0, or a negative enum h1_result (with *why). On a non-zero return scan is
 * reset and slots[0..*nheaders) hold the fields, pointing into buf. */
int h1_head_parse(const char *buf, size_t len, uint32_t max_start_line, uint32_t max_head,
                  struct h1_scan *scan, h1_start_line_fn *start, void *msg,
                  struct h1_header *slots, uint32_t cap, uint32_t *nheaders,
                  const char **why);

#endif
