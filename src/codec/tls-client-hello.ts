/**
 * Chrome's TLS ClientHello, built byte for byte as Chromium's BoringSSL writes it, and a strict
 * decoder of any ClientHello (RFC 8446 §4.1.2) for the parity test and the lab's fingerprint module.
 * Pure: every random byte (GREASE, session id, key shares, the extension permutation, GREASE ECH)
 * comes from the caller. The facts come from captures of Debian's Chromium (docs/tls-fingerprint.md,
 * test/integration/tls-chrome-parity.test.ts checks them against the live browser).
 *
 * ```
 * record:    0x16 | 0x0301 | u16 length | handshake
 * handshake: 0x01 | u24 length | 0x0303 | random[32] | u8 32, session_id[32]
 *            | u16 cipher_suites (GREASE first, then Chrome's 15) | 0x01 0x00 (null compression)
 *            | u16 extensions: GREASE(empty), the 17 below in a fresh random order, GREASE(0x00)
 * ```
 * GREASE (RFC 8701): independent random values for the cipher, the two extensions (never equal),
 * the supported group (the same value heads the key shares, with a 1-byte share), the version and
 * the signature algorithm, as the capture shows.
 * @module
 */
import { createHash } from 'node:crypto';
import { CodecError } from '../errors.js';
import { TlsReader, TlsWriter } from './tls-wire.js';

export const EXT = {
  SERVER_NAME: 0x0000,
  STATUS_REQUEST: 0x0005,
  SUPPORTED_GROUPS: 0x000a,
  EC_POINT_FORMATS: 0x000b,
  SIGNATURE_ALGORITHMS: 0x000d,
  ALPN: 0x0010,
  SCT: 0x0012,
  PADDING: 0x0015,
  ENCRYPT_THEN_MAC: 0x0016,
  EXTENDED_MASTER_SECRET: 0x0017,
  COMPRESS_CERTIFICATE: 0x001b,
  SESSION_TICKET: 0x0023,
  PRE_SHARED_KEY: 0x0029,
  EARLY_DATA: 0x002a,
  SUPPORTED_VERSIONS: 0x002b,
  COOKIE: 0x002c,
  PSK_KEY_EXCHANGE_MODES: 0x002d,
  KEY_SHARE: 0x0033,
  /** application_settings (ALPS), the codepoint Chrome uses now (17613). */
  ALPS: 0x44cd,
  /** TLS Trust Anchor Identifiers (draft-ietf-tls-trust-anchor-ids), Chrome's experimental codepoint. */
  TRUST_ANCHORS: 0xca34,
  ECH: 0xfe0d,
  RENEGOTIATION_INFO: 0xff01,
} as const;

export const GROUP = {
  SECP256R1: 0x0017,
  SECP384R1: 0x0018,
  X25519: 0x001d,
  X25519MLKEM768: 0x11ec,
} as const;

export const CIPHER = {
  TLS_AES_128_GCM_SHA256: 0x1301,
  TLS_AES_256_GCM_SHA384: 0x1302,
  TLS_CHACHA20_POLY1305_SHA256: 0x1303,
} as const;

/** Chrome's cipher suites after its GREASE value, in order. */
export const CHROME_CIPHERS: readonly number[] = [
  0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c,
  0x009d, 0x002f, 0x0035,
];
/** Chrome's groups after its GREASE value. */
export const CHROME_GROUPS: readonly number[] = [
  GROUP.X25519MLKEM768,
  GROUP.X25519,
  GROUP.SECP256R1,
  GROUP.SECP384R1,
];
/** Chrome's signature algorithms after its GREASE value: ML-DSA-44/65/87, then the classical eight. */
export const CHROME_SIGALGS: readonly number[] = [
  0x0904, 0x0905, 0x0906, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
];
/** The classical signature algorithms this client can verify (RFC 8446 §4.2.3). */
export const SIGALG = {
  ECDSA_SECP256R1_SHA256: 0x0403,
  ECDSA_SECP384R1_SHA384: 0x0503,
  RSA_PSS_RSAE_SHA256: 0x0804,
  RSA_PSS_RSAE_SHA384: 0x0805,
  RSA_PSS_RSAE_SHA512: 0x0806,
  RSA_PKCS1_SHA256: 0x0401,
  RSA_PKCS1_SHA384: 0x0501,
  RSA_PKCS1_SHA512: 0x0601,
  ED25519: 0x0807,
} as const;

