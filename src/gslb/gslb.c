/* The GSLB responder (see gslb.h). */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

#include "balance/balance.h"
#include "gslb/internal.h"
#include "core/bytes.h"
#include "core/clock.h"
#include "core/list.h"
#include "config/config.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/worker.h"
#include "gslb/gslb.h"
#include "net/addr.h"
#include "net/listener.h"
#include "proto/dns.h"

#define GSLB_MAX_ANSWERS 64
#define GSLB_READ_BUDGET 64         /* datagrams per readiness, then others run */

/* The records are sorted by name (config/dns.c). */
static const struct conf_dns_record *find_record(const struct conf_listener *lc, const char *name)
{
    size_t lo = 0, hi = lc->ndns_records;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, lc->dns_records[mid].name);

        if (c == 0)
            return &lc->dns_records[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* The zone's records for q: SOA or NS at the apex when asked for, and
 * the SOA in the authority section when nothing else answers. */
static void zone_extra(const struct conf_dns_zone *z, const struct dns_query *q,
                       struct dns_soa *soa, struct dns_extra *x)
{
    bool apex = strcmp(q->name, z->name) == 0;

    *soa = (struct dns_soa){
        .zone = z->name, .mname = z->nameservers[0], .rname = z->hostmaster,
        .serial = z->serial, .refresh = 3600, .retry = 600, .expire = 604800,
        .minimum = z->negative_ttl_s,
    };
    memset(x, 0, sizeof(*x));
    x->soa = soa;
    x->soa_ttl = z->negative_ttl_s;
    x->answer_soa = apex && (q->qtype == DNS_TYPE_SOA || q->qtype == DNS_TYPE_ANY);
    if (apex && (q->qtype == DNS_TYPE_NS || q->qtype == DNS_TYPE_ANY)) {
        x->ns = (const char *const *)z->nameservers;
        x->nns = z->nnameservers;
    }
    x->authority_soa = !x->answer_soa && !x->nns;
}

/* Whether name lies between the zone's apex and a record (an empty
 * non-terminal: it exists, with no records of its own). */
static bool is_between(const struct conf_dns_zone *z, const char *name)
{
    size_t lo = 0, hi = z->nbetween;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, z->between[mid]);
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

static bool region_healthy(const struct runtime *rt, const struct conf_dns_region *r)
{
    const struct pool *p = &rt->pools[r->pool - rt->cfg->pools];

    for (uint32_t i = 0; i < p->nbackends; i++)
        if (backend_eligible(&p->backends[i]))
            return true;
    return false;
}

static bool has_code(const uint16_t *codes, size_t n, uint16_t code)
{
    for (size_t i = 0; code && i < n; i++)
        if (codes[i] == code)
            return true;
    return false;
}

/* policy weighted: clients are told apart by network, a /24 or a /56 (what
 * resolvers send as Client Subnet), so that every address of one network,
 * and every sluice answering for the name, gets the same region. */
#define WEIGHTED_PREFIX4 24
#define WEIGHTED_PREFIX6 56

/* Weighted rendezvous hashing over the healthy regions with a weight: each
 * scores weight / -ln(u), u uniform in (0, 1) from a hash of the client's
 * network and the region's name; the highest wins. A region's share is its
 * weight over the sum, and when a region fails only its own clients move.
 * NULL when no healthy region has a weight. */
static const struct conf_dns_region *pick_weighted(const struct conf_dns_record *rec,
                                                   uint32_t healthy,
                                                   const struct addr *client, uint8_t *prefix)
{
    uint8_t net[17] = {0};
    const struct conf_dns_region *best = NULL;
    double best_score = -1;
    size_t len;

    if (client->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&client->ss;
        net[0] = 6;
        memcpy(net + 1, &s6->sin6_addr, WEIGHTED_PREFIX6 / 8);
        len = 1 + WEIGHTED_PREFIX6 / 8;
        *prefix = WEIGHTED_PREFIX6;
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&client->ss;
        net[0] = 4;
        memcpy(net + 1, &s4->sin_addr, WEIGHTED_PREFIX4 / 8);
        len = 1 + WEIGHTED_PREFIX4 / 8;
        *prefix = WEIGHTED_PREFIX4;
    }
    for (size_t i = 0; i < rec->nregions; i++) {
        const struct conf_dns_region *r = &rec->regions[i];
        uint64_t h;
        double u, score;

        if (!r->weight || !(healthy & (UINT32_C(1) << i)))
            continue;
        h = XXH3_64bits_withSeed(net, len, r->name_hash);
        u = (double)((h >> 11) | 1) * 0x1.0p-53;      /* in (0, 1) */
        score = (double)r->weight / -log(u);
        if (score > best_score) {
            best_score = score;
            best = r;
        }
    }
    return best;
}

/* pick() keeps the healthy regions of a record as bits of a uint32_t. */
_Static_assert(DNS_MAX_REGIONS <= 32, "a record's regions fit a 32-bit mask");

static bool has_asn(const struct conf_dns_region *r, uint32_t asn)
{
    size_t lo = 0, hi = r->nasns;            /* sorted by config/dns.c */

    while (asn && lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (r->asns[mid] == asn)
            return true;
        if (r->asns[mid] < asn)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* By the listener's geoip database: the first healthy region that lists
 * the client's country, else its continent, else the healthy region with
 * a location nearest to the client's (great-circle distance, the first in
 * the list on a tie). NULL when none of these says. */
static const struct conf_dns_region *pick_by_place(const struct conf_dns_record *rec,
                                                   uint32_t healthy, const struct gslb_geo *g)
{
    const struct conf_dns_region *continent = NULL, *nearest = NULL;
    double nearest_h = 2;                     /* above any haversine (at most 1) */

    for (size_t i = 0; i < rec->nregions; i++) {
        const struct conf_dns_region *r = &rec->regions[i];

        if (!(healthy & (UINT32_C(1) << i)))
            continue;
        if (has_code(r->countries, r->ncountries, g->country))
            return r;
        if (!continent && has_code(r->continents, r->ncontinents, g->continent))
            continent = r;
        if (!continent && g->located && r->located) {
            double h = gslb_geo_haversine(r->latitude_rad, r->longitude_rad, r->cos_latitude,
                                          g->latitude_rad, g->longitude_rad, g->cos_latitude);
            if (h < nearest_h) {
                nearest_h = h;
                nearest = r;
            }
        }
    }
    return continent ? continent : nearest;
}

/* The region for a client, among the healthy ones, by the first of these
 * rules that names one (docs/gslb.md, "How a query is answered"):
 *   1. the one whose `clients` networks hold it most closely;
 *   2. by the listener's geoip_asn database, the first that lists its
 *      autonomous system in `asns`;
 *   3. by its geoip database, the first that lists its country, else the
 *      first that lists its continent, else the one nearest to where the
 *      database places it (pick_by_place);
 *   4. with policy weighted, one by weight (pick_weighted);
 *   5. the first.
 * NULL when none is healthy. A database is only asked when a healthy
 * region has a rule for it, and at most once per query.
 * The choice holds for the addresses where every rule that was asked
 * answers alike: the networks the databases gave around the client (the
 * longest of them, as they all hold it) and, for a weighted choice, its
 * /24 or /56. *prefix is set to that length (0: no database was asked
 * and no weight used; rule 1 leaves it alone, narrow_scope handles it),
 * and *by_weight says whether the choice was weighted. */
static const struct conf_dns_region *pick(const struct conf_dns_record *rec, const struct runtime *rt,
                                          const struct conf_listener *lc, const struct addr *client,
                                          uint8_t *prefix, bool *by_weight)
{
    const struct conf_dns_region *best = NULL, *first = NULL;
    uint32_t healthy = 0;                    /* bit i: regions[i] */
    bool want_asn = false, want_place = false;
    uint8_t asked = 0;                       /* the longest network a database gave */
    int best_len = -1;

    for (size_t i = 0; i < rec->nregions; i++) {
        const struct conf_dns_region *r = &rec->regions[i];
        int m;

        if (!region_healthy(rt, r))
            continue;
        healthy |= UINT32_C(1) << i;
        if (!first)
            first = r;
        if ((m = addr_cidr_match(client, r->clients, r->nclients)) > best_len) {
            best = r;
            best_len = m;
        }
        want_asn |= r->nasns > 0;
        want_place |= r->ncountries || r->ncontinents || r->located;
    }
    if (best)
        return best;
    if (want_asn && lc->geoip_asn) {
        uint32_t asn;
        uint8_t p = 0;

        if (gslb_geo_asn(lc->geoip_asn, client, &asn, &p)) {
            asked = p;
            for (size_t i = 0; asn && i < rec->nregions; i++) {
                if ((healthy & (UINT32_C(1) << i)) && has_asn(&rec->regions[i], asn)) {
                    *prefix = asked;
                    return &rec->regions[i];
                }
            }
        }
    }
    if (want_place && lc->geoip) {
        struct gslb_geo g;

        if (gslb_geo_lookup(lc->geoip, client, &g)) {
            if (g.prefix > asked)
                asked = g.prefix;
            if ((best = pick_by_place(rec, healthy, &g))) {
                *prefix = asked;
                return best;
            }
        }
    }
    if (first && rec->policy == DNS_POLICY_WEIGHTED &&
        (best = pick_weighted(rec, healthy, client, prefix))) {
        if (asked > *prefix)
            *prefix = asked;
        *by_weight = true;
        return best;
    }
    *prefix = asked;
    return first;
}

/* The Client Subnet scope for an answer chosen for the len bits around
 * client: a healthy region's client network inside them, and longer, gets
 * another answer than the rest, so the answer holds only for the longest
 * such network around the client (RFC 7871 7.2.1: a scope longer than
 * the source tells the resolver to ask with more bits). */
static uint8_t narrow_scope(const struct conf_dns_record *rec, const struct runtime *rt,
                            const struct addr *client, uint8_t len)
{
    uint8_t scope = len;

    for (size_t i = 0; i < rec->nregions; i++) {
        const struct conf_dns_region *r = &rec->regions[i];

        if (!r->nclients || !region_healthy(rt, r))
            continue;
        for (size_t k = 0; k < r->nclients; k++) {
            struct conf_cidr around = r->clients[k];

            if (around.prefix <= scope)
                continue;
            around.prefix = len;
            if (addr_cidr_match(client, &around, 1) >= 0)
                scope = r->clients[k].prefix;
        }
    }
    return scope;
}

static size_t add_answers(const struct conf_dns_region *r, uint16_t qtype, struct dns_answer *a,
                          size_t n)
{
    for (size_t i = 0; i < r->naddresses && n < GSLB_MAX_ANSWERS; i++) {
        const struct conf_dns_addr *x = &r->addresses[i];
        uint16_t type = x->family == AF_INET ? DNS_TYPE_A : DNS_TYPE_AAAA;

        if (qtype != type && qtype != DNS_TYPE_ANY)
            continue;
        a[n].type = type;
        memcpy(a[n].addr, x->addr, type == DNS_TYPE_A ? 4 : 16);
        n++;
    }
    return n;
}

size_t gslb_answer(const struct conf_listener *lc, const struct runtime *rt,
                   const struct addr *client, const uint8_t *p, size_t n, bool tcp, uint8_t *out,
                   size_t cap, const char **region)
{
    struct dns_query q;
    struct dns_answer answers[GSLB_MAX_ANSWERS];
    const struct conf_dns_record *rec;
    const struct conf_dns_region *r;
    struct addr subnet;
    struct dns_soa soa;
    struct dns_extra x;
    bool zoned = false;
    uint8_t scope = 0;
    size_t na = 0;
    int rc = dns_parse_query(p, n, &q);

    q.tcp = tcp;
    *region = NULL;
    if (rc < 0)
        return 0;
    if (rc != DNS_NOERROR) {
        log_debug("event=dns_bad_query listener=%s why=\"%s\"", lc->name, q.error);
        return dns_write_response(p, &q, rc, false, NULL, 0, 0, 0, out, cap);
    }
    if ((q.qclass != 1 && q.qclass != 255) || !q.name_plain)
        return dns_write_response(p, &q, DNS_REFUSED, false, NULL, 0, 0, 0, out, cap);
    rec = find_record(lc, q.name);
    if (lc->dns_zone && config_dns_in_zone(q.name, lc->dns_zone->name)) {
        zone_extra(lc->dns_zone, &q, &soa, &x);
        if (!rec) {
            /* A name of the zone without a record: the apex's SOA or NS
             * when asked, else a negative answer with the SOA, NODATA for a
             * name that exists (the apex, or one with records below it),
             * NXDOMAIN for one that does not (RFC 2308). */
            bool exists = !strcmp(q.name, lc->dns_zone->name) || is_between(lc->dns_zone, q.name);
            return dns_write_response_ex(p, &q, exists ? DNS_NOERROR : DNS_NXDOMAIN, true, NULL,
                                         0, 0, 0, &x, out, cap);
        }
        zoned = true;
    } else if (!rec) {
        return dns_write_response(p, &q, DNS_REFUSED, false, NULL, 0, 0, 0, out, cap);
    }
    if (q.ecs && q.ecs_source) {
        /* A resolver asking for a client network (RFC 7871): the region is
         * chosen for that network, and the answer holds for all of it. */
        memset(&subnet, 0, sizeof(subnet));
        if (q.ecs_family == 1) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&subnet.ss;
            s4->sin_family = AF_INET;
            memcpy(&s4->sin_addr, q.ecs_addr, 4);
        } else {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&subnet.ss;
            s6->sin6_family = AF_INET6;
            memcpy(&s6->sin6_addr, q.ecs_addr, 16);
        }
        client = &subnet;
        scope = q.ecs_source;
    }
    uint8_t prefix = 0;
    bool by_weight = false;
    if ((r = pick(rec, rt, lc, client, &prefix, &by_weight))) {
        /* RFC 7871: the answer holds for the network the choice was made
         * for. A GeoIP network narrower than the query's subnet narrows the
         * scope (a longer scope than the source asks the resolver for more
         * bits); a weighted choice, made for a /24 (or /56), holds for all
         * of it and only for it, longer or shorter than the subnet. */
        if (scope && prefix && (prefix > scope || by_weight))
            scope = prefix;
        if (scope)
            scope = narrow_scope(rec, rt, client, scope);
        *region = r->name;
        na = add_answers(r, q.qtype, answers, 0);
        /* answers: N: the next healthy regions in the list follow, so a
         * client whose first address fails has another without asking
         * again (the chosen region's addresses stay first). */
        for (size_t i = 0, more = rec->answers - 1; i < rec->nregions && more; i++) {
            const struct conf_dns_region *o = &rec->regions[i];
            if (o == r || !region_healthy(rt, o))
                continue;
            na = add_answers(o, q.qtype, answers, na);
            more--;
        }
    } else {
        /* Every region is down: answering nothing would take the name off
         * the internet; all addresses at least reach whatever recovers. */
        for (size_t i = 0; i < rec->nregions; i++)
            na = add_answers(&rec->regions[i], q.qtype, answers, na);
    }
    if (zoned && na)
        x.authority_soa = false;        /* a positive answer */
    return dns_write_response_ex(p, &q, DNS_NOERROR, true, answers, na, rec->ttl_s, scope,
                                 zoned ? &x : NULL, out, cap);
}

void gslb_readable(struct worker_listener *wl)
{
    const struct conf_listener *lc = wl->l->conf;
    uint8_t in[DNS_UDP_MAX + 1], out[DNS_UDP_MAX];

    for (int i = 0; i < GSLB_READ_BUDGET; i++) {
        struct addr client = {.len = sizeof(client.ss)};
        const char *region;
        ssize_t n = recvfrom(wl->io.fd, in, sizeof(in), MSG_DONTWAIT,
                             (struct sockaddr *)&client.ss, &client.len);
        size_t len;

        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_debug("event=dns_recv_failed listener=%s error=\"%s\"", lc->name, strerror(errno));
            return;
        }
        atomic_fetch_add_explicit(&wl->l->bytes_in, (uint64_t)n, memory_order_relaxed);
        /* A datagram larger than any query we take was cut: FORMERR by
         * length, as the parser sees bytes missing. */
        len = gslb_answer(lc, wl->w->rt, &client, in, (size_t)n, false, out, sizeof(out), &region);
        if (!len)
            continue;
        atomic_fetch_add_explicit(&wl->l->dns_queries, 1, memory_order_relaxed);
        if (sendto(wl->io.fd, out, len, MSG_DONTWAIT, (struct sockaddr *)&client.ss, client.len) > 0)
            atomic_fetch_add_explicit(&wl->l->bytes_out, len, memory_order_relaxed);
    }
}

