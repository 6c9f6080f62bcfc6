/* TLS glue over OpenSSL 3 (tls.h has the contract). */
#include "proto/tls.h"

#include "core/log.h"
#include "net/addr.h"

#include <errno.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct tls_cert {
    SSL_CTX *ctx;
    X509 *leaf;                  /* for matching SNI; owned by ctx */
    struct tls_ocsp *ocsp;       /* the stapled response; NULL = none */
};

struct tls_ctx {
    struct tls_cert *certs;
    size_t n;
};

const char *tls_error(char *buf, size_t len)
{
    unsigned long e = ERR_get_error(), more;

    if (!e) {
        snprintf(buf, len, "%s", errno ? strerror(errno) : "unknown error");
        return buf;
    }
    ERR_error_string_n(e, buf, len);
    while ((more = ERR_get_error()) != 0) {
    }
    return buf;
}

/* The passphrase of an encrypted key: sluice has none to give. Without
 * this, OpenSSL prompts for one on the terminal or stdin and waits there,
 * holding `sluice check`, a start or a reload's new process. *asked (when
 * given) notes that the key wanted one. */
static int no_passphrase(char *buf, int size, int rwflag, void *asked)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    if (asked)
        *(bool *)asked = true;
    return -1;
}

int tls_check_pair(const char *cert, const char *key, char *err, size_t errlen)
{
    BIO *cb = NULL, *kb = NULL;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    SSL_CTX *ctx = NULL;
    char why[256];
    bool encrypted = false;
    int rc = -1;

    ERR_clear_error();
    if (!(cb = BIO_new_file(cert, "r")) || !(x = PEM_read_bio_X509(cb, NULL, NULL, NULL)))
        snprintf(err, errlen, "cannot load certificate '%s': %s", cert,
                 tls_error(why, sizeof(why)));
    else if (!(kb = BIO_new_file(key, "r")) ||
             !(k = PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, &encrypted))) {
        if (encrypted)
            snprintf(err, errlen, "private key '%s' is encrypted: give it without a passphrase "
                     "(readable by sluice's user only)", key);
        else
            snprintf(err, errlen, "cannot load private key '%s': %s", key,
                     tls_error(why, sizeof(why)));
    } else if (X509_check_private_key(x, k) != 1)
        snprintf(err, errlen, "private key '%s' does not belong to certificate '%s'", key, cert);
    else if (!(ctx = SSL_CTX_new(TLS_server_method())) ||
             SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        snprintf(err, errlen, "cannot load the chain in '%s': %s", cert,
                 tls_error(why, sizeof(why)));
    else
        rc = 0;
    SSL_CTX_free(ctx);
    EVP_PKEY_free(k);
    X509_free(x);
    BIO_free(kb);
    BIO_free(cb);
    ERR_clear_error();
    return rc;
}

/* SNI: switch to the context of the first certificate that names the host.
 * No match (or no SNI) keeps the first, the default. */
static int on_servername(SSL *s, int *alert, void *arg)
{
    struct tls_ctx *t = arg;
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);

    (void)alert;
    if (!name || !*name)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < t->n; i++)
        if (X509_check_host(t->certs[i].leaf, name, strlen(name), 0, NULL) == 1) {
            if (i)
                SSL_set_SSL_CTX(s, t->certs[i].ctx);
            return SSL_TLSEXT_ERR_OK;
        }
    return SSL_TLSEXT_ERR_OK;
}

/* ALPN for http listeners: HTTP/1.1, and h2 first where the listener has
 * http2 (arg non-NULL); a client that offers nothing we speak gets no ALPN
 * and falls back or fails itself. */