/**
 * Chrome's trust_anchors body: the IDs of the root stores it trusts (draft-ietf-tls-trust-anchor-ids),
 * the same bytes in every hello of the capture.
 */
const CHROME_TRUST_ANCHORS = Buffer.from(
  '00b80582df1302010582df1302060582df13020d0582df13020e0582df13020f0582df1302120582df1302130582df13021408839a648c9b2d010708839a648c9b2d010808839a648c9b2d010908839a648c9b2d010a08839a648c9b2d010b08839a648c9b2d010c08839a648c9b2d010d08839a648c9b2d011208839a648c9b2d011304d679090104d679090404d679090504d679090604d679090704d679090804d679090a04d679090b04d679090c04d679090d04d679090f',
  'hex',
);

/** GREASE ECH payload lengths Chrome draws from (the outer ClientHello's HPKE ciphertext). */
export const GREASE_ECH_PAYLOAD_LENGTHS = [144, 176, 208, 240] as const;

/** A GREASE value (RFC 8701 §2): 0x?a?a with both bytes equal. */
export const isGrease = (v: number): boolean => (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
/** The GREASE value for a random index 0..15. */
export const greaseValue = (i: number): number =>
  ((i & 0x0f) << 12) | 0x0a00 | ((i & 0x0f) << 4) | 0x0a;

export interface ChromeHelloInput {
  /** SNI; omitted for an IP literal (RFC 6066 §3) or when absent. */
  serverName?: string;
  /** ALPN offer; ALPS (for h2) goes with it when h2 is offered, as Chrome does. */
  alpn: readonly string[];
  /** 32 bytes. */
  random: Uint8Array;
  /** 32 bytes (TLS 1.3 middlebox compatibility, RFC 8446 D.4). */
  sessionId: Uint8Array;
  /** ML-KEM-768 encapsulation key (1184 bytes) and the X25519 public key of the hybrid share. */
  mlkemPublic: Uint8Array;
  hybridX25519Public: Uint8Array;
  /** The X25519 public key of the plain x25519 share (a key of its own, as Chrome). */
  x25519Public: Uint8Array;
  /** Random bytes for GREASE, the extension permutation and GREASE ECH: `CHROME_HELLO_ENTROPY` of them. */
  entropy: Uint8Array;
  /**
   * The second ClientHello after a HelloRetryRequest (RFC 8446 §4.1.2): the same hello with one key
   * share, for the group the server asked for, and its cookie right after key_share.
   */
  retry?: { group: number; share: Uint8Array; cookie?: Uint8Array };
  /**
   * A resumption offer (RFC 8446 §4.2.11): pre_shared_key goes last, after the closing GREASE
   * extension, as BoringSSL writes it, with one identity and a zero binder of `binderLength` bytes
   * that the caller fills in (it is the last `binderLength` bytes of the record; the hello up to
   * {@link pskBinderStart} is what it covers).
   */
  psk?: { identity: Uint8Array; obfuscatedAge: number; binderLength: number };
  /** A TLS 1.2 ticket to resume (RFC 5077 §3.2), carried in session_ticket (empty otherwise). */
  ticket12?: Uint8Array;
}

/**
 * Where the binders list starts in a hello record with a PSK: the partial ClientHello the binder
 * covers is `record.subarray(5, pskBinderStart(record, binderLength))` (RFC 8446 §4.2.11.2).
 */
export const pskBinderStart = (record: Uint8Array, binderLength: number): number =>
  record.length - (2 + 1 + binderLength);

/** Bytes of `entropy` the builder consumes. */
export const CHROME_HELLO_ENTROPY = 6 + 40 + 1 + 1 + 32 + 240; // GREASE, permutation, ECH

/** A Fisher-Yates permutation of `items` driven by 2-byte draws from `rnd`. */
function permute<T>(items: T[], rnd: Uint8Array): T[] {
  if (2 * items.length > rnd.length)
    throw new CodecError('ERR_TLS_PROTOCOL', 'not enough entropy for the extension permutation');
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const r = ((rnd[2 * i]! << 8) | rnd[2 * i + 1]!) % (i + 1);
    [out[i], out[r]] = [out[r]!, out[i]!];
  }
  return out;
}

