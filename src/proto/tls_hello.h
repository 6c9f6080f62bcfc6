/* The server name (SNI, RFC 6066) of a TLS ClientHello, read from the first
 * bytes a client sends, without terminating TLS: what a tcp listener routes
 * on when it passes TLS through (HAProxy's req.ssl_sni, NGINX's
 * ssl_preread).
 *
 * The hello may come in several TLS records and several reads; the caller
 * keeps appending and calls again. Only the ClientHello's own framing is
 * checked (record and handshake headers, the lengths of every field up to
 * and inside the extensions); everything else is left to the backend that
 * terminates TLS. */
#ifndef SLUICE_PROTO_TLS_HELLO_H
#define SLUICE_PROTO_TLS_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_HELLO_MAX 16384       /* a ClientHello longer than this is not read */
#define TLS_HELLO_NAME_MAX 253    /* a DNS name, without the final dot */

enum tls_hello_result {
    TLS_HELLO_NEED_MORE = 0,      /* a valid beginning: read more */
    TLS_HELLO_OK = 1,             /* a whole ClientHello; name set ("" without SNI) */
    TLS_HELLO_NOT_TLS = -1,       /* not a TLS handshake, or a malformed or too long one */
};

/* Copy the n bytes at p to name (of TLS_HELLO_NAME_MAX + 1 bytes) in lower
 * case if they are a DNS name: letters, digits, '-' and '_' in labels of
 * 1..63 bytes between single dots. false, and name "", when they are not. */
bool tls_hello_name(const uint8_t *p, size_t n, char *name);

/* Read the ClientHello at p[0..n). On TLS_HELLO_OK, name (of
 * TLS_HELLO_NAME_MAX + 1 bytes) holds the host_name of the server_name
 * extension in lower case, or "" when there is none or it is not a valid
 * DNS name. */
int tls_hello_sni(const uint8_t *p, size_t n, char *name);

#endif
