/**
 * Mux.Cool, v2ray's multiplexing framing (v2fly.org "Mux.Cool protocol", version 1 Beta; v2ray-core
 * 4.34 `common/mux/frame.go`), pure. Debian's `v2ray-plugin` client turns it on by default (its
 * `mux` option is 1 unless set to 0), so a server that takes v2ray-plugin's WebSocket must read it.
 *
 * ```
 * frame:     | u16 L | metadata (L bytes) | u16 X | X bytes of data |   the last two iff Opt has D
 * metadata:  | u16 ID | u8 S | u8 Opt | ...                            (big-endian throughout)
 *   S = 0x01 New:       ... | u8 N | u16 port | u8 T | address |      port before address
 *   S = 0x02 Keep, 0x03 End, 0x04 KeepAlive: nothing more
 *   Opt: 0x01 D (data follows), 0x02 E (End: the session ended in error)
 *   N:   0x01 TCP, 0x02 UDP
 *   T:   0x01 IPv4 (4 bytes), 0x02 domain (u8 length, then the name), 0x03 IPv6 (16 bytes)
 * ```
 * The address types are Mux.Cool's own (not SOCKS's 1/3/4). v2ray-core refuses metadata over 512
 * bytes (`frame.go`, `metaLen > 512`); so do we. Later v2ray and Xray versions append fields to
 * New metadata (XUDP's global ID); L covers them, so they are skipped, never misread.
 *
 * The header codec stops before the data: the stream layer passes data through as views of what
 * arrived, without copying it into frames ({@link decodeMuxHeader}, {@link encodeMuxHeader}).
 * @module
 */
import { isIPv4, isIPv6 } from 'node:net';
import { CodecError } from '../errors.js';
import { bytesToIPv6, ipv6ToBytes, type Decoded } from './socks-addr.js';
import type { Target } from '../core/target.js';

export const MUX_STATUS = { NEW: 0x01, KEEP: 0x02, END: 0x03, KEEP_ALIVE: 0x04 } as const;
export type MuxStatus = (typeof MUX_STATUS)[keyof typeof MUX_STATUS];
export const MUX_OPTION = { DATA: 0x01, ERROR: 0x02 } as const;
export const MUX_NETWORK = { TCP: 0x01, UDP: 0x02 } as const;
export type MuxNetwork = (typeof MUX_NETWORK)[keyof typeof MUX_NETWORK];
const MUX_ATYP = { IPV4: 0x01, DOMAIN: 0x02, IPV6: 0x03 } as const;

/** v2ray-core common/mux/frame.go: "invalid metalen" above this. */
export const MUX_MAX_METADATA = 512;
/** Data of one frame: a u16 length. */
export const MUX_MAX_DATA = 0xffff;
/**
 * The destination a v2ray client asks its proxy protocol (Trojan, VMess, VLESS) for when the
 * connection carries Mux.Cool (v2ray-core 4.34 common/mux/client.go: `muxCoolAddress =
 * net.DomainAddress("v1.mux.cool")`, `muxCoolPort = net.Port(9527)`). Its servers check the address
 * alone (common/mux/server.go `Dispatch`: `dest.Address != muxCoolAddress`).
 */
export const MUX_COOL_TARGET = { host: 'v1.mux.cool', port: 9527 } as const;
/** The smallest metadata: ID (2) + S (1) + Opt (1). */
const MUX_MIN_METADATA = 2 + 1 + 1;

export interface MuxFrameHeader {
  readonly sessionId: number;
  readonly status: MuxStatus;
  /** Bits of {@link MUX_OPTION}; D is set exactly when `dataLength` is given. */
  readonly option: number;
  /** New only. */
  readonly network?: MuxNetwork;
  /** New only. */
  readonly target?: Target;
  /** Bytes of data after the header; present iff `option` has D. */
  readonly dataLength?: number;
}

