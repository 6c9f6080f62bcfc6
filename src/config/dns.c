/* listeners[].records of a `mode: dns` listener (the GSLB responder; see
 * docs/gslb.md): the names it answers for, and per name the regions, each
 * with its pool (whose health decides whether the region answers), its
 * addresses and the client networks it is nearest to. */
#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <maxminddb.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>
#include <sys/socket.h>

#include "config/config.h"
#include "config/internal.h"
#include "proto/dns.h"

#define DNS_MAX_RECORDS 1000
#define DNS_MAX_WEIGHT 1000
#define DNS_MAX_ADDRESSES 16
#define DNS_MAX_ASNS 4096           /* per region: an ISP's or a country's networks */
#define DNS_ASN_MAX 4294967294u     /* 0 and 4294967295 are reserved (RFC 7607, 7300) */

/* KEY of OWNER: a list of 1 to max entries; a zeroed array of seq->n
 * items of size bytes for it, or NULL (reported, or out of memory). */
static void *want_list(struct config_diag *d, const char *owner, const char *key,
                       const struct config_node *seq, size_t max, size_t size)
{
    if (config_want_seq(d, owner, key, seq) < 0)
        return NULL;
    if (seq->n == 0 || seq->n > max) {
        config_diag_error(d, seq->line, seq->col, "%s: %s: give 1 to %zu %s", owner, key, max, key);
        return NULL;
    }
    return calloc(seq->n, size);
}

static void read_addresses(struct config_diag *d, const char *owner, const struct config_node *seq,
                           struct conf_dns_region *r)
{
    if (!(r->addresses = want_list(d, owner, "addresses", seq, DNS_MAX_ADDRESSES,
                                   sizeof(*r->addresses))))
        return;
    for (size_t i = 0; i < seq->n; i++) {
        struct conf_dns_addr *a = &r->addresses[r->naddresses];
        const char *s;

        if (config_want_string(d, owner, "addresses", seq->items[i], &s) < 0)
            continue;
        if (inet_pton(AF_INET, s, a->addr) == 1) {
            a->family = AF_INET;
        } else if (inet_pton(AF_INET6, s, a->addr) == 1) {
            a->family = AF_INET6;
        } else {
            config_diag_error(d, seq->items[i]->line, seq->items[i]->col,
                              "%s: addresses: '%s' is not an IPv4 or IPv6 address", owner, s);
            continue;
        }
        r->naddresses++;
    }
}

/* The continent codes of MaxMind's databases (continent.code). */
static const char *const dns_continents[] = { "AF", "AN", "AS", "EU", "NA", "OC", "SA", NULL };

/* countries or continents: two-letter codes, case-insensitive, as uint16_t. */
static void read_geo_codes(struct config_diag *d, const struct conf_listener *l, const char *owner,
                           const char *key, const struct config_node *seq, uint16_t **out,
                           size_t *nout)
{
    bool continents = strcmp(key, "continents") == 0;

    if (!l->geoip_path) {
        config_diag_error(d, seq->line, seq->col, "%s: %s: needs the listener's geoip database "
                          "(listeners[].geoip)", owner, key);
        return;
    }
    if (!(*out = want_list(d, owner, key, seq, 256, sizeof(**out))))
        return;
    for (size_t i = 0; i < seq->n; i++) {
        const struct config_node *n = seq->items[i];
        char code[3];
        const char *s;
        bool ok;

        if (config_want_string(d, owner, key, n, &s) < 0)
            continue;
        ok = strlen(s) == 2 && isalpha((unsigned char)s[0]) && isalpha((unsigned char)s[1]);
        if (ok) {
            code[0] = (char)toupper((unsigned char)s[0]);
            code[1] = (char)toupper((unsigned char)s[1]);
            code[2] = '\0';
        }
        if (ok && continents) {
            ok = false;
            for (size_t k = 0; dns_continents[k]; k++)
                ok |= strcmp(dns_continents[k], code) == 0;
        }
        if (!ok) {
            config_diag_error(d, n->line, n->col, continents
                              ? "%s: %s: '%s' is not a continent code (AF, AN, AS, EU, NA, OC, SA)"
                              : "%s: %s: '%s' is not a two-letter country code (ISO 3166-1, as "
                                "DE or US)", owner, key, s);
            continue;
        }
        (*out)[(*nout)++] = (uint16_t)((uint8_t)code[0] << 8 | (uint8_t)code[1]);
    }
}

