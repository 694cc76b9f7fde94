/**
 * A fresh Chrome ClientHello for one connection: new X25519 keys for the hybrid and plain shares, a
 * new ML-KEM-768 key pair (@noble/post-quantum), and fresh random bytes for everything Chrome
 * randomizes. Returns the record and the private parts the handshake needs to finish.
 * @module
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { CHROME_HELLO_ENTROPY, encodeChromeClientHello } from '../codec/tls-client-hello.js';

export interface ChromeHelloKeys {
  x25519: KeyObject;
  hybridX25519: KeyObject;
  mlkemSecret: Uint8Array;
}

/** The raw 32-byte public key of an X25519 KeyObject pair. */
function x25519Pair(): { priv: KeyObject; pub: Uint8Array } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const jwk = publicKey.export({ format: 'jwk' });
  return { priv: privateKey, pub: Buffer.from(jwk.x!, 'base64url') };
}

/** An X25519 private KeyObject from its raw 32 bytes (RFC 8410 PKCS#8 wrapping). */
export function x25519PrivateFromRaw(raw: Uint8Array): KeyObject {
  return createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), raw]),
    format: 'der',
    type: 'pkcs8',
  });
}

export function chromeClientHello(
  serverName: string | undefined,
  alpn: readonly string[],
): { record: Buffer; keys: ChromeHelloKeys; sessionId: Buffer } {
  const plain = x25519Pair();
  const hybrid = x25519Pair();
  const kem = ml_kem768.keygen();
  const sessionId = randomBytes(32);
  const record = encodeChromeClientHello({
    ...(serverName !== undefined && !isIP(serverName) ? { serverName } : {}),
    alpn,
    random: randomBytes(32),
    sessionId,
    mlkemPublic: kem.publicKey,
    hybridX25519Public: hybrid.pub,
    x25519Public: plain.pub,
    entropy: randomBytes(CHROME_HELLO_ENTROPY),
  });
  return {
    record,
    keys: { x25519: plain.priv, hybridX25519: hybrid.priv, mlkemSecret: kem.secretKey },
    sessionId,
  };
}
