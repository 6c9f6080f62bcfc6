/* A small strict JSON reader (RFC 8259): request bodies of the admin API and
 * the replies `sluice ctl` prints. Debian has json-c and jansson, but two
 * call sites that read a handful of fields do not justify a new build
 * dependency; this is a recursive-descent parser of ~200 lines with a depth
 * bound, and everything it allocates hangs off the root. */
#include "admin/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct json_parser {
    const char *p, *end;
    const char *err;
    int depth;
};

static void json_ws(struct json_parser *jp)
{
    while (jp->p < jp->end &&
           (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\n' || *jp->p == '\r'))
        jp->p++;
}

static struct admin_json *json_new(struct json_parser *jp, enum admin_json_type type)
{
    struct admin_json *j = calloc(1, sizeof(*j));

    if (!j)
        jp->err = "out of memory";
    else
        j->type = type;
    return j;
}

static bool json_lit(struct json_parser *jp, const char *lit)
{
    size_t n = strlen(lit);

    if ((size_t)(jp->end - jp->p) < n || memcmp(jp->p, lit, n) != 0)
        return false;
    jp->p += n;
    return true;
}

static int json_hex4(const char *p)
{
    int v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    return v;
}

static size_t json_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t admin_utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0], cp;
    size_t need;

    if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; }
    else return 0;
    if ((size_t)(end - p) <= need)
        return 0;
    for (size_t i = 1; i <= need; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return need + 1;
}

/* At the opening quote. Returns a malloc'd decoded string, or NULL. The
 * decoded form is never longer than the escaped one. A NUL (\u0000) is
 * refused: every string here ends up as a C string. Raw bytes must be UTF-8
 * (RFC 8259 section 8.1), so names and values that reach logs are text. */
static char *json_string(struct json_parser *jp)
{
    const char *p = jp->p + 1;
    char *out, *o;

    out = malloc((size_t)(jp->end - p) + 1);
    if (!out) {
        jp->err = "out of memory";
        return NULL;
    }
    o = out;
    while (p < jp->end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20) {
            jp->err = "control character in a string";
            goto fail;
        }
        if (c >= 0x80) {
            size_t n = admin_utf8_len((const unsigned char *)p, (const unsigned char *)jp->end);
            if (!n) {
                jp->err = "a string is not UTF-8";
                goto fail;
            }
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        }
        if (c != '\\') {
            *o++ = (char)c;
            p++;
            continue;
        }
        if (++p >= jp->end)
            break;
        switch (*p) {
        case '"': *o++ = '"'; p++; break;
        case '\\': *o++ = '\\'; p++; break;
        case '/': *o++ = '/'; p++; break;
        case 'b': *o++ = '\b'; p++; break;
        case 'f': *o++ = '\f'; p++; break;
        case 'n': *o++ = '\n'; p++; break;
        case 'r': *o++ = '\r'; p++; break;
        case 't': *o++ = '\t'; p++; break;
        case 'u': {
            int cp, lo;
            if (jp->end - p < 5 || (cp = json_hex4(p + 1)) < 0) {
                jp->err = "bad \\u escape";
                goto fail;
            }
            p += 5;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (jp->end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                    (lo = json_hex4(p + 2)) < 0xDC00 || lo > 0xDFFF) {
                    jp->err = "unpaired surrogate in \\u escape";
                    goto fail;
                }
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0) {
                jp->err = cp ? "unpaired surrogate in \\u escape" : "NUL in a string";
                goto fail;
            }
            o += json_utf8(o, (unsigned)cp);
            break;
        }
        default:
            jp->err = "bad escape in a string";
            goto fail;
        }
    }
    if (p >= jp->end) {
        jp->err = "unterminated string";
        goto fail;
    }
    *o = '\0';
    jp->p = p + 1;
    return out;
fail:
    free(out);
    return NULL;
}

static struct admin_json *json_number(struct json_parser *jp)
{
    const char *p = jp->p, *start = p;
    bool is_int = true;
    char tmp[64];
    struct admin_json *j;

    if (p < jp->end && *p == '-')
        p++;
    if (p < jp->end && *p == '0') {
        p++;
    } else if (p < jp->end && *p >= '1' && *p <= '9') {
        while (p < jp->end && *p >= '0' && *p <= '9')
            p++;
    } else {
        jp->err = "bad number";
        return NULL;
    }
    if (p < jp->end && *p == '.') {
        is_int = false;
        if (++p >= jp->end || *p < '0' || *p > '9') {
            jp->err = "bad number";
            return NULL;
        }
        while (p < jp->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < jp->end && (*p == 'e' || *p == 'E')) {
        is_int = false;
        p++;
        if (p < jp->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= jp->end || *p < '0' || *p > '9') {
            jp->err = "bad number";
            return NULL;
        }
        while (p < jp->end && *p >= '0' && *p <= '9')
            p++;
    }
    if ((size_t)(p - start) >= sizeof(tmp)) {
        jp->err = "number too long";
        return NULL;
    }
    memcpy(tmp, start, (size_t)(p - start));
    tmp[p - start] = '\0';
    if (!(j = json_new(jp, ADMIN_JSON_NUMBER)))
        return NULL;
    j->number = strtod(tmp, NULL);
    if (is_int) {
        errno = 0;
        j->integer = strtoll(tmp, NULL, 10);
        j->is_int = errno == 0;
    }
    jp->p = p;
    return j;
}

static struct admin_json *json_value(struct json_parser *jp);

/* At '[' or '{'. */
static struct admin_json *json_container(struct json_parser *jp, bool object)
{
    struct admin_json *j = json_new(jp, object ? ADMIN_JSON_OBJECT : ADMIN_JSON_ARRAY);
    struct admin_json **tail;
    char close = object ? '}' : ']';

