// The web client in Debian's Chromium, through the real gateway of `telehealth up` (mTLS with the
// certificate each browser enrolled, tokens from the development sign-in): each role's screens,
// the refusals, accessibility, the nurse's offline upload queue, live updates (and watching again
// after a restart of the suite), and a video call.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  MEMBERS,
  cspViolations,
  launchBrowser,
  screenshot,
  seriousViolations,
  signInOnPage,
  signedIn,
  startSuite,
} from "./suite.mjs";

const PHONE = { width: 390, height: 844 };

/** Polls `condition` every 200 ms for up to 20 s. */
async function until(condition) {
  const deadline = Date.now() + 20_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not true within 20 s: ${condition}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
let suite;
let browser;
const dir = mkdtempSync(join(tmpdir(), "telehealth-certs-"));

/** The nurse, on her phone, asks a specialist `question` about her patient's first wound. */
async function nurseSendsRequest(question) {
  const nurse = await signedIn(browser, suite, MEMBERS.nurse, { dir, viewport: PHONE });
  await nurse.page.getByRole("link", { name: "Nouvelle évaluation" }).first().click();
  await nurse.page.getByLabel("Question posée").fill(question);
  await nurse.page.getByRole("button", { name: "Envoyer la demande" }).click();
  await nurse.page.getByText("Demande envoyée").waitFor();
  await nurse.context.close();
}

before(async () => {
  suite = await startSuite();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await suite?.stop();
});

after(() => {
  // Contexts without `bypassCSP` ran the client under the gateway's policy: nothing was blocked.
  assert.deepEqual(cspViolations, []);
});

test("without a client certificate the client does not even load on the main port", async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await assert.rejects(page.goto(`${suite.gateway}/`), /ERR_|net::/);
  await context.close();
});

test("the doctor's screens: agenda with today's appointments, patient file with the healing chart", async () => {
  // A browser set to another time zone still shows Paris times.
  const { context, page } = await signedIn(browser, suite, MEMBERS.doctor, {
    dir,
    bypassCSP: true,
    timezoneId: "Pacific/Auckland",
  });
  await page.waitForURL(/\/medecin$/);
  await page.getByText("● à jour en direct").waitFor();
  await showDemoAppointment(page);
  const first = page.locator("ol.agenda time").first();
  const paris = new Intl.DateTimeFormat("fr-FR", { timeZone: "Europe/Paris", timeStyle: "short" });
  assert.equal(await first.innerText(), paris.format(new Date(await first.getAttribute("datetime"))));
  assert.match(await page.locator("main").innerText(), /Prévu/);
  assert.deepEqual(await seriousViolations(page), []);
  await screenshot(page, "medecin-agenda");

  await page.getByRole("link", { name: /MARTIN/ }).first().click();
  await page.getByRole("heading", { name: /Dossier de MARTIN/ }).waitFor();
  await page.getByText("Identité qualifiée (INS)").waitFor();
  await page.locator("figure.chart svg").first().waitFor();
  await page.getByText("En amélioration").waitFor();
  assert.deepEqual(await seriousViolations(page), []);
  await screenshot(page, "medecin-dossier-patient");
  await context.close();
});

test("the administrator's screen: members, devices and sessions of the centre", async () => {
  const { context, page } = await signedIn(browser, suite, MEMBERS.centreAdmin, { dir, bypassCSP: true });
  await page.waitForURL(/\/admin$/);
  await page.getByRole("heading", { name: /Membres/ }).waitFor();
  const text = await page.locator("main").innerText();
  assert.match(text, /dr-martin/);
  assert.match(text, /Appareils enrôlés/);
  assert.match(text, /\(vous\)/);
  await page.getByRole("heading", { name: "Demandes envoyées" }).waitFor();
  assert.deepEqual(await seriousViolations(page), []);
  await screenshot(page, "admin");

  // The doctor's session (from the test before) ended, then the doctor's browser revoked.
  const sessions = page.locator("section", { hasText: "Sessions ouvertes" });
  const ends = await sessions.getByRole("button", { name: "Terminer" }).count();
  assert.ok(ends >= 1, "another member's session is listed");
  await sessions.getByRole("button", { name: "Terminer" }).first().click();
  await until(async () => (await sessions.getByRole("button", { name: "Terminer" }).count()) === ends - 1);
  page.once("dialog", (dialog) => void dialog.accept());
  const devices = page.locator("section", { hasText: "Appareils enrôlés" });
  const revokable = await devices.getByRole("button", { name: "Révoquer" }).count();
  await devices.locator("tr", { hasText: "dr-martin" }).getByRole("button", { name: "Révoquer" }).first().click();
  await until(async () => (await devices.getByRole("button", { name: "Révoquer" }).count()) === revokable - 1);
  await devices.getByText(/révoqué le/).first().waitFor();
  await context.close();
});

