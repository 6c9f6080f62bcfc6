/* libFuzzer target: the admin API's JSON reader (admin_json_parse), which
 * reads the body of every PUT/POST that reaches the admin listener, and the
 * replies `sluice ctl` prints.
 *
 * Invariants beyond "no crash, no sanitizer report, no leak":
 *  - a document that parses is written back (strings through
 *    admin_buf_json_str, the writer the API's replies use) and parsed again
 *    to the same tree: same types, values, member names and counts;
 *  - every string read is valid UTF-8 without NUL, as the reader promises;
 *  - `n` of an array or object is the number of its children;
 *  - the same bytes with one byte fewer never make a longer tree
 *    (a cut document is refused, or is a shorter valid one, like "12" of "123").
 *
 * Build and run by hand: scripts/fuzz.sh 60 fuzz/fuzz_admin_json.c */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/internal.h"
#include "fuzz.h"

static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        unsigned c = *p, need, cp;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; }
        else return false;
        for (unsigned i = 1; i <= need; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += need + 1;
    }
    return true;
}

static void write_json(struct admin_buf *b, const struct admin_json *j)
{
    const struct admin_json *c;

    switch (j->type) {
    case ADMIN_JSON_NULL:
        admin_buf_puts(b, "null");
        break;
    case ADMIN_JSON_BOOL:
        admin_buf_puts(b, j->boolean ? "true" : "false");
        break;
    case ADMIN_JSON_NUMBER:
        if (j->is_int)
            admin_buf_printf(b, "%lld", (long long)j->integer);
        else if (isinf(j->number))
            admin_buf_puts(b, j->number < 0 ? "-1e999" : "1e999");
        else {
            char num[64];
            snprintf(num, sizeof(num), "%.17g", j->number);
            /* "3.0" read as a double must not come back as the integer 3 */
            admin_buf_printf(b, "%s%s", num, strpbrk(num, ".e") ? "" : ".0");
        }
        break;
    case ADMIN_JSON_STRING:
        admin_buf_json_str(b, j->str);
        break;
    case ADMIN_JSON_ARRAY:
    case ADMIN_JSON_OBJECT:
        admin_buf_puts(b, j->type == ADMIN_JSON_ARRAY ? "[" : "{");
        for (c = j->child; c; c = c->next) {
            if (c != j->child)
                admin_buf_puts(b, ",");
            if (j->type == ADMIN_JSON_OBJECT) {
                admin_buf_json_str(b, c->key);
                admin_buf_puts(b, ":");
            }
            write_json(b, c);
        }
        admin_buf_puts(b, j->type == ADMIN_JSON_ARRAY ? "]" : "}");
        break;
    }
}

static bool same(const struct admin_json *a, const struct admin_json *b)
{
    if (a->type != b->type || (a->key == NULL) != (b->key == NULL) ||
        (a->key && strcmp(a->key, b->key) != 0))
        return false;
    switch (a->type) {
    case ADMIN_JSON_NULL:
        return true;
    case ADMIN_JSON_BOOL:
        return a->boolean == b->boolean;
    case ADMIN_JSON_NUMBER:
        return a->is_int == b->is_int && (!a->is_int || a->integer == b->integer) &&
               a->number == b->number;
    case ADMIN_JSON_STRING:
        return strcmp(a->str, b->str) == 0;
    case ADMIN_JSON_ARRAY:
    case ADMIN_JSON_OBJECT:
        if (a->n != b->n)
            return false;
        for (a = a->child, b = b->child; a && b; a = a->next, b = b->next)
            if (!same(a, b))
                return false;
        return !a && !b;
    }
    return false;
}

/* Checks the tree's own promises; returns its number of nodes. */
static size_t check_tree(const struct admin_json *j, bool member)
{
    size_t nodes = 1, kids = 0;

    FUZZ_CHECK((j->key != NULL) == member);
    FUZZ_CHECK(!j->key || utf8_valid(j->key));
    if (j->type == ADMIN_JSON_STRING)
        FUZZ_CHECK(j->str && utf8_valid(j->str));
    if (j->type == ADMIN_JSON_NUMBER)
        FUZZ_CHECK(!isnan(j->number));
    for (const struct admin_json *c = j->child; c; c = c->next) {
        kids++;
        nodes += check_tree(c, j->type == ADMIN_JSON_OBJECT);
    }
    FUZZ_CHECK(kids == j->n);
    FUZZ_CHECK(kids == 0 || j->type == ADMIN_JSON_ARRAY || j->type == ADMIN_JSON_OBJECT);
    return nodes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *err = NULL;
    struct admin_json *j, *again, *cut;
    struct admin_buf b;
    size_t nodes;

    j = admin_json_parse((const char *)data, size, &err);
    if (!j) {
        FUZZ_CHECK(err != NULL);
        return 0;
    }
    nodes = check_tree(j, false);

    admin_buf_init(&b);
    write_json(&b, j);
    FUZZ_CHECK(!b.oom);
    again = admin_json_parse(b.p, b.len, &err);
    if (!again)
        fprintf(stderr, "written back: %.*s\nrefused: %s\n", (int)b.len, b.p, err);
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(same(j, again));
    admin_json_free(again);
    admin_buf_free(&b);

    if (size > 0 && (cut = admin_json_parse((const char *)data, size - 1, &err))) {
        FUZZ_CHECK(check_tree(cut, false) <= nodes);
        admin_json_free(cut);
    }
    if (j->type == ADMIN_JSON_OBJECT && j->child)
        FUZZ_CHECK(admin_json_get(j, j->child->key) == j->child);
    admin_json_free(j);
    return 0;
}
