/* TLS glue: OpenSSL server contexts for a listener's certificates, and
 * non-blocking handshake, read and write on one connection's socket, for
 * edge-triggered epoll.
 *
 * A listener with `tls` gets one struct tls_ctx, built by the runtime at
 * startup and shared read-only by every worker (OpenSSL's SSL_CTX is safe to
 * share once set up). It holds one SSL_CTX per certificate; the handshake
 * picks the one whose names (subjectAltName, else CN; wildcards allowed)
 * match the client's SNI, else the first. */
#ifndef SLUICE_PROTO_TLS_H
#define SLUICE_PROTO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config/config.h"

struct tls_ctx;
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

/* Results of tls_handshake, tls_read and tls_write besides a byte count. */
enum {
    TLS_WANT_READ = -1,     /* wait until the socket is readable, call again */
    TLS_WANT_WRITE = -2,    /* wait until it is writable, call again */
    TLS_CLOSED = -3,        /* the peer closed (close_notify, or EOF) */
    TLS_FAILED = -4,        /* a protocol error or a reset: close the connection */
};

/* Check that cert (a PEM file: the certificate, then its chain) and key
 * load and belong together. 0, or -1 with why in err. */
int tls_check_pair(const char *cert, const char *key, char *err, size_t errlen);

/* OCSP stapling (tls_ocsp.c): the DER OCSP response in ocsp_path, checked
 * to be a successful answer about the certificate in cert_path (whose file
 * must hold its issuer after it) that says "good". 0; 1 when it is out of
 * date (*out is set, and a warning in err); -1 with why in err. */
struct tls_ocsp;
int tls_ocsp_load(const char *cert_path, const char *ocsp_path, struct tls_ocsp **out,
                  char *err, size_t errlen);
void tls_ocsp_free(struct tls_ocsp *o);
/* ocsp: auto: nothing stapled until the fetcher thread (tls_ocsp_fetch.c)
 * has a good answer from the certificate's responder. NULL with why in err
 * (no responder URL, not http://, no issuer in the chain). */
struct tls_ocsp *tls_ocsp_auto_new(const char *cert_path, char *err, size_t errlen);
/* The same checks for `sluice check`, without an entry. 0 or -1. */
int tls_ocsp_auto_usable(const char *cert_path, char *err, size_t errlen);
/* The fetcher thread: started once every context is built (a no-op
 * without ocsp: auto), stopped before any is freed. 0 or -errno. */
int tls_ocsp_fetcher_start(void);
void tls_ocsp_fetcher_stop(void);
/* Is a current response there to staple? */
bool tls_ocsp_current(struct tls_ocsp *o);
/* Certificate i of t (config order): 1 while it has a current OCSP
 * response to staple, 0 while it has none, -1 when it has no ocsp setting. */
int tls_ctx_ocsp_stapled(struct tls_ctx *t, size_t i);
/* Staple o on ctx's handshakes that ask for it, while it is current. */
void tls_ocsp_attach(SSL_CTX *ctx, struct tls_ocsp *o);

/* Check that a CA bundle loads. 0, or -1 with why in err. */
int tls_check_ca(const char *ca_file, char *err, size_t errlen);

/* The client context of a pool's tls block (towards its backends); NULL
 * with why in err. h2: an HTTP/2 pool's, which asks for ALPN h2. */
struct tls_client;
struct tls_client *tls_client_new(const struct conf_upstream_tls *conf, bool h2, char *err,
                                  size_t errlen);
/* Did the server agree to h2 in ALPN? */
bool tls_alpn_h2(SSL *s);
void tls_client_free(struct tls_client *t);
/* A client-side TLS connection on fd (non-blocking, connected) to a backend
 * whose address is ip (checked against the certificate when the pool has
 * no server_name); NULL when out of memory. Drive it with tls_handshake. */
SSL *tls_client_conn(struct tls_client *t, int fd, const char *ip);

