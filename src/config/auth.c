/* An `auth` block, on a listener or a route: HTTP Basic against a users
 * file in htpasswd's format, or JWT bearer tokens against one key or a
 * JSON Web Key Set. Files are read with the config, so a bad line is an
 * error of `sluice check` and of a reload, with its line. How requests are
 * checked is in route/auth.c and route/jwt.c. */
#include "config/config.h"
#include "config/internal.h"

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tls.h"
#include "route/jwks.h"

#define AUTH_MAX_USERS 100000

/* Hashes sluice verifies: slow, salted crypt(3) schemes only. Unsalted or
 * fast ones (htpasswd's default $apr1$ MD5, {SHA}, plain text) are refused
 * with a way out. */
static const char *check_hash(const char *h)
{
    static const char *const ok[] = {"$2a$", "$2b$", "$2y$", "$5$", "$6$", "$y$", "$gy$", NULL};
    bool known = false;

    for (const char *const *p = ok; *p; p++)
        known |= strncmp(h, *p, strlen(*p)) == 0;
    if (strncmp(h, "$apr1$", 6) == 0 || strncmp(h, "$1$", 3) == 0 || strncmp(h, "{SHA}", 5) == 0)
        return "an MD5 or SHA-1 hash, too fast to resist guessing; make it with "
               "`htpasswd -B` (bcrypt) or `openssl passwd -6`";
    if (!known)
        return "not a bcrypt ($2b$), SHA-crypt ($5$, $6$) or yescrypt ($y$) hash";
    if (crypt_checksalt(h) != CRYPT_SALT_OK)
        return "a malformed or disabled hash";
    return NULL;
}

/* By name, then by line: a name listed twice sorts its first line first. */
static int user_order(const void *x, const void *y)
{
    const struct conf_user *a = x, *b = y;
    int c = strcmp(a->name ? a->name : "", b->name ? b->name : "");   /* NULL: out of memory */

    return c ? c : (a->line > b->line) - (a->line < b->line);
}

/* user:hash lines; blank lines and lines starting with '#' are skipped. */
static void read_users(struct config_diag *d, const char *owner, const struct config_node *n,
                       const char *path, struct conf_auth *a)
{
    FILE *f;
    int errors = d->errors;
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;

    if (config_want_regular_file(d, owner, "auth.users_file", n, path,
                                 "a users file (a regular file up to 16m)", 16 << 20) < 0)
        return;
    if (!(f = fopen(path, "r"))) {
        config_diag_error(d, n->line, n->col, "%s: auth.users_file: cannot read '%s': %s", owner,
                          path, strerror(errno));
        return;
    }
    while ((len = getline(&line, &cap, f)) >= 0) {
        char *colon;
        const char *why;

        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        colon = strchr(line, ':');
        if (!colon || colon == line) {
            config_diag_error(d, n->line, n->col, "%s: auth.users_file '%s' line %zu: expected "
                              "user:hash", owner, path, lineno);
            continue;
        }
        *colon = '\0';
        if ((why = check_hash(colon + 1))) {
            config_diag_error(d, n->line, n->col, "%s: auth.users_file '%s' line %zu: user "
                              "'%s': %s", owner, path, lineno, line, why);
            continue;
        }
        if (a->nusers >= AUTH_MAX_USERS) {
            config_diag_error(d, n->line, n->col, "%s: auth.users_file '%s': more than %d users",
                              owner, path, AUTH_MAX_USERS);
            break;
        }
        if (a->nusers % 64 == 0) {
            struct conf_user *u = realloc(a->users, (a->nusers + 64) * sizeof(*u));
            if (!u) {
                config_diag_error(d, n->line, n->col, "out of memory");
                break;
            }
            a->users = u;
        }
        a->users[a->nusers].name = config_strdup(d, line);
        a->users[a->nusers].hash = config_strdup(d, colon + 1);
        a->users[a->nusers].line = lineno;
        a->nusers++;
    }
    free(line);
    fclose(f);
    /* Sorted by name: a request's user is found by binary search, and a
     * name listed twice sits next to itself (no scan per line). */
    if (a->nusers)
        qsort(a->users, a->nusers, sizeof(*a->users), user_order);
    for (size_t i = 1; i < a->nusers; i++)
        if (a->users[i].name && a->users[i - 1].name &&
            strcmp(a->users[i].name, a->users[i - 1].name) == 0)
            config_diag_error(d, n->line, n->col, "%s: auth.users_file '%s' line %zu: user '%s' "
                              "appears twice", owner, path, a->users[i].line, a->users[i].name);
    if (a->nusers == 0 && d->errors == errors)
        config_diag_error(d, n->line, n->col, "%s: auth.users_file '%s' has no users", owner, path);
}

