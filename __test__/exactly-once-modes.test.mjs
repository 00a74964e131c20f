// Exactly once, with queue modes (issue 13, SPEC §11): the randomized, seeded approach of
// exactly-once-runs.test.mjs with all five modes — queue, steer, followUp, interrupt, reject (and
// the default: no mode, or null) — mixed into the messages, sent five ways (POST /messages
// waiting, enqueueMessage, POST /messages wait:false then polling the run, submitMessage then
// waitForRun, POST /chat), some with an Idempotency-Key and repeated, some by a client that
// disconnects and retries with its key; while the chaos deletes and cancels runs, stops chats,
// aborts, clears (rt.clearQueue and DELETE …/queue), resets, deletes sessions (DELETE
// /sessions/:key, SPEC §12; now and then on the primary, which must answer 409 and change
// nothing), and reads GET …/queue.
//
// Two variants:
// - real pi AgentSessions on the faux model (steer and followUp really go through pi's
//   `steer()` / `followUp()`); the model is a paced script: a user text "m<id> s<n>[ f]" makes
//   it do n steps (a short text and a `read` of hello.txt each), then answer "ok m<id>" — the
//   id of the LAST user message in its context, so a run that received steered messages answers
//   the last one; " f" makes the model fail with "boom m<id>";
// - the scripted doubles (no steer/followUp functions: steer and followUp fall back to queue).
//
// What reached the model is watched on the sessions themselves (every user message pi starts,
// or every prompt of a double), with the time it happened; so are their abort() and pi's
// clearQueue() calls (with what it removed). The checks:
// - every send is answered before a deadline (none hangs); refusals are only 429 "Queue full"
//   (no runId), and 409 "Session busy" for mode reject only, with the contract's body naming a
//   run of that session that was queued or running while the request was in flight;
// - every accepted message has exactly one run (all its accepted sends, idempotent repeats and
//   retries after a disconnect, name the same runId; at most one of them is fresh); every run of
//   every session is the run of some accepted message;
// - queue, interrupt and reject messages own their run (its record's `mode` is theirs; default →
//   "queue"); a run's other messages are steer/followUp messages delivered into it: they carry
//   the runId of a run that had started and had not ended when they were sent, pi saw them in it
//   (a `queue_update` of that run listing the text, or the user message inside the run's
//   lifetime), `delivered` (wait:false, submitMessage) names their mode, and a chat stream of one
//   starts with its own messageId; with the doubles every message owns its run;
// - what each caller got is the run's record (result, chat terminal chunk); run_start/run_end
//   once per run in the log;
// - nothing reaches the model twice; a succeeded run's messages all reached it (a handed-over
//   one may be missing only when a clear the test issued while it could be in pi's queue took
//   it out), inside the run's lifetime (after the end only for a run a reset or a deletion
//   cancelled, while nothing else runs: its old session winding down), and the run answered the
//   last of them; a failed run failed on one of its " f" messages; a run cancelled before it
//   started reached nothing; a run cancelled after it started was cancelled by a reset in
//   flight while it ran, or by a deletion of its session;
// - session deletions (SPEC §12): a run ends `cancelled` with {ok:false, error:"Session deleted"}
//   only inside a DELETE of its session that answered 200, and every run of the session queued
//   or running when that DELETE arrived ends inside it (the message's callers get that result
//   once: HTTP, enqueueMessage, waitForRun, and a chat stream ending with exactly
//   {type:"error", errorText:"Session deleted"}); an /events reader open across it is closed;
//   the primary answers 409 and keeps its session and subscribers; a deleted session's log is
//   forgotten: the log read at the end holds no run that ended before the key's last deletion,
//   and every run created after it wholly;
// - reject accepted (not 409) ⇒ no other run of the session was queued or running when its run
//   was created; interrupt ⇒ the run that was running when it arrived ends aborted (or cancelled
//   by a reset) — or, when it ended as it would have, its session was at least asked to abort
//   (the abort lost the race with the prompt's end; counted as "late") — and every
//   non-interrupt run queued then starts after it (createdAt comparisons allow
//   PLACEMENT_SLACK_MS: a run is stamped when its request is read, placed just after);
// - DELETE …/queue and GET …/queue answer in the contract's shape, naming only our texts;
// - afterwards each session (a deleted one anew) answers a good message, and GET …/queue is
//   {running:null, queued:[], steering:[], followUp:[]}.
//
// The seed (PI_GW_SEED to choose another) fixes the plan and the chaos; interleavings are not
// fixed, so the checks hold for every interleaving. The seed is printed.

import assert from "node:assert/strict";
import { test } from "node:test";
import { fauxAssistantMessage, fauxText, fauxToolCall } from "@mariozechner/pi-ai";

import { HELLO_FILE } from "../lib/faux-agent.js";
import * as exactlyOnce from "./support/exactly-once-util.mjs";
import { startGateway } from "./support/gateway.mjs";
import { request } from "./support/http.mjs";
import { leaveEarly, registerPacedScript, startPiGateway, userTextOf } from "./support/modes-util.mjs";
import { postChat, postMessage, readLog, runPath, UUID_V7 } from "./support/runs.mjs";
import { createDouble } from "./support/sessions.mjs";
import { sleep, within } from "./support/wait.mjs";

const SEED = Number(process.env.PI_GW_SEED ?? 0x13d0b1e5) >>> 0;
const MAX_QUEUE = 6;
const PER_SEND_DEADLINE_MS = 20_000;
const VIAS = ["http", "api", "async-http", "async-api", "chat"];
const TEXT = /^m(\d+) s(\d+)( f)?$/;
const idOf = (text) => Number(TEXT.exec(text)?.[1]);
const stepsOf = (text) => Number(TEXT.exec(text)?.[2] ?? 0);
const failsOf = (text) => TEXT.exec(text)?.[3] !== undefined;
const FULL_ERROR = `Queue full (${MAX_QUEUE} pending).`;
const EMPTY_QUEUE = { running: null, queued: [], steering: [], followUp: [] };
/** Clock slack (ms) between the gateway's run timestamps and what the sessions saw. */
const SLACK_MS = 5;
/**
 * A run's `createdAt` is stamped when its request is read; it is placed (queued, refused, handed
 * over) just after, on another thread: on a loaded machine the two can be some ms apart. Checks
 * that compare a run's `createdAt` with another run's lifetime allow this much.
 */
const PLACEMENT_SLACK_MS = 30;

/** The modes a message is sent with: `undefined` = no mode field, `null` = mode: null (both default). */
const MODE_WEIGHTS = [
	[undefined, 0.06],
	[null, 0.04],
	["queue", 0.2],
	["steer", 0.22],
	["followUp", 0.16],
	["interrupt", 0.1],
	["reject", 0.22],
];

const VARIANTS = {
	pi: { messages: 300, clients: 16, keys: ["main", "k0", "k1", "k2", "k3"], maxSteps: 4, chaosEveryMs: [8, 30] },
	doubles: { messages: 400, clients: 24, keys: ["main", "s0", "s1", "s2", "s3", "s4"], maxSteps: 4, chaosEveryMs: [3, 15] },
};

// ---------------------------------------------------------------------------------------------
// The sessions

