// Clients that hang up (SPEC §10, issue 12 "nothing a client needs is lost to a disconnect"):
// - a queued `/messages` request (waiting, no Idempotency-Key) whose client hung up before its
//   turn came is not run: its result would reach nobody, and it holds no queue place;
// - a `/chat` request whose client hung up keeps its run (it stays resumable through
//   GET /sessions/:key/chat/:chatId/stream), so it holds its queue place and runs;
// - unless `chat.abortOnDisconnect: true`: then an abandoned queued /chat request is cancelled
//   (no place, no run) and a running one is aborted.
// Real sockets, the real addon, scripted sessions that count their prompts.

import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { startGateway } from "./support/gateway.mjs";
import { request } from "./support/http.mjs";
import { assertNoRunId, bodyWithRunId, UUID_V7, assertStartChunk } from "./support/runs.mjs";
import { waitUntil } from "./support/wait.mjs";

/**
 * Sends a complete POST on its own socket, then hangs up: once the gateway has read it, or, given
 * `until`, once what the gateway sent back (latin1 text) satisfies `until(received)`. Resolves
 * with what the gateway had sent back by then (for /chat, the response head with x-run-id).
 */
async function sendAndHangUp(port, path, body, { until } = {}) {
	const payload = JSON.stringify(body);
	const socket = net.connect(port, "127.0.0.1");
	await new Promise((resolve, reject) => {
		socket.once("connect", resolve);
		socket.once("error", reject);
	});
	let received = "";
	let saw;
	const seen = until && new Promise((resolve) => (saw = resolve));
	socket.setEncoding("latin1");
	socket.on("data", (d) => {
		received += d;
		if (until?.(received)) saw();
	});
	socket.on("error", () => {});
	socket.write(
		`POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`,
	);
	await (seen ?? delay(30));
	socket.destroy();
	return received;
}

/** The x-run-id of a raw response head (latin1 text), if any. */
function runIdOf(raw) {
	return /\r\nx-run-id: ([^\r]+)\r\n/i.exec(raw)?.[1];
}

/** The user texts the scripted session of `key` was prompted with, in order. */
function userTexts(gw, key) {
	const session = gw.created.find((s) => s.sessionKey === key);
	return session.messages.filter((m) => m.role === "user").map((m) => m.content.map((c) => c.text).join(""));
}

/** GET /sessions/:key/runs → runId → record. */
async function runsByIdOf(gw, key) {
	const res = await request(gw.port, "GET", `/sessions/${encodeURIComponent(key)}/runs`);
	assert.equal(res.status, 200, res.text);
	return new Map(res.json.runs.map((r) => [r.runId, r]));
}

/**
 * Starts a run of about 1.5 s on `key`, which keeps the session busy while others queue behind
 * it; resolves once it runs, with `{ first, promptsBefore }`: the promise of its answer and the
 * gateway's prompt count by then.
 */
async function busy(gw, key) {
	const first = request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text: "/stream 150 10" } });
	await waitUntil(() => gw.rt.getSession(key)?.processing, { message: "the first run to start" });
	return { first, promptsBefore: gw.prompts() };
}

/** Waits until `key` has nothing queued and nothing running. */
function idle(gw, key, message = "an idle session") {
	return waitUntil(() => gw.rt.getSession(key)?.queueDepth === 0 && !gw.rt.getSession(key)?.processing, { message });
}

/**
 * Behind {@link busy}'s run (`first`), a client that stays sends `/instant`: it gets a place (no
 * 429) and its answer, and it is the only prompt after the first run's — no abandoned message ran.
 * Waits for an idle session; resolves with both answers and the session's runs by id.
 */
async function keptIsTheOnlyOther(gw, key, { first, promptsBefore }) {
	const kept = request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text: "/instant" } });
	const firstResult = await first;
	assert.equal(firstResult.status, 200, firstResult.text);
	const keptResult = await kept;
	assert.equal(keptResult.status, 200, keptResult.text);
	assert.equal(bodyWithRunId(keptResult).ok, true);
	// Exactly one more prompt after the first run: the kept message.
	assert.equal(gw.prompts() - promptsBefore, 1, "no abandoned message was run");
	assert.deepEqual(userTexts(gw, key), ["/stream 150 10", "/instant"]);
	await idle(gw, key);
	return { firstResult, keptResult, runs: await runsByIdOf(gw, key) };
}

test("queued /messages requests whose clients left are not run, and hold no queue place", async (t) => {
	const gw = await startGateway({ t, config: { session: { maxQueuePerSession: 4 } } });
	const key = "gone";
	const busyRun = await busy(gw, key);

	// Twice the queue's size of abandoned requests: none may take a place or run.
	for (let i = 0; i < 8; i++) await sendAndHangUp(gw.port, `/sessions/${key}/messages`, { text: `gone ${i}` });

	// A client that stays gets a place (no 429) and its answer; nothing abandoned runs.
	const { firstResult, keptResult, runs } = await keptIsTheOnlyOther(gw, key, busyRun);
	// None of the abandoned requests' runs succeeded: the only runs that ran are the two above.
	const ran = [...runs.values()].filter((r) => r.status !== "cancelled");
	assert.deepEqual(
		ran.map((r) => r.runId).sort(),
		[firstResult.json.runId, keptResult.json.runId].sort(),
		JSON.stringify([...runs.values()]),
	);
});

