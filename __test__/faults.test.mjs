// Fault injection: sessions whose every member can throw, reject or hang, clients that go
// away at the worst moment or never read, connection floods, and a panic inside a handler.
// Each fault must end in a clear error result or event, and the process and the OTHER
// sessions must carry on (every test ends by getting an answer from a healthy session).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { baseConfig, startGateway } from "./support/gateway.mjs";
import { api, MiB, openSocket, rawExchange, rawRequest, rss } from "./support/rel-util.mjs";
import { createDouble, createDoubleFactory, createScriptedFactory, createScriptedSession } from "./support/sessions.mjs";
import { openSse, rawSse } from "./support/sse.mjs";
import { collect, sleep, waitFor, within } from "./support/wait.mjs";
import { bodyWithRunId, withRunId } from "./support/runs.mjs";

/** Asserts that `key` (a healthy session) and the primary still answer a message over HTTP. */
async function othersStillAnswer(base, { token, key = "healthy" } = {}) {
	for (const k of [key, "main"]) {
		const r = await within(api(base, "POST", `/sessions/${k}/messages`, { token, body: { text: `ping ${k}` } }), 10000, `message to ${k}`);
		assert.equal(r.status, 200, `${k}: ${r.text}`);
		assert.deepEqual(bodyWithRunId(r, `message to ${k}`), { ok: true, response: `echo:ping ${k}`, sessionKey: k });
	}
	const h = await api(base, "GET", "/health");
	assert.deepEqual(h.body, { ok: true, ready: true });
}

/** A factory that answers `faulty(key)` for keys starting with "bad" and a healthy double otherwise. */
function factoryWith(faulty) {
	const healthy = createDoubleFactory();
	const f = (key) => (key.startsWith("bad") ? faulty(key) : healthy(key));
	f.healthy = healthy;
	return f;
}

// ------------------------------------------------------------------ createSession faults

test("createSession throwing synchronously gives a 500 result naming the error, leaves no session, and others carry on", async (t) => {
	let calls = 0;
	const factory = factoryWith(() => {
		calls++;
		throw new Error("sync create boom");
	});
	const { rt, base } = await startGateway({ t, primarySession: createDouble("main"), createSession: factory });

	const r = await api(base, "POST", "/sessions/bad1/messages", { body: { text: "hi" } });
	assert.equal(r.status, 500);
	// The message was accepted (a run) and failed: it has a runId.
	bodyWithRunId(r);
	assert.equal(r.body.ok, false);
	assert.equal(r.body.response, "");
	assert.equal(r.body.sessionKey, "bad1");
	assert.match(r.body.error, /createSession failed: sync create boom/);

	// Nothing was left behind: the key is unknown, and the next request tries again.
	assert.equal((await api(base, "GET", "/sessions/bad1")).status, 404);
	assert.equal(rt.getSession("bad1"), undefined);

	const viaApi = await within(rt.enqueueMessage({ sessionKey: "bad1", text: "hi" }), 5000, "enqueueMessage");
	assert.equal(viaApi.ok, false);
	assert.match(viaApi.error, /sync create boom/);
	assert.equal(calls, 2, "each request retried the creation");

	// Under /events the failure is one error event and a clean end, not a crash.
	const sse = await within(api(base, "GET", "/sessions/bad1/events"), 5000, "events");
	assert.equal(sse.status, 200);
	assert.match(sse.headers.get("content-type"), /text\/event-stream/);
	// SPEC §10: every stream starts with `retry: 2000`.
	assert.ok(sse.text.startsWith("retry: 2000\n\n"), sse.text);
	const frames = sse.text.slice("retry: 2000\n\n".length).split("\n\n").filter(Boolean);
	assert.equal(frames.length, 1, sse.text);
	const ev = JSON.parse(frames[0].replace(/^(id: \d+\n)?data: /, ""));
	assert.equal(ev.type, "error");
	assert.equal(ev.sessionKey, "bad1");
	assert.match(ev.error, /sync create boom/);

	await assert.rejects(rt.addSubscriber("bad1", () => {}), /sync create boom/);
	await othersStillAnswer(base);
});

test("createSession rejecting gives a 500 result naming the error, and a later creation of the same key can succeed", async (t) => {
	let failures = 2;
	const healthy = createDoubleFactory();
	const factory = (key) => {
		if (key === "flaky" && failures > 0) {
			failures--;
			return Promise.reject(new Error("async create boom"));
		}
		return healthy(key);
	};
	const { base } = await startGateway({ t, primarySession: createDouble("main"), createSession: factory });

	for (let i = 0; i < 2; i++) {
		const r = await api(base, "POST", "/sessions/flaky/messages", { body: { text: "hi" } });
		assert.equal(r.status, 500);
		assert.equal(r.body.ok, false);
		assert.match(r.body.error, /createSession failed: async create boom/);
	}
	const r = await api(base, "POST", "/sessions/flaky/messages", { body: { text: "third time" } });
	assert.equal(r.status, 200, r.text);
	assert.equal(r.body.response, "echo:third time");
	assert.equal(healthy.created.filter((s) => s.sessionKey === "flaky").length, 1);
	await othersStillAnswer(base);
});

