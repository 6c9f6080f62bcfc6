/* proto/h2_request: HTTP/2 request heads written as HTTP/1.1 heads. */
#include <stdlib.h>
#include <string.h>

#include "proto/h2_request.h"
#include "test.h"

struct field {
    const char *name, *value;
};

#define KEY "AAAAAAAAAAAAAAAAAAAAAA=="    /* a Sec-WebSocket-Key, as ws_key_new makes */

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
        e = h2_request_end(&r, has_body, r.websocket ? KEY : NULL);
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
        CHECK_EQ_INT(h2_request_end(&r, true, NULL), 0);
        CHECK(r.chunked);
        h2_request_free(&r);
    }

    /* A WebSocket's extended CONNECT (RFC 8441) is the HTTP/1.1 upgrade:
     * a GET, the key given, the client's own key dropped, the other
     * fields as they came, no body framing for the tunnel's DATA. */
    expect_head((struct field[]){{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"},
                                 {":path", "/chat?room=1"}, {":authority", "a.example"},
                                 {"sec-websocket-version", "13"}, {"sec-websocket-key", "theirs"},
                                 {"sec-websocket-protocol", "chat, superchat"}, {"cookie", "s=1"},
                                 {NULL, NULL}},
                true,
                "GET /chat?room=1 HTTP/1.1\r\nHost: a.example\r\nsec-websocket-version: 13\r\n"
                "sec-websocket-protocol: chat, superchat\r\nCookie: s=1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n\r\n");
    expect_head((struct field[]){{":method", "CONNECT"}, {":protocol", "WebSocket"}, {":scheme", "http"},
                                 {":path", "/"}, {":authority", "a"}, {NULL, NULL}},
                true,
                "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: " KEY "\r\n\r\n");
    {
        struct h2_request r;
        h2_request_init(&r, 1024);
        CHECK_EQ_INT(h2_request_field(&r, (const uint8_t *)":method", 7, (const uint8_t *)"CONNECT", 7), 0);
        CHECK(!r.websocket);
        CHECK_EQ_INT(h2_request_field(&r, (const uint8_t *)":protocol", 9, (const uint8_t *)"websocket", 9), 0);
        CHECK(r.websocket);
        CHECK_EQ_INT(h2_request_field(&r, (const uint8_t *)":path", 5, (const uint8_t *)"/", 1), 0);
        CHECK_EQ_INT(h2_request_end(&r, true, NULL), -500);       /* no key given */
        h2_request_free(&r);
        h2_request_init(&r, 1024);
        CHECK_EQ_INT(h2_request_field(&r, (const uint8_t *)":method", 7, (const uint8_t *)"CONNECT", 7), 0);
        CHECK_EQ_INT(h2_request_field(&r, (const uint8_t *)":protocol", 9, (const uint8_t *)"websocket", 9), 0);
        CHECK_EQ_INT(h2_request_field(&r, (const uint8_t *)":path", 5, (const uint8_t *)"/", 1), 0);
        CHECK_EQ_INT(h2_request_end(&r, true, KEY), 0);
        CHECK_EQ_STR(r.ws_key, KEY);
        CHECK(!r.chunked);
        h2_request_free(&r);
    }

    /* Refused heads. */
    expect_error((struct field[]){{":method", "CONNECT"}, {":authority", "a:443"}, {NULL, NULL}}, true,
                 65536, -501);
    /* Extended CONNECT: only WebSockets are tunnelled; :protocol only on a
     * CONNECT; a WebSocket has no content-length and no Upgrade of its own. */
    expect_error((struct field[]){{":method", "CONNECT"}, {":protocol", "connect-udp"}, {":path", "/"},
                                  {":authority", "a"}, {NULL, NULL}},
                 true, 65536, -501);
    expect_error((struct field[]){{":method", "GET"}, {":protocol", "websocket"}, {":path", "/"},
                                  {":authority", "a"}, {NULL, NULL}},
                 true, 65536, -400);
    expect_error((struct field[]){{":method", "CONNECT"}, {":protocol", "web socket"}, {":path", "/"},
                                  {NULL, NULL}},
                 true, 65536, -400);
    expect_error((struct field[]){{":method", "CONNECT"}, {":protocol", "websocket"}, {":path", "/"},
                                  {":authority", "a"}, {"content-length", "5"}, {NULL, NULL}},
                 true, 65536, -400);
    expect_error((struct field[]){{":method", "CONNECT"}, {":protocol", "websocket"}, {":path", "/"},
                                  {":authority", "a"}, {"upgrade", "websocket"}, {NULL, NULL}},
                 true, 65536, -400);
    expect_error((struct field[]){{":method", "CONNECT"}, {":protocol", "websocket"}, {":authority", "a"},
                                  {NULL, NULL}},
                 true, 65536, -400);                                /* no :path */
    expect_error((struct field[]){{":path", "/"}, {NULL, NULL}}, false, 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {NULL, NULL}}, false, 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {":path", ""}, {NULL, NULL}}, false, 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {":path", "/"}, {"a", "1"}, {":authority", "x"},
                                  {NULL, NULL}},
                 false, 65536, -400);                               /* pseudo after regular */
    expect_error((struct field[]){{":method", "GET"}, {":method", "GET"}, {NULL, NULL}}, false, 65536, -400);
    expect_error((struct field[]){{":method", "GET"}, {":path", "/"}, {":status", "200"},
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
