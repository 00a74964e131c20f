// The replayable event log (issue 12, SPEC §10): a subscriber that drops and reconnects with
// `Last-Event-ID` (or `?after=`) gets exactly what it missed, no gap and no duplicate — in the
// middle of a long answer of a REAL pi AgentSession (faux model), on the primary and on other
// keys, across a reset; the `eventsource` package's own automatic reconnect; `retry: 2000`;
// hello's id; a log cut short (`missed: true`); the log's memory bound over a 100,000-event run;
// `addSubscriber(key, listener, { after })`; and run_start / run_end / runId on the stream.
//
// hello's `id:`: on a plain connect, the newest id in the log; on a resume (`Last-Event-ID` /
// `?after=n`), n — or, when frames after n were dropped (`missed: true`), the newest dropped id —
// so that a client that drops right after hello and reconnects with its id misses nothing.
//
// Run: npm test -- __test__/replay.test.mjs

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { describe, test } from "node:test";
import { EventSource } from "eventsource";
import { fauxLongText } from "../lib/faux-agent.js";
import { startGateway, suiteChatGateway } from "./support/gateway.mjs";
import { JSON_TYPE, request } from "./support/http.mjs";
import { getGc, MiB, rss, settleMemory } from "./support/rel-util.mjs";
import { afterHello, answerOf, assertIncreasing, ranToEnd, RETRY_PREFIX, subscribe, tokensOf } from "./support/replay-util.mjs";
import { getRun, RUN_CAUSED, submit, UUID_V7 } from "./support/runs.mjs";
import { openSse } from "./support/sse.mjs";
import { sleep, waitFor } from "./support/wait.mjs";

/** The id of the last data frame a stream (or a list of {id}) has received. */
function lastId(source) {
	const frames = Array.isArray(source) ? source : source.events();
	return frames.at(-1)?.id;
}

/** Waits until two streams have received the same last frame (both caught up). */
async function caughtUp(a, b, what) {
	await waitFor(() => lastId(a) === lastId(b), `${what}: both streams at the same last id`);
}

/**
 * Waits (up to 3 s, without failing) until `sse` has received a frame with id `id`, then a little
 * longer, so that a frame too many would have arrived too. The caller's deepEqual says what is wrong.
 */
async function settle(sse, id) {
	const deadline = Date.now() + 3000;
	while (Date.now() < deadline && !sse.events().some((f) => f.id === id)) await sleep(10);
	await sleep(150);
}

/** Fails unless `frames` are `reference`, compared by their ids first (a gap or a duplicate), then whole. */
function assertSameFrames(frames, reference, idsMessage, framesMessage) {
	assert.deepEqual(
		frames.map((f) => f.id),
		reference.map((f) => f.id),
		idsMessage,
	);
	assert.deepEqual(frames, reference, framesMessage);
}

/** Submits `text` on `key` and waits until subscriber `A` has seen its run end, and a little longer. Returns the runId. */
async function runToEnd(gw, A, key, text, what = "the run to end") {
	const runId = await submit(gw.port, key, text);
	await waitFor(() => ranToEnd(A.sse.frames, runId), what);
	await sleep(100);
	return runId;
}

/**
 * Adds a JS subscriber of `key` (`addSubscriber`, resuming after `after` when given) that collects
 * `{id, data}` into `got`; unsubscribed when test `t` ends. Given `last`, waits (up to 3 s, without
 * failing) until `got` holds that id, then `settleMs` longer. Returns `{got, unsubscribe}`.
 */
async function collectSubscriber(t, gw, key, { after, last, settleMs = 150 } = {}) {
	const got = [];
	const listener = (event, id) => got.push({ id, data: event });
	const unsubscribe = await (after === undefined ? gw.rt.addSubscriber(key, listener) : gw.rt.addSubscriber(key, listener, { after }));
	t.after(() => unsubscribe());
	if (last !== undefined) {
		await waitFor(() => got.some((e) => e.id === last), "addSubscriber to replay the log", 3000).catch(() => {});
		await sleep(settleMs);
	}
	return { got, unsubscribe };
}

// ---------------------------------------------------------------------------------------------
// Reconnecting in the middle of a long answer of a real AgentSession

