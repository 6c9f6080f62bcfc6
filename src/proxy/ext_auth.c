/* External authentication: the check request, the verdict, the head for the
 * backend and the denial for the client (ext_auth.h has the contract). */
#include "proxy/ext_auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "proxy/http_message.h"

/* ---- appending ---- */

/* An appender over a fixed area that remembers overflow. */
struct out {
    char *p;
    size_t len, size;
    bool full;
};

static void put(struct out *o, const char *p, size_t n)
{
    if (o->full || n > o->size - o->len) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_slice(struct out *o, struct h1_slice s)
{
    put(o, s.p, s.len);
}

static void put_field(struct out *o, const struct h1_header *h)
{
    put_slice(o, h->name);
    put(o, ": ", 2);
    put_slice(o, h->value);
    put(o, "\r\n", 2);
}

/* ---- field names ---- */

/* Is name one of the list's (lowercase) names, read as CGI-style backends
 * read names: case ignored, '_' the same as '-'? */
static bool name_listed_cgi(struct h1_slice name, char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *l = list[i];
        uint32_t k = 0;

        for (; k < name.len && l[k]; k++) {
            unsigned char a = (unsigned char)name.p[k];
            a = a == '_' ? '-' : a >= 'A' && a <= 'Z' ? a + 32 : a;
            if (a != (unsigned char)l[k])
                break;
        }
        if (k == name.len && !l[k])
            return true;
    }
    return false;
}

static bool name_listed(struct h1_slice name, char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (h1_slice_eq_ci(name, list[i]))
            return true;
    return false;
}

/* ---- the check ---- */

/* What the service is told the request's URI is: the path routing saw
 * (normalised) and the query, as the client sent it. */
static void put_uri(struct out *o, const struct h1_request *req)
{
    if (req->form == H1_TARGET_ASTERISK) {
        put(o, "*", 1);
        return;
    }
    if (req->path.len)
        put_slice(o, req->path);
    else
        put(o, "/", 1);
    if (req->query.p) {
        put(o, "?", 1);
        put_slice(o, req->query);
    }
}

/* The check's bytes into out; false when they do not fit. */
static bool write_check(struct out *o, const struct conf_ext_auth *ea,
                        const struct h1_request *req, const struct ext_auth_client *cl)
{
    const struct h1_header *theirs_for = NULL, *theirs_proto = NULL, *theirs_host = NULL;
    struct h1_slice proto = {cl->tls ? "https" : "http", cl->tls ? 5u : 4u};
    struct h1_slice host = req->host;
    char peer[ADDR_TEXT_MAX];

    if (cl->peer_trusted) {
        theirs_for = h1_find_header(req->headers, req->nheaders, "x-forwarded-for");
        theirs_proto = h1_find_header(req->headers, req->nheaders, "x-forwarded-proto");
        theirs_host = h1_find_header(req->headers, req->nheaders, "x-forwarded-host");
    }
    if (theirs_proto)
        proto = theirs_proto->value;
    if (theirs_host)
        host = theirs_host->value;
    addr_format_host(cl->peer, peer, sizeof(peer));

    put(o, "GET ", 4);
    put_str(o, ea->path);
    put(o, " HTTP/1.1\r\nHost: ", 17);
    /* HTTP/1.1 wants a Host; an HTTP/1.0 client may have sent none. */
    if (req->host.len)
        put_slice(o, req->host);
    else
        put(o, "localhost", 9);
    put(o, "\r\nX-Original-Method: ", 21);
    put_slice(o, req->method);
    put(o, "\r\nX-Original-URI: ", 18);
    put_uri(o, req);
    if (host.len) {
        put(o, "\r\nX-Original-URL: ", 18);
        put_slice(o, proto);
        put(o, "://", 3);
        put_slice(o, host);
        put_uri(o, req);
    }
    put(o, "\r\nX-Forwarded-Method: ", 22);
    put_slice(o, req->method);
    put(o, "\r\nX-Forwarded-Uri: ", 19);
    put_uri(o, req);
    put(o, "\r\nX-Forwarded-Proto: ", 21);
    put_slice(o, proto);
    if (host.len) {
        put(o, "\r\nX-Forwarded-Host: ", 20);
        put_slice(o, host);
    }
    put(o, "\r\nX-Forwarded-For: ", 19);
    if (theirs_for) {
        put_slice(o, theirs_for->value);
        put(o, ", ", 2);
    }
    put_str(o, peer);
    put(o, "\r\nX-Request-Id: ", 16);
    put_str(o, cl->request_id);
    put(o, "\r\n", 2);
    for (uint32_t i = 0; i < req->nheaders; i++) {
        const struct h1_header *h = &req->headers[i];
        if (name_listed(h->name, ea->request_headers, ea->nrequest_headers))
            put_field(o, h);
    }
    put(o, "\r\n", 2);
    return !o->full;
}