test("with the default config, /chat requests whose clients left keep their runs: they hold their queue places and run to the end", async (t) => {
	const gw = await startGateway({ t, config: { session: { maxQueuePerSession: 4 } } });
	const key = "gone-chat";
	const { first, promptsBefore } = await busy(gw, key);

	// Abandoned /messages hold no place; abandoned /chat requests (3) each keep one.
	for (let i = 0; i < 4; i++) await sendAndHangUp(gw.port, `/sessions/${key}/messages`, { text: `gone ${i}` });
	const chatRunIds = [];
	for (let i = 0; i < 3; i++) {
		const head = await sendAndHangUp(gw.port, `/sessions/${key}/chat`, { id: `chat-${i}`, text: `gone chat ${i}` });
		assert.match(head, /^HTTP\/1\.1 200 /, `chat ${i}: ${JSON.stringify(head.slice(0, 200))}`);
		const runId = runIdOf(head);
		assert.match(String(runId), UUID_V7, `chat ${i}: no x-run-id in ${JSON.stringify(head.slice(0, 400))}`);
		chatRunIds.push(runId);
	}

	// The last place of four goes to a client that stays; one more is refused (429, no run).
	// (queueDepth is no witness here: a hung-up /messages request is only let go of when its
	// place is wanted, so it may still be counted until the queue is full.)
	const runsBefore = gw.rt.listRuns(key).length;
	const kept = request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text: "/instant" } });
	await waitUntil(() => gw.rt.listRuns(key).length === runsBefore + 1, { message: "the kept message to be accepted" });
	assert.equal(gw.rt.listRuns(key).at(-1).status, "queued");
	const refused = await request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text: "/instant" } });
	assert.equal(refused.status, 429, refused.text);
	assertNoRunId(refused, "the 429");
	assert.deepEqual(refused.json, { ok: false, response: "", error: "Queue full (4 pending).", sessionKey: key });
	// An abandoned chat stays resumable: its stream, from its start chunk to [DONE].
	const resumed = request(gw.port, "GET", `/sessions/${key}/chat/chat-2/stream`);

	const firstResult = await first;
	assert.equal(firstResult.status, 200, firstResult.text);
	const resumedResult = await resumed;
	assert.equal(resumedResult.status, 200, resumedResult.text);
	const chunks = resumedResult.text
		.split("\n\n")
		.filter((block) => block.startsWith("data: "))
		.map((block) => block.slice("data: ".length));
	assert.equal(chunks.at(-1), "[DONE]", resumedResult.text);
	assertStartChunk(JSON.parse(chunks[0]), chatRunIds[2]);
	assert.equal(JSON.parse(chunks.at(-2)).type, "finish", resumedResult.text);
	const keptResult = await kept;
	assert.equal(keptResult.status, 200, keptResult.text);
	assert.equal(bodyWithRunId(keptResult).ok, true);
	await idle(gw, key);
	// The three chats ran, in order, before the kept message; no abandoned /messages did.
	assert.equal(gw.prompts() - promptsBefore, 4, "the three abandoned chats and the kept message");
	assert.deepEqual(userTexts(gw, key), ["/stream 150 10", "gone chat 0", "gone chat 1", "gone chat 2", "/instant"]);
	// Each chat's run ended succeeded, its result carrying its runId.
	const runs = await runsByIdOf(gw, key);
	for (const runId of chatRunIds) {
		const run = runs.get(runId);
		assert.ok(run, `no record of chat run ${runId}`);
		assert.equal(run.status, "succeeded", JSON.stringify(run));
		assert.deepEqual(run.result, { ok: true, response: "ok", sessionKey: key, runId });
	}
});

test("with chat.abortOnDisconnect: true, queued /chat requests whose clients left are cancelled and hold no place, and a running one is aborted", async (t) => {
	const gw = await startGateway({ t, config: { chat: { abortOnDisconnect: true }, session: { maxQueuePerSession: 4 } } });
	const key = "gone";
	const busyRun = await busy(gw, key);

	// Twice the queue's size of abandoned requests: none may take a place or run.
	for (let i = 0; i < 4; i++) await sendAndHangUp(gw.port, `/sessions/${key}/messages`, { text: `gone ${i}` });
	const chatRunIds = [];
	for (let i = 0; i < 4; i++) {
		const head = await sendAndHangUp(gw.port, `/sessions/${key}/chat`, { id: `chat-${i}`, text: `gone chat ${i}` });
		const runId = runIdOf(head);
		if (runId !== undefined) chatRunIds.push(runId);
	}

	// A client that stays gets a place (no 429) and its answer; nothing abandoned runs.
	const { runs } = await keptIsTheOnlyOther(gw, key, busyRun);
	// The abandoned chats' runs, where they were told their ids, were cancelled.
	for (const runId of chatRunIds) assert.equal(runs.get(runId)?.status, "cancelled", JSON.stringify(runs.get(runId)));

	// A running chat whose client leaves is aborted, and the session goes on.
	const head = await sendAndHangUp(
		gw.port,
		`/sessions/${key}/chat`,
		{ id: "running-chat", text: "/stream 150 10" },
		{ until: (received) => (received.match(/"type":"text-delta"/g) ?? []).length >= 3 },
	);
	const runningId = runIdOf(head);
	assert.match(String(runningId), UUID_V7);
	await waitUntil(async () => (await runsByIdOf(gw, key)).get(runningId)?.status === "aborted", {
		message: "the running chat to be aborted by its client's disconnect",
	});
	await waitUntil(() => !gw.rt.getSession(key)?.processing, { message: "an idle session after the abort" });
	const after = await request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text: "/instant" } });
	assert.equal(after.status, 200, after.text);
	assert.equal(bodyWithRunId(after).ok, true);
});
