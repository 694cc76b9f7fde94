/**
 * The signed envelope of Ladder's operator-signed files (key documents, client releases):
 *
 * ```
 * {"<kind>": 1, "body": "<base64url(body JSON)>", "sig": "<base64url(Ed25519 signature)>"}
 * signature = Ed25519(operator key, "<kind>-v1\n" || body JSON bytes)
 * ```
 * The body travels as base64url so the bytes verified are exactly the bytes signed (no JSON
 * canonicalisation); the context string (the kind) keeps a signature over one kind of file from
 * verifying as another. Pure: no I/O.
 * @module
 */
import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { ConfigError } from '../errors.js';

export const ENVELOPE_VERSION = 1;
export const MAX_ENVELOPE_BYTES = 64 * 1024;
export const ED25519_PUBLIC_KEY_BYTES = 32;

function bad(what: string, why: string): ConfigError {
  return new ConfigError('ERR_KEY_DOCUMENT', `${what}: ${why}`);
}

/** The Ed25519 public key object for 32 raw bytes. */
export function ed25519PublicKey(raw: Uint8Array, what = 'operator key'): KeyObject {
  if (raw.length !== ED25519_PUBLIC_KEY_BYTES)
    throw bad(
      what,
      `an Ed25519 public key is ${ED25519_PUBLIC_KEY_BYTES} bytes, not ${raw.length}`,
    );
  return createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') },
    format: 'jwk',
  });
}

/** The 32 raw bytes of an Ed25519 public key object. */
export function rawPublicKey(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' });
  return Buffer.from(String(jwk.x), 'base64url');
}

const context = (kind: string) => Buffer.from(`${kind}-v1\n`);

/** Signs `body` (JSON) as a `kind` envelope; the text to publish, newline-terminated. */
export function signEnvelope(
  kind: string,
  body: unknown,
  privateKey: KeyObject,
  what: string,
): string {
  const bytes = Buffer.from(JSON.stringify(body), 'utf8');
  const sig = sign(null, Buffer.concat([context(kind), bytes]), privateKey);
  const text = JSON.stringify({
    [kind]: ENVELOPE_VERSION,
    body: bytes.toString('base64url'),
    sig: sig.toString('base64url'),
  });
  if (Buffer.byteLength(text) > MAX_ENVELOPE_BYTES)
    throw bad(what, `it would be over ${MAX_ENVELOPE_BYTES / 1024} KiB`);
  return `${text}\n`;
}

/** Verifies a `kind` envelope with the operator's public key; its body, parsed. Throws otherwise. */
export function openEnvelope(
  text: string,
  kind: string,
  publicKey: Uint8Array,
  what: string,
): unknown {
  if (Buffer.byteLength(text) > MAX_ENVELOPE_BYTES)
    throw bad(what, `it is over ${MAX_ENVELOPE_BYTES / 1024} KiB`);
  let outer: unknown;
  try {
    outer = JSON.parse(text);
  } catch {
    throw bad(what, 'it is not JSON (is the URL right? a web page is not one)');
  }
  const o = outer as Record<string, unknown> | null;
  if (!o || typeof o !== 'object') throw bad(what, 'it is not a JSON object');
  if (o[kind] !== ENVELOPE_VERSION)
    throw bad(
      what,
      o[kind] === undefined
        ? `it is not a ${kind}`
        : `its version is ${String(o[kind]).slice(0, 20)}; this client reads version ${ENVELOPE_VERSION}`,
    );
  if (
    typeof o.body !== 'string' ||
    typeof o.sig !== 'string' ||
    !/^[A-Za-z0-9_-]*$/.test(o.body + o.sig)
  )
    throw bad(what, '"body" and "sig" must be base64url text');
  const bytes = Buffer.from(o.body, 'base64url');
  const sig = Buffer.from(o.sig, 'base64url');
  const ok =
    sig.length === 64 &&
    verify(null, Buffer.concat([context(kind), bytes]), ed25519PublicKey(publicKey), sig);
  if (!ok)
    throw bad(
      what,
      "its signature does not verify with the operator's key: it was changed or forged, and is not used",
    );
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw bad(what, 'its signed body is not JSON');
  }
}
