#include "core/runtime.h"

#include "core/log.h"
#include "proto/tls.h"
#include "route/route.h"

#include <stdlib.h>
#include <string.h>

static int runtime_add_limiter(struct runtime *rt, const struct conf_rate_limit *c)
{
    if (c->index >= rt->nlimiters)
        return -1;
    rt->limiters[c->index] = rate_limiter_new(c);
    return rt->limiters[c->index] ? 0 : -1;
}

int runtime_init(struct runtime *rt, const struct config *cfg)
{
    memset(rt, 0, sizeof(*rt));
    rt->cfg = cfg;
    rt->pools = calloc(cfg->npools, sizeof(*rt->pools));
    rt->listeners = calloc(cfg->nlisteners, sizeof(*rt->listeners));
    if (!rt->pools || !rt->listeners)
        goto fail;
    for (size_t i = 0; i < cfg->npools; i++) {
        char err[512];

        if (pool_init(&rt->pools[i], &cfg->pools[i]) < 0)
            goto fail;
        rt->npools++;
        if (cfg->pools[i].tls &&
            !(rt->pools[i].tls = tls_client_new(cfg->pools[i].tls, cfg->pools[i].http2, err, sizeof(err)))) {
            log_error("event=tls_failed pool=%s why=\"%s\"", cfg->pools[i].name, err);
            goto fail;
        }
    }
    rt->limiters = calloc(cfg->nrate_limits ? cfg->nrate_limits : 1, sizeof(*rt->limiters));
    if (!rt->limiters)
        goto fail;
    rt->nlimiters = cfg->nrate_limits;
    rt->nlisteners = cfg->nlisteners;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct conf_listener *cl = &cfg->listeners[i];
        rt->listeners[i].conf = cl;
        rt->listeners[i].pool = cl->pool ? runtime_pool(rt, cl->pool) : NULL;
        if ((cl->mode == LISTENER_HTTP || cl->mode == LISTENER_TCP) && cl->nroutes &&
            !(rt->listeners[i].routes = route_table_build(cl)))
            goto fail;
        if (cl->tls) {
            char err[512];

            enum tls_alpn alpn = cl->mode != LISTENER_HTTP ? TLS_ALPN_NONE
                                 : cl->http2 ? TLS_ALPN_H2 : TLS_ALPN_HTTP1;

            if (!(rt->listeners[i].tls = tls_ctx_new(cl->tls, alpn, err, sizeof(err)))) {
                log_error("event=tls_failed listener=%s why=\"%s\"", cl->name, err);
                goto fail;
            }
        }
        if (cl->rate_limit && runtime_add_limiter(rt, cl->rate_limit) < 0)
            goto fail;
        for (size_t r = 0; r < cl->nroutes; r++)
            if (cl->routes[r].rate_limit && runtime_add_limiter(rt, cl->routes[r].rate_limit) < 0)
                goto fail;
    }
    return 0;
fail:
    runtime_destroy(rt);
    return -1;
}

void runtime_destroy(struct runtime *rt)
{
    for (size_t i = 0; i < rt->npools; i++) {
        tls_client_free(rt->pools[i].tls);
        pool_destroy(&rt->pools[i]);
    }
    for (size_t i = 0; rt->listeners && i < rt->nlisteners; i++) {
        route_table_free(rt->listeners[i].routes);
        tls_ctx_free(rt->listeners[i].tls);
    }
    for (size_t i = 0; rt->limiters && i < rt->nlimiters; i++)
        rate_limiter_free(rt->limiters[i]);
    free(rt->limiters);
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
