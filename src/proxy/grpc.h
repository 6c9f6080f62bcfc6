/* What sluice needs to know of gRPC (the "gRPC over HTTP2" protocol spec)
 * to answer gRPC clients itself, as Envoy does: which requests are gRPC
 * calls, their deadline (grpc-timeout), the grpc-status an HTTP status
 * means (gRPC's "HTTP to gRPC Status Code Mapping"), and grpc-message's
 * percent-encoding. Pure functions over bytes; no state. */
#ifndef SLUICE_PROXY_GRPC_H
#define SLUICE_PROXY_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The grpc-status codes sluice writes itself. */
enum grpc_status {
    GRPC_OK = 0,
    GRPC_UNKNOWN = 2,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_PERMISSION_DENIED = 7,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_UNAUTHENTICATED = 16,
};

/* Longest grpc-message sluice writes, percent-encoded (NUL excluded). */
#define GRPC_MESSAGE_MAX 512

/* Is a request with this Content-Type value a gRPC call?
 * "application/grpc", alone or followed by '+' (a codec: +proto, +json)
 * or ';' (parameters); the type compared case-insensitively (RFC 9110
 * 8.3.1). "application/grpc-web..." is not: grpc-web clients read
 * statuses from the body, not from trailers-only heads. */
bool grpc_content_type(const char *value, size_t len);

/* The deadline a grpc-timeout value gives, in milliseconds, rounded up
 * (a timeout below one millisecond still gets one). The spec's form is
 * 1 to 8 ASCII digits, a positive value, then one unit of H M S m u n and
 * nothing else (no spaces). Anything else, 0 included, returns 0: the
 * header is ignored as if absent, as Envoy does. */
uint64_t grpc_timeout_ms(const char *value, size_t len);

/* The grpc-status for an HTTP status sluice would answer: 400 INTERNAL,
 * 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED,
 * 429/502/503/504 UNAVAILABLE, anything else UNKNOWN. */
enum grpc_status grpc_status_from_http(int http_status);

/* Percent-encode len bytes of text for grpc-message into out (NUL-ended):
 * bytes outside ' '..'~' and '%' itself become %XX (upper-case hex), as the
 * spec says. A trailing newline is not written (sluice's local answers end
 * with one). The text is cut where the next byte would not fit whole in
 * size - 1 bytes. Returns the length written. size must be at least 1. */
size_t grpc_message_encode(char *out, size_t size, const char *text, size_t len);

#endif