/* A warning about a key jwks_file's set skipped, at the jwks_file key. */
struct jwks_warn_ctx {
    struct config_diag *d;
    const char *owner, *path;
    const struct config_node *n;
};

static void jwks_file_warning(void *ctx, int line, int col, const char *text)
{
    struct jwks_warn_ctx *w = ctx;

    config_diag_warning(w->d, w->n->line, w->n->col, "%s: auth.jwks_file '%s' line %d col %d: %s",
                        w->owner, w->path, line, col, text);
}

/* jwks_file: the set is read with the config, so a bad one is an error of
 * `sluice check` and of a reload, with its own line and column. */
static void read_jwks_file(struct config_diag *d, const char *owner, const struct config_node *n,
                           struct conf_auth *a)
{
    struct jwks_warn_ctx w = {d, owner, NULL, n};
    struct jwks_error err;
    struct jwks_set *set;
    char *doc;
    size_t len;
    FILE *f;

    if (config_want_string(d, owner, "auth.jwks_file", n, &w.path) < 0 ||
        config_want_regular_file(d, owner, "auth.jwks_file", n, w.path,
                                 "a JWKS file (a regular file up to 1m)", JWKS_FILE_MAX_BYTES) < 0)
        return;
    if (!(f = fopen(w.path, "r"))) {
        config_diag_error(d, n->line, n->col, "%s: auth.jwks_file: cannot read '%s': %s", owner,
                          w.path, strerror(errno));
        return;
    }
    if (!(doc = malloc(JWKS_FILE_MAX_BYTES + 1))) {
        fclose(f);
        config_diag_error(d, n->line, n->col, "out of memory");
        return;
    }
    len = fread(doc, 1, JWKS_FILE_MAX_BYTES + 1, f);
    fclose(f);
    if (len > JWKS_FILE_MAX_BYTES)
        config_diag_error(d, n->line, n->col, "%s: auth.jwks_file: '%s' is larger than 1m", owner,
                          w.path);
    else if (!(set = jwks_parse(doc, len, true, jwks_file_warning, &w, &err)))
        config_diag_error(d, n->line, n->col, "%s: auth.jwks_file '%s' line %d col %d: %s", owner,
                          w.path, err.line, err.col, err.text);
    else if (!(a->jwks = jwks_source_fixed(set)))
        config_diag_error(d, n->line, n->col, "out of memory");
    explicit_bzero(doc, len < JWKS_FILE_MAX_BYTES ? len : JWKS_FILE_MAX_BYTES);
    free(doc);
}

/* jwks_url: checked and made ready here; fetched by route/jwks_fetch.c's
 * thread once sluice runs (never by `sluice check`). */
