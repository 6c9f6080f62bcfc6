/* External authentication (`auth: {type: external}`): before a request
 * goes to its pool, sluice asks an auth service whether it may, as NGINX's
 * auth_request and Envoy's ext_authz HTTP service do. This is how
 * oauth2-proxy, Authelia, Pomerium or a service of one's own stand in front
 * of applications.
 *
 * The check is `GET <auth.path>` to a backend of `auth.pool`, without a
 * body, carrying the client's fields named in request_headers and what the
 * service needs to know of the request: X-Original-Method, X-Original-URI
 * (the path as routing saw it, and the query), X-Original-URL, their
 * Traefik-style twins X-Forwarded-Method and X-Forwarded-Uri, Host,
 * X-Forwarded-Proto, -Host and -For, X-Request-Id.
 *
 * The answer decides: 2xx lets the request through, with the answer's
 * fields named in upstream_headers added to it (the client's own of those
 * names always removed); 3xx and 4xx are denials, relayed to the client
 * (status, the fields client_headers allows, the body up to
 * EXT_AUTH_MAX_BODY); no answer (refused, timed out, malformed) and 5xx
 * are failures of the service, which `failure` settles (deny: 503;
 * allow: let it through).
 *
 * The exchange itself is proxy/subrequest.c's; http.c's auth phase waits
 * in HC_AUTH meanwhile. This file holds what is particular to auth: the
 * check's bytes, the verdict, the request head for the backend and the
 * denial for the client. */
#ifndef SLUICE_PROXY_EXT_AUTH_H
#define SLUICE_PROXY_EXT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/buffer.h"
#include "core/worker.h"
#include "net/addr.h"
#include "proto/http1.h"
#include "proxy/subrequest.h"

#define EXT_AUTH_MAX_BODY (64u * 1024u)    /* a denial's body relayed; a longer one is not */
#define EXT_AUTH_TRIES 2                   /* backends tried when a connect fails */

/* What the check says of the client besides its fields. */
struct ext_auth_client {
    const struct addr *peer;      /* the client (PROXY protocol's when accepted) */
    bool peer_trusted;            /* in trusted_proxies: its X-Forwarded-* are kept */
    bool tls;                     /* it reached sluice over TLS */
    const char *request_id;
};

enum ext_auth_verdict {
    EXT_AUTH_ALLOW,               /* 2xx */
    EXT_AUTH_DENY,                /* 3xx, 4xx: relay it */
    EXT_AUTH_ERROR,               /* no answer, or 5xx: `failure` decides */
};

/* Send the check for req. The answer comes to cb(arg, ...), never from
 * inside this call. NULL when it could not start (*why says why): a
 * failure of the service. */
struct subrequest *ext_auth_start(struct worker *w, const struct conf_ext_auth *ea,
                                  const struct h1_request *req, const struct ext_auth_client *cl,
                                  subrequest_cb cb, void *arg, const char **why);

/* The answer's meaning; *why, for EXT_AUTH_ERROR, says why for the log. */
enum ext_auth_verdict ext_auth_verdict(const struct subrequest_answer *a, const char **why);

/* Must the client's head be rewritten before it goes on: has it a field
 * upstream_headers names, or has answer (NULL: none, a failure let
 * through) one? */
bool ext_auth_head_changes(const struct conf_ext_auth *ea, const struct h1_request *req,
                           const struct h1_response *answer);

/* Bytes the rewritten head can take at most. */
size_t ext_auth_head_size(const struct conf_ext_auth *ea, uint32_t head_len,
                          const struct h1_response *answer);

/* The client's request head (head, head_len bytes, parsed as req) again,
 * without its fields of upstream_headers' names (spelled with '_' too, as
 * CGI-style backends read them alike) and with answer's fields of those
 * names added: written to out; its length, or -1 when size is too small. */
int ext_auth_head_rewrite(const struct conf_ext_auth *ea, const struct h1_request *req,
                          const char *head, uint32_t head_len, const struct h1_response *answer,
                          char *out, size_t size);

/* A denial for the client: the answer's status, the fields client_headers
 * lets through (never its framing or hop-by-hop fields), the route's
 * response rewrites and X-Request-Id as for a proxied answer, and body
 * (body_len bytes; not written for a HEAD request, head_only). Appended to
 * b; 0, or -ENOSPC when b is too small (b unchanged). */
int ext_auth_write_denial(struct buf *b, const struct conf_ext_auth *ea,
                          const struct h1_response *answer, const char *body, size_t body_len,
                          const struct conf_route *route, bool keep_alive, bool head_only,
                          bool client_http10, const char *request_id);

/* Bytes a denial with this answer and body can take at most. */
size_t ext_auth_denial_size(const struct h1_response *answer, size_t body_len,
                            const struct conf_route *route);

#endif
