// Walks keycast's team pages in a real headless Chromium, as two people would. The admin
// logs in, creates a team, adds the member and a generated key, makes a connection for
// herself and one for the member, reads the member's QR code back from a screenshot and
// lets an "app" sign with its token. The member, in a browser context of its own, logs
// in, finds the team, its key and only its own connection (with the signature), sees no
// admin form, and revokes its connection.
//
//   node web_ui_teams.mjs <base_url> <admin_email> <member_email> <password> <screenshot_dir>
//
// Prints one JSON line: {"team", "label", "uri", "qr", "token", "steps", "screenshots",
// "errors"} or {"failure", "steps", "errors"}. The Rust test (tests/web_ui_teams.rs)
// checks the result against the JSON API.
import { decodeQr, launch, logIn, recorder } from './lib.mjs';

const [base, adminEmail, memberEmail, password, shots] = process.argv.slice(2);
const run = recorder(shots);
const { errors, steps, screenshots } = run;
const browser = await launch();
const viewport = { viewport: { width: 1100, height: 900 } };

// Signs a kind-1 note over HTTP RPC, as an app holding `token` would.
async function appSigns(token) {
  const template = JSON.stringify({ kind: 1, content: 'from the team browser test', tags: [] });
  const response = await fetch(`${base}/api/nostr`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ method: 'sign_event', params: [template] }),
  });
  if (response.status !== 200) throw new Error(`the app could not sign: ${response.status}`);
  steps.push('app signed');
}

// Fills the admin's new-connection form and submits it; waits for the result page.
async function connect(page, label, member, kinds) {
  await page.selectOption('#new-connection select[name=key_id]', { index: 0 });
  await page.fill('#new-connection input[name=label]', label);
  await page.fill('#new-connection input[name=member]', member);
  if (kinds) {
    await page.check('#preset-kinds');
    await page.fill('#new-connection input[name=kinds]', kinds);
  } else {
    await page.check('#preset-full');
  }
  await page.click('#new-connection button:has-text("Create connection")');
  await page.waitForSelector('#bunker-uri');
}

try {
  const team = 'Ops <team> & co';
  const label = 'Bob <phone>';

  // The admin.
  const admin = await (await browser.newContext(viewport)).newPage();
  run.watch(admin);
  await admin.goto(`${base}/ui/login`);
  await logIn(admin, base, adminEmail, password);
  await admin.click('nav >> text=Teams');
  await admin.waitForURL(`${base}/ui/teams`);
  await run.visible(admin.locator('#no-teams'), 'no teams yet');
  await admin.fill('#team-name', team);
  await admin.click('button:has-text("Create team")');
  await admin.waitForURL(/\/ui\/teams\/[0-9a-f-]{36}$/);
  const teamUrl = admin.url();
  await run.visible(admin.locator('h1', { hasText: `Team ${team}` }), 'team created');

  await admin.fill('#member-email', memberEmail);
  await admin.selectOption('#member-role', 'member');
  await admin.click('button:has-text("Add member")');
  const memberRow = admin.locator('#members tbody tr', { hasText: memberEmail });
  await memberRow.waitFor();
  await run.visible(memberRow.locator('td', { hasText: /^member$/ }), 'member added');

  await admin.fill('#key-name', 'shared');
  await admin.click('button:has-text("Add a generated key")');
  const keyRow = admin.locator('#team-keys tbody tr', { hasText: 'shared' });
  await keyRow.waitFor();
  await run.visible(keyRow, 'team key added');
  const npub = (await keyRow.locator('code').textContent()).trim();
  if (!npub.startsWith('npub1')) throw new Error(`no npub in the key row: ${npub}`);

  // One connection for the admin herself, then the member's, shown once with its QR code.
  await connect(admin, 'Ann <laptop>', '', null);
  await admin.click('text=Back to the team');
  await admin.waitForURL(teamUrl);
  await run.shoot(admin, 'new-connection-form');
  await connect(admin, label, memberEmail, '1');
  await run.visible(admin.locator('#bunker-qr svg'), 'QR code');
  await run.visible(admin.locator('#for-whom', { hasText: memberEmail }), 'made for the member');
  const uri = (await admin.textContent('#bunker-uri')).trim();
  const token = (await admin.textContent('#rpc-token')).trim();
  const qr = decodeQr(await run.shoot(admin, 'connection-created'));
  await appSigns(token);
  await admin.click('text=Back to the team');
  await admin.waitForURL(teamUrl);
  const adminRows = admin.locator('#team-authorizations tbody tr');
  if ((await adminRows.count()) !== 2) throw new Error('the admin does not see both connections');
  await run.visible(adminRows.filter({ hasText: label }).locator('td', { hasText: memberEmail }),
    'admin sees whom it is for');
  await run.shoot(admin, 'team-as-admin');

  // The member, in a browser of its own.
  const member = await (await browser.newContext(viewport)).newPage();
  run.watch(member);
  await member.goto(`${base}/ui`);
  await member.waitForURL(`${base}/ui/login`);
  await logIn(member, base, memberEmail, password);
  await member.click('nav >> text=Teams');
  await member.waitForURL(`${base}/ui/teams`);
  const teamRow = member.locator('#teams tbody tr', { hasText: team });
  await run.visible(teamRow.locator('td', { hasText: /^member$/ }), 'member sees the team');
  await teamRow.locator('a').click();
  await member.waitForURL(teamUrl);
  const memberKey = member.locator('#team-keys tbody tr', { hasText: 'shared' });
  await run.visible(memberKey.locator('code', { hasText: npub }), 'member sees the key');
  const own = member.locator('#team-authorizations tbody tr');
  if ((await own.count()) !== 1) throw new Error(`the member sees ${await own.count()} connections`);
  if ((await member.locator('text=Ann <laptop>').count()) !== 0) {
    throw new Error("the member sees the admin's connection");
  }
  await run.visible(own.filter({ hasText: label }), 'member sees its own connection only');
  await run.visible(own.locator('td', { hasText: /^1$/ }), 'member sees the signature');
  const adminForms = '#add-member, #add-key, #new-connection, form.change-role, form.remove-member, select';
  if ((await member.locator(adminForms).count()) !== 0) throw new Error('the member sees an admin form');
  steps.push('member sees no admin form');
  await run.visible(member.locator('#leave button'), 'leave button');
  await run.shoot(member, 'team-as-member');
  await own.locator('button:has-text("Revoke")').click();
  await own.locator('text=Revoked').waitFor();
  if ((await own.locator('button').count()) !== 0) throw new Error('a revoked connection still has a button');
  steps.push('member revoked its connection');
  await run.shoot(member, 'member-revoked');

  console.log(JSON.stringify({ team, label, uri, qr, token, steps, screenshots, errors }));
} catch (e) {
  console.log(JSON.stringify({ failure: String(e), steps, errors }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
