/* OCSP stapling with responses sluice fetches itself (`ocsp: auto`), as
 * NGINX's `ssl_stapling on` does: one helper thread asks the responder
 * named in each certificate (its Authority Information Access, plain
 * HTTP) and keeps the answer current. Handshakes never wait for it: until
 * a first good answer arrives, and after the last one expires, nothing is
 * stapled and clients ask the responder themselves.
 *
 * An answer is stapled only when it is a successful response about this
 * certificate, signed by its issuer (or a responder the issuer delegated
 * to), current, and "good". It is fetched again when half of its validity
 * has passed (at most an hour later, at least a minute); a failed fetch is
 * tried again after a minute, then up to every ten minutes, while the last
 * good answer stays stapled until it expires.
 *
 * The thread owns nothing but its list of entries; each entry's response
 * is swapped under the entry's lock, which the handshake callback takes to
 * copy it (tls_ocsp.c). Entries are freed only after the thread stopped. */
#include "proto/tls_ocsp_internal.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "net/dial.h"
#include "proto/http1.h"

#define FETCH_TIMEOUT_MS 5000
#define REFRESH_MAX_S 3600
#define REFRESH_MIN_S 60
#define RETRY_FIRST_S 60
#define RETRY_MAX_S 600

static struct {
    pthread_mutex_t lock;        /* the list, stop, and each entry's schedule */
    pthread_cond_t wake;
    struct tls_ocsp *list;
    bool running, stop;
    pthread_t thread;
} fetcher = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, false, false, 0};

static uint64_t now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

int tls_ocsp_auto_check(const char *cert_path, char **url, X509 **leaf, X509 **issuer,
                        char *err, size_t errlen)
{
    STACK_OF(OPENSSL_STRING) *urls;
    char *host = NULL, *port = NULL, *path = NULL;
    int ssl = 0, rc = -1;

    *url = NULL;
    if (tls_ocsp_leaf_and_issuer(cert_path, leaf, issuer, err, errlen) < 0)
        return -1;
    urls = X509_get1_ocsp(*leaf);
    if (!urls || sk_OPENSSL_STRING_num(urls) < 1) {
        snprintf(err, errlen, "the certificate in '%s' names no OCSP responder (Authority "
                 "Information Access): give a response file instead", cert_path);
    } else if (!OCSP_parse_url(sk_OPENSSL_STRING_value(urls, 0), &host, &port, &path, &ssl) ||
               ssl) {
        snprintf(err, errlen, "the OCSP responder of '%s' is not a plain http:// URL "
                 "('%s')", cert_path, sk_OPENSSL_STRING_value(urls, 0));
    } else if (!(*url = strdup(sk_OPENSSL_STRING_value(urls, 0)))) {
        snprintf(err, errlen, "out of memory");
    } else {
        rc = 0;
    }
    X509_email_free(urls);
    OPENSSL_free(host);
    OPENSSL_free(port);
    OPENSSL_free(path);
    if (rc < 0) {
        X509_free(*leaf);
        X509_free(*issuer);
        *leaf = *issuer = NULL;
    }
    return rc;
}

/* ---- one HTTP POST, blocking, bounded by FETCH_TIMEOUT_MS ---- */

/* POST der to url; the answer's body (at most TLS_OCSP_MAX_BYTES) in
 * *body. 0, or -1 with why. */
