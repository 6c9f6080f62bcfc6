/* Chunked transfer coding (RFC 9112 7.1), scanned byte by byte so a body can
 * arrive split anywhere: where each chunk ends and where the message ends is
 * exactly what a smuggler wants us to get wrong, so every byte of the framing
 * is checked against the grammar; only the data is skipped unread. */
#include "proto/http1.h"

#include <string.h>

#include "proto/http1_lex.h"

enum {
    CH_SIZE_FIRST,    /* first hex digit of chunk-size */
    CH_SIZE,          /* more hex digits */
    CH_WS_SEMI,       /* BWS after the size or an ext value: only ';' may follow */
    CH_EXT_PRE_NAME,  /* after ';': BWS, then the ext name */
    CH_EXT_NAME,
    CH_EXT_NAME_WS,   /* BWS after a name: '=' or ';' */
    CH_EXT_PRE_VAL,   /* after '=': BWS, then a token or a quoted-string */
    CH_EXT_TOKEN,
    CH_EXT_QUOTED,
    CH_EXT_QUOTED_ESC,
    CH_EXT_AFTER_QUOTED,
    CH_SIZE_LF,       /* CR seen at the end of the size line */
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TR_START,      /* start of a trailer line, or the final CRLF */
    CH_TR_NAME,
    CH_TR_VALUE,
    CH_TR_LF,
    CH_TR_END_LF,
    CH_DONE,
    CH_FAILED,
};

void h1_chunked_init(struct h1_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = CH_SIZE_FIRST;
}

static inline bool ws(unsigned char b)
{
    return b == ' ' || b == '\t';
}

static inline int hexval(unsigned char b)
{
    if (b >= '0' && b <= '9')
        return b - '0';
    b |= 0x20;
    if (b >= 'a' && b <= 'f')
        return b - 'a' + 10;
    return -1;
}

/* Trailer fields that would change framing or routing if a recipient merged
 * the trailers into the head. */
static bool forbidden_trailer(const struct h1_chunked *c)
{
    return h1_name_is(c->name, c->name_len, "content-length", 14) ||
           h1_name_is(c->name, c->name_len, "transfer-encoding", 17) ||
           h1_name_is(c->name, c->name_len, "host", 4);
}

