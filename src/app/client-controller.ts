/**
 * The state behind the client's control page and Clash API: the keys kept on disk, the key in use
 * (connected or not), the transport chosen by hand or `auto`, and the dialers the local proxies use.
 * The proxies keep running while disconnected; their connections then fail with a message saying
 * to connect. How a key URI becomes dialers is passed in from cli/ (the composition root).
 * @module
 */
import type { Duplex } from 'node:stream';
import { DialError, LadderError } from '../errors.js';
import type { PacketDialer, PacketSession, StreamDialer, Target } from '../transport/types.js';
import { ConnectionTable, type RouteNote } from './connection-table.js';
import { LogHub } from './log-hub.js';
import {
  readKeyFile,
  withKey,
  writeKeyFile,
  type KeyFileContent,
  type StoredKey,
} from './key-file.js';
import { AUTO, type ClashProxy } from './clash-api.js';
import { isOnlineKeyUri, parseOnlineKeyUri } from '../codec/online-key.js';
import { resolveOnlineKey, type Resolved } from './online-keys.js';
import type { ProbeSummary } from './probe-summary.js';
import { systemClock, type Clock } from '../core/clock.js';

/** One transport of a key, for showing and for choosing by hand. */
export interface AppTransport extends ClashProxy {
  readonly stream: StreamDialer;
  readonly packet: PacketDialer;
}

/** What a key URI becomes: built by cli/ (key-dialers.ts, routing-setup.ts). */
export interface AppDialers {
  /** For people: where and how. */
  readonly what: string;
  /** The key's own choice (a ladder:// key's failover), used when the selection is `auto`. */
  readonly stream: StreamDialer;
  readonly packet: PacketDialer;
  /** The transport in use under `auto`, if the key has several. */
  current?(): string;
  readonly transports: readonly AppTransport[];
  readonly skipped: readonly string[];
  readonly rules: readonly { type: string; payload: string; proxy: string }[];
  /** Closes the connections its dialers opened ahead; called once they are no longer in use. */
  close?(): void;
}

/**
 * Builds a key's dialers. `over` is the dialer for the tunnel that routing rules send PROXY to; the
 * builder reports each connection's rule through `onRoute`.
 */
export type DialersBuilder = (
  uri: string,
  hooks: {
    over: (own: { stream: StreamDialer; packet: PacketDialer }) => {
      stream: StreamDialer;
      packet: PacketDialer;
    };
    onRoute: (target: Target, note: RouteNote) => void;
  },
) => AppDialers & { routed?: { stream: StreamDialer; packet: PacketDialer } };

/** Fetches a URL's text with caps; `via` is the tunnel when one is up (cli/: capped-fetch.ts). */
export type OnlineFetch = (url: string, via: StreamDialer | undefined) => Promise<string>;

/** The probe as the page shows it: running, or its last result or failure. */
export interface ProbeState {
  readonly running: boolean;
  readonly key?: string;
  readonly summary?: ProbeSummary;
  readonly error?: string;
}

/** The last refresh of the connected online key. */
export interface RefreshState {
  /** When it ended (ISO 8601). */
  readonly at: string;
  readonly ok: boolean;
  /** What came of it: unchanged, a new key applied, or why the old key is kept. */
  readonly note: string;
}

/** A newer client release the operator signed, for this platform. */
export interface ClientUpdate {
  readonly version: string;
  readonly size: number;
  /** Where it is served (scheme and host), for people. */
  readonly from: string;
}

/** Finds and applies client releases (cli/: client-release-fetch.ts, the checks of `ladder update`). */
export interface Updater {
  /** The first of `urls` that serves a validly signed release newer than this client, if any. */
  check(
    urls: readonly string[],
    via: StreamDialer | undefined,
  ): Promise<
    | (ClientUpdate & { readonly apply: (via: StreamDialer | undefined) => Promise<string> })
    | undefined
  >;
}

/** The page's view of client updates. */
export interface UpdateState {
  /** Where the operator serves the single-file client (from the key document), for other devices. */
  readonly clientUrls: readonly string[];
  readonly available?: ClientUpdate;
  readonly applying: boolean;
  /** What the last apply did, or why it failed. */
  readonly done?: string;
  readonly error?: string;
}