static void read_jwks_url(struct config_diag *d, const char *owner, const struct config_node *map,
                          const struct config_node *n, struct conf_auth *a)
{
    const struct config_node *rn = config_map_get(map, "jwks_refresh");
    const struct config_node *cn = config_map_get(map, "jwks_ca");
    uint64_t refresh_ms = JWKS_REFRESH_DEFAULT_MS;
    const char *url, *ca = NULL;
    char err[512];
    int errors = d->errors;

    if (config_want_string(d, owner, "auth.jwks_url", n, &url) < 0)
        return;
    if (rn && config_want_timeout(d, owner, "auth.jwks_refresh", rn, &refresh_ms) == 0 &&
        (refresh_ms < 1000 || refresh_ms > 86400000))
        config_diag_error(d, rn->line, rn->col, "%s: auth.jwks_refresh: from 1s to 24h", owner);
    if (cn && config_want_string(d, owner, "auth.jwks_ca", cn, &ca) == 0)
        config_want_regular_file(d, owner, "auth.jwks_ca", cn, ca,
                                 "a CA bundle (a regular PEM file up to 16m)", 16 << 20);
    if (d->errors != errors)
        return;
    if (!(a->jwks = jwks_source_url(url, ca, refresh_ms, err, sizeof(err)))) {
        /* A CA bundle OpenSSL cannot read is jwks_ca's fault. */
        bool ca_fault = cn && strncmp(err, "cannot load CA", 14) == 0;
        const struct config_node *at = ca_fault ? cn : n;
        config_diag_error(d, at->line, at->col, "%s: auth.%s: %s", owner,
                          ca_fault ? "jwks_ca" : "jwks_url", err);
    }
}

/* type jwt: exactly one of key_file (a PEM public key: RS256 or ES256 by
 * its type), secret_file (HS256, at least 32 bytes), jwks_file and
 * jwks_url (a key set: the token's kid picks the key), and the claims to
 * check. */
static void read_jwt(struct config_diag *d, const char *owner, const struct config_node *map,
                     struct conf_auth *a)
{
    const struct config_node *kn = config_map_get(map, "key_file");
    const struct config_node *sn = config_map_get(map, "secret_file");
    const struct config_node *fn = config_map_get(map, "jwks_file");
    const struct config_node *un = config_map_get(map, "jwks_url");
    const struct config_node *n;
    const char *s;
    char err[512];

    a->clock_skew_ms = 60000;
    if ((n = config_map_get(map, "users_file")))
        config_diag_error(d, n->line, n->col, "%s: auth.users_file only applies to type basic",
                          owner);
    if (!un) {
        static const char *const url_keys[] = {"jwks_refresh", "jwks_ca", NULL};
        for (const char *const *k = url_keys; *k; k++)
            if ((n = config_map_get(map, *k)))
                config_diag_error(d, n->line, n->col, "%s: auth.%s only applies with jwks_url",
                                  owner, *k);
    }
    if ((kn != NULL) + (sn != NULL) + (fn != NULL) + (un != NULL) != 1) {
        config_diag_error(d, map->line, map->col, "%s: auth: type jwt needs key_file (RS256, "
                          "ES256) or secret_file (HS256), or a key set (jwks_file or jwks_url): "
                          "one of them", owner);
    } else if (kn && config_want_string(d, owner, "auth.key_file", kn, &s) == 0) {
        /* A missing file is the loader's error, with OpenSSL's words. */
        if (config_regular_file(s, 1 << 20) > 0)
            config_diag_error(d, kn->line, kn->col, "%s: auth.key_file: '%s' is not a PEM file "
                              "(a regular file up to 1m)", owner, s);
        else if (!(a->jwt_key = tls_public_key_load(s, &a->jwt_alg, err, sizeof(err))))
            config_diag_error(d, kn->line, kn->col, "%s: auth.key_file: %s", owner, err);
    } else if (sn && config_read_secret_file(d, owner, "auth.secret_file", sn, &a->jwt_secret,
                                             &a->jwt_secret_len) == 0) {
        a->jwt_alg = JWT_HS256;
    } else if (fn) {
        read_jwks_file(d, owner, fn, a);
    } else if (un) {
        read_jwks_url(d, owner, map, un, a);
    }
    if ((n = config_map_get(map, "issuer")) &&
        config_want_string(d, owner, "auth.issuer", n, &s) == 0)
        a->issuer = config_strdup(d, s);
    if ((n = config_map_get(map, "audience")) &&
        config_want_string(d, owner, "auth.audience", n, &s) == 0)
        a->audience = config_strdup(d, s);
    if ((n = config_map_get(map, "clock_skew")))
        config_want_duration(d, owner, "auth.clock_skew", n, &a->clock_skew_ms);
}