describe("reconnect with Last-Event-ID in the middle of a long answer (real AgentSession, faux model)", { timeout: 120_000 }, () => {
	// /slow N: N text_delta events (one 4-character word each) at 100 a second.
	const gw = suiteChatGateway({ faux: { slowTokensPerSecond: 100 } });

	/**
	 * The first half of every reconnect here: A subscribes and stays; B1 subscribes; the run of
	 * `text` starts; B1 reads 40 of its tokens and disconnects; A reads `more` tokens more while B
	 * is away (`what`). Returns `{A, B1, runId, first (B1's frames after hello), lastSeen (its last id)}`.
	 */
	async function dropMidAnswer(t, key, text, more, what) {
		const A = await subscribe(gw.port, key, { t });
		const B1 = await subscribe(gw.port, key, { t });
		const runId = await submit(gw.port, key, text);

		await waitFor(() => tokensOf(B1.sse.frames, runId).length >= 40, "B to read 40 tokens");
		B1.sse.close();
		const first = afterHello(B1.sse);
		const lastSeen = lastId(first);
		// `more` tokens past what B saw (A may lag behind B under load, or run ahead of it).
		const mark = Math.max(tokensOf(A.sse.frames, runId).length, tokensOf(first, runId).length);
		await waitFor(() => tokensOf(A.sse.frames, runId).length >= mark + more, what);
		return { A, B1, runId, first, lastSeen };
	}

	/** B comes back with Last-Event-ID `lastSeen`: nothing was dropped, and hello's id is `lastSeen`. */
	async function reconnect(t, key, lastSeen, missedMessage) {
		const B2 = await subscribe(gw.port, key, { t, lastEventId: lastSeen });
		assert.notEqual(B2.hello.data.missed, true, missedMessage);
		assert.equal(B2.hello.id, lastSeen, "a resuming hello's id is the id it resumes after");
		return B2;
	}

	/** POST /sessions/:key/reset → 200 {ok: true}. */
	async function reset(key) {
		const res = await request(gw.port, "POST", `/sessions/${key}/reset`);
		assert.equal(res.status, 200, res.text);
		assert.deepEqual(res.json, { ok: true });
	}

	/** In `frames` (a sequence across a reset), run 1 ended aborted|cancelled before run 2 started. Returns run 2's start index. */
	function assertEndedBeforeReset(frames, run1, run2) {
		const end1 = frames.findIndex((f) => f.data.type === "run_end" && f.data.runId === run1);
		const start2 = frames.findIndex((f) => f.data.type === "run_start" && f.data.runId === run2);
		assert.ok(end1 >= 0, "the sequence holds run 1's end");
		assert.ok(start2 > end1, "run 1 ends before run 2 starts");
		assert.ok(["aborted", "cancelled"].includes(frames[end1].data.status), `run 1 ended ${frames[end1].data.status}`);
		return start2;
	}

	/**
	 * A stays connected; B connects, reads part of a long answer, disconnects, A reads on, B
	 * reconnects with Last-Event-ID. B's two connections together must be A's sequence exactly.
	 */
	async function reconnectMidAnswer(t, key) {
		const words = 200;
		const { A, B1, runId, first, lastSeen } = await dropMidAnswer(t, key, `/slow ${words}`, 40, "A to read 40 more tokens while B is away");
		const aLastBefore = lastId(A.sse);

		const B2 = await reconnect(t, key, lastSeen, "nothing was dropped from the log");
		assert.equal("runId" in B2.hello.data, false, "hello carries no runId");

		await waitFor(() => ranToEnd(A.sse.frames, runId) && ranToEnd(B2.sse.frames, runId), "the run to end for A and B");
		await caughtUp(A.sse, B2.sse, key);

		const second = afterHello(B2.sse);
		const replayed = second.filter((f) => f.id <= aLastBefore);
		assert.ok(tokensOf(replayed, runId).length >= 40, `the reconnect replayed the missed tokens (${tokensOf(replayed, runId).length})`);
		const union = [...first, ...second];
		const reference = afterHello(A.sse).filter((f) => f.id > B1.hello.id);
		assertIncreasing(reference, "A");
		assertSameFrames(union, reference, "B's two connections carry A's ids: no gap, no duplicate", "and the same frames");
		assert.equal(answerOf(union, runId), fauxLongText(words), "the whole answer, once");
	}

	test("(a) on a non-primary key", async (t) => {
		await reconnectMidAnswer(t, "replay-a");
	});

	test("(c) on the primary session", async (t) => {
		await reconnectMidAnswer(t, "main");
	});

	test("(b) on the primary session reset while B is away: renewed in place, A keeps its stream, B misses nothing", async (t) => {
		const key = "main";
		const { A, B1, runId: run1, first, lastSeen } = await dropMidAnswer(t, key, "/slow 400", 20, "A to read on while B is away");

		const oldSessionId = A.hello.data.snapshot.sessionId;
		await reset(key);
		await waitFor(() => ranToEnd(A.sse.frames, run1), "run 1 to end with the reset");
		const run2 = await submit(gw.port, key, "/slow 60");
		await waitFor(() => tokensOf(A.sse.frames, run2).length >= 20, "run 2 to stream on the renewed session");
		const aLastBefore = lastId(A.sse);

		const B2 = await reconnect(t, key, lastSeen);
		await waitFor(() => ranToEnd(A.sse.frames, run2) && ranToEnd(B2.sse.frames, run2), "run 2 to end for A and B");
		await caughtUp(A.sse, B2.sse, "primary reset");

		assert.equal(A.sse.isEnded, false, "the primary's subscriber keeps its stream across the reset");
		const reference = afterHello(A.sse).filter((f) => f.id > B1.hello.id);
		assertIncreasing(reference, "A across the reset");
		const second = afterHello(B2.sse);
		const union = [...first, ...second];
		assertSameFrames(union, reference);

		// The sequence really spans the reset: run 1's end, a new pi session, then run 2.
		const start2 = assertEndedBeforeReset(union, run1, run2);
		assert.ok(
			union.slice(0, start2).some((f) => f.data.type === "session_state" && f.data.snapshot.sessionId !== oldSessionId),
			"a session_state of the renewed session before run 2",
		);
		assert.ok(
			first.every((f) => f.data.type !== "session_state" || f.data.snapshot.sessionId === oldSessionId),
			"B's first connection saw only the old session",
		);
		// What B got back on reconnect reaches across the reset.
		const replayed = second.filter((f) => f.id <= aLastBefore);
		assert.ok(replayed.some((f) => f.data.type === "run_end" && f.data.runId === run1), "the replay holds run 1's end");
		assert.ok(tokensOf(replayed, run2).length >= 20, "and run 2's first tokens");
		assert.equal(answerOf(union, run2), fauxLongText(60));
	});

	test("(b) on a non-primary key reset while B is away: the log outlives the session, ids go on, B misses nothing of it", async (t) => {
		const key = "replay-b";
		const { A, B1, runId: run1, first, lastSeen } = await dropMidAnswer(t, key, "/slow 400", 20, "A to read on while B is away");

		await reset(key);
		// A non-primary session is disposed by a reset: A's stream ends, or goes on with the new session.
		await waitFor(() => A.sse.isEnded || ranToEnd(A.sse.frames, run1), "A to end or to see run 1 end");

		const run2 = await submit(gw.port, key, "/slow 60");
		const M = await subscribe(gw.port, key, { t }); // a subscriber of the new session
		await waitFor(() => tokensOf(M.sse.frames, run2).length >= 20, "run 2 to stream on the new session");
		const loggedBefore = lastId(M.sse);

		const B2 = await reconnect(t, key, lastSeen, "the log kept everything after B's last id");
		await waitFor(() => ranToEnd(B2.sse.frames, run2) && ranToEnd(M.sse.frames, run2), "run 2 to end");
		await caughtUp(B2.sse, M.sse, "after the reset");

		// The log itself, read once everything is over, from where B started.
		const C = await subscribe(gw.port, key, { t, after: B1.hello.id });
		assert.notEqual(C.hello.data.missed, true);
		assert.equal(C.hello.id, B1.hello.id);
		await settle(C.sse, lastId(B2.sse));
		const log = afterHello(C.sse);
		assertIncreasing(log, "the log across the reset");

		const union = [...first, ...afterHello(B2.sse)];
		assertSameFrames(union, log, "B's two connections are the log: no gap, no duplicate");

		// A was one uninterrupted subscriber until the reset: what it got is the start of the log
		// (all of it, if its stream went on).
		const a = afterHello(A.sse).filter((f) => f.id > B1.hello.id);
		assert.ok(tokensOf(a, run1).length >= 60, "A read run 1 until the reset");
		if (A.sse.isEnded) {
			assert.deepEqual(a, log.slice(0, a.length), "A's frames are the log's start");
		} else {
			await waitFor(() => ranToEnd(A.sse.frames, run2), "A to see run 2 end");
			assert.deepEqual(afterHello(A.sse).filter((f) => f.id > B1.hello.id), log);
		}
		// The new session's subscriber saw the log's tail.
		assert.deepEqual(
			afterHello(M.sse),
			log.filter((f) => f.id > M.hello.id),
		);
		// The ids go on across the reset: run 1's end, then run 2 with larger ids.
		assertEndedBeforeReset(log, run1, run2);
		const replayed = afterHello(B2.sse).filter((f) => f.id <= loggedBefore);
		assert.ok(tokensOf(replayed, run1).length >= 20, "the reconnect replayed the old session's missed tokens");
		assert.ok(tokensOf(replayed, run2).length >= 20, "and the new session's first tokens");
		assert.equal(answerOf(log, run2), fauxLongText(60));
	});
});

