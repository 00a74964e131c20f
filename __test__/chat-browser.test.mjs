// The chat example (examples/chat-ui: React + `useChat` from @ai-sdk/react + `DefaultChatTransport`
// from ai) in a real browser — Debian's headless chromium through playwright-core — talking to a
// pi-gateway on another origin (CORS) in front of real pi AgentSessions on the faux model.
// The page is bundled with esbuild by the example's own build script and served by its own
// static server. A screenshot goes to artifacts/chat-ui.png.
// Run: node --test __test__/chat-browser.test.mjs   (needs /usr/bin/chromium; fails, never skips, without it)

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { buildChatUi } from "../examples/chat-ui/build.mjs";
import { startStaticServer } from "../examples/chat-ui/serve.mjs";
import { fauxLongText, HELLO_CONTENT, HELLO_FILE } from "../lib/faux-agent.js";
import { fauxParts, removeDir, startChatGateway } from "./helpers/chat-fixture.mjs";

/** Debian's chromium (CI installs it); PI_GATEWAY_CHROMIUM points elsewhere. */
const CHROMIUM = process.env.PI_GATEWAY_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
	"--headless",
	"--no-sandbox",
	"--disable-gpu",
	"--no-first-run",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
	"--disable-quic",
];
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ARTIFACTS = join(ROOT, "artifacts");
const TOKEN = "browser-test-token";
const SESSION = "browser chat"; // a space, so the page must percent-encode the key
/** Generous: the machine is shared and loaded. */
const UI_TIMEOUT_MS = 30_000;

describe("the chat example in headless chromium", () => {
	let tempDir;
	/** @type {Awaited<ReturnType<typeof startStaticServer>>} */
	let page;
	/** @type {Awaited<ReturnType<typeof startChatGateway>>} */
	let gw;
	/** @type {import("playwright-core").BrowserContext} */
	let context;
	/** @type {import("playwright-core").Page} */
	let tab;
	const problems = [];
	const gatewayRequests = [];

	before(async () => {
		// No skip: CI installs chromium, and a missing browser must not look like a pass.
		assert.ok(
			existsSync(CHROMIUM),
			`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run the browser test`,
		);
		tempDir = await mkdtemp(join(tmpdir(), "pi-gateway-chat-ui-"));
		const dist = await buildChatUi({ outdir: join(tempDir, "dist") });
		page = await startStaticServer({ root: dist });
		// The page and the gateway are on different ports of 127.0.0.1: different origins.
		gw = await startChatGateway({ config: { bearerToken: TOKEN, cors: { origins: [page.origin] } } });
		assert.notEqual(new URL(gw.base).origin, page.origin);
		context = await chromium.launchPersistentContext(join(tempDir, "profile"), {
			executablePath: CHROMIUM,
			headless: true,
			args: CHROMIUM_ARGS,
			viewport: { width: 900, height: 900 },
			timeout: UI_TIMEOUT_MS,
		});
		tab = context.pages()[0] ?? (await context.newPage());
		tab.setDefaultTimeout(UI_TIMEOUT_MS);
		tab.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
		tab.on("console", (message) => {
			if (message.type() === "error") problems.push(`console.error: ${message.text()}`);
		});
		tab.on("requestfailed", (request) => problems.push(`requestfailed: ${request.url()} ${request.failure()?.errorText}`));
		tab.on("request", (request) => {
			if (request.url().startsWith(gw.base)) gatewayRequests.push({ method: request.method(), url: request.url() });
		});
	});

	after(async () => {
		await context?.close().catch(() => {});
		await page?.close().catch(() => {});
		await gw?.close().catch(() => {});
		await removeDir(tempDir);
	});

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

	it("sends the next message with the history, and the gateway answers the newest one", async () => {
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

	it("a gateway that does not list the page's origin is refused by the browser (CORS), and the page shows the error", async () => {
		const other = await startChatGateway({
			config: { bearerToken: TOKEN, cors: { origins: ["http://127.0.0.1:1"] } },
		});
		try {
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
		} finally {
			await other.close();
		}
	});
});
