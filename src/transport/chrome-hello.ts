/**
 * A fresh Chrome ClientHello for one connection: new X25519 keys for the hybrid and plain shares, a
 * new ML-KEM-768 key pair (@noble/post-quantum), and fresh random bytes for everything Chrome
 * randomizes. Returns the record and the private parts the handshake needs to finish.
 * @module
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { CHROME_HELLO_ENTROPY, encodeChromeClientHello } from '../codec/tls-client-hello.js';
import { mlkem768Keygen, x25519Pair } from '../crypto/tls-kex.js';

export interface ChromeHelloKeys {
  x25519: KeyObject;
  hybridX25519: KeyObject;
  mlkemSecret: Uint8Array;
}

export function chromeClientHello(
  serverName: string | undefined,
  alpn: readonly string[],
): {
  record: Buffer;
  keys: ChromeHelloKeys;
  sessionId: Buffer;
  /** The second hello after a HelloRetryRequest: same randomness, one share for `group`. */
  retry(group: number, share: Uint8Array, cookie?: Uint8Array): Buffer;
} {
  const plain = x25519Pair();
  const hybrid = x25519Pair();
  const kem = mlkem768Keygen();
  const sessionId = randomBytes(32);
  const input = {
    ...(serverName !== undefined && !isIP(serverName) ? { serverName } : {}),
    alpn,
    random: randomBytes(32),
    sessionId,
    mlkemPublic: kem.publicKey,
    hybridX25519Public: hybrid.pub,
    x25519Public: plain.pub,
    entropy: randomBytes(CHROME_HELLO_ENTROPY),
  };
  return {
    record: encodeChromeClientHello(input),
    retry: (group, share, cookie) =>
      encodeChromeClientHello({ ...input, retry: { group, share, ...(cookie ? { cookie } : {}) } }),
    keys: { x25519: plain.priv, hybridX25519: hybrid.priv, mlkemSecret: kem.secretKey },
    sessionId,
  };
}
