/* Blocking-with-a-deadline TCP for the helper threads that fetch documents
 * (the OCSP fetcher, proto/tls_ocsp_fetch.c; the JWKS fetcher through
 * proto/tls_get.c): a non-blocking socket polled up to one deadline, so a
 * silent or slow server costs at most the caller's timeout. Never on an
 * event loop: getaddrinfo and poll block the calling thread. */
#ifndef SLUICE_NET_DIAL_H
#define SLUICE_NET_DIAL_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds: what the deadlines below count in. */
int64_t dial_now_ms(void);

/* Wait for events (POLLIN, POLLOUT) on fd until deadline_ms: 0 ready, -1
 * timed out or failed. */
int dial_wait(int fd, short events, int64_t deadline_ms);

/* A connected non-blocking TCP socket to host:port (each address the
 * resolver gives, in its order, until one connects), or -1. */
int dial_tcp(const char *host, const char *port, int64_t deadline_ms);

#endif
