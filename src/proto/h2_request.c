/* HTTP/2 request head → HTTP/1.1 request head (see h2_request.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/h2_request.h"

#define H2_REQUEST_SLACK 256     /* request line and Host beyond the fields' own limit */

void h2_request_init(struct h2_request *r, uint32_t limit)
{
    memset(r, 0, sizeof(*r));
    r->limit = limit;
}

void h2_request_free(struct h2_request *r)
{
    free(r->head);
    free(r->cookie);
    free(r->method);
    free(r->path);
    free(r->authority);
    free(r->protocol);
    memset(r, 0, sizeof(*r));
}

static int append(struct h2_request *r, const void *p, size_t n)
{
    if (n > r->limit + H2_REQUEST_SLACK || r->len + n > r->limit + H2_REQUEST_SLACK)
        return -431;
    if (r->len + n > r->cap) {
        uint32_t cap = r->cap ? r->cap : 512;
        char *h;

        while (cap < r->len + n)
            cap *= 2;
        if (!(h = realloc(r->head, cap)))
            return -500;
        r->head = h;
        r->cap = cap;
    }
    memcpy(r->head + r->len, p, n);
    r->len += (uint32_t)n;
    return 0;
}

static int append_field(struct h2_request *r, const char *name, size_t name_len,
                        const void *value, size_t value_len)
{
    int e;

    if ((e = append(r, name, name_len)) || (e = append(r, ": ", 2)) ||
        (e = append(r, value, value_len)) || (e = append(r, "\r\n", 2)))
        return e;
    return 0;
}

static int keep(char **dst, const uint8_t *v, size_t n, uint32_t limit)
{
    if (*dst)
        return -400;            /* nghttp2 refuses repeats; never trust that alone */
    if (n > limit)
        return -431;
    if (!(*dst = malloc(n + 1)))
        return -500;
    memcpy(*dst, v, n);
    (*dst)[n] = '\0';
    return 0;
}

/* The request line and Host, once the pseudo-header fields are all in. */
static int write_line(struct h2_request *r)
{
    int e;

    if (r->line_done)
        return 0;
    r->line_done = true;
    if (!r->method)
        return -400;
    if (r->protocol && !r->connect)
        return -400;            /* :protocol belongs to CONNECT (RFC 8441 4) */
    if (r->connect && !r->websocket)
        return -501;            /* a plain CONNECT, or a protocol sluice does not tunnel */
    if (!r->path || !r->path[0])
        return -400;
    /* A WebSocket's CONNECT is the GET of an HTTP/1.1 upgrade (RFC 8441 5). */
    if ((e = r->websocket ? append(r, "GET", 3) : append(r, r->method, strlen(r->method))) ||
        (e = append(r, " ", 1)) ||
        (e = append(r, r->path, strlen(r->path))) || (e = append(r, " HTTP/1.1\r\n", 11)))
        return e;
    if (r->authority && (e = append_field(r, "Host", 4, r->authority, strlen(r->authority))))
        return e;
    return 0;
}

/* RFC 9110 tchar. */
static bool is_tchar(uint8_t ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_token(const uint8_t *p, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar(p[i]))
            return false;
    return true;
}

/* :method and :protocol together say whether this is a WebSocket's
 * extended CONNECT (the upgrade token is case-insensitive, RFC 6455 4.1). */
static void note_websocket(struct h2_request *r)
{
    r->websocket = r->connect && r->protocol && strcasecmp(r->protocol, "websocket") == 0;
}

/* What the HTTP/1.1 text must never get from a field: bytes that end a
 * line or the head early (nghttp2 refuses them too; this does not rely on
 * it). Spaces are refused where they would split the request line. */
static bool clean(const uint8_t *p, size_t n, bool space_ok)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\0' || p[i] == '\r' || p[i] == '\n' || (!space_ok && (p[i] == ' ' || p[i] == '\t')))
            return false;
    return true;
}

static bool name_is(const uint8_t *name, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(name, lit, len) == 0;   /* HTTP/2 names are lower case */
}

