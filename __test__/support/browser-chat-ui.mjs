// Shared by the browser tests of the chat example (chat-browser, chat-long-history): the page of
// examples/chat-ui, built by its own build script and served by its own static server, open in
// headless chromium against a gateway on another origin (another port of 127.0.0.1).

import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildChatUi } from "../../examples/chat-ui/build.mjs";
import { startStaticServer } from "../../examples/chat-ui/serve.mjs";
import { launchChromium, recordProblems } from "./browser-chromium.mjs";
import { removeDir } from "./chat-fixture.mjs";

/**
 * In a fresh temporary folder `<prefix>…`: builds the chat example into `dist` and serves it,
 * starts the gateway with `startGateway(pageOrigin)`, launches chromium (fails, never skips,
 * when it is missing) with its profile there, and records the tab's problems onto `problems`.
 * `close()` closes all of it and removes the folder; a failed start closes what it started.
 * @template {{ close(): Promise<unknown> }} G
 * @param {string} prefix
 * @param {(pageOrigin: string) => Promise<G>} startGateway
 * @param {string[]} problems
 */
export async function openChatUi(prefix, startGateway, problems) {
	const tempDir = await mkdtemp(join(tmpdir(), prefix));
	/** @type {Awaited<ReturnType<typeof startStaticServer>> | undefined} */
	let page;
	/** @type {G | undefined} */
	let gw;
	/** @type {import("playwright-core").BrowserContext | undefined} */
	let context;
	const close = async () => {
		await context?.close().catch(() => {});
		await page?.close().catch(() => {});
		await gw?.close().catch(() => {});
		await removeDir(tempDir);
	};
	try {
		const dist = await buildChatUi({ outdir: join(tempDir, "dist") });
		page = await startStaticServer({ root: dist });
		gw = await startGateway(page.origin);
		const launched = await launchChromium(join(tempDir, "profile"));
		context = launched.context;
		recordProblems(launched.tab, problems);
		return { page, gw, context, tab: launched.tab, close };
	} catch (error) {
		await close();
		throw error;
	}
}
