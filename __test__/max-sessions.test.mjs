// A bound on sessions (issue 14, SPEC §12): `session.maxSessions` over HTTP on a real socket, in
// front of real pi AgentSessions on the offline faux model. The cap counts every session in
// memory, the primary included (which is never evicted): with `maxSessions: 3` the primary and
// two more keys fit, and a third key evicts the least recently active IDLE one (nothing running
// or queued, no event-stream subscriber). With none idle: 503 {"error":"Too many sessions"} and
// Retry-After: 5 over HTTP, `{ok:false, error:"Too many sessions"}` from enqueueMessage, a
// rejection from submitMessage — until one becomes idle.
//
// Run: node --test __test__/max-sessions.test.mjs

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { GatewayRuntime } from "../index.js";
import { baseConfig } from "./support/gateway.mjs";
import { getHistory, openEvents, say, startHistoryGateway } from "./support/history-util.mjs";
import { request } from "./support/http.mjs";
import { pollRunEnded, submit } from "./support/runs.mjs";
import { createDouble } from "./support/sessions.mjs";
import { waitFor } from "./support/wait.mjs";

const CAP = { session: { maxSessions: 3 } };
/**
 * A 503 refusal at the cap: Retry-After: 5 and `error: "Too many sessions"`; POST /messages and
 * /chat answer refusals as a GatewayMessageResult (as their 429 and 409 do), so there `{ok:false,
 * response:"", error, sessionKey}` without a runId; other routes `{error}` exactly.
 */
function assertTooMany(r, key, what) {
	assert.equal(r.status, 503, `${what}: ${r.status} ${r.text.slice(0, 300)}`);
	assert.equal(r.headers["retry-after"], "5", `${what}: Retry-After`);
	assert.equal(r.headers["x-run-id"], undefined, `${what}: no run`);
	if (what.includes("/messages") || what.includes("/chat")) assert.deepEqual(r.json, { ok: false, response: "", error: "Too many sessions", sessionKey: key }, what);
	else assert.deepEqual(r.json, { error: "Too many sessions" }, what);
}

/** The keys of the sessions in memory (GET /sessions), sorted. */
async function keysInMemory(port) {
	const r = await request(port, "GET", "/sessions");
	assert.equal(r.status, 200, r.text);
	return r.json.sessions.map((s) => s.sessionKey).sort();
}

const statusOf = async (port, key) => (await request(port, "GET", `/sessions/${encodeURIComponent(key)}`)).status;

/** A gateway whose sessions record their disposal in `disposed` (keys, in order). */
async function cappedGateway(options = {}) {
	const disposed = [];
	const gw = await startHistoryGateway({
		config: CAP,
		sessionExists: false,
		...options,
		onSession: (key, session) => {
			const dispose = session.dispose;
			session.dispose = function (...args) {
				disposed.push(key);
				return dispose.apply(this, args);
			};
		},
	});
	gw.disposed = disposed;
	return gw;
}

