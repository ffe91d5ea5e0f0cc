// Drives the `masklab serve` page in Debian's chromium (headless, through playwright-core):
// uploads a photo through the file input on a desktop-sized and a phone-sized window, uploads a
// file that is not an image, and runs the webcam view on chromium's fake camera. Prints one JSON
// object with what the page showed; writes screenshots into OUT_DIR.
//
// usage: node serve_page.mjs URL PHOTO BAD_FILE OUT_DIR
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

const [url, photo, badFile, outDir] = process.argv.slice(2);
if (!outDir) {
  console.error("usage: node serve_page.mjs URL PHOTO BAD_FILE OUT_DIR");
  process.exit(2);
}
const executablePath = process.env.MASKLAB_CHROMIUM || "/usr/bin/chromium";
// Without these, chromium's background connections fail against a closed network.
const flags = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run",
  // A synthetic camera, allowed without asking: what the webcam view is tested with.
  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
];
const TIMEOUT = 30000;

/// A fresh profile per window size, removed afterwards.
async function withPage(options, work) {
  const profile = mkdtempSync(join(tmpdir(), "masklab-chromium-"));
  const context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: flags, timeout: TIMEOUT, ...options });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(TIMEOUT);
    const problems = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    // Failed requests are listed as such (the test provokes one); any other console error is a problem.
    const failed = [];
    page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console: ${m.text()}`); });
    page.on("response", (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${new URL(r.url()).pathname}`); });
    page.on("request", (r) => { if (!r.url().startsWith(url) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) problems.push(`external request: ${r.url()}`); });
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById("status").textContent === "ready");
    const shown = await work(page, problems);
    shown.failed = failed;
    return shown;
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

/// Picks `file` through the page's file input and waits for the page to show its answer.
async function upload(page, file) {
  await page.setInputFiles("#file", file);
  await page.waitForFunction(() => document.getElementById("meta").textContent.includes("px"));
  return {
    label: await page.textContent("[data-testid=label]"),
    bars: await page.$$eval(".task .bar", (bars) => bars.length),
    drawn: await page.$eval("#view", (c) => c.width > 10 && getComputedStyle(c).display !== "none"),
  };
}

/// Drops `file` on the photo area, or pastes it, as a person's browser would deliver it.
async function deliver(page, how, file) {
  const b64 = readFileSync(file).toString("base64");
  const type = file.toLowerCase().endsWith(".png") ? "image/png" : "image/jpeg";
  await page.evaluate(({ how, b64, name, type }) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, { type }));
    document.getElementById("meta").textContent = "";
    if (how === "drop") {
      document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
    } else {
      window.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true }));
    }
  }, { how, b64, name: basename(file), type });
  await page.waitForFunction(() => document.getElementById("meta").textContent.includes("px"));
  return await page.textContent("[data-testid=label]");
}

const result = {};
result.desktop = await withPage({ viewport: { width: 1280, height: 860 } }, async (page, problems) => {
  const shown = await upload(page, photo);
  await page.screenshot({ path: join(outDir, "desktop.png"), fullPage: true });
  // A file that is not an image: the page shows the server's error.
  await page.setInputFiles("#file", badFile);
  await page.waitForFunction(() => document.getElementById("error").classList.contains("shown"));
  shown.error = await page.textContent("#error");
  await page.screenshot({ path: join(outDir, "desktop-error.png") });
  // The webcam: frames from chromium's fake camera, classified a few times a second.
  await page.click("#camera");
  await page.waitForFunction(() => document.getElementById("meta").textContent.startsWith("webcam"));
  await page.waitForFunction(() => !document.getElementById("error").classList.contains("shown"));
  shown.webcamLabel = await page.textContent("[data-testid=label]");
  shown.webcamButton = await page.textContent("#camera");
  await page.screenshot({ path: join(outDir, "desktop-webcam.png") });
  await page.click("#camera");
  shown.problems = problems;
  return shown;
});
result.phone = await withPage(
  { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
  async (page, problems) => {
    const shown = await upload(page, photo);
    shown.scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
    await page.screenshot({ path: join(outDir, "phone.png"), fullPage: true });
    shown.droppedLabel = await deliver(page, "drop", photo);
    shown.pastedLabel = await deliver(page, "paste", photo);
    shown.problems = problems;
    return shown;
  },
);
console.log(JSON.stringify(result));
