/* Response heads: status line and the response body rules of RFC 9112 6.3,
 * which depend on the request (HEAD, CONNECT) as much as on the response. */
#include "proto/http1.h"

#include <string.h>

#include "proto/http1_lex.h"

static int status_line(const char *buf, const char *end, void *msg, const char **next,
                       const char **why)
{
    struct h1_response *resp = msg;
    size_t avail = (size_t)(end - buf);

    /* "HTTP/1." [01] SP 3DIGIT, checked as far as the bytes go. Backends
     * speak 1.0 or 1.1; anything else is not something we can relay. */
    static const char want[] = "HTTP/1.0 000";
    for (size_t i = 0; i < avail && i < 12; i++) {
        char c = buf[i];
        bool ok = i == 7               ? (c == '0' || c == '1')
                : i >= 9 && i <= 11    ? (c >= '0' && c <= '9')
                                       : c == want[i];
        if (!ok) {
            *why = i < 9 ? "invalid HTTP version in status line" : "invalid status code";
            return H1_BAD_RESPONSE;
        }
    }
    if (avail < 12)
        return 0;
    int status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (status < 100 || status > 599) {
        *why = "invalid status code";
        return H1_BAD_RESPONSE;
    }

    /* SP reason-phrase, or nothing: RFC 9112 wants the SP even before an
     * empty reason, but many servers omit it and it changes no framing. */
    const char *r = buf + 12, *q = r;
    if (q == end)
        return 0;
    if (*q == ' ') {
        r = ++q;
        q = h1_scan_value(q, end);
        if (q == end)
            return 0;
    }
    if (*q != '\r') {
        *why = *q == '\n' ? "bare LF in head" : "invalid status line";
        return H1_BAD_RESPONSE;
    }
    if (q + 1 == end)
        return 0;
    if (q[1] != '\n') {
        *why = "bare CR in head";
        return H1_BAD_RESPONSE;
    }
    resp->status = status;
    resp->minor = buf[7] - '0';
    resp->reason.p = r;
    resp->reason.len = (uint32_t)(q - r);
    *next = q + 2;
    return 1;
}

int h1_parse_response(const char *buf, size_t len, enum h1_method request_method,
                      const struct h1_limits *lim, struct h1_response *resp)
{
    uint32_t cap = resp->headers ? resp->max_headers : 0;
    const char *why = NULL;
    struct h1_fields_info fi;
    int r;

    if (!lim)
        lim = &h1_limits_default;
    if (cap > lim->max_headers)
        cap = lim->max_headers;
    /* The status line is bounded only by max_head. */
    r = h1_head_parse(buf, len, lim->max_head, lim->max_head, &resp->scan, status_line, resp,
                      resp->headers, cap, &resp->nheaders, &why);
    if (r == 0)
        return 0;
    if (r < 0)
        goto bad;

    h1_fields_scan(resp->headers, resp->nheaders, &fi);
    int s = resp->status;
    bool connect_ok = request_method == H1_CONNECT && s >= 200 && s < 300;

    resp->tunnel = connect_ok || s == 101;
    resp->body = H1_BODY_NONE;
    resp->content_length = 0;
    /* RFC 9110 9.3.6: a client MUST ignore Content-Length and
     * Transfer-Encoding in a 2xx to CONNECT; everywhere else they are checked
     * even when the response has no body, so nothing odd is relayed. */
    if (!connect_ok) {
        if (fi.cl_bad) {
            why = fi.cl_why;
            goto bad;
        }
        if (fi.te_lines) {
            if (resp->minor == 0) {
                /* RFC 9112 6.1: the framing of such a message is faulty. */
                why = "Transfer-Encoding in HTTP/1.0 response";
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
            /* RFC 9112 6.3 item 4: chunked not last means read until close. */
            resp->body = fi.te_chunked ? H1_BODY_CHUNKED : H1_BODY_CLOSE;
        } else if (fi.cl_lines) {
            resp->body = fi.cl ? H1_BODY_LENGTH : H1_BODY_NONE;
            resp->content_length = fi.cl;
        } else {
            resp->body = H1_BODY_CLOSE;
        }
    }
    /* RFC 9112 6.3 items 1 and 2: these have no body whatever they say. */
    if (request_method == H1_HEAD || s < 200 || s == 204 || s == 304 || connect_ok) {
        resp->body = H1_BODY_NONE;
        resp->content_length = 0;
    }

    if (resp->minor == 1)
        resp->keep_alive = !fi.conn_close;
    else
        resp->keep_alive = fi.conn_keep_alive && !fi.conn_close;
    if (resp->body == H1_BODY_CLOSE || resp->tunnel)
        resp->keep_alive = false;
    resp->head_len = (uint32_t)r;
    resp->error = NULL;
    return r;

bad:
    resp->error = why;
    return H1_BAD_RESPONSE;
}
