#include "proxy/grpc.h"

#include <strings.h>

bool grpc_content_type(const char *value, size_t len)
{
    static const char type[] = "application/grpc";
    const size_t n = sizeof(type) - 1;

    if (len < n || strncasecmp(value, type, n) != 0)
        return false;
    return len == n || value[n] == '+' || value[n] == ';';
}

uint64_t grpc_timeout_ms(const char *value, size_t len)
{
    uint64_t v = 0;
    size_t digits = len ? len - 1 : 0;

    /* 8 digits at most: 99,999,999 hours still fits in 64 bits of ms. */
    if (len < 2 || digits > 8)
        return 0;
    for (size_t i = 0; i < digits; i++) {
        if (value[i] < '0' || value[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(value[i] - '0');
    }
    if (v == 0)
        return 0;      /* the spec's TimeoutValue is positive; Envoy reads 0 as none */
    switch (value[digits]) {
    case 'H':
        return v * 3600000u;
    case 'M':
        return v * 60000u;
    case 'S':
        return v * 1000u;
    case 'm':
        return v;
    case 'u':
        return (v + 999u) / 1000u;
    case 'n':
        return (v + 999999u) / 1000000u;
    default:
        return 0;
    }
}

enum grpc_status grpc_status_from_http(int http_status)
{
    switch (http_status) {
    case 400:
        return GRPC_INTERNAL;
    case 401:
        return GRPC_UNAUTHENTICATED;
    case 403:
        return GRPC_PERMISSION_DENIED;
    case 404:
        return GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return GRPC_UNAVAILABLE;
    default:
        return GRPC_UNKNOWN;
    }
}

size_t grpc_message_encode(char *out, size_t size, const char *text, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    if (len && text[len - 1] == '\n')
        len--;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        bool plain = ch >= 0x20 && ch <= 0x7e && ch != '%';

        if (o + (plain ? 1 : 3) > size - 1)
            break;
        if (plain) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
    return o;
}
