/* proto/tls_hello: the server name of real ClientHellos (made by OpenSSL
 * into a memory BIO), fed whole, cut at every byte, and re-framed into
 * several records; hellos without SNI or with a name that is not a DNS
 * name; and bytes that are not TLS. */
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tls_hello.h"
#include "test.h"

/* The first flight of an OpenSSL client asking for sni (NULL: none). */
static size_t client_hello(const char *sni, uint8_t *out, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    int n;

    SSL_set_bio(ssl, rbio, wbio);
    if (sni)
        SSL_set_tlsext_host_name(ssl, sni);
    SSL_set_connect_state(ssl);
    SSL_do_handshake(ssl);               /* writes the hello, then wants to read */
    n = BIO_read(wbio, out, (int)cap);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return n > 0 ? (size_t)n : 0;
}

static int sni_of(const uint8_t *p, size_t n, char *name)
{
    return tls_hello_sni(p, n, name);
}

/* The hello's handshake message re-framed into records of at most frag
 * bytes each. */
static size_t reframe(const uint8_t *in, size_t n, size_t frag, uint8_t *out)
{
    size_t body = (size_t)in[3] << 8 | in[4], at = 0, o = 0;

    CHECK(n == 5 + body);
    while (at < body) {
        size_t k = body - at < frag ? body - at : frag;
        out[o++] = 22;
        out[o++] = 3;
        out[o++] = 1;
        out[o++] = (uint8_t)(k >> 8);
        out[o++] = (uint8_t)k;
        memcpy(out + o, in + 5 + at, k);
        o += k;
        at += k;
    }
    return o;
}

int main(void)
{
    static uint8_t hello[8192], other[16384];
    char name[TLS_HELLO_NAME_MAX + 1];
    size_t n = client_hello("API.Example.com", hello, sizeof(hello)), m;

    CHECK(n > 100);
    CHECK_EQ_INT(sni_of(hello, n, name), TLS_HELLO_OK);
    CHECK_EQ_STR(name, "api.example.com");

    /* Every cut short of the whole is a valid beginning. */
    for (size_t cut = 0; cut < n; cut++) {
        int r = sni_of(hello, cut, name);
        if (r != TLS_HELLO_NEED_MORE)
            fprintf(stderr, "  cut at %zu: %d\n", cut, r);
        CHECK_EQ_INT(r, TLS_HELLO_NEED_MORE);
    }
    /* Bytes after the hello (the client's next records) change nothing. */
    memcpy(other, hello, n);
    memset(other + n, 0x17, 40);
    CHECK_EQ_INT(sni_of(other, n + 40, name), TLS_HELLO_OK);
    CHECK_EQ_STR(name, "api.example.com");

    /* The same hello in records of 1, 7 and 100 bytes. */
    static const size_t frags[] = {1, 7, 100};
    for (size_t f = 0; f < 3; f++) {
        m = reframe(hello, n, frags[f], other);
        CHECK_EQ_INT(sni_of(other, m, name), TLS_HELLO_OK);
        CHECK_EQ_STR(name, "api.example.com");
        CHECK_EQ_INT(sni_of(other, m - 1, name), TLS_HELLO_NEED_MORE);
    }

    /* No SNI; a name that is not a DNS name counts as none. */
    n = client_hello(NULL, hello, sizeof(hello));
    CHECK_EQ_INT(sni_of(hello, n, name), TLS_HELLO_OK);
    CHECK_EQ_STR(name, "");
    n = client_hello("bad name.example", hello, sizeof(hello));
    CHECK_EQ_INT(sni_of(hello, n, name), TLS_HELLO_OK);
    CHECK_EQ_STR(name, "");
    n = client_hello("a..b", hello, sizeof(hello));
    CHECK_EQ_INT(sni_of(hello, n, name), TLS_HELLO_OK);
    CHECK_EQ_STR(name, "");

    /* Not TLS: known at the first byte that cannot be one. */
    CHECK_EQ_INT(sni_of((const uint8_t *)"GET / HTTP/1.1\r\n", 16, name), TLS_HELLO_NOT_TLS);
    CHECK_EQ_INT(sni_of((const uint8_t *)"G", 1, name), TLS_HELLO_NOT_TLS);
    CHECK_EQ_INT(sni_of((const uint8_t *)"\x16\x02", 2, name), TLS_HELLO_NOT_TLS);
    CHECK_EQ_INT(sni_of((const uint8_t *)"\x16\x03", 2, name), TLS_HELLO_NEED_MORE);
    CHECK_EQ_INT(sni_of((const uint8_t *)"", 0, name), TLS_HELLO_NEED_MORE);

    /* Malformed: an empty record, a record above 2^14, another handshake
     * type, a length inside the hello that runs past it. */
    n = client_hello("a.example", hello, sizeof(hello));
    CHECK_EQ_INT(sni_of((const uint8_t *)"\x16\x03\x01\x00\x00", 5, name), TLS_HELLO_NOT_TLS);
    CHECK_EQ_INT(sni_of((const uint8_t *)"\x16\x03\x01\x40\x01", 5, name), TLS_HELLO_NOT_TLS);
    memcpy(other, hello, n);
    other[5] = 2;                                   /* ServerHello */
    CHECK_EQ_INT(sni_of(other, n, name), TLS_HELLO_NOT_TLS);
    memcpy(other, hello, n);
    other[5 + 4 + 34] = 33;                         /* session id longer than 32 */
    CHECK_EQ_INT(sni_of(other, n, name), TLS_HELLO_NOT_TLS);
    memcpy(other, hello, n);
    other[5 + 4 + 35 + hello[5 + 4 + 34]] = 0xff;   /* cipher suites past the end */
    CHECK_EQ_INT(sni_of(other, n, name), TLS_HELLO_NOT_TLS);
    CHECK_EQ_STR(name, "");
    TEST_END();
}
