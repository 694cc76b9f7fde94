/**
 * Tor's VERSIONS cell, the first cell of the link protocol handshake (tor-spec §4 "Negotiating
 * versions with VERSIONS cells"): each side of a new TLS connection sends one, listing the link
 * protocol versions it supports. It is a variable-length cell and, because it comes before any
 * version is agreed, always uses the 2-byte circuit id of link protocols 1–3 (tor-spec §3).
 *
 * ```text
 * | CircID (16) = 0 | Command (8) = 7 | Length (16) | Versions: Length / 2 × uint16 |
 * ```
 * The lab's Tor prober (src/lab/modules/tor.ts, docs/censorship-techniques.md §12) sends one inside TLS; a server that
 * answers with a VERSIONS cell speaks Tor.
 * @module
 */
import { CodecError } from '../../errors.js';

/** Command byte of VERSIONS (tor-spec §3, "Cell commands"). */
export const TOR_CMD_VERSIONS = 7;
/** CircID (2) + Command (1) + Length (2). */
export const VERSIONS_HEADER_LENGTH = 2 + 1 + 2;
/** What current Tor clients offer (link protocols 3, 4 and 5). */
export const TOR_LINK_VERSIONS = [3, 4, 5] as const;

export interface VersionsCell {
  readonly versions: readonly number[];
}

export function versionsCellLength(cell: VersionsCell): number {
  return VERSIONS_HEADER_LENGTH + 2 * cell.versions.length;
}

/** Writes a VERSIONS cell at `offset`; returns the bytes written. */
export function encodeVersionsCell(cell: VersionsCell, out: Uint8Array, offset = 0): number {
  const len = versionsCellLength(cell);
  if (cell.versions.length === 0 || cell.versions.length > 0x7fff)
    throw new CodecError('ERR_CODEC', 'a VERSIONS cell lists 1..32767 versions');
  if (offset + len > out.length)
    throw new CodecError('ERR_CODEC', 'VERSIONS cell: buffer too short');
  let o = offset;
  out[o++] = 0; // CircID 0 (2 bytes before version negotiation)
  out[o++] = 0;
  out[o++] = TOR_CMD_VERSIONS;
  out[o++] = (2 * cell.versions.length) >> 8;
  out[o++] = (2 * cell.versions.length) & 0xff;
  for (const v of cell.versions) {
    if (!Number.isInteger(v) || v < 1 || v > 0xffff)
      throw new CodecError('ERR_CODEC', `VERSIONS cell: bad version ${v}`);
    out[o++] = v >> 8;
    out[o++] = v & 0xff;
  }
  return len;
}

/** A VERSIONS cell as bytes (the prober's probe). */
export function versionsCell(versions: readonly number[] = TOR_LINK_VERSIONS): Buffer {
  const b = Buffer.alloc(versionsCellLength({ versions }));
  encodeVersionsCell({ versions }, b, 0);
  return b;
}

/**
 * Reads a VERSIONS cell at `offset`. Returns null if more bytes are needed; throws a CodecError if
 * the bytes cannot be one (circuit id not 0, another command, an odd or empty version list, a
 * version 0).
 */
export function decodeVersionsCell(
  buf: Uint8Array,
  offset = 0,
): { value: VersionsCell; bytesRead: number } | null {
  const avail = buf.length - offset;
  // Reject as early as the bytes allow, so that a prober need not wait for a whole cell of garbage.
  if (avail >= 1 && buf[offset] !== 0)
    throw new CodecError('ERR_CODEC', 'not a VERSIONS cell: CircID');
  if (avail >= 2 && buf[offset + 1] !== 0)
    throw new CodecError('ERR_CODEC', 'not a VERSIONS cell: CircID');
  if (avail >= 3 && buf[offset + 2] !== TOR_CMD_VERSIONS)
    throw new CodecError('ERR_CODEC', 'not a VERSIONS cell: command');
  if (avail < VERSIONS_HEADER_LENGTH) return null;
  const len = (buf[offset + 3]! << 8) | buf[offset + 4]!;
  // tor-spec §4: the payload is a list of 2-byte versions; an empty list offers nothing
  if (len === 0 || len % 2 !== 0)
    throw new CodecError('ERR_CODEC', `not a VERSIONS cell: payload length ${len}`);
  if (avail < VERSIONS_HEADER_LENGTH + len) return null;
  const versions: number[] = [];
  for (let o = offset + VERSIONS_HEADER_LENGTH; o < offset + VERSIONS_HEADER_LENGTH + len; o += 2) {
    const v = (buf[o]! << 8) | buf[o + 1]!;
    if (v === 0) throw new CodecError('ERR_CODEC', 'not a VERSIONS cell: version 0');
    versions.push(v);
  }
  return { value: { versions }, bytesRead: VERSIONS_HEADER_LENGTH + len };
}

/**
 * The prober's test (docs/censorship-techniques.md §12): does a server's reply inside TLS start with a whole VERSIONS
 * cell? Returns its versions, or undefined (anything else, or too short to tell).
 */
export function versionsReply(reply: Uint8Array): readonly number[] | undefined {
  try {
    return decodeVersionsCell(reply, 0)?.value.versions;
  } catch (err) {
    if (err instanceof CodecError) return undefined;
    throw err;
  }
}
