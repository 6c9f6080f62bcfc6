/* Shared inside src/config/ only: the positioned diagnostics collector, the
 * YAML node tree and the typed value readers the schema code is built from.
 * Nothing outside this folder includes it; config.h is the folder's face. */
#ifndef SLUICE_CONFIG_INTERNAL_H
#define SLUICE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- diagnostics (diag.c) ----
 * Messages are collected, then printed sorted by position, so the output reads
 * top to bottom however the checks happen to be ordered. */

/* Past this many, errors are counted but not kept: one mistake in a list
 * that aliases multiply must not print a million lines. */
#define CONFIG_MAX_MESSAGES 1000

struct config_msg {
    int line, col;                 /* 1-based; 0 = no position */
    bool warning;
    size_t seq;                    /* keeps the sort stable */
    char *text;
};

/* Owner: the loader, for the duration of one load. */
struct config_diag {
    const char *file;              /* the name printed before LINE:COL */
    struct config_msg *msgs;
    size_t n, cap;
    int errors;
    size_t dropped;                /* errors past CONFIG_MAX_MESSAGES */
    bool oom;                      /* a message could not be stored */
};

void config_diag_error(struct config_diag *d, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void config_diag_warning(struct config_diag *d, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Sorts, prints "FILE:LINE:COL: error: MSG" lines to out, frees the messages. */
void config_diag_flush(struct config_diag *d, FILE *out);

/* ---- YAML tree (yaml.c) ----
 * Our own small tree, built from libfyaml's event stream, because every node
 * (mappings and lists included) needs its exact start position and libfyaml
 * 0.7's document API only exposes positions for scalars. Aliases share the
 * anchored node instead of copying it, so "billion laughs" input stays
 * linear in memory. */

enum config_node_kind {
    CONFIG_NODE_NULL,              /* empty value, ~, null */
    CONFIG_NODE_SCALAR,
    CONFIG_NODE_MAP,
    CONFIG_NODE_SEQ,
};

struct config_node;

struct config_pair {
    struct config_node *key, *value;
};

struct config_node {
    enum config_node_kind kind;
    int line, col;                 /* 1-based start of the node */
    char *text;                    /* scalar: the value, NUL-terminated */
    size_t len;                    /* scalar: length (may hold a NUL byte) */
    bool plain;                    /* scalar: unquoted and untagged */
    struct config_pair *pairs;     /* map: n pairs, merge keys applied */
    struct config_node **items;    /* seq: n items */
    size_t n, cap;
    struct config_node *next_alloc; /* every node of a tree, for freeing */
};

/* Owner: the loader; config_yaml_free() releases every node. */
struct config_yaml {
    struct config_node *root;      /* NULL when the stream holds no document */
    struct config_node *all;
};

/* Parses buf into y. Syntax errors, duplicate keys and bad aliases go to d.
 * Returns 0, or -1 when no usable tree came out (y is still safe to free). */
int config_yaml_parse(const char *buf, size_t len, struct config_diag *d,
                      struct config_yaml *y);
void config_yaml_free(struct config_yaml *y);

/* The value of KEY in a mapping, or NULL. */
const struct config_node *config_map_get(const struct config_node *map, const char *key);
/* The pair whose key is KEY, or NULL (for errors pointing at the key). */
const struct config_pair *config_map_pair(const struct config_node *map, const char *key);

/* "a mapping", "a list", "a string", "nothing": for "expected X, got Y". */
const char *config_node_kind_name(const struct config_node *n);

/* ---- schema and typed readers (schema.c) ----
 * OWNER names the object a message is about ("listener 'web'", "" at the top
 * level); PATH is the key below it ("timeouts.client_idle"). Each reader
 * reports its own error at the value node and returns -1, or returns 0. */

/* Reports every key of MAP that config_known_keys has no entry
 * "PREFIX.key" for (PREFIX "" = top level, where "x-..." keys are free).
 * WHERE is for the message: "unknown key 'X' in WHERE; expected one of: ..."
 * ("at WHERE" for the top level). */
void config_schema_check_keys(struct config_diag *d, const struct config_node *map,
                              const char *prefix, const char *where);

int config_want_map(struct config_diag *d, const char *owner, const char *path,
                    const struct config_node *n);
int config_want_seq(struct config_diag *d, const char *owner, const char *path,
                    const struct config_node *n);
int config_want_string(struct config_diag *d, const char *owner, const char *path,
                       const struct config_node *n, const char **out);
int config_want_duration(struct config_diag *d, const char *owner, const char *path,
                         const struct config_node *n, uint64_t *ms);
/* A nested block NAME of OWNER (rate_limit, auth, tls, sticky): a mapping
 * whose keys are checked against "PREFIX.NAME", unknown ones reported "in
 * NAME of OWNER". 0, or -1 reported at map. */
int config_want_block(struct config_diag *d, const char *owner, const char *prefix,
                      const char *name, const struct config_node *map);
/* A plain (unquoted) true or false. */
int config_want_bool(struct config_diag *d, const char *owner, const char *path,
                     const struct config_node *n, bool *out);
/* RFC 9110 tchar, 1..128 of them: header and cookie names are tokens. */
bool config_is_token(const char *s);
int config_want_uint(struct config_diag *d, const char *owner, const char *path,
                     const struct config_node *n, uint64_t min, uint64_t max,
                     uint64_t *out);
/* map[key], when present, as a whole number from min to max into *out
 * (left alone when absent or wrong; a wrong one is reported at `path`). */
void config_read_u32(struct config_diag *d, const char *owner, const struct config_node *map,
                     const char *key, const char *path, uint64_t min, uint64_t max,
                     uint32_t *out);
/* NAMES: the accepted words, NULL-terminated; index returned in *out.
 * LATER: words that name features not built yet, for a kinder message. */
int config_want_enum(struct config_diag *d, const char *owner, const char *path,
                     const struct config_node *n, const char *const *names,
                     const char *const *later, int *out);

/* Like config_want_duration, and 0 is refused (a timeout of nothing). */
int config_want_timeout(struct config_diag *d, const char *owner, const char *path,
                        const struct config_node *n, uint64_t *ms);
/* A listener, pool or backend name: 1..128 of letters, digits, . _ - : [ ]
 * (names end up in metric labels, admin URLs and `ctl POOL/BACKEND`). */
int config_want_name(struct config_diag *d, const char *owner, const char *path,
                     const struct config_node *n, const char **out);
/* Files a config names are checked to be regular files before they are
 * opened: opening a FIFO blocks the load until someone writes to it, and a
 * device may never end. config_regular_file(): 0 when FILE is a regular file
 * of at most MAX bytes (0: any size), 1 when it is not, -errno when stat()
 * fails. config_want_regular_file(): 0 for a regular file, or -1 reported at
 * n as "OWNER: PATH: cannot read 'FILE': why" or "...: 'FILE' is not WHAT". */
int config_regular_file(const char *file, uint64_t max);
int config_want_regular_file(struct config_diag *d, const char *owner, const char *path,
                             const struct config_node *n, const char *file, const char *what,
                             uint64_t max);
/* "OWNER: missing required key 'KEY'" at the mapping that lacks it. */
void config_missing(struct config_diag *d, const char *owner, const struct config_node *map,
                    const char *key);
/* strdup that reports running out of memory as an error. */
char *config_strdup(struct config_diag *d, const char *s);
/* Fills pos from a node, with file = cfg->file. */
struct config;
struct conf_pos;
void config_pos_set(struct conf_pos *pos, const struct config *cfg, const struct config_node *n);

/* ---- the sections (pool.c, listener.c) ----
 * Pools first: listeners resolve their `pool` against cfg->pools. */
void config_read_pools(struct config_diag *d, struct config *cfg, const struct config_node *seq);
void config_read_listeners(struct config_diag *d, struct config *cfg,
                           const struct config_node *seq);
struct conf_pool *config_find_pool(struct config *cfg, const char *name);
/* hash_key and hash_balance_factor of a pool whose balance is already read
 * (pool_hash.c). */
struct conf_pool;
void config_read_pool_hash(struct config_diag *d, struct conf_pool *p, const char *owner,
                           const struct config_node *map);
/* What a request is keyed by (hash_key, rate_limit.key): source_ip, path,
 * header:NAME, cookie:NAME, query:NAME, and with allow_global "global".
 * *name gets NAME (malloc'd) for the named kinds. 0, or -1 reported at n. */
enum hash_key_kind;
int config_read_request_key(struct config_diag *d, const char *owner, const char *path,
                            const struct config_node *n, bool allow_global,
                            enum hash_key_kind *kind, char **name);

/* ---- admin (admin.c) ---- */
void config_read_admin(struct config_diag *d, struct config *cfg, const struct config_node *map);
void config_free_admin(struct config *cfg);

/* ---- http listeners (route.c) ---- */
struct conf_listener;
void config_read_routes(struct config_diag *d, struct config *cfg, struct conf_listener *l,
                        const char *owner, const struct config_node *seq);
/* tcp listeners: only what a connection has (server name, source) and a pool. */
void config_check_tcp_routes(struct config_diag *d, const struct conf_listener *l);
struct conf_cidr;
/* A list of addresses and ADDRESS/BITS blocks (host bits zeroed) into a
 * new array *out of *nout; bad entries are reported at `key` and left out. */
void config_read_cidrs(struct config_diag *d, const char *owner, const char *key,
                       const struct config_node *seq, struct conf_cidr **out, size_t *nout);
/* config/dns.c: a dns listener's records, and freeing them. */
void config_read_dns_records(struct config_diag *d, struct config *cfg, struct conf_listener *l,
                             const char *owner, const struct config_node *seq);
/* A dns listener's geoip database, opened so that a bad file is a config
 * error; before its records, whose regions may name countries. */
void config_read_dns_geoip(struct config_diag *d, struct conf_listener *l, const char *owner,
                           const struct config_node *n);
/* Its geoip_asn database (autonomous system numbers), the same way;
 * before its records, whose regions may name ASNs. */
void config_read_dns_geoip_asn(struct config_diag *d, struct conf_listener *l, const char *owner,
                               const struct config_node *n);
/* A dns listener's zone; before its records, which must lie in it. */
void config_read_dns_zone(struct config_diag *d, struct conf_listener *l, const char *owner,
                          const struct config_node *map);
void config_free_dns_records(struct conf_listener *l);
void config_read_trusted(struct config_diag *d, struct conf_listener *l, const char *owner,
                         const struct config_node *seq);
void config_free_routes(struct conf_listener *l);

/* ---- pool failure policies (pool_policy.c) ---- */
struct conf_pool;
void config_read_pool_policies(struct config_diag *d, struct conf_pool *p, const char *owner,
                               const struct config_node *map);
/* rate_limit (rate_limit.c): a listener's (prefix "listeners[]") or a
 * route's ("listeners[].routes[]"). tcp: only source_ip and global keys.
 * label: "listener" or "routeN". Returns the block, or NULL after errors. */
struct conf_rate_limit *config_read_rate_limit(struct config_diag *d, struct config *cfg,
                                               const char *owner, const char *prefix,
                                               const struct config_node *map, bool tcp,
                                               const char *label);
void config_free_rate_limit(struct conf_rate_limit *rl);

/* tls (tls.c): a listener's block; certificates are loaded to check them.
 * Returns the block, or NULL after errors. */
struct conf_tls *config_read_tls(struct config_diag *d, const char *owner,
                                 const struct config_node *map);
void config_free_tls(struct conf_tls *t);
/* A pool's tls block (towards its backends). */
struct conf_upstream_tls *config_read_upstream_tls(struct config_diag *d, const char *owner,
                                                   const struct config_node *map);
void config_free_upstream_tls(struct conf_upstream_tls *t);

/* auth (auth.c): a listener's or a route's block (prefix "listeners[]" or
 * "listeners[].routes[]"); the users file is read and every hash checked,
 * type external's pool found in cfg's pools. NULL after errors. */
struct conf_auth *config_read_auth(struct config_diag *d, struct config *cfg, const char *owner,
                                   const char *prefix, const struct config_node *map);
void config_free_auth(struct conf_auth *a);

/* A numeric IP:PORT or [IPv6]:PORT (port 0 refused) into *out; 0, or -1
 * reported at n as "OWNER: PATH: ...". */
struct addr;
int config_want_addr_port(struct config_diag *d, const char *owner, const char *path,
                          const struct config_node *n, struct addr *out);
/* A key file of 32 to 1000 bytes (trailing newlines are not key), read
 * into a new buffer (secret.c). 0, or -1 reported at n. */
int config_read_secret_file(struct config_diag *d, const char *owner, const char *path,
                            const struct config_node *n, unsigned char **out, size_t *out_len);
/* The top-level peers block (peers.c). */
void config_read_peers(struct config_diag *d, struct config *cfg, const struct config_node *map);
void config_free_peers(struct config *cfg);
/* discovery (pool_discovery.c): backends from DNS. */
void config_read_pool_discovery(struct config_diag *d, struct conf_pool *p, const char *owner,
                                const struct config_node *map);
void config_free_discovery(struct conf_pool *p);
/* sticky (pool_sticky.c). */
void config_read_pool_sticky(struct config_diag *d, struct conf_pool *p, const char *owner,
                             const struct config_node *map);
/* The http-only keys of a health_check block (health_http.c). */
void config_read_health_http(struct config_diag *d, struct conf_pool *p, const char *owner,
                             const struct config_node *map);
void config_free_health(struct conf_pool *p);

/* ---- duplicates (schema.c) ----
 * Sort-based, so a hostile file with many aliased entries costs n log n, not
 * n squared. Fill key and index, call config_find_dups(); afterwards each
 * entry with first != CONFIG_NO_DUP repeats the key of entry `first` (the
 * lowest index with that key). Entries come back sorted by key. */
#define CONFIG_NO_DUP ((size_t)-1)
struct config_dup {
    const char *key;
    size_t index;
    size_t first;
};
void config_find_dups(struct config_dup *items, size_t n);

/* Limits that keep a hostile file (aliases multiply entries) small. */
#define CONFIG_MAX_LISTENERS 10000
#define CONFIG_MAX_POOLS 10000
#define CONFIG_MAX_BACKENDS 100000      /* over all pools together */

/* Formats "OWNER: PATH: " (or less when either is empty) into buf. */
const char *config_where(char *buf, size_t size, const char *owner, const char *path);

/* A copy of user text safe to put in a one-line message: control bytes become
 * '?', long text is cut with "...". Returns buf. */
const char *config_show(char *buf, size_t size, const char *s);

/* MS written back the way a user would ("500ms", "2s", "10m"), for messages. */
const char *config_duration_text(char *buf, size_t size, uint64_t ms);

#endif