// ---------------------------------------------------------------------------------------------
// The eventsource package, ?after=, retry, hello

/**
 * A fetch for `eventsource` whose first response is cut (the body ends, as when a proxy drops the
 * connection) once `tokens` token frames have passed; later calls are untouched. `calls` records
 * each call's time and headers; `cutAt` the time of the cut.
 */
function cuttingFetch(tokens, onCall = () => undefined) {
	const state = { calls: [], cutAt: undefined };
	state.fetch = async (url, init) => {
		state.calls.push({ at: performance.now(), headers: { ...init.headers }, note: onCall() });
		const res = await fetch(url, init);
		if (state.calls.length > 1) return res;
		const reader = res.body.getReader();
		const decoder = new TextDecoder();
		let text = "";
		const body = new ReadableStream({
			async pull(controller) {
				const { done, value } = await reader.read();
				if (done) {
					controller.close();
					return;
				}
				controller.enqueue(value);
				text += decoder.decode(value, { stream: true });
				if ((text.match(/"type":"token"/g) ?? []).length >= tokens) {
					state.cutAt = performance.now();
					controller.close();
					await reader.cancel();
				}
			},
			cancel: (reason) => reader.cancel(reason),
		});
		return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
	};
	return state;
}

describe("the eventsource package, ?after=, retry and hello", { timeout: 60_000 }, () => {
	test("eventsource's own reconnect sends Last-Event-ID after retry: 2000, and its messages are A's, once each", async (t) => {
		const gw = await startGateway({ t });
		const key = "es";
		const A = await subscribe(gw.port, key, { t });
		// Each call notes the last id A (always connected) had seen: what was logged by then.
		const cut = cuttingFetch(40, () => lastId(A.sse));
		const es = new EventSource(`${gw.base}/sessions/${key}/events`, { fetch: cut.fetch });
		t.after(() => es.close());
		const got = [];
		es.onmessage = (e) => got.push({ id: Number(e.lastEventId), data: JSON.parse(e.data) });
		await waitFor(() => got.length > 0, "the EventSource hello");
		assert.equal(got[0].data.type, "hello");

		// ~600 tokens, one every 5 ms: the cut comes early, the reconnect 2 s later, mid-answer.
		const runId = await submit(gw.port, key, "/stream 600 5");
		await waitFor(() => cut.calls.length === 2, "EventSource to reconnect", 10_000);
		await waitFor(() => ranToEnd(got, runId) && ranToEnd(A.sse.frames, runId), "the run to end for both");
		await caughtUp(A.sse, got, "eventsource");

		const hellos = got.filter((m) => m.data.type === "hello");
		assert.equal(hellos.length, 2, "one hello per connection");
		const secondHello = got.indexOf(hellos[1]);
		const lastBeforeCut = got[secondHello - 1].id;
		assert.equal(cut.calls[0].headers["Last-Event-ID"], undefined, "the first connection has no Last-Event-ID");
		assert.equal(cut.calls[1].headers["Last-Event-ID"], String(lastBeforeCut), "the reconnect sends the last id it saw");
		const gap = cut.calls[1].at - cut.cutAt;
		assert.ok(gap >= 1800 && gap < 2900, `reconnected ${gap.toFixed(0)} ms after the cut (retry: 2000; the package's default is 3000)`);
		assert.equal(hellos[1].id, lastBeforeCut, "the second hello's id is the id it resumed after");
		assert.notEqual(hellos[1].data.missed, true);
		assert.ok(cut.calls[1].note > lastBeforeCut, "the log moved on while it was away");
		const missed = got.slice(secondHello + 1).filter((m) => m.id <= cut.calls[1].note);
		assert.ok(tokensOf(missed, runId).length > 0, "the reconnect replayed tokens it had missed");

		const union = got.filter((m) => m.data.type !== "hello");
		const reference = afterHello(A.sse).filter((f) => f.id > hellos[0].id);
		assertSameFrames(union, reference);
		assert.equal(tokensOf(union, runId).length, 600);
		assert.ok(
			tokensOf(union, runId).every((m, i) => m.data.delta.startsWith(`t${i}@`)),
			"the 600 tokens in order",
		);
	});

	test("?after=n replays the logged frames after n, then goes on live; Last-Event-ID wins over ?after=; bad values are 400", async (t) => {
		const gw = await startGateway({ t });
		const key = "after";
		const A = await subscribe(gw.port, key, { t });
		await runToEnd(gw, A, key, "/stream 30", "run 1 to end");
		const all = afterHello(A.sse);
		assert.ok(all.length > 30);

		const mid = all[10].id;
		const S = await subscribe(gw.port, key, { t, after: mid });
		assert.notEqual(S.hello.data.missed, true);
		assert.equal(S.hello.id, mid, "a resuming hello's id is the id it resumes after");
		await settle(S.sse, lastId(all));
		assert.deepEqual(afterHello(S.sse), all.slice(11), "the frames after n, in order");

		// The header wins over the query.
		const H = await subscribe(gw.port, key, { t, lastEventId: all[20].id, after: all[5].id });
		assert.equal(H.hello.id, all[20].id);
		await settle(H.sse, lastId(all));
		assert.deepEqual(afterHello(H.sse), all.slice(21), "Last-Event-ID, not ?after=, decides");

		// Live after the replay, with no gap at the seam.
		const run2 = await submit(gw.port, key, "/stream 10");
		await waitFor(() => ranToEnd(A.sse.frames, run2) && ranToEnd(S.sse.frames, run2) && ranToEnd(H.sse.frames, run2), "run 2");
		await caughtUp(A.sse, S.sse, "?after=");
		await caughtUp(A.sse, H.sse, "Last-Event-ID");
		const allNow = afterHello(A.sse);
		assert.deepEqual(afterHello(S.sse), allNow.slice(11));
		assert.deepEqual(afterHello(H.sse), allNow.slice(21));

		// after=0: the whole log, which ends with everything A saw.
		const Z = await subscribe(gw.port, key, { t, after: 0 });
		await settle(Z.sse, lastId(allNow));
		const z = afterHello(Z.sse);
		assert.deepEqual(z.slice(z.length - allNow.length), allNow);

		for (const [query, headers, pattern] of [
			["?after=-1", {}, /^Invalid after/],
			["?after=abc", {}, /^Invalid after/],
			["?after=1.5", {}, /^Invalid after/],
			["?after=", {}, /^Invalid after/],
			["", { "last-event-id": "abc" }, /^Invalid Last-Event-ID/],
			["", { "last-event-id": "-3" }, /^Invalid Last-Event-ID/],
			["?after=1", { "last-event-id": "x1" }, /^Invalid Last-Event-ID/],
		]) {
			const res = await request(gw.port, "GET", `/sessions/${key}/events${query}`, { headers });
			assert.equal(res.status, 400, `${query} ${JSON.stringify(headers)}: ${res.status} ${res.text.slice(0, 200)}`);
			assert.equal(res.headers["content-type"], JSON_TYPE);
			assert.match(res.json?.error ?? "", pattern, res.text);
		}
	});

	test("every stream starts with retry: 2000", async (t) => {
		const gw = await startGateway({ t });
		const runId = await submit(gw.port, "main", "/stream 3");
		await waitFor(async () => (await getRun(gw.port, "main", runId)).status === "succeeded", "the run to succeed");
		for (const [path, headers] of [
			["/sessions/main/events", {}],
			["/sessions/main/events?after=0", {}],
			["/sessions/main/events", { "last-event-id": "1" }],
			["/sessions/fresh-key/events", {}],
		]) {
			const sse = await openSse(gw.port, path, { headers });
			t.after(() => sse.close());
			assert.equal(sse.status, 200, path);
			await sse.waitFor((f) => f.data?.type === "hello");
			assert.ok(sse.raw.startsWith(RETRY_PREFIX), `${path} ${JSON.stringify(headers)} starts ${JSON.stringify(sse.raw.slice(0, 40))}`);
		}
		// The run's own stream: from run_start (replayed) to run_end, then it ends.
		const run = await openSse(gw.port, `/sessions/main/runs/${runId}/events`);
		t.after(() => run.close());
		assert.equal(run.status, 200);
		const how = await Promise.race([run.ended, sleep(5000).then(() => "timeout")]);
		assert.notEqual(how, "timeout", "the run's stream ends after run_end");
		assert.ok(run.raw.startsWith(RETRY_PREFIX), JSON.stringify(run.raw.slice(0, 40)));
		const frames = run.events();
		assert.equal(frames[0].data.type, "run_start");
		assert.equal(frames.at(-1).data.type, "run_end");
		assert.equal(tokensOf(frames, runId).length, 3);
	});

	test("hello carries no runId and its id is the last id in the log; a plain connect replays nothing", async (t) => {
		const gw = await startGateway({ t });
		const key = "main";
		const A = await subscribe(gw.port, key, { t });
		await runToEnd(gw, A, key, "/stream 20", "run 1 to end");

		const B = await subscribe(gw.port, key, { t });
		assert.equal(B.hello.id, lastId(A.sse), "idle: hello's id is the last frame's id");
		assert.equal("runId" in B.hello.data, false);
		assert.notEqual(B.hello.data.missed, true);
		assert.deepEqual(Object.keys(B.hello.data).sort(), ["sessionKey", "snapshot", "type"]);

		// During a run.
		const run2 = await submit(gw.port, key, "/stream 300 5");
		await waitFor(() => tokensOf(A.sse.frames, run2).length >= 10, "run 2 to stream");
		const C = await subscribe(gw.port, key, { t });
		assert.equal("runId" in C.hello.data, false, "not even while a run streams");
		assert.equal(C.hello.data.snapshot.processing, true);
		await waitFor(() => ranToEnd(A.sse.frames, run2) && ranToEnd(C.sse.frames, run2), "run 2 to end");
		await caughtUp(A.sse, C.sse, "hello");
		const a = afterHello(A.sse);
		assert.ok(
			a.some((f) => f.id === C.hello.id),
			`hello's id ${C.hello.id} is the id of a frame that was logged`,
		);
		assert.deepEqual(afterHello(C.sse), a.filter((f) => f.id > C.hello.id), "then exactly what followed it");
		for (const f of [...A.sse.events(), ...B.sse.events(), ...C.sse.events()]) {
			if (f.data.type === "hello" || f.data.type === "session_state") assert.equal("runId" in f.data, false, JSON.stringify(f));
		}
	});
});