test("createSession that never settles times out after session.createTimeoutMs with an error naming the timeout", async (t) => {
	const calls = new Map();
	const factory = factoryWith((key) => {
		calls.set(key, (calls.get(key) ?? 0) + 1);
		return new Promise(() => {});
	});
	const { rt, base } = await startGateway({
		t,
		config: baseConfig({ session: { createTimeoutMs: 300 } }),
		primarySession: createDouble("main"),
		createSession: factory,
	});

	const started = Date.now();
	// Two concurrent first requests share one creation and both get the timeout.
	const [a, b] = await within(
		Promise.all([
			api(base, "POST", "/sessions/bad-hang/messages", { body: { text: "one" } }),
			rt.enqueueMessage({ sessionKey: "bad-hang", text: "two" }),
		]),
		10000,
		"hanging creation",
	);
	const elapsed = Date.now() - started;
	assert.equal(a.status, 500);
	assert.equal(a.body.ok, false);
	assert.match(a.body.error, /createSession timed out after 300 ms/);
	assert.equal(b.ok, false);
	assert.match(b.error, /createSession timed out after 300 ms/);
	assert.ok(elapsed >= 250, `answered after ${elapsed} ms, before the timeout`);
	assert.equal(calls.get("bad-hang"), 1, "one creation for concurrent first requests");

	// /events for a hanging key: one error event naming the timeout, then the end.
	const sse = await within(api(base, "GET", "/sessions/bad-hang2/events"), 10000, "events");
	assert.match(sse.text, /"type":"error"/);
	assert.match(sse.text, /createSession timed out after 300 ms/);
	assert.equal(rt.getSession("bad-hang"), undefined);
	await othersStillAnswer(base);
});

test("a session that createSession resolves after the timeout is disposed, not leaked", async (t) => {
	const late = [];
	let lateCalls = 0;
	const factory = factoryWith(async (key) => {
		lateCalls++;
		const s = createDouble(key);
		if (lateCalls === 1) {
			late.push(s);
			await sleep(900);
		}
		return s;
	});
	const { rt, base } = await startGateway({
		t,
		config: baseConfig({ session: { createTimeoutMs: 300 } }),
		primarySession: createDouble("main"),
		createSession: factory,
	});

	const r = await api(base, "POST", "/sessions/bad-late/messages", { body: { text: "hi" } });
	assert.equal(r.status, 500);
	assert.match(r.body.error, /createSession timed out after 300 ms/);
	assert.equal(late.length, 1);
	await waitFor(() => late[0].calls.dispose === 1, "the late session to be disposed", 5000);
	assert.equal(late[0].calls.prompt, 0, "the late session never ran anything");
	assert.equal(rt.getSession("bad-late"), undefined);

	// The key is free again: a new creation (fast this time) serves it.
	const again = await api(base, "POST", "/sessions/bad-late/messages", { body: { text: "again" } });
	assert.equal(again.status, 200, again.text);
	assert.equal(again.body.response, "echo:again");
	assert.equal(late[0].calls.dispose, 1, "disposed exactly once");
	await othersStillAnswer(base);
});

test("createSession resolving to something that is not a session gives a clear error result", async (t) => {
	const factory = factoryWith(async (key) => (key === "bad-null" ? null : { prompt() {} }));
	const { base } = await startGateway({ t, primarySession: createDouble("main"), createSession: factory });
	for (const key of ["bad-null", "bad-partial"]) {
		const r = await api(base, "POST", `/sessions/${key}/messages`, { body: { text: "hi" } });
		assert.equal(r.status, 500);
		assert.equal(r.body.ok, false);
		assert.match(r.body.error, /createSession failed: .*(not a session object|has no subscribe\(\) method)/, r.body.error);
	}
	await othersStillAnswer(base);
});

test("a session whose subscribe() throws gives an error result and the other sessions carry on", async (t) => {
	const factory = factoryWith(async (key) =>
		createDouble(key, {
			subscribe() {
				throw new Error("subscribe boom");
			},
		}),
	);
	const { rt, base } = await startGateway({ t, primarySession: createDouble("main"), createSession: factory });
	const r = await api(base, "POST", "/sessions/bad-sub/messages", { body: { text: "hi" } });
	assert.equal(r.status, 500);
	assert.match(r.body.error, /createSession failed: subscribe boom/);
	assert.equal(rt.getSession("bad-sub"), undefined);
	await othersStillAnswer(base);
});

test("a session the gateway got from createSession but could not use (subscribe threw) is disposed", async (t) => {
	const made = [];
	const factory = factoryWith(async (key) => {
		const s = createDouble(key, {
			subscribe() {
				throw new Error("subscribe boom");
			},
		});
		made.push(s);
		return s;
	});
	const { base } = await startGateway({ t, primarySession: createDouble("main"), createSession: factory });
	const r = await api(base, "POST", "/sessions/bad-sub/messages", { body: { text: "hi" } });
	assert.equal(r.status, 500);
	assert.equal(made.length, 1);
	// Nobody else holds this session: if the gateway does not dispose it, it leaks.
	await waitFor(() => made[0].calls.dispose === 1, "the unusable session to be disposed", 3000).catch(() => {});
	assert.equal(made[0].calls.dispose, 1, "the session whose subscribe() threw was never disposed (leaked)");
});

