/* A pool's consistent-hashing settings: `hash_key` (what ring_hash and maglev
 * hash) and `hash_balance_factor` (bounded load for ring_hash, maglev and
 * ip_hash). Read after `balance`, because whether they apply depends on it. */
#include "config/config.h"
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>

/* A query parameter name as it appears raw in the URL: no separators, no
 * spaces or control bytes (those never reach us unencoded). */
static bool config_is_query_name(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > 128)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == '&' || *s == '=' || *s == '#')
            return false;
    return true;
}

int config_read_request_key(struct config_diag *d, const char *owner, const char *path,
                            const struct config_node *n, bool allow_global,
                            enum hash_key_kind *kind, char **name)
{
    static const struct { const char *prefix; enum hash_key_kind kind; } named[] = {
        { "header:", HASH_KEY_HEADER },
        { "cookie:", HASH_KEY_COOKIE },
        { "query:", HASH_KEY_QUERY },
    };
    char shown[96];
    const char *s;

    if (config_want_string(d, owner, path, n, &s) < 0)
        return -1;
    if (strcmp(s, "source_ip") == 0) {
        *kind = HASH_KEY_SOURCE_IP;
        return 0;
    }
    if (strcmp(s, "path") == 0) {
        *kind = HASH_KEY_PATH;
        return 0;
    }
    if (allow_global && strcmp(s, "global") == 0) {
        *kind = HASH_KEY_GLOBAL;
        return 0;
    }
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        size_t plen = strlen(named[i].prefix);
        const char *rest = s + plen;
        bool ok;

        if (strncmp(s, named[i].prefix, plen) != 0)
            continue;
        ok = named[i].kind == HASH_KEY_QUERY ? config_is_query_name(rest) : config_is_token(rest);
        if (!ok) {
            config_diag_error(d, n->line, n->col,
                              "%s: %s: bad %.*s name '%s': %s", owner, path, (int)plen - 1,
                              named[i].prefix, config_show(shown, sizeof(shown), rest),
                              named[i].kind == HASH_KEY_QUERY ?
                              "use 1 to 128 characters without spaces, & = or #" :
                              "use 1 to 128 letters, digits and !#$%&'*+-.^_`|~");
            return -1;
        }
        *kind = named[i].kind;
        *name = config_strdup(d, rest);
        return 0;
    }
    config_diag_error(d, n->line, n->col,
                      "%s: %s: unknown %s '%s'; expected one of: source_ip, path, "
                      "header:NAME, cookie:NAME, query:NAME%s", owner, path, path,
                      config_show(shown, sizeof(shown), s), allow_global ? ", global" : "");
    return -1;
}

/* A decimal like 1.25 (no sign, no exponent: a factor, not a float
 * literal), above 1 and at most 10. */
static void config_read_balance_factor(struct config_diag *d, struct conf_pool *p,
                                       const char *owner, const struct config_node *n)
{
    char shown[96];
    const char *s;
    size_t int_digits, frac_digits = 0;
    double f = 0;

    if (config_want_string(d, owner, "hash_balance_factor", n, &s) < 0)
        return;
    int_digits = strspn(s, "0123456789");
    if (s[int_digits] == '.')
        frac_digits = strspn(s + int_digits + 1, "0123456789");
    if (int_digits > 0 && int_digits <= 6 && frac_digits <= 6 &&
        s[int_digits + (s[int_digits] == '.' ? 1 + frac_digits : 0)] == '\0')
        f = strtod(s, NULL);
    if (f > 1.0 && f <= 10.0) {
        p->hash_balance_factor = f;
        return;
    }
    config_diag_error(d, n->line, n->col,
                      "%s: hash_balance_factor: expected a number above 1 and at most 10 "
                      "(1.25 is typical), got '%s'", owner, config_show(shown, sizeof(shown), s));
}

void config_read_pool_hash(struct config_diag *d, struct conf_pool *p, const char *owner,
                           const struct config_node *map)
{
    const struct config_node *balance = config_map_get(map, "balance");
    const struct config_pair *key = config_map_pair(map, "hash_key");
    const struct config_pair *factor = config_map_pair(map, "hash_balance_factor");
    /* A bad `balance` has its own error; do not add "does not apply" ones. */
    bool balance_ok = !balance || (balance->kind == CONFIG_NODE_SCALAR && balance->text &&
                                   strcmp(balance->text, config_balance_name(p->balance)) == 0);
    bool hashes = p->balance == BALANCE_RING_HASH || p->balance == BALANCE_MAGLEV;

    p->hash_key = HASH_KEY_SOURCE_IP;
    p->hash_balance_factor = 0;
    if (key) {
        if (hashes)
            config_read_request_key(d, owner, "hash_key", key->value, false, &p->hash_key,
                                    &p->hash_key_name);
        else if (balance_ok)
            config_diag_error(d, key->key->line, key->key->col,
                              "%s: hash_key only applies to balance ring_hash or maglev "
                              "(balance is %s)", owner, config_balance_name(p->balance));
    }
    if (factor) {
        if (hashes || p->balance == BALANCE_IP_HASH)
            config_read_balance_factor(d, p, owner, factor->value);
        else if (balance_ok)
            config_diag_error(d, factor->key->line, factor->key->col,
                              "%s: hash_balance_factor only applies to balance ring_hash, "
                              "maglev or ip_hash (balance is %s)", owner,
                              config_balance_name(p->balance));
    }
}
