// What the web UI's browser scripts (web_ui.mjs, web_ui_teams.mjs) share: launching
// Chromium, recording console/CSP errors, steps and screenshots, logging in, and reading
// a QR code back from a screenshot.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import jsQR from 'jsqr';
import { PNG } from 'pngjs';
import { chromium } from 'playwright-core';

// Chromium is KEYCAST_TEST_CHROMIUM (default /usr/bin/chromium).
export function launch() {
  return chromium.launch({
    executablePath: process.env.KEYCAST_TEST_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // Containers often run as root, where Chromium's sandbox cannot start.
    args: ['--no-sandbox'],
  });
}

// The record of one run: every console error of every watched page, the steps seen to
// work, and the screenshots taken into `shots`.
export function recorder(shots) {
  const errors = [];
  const steps = [];
  const screenshots = [];
  return {
    errors,
    steps,
    screenshots,
    watch(page) {
      page.setDefaultTimeout(30_000);
      // CSP violations show up as console errors.
      page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
      page.on('pageerror', (e) => errors.push(String(e)));
    },
    async shoot(page, name) {
      const path = join(shots, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      screenshots.push(path);
      return path;
    },
    // Fails the run unless `locator` is visible; records `what` as a step.
    async visible(locator, what) {
      if (!(await locator.isVisible())) throw new Error(`${what} is not visible`);
      steps.push(what);
    },
  };
}

// Logs in on the form `page` shows and waits for the home page.
export async function logIn(page, base, email, password) {
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForURL(`${base}/ui`), page.click('button[type=submit]')]);
}

// The text of the QR code in the PNG at `path`, or null.
export function decodeQr(path) {
  const png = PNG.sync.read(readFileSync(path));
  const code = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
  return code ? code.data : null;
}
