/* Request mirroring: the copy held while its request is sent (struct
 * mirror_hold), then sent once as a subrequest (proxy/subrequest.h: a
 * backend picked, an idle connection or a new one, the answer read to its
 * end by its framing and dropped, the connection given back when it ended
 * cleanly). What is mirroring's own: the copy's head, the bytes held and
 * their per-worker bound, the copies in flight (w->mirrors, at most
 * MIRROR_MAX_IN_FLIGHT), and the counting. See mirror.h for what is copied
 * and when. */
#include "proxy/mirror.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/list.h"
#include "core/log.h"
#include "proxy/subrequest.h"

#define MIRROR_MAX_HEADERS 100

/* A copy in flight. Owner: its worker (linked in w->mirrors), until the
 * subrequest's callback, which frees it. */
struct mirror {
    struct worker *w;
    struct pool *pool;
    struct subrequest *s;
    char *req;                          /* the copy: a mirror_hold's bytes, lent to s */
    size_t held;                        /* req's capacity, counted in w->mirror_held */
    struct mirror *prev, *next;
};

void mirror_skipped(struct pool *pool)
{
    atomic_fetch_add_explicit(&pool->mirror_skipped, 1, memory_order_relaxed);
}

/* The copy ended. Any whole answer counts ok, whatever its status: the
 * mirror pool's 5xx are its own business, told to outlier detection by
 * the subrequest. */
static void copy_ended(void *arg, const struct subrequest_answer *a)
{
    struct mirror *m = arg, *head = m->w->mirrors;

    if (a->error)
        log_debug("event=mirror_failed pool=%s backend=%s why=\"%s\"", m->pool->conf->name,
                  a->backend ? a->backend->conf->name : "-", a->error);
    atomic_fetch_add_explicit(a->error ? &m->pool->mirror_failed : &m->pool->mirror_ok, 1,
                              memory_order_relaxed);
    DLIST_REMOVE(head, m);
    m->w->mirrors = head;
    m->w->nmirrors--;
    m->w->mirror_held -= m->held;
    free(m->req);
    free(m);
}

/* The most bytes write_head writes for a head of head_len bytes. */
static size_t head_size(size_t head_len, const struct conf_kv *set, size_t nset)
{
    for (size_t i = 0; i < nset; i++)
        head_len += strlen(set[i].name) + strlen(set[i].value) + 4;
    return head_len;
}

/* Write the copy's head into out: head without the fields set names, then
 * set's fields and the blank line. The head is sluice's own, one "Name:
 * value" per line; it is parsed again to find the lines to leave out. The
 * bytes written, or -1 when the head does not parse. */
static ssize_t write_head(char *out, const char *head, size_t head_len, const struct conf_kv *set,
                          size_t nset)
{
    struct h1_header slots[MIRROR_MAX_HEADERS + 64];   /* a client's 128 fields and ours */
    struct h1_request req;
    const char *line;
    size_t at;

    if (!nset) {
        memcpy(out, head, head_len);
        return (ssize_t)head_len;
    }
    /* Bounded by the head itself, not by the parser's defaults: the
     * listener let the client's through (max_request_line up to 64 KiB). */
    const struct h1_limits lim = {.max_request_line = (uint32_t)head_len,
                                  .max_head = (uint32_t)head_len,
                                  .max_headers = sizeof(slots) / sizeof(slots[0])};

    h1_request_init(&req, slots, sizeof(slots) / sizeof(slots[0]));
    if (h1_parse_request(head, head_len, &lim, &req) != (int)head_len)
        return -1;
    /* The request line, then each field line not replaced. */
    line = req.nheaders ? req.headers[0].name.p : head + head_len - 2;
    memcpy(out, head, (size_t)(line - head));
    at = (size_t)(line - head);
    for (uint32_t h = 0; h < req.nheaders; h++) {
        const struct h1_header *f = &req.headers[h];
        const char *end = h + 1 < req.nheaders ? req.headers[h + 1].name.p : head + head_len - 2;
        bool replaced = false;
        for (size_t i = 0; i < nset && !replaced; i++)
            replaced = h1_slice_eq_ci(f->name, set[i].name);
        if (!replaced) {
            memcpy(out + at, f->name.p, (size_t)(end - f->name.p));
            at += (size_t)(end - f->name.p);
        }
    }
    for (size_t i = 0; i < nset; i++)
        at += (size_t)sprintf(out + at, "%s: %s\r\n", set[i].name, set[i].value);
    memcpy(out + at, "\r\n", 2);
    return (ssize_t)(at + 2);
}

/* The first room for a chunked body; it doubles from there as the body
 * comes, within the worker's bound. */
#define MIRROR_CHUNKED_FIRST (64u * 1024u)

