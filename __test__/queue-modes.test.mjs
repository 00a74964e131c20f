// Queue modes — double texting (issue 13, SPEC §11; contract /work/issue13-contract.md).
//
// A message sent to a busy session says what should happen to it with `mode`: `queue` (FIFO, its
// own run), `steer` / `followUp` (handed to the RUNNING run through pi's `session.steer()` /
// `session.followUp()`; the caller gets that run's result), `interrupt` (the running run is aborted,
// this one runs next, ahead of the queue) or `reject` (409 Session busy). `GET|DELETE
// /sessions/:key/queue` shows and clears the gateway's queue and pi's own; pi's `queue_update` is
// forwarded on the session's event stream.
//
// Real pi AgentSessions (@mariozechner/pi-coding-agent) on pi-ai's faux model, through real HTTP
// on 127.0.0.1. The model (support/queue-util.mjs) answers from its context: the first step of a
// "task …" streams a text and calls pi's real `read` tool on hello.txt, and WAITS for the test
// while it is held (an abort opens the wait too), so a second message is surely sent while the run
// is in its first step; its final answer says whether a steering message came after the tool
// result, or answers the follow-up. Every model call's context is recorded.
//
// Run: npm test -- __test__/queue-modes.test.mjs

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

import { uiMessageChunkSchema } from "ai";

import { GatewayRuntime } from "../index.js";
import { HELLO_CONTENT } from "../lib/faux-agent.js";
import { baseConfig, startChatGateway, startGateway, suiteChatGateway } from "./support/gateway.mjs";
import { request } from "./support/http.mjs";
import {
	BAD_MODES,
	gatedFactory,
	INVALID_MODE,
	isModeRefusal,
	MODES,
	postMode,
	queuePath,
	queueWhen,
	readQueue,
	registerQueueModel,
} from "./support/queue-util.mjs";
import { chatTerminal, chatText, getRun, listRuns, pollRun, postChat, runPath, UUID_V7, assertFinishChunk } from "./support/runs.mjs";
import { createScriptedSession } from "./support/sessions.mjs";
import { openSse } from "./support/sse.mjs";
import { SOON_MS, waitFor, within } from "./support/wait.mjs";

const SECRET = "queue-modes-hook-secret";
const HOOK = "/webhook/qm";
const HOOK_KEY = "webhook:qm:default";
const EMPTY_QUEUE = { running: null, queued: [], steering: [], followUp: [] };
const TEST = { timeout: 40_000 };

/** The 409 body of a `reject` on a busy session. */
const busy = (sessionKey, runId) => ({ ok: false, response: "", error: "Session busy", sessionKey, runId });

/** A promise whose rejection is not "unhandled" before the test awaits it. */
function later(promise) {
	promise.catch(() => {});
	return promise;
}

/** A run record's fields, checked loosely against the contract (mode included). */
function assertRun(record, { runId, sessionKey, status, mode }) {
	assert.ok(record && typeof record === "object", `not a run record: ${JSON.stringify(record)}`);
	assert.match(record.runId, UUID_V7);
	if (runId !== undefined) assert.equal(record.runId, runId, `runId of ${JSON.stringify(record)}`);
	if (sessionKey !== undefined) assert.equal(record.sessionKey, sessionKey);
	if (status !== undefined) assert.equal(record.status, status, `status of ${JSON.stringify(record)}`);
	if (mode !== undefined) assert.equal(record.mode, mode, `mode of ${JSON.stringify(record)}`);
}

