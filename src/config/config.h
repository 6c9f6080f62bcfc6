/* The configuration: YAML (libfyaml) → plain structs, validated before
 * anything starts. A loaded `struct config` is immutable; the runtime builds
 * its own objects from it and keeps a pointer for names and settings.
 *
 * Owner: whoever called config_load(); freed with config_free().
 *
 * Errors and warnings are written to the diagnostics stream, one per line:
 *     FILE:LINE:COL: error: MESSAGE
 *     FILE:LINE:COL: warning: MESSAGE
 * LINE and COL are 1-based and point at the offending node (for an unknown
 * key: the key; for a bad value: the value; for a missing required key: the
 * mapping that lacks it). All errors found are reported, not only the first. */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "net/addr.h"

/* Where a node sits in the file, for messages found after parsing
 * (a port already in use, say). file points at config->file. */
struct conf_pos {
    const char *file;
    int line;
    int col;
};

enum listener_mode {
    LISTENER_TCP,
    LISTENER_UDP,
    LISTENER_HTTP,
    LISTENER_DNS,                  /* the GSLB responder (src/gslb/) */
};

enum proxy_send {
    PROXY_SEND_NONE,
    PROXY_SEND_V1,
    PROXY_SEND_V2,
};

enum balance_kind {
    BALANCE_P2C,            /* the default when `balance` is omitted */
    BALANCE_ROUND_ROBIN,
    BALANCE_LEAST_CONN,
    BALANCE_RANDOM,
    BALANCE_EWMA,
    BALANCE_RING_HASH,
    BALANCE_MAGLEV,
    BALANCE_IP_HASH,
};

/* hash_key: what ring_hash and maglev hash (ip_hash always hashes source_ip). */
enum hash_key_kind {
    HASH_KEY_SOURCE_IP,     /* the default: the client's IP, without the port */
    HASH_KEY_PATH,          /* the request path, without the query */
    HASH_KEY_HEADER,        /* header:NAME */
    HASH_KEY_COOKIE,        /* cookie:NAME */
    HASH_KEY_QUERY,         /* query:NAME */
    HASH_KEY_GLOBAL,        /* rate_limit only: one key for every request */
};

enum health_type {
    HEALTH_NONE,            /* no `health_check`: backends are always UP */
    HEALTH_TCP,
    HEALTH_HTTP,
};

enum log_level {
    LOG_LEVEL_ERROR,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
};

/* ---- L7 (mode: http) ---- */

/* A name/value pair from a YAML mapping, in file order. */
struct conf_kv {
    char *name;
    char *value;
    struct conf_pos pos;
};

/* An address block, for trusted_proxies: "10.0.0.0/8", "::1", "127.0.0.1". */
struct conf_cidr {
    int family;                  /* AF_INET or AF_INET6 */
    uint8_t addr[16];            /* network byte order, host bits zeroed */
    uint8_t prefix;              /* 0..32 or 0..128 */
};

/* How an http listener cleans request paths before routing (and forwards
 * them so): route/path.c. */
enum path_escaped_slashes {
    PATH_SLASHES_KEEP,           /* %2F and %5C stay as they are (the default) */
    PATH_SLASHES_REJECT,         /* 400 */
    PATH_SLASHES_DECODE,         /* to '/' and '\\' before the other steps */
};

/* headers_with_underscores (http): what becomes of a request field whose
 * name has an '_', which CGI-style backends cannot tell from the '-'
 * spelling. The fields sluice writes or vouches for are dropped under an
 * underscore spelling whatever this says (proxy/http_message.c). */
enum underscore_headers {
    UNDERSCORES_ALLOW,           /* forwarded (the default, as HAProxy and Envoy) */
    UNDERSCORES_DROP,            /* not forwarded (as NGINX) */
    UNDERSCORES_REJECT,          /* 400 */
};

struct conf_path_norm {
    bool normalize;              /* normalize_path: %XX of unreserved characters
                                    decoded, dot segments removed; default true */
    bool merge_slashes;          /* merge_slashes: "//" → "/"; default true */
    enum path_escaped_slashes escaped_slashes;  /* escaped_slashes; default keep */
};