describe("session.maxSessions", { timeout: 180_000 }, () => {
	it("at the cap, a new key evicts the least recently active idle session (not the oldest, never the primary)", async () => {
		const gw = await cappedGateway();
		try {
			await say(gw.port, "a", "/echo a1");
			await say(gw.port, "b", "/echo b1");
			await say(gw.port, "a", "/echo a2"); // a is now more recently active than b
			assert.deepEqual(await keysInMemory(gw.port), ["a", "b", "main"]);
			const c = await say(gw.port, "c", "/echo c1");
			assert.equal(c.response, "You said: c1");
			assert.equal(await statusOf(gw.port, "b"), 404, "b (least recently active) was evicted");
			assert.deepEqual((await request(gw.port, "GET", "/sessions/b")).json, { error: "Session not found: b" });
			assert.deepEqual(await keysInMemory(gw.port), ["a", "c", "main"], "the others remain");
			await waitFor(() => gw.disposed.includes("b"), "b's AgentSession to be disposed");
			assert.deepEqual(gw.disposed, ["b"]);
			// The next new key evicts a (now the least recently active idle one); main stays though
			// it has never been active.
			await say(gw.port, "d", "/echo d1");
			assert.deepEqual(await keysInMemory(gw.port), ["c", "d", "main"]);
			await waitFor(() => gw.disposed.includes("a"), "a's AgentSession to be disposed");
			assert.equal((await say(gw.port, "main", "/echo primary")).response, "You said: primary");
			// An evicted key can come back (a new session: no sessionExists here, nothing loaded).
			const again = await say(gw.port, "b", "/echo b again");
			assert.equal(again.response, "You said: b again");
			assert.deepEqual(await keysInMemory(gw.port), ["b", "d", "main"]);
		} finally {
			await gw.close();
		}
	});

	it("a session with an event-stream subscriber is not idle: it is not evicted", async () => {
		const gw = await cappedGateway();
		let sse;
		try {
			await say(gw.port, "a", "/echo a1");
			await say(gw.port, "b", "/echo b1");
			sse = await openEvents(gw.port, "a"); // a is the least recently active, but watched
			await say(gw.port, "c", "/echo c1");
			assert.deepEqual(await keysInMemory(gw.port), ["a", "c", "main"], "b went, a stayed");
			// With a watched and c watched too, nothing is idle.
			const sse2 = await openEvents(gw.port, "c");
			try {
				const r = await request(gw.port, "POST", "/sessions/d/messages", { body: { text: "/echo d" } });
				assertTooMany(r, "d", "POST /messages");
			} finally {
				sse2.close();
			}
			// Once c's subscriber has gone, c is idle again and makes room.
			const d = await waitFor(async () => {
				const r = await request(gw.port, "POST", "/sessions/d/messages", { body: { text: "/echo d" } });
				return r.status === 200 ? r : undefined;
			}, "d to be accepted once c has no subscriber");
			assert.equal(d.json.response, "You said: d");
			assert.deepEqual(await keysInMemory(gw.port), ["a", "d", "main"]);
		} finally {
			sse?.close();
			await gw.close();
		}
	});

	it("with every session busy: 503 + Retry-After (messages, chat, events), enqueueMessage {ok:false}, submitMessage rejects; after one finishes, a new key is accepted", async () => {
		const gw = await cappedGateway();
		try {
			// Both held (a /slow 1000 streams for ~50 s) until the test aborts them.
			const runA = await submit(gw.port, "a", "/slow 1000");
			const runB = await submit(gw.port, "b", "/slow 1000");
			await waitFor(async () => {
				const list = (await request(gw.port, "GET", "/sessions")).json.sessions;
				return ["a", "b"].every((k) => list.find((s) => s.sessionKey === k)?.processing);
			}, "a and b to run");

			const msg = await request(gw.port, "POST", "/sessions/c/messages", { body: { text: "/echo c" } });
			assertTooMany(msg, "c", "POST /messages");
			const queued = await request(gw.port, "POST", "/sessions/c/messages", { body: { text: "/echo c", wait: false } });
			assertTooMany(queued, "c", "POST /messages wait:false");
			const chat = await request(gw.port, "POST", "/sessions/c/chat", {
				body: { messages: [{ id: "u", role: "user", parts: [{ type: "text", text: "/echo c" }] }] },
			});
			assertTooMany(chat, "c", "POST /chat");
			const events = await request(gw.port, "GET", "/sessions/c/events", { timeoutMs: 5000 });
			assertTooMany(events, "c", "GET /events");

			const js = await gw.runtime.enqueueMessage({ sessionKey: "c", text: "/echo c" });
			assert.equal(js.ok, false);
			assert.equal(js.error, "Too many sessions");
			assert.equal(js.sessionKey, "c");
			assert.equal(js.runId, undefined, "refused before it became a run");
			await assert.rejects(gw.runtime.submitMessage({ sessionKey: "c", text: "/echo c" }), /Too many sessions/);
			assert.equal(await statusOf(gw.port, "c"), 404, "nothing was created for c");
			assert.deepEqual(await keysInMemory(gw.port), ["a", "b", "main"]);
			// An existing session still takes messages (queued behind its run).
			assert.equal((await request(gw.port, "POST", "/sessions/main/messages", { body: { text: "/echo main" } })).json.response, "You said: main");

			// a's run ends (aborted): a is idle again.
			assert.equal((await request(gw.port, "POST", "/sessions/a/abort")).json?.ok, true);
			const { record } = await pollRunEnded(gw.port, "a", runA, { timeoutMs: 10_000 });
			assert.equal(record.status, "aborted");
			const c = await say(gw.port, "c", "/echo c");
			assert.equal(c.response, "You said: c");
			assert.deepEqual(await keysInMemory(gw.port), ["b", "c", "main"], "a (idle now) made room; b still runs");
			assert.equal(await statusOf(gw.port, "a"), 404);
			assert.equal((await request(gw.port, "GET", "/sessions/b")).json.session.processing, true);
			assert.equal((await request(gw.port, "POST", "/sessions/b/abort")).status, 200);
			const b = await pollRunEnded(gw.port, "b", runB, { timeoutMs: 10_000 });
			assert.equal(b.record.status, "aborted");
		} finally {
			await gw.close();
		}
	});

	it("with sessionExists, an evicted key's conversation continues when it comes back", async () => {
		const gw = await cappedGateway({ sessionExists: true });
		try {
			const one = await say(gw.port, "a", "/echo one");
			await say(gw.port, "b", "/echo b");
			await say(gw.port, "c", "/echo c"); // evicts a
			assert.equal(await statusOf(gw.port, "a"), 200, "a stored key is loaded on demand (GET /sessions/a)");
			assert.deepEqual(await keysInMemory(gw.port), ["a", "c", "main"], "loading a evicted b, the least recently active");
			const history = await getHistory(gw.port, "a");
			assert.deepEqual(history.messages.map((m) => m.role), ["user", "assistant"]);
			assert.equal(history.messages[1].id, one.runId);
			const h = await say(gw.port, "a", "/history");
			assert.equal(h.response, 'You said 1 things before: "/echo one"');
		} finally {
			await gw.close();
		}
	});

	it("maxSessions must be an integer from 1 to 1,000,000", async () => {
		for (const maxSessions of [0, -1, 1.5, "3", 1_000_001]) {
			let rt;
			await assert.rejects(
				(async () => {
					rt = new GatewayRuntime({
						config: baseConfig({ session: { maxSessions } }),
						primarySessionKey: "main",
						primarySession: createDouble("main"),
						createSession: async (key) => createDouble(key),
					});
					await rt.start();
				})(),
				/maxSessions/,
				`maxSessions ${JSON.stringify(maxSessions)} is refused`,
			);
			await rt?.stop().catch(() => {});
		}
		// maxSessions 1: only the primary; every other key is refused (the primary is never evicted).
		const rt = new GatewayRuntime({
			config: baseConfig({ session: { maxSessions: 1 } }),
			primarySessionKey: "main",
			primarySession: createDouble("main"),
			createSession: async (key) => createDouble(key),
		});
		await rt.start();
		try {
			const port = rt.getAddress().port;
			const r = await request(port, "POST", "/sessions/x/messages", { body: { text: "hi" } });
			assertTooMany(r, "x", "POST /messages");
			const main = await request(port, "POST", "/sessions/main/messages", { body: { text: "hi" } });
			assert.equal(main.json.response, "echo:hi");
		} finally {
			await rt.stop();
		}
	});
});
