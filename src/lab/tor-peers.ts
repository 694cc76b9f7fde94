/**
 * A real Tor bridge in abroad and real Tor clients in client (Debian's `tor`), for the Tor module
 * (docs/censorship-techniques.md §12). Network safety: the lab has no route out, and tor is configured not to try one —
 * the bridge publishes nothing (`PublishServerDescriptor 0`), skips its reachability self-test
 * (`AssumeReachable 1`), listens on its lab address only, and both sides replace the public
 * directory authorities and fallback directories with one lab address where nothing answers
 * (`DirAuthority` … 198.19.2.40:9030, `UseDefaultFallbackDirs 0`); the client uses only the lab's
 * bridge (`UseBridges 1`, `UpdateBridgesFromAuthority 0`, IPv4 only). With no consensus to be had,
 * the client's bootstrap stops after it has fetched the bridge's descriptor (about 30%); reaching
 * 15% ("Handshake with a relay done") means the TLS and link handshake (VERSIONS, CERTS, NETINFO)
 * with the bridge succeeded.
 *
 * Data directories are temporary (mode 0700) and removed by {@link stopTor}; processes are started
 * with spawnInNamespace and stopped by their PID (and die with the lab's namespaces at `down`).
 * @module
 */
import { type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnInNamespace, waitForLog } from './lab.js';
import type { LabPlan } from './topology.js';

export const TOR_OR_PORT = 9001;
/** Where the lab's stand-in directory authority "is": nothing listens there. */
const FAKE_DIR_PORT = 9030;
const FAKE_AUTH_OR_PORT = 9002;
/** 40 hex digits: an identity no real authority has. */
const FAKE_IDENTITY = '0000000000000000000000000000000000000001';
/** Bootstrap percentage once the link handshake with the bridge is done. */
export const TOR_HANDSHAKE_DONE = 15;

export function torUnavailable(): string | undefined {
  return ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(`${d}/tor`))
    ? undefined
    : "Debian's tor is not installed (apt-get install tor)";
}

export interface TorPeer {
  readonly name: string;
  readonly child: ChildProcess;
  readonly dataDir: string;
}

function labAuthority(plan: LabPlan): string {
  return (
    `DirAuthority ladderlab orport=${FAKE_AUTH_OR_PORT} no-v2 v3ident=${FAKE_IDENTITY} ` +
    `${plan.addr.torIp}:${FAKE_DIR_PORT} ${FAKE_IDENTITY}`
  );
}

/** The bridge's torrc (pure). */
export function bridgeTorrc(plan: LabPlan, dataDir: string): string {
  return [
    `DataDirectory ${dataDir}`,
    'BridgeRelay 1',
    `ORPort ${plan.addr.torIp}:${TOR_OR_PORT} IPv4Only`,
    `Address ${plan.addr.torIp}`,
    'AssumeReachable 1',
    'PublishServerDescriptor 0',
    'ExitRelay 0',
    'ExitPolicy reject *:*',
    'SocksPort 0',
    'Nickname ladderlab',
    'ContactInfo ladder-lab',
    labAuthority(plan),
    'UseDefaultFallbackDirs 0',
    'Log notice stdout',
    '',
  ].join('\n');
}

/** A client's torrc (pure): the lab's bridge only, IPv4 only, no SOCKS port needed. */
export function clientTorrc(plan: LabPlan, dataDir: string): string {
  return [
    `DataDirectory ${dataDir}`,
    'UseBridges 1',
    `Bridge ${plan.addr.torIp}:${TOR_OR_PORT}`,
    'UpdateBridgesFromAuthority 0',
    'ClientUseIPv4 1',
    'ClientUseIPv6 0',
    'SocksPort 0',
    labAuthority(plan),
    'UseDefaultFallbackDirs 0',
    'Log notice stdout',
    '',
  ].join('\n');
}

function start(
  plan: LabPlan,
  role: 'abroad' | 'client',
  name: string,
  torrc: (d: string) => string,
) {
  const dataDir = mkdtempSync(join(tmpdir(), `ladder-lab-${name}-`)); // mode 0700
  const file = join(dataDir, 'torrc');
  writeFileSync(file, torrc(join(dataDir, 'data')), { mode: 0o600 });
  const child = spawnInNamespace(plan, role, name, ['tor', '-f', file, '--ignore-missing-torrc']);
  return { name, child, dataDir };
}

/** Starts the bridge in abroad; resolves once its ORPort listens. */
export async function startTorBridge(plan: LabPlan): Promise<TorPeer> {
  const peer = start(plan, 'abroad', 'tor-bridge', (d) => bridgeTorrc(plan, d));
  try {
    await waitForLog(
      plan,
      peer.name,
      peer.child,
      /Opened OR listener connection \(ready\)/,
      30_000,
    );
  } catch (err) {
    stopTor(peer);
    throw err;
  }
  return peer;
}

/** Starts a fresh client (new data directory, so no cached state) in the client namespace. */
export function startTorClient(plan: LabPlan, name = 'tor-client'): TorPeer {
  rmSync(join(plan.stateDir, `${name}.log`), { force: true });
  return start(plan, 'client', name, (d) => clientTorrc(plan, d));
}

/** The highest "Bootstrapped N%" in a tor process's log so far (0 if none). */
export function torBootstrap(plan: LabPlan, name: string): number {
  const file = join(plan.stateDir, `${name}.log`);
  if (!existsSync(file)) return 0;
  let best = 0;
  for (const m of readFileSync(file, 'utf8').matchAll(/Bootstrapped (\d+)%/g))
    best = Math.max(best, Number(m[1]));
  return best;
}

/** Waits until the client's bootstrap reaches `min`% or time runs out; returns the percentage. */
export async function waitForBootstrap(
  plan: LabPlan,
  peer: TorPeer,
  min = TOR_HANDSHAKE_DONE,
  timeoutMs = 20_000,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && torBootstrap(plan, peer.name) < min) {
    if (peer.child.exitCode !== null || peer.child.signalCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return torBootstrap(plan, peer.name);
}

/** Stops a tor process (by its PID) and removes its data directory. */
export function stopTor(peer: TorPeer): void {
  if (peer.child.exitCode === null && peer.child.signalCode === null) peer.child.kill('SIGKILL');
  rmSync(peer.dataDir, { recursive: true, force: true });
}