/* ---- type external (proxy/ext_auth.c does the checking) ---- */

#define EXT_AUTH_MAX_FIELDS 32
#define EXT_AUTH_MAX_PATH 1024

/* Fields no list may name, and why: sluice writes them itself (framing,
 * hop-by-hop fields, the check's own description of the request, the
 * forwarding fields it vouches for towards a backend). */
static const char *const ext_framing[] = {"content-length", "transfer-encoding", "connection",
                                          "keep-alive", "te", "trailer", "upgrade", NULL};
static const char *const ext_check_own[] = {
    "host", "expect", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
    "x-forwarded-method", "x-forwarded-uri", "x-original-method", "x-original-uri",
    "x-original-url", "x-request-id", NULL};
static const char *const ext_upstream_own[] = {
    "host", "expect", "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
    "x-real-ip", "x-request-id", "x-client-cert-subject", "proxy", NULL};

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

static void config_free_ext_auth(struct conf_ext_auth *e)
{
    char **lists[] = {e ? e->request_headers : NULL, e ? e->upstream_headers : NULL,
                      e ? e->client_headers : NULL};
    size_t ns[] = {e ? e->nrequest_headers : 0, e ? e->nupstream_headers : 0,
                   e ? e->nclient_headers : 0};

    if (!e)
        return;
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < ns[k]; i++)
            free(lists[k][i]);
        free(lists[k]);
    }
    free(e->pool_name);
    free(e->path);
    free(e);
}

/* A list of field names (tokens, stored lowercased, each once), none of
 * them in `refused` (the message says why). which: "request_headers", ... */
