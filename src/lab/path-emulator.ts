/**
 * The path emulator in the wall: sits between the censor engine and the TUN device. Each packet the
 * engine forwards (or injects) goes to the {@link PathLink} of its direction — up when its source is
 * inside the censored network, down otherwise — which drops it or gives it a departure time; the
 * emulator keeps pending packets in a min-heap by departure time and writes them out from one
 * timer. Packets are held as views into the TUN reader's batch buffers (each batch is its own
 * external buffer, kept alive while a view of it is pending).
 *
 * Bounded: pending bytes per direction never exceed the link's queue plus what the propagation
 * delay holds at the link's rate; with no bandwidth cap, a hard cap of {@link MAX_PENDING_PACKETS}
 * applies and packets past it are dropped (counted as queue drops).
 * @module
 */
import { PathLink, type PathParams } from './path.js';

/** Pending packets per emulator when a link has no bandwidth cap to bound them. */
export const MAX_PENDING_PACKETS = 200_000;

export interface PathClock {
  /** Milliseconds, monotonic, sub-millisecond resolution welcome. */
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

const realClock: PathClock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
};

interface Pending {
  at: number;
  seq: number;
  packet: Buffer;
}

/** Compiles an IPv4/IPv6 CIDR to a byte-wise matcher over a packet's source address. */
export function sourcePrefixMatcher(cidr: string): (packet: Uint8Array) => boolean {
  const [net, lenText] = cidr.split('/');
  const v6 = net!.includes(':');
  const len = Number(lenText ?? (v6 ? 128 : 32));
  const bytes = v6 ? v6Bytes(net!) : net!.split('.').map(Number);
  const off = v6 ? 8 : 12;
  const version = v6 ? 6 : 4;
  return (p) => {
    if (p.length < (v6 ? 40 : 20) || p[0]! >> 4 !== version) return false;
    let bits = len;
    for (let i = 0; bits > 0; i++, bits -= 8) {
      const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
      if ((p[off + i]! & mask) !== (bytes[i]! & mask)) return false;
    }
    return true;
  };
}

function v6Bytes(addr: string): number[] {
  const halves = addr.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const words = [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  return words.flatMap((w) => {
    const n = parseInt(w, 16);
    return [n >> 8, n & 0xff];
  });
}

export interface PathEmulatorOptions {
  readonly params: PathParams;
  /** Writes a packet to the TUN device. */
  readonly send: (packet: Buffer) => void;
  /** Prefixes of the censored network: a packet from one of them travels up. */
  readonly inside: readonly string[];
  readonly random: () => number;
  readonly clock?: PathClock;
}

export class PathEmulator {
  readonly up: PathLink;
  readonly down: PathLink;
  readonly #send: (packet: Buffer) => void;
  readonly #inside: ((p: Uint8Array) => boolean)[];
  readonly #clock: PathClock;
  readonly #heap: Pending[] = [];
  #seq = 0;
  #timer: unknown;
  #timerAt = Infinity;
  #closed = false;

  constructor(o: PathEmulatorOptions) {
    this.up = new PathLink(o.params.up, o.random);
    this.down = new PathLink(o.params.down, o.random);
    this.#send = o.send;
    this.#inside = o.inside.map(sourcePrefixMatcher);
    this.#clock = o.clock ?? realClock;
  }

  /** Packets waiting for their departure time. */
  get pending(): number {
    return this.#heap.length;
  }

  /** Takes one packet on its way out of the wall. */
  handle(packet: Buffer): void {
    if (this.#closed) return;
    const link = this.#inside.some((m) => m(packet)) ? this.up : this.down;
    const now = this.#clock.now();
    const v = link.offer(now, packet.length);
    if (v.drop !== undefined) return;
    if (this.#heap.length >= MAX_PENDING_PACKETS) {
      link.stats.queueDrops++;
      return;
    }
    if (v.at <= now && this.#heap.length === 0) {
      this.#send(packet);
      return;
    }
    this.#push({ at: v.at, seq: this.#seq++, packet });
    this.#arm(now);
  }

  /** Drops everything pending and stops the timer. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
    this.#heap.length = 0;
  }

  #arm(now: number): void {
    const next = this.#heap[0];
    if (next === undefined || next.at >= this.#timerAt) return;
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timerAt = next.at;
    this.#timer = this.#clock.setTimer(() => this.#flush(), Math.max(0, next.at - now));
  }

  #flush(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    if (this.#closed) return;
    const now = this.#clock.now();
    // Timers fire up to a millisecond early or late; send what is due within half a millisecond.
    while (this.#heap.length > 0 && this.#heap[0]!.at <= now + 0.5) this.#send(this.#pop().packet);
    this.#arm(now);
  }

  #less(a: Pending, b: Pending): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  #push(e: Pending): void {
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  #pop(): Pending {
    const h = this.#heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.#less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.#less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
