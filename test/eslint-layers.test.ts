/**
 * The layer rule and the purity rules run: forbidden imports injected into files that are not on
 * disk (ESLint lints the text under the given path) must fail lint, and allowed ones must pass.
 * eslint.config.js and eslint/layers.js hold the rules; docs/architecture.md the layers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

const root = fileURLToPath(new URL('../../', import.meta.url));
const eslint = new ESLint({ cwd: root });

/** The rule ids ESLint reports for `code` placed at `path` (relative to the repository). */
async function rulesFor(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${root}${path}` });
  assert.ok(result, 'ESLint returned no result');
  return result.messages.map((m) => m.ruleId ?? `fatal: ${m.message}`);
}

const cases: { path: string; code: string; expect: string[]; why: string }[] = [
  {
    why: 'codec/ importing transport/ (an upward import)',
    path: 'src/codec/layer-fixture.ts',
    code: "import type { Dialer } from '../transport/types.js';\nexport type X = Dialer;\n",
    expect: ['ladder/layers'],
  },
  {
    why: 'a dynamic import of cli/ from lab/',
    path: 'src/lab/modules/layer-fixture.ts',
    code: "export const m = () => import('../../cli/main.js');\n",
    expect: ['ladder/layers'],
  },
  {
    why: 'store/ importing server/ (the old folder cycle)',
    path: 'src/store/layer-fixture.ts',
    code: "export { KeyManager } from '../server/access/key-manager.js';\n",
    expect: ['ladder/layers'],
  },
  {
    why: 'two folders of the same layer (lab/ and probe/)',
    path: 'src/probe/layer-fixture.ts',
    code: "export * from '../lab/policy.js';\n",
    expect: ['ladder/layers'],
  },
  {
    why: 'core/ importing codec/',
    path: 'src/core/layer-fixture.ts',
    code: "import '../codec/dns.js';\n",
    expect: ['ladder/layers'],
  },
  {
    why: 'codec/ doing I/O',
    path: 'src/codec/layer-fixture.ts',
    code: "import { readFileSync } from 'node:fs';\nexport const f = readFileSync;\n",
    expect: ['no-restricted-imports'],
  },
  {
    why: 'codec/ using node:net beyond the address predicates',
    path: 'src/codec/layer-fixture.ts',
    code: "import { connect } from 'node:net';\nexport const f = connect;\n",
    expect: ['no-restricted-imports'],
  },
  {
    why: 'crypto/ reading the environment',
    path: 'src/crypto/layer-fixture.ts',
    code: 'export const off = process.env.X;\n',
    expect: ['no-restricted-globals'],
  },
  {
    why: 'codec/ reading the wall clock',
    path: 'src/codec/layer-fixture.ts',
    code: 'export const t = Date.now();\n',
    expect: ['no-restricted-properties'],
  },
  {
    why: 'codec/ starting a timer',
    path: 'src/codec/layer-fixture.ts',
    code: 'setTimeout(() => {}, 1);\n',
    expect: ['no-restricted-globals'],
  },
  {
    why: 'a built-in without the node: prefix, in any layer',
    path: 'src/server/layer-fixture.ts',
    code: "import { connect } from 'net';\nexport const f = connect;\n",
    expect: ['no-restricted-imports'],
  },
  {
    why: 'a folder in no layer',
    path: 'src/newthing/layer-fixture.ts',
    code: "export { LadderError } from '../errors.js';\n",
    expect: ['ladder/layers'],
  },
  // allowed
  {
    why: 'allowed: server/ importing lower layers and its own folder',
    path: 'src/server/layer-fixture.ts',
    code: [
      "export { LadderError } from '../errors.js';",
      "export type { Target } from '../core/target.js';",
      "export { KeyStore } from '../store/key-store.js';",
      "export { relay } from '../transport/relay.js';",
      "export { Gate } from './access/gate.js';",
      "export { connect } from 'node:net';",
      '',
    ].join('\n'),
    expect: [],
  },
  {
    why: 'allowed: codec/ with address predicates, crypto/ and core/',
    path: 'src/codec/layer-fixture.ts',
    code: [
      "export { isIPv6 } from 'node:net';",
      "export type { Target } from '../core/target.js';",
      "export { TAG_SIZE } from '../crypto/methods.js';",
      '',
    ].join('\n'),
    expect: [],
  },
  {
    why: 'allowed: tests may import any layer',
    path: 'src/codec/layer-fixture.test.ts',
    code: "export { run } from '../cli/main.js';\n",
    expect: [],
  },
];

for (const c of cases) {
  test(`lint: ${c.why}`, async () => {
    assert.deepEqual(await rulesFor(c.path, c.code), c.expect);
  });
}
