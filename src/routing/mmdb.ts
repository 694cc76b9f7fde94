/**
 * A reader for MaxMind DB files (.mmdb), written from the public format specification
 * (https://maxmind.github.io/MaxMind-DB/, version 2.0). Only what country lookups need: the
 * metadata, the binary search tree, and the data section decoder.
 *
 * ```
 * ┌──────────────────────┬──────────────┬──────────────┬──────────────────────────┬──────────┐
 * │ search tree          │ 16 zero bytes│ data section │ "\xAB\xCD\xEFMaxMind.com" │ metadata │
 * │ node_count × 2 recs  │ (separator)  │ (typed data) │ (marker, last in file)   │ (a map)  │
 * └──────────────────────┴──────────────┴──────────────┴──────────────────────────┴──────────┘
 * record: 24, 28 or 32 bits; < node_count: next node; = node_count: no data;
 *         > node_count: data at (record − node_count − 16) in the data section
 * data field: control byte (type in the top 3 bits, 0 = extended: 7 + next byte; size in the low 5
 *             bits, 29/30/31 = 29 + 1 byte / 285 + 2 bytes / 65821 + 3 bytes), then the payload
 * ```
 * Pure: it takes the file's bytes and its name (for messages). Hostile bytes give a ConfigError
 * naming the file, never another exception or a loop: every offset is checked against its section,
 * nesting depth and container sizes are capped, and a pointer may not point at a pointer (spec).
 * @module
 */
import { ConfigError } from '../errors.js';
import { ipv4ToNumber, ipv6ToBigInt } from './ip.js';

/** "\xAB\xCD\xEFMaxMind.com" (spec: "Database Metadata"). */
const METADATA_MARKER = Buffer.from([0xab, 0xcd, 0xef, ...Buffer.from('MaxMind.com', 'latin1')]);
/** Spec: the metadata section is at most 128 KiB, so the marker is searched for only there. */
const METADATA_MAX_BYTES = 128 * 1024;
/** Spec: 16 bytes of zeros between the search tree and the data section. */
const DATA_SECTION_SEPARATOR_BYTES = 16;
/** Nesting deeper than this is refused (real databases nest 3 or 4 deep). */
const MAX_DEPTH = 32;
/** Containers larger than this are refused (a country record has a handful of keys). */
const MAX_CONTAINER_ENTRIES = 100_000;

const TYPE = {
  EXTENDED: 0,
  POINTER: 1,
  UTF8: 2,
  DOUBLE: 3,
  BYTES: 4,
  UINT16: 5,
  UINT32: 6,
  MAP: 7,
  INT32: 8,
  UINT64: 9,
  UINT128: 10,
  ARRAY: 11,
  CONTAINER: 12,
  END_MARKER: 13,
  BOOLEAN: 14,
  FLOAT: 15,
} as const;

export type MmdbValue =
  string | number | bigint | boolean | Uint8Array | MmdbValue[] | { [key: string]: MmdbValue };

export interface MmdbMetadata {
  readonly nodeCount: number;
  readonly recordSize: 24 | 28 | 32;
  readonly ipVersion: 4 | 6;
  readonly databaseType: string;
  readonly buildEpoch: number;
}

/** Decodes data fields of one section (`base` is where the section's offsets count from). */
class Decoder {
  readonly #buf: Buffer;
  readonly #base: number;
  readonly #end: number;
  readonly #bad: (why: string) => ConfigError;

  constructor(buf: Buffer, base: number, end: number, bad: (why: string) => ConfigError) {
    this.#buf = buf;
    this.#base = base;
    this.#end = end;
    this.#bad = bad;
  }

  #byte(at: number): number {
    if (at >= this.#end) throw this.#bad('a data field runs past the end of its section');
    return this.#buf[at]!;
  }

  #uint(at: number, size: number): number {
    if (at + size > this.#end) throw this.#bad('a data field runs past the end of its section');
    let n = 0;
    for (let i = 0; i < size; i++) n = n * 256 + this.#buf[at + i]!;
    return n;
  }

