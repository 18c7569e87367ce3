// Drives the dashboard in a real headless Chromium (Debian's /usr/bin/chromium through playwright-core,
// from dashboard/frontend's npm packages) while tests/dashboard/test_dashboard_browser.py runs the
// dashboard-tour scenario in the sandbox. What a person would do and see:
//   1. the page goes live and lists radiology/resnet50;
//   2. the canary of v2 appears and its weight MOVES (20% -> 50%) with every chart drawn from
//      Prometheus -> screenshot canary.png (the one docs/ keeps);
//   3. v2 is ROLLED BACK: phase RolledBack, a rolledBack row in the audit history -> rolled-back.png;
//   4. the canary of v3 appears; the Abort button is pressed (the confirm dialog accepted) ->
//      an aborted row whose reason names who pressed it -> aborted.png.
// Prints one JSON line with what it observed; exit 1 (with the reason) when a step times out.
//
// env: DASHBOARD_URL, SHOTS_DIR, FRONTEND_DIR (where playwright-core is installed), STEP_TIMEOUT_MS
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.FRONTEND_DIR, 'package.json'));
const { chromium } = require('playwright-core');

const url = process.env.DASHBOARD_URL;
const shots = process.env.SHOTS_DIR;
const stepTimeout = Number(process.env.STEP_TIMEOUT_MS || 60000);
const t0 = Date.now();
const observed = { weights: [], phases: [], steps: {}, consoleErrors: [], screenshots: {} };
const mark = (name) => { observed.steps[name] = (Date.now() - t0) / 1000; };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
let failed = null;
try {
  const page = await browser.newPage({ viewport: { width: 1500, height: 1350 } });
  page.on('console', (msg) => { if (msg.type() === 'error') observed.consoleErrors.push(msg.text()); });
  page.on('pageerror', (err) => observed.consoleErrors.push(String(err)));
  page.on('dialog', (dialog) => dialog.accept());

  // What the detail view shows right now (read from the DOM, as a person reads it).
  const read = () => page.evaluate(() => {
    const text = (sel) => (document.querySelector(sel) || {}).textContent || '';
    return {
      phase: text('#detail [data-testid=phase]'),
      canary: text('[data-testid=fact-canary]'),
      weight: text('[data-testid=fact-detail-weight]'),
      history: [...document.querySelectorAll('[data-testid=history-row]')].map((r) => ({ action: r.dataset.action, text: r.textContent })),
      points: Object.fromEntries([...document.querySelectorAll('figure.chart')].map((f) => [f.dataset.testid, Number(f.dataset.points || 0)])),
      live: text('[data-testid=live]'),
    };
  });
  let last = {};
  const sample = async () => {
    const now = await read();
    const t = (Date.now() - t0) / 1000;
    if (now.weight !== last.weight || now.canary !== last.canary) observed.weights.push({ t, canary: now.canary, weight: now.weight });
    if (now.phase !== last.phase) observed.phases.push({ t, phase: now.phase });
    last = now;
    return now;
  };
  const until = async (name, predicate) => {
    const deadline = Date.now() + stepTimeout;
    for (;;) {
      const now = await sample();
      if (predicate(now)) { mark(name); return now; }
      if (Date.now() > deadline) throw new Error(`timed out waiting for: ${name}; last seen ${JSON.stringify(now).slice(0, 600)}`);
      await page.waitForTimeout(100);
    }
  };
  const shot = async (name) => {
    const file = path.join(shots, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    observed.screenshots[name] = file;
  };

  await page.goto(url);
  await until('live', (s) => s.live === 'live');
  await page.locator('[data-testid="md-row-radiology-resnet50"]').click();
  await until('canary v2 at 20%', (s) => s.canary === 'v2' && s.weight === '20%');
  const everyChartDrawn = (s) => Object.keys(s.points).length === 6 && Object.values(s.points).every((n) => n > 0);
  await until('canary v2 at 50% with every chart drawn', (s) => s.canary === 'v2' && s.weight === '50%' && everyChartDrawn(s));
  await page.waitForTimeout(600); // let uPlot paint the last data
  await shot('canary');
  await page.waitForTimeout(2500); // more of the canary in the charts, if it is still at 50%
  const later = await sample();
  if (later.canary === 'v2' && later.weight === '50%') await shot('canary');
  await until('v2 rolled back', (s) => s.phase === 'RolledBack' && s.history.some((h) => h.action === 'rolledBack'));
  await shot('rolled-back');
  await until('canary v3 live', (s) => s.canary === 'v3' && ['20%', '50%'].includes(s.weight));
  await page.locator('[data-testid="action-abort"]').click();
  mark('abort clicked');
  await page.locator('[data-testid="action-result"]', { hasText: 'requested by' }).waitFor({ timeout: 10000 });
  observed.actionResult = await page.locator('#action-result').textContent();
  mark('abort accepted');
  const done = await until('v3 aborted', (s) => s.history.some((h) => h.action === 'aborted') && s.canary === '—');
  observed.abortRecord = done.history.find((h) => h.action === 'aborted').text;
  await shot('aborted');
} catch (err) {
  failed = String(err && err.stack ? err.stack : err);
} finally {
  await browser.close();
}
observed.failed = failed;
observed.seconds = (Date.now() - t0) / 1000;
console.log(JSON.stringify(observed));
process.exit(failed ? 1 : 0);
