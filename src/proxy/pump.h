/* Moving bytes from one socket to another, one direction at a time:
 * splice(2) through a pipe from the worker's pipe pool, or a buffer for
 * bytes sluice read itself (they go first). Used by L4 TCP sessions and by
 * L7 tunnels (WebSocket, CONNECT) once the HTTP exchange turned into one.
 *
 * Sockets are edge-triggered: the caller keeps readable/writable flags per
 * socket, set by events; pump_dir clears them only on EAGAIN. */
#ifndef SLUICE_PROXY_PUMP_H
#define SLUICE_PROXY_PUMP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buffer.h"
#include "core/worker.h"

/* Bytes one pump_dir call may move before yielding to other connections.
 * Yielding is not free: in paired runs against HAProxy (docs/benchmarks.md)
 * a 1 MiB budget cost 1.12× HAProxy's CPU per GB on a bulk download, no
 * budget 0.74×. 16 MiB yields 16 times less often than 1 MiB while still
 * bounding how long one transfer can make the worker's other connections
 * wait (about 10 ms at loopback speeds). */
#define PUMP_BUDGET (16u * 1024u * 1024u)

/* One direction: bytes from src to dst. Owner: the session using it. */
struct pump_dir {
    struct worker_pipe *pipe;   /* splice path; NULL until first needed */
    uint32_t pipe_bytes;        /* bytes sitting in the pipe */
    struct buf *buf;            /* bytes to send before the pipe's; NULL when empty */
    uint64_t bytes;             /* delivered to dst */
    bool eof;                   /* src sent FIN */
    bool shut;                  /* dst's write side was shut after eof */
};

enum pump_result {
    PUMP_OK,
    PUMP_SRC_ERROR,     /* reading src failed: src reset */
    PUMP_DST_ERROR,     /* writing dst failed: dst reset or gone */
    PUMP_MORE,          /* budget used up with work left: call again later */
};

/* Move bytes src → dst until neither side can make progress, then pass an
 * EOF on as shutdown(dst, SHUT_WR) once everything before it was delivered.
 * Sets *moved when any byte moved. */
enum pump_result pump_dir(struct worker *w, struct pump_dir *d, int src, int dst,
                          bool *src_readable, bool *dst_writable, bool *moved);

/* The same where either end may be TLS (splice cannot see TLS plaintext):
 * bytes go through d->buf. src_tls / dst_tls: that end's TLS connection
 * on its socket src / dst, or NULL for a plain socket. */
typedef struct ssl_st SSL;
enum pump_result pump_dir_ends(struct worker *w, struct pump_dir *d, SSL *src_tls, int src,
                               SSL *dst_tls, int dst, bool *src_readable, bool *dst_writable,
                               bool *moved);

/* Give back the pipe (only an empty one returns to the pool) and buffer. */
void pump_dir_release(struct worker *w, struct pump_dir *d);

#endif