describe("a resuming hello's id", { timeout: 30_000 }, () => {
	test("is the id resumed after, so a client that drops right after hello and reconnects with it misses nothing", async (t) => {
		const gw = await startGateway({ t });
		const key = "drop-after-hello";
		const A = await subscribe(gw.port, key, { t });
		await runToEnd(gw, A, key, "/stream 40");
		const all = afterHello(A.sse);
		const from = all[5].id;

		// A client resumes after `from`, keeps only the hello (the connection drops at once),
		// and reconnects with the id that hello gave it, as EventSource would.
		const first = await subscribe(gw.port, key, { lastEventId: from });
		first.sse.close();
		const second = await subscribe(gw.port, key, { t, lastEventId: first.hello.id });
		await settle(second.sse, lastId(all));
		assert.deepEqual(afterHello(second.sse), all.slice(6), "everything after `from`, once");
	});
});

// ---------------------------------------------------------------------------------------------
// A log cut short

describe("a log cut short (events.replayEvents: 50)", { timeout: 30_000 }, () => {
	test("an old id, an unknown one, and the edges: missed: true exactly when frames were dropped, then the last 50 in order", async (t) => {
		const gw = await startGateway({ t, config: { events: { replayEvents: 50 } } });
		const key = "cut";
		const A = await subscribe(gw.port, key, { t });
		// A token every 2 ms: A keeps up. (A reader more than the log's length behind the head
		// cannot be served from it and is ended.)
		await runToEnd(gw, A, key, "/stream 200 2");
		assert.equal(A.sse.isEnded, false, "A kept up");
		const all = afterHello(A.sse);
		assert.ok(all.length > 200, `${all.length} frames`);
		const tail = all.slice(-50);
		const last = lastId(all);
		// Everything up to this id is gone from the log: what a hello that missed frames carries
		// as its id (reconnecting with it, a client gets the whole log and nothing twice).
		const newestDropped = all.at(-51).id;

		async function replay(options, label, helloId) {
			const S = await subscribe(gw.port, key, { t, ...options });
			await settle(S.sse, last);
			S.sse.close();
			assert.equal(S.hello.id, helloId, `${label}: hello's id`);
			return { hello: S.hello.data, frames: afterHello(S.sse) };
		}

		for (const [options, label] of [
			[{ lastEventId: all[0].id }, "Last-Event-ID: an old id"],
			[{ after: all[0].id }, "?after= an old id"],
			[{ lastEventId: last + 1_000_000 }, "an id larger than any issued"],
			[{ lastEventId: all.at(-52).id }, "the id just before the oldest dropped frame"],
			[{ after: 0 }, "after=0"],
		]) {
			const r = await replay(options, label, newestDropped);
			assert.equal(r.hello.missed, true, `${label}: hello says missed`);
			assert.deepEqual(r.frames, tail, `${label}: then the 50 frames still logged, in order`);
		}
		{
			const label = "the id just before the oldest logged frame";
			const r = await replay({ lastEventId: all.at(-51).id }, label, all.at(-51).id);
			assert.notEqual(r.hello.missed, true, `${label}: nothing missed`);
			assert.deepEqual(r.frames, tail, label);
		}
		{
			const r = await replay({ lastEventId: last }, "the last id", last);
			assert.notEqual(r.hello.missed, true);
			assert.deepEqual(r.frames, [], "nothing to replay");
		}

		// addSubscriber with an old `after`: the same.
		const { got } = await collectSubscriber(t, gw, key, { after: all[0].id, last });
		assert.equal(got[0]?.data.type, "hello");
		assert.equal(got[0].data.missed, true);
		assert.equal(got[0].id, newestDropped);
		assert.deepEqual(got.slice(1), tail);
	});
});

