/* The route table: a listener's rules indexed so that a lookup touches only
 * the rules that can match its host and path.
 *
 * Rules are put in host buckets: one per exact host (hash map), one per
 * wildcard suffix ("*.example.com" → "example.com", a second hash map) and
 * one for the rules without a host. A request's host is looked up as it is,
 * then each of its label suffixes ("a.b.example.com" → "b.example.com",
 * "example.com", "com") in the wildcard map, so it meets at most
 * 2 + (number of dots) buckets.
 *
 * Inside a bucket rules are split by path condition: exact paths in one hash
 * map for the whole table (keyed by bucket and path), prefixes in the
 * bucket's radix tree (path-compressed byte trie; a node holds the rules
 * whose prefix ends there, so walking the request path collects every
 * prefix rule that matches), and the rest (regex or no path condition) in a
 * plain list. Every list holds rule indices in ascending order.
 *
 * A lookup first gathers the lists its host and path lead to (hash lookups
 * and one walk down each trie), then merges them by index and tests the
 * rules in ascending order (the host and an exact/prefix path hold already;
 * method, headers, query, cookies and a regex are tested) until one holds:
 * the first rule in config order that matches. A regex only runs when every
 * lower-numbered candidate has failed.
 *
 * After route_table_build nothing is written: threads share the table. */
#include <stdlib.h>
#include <string.h>

#include "route/internal.h"

/* Hosts up to this long are lowercased on the stack for the lookup. */
#define HOST_BUF 256

struct rnode {
    const char *label;           /* the edge from the parent, into a rule's path */
    uint32_t label_len;
    uint32_t list;               /* rules whose prefix ends here, or ROUTE_NONE */
    uint32_t child_off;          /* into child_first/child_id */
    uint32_t nchild;             /* sorted by the first byte of their label */
};

struct bucket {
    uint32_t root;               /* radix tree of prefixes, or ROUTE_NONE */
    uint32_t rest;               /* list: regex and any-path rules, or ROUTE_NONE */
    bool exact;                  /* has exact-path rules (in exact_paths) */
};

struct rlist {
    uint32_t off;                /* into items */
    uint32_t n;
};

struct route_table {
    const struct conf_route *routes;
    uint32_t nroutes;
    pcre2_code **re;             /* per rule; NULL unless path_regex */
    char **hosts;                /* per rule: lowercased name (see route_host_of) */
    struct bucket *buckets;
    uint32_t nbuckets;
    uint32_t any_bucket;         /* rules without a host, or ROUTE_NONE */
    struct hmap exact_hosts;     /* name → bucket */
    struct hmap wild_hosts;      /* suffix → bucket */
    struct hmap exact_paths;     /* (bucket as tag, path) → list */
    uint32_t max_exact_len;      /* longest exact host */
    uint32_t max_wild_len;       /* longest wildcard suffix */
    uint64_t exact_lens;         /* bit min(len, 63) set for each exact host */
    uint64_t wild_lens;          /* the same for wildcard suffixes */
    struct rnode *nodes;
    uint32_t nnodes;
    uint8_t *child_first;
    uint32_t *child_id;
    struct rlist *lists;
    uint32_t nlists;
    uint32_t *items;
};

/* ---- building ---- */

struct vec32 {
    uint32_t *v;
    uint32_t n, cap;
};

static int vec_push(struct vec32 *v, uint32_t x)
{
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 4;
        uint32_t *p = realloc(v->v, cap * sizeof(*p));
        if (!p)
            return -1;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return 0;
}

struct bnode {
    const char *label;
    uint32_t label_len;
    uint32_t list;
    struct vec32 kids;           /* node ids, sorted by first label byte */
};

struct builder {
    struct route_table *t;
    struct vec32 *lists;
    uint32_t nlists, cap_lists;
    struct bnode *nodes;
    uint32_t nnodes, cap_nodes;
    uint32_t cap_buckets;
};

static uint32_t new_list(struct builder *b)
{
    if (b->nlists == b->cap_lists) {
        uint32_t cap = b->cap_lists ? b->cap_lists * 2 : 16;
        struct vec32 *p = realloc(b->lists, cap * sizeof(*p));
        if (!p)
            return ROUTE_NONE;
        b->lists = p;
        b->cap_lists = cap;
    }
    memset(&b->lists[b->nlists], 0, sizeof(b->lists[0]));
    return b->nlists++;
}

