/* Why a connection or flow ended: who ended it and what happened. The access
 * log, the counters and (later) retries all read this one field. */
#ifndef SLUICE_PROXY_END_H
#define SLUICE_PROXY_END_H

enum end_reason {
    END_NONE,
    END_CLIENT_CLOSE,      /* the client closed first; normal */
    END_BACKEND_CLOSE,     /* the backend closed first; normal */
    END_CLIENT_RESET,      /* the client reset, or writing to it failed */
    END_BACKEND_RESET,     /* the backend reset, or writing to it failed */
    END_IDLE_TIMEOUT,      /* no bytes either way for the idle timeout */
    END_CONNECT_FAILED,    /* every backend tried refused or was unreachable */
    END_CONNECT_TIMEOUT,   /* the last backend tried did not answer in time */
    END_NO_BACKEND,        /* no backend is eligible (all DOWN or drained) */
    END_PROXY_BAD,         /* malformed PROXY protocol header from the client */
    END_SHUTDOWN,          /* sluice stopped and the drain timeout ran out */
    END_NO_MEMORY,         /* sluice could not get a buffer or descriptor */
    END_FLOW_EVICTED,      /* udp: the flow table was full; least recent flow dropped */
    END_DRAINED,           /* its backend was drained and drain_timeout ran out */
    END_RATE_LIMITED,      /* over a rate_limit: 429/503, or a tcp connection closed */
    END_GRPC_DEADLINE,     /* a gRPC call's grpc-timeout ran out: DEADLINE_EXCEEDED */
};

const char *end_reason_name(enum end_reason r);

#endif
