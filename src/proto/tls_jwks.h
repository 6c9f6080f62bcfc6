/* The OpenSSL side of JSON Web Key Sets (route/jwks.c, route/jwks_fetch.c):
 * public keys built from a JWK's members (tls_jwk.c), and one HTTPS GET
 * with the server's certificate and name verified (tls_get.c). Only these
 * files include OpenSSL for it. */
#ifndef SLUICE_PROTO_TLS_JWKS_H
#define SLUICE_PROTO_TLS_JWKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An RSA public key (EVP_PKEY, freed with tls_public_key_free) from the
 * big-endian modulus n and exponent e a JWK carries (RFC 7518 6.3.1),
 * checked by OpenSSL; NULL with why in err. */
void *tls_jwk_rsa(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen,
                  char *err, size_t errlen);
/* An EC P-256 public key from its coordinates (32 bytes each, RFC 7518
 * 6.2.1), which must be a point on the curve; NULL with why in err. */
void *tls_jwk_ec_p256(const unsigned char *x, const unsigned char *y, char *err, size_t errlen);

/* A client for tls_get: TLS 1.2 or later, the server's certificate checked
 * against the CA bundle in ca_file (NULL: the system's CAs). Shared by
 * nothing but the one thread that fetches. NULL with why in err. */
void *tls_get_client_new(const char *ca_file, char *err, size_t errlen);
void tls_get_client_free(void *client);

/* GET https://host:port/path, blocking, within timeout_ms all told: the
 * server's certificate must verify and name host (a DNS name, or an IP
 * address in its subjectAltName). A 200 answer's body (malloc'd, at most
 * max_body bytes, NUL-ended for the reader's convenience) into *body and
 * *len; 0, or -1 with why in why (nothing in *body). Any framing:
 * Content-Length, chunked, or until the close. */
int tls_get(void *client, const char *host, const char *port, const char *path, size_t max_body,
            uint64_t timeout_ms, char **body, size_t *len, char *why, size_t whylen);

#endif
