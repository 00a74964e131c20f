// The chat example (examples/chat-ui) shows the conversation from the gateway's history, in
// Debian's headless chromium, against a pi-gateway on another origin in front of real pi
// AgentSessions on the faux model, kept on disk (`sessionExists` / `deleteSession`, as the CLI).
// SPEC section 12 (issue 14): `GET /sessions/:key/messages?format=ui` on mount, handed to
// `useChat({ messages })`, with the chat's resume for an answer still running.
//
// - A conversation with reasoning, a `read` tool call (the faux default command) and an image the
//   page attached (a `file` part): after a reload the page shows all of it from the history —
//   the same parts it showed live — and the tokens/cost line under each answer.
// - The model picker (`GET /models`, `PUT /sessions/:key/model`) and the thinking picker
//   (`PUT /sessions/:key/thinking`): after picking faux-2 the next answer comes from faux-2
//   (pi's message, the gateway's snapshot and history, the page's usage line all say so).
// - A reload during `/slow 200`: the history up to the question shows while the answer is still
//   running, and the answer continues streaming to its end, once; nothing is shown twice.
// - A session that left the gateway's memory: the page remembers it talked there and loads the
//   history from disk; "Load older" pages back to the start.
// - A new session: the model picked before its first message answers that message; an image
//   without text is a message of its own.
// - A question another client is having answered (not this chat's, so not resumable): the page
//   shows the question, then the answer once the history has it.
// Screenshot: artifacts/chat-ui-history.png.
// Run: npm test -- __test__/chat-history-browser.test.mjs   (needs /usr/bin/chromium; fails, never skips, without it)

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { fauxLongText, HELLO_CONTENT, HELLO_FILE } from "../lib/faux-agent.js";
import { openChatPage, openChatUi, recordExchanges, userTexts, waitUntilReady } from "./support/browser-chat-ui.mjs";
import { UI_TIMEOUT_MS } from "./support/browser-chromium.mjs";
import {
	attachImage,
	gatewayGet,
	pick,
	readConversationView,
	readPickers,
	startPersistentChatGateway,
	testImage,
	wholeHistory,
} from "./support/browser-history.mjs";
import { unexpectedProblems } from "./support/browser-queue.mjs";
import { waitFor } from "./support/wait.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ARTIFACTS = join(ROOT, "artifacts");
const TOKEN = "history-test-token";
const SESSION = "history chat"; // a space: percent-encoded in every route
/** Every test stops by itself well within this (the slowest answer streams for ~10 s). */
const TEST_TIMEOUT_MS = 120_000;

const QUESTION = `What is in ${HELLO_FILE}?`;
const ANSWER = `${HELLO_FILE} says: ${HELLO_CONTENT}`;
const IMAGE_TEXT = "/echo an image";
const SECOND_MODEL_TEXT = "/echo from the second model";
const SLOW = "/slow 200"; // ~10 s at the faux /slow speed

/** A message as compared across a reload: its role and parts (a user message's id is the page's own before the reload). */
const shape = (m) => ({ role: m.role, parts: m.parts });

/** How many times `needle` occurs in `haystack`. */
function occurrences(haystack, needle) {
	return haystack.split(needle).length - 1;
}

