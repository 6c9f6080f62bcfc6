/* proto/h2_request: HTTP/2 request heads written as HTTP/1.1 heads. */
#include <stdlib.h>
#include <string.h>

#include "proto/h2_request.h"
#include "test.h"

struct field {
    const char *name, *value;
};

/* Feed fields (until a NULL name) and end the head; returns 0 or the
 * negative status, the head (NUL-ended, malloc'd) in *out when 0. */
static int build(const struct field *f, bool has_body, uint32_t limit, char **out)
{
    struct h2_request r;
    int e = 0;

    *out = NULL;
    h2_request_init(&r, limit);
    for (; f->name && !e; f++)
        e = h2_request_field(&r, (const uint8_t *)f->name, strlen(f->name),
                             (const uint8_t *)f->value, strlen(f->value));
    if (!e)
        e = h2_request_end(&r, has_body);
    if (!e) {
        *out = malloc(r.len + 1);
        memcpy(*out, r.head, r.len);
        (*out)[r.len] = '\0';
    }
    h2_request_free(&r);
    return e;
}

static void expect_head(const struct field *f, bool has_body, const char *want)
{
    char *head;

    CHECK_EQ_INT(build(f, has_body, 65536, &head), 0);
    CHECK_EQ_STR(head, want);
    free(head);
}

static void expect_error(const struct field *f, bool has_body, uint32_t limit, int status)
{
    char *head;

    CHECK_EQ_INT(build(f, has_body, limit, &head), status);
    CHECK(head == NULL);
}

int main(void)
{
    /* The request line, Host from :authority, fields in order, cookies joined. */
    expect_head((struct field[]){{":method", "GET"}, {":scheme", "https"}, {":authority", "a.example:8443"},
                                 {":path", "/x?y=1"}, {"user-agent", "t"}, {"cookie", "a=1"},
                                 {"accept", "*/*"}, {"cookie", "b=2"}, {NULL, NULL}},
                false,
                "GET /x?y=1 HTTP/1.1\r\nHost: a.example:8443\r\nuser-agent: t\r\naccept: */*\r\n"
                "Cookie: a=1; b=2\r\n\r\n");
    /* :authority wins over host; host alone is kept. */
    expect_head((struct field[]){{":method", "GET"}, {":path", "/"}, {":authority", "a"}, {"host", "b"},
                                 {NULL, NULL}},
                false, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    expect_head((struct field[]){{":method", "GET"}, {":path", "/"}, {"host", "b"}, {NULL, NULL}},
                false, "GET / HTTP/1.1\r\nhost: b\r\n\r\n");
    /* A body: its content-length kept, else chunked framing. */
    expect_head((struct field[]){{":method", "POST"}, {":path", "/u"}, {":authority", "a"},
                                 {"content-length", "5"}, {NULL, NULL}},
                true, "POST /u HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\n\r\n");
    expect_head((struct field[]){{":method", "POST"}, {":path", "/u"}, {":authority", "a"}, {NULL, NULL}},
                true, "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    {
        struct h2_request r;
        h2_request_init(&r, 1024);
        CHECK_EQ_INT(h2_request_field(&r, (const uint8_t *)":method", 7, (const uint8_t *)"PUT", 3), 0);
        CHECK_EQ_INT(h2_request_field(&r, (const uint8_t *)":path", 5, (const uint8_t *)"/", 1), 0);
        CHECK_EQ_INT(h2_request_end(&r, true), 0);
        CHECK(r.chunked);
        h2_request_free(&r);
    }

    /* Refused heads. */
    expect_error((struct field[]){{":method", "CONNECT"}, {":authority", "a:443"}, {NULL, NULL}}, true,
                 65536, -501);
    expect_error((struct field[]){{":path", "/"}, {NULL, NULL}}, false, 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {NULL, NULL}}, false, 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {":path", ""}, {NULL, NULL}}, false, 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {":path", "/"}, {"a", "1"}, {":authority", "x"},
                                  {NULL, NULL}},
                 false, 65536, -400);                               /* pseudo after regular */
    expect_error((struct field[]){{":method", "GET"}, {":method", "GET"}, {NULL, NULL}}, false, 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {":path", "/"}, {":protocol", "websocket"},
                                  {NULL, NULL}},
                 false, 65536, -400);                               /* unknown pseudo-header */
    expect_error((struct field[]){{":method", "G T"}, {":path", "/"}, {NULL, NULL}}, false, 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {":path", "/ HTTP/1.1"}, {NULL, NULL}}, false, 65536,
                 -400);                                             /* a space would split the line */
    expect_error((struct field[]){{":method", "GET"}, {":path", "/"}, {"x", "a\r\nInjected: 1"}, {NULL, NULL}},
                 false, 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {":path", "/"}, {"x", "a\nb"}, {NULL, NULL}}, false,
                 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {":path", "/"}, {"bad name", "v"}, {NULL, NULL}}, false,
                 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {":path", "/"}, {"transfer-encoding", "chunked"},
                                  {NULL, NULL}},
                 true, 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {":path", "/"}, {"connection", "close"}, {NULL, NULL}},
                 false, 65536, -400);
    {
        /* Too large for the listener's limit: 431, not a giant allocation. */
        char big[3000];
        memset(big, 'v', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        expect_error((struct field[]){{":method", "GET"}, {":path", "/"}, {"a", big}, {NULL, NULL}}, false,
                     1024, -431);
        expect_error((struct field[]){{":method", "GET"}, {":path", "/"}, {"cookie", big}, {NULL, NULL}},
                     false, 1024, -431);
        expect_error((struct field[]){{":method", "GET"}, {":path", big}, {NULL, NULL}}, false, 1024, -431);
    }
    TEST_END();
}
