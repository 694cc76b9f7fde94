/**
 * Reading and writing TLS's presentation-language vectors (RFC 8446 §3): big-endian integers and
 * byte strings behind a 1-, 2- or 3-byte length. Pure; the reader throws a CodecError naming what
 * was cut short or overran its vector, and never reads past the slice it was given.
 * @module
 */
import { CodecError } from '../errors.js';

/** A cursor over one TLS structure; every read is bounds-checked. */
export class TlsReader {
  readonly #b: Uint8Array;
  #p: number;
  readonly #end: number;
  readonly #what: string;

  constructor(b: Uint8Array, what: string, start = 0, end = b.length) {
    this.#b = b;
    this.#p = start;
    this.#end = end;
    this.#what = what;
  }

  get left(): number {
    return this.#end - this.#p;
  }

  #need(n: number, field: string): void {
    if (n > this.#end - this.#p)
      throw new CodecError('ERR_TLS_PROTOCOL', `${this.#what}: ${field} runs past its end`);
  }

  u8(field = 'a byte'): number {
    this.#need(1, field);
    return this.#b[this.#p++]!;
  }

  u16(field = 'a u16'): number {
    this.#need(2, field);
    const v = (this.#b[this.#p]! << 8) | this.#b[this.#p + 1]!;
    this.#p += 2;
    return v;
  }

  u24(field = 'a u24'): number {
    this.#need(3, field);
    const v = (this.#b[this.#p]! << 16) | (this.#b[this.#p + 1]! << 8) | this.#b[this.#p + 2]!;
    this.#p += 3;
    return v;
  }

  u32(field = 'a u32'): number {
    const hi = this.u16(field);
    return hi * 0x10000 + this.u16(field);
  }

  bytes(n: number, field = 'bytes'): Uint8Array {
    this.#need(n, field);
    const v = this.#b.subarray(this.#p, this.#p + n);
    this.#p += n;
    return v;
  }

  /** A vector behind a `lenBytes`-byte length, as a sub-reader; `min`/`max` bound the length (RFC 8446 §3.4). */
  vec(lenBytes: 1 | 2 | 3, field: string, min = 0, max = 0xffffff): TlsReader {
    const n = lenBytes === 1 ? this.u8(field) : lenBytes === 2 ? this.u16(field) : this.u24(field);
    if (n < min || n > max)
      throw new CodecError(
        'ERR_TLS_PROTOCOL',
        `${this.#what}: ${field} has length ${n}, outside ${min}..${max}`,
      );
    this.#need(n, field);
    const r = new TlsReader(this.#b, `${this.#what}/${field}`, this.#p, this.#p + n);
    this.#p += n;
    return r;
  }

  /** The rest of this structure's bytes. */
  rest(): Uint8Array {
    return this.bytes(this.left);
  }

  /** Throws when bytes are left over: every TLS structure is exactly its length. */
  done(): void {
    if (this.#p !== this.#end)
      throw new CodecError('ERR_TLS_PROTOCOL', `${this.#what}: ${this.#end - this.#p} extra bytes`);
  }
}

/** Builds a TLS structure; `vec` writes a length-prefixed part. */
export class TlsWriter {
  #parts: Uint8Array[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  #push(b: Uint8Array): this {
    this.#parts.push(b);
    this.#length += b.length;
    return this;
  }

  u8(v: number): this {
    return this.#push(Uint8Array.of(v & 0xff));
  }

  u16(v: number): this {
    return this.#push(Uint8Array.of((v >> 8) & 0xff, v & 0xff));
  }

  u24(v: number): this {
    return this.#push(Uint8Array.of((v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff));
  }

  u32(v: number): this {
    return this.#push(
      Uint8Array.of((v >>> 24) & 0xff, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff),
    );
  }

  bytes(b: Uint8Array): this {
    return this.#push(b);
  }

  u16s(vs: readonly number[]): this {
    for (const v of vs) this.u16(v);
    return this;
  }

  /** Writes `fill`'s output behind a `lenBytes`-byte length. */
  vec(lenBytes: 1 | 2 | 3, fill: (w: TlsWriter) => void): this {
    const w = new TlsWriter();
    fill(w);
    const n = w.length;
    if (n >= 2 ** (8 * lenBytes))
      throw new CodecError('ERR_TLS_PROTOCOL', `a vector of ${n} bytes does not fit its length`);
    if (lenBytes === 1) this.u8(n);
    else if (lenBytes === 2) this.u16(n);
    else this.u24(n);
    for (const p of w.#parts) this.#push(p);
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.#parts, this.#length);
  }
}