int mirror_hold_start(struct worker *w, struct mirror_hold *h, const char *head, size_t head_len,
                      const struct conf_kv *set, size_t nset, enum h1_body_kind body,
                      uint64_t content_length, uint64_t max_body)
{
    size_t hs = head_size(head_len, set, nset), room;
    ssize_t n;

    memset(h, 0, sizeof(*h));
    if (body == H1_BODY_LENGTH && content_length > max_body)
        return -EFBIG;
    room = body == H1_BODY_LENGTH ? (size_t)content_length
         : body == H1_BODY_CHUNKED ? (max_body < MIRROR_CHUNKED_FIRST ? (size_t)max_body
                                                                      : MIRROR_CHUNKED_FIRST)
         : 0;
    if (w->mirror_held + hs + room > MIRROR_MAX_HELD)
        return -ENOBUFS;
    if (!(h->p = malloc(hs + room)))
        return -ENOMEM;
    if ((n = write_head(h->p, head, head_len, set, nset)) < 0) {
        free(h->p);
        h->p = NULL;
        return -EINVAL;
    }
    h->len = h->head_len = (size_t)n;
    h->cap = hs + room;
    h->max_body = body == H1_BODY_NONE ? 0 : max_body;
    w->mirror_held += h->cap;
    return 0;
}

bool mirror_hold_append(struct worker *w, struct mirror_hold *h, const char *p, size_t n,
                        uint64_t body_size)
{
    if (!h->p || body_size > h->max_body)
        return false;
    if (n > h->cap - h->len) {
        /* Doubling: a body of any size is moved O(1) times per byte, and
         * never one allocation per chunk; the last step takes only what
         * the worker's bound has left. */
        size_t most = (size_t)(MIRROR_MAX_HELD - (w->mirror_held - h->cap));
        size_t cap = h->cap, grow;
        char *q;

        while (cap - h->len < n && cap < most)
            cap = cap > most / 2 ? most : cap * 2;
        if (cap - h->len < n || !(q = realloc(h->p, cap)))
            return false;
        grow = cap - h->cap;
        h->p = q;
        h->cap = cap;
        w->mirror_held += grow;
    }
    memcpy(h->p + h->len, p, n);
    h->len += n;
    return true;
}

void mirror_hold_rewind(struct mirror_hold *h)
{
    h->len = h->head_len;
}

void mirror_hold_drop(struct worker *w, struct mirror_hold *h)
{
    if (h->p) {
        w->mirror_held -= h->cap;
        free(h->p);
    }
    memset(h, 0, sizeof(*h));
}

void mirror_send_held(struct worker *w, struct pool *pool, const struct balance_req *req,
                      struct mirror_hold *h, enum h1_method method)
{
    struct subrequest_params p = {
        .pool = pool,
        .pick = req,
        .request_bytes = h->p,
        .request_len = h->len,
        .head_len = h->head_len,
        .method = method,
        .deadline_ms = 0,               /* the mirror pool's own timeouts */
        .max_body = 0,                  /* the answer is dropped */
        .tries = 1,                     /* a copy is not worth a second backend */
        .cb = copy_ended,
    };
    struct mirror *m, *list;
    const char *why;

    if (!h->p || w->nmirrors >= MIRROR_MAX_IN_FLIGHT || w->draining ||
        !(m = calloc(1, sizeof(*m))))
        goto skip;
    m->w = w;
    m->pool = pool;
    p.arg = m;
    if (!(m->s = subrequest_start(w, &p, &why))) {
        /* No backend to pick, the pool at its max_connections, or no
         * memory: not sent, as a copy not held. */
        free(m);
        goto skip;
    }
    /* The held bytes become the copy's (lent to the subrequest), still
     * counted in mirror_held until it ends. */
    m->req = h->p;
    m->held = h->cap;
    memset(h, 0, sizeof(*h));
    list = w->mirrors;
    DLIST_PUSH(list, m);
    w->mirrors = list;
    w->nmirrors++;
    return;
skip:
    mirror_hold_drop(w, h);
    mirror_skipped(pool);
}

/* Copies on a backend whose drain_timeout ran out end as failed, as the
 * exchanges with it do. */
void mirror_sweep(struct worker *w)
{
    struct mirror *m = w->mirrors, *next;

    for (; m; m = next) {
        struct backend *b = subrequest_backend(m->s);

        next = m->next;
        if (b && atomic_load_explicit(&b->drain_expired, memory_order_relaxed))
            subrequest_fail(m->s, "backend drained");
    }
}

void mirror_close_all(struct worker *w)
{
    struct mirror *m = w->mirrors, *next;

    for (; m; m = next) {
        next = m->next;
        subrequest_fail(m->s, "sluice stops");
    }
}
