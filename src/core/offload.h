/* Offload: run slow, blocking work (password hashing) on helper threads,
 * so that a worker's event loop never waits for it, and hand the result
 * back to the worker that asked.
 *
 * A job's run() executes on a helper thread and must touch nothing but the
 * job; done() then executes on the submitting worker's thread (from its
 * wake-up), or on the main thread at shutdown with job->cancelled set. The
 * queue is bounded: a worker that cannot submit answers "busy" at once
 * rather than queue without end. */
#ifndef SLUICE_CORE_OFFLOAD_H
#define SLUICE_CORE_OFFLOAD_H

#include <stdbool.h>

struct worker;

/* Owner: whoever submitted it, until done() (which frees it or keeps it). */
struct offload_job {
    struct offload_job *next;
    struct worker *w;                       /* set by offload_submit */
    void (*run)(struct offload_job *j);     /* helper thread */
    void (*done)(struct offload_job *j);    /* the worker's thread */
    bool cancelled;                         /* never ran: sluice is stopping */
};

#define OFFLOAD_MAX_QUEUED 4096
#define OFFLOAD_THREADS 2         /* enough to keep hashing off the loops; more buys no safety */

/* Start n helper threads (main thread, before the workers). 0 or -errno. */
int offload_start(unsigned n);
/* Stop them after the workers ended: queued jobs are cancelled; every
 * job's done() runs on this thread (main). */
void offload_stop(struct worker *workers, unsigned nworkers);

/* Queue j for a helper thread on behalf of worker w. false when the queue
 * is full or no helper runs (then j is untouched). */
bool offload_submit(struct worker *w, struct offload_job *j);

/* Run done() for w's finished jobs (its wake-up calls this). */
void offload_complete(struct worker *w);

#endif