enum route_action {
    ROUTE_POOL,                  /* pool: NAME */
    ROUTE_SPLIT,                 /* split: [{pool, weight}, ...] */
    ROUTE_REDIRECT,              /* redirect: {location, status} */
    ROUTE_RESPOND,               /* respond: {status, body} */
};

enum route_path_kind {
    ROUTE_PATH_ANY,              /* no path condition */
    ROUTE_PATH_EXACT,            /* path: /exact */
    ROUTE_PATH_PREFIX,           /* path_prefix: /api/ */
    ROUTE_PATH_REGEX,            /* path_regex: ^/v[0-9]+/ (PCRE2) */
};

struct conf_split {
    char *pool_name;
    struct conf_pool *pool;      /* resolved */
    uint32_t weight;             /* 0..1000000; at least one > 0 */
};

/* One rule of a listener's `routes`. All match conditions must hold. */
/* rate_limit: a GCRA (token bucket) per key, on a listener (every request
 * or, for tcp, every connection) or on a route (its requests). */
struct conf_rate_limit {
    uint64_t interval_ns;        /* 1 / rate: the steady spacing of requests */
    uint32_t burst;              /* requests allowed at once beyond the rate, default 0 */
    enum hash_key_kind key;      /* default source_ip; HASH_KEY_GLOBAL = one bucket */
    char *key_name;              /* NAME of header:/cookie:/query: */
    int status;                  /* 429 (default) or 503 */
    uint32_t max_keys;           /* keys tracked at once, default 65536 */
    bool shared;                 /* counted with the peers' (src/peers/) */
    uint64_t share_id;           /* names this limit to the peers: its place in the config */
    uint32_t index;              /* its limiter in the runtime: 0..cfg->nrate_limits-1 */
    char *label;                 /* "listener" or "route3", for metrics */
    char *rate_text;             /* as written ("100/s"), for messages */
};

/* auth: who may send requests to pools (HTTP Basic against a users file). */
struct conf_user {
    char *name;
    char *hash;                  /* crypt(3): bcrypt $2b$/$2y$, $5$, $6$, yescrypt $y$ */
    size_t line;                 /* in users_file, for messages */
};

enum auth_type {
    AUTH_BASIC,                  /* users_file */
    AUTH_JWT,                    /* Bearer tokens: key_file (RS256/ES256), secret_file (HS256),
                                    jwks_file or jwks_url */
    AUTH_EXTERNAL,               /* ask an auth service (a pool): conf_ext_auth */
};

/* type external: each request is first sent, without its body, to a
 * backend of `pool` (proxy/ext_auth.c). Field names are lowercased. */
struct conf_ext_auth {
    char *pool_name;
    struct conf_pool *pool;
    char *path;                  /* the check's request target, e.g. /oauth2/auth */
    uint64_t timeout_ms;         /* the whole check; default 1s */
    bool failure_allow;          /* failure: allow (the service cannot answer: let it in) */
    char **request_headers;      /* client fields copied onto the check */
    size_t nrequest_headers;
    char **upstream_headers;     /* fields of a 2xx answer sent on to the backend; the
                                    client's fields of these names are always removed */
    size_t nupstream_headers;
    char **client_headers;       /* fields of a denial relayed to the client */
    size_t nclient_headers;
    bool client_headers_all;     /* client_headers not given: every end-to-end field */
};

struct jwks_source;
struct conf_auth {
    enum auth_type type;
    char *realm;
    char *challenge;             /* the WWW-Authenticate value */
    char *users_file;
    struct conf_user *users;
    size_t nusers;
    /* jwt */
    void *jwt_key;               /* EVP_PKEY of key_file (proto/tls.c); NULL with a secret */
    int jwt_alg;                 /* the one algorithm accepted: JWT_HS256/RS256/ES256 */
    unsigned char *jwt_secret;
    size_t jwt_secret_len;
    struct jwks_source *jwks;    /* jwks_file or jwks_url (route/jwks.h); NULL with one key */
    char *issuer;                /* iss must equal it; NULL = any */
    char *audience;              /* aud must be or contain it; NULL = any */
    uint64_t clock_skew_ms;      /* exp/nbf leeway, default 60000 */
    struct conf_ext_auth *ext;   /* type external; NULL otherwise */
};

