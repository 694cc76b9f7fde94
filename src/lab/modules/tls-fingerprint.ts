/**
 * TLS client fingerprinting (docs/censorship-techniques.md §13, and §12: the GFW matched Tor's ClientHello): the JA3 of
 * each outbound ClientHello (first record, TCP reassembled, SYN seen) — `SSLVersion,Ciphers,
 * Extensions,EllipticCurves,EllipticCurvePointFormats`, decimal, `-`-joined, GREASE values (RFC 8701)
 * left out — and its MD5. A ClientHello whose JA3 hash is on `deny` is reset (injector II) with the
 * 3-tuple's residual, as the SNI filter does. `measure` reports every hash, to build deny lists (for
 * example Tor's, recorded from a Tor client). The default deny list is empty: the lab ships no
 * fingerprint it has not recorded.
 *
 * `browserOnly` turns it into an allow-list, as the 2026 Russian rules are reported to work
 * (censorship-2024-2026.md): a ClientHello passes only if its JA4 is on `allowJa4` (default: the JA4s
 * of Chromium 156's hellos for https and for wss, fresh and resuming), it carries
 * GREASE (RFC 8701), and — since it claims to be Chrome — an X25519MLKEM768 key share. Anything else
 * that starts a TLS handshake is reset like a denied hash. {@link browserHelloVerdict} is the rule.
 * @module
 */
import { createHash } from 'node:crypto';
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';
import { parseClientHello, type ClientHelloInfo } from '../packet/tls-client-hello.js';
import { decodeClientHello, isGrease, ja4, GROUP } from '../../codec/tls-client-hello.js';

/**
 * Chromium 156's JA4: https (ALPN h2, http/1.1, ALPS) and wss (ALPN http/1.1 alone), each fresh
 * and resuming. The fresh ones are captured (the parity test checks them live); the resuming ones
 * are those hellos with pre_shared_key added, as BoringSSL builds them, not yet captured.
 */
export const CHROME_JA4S = [
  't13d1517h2_8daaf6152771_cb7bf5808d99',
  't13d1516h1_8daaf6152771_5b37b36a67c0',
  't13d1518h2_8daaf6152771_e2d80978ab2e',
  't13d1517h1_8daaf6152771_c4a234726a38',
] as const;

/**
 * The browser-only rule for the first record of a TLS connection: null when it passes, else why
 * it is blocked. A record that is not a well-formed ClientHello is blocked too.
 */
export function browserHelloVerdict(
  record: Uint8Array,
  allowJa4: readonly string[] = CHROME_JA4S,
): string | null {
  let ch;
  try {
    ch = decodeClientHello(record)?.value;
  } catch {
    return 'not a well-formed ClientHello';
  }
  if (!ch) return 'an incomplete ClientHello';
  if (!ch.ciphers.some(isGrease) || !ch.extensions.some(isGrease)) return 'no GREASE';
  if (!ch.keyShares?.some((k) => k.group === GROUP.X25519MLKEM768))
    return 'a Chrome-like hello without a post-quantum key share';
  const fp = ja4(ch);
  if (!allowJa4.includes(fp)) return `JA4 ${fp} is not a browser's`;
  return null;
}

export interface TlsFingerprintParams {
  /** JA3 MD5 hashes (hex) to reset. */
  readonly deny: readonly string[];
  readonly residualSeconds: number;
  readonly measure: boolean;
  /** Let only browser ClientHellos through ({@link browserHelloVerdict}). */
  readonly browserOnly: boolean;
  readonly allowJa4: readonly string[];
}

export const TLS_FINGERPRINT_DEFAULTS: TlsFingerprintParams = {
  deny: [],
  residualSeconds: 180,
  measure: false,
  browserOnly: false,
  allowJa4: CHROME_JA4S,
};

/** The JA3 string of a parsed ClientHello. */
export function ja3String(ch: ClientHelloInfo): string {
  const list = (xs: readonly number[] | undefined) =>
    (xs ?? []).filter((x) => !isGrease(x)).join('-');
  return [
    ch.version ?? 0,
    list(ch.cipherSuites),
    list(ch.extensions),
    list(ch.groups),
    (ch.pointFormats ?? []).join('-'),
  ].join(',');
}

export function ja3Hash(ch: ClientHelloInfo): string {
  return createHash('md5').update(ja3String(ch)).digest('hex');
}

export class TlsFingerprintModule implements CensorModule {
  readonly name = 'tls-fingerprint';
  readonly #p: TlsFingerprintParams;
  readonly #deny: Set<string>;

  constructor(params: Partial<TlsFingerprintParams> = {}) {
    this.#p = { ...TLS_FINGERPRINT_DEFAULTS, ...params };
    this.#deny = new Set(this.#p.deny.map((h) => h.toLowerCase()));
  }

  watch(flow: Flow): boolean {
    return flow.proto === 'tcp' && flow.outbound && flow.sawSyn;
  }

  onPacket(p: Packet, flow: Flow, ctx: CensorContext): Verdict {
    if (!p.c2s || p.payload.length === 0) return undefined;
    const ch = parseClientHello(flow.c2sData);
    if (ch === null && flow.c2sData.length < 16 * 1024) return undefined;
    flow.watchers.delete(this);
    if (!ch) return undefined;
    const hash = ja3Hash(ch);
    if (this.#p.measure) ctx.emit({ module: this.name, action: 'measure', detail: hash }, flow);
    if (this.#p.browserOnly) {
      const recLen = 5 + ((flow.c2sData[3]! << 8) | flow.c2sData[4]!);
      const why = browserHelloVerdict(flow.c2sData.subarray(0, recLen), this.#p.allowJa4);
      if (why === null) return undefined;
      ctx.resetBoth(flow, p, 'II');
      ctx.blockFlow(flow, 'both');
      ctx.addResidual(flow.key3, this.name, this.#p.residualSeconds, 'reset', 'c2s');
      ctx.emit({ module: this.name, action: 'reset', detail: `not a browser: ${why}` }, flow);
      return undefined;
    }
    if (!this.#deny.has(hash)) return undefined;
    ctx.resetBoth(flow, p, 'II');
    ctx.blockFlow(flow, 'both');
    ctx.addResidual(flow.key3, this.name, this.#p.residualSeconds, 'reset', 'c2s');
    ctx.emit({ module: this.name, action: 'reset', detail: `JA3 ${hash}` }, flow);
    return undefined;
  }
}