static int http_post(const char *url, const unsigned char *der, int len, unsigned char **body,
                     long *body_len, char *why, size_t whylen)
{
    char *host = NULL, *port = NULL, *path = NULL, head[1024];
    static const size_t cap = TLS_OCSP_MAX_BYTES + 4096;
    char *in = NULL;
    size_t have = 0;
    int64_t deadline = dial_now_ms() + FETCH_TIMEOUT_MS;
    int ssl = 0, fd = -1, rc = -1, n;

    if (!OCSP_parse_url(url, &host, &port, &path, &ssl) || ssl) {
        snprintf(why, whylen, "bad responder URL");
        goto out;
    }
    if ((fd = dial_tcp(host, port, deadline)) < 0) {
        snprintf(why, whylen, "cannot connect to %s:%s", host, port);
        goto out;
    }
    n = snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: "
                 "application/ocsp-request\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
                 path, host, len);
    if (n < 0 || (size_t)n >= sizeof(head) || !(in = malloc(cap))) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    for (int part = 0; part < 2; part++) {
        const char *p = part ? (const char *)der : head;
        size_t left = part ? (size_t)len : (size_t)n;
        while (left) {
            ssize_t w = send(fd, p, left, MSG_NOSIGNAL);
            if (w < 0 && errno == EAGAIN && dial_wait(fd, POLLOUT, deadline) == 0)
                continue;
            if (w <= 0) {
                snprintf(why, whylen, "sending the request failed");
                goto out;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    for (;;) {
        struct h1_header slots[64];
        struct h1_response resp;
        ssize_t r = recv(fd, in + have, cap - have, 0);
        int hl;

        if (r < 0 && errno == EAGAIN) {
            if (dial_wait(fd, POLLIN, deadline) < 0) {
                snprintf(why, whylen, "no answer within %d ms", FETCH_TIMEOUT_MS);
                goto out;
            }
            continue;
        }
        if (r < 0) {
            snprintf(why, whylen, "reading the answer failed");
            goto out;
        }
        have += (size_t)r;
        h1_response_init(&resp, slots, 64);
        hl = h1_parse_response(in, have, H1_POST, NULL, &resp);
        if (hl < 0 || (hl == 0 && (r == 0 || have == cap))) {
            snprintf(why, whylen, "not an HTTP answer");
            goto out;
        }
        if (hl == 0)
            continue;
        if (resp.status != 200) {
            snprintf(why, whylen, "the responder answered %d", resp.status);
            goto out;
        }
        if (resp.body == H1_BODY_LENGTH && resp.content_length > TLS_OCSP_MAX_BYTES) {
            snprintf(why, whylen, "the answer is larger than 64k");
            goto out;
        }
        if ((resp.body == H1_BODY_LENGTH && have - (size_t)hl >= resp.content_length) ||
            (resp.body == H1_BODY_CLOSE && r == 0)) {
            size_t blen = resp.body == H1_BODY_LENGTH ? resp.content_length : have - (size_t)hl;
            if (!blen || blen > TLS_OCSP_MAX_BYTES || !(*body = malloc(blen))) {
                snprintf(why, whylen, blen ? "out of memory" : "an empty answer");
                goto out;
            }
            memcpy(*body, in + hl, blen);
            *body_len = (long)blen;
            rc = 0;
            goto out;
        }
        if (resp.body != H1_BODY_LENGTH && resp.body != H1_BODY_CLOSE) {
            snprintf(why, whylen, resp.body == H1_BODY_NONE ? "an empty answer"
                                  : "an answer framed other than by Content-Length or close");
            goto out;
        }
        if (r == 0 || have == cap) {
            snprintf(why, whylen, "the answer was cut short");
            goto out;
        }
    }
out:
    if (fd >= 0)
        close(fd);
    free(in);
    OPENSSL_free(host);
    OPENSSL_free(port);
    OPENSSL_free(path);
    return rc;
}

/* ---- one fetch ---- */

/* Ask the responder about o's certificate and check the answer. Returns
 * the seconds until the next fetch. */
static uint64_t fetch(struct tls_ocsp *o)
{
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, o->leaf, o->issuer);
    struct tls_ocsp_said said;
    unsigned char *der = NULL, *body = NULL;
    char why[256] = "out of memory";
    int len;
    long blen = 0;
    uint64_t next = 0;

    if (!req || !id || !OCSP_request_add0_id(req, id))
        goto failed;
    id = NULL;                          /* the request's now */
    if ((len = i2d_OCSP_REQUEST(req, &der)) <= 0)
        goto failed;
    if (http_post(o->url, der, len, &body, &blen, why, sizeof(why)) < 0)
        goto failed;
    switch (tls_ocsp_read(body, blen, o->leaf, o->issuer, true, &said)) {
    case TLS_OCSP_READ_OK:
        break;
    case TLS_OCSP_READ_NOT_OCSP:
        snprintf(why, sizeof(why), "the answer is not an OCSP response");
        goto failed;
    case TLS_OCSP_READ_NO_ANSWER:
        snprintf(why, sizeof(why), "the responder did not answer (%s)", said.answer);
        goto failed;
    case TLS_OCSP_READ_BAD_SIGNATURE:
        snprintf(why, sizeof(why), "the response's signature does not verify against the issuer");
        goto failed;
    case TLS_OCSP_READ_NOT_ABOUT:
        snprintf(why, sizeof(why), "the response is not about this certificate");
        goto failed;
    }
    if (!said.current) {
        snprintf(why, sizeof(why), "the response is out of date");
        goto failed;
    }
    if (said.status != V_OCSP_CERTSTATUS_GOOD) {
        /* Never staple a "revoked" or "unknown": drop what was stapled. */
        log_error("event=tls_ocsp_not_good cert=%s status=%s", o->cert_path,
                  OCSP_cert_status_str(said.status));
        tls_ocsp_set(o, NULL, 0, (time_t)-1);
        next = REFRESH_MIN_S;
        goto out;
    }
    {
        time_t nu = said.next_update, tu = said.this_update;
        next = nu != (time_t)-1 && tu != (time_t)-1 && nu > tu ? (uint64_t)(nu - tu) / 2
                                                               : REFRESH_MAX_S;
        if (next > REFRESH_MAX_S)
            next = REFRESH_MAX_S;
        if (next < REFRESH_MIN_S)
            next = REFRESH_MIN_S;
        tls_ocsp_set(o, body, blen, nu);
        body = NULL;
        o->retry_s = 0;
        log_info("event=tls_ocsp_fetched cert=%s bytes=%ld refresh_in_s=%llu", o->cert_path,
                 blen, (unsigned long long)next);
    }
    goto out;
failed:
    o->retry_s = o->retry_s ? (o->retry_s * 2 > RETRY_MAX_S ? RETRY_MAX_S : o->retry_s * 2)
                            : RETRY_FIRST_S;
    next = o->retry_s;
    log_warn("event=tls_ocsp_fetch_failed cert=%s url=%s why=\"%s\" retry_in_s=%llu",
             o->cert_path, o->url, why, (unsigned long long)next);
out:
    OPENSSL_free(der);
    free(body);
    OCSP_REQUEST_free(req);
    OCSP_CERTID_free(id);
    return next;
}

/* ---- the thread ---- */

static void *fetcher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&fetcher.lock);
    while (!fetcher.stop) {
        struct tls_ocsp *due = NULL;
        uint64_t now = now_s(), soonest = UINT64_MAX;

        for (struct tls_ocsp *o = fetcher.list; o; o = o->next_auto) {
            if (o->due_s <= now && !due)
                due = o;
            if (o->due_s < soonest)
                soonest = o->due_s;
        }
        if (due) {
            uint64_t in;
            /* The network part runs unlocked: stop waits at most one
             * fetch (FETCH_TIMEOUT_MS), and entries are not freed while
             * the thread runs. */
            pthread_mutex_unlock(&fetcher.lock);
            in = fetch(due);
            pthread_mutex_lock(&fetcher.lock);
            due->due_s = now_s() + in;
            continue;
        }
        if (soonest == UINT64_MAX) {
            pthread_cond_wait(&fetcher.wake, &fetcher.lock);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (time_t)(soonest - now);
            pthread_cond_timedwait(&fetcher.wake, &fetcher.lock, &ts);
        }
    }
    pthread_mutex_unlock(&fetcher.lock);
    return NULL;
}

