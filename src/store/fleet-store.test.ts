import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LadderError } from '../errors.js';
import { checkStoreUrl } from './fleet-store.js';

test('--store takes PostgreSQL URLs only, and a refusal never echoes the URL (it may hold a password)', () => {
  for (const ok of [
    'postgres://ladder:pw@db.example.net:5432/ladder',
    'postgresql://ladder@127.0.0.1/ladder?sslmode=require',
    'postgres:///ladder?host=/run/postgresql',
  ])
    assert.equal(checkStoreUrl(ok), ok);
  for (const bad of ['mysql://root:secret@h/db', 'secret', '', 'postgres://']) {
    assert.throws(
      () => checkStoreUrl(bad),
      (e: unknown) =>
        e instanceof LadderError &&
        e.code === 'ERR_USAGE' &&
        /postgres:\/\/user:password@host/.test(e.message) &&
        !e.message.includes('secret'),
    );
  }
});