test("a nurse opening a specialist's screen is refused by the gateway, not just not shown", async () => {
  const { context, page } = await signedIn(browser, suite, MEMBERS.nurse, { dir, viewport: PHONE });
  assert.doesNotMatch(await page.locator("nav").innerText(), /Demandes reçues/);
  // Opening the address reloads the page, which signs in again (tokens live in memory only)
  // and comes back to the address asked for.
  await page.goto(`${suite.gateway}/specialiste`);
  await signInOnPage(page, MEMBERS.nurse);
  assert.match(page.url(), /\/specialiste$/);
  const alert = page.getByRole("alert");
  await alert.waitFor({ timeout: 20_000 });
  const text = await alert.innerText();
  assert.match(text, /Vous n’avez pas accès à cette fonction/);
  assert.match(text, /Détail technique/);
  await context.close();
});

/** A photo-like JPEG made by the browser (noise, so it does not compress: ~1–2 MB). */
async function makeJpeg(page, seed) {
  const base64 = await page.evaluate(async (seed) => {
    const canvas = new OffscreenCanvas(1600, 1200);
    const g = canvas.getContext("2d");
    const image = g.createImageData(1600, 1200);
    let x = seed * 2654435761;
    for (let i = 0; i < image.data.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      image.data[i] = i % 4 === 3 ? 255 : x & 255;
    }
    g.putImageData(image, 0, 0);
    const blob = await canvas.convertToBlob({ type: "image/jpeg", quality: 0.92 });
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let binary = "";
    for (const b of bytes) binary += String.fromCharCode(b);
    return btoa(binary);
  }, seed);
  return Buffer.from(base64, "base64");
}

test("the nurse records an assessment with three photos through a network cut and a reload; the doctor sees the alert", async () => {
  const { context, page } = await signedIn(browser, suite, MEMBERS.nurse, { dir, viewport: PHONE, bypassCSP: true });
  await page.waitForURL(/\/infirmiere$/);
  await page.getByRole("link", { name: "Nouvelle évaluation" }).first().waitFor();
  assert.deepEqual(await seriousViolations(page), []);
  await screenshot(page, "infirmiere-tournee");

  // Usable within 2 s on a throttled mobile network (Chromium's emulation, "Slow 4G"-like).
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 150,
    downloadThroughput: (1.6 * 1024 * 1024) / 8,
    uploadThroughput: (750 * 1024) / 8,
  });
  const started = Date.now();
  await page.getByRole("link", { name: "Nouvelle évaluation" }).first().click();
  await page.getByLabel("Longueur").waitFor();
  const elapsed = Date.now() - started;
  console.log(`nurse: the assessment screen was usable ${elapsed} ms after the tap (throttled: 150 ms RTT, 1.6 Mbit/s)`);
  assert.ok(elapsed < 2000, `the assessment screen took ${elapsed} ms on the throttled network`);
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });

  const photos = [await makeJpeg(page, 1), await makeJpeg(page, 2), await makeJpeg(page, 3)];
  const hashes = photos.map((p) => createHash("sha256").update(p).digest("hex")).sort();
  // Worse than the last week (3.5 × 2.4 cm): the doctor gets an area alert.
  await page.getByLabel("Longueur").fill("6,5");
  await page.getByLabel("Largeur").fill("4,5");
  await page.getByLabel("Type de tissu").selectOption({ label: "Fibrine (3)" });
  await page.getByLabel("Exsudat").selectOption({ label: "Abondant (3)" });
  assert.equal(await page.locator(".push-score output").innerText(), String(10 + 3 + 3));
  await page.getByLabel("Photos de la plaie").setInputFiles(
    photos.map((buffer, i) => ({ name: `plaie-${i + 1}.jpg`, mimeType: "image/jpeg", buffer })),
  );
  await screenshot(page, "infirmiere-evaluation");
  // Slow the upload so the cut lands in the middle of it.
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 50, downloadThroughput: -1, uploadThroughput: (2 * 1024 * 1024) / 8 });
  await page.getByRole("button", { name: "Enregistrer l’évaluation" }).click();
  await page.waitForURL(/\/infirmiere\/envois$/);
  await page.waitForFunction(() => [...document.querySelectorAll("progress")].some((p) => p.value > 0));
  await context.setOffline(true);
  await page.getByText("Pas de réseau").waitFor();
  await screenshot(page, "infirmiere-envois-hors-ligne");
  await page.reload().catch(() => undefined); // offline: the page cannot load
  await context.setOffline(false);
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await page.goto(`${suite.gateway}/infirmiere/envois`);
  await signInOnPage(page, MEMBERS.nurse);
  await page.locator('[data-state="done"]').waitFor({ timeout: 120_000 });
  const received = (await page.locator(".hashes code").allTextContents()).sort();
  assert.deepEqual(received, hashes, "each photo arrived once, byte for byte");
  await screenshot(page, "infirmiere-envois");
  await context.close();

  const doctor = await signedIn(browser, suite, MEMBERS.doctor, { dir });
  await doctor.page.getByRole("link", { name: "Alertes plaies" }).click();
  await doctor.page.getByText("Surface en augmentation").first().waitFor({ timeout: 20_000 });
  await screenshot(doctor.page, "medecin-alertes");
  const alerts = await doctor.page.locator("li.alert").count();
  const first = doctor.page.locator("li.alert").first();
  await first.getByLabel("Commentaire (conduite à tenir)").fill("Vu ; consultation avancée à demain.");
  await first.getByRole("button", { name: "Prendre connaissance" }).click();
  await until(async () => (await doctor.page.locator("li.alert").count()) === alerts - 1);
  await doctor.context.close();
});