/** The faux model script of the pi variant (see the header). */
function registerModesScript() {
	return registerPacedScript({
		name: "Faux exactly-once-modes script",
		tokensPerSecond: 300,
		answer: (context) => {
			const messages = context.messages ?? [];
			const lastUser = messages.findLastIndex((m) => m.role === "user");
			const text = userTextOf(messages[lastUser]);
			if (!TEXT.test(text)) return fauxAssistantMessage(`unexpected user text ${JSON.stringify(text)}`);
			if (failsOf(text)) return fauxAssistantMessage([], { stopReason: "error", errorMessage: `boom m${idOf(text)}` });
			const done = messages.slice(lastUser + 1).filter((m) => m.role === "toolResult").length;
			if (done < stepsOf(text)) {
				return fauxAssistantMessage([fauxText(`m${idOf(text)}.${done} `), fauxToolCall("read", { path: HELLO_FILE })], {
					stopReason: "toolUse",
				});
			}
			return fauxAssistantMessage(`ok m${idOf(text)}`);
		},
	});
}

/**
 * Starts the gateway of a variant. `seen(key, text)` is called with every user text that reached
 * the model (pi: each user message_start; doubles: each prompt).
 */
async function startVariant(name, seen, aborted, cleared) {
	const config = {
		session: { maxQueuePerSession: MAX_QUEUE },
		events: { replayEvents: 200_000, replayBytes: 256 * 1024 * 1024 },
		sse: { bufferEvents: 200_000 },
	};
	if (name === "pi") {
		const gw = await startPiGateway({
			config,
			script: { registration: registerModesScript() },
			onSession: (key, session) => {
				const abort = session.abort;
				session.abort = function (...args) {
					aborted(key);
					return abort.apply(this, args);
				};
				const clearQueue = session.clearQueue;
				session.clearQueue = function (...args) {
					const removed = clearQueue.apply(this, args);
					cleared(key, removed);
					return removed;
				};
				session.subscribe((event) => {
					if (event.type === "message_start" && event.message?.role === "user") seen(key, userTextOf(event.message));
				});
			},
		});
		return { rt: gw.runtime, port: gw.port, close: () => gw.close() };
	}
	const makeSession = (key) => {
		const s = createDouble(key, { delayMs: (text) => 30 * stepsOf(text), reply: (text) => `ok m${idOf(text)}` });
		const prompt = s.prompt;
		const abort = s.abort;
		s.abort = () => {
			aborted(key);
			return abort();
		};
		s.prompt = (text, options) => {
			seen(key, text);
			if (failsOf(text)) {
				s.calls.prompt++;
				return Promise.reject(new Error(`boom m${idOf(text)}`));
			}
			return prompt(text, options);
		};
		return s;
	};
	const gw = await startGateway({ config, primarySession: makeSession("main"), createSession: async (key) => makeSession(key) });
	return { rt: gw.rt, port: gw.port, close: () => gw.stop() };
}

// ---------------------------------------------------------------------------------------------