/* A buffer of at least size bytes: the worker's own size when that is
 * enough, else one of its own (buf_put frees either). */
static struct buf *buf_for(struct worker *w, size_t size)
{
    struct buf *b;

    if (size <= w->bufs.size)
        return buf_get(&w->bufs);
    if (size > UINT32_MAX / 2 || !(b = malloc(sizeof(*b) + size)))
        return NULL;
    b->next_free = NULL;
    b->head = b->tail = 0;
    b->size = (uint32_t)size;
    return b;
}

struct subrequest *ext_auth_start(struct worker *w, const struct conf_ext_auth *ea,
                                  const struct h1_request *req, const struct ext_auth_client *cl,
                                  subrequest_cb cb, void *arg, const char **why)
{
    struct pool *pool = runtime_pool(w->rt, ea->pool);
    struct balance_req pick = {0};
    struct subrequest_params p = {
        .pool = pool,
        .pick = &pick,
        .method = H1_GET,
        .deadline_ms = clock_now_ms() + ea->timeout_ms,
        .max_body = EXT_AUTH_MAX_BODY,
        .tries = EXT_AUTH_TRIES,
        .cb = cb,
        .arg = arg,
    };
    /* The fixed fields and the URI (three times) and Host (three times). */
    size_t size = 512 + strlen(ea->path) + 4 * ((size_t)req->path.len + req->query.len + 2) +
                  3 * (size_t)req->host.len + strlen(cl->request_id) + ADDR_TEXT_MAX;
    struct out o;

    for (uint32_t i = 0; i < req->nheaders; i++)
        size += req->headers[i].name.len + req->headers[i].value.len + 4;
    if (!(p.request = buf_for(w, size))) {
        *why = "out of memory";
        return NULL;
    }
    o = (struct out){p.request->data, 0, p.request->size, false};
    if (!write_check(&o, ea, req, cl)) {
        buf_put(&w->bufs, p.request);
        *why = "check request too large";
        return NULL;
    }
    p.request->tail = (uint32_t)o.len;
    pick.has_hash = balance_hash_http(ea->pool, cl->peer, req, &pick.hash);
    return subrequest_start(w, &p, why);
}

enum ext_auth_verdict ext_auth_verdict(const struct subrequest_answer *a, const char **why)
{
    if (a->error) {
        *why = a->error;
        return EXT_AUTH_ERROR;
    }
    if (a->head->status < 200) {
        /* A 101 the check never asked for: no verdict in it. */
        *why = "an upgrade answer";
        return EXT_AUTH_ERROR;
    }
    if (a->head->status >= 200 && a->head->status < 300)
        return EXT_AUTH_ALLOW;
    if (a->head->status >= 500) {
        /* The service is broken, not saying no: its 500 page is not for
         * the client, and `failure` decides, as for a service down. */
        *why = "answered 5xx";
        return EXT_AUTH_ERROR;
    }
    return EXT_AUTH_DENY;
}

/* ---- the request for the backend ---- */

bool ext_auth_head_changes(const struct conf_ext_auth *ea, const struct h1_request *req,
                           const struct h1_response *answer)
{
    if (!ea->nupstream_headers)
        return false;
    for (uint32_t i = 0; i < req->nheaders; i++)
        if (name_listed_cgi(req->headers[i].name, ea->upstream_headers, ea->nupstream_headers))
            return true;
    for (uint32_t i = 0; answer && i < answer->nheaders; i++)
        if (name_listed(answer->headers[i].name, ea->upstream_headers, ea->nupstream_headers))
            return true;
    return false;
}

size_t ext_auth_head_size(const struct conf_ext_auth *ea, uint32_t head_len,
                          const struct h1_response *answer)
{
    size_t size = head_len;

    for (uint32_t i = 0; answer && i < answer->nheaders; i++)
        if (name_listed(answer->headers[i].name, ea->upstream_headers, ea->nupstream_headers))
            size += answer->headers[i].name.len + answer->headers[i].value.len + 4;
    return size;
}