/* Append rule to *list, making the list first if it is ROUTE_NONE. */
static int list_add(struct builder *b, uint32_t *list, uint32_t rule)
{
    if (*list == ROUTE_NONE && (*list = new_list(b)) == ROUTE_NONE)
        return -1;
    return vec_push(&b->lists[*list], rule);
}

static uint32_t new_node(struct builder *b, const char *label, uint32_t len)
{
    if (b->nnodes == b->cap_nodes) {
        uint32_t cap = b->cap_nodes ? b->cap_nodes * 2 : 16;
        struct bnode *p = realloc(b->nodes, cap * sizeof(*p));
        if (!p)
            return ROUTE_NONE;
        b->nodes = p;
        b->cap_nodes = cap;
    }
    b->nodes[b->nnodes] = (struct bnode){ .label = label, .label_len = len, .list = ROUTE_NONE };
    return b->nnodes++;
}

static uint32_t new_bucket(struct builder *b)
{
    struct route_table *t = b->t;
    if (t->nbuckets == b->cap_buckets) {
        uint32_t cap = b->cap_buckets ? b->cap_buckets * 2 : 8;
        struct bucket *p = realloc(t->buckets, cap * sizeof(*p));
        if (!p)
            return ROUTE_NONE;
        t->buckets = p;
        b->cap_buckets = cap;
    }
    t->buckets[t->nbuckets] = (struct bucket){ .root = ROUTE_NONE, .rest = ROUTE_NONE,
                                               .exact = false };
    return t->nbuckets++;
}

/* The child of node whose label starts with c: its position in kids (found)
 * or where it would go. */
static uint32_t kid_pos(const struct builder *b, uint32_t node, uint8_t c, bool *found)
{
    const struct vec32 *k = &b->nodes[node].kids;
    uint32_t lo = 0, hi = k->n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        uint8_t m = (uint8_t)b->nodes[k->v[mid]].label[0];
        if (m < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < k->n && (uint8_t)b->nodes[k->v[lo]].label[0] == c;
    return lo;
}

static int kid_insert(struct builder *b, uint32_t node, uint32_t at, uint32_t kid)
{
    struct vec32 *k = &b->nodes[node].kids;
    if (vec_push(k, 0) < 0)
        return -1;
    memmove(&k->v[at + 1], &k->v[at], (k->n - 1 - at) * sizeof(k->v[0]));
    k->v[at] = kid;
    return 0;
}

/* The radix tree node for prefix key under root, made (splitting an edge
 * where needed) if there is none. ROUTE_NONE when out of memory. */
static uint32_t trie_node(struct builder *b, uint32_t root, const char *key, uint32_t klen)
{
    uint32_t node = root, pos = 0;
    while (pos < klen) {
        bool found;
        uint32_t at = kid_pos(b, node, (uint8_t)key[pos], &found);
        if (!found) {
            uint32_t leaf = new_node(b, key + pos, klen - pos);
            if (leaf == ROUTE_NONE || kid_insert(b, node, at, leaf) < 0)
                return ROUTE_NONE;
            return leaf;
        }
        uint32_t kid = b->nodes[node].kids.v[at];
        const char *lab = b->nodes[kid].label;
        uint32_t llen = b->nodes[kid].label_len, common = 0;
        while (common < llen && pos + common < klen && lab[common] == key[pos + common])
            common++;
        if (common < llen) {
            /* split the edge: node → mid (lab[0..common)) → kid (the rest) */
            uint32_t mid = new_node(b, lab, common);
            if (mid == ROUTE_NONE || vec_push(&b->nodes[mid].kids, kid) < 0)
                return ROUTE_NONE;
            b->nodes[kid].label = lab + common;
            b->nodes[kid].label_len = llen - common;
            b->nodes[node].kids.v[at] = mid;
            kid = mid;
        }
        node = kid;
        pos += common;
    }
    return node;
}

static char *lower_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
    d[n] = '\0';
    return d;
}

