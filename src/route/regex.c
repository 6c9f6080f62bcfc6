/* path_regex: PCRE2, JIT-compiled, unanchored unless the pattern anchors.
 *
 * Matching needs a pcre2_match_data block. Making one per match costs an
 * allocation, so each thread keeps one (ovector of one pair: we only ask
 * whether there is a match), made on its first regex match. A pthread key
 * frees it when the thread exits; route_thread_done() frees it earlier. */
#include <pthread.h>
#include <stdio.h>

#include "route/internal.h"

#define REGEX_OPTIONS 0u

static __thread pcre2_match_data *thread_md;
static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static bool md_key_ok;

static void md_destroy(void *md)
{
    pcre2_match_data_free(md);
}

static void md_key_init(void)
{
    md_key_ok = pthread_key_create(&md_key, md_destroy) == 0;
}

static pcre2_match_data *match_data(void)
{
    if (!thread_md) {
        pthread_once(&md_once, md_key_init);
        thread_md = pcre2_match_data_create(1, NULL);
        if (thread_md && md_key_ok)
            pthread_setspecific(md_key, thread_md);
    }
    return thread_md;
}

void route_thread_done(void)
{
    if (!thread_md)
        return;
    if (md_key_ok)
        pthread_setspecific(md_key, NULL);
    pcre2_match_data_free(thread_md);
    thread_md = NULL;
}

pcre2_code *route_regex_compile(const char *pattern)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, REGEX_OPTIONS,
                                   &err, &off, NULL);
    if (re)
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  /* the interpreter if not */
    return re;
}

bool route_regex_match(const pcre2_code *re, struct h1_slice subject)
{
    pcre2_match_data *md = match_data();
    if (!md)
        return false;
    PCRE2_SPTR p = subject.p ? (PCRE2_SPTR)subject.p : (PCRE2_SPTR)"";
    /* 0 would mean the ovector was too small: still a match. Errors (a
     * match or JIT stack limit hit) count as no match. */
    return pcre2_match(re, p, subject.len, 0, 0, md, NULL) >= 0;
}

int route_regex_check(const char *pattern, char *msg, size_t msglen, size_t *offset)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, REGEX_OPTIONS,
                                   &err, &off, NULL);
    if (re) {
        pcre2_code_free(re);
        return 0;
    }
    if (msg && msglen) {
        if (pcre2_get_error_message(err, (PCRE2_UCHAR *)msg, msglen) < 0)
            snprintf(msg, msglen, "PCRE2 error %d", err);
    }
    if (offset)
        *offset = off;
    return -1;
}
