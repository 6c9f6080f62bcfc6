/* libFuzzer target: the server name of a TLS ClientHello (proto/tls_hello),
 * which a tcp listener with routes reads from every client before it picks
 * a pool.
 *
 * Invariants beyond "no crash, no sanitizer report":
 *  - the result is NEED_MORE, OK or NOT_TLS; a name is only set with OK;
 *  - a name is a DNS name in lower case: [a-z0-9_-] labels of 1..63 bytes
 *    between single dots, at most 253 bytes;
 *  - any prefix of the input reads as NEED_MORE or as exactly what the
 *    whole input reads as (same result, same name): more bytes never change
 *    a decision already taken.
 *
 * Build and run by hand: scripts/fuzz.sh 60 fuzz/fuzz_tls_hello.c */
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "proto/tls_hello.h"

static void check_name(const char *name)
{
    size_t n = strlen(name), label = 0;

    FUZZ_CHECK(n <= TLS_HELLO_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (c == '.') {
            FUZZ_CHECK(label > 0);
            label = 0;
            continue;
        }
        FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_');
        FUZZ_CHECK(++label <= 63);
    }
    FUZZ_CHECK(n == 0 || label > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[TLS_HELLO_NAME_MAX + 1], part[TLS_HELLO_NAME_MAX + 1];
    int r = tls_hello_sni(data, size, name), rp;
    size_t cut;

    FUZZ_CHECK(r == TLS_HELLO_NEED_MORE || r == TLS_HELLO_OK || r == TLS_HELLO_NOT_TLS);
    if (r != TLS_HELLO_OK)
        FUZZ_CHECK(name[0] == '\0');
    check_name(name);
    if (size == 0)
        return 0;
    /* Two prefixes: one chosen by the input's last byte, and one byte short. */
    for (int k = 0; k < 2; k++) {
        cut = k ? size - 1 : data[size - 1] % size;
        rp = tls_hello_sni(data, cut, part);
        FUZZ_CHECK(rp == TLS_HELLO_NEED_MORE || rp == r);
        if (rp == TLS_HELLO_OK)
            FUZZ_CHECK(strcmp(part, name) == 0);
    }
    return 0;
}
