// Shared by the browser tests: Debian's chromium through playwright-core, started the same way
// every time (headless, no sandbox as root, no background traffic: every request the browser
// makes is one the test asked for, to 127.0.0.0/8).

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

/** Debian's chromium (CI installs it); PI_GATEWAY_CHROMIUM points elsewhere. */
export const CHROMIUM = process.env.PI_GATEWAY_CHROMIUM || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
	"--headless",
	"--no-sandbox",
	"--disable-gpu",
	"--no-first-run",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
	"--disable-quic",
];
/** Generous: the machine is shared and loaded. */
export const UI_TIMEOUT_MS = 30_000;

/**
 * Launches chromium with a persistent profile in `profileDir` and returns the context and its
 * first tab. Fails (never skips) when the browser is missing: a missing browser must not look
 * like a pass.
 * @param {string} profileDir
 * @param {{ viewport?: { width: number, height: number } }} [options]
 */
export async function launchChromium(profileDir, options = {}) {
	assert.ok(
		existsSync(CHROMIUM),
		`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run the browser tests`,
	);
	const context = await chromium.launchPersistentContext(profileDir, {
		executablePath: CHROMIUM,
		headless: true,
		args: CHROMIUM_ARGS,
		viewport: options.viewport ?? { width: 900, height: 900 },
		timeout: UI_TIMEOUT_MS,
	});
	const tab = context.pages()[0] ?? (await context.newPage());
	tab.setDefaultTimeout(UI_TIMEOUT_MS);
	return { context, tab };
}

/**
 * Pushes what goes wrong in `tab` onto `problems`, one line each: uncaught page errors,
 * console errors and failed requests.
 * @param {import("playwright-core").Page} tab
 * @param {string[]} problems
 */
export function recordProblems(tab, problems) {
	tab.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
	tab.on("console", (message) => {
		if (message.type() === "error") problems.push(`console.error: ${message.text()}`);
	});
	tab.on("requestfailed", (request) => problems.push(`requestfailed: ${request.url()} ${request.failure()?.errorText}`));
}
