/* Access log records. One line per L4 connection (tcp) or flow (udp), in
 * the format log.format selects:
 *   combined: 2026-11-22T22:31:12.123Z tcp web 10.0.0.1:5555 app/b1 127.0.0.1:9001
 *             in=123 out=456 connect_ms=0.2 duration_ms=12.0 tries=1 end=client_close
 *   json:     {"time":"...","proto":"tcp","listener":"web",...}
 * Fields the record lacks print as "-" (text) or null (json). */
#ifndef SLUICE_PROXY_ACCESS_LOG_H
#define SLUICE_PROXY_ACCESS_LOG_H

#include <stdint.h>

#include "balance/balance.h"
#include "config/config.h"
#include "net/addr.h"
#include "proto/http1.h"
#include "proxy/end.h"

struct access_l4 {
    const char *proto;           /* "tcp" | "udp" */
    const char *listener;
    const struct addr *client;
    const char *pool;
    const struct backend *backend;   /* last tried; NULL when none */
    uint64_t bytes_in;           /* client → backend */
    uint64_t bytes_out;          /* backend → client */
    uint64_t duration_us;
    uint64_t connect_us;
    unsigned tries;
    enum end_reason end;
    bool routed;                 /* a tcp listener with routes: server_name is logged */
    const char *server_name;     /* the TLS server name routes saw; NULL = none */
};

/* One line per HTTP exchange:
 *   combined: the NCSA combined format, then sluice's fields:
 *     10.0.0.1 - - [22/Nov/2026:22:31:12 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl/7.88"
 *     route=0 pool=app backend=b1 connect_ms=0.2 response_ms=1.3 total_ms=1.6 tries=1
 *     request_id=... end=client_close
 *   and, for a gRPC call sluice gave its status itself, grpc_status=N last
 *   (the status field says what was sent: 200);
 *   json: the same fields as one object ("grpc_status" only then too). */
struct access_http {
    const char *listener;
    const struct addr *client;
    struct h1_slice method, target, host, referer, user_agent;
    const char *version;         /* "HTTP/1.1", "HTTP/1.0", "HTTP/2.0" */
    int status;                  /* 0 when no response was sent */
    uint64_t bytes_in;           /* request body bytes */
    uint64_t bytes_out;          /* response bytes, head included */
    int route;                   /* index of the matched route, -1 none */
    const char *pool;
    const struct backend *backend;
    uint64_t connect_us, response_us, total_us;
    unsigned tries;
    const char *request_id;
    enum end_reason end;
    int grpc_status;             /* a gRPC status sluice gave the call itself (an error
                                    it answered, a grpc-timeout that ran out): logged
                                    as grpc_status=N; 0 = none */
};

void access_log_set_format(enum access_format f);
void access_log_http(const struct access_http *r);
void access_log_l4(const struct access_l4 *r);

#endif
