/* An HTTP/2 request head (RFC 9113 8.3), written out as the HTTP/1.1 head
 * that means the same, so that one parser (proto/http1) and one proxy
 * (proxy/http.c) serve both protocols: the HTTP/1.1 parser then checks the
 * result with the listener's limits like any other request.
 *
 * nghttp2 has already checked what HTTP/2 itself forbids (pseudo-header
 * fields after regular ones, unknown or repeated ones, connection-specific
 * fields, upper-case names, CR/LF/NUL in values, content-length against the
 * DATA). This adds what the translation needs: a request line from
 * :method/:path, Host from :authority, the cookie fields joined into one
 * (RFC 9113 8.2.3), and Transfer-Encoding: chunked for a body of unknown
 * length.
 *
 * An extended CONNECT for a WebSocket (RFC 8441: :method CONNECT,
 * :protocol websocket, with :scheme, :path and :authority) is written as
 * the HTTP/1.1 upgrade that means the same (RFC 8441 5): "GET :path", with
 * Upgrade: websocket, Connection: Upgrade and a Sec-WebSocket-Key the
 * caller makes (the HTTP/2 client sends none); its other fields
 * (sec-websocket-version, -protocol, -extensions, ...) as they came. Its
 * DATA is the tunnel's, so it gets no body framing. Any other CONNECT is
 * refused (501). Owner: the stream that receives the head. */
#ifndef SLUICE_PROTO_H2_REQUEST_H
#define SLUICE_PROTO_H2_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/websocket.h"

struct h2_request {
    char *head;              /* the HTTP/1.1 head so far (malloc'd) */
    uint32_t len, cap;
    uint32_t limit;          /* head bytes allowed; more → 431 */
    char *cookie;            /* the cookie fields so far, "; "-joined (malloc'd) */
    uint32_t cookie_len;
    char *method, *path, *authority;   /* pseudo-header fields until the line is written */
    bool line_done;          /* request line (and Host) written */
    bool has_length;         /* a content-length field was given */
    bool has_host;           /* a host field was given (used when :authority is absent) */
    bool chunked;            /* the body must be sent with chunked framing */
    bool connect;            /* :method CONNECT */
    char *protocol;          /* :protocol (extended CONNECT, RFC 8441), malloc'd */
    bool websocket;          /* CONNECT with :protocol websocket: an upgrade */
    char ws_key[WS_KEY_LEN + 1];   /* the Sec-WebSocket-Key written (websocket) */
};

/* limit: the listener's max_header_size (the HTTP/1.1 parser checks it again). */
void h2_request_init(struct h2_request *r, uint32_t limit);
void h2_request_free(struct h2_request *r);

/* One field of the head, in the order received. 0, or a negative HTTP
 * status: -431 (too large), -400 (a field HTTP/1.1 cannot carry), -501
 * (a CONNECT other than a WebSocket's: no other tunnels over HTTP/2), -500
 * (out of memory). Once the pseudo-header fields are in, r->websocket says
 * whether the request is a WebSocket's extended CONNECT. */
int h2_request_field(struct h2_request *r, const uint8_t *name, size_t name_len,
                     const uint8_t *value, size_t value_len);

/* The head is complete; has_body: DATA may follow (no END_STREAM on the
 * HEADERS frame). Ends the head with its empty line. ws_key: for a
 * WebSocket (r->websocket), a fresh Sec-WebSocket-Key (ws_key_new),
 * WS_KEY_LEN characters, kept in r->ws_key; ignored (may be NULL)
 * otherwise. 0 or a negative status as above. */
int h2_request_end(struct h2_request *r, bool has_body, const char *ws_key);

#endif