/* ---- DNS over TCP (RFC 7766) ---- */

#define GSLB_TCP_IDLE_MS 10000      /* a connection without a query this long is closed */
#define GSLB_TCP_MSG_MAX 4096       /* a query longer than this is no query of ours */
#define GSLB_TCP_OUT_MAX 65536      /* answers waiting for a slow reader, then it is closed */
/* DNS-over-TCP connections per worker. Past it the least recently active
 * one is closed for each new one (RFC 7766 6.2.3: close idle connections
 * under pressure), so idle clients cannot take every descriptor of the
 * process, which its other listeners share. */
#define GSLB_TCP_MAX_CONNS 256

/* Owner: its worker (w->dns_conns). */
struct dns_tcp_conn {
    struct io io;
    struct worker *w;
    struct listener *l;
    struct addr peer;
    uint8_t in[2 + GSLB_TCP_MSG_MAX];
    uint32_t in_len;
    bool eof;                        /* the client half-closed: answer, then close */
    struct bytes out;
    struct timer idle;
    struct loop_task free_task;
    struct dns_tcp_conn *prev, *next;
};

static void tcp_free_task(struct loop_task *t)
{
    free((char *)t - offsetof(struct dns_tcp_conn, free_task));
}

static void tcp_close(struct dns_tcp_conn *c)
{
    struct dns_tcp_conn *head = c->w->dns_conns;

    timer_cancel(&c->w->loop.timers, &c->idle);
    loop_del(&c->w->loop, &c->io);   /* first: see tcp.c's io_close */
    close(c->io.fd);
    bytes_free(&c->out);
    DLIST_REMOVE(head, c);
    c->w->dns_conns = head;
    c->w->dns_nconns--;
    loop_task_queue(&c->w->loop, &c->free_task);
}