static int on_alpn(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h1[] = "\x08http/1.1", both[] = "\x02h2\x08http/1.1";
    const unsigned char *ours = arg ? both : h1;
    unsigned ours_len = arg ? sizeof(both) - 1 : sizeof(h1) - 1;

    (void)s;
    if (SSL_select_next_proto((unsigned char **)out, outlen, ours, ours_len, in,
                              inlen) == OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *ctx_for(const struct conf_tls *conf, const struct conf_tls_cert *c, enum tls_alpn alpn,
                        char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (!ctx) {
        tls_error(err, errlen);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, conf->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    /* Partial writes and moving buffers: sluice writes what its buffers
     * hold and compacts them between tries. No renegotiation. Buffers are
     * given back while a connection is idle, as sluice's own are. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                             SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "certificate '%s': %s", c->cert, tls_error((char[256]){0}, 256));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (alpn != TLS_ALPN_NONE)
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn, alpn == TLS_ALPN_H2 ? (void *)ctx : NULL);
    if (conf->client_ca) {
        /* mTLS: no certificate from these CAs, no handshake. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(conf->client_ca);

        if (SSL_CTX_load_verify_locations(ctx, conf->client_ca, NULL) != 1 || !names) {
            snprintf(err, errlen, "client_ca '%s': %s", conf->client_ca,
                     tls_error((char[256]){0}, 256));
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
}

struct tls_ctx *tls_ctx_new(const struct conf_tls *conf, enum tls_alpn alpn, char *err,
                            size_t errlen)
{
    struct tls_ctx *t = calloc(1, sizeof(*t));

    if (!t || !(t->certs = calloc(conf->ncerts ? conf->ncerts : 1, sizeof(*t->certs)))) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < conf->ncerts; i++) {
        SSL_CTX *ctx = ctx_for(conf, &conf->certs[i], alpn, err, errlen);

        if (!ctx) {
            tls_ctx_free(t);
            return NULL;
        }
        t->certs[t->n].ctx = ctx;
        t->certs[t->n].leaf = SSL_CTX_get0_certificate(ctx);
        t->n++;
        if (conf->certs[i].ocsp_auto) {
            char why[512];
            struct tls_ocsp *o = tls_ocsp_auto_new(conf->certs[i].cert, why, sizeof(why));

            if (!o) {
                snprintf(err, errlen, "ocsp: auto: %s", why);
                tls_ctx_free(t);
                return NULL;
            }
            t->certs[t->n - 1].ocsp = o;
            tls_ocsp_attach(ctx, o);
        } else if (conf->certs[i].ocsp) {
            struct tls_ocsp *o;
            char why[512];
            int rc = tls_ocsp_load(conf->certs[i].cert, conf->certs[i].ocsp, &o, why, sizeof(why));

            if (rc < 0) {
                snprintf(err, errlen, "ocsp: %s", why);
                tls_ctx_free(t);
                return NULL;
            }
            if (rc > 0)
                log_warn("event=tls_ocsp_stale why=\"%s\"", why);
            t->certs[t->n - 1].ocsp = o;
            tls_ocsp_attach(ctx, o);
        }
    }
    /* SNI is looked at on the first (default) context. Session ids are
     * scoped per context; one id for all lets a resumed session cross. */
    SSL_CTX_set_tlsext_servername_callback(t->certs[0].ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(t->certs[0].ctx, t);
    for (size_t i = 0; i < t->n; i++)
        SSL_CTX_set_session_id_context(t->certs[i].ctx, (const unsigned char *)"sluice", 6);
    return t;
}

int tls_ctx_ocsp_stapled(struct tls_ctx *t, size_t i)
{
    if (!t || i >= t->n || !t->certs[i].ocsp)
        return -1;
    return tls_ocsp_current(t->certs[i].ocsp);
}

void tls_ctx_free(struct tls_ctx *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        SSL_CTX_free(t->certs[i].ctx);
        tls_ocsp_free(t->certs[i].ocsp);
    }
    free(t->certs);
    free(t);
}

SSL *tls_new(struct tls_ctx *t, int fd)
{
    SSL *s = SSL_new(t->certs[0].ctx);

    if (!s)
        return NULL;
    if (SSL_set_fd(s, fd) != 1) {
        SSL_free(s);
        return NULL;
    }
    SSL_set_accept_state(s);
    return s;
}

void tls_shutdown(SSL *s)
{
    /* Once: a second SSL_shutdown would read from the socket, waiting for
     * the peer's close_notify. */
    if (SSL_is_init_finished(s) && !(SSL_get_shutdown(s) & SSL_SENT_SHUTDOWN))
        SSL_shutdown(s);
    ERR_clear_error();
}

void tls_free(SSL *s)
{
    if (!s)
        return;
    /* Quiet: no close_notify read back, and the socket is closed next. */
    SSL_set_quiet_shutdown(s, 1);
    SSL_free(s);
    ERR_clear_error();
}

/* Map SSL_get_error for a call that returned r <= 0. */
static int result(SSL *s, int r)
{
    switch (SSL_get_error(s, r)) {
    case SSL_ERROR_WANT_READ:
        return TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        /* EOF without close_notify: a close like any other for HTTP/1.1,
         * whose messages carry their own framing. Only with errno 0: the
         * _ex calls give r == 0 for every failure, and a reset
         * (ECONNRESET) read as a clean end would pass a cut stream on as a
         * whole one (a close-delimited body, an L4 stream). */
        if (ERR_peek_error() == 0 && errno == 0)
            return TLS_CLOSED;
        return TLS_FAILED;
    case SSL_ERROR_SSL:
        /* OpenSSL 3 reports an EOF without close_notify this way too. */
        if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            return TLS_CLOSED;
        }
        return TLS_FAILED;
    default:
        return TLS_FAILED;
    }
}

int tls_handshake(SSL *s)
{
    int r;

    ERR_clear_error();
    errno = 0;
    r = SSL_do_handshake(s);
    if (r == 1)
        return 1;
    r = result(s, r);
    if (r == TLS_CLOSED) {
        /* The peer left before the handshake finished: nothing in the
         * error queue says so, and the log's why= reads it (tls_error). */
        ERR_raise(ERR_LIB_SSL, SSL_R_UNEXPECTED_EOF_WHILE_READING);
        return TLS_FAILED;
    }
    return r;
}

void tls_log_failure(const char *who, const struct addr *peer)
{
    char p[ADDR_TEXT_MAX], why[256];

    log_info("event=tls_handshake_failed %s peer=%s why=\"%s\"", who,
             addr_format(peer, p, sizeof(p)), tls_error(why, sizeof(why)));
}

int tls_handshake_step(SSL *s, int *want, bool *readable, bool *writable)
{
    int r;

    if ((*want == TLS_WANT_READ && !*readable) || (*want == TLS_WANT_WRITE && !*writable))
        return 0;
    r = tls_handshake(s);
    if (r == 1)
        return 1;
    if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) {
        *want = r;
        if (r == TLS_WANT_READ)
            *readable = false;
        else
            *writable = false;
        return 0;
    }
    return -1;
}

ssize_t tls_read(SSL *s, void *buf, size_t len)
{
    size_t got = 0;

    ERR_clear_error();
    errno = 0;
    if (SSL_read_ex(s, buf, len, &got) == 1)
        return (ssize_t)got;
    return result(s, 0);
}

ssize_t tls_write(SSL *s, const void *buf, size_t len)
{
    size_t put = 0;

    ERR_clear_error();
    errno = 0;
    if (SSL_write_ex(s, buf, len, &put) == 1)
        return (ssize_t)put;
    return result(s, 0);
}

const char *tls_server_name(SSL *s)
{
    return SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
}

int tls_peer_subject(SSL *s, char *out, size_t size)
{
    X509 *peer = SSL_get0_peer_certificate(s);
    BIO *b;
    int n;

    if (!peer || !(b = BIO_new(BIO_s_mem())))
        return -1;
    /* RFC 2253 with UTF-8 left as it is, but no control bytes or newlines. */
    X509_NAME_print_ex(b, X509_get_subject_name(peer), 0,
                       (XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) | ASN1_STRFLGS_ESC_CTRL);
    n = BIO_read(b, out, (int)size - 1);
    BIO_free(b);
    if (n <= 0)
        return -1;
    out[n] = '\0';
    return n;
}

/* ---- towards backends ---- */

struct tls_client {
    SSL_CTX *ctx;
    const struct conf_upstream_tls *conf;
};

int tls_check_ca(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char why[256];
    int rc = 0;

    ERR_clear_error();
    if (!ctx || SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        snprintf(err, errlen, "cannot load CA certificates from '%s': %s", ca_file,
                 tls_error(why, sizeof(why)));
        rc = -1;
    }
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

struct tls_client *tls_client_new(const struct conf_upstream_tls *conf, bool h2, char *err,
                                  size_t errlen)
{
    struct tls_client *t = calloc(1, sizeof(*t));
    char why[256];

    if (!t || !(t->ctx = SSL_CTX_new(TLS_client_method()))) {
        free(t);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->conf = conf;
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                             SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* HTTP/2 pools ask for h2 (and take nothing else, see tls_alpn_h2). */
    if (h2 && SSL_CTX_set_alpn_protos(t->ctx, (const unsigned char *)"\x02h2", 3) != 0) {
        snprintf(err, errlen, "out of memory");
        tls_client_free(t);
        return NULL;
    }
    SSL_CTX_set_default_passwd_cb(t->ctx, no_passphrase);
    if (conf->cert && (SSL_CTX_use_certificate_chain_file(t->ctx, conf->cert) != 1 ||
                       SSL_CTX_use_PrivateKey_file(t->ctx, conf->key, SSL_FILETYPE_PEM) != 1)) {
        snprintf(err, errlen, "client certificate '%s': %s", conf->cert, tls_error(why, sizeof(why)));
        tls_client_free(t);
        return NULL;
    }
    if (conf->verify) {
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
        if ((conf->ca_file ? SSL_CTX_load_verify_locations(t->ctx, conf->ca_file, NULL)
                           : SSL_CTX_set_default_verify_paths(t->ctx)) != 1) {
            snprintf(err, errlen, "cannot load CA certificates: %s", tls_error(why, sizeof(why)));
            tls_client_free(t);
            return NULL;
        }
    }
    return t;
}

ssize_t tls_sock_send(SSL *s, int fd, const void *p, size_t n)
{
    ssize_t r;

    if (!s)
        return send(fd, p, n, MSG_NOSIGNAL);
    if ((r = tls_write(s, p, n)) > 0)
        return r;
    errno = r == TLS_WANT_WRITE || r == TLS_WANT_READ ? EAGAIN : EPIPE;
    return -1;
}

ssize_t tls_sock_recv(SSL *s, int fd, void *p, size_t n)
{
    ssize_t r;

    if (!s)
        return recv(fd, p, n, 0);
    if ((r = tls_read(s, p, n)) > 0)
        return r;
    if (r == TLS_CLOSED)
        return 0;
    errno = r == TLS_WANT_WRITE || r == TLS_WANT_READ ? EAGAIN : ECONNRESET;
    return -1;
}

bool tls_alpn_h2(SSL *s)
{
    const unsigned char *p;
    unsigned int len;

    SSL_get0_alpn_selected(s, &p, &len);
    return len == 2 && memcmp(p, "h2", 2) == 0;
}

void tls_client_free(struct tls_client *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

SSL *tls_client_conn(struct tls_client *t, int fd, const char *ip)
{
    SSL *s = SSL_new(t->ctx);
    bool ok;

    if (!s)
        return NULL;
    ok = SSL_set_fd(s, fd) == 1;
    if (ok && t->conf->server_name) {
        ok = SSL_set_tlsext_host_name(s, t->conf->server_name) == 1 &&
             (!t->conf->verify || SSL_set1_host(s, t->conf->server_name) == 1);
    } else if (ok && t->conf->verify) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), ip) == 1;
    }
    if (!ok) {
        SSL_free(s);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_connect_state(s);
    return s;
}

/* ---- JWS signatures ---- */

void *tls_public_key_load(const char *path, int *alg, char *err, size_t errlen)
{
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
    char why[256];

    BIO_free(b);
    if (!k) {
        snprintf(err, errlen, "cannot load a PEM public key from '%s': %s", path,
                 tls_error(why, sizeof(why)));
        return NULL;
    }
    if (EVP_PKEY_is_a(k, "RSA") && EVP_PKEY_get_bits(k) >= 2048) {
        *alg = 2;
    } else if (EVP_PKEY_is_a(k, "EC")) {
        char group[32] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof(group), &glen) != 1 ||
            strcmp(group, "prime256v1") != 0) {
            snprintf(err, errlen, "'%s': an EC key must be on P-256 (ES256)", path);
            EVP_PKEY_free(k);
            return NULL;
        }
        *alg = 3;
    } else {
        snprintf(err, errlen, "'%s': use an RSA key of 2048 bits or more (RS256) or an EC "
                 "P-256 key (ES256)", path);
        EVP_PKEY_free(k);
        return NULL;
    }
    ERR_clear_error();
    return k;
}

