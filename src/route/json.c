/* sluice's own small JSON reader, for JWTs (jwt.c) and JSON Web Key Sets
 * (jwks.c): it accepts exactly RFC 8259, nested up to JSON_MAX_DEPTH, and
 * builds nothing: callbacks read the members and elements they want and
 * the rest is walked over. On a failure r->why names the problem and r->p
 * points at it. Untrusted bytes: fuzz/fuzz_request_keys.c and
 * fuzz/fuzz_jwks.c feed it. */
#include <string.h>

#include "route/internal.h"

static bool fail(struct jread *r, const char *why)
{
    if (!r->why)
        r->why = why;
    return false;
}

void jread_ws(struct jread *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int hex4(const char *p)
{
    int v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

bool jread_string(struct jread *r, char *out, size_t size, bool *cut)
{
    size_t n = 0;

    if (r->p >= r->end || *r->p != '"')
        return fail(r, "expected a string");
    r->p++;
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p++;
        char buf[4];
        size_t k = 0;

        if (c < 0x20) {
            r->p--;
            return fail(r, "a control character inside a string");
        }
        if (c == '\\') {
            if (r->p >= r->end)
                break;
            c = (unsigned char)*r->p++;
            switch (c) {
            case '"': case '\\': case '/': buf[k++] = (char)c; break;
            case 'b': buf[k++] = '\b'; break;
            case 'f': buf[k++] = '\f'; break;
            case 'n': buf[k++] = '\n'; break;
            case 'r': buf[k++] = '\r'; break;
            case 't': buf[k++] = '\t'; break;
            case 'u': {
                int v;
                if (r->end - r->p < 4 || (v = hex4(r->p)) < 0)
                    return fail(r, "a \\u escape without four hex digits");
                r->p += 4;
                if (v < 0x80) {
                    buf[k++] = (char)v;
                } else if (v < 0x800) {
                    buf[k++] = (char)(0xc0 | v >> 6);
                    buf[k++] = (char)(0x80 | (v & 0x3f));
                } else {
                    buf[k++] = (char)(0xe0 | v >> 12);
                    buf[k++] = (char)(0x80 | ((v >> 6) & 0x3f));
                    buf[k++] = (char)(0x80 | (v & 0x3f));
                }
                break;
            }
            default:
                r->p -= 2;
                return fail(r, "an unknown escape in a string");
            }
        } else {
            buf[k++] = (char)c;
        }
        for (size_t i = 0; i < k; i++) {
            if (out && buf[i] && n + 1 < size)
                out[n++] = buf[i];
            else if (out)
                *cut = true;
        }
    }
    if (r->p >= r->end)
        return fail(r, "a string without its closing quote");
    r->p++;
    if (out)
        out[n] = '\0';
    return true;
}

bool jread_number(struct jread *r, int64_t *v, bool *ok)
{
    bool neg = false, expo = false, big = false;
    int64_t x = 0;

    if (r->p < r->end && *r->p == '-') {
        neg = true;
        r->p++;
    }
    if (r->p >= r->end || *r->p < '0' || *r->p > '9')
        return fail(r, "expected a value");
    if (*r->p == '0' && r->p + 1 < r->end && r->p[1] >= '0' && r->p[1] <= '9')
        return fail(r, "a number with a leading zero");
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        if (x > (INT64_MAX - 9) / 10)
            big = true;
        else
            x = x * 10 + (*r->p - '0');
        r->p++;
    }
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return fail(r, "a number without digits after '.'");
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        expo = true;
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return fail(r, "a number without digits in its exponent");
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    if (v) {
        *ok = !expo && !big;
        *v = neg ? -x : x;
    }
    return true;
}

static bool literal(struct jread *r, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return fail(r, "expected a value");
    r->p += n;
    return true;
}

/* Expects "," or the closing byte after an element: 1 more, 0 done, -1 bad. */
static int next(struct jread *r, char close)
{
    jread_ws(r);
    if (r->p < r->end && *r->p == ',') {
        r->p++;
        jread_ws(r);
        return 1;
    }
    if (r->p < r->end && *r->p == close) {
        r->p++;
        return 0;
    }
    fail(r, close == ']' ? "expected ',' or ']'" : "expected ',' or '}'");
    return -1;
}

bool jread_array(struct jread *r, int depth, jread_elem_fn fn, void *ctx)
{
    int more;

    r->p++;                              /* '[' */
    jread_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return true;
    }
    do {
        if (!(fn ? fn(r, ctx) : jread_value(r, depth)))
            return false;
    } while ((more = next(r, ']')) == 1);
    return more == 0;
}

bool jread_object(struct jread *r, int depth, jread_member_fn fn, void *ctx)
{
    int more;

    r->p++;                              /* '{' */
    jread_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return true;
    }
    do {
        char key[16];
        bool cut = false;

        if (r->p >= r->end || *r->p != '"')
            return fail(r, "expected a member name (a string)");
        if (!jread_string(r, key, sizeof(key), &cut))
            return false;
        jread_ws(r);
        if (r->p >= r->end || *r->p != ':')
            return fail(r, "expected ':' after a member name");
        r->p++;
        jread_ws(r);
        if (!(fn ? fn(r, cut ? "" : key, ctx) : jread_value(r, depth)))
            return false;
    } while ((more = next(r, '}')) == 1);
    return more == 0;
}

bool jread_value(struct jread *r, int depth)
{
    if (r->p >= r->end)
        return fail(r, "the text ends where a value is due");
    if (depth > JSON_MAX_DEPTH)
        return fail(r, "nested too deep");
    switch (*r->p) {
    case '"': return jread_string(r, NULL, 0, NULL);
    case '{': return jread_object(r, depth + 1, NULL, NULL);
    case '[': return jread_array(r, depth + 1, NULL, NULL);
    case 't': return literal(r, "true");
    case 'f': return literal(r, "false");
    case 'n': return literal(r, "null");
    default: return jread_number(r, NULL, NULL);
    }
}

void jread_position(const struct jread *r, const char *at, int *line, int *col)
{
    int l = 1, c = 1;

    for (const char *p = r->start; p < at && p < r->end; p++) {
        if (*p == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)*p & 0xc0) != 0x80) {
            c++;                         /* characters, not UTF-8 continuation bytes */
        }
    }
    *line = l;
    *col = c;
}
