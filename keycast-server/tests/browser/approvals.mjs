// A person approves a waiting request in keycast's web UI, in a real headless Chromium:
// log in, follow the sessions page's notice to the approval page, check what the request
// would do, approve it, and see nothing left waiting.
//
//   node approvals.mjs <base_url> <email> <password> <screenshot_dir> <authorization_id> <content>
//
// Prints one JSON line: {"steps", "screenshots", "errors"} or {"failure", "errors"}.
// The Rust test (tests/approvals.rs) checks the result and that the request then runs.
import { launch, logIn, recorder } from './lib.mjs';

const [base, email, password, shots, authorization, content] = process.argv.slice(2);
const run = recorder(shots);
const { errors, steps, screenshots } = run;
const browser = await launch();

try {
  const page = await (await browser.newContext({ viewport: { width: 1100, height: 800 } })).newPage();
  run.watch(page);
  await page.goto(`${base}/ui/login`);
  await logIn(page, base, email, password);

  const notice = page.locator(`a[href="/ui/approvals/${authorization}"]`);
  await run.visible(notice, 'waiting notice');
  await run.shoot(page, '1-sessions-with-notice');
  await Promise.all([page.waitForURL(`${base}/ui/approvals/${authorization}`), notice.click()]);

  await run.visible(page.locator('#waiting'), 'waiting table');
  const row = page.locator('#waiting tbody tr');
  if ((await row.count()) !== 1) throw new Error(`expected one waiting request, saw ${await row.count()}`);
  const summary = await row.locator('td').first().textContent();
  if (!summary.includes(content)) throw new Error(`the request shows ${summary}`);
  steps.push('request summary');
  await run.visible(row.locator('button[value=approve]'), 'approve button');
  await run.visible(row.locator('button[value=refuse]'), 'refuse button');
  await run.shoot(page, '2-waiting');

  await Promise.all([page.waitForSelector('#none-waiting'), row.locator('button[value=approve]').click()]);
  await run.visible(page.locator('#none-waiting'), 'nothing waiting');
  await run.shoot(page, '3-approved');
  console.log(JSON.stringify({ steps, screenshots, errors }));
} catch (e) {
  console.log(JSON.stringify({ failure: String(e), errors }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
