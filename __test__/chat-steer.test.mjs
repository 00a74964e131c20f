// Double texting in a chat UI (issue 13, SPEC §11): while one chat client's answer streams, a second
// `ai` Chat (its own id) sends to the same session with `sendMessage(msg, { body: { mode } })` —
// the real `ai` package (v7, v6 and v5: its AbstractChat, DefaultChatTransport and its own
// uiMessageChunkSchema) against real pi AgentSessions on the faux model.
//
// - steer: the second message goes into the RUNNING run through pi's `steer()`; the first stream
//   gets a `data-steering {text, mode:"steer"}` chunk and ends with `finish`, its answer showing
//   the steer took effect; the second stream starts with its own `start` messageId (x-run-id = the
//   running run) and carries the running run's next steps to its end;
// - followUp: the same through pi's `followUp()`, delivered once the agent would otherwise stop;
//   GET /sessions/:key/queue shows it pending meanwhile;
// - reject: 409 Session busy (the Chat reports the error) and nothing is queued; the session
//   answers the next message (with mode reject, on an idle session: a run of its own);
// - interrupt: the first stream ends with `abort`, the interrupting chat's run goes ahead of a
//   queued one and completes;
// - an invalid mode: 400, nothing runs.
//
// The faux model (a paced script, so a run lasts long enough to be steered): `/work N` does N
// steps, each a short text and a `read` of hello.txt, then answers `Worked N steps without
// steering.`; whenever the last user message in its context is a steering text (`STEER: …` or
// `FOLLOW: …`) it answers `Heard: <that text>`.
//
// Run: npm test -- __test__/chat-steer.test.mjs

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fauxAssistantMessage, fauxText, fauxToolCall } from "@mariozechner/pi-ai";
import { HELLO_FILE } from "../lib/faux-agent.js";
import { fauxParts, lastUserText, uiParts } from "./support/chat-fixture.mjs";
import { request } from "./support/http.mjs";
import {
	createChat,
	INVALID_MODE_ERROR,
	registerPacedScript,
	SDKS,
	startPiGateway,
	uiStreamChunks,
	userTextOf,
	validateChunks,
	wellFormed,
} from "./support/modes-util.mjs";
import { getRun, listRuns, UUID_V7, assertStartChunk } from "./support/runs.mjs";
import { waitFor, within } from "./support/wait.mjs";

const STEP_TOKENS_PER_SECOND = 40; // ~250 ms per /work step (a 4-character chunk every 25 ms)
const WORK = /^\/work (\d+)$/;
const HEARD = (text) => `Heard: ${text}`;
const WORKED = (n) => `Worked ${n} steps without steering.`;

/** The script of this file (see the header). */
function registerSteerScript() {
	return registerPacedScript({
		name: "Faux steer script",
		tokensPerSecond: STEP_TOKENS_PER_SECOND,
		answer: (context) => {
			const messages = context.messages ?? [];
			const lastUser = messages.findLastIndex((m) => m.role === "user");
			const text = userTextOf(messages[lastUser]);
			if (text.startsWith("STEER:") || text.startsWith("FOLLOW:")) return fauxAssistantMessage(HEARD(text));
			const n = Number(WORK.exec(text)?.[1] ?? 0);
			const done = messages.slice(lastUser + 1).filter((m) => m.role === "toolResult").length;
			if (done < n) {
				return fauxAssistantMessage([fauxText(`Step ${done + 1} of ${n}. `), fauxToolCall("read", { path: HELLO_FILE })], {
					stopReason: "toolUse",
				});
			}
			return fauxAssistantMessage(WORKED(n));
		},
	});
}

const isScripted = (context) => /^(\/work \d+$|STEER:|FOLLOW:)/.test(lastUserText(context));

const enc = encodeURIComponent;
const textParts = (message) => message.parts.filter((p) => p.type === "text").map((p) => p.text);
const withoutData = (parts) => parts.filter((p) => !p.kind.startsWith("data-"));

/** The index of the `text-start` chunk of the text part whose text starts with `prefix`, or -1. */
function textStartOf(chunks, prefix) {
	const texts = new Map();
	for (const c of chunks) if (c.type === "text-delta") texts.set(c.id, (texts.get(c.id) ?? "") + c.delta);
	const id = [...texts].find(([, text]) => text.startsWith(prefix))?.[0];
	return id === undefined ? -1 : chunks.findIndex((c) => c.type === "text-start" && c.id === id);
}