  /** Decodes the field at section offset `offset`; returns it and the offset after it. */
  decode(offset: number, depth = 0, viaPointer = false): { value: MmdbValue; next: number } {
    if (depth > MAX_DEPTH) throw this.#bad(`data nested deeper than ${MAX_DEPTH}`);
    let at = this.#base + offset;
    const ctrl = this.#byte(at++);
    let type = ctrl >> 5;
    if (type === TYPE.POINTER) {
      if (viaPointer) throw this.#bad('a pointer points at a pointer');
      const ss = (ctrl >> 3) & 3;
      const vvv = ctrl & 7;
      let target: number;
      if (ss === 0) target = vvv * 256 + this.#uint(at, 1);
      else if (ss === 1) target = vvv * 65536 + this.#uint(at, 2) + 2048;
      else if (ss === 2) target = vvv * 16777216 + this.#uint(at, 3) + 526336;
      else target = this.#uint(at, 4);
      const next = at + ss + 1 - this.#base;
      return { value: this.decode(target, depth + 1, true).value, next };
    }
    if (type === TYPE.EXTENDED) {
      type = 7 + this.#byte(at++);
      if (type < 8 || type > 15) throw this.#bad(`unknown data type ${type}`);
    }
    let size = ctrl & 0x1f;
    if (size === 29) size = 29 + this.#uint(at++, 1);
    else if (size === 30) {
      size = 285 + this.#uint(at, 2);
      at += 2;
    } else if (size === 31) {
      size = 65821 + this.#uint(at, 3);
      at += 3;
    }
    const rel = (n: number): number => n - this.#base;
    switch (type) {
      case TYPE.UTF8:
      case TYPE.BYTES: {
        if (at + size > this.#end) throw this.#bad('a string runs past the end of its section');
        const bytes = this.#buf.subarray(at, at + size);
        return {
          value: type === TYPE.UTF8 ? bytes.toString('utf8') : Uint8Array.from(bytes),
          next: rel(at + size),
        };
      }
      case TYPE.DOUBLE:
      case TYPE.FLOAT: {
        const want = type === TYPE.DOUBLE ? 8 : 4;
        if (size !== want) throw this.#bad(`a ${want === 8 ? 'double' : 'float'} of ${size} bytes`);
        if (at + size > this.#end) throw this.#bad('a number runs past the end of its section');
        const v = want === 8 ? this.#buf.readDoubleBE(at) : this.#buf.readFloatBE(at);
        return { value: v, next: rel(at + size) };
      }
      case TYPE.UINT16:
      case TYPE.UINT32:
      case TYPE.INT32:
      case TYPE.UINT64:
      case TYPE.UINT128: {
        const max = { 5: 2, 6: 4, 8: 4, 9: 8, 10: 16 }[type];
        if (size > max) throw this.#bad(`an integer of type ${type} with ${size} bytes`);
        if (at + size > this.#end) throw this.#bad('a number runs past the end of its section');
        if (size <= 4) {
          let n = this.#uint(at, size);
          if (type === TYPE.INT32 && size === 4 && n >= 2 ** 31) n -= 2 ** 32;
          return { value: n, next: rel(at + size) };
        }
        let n = 0n;
        for (let i = 0; i < size; i++) n = (n << 8n) | BigInt(this.#buf[at + i]!);
        return { value: n, next: rel(at + size) };
      }
      case TYPE.BOOLEAN:
        if (size > 1) throw this.#bad(`a boolean with value ${size}`);
        return { value: size === 1, next: rel(at) };
      case TYPE.MAP:
      case TYPE.ARRAY: {
        if (size > MAX_CONTAINER_ENTRIES)
          throw this.#bad(`a container of ${size} entries (at most ${MAX_CONTAINER_ENTRIES})`);
        let next = rel(at);
        if (type === TYPE.ARRAY) {
          const out: MmdbValue[] = [];
          for (let i = 0; i < size; i++) {
            const d = this.decode(next, depth + 1);
            out.push(d.value);
            next = d.next;
          }
          return { value: out, next };
        }
        const out: { [key: string]: MmdbValue } = Object.create(null) as {
          [key: string]: MmdbValue;
        };
        for (let i = 0; i < size; i++) {
          const k = this.decode(next, depth + 1);
          if (typeof k.value !== 'string') throw this.#bad('a map key that is not a string');
          const v = this.decode(k.next, depth + 1);
          out[k.value] = v.value;
          next = v.next;
        }
        return { value: out, next };
      }
      default:
        throw this.#bad(`data type ${type} where a value was expected`);
    }
  }
}

/** A MaxMind DB opened from its bytes. Lookups walk the tree; decoded records are cached. */
export class MmdbReader {
  readonly metadata: MmdbMetadata;
  readonly #buf: Buffer;
  readonly #file: string;
  readonly #treeBytes: number;
  readonly #data: Decoder;
  readonly #nodeBytes: number;
  /** The node that IPv4 addresses start from in an IPv6 tree (after 96 zero bits). */
  readonly #ipv4Start: number;
  readonly #records = new Map<number, MmdbValue>();

  /** Throws a ConfigError naming `file` when `bytes` is not a MaxMind DB this reader can use. */
  constructor(bytes: Uint8Array, file: string) {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#buf = buf;
    this.#file = file;
    const bad = (why: string): ConfigError =>
      new ConfigError(
        'ERR_GEOIP',
        `${file}: not a usable MaxMind DB (.mmdb): ${why}; give --geoip a GeoIP2/GeoLite2 Country or compatible .mmdb file`,
      );
    const from = Math.max(0, buf.length - METADATA_MAX_BYTES);
    const mark = buf.lastIndexOf(METADATA_MARKER);
    if (mark < from || mark < 0) throw bad('no metadata marker');
    const metaStart = mark + METADATA_MARKER.length;
    const meta = new Decoder(buf, metaStart, buf.length, bad).decode(0).value;
    if (
      typeof meta !== 'object' ||
      meta === null ||
      Array.isArray(meta) ||
      meta instanceof Uint8Array
    )
      throw bad('the metadata is not a map');
    const m = meta as { [key: string]: MmdbValue };
    const nodeCount = m['node_count'];
    const recordSize = m['record_size'];
    const ipVersion = m['ip_version'];
    const major = m['binary_format_major_version'];
    if (major !== 2) throw bad(`binary format version ${String(major)} (this reader reads 2)`);
    if (typeof nodeCount !== 'number' || !Number.isInteger(nodeCount) || nodeCount < 1)
      throw bad('no node_count');
    if (recordSize !== 24 && recordSize !== 28 && recordSize !== 32)
      throw bad(`record_size ${String(recordSize)} (24, 28 or 32)`);
    if (ipVersion !== 4 && ipVersion !== 6) throw bad(`ip_version ${String(ipVersion)}`);
    this.#nodeBytes = recordSize / 4;
    this.#treeBytes = nodeCount * this.#nodeBytes;
    const dataStart = this.#treeBytes + DATA_SECTION_SEPARATOR_BYTES;
    if (dataStart > mark) throw bad('the search tree is larger than the file');
    this.#data = new Decoder(buf, dataStart, mark, bad);
    this.metadata = {
      nodeCount,
      recordSize,
      ipVersion,
      databaseType: typeof m['database_type'] === 'string' ? m['database_type'] : '',
      buildEpoch:
        typeof m['build_epoch'] === 'number' ? m['build_epoch'] : Number(m['build_epoch'] ?? 0),
    };
    let node = 0;
    if (ipVersion === 6)
      for (let i = 0; i < 96 && node < nodeCount; i++) node = this.#record(node, 0);
    this.#ipv4Start = node;
  }

  #record(node: number, bit: number): number {
    const b = this.#buf;
    const at = node * this.#nodeBytes;
    switch (this.#nodeBytes) {
      case 6:
        return bit === 0 ? b.readUIntBE(at, 3) : b.readUIntBE(at + 3, 3);
      case 7:
        return bit === 0
          ? ((b[at + 3]! & 0xf0) << 20) + b.readUIntBE(at, 3)
          : (b[at + 3]! & 0x0f) * 16777216 + b.readUIntBE(at + 4, 3);
      default:
        return bit === 0 ? b.readUInt32BE(at) : b.readUInt32BE(at + 4);
    }
  }

  #walk(start: number, bits: number, bitAt: (i: number) => number): MmdbValue | undefined {
    const n = this.metadata.nodeCount;
    let node = start;
    for (let i = 0; i < bits && node < n; i++) node = this.#record(node, bitAt(i));
    if (node <= n) return undefined; // = n: no data; < n: the tree is deeper than an address
    const offset = node - n - DATA_SECTION_SEPARATOR_BYTES;
    let v = this.#records.get(offset);
    if (v === undefined) {
      v = this.#data.decode(offset).value;
      this.#records.set(offset, v);
    }
    return v;
  }

  /** The record for an IPv4 or IPv6 address (a literal), or undefined if the database has none. */
  lookup(ip: string): MmdbValue | undefined {
    if (!ip.includes(':')) {
      const a = ipv4ToNumber(ip);
      return this.#walk(this.#ipv4Start, 32, (i) => (a >>> (31 - i)) & 1);
    }
    if (this.metadata.ipVersion === 4) return undefined;
    const a = ipv6ToBigInt(ip);
    return this.#walk(0, 128, (i) => Number((a >> BigInt(127 - i)) & 1n));
  }

  /**
   * The ISO 3166 country code for an address: `country.iso_code` (MaxMind GeoIP2/GeoLite2),
   * `registered_country.iso_code`, or `country_code` (ip-location-db), upper-cased.
   */
  country(ip: string): string | undefined {
    const r = this.lookup(ip);
    if (typeof r !== 'object' || r === null || Array.isArray(r) || r instanceof Uint8Array)
      return undefined;
    const o = r as { [key: string]: MmdbValue };
    const iso = (x: MmdbValue | undefined): string | undefined => {
      if (typeof x !== 'object' || x === null || Array.isArray(x) || x instanceof Uint8Array)
        return undefined;
      const c = (x as { [key: string]: MmdbValue })['iso_code'];
      return typeof c === 'string' ? c : undefined;
    };
    const code =
      iso(o['country']) ??
      iso(o['registered_country']) ??
      (typeof o['country_code'] === 'string' ? o['country_code'] : undefined);
    return code?.toUpperCase();
  }

  /** The file name given at opening (for messages). */
  get file(): string {
    return this.#file;
  }
}
