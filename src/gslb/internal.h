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
    uint8_t prefix;        /* the database's network around the address, in
                              bits of the address's own family */
};

/* false when the database holds nothing for the client. */
bool gslb_geo_lookup(const struct MMDB_s *db, const struct addr *client, struct gslb_geo *g);

#endif
