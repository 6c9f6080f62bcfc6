#include "proxy/http_message.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "proxy/grpc.h"

/* An appender over a buffer's free space that remembers overflow, so the
 * writers below can append freely and check once at the end. */
struct out {
    struct buf *b;
    uint32_t start;
    bool full;
};

static void put(struct out *o, const char *p, size_t n)
{
    if (o->full || n > buf_room(o->b)) {
        o->full = true;
        return;
    }
    memcpy(o->b->data + o->b->tail, p, n);
    o->b->tail += (uint32_t)n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_slice(struct out *o, struct h1_slice s)
{
    put(o, s.p, s.len);
}

static void put_header(struct out *o, const char *name, size_t nlen, const char *value,
                       size_t vlen)
{
    put(o, name, nlen);
    put(o, ": ", 2);
    put(o, value, vlen);
    put(o, "\r\n", 2);
}

static int finish(struct out *o)
{
    if (o->full) {
        o->b->tail = o->start;   /* leave nothing half-written */
        return -ENOSPC;
    }
    return 0;
}

static void out_init(struct out *o, struct buf *b)
{
    buf_compact(b);
    o->b = b;
    o->start = b->tail;
    o->full = false;
}

/* The IANA status code registry (RFC 9110 15, 6585, 7725, 8297, 8470): a
 * `respond` route may answer any status 200..599, and an HTTP/2 backend's
 * :status becomes an HTTP/1.1 status line, so every registered code needs
 * its phrase. */
const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 511: return "Network Authentication Required";
    }
    return "Unknown";
}

/* Fields that describe one hop and must not be forwarded (RFC 9110 7.6.1),
 * plus those a connection's Connection header names. Proxy-* fields
 * (Proxy-Authorization, Proxy-Authenticate, Proxy-Connection, ...) are for
 * a proxy, never for the origin behind a gateway, and "Proxy" is the
 * httpoxy field (a CGI backend would take it for HTTP_PROXY). */
static bool hop_by_hop(struct h1_slice name, const struct h1_header *h, uint32_t n)
{
    static const char *const fixed[] = {"connection", "keep-alive", "te", "trailer", "upgrade",
                                        "proxy", NULL};

    for (int i = 0; fixed[i]; i++)
        if (h1_slice_eq_ci(name, fixed[i]))
            return true;
    if (name.len > 6 && h1_slice_eq_ci((struct h1_slice){name.p, 6}, "proxy-"))
        return true;
    for (uint32_t i = 0; i < n; i++) {
        if (!h1_slice_eq_ci(h[i].name, "connection"))
            continue;
        /* A field the sender declared hop-by-hop by naming it in Connection;
         * never drop the framing fields that way though. */
        if (h1_slice_eq_ci(name, "transfer-encoding") || h1_slice_eq_ci(name, "content-length") ||
            h1_slice_eq_ci(name, "host"))
            continue;
        char tok[64];
        if (name.len >= sizeof(tok))
            continue;
        memcpy(tok, name.p, name.len);
        tok[name.len] = '\0';
        if (h1_has_token(h[i].value, tok))
            return true;
    }
    return false;
}

/* Is name lit (ASCII, any case) when read the way CGI-style backends read
 * field names (PHP, WSGI, Rack, CGI): case ignored and '_' the same as '-'?
 * They turn X-Forwarded-For and X_Forwarded_For alike into
 * HTTP_X_FORWARDED_FOR, so a field sluice writes or vouches for must not
 * reach them under its underscore spelling from a client. */
static bool name_cgi_eq(struct h1_slice name, const char *lit)
{
    size_t n = strlen(lit);

    if (name.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)name.p[i], b = (unsigned char)lit[i];
        a = a == '_' ? '-' : a >= 'A' && a <= 'Z' ? a + 32 : a;
        b = b == '_' ? '-' : b >= 'A' && b <= 'Z' ? b + 32 : b;
        if (a != b)
            return false;
    }
    return true;
}

bool http_name_has_underscore(struct h1_slice name)
{
    return memchr(name.p, '_', name.len) != NULL;
}