/** How an online key in use is fetched again (docs/client.md, "Online keys"). */
export interface RefreshOptions {
  /** Fetch again this long after each connect or refresh. */
  readonly everyMs: number;
  /** After a dial fails on every transport, fetch again at once, but not within this long of the last. */
  readonly minGapMs: number;
  readonly clock?: Clock;
}

/** Hours between refreshes of an online key by default: Outline's client fetches at each connect. */
export const DEFAULT_REFRESH: RefreshOptions = { everyMs: 60 * 60_000, minGapMs: 60_000 };

export interface ControllerState {
  readonly connected: boolean;
  readonly probe: ProbeState;
  /** The last refresh of the connected online key, if one ran. */
  readonly refresh?: RefreshState;
  readonly update: UpdateState;
  /** Names of the keys that are online keys (fetched at each connect). */
  readonly online: readonly string[];
  readonly key?: string;
  readonly what?: string;
  readonly selected: string;
  readonly current?: string;
  readonly transports: readonly { name: string; type: string }[];
  readonly keys: readonly string[];
  readonly totals: { upload: number; download: number };
  readonly connections: readonly {
    id: string;
    destination: string;
    rule: string;
    chain: string;
    upload: number;
    download: number;
    start: string;
  }[];
}

/** A name for a pasted key: its #fragment, or "key N". */
export function keyNameOf(uri: string, taken: readonly string[]): string {
  const i = uri.indexOf('#');
  let name = '';
  if (i >= 0) {
    try {
      name = decodeURIComponent(uri.slice(i + 1)).trim();
    } catch {
      name = '';
    }
  }
  name = [...name]
    .filter((ch) => ch >= ' ')
    .join('')
    .slice(0, 64);
  if (!name) for (let n = 1; !name || taken.includes(name); n++) name = `key ${n}`;
  return name;
}

export class ClientController {
  readonly connections = new ConnectionTable();
  readonly logs = new LogHub();
  readonly #keyFile: string | undefined;
  readonly #build: DialersBuilder;
  readonly #beforeConnect: ((uri: string) => void) | undefined;
  #content: KeyFileContent;
  #active:
    | (AppDialers & {
        key: string;
        /** The access key the dialers were built from (an online key's current one). */
        uri: string;
        routed?: { stream: StreamDialer; packet: PacketDialer };
      })
    | null = null;
  /** Grows with each connect and disconnect, so a refresh that ends after one is dropped. */
  #generation = 0;
  readonly #refresh: RefreshOptions;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  #refreshing: Promise<RefreshState> | undefined;
  #refreshState: RefreshState | undefined;
  #lastRefreshAt = Number.NEGATIVE_INFINITY;
  readonly #updater: Updater | undefined;
  #update: UpdateState = { clientUrls: [], applying: false };
  #offer: ((via: StreamDialer | undefined) => Promise<string>) | undefined;
  /** The client URLs last checked, so one document is checked once. */
  #checkedUrls = '';
  /** When each online key was last fetched: a connect right after an import does not fetch again. */
  readonly #fetchedAt = new Map<string, number>();
  #selected = AUTO;
  readonly #routes = new WeakMap<Target, RouteNote>();
  readonly #fetch: OnlineFetch | undefined;
  readonly #probe: ((uri: string) => Promise<ProbeSummary>) | undefined;
  #probeState: ProbeState = { running: false };

  /**
   * `beforeConnect` may refuse a key by throwing (under --tun: a server it cannot route around).
   * Without `keyFile` the keys are kept in memory only.
   */
  constructor(o: {
    keyFile?: string;
    build: DialersBuilder;
    /** How online keys are fetched; without it they are refused. */
    fetch?: OnlineFetch;
    /** Runs the probe on an access key; without it the page cannot run one. */
    probe?: (uri: string) => Promise<ProbeSummary>;
    beforeConnect?: (uri: string) => void;
    /** When a connected online key is fetched again (default {@link DEFAULT_REFRESH}). */
    refresh?: RefreshOptions;
    /** Checks the client releases a key document names; without it none is offered. */
    updater?: Updater;
  }) {
    this.#updater = o.updater;
    this.#keyFile = o.keyFile;
    this.#build = o.build;
    this.#fetch = o.fetch;
    this.#probe = o.probe;
    this.#beforeConnect = o.beforeConnect;
    this.#refresh = o.refresh ?? DEFAULT_REFRESH;
    this.#content = o.keyFile !== undefined ? readKeyFile(o.keyFile) : { keys: [] };
  }

