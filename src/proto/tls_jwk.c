/* Public keys from the members of a JSON Web Key (RFC 7517, 7518): RSA
 * from n and e, EC P-256 from x and y, built with OpenSSL 3's
 * EVP_PKEY_fromdata and checked with EVP_PKEY_public_check, so that a key
 * a set publishes is a key OpenSSL would accept from a PEM file too: a
 * point off the curve or a malformed modulus is refused here, not met at
 * the first token. */
#include "proto/tls_jwks.h"

#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "proto/tls.h"

/* Build a public key of type from params, then check it. */
static void *from_params(const char *type, OSSL_PARAM_BLD *bld, char *err, size_t errlen)
{
    OSSL_PARAM *params = bld ? OSSL_PARAM_BLD_to_param(bld) : NULL;
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
    EVP_PKEY_CTX *check = NULL;
    EVP_PKEY *k = NULL;
    char why[256];

    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        snprintf(err, errlen, "not a valid %s public key (%s)", type, tls_error(why, sizeof(why)));
        k = NULL;
    } else if (!(check = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL)) ||
               EVP_PKEY_public_check(check) != 1) {
        snprintf(err, errlen, "not a valid %s public key (%s)", type, tls_error(why, sizeof(why)));
        EVP_PKEY_free(k);
        k = NULL;
    }
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    ERR_clear_error();
    return k;
}

void *tls_jwk_rsa(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen,
                  char *err, size_t errlen)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    void *k = NULL;

    if (!bld || !bn || !be || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) != 1)
        snprintf(err, errlen, "out of memory");
    else
        k = from_params("RSA", bld, err, errlen);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return k;
}

void *tls_jwk_ec_p256(const unsigned char *x, const unsigned char *y, char *err, size_t errlen)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    unsigned char point[65];
    void *k = NULL;

    point[0] = 0x04;                     /* uncompressed: x then y */
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    if (!bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
                                         sizeof(point)) != 1)
        snprintf(err, errlen, "out of memory");
    else
        k = from_params("EC", bld, err, errlen);
    OSSL_PARAM_BLD_free(bld);
    return k;
}