// ------------------------------------------------------------------ prompt faults

function promptFaultSession(key) {
	return createDouble(key, {
		prompt(text, session) {
			if (text === "throw") throw new Error("prompt sync boom");
			if (text === "reject") return Promise.reject(new Error("prompt async boom"));
			if (text === "reject-string") return Promise.reject("a plain string");
			if (text === "reject-object") return Promise.reject({ code: 42 });
			if (text === "stop-error") {
				return (async () => {
					session.messages.push({ role: "user", content: [{ type: "text", text }] });
					session.messages.push({ role: "assistant", content: [], stopReason: "error", errorMessage: "x" });
				})();
			}
			return (async () => {
				session.messages.push({ role: "user", content: [{ type: "text", text }] });
				session.messages.push({ role: "assistant", content: [{ type: "text", text: `echo:${text}` }], stopReason: "stop" });
			})();
		},
	});
}

async function promptFault(t, text, expectedError) {
	const factory = factoryWith(async (key) => promptFaultSession(key));
	const { rt, base } = await startGateway({ t, primarySession: createDouble("main"), createSession: factory });
	// Create the session first, so the subscriber sees the run's events.
	const first = await api(base, "POST", "/sessions/bad-prompt/messages", { body: { text: "warm up" } });
	assert.equal(first.status, 200, first.text);
	const { events, unsubscribe: off } = await collect(rt, "bad-prompt");
	t.after(off);

	const r = await api(base, "POST", "/sessions/bad-prompt/messages", { body: { text } });
	assert.equal(r.status, 500, r.text);
	bodyWithRunId(r);
	assert.equal(r.body.ok, false);
	assert.equal(r.body.sessionKey, "bad-prompt");
	if (expectedError instanceof RegExp) assert.match(r.body.error, expectedError);
	else assert.equal(r.body.error, expectedError);

	const errorEvent = await waitFor(() => events.find((e) => e.type === "error"), "the error event", 3000);
	assert.equal(errorEvent.sessionKey, "bad-prompt");
	assert.equal(errorEvent.error, r.body.error);
	assert.equal(errorEvent.runId, r.body.runId, "the run's error event carries its runId");
	await waitFor(() => events.find((e) => e.type === "run_end" && e.runId === r.body.runId), "the run_end event", 3000);
	assert.deepEqual(
		events.find((e) => e.type === "run_end" && e.runId === r.body.runId),
		{ type: "run_end", sessionKey: "bad-prompt", runId: r.body.runId, status: "failed", error: r.body.error },
	);
	assert.equal(events.filter((e) => e.type === "aborted").length, 0, "a failure is not an abort");

	// The same session is not wedged: it is idle and answers the next message.
	const snap = rt.getSession("bad-prompt");
	assert.equal(snap.processing, false);
	assert.equal(snap.queueDepth, 0);
	const next = await api(base, "POST", "/sessions/bad-prompt/messages", { body: { text: "after" } });
	assert.equal(next.status, 200, next.text);
	assert.equal(next.body.response, "echo:after");
	await othersStillAnswer(base);
	return r;
}

test("prompt throwing synchronously gives a 500 {ok:false, error} and an error event", async (t) => {
	await promptFault(t, "throw", "prompt sync boom");
});

test("prompt rejecting gives a 500 {ok:false, error} and an error event", async (t) => {
	await promptFault(t, "reject", "prompt async boom");
});

test("prompt rejecting with a non-Error value still gives a readable error", async (t) => {
	await promptFault(t, "reject-string", "a plain string");
});

test("prompt rejecting with a plain object gives its JSON as the error", async (t) => {
	await promptFault(t, "reject-object", '{"code":42}');
});

test('prompt resolving with stopReason "error" gives ok:false with its errorMessage and an error event', async (t) => {
	await promptFault(t, "stop-error", "x");
});

// ------------------------------------------------------------------ abort faults

