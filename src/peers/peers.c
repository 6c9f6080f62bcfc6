/* Peers: the messages and their checks (see peers.h). */
#include "peers/peers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/worker.h"
#include "route/route.h"

/* A message: "SLP1", sender id, sequence number, wall-clock ms, the entry
 * count, entries of (share_id, key hash, count), then HMAC-SHA256 of all
 * that. Big-endian. 1,400 bytes at most: one unfragmented datagram on any
 * Ethernet path, tunnels included. */
#define MSG_MAGIC "SLP1"
#define MSG_HEAD 30
#define MSG_ENTRY 18
#define MSG_MAC 32
#define MSG_MAX 1400
#define MSG_ENTRIES ((MSG_MAX - MSG_HEAD - MSG_MAC) / MSG_ENTRY)
#define MSG_MAX_AGE_MS 10000
#define SENDERS 64

struct peers_sender {
    uint64_t id;
    uint64_t last_seq;
    uint64_t seen_ms;                /* monotonic; 0 = free slot */
};

struct peers_limit {
    uint64_t share_id;
    struct rate_limiter *rl;
};

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void mac(const struct peers *p, const uint8_t *msg, size_t len, uint8_t out[MSG_MAC])
{
    unsigned int n = MSG_MAC;

    HMAC(EVP_sha256(), p->conf->secret, (int)p->conf->secret_len, msg, len, out, &n);
}

/* ---- receiving ---- */

static struct rate_limiter *limit_for(const struct peers *p, uint64_t share_id)
{
    size_t lo = 0, hi = p->nlimits;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->limits[mid].share_id == share_id)
            return p->limits[mid].rl;
        if (p->limits[mid].share_id < share_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* A sender's sequence numbers only go up: a message not above the last one
 * seen is a replay (or arrived out of order, and counts nothing). */
static bool fresh(struct peers *p, uint64_t id, uint64_t seq)
{
    struct peers_sender *slot = NULL, *oldest = &p->senders[0];
    uint64_t now = clock_now_ms() | 1;

    for (int i = 0; i < SENDERS; i++) {
        struct peers_sender *s = &p->senders[i];
        if (s->seen_ms && s->id == id) {
            slot = s;
            break;
        }
        if (s->seen_ms < oldest->seen_ms)
            oldest = s;
    }
    if (slot && seq <= slot->last_seq)
        return false;
    if (!slot) {
        slot = oldest;         /* a sender not heard from for longest gives way */
        slot->id = id;
    }
    slot->last_seq = seq;
    slot->seen_ms = now;
    return true;
}

static bool accept_message(struct peers *p, const uint8_t *m, size_t len)
{
    uint8_t want[MSG_MAC];
    uint64_t sent_ms, now_ms = clock_wall_us() / 1000;
    size_t n;

    if (len < MSG_HEAD + MSG_MAC || memcmp(m, MSG_MAGIC, 4) != 0)
        return false;
    n = (size_t)m[28] << 8 | m[29];
    if (len != MSG_HEAD + n * MSG_ENTRY + MSG_MAC)
        return false;
    mac(p, m, len - MSG_MAC, want);
    if (CRYPTO_memcmp(want, m + len - MSG_MAC, MSG_MAC) != 0)
        return false;
    sent_ms = get64(m + 20);
    if (sent_ms + MSG_MAX_AGE_MS < now_ms || sent_ms > now_ms + MSG_MAX_AGE_MS)
        return false;
    if (get64(m + 4) == p->self_id)
        return false;
    return fresh(p, get64(m + 4), get64(m + 12));
}

static void apply(struct peers *p, const uint8_t *m)
{
    size_t n = (size_t)m[28] << 8 | m[29];
    uint64_t now_ns = clock_now_us() * 1000u;

    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = m + MSG_HEAD + i * MSG_ENTRY;
        struct rate_limiter *rl = limit_for(p, get64(e));
        uint32_t count = (uint32_t)e[16] << 8 | e[17];

        if (!rl) {
            p->unknown++;          /* a limit this config does not share */
            continue;
        }
        rate_limiter_charge(rl, get64(e + 8), count, now_ns);
    }
}