void tls_ocsp_auto_register(struct tls_ocsp *o)
{
    pthread_mutex_lock(&fetcher.lock);
    o->due_s = 0;                       /* at once */
    o->next_auto = fetcher.list;
    fetcher.list = o;
    pthread_cond_signal(&fetcher.wake);
    pthread_mutex_unlock(&fetcher.lock);
}

void tls_ocsp_auto_unregister(struct tls_ocsp *o)
{
    pthread_mutex_lock(&fetcher.lock);
    for (struct tls_ocsp **pp = &fetcher.list; *pp; pp = &(*pp)->next_auto)
        if (*pp == o) {
            *pp = o->next_auto;
            break;
        }
    pthread_mutex_unlock(&fetcher.lock);
}

int tls_ocsp_fetcher_start(void)
{
    int err = 0;

    pthread_mutex_lock(&fetcher.lock);
    if (fetcher.list && !fetcher.running) {
        fetcher.stop = false;
        if ((err = pthread_create(&fetcher.thread, NULL, fetcher_main, NULL)) == 0)
            fetcher.running = true;
    }
    pthread_mutex_unlock(&fetcher.lock);
    return -err;
}

void tls_ocsp_fetcher_stop(void)
{
    bool join;

    pthread_mutex_lock(&fetcher.lock);
    join = fetcher.running;
    fetcher.stop = true;
    fetcher.running = false;
    pthread_cond_signal(&fetcher.wake);
    pthread_mutex_unlock(&fetcher.lock);
    if (join)
        pthread_join(fetcher.thread, NULL);
}
