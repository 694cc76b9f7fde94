/**
 * Test lists: the Citizen Lab format (github.com/citizenlab/test-lists, `lists/*.csv`), a CSV file
 * with the header `url,category_code,category_description,date_added,source,notes`, and, as OONI
 * Probe's `--input-file` takes it, a plain file with one URL per line. Pure: the CLI reads the file.
 *
 * CSV as RFC 4180 writes it: fields separated by commas, a field in double quotes may hold commas,
 * line breaks and doubled quotes (""), lines end in CRLF or LF.
 * @module
 */
import { ConfigError } from '../errors.js';

export interface TestListEntry {
  readonly url: string;
  readonly categoryCode?: string;
}

/** Fields after the URL in the Citizen Lab header, in order. */
export const CITIZEN_LAB_COLUMNS = [
  'url',
  'category_code',
  'category_description',
  'date_added',
  'source',
  'notes',
] as const;

/** Most entries a list may have (the run's connection cap limits what is measured anyway). */
export const MAX_LIST_ENTRIES = 10_000;

/** Splits CSV text into records of fields (RFC 4180). Throws ConfigError on an unclosed quote. */
export function parseCsv(text: string, where = 'list'): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  let line = 1;
  while (i < text.length) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i++;
        continue;
      }
      if (ch === '\n') line++;
      field += ch;
      i++;
      continue;
    }
    if (ch === '"' && field === '') {
      quoted = true;
      i++;
    } else if (ch === ',') {
      row.push(field);
      field = '';
      i++;
    } else if (ch === '\n' || ch === '\r') {
      row.push(field);
      field = '';
      rows.push(row);
      row = [];
      if (ch === '\r' && text[i + 1] === '\n') i++;
      i++;
      line++;
    } else {
      field += ch;
      i++;
    }
  }
  if (quoted)
    throw new ConfigError(
      'ERR_CONFIG',
      `${where}: a quoted field opened before line ${line} never closes`,
    );
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => !(r.length === 1 && r[0]!.trim() === ''));
}

/**
 * Reads a test list: Citizen Lab CSV when the first line is its header (a `url` column is enough),
 * otherwise one URL per line (blank lines and lines starting with # skipped).
 */
export function parseTestList(text: string, where = 'list'): TestListEntry[] {
  const body = text.replace(/^\uFEFF/, '');
  const firstLine = body.split(/\r?\n/, 1)[0] ?? '';
  const entries: TestListEntry[] = [];
  if (/^\s*"?url"?\s*(,|$)/i.test(firstLine)) {
    const rows = parseCsv(body, where);
    const header = rows[0]!.map((h) => h.trim().toLowerCase());
    const urlAt = header.indexOf('url');
    const catAt = header.indexOf('category_code');
    for (const r of rows.slice(1)) {
      const url = r[urlAt]?.trim();
      if (!url) continue;
      const cat = catAt >= 0 ? r[catAt]?.trim() : undefined;
      entries.push({ url, ...(cat ? { categoryCode: cat } : {}) });
    }
  } else {
    for (const raw of body.split(/\r?\n/)) {
      const l = raw.trim();
      if (l === '' || l.startsWith('#')) continue;
      entries.push({ url: l });
    }
  }
  if (entries.length === 0)
    throw new ConfigError(
      'ERR_CONFIG',
      `${where}: no URLs in it (expected Citizen Lab CSV with a '${CITIZEN_LAB_COLUMNS.join(',')}' header, or one URL per line)`,
    );
  if (entries.length > MAX_LIST_ENTRIES)
    throw new ConfigError(
      'ERR_CONFIG',
      `${where}: ${entries.length} URLs is more than ${MAX_LIST_ENTRIES}; split the list`,
    );
  return entries;
}
