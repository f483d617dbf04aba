// Walks keycast's OAuth consent page in a real headless Chromium, as a person would:
// open the authorize URL, log in, pick the key, approve, land on the app's redirect URI.
//
//   node oauth_consent.mjs <authorize_url> <email> <password>
//
// Chromium is KEYCAST_TEST_CHROMIUM (default /usr/bin/chromium). Prints one JSON line:
// {"url", "consent", "errors"} or {"failure", "errors"}.
import { chromium } from 'playwright-core';

const [authorizeUrl, email, password] = process.argv.slice(2);
const redirectUri = new URL(authorizeUrl).searchParams.get('redirect_uri');
const errors = [];
const browser = await chromium.launch({
  executablePath: process.env.KEYCAST_TEST_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Containers often run as root, where Chromium's sandbox cannot start.
  args: ['--no-sandbox'],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(30_000);
  // CSP violations (e.g. a blocked form-action redirect) show up as console errors.
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));

  await page.goto(authorizeUrl);
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');

  await page.waitForSelector('select[name=key_id]');
  const consent = await page.textContent('body');
  await page.selectOption('select[name=key_id]', { index: 0 });
  await Promise.all([
    page.waitForURL((url) => url.href.startsWith(redirectUri)),
    page.click('button[value=approve]'),
  ]);
  console.log(JSON.stringify({ url: page.url(), consent, errors }));
} catch (e) {
  console.log(JSON.stringify({ failure: String(e), errors }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
