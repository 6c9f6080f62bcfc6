/* Helper threads for blocking work (offload.h has the contract). One queue
 * for all workers under one mutex: jobs are few and slow (a bcrypt hash is
 * milliseconds), so the lock is never what limits them. */
#include "core/offload.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "core/worker.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct offload_job *queue_head, **queue_tail = &queue_head;
static unsigned queued, nthreads;
static bool stopping;
static pthread_t *threads;

/* Hand a finished (or cancelled) job to its worker and wake it. */
static void finish(struct offload_job *j)
{
    struct worker *w = j->w;

    pthread_mutex_lock(&w->offload_lock);
    j->next = w->offload_done;
    w->offload_done = j;
    pthread_mutex_unlock(&w->offload_lock);
    loop_wake(&w->loop);
}

static void *helper(void *arg)
{
    (void)arg;
    for (;;) {
        struct offload_job *j;

        pthread_mutex_lock(&lock);
        while (!queue_head && !stopping)
            pthread_cond_wait(&wake, &lock);
        if (!(j = queue_head)) {
            pthread_mutex_unlock(&lock);
            return NULL;                 /* stopping, and nothing left */
        }
        queue_head = j->next;
        if (!queue_head)
            queue_tail = &queue_head;
        queued--;
        j->cancelled = stopping;         /* queued jobs are not run at a stop */
        pthread_mutex_unlock(&lock);
        if (!j->cancelled)
            j->run(j);
        finish(j);
    }
}

int offload_start(unsigned n)
{
    threads = calloc(n ? n : 1, sizeof(*threads));
    if (!threads)
        return -ENOMEM;
    for (nthreads = 0; nthreads < n; nthreads++) {
        int err = pthread_create(&threads[nthreads], NULL, helper, NULL);
        if (err)
            return -err;
    }
    return 0;
}

void offload_stop(struct worker *workers, unsigned nworkers)
{
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    threads = NULL;
    nthreads = 0;
    for (unsigned i = 0; i < nworkers; i++)
        offload_complete(&workers[i]);
}

bool offload_submit(struct worker *w, struct offload_job *j)
{
    bool ok;

    j->w = w;
    j->next = NULL;
    j->cancelled = false;
    pthread_mutex_lock(&lock);
    ok = nthreads && !stopping && queued < OFFLOAD_MAX_QUEUED;
    if (ok) {
        *queue_tail = j;
        queue_tail = &j->next;
        queued++;
        pthread_cond_signal(&wake);
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

void offload_complete(struct worker *w)
{
    struct offload_job *j;

    pthread_mutex_lock(&w->offload_lock);
    j = w->offload_done;
    w->offload_done = NULL;
    pthread_mutex_unlock(&w->offload_lock);
    while (j) {
        struct offload_job *next = j->next;
        j->done(j);
        j = next;
    }
}
