/* Request heads: request line, request-target forms, Host, and the request
 * framing rules of RFC 9112 6.3, where a misread length is request smuggling. */
#include "proto/http1.h"

#include <string.h>

#include "proto/http1_lex.h"

/* What the start-line callback needs besides the request. */
struct req_ctx {
    struct h1_request *req;
    const struct h1_limits *lim;
};

static enum h1_method method_id(const char *p, uint32_t n)
{
    /* Methods are case-sensitive (RFC 9110 9.1): "get" is some other method. */
    switch (n) {
    case 3:
        if (!memcmp(p, "GET", 3))
            return H1_GET;
        if (!memcmp(p, "PUT", 3))
            return H1_PUT;
        break;
    case 4:
        if (!memcmp(p, "HEAD", 4))
            return H1_HEAD;
        if (!memcmp(p, "POST", 4))
            return H1_POST;
        break;
    case 5:
        if (!memcmp(p, "TRACE", 5))
            return H1_TRACE;
        if (!memcmp(p, "PATCH", 5))
            return H1_PATCH;
        break;
    case 6:
        if (!memcmp(p, "DELETE", 6))
            return H1_DELETE;
        break;
    case 7:
        if (!memcmp(p, "CONNECT", 7))
            return H1_CONNECT;
        if (!memcmp(p, "OPTIONS", 7))
            return H1_OPTIONS;
        break;
    default:
        break;
    }
    return H1_OTHER;
}

static bool scheme_is(const char *p, const char *end, const char *lit, size_t n)
{
    if ((size_t)(end - p) < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c != lit[i])
            return false;
    }
    return true;
}

/* Classify target [t, te) whose path part ends at pe (at '?' or te). */
static int target_form(struct h1_request *req, const char *t, const char *pe, const char *te,
                       const char **why)
{
    uint32_t tlen = (uint32_t)(te - t);

    if (req->method_id == H1_CONNECT) {
        /* RFC 9110 9.3.6: CONNECT names host and port, and nothing else. */
        if (!h1_authority_valid(t, tlen, true)) {
            *why = "CONNECT target is not host:port";
            return H1_BAD_REQUEST;
        }
        req->form = H1_TARGET_AUTHORITY;
        req->host.p = t;
        req->host.len = tlen;
        req->path.p = NULL;
        req->path.len = 0;
        req->query.p = NULL;
        req->query.len = 0;
        return 0;
    }
    if (*t == '/') {
        req->form = H1_TARGET_ORIGIN;
        req->path.p = t;
        req->path.len = (uint32_t)(pe - t);
        return 0;
    }
    if (tlen == 1 && *t == '*') {
        if (req->method_id != H1_OPTIONS) {
            *why = "asterisk-form target outside OPTIONS";
            return H1_BAD_REQUEST;
        }
        req->form = H1_TARGET_ASTERISK;
        req->path.p = t;
        req->path.len = 1;
        return 0;
    }
    /* absolute-form: only what a reverse proxy can route, "http(s)://host". */
    const char *a;
    if (scheme_is(t, pe, "http://", 7))
        a = t + 7;
    else if (scheme_is(t, pe, "https://", 8))
        a = t + 8;
    else {
        *why = "invalid request-target";
        return H1_BAD_REQUEST;
    }
    const char *ae = a;
    while (ae < pe && *ae != '/')
        ae++;
    if (!h1_authority_valid(a, (uint32_t)(ae - a), false)) {
        *why = "invalid authority in absolute-form target";
        return H1_BAD_REQUEST;
    }
    req->form = H1_TARGET_ABSOLUTE;
    req->host.p = a;
    req->host.len = (uint32_t)(ae - a);
    req->path.p = ae;
    req->path.len = (uint32_t)(pe - ae);
    return 0;
}

