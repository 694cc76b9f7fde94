/**
 * Parity gate (issue #16): Ladder's fp=chrome ClientHello against the live Chromium of this machine.
 * Chromium fetches a few hundred distinct names from a capturing listener on 127.0.0.1; Ladder builds
 * as many hellos for the same name; the two sets are compared field by field, by JA4, and by the
 * distribution of extension orders. Every difference is collected and named, so when Chromium
 * changes the failure says what changed (then update src/codec/tls-client-hello.ts and
 * docs/tls-fingerprint.md from the new capture).
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeClientHello,
  isGrease,
  ja4,
  type ClientHelloInfo,
} from '../../src/codec/tls-client-hello.js';
import { chromeClientHello } from '../../src/transport/chrome-hello.js';
import { captureChromeHellos, chromiumMissing } from '../helpers/chromium-capture.js';

const N = 300;
const why = chromiumMissing();
if (why) console.log(`Chromium parity tests skipped: ${why}`);

const hex = (n: number): string => `0x${n.toString(16).padStart(4, '0')}`;
const G = (n: number): string => (isGrease(n) ? 'GREASE' : hex(n));
const parse = (b: Buffer): ClientHelloInfo => decodeClientHello(b)!.value;

/** What must be the same in every hello of a set: the fields with GREASE values named as such. */
function invariant(c: ClientHelloInfo): Record<string, unknown> {
  const ext = (t: number): string => Buffer.from(c.extensionData.get(t) ?? []).toString('hex');
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
    statusRequest: ext(0x0005),
    renegotiationInfo: ext(0xff01),
    pskModes: ext(0x002d),
    trustAnchors: ext(0xca34),
    echHead: ext(0xfe0d).slice(0, 10),
    padding: c.extensionData.has(0x0015),
    ja4: ja4(c),
  };
}

/** The differences between two sets of hellos, as sentences. */
function differences(chrome: ClientHelloInfo[], ladder: ClientHelloInfo[]): string[] {
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
  for (const [what, f] of [
    ['record lengths', (c: ClientHelloInfo) => c.length],
    ['GREASE ECH payload lengths', (c: ClientHelloInfo) => c.echPayloadLength],
  ] as const) {
    const a = set(chrome, f);
    const b = set(ladder, f);
    if (a !== b) out.push(`${what}: Chromium ${a}, Ladder ${b}`);
  }
  return out;
}

/** Mean position of each non-GREASE extension over a set of hellos. */
function meanPositions(xs: ClientHelloInfo[]): Map<number, number> {
  const sum = new Map<number, number>();
  for (const c of xs)
    c.extensions.forEach((t, i) => !isGrease(t) && sum.set(t, (sum.get(t) ?? 0) + i));
  return new Map([...sum].map(([t, s]) => [t, s / xs.length]));
}

describe(
  'fp=chrome ClientHello against live Chromium',
  { skip: why ?? false, timeout: 120_000 },
  () => {
    let chrome: ClientHelloInfo[];
    let ladder: ClientHelloInfo[];
    before(async () => {
      chrome = (await captureChromeHellos(N, 60_000)).map(parse);
      // The capture fetches https://h<i>.hello.test:<port>/ — the same name lengths for Ladder.
      ladder = chrome.map((c) => parse(chromeClientHello(c.sni, ['h2', 'http/1.1']).record));
    });

    test('field by field: suites, groups, shares, sigalgs, versions, ALPN, ALPS, GREASE, lengths, JA4', () => {
      assert.deepEqual(differences(chrome, ladder), []);
    });

    test('a fresh extension order per connection, GREASE first and last, positions spread alike', () => {
      const orders = (xs: ClientHelloInfo[]): number =>
        new Set(xs.map((c) => c.extensions.filter((t) => !isGrease(t)).join(','))).size;
      // 17! orders: a repeat among N would mean a fixed or poorly drawn permutation.
      assert.equal(orders(chrome), N, 'Chromium: every order distinct');
      assert.equal(orders(ladder), N, 'Ladder: every order distinct');
      const a = meanPositions(chrome);
      const b = meanPositions(ladder);
      // Under a uniform permutation each mean is (n-1)/2 with a standard error near 0.3 for N = 300;
      // 2.0 is more than four standard errors of the difference.
      const off = [...a].filter(([t, m]) => Math.abs(m - (b.get(t) ?? -99)) > 2.0);
      assert.deepEqual(
        off.map(
          ([t, m]) =>
            `${hex(t)}: Chromium mean position ${m.toFixed(1)}, Ladder ${b.get(t)?.toFixed(1)}`,
        ),
        [],
      );
    });
  },
);

test('Ladder hellos are one record with no SNI for an IP literal and no ALPS without h2', () => {
  const ip = parse(chromeClientHello('127.0.0.1', ['http/1.1']).record);
  assert.equal(ip.sni, undefined);
  assert.equal(ip.alpsProtocols, undefined);
  assert.deepEqual(ip.alpn, ['http/1.1']);
});

describe(
  'fp=chrome WebSocket ClientHello against Chromium opening wss://',
  { skip: why ?? false, timeout: 120_000 },
  () => {
    test('field by field (ALPN http/1.1 alone, no ALPS), as the WebSocket dialer sends it', async () => {
      const chrome = (await captureChromeHellos(100, 60_000, 'websocket')).map(parse);
      const ladder = chrome.map((c) => parse(chromeClientHello(c.sni, ['http/1.1']).record));
      assert.deepEqual(differences(chrome, ladder), []);
      assert.deepEqual(chrome[0]!.alpn, ['http/1.1']);
    });
  },
);