  #save(): void {
    if (this.#keyFile !== undefined) writeKeyFile(this.#keyFile, this.#content);
  }

  /** The dialer the local proxies use (records each connection for the page). */
  readonly dialer: StreamDialer = this.connections.wrap(
    { dial: (t, signal) => this.#dial(t, signal) },
    (t) => this.#routes.get(t),
  );

  readonly packetDialer: PacketDialer = {
    open: (onPacket) => {
      const a = this.#active;
      if (!a) return { send: () => {}, close: () => {} } satisfies PacketSession;
      return (a.routed ?? this.#tunnel(a)).packet.open(onPacket);
    },
  };

  #chosen(own: { stream: StreamDialer; packet: PacketDialer }): {
    stream: StreamDialer;
    packet: PacketDialer;
  } {
    if (this.#selected === AUTO) return own;
    return this.#active?.transports.find((t) => t.name === this.#selected) ?? own;
  }

  #tunnel(a: AppDialers): { stream: StreamDialer; packet: PacketDialer } {
    if (this.#selected === AUTO) return a;
    return a.transports.find((t) => t.name === this.#selected) ?? a;
  }

  #dial(target: Target, signal?: AbortSignal): Promise<Duplex> {
    const a = this.#active;
    if (!a)
      return Promise.reject(
        new DialError('ERR_DIAL', 'the client is disconnected: connect in the control page'),
      );
    const dialing = (a.routed ?? this.#tunnel(a)).stream.dial(target, signal);
    if (!isOnlineKeyUri(this.#storedKey(a.key)?.uri ?? '')) return dialing;
    return dialing.catch((err: unknown) => {
      // Every transport failed: the operator may have moved the server, so ask the online key.
      if (err instanceof DialError && err.code !== 'ERR_ABORTED' && !signal?.aborted)
        this.#refreshSoon();
      throw err;
    });
  }

  #storedKey(name: string): StoredKey | undefined {
    return this.#content.keys.find((k) => k.name === name);
  }

  get keyFile(): string | undefined {
    return this.#keyFile;
  }

  state(): ControllerState {
    const a = this.#active;
    return {
      connected: a !== null,
      probe: this.#probeState,
      ...(this.#refreshState ? { refresh: this.#refreshState } : {}),
      update: this.#update,
      online: this.#content.keys.filter((k) => isOnlineKeyUri(k.uri)).map((k) => k.name),
      ...(a ? { key: a.key, what: a.what } : {}),
      selected: this.#selected,
      ...(a?.current ? { current: a.current() } : {}),
      transports: a ? a.transports.map((t) => ({ name: t.name, type: t.type })) : [],
      keys: this.#content.keys.map((k) => k.name),
      totals: this.connections.totals,
      connections: this.connections.list().map((c) => ({
        id: c.id,
        destination: c.target.host.includes(':')
          ? `[${c.target.host}]:${c.target.port}`
          : `${c.target.host}:${c.target.port}`,
        rule: c.rule,
        chain: c.chain,
        upload: c.upload,
        download: c.download,
        start: c.start.toISOString(),
      })),
    };
  }

  /**
   * Checks a key by building its dialers, then keeps it (mode 0600) and selects it. An online key is
   * fetched first (through the tunnel if one is up) and its access key checked and kept with it.
   */
  async importKey(uri: string, name?: string): Promise<string> {
    const text = uri.trim();
    let stored: Omit<StoredKey, 'name'> = { uri: text };
    let fallbackName: string | undefined;
    let fetched: string | undefined;
    if (isOnlineKeyUri(text)) {
      const k = parseOnlineKeyUri(text);
      const r = await this.#resolve(text, undefined);
      this.#buildFor(r.resolved);
      stored = { uri: text, resolved: r.resolved, ...(r.doc ? { doc: r.doc } : {}) };
      fetched = r.note;
      fallbackName = k.name ?? r.body?.name;
    } else this.#buildFor(text); // throws a message naming the problem for a key that does not parse
    const taken = this.#content.keys.map((k) => k.name);
    const keyName =
      name?.trim().slice(0, 64) ||
      (fallbackName !== undefined
        ? keyNameOf(`#${encodeURIComponent(fallbackName)}`, taken)
        : isOnlineKeyUri(text)
          ? keyNameOf('', taken)
          : keyNameOf(text, taken));
    this.#content = withKey(this.#content, { name: keyName, ...stored });
    this.#save();
    if (fetched) {
      this.#fetchedAt.set(keyName, this.#now());
      this.logs.log('info', `online key '${keyName}': ${fetched}`);
    }
    this.logs.log('info', `key '${keyName}' imported`);
    return keyName;
  }

  /** Fetches an online key: through the tunnel when connected, then directly if that fails. */
  async #resolve(uri: string, cache: StoredKey | undefined) {
    const fetch = this.#fetch;
    if (!fetch)
      throw new LadderError('ERR_ONLINE_KEY', 'online keys are not enabled in this client');
    const r = await resolveOnlineKey(uri, cache, (url) => this.#fetchText(fetch, url));
    if (r.body?.client) this.#noteClientUrls(r.body.client.urls);
    return r;
  }

  /** Through the tunnel when connected, then directly if that fails. */
  async #fetchText(fetch: OnlineFetch, url: string): Promise<string> {
    const a = this.#active;
    const via = a ? this.#tunnel(a).stream : undefined;
    if (!via) return fetch(url, undefined);
    try {
      return await fetch(url, via);
    } catch {
      return fetch(url, undefined);
    }
  }

  /** A key document named where the client is served: show it, and look for a newer release. */
  #noteClientUrls(urls: readonly string[]): void {
    const list = urls.slice(0, 16);
    this.#update = { ...this.#update, clientUrls: list };
    const updater = this.#updater;
    const key = list.join('\n');
    if (!updater || list.length === 0 || key === this.#checkedUrls || this.#update.applying) return;
    this.#checkedUrls = key;
    const a = this.#active;
    updater.check(list, a ? this.#tunnel(a).stream : undefined).then(
      (found) => {
        if (!found) return;
        const { apply, ...offer } = found;
        this.#offer = apply;
        this.#update = { ...this.#update, available: offer };
        this.logs.log('info', `client version ${offer.version} is available from ${offer.from}`);
      },
      (err: unknown) => {
        this.#checkedUrls = '';
        this.logs.log('warning', `checking for a newer client: ${(err as Error).message}`);
      },
    );
  }

  /**
   * Applies the offered release (state().update.available) with the checks of `ladder update`:
   * through the tunnel when connected. The result is in state().update; the new version runs at
   * the next start.
   */
  async applyUpdate(): Promise<void> {
    const apply = this.#offer;
    const offer = this.#update.available;
    if (!apply || !offer)
      throw new LadderError('ERR_CONFIG', 'no newer client is known: nothing to apply');
    if (this.#update.applying)
      throw new LadderError('ERR_CONFIG', 'the update is already being applied');
    const { done: _done, error: _error, ...rest } = this.#update;
    this.#update = { ...rest, applying: true };
    const a = this.#active;
    try {
      const done = await apply(a ? this.#tunnel(a).stream : undefined);
      this.#offer = undefined;
      const { available: _a, ...left } = this.#update;
      this.#update = { ...left, applying: false, done };
      this.logs.log('info', done);
    } catch (err) {
      this.#update = { ...this.#update, applying: false, error: (err as Error).message };
      this.logs.log('warning', `update: ${(err as Error).message}`);
    }
  }

  /** The access key to connect with: an online key is fetched again, else its last good key. */
  async #currentUri(k: StoredKey): Promise<string> {
    if (!isOnlineKeyUri(k.uri)) return k.uri;
    const at = this.#fetchedAt.get(k.name);
    if (k.resolved && at !== undefined && this.#now() - at < this.#refresh.minGapMs)
      return k.resolved;
    try {
      const r = await this.#resolve(k.uri, k);
      this.#buildFor(r.resolved);
      if (r.resolved !== k.resolved || r.doc !== k.doc) {
        this.#content = withKey(this.#content, {
          name: k.name,
          uri: k.uri,
          resolved: r.resolved,
          ...(r.doc ? { doc: r.doc } : {}),
        });
        this.#save();
      }
      this.#fetchedAt.set(k.name, this.#now());
      this.logs.log('info', `online key '${k.name}': ${r.note}`);
      return r.resolved;
    } catch (err) {
      if (!k.resolved) throw err;
      this.logs.log(
        'warning',
        `online key '${k.name}': ${(err as Error).message}; using the last good key`,
      );
      return k.resolved;
    }
  }

  #buildFor(uri: string) {
    return this.#build(uri, {
      // PROXY of the routing rules goes through the transport chosen by hand, or the key's own.
      over: (own) => ({
        stream: { dial: (t, signal) => this.#chosen(own).stream.dial(t, signal) },
        packet: { open: (onPacket) => this.#chosen(own).packet.open(onPacket) },
      }),
      onRoute: (t, note) => this.#routes.set(t, note),
    });
  }

  /** Connects with the named key (default: the selected one); an online key is fetched first. */
  async connect(name?: string): Promise<void> {
    const keyName = name ?? this.#content.selected ?? this.#content.keys[0]?.name;
    const k = this.#content.keys.find((x) => x.name === keyName);
    if (!k)
      throw new LadderError(
        'ERR_CONFIG',
        keyName ? `no key named '${keyName.slice(0, 64)}'` : 'no key yet: import one first',
      );
    const uri = await this.#currentUri(k);
    const built = this.#buildFor(uri);
    this.#beforeConnect?.(uri);
    this.connections.closeAll();
    this.#generation++;
    this.#active?.close?.();
    this.#active = { ...built, key: k.name, uri };
    this.#selected = AUTO;
    this.#refreshState = undefined;
    this.#lastRefreshAt = this.#now();
    for (const s of built.skipped) this.logs.log('warning', `skipping ${s}`);
    this.logs.log('info', `connected with '${k.name}': ${built.what}`);
    this.#armRefresh();
  }

  #now(): number {
    return (this.#refresh.clock ?? systemClock).now();
  }

  /** Schedules the next refresh of the connected key, if it is an online key. */
  #armRefresh(): void {
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = undefined;
    const a = this.#active;
    if (!a || !isOnlineKeyUri(this.#storedKey(a.key)?.uri ?? '')) return;
    this.#refreshTimer = setTimeout(() => void this.refresh(), this.#refresh.everyMs);
    this.#refreshTimer.unref?.();
  }

  /** A refresh now, unless one ran within `minGapMs` or is running. */
  #refreshSoon(): void {
    if (this.#refreshing || this.#now() - this.#lastRefreshAt < this.#refresh.minGapMs) return;
    void this.refresh();
  }

  /**
   * Fetches the connected online key again (through the tunnel, then directly) and, if its access
   * key changed, applies it without dropping anything: open connections stay on the old dialers,
   * new ones use the new key. A failed fetch keeps the current key and says so in the log and in
   * state().refresh. One refresh at a time; a refresh that ends after a connect or disconnect is
   * dropped.
   */
  refresh(): Promise<RefreshState> {
    this.#refreshing ??= this.#doRefresh().finally(() => {
      this.#refreshing = undefined;
      this.#armRefresh();
    });
    return this.#refreshing;
  }

  async #doRefresh(): Promise<RefreshState> {
    const a = this.#active;
    const k = a ? this.#storedKey(a.key) : undefined;
    const generation = this.#generation;
    this.#lastRefreshAt = this.#now();
    const done = (ok: boolean, note: string): RefreshState => {
      const st = { at: new Date(this.#now()).toISOString(), ok, note };
      if (generation === this.#generation) this.#refreshState = st;
      this.logs.log(ok ? 'info' : 'warning', note);
      return st;
    };
    if (!a || !k || !isOnlineKeyUri(k.uri))
      return { at: new Date(this.#now()).toISOString(), ok: true, note: 'no online key in use' };
    let r: Resolved;
    let built: ReturnType<DialersBuilder>;
    try {
      r = await this.#resolve(k.uri, k);
      built = this.#buildFor(r.resolved);
      if (generation === this.#generation && r.resolved !== a.uri)
        this.#beforeConnect?.(r.resolved);
    } catch (err) {
      return done(
        false,
        `online key '${k.name}': refresh failed, keeping the current key: ${(err as Error).message}`,
      );
    }
    if (generation !== this.#generation)
      return done(true, `online key '${k.name}': refreshed after a reconnect, not applied`);
    const kept = this.#storedKey(k.name) ?? k;
    if (r.resolved !== kept.resolved || r.doc !== kept.doc) {
      const fresh = {
        name: k.name,
        uri: k.uri,
        resolved: r.resolved,
        ...(r.doc ? { doc: r.doc } : {}),
      };
      // In place: a refresh does not change which key is selected.
      this.#content = {
        ...this.#content,
        keys: this.#content.keys.map((x) => (x.name === k.name ? fresh : x)),
      };
      this.#save();
    }
    this.#fetchedAt.set(k.name, this.#now());
    if (r.resolved === a.uri) return done(true, `online key '${k.name}': ${r.note}`);
    a.close?.();
    this.#active = { ...built, key: k.name, uri: r.resolved };
    if (!built.transports.some((t) => t.name === this.#selected)) this.#selected = AUTO;
    for (const s of built.skipped) this.logs.log('warning', `skipping ${s}`);
    return done(
      true,
      `online key '${k.name}': ${r.note}; new connections use ${built.what}, open ones stay`,
    );
  }

  /**
   * Starts the probe on the named key (default: the connected or selected one); its progress and
   * result are in state().probe. One run at a time.
   */
  async startProbe(name?: string): Promise<void> {
    const run = this.#probe;
    if (!run) throw new LadderError('ERR_CONFIG', 'the probe is not available in this client');
    if (this.#probeState.running)
      throw new LadderError('ERR_CONFIG', 'the probe is already running');
    const keyName =
      name || this.#active?.key || this.#content.selected || this.#content.keys[0]?.name;
    const k = this.#content.keys.find((x) => x.name === keyName);
    if (!k)
      throw new LadderError(
        'ERR_CONFIG',
        keyName ? `no key named '${keyName.slice(0, 64)}'` : 'no key yet: import one first',
      );
    this.#probeState = { running: true, key: k.name };
    let uri: string;
    try {
      uri = await this.#currentUri(k);
    } catch (err) {
      this.#probeState = { running: false, key: k.name, error: (err as Error).message };
      return;
    }
    this.logs.log('info', `probe of '${k.name}' started`);
    run(uri).then(
      (summary) => {
        this.#probeState = { running: false, key: k.name, summary };
        this.logs.log(
          'info',
          `probe of '${k.name}' done: ${summary.recommended ? `use ${summary.recommended}` : 'no transport got through'}`,
        );
      },
      (err: unknown) => {
        this.#probeState = { running: false, key: k.name, error: (err as Error).message };
        this.logs.log('warning', `probe of '${k.name}' failed: ${(err as Error).message}`);
      },
    );
  }

  disconnect(): void {
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = undefined;
    if (!this.#active) return;
    this.#generation++;
    this.#active.close?.();
    this.#active = null;
    this.connections.closeAll();
    this.logs.log('info', 'disconnected');
  }

  /** Chooses a transport of the connected key by name, or `auto`. */
  select(name: string): void {
    const a = this.#active;
    if (name !== AUTO && !a?.transports.some((t) => t.name === name))
      throw new LadderError(
        'ERR_CONFIG',
        `'${name.slice(0, 64)}' is not a transport of the connected key (use auto or one of: ${a?.transports.map((t) => t.name).join(', ') || 'none'})`,
      );
    this.#selected = name;
    this.logs.log('info', `transport: ${name}`);
  }

  selected(): string {
    return this.#selected;
  }

  active(): AppDialers | null {
    return this.#active;
  }

  /** The access key the connected dialers were built from (an online key's current one). */
  activeUri(): string | undefined {
    return this.#active?.uri;
  }
}
