/* IP hash: consistent hashing on the client's IP address, with a Maglev
 * table underneath (maglev.c). Unlike NGINX's ip_hash (hash mod n), a
 * backend joining or leaving moves only about 1/n of the clients, and two
 * sluice instances send a client to the same backend. The key is computed
 * by balance_hash_l4/balance_hash_http (hash_key.c) from the address alone,
 * never the port, so all of a client's connections land together; the
 * pool's hash_key does not apply. hash_balance_factor does. */
#include "balance/internal.h"

const struct balance_ops balance_ip_hash = {
    .name = "ip_hash",
    .build = balance_maglev_build,
    .destroy = balance_maglev_destroy,
    .pick = balance_maglev_pick,
};
