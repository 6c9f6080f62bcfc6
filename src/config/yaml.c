/* YAML text → config_node tree, from libfyaml's event stream.
 *
 * Why events and not libfyaml's document API: messages must point at the
 * exact start of every node, mappings and lists included, and 0.7's document
 * API has no public way to get that. The events carry it. Anchors, aliases and
 * merge keys ("<<") are resolved here; an alias shares the anchored node, so
 * nothing is ever copied, and what merges copy is bounded: memory stays
 * linear in the input. */
#include "config/internal.h"

#include <libfyaml.h>
#include <stdlib.h>
#include <string.h>

/* Keys that merge keys ("<<") may copy in one file, all merges together. */
#define CONFIG_YAML_MAX_MERGED 1000000

struct config_yaml_anchor {
    char *name;
    struct config_node *node;
};

/* One open mapping or list while its events stream in. */
struct config_yaml_frame {
    struct config_node *node;
    struct config_node *key;       /* map: a key still waiting for its value */
    char *anchor;                  /* registered when the collection closes */
};

struct config_yaml_builder {
    struct config_diag *d;
    struct config_yaml *y;
    struct config_yaml_frame *stack;
    size_t depth, cap;
    struct config_yaml_anchor *anchors;
    size_t nanchors, anchors_cap;
    int line, col;                 /* the last known position */
    size_t merged;                 /* keys copied by merge keys so far */
    bool failed;                   /* out of memory, a broken stream, a limit */
};

