// Exactly once, with tool approvals (issue 15, SPEC §13): the randomized, seeded approach of
// exactly-once-runs / exactly-once-modes with real pi AgentSessions on the faux model
// (lib/faux-agent.js, ephemeral) behind `approval.policy {bash: "ask"}` and a short
// `approval.timeoutMs` (400–1000 ms, from the seed), so some approvals time out.
//
// The plan: 48 messages over four keys (the primary and three more), each one of
// - `/bash <cmd>` (one held call), `/bash <cmd> ;; <cmd>` (two held calls in one message),
//   `/bash <cmd> ;; @read hello.txt` (a held bash call and an allowed read in one message) —
//   every bash command prints its marker name and writes its own marker file (`m<id>-<n>`)
//   into a temp dir, so "did it run" is read on disk;
// - `/echo m<id>`, `/slow 5` (no tool call);
// sent by several concurrent clients as POST /messages (waiting), POST /messages wait:false then
// polling the run, or POST /chat (protocol 6: a held call pauses the stream; 70 % of the paused
// chats send the continuation — the assistant message with `approval-responded` parts, as
// `addToolApprovalResponse` + `sendAutomaticallyWhen` do — after a random delay, sometimes after
// the timeout, sometimes twice); 8 % with mode `interrupt`.
// Meanwhile the chaos (seeded): lists pending approvals (REST or listApprovals) and decides them
// (REST or resolveApproval; approve or deny, with or without a reason; sometimes a second decision,
// which must be 409; sometimes a bad body first, which must be 400 and change nothing), aborts
// (abortSession, POST …/abort), cancels runs (cancelRun, DELETE …/runs/:id), stops chats, resets
// sessions and deletes them (DELETE /sessions/:key; the primary must answer 409). Every event of
// every key is read all along by a reader that reconnects when a deletion (or a reset) ends its
// stream, so the events of deleted sessions are kept too.
//
// The checks, afterwards:
// - every send got one answer before its deadline; refusals only 429 "Queue full"; every accepted
//   message has exactly one run, every run of every key belongs to one accepted message, and has
//   ended; what each caller got is the run's record (result; a chat stream's ending); every run has
//   exactly one run_end, with the record's status;
// - the event readers: the ids of a key never come again with other events (index.d.ts: strictly
//   increasing per key, also across a deletion: the next session's log starts above them);
// - every approval_request (exactly the contract's fields, toolName bash, tagged with a run of its
//   key) has exactly one approval_resolved with its approvalId and toolCallId, after it, in the
//   same log (session), before its run's run_end; `by` is client | timeout | abort; approved only
//   by a client; timeout and abort carry a reason; two held calls of one message are requested
//   back to back; by abort ⇒ the run did not succeed;
// - the chaos' own answers agree with the events: a 200 is the decision that stands (same approved
//   and reason, `by: client`); a decision by a client is one some client made (a 200, or a chat
//   continuation that named it); 409 names the decision that stands; 404 only when a reset or
//   deletion of the session came first; 400 for the bad body; a second decision is never a 200;
//   a 409 saying "timeout" did not come before the approval expired;
// - a chat stream that paused asked exactly the run's approvals; a continuation answers 200 (or 404
//   "Run not found" once its session was reset or deleted) and ends as the run did; for a run that
//   succeeded, it carries tool-output-available for approved calls and tool-output-denied for the
//   others;
// - on disk: a marker exists iff its bash call's approval was resolved approved:true — never for a
//   denied, timed-out or aborted call, never without an approval_request; an approved call of a run
//   that succeeded always ran (an approved call of a run that was then aborted or cancelled may not
//   have: pi may stop before it runs the message's tools; counted); a succeeded run answered one line
//   per call as the decisions say (`bash said: <marker>`, `bash failed: Denied …`, `read said: …`);
//   a run without a held call asked nothing;
// - no pending approvals remain (GET …/approvals and listApprovals are []), no session is busy,
//   and every session (a deleted one anew) still answers a good `/echo ok`.
//
// The seed (PI_GW_SEED to choose another) fixes the plan and the chaos; interleavings are not
// fixed, so the checks hold for every interleaving. The seed is printed, and named on failure.
//
// Run: PI_GW_SEED=9501 node --test __test__/exactly-once-approvals.test.mjs

import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isDeepStrictEqual } from "node:util";

import { fauxLongText, HELLO_CONTENT, HELLO_FILE } from "../lib/faux-agent.js";
import { alreadyDecided, approvalActions, continuationBody, INVALID_APPROVED, notFound, REQUEST_FIELDS, watchEvents } from "./support/approval-chaos.mjs";
import { bashMessage, DENIED_ABORTED, DENIED_BY_USER, deniedByUser, markCommand } from "./support/approval-util.mjs";
import * as exactlyOnce from "./support/exactly-once-util.mjs";
import { startChatGateway } from "./support/gateway.mjs";
import { request } from "./support/http.mjs";
import { postChat, postMessage, runPath, UUID_V7 } from "./support/runs.mjs";
import { sleep, within } from "./support/wait.mjs";