/** As in socks-addr.ts: latin1 (the bytes a name came with), UTF-8 for a name typed above U+00FF. */
function nameBytes(host: string): Buffer {
  for (let i = 0; i < host.length; i++)
    if (host.charCodeAt(i) > 0xff) return Buffer.from(host, 'utf8');
  return Buffer.from(host, 'latin1');
}

function addressLength(host: string): number {
  if (isIPv4(host)) return 1 + 4;
  if (isIPv6(host)) return 1 + 16;
  return 1 + 1 + nameBytes(host).length;
}

function metadataLength(h: MuxFrameHeader): number {
  if (h.status !== MUX_STATUS.NEW) return MUX_MIN_METADATA;
  if (!h.target || h.network === undefined)
    throw new CodecError('ERR_MUX_COOL', 'a New frame needs a network and a target');
  return MUX_MIN_METADATA + 1 + 2 + addressLength(h.target.host); // + N + port + address
}

/** Bytes of the header: u16 L, the metadata, and u16 X when there is data. */
export function muxHeaderLength(h: MuxFrameHeader): number {
  return 2 + metadataLength(h) + (h.dataLength !== undefined ? 2 : 0);
}

/** Writes the header (not the data) at `offset`; returns bytes written. */
export function encodeMuxHeader(h: MuxFrameHeader, out: Uint8Array, offset: number): number {
  const hasData = (h.option & MUX_OPTION.DATA) !== 0;
  if (hasData !== (h.dataLength !== undefined))
    throw new CodecError('ERR_MUX_COOL', 'option D is set exactly when there is data');
  if (h.dataLength !== undefined && (h.dataLength < 0 || h.dataLength > MUX_MAX_DATA))
    throw new CodecError('ERR_MUX_COOL', `frame data of ${h.dataLength} bytes (at most 65535)`);
  if (!Number.isInteger(h.sessionId) || h.sessionId < 0 || h.sessionId > 0xffff)
    throw new CodecError('ERR_MUX_COOL', `session id ${h.sessionId} is not in 0..65535`);
  const metaLen = metadataLength(h);
  if (metaLen > MUX_MAX_METADATA) throw new CodecError('ERR_MUX_COOL', 'metadata over 512 bytes');
  let p = offset;
  out[p++] = metaLen >>> 8;
  out[p++] = metaLen & 0xff;
  out[p++] = h.sessionId >>> 8;
  out[p++] = h.sessionId & 0xff;
  out[p++] = h.status;
  out[p++] = h.option;
  if (h.status === MUX_STATUS.NEW) {
    const { host, port } = h.target!;
    if (!Number.isInteger(port) || port < 0 || port > 0xffff)
      throw new CodecError('ERR_MUX_COOL', `port ${port} is not in 0..65535`);
    out[p++] = h.network!;
    out[p++] = port >>> 8;
    out[p++] = port & 0xff;
    if (isIPv4(host)) {
      out[p++] = MUX_ATYP.IPV4;
      for (const part of host.split('.')) out[p++] = Number(part);
    } else if (isIPv6(host)) {
      out[p++] = MUX_ATYP.IPV6;
      out.set(ipv6ToBytes(host), p);
      p += 16;
    } else {
      const name = nameBytes(host);
      if (name.length === 0 || name.length > 255)
        throw new CodecError(
          'ERR_MUX_COOL',
          `domain name must be 1..255 bytes, got ${name.length}`,
        );
      out[p++] = MUX_ATYP.DOMAIN;
      out[p++] = name.length;
      out.set(name, p);
      p += name.length;
    }
  }
  if (h.dataLength !== undefined) {
    out[p++] = h.dataLength >>> 8;
    out[p++] = h.dataLength & 0xff;
  }
  return p - offset;
}

