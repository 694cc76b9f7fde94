/**
 * `ladder client --ui <host:port>`: the composition root of the client as an app. Builds the
 * controller (src/app/client-controller.ts) whose dialers the local proxies use, the control page and
 * Clash API server (src/app/ui-server.ts), and how a key becomes dialers (key-dialers.ts, with the
 * routing rules of routing-setup.ts). Kept apart so client-command.ts only calls it.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { LadderError } from '../errors.js';
import {
  ClientController,
  type DialersBuilder,
  type RefreshOptions,
  type Updater,
} from '../app/client-controller.js';
import { UiServer } from '../app/ui-server.js';
import { parseLadderKey } from '../codec/ladder-key.js';
import type { Target } from '../transport/types.js';
import { dialersForKey, type KeyDialerOptions } from './key-dialers.js';
import {
  buildRoutedDialer,
  loadRules,
  type RoutedDialerSetup,
  type RoutingConfig,
} from './routing-setup.js';
import { formatHostPort, parseHostPort } from './args.js';
import { cappedFetch } from '../app/capped-fetch.js';
import { DirectDialer } from '../transport/direct.js';
import { runPageProbe } from './page-probe.js';
import { ladderVersion, runningAsSea } from './version.js';
import type { StreamDialer } from '../transport/types.js';
import {
  applySignedRelease,
  fetchSignedRelease,
  isNewer,
  releaseOrigin,
  type SignedRelease,
} from './client-release-fetch.js';

/** The client's app flags (joined into its parseFlags options). */
export const UI_FLAGS = {
  ui: { type: 'string' },
  'ui-allow-remote': { type: 'boolean' },
  'ui-keys': { type: 'string' },
  'probe-check-url': { type: 'string' },
  'update-exe': { type: 'string' },
} as const;

export const UI_HELP = `control page (docs/client.md):
  --ui <host:port>       a local page and a Clash-compatible API to import keys, connect, choose the
                         transport and watch traffic; prints its URL with a random access token.
                         --server is then optional (the page's keys are used)
  --ui-allow-remote      let --ui listen on an address other than loopback (anyone who can reach it
                         and holds the token controls the client)
  --ui-keys <file>       where the page keeps keys, mode 0600 (default ~/.ladder-client-keys.json)
  --probe-check-url <url>
                         the plain-HTTP URL the page's probe fetches through each transport
                         (default http://example.com/)
  --update-exe <file>    the single-file client the page's update replaces (default: this one,
                         when it runs as one; from npm, the page offers no update to apply)`;

export interface UiConfig {
  readonly at: Target;
  readonly allowRemote: boolean;
  readonly keyFile: string;
  readonly probeCheckUrl?: string;
  readonly updateExe?: string;
}

const isLoopback = (host: string): boolean =>
  host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));

/** Checks the --ui flags (pure). Undefined without --ui. */
export function uiConfig(
  v: {
    ui?: string | undefined;
    'ui-allow-remote'?: boolean | undefined;
    'ui-keys'?: string | undefined;
    'probe-check-url'?: string | undefined;
    'update-exe'?: string | undefined;
  },
  home = homedir(),
): UiConfig | undefined {
  if (v.ui === undefined) {
    const stray = (['ui-allow-remote', 'ui-keys', 'probe-check-url', 'update-exe'] as const).find(
      (f) => v[f] !== undefined,
    );
    if (stray)
      throw new LadderError('ERR_USAGE', `--${stray} takes effect only with --ui <host:port>`);
    return undefined;
  }
  const at = parseHostPort(v.ui, '--ui');
  if (!isLoopback(at.host) && !v['ui-allow-remote'])
    throw new LadderError(
      'ERR_USAGE',
      `--ui ${v.ui.slice(0, 60)} is not a loopback address: the page controls the client and shows where it connects. Use 127.0.0.1:<port>, or add --ui-allow-remote if you mean it`,
    );
  return {
    at,
    allowRemote: v['ui-allow-remote'] === true,
    keyFile: v['ui-keys'] ?? join(home, '.ladder-client-keys.json'),
    ...(v['probe-check-url'] !== undefined
      ? { probeCheckUrl: checkHttpUrl(v['probe-check-url'], '--probe-check-url') }
      : {}),
    ...(v['update-exe'] !== undefined ? { updateExe: v['update-exe'] } : {}),
  };
}