#define JWT_HS256 1
#define JWT_RS256 2
#define JWT_ES256 3

struct conf_route {
    struct conf_pos pos;         /* the rule's mapping, for messages */
    uint32_t index;              /* position in the listener's list, 0-based */
    /* match */
    char *host;                  /* NULL = any; lowercased; exact or "*.suffix" */
    enum route_path_kind path_kind;
    char *path;                  /* the exact path, prefix or regex source */
    uint32_t methods;            /* bitmask of 1 << enum h1_method; 0 = any */
    char **other_methods;        /* method tokens outside enum h1_method */
    size_t nother_methods;
    struct conf_kv *headers;     /* exact value; "*" = present; names lowercased */
    size_t nheaders;
    struct conf_kv *cookies;
    size_t ncookies;
    struct conf_kv *query;
    size_t nquery;
    struct conf_cidr *sources;   /* the client's address is in one; none = any */
    size_t nsources;
    /* action: exactly one */
    enum route_action action;
    char *pool_name;
    struct conf_pool *pool;      /* ROUTE_POOL, resolved */
    struct conf_split *split;
    size_t nsplit;
    char *redirect_location;     /* NULL: built from the request (below) */
    char *redirect_scheme;       /* "http" | "https"; NULL = the listener's */
    char *redirect_host;         /* NULL = the request's host, its port dropped */
    int redirect_port;           /* 0 = none in the Location */
    int redirect_status;         /* 301, 302, 303, 307, 308; default 302 */
    int respond_status;          /* 100..599 (not 1xx), default 200 */
    char *respond_body;          /* may be NULL (empty) */
    /* rewrites, applied when forwarding */
    struct conf_kv *set_headers;            /* request: replace or add */
    size_t nset_headers;
    char **remove_headers;                  /* request: lowercased names */
    size_t nremove_headers;
    struct conf_kv *set_response_headers;
    size_t nset_response_headers;
    char **remove_response_headers;
    size_t nremove_response_headers;
    char *strip_prefix;          /* remove this prefix from the path */
    char *rewrite_prefix;        /* with path_prefix: replace the matched prefix */
    struct conf_rate_limit *rate_limit;     /* NULL = none */
    struct conf_auth *auth;      /* NULL = the listener's */
    bool auth_off;               /* `auth: off`: none, whatever the listener says */
    /* mirror: a copy of a share of the requests goes to this pool too, and
     * its answer is thrown away (proxy/mirror.c) */
    char *mirror_pool_name;
    struct conf_pool *mirror_pool;          /* NULL = no mirror */
    uint32_t mirror_percent;                /* 0..100, default 100 */
    struct conf_kv *mirror_set_headers;     /* on the copy only: replace or add */
    size_t nmirror_set_headers;
    uint64_t mirror_max_body;               /* bodies copied up to this; 1 MiB unless set */
};

enum access_format {
    ACCESS_FORMAT_COMBINED,  /* one human-readable line */
    ACCESS_FORMAT_JSON,      /* one JSON object per line */
};

struct conf_backend {
    char *name;               /* defaults to the address text */
    char *address_text;
    struct addr address;
    uint32_t weight;          /* 1..256, default 1; 0 is refused */
    struct conf_pos pos;      /* the backend's mapping */
};

/* A pool's `discovery` block: its backends are the addresses a DNS name
 * resolves to, re-resolved every interval (src/discovery/). */
enum discovery_record {
    DISCOVERY_A,                   /* IPv4 addresses, all on `port` */
    DISCOVERY_AAAA,                /* IPv6 addresses, all on `port` */
    DISCOVERY_SRV,                 /* targets and ports of SRV records (RFC 2782) */
};

#define DISCOVERY_MAX_BACKENDS 1024
#define DISCOVERY_MAX_RESOLVERS 8

struct conf_discovery {
    char *dns;                     /* the name, lower case, no final dot; NULL = off */
    enum discovery_record record;  /* type: default a */
    uint16_t port;                 /* a, aaaa: required; srv: none (the records say) */
    struct addr *resolvers;        /* none: the system's (/etc/resolv.conf) */
    size_t nresolvers;
    uint64_t interval_ms;          /* between resolutions; default 5000 */
    uint64_t timeout_ms;           /* a query's wait for a server, default 1000 */
    uint32_t max_backends;         /* backend slots; default 32 */
    bool respect_ttl;              /* resolve again when the answer's TTL runs out */
    struct conf_pos pos;
};

