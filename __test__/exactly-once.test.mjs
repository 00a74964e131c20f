// Exactly once, under chaos: a randomized but seeded run (mulberry32, fixed seed) where many
// concurrent clients send messages to several sessions — half over HTTP POST /messages, half
// through enqueueMessage — while aborts, clearQueue, resets (JS API and HTTP) and idle
// evictions (tiny idleMinutes, fast sweep) happen at random, and a final stop() lands on a
// full set of queues.
//
// Every message embeds its id in its text; the session doubles record each prompt, and
// reply "echo:<text>". The checks:
// - every accepted message gets exactly one result, before a deadline (none hangs);
// - results are only of the known kinds, each with its HTTP status: ok (200), "Queue full"
//   (429), "Queue cleared", "Session reset", "Gateway stopped", aborted (500);
// - an ok result is the message's own answer (echo of its own text, its own session key)
//   and its message was prompted exactly once; a cleared or rejected one never ran; a reset,
//   stopped or aborted one ran at most once (aborted: exactly once);
// - no message is ever prompted twice, no disposed session is ever prompted, and every
//   session the factory made is disposed exactly once by the end (the primary never);
// - every accepted message was a run of its own (SPEC §10): a UUIDv7 runId no other message
//   got (over HTTP, repeated in x-run-id); a queue-full refusal has none.
//
// The operation sequence is fixed by the seed; thread interleavings are not, so the
// assertions hold for every interleaving rather than for one recorded outcome.

import assert from "node:assert/strict";
import { test } from "node:test";

import { baseConfig, startGateway } from "./support/gateway.mjs";
import { api, mulberry32 } from "./support/rel-util.mjs";
import { createDouble, createDoubleFactory } from "./support/sessions.mjs";
import { sleep, waitFor, within } from "./support/wait.mjs";
import { UUID_V7 } from "./support/runs.mjs";

const SEED = 0xc0ffee;
const MESSAGES = 400;
const CLIENTS = 32;
const MAX_QUEUE = 6;
// Hot keys get most of the traffic; cold keys are used rarely, so they go idle, get evicted
// and are created again mid-run.
const HOT = ["main", "s0", "s1", "s2", "s3"];
const COLD = ["c0", "c1", "c2", "c3", "c4", "c5"];
const KEYS = [...HOT, ...COLD];
const PER_MESSAGE_DEADLINE_MS = 15000;

const idOf = (text) => Number(/^m(\d+) /.exec(text)?.[1]);
const delayOf = (text) => Number(/ d(\d+)$/.exec(text)?.[1] ?? 0);

function classify(result) {
	if (result.ok) return "ok";
	const e = result.error ?? "";
	if (e === `Queue full (${MAX_QUEUE} pending).`) return "full";
	if (e === "Queue cleared") return "cleared";
	if (e === "Session reset") return "reset";
	if (e === "Gateway stopped") return "stopped";
	if (e === "Request was aborted") return "aborted";
	return `unknown: ${e}`;
}

const STATUS = { ok: 200, full: 429, cleared: 500, reset: 500, stopped: 500, aborted: 500 };