static int request_line(const char *buf, const char *end, void *msg, const char **next,
                        const char **why)
{
    struct req_ctx *ctx = msg;
    struct h1_request *req = ctx->req;
    const char *p = buf;

    if (p == end)
        return 0;
    if (*p == '\r') {
        /* RFC 9112 2.2: one empty line before the request line is tolerated
         * (old clients send a CRLF after a POST body); only one. */
        if (p + 1 == end)
            return 0;
        if (p[1] != '\n') {
            *why = "bare CR in head";
            return H1_BAD_REQUEST;
        }
        p += 2;
        if (p == end)
            return 0;
        if (*p == '\r' || *p == '\n') {
            *why = "more than one empty line before the request line";
            return H1_BAD_REQUEST;
        }
    }
    const char *line = p;

    const char *m = h1_scan_token(p, end);
    if (m == end)
        return 0;
    if (*m != ' ' || m == p) {
        *why = *m == '\n' ? "bare LF in head" : "invalid method";
        return H1_BAD_REQUEST;
    }

    const char *t = m + 1, *te = h1_scan_path(t, end), *pe = te, *q = NULL;
    if (te < end && *te == '?') {
        q = te + 1;
        do
            te = h1_scan_path(te + 1, end);
        while (te < end && *te == '?');
    }
    if (te == end)
        return 0;
    if (*te != ' ' || te == t) {
        if (te == t && *te == ' ')
            *why = "empty request-target (two spaces)";
        else if (*te == '#')
            *why = "fragment in request-target";
        else if (*te == '\r' || *te == '\n')
            *why = "no HTTP version in request line";
        else if (te == t)
            *why = "empty request-target";
        else
            *why = "invalid byte in request-target";
        return H1_BAD_REQUEST;
    }

    /* "HTTP/" DIGIT "." DIGIT CRLF, checked as far as the bytes go so a
     * prefix that cannot become valid is refused at once. */
    const char *v = te + 1;
    size_t avail = (size_t)(end - v);
    static const char want[] = "HTTP/0.0\r\n";
    for (size_t i = 0; i < avail && i < 10; i++) {
        char c = v[i];
        bool ok = (i == 5 || i == 7) ? (c >= '0' && c <= '9') : c == want[i];
        if (!ok) {
            *why = i == 8 && c == '\n' ? "bare LF in head"
                 : i == 9             ? "bare CR in head"
                                      : "invalid HTTP version";
            return H1_BAD_REQUEST;
        }
    }
    if (avail < 10)
        return 0;
    if ((size_t)(v + 8 - line) > ctx->lim->max_request_line) {
        *why = "request line too long";
        return H1_URI_TOO_LONG;
    }
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) {
        *why = "HTTP version not supported";
        return H1_VERSION_NOT_SUPPORTED;
    }

    req->method.p = p;
    req->method.len = (uint32_t)(m - p);
    req->method_id = method_id(p, req->method.len);
    req->target.p = t;
    req->target.len = (uint32_t)(te - t);
    req->minor = v[7] - '0';
    req->host.p = NULL;
    req->host.len = 0;
    req->query.p = q;
    req->query.len = q ? (uint32_t)(te - q) : 0;
    int r = target_form(req, t, pe, te, why);
    if (r < 0)
        return r;
    *next = v + 10;
    return 1;
}

int h1_parse_request(const char *buf, size_t len, const struct h1_limits *lim,
                     struct h1_request *req)
{
    struct req_ctx ctx = { req, lim ? lim : &h1_limits_default };
    uint32_t cap = req->headers ? req->max_headers : 0;
    const char *why = NULL;
    struct h1_fields_info fi;
    int r;

    if (cap > ctx.lim->max_headers)
        cap = ctx.lim->max_headers;
    r = h1_head_parse(buf, len, ctx.lim->max_request_line, ctx.lim->max_head, &req->scan,
                      request_line, &ctx, req->headers, cap, &req->nheaders, &why);
    if (r <= 0) {
        req->error = why;
        return r;
    }

    h1_fields_scan(req->headers, req->nheaders, &fi);

    /* RFC 9112 3.2: exactly one valid Host in 1.1, at most one in 1.0. */
    if (fi.host_lines > 1) {
        why = "more than one Host";
        goto bad;
    }
    if (fi.host_lines == 0 && req->minor == 1) {
        why = "no Host in HTTP/1.1 request";
        goto bad;
    }
    if (fi.host && fi.host->value.len &&
        !h1_authority_valid(fi.host->value.p, fi.host->value.len, false)) {
        why = "invalid Host";
        goto bad;
    }
    if (req->form != H1_TARGET_ABSOLUTE && req->form != H1_TARGET_AUTHORITY && fi.host)
        req->host = fi.host->value;

    /* Framing, RFC 9112 6.1 and 6.3, refusing everything ambiguous. */
    req->body = H1_BODY_NONE;
    req->content_length = 0;
    if (fi.cl_bad) {
        why = fi.cl_why;
        goto bad;
    }
    if (fi.te_lines) {
        if (req->minor == 0) {
            why = "Transfer-Encoding in HTTP/1.0 request";
            goto bad;
        }
        if (fi.te_bad) {
            why = fi.te_why;
            goto bad;
        }
        if (fi.cl_lines) {
            why = "both Content-Length and Transfer-Encoding";
            goto bad;
        }
        if (!fi.te_chunked) {
            why = "final transfer coding is not chunked";
            goto bad;
        }
        if (fi.te_unknown) {
            req->error = "unknown transfer coding";
            return H1_NOT_IMPLEMENTED;
        }
        req->body = H1_BODY_CHUNKED;
    } else if (fi.cl_lines && fi.cl) {
        req->body = H1_BODY_LENGTH;
        req->content_length = fi.cl;
    }
    if (req->method_id == H1_CONNECT && req->body != H1_BODY_NONE) {
        why = "CONNECT with a body";
        goto bad;
    }

    if (req->minor == 1) {
        req->keep_alive = !fi.conn_close;
        /* RFC 9110 7.8 and 10.1.1: 1.0 requests' Upgrade and Expect are ignored.
         * An offer of h2c is no upgrade either: sluice does not offer it
         * (docs/http2.md), and forwarded, a backend's 101 would open a
         * tunnel in which the client's HTTP/2 requests pass no route, auth
         * or rate limit ("h2c smuggling"); as Envoy, the request is served
         * as plain HTTP/1.1, its Upgrade fields dropped as hop-by-hop. */
        req->upgrade = fi.conn_upgrade && fi.upgrade_field && !fi.upgrade_h2c;
        req->expect_continue = fi.expect_continue;
    } else {
        req->keep_alive = fi.conn_keep_alive && !fi.conn_close;
        req->upgrade = false;
        req->expect_continue = false;
    }
    req->head_len = (uint32_t)r;
    req->error = NULL;
    return r;

bad:
    req->error = why;
    return H1_BAD_REQUEST;
}