    if (!j)
        return NULL;
    if (++jp->depth > ADMIN_JSON_MAX_DEPTH) {
        jp->err = "nested too deeply";
        return j;
    }
    tail = &j->child;
    jp->p++;
    json_ws(jp);
    if (jp->p < jp->end && *jp->p == close) {
        jp->p++;
        jp->depth--;
        return j;
    }
    for (;;) {
        struct admin_json *v;
        char *key = NULL;

        json_ws(jp);
        if (object) {
            if (jp->p >= jp->end || *jp->p != '"') {
                jp->err = "expected a member name in quotes";
                return j;
            }
            if (!(key = json_string(jp)))
                return j;
            json_ws(jp);
            if (jp->p >= jp->end || *jp->p != ':') {
                free(key);
                jp->err = "expected ':' after a member name";
                return j;
            }
            jp->p++;
        }
        v = json_value(jp);
        if (!v) {
            free(key);
            return j;
        }
        v->key = key;
        *tail = v;
        tail = &v->next;
        j->n++;
        if (jp->err)
            return j;
        json_ws(jp);
        if (jp->p < jp->end && *jp->p == ',') {
            jp->p++;
            continue;
        }
        if (jp->p < jp->end && *jp->p == close) {
            jp->p++;
            jp->depth--;
            return j;
        }
        jp->err = object ? "expected ',' or '}'" : "expected ',' or ']'";
        return j;
    }
}

/* Returns NULL only with jp->err set; a returned tree may still carry an
 * error found inside it (then the caller frees it). */
static struct admin_json *json_value(struct json_parser *jp)
{
    struct admin_json *j;

    json_ws(jp);
    if (jp->p >= jp->end) {
        jp->err = "unexpected end of input";
        return NULL;
    }
    switch (*jp->p) {
    case '{':
        return json_container(jp, true);
    case '[':
        return json_container(jp, false);
    case '"': {
        char *s = json_string(jp);
        if (!s)
            return NULL;
        if (!(j = json_new(jp, ADMIN_JSON_STRING))) {
            free(s);
            return NULL;
        }
        j->str = s;
        return j;
    }
    case 't':
    case 'f': {
        bool t = *jp->p == 't';
        if (json_lit(jp, t ? "true" : "false")) {
            if ((j = json_new(jp, ADMIN_JSON_BOOL)))
                j->boolean = t;
            return j;
        }
        break;
    }
    case 'n':
        if (json_lit(jp, "null"))
            return json_new(jp, ADMIN_JSON_NULL);
        break;
    default:
        if (*jp->p == '-' || (*jp->p >= '0' && *jp->p <= '9'))
            return json_number(jp);
    }
    jp->err = "unexpected character";
    return NULL;
}

struct admin_json *admin_json_parse(const char *s, size_t len, const char **err)
{
    struct json_parser jp = { .p = s, .end = s + len };
    struct admin_json *j = json_value(&jp);

    if (j && !jp.err) {
        json_ws(&jp);
        if (jp.p != jp.end)
            jp.err = "unexpected bytes after the value";
    }
    if (jp.err) {
        admin_json_free(j);
        *err = jp.err;
        return NULL;
    }
    return j;
}

void admin_json_free(struct admin_json *j)
{
    while (j) {
        struct admin_json *next = j->next;
        admin_json_free(j->child);
        free(j->str);
        free(j->key);
        free(j);
        j = next;
    }
}

const struct admin_json *admin_json_get(const struct admin_json *obj, const char *key)
{
    if (!obj || obj->type != ADMIN_JSON_OBJECT)
        return NULL;
    for (const struct admin_json *m = obj->child; m; m = m->next)
        if (strcmp(m->key, key) == 0)
            return m;
    return NULL;
}

const char *admin_json_str(const struct admin_json *obj, const char *key)
{
    const struct admin_json *m = admin_json_get(obj, key);

    return m && m->type == ADMIN_JSON_STRING ? m->str : "";
}

int64_t admin_json_int(const struct admin_json *obj, const char *key)
{
    const struct admin_json *m = admin_json_get(obj, key);

    return m && m->type == ADMIN_JSON_NUMBER && m->is_int ? m->integer : 0;
}