// ---------------------------------------------------------------------------------------------
// Memory over a 100,000-event run

/**
 * A structural AgentSession that floods: `flood N` emits N text_delta events of about 1 KiB each
 * (500 per tick), then a short final message. Without a bound, the log would hold over 100 MB.
 */
class FloodSession {
	static FILLER = "x".repeat(1000);
	constructor() {
		this.sessionId = randomUUID();
		this.messages = [];
		this.listeners = new Set();
		this.aborted = false;
	}
	subscribe(listener) {
		this.listeners.add(listener);
		return () => this.listeners.delete(listener);
	}
	emit(event) {
		for (const l of this.listeners) l(event);
	}
	async prompt(text) {
		const n = Number(/flood (\d+)/.exec(text)?.[1] ?? 10);
		this.aborted = false;
		const user = { role: "user", content: [{ type: "text", text }], timestamp: Date.now() };
		this.emit({ type: "agent_start" });
		this.emit({ type: "turn_start" });
		this.emit({ type: "message_start", message: user });
		this.messages.push(user);
		this.emit({ type: "message_end", message: user });
		const partial = { role: "assistant", content: [], stopReason: "stop", timestamp: Date.now() };
		this.emit({ type: "message_start", message: partial });
		for (let i = 0; i < n && !this.aborted; ) {
			for (const end = Math.min(n, i + 500); i < end; i++) {
				const delta = `f${i};${FloodSession.FILLER}`;
				this.emit({
					type: "message_update",
					message: partial,
					assistantMessageEvent: { type: "text_delta", contentIndex: 0, delta, partial },
				});
			}
			await new Promise((resolve) => setImmediate(resolve));
		}
		const final = { ...partial, content: [{ type: "text", text: "flooded" }], stopReason: this.aborted ? "aborted" : "stop" };
		this.messages.push(final);
		this.emit({ type: "message_end", message: final });
		this.emit({ type: "turn_end", message: final, toolResults: [] });
		this.emit({ type: "agent_end", messages: [user, final] });
	}
	async abort() {
		this.aborted = true;
	}
	dispose() {
		this.aborted = true;
		this.listeners.clear();
	}
}

