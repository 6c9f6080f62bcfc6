/* A listener's `tls` block. The certificates and keys are loaded here, once,
 * so that a missing file, a bad PEM or a key that belongs to another
 * certificate is a FILE:LINE:COL error of `sluice check` and of a reload,
 * not a failure at startup. */
#include "config/config.h"
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proto/tls.h"

/* A regular file of a sane size for PEM. */
static int want_pem_file(struct config_diag *d, const char *owner, const char *path,
                         const struct config_node *n, const char **out)
{
    const char *s;

    if (config_want_string(d, owner, path, n, &s) < 0 ||
        config_want_regular_file(d, owner, path, n, s, "a PEM file (a regular file up to 1m)",
                                 1 << 20) < 0)
        return -1;
    *out = s;
    return 0;
}

static void read_cert(struct config_diag *d, const char *owner, const struct config_node *map,
                      struct conf_tls_cert *c)
{
    const struct config_node *cn, *kn, *on;
    const char *cert = NULL, *key = NULL, *ocsp;
    char err[512];

    if (config_want_map(d, owner, "tls.certificates[]", map) < 0)
        return;
    config_schema_check_keys(d, map, "listeners[].tls.certificates[]", owner);
    if (!(cn = config_map_get(map, "cert")))
        config_missing(d, owner, map, "cert");
    else
        want_pem_file(d, owner, "tls.certificates[].cert", cn, &cert);
    if (!(kn = config_map_get(map, "key")))
        config_missing(d, owner, map, "key");
    else
        want_pem_file(d, owner, "tls.certificates[].key", kn, &key);
    if (!cert || !key)
        return;
    if (tls_check_pair(cert, key, err, sizeof(err)) < 0) {
        config_diag_error(d, cn->line, cn->col, "%s: tls: %s", owner, err);
        return;
    }
    {
        struct stat st;

        if (stat(key, &st) == 0 && (st.st_mode & S_IROTH))
            config_diag_warning(d, kn->line, kn->col, "%s: tls.certificates[].key: '%s' is "
                                "readable by every user", owner, key);
    }
    c->cert = config_strdup(d, cert);
    c->key = config_strdup(d, key);
    if ((on = config_map_get(map, "ocsp")) && on->kind == CONFIG_NODE_SCALAR && on->plain &&
        on->text && strcmp(on->text, "auto") == 0) {
        if (tls_ocsp_auto_usable(cert, err, sizeof(err)) < 0)
            config_diag_error(d, on->line, on->col, "%s: tls.certificates[].ocsp: auto: %s",
                              owner, err);
        else
            c->ocsp_auto = true;
    } else if (on && config_want_string(d, owner, "tls.certificates[].ocsp", on, &ocsp) == 0 &&
               config_want_regular_file(d, owner, "tls.certificates[].ocsp", on, ocsp,
                                        "an OCSP response (a regular file)", 0) == 0) {
        struct tls_ocsp *o = NULL;
        int rc = tls_ocsp_load(cert, ocsp, &o, err, sizeof(err));

        tls_ocsp_free(o);
        if (rc < 0)
            config_diag_error(d, on->line, on->col, "%s: tls.certificates[].ocsp: %s", owner, err);
        else if (rc > 0)
            config_diag_warning(d, on->line, on->col, "%s: tls.certificates[].ocsp: %s", owner,
                                err);
        if (rc >= 0)
            c->ocsp = config_strdup(d, ocsp);
    }
}