/** An extension of the hello: its type and the writer of its body. */
type Extension = [type: number, fill: (w: TlsWriter) => void];

/** What one hello draws from its entropy (the layout of {@link CHROME_HELLO_ENTROPY}). */
interface HelloDraws {
  grease: {
    cipher: number;
    ext1: number;
    ext2: number;
    group: number;
    version: number;
    sig: number;
  };
  /** Two bytes per draw of the extension permutation, up to 20 extensions. */
  permutation: Uint8Array;
  ech: { configId: number; enc: Uint8Array; payload: Uint8Array };
}

function drawsFrom(e: Uint8Array): HelloDraws {
  if (e.length < CHROME_HELLO_ENTROPY)
    throw new CodecError('ERR_TLS_PROTOCOL', `need ${CHROME_HELLO_ENTROPY} bytes of entropy`);
  const ext1 = greaseValue(e[1]!);
  let ext2 = greaseValue(e[2]!);
  if (ext2 === ext1) ext2 ^= 0x1010; // BoringSSL: the two GREASE extensions differ
  const echLength = GREASE_ECH_PAYLOAD_LENGTHS[e[46]! & 3]!;
  return {
    grease: {
      cipher: greaseValue(e[0]!),
      ext1,
      ext2,
      group: greaseValue(e[3]!),
      version: greaseValue(e[4]!),
      sig: greaseValue(e[5]!),
    },
    permutation: e.subarray(6, 46),
    ech: { configId: e[47]!, enc: e.subarray(48, 80), payload: e.subarray(80, 80 + echLength) },
  };
}

/** key_share: GREASE, X25519MLKEM768 and x25519; after a HelloRetryRequest the one share asked for. */
function writeKeyShares(w: TlsWriter, o: ChromeHelloInput, greaseGroup: number): void {
  w.vec(2, (l) => {
    if (o.retry) {
      l.u16(o.retry.group).vec(2, (k) => k.bytes(o.retry!.share));
      return;
    }
    l.u16(greaseGroup).vec(2, (k) => k.u8(0));
    l.u16(GROUP.X25519MLKEM768).vec(2, (k) => k.bytes(o.mlkemPublic).bytes(o.hybridX25519Public));
    l.u16(GROUP.X25519).vec(2, (k) => k.bytes(o.x25519Public));
  });
}