describe("the log's memory bound", { timeout: 60_000 }, () => {
	test("a 100,000-event run (~100 MB of tokens) with the default bounds: RSS stays within 64 MiB, the log within 4096 frames and 4 MiB", async (t) => {
		const gw = await startGateway({ t, createSession: async () => new FloodSession() });
		const key = "flood";
		const gc = await getGc();

		// Warm up: a run that fills the log to its bound, so the baseline includes a full log.
		const warm = await gw.rt.enqueueMessage({ sessionKey: key, text: "flood 10000" });
		assert.equal(warm.ok, true, JSON.stringify(warm));
		await settleMemory(gc);
		const base = rss();
		let peak = base;
		const sampler = setInterval(() => {
			peak = Math.max(peak, rss());
		}, 5);
		const started = performance.now();
		let result;
		try {
			result = await gw.rt.enqueueMessage({ sessionKey: key, text: "flood 100000" });
		} finally {
			clearInterval(sampler);
		}
		const took = performance.now() - started;
		await settleMemory(gc);
		const end = rss();
		peak = Math.max(peak, end);
		assert.equal(result.ok, true, JSON.stringify(result));
		assert.equal(result.response, "flooded");
		assert.match(result.runId, UUID_V7);
		assert.ok(took < 30_000, `the run took ${took.toFixed(0)} ms`);
		const growth = (peak - base) / MiB;
		t.diagnostic(`100,000 events in ${took.toFixed(0)} ms; RSS base ${(base / MiB).toFixed(1)} MiB, peak +${growth.toFixed(1)} MiB, after +${((end - base) / MiB).toFixed(1)} MiB`);
		assert.ok(growth < 64, `RSS grew ${growth.toFixed(1)} MiB (base ${(base / MiB).toFixed(1)} MiB, end ${(end / MiB).toFixed(1)} MiB)`);

		// What the log still holds: its newest frames, within both bounds.
		const P = await subscribe(gw.port, key);
		P.sse.close();
		const newest = P.hello.id; // a plain hello's id: the newest logged id
		const S = await subscribe(gw.port, key, { t, after: 0 });
		assert.equal(S.hello.data.missed, true, "the log no longer reaches back to the start");
		await waitFor(() => S.sse.events().some((f) => f.id === newest), "the replay to arrive", 10_000);
		await sleep(200);
		const frames = afterHello(S.sse);
		assert.equal(lastId(frames), newest);
		assert.ok(S.hello.id > 0 && S.hello.id < frames[0].id, `missed: hello's id ${S.hello.id} is below the oldest kept ${frames[0].id}`);
		assertIncreasing(frames, "the log");
		assert.ok(frames.length <= 4096, `${frames.length} frames replayed`);
		assert.ok(frames.length >= 1000, `only ${frames.length} frames kept of a 4 MiB log`);
		const bytes = Buffer.byteLength(S.sse.raw);
		assert.ok(bytes <= 4 * MiB + 256 * 1024, `${bytes} bytes replayed`);
		const tokens = tokensOf(frames, result.runId);
		assert.ok(tokens.length > 0);
		const indices = tokens.map((f) => Number(/^f(\d+);/.exec(f.data.delta)[1]));
		assert.equal(indices.at(-1), 99_999, "the newest token is logged");
		assert.ok(
			indices.every((n, i) => i === 0 || n === indices[i - 1] + 1),
			"the log dropped the oldest first: the tokens it holds are consecutive",
		);
		assert.ok(frames.some((f) => f.data.type === "run_end" && f.data.runId === result.runId && f.data.status === "succeeded"));
	});
});

