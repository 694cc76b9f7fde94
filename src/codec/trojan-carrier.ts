/**
 * Carrier sessions: one logical Trojan stream carried over a sequence of short connections, each
 * carrying at most a chosen number of bytes server→client, so that a censor that freezes a flow
 * after a byte budget (Russia's TSPU, about 14–32 KB from foreign hosting; reference
 * censorship-2024-2026.md, n4p#490) never sees a flow reach it. Ladder's own protocol, in the spirit
 * of meek and Xray's XHTTP (a session id, and bytes split over several HTTP requests).
 *
 * A carrier is an ordinary authenticated Trojan CONNECT to the reserved name
 * {@link CARRIER_TARGET} (as Mux.Cool uses v1.mux.cool); its payload starts with the open header:
 * ```
 * +-----+-------+------------+---------------+-------------+-----------+------------------------+
 * | VER | FLAGS | SESSION ID | CARRIER BYTES | DOWN OFFSET | UP OFFSET | TARGET (FLAGS & NEW)   |
 * +-----+-------+------------+---------------+-------------+-----------+------------------------+
 * |  1  |   1   |     16     |   4 (u32 BE)  | 6 (u48 BE)  | 6 (u48 BE)| SOCKS5 address (§5)    |
 * +-----+-------+------------+---------------+-------------+-----------+------------------------+
 * ```
 * VER is 1. FLAGS bit 0 (NEW) opens a session to TARGET; without it the carrier resumes session
 * SESSION ID. CARRIER BYTES caps what the server writes on this carrier, frames included.
 * DOWN OFFSET: server→client bytes the client holds in order (the server resends from there).
 * UP OFFSET: where in the client→server stream this carrier's DATA begins (at most what the server
 * has acknowledged; the server skips what it already has).
 *
 * Then frames both ways:
 * ```
 * +------+-------------+---------+
 * | TYPE | LENGTH (u16)| PAYLOAD |
 * +------+-------------+---------+
 * |  1   |      2      | LENGTH  |
 * ```
 * DATA (0, both ways, LENGTH ≥ 1): stream bytes. NEXT (1, server, empty): this carrier is spent,
 * open the next. FIN (2, both ways, empty): the sender's side of the stream has ended. RESET (3,
 * server, empty): the session is gone (target failed, or expired). ACK (4, u48): from the server,
 * the client→server bytes it has received, which the client may forget; from the client, only
 * after the server's FIN, the server→client bytes it has received: the whole stream arrived and the
 * server may forget the session (a server that sent FIN keeps the session until then, or until
 * its deadline, in case that carrier never arrives and the client resumes).
 * @module
 */
import { CodecError } from '../errors.js';
import { decodeSocksAddr, encodeSocksAddr, socksAddrLength, type Decoded } from './socks-addr.js';
import type { Target } from '../core/target.js';

/** The reserved Trojan target that carries a carrier (`.invalid`, RFC 6761: never a real host). */
export const CARRIER_TARGET: Target = { host: 'carrier.ladder.invalid', port: 1 };

export const CARRIER_VERSION = 1;
export const CARRIER_FLAG_NEW = 0x01;
export const CARRIER_SESSION_ID_LENGTH = 16;
/** VER + FLAGS + SESSION ID + CARRIER BYTES + DOWN OFFSET + UP OFFSET, before the target. */
export const CARRIER_OPEN_FIXED_LENGTH = 1 + 1 + CARRIER_SESSION_ID_LENGTH + 4 + 6 + 6;
/** TYPE + LENGTH */
export const CARRIER_FRAME_HEADER_LENGTH = 1 + 2;
export const CARRIER_MAX_PAYLOAD = 0xffff;
/** The least a carrier may carry: room for an ACK, a DATA frame and the closing NEXT. */
export const CARRIER_MIN_BYTES = 1024;
/** The most: beyond this a carrier is an ordinary long connection. */
export const CARRIER_MAX_BYTES = 16 * 1024 * 1024;
/** Offsets are u48. */
const MAX_OFFSET = 2 ** 48 - 1;

export const CARRIER_FRAME = { DATA: 0, NEXT: 1, FIN: 2, RESET: 3, ACK: 4 } as const;
export type CarrierFrameType = (typeof CARRIER_FRAME)[keyof typeof CARRIER_FRAME];

export interface CarrierOpen {
  /** 16 bytes. */
  readonly sessionId: Uint8Array;
  readonly carrierBytes: number;
  readonly downOffset: number;
  readonly upOffset: number;
  /** Present exactly when the carrier opens a new session. */
  readonly target?: Target;
}

export interface CarrierFrame {
  readonly type: CarrierFrameType;
  /** DATA: a view into the input; ACK: its 6 bytes; otherwise empty. */
  readonly payload: Uint8Array;
}

function bad(why: string): CodecError {
  return new CodecError('ERR_CARRIER', `carrier: ${why}`);
}

export function carrierOpenLength(o: CarrierOpen): number {
  return CARRIER_OPEN_FIXED_LENGTH + (o.target ? socksAddrLength(o.target) : 0);
}