const SEED = Number(process.env.PI_GW_SEED ?? 0x15a990e5) >>> 0;
const MESSAGES = 48;
const CLIENTS = 6;
const KEYS = ["main", "k0", "k1", "k2"];
const MAX_QUEUE = 16;
const PER_SEND_DEADLINE_MS = 45_000;
const FULL_ERROR = `Queue full (${MAX_QUEUE} pending).`;
const KINDS = [
	["bash1", 0.3],
	["bash2", 0.18],
	["mixed", 0.14],
	["echo", 0.22],
	["slow", 0.16],
];
const VIAS = [
	["http", 0.35],
	["async", 0.3],
	["chat", 0.35],
];
const READ_COMMAND = `@read ${HELLO_FILE}`;
const SLOW_WORDS = 5;
const TIMEOUT_LINE = /^bash failed: Denied: no decision within \d+(\.\d+)? s$/;
/** The marker name a command of the plan writes. */
const markerOf = (command) => /; echo ran > '[^']*\/(m\d+-\d+)'$/.exec(String(command))?.[1];
const BY = new Set(["client", "timeout", "abort"]);

test("tool approvals under chaos: every held call is resolved exactly once, nothing runs unapproved, nothing approved is lost, every run ends", { timeout: 115_000 }, async (t) => {
	console.log(`exactly-once-approvals seed: ${SEED} (PI_GW_SEED=${SEED} to repeat)`);
	t.diagnostic(`seed ${SEED}`);
	const started = Date.now();
	const { rand, chaosRand, pick } = exactlyOnce.seeded(SEED);
	const pickWeighted = (pairs, r = rand) => {
		let x = r() * pairs.reduce((s, [, w]) => s + w, 0);
		for (const [v, w] of pairs) if ((x -= w) < 0) return v;
		return pairs.at(-1)[0];
	};
	const timeoutMs = 400 + 100 * Math.floor(rand() * 7);

	const problems = [];
	const problem = (s) => problems.push(s);
	const markers = await mkdtemp(join(tmpdir(), "pi-gw-eo-approvals-"));
	const watchers = new Map();
	let gw;
	t.after(async () => {
		for (const w of watchers.values()) await within(w.stop(), 15_000, "an event reader to stop").catch(() => {});
		if (gw) await within(gw.close(), 20_000, "the gateway to close");
		await rm(markers, { recursive: true, force: true });
	});
	gw = await startChatGateway({
		faux: { ephemeral: true },
		config: {
			approval: { policy: { bash: "ask" }, timeoutMs },
			session: { maxQueuePerSession: MAX_QUEUE },
			events: { replayEvents: 200_000, replayBytes: 256 * 1024 * 1024 },
			sse: { bufferEvents: 200_000 },
		},
	});
	const { runtime: rt, port } = gw;
	for (const key of KEYS) watchers.set(key, watchEvents(port, key, problem));
	for (const w of watchers.values()) await w.liveSince(0);

	// ---- the plan, fixed by the seed
	const plan = [];
	for (let id = 0; id < MESSAGES; id++) {
		const key = pick(KEYS);
		const kind = pickWeighted(KINDS);
		const via = pickWeighted(VIAS);
		const bash = (n) => markCommand(join(markers, `m${id}-${n}`), `m${id}-${n}`);
		const commands = kind === "bash1" ? [bash(0)] : kind === "bash2" ? [bash(0), bash(1)] : kind === "mixed" ? [bash(0), READ_COMMAND] : [];
		const text = commands.length ? bashMessage(...commands) : kind === "echo" ? `/echo m${id}` : `/slow ${SLOW_WORDS}`;
		plan.push({
			id,
			key,
			kind,
			via,
			commands,
			text,
			interrupt: rand() < 0.08,
			cont: rand() < 0.7,
			contDelayMs: Math.floor(rand() * timeoutMs * 1.5),
			contApprove: [rand() < 0.6, rand() < 0.6],
			contReason: [rand() < 0.4, rand() < 0.4],
			contTwice: rand() < 0.15,
			gapMs: rand() < 0.15 ? 50 + Math.floor(rand() * 150) : Math.floor(rand() * 20),
			sends: [],
		});
	}
	exactlyOnce.assertEveryRunRetained(plan, 95);

	const chatsInFlight = new Set();
	const enc = encodeURIComponent;

	// ---- one send of a message; resolves an outcome and never rejects
	async function sendOnce(m) {
		const out = { kind: "none", sentAt: Date.now() };
		const done = (o) => Object.assign(out, o, { answeredAt: Date.now() });
		const mode = m.interrupt ? { mode: "interrupt" } : {};
		const full = (r, what) => {
			if (r.json?.error !== FULL_ERROR || r.json?.runId !== undefined || r.headers["x-run-id"] !== undefined) {
				problem(`m${m.id}: ${what} 429 that is not a plain queue-full refusal: ${r.text}`);
			}
			return done({ kind: "full" });
		};
		switch (m.via) {
			case "http": {
				const r = await postMessage(port, m.key, { text: m.text, ...mode }, { timeoutMs: PER_SEND_DEADLINE_MS });
				if (r.status === 429) return full(r, "POST /messages");
				if (!r.json || typeof r.json.ok !== "boolean" || !UUID_V7.test(String(r.json.runId))) {
					problem(`m${m.id}: POST /messages answered ${r.status} ${r.text}`);
					return done({ kind: "bad" });
				}
				if (r.headers["x-run-id"] !== r.json.runId) problem(`m${m.id}: x-run-id ${r.headers["x-run-id"]} but runId ${r.json.runId}`);
				if ((r.status === 200) !== r.json.ok) problem(`m${m.id}: status ${r.status} for ok:${r.json.ok}`);
				return done({ kind: "accepted", runId: r.json.runId, result: r.json });
			}
			case "async": {
				const r = await postMessage(port, m.key, { text: m.text, wait: false, ...mode }, { timeoutMs: PER_SEND_DEADLINE_MS });
				if (r.status === 429) return full(r, "wait:false");
				if (r.status !== 202 || !UUID_V7.test(String(r.json?.runId))) {
					problem(`m${m.id}: wait:false answered ${r.status} ${r.text}`);
					return done({ kind: "bad" });
				}
				const runId = r.json.runId;
				if (r.headers["x-run-id"] !== runId) problem(`m${m.id}: 202 x-run-id ${r.headers["x-run-id"]} but runId ${runId}`);
				if (r.headers.location !== runPath(m.key, runId)) problem(`m${m.id}: Location ${r.headers.location}`);
				const polled = await exactlyOnce.pollUntilEnded(port, m.key, runId, PER_SEND_DEADLINE_MS);
				if (polled.error) {
					problem(`m${m.id}: ${polled.error}`);
					return done({ kind: "bad", runId });
				}
				return done({ kind: "accepted", runId, result: polled.run.result });
			}
			case "chat": {
				const chatId = `chat-${m.id}`;
				const user = { id: `u-${m.id}`, role: "user", parts: [{ type: "text", text: m.text }] };
				chatsInFlight.add(m);
				try {
					const r = await postChat(port, m.key, { id: chatId, messages: [user], trigger: "submit-message", ...mode }, { timeoutMs: PER_SEND_DEADLINE_MS });
					if (r.status === 429) return full(r, "/chat");
					const runId = r.headers["x-run-id"];
					if (r.status !== 200 || !UUID_V7.test(String(runId))) {
						problem(`m${m.id}: /chat answered ${r.status} (x-run-id ${runId}) ${r.text.slice(0, 300)}`);
						return done({ kind: "bad" });
					}
					const first = r.chunks;
					const paused = first.at(-1) === "[DONE]" && first.at(-2)?.type === "finish" && first.at(-2)?.finishReason === "tool-calls";
					const conts = [];
					if (paused && m.cont) {
						await sleep(m.contDelayMs);
						const { body, decisions } = continuationBody({
							chatId,
							user,
							runId,
							first,
							decide: (_approvalId, i) => {
								const approved = m.contApprove[i] ?? true;
								return !approved && m.contReason[i] ? { approved, reason: `chat says no to m${m.id}` } : { approved };
							},
						});
						for (let n = 0; n < (m.contTwice ? 2 : 1); n++) {
							const sentAt = Date.now();
							const c = await postChat(port, m.key, body, { timeoutMs: PER_SEND_DEADLINE_MS });
							conts.push({ sentAt, answeredAt: Date.now(), status: c.status, chunks: c.chunks, json: c.json, text: c.text, decisions });
						}
					}
					const firstAnsweredAt = Date.now();
					const polled = await exactlyOnce.pollUntilEnded(port, m.key, runId, PER_SEND_DEADLINE_MS);
					if (polled.error) {
						problem(`m${m.id}: ${polled.error}`);
						return done({ kind: "bad", runId });
					}
					return done({ kind: "accepted", runId, chunks: first, paused, conts, firstAnsweredAt, result: polled.run.result });
				} finally {
					chatsInFlight.delete(m);
				}
			}
		}
		throw new Error(`unknown transport ${m.via}`);
	}

	async function send(m) {
		try {
			m.sends.push(await within(sendOnce(m), PER_SEND_DEADLINE_MS + 5000, `m${m.id} (${m.via} ${m.kind} to ${m.key})`));
		} catch (e) {
			m.sends.push({ kind: "error", error: String(e?.message ?? e) });
		}
	}

	// ---- the chaos, also from the seed
	const chaosLog = { delete: 0, cancelRun: 0, stop: 0, staleStop: 0, abort: 0, clear: 0, reset: 0 };
	const chaos = exactlyOnce.chaosActions({ port, rt, rand: chaosRand, log: chaosLog, problem, chatsInFlight, primary: "main", keys: KEYS });
	const approvals = approvalActions({ port, rt, rand: chaosRand, log: chaosLog, problem, timeoutMs, decideOdds: 0.6 });
	/** A deletion, then (when it deleted) the reader of the key's next session is waited for. */
	const deleteSession = async (key) => {
		const before = chaos.sessionDeletes.length;
		await chaos.deleteSession(key);
		const d = chaos.sessionDeletes[before];
		if (d?.status === 200) await watchers.get(d.key).liveSince(d.answeredAt);
	};
	await exactlyOnce.sendUnderChaos({
		plan,
		clients: CLIENTS,
		deliver: send,
		rand: chaosRand,
		keys: KEYS,
		everyMs: [25, 80],
		actions: [
			[0.42, approvals.decide],
			[0.47, chaos.abort],
			[0.5, approvals.abortHttp],
			[0.55, chaos.cancelRun],
			[0.6, chaos.deleteRun],
			[0.625, chaos.reset],
			[0.65, deleteSession],
			[0.67, chaos.stopChat],
		],
		problem,
	});
	const sendMs = Date.now() - started;

	// ---- runs: one per accepted message, ended, as each caller was told
	const records = await exactlyOnce.finalRecords(port, KEYS, problem); // runId -> record
	const known = new Map(); // runId -> message
	const statuses = {};
	const outcomes = {};
	for (const m of plan) {
		if (m.sends.length !== 1) problem(`m${m.id}: ${m.sends.length} outcomes for one send`);
		const s = m.sends[0];
		if (!s) continue;
		outcomes[s.kind] = (outcomes[s.kind] ?? 0) + 1;
		if (s.kind === "error") problem(`m${m.id} (${m.via} ${m.kind} to ${m.key}): ${s.error}`);
		if (s.kind !== "accepted") continue;
		if (known.has(s.runId)) problem(`m${m.id}: run ${s.runId} also answered m${known.get(s.runId).id}`);
		known.set(s.runId, m);
		m.runId = s.runId;
		const rec = records.get(s.runId);
		if (!rec) {
			problem(`m${m.id}: its run ${s.runId} is not in ${m.key}'s run list`);
			continue;
		}
		m.rec = rec;
		if (rec.sessionKey !== m.key) problem(`m${m.id}: run ${s.runId} of session ${rec.sessionKey}, sent to ${m.key}`);
		statuses[rec.status] = (statuses[rec.status] ?? 0) + 1;
		if (!isDeepStrictEqual(s.result, rec.result)) problem(`m${m.id} (${m.via}): answered ${JSON.stringify(s.result)} but the record says ${JSON.stringify(rec.result)}`);
		if (rec.status === "failed") problem(`m${m.id}: failed: ${JSON.stringify(rec.result)}`);
		if (rec.result?.ok !== (rec.status === "succeeded") || rec.result?.runId !== rec.runId || (!rec.result.ok && typeof rec.result.error !== "string")) {
			problem(`m${m.id}: a ${rec.status} run with the result ${JSON.stringify(rec.result)}`);
		}
	}
	for (const [runId, rec] of records) {
		if (!known.has(runId)) problem(`run ${runId} (${rec.status}) of ${rec.sessionKey} is not the run of any accepted message`);
	}

	// Every known run's run_end has reached its key's reader (bounded), then the readers stop.
	const endsSeen = (key) => new Set(watchers.get(key).events().filter((e) => e.data.type === "run_end").map((e) => e.data.runId));
	const deadline = Date.now() + 10_000;
	for (const key of KEYS) {
		const mine = [...known].filter(([, m]) => m.key === key).map(([runId]) => runId);
		while (mine.some((runId) => !endsSeen(key).has(runId)) && Date.now() < deadline) await sleep(20);
	}
	// Pending approvals: none, by both routes; no session busy.
	for (const key of KEYS) {
		const r = await request(port, "GET", `/sessions/${enc(key)}/approvals`);
		if (r.status !== 200 || !isDeepStrictEqual(r.json, { approvals: [] })) problem(`${key}: approvals still pending after the chaos: ${r.status} ${r.text}`);
		const js = rt.listApprovals(key);
		if (!isDeepStrictEqual(js, [])) problem(`${key}: listApprovals after the chaos: ${JSON.stringify(js)}`);
		const snap = rt.getSession(key);
		if (snap && (snap.processing || snap.queueDepth !== 0)) problem(`${key} still busy: ${JSON.stringify(snap)}`);
	}
	await sleep(300); // a command let through would have written its marker by now
	for (const w of watchers.values()) await within(w.stop(), 15_000, "an event reader to stop");

	// ---- the event logs: approvals resolved once, in order, inside their run
	const requests = new Map(); // approvalId -> {key, gen, idx, ev, resolved: [{gen, idx, ev}]}
	const runEnds = new Map(); // runId -> [{key, gen, idx, ev}]
	const runRequests = new Map(); // runId -> [request]
	const watcherStats = {};
	for (const key of KEYS) {
		const evs = watchers.get(key).events();
		watcherStats[key] = watchers.get(key).stats;
		evs.forEach(({ gen, data: ev }, idx) => {
			if (ev.type === "run_end") {
				if (!known.has(ev.runId) || known.get(ev.runId).key !== key) problem(`${key}: run_end of a run no caller of ${key} was answered for: ${JSON.stringify(ev)}`);
				runEnds.set(ev.runId, [...(runEnds.get(ev.runId) ?? []), { key, gen, idx, ev }]);
			} else if (ev.type === "approval_request") {
				if (!isDeepStrictEqual(Object.keys(ev).sort(), REQUEST_FIELDS)) problem(`${key}: approval_request fields ${JSON.stringify(ev)}`);
				if (ev.sessionKey !== key || ev.toolName !== "bash" || typeof ev.toolCallId !== "string" || typeof ev.expiresAt !== "number") {
					problem(`${key}: approval_request ${JSON.stringify(ev)}`);
				}
				if (!known.has(ev.runId) || known.get(ev.runId).key !== key) problem(`${key}: approval_request of a run no caller of ${key} was answered for: ${JSON.stringify(ev)}`);
				if (requests.has(ev.approvalId)) {
					problem(`approval ${ev.approvalId} requested twice: ${JSON.stringify(requests.get(ev.approvalId).ev)} and ${JSON.stringify(ev)}`);
					return;
				}
				const req = { key, gen, idx, ev, resolved: [] };
				requests.set(ev.approvalId, req);
				runRequests.set(ev.runId, [...(runRequests.get(ev.runId) ?? []), req]);
			} else if (ev.type === "approval_resolved") {
				const req = requests.get(ev.approvalId);
				if (!req || req.key !== key) {
					problem(`${key}: approval_resolved without an approval_request before it: ${JSON.stringify(ev)}`);
					return;
				}
				req.resolved.push({ gen, idx, ev });
			}
		});
	}
	for (const [runId, m] of known) {
		const ends = runEnds.get(runId) ?? [];
		if (ends.length !== 1) problem(`m${m.id} (${m.via} ${m.kind} to ${m.key}, ${m.rec?.status}): ${ends.length} run_end events for run ${runId}`);
		else if (m.rec && ends[0].ev.status !== m.rec.status) problem(`m${m.id}: run_end ${ends[0].ev.status} but the record says ${m.rec.status}`);
	}
	const byCount = { approved: 0, deniedByClient: 0, timeout: 0, abort: 0 };
	for (const [approvalId, req] of requests) {
		const what = `approval ${approvalId} (m${known.get(req.ev.runId)?.id}, ${req.ev.args?.command}, run ${known.get(req.ev.runId)?.rec?.status})`;
		if (req.resolved.length !== 1) {
			problem(`${what}: ${req.resolved.length} approval_resolved events: ${JSON.stringify(req.resolved.map((r) => r.ev))}`);
			if (req.resolved.length === 0) continue;
		}
		const { gen, idx, ev } = req.resolved[0];
		req.decision = ev;
		if (ev.toolCallId !== req.ev.toolCallId || ev.runId !== req.ev.runId || ev.sessionKey !== req.key) problem(`${what}: resolved ${JSON.stringify(ev)} for request ${JSON.stringify(req.ev)}`);
		if (!BY.has(ev.by) || typeof ev.approved !== "boolean") problem(`${what}: resolved ${JSON.stringify(ev)}`);
		if (ev.approved && ev.by !== "client") problem(`${what}: approved by ${ev.by}`);
		if (ev.by !== "client" && (typeof ev.reason !== "string" || ev.reason === "")) problem(`${what}: denied by ${ev.by} without a reason: ${JSON.stringify(ev)}`);
		if (gen !== req.gen || idx <= req.idx) problem(`${what}: resolved at ${gen}/${idx}, requested at ${req.gen}/${req.idx}`);
		const end = runEnds.get(req.ev.runId)?.[0];
		if (end && (end.gen !== gen || end.idx < idx)) problem(`${what}: resolved (${gen}/${idx}) after its run's run_end (${end.gen}/${end.idx}): ${JSON.stringify(ev)}`);
		const status = known.get(req.ev.runId)?.rec?.status;
		if (ev.by === "abort" && status === "succeeded") problem(`${what}: denied by an abort, but its run succeeded`);
		byCount[ev.approved ? "approved" : ev.by === "client" ? "deniedByClient" : ev.by]++;
	}

	// ---- the chaos' decisions (and the chat continuations) against the events
	const sessionEnds = [
		...chaos.resets.map((r) => ({ ...r, status: 200, how: "reset" })),
		...chaos.sessionDeletes.filter((d) => d.status === 200).map((d) => ({ ...d, how: "delete" })),
	];
	const sessionEndedBetween = (key, from, to) => sessionEnds.some((e) => e.key === key && e.sentAt <= to && e.answeredAt >= from);
	const rest200 = new Map(); // approvalId -> [decision]
	const decisionKinds = {};
	for (const d of approvals.decisions) {
		const tag = `${d.bad ? "bad" : d.second ? "second" : "first"}:${d.how}:${d.status}`;
		decisionKinds[tag] = (decisionKinds[tag] ?? 0) + 1;
		const req = requests.get(d.approvalId);
		const what = `decision ${JSON.stringify({ how: d.how, approved: d.approved, reason: d.reason, bad: d.bad, second: d.second })} on ${d.approvalId} of ${d.key}`;
		if (!req) {
			problem(`${what}: listed pending, but no approval_request in ${d.key}'s events`);
			continue;
		}
		const ev = req.decision;
		if (d.bad) {
			if (d.status !== 400 || !isDeepStrictEqual(d.body, { error: INVALID_APPROVED })) problem(`${what}: ${d.status} ${JSON.stringify(d.body)}`);
			continue;
		}
		if (d.status === 200) {
			rest200.set(d.approvalId, [...(rest200.get(d.approvalId) ?? []), d]);
			const want = { ok: true, approvalId: d.approvalId, approved: d.approved, by: "client" };
			if (d.reason !== undefined) want.reason = d.reason;
			if (!isDeepStrictEqual(d.body, want)) problem(`${what}: 200 ${JSON.stringify(d.body)}`);
			if (d.second) problem(`${what}: a second decision was accepted (200) after the first one's 200`);
			if (ev && (ev.by !== "client" || ev.approved !== d.approved || ev.reason !== d.reason)) problem(`${what}: answered 200, but the event says ${JSON.stringify(ev)}`);
		} else if (d.status === 409) {
			const want = { error: alreadyDecided(d.approvalId), approved: ev?.approved, by: ev?.by };
			if (d.body && "reason" in d.body) want.reason = ev?.reason;
			if (!isDeepStrictEqual(d.body, want)) problem(`${what}: 409 ${JSON.stringify(d.body)}, the event says ${JSON.stringify(ev)}`);
			if (d.body?.by === "timeout" && d.answeredAt < req.ev.expiresAt - 50) problem(`${what}: timed out at ${d.answeredAt} or before, but it expires at ${req.ev.expiresAt}`);
		} else if (d.status === 404) {
			if (!isDeepStrictEqual(d.body, { error: notFound(d.approvalId) })) problem(`${what}: 404 ${JSON.stringify(d.body)}`);
			if (!sessionEndedBetween(d.key, d.listedAt, d.answeredAt)) {
				problem(`${what}: 404 (listed at ${d.listedAt}, answered at ${d.answeredAt}), but no reset or deletion of ${d.key} came in between; the event says ${JSON.stringify(ev)}`);
			}
		} else {
			problem(`${what}: ${d.status} ${JSON.stringify(d.body)}`);
		}
	}
	const contDecisions = new Map(); // approvalId -> [decision of a continuation answered 200]
	const contKinds = {};
	for (const m of plan) {
		const s = m.sends[0];
		if (s?.kind !== "accepted" || m.via !== "chat" || !m.rec) continue;
		const rec = m.rec;
		const start = s.chunks.find((c) => c?.type === "start");
		if (rec.status !== "cancelled" && start?.messageId !== rec.runId) problem(`m${m.id}: chat start ${JSON.stringify(start)} for run ${rec.runId}`);
		if (start && start.messageId !== rec.runId) problem(`m${m.id}: chat start ${JSON.stringify(start)} for run ${rec.runId}`);
		const asked = s.chunks.filter((c) => c?.type === "tool-approval-request");
		const mine = runRequests.get(rec.runId) ?? [];
		for (const c of asked) {
			const req = requests.get(c.approvalId);
			if (!req || req.ev.runId !== rec.runId || req.ev.toolCallId !== c.toolCallId) problem(`m${m.id}: chat asked ${JSON.stringify(c)}, not an approval_request of its run`);
		}
		if (s.paused) {
			const want = mine.map((r) => r.ev.approvalId).sort();
			const got = asked.map((c) => c.approvalId).sort();
			if (!isDeepStrictEqual(got, want)) problem(`m${m.id}: the paused chat asked ${JSON.stringify(got)}, the run's approval_requests are ${JSON.stringify(want)}`);
		} else {
			exactlyOnce.checkChatEnding(m, s.chunks, rec.status, problem, rec.result);
		}
		for (const c of s.conts) {
			contKinds[c.status] = (contKinds[c.status] ?? 0) + 1;
			const what = `m${m.id}: continuation (${JSON.stringify(c.decisions.map((d) => [d.approvalId.slice(0, 8), d.approved]))}, run ${rec.status})`;
			if (c.status === 200) {
				for (const d of c.decisions) contDecisions.set(d.approvalId, [...(contDecisions.get(d.approvalId) ?? []), d]);
				const cstart = c.chunks[0];
				if (cstart?.type !== "start" || cstart.messageId !== rec.runId) problem(`${what}: starts ${JSON.stringify(cstart)}`);
				exactlyOnce.checkChatEnding({ id: `${m.id} (continuation)` }, c.chunks, rec.status, problem, rec.result);
				if (rec.status === "succeeded") {
					for (const req of mine) {
						const outs = c.chunks.filter((x) => /^tool-output-/.test(x?.type ?? "") && x.toolCallId === req.ev.toolCallId).map((x) => x.type);
						const want = req.decision?.approved ? "tool-output-available" : "tool-output-denied";
						if (!isDeepStrictEqual(outs, [want])) problem(`${what}: for ${req.ev.approvalId} (${JSON.stringify(req.decision)}) the continuation has ${JSON.stringify(outs)}`);
					}
				}
			} else if (c.status === 404) {
				if (typeof c.json?.error !== "string" || !c.json.error.startsWith("Run not found: ")) problem(`${what}: 404 ${c.text}`);
				if (!sessionEndedBetween(m.key, s.sentAt, c.answeredAt)) problem(`${what}: 404 ${c.text}, but its session was neither reset nor deleted since the chat was sent`);
			} else {
				problem(`${what}: ${c.status} ${c.text.slice(0, 300)}`);
			}
		}
	}
	for (const [approvalId, req] of requests) {
		const ev = req.decision;
		if (!ev) continue;
		const rests = rest200.get(approvalId) ?? [];
		const conts = contDecisions.get(approvalId) ?? [];
		const what = `approval ${approvalId} (m${known.get(req.ev.runId)?.id})`;
		if (rests.length > 1) problem(`${what}: decided ${rests.length} times with a 200: ${JSON.stringify(rests.map((d) => [d.how, d.approved]))}`);
		if (ev.by === "client") {
			if (rests.length === 0) {
				if (conts.length === 0) problem(`${what}: resolved by a client (${JSON.stringify(ev)}), but no client decision was accepted and no chat continuation named it`);
				else if (!conts.some((d) => d.approved === ev.approved && d.reason === ev.reason)) problem(`${what}: resolved ${JSON.stringify(ev)}, the continuation said ${JSON.stringify(conts)}`);
			}
		} else if (rests.length > 0) {
			problem(`${what}: a client decision was answered 200, but the event says ${JSON.stringify(ev)}`);
		}
	}
	for (const p of approvals.pendingSeen) {
		const req = requests.get(p.entry.approvalId);
		if (!req) {
			problem(`${p.key}: pending approval listed (${p.listHow}) with no approval_request event: ${JSON.stringify(p.entry)}`);
			continue;
		}
		const { type, ...fields } = req.ev;
		const { requestedAt, ...listed } = p.entry;
		if (!isDeepStrictEqual(listed, fields)) problem(`${p.key}: pending approval listed (${p.listHow}) as ${JSON.stringify(p.entry)}, requested as ${JSON.stringify(req.ev)}`);
	}

	// ---- markers on disk, and what the succeeded runs answered
	const files = new Set(await readdir(markers));
	const byMarker = new Map(); // marker -> [request]
	for (const req of requests.values()) {
		const name = markerOf(req.ev.args?.command);
		if (!name) {
			problem(`approval ${req.ev.approvalId}: a command that is not the plan's: ${JSON.stringify(req.ev.args)}`);
			continue;
		}
		byMarker.set(name, [...(byMarker.get(name) ?? []), req]);
	}
	const approvedLost = {};
	for (const name of files) {
		const reqs = byMarker.get(name) ?? [];
		if (reqs.length !== 1 || reqs[0].decision?.approved !== true) {
			problem(`marker ${name} exists (the command ran), but its approvals were ${JSON.stringify(reqs.map((r) => ({ request: r.ev.approvalId, resolved: r.decision ?? null })))}`);
		}
	}
	for (const [name, reqs] of byMarker) {
		if (reqs.length > 1) problem(`marker ${name}: its call was asked ${reqs.length} times`);
		for (const req of reqs) {
			if (!req.decision) continue;
			const m = known.get(req.ev.runId);
			if (req.decision.approved !== true) continue; // a denied call with a marker is reported above
			if (!files.has(name)) {
				const status = m?.rec?.status;
				if (status === "succeeded") problem(`m${m?.id}: call ${name} was approved (${JSON.stringify(req.decision)}) and its run succeeded, but it never ran`);
				else approvedLost[status] = (approvedLost[status] ?? 0) + 1;
			}
		}
	}
	for (const m of plan) {
		const rec = m.rec;
		if (!rec) continue;
		const mine = (runRequests.get(rec.runId) ?? []).sort((a, b) => a.idx - b.idx);
		const held = m.commands.filter((c) => c !== READ_COMMAND);
		if (held.length === 0 && mine.length > 0) problem(`m${m.id} (${m.kind}): no held call, but ${mine.length} approval_request events`);
		if (held.length === 2 && mine.length === 2 && (mine[0].gen !== mine[1].gen || mine[1].idx !== mine[0].idx + 1)) {
			problem(`m${m.id}: its two held calls were not requested back to back (${mine[0].idx}, ${mine[1].idx})`);
		}
		if (rec.status !== "succeeded") continue;
		const response = rec.result?.response;
		if (m.kind === "echo") {
			if (response !== `You said: m${m.id}`) problem(`m${m.id}: answered ${JSON.stringify(response)}`);
			continue;
		}
		if (m.kind === "slow") {
			if (response?.trim() !== fauxLongText(SLOW_WORDS).trim()) problem(`m${m.id}: answered ${JSON.stringify(response)}`);
			continue;
		}
		if (!isDeepStrictEqual(mine.map((r) => r.ev.args?.command), held)) {
			problem(`m${m.id}: succeeded, but its run asked ${JSON.stringify(mine.map((r) => r.ev.args))} for the held calls ${JSON.stringify(held)}`);
			continue;
		}
		const lines = String(response).split("\n");
		const want = m.commands.map((c, i) => {
			if (c === READ_COMMAND) return `read said: ${HELLO_CONTENT}`;
			const d = mine[held.indexOf(c)]?.decision;
			if (d?.approved) return `bash said: m${m.id}-${i}`;
			if (d?.by === "client") return `bash failed: ${d.reason === undefined ? DENIED_BY_USER : deniedByUser(d.reason)}`;
			if (d?.by === "timeout") return TIMEOUT_LINE;
			return `bash failed: ${DENIED_ABORTED}`;
		});
		const ok = lines.length === want.length && want.every((w, i) => (w instanceof RegExp ? w.test(lines[i]) : w === lines[i]));
		if (!ok) problem(`m${m.id}: answered ${JSON.stringify(response)} for the decisions ${JSON.stringify(mine.map((r) => r.decision))}`);
	}

	// ---- the chaos' own answers about runs agree with the records
	const { deleteKinds, stopsOk } = exactlyOnce.checkChaosAnswers({
		records,
		deletes: chaos.deletes,
		cancels: chaos.cancels,
		stops: chaos.stops,
		chatRunId: (m) => m.sends[0]?.runId,
		problem,
	});

	// ---- every session still answers a good message, and nothing is left pending
	for (const key of KEYS) {
		const r = await postMessage(port, key, { text: "/echo ok" }, { timeoutMs: 20_000 });
		if (r.status !== 200 || r.json?.response !== "You said: ok") problem(`${key}: /echo ok after the chaos answered ${r.status} ${r.text}`);
		if (!isDeepStrictEqual(rt.listApprovals(key), [])) problem(`${key}: approvals pending after /echo ok`);
	}

	const sessionDeleteKinds = {};
	for (const d of chaos.sessionDeletes) sessionDeleteKinds[d.status] = (sessionDeleteKinds[d.status] ?? 0) + 1;
	const elapsed = Date.now() - started;
	t.diagnostic(
		`seed ${SEED}; timeoutMs ${timeoutMs}; outcomes ${JSON.stringify(outcomes)}; statuses ${JSON.stringify(statuses)}; approvals ${requests.size} ` +
			`resolved ${JSON.stringify(byCount)}; markers ${files.size}; approved but not run (run aborted/cancelled) ${JSON.stringify(approvedLost)}; ` +
			`decisions ${JSON.stringify(decisionKinds)}; continuations ${JSON.stringify(contKinds)}; deletes ${JSON.stringify(deleteKinds)}; ` +
			`session deletes ${JSON.stringify(sessionDeleteKinds)}; chat stops ok ${stopsOk}; chaos ${JSON.stringify(chaosLog)}; readers ${JSON.stringify(watcherStats)}; ` +
			`sends ${sendMs} ms; total ${elapsed} ms`,
	);
	assert.deepEqual(problems, [], `seed ${SEED} (PI_GW_SEED=${SEED} to repeat): ${problems.length} problems:\n${problems.slice(0, 30).join("\n")}`);

	// The run really exercised approvals: some were approved, denied by a client, and timed out.
	assert.ok(requests.size > 0, `no approval at all (seed ${SEED})`);
	for (const k of ["approved", "deniedByClient", "timeout"]) assert.ok(byCount[k] > 0, `no approval resolved as ${k} (seed ${SEED}): ${JSON.stringify(byCount)}`);
	assert.ok(sendMs < 90_000, `the sends took ${sendMs} ms (seed ${SEED})`);
});