describe("the chat example shows the gateway's history, images, usage and the model pickers, in headless chromium", { timeout: TEST_TIMEOUT_MS * 7 }, () => {
	/** @type {Awaited<ReturnType<typeof openChatUi>>} */
	let ui;
	/** @type {ReturnType<typeof recordExchanges>} */
	let exchanges;
	const problems = [];
	const image = testImage();
	/** What the page showed of the first two turns before any reload (filled by the first test). */
	let live;
	/** The run ids of the page's chat POSTs, in order. */
	const runIds = [];

	before(async () => {
		ui = await openChatUi(
			"pi-gateway-chat-history-",
			(origin) => startPersistentChatGateway({ config: { bearerToken: TOKEN, cors: { origins: [origin] } } }),
			problems,
		);
		assert.notEqual(new URL(ui.gw.base).origin, ui.page.origin);
		exchanges = recordExchanges(ui.tab, ui.gw.base);
	});
	after(() => ui?.close());
	// Each test answers for the page's problems while it runs (a failed test leaves its own behind).
	beforeEach(() => {
		problems.length = 0;
	});

	const path = (action = "") => `/sessions/${SESSION}${action}`;
	const chatPosts = () => exchanges.filter((e) => e.method === "POST" && e.path === path("/chat"));
	const historyGets = () => exchanges.filter((e) => e.method === "GET" && e.path === path("/messages"));
	const resumeGets = () => exchanges.filter((e) => e.method === "GET" && e.path.startsWith(path("/chat/")) && e.path.endsWith("/stream"));
	const pi = () => ui.gw.sessions.get(SESSION);

	/** Sends `text` (with the attachments already added), waits for an answer part with `answer` and the page ready; returns the POST's run id. */
	async function send(text, answer) {
		const before = chatPosts().length;
		await ui.tab.getByTestId("input").fill(text);
		await ui.tab.getByTestId("send").click();
		await ui.tab
			.locator('article[data-role="assistant"] [data-part="text"]')
			.filter({ hasText: answer })
			.waitFor({ timeout: UI_TIMEOUT_MS });
		await waitUntilReady(ui.tab);
		const post = await waitFor(() => chatPosts().at(before)?.runId && chatPosts().at(before), "the chat POST's x-run-id");
		runIds.push(post.runId);
		return post;
	}

	/** Reloads the page; returns the history answer the page got on that load (the page may still be resuming). */
	async function reload() {
		const gets = historyGets().length;
		const answer = ui.tab.waitForResponse((r) => new URL(r.url()).pathname === `/sessions/${encodeURIComponent(SESSION)}/messages`);
		await ui.tab.reload();
		const response = await answer;
		assert.equal(response.status(), 200, "the page loaded the history");
		assert.equal(historyGets().length, gets + 1, "one history request per load");
		const url = new URL(response.url());
		assert.equal(url.searchParams.get("format"), "ui");
		return response.json();
	}

	/** The page had no problems but its own streams cut short by a reload; forgets them. */
	function noProblems() {
		assert.deepEqual(unexpectedProblems(problems, { reloaded: true }), []);
		problems.length = 0;
	}

	it("after a conversation with reasoning, a tool call and an image, a reload shows it all from the history, with tokens and cost", async () => {
		await openChatPage(ui, SESSION, TOKEN);
		assert.equal(historyGets().length, 0, "a session the gateway does not have: no history request (no 404 in the console)");

		// Turn 1: the faux default command — reasoning, pi's read tool on hello.txt, the answer.
		await send(QUESTION, ANSWER);
		// Turn 2: an image and a text, as file + text parts.
		await attachImage(ui.tab, image);
		await send(IMAGE_TEXT, "You said: an image");
		assert.equal(await ui.tab.getByTestId("attachment").count(), 0, "the attachments went with the message");
		const body = JSON.parse(chatPosts()[1].body);
		assert.deepEqual(
			body.messages.map((m) => m.parts.map((p) => (p.type === "file" ? { type: p.type, mediaType: p.mediaType, url: p.url } : p))),
			[[{ type: "file", mediaType: "image/png", url: image.dataUrl }, { type: "text", text: IMAGE_TEXT }]],
			"the image went as a file part, before the text",
		);
		// pi got the image.
		const piUser = pi().messages.filter((m) => m.role === "user").at(-1);
		assert.deepEqual(
			piUser.content.filter((c) => c.type === "image").map((c) => [c.mimeType, c.data]),
			[["image/png", image.buffer.toString("base64")]],
		);

		live = await readConversationView(ui.tab);
		const expectedParts = [
			[{ kind: "text", text: QUESTION }],
			[
				{ kind: "reasoning", text: `The user asked "${QUESTION}". I will look at the workspace file ${HELLO_FILE}.` },
				{ kind: "tool", toolName: "read", state: "output-available", input: JSON.stringify({ path: HELLO_FILE }), output: HELLO_CONTENT },
				{ kind: "text", text: ANSWER },
			],
			[
				{ kind: "file", mediaType: "image/png", src: image.dataUrl },
				{ kind: "text", text: IMAGE_TEXT },
			],
			[{ kind: "text", text: "You said: an image" }],
		];
		assert.deepEqual(
			live.messages.map((m) => m.parts),
			expectedParts,
			"what the page showed live",
		);
		// The live answers' usage line comes from the `finish` chunk's messageMetadata.
		for (const m of live.messages.filter((m) => m.role === "assistant")) {
			assert.ok(m.usage, `a usage line under the live answer ${m.id}`);
			assert.ok(m.usage.totalTokens > 0, `tokens of the live answer: ${m.usage.text}`);
			assert.equal(typeof m.usage.cost, "number", `cost of the live answer: ${m.usage.text}`);
			assert.equal(m.usage.model, "faux/faux-1");
		}

		const history = await reload();
		await waitUntilReady(ui.tab);
		const shown = await readConversationView(ui.tab);
		// The same conversation as live, from the history, once.
		assert.deepEqual(shown.messages.map(shape), live.messages.map(shape), "after the reload: the same parts as live");
		assert.deepEqual(
			shown.messages.map((m) => m.role),
			["user", "assistant", "user", "assistant"],
		);
		assert.deepEqual(
			shown.messages.map((m) => m.id),
			history.messages.map((m) => m.id),
			"the page shows the history's messages",
		);
		assert.equal(history.hasMore, false);
		// An answer's id is its run (the same id the page had live).
		assert.deepEqual(
			shown.messages.filter((m) => m.role === "assistant").map((m) => m.id),
			runIds,
		);
		assert.deepEqual(
			live.messages.filter((m) => m.role === "assistant").map((m) => m.id),
			runIds,
		);
		// The image as the history gives it: the data URL the page sent.
		const fileParts = history.messages[2].parts.filter((p) => p.type === "file");
		assert.deepEqual(
			fileParts.map((p) => [p.mediaType, p.url]),
			[["image/png", image.dataUrl]],
		);
		assert.deepEqual(await ui.tab.locator('article[data-role="user"] img[data-part="file"]').evaluate((img) => [img.naturalWidth, img.naturalHeight]), [image.size, image.size], "the image decodes");
		// Tokens and cost under each answer, from the history's metadata.
		for (const [i, m] of shown.messages.entries()) {
			if (m.role !== "assistant") {
				assert.equal(m.usage, null);
				continue;
			}
			const usage = history.messages[i].metadata?.usage;
			assert.ok(usage, `the history's metadata of ${m.id} has usage`);
			assert.ok(usage.totalTokens > 0, `tokens of ${m.id}`);
			assert.ok(m.usage, `a usage line under ${m.id}`);
			assert.equal(m.usage.totalTokens, usage.totalTokens);
			assert.equal(m.usage.cost, usage.cost.total);
			assert.match(m.usage.text, new RegExp(`^${usage.totalTokens.toLocaleString("en-US")} tokens · \\$`));
			assert.equal(m.usage.model, "faux/faux-1");
			assert.deepEqual(m.usage, live.messages[i].usage, "the same usage line as live");
		}
		assert.equal(shown.status, "ready");
		assert.deepEqual(shown.errors, []);
		assert.deepEqual(shown.notices, []);
		assert.equal(shown.loadOlder, false);
		// Nothing was run again: two chat POSTs, two questions in pi.
		assert.equal(chatPosts().length, 2);
		assert.deepEqual(userTexts(pi()), [QUESTION, IMAGE_TEXT]);
		noProblems();
	});

	it("the model picker: after picking faux-2 the next answer comes from faux-2; the thinking picker sets the level", async () => {
		const models = await gatewayGet(ui.gw.base, "/models", TOKEN);
		assert.equal(models.status, 200, models.text);
		const keys = models.json.models.map((m) => `${m.provider}/${m.id}`);
		assert.ok(keys.includes("faux/faux-1") && keys.includes("faux/faux-2"), keys.join(", "));

		const before = await readPickers(ui.tab);
		assert.ok(before, "the pickers show");
		assert.equal(before.model, "faux/faux-1", "the session's model (its snapshot)");
		assert.deepEqual(before.options, keys, "the models of GET /models");
		assert.equal(before.modelDisabled, false);
		assert.equal(before.thinkingDisabled, true, "faux-1 does not reason: nothing to pick");

		const picked = await pick(ui.tab, "model-picker", "faux/faux-2");
		assert.equal(picked.failed, undefined, `the browser's PUT /sessions/:key/model failed: ${picked.failed}; ${problems.join(" | ")}`);
		assert.equal(picked.status, 200, JSON.stringify(picked.body));
		assert.deepEqual(picked.request, { provider: "faux", id: "faux-2" });
		assert.deepEqual(picked.body.model, { provider: "faux", id: "faux-2" });
		await waitFor(async () => (await readPickers(ui.tab))?.model === "faux/faux-2", "the picker to show faux-2");
		let snapshot = (await gatewayGet(ui.gw.base, path(), TOKEN)).json.session;
		assert.deepEqual(snapshot.model, { provider: "faux", id: "faux-2" }, "the gateway's snapshot");

		// faux-2 reasons: the thinking picker is open; the level pi applied is what shows.
		await waitFor(async () => (await readPickers(ui.tab))?.thinkingDisabled === false, "the thinking picker to open");
		const thought = await pick(ui.tab, "thinking-picker", "high");
		assert.equal(thought.failed, undefined, `the browser's PUT /sessions/:key/thinking failed: ${thought.failed}; ${problems.join(" | ")}`);
		assert.equal(thought.status, 200, JSON.stringify(thought.body));
		assert.deepEqual(thought.request, { level: "high" });
		assert.equal(typeof thought.body.thinkingLevel, "string");
		await waitFor(async () => (await readPickers(ui.tab))?.thinking === thought.body.thinkingLevel, "the picker to show the level");
		snapshot = (await gatewayGet(ui.gw.base, path(), TOKEN)).json.session;
		assert.equal(snapshot.thinkingLevel, thought.body.thinkingLevel, "the gateway's snapshot");

		const post = await send(SECOND_MODEL_TEXT, "You said: from the second model");
		// pi's answer came from faux-2…
		const last = pi().messages.at(-1);
		assert.equal(last.role, "assistant");
		assert.equal(last.provider, "faux");
		assert.equal(last.model, "faux-2");
		// …and the page's usage line (the finish chunk's metadata) says so.
		const shown = await readConversationView(ui.tab);
		const answer = shown.messages.find((m) => m.id === post.runId);
		assert.ok(answer?.usage, "a usage line under the faux-2 answer");
		assert.equal(answer.usage.model, "faux/faux-2");
		assert.ok(answer.usage.totalTokens > 0);
		// The history's metadata too.
		const history = await wholeHistory(ui.gw.base, SESSION, TOKEN);
		assert.deepEqual(history.at(-1).metadata?.model, { provider: "faux", id: "faux-2" });
		assert.equal(history.at(-1).id, post.runId);

		// After a reload the pickers show the session's model and level (its snapshot).
		await reload();
		await waitUntilReady(ui.tab);
		await waitFor(async () => (await readPickers(ui.tab))?.model === "faux/faux-2", "the model picker after the reload");
		assert.equal((await readPickers(ui.tab)).thinking, thought.body.thinkingLevel);
		const reloaded = await readConversationView(ui.tab);
		assert.equal(reloaded.messages.find((m) => m.id === post.runId)?.usage?.model, "faux/faux-2");
		noProblems();
	});

	it("a reload during /slow 200: the history up to the question, then the answer streams on to its end, once", async () => {
		const full = fauxLongText(200);
		const before = (await readConversationView(ui.tab)).messages;
		// The session's model (faux-2 once the picker test has run): the answer's usage line names it.
		const { model } = (await gatewayGet(ui.gw.base, path(), TOKEN)).json.session;
		const questionsBefore = userTexts(pi());
		const postsBefore = chatPosts().length;
		await ui.tab.getByTestId("input").fill(SLOW);
		await ui.tab.getByTestId("send").click();
		await ui.tab.waitForFunction(
			(id) => ([...document.querySelectorAll('article[data-role="assistant"]')].at(-1)?.getAttribute("data-id") ?? id) !== id &&
				([...document.querySelectorAll('article[data-role="assistant"]')].at(-1)?.textContent ?? "").includes("w05 "),
			before.at(-1).id,
			{ timeout: UI_TIMEOUT_MS },
		);
		const post = await waitFor(() => chatPosts().at(postsBefore)?.runId && chatPosts().at(postsBefore), "the chat POST's x-run-id");
		const runId = post.runId;
		assert.ok(pi().isStreaming, "the answer is streaming when the page reloads");

		const resumes = resumeGets().length;
		const history = await reload();
		// The history ends at the running run's question; its answer is not in it.
		assert.equal(history.messages.at(-1).role, "user");
		assert.deepEqual(history.messages.at(-1).parts.filter((p) => p.type === "text").map((p) => p.text), [SLOW]);
		assert.ok(!history.messages.some((m) => m.id === runId), "no part of the running answer in the history");
		assert.deepEqual(
			history.messages.slice(0, -1).map((m) => m.id),
			before.map((m) => m.id),
			"the history before the question is what the page showed",
		);
		// The page resumed the running answer.
		await waitFor(() => resumeGets().slice(resumes).some((e) => e.status === 200 && e.runId === runId), "a 200 from the resume route for the run");
		// While it still streams, the page shows the history up to the question, then the answer growing.
		await ui.tab.waitForFunction(
			(id) => (document.querySelector(`article[data-id="${id}"]`)?.textContent ?? "").includes("w20 "),
			runId,
			{ timeout: UI_TIMEOUT_MS },
		);
		assert.ok(pi().isStreaming, "the answer was still streaming after the reload (else this would not test a resume)");
		const during = await readConversationView(ui.tab);
		assert.equal(during.status, "streaming");
		assert.deepEqual(
			during.messages.slice(0, -1).map((m) => m.id),
			history.messages.map((m) => m.id),
			"the history, then the streaming answer",
		);
		assert.equal(during.messages.at(-1).id, runId);

		// To the end.
		await ui.tab.waitForFunction(
			({ id, full }) => document.querySelector(`article[data-id="${id}"] [data-part="text"]`)?.textContent === full,
			{ id: runId, full },
			{ timeout: UI_TIMEOUT_MS },
		);
		await waitUntilReady(ui.tab);
		await waitFor(() => !pi().isStreaming, "the run to end");
		assert.equal(ui.gw.runtime.getRun(SESSION, runId)?.status, "succeeded");

		const check = async (when) => {
			const shown = await readConversationView(ui.tab);
			const ids = shown.messages.map((m) => m.id);
			assert.equal(new Set(ids).size, ids.length, `${when}: no message twice: ${ids.join(", ")}`);
			assert.deepEqual(
				shown.messages.map((m) => m.role),
				[...before.map((m) => m.role), "user", "assistant"],
				when,
			);
			assert.deepEqual(ids.slice(0, -1), history.messages.map((m) => m.id), when);
			assert.equal(ids.at(-1), runId, when);
			assert.deepEqual(shown.messages.at(-1).parts, [{ kind: "text", text: full }], when);
			assert.equal(occurrences(shown.all, full), 1, `${when}: the answer shown once`);
			assert.equal(occurrences(shown.all, SLOW), 1, `${when}: the question shown once`);
			assert.ok(shown.messages.at(-1).usage?.totalTokens > 0, `${when}: the answer's usage line`);
			assert.equal(shown.messages.at(-1).usage.model, `${model.provider}/${model.id}`, when);
			assert.deepEqual(shown.errors, [], when);
			assert.equal(shown.status, "ready", when);
			return shown;
		};
		await check("after the resumed answer");
		// The gateway ran the question once.
		assert.equal(chatPosts().length, postsBefore + 1, "one chat POST for it");
		assert.deepEqual(userTexts(pi()), [...questionsBefore, SLOW], "pi got the question once");

		// Once more, after the end: all of it from the history.
		const after = await reload();
		await waitUntilReady(ui.tab);
		assert.equal(after.messages.at(-1).id, runId);
		await check("after a reload once the answer had ended");
		await mkdir(ARTIFACTS, { recursive: true });
		await ui.tab.screenshot({ path: join(ARTIFACTS, "chat-ui-history.png"), fullPage: true });
		noProblems();
	});

	it("a session that left the gateway's memory loads from disk; Load older pages back to the start", async () => {
		const whole = await wholeHistory(ui.gw.base, SESSION, TOKEN);
		assert.ok(whole.length > 3, `more than one page of 3: ${whole.length} messages`);
		const questionsBefore = userTexts(pi());
		// The gateway forgets the session (its file stays): GET /sessions no longer lists it.
		const removed = await fetch(`${ui.gw.base}/sessions/${encodeURIComponent(SESSION)}`, {
			method: "DELETE",
			headers: { authorization: `Bearer ${TOKEN}` },
			signal: AbortSignal.timeout(UI_TIMEOUT_MS),
		});
		assert.equal(removed.status, 200, await removed.text());
		const listed = await gatewayGet(ui.gw.base, "/sessions", TOKEN);
		assert.ok(!listed.json.sessions.some((s) => s.sessionKey === SESSION), "the session is not in memory");

		// Three messages a page.
		const query = new URLSearchParams({ gateway: ui.gw.base, session: SESSION, token: TOKEN, limit: "3" });
		await ui.tab.goto(`${ui.page.origin}/?${query}`);
		await waitUntilReady(ui.tab);
		let shown = await readConversationView(ui.tab);
		assert.deepEqual(
			shown.messages.map((m) => m.id),
			whole.slice(-3).map((m) => m.id),
			"the last page of the history, loaded from disk",
		);
		assert.equal(shown.loadOlder, true);
		for (let pages = 1; shown.loadOlder; pages++) {
			assert.ok(pages < 5, "Load older ends");
			const count = shown.messages.length;
			await ui.tab.getByTestId("load-older").click();
			await waitFor(async () => (await readConversationView(ui.tab)).messages.length > count, "an older page");
			shown = await readConversationView(ui.tab);
		}
		assert.deepEqual(
			shown.messages.map((m) => m.id),
			whole.map((m) => m.id),
			"every message once, in order",
		);
		assert.deepEqual(shown.messages.map(shape).slice(0, 4), live.messages.map(shape), "the first turns as they were shown live");
		assert.deepEqual(shown.errors, []);
		assert.deepEqual(shown.notices, []);
		// The page still talks on it (the same pi conversation, continued).
		await send("/echo still here", "You said: still here");
		assert.notEqual(pi(), undefined);
		assert.deepEqual(userTexts(pi()), [...questionsBefore, "/echo still here"], "the same conversation, continued");
		noProblems();
	});

	it("a new session: the model picked before the first message answers it; an image without text is a message", async () => {
		const session = "history fresh pick";
		const at = (action = "") => `/sessions/${session}${action}`;
		await openChatPage(ui, session, TOKEN);
		assert.equal(ui.gw.runtime.getSession(session), undefined, "the gateway does not have the session yet");
		const models = (await gatewayGet(ui.gw.base, "/models", TOKEN)).json;
		assert.equal((await readPickers(ui.tab))?.model, `${models.current.provider}/${models.current.id}`, "the gateway's default");

		const picked = await pick(ui.tab, "model-picker", "faux/faux-2");
		assert.equal(picked.failed, undefined, `the browser's PUT /sessions/:key/model failed: ${picked.failed}; ${problems.join(" | ")}`);
		assert.equal(picked.status, 200, JSON.stringify(picked.body));
		// The page had the gateway create the session first (its event stream creates it on demand).
		assert.ok(exchanges.some((e) => e.method === "GET" && e.path === at("/events")), "the page opened the session's event stream");
		const snapshot = await gatewayGet(ui.gw.base, `/sessions/${encodeURIComponent(session)}`, TOKEN);
		assert.equal(snapshot.status, 200, snapshot.text);
		assert.deepEqual(snapshot.json.session.model, { provider: "faux", id: "faux-2" });

		// An image and no text: the faux default command (reads hello.txt), from faux-2.
		await attachImage(ui.tab, image);
		assert.equal(await ui.tab.getByTestId("send").isEnabled(), true, "an image alone can be sent");
		await ui.tab.getByTestId("send").click();
		await ui.tab.locator('article[data-role="assistant"] [data-part="text"]').filter({ hasText: ANSWER }).waitFor({ timeout: UI_TIMEOUT_MS });
		await waitUntilReady(ui.tab);
		const post = exchanges.find((e) => e.method === "POST" && e.path === at("/chat"));
		assert.deepEqual(
			JSON.parse(post.body).messages[0].parts.map((p) => [p.type, p.mediaType, p.url]),
			[["file", "image/png", image.dataUrl]],
			"one file part, no text part",
		);
		const session2 = ui.gw.sessions.get(session);
		assert.equal(session2.messages.at(-1).model, "faux-2", "faux-2 answered the first message");
		const user = session2.messages.find((m) => m.role === "user");
		assert.deepEqual(
			user.content.filter((c) => c.type === "image").map((c) => c.data),
			[image.buffer.toString("base64")],
		);
		const shown = await readConversationView(ui.tab);
		assert.deepEqual(shown.messages[0].parts, [{ kind: "file", mediaType: "image/png", src: image.dataUrl }]);
		assert.equal(shown.messages[1].usage?.model, "faux/faux-2");
		assert.deepEqual(shown.errors, []);
		assert.deepEqual(shown.notices, []);
		// The page closed the event stream it opened (on purpose): nothing else went wrong.
		const own = (p) => p.startsWith("requestfailed:") && p.includes(`${encodeURIComponent(session)}/events `) && p.endsWith(" net::ERR_ABORTED");
		assert.deepEqual(unexpectedProblems(problems).filter((p) => !own(p)), []);
	});

	it("a question another client is having answered: the page shows it, then its answer once it is in the history", async () => {
		const session = "history other client";
		const question = "/slow 40"; // ~2 s
		// Not this page's chat: a plain POST /sessions/:key/messages from node.
		const answered = fetch(`${ui.gw.base}/sessions/${encodeURIComponent(session)}/messages`, {
			method: "POST",
			headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
			body: JSON.stringify({ text: question }),
			signal: AbortSignal.timeout(UI_TIMEOUT_MS),
		});
		await waitFor(() => ui.gw.sessions.get(session)?.isStreaming, "the other client's run to start");
		await openChatPage(ui, session, TOKEN);
		const shown = await readConversationView(ui.tab);
		assert.equal(ui.gw.sessions.get(session).isStreaming, true, "still running when the page showed the history");
		assert.deepEqual(
			shown.messages.map((m) => [m.role, m.parts]),
			[["user", [{ kind: "text", text: question }]]],
			"the history, cut at the running question",
		);
		const response = await answered;
		assert.equal(response.status, 200);
		const { runId } = await response.json();
		// This chat cannot resume another client's run: the page asks for the history again until the answer is in it.
		await ui.tab.locator(`article[data-id="${runId}"] [data-part="text"]`).filter({ hasText: fauxLongText(40) }).waitFor({ timeout: UI_TIMEOUT_MS });
		const after = await readConversationView(ui.tab);
		assert.deepEqual(
			after.messages.map((m) => [m.role, m.id]),
			[
				["user", shown.messages[0].id],
				["assistant", runId],
			],
		);
		assert.deepEqual(after.messages[1].parts, [{ kind: "text", text: fauxLongText(40) }]);
		assert.ok(after.messages[1].usage?.totalTokens > 0);
		assert.equal(after.status, "ready");
		assert.deepEqual(after.errors, []);
		assert.deepEqual(unexpectedProblems(problems), []);
	});
});

