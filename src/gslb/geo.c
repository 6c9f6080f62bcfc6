/* GeoIP for the GSLB responder: a client's country, continent and
 * location, from a MaxMind DB (GeoLite2 or GeoIP2, Country or City), and
 * its autonomous system, from an ASN database (GeoLite2-ASN), each opened
 * with the config. A database is mmap'ed and only read, so every worker
 * looks up in it at once without a lock; a lookup walks at most 128 tree
 * nodes. */
#include "gslb/internal.h"

#include <math.h>
#include <maxminddb.h>
#include <sys/socket.h>

/* The database's network around client, in bits of the client's family.
 * Also when nothing was found: the empty network it lies in, where the
 * database says nothing for every address alike. */
static uint8_t network_prefix(const struct MMDB_s *db, const struct addr *client, unsigned netmask)
{
    /* An IPv4 address found in an IPv6 tree: the netmask counts the 96
     * bits of ::/96 in front of it. */
    if (client->ss.ss_family == AF_INET && db->metadata.ip_version == 6)
        netmask = netmask >= 96 ? netmask - 96 : 0;
    return (uint8_t)(netmask > 128 ? 128 : netmask);
}

static uint16_t code_of(MMDB_entry_s *entry, const char *a, const char *b)
{
    MMDB_entry_data_s v;

    if (MMDB_get_value(entry, &v, a, b, NULL) != MMDB_SUCCESS || !v.has_data ||
        v.type != MMDB_DATA_TYPE_UTF8_STRING || v.data_size != 2)
        return 0;
    return (uint16_t)((uint8_t)v.utf8_string[0] << 8 | (uint8_t)v.utf8_string[1]);
}

/* location.KEY in degrees, a double (as MaxMind writes it) or a float,
 * within +-limit; false for anything else (a database is data from
 * elsewhere: a NaN or 1e300 must not pick a region). */
static bool degrees_of(MMDB_entry_s *entry, const char *key, double limit, double *out)
{
    MMDB_entry_data_s v;

    if (MMDB_get_value(entry, &v, "location", key, NULL) != MMDB_SUCCESS || !v.has_data)
        return false;
    if (v.type == MMDB_DATA_TYPE_DOUBLE)
        *out = v.double_value;
    else if (v.type == MMDB_DATA_TYPE_FLOAT)
        *out = v.float_value;
    else
        return false;
    return *out >= -limit && *out <= limit;        /* false for NaN too */
}

bool gslb_geo_lookup(const struct MMDB_s *db, const struct addr *client, struct gslb_geo *g)
{
    int err = MMDB_SUCCESS;
    MMDB_lookup_result_s r = MMDB_lookup_sockaddr(db, (const struct sockaddr *)&client->ss, &err);
    double lat, lon;

    *g = (struct gslb_geo){0};
    if (err != MMDB_SUCCESS)
        return false;
    g->prefix = network_prefix(db, client, r.netmask);
    if (!r.found_entry)
        return true;
    if (!(g->country = code_of(&r.entry, "country", "iso_code")))
        g->country = code_of(&r.entry, "registered_country", "iso_code");
    g->continent = code_of(&r.entry, "continent", "code");
    if (degrees_of(&r.entry, "latitude", 90, &lat) && degrees_of(&r.entry, "longitude", 180, &lon)) {
        g->located = true;
        g->latitude_rad = lat * (M_PI / 180);
        g->longitude_rad = lon * (M_PI / 180);
        g->cos_latitude = cos(g->latitude_rad);
    }
    return true;
}

bool gslb_geo_asn(const struct MMDB_s *db, const struct addr *client, uint32_t *asn,
                  uint8_t *prefix)
{
    int err = MMDB_SUCCESS;
    MMDB_lookup_result_s r = MMDB_lookup_sockaddr(db, (const struct sockaddr *)&client->ss, &err);
    MMDB_entry_data_s v;

    *asn = 0;
    if (err != MMDB_SUCCESS)
        return false;
    *prefix = network_prefix(db, client, r.netmask);
    if (!r.found_entry ||
        MMDB_get_value(&r.entry, &v, "autonomous_system_number", NULL) != MMDB_SUCCESS ||
        !v.has_data)
        return true;
    /* MaxMind writes a uint32; other writers pick the smallest type. */
    if (v.type == MMDB_DATA_TYPE_UINT32)
        *asn = v.uint32;
    else if (v.type == MMDB_DATA_TYPE_UINT16)
        *asn = v.uint16;
    else if (v.type == MMDB_DATA_TYPE_UINT64 && v.uint64 <= UINT32_MAX)
        *asn = (uint32_t)v.uint64;
    else if (v.type == MMDB_DATA_TYPE_INT32 && v.int32 > 0)
        *asn = (uint32_t)v.int32;
    return true;
}

double gslb_geo_haversine(double lat1, double lon1, double cos_lat1, double lat2, double lon2,
                          double cos_lat2)
{
    double dlat = sin((lat2 - lat1) / 2), dlon = sin((lon2 - lon1) / 2);

    return dlat * dlat + cos_lat1 * cos_lat2 * dlon * dlon;
}
