// Drives Debian's chromium (headless, through npm puppeteer-core) over Sluice's web console, as
// tests/integration/test_console.py asks: each page loads without console errors, the create form
// refuses bad input naming the field, the test-ingest panel writes a record the strand page then
// shows, and the pages are readable at 375 px wide. Screenshots go to OUT_DIR.
//   node console_check.mjs BASE_URL OUT_DIR
import puppeteer from 'puppeteer-core';

const [base, out] = process.argv.slice(2);
const results = [];
const check = (what, ok, detail) => results.push({ what, ok: !!ok, detail: detail === undefined ? null : String(detail).slice(0, 500) });
const browser = await puppeteer.launch({
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-extensions'],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', e => errors.push(String(e)));
  page.on('requestfailed', r => errors.push('request failed: ' + r.url()));
  await page.setViewport({ width: 1200, height: 800 });
  const visit = async (hash, waitFor) => {
    await page.goto(base + '/ui/' + hash, { waitUntil: 'networkidle0' });
    await page.waitForSelector(waitFor, { timeout: 10000 });
  };
  const pages = [['#/strands', 'table'], ['#/connectors', 'table'], ['#/new', '#create'], ['#/boboyka', '#boboyka-status'],
                 ['#/ingest', '#ingest'], ['#/strand/default', 'form']];
  for (const [hash, sel] of pages) {
    const before = errors.length;
    let ok = true, why = '';
    try { await visit(hash, sel); } catch (e) { ok = false; why = e.message; }
    await page.screenshot({ path: `${out}/page-${hash.replace(/[#/]+/g, '-').replace(/^-|-$/g, '')}.png`, fullPage: true });
    check(`${hash} loads (${sel} shown) without console errors`, ok && errors.length === before, why || errors.slice(before).join('; '));
  }

  // the create form: a webhook with a URL that is not one -> the error names config.url, at the field
  await visit('#/new', '#create');
  await page.select('#kind', 'webhook');
  await page.type('#name', 'console-bad');
  await page.type('#f-url', 'not a url');
  const mark = errors.length;
  await page.click('#create button[type=submit]');
  await page.waitForFunction(() => document.getElementById('f-url-error').textContent.length > 0, { timeout: 10000 });
  const refused = errors.splice(mark);  // the browser logs the refused request itself: expected here
  check('the browser saw exactly the one 400 of the refused create', refused.length === 1 && refused[0].includes('400'), refused.join('; '));
  const err = await page.$eval('#f-url-error', e => e.textContent);
  const invalid = await page.$eval('#f-url', e => e.getAttribute('aria-invalid'));
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  await page.screenshot({ path: `${out}/create-error.png`, fullPage: true });
  check('the create form shows the server\'s error at the url field, naming config.url', err.startsWith('config.url') && invalid === 'true', err);
  check('and focus moves to that field', focused === 'f-url', focused);
  // fixed: it is created, and the connector page opens
  await page.$eval('#f-url', e => { e.value = ''; });
  await page.type('#f-url', 'http://127.0.0.1:9/hook');
  await page.click('#create button[type=submit]');
  let title = '';
  try {
    await page.waitForFunction(() => location.hash.startsWith('#/connector/'), { timeout: 10000 });
    await page.waitForFunction(() => document.querySelector('h2') && document.querySelector('h2').textContent.includes('console-bad'), { timeout: 10000 });
    title = await page.$eval('h2', e => e.textContent);
  } catch (e) {
    title = await page.$$eval('.field-error', es => es.map(x => x.textContent).filter(Boolean).join(' | '));
  }
  check('with a valid URL the connector is created and its page shows', title.includes('console-bad'), title);

  // the test-ingest panel writes a record; the strand page shows it
  await visit('#/ingest', '#ingest');
  await page.$eval('#ingest-strand', e => { e.value = ''; });
  await page.type('#ingest-strand', 'console-test');
  await page.$eval('#ingest-payload', e => { e.value = '{"from": "the console", "n": 42}'; });
  await page.click('#ingest button[type=submit]');
  await page.waitForFunction(() => document.getElementById('ingest-answer').textContent.length > 0, { timeout: 10000 });
  const ans = await page.$eval('#ingest-answer', e => e.textContent);
  check('the test-ingest panel writes a record (201 with its hash)', ans.startsWith('201') && ans.includes('record_hash'), ans);
  await page.click('#bbk button[type=submit]');  // the panel's default: an audit_log event
  await page.waitForFunction(() => document.getElementById('bbk-answer').textContent.length > 0, { timeout: 10000 });
  const bans = await page.$eval('#bbk-answer', e => e.textContent);
  check('and a Boboyka event (201)', bans.startsWith('201'), bans);
  await visit('#/strand/console-test', 'pre.payload');
  const shown = await page.$$eval('pre.payload', es => es.map(e => e.textContent));
  await page.screenshot({ path: `${out}/strand.png`, fullPage: true });
  check('the strand page shows the record written from the panel', shown.some(s => s.includes('"the console"') && s.includes('42')), shown.join(' | '));
  // verify: the record's inclusion proof against the signed checkpoint, checked in the browser
  await page.click('button.verify');
  await page.waitForFunction(() => { const r = document.querySelector('.verify-result'); return r && r.textContent.length > 0; }, { timeout: 15000 });
  const verdict = await page.$eval('.verify-result', e => e.textContent);
  check('Verify checks the record\'s inclusion proof and the checkpoint signature in the browser', verdict.startsWith('verified'), verdict);
  // keyboard: the nav links and the form controls take focus with Tab
  await visit('#/ingest', '#ingest');
  const seen = new Set();
  for (let i = 0; i < 14; i++) {
    await page.keyboard.press('Tab');
    seen.add(await page.evaluate(() => document.activeElement.tagName + (document.activeElement.id ? '#' + document.activeElement.id : '')));
  }
  check('Tab reaches the links and the panel\'s fields and button', [...seen].some(s => s.startsWith('A')) && seen.has('TEXTAREA#ingest-payload') && [...seen].some(s => s.startsWith('BUTTON')), [...seen].join(' '));

  // 375 px wide: nothing wider than the screen
  await page.setViewport({ width: 375, height: 740 });
  for (const [hash, sel] of [['#/strands', 'table'], ['#/connectors', 'table'], ['#/new', '#create'], ['#/ingest', '#ingest']]) {
    await visit(hash, sel);
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    await page.screenshot({ path: `${out}/narrow-${hash.replace(/[#/]+/g, '')}.png`, fullPage: true });
    check(`${hash} at 375 px: no horizontal scroll of the page (${w} px)`, w <= 376, w);
  }
  check('no console errors in the whole run', errors.length === 0, errors.join('; '));
} finally {
  await browser.close();
}
console.log(JSON.stringify(results));
