#include "core/loop.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/clock.h"

#define LOOP_MAX_EVENTS 256

static void wake_cb(struct io *io, uint32_t events)
{
    struct loop *l = (struct loop *)((char *)io - offsetof(struct loop, wake_io));
    uint64_t v;

    while (read(io->fd, &v, sizeof(v)) > 0) {
    }
    if (l->on_wake)
        l->on_wake(l);
}

int loop_init(struct loop *l)
{
    memset(l, 0, sizeof(*l));
    l->tasks_tail = &l->tasks;
    timer_heap_init(&l->timers);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0)
        return -errno;
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wake_fd < 0) {
        int err = -errno;
        close(l->epfd);
        return err;
    }
    l->wake_io.fd = l->wake_fd;
    l->wake_io.cb = wake_cb;
    clock_update();
    return loop_add(l, &l->wake_io, EPOLLIN);
}

void loop_destroy(struct loop *l)
{
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    if (l->epfd >= 0)
        close(l->epfd);
    l->wake_fd = l->epfd = -1;
    timer_heap_destroy(&l->timers);
}

int loop_add(struct loop *l, struct io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};

    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0 ? -errno : 0;
}

int loop_mod(struct loop *l, struct io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};

    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0 ? -errno : 0;
}

void loop_del(struct loop *l, struct io *io)
{
    if (io->fd >= 0)
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

void loop_task_queue(struct loop *l, struct loop_task *t)
{
    if (t->queued)
        return;
    t->queued = true;
    t->next = NULL;
    *l->tasks_tail = t;
    l->tasks_tail = &t->next;
}

/* Run the tasks queued so far; tasks they queue run in the next round, so a
 * task that keeps re-queuing itself cannot starve the poller. */
void loop_run_tasks(struct loop *l)
{
    struct loop_task *t = l->tasks;

    l->tasks = NULL;
    l->tasks_tail = &l->tasks;
    while (t) {
        struct loop_task *next = t->next;
        t->queued = false;
        t->next = NULL;
        t->cb(t);
        t = next;
    }
}

void loop_run_once(struct loop *l, int max_wait_ms)
{
    struct epoll_event evs[LOOP_MAX_EVENTS];
    uint64_t now = clock_now_ms(), next;
    int timeout = max_wait_ms, n;

    next = timer_next(&l->timers);
    if (next != UINT64_MAX) {
        uint64_t wait = next > now ? next - now : 0;
        if (timeout < 0 || wait < (uint64_t)timeout)
            timeout = (int)wait;
    }
    if (l->tasks)
        timeout = 0;
    n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, timeout);
    clock_update();
    for (int i = 0; i < n; i++) {
        struct io *io = evs[i].data.ptr;
        io->cb(io, evs[i].events);
    }
    timer_run(&l->timers, clock_now_ms());
    loop_run_tasks(l);
}

void loop_run(struct loop *l)
{
    while (!l->stop)
        loop_run_once(l, -1);
}

void loop_stop(struct loop *l)
{
    l->stop = true;
}

void loop_wake(struct loop *l)
{
    uint64_t one = 1;

    if (write(l->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is already non-zero, a wake-up is pending. */
    }
}
