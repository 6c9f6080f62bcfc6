#include "proxy/end.h"

static const char *const names[] = {
    [END_NONE] = "none",
    [END_CLIENT_CLOSE] = "client_close",
    [END_BACKEND_CLOSE] = "backend_close",
    [END_CLIENT_RESET] = "client_reset",
    [END_BACKEND_RESET] = "backend_reset",
    [END_IDLE_TIMEOUT] = "idle_timeout",
    [END_CONNECT_FAILED] = "connect_failed",
    [END_CONNECT_TIMEOUT] = "connect_timeout",
    [END_NO_BACKEND] = "no_backend",
    [END_PROXY_BAD] = "proxy_header_bad",
    [END_SHUTDOWN] = "shutdown",
    [END_NO_MEMORY] = "no_memory",
    [END_FLOW_EVICTED] = "flow_evicted",
    [END_DRAINED] = "drain_timeout",
    [END_RATE_LIMITED] = "rate_limited",
    [END_GRPC_DEADLINE] = "grpc_deadline",
};

const char *end_reason_name(enum end_reason r)
{
    if ((unsigned)r < sizeof(names) / sizeof(names[0]) && names[r])
        return names[r];
    return "unknown";
}
