// GET /sessions/:key/events (SPEC §5): headers, hello first, frame ids, fan-out order, the
// per-subscriber bound (a reader that stops reading is dropped; the others get everything),
// no subscriber left behind by clients that come and go, heartbeats, and stop() ending
// streams promptly.
//
// Run: node --test __test__/sse.test.mjs

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { EventSource } from "eventsource";
import { BigStreamSession, createScriptedFactory } from "./support/sessions.mjs";
import { startGateway } from "./support/gateway.mjs";
import { JSON_TYPE, rawConnect, request } from "./support/http.mjs";
import { openSse, parseSse, rawSse } from "./support/sse.mjs";
import { waitUntil } from "./support/wait.mjs";
import { assertNoRunIdOn, assertRunFrames, bodyWithRunId } from "./support/runs.mjs";

/** Collects every message of an EventSource as {id, data}. */
function collect(es) {
	const messages = [];
	es.onmessage = (e) => messages.push({ id: Number(e.lastEventId), data: JSON.parse(e.data) });
	return messages;
}

describe("the event stream", { timeout: 50000 }, () => {
	test("a stream has the SSE headers, starts with retry and hello, and every frame carries a strictly increasing id", async (t) => {
		const gw = await startGateway();
		t.after(() => gw.stop());
		const sse = await openSse(gw.port, "/sessions/ids/events");
		t.after(() => sse.close());
		assert.equal(sse.status, 200);
		assert.equal(sse.headers["content-type"], "text/event-stream");
		assert.equal(sse.headers["cache-control"], "no-cache, no-transform");
		// The connection header as an ordinary keep-alive HTTP/1.1 client sees it (node:http
		// without an agent asks for Connection: close, which hyper then adds to the header).
		const raw = await rawSse(gw.port, "/sessions/ids/events");
		t.after(() => raw.destroy());
		const head = raw.data.slice(0, raw.data.indexOf("\r\n\r\n")).toLowerCase();
		assert.match(head, /^http\/1\.1 200/);
		assert.match(head, /\r\ncontent-type: text\/event-stream\r\n/);
		assert.match(head, /\r\ncache-control: no-cache, no-transform\r\n/);
		assert.match(head, /\r\nconnection: keep-alive\r\n/);
		const hello = await sse.waitFor((f) => f.data !== undefined);
		assert.equal(hello.data.type, "hello");
		assert.deepEqual(Object.keys(hello.data).sort(), ["sessionKey", "snapshot", "type"]);
		assert.equal(hello.data.snapshot.sessionKey, "ids");
		// SPEC §10: the stream starts with `retry: 2000`, then hello, whose id is the last id
		// already in the session's log (no id of its own).
		assert.ok(sse.raw.startsWith("retry: 2000\n\n"), JSON.stringify(sse.raw.slice(0, 80)));
		assert.equal(sse.frames[0].retry, 2000);
		assert.equal(sse.frames[1], hello);

		const runIds = [];
		for (const text of ["/stream 50", "/thinking", "/tool", "/error nope"]) {
			const res = await request(gw.port, "POST", "/sessions/ids/messages", { body: { text } });
			assert.ok(res.status === 200 || text.startsWith("/error"), `${text}: ${res.status}`);
			bodyWithRunId(res, text);
			runIds.push(res.json.runId);
		}
		assert.equal(new Set(runIds).size, 4, "one run id per message");
		// The last run (the model error) ends with an error event, then a session_state.
		const error = await sse.waitFor((f) => f.data?.type === "error", 15000);
		await sse.waitFor((f) => f.id > error.id && f.data?.type === "session_state" && !f.data.snapshot.processing, 15000);

		// Every frame of the raw stream: data frames carry an id, ids strictly increase.
		const { frames } = parseSse(sse.raw);
		const data = frames.filter((f) => f.data !== undefined);
		assert.equal(data[0].data.type, "hello");
		for (const f of data) assert.ok(Number.isInteger(f.id) && f.id > 0, `frame without an id: ${JSON.stringify(f)}`);
		for (let i = 1; i < data.length; i++) {
			assert.ok(data[i].id > data[i - 1].id, `id ${data[i].id} after ${data[i - 1].id}`);
		}
		for (const f of data) assert.equal(f.data.sessionKey, "ids");
		// hello's id is the last one already logged: the next frame (whatever it is) is newer.
		assert.ok(data[1].id > hello.id);
		// A second subscriber's hello now takes the id of the last frame logged.
		const late = await openSse(gw.port, "/sessions/ids/events");
		t.after(() => late.close());
		const lateHello = await late.waitFor((f) => f.data?.type === "hello");
		assert.ok(late.raw.startsWith("retry: 2000\n\n"));
		assert.equal(lateHello.id, data.at(-1).id, "hello's id is the last id in the log");

		// Each run: run_start, session_state (processing), its events with its runId, error if
		// so, run_end, session_state (idle).
		const events = data.map((f) => f.data);
		assertNoRunIdOn(events);
		runIds.forEach((runId, i) => assertRunFrames(events, runId, { status: i === 3 ? "failed" : "succeeded" }));
		const runEnd = events.find((e) => e.type === "run_end" && e.runId === runIds[3]);
		assert.deepEqual(runEnd, { type: "run_end", sessionKey: "ids", runId: runIds[3], status: "failed", error: "nope" });
		assert.equal(error.data.runId, runIds[3]);

		const types = data.map((f) => f.data.type);
		const tokens = data.filter((f) => f.data.type === "token");
		assert.ok(tokens.length >= 50 + 1 + 1, "tokens of /stream, /thinking and /tool");
		const streamTokens = tokens.slice(0, 50).map((f) => f.data.delta);
		assert.ok(streamTokens.every((d, i) => d.startsWith(`t${i}@`)), "the 50 stream tokens in order");
		for (const type of ["run_start", "run_end", "session_state", "turn_start", "turn_end", "message_start", "message_complete", "thinking", "tool_start", "tool_update", "tool_complete", "error"]) {
			assert.ok(types.includes(type), `no ${type} event in ${types.join(",")}`);
		}
		assert.equal(error.data.error, "nope");
	});

	test("two subscribers see the same events in the same order with the same ids", async (t) => {
		const gw = await startGateway();
		t.after(() => gw.stop());
		const url = `${gw.base}/sessions/fan/events`;
		const a = new EventSource(url);
		const b = new EventSource(url);
		t.after(() => {
			a.close();
			b.close();
		});
		const ma = collect(a);
		const mb = collect(b);
		await waitUntil(() => ma.length > 0 && mb.length > 0, { message: "both hellos" });
		assert.equal(ma[0].data.type, "hello");
		assert.equal(mb[0].data.type, "hello");
		const after = Math.max(ma[0].id, mb[0].id);

		// Two runs back to back: a long token stream and a tool run.
		const runs = [
			request(gw.port, "POST", "/sessions/fan/messages", { body: { text: "/stream 300" } }),
			request(gw.port, "POST", "/sessions/fan/messages", { body: { text: "/tool" } }),
		];
		const results = await Promise.all(runs);
		assert.deepEqual(
			results.map((r) => r.status),
			[200, 200],
		);
		const done = (list) =>
			list.filter((m) => m.data.type === "message_complete").length >= 3 &&
			list.some((m) => m.id > after && m.data.type === "session_state" && m.data.snapshot.messageCount === 6 && !m.data.snapshot.processing);
		await waitUntil(() => done(ma) && done(mb), { timeoutMs: 15000, message: "both subscribers to see both runs end" });
		await delay(100);
		const sa = ma.filter((m) => m.id > after);
		const sb = mb.filter((m) => m.id > after);
		assert.ok(sa.filter((m) => m.data.type === "token").length === 301, "300 stream tokens and the tool run's reply");
		assert.equal(sa.length, sb.length);
		assert.deepEqual(sa, sb);
	});

	test("a reader that never reads is disconnected while a normal reader receives everything", async (t) => {
		const COUNT = 256;
		const SIZE = 64 * 1024; // 16 MiB in all: far more than the socket buffers hold
		const big = new BigStreamSession({ count: COUNT, size: SIZE, intervalMs: 4 });
		const scripted = createScriptedFactory();
		const gw = await startGateway({
			config: { sse: { bufferEvents: 16 } },
			createSession: async (key) => (key === "big" ? big : scripted(key)),
		});
		t.after(() => gw.stop());

		const normal = await openSse(gw.port, "/sessions/big/events");
		t.after(() => normal.close());
		await normal.waitFor((f) => f.data?.type === "hello");
		const slow = await rawSse(gw.port, "/sessions/big/events");
		t.after(() => slow.destroy());
		// From now on the slow reader reads nothing: the kernel buffers fill, then the gateway's.
		slow.socket.pause();
		const slowBefore = slow.data.length;

		const res = await request(gw.port, "POST", "/sessions/big/messages", { body: { text: "go" }, timeoutMs: 40000 });
		assert.equal(res.status, 200, res.text);
		assert.deepEqual(bodyWithRunId(res), { ok: true, response: "done", sessionKey: "big" });
		await normal.waitFor((f) => f.data?.type === "message_complete", 20000);
		const tokens = normal.events().filter((f) => f.data.type === "token");
		assert.equal(tokens.length, COUNT, "the normal reader missed tokens");
		tokens.forEach((f, i) => {
			assert.equal(f.data.delta.length, SIZE);
			assert.ok(f.data.delta.startsWith(`b${i};`), `token ${i} out of order`);
		});
		assert.equal(normal.isEnded, false, "the normal reader's stream must stay open");
		assert.ok(slow.data.length - slowBefore < 1024, "the paused reader read nothing meanwhile");

		// Let the slow reader read again: it gets what was buffered for it, then its stream
		// ends (the chunked terminator, or the connection closes) without the rest.
		slow.socket.resume();
		await slow.waitForData((d) => d.endsWith("\r\n0\r\n\r\n") || slow.isClosed, 20000).catch((e) => {
			throw new Error(`the slow reader was not disconnected: ${e.message}`);
		});
		const slowText = slow.data.slice(slow.data.indexOf("\r\n\r\n") + 4);
		assert.ok(!slowText.includes('"type":"message_complete"'), "the slow reader received the whole run");
		const slowTokens = (slowText.match(/"type":"token"/g) ?? []).length;
		assert.ok(slowTokens < COUNT, `the slow reader received ${slowTokens} of ${COUNT} tokens`);

		// The normal reader is still subscribed: the next run reaches it.
		big.count = 3;
		big.size = 10;
		const again = await request(gw.port, "POST", "/sessions/big/messages", { body: { text: "again" } });
		assert.equal(again.status, 200);
		await normal.waitFor((f) => f.data?.type === "token" && f.data.delta.startsWith("b2;") && f.data.delta.length === 10);
	});

	test("1,000 connect/disconnect cycles leave no subscriber behind: the session is then evicted", async (t) => {
		const gw = await startGateway({ config: { session: { idleMinutes: 0.005, sweepIntervalMs: 50 } } });
		t.after(() => gw.stop());
		const key = "cycle";
		const CYCLES = 1000;
		const PARALLEL = 10;
		for (let done = 0; done < CYCLES; done += PARALLEL) {
			await Promise.all(
				Array.from({ length: PARALLEL }, async () => {
					const conn = await rawSse(gw.port, `/sessions/${key}/events`);
					conn.destroy();
					await conn.closed;
				}),
			);
		}
		// idleMinutes 0.005 = 300 ms; swept every 50 ms; only a session without subscribers goes.
		await waitUntil(() => gw.rt.getSession(key) === undefined, {
			timeoutMs: 10000,
			message: "the cycled session to be evicted (a leaked subscriber keeps it)",
		});
		assert.equal([...gw.live].filter((s) => s.sessionKey === key).length, 0, "an evicted session was not disposed");
		assert.ok(gw.logs.some((m) => m.includes(`evicted idle session ${key}`)));

		// The control: while one client stays connected, the session is not evicted.
		const stay = await openSse(gw.port, `/sessions/${key}/events`);
		try {
			await stay.waitFor((f) => f.data?.type === "hello");
			await delay(1000);
			assert.ok(gw.rt.getSession(key), "a subscribed session was evicted");
		} finally {
			stay.close();
		}
		await waitUntil(() => gw.rt.getSession(key) === undefined, { timeoutMs: 10000, message: "eviction after the last client left" });
	});

	test("a client that leaves before its session exists leaves no subscriber behind", async (t) => {
		const scripted = createScriptedFactory();
		let created = 0;
		const gw = await startGateway({
			config: { session: { idleMinutes: 0.005, sweepIntervalMs: 50 } },
			createSession: async (key) => {
				if (key.startsWith("slow")) await delay(500);
				created++;
				return scripted(key);
			},
		});
		t.after(() => gw.stop());
		const conn = await rawConnect(gw.port);
		await conn.write("GET /sessions/slow-1/events HTTP/1.1\r\nHost: localhost\r\n\r\n");
		await delay(100);
		conn.destroy();
		await waitUntil(() => created === 1, { message: "the slow creation to finish" });
		// Created after its client left, then idle: it must be evicted like any idle session.
		await waitUntil(() => gw.rt.getSession("slow-1") === undefined && scripted.live.size === 0, {
			timeoutMs: 10000,
			message: "the session whose client left early to be evicted and disposed",
		});
		const health = await request(gw.port, "GET", "/health");
		assert.equal(health.status, 200);
	});

	test("a heartbeat comment ': ping' arrives on an idle stream every sse.heartbeatMs", async (t) => {
		const gw = await startGateway({ config: { sse: { heartbeatMs: 100 } } });
		t.after(() => gw.stop());
		const sse = await openSse(gw.port, "/sessions/main/events");
		t.after(() => sse.close());
		await sse.waitFor((f) => f.data?.type === "hello");
		await sse.waitFor((f) => f.comment === "ping", 5000);
		await waitUntil(() => sse.frames.filter((f) => f.comment === "ping").length >= 3, { timeoutMs: 5000, message: "three pings" });
		assert.match(sse.raw, /\n: ping\n\n/);
		assert.equal(sse.isEnded, false);
	});

	test("a failing createSession under /events ends the stream with an error event, and the process lives", async (t) => {
		const gw = await startGateway({ sessionOptions: { failKey: /^bad/ } });
		t.after(() => gw.stop());
		const sse = await openSse(gw.port, "/sessions/bad-1/events");
		t.after(() => sse.close());
		assert.equal(sse.status, 200);
		assert.equal(sse.headers["content-type"], "text/event-stream");
		const how = await Promise.race([sse.ended, delay(10000, "timeout", { ref: false })]);
		assert.notEqual(how, "timeout", "the stream did not end");
		const events = sse.events();
		assert.equal(events.length, 1, sse.raw);
		assert.equal(events[0].data.type, "error");
		assert.equal(events[0].data.sessionKey, "bad-1");
		assert.match(events[0].data.error, /scripted createSession failure: bad-1/);
		assert.equal(gw.rt.getSession("bad-1"), undefined);
		const health = await request(gw.port, "GET", "/health");
		assert.equal(health.status, 200);
		const list = await request(gw.port, "GET", "/sessions");
		assert.equal(list.headers["content-type"], JSON_TYPE);
		assert.ok(!list.json.sessions.some((s) => s.sessionKey === "bad-1"));
	});

	test("a subscriber of a reset session is never left silent", async (t) => {
		const gw = await startGateway();
		t.after(() => gw.stop());
		// A non-primary session: its stream ends, or it carries the new session's events.
		const other = await openSse(gw.port, "/sessions/rs/events");
		t.after(() => other.close());
		await other.waitFor((f) => f.data?.type === "hello");
		const reset = await request(gw.port, "POST", "/sessions/rs/reset");
		assert.deepEqual(reset.json, { ok: true });
		const msg = await request(gw.port, "POST", "/sessions/rs/messages", { body: { text: "hi" } });
		assert.equal(msg.status, 200);
		const outcome = await Promise.race([
			other.ended.then(() => "ended"),
			other.waitFor((f) => f.data?.type === "message_complete", 10000).then(() => "continued"),
		]);
		assert.ok(outcome === "ended" || outcome === "continued");
		// The primary session: renewed in place, its subscriber keeps receiving.
		const main = await openSse(gw.port, "/sessions/main/events");
		t.after(() => main.close());
		const hello = await main.waitFor((f) => f.data?.type === "hello");
		const oldId = hello.data.snapshot.sessionId;
		assert.deepEqual((await request(gw.port, "POST", "/sessions/main/reset")).json, { ok: true });
		await main.waitFor((f) => f.data?.type === "session_state" && f.data.snapshot.sessionId !== oldId);
		await request(gw.port, "POST", "/sessions/main/messages", { body: { text: "after reset" } });
		const complete = await main.waitFor((f) => f.data?.type === "message_complete");
		assert.equal(complete.data.text, "ok");
		assert.equal(main.isEnded, false);
	});

	test("stop() ends every stream, answers pending messages and returns promptly", async () => {
		// shutdownTimeoutMs is long on purpose: stop() must not merely wait for it to expire.
		const gw = await startGateway({ config: { shutdownTimeoutMs: 10000 } });
		let stopped = false;
		const streams = [];
		const es = new EventSource(`${gw.base}/sessions/main/events`);
		try {
			const esMessages = collect(es);
			streams.push(await openSse(gw.port, "/sessions/main/events"));
			streams.push(await openSse(gw.port, "/sessions/other/events"));
			const raw = await rawSse(gw.port, "/sessions/third/events");
			for (const s of streams) await s.waitFor((f) => f.data?.type === "hello");
			await waitUntil(() => esMessages.length > 0, { message: "the EventSource hello" });
			// A run that waits 60 s before its second token, and one message queued behind it.
			// (The second is sent once the first runs: two connections do not keep their order.)
			const pending = [request(gw.port, "POST", "/sessions/other/messages", { body: { text: "/stream 2 60000" } })];
			await waitUntil(() => gw.rt.getSession("other")?.processing, { message: "the long run to start" });
			pending.push(request(gw.port, "POST", "/sessions/other/messages", { body: { text: "queued" } }));
			await waitUntil(() => gw.rt.getSession("other")?.queueDepth === 1, { message: "a running and a queued message" });

			const started = Date.now();
			await gw.stop();
			stopped = true;
			const took = Date.now() - started;
			assert.ok(took < 5000, `stop() took ${took} ms with clients connected`);

			for (const s of streams) {
				const how = await Promise.race([s.ended, delay(5000, "timeout", { ref: false })]);
				assert.notEqual(how, "timeout", "a stream was left open after stop()");
			}
			await Promise.race([raw.closed, raw.waitForData((d) => d.endsWith("\r\n0\r\n\r\n"), 5000)]);
			raw.destroy();
			const results = await Promise.all(pending);
			for (const r of results) {
				assert.equal(r.json.ok, false, r.text);
				assert.equal(r.json.sessionKey, "other");
				assert.equal(typeof r.json.error, "string");
				// Both were accepted (one running, one queued): each is a run.
				bodyWithRunId(r);
			}
			assert.ok(results.some((r) => r.json.error === "Gateway stopped"), JSON.stringify(results.map((r) => r.json)));
			// The port is closed.
			await assert.rejects(request(gw.port, "GET", "/health", { timeoutMs: 3000 }), /ECONNREFUSED|ECONNRESET|socket hang up/);
		} finally {
			es.close();
			for (const s of streams) s.close();
			if (!stopped) await gw.stop();
		}
	});
});
