/* Listeners: the shared description of one configured listener, with its
 * counters, and the creation of its per-worker sockets. */
#ifndef SLUICE_NET_LISTENER_H
#define SLUICE_NET_LISTENER_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"

struct pool;
struct route_table;
struct tls_ctx;

/* Owner: the runtime. Shared by all workers: counters are atomics. */
struct listener {
    const struct conf_listener *conf;
    struct pool *pool;
    _Atomic uint64_t connections_total;   /* tcp: accepted; udp: flows created */
    _Atomic uint64_t connections_active;
    _Atomic uint64_t bytes_in;            /* from clients */
    _Atomic uint64_t bytes_out;           /* to clients */
    _Atomic uint64_t proxy_header_errors;
    _Atomic uint64_t no_backend;          /* connections refused for lack of a backend */
    _Atomic uint64_t requests_total;      /* http: requests answered (any status) */
    struct route_table *routes;           /* http, tcp: built at startup, read-only after */
    struct tls_ctx *tls;                  /* with `tls`: built at startup, read-only after */
    _Atomic uint64_t tls_handshake_errors;
    _Atomic uint64_t auth_failures;       /* http: wrong user or password (not missing ones) */
    _Atomic uint64_t ext_auth_denied;     /* http: requests an external auth service refused */
    _Atomic uint64_t ext_auth_errors;     /* http: checks the external auth service could not
                                             answer (its `failure` decided) */
    _Atomic uint64_t dns_queries;         /* dns: queries answered (any rcode) */
    _Atomic uint64_t full_pauses;         /* accepting paused at max_connections */
};

/* Create, bind (SO_REUSEPORT, one per worker) and, for tcp, listen.
 * Returns the descriptor, or -errno. */
int listener_socket(const struct conf_listener *c);
/* The same with the socket type given: a dns listener also listens on TCP
 * (RFC 7766). */
int listener_socket_type(const struct conf_listener *c, int type);
/* IP_FREEBIND (IPV6_FREEBIND for AF_INET6 where the kernel has it) on fd,
 * before bind: `freebind: true`. Returns 0 or -errno. */
int listener_set_freebind(int fd, int family);
/* What to add to a "cannot bind" message for errno ERR: a hint to set
 * freebind for EADDRNOTAVAIL, "" otherwise. */
const char *listener_bind_hint(int err);

#endif
