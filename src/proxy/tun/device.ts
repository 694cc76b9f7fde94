/**
 * A TUN device the client creates: the ladder_tun addon (native/tun) attaches to `/dev/net/tun`
 * with TUNSETIFF (IFF_TUN | IFF_NO_PI, not persistent: the device disappears when the descriptor
 * closes, so a killed client leaves no device behind). The descriptor joins the event loop and is
 * drained into one reused batch on the JavaScript thread when it is readable: a short request's
 * handful of packets each cost a wake-up of this thread only, where a reader thread of its own
 * would add a second thread to schedule per packet (which a loaded machine makes slow). Packets
 * are written back with one write(2) each, the batch's in one call.
 * @module
 */
import { closeSync, existsSync } from 'node:fs';
import { ConfigError, LadderError } from '../../errors.js';
import { tryLoadTunAddon, writeTunPacket, type TunAddon } from './addon.js';

function loadAddon(): TunAddon {
  const a = tryLoadTunAddon();
  if (typeof a !== 'string') return a;
  throw new ConfigError(
    'ERR_TUN',
    `--tun needs the native TUN addon, which is not built: run 'node scripts/build-native.mjs' (needs a C compiler and node-gyp) (${a})`,
  );
}

export class TunDevice {
  readonly name: string;
  readonly #fd: number;
  #handle: object | undefined;
  #polled = false;
  #closed = false;

  private constructor(name: string, fd: number) {
    this.name = name;
    this.#fd = fd;
  }

  /** Creates the TUN device `name` (or attaches to a persistent one) in this network namespace. */
  static create(name: string): TunDevice {
    if (!existsSync('/dev/net/tun'))
      throw new ConfigError(
        'ERR_TUN',
        '/dev/net/tun is missing: load the tun module (modprobe tun), or in a container give it the device (e.g. docker run --device /dev/net/tun --cap-add NET_ADMIN)',
      );
    const a = loadAddon();
    try {
      return new TunDevice(name, a.open(name));
    } catch (err) {
      const m = (err as Error).message;
      if (/busy/i.test(m))
        throw new ConfigError(
          'ERR_TUN',
          `the TUN device '${name}' is in use (another 'ladder client --tun' or another VPN): stop it, or pick another name with --tun-name`,
        );
      if (/not permitted|permission/i.test(m))
        throw new ConfigError(
          'ERR_TUN_NEEDS_ADMIN',
          `creating the TUN device '${name}' was refused (${m}): run as root, e.g. with sudo`,
        );
      throw new LadderError('ERR_TUN', `cannot create the TUN device '${name}': ${m}`, {
        cause: err,
      });
    }
  }

  /**
   * Delivers packets; each is a view into a batch, valid only until `onPacket` returns. When
   * `onPacket` returns true, the packet (rewritten in place) goes back into the stack: all of a
   * batch's in one call to the addon after the batch, instead of a write from JavaScript each.
   */
  start(onPacket: (packet: Buffer) => boolean): void {
    if (this.#handle || this.#closed) return;
    const a = loadAddon();
    const fd = this.#fd;
    if (a.poll && a.unpoll) {
      this.#polled = true;
      this.#handle = a.poll(fd, (batch: Buffer, length: number) =>
        this.#onBatch(batch, length, onPacket),
      );
      return;
    }
    // An addon built before it could poll: its reader thread hands over batches.
    this.#handle = a.start(fd, (batch: Buffer) => {
      let o = 0;
      let back = 0;
      while (o + 2 <= batch.length && !this.#closed) {
        const len = (batch[o]! << 8) | batch[o + 1]!;
        if (onPacket(batch.subarray(o + 2, o + 2 + len))) back++;
        else batch[o] = batch[o + 1] = 0; // not written back
        o += 2 + len;
      }
      if (back === 0 || this.#closed) return;
      if (a.writeBatch) a.writeBatch(fd, batch);
      else this.#writeEach(batch);
    });
  }

  /** Delivers a batch's packets; true when some are to be written back (the addon does that). */
  #onBatch(batch: Buffer, length: number, onPacket: (packet: Buffer) => boolean): boolean {
    let o = 0;
    let back = 0;
    while (o + 2 <= length && !this.#closed) {
      const len = (batch[o]! << 8) | batch[o + 1]!;
      if (onPacket(batch.subarray(o + 2, o + 2 + len))) back++;
      else batch[o] = batch[o + 1] = 0; // not written back
      o += 2 + len;
    }
    return back > 0 && !this.#closed;
  }

  /** The same as the addon's writeBatch, for an addon built before it had one. */
  #writeEach(batch: Buffer): void {
    let o = 0;
    while (o + 2 <= batch.length) {
      const len = (batch[o]! << 8) | batch[o + 1]!;
      if (len > 0) this.write(batch.subarray(o + 2, o + 2 + len));
      o += 2 + len;
    }
  }

  /** Writes one IP packet into the stack; false if the stack refused it (it is dropped). */
  write(packet: Uint8Array): boolean {
    return !this.#closed && writeTunPacket(this.#fd, packet);
  }

  /** Stops reading and closes the descriptor (and so the device): in the next turn of the event loop, or within 100 ms when a
   * reader thread of an older addon does it. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const a = loadAddon();
    if (this.#handle && this.#polled) a.unpoll!(this.#handle);
    else if (this.#handle) a.stop(this.#handle);
    else closeSync(this.#fd);
  }
}