int h2_request_field(struct h2_request *r, const uint8_t *name, size_t name_len,
                     const uint8_t *value, size_t value_len)
{
    int e;

    if (!clean(value, value_len, name_len == 0 || name[0] != ':'))
        return -400;
    if (name_len && name[0] == ':') {
        if (r->line_done)
            return -400;        /* a pseudo-header field after a regular one */
        if (name_is(name, name_len, ":method")) {
            if (!is_token(value, value_len))
                return -400;
            if ((e = keep(&r->method, value, value_len, 64)))
                return e;
            r->connect = strcmp(r->method, "CONNECT") == 0;
            note_websocket(r);
            return 0;
        }
        if (name_is(name, name_len, ":protocol")) {
            /* nghttp2 passes it only once SETTINGS_ENABLE_CONNECT_PROTOCOL
             * was sent (proxy/h2.c does); an upgrade token either way. */
            if (!is_token(value, value_len))
                return -400;
            if ((e = keep(&r->protocol, value, value_len, 64)))
                return e;
            note_websocket(r);
            return 0;
        }
        if (name_is(name, name_len, ":path")) {
            if ((e = keep(&r->path, value, value_len, r->limit)))
                return e;
            /* Origin-form, or "*" (OPTIONS; the HTTP/1.1 parser checks the
             * method). nghttp2 checks this only when :scheme is http or
             * https; an absolute URI would put its host above :authority. */
            if (value_len && value[0] != '/' && !(value_len == 1 && value[0] == '*'))
                return -400;
            return 0;
        }
        if (name_is(name, name_len, ":authority"))
            return keep(&r->authority, value, value_len, 1024);
        if (name_is(name, name_len, ":scheme"))
            return 0;           /* the listener says http or https (X-Forwarded-Proto) */
        return -400;
    }
    if ((e = write_line(r)))
        return e;
    if (!name_len)
        return -400;
    for (size_t i = 0; i < name_len; i++)
        if (!is_tchar(name[i]))
            return -400;
    if (name_is(name, name_len, "cookie")) {
        size_t add = (r->cookie_len ? 2 : 0) + value_len;
        char *c;

        if (r->cookie_len + add > r->limit)
            return -431;
        if (!(c = realloc(r->cookie, r->cookie_len + add + 1)))
            return -500;
        r->cookie = c;
        if (r->cookie_len) {
            memcpy(c + r->cookie_len, "; ", 2);
            r->cookie_len += 2;
        }
        memcpy(c + r->cookie_len, value, value_len);
        r->cookie_len += (uint32_t)value_len;
        return 0;
    }
    if (name_is(name, name_len, "host")) {
        if (r->authority)
            return 0;           /* :authority wins (RFC 9113 8.3.1) */
        r->has_host = true;
    } else if (name_is(name, name_len, "content-length")) {
        r->has_length = true;
    } else if (name_is(name, name_len, "transfer-encoding") || name_is(name, name_len, "connection") ||
               name_is(name, name_len, "upgrade")) {
        return -400;            /* connection-specific: nghttp2 refuses them too */
    }
    if (r->websocket) {
        /* The tunnel's bytes have no length, and the key is sluice's to
         * make (h2_request_end): an HTTP/2 client sends none (RFC 8441 5). */
        if (r->has_length)
            return -400;
        if (name_is(name, name_len, "sec-websocket-key"))
            return 0;
    }
    return append_field(r, (const char *)name, name_len, value, value_len);
}

int h2_request_end(struct h2_request *r, bool has_body, const char *ws_key)
{
    int e;

    if ((e = write_line(r)))
        return e;
    if (r->cookie_len && (e = append_field(r, "Cookie", 6, r->cookie, r->cookie_len)))
        return e;
    if (r->websocket) {
        /* The upgrade (RFC 6455 4.1); the DATA that follows is the tunnel's,
         * without framing. */
        if (!ws_key || strlen(ws_key) != WS_KEY_LEN)
            return -500;
        memcpy(r->ws_key, ws_key, WS_KEY_LEN + 1);
        if ((e = append(r, "Upgrade: websocket\r\nConnection: Upgrade\r\n", 41)) ||
            (e = append_field(r, "Sec-WebSocket-Key", 17, r->ws_key, WS_KEY_LEN)))
            return e;
        return append(r, "\r\n", 2);
    }
    if (has_body && !r->has_length) {
        if ((e = append(r, "Transfer-Encoding: chunked\r\n", 28)))
            return e;
        r->chunked = true;
    }
    return append(r, "\r\n", 2);
}