/* A MaxMind DB named at KEY of a dns listener, opened at load so that a
 * missing or broken file is a config error at the key. */
static void open_mmdb(struct config_diag *d, const char *owner, const char *key,
                      const struct config_node *n, char **path_out, struct MMDB_s **db_out)
{
    const char *path;
    int rc;

    if (config_want_string(d, owner, key, n, &path) < 0)
        return;
    if (!(*db_out = calloc(1, sizeof(**db_out))) || !(*path_out = config_strdup(d, path))) {
        config_diag_error(d, n->line, n->col, "out of memory");
        free(*db_out);
        *db_out = NULL;
        return;
    }
    /* MMDB_open would wait on a FIFO for a writer; a missing file is its
     * own error below. */
    if (config_regular_file(path, 0) > 0)
        config_diag_error(d, n->line, n->col, "%s: %s: '%s' is not a MaxMind database (a "
                          "regular file)", owner, key, path);
    else if ((rc = MMDB_open(path, MMDB_MODE_MMAP, *db_out)) == MMDB_SUCCESS)
        return;
    else
        config_diag_error(d, n->line, n->col, "%s: %s: cannot open '%s': %s", owner, key, path,
                          MMDB_strerror(rc));
    free(*db_out);
    *db_out = NULL;
}

void config_read_dns_geoip(struct config_diag *d, struct conf_listener *l, const char *owner,
                           const struct config_node *n)
{
    open_mmdb(d, owner, "geoip", n, &l->geoip_path, &l->geoip);
}

void config_read_dns_geoip_asn(struct config_diag *d, struct conf_listener *l, const char *owner,
                               const struct config_node *n)
{
    open_mmdb(d, owner, "geoip_asn", n, &l->geoip_asn_path, &l->geoip_asn);
}

