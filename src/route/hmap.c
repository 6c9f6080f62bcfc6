/* The route table's hash map: byte strings (plus a tag, so one map can hold
 * the exact paths of every host bucket) to uint32_t, open addressing with
 * linear probing at most half full. XXH3 hashes; the tag is the seed. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "route/internal.h"

static uint64_t hash_of(const char *key, uint32_t len, uint32_t tag)
{
    return XXH3_64bits_withSeed(key, len, tag);
}

static bool slot_is(const struct hmap_slot *s, uint64_t h, const char *key, uint32_t len,
                    uint32_t tag)
{
    return s->hash == h && s->len == len && s->tag == tag && memcmp(s->key, key, len) == 0;
}

static int grow(struct hmap *m)
{
    uint32_t cap = m->slots ? (m->mask + 1) * 2 : 16;
    if (cap == 0)
        return -1;
    struct hmap_slot *s = calloc(cap, sizeof(*s));
    if (!s)
        return -1;
    if (m->slots) {
        for (uint32_t i = 0; i <= m->mask; i++) {
            if (!m->slots[i].key)
                continue;
            uint32_t j = (uint32_t)m->slots[i].hash & (cap - 1);
            while (s[j].key)
                j = (j + 1) & (cap - 1);
            s[j] = m->slots[i];
        }
        free(m->slots);
    }
    m->slots = s;
    m->mask = cap - 1;
    return 0;
}

uint32_t *hmap_put(struct hmap *m, const char *key, uint32_t len, uint32_t tag, bool *created)
{
    if ((!m->slots || (m->n + 1) * 2 > m->mask + 1) && grow(m) < 0)
        return NULL;
    uint64_t h = hash_of(key, len, tag);
    uint32_t i = (uint32_t)h & m->mask;
    while (m->slots[i].key) {
        if (slot_is(&m->slots[i], h, key, len, tag)) {
            *created = false;
            return &m->slots[i].val;
        }
        i = (i + 1) & m->mask;
    }
    m->slots[i] = (struct hmap_slot){ .hash = h, .key = key, .len = len, .tag = tag,
                                      .val = ROUTE_NONE };
    m->n++;
    *created = true;
    return &m->slots[i].val;
}

uint32_t hmap_get(const struct hmap *m, const char *key, uint32_t len, uint32_t tag)
{
    if (!m->n)
        return ROUTE_NONE;
    uint64_t h = hash_of(key, len, tag);
    for (uint32_t i = (uint32_t)h & m->mask; m->slots[i].key; i = (i + 1) & m->mask)
        if (slot_is(&m->slots[i], h, key, len, tag))
            return m->slots[i].val;
    return ROUTE_NONE;
}

void hmap_free(struct hmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}