static bool name_in_list(struct h1_slice name, char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (name_cgi_eq(name, list[i]))
            return true;
    return false;
}

static const struct conf_kv *kv_find_slice(const struct conf_kv *kv, size_t n,
                                           struct h1_slice name)
{
    for (size_t i = 0; i < n; i++)
        if (name_cgi_eq(name, kv[i].name))
            return &kv[i];
    return NULL;
}

static bool name_in_kv(struct h1_slice name, const struct conf_kv *kv, size_t n)
{
    return kv_find_slice(kv, n, name) != NULL;
}

static const struct conf_kv *kv_find(const struct conf_kv *kv, size_t n, const char *name)
{
    return kv_find_slice(kv, n, (struct h1_slice){name, (uint32_t)strlen(name)});
}

/* Does the route's set_headers give this field? Then it takes the place of
 * the one sluice would write (X-Forwarded-*, Forwarded, X-Request-Id, ...),
 * as HAProxy's set-header and NGINX's proxy_set_header do, rather than
 * following it as a second field (of two X-Forwarded-Proto, backends read
 * the first: sluice's own). */
static bool route_sets(const struct conf_route *route, const char *name)
{
    return route && kv_find(route->set_headers, route->nset_headers, name);
}

bool http_peer_trusted(const struct addr *peer, const struct conf_cidr *cidrs, size_t n)
{
    return addr_cidr_match(peer, cidrs, n) >= 0;
}

bool http_request_replayable(const struct h1_request *req)
{
    switch (req->method_id) {
    case H1_GET:
    case H1_HEAD:
    case H1_OPTIONS:
    case H1_TRACE:
    case H1_PUT:
    case H1_DELETE:
        return true;
    default:
        return h1_find_header(req->headers, req->nheaders, "idempotency-key") != NULL;
    }
}

int http_rewrite_path(const struct h1_request *req, const struct conf_route *route, char *out,
                      size_t size)
{
    struct h1_slice path = req->path;
    const char *prefix = NULL, *replacement = "";
    size_t plen = 0, rlen, n;

    if (path.len == 0) {
        path.p = "/";
        path.len = 1;
    }
    if (route && route->strip_prefix) {
        prefix = route->strip_prefix;
    } else if (route && route->rewrite_prefix && route->path_kind == ROUTE_PATH_PREFIX) {
        prefix = route->path;
        replacement = route->rewrite_prefix;
    }
    if (prefix) {
        plen = strlen(prefix);
        if (plen > path.len || memcmp(path.p, prefix, plen) != 0)
            plen = 0;   /* the prefix is not there: leave the path alone */
    }
    rlen = plen ? strlen(replacement) : 0;
    n = rlen + (path.len - plen);
    if (n + 2 > size)
        return -1;
    memcpy(out, replacement, rlen);
    memcpy(out + rlen, path.p + plen, path.len - plen);
    if (n == 0 || out[0] != '/') {
        /* "/api" stripped from "/api/x" leaves "/x"; from "/api" it leaves
         * "", and the origin must still get an absolute path. */
        memmove(out + 1, out, n);
        out[0] = '/';
        n++;
    }
    out[n] = '\0';
    return (int)n;
}

int http_redirect_location(const struct h1_request *req, const struct conf_route *route,
                           bool tls, char *out, size_t size)
{
    const char *scheme = route->redirect_scheme ? route->redirect_scheme : tls ? "https" : "http";
    struct h1_slice host = {route->redirect_host, 0};
    char port[8] = "";
    int port_in, n, plen;

    if (route->redirect_host)
        host.len = (uint32_t)strlen(route->redirect_host);
    else
        h1_split_host(req->host, &host, &port_in);   /* the old port goes with the old URL */
    if (!host.len)
        return 0;
    if (route->redirect_port)
        snprintf(port, sizeof(port), ":%d", route->redirect_port);
    n = snprintf(out, size, "%s://%.*s%s", scheme, (int)host.len, host.p, port);
    if (n < 0 || (size_t)n >= size)
        return -1;
    plen = http_rewrite_path(req, route, out + n, size - (size_t)n);
    if (plen < 0)
        return -1;
    n += plen;
    if (req->query.p) {
        if ((size_t)n + 1 + req->query.len + 1 > size)
            return -1;
        out[n++] = '?';
        memcpy(out + n, req->query.p, req->query.len);
        n += (int)req->query.len;
        out[n] = '\0';
    }
    return n;
}