static bool config_yaml_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    size_t ncap;
    void *p;

    if (need <= *cap)
        return true;
    ncap = *cap ? *cap * 2 : 8;
    while (ncap < need)
        ncap *= 2;
    p = realloc(*arr, ncap * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

static void config_yaml_oom(struct config_yaml_builder *b)
{
    if (!b->failed)
        config_diag_error(b->d, b->line, b->col, "out of memory while reading the file");
    b->failed = true;
}

static struct config_node *config_yaml_new(struct config_yaml_builder *b,
                                           enum config_node_kind kind)
{
    struct config_node *n = calloc(1, sizeof(*n));

    if (!n) {
        config_yaml_oom(b);
        return NULL;
    }
    n->kind = kind;
    n->line = b->line;
    n->col = b->col;
    n->next_alloc = b->y->all;
    b->y->all = n;
    return n;
}

/* Remembers where an event starts; events without a position (an empty
 * value, say) keep the one before, which is the key they belong to. */
static void config_yaml_mark(struct config_yaml_builder *b, struct fy_event *e)
{
    const struct fy_mark *m = fy_event_start_mark(e);

    if (m && m->line >= 0 && m->column >= 0) {
        b->line = m->line + 1;
        b->col = m->column + 1;
    }
}

static char *config_yaml_token_dup(struct fy_token *t)
{
    const char *s;
    size_t len = 0;
    char *out;

    s = t ? fy_token_get_text(t, &len) : NULL;
    if (!s) {
        s = "";
        len = 0;
    }
    out = malloc(len + 1);
    if (out) {
        memcpy(out, s, len);
        out[len] = '\0';
    }
    return out;
}

static void config_yaml_add_anchor(struct config_yaml_builder *b, char *name,
                                   struct config_node *n)
{
    if (!config_yaml_grow((void **)&b->anchors, &b->anchors_cap, b->nanchors + 1,
                          sizeof(*b->anchors))) {
        free(name);
        config_yaml_oom(b);
        return;
    }
    b->anchors[b->nanchors++] = (struct config_yaml_anchor){ .name = name, .node = n };
}

static struct config_node *config_yaml_find_anchor(struct config_yaml_builder *b,
                                                   const char *name)
{
    /* From the end: YAML lets a later anchor of the same name take over. */
    for (size_t i = b->nanchors; i-- > 0;)
        if (strcmp(b->anchors[i].name, name) == 0)
            return b->anchors[i].node;
    return NULL;
}

/* Hangs a finished node under the open collection (or makes it the root). */
static void config_yaml_attach(struct config_yaml_builder *b, struct config_node *n)
{
    struct config_yaml_frame *f;
    struct config_node *p;

    if (b->depth == 0) {
        if (!b->y->root)
            b->y->root = n;
        return;
    }
    f = &b->stack[b->depth - 1];
    p = f->node;
    if (p->kind == CONFIG_NODE_SEQ) {
        if (!config_yaml_grow((void **)&p->items, &p->cap, p->n + 1, sizeof(*p->items))) {
            config_yaml_oom(b);
            return;
        }
        p->items[p->n++] = n;
    } else if (!f->key) {
        f->key = n;
    } else {
        if (!config_yaml_grow((void **)&p->pairs, &p->cap, p->n + 1, sizeof(*p->pairs))) {
            config_yaml_oom(b);
            return;
        }
        p->pairs[p->n++] = (struct config_pair){ .key = f->key, .value = n };
        f->key = NULL;
    }
}

static bool config_yaml_same_key(const struct config_node *a, const struct config_node *b)
{
    return a->kind == CONFIG_NODE_SCALAR && b->kind == CONFIG_NODE_SCALAR &&
           a->len == b->len && memcmp(a->text, b->text, a->len) == 0;
}

static bool config_yaml_is_merge(const struct config_node *k)
{
    return k->kind == CONFIG_NODE_SCALAR && k->plain && strcmp(k->text, "<<") == 0;
}

/* A key and where it stands among its mapping's keys. Repeats are found by
 * sorting these, not by comparing each key with every earlier one: a file
 * of one big mapping (or many merges of one) would keep the loader busy for
 * minutes. */
struct config_yaml_key {
    const struct config_node *key;
    size_t index;
};

/* By text; equal keys in the order they stand, so a run's first is the
 * one that counts. */
static int config_yaml_key_cmp(const void *a, const void *b)
{
    const struct config_yaml_key *x = a, *y = b;
    size_t len = x->key->len < y->key->len ? x->key->len : y->key->len;
    int c = memcmp(x->key->text, y->key->text, len);

    if (c == 0 && x->key->len != y->key->len)
        c = x->key->len < y->key->len ? -1 : 1;
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* The scalar keys of pairs[0..n), merge keys left out, sorted into a new
 * array (*m of them). NULL when out of memory (reported). */
static struct config_yaml_key *config_yaml_sort_keys(struct config_yaml_builder *b,
                                                     const struct config_pair *pairs, size_t n,
                                                     size_t *m)
{
    struct config_yaml_key *keys = malloc((n ? n : 1) * sizeof(*keys));

    *m = 0;
    if (!keys) {
        config_yaml_oom(b);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (pairs[i].key->kind == CONFIG_NODE_SCALAR && !config_yaml_is_merge(pairs[i].key))
            keys[(*m)++] = (struct config_yaml_key){ .key = pairs[i].key, .index = i };
    qsort(keys, *m, sizeof(*keys), config_yaml_key_cmp);
    return keys;
}

/* Appends the pairs of SRC, merged by the merge key AT, to out. A merge
 * copies its source's keys where an alias shares a node, so their total is
 * bounded, like the counts of listeners and backends. */
static void config_yaml_merge_from(struct config_yaml_builder *b, struct config_pair **out,
                                   size_t *n, size_t *cap, const struct config_node *src,
                                   const struct config_node *at)
{
    if (b->failed || src->n == 0)
        return;
    if (src->n > CONFIG_YAML_MAX_MERGED - b->merged) {
        config_diag_error(b->d, at->line, at->col, "merge keys ('<<') copy more than %d keys "
                          "in all; the file is refused", CONFIG_YAML_MAX_MERGED);
        b->failed = true;
        return;
    }
    b->merged += src->n;
    if (!config_yaml_grow((void **)out, cap, *n + src->n, sizeof(**out))) {
        config_yaml_oom(b);
        return;
    }
    memcpy(*out + *n, src->pairs, src->n * sizeof(**out));
    *n += src->n;
}

/* A mapping just closed: report duplicate keys, then apply merge keys. */
static void config_yaml_finish_map(struct config_yaml_builder *b, struct config_node *map)
{
    struct config_yaml_key *keys;
    struct config_pair *out = NULL;
    size_t n = 0, cap = 0, m;
    bool merges = false, *drop;

    keys = config_yaml_sort_keys(b, map->pairs, map->n, &m);
    if (!keys)
        return;
    for (size_t i = 1, run = 0; i < m; i++) {
        const struct config_node *k = keys[i].key, *first = keys[run].key;

        if (!config_yaml_same_key(first, k)) {
            run = i;
            continue;
        }
        config_diag_error(b->d, k->line, k->col, "duplicate key '%s' (first at %d:%d)",
                          k->text, first->line, first->col);
    }
    free(keys);
    for (size_t i = 0; i < map->n; i++)
        merges |= config_yaml_is_merge(map->pairs[i].key);
    if (!merges)
        return;

    /* Keys written in the mapping itself first, then each merge source's
     * in order; of a repeated key only the first stays, so written keys win
     * over merged ones and earlier merge sources over later. */
    for (size_t i = 0; i < map->n; i++) {
        if (config_yaml_is_merge(map->pairs[i].key))
            continue;
        if (!config_yaml_grow((void **)&out, &cap, n + 1, sizeof(*out))) {
            config_yaml_oom(b);
            free(out);
            return;
        }
        out[n++] = map->pairs[i];
    }
    for (size_t i = 0; i < map->n; i++) {
        const struct config_node *k = map->pairs[i].key, *v = map->pairs[i].value;

        if (!config_yaml_is_merge(k))
            continue;
        if (v->kind == CONFIG_NODE_MAP) {
            config_yaml_merge_from(b, &out, &n, &cap, v, k);
            continue;
        }
        if (v->kind != CONFIG_NODE_SEQ) {
            config_diag_error(b->d, v->line, v->col,
                              "merge key '<<' needs a mapping or a list of mappings, got %s",
                              config_node_kind_name(v));
            continue;
        }
        for (size_t j = 0; j < v->n; j++) {
            const struct config_node *s = v->items[j];
            if (s->kind != CONFIG_NODE_MAP)
                config_diag_error(b->d, s->line, s->col,
                                  "merge key '<<' needs a mapping or a list of mappings, got %s",
                                  config_node_kind_name(s));
            else
                config_yaml_merge_from(b, &out, &n, &cap, s, k);
        }
    }
    keys = b->failed ? NULL : config_yaml_sort_keys(b, out, n, &m);
    drop = keys ? calloc(n ? n : 1, sizeof(*drop)) : NULL;
    if (!drop) {
        if (keys)
            config_yaml_oom(b);
        free(keys);
        free(out);
        return;
    }
    for (size_t i = 1, run = 0; i < m; i++) {
        if (config_yaml_same_key(keys[run].key, keys[i].key))
            drop[keys[i].index] = true;
        else
            run = i;
    }
    m = 0;
    for (size_t i = 0; i < n; i++)
        if (!drop[i])
            out[m++] = out[i];
    free(drop);
    free(keys);
    free(map->pairs);
    map->pairs = out;
    map->n = m;
    map->cap = cap;
}

static void config_yaml_scalar(struct config_yaml_builder *b, struct fy_event *e)
{
    struct fy_token *t = e->scalar.value;
    struct config_node *n = config_yaml_new(b, CONFIG_NODE_SCALAR);
    const char *s;
    size_t len = 0;

    if (!n)
        return;
    s = t ? fy_token_get_text(t, &len) : NULL;
    if (!s) {
        s = "";
        len = 0;
    }
    n->text = malloc(len + 1);
    if (!n->text) {
        config_yaml_oom(b);
        return;
    }
    memcpy(n->text, s, len);
    n->text[len] = '\0';
    n->len = len;
    n->plain = fy_token_scalar_style(t) == FYSS_PLAIN && !e->scalar.tag;
    /* libfyaml marks a quoted scalar after its opening quote; the node
     * starts at the quote. */
    if ((fy_token_scalar_style(t) == FYSS_SINGLE_QUOTED ||
         fy_token_scalar_style(t) == FYSS_DOUBLE_QUOTED) && n->col > 1)
        n->col--;
    if (n->plain && (len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
                     strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0))
        n->kind = CONFIG_NODE_NULL;
    if (e->scalar.anchor) {
        char *name = config_yaml_token_dup(e->scalar.anchor);
        if (!name)
            config_yaml_oom(b);
        else
            config_yaml_add_anchor(b, name, n);
    }
    config_yaml_attach(b, n);
}

static void config_yaml_alias(struct config_yaml_builder *b, struct fy_event *e)
{
    char *name = config_yaml_token_dup(e->alias.anchor);
    struct config_node *n;

    if (!name) {
        config_yaml_oom(b);
        return;
    }
    n = config_yaml_find_anchor(b, name);
    if (!n) {
        /* Also the case for an alias inside its own anchor: anchors on
         * collections count from their end, so no cycle can be built. */
        config_diag_error(b->d, b->line, b->col,
                          "alias '*%s' does not name an anchor defined before it", name);
        /* A null stand-in keeps the keys and values of the parent paired. */
        n = config_yaml_new(b, CONFIG_NODE_NULL);
    }
    free(name);
    if (n)
        config_yaml_attach(b, n);
}

static void config_yaml_open(struct config_yaml_builder *b, enum config_node_kind kind,
                             struct fy_token *anchor)
{
    struct config_node *n = config_yaml_new(b, kind);
    char *name = NULL;

    if (!n)
        return;
    if (anchor && !(name = config_yaml_token_dup(anchor))) {
        config_yaml_oom(b);
        return;
    }
    config_yaml_attach(b, n);
    if (!config_yaml_grow((void **)&b->stack, &b->cap, b->depth + 1, sizeof(*b->stack))) {
        free(name);
        config_yaml_oom(b);
        return;
    }
    b->stack[b->depth++] = (struct config_yaml_frame){ .node = n, .anchor = name };
}

static void config_yaml_close(struct config_yaml_builder *b)
{
    struct config_yaml_frame f;

    if (b->depth == 0) {
        b->failed = true;
        return;
    }
    f = b->stack[--b->depth];
    if (f.node->kind == CONFIG_NODE_MAP)
        config_yaml_finish_map(b, f.node);
    if (f.anchor)
        config_yaml_add_anchor(b, f.anchor, f.node);
}

/* Returns false to stop reading. */
static bool config_yaml_event(struct config_yaml_builder *b, struct fy_event *e, int *ndocs)
{
    config_yaml_mark(b, e);
    switch (e->type) {
    case FYET_DOCUMENT_START:
        if (++*ndocs > 1) {
            config_diag_error(b->d, b->line, b->col,
                              "a config file holds one YAML document; a second one starts here");
            return false;
        }
        break;
    case FYET_SCALAR:
        config_yaml_scalar(b, e);
        break;
    case FYET_ALIAS:
        /* The alias event starts at the anchor name, after its '*'. */
        if (b->col > 1)
            b->col--;
        config_yaml_alias(b, e);
        break;
    case FYET_MAPPING_START:
        config_yaml_open(b, CONFIG_NODE_MAP, e->mapping_start.anchor);
        break;
    case FYET_SEQUENCE_START:
        config_yaml_open(b, CONFIG_NODE_SEQ, e->sequence_start.anchor);
        break;
    case FYET_MAPPING_END:
    case FYET_SEQUENCE_END:
        config_yaml_close(b);
        break;
    default:
        break;
    }
    return !b->failed;
}

/* libfyaml would print to stderr by default; everything goes through the
 * collected error list instead, so this only swallows what is left. */
static void config_yaml_quiet(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag;
    (void)user;
    (void)buf;
    (void)len;
}

/* Copies libfyaml's collected syntax errors into ours. Returns how many. */
static int config_yaml_syntax_errors(struct config_yaml_builder *b, struct fy_diag *fyd)
{
    struct fy_diag_error *err;
    void *iter = NULL;
    int count = 0;

    while ((err = fy_diag_errors_iterate(fyd, &iter)) != NULL) {
        /* Collected positions are already 1-based. */
        int line = err->line > 0 ? err->line : b->line;
        int col = err->column > 0 ? err->column : b->col;

        if (err->type == FYET_ERROR) {
            config_diag_error(b->d, line, col, "%s", err->msg ? err->msg : "YAML syntax error");
            count++;
        } else if (err->type == FYET_WARNING) {
            config_diag_warning(b->d, line, col, "%s", err->msg ? err->msg : "YAML warning");
        }
    }
    return count;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. Strict:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t config_utf8_len(const unsigned char *s, size_t n)
{
    size_t len, i;
    uint32_t c;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, c = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, c = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, c = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    return len;
}

/* A config is UTF-8 text without NUL bytes. Checked before libfyaml sees it:
 * besides the clearer message, 0.7's scanner can loop forever on some
 * invalid UTF-8 (found by fuzz/fuzz_config.c). */
static int config_yaml_check_text(const char *buf, size_t len, struct config_diag *d)
{
    const unsigned char *s = (const unsigned char *)buf;
    int line = 1, col = 1;

    for (size_t i = 0; i < len;) {
        size_t n = s[i] ? config_utf8_len(s + i, len - i) : 0;

        if (n == 0 && s[i] == 0) {
            config_diag_error(d, line, col, "the file contains a NUL byte; a config is text");
            return -1;
        }
        if (n == 0) {
            config_diag_error(d, line, col, "the file is not valid UTF-8 text (byte 0x%02x)",
                              s[i]);
            return -1;
        }
        if (s[i] == '\n')
            line++, col = 1;
        else
            col++;
        i += n;
    }
    return 0;
}

int config_yaml_parse(const char *buf, size_t len, struct config_diag *d,
                      struct config_yaml *y)
{
    struct config_yaml_builder b = { .d = d, .y = y, .line = 1, .col = 1 };
    struct fy_diag_cfg dcfg;
    struct fy_parse_cfg pcfg;
    struct fy_diag *fyd;
    struct fy_parser *fyp;
    struct fy_event *e;
    int ndocs = 0, rc = 0;

    memset(y, 0, sizeof(*y));
    if (config_yaml_check_text(buf, len, d) < 0)
        return -1;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = config_yaml_quiet;
    dcfg.colorize = false;
    dcfg.level = FYET_WARNING;
    fyd = fy_diag_create(&dcfg);
    if (!fyd) {
        config_diag_error(d, 0, 0, "out of memory while reading the file");
        return -1;
    }
    fy_diag_set_collect_errors(fyd, true);

    memset(&pcfg, 0, sizeof(pcfg));
    pcfg.flags = FYPCF_QUIET | FYPCF_COLLECT_DIAG;
    pcfg.diag = fyd;
    fyp = fy_parser_create(&pcfg);
    if (!fyp || fy_parser_set_string(fyp, buf, len) != 0) {
        config_diag_error(d, 0, 0, "out of memory while reading the file");
        if (fyp)
            fy_parser_destroy(fyp);
        fy_diag_destroy(fyd);
        return -1;
    }

    while ((e = fy_parser_parse(fyp)) != NULL) {
        bool go_on = config_yaml_event(&b, e, &ndocs);
        fy_parser_event_free(fyp, e);
        if (!go_on)
            break;
    }
    if (fy_parser_get_stream_error(fyp) || fy_diag_got_error(fyd)) {
        if (config_yaml_syntax_errors(&b, fyd) == 0)
            config_diag_error(d, b.line, b.col, "YAML syntax error");
        rc = -1;
    } else {
        config_yaml_syntax_errors(&b, fyd);
    }
    if (b.failed || b.depth != 0)
        rc = -1;

    for (size_t i = 0; i < b.depth; i++)
        free(b.stack[i].anchor);
    free(b.stack);
    for (size_t i = 0; i < b.nanchors; i++)
        free(b.anchors[i].name);
    free(b.anchors);
    fy_parser_destroy(fyp);
    fy_diag_destroy(fyd);
    return rc;
}

void config_yaml_free(struct config_yaml *y)
{
    struct config_node *n = y->all, *next;

    for (; n; n = next) {
        next = n->next_alloc;
        free(n->text);
        free(n->pairs);
        free(n->items);
        free(n);
    }
    y->all = NULL;
    y->root = NULL;
}

const struct config_pair *config_map_pair(const struct config_node *map, const char *key)
{
    size_t len = strlen(key);

    if (!map || map->kind != CONFIG_NODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++) {
        const struct config_node *k = map->pairs[i].key;
        if (k->kind == CONFIG_NODE_SCALAR && k->len == len && memcmp(k->text, key, len) == 0)
            return &map->pairs[i];
    }
    return NULL;
}

const struct config_node *config_map_get(const struct config_node *map, const char *key)
{
    const struct config_pair *p = config_map_pair(map, key);

    return p ? p->value : NULL;
}

const char *config_node_kind_name(const struct config_node *n)
{
    switch (n->kind) {
    case CONFIG_NODE_NULL:
        return "nothing";
    case CONFIG_NODE_SCALAR:
        return "a string";
    case CONFIG_NODE_MAP:
        return "a mapping";
    case CONFIG_NODE_SEQ:
        return "a list";
    }
    return "?";
}
