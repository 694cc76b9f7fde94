// `ladder lab run` stopped by a signal mid-run: everything it created goes (root and network
// namespaces needed; skipped with the reason otherwise). Lives under this file's own prefix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CLI_PATH, destroyLab } from '../../src/lab/lab.js';
import { labNamespaces, labUnavailable, namespacePids, planLab } from '../../src/lab/topology.js';

const why = labUnavailable();
const base = process.env.LADDER_LAB_TEST_PREFIX ?? 'lab1-';
const plan = planLab(`${base.slice(0, -1).slice(0, 7)}8-`);
const TEST_TIMEOUT_MS = 120_000;

/** A process by PID and start time (field 22 of /proc/PID/stat), so a reused PID is not it. */
interface Proc {
  pid: number;
  start: string | undefined;
}

function stat(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after "pid (comm) ": state is field 3, start time field 22
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

const proc = (pid: number): Proc => ({ pid, start: stat(pid)?.[19] });

/** Whether the process still runs (a zombie waiting to be reaped does not; nor a reused PID). */
function running(p: Proc): boolean {
  const f = stat(p.pid);
  return f !== undefined && f[0] !== 'Z' && f[19] === p.start;
}

test(
  'lab run: SIGINT mid-run removes the namespaces and the processes in them, and exits 130',
  { skip: why ?? false, timeout: TEST_TIMEOUT_MS },
  async (t) => {
    destroyLab(plan); // a crashed earlier run
    t.after(() => destroyLab(plan));
    const child = spawn(
      process.execPath,
      [CLI_PATH, 'lab', 'run', '--prefix', plan.prefix, '--n', '200', '--only', 'ladder-ss'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // 'close', not 'exit': 'exit' can come before the last of stdout and stderr has been read
    const exited = new Promise<number | string>((r) =>
      child.once('close', (code, signal) => r(code ?? signal ?? 'unknown')),
    );
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    // The header line is printed once the lab is up; the first cell runs right after it. Each
    // wait below ends on its event; the deadline is only the test's own time limit.
    const deadline = Date.now() + TEST_TIMEOUT_MS;
    while (!out.includes('report card:') && Date.now() < deadline && child.exitCode === null)
      await new Promise((r) => setTimeout(r, 100));
    assert.match(out, /report card:/, out);
    // Into the first cell: wait until the transport's own process (the ladder client, the only
    // kind of process the client namespace holds) runs, so that the SIGINT meets the lab's
    // services, the Ladder servers and the client. Bounded, and it ends early if `lab run` exits.
    while (
      namespacePids(plan.ns.client).length === 0 &&
      Date.now() < deadline &&
      child.exitCode === null
    )
      await new Promise((r) => setTimeout(r, 100));
    const inside = labNamespaces(plan.prefix).flatMap((n) => namespacePids(n).map(proc));
    assert.ok(namespacePids(plan.ns.client).length > 0, `the transport's client runs:\n${out}`);
    assert.ok(inside.length > 0, `services run in the lab namespaces:\n${out}`);

    child.kill('SIGINT');
    assert.equal(await exited, 130, out);
    assert.match(out, /stopped by SIGINT; lab removed/);
    assert.deepEqual(labNamespaces(plan.prefix), []);
    // They were sent SIGTERM, then SIGKILL after 3 s (destroyLab): wait until each has exited.
    while (inside.some(running) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(inside.filter(running), [], 'processes from the lab still run');
  },
);