/* The bucket for rule i's host, made if new. */
static uint32_t host_bucket(struct builder *b, uint32_t i)
{
    struct route_table *t = b->t;
    const char *name;
    size_t len;
    enum route_host_kind kind = route_host_of(&t->routes[i], &name, &len);

    if (kind == ROUTE_HOST_ANY) {
        if (t->any_bucket == ROUTE_NONE)
            t->any_bucket = new_bucket(b);
        return t->any_bucket;
    }
    if (len > UINT32_MAX / 2 || !(t->hosts[i] = lower_dup(name, len)))
        return ROUTE_NONE;
    struct hmap *m = kind == ROUTE_HOST_EXACT ? &t->exact_hosts : &t->wild_hosts;
    uint32_t *max = kind == ROUTE_HOST_EXACT ? &t->max_exact_len : &t->max_wild_len;
    uint64_t *lens = kind == ROUTE_HOST_EXACT ? &t->exact_lens : &t->wild_lens;
    bool created;
    uint32_t *v = hmap_put(m, t->hosts[i], (uint32_t)len, 0, &created);
    if (!v)
        return ROUTE_NONE;
    if (created) {
        uint32_t nb = new_bucket(b);   /* may move nothing in m: safe */
        *v = nb;
        if ((uint32_t)len > *max)
            *max = (uint32_t)len;
        *lens |= 1ull << (len < 63 ? len : 63);
    }
    return *v;
}

static int add_rule(struct builder *b, uint32_t i)
{
    struct route_table *t = b->t;
    const struct conf_route *r = &t->routes[i];
    uint32_t bk = host_bucket(b, i);
    if (bk == ROUTE_NONE)
        return -1;

    const char *path = r->path ? r->path : "";
    size_t plen = strlen(path);
    if (plen > UINT32_MAX / 2)
        return -1;
    switch (r->path_kind) {
    case ROUTE_PATH_EXACT: {
        bool created;
        uint32_t *v = hmap_put(&t->exact_paths, path, (uint32_t)plen, bk, &created);
        if (!v)
            return -1;
        uint32_t list = *v;
        if (list_add(b, &list, i) < 0)
            return -1;
        *v = list;
        t->buckets[bk].exact = true;
        return 0;
    }
    case ROUTE_PATH_PREFIX: {
        if (t->buckets[bk].root == ROUTE_NONE &&
            (t->buckets[bk].root = new_node(b, "", 0)) == ROUTE_NONE)
            return -1;
        uint32_t node = trie_node(b, t->buckets[bk].root, path, (uint32_t)plen);
        if (node == ROUTE_NONE)
            return -1;
        return list_add(b, &b->nodes[node].list, i);
    }
    case ROUTE_PATH_REGEX:
        if (!(t->re[i] = route_regex_compile(path)))
            return -1;
        /* fall through */
    case ROUTE_PATH_ANY:
        break;
    }
    return list_add(b, &t->buckets[bk].rest, i);
}

/* Lay the build-time lists and nodes out in flat arrays. */
static int flatten(struct builder *b)
{
    struct route_table *t = b->t;
    uint32_t nitems = 0, nkids = 0;

    for (uint32_t i = 0; i < b->nlists; i++)
        nitems += b->lists[i].n;
    t->lists = calloc(b->nlists ? b->nlists : 1, sizeof(*t->lists));
    t->items = malloc((nitems ? nitems : 1) * sizeof(*t->items));
    if (!t->lists || !t->items)
        return -1;
    nitems = 0;
    for (uint32_t i = 0; i < b->nlists; i++) {
        t->lists[i] = (struct rlist){ .off = nitems, .n = b->lists[i].n };
        memcpy(&t->items[nitems], b->lists[i].v, b->lists[i].n * sizeof(uint32_t));
        nitems += b->lists[i].n;
    }
    t->nlists = b->nlists;

    for (uint32_t i = 0; i < b->nnodes; i++)
        nkids += b->nodes[i].kids.n;
    t->nodes = calloc(b->nnodes ? b->nnodes : 1, sizeof(*t->nodes));
    t->child_first = malloc(nkids ? nkids : 1);
    t->child_id = malloc((nkids ? nkids : 1) * sizeof(*t->child_id));
    if (!t->nodes || !t->child_first || !t->child_id)
        return -1;
    nkids = 0;
    for (uint32_t i = 0; i < b->nnodes; i++) {
        const struct bnode *n = &b->nodes[i];
        t->nodes[i] = (struct rnode){ .label = n->label, .label_len = n->label_len,
                                      .list = n->list, .child_off = nkids,
                                      .nchild = n->kids.n };
        for (uint32_t k = 0; k < n->kids.n; k++) {
            t->child_id[nkids] = n->kids.v[k];
            t->child_first[nkids] = (uint8_t)b->nodes[n->kids.v[k]].label[0];
            nkids++;
        }
    }
    t->nnodes = b->nnodes;
    return 0;
}

