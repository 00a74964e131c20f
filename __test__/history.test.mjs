// The history route (issue 14, SPEC §12): `GET /sessions/:key/messages?format=ui|pi&limit=N&before=<id>`
// over HTTP on a real socket, in front of real pi AgentSessions on the offline faux model.
//
// - ui: after a conversation with thinking, a tool call that pi's `read` tool really runs, a
//   failed tool (`/toolfail`), an image message and a run through the real `ai` Chat client, the
//   history is exactly the contract's UIMessage[] derived from pi's own entries (step-start per
//   model call, reasoning, text, dynamic-tool output-available / output-error, a user file part
//   with a data URL; assistant id = the run id, metadata {runId, usage, model, stopReason}),
//   accepted by validateUIMessages of ai v5, v6 and v7, and the chat-run message equals what the
//   Chat client assembled from the stream;
// - pi: pi's message entries on the current branch, as its SessionManager holds them;
// - paging: limit/before/hasMore walk the whole history exactly once, in order, at any page size;
//   bad format/limit/before → 400 naming the field, and the session still answers;
// - the cut: while a run is running (one model call streaming, or a multi-step run with a step
//   already stored), history ends at that run's user message; once it ends, its answer is there;
// - not in memory: after a restart on the same session directory, `sessionExists` loads the key
//   (same ids, same run ids); an unknown key → 404 and nothing is created.
//
// Run: node --test __test__/history.test.mjs

import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fauxAssistantMessage, fauxText, fauxToolCall } from "@mariozechner/pi-ai";
import { fauxLongText, HELLO_CONTENT, HELLO_FILE } from "../lib/faux-agent.js";
import { lastUserText, removeDir, uiParts } from "./support/chat-fixture.mjs";
import {
	checkUiKeys,
	enc,
	expectedUi,
	getHistory,
	INVALID_BEFORE,
	INVALID_FORMAT,
	INVALID_LIMIT,
	openEvents,
	piBranch,
	PNG_B64,
	PNG_URL,
	say,
	startHistoryGateway,
	turnsOf,
	userContentText,
	validateUi,
	walkHistory,
} from "./support/history-util.mjs";
import { request } from "./support/http.mjs";
import { createChat, registerPacedScript, SDKS } from "./support/modes-util.mjs";
import { pollRunEnded, submit, UNKNOWN_RUN_ID, UUID_V7 } from "./support/runs.mjs";
import { within } from "./support/wait.mjs";

const HELLO_ANSWER = `${HELLO_FILE} says: ${HELLO_CONTENT}`;
const WORK = /^\/work (\d+)$/;

/** A paced multi-step script: `/work N` does N steps (a short text and a `read` of hello.txt), then answers `Worked N steps.` */
function registerWorkScript() {
	return registerPacedScript({
		name: "Faux work script (history)",
		tokensPerSecond: 40,
		answer: (context) => {
			const messages = context.messages ?? [];
			const lastUser = messages.findLastIndex((m) => m.role === "user");
			const n = Number(WORK.exec(userContentText(messages[lastUser]))?.[1] ?? 0);
			const done = messages.slice(lastUser + 1).filter((m) => m.role === "toolResult").length;
			if (done < n) {
				return fauxAssistantMessage([fauxText(`Step ${done + 1} of ${n}. `), fauxToolCall("read", { path: HELLO_FILE })], {
					stopReason: "toolUse",
				});
			}
			return fauxAssistantMessage(`Worked ${n} steps.`);
		},
	});
}

const kinds = (message) => message.parts.map((p) => p.type);
const textsOf = (message) => message.parts.filter((p) => p.type === "text").map((p) => p.text);

