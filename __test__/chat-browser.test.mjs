// The chat example (examples/chat-ui: React + `useChat` from @ai-sdk/react + `DefaultChatTransport`
// from ai) in a real browser — Debian's headless chromium through playwright-core — talking to a
// pi-gateway on another origin (CORS) in front of real pi AgentSessions on the faux model.
// The page is bundled with esbuild by the example's own build script and served by its own
// static server. It checks the parts the page renders, that each request carries only the new
// message (prepareSendMessagesRequest), Stop, a gateway that refuses the page's origin, and that
// errors read as sentences (a full queue, a wrong token, a failed run), not raw JSON.
// Screenshots go to artifacts/chat-ui.png, chat-ui-2.png and chat-ui-error.png.
// Run: node --test __test__/chat-browser.test.mjs   (needs /usr/bin/chromium; fails, never skips, without it)

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { FAUX_ERROR_MESSAGE, fauxLongText, HELLO_CONTENT, HELLO_FILE } from "../lib/faux-agent.js";
import { openChatUi } from "./support/browser-chat-ui.mjs";
import { UI_TIMEOUT_MS } from "./support/browser-chromium.mjs";
import { plainRequest } from "./support/browser-cli.mjs";
import { fauxParts } from "./support/chat-fixture.mjs";
import { startChatGateway } from "./support/gateway.mjs";
import { waitFor } from "./support/wait.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ARTIFACTS = join(ROOT, "artifacts");
const TOKEN = "browser-test-token";
const SESSION = "browser chat"; // a space, so the page must percent-encode the key

