// Lists functions longer than a number of lines (default 80), longest first: the check behind
// "no command function over ~80 lines" (docs/architecture.md). Usage:
//   node scripts/function-lengths.mjs [min-lines] [files...]   (default: src/**/*.ts but tests)
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import ts from 'typescript';

const min = Number(process.argv[2] ?? 80);
const given = process.argv.slice(3);
const files =
  given.length > 0
    ? given
    : execFileSync('git', ['ls-files', 'src/**/*.ts'], { encoding: 'utf8' })
        .split('\n')
        .filter((f) => f && !f.endsWith('.test.ts'));

const rows = [];
for (const file of files) {
  const src = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const visit = (node) => {
    if (
      ts.isFunctionDeclaration(node) ||
      ts.isMethodDeclaration(node) ||
      ts.isArrowFunction(node) ||
      ts.isFunctionExpression(node) ||
      ts.isConstructorDeclaration(node)
    ) {
      const first = src.getLineAndCharacterOfPosition(node.getStart()).line;
      const last = src.getLineAndCharacterOfPosition(node.getEnd()).line;
      const named = node.name ?? node.parent?.name;
      if (last - first + 1 > min)
        rows.push([
          last - first + 1,
          `${file}:${first + 1}`,
          named ? named.getText() : '(anonymous)',
        ]);
    }
    ts.forEachChild(node, visit);
  };
  visit(src);
}
rows.sort((a, b) => b[0] - a[0]);
for (const r of rows) console.log(r.join('\t'));
