/* Intrusive doubly linked lists: any struct with `prev` and `next` pointers
 * to its own type, and a head pointer (NULL when empty). Connections,
 * sessions and idle upstream connections all live on such lists, so that
 * removing one from the middle is O(1) without a separate node allocation. */
#ifndef SLUICE_CORE_LIST_H
#define SLUICE_CORE_LIST_H

#include <stddef.h>

/* Put e at the front of the list whose head is the lvalue `head`. */
#define DLIST_PUSH(head, e)                                                   \
    do {                                                                      \
        (e)->prev = NULL;                                                     \
        (e)->next = (head);                                                   \
        if (head)                                                             \
            (head)->prev = (e);                                               \
        (head) = (e);                                                         \
    } while (0)

/* Take e off the list whose head is `head`; e's links are cleared. */
#define DLIST_REMOVE(head, e)                                                 \
    do {                                                                      \
        if ((e)->prev)                                                        \
            (e)->prev->next = (e)->next;                                      \
        else                                                                  \
            (head) = (e)->next;                                               \
        if ((e)->next)                                                        \
            (e)->next->prev = (e)->prev;                                      \
        (e)->prev = (e)->next = NULL;                                         \
    } while (0)

#endif