function checkHttpUrl(text: string, flag: string): string {
  let u: URL | undefined;
  try {
    u = new URL(text);
  } catch {
    u = undefined;
  }
  if (u?.protocol !== 'http:')
    throw new LadderError(
      'ERR_USAGE',
      `${flag} '${text.slice(0, 80)}' must be a plain http:// URL`,
    );
  return u.href;
}

function clashType(uri: string): string {
  if (/^trojan:/i.test(uri)) return 'Trojan';
  if (/^ss:/i.test(uri)) return 'Shadowsocks';
  return 'Unknown';
}

/** How a key URI becomes the app's dialers. */
export function appDialersBuilder(
  routing: RoutingConfig | undefined,
  opts: KeyDialerOptions,
  log: (line: string) => void,
  direct?: RoutedDialerSetup['direct'],
): DialersBuilder {
  return (uri, hooks) => {
    const kd = dialersForKey(uri, (to, why) => log(`now using ${to} (${why})`), opts);
    const types = new Map<string, string>();
    if (/^ladder:/i.test(uri.trim()))
      for (const t of parseLadderKey(uri.trim()).transports) {
        const i = t.indexOf('#');
        if (i >= 0) {
          try {
            types.set(decodeURIComponent(t.slice(i + 1)), clashType(t));
          } catch {
            // an undecodable tag is listed without a type
          }
        }
      }
    const transports = [...kd.transports].map(([name, d]) => ({
      name,
      type: types.get(name) ?? clashType(uri.trim()),
      udp: true,
      stream: d.stream,
      packet: d.packet,
    }));
    const over = hooks.over({ stream: kd.stream, packet: kd.packet });
    const base = {
      what: kd.what,
      stream: over.stream,
      packet: over.packet,
      ...(kd.failover ? { current: () => kd.failover!.current } : {}),
      transports,
      skipped: kd.skipped,
      close: () => kd.close(),
    };
    if (!routing) return { ...base, rules: [] };
    const keyed = { ...kd, stream: over.stream, packet: over.packet };
    const routed = buildRoutedDialer(routing, keyed, {
      log,
      ...(direct ? { direct } : {}),
      onDecision: (t, d) =>
        hooks.onRoute(t, {
          rule: d.rule ? d.rule.text : 'MATCH',
          chain:
            d.action.kind === 'direct'
              ? 'DIRECT'
              : d.action.kind === 'reject'
                ? 'REJECT'
                : (d.action.transport ?? 'PROXY'),
        }),
    });
    const rules = loadRules(routing, new Set(kd.transports.keys())).rules.map((r) => {
      const parts = r.text.split(',');
      return {
        type: parts[0] ?? r.text,
        payload: parts.length > 2 ? (parts[1] ?? '') : '',
        proxy: parts[parts.length - 1] ?? '',
      };
    });
    return { ...base, rules, routed: { stream: routed, packet: routed } };
  };
}

export interface ClientApp {
  readonly controller: ClientController;
  /** Starts the page once the proxies listen; prints its URL. */
  start(ports: { socks?: number; http?: number }): Promise<void>;
  close(): Promise<void>;
}

/** The controller of the app, and of `--server <online key>` without --ui (keys in memory). */
function appController(
  o: {
    routing: RoutingConfig | undefined;
    keyOptions: KeyDialerOptions;
    keyFile?: string;
    print: (line: string) => void;
    tun?: { direct: RoutedDialerSetup['direct']; beforeConnect: (uri: string) => void };
    refresh?: RefreshOptions;
    updater?: Updater;
  },
  probeCheckUrl?: string,
): ClientController {
  let controller: ClientController | undefined = undefined;
  const build = appDialersBuilder(
    o.routing,
    o.keyOptions,
    (line) => {
      o.print(`ladder client: ${line}`);
      controller?.logs.log('info', line.replace(/^route .*/, 'route decided'));
    },
    o.tun?.direct,
  );
  controller = new ClientController({
    ...(o.keyFile !== undefined ? { keyFile: o.keyFile } : {}),
    build,
    fetch: async (url, via) =>
      (await cappedFetch(url, { dialer: via ?? new DirectDialer() })).body.toString('utf8'),
    probe: (uri) =>
      runPageProbe(uri, probeCheckUrl !== undefined ? { checkUrl: probeCheckUrl } : {}),
    ...(o.tun ? { beforeConnect: o.tun.beforeConnect } : {}),
    ...(o.refresh ? { refresh: o.refresh } : {}),
    ...(o.updater ? { updater: o.updater } : {}),
  });
  return controller;
}

