/* Fetching JSON Web Key Sets (`jwks_url`), as the OCSP fetcher does for
 * stapling (proto/tls_ocsp_fetch.c): one helper thread, off the event
 * loops, walks the sources of the config's auth blocks and GETs each one's
 * URL over verified HTTPS (proto/tls_get.c), bounded by
 * JWKS_FETCH_TIMEOUT_MS and JWKS_URL_MAX_BYTES.
 *
 * The first fetch is at start; sluice serves meanwhile, and tokens are
 * refused (401, why="no key set") until a set arrives. A good set is
 * fetched again after `jwks_refresh`; a failed fetch keeps the last good
 * set and is tried again sooner (5 s, doubling, up to a minute, never later
 * than the refresh). A token whose kid the set lacks asks for a fetch now
 * (jwks_source_ask, at most every 30 s per source): that is how a
 * provider's new key shows up before the next refresh.
 *
 * The thread owns the list; each source's set is swapped under the
 * source's lock (jwks.c). Sources are freed with the config, after
 * jwks_fetcher_stop. */
#include "route/jwks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "core/clock.h"
#include "core/log.h"
#include "proto/tls_jwks.h"

#define RETRY_FIRST_MS 5000
#define RETRY_MAX_MS 60000
#define WARNINGS_KEPT 8

static struct {
    pthread_mutex_t lock;        /* the list, stop, and each source's schedule */
    pthread_cond_t wake;
    pthread_cond_t fetched;      /* a fetch ended (jwks_fetcher_wait_first) */
    struct jwks_source *list;
    bool running, stop;
    pthread_t thread;
} fetcher = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL,
             false, false, 0};

static int64_t now_ms(void)
{
    return (int64_t)(clock_mono_us() / 1000u);
}

/* s for a log field between double quotes: quotes, backslashes and
 * anything but printable ASCII become '?'. */
static const char *quotable(char *buf, size_t size, const char *s)
{
    size_t i = 0;

    for (; s[i] && i + 1 < size; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\' ? s[i] : '\'';
    buf[i] = '\0';
    return buf;
}

/* Keys a fetched set skipped: logged when the set is new, not at every
 * refresh of the same set. */
struct skipped {
    size_t n;
    char text[WARNINGS_KEPT][200];
};

static void note_skipped(void *ctx, int line, int col, const char *text)
{
    struct skipped *sk = ctx;

    (void)line;
    (void)col;
    if (sk->n < WARNINGS_KEPT)
        snprintf(sk->text[sk->n], sizeof(sk->text[0]), "%s", text);
    sk->n++;
}

/* One fetch for s; the ms until its next. */
static uint64_t fetch(struct jwks_source *s, const char *reason)
{
    struct skipped sk = {0};
    struct jwks_error err;
    struct jwks_set *set;
    char why[400], shown[400], *body = NULL;
    size_t len = 0, nkeys;
    uint64_t next;

    if (tls_get(s->client, s->host, s->port, s->path, JWKS_URL_MAX_BYTES, JWKS_FETCH_TIMEOUT_MS,
                &body, &len, why, sizeof(why)) < 0)
        goto failed;
    set = jwks_parse(body, len, false, note_skipped, &sk, &err);
    free(body);
    if (!set) {
        snprintf(why, sizeof(why), "not a usable key set: line %d col %d: %s", err.line, err.col,
                 err.text);
        goto failed;
    }
    nkeys = set->nkeys;
    s->retry_ms = 0;
    next = s->refresh_ms;
    if (jwks_source_publish(s, set)) {
        for (size_t i = 0; i < sk.n && i < WARNINGS_KEPT; i++)
            log_warn("event=jwks_key_skipped url=%s why=\"%s\"", s->url,
                     quotable(shown, sizeof(shown), sk.text[i]));
        log_info("event=jwks_fetched url=%s keys=%zu skipped=%zu changed=true reason=%s "
                 "refresh_in_s=%llu", s->url, nkeys, sk.n, reason,
                 (unsigned long long)(next / 1000));
    } else {
        log_info("event=jwks_fetched url=%s keys=%zu skipped=%zu changed=false reason=%s "
                 "refresh_in_s=%llu", s->url, nkeys, sk.n, reason,
                 (unsigned long long)(next / 1000));
    }
    return next;
failed:
    s->retry_ms = s->retry_ms ? (s->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : s->retry_ms * 2)
                              : RETRY_FIRST_MS;
    next = s->retry_ms < s->refresh_ms ? s->retry_ms : s->refresh_ms;
    log_warn("event=jwks_fetch_failed url=%s why=\"%s\" keeping=%s reason=%s retry_in_ms=%llu",
             s->url, quotable(shown, sizeof(shown), why), s->set ? "last_good_set" : "none",
             reason, (unsigned long long)next);
    return next;
}

static void *fetcher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&fetcher.lock);
    while (!fetcher.stop) {
        struct jwks_source *due = NULL;
        int64_t now = now_ms(), soonest = INT64_MAX;

        for (struct jwks_source *s = fetcher.list; s; s = s->next) {
            if (s->due_ms <= now && !due)
                due = s;
            if (s->due_ms < soonest)
                soonest = s->due_ms;
        }
        if (due) {
            /* The sources' reasons: none fetched yet, asked for by a
             * token's kid, a retry, or the refresh. */
            const char *reason = due->due_ms == INT64_MIN ? "start"
                                 : due->asked ? "unknown_kid"
                                 : due->retry_ms ? "retry" : "refresh";
            uint64_t in;

            /* The network part runs unlocked: stop waits for at most one
             * fetch, and sources are not freed while the thread runs. */
            due->asked = false;
            due->due_ms = INT64_MAX;
            pthread_mutex_unlock(&fetcher.lock);
            in = fetch(due, reason);
            pthread_mutex_lock(&fetcher.lock);
            due->tried = true;
            pthread_cond_broadcast(&fetcher.fetched);
            /* Asked for again meanwhile (due_ms moved): keep that. */
            if (due->due_ms == INT64_MAX)
                due->due_ms = now_ms() + (int64_t)in;
            continue;
        }
        if (soonest == INT64_MAX) {
            pthread_cond_wait(&fetcher.wake, &fetcher.lock);
        } else {
            struct timespec ts;
            int64_t wait = soonest - now;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (time_t)(wait / 1000);
            ts.tv_nsec += (long)(wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&fetcher.wake, &fetcher.lock, &ts);
        }
    }
    pthread_mutex_unlock(&fetcher.lock);
    return NULL;
}

