// Saves a screenshot of a page of the Temporal UI once it has rendered `waitFor` text.
// usage: node screenshot.mjs URL OUT.png WAIT_FOR_TEXT
// A second screenshot, OUT-metadata.png, shows the run's summary and details (User Metadata tab).
import { createRequire } from 'node:module';
const require = createRequire(process.env.OMEGA_TOOLS + '/node_modules/');
const puppeteer = require('puppeteer-core');

const [url, out, waitFor] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--hide-scrollbars'],
  defaultViewport: { width: 1440, height: 1400 },
});
try {
  const page = await browser.newPage();
  await page.goto(url, { waitUntil: 'networkidle2', timeout: 60000 });
  await page.waitForFunction((t) => document.body.innerText.includes(t), { timeout: 60000 }, waitFor);
  await new Promise((r) => setTimeout(r, 1500)); // let the event history settle
  await page.screenshot({ path: out, fullPage: true });
  const [tab] = await page.$$('xpath/.//a[contains(., "User Metadata")] | .//button[contains(., "User Metadata")]');
  if (tab) {
    await tab.click();
    await new Promise((r) => setTimeout(r, 1500));
    await page.screenshot({ path: out.replace(/\.png$/, '-metadata.png'), fullPage: true });
  }
} finally {
  await browser.close();
}