/** The extensions between the two GREASE ones, in Chrome's unpermuted order. */
function chromeExtensions(o: ChromeHelloInput, d: HelloDraws): Extension[] {
  const { grease, ech } = d;
  const exts: Extension[] = [];
  if (o.serverName !== undefined)
    exts.push([
      EXT.SERVER_NAME,
      (w) => w.vec(2, (l) => l.u8(0).vec(2, (n) => n.bytes(Buffer.from(o.serverName!, 'ascii')))),
    ]);
  exts.push(
    [EXT.EXTENDED_MASTER_SECRET, () => {}],
    [EXT.RENEGOTIATION_INFO, (w) => w.u8(0)],
    [EXT.SUPPORTED_GROUPS, (w) => w.vec(2, (l) => l.u16(grease.group).u16s(CHROME_GROUPS))],
    [EXT.EC_POINT_FORMATS, (w) => w.vec(1, (l) => l.u8(0))],
    [EXT.SESSION_TICKET, (w) => w.bytes(o.ticket12 ?? new Uint8Array(0))],
    [
      EXT.ALPN,
      (w) =>
        w.vec(2, (l) => {
          for (const p of o.alpn) l.vec(1, (n) => n.bytes(Buffer.from(p, 'ascii')));
        }),
    ],
    [EXT.STATUS_REQUEST, (w) => w.u8(1).u16(0).u16(0)],
    [EXT.SIGNATURE_ALGORITHMS, (w) => w.vec(2, (l) => l.u16(grease.sig).u16s(CHROME_SIGALGS))],
    [EXT.SCT, () => {}],
    [EXT.KEY_SHARE, (w) => writeKeyShares(w, o, grease.group)],
    [EXT.PSK_KEY_EXCHANGE_MODES, (w) => w.vec(1, (l) => l.u8(1))], // psk_dhe_ke
    [EXT.SUPPORTED_VERSIONS, (w) => w.vec(1, (l) => l.u16(grease.version).u16(0x0304).u16(0x0303))],
    [EXT.COMPRESS_CERTIFICATE, (w) => w.vec(1, (l) => l.u16(2))], // brotli
  );
  if (o.alpn.includes('h2'))
    exts.push([EXT.ALPS, (w) => w.vec(2, (l) => l.vec(1, (n) => n.bytes(Buffer.from('h2'))))]);
  exts.push(
    [EXT.TRUST_ANCHORS, (w) => w.bytes(CHROME_TRUST_ANCHORS)],
    [
      EXT.ECH,
      // ECHClientHello outer (draft-ietf-tls-esni §5): type 0, HKDF-SHA256 + AES-128-GCM, a random
      // config id, a random 32-byte enc and a random payload: what a client without ECH configs sends.
      (w) =>
        w
          .u8(0)
          .u16(0x0001)
          .u16(0x0001)
          .u8(ech.configId)
          .vec(2, (k) => k.bytes(ech.enc))
          .vec(2, (k) => k.bytes(ech.payload)),
    ],
  );
  return exts;
}

/**
 * Chrome since v110: a fresh permutation of all extensions but the two GREASE ones (which stay
 * first and last); a HelloRetryRequest's cookie goes right after key_share.
 */
function orderExtensions(exts: Extension[], d: HelloDraws, cookie?: Uint8Array): Extension[] {
  const ordered = permute(exts, d.permutation);
  if (cookie) {
    const at = ordered.findIndex(([t]) => t === EXT.KEY_SHARE) + 1;
    ordered.splice(at, 0, [EXT.COOKIE, (w) => w.vec(2, (c) => c.bytes(cookie))]);
  }
  return ordered;
}

/** pre_shared_key (RFC 8446 §4.2.11): one identity, a zero binder the caller fills in. */
function writePsk(w: TlsWriter, psk: NonNullable<ChromeHelloInput['psk']>): void {
  w.vec(2, (d) =>
    d
      .vec(2, (ids) => ids.vec(2, (i) => i.bytes(psk.identity)).u32(psk.obfuscatedAge))
      .vec(2, (bs) => bs.vec(1, (b) => b.bytes(new Uint8Array(psk.binderLength)))),
  );
}

/** Builds Chrome's ClientHello record (header included). */
export function encodeChromeClientHello(o: ChromeHelloInput): Buffer {
  const d = drawsFrom(o.entropy);
  const ordered = orderExtensions(chromeExtensions(o, d), d, o.retry?.cookie);
  const hs = new TlsWriter();
  hs.u8(1).vec(3, (b) => {
    b.u16(0x0303)
      .bytes(o.random)
      .vec(1, (s) => s.bytes(o.sessionId));
    b.vec(2, (c) => c.u16(d.grease.cipher).u16s(CHROME_CIPHERS));
    b.vec(1, (c) => c.u8(0));
    b.vec(2, (x) => {
      x.u16(d.grease.ext1).u16(0);
      for (const [type, fill] of ordered) x.u16(type).vec(2, fill);
      x.u16(d.grease.ext2).vec(2, (g) => g.u8(0));
      // BoringSSL writes pre_shared_key last, after the closing GREASE extension.
      if (o.psk) writePsk(x.u16(EXT.PRE_SHARED_KEY), o.psk);
    });
  });
  const body = hs.toBuffer();
  const rec = Buffer.allocUnsafe(5 + body.length); // every byte written below
  rec[0] = 0x16;
  rec.writeUInt16BE(0x0301, 1);
  rec.writeUInt16BE(body.length, 3);
  body.copy(rec, 5);
  return rec;
}

