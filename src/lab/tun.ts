/**
 * A TUN device the censor owns: attaches to a device by name through the ladder_tun addon
 * (native/tun), receives packets in batches from the addon's reader thread, and writes packets back
 * with one write(2) each (a TUN write enters the network stack at once and never blocks).
 * @module
 */
import { LadderError } from '../errors.js';
import { tryLoadTunAddon, writeTunPacket, type TunAddon } from '../proxy/tun/addon.js';

/** Loads native/tun's addon, or explains why it is unavailable. */
export function loadTunAddon(): TunAddon {
  const a = tryLoadTunAddon();
  if (typeof a !== 'string') return a;
  throw new LadderError(
    'ERR_LAB',
    `the TUN addon is not built (run 'node scripts/build-native.mjs'): ${a}`,
  );
}

export class TunDevice {
  readonly #fd: number;
  #handle: object | undefined;
  #closed = false;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Attaches to the (persistent) TUN device `name` in the current network namespace. */
  static open(name: string): TunDevice {
    const a = loadTunAddon();
    try {
      return new TunDevice(a.open(name));
    } catch (err) {
      throw new LadderError(
        'ERR_LAB',
        `cannot attach to TUN device ${name}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  /** Starts delivering packets; each is a view into a batch buffer, valid until `onPacket` returns. */
  start(onPacket: (packet: Buffer) => void): void {
    if (this.#handle) return;
    this.#handle = loadTunAddon().start(this.#fd, (batch: Buffer) => {
      let o = 0;
      while (o + 2 <= batch.length) {
        const len = (batch[o]! << 8) | batch[o + 1]!;
        const pkt = batch.subarray(o + 2, o + 2 + len);
        o += 2 + len;
        if (!this.#closed) onPacket(pkt);
      }
    });
  }

  /** Writes one IP packet into the stack. Errors (e.g. a packet the stack refuses) are dropped. */
  write(packet: Uint8Array): boolean {
    return !this.#closed && writeTunPacket(this.#fd, packet);
  }

  /** Stops reading; the reader thread closes the descriptor within 100 ms. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#handle) loadTunAddon().stop(this.#handle);
  }
}