struct conf_health {
    enum health_type type;
    uint64_t interval_ms;          /* default 2000 */
    uint64_t unhealthy_interval_ms; /* while DOWN; default interval_ms */
    uint64_t timeout_ms;           /* default 1000; must be <= both intervals */
    uint32_t healthy_threshold;    /* default 2, >= 1 */
    uint32_t unhealthy_threshold;  /* default 2, >= 1 */
    /* type: http */
    char *path;                    /* default "/" */
    char *method;                  /* default "GET" */
    char *host;                    /* Host header; default: the backend's address */
    uint32_t status_min;           /* expect_status, default 200-399 */
    uint32_t status_max;
    char *expect_body;             /* substring the body must contain; NULL = any */
    uint32_t port;                 /* check this port instead of the backend's; 0 = same */
    bool initial_up;               /* initial_state: up; default down until the first pass */
};

/* retries: when and how often a failed try is sent again (http pools).
 * Connect failures always move on to the next backend, retries or not. */
struct conf_retries {
    uint32_t attempts;             /* extra tries after the first, default 0 (off) */
    bool on_connect_failure;       /* retry_on: connect_failure */
    bool on_reset;                 /* retry_on: reset (the backend closed or reset) */
    bool on_timeout;               /* retry_on: timeout (per_try_timeout ran out) */
    uint64_t on_status;            /* retry_on: status codes 500..563, bit (code - 500) */
    uint32_t budget_percent;       /* retries in flight ≤ this % of active requests, default 20 */
    uint32_t budget_min;           /* ...but always allow this many, default 3 */
    uint64_t per_try_timeout_ms;   /* 0 = upstream_response only */
    uint64_t backoff_ms;           /* base of the exponential backoff, default 25 */
    uint64_t retry_buffer;         /* request bodies up to this size are kept for replay, default 64k */
};

/* outlier_detection: passive ejection of backends that fail real traffic. */
struct conf_outlier {
    uint32_t consecutive_failures; /* failures in a row that eject; 0 = off */
    uint64_t ejection_time_ms;     /* × the backend's ejection multiplier, default 30000 */
    uint64_t max_ejection_time_ms; /* no ejection lasts longer; default max(300 s, ejection_time) */
    uint64_t interval_ms;          /* each one without an ejection lowers the multiplier
                                      by one, default 10000 */
    uint32_t max_ejection_percent; /* never eject more of the pool than this, default 50 */
};

/* circuit_breaker: beyond these, requests get 503 at once (http pools). */
struct conf_breaker {
    uint32_t max_connections;      /* upstream connections of the pool, open or idle */
    uint32_t max_pending_requests; /* requests waiting for a connection */
    uint32_t max_requests;         /* requests in flight */
};

/* sticky: cookie-based session affinity (http pools). */
struct conf_sticky {
    char *cookie;                  /* cookie name; NULL = sticky is off */
    uint64_t ttl_ms;               /* Max-Age of the cookie; 0 = a session cookie */
    char *path;                    /* Path attribute, default "/" */
    bool secure;                   /* Secure attribute, default off */
    bool http_only;                /* HttpOnly attribute, default on */
};

/* tls on a pool: sluice speaks TLS to its backends (http pools). */
struct conf_upstream_tls {
    bool verify;                 /* check the backend's certificate, default true */
    char *ca_file;               /* PEM bundle to check it against; NULL = the system's */
    char *server_name;           /* SNI, and the name the certificate must have;
                                    NULL = none sent, the certificate must hold the
                                    backend's IP address */
    char *cert, *key;            /* a client certificate for backends that ask; NULL = none */
};