static bool tcp_flush(struct dns_tcp_conn *c)
{
    while (bytes_len(&c->out)) {
        ssize_t n = send(c->io.fd, bytes_data(&c->out), bytes_len(&c->out), MSG_NOSIGNAL);

        if (n < 0)
            return errno == EAGAIN;
        c->out.off += (uint32_t)n;
        atomic_fetch_add_explicit(&c->l->bytes_out, (uint64_t)n,
                                  memory_order_relaxed);
    }
    bytes_clear(&c->out);
    return true;
}

/* Answer every whole query in the input; false: the connection must close. */
static bool tcp_answer(struct dns_tcp_conn *c)
{
    uint8_t out[2 + GSLB_TCP_OUT_MAX];

    for (;;) {
        uint32_t len;
        const char *region;
        size_t n;

        if (c->in_len < 2)
            return true;
        len = (uint32_t)(c->in[0] << 8 | c->in[1]);
        if (len < DNS_HEADER_LEN || len > GSLB_TCP_MSG_MAX)
            return false;
        if (c->in_len < 2 + len)
            return true;
        n = gslb_answer(c->l->conf, c->w->rt, &c->peer, c->in + 2, len, true, out + 2,
                        sizeof(out) - 2, &region);
        memmove(c->in, c->in + 2 + len, c->in_len - 2 - len);
        c->in_len -= 2 + len;
        if (!n)
            return false;            /* not a query: this is no DNS client */
        /* Idle counts from the last whole query: bytes that never make one
         * (a trickle) must not hold the connection open. */
        timer_arm(&c->w->loop.timers, &c->idle, clock_now_ms() + GSLB_TCP_IDLE_MS);
        if (c->prev) {               /* the most recently active goes first */
            struct dns_tcp_conn *head = c->w->dns_conns;
            DLIST_REMOVE(head, c);
            DLIST_PUSH(head, c);
            c->w->dns_conns = head;
        }
        atomic_fetch_add_explicit(&c->l->dns_queries, 1, memory_order_relaxed);
        out[0] = (uint8_t)(n >> 8);
        out[1] = (uint8_t)n;
        if (bytes_len(&c->out) + 2 + n > GSLB_TCP_OUT_MAX || !bytes_put(&c->out, out, 2 + n))
            return false;            /* it asks faster than it reads */
    }
}

