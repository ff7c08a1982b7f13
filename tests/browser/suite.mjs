// The suite under test and the browser: `telehealth up` on free ports in a new data directory
// (demo data, the built web client), Debian's Chromium with fake cameras, and the steps every
// test shares (enrol a browser, sign in as a demo member).

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

export const ROOT = resolve(new URL("../..", import.meta.url).pathname);
export const SCREENSHOTS = join(ROOT, "docs", "screenshots");

export const MEMBERS = {
  doctor: "10000000017",
  nurse: "10000000025",
  specialist: "10000000066",
  dermatologist: "10000000058",
  centreAdmin: "10000000033",
};

const BINARY =
  process.env.TELEHEALTH_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "debug", "telehealth");

/**
 * Starts `telehealth up`; resolves once connection.json says where it listens. With `again`
 * (a suite started before and stopped), starts it again on its data directory and ports.
 */
export async function startSuite(again) {
  if (!existsSync(BINARY)) throw new Error(`no telehealth binary at ${BINARY}: cargo build first`);
  const dataDir = again?.dataDir ?? join(mkdtempSync(join(tmpdir(), "telehealth-browser-")), "data");
  const env = {
    ...process.env,
    TELEHEALTH_GATEWAY__LISTEN: again ? new URL(again.gateway).host : "127.0.0.1:0",
    TELEHEALTH_SHUTDOWN__DRAIN_SECONDS: "2",
  };
  if (again) env.TELEHEALTH_GATEWAY__SIGN_IN_LISTEN = new URL(again.signIn).host;
  delete env.TELEHEALTH_CONFIG;
  delete env.TELEHEALTH_BIN; // ours; every other TELEHEALTH_ variable is a setting
  const file = join(dataDir, "connection.json");
  rmSync(file, { force: true });
  const child = spawn(BINARY, ["up", "--data-dir", dataDir], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const started = Date.now();
  while (!existsSync(file)) {
    if (child.exitCode !== null) throw new Error(`telehealth up exited:\n${output.slice(-4000)}`);
    if (Date.now() - started > 180_000) throw new Error(`telehealth up not healthy in 3 min:\n${output.slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await new Promise((r) => setTimeout(r, 300));
  const connection = JSON.parse(readFileSync(file, "utf8"));
  if (!output.includes("web client")) throw new Error(`the suite serves no web client:\n${output.slice(-4000)}`);
  const suite = {
    gateway: `https://${connection.gateway}`,
    signIn: `https://${connection.sign_in}`,
    dataDir,
    stop: () =>
      new Promise((done) => {
        if (child.exitCode !== null) return done();
        child.once("exit", done);
        child.kill("SIGTERM");
      }),
  };
  /** Stops the suite and starts it again, as an operator's restart does; the same addresses. */
  suite.restart = async () => {
    await suite.stop();
    const next = await startSuite(suite);
    suite.stop = next.stop;
  };
  return suite;
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // Fake cameras (and a fake microphone), granted without a prompt. Chromium's second fake
      // camera is a depth camera (Y16, which WebRTC does not encode): the third is the second
      // ordinary one, the "dermatoscope" of the tests.
      "--use-fake-device-for-media-stream=device-count=3",
      "--use-fake-ui-for-media-stream",
    ],
  });
}

/**
 * Enrols a browser as a demo member the way a person does: the sign-in port without a
 * certificate, the development sign-in, the PKCS#12 file downloaded and its one-time password.
 */
export async function enrol(browser, suite, rpps, dir) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, acceptDownloads: true });
  const page = await context.newPage();
  await page.goto(`${suite.signIn}/`);
  await page.getByLabel("Membre de démonstration").selectOption(rpps);
  await page.getByRole("button", { name: "Se connecter" }).click();
  const link = page.getByRole("link", { name: /Télécharger le certificat/ });
  await link.waitFor({ timeout: 20_000 });
  const passphrase = (await page.locator(".secret").innerText()).trim();
  const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
  const pfxPath = join(dir, `${rpps}-${Date.now()}.p12`);
  await download.saveAs(pfxPath);
  await context.close();
  return { pfxPath, passphrase };
}

/** What Chromium reported as blocked by the Content-Security-Policy (must stay empty). */
export const cspViolations = [];

/** A browser context holding the member's certificate, signed in, on their home screen. */
export async function signedIn(browser, suite, rpps, { dir, viewport, bypassCSP = false, timezoneId } = {}) {
  const certificate = await enrol(browser, suite, rpps, dir);
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: viewport ?? { width: 1280, height: 900 },
    bypassCSP,
    timezoneId,
    clientCertificates: [{ origin: suite.gateway, ...certificate }],
  });
  const page = await context.newPage();
  page.on("pageerror", (error) => console.log(`[${rpps}] page error: ${error.message}`));
  page.on("console", (message) => {
    if (/Content.Security.Policy/i.test(message.text())) cspViolations.push(`[${rpps}] ${message.text()}`);
  });
  await page.goto(`${suite.gateway}/`);
  await signInOnPage(page, rpps);
  return { context, page, certificate };
}

/** The sign-in form on the main port (the enrolled browser: `this_device`). */
export async function signInOnPage(page, rpps) {
  await page.getByLabel("Membre de démonstration").selectOption(rpps);
  await page.getByRole("button", { name: "Se connecter" }).click();
  await page.getByRole("button", { name: "Se déconnecter" }).waitFor({ timeout: 20_000 });
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** axe-core's serious and critical violations on the page (needs a context with bypassCSP). */
export async function seriousViolations(page) {
  const source = readFileSync(join(ROOT, "tests/browser/node_modules/axe-core/axe.min.js"), "utf8");
  await page.addScriptTag({ content: source });
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
}
