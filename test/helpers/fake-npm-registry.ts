/**
 * A stand-in for the npm registry on loopback, for `ladder build-client --platform`: it answers
 * a version's manifest at `/<name>/<version>` (name, version, dist.tarball, dist.integrity as npm
 * gives them) and the tarball at `/-/<name>-<version>.tgz`. Tests never reach the real registry.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { buildTar } from '../../src/codec/tar.js';

export interface FakePackage {
  readonly name: string;
  /** Without the leading v. */
  readonly version: string;
  readonly tgz: Buffer;
  /** The version the manifest states (default: `version`), to stand for a wrong answer. */
  readonly manifestVersion?: string;
  /** The integrity the manifest states (default: the tarball's own sha512). */
  readonly integrity?: string;
}

export interface FakeRegistry {
  readonly url: string;
  /** Requests seen, in order (paths). */
  readonly requests: string[];
  close(): Promise<void>;
}

export function sha512Integrity(bytes: Uint8Array): string {
  return `sha512-${createHash('sha512').update(bytes).digest('base64')}`;
}

/** A gzipped npm-style tarball holding one file at `package/<path>` (level 1: the binary is large). */
export function npmTarball(path: string, body: Uint8Array): Buffer {
  return gzipSync(buildTar([{ name: `package/${path}`, body }]), { level: 1 });
}

export async function startFakeRegistry(packages: readonly FakePackage[]): Promise<FakeRegistry> {
  const requests: string[] = [];
  let base = '';
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '/';
    requests.push(path);
    for (const p of packages) {
      const tgzPath = `/-/${p.name}-${p.version}.tgz`;
      if (path === `/${p.name}/${p.version}`) {
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            name: p.name,
            version: p.manifestVersion ?? p.version,
            bin: { node: 'bin/node' },
            dist: {
              tarball: `${base}${tgzPath}`,
              integrity: p.integrity ?? sha512Integrity(p.tgz),
            },
          }),
        );
        return;
      }
      if (path === tgzPath) {
        res.setHeader('content-type', 'application/octet-stream');
        res.end(p.tgz);
        return;
      }
    }
    res.statusCode = 404;
    res.end('{"error":"Not found"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