/* The forwarding fields sluice writes for every request: a trusted peer's
 * are appended to (X-Forwarded-For, Forwarded) or kept (-Proto, -Host). */
enum { FWD_XFF, FWD_XFP, FWD_XFH, FWD_FORWARDED, FWD_FIELDS };
static const char *const fwd_names[FWD_FIELDS] = {"x-forwarded-for", "x-forwarded-proto",
                                                  "x-forwarded-host", "forwarded"};

/* RFC 7239 token characters (tchar): a value made only of them goes
 * unquoted. */
static bool forwarded_token(struct h1_slice v)
{
    for (uint32_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return v.len > 0;
}

/* Forwarded (RFC 7239): this hop's element, "for=PEER;host=HOST;proto=P",
 * after a trusted peer's list, or alone. An IPv6 peer and a host with a
 * port are quoted ("[2001:db8::1]", "example.com:8080"); the parser let no
 * '"' or '\' into a Host. */
static void put_forwarded(struct out *o, const struct h1_header *theirs,
                          const struct http_forward *fwd, const char *peer, struct h1_slice host)
{
    bool v6 = strchr(peer, ':') != NULL;

    if (!strcmp(peer, "-"))       /* no address (a PROXY header's LOCAL) */
        peer = "unknown";
    put(o, "Forwarded: ", 11);
    if (theirs) {
        put_slice(o, theirs->value);
        put(o, ", ", 2);
    }
    puts_(o, v6 ? "for=\"[" : "for=");
    puts_(o, peer);
    if (v6)
        put(o, "]\"", 2);
    if (host.len) {
        bool quote = !forwarded_token(host);
        puts_(o, quote ? ";host=\"" : ";host=");
        put_slice(o, host);
        if (quote)
            put(o, "\"", 1);
    }
    puts_(o, fwd->tls ? ";proto=https\r\n" : ";proto=http\r\n");
}

int http_write_request_head(struct buf *b, const struct h1_request *req,
                            const struct conf_route *route, const struct http_forward *fwd)
{
    struct out o;
    char peer[ADDR_TEXT_MAX];
    const struct h1_header *kept[FWD_FIELDS] = {0};
    bool websocket = req->upgrade, under;
    int k;
    int plen;

    out_init(&o, b);

    /* Request line, always in origin-form towards the backend. */
    put_slice(&o, req->method);
    put(&o, " ", 1);
    if (req->form == H1_TARGET_ASTERISK) {
        put(&o, "*", 1);
    } else {
        /* The path is rewritten straight into the buffer: it is as long as
         * limits.max_request_line lets it be (64 KiB), more than any fixed
         * scratch array here should hold. Too long for the room left: full,
         * and the caller tries again with a bigger buffer. */
        plen = o.full ? -1 : http_rewrite_path(req, route, b->data + b->tail, buf_room(b));
        if (plen < 0)
            o.full = true;
        else
            b->tail += (uint32_t)plen;
        if (req->query.p) {
            put(&o, "?", 1);
            put_slice(&o, req->query);
        }
    }
    puts_(&o, fwd->upstream_http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");

    /* Host first: the route's when it sets one (NGINX's proxy_set_header
     * Host, HAProxy's set-header Host: routing and X-Forwarded-Host still
     * go by the client's), else from the absolute-form authority when there
     * was one (RFC 9112 3.2.2), else as received. */
    const struct conf_kv *host = route ? kv_find(route->set_headers, route->nset_headers, "host")
                                       : NULL;
    if (host)
        put_header(&o, "Host", 4, host->value, strlen(host->value));
    else if (req->host.p)
        put_header(&o, "Host", 4, req->host.p, req->host.len);
    for (uint32_t i = 0; i < req->nheaders; i++) {
        const struct h1_header *h = &req->headers[i];

        if (h1_slice_eq_ci(h->name, "host"))
            continue;
        if (h1_slice_eq_ci(h->name, "upgrade") && websocket) {
            put_header(&o, h->name.p, h->name.len, h->value.p, h->value.len);
            continue;
        }
        if (hop_by_hop(h->name, req->headers, req->nheaders))
            continue;
        /* The fields below say who the client is. They are believed only
         * from trusted peers, and only under their own spelling: an
         * underscore spelling (X_Forwarded_For) is dropped from anyone, as
         * no proxy sends it and CGI-style backends would read it as ours. */
        under = http_name_has_underscore(h->name);
        for (k = 0; k < FWD_FIELDS && !name_cgi_eq(h->name, fwd_names[k]); k++) {
        }
        if (k < FWD_FIELDS) {      /* the first from a trusted peer is kept; written below */
            if (fwd->peer_trusted && !under && !kept[k])
                kept[k] = h;
            continue;
        }
        if (name_cgi_eq(h->name, "x-real-ip") && (!fwd->peer_trusted || under))
            continue;
        /* Who the client is, by certificate, is ours to say (or a trusted
         * proxy's, when we checked none). */
        if (name_cgi_eq(h->name, "x-client-cert-subject") &&
            (!fwd->peer_trusted || fwd->client_subject || under))
            continue;
        if (name_cgi_eq(h->name, "x-request-id"))
            continue;
        if (under && fwd->drop_underscores)
            continue;
        if (route && (name_in_list(h->name, route->remove_headers, route->nremove_headers) ||
                      name_in_kv(h->name, route->set_headers, route->nset_headers)))
            continue;
        put_header(&o, h->name.p, h->name.len, h->value.p, h->value.len);
    }

    addr_format_host(fwd->peer, peer, sizeof(peer));
    if (route_sets(route, "x-forwarded-for")) {
        /* the route's, below */
    } else if (kept[FWD_XFF]) {
        put(&o, "X-Forwarded-For: ", 17);
        put_slice(&o, kept[FWD_XFF]->value);
        put(&o, ", ", 2);
        puts_(&o, peer);
        put(&o, "\r\n", 2);
    } else {
        put_header(&o, "X-Forwarded-For", 15, peer, strlen(peer));
    }
    if (kept[FWD_XFP] && !route_sets(route, "x-forwarded-proto"))
        put_header(&o, "X-Forwarded-Proto", 17, kept[FWD_XFP]->value.p, kept[FWD_XFP]->value.len);
    else if (!route_sets(route, "x-forwarded-proto"))
        put_header(&o, "X-Forwarded-Proto", 17, fwd->tls ? "https" : "http", fwd->tls ? 5 : 4);
    if (kept[FWD_XFH] && !route_sets(route, "x-forwarded-host"))
        put_header(&o, "X-Forwarded-Host", 16, kept[FWD_XFH]->value.p, kept[FWD_XFH]->value.len);
    else if (req->host.len && !route_sets(route, "x-forwarded-host"))
        put_header(&o, "X-Forwarded-Host", 16, req->host.p, req->host.len);
    if (!route_sets(route, "forwarded"))
        put_forwarded(&o, kept[FWD_FORWARDED], fwd, peer, req->host);
    if (!route_sets(route, "x-request-id"))
        put_header(&o, "X-Request-Id", 12, fwd->request_id, strlen(fwd->request_id));
    if (fwd->client_subject && !route_sets(route, "x-client-cert-subject"))
        put_header(&o, "X-Client-Cert-Subject", 21, fwd->client_subject,
                   strlen(fwd->client_subject));
    if (route) {
        for (size_t i = 0; i < route->nset_headers; i++)
            if (&route->set_headers[i] != host)   /* written first, above */
                put_header(&o, route->set_headers[i].name, strlen(route->set_headers[i].name),
                           route->set_headers[i].value, strlen(route->set_headers[i].value));
    }
    if (websocket)
        puts_(&o, "Connection: upgrade\r\n");
    else if (fwd->upstream_http10)
        puts_(&o, "Connection: close\r\n");
    put(&o, "\r\n", 2);
    return finish(&o);
}

/* A Set-Cookie value that sets cookie `name` ("NAME=..."). */
static bool sets_cookie(struct h1_slice value, const char *name)
{
    size_t n = strlen(name);

    while (value.len && (*value.p == ' ' || *value.p == '\t')) {
        value.p++;
        value.len--;
    }
    return value.len > n && memcmp(value.p, name, n) == 0 &&
           (value.p[n] == '=' || value.p[n] == ' ' || value.p[n] == '\t');
}

int http_write_response_head(struct buf *b, const struct h1_response *resp,
                             const struct conf_route *route, bool keep_alive,
                             bool client_http10, const struct http_response_extra *extra)
{
    static const struct http_response_extra none;
    struct out o;
    char line[16];
    bool upgrade = resp->status == 101;
    const char *request_id;

    if (!extra)
        extra = &none;
    request_id = extra->request_id;

    out_init(&o, b);
    /* Every response, so no printf: every head here came through
     * h1_parse_response (HTTP/2 backends' too), which takes 100..599. */
    memcpy(line, "HTTP/1.1 ", 9);
    line[9] = (char)('0' + resp->status / 100);
    line[10] = (char)('0' + resp->status / 10 % 10);
    line[11] = (char)('0' + resp->status % 10);
    line[12] = ' ';
    put(&o, line, 13);
    put_slice(&o, resp->reason);
    put(&o, "\r\n", 2);
    for (uint32_t i = 0; i < resp->nheaders; i++) {
        const struct h1_header *h = &resp->headers[i];

        if (upgrade && h1_slice_eq_ci(h->name, "upgrade")) {
            put_header(&o, h->name.p, h->name.len, h->value.p, h->value.len);
            continue;
        }
        if (hop_by_hop(h->name, resp->headers, resp->nheaders))
            continue;
        /* A 1xx or a 204 has no body whatever a backend says, and must not
         * say otherwise (RFC 9110 8.6, RFC 9112 6.1): a client, or a proxy
         * in front, that believed these would wait for a body or take the
         * next response for one. A 304's describe the body it stands for. */
        if ((resp->status < 200 || resp->status == 204) &&
            (h1_slice_eq_ci(h->name, "content-length") ||
             h1_slice_eq_ci(h->name, "transfer-encoding")))
            continue;
        if (extra->sticky_cookie && h1_slice_eq_ci(h->name, "set-cookie") &&
            sets_cookie(h->value, extra->sticky_cookie))
            continue;
        if (route && (name_in_list(h->name, route->remove_response_headers,
                                   route->nremove_response_headers) ||
                      name_in_kv(h->name, route->set_response_headers,
                                 route->nset_response_headers)))
            continue;
        put_header(&o, h->name.p, h->name.len, h->value.p, h->value.len);
    }
    if (route) {
        for (size_t i = 0; i < route->nset_response_headers; i++)
            put_header(&o, route->set_response_headers[i].name,
                       strlen(route->set_response_headers[i].name),
                       route->set_response_headers[i].value,
                       strlen(route->set_response_headers[i].value));
    }
    if (request_id && resp->status >= 200 &&
        !h1_find_header(resp->headers, resp->nheaders, "x-request-id") &&
        !(route && name_in_kv((struct h1_slice){"x-request-id", 12}, route->set_response_headers,
                              route->nset_response_headers)))
        put_header(&o, "X-Request-Id", 12, request_id, strlen(request_id));
    /* A 101 is the final answer to an upgrade, and browsers keep cookies
     * from a WebSocket handshake: a WebSocket session is pinned too. */
    if (extra->set_cookie && (resp->status >= 200 || upgrade))
        put_header(&o, "Set-Cookie", 10, extra->set_cookie, strlen(extra->set_cookie));
    if (upgrade)
        puts_(&o, "Connection: upgrade\r\n");
    else if (resp->status >= 200 && !keep_alive)
        puts_(&o, "Connection: close\r\n");
    else if (resp->status >= 200 && client_http10)
        puts_(&o, "Connection: keep-alive\r\n");
    put(&o, "\r\n", 2);
    return finish(&o);
}

int http_write_local_response(struct buf *b, int status, const char *location,
                              const char *body, bool keep_alive, bool head_only,
                              const struct conf_route *route, unsigned retry_after_s,
                              const char *www_authenticate)
{
    struct out o;
    char line[128];
    /* 204 and 304 end at their head (RFC 9110 6.4.1), and may not say a
     * Content-Length: a body written after one would be read as the start
     * of the next response. A `respond` route may still give one. */
    bool no_content = status == 204 || status == 304;
    size_t blen = body && !no_content ? strlen(body) : 0;

    out_init(&o, b);
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, http_reason(status));
    puts_(&o, line);
    puts_(&o, "Server: sluice\r\n");
    if (location)
        put_header(&o, "Location", 8, location, strlen(location));
    if (status == 401 && www_authenticate)
        put_header(&o, "WWW-Authenticate", 16, www_authenticate, strlen(www_authenticate));
    if (route) {
        for (size_t i = 0; i < route->nset_response_headers; i++)
            put_header(&o, route->set_response_headers[i].name,
                       strlen(route->set_response_headers[i].name),
                       route->set_response_headers[i].value,
                       strlen(route->set_response_headers[i].value));
    }
    if (blen && !(route && route->nset_response_headers &&
                  name_in_kv((struct h1_slice){"content-type", 12}, route->set_response_headers,
                             route->nset_response_headers)))
        puts_(&o, "Content-Type: text/plain; charset=utf-8\r\n");
    if (status == 503 || status == 429) {
        snprintf(line, sizeof(line), "Retry-After: %u\r\n", retry_after_s ? retry_after_s : 1);
        puts_(&o, line);
    }
    if (!no_content) {
        snprintf(line, sizeof(line), "Content-Length: %zu\r\n", blen);
        puts_(&o, line);
    }
    if (!keep_alive)
        puts_(&o, "Connection: close\r\n");
    put(&o, "\r\n", 2);
    if (!head_only && blen)
        put(&o, body, blen);
    return finish(&o);
}

int http_write_grpc_local_response(struct buf *b, int grpc_status, const char *message,
                                   bool keep_alive, const struct conf_route *route,
                                   const char *www_authenticate)
{
    /* Fields a route may not set on this answer: they are what makes it a
     * gRPC status, or its framing. */
    static const char *const own[] = {"content-type", "content-length", "grpc-status",
                                      "grpc-message", "transfer-encoding", "connection", NULL};
    struct out o;
    char line[64], text[GRPC_MESSAGE_MAX + 1];
    size_t tlen = message ? grpc_message_encode(text, sizeof(text), message, strlen(message)) : 0;

    out_init(&o, b);
    puts_(&o, "HTTP/1.1 200 OK\r\nServer: sluice\r\nContent-Type: application/grpc\r\n");
    snprintf(line, sizeof(line), "grpc-status: %d\r\n", grpc_status);
    puts_(&o, line);
    if (tlen)
        put_header(&o, "grpc-message", 12, text, tlen);
    if (www_authenticate)
        put_header(&o, "WWW-Authenticate", 16, www_authenticate, strlen(www_authenticate));
    for (size_t i = 0; route && i < route->nset_response_headers; i++) {
        const struct conf_kv *kv = &route->set_response_headers[i];
        struct h1_slice name = {kv->name, (uint32_t)strlen(kv->name)};
        bool skip = false;

        for (int k = 0; own[k] && !skip; k++)
            skip = h1_slice_eq_ci(name, own[k]);
        if (!skip)
            put_header(&o, kv->name, name.len, kv->value, strlen(kv->value));
    }
    puts_(&o, "Content-Length: 0\r\n");
    if (!keep_alive)
        puts_(&o, "Connection: close\r\n");
    put(&o, "\r\n", 2);
    return finish(&o);
}