struct conf_pool {
    char *name;
    struct conf_pos pos;
    enum balance_kind balance;
    enum hash_key_kind hash_key;   /* ring_hash/maglev; default source_ip */
    char *hash_key_name;           /* NAME of header:/cookie:/query:, else NULL */
    double hash_balance_factor;    /* bounded load for ring_hash/maglev/ip_hash;
                                      0 = off, else in (1, 10] */
    uint64_t connect_timeout_ms;   /* timeouts.connect, default 2000 */
    enum proxy_send send_proxy;    /* send_proxy: v1 | v2 */
    struct conf_pos send_proxy_pos;  /* where send_proxy is, for messages */
    struct conf_backend *backends; /* at least one, or none with discovery */
    size_t nbackends;
    struct conf_discovery discovery;  /* dns != NULL: backends come from DNS */
    struct conf_health health;
    /* http pools */
    uint64_t upstream_response_ms; /* timeouts.upstream_response: request sent → head
                                      received, and between body reads; default 30000 → 504 */
    uint64_t upstream_idle_ms;     /* timeouts.upstream_idle: idle keep-alive lifetime, default 60000 */
    uint32_t max_idle_connections; /* keep-alive connections kept per worker per backend, default 64 */
    bool mirror_target;            /* some route's mirror.pool (for its metrics) */
    bool http2;                    /* speak HTTP/2 to the backends (cleartext, prior knowledge):
                                      one multiplexed session per worker and backend */
    struct conf_retries retries;   /* http: retries (attempts 0 = only connect failures) */
    struct conf_breaker breaker;   /* http: circuit_breaker; 0 = no limit */
    struct conf_outlier outlier;   /* outlier_detection; consecutive_failures 0 = off */
    uint64_t slow_start_ms;        /* slow_start: weight ramp after recovery; 0 = off */
    uint32_t panic_threshold;      /* percent; below it, spread over all backends; 0 = off */
    uint64_t drain_timeout_ms;     /* a DRAINING backend's in-flight work is cut after this, default 30000 */
    struct conf_sticky sticky;     /* http: sticky sessions; cookie NULL = off */
    struct conf_upstream_tls *tls; /* http: TLS to the backends; NULL = plain */
};

/* tls on a listener: http → https, tcp → TLS-terminating TCP. */
struct conf_tls_cert {
    char *cert;                  /* PEM: the certificate, then its chain */
    char *key;                   /* PEM private key */
    char *ocsp;                  /* DER OCSP response to staple; NULL = none */
    bool ocsp_auto;              /* `ocsp: auto`: fetched from the responder */
};

struct conf_tls {
    struct conf_tls_cert *certs; /* at least one; the first is the default */
    size_t ncerts;
    int min_version;             /* 12 (TLS 1.2, the default) or 13 */
    char *client_ca;             /* mTLS: clients must show a certificate from these CAs */
};

/* mode: dns (docs/gslb.md). A region answers for a name while its pool
 * has a backend that can take traffic. */
struct conf_dns_region {
    char *name;
    struct conf_pool *pool;        /* resolved */
    struct conf_dns_addr {
        int family;                /* AF_INET or AF_INET6 */
        uint8_t addr[16];
    } *addresses;                  /* 1..16 */
    size_t naddresses;
    struct conf_cidr *clients;     /* the client networks it is nearest to; may be none */
    size_t nclients;
    /* With the listener's geoip database: the clients' countries (ISO 3166-1
     * alpha-2) and continents (AF AN AS EU NA OC SA) it is nearest to, each
     * as ('D' << 8 | 'E'). */
    uint16_t *countries;
    size_t ncountries;
    uint16_t *continents;
    size_t ncontinents;
    /* With the listener's geoip_asn database: the clients' autonomous
     * systems it is nearest to, sorted (for bisection). */
    uint32_t *asns;
    size_t nasns;
    /* location: where the region is, for clients that the geoip database
     * places (the nearest healthy region by great-circle distance). In
     * radians, with the latitude's cosine, as the haversine takes them. */
    bool located;
    double latitude_rad, longitude_rad, cos_latitude;
    uint32_t weight;               /* policy weighted: share of the unclaimed clients */
    uint64_t name_hash;            /* XXH3 of name: pick_weighted's seed */
};

/* A dns listener's zone: sluice is authoritative for every name under it
 * (NXDOMAIN with the SOA for names it has no record of) and answers the
 * apex's SOA and NS. */
