/* Shared inside src/gslb/ only; gslb.h is the folder's face. */
#ifndef SLUICE_GSLB_INTERNAL_H
#define SLUICE_GSLB_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "net/addr.h"

struct MMDB_s;

/* Where a client is, by the listener's GeoIP database (geo.c). Codes are
 * two letters as ('D' << 8 | 'E'), 0 when the database does not say. */
struct gslb_geo {
    uint16_t country;      /* ISO 3166-1 alpha-2; the registered country if
                              the database has no country for the address */
    uint16_t continent;    /* AF AN AS EU NA OC SA */
    bool located;          /* the database gives a location (City databases) */
    double latitude_rad, longitude_rad, cos_latitude;   /* ... in radians */
    uint8_t prefix;        /* the database's network around the address, in
                              bits of the address's own family: what it says
                              (or that it says nothing) holds across it */
};

/* false when the lookup failed; else g holds what the database says of
 * the client, zeros where it says nothing, and always the prefix. */
bool gslb_geo_lookup(const struct MMDB_s *db, const struct addr *client, struct gslb_geo *g);

/* The client's autonomous system by an ASN database (GeoLite2-ASN,
 * GeoIP2-ISP: autonomous_system_number): *asn, 0 when the database does
 * not say, and *prefix as gslb_geo_lookup's. false when the lookup failed. */
bool gslb_geo_asn(const struct MMDB_s *db, const struct addr *client, uint32_t *asn,
                  uint8_t *prefix);

/* The haversine of the central angle between two points (latitude and
 * longitude in radians, with the latitude's cosine): 0 for the same
 * point, 1 for antipodes. It orders pairs of points as their great-circle
 * distance does (the distance is 2R asin(sqrt(h))), without the asin. */
double gslb_geo_haversine(double lat1, double lon1, double cos_lat1, double lat2, double lon2,
                          double cos_lat2);

#endif