test("the specialist sees a new request appear live, claims it and answers; the doctor reads the answer", async () => {
  const specialist = await signedIn(browser, suite, MEMBERS.specialist, { dir, bypassCSP: true });
  await specialist.page.getByText("● mise à jour en direct").waitFor();

  await nurseSendsRequest("L’ulcère s’agrandit malgré la compression : avis sur la prise en charge ?");

  const row = specialist.page.locator("tr", { hasText: "L’ulcère s’agrandit" });
  await row.waitFor({ timeout: 20_000 });
  assert.deepEqual(await seriousViolations(specialist.page), []);
  await screenshot(specialist.page, "specialiste-demandes");
  await row.getByRole("button", { name: "Prendre en charge" }).click();
  await specialist.page.getByRole("heading", { name: /Demande de télé-expertise/ }).waitFor();
  await specialist.page.getByLabel("Impression diagnostique").fill("Ulcère veineux en aggravation, sans signe d’infection.");
  await specialist.page.getByLabel("Conduite à tenir").selectOption({ label: "Traiter" });
  await specialist.page.getByLabel("Précisions").fill("Renforcer la compression ; revoir dans 15 jours.");
  await screenshot(specialist.page, "specialiste-reponse");
  await specialist.page.getByRole("button", { name: "Envoyer la réponse" }).click();
  await specialist.page.getByText(/Réponse envoyée le/).waitFor();
  await specialist.page.getByRole("link", { name: "Activité" }).click();
  await specialist.page.getByRole("heading", { name: "Réponses du mois" }).waitFor();
  assert.match(await specialist.page.locator("main").innerText(), /1 demande\(s\) répondue\(s\), dont 0 en retard/);
  await screenshot(specialist.page, "specialiste-activite");
  await specialist.context.close();

  const doctor = await signedIn(browser, suite, MEMBERS.doctor, { dir });
  await showDemoAppointment(doctor.page);
  await doctor.page.getByRole("link", { name: /MARTIN/ }).first().click();
  await doctor.page.getByText("Renforcer la compression").waitFor({ timeout: 20_000 });
  await doctor.context.close();
});

/**
 * Shows the day of the demo's first appointment in the doctor's agenda. It is a few minutes after
 * the suite started: tomorrow's when that was just before midnight in Paris. Its reason is on the
 * page at once, unlike the patient's name, which is looked up after.
 */