describe("the chat example in headless chromium", () => {
	/** @type {Awaited<ReturnType<typeof openChatUi>>} */
	let ui;
	/** The page's server (another origin than the gateway). */
	let page;
	/** @type {Awaited<ReturnType<typeof startChatGateway>>} */
	let gw;
	/** @type {import("playwright-core").Page} */
	let tab;
	const problems = [];
	const gatewayRequests = [];

	before(async () => {
		// The page and the gateway are on different ports of 127.0.0.1: different origins.
		// No skip: CI installs chromium, and a missing browser must not look like a pass (launchChromium fails).
		ui = await openChatUi(
			"pi-gateway-chat-ui-",
			(origin) => startChatGateway({ config: { bearerToken: TOKEN, cors: { origins: [origin] } } }),
			problems,
		);
		({ page, gw, tab } = ui);
		assert.notEqual(new URL(gw.base).origin, page.origin);
		tab.on("request", (request) => {
			if (request.url().startsWith(gw.base)) {
				gatewayRequests.push({ method: request.method(), url: request.url(), body: request.postData() });
			}
		});
	});

	after(() => ui?.close());

	it("streams a tool-using answer into the page: reasoning, the read call with its output, then the text", async () => {
		const query = new URLSearchParams({ gateway: gw.base, session: SESSION, token: TOKEN });
		await tab.goto(`${page.origin}/?${query}`);
		await tab.getByTestId("status").filter({ hasText: "ready" }).waitFor();

		const question = `What is in ${HELLO_FILE}?`;
		await tab.getByTestId("input").fill(question);
		await tab.getByTestId("send").click();

		const assistant = tab.locator('article[data-role="assistant"]');
		const answer = `${HELLO_FILE} says: ${HELLO_CONTENT}`;
		await assistant.locator('[data-part="text"]').filter({ hasText: answer }).waitFor();
		await tab.getByTestId("status").filter({ hasText: "ready" }).waitFor();

		// The user's message, as the page rendered it.
		assert.equal(await tab.locator('article[data-role="user"] [data-part="text"]').innerText(), question);

		// The assistant's parts, in order, compared with what pi's session really holds.
		const session = gw.sessions.get(SESSION);
		assert.ok(session, `the gateway created session ${JSON.stringify(SESSION)} (the key was decoded once)`);
		const produced = fauxParts(session, 1).filter((p) => p.kind !== "step");
		const rendered = await assistant.locator("[data-part]").evaluateAll((nodes) =>
			nodes.map((node) => {
				const kind = node.getAttribute("data-part");
				if (kind === "tool") {
					return {
						kind,
						toolName: node.getAttribute("data-tool-name"),
						state: node.getAttribute("data-state"),
						input: node.querySelector('[data-field="tool-input"]')?.textContent,
						output: node.querySelector('[data-field="tool-output"]')?.textContent,
					};
				}
				// reasoning is a <details>: its text without the <summary> label
				const clone = node.cloneNode(true);
				clone.querySelector("summary")?.remove();
				return { kind, text: clone.textContent };
			}),
		);
		assert.deepEqual(
			rendered,
			produced.map((part) =>
				part.kind === "tool"
					? {
							kind: "tool",
							toolName: part.toolName,
							state: part.state,
							input: JSON.stringify(part.input),
							output: part.output.content.map((c) => c.text).join("\n"),
						}
					: { kind: part.kind, text: part.text },
			),
		);
		// …and against the faux script itself, so the comparison cannot pass vacuously.
		assert.deepEqual(
			rendered.map((p) => p.kind),
			["reasoning", "tool", "text"],
		);
		assert.equal(rendered[0].text, `The user asked "${question}". I will look at the workspace file ${HELLO_FILE}.`);
		assert.deepEqual(rendered[1], {
			kind: "tool",
			toolName: "read",
			state: "output-available",
			input: JSON.stringify({ path: HELLO_FILE }),
			output: HELLO_CONTENT,
		});
		assert.equal(rendered[2].text, answer);
		assert.equal(await tab.getByTestId("error").count(), 0);

		// The browser really went cross-origin (the page is on another port; with its Authorization and
		// JSON content-type the POST needs a CORS preflight, which playwright does not report).
		const chatUrl = `${gw.base}/sessions/${encodeURIComponent(SESSION)}/chat`;
		assert.deepEqual(
			gatewayRequests.filter((r) => r.url === chatUrl).map((r) => r.method),
			["POST"],
			JSON.stringify(gatewayRequests),
		);
		assert.deepEqual(problems, []);

		await mkdir(ARTIFACTS, { recursive: true });
		await tab.screenshot({ path: join(ARTIFACTS, "chat-ui.png"), fullPage: true });
	});

	it("sends only the new message with the chat id, and the gateway answers it (the session keeps the history)", async () => {
		await tab.getByTestId("input").fill("/echo second message");
		await tab.getByTestId("send").click();
		const assistant = tab.locator('article[data-role="assistant"]');
		await assistant.nth(1).locator('[data-part="text"]').filter({ hasText: "You said: second message" }).waitFor();
		await tab.getByTestId("status").filter({ hasText: "ready" }).waitFor();
		assert.equal(await assistant.count(), 2);
		assert.deepEqual(await assistant.nth(1).locator("[data-part]").allInnerTexts(), ["You said: second message"]);
		const users = gw.sessions
			.get(SESSION)
			.messages.filter((m) => m.role === "user")
			.map((m) => m.content.map((c) => c.text).join(""));
		assert.deepEqual(users, [`What is in ${HELLO_FILE}?`, "/echo second message"]);
		// Both requests carried one user message each (prepareSendMessagesRequest), with one chat id.
		const chatUrl = `${gw.base}/sessions/${encodeURIComponent(SESSION)}/chat`;
		const bodies = gatewayRequests.filter((r) => r.url === chatUrl && r.method === "POST").map((r) => JSON.parse(r.body));
		assert.equal(bodies.length, 2);
		assert.deepEqual(
			bodies.map((b) => b.messages.map((m) => [m.role, m.parts.map((p) => p.text).join("")])),
			[[["user", `What is in ${HELLO_FILE}?`]], [["user", "/echo second message"]]],
		);
		assert.equal(typeof bodies[0].id, "string");
		assert.equal(bodies[1].id, bodies[0].id);
		assert.deepEqual(problems, []);
		await tab.screenshot({ path: join(ARTIFACTS, "chat-ui-2.png"), fullPage: true });
	});

	it("Stop ends the stream in the page and aborts the agent's run through the gateway", async () => {
		const words = 200; // ~10 s at the faux /slow speed
		await tab.getByTestId("input").fill(`/slow ${words}`);
		await tab.getByTestId("send").click();
		const assistant = tab.locator('article[data-role="assistant"]').nth(2);
		// Wait until a few words have streamed in, then press Stop.
		await tab.waitForFunction(
			() => (document.querySelectorAll('article[data-role="assistant"]')[2]?.textContent ?? "").includes("w02"),
			undefined,
			{ timeout: UI_TIMEOUT_MS },
		);
		await tab.getByTestId("stop").click();
		await tab.getByTestId("status").filter({ hasText: "ready" }).waitFor();

		// The gateway aborted the run: pi recorded an aborted assistant message, and the session is idle.
		const session = gw.sessions.get(SESSION);
		const deadline = Date.now() + UI_TIMEOUT_MS;
		while (session.messages.at(-1)?.stopReason !== "aborted" && Date.now() < deadline) {
			await new Promise((resolve) => setTimeout(resolve, 50));
		}
		const last = session.messages.at(-1);
		assert.equal(last.role, "assistant");
		assert.equal(last.stopReason, "aborted");
		const full = fauxLongText(words);
		const recorded = last.content.filter((c) => c.type === "text").map((c) => c.text).join("");
		assert.ok(recorded.length < full.length, `the run stopped early (${recorded.length} of ${full.length} chars)`);

		const shown = await assistant.locator('[data-part="text"]').innerText();
		assert.ok(shown.length >= "w00 w01 w02".length && full.startsWith(shown.trim()), `partial text shown: ${JSON.stringify(shown)}`);
		assert.equal(await tab.getByTestId("error").count(), 0);
		// A Stop closes the page's own fetch on purpose; that shows up as an aborted request.
		const unexpected = problems.filter((p) => !(p.startsWith("requestfailed:") && p.includes("/chat") && p.includes("ERR_ABORTED")));
		assert.deepEqual(unexpected, []);
		problems.length = 0;
	});

	it("a gateway that does not list the page's origin refuses it, and the page says it cannot reach the gateway", async () => {
		const other = await startChatGateway({
			config: { bearerToken: TOKEN, cors: { origins: ["http://127.0.0.1:1"] } },
		});
		try {
			// What the browser's preflight gets: refused before anything else (no token needed to be refused).
			const preflight = await plainRequest(`${other.base}/sessions/refused/chat`, {
				method: "OPTIONS",
				headers: {
					origin: page.origin,
					"access-control-request-method": "POST",
					"access-control-request-headers": "authorization, content-type",
				},
			});
			assert.equal(preflight.status, 403, preflight.text);
			assert.deepEqual(preflight.json, { error: "Origin not allowed" });
			assert.equal(preflight.headers["access-control-allow-origin"], undefined);

			const query = new URLSearchParams({ gateway: other.base, session: "refused", token: TOKEN });
			await tab.goto(`${page.origin}/?${query}`);
			await tab.getByTestId("status").filter({ hasText: "ready" }).waitFor();
			await tab.getByTestId("input").fill("/echo should not arrive");
			await tab.getByTestId("send").click();
			await tab.getByTestId("error").waitFor();
			await tab.getByTestId("status").filter({ hasText: "error" }).waitFor();
			assert.equal(other.sessions.has("refused"), false, "the browser never sent the POST");
			assert.ok(
				problems.some((p) => p.includes("CORS") || p.includes("Access-Control-Allow-Origin")),
				`a CORS error in the console: ${JSON.stringify(problems)}`,
			);
			// A sentence, not "Failed to fetch".
			const error = tab.getByTestId("error");
			assert.equal(await error.locator('[data-field="error-title"]').innerText(), `Cannot reach the gateway at ${other.base}`);
			const detail = await error.locator('[data-field="error-detail"]').innerText();
			assert.ok(detail.includes(page.origin) && detail.includes("cors.origins"), detail);
		} finally {
			await other.close();
			problems.length = 0;
		}
	});

	it("errors the gateway answers are shown as sentences: a full queue, a wrong token, a failed run", async () => {
		const busy = await startChatGateway({
			config: { bearerToken: TOKEN, cors: { origins: [page.origin] }, session: { idleMinutes: 10, maxQueuePerSession: 1 } },
		});
		const auth = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
		const url = (key, action) => `${busy.base}/sessions/${encodeURIComponent(key)}/${action}`;
		const pending = [];
		try {
			// Fill the queue of session "busy": one slow run, one message waiting behind it.
			pending.push(plainRequest(url("busy", "messages"), { method: "POST", headers: auth, body: JSON.stringify({ text: "/slow 400" }) }));
			await waitFor(() => busy.sessions.get("busy")?.isStreaming, "the slow run to start");
			pending.push(plainRequest(url("busy", "messages"), { method: "POST", headers: auth, body: JSON.stringify({ text: "/echo queued" }) }));
			await waitFor(async () => {
				const res = await plainRequest(`${busy.base}/sessions/busy`, { headers: auth });
				return res.json?.session?.queueDepth === 1;
			}, "one queued message");

			const show = async (session, token, text) => {
				const query = new URLSearchParams({ gateway: busy.base, session, token });
				await tab.goto(`${page.origin}/?${query}`);
				await tab.getByTestId("status").filter({ hasText: "ready" }).waitFor();
				await tab.getByTestId("input").fill(text);
				await tab.getByTestId("send").click();
				const error = tab.getByTestId("error");
				await error.waitFor();
				await tab.getByTestId("status").filter({ hasText: "error" }).waitFor();
				return {
					status: await error.getAttribute("data-status"),
					title: await error.locator('[data-field="error-title"]').innerText(),
					detail: await error.locator('[data-field="error-detail"]').innerText(),
					text: await error.innerText(),
				};
			};

			const full = await show("busy", TOKEN, "/echo one too many");
			assert.equal(full.status, "429");
			assert.equal(full.title, "Queue full (1 pending)");
			assert.match(full.detail, /busy with earlier messages/);
			assert.ok(!full.text.includes("{"), `no raw JSON: ${full.text}`);
			await mkdir(ARTIFACTS, { recursive: true });
			await tab.screenshot({ path: join(ARTIFACTS, "chat-ui-error.png"), fullPage: true });

			const denied = await show("busy", "not-the-token", "/echo hi");
			assert.equal(denied.status, "401");
			assert.equal(denied.title, "Unauthorized");
			assert.match(denied.detail, /bearer token/);

			const failed = await show("failing", TOKEN, "/error");
			assert.equal(failed.status, "", "the gateway answered 200 and the run failed in the stream");
			assert.equal(failed.title, FAUX_ERROR_MESSAGE);
			assert.match(failed.detail, /run ended with this error/);
		} finally {
			await plainRequest(url("busy", "abort"), { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } }).catch(() => {});
			await Promise.allSettled(pending);
			await busy.close();
			problems.length = 0;
		}
	});
});

