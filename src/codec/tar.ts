/**
 * Reading one regular file out of a tar archive (POSIX ustar, as npm packs a package), for
 * `ladder build-client --platform`, which takes another platform's Node binary from the npm
 * package that holds it. Pure: no I/O; the archive is already decompressed and its size bounded
 * by the caller.
 *
 * ```
 * every entry: a 512-byte header, then the body padded to a multiple of 512 bytes
 * header:  name[100] mode[8] uid[8] gid[8] size[12] mtime[12] chksum[8] typeflag[1]
 *          linkname[100] magic[6] version[2] uname[32] gname[32] devmajor[8] devminor[8]
 *          prefix[155] pad[12]
 * end:     a zero-filled header (or the end of the bytes)
 * ```
 * Numbers are octal ASCII; POSIX.1-2017 "pax" § ustar Interchange Format. Extension entries (pax
 * `x`/`g`, GNU `L`/`K`) are skipped over by their size; the file is matched by its ustar name.
 * @module
 */
import { CodecError } from '../errors.js';

export const TAR_BLOCK_BYTES = 512;
const NAME = { at: 0, len: 100 } as const;
const SIZE = { at: 124, len: 12 } as const;
const CHKSUM = { at: 148, len: 8 } as const;
const TYPEFLAG_AT = 156;
const MAGIC = { at: 257, len: 6 } as const;
const PREFIX = { at: 345, len: 155 } as const;
/** A regular file: '0', or NUL from pre-POSIX archives. */
const REGULAR = new Set([0x30, 0x00]);

function bad(why: string): CodecError {
  return new CodecError('ERR_CODEC', `tar: ${why}`);
}

/** A NUL-terminated (or full-width) ASCII field. */
function text(h: Uint8Array, at: number, len: number): string {
  let end = at;
  while (end < at + len && h[end] !== 0) end++;
  return Buffer.from(h.buffer, h.byteOffset + at, end - at).toString('latin1');
}

/** An octal field: digits, optionally surrounded by spaces and ended by NUL or space. */
function octal(h: Uint8Array, at: number, len: number, what: string): number {
  const s = text(h, at, len).trim();
  if (!/^[0-7]{1,11}$/.test(s)) throw bad(`the ${what} field is not an octal number`);
  return parseInt(s, 8);
}

/** POSIX: the header's bytes summed as unsigned, with the checksum field taken as eight spaces. */
function checksumOk(h: Uint8Array): boolean {
  const want = octal(h, CHKSUM.at, CHKSUM.len, 'checksum');
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK_BYTES; i++)
    sum += i >= CHKSUM.at && i < CHKSUM.at + CHKSUM.len ? 0x20 : h[i]!;
  return sum === want;
}

function isZero(h: Uint8Array): boolean {
  for (let i = 0; i < h.length; i++) if (h[i] !== 0) return false;
  return true;
}

export interface TarEntry {
  readonly name: string;
  /** A view into the archive's bytes, not a copy. */
  readonly body: Uint8Array;
}

/**
 * The regular files of a tar archive, in order. Throws a CodecError on a damaged header (bad
 * checksum or number) or a body that runs past the end; every step advances at least one block,
 * so hostile bytes end the walk within `tar.length / 512` steps.
 */
export function* tarEntries(tar: Uint8Array): Generator<TarEntry> {
  let off = 0;
  while (off + TAR_BLOCK_BYTES <= tar.length) {
    const h = tar.subarray(off, off + TAR_BLOCK_BYTES);
    if (isZero(h)) return;
    if (!checksumOk(h)) throw bad(`the header at byte ${off} has a wrong checksum`);
    const size = octal(h, SIZE.at, SIZE.len, 'size');
    const start = off + TAR_BLOCK_BYTES;
    if (size > tar.length - start)
      throw bad(`the entry at byte ${off} claims ${size} bytes, past the end of the archive`);
    if (REGULAR.has(h[TYPEFLAG_AT]!)) {
      const name = text(h, NAME.at, NAME.len);
      const ustar = text(h, MAGIC.at, MAGIC.len).startsWith('ustar');
      const prefix = ustar ? text(h, PREFIX.at, PREFIX.len) : '';
      yield { name: prefix ? `${prefix}/${name}` : name, body: tar.subarray(start, start + size) };
    }
    off = start + Math.ceil(size / TAR_BLOCK_BYTES) * TAR_BLOCK_BYTES;
  }
}

/** The body of the regular file named `name`, or undefined when the archive holds none. */
export function findTarFile(tar: Uint8Array, name: string): Uint8Array | undefined {
  for (const e of tarEntries(tar)) if (e.name === name) return e.body;
  return undefined;
}

/** A ustar header for one regular file (used to build archives in tests and by the fuzzer). */
export function ustarHeader(name: string, size: number, mode = 0o755): Buffer {
  if (Buffer.byteLength(name) > NAME.len) throw bad(`the name '${name.slice(0, 40)}' is too long`);
  const h = Buffer.alloc(TAR_BLOCK_BYTES);
  h.write(name, NAME.at, 'latin1');
  h.write(mode.toString(8).padStart(7, '0'), 100, 'latin1');
  h.write('0000000', 108, 'latin1');
  h.write('0000000', 116, 'latin1');
  h.write(size.toString(8).padStart(11, '0'), SIZE.at, 'latin1');
  h.write('00000000000', 136, 'latin1');
  h[TYPEFLAG_AT] = 0x30;
  h.write('ustar\0' + '00', MAGIC.at, 'latin1');
  h.fill(0x20, CHKSUM.at, CHKSUM.at + CHKSUM.len);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', CHKSUM.at, 'latin1');
  return h;
}

/** A tar archive of the given files (bodies padded, two zero blocks at the end). */
export function buildTar(files: readonly { name: string; body: Uint8Array }[]): Buffer {
  const parts: Uint8Array[] = [];
  for (const f of files) {
    parts.push(ustarHeader(f.name, f.body.length), f.body);
    const pad = (TAR_BLOCK_BYTES - (f.body.length % TAR_BLOCK_BYTES)) % TAR_BLOCK_BYTES;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(2 * TAR_BLOCK_BYTES));
  return Buffer.concat(parts);
}