async function showDemoAppointment(page) {
  await page.locator("ol.agenda, p.hint:has-text('Aucun rendez-vous')").first().waitFor();
  if ((await page.getByText("Suivi de l’ulcère de jambe").count()) === 0) {
    await page.getByRole("button", { name: "Période suivante" }).click();
  }
  await page.getByText("Suivi de l’ulcère de jambe").waitFor();
}

/** Frames decoded from the other side, summed over the call's connections. */
async function framesDecoded(page) {
  return page.evaluate(async () => {
    let frames = 0;
    for (const connection of window.telehealthCall?.connections() ?? []) {
      (await connection.getStats()).forEach((report) => {
        if (report.type === "inbound-rtp" && report.kind === "video") frames += report.framesDecoded ?? 0;
      });
    }
    return frames;
  });
}

/** Waits until the page has decoded more than `count` frames in all (30 s at most). */
async function waitForFrames(page, count) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const frames = await framesDecoded(page);
    if (frames > count) return frames;
    if (Date.now() > deadline) throw new Error(`only ${frames} video frames decoded, expected more than ${count}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

test("a doctor and a nurse hold a teleconsultation: both decode video; a still from the second camera lands in the patient's file", async () => {
  const doctor = await signedIn(browser, suite, MEMBERS.doctor, { dir });
  const nurse = await signedIn(browser, suite, MEMBERS.nurse, { dir, viewport: PHONE });
  await nurse.page.getByRole("link", { name: "Rejoindre la téléconsultation" }).first().click();
  await nurse.page.getByText("En attente des autres participants").waitFor({ timeout: 20_000 });
  // The doctor opens the same appointment (its address; a reload signs in again and comes back).
  const appointment = nurse.page.url().split("/").pop();
  await doctor.page.goto(`${suite.gateway}/medecin/consultation/${appointment}`);
  await signInOnPage(doctor.page, MEMBERS.doctor);
  for (const side of [doctor.page, nurse.page]) await waitForFrames(side, 10);
  console.log(`video: doctor decoded ${await framesDecoded(doctor.page)} frames, nurse ${await framesDecoded(nurse.page)}`);
  await screenshot(doctor.page, "medecin-teleconsultation");

  const cameras = await doctor.page.locator("#camera option").count();
  assert.equal(cameras, 3, "the fake cameras are offered");
  const second = await doctor.page.locator("#camera option").nth(2).getAttribute("value");
  await doctor.page.locator("#camera").selectOption(second);
  await waitForFrames(nurse.page, (await framesDecoded(nurse.page)) + 10);
  await doctor.page.getByRole("button", { name: "Prendre une photo pour une télé-expertise" }).click();
  await doctor.page.getByText("Photo ajoutée à une nouvelle demande").waitFor({ timeout: 30_000 });
  await doctor.page.getByRole("button", { name: "Terminer" }).click();
  await doctor.page.getByRole("heading", { name: /Dossier de MARTIN/ }).waitFor({ timeout: 20_000 });
  await doctor.page.locator("article.request", { hasText: "Brouillon" }).locator("img").first().waitFor({ timeout: 20_000 });
  await screenshot(doctor.page, "medecin-dossier-apres-consultation");
  await doctor.context.close();
  await nurse.context.close();
});

test("after a restart of the suite, the specialist's open inbox watches again by itself and shows a new request live", async () => {
  const specialist = await signedIn(browser, suite, MEMBERS.specialist, { dir });
  await specialist.page.getByText("● mise à jour en direct").waitFor();

  // The operator restarts the suite (same data, same addresses): the watch ends with the old
  // process, and the page watches again, with pauses, until the new one answers.
  const restarting = suite.restart();
  await specialist.page.getByText("○ connexion au direct…").waitFor({ timeout: 20_000 });
  await restarting;
  const restarted = Date.now();
  await specialist.page.getByText("● mise à jour en direct").waitFor({ timeout: 60_000 });
  console.log(`inbox: live again ${Date.now() - restarted} ms after the suite answered`);

  // A request sent now reaches the page through the new watch, without reloading it.
  const question = `Plaie après redémarrage (${Date.now()}) : avis ?`;
  await nurseSendsRequest(question);
  await specialist.page.locator("tr", { hasText: question }).waitFor({ timeout: 20_000 });
  await specialist.context.close();
});
