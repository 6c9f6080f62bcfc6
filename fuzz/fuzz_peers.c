/* libFuzzer target: the peers' messages (src/peers/peers.c) on arbitrary
 * bytes. Nearly every random datagram fails the signature, so the harness
 * signs what it is given (a peer with the key, or one of its bugs), after
 * stamping the current time over the time field, to reach the parsing of
 * the entries and the counting behind it.
 *
 * Invariants beyond "no crash, no sanitizer report":
 *  - a message is accepted only when its length is exactly the header, its
 *    entries and the signature;
 *  - an accepted message sent again is rejected (a replay counts nothing);
 *  - the same bytes unsigned (a flipped signature byte) are rejected. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "peers/peers.h"
#include "route/route.h"

#include "fuzz.h"

#define HEAD 30
#define MAC 32

static unsigned char key[40] = "fuzzing key fuzzing key fuzzing key 1234";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct conf_rate_limit rc = {.interval_ns = 1000000, .burst = 3, .max_keys = 64,
                                        .shared = true, .share_id = 0x0102030405060708ULL};
    static struct rate_limiter *rl;
    static struct config cfg;
    static struct conf_peers pc = {.secret = key, .secret_len = sizeof(key)};
    struct runtime rt = {.cfg = &cfg};
    struct peers p;
    uint8_t *m;
    unsigned int n = MAC;
    size_t len = size + MAC;
    bool ok;

    if (!rl && !(rl = rate_limiter_new(&rc)))
        return 0;
    rt.limiters = &rl;
    rt.nlimiters = 1;
    if (size > 1400 || peers_init(&p, &pc, &rt, NULL, 0) < 0)
        return 0;
    if (!(m = malloc(len))) {
        peers_stop(&p);
        return 0;
    }
    memcpy(m, data, size);
    if (size >= HEAD) {
        uint64_t now = (uint64_t)time(NULL) * 1000;
        for (int i = 7; i >= 0; i--, now >>= 8)
            m[20 + i] = (uint8_t)now;
    }
    HMAC(EVP_sha256(), key, sizeof(key), m, size, m + size, &n);
    ok = peers_receive(&p, m, len);
    if (ok) {
        size_t entries = (size_t)m[28] << 8 | m[29];
        FUZZ_CHECK(size >= HEAD && memcmp(m, "SLP1", 4) == 0 && size == HEAD + entries * 18);
        FUZZ_CHECK(!peers_receive(&p, m, len));
    }
    m[len - 1] ^= 1;
    FUZZ_CHECK(!peers_receive(&p, m, len));
    free(m);
    peers_stop(&p);
    return 0;
}