function parseNewMetadata(
  buf: Uint8Array,
  start: number,
  end: number,
): { network: MuxNetwork; target: Target } {
  // start points after ID, S, Opt
  const short = (): CodecError =>
    new CodecError('ERR_MUX_COOL', 'New metadata ends inside its address');
  if (end - start < 1 + 2 + 1) throw short();
  const network = buf[start]!;
  if (network !== MUX_NETWORK.TCP && network !== MUX_NETWORK.UDP)
    throw new CodecError('ERR_MUX_COOL', `unknown network 0x${network.toString(16)}`);
  const port = (buf[start + 1]! << 8) | buf[start + 2]!;
  const atyp = buf[start + 3]!;
  let p = start + 4;
  let host: string;
  switch (atyp) {
    case MUX_ATYP.IPV4:
      if (end - p < 4) throw short();
      host = `${buf[p]}.${buf[p + 1]}.${buf[p + 2]}.${buf[p + 3]}`;
      break;
    case MUX_ATYP.IPV6:
      if (end - p < 16) throw short();
      host = bytesToIPv6(buf.subarray(p, p + 16));
      break;
    case MUX_ATYP.DOMAIN: {
      if (end - p < 1) throw short();
      const n = buf[p++]!;
      if (n === 0) throw new CodecError('ERR_MUX_COOL', 'empty domain name');
      if (end - p < n) throw short();
      host = Buffer.from(buf.buffer, buf.byteOffset + p, n).toString('latin1');
      break;
    }
    default:
      throw new CodecError('ERR_MUX_COOL', `unknown address type 0x${atyp.toString(16)}`);
  }
  return { network, target: { host, port } };
}

/**
 * Reads a frame header at `offset`: null when more bytes are needed; CodecError ('ERR_MUX_COOL')
 * when the bytes cannot be a frame. `bytesRead` stops where the data begins.
 */
export function decodeMuxHeader(buf: Uint8Array, offset: number): Decoded<MuxFrameHeader> | null {
  if (buf.length < offset + 2) return null;
  const metaLen = (buf[offset]! << 8) | buf[offset + 1]!;
  if (metaLen > MUX_MAX_METADATA)
    throw new CodecError('ERR_MUX_COOL', `metadata of ${metaLen} bytes (at most 512)`);
  if (metaLen < MUX_MIN_METADATA)
    throw new CodecError('ERR_MUX_COOL', `metadata of ${metaLen} bytes (at least 4)`);
  const m = offset + 2;
  if (buf.length < m + metaLen) return null;
  const sessionId = (buf[m]! << 8) | buf[m + 1]!;
  const status = buf[m + 2]!;
  const option = buf[m + 3]!;
  if (status < MUX_STATUS.NEW || status > MUX_STATUS.KEEP_ALIVE)
    throw new CodecError('ERR_MUX_COOL', `unknown session status 0x${status.toString(16)}`);
  let p = m + metaLen;
  let dataLength: number | undefined;
  if (option & MUX_OPTION.DATA) {
    if (buf.length < p + 2) return null;
    dataLength = (buf[p]! << 8) | buf[p + 1]!;
    p += 2;
  }
  const base = { sessionId, status: status as MuxStatus, option };
  const withData = dataLength !== undefined ? { dataLength } : {};
  if (status === MUX_STATUS.NEW) {
    const { network, target } = parseNewMetadata(buf, m + 4, m + metaLen);
    return { value: { ...base, network, target, ...withData }, bytesRead: p - offset };
  }
  return { value: { ...base, ...withData }, bytesRead: p - offset };
}

// ---------------------------------------------------------------------------------- padding

/**
 * Padding (Ladder's use of KeepAlive): a KeepAlive frame may carry data, and both ends of v2ray-core
 * 4.34 read it and throw it away (common/mux/server.go `handleStatusKeepAlive`, client.go
 * `handleStatueKeepAlive`: the frame's data is copied to `buf.Discard`); so does src/stream/mux-cool.ts.
 * A sender may therefore follow a frame with a KeepAlive of random length in the same write, to
 * change the size of what the outer TLS records carry without changing what the session reads
 * (docs/lab.md "TLS in TLS").
 *
 * The length, as XTLS Vision chooses it for an inner TLS handshake: a flight (the frame it follows,
 * header and data) shorter than {@link MUX_PAD_SHORT_FLIGHT} bytes grows to a total drawn uniformly
 * from [900, 1400), whatever its own size, so the total says nothing about it (an inner ClientHello
 * of 517 bytes and an HTTP request of 300 look the same); a longer flight gets 0..255 bytes more.
 * Padding only adds: a flight of 2000 bytes stays above 2000.
 */