/** How long the page's update may take to download the client. */
const UPDATE_TIMEOUT_MS = 300_000;

/**
 * The page's updates: each client URL of the key document is checked as `ladder update` checks
 * it (signature, platform, newer version), through the tunnel and then directly; applying
 * replaces `exe` (this single-file client by default) after checking size and SHA-256.
 */
export function releaseUpdater(exe: string | undefined): Updater {
  const attempt = async <T>(
    via: StreamDialer | undefined,
    f: (d: StreamDialer) => Promise<T>,
  ): Promise<T> => {
    if (!via) return f(new DirectDialer());
    try {
      return await f(via);
    } catch {
      return f(new DirectDialer());
    }
  };
  return {
    async check(urls, via) {
      const failures: string[] = [];
      let found = false;
      for (const u of urls) {
        let signed: SignedRelease;
        try {
          signed = await attempt(via, (d) =>
            fetchSignedRelease(u, d, "the key document's client URL"),
          );
        } catch (err) {
          failures.push((err as Error).message);
          continue;
        }
        found = true;
        if (!isNewer(signed.release, ladderVersion())) continue;
        const version = signed.release.version;
        return {
          version,
          size: signed.release.size,
          from: releaseOrigin(signed),
          apply: async (v) => {
            if (!exe)
              throw new LadderError(
                'ERR_USAGE',
                'this ladder runs from npm, not as a single-file client: update it with npm, or start the client with --update-exe <file>',
              );
            await attempt(v, (d) => applySignedRelease(signed, d, exe, UPDATE_TIMEOUT_MS));
            return `client updated to version ${version} (${exe}): restart it to run the new version`;
          },
        };
      }
      if (!found && failures.length > 0)
        throw new LadderError('ERR_KEY_DOCUMENT', failures.join('; '));
      return undefined;
    },
  };
}

/**
 * `ladder client --server <online key>` without --ui: the key is fetched before the proxies start
 * (an error if no fetch succeeds), then fetched again on a schedule and when every transport fails;
 * what happens is printed. Nothing is written to disk: the last good key lives as long as the
 * process.
 */
export async function startOnlineKeyClient(
  uri: string,
  o: {
    routing: RoutingConfig | undefined;
    keyOptions: KeyDialerOptions;
    print: (line: string) => void;
    tun?: { direct: RoutedDialerSetup['direct']; beforeConnect: (uri: string) => void };
    refresh?: RefreshOptions;
  },
): Promise<ClientController> {
  const c = appController(o);
  c.logs.subscribe((line) => {
    if (/^online key|^skipping/.test(line.text)) o.print(`ladder client: ${line.text}`);
  });
  await c.connect(await c.importKey(uri));
  return c;
}

/** Builds the app for `cfg`; `serverKey` (--server), if given, is imported and connected. */
export function buildClientApp(
  cfg: UiConfig,
  o: {
    routing: RoutingConfig | undefined;
    keyOptions: KeyDialerOptions;
    serverKey?: string | undefined;
    print: (line: string) => void;
    /** Under --tun: how DIRECT connections go around the device, and the check of a new key. */
    tun?: { direct: RoutedDialerSetup['direct']; beforeConnect: (uri: string) => void };
  },
): ClientApp {
  const controller = appController(
    {
      ...o,
      keyFile: cfg.keyFile,
      updater: releaseUpdater(cfg.updateExe ?? (runningAsSea() ? process.execPath : undefined)),
    },
    cfg.probeCheckUrl,
  );
  const c = controller;
  let server: UiServer | undefined;
  return {
    controller: c,
    async start(ports) {
      if (o.serverKey) await c.connect(await c.importKey(o.serverKey));
      const token = randomBytes(24).toString('base64url');
      server = new UiServer({
        controller: c,
        token,
        version: ladderVersion(),
        assetsDir: new URL('../../../assets/client-ui/', import.meta.url),
        allowRemote: cfg.allowRemote,
        ports,
      });
      const a = await server.listen(cfg.at.host, cfg.at.port);
      o.print(
        `ladder client: control page at http://${formatHostPort(a.address, a.port)}/#token=${token}`,
      );
      o.print(`ladder client: Clash API on the same port, secret: the token above`);
    },
    async close() {
      c.disconnect();
      await server?.close();
    },
  };
}
