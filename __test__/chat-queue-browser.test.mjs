// The chat example (examples/chat-ui) sends messages while an answer streams — the gateway's queue
// modes (SPEC section 11) — in Debian's headless chromium, against a pi-gateway on another origin
// in front of real pi AgentSessions on the faux model (`/slow N` answers stream at ~20 words/s).
//
// - Steer: a message sent with "Steer" during an answer goes into that answer (`mode: "steer"`):
//   the answer shows the gateway's `data-steering` part as "↪ steered: <text>", pi's pending
//   steering text shows in the queue panel meanwhile, and the same answer (one run) goes on with
//   the reply to it.
// - Queue: messages sent with "Queue" during an answer (`mode: "queue"`) show in the queue panel as
//   the gateway's queued runs; when the current answer has ended, the page shows each as a
//   question of its own with its answer (read live through the chat's resume route, or from the
//   run's record when it ended before the page asked), each its own run.
// - Clear empties the queue (`DELETE /sessions/:key/queue`): the queued run is cancelled and
//   never answered.
// - A reload while a message is queued: the running answer resumes, then the queued one comes.
// Screenshot: artifacts/chat-ui-queue.png.
// Run: npm test -- __test__/chat-queue-browser.test.mjs   (needs /usr/bin/chromium; fails, never skips, without it)

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { fauxLongText } from "../lib/faux-agent.js";
import { lastAssistantText, openChatPage, readChat, sendAndWaitForMarker, suiteChatUi, userTexts, waitUntilReady } from "./support/browser-chat-ui.mjs";
import { UI_TIMEOUT_MS } from "./support/browser-chromium.mjs";
import { readQueuePanel, unexpectedProblems } from "./support/browser-queue.mjs";
import { waitFor } from "./support/wait.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ARTIFACTS = join(ROOT, "artifacts");
const TOKEN = "queue-test-token";
/** Every test stops by itself well within this (the slowest answer streams for ~6 s). */
const TEST_TIMEOUT_MS = 120_000;

/** The messages as `[role, [part kind + text…]]`, for comparing a whole conversation. */
function shape(chat) {
	return chat.messages.map((m) => [m.role, m.parts.map((p) => `${p.kind}: ${p.text}`)]);
}

