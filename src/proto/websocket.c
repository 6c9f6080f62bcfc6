/* WebSocket handshake values (see websocket.h). OpenSSL gives the SHA-1
 * and the base64 (libcrypto is linked for TLS anyway): nothing hand-made
 * for a digest. */
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>

#include "proto/websocket.h"

/* RFC 6455 1.3: appended to the key before hashing. */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int ws_key_new(char out[WS_KEY_LEN + 1])
{
    unsigned char nonce[16];

    if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
        return -1;
    EVP_EncodeBlock((unsigned char *)out, nonce, sizeof(nonce));    /* NUL-ends it */
    return 0;
}

bool ws_accept_for(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
              EVP_DigestUpdate(ctx, key, key_len) == 1 &&
              EVP_DigestUpdate(ctx, WS_GUID, sizeof(WS_GUID) - 1) == 1 &&
              EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 20;

    EVP_MD_CTX_free(ctx);
    if (ok)
        EVP_EncodeBlock((unsigned char *)out, md, 20);
    return ok;
}

bool ws_accept_matches(const char *key, size_t key_len, const char *accept, size_t accept_len)
{
    char want[WS_ACCEPT_LEN + 1];

    return accept_len == WS_ACCEPT_LEN && ws_accept_for(key, key_len, want) &&
           memcmp(want, accept, WS_ACCEPT_LEN) == 0;
}
