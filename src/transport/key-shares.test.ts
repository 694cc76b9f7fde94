import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keySharesReady, mlkem768Keygen, x25519Pair } from './key-shares.js';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('key shares are made one turn ahead, and none is handed out twice', async () => {
  const pubs = new Set<string>();
  const kems = new Set<string>();
  for (let i = 0; i < 4; i++) {
    // a ClientHello's draw: two X25519 pairs and one ML-KEM-768 pair
    pubs.add(Buffer.from(x25519Pair().pub).toString('hex'));
    pubs.add(Buffer.from(x25519Pair().pub).toString('hex'));
    kems.add(Buffer.from(mlkem768Keygen().publicKey).toString('hex'));
    await turn();
    // the next hello's pairs are ready before it asks
    assert.deepEqual(keySharesReady(), { x25519: 2, mlkem768: 1 });
  }
  assert.equal(pubs.size, 8);
  assert.equal(kems.size, 4);
  // taking uses them up; the refill comes on a later turn, never in the caller's
  x25519Pair();
  x25519Pair();
  mlkem768Keygen();
  assert.deepEqual(keySharesReady(), { x25519: 0, mlkem768: 0 });
  await turn();
  assert.deepEqual(keySharesReady(), { x25519: 2, mlkem768: 1 });
});