// ---------------------------------------------------------------------------------------------
// addSubscriber(key, listener, { after }) and the run frames

describe("addSubscriber with { after }", { timeout: 30_000 }, () => {
	test("listener(event, id) gets hello (id: the `after` it resumes from), the logged events after `after`, then live ones", async (t) => {
		const gw = await startGateway({ t });
		const key = "js";
		const { got: ref } = await collectSubscriber(t, gw, key);
		const r1 = await gw.rt.enqueueMessage({ sessionKey: key, text: "/stream 30" });
		const r2 = await gw.rt.enqueueMessage({ sessionKey: key, text: "/tool" });
		assert.equal(r1.ok && r2.ok, true);
		await waitFor(() => ranToEnd(ref, r2.runId), "both runs in the reference");
		await sleep(50);
		assert.equal(ref[0].data.type, "hello");
		const logged = ref.slice(1);
		assertIncreasing(logged, "the reference");
		const from = logged[15].id;

		const { got, unsubscribe: unsub } = await collectSubscriber(t, gw, key, { after: from, last: lastId(logged), settleMs: 50 });
		assert.equal(got[0]?.data.type, "hello");
		assert.equal(got[0].id, from, "a resuming hello's id is the `after` it resumes from");
		assert.notEqual(got[0].data.missed, true);
		assert.equal("runId" in got[0].data, false);
		assert.deepEqual(got.slice(1), logged.slice(16), "the logged events after `after`, in order");

		const r3 = await gw.rt.enqueueMessage({ sessionKey: key, text: "/stream 5" });
		await waitFor(() => ranToEnd(got, r3.runId) && ranToEnd(ref, r3.runId), "the live run");
		await waitFor(() => lastId(got) === lastId(ref), "both caught up");
		assert.deepEqual(got.slice(1), ref.slice(1).filter((e) => e.id > from), "then live, no gap, no duplicate");
		assert.equal(tokensOf(got, r3.runId).length, 5);

		// Unsubscribed: nothing more arrives.
		unsub();
		const count = got.length;
		await gw.rt.enqueueMessage({ sessionKey: key, text: "/instant" });
		await sleep(100);
		assert.equal(got.length, count);
	});
});

