/**
 * A tiny MaxMind DB writer for tests: an IPv6 tree (IPv4 networks under ::/96, as MaxMind's own
 * databases place them) with 24-bit records, each network mapped to `{country: {iso_code: CC}}` or,
 * with `flat`, to `{country_code: CC}` (ip-location-db's layout). Written from the format spec
 * (https://maxmind.github.io/MaxMind-DB/); it is the fixture for src/routing/mmdb.ts.
 */
import { isIPv4 } from 'node:net';
import { ipv4ToNumber, ipv6ToBigInt } from '../../src/routing/ip.js';

function ctrl(type: number, size: number): Buffer {
  // Sizes up to 28 fit the control byte; tests never need more.
  if (size > 28) throw new Error('mmdb-writer: size too large');
  return type <= 7 ? Buffer.from([(type << 5) | size]) : Buffer.from([size, type - 7]);
}

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([ctrl(2, b.length), b]);
}

function uint(type: 5 | 6 | 9, n: number): Buffer {
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.concat([ctrl(type, bytes.length), Buffer.from(bytes)]);
}

function map(entries: [string, Buffer][]): Buffer {
  return Buffer.concat([ctrl(7, entries.length), ...entries.flatMap(([k, v]) => [str(k), v])]);
}

interface Node {
  child: [Node | number | null, Node | number | null];
}

/** `networks`: CIDR → country code. Returns the .mmdb bytes. */
export function writeMmdb(
  networks: Record<string, string>,
  options: { flat?: boolean; recordSize?: 24 } = {},
): Buffer {
  const root: Node = { child: [null, null] };
  const dataParts: Buffer[] = [];
  const offsets = new Map<string, number>();
  let dataLength = 0;
  const dataFor = (cc: string): number => {
    let o = offsets.get(cc);
    if (o === undefined) {
      const rec = options.flat
        ? map([['country_code', str(cc)]])
        : map([['country', map([['iso_code', str(cc)]])]]);
      o = dataLength;
      offsets.set(cc, o);
      dataParts.push(rec);
      dataLength += rec.length;
    }
    return o;
  };
  for (const [cidr, cc] of Object.entries(networks)) {
    const [addr, lenText] = cidr.split('/') as [string, string];
    const v4 = isIPv4(addr);
    const len = Number(lenText) + (v4 ? 96 : 0);
    const n = v4 ? BigInt(ipv4ToNumber(addr)) : ipv6ToBigInt(addr);
    const offset = dataFor(cc);
    let node = root;
    for (let i = 0; i < len; i++) {
      const bit = Number((n >> BigInt(127 - i)) & 1n) as 0 | 1;
      if (i === len - 1) {
        node.child[bit] = -1 - offset; // a data leaf, fixed up below
        break;
      }
      let next = node.child[bit];
      if (typeof next !== 'object' || next === null) {
        // A wider network's leaf is pushed down to both halves, so it still covers the rest.
        next = { child: [next, next] };
        node.child[bit] = next;
      }
      node = next;
    }
  }
  // Number the nodes breadth first.
  const nodes: Node[] = [];
  const ids = new Map<Node, number>();
  const queue = [root];
  while (queue.length > 0) {
    const n = queue.shift()!;
    ids.set(n, nodes.length);
    nodes.push(n);
    for (const c of n.child) if (typeof c === 'object' && c !== null) queue.push(c);
  }
  const nodeCount = nodes.length;
  const tree = Buffer.alloc(nodeCount * 6);
  nodes.forEach((n, i) => {
    n.child.forEach((c, side) => {
      let v: number;
      if (c === null) v = nodeCount;
      else if (typeof c === 'number') v = nodeCount + 16 + (-1 - c);
      else v = ids.get(c)!;
      tree.writeUIntBE(v, i * 6 + side * 3, 3);
    });
  });
  const metadata = map([
    ['binary_format_major_version', uint(5, 2)],
    ['binary_format_minor_version', uint(5, 0)],
    ['build_epoch', uint(9, 1_700_000_000)],
    ['database_type', str('Ladder-Test-Country')],
    ['ip_version', uint(5, 6)],
    ['node_count', uint(6, nodeCount)],
    ['record_size', uint(5, 24)],
  ]);
  return Buffer.concat([
    tree,
    Buffer.alloc(16),
    ...dataParts,
    Buffer.from([0xab, 0xcd, 0xef]),
    Buffer.from('MaxMind.com', 'latin1'),
    metadata,
  ]);
}