void jwks_fetcher_wake(struct jwks_source *s)
{
    pthread_mutex_lock(&fetcher.lock);
    /* A fetch running now may have begun before the new keys were
     * published: another follows it. */
    if (s->due_ms != INT64_MIN) {
        s->due_ms = 0;
        s->asked = true;
    }
    pthread_cond_signal(&fetcher.wake);
    pthread_mutex_unlock(&fetcher.lock);
}

static void add(struct jwks_source *s)
{
    if (!s || !s->url)
        return;
    for (struct jwks_source *o = fetcher.list; o; o = o->next)
        if (o == s)
            return;
    s->due_ms = INT64_MIN;               /* at once */
    s->retry_ms = 0;
    s->asked = s->tried = false;
    s->next = fetcher.list;
    fetcher.list = s;
}

int jwks_fetcher_start(const struct config *cfg)
{
    int err = 0;

    pthread_mutex_lock(&fetcher.lock);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct conf_listener *l = &cfg->listeners[i];

        if (l->auth)
            add(l->auth->jwks);
        for (size_t r = 0; r < l->nroutes; r++)
            if (l->routes[r].auth)
                add(l->routes[r].auth->jwks);
    }
    if (fetcher.list && !fetcher.running) {
        fetcher.stop = false;
        if ((err = pthread_create(&fetcher.thread, NULL, fetcher_main, NULL)) == 0)
            fetcher.running = true;
    }
    pthread_mutex_unlock(&fetcher.lock);
    return -err;
}

void jwks_fetcher_wait_first(uint64_t timeout_ms)
{
    struct timespec until;
    bool all;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(timeout_ms / 1000);
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&fetcher.lock);
    for (;;) {
        all = true;
        for (struct jwks_source *s = fetcher.list; s; s = s->next)
            all &= s->tried;
        if (all || !fetcher.running ||
            pthread_cond_timedwait(&fetcher.fetched, &fetcher.lock, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&fetcher.lock);
}

void jwks_fetcher_stop(void)
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
    pthread_mutex_lock(&fetcher.lock);
    fetcher.list = NULL;
    pthread_mutex_unlock(&fetcher.lock);
}
