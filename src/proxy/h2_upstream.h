/* HTTP/2 to backends: pools with `http2: true` (see h2_upstream.c). Each
 * exchange's stream is an upstream_conn without a socket (u->h2 set);
 * proxy/upstream.c and proxy/http.c hand such a connection's calls here. */
#ifndef SLUICE_PROXY_H2_UPSTREAM_H
#define SLUICE_PROXY_H2_UPSTREAM_H

#include <sys/types.h>

#include "proxy/upstream.h"

/* A new stream to b on a session of this worker (a new session if none has
 * room); its events reach cb as a connect's would: EPOLLOUT once the
 * session is up, an error through h2_upstream_error. NULL with *err. */
struct upstream_conn *h2_upstream_open(struct worker *w, struct backend *b, upstream_cb cb,
                                       void *owner, int *err);

/* The HTTP/1.1 request in, the HTTP/1.1 response out, as send/recv would:
 * -1 with errno EAGAIN (wait for the next event), EPIPE or ECONNRESET. */
ssize_t h2_upstream_send(struct upstream_conn *u, const void *p, size_t n);
ssize_t h2_upstream_recv(struct upstream_conn *u, void *p, size_t n);

/* Why the stream cannot go on (0: it can), as SO_ERROR would say. */
int h2_upstream_error(struct upstream_conn *u);

/* The exchange is done with it: reset unless its response ended. */
void h2_upstream_release(struct upstream_conn *u);

/* Sessions without streams (drain), and all of them (stop). */
void h2_upstream_close_idle(struct worker *w);
void h2_upstream_close_all(struct worker *w);

#endif