int ext_auth_head_rewrite(const struct conf_ext_auth *ea, const struct h1_request *req,
                          const char *head, uint32_t head_len, const struct h1_response *answer,
                          char *out, size_t size)
{
    /* The head ends with an empty line, CRLF or (if the parser took one)
     * a bare LF; field lines run from one name to the next, the last to
     * that empty line. */
    uint32_t final = head_len >= 2 && head[head_len - 2] == '\r' ? 2 : 1;
    const char *fields_end = head + head_len - final;
    const char *first = req->nheaders ? req->headers[0].name.p : fields_end;
    struct out o = {out, 0, size, false};

    put(&o, head, (size_t)(first - head));     /* the request line */
    for (uint32_t i = 0; i < req->nheaders; i++) {
        const struct h1_header *h = &req->headers[i];
        const char *end = i + 1 < req->nheaders ? req->headers[i + 1].name.p : fields_end;

        if (!name_listed_cgi(h->name, ea->upstream_headers, ea->nupstream_headers))
            put(&o, h->name.p, (size_t)(end - h->name.p));
    }
    for (uint32_t i = 0; answer && i < answer->nheaders; i++) {
        const struct h1_header *h = &answer->headers[i];
        if (name_listed(h->name, ea->upstream_headers, ea->nupstream_headers))
            put_field(&o, h);
    }
    put(&o, "\r\n", 2);
    return o.full || o.len > INT32_MAX ? -1 : (int)o.len;
}

/* ---- the denial ---- */

/* The fields sluice writes itself on any answer to the client. */
static bool framing(struct h1_slice name)
{
    static const char *const own[] = {"content-length", "transfer-encoding", "connection",
                                      "keep-alive", NULL};

    for (int i = 0; own[i]; i++)
        if (h1_slice_eq_ci(name, own[i]))
            return true;
    return false;
}

size_t ext_auth_denial_size(const struct h1_response *answer, size_t body_len,
                            const struct conf_route *route)
{
    size_t size = 256 + answer->reason.len + body_len;

    for (uint32_t i = 0; i < answer->nheaders; i++)
        size += answer->headers[i].name.len + answer->headers[i].value.len + 4;
    for (size_t i = 0; route && i < route->nset_response_headers; i++)
        size += strlen(route->set_response_headers[i].name) +
                strlen(route->set_response_headers[i].value) + 4;
    return size;
}

int ext_auth_write_denial(struct buf *b, const struct conf_ext_auth *ea,
                          const struct h1_response *answer, const char *body, size_t body_len,
                          const struct conf_route *route, bool keep_alive, bool head_only,
                          bool client_http10, const char *request_id)
{
    struct h1_header fields[SUBREQUEST_MAX_HEADERS + 1];
    struct h1_response r = *answer;
    struct http_response_extra extra = {.request_id = request_id};
    char len_text[24];
    uint32_t tail0;
    int rc;

    /* No body after a 204 or 304 (RFC 9110 6.4.1), whatever came. */
    if (answer->status == 204 || answer->status == 304)
        body_len = 0;
    r.headers = fields;
    r.nheaders = 0;
    for (uint32_t i = 0; i < answer->nheaders && r.nheaders < SUBREQUEST_MAX_HEADERS; i++) {
        const struct h1_header *h = &answer->headers[i];
        if (framing(h->name) ||
            (!ea->client_headers_all &&
             !name_listed(h->name, ea->client_headers, ea->nclient_headers)))
            continue;
        fields[r.nheaders++] = *h;
    }
    if (answer->status != 304) {
        snprintf(len_text, sizeof(len_text), "%zu", body_len);
        fields[r.nheaders++] = (struct h1_header){{"Content-Length", 14},
                                                  {len_text, (uint32_t)strlen(len_text)}};
    }
    buf_compact(b);        /* as the head's writer does: the head starts at tail0 */
    tail0 = b->tail;
    if ((rc = http_write_response_head(b, &r, route, keep_alive, client_http10, &extra)) < 0)
        return rc;
    if (!head_only && body_len) {
        if (body_len > buf_room(b)) {
            b->tail = tail0;
            return -ENOSPC;
        }
        buf_append(b, body, (uint32_t)body_len);
    }
    return 0;
}
