// The chat example (examples/chat-ui) resumes an answer after a reload, in Debian's headless
// chromium, against a pi-gateway on another origin in front of real pi AgentSessions on the faux
// model. The page uses `useChat({ id, resume: true })` with `DefaultChatTransport`, whose
// reconnect goes to `GET /sessions/:key/chat/:chatId/stream` (SPEC section 10): the gateway replays
// the running answer from its `start` chunk (whose messageId is the run id) and goes on live.
//
// - A reload in the middle of a slow answer: the page shows the user's message once and the whole
//   answer once — the same text as the uninterrupted answer pi recorded — and the gateway ran the
//   message once. A second reload, after the end, shows the same (the page's stored messages).
// - The answer ends while the page reloads (the reconnect is held until the run has ended, so the
//   gateway answers 204): the page completes the stored part from the run's record.
// - Stop after a reload aborts the run through `POST /sessions/:key/chat/:chatId/stop` with the run id.
// Run: npm test -- __test__/chat-resume-browser.test.mjs   (needs /usr/bin/chromium; fails, never skips, without it)

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fauxLongText } from "../lib/faux-agent.js";
import { lastAssistantText, openChatPage, readChat, sendAndWaitForMarker, suiteChatUi, userTexts, waitUntilReady } from "./support/browser-chat-ui.mjs";
import { UI_TIMEOUT_MS } from "./support/browser-chromium.mjs";
import { waitFor } from "./support/wait.mjs";

const TOKEN = "resume-test-token";
/** Every test stops by itself well within this (the slowest answer streams for ~8 s). */
const TEST_TIMEOUT_MS = 120_000;

/** The page's texts (readChat's): the user's messages, and the assistant's messages with their text parts. */
async function readConversation(tab) {
	const chat = await readChat(tab);
	return {
		...chat,
		messages: chat.messages.map((m) => ({ role: m.role, id: m.id, texts: m.parts.filter((p) => p.kind === "text").map((p) => p.text) })),
	};
}

/** How many times `needle` occurs in `haystack` (not overlapping). */
function occurrences(haystack, needle) {
	return haystack.split(needle).length - 1;
}

