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

/* Send what d->buf holds to dst (TLS when tls is set); an emptied buffer
 * goes back to the pool. -1 when dst failed, else 1 on progress, 0 when
 * dst must wait. */
static int send_buffered(struct worker *w, struct pump_dir *d, SSL *tls, int dst,
                         bool *dst_writable, uint32_t *total)
{
    ssize_t n = end_write(tls, dst, d->buf->data + d->buf->head, buf_len(d->buf));

    if (n == -2)
        return -1;
    if (n <= 0) {
        *dst_writable = false;
        return 0;
    }
    buf_consume(d->buf, (uint32_t)n);
    d->bytes += (uint64_t)n;
    *total += (uint32_t)n;
    if (buf_len(d->buf) == 0) {
        buf_put(&w->bufs, d->buf);       /* an idle direction holds none */
        d->buf = NULL;
    }
    return 1;
}

/* Read a buffer's worth from src (TLS when tls is set) into a fresh d->buf.
 * -1 when src failed, else 1 on progress (bytes, or the end), 0 when src
 * must wait. */
static int fill_buffer(struct worker *w, struct pump_dir *d, SSL *tls, int src,
                       bool *src_readable)
{
    ssize_t n;

    if (!(d->buf = buf_get(&w->bufs)))
        return -1;
    n = end_read(tls, src, d->buf->data, d->buf->size);
    if (n > 0) {
        d->buf->tail = (uint32_t)n;
        return 1;
    }
    buf_put(&w->bufs, d->buf);
    d->buf = NULL;
    if (n == -2)
        return -1;
    if (n == 0) {
        d->eof = true;
        return 1;
    }
    *src_readable = false;
    return 0;
}

/* The end of a pump_dir call: note any bytes moved, and once src ended and
 * everything before its end was delivered, shut dst's write side (a TLS
 * peer gets close_notify before the FIN). */
static enum pump_result pass_end(struct pump_dir *d, SSL *dst_tls, int dst, uint32_t total,
                                 bool *moved)
{
    if (total)
        *moved = true;
    if (d->eof && !d->shut && !d->buf && d->pipe_bytes == 0) {
        if (dst_tls)
            tls_shutdown(dst_tls);
        shutdown(dst, SHUT_WR);
        d->shut = true;
        *moved = true;
    }
    return PUMP_OK;
}

enum pump_result pump_dir(struct worker *w, struct pump_dir *d, int src, int dst,
                          bool *src_readable, bool *dst_writable, bool *moved)
{
    uint32_t total = 0;

    for (;;) {
        bool progress = false;
        ssize_t n;
        int r;

        /* 1. Bytes held in the buffer go first (they precede the pipe's). */
        if (d->buf && *dst_writable) {
            if ((r = send_buffered(w, d, NULL, dst, dst_writable, &total)) < 0)
                return PUMP_DST_ERROR;
            progress |= r;
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
                if ((r = fill_buffer(w, d, NULL, src, src_readable)) < 0)
                    return PUMP_SRC_ERROR;
                progress |= r;
            }
        }
        if (!progress)
            break;
        if (total >= PUMP_BUDGET) {
            *moved = true;
            return PUMP_MORE;
        }
    }
    /* 4. Pass the FIN on once everything before it was delivered. */
    return pass_end(d, NULL, dst, total, moved);
}

enum pump_result pump_dir_ends(struct worker *w, struct pump_dir *d, SSL *src_tls, int src,
                               SSL *dst_tls, int dst, bool *src_readable, bool *dst_writable,
                               bool *moved)
{
    uint32_t total = 0;

    for (;;) {
        bool progress = false;
        int r;

        /* 1. What the buffer holds goes first. */
        if (d->buf && *dst_writable) {
            if ((r = send_buffered(w, d, dst_tls, dst, dst_writable, &total)) < 0)
                return PUMP_DST_ERROR;
            progress |= r;
        }
        /* 2. Read more once it is sent: a slow reader stops the writer. */
        if (!d->eof && *src_readable && !d->buf) {
            if ((r = fill_buffer(w, d, src_tls, src, src_readable)) < 0)
                return PUMP_SRC_ERROR;
            progress |= r;
        }
        if (!progress)
            break;
        if (total >= PUMP_BUDGET) {
            *moved = true;
            return PUMP_MORE;
        }
    }
    /* 3. Pass the end on once everything before it was delivered. */
    return pass_end(d, dst_tls, dst, total, moved);
}
