#include "core/runtime.h"

#include <stdlib.h>
#include <string.h>

int runtime_init(struct runtime *rt, const struct config *cfg)
{
    memset(rt, 0, sizeof(*rt));
    rt->cfg = cfg;
    rt->pools = calloc(cfg->npools, sizeof(*rt->pools));
    rt->listeners = calloc(cfg->nlisteners, sizeof(*rt->listeners));
    if (!rt->pools || !rt->listeners)
        goto fail;
    for (size_t i = 0; i < cfg->npools; i++) {
        if (pool_init(&rt->pools[i], &cfg->pools[i]) < 0)
            goto fail;
        rt->npools++;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        rt->listeners[i].conf = &cfg->listeners[i];
        rt->listeners[i].pool = runtime_pool(rt, cfg->listeners[i].pool);
    }
    rt->nlisteners = cfg->nlisteners;
    return 0;
fail:
    runtime_destroy(rt);
    return -1;
}

void runtime_destroy(struct runtime *rt)
{
    for (size_t i = 0; i < rt->npools; i++)
        pool_destroy(&rt->pools[i]);
    free(rt->pools);
    free(rt->listeners);
    memset(rt, 0, sizeof(*rt));
}

struct pool *runtime_pool(struct runtime *rt, const struct conf_pool *cp)
{
    size_t i = (size_t)(cp - rt->cfg->pools);

    return i < rt->npools ? &rt->pools[i] : NULL;
}

size_t runtime_pool_index(const struct runtime *rt, const struct pool *p)
{
    return (size_t)(p - rt->pools);
}