/** The user texts pi's session holds, in order. */
const piUserTexts = (session) => session.messages.filter((m) => m.role === "user").map(userTextOf);

describe("double texting from a second ai Chat on /sessions/:key/chat", { timeout: 180_000 }, () => {
	/** @type {Awaited<ReturnType<typeof startPiGateway>>} */
	let gw;
	let counter = 0;
	const freshKey = (name) => `steer-${name}-${++counter}`;
	const api = (key) => `${gw.base}/sessions/${enc(key)}/chat`;
	const chatFor = (sdk, key, id) => createChat(sdk, { id, api: api(key) });

	before(async () => {
		gw = await startPiGateway({
			primaryKey: "main",
			script: { registration: registerSteerScript(), when: isScripted },
		});
	});
	after(async () => {
		await gw?.close();
	});

	/** The response to a Chat's `i`-th request (its transport records them in order). */
	const responseOf = (chat, i = 0) => chat.fetch.responses[i];

	/** Waits until chat's `i`-th response body has streamed something matching `pattern`. */
	const waitForStream = (chat, pattern, what, i = 0) =>
		waitFor(() => pattern.test(responseOf(chat, i)?.text ?? ""), what, 20_000);

	/** Reads the whole raw stream of a chat's `i`-th response and checks it with every SDK's schema. */
	async function streamOf(chat, what, i = 0) {
		const response = responseOf(chat, i);
		assert.ok(response, `${what}: the chat sent a request`);
		assert.equal(response.status, 200, `${what}: status ${response.status} ${response.text}`);
		assert.equal(response.headers.get("x-vercel-ai-ui-message-stream"), "v1", `${what}: a UI message stream`);
		const raw = await within(response.done, 20_000, `${what}: the stream to end`);
		const chunks = uiStreamChunks(raw, what);
		wellFormed(chunks, what);
		for (const sdk of SDKS) await validateChunks(sdk, chunks, what);
		return { chunks, runId: response.headers.get("x-run-id"), response };
	}

	async function queueOf(key) {
		const res = await request(gw.port, "GET", `/sessions/${enc(key)}/queue`);
		assert.equal(res.status, 200, `GET queue of ${key}: ${res.status} ${res.text}`);
		return res.json;
	}

	for (const sdk of SDKS) {
		it(`${sdk.label}: a steer from a second Chat goes into the running answer: data-steering in the first stream, its own stream from the next step, both end with finish`, async () => {
			const key = freshKey(`steer-${sdk.major}`);
			const steerText = `STEER: use the blue plan (${sdk.label})`;
			const first = chatFor(sdk, key, `first-${sdk.major}`);
			const second = chatFor(sdk, key, `second-${sdk.major}`);

			const firstDone = first.sendMessage({ text: "/work 30" });
			// Step 1's tool call has streamed: the run is mid-answer, with ~29 steps to go.
			await waitForStream(first, /"tool-input-available"/, "the first answer to reach its first tool call");
			const runA = responseOf(first).headers.get("x-run-id");
			assert.match(String(runA), UUID_V7);
			const secondDone = second.sendMessage({ text: steerText }, { body: { mode: "steer" } });
			await within(Promise.all([firstDone, secondDone]), 30_000, "both chats to finish");

			// The steering request really carried the mode, and the answer names the running run.
			assert.equal(responseOf(second).requestBody.mode, "steer");
			const a = await streamOf(first, "first stream");
			const b = await streamOf(second, "steer stream");
			assert.equal(a.runId, runA);
			assertStartChunk(a.chunks[0], runA);
			assert.equal(a.chunks.at(-1).type, "finish", "the first stream ends with finish");
			assert.equal(b.runId, runA, "x-run-id of the steer stream = the running run");
			assert.equal(b.chunks[0].type, "start");
			assert.notEqual(b.chunks[0].messageId, runA, "the steer stream is a new assistant message");
			assert.equal(b.chunks[1]?.type, "start-step", `the steer stream goes on from the next step: ${JSON.stringify(b.chunks.slice(0, 3))}`);
			assert.equal(b.chunks.at(-1).type, "finish", "the steer stream ends with finish");

			// The first stream: one data-steering chunk, before the step that answers it.
			const steering = a.chunks.filter((c) => c.type.startsWith("data-"));
			assert.deepEqual(steering, [{ type: "data-steering", data: { text: steerText, mode: "steer" } }]);
			const steeringAt = a.chunks.indexOf(steering[0]);
			const heardAt = textStartOf(a.chunks, "Heard:");
			assert.ok(heardAt !== -1, "the first stream carries the answer to the steer");
			assert.ok(steeringAt < heardAt, "data-steering comes before the answer to it");

			// The Chats: no error; the first holds the data-steering part and an answer that heard the steer.
			for (const [name, chat] of [["first", first], ["second", second]]) {
				assert.deepEqual(chat.reportedErrors, [], `${name} chat errors`);
				assert.equal(chat.status, "ready", `${name} chat status`);
				assert.equal(chat.messages.length, 2, `${name} chat: its user message and one answer`);
			}
			const answerA = first.messages[1];
			assert.equal(answerA.id, runA);
			const dataParts = answerA.parts.filter((p) => p.type.startsWith("data-"));
			assert.deepEqual(
				dataParts.map((p) => ({ type: p.type, data: p.data })),
				[{ type: "data-steering", data: { text: steerText, mode: "steer" } }],
			);
			assert.equal(textParts(answerA).at(-1), HEARD(steerText), "the answer shows the steer took effect");
			assert.ok(!textParts(answerA).some((t) => t.startsWith("Worked")), "the run did not work through all 30 steps");
			assert.ok(answerA.parts.indexOf(dataParts[0]) < answerA.parts.findLastIndex((p) => p.type === "text"));

			// The first Chat's answer is exactly what pi's model produced in that run (plus the data part).
			const session = gw.sessions.get(key);
			assert.deepEqual(piUserTexts(session), ["/work 30", steerText], "pi got the steer as a user message of the same run");
			assert.deepEqual(withoutData(uiParts(answerA)), fauxParts(session, 1));

			// The second Chat's answer: the running run's remaining steps, from a step start.
			const answerB = second.messages[1];
			assert.equal(answerB.id, b.chunks[0].messageId);
			assert.equal(textParts(answerB).at(-1), HEARD(steerText));
			const partsA = withoutData(uiParts(answerA));
			const partsB = withoutData(uiParts(answerB));
			assert.equal(partsB[0]?.kind, "step");
			assert.ok(partsB.length < partsA.length, "the steer stream started mid-run");
			assert.deepEqual(partsB, partsA.slice(partsA.length - partsB.length), "the steer stream is the tail of the running answer");

			// One run, which answered the steer; nothing left queued, in the gateway or in pi.
			const runs = await listRuns(gw.port, key);
			assert.deepEqual(
				runs.map((r) => [r.runId, r.status, r.mode]),
				[[runA, "succeeded", "queue"]],
			);
			assert.deepEqual(runs[0].result, { ok: true, response: HEARD(steerText), sessionKey: key, runId: runA });
			assert.deepEqual(await queueOf(key), { running: null, queued: [], steering: [], followUp: [] });
		});

		it(`${sdk.label}: a followUp waits in pi's queue (GET …/queue) until the agent would stop, then the same run answers it`, async () => {
			const key = freshKey(`follow-${sdk.major}`);
			const steps = 6;
			const followText = `FOLLOW: and then summarize (${sdk.label})`;
			const first = chatFor(sdk, key, `first-${sdk.major}`);
			const second = chatFor(sdk, key, `second-${sdk.major}`);

			const firstDone = first.sendMessage({ text: `/work ${steps}` });
			await waitForStream(first, /"text-delta"/, "the first answer to stream");
			const runA = responseOf(first).headers.get("x-run-id");
			assert.match(String(runA), UUID_V7);
			const secondDone = second.sendMessage({ text: followText }, { body: { mode: "followUp" } });
			await waitFor(() => responseOf(second), "the followUp's response headers", 10_000);
			// The run has ~5 steps (> 1 s) to go: the follow-up is pending in pi's queue.
			const pending = await queueOf(key);
			assert.ok(!(responseOf(first).text ?? "").includes("Worked"), "(the run had not reached its last answer yet)");
			assert.equal(pending.running?.runId, runA, JSON.stringify(pending));
			assert.equal(pending.running.status, "running");
			assert.deepEqual(pending.queued, []);
			assert.deepEqual(pending.steering, []);
			assert.deepEqual(pending.followUp, [followText]);
			await within(Promise.all([firstDone, secondDone]), 30_000, "both chats to finish");

			const a = await streamOf(first, "first stream");
			const b = await streamOf(second, "followUp stream");
			assert.equal(a.chunks.at(-1).type, "finish");
			assert.equal(b.runId, runA);
			assert.notEqual(b.chunks[0].messageId, runA);
			assert.equal(b.chunks[1]?.type, "start-step");
			assert.equal(b.chunks.at(-1).type, "finish");
			assert.deepEqual(
				a.chunks.filter((c) => c.type.startsWith("data-")),
				[{ type: "data-steering", data: { text: followText, mode: "followUp" } }],
			);

			for (const chat of [first, second]) {
				assert.deepEqual(chat.reportedErrors, []);
				assert.equal(chat.status, "ready");
			}
			// The run worked through all its steps first, then answered the follow-up.
			const answerA = first.messages[1];
			assert.deepEqual(textParts(answerA).slice(-2), [WORKED(steps), HEARD(followText)]);
			assert.deepEqual(
				answerA.parts.filter((p) => p.type.startsWith("data-")).map((p) => ({ type: p.type, data: p.data })),
				[{ type: "data-steering", data: { text: followText, mode: "followUp" } }],
			);
			const session = gw.sessions.get(key);
			assert.deepEqual(piUserTexts(session), [`/work ${steps}`, followText]);
			assert.deepEqual(withoutData(uiParts(answerA)), fauxParts(session, 1));
			const partsA = withoutData(uiParts(answerA));
			const partsB = withoutData(uiParts(second.messages[1]));
			assert.equal(partsB[0]?.kind, "step");
			assert.deepEqual(partsB, partsA.slice(partsA.length - partsB.length));
			assert.equal(textParts(second.messages[1]).at(-1), HEARD(followText));

			const runs = await listRuns(gw.port, key);
			assert.deepEqual(
				runs.map((r) => [r.runId, r.status, r.mode]),
				[[runA, "succeeded", "queue"]],
			);
			assert.equal(runs[0].result.response, HEARD(followText));
			assert.deepEqual(await queueOf(key), { running: null, queued: [], steering: [], followUp: [] });
		});

		it(`${sdk.label}: mode reject while an answer streams → 409 Session busy, the Chat reports it, nothing is queued; then the session answers (reject on an idle session runs)`, async () => {
			const key = freshKey(`reject-${sdk.major}`);
			const first = chatFor(sdk, key, `first-${sdk.major}`);
			const second = chatFor(sdk, key, `second-${sdk.major}`);
			const firstDone = first.sendMessage({ text: "/work 4" });
			await waitForStream(first, /"text-delta"/, "the first answer to stream");
			const runA = responseOf(first).headers.get("x-run-id");

			await within(second.sendMessage({ text: "/echo refused" }, { body: { mode: "reject" } }), 15_000, "the refused send");
			const refused = responseOf(second);
			assert.equal(refused.status, 409, `reject while busy: ${refused.status} ${refused.text}`);
			const body = JSON.parse(await refused.done);
			assert.deepEqual(body, { ok: false, response: "", error: "Session busy", sessionKey: key, runId: runA });
			assert.equal(second.status, "error");
			assert.ok(second.error instanceof Error, String(second.error));
			assert.deepEqual(JSON.parse(second.error.message), body, "the Chat's error is the 409 body");

			await within(firstDone, 30_000, "the first chat");
			const a = await streamOf(first, "first stream");
			assert.equal(a.chunks.at(-1).type, "finish");
			assert.equal(a.chunks.filter((c) => c.type.startsWith("data-")).length, 0, "nothing was steered");
			assert.equal(textParts(first.messages[1]).at(-1), WORKED(4));
			assert.deepEqual(piUserTexts(gw.sessions.get(key)), ["/work 4"], "the refused text never reached pi");

			// The session goes on; reject on an idle session is a run of its own.
			await within(second.sendMessage({ text: "/echo after the refusal" }, { body: { mode: "reject" } }), 15_000, "the next send");
			assert.equal(second.status, "ready", String(second.error));
			const next = await streamOf(second, "the next answer", 1);
			assert.notEqual(next.runId, runA);
			assertStartChunk(next.chunks[0], next.runId);
			assert.equal(next.chunks.at(-1).type, "finish");
			assert.deepEqual(textParts(second.messages.at(-1)), ["You said: after the refusal"]);
			const runs = await listRuns(gw.port, key);
			assert.deepEqual(
				runs.map((r) => [r.runId, r.status, r.mode]),
				[
					[runA, "succeeded", "queue"],
					[next.runId, "succeeded", "reject"],
				],
			);
			assert.deepEqual(await queueOf(key), { running: null, queued: [], steering: [], followUp: [] });
		});

		it(`${sdk.label}: mode interrupt aborts the streaming answer (abort chunk) and runs ahead of a queued chat, to finish`, async () => {
			const key = freshKey(`interrupt-${sdk.major}`);
			const first = chatFor(sdk, key, `first-${sdk.major}`);
			const queued = chatFor(sdk, key, `queued-${sdk.major}`);
			const interrupting = chatFor(sdk, key, `interrupting-${sdk.major}`);

			const firstDone = first.sendMessage({ text: "/work 30" });
			await waitForStream(first, /"tool-input-available"/, "the first answer to reach a tool call");
			const runA = responseOf(first).headers.get("x-run-id");
			const queuedDone = queued.sendMessage({ text: "/echo queued before the interrupt" });
			await waitFor(async () => (await queueOf(key)).queued.length === 1, "the second chat to be queued");
			const interruptDone = interrupting.sendMessage({ text: "/echo interrupting" }, { body: { mode: "interrupt" } });
			await within(Promise.all([firstDone, queuedDone, interruptDone]), 30_000, "the three chats");

			const a = await streamOf(first, "interrupted stream");
			assert.deepEqual(a.chunks.at(-1), { type: "abort" }, "the interrupted stream ends with abort");
			assert.equal(a.chunks.filter((c) => c.type === "finish" || c.type === "error").length, 0);
			const i = await streamOf(interrupting, "interrupting stream");
			assert.notEqual(i.runId, runA);
			assertStartChunk(i.chunks[0], i.runId, "the interrupt has its own run and message");
			assert.equal(i.chunks.at(-1).type, "finish");
			assert.deepEqual(textParts(interrupting.messages.at(-1)), ["You said: interrupting"]);
			const q = await streamOf(queued, "queued stream");
			assert.equal(q.chunks.at(-1).type, "finish");
			assert.deepEqual(textParts(queued.messages.at(-1)), ["You said: queued before the interrupt"]);
			for (const chat of [interrupting, queued]) {
				assert.deepEqual(chat.reportedErrors, []);
				assert.equal(chat.status, "ready");
			}
			assert.equal(first.error, undefined, "an aborted answer is not an error");
			assert.ok(!textParts(first.messages[1]).some((t) => t.startsWith("Worked")), "the interrupted run stopped early");

			const runA1 = await getRun(gw.port, key, runA);
			const runI = await getRun(gw.port, key, i.runId);
			const runQ = await getRun(gw.port, key, q.runId);
			assert.equal(runA1.status, "aborted");
			assert.equal(runA1.mode, "queue");
			assert.equal(runA1.result.ok, false);
			assert.equal(runI.status, "succeeded");
			assert.equal(runI.mode, "interrupt");
			assert.equal(runQ.status, "succeeded");
			assert.equal(runQ.mode, "queue");
			assert.ok(runQ.createdAt <= runI.createdAt, "the queued chat was accepted first");
			assert.ok(runI.startedAt >= runA1.endedAt, "the interrupt ran once the aborted run had ended");
			assert.ok(runQ.startedAt >= runI.endedAt, `the interrupt ran ahead of the queued run: ${JSON.stringify({ runI, runQ })}`);
			assert.deepEqual(piUserTexts(gw.sessions.get(key)), ["/work 30", "/echo interrupting", "/echo queued before the interrupt"]);
			assert.deepEqual(await queueOf(key), { running: null, queued: [], steering: [], followUp: [] });
		});
	}

	it("an invalid mode on the chat route is 400 with the contract's error, and runs nothing", async () => {
		const key = freshKey("invalid");
		for (const mode of ["STEER", "Steer", "follow_up", "", 1, true, { mode: "steer" }, ["queue"]]) {
			const res = await request(gw.port, "POST", `/sessions/${enc(key)}/chat`, {
				body: { id: "c-invalid", mode, messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: "/echo never" }] }] },
			});
			assert.equal(res.status, 400, `mode ${JSON.stringify(mode)}: ${res.status} ${res.text}`);
			assert.deepEqual(Object.keys(res.json ?? {}), ["error"], res.text);
			assert.ok(res.json.error.startsWith(`${INVALID_MODE_ERROR}, got `), `mode ${JSON.stringify(mode)}: ${res.text}`);
		}
		assert.equal(gw.sessions.get(key)?.messages.length ?? 0, 0, "nothing ran");
		assert.deepEqual(await listRuns(gw.port, key).catch(() => []), []);
	});
});