#define DNS_MAX_NAMESERVERS 8
struct conf_dns_zone {
    char *name;                    /* lower case, no final dot */
    char **nameservers;            /* the NS records; the first is the SOA's MNAME */
    size_t nnameservers;
    char *hostmaster;              /* the SOA's RNAME, "hostmaster.example.com" */
    uint32_t negative_ttl_s;       /* SOA minimum and TTL: how long NXDOMAIN is cached; default 60 */
    uint32_t serial;               /* the SOA serial: when the config was loaded (Unix time) */
    char **between;                /* names between the apex and a record ("b.zone" for a
                                      record "a.b.zone"), which exist without records of
                                      their own: sorted, for bisection */
    size_t nbetween;
};

/* Whether a name is the zone or below it (both lower case). */
bool config_dns_in_zone(const char *name, const char *zone);

enum dns_policy {
    DNS_POLICY_FAILOVER,           /* unclaimed clients: the first healthy region */
    DNS_POLICY_WEIGHTED,           /* unclaimed clients: spread by regions[].weight */
};

#define DNS_MAX_ANSWER_REGIONS 8
#define DNS_MAX_REGIONS 32          /* per record */

struct conf_dns_record {
    char *name;                    /* lower case, no final dot */
    uint32_t ttl_s;                /* default 30 */
    enum dns_policy policy;
    uint32_t answers;              /* regions whose addresses an answer holds, 1..8, default 1 */
    struct conf_dns_region *regions;   /* in order of preference */
    size_t nregions;
};

/* udp and dns listeners take datagrams; the others accept connections. */
static inline bool listener_datagram(enum listener_mode m)
{
    return m == LISTENER_UDP || m == LISTENER_DNS;
}

struct conf_listener {
    char *name;
    struct conf_pos pos;
    char *bind_text;
    struct addr bind;
    struct conf_pos bind_pos;      /* the `bind` value, for "port in use" */
    bool freebind;                 /* IP_FREEBIND: bind an address not (yet) on this
                                      host, e.g. a keepalived VIP; default false */
    enum listener_mode mode;       /* required: tcp | udp */
    bool proxy_protocol_accept;    /* proxy_protocol: accept (tcp only) */
    char *pool_name;
    struct conf_pool *pool;        /* resolved; never NULL after a good load */
    uint64_t client_idle_ms;       /* timeouts.client_idle: tcp idle, default 600000;
                                      http keep-alive wait between requests, default 60000 */
    uint64_t udp_idle_ms;          /* timeouts.udp_idle (udp), default 30000 */
    uint32_t max_flows;            /* udp: flows per worker, default 65536 */
    uint32_t max_connections;      /* tcp, http: client connections open at once, all
                                      workers together; 0 = no limit */
    /* mode: http */
    struct conf_route *routes;     /* first match wins */
    size_t nroutes;
    struct conf_cidr *trusted_proxies;  /* peers whose X-Forwarded-For is believed */
    size_t ntrusted_proxies;
    uint64_t client_header_ms;     /* timeouts.client_header: whole head, default 10000 → 408 */
    uint64_t client_body_ms;       /* timeouts.client_body: between body reads, default 30000 */
    uint64_t tunnel_idle_ms;       /* timeouts.tunnel_idle: WebSocket/CONNECT, default 3600000 */
    uint64_t max_body_size;        /* bytes, default 0 = unlimited; larger → 413 */
    struct conf_path_norm paths;   /* normalize_path, merge_slashes, escaped_slashes */
    enum underscore_headers underscores;  /* headers_with_underscores; default allow */
    uint32_t max_request_line;     /* limits.max_request_line, default 8192 → 414 */
    uint32_t max_header_size;      /* limits.max_header_size, default 65536 → 431 */
    uint32_t max_headers;          /* limits.max_headers, default 100 → 431 */
    struct conf_rate_limit *rate_limit;  /* http: per request; tcp: per connection; NULL = none */
    struct conf_tls *tls;          /* NULL = plain */
    struct conf_auth *auth;        /* http: for requests to pools; NULL = none */
    bool http2;                    /* http: also speak HTTP/2 (ALPN h2 with tls, prior
                                      knowledge without); default false */
    struct conf_dns_record *dns_records;   /* dns: the names it answers for, sorted by name */
    size_t ndns_records;
    struct conf_dns_zone *dns_zone; /* dns: the zone it is authoritative for; NULL = names only */
    char *geoip_path;              /* dns: a MaxMind DB (GeoLite2/GeoIP2 Country or City) */
    struct MMDB_s *geoip;          /* ... opened at load (read-only, shared by the workers) */
    char *geoip_asn_path;          /* dns: a MaxMind DB with autonomous_system_number
                                      (GeoLite2-ASN, GeoIP2-ISP) */
    struct MMDB_s *geoip_asn;      /* ... opened at load (read-only, shared by the workers) */
};

