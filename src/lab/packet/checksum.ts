/**
 * The Internet checksum (RFC 1071) and the TCP/UDP pseudo-header sums for IPv4 (RFC 793 §3.1,
 * RFC 768) and IPv6 (RFC 8200 §8.1). Pure: sums over byte ranges, no allocation.
 * @module
 */

/** Adds the 16-bit big-endian words of `buf[start, end)` to `sum` (an odd last byte is padded). */
export function sum16(buf: Uint8Array, start: number, end: number, sum = 0): number {
  let i = start;
  for (; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) sum += buf[i]! << 8;
  return sum;
}

/** Folds a running sum into the one's-complement 16-bit checksum. */
export function finish(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

/**
 * Pseudo-header sum for a TCP or UDP segment carried in the IP packet at `buf[0..]`.
 * IPv4: src, dst, zero+protocol, L4 length. IPv6: src, dst, L4 length (32 bits), next header.
 */
export function pseudoHeaderSum(
  buf: Uint8Array,
  version: 4 | 6,
  protocol: number,
  l4Length: number,
): number {
  if (version === 4) return sum16(buf, 12, 20) + protocol + l4Length;
  return sum16(buf, 8, 40) + Math.floor(l4Length / 0x10000) + (l4Length & 0xffff) + protocol;
}