describe("queue modes on real pi AgentSessions (faux model, HTTP)", { timeout: 300_000 }, () => {
	const model = registerQueueModel();
	const gw = suiteChatGateway({ script: model.script, config: { webhook: { enabled: true, secret: SECRET } } });
	after(() => model.releaseAll());

	/**
	 * Posts the held task `text` to `key` (a fresh key) and waits until its run is in its first
	 * model call. Returns the pending first answer and the run's id.
	 */
	async function startTask(t, key, text, { mode, ignoreAbort } = {}) {
		model.hold(text, { ignoreAbort });
		t.after(() => model.release(text));
		const first = later(postMode(gw.port, key, text, mode));
		await within(model.entered(text), SOON_MS, `the first model call of "${text}"`);
		const running = (await listRuns(gw.port, key)).filter((r) => r.status === "running");
		assert.equal(running.length, 1, `one running run in ${key}: ${JSON.stringify(running)}`);
		assertRun(running[0], { sessionKey: key, status: "running" });
		return { first, runId: running[0].runId };
	}

	/**
	 * Starts the held task "task <key>" ({@link startTask}), posts `text` with `mode` (steer or
	 * followUp) while it runs, and waits until pi holds the text in its steering or follow-up list.
	 * Returns the pending answers of the task (`first`) and of the text (`second`), the run's id and
	 * the queue (`q`) that showed the text.
	 */
	async function handOver(t, key, mode, text) {
		const { first, runId } = await startTask(t, key, `task ${key}`);
		const second = later(postMode(gw.port, key, text, mode));
		const [list, what] = mode === "steer" ? ["steering", "pi's steering text"] : ["followUp", "pi's follow-up text"];
		const q = await queueWhen(gw.port, key, (b) => b[list].length > 0, what);
		return { first, second, runId, q };
	}

	/** Releases the held task of `key` ({@link handOver}); both answers come, each 200. */
	async function bothAnswered(key, first, second) {
		model.release(`task ${key}`);
		const [a, b] = await within(Promise.all([first, second]), SOON_MS, "both answers");
		assert.equal(a.status, 200, a.text);
		assert.equal(b.status, 200, b.text);
		return [a, b];
	}

	// ------------------------------------------------------------ steer

	test("steer: lands after the running tool call, changes the answer; both callers get the one run's result", TEST, async (t) => {
		const key = "steer-http";
		const { first, second: steer, runId, q } = await handOver(t, key, "steer", "steer steer-http");
		assert.deepEqual(q.steering, ["steer steer-http"]);
		assert.deepEqual(q.followUp, []);
		assert.deepEqual(q.queued, [], "a steer is not queued as a run");
		assertRun(q.running, { runId, sessionKey: key, status: "running" });
		assert.equal((await listRuns(gw.port, key)).length, 1, "a steer is no run of its own");

		const [a, b] = await bothAnswered(key, first, steer);
		const expected = { ok: true, response: `Steered by steer steer-http after toolResult: ${HELLO_CONTENT}`, sessionKey: key, runId };
		assert.deepEqual(a.json, expected, "the first caller's answer reflects the steer");
		assert.deepEqual(b.json, expected, "the steer caller gets the running run's result");
		assert.equal(a.headers["x-run-id"], runId);
		assert.equal(b.headers["x-run-id"], runId, "x-run-id of the steer answer names the running run");

		const runs = await listRuns(gw.port, key);
		assert.equal(runs.length, 1, `one run only: ${JSON.stringify(runs)}`);
		assertRun(runs[0], { runId, status: "succeeded", mode: "queue" });
		assert.deepEqual(runs[0].result, expected);

		// The model's view: the steering message came right after the tool result, before the next call.
		const calls = model.callsFor("steer-http");
		assert.deepEqual(
			calls.map((c) => c.lastUser),
			["task steer-http", "steer steer-http"],
		);
		assert.deepEqual(calls[1].roles, ["user", "assistant", "toolResult", "user"]);
		assert.deepEqual(calls[1].texts.slice(2), [HELLO_CONTENT, "steer steer-http"]);
		assert.deepEqual(await readQueue(gw.port, key), EMPTY_QUEUE, "nothing left in either queue");
	});

	test("steer with an Idempotency-Key: a repeat joins the same run and is not delivered twice", TEST, async (t) => {
		const key = "steer-idem";
		const { first, runId } = await startTask(t, key, "task steer-idem");
		const headers = { "idempotency-key": "steer-idem-1" };
		const one = await postMode(gw.port, key, "steer steer-idem", "steer", { wait: false }, { headers });
		assert.equal(one.status, 202, one.text);
		assert.equal(one.json.runId, runId);
		assert.equal(one.json.delivered, "steer");
		const two = await postMode(gw.port, key, "steer steer-idem", "steer", { wait: false }, { headers });
		assert.equal(two.status, 202, two.text);
		assert.equal(two.json.runId, runId, "the repeat joins what the first joined");
		const q = await queueWhen(gw.port, key, (b) => b.steering.length > 0, "pi's steering text");
		assert.deepEqual(q.steering, ["steer steer-idem"], "handed to pi once");
		model.release("task steer-idem");
		const a = await within(first, SOON_MS, "the task's answer");
		assert.equal(a.json.response, `Steered by steer steer-idem after toolResult: ${HELLO_CONTENT}`);
		const last = model.callsFor("steer-idem").at(-1);
		assert.equal(last.texts.filter((x) => x === "steer steer-idem").length, 1, `the steer reached the model once: ${JSON.stringify(last.texts)}`);
		assert.equal((await listRuns(gw.port, key)).length, 1);
	});

	// ------------------------------------------------------------ followUp

	test("followUp: delivered after the first final answer; both callers get the answer to the follow-up", TEST, async (t) => {
		const key = "follow-http";
		const { first, second: follow, runId, q } = await handOver(t, key, "followUp", "follow follow-http");
		assert.deepEqual(q.followUp, ["follow follow-http"]);
		assert.deepEqual(q.steering, []);
		assert.deepEqual(q.queued, []);
		assertRun(q.running, { runId, status: "running" });

		const [a, b] = await bothAnswered(key, first, follow);
		const expected = { ok: true, response: "Follow-up answer to follow follow-http after assistant", sessionKey: key, runId };
		assert.deepEqual(a.json, expected);
		assert.deepEqual(b.json, expected);
		assert.equal(b.headers["x-run-id"], runId);

		const calls = model.callsFor("follow-http");
		assert.deepEqual(
			calls.map((c) => c.lastUser),
			["task follow-http", "task follow-http", "follow follow-http"],
			"the follow-up waited for the task's own answer",
		);
		assert.deepEqual(calls[2].roles, ["user", "assistant", "toolResult", "assistant", "user"]);
		assert.equal(calls[2].texts[3], `Plain answer to task follow-http: ${HELLO_CONTENT}`);
		const runs = await listRuns(gw.port, key);
		assert.equal(runs.length, 1, `one run only: ${JSON.stringify(runs)}`);
		assertRun(runs[0], { runId, status: "succeeded" });
	});

	// ------------------------------------------------------------ interrupt

	test("interrupt: the running run ends aborted, the interrupt runs next (ahead of a queued message) with its own result", TEST, async (t) => {
		const key = "int-http";
		const { first, runId } = await startTask(t, key, "task int-http");
		const queued = later(postMode(gw.port, key, "queued int-http"));
		const two = await waitFor(async () => {
			const runs = await listRuns(gw.port, key);
			return runs.length === 2 ? runs : undefined;
		}, "the queued message's run");
		assertRun(two[1], { status: "queued", mode: "queue" });
		const queuedId = two[1].runId;

		const interrupt = later(postMode(gw.port, key, "interrupt int-http", "interrupt"));
		const [a, q, i] = await within(Promise.all([first, queued, interrupt]), SOON_MS, "all three answers");

		assert.equal(a.json.ok, false, `the interrupted caller gets ok:false: ${a.text}`);
		assert.equal(a.json.runId, runId);
		assert.equal(typeof a.json.error, "string");
		assert.equal(i.status, 200, i.text);
		assert.deepEqual(i.json.response, "You said: interrupt int-http");
		assert.equal(i.json.ok, true);
		assert.match(i.json.runId, UUID_V7);
		assert.notEqual(i.json.runId, runId);
		assert.notEqual(i.json.runId, queuedId);
		assert.equal(i.headers["x-run-id"], i.json.runId);
		assert.equal(q.status, 200, q.text);
		assert.deepEqual(q.json, { ok: true, response: "You said: queued int-http", sessionKey: key, runId: queuedId });

		const aborted = await getRun(gw.port, key, runId);
		assertRun(aborted, { status: "aborted" });
		assert.equal(aborted.result.ok, false);
		const ir = await getRun(gw.port, key, i.json.runId);
		assertRun(ir, { status: "succeeded", mode: "interrupt" });
		const qr = await getRun(gw.port, key, queuedId);
		assertRun(qr, { status: "succeeded", mode: "queue" });
		assert.ok(qr.createdAt <= ir.createdAt, "the queued message was accepted first");
		assert.ok(ir.startedAt <= qr.startedAt, `the interrupt started first: ${ir.startedAt} vs ${qr.startedAt}`);
		assert.ok(ir.endedAt <= qr.startedAt, "the queued one ran after the interrupt had ended");
		assert.deepEqual(
			(await listRuns(gw.port, key)).map((r) => [r.runId, r.status]).sort(),
			[
				[runId, "aborted"],
				[queuedId, "succeeded"],
				[i.json.runId, "succeeded"],
			].sort(),
		);

		const order = model.callsFor("int-http").map((c) => c.lastUser);
		assert.deepEqual(order, ["task int-http", "interrupt int-http", "queued int-http"], "what the model saw, in order");
	});

	test("a steer into a run that is then interrupted gets the aborted result; pi's queue is cleared, the text never runs", TEST, async (t) => {
		const key = "steer-abort";
		const { first, runId } = await startTask(t, key, "task steer-abort");
		const steer = later(postMode(gw.port, key, "steer steer-abort", "steer"));
		await queueWhen(gw.port, key, (b) => b.steering.length === 1, "pi's steering text");
		const interrupt = later(postMode(gw.port, key, "interrupt steer-abort", "interrupt"));
		const [a, s, i] = await within(Promise.all([first, steer, interrupt]), SOON_MS, "all three answers");
		assert.equal(a.json.ok, false, a.text);
		assert.equal(a.json.runId, runId);
		assert.deepEqual(s.json, a.json, "the steer caller gets the aborted run's result");
		assert.equal(s.headers["x-run-id"], runId);
		assert.equal(i.status, 200, i.text);
		assert.equal(i.json.response, "You said: interrupt steer-abort");
		assert.notEqual(i.json.runId, runId);
		assert.deepEqual([...gw.sessions.get(key).getSteeringMessages()], [], "pi's steering queue was cleared");
		assert.deepEqual(await readQueue(gw.port, key), EMPTY_QUEUE);
		const texts = model.callsFor("steer-abort").flatMap((c) => c.texts);
		assert.ok(!texts.includes("steer steer-abort"), `the steer of the aborted run reached the model: ${JSON.stringify(texts)}`);
	});

	test("while the running run is being aborted: interrupts queue in order ahead of the queue, a steer falls back to queue", TEST, async (t) => {
		const key = "int-order";
		// The held first step ignores the abort: the run stays "being aborted" until released.
		const { first, runId } = await startTask(t, key, "task int-order", { ignoreAbort: true });
		const ids = {};
		for (const [name, text, mode] of [
			["q", "queued int-order", undefined],
			["i1", "interrupt int-order 1", "interrupt"],
			["i2", "interrupt int-order 2", "interrupt"],
			["s", "steer int-order", "steer"],
		]) {
			const r = await postMode(gw.port, key, text, mode, { wait: false });
			assert.equal(r.status, 202, `${name}: ${r.text}`);
			assert.notEqual(r.json.runId, runId, `${name} is a run of its own`);
			assert.equal(r.json.delivered, undefined, `${name} was not delivered into the run: ${r.text}`);
			ids[name] = r.json.runId;
		}
		const q = await readQueue(gw.port, key);
		assertRun(q.running, { runId, status: "running" });
		assert.deepEqual(
			q.queued.map((r) => r.runId),
			[ids.i1, ids.i2, ids.q, ids.s],
			"interrupts first, in their order; then the queue; the steer last",
		);
		assert.deepEqual(
			q.queued.map((r) => r.mode),
			["interrupt", "interrupt", "queue", "steer"],
		);
		assert.deepEqual([q.steering, q.followUp], [[], []], "nothing handed to pi");

		model.release("task int-order");
		const a = await within(first, SOON_MS, "the aborted run's caller");
		assert.equal(a.json.ok, false);
		await pollRun(gw.port, key, ids.s, (r) => r.status === "succeeded", { what: "the last run" });
		assert.equal((await getRun(gw.port, key, runId)).status, "aborted");
		for (const name of ["i1", "i2", "q"]) assert.equal((await getRun(gw.port, key, ids[name])).status, "succeeded", name);
		assert.deepEqual(
			model.callsFor("int-order").map((c) => c.lastUser),
			["task int-order", "interrupt int-order 1", "interrupt int-order 2", "queued int-order", "steer int-order"],
		);
	});

	// ------------------------------------------------------------ chat

	for (const [mode, tag] of [
		["steer", "steer chat-steer"],
		["followUp", "follow chat-follow"],
	]) {
		test(`chat ${mode}: a new message's stream of the running run's next steps; data-steering on the running chat`, TEST, async (t) => {
			const key = `chat-${mode}`;
			const task = `task ${key}`;
			model.hold(task);
			t.after(() => model.release(task));
			const main = later(postChat(gw.port, key, { text: task }));
			await within(model.entered(task), SOON_MS, "the chat run's first step");
			const [running] = (await listRuns(gw.port, key)).filter((r) => r.status === "running");
			assert.ok(running, "the chat run runs");
			const extra = later(postChat(gw.port, key, { id: `${key}-chat`, messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: tag }] }], trigger: "submit-message", mode }));
			await queueWhen(gw.port, key, (b) => b[mode === "steer" ? "steering" : "followUp"].length === 1, `pi's ${mode} text`);
			model.release(task);
			const [m, x] = await within(Promise.all([main, extra]), SOON_MS, "both chat streams");

			assert.equal(x.status, 200, x.text.slice(0, 300));
			assert.equal(x.headers["x-run-id"], running.runId, "x-run-id names the running run");
			assert.equal(x.chunks[0]?.type, "start");
			assert.notEqual(x.chunks[0].messageId, running.runId, "a NEW message");
			assert.notEqual(x.chunks[0].messageId, m.chunks[0]?.messageId);
			assert.equal(x.chunks[1]?.type, "start-step", `the run's chunks from its next step on: ${JSON.stringify(x.chunks.slice(0, 3))}`);
			assertFinishChunk(chatTerminal(x.chunks));
			const answer =
				mode === "steer"
					? `Steered by ${tag} after toolResult: ${HELLO_CONTENT}`
					: `Follow-up answer to ${tag} after assistant`;
			assert.ok(chatText(x.chunks).endsWith(answer), `the new stream carries the answer: ${JSON.stringify(chatText(x.chunks))}`);
			assert.ok(!chatText(x.chunks).includes("Working on"), "nothing of the step before the message");

			assert.equal(m.status, 200);
			assert.deepEqual(
				m.chunks.filter((c) => c?.type === "data-steering"),
				[{ type: "data-steering", data: { text: tag, mode } }],
				"the running chat is told, once",
			);
			assertFinishChunk(chatTerminal(m.chunks));
			assert.ok(chatText(m.chunks).endsWith(answer));

			const schema = uiMessageChunkSchema();
			for (const chunk of [...m.chunks, ...x.chunks]) {
				if (chunk === "[DONE]") continue;
				const v = await schema.validate(chunk);
				assert.ok(v.success, `ai's schema rejects ${JSON.stringify(chunk)}: ${v.success ? "" : v.error?.message}`);
			}
			assert.equal((await listRuns(gw.port, key)).length, 1, "one run");
		});
	}

	// ------------------------------------------------------------ reject

	test("reject: 409 Session busy naming the running run; nothing changes; the running run finishes", TEST, async (t) => {
		const key = "rej-http";
		const { first, runId } = await startTask(t, key, "task rej-http");
		const queued = await postMode(gw.port, key, "queued rej-http", undefined, { wait: false });
		assert.equal(queued.status, 202, queued.text);
		const queuedId = queued.json.runId;
		const before = await readQueue(gw.port, key);
		assert.deepEqual(
			before.queued.map((r) => r.runId),
			[queuedId],
		);

		for (const extra of [{}, { wait: false }]) {
			const r = await postMode(gw.port, key, "reject rej-http", "reject", extra);
			assert.equal(r.status, 409, `${JSON.stringify(extra)}: ${r.text}`);
			assert.deepEqual(r.json, busy(key, runId), "exactly the contract's body");
			assert.equal(r.headers.location, undefined);
		}
		const chat = await postChat(gw.port, key, { text: "reject rej-http chat", mode: "reject" });
		assert.equal(chat.status, 409, chat.text);
		assert.deepEqual(chat.json, busy(key, runId), "the chat route answers reject the same way");

		assert.deepEqual(await readQueue(gw.port, key), before, "the queue is unchanged");
		assert.deepEqual(
			(await listRuns(gw.port, key)).map((r) => r.runId),
			[runId, queuedId],
			"no new run",
		);

		model.release("task rej-http");
		const a = await within(first, SOON_MS, "the running run's answer");
		assert.deepEqual(a.json, { ok: true, response: `Plain answer to task rej-http: ${HELLO_CONTENT}`, sessionKey: key, runId });
		const { record } = await pollRun(gw.port, key, queuedId, (r) => r.status === "succeeded", { what: "the queued run to succeed" });
		assert.equal(record.result.response, "You said: queued rej-http");
		assert.ok(
			model.calls.every((c) => !c.texts.some((x) => x.startsWith("reject rej-http"))),
			"a rejected message never reaches the model",
		);
	});

	// ------------------------------------------------------------ idle sessions

	test("on an idle session every mode starts a run of its own (200, own runId, the record's mode)", TEST, async () => {
		const key = "idle-modes";
		const ids = [];
		for (const mode of MODES) {
			const r = await postMode(gw.port, key, `idle ${mode}`, mode);
			assert.equal(r.status, 200, `${mode}: ${r.text}`);
			assert.equal(r.json.ok, true, `${mode}: ${r.text}`);
			assert.equal(r.json.response, `You said: idle ${mode}`);
			assert.equal(r.json.sessionKey, key);
			assert.match(r.json.runId, UUID_V7);
			assert.equal(r.headers["x-run-id"], r.json.runId);
			assert.ok(!ids.includes(r.json.runId), `${mode}: a new run`);
			ids.push(r.json.runId);
			assertRun(await getRun(gw.port, key, r.json.runId), { status: "succeeded", mode });
		}
		const steer = await postMode(gw.port, key, "idle steer nowait", "steer", { wait: false });
		assert.equal(steer.status, 202, steer.text);
		assert.deepEqual(Object.keys(steer.json).sort(), ["runId", "sessionKey", "status"], `no "delivered" on an idle session: ${steer.text}`);
		assert.ok(!ids.includes(steer.json.runId));
		ids.push(steer.json.runId);
		await pollRun(gw.port, key, steer.json.runId, (r) => r.status === "succeeded", { what: "the idle steer to run" });
		assert.deepEqual(
			(await listRuns(gw.port, key)).map((r) => r.runId),
			ids,
		);
	});

	// ------------------------------------------------------------ the queue resource

	test("GET /queue shows the running run, the queued runs and pi's pending texts; DELETE clears both queues", TEST, async (t) => {
		const key = "queue-res";
		const events = await openEvents(t, key);
		const { first, runId } = await startTask(t, key, "task queue-res");

		const s = await postMode(gw.port, key, "steer queue-res", "steer", { wait: false });
		assert.equal(s.status, 202, s.text);
		assert.deepEqual(s.json, { runId, status: "running", sessionKey: key, delivered: "steer" });
		assert.equal(s.headers.location, runPath(key, runId));
		assert.equal(s.headers["x-run-id"], runId);
		const f = await postMode(gw.port, key, "follow queue-res", "followUp", { wait: false });
		assert.equal(f.status, 202, f.text);
		assert.deepEqual(f.json, { runId, status: "running", sessionKey: key, delivered: "followUp" });
		const waiting = later(postMode(gw.port, key, "queued queue-res 1"));
		await queueWhen(gw.port, key, (b) => b.queued.length === 1, "the waiting message queued");
		const q2 = await postMode(gw.port, key, "queued queue-res 2", "queue", { wait: false });
		assert.equal(q2.status, 202, q2.text);
		assert.equal(q2.json.status, "queued");
		assert.equal(q2.json.delivered, undefined, "a queued message was not delivered into a run");

		const q = await queueWhen(
			gw.port,
			key,
			(b) => b.queued.length === 2 && b.steering.length === 1 && b.followUp.length === 1,
			"two queued runs and pi's two texts",
		);
		assertRun(q.running, { runId, sessionKey: key, status: "running", mode: "queue" });
		assert.equal(q.queued[1].runId, q2.json.runId, "queued runs oldest first");
		for (const r of q.queued) assertRun(r, { sessionKey: key, status: "queued", mode: "queue" });
		const waitingId = q.queued[0].runId;
		assert.deepEqual(q.steering, ["steer queue-res"]);
		assert.deepEqual(q.followUp, ["follow queue-res"]);
		assert.deepEqual(JSON.parse(JSON.stringify(gw.runtime.getQueue(key))), q, "runtime.getQueue is the same object");
		const head = await request(gw.port, "HEAD", queuePath(key));
		assert.equal(head.status, 200);
		assert.equal(head.text, "");

		const del = await request(gw.port, "DELETE", queuePath(key));
		assert.equal(del.status, 200, del.text);
		assert.deepEqual(del.json, { ok: true, cleared: 2, steering: ["steer queue-res"], followUp: ["follow queue-res"] });

		const w = await within(waiting, SOON_MS, "the cleared caller's answer");
		assert.equal(w.json.ok, false);
		assert.equal(w.json.error, "Queue cleared");
		assert.equal(w.json.runId, waitingId);
		for (const id of [waitingId, q2.json.runId]) {
			const r = await getRun(gw.port, key, id);
			assertRun(r, { status: "cancelled" });
			assert.equal(r.result.error, "Queue cleared");
		}
		const afterDelete = await readQueue(gw.port, key);
		assertRun(afterDelete.running, { runId, status: "running" });
		assert.deepEqual({ ...afterDelete, running: null }, EMPTY_QUEUE, "both queues are empty");
		const session = gw.sessions.get(key);
		assert.deepEqual([...session.getSteeringMessages()], [], "pi's steering queue is empty");
		assert.deepEqual([...session.getFollowUpMessages()], [], "pi's follow-up queue is empty");
		await events.waitFor(
			(fr) => fr.data?.type === "queue_update" && fr.data.steering?.length === 0 && fr.data.followUp?.length === 0,
			SOON_MS,
			"queue_update with empty lists after DELETE",
		);

		model.release("task queue-res");
		const a = await within(first, SOON_MS, "the running run's answer");
		assert.deepEqual(a.json, { ok: true, response: `Plain answer to task queue-res: ${HELLO_CONTENT}`, sessionKey: key, runId }, "the running run finished, without the cleared texts");
		const texts = model.callsFor("queue-res").flatMap((c) => c.texts);
		assert.ok(!texts.includes("steer queue-res") && !texts.includes("follow queue-res"), `cleared texts reached the model: ${JSON.stringify(texts)}`);
		assert.deepEqual(await readQueue(gw.port, key), EMPTY_QUEUE);
	});

	test("/queue: 404 for an unknown session (GET, HEAD, DELETE create nothing), 405 for other methods", TEST, async () => {
		for (const method of ["GET", "DELETE"]) {
			const r = await request(gw.port, method, queuePath("ghost-q"));
			assert.equal(r.status, 404, `${method}: ${r.text}`);
			assert.deepEqual(r.json, { error: "Session not found: ghost-q" });
		}
		assert.equal((await request(gw.port, "HEAD", queuePath("ghost-q"))).status, 404);
		assert.equal(gw.runtime.getSession("ghost-q"), undefined, "no session was created");
		assert.equal(gw.runtime.getQueue("ghost-q"), undefined, "runtime.getQueue of an unknown key");

		await postMode(gw.port, "q-methods", "hello q-methods");
		for (const method of ["POST", "PUT", "PATCH"]) {
			const r = await request(gw.port, method, queuePath("q-methods"), { body: { text: "x" } });
			assert.equal(r.status, 405, `${method}: ${r.text}`);
			assert.deepEqual(r.json, { error: "Method not allowed" });
			assert.deepEqual(
				r.headers.allow?.split(",").map((m) => m.trim()),
				["GET", "HEAD", "DELETE"],
				`Allow of ${method}: ${r.headers.allow}`,
			);
		}
		const idle = await request(gw.port, "DELETE", queuePath("q-methods"));
		assert.equal(idle.status, 200, idle.text);
		assert.deepEqual(idle.json, { ok: true, cleared: 0, steering: [], followUp: [] });
		assert.deepEqual(await readQueue(gw.port, "q-methods"), EMPTY_QUEUE);
	});

	// ------------------------------------------------------------ events

	/** Opens GET /sessions/:key/events (the session is created first); closed when the test ends. */
	async function openEvents(t, key) {
		const hello = await postMode(gw.port, key, `hello ${key}`);
		assert.equal(hello.status, 200, hello.text);
		const s = await openSse(gw.port, `/sessions/${encodeURIComponent(key)}/events`);
		t.after(() => s.close());
		assert.equal(s.status, 200);
		await s.waitFor((f) => f.data?.type === "hello");
		return s;
	}

	test("queue_update on the event stream: with the steering text, then with empty lists once delivered", TEST, async (t) => {
		const key = "qu-events";
		const events = await openEvents(t, key);
		const { first, runId } = await startTask(t, key, "task qu-events");
		const s = await postMode(gw.port, key, "steer qu-events", "steer", { wait: false });
		assert.equal(s.status, 202, s.text);
		const withText = await events.waitFor((f) => f.data?.type === "queue_update", SOON_MS, "queue_update after the steer");
		assert.deepEqual(withText.data, { type: "queue_update", sessionKey: key, steering: ["steer qu-events"], followUp: [], runId });
		model.release("task qu-events");
		const a = await within(first, SOON_MS, "the answer");
		assert.equal(a.json.response, `Steered by steer qu-events after toolResult: ${HELLO_CONTENT}`);
		const emptied = await events.waitFor(
			(f) => f.data?.type === "queue_update" && f !== withText && f.data.steering?.length === 0,
			SOON_MS,
			"queue_update with empty lists",
		);
		assert.deepEqual(emptied.data, { type: "queue_update", sessionKey: key, steering: [], followUp: [], runId });
		assert.ok(emptied.id > withText.id, "logged in order");
		await events.waitFor((f) => f.data?.type === "run_end" && f.data.runId === runId, SOON_MS, "the run's run_end");
		const ev = events.events().map((f) => f.data);
		const updates = ev.filter((e) => e.type === "queue_update");
		assert.equal(updates.length, 2, `two queue_updates: ${JSON.stringify(updates)}`);
		const start = ev.findIndex((e) => e.type === "run_start" && e.runId === runId);
		const end = ev.findIndex((e) => e.type === "run_end" && e.runId === runId);
		assert.ok(start < ev.indexOf(withText.data) && ev.indexOf(emptied.data) < end, "both came while the run was running");
	});

	// ------------------------------------------------------------ JS API

	test("from JS: submitMessage/enqueueMessage with mode (steer, followUp, reject); getQueue", TEST, async (t) => {
		const rt = gw.runtime;
		const key = "js-modes";
		const { first, runId } = await startTask(t, key, "task js-modes");
		const rec = await rt.submitMessage({ sessionKey: key, text: "steer js-modes", mode: "steer" });
		assertRun(rec, { runId, sessionKey: key, status: "running" });
		assert.equal(rec.delivered, "steer");
		const joined = later(rt.enqueueMessage({ sessionKey: key, text: "follow js-modes", mode: "followUp" }));
		const q = await queueWhen(gw.port, key, (b) => b.steering.length === 1 && b.followUp.length === 1, "both texts with pi");
		assert.deepEqual(JSON.parse(JSON.stringify(rt.getQueue(key))), q);

		const rejected = await rt.enqueueMessage({ sessionKey: key, text: "reject js-modes", mode: "reject" });
		assert.deepEqual(rejected, busy(key, runId), "enqueueMessage resolves with the 409 body");
		await assert.rejects(
			async () => rt.submitMessage({ sessionKey: key, text: "reject js-modes", mode: "reject" }),
			(e) => e instanceof Error && e.message === "Session busy",
		);
		assert.equal(rt.listRuns(key).length, 1, "no run for the steer, follow-up or rejects");

		model.release("task js-modes");
		const [a, j] = await within(Promise.all([first, joined]), SOON_MS, "both answers");
		const expected = { ok: true, response: "Follow-up answer to follow js-modes after assistant", sessionKey: key, runId };
		assert.deepEqual(a.json, expected);
		assert.deepEqual(j, expected, "enqueueMessage(followUp) resolves with the running run's result");
		assert.deepEqual(
			model.callsFor("js-modes").map((c) => c.lastUser),
			["task js-modes", "steer js-modes", "follow js-modes"],
		);
	});

	test("from JS: submitMessage(interrupt) aborts the running run and answers with its own run", TEST, async (t) => {
		const rt = gw.runtime;
		const key = "js-int";
		const { first, runId } = await startTask(t, key, "task js-int");
		const rec = await rt.submitMessage({ sessionKey: key, text: "interrupt js-int", mode: "interrupt" });
		assert.notEqual(rec.runId, runId);
		assertRun(rec, { sessionKey: key, mode: "interrupt" });
		assert.ok(["queued", "running"].includes(rec.status), rec.status);
		assert.equal(rec.delivered, undefined);
		const a = await within(first, SOON_MS, "the interrupted caller");
		assert.equal(a.json.ok, false);
		assert.equal(a.json.runId, runId);
		const own = await within(rt.waitForRun(key, rec.runId), SOON_MS, "the interrupt's result");
		assert.deepEqual(own, { ok: true, response: "You said: interrupt js-int", sessionKey: key, runId: rec.runId });
		assert.equal(rt.getRun(key, runId).status, "aborted");
	});

	// ------------------------------------------------------------ validation

	test("bad modes → 400 naming mode on /messages (wait or not), /chat and a webhook; nothing created", TEST, async () => {
		const key = "val-fresh";
		const refusals = [];
		for (const mode of BAD_MODES) {
			const label = JSON.stringify(mode);
			const answers = [
				["/messages", await postMode(gw.port, key, "hi", mode)],
				["/messages wait:false", await postMode(gw.port, key, "hi", mode, { wait: false })],
				["/chat {text}", await postChat(gw.port, key, { text: "hi", mode })],
				[
					"/chat useChat body",
					await postChat(gw.port, key, {
						id: "val-chat",
						trigger: "submit-message",
						messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: "hi" }] }],
						mode,
					}),
				],
				["webhook", await request(gw.port, "POST", HOOK, { headers: { "x-pi-webhook-secret": SECRET }, body: { text: "hi", mode } })],
			];
			for (const [route, r] of answers) {
				if (!isModeRefusal(r)) refusals.push(`${route} mode ${label}: ${r.status} ${r.text.slice(0, 120)}`);
			}
		}
		assert.deepEqual(refusals, [], "every bad mode is a 400 with the contract's error");
		assert.equal(gw.runtime.getSession(key), undefined, "no session was created");
		assert.equal(gw.runtime.getSession(HOOK_KEY), undefined, "no webhook session was created");
		assert.deepEqual(gw.runtime.listRuns(key), []);
		assert.ok(!model.calls.some((c) => c.texts.includes("hi")), "nothing reached the model");
	});

	test("the refusal of a bad mode is exactly the contract's: 400 {error} naming the value over HTTP, the same message from JS", TEST, async () => {
		const key = "val-exact";
		const seen = [];
		for (const mode of ["Steer", 1]) {
			for (const [route, r] of [
				["/messages", await postMode(gw.port, key, "hi", mode)],
				["/chat", await postChat(gw.port, key, { text: "hi", mode })],
				["webhook", await request(gw.port, "POST", HOOK, { headers: { "x-pi-webhook-secret": SECRET }, body: { text: "hi", mode } })],
			]) {
				seen.push([route, mode, r.status, r.json]);
			}
			for (const [name, call] of [
				["enqueueMessage", () => gw.runtime.enqueueMessage({ sessionKey: key, text: "hi", mode })],
				["submitMessage", () => gw.runtime.submitMessage({ sessionKey: key, text: "hi", mode })],
			]) {
				try {
					seen.push([name, mode, "resolved", await call()]);
				} catch (e) {
					seen.push([name, mode, "threw", { error: e?.message }]);
				}
			}
		}
		// The contract: the accepted values, then what was sent (as JSON).
		const expected = seen.map(([route, mode, how]) => [
			route,
			mode,
			typeof how === "number" ? 400 : "threw",
			{ error: `${INVALID_MODE}, got ${JSON.stringify(mode)}` },
		]);
		assert.deepEqual(seen, expected, "exactly {\"error\":\"Invalid mode: expected one of queue, steer, followUp, interrupt, reject, got <value>\"}");
	});

	test("bad modes on a busy session change nothing; JS enqueueMessage/submitMessage reject; mode null is the default", TEST, async (t) => {
		const rt = gw.runtime;
		const key = "val-busy";
		const { first, runId } = await startTask(t, key, "task val-busy");
		const before = await readQueue(gw.port, key);
		const wrong = [];
		for (const mode of BAD_MODES) {
			const r = await postMode(gw.port, key, "steer val-busy", mode);
			if (!isModeRefusal(r)) wrong.push(`HTTP ${JSON.stringify(mode)}: ${r.status} ${r.text.slice(0, 200)}`);
			for (const [name, call] of [
				["enqueueMessage", () => rt.enqueueMessage({ sessionKey: key, text: "steer val-busy", mode })],
				["submitMessage", () => rt.submitMessage({ sessionKey: key, text: "steer val-busy", mode })],
				["enqueueMessage (fresh key)", () => rt.enqueueMessage({ sessionKey: "val-js-fresh", text: "hi", mode })],
			]) {
				try {
					const value = await call();
					wrong.push(`${name}(${JSON.stringify(mode)}) resolved: ${JSON.stringify(value)}`);
				} catch (e) {
					if (!(e instanceof Error) || !e.message.startsWith(INVALID_MODE)) wrong.push(`${name}(${JSON.stringify(mode)}) threw ${e?.name}: ${e?.message}`);
				}
			}
		}
		assert.deepEqual(wrong, [], "every bad mode is refused with the contract's message");
		assert.deepEqual(await readQueue(gw.port, key), before, "nothing was queued or handed to pi");
		assert.equal(rt.listRuns(key).length, 1);
		assert.equal(rt.getSession("val-js-fresh"), undefined);

		// mode: null is the default (queue): its own queued run.
		const dflt = await postMode(gw.port, key, "queued val-busy", null, { wait: false });
		assert.equal(dflt.status, 202, dflt.text);
		assert.equal(dflt.json.status, "queued");
		assert.equal(dflt.json.delivered, undefined);
		assertRun(await getRun(gw.port, key, dflt.json.runId), { status: "queued", mode: "queue" });

		model.release("task val-busy");
		const a = await within(first, SOON_MS, "the running run's answer");
		assert.deepEqual(a.json, { ok: true, response: `Plain answer to task val-busy: ${HELLO_CONTENT}`, sessionKey: key, runId });
		const { record } = await pollRun(gw.port, key, dflt.json.runId, (r) => r.status === "succeeded", { what: "the default-mode run" });
		assert.equal(record.result.response, "You said: queued val-busy");
		assert.ok(!model.callsFor("val-busy").some((c) => c.texts.includes("steer val-busy")), "no refused text reached the model");
	});
});

