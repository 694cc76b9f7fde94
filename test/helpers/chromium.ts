// Headless Chromium for the page tests (playwright-core drives Debian's chromium): the executable,
// why it cannot run here, and a launch with everything that would make traffic of its own off.
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Why the Chromium tests are skipped here, or undefined when they can run. */
export const chromiumMissing: string | undefined = existsSync(CHROMIUM)
  ? undefined
  : `${CHROMIUM} is missing (Debian package chromium; .ci/run installs it)`;

/** The arguments every page test launches with: no sandbox, no GPU, no traffic of its own. */
const QUIET_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches Chromium with {@link QUIET_ARGS} and `extraArgs`. */
export function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: [...QUIET_ARGS, ...extraArgs] });
}

/** Records in `foreign` every request of `page` to another origin than `pageUrl`'s. */
export function recordForeignRequests(page: Page, pageUrl: string, foreign: string[]): void {
  const own = new URL(pageUrl).origin;
  page.on('request', (r) => {
    if (!r.url().startsWith(own)) foreign.push(r.url());
  });
}