bool peers_receive(struct peers *p, const uint8_t *m, size_t len)
{
    if (len > MSG_MAX || !accept_message(p, m, len)) {
        p->rejected++;
        log_debug("event=peer_message_rejected bytes=%zu", len);
        return false;
    }
    p->received++;
    apply(p, m);
    return true;
}

static void readable(struct io *io, uint32_t events)
{
    struct peers *p = (struct peers *)((char *)io - offsetof(struct peers, io));
    uint8_t buf[MSG_MAX + 1];

    (void)events;
    for (int i = 0; i < 256; i++) {
        ssize_t r = recv(io->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (r < 0)
            return;            /* EAGAIN, or an error the next datagram clears */
        peers_receive(p, buf, (size_t)r);
    }
}

/* ---- sending ---- */

static int note_cmp(const void *a, const void *b)
{
    const struct peers_note *x = a, *y = b;

    if (x->limiter != y->limiter)
        return x->limiter < y->limiter ? -1 : 1;
    return (x->hash > y->hash) - (x->hash < y->hash);
}

static void send_message(struct peers *p, uint8_t *m, size_t n)
{
    size_t len = MSG_HEAD + n * MSG_ENTRY;

    memcpy(m, MSG_MAGIC, 4);
    put64(m + 4, p->self_id);
    put64(m + 12, ++p->seq);
    put64(m + 20, clock_wall_us() / 1000);
    m[28] = (uint8_t)(n >> 8);
    m[29] = (uint8_t)n;
    mac(p, m, len, m + len);
    len += MSG_MAC;
    for (size_t i = 0; i < p->conf->nnodes; i++) {
        const struct addr *a = &p->conf->nodes[i];
        if (sendto(p->io.fd, m, len, MSG_DONTWAIT, (const struct sockaddr *)&a->ss, a->len) < 0)
            p->send_errors++;      /* a peer down: its limits go on alone */
        else
            p->sent++;
    }
}

/* Take every worker's notes, add up those of one key, and send them. */
static void flush(struct peers *p)
{
    size_t n = 0, out = 0;
    uint8_t m[MSG_MAX];

    for (uint32_t w = 0; w < p->nworkers; w++) {
        struct peers_outbox *o = p->workers[w].peers_out;
        uint32_t tail, head;

        if (!o)
            continue;
        tail = atomic_load_explicit(&o->tail, memory_order_relaxed);
        head = atomic_load_explicit(&o->head, memory_order_acquire);
        for (; tail != head && n < p->scratch_cap; tail++)
            p->scratch[n++] = o->ring[tail % PEERS_RING];
        atomic_store_explicit(&o->tail, tail, memory_order_release);
    }
    if (!n)
        return;
    qsort(p->scratch, n, sizeof(*p->scratch), note_cmp);
    for (size_t i = 0; i < n;) {
        uint32_t count = 0, li = p->scratch[i].limiter;
        const struct conf_rate_limit *c =
            li < p->rt->nlimiters ? rate_limiter_conf(p->rt->limiters[li]) : NULL;
        size_t j = i;
        uint8_t *e;

        while (j < n && p->scratch[j].limiter == li && p->scratch[j].hash == p->scratch[i].hash &&
               count < 0xffff) {
            count++;
            j++;
        }
        if (c && c->shared) {
            e = m + MSG_HEAD + out * MSG_ENTRY;
            put64(e, c->share_id);
            put64(e + 8, p->scratch[i].hash);
            e[16] = (uint8_t)(count >> 8);
            e[17] = (uint8_t)count;
            if (++out == MSG_ENTRIES) {
                send_message(p, m, out);
                out = 0;
            }
        }
        i = j;
    }
    if (out)
        send_message(p, m, out);
}

static void tick_cb(struct timer *t)
{
    struct peers *p = (struct peers *)((char *)t - offsetof(struct peers, tick));

    flush(p);
    timer_arm(&p->loop->timers, &p->tick, clock_now_ms() + p->conf->interval_ms);
}

/* ---- start and stop ---- */

static int limit_cmp(const void *a, const void *b)
{
    const struct peers_limit *x = a, *y = b;

    return (x->share_id > y->share_id) - (x->share_id < y->share_id);
}

/* The shared limits of the config, sorted by share_id for the receiver. */
static int collect_limits(struct peers *p)
{
    p->limits = calloc(p->rt->nlimiters ? p->rt->nlimiters : 1, sizeof(*p->limits));
    if (!p->limits)
        return -ENOMEM;
    for (size_t i = 0; i < p->rt->nlimiters; i++) {
        struct rate_limiter *rl = p->rt->limiters[i];
        if (rl && rate_limiter_conf(rl)->shared)
            p->limits[p->nlimits++] = (struct peers_limit){ rate_limiter_conf(rl)->share_id, rl };
    }
    qsort(p->limits, p->nlimits, sizeof(*p->limits), limit_cmp);
    return 0;
}

int peers_init(struct peers *p, const struct conf_peers *c, struct runtime *rt,
               struct worker *workers, uint32_t nworkers)
{
    memset(p, 0, sizeof(*p));
    p->io.fd = -1;
    p->rt = rt;
    p->conf = c;
    p->workers = workers;
    p->nworkers = nworkers;
    if (getrandom(&p->self_id, sizeof(p->self_id), 0) != sizeof(p->self_id))
        p->self_id = clock_wall_us() ^ ((uint64_t)getpid() << 32);
    p->senders = calloc(SENDERS, sizeof(*p->senders));
    p->scratch_cap = (size_t)PEERS_RING * (nworkers ? nworkers : 1);
    p->scratch = malloc(p->scratch_cap * sizeof(*p->scratch));
    if (!p->senders || !p->scratch || collect_limits(p) < 0)
        return -ENOMEM;
    return 0;
}

int peers_start(struct peers *p, struct loop *loop, struct runtime *rt, struct worker *workers,
                uint32_t nworkers)
{
    const struct conf_peers *c = rt->cfg->peers;
    int one = 1, fd, err;

    memset(p, 0, sizeof(*p));
    p->io.fd = -1;
    if (!c)
        return 0;
    if ((err = peers_init(p, c, rt, workers, nworkers)) < 0)
        return err;
    p->loop = loop;
    fd = socket(c->listen.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* A reload's new process binds the same port while the old one holds it. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&c->listen.ss, c->listen.len) < 0) {
        err = -errno;
        close(fd);
        return err;
    }
    p->io.fd = fd;
    p->io.cb = readable;
    if (loop_add(loop, &p->io, EPOLLIN) < 0) {
        err = -errno;
        close(fd);
        p->io.fd = -1;
        return err;
    }
    timer_init(&p->tick, tick_cb);
    timer_arm(&loop->timers, &p->tick, clock_now_ms() + c->interval_ms);
    log_info("event=peers_started listen=%s nodes=%zu shared_limits=%zu", c->listen_text,
             c->nnodes, p->nlimits);
    return 0;
}

void peers_stop(struct peers *p)
{
    if (p->conf && p->io.fd >= 0) {
        flush(p);              /* what the workers let through last */
        timer_cancel(&p->loop->timers, &p->tick);
        loop_del(p->loop, &p->io);
        close(p->io.fd);
        p->io.fd = -1;
    }
    free(p->senders);
    free(p->limits);
    free(p->scratch);
    p->senders = NULL;
    p->limits = NULL;
    p->scratch = NULL;
}

uint64_t peers_dropped(const struct peers *p)
{
    uint64_t n = 0;

    for (uint32_t w = 0; p->conf && w < p->nworkers; w++)
        if (p->workers[w].peers_out)
            n += atomic_load_explicit(&p->workers[w].peers_out->dropped, memory_order_relaxed);
    return n;
}
