/**
 * Ladder's signed key documents: what an operator publishes so that clients find the current
 * servers even after one is blocked (docs/client.md, "Online keys"). The operator signs with an
 * Ed25519 key kept on the operator's machine; clients hold only its public key, taken from the online
 * key they imported, and accept a document only if the signature verifies and its serial is not
 * lower than the one they keep. Pure: no I/O.
 *
 * ```
 * document: the signed envelope (signed-envelope.ts) of kind "ladder-key-document", at most 64 KiB
 * body: {"serial": n, "issued": "<ISO 8601>", "keys": ["ss://...", "ladder://...", ...],
 *        "mirrors": ["https://...", ...], "name"?: "...",
 *        "client"?: {"urls": ["https://.../ladder#ladder-pub=...", ...]}}
 * `client.urls` are where the single-file client is served (`ladder update --from` takes one).
 * ```
 * @module
 */
import type { KeyObject } from 'node:crypto';
import { ConfigError } from '../errors.js';
import {
  ED25519_PUBLIC_KEY_BYTES,
  MAX_ENVELOPE_BYTES,
  ed25519PublicKey,
  openEnvelope,
  rawPublicKey,
  signEnvelope,
} from './signed-envelope.js';

export { ED25519_PUBLIC_KEY_BYTES, ed25519PublicKey, rawPublicKey };
export const KEY_DOCUMENT_KIND = 'ladder-key-document';
export const MAX_KEY_DOCUMENT_BYTES = MAX_ENVELOPE_BYTES;
export const MAX_DOCUMENT_KEYS = 16;
export const MAX_DOCUMENT_MIRRORS = 16;

export interface KeyDocumentBody {
  /** Grows with each document the operator publishes; clients refuse a lower one. */
  readonly serial: number;
  readonly issued: string;
  /** Access keys (ss://, trojan://, ladder://) of every current server and transport. */
  readonly keys: readonly string[];
  /** Other places serving the same document (online key URLs). */
  readonly mirrors: readonly string[];
  readonly name?: string;
  /** Where the single-file client is served (each with its .sig), for `ladder update --from`. */
  readonly client?: { readonly urls: readonly string[] };
}

function bad(why: string): ConfigError {
  return new ConfigError('ERR_KEY_DOCUMENT', `key document: ${why}`);
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
    client?: { urls: string[] };
  } = { serial: v.serial as number, issued: v.issued, keys, mirrors };
  if (typeof v.name === 'string') body.name = v.name.slice(0, 64);
  if (v.client !== undefined) {
    const c = v.client as Record<string, unknown> | null;
    if (
      !c ||
      !Array.isArray(c.urls) ||
      c.urls.length > MAX_DOCUMENT_MIRRORS ||
      c.urls.some((u) => typeof u !== 'string' || u.length > 4096)
    )
      throw bad('"client" must be {"urls": [up to 16 URLs]}');
    body.client = { urls: c.urls as string[] };
  }
  return body;
}

/** Signs `body` with the operator's private key; the document text to publish. */
export function signKeyDocument(body: KeyDocumentBody, privateKey: KeyObject): string {
  return signEnvelope(KEY_DOCUMENT_KIND, checkKeyDocumentBody(body), privateKey, 'key document');
}

/** Verifies a document against the operator's public key and returns its body; throws otherwise. */
export function openKeyDocument(text: string, publicKey: Uint8Array): KeyDocumentBody {
  return checkKeyDocumentBody(openEnvelope(text, KEY_DOCUMENT_KIND, publicKey, 'key document'));
}
