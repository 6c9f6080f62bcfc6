/* Shared inside src/admin/ only: the growable text buffer replies are built
 * in, the small JSON reader, the request as the API sees it, and the
 * dashboard page. admin.h and metrics.h are the folder's faces. */
#ifndef SLUICE_ADMIN_INTERNAL_H
#define SLUICE_ADMIN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "admin/admin.h"
#include "proto/http1.h"

/* ---- text buffer (buf.c) ----
 * Owner: whoever built it. Running out of memory sets `oom` and drops what
 * follows, so callers check once at the end instead of after each append. */
struct admin_buf {
    char *p;
    size_t len, cap;
    bool oom;
};

void admin_buf_init(struct admin_buf *b);
void admin_buf_free(struct admin_buf *b);
void admin_buf_add(struct admin_buf *b, const char *s, size_t n);
void admin_buf_puts(struct admin_buf *b, const char *s);
void admin_buf_printf(struct admin_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void admin_buf_u64(struct admin_buf *b, uint64_t v);
/* s as a JSON string, quotes included. A byte that is not part of UTF-8
 * (a %-escape in a path decodes to any byte) is written as U+FFFD, so the
 * reply stays JSON (RFC 8259 section 8.1). */
void admin_buf_json_str(struct admin_buf *b, const char *s);
/* The length of the UTF-8 sequence at p, a byte >= 0x80 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0 when it is
 * not one (json.c). */
size_t admin_utf8_len(const unsigned char *p, const unsigned char *end);

/* ---- JSON reader (json.c) ----
 * A strict RFC 8259 parser into a small tree, for request bodies and for
 * `sluice ctl` reading replies. Depth and size are bounded by the caller's
 * input; nesting deeper than ADMIN_JSON_MAX_DEPTH is refused. */
#define ADMIN_JSON_MAX_DEPTH 32

enum admin_json_type {
    ADMIN_JSON_NULL,
    ADMIN_JSON_BOOL,
    ADMIN_JSON_NUMBER,
    ADMIN_JSON_STRING,
    ADMIN_JSON_ARRAY,
    ADMIN_JSON_OBJECT,
};

/* Owner: the tree's root (admin_json_free). */
struct admin_json {
    enum admin_json_type type;
    bool boolean;
    double number;
    bool is_int;                 /* a number without fraction or exponent that fits */
    int64_t integer;
    char *str;                   /* strings: decoded, NUL-terminated */
    char *key;                   /* members of an object: the member's name */
    struct admin_json *child;    /* arrays and objects: first element */
    struct admin_json *next;     /* next element of the parent */
    size_t n;                    /* arrays and objects: number of elements */
};

/* Returns the tree, or NULL with *err set to a static reason. */
struct admin_json *admin_json_parse(const char *s, size_t len, const char **err);
void admin_json_free(struct admin_json *j);
/* The first member named key of an object, or NULL. */
const struct admin_json *admin_json_get(const struct admin_json *obj, const char *key);
/* Shortcuts for ctl: "" / 0 when absent or of another type. */
const char *admin_json_str(const struct admin_json *obj, const char *key);
int64_t admin_json_int(const struct admin_json *obj, const char *key);

/* ---- one request, as the API handlers see it (api.c) ---- */
struct admin_request {
    const struct h1_request *req;
    const char *body;
    size_t body_len;
    const char *peer;            /* "127.0.0.1:5555", for logs */
};

/* What a handler answers. body is owned by the reply. */
struct admin_reply {
    int status;
    const char *content_type;
    const char *allow;           /* 405: the Allow header */
    bool www_authenticate;       /* 401 */
    struct admin_buf body;
};

/* Route and answer one request (server.c calls it). */
void admin_api_handle(struct admin_server *s, const struct admin_request *r,
                      struct admin_reply *out);
/* A JSON error reply {"error": msg}. */
void admin_reply_error(struct admin_reply *out, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- the dashboard (dashboard.c) ---- */
extern const char admin_dashboard_html[];

#endif
