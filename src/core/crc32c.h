/* CRC-32C (Castagnoli), as used by iSCSI, ext4 and Kafka record batches. Uses the SSE4.2
 * crc32 instruction; a table fallback exists for completeness (no target here lacks SSE4.2). */
#ifndef SL_CORE_CRC32C_H
#define SL_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc32c of p[0..n) continuing from crc (start with 0). */
uint32_t sl_crc32c(uint32_t crc, const void *p, size_t n);

#endif