ssize_t h1_chunked_scan(struct h1_chunked *c, const char *p, size_t len, bool *done)
{
    unsigned st = c->state;

    *done = false;
    if (st == CH_DONE) {
        *done = true;
        return 0;
    }
    if (st == CH_FAILED)
        return -1;
    if (len == 0)
        return 0;   /* p may be NULL */
    const unsigned char *s = (const unsigned char *)p, *end = s + len, *q = s;

    while (q < end) {
        if (st == CH_DATA) {
            /* The data: skipped without a look. */
            size_t n = (size_t)(end - q);
            if (c->remain < n)
                n = (size_t)c->remain;
            q += n;
            c->remain -= n;
            c->data += n;
            if (c->remain == 0)
                st = CH_DATA_CR;
            continue;
        }

        unsigned char b = *q++;
        if (st < CH_DATA) {
            /* The size line, extensions and CRLF included, is bounded. */
            if (++c->line_len > H1_CHUNK_LINE_MAX) {
                c->error = "chunk-size line too long";
                goto fail;
            }
        } else if (st >= CH_TR_START) {
            if (++c->trailer_len > H1_TRAILERS_MAX) {
                c->error = "trailer section too large";
                goto fail;
            }
        }

        switch (st) {
        case CH_SIZE_FIRST:
        case CH_SIZE: {
            int d = hexval(b);
            if (d >= 0) {
                /* Leading zeros are fine; a value past 2^63-1 is not. */
                if (c->size > ((uint64_t)INT64_MAX - (uint64_t)d) / 16) {
                    c->error = "chunk size overflow";
                    goto fail;
                }
                c->size = c->size * 16 + (uint64_t)d;
                st = CH_SIZE;
                break;
            }
            if (st == CH_SIZE_FIRST) {
                c->error = "invalid chunk size";
                goto fail;
            }
            if (b == '\r')
                st = CH_SIZE_LF;
            else if (b == ';')
                st = CH_EXT_PRE_NAME;
            else if (ws(b))
                st = CH_WS_SEMI;
            else {
                c->error = "invalid chunk size";
                goto fail;
            }
            break;
        }
        case CH_WS_SEMI:
            if (b == ';')
                st = CH_EXT_PRE_NAME;
            else if (!ws(b)) {
                c->error = "whitespace not followed by a chunk extension";
                goto fail;
            }
            break;
        case CH_EXT_PRE_NAME:
            if (h1_is(b, H1_C_TOKEN))
                st = CH_EXT_NAME;
            else if (!ws(b)) {
                c->error = "invalid chunk extension";
                goto fail;
            }
            break;
        case CH_EXT_NAME:
            if (h1_is(b, H1_C_TOKEN))
                break;
            if (b == '=')
                st = CH_EXT_PRE_VAL;
            else if (b == ';')
                st = CH_EXT_PRE_NAME;
            else if (b == '\r')
                st = CH_SIZE_LF;
            else if (ws(b))
                st = CH_EXT_NAME_WS;
            else {
                c->error = "invalid chunk extension";
                goto fail;
            }
            break;
        case CH_EXT_NAME_WS:
            if (b == '=')
                st = CH_EXT_PRE_VAL;
            else if (b == ';')
                st = CH_EXT_PRE_NAME;
            else if (!ws(b)) {
                c->error = "invalid chunk extension";
                goto fail;
            }
            break;
        case CH_EXT_PRE_VAL:
            if (h1_is(b, H1_C_TOKEN))
                st = CH_EXT_TOKEN;
            else if (b == '"')
                st = CH_EXT_QUOTED;
            else if (!ws(b)) {
                c->error = "invalid chunk extension value";
                goto fail;
            }
            break;
        case CH_EXT_TOKEN:
            if (h1_is(b, H1_C_TOKEN))
                break;
            /* what may follow a token may follow a quoted-string */
            __attribute__((fallthrough));
        case CH_EXT_AFTER_QUOTED:
            if (b == ';')
                st = CH_EXT_PRE_NAME;
            else if (b == '\r')
                st = CH_SIZE_LF;
            else if (ws(b))
                st = CH_WS_SEMI;
            else {
                c->error = "invalid chunk extension value";
                goto fail;
            }
            break;
        case CH_EXT_QUOTED:
            /* qdtext = HTAB / SP / VCHAR except '"' and '\' / obs-text */
            if (b == '"')
                st = CH_EXT_AFTER_QUOTED;
            else if (b == '\\')
                st = CH_EXT_QUOTED_ESC;
            else if (!h1_is(b, H1_C_VALUE)) {
                c->error = "invalid byte in quoted chunk extension";
                goto fail;
            }
            break;
        case CH_EXT_QUOTED_ESC:
            if (!h1_is(b, H1_C_VALUE)) {
                c->error = "invalid byte in quoted chunk extension";
                goto fail;
            }
            st = CH_EXT_QUOTED;
            break;
        case CH_SIZE_LF:
            if (b != '\n') {
                c->error = "bare CR after chunk size";
                goto fail;
            }
            c->line_len = 0;
            if (c->size == 0) {
                st = CH_TR_START;
            } else {
                c->remain = c->size;
                st = CH_DATA;
            }
            break;
        case CH_DATA_CR:
            if (b != '\r') {
                c->error = "no CRLF after chunk data";
                goto fail;
            }
            st = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (b != '\n') {
                c->error = "no CRLF after chunk data";
                goto fail;
            }
            c->size = 0;
            st = CH_SIZE_FIRST;
            break;
        case CH_TR_START:
            if (b == '\r') {
                st = CH_TR_END_LF;
            } else if (h1_is(b, H1_C_TOKEN)) {
                c->name[0] = (char)(b | 0x20);
                c->name_len = 1;
                st = CH_TR_NAME;
            } else {
                c->error = ws(b) ? "obs-fold in trailer" : "invalid trailer field";
                goto fail;
            }
            break;
        case CH_TR_NAME:
            if (h1_is(b, H1_C_TOKEN)) {
                /* Longer names are none of the forbidden ones: keep counting
                 * only so that no prefix of them matches by accident. */
                if (c->name_len < sizeof(c->name))
                    c->name[c->name_len] = (char)(b | 0x20);
                if (c->name_len < 255)
                    c->name_len++;
                break;
            }
            if (b != ':') {
                c->error = ws(b) ? "whitespace between trailer name and colon"
                                 : "invalid trailer field";
                goto fail;
            }
            if (c->name_len <= sizeof(c->name) && forbidden_trailer(c)) {
                c->error = "framing field in trailer";
                goto fail;
            }
            st = CH_TR_VALUE;
            break;
        case CH_TR_VALUE:
            if (b == '\r')
                st = CH_TR_LF;
            else if (!h1_is(b, H1_C_VALUE)) {
                c->error = "control byte in trailer value";
                goto fail;
            }
            break;
        case CH_TR_LF:
            if (b != '\n') {
                c->error = "bare CR in trailer";
                goto fail;
            }
            st = CH_TR_START;
            break;
        case CH_TR_END_LF:
            if (b != '\n') {
                c->error = "bare CR at end of trailers";
                goto fail;
            }
            c->state = CH_DONE;
            *done = true;
            return (ssize_t)(q - s);
        default:
            c->error = "chunked scanner in a bad state";
            goto fail;
        }
    }
    c->state = (uint8_t)st;
    return (ssize_t)(q - s);

fail:
    c->state = CH_FAILED;
    return -1;
}

ssize_t h1_chunked_decode(struct h1_chunked *c, const char *p, size_t len, struct h1_slice *data,
                          bool *trailer, bool *done)
{
    size_t used = 0;
    bool in_trailer = c->state >= CH_TR_START && c->state < CH_DONE;

    data->p = NULL;
    data->len = 0;
    *trailer = in_trailer && len;
    *done = c->state == CH_DONE;
    if (c->state == CH_DATA && len) {
        /* Data bytes: handed out as they are, at most 4 GiB - 1 at once. */
        size_t n = c->remain < len ? (size_t)c->remain : len;

        if (n > UINT32_MAX)
            n = UINT32_MAX;
        data->p = p;
        data->len = (uint32_t)n;
        return h1_chunked_scan(c, p, n, done);
    }
    /* Framing (size lines, CRLFs, trailers): one byte at a time, so that
     * the scan stops where the next chunk's data starts, and where the
     * trailer section starts. Framing is a few bytes per chunk; the trailer
     * section is bounded. */
    while (used < len && c->state != CH_DATA && !*done) {
        if (h1_chunked_scan(c, p + used, 1, done) < 0)
            return -1;
        used++;
        if (!in_trailer && c->state >= CH_TR_START && c->state < CH_DONE)
            break;
    }
    return (ssize_t)used;
}
