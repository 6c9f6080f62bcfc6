/* The GSLB responder: a `mode: dns` listener answers A and AAAA queries for
 * its records with the addresses of one region, the nearest healthy one
 * (docs/gslb.md). A region is healthy while its pool has a backend that can
 * take traffic, as the health checks, outlier detection and the operator
 * left it: the same state the balancers read. Runs on the workers, one
 * SO_REUSEPORT socket each, nothing shared but that read-only state. */
#ifndef SLUICE_GSLB_GSLB_H
#define SLUICE_GSLB_GSLB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct addr;
struct conf_listener;
struct runtime;
struct worker_listener;

/* Answer the query of n bytes at p from client; the answer goes into out
 * (cap bytes, at least DNS_UDP_MAX). tcp: it came over TCP (then the
 * answer may fill cap). Returns its length, or 0 when the packet deserves
 * no answer. *region: the region answered with (NULL when
 * none, or when every region was down and all were given). */
size_t gslb_answer(const struct conf_listener *lc, const struct runtime *rt,
                   const struct addr *client, const uint8_t *p, size_t n, bool tcp, uint8_t *out,
                   size_t cap, const char **region);

/* The worker's socket of a dns listener is readable. */
void gslb_readable(struct worker_listener *wl);

/* Its TCP socket has connections to accept (DNS over TCP, RFC 7766:
 * two-byte length, then the message; several queries may follow on one
 * connection, which closes after GSLB_TCP_IDLE_MS without one). */
struct io;
void gslb_tcp_accept(struct io *io, uint32_t events);

/* Close every DNS-over-TCP connection of the worker (drain, stop). */
struct worker;
void gslb_close_all(struct worker *w);

#endif