test("abort() rejecting becomes an error event on the session's stream; the run and the process carry on", async (t) => {
	const sessions = [];
	const factory = factoryWith(async (key) => {
		let release;
		const s = createDouble(key, {
			prompt(text, session) {
				return new Promise((resolve) => {
					release = () => {
						session.messages.push({ role: "assistant", content: [{ type: "text", text: `late:${text}` }], stopReason: "stop" });
						resolve();
					};
				});
			},
			abort() {
				return Promise.reject(new Error("abort boom"));
			},
		});
		s.release = () => release?.();
		sessions.push(s);
		return s;
	});
	const { rt, base, port } = await startGateway({ t, primarySession: createDouble("main"), createSession: factory });

	const pending = api(base, "POST", "/sessions/bad-abort/messages", { body: { text: "long" } });
	await waitFor(() => rt.getSession("bad-abort")?.processing, "the run to start", 5000);
	const { events, unsubscribe: off } = await collect(rt, "bad-abort");
	t.after(off);
	const sse = await openSse(port, "/sessions/bad-abort/events");
	t.after(() => sse.close());
	await sse.waitFor((f) => f.data?.type === "hello", 5000);

	const ab = await api(base, "POST", "/sessions/bad-abort/abort");
	assert.equal(ab.status, 200);
	assert.deepEqual(ab.body, { ok: true });
	const err1 = await waitFor(() => events.find((e) => e.type === "error"), "the abort error event", 3000);
	assert.match(err1.error, /abort failed: abort boom/);
	// The same event on the session's HTTP event stream.
	const frame = await sse.waitFor((f) => f.data?.type === "error", 3000);
	assert.deepEqual(frame.data, err1);

	assert.equal(rt.abortSession("bad-abort"), true, "the JS API abort is accepted too");
	await waitFor(() => events.filter((e) => e.type === "error").length === 2, "a second abort error event", 3000);

	// The run was not stopped (abort failed); once it ends, its message gets its one result.
	sessions[0].release();
	const r = await within(pending, 5000, "the message");
	assert.equal(r.status, 200, r.text);
	assert.equal(r.body.response, "late:long");
	await othersStillAnswer(base);
});

test("resetting a running session whose abort() rejects still completes and answers its message", async (t) => {
	const sessions = [];
	const factory = factoryWith(async (key) => {
		const s = createDouble(key, {
			prompt: () => new Promise(() => {}),
			abort: () => Promise.reject(new Error("abort boom")),
		});
		sessions.push(s);
		return s;
	});
	const { rt, base } = await startGateway({ t, primarySession: createDouble("main"), createSession: factory });
	const pending = api(base, "POST", "/sessions/bad-reset/messages", { body: { text: "forever" } });
	await waitFor(() => rt.getSession("bad-reset")?.processing, "the run to start", 5000);
	const queued = rt.enqueueMessage({ sessionKey: "bad-reset", text: "queued" });
	await waitFor(() => rt.getSession("bad-reset")?.queueDepth === 1, "the queued message", 5000);

	const reset = await within(api(base, "POST", "/sessions/bad-reset/reset"), 5000, "reset");
	assert.equal(reset.status, 200, reset.text);
	assert.deepEqual(reset.body, { ok: true });
	const [r, q] = await within(Promise.all([pending, queued]), 5000, "the dropped messages");
	assert.equal(r.status, 500);
	assert.deepEqual(bodyWithRunId(r), { ok: false, response: "", error: "Session reset", sessionKey: "bad-reset" });
	assert.deepEqual(withRunId(q), { ok: false, response: "", error: "Session reset", sessionKey: "bad-reset" });
	await waitFor(() => sessions[0].calls.dispose === 1, "dispose", 3000);
	assert.equal(rt.getSession("bad-reset"), undefined);
	await othersStillAnswer(base);
});

// ------------------------------------------------------------------ listener and dispose faults

test("an addSubscriber listener that throws does not stop the other listeners from receiving every event", async (t) => {
	const { rt, base } = await startGateway({ t, primarySession: createDouble("main"), createSession: createDoubleFactory() });
	await api(base, "POST", "/sessions/subs/messages", { body: { text: "create" } });
	const seenByThrower = [];
	const offThrower = await rt.addSubscriber("subs", (e) => {
		seenByThrower.push(e.type);
		throw new Error("listener boom");
	});
	const second = await collect(rt, "subs");
	const thirdSeen = [];
	const offThird = await rt.addSubscriber("subs", (e) => {
		thirdSeen.push(e.type);
		if (e.type === "hello") throw new TypeError("throws on hello only");
	});
	t.after(() => {
		offThrower();
		second.unsubscribe();
		offThird();
	});

	for (const text of ["one", "two"]) {
		const r = await api(base, "POST", "/sessions/subs/messages", { body: { text } });
		assert.equal(r.status, 200, r.text);
	}
	await waitFor(() => second.events.filter((e) => e.type === "message_complete").length === 2, "both completions", 3000);
	await waitFor(() => thirdSeen.filter((e) => e === "message_complete").length === 2, "third listener", 3000);
	await waitFor(() => seenByThrower.filter((e) => e === "message_complete").length === 2, "thrower", 3000);
	const texts = second.events.filter((e) => e.type === "message_complete").map((e) => e.text);
	assert.deepEqual(texts, ["echo:one", "echo:two"]);
	// Listeners attached after hello saw the same events in the same order.
	const secondTypes = second.events.map((e) => e.type).filter((x) => x !== "hello");
	assert.deepEqual(thirdSeen.filter((x) => x !== "hello"), secondTypes);
	await othersStillAnswer(base);
});

