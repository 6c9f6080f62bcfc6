/* split: a pool chosen by weight. random % total lands in one pool's share
 * of [0, total): deterministic for a given random number, and as even as the
 * random numbers are (the modulo bias is below total / 2^64). */
#include "route/internal.h"

struct conf_pool *route_split_pick(const struct conf_route *r, uint64_t random)
{
    uint64_t total = 0;
    for (size_t i = 0; i < r->nsplit; i++)
        total += r->split[i].weight;
    if (!total)
        return r->nsplit ? r->split[0].pool : NULL;
    uint64_t x = random % total;
    for (size_t i = 0; i < r->nsplit; i++) {
        if (x < r->split[i].weight)
            return r->split[i].pool;
        x -= r->split[i].weight;
    }
    return r->split[r->nsplit - 1].pool;   /* not reached */
}
