/* Request path normalisation (RFC 3986 6.2.2), before routing.
 *
 * Why: routes, auth and rate limits decide on the path, and the backend
 * decides again on its own reading of it. When the two readings differ, a
 * rule on /admin/ is walked around with /x/../admin/, /%61dmin/ or
 * //admin/, which most servers and frameworks read as /admin/. So sluice
 * routes on the normalised path and forwards that same path: the backend
 * then sees what the rules saw. NGINX does the same for its locations;
 * Envoy has it as normalize_path and merge_slashes.
 *
 * Two passes into the caller's buffer (the result is never longer than the
 * input, so the buffer needs only len bytes, and the second pass works in
 * place): percent-decoding of unreserved characters (and the choice made for
 * encoded slashes), then removal of dot segments and empty segments. The
 * first pass comes first because "%2e%2e" is a ".." segment once decoded. */
#include <string.h>

#include "route/route.h"

/* Rule paths longer than this are not checked by route_check_paths. */
#define RULE_PATH_CHECK_MAX 1024

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* RFC 3986 2.3 */
static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* Is there anything for the passes to do? Most paths have no '%', no "//"
 * and no dot segment, and need no buffer at all. */
bool route_path_needs_normalizing(struct h1_slice path, const struct conf_path_norm *opt)
{
    const char *p = path.p;
    uint32_t n = path.len;

    if (!opt->normalize && !opt->merge_slashes && opt->escaped_slashes == PATH_SLASHES_KEEP)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        if (p[i] == '%' && (opt->normalize || opt->escaped_slashes != PATH_SLASHES_KEEP))
            return true;
        if (p[i] != '/' || i + 1 == n)
            continue;
        if (opt->merge_slashes && p[i + 1] == '/')
            return true;
        if (opt->normalize && p[i + 1] == '.') {
            /* "/." or "/.." followed by '/' or the end */
            uint32_t j = i + 2;
            if (j < n && p[j] == '.')
                j++;
            if (j == n || p[j] == '/')
                return true;
        }
    }
    return false;
}

/* Pass 1: percent-encodings. An unreserved character is decoded (with
 * normalize); %2F and %5C as opt->escaped_slashes says; every other
 * encoding is kept, its hex digits upper-cased (with normalize). */
static int decode(const char *p, uint32_t n, const struct conf_path_norm *opt, char *out,
                  uint32_t *olen, const char **why)
{
    uint32_t o = 0;

    for (uint32_t i = 0; i < n; i++) {
        int hi, lo;
        unsigned char v;

        if (p[i] != '%') {
            out[o++] = p[i];
            continue;
        }
        if (i + 2 >= n || (hi = hexval((unsigned char)p[i + 1])) < 0 ||
            (lo = hexval((unsigned char)p[i + 2])) < 0) {
            if (!opt->normalize) {     /* not ours to judge: passed through */
                out[o++] = p[i];
                continue;
            }
            *why = "bad percent-encoding in the path";
            return -1;
        }
        v = (unsigned char)(hi << 4 | lo);
        if (v == '/' || v == '\\') {
            if (opt->escaped_slashes == PATH_SLASHES_REJECT) {
                *why = "encoded slash in the path (escaped_slashes: reject)";
                return -1;
            }
            if (opt->escaped_slashes == PATH_SLASHES_DECODE) {
                out[o++] = (char)v;
                i += 2;
                continue;
            }
        } else if (opt->normalize && unreserved(v)) {
            out[o++] = (char)v;
            i += 2;
            continue;
        }
        out[o++] = '%';
        out[o++] = opt->normalize ? "0123456789ABCDEF"[hi] : p[i + 1];
        out[o++] = opt->normalize ? "0123456789ABCDEF"[lo] : p[i + 2];
        i += 2;
    }
    *olen = o;
    return 0;
}

/* Pass 2, in place: the path is a run of "/segment" units; "." units go,
 * ".." takes the unit before it away (none left: the path climbs above the
 * root, an error, as NGINX answers it), and empty units go with
 * merge_slashes. A dot segment or empty segment at the end leaves a
 * trailing "/" (RFC 3986 5.2.4: "/a/b/.." is "/a/"). Writing never
 * overtakes reading: each unit kept is copied to the left or onto itself. */
