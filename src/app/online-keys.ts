/**
 * Resolving an online key (codec/online-key.ts) to the access key it currently stands for. An
 * Outline dynamic key is one URL; a Ladder signed key document is tried at the imported URL and then
 * at every mirror the last good document lists, in turn, and only a document that verifies with the
 * operator's key pinned in the online key, and whose serial is not lower than the last good one, is
 * taken. A mirror's own `#ladder-pub` is ignored: the pinned key never changes.
 * @module
 */
import { LadderError } from '../errors.js';
import { openKeyDocument, type KeyDocumentBody } from '../codec/key-document.js';
import { documentAccessKey, outlineDocumentKey, parseOnlineKeyUri } from '../codec/online-key.js';
import { urlOrigin } from './capped-fetch.js';

/** What the client keeps of an online key between runs. */
export interface OnlineCache {
  /** The access key last resolved. */
  readonly resolved?: string | undefined;
  /** The last good signed document, as fetched (verified again when read). */
  readonly doc?: string | undefined;
}

export interface Resolved {
  readonly resolved: string;
  readonly doc?: string;
  /** For the log: where it came from (scheme and host only) and what changed. */
  readonly note: string;
  readonly body?: KeyDocumentBody;
}

/** Fetches a URL's body as text (capped-fetch.ts, through the tunnel when one is up). */
export type FetchText = (url: string) => Promise<string>;

/** The verified body of a kept document, or undefined if there is none or it no longer verifies. */
export function keptDocument(
  doc: string | undefined,
  publicKey: Uint8Array,
): KeyDocumentBody | undefined {
  if (!doc) return undefined;
  try {
    return openKeyDocument(doc, publicKey);
  } catch {
    return undefined;
  }
}

/** The URLs to try for a signed document: the imported one, then the last good one's mirrors. */
export function mirrorOrder(url: string, last: KeyDocumentBody | undefined): string[] {
  const out = [url];
  for (const m of last?.mirrors ?? []) {
    let u: string;
    try {
      const p = new URL(m.replace(/^ssconf:\/\//i, 'https://'));
      p.hash = '';
      u = p.href;
    } catch {
      continue;
    }
    if (!out.includes(u)) out.push(u);
  }
  return out;
}

/** Fetches and checks the current access key of an online key. Throws if nothing usable came. */
export async function resolveOnlineKey(
  uri: string,
  cache: OnlineCache | undefined,
  fetchText: FetchText,
): Promise<Resolved> {
  const k = parseOnlineKeyUri(uri);
  if (k.kind === 'outline') {
    const resolved = outlineDocumentKey(await fetchText(k.url), k.name);
    return {
      resolved,
      note: resolved === cache?.resolved ? 'unchanged' : `new key from ${urlOrigin(k.url)}`,
    };
  }
  const last = keptDocument(cache?.doc, k.publicKey);
  const failures: string[] = [];
  for (const url of mirrorOrder(k.url, last)) {
    let text: string;
    try {
      text = await fetchText(url);
    } catch (err) {
      failures.push(`${urlOrigin(url)}: ${(err as Error).message.replace(/^online key: /, '')}`);
      continue;
    }
    let body: KeyDocumentBody;
    try {
      body = openKeyDocument(text, k.publicKey);
    } catch (err) {
      failures.push(`${urlOrigin(url)}: ${(err as Error).message}`);
      continue;
    }
    if (last && body.serial < last.serial) {
      failures.push(
        `${urlOrigin(url)}: key document: serial ${body.serial} is older than the kept ${last.serial}, and is not used`,
      );
      continue;
    }
    const resolved = documentAccessKey(body, k.name);
    const note =
      last && body.serial === last.serial
        ? `document ${body.serial} unchanged (${urlOrigin(url)})`
        : `document ${body.serial} from ${urlOrigin(url)}`;
    return { resolved, doc: text, note, body };
  }
  throw new LadderError(
    failures.some((f) => /key document:/.test(f)) ? 'ERR_KEY_DOCUMENT' : 'ERR_ONLINE_KEY',
    `no mirror gave a usable key document: ${failures.join('; ')}`,
  );
}
