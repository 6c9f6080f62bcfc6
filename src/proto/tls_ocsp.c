/* OCSP stapling from a file (tls.h has the contract): a DER OCSP response
 * for a certificate, fetched by the operator's job (`openssl ocsp`,
 * certbot, a cron script) and sent to clients that ask for it in the
 * handshake (status_request), as NGINX's ssl_stapling_file and HAProxy's
 * .ocsp files do; and the callback that staples, for those and for the
 * responses tls_ocsp_fetch.c fetches (`ocsp: auto`). A handshake never
 * waits on the responder. */
#include "proto/tls_ocsp_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>


static unsigned char *read_file(const char *path, long *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t n = 0;

    if (!f) {
        snprintf(err, errlen, "cannot read '%s': %m", path);
        return NULL;
    }
    if (!(buf = malloc(TLS_OCSP_MAX_BYTES + 1))) {
        snprintf(err, errlen, "out of memory");
    } else if ((n = fread(buf, 1, TLS_OCSP_MAX_BYTES + 1, f)) == 0 || n > TLS_OCSP_MAX_BYTES) {
        snprintf(err, errlen, "'%s' is %s", path, n ? "larger than 64k" : "empty");
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (long)n;
    return buf;
}

int tls_ocsp_leaf_and_issuer(const char *cert_path, X509 **leaf, X509 **issuer, char *err,
                             size_t errlen)
{
    BIO *b = BIO_new_file(cert_path, "r");
    X509 *x;

    *leaf = *issuer = NULL;
    if (!b || !(*leaf = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        snprintf(err, errlen, "cannot load certificate '%s'", cert_path);
        BIO_free(b);
        return -1;
    }
    while (!*issuer && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (X509_check_issued(x, *leaf) == X509_V_OK)
            *issuer = x;
        else
            X509_free(x);
    }
    BIO_free(b);
    if (!*issuer) {
        snprintf(err, errlen, "'%s' does not hold the issuer of its certificate after it (the "
                 "chain), which the OCSP response must be checked against", cert_path);
        X509_free(*leaf);
        *leaf = NULL;
        return -1;
    }
    return 0;
}

time_t tls_ocsp_time(const ASN1_GENERALIZEDTIME *t)
{
    struct tm tm;

    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return (time_t)-1;
    return timegm(&tm);
}

enum tls_ocsp_read_result tls_ocsp_read(const unsigned char *der, long len, X509 *leaf,
                                        X509 *issuer, bool verify, struct tls_ocsp_said *said)
{
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, len);
    OCSP_BASICRESP *basic = NULL;
    OCSP_CERTID *id = NULL;
    STACK_OF(X509) *signers = NULL;
    X509_STORE *store = NULL;
    ASN1_GENERALIZEDTIME *this_upd = NULL, *next_upd = NULL;
    enum tls_ocsp_read_result rc;
    int reason;

    said->answer = "";
    said->status = -1;
    if (!resp || p != der + len) {
        rc = TLS_OCSP_READ_NOT_OCSP;
        goto out;
    }
    said->answer = OCSP_response_status_str(OCSP_response_status(resp));
    if (OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL ||
        !(basic = OCSP_response_get1_basic(resp))) {
        rc = TLS_OCSP_READ_NO_ANSWER;
        goto out;
    }
    if (verify) {
        /* Signed by the issuer, or by a responder certificate it issued for
         * OCSP signing: the issuer is the trust anchor. */
        rc = TLS_OCSP_READ_BAD_SIGNATURE;
        if (!(signers = sk_X509_new_null()) || !(store = X509_STORE_new()) ||
            !X509_STORE_add_cert(store, issuer) || !sk_X509_push(signers, issuer))
            goto out;
        X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
        if (OCSP_basic_verify(basic, signers, store, 0) != 1)
            goto out;
    }
    if (!(id = OCSP_cert_to_id(NULL, leaf, issuer)) ||
        OCSP_resp_find_status(basic, id, &said->status, &reason, NULL, &this_upd,
                              &next_upd) != 1) {
        rc = TLS_OCSP_READ_NOT_ABOUT;
        goto out;
    }
    said->this_update = tls_ocsp_time(this_upd);
    said->next_update = tls_ocsp_time(next_upd);
    said->current = OCSP_check_validity(this_upd, next_upd, TLS_OCSP_CLOCK_SKEW_S, -1) == 1;
    rc = TLS_OCSP_READ_OK;
out:
    OCSP_CERTID_free(id);
    OCSP_BASICRESP_free(basic);
    OCSP_RESPONSE_free(resp);
    sk_X509_free(signers);
    X509_STORE_free(store);
    return rc;
}

int tls_ocsp_load(const char *cert_path, const char *ocsp_path, struct tls_ocsp **out,
                  char *err, size_t errlen)
{
    X509 *leaf = NULL, *issuer = NULL;
    struct tls_ocsp_said said;
    struct tls_ocsp *o = NULL;
    unsigned char *der;
    int rc = -1;
    long len;

    *out = NULL;
    if (!(der = read_file(ocsp_path, &len, err, errlen)))
        return -1;
    if (tls_ocsp_leaf_and_issuer(cert_path, &leaf, &issuer, err, errlen) < 0)
        goto out;
    switch (tls_ocsp_read(der, len, leaf, issuer, false, &said)) {
    case TLS_OCSP_READ_OK:
        break;
    case TLS_OCSP_READ_NO_ANSWER:
        snprintf(err, errlen, "'%s': the responder did not answer (%s)", ocsp_path, said.answer);
        goto out;
    case TLS_OCSP_READ_NOT_ABOUT:
        snprintf(err, errlen, "'%s' is not about the certificate in '%s'", ocsp_path, cert_path);
        goto out;
    default:
        snprintf(err, errlen, "'%s' is not an OCSP response (DER, as `openssl ocsp -respout` "
                 "writes)", ocsp_path);
        goto out;
    }
    if (said.status != V_OCSP_CERTSTATUS_GOOD) {
        snprintf(err, errlen, "'%s' says the certificate in '%s' is %s", ocsp_path, cert_path,
                 OCSP_cert_status_str(said.status));
        goto out;
    }
    if (!(o = calloc(1, sizeof(*o)))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    pthread_mutex_init(&o->lock, NULL);
    o->der = der;
    o->len = len;
    o->next_update = said.next_update;
    der = NULL;
    *out = o;
    rc = 0;
    if (!said.current) {
        snprintf(err, errlen, "'%s' is out of date (or not valid yet): it is not stapled until "
                 "a current one is loaded", ocsp_path);
        rc = 1;
    }
out:
    X509_free(leaf);
    X509_free(issuer);
    free(der);
    return rc;
}

struct tls_ocsp *tls_ocsp_auto_new(const char *cert_path, char *err, size_t errlen)
{
    struct tls_ocsp *o = calloc(1, sizeof(*o));

    if (!o || !(o->cert_path = strdup(cert_path))) {
        free(o);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&o->lock, NULL);
    o->is_auto = true;
    o->next_update = (time_t)-1;
    if (tls_ocsp_auto_check(cert_path, &o->url, &o->leaf, &o->issuer, err, errlen) < 0) {
        tls_ocsp_free(o);
        return NULL;
    }
    tls_ocsp_auto_register(o);
    return o;
}

int tls_ocsp_auto_usable(const char *cert_path, char *err, size_t errlen)
{
    X509 *leaf, *issuer;
    char *url;

    if (tls_ocsp_auto_check(cert_path, &url, &leaf, &issuer, err, errlen) < 0)
        return -1;
    free(url);
    X509_free(leaf);
    X509_free(issuer);
    return 0;
}

void tls_ocsp_set(struct tls_ocsp *o, unsigned char *der, long len, time_t next_update)
{
    unsigned char *old;

    pthread_mutex_lock(&o->lock);
    old = o->der;
    o->der = der;
    o->len = der ? len : 0;
    o->next_update = next_update;
    pthread_mutex_unlock(&o->lock);
    free(old);
}

void tls_ocsp_free(struct tls_ocsp *o)
{
    if (!o)
        return;
    if (o->is_auto)
        tls_ocsp_auto_unregister(o);
    free(o->der);
    free(o->cert_path);
    free(o->url);
    X509_free(o->leaf);
    X509_free(o->issuer);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

static bool current(const struct tls_ocsp *o)
{
    return o->der && (o->next_update == (time_t)-1 ||
                      time(NULL) <= o->next_update + TLS_OCSP_CLOCK_SKEW_S);
}

bool tls_ocsp_current(struct tls_ocsp *o)
{
    bool yes;

    pthread_mutex_lock(&o->lock);
    yes = current(o);
    pthread_mutex_unlock(&o->lock);
    return yes;
}

/* The client asked for the certificate's status: staple the response while
 * it is current. OpenSSL frees what it is given. */
static int on_status(SSL *s, void *arg)
{
    struct tls_ocsp *o = arg;
    unsigned char *copy = NULL;
    long len = 0;

    if (!o)
        return SSL_TLSEXT_ERR_NOACK;
    pthread_mutex_lock(&o->lock);
    if (current(o)) {
        copy = OPENSSL_memdup(o->der, (size_t)o->len);
        len = o->len;
    }
    pthread_mutex_unlock(&o->lock);
    if (!copy)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_set_tlsext_status_ocsp_resp(s, copy, len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

void tls_ocsp_attach(SSL_CTX *ctx, struct tls_ocsp *o)
{
    SSL_CTX_set_tlsext_status_cb(ctx, on_status);
    SSL_CTX_set_tlsext_status_arg(ctx, o);
}