static int segments(char *b, uint32_t n, const struct conf_path_norm *opt, uint32_t *olen,
                    const char **why)
{
    uint32_t i = 0, o = 0;

    while (i < n) {
        uint32_t j = i + 1, sl;
        bool last;

        while (j < n && b[j] != '/')
            j++;
        sl = j - i - 1;
        last = j == n;
        if (sl == 0 && opt->merge_slashes && !last) {
            i = j;
            continue;
        }
        if (opt->normalize && sl == 1 && b[i + 1] == '.') {
            if (last)
                b[o++] = '/';
            i = j;
            continue;
        }
        if (opt->normalize && sl == 2 && b[i + 1] == '.' && b[i + 2] == '.') {
            if (o == 0) {
                *why = "the path climbs above the root";
                return -1;
            }
            while (b[--o] != '/') {
            }
            if (last)
                b[o++] = '/';
            i = j;
            continue;
        }
        memmove(b + o, b + i, sl + 1);
        o += sl + 1;
        i = j;
    }
    *olen = o;
    return 0;
}

int route_path_normalize(struct h1_slice path, const struct conf_path_norm *opt, char *out,
                         uint32_t *out_len, const char **why)
{
    uint32_t n;

    if (path.len == 0 || path.p[0] != '/') {   /* "*", or nothing: not a path to clean */
        memcpy(out, path.p, path.len);
        *out_len = path.len;
        return 0;
    }
    if (decode(path.p, path.len, opt, out, &n, why) < 0)
        return -1;
    if ((opt->normalize || opt->merge_slashes) && segments(out, n, opt, &n, why) < 0)
        return -1;
    *out_len = n;
    return 0;
}

/* Would the path p (a rule's) come out of normalising as something else? */
static bool changes(const char *p, uint32_t len, const struct conf_path_norm *opt)
{
    char buf[RULE_PATH_CHECK_MAX];
    const char *why;
    uint32_t n;

    if (len > sizeof(buf))
        return false;    /* not judged */
    if (route_path_normalize((struct h1_slice){p, len}, opt, buf, &n, &why) < 0)
        return true;
    return n != len || memcmp(buf, p, n) != 0;
}

int route_check_paths(const struct conf_listener *l, FILE *diag)
{
    int warnings = 0;

    for (size_t i = 0; i < l->nroutes; i++) {
        const struct conf_route *r = &l->routes[i];
        const char *p = r->path;
        uint32_t len, head;
        bool never;

        if (!p || (r->path_kind != ROUTE_PATH_EXACT && r->path_kind != ROUTE_PATH_PREFIX))
            continue;
        len = (uint32_t)strlen(p);
        if (r->path_kind == ROUTE_PATH_EXACT) {
            never = changes(p, len, &l->paths);
        } else {
            /* A prefix may end inside a segment ("/api/.well" matches
             * "/api/.well-known/"), so its whole segments must be
             * normalised, and its last, partial one only must not hold an
             * encoding that normalising rewrites. */
            char tail[RULE_PATH_CHECK_MAX];
            for (head = len; head > 0 && p[head - 1] != '/'; head--) {
            }
            never = changes(p, head, &l->paths);
            if (!never && len - head < sizeof(tail) - 1 && memchr(p + head, '%', len - head)) {
                tail[0] = '/';
                memcpy(tail + 1, p + head, len - head);
                never = changes(tail, len - head + 1, &l->paths);
            }
        }
        if (!never)
            continue;
        warnings++;
        if (diag)
            fprintf(diag, "%s:%d:%d: warning: route #%zu can never match: its path '%s' is not "
                    "normalised, and requests are routed on normalised paths (see "
                    "normalize_path, merge_slashes and escaped_slashes)\n",
                    r->pos.file ? r->pos.file : "config", r->pos.line, r->pos.col, i + 1, p);
    }
    return warnings;
}