static void builder_free(struct builder *b)
{
    for (uint32_t i = 0; i < b->nlists; i++)
        free(b->lists[i].v);
    free(b->lists);
    for (uint32_t i = 0; i < b->nnodes; i++)
        free(b->nodes[i].kids.v);
    free(b->nodes);
}

struct route_table *route_table_build(const struct conf_listener *l)
{
    if (l->nroutes >= ROUTE_NONE)
        return NULL;
    struct route_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->routes = l->routes;
    t->nroutes = (uint32_t)l->nroutes;
    t->any_bucket = ROUTE_NONE;
    size_t n = t->nroutes ? t->nroutes : 1;
    t->re = calloc(n, sizeof(*t->re));
    t->hosts = calloc(n, sizeof(*t->hosts));

    struct builder b = { .t = t };
    int rc = t->re && t->hosts ? 0 : -1;
    for (uint32_t i = 0; i < t->nroutes && rc == 0; i++)
        rc = add_rule(&b, i);
    if (rc == 0)
        rc = flatten(&b);
    builder_free(&b);
    if (rc < 0) {
        route_table_free(t);
        return NULL;
    }
    return t;
}

void route_table_free(struct route_table *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->nroutes; i++) {
        if (t->re)
            pcre2_code_free(t->re[i]);
        if (t->hosts)
            free(t->hosts[i]);
    }
    free(t->re);
    free(t->hosts);
    free(t->buckets);
    hmap_free(&t->exact_hosts);
    hmap_free(&t->wild_hosts);
    hmap_free(&t->exact_paths);
    free(t->nodes);
    free(t->child_first);
    free(t->child_id);
    free(t->lists);
    free(t->items);
    free(t);
}

/* ---- lookup ---- */

/* Candidate lists gathered before any rule is tested; more than this and
 * the ones so far are settled first (the answer is the same, only the
 * order of the tests changes). */
#define MAX_CANDIDATES 32

struct lookup {
    const struct route_table *t;
    const struct route_request *r;
    uint32_t best;               /* lowest matching index so far, or ROUTE_NONE */
    uint32_t ncand;
    uint32_t cand[MAX_CANDIDATES];   /* list ids */
};

/* Everything but the host and an exact/prefix path, which the index already
 * vouches for. Cheapest first; the regex last. */
static bool rule_holds(const struct lookup *k, uint32_t i)
{
    const struct conf_route *c = &k->t->routes[i];
    return route_source_ok(c, k->r) && route_method_ok(c, k->r) && route_headers_ok(c, k->r) &&
           route_query_ok(c, k->r) &&
           route_cookies_ok(c, k->r) &&
           (c->path_kind != ROUTE_PATH_REGEX || route_regex_match(k->t->re[i], k->r->path));
}

/* Test the candidates of every gathered list in ascending index order (a
 * merge of the sorted lists); the first that holds is the answer among
 * them, and nothing above the best so far is tested. So a regex or a
 * header test is only run for a rule that would win if it held. */
static void settle(struct lookup *k)
{
    const struct route_table *t = k->t;
    uint32_t pos[MAX_CANDIDATES];

    for (uint32_t c = 0; c < k->ncand; c++)
        pos[c] = 0;
    for (;;) {
        uint32_t pick = ROUTE_NONE, idx = k->best;
        for (uint32_t c = 0; c < k->ncand; c++) {
            const struct rlist *l = &t->lists[k->cand[c]];
            if (pos[c] < l->n && t->items[l->off + pos[c]] < idx) {
                idx = t->items[l->off + pos[c]];
                pick = c;
            }
        }
        if (pick == ROUTE_NONE)
            break;
        pos[pick]++;
        if (rule_holds(k, idx)) {
            k->best = idx;
            break;
        }
    }
    k->ncand = 0;
}