// The page's history and settings pieces on their own (examples/chat-ui/src/gateway.js).
describe("examples/chat-ui/src/gateway.js: history, settings, images and usage", () => {
	const user = (id, text) => ({ id, role: "user", parts: [{ type: "text", text }] });
	const assistant = (id, text) => ({ id, role: "assistant", parts: [{ type: "text", text }] });
	const json = (body, status = 200) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

	it("gatewayRoutes: history with format, limit and before; the settings routes", async () => {
		const { gatewayRoutes } = await import("../examples/chat-ui/src/gateway.js");
		const routes = gatewayRoutes("http://g", "a b");
		assert.equal(routes.history(), "http://g/sessions/a%20b/messages?format=ui");
		assert.equal(routes.history({ limit: 3, before: "x/y" }), "http://g/sessions/a%20b/messages?format=ui&limit=3&before=x%2Fy");
		assert.equal(routes.sessions, "http://g/sessions");
		assert.equal(routes.session, "http://g/sessions/a%20b");
		assert.equal(routes.models, "http://g/models");
		assert.equal(routes.model, "http://g/sessions/a%20b/model");
		assert.equal(routes.thinking, "http://g/sessions/a%20b/thinking");
		assert.equal(routes.events, "http://g/sessions/a%20b/events");
	});

	it("loadStartingConversation: history only for a listed or remembered session; 404 is a new one; a failure falls back", async () => {
		const { gatewayRoutes, loadStartingConversation } = await import("../examples/chat-ui/src/gateway.js");
		const routes = gatewayRoutes("http://g", "s");
		const calls = [];
		const gateway = ({ list = json({ sessions: [] }), history = json({ messages: [user("u1", "hi"), { junk: true }], hasMore: true }) } = {}) =>
			async (url) => {
				calls.push(url);
				if (url === "http://g/sessions") return typeof list === "function" ? list() : list;
				return typeof history === "function" ? history() : history;
			};
		const snapshot = { sessionKey: "s", model: { provider: "p", id: "m" } };

		calls.length = 0;
		assert.deepEqual(await loadStartingConversation({ routes, session: "s", fetch: gateway() }), {
			messages: [],
			hasMore: false,
			snapshot: undefined,
			source: "new",
		});
		assert.deepEqual(calls, ["http://g/sessions"], "not listed, not remembered: no history request");

		calls.length = 0;
		const listed = await loadStartingConversation({ routes, session: "s", fetch: gateway({ list: json({ sessions: [snapshot] }) }) });
		assert.deepEqual(listed, { messages: [user("u1", "hi")], hasMore: true, snapshot, source: "history" });
		assert.equal(calls[1], "http://g/sessions/s/messages?format=ui&limit=50");

		const remembered = await loadStartingConversation({ routes, session: "s", knownBefore: true, limit: 7, fetch: gateway() });
		assert.equal(remembered.source, "history");
		assert.equal(calls.at(-1), "http://g/sessions/s/messages?format=ui&limit=7");

		const gone = await loadStartingConversation({
			routes,
			session: "s",
			knownBefore: true,
			fetch: gateway({ history: () => json({ error: "Session not found: s" }, 404) }),
		});
		assert.equal(gone.source, "new");

		const old = await loadStartingConversation({
			routes,
			session: "s",
			knownBefore: true,
			fetch: gateway({ history: () => json({ error: "Method not allowed" }, 405) }),
		});
		assert.equal(old.source, "unavailable");
		assert.equal(old.error.statusCode, 405);

		const refused = await loadStartingConversation({ routes, session: "s", fetch: gateway({ list: () => Promise.reject(new TypeError("Failed to fetch")) }) });
		assert.equal(refused.source, "unavailable");
		const unauthorized = await loadStartingConversation({ routes, session: "s", fetch: gateway({ list: json({ error: "Unauthorized" }, 401) }) });
		assert.equal(unauthorized.source, "unavailable");
	});

	it("prependOlder, historyIsCut, messageIdsKey, usableMessages", async () => {
		const { historyIsCut, messageIdsKey, prependOlder, usableMessages } = await import("../examples/chat-ui/src/gateway.js");
		const shown = [user("u2", "b"), assistant("r2", "B")];
		assert.deepEqual(prependOlder(shown, [user("u1", "a"), assistant("r1", "A"), user("u2", "b")]), [
			user("u1", "a"),
			assistant("r1", "A"),
			...shown,
		]);
		assert.equal(prependOlder(shown, []), shown);
		assert.equal(historyIsCut([user("u1", "a")]), true);
		assert.equal(historyIsCut(shown), false);
		assert.equal(historyIsCut([]), false);
		assert.equal(messageIdsKey(shown), "u2\nr2");
		assert.deepEqual(usableMessages([null, { id: 1 }, { id: "x", role: "system", parts: [] }, user("u", "t")]), [user("u", "t")]);
		assert.deepEqual(usableMessages("junk"), []);
	});

	it("rememberSession / sessionRemembered: per gateway and session key; storage failures are survived", async () => {
		const { rememberSession, sessionRemembered } = await import("../examples/chat-ui/src/gateway.js");
		const map = new Map();
		const storage = { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, String(v)) };
		assert.equal(sessionRemembered({ storage, gateway: "http://g", session: "s" }), false);
		rememberSession({ storage, gateway: "http://g", session: "s" });
		assert.equal(sessionRemembered({ storage, gateway: "http://g", session: "s" }), true);
		assert.equal(sessionRemembered({ storage, gateway: "http://g", session: "t" }), false);
		assert.equal(sessionRemembered({ storage, gateway: "http://h", session: "s" }), false);
		const broken = {
			getItem: () => {
				throw new Error("denied");
			},
			setItem: () => {
				throw new Error("denied");
			},
		};
		rememberSession({ storage: broken, gateway: "http://g", session: "s" });
		assert.equal(sessionRemembered({ storage: broken, gateway: "http://g", session: "s" }), false);
		assert.equal(sessionRemembered({ storage: null, gateway: "http://g", session: "s" }), false);
	});

	it("models and settings: readModels, readSessionSettings, settingsOf, setSessionModel / setSessionThinking, modelKey", async () => {
		const { gatewayRoutes, modelKey, parseModelKey, readModels, readSessionSettings, setSessionModel, setSessionThinking, settingsOf } = await import(
			"../examples/chat-ui/src/gateway.js"
		);
		const routes = gatewayRoutes("http://g", "s");
		assert.equal(modelKey({ provider: "p", id: "a/b" }), "p/a/b");
		assert.deepEqual(parseModelKey("p/a/b"), { provider: "p", id: "a/b" });
		assert.equal(parseModelKey("nothing"), undefined);
		assert.equal(modelKey(undefined), "");

		const models = await readModels({
			routes,
			fetch: async () => json({ models: [{ provider: "p", id: "m", reasoning: true }, { junk: 1 }], current: { provider: "p", id: "m" } }),
		});
		assert.deepEqual(models, { models: [{ provider: "p", id: "m", reasoning: true }], current: { provider: "p", id: "m" } });
		await assert.rejects(readModels({ routes, fetch: async () => json({ error: "Not found" }, 404) }), (e) => e.statusCode === 404);

		assert.deepEqual(await readSessionSettings({ routes, fetch: async () => json({ error: "Session not found: s" }, 404) }), { exists: false });
		assert.deepEqual(
			await readSessionSettings({
				routes,
				fetch: async () => json({ session: { sessionKey: "s", model: { provider: "p", id: "m" }, thinkingLevel: "low", name: "n" } }),
			}),
			{ exists: true, model: { provider: "p", id: "m" }, thinkingLevel: "low", name: "n" },
		);
		assert.deepEqual(settingsOf(undefined), { exists: false });
		assert.deepEqual(settingsOf({ sessionKey: "s" }), { exists: true });

		const seen = [];
		const fetch = async (url, init) => {
			seen.push({ url, method: init.method, headers: init.headers, body: JSON.parse(init.body) });
			return json({ ok: true });
		};
		await setSessionModel({ routes, headers: { Authorization: "Bearer t" }, model: { provider: "p", id: "m", name: "x" }, fetch });
		await setSessionThinking({ routes, level: "high", fetch });
		assert.deepEqual(seen, [
			{ url: "http://g/sessions/s/model", method: "PUT", headers: { Authorization: "Bearer t", "content-type": "application/json" }, body: { provider: "p", id: "m" } },
			{ url: "http://g/sessions/s/thinking", method: "PUT", headers: { "content-type": "application/json" }, body: { level: "high" } },
		]);
		await assert.rejects(
			setSessionModel({ routes, model: { provider: "p", id: "x" }, fetch: async () => json({ error: "Model not found: p/x" }, 404) }),
			(e) => e.statusCode === 404 && e.responseBody.includes("Model not found"),
		);
	});

	it("usageSummary: tokens, cost and model from the message metadata; nothing without usage", async () => {
		const { usageSummary } = await import("../examples/chat-ui/src/gateway.js");
		assert.deepEqual(usageSummary({ usage: { totalTokens: 1234, cost: { total: 0.0123 } }, model: { provider: "faux", id: "faux-2" } }), {
			totalTokens: 1234,
			cost: 0.0123,
			model: "faux/faux-2",
			text: "1,234 tokens · $0.0123 · faux/faux-2",
		});
		assert.equal(usageSummary({ usage: { input: 3, output: 4 } }).text, "7 tokens");
		assert.equal(usageSummary({ usage: { totalTokens: 5, cost: { total: 0 } } }).text, "5 tokens · $0");
		assert.equal(usageSummary({ runId: "r" }), undefined);
		assert.equal(usageSummary(undefined), undefined);
	});

	it("chatRequestBody carries attachments as file parts before the text", async () => {
		const { chatRequestBody } = await import("../examples/chat-ui/src/gateway.js");
		const file = { type: "file", mediaType: "image/png", url: "data:image/png;base64,AAAA" };
		assert.deepEqual(chatRequestBody({ chatId: "c", text: "look", mode: "queue", messageId: "m", files: [file] }).messages[0].parts, [
			file,
			{ type: "text", text: "look" },
		]);
		assert.deepEqual(chatRequestBody({ chatId: "c", text: "", mode: "queue", messageId: "m", files: [file] }).messages[0].parts, [file]);
	});
});