/* What a listener offers in ALPN. */
enum tls_alpn {
    TLS_ALPN_NONE,       /* tcp listeners */
    TLS_ALPN_HTTP1,      /* http/1.1 */
    TLS_ALPN_H2,         /* h2, then http/1.1 */
};

/* The server contexts for a listener's tls block; NULL with why in err. */
struct tls_ctx *tls_ctx_new(const struct conf_tls *conf, enum tls_alpn alpn, char *err,
                            size_t errlen);
void tls_ctx_free(struct tls_ctx *t);

/* A server-side TLS connection on fd (non-blocking); NULL when out of memory. */
SSL *tls_new(struct tls_ctx *t, int fd);
/* Free it without a close_notify: a connection that ends cleanly sends one
 * first with tls_shutdown; one cut short must not look whole. */
void tls_free(SSL *s);

/* 1 when the handshake is done, else TLS_WANT_READ/WRITE or TLS_FAILED. */
int tls_handshake(SSL *s);
/* The handshake for a connection whose socket readiness the caller keeps
 * in *readable and *writable (edge-triggered epoll): a step runs only when
 * the flag it waits for (*want) is set. 1: done. 0: waiting (that flag was
 * cleared). -1: failed; tls_error() tells why; close the connection. */
int tls_handshake_step(SSL *s, int *want, bool *readable, bool *writable);
/* Log a failed handshake: event=tls_handshake_failed WHO peer=ADDR why=... */
struct addr;
void tls_log_failure(const char *who, const struct addr *peer);
/* Bytes read (> 0), or TLS_WANT_READ/WRITE, TLS_CLOSED, TLS_FAILED. A read
 * may leave decrypted bytes inside OpenSSL: only TLS_WANT_READ says the
 * socket is drained. */
ssize_t tls_read(SSL *s, void *buf, size_t len);
/* Bytes written (> 0), or TLS_WANT_WRITE/READ, TLS_FAILED. After a WANT,
 * call again with at least the bytes not written (buffers may move). */
ssize_t tls_write(SSL *s, const void *buf, size_t len);
/* send and recv on a socket that speaks TLS when s is set, plain when it
 * is NULL, with the socket calls' conventions: bytes, 0 at the end (EOF or
 * close_notify), or -1 with errno EAGAIN (TLS or the socket must wait),
 * EPIPE or ECONNRESET. A TLS read may leave decrypted bytes in OpenSSL: only
 * EAGAIN says a TLS socket is drained. */
ssize_t tls_sock_send(SSL *s, int fd, const void *p, size_t n);
ssize_t tls_sock_recv(SSL *s, int fd, void *p, size_t n);

/* Send close_notify (no wait for the peer's), once; not after a failure or
 * before the handshake finished. */
void tls_shutdown(SSL *s);

/* Why the last call on this thread failed, for the log (OpenSSL's error
 * queue, emptied). */
const char *tls_error(char *buf, size_t len);
/* The subject of the certificate the peer showed (mTLS), RFC 2253
 * ("CN=ann,O=Example"), into out; its length, or -1 when there is none. */
int tls_peer_subject(SSL *s, char *out, size_t size);

/* The server name the client asked for in its handshake (SNI), or NULL. */
const char *tls_server_name(SSL *s);
/* JWT signatures (route/jwt.c). A PEM public key: its algorithm (2 RS256
 * for RSA, 3 ES256 for EC P-256) and the key, or NULL with why in err. */
void *tls_public_key_load(const char *path, int *alg, char *err, size_t errlen);
void tls_public_key_free(void *key);
/* Does sig sign data under key with alg (RS256: PKCS#1 v1.5 SHA-256; ES256:
 * r||s, 64 bytes)? HS256: HMAC-SHA-256 with secret, compared in constant
 * time. */
bool tls_jws_verify(int alg, void *key, const unsigned char *secret, size_t secret_len,
                    const void *data, size_t len, const unsigned char *sig, size_t siglen);

#endif
