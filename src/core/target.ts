/**
 * The bottom layer's seams: types that every layer, codecs included, shares. Nothing here does I/O.
 * @module
 */

/** A destination as SOCKS names it: an IPv4 or IPv6 literal, or a domain name, and a port. */
export interface Target {
  /** IPv4 dotted quad, IPv6 literal without brackets, or a domain name (at most 255 bytes). */
  readonly host: string;
  /** 0..65535 */
  readonly port: number;
}
