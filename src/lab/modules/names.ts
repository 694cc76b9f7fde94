/**
 * Blocklist matching in the GFW's regex styles (docs/censorship-techniques.md §6, sp25 Table "regex"): a plain entry
 * `example.com` is the dominant style `^(.*\.)?example\.com$` (85% of GFW rules: the domain and
 * its subdomains); an entry starting `re:` is taken as a regular expression, so the rarer styles
 * (`^keyword$`, a missing end anchor, a bare `keyword`) can be reproduced exactly.
 * @module
 */

/** Returns a predicate for a list of blocklist entries. */
export function nameMatcher(entries: readonly string[]): (name: string) => boolean {
  const exact = new Set<string>();
  const regexes: RegExp[] = [];
  for (const e of entries) {
    if (e.startsWith('re:')) regexes.push(new RegExp(e.slice(3), 'i'));
    else exact.add(e.toLowerCase().replace(/\.$/, ''));
  }
  return (name: string) => {
    const n = name.toLowerCase().replace(/\.$/, '');
    // ^(.*\.)?entry$ : the name or any parent domain of it is listed
    for (let i = -1; i < n.length; i = n.indexOf('.', i + 1)) {
      if (exact.has(n.slice(i + 1))) return true;
      if (n.indexOf('.', i + 1) < 0) break;
    }
    return regexes.some((r) => r.test(n));
  };
}