describe("the chat example resumes an answer after a reload, in headless chromium", { timeout: TEST_TIMEOUT_MS * 3 }, () => {
	const ui = suiteChatUi("pi-gateway-chat-resume-", TOKEN);

	const routes = (session) => {
		const base = `${ui.gw.base}/sessions/${encodeURIComponent(session)}`;
		return { chat: `${base}/chat`, stream: `${base}/chat/`, runs: `${base}/runs/` };
	};
	const isChatPost = (session) => (e) => e.method === "POST" && e.url === routes(session).chat;
	const isStreamGet = (session) => (e) => e.method === "GET" && e.url.startsWith(routes(session).stream) && e.url.endsWith("/stream");
	const isStopPost = (session) => (e) => e.method === "POST" && e.url.startsWith(routes(session).stream) && e.url.endsWith("/stop");

	/**
	 * Opens the page on `session`, sends `/slow <words>` (the question), waits until `marker` shows
	 * in the answer. Returns the run id, the question, the `full` answer it streams and pi's session.
	 */
	async function startAnswer(session, words, marker) {
		const question = `/slow ${words}`;
		await openChatPage(ui, session, TOKEN);
		await sendAndWaitForMarker(ui.tab, question, marker);
		const post = await waitFor(() => ui.exchanges.find((e) => isChatPost(session)(e) && e.runId), "the chat POST's x-run-id");
		return { runId: post.runId, question, full: fauxLongText(words), pi: ui.gw.sessions.get(session) };
	}

	/** Waits until the page shows the whole answer `full` (its first assistant text part). */
	const answerShown = (full) =>
		ui.tab.waitForFunction(
			(full) => document.querySelector('article[data-role="assistant"] [data-part="text"]')?.textContent === full,
			full,
			{ timeout: UI_TIMEOUT_MS },
		);

	/**
	 * The page had no problems other than its own answer streams cut short on purpose: the chat
	 * POST by the reload, and (`stopped`) the resumed stream by Stop. Forgets them for the next test.
	 */
	function noProblems({ stopped = false } = {}) {
		const cutShort = (p) =>
			p.startsWith("requestfailed:") && p.endsWith(" net::ERR_ABORTED") && (p.includes("/chat ") || (stopped && p.includes("/stream ")));
		const unexpected = ui.problems.filter((p) => !cutShort(p));
		assert.deepEqual(unexpected, []);
		ui.problems.length = 0;
	}

	it("a reload in the middle of an answer: the user's message once, the whole answer once, and one run", async () => {
		const session = "resume after reload";
		const { runId, question, full, pi } = await startAnswer(session, 160, "w10 "); // ~8 s at the faux /slow speed
		assert.ok(pi?.isStreaming, "the answer is still streaming when the page reloads");

		await ui.tab.reload();
		// The page reconnected, and the gateway had the answer to resume.
		await waitFor(() => ui.exchanges.some((e) => isStreamGet(session)(e) && e.status === 200), "a 200 from the resume route");
		// Some of the answer is still to come after the reload (else this would not test a resume).
		assert.ok(pi.isStreaming, "the answer was still streaming after the reload");
		await answerShown(full);
		await waitUntilReady(ui.tab);

		// What pi recorded, uninterrupted, is that text, and the gateway ran the message once.
		await waitFor(() => !pi.isStreaming, "the run to end");
		assert.equal(lastAssistantText(pi), full);
		assert.deepEqual(userTexts(pi), [question]);
		assert.equal(ui.exchanges.filter(isChatPost(session)).length, 1, "one chat POST");
		assert.equal(ui.gw.runtime.getRun(session, runId)?.status, "succeeded");

		const check = async (when) => {
			const shown = await readConversation(ui.tab);
			assert.deepEqual(
				shown.messages.map((m) => [m.role, m.texts]),
				[
					["user", [question]],
					["assistant", [full]],
				],
				when,
			);
			// The assistant message is the run (the `start` chunk's messageId).
			assert.equal(shown.messages[1].id, runId, when);
			assert.equal(occurrences(shown.all, full), 1, `${when}: the answer shown once`);
			assert.equal(occurrences(shown.all, question), 1, `${when}: the question shown once`);
			assert.equal(shown.status, "ready", when);
			assert.deepEqual(shown.errors, [], when);
		};
		await check("after the resumed answer");

		// Reload once more, after the end: the stored conversation, and nothing to resume (204).
		const streamGets = ui.exchanges.filter(isStreamGet(session)).length;
		await ui.tab.reload();
		await waitUntilReady(ui.tab);
		await waitFor(() => ui.exchanges.filter(isStreamGet(session)).at(streamGets)?.status, "the second reconnect's answer");
		assert.equal(ui.exchanges.filter(isStreamGet(session)).at(streamGets).status, 204);
		await check("after a reload once the answer had ended");
		assert.equal(ui.exchanges.filter(isChatPost(session)).length, 1, "still one chat POST");

		noProblems();
	});

	it("the answer ends while the page reloads (nothing left to resume): the run's record completes it", async () => {
		const session = "ended during reload";
		const { runId, question, full, pi } = await startAnswer(session, 60, "w05 "); // ~3 s
		assert.ok(pi?.isStreaming, "the answer is still streaming when the page reloads");

		// Hold the page's reconnect until the gateway has ended the run, then let it through.
		const earlier = ui.exchanges.filter(isStreamGet(session)).length; // the one on the first page load
		let held = 0;
		await ui.tab.route(
			(url) => url.href.startsWith(routes(session).stream) && url.pathname.endsWith("/stream"),
			async (route) => {
				held++;
				await waitFor(() => ui.gw.runtime.getRun(session, runId)?.status === "succeeded", "the run to end", UI_TIMEOUT_MS);
				await route.continue();
			},
		);
		try {
			await ui.tab.reload();
			await answerShown(full);
			await waitUntilReady(ui.tab);
		} finally {
			await ui.tab.unrouteAll({ behavior: "wait" });
		}
		assert.equal(held, 1, "the reconnect was held");
		assert.deepEqual(
			ui.exchanges.filter(isStreamGet(session)).slice(earlier).map((e) => e.status),
			[204],
			"the gateway had nothing to resume",
		);
		assert.ok(
			ui.exchanges.some((e) => e.method === "GET" && e.url === `${routes(session).runs}${runId}` && e.status === 200),
			"the page read the run's record",
		);
		assert.equal(lastAssistantText(pi), full);

		const shown = await readConversation(ui.tab);
		assert.deepEqual(
			shown.messages.map((m) => [m.role, m.texts]),
			[
				["user", [question]],
				["assistant", [full]],
			],
		);
		assert.equal(shown.messages[1].id, runId);
		assert.equal(occurrences(shown.all, full), 1, "the answer shown once");
		assert.deepEqual(shown.errors, []);
		noProblems();
	});

	it("Stop after a reload aborts the run through the chat stop route, naming the run", async () => {
		const session = "stop after reload";
		const { runId, full, pi } = await startAnswer(session, 400, "w03 "); // ~20 s: Stop comes long before the end
		await ui.tab.reload();
		// Streaming again, resumed: a few more words past what had arrived before the reload.
		await ui.tab.waitForFunction(
			() => (document.querySelector('article[data-role="assistant"]')?.textContent ?? "").includes("w12 "),
			undefined,
			{ timeout: UI_TIMEOUT_MS },
		);
		assert.equal(await ui.tab.getByTestId("status").innerText(), "streaming");
		const stopped = ui.tab.waitForResponse((response) => response.url().endsWith("/stop") && response.request().method() === "POST");
		await ui.tab.getByTestId("stop").click();
		const response = await stopped;
		assert.deepEqual(JSON.parse(response.request().postData() ?? "{}"), { runId });
		assert.equal(response.status(), 200);
		assert.deepEqual(await response.json(), { ok: true, runId });
		assert.equal(ui.exchanges.filter(isStopPost(session)).length, 1);
		await waitUntilReady(ui.tab);

		await waitFor(() => ui.gw.runtime.getRun(session, runId)?.status === "aborted", "the run to be aborted", UI_TIMEOUT_MS);
		const last = pi.messages.at(-1);
		assert.equal(last.role, "assistant");
		assert.equal(last.stopReason, "aborted");
		const shown = await readConversation(ui.tab);
		assert.deepEqual(
			shown.messages.map((m) => m.role),
			["user", "assistant"],
		);
		const text = shown.messages[1].texts.join("");
		assert.ok(text.length < full.length && full.startsWith(text) && text.includes("w12 "), `a part of the answer, once: ${JSON.stringify(text)}`);
		assert.deepEqual(shown.errors, []);
		noProblems({ stopped: true });
	});
});

