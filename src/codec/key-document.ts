/**
 * Ladder's signed key documents: what an operator publishes so that clients find the current
 * servers even after one is blocked (docs/client.md, "Online keys"). The operator signs with an
 * Ed25519 key kept on the operator's machine; clients hold only its public key, taken from the online
 * key they imported, and accept a document only if the signature verifies and its serial is not
 * lower than the one they keep. Pure: no I/O.
 *
 * ```
 * document (UTF-8 JSON, at most 64 KiB):
 *   {"ladder-key-document": 1, "body": "<base64url(body JSON)>", "sig": "<base64url(signature)>"}
 * signature = Ed25519(operator key, "ladder-key-document-v1\n" || body JSON bytes)
 * body: {"serial": n, "issued": "<ISO 8601>", "keys": ["ss://...", "ladder://...", ...],
 *        "mirrors": ["https://.../#ladder-pub=...", ...], "name"?: "...",
 *        "client"?: {"version": "x.y.z", "urls": ["https://..."], "sha256": "<hex>"}}
 * ```
 * The body travels as base64url so the signed bytes are exactly the bytes verified (no JSON
 * canonicalisation). The context string keeps a signature over a document from verifying as any
 * other thing the same key signs (client releases use their own context).
 * @module
 */
import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { ConfigError } from '../errors.js';

export const KEY_DOCUMENT_VERSION = 1;
export const MAX_KEY_DOCUMENT_BYTES = 64 * 1024;
export const MAX_DOCUMENT_KEYS = 16;
export const MAX_DOCUMENT_MIRRORS = 16;
export const ED25519_PUBLIC_KEY_BYTES = 32;
const CONTEXT = 'ladder-key-document-v1\n';

export interface KeyDocumentBody {
  /** Grows with each document the operator publishes; clients refuse a lower one. */
  readonly serial: number;
  readonly issued: string;
  /** Access keys (ss://, trojan://, ladder://) of every current server and transport. */
  readonly keys: readonly string[];
  /** Other places serving the same document (online key URLs). */
  readonly mirrors: readonly string[];
  readonly name?: string;
  /** The current client release, for `ladder update`. */
  readonly client?: {
    readonly version: string;
    readonly urls: readonly string[];
    readonly sha256: string;
  };
}

function bad(why: string): ConfigError {
  return new ConfigError('ERR_KEY_DOCUMENT', `key document: ${why}`);
}

/** The Ed25519 public key object for 32 raw bytes. */
export function ed25519PublicKey(raw: Uint8Array): KeyObject {
  if (raw.length !== ED25519_PUBLIC_KEY_BYTES)
    throw bad(
      `the operator's public key must be ${ED25519_PUBLIC_KEY_BYTES} bytes, not ${raw.length}`,
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

/** Checks a body's fields (pure); returns it with only the known fields. */
export function checkKeyDocumentBody(value: unknown): KeyDocumentBody {
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw bad('the body is not a JSON object');
  const v = value as Record<string, unknown>;
  if (!Number.isSafeInteger(v.serial) || (v.serial as number) < 1)
    throw bad('"serial" must be a whole number from 1 up');
  if (typeof v.issued !== 'string' || Number.isNaN(Date.parse(v.issued)))
    throw bad('"issued" must be a date (ISO 8601)');
  const strings = (k: string, max: number, min: number): string[] => {
    const a = v[k];
    if (
      !Array.isArray(a) ||
      a.length < min ||
      a.length > max ||
      a.some((x) => typeof x !== 'string' || x.length > 4096)
    )
      throw bad(`"${k}" must be a list of ${min} to ${max} strings`);
    return a as string[];
  };
  const keys = strings('keys', MAX_DOCUMENT_KEYS, 1);
  const mirrors = v.mirrors === undefined ? [] : strings('mirrors', MAX_DOCUMENT_MIRRORS, 0);
  const body: {
    serial: number;
    issued: string;
    keys: string[];
    mirrors: string[];
    name?: string;
    client?: { version: string; urls: string[]; sha256: string };
  } = { serial: v.serial as number, issued: v.issued, keys, mirrors };
  if (typeof v.name === 'string') body.name = v.name.slice(0, 64);
  if (v.client !== undefined) {
    const c = v.client as Record<string, unknown> | null;
    if (
      !c ||
      typeof c.version !== 'string' ||
      !Array.isArray(c.urls) ||
      c.urls.length > MAX_DOCUMENT_MIRRORS ||
      c.urls.some((u) => typeof u !== 'string') ||
      typeof c.sha256 !== 'string' ||
      !/^[0-9a-f]{64}$/.test(c.sha256)
    )
      throw bad('"client" must be {"version", "urls": [...], "sha256": 64 hex digits}');
    body.client = { version: c.version, urls: c.urls as string[], sha256: c.sha256 };
  }
  return body;
}

/** Signs `body` with the operator's private key; the document text to publish. */
export function signKeyDocument(body: KeyDocumentBody, privateKey: KeyObject): string {
  const bytes = Buffer.from(JSON.stringify(checkKeyDocumentBody(body)), 'utf8');
  const sig = sign(null, Buffer.concat([Buffer.from(CONTEXT), bytes]), privateKey);
  const text = JSON.stringify({
    'ladder-key-document': KEY_DOCUMENT_VERSION,
    body: bytes.toString('base64url'),
    sig: sig.toString('base64url'),
  });
  if (Buffer.byteLength(text) > MAX_KEY_DOCUMENT_BYTES)
    throw bad(`the document would be over ${MAX_KEY_DOCUMENT_BYTES / 1024} KiB: list fewer keys`);
  return `${text}\n`;
}

/** True if `text` looks like a Ladder key document (before verifying it). */
export function isKeyDocument(text: string): boolean {
  return /^\s*\{\s*"ladder-key-document"/.test(text);
}

/** Verifies a document against the operator's public key and returns its body; throws otherwise. */
export function openKeyDocument(text: string, publicKey: Uint8Array): KeyDocumentBody {
  if (Buffer.byteLength(text) > MAX_KEY_DOCUMENT_BYTES)
    throw bad(`it is over ${MAX_KEY_DOCUMENT_BYTES / 1024} KiB`);
  let outer: unknown;
  try {
    outer = JSON.parse(text);
  } catch {
    throw bad('it is not JSON (is the URL right? a web page is not a key document)');
  }
  const o = outer as { 'ladder-key-document'?: unknown; body?: unknown; sig?: unknown } | null;
  if (!o || typeof o !== 'object') throw bad('it is not a JSON object');
  if (o['ladder-key-document'] !== KEY_DOCUMENT_VERSION)
    throw bad(
      `its version is ${String(o['ladder-key-document']).slice(0, 20)}; this client reads version ${KEY_DOCUMENT_VERSION}`,
    );
  if (
    typeof o.body !== 'string' ||
    typeof o.sig !== 'string' ||
    !/^[A-Za-z0-9_-]*$/.test(o.body + o.sig)
  )
    throw bad('"body" and "sig" must be base64url text');
  const bytes = Buffer.from(o.body, 'base64url');
  const sig = Buffer.from(o.sig, 'base64url');
  const ok =
    sig.length === 64 &&
    verify(null, Buffer.concat([Buffer.from(CONTEXT), bytes]), ed25519PublicKey(publicKey), sig);
  if (!ok)
    throw bad(
      "its signature does not verify with the operator's key: it was changed or forged, and is not used",
    );
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw bad('its signed body is not JSON');
  }
  return checkKeyDocumentBody(body);
}
