/**
 * The probe run from the control page (`ladder client --ui`): the transport part of `ladder probe`
 * (src/probe) on one key, in this process, with the local resolver of /etc/resolv.conf. Its
 * connections are capped and each step has a timeout, so one run is bounded.
 * @module
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { resolvConfNameserver, udpResolver } from '../probe/dns-client.js';
import { ConnectionBudget, sleep } from '../probe/manners.js';
import { checkTransports } from '../probe/transport-check.js';
import { keyTransports } from '../probe/transports.js';
import { summariseProbe, type ProbeSummary } from '../app/probe-summary.js';
import { DEFAULT_CHECK_URL, DEFAULT_CONTROL_RESOLVER } from './probe-command.js';
import { parseHostPort } from './args.js';

export interface PageProbeOptions {
  /** The plain-HTTP URL each attempt fetches through the tunnel. */
  readonly checkUrl?: string;
  readonly attempts?: number;
  readonly timeoutMs?: number;
}

/** Runs the transport checks of `uri` and summarises them for the page. */
export async function runPageProbe(uri: string, o: PageProbeOptions = {}): Promise<ProbeSummary> {
  const { transports, skipped } = keyTransports(uri);
  if (transports.length === 0)
    throw new ConfigError(
      'ERR_KEY_URI',
      `no transport of the key can be probed${skipped.length ? ` (${skipped.join('; ')})` : ''}`,
    );
  let resolvConf = '';
  try {
    resolvConf = readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    // handled below: no nameserver
  }
  const ns = resolvConfNameserver(resolvConf);
  if (!ns)
    throw new ConfigError(
      'ERR_CONFIG',
      'the probe needs the local resolver, and /etc/resolv.conf names no nameserver',
    );
  const timeoutMs = o.timeoutMs ?? 10_000;
  const checks = await checkTransports(transports, {
    now: () => performance.now(),
    timeoutMs,
    attempts: o.attempts ?? 3,
    backoffBaseMs: 1000,
    sleep: (ms) => sleep(ms),
    resolver: udpResolver(ns),
    dnsGraceMs: Math.min(500, timeoutMs),
    checkUrl: new URL(o.checkUrl ?? DEFAULT_CHECK_URL),
    throughputMaxBytes: 0,
    throughputMaxMs: 0,
    controlResolver: parseHostPort(DEFAULT_CONTROL_RESOLVER, 'control resolver'),
    budget: new ConnectionBudget(100),
  });
  return summariseProbe(checks);
}
