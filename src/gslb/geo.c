/* GeoIP for the GSLB responder: a client's country and continent, from a
 * MaxMind DB (GeoLite2 or GeoIP2, Country or City) opened with the config.
 * The database is mmap'ed and only read, so every worker looks up in it at
 * once without a lock; a lookup walks at most 128 tree nodes. */
#include "gslb/internal.h"

#include <maxminddb.h>
#include <sys/socket.h>

static uint16_t code_of(MMDB_entry_s *entry, const char *a, const char *b)
{
    MMDB_entry_data_s v;

    if (MMDB_get_value(entry, &v, a, b, NULL) != MMDB_SUCCESS || !v.has_data ||
        v.type != MMDB_DATA_TYPE_UTF8_STRING || v.data_size != 2)
        return 0;
    return (uint16_t)((uint8_t)v.utf8_string[0] << 8 | (uint8_t)v.utf8_string[1]);
}

bool gslb_geo_lookup(const struct MMDB_s *db, const struct addr *client, struct gslb_geo *g)
{
    int err = MMDB_SUCCESS;
    MMDB_lookup_result_s r = MMDB_lookup_sockaddr(db, (const struct sockaddr *)&client->ss, &err);
    unsigned prefix = r.netmask;

    if (err != MMDB_SUCCESS || !r.found_entry)
        return false;
    if (!(g->country = code_of(&r.entry, "country", "iso_code")))
        g->country = code_of(&r.entry, "registered_country", "iso_code");
    g->continent = code_of(&r.entry, "continent", "code");
    /* An IPv4 address found in an IPv6 tree: the netmask counts the 96
     * bits of ::/96 in front of it. */
    if (client->ss.ss_family == AF_INET && db->metadata.ip_version == 6)
        prefix = prefix >= 96 ? prefix - 96 : 0;
    g->prefix = (uint8_t)(prefix > 128 ? 128 : prefix);
    return g->country || g->continent;
}
