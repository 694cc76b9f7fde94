/**
 * The fp=chrome ClientHello's key shares, made one turn of the event loop ahead. Each call returns
 * a pair never handed out before (made at once when none is ready) and, on a later turn, makes the
 * next hello's: a handshake's shares are then made while the previous connection waits on the
 * network, not between the proxy's accept and its ClientHello. ML-KEM-768's key generation runs in
 * JavaScript and is the larger part of a hello's CPU. Every pair is still used once, as Chrome uses
 * each key share once; nothing is made before the first call.
 * @module
 */
import { mlkem768Keygen as makeMlkem768, x25519Pair as makeX25519 } from '../crypto/tls-kex.js';

class MadeAhead<T> {
  readonly #make: () => T;
  readonly #depth: number;
  readonly #ready: T[] = [];
  #refilling = false;

  /** `depth`: pairs kept ready (one hello's draw). */
  constructor(make: () => T, depth: number) {
    this.#make = make;
    this.#depth = depth;
  }

  take(): T {
    const pair = this.#ready.shift() ?? this.#make();
    if (!this.#refilling) {
      this.#refilling = true;
      setImmediate(() => {
        this.#refilling = false;
        while (this.#ready.length < this.#depth) this.#ready.push(this.#make());
      }).unref();
    }
    return pair;
  }

  get ready(): number {
    return this.#ready.length;
  }
}

/** A hello takes two X25519 pairs (the plain share and the hybrid's) and one ML-KEM-768 pair. */
const x25519Ahead = new MadeAhead(makeX25519, 2);
const mlkem768Ahead = new MadeAhead(makeMlkem768, 1);

/** A fresh X25519 key pair (crypto/tls-kex.ts x25519Pair), made ahead. */
export function x25519Pair(): ReturnType<typeof makeX25519> {
  return x25519Ahead.take();
}

/** A fresh ML-KEM-768 key pair, made ahead. */
export function mlkem768Keygen(): ReturnType<typeof makeMlkem768> {
  return mlkem768Ahead.take();
}

/** Pairs made ahead and ready now (for tests). */
export function keySharesReady(): { x25519: number; mlkem768: number } {
  return { x25519: x25519Ahead.ready, mlkem768: mlkem768Ahead.ready };
}
