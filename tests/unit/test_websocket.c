/* proto/websocket: the handshake's key and accept values (RFC 6455). */
#include <string.h>

#include "proto/websocket.h"
#include "test.h"

int main(void)
{
    char key[WS_KEY_LEN + 1], other[WS_KEY_LEN + 1], accept[WS_ACCEPT_LEN + 1];
    const char *sample = "dGhlIHNhbXBsZSBub25jZQ==";

    /* RFC 6455 1.3's worked example. */
    CHECK(ws_accept_for(sample, strlen(sample), accept));
    CHECK_EQ_STR(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK(ws_accept_matches(sample, strlen(sample), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28));
    CHECK(!ws_accept_matches(sample, strlen(sample), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo", 27));
    CHECK(!ws_accept_matches(sample, strlen(sample), "S3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28));
    CHECK(!ws_accept_matches(sample, strlen(sample), "", 0));

    /* Keys: 16 bytes in base64, "==" padded, a new one each time. */
    CHECK_EQ_INT(ws_key_new(key), 0);
    CHECK_EQ_INT(ws_key_new(other), 0);
    CHECK_EQ_INT(strlen(key), WS_KEY_LEN);
    CHECK(key[22] == '=' && key[23] == '=');
    CHECK(strcmp(key, other) != 0);
    for (int i = 0; i < 22; i++)
        CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", key[i]));
    TEST_END();
}