describe("GET /sessions/:key/messages on real pi sessions", { timeout: 240_000 }, () => {
	/** @type {Awaited<ReturnType<typeof startHistoryGateway>>} */
	let gw;

	before(async () => {
		gw = await startHistoryGateway({
			script: { registration: registerWorkScript(), when: (context) => WORK.test(lastUserText(context)) },
		});
	});
	after(async () => {
		await gw?.close();
	});

	describe("one conversation: thinking, a tool call, a failed tool, an image, a Chat run", () => {
		const key = "history-main";
		const runIds = [];
		let chatMessage;

		before(async () => {
			runIds.push((await say(gw.port, key, "What is in the file?")).runId);
			runIds.push((await say(gw.port, key, "/toolfail")).runId);
			runIds.push((await say(gw.port, key, "/echo look at this", { images: [{ data: PNG_B64, mimeType: "image/png" }] })).runId);
			// The fourth run through the real ai Chat client (ai@7's AbstractChat + DefaultChatTransport).
			const chat = createChat(SDKS[0], { id: "history-chat", api: `${gw.base}/sessions/${enc(key)}/chat` });
			await within(chat.sendMessage({ text: "Read it again, please." }), 30_000, "the Chat run to end");
			assert.deepEqual(chat.reportedErrors, [], "the Chat reported no error");
			assert.equal(chat.fetch.responses[0].status, 200);
			runIds.push(chat.fetch.responses[0].headers.get("x-run-id"));
			chatMessage = chat.messages.at(-1);
			for (const id of runIds) assert.match(String(id), UUID_V7);
		});

		it("format=pi: pi's message entries on the current branch, exactly as its SessionManager holds them", async () => {
			const pi = await getHistory(gw.port, key, { format: "pi", limit: 1000 });
			assert.equal(pi.hasMore, false);
			const session = gw.sessions.get(key);
			assert.deepEqual(pi.messages, piBranch(session), "format=pi = pi's branch entries {id, parentId, timestamp, message}");
			for (const e of pi.messages) assert.deepEqual(Object.keys(e).sort(), ["id", "message", "parentId", "timestamp"]);
			assert.deepEqual(
				pi.messages.map((e) => e.message.role),
				// default: user, assistant (thinking + read), toolResult, assistant; /toolfail the same
				// shape; /echo with an image: user, assistant; the Chat run: the default again.
				["user", "assistant", "toolResult", "assistant", "user", "assistant", "toolResult", "assistant", "user", "assistant", "user", "assistant", "toolResult", "assistant"],
			);
			const imageUser = pi.messages[8].message;
			assert.deepEqual(imageUser.content.find((b) => b.type === "image"), { type: "image", data: PNG_B64, mimeType: "image/png" });
		});

		it("format=ui (the default): the contract's UIMessage[] from pi's entries, accepted by validateUIMessages of ai v5, v6 and v7", async () => {
			const ui = await getHistory(gw.port, key, { limit: 1000 });
			assert.equal(ui.hasMore, false);
			await validateUi(ui.messages, "the conversation's ui history");
			checkUiKeys(ui.messages, "the conversation's ui history");
			const pi = await getHistory(gw.port, key, { format: "pi", limit: 1000 });
			assert.deepEqual(ui.messages, expectedUi(pi.messages, runIds), "ui history = the contract's mapping of pi's entries");
			const again = await getHistory(gw.port, key);
			assert.deepEqual(again.messages, ui.messages, "the default format is ui and the default limit covers these 8 messages");

			// The same, spelled out.
			const m = ui.messages;
			assert.deepEqual(m.map((x) => x.role), ["user", "assistant", "user", "assistant", "user", "assistant", "user", "assistant"]);
			assert.equal(new Set(m.map((x) => x.id)).size, m.length, "message ids are unique");
			const userEntries = pi.messages.filter((e) => e.message.role === "user");
			assert.deepEqual(
				m.filter((x) => x.role === "user").map((x) => x.id),
				userEntries.map((e) => e.id),
				"a user message's id is pi's entry id",
			);
			assert.deepEqual(m.filter((x) => x.role === "assistant").map((x) => x.id), runIds, "an assistant message's id is its run's id");
			for (const [i, a] of m.filter((x) => x.role === "assistant").entries()) {
				assert.equal(a.metadata.runId, runIds[i]);
				assert.deepEqual(a.metadata.model, { provider: "faux", id: "faux-1" });
				assert.equal(a.metadata.stopReason, "stop");
				assert.ok(a.metadata.usage.totalTokens > 0, `usage of run ${i}: ${JSON.stringify(a.metadata.usage)}`);
				assert.ok(a.metadata.usage.output > 0, `output tokens of run ${i}`);
			}

			// 1. thinking, a tool call pi's read tool ran, the answer.
			assert.deepEqual(m[0].parts, [{ type: "text", text: "What is in the file?" }]);
			assert.deepEqual(kinds(m[1]), ["step-start", "reasoning", "dynamic-tool", "step-start", "text"]);
			assert.equal(m[1].parts[1].state, "done");
			assert.match(m[1].parts[1].text, /I will look at the workspace file hello\.txt/);
			const tool = m[1].parts[2];
			assert.equal(tool.toolName, "read");
			assert.equal(tool.state, "output-available");
			assert.deepEqual(tool.input, { path: HELLO_FILE });
			assert.equal(tool.output.content[0].text, HELLO_CONTENT, "the tool output is what pi's read tool returned");
			assert.deepEqual(textsOf(m[1]), [HELLO_ANSWER]);
			// 2. a failed tool.
			assert.deepEqual(kinds(m[3]), ["step-start", "dynamic-tool", "step-start", "text"]);
			assert.equal(m[3].parts[1].state, "output-error");
			assert.equal(typeof m[3].parts[1].errorText, "string");
			assert.ok(m[3].parts[1].errorText.length > 0, "a failed tool has its error text");
			assert.equal(textsOf(m[3])[0], `The read tool failed: ${m[3].parts[1].errorText}`);
			// 3. an image: a file part with a data URL after the text.
			assert.deepEqual(m[4].parts, [
				{ type: "text", text: "/echo look at this" },
				{ type: "file", mediaType: "image/png", url: PNG_URL },
			]);
			assert.deepEqual(kinds(m[5]), ["step-start", "text"]);
			assert.deepEqual(textsOf(m[5]), ["You said: look at this"]);
			// 4. the Chat run: the message the Chat assembled from the stream, as history gives it after a reload.
			assert.equal(chatMessage.id, runIds[3], "the Chat's message id is the run id");
			assert.equal(m[7].id, chatMessage.id);
			assert.deepEqual(uiParts(m[7]), uiParts(chatMessage), "history = what the Chat client assembled from the stream");
			assert.deepEqual(textsOf(m[7]), [HELLO_ANSWER]);
		});

		it("the run ids are stored in pi's session file as `pi-gateway.run` custom entries", () => {
			const session = gw.sessions.get(key);
			const stored = session.sessionManager
				.getEntries()
				.filter((e) => e.type === "custom" && e.customType === "pi-gateway.run")
				.map((e) => e.data?.runId);
			assert.deepEqual(stored, runIds);
		});
	});

	it("an /error run: an assistant message with stopReason error, still accepted by validateUIMessages", async () => {
		const key = "history-error";
		const ok = await say(gw.port, key, "/echo first");
		const r = await request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text: "/error" }, timeoutMs: 20_000 });
		assert.equal(r.json?.ok, false, `/error fails: ${r.text}`);
		const failed = r.headers["x-run-id"];
		assert.match(String(failed), UUID_V7);
		const ui = await getHistory(gw.port, key);
		await validateUi(ui.messages, "a history with a failed run");
		checkUiKeys(ui.messages, "a history with a failed run");
		assert.deepEqual(ui.messages.map((m) => m.id).filter((_, i) => i % 2 === 1), [ok.runId, failed]);
		assert.equal(ui.messages.at(-1).metadata.stopReason, "error");
		assert.equal(ui.messages.at(-1).metadata.runId, failed);
		const pi = await getHistory(gw.port, key, { format: "pi" });
		assert.deepEqual(ui.messages, expectedUi(pi.messages, [ok.runId, failed]));
	});

	describe("paging", () => {
		const key = "history-paging";
		const N = 60; // 60 runs: 120 ui messages, more than the default limit (100)
		let all;
		let allPi;

		before(async () => {
			for (let i = 0; i < N; i++) await say(gw.port, key, `/echo m${i}`);
			all = (await getHistory(gw.port, key, { limit: 1000 })).messages;
			allPi = (await getHistory(gw.port, key, { format: "pi", limit: 1000 })).messages;
		});

		it("the whole history is 2N messages in order; the default limit (100) gives the last 100 with hasMore", async () => {
			assert.equal(all.length, 2 * N);
			assert.deepEqual(
				all.filter((m) => m.role === "user").map((m) => m.parts[0].text),
				Array.from({ length: N }, (_, i) => `/echo m${i}`),
			);
			assert.deepEqual(all.filter((m) => m.role === "assistant").map((m) => m.parts.at(-1).text), Array.from({ length: N }, (_, i) => `You said: m${i}`));
			const first = await getHistory(gw.port, key);
			assert.equal(first.messages.length, 100);
			assert.equal(first.hasMore, true);
			assert.deepEqual(first.messages, all.slice(-100));
			const second = await getHistory(gw.port, key, { before: first.messages[0].id });
			assert.equal(second.hasMore, false);
			assert.deepEqual(second.messages, all.slice(0, 20));
		});

		for (const limit of [1, 7, 50, 119, 120, 121, 1000]) {
			it(`limit=${limit}: walking back with before=messages[0].id visits every message exactly once, in order`, async () => {
				const { messages, pages } = await walkHistory(gw.port, key, { limit });
				assert.deepEqual(messages, all);
				assert.equal(pages.length, Math.max(1, Math.ceil(all.length / limit)));
				assert.equal(pages.at(-1).hasMore, false);
			});
		}

		for (const limit of [3, 240, 241]) {
			it(`format=pi, limit=${limit}: the same walk over pi's entries`, async () => {
				const { messages } = await walkHistory(gw.port, key, { format: "pi", limit });
				assert.deepEqual(messages, allPi);
			});
		}

		it("before=<an id in the middle> gives the `limit` messages just before it; before the oldest: none, hasMore false", async () => {
			const at = 51; // an assistant message (its id is a run id)
			const page = await getHistory(gw.port, key, { limit: 10, before: all[at].id });
			assert.deepEqual(page.messages, all.slice(at - 10, at));
			assert.equal(page.hasMore, true);
			const userAt = 50;
			const page2 = await getHistory(gw.port, key, { limit: 1000, before: all[userAt].id });
			assert.deepEqual(page2.messages, all.slice(0, userAt));
			assert.equal(page2.hasMore, false);
			const oldest = await getHistory(gw.port, key, { limit: 5, before: all[0].id });
			assert.deepEqual(oldest.messages, []);
			assert.equal(oldest.hasMore, false);
			const exact = await getHistory(gw.port, key, { limit: 5, before: all[5].id });
			assert.deepEqual(exact.messages, all.slice(0, 5));
			assert.equal(exact.hasMore, false, "nothing older than the first 5");
			const piPage = await getHistory(gw.port, key, { format: "pi", limit: 4, before: allPi[10].id });
			assert.deepEqual(piPage.messages, allPi.slice(6, 10));
			assert.equal(piPage.hasMore, true);
		});

		it("bad format, limit or before → 400 naming the field; the session still answers", async () => {
			const bad = async (query, error) => {
				const qs = Object.entries(query)
					.map(([k, v]) => `${k}=${enc(v)}`)
					.join("&");
				const r = await request(gw.port, "GET", `/sessions/${key}/messages?${qs}`);
				assert.equal(r.status, 400, `?${qs}: ${r.status} ${r.text}`);
				assert.deepEqual(r.json, { error }, `?${qs}`);
			};
			for (const format of ["xml", "UI", "PI", "", "ui,pi", "ui "]) await bad({ format }, INVALID_FORMAT);
			for (const limit of ["0", "1001", "-1", "1.5", "abc", "", "10x", "99999999999999999999"]) await bad({ limit }, INVALID_LIMIT);
			for (const before of ["no-such-id", UNKNOWN_RUN_ID]) await bad({ before }, INVALID_BEFORE(before));
			// A pi entry id is no ui message id unless it is a user message's: an assistant entry's id is not.
			const piAssistant = allPi.find((e) => e.message.role === "assistant").id;
			if (!all.some((m) => m.id === piAssistant)) await bad({ before: piAssistant }, INVALID_BEFORE(piAssistant));
			// The limits themselves are fine.
			assert.equal((await getHistory(gw.port, key, { limit: 1 })).messages.length, 1);
			assert.equal((await getHistory(gw.port, key, { limit: 1000 })).messages.length, 2 * N);
			const ok = await say(gw.port, key, "/echo still here");
			assert.equal(ok.response, "You said: still here");
		});
	});

	describe("the cut at the running run's user message", () => {
		it("during a /slow run: history (ui and pi) ends at its user message; after it, its answer is there", async () => {
			const key = "history-cut-slow";
			const first = await say(gw.port, key, "/echo before");
			const sse = await openEvents(gw.port, key);
			try {
				const runId = await submit(gw.port, key, "/slow 60");
				await sse.waitFor((f) => f.data?.type === "token" && f.data.runId === runId, 15_000, "a token of the /slow run");
				const ui = await getHistory(gw.port, key);
				assert.equal(ui.messages.length, 3, `user, answer, the running run's user message: ${JSON.stringify(ui.messages.map((m) => m.role))}`);
				assert.equal(ui.messages[1].id, first.runId);
				assert.deepEqual(ui.messages[2].role, "user");
				assert.deepEqual(ui.messages[2].parts, [{ type: "text", text: "/slow 60" }]);
				assert.ok(!ui.messages.some((m) => m.id === runId), "no message of the running run");
				await validateUi(ui.messages, "history during a run");
				const pi = await getHistory(gw.port, key, { format: "pi" });
				assert.equal(pi.messages.at(-1).message.role, "user");
				assert.equal(userContentText(pi.messages.at(-1).message), "/slow 60");
				const { record } = await pollRunEnded(gw.port, key, runId, { timeoutMs: 20_000 });
				assert.equal(record.status, "succeeded");
				const done = await getHistory(gw.port, key);
				assert.equal(done.messages.length, 4);
				assert.equal(done.messages[3].id, runId);
				assert.deepEqual(done.messages[3].parts, [{ type: "step-start" }, { type: "text", text: fauxLongText(60), state: "done" }]);
				assert.deepEqual(done.messages.slice(0, 3), ui.messages, "the messages before it did not change");
			} finally {
				sse.close();
			}
		});

		it("during a multi-step run whose first step pi has already stored: history still ends at the run's user message", async () => {
			const key = "history-cut-steps";
			const first = await say(gw.port, key, "/echo before");
			const sse = await openEvents(gw.port, key);
			try {
				const runId = await submit(gw.port, key, "/work 4");
				await sse.waitFor((f) => f.data?.type === "tool_complete" && f.data.runId === runId, 15_000, "the first step's tool result");
				// pi has stored the run's first assistant message and tool result by now.
				const stored = piBranch(gw.sessions.get(key));
				assert.ok(
					stored.slice(stored.findLastIndex((e) => e.message.role === "user")).some((e) => e.message.role === "toolResult"),
					"pi's branch holds the running run's first step",
				);
				const ui = await getHistory(gw.port, key);
				assert.deepEqual(ui.messages.map((m) => m.role), ["user", "assistant", "user"]);
				assert.equal(ui.messages[1].id, first.runId);
				assert.deepEqual(ui.messages[2].parts, [{ type: "text", text: "/work 4" }]);
				const pi = await getHistory(gw.port, key, { format: "pi" });
				assert.deepEqual(pi.messages.map((e) => e.message.role), ["user", "assistant", "user"]);
				const paged = await getHistory(gw.port, key, { limit: 1 });
				assert.deepEqual(paged.messages, ui.messages.slice(-1), "the last page ends at the run's user message too");
				assert.equal(paged.hasMore, true);
				const { record } = await pollRunEnded(gw.port, key, runId, { timeoutMs: 30_000 });
				assert.equal(record.status, "succeeded");
				const done = await getHistory(gw.port, key);
				assert.equal(done.messages.length, 4);
				assert.equal(done.messages[3].id, runId);
				assert.equal(done.messages[3].parts.filter((p) => p.type === "step-start").length, 5, "4 steps and the answer");
				assert.equal(done.messages[3].parts.filter((p) => p.type === "dynamic-tool" && p.state === "output-available").length, 4);
				assert.deepEqual(textsOf(done.messages[3]).at(-1), "Worked 4 steps.");
				const pi2 = await getHistory(gw.port, key, { format: "pi" });
				assert.deepEqual(done.messages, expectedUi(pi2.messages, [first.runId, runId]));
			} finally {
				sse.close();
			}
		});
	});

	it("a user message steered into a run splits it: the run's first part, the steered user message, the rest as `<runId>-<n>`", async () => {
		const key = "history-steer";
		const sse = await openEvents(gw.port, key);
		let runId;
		try {
			runId = await submit(gw.port, key, "/work 4");
			await sse.waitFor((f) => f.data?.type === "tool_complete" && f.data.runId === runId, 15_000, "the first step's tool result");
			const steer = await request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text: "Read the file instead.", mode: "steer" }, timeoutMs: 30_000 });
			assert.equal(steer.status, 200, steer.text);
			assert.equal(steer.json.runId, runId, "the steer was answered by the running run");
			const { record } = await pollRunEnded(gw.port, key, runId, { timeoutMs: 30_000 });
			assert.equal(record.status, "succeeded");
		} finally {
			sse.close();
		}
		const pi = await getHistory(gw.port, key, { format: "pi" });
		const turns = turnsOf(pi.messages);
		assert.deepEqual(turns.map((t) => userContentText(t.user.message)), ["/work 4", "Read the file instead."], "pi got the steer inside the run");
		const ui = await getHistory(gw.port, key);
		await validateUi(ui.messages, "a history with a steered run");
		checkUiKeys(ui.messages, "a history with a steered run");
		assert.deepEqual(ui.messages.map((m) => m.role), ["user", "assistant", "user", "assistant"]);
		assert.equal(ui.messages[1].id, runId);
		assert.match(ui.messages[3].id, new RegExp(`^${runId}-\\d+$`), "the rest of the run: <runId>-<n>");
		assert.equal(ui.messages[2].id, turns[1].user.id);
		for (const m of [ui.messages[1], ui.messages[3]]) assert.equal(m.metadata.runId, runId);
		// The parts: exactly pi's, split at the steered user message.
		const expected = expectedUi(pi.messages, [runId, ui.messages[3].id]);
		assert.deepEqual(ui.messages.map((m) => m.parts), expected.map((m) => m.parts));
		assert.deepEqual(textsOf(ui.messages[3]).at(-1), HELLO_ANSWER, "the faux model answered the steer by reading the file");
	});

	it("a key that is not in memory and not stored → 404 Session not found, and nothing is created", async () => {
		const key = "history-never-seen";
		const before = gw.existsCalls.length;
		const r = await request(gw.port, "GET", `/sessions/${key}/messages`);
		assert.equal(r.status, 404, r.text);
		assert.deepEqual(r.json, { error: `Session not found: ${key}` });
		assert.ok(gw.existsCalls.slice(before).includes(key), "sessionExists was asked");
		const snap = await request(gw.port, "GET", `/sessions/${key}`);
		assert.equal(snap.status, 404, "the key was not created");
		const list = await request(gw.port, "GET", "/sessions");
		assert.ok(!list.json.sessions.some((s) => s.sessionKey === key));
	});
});