describe("run_start, run_end and runId on the stream", { timeout: 30_000 }, () => {
	/**
	 * The frames of one run must be: run_start, session_state (processing), agent events (each
	 * with the run's id; `last` the final one if given), run_end {status}, session_state (idle).
	 * No frame outside them carries the run's id. Returns the run's frames.
	 */
	function checkRun(frames, key, runId, status, last) {
		const start = frames.findIndex((f) => f.data.type === "run_start" && f.data.runId === runId);
		const end = frames.findIndex((f) => f.data.type === "run_end" && f.data.runId === runId);
		assert.ok(start >= 0 && end > start, `run_start then run_end of ${runId}`);
		const run = frames.slice(start, end + 2);
		const dump = run.map((f) => JSON.stringify(f.data)).join("\n");
		assert.deepEqual(run[0].data, { type: "run_start", sessionKey: key, runId });
		assert.equal(run[1].data.type, "session_state", dump);
		assert.equal(run[1].data.snapshot.processing, true);
		const agent = run.slice(2, -2);
		for (const f of agent) {
			assert.ok(RUN_CAUSED.has(f.data.type), `an agent event inside the run, got ${JSON.stringify(f.data)}`);
			assert.equal(f.data.runId, runId, `runId on ${JSON.stringify(f.data)}`);
			assert.equal(f.data.sessionKey, key);
		}
		for (const type of ["turn_start", "message_start", "turn_end"]) {
			assert.ok(agent.some((f) => f.data.type === type), `a ${type} in the run:\n${dump}`);
		}
		if (last) assert.equal(agent.at(-1).data.type, last, `the last agent event is ${last}:\n${dump}`);
		else assert.ok(!agent.some((f) => f.data.type === "error" || f.data.type === "aborted"), dump);
		const runEnd = run.at(-2).data;
		assert.equal(runEnd.type, "run_end");
		assert.equal(runEnd.status, status);
		assert.equal(runEnd.runId, runId);
		assert.equal(runEnd.sessionKey, key);
		if (status === "failed") assert.equal(typeof runEnd.error, "string");
		const idle = run.at(-1).data;
		assert.equal(idle.type, "session_state", dump);
		assert.equal(idle.snapshot.processing, false);
		const outside = [...frames.slice(0, start), ...frames.slice(end + 1)];
		assert.ok(!outside.some((f) => f.data.runId === runId), `frames of ${runId} outside its run_start…run_end`);
		return run;
	}

	test("each run: run_start, session_state, its events with runId, aborted|error, run_end, session_state — in order, never interleaved", async (t) => {
		const gw = await startGateway({ t });
		const key = "order";
		const A = await subscribe(gw.port, key, { t });

		const post = async (text) => {
			const res = await request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text } });
			assert.match(res.headers["x-run-id"] ?? "", UUID_V7, `${text}: x-run-id ${res.status} ${res.text}`);
			assert.equal(res.json.runId, res.headers["x-run-id"]);
			return res;
		};
		const r1 = await post("/stream 5");
		assert.equal(r1.status, 200);
		assert.equal(r1.json.ok, true);
		const r2 = await post("/tool");
		assert.equal(r2.json.ok, true);
		const r3 = await post("/error boom");
		assert.equal(r3.json.ok, false);
		assert.equal(r3.json.error, "boom");
		const r4 = await submit(gw.port, key, "/stream 1000 5");
		await waitFor(() => tokensOf(A.sse.frames, r4).length >= 5, "run 4 to stream");
		const abort = await request(gw.port, "POST", `/sessions/${key}/abort`);
		assert.deepEqual(abort.json, { ok: true });
		await waitFor(() => ranToEnd(A.sse.frames, r4), "run 4 to end");
		await sleep(50);

		const frames = afterHello(A.sse);
		const ids = [r1.json.runId, r2.json.runId, r3.json.runId, r4];
		assert.equal(new Set(ids).size, 4, "four different run ids");
		const run1 = checkRun(frames, key, ids[0], "succeeded");
		assert.deepEqual(
			tokensOf(run1, ids[0]).map((f) => f.data.delta.split("@")[0]),
			["t0", "t1", "t2", "t3", "t4"],
		);
		const run2 = checkRun(frames, key, ids[1], "succeeded");
		for (const type of ["tool_start", "tool_update", "tool_complete", "message_complete"]) {
			assert.ok(run2.some((f) => f.data.type === type), `${type} in the tool run`);
		}
		const run3 = checkRun(frames, key, ids[2], "failed", "error");
		assert.equal(run3.at(-3).data.error, "boom");
		checkRun(frames, key, ids[3], "aborted", "aborted");

		// One after the other.
		const pos = (type, runId) => frames.findIndex((f) => f.data.type === type && f.data.runId === runId);
		for (let i = 1; i < ids.length; i++) {
			assert.ok(pos("run_end", ids[i - 1]) < pos("run_start", ids[i]), `run ${i} ends before run ${i + 1} starts`);
		}
		for (const f of A.sse.events()) {
			if (f.data.type === "hello" || f.data.type === "session_state") assert.equal("runId" in f.data, false);
		}
		// The run records agree.
		assert.equal((await getRun(gw.port, key, ids[3])).status, "aborted");
		assert.equal((await getRun(gw.port, key, ids[2])).status, "failed");
	});
});
