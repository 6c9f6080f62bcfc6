/* Peers: sluice instances that count shared rate limits together
 * (`rate_limit.shared: true` with a top-level `peers` block).
 *
 * Each instance limits on its own, at once, as without peers; and every
 * interval (50 ms) it tells its peers which keys of which shared limits it
 * let through, and how many times. A peer counts those requests as if they
 * had come to it (the key's GCRA timestamp moves on by count intervals), so
 * the instances together converge on the configured rate instead of each
 * allowing it. The price is the interval: within one, each instance may let
 * through what the others already used.
 *
 * Messages are UDP datagrams signed with HMAC-SHA256 under the peers'
 * shared key, stamped with the sender's wall clock (older than 10 s: dropped)
 * and a per-sender sequence number (not above the last one seen: dropped), so
 * nobody without the key can use up a client's limit, and a replayed message
 * counts nothing.
 *
 * Workers note what they let through in their own ring (peers_note, no lock,
 * no system call); the main thread drains the rings, adds up, sends and
 * receives. A full ring drops notes (counted): the limit then errs towards
 * letting requests through, never towards refusing them. */
#ifndef SLUICE_PEERS_H
#define SLUICE_PEERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/loop.h"
#include "core/runtime.h"

#define PEERS_RING 8192     /* notes a worker holds between two ticks */

/* One worker's notes to the main thread: single producer (the worker),
 * single consumer (the main thread). Owner: the worker. */
struct peers_outbox {
    _Atomic uint32_t head;           /* written by the worker */
    _Atomic uint32_t tail;           /* written by the main thread */
    _Atomic uint64_t dropped;        /* notes lost to a full ring */
    struct peers_note {
        uint32_t limiter;            /* conf_rate_limit.index */
        uint64_t hash;
    } ring[PEERS_RING];
};

/* A request (or tcp connection) of key `hash` that the shared limit rl let
 * through. Called by workers; a no-op for limits that are not shared. */
static inline void peers_note(struct peers_outbox *o, const struct conf_rate_limit *rl,
                              uint64_t hash)
{
    uint32_t head, tail;

    if (!rl->shared || !o)
        return;
    head = atomic_load_explicit(&o->head, memory_order_relaxed);
    tail = atomic_load_explicit(&o->tail, memory_order_acquire);
    if (head - tail >= PEERS_RING) {
        atomic_fetch_add_explicit(&o->dropped, 1, memory_order_relaxed);
        return;
    }
    o->ring[head % PEERS_RING] = (struct peers_note){ .limiter = rl->index, .hash = hash };
    atomic_store_explicit(&o->head, head + 1, memory_order_release);
}

struct worker;
struct peers_sender;
struct peers_limit;

/* Owner: main.c. Counters are read by the admin server (same thread). */
struct peers {
    struct loop *loop;
    struct runtime *rt;
    const struct conf_peers *conf;
    struct worker *workers;
    uint32_t nworkers;
    struct io io;                    /* the UDP socket on peers.listen */
    struct timer tick;
    uint64_t self_id;                /* random per process: our messages come back to nobody */
    uint64_t seq;
    struct peers_sender *senders;    /* the last sequence number seen per sender */
    struct peers_limit *limits;      /* the shared limits, by share_id */
    size_t nlimits;
    struct peers_note *scratch;      /* one tick's notes, sorted and added up */
    size_t scratch_cap;
    uint64_t sent, received, rejected, unknown, send_errors;
};

/* With cfg->peers: bind the socket (-errno if it cannot be bound) and start
 * the tick. Without: nothing (0). */
int peers_start(struct peers *p, struct loop *loop, struct runtime *rt, struct worker *workers,
                uint32_t nworkers);
void peers_stop(struct peers *p);
/* peers_start without the socket and the tick (fuzz/fuzz_peers.c). */
int peers_init(struct peers *p, const struct conf_peers *c, struct runtime *rt,
               struct worker *workers, uint32_t nworkers);
/* One datagram from the network: checked, and counted if it passes.
 * Whether it passed. */
bool peers_receive(struct peers *p, const uint8_t *m, size_t len);
/* Notes dropped by every worker's full ring. */
uint64_t peers_dropped(const struct peers *p);

#endif
