/**
 * Bringing the lab up and down: topology (topology.ts), the lab CA and site certificate, the
 * services in abroad and domestic, and the censor in the wall. Every process is started with
 * `ip netns exec`, its PID recorded in the state directory; `down` kills exactly the processes in
 * the lab's namespaces.
 * @module
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { issueCertificate } from '../server/certificates.js';
import { LadderError } from '../errors.js';
import type { Policy } from './policy.js';
import {
  createTopology,
  destroyLab,
  labNamespaces,
  namespacePids,
  type LabPlan,
  type Role,
} from './topology.js';

/** The CLI entry, relative to this compiled file (src/lab → src/cli). */
/**
 * The `ladder` command the lab measures (its subject: servers and clients under test). The lab's
 * own programs run from {@link AGENT_PATH} instead.
 */
export const CLI_PATH = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** The lab's agents (services, censor, test connections): src/lab/agent-main.ts. */
export const AGENT_PATH = fileURLToPath(new URL('./agent-main.js', import.meta.url));

export function caPath(plan: LabPlan): string {
  return join(plan.stateDir, 'ca.pem');
}

/** Issues the lab CA and one certificate for the abroad sites, into the state directory. */
export function issueLabCertificates(plan: LabPlan): void {
  const ca = issueCertificate({
    commonName: `Ladder lab CA (${plan.prefix})`,
    isCA: true,
    serial: randomBytes(16),
    days: 30,
  });
  // The sites' chain has the shape and size of a public web site's (leaf and two intermediates,
  // RSA, about 3 KB of certificates, as Let's Encrypt's leaf + R3 + cross-signed ISRG Root X1 was):
  // size-based heuristics (§14) must see inner handshakes of realistic size.
  const outer = issueCertificate({
    commonName: `Ladder lab Root X1 (${plan.prefix})`,
    isCA: true,
    issuer: { cert: ca.cert, key: ca.keyObject },
    serial: randomBytes(16),
    days: 30,
    rsaBits: 4096,
  });
  const inner = issueCertificate({
    commonName: `Ladder lab R3 (${plan.prefix})`,
    isCA: true,
    issuer: { cert: outer.cert, key: outer.keyObject },
    serial: randomBytes(16),
    days: 30,
    rsaBits: 2048,
  });
  const site = issueCertificate({
    commonName: plan.names.blocked,
    altNames: [plan.names.blocked, plan.names.allowed, plan.addr.blockedIp, plan.addr.allowedIp],
    issuer: { cert: inner.cert, key: inner.keyObject },
    serial: randomBytes(16),
    days: 30,
    rsaBits: 2048,
  });
  // Ladder's TLS transports in abroad: their own name (not on any blocklist) and address.
  const ladder = issueCertificate({
    commonName: LADDER_NAME,
    altNames: [LADDER_NAME, plan.addr.ladderIp],
    issuer: { cert: ca.cert, key: ca.keyObject },
    serial: randomBytes(16),
    days: 30,
  });
  writeFileSync(caPath(plan), ca.cert);
  writeFileSync(join(plan.stateDir, 'site-cert.pem'), site.cert + inner.cert + outer.cert);
  writeFileSync(join(plan.stateDir, 'site-key.pem'), site.key, { mode: 0o600 });
  writeFileSync(join(plan.stateDir, 'ladder-cert.pem'), ladder.cert);
  writeFileSync(join(plan.stateDir, 'ladder-key.pem'), ladder.key, { mode: 0o600 });
}

/** The name of the Ladder server in the lab's zone (services.ts) and on its certificate. */
export const LADDER_NAME = 'ladder.lab';

/** Starts `argv` inside a lab namespace, detached, output to `<stateDir>/<name>.log`. */
export function spawnInNamespace(
  plan: LabPlan,
  role: Role,
  name: string,
  argv: string[],
): ChildProcess {
  const log = openSync(join(plan.stateDir, `${name}.log`), 'a');
  try {
    const child = spawn('ip', ['netns', 'exec', plan.ns[role], ...argv], {
      stdio: ['ignore', log, log],
      detached: true,
    });
    child.unref();
    if (child.pid !== undefined)
      writeFileSync(join(plan.stateDir, `${name}.pid`), String(child.pid));
    return child;
  } finally {
    closeSync(log);
  }
}