test("dispose() throwing does not stop eviction, reset or stop from completing", async (t) => {
	const made = [];
	const factory = factoryWith(async (key) => {
		const s = createDouble(key, {
			dispose() {
				throw new Error("dispose boom");
			},
		});
		made.push(s);
		return s;
	});
	const { rt, base, logs, stop } = await startGateway({
		t,
		// idle 0.005 min = 300 ms, swept every 100 ms.
		config: baseConfig({ session: { idleMinutes: 0.005, sweepIntervalMs: 100 } }),
		primarySession: createDouble("main"),
		createSession: factory,
	});
	const byKey = (k) => made.filter((s) => s.sessionKey === k);

	// Eviction.
	assert.equal((await api(base, "POST", "/sessions/bad-evict/messages", { body: { text: "hi" } })).status, 200);
	await waitFor(() => rt.getSession("bad-evict") === undefined, "eviction", 5000);
	await waitFor(() => byKey("bad-evict")[0].calls.dispose === 1, "dispose on eviction", 3000);
	await waitFor(() => logs.some((l) => /dispose failed: dispose boom/.test(l)), "a log line naming the failure", 3000);
	await othersStillAnswer(base);

	// Reset.
	assert.equal((await api(base, "POST", "/sessions/bad-reset/messages", { body: { text: "hi" } })).status, 200);
	const reset = await within(api(base, "POST", "/sessions/bad-reset/reset"), 5000, "reset");
	assert.equal(reset.status, 200, reset.text);
	assert.deepEqual(reset.body, { ok: true });
	assert.equal(rt.getSession("bad-reset"), undefined);
	assert.equal(byKey("bad-reset")[0].calls.dispose, 1);
	const again = await api(base, "POST", "/sessions/bad-reset/messages", { body: { text: "again" } });
	assert.equal(again.status, 200);
	assert.equal(byKey("bad-reset").length, 2, "a fresh session after the reset");
	await othersStillAnswer(base);

	// Stop, with several throwing sessions alive (and one busy).
	for (const k of ["bad-s1", "bad-s2"]) await api(base, "POST", `/sessions/${k}/messages`, { body: { text: "hi" } });
	const t0 = Date.now();
	await within(stop(), 5000, "stop()");
	assert.ok(Date.now() - t0 < 5000);
	for (const k of ["bad-s1", "bad-s2"]) assert.equal(byKey(k)[0].calls.dispose, 1, `${k} disposed at stop`);
	assert.equal(rt.isReady(), false);
});

// ------------------------------------------------------------------ client faults

test("an SSE client that disconnects mid-stream leaves the run, the other subscribers and eviction unaffected", async (t) => {
	const factory = createScriptedFactory({ kind: "instant" });
	const { rt, port } = await startGateway({
		t,
		config: baseConfig({ session: { idleMinutes: 0.005, sweepIntervalMs: 100 } }),
		primarySession: createScriptedSession("main"),
		createSession: factory,
	});
	const sse = await openSse(port, "/sessions/sse-k/events");
	await sse.waitFor((f) => f.data?.type === "hello", 5000);
	const other = await collect(rt, "sse-k");
	const result = rt.enqueueMessage({ sessionKey: "sse-k", text: "/stream 60 20" });
	await waitFor(() => sse.events().filter((f) => f.data.type === "token").length >= 5, "five tokens on the stream", 5000);
	sse.close();

	const r = await within(result, 10000, "the streamed message");
	assert.equal(r.ok, true, r.error);
	assert.match(r.response, /t59@/);
	await waitFor(() => other.events.some((e) => e.type === "message_complete"), "the other subscriber's completion", 3000);
	assert.equal(other.events.filter((e) => e.type === "token").length, 60, "the other subscriber got every token");
	other.unsubscribe();

	// With no subscriber left, the idle session is evicted: the gone client holds nothing.
	await waitFor(() => rt.getSession("sse-k") === undefined, "eviction after the disconnect", 5000);
	await waitFor(() => factory.live.size === 0, "the session disposed", 3000);
	assert.equal((await api(`http://127.0.0.1:${port}`, "GET", "/health")).status, 200);
});

test("a chat client that disconnects mid-stream does not stop the run", async (t) => {
	const factory = createScriptedFactory({ kind: "instant" });
	const { rt, port, base } = await startGateway({ t, primarySession: createScriptedSession("main"), createSession: factory });
	await api(base, "POST", "/sessions/chat-k/messages", { body: { text: "/instant" } });
	const watcher = await collect(rt, "chat-k");
	t.after(watcher.unsubscribe);

	const socket = await openSocket(port);
	let received = "";
	socket.setEncoding("utf8");
	const sawDeltas = new Promise((resolve) => {
		socket.on("data", (d) => {
			received += d;
			if ((received.match(/"type":"text-delta"/g) ?? []).length >= 3) resolve();
		});
	});
	socket.write(rawRequest("POST", "/sessions/chat-k/chat", { headers: { "content-type": "application/json" }, body: JSON.stringify({ text: "/stream 60 20" }) }));
	await within(sawDeltas, 5000, "the first chat deltas");
	assert.match(received, /x-vercel-ai-ui-message-stream: v1/i);
	socket.destroy();

	await waitFor(() => watcher.events.some((e) => e.type === "message_complete"), "the run to complete", 10000);
	const done = watcher.events.find((e) => e.type === "message_complete");
	assert.match(done.text, /t59@/, "the run went on to its last token");
	await waitFor(() => rt.getSession("chat-k")?.processing === false, "the session to be idle", 3000);
	const next = await api(base, "POST", "/sessions/chat-k/messages", { body: { text: "/instant" } });
	assert.equal(next.status, 200);
	assert.deepEqual(bodyWithRunId(next), { ok: true, response: "ok", sessionKey: "chat-k" });
});

