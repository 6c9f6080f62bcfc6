/* Discovery slots: the backends of a pool whose addresses come from DNS
 * (src/discovery/ decides what goes in and out). The backend array never
 * moves or grows, because workers index their balancers, idle connection
 * lists and counters by backend; a slot is filled with a backend when an
 * address appears and vacated when it has gone and nothing uses it. The
 * pool's listed backends, if it has any, come first and are never slots. */
#include "balance/balance.h"
#include "balance/internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "route/route.h"

/* What a vacant slot's conf says, so that a stray reader finds a string. */
static char slot_no_name[] = "";

int pool_slots_init(struct pool *p)
{
    uint32_t n = (uint32_t)p->conf->nbackends + p->conf->discovery.max_backends;

    p->backends = calloc(n, sizeof(*p->backends));
    p->slots = calloc(n, sizeof(*p->slots));
    if (!p->backends || !p->slots) {
        free(p->backends);
        free(p->slots);
        p->backends = NULL;
        p->slots = NULL;
        return -1;
    }
    p->nbackends = n;
    pool_listed_init(p);          /* the config's own backends come first */
    for (uint32_t i = 0; i < n; i++) {
        struct backend *b = &p->backends[i];
        p->slots[i].name = slot_no_name;
        p->slots[i].address_text = slot_no_name;
        if (i < p->nlisted)
            continue;
        b->conf = &p->slots[i];
        b->pool = p;
        b->index = i;
        atomic_init(&b->state, BACKEND_DISABLED);
        atomic_init(&b->weight, 0);
        atomic_init(&b->ramp_permille, 1000);
        atomic_init(&b->vacant, 1);
    }
    return 0;
}

static void slot_conf_clear(struct conf_backend *c)
{
    if (c->name != slot_no_name)
        free(c->name);
    if (c->address_text != slot_no_name)
        free(c->address_text);
    c->name = slot_no_name;
    c->address_text = slot_no_name;
}

void pool_slots_free(struct pool *p)
{
    if (!p->slots)
        return;
    for (uint32_t i = 0; i < p->nbackends; i++)
        slot_conf_clear(&p->slots[i]);
    free(p->slots);
    p->slots = NULL;
}

struct backend *pool_slot_fill(struct pool *p, const char *name, const struct addr *a,
                               uint32_t weight, bool start_down)
{
    char text[ADDR_TEXT_MAX];
    struct backend *b = NULL;
    struct conf_backend *c;
    char *name_copy, *text_copy;

    for (uint32_t i = 0; i < p->nbackends && !b; i++)
        if (backend_vacant(&p->backends[i]))
            b = &p->backends[i];
    if (!b)
        return NULL;
    addr_format(a, text, sizeof(text));
    name_copy = strdup(name);
    text_copy = strdup(text);
    if (!name_copy || !text_copy) {
        free(name_copy);
        free(text_copy);
        return NULL;
    }
    c = &p->slots[b->index];
    slot_conf_clear(c);
    c->name = name_copy;
    c->address_text = text_copy;
    c->address = *a;
    c->weight = weight;
    /* A new backend: nothing of the slot's last one carries over. */
    atomic_store(&b->total, 0);
    atomic_store(&b->failures, 0);
    atomic_store(&b->consecutive_failures, 0);
    atomic_store(&b->ejected, 0);
    b->ejected_until_ms = 0;
    b->times_ejected = 0;
    b->ejection_decay_ms = 0;
    atomic_store(&b->ejections_total, 0);
    atomic_store(&b->ramp_permille, 1000);
    b->ramp_since_ms = 0;
    b->draining_since_ms = 0;
    atomic_store(&b->drain_expired, 0);
    atomic_store(&b->checks_passed, 0);
    atomic_store(&b->checks_failed, 0);
    atomic_store(&b->ewma_ns, 0);
    atomic_store(&b->ewma_stamp_us, 0);
    b->sticky_id = sticky_id_for(p->conf->name, name);
    atomic_store(&b->weight, weight);
    atomic_store(&b->state, start_down ? BACKEND_DOWN : BACKEND_UP);
    atomic_fetch_add(&b->epoch, 1);
    /* Release: a worker that sees the slot filled sees its conf too. */
    atomic_store_explicit(&b->vacant, 0, memory_order_release);
    atomic_fetch_add(&p->generation, 1);
    log_info("event=backend_added pool=%s backend=%s address=%s state=%s", p->conf->name, name,
             text, start_down ? "DOWN" : "UP");
    return b;
}

void pool_slot_vacate(struct backend *b)
{
    log_info("event=backend_removed pool=%s backend=%s", b->pool->conf->name, b->conf->name);
    atomic_store(&b->state, BACKEND_DISABLED);
    atomic_store(&b->weight, 0);
    atomic_store(&b->ejected, 0);
    atomic_store_explicit(&b->vacant, 1, memory_order_release);
    atomic_fetch_add(&b->pool->generation, 1);
}