async function chaosRun(t, variantName) {
	const V = VARIANTS[variantName];
	const seed = (SEED + (variantName === "pi" ? 0 : 1)) >>> 0;
	console.log(`exactly-once-modes (${variantName}) seed: ${seed} (PI_GW_SEED=${SEED} to repeat)`);
	t.diagnostic(`seed ${seed}`);
	const { rand, chaosRand, pick } = exactlyOnce.seeded(seed);
	const pickWeighted = (pairs, r = rand) => {
		let x = r() * pairs.reduce((s, [, w]) => s + w, 0);
		for (const [v, w] of pairs) if ((x -= w) < 0) return v;
		return pairs.at(-1)[0];
	};

	// ---- what reached the model: text -> [{key, at, seq}]
	const reached = new Map();
	let seq = 0;
	const seen = (key, text) => {
		if (!reached.has(text)) reached.set(text, []);
		reached.get(text).push({ key, at: Date.now(), seq: seq++ });
	};
	const abortCalls = []; // {key, at}: every abort() the sessions got
	const piClears = []; // {key, at, steering, followUp}: every clearQueue() pi's sessions got, and what it removed
	const gw = await startVariant(
		variantName,
		seen,
		(key) => abortCalls.push({ key, at: Date.now() }),
		(key, removed) => piClears.push({ key, at: Date.now(), steering: removed?.steering ?? [], followUp: removed?.followUp ?? [] }),
	);
	t.after(() => within(gw.close(), 20_000, "the gateway to close"));
	const { rt, port } = gw;
	const enc = encodeURIComponent;
	const started = Date.now();

	// ---- the plan, fixed by the seed
	const plan = [];
	for (let id = 0; id < V.messages; id++) {
		const key = pick(V.keys);
		const modeField = pickWeighted(MODE_WEIGHTS);
		const mode = modeField ?? "queue";
		const via = pick(VIAS);
		const steps = Math.floor(rand() * (V.maxSteps + 1));
		const fail = rand() < 0.04;
		const canRepeat = (via === "http" || via === "async-http" || via === "chat") && mode !== "reject";
		const leave = canRepeat && via !== "async-http" && rand() < 0.12;
		const idem = leave || (canRepeat && rand() < 0.25);
		plan.push({
			id,
			key,
			modeField,
			mode,
			via,
			text: `m${id} s${steps}${fail ? " f" : ""}`,
			idemKey: idem ? `eom-${seed}-${id}` : undefined,
			leave,
			leaveAfterMs: leave ? Math.floor(rand() * 60) : 0,
			repeats: leave ? 1 : idem ? 1 + Math.floor(rand() * 2) : 0,
			repeatGapMs: idem && rand() < 0.5 ? Math.floor(rand() * 60) : 0,
			gapMs: rand() < 0.1 ? 20 + Math.floor(rand() * 60) : Math.floor(rand() * 5),
			sends: [],
		});
	}
	exactlyOnce.assertEveryRunRetained(plan, 90);

	const problems = [];
	const problem = (s) => problems.push(s);
	const chatsInFlight = new Set();
	const withMode = (m, body) => (m.modeField === undefined ? body : { ...body, mode: m.modeField });

	// ---- one send; resolves an outcome and never rejects
	async function sendOnce(m) {
		const headers = m.idemKey ? { "idempotency-key": m.idemKey } : {};
		const out = { kind: "none", sentAt: Date.now() };
		const done = (o) => Object.assign(out, o, { answeredAt: Date.now() });
		const path = `/sessions/${enc(m.key)}`;
		const busyBody = (json, what) => {
			const want = { ok: false, response: "", error: "Session busy", sessionKey: m.key, runId: json?.runId };
			if (m.mode !== "reject") problem(`m${m.id} (${m.mode}): ${what} refused as busy: ${JSON.stringify(json)}`);
			if (JSON.stringify(json) !== JSON.stringify(want) || !UUID_V7.test(String(json?.runId))) {
				problem(`m${m.id}: ${what} 409 body ${JSON.stringify(json)}`);
			}
			return done({ kind: "busy", busyRunId: json?.runId });
		};
		const refusal = (status, json, headersOf, what) => {
			if (status === 429) {
				if (json?.error !== FULL_ERROR || json?.runId !== undefined || headersOf?.["x-run-id"] !== undefined) {
					problem(`m${m.id}: ${what} 429 that is not a plain queue-full refusal: ${JSON.stringify(json)}`);
				}
				if (m.mode === "reject") problem(`m${m.id}: reject answered 429 (reject never queues)`);
				return done({ kind: "full" });
			}
			if (status === 409) return busyBody(json, what);
			return undefined;
		};
		switch (m.via) {
			case "http": {
				const r = await postMessage(port, m.key, withMode(m, { text: m.text }), { headers, timeoutMs: PER_SEND_DEADLINE_MS });
				const refused = refusal(r.status, r.json, r.headers, "POST /messages");
				if (refused) return refused;
				if (!r.json || typeof r.json.ok !== "boolean" || !UUID_V7.test(String(r.json.runId))) {
					problem(`m${m.id}: POST /messages answered ${r.status} ${r.text}`);
					return done({ kind: "bad" });
				}
				if (r.headers["x-run-id"] !== r.json.runId) problem(`m${m.id}: x-run-id ${r.headers["x-run-id"]} but runId ${r.json.runId}`);
				if ((r.status === 200) !== r.json.ok) problem(`m${m.id}: status ${r.status} for ok:${r.json.ok}`);
				return done({ kind: "accepted", runId: r.json.runId, result: r.json, replayed: r.headers["idempotent-replayed"] });
			}
			case "api": {
				let res;
				try {
					res = await rt.enqueueMessage(withMode(m, { sessionKey: m.key, text: m.text }));
				} catch (e) {
					problem(`m${m.id}: enqueueMessage rejected: ${e?.message ?? e}`);
					return done({ kind: "bad" });
				}
				if (res?.error === "Session busy" && res.ok === false && res.runId !== undefined && m.mode === "reject") return busyBody(res, "enqueueMessage");
				if (res?.runId === undefined) {
					if (res?.error !== FULL_ERROR) problem(`m${m.id}: enqueueMessage without runId: ${JSON.stringify(res)}`);
					if (m.mode === "reject") problem(`m${m.id}: reject answered queue full`);
					return done({ kind: "full" });
				}
				return done({ kind: "accepted", runId: res.runId, result: res });
			}
			case "async-http": {
				const r = await postMessage(port, m.key, withMode(m, { text: m.text, wait: false }), { headers, timeoutMs: PER_SEND_DEADLINE_MS });
				const refused = refusal(r.status, r.json, r.headers, "wait:false");
				if (refused) return refused;
				if (r.status !== 202) {
					problem(`m${m.id}: wait:false answered ${r.status} ${r.text}`);
					return done({ kind: "bad" });
				}
				const keys = Object.keys(r.json).sort().join(",");
				if (keys !== "runId,sessionKey,status" && keys !== "delivered,runId,sessionKey,status") problem(`m${m.id}: 202 body ${r.text}`);
				const runId = r.json.runId;
				if (r.headers["x-run-id"] !== runId) problem(`m${m.id}: 202 x-run-id ${r.headers["x-run-id"]} but runId ${runId}`);
				if (r.headers.location !== runPath(m.key, runId)) problem(`m${m.id}: Location ${r.headers.location}`);
				const accepted = { runId, delivered: r.json.delivered, asyncStatus: r.json.status, replayed: r.headers["idempotent-replayed"], acceptedAt: Date.now() };
				const polled = await exactlyOnce.pollUntilEnded(port, m.key, runId, PER_SEND_DEADLINE_MS);
				if (polled.error) {
					problem(`m${m.id}: ${polled.error}`);
					return done({ kind: "bad" });
				}
				return done({ kind: "accepted", ...accepted, result: polled.run.result });
			}
			case "async-api": {
				let record;
				try {
					record = await rt.submitMessage(withMode(m, { sessionKey: m.key, text: m.text }));
				} catch (e) {
					const msg = String(e?.message ?? e);
					if (msg === "Session busy") {
						if (m.mode !== "reject") problem(`m${m.id} (${m.mode}): submitMessage threw Session busy`);
						return done({ kind: "busy" });
					}
					if (!/Queue full/.test(msg)) problem(`m${m.id}: submitMessage rejected: ${msg}`);
					if (m.mode === "reject") problem(`m${m.id}: reject answered queue full`);
					return done({ kind: "full" });
				}
				const acceptedAt = Date.now();
				if (!UUID_V7.test(String(record?.runId)) || !["queued", "running"].includes(record.status) || record.sessionKey !== m.key) {
					problem(`m${m.id}: submitMessage record ${JSON.stringify(record)}`);
				}
				let result;
				try {
					result = await within(rt.waitForRun(m.key, record.runId), PER_SEND_DEADLINE_MS, `waitForRun of m${m.id}`);
				} catch (e) {
					problem(`m${m.id}: waitForRun: ${e?.message ?? e}`);
					return done({ kind: "bad" });
				}
				return done({ kind: "accepted", runId: record.runId, delivered: record.delivered, asyncStatus: record.status, record, acceptedAt, result });
			}
			case "chat": {
				chatsInFlight.add(m);
				try {
					const r = await postChat(port, m.key, withMode(m, { id: `chat-${m.id}`, text: m.text }), { headers, timeoutMs: PER_SEND_DEADLINE_MS });
					const refused = refusal(r.status, r.json, r.headers, "/chat");
					if (refused) return refused;
					if (r.status !== 200) {
						problem(`m${m.id}: /chat answered ${r.status} ${r.text}`);
						return done({ kind: "bad" });
					}
					return done({ kind: "accepted", runId: r.headers["x-run-id"], chunks: r.chunks, replayed: r.headers["idempotent-replayed"] });
				} finally {
					chatsInFlight.delete(m);
				}
			}
		}
		throw new Error(`unknown transport ${m.via}`);
	}

	async function send(m) {
		try {
			m.sends.push(await within(sendOnce(m), PER_SEND_DEADLINE_MS + 3000, `m${m.id} (${m.via} ${m.mode} to ${m.key})`));
		} catch (e) {
			m.sends.push({ kind: "error", error: String(e?.message ?? e) });
		}
	}

	/** A client that sends and disconnects before its answer; its retry (same key) follows. */
	async function sendAndLeave(m) {
		const sentAt = Date.now();
		const headers = { "idempotency-key": m.idemKey };
		const path = m.via === "chat" ? `/sessions/${enc(m.key)}/chat` : `/sessions/${enc(m.key)}/messages`;
		const body = withMode(m, m.via === "chat" ? { id: `chat-${m.id}`, text: m.text } : { text: m.text });
		const r = await leaveEarly(port, "POST", path, { body, headers, afterMs: m.leaveAfterMs });
		m.sends.push({ kind: "left", sentAt, answeredAt: Date.now(), left: r.left, status: r.status });
	}

	let delivering = 0; // how many messages of the plan the clients have taken
	async function deliver(m) {
		delivering++;
		if (m.leave) {
			await sendAndLeave(m);
			if (m.repeatGapMs) await sleep(m.repeatGapMs);
			return send(m);
		}
		return exactlyOnce.sendWithRepeats(m, send);
	}

	// ---- the chaos, also from the seed
	const queueReads = []; // {key, json}
	const chaosLog = {
		delete: 0,
		cancelRun: 0,
		stop: 0,
		staleStop: 0,
		abort: 0,
		abortHttp: 0,
		clear: 0,
		deleteQueue: 0,
		reset: 0,
		deleteSession: 0,
		deletePrimary: 0,
		forcedDeletes: 0,
		getQueue: 0,
	};
	const chaos = exactlyOnce.chaosActions({ port, rt, rand: chaosRand, log: chaosLog, problem, chatsInFlight, primary: V.keys[0], keys: V.keys });
	// resets: {key, sentAt, answeredAt}; clears: {key, sentAt, answeredAt, how, json?}; aborts: {key, at, how, ok};
	// sessionDeletes: {key, sentAt, answeredAt, status}
	const { deletes, cancels, stops, resets, clears, aborts, sessionDeletes } = chaos;
	/** GET or DELETE …/queue of `key`: a 404 must be the contract's; the answer, or undefined after a 404. */
	const queueRequest = async (method, key) => {
		const what = `${method} queue ${key}`;
		const res = await within(request(port, method, `/sessions/${enc(key)}/queue`), 12_000, what);
		if (res.status === 404) {
			if (JSON.stringify(res.json) !== JSON.stringify({ error: `Session not found: ${key}` })) problem(`${what}: 404 ${res.text}`);
			return undefined;
		}
		if (res.status !== 200) problem(`${what}: ${res.status} ${res.text}`);
		return res;
	};
	await exactlyOnce.sendUnderChaos({
		plan,
		clients: V.clients,
		deliver,
		rand: chaosRand,
		keys: V.keys,
		everyMs: V.chaosEveryMs,
		actions: [
			[0.1, chaos.deleteRun],
			[0.17, chaos.cancelRun],
			[0.25, chaos.stopChat],
			[0.3, chaos.abort],
			[
				0.33,
				async (key) => {
					chaosLog.abortHttp++;
					const at = Date.now();
					const res = await within(request(port, "POST", `/sessions/${enc(key)}/abort`), 12_000, `abort ${key}`);
					aborts.push({ key, at, how: "POST abort", ok: res.json?.ok });
					if (![200, 404].includes(res.status)) problem(`abort ${key}: ${res.status} ${res.text}`);
				},
			],
			[0.36, chaos.clear],
			[
				0.39,
				async (key) => {
					chaosLog.deleteQueue++;
					const sentAt = Date.now();
					const res = await queueRequest("DELETE", key);
					if (res) clears.push({ key, sentAt, answeredAt: Date.now(), how: "DELETE", json: res.json });
				},
			],
			[0.41, chaos.reset],
			[0.445, chaos.deleteSession],
			[
				0.535,
				async (key) => {
					// Once half the plan is out, no session deleted yet: this one (not the primary) is.
					if (delivering > plan.length / 2 && !sessionDeletes.some((d) => d.status === 200)) {
						chaosLog.forcedDeletes++;
						return chaos.deleteSession(key === V.keys[0] ? V.keys[1] : key);
					}
					chaosLog.getQueue++;
					const res = await queueRequest("GET", key);
					if (res?.status === 200) queueReads.push({ key, json: res.json });
				},
			],
		],
		problem,
	});
	const sendMs = Date.now() - started;

	// ---- the accounting
	const byText = new Map(plan.map((m) => [m.text, m]));
	// runId -> record
	const records = await exactlyOnce.finalRecords(port, V.keys, problem, (rec) => {
		if (!["queue", "steer", "followUp", "interrupt", "reject"].includes(rec.mode)) problem(`run ${rec.runId}: mode ${JSON.stringify(rec.mode)}`);
	});
	for (const [text, entries] of reached) {
		const m = byText.get(text);
		if (!m) problem(`the model got an unknown user text ${JSON.stringify(text)}`);
		else if (entries.length > 1) problem(`m${m.id} reached the model ${entries.length} times`);
		for (const e of entries) if (m && e.key !== m.key) problem(`m${m.id} (for ${m.key}) reached the model of ${e.key}`);
	}

	// Each message's sends → its run; runs → their messages.
	const groups = new Map(); // runId -> [message]
	const counts = { accepted: 0, busy: 0, full: 0, left: 0, joinedRepeats: 0 };
	for (const m of plan) {
		const expectedSends = 1 + m.repeats;
		if (m.sends.length !== expectedSends) problem(`m${m.id}: ${m.sends.length} outcomes for ${expectedSends} sends`);
		for (const s of m.sends) if (s.kind === "error") problem(`m${m.id} (${m.via} ${m.mode}): ${s.error}`);
		const accepted = m.sends.filter((s) => s.kind === "accepted");
		const busy = m.sends.filter((s) => s.kind === "busy");
		counts.busy += busy.length;
		counts.full += m.sends.filter((s) => s.kind === "full").length;
		counts.left += m.sends.filter((s) => s.kind === "left").length;
		// When it was first sent, and first answered (sends are listed as they completed). A client
		// that left was not answered: its request may still be read after it left, so only a
		// whole answer counts as one.
		const tried = m.sends.filter((s) => s.kind === "accepted" || s.kind === "left");
		const answered = tried.filter((s) => s.kind === "accepted" || !s.left);
		m.first = tried.length
			? { sentAt: Math.min(...tried.map((s) => s.sentAt)), answeredAt: Math.min(...answered.map((s) => s.answeredAt)) }
			: m.sends[0];
		if (accepted.length === 0) {
			if (reached.has(m.text)) problem(`m${m.id}: never accepted, yet it reached the model`);
			continue;
		}
		if (busy.length > 0) problem(`m${m.id}: both accepted and refused as busy`);
		const runId = exactlyOnce.oneRunId(m, accepted, `${m.via} ${m.mode}`, problem);
		if (runId === undefined) continue;
		counts.accepted++;
		if (accepted.length > 1) counts.joinedRepeats++;
		if (m.via !== "api" && m.via !== "async-api") {
			const fresh = accepted.filter((s) => s.replayed === undefined);
			const rep = accepted.filter((s) => s.replayed === "true");
			if (fresh.length + rep.length !== accepted.length || fresh.length > 1 || (!m.leave && fresh.length !== 1)) {
				problem(`m${m.id}: ${fresh.length} fresh and ${rep.length} replayed answers of ${accepted.length} accepted (left: ${m.leave})`);
			}
		}
		m.runId = runId;
		m.accepted = accepted;
		if (!groups.has(runId)) groups.set(runId, []);
		groups.get(runId).push(m);
	}
	for (const runId of records.keys()) if (!groups.has(runId)) problem(`run ${runId} (${records.get(runId).status}, ${records.get(runId).mode}) is the run of no accepted message`);

	const describe = (rec) => {
		const ms = (groups.get(rec.runId) ?? []).map((m) => {
			const f = m.first;
			return `m${m.id}(${m.mode},${m.via}${m.idemKey ? ",idem" : ""}${m.leave ? ",left" : ""},${m.role ?? "?"},sent ${f?.sentAt},answered ${f?.answeredAt})`;
		});
		return `${rec.runId} [${rec.sessionKey} ${rec.mode} ${rec.status} created ${rec.createdAt} started ${rec.startedAt} ended ${rec.endedAt} ${JSON.stringify(rec.result?.error ?? "")}] of ${ms.join(" ")}`;
	};
	/** The chaos (and interrupts) that touched session `key` between `from` and `to`. */
	const around = (key, from, to) => {
		const inside = (a, b = a) => b >= from - 20 && a <= to + 20;
		const what = [
			...aborts.filter((a) => a.key === key && inside(a.at)).map((a) => `${a.how}@${a.at}(${a.ok})`),
			...clears.filter((c) => c.key === key && inside(c.sentAt, c.answeredAt)).map((c) => `${c.how}@${c.sentAt}…${c.answeredAt}`),
			...resets.filter((r) => r.key === key && inside(r.sentAt, r.answeredAt)).map((r) => `reset@${r.sentAt}…${r.answeredAt}`),
			...sessionDeletes.filter((d) => d.key === key && inside(d.sentAt, d.answeredAt)).map((d) => `DELETE session@${d.sentAt}…${d.answeredAt}→${d.status}`),
			...deletes.filter((d) => d.key === key && records.get(d.runId) && inside(records.get(d.runId).endedAt ?? 0)).map((d) => `DELETE ${d.runId}→${d.status}`),
			...[...records.values()].filter((r) => r.sessionKey === key && r.mode === "interrupt" && inside(r.createdAt)).map((r) => `interrupt ${r.runId}@${r.createdAt}`),
		];
		return what.length ? ` [around: ${what.join(", ")}]` : " [no chaos around]";
	};
	/**
	 * null when message `m`, handed to run `rec`, may have been taken out of pi's queue by a clear
	 * (rt.clearQueue, DELETE …/queue) the test issued while it could be there (from when it was
	 * sent to the run's end); else why not.
	 */
	const lostToClear = (m, rec) => {
		const issued = clears.some((c) => c.key === m.key && c.answeredAt >= m.first.sentAt && c.sentAt <= rec.endedAt);
		if (issued) return null;
		const byPi = piClears.find((c) => c.key === m.key && [...c.steering, ...c.followUp].includes(m.text));
		if (byPi) {
			const late = clears.filter((c) => c.key === m.key && c.answeredAt < m.first.sentAt && c.answeredAt >= rec.startedAt - 1000);
			return `pi's clearQueue() removed it at ${byPi.at}, for a clear issued before it was sent (${late.map((c) => `${c.how}@${c.sentAt}…${c.answeredAt}`).join(", ") || "none issued"})`;
		}
		return "no clear removed it from pi's queue";
	};
	const runningAt = (key, at) => [...records.values()].filter((r) => r.sessionKey === key && r.startedAt !== undefined && r.startedAt <= at && r.endedAt >= at);

	// Refusals as busy: the run named (or some run) was alive while the request was in flight.
	const alive = (rec, from, to) => rec.createdAt <= to && (rec.endedAt ?? Number.POSITIVE_INFINITY) >= from;
	for (const m of plan) {
		for (const s of m.sends.filter((x) => x.kind === "busy")) {
			if (s.busyRunId !== undefined) {
				const rec = records.get(s.busyRunId);
				if (!rec) problem(`m${m.id}: 409 names run ${s.busyRunId}, not a run of any session`);
				else if (rec.sessionKey !== m.key) problem(`m${m.id}: 409 names run ${s.busyRunId} of ${rec.sessionKey}`);
				else if (!alive(rec, s.sentAt, s.answeredAt)) {
					problem(`m${m.id}: 409 names run ${s.busyRunId}, which was not queued or running while the request was in flight: ${JSON.stringify({ rec, sentAt: s.sentAt, answeredAt: s.answeredAt })}`);
				}
			} else if (![...records.values()].some((rec) => rec.sessionKey === m.key && alive(rec, s.sentAt, s.answeredAt))) {
				problem(`m${m.id}: Session busy, but no run of ${m.key} was queued or running then`);
			}
		}
	}

	// Runs and their messages.
	const isDeliveredMode = (mode) => mode === "steer" || mode === "followUp";
	const statuses = {};
	const deliveredCount = { steer: 0, followUp: 0 };
	const ownModes = {};
	const chatStartOf = (s) => s.chunks?.find((c) => c?.type === "start");
	/** Whether `rec` was cancelled by the end of its session: a reset or a deletion. */
	const endedWithSession = (rec) => [exactlyOnce.SESSION_RESET, exactlyOnce.SESSION_DELETED].includes(rec.result?.error);
	const deletedRuns = { queued: 0, running: 0, chats: 0, forgotten: 0 }; // runs a deletion cancelled, by where they were; their chat streams; runs whose log a deletion forgot
	for (const [runId, members] of groups) {
		const rec = records.get(runId);
		const names = members.map((m) => `m${m.id}(${m.mode},${m.via})`).join(" ");
		if (!rec) {
			problem(`run ${runId} of ${names}: not in its session's run list`);
			continue;
		}
		statuses[rec.status] = (statuses[rec.status] ?? 0) + 1;
		for (const m of members) if (rec.sessionKey !== m.key) problem(`m${m.id}: run ${runId} of ${rec.sessionKey}, sent to ${m.key}`);

		// Who owns the run, who was delivered into it.
		for (const m of members) {
			const fresh = m.accepted.find((s) => s.replayed === undefined) ?? m.accepted[0];
			if (!isDeliveredMode(m.mode)) m.role = "owner";
			else if (m.accepted.some((s) => s.delivered !== undefined)) m.role = "delivered";
			// wait:false and submitMessage say `delivered` when they hand over: without it, a run of its own.
			else if (m.accepted.some((s) => s.asyncStatus !== undefined)) m.role = "owner";
			else if (m.via === "chat" && chatStartOf(fresh) && fresh.replayed === undefined) m.role = chatStartOf(fresh).messageId === runId ? "owner" : "delivered";
			else m.role = "unknown";
			for (const s of m.accepted) {
				if (s.delivered !== undefined) {
					if (s.delivered !== m.mode) problem(`m${m.id} (${m.mode}): delivered ${JSON.stringify(s.delivered)}`);
					if (s.asyncStatus !== "running") problem(`m${m.id}: delivered into run ${runId} whose status was ${s.asyncStatus}`);
				}
			}
		}
		const owners = members.filter((m) => m.role === "owner");
		const unknown = members.filter((m) => m.role === "unknown");
		if (owners.length > 1) problem(`run ${runId} has ${owners.length} owners: ${names}`);
		if (!isDeliveredMode(rec.mode)) {
			if (owners.length !== 1 || owners[0].mode !== rec.mode) problem(`run ${runId} (mode ${rec.mode}): its messages ${names} (roles ${members.map((m) => m.role)})`);
		} else {
			if (members.some((m) => !isDeliveredMode(m.mode))) problem(`run ${runId} (mode ${rec.mode}) answered ${names}`);
			if (owners.length + unknown.filter((m) => m.mode === rec.mode).length < 1) problem(`run ${runId} (mode ${rec.mode}): no message could own it: ${names}`);
			if (owners.length === 1 && owners[0].mode !== rec.mode) problem(`run ${runId} (mode ${rec.mode}) owned by m${owners[0].id} (${owners[0].mode})`);
		}
		ownModes[rec.mode] = (ownModes[rec.mode] ?? 0) + 1;
		// Of the rest, a message cannot own the run when its mode is not the run's, or when it was
		// sent after the run was created; one candidate left owns it.
		for (const m of unknown) {
			if (m.mode !== rec.mode || m.first.sentAt > rec.createdAt + SLACK_MS) m.role = "delivered";
		}
		const candidates = members.filter((m) => m.role === "owner" || m.role === "unknown");
		if (candidates.length === 1 && candidates[0].role === "unknown") candidates[0].role = "owner";
		if (candidates.length === 0) problem(`run ${describe(rec)}: no message could own it`);
		const ownerKnown = members.filter((m) => m.role === "owner").length === 1;
		const nonOwners = members.filter((m) => m.role === "delivered" || (m.role === "unknown" && ownerKnown));
		if (variantName === "doubles" && members.length !== 1) problem(`doubles: run ${runId} answered ${names} (no steer/followUp: each message owns its run)`);
		if (variantName === "doubles" && members.some((m) => m.role === "delivered")) problem(`doubles: a message of run ${runId} was delivered: ${names}`);

		// What each caller got is the run's record.
		for (const m of members) {
			for (const s of m.accepted) {
				if (m.via === "chat") {
					exactlyOnce.checkChatEnding(m, s.chunks ?? [], rec.status, problem, rec.result);
					if (rec.result?.error === exactlyOnce.SESSION_DELETED) deletedRuns.chats++;
					const start = chatStartOf(s);
					if (s.replayed === undefined && start) {
						if (m.role === "owner" && start.messageId !== runId) problem(`m${m.id}: owner's chat starts ${JSON.stringify(start)} for run ${runId}`);
						if (m.role === "delivered" && start.messageId === runId) problem(`m${m.id}: a delivered chat reuses the run's messageId`);
					}
					if (m.role === "owner" && rec.status !== "cancelled" && s.replayed === undefined && !start) problem(`m${m.id}: chat of a ${rec.status} run without start`);
				} else if (JSON.stringify(s.result) !== JSON.stringify(rec.result)) {
					try {
						assert.deepEqual(s.result, rec.result);
					} catch {
						problem(`m${m.id} (${m.via}): answered ${JSON.stringify(s.result)} but the record says ${JSON.stringify(rec.result)}`);
					}
				}
			}
		}

		// Delivered messages went into a run that had started and had not ended.
		for (const m of nonOwners) {
			deliveredCount[m.mode]++;
			const first = m.first;
			if (rec.startedAt === undefined) problem(`m${m.id} (${m.mode}) was delivered into run ${runId}, which never started`);
			else if (rec.startedAt > first.answeredAt + SLACK_MS) {
				const sends = m.sends.map((s) => `${s.kind}${s.left !== undefined ? `(left ${s.left}, ${s.status})` : ""}@${s.sentAt}…${s.answeredAt}`).join(", ");
				problem(`m${m.id} (${m.mode}) answered before its run ${describe(rec)} started; its sends: ${sends}${around(m.key, first.sentAt, rec.startedAt)}`);
			}
			if (rec.endedAt !== undefined && rec.endedAt + SLACK_MS < first.sentAt) problem(`m${m.id} (${m.mode}) was delivered into run ${runId}, which had ended before it was sent`);
		}

		// What reached the model.
		const inLifetime = (e) => rec.startedAt !== undefined && e.at >= rec.startedAt - SLACK_MS && e.at <= rec.endedAt + SLACK_MS;
		for (const m of members) {
			for (const e of reached.get(m.text) ?? []) {
				// A run a reset or a deletion cancelled ends at once; its old pi session may still be winding down.
				const windingDown = rec.status === "cancelled" && endedWithSession(rec) && e.at > rec.endedAt && runningAt(m.key, e.at).length === 0;
				if (!inLifetime(e) && !windingDown) {
					problem(
						`m${m.id} (${m.role}) reached the model at ${e.at}, outside its run ${describe(rec)}; running then: ${runningAt(m.key, e.at).map(describe).join(" | ") || "none"}${around(m.key, rec.startedAt ?? rec.createdAt, e.at)}`,
					);
				}
			}
		}
		const clearedDuring = (m) => lostToClear(m, rec) === null;
		const lastReached = members
			.filter((m) => reached.has(m.text))
			.sort((a, b) => reached.get(a.text)[0].seq - reached.get(b.text)[0].seq)
			.at(-1);
		switch (rec.status) {
			case "succeeded": {
				// With no owner known, any of the candidates left may own the run: one that never
				// reached the model is handed-over (so excusable by a clear) when another that
				// reached it once could be the owner.
				const reachedOnce = (m) => (reached.get(m.text)?.length ?? 0) === 1;
				const maybeHandedOver = (m) =>
					nonOwners.includes(m) || (!ownerKnown && m.role === "unknown" && members.some((o) => o !== m && o.role === "unknown" && reachedOnce(o)));
				for (const m of members) {
					const n = reached.get(m.text)?.length ?? 0;
					const excused = n === 0 && maybeHandedOver(m) && clearedDuring(m);
					if (n !== 1 && !excused) {
						const why = n === 0 && maybeHandedOver(m) ? `; ${lostToClear(m, rec)}` : "";
						problem(`m${m.id} (${m.role}) of succeeded run ${describe(rec)} reached the model ${n} times${why}${around(m.key, rec.startedAt, rec.endedAt)}`);
					}
				}
				if (!lastReached) problem(`succeeded run ${runId} (${names}): nothing reached the model`);
				else if (rec.result.response !== `ok m${lastReached.id}`) {
					problem(`run ${describe(rec)} answered ${JSON.stringify(rec.result.response)}, the last of its messages to reach the model was m${lastReached.id}${around(rec.sessionKey, rec.startedAt, rec.endedAt)}`);
				}
				break;
			}
			case "failed": {
				const id = Number(/boom m(\d+)/.exec(String(rec.result.error))?.[1]);
				const culprit = members.find((m) => m.id === id);
				if (!culprit || !failsOf(culprit.text)) problem(`run ${runId} (${names}) failed with ${JSON.stringify(rec.result.error)}`);
				else if (!reached.has(culprit.text)) problem(`run ${runId} failed on m${id}, which never reached the model`);
				break;
			}
			case "aborted":
				if (rec.startedAt === undefined) problem(`run ${runId} (${names}) aborted without ever starting`);
				break;
			case "cancelled":
				if (rec.startedAt === undefined) {
					if (members.length !== 1) problem(`run ${runId} cancelled before it started, yet ${names} joined it`);
					for (const m of members) if (reached.has(m.text)) problem(`m${m.id}: its run ${runId} never started, yet it reached the model`);
				} else if (!endedWithSession(rec)) {
					problem(`run ${runId} (${names}) cancelled after it started, but not by a reset or a deletion: ${rec.result.error}`);
				} else if (rec.result.error === exactlyOnce.SESSION_RESET && !exactlyOnce.resetWhileRunning(resets, rec)) {
					problem(`run ${runId}: cancelled by a reset while running, but no reset of ${rec.sessionKey} was in flight`);
				}
				// A deletion ends its session's runs inside the DELETE that answered 200 (the
				// primary's is refused: nothing of it may end so).
				if (rec.result.error === exactlyOnce.SESSION_DELETED) {
					deletedRuns[rec.startedAt === undefined ? "queued" : "running"]++;
					if (!exactlyOnce.deletionThatEnded(sessionDeletes, rec, SLACK_MS)) {
						problem(`run ${describe(rec)} ended "Session deleted", but no DELETE of ${rec.sessionKey} that answered 200 was in flight then${around(rec.sessionKey, rec.createdAt, rec.endedAt)}`);
					}
				}
				break;
			default:
				problem(`run ${runId}: status ${rec.status}`);
		}
		if (!rec.result || rec.result.runId !== runId || rec.result.sessionKey !== rec.sessionKey || rec.result.ok !== (rec.status === "succeeded")) {
			problem(`run ${runId}: result ${JSON.stringify(rec.result)} for status ${rec.status}`);
		}
	}

	// reject accepted ⇒ the session was idle: no other run of it was queued or running when its
	// run was created. interrupt ⇒ the run running then is aborted (or reset), and every
	// non-interrupt run queued then starts after it.
	const runsOf = (key) => [...records.values()].filter((r) => r.sessionKey === key);
	let interruptsThatAborted = 0;
	let interruptRaces = 0;
	let rejectsAccepted = 0;
	for (const rec of records.values()) {
		const others = runsOf(rec.sessionKey).filter((r) => r.runId !== rec.runId);
		if (rec.mode === "reject") {
			rejectsAccepted++;
			const busyWith = others.filter((r) => r.createdAt < rec.createdAt && (r.endedAt ?? Number.POSITIVE_INFINITY) > rec.createdAt + PLACEMENT_SLACK_MS);
			if (busyWith.length) {
				problem(`reject run ${describe(rec)} was accepted while ${busyWith.map(describe).join(", ")} was queued or running${around(rec.sessionKey, Math.min(...busyWith.map((r) => r.createdAt)), rec.endedAt)}`);
			}
		}
		if (rec.mode === "interrupt") {
			for (const r of others) {
				if (r.startedAt === undefined || r.startedAt >= rec.createdAt || r.endedAt < rec.createdAt) continue;
				// r was running when the interrupt arrived.
				if (r.status === "aborted") interruptsThatAborted++;
				else if (r.status !== "cancelled" && r.endedAt > rec.createdAt + SLACK_MS) {
					// It ended as it would have: the abort reached the session after its prompt had
					// finished (a race the gateway cannot win), but the gateway must have asked.
					const asked = abortCalls.some((a) => a.key === r.sessionKey && a.at >= rec.createdAt - SLACK_MS && a.at <= r.endedAt + 5000);
					if (!asked) problem(`interrupt run ${describe(rec)} found run ${describe(r)} running, which then ${r.status}, and its session was never asked to abort`);
					else interruptRaces++;
				}
			}
			if (rec.startedAt !== undefined) {
				for (const q of others) {
					if (q.mode !== "interrupt" && q.createdAt < rec.createdAt && q.startedAt !== undefined && q.startedAt > rec.createdAt + PLACEMENT_SLACK_MS && q.startedAt < rec.startedAt) {
						problem(`interrupt run ${describe(rec)} ran after ${describe(q)}, queued when it arrived`);
					}
				}
			}
		}
	}

	// A DELETE of a session that answered 200 ended every run of it that was queued or running
	// when the DELETE arrived (runs created before it was sent, placed by then).
	for (const d of sessionDeletes.filter((x) => x.status === 200)) {
		for (const r of runsOf(d.key)) {
			if (r.createdAt + PLACEMENT_SLACK_MS < d.sentAt && r.endedAt > d.answeredAt + SLACK_MS) {
				problem(`run ${describe(r)} outlived the deletion of its session (DELETE sent ${d.sentAt}, answered ${d.answeredAt})${around(d.key, d.sentAt, r.endedAt)}`);
			}
		}
	}

	// The log: one run_end per run with the record's status; one run_start for a run that started;
	// queue_update evidence for delivered messages. A deletion forgets the session's log: the log
	// read now began with the key's last deletion (answered 200), so it holds no run that ended
	// before that DELETE was sent and every run created after it was answered; a run in between
	// is wholly there or not at all.
	const queueUpdates = new Map(); // runId -> [{steering, followUp}]
	const inReadLog = new Set(); // the runs whose events the logs read now hold (not forgotten by a deletion)
	for (const key of V.keys) {
		let log;
		try {
			log = await readLog(port, key, { timeoutMs: 30_000 });
		} catch (e) {
			problem(`${key}: reading the log: ${e?.message ?? e}`);
			continue;
		}
		if (log.hello.data.missed) problem(`${key}: the log no longer reaches back (missed)`);
		const { starts, ends } = exactlyOnce.tallyRunEvents(log.frames, (e) => {
			if (e.type !== "queue_update") return;
			if (!Array.isArray(e.steering) || !Array.isArray(e.followUp) || e.sessionKey !== key) problem(`${key}: queue_update ${JSON.stringify(e)}`);
			if (variantName === "doubles") problem(`doubles: a queue_update from a session without pi's queue: ${JSON.stringify(e)}`);
			if (e.runId !== undefined) queueUpdates.set(e.runId, [...(queueUpdates.get(e.runId) ?? []), e]);
		});
		for (const id of [...starts.keys(), ...ends.keys()]) if (!groups.has(id)) problem(`${key}: the log has a run ${id} that no caller was answered for`);
		const lastDeletion = sessionDeletes.filter((d) => d.key === key && d.status === 200).at(-1);
		for (const [runId, members] of groups) {
			if (members[0].key !== key) continue;
			const rec = records.get(runId);
			if (!rec) continue;
			const inLog = starts.has(runId) || ends.has(runId);
			if (lastDeletion && rec.createdAt <= lastDeletion.answeredAt + SLACK_MS) {
				if (rec.endedAt < lastDeletion.sentAt - SLACK_MS) {
					if (inLog) problem(`run ${describe(rec)}: in ${key}'s log, though it ended before the session was deleted (DELETE sent ${lastDeletion.sentAt})`);
					deletedRuns.forgotten++;
					continue;
				}
				if (!inLog) continue;
			}
			inReadLog.add(runId);
			const e = ends.get(runId) ?? [];
			if (e.length !== 1) problem(`run ${runId}: ${e.length} run_end events`);
			else if (e[0].status !== rec.status) problem(`run ${runId}: run_end ${e[0].status} but record ${rec.status}`);
			const s = starts.get(runId) ?? 0;
			if (s > 1) problem(`run ${runId}: ${s} run_start events`);
			if ((rec.startedAt !== undefined) !== (s === 1)) problem(`run ${runId}: startedAt ${rec.startedAt} with ${s} run_start events`);
		}
	}
	for (const [runId, members] of groups) {
		const rec = records.get(runId);
		if (!rec || (rec.status !== "succeeded" && rec.status !== "failed")) continue;
		// The evidence of a run whose log a deletion forgot is gone with it.
		if (!inReadLog.has(runId)) continue;
		const ownerKnown = members.filter((m) => m.role === "owner").length === 1;
		for (const m of members.filter((x) => x.role === "delivered" || (x.role === "unknown" && ownerKnown))) {
			const list = m.mode === "steer" ? "steering" : "followUp";
			const handed = (queueUpdates.get(runId) ?? []).some((e) => e[list].includes(m.text));
			if (!handed && !reached.has(m.text) && lostToClear(m, rec) !== null) {
				problem(
					`m${m.id} (${m.mode}) joined run ${describe(rec)}, but pi never had it in that run (no queue_update of the run lists it, it never reached the model)${around(rec.sessionKey, m.first.sentAt, rec.endedAt)}`,
				);
			}
		}
	}

	// The queue resource, as the chaos saw it.
	const textsOf = (key, mode) => new Set(plan.filter((m) => m.key === key && m.mode === mode).map((m) => m.text));
	for (const { key, json } of queueReads) {
		const keys = Object.keys(json ?? {}).sort().join(",");
		if (keys !== "followUp,queued,running,steering") {
			problem(`GET queue ${key}: ${JSON.stringify(json)}`);
			continue;
		}
		if (json.running !== null && (json.running.status !== "running" || json.running.sessionKey !== key)) problem(`GET queue ${key}: running ${JSON.stringify(json.running)}`);
		if (!Array.isArray(json.queued) || json.queued.some((r) => r.status !== "queued" || r.sessionKey !== key)) problem(`GET queue ${key}: queued ${JSON.stringify(json.queued)}`);
		for (const [list, mode] of [["steering", "steer"], ["followUp", "followUp"]]) {
			const ours = textsOf(key, mode);
			if (!Array.isArray(json[list]) || json[list].some((x) => !ours.has(x))) problem(`GET queue ${key}: ${list} ${JSON.stringify(json[list])}`);
		}
	}
	let clearedTexts = 0;
	for (const c of clears.filter((x) => x.how === "DELETE")) {
		const j = c.json;
		if (j?.ok !== true || !Number.isInteger(j.cleared) || j.cleared < 0 || !Array.isArray(j.steering) || !Array.isArray(j.followUp) || Object.keys(j).length !== 4) {
			problem(`DELETE queue ${c.key}: ${JSON.stringify(j)}`);
			continue;
		}
		for (const [list, mode] of [["steering", "steer"], ["followUp", "followUp"]]) {
			const ours = textsOf(c.key, mode);
			for (const x of j[list]) {
				clearedTexts++;
				if (!ours.has(x)) problem(`DELETE queue ${c.key} removed ${JSON.stringify(x)} from ${list}, not one of our ${mode} texts`);
			}
		}
	}

	// The chaos' own answers agree with the records.
	const { deleteKinds, stopsOk } = exactlyOnce.checkChaosAnswers({ records, deletes, cancels, stops, chatRunId: (m) => m.runId, problem });

	// ---- afterwards: every session answers a good message, and its queue is empty.
	let finalId = V.messages;
	for (const key of V.keys) {
		const text = `m${finalId} s1`;
		plan.push({ id: finalId, key, text });
		byText.set(text, plan.at(-1));
		finalId++;
		const r = await postMessage(port, key, { text }, { timeoutMs: 15_000 }).catch((e) => ({ status: 0, text: String(e) }));
		if (r.status !== 200 || r.json?.ok !== true || r.json?.response !== `ok m${finalId - 1}`) problem(`${key}: the final message answered ${r.status} ${r.text}`);
		const q = await request(port, "GET", `/sessions/${enc(key)}/queue`);
		if (q.status !== 200 || JSON.stringify(q.json) !== JSON.stringify(EMPTY_QUEUE)) problem(`${key}: GET queue at the end: ${q.status} ${q.text}`);
		const snap = rt.getSession(key);
		if (!snap || snap.processing || snap.queueDepth !== 0) problem(`${key} at the end: ${JSON.stringify(snap)}`);
		if ((reached.get(text)?.length ?? 0) !== 1) problem(`${key}: the final message reached the model ${reached.get(text)?.length ?? 0} times`);
	}

	const elapsed = Date.now() - started;
	const sessionDeleteKinds = {};
	for (const d of sessionDeletes) sessionDeleteKinds[d.status] = (sessionDeleteKinds[d.status] ?? 0) + 1;
	t.diagnostic(
		`${variantName} seed ${seed}; statuses ${JSON.stringify(statuses)}; run modes ${JSON.stringify(ownModes)}; delivered ${JSON.stringify(deliveredCount)}; ` +
			`sends ${JSON.stringify(counts)}; accepted rejects ${rejectsAccepted}; interrupts that aborted ${interruptsThatAborted} (late: ${interruptRaces}); cleared texts ${clearedTexts}; ` +
			`deletes ${JSON.stringify(deleteKinds)}; chat stops ok ${stopsOk}; session deletes ${JSON.stringify(sessionDeleteKinds)}; runs a deletion cancelled ${JSON.stringify(deletedRuns)}; ` +
			`chaos ${JSON.stringify(chaosLog)}; sends ${sendMs} ms; total ${elapsed} ms`,
	);
	assert.deepEqual(problems, [], `${variantName}, seed ${seed} (PI_GW_SEED=${SEED}):\n${problems.slice(0, 30).join("\n")}`);

	// The run really exercised every mode and every ending.
	for (const status of ["succeeded", "aborted", "cancelled"]) assert.ok((statuses[status] ?? 0) > 0, `no ${status} run: ${JSON.stringify(statuses)}`);
	for (const mode of ["queue", "interrupt", "reject"]) assert.ok((ownModes[mode] ?? 0) > 0, `no run of mode ${mode}: ${JSON.stringify(ownModes)}`);
	assert.ok(counts.busy > 0, "some rejects were refused as busy");
	assert.ok(interruptsThatAborted > 0, "some interrupt aborted a running run");
	assert.ok(counts.joinedRepeats > 0, "some idempotent repeats joined a run");
	assert.ok(counts.left > 0, "some clients left and retried");
	assert.ok((sessionDeleteKinds[200] ?? 0) > 0, `some session was deleted: ${JSON.stringify(sessionDeleteKinds)}`);
	if (variantName === "pi") {
		assert.ok(deliveredCount.steer > 0, `some steer messages went into a running run: ${JSON.stringify(deliveredCount)}`);
		assert.ok(deliveredCount.followUp > 0, `some followUp messages went into a running run: ${JSON.stringify(deliveredCount)}`);
	} else {
		for (const mode of ["steer", "followUp"]) assert.ok((ownModes[mode] ?? 0) > 0, `doubles: no ${mode} fell back to a run of its own: ${JSON.stringify(ownModes)}`);
	}
	assert.ok(sendMs < 120_000, `the sends took ${sendMs} ms`);
}

test("exactly once with queue modes, on real pi AgentSessions (steer and followUp through pi)", { timeout: 240_000 }, (t) => chaosRun(t, "pi"));

test("exactly once with queue modes, on session doubles without steer/followUp (those fall back to queue)", { timeout: 180_000 }, (t) => chaosRun(t, "doubles"));
