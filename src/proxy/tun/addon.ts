/**
 * The ladder_tun addon (native/tun), shared by the client's TUN device and the lab's censor: how
 * it is found, and the one write(2) per packet that both use.
 * @module
 */
import { writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

export interface TunAddon {
  open(name: string): number;
  start(fd: number, onBatch: (batch: Buffer) => void): object;
  stop(handle: object): void;
  writeBatch?(fd: number, batch: Buffer): number;
  poll?(fd: number, onBatch: (batch: Buffer, length: number) => boolean): object;
  unpoll?(handle: object): void;
}

let addon: TunAddon | undefined;

/** The addon, or the reason it cannot be loaded (the first line of the loader's error). */
export function tryLoadTunAddon(): TunAddon | string {
  if (addon) return addon;
  const require = createRequire(import.meta.url);
  let why = 'not found';
  // dist/src/proxy/tun/addon.js and src/proxy/tun/addon.ts sit four or three levels down.
  for (const c of [
    '../../../../native/tun/build/Release/ladder_tun.node',
    '../../../native/tun/build/Release/ladder_tun.node',
    // a build into another output directory (tsc --outDir) run from the repository root
    join(process.cwd(), 'native/tun/build/Release/ladder_tun.node'),
  ]) {
    try {
      addon = require(c) as TunAddon;
      return addon;
    } catch (err) {
      why = (err as Error).message.split('\n')[0] ?? why;
    }
  }
  return why;
}

/** Writes one IP packet into the stack; false if the stack refused it (it is dropped). */
export function writeTunPacket(fd: number, packet: Uint8Array): boolean {
  try {
    writeSync(fd, packet);
    return true;
  } catch {
    return false;
  }
}
