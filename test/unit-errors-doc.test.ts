import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('docs/errors.md lists every code of src/errors.ts, and no other', () => {
  const src = readFileSync(`${root}src/errors.ts`, 'utf8');
  const doc = readFileSync(`${root}docs/errors.md`, 'utf8');
  const codes = [...src.matchAll(/\| '(ERR_[A-Z0-9_]+)'/g)].map((m) => m[1]!);
  assert.ok(codes.length > 20);
  for (const c of codes) assert.ok(doc.includes(`\`${c}\``), `${c} is missing from docs/errors.md`);
  const documented = [...doc.matchAll(/`(ERR_[A-Z0-9_]+)`/g)].map((m) => m[1]!);
  for (const c of documented)
    assert.ok(codes.includes(c), `${c} is documented but not in src/errors.ts`);
});
