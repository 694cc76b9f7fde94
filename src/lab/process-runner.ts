/**
 * Processes the lab's report card and tests start in the namespaces: `runIn` runs a command to its
 * end under a hard timeout; long-running helpers (servers, clients, Tor bridges) are recorded with
 * {@link trackProcess} or {@link atStop} and stopped together by {@link stopTracked}.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { LabPlan } from './topology.js';

/** Runs argv in a namespace with a hard timeout; resolves with status and output. */
export function runIn(
  plan: LabPlan,
  ns: string,
  argv: string[],
  timeoutMs: number,
): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, out });
    });
    child.on('error', () => resolve({ status: null, out }));
  });
}

/** Whether a command is installed in one of the system's binary directories. */
export function hasCommand(name: string): boolean {
  return ['/usr/bin', '/usr/sbin', '/bin', '/usr/local/bin'].some((d) =>
    existsSync(`${d}/${name}`),
  );
}

/** What stops the helpers started so far (Ladder's server and clients, Tor bridges), in order. */
const stops: (() => void)[] = [];

/** Records a helper process, stopped (SIGTERM, by its PID) by {@link stopTracked}. */
export function trackProcess(child: ChildProcess): void {
  stops.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });
}

/** Records how to stop something else a setup started. */
export function atStop(stop: () => void): void {
  stops.push(stop);
}

/** Stops everything recorded so far. */
export function stopTracked(): void {
  for (const stop of stops.splice(0)) stop();
}