test("every accepted message gets exactly one result under random aborts, clears, resets, evictions and a final stop", async (t) => {
	// Three independent streams from the seed, so the plan, the chaos and the final phase each
	// get a fixed sequence however the other two interleave with the clock.
	const rand = mulberry32(SEED);
	const chaosRand = mulberry32(SEED ^ 0x9e3779b9);
	const finalRand = mulberry32(SEED + 1);
	const pick = (arr, r = rand) => arr[Math.floor(r() * arr.length)];

	// The doubles reply "echo:<text>" after the delay in the text (abortable). A prompt on a
	// disposed session throws, which would surface below as an unknown result kind.
	const behavior = { delayMs: delayOf };
	const factory = createDoubleFactory(behavior);
	const primary = createDouble("main", behavior);
	const { rt, base, stop, logs } = await startGateway({
		t,
		config: baseConfig({
			session: { idleMinutes: 0.001, sweepIntervalMs: 25, maxQueuePerSession: MAX_QUEUE },
			shutdownTimeoutMs: 3000,
		}),
		primarySession: primary,
		createSession: factory,
	});
	const started = Date.now();

	// ---- the messages, fixed by the seed
	const plan = [];
	for (let id = 0; id < MESSAGES; id++) {
		const delay = Math.floor(rand() * 25);
		const key = rand() < 0.8 ? pick(HOT) : pick(COLD);
		const gapMs = rand() < 0.1 ? 60 + Math.floor(rand() * 100) : Math.floor(rand() * 4);
		plan.push({ id, key, via: rand() < 0.5 ? "http" : "api", text: `m${id} d${delay}`, gapMs });
	}
	const results = new Map(); // id -> [{kind, status, body}]
	const record = (id, entry) => {
		if (!results.has(id)) results.set(id, []);
		results.get(id).push(entry);
	};

	async function send(m) {
		if (m.via === "http") {
			const r = await api(base, "POST", `/sessions/${m.key}/messages`, { body: { text: m.text } });
			return { status: r.status, body: r.body, header: r.headers.get("x-run-id") ?? undefined };
		}
		return { status: null, body: await rt.enqueueMessage({ sessionKey: m.key, text: m.text }) };
	}

	let next = 0;
	let sending = true;
	const clients = Array.from({ length: CLIENTS }, async () => {
		while (next < plan.length) {
			const m = plan[next++];
			const outcome = await within(send(m), PER_MESSAGE_DEADLINE_MS, `message ${m.id} (${m.via} to ${m.key})`);
			record(m.id, { kind: classify(outcome.body), status: outcome.status, body: outcome.body, header: outcome.header, m });
			if (m.gapMs) await sleep(m.gapMs);
		}
	});

	// ---- the chaos, also from the seed
	const chaosLog = { abort: 0, abortHttp: 0, clear: 0, reset: 0, resetHttp: 0 };
	const chaos = (async () => {
		while (sending) {
			await sleep(3 + Math.floor(chaosRand() * 12));
			const key = pick(KEYS, chaosRand);
			const r = chaosRand();
			if (r < 0.25) {
				chaosLog.abort++;
				rt.abortSession(key);
			} else if (r < 0.4) {
				chaosLog.abortHttp++;
				const res = await api(base, "POST", `/sessions/${key}/abort`);
				assert.ok([200, 404].includes(res.status), `abort: ${res.status}`);
			} else if (r < 0.6) {
				chaosLog.clear++;
				rt.clearQueue(key);
			} else if (r < 0.72) {
				chaosLog.reset++;
				await within(rt.resetSession(key), 10000, `resetSession(${key})`);
			} else if (r < 0.8) {
				chaosLog.resetHttp++;
				const res = await within(api(base, "POST", `/sessions/${key}/reset`), 10000, `POST reset ${key}`);
				assert.ok([200, 404].includes(res.status), `reset: ${res.status} ${res.text}`);
			}
			// else: a quiet tick, leaving room for idle evictions.
		}
	})();

	await Promise.all(clients);
	sending = false;
	await chaos;

	// ---- the final stop, landing on full queues: one running and MAX_QUEUE - 1 queued per key.
	const finalKeys = ["s0", "s1", "s2", "s3"];
	const finalPlan = [];
	let id = MESSAGES;
	for (const key of finalKeys) {
		for (let i = 0; i < MAX_QUEUE; i++) {
			finalPlan.push({ id: id++, key, via: finalRand() < 0.5 ? "http" : "api", text: `m${id - 1} d30000` });
		}
	}
	// Send one per key first so each has a running message, then fill the queues.
	const finalSends = [];
	const sendFinal = (m) =>
		finalSends.push(send(m).then((o) => record(m.id, { kind: classify(o.body), status: o.status, body: o.body, header: o.header, m })));
	const firsts = finalKeys.map((key) => finalPlan.find((m) => m.key === key));
	for (const m of firsts) {
		sendFinal(m);
		await waitFor(() => rt.getSession(m.key)?.processing, `${m.key} to be running`, 5000);
	}
	for (const m of finalPlan.filter((m) => !firsts.includes(m))) sendFinal(m);
	await waitFor(
		() => finalKeys.every((k) => rt.getSession(k)?.queueDepth === MAX_QUEUE - 1 && rt.getSession(k)?.processing),
		"every final queue to be full",
		10000,
	);
	const stopStarted = Date.now();
	await within(stop(), 10000, "stop()");
	const stopMs = Date.now() - stopStarted;
	await within(Promise.all(finalSends), 5000, "the messages pending at stop");

	// ---- the accounting
	const all = [...plan, ...finalPlan];
	const prompted = new Map();
	for (const s of [primary, ...factory.created]) {
		for (const text of s.prompts) {
			const pid = idOf(text);
			prompted.set(pid, (prompted.get(pid) ?? 0) + 1);
		}
	}

	const problems = [];
	const kinds = {};
	const runIds = new Map(); // runId -> message id
	for (const m of all) {
		const rs = results.get(m.id) ?? [];
		if (rs.length !== 1) {
			problems.push(`message ${m.id} (${m.via} ${m.key}) got ${rs.length} results`);
			continue;
		}
		const [r] = rs;
		kinds[r.kind] = (kinds[r.kind] ?? 0) + 1;
		const p = prompted.get(m.id) ?? 0;
		if (r.kind.startsWith("unknown")) problems.push(`message ${m.id}: ${r.kind}`);
		if (m.via === "http" && STATUS[r.kind] !== undefined && r.status !== STATUS[r.kind]) {
			problems.push(`message ${m.id}: ${r.kind} answered with HTTP ${r.status}`);
		}
		if (r.body.sessionKey !== m.key) problems.push(`message ${m.id}: result for session ${r.body.sessionKey}, sent to ${m.key}`);
		if (r.kind === "full") {
			if (r.body.runId !== undefined || r.header !== undefined) problems.push(`message ${m.id}: refused (queue full) but has a runId`);
		} else if (!UUID_V7.test(String(r.body.runId))) {
			problems.push(`message ${m.id}: ${r.kind} without a UUIDv7 runId (${JSON.stringify(r.body)})`);
		} else {
			if (m.via === "http" && r.header !== r.body.runId) problems.push(`message ${m.id}: x-run-id ${r.header} vs runId ${r.body.runId}`);
			if (runIds.has(r.body.runId)) problems.push(`messages ${runIds.get(r.body.runId)} and ${m.id} share runId ${r.body.runId}`);
			runIds.set(r.body.runId, m.id);
		}
		switch (r.kind) {
			case "ok":
				if (r.body.response !== `echo:${m.text}`) problems.push(`message ${m.id}: ok with someone else's answer ${JSON.stringify(r.body.response)}`);
				if (p !== 1) problems.push(`message ${m.id}: ok but prompted ${p} times`);
				break;
			case "full":
			case "cleared":
				if (p !== 0) problems.push(`message ${m.id}: ${r.kind} but prompted ${p} times`);
				break;
			case "aborted":
				if (p !== 1) problems.push(`message ${m.id}: aborted but prompted ${p} times`);
				break;
			case "reset":
			case "stopped":
				if (p > 1) problems.push(`message ${m.id}: ${r.kind} but prompted ${p} times`);
				break;
		}
	}
	for (const [pid, n] of prompted) {
		if (n > 1) problems.push(`message ${pid} was prompted ${n} times`);
		if (!all.some((m) => m.id === pid)) problems.push(`a prompt for unknown message ${pid}`);
	}
	for (const m of finalPlan) {
		const r = results.get(m.id)?.[0];
		if (r && r.kind !== "stopped") problems.push(`final message ${m.id} (${m.key}): ${r.kind}, expected Gateway stopped`);
	}
	for (const s of factory.created) {
		if (s.calls.dispose !== 1) problems.push(`session ${s.sessionKey} (${s.sessionId}) disposed ${s.calls.dispose} times`);
	}
	if (primary.calls.dispose !== 0) problems.push(`the primary session was disposed ${primary.calls.dispose} times`);

	const elapsed = Date.now() - started;
	const evictions = logs.filter((l) => l.startsWith("evicted idle session")).length;
	t.diagnostic(
		`kinds ${JSON.stringify(kinds)}; chaos ${JSON.stringify(chaosLog)}; sessions created ${factory.created.length}; evictions ${evictions}; stop ${stopMs} ms; total ${elapsed} ms`,
	);
	assert.deepEqual(problems, [], problems.slice(0, 20).join("\n"));

	// The run really was chaotic: each kind of interruption happened.
	for (const kind of ["ok", "full", "cleared", "reset", "aborted", "stopped"]) {
		assert.ok((kinds[kind] ?? 0) > 0, `no "${kind}" results: the chaos did not exercise it (${JSON.stringify(kinds)})`);
	}
	assert.ok(evictions > 0, "idle sessions were evicted mid-run");
	assert.ok(factory.created.length > KEYS.length, "sessions were evicted or reset and created again");
	assert.ok(stopMs < 5000, `stop() took ${stopMs} ms`);
	assert.ok(elapsed < 20000, `the run took ${elapsed} ms`);
});