export const MUX_PAD_SHORT_FLIGHT = 900;
/** Width of the band short flights are padded into: totals in [900, 900 + 500). */
export const MUX_PAD_SPREAD = 500;
/** Long flights: 0..255 bytes of padding data. */
export const MUX_PAD_LONG_MAX = 256;
/** A KeepAlive frame's bytes before its data: u16 L, ID (2), S, Opt, u16 X. */
export const MUX_PAD_OVERHEAD = 2 + MUX_MIN_METADATA + 2;

/**
 * Data bytes of the KeepAlive frame that pads a flight of `flight` bytes (header and data of the
 * frame it follows). `rand(n)` returns a whole number in [0, n) (a parameter, so this stays pure).
 * The padded total (flight + {@link MUX_PAD_OVERHEAD} + the result) is uniform in [900, 1400) for
 * a flight under 892 bytes.
 */
export function muxPaddingLength(flight: number, rand: (n: number) => number): number {
  if (!Number.isInteger(flight) || flight < 0)
    throw new CodecError('ERR_MUX_COOL', `flight of ${flight} bytes`);
  if (flight < MUX_PAD_SHORT_FLIGHT) {
    const total = MUX_PAD_SHORT_FLIGHT + rand(MUX_PAD_SPREAD);
    return Math.max(0, total - flight - MUX_PAD_OVERHEAD);
  }
  return rand(MUX_PAD_LONG_MAX);
}

/** The KeepAlive header of a padding frame with `length` bytes of data, for session `sessionId`. */
export function muxPaddingHeader(sessionId: number, length: number): MuxFrameHeader {
  return {
    sessionId,
    status: MUX_STATUS.KEEP_ALIVE,
    option: MUX_OPTION.DATA,
    dataLength: length,
  };
}

/** The bytes a Mux.Cool stream opens with: a New frame for session 1 or more, TCP or UDP. */
const FIRST_FRAME_PREFIX_LENGTH = 7; // u16 L, u16 ID, S, Opt, N

/**
 * Does a stream that begins with `b` carry Mux.Cool, rather than a raw Shadowsocks stream (a
 * random salt)? 'mux', 'raw', or null while fewer than 7 bytes decide. A v2ray client opens each
 * connection with a New frame for its session 1 (v2ray-core `SessionManager.Allocate` counts from
 * 1): L ≤ 512, ID < 256, S = New, Opt 0 or D, N TCP or UDP. A random salt looks like that about
 * once in 2^36 connections.
 */
export function classifyMuxStart(b: Uint8Array): 'mux' | 'raw' | null {
  const ok: ((x: number) => boolean)[] = [
    (x: number) => x <= MUX_MAX_METADATA >>> 8, // high byte of L
    () => true, // low byte of L
    (x: number) => x === 0, // high byte of ID: a connection's first session is 1
    () => true,
    (x: number) => x === MUX_STATUS.NEW,
    (x: number) => x === 0 || x === MUX_OPTION.DATA,
    (x: number) => x === MUX_NETWORK.TCP || x === MUX_NETWORK.UDP,
  ];
  const n = Math.min(b.length, FIRST_FRAME_PREFIX_LENGTH);
  for (let i = 0; i < n; i++) if (!ok[i]!(b[i]!)) return 'raw';
  if (n < FIRST_FRAME_PREFIX_LENGTH) return null;
  const metaLen = (b[0]! << 8) | b[1]!;
  // New metadata holds at least ID, S, Opt, N, port, T and a 1-byte address part.
  return metaLen >= MUX_MIN_METADATA + 1 + 2 + 1 + 1 && metaLen <= MUX_MAX_METADATA ? 'mux' : 'raw';
}