/** A ClientHello as a fingerprint sees it. */
export interface ClientHelloInfo {
  recordVersion: number;
  legacyVersion: number;
  random: Uint8Array;
  sessionId: Uint8Array;
  ciphers: number[];
  compression: number[];
  /** Extension types in wire order. */
  extensions: number[];
  /** Extension bodies by type (the last of duplicates; duplicates are refused anyway). */
  extensionData: Map<number, Uint8Array>;
  sni?: string;
  alpn?: string[];
  groups?: number[];
  sigAlgs?: number[];
  versions?: number[];
  /** Key shares in order: group and key length. */
  keyShares?: { group: number; length: number }[];
  pointFormats?: number[];
  certCompression?: number[];
  alpsProtocols?: string[];
  /** The GREASE ECH payload length (outer ClientHello). */
  echPayloadLength?: number;
  /** Record header plus body. */
  length: number;
}

function list16(r: TlsReader): number[] {
  const out: number[] = [];
  while (r.left >= 2) out.push(r.u16());
  r.done();
  return out;
}

function names(r: TlsReader): string[] {
  const out: string[] = [];
  while (r.left > 0) out.push(Buffer.from(r.vec(1, 'protocol name', 1).rest()).toString('latin1'));
  return out;
}

/**
 * Decodes a ClientHello record at `offset`: null when the record is not complete yet; a CodecError
 * when it is not a well-formed ClientHello. One record only (a hello split across records is refused).
 */
