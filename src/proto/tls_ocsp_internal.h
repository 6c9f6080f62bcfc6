/* Shared by tls_ocsp.c (responses from files, the stapling callback) and
 * tls_ocsp_fetch.c (responses sluice fetches itself): one stapled
 * response per certificate. */
#ifndef SLUICE_PROTO_TLS_OCSP_INTERNAL_H
#define SLUICE_PROTO_TLS_OCSP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/x509.h>

#include "proto/tls.h"

#define TLS_OCSP_MAX_BYTES (64 * 1024)
#define TLS_OCSP_CLOCK_SKEW_S 300

/* Owner: the listener's struct tls_ctx (one per certificate). */
struct tls_ocsp {
    pthread_mutex_t lock;        /* der, len, next_update: a fetch swaps them while
                                    handshakes copy them */
    unsigned char *der;          /* NULL: nothing to staple (yet) */
    long len;
    time_t next_update;          /* stapled until then; (time_t)-1: no nextUpdate given */
    /* ocsp: auto; set once, before the fetcher sees the entry */
    bool is_auto;
    char *cert_path;             /* for logs */
    char *url;                   /* the responder, plain http:// */
    X509 *leaf, *issuer;
    /* the fetcher's own (tls_ocsp_fetch.c) */
    uint64_t due_s;              /* next fetch, monotonic seconds (under its lock) */
    uint64_t retry_s;            /* backoff after failures; 0 after a success */
    struct tls_ocsp *next_auto;  /* its list */
};

/* The certificate (first) and its issuer (the chain's certificate that
 * issued it) from a PEM file. 0, or -1 with why in err. */
int tls_ocsp_leaf_and_issuer(const char *cert_path, X509 **leaf, X509 **issuer, char *err,
                             size_t errlen);
time_t tls_ocsp_time(const ASN1_GENERALIZEDTIME *t);

/* What a DER OCSP response says about leaf, which issuer issued. */
enum tls_ocsp_read_result {
    TLS_OCSP_READ_OK,
    TLS_OCSP_READ_NOT_OCSP,           /* not a DER OCSP response */
    TLS_OCSP_READ_NO_ANSWER,          /* the responder did not succeed (*answer says how) */
    TLS_OCSP_READ_BAD_SIGNATURE,      /* verify: not signed by the issuer or its responder */
    TLS_OCSP_READ_NOT_ABOUT,          /* about another certificate */
};
struct tls_ocsp_said {
    const char *answer;               /* the responder's status, for messages */
    int status;                       /* V_OCSP_CERTSTATUS_GOOD, _REVOKED, _UNKNOWN */
    time_t this_update, next_update;  /* (time_t)-1: not given */
    bool current;                     /* within its validity, clock skew allowed */
};
/* verify: check the signature against the issuer (fetched responses; a
 * file is the operator's and its clients check it). */
enum tls_ocsp_read_result tls_ocsp_read(const unsigned char *der, long len, X509 *leaf,
                                        X509 *issuer, bool verify, struct tls_ocsp_said *said);
/* Replace the stapled response (der may be NULL: none); takes der. */
void tls_ocsp_set(struct tls_ocsp *o, unsigned char *der, long len, time_t next_update);

/* ocsp: auto. The certificate's responder URL (malloc'd), leaf and issuer
 * (the caller frees them), or -1 with why in err. */
int tls_ocsp_auto_check(const char *cert_path, char **url, X509 **leaf, X509 **issuer,
                        char *err, size_t errlen);
void tls_ocsp_auto_register(struct tls_ocsp *o);
void tls_ocsp_auto_unregister(struct tls_ocsp *o);

#endif
