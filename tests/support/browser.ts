/**
 * Headless Chromium for browser tests: Debian's /usr/bin/chromium driven by
 * playwright-core, with the launch flags that work on these machines.
 * Playwright gives each launch a fresh temporary profile and removes it on
 * close. Tests skip when there is no Chromium (`ignore: !HAS_CHROMIUM`).
 */
import { type Browser, chromium, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

export const HAS_CHROMIUM = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Launches headless Chromium; the caller closes it in a `finally`. */
export async function launchBrowser(): Promise<Browser> {
  return await chromium.launch({
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
}

/** How long a page may take for what a test waits for (playwright options). */
export const WAIT = { timeout: 20_000 };

/** Console errors and uncaught exceptions of a page (CSP violations land here too). */
export function collectPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  return errors;
}
