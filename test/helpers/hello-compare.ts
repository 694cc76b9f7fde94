/**
 * Compares two sets of ClientHellos field by field (the parity tests against the live Chromium):
 * every field that must be the same in every hello of a set, with GREASE values named as such, and
 * the lengths (the random GREASE ECH payload apart). Each difference is a sentence naming the field and both values, so a Chromium
 * update fails with what changed.
 */
import { TlsReader } from '../../src/codec/tls-wire.js';
import {
  EXT,
  GREASE_ECH_PAYLOAD_LENGTHS,
  decodeClientHello,
  isGrease,
  ja4,
  type ClientHelloInfo,
} from '../../src/codec/tls-client-hello.js';

export const hex = (n: number): string => `0x${n.toString(16).padStart(4, '0')}`;
const G = (n: number): string => (isGrease(n) ? 'GREASE' : hex(n));
export const parseHello = (b: Buffer): ClientHelloInfo => decodeClientHello(b)!.value;

/** The pre_shared_key offer of a hello (RFC 8446 §4.2.11), or null. */
export function pskOffer(
  c: ClientHelloInfo,
): { identities: { length: number; age: number }[]; binders: number[] } | null {
  const d = c.extensionData.get(EXT.PRE_SHARED_KEY);
  if (!d) return null;
  const r = new TlsReader(d, 'pre_shared_key');
  const ids = r.vec(2, 'identities');
  const identities: { length: number; age: number }[] = [];
  while (ids.left > 0) identities.push({ length: ids.vec(2, 'identity').left, age: ids.u32() });
  const bs = r.vec(2, 'binders');
  const binders: number[] = [];
  while (bs.left > 0) binders.push(bs.vec(1, 'binder').left);
  return { identities, binders };
}

/** What must be the same in every hello of a set. */
export function invariant(c: ClientHelloInfo): Record<string, unknown> {
  const ext = (t: number): string => Buffer.from(c.extensionData.get(t) ?? []).toString('hex');
  const psk = pskOffer(c);
  return {
    recordVersion: hex(c.recordVersion),
    legacyVersion: hex(c.legacyVersion),
    sessionIdLength: c.sessionId.length,
    compression: c.compression,
    ciphers: c.ciphers.map(G),
    extensionSet: c.extensions.map(G).sort(),
    greaseExtensionPositions: c.extensions.flatMap((x, i) => (isGrease(x) ? [i] : [])),
    greaseExtensionBodies: c.extensions.filter(isGrease).map((x) => ext(x)),
    greaseExtensionsDiffer: new Set(c.extensions.filter(isGrease)).size === 2,
    sni: c.sni,
    alpn: c.alpn,
    groups: c.groups?.map(G),
    sigAlgs: c.sigAlgs?.map(G),
    versions: c.versions?.map(G),
    keyShares: c.keyShares?.map((k) => `${G(k.group)}:${k.length}`),
    greaseGroupHeadsKeyShares: c.groups?.[0] === c.keyShares?.[0]?.group,
    pointFormats: c.pointFormats,
    certCompression: c.certCompression,
    alps: c.alpsProtocols,
    statusRequest: ext(EXT.STATUS_REQUEST),
    renegotiationInfo: ext(EXT.RENEGOTIATION_INFO),
    sessionTicketLength: c.extensionData.get(EXT.SESSION_TICKET)?.length,
    pskModes: ext(EXT.PSK_KEY_EXCHANGE_MODES),
    trustAnchors: ext(0xca34),
    echHead: ext(EXT.ECH).slice(0, 10),
    padding: c.extensionData.has(EXT.PADDING),
    earlyData: c.extensionData.has(EXT.EARLY_DATA),
    pskLast: psk ? c.extensions.at(-1) === EXT.PRE_SHARED_KEY : null,
    pskIdentities: psk?.identities.map((i) => i.length) ?? null,
    pskBinders: psk?.binders ?? null,
    ja4: ja4(c),
  };
}

/** The differences between two sets of hellos, as sentences. */
export function differences(chrome: ClientHelloInfo[], ladder: ClientHelloInfo[]): string[] {
  const out: string[] = [];
  const ci = chrome.map(invariant);
  const li = ladder.map(invariant);
  for (const [name, set] of [
    ['Chromium', ci],
    ['Ladder', li],
  ] as const)
    for (const k of Object.keys(set[0]!)) {
      const vals = new Set(set.map((v) => JSON.stringify(v[k])));
      if (vals.size > 1 && k !== 'sni') out.push(`${name}: ${k} varies: ${[...vals].join(' | ')}`);
    }
  for (const k of Object.keys(ci[0]!)) {
    const a = JSON.stringify(ci[0]![k]);
    const b = JSON.stringify(li[0]![k]);
    if (a !== b) out.push(`${k}: Chromium ${a}, Ladder ${b}`);
  }
  const set = (xs: ClientHelloInfo[], f: (c: ClientHelloInfo) => number | undefined): string =>
    JSON.stringify([...new Set(xs.map(f))].sort((a, b) => (a ?? 0) - (b ?? 0)));
  // The record length less the GREASE ECH payload depends only on the name and the offers, so its
  // set must be the same; the payload length is a random draw of four, so in a small sample a side
  // may miss one: every value seen must be one Chrome draws from, and with 100 or more hellos a
  // side (a value missed with odds below 10^-11) the sets must be equal.
  const fixed = (c: ClientHelloInfo): number => c.length - (c.echPayloadLength ?? 0);
  const a = set(chrome, fixed);
  const b = set(ladder, fixed);
  if (a !== b) out.push(`record lengths less the ECH payload: Chromium ${a}, Ladder ${b}`);
  const drawn = new Set<number | undefined>(GREASE_ECH_PAYLOAD_LENGTHS);
  for (const [name, xs] of [
    ['Chromium', chrome],
    ['Ladder', ladder],
  ] as const) {
    const odd = [...new Set(xs.map((c) => c.echPayloadLength))].filter((l) => !drawn.has(l));
    if (odd.length > 0)
      out.push(
        `${name}: GREASE ECH payload lengths ${JSON.stringify(odd)} outside ${JSON.stringify(GREASE_ECH_PAYLOAD_LENGTHS)}`,
      );
  }
  const ech = (c: ClientHelloInfo) => c.echPayloadLength;
  if (chrome.length >= 100 && ladder.length >= 100 && set(chrome, ech) !== set(ladder, ech))
    out.push(
      `GREASE ECH payload lengths: Chromium ${set(chrome, ech)}, Ladder ${set(ladder, ech)}`,
    );
  return out;
}