// ---------------------------------------------------------------- session.defaultMode

describe("config.session.defaultMode", { timeout: 60_000 }, () => {
	test("\"reject\": a POST without mode (or mode null) to a busy session is 409; explicit modes still apply", TEST, async (t) => {
		const model = registerQueueModel();
		const gw = await startChatGateway({ script: model.script, config: { session: { defaultMode: "reject" } } });
		t.after(async () => {
			model.releaseAll();
			await gw.close();
		});
		const key = "dm-reject";
		const idle = await postMode(gw.port, key, "hello dm");
		assert.equal(idle.status, 200, `an idle session runs it: ${idle.text}`);
		assert.equal(idle.json.response, "You said: hello dm");

		model.hold("task dm");
		t.after(() => model.release("task dm"));
		const first = later(postMode(gw.port, key, "task dm", "queue"));
		await within(model.entered("task dm"), SOON_MS, "the first step");
		const runId = gw.runtime.listRuns(key).find((r) => r.status === "running")?.runId;
		assert.match(String(runId), UUID_V7);
		for (const mode of [undefined, null]) {
			const r = await postMode(gw.port, key, "plain dm", mode);
			assert.equal(r.status, 409, `mode ${mode}: ${r.text}`);
			assert.deepEqual(r.json, busy(key, runId));
		}
		const chat = await postChat(gw.port, key, { text: "plain dm chat" });
		assert.equal(chat.status, 409, `chat without mode: ${chat.text}`);
		const queued = await postMode(gw.port, key, "queued dm", "queue", { wait: false });
		assert.equal(queued.status, 202, queued.text);
		assert.equal(queued.json.status, "queued");
		model.release("task dm");
		const a = await within(first, SOON_MS, "the running run");
		assert.equal(a.json.response, `Plain answer to task dm: ${HELLO_CONTENT}`);
		const { record } = await pollRun(gw.port, key, queued.json.runId, (r) => r.status === "succeeded", { what: "the queued run" });
		assert.equal(record.result.response, "You said: queued dm");
		assert.equal(gw.runtime.listRuns(key).length, 3, "no runs for the rejected messages");
	});

	test("an invalid defaultMode makes new GatewayRuntime throw naming config.session.defaultMode; valid ones construct", async () => {
		const make = (defaultMode) =>
			new GatewayRuntime({
				config: baseConfig({ session: { defaultMode } }),
				primarySessionKey: "main",
				primarySession: createScriptedSession("main"),
				createSession: async (k) => createScriptedSession(k),
				log: () => {},
			});
		for (const bad of ["Steer", "", "QUEUE", "follow_up", 5, true, {}, []]) {
			assert.throws(
				() => make(bad),
				(e) => e instanceof Error && /config\.session\.defaultMode/.test(e.message),
				`defaultMode ${JSON.stringify(bad)}`,
			);
		}
		for (const good of MODES) {
			const rt = make(good);
			await rt.stop();
		}
	});
});

