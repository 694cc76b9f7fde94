/**
 * Shadowsocks TCP sessions, both editions, as pure state machines: bytes in, bytes out; the current
 * time (ms) and a random source are parameters.
 *
 * AEAD-2017 (shadowsocks.org "AEAD ciphers"):
 * ```
 * request:  | salt | chunks( SOCKS addr || payload ... ) |
 * response: | salt | chunks( payload ... ) |
 * ```
 * 2022 (SIP022 §3.1, SIP023 TCP):
 * ```
 * request:  | salt | identity headers (16B each) | seal(type=0, u64be ts, u16be len) | seal(addr, u16be padlen, padding, payload) | chunks ... |
 * response: | salt | seal(type=1, u64be ts, request salt, u16be len) | seal(payload) | chunks ... |
 * ```
 * @module
 */
import { timingSafeEqual } from 'node:crypto';
import { AuthError, CodecError, ConfigError } from '../errors.js';
import { aesDecryptBlock, aesEncryptBlock, CounterAead } from '../crypto/aead.js';
import { pskHash16, ss2022IdentitySubkey, ss2022SessionSubkey, ssSubkey } from '../crypto/kdf.js';
import { TAG_SIZE } from '../crypto/methods.js';
import type { SsCipherKey } from '../crypto/ss-key.js';
import { decodeSocksAddr, encodeSocksAddr, socksAddrLength } from './socks-addr.js';
import {
  ByteQueue,
  ChunkReader,
  ChunkWriter,
  ScratchSlot,
  MAX_PAYLOAD_2017,
  MAX_PAYLOAD_2022,
} from './ss-stream.js';
import type { Target } from '../core/target.js';

export type Random = (n: number) => Buffer;

/** SIP022 §3.1.3 header types. */
export const HEADER_TYPE = { CLIENT_STREAM: 0, SERVER_STREAM: 1 } as const;
/** SIP022 §3.1.3: "Messages with over 30 seconds of time difference MUST be treated as replay." */
export const MAX_TIME_DIFF_S = 30;
/** SIP022 §3.1.3 MaxPaddingLength. */
export const MAX_PADDING_LENGTH = 900;
/** Request fixed-length header: type + u64be timestamp + u16be length. */
export const REQUEST_FIXED_HEADER_LENGTH = 1 + 8 + 2;
/** Identity header: one AES block. */
export const IDENTITY_HEADER_LENGTH = 16;
/** Longest SOCKS address: atyp + len + 255-byte name + port. */
const MAX_SOCKS_ADDR_LENGTH = 1 + 1 + 255 + 2;

/** Response fixed-length header: type + u64be timestamp + request salt + u16be length. */
export function responseFixedHeaderLength(saltSize: number): number {
  return 1 + 8 + saltSize + 2;
}

function checkTimestamp(buf: Buffer, offset: number, nowMs: number): void {
  const ts = Number(buf.readBigUInt64BE(offset));
  // SIP022 §3.1.3: over 30 s of difference is a replay.
  if (Math.abs(nowMs / 1000 - ts) > MAX_TIME_DIFF_S) {
    throw new AuthError(
      'ERR_SS2022_BAD_TIMESTAMP',
      `timestamp is ${Math.round(ts - nowMs / 1000)} s off`,
    );
  }
}

function nowSeconds(nowMs: number): bigint {
  return BigInt(Math.floor(nowMs / 1000));
}

// ---------------------------------------------------------------------------------------------
// Client

/** Client side of one TCP proxy connection. */
export class SsTcpClientSession {
  readonly #key: SsCipherKey;
  readonly #random: Random;
  readonly #saltPrefix: Uint8Array | undefined;
  readonly #scratch: ScratchSlot | undefined;
  #writer: ChunkWriter | null = null;
  #requestSalt: Buffer | null = null;
  // response side
  #queue = new ByteQueue();
  #reader: ChunkReader | null = null;