test("a client that disconnects mid-upload creates nothing and runs nothing", async (t) => {
	const factory = createDoubleFactory();
	const primary = createDouble("main");
	const { rt, port, base } = await startGateway({ t, primarySession: primary, createSession: factory });
	const before = JSON.stringify(rt.listSessions());

	for (const [path, head] of [
		["/sessions/up-k/messages", { "content-type": "application/json", "content-length": "1000" }],
		["/sessions/main/messages", { "content-type": "application/json", "content-length": "1000" }],
		["/sessions/up-c/chat", { "content-type": "application/json", "transfer-encoding": "chunked" }],
	]) {
		const socket = await openSocket(port);
		const closed = new Promise((r) => socket.on("close", r));
		socket.on("error", () => {});
		socket.write(rawRequest("POST", path, { headers: head }));
		socket.write(head["transfer-encoding"] ? '9\r\n{"text":"' : '{"text":"h');
		await sleep(50);
		socket.destroy();
		await closed;
	}
	await sleep(300);
	assert.equal(factory.created.length, 0, "no session created");
	assert.equal(primary.calls.prompt, 0, "nothing ran");
	assert.equal(JSON.stringify(rt.listSessions()), before);
	assert.equal((await api(base, "GET", "/health")).status, 200);
	await othersStillAnswer(base);
});

test("a client that is slow to send its headers is disconnected after limits.headerTimeoutMs", async (t) => {
	const { port, base } = await startGateway({
		t,
		config: baseConfig({ limits: { headerTimeoutMs: 300 } }),
		primarySession: createDouble("main"),
		createSession: createDoubleFactory(),
	});
	// A partial head, then silence; and a slowloris that dribbles one byte every 100 ms.
	const silent = await openSocket(port);
	const dribbler = await openSocket(port);
	let dribbleTimer;
	const closedAfter = (socket) =>
		new Promise((resolve) => {
			const t0 = Date.now();
			let bytes = 0;
			socket.on("data", (d) => (bytes += d.length));
			socket.on("error", () => {});
			socket.on("close", () => resolve({ ms: Date.now() - t0, bytes }));
		});
	const silentClosed = closedAfter(silent);
	const dribbleClosed = closedAfter(dribbler);
	silent.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
	const slow = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + "a".repeat(200);
	let i = 0;
	dribbleTimer = setInterval(() => {
		if (!dribbler.destroyed && i < slow.length) dribbler.write(slow[i++]);
	}, 100);
	t.after(() => clearInterval(dribbleTimer));

	const s = await within(silentClosed, 5000, "the silent client to be dropped");
	const d = await within(dribbleClosed, 5000, "the dribbling client to be dropped (20 s of dribble left)");
	clearInterval(dribbleTimer);
	assert.ok(s.ms >= 200, `silent client dropped after ${s.ms} ms`);
	assert.ok(d.ms < 4000, `dribbler dropped after ${d.ms} ms`);
	// hyper closes without a response (no 408): nothing was written.
	assert.equal(s.bytes, 0);
	assert.equal(d.bytes, 0);
	assert.equal((await api(base, "GET", "/health")).status, 200);
});

