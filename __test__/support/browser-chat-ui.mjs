// Shared by the browser tests of the chat example (chat-browser, chat-long-history,
// chat-resume-browser, chat-queue-browser): the page of examples/chat-ui, built by its own build
// script and served by its own static server, open in headless chromium against a gateway on
// another origin (another port of 127.0.0.1); driving the page (open it on a session, send a
// message), recording what the browser asked the gateway, and reading what pi's sessions hold.

import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { buildChatUi } from "../../examples/chat-ui/build.mjs";
import { startStaticServer } from "../../examples/chat-ui/serve.mjs";
import { launchChromium, recordProblems, UI_TIMEOUT_MS } from "./browser-chromium.mjs";
import { removeDir } from "./chat-fixture.mjs";
import { startChatGateway } from "./gateway.mjs";

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

/**
 * For a describe block: before its tests, {@link openChatUi} in front of startChatGateway's real
 * pi sessions on the faux model, which want the bearer `token` and let the page's origin in
 * (CORS), checks that the page and the gateway are other origins, and records the tab's
 * exchanges with the gateway ({@link recordExchanges}); after them, closes it all. Returns the
 * object that holds them: `page`, `gw`, `tab`, `exchanges` (from `before` on) and `problems`
 * (the tab's problems).
 * @param {string} prefix
 * @param {string} token
 */
export function suiteChatUi(prefix, token) {
	/** @type {Partial<Awaited<ReturnType<typeof openChatUi>>> & { problems: string[], exchanges?: ReturnType<typeof recordExchanges> }} */
	const ui = { problems: [] };
	before(async () => {
		const opened = await openChatUi(prefix, (origin) => startChatGateway({ config: { bearerToken: token, cors: { origins: [origin] } } }), ui.problems);
		Object.assign(ui, opened);
		assert.notEqual(new URL(ui.gw.base).origin, ui.page.origin);
		ui.exchanges = recordExchanges(ui.tab, ui.gw.base);
	});
	after(() => ui.close?.());
	return ui;
}

/**
 * Records every request `tab` makes to `base` and its answer: `{ method, url, path, body,
 * status, runId }` (`status`/`runId` once the response headers are in; `runId` is `x-run-id`).
 * @param {import("playwright-core").Page} tab
 * @param {string} base  the gateway's base URL
 */
export function recordExchanges(tab, base) {
	const exchanges = [];
	tab.on("request", (request) => {
		if (!request.url().startsWith(base)) return;
		const exchange = {
			method: request.method(),
			url: request.url(),
			path: decodeURIComponent(new URL(request.url()).pathname),
			body: request.postData(),
			status: undefined,
			runId: undefined,
		};
		exchanges.push(exchange);
		request
			.response()
			.then((response) => {
				if (!response) return;
				exchange.status = response.status();
				exchange.runId = response.headers()["x-run-id"];
			})
			.catch(() => {});
	});
	return exchanges;
}

/**
 * The page's conversation: each message's role, id and parts in order (`text`, `steering` with
 * its mode, `notice`, `reasoning`, `tool`), plus the whole conversation's text (`all`), the status
 * line and the error notices.
 * @param {import("playwright-core").Page} tab
 */
export function readChat(tab) {
	return tab.evaluate(() => {
		const articles = [...document.querySelectorAll('[data-testid="messages"] article')];
		return {
			messages: articles.map((article) => ({
				role: article.getAttribute("data-role"),
				id: article.getAttribute("data-id"),
				parts: [...article.querySelectorAll("[data-part]")].map((node) => {
					const kind = node.getAttribute("data-part");
					const part = { kind, text: node.textContent };
					if (kind === "steering") part.mode = node.getAttribute("data-mode");
					return part;
				}),
			})),
			all: document.querySelector('[data-testid="messages"]')?.textContent,
			status: document.querySelector('[data-testid="status"]')?.textContent,
			errors: [...document.querySelectorAll('[data-testid="error"]')].map((node) => node.textContent),
		};
	});
}

/** Waits until the page's status line says "ready" (`options`: Playwright's waitFor options). */
export function waitUntilReady(tab, options) {
	return tab.getByTestId("status").filter({ hasText: "ready" }).waitFor(options);
}

/**
 * Opens the page of `ui` (openChatUi's) on gateway session `session` with `token`, and waits
 * until it is ready.
 */
export async function openChatPage({ tab, page, gw }, session, token) {
	const query = new URLSearchParams({ gateway: gw.base, session, token });
	await tab.goto(`${page.origin}/?${query}`);
	await waitUntilReady(tab);
}

/** Sends `text` from the page's input, and waits until `marker` shows in the (first) assistant message. */
export async function sendAndWaitForMarker(tab, text, marker) {
	await tab.getByTestId("input").fill(text);
	await tab.getByTestId("send").click();
	await tab.waitForFunction(
		(marker) => (document.querySelector('article[data-role="assistant"]')?.textContent ?? "").includes(marker),
		marker,
		{ timeout: UI_TIMEOUT_MS },
	);
}

/** The user messages pi's session holds, as text. */
export function userTexts(session) {
	return session.messages
		.filter((m) => m.role === "user")
		.map((m) => (typeof m.content === "string" ? m.content : m.content.map((c) => c.text ?? "").join("")));
}

/** The text of pi's last assistant message in `session`. */
export function lastAssistantText(session) {
	const message = session.messages.findLast((m) => m.role === "assistant");
	return (message?.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");
}
