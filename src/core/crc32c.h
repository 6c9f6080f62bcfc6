/* CRC32C (Castagnoli, the iSCSI/SCTP checksum: polynomial 0x1EDC6F41,
 * reflected, initial and final XOR 0xFFFFFFFF), as the PROXY protocol v2
 * PP2_TYPE_CRC32C TLV carries it. The check value: crc32c(0, "123456789", 9)
 * is 0xE3069283. */
#ifndef SLUICE_CORE_CRC32C_H
#define SLUICE_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of crc's bytes followed by p[0..n): start with 0, and pass the
 * last result back to go on with the next piece (zlib's crc32 convention),
 * so a checksum over pieces needs no copy. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

#endif
