// `ladder keys publish`: the serial of the signed key document (given, one more than the document
// already at --out, or 1) and the errors for a bad --serial or a foreign --out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keysPublish, operatorPublicKey, operatorSigningKey } from './keys-publish.js';
import { openKeyDocument } from '../codec/key-document.js';
import { LadderError } from '../errors.js';

const KEY = 'ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpwdWJsaXNoLXRlc3Q@127.0.0.1:8388';

/** Runs keys publish with its console output swallowed. */
function publish(args: string[]): number {
  const log = console.log;
  const error = console.error;
  console.log = console.error = () => {};
  try {
    return keysPublish(args);
  } finally {
    console.log = log;
    console.error = error;
  }
}

test('keys publish: serial 1, then one more than the document at --out, or as given', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ladder-publish-'));
  try {
    const opKey = join(dir, 'operator.key');
    const out = join(dir, 'keys.txt');
    const base = [
      '--operator-key',
      opKey,
      '--key',
      KEY,
      '--url',
      'https://198.18.0.1/k',
      '--out',
      out,
    ];
    const serialAt = (): number => {
      const pub = operatorPublicKey(operatorSigningKey(opKey).privateKey);
      return openKeyDocument(readFileSync(out, 'utf8'), pub).serial;
    };
    assert.equal(publish(base), 0);
    assert.equal(serialAt(), 1);
    assert.equal(publish(base), 0);
    assert.equal(serialAt(), 2);
    assert.equal(publish([...base, '--serial', '10']), 0);
    assert.equal(serialAt(), 10);
    assert.throws(
      () => publish([...base, '--serial', '0']),
      (e) =>
        e instanceof LadderError && e.code === 'ERR_USAGE' && /whole number from 1/.test(e.message),
    );
    writeFileSync(out, 'not a key document\n');
    assert.throws(
      () => publish(base),
      (e) =>
        e instanceof LadderError &&
        e.code === 'ERR_KEY_DOCUMENT' &&
        /give --serial/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