// ---------------------------------------------------------------- a session without steer/followUp

describe("a session without steer/followUp answers steer and followUp as queue", { timeout: 60_000 }, () => {
	test("own run, own result, in FIFO order; 202 without delivered; pi's lists stay empty", TEST, async (t) => {
		const factory = gatedFactory();
		const gw = await startGateway({ t, createSession: factory });
		t.after(() => factory.releaseAll());
		const key = "fallback";
		factory.hold("hold fb");
		const first = later(postMode(gw.port, key, "hold fb"));
		const [running] = await waitFor(async () => {
			const runs = await listRuns(gw.port, key);
			return runs[0]?.status === "running" ? runs : undefined;
		}, "the held run to run");
		const steer = later(postMode(gw.port, key, "fb steer", "steer"));
		const runsWithSteer = await waitFor(async () => {
			const runs = await listRuns(gw.port, key);
			return runs.length === 2 ? runs : undefined;
		}, "the steer's own run");
		assertRun(runsWithSteer[1], { status: "queued", mode: "steer" });
		const follow = await postMode(gw.port, key, "fb follow", "followUp", { wait: false });
		assert.equal(follow.status, 202, follow.text);
		assert.deepEqual(Object.keys(follow.json).sort(), ["runId", "sessionKey", "status"], `no "delivered": ${follow.text}`);
		assert.equal(follow.json.status, "queued");
		const js = await gw.rt.submitMessage({ sessionKey: key, text: "fb js", mode: "steer" });
		assert.equal(js.status, "queued");
		assert.equal(js.delivered, undefined);

		const q = await readQueue(gw.port, key);
		assertRun(q.running, { runId: running.runId, status: "running" });
		assert.deepEqual(
			q.queued.map((r) => [r.runId, r.mode]),
			[
				[runsWithSteer[1].runId, "steer"],
				[follow.json.runId, "followUp"],
				[js.runId, "steer"],
			],
		);
		assert.deepEqual([q.steering, q.followUp], [[], []]);

		factory.release("hold fb");
		const [a, s] = await within(Promise.all([first, steer]), SOON_MS, "the answers");
		assert.deepEqual(a.json, { ok: true, response: "echo:hold fb", sessionKey: key, runId: running.runId });
		assert.deepEqual(s.json, { ok: true, response: "echo:fb steer", sessionKey: key, runId: runsWithSteer[1].runId });
		assert.equal(s.headers["x-run-id"], runsWithSteer[1].runId);
		const f = await within(gw.rt.waitForRun(key, follow.json.runId), SOON_MS, "the follow-up's run");
		assert.equal(f.response, "echo:fb follow");
		const j = await within(gw.rt.waitForRun(key, js.runId), SOON_MS, "the JS steer's run");
		assert.equal(j.response, "echo:fb js");
		assert.deepEqual(factory.sessions.get(key).prompts, ["hold fb", "fb steer", "fb follow", "fb js"]);
	});
});
