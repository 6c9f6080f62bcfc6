#include "proxy/pump.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "proto/tls.h"

void pump_dir_release(struct worker *w, struct pump_dir *d)
{
    if (d->pipe)
        worker_pipe_put(w, d->pipe, d->pipe_bytes == 0);
    d->pipe = NULL;
    d->pipe_bytes = 0;
    buf_put(&w->bufs, d->buf);
    d->buf = NULL;
}

enum pump_result pump_dir(struct worker *w, struct pump_dir *d, int src, int dst,
                          bool *src_readable, bool *dst_writable, bool *moved)
{
    uint32_t total = 0;

    for (;;) {
        bool progress = false;
        ssize_t n;

        /* 1. Bytes held in the buffer go first (they precede the pipe's). */
        if (d->buf && *dst_writable) {
            n = send(dst, d->buf->data + d->buf->head, buf_len(d->buf), MSG_NOSIGNAL);
            if (n > 0) {
                buf_consume(d->buf, (uint32_t)n);
                d->bytes += (uint64_t)n;
                total += (uint32_t)n;
                progress = true;
                if (buf_len(d->buf) == 0) {
                    buf_put(&w->bufs, d->buf);   /* an idle direction holds none */
                    d->buf = NULL;
                }
            } else if (errno == EAGAIN) {
                *dst_writable = false;
            } else {
                return PUMP_DST_ERROR;
            }
        }
        /* 2. Then the pipe. */
        if (!d->buf && d->pipe_bytes && *dst_writable) {
            n = splice(d->pipe->fd[0], NULL, dst, NULL, d->pipe_bytes,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                d->pipe_bytes -= (uint32_t)n;
                d->bytes += (uint64_t)n;
                total += (uint32_t)n;
                progress = true;
            } else if (n < 0 && errno == EAGAIN) {
                *dst_writable = false;
            } else {
                return PUMP_DST_ERROR;
            }
        }
        /* 3. Read more while there is room. */
        if (!d->eof && *src_readable && !d->buf) {
            if (!d->pipe)
                d->pipe = worker_pipe_get(w);
            if (d->pipe) {
                if (d->pipe_bytes < d->pipe->cap) {
                    n = splice(src, NULL, d->pipe->fd[1], NULL, d->pipe->cap - d->pipe_bytes,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                    if (n > 0) {
                        d->pipe_bytes += (uint32_t)n;
                        progress = true;
                    } else if (n == 0) {
                        d->eof = true;
                        progress = true;
                    } else if (errno == EAGAIN) {
                        /* Ambiguous: the socket is empty or the pipe is full.
                         * Only an empty pipe proves the socket is empty. */
                        if (d->pipe_bytes == 0)
                            *src_readable = false;
                    } else {
                        return PUMP_SRC_ERROR;
                    }
                }
            } else {
                /* No pipe could be made (descriptor limits): use a buffer. */
                d->buf = buf_get(&w->bufs);
                if (!d->buf)
                    return PUMP_SRC_ERROR;
                n = recv(src, d->buf->data, d->buf->size, 0);
                if (n > 0) {
                    d->buf->tail = (uint32_t)n;
                    progress = true;
                } else {
                    buf_put(&w->bufs, d->buf);
                    d->buf = NULL;
                    if (n == 0) {
                        d->eof = true;
                        progress = true;
                    } else if (errno == EAGAIN) {
                        *src_readable = false;
                    } else {
                        return PUMP_SRC_ERROR;
                    }
                }
            }
        }
        if (!progress)
            break;
        if (total >= PUMP_BUDGET) {
            *moved = true;
            return PUMP_MORE;
        }
    }
    if (total)
        *moved = true;
    /* 4. Pass the FIN on once everything before it was delivered. */
    if (d->eof && !d->shut && !d->buf && d->pipe_bytes == 0) {
        shutdown(dst, SHUT_WR);
        d->shut = true;
        *moved = true;
    }
    return PUMP_OK;
}

/* One end of a direction: TLS when tls is set, else the plain socket fd. */
static ssize_t end_write(SSL *tls, int fd, const void *p, size_t n)
{
    ssize_t r;

    if (!tls) {
        r = send(fd, p, n, MSG_NOSIGNAL);
        return r < 0 && errno == EAGAIN ? -1 : r < 0 ? -2 : r;
    }
    r = tls_write(tls, p, n);
    return r > 0 ? r : (r == TLS_WANT_WRITE || r == TLS_WANT_READ) ? -1 : -2;
}

/* > 0 bytes, 0 at the end, -1 when it must wait, -2 on an error. A TLS
 * read that must write first (a key update) waits for the next event like
 * one that must read. */
static ssize_t end_read(SSL *tls, int fd, void *p, size_t n)
{
    ssize_t r;

    if (!tls) {
        r = recv(fd, p, n, 0);
        return r < 0 && errno == EAGAIN ? -1 : r < 0 ? -2 : r;
    }
    r = tls_read(tls, p, n);
    return r > 0 ? r : r == TLS_CLOSED ? 0 : r == TLS_FAILED ? -2 : -1;
}

enum pump_result pump_dir_ends(struct worker *w, struct pump_dir *d, SSL *src_tls, int src,
                               SSL *dst_tls, int dst, bool *src_readable, bool *dst_writable,
                               bool *moved)
{
    uint32_t total = 0;

    for (;;) {
        bool progress = false;
        ssize_t n;

        /* 1. What the buffer holds goes first. */
        if (d->buf && *dst_writable) {
            n = end_write(dst_tls, dst, d->buf->data + d->buf->head, buf_len(d->buf));
            if (n == -2)
                return PUMP_DST_ERROR;
            if (n > 0) {
                buf_consume(d->buf, (uint32_t)n);
                d->bytes += (uint64_t)n;
                total += (uint32_t)n;
                progress = true;
                if (buf_len(d->buf) == 0) {
                    buf_put(&w->bufs, d->buf);   /* an idle direction holds none */
                    d->buf = NULL;
                }
            } else {
                *dst_writable = false;
            }
        }
        /* 2. Read more once it is sent: a slow reader stops the writer. */
        if (!d->eof && *src_readable && !d->buf) {
            if (!(d->buf = buf_get(&w->bufs)))
                return PUMP_SRC_ERROR;
            n = end_read(src_tls, src, d->buf->data, d->buf->size);
            if (n > 0) {
                d->buf->tail = (uint32_t)n;
                progress = true;
            } else {
                buf_put(&w->bufs, d->buf);
                d->buf = NULL;
                if (n == -2)
                    return PUMP_SRC_ERROR;
                if (n == 0) {
                    d->eof = true;
                    progress = true;
                } else {
                    *src_readable = false;
                }
            }
        }
        if (!progress)
            break;
        if (total >= PUMP_BUDGET) {
            *moved = true;
            return PUMP_MORE;
        }
    }
    if (total)
        *moved = true;
    /* 3. Pass the end on once everything before it was delivered: a TLS
     * peer gets close_notify before the FIN. */
    if (d->eof && !d->shut && !d->buf) {
        if (dst_tls)
            tls_shutdown(dst_tls);
        shutdown(dst, SHUT_WR);
        d->shut = true;
        *moved = true;
    }
    return PUMP_OK;
}