/** Waits until `<name>.log` shows a line matching `ready`, or the process exits, or time runs out. */
export async function waitForLog(
  plan: LabPlan,
  name: string,
  child: ChildProcess,
  ready: RegExp,
  timeoutMs = 15_000,
): Promise<void> {
  const file = join(plan.stateDir, `${name}.log`);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if (ready.test(text)) return;
    if (child.exitCode !== null || child.signalCode !== null)
      throw new LadderError('ERR_LAB', `${name} exited before it was ready:\n${text.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new LadderError('ERR_LAB', `${name} not ready after ${timeoutMs} ms`);
}

/** The command line that runs one of the lab's agents (src/lab/agents.ts). */
export function agentArgv(agent: string, ...args: string[]): string[] {
  return [process.execPath, AGENT_PATH, agent, ...args];
}

export interface UpOptions {
  /** Policy for the censor; undefined starts no censor (the wall then forwards nothing). */
  readonly policy?: Policy;
}

/** Builds the lab and starts its services (and the censor, if a policy is given). */
export async function labUp(plan: LabPlan, options: UpOptions = {}): Promise<void> {
  createTopology(plan);
  try {
    issueLabCertificates(plan);
    const services: Promise<void>[] = [];
    for (const role of ['abroad', 'domestic'] as const) {
      const name = `services-${role}`;
      const child = spawnInNamespace(
        plan,
        role,
        name,
        agentArgv('serve', '--prefix', plan.prefix, '--role', role),
      );
      services.push(waitForLog(plan, name, child, /listening/));
    }
    await Promise.all(services);
    if (options.policy) await startCensor(plan, options.policy);
  } catch (err) {
    destroyLab(plan);
    throw err;
  }
}

export function eventsPath(plan: LabPlan): string {
  return join(plan.stateDir, 'events.jsonl');
}

/** Starts the censor in the wall with `policy` (stopping one that runs); resolves once it reads. */
export async function startCensor(plan: LabPlan, policy: Policy): Promise<void> {
  stopCensor(plan);
  const file = join(plan.stateDir, 'policy.json');
  writeFileSync(file, JSON.stringify(policy, null, 2));
  writeFileSync(join(plan.stateDir, 'censor.log'), '');
  const child = spawnInNamespace(
    plan,
    'wall',
    'censor',
    agentArgv('censor', '--prefix', plan.prefix, '--policy', file, '--events', eventsPath(plan)),
  );
  await waitForLog(plan, 'censor', child, /listening/);
}

/**
 * Stops the censor this lab started (by its recorded PID, checked to be in the wall namespace):
 * SIGTERM, then SIGKILL if it has not exited within `graceMs`. On SIGTERM the censor closes its
 * modules, which write what they still hold (tls-in-tls's open flows) before it exits; a caller
 * that reads those waits with a long `graceMs`. Returns false when the censor had to be killed
 * (its close-time events may be missing), true otherwise.
 */
export function stopCensor(plan: LabPlan, graceMs = 3000): boolean {
  const pidFile = join(plan.stateDir, 'censor.pid');
  if (!existsSync(pidFile)) return true;
  const pid = Number(readFileSync(pidFile, 'utf8'));
  let clean = true;
  if (Number.isInteger(pid) && namespacePids(plan.ns.wall).includes(pid)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
    const deadline = Date.now() + graceMs;
    while (namespacePids(plan.ns.wall).includes(pid) && Date.now() < deadline)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    if (namespacePids(plan.ns.wall).includes(pid)) {
      clean = false;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  spawnSync('rm', ['-f', pidFile]);
  return clean;
}

/** Runs a command in a lab namespace, inheriting stdio; returns its exit status. */
export function labExec(plan: LabPlan, role: Role, argv: string[], timeoutMs?: number): number {
  if (!labNamespaces(plan.prefix).includes(plan.ns[role]))
    throw new LadderError(
      'ERR_LAB',
      `namespace ${plan.ns[role]} does not exist; run 'ladder lab up' first`,
    );
  const r = spawnSync('ip', ['netns', 'exec', plan.ns[role], ...argv], {
    stdio: 'inherit',
    timeout: timeoutMs,
  });
  if (r.error)
    throw new LadderError('ERR_LAB', `exec in ${plan.ns[role]}: ${r.error.message}`, {
      cause: r.error,
    });
  return r.status ?? 1;
}

/** One-line status per namespace and process. */
export function labStatus(plan: LabPlan): string[] {
  const present = labNamespaces(plan.prefix);
  if (present.length === 0) return [`lab '${plan.prefix}': down`];
  const lines = [`lab '${plan.prefix}': up (${present.join(', ')}), state in ${plan.stateDir}`];
  for (const n of present) lines.push(`  ${n}: ${namespacePids(n).length} process(es)`);
  const policy = join(plan.stateDir, 'policy.json');
  if (existsSync(policy)) {
    const p = JSON.parse(readFileSync(policy, 'utf8')) as Policy;
    lines.push(
      `  censor modules: ${Object.keys(p.modules).join(', ') || '(none: forwarding only)'}`,
    );
  }
  return lines;
}

export { destroyLab };