// The page's two gateway-specific functions on their own (the browser tests above show them at
// work; these cover the cases a browser test would need a broken gateway for).
describe("examples/chat-ui/src/gateway.js", () => {
	it("describeChatError: the gateway's JSON error text, a hint by status, and a fallback for non-JSON bodies", async () => {
		const { describeChatError } = await import("../examples/chat-ui/src/gateway.js");
		const context = { gateway: "http://127.0.0.1:3000", origin: "http://127.0.0.1:5173" };
		const httpError = (statusCode, responseBody) => Object.assign(new Error(responseBody), { statusCode, responseBody });
		assert.deepEqual(describeChatError(httpError(413, '{"error":"Request body too large (limit 8388608 bytes)"}'), context), {
			title: "Request body too large (limit 8388608 bytes)",
			detail: "The message is too long for the gateway: send a shorter one.",
			status: 413,
		});
		assert.deepEqual(describeChatError(httpError(403, '{"error":"Origin not allowed"}'), context), {
			title: "Origin not allowed",
			detail: "The gateway does not accept requests from this page's origin (http://127.0.0.1:5173): add it to cors.origins (--cors).",
			status: 403,
		});
		assert.deepEqual(describeChatError(httpError(502, "<html>Bad Gateway</html>"), context), {
			title: "The gateway answered 502: <html>Bad Gateway</html>",
			detail: "A proxy in front of the gateway could not reach it.",
			status: 502,
		});
		assert.equal(describeChatError(new TypeError("Failed to fetch"), context).title, "Cannot reach the gateway at http://127.0.0.1:3000");
		assert.equal(describeChatError(new Error("faux model failure"), context).title, "faux model failure");
	});

	it("lastUserMessageOnly: the body holds the chat id and the last user message only", async () => {
		const { lastUserMessageOnly } = await import("../examples/chat-ui/src/gateway.js");
		const user = (id, text) => ({ id, role: "user", parts: [{ type: "text", text }] });
		const assistant = (id, text) => ({ id, role: "assistant", parts: [{ type: "text", text }] });
		const messages = [user("u1", "first"), assistant("a1", "x".repeat(100_000)), user("u2", "second"), assistant("a2", "partial")];
		const prepared = lastUserMessageOnly({ id: "chat-1", messages, body: { extra: 1 }, trigger: "regenerate-message", messageId: "a2" });
		assert.deepEqual(prepared, {
			body: { extra: 1, id: "chat-1", messages: [user("u2", "second")], trigger: "regenerate-message", messageId: "a2" },
		});
	});
});
