/**
 * Username/password checking for the local front ends (SOCKS5 RFC 1929, HTTP Proxy-Authorization
 * Basic). Compared in constant time: both sides are SHA-256 digests of equal length, compared with
 * timingSafeEqual, and every entry is checked, so the time taken says nothing about which entry
 * matched or how much of a guess was right.
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class Credentials {
  readonly #entries: { name: Buffer; pass: Buffer }[];

  /** `users`: username → password. */
  constructor(users: ReadonlyMap<string, string>) {
    this.#entries = [...users].map(([u, p]) => ({ name: digest(u), pass: digest(p) }));
  }

  check(username: string, password: string): boolean {
    const u = digest(username);
    const p = digest(password);
    let ok = false;
    for (const e of this.#entries) {
      const nameOk = timingSafeEqual(e.name, u);
      const passOk = timingSafeEqual(e.pass, p);
      ok = (nameOk && passOk) || ok; // no early exit
    }
    return ok;
  }
}
