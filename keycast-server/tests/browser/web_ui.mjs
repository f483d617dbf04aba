// Walks keycast's web UI in a real headless Chromium, as a person would: log in, create a
// bunker connection, read its QR code back from a screenshot, revoke it, log out.
//
//   node web_ui.mjs <base_url> <email> <password> <screenshot_dir>
//
// Chromium is KEYCAST_TEST_CHROMIUM (default /usr/bin/chromium). Prints one JSON line:
// {"uri", "qr", "label", "session", "steps", "screenshots", "errors"} or
// {"failure", "errors"}. The Rust test (tests/web_ui.rs) checks the result.
import { decodeQr, launch, logIn, recorder } from './lib.mjs';

const [base, email, password, shots] = process.argv.slice(2);
const run = recorder(shots);
const { errors, steps, screenshots } = run;
const [watch, shoot, visible] = [run.watch, run.shoot, run.visible];
const browser = await launch();

try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  watch(page);

  // Without a session the UI sends the browser to the login form.
  await page.goto(`${base}/ui`);
  await page.waitForURL(`${base}/ui/login`);
  await shoot(page, '1-login');
  await logIn(page, base, email, password);
  await visible(page.locator('nav'), 'nav bar');
  await visible(page.locator('#no-sessions'), 'empty sessions note');

  // A new connection that may sign kinds 1 and 7 only.
  const label = 'Notes <in> Chromium';
  await page.click('nav >> text=New bunker connection');
  await page.waitForURL(`${base}/ui/connect/new`);
  await page.selectOption('select[name=key_id]', { index: 0 });
  await page.fill('input[name=label]', label);
  await page.check('#preset-kinds');
  await page.fill('input[name=kinds]', '1, 7');
  await shoot(page, '2-new-connection');
  await page.click('button:has-text("Create connection")');
  await page.waitForSelector('#bunker-uri');
  await visible(page.locator('#bunker-qr svg'), 'QR code');
  await visible(page.locator('#rpc-token'), 'RPC token');
  const uri = (await page.textContent('#bunker-uri')).trim();
  const qr = decodeQr(await shoot(page, '3-connection-created'));

  // The sessions table with its Revoke button; revoke.
  await page.click('nav >> text=App sessions');
  await page.waitForURL(`${base}/ui`);
  const row = page.locator('#sessions tbody tr', { hasText: label });
  await visible(page.locator('#sessions'), 'sessions table');
  await visible(row.locator('button:has-text("Revoke")'), 'revoke button');
  await shoot(page, '4-sessions');
  await Promise.all([page.waitForURL(`${base}/ui`), row.locator('button:has-text("Revoke")').click()]);
  await visible(row.locator('text=Revoked'), 'revoked status');
  if (await row.locator('button').count() !== 0) throw new Error('a revoked session still has a button');
  await shoot(page, '5-revoked');

  // Log out; the old cookie must not open the UI any more.
  const session = (await context.cookies()).find((c) => c.name === 'keycast_session')?.value;
  await Promise.all([page.waitForURL(`${base}/ui/login`), page.click('#logout')]);
  await shoot(page, '6-logged-out');
  if ((await context.cookies()).some((c) => c.name === 'keycast_session')) {
    throw new Error('the cookie is still set after logout');
  }
  const stale = await browser.newContext();
  await stale.addCookies([{ name: 'keycast_session', value: session, url: base }]);
  const again = await stale.newPage();
  watch(again);
  await again.goto(`${base}/ui`);
  if (again.url() !== `${base}/ui/login`) throw new Error(`the old cookie opened ${again.url()}`);
  steps.push('old cookie refused');

  console.log(JSON.stringify({ uri, qr, label, session, steps, screenshots, errors }));
} catch (e) {
  console.log(JSON.stringify({ failure: String(e), steps, errors }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
