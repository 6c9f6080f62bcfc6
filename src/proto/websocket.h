/* The two values of WebSocket's opening handshake (RFC 6455 4.1, 4.2.2)
 * that a client makes and checks: the nonce it sends as Sec-WebSocket-Key,
 * and the Sec-WebSocket-Accept the server must answer that nonce with.
 *
 * sluice needs them where it is the WebSocket client itself: an HTTP/2
 * client's extended CONNECT (RFC 8441) carries no key, so the HTTP/1.1
 * upgrade sluice sends its backend gets a fresh one (proxy/h2.c), and the
 * backend's 101 is checked against it before the tunnel opens. */
#ifndef SLUICE_PROTO_WEBSOCKET_H
#define SLUICE_PROTO_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>

#define WS_KEY_LEN 24           /* base64 of 16 random bytes */
#define WS_ACCEPT_LEN 28        /* base64 of a SHA-1 digest */

/* A fresh Sec-WebSocket-Key (NUL-ended). 0, or -1 when the kernel gave no
 * random bytes. */
int ws_key_new(char out[WS_KEY_LEN + 1]);

/* The Sec-WebSocket-Accept that answers key: base64(SHA-1(key + RFC 6455's
 * GUID)), NUL-ended. false when the digest could not be made. */
bool ws_accept_for(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);

/* Does a server's Sec-WebSocket-Accept value answer key? */
bool ws_accept_matches(const char *key, size_t key_len, const char *accept, size_t accept_len);

#endif
