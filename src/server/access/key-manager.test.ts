import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyManager, speedShare } from './key-manager.js';
import {
  KeyStore,
  type AccessKeyStore,
  type LocalPresence,
  type RemotePresence,
  type StoreChanges,
} from '../../store/key-store.js';

/** A SQLite store in a temporary directory, with the fleet's optional methods added by `extra`. */
function store(extra: Partial<AccessKeyStore> = {}): {
  s: AccessKeyStore;
  ks: KeyStore;
  remove(): void;
} {
  const dir = mkdtempSync(join(tmpdir(), 'ladder-km-'));
  const ks = KeyStore.open(join(dir, 'd'));
  const o: Record<string, unknown> = { dir: ks.dir };
  for (const name of Object.getOwnPropertyNames(KeyStore.prototype)) {
    const f = (ks as unknown as Record<string, unknown>)[name];
    if (name !== 'constructor' && typeof f === 'function') o[name] = f.bind(ks);
  }
  return {
    s: { ...o, ...extra } as unknown as AccessKeyStore,
    ks,
    remove() {
      ks.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const clock = { now: () => 1_700_000_000_000 };

function manager(s: AccessKeyStore, flushBytes?: number): KeyManager {
  const m = new KeyManager({
    store: s,
    clock,
    onKeysChanged: () => undefined,
    tickMs: 3_600_000,
    flushMs: 3_600_000,
    ...(flushBytes === undefined ? {} : { flushBytes }),
  });
  m.start();
  return m;
}

test('pending usage is written at once when it reaches flushBytes, not only on the timer', () => {
  const { s, ks, remove } = store();
  const m = manager(s, 1000);
  try {
    const k = m.create({ name: 'a' });
    const lease = m.open(k.id, '198.18.0.1', 'tcp')!;
    const stored = (): number =>
      [...(ks.loadUsage(0).get(k.id)?.values() ?? [])].reduce((a, b) => a + b, 0);
    lease.down(600);
    assert.equal(stored(), 0, 'below the threshold: still in memory');
    lease.down(600);
    assert.equal(stored(), 1200, 'at the threshold: flushed in the same call');
    lease.close();
  } finally {
    m.stop();
    remove();
  }
});

test('a device limit counts the devices the fleet reports on other nodes', () => {
  const remote = new Map<string, RemotePresence>();
  const { s, remove } = store({ remotePresence: () => remote });
  const m = manager(s);
  try {
    const k = m.create({ name: 'a', deviceLimit: 2 });
    const a = m.open(k.id, '198.18.0.1', 'tcp');
    assert.ok(a, 'first device');
    remote.set(k.id, { devices: 1, nodes: 1, demandBps: 0 });
    assert.equal(m.open(k.id, '198.18.0.2', 'tcp'), null, 'one here + one elsewhere = the limit');
    assert.ok(m.open(k.id, '198.18.0.1', 'tcp'), 'a device already counted here is let in');
    assert.equal(m.get(k.id).devices, 2, 'the view counts the fleet');
    remote.clear();
    assert.ok(m.open(k.id, '198.18.0.2', 'tcp'), 'the other node let go: room again');
  } finally {
    m.stop();
    remove();
  }
});

test('a speed cap is split evenly with the other nodes while no node has measured its demand', () => {
  const remote = new Map<string, RemotePresence>();
  const { s, remove } = store({ remotePresence: () => remote });
  const m = manager(s);
  try {
    const k = m.create({ name: 'a', speedLimitBps: 100_000 });
    remote.set(k.id, { devices: 1, nodes: 1, demandBps: 0 });
    const lease = m.open(k.id, '198.18.0.1', 'tcp')!;
    // The bucket starts full (64 KiB); 50,000 bytes more at 50,000 B/s is a 1 s wait.
    assert.equal(lease.down(65_536), 0);
    assert.equal(lease.down(50_000), 1000);
    lease.close();
  } finally {
    m.stop();
    remove();
  }
});

test('speedShare: the floor split evenly, the rest by demand; the parts add up to the cap', () => {
  const cap = 100_000;
  assert.equal(speedShare(cap, 5, undefined), cap, 'alone: the whole cap');
  assert.equal(speedShare(cap, 0, { devices: 1, nodes: 1, demandBps: 0 }), cap / 2);
  // Two nodes: 10% of the cap split evenly (5,000 each), 90,000 by demand 90:10.
  const a = speedShare(cap, 90_000, { devices: 1, nodes: 1, demandBps: 10_000 });
  const b = speedShare(cap, 10_000, { devices: 1, nodes: 1, demandBps: 90_000 });
  assert.equal(a, 5_000 + 81_000);
  assert.equal(b, 5_000 + 9_000);
  assert.equal(a + b, cap);
  // Three nodes, one of them idle: it keeps its floor.
  const idle = speedShare(cap, 0, { devices: 2, nodes: 2, demandBps: 200_000 });
  assert.ok(Math.abs(idle - (cap * 0.1) / 3) < 1e-9);
  assert.equal(
    speedShare(cap, undefined, { devices: 1, nodes: 1, demandBps: 100_000 }),
    5_000,
    'not measured yet: the floor, so the fleet never hands out more than the cap',
  );
});

test('a node tells the fleet what it carried, or the whole cap when the cap held it back', () => {
  let now = 1_700_000_000_000;
  const at = { now: () => now };
  let local: ((newPeriod: boolean) => ReadonlyMap<string, LocalPresence>) | null = null;
  const remote = new Map<string, RemotePresence>();
  const { s, remove } = store({
    remotePresence: () => remote,
    setLocalPresence: (f) => {
      local = f;
    },
  });
  const m = new KeyManager({
    store: s,
    clock: at,
    onKeysChanged: () => undefined,
    tickMs: 3_600_000,
    flushMs: 3_600_000,
  });
  m.start();
  try {
    const k = m.create({ name: 'a', speedLimitBps: 100_000 });
    const other = m.create({ name: 'b' });
    const lease = m.open(k.id, '198.18.0.1', 'tcp')!;
    m.open(other.id, '198.18.0.1', 'tcp')!.down(1000);
    remote.set(k.id, { devices: 1, nodes: 1, demandBps: 10_000 });
    // Not measured yet: this node starts at the floor, 5,000 B/s, with a full 64 KiB bucket.
    assert.equal(lease.down(40_000), 0);
    assert.equal(lease.up(20_000), 0, 'each direction has its own bucket');
    now += 2000;
    assert.deepEqual(
      local!(true),
      new Map([[k.id, { devices: 1, demandBps: 20_000 }]]),
      'the busier direction over 2 s; a key without a cap or device limit is not reported',
    );
    // The bucket keeps its 25,536 bytes and what 2 s at 5,000 B/s refilled (it is not a new, full
    // bucket); from now on this node's part is 5,000 + 90,000 × 20,000 / 30,000 = 65,000 B/s.
    assert.equal(lease.down(35_536), 0);
    assert.equal(lease.down(65_000), 1000, 'one second of the new rate: held back');
    now += 1000;
    assert.equal(local!(true).get(k.id)?.demandBps, 100_000, 'held back: asks for the whole cap');
  } finally {
    m.stop();
    remove();
  }
});

test('a new device on a key with a device limit asks the fleet store to write presence soon', () => {
  let soon = 0;
  let local: ((newPeriod: boolean) => ReadonlyMap<string, LocalPresence>) | null = null;
  const { s, remove } = store({
    remotePresence: () => new Map(),
    presenceSoon: () => soon++,
    setLocalPresence: (f) => {
      local = f;
    },
  });
  const m = manager(s);
  try {
    const k = m.create({ name: 'a', deviceLimit: 3, speedLimitBps: 1_000_000 });
    const free = m.create({ name: 'b' });
    const a = m.open(k.id, '198.18.0.1', 'tcp')!;
    assert.equal(soon, 1, 'a new device');
    m.open(k.id, '198.18.0.1', 'tcp');
    assert.equal(soon, 1, 'the same device again');
    m.open(free.id, '198.18.0.2', 'tcp');
    assert.equal(soon, 1, 'a key without a device limit');
    m.open(k.id, '198.18.0.2', 'tcp');
    assert.equal(soon, 2, 'another device');
    a.down(1000);
    // Between syncs the write repeats the demand last measured and leaves the period running.
    assert.equal(local!(false).get(k.id)?.devices, 2);
    assert.equal(local!(false).get(k.id)?.demandBps, 0);
    assert.ok(local!(true).get(k.id)!.demandBps > 0, 'the bytes are still in the period');
  } finally {
    m.stop();
    remove();
  }
});

test('with takeChanges, only the keys the store names are read again', () => {
  let changes: StoreChanges | null = null;
  const { s, ks, remove } = store({
    takeChanges: () => {
      const c = changes;
      changes = null;
      return c;
    },
    loadUsageOf: (ids, fromDay) => {
      const all = ks.loadUsage(fromDay);
      return new Map([...ids].filter((id) => all.has(id)).map((id) => [id, all.get(id)!]));
    },
  });
  const m = manager(s);
  const other = KeyStore.open(ks.dir);
  try {
    const a = m.create({ name: 'a' });
    const b = m.create({ name: 'b' });
    // Another connection changes both; the store reports only a.
    other.updateKey({ ...other.getKey(a.id)!, name: 'a2' });
    other.updateKey({ ...other.getKey(b.id)!, name: 'b2' });
    changes = { keys: new Set([a.id]), usage: new Set(), defaultLimit: false };
    assert.equal(m.get(a.id).name, 'a2');
    assert.equal(m.get(b.id).name, 'b', 'not named, not read');
    other.deleteKey(a.id);
    changes = { keys: new Set([a.id]), usage: new Set(), defaultLimit: false };
    assert.deepEqual(
      m.list().map((k) => k.id),
      [b.id],
      'a deletion named is applied',
    );
  } finally {
    other.close();
    m.stop();
    remove();
  }
});

test('usage another node reports moves the budget, enforced in the read that crosses it', async () => {
  let changes: StoreChanges | null = null;
  const { s, ks, remove } = store({
    takeChanges: () => {
      const c = changes;
      changes = null;
      return c;
    },
    loadUsageOf: (ids, fromDay) => {
      const all = ks.loadUsage(fromDay);
      return new Map([...ids].filter((id) => all.has(id)).map((id) => [id, all.get(id)!]));
    },
  });
  const m = manager(s);
  const other = KeyStore.open(ks.dir);
  try {
    const k = m.create({ name: 'a', limit: { bytes: 4_000_000 } });
    const day = Math.floor(clock.now() / 86_400_000);
    const elsewhere = (bytes: number): void => {
      other.addUsage([{ keyId: k.id, day, bytes }]);
      changes = { keys: new Set(), usage: new Set([k.id]), defaultLimit: false };
    };
    elsewhere(1_800_000);
    assert.equal(m.get(k.id).usedBytes, 1_800_000);
    elsewhere(1_200_000);
    assert.equal(m.get(k.id).usedBytes, 3_000_000, 'the view has the fleet usage');
    const lease = m.open(k.id, '198.18.0.1', 'tcp')!;
    let revoked = false;
    lease.onRevoke(() => (revoked = true));
    lease.down(999_000);
    assert.ok(!revoked, 'within the fleet-wide limit');
    lease.down(2_000);
    // Before the next read is taken (a setImmediate lets every read already waiting through).
    await new Promise((r) => process.nextTick(r));
    assert.ok(revoked, 'cut off right after the read that crossed the fleet-wide limit');
    assert.equal(m.get(k.id).state, 'over-limit');
    assert.equal(m.open(k.id, '198.18.0.1', 'tcp'), null, 'and refused from then on');
    lease.close();
  } finally {
    other.close();
    m.stop();
    remove();
  }
});