describe("history of a stored session that is not in memory (sessionExists)", { timeout: 120_000 }, () => {
	let dirs = [];
	after(async () => {
		for (const d of dirs) await removeDir(d);
	});

	it("after a restart on the same session directory, the key is loaded: the same history, the same run ids", async () => {
		const { createFauxPiAgent } = await import("../lib/faux-agent.js");
		const agentDir = await mkdtemp(join(tmpdir(), "pi-gateway-history-agent-"));
		const cwd = await mkdtemp(join(tmpdir(), "pi-gateway-history-cwd-"));
		dirs = [agentDir, cwd];
		const key = "history-restart";
		let before;
		let runIds;
		const agent1 = await createFauxPiAgent({ agentDir, cwd });
		const gw1 = await startHistoryGateway({ agent: agent1 });
		try {
			runIds = [(await say(gw1.port, key, "What is in the file?")).runId, (await say(gw1.port, key, "/echo again", { images: [{ data: PNG_B64, mimeType: "image/png" }] })).runId];
			before = await getHistory(gw1.port, key);
			assert.equal(before.messages.length, 4);
		} finally {
			await gw1.close();
			await agent1.close();
		}

		const agent2 = await createFauxPiAgent({ agentDir, cwd });
		const gw2 = await startHistoryGateway({ agent: agent2 });
		try {
			const snap = await request(gw2.port, "GET", `/sessions/${key}/messages`);
			assert.equal(snap.status, 200, `the stored key is loaded: ${snap.status} ${snap.text.slice(0, 300)}`);
			assert.ok(gw2.existsCalls.includes(key), "sessionExists was asked");
			const after = await getHistory(gw2.port, key);
			assert.deepEqual(after.messages, before.messages, "the same history, ids and run ids included");
			assert.deepEqual(after.messages.filter((m) => m.role === "assistant").map((m) => m.id), runIds);
			await validateUi(after.messages, "the reloaded history");
			const pi = await getHistory(gw2.port, key, { format: "pi" });
			assert.deepEqual(pi.messages, piBranch(gw2.sessions.get(key)));
			assert.equal(turnsOf(pi.messages).length, 2);
			const s = await request(gw2.port, "GET", `/sessions/${key}`);
			assert.equal(s.status, 200, "the key is in memory now");
			// The conversation goes on from there.
			const third = await say(gw2.port, key, "/echo and on");
			const later = await getHistory(gw2.port, key);
			assert.deepEqual(later.messages.slice(0, 4), before.messages);
			assert.equal(later.messages.length, 6);
			assert.equal(later.messages[5].id, third.runId);
			const missing = await request(gw2.port, "GET", "/sessions/history-not-stored/messages");
			assert.equal(missing.status, 404);
			assert.deepEqual(missing.json, { error: "Session not found: history-not-stored" });
		} finally {
			await gw2.close();
			await agent2.close();
		}
	});

	it("without sessionExists, a key not in memory → 404 (even when stored)", async () => {
		const gw = await startHistoryGateway({ sessionExists: false });
		try {
			await say(gw.port, "history-a", "/echo hi");
			const r = await request(gw.port, "GET", "/sessions/history-b/messages");
			assert.equal(r.status, 404);
			assert.deepEqual(r.json, { error: "Session not found: history-b" });
			const ok = await getHistory(gw.port, "history-a");
			assert.equal(ok.messages.length, 2);
		} finally {
			await gw.close();
		}
	});
});
