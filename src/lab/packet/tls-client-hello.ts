/**
 * Reads a TLS ClientHello (RFC 8446 §4.1.2) from the start of a TCP stream, the way the GFW's SNI
 * filter does: from the FIRST TLS record only, with no reassembly across records (docs/censorship-techniques.md §0 and
 * §6, sp25 "Parsing logic", checked 2024-04-04). A ClientHello split over several records is read
 * as far as the first record goes; a server_name beyond that point is not seen.
 *
 * ```text
 * record:    | 16 | 03 xx | length (16) | fragment ...
 * handshake: | 01 | length (24) | version (16) | random (32) | sid_len | sid | cs_len (16) | suites
 *            | comp_len | comp | ext_len (16) | { type (16) | len (16) | data }*
 * SNI ext 0: | list_len (16) | name_type 0 | name_len (16) | host_name
 * ```
 * @module
 */

export const TLS_RECORD_HEADER_LENGTH = 5;

export interface ClientHelloInfo {
  /** The first host_name in server_name, lower-cased; undefined if none was seen. */
  readonly sni: string | undefined;
  readonly cipherSuites: readonly number[];
  /** Extension types in the order they appear (as far as the first record goes). */
  readonly extensions: readonly number[];
  /** True if the ClientHello ran past the end of the first record. */
  readonly truncated: boolean;
  /** legacy_version (JA3's SSLVersion). */
  readonly version?: number;
  /** supported_groups (extension 10) and ec_point_formats (extension 11), for JA3. */
  readonly groups?: readonly number[];
  readonly pointFormats?: readonly number[];
}

/** True if `d` starts like a TLS record of type handshake. */
export function looksLikeTlsHandshake(d: Uint8Array): boolean {
  return d.length >= 3 && d[0] === 0x16 && d[1] === 0x03;
}

/**
 * Parses the ClientHello in the first TLS record of `d`. Returns null if `d` does not yet hold the
 * whole first record (need more stream bytes), and `undefined` if it is not a handshake record
 * holding a ClientHello. Never throws: malformed fields end parsing with what was read so far.
 */
export function parseClientHello(d: Uint8Array): ClientHelloInfo | null | undefined {
  if (d.length < TLS_RECORD_HEADER_LENGTH)
    return d.length === 0 || d[0] === 0x16 ? null : undefined;
  if (!looksLikeTlsHandshake(d)) return undefined;
  const recordLen = (d[3]! << 8) | d[4]!;
  if (d.length < TLS_RECORD_HEADER_LENGTH + recordLen) return null;
  const end = TLS_RECORD_HEADER_LENGTH + recordLen;
  let o = TLS_RECORD_HEADER_LENGTH;
  if (o + 4 > end || d[o] !== 0x01) return undefined;
  const hsLen = (d[o + 1]! << 16) | (d[o + 2]! << 8) | d[o + 3]!;
  const truncated = o + 4 + hsLen > end;
  o += 4;
  const suites: number[] = [];
  const extensions: number[] = [];
  let sni: string | undefined;
  const groups: number[] = [];
  const pointFormats: number[] = [];
  const version = o + 2 <= end ? (d[o]! << 8) | d[o + 1]! : undefined;
  const done = () => ({
    sni,
    cipherSuites: suites,
    extensions,
    truncated,
    ...(version !== undefined ? { version } : {}),
    groups,
    pointFormats,
  });
  o += 2 + 32; // legacy_version, random
  if (o + 1 > end) return done();
  o += 1 + d[o]!; // legacy_session_id
  if (o + 2 > end) return done();
  const csLen = (d[o]! << 8) | d[o + 1]!;
  o += 2;
  for (let i = 0; i + 1 < csLen && o + i + 1 < end; i += 2)
    suites.push((d[o + i]! << 8) | d[o + i + 1]!);
  o += csLen;
  if (o + 1 > end) return done();
  o += 1 + d[o]!; // legacy_compression_methods
  if (o + 2 > end) return done();
  const extEnd = Math.min(end, o + 2 + ((d[o]! << 8) | d[o + 1]!));
  o += 2;
  while (o + 4 <= extEnd) {
    const type = (d[o]! << 8) | d[o + 1]!;
    const len = (d[o + 2]! << 8) | d[o + 3]!;
    extensions.push(type);
    const body = o + 4;
    if (type === 0 && sni === undefined && body + len <= extEnd)
      sni = readServerName(d, body, body + len);
    if (type === 10 && body + len <= extEnd && body + 2 <= extEnd)
      for (let i = body + 2; i + 1 < body + len; i += 2) groups.push((d[i]! << 8) | d[i + 1]!);
    if (type === 11 && body + len <= extEnd && body + 1 <= extEnd)
      for (let i = body + 1; i < body + len; i++) pointFormats.push(d[i]!);
    o = body + len;
  }
  return done();
}

