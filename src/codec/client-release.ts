/**
 * A signed client release: what `ladder build-client` writes beside the executable
 * (`<file>.sig`) and `ladder update` checks before replacing itself. The operator's Ed25519 key
 * signs the release's version, platform, size and SHA-256, so a download whose bytes, version or
 * platform differ from what the operator signed is refused. Pure: no I/O.
 *
 * ```
 * <file>.sig: the signed envelope (signed-envelope.ts) of kind "ladder-client-release"
 * body: {"version": "x.y.z", "platform": "linux-x64", "size": n, "sha256": "<64 hex>", "issued": "<ISO 8601>"}
 * ```
 * @module
 */
import type { KeyObject } from 'node:crypto';
import { ConfigError } from '../errors.js';
import { openEnvelope, signEnvelope } from './signed-envelope.js';

export const CLIENT_RELEASE_KIND = 'ladder-client-release';
/** The largest executable `ladder update` downloads (a Node SEA is about 100 MB). */
export const MAX_RELEASE_BYTES = 512 * 1024 * 1024;

export interface ClientRelease {
  readonly version: string;
  /** `${process.platform}-${process.arch}` of the executable. */
  readonly platform: string;
  readonly size: number;
  readonly sha256: string;
  readonly issued: string;
}

function bad(why: string): ConfigError {
  return new ConfigError('ERR_KEY_DOCUMENT', `client release: ${why}`);
}

const VERSION = /^(\d{1,9})\.(\d{1,9})\.(\d{1,9})$/;

/** Checks a release body's fields (pure). */
export function checkClientRelease(value: unknown): ClientRelease {
  const v = value as Record<string, unknown> | null;
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw bad('the body is not a JSON object');
  if (typeof v.version !== 'string' || !VERSION.test(v.version))
    throw bad('"version" must be x.y.z');
  if (typeof v.platform !== 'string' || !/^[a-z0-9]{1,16}-[a-z0-9]{1,16}$/.test(v.platform))
    throw bad('"platform" must be like linux-x64');
  if (
    !Number.isSafeInteger(v.size) ||
    (v.size as number) < 1 ||
    (v.size as number) > MAX_RELEASE_BYTES
  )
    throw bad(`"size" must be 1 to ${MAX_RELEASE_BYTES} bytes`);
  if (typeof v.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(v.sha256))
    throw bad('"sha256" must be 64 hex digits');
  if (typeof v.issued !== 'string' || Number.isNaN(Date.parse(v.issued)))
    throw bad('"issued" must be a date');
  return {
    version: v.version,
    platform: v.platform,
    size: v.size as number,
    sha256: v.sha256,
    issued: v.issued,
  };
}

export function signClientRelease(r: ClientRelease, privateKey: KeyObject): string {
  return signEnvelope(CLIENT_RELEASE_KIND, checkClientRelease(r), privateKey, 'client release');
}

export function openClientRelease(text: string, publicKey: Uint8Array): ClientRelease {
  return checkClientRelease(openEnvelope(text, CLIENT_RELEASE_KIND, publicKey, 'client release'));
}

/** Compares two x.y.z versions: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const pa = VERSION.exec(a);
  const pb = VERSION.exec(b);
  if (!pa || !pb) throw bad(`cannot compare versions '${a.slice(0, 20)}' and '${b.slice(0, 20)}'`);
  for (let i = 1; i <= 3; i++) {
    const d = Number(pa[i]) - Number(pb[i]);
    if (d !== 0) return d;
  }
  return 0;
}