  /**
   * @param saltPrefix Outline's prefix: replaces the first bytes of the request salt (the key parser
   *   keeps at least 8 salt bytes random; src/codec/ss-prefix.ts).
   * @param scratch the dialer's shared output buffer ({@link ScratchSlot}); by default one of its own.
   */
  constructor(key: SsCipherKey, random: Random, saltPrefix?: Uint8Array, scratch?: ScratchSlot) {
    this.#key = key;
    this.#random = random;
    this.#scratch = scratch;
    if (saltPrefix && saltPrefix.length > key.keySize - 8)
      throw new ConfigError(
        'ERR_CONFIG',
        `a ${saltPrefix.length}-byte prefix leaves fewer than 8 of the ${key.keySize} salt bytes random`,
      );
    this.#saltPrefix = saltPrefix && saltPrefix.length > 0 ? saltPrefix : undefined;
  }

  /**
   * The first bytes of the connection: salt, request header for `target`, and `payload` (may be
   * empty; 2022 then adds random padding as SIP022 §3.1.3 requires). Send them in one write.
   */
  encodeRequest(target: Target, payload: Uint8Array, nowMs: number): Buffer {
    const key = this.#key;
    const salt = this.#random(key.keySize);
    if (this.#saltPrefix) salt.set(this.#saltPrefix, 0); // Outline: the prefix replaces salt bytes
    this.#requestSalt = salt;
    const addrLen = socksAddrLength(target);
    if (key.edition === 2017) {
      const aead = new CounterAead(key.cipher, ssSubkey(key.key, salt));
      this.#writer = new ChunkWriter(aead, MAX_PAYLOAD_2017, this.#scratch);
      const first = Buffer.allocUnsafe(addrLen + payload.length);
      encodeSocksAddr(target, first, 0);
      first.set(payload, addrLen);
      const out = Buffer.allocUnsafe(salt.length + this.#writer.encodedLength(first.length));
      salt.copy(out, 0);
      this.#writer.encodeInto(first, out, salt.length);
      return out;
    }
    const aead = new CounterAead(key.cipher, ss2022SessionSubkey(key.key, salt));
    this.#writer = new ChunkWriter(aead, MAX_PAYLOAD_2022, this.#scratch);
    const padLen =
      payload.length === 0 ? 1 + (this.#random(2).readUInt16BE(0) % MAX_PADDING_LENGTH) : 0;
    // The variable header must fit one chunk; payload beyond that goes into ordinary chunks.
    const room = MAX_PAYLOAD_2022 - addrLen - 2 - padLen;
    const inHeader = payload.subarray(0, Math.min(room, payload.length));
    const rest = payload.subarray(inHeader.length);
    const varLen = addrLen + 2 + padLen + inHeader.length;
    const ids = key.identityKeys.length * IDENTITY_HEADER_LENGTH;
    const total =
      salt.length +
      ids +
      REQUEST_FIXED_HEADER_LENGTH +
      TAG_SIZE +
      varLen +
      TAG_SIZE +
      this.#writer.encodedLength(rest.length);
    const out = Buffer.alloc(total);
    let p = salt.copy(out, 0);
    // SIP023: one identity header per iPSK, each naming the next PSK.
    for (let i = 0; i < key.identityKeys.length; i++) {
      const next = key.identityKeys[i + 1] ?? key.key;
      const sub = ss2022IdentitySubkey(key.identityKeys[i]!, salt);
      p += aesEncryptBlock(sub, pskHash16(next)).copy(out, p);
    }
    const fixed = Buffer.alloc(REQUEST_FIXED_HEADER_LENGTH);
    fixed[0] = HEADER_TYPE.CLIENT_STREAM;
    fixed.writeBigUInt64BE(nowSeconds(nowMs), 1);
    fixed.writeUInt16BE(varLen, 9);
    p += aead.seal(fixed, out, p);
    const variable = Buffer.alloc(varLen);
    let v = encodeSocksAddr(target, variable, 0);
    variable.writeUInt16BE(padLen, v);
    v += 2;
    if (padLen > 0) v += this.#random(padLen).copy(variable, v);
    variable.set(inHeader, v);
    p += aead.seal(variable, out, p);
    this.#writer.encodeInto(rest, out, p);
    return out;
  }

  /** Later payload. */
  encode(payload: Uint8Array): Buffer {
    if (this.#writer === null) throw new Error('encodeRequest must come first');
    return this.#writer.encode(payload);
  }

  /** See {@link ChunkWriter.release}. */
  release(): void {
    this.#writer?.release();
  }

  /**
   * Bytes from the server (ownership passes: they are decrypted in place); returns the payloads now
   * complete. Throws AuthError/CodecError. `borrowed`: see {@link ChunkReader.push}.
   */
  decode(chunk: Buffer, nowMs: number, borrowed = false): Buffer[] {
    if (this.#reader !== null) return this.#reader.push(chunk, borrowed);
    this.#queue.push(chunk, borrowed);
    try {
      return this.#decodeHead(nowMs);
    } finally {
      this.#queue.detach();
    }
  }

  #decodeHead(nowMs: number): Buffer[] {
    const key = this.#key;
    const q = this.#queue;
    if (key.edition === 2017) {
      if (q.length < key.keySize) return [];
      const aead = new CounterAead(key.cipher, ssSubkey(key.key, q.take(key.keySize)));
      this.#reader = new ChunkReader(aead, MAX_PAYLOAD_2017, q);
    } else {
      const fixedLen = responseFixedHeaderLength(key.keySize);
      if (q.length < key.keySize + fixedLen + TAG_SIZE) return [];
      const salt = q.take(key.keySize);
      const aead = new CounterAead(key.cipher, ss2022SessionSubkey(key.key, salt));
      const fixed = aead.open(q.take(fixedLen + TAG_SIZE));
      if (fixed === null)
        throw new AuthError('ERR_SS_BAD_TAG', 'response header failed authentication');
      if (fixed[0] !== HEADER_TYPE.SERVER_STREAM) {
        throw new AuthError('ERR_SS2022_BAD_HEADER', `response header type ${fixed[0]} is not 1`);
      }
      checkTimestamp(fixed, 1, nowMs);
      // SIP022 §3.1.3: "The client MUST check this field in response header against the request salt."
      const reqSalt = fixed.subarray(9, 9 + key.keySize);
      if (this.#requestSalt === null || !timingSafeEqual(reqSalt, this.#requestSalt)) {
        throw new AuthError('ERR_SS2022_BAD_REQUEST_SALT', 'response is bound to another request');
      }
      const reader = new ChunkReader(aead, MAX_PAYLOAD_2022, q);
      reader.expectPayload(fixed.readUInt16BE(9 + key.keySize));
      this.#reader = reader;
    }
    const out: Buffer[] = [];
    this.#reader.drainInto(out);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Server

/** One access key as the server holds it. */
export interface SsServerKey {
  /** Stable id, used for accounting and metrics (never the secret). */
  readonly id: string;
  readonly key: SsCipherKey;
}

interface IdentityGroup {
  readonly ipsk: Buffer;
  readonly keySize: number;
  readonly users: Map<string, SsServerKey>;
}

/**
 * The keys one server port accepts, arranged for fast lookup: AEAD-2017 and single-PSK 2022 keys are
 * found by trial decryption; 2022 keys with an identity PSK by the SIP023 identity header.
 */
export class SsKeyTable {
  readonly trial: readonly SsServerKey[];
  readonly groups: readonly IdentityGroup[];
  readonly size: number;

  constructor(keys: readonly SsServerKey[]) {
    const trial: SsServerKey[] = [];
    const groups = new Map<string, IdentityGroup>();
    for (const k of keys) {
      if (k.key.identityKeys.length === 0) {
        trial.push(k);
        continue;
      }
      if (k.key.identityKeys.length > 1) {
        throw new ConfigError(
          'ERR_CONFIG',
          `key ${k.id}: a server takes one identity PSK, not a relay chain`,
        );
      }
      const ipsk = k.key.identityKeys[0]!;
      const gk = `${k.key.method}:${ipsk.toString('hex')}`;
      let g = groups.get(gk);
      if (!g) {
        g = { ipsk, keySize: k.key.keySize, users: new Map() };
        groups.set(gk, g);
      }
      g.users.set(pskHash16(k.key.key).toString('latin1'), k);
    }
    this.trial = trial;
    this.groups = [...groups.values()];
    this.size = keys.length;
    // Built once per table, not per connection: with 1,000 keys, making a candidate per key for
    // every connection cost more than the one trial decryption the per-client hint leaves. A
    // key's candidate is also kept across tables, which are rebuilt whenever any key changes
    // (so this loop is the whole cost of a change: no copies of the list, no sort when in order).
    const candidates: Candidate[] = [];
    for (const k of trial) {
      let c = trialCandidates.get(k);
      if (!c) trialCandidates.set(k, (c = trialCandidate(k)));
      candidates.push(c);
    }
    for (const g of this.groups) candidates.push(identityCandidate(g));
    let sorted = true;
    for (let i = 1; i < candidates.length && sorted; i++)
      sorted = candidates[i - 1]!.need <= candidates[i]!.need;
    if (!sorted) candidates.sort((a, b) => a.need - b.need);
    this.candidates = candidates;
    this.#candidateIndex = new Map();
    for (let i = 0; i < candidates.length; i++) {
      const key = candidates[i]!.key;
      if (key) this.#candidateIndex.set(key, i);
    }
  }

  /** @internal Every way to open a TCP request, by the bytes each needs (fewest first). */
  readonly candidates: readonly Candidate[];
  readonly #candidateIndex: Map<SsServerKey, number>;

  /** True if `key` (the same object) is one of this table's keys. */
  has(key: SsServerKey): boolean {
    if (this.#candidateIndex.has(key)) return true;
    if (key.key.identityKeys.length === 0) return false;
    for (const g of this.groups)
      if (g.users.get(pskHash16(key.key.key).toString('latin1')) === key) return true;
    return false;
  }

  /** @internal The candidate of a trial key of this table, or -1. */
  candidateOf(key: SsServerKey | undefined): number {
    return key === undefined ? -1 : (this.#candidateIndex.get(key) ?? -1);
  }
}

/** What the replay defences need; the server passes its filters in. */
export interface ReplayGuard {
  /** AEAD-2017: true if the salt is new (and records it); false for a replay. */
  addSalt2017(salt: Uint8Array): boolean;
  /** AEAD-2017: true if this is a salt the server itself sent (a reflected response). */
  isOwnSalt2017?(salt: Uint8Array): boolean;
  /** 2022: true if the salt is new within 60 s (and records it). */
  addSalt2022(salt: Uint8Array, nowMs: number): boolean;
}

/** A request that authenticated: its key, its target, the payload that came with it. */
export interface AcceptedTcp {
  readonly key: SsServerKey;
  readonly target: Target;
  readonly initialPayload: Buffer;
  readonly stream: SsTcpServerStream;
}

interface Opened {
  readonly key: SsServerKey;
  /** The direction's AEAD, its counter just past what `consume` covers. */
  readonly aead: CounterAead;
  /** 2022: the opened request fixed header. */
  readonly fixed: Buffer | null;
  /** Bytes of the queue that this opening used up, salt included. */
  readonly consume: number;
}

export interface Candidate {
  /** Bytes needed before this candidate can be tried. */
  readonly need: number;
  /** The key this candidate stands for, when it is a single key (not an identity group). */
  readonly key?: SsServerKey;
  readonly tryOpen: (q: ByteQueue) => Opened | null;
}

interface Found extends Opened {
  readonly salt: Buffer;
}

/**
 * Reads the start of a server-side connection until it knows the key, the target and the first
 * payload. `push` returns null while it needs more bytes, and throws AuthError or CodecError when the
 * bytes cannot be a valid request (the caller then applies the uniform pre-auth behaviour).
 */
export class SsTcpAcceptor {
  readonly #replay: ReplayGuard;
  readonly #random: Random;
  readonly #q = new ByteQueue();
  readonly #candidates: readonly Candidate[];
  /** The preferred candidate's index (tried first, once it has its bytes), or -1. */
  #preferred: number;
  #preferredTried = false;
  /** Candidates before this index have been tried (they are sorted by the bytes they need). */
  #next = 0;
  #found: Found | null = null;
  #plain: Buffer[] = [];
  #reader: ChunkReader | null = null;
  readonly #triesPerCall: number;
  #deferred = false;

  readonly #scratch: ScratchSlot | undefined;

  /**
   * `preferred` is tried first (the key that last matched for this client, as outline-ss-server
   * does); `scratch` is the server's shared output buffer for the response stream. At most
   * `triesPerCall` keys are tried by one `push` or `resume`: the rest wait for `resume`
   * (see {@link deferred}), so that a trial over many keys can be spread over several turns.
   */
  constructor(
    table: SsKeyTable,
    replay: ReplayGuard,
    random: Random,
    preferred?: SsServerKey,
    scratch?: ScratchSlot,
    triesPerCall = Infinity,
  ) {
    this.#triesPerCall = Math.max(1, triesPerCall);
    this.#scratch = scratch;
    this.#replay = replay;
    this.#random = random;
    this.#candidates = table.candidates;
    this.#preferred = table.candidateOf(preferred);
  }

  /** Bytes held so far. */
  get buffered(): number {
    return this.#q.length;
  }

  /**
   * True when the last `push` or `resume` returned null because it tried its `triesPerCall` keys
   * while others could still be tried with the bytes held: call `resume` (not only on new bytes).
   */
  get deferred(): boolean {
    return this.#deferred;
  }

  /** Takes ownership of `chunk` (it may be decrypted in place). */
  push(chunk: Buffer, nowMs: number): AcceptedTcp | null {
    this.#q.push(chunk);
    return this.resume(nowMs);
  }

  /** Goes on with the bytes held: after a deferral, tries the next keys. */
  resume(nowMs: number): AcceptedTcp | null {
    if (this.#found === null && !this.#identify()) return null;
    const found = this.#found!;
    const key = found.key.key;
    if (key.edition === 2017) return this.#finish2017(found);
    return this.#finish2022(found, nowMs);
  }

  #identify(): boolean {
    const q = this.#q;
    const cs = this.#candidates;
    const p = this.#preferred;
    this.#deferred = false;
    let tries = 0;
    if (p >= 0 && !this.#preferredTried && q.length >= cs[p]!.need) {
      this.#preferredTried = true;
      tries++;
      if (this.#try(cs[p]!)) return true;
    }
    while (this.#next < cs.length && cs[this.#next]!.need <= q.length) {
      if (tries >= this.#triesPerCall) {
        this.#deferred = true;
        return false;
      }
      const i = this.#next++;
      if (i === p) continue;
      tries++;
      if (this.#try(cs[i]!)) return true;
    }
    if (this.#next < cs.length || (p >= 0 && !this.#preferredTried)) return false;
    throw new AuthError('ERR_CIPHER', 'no key opens this request');
  }

  #try(c: Candidate): boolean {
    const q = this.#q;
    const hit = c.tryOpen(q);
    if (!hit) return false;
    const salt = Buffer.from(q.peek(hit.key.key.keySize)); // a copy: the salt outlives the read buffer
    q.take(hit.consume);
    this.#found = { ...hit, salt };
    return true;
  }

  #finish2017(found: Found): AcceptedTcp | null {
    if (this.#reader === null) {
      if (this.#replay.isOwnSalt2017?.(found.salt)) {
        throw new AuthError('ERR_REPLAY_SERVER', 'our own response reflected back');
      }
      if (!this.#replay.addSalt2017(found.salt)) {
        throw new AuthError('ERR_REPLAY_CLIENT', 'replayed salt');
      }
      this.#reader = new ChunkReader(found.aead, MAX_PAYLOAD_2017, this.#q);
    }
    this.#reader.drainInto(this.#plain);
    if (this.#plain.length === 0) return null;
    const plain = this.#plain.length === 1 ? this.#plain[0]! : Buffer.concat(this.#plain); // header only, at most a few chunks
    const addr = decodeSocksAddr(plain, 0);
    if (addr === null) {
      if (plain.length >= MAX_SOCKS_ADDR_LENGTH)
        throw new CodecError('ERR_SOCKS_ADDR', 'bad target address');
      this.#plain = [plain];
      return null;
    }
    const stream = new SsTcpServerStream(
      found.key.key,
      this.#reader,
      null,
      this.#random,
      this.#scratch,
    );
    return {
      key: found.key,
      target: addr.value,
      initialPayload: plain.subarray(addr.bytesRead),
      stream,
    };
  }

  #finish2022(found: Found, nowMs: number): AcceptedTcp | null {
    const fixed = found.fixed!;
    if (fixed[0] !== HEADER_TYPE.CLIENT_STREAM) {
      throw new AuthError('ERR_SS2022_BAD_HEADER', `request header type ${fixed[0]} is not 0`);
    }
    checkTimestamp(fixed, 1, nowMs);
    const varLen = fixed.readUInt16BE(9);
    if (this.#q.length < varLen + TAG_SIZE) return null;
    const variable = found.aead.open(this.#q.take(varLen + TAG_SIZE));
    if (variable === null)
      throw new AuthError('ERR_SS_BAD_TAG', 'variable header failed authentication');
    const addr = decodeSocksAddr(variable, 0);
    // SIP022: "Servers MUST enforce that the request header (including padding) does not extend beyond the header chunks."
    if (addr === null || addr.bytesRead + 2 > variable.length) {
      throw new CodecError('ERR_SS2022_BAD_HEADER', 'request header is truncated');
    }
    const padLen = variable.readUInt16BE(addr.bytesRead);
    const payloadStart = addr.bytesRead + 2 + padLen;
    if (padLen > MAX_PADDING_LENGTH || payloadStart > variable.length) {
      throw new CodecError('ERR_SS2022_PADDING', `padding length ${padLen} is invalid`);
    }
    // SIP022: "Servers MUST reject the request if the variable-length header chunk does not contain payload and the padding length is 0."
    if (payloadStart === variable.length && padLen === 0) {
      throw new CodecError('ERR_SS2022_PADDING', 'request has neither payload nor padding');
    }
    if (!this.#replay.addSalt2022(found.salt, nowMs))
      throw new AuthError('ERR_REPLAY_CLIENT', 'replayed salt');
    const reader = new ChunkReader(found.aead, MAX_PAYLOAD_2022, this.#q);
    const stream = new SsTcpServerStream(
      found.key.key,
      reader,
      found.salt,
      this.#random,
      this.#scratch,
    );
    const initial = variable.subarray(payloadStart);
    // anything after the header chunks that already arrived
    const more: Buffer[] = [];
    reader.drainInto(more);
    const initialPayload = more.length === 0 ? initial : Buffer.concat([initial, ...more]);
    return { key: found.key, target: addr.value, initialPayload, stream };
  }
}

/** Each trial key's candidate, made once per key object (it holds no state of a connection). */
const trialCandidates = new WeakMap<SsServerKey, Candidate>();

function trialCandidate(k: SsServerKey): Candidate {
  const key = k.key;
  if (key.edition === 2017) {
    return {
      key: k,
      need: key.keySize + 2 + TAG_SIZE,
      tryOpen(q) {
        const head = q.peek(key.keySize + 2 + TAG_SIZE);
        const subkey = ssSubkey(key.key, head.subarray(0, key.keySize));
        // Trial-open the first length chunk; the reader then reads it again with a fresh counter.
        if (new CounterAead(key.cipher, subkey).open(head.subarray(key.keySize)) === null)
          return null;
        return {
          key: k,
          aead: new CounterAead(key.cipher, subkey),
          fixed: null,
          consume: key.keySize,
        };
      },
    };
  }
  const need = key.keySize + REQUEST_FIXED_HEADER_LENGTH + TAG_SIZE;
  return {
    key: k,
    need,
    tryOpen(q) {
      const head = q.peek(need);
      const salt = head.subarray(0, key.keySize);
      const aead = new CounterAead(key.cipher, ss2022SessionSubkey(key.key, salt));
      const fixed = aead.open(head.subarray(key.keySize));
      if (fixed === null) return null;
      return { key: k, aead, fixed, consume: need };
    },
  };
}

function identityCandidate(g: IdentityGroup): Candidate {
  const need = g.keySize + IDENTITY_HEADER_LENGTH + REQUEST_FIXED_HEADER_LENGTH + TAG_SIZE;
  return {
    need,
    tryOpen(q) {
      const head = q.peek(need);
      const salt = head.subarray(0, g.keySize);
      const hash = aesDecryptBlock(
        ss2022IdentitySubkey(g.ipsk, salt),
        head.subarray(g.keySize, g.keySize + 16),
      );
      const user = g.users.get(hash.toString('latin1'));
      if (!user) return null;
      const aead = new CounterAead(user.key.cipher, ss2022SessionSubkey(user.key.key, salt));
      const fixed = aead.open(head.subarray(g.keySize + IDENTITY_HEADER_LENGTH));
      if (fixed === null) return null;
      return { key: user, aead, fixed, consume: need };
    },
  };
}

/** Server side of an accepted connection: decrypts requests, encrypts responses. */
export class SsTcpServerStream {
  readonly #key: SsCipherKey;
  readonly #reader: ChunkReader;
  readonly #requestSalt: Buffer | null;
  readonly #random: Random;
  readonly #scratch: ScratchSlot | undefined;
  #writer: ChunkWriter | null = null;
  #salt: Buffer | null = null;

  constructor(
    key: SsCipherKey,
    reader: ChunkReader,
    requestSalt: Buffer | null,
    random: Random,
    scratch?: ScratchSlot,
  ) {
    this.#scratch = scratch;
    this.#key = key;
    this.#reader = reader;
    this.#requestSalt = requestSalt;
    this.#random = random;
  }

  /** The response salt, once the first response bytes were encoded (the server records it against reflection). */
  get responseSalt(): Buffer | null {
    return this.#salt;
  }

  /** Bytes from the client; returns complete payloads. Throws AuthError/CodecError. `borrowed`: see {@link ChunkReader.push}. */
  decode(chunk: Buffer, borrowed = false): Buffer[] {
    return this.#reader.push(chunk, borrowed);
  }

  /** Response payload (non-empty). The first call prefixes the salt and, in 2022, the response header. */
  encode(payload: Uint8Array, nowMs: number): Buffer {
    if (this.#writer !== null) return this.#writer.encode(payload);
    const key = this.#key;
    const salt = this.#random(key.keySize);
    this.#salt = salt;
    if (key.edition === 2017) {
      this.#writer = new ChunkWriter(
        new CounterAead(key.cipher, ssSubkey(key.key, salt)),
        MAX_PAYLOAD_2017,
        this.#scratch,
      );
      const out = Buffer.allocUnsafe(salt.length + this.#writer.encodedLength(payload.length));
      salt.copy(out, 0);
      this.#writer.encodeInto(payload, out, salt.length);
      return out;
    }
    const aead = new CounterAead(key.cipher, ss2022SessionSubkey(key.key, salt));
    this.#writer = new ChunkWriter(aead, MAX_PAYLOAD_2022, this.#scratch);
    const first = payload.subarray(0, Math.min(MAX_PAYLOAD_2022, payload.length));
    const rest = payload.subarray(first.length);
    const fixedLen = responseFixedHeaderLength(key.keySize);
    const out = Buffer.allocUnsafe(
      salt.length +
        fixedLen +
        TAG_SIZE +
        first.length +
        TAG_SIZE +
        this.#writer.encodedLength(rest.length),
    );
    let p = salt.copy(out, 0);
    const fixed = Buffer.alloc(fixedLen);
    fixed[0] = HEADER_TYPE.SERVER_STREAM;
    fixed.writeBigUInt64BE(nowSeconds(nowMs), 1);
    this.#requestSalt!.copy(fixed, 9);
    fixed.writeUInt16BE(first.length, 9 + key.keySize);
    p += aead.seal(fixed, out, p);
    p += aead.seal(first, out, p);
    this.#writer.encodeInto(rest, out, p);
    return out;
  }

  /** See {@link ChunkWriter.release}. */
  release(): void {
    this.#writer?.release();
  }

  /** Payload bytes still buffered undecrypted (for memory accounting). */
  get buffered(): number {
    return this.#reader.buffered;
  }
}

/** Max bytes an acceptor may hold before it must have decided (a probe cannot make it buffer more). */
export function maxAcceptBytes(): number {
  return (
    64 +
    IDENTITY_HEADER_LENGTH +
    REQUEST_FIXED_HEADER_LENGTH +
    TAG_SIZE +
    MAX_PAYLOAD_2022 +
    TAG_SIZE +
    MAX_SOCKS_ADDR_LENGTH +
    2 * (MAX_PAYLOAD_2017 + 2 * TAG_SIZE + 2)
  );
}
