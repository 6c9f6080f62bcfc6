/* libFuzzer target: the JSON Web Key Set reader (jwks_parse), which reads
 * `jwks_file` with the config and, more to the point, whatever a
 * `jwks_url` server answers. Byte 0's low bit says whether HS256 secrets
 * are taken (a file) or skipped (a URL); the rest is the document.
 *
 * Invariants beyond "no crash, no sanitizer report, no leak":
 *  - a refusal has a position (line and column from 1, the line within the
 *    document) and a reason;
 *  - a set holds 1..JWKS_MAX_KEYS keys, each RS256 or ES256 with a public
 *    key, or HS256 with a secret of 32 bytes or more, and no HS256 key when
 *    secrets are not taken; a kid is found again by jwks_set_find, as
 *    itself (no two keys share a kid and an algorithm);
 *  - reading the same bytes again gives the same keys (the same digest):
 *    a refetch of an unchanged set must not look like a rotation;
 *  - every warning has a position inside the document.
 *
 * Build and run by hand: scripts/fuzz.sh 60 fuzz/fuzz_jwks.c */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "route/jwks.h"

#include "fuzz.h"

static int lines;                        /* in the document being read */

static void warned(void *ctx, int line, int col, const char *text)
{
    (void)ctx;
    FUZZ_CHECK(line >= 1 && line <= lines && col >= 1 && text[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jwks_error err, err2;
    struct jwks_set *set, *again;
    const char *doc = (const char *)data + 1;
    bool secrets;

    if (size < 1)
        return 0;
    secrets = data[0] & 1;
    size--;
    lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += doc[i] == '\n';
    set = jwks_parse(doc, size, secrets, warned, NULL, &err);
    if (!set) {
        FUZZ_CHECK(err.line >= 1 && err.line <= lines && err.col >= 1 && err.text[0]);
        return 0;
    }
    FUZZ_CHECK(set->nkeys >= 1 && set->nkeys <= JWKS_MAX_KEYS);
    for (size_t i = 0; i < set->nkeys; i++) {
        const struct jwks_key *k = &set->keys[i];
        bool known;

        FUZZ_CHECK(k->alg == JWT_RS256 || k->alg == JWT_ES256 || k->alg == JWT_HS256);
        FUZZ_CHECK(k->alg == JWT_HS256 ? k->secret && k->secret_len >= 32 && !k->pkey
                                       : k->pkey && !k->secret);
        FUZZ_CHECK(secrets || k->alg != JWT_HS256);
        FUZZ_CHECK(memchr(k->kid, '\0', sizeof(k->kid)) != NULL);
        FUZZ_CHECK(k->has_kid || !k->kid[0]);
        if (k->has_kid)
            FUZZ_CHECK(jwks_set_find(set, k->kid, k->alg, &known) == k && known);
    }
    again = jwks_parse(doc, size, secrets, NULL, NULL, &err2);
    FUZZ_CHECK(again && again->digest == set->digest && again->nkeys == set->nkeys);
    jwks_set_release(again);
    jwks_set_release(set);
    return 0;
}