static int by_number(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

/* asns: autonomous system numbers, 1 to 4294967294, sorted for the
 * responder's bisection. */
static void read_asns(struct config_diag *d, const struct conf_listener *l, const char *owner,
                      const struct config_node *seq, struct conf_dns_region *r)
{
    if (!l->geoip_asn_path) {
        config_diag_error(d, seq->line, seq->col, "%s: asns: needs the listener's geoip_asn "
                          "database (listeners[].geoip_asn)", owner);
        return;
    }
    if (!(r->asns = want_list(d, owner, "asns", seq, DNS_MAX_ASNS, sizeof(*r->asns))))
        return;
    for (size_t i = 0; i < seq->n; i++) {
        uint64_t v;

        if (config_want_uint(d, owner, "asns", seq->items[i], 1, DNS_ASN_MAX, &v) == 0)
            r->asns[r->nasns++] = (uint32_t)v;
    }
    qsort(r->asns, r->nasns, sizeof(*r->asns), by_number);
}

/* A coordinate in degrees: an optional sign, digits, an optional fraction
 * (no exponent, no inf or nan), from -limit to limit. */
static int want_degrees(struct config_diag *d, const char *owner, const char *key,
                        const struct config_node *n, double limit, const char *example,
                        double *out)
{
    char shown[96];
    const char *s, *p;
    size_t int_digits, frac_digits = 0;

    if (config_want_string(d, owner, key, n, &s) < 0)
        return -1;
    p = s + (*s == '-' || *s == '+');
    int_digits = strspn(p, "0123456789");
    if (p[int_digits] == '.')
        frac_digits = strspn(p + int_digits + 1, "0123456789");
    if (int_digits > 0 && int_digits <= 3 && frac_digits <= 12 &&
        p[int_digits + (p[int_digits] == '.' ? 1 + frac_digits : 0)] == '\0') {
        *out = strtod(s, NULL);
        if (*out >= -limit && *out <= limit)
            return 0;
    }
    config_diag_error(d, n->line, n->col, "%s: %s: expected degrees from %g to %g (%s), got '%s'",
                      owner, key, -limit, limit, example, config_show(shown, sizeof(shown), s));
    return -1;
}

/* location: {latitude, longitude} in degrees, as GeoIP databases give a
 * client's (WGS 84); kept in radians for the haversine. */
static void read_location(struct config_diag *d, const struct conf_listener *l, const char *owner,
                          const struct config_node *map, struct conf_dns_region *r)
{
    const struct config_node *n;
    double lat = 0, lon = 0;
    bool ok = true;

    if (config_want_block(d, owner, "listeners[].records[].regions[]", "location", map) < 0)
        return;
    if (!l->geoip_path) {
        config_diag_error(d, map->line, map->col, "%s: location: needs the listener's geoip "
                          "database (listeners[].geoip), one with locations (a City database)",
                          owner);
        return;
    }
    if (!(n = config_map_get(map, "latitude"))) {
        config_missing(d, owner, map, "location.latitude");
        ok = false;
    } else if (want_degrees(d, owner, "location.latitude", n, 90,
                            "north of the equator; 50.11 for Frankfurt", &lat) < 0) {
        ok = false;
    }
    if (!(n = config_map_get(map, "longitude"))) {
        config_missing(d, owner, map, "location.longitude");
        ok = false;
    } else if (want_degrees(d, owner, "location.longitude", n, 180,
                            "east of Greenwich; -77.04 for Washington", &lon) < 0) {
        ok = false;
    }
    if (!ok)
        return;
    r->located = true;
    r->latitude_rad = lat * (M_PI / 180);
    r->longitude_rad = lon * (M_PI / 180);
    r->cos_latitude = cos(r->latitude_rad);
}

/* A host name of the zone block, lower-cased into a new string. */
static char *zone_name(struct config_diag *d, const char *owner, const char *key,
                       const struct config_node *n)
{
    const char *s;
    char *out;

    if (config_want_string(d, owner, key, n, &s) < 0)
        return NULL;
    if (!dns_name_valid(s)) {
        config_diag_error(d, n->line, n->col, "%s: %s: '%s' is not a host name (labels of 1 to "
                          "63 letters, digits, '-' or '_', no final dot)", owner, key, s);
        return NULL;
    }
    if ((out = config_strdup(d, s)))
        for (char *c = out; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c + 32);
    return out;
}

void config_read_dns_zone(struct config_diag *d, struct conf_listener *l, const char *owner,
                          const struct config_node *map)
{
    struct conf_dns_zone *z;
    const struct config_node *n;
    uint64_t ms;

    if (config_want_block(d, owner, "listeners[]", "zone", map) < 0)
        return;
    if (!(z = calloc(1, sizeof(*z)))) {
        config_diag_error(d, map->line, map->col, "out of memory");
        return;
    }
    l->dns_zone = z;
    z->negative_ttl_s = 60;
    z->serial = (uint32_t)time(NULL);
    if (!(n = config_map_get(map, "name")))
        config_missing(d, owner, map, "zone.name");
    else
        z->name = zone_name(d, owner, "zone.name", n);
    if (!(n = config_map_get(map, "nameservers"))) {
        config_missing(d, owner, map, "zone.nameservers");
    } else if ((z->nameservers = want_list(d, owner, "zone.nameservers", n, DNS_MAX_NAMESERVERS,
                                           sizeof(*z->nameservers)))) {
        for (size_t i = 0; i < n->n; i++)
            if ((z->nameservers[z->nnameservers] = zone_name(d, owner, "zone.nameservers",
                                                             n->items[i])))
                z->nnameservers++;
    }
    if (!(n = config_map_get(map, "hostmaster"))) {
        config_missing(d, owner, map, "zone.hostmaster");
    } else {
        const char *s;
        char mail[300];
        if (config_want_string(d, owner, "zone.hostmaster", n, &s) == 0 && strlen(s) < sizeof(mail)) {
            /* hostmaster@example.com is written hostmaster.example.com; a
             * dot before the @ would need an escape, which is not offered. */
            char *at;
            snprintf(mail, sizeof(mail), "%s", s);
            if ((at = strchr(mail, '@')) && !memchr(mail, '.', (size_t)(at - mail)))
                *at = '.';
            if (!strchr(mail, '@') && dns_name_valid(mail)) {
                for (char *c = mail; *c; c++)
                    if (*c >= 'A' && *c <= 'Z')
                        *c = (char)(*c + 32);
                z->hostmaster = config_strdup(d, mail);
            } else {
                config_diag_error(d, n->line, n->col, "%s: zone.hostmaster: '%s' is not an "
                                  "address like hostmaster@example.com", owner, s);
            }
        }
    }
    if ((n = config_map_get(map, "negative_ttl")) &&
        config_want_duration(d, owner, "zone.negative_ttl", n, &ms) == 0) {
        if (ms % 1000 || ms > 86400000)
            config_diag_error(d, n->line, n->col, "%s: zone.negative_ttl: whole seconds from 0s "
                              "to 24h", owner);
        else
            z->negative_ttl_s = (uint32_t)(ms / 1000);
    }
}

/* Whether name is zone or below it. */
bool config_dns_in_zone(const char *name, const char *zone)
{
    size_t n = strlen(name), z = strlen(zone);

    return n == z ? strcmp(name, zone) == 0
                  : n > z && name[n - z - 1] == '.' && strcmp(name + n - z, zone) == 0;
}

static void read_region(struct config_diag *d, struct config *cfg, const struct conf_listener *l,
                        const char *record_owner, const struct config_node *map,
                        enum dns_policy policy, struct conf_dns_region *r, size_t index)
{
    const struct config_node *n;
    char owner[400];
    const char *s;

    snprintf(owner, sizeof(owner), "region #%zu of %s", index + 1, record_owner);
    if (config_want_map(d, owner, NULL, map) < 0)
        return;
    if (!(n = config_map_get(map, "name"))) {
        config_missing(d, owner, map, "name");
    } else if (config_want_name(d, owner, "name", n, &s) == 0) {
        r->name = config_strdup(d, s);
        r->name_hash = XXH3_64bits(s, strlen(s));
        snprintf(owner, sizeof(owner), "region '%s' of %s", s, record_owner);
    }
    config_schema_check_keys(d, map, "listeners[].records[].regions[]", owner);
    if (!(n = config_map_get(map, "pool"))) {
        config_missing(d, owner, map, "pool");
    } else if (config_want_name(d, owner, "pool", n, &s) == 0 &&
               !(r->pool = config_find_pool(cfg, s))) {
        config_diag_error(d, n->line, n->col, "%s: pool '%s' is not defined", owner, s);
    }
    if (!(n = config_map_get(map, "addresses")))
        config_missing(d, owner, map, "addresses");
    else
        read_addresses(d, owner, n, r);
    if ((n = config_map_get(map, "clients")))
        config_read_cidrs(d, owner, "clients", n, &r->clients, &r->nclients);
    if ((n = config_map_get(map, "countries")))
        read_geo_codes(d, l, owner, "countries", n, &r->countries, &r->ncountries);
    if ((n = config_map_get(map, "continents")))
        read_geo_codes(d, l, owner, "continents", n, &r->continents, &r->ncontinents);
    if ((n = config_map_get(map, "asns")))
        read_asns(d, l, owner, n, r);
    if ((n = config_map_get(map, "location")))
        read_location(d, l, owner, n, r);
    r->weight = 1;
    if ((n = config_map_get(map, "weight"))) {
        uint64_t v;

        if (policy != DNS_POLICY_WEIGHTED)
            config_diag_error(d, n->line, n->col, "%s: weight: only with the record's "
                              "policy: weighted", owner);
        else if (config_want_uint(d, owner, "weight", n, 0, DNS_MAX_WEIGHT, &v) == 0)
            r->weight = (uint32_t)v;
    }
}

static void read_record(struct config_diag *d, struct config *cfg, const struct conf_listener *l,
                        const char *listener_owner, const struct config_node *map,
                        struct conf_dns_record *rec, size_t index)
{
    const struct config_node *n;
    char owner[300];
    const char *s;
    uint64_t ms;

    snprintf(owner, sizeof(owner), "record #%zu of %s", index + 1, listener_owner);
    rec->ttl_s = 30;
    if (config_want_map(d, owner, NULL, map) < 0)
        return;
    if (!(n = config_map_get(map, "name"))) {
        config_missing(d, owner, map, "name");
    } else if (config_want_string(d, owner, "name", n, &s) == 0) {
        if (!dns_name_valid(s)) {
            config_diag_error(d, n->line, n->col, "%s: name: '%s' is not a host name (labels of "
                              "1 to 63 letters, digits, '-' or '_', no final dot)", owner, s);
        } else if ((rec->name = config_strdup(d, s))) {
            for (char *c = rec->name; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c + 32);
            snprintf(owner, sizeof(owner), "record '%s' of %s", rec->name, listener_owner);
            if (l->dns_zone && l->dns_zone->name && !config_dns_in_zone(rec->name, l->dns_zone->name))
                config_diag_error(d, n->line, n->col, "%s: name: '%s' is not in the listener's "
                                  "zone %s", owner, rec->name, l->dns_zone->name);
        }
    }
    config_schema_check_keys(d, map, "listeners[].records[]", owner);
    if ((n = config_map_get(map, "ttl")) && config_want_duration(d, owner, "ttl", n, &ms) == 0) {
        if (ms % 1000 || ms > 86400000)
            config_diag_error(d, n->line, n->col, "%s: ttl: whole seconds from 0s to 24h", owner);
        else
            rec->ttl_s = (uint32_t)(ms / 1000);
    }
    if ((n = config_map_get(map, "policy")) && config_want_string(d, owner, "policy", n, &s) == 0) {
        if (!strcmp(s, "weighted"))
            rec->policy = DNS_POLICY_WEIGHTED;
        else if (strcmp(s, "failover") != 0)
            config_diag_error(d, n->line, n->col, "%s: policy: '%s'; expected failover or "
                              "weighted", owner, s);
    }
    rec->answers = 1;
    config_read_u32(d, owner, map, "answers", "answers", 1, DNS_MAX_ANSWER_REGIONS, &rec->answers);
    if (!(n = config_map_get(map, "regions"))) {
        config_missing(d, owner, map, "regions");
        return;
    }
    if (!(rec->regions = want_list(d, owner, "regions", n, DNS_MAX_REGIONS, sizeof(*rec->regions))))
        return;
    rec->nregions = n->n;
    for (size_t i = 0; i < n->n; i++)
        read_region(d, cfg, l, owner, n->items[i], rec->policy, &rec->regions[i], i);
}

static int by_text(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The zone's empty non-terminals, found once here so that a query for a
 * name without a record is answered by bisection, not by a scan of every
 * record. */
static void collect_between(struct config_diag *d, struct conf_dns_zone *z,
                            const struct conf_listener *l, const struct config_node *at)
{
    size_t cap = 0, n = 0;

    for (size_t i = 0; i < l->ndns_records; i++) {
        const char *name = l->dns_records[i].name;
        if (!name || !config_dns_in_zone(name, z->name) || !strcmp(name, z->name))
            continue;
        for (const char *s = strchr(name, '.'); s && strcmp(s + 1, z->name) != 0;
             s = strchr(s + 1, '.')) {
            if (n == cap) {
                char **more = realloc(z->between, (cap = cap ? cap * 2 : 16) * sizeof(*more));
                if (!more) {
                    config_diag_error(d, at->line, at->col, "out of memory");
                    return;
                }
                z->between = more;
            }
            if (!(z->between[n] = config_strdup(d, s + 1)))
                return;
            z->nbetween = ++n;
        }
    }
    if (n)
        qsort(z->between, n, sizeof(*z->between), by_text);
    z->nbetween = 0;
    for (size_t i = 0; i < n; i++) {
        if (z->nbetween && strcmp(z->between[z->nbetween - 1], z->between[i]) == 0)
            free(z->between[i]);
        else
            z->between[z->nbetween++] = z->between[i];
    }
}

static int by_name(const void *a, const void *b)
{
    const struct conf_dns_record *x = a, *y = b;

    if (!x->name || !y->name)
        return !x->name - !y->name;     /* a config with errors: never used */
    return strcmp(x->name, y->name);
}

void config_read_dns_records(struct config_diag *d, struct config *cfg, struct conf_listener *l,
                             const char *owner, const struct config_node *seq)
{
    if (!(l->dns_records = want_list(d, owner, "records", seq, DNS_MAX_RECORDS,
                                     sizeof(*l->dns_records))))
        return;
    l->ndns_records = seq->n;
    for (size_t i = 0; i < seq->n; i++) {
        read_record(d, cfg, l, owner, seq->items[i], &l->dns_records[i], i);
        for (size_t j = 0; j < i && l->dns_records[i].name; j++)
            if (l->dns_records[j].name && strcmp(l->dns_records[j].name, l->dns_records[i].name) == 0)
                config_diag_error(d, seq->items[i]->line, seq->items[i]->col,
                                  "%s: record '%s' is given twice (first as record #%zu)", owner,
                                  l->dns_records[i].name, j + 1);
    }
    /* Sorted by name: the responder finds a query's record by bisection. */
    qsort(l->dns_records, l->ndns_records, sizeof(*l->dns_records), by_name);
    if (l->dns_zone && l->dns_zone->name)
        collect_between(d, l->dns_zone, l, seq);
}

void config_free_dns_records(struct conf_listener *l)
{
    for (size_t i = 0; i < l->ndns_records; i++) {
        struct conf_dns_record *rec = &l->dns_records[i];

        for (size_t k = 0; k < rec->nregions; k++) {
            free(rec->regions[k].name);
            free(rec->regions[k].addresses);
            free(rec->regions[k].clients);
            free(rec->regions[k].countries);
            free(rec->regions[k].continents);
            free(rec->regions[k].asns);
        }
        free(rec->regions);
        free(rec->name);
    }
    free(l->dns_records);
    l->dns_records = NULL;
    l->ndns_records = 0;
    if (l->dns_zone) {
        for (size_t i = 0; i < l->dns_zone->nnameservers; i++)
            free(l->dns_zone->nameservers[i]);
        free(l->dns_zone->nameservers);
        for (size_t i = 0; i < l->dns_zone->nbetween; i++)
            free(l->dns_zone->between[i]);
        free(l->dns_zone->between);
        free(l->dns_zone->name);
        free(l->dns_zone->hostmaster);
        free(l->dns_zone);
        l->dns_zone = NULL;
    }
    if (l->geoip) {
        MMDB_close(l->geoip);
        free(l->geoip);
        l->geoip = NULL;
    }
    free(l->geoip_path);
    l->geoip_path = NULL;
    if (l->geoip_asn) {
        MMDB_close(l->geoip_asn);
        free(l->geoip_asn);
        l->geoip_asn = NULL;
    }
    free(l->geoip_asn_path);
    l->geoip_asn_path = NULL;
}