export function encodeCarrierOpen(o: CarrierOpen, out: Uint8Array, offset: number): number {
  if (o.sessionId.length !== CARRIER_SESSION_ID_LENGTH) throw bad('session id must be 16 bytes');
  if (o.carrierBytes < CARRIER_MIN_BYTES || o.carrierBytes > CARRIER_MAX_BYTES)
    throw bad(`carrier bytes ${o.carrierBytes} outside ${CARRIER_MIN_BYTES}..${CARRIER_MAX_BYTES}`);
  if (!(
    o.downOffset >= 0 &&
    o.downOffset <= MAX_OFFSET &&
    o.upOffset >= 0 &&
    o.upOffset <= MAX_OFFSET
  ))
    throw bad('offset out of range');
  const b = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  let p = offset;
  b[p++] = CARRIER_VERSION;
  b[p++] = o.target ? CARRIER_FLAG_NEW : 0;
  b.set(o.sessionId, p);
  p += CARRIER_SESSION_ID_LENGTH;
  b.writeUInt32BE(o.carrierBytes, p);
  p += 4;
  b.writeUIntBE(o.downOffset, p, 6);
  p += 6;
  b.writeUIntBE(o.upOffset, p, 6);
  p += 6;
  if (o.target) p += encodeSocksAddr(o.target, b, p);
  return p - offset;
}

/** Reads an open header; null when more bytes are needed; CodecError ('ERR_CARRIER') when malformed. */
export function decodeCarrierOpen(buf: Uint8Array, offset: number): Decoded<CarrierOpen> | null {
  if (buf.length - offset < 2) return null;
  if (buf[offset] !== CARRIER_VERSION) throw bad(`unknown version ${buf[offset]}`);
  const flags = buf[offset + 1]!;
  if ((flags & ~CARRIER_FLAG_NEW) !== 0) throw bad(`unknown flags 0x${flags.toString(16)}`);
  if (buf.length - offset < CARRIER_OPEN_FIXED_LENGTH) return null;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = offset + 2;
  const sessionId = new Uint8Array(b.subarray(p, p + CARRIER_SESSION_ID_LENGTH));
  p += CARRIER_SESSION_ID_LENGTH;
  const carrierBytes = b.readUInt32BE(p);
  p += 4;
  if (carrierBytes < CARRIER_MIN_BYTES || carrierBytes > CARRIER_MAX_BYTES)
    throw bad(`carrier bytes ${carrierBytes} outside ${CARRIER_MIN_BYTES}..${CARRIER_MAX_BYTES}`);
  const downOffset = b.readUIntBE(p, 6);
  p += 6;
  const upOffset = b.readUIntBE(p, 6);
  p += 6;
  if ((flags & CARRIER_FLAG_NEW) === 0)
    return { value: { sessionId, carrierBytes, downOffset, upOffset }, bytesRead: p - offset };
  if (downOffset !== 0 || upOffset !== 0) throw bad('a new session starts at offset 0');
  const addr = decodeSocksAddr(buf, p);
  if (addr === null) return null;
  return {
    value: { sessionId, carrierBytes, downOffset, upOffset, target: addr.value },
    bytesRead: p + addr.bytesRead - offset,
  };
}

export function carrierFrameLength(payloadLength: number): number {
  return CARRIER_FRAME_HEADER_LENGTH + payloadLength;
}

/** Writes one frame; an ACK's payload is given as `ackOffset`. */
export function encodeCarrierFrame(
  type: CarrierFrameType,
  payload: Uint8Array | null,
  out: Uint8Array,
  offset: number,
  ackOffset = 0,
): number {
  const b = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  let len = 0;
  if (type === CARRIER_FRAME.DATA) {
    len = payload?.length ?? 0;
    if (len < 1 || len > CARRIER_MAX_PAYLOAD) throw bad(`DATA of ${len} bytes`);
  } else if (type === CARRIER_FRAME.ACK) {
    if (!(ackOffset >= 0 && ackOffset <= MAX_OFFSET)) throw bad('ACK offset out of range');
    len = 6;
  }
  b[offset] = type;
  b.writeUInt16BE(len, offset + 1);
  if (type === CARRIER_FRAME.DATA) b.set(payload!, offset + 3);
  else if (type === CARRIER_FRAME.ACK) b.writeUIntBE(ackOffset, offset + 3, 6);
  return CARRIER_FRAME_HEADER_LENGTH + len;
}

/** A frame as a new Buffer (control frames, and DATA off the hot path). */
export function carrierFrame(
  type: CarrierFrameType,
  payload: Uint8Array | null = null,
  ackOffset = 0,
): Buffer {
  const out = Buffer.allocUnsafe(
    carrierFrameLength(
      type === CARRIER_FRAME.DATA ? (payload?.length ?? 0) : type === CARRIER_FRAME.ACK ? 6 : 0,
    ),
  );
  encodeCarrierFrame(type, payload, out, 0, ackOffset);
  return out;
}

/** Reads one frame; null when more bytes are needed; CodecError when it cannot be a frame. */
export function decodeCarrierFrame(buf: Uint8Array, offset: number): Decoded<CarrierFrame> | null {
  if (buf.length - offset < 1) return null;
  const type = buf[offset]!;
  if (type > CARRIER_FRAME.ACK) throw bad(`unknown frame type ${type}`);
  if (buf.length - offset < CARRIER_FRAME_HEADER_LENGTH) return null;
  const len = (buf[offset + 1]! << 8) | buf[offset + 2]!;
  if (type === CARRIER_FRAME.DATA && len === 0) throw bad('empty DATA frame');
  if (type === CARRIER_FRAME.ACK && len !== 6) throw bad(`ACK of ${len} bytes, not 6`);
  if (
    (type === CARRIER_FRAME.NEXT || type === CARRIER_FRAME.FIN || type === CARRIER_FRAME.RESET) &&
    len !== 0
  )
    throw bad(`frame type ${type} with ${len} payload bytes`);
  const end = offset + CARRIER_FRAME_HEADER_LENGTH + len;
  if (buf.length < end) return null;
  return {
    value: { type: type as CarrierFrameType, payload: buf.subarray(offset + 3, end) },
    bytesRead: end - offset,
  };
}

/** An ACK frame's offset. */
export function carrierAckOffset(f: CarrierFrame): number {
  return Buffer.from(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength).readUIntBE(0, 6);
}
