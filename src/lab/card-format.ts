/**
 * The report card as text.
 * @module
 */
import type { Cell } from './card-runner.js';

/** The matrix as text: one row per transport, one column per policy, "ok/n" in each cell. */
export function formatCard(cells: readonly Cell[]): string {
  const cols = [...new Set(cells.map((c) => c.column))];
  const rows = [...new Set(cells.map((c) => c.transport))];
  const w0 = Math.max(9, ...rows.map((r) => r.length));
  const widths = cols.map((c) => Math.max(c.length, 7));
  const lines = [
    ['transport'.padEnd(w0), ...cols.map((c, i) => c.padStart(widths[i]!))].join('  '),
  ];
  for (const r of rows) {
    const parts = [r.padEnd(w0)];
    cols.forEach((c, i) => {
      const cell = cells.find((x) => x.transport === r && x.column === c);
      parts.push((cell ? `${Math.round((100 * cell.ok) / cell.n)}%` : '-').padStart(widths[i]!));
    });
    lines.push(parts.join('  '));
  }
  lines.push('', 'which module acted (events per cell):');
  for (const c of cells)
    if (Object.keys(c.modules).length > 0)
      lines.push(
        `  ${c.transport} × ${c.column}: ${Object.entries(c.modules)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
      );
  return lines.join('\n');
}