/* admin: the admin API, metrics and dashboard (src/admin/). */
struct conf_admin {
    bool enabled;                  /* the `admin` block is present */
    char *listen_text;
    struct addr listen;            /* required in the block */
    struct conf_pos listen_pos;    /* the `listen` value, for "cannot bind" */
    bool loopback;                 /* listen is 127.0.0.0/8 or ::1 */
    char *token_file;
    char *token;                   /* token_file's content without trailing
                                      whitespace; NULL = no token. When set,
                                      every mutating call must carry it. */
};

/* peers: the other sluice instances that count shared rate limits with
 * this one (src/peers/). */
#define PEERS_MAX_NODES 32
struct conf_peers {
    struct addr listen;            /* UDP, where the peers' updates arrive */
    char *listen_text;
    struct conf_pos listen_pos;    /* the `listen` value */
    struct addr *nodes;            /* where this instance sends its updates */
    size_t nnodes;
    unsigned char *secret;         /* HMAC-SHA256 key of every message */
    size_t secret_len;
    uint64_t interval_ms;          /* between two updates, default 50 */
};

struct config {
    char *file;
    uint32_t workers;              /* 0 = auto (one per core) */
    enum log_level log_level;      /* log.level, default info */
    char *access_log;              /* log.access: NULL = off, "stdout", or a path */
    enum access_format access_format; /* log.format */
    uint64_t drain_timeout_ms;     /* graceful stop: how long in-flight work may go on, default 30000 */
    uint64_t shutdown_delay_ms;    /* graceful stop: /healthz says 503 this long before listeners close */
    struct conf_admin admin;
    struct conf_listener *listeners;
    size_t nlisteners;
    struct conf_pool *pools;
    size_t npools;
    size_t nrate_limits;           /* rate_limit blocks, listeners' and routes' */
    struct conf_peers *peers;      /* NULL = no peers */
};

/* Whether any listener or route has an `auth` block of type basic (whose
 * password hashing needs helper threads). */
bool config_uses_basic_auth(const struct config *cfg);

/* Load and validate PATH. Returns 0 and sets *out, or -1 after writing every
 * error to diag (nothing is returned then). Warnings are written either way. */
int config_load(const char *path, FILE *diag, struct config **out);

/* Same as config_load() for a config held in memory (tests, fuzzing, the admin
 * API). NAME is what messages print in place of a file name; buf need not be
 * NUL-terminated. */
int config_load_string(const char *name, const char *buf, size_t len, FILE *diag,
                       struct config **out);

/* Check that every listener's address can be bound now (a port held by another
 * process is an error at the `bind` value). Sockets bound with SO_REUSEPORT by
 * a running sluice of the same user do not count as in use. Returns the number
 * of errors written to diag. */
int config_check_binds(const struct config *cfg, FILE *diag);

void config_free(struct config *cfg);

/* Parsers for the scalar forms, shared with the admin API and tests.
 * Durations: "250ms", "2s", "5m", "1h" (a bare number is refused).
 * Sizes: "512", "16k", "1m", "1g" (powers of 1024).
 * Return 0 or -EINVAL. */
int config_parse_duration(const char *s, uint64_t *ms);
int config_parse_size(const char *s, uint64_t *bytes);

const char *config_balance_name(enum balance_kind b);

/* Every key the parser accepts, as dotted paths ("log.level",
 * "listeners[].timeouts.client_idle"), NULL-terminated. Mappings and lists are
 * listed as keys too ("log", "listeners"). docs/configuration.md documents
 * exactly this list. */
extern const char *const config_known_keys[];

#endif