function readServerName(d: Uint8Array, o: number, end: number): string | undefined {
  if (o + 2 > end) return undefined;
  o += 2; // server_name_list length
  while (o + 3 <= end) {
    const type = d[o]!;
    const len = (d[o + 1]! << 8) | d[o + 2]!;
    if (o + 3 + len > end) return undefined;
    if (type === 0) return String.fromCharCode(...d.subarray(o + 3, o + 3 + len)).toLowerCase();
    o += 3 + len;
  }
  return undefined;
}

/**
 * A copy of a ClientHello record with one extension appended (record, handshake and extensions
 * lengths updated): the lab's way to send extensions that no client at hand sends (ESNI, ECH, §7).
 * The ClientHello must be whole in its first record. Returns undefined if it is not.
 */
export function withExtension(
  record: Uint8Array,
  type: number,
  data: Uint8Array = new Uint8Array(0),
): Buffer | undefined {
  const ch = parseClientHello(record);
  if (!ch || ch.truncated) return undefined;
  const d = Buffer.from(record);
  let o = TLS_RECORD_HEADER_LENGTH + 4 + 2 + 32; // record, handshake header, version, random
  o += 1 + d[o]!; // session id
  o += 2 + d.readUInt16BE(o); // cipher suites
  o += 1 + d[o]!; // compression methods
  const extLenAt = o;
  const end = TLS_RECORD_HEADER_LENGTH + d.readUInt16BE(3);
  const ext = Buffer.alloc(4 + data.length);
  ext.writeUInt16BE(type, 0);
  ext.writeUInt16BE(data.length, 2);
  ext.set(data, 4);
  const out = Buffer.concat([d.subarray(0, end), ext, d.subarray(end)]);
  out.writeUInt16BE(out.readUInt16BE(3) + ext.length, 3);
  const hsLen = out.readUIntBE(6, 3) + ext.length;
  out.writeUIntBE(hsLen, 6, 3);
  out.writeUInt16BE(out.readUInt16BE(extLenAt) + ext.length, extLenAt);
  return out;
}

/**
 * The handshake bytes of consecutive handshake records at the start of `d`, joined and re-framed as
 * one record, the way a reassembling filter reads a ClientHello that a client split over several
 * records (TLS record fragmentation, RFC 8446 §5.1 allows it). Returns null while the ClientHello's
 * declared length is not yet covered by whole records, undefined if `d` does not start with a
 * handshake record. Reads at most `maxRecords` records (a cap against a stream of tiny records).
 */
export function joinHandshakeRecords(d: Uint8Array, maxRecords = 512): Buffer | null | undefined {
  if (d.length < TLS_RECORD_HEADER_LENGTH)
    return d.length === 0 || d[0] === 0x16 ? null : undefined;
  if (!looksLikeTlsHandshake(d)) return undefined;
  const parts: Uint8Array[] = [];
  let have = 0;
  let hsLen = -1;
  let o = 0;
  for (let n = 0; n < maxRecords; n++) {
    if (o + TLS_RECORD_HEADER_LENGTH > d.length) return null;
    if (d[o] !== 0x16 || d[o + 1] !== 0x03) break; // another content type ends the handshake
    const len = (d[o + 3]! << 8) | d[o + 4]!;
    if (o + TLS_RECORD_HEADER_LENGTH + len > d.length) return null;
    parts.push(d.subarray(o + TLS_RECORD_HEADER_LENGTH, o + TLS_RECORD_HEADER_LENGTH + len));
    have += len;
    o += TLS_RECORD_HEADER_LENGTH + len;
    if (have >= 4 && hsLen < 0) {
      const h = Buffer.concat(parts).subarray(0, 4); // once: the handshake header
      hsLen = (h[1]! << 16) | (h[2]! << 8) | h[3]!;
    }
    if (hsLen >= 0 && have >= 4 + hsLen) break;
  }
  if (have === 0) return undefined;
  const body = Buffer.concat(parts).subarray(0, Math.min(have, 0xffff));
  const head = Buffer.of(0x16, d[1]!, d[2]!, body.length >> 8, body.length & 0xff);
  return Buffer.concat([head, body]);
}
