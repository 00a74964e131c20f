// Shared by the browser test of the chat example's history, images, usage and model pickers
// (chat-history-browser): a gateway in front of real pi sessions on the faux model that keeps
// them on disk (`sessionExists` / `deleteSession`, as the CLI does), reading what the page shows
// of a conversation (every part, the images, the usage line) and of its pickers, attaching an
// image, and asking the gateway itself (history, snapshot) from node.
// (Opening the page, sending, recording the browser's requests: browser-chat-ui.mjs; the page's
// problems that are its own streams cut short: browser-queue.mjs.)

import assert from "node:assert/strict";
import { deflateSync } from "node:zlib";
import { startHistoryGateway } from "./history-util.mjs";
import { UI_TIMEOUT_MS } from "./browser-chromium.mjs";
import { SOON_MS } from "./wait.mjs";

/**
 * A faux pi agent (lib/faux-agent.js) and a GatewayRuntime in front of it on 127.0.0.1:0, with
 * the agent's `sessionExists` and `deleteSession` (sessions kept in its session directory, so a
 * session that left the gateway's memory loads again on the next request for its key): the
 * history suite's gateway. `config` is merged over the tests' minimal config (e.g.
 * `{ bearerToken, cors }`). Returns `{ runtime, agent, port, base, sessions (key → latest
 * AgentSession), close() }` (and what startHistoryGateway adds).
 * @param {{ config?: object, faux?: object }} [options]
 */
export function startPersistentChatGateway({ config = {}, faux = {} } = {}) {
	return startHistoryGateway({ config, faux });
}

/** CRC-32 (PNG chunks). */
function crc32(bytes) {
	let c = 0xffffffff;
	for (const b of bytes) {
		c ^= b;
		for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
	}
	return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
	const head = Buffer.alloc(4);
	head.writeUInt32BE(data.length);
	const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
	const crc = Buffer.alloc(4);
	crc.writeUInt32BE(crc32(body));
	return Buffer.concat([head, body, crc]);
}

/**
 * A real PNG of `size`×`size` RGB pixels (a red-to-blue gradient), as the file the test attaches:
 * `{ name, mimeType, buffer, dataUrl, size }` (`dataUrl` is what the page must send and show:
 * `data:image/png;base64,…`).
 * @param {{ name?: string, size?: number }} [options]
 */
export function testImage({ name = "gradient.png", size = 32 } = {}) {
	const ihdr = Buffer.alloc(13);
	ihdr.writeUInt32BE(size, 0);
	ihdr.writeUInt32BE(size, 4);
	ihdr[8] = 8; // bit depth
	ihdr[9] = 2; // RGB
	const rows = [];
	for (let y = 0; y < size; y++) {
		const row = Buffer.alloc(1 + 3 * size); // filter byte 0, then the pixels
		for (let x = 0; x < size; x++) {
			row[1 + 3 * x] = Math.round((255 * x) / (size - 1));
			row[2 + 3 * x] = 64;
			row[3 + 3 * x] = Math.round((255 * y) / (size - 1));
		}
		rows.push(row);
	}
	const buffer = Buffer.concat([
		Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
		pngChunk("IHDR", ihdr),
		pngChunk("IDAT", deflateSync(Buffer.concat(rows))),
		pngChunk("IEND", Buffer.alloc(0)),
	]);
	return { name, mimeType: "image/png", buffer, dataUrl: `data:image/png;base64,${buffer.toString("base64")}`, size };
}

/** Attaches `image` (testImage's) with the page's file input, and waits until its preview shows. */
export async function attachImage(tab, image) {
	const before = await tab.getByTestId("attachment").count();
	await tab.getByTestId("attach").setInputFiles({ name: image.name, mimeType: image.mimeType, buffer: image.buffer });
	await tab.getByTestId("attachment").nth(before).waitFor();
}

/**
 * The page's conversation, every part: each message's `role`, `id`, `parts` (`text`,
 * `reasoning` without its label, `tool` with name, state and the input / output / error it shows, `file` with its
 * media type and `src`, `steering`, `notice`) and `usage` (the line under an answer: `text`,
 * `totalTokens`, `cost`, `model`; null when none), plus the status line, the error notices, the
 * other notices and whether "Load older" shows.
 * @param {import("playwright-core").Page} tab
 */