test("idle connections are capped at limits.maxConnections plus limits.reserveConnections: the reserve answers only /health, past it new connections are closed, and room returns when some close", async (t) => {
	const primary = createDouble("main");
	const { port, base } = await startGateway({
		t,
		config: baseConfig({ limits: { maxConnections: 50, reserveConnections: 1, headerTimeoutMs: 30000 } }),
		primarySession: primary,
		createSession: createDoubleFactory(),
	});
	const rssBefore = rss();
	const sockets = [];
	t.after(() => sockets.forEach((s) => s.destroy()));
	for (let i = 0; i < 50; i++) {
		const s = await openSocket(port);
		s.on("error", () => {});
		sockets.push(s);
	}
	await sleep(300); // let the accept loop take all 50

	// The 51st connection lands in the reserve (keep-alive off): GET /health answers and the
	// connection closes after it.
	const health = await rawExchange(port, rawRequest("GET", "/health"), { timeoutMs: 3000 });
	assert.equal(health.responses[0]?.status, 200, `a reserve connection is served /health; raw: ${JSON.stringify(health.raw.toString())}`);
	assert.deepEqual(JSON.parse(health.responses[0].body), { ok: true, ready: true });
	assert.equal(health.responses[0].headers.connection, "close", "no keep-alive in the reserve");

	// Anything else on a reserve connection is 503 Too many connections with Retry-After, and runs nothing.
	const busy = await waitFor(
		async () => {
			const r = await rawExchange(port, rawRequest("POST", "/sessions/main/messages", { headers: { "Content-Type": "application/json" }, body: '{"text":"hi"}' }), { timeoutMs: 2000 });
			return r.responses.length ? r : null; // the last reserve connection may still be closing
		},
		"a reserve connection to answer the message",
		5000,
		50,
	);
	assert.equal(busy.responses[0].status, 503, busy.raw.toString());
	assert.equal(busy.responses[0].headers["retry-after"], "1");
	assert.equal(busy.responses[0].headers["content-type"], "application/json; charset=utf-8");
	assert.deepEqual(JSON.parse(busy.responses[0].body), { error: "Too many connections" });
	assert.equal(primary.calls.prompt, 0, "a reserve connection runs nothing");

	// With the reserve held by an idle connection, the next one is closed at accept, unanswered.
	await sleep(100); // let the reserve connections above finish closing on the server
	const reserveHolder = await openSocket(port);
	reserveHolder.on("error", () => {});
	sockets.push(reserveHolder);
	await sleep(100);
	const refused = await rawExchange(port, rawRequest("GET", "/health"), { timeoutMs: 3000 });
	assert.equal(refused.responses.length, 0, "a connection past the cap and the reserve must not be served");
	assert.equal(refused.closed, true, "it is closed by the server, not left hanging");
	assert.ok(sockets.slice(0, 50).every((s) => !s.destroyed), "the 50 idle connections stay open");

	for (const s of sockets.splice(0, 10)) s.destroy();
	const served = await waitFor(
		async () => {
			const r = await rawExchange(port, rawRequest("GET", "/health"), { timeoutMs: 2000 });
			return r.responses[0]?.status === 200 ? r : null;
		},
		"/health to answer once connections closed",
		5000,
		100,
	);
	assert.equal(JSON.parse(served.responses[0].body).ok, true);
	// 50 idle connections cost little: the process (which hosts the gateway) stays within 32 MiB of where it was.
	const grown = rss() - rssBefore;
	assert.ok(grown < 32 * MiB, `RSS grew by ${(grown / MiB).toFixed(1)} MiB`);
	for (const s of sockets.splice(0)) s.destroy();
	await sleep(100);
	await othersStillAnswer(base);
});

test("a 413 reaches a client that already sent a body far past the limit (no connection reset)", async (t) => {
	const { base } = await startGateway({
		t,
		config: baseConfig({ limits: { maxBodyBytes: 64 * 1024 } }),
		primarySession: createDouble("main"),
		createSession: createDoubleFactory(),
	});
	// A client (undici's fetch here) sends the whole body before it reads the answer. If the
	// gateway closes the socket with the rest of the body unread, the kernel resets the
	// connection and the 413 is lost (EPIPE / ECONNRESET). 4 MiB is far past the socket buffers.
	const body = JSON.stringify({ text: "x".repeat(4 * MiB) });
	const outcomes = [];
	for (let i = 0; i < 10; i++) {
		try {
			const res = await fetch(`${base}/sessions/main/messages`, { method: "POST", headers: { "content-type": "application/json" }, body });
			outcomes.push(String(res.status));
			await res.text();
		} catch (e) {
			outcomes.push(`network error: ${e.cause?.code ?? e.message}`);
		}
	}
	assert.deepEqual(outcomes, Array(10).fill("413"), `a fetch of a 4 MiB body against a 64 KiB limit got: ${outcomes.join(", ")}`);
	await othersStillAnswer(base);
});

