import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyManager } from './key-manager.js';
import {
  KeyStore,
  type AccessKeyStore,
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
    remote.set(k.id, { devices: 1, nodes: 1 });
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

test('a speed cap is split evenly with the other nodes where the key is connected', () => {
  const remote = new Map<string, RemotePresence>();
  const { s, remove } = store({ remotePresence: () => remote });
  const m = manager(s);
  try {
    const k = m.create({ name: 'a', speedLimitBps: 100_000 });
    remote.set(k.id, { devices: 1, nodes: 1 });
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
