/**
 * What a TLS port shows to anyone without a key: a web site. The bytes a client already sent (which
 * failed to be a Trojan request) are given back to the site intact, so the site answers exactly what
 * it would have answered had it received the connection directly (trojan-gfw's fallback design).
 *
 * Two kinds: the built-in site (or a directory of the operator's files), answered as Debian's nginx
 * answers (nginx-responder.ts); or a forward to another address (a real web server), byte for byte.
 * @module
 */
import { statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { DECOY_PAGES } from './pages.js';
import {
  directoryLookup,
  NGINX_DEFAULTS,
  NginxConnection,
  type Lookup,
  type NginxBehaviour,
  type SiteLookup,
} from './nginx-responder.js';
import { mimeType } from './nginx-pages.js';
import { relay } from '../../transport/relay.js';
import { endedReplay } from '../../stream/ended-replay.js';
import type { StreamDialer, Target } from '../../transport/types.js';
import { settlePreAuth } from '../pre-auth.js';

/** Takes over a connection whose first bytes (`head`) were already read. */
export interface Fallback {
  handle(conn: Duplex, head: Buffer): void;
  /**
   * Answers plain HTTP sent to a TLS port as the imitated web server does (nginx: its 497 page);
   * absent where there is no such answer to give (a forward to another web server).
   */
  readonly handlePlainOnTlsPort?: ((conn: Duplex, head: Buffer) => void) | undefined;
  close(): void;
}

export interface DecoySiteOptions extends Partial<NginxBehaviour> {
  /** Serve the files under this directory instead of the built-in pages. */
  dir?: string;
  /** Modification time of the built-in pages (default: the installed pages module's, `builtinPagesMtimeMs`). */
  builtinMtimeMs?: number;
  /** Wall clock for the Date header (default Date.now). */
  now?: () => number;
  /** Called when a complete request head has arrived on a connection. */
  onRequest?: (conn: Duplex) => void;
  /**
   * Files served at secret paths (`ladder server --publish`): a signed key document, a client
   * release. Read at each request, so publishing again needs no restart.
   */
  published?: ReadonlyMap<string, string>;
}

/** The built-in decoy pages, or the files under `dir` when given, served as nginx serves them. */
export class DecoySite implements Fallback {
  readonly #behaviour: NginxBehaviour;
  readonly #lookup: SiteLookup;
  readonly #now: () => number;
  readonly #onRequest: ((conn: Duplex) => void) | undefined;
  readonly #open = new Set<NginxConnection>();
  #boundary = 0;

  constructor(options: DecoySiteOptions = {}) {
    const { dir, builtinMtimeMs, now, onRequest, published, ...behaviour } = options;
    this.#behaviour = { ...NGINX_DEFAULTS, ...stripUndefined(behaviour) };
    this.#now = now ?? Date.now;
    // A whole request head arrived: the connection is a web client's now, out of the pre-auth deadline.
    this.#onRequest = (conn) => {
      settlePreAuth(conn);
      onRequest?.(conn);
    };
    const site =
      dir !== undefined
        ? directoryLookup(dir)
        : builtinLookup(builtinMtimeMs ?? builtinPagesMtimeMs());
    this.#lookup = published && published.size > 0 ? publishedLookup(site, published) : site;
  }

  handle(conn: Duplex, head: Buffer): void {
    this.#serve(conn, head, false);
  }

  /** A plain HTTP connection to a TLS port, answered as nginx answers one (its 497 page). */
  readonly handlePlainOnTlsPort = (conn: Duplex, head: Buffer): void =>
    this.#serve(conn, head, true);

  #serve(conn: Duplex, head: Buffer, plainOnTlsPort: boolean): void {
    const ended = conn.readableEnded;
    const c: NginxConnection = new NginxConnection(conn, head, ended, {
      plainOnTlsPort,
      behaviour: this.#behaviour,
      lookup: this.#lookup,
      now: this.#now,
      nextBoundary: () => ++this.#boundary,
      onRequest: this.#onRequest,
      onClose: () => this.#open.delete(c),
    });
    if (!conn.destroyed) this.#open.add(c);
  }

  close(): void {
    for (const c of [...this.#open]) c.destroy();
    this.#open.clear();
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

let installedMtimeMs: number | undefined;

/**
 * The built-in pages' modification time: that of the installed module they come from (pages.js),
 * read once per process. Every process of one installation then sends the same Last-Modified and
 * ETag, as two nginx serving the same files do; a fresh install or upgrade moves it, as copying new
 * files would. Where the module has no file to stat (a bundle), the time of the first call.
 */
export function builtinPagesMtimeMs(): number {
  if (installedMtimeMs === undefined) {
    try {
      installedMtimeMs = statSync(new URL('./pages.js', import.meta.url)).mtimeMs;
    } catch {
      installedMtimeMs = Date.now();
    }
  }
  return installedMtimeMs;
}

function builtinLookup(mtimeMs: number): SiteLookup {
  const files = new Map<string, Buffer>();
  for (const [path, page] of DECOY_PAGES) files.set(path, Buffer.from(page.body));
  return (path: string): Promise<Lookup> => {
    if (path === '/') return Promise.resolve({ kind: 'dir' });
    const body = files.get(path);
    if (!body) return Promise.resolve({ kind: 'none' });
    return Promise.resolve({
      kind: 'file',
      file: { size: body.length, mtimeMs, type: mimeType(path), body },
    });
  };
}

/** `site`, with the files of `published` at their paths (a missing file answers as none). */
export function publishedLookup(
  site: SiteLookup,
  published: ReadonlyMap<string, string>,
): SiteLookup {
  return async (path: string): Promise<Lookup> => {
    const file = published.get(path);
    if (file === undefined) return site(path);
    try {
      const st = await stat(file);
      if (!st.isFile()) return { kind: 'none' };
      return {
        kind: 'file',
        file: { size: st.size, mtimeMs: st.mtimeMs, type: 'application/octet-stream', path: file },
      };
    } catch {
      return { kind: 'none' };
    }
  };
}

/** Forwards the connection, first bytes included, to another web server. */
export class ForwardFallback implements Fallback {
  readonly #target: Target;
  readonly #dialer: StreamDialer;

  constructor(target: Target, dialer: StreamDialer) {
    this.#target = target;
    this.#dialer = dialer;
  }

  handle(conn: Duplex, head: Buffer): void {
    // A peer that already ended: the web server gets the bytes and the end, as it would.
    const from = conn.readableEnded ? endedReplay(conn, Buffer.alloc(0)) : conn;
    from.pause();
    this.#dialer.dial(this.#target).then(
      (up) => {
        if (head.length > 0) up.write(head);
        from.resume();
        // The web server's first answer byte means it took a request: the pre-auth deadline ends.
        let answered = false;
        void relay(from, up, {
          idleTimeoutMs: 120_000,
          onBToA: () => {
            if (answered) return;
            answered = true;
            settlePreAuth(conn);
          },
        });
      },
      () => conn.destroy(),
    );
  }

  close(): void {}
}