describe("the chat example sends while an answer streams (Steer / Queue), in headless chromium", { timeout: TEST_TIMEOUT_MS * 4 }, () => {
	const ui = suiteChatUi("pi-gateway-chat-queue-", TOKEN);

	const chatPath = (session) => `/sessions/${session}/chat`;
	const chatPosts = (session) => ui.exchanges.filter((e) => e.method === "POST" && e.path === chatPath(session));
	const resumeGets = (session) =>
		ui.exchanges.filter((e) => e.method === "GET" && e.path.startsWith(`${chatPath(session)}/`) && e.path.endsWith("/stream"));

	/**
	 * Opens the page on `session`, sends `/slow <words>` (the question) as an ordinary message, waits
	 * for `marker` in the answer. Returns the run id, the question, the `full` answer it streams and
	 * pi's session.
	 */
	async function startAnswer(session, words, marker) {
		const question = `/slow ${words}`;
		await openChatPage(ui, session, TOKEN);
		// Nothing to choose while nothing streams.
		assert.equal(await ui.tab.getByTestId("mode").count(), 0);
		await sendAndWaitForMarker(ui.tab, question, marker);
		const post = await waitFor(() => chatPosts(session).find((e) => e.runId), "the chat POST's x-run-id");
		assert.equal(JSON.parse(post.body).mode, undefined, "an ordinary send carries no mode");
		return { runId: post.runId, question, full: fauxLongText(words), pi: ui.gw.sessions.get(session) };
	}

	/** While the answer streams: picks `mode` beside the input and sends `text`; returns the POST. */
	async function sendWhileStreaming(session, mode, text) {
		assert.equal(await ui.tab.getByTestId("status").innerText(), "streaming");
		const before = chatPosts(session).length;
		await ui.tab.getByTestId(`mode-${mode}`).click();
		assert.equal(await ui.tab.getByTestId(`mode-${mode}`).getAttribute("aria-checked"), "true");
		await ui.tab.getByTestId("input").fill(text);
		await ui.tab.getByTestId("send").click();
		return waitFor(() => chatPosts(session).at(before)?.status && chatPosts(session).at(before), `the ${mode} POST's answer`);
	}

	/** Waits until the queue panel shows run `runId`. */
	const queuedInPanel = (runId) =>
		waitFor(async () => (await readQueuePanel(ui.tab))?.items.some((i) => i.runId === runId), "the queued message in the panel");
	/** Waits until the queue panel is empty. */
	const panelEmptied = () => waitFor(async () => (await readQueuePanel(ui.tab))?.items.length === 0, "the queue panel to empty");
	/** Waits until the answer of run `runId` shows a text part with `text` and the page is ready; returns what the page shows. */
	async function shownOnceAnswered(runId, text) {
		await ui.tab
			.locator(`article[data-role="assistant"][data-id="${runId}"] [data-part="text"]`)
			.filter({ hasText: text })
			.waitFor({ timeout: UI_TIMEOUT_MS });
		await waitUntilReady(ui.tab);
		return readChat(ui.tab);
	}

	/** The page had no problems but its own streams cut short (see unexpectedProblems); forgets them for the next test. */
	function noProblems(options) {
		assert.deepEqual(unexpectedProblems(ui.problems, options), []);
		ui.problems.length = 0;
	}

	it("Steer: the message goes into the streaming answer — a marker, then the reply to it, in the same answer and run", async () => {
		const session = "steer";
		const steer = "/echo change of plan";
		const { runId, question, full, pi } = await startAnswer(session, 120, "w04 "); // ~6 s

		const post = await sendWhileStreaming(session, "steer", steer);
		assert.equal(post.status, 200);
		const body = JSON.parse(post.body);
		assert.equal(body.mode, "steer");
		assert.equal(body.id, JSON.parse(chatPosts(session)[0].body).id, "the same chat id");
		assert.deepEqual(
			body.messages.map((m) => [m.role, m.parts.map((p) => p.text).join("")]),
			[["user", steer]],
		);
		assert.equal(post.runId, runId, "the steer went into the running run");

		// The marker shows in the streaming answer, while the answer still streams.
		const answer = ui.tab.locator(`article[data-role="assistant"][data-id="${runId}"]`);
		await answer.locator('[data-part="steering"]').waitFor();
		const during = await readChat(ui.tab);
		assert.equal(during.status, "streaming");
		const streamingAnswer = during.messages.find((m) => m.id === runId);
		assert.deepEqual(
			streamingAnswer.parts.filter((p) => p.kind === "steering").map((p) => [p.text, p.mode]),
			[[`↪ steered: ${steer}`, "steer"]],
		);
		assert.ok(streamingAnswer.parts[0].text.length < full.length, "the marker came in the middle of the answer");
		// pi's pending steering text, in the queue panel (until pi takes it in at the end of its turn).
		await waitFor(async () => (await readQueuePanel(ui.tab))?.items.some((i) => i.kind === "steering" && i.text === steer), "the steering text in the queue panel");
		assert.ok(pi.isStreaming, "still answering when the panel showed it");

		// The answer goes on, then takes the steering message in: the reply to it ends the same answer.
		const shown = await shownOnceAnswered(runId, "You said: change of plan");
		assert.deepEqual(shape(shown), [
			["user", [`text: ${question}`]],
			["assistant", [`text: ${full}`, `steering: ↪ steered: ${steer}`, "text: You said: change of plan"]],
		]);
		assert.deepEqual(shown.errors, []);

		// On the gateway: one run, which answered both; pi saw both messages, in order.
		await waitFor(() => ui.gw.runtime.getRun(session, runId)?.status === "succeeded", "the run to succeed");
		assert.deepEqual(
			ui.gw.runtime.listRuns(session).map((r) => [r.runId, r.status]),
			[[runId, "succeeded"]],
		);
		assert.deepEqual(userTexts(pi), [question, steer]);
		assert.equal(lastAssistantText(pi), "You said: change of plan");
		await panelEmptied();
		noProblems();
	});

	it("Queue: messages wait in the queue panel, then each gets its own question and answer after the current one", async () => {
		const session = "queue";
		// The first queued answer streams for ~1 s: the page reads it live, through the resume route.
		// The second is answered at once: it may end before the page asks for it, and then comes
		// from the run's record — the page shows the same either way.
		const queuedSlow = "/slow 20";
		const queuedFast = "/echo fast one";
		const { runId, question, full, pi } = await startAnswer(session, 100, "w03 "); // ~5 s

		const posts = [];
		for (const text of [queuedSlow, queuedFast]) {
			const post = await sendWhileStreaming(session, "queue", text);
			assert.equal(post.status, 200);
			assert.equal(JSON.parse(post.body).mode, "queue");
			assert.equal(JSON.parse(post.body).id, JSON.parse(chatPosts(session)[0].body).id, "the same chat id");
			posts.push(post);
		}
		const [slowRunId, fastRunId] = posts.map((p) => p.runId);
		assert.equal(new Set([runId, slowRunId, fastRunId]).size, 3, "each queued message has a run of its own");

		// The queue panel shows them, in order, with their texts, while the current answer streams.
		const panel = await waitFor(async () => {
			const read = await readQueuePanel(ui.tab);
			return read?.items.length === 2 ? read : undefined;
		}, "the queued messages in the queue panel");
		assert.deepEqual(panel.items, [
			{ kind: "queued", runId: slowRunId, text: queuedSlow },
			{ kind: "queued", runId: fastRunId, text: queuedFast },
		]);
		assert.equal(panel.clearEnabled, true);
		assert.equal(await ui.tab.getByTestId("status").innerText(), "streaming");
		assert.equal(ui.gw.runtime.getRun(session, slowRunId)?.status, "queued");
		assert.equal(ui.gw.runtime.getRun(session, fastRunId)?.status, "queued");
		await mkdir(ARTIFACTS, { recursive: true });
		await ui.tab.screenshot({ path: join(ARTIFACTS, "chat-ui-queue.png"), fullPage: true });
		// Not in the conversation before their turn.
		assert.equal((await readChat(ui.tab)).messages.length, 2);

		// After the current answer: their own questions and answers, in order.
		const shown = await shownOnceAnswered(fastRunId, "You said: fast one");
		assert.deepEqual(shape(shown), [
			["user", [`text: ${question}`]],
			["assistant", [`text: ${full}`]],
			["user", [`text: ${queuedSlow}`]],
			["assistant", [`text: ${fauxLongText(20)}`]],
			["user", [`text: ${queuedFast}`]],
			["assistant", ["text: You said: fast one"]],
		]);
		assert.deepEqual(
			shown.messages.filter((m) => m.role === "assistant").map((m) => m.id),
			[runId, slowRunId, fastRunId],
		);
		assert.deepEqual(shown.errors, []);

		// The page read the slow queued answer live, through the resume route.
		assert.ok(
			resumeGets(session).some((e) => e.status === 200 && e.runId === slowRunId),
			`a resume that read the first queued run: ${JSON.stringify(resumeGets(session))}`,
		);
		// The gateway ran them one after the other, each as its own run (mode queue).
		await waitFor(() => ui.gw.runtime.getRun(session, fastRunId)?.status === "succeeded", "the last queued run to succeed");
		const runs = [runId, slowRunId, fastRunId].map((id) => ui.gw.runtime.getRun(session, id));
		assert.deepEqual(
			runs.map((r) => [r.status, r.mode]),
			[
				["succeeded", "queue"],
				["succeeded", "queue"],
				["succeeded", "queue"],
			],
		);
		assert.ok(runs[0].endedAt <= runs[1].startedAt && runs[1].endedAt <= runs[2].startedAt, "one after the other");
		assert.deepEqual(userTexts(pi), [question, queuedSlow, queuedFast]);
		assert.equal(chatPosts(session).length, 3, "each message sent once");
		await panelEmptied();
		noProblems();
	});

	it("Clear empties the queue: the queued message is cancelled and never answered", async () => {
		const session = "clear";
		const { runId, question, full, pi } = await startAnswer(session, 100, "w03 "); // ~5 s

		const post = await sendWhileStreaming(session, "queue", "/echo never answered");
		const queuedRunId = post.runId;
		await queuedInPanel(queuedRunId);

		const cleared = ui.tab.waitForResponse((response) => response.url().endsWith("/queue") && response.request().method() === "DELETE");
		await ui.tab.getByTestId("queue-clear").click();
		const response = await cleared;
		assert.equal(response.status(), 200);
		assert.deepEqual(await response.json(), { ok: true, cleared: 1, steering: [], followUp: [] });
		await panelEmptied();
		const cancelled = ui.gw.runtime.getRun(session, queuedRunId);
		assert.equal(cancelled?.status, "cancelled");
		assert.equal(cancelled?.result?.error, "Queue cleared");
		assert.equal(ui.gw.runtime.getRun(session, runId)?.status, "running", "Clear leaves the running answer alone");

		await waitUntilReady(ui.tab, { timeout: UI_TIMEOUT_MS });
		// Give a (wrong) late answer time to show up.
		await new Promise((resolve) => setTimeout(resolve, 1000));
		const shown = await readChat(ui.tab);
		assert.deepEqual(shape(shown), [
			["user", [`text: ${question}`]],
			["assistant", [`text: ${full}`]],
		]);
		assert.deepEqual(shown.errors, []);
		assert.deepEqual(userTexts(pi), [question]);
		noProblems();
	});

	it("a reload while a message is queued: the running answer resumes, then the queued one comes, each once", async () => {
		const session = "queue reload";
		const queued = "/echo after the reload";
		const { runId, question, full, pi } = await startAnswer(session, 120, "w03 "); // ~6 s
		const post = await sendWhileStreaming(session, "queue", queued);
		const queuedRunId = post.runId;
		await queuedInPanel(queuedRunId);

		await ui.tab.reload();
		await waitFor(() => resumeGets(session).some((e) => e.status === 200 && e.runId === runId), "the resumed answer");
		assert.ok(pi.isStreaming, "the first answer was still streaming after the reload");
		const shown = await shownOnceAnswered(queuedRunId, "You said: after the reload");
		assert.deepEqual(shape(shown), [
			["user", [`text: ${question}`]],
			["assistant", [`text: ${full}`]],
			["user", [`text: ${queued}`]],
			["assistant", ["text: You said: after the reload"]],
		]);
		assert.deepEqual(
			shown.messages.filter((m) => m.role === "assistant").map((m) => m.id),
			[runId, queuedRunId],
		);
		assert.deepEqual(shown.errors, []);
		assert.equal(chatPosts(session).length, 2, "the page sent each message once");
		assert.deepEqual(userTexts(pi), [question, queued]);
		noProblems({ reloaded: true });
	});
});