export function decodeClientHello(
  buf: Uint8Array,
  offset = 0,
): { value: ClientHelloInfo; bytesRead: number } | null {
  if (buf.length - offset < 5) return null;
  if (buf[offset] !== 0x16) throw new CodecError('ERR_TLS_PROTOCOL', 'not a handshake record');
  const recLen = (buf[offset + 3]! << 8) | buf[offset + 4]!;
  if (recLen > 16384) throw new CodecError('ERR_TLS_PROTOCOL', 'record over 2^14 bytes');
  if (buf.length - offset < 5 + recLen) return null;
  const rec = new TlsReader(buf, 'ClientHello record', offset, offset + 5 + recLen);
  rec.u8();
  const recordVersion = rec.u16();
  const hsr = rec.vec(2, 'record');
  if (hsr.u8() !== 1) throw new CodecError('ERR_TLS_PROTOCOL', 'not a ClientHello');
  const h = hsr.vec(3, 'ClientHello');
  hsr.done();
  const legacyVersion = h.u16('legacy_version');
  const random = h.bytes(32, 'random');
  const sessionId = h.vec(1, 'legacy_session_id', 0, 32).rest();
  const ciphers = list16(h.vec(2, 'cipher_suites', 2, 0xfffe));
  const compression = [...h.vec(1, 'legacy_compression_methods', 1).rest()];
  const info: ClientHelloInfo = {
    recordVersion,
    legacyVersion,
    random,
    sessionId,
    ciphers,
    compression,
    extensions: [],
    extensionData: new Map(),
    length: 5 + recLen,
  };
  if (h.left === 0) return { value: info, bytesRead: 5 + recLen };
  const xs = h.vec(2, 'extensions');
  h.done();
  while (xs.left > 0) {
    const type = xs.u16('extension type');
    const d = xs.vec(2, `extension 0x${type.toString(16)}`);
    if (info.extensionData.has(type))
      throw new CodecError('ERR_TLS_PROTOCOL', `extension 0x${type.toString(16)} twice`);
    info.extensions.push(type);
    const body = d.rest();
    info.extensionData.set(type, body);
    const r = new TlsReader(body, `extension 0x${type.toString(16)}`);
    switch (type) {
      case EXT.SERVER_NAME: {
        const l = r.vec(2, 'server_name_list', 1);
        if (l.u8('name_type') !== 0)
          throw new CodecError('ERR_TLS_PROTOCOL', 'server_name: not a host name');
        info.sni = Buffer.from(l.vec(2, 'host_name', 1).rest()).toString('latin1');
        break;
      }
      case EXT.ALPN:
        info.alpn = names(r.vec(2, 'protocol_name_list', 2));
        break;
      case EXT.SUPPORTED_GROUPS:
        info.groups = list16(r.vec(2, 'named_group_list', 2));
        break;
      case EXT.SIGNATURE_ALGORITHMS:
        info.sigAlgs = list16(r.vec(2, 'supported_signature_algorithms', 2));
        break;
      case EXT.SUPPORTED_VERSIONS:
        info.versions = list16(r.vec(1, 'versions', 2));
        break;
      case EXT.EC_POINT_FORMATS:
        info.pointFormats = [...r.vec(1, 'ec_point_format_list', 1).rest()];
        break;
      case EXT.COMPRESS_CERTIFICATE:
        info.certCompression = list16(r.vec(1, 'algorithms', 2));
        break;
      case EXT.ALPS:
        info.alpsProtocols = names(r.vec(2, 'supported_protocols'));
        break;
      case EXT.KEY_SHARE: {
        const l = r.vec(2, 'client_shares');
        info.keyShares = [];
        while (l.left > 0) {
          const group = l.u16('group');
          info.keyShares.push({ group, length: l.vec(2, 'key_exchange', 1).left });
        }
        break;
      }
      case EXT.ECH: {
        if (r.u8('ECHClientHello type') === 0) {
          r.bytes(5, 'cipher suite and config id');
          r.vec(2, 'enc');
          info.echPayloadLength = r.vec(2, 'payload').left;
        }
        break;
      }
    }
  }
  return { value: info, bytesRead: 5 + recLen };
}

const hex4 = (n: number): string => n.toString(16).padStart(4, '0');
const sha12 = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 12);

/** JA4 (FoxIO, "JA4: TLS Client Fingerprinting", TCP): GREASE ignored, extensions sorted. */
export function ja4(c: ClientHelloInfo): string {
  const ciphers = c.ciphers.filter((x) => !isGrease(x));
  const exts = c.extensions.filter((x) => !isGrease(x));
  const vs = (c.versions ?? [c.legacyVersion]).filter((v) => !isGrease(v));
  const version = Math.max(...vs);
  const v =
    ({ 0x0304: '13', 0x0303: '12', 0x0302: '11', 0x0301: '10' } as Record<number, string>)[
      version
    ] ?? '00';
  const alpn = c.alpn?.[0] ?? '';
  const alpnPart = alpn ? alpn[0]! + alpn.at(-1)! : '00';
  const count = (n: number): string => String(Math.min(n, 99)).padStart(2, '0');
  const a = `t${v}${c.sni !== undefined ? 'd' : 'i'}${count(ciphers.length)}${count(exts.length)}${alpnPart}`;
  const b = sha12(ciphers.map(hex4).sort().join(','));
  const cExts = exts
    .filter((x) => x !== EXT.SERVER_NAME && x !== EXT.ALPN)
    .map(hex4)
    .sort();
  const sig = (c.sigAlgs ?? []).filter((x) => !isGrease(x)).map(hex4);
  return `${a}_${b}_${sha12(sig.length ? `${cExts.join(',')}_${sig.join(',')}` : cExts.join(','))}`;
}
