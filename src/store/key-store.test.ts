import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { DB_FILE, KeyStore, MIGRATIONS } from './key-store.js';
import type { AccessKeyRecord } from '../access/access-key.js';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'ladder-store-'));
}

const key = (id: string): AccessKeyRecord => ({
  id,
  name: `key ${id}`,
  secret: `secret-${id}`,
  method: 'aes-256-gcm',
  transports: ['trojan'],
  createdMs: 1,
  expiresMs: null,
  dataLimit: { bytes: 10, period: 'month' },
  speedLimitBps: 5,
  deviceLimit: 2,
  disabled: false,
});

test('a new store: WAL mode, the schema at the latest version, files 0600 in a 0700 directory', () => {
  const root = tmp();
  try {
    const dir = join(root, 'd');
    const s = KeyStore.open(dir);
    s.insertKey(key('a'));
    s.close();
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, DB_FILE)).mode & 0o777, 0o600);
    const db = new Database(join(dir, DB_FILE), { readonly: true });
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.length);
    db.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('keys round-trip; ids are Outline-style counters; a taken id is ERR_CONFLICT', () => {
  const root = tmp();
  try {
    const s = KeyStore.open(root);
    s.insertKey(key('x'));
    assert.deepEqual(s.getKey('x'), key('x'));
    const k0 = s.insertKeyWithNextId((id) => key(id));
    const k1 = s.insertKeyWithNextId((id) => key(id));
    assert.deepEqual([k0.id, k1.id], ['0', '1']);
    assert.throws(() => s.insertKey(key('x')), { code: 'ERR_CONFLICT' });
    assert.ok(s.updateKey({ ...key('x'), name: 'renamed', disabled: true, dataLimit: null }));
    assert.equal(s.getKey('x')!.name, 'renamed');
    assert.equal(s.getKey('x')!.dataLimit, null);
    assert.equal(s.getKey('x')!.disabled, true);
    // A deleted id is not reused by the counter.
    assert.ok(s.deleteKey('1'));
    assert.equal(s.insertKeyWithNextId((id) => key(id)).id, '2');
    s.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('usage: added per day, summed, older days folded; rows of deleted keys are dropped', () => {
  const root = tmp();
  try {
    const s = KeyStore.open(root);
    s.insertKey(key('a'));
    s.addUsage([
      { keyId: 'a', day: 100, bytes: 5 },
      { keyId: 'a', day: 100, bytes: 6 },
      { keyId: 'a', day: 90, bytes: 7 },
      { keyId: 'a', day: 80, bytes: 8 },
      { keyId: 'gone', day: 100, bytes: 9 },
    ]);
    const u = s.loadUsage(90);
    assert.deepEqual(
      [...u.get('a')!].sort(),
      [
        [100, 11],
        [89, 8],
        [90, 7],
      ].sort(),
    );
    assert.equal(u.has('gone'), false);
    s.deleteKey('a');
    assert.equal(s.loadUsage(0).size, 0, 'usage goes with its key');
    s.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a database from a newer Ladder, or not a database, is refused with the fix named', () => {
  const root = tmp();
  try {
    const s = KeyStore.open(root);
    s.close();
    const db = new Database(join(root, DB_FILE));
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    assert.throws(() => KeyStore.open(root), /newer than this Ladder knows/);
    const other = tmp();
    writeFileSync(
      join(other, DB_FILE),
      'this is not sqlite at all, just some text of a fair length.........',
    );
    assert.throws(() => KeyStore.open(other), /not a usable Ladder database|cannot open/);
    rmSync(other, { recursive: true, force: true });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('migrations: a version-1 database gains the transports column, its keys keeping every transport', () => {
  const root = tmp();
  try {
    const db = new Database(join(root, DB_FILE));
    db.exec(MIGRATIONS[0]!);
    db.pragma('user_version = 1');
    db.prepare(
      "INSERT INTO access_keys (id, name, secret, method, created_ms) VALUES ('old', 'n', 's', 'aes-128-gcm', 5)",
    ).run();
    db.close();
    const s = KeyStore.open(root);
    assert.deepEqual(s.getKey('old')!.transports, ['ss', 'trojan']);
    s.close();
    const again = new Database(join(root, DB_FILE), { readonly: true });
    assert.equal(again.pragma('user_version', { simple: true }), MIGRATIONS.length);
    again.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('settings: made once, kept; the default data limit round-trips', () => {
  const root = tmp();
  try {
    let s = KeyStore.open(root);
    const id = s.settingOnce('server_id', () => 'first');
    assert.equal(
      s.settingOnce('server_id', () => 'second'),
      id,
    );
    s.setDefaultLimit({ bytes: 42, period: '30d' });
    s.close();
    s = KeyStore.open(root);
    assert.equal(s.getSetting('server_id'), 'first');
    assert.deepEqual(s.getDefaultLimit(), { bytes: 42, period: '30d' });
    s.setDefaultLimit(null);
    assert.equal(s.getDefaultLimit(), null);
    s.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