export function readConversationView(tab) {
	return tab.evaluate(() => {
		const articles = [...document.querySelectorAll('[data-testid="messages"] article')];
		const part = (node) => {
			const kind = node.getAttribute("data-part");
			if (kind === "tool") {
				// Only the fields the page shows (an output or an error, not both).
				const tool = { kind, toolName: node.getAttribute("data-tool-name"), state: node.getAttribute("data-state") };
				for (const field of ["input", "output", "error"]) {
					const shown = node.querySelector(`[data-field="tool-${field}"]`);
					if (shown) tool[field] = shown.textContent;
				}
				return tool;
			}
			if (kind === "file") {
				return { kind, mediaType: node.getAttribute("data-media-type"), src: node.getAttribute("src") ?? node.getAttribute("href") };
			}
			const clone = node.cloneNode(true);
			clone.querySelector("summary")?.remove();
			return { kind, text: clone.textContent };
		};
		return {
			messages: articles.map((article) => {
				const usage = article.querySelector('[data-testid="usage"]');
				return {
					role: article.getAttribute("data-role"),
					id: article.getAttribute("data-id"),
					parts: [...article.querySelectorAll("[data-part]")].map(part),
					usage: usage
						? {
								text: usage.textContent,
								totalTokens: Number(usage.getAttribute("data-total-tokens")),
								cost: usage.getAttribute("data-cost") === "" ? null : Number(usage.getAttribute("data-cost")),
								model: usage.getAttribute("data-model"),
							}
						: null,
				};
			}),
			all: document.querySelector('[data-testid="messages"]')?.textContent ?? "",
			status: document.querySelector('[data-testid="status"]')?.textContent,
			errors: [...document.querySelectorAll('[data-testid="error"]')].map((node) => node.textContent),
			notices: [...document.querySelectorAll('[data-testid="notice"]')].map((node) => node.textContent),
			loadOlder: document.querySelector('[data-testid="load-older"]') != null,
		};
	});
}

/**
 * The model and thinking pickers: null while the page does not show them, else the model
 * picker's `value`, `options` and `disabled`, the thinking picker's `value` and `disabled`.
 * @param {import("playwright-core").Page} tab
 */
export function readPickers(tab) {
	return tab.evaluate(() => {
		const model = /** @type {HTMLSelectElement | null} */ (document.querySelector('[data-testid="model-picker"]'));
		const thinking = /** @type {HTMLSelectElement | null} */ (document.querySelector('[data-testid="thinking-picker"]'));
		if (!model || !thinking) return null;
		return {
			model: model.value,
			options: [...model.options].map((o) => o.value),
			modelDisabled: model.disabled,
			thinking: thinking.value,
			thinkingDisabled: thinking.disabled,
		};
	});
}

/**
 * Picks `value` in the picker `testId` (model-picker, thinking-picker) and waits for the PUT it
 * makes: `{ status, request (its JSON body), body (the answer's JSON) }`, or `{ failed }` (the
 * browser's error text) when the request failed in the browser (e.g. refused by CORS).
 * @param {import("playwright-core").Page} tab
 * @param {string} testId
 * @param {string} value
 * @param {number} [timeoutMs]
 */
export async function pick(tab, testId, value, timeoutMs = UI_TIMEOUT_MS) {
	const route = testId === "model-picker" ? "/model" : "/thinking";
	const isPut = (request) => request.method() === "PUT" && new URL(request.url()).pathname.endsWith(route);
	let onResponse;
	let onFailed;
	let timer;
	const outcome = new Promise((resolve) => {
		onResponse = (response) => isPut(response.request()) && resolve({ response });
		onFailed = (request) => isPut(request) && resolve({ failed: request.failure()?.errorText ?? "failed" });
		timer = setTimeout(() => resolve({ failed: `no answer within ${timeoutMs} ms` }), timeoutMs);
		tab.on("response", onResponse);
		tab.on("requestfailed", onFailed);
	});
	try {
		await tab.getByTestId(testId).selectOption(value);
		const { response, failed } = await outcome;
		if (failed) {
			// The browser logs such a failure a moment later: let it land in this test's problems.
			await tab.waitForTimeout(300);
			return { failed };
		}
		return {
			status: response.status(),
			request: JSON.parse(response.request().postData() ?? "null"),
			body: await response.json().catch(() => undefined),
		};
	} finally {
		clearTimeout(timer);
		tab.off("response", onResponse);
		tab.off("requestfailed", onFailed);
	}
}

/**
 * A GET on the gateway from node, with the bearer `token`: `{ status, json }`.
 * @param {string} base  the gateway's base URL
 * @param {string} path  e.g. `/sessions/a%20b/messages?format=ui`
 * @param {string} token
 */
export async function gatewayGet(base, path, token) {
	const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(SOON_MS) });
	const text = await response.text();
	let json;
	try {
		json = JSON.parse(text);
	} catch {
		json = undefined;
	}
	return { status: response.status, json, text };
}

/** The whole `ui` history of `session` (every page, oldest first), from node. */
export async function wholeHistory(base, session, token) {
	const messages = [];
	let before;
	for (let guard = 0; guard < 1000; guard++) {
		const query = new URLSearchParams({ format: "ui", limit: "1000" });
		if (before) query.set("before", before);
		const { status, json, text } = await gatewayGet(base, `/sessions/${encodeURIComponent(session)}/messages?${query}`, token);
		assert.equal(status, 200, `GET history of ${session}: ${text.slice(0, 300)}`);
		messages.unshift(...json.messages);
		if (!json.hasMore) return messages;
		before = json.messages[0].id;
	}
	assert.fail("the history did not end");
}
