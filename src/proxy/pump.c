#include "proxy/pump.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

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

enum pump_result pump_dir_tls(struct worker *w, struct pump_dir *d, SSL *tls, int fd,
                              bool from_tls, bool *src_readable, bool *dst_writable, bool *moved)
{
    uint32_t total = 0;

    for (;;) {
        bool progress = false;
        ssize_t n;

        /* 1. What the buffer holds goes first. */
        if (d->buf && *dst_writable) {
            if (from_tls) {
                n = send(fd, d->buf->data + d->buf->head, buf_len(d->buf), MSG_NOSIGNAL);
                if (n < 0 && errno != EAGAIN)
                    return PUMP_DST_ERROR;
            } else {
                n = tls_write(tls, d->buf->data + d->buf->head, buf_len(d->buf));
                if (n == TLS_FAILED || n == TLS_CLOSED)
                    return PUMP_DST_ERROR;
            }
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
        /* 2. Read more once it is sent: a slow reader stops the writer. A
         * TLS read that must write first (a key update) waits for the next
         * event like one that must read. */
        if (!d->eof && *src_readable && !d->buf) {
            if (!(d->buf = buf_get(&w->bufs)))
                return PUMP_SRC_ERROR;
            if (from_tls) {
                n = tls_read(tls, d->buf->data, d->buf->size);
                if (n == TLS_FAILED)
                    n = -2;
                else if (n == TLS_CLOSED)
                    n = 0;
                else if (n < 0)
                    n = -1;
            } else {
                n = recv(fd, d->buf->data, d->buf->size, 0);
                if (n < 0)
                    n = errno == EAGAIN ? -1 : -2;
            }
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
        if (!from_tls)
            tls_shutdown(tls);
        shutdown(from_tls ? fd : SSL_get_fd(tls), SHUT_WR);
        d->shut = true;
        *moved = true;
    }
    return PUMP_OK;
}