// The page's queue pieces on their own (examples/chat-ui/src/gateway.js).
describe("examples/chat-ui/src/gateway.js: sending while an answer streams", () => {
	const user = (id, text) => ({ id, role: "user", parts: [{ type: "text", text }] });
	const assistant = (id, text) => ({ id, role: "assistant", parts: [{ type: "text", text }] });

	it("chatRequestBody and gatewayRoutes(...).queue", async () => {
		const { chatRequestBody, gatewayRoutes } = await import("../examples/chat-ui/src/gateway.js");
		assert.deepEqual(chatRequestBody({ chatId: "c1", text: "hi", mode: "steer", messageId: "m1" }), {
			id: "c1",
			messages: [user("m1", "hi")],
			trigger: "submit-message",
			mode: "steer",
		});
		assert.equal(gatewayRoutes("http://g", "a b").queue, "http://g/sessions/a%20b/queue");
	});

	it("sendDuringAnswer: x-run-id, the body cancelled; an HTTP error as useChat reports one", async () => {
		const { describeChatError, gatewayRoutes, sendDuringAnswer } = await import("../examples/chat-ui/src/gateway.js");
		const routes = gatewayRoutes("http://g", "s");
		const seen = [];
		let cancelled = false;
		const fetch = async (url, init) => {
			seen.push({ url, init });
			if (JSON.parse(init.body).messages[0].parts[0].text === "full") {
				return new Response('{"ok":false,"response":"","error":"Queue full (8 pending)"}', { status: 429 });
			}
			const body = new ReadableStream({ cancel: () => void (cancelled = true) });
			return new Response(body, { status: 200, headers: { "x-run-id": "run-9" } });
		};
		const sent = await sendDuringAnswer({ routes, headers: { Authorization: "Bearer t" }, chatId: "c", text: "later", mode: "queue", messageId: "m", fetch });
		assert.deepEqual(sent, { runId: "run-9", status: 200 });
		assert.equal(cancelled, true, "the answer's stream is not read");
		assert.equal(seen[0].url, "http://g/sessions/s/chat");
		assert.equal(seen[0].init.method, "POST");
		assert.deepEqual(seen[0].init.headers, { Authorization: "Bearer t", "content-type": "application/json" });
		assert.equal(JSON.parse(seen[0].init.body).mode, "queue");
		const error = await sendDuringAnswer({ routes, chatId: "c", text: "full", mode: "queue", messageId: "m", fetch }).catch((e) => e);
		assert.equal(error.statusCode, 429);
		assert.deepEqual(describeChatError(error, { gateway: "http://g" }).title, "Queue full (8 pending)");
	});

	it("readQueue / parseQueue / queueHasWaiting: a 404 is an empty queue; junk is dropped", async () => {
		const { EMPTY_QUEUE, gatewayRoutes, parseQueue, queueHasWaiting, readQueue } = await import("../examples/chat-ui/src/gateway.js");
		const routes = gatewayRoutes("http://g", "s");
		assert.deepEqual(await readQueue({ routes, fetch: async () => new Response('{"error":"Session not found: s"}', { status: 404 }) }), EMPTY_QUEUE);
		const body = { running: { runId: "r1" }, queued: [{ runId: "r2" }, null, { id: 1 }], steering: ["a", 3], followUp: "x" };
		const read = await readQueue({ routes, fetch: async () => Response.json(body) });
		assert.deepEqual(read, { running: { runId: "r1" }, queued: [{ runId: "r2" }], steering: ["a"], followUp: [] });
		assert.deepEqual(parseQueue(null), EMPTY_QUEUE);
		assert.equal(queueHasWaiting(read), true);
		assert.equal(queueHasWaiting({ ...EMPTY_QUEUE, running: { runId: "r1" } }), false, "the running run is not waiting");
		assert.equal(queueHasWaiting(undefined), false);
	});

	it("steeringLabel, settlePending, withQueuedUserMessage, showEndedRun", async () => {
		const { settlePending, showEndedRun, steeringLabel, withQueuedUserMessage } = await import("../examples/chat-ui/src/gateway.js");
		assert.equal(steeringLabel({ text: "go left", mode: "steer" }), "↪ steered: go left");
		assert.equal(steeringLabel({ text: "then this", mode: "followUp" }), "↪ follow-up: then this");

		const pending = [
			{ runId: "r2", text: "second" },
			{ runId: "r3", text: "third" },
		];
		const messages = [user("u1", "first"), assistant("r1", "one")];
		assert.equal(settlePending(pending, messages), pending, "nothing shown: the same list");
		assert.deepEqual(settlePending(pending, [...messages, user("r2:user", "second"), assistant("r2", "two")]), [pending[1]]);

		const withUser = withQueuedUserMessage(messages, pending[0]);
		assert.deepEqual(withUser, [...messages, user("r2:user", "second")]);
		assert.equal(withQueuedUserMessage(withUser, pending[0]), withUser, "not twice");

		const cancelled = showEndedRun(messages, pending[1], {
			runId: "r3",
			status: "cancelled",
			result: { ok: false, response: "", error: "Queue cleared" },
		});
		assert.deepEqual(cancelled.slice(2), [
			user("r3:user", "third"),
			{ id: "r3", role: "assistant", parts: [{ type: "step-start" }, { type: "data-notice", data: { text: "cancelled: Queue cleared" } }] },
		]);
		const done = showEndedRun(messages, pending[1], { runId: "r3", status: "succeeded", result: { ok: true, response: "three" } });
		assert.deepEqual(done.at(-1).parts, [{ type: "step-start" }, { type: "text", text: "three", state: "done" }]);
		assert.equal(showEndedRun(done, pending[1], { runId: "r3", status: "succeeded" }).length, done.length, "not twice");
	});

	it("saveConversation / loadConversation keep the pending queued messages", async () => {
		const { loadConversation, saveConversation } = await import("../examples/chat-ui/src/gateway.js");
		const map = new Map();
		const storage = { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, String(v)) };
		const where = { storage, gateway: "http://g", session: "s", chatId: "c" };
		const messages = [user("u1", "q")];
		saveConversation({ ...where, messages, pending: [{ runId: "r2", text: "later" }, { runId: 5 }] });
		assert.deepEqual(loadConversation(where), { messages, pending: [{ runId: "r2", text: "later" }] });
		saveConversation({ ...where, messages, pending: [] });
		assert.deepEqual(loadConversation(where), { messages });
	});
});
