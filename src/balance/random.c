/* Weighted random: each pick draws a backend with probability weight /
 * total, independently of load and of earlier picks. No state is shared
 * and nothing is counted, so it is the yardstick the others are measured
 * against, and a fair choice when every request costs the same and many
 * independent balancers share the backends (their round-robins would
 * otherwise fall into step). */

#include "balance/internal.h"

static int random_pick(void *state, const struct balance_set *set,
                       const struct balance_req *req, uint64_t *rng)
{
    return balance_draw_allowed(state, set, req, -1, rng);
}

const struct balance_ops balance_random = {
    .name = "random",
    .build = balance_draw_build,
    .destroy = balance_draw_destroy,
    .pick = random_pick,
};