struct conf_tls *config_read_tls(struct config_diag *d, const char *owner,
                                 const struct config_node *map)
{
    const struct config_node *n;
    struct conf_tls *t;
    int errors = d->errors;

    if (config_want_block(d, owner, "listeners[]", "tls", map) < 0)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (!t) {
        config_diag_error(d, map->line, map->col, "out of memory");
        return NULL;
    }
    t->min_version = 12;
    if (!(n = config_map_get(map, "certificates"))) {
        config_missing(d, owner, map, "tls.certificates");
    } else if (config_want_seq(d, owner, "tls.certificates", n) == 0) {
        if (n->n == 0 || n->n > 256) {
            config_diag_error(d, n->line, n->col, "%s: tls.certificates: give 1 to 256 "
                              "certificates", owner);
        } else if ((t->certs = calloc(n->n, sizeof(*t->certs)))) {
            t->ncerts = n->n;
            for (size_t i = 0; i < n->n; i++)
                read_cert(d, owner, n->items[i], &t->certs[i]);
        }
    }
    if ((n = config_map_get(map, "client_ca"))) {
        const char *s;

        if (want_pem_file(d, owner, "tls.client_ca", n, &s) == 0) {
            char err[512];
            if (tls_check_ca(s, err, sizeof(err)) < 0)
                config_diag_error(d, n->line, n->col, "%s: tls.client_ca: %s", owner, err);
            else
                t->client_ca = config_strdup(d, s);
        }
    }
    if ((n = config_map_get(map, "min_version"))) {
        const char *s;

        if (config_want_string(d, owner, "tls.min_version", n, &s) == 0) {
            if (strcmp(s, "1.2") == 0)
                t->min_version = 12;
            else if (strcmp(s, "1.3") == 0)
                t->min_version = 13;
            else
                config_diag_error(d, n->line, n->col, "%s: tls.min_version: use \"1.2\" or "
                                  "\"1.3\"", owner);
        }
    }
    if (d->errors != errors) {
        config_free_tls(t);
        return NULL;
    }
    return t;
}

void config_free_tls(struct conf_tls *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ncerts; i++) {
        free(t->certs[i].cert);
        free(t->certs[i].key);
        free(t->certs[i].ocsp);
    }
    free(t->certs);
    free(t->client_ca);
    free(t);
}

struct conf_upstream_tls *config_read_upstream_tls(struct config_diag *d, const char *owner,
                                                   const struct config_node *map)
{
    const struct config_node *n;
    struct conf_upstream_tls *t;
    const char *s;
    char err[512];
    int errors = d->errors;

    if (config_want_block(d, owner, "pools[]", "tls", map) < 0)
        return NULL;
    if (!(t = calloc(1, sizeof(*t)))) {
        config_diag_error(d, map->line, map->col, "out of memory");
        return NULL;
    }
    t->verify = true;
    if ((n = config_map_get(map, "verify")))
        config_want_bool(d, owner, "tls.verify", n, &t->verify);
    if ((n = config_map_get(map, "ca_file")) &&
        want_pem_file(d, owner, "tls.ca_file", n, &s) == 0) {
        if (tls_check_ca(s, err, sizeof(err)) < 0)
            config_diag_error(d, n->line, n->col, "%s: tls.ca_file: %s", owner, err);
        else
            t->ca_file = config_strdup(d, s);
    }
    if ((n = config_map_get(map, "server_name")) &&
        config_want_string(d, owner, "tls.server_name", n, &s) == 0) {
        if (strlen(s) > 253 || strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789.-") != strlen(s))
            config_diag_error(d, n->line, n->col, "%s: tls.server_name: expected a DNS name "
                              "like api.example.com", owner);
        else
            t->server_name = config_strdup(d, s);
    }
    {
        const struct config_node *cn = config_map_get(map, "cert"), *kn = config_map_get(map, "key");
        const char *cert = NULL, *key = NULL;

        if (cn && !kn)
            config_missing(d, owner, map, "tls.key");
        else if (kn && !cn)
            config_missing(d, owner, map, "tls.cert");
        else if (cn && want_pem_file(d, owner, "tls.cert", cn, &cert) == 0 &&
                 want_pem_file(d, owner, "tls.key", kn, &key) == 0) {
            if (tls_check_pair(cert, key, err, sizeof(err)) < 0)
                config_diag_error(d, cn->line, cn->col, "%s: tls: %s", owner, err);
            else {
                t->cert = config_strdup(d, cert);
                t->key = config_strdup(d, key);
            }
        }
    }
    if (d->errors != errors) {
        config_free_upstream_tls(t);
        return NULL;
    }
    return t;
}

void config_free_upstream_tls(struct conf_upstream_tls *t)
{
    if (!t)
        return;
    free(t->ca_file);
    free(t->server_name);
    free(t->cert);
    free(t->key);
    free(t);
}
