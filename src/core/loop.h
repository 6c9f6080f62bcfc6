/* The event loop: one per thread, epoll underneath.
 *
 * Sockets on the data path are registered once, edge-triggered, for input
 * and output; their owners keep "readable"/"writable" flags and clear them
 * only on EAGAIN. That costs no epoll_ctl per transfer.
 *
 * Tasks are callbacks queued to run at the end of the current iteration,
 * after every event of the batch has been dispatched. They serve two needs:
 * resuming work that stopped early to stay fair to other connections, and
 * freeing an object outside its own callbacks (an event later in the same
 * batch may still point at it). */
#ifndef SLUICE_CORE_LOOP_H
#define SLUICE_CORE_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include <stddef.h>

#include "core/timer.h"

struct io;
typedef void (*io_cb)(struct io *io, uint32_t events);

/* Embedded in the object owning the descriptor. */
struct io {
    int fd;
    io_cb cb;
    bool watched;        /* in the epoll set: loop_add succeeded, no loop_del since */
};

struct loop_task;
typedef void (*loop_task_cb)(struct loop_task *t);

/* Embedded in its owner; queued at most once at a time. */
struct loop_task {
    struct loop_task *next;
    loop_task_cb cb;
    bool queued;
};

/* Owner: the thread that runs it. */
struct loop {
    int epfd;
    int wake_fd;                 /* eventfd: other threads call loop_wake() */
    struct io wake_io;
    void (*on_wake)(struct loop *l);  /* runs on this loop's thread */
    void *data;                  /* the owner (a worker, the main thread) */
    bool stop;
    struct timer_heap timers;
    /* The earliest timer's deadline is kept in a timerfd, so epoll_wait can
     * sleep without a timeout: an epoll timeout arms and cancels a kernel
     * timer on every sleep, which in a virtual machine means programming
     * the timer hardware twice per wake-up; the timerfd is re-armed only
     * when the earliest deadline moves earlier. */
    int timer_fd;
    struct io timer_io;
    uint64_t timer_armed_ms;     /* deadline the timerfd is set to; 0 = none */
    struct loop_task *tasks;     /* FIFO of queued tasks */
    struct loop_task **tasks_tail;
};

int loop_init(struct loop *l);
void loop_destroy(struct loop *l);

/* Register io->fd for events (EPOLLIN, EPOLLOUT, EPOLLET, ...). */
int loop_add(struct loop *l, struct io *io, uint32_t events);
int loop_mod(struct loop *l, struct io *io, uint32_t events);
/* Take io->fd out of the epoll set; nothing to do when it is not in it. */
void loop_del(struct loop *l, struct io *io);

static inline void loop_task_init(struct loop_task *t, loop_task_cb cb)
{
    t->next = NULL;
    t->cb = cb;
    t->queued = false;
}

/* Queue t to run at the end of this iteration (no-op if already queued). */
void loop_task_queue(struct loop *l, struct loop_task *t);

/* Run until loop_stop(). */
void loop_run(struct loop *l);

/* Run one iteration, waiting at most max_wait_ms for events. */
void loop_run_once(struct loop *l, int max_wait_ms);

void loop_stop(struct loop *l);

/* Run the queued tasks now (after the loop stopped, to free what closed). */
void loop_run_tasks(struct loop *l);

/* From any thread: make l call its on_wake callback soon. */
void loop_wake(struct loop *l);

#endif