// The page's resume pieces on their own (examples/chat-ui/src/gateway.js): the cases the browser
// tests above do not reach.
describe("examples/chat-ui/src/gateway.js: surviving a reload", () => {
	/** A Storage-like map; `full` makes setItem throw as a full quota does. */
	const memoryStorage = ({ full = false } = {}) => {
		const map = new Map();
		return {
			map,
			getItem: (key) => (map.has(key) ? map.get(key) : null),
			setItem: (key, value) => {
				if (full) throw new DOMException("quota", "QuotaExceededError");
				map.set(key, String(value));
			},
		};
	};
	const user = (id, text) => ({ id, role: "user", parts: [{ type: "text", text }] });
	const assistant = (id, parts) => ({ id, role: "assistant", parts });

	it("gatewayRoutes: the session key and the chat id are percent-encoded once", async () => {
		const { gatewayRoutes } = await import("../examples/chat-ui/src/gateway.js");
		const routes = gatewayRoutes("http://127.0.0.1:3000", "a b/c");
		assert.equal(routes.chat, "http://127.0.0.1:3000/sessions/a%20b%2Fc/chat");
		assert.equal(routes.stream("x/y"), "http://127.0.0.1:3000/sessions/a%20b%2Fc/chat/x%2Fy/stream");
		assert.equal(routes.stop("x"), "http://127.0.0.1:3000/sessions/a%20b%2Fc/chat/x/stop");
		assert.equal(routes.run("r1"), "http://127.0.0.1:3000/sessions/a%20b%2Fc/runs/r1");
	});

	it("stableChatId: one per gateway and session key, kept; the session key when storage fails", async () => {
		const { stableChatId } = await import("../examples/chat-ui/src/gateway.js");
		let n = 0;
		const generateId = () => `id${++n}`;
		const storage = memoryStorage();
		const a = stableChatId({ storage, gateway: "http://g", session: "web", generateId });
		assert.equal(a, "id1");
		assert.equal(stableChatId({ storage, gateway: "http://g", session: "web", generateId }), "id1");
		assert.equal(stableChatId({ storage, gateway: "http://g", session: "other", generateId }), "id2");
		assert.equal(stableChatId({ storage, gateway: "http://h", session: "web", generateId }), "id3");
		assert.equal(stableChatId({ storage: memoryStorage({ full: true }), gateway: "http://g", session: "web", generateId }), "web");
		assert.equal(stableChatId({ storage: null, gateway: "http://g", session: "web", generateId }), "web");
	});

	it("saveConversation / loadConversation: per chat id; junk and a full quota are survived", async () => {
		const { loadConversation, saveConversation } = await import("../examples/chat-ui/src/gateway.js");
		const storage = memoryStorage();
		const where = { storage, gateway: "http://g", session: "web" };
		const messages = [user("u1", "hi"), assistant("run-1", [{ type: "text", text: "hel" }])];
		assert.deepEqual(loadConversation({ ...where, chatId: "c1" }), { messages: [] });
		assert.equal(saveConversation({ ...where, chatId: "c1", messages, openRunId: "run-1" }), true);
		assert.deepEqual(loadConversation({ ...where, chatId: "c1" }), { messages, openRunId: "run-1" });
		assert.deepEqual(loadConversation({ ...where, chatId: "c2" }), { messages: [] }, "another chat's messages are not shown");
		assert.equal(saveConversation({ ...where, chatId: "c1", messages }), true);
		assert.deepEqual(loadConversation({ ...where, chatId: "c1" }), { messages });
		for (const raw of ["{", "null", '{"chatId":"c1","messages":{}}']) {
			storage.map.set([...storage.map.keys()][0], raw);
			assert.deepEqual(loadConversation({ ...where, chatId: "c1" }), { messages: [] }, raw);
		}
		assert.equal(saveConversation({ ...where, storage: memoryStorage({ full: true }), chatId: "c1", messages }), false);
	});

	it("completeFromRun: completes the stored start of the run's answer, and leaves anything else", async () => {
		const { completeFromRun } = await import("../examples/chat-ui/src/gateway.js");
		const run = (response, runId = "run-1") => ({ runId, status: "succeeded", result: { ok: true, response, runId } });
		const partial = [
			user("u1", "q"),
			assistant("run-1", [{ type: "step-start" }, { type: "reasoning", text: "hm", state: "done" }, { type: "text", text: "Hel", state: "streaming" }]),
		];
		assert.deepEqual(completeFromRun(partial, run("Hello world")), [
			partial[0],
			assistant("run-1", [{ type: "step-start" }, { type: "reasoning", text: "hm", state: "done" }, { type: "text", text: "Hello world", state: "done" }]),
		]);
		// A tool step, then nothing of the last step yet: the text is added after it.
		const tool = { type: "tool-read", toolCallId: "t", state: "output-available", input: {}, output: {} };
		const toolOnly = [user("u1", "q"), assistant("run-1", [{ type: "step-start" }, tool])];
		assert.deepEqual(completeFromRun(toolOnly, run("It says hi"))[1].parts, [
			{ type: "step-start" },
			tool,
			{ type: "text", text: "It says hi", state: "done" },
		]);
		assert.equal(completeFromRun(partial, run("Something else")), partial, "not the start of it: left");
		assert.equal(completeFromRun(partial, run("Hello", "run-2")), partial, "another run: left");
		assert.equal(completeFromRun(partial, { runId: "run-1", status: "running" }), partial, "no result yet: left");
		assert.equal(completeFromRun(partial, run("")), partial);
	});

	it("lastAssistantRunId: the last message's id when it is the assistant's", async () => {
		const { lastAssistantRunId } = await import("../examples/chat-ui/src/gateway.js");
		assert.equal(lastAssistantRunId([user("u1", "q"), assistant("run-1", [])]), "run-1");
		assert.equal(lastAssistantRunId([user("u1", "q"), assistant("run-1", []), user("u2", "again")]), undefined);
		assert.equal(lastAssistantRunId([]), undefined);
	});
});