static void tcp_event(struct io *io, uint32_t events)
{
    struct dns_tcp_conn *c = (void *)((char *)io - offsetof(struct dns_tcp_conn, io));

    if (!c->eof && (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) {
        for (;;) {
            ssize_t n = recv(c->io.fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);

            if (n < 0 && errno == EAGAIN)
                break;
            if (n < 0) {
                tcp_close(c);        /* gone */
                return;
            }
            if (n == 0) {
                /* Done asking (a half-close, often in the same read as the
                 * last query): what it asked is still answered. */
                c->eof = true;
                break;
            }
            c->in_len += (uint32_t)n;
            atomic_fetch_add_explicit(&c->l->bytes_in, (uint64_t)n,
                                      memory_order_relaxed);
            if (!tcp_answer(c)) {
                tcp_flush(c);
                tcp_close(c);
                return;
            }
        }
    }
    if (!tcp_flush(c) || (c->eof && !bytes_len(&c->out)))
        tcp_close(c);
}

static void tcp_idle(struct timer *t)
{
    tcp_close((void *)((char *)t - offsetof(struct dns_tcp_conn, idle)));
}

void gslb_tcp_accept(struct io *io, uint32_t events)
{
    struct worker_listener *wl = (void *)((char *)io - offsetof(struct worker_listener, tcp_io));
    struct worker *w = wl->w;

    for (int i = 0; i < GSLB_READ_BUDGET; i++) {
        struct dns_tcp_conn *c, *head;
        struct addr peer = {.len = sizeof(peer.ss)};
        int fd = accept4(wl->tcp_io.fd, (struct sockaddr *)&peer.ss, &peer.len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                worker_pause_accept(wl, &wl->tcp_io);
            return;                  /* EAGAIN, or out of descriptors: the backlog waits */
        }
        if (w->dns_nconns >= GSLB_TCP_MAX_CONNS) {
            struct dns_tcp_conn *oldest = w->dns_conns;
            while (oldest->next)
                oldest = oldest->next;
            tcp_close(oldest);
        }
        if (!(c = calloc(1, sizeof(*c)))) {
            close(fd);
            continue;
        }
        c->io.fd = fd;
        c->io.cb = tcp_event;
        c->w = w;
        c->l = wl->l;
        c->peer = peer;
        timer_init(&c->idle, tcp_idle);
        loop_task_init(&c->free_task, tcp_free_task);
        if (loop_add(&w->loop, &c->io, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) < 0) {
            close(fd);
            free(c);
            continue;
        }
        head = w->dns_conns;
        DLIST_PUSH(head, c);
        w->dns_conns = head;
        w->dns_nconns++;
        timer_arm(&w->loop.timers, &c->idle, clock_now_ms() + GSLB_TCP_IDLE_MS);
    }
}

void gslb_close_all(struct worker *w)
{
    while (w->dns_conns)
        tcp_close(w->dns_conns);
}
