/**
 * TLS client fingerprinting (docs/censorship-techniques.md §13, and §12: the GFW matched Tor's ClientHello): the JA3 of
 * each outbound ClientHello (first record, TCP reassembled, SYN seen) — `SSLVersion,Ciphers,
 * Extensions,EllipticCurves,EllipticCurvePointFormats`, decimal, `-`-joined, GREASE values (RFC 8701)
 * left out — and its MD5. A ClientHello whose JA3 hash is on `deny` is reset (injector II) with the
 * 3-tuple's residual, as the SNI filter does. `measure` reports every hash, to build deny lists (for
 * example Tor's, recorded from a Tor client). The default deny list is empty: the lab ships no
 * fingerprint it has not recorded.
 * @module
 */
import { createHash } from 'node:crypto';
import type { CensorContext, CensorModule, Flow, Packet, Verdict } from '../censor/types.js';
import { parseClientHello, type ClientHelloInfo } from '../packet/tls-client-hello.js';

export interface TlsFingerprintParams {
  /** JA3 MD5 hashes (hex) to reset. */
  readonly deny: readonly string[];
  readonly residualSeconds: number;
  readonly measure: boolean;
}

export const TLS_FINGERPRINT_DEFAULTS: TlsFingerprintParams = {
  deny: [],
  residualSeconds: 180,
  measure: false,
};

const isGrease = (v: number) => (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);

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
    if (!this.#deny.has(hash)) return undefined;
    ctx.resetBoth(flow, p, 'II');
    ctx.blockFlow(flow, 'both');
    ctx.addResidual(flow.key3, this.name, this.#p.residualSeconds, 'reset', 'c2s');
    ctx.emit({ module: this.name, action: 'reset', detail: `JA3 ${hash}` }, flow);
    return undefined;
  }
}
