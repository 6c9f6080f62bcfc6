/* One HTTPS GET, blocking, for a helper thread that fetches a document
 * (JSON Web Key Sets, route/jwks_fetch.c): a non-blocking socket polled
 * up to one deadline, so a silent or slow server costs at most timeout_ms;
 * the server's certificate verified against the configured or system CAs
 * and its name against the URL's host; the answer read with sluice's own
 * HTTP/1 parser and body framing (proto/http1*.c) and bounded in size. */
#include "proto/tls_jwks.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/bytes.h"
#include "net/dial.h"
#include "proto/http1.h"
#include "proto/http1_body.h"
#include "proto/tls.h"

#define GET_MAX_HEAD 16384

void *tls_get_client_new(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char why[256];

    if (!ctx) {
        snprintf(err, errlen, "cannot make a TLS client: %s", tls_error(why, sizeof(why)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* A server that closes without close_notify ends a body framed by the
     * close; the other framings say themselves where the body ends, and a
     * cut set of keys is not valid JSON. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "cannot load CA certificates from '%s': %s",
                 ca_file ? ca_file : "the system's store", tls_error(why, sizeof(why)));
        SSL_CTX_free(ctx);
        return NULL;
    }
    ERR_clear_error();
    return ctx;
}

void tls_get_client_free(void *client)
{
    SSL_CTX_free(client);
}

/* Run op (SSL_connect, SSL_read or SSL_write as a closure over s) until it
 * gives a result or the deadline passes: its return, or -1 with *error
 * set to SSL_get_error's answer (0 for a timeout). */
enum get_op { OP_CONNECT, OP_WRITE, OP_READ };
static int ssl_step(SSL *s, int fd, enum get_op op, void *buf, int len, int64_t deadline,
                    int *error)
{
    for (;;) {
        int r = op == OP_CONNECT ? SSL_connect(s) : op == OP_WRITE ? SSL_write(s, buf, len)
                                                                   : SSL_read(s, buf, len);
        int e;

        if (r > 0)
            return r;
        e = SSL_get_error(s, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (dial_wait(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline) < 0) {
                *error = 0;
                return -1;
            }
            continue;
        }
        *error = e;
        return r == 0 && e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
    }
}

/* Why the handshake failed: the certificate's verification result when
 * that was it, else OpenSSL's error. */
static void handshake_why(SSL *s, int error, char *why, size_t whylen)
{
    long v = SSL_get_verify_result(s);
    char buf[256];

    if (error == 0)
        snprintf(why, whylen, "the TLS handshake did not finish in time");
    else if (v != X509_V_OK)
        snprintf(why, whylen, "the server's certificate does not verify: %s",
                 X509_verify_cert_error_string(v));
    else
        snprintf(why, whylen, "the TLS handshake failed: %s", tls_error(buf, sizeof(buf)));
}

int tls_get(void *client, const char *host, const char *port, const char *path, size_t max_body,
            uint64_t timeout_ms, char **body, size_t *len, char *why, size_t whylen)
{
    int64_t deadline = dial_now_ms() + (int64_t)timeout_ms;
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    bool v6 = strchr(host, ':') != NULL;
    struct bytes data = {0};
    struct h1_body framing;
    char *in = NULL, req[2048];
    size_t have = 0, hl = 0;
    SSL *s = NULL;
    int fd = -1, rc = -1, n, error = 0;

    *body = NULL;
    *len = 0;
    if ((fd = dial_tcp(host, port, deadline)) < 0) {
        snprintf(why, whylen, "cannot connect to %s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "",
                 port);
        goto out;
    }
    if (!(s = SSL_new(client)) || SSL_set_fd(s, fd) != 1 ||
        (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), host) != 1
               : SSL_set_tlsext_host_name(s, host) != 1 || SSL_set1_host(s, host) != 1)) {
        snprintf(why, whylen, "cannot set up TLS: %s", tls_error(req, sizeof(req)));
        goto out;
    }
    if (ssl_step(s, fd, OP_CONNECT, NULL, 0, deadline, &error) <= 0) {
        handshake_why(s, error, why, whylen);
        goto out;
    }
    n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\nAccept: "
                 "application/json\r\nUser-Agent: sluice\r\nConnection: close\r\n\r\n", path,
                 v6 ? "[" : "", host, v6 ? "]" : "", strcmp(port, "443") ? ":" : "",
                 strcmp(port, "443") ? port : "");
    if (n < 0 || (size_t)n >= sizeof(req)) {
        snprintf(why, whylen, "the URL is too long");
        goto out;
    }
    if (ssl_step(s, fd, OP_WRITE, req, n, deadline, &error) != n) {
        snprintf(why, whylen, error ? "sending the request failed" : "no answer in time");
        goto out;
    }
    if (!(in = malloc(GET_MAX_HEAD))) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    /* The head. */
    for (;;) {
        struct h1_header slots[64];
        struct h1_response resp;
        int r = ssl_step(s, fd, OP_READ, in + have, (int)(GET_MAX_HEAD - have), deadline, &error);
        int got;

        if (r < 0 && !error) {
            snprintf(why, whylen, "no answer within %llu ms", (unsigned long long)timeout_ms);
            goto out;
        }
        if (r < 0 && error != SSL_ERROR_SYSCALL) {
            snprintf(why, whylen, "reading the answer failed: %s", tls_error(req, sizeof(req)));
            goto out;
        }
        if (r > 0)
            have += (size_t)r;
        h1_response_init(&resp, slots, 64);
        got = h1_parse_response(in, have, H1_GET, NULL, &resp);
        if (got < 0 || (got == 0 && (r <= 0 || have == GET_MAX_HEAD))) {
            snprintf(why, whylen, "not an HTTP answer");
            goto out;
        }
        if (got == 0)
            continue;
        if (resp.status != 200) {
            snprintf(why, whylen, "the server answered %d", resp.status);
            goto out;
        }
        if (resp.body == H1_BODY_LENGTH && resp.content_length > max_body) {
            snprintf(why, whylen, "the answer (%llu bytes) is larger than %zu bytes",
                     (unsigned long long)resp.content_length, max_body);
            goto out;
        }
        h1_body_init(&framing, resp.body, resp.content_length);
        hl = (size_t)got;
        break;
    }
    /* The body: what came with the head, then the rest. */
    for (size_t off = hl;;) {
        int r;

        while (off < have && !framing.done) {
            ssize_t used = h1_body_take(&framing, in + off, have - off, &data, NULL);
            if (used < 0) {
                snprintf(why, whylen, "the answer's body is malformed");
                goto out;
            }
            if (used == 0)
                break;
            off += (size_t)used;
        }
        if (bytes_len(&data) > max_body) {
            snprintf(why, whylen, "the answer is larger than %zu bytes", max_body);
            goto out;
        }
        if (framing.done || framing.kind == H1_BODY_NONE)
            break;
        have = off = 0;
        r = ssl_step(s, fd, OP_READ, in, GET_MAX_HEAD, deadline, &error);
        if (r < 0 && !error) {
            snprintf(why, whylen, "the answer did not end within %llu ms",
                     (unsigned long long)timeout_ms);
            goto out;
        }
        if (r <= 0) {
            if (framing.kind == H1_BODY_CLOSE && (r == 0 || error == SSL_ERROR_SYSCALL))
                break;
            snprintf(why, whylen, "the answer was cut short");
            goto out;
        }
        have = (size_t)r;
    }
    if (!bytes_len(&data)) {
        snprintf(why, whylen, "an empty answer");
        goto out;
    }
    if (!(*body = malloc(bytes_len(&data) + 1))) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    memcpy(*body, bytes_data(&data), bytes_len(&data));
    (*body)[bytes_len(&data)] = '\0';
    *len = bytes_len(&data);
    rc = 0;
out:
    if (s) {
        if (rc == 0)
            SSL_shutdown(s);
        SSL_free(s);
    }
    if (fd >= 0)
        close(fd);
    free(in);
    bytes_free(&data);
    ERR_clear_error();
    return rc;
}