static void read_field_list(struct config_diag *d, const char *owner, const char *which,
                            const struct config_node *seq, const char *const *refused,
                            const char *why, char ***out, size_t *nout)
{
    char path[64];

    snprintf(path, sizeof(path), "auth.%s", which);
    if (config_want_seq(d, owner, path, seq) < 0)
        return;
    if (seq->n > EXT_AUTH_MAX_FIELDS) {
        config_diag_error(d, seq->line, seq->col, "%s: %s: at most %d field names", owner, path,
                          EXT_AUTH_MAX_FIELDS);
        return;
    }
    if (!(*out = calloc(seq->n ? seq->n : 1, sizeof(**out)))) {
        config_diag_error(d, seq->line, seq->col, "out of memory");
        return;
    }
    for (size_t i = 0; i < seq->n; i++) {
        const struct config_node *n = seq->items[i];
        const char *s;
        char *low;

        if (config_want_string(d, owner, path, n, &s) < 0)
            continue;
        if (!config_is_token(s) || strlen(s) != n->len) {
            char shown[96];
            config_diag_error(d, n->line, n->col, "%s: %s: '%s' is not a header field name "
                              "(1..128 letters, digits and !#$%%&'*+-.^_`|~)", owner, path,
                              config_show(shown, sizeof(shown), s));
            continue;
        }
        if (!(low = config_strdup(d, s)))
            continue;
        for (char *c = low; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        if (in_list(low, ext_framing) || in_list(low, refused) ||
            (refused == ext_upstream_own && strncmp(low, "proxy-", 6) == 0)) {
            config_diag_error(d, n->line, n->col, "%s: %s: '%s' %s", owner, path, s,
                              in_list(low, ext_framing) ? "is a hop-by-hop or framing field, "
                              "which sluice writes itself" : why);
            free(low);
            continue;
        }
        for (size_t j = 0; j < *nout; j++) {
            if (strcmp((*out)[j], low) == 0) {
                config_diag_error(d, n->line, n->col, "%s: %s: '%s' is listed twice", owner,
                                  path, s);
                free(low);
                low = NULL;
                break;
            }
        }
        if (low)
            (*out)[(*nout)++] = low;
    }
}

/* The check's request target: origin-form, printable ASCII, a query
 * allowed (it is sent as written, ahead of nothing: the client's path goes
 * in X-Original-URI). */
static bool ext_path_ok(const char *s, size_t len)
{
    if (len == 0 || len > EXT_AUTH_MAX_PATH || s[0] != '/' || strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '#')
            return false;
    return true;
}

/* type external: pool (required), path, timeout, failure and the three
 * field lists. Keys of the other types are refused by name. */
static void read_external(struct config_diag *d, struct config *cfg, const char *owner,
                          const struct config_node *map, struct conf_auth *a)
{
    static const char *const own[] = {"type", "pool", "path", "timeout", "failure",
                                      "request_headers", "upstream_headers", "client_headers",
                                      NULL};
    static const char *const failures[] = {"deny", "allow", NULL};
    static const char *const default_request[] = {"authorization", "cookie",
                                                  "proxy-authorization", NULL};
    struct conf_ext_auth *e = calloc(1, sizeof(*e));
    const struct config_node *n;
    const char *s;
    int v;

    if (!(a->ext = e)) {
        config_diag_error(d, map->line, map->col, "out of memory");
        return;
    }
    for (size_t i = 0; i < map->n; i++) {
        const struct config_node *k = map->pairs[i].key;
        if (k->text && !in_list(k->text, own))
            config_diag_error(d, k->line, k->col, "%s: auth.%s does not apply to type external",
                              owner, k->text);
    }
    e->timeout_ms = 1000;
    e->client_headers_all = true;
    if (!(n = config_map_get(map, "pool"))) {
        config_missing(d, owner, map, "auth.pool");
    } else if (config_want_name(d, owner, "auth.pool", n, &s) == 0) {
        e->pool_name = config_strdup(d, s);
        if (!(e->pool = config_find_pool(cfg, s)))
            config_diag_error(d, n->line, n->col, "%s: auth.pool: pool '%s' is not defined",
                              owner, s);
        else if (e->pool->send_proxy != PROXY_SEND_NONE)
            config_diag_error(d, n->line, n->col, "%s: auth.pool: pool '%s' has send_proxy, "
                              "which only applies to pools of tcp listeners", owner, s);
    }
    if (!(n = config_map_get(map, "path"))) {
        e->path = config_strdup(d, "/");
    } else if (config_want_string(d, owner, "auth.path", n, &s) == 0) {
        if (!ext_path_ok(s, n->len))
            config_diag_error(d, n->line, n->col, "%s: auth.path: a path starting with '/' "
                              "(a query may follow), up to %d printable ASCII characters "
                              "without spaces or '#'", owner, EXT_AUTH_MAX_PATH);
        else
            e->path = config_strdup(d, s);
    }
    if ((n = config_map_get(map, "timeout")) &&
        config_want_timeout(d, owner, "auth.timeout", n, &e->timeout_ms) == 0 &&
        e->timeout_ms > 60000)
        config_diag_error(d, n->line, n->col, "%s: auth.timeout: at most 1m", owner);
    if ((n = config_map_get(map, "failure")) &&
        config_want_enum(d, owner, "auth.failure", n, failures, NULL, &v) == 0)
        e->failure_allow = v == 1;
    if ((n = config_map_get(map, "request_headers"))) {
        read_field_list(d, owner, "request_headers", n, ext_check_own,
                        "is written on the check by sluice itself", &e->request_headers,
                        &e->nrequest_headers);
    } else if ((e->request_headers = calloc(3, sizeof(char *)))) {
        for (int i = 0; default_request[i]; i++)
            if ((e->request_headers[i] = config_strdup(d, default_request[i])))
                e->nrequest_headers++;
    } else {
        config_diag_error(d, map->line, map->col, "out of memory");
    }
    if ((n = config_map_get(map, "upstream_headers")))
        read_field_list(d, owner, "upstream_headers", n, ext_upstream_own,
                        "is written for the backend by sluice itself", &e->upstream_headers,
                        &e->nupstream_headers);
    if ((n = config_map_get(map, "client_headers"))) {
        e->client_headers_all = false;
        read_field_list(d, owner, "client_headers", n, ext_framing, "", &e->client_headers,
                        &e->nclient_headers);
    }
}

struct conf_auth *config_read_auth(struct config_diag *d, struct config *cfg, const char *owner,
                                   const char *prefix, const struct config_node *map)
{
    const struct config_node *n;
    struct conf_auth *a;
    const char *s, *realm = "sluice";
    int errors = d->errors;

    if (config_want_block(d, owner, prefix, "auth", map) < 0)
        return NULL;
    if (!(a = calloc(1, sizeof(*a)))) {
        config_diag_error(d, map->line, map->col, "out of memory");
        return NULL;
    }
    if (!(n = config_map_get(map, "type")))
        config_missing(d, owner, map, "auth.type");
    else if (config_want_string(d, owner, "auth.type", n, &s) == 0) {
        if (strcmp(s, "jwt") == 0)
            a->type = AUTH_JWT;
        else if (strcmp(s, "external") == 0)
            a->type = AUTH_EXTERNAL;
        else if (strcmp(s, "basic") != 0)
            config_diag_error(d, n->line, n->col, "%s: auth.type: '%s' is not one of: basic, "
                              "jwt, external", owner, s);
    }
    if ((n = config_map_get(map, "realm")) &&
        config_want_string(d, owner, "auth.realm", n, &realm) == 0 &&
        (strlen(realm) > 128 || strpbrk(realm, "\"\\") ||
         strspn(realm, " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`"
                       "abcdefghijklmnopqrstuvwxyz{|}~") != strlen(realm)))
        config_diag_error(d, n->line, n->col, "%s: auth.realm: up to 128 printable ASCII "
                          "characters, no quote or backslash", owner);
    if (a->type == AUTH_EXTERNAL) {
        read_external(d, cfg, owner, map, a);
    } else if (a->type == AUTH_JWT) {
        read_jwt(d, owner, map, a);
    } else if (!(n = config_map_get(map, "users_file"))) {
        config_missing(d, owner, map, "auth.users_file");
    } else if (config_want_string(d, owner, "auth.users_file", n, &s) == 0) {
        a->users_file = config_strdup(d, s);
        read_users(d, owner, n, s, a);
    }
    if (a->type == AUTH_BASIC) {
        static const char *const jwt_keys[] = {"key_file", "secret_file", "jwks_file",
                                               "jwks_url", "jwks_refresh", "jwks_ca", "issuer",
                                               "audience", "clock_skew", NULL};
        for (const char *const *k = jwt_keys; *k; k++)
            if ((n = config_map_get(map, *k)))
                config_diag_error(d, n->line, n->col, "%s: auth.%s only applies to type jwt",
                                  owner, *k);
    }
    a->realm = config_strdup(d, realm);
    if (a->realm && (a->challenge = malloc(strlen(a->realm) + 40)))
        sprintf(a->challenge, "%s realm=\"%s\"%s", a->type == AUTH_JWT ? "Bearer" : "Basic",
                a->realm, a->type == AUTH_JWT ? "" : ", charset=\"UTF-8\"");
    if (d->errors != errors || !a->challenge) {
        config_free_auth(a);
        return NULL;
    }
    return a;
}

void config_free_auth(struct conf_auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nusers; i++) {
        free(a->users[i].name);
        free(a->users[i].hash);
    }
    free(a->users);
    free(a->users_file);
    tls_public_key_free(a->jwt_key);
    if (a->jwt_secret)
        explicit_bzero(a->jwt_secret, a->jwt_secret_len);
    free(a->jwt_secret);
    jwks_source_free(a->jwks);
    free(a->issuer);
    free(a->audience);
    free(a->realm);
    free(a->challenge);
    config_free_ext_auth(a->ext);
    free(a);
}

bool config_uses_basic_auth(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct conf_listener *l = &cfg->listeners[i];

        if (l->auth && l->auth->type == AUTH_BASIC)
            return true;
        for (size_t r = 0; r < l->nroutes; r++)
            if (l->routes[r].auth && l->routes[r].auth->type == AUTH_BASIC)
                return true;
    }
    return false;
}