void tls_public_key_free(void *key)
{
    EVP_PKEY_free(key);
}

bool tls_jws_verify(int alg, void *key, const unsigned char *secret, size_t secret_len,
                    const void *data, size_t len, const unsigned char *sig, size_t siglen)
{
    unsigned char mac[EVP_MAX_MD_SIZE], der[80];
    unsigned int maclen = 0;
    EVP_MD_CTX *ctx;
    bool ok = false;

    if (alg == 1) {
        if (!HMAC(EVP_sha256(), secret, (int)secret_len, data, len, mac, &maclen) ||
            siglen != maclen)
            return false;
        return CRYPTO_memcmp(mac, sig, siglen) == 0;
    }
    if (alg == 3) {
        /* JWS carries r||s; OpenSSL verifies DER. */
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r, *s;
        unsigned char *p = der;
        int n;

        if (!es || siglen != 64) {
            ECDSA_SIG_free(es);
            return false;
        }
        r = BN_bin2bn(sig, 32, NULL);
        s = BN_bin2bn(sig + 32, 32, NULL);
        if (!r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return false;
        }
        n = i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        if (n <= 0 || (size_t)n > sizeof(der))
            return false;
        sig = der;
        siglen = (size_t)n;
    }
    if (!(ctx = EVP_MD_CTX_new()))
        return false;
    ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
         EVP_DigestVerify(ctx, sig, siglen, data, len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}
