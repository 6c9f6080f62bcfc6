/* libFuzzer target: route_path_normalize, which runs on every request path
 * before routing.
 *
 * Input: byte 0 picks the options (bit 0 normalize_path, bit 1
 * merge_slashes, bits 2-3 escaped_slashes), the rest is the path; a '/' is
 * put in front when it does not start with one, as the parser guarantees.
 *
 * Invariants beyond "no crash, no sanitizer report":
 *  - an error says why; a result is never longer than the path and starts
 *    with '/';
 *  - route_path_needs_normalizing false → the result is the path itself;
 *  - normalising the result again changes nothing (a fixed point);
 *  - with merge_slashes no "//" is left; with normalize_path no "." or ".."
 *    segment, and every '%' starts an upper-case %XX of a character that is
 *    not unreserved; with escaped_slashes reject or decode no %2F or %5C. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route/route.h"

#include "fuzz.h"

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct conf_path_norm opt = {0};
    const char *why = NULL;
    char *in, *out, *again;
    uint32_t n, len, n2;

    if (size < 1 || size > 65536)
        return 0;
    opt.normalize = data[0] & 1;
    opt.merge_slashes = data[0] & 2;
    opt.escaped_slashes = (enum path_escaped_slashes)((data[0] >> 2) % 3);
    len = (uint32_t)size - 1;
    /* Exact-size copies, so that ASan sees any read or write past them. */
    in = malloc(len + 1);
    out = malloc(len + 1);
    again = malloc(len + 1);
    if (!in || !out || !again)
        abort();
    memcpy(in, data + 1, len);
    if (len == 0 || in[0] != '/') {
        memmove(in + 1, in, len);
        in[0] = '/';
        len++;
    }

    struct h1_slice p = {in, len};
    if (route_path_normalize(p, &opt, out, &n, &why) < 0) {
        FUZZ_CHECK(why != NULL);
        goto done;
    }
    FUZZ_CHECK(n <= len && n > 0 && out[0] == '/');
    if (!route_path_needs_normalizing(p, &opt))
        FUZZ_CHECK(n == len && memcmp(out, in, n) == 0);
    FUZZ_CHECK(route_path_normalize((struct h1_slice){out, n}, &opt, again, &n2, &why) == 0);
    FUZZ_CHECK(n2 == n && memcmp(again, out, n) == 0);
    for (uint32_t i = 0; i < n; i++) {
        if (opt.merge_slashes && out[i] == '/' && i + 1 < n)
            FUZZ_CHECK(out[i + 1] != '/');
        if (opt.normalize && out[i] == '/') {
            uint32_t j = i + 1;
            while (j < n && out[j] != '/')
                j++;
            FUZZ_CHECK(!(j - i == 2 && out[i + 1] == '.'));
            FUZZ_CHECK(!(j - i == 3 && out[i + 1] == '.' && out[i + 2] == '.'));
        }
        if (opt.normalize && out[i] == '%') {
            int hi, lo;
            FUZZ_CHECK(i + 2 < n);
            hi = hexval(out[i + 1]);
            lo = hexval(out[i + 2]);
            FUZZ_CHECK(hi >= 0 && lo >= 0 && !unreserved((unsigned char)(hi << 4 | lo)));
            if (opt.escaped_slashes != PATH_SLASHES_KEEP)
                FUZZ_CHECK((hi << 4 | lo) != '/' && (hi << 4 | lo) != '\\');
        }
    }
done:
    free(in);
    free(out);
    free(again);
    return 0;
}
