/* The server name of a TLS ClientHello (see tls_hello.h). The handshake
 * message is put back together from its records into a buffer on the
 * stack, then read field by field with every length checked against what
 * holds it (RFC 8446 section 4.1.2, RFC 5246 section 7.4.1.2, RFC 6066
 * section 3). */
#include "proto/tls_hello.h"

#include <string.h>

#define RECORD_HANDSHAKE 22
#define HANDSHAKE_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define NAME_TYPE_HOST 0
#define RECORD_MAX 16384          /* a record's plaintext, 2^14 */

static size_t get16(const uint8_t *p)
{
    return (size_t)p[0] << 8 | p[1];
}

bool tls_hello_name(const uint8_t *p, size_t n, char *name)
{
    size_t label = 0;

    name[0] = '\0';
    if (n == 0 || n > TLS_HELLO_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    if (label == 0)
        return false;      /* a final dot, or an empty last label */
    for (size_t i = 0; i < n; i++)
        name[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
    name[n] = '\0';
    return true;
}

/* The server_name extension's body. */
static int read_server_name(const uint8_t *p, size_t n, char *name)
{
    size_t at = 2;

    if (n < 2 || get16(p) != n - 2)
        return TLS_HELLO_NOT_TLS;
    while (at < n) {
        size_t len;

        if (n - at < 3)
            return TLS_HELLO_NOT_TLS;
        len = get16(p + at + 1);
        if (len > n - at - 3)
            return TLS_HELLO_NOT_TLS;
        if (p[at] == NAME_TYPE_HOST && name[0] == '\0')
            tls_hello_name(p + at + 3, len, name);   /* not a DNS name: as if no SNI */
        at += 3 + len;
    }
    return TLS_HELLO_OK;
}

/* The ClientHello's body (after its 4-byte handshake header). */
static int read_hello(const uint8_t *p, size_t n, char *name)
{
    size_t at = 2 + 32, len;              /* legacy_version, random */

    if (n < at + 1 || p[0] != 3)
        return TLS_HELLO_NOT_TLS;
    len = p[at];                          /* legacy_session_id */
    if (len > 32 || n - at - 1 < len)
        return TLS_HELLO_NOT_TLS;
    at += 1 + len;
    if (n - at < 2)
        return TLS_HELLO_NOT_TLS;
    len = get16(p + at);                  /* cipher_suites */
    if (len < 2 || len % 2 || n - at - 2 < len)
        return TLS_HELLO_NOT_TLS;
    at += 2 + len;
    if (n - at < 1)
        return TLS_HELLO_NOT_TLS;
    len = p[at];                          /* legacy_compression_methods */
    if (len < 1 || n - at - 1 < len)
        return TLS_HELLO_NOT_TLS;
    at += 1 + len;
    if (at == n)
        return TLS_HELLO_OK;              /* no extensions (TLS 1.2 allows it) */
    if (n - at < 2 || get16(p + at) != n - at - 2)
        return TLS_HELLO_NOT_TLS;
    at += 2;
    while (at < n) {
        size_t type;

        if (n - at < 4)
            return TLS_HELLO_NOT_TLS;
        type = get16(p + at);
        len = get16(p + at + 2);
        if (len > n - at - 4)
            return TLS_HELLO_NOT_TLS;
        if (type == EXT_SERVER_NAME && name[0] == '\0' &&
            read_server_name(p + at + 4, len, name) != TLS_HELLO_OK)
            return TLS_HELLO_NOT_TLS;
        at += 4 + len;
    }
    return TLS_HELLO_OK;
}

int tls_hello_sni(const uint8_t *p, size_t n, char *name)
{
    uint8_t msg[TLS_HELLO_MAX + 4];
    size_t at = 0, have = 0;

    name[0] = '\0';
    for (;;) {
        size_t len;

        /* Reject what cannot begin a handshake record as soon as it shows,
         * so that a plain-text client is not kept waiting. */
        if (n - at >= 1 && p[at] != RECORD_HANDSHAKE)
            return TLS_HELLO_NOT_TLS;
        if (n - at >= 2 && p[at + 1] != 3)
            return TLS_HELLO_NOT_TLS;
        if (n - at < 5)
            return TLS_HELLO_NEED_MORE;
        len = get16(p + at + 3);
        if (len == 0 || len > RECORD_MAX || have + len > sizeof(msg))
            return TLS_HELLO_NOT_TLS;
        if (n - at - 5 < len)
            return TLS_HELLO_NEED_MORE;
        memcpy(msg + have, p + at + 5, len);
        have += len;
        at += 5 + len;
        if (have >= 4) {
            size_t mlen = (size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3];
            if (msg[0] != HANDSHAKE_CLIENT_HELLO || mlen > TLS_HELLO_MAX)
                return TLS_HELLO_NOT_TLS;
            if (have >= 4 + mlen) {
                int r = read_hello(msg + 4, mlen, name);
                if (r != TLS_HELLO_OK)
                    name[0] = '\0';
                return r;
            }
        }
    }
}
