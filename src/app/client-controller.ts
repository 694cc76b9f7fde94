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
import { readKeyFile, withKey, writeKeyFile, type KeyFileContent } from './key-file.js';
import { AUTO, type ClashProxy } from './clash-api.js';

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

export interface ControllerState {
  readonly connected: boolean;
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
  readonly #keyFile: string;
  readonly #build: DialersBuilder;
  readonly #beforeConnect: ((uri: string) => void) | undefined;
  #content: KeyFileContent;
  #active:
    (AppDialers & { key: string; routed?: { stream: StreamDialer; packet: PacketDialer } }) | null =
    null;
  #selected = AUTO;
  readonly #routes = new WeakMap<Target, RouteNote>();

  /** `beforeConnect` may refuse a key by throwing (under --tun: a server it cannot route around). */
  constructor(o: {
    keyFile: string;
    build: DialersBuilder;
    beforeConnect?: (uri: string) => void;
  }) {
    this.#keyFile = o.keyFile;
    this.#build = o.build;
    this.#beforeConnect = o.beforeConnect;
    this.#content = readKeyFile(o.keyFile);
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
    return (a.routed ?? this.#tunnel(a)).stream.dial(target, signal);
  }

  get keyFile(): string {
    return this.#keyFile;
  }

  state(): ControllerState {
    const a = this.#active;
    return {
      connected: a !== null,
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

  /** Checks a key by building its dialers, then keeps it (mode 0600) and selects it. */
  importKey(uri: string, name?: string): string {
    const text = uri.trim();
    this.#buildFor(text); // throws a message naming the problem for a key that does not parse
    const keyName =
      name?.trim().slice(0, 64) ||
      keyNameOf(
        text,
        this.#content.keys.map((k) => k.name),
      );
    this.#content = withKey(this.#content, { name: keyName, uri: text });
    writeKeyFile(this.#keyFile, this.#content);
    this.logs.log('info', `key '${keyName}' imported`);
    return keyName;
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

  /** Connects with the named key (default: the selected one). */
  connect(name?: string): void {
    const keyName = name ?? this.#content.selected ?? this.#content.keys[0]?.name;
    const k = this.#content.keys.find((x) => x.name === keyName);
    if (!k)
      throw new LadderError(
        'ERR_CONFIG',
        keyName ? `no key named '${keyName.slice(0, 64)}'` : 'no key yet: import one first',
      );
    const built = this.#buildFor(k.uri);
    this.#beforeConnect?.(k.uri);
    this.connections.closeAll();
    this.#active = { ...built, key: k.name };
    this.#selected = AUTO;
    for (const s of built.skipped) this.logs.log('warning', `skipping ${s}`);
    this.logs.log('info', `connected with '${k.name}': ${built.what}`);
  }

  disconnect(): void {
    if (!this.#active) return;
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
}
