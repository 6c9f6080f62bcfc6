/* The proxy layer's face to the workers: L4 TCP sessions and UDP flows. */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

#include "core/worker.h"

/* tcp.c: the listener is readable; accept what is waiting. */
/* Returns -EMFILE when the process ran out of descriptors (pause accepting). */
int tcp_accept(struct worker_listener *wl);
/* Close every session of the worker now (drain timeout over). */
void tcp_close_all(struct worker *w);
/* Close sessions to backends whose drain_timeout ran out. */
void tcp_sweep(struct worker *w);

/* http.c: L7 HTTP/1.1 client connections. */
int http_accept(struct worker_listener *wl);
/* Close idle keep-alive connections now; busy ones after their response. */
void http_drain(struct worker *w);
void http_close_all(struct worker *w);
/* Close exchanges to backends whose drain_timeout ran out, and idle
 * keep-alive connections to backends no longer eligible. */
void http_sweep(struct worker *w);

/* udp.c */
int udp_listener_init(struct worker_listener *wl);
void udp_listener_readable(struct worker_listener *wl);
void udp_listener_close(struct worker_listener *wl);

#endif
