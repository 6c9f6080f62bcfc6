/* Shared inside src/route/ only: the string hash map the table is indexed
 * with, the per-condition matchers and the reading of a rule's host.
 * Nothing outside this folder includes it (but tests/unit/test_route.c);
 * route.h is the folder's face. */
#ifndef SLUICE_ROUTE_INTERNAL_H
#define SLUICE_ROUTE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "config/config.h"
#include "route/route.h"

#define ROUTE_NONE UINT32_MAX

/* The value of a base64 digit (RFC 4648; url: the base64url alphabet), or
 * -1 (auth.c; Basic credentials and JWTs). */
int route_b64_digit(unsigned char ch, bool url);

/* The request's Authorization field (auth.c), or NULL. *twice: it came more
 * than once, and the request is refused whatever the first one holds:
 * sluice would check one and the backend might read another (NGINX refuses
 * a second one too). */
const struct h1_header *route_auth_field(const struct h1_request *req, bool *twice);

/* ---- the JSON reader (json.c): JWTs and JSON Web Key Sets ----
 * Strict RFC 8259 over start..end, nothing built: an object's members and
 * an array's elements go to a callback (none: walked over). Containers
 * nest up to JSON_MAX_DEPTH. On failure why says what was wrong (static
 * text) and p points at it. */
#define JSON_MAX_DEPTH 16
struct jread {
    const char *start, *p, *end;
    const char *why;             /* the first problem met; NULL while none */
};
typedef bool (*jread_elem_fn)(struct jread *r, void *ctx);
/* key: the member's name, "" when longer than 15 bytes (no name sluice
 * reads is). */
typedef bool (*jread_member_fn)(struct jread *r, const char *key, void *ctx);
void jread_ws(struct jread *r);
/* A string; its UTF-8 into out (NUL-ended, cut at size - 1) when out is
 * given. *cut is set when it did not fit, or holds a NUL ("\u0000"), which
 * a C string cannot: "api\u0000x" must not read as "api". */
bool jread_string(struct jread *r, char *out, size_t size, bool *cut);
/* A number; into *v its integer part when it is a plain integer or decimal
 * that fits (an exponent or a huge value leaves *ok false). */
bool jread_number(struct jread *r, int64_t *v, bool *ok);
/* Any value, at depth (the number of containers around it). */
bool jread_value(struct jread *r, int depth);
/* At '[' or '{': the container whose contents are at depth. */
bool jread_array(struct jread *r, int depth, jread_elem_fn fn, void *ctx);
bool jread_object(struct jread *r, int depth, jread_member_fn fn, void *ctx);
/* 1-based line and column (in characters) of at, for messages. */
void jread_position(const struct jread *r, const char *at, int *line, int *col);

/* ---- hash map (hmap.c) ----
 * Byte string + 32-bit tag → uint32_t, open addressing, XXH3 with the tag as
 * seed. Keys are not copied: they must outlive the map. Built once, then
 * only read (lookups do not write, so readers may share it). */
struct hmap_slot {
    uint64_t hash;
    const char *key;             /* NULL: empty slot */
    uint32_t len;
    uint32_t tag;
    uint32_t val;
};

struct hmap {
    struct hmap_slot *slots;
    uint32_t mask;               /* capacity - 1; capacity a power of two */
    uint32_t n;
};

/* The value slot for key, inserting it with value ROUTE_NONE when absent
 * (*created says which). NULL when out of memory. The pointer is valid until
 * the next insertion. */
uint32_t *hmap_put(struct hmap *m, const char *key, uint32_t len, uint32_t tag, bool *created);
/* The value for key, or ROUTE_NONE. */
uint32_t hmap_get(const struct hmap *m, const char *key, uint32_t len, uint32_t tag);
void hmap_free(struct hmap *m);

/* ---- a rule's host (host.c) ---- */
enum route_host_kind {
    ROUTE_HOST_ANY,              /* no host condition */
    ROUTE_HOST_EXACT,            /* name = the host */
    ROUTE_HOST_WILDCARD,         /* "*.suffix": name = the suffix */
};

/* Classify a rule's host; *name and *len give the name compared (for a wildcard
 * the part after "*."), a trailing dot left out. */
enum route_host_kind route_host_of(const struct conf_route *r, const char **name, size_t *len);

/* ---- path_regex (regex.c) ----
 * Compiled with no options (the path is bytes, not UTF-8), JIT when PCRE2
 * can; matched unanchored with a per-thread match data block, created on a
 * thread's first regex match and freed at its exit. */
pcre2_code *route_regex_compile(const char *pattern);
bool route_regex_match(const pcre2_code *re, struct h1_slice subject);

/* ---- shadowed rules (shadow.c) ---- */
/* route_check_shadowed() the slow way, every earlier rule against every
 * later one: the same output. */
int route_shadow_plain(const struct conf_listener *l, FILE *diag);

/* ---- conditions other than host and path (cond.c) ---- */
bool route_method_ok(const struct conf_route *c, const struct route_request *r);
bool route_headers_ok(const struct conf_route *c, const struct route_request *r);
bool route_cookies_ok(const struct conf_route *c, const struct route_request *r);
bool route_query_ok(const struct conf_route *c, const struct route_request *r);
bool route_source_ok(const struct conf_route *c, const struct route_request *r);

#endif
