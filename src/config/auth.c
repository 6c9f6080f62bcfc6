/* An `auth` block, on a listener or a route: HTTP Basic against a users
 * file in htpasswd's format. The file is read with the config, so a bad
 * line is an error of `sluice check` and of a reload, with its line. How
 * requests are checked is in route/auth.c. */
#include "config/config.h"
#include "config/internal.h"

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/tls.h"

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

/* type jwt: exactly one of key_file (a PEM public key: RS256 or ES256 by
 * its type) and secret_file (HS256, at least 32 bytes), and the claims to
 * check. */
static void read_jwt(struct config_diag *d, const char *owner, const struct config_node *map,
                     struct conf_auth *a)
{
    const struct config_node *kn = config_map_get(map, "key_file");
    const struct config_node *sn = config_map_get(map, "secret_file");
    const struct config_node *n;
    const char *s;
    char err[512];

    a->clock_skew_ms = 60000;
    if ((n = config_map_get(map, "users_file")))
        config_diag_error(d, n->line, n->col, "%s: auth.users_file only applies to type basic",
                          owner);
    if (!kn == !sn) {
        config_diag_error(d, map->line, map->col, "%s: auth: type jwt needs key_file (RS256, "
                          "ES256) or secret_file (HS256), one of them", owner);
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

struct conf_auth *config_read_auth(struct config_diag *d, const char *owner, const char *prefix,
                                   const struct config_node *map)
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
        else if (strcmp(s, "basic") != 0)
            config_diag_error(d, n->line, n->col, "%s: auth.type: '%s' is not one of: basic, jwt",
                              owner, s);
    }
    if ((n = config_map_get(map, "realm")) &&
        config_want_string(d, owner, "auth.realm", n, &realm) == 0 &&
        (strlen(realm) > 128 || strpbrk(realm, "\"\\") ||
         strspn(realm, " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`"
                       "abcdefghijklmnopqrstuvwxyz{|}~") != strlen(realm)))
        config_diag_error(d, n->line, n->col, "%s: auth.realm: up to 128 printable ASCII "
                          "characters, no quote or backslash", owner);
    if (a->type == AUTH_JWT) {
        read_jwt(d, owner, map, a);
    } else if (!(n = config_map_get(map, "users_file"))) {
        config_missing(d, owner, map, "auth.users_file");
    } else if (config_want_string(d, owner, "auth.users_file", n, &s) == 0) {
        a->users_file = config_strdup(d, s);
        read_users(d, owner, n, s, a);
    }
    if (a->type == AUTH_BASIC) {
        static const char *const jwt_keys[] = {"key_file", "secret_file", "issuer", "audience",
                                               "clock_skew", NULL};
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
    free(a->issuer);
    free(a->audience);
    free(a->realm);
    free(a->challenge);
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
