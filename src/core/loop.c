#include "core/loop.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
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

static void timer_fd_cb(struct io *io, uint32_t events)
{
    struct loop *l = (struct loop *)((char *)io - offsetof(struct loop, timer_io));
    uint64_t v;

    /* Fired (the timers run after this batch): clear it; the next
     * iteration arms it for whatever is earliest then. */
    while (read(io->fd, &v, sizeof(v)) > 0) {
    }
    l->timer_armed_ms = 0;
}

/* Make the timerfd fire no later than deadline_ms (monotonic ms). A later
 * deadline than the armed one is left alone: the early wake-up finds
 * nothing due and re-arms, which costs less than re-arming on every change. */
static void timer_fd_arm(struct loop *l, uint64_t deadline_ms)
{
    struct itimerspec its = {0};

    if (l->timer_armed_ms && l->timer_armed_ms <= deadline_ms)
        return;
    its.it_value.tv_sec = (time_t)(deadline_ms / 1000u);
    its.it_value.tv_nsec = (long)(deadline_ms % 1000u) * 1000000L;
    if (timerfd_settime(l->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        l->timer_armed_ms = deadline_ms;
}

int loop_init(struct loop *l)
{
    memset(l, 0, sizeof(*l));
    l->wake_fd = l->timer_fd = -1;   /* nothing for loop_destroy to close yet */
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
    l->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (l->timer_fd < 0) {
        int err = -errno;
        close(l->wake_fd);
        close(l->epfd);
        return err;
    }
    l->timer_io.fd = l->timer_fd;
    l->timer_io.cb = timer_fd_cb;
    clock_update();
    if (loop_add(l, &l->timer_io, EPOLLIN) < 0)
        return -errno;
    return loop_add(l, &l->wake_io, EPOLLIN);
}

void loop_destroy(struct loop *l)
{
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    if (l->timer_fd >= 0)
        close(l->timer_fd);
    l->timer_fd = -1;
    if (l->epfd >= 0)
        close(l->epfd);
    l->wake_fd = l->epfd = -1;
    timer_heap_destroy(&l->timers);
}

int loop_add(struct loop *l, struct io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};

    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
        return -errno;
    io->watched = true;
    return 0;
}

int loop_mod(struct loop *l, struct io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};

    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0 ? -errno : 0;
}

void loop_del(struct loop *l, struct io *io)
{
    if (io->fd >= 0 && io->watched)
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->watched = false;
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
        if (next <= now)
            timeout = 0;                  /* due already */
        else if (timeout < 0 || next - now >= (uint64_t)timeout)
            timer_fd_arm(l, next);        /* the timerfd wakes us for it */
        else
            timeout = (int)(next - now);  /* the caller's bound is later */
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