static void scan_list(struct lookup *k, uint32_t list)
{
    const struct rlist *l = &k->t->lists[list];
    if (!l->n || k->t->items[l->off] >= k->best)
        return;
    if (k->ncand == MAX_CANDIDATES)
        settle(k);
    k->cand[k->ncand++] = list;
}

static void scan_trie(struct lookup *k, uint32_t root)
{
    const struct route_table *t = k->t;
    const struct rnode *n = &t->nodes[root];
    const char *path = k->r->path.p;
    uint32_t len = k->r->path.len, pos = 0;

    for (;;) {
        if (n->list != ROUTE_NONE)
            scan_list(k, n->list);
        if (pos >= len || !n->nchild)
            return;
        const uint8_t *first = &t->child_first[n->child_off];
        uint8_t c = (uint8_t)path[pos];
        uint32_t lo = 0, hi = n->nchild;
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (first[mid] < c)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == n->nchild || first[lo] != c)
            return;
        const struct rnode *kid = &t->nodes[t->child_id[n->child_off + lo]];
        if (kid->label_len > len - pos || memcmp(kid->label, path + pos, kid->label_len) != 0)
            return;
        pos += kid->label_len;
        n = kid;
    }
}

static void scan_bucket(struct lookup *k, uint32_t bk)
{
    const struct bucket *b = &k->t->buckets[bk];
    if (b->rest != ROUTE_NONE)
        scan_list(k, b->rest);
    if (b->exact) {
        uint32_t list = hmap_get(&k->t->exact_paths, k->r->path.p, k->r->path.len, bk);
        if (list != ROUTE_NONE)
            scan_list(k, list);
    }
    if (b->root != ROUTE_NONE)
        scan_trie(k, b->root);
}

/* Might a host name of this length be in a map (see exact_lens)? */
static bool len_in(uint64_t lens, uint32_t len)
{
    return (lens >> (len < 63 ? len : 63)) & 1u;
}

static void scan_hosts(struct lookup *k)
{
    const struct route_table *t = k->t;
    const char *host = k->r->host.p;
    uint32_t len = k->r->host.len;
    if (len && host[len - 1] == '.')
        len--;
    if (!len)
        return;

    /* Only the last `need` bytes can take part in a match: lowercase those. */
    uint32_t need = t->max_exact_len > t->max_wild_len + 1 ? t->max_exact_len
                                                           : t->max_wild_len + 1;
    uint32_t start = len > need ? len - need : 0, n = len - start;
    char stack[HOST_BUF];
    char *buf = n <= sizeof(stack) ? stack : malloc(n);
    if (!buf)
        return;
    for (uint32_t i = 0; i < n; i++) {
        char c = host[start + i];
        buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }

    if (start == 0 && len_in(t->exact_lens, n)) {
        uint32_t bk = hmap_get(&t->exact_hosts, buf, n, 0);
        if (bk != ROUTE_NONE)
            scan_bucket(k, bk);
    }
    if (t->wild_hosts.n) {
        /* each '.' with something before it starts a candidate suffix */
        for (uint32_t i = 0; i < n; i++) {
            if (buf[i] != '.' || start + i == 0)
                continue;
            uint32_t slen = n - i - 1;
            if (slen == 0 || slen > t->max_wild_len || !len_in(t->wild_lens, slen))
                continue;
            uint32_t bk = hmap_get(&t->wild_hosts, buf + i + 1, slen, 0);
            if (bk != ROUTE_NONE)
                scan_bucket(k, bk);
        }
    }
    if (buf != stack)
        free(buf);
}

const struct conf_route *route_match(const struct route_table *t, const struct route_request *r)
{
    if (!t || !t->nroutes)
        return NULL;
    struct route_request rq = *r;
    if (!rq.path.p || !rq.path.len) {
        rq.path.p = "/";
        rq.path.len = 1;
    }
    struct lookup k = { .t = t, .r = &rq, .best = ROUTE_NONE, .ncand = 0 };
    if (t->any_bucket != ROUTE_NONE)
        scan_bucket(&k, t->any_bucket);
    if (rq.host.p && (t->exact_hosts.n || t->wild_hosts.n))
        scan_hosts(&k);
    settle(&k);
    return k.best == ROUTE_NONE ? NULL : &t->routes[k.best];
}