test("an SSE reader that never reads is cut off while the others get every event, and the gateway's memory stays bounded", async (t) => {
	// The gateway runs in a child process so its RSS can be watched apart from the readers'.
	const BUFFER = 32;
	const child = spawn(process.execPath, [fileURLToPath(new URL("./support/rel-child-gateway.mjs", import.meta.url))], {
		env: {
			...process.env,
			REL_CONFIG: JSON.stringify(baseConfig({ sse: { bufferEvents: BUFFER, heartbeatMs: 60000 } })),
		},
		stdio: ["pipe", "pipe", "inherit"],
	});
	t.after(() => child.kill("SIGKILL"));
	const port = await within(
		new Promise((resolve, reject) => {
			let out = "";
			child.stdout.on("data", (d) => {
				out += d;
				const m = /PORT (\d+)/.exec(out);
				if (m) resolve(Number(m[1]));
			});
			child.on("exit", (code) => reject(new Error(`child exited ${code}`)));
		}),
		15000,
		"the child gateway",
	);
	const base = `http://127.0.0.1:${port}`;
	const childRss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))[1]) * 1024;

	// Warm up (allocator, JIT), then the baseline.
	for (let i = 0; i < 3; i++) await api(base, "POST", "/sessions/big/messages", { body: { text: "/big 20 262144" } });
	const baseline = childRss();

	// The stalled reader: takes its hello, then never reads again.
	const stalled = await rawSse(port, "/sessions/big/events");
	stalled.socket.pause();
	// The healthy reader: counts bytes, keeps nothing. Its stream must not end before the run's.
	const healthy = await openSocket(port);
	let healthyBytes = 0;
	let tail = "";
	const healthyDone = new Promise((resolve, reject) => {
		healthy.on("data", (d) => {
			healthyBytes += d.length;
			const s = tail + d.toString("latin1", Math.max(0, d.length - 4096));
			if (s.includes('"type":"message_complete"')) resolve();
			else if (s.endsWith("\r\n0\r\n\r\n")) reject(new Error(`the healthy reader's stream was ended after ${healthyBytes} bytes`));
			tail = s.slice(-64);
		});
	});
	healthy.write(rawRequest("GET", "/sessions/big/events"));

	let peak = baseline;
	const sampler = setInterval(() => {
		try {
			peak = Math.max(peak, childRss());
		} catch {}
	}, 25);
	t.after(() => clearInterval(sampler));

	// 400 × 256 KiB = 100 MiB through the session, one event every 4 ms (~64 MiB/s): a pace
	// the healthy reader keeps up with even on a loaded machine, given BUFFER frames of slack.
	const N = 400;
	const SIZE = 256 * 1024;
	const r = await within(api(base, "POST", "/sessions/big/messages", { body: { text: `/big ${N} ${SIZE} 4` } }), 30000, "the big run");
	assert.equal(r.status, 200, r.text);
	await within(healthyDone, 20000, "the healthy reader to see the end of the run");
	clearInterval(sampler);
	peak = Math.max(peak, childRss());
	assert.ok(healthyBytes >= N * SIZE, `the healthy reader got ${healthyBytes} bytes, less than the ${N * SIZE} sent`);

	// The stalled reader was cut off: once it reads again, it finds the end of its stream,
	// having missed most of the run.
	let stalledBytes = 0;
	let stalledTail = "";
	const stalledEnd = new Promise((resolve) => {
		stalled.socket.removeAllListeners("data");
		stalled.socket.on("data", (d) => {
			stalledBytes += d.length;
			stalledTail = (stalledTail + d.toString("latin1", Math.max(0, d.length - 64))).slice(-64);
			if (stalledTail.endsWith("\r\n0\r\n\r\n")) resolve("ended");
		});
		stalled.socket.on("close", () => resolve("closed"));
	});
	stalled.socket.resume();
	const how = await within(stalledEnd, 10000, "the stalled reader's stream to end");
	assert.ok(["ended", "closed"].includes(how));
	assert.ok(stalledBytes < (N * SIZE) / 2, `the stalled reader still got ${stalledBytes} bytes`);

	const grown = peak - baseline;
	// Unbounded buffering for the stalled reader would hold ~100 MiB. Bounded: BUFFER frames
	// of 256 KiB (8 MiB), socket buffers, the frames in flight to the healthy reader and
	// allocator slack — well under 48 MiB.
	t.diagnostic(`child RSS grew by ${(grown / MiB).toFixed(1)} MiB; stalled reader got ${(stalledBytes / MiB).toFixed(1)} MiB`);
	assert.ok(grown < 48 * MiB, `the gateway's RSS grew by ${(grown / MiB).toFixed(1)} MiB while a reader stalled`);
	healthy.destroy();
	stalled.socket.destroy();
	const after = await api(base, "POST", "/sessions/other/messages", { body: { text: "still here" } });
	assert.deepEqual(bodyWithRunId(after), { ok: true, response: "echo:still here", sessionKey: "other" });
});

// ------------------------------------------------------------------ panics

test("a panic inside a request handler becomes a 500 and the process keeps answering", async (t) => {
	const token = "panic-token";
	process.env.PI_GATEWAY_TEST_PANIC_ROUTE = "1";
	let gw;
	try {
		gw = await startGateway({
			t,
			config: baseConfig({ bearerToken: token }),
			primarySession: createDouble("main"),
			createSession: createDoubleFactory(),
		});
	} finally {
		delete process.env.PI_GATEWAY_TEST_PANIC_ROUTE;
	}
	const { base, port, logs } = gw;

	const unauth = await api(base, "GET", "/__test/panic");
	assert.equal(unauth.status, 401, "the panic route needs the token like any other");
	for (let i = 0; i < 5; i++) {
		const r = await api(base, "GET", "/__test/panic", { token });
		assert.equal(r.status, 500);
		assert.equal(r.text, '{"error":"Internal server error"}');
		assert.match(r.headers.get("content-type"), /application\/json/);
	}
	// The connection that saw the panic goes on serving: panic, then /health, pipelined.
	const pipelined = await rawExchange(
		port,
		Buffer.concat([
			rawRequest("GET", "/__test/panic", { headers: { Authorization: `Bearer ${token}` } }),
			rawRequest("GET", "/health"),
		]),
		{ expect: 2 },
	);
	assert.deepEqual(
		pipelined.responses.map((r) => r.status),
		[500, 200],
	);
	assert.ok(logs.some((l) => /panicked/.test(l)), "the panic is logged");
	await othersStillAnswer(base, { token });

	// Without the env var at start, the route does not exist.
	const plain = await startGateway({
		t,
		config: baseConfig({ bearerToken: token }),
		primarySession: createDouble("main"),
		createSession: createDoubleFactory(),
	});
	const nf = await api(plain.base, "GET", "/__test/panic", { token });
	assert.equal(nf.status, 404);
	assert.deepEqual(nf.body, { error: "Not found" });
});
