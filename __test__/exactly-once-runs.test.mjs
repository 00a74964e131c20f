// Exactly once, with runs (issue 12): the randomized, seeded approach of exactly-once.test.mjs,
// with the run API in the mix. Many concurrent clients send messages to several sessions five
// ways — POST /messages (waiting), enqueueMessage, POST /messages with wait:false then polling
// GET …/runs/:runId, submitMessage then waitForRun, and POST /chat — some of them with an
// Idempotency-Key and repeated (at once or a little later), while cancels happen at random:
// DELETE …/runs/:runId and cancelRun on queued, running and ended runs, chat stops (with and
// without a stale runId), aborts, clears and resets.
//
// The doubles reply "echo:<text>" after the delay in the text ("m<id> d<ms>"); a text ending in
// " f" makes prompt() reject. The checks:
// - every send gets exactly one answer before a deadline (none hangs); a refusal is only
//   "Queue full" (429 / rejection), and refused sends carry no runId;
// - every accepted message has exactly one run: all accepted sends of one message (repeats with
//   the same key) name the same runId, exactly one of them is not `idempotent-replayed`, and
//   the sessions' run lists and event logs hold no run that no caller knows about;
// - every run ends exactly once, with a terminal status: one run_end in the log whose status is
//   the record's, exactly one run_start for a run that started (none for one that never did),
//   and the record's result is what each caller was answered (HTTP body, enqueueMessage,
//   waitForRun, the chat stream's last chunk);
// - each status agrees with what the session saw: succeeded ⇒ prompted exactly once and
//   answered its own echo; failed ⇒ a failing text, prompted once; aborted ⇒ started, prompted at
//   most once; cancelled ⇒ either it never started (never prompted, no startedAt, no run_start)
//   or it was running when a reset hit its session (startedAt, exactly one run_start, prompted at
//   most once, error "Session reset", a reset of its key in flight while it ran — SPEC §10:
//   "cancelled: cleared, reset, deleted, stopped or cancelled before it finished");
//   no text is ever prompted twice;
// - DELETE answers 200 with the status the run ended as, or 409 naming it; cancelRun agrees with
//   the record; a chat stop names the chat's own run, and a stop with a stale runId is refused.
//
// The seed (PI_GW_SEED to choose another) fixes the plan and the chaos; thread interleavings are
// not fixed, so the assertions hold for every interleaving. The seed is printed.

import assert from "node:assert/strict";
import { test } from "node:test";

import * as exactlyOnce from "./support/exactly-once-util.mjs";
import { startGateway } from "./support/gateway.mjs";
import { chatText, postChat, postMessage, readLog, runPath, UUID_V7 } from "./support/runs.mjs";
import { createDouble } from "./support/sessions.mjs";
import { within } from "./support/wait.mjs";

const SEED = Number(process.env.PI_GW_SEED ?? 0x12c0ffee) >>> 0;
const MESSAGES = 260;
const CLIENTS = 24;
const MAX_QUEUE = 6;
const KEYS = ["main", "s0", "s1", "s2", "s3"];
const PER_SEND_DEADLINE_MS = 15_000;
const VIAS = ["http", "api", "async-http", "async-api", "chat"];

const idOf = (text) => Number(/^m(\d+) /.exec(text)?.[1]);
const delayOf = (text) => Number(/ d(\d+)/.exec(text)?.[1] ?? 0);
const FULL_ERROR = `Queue full (${MAX_QUEUE} pending).`;

test("every accepted message is exactly one run that ends exactly once, under random cancels, async submits and idempotent repeats", { timeout: 180_000 }, async (t) => {
	console.log(`exactly-once-runs seed: ${SEED} (PI_GW_SEED=${SEED} to repeat)`);
	t.diagnostic(`seed ${SEED}`);
	const { rand, chaosRand, pick } = exactlyOnce.seeded(SEED);

	// ---- the sessions: echo doubles that record every prompt; " f" texts make prompt() reject
	const created = [];
	const makeSession = (key) => {
		const s = createDouble(key, { delayMs: delayOf });
		const prompt = s.prompt;
		s.prompt = (text, options) => {
			if (/ f$/.test(text)) {
				s.calls.prompt++;
				s.prompts.push(text);
				return Promise.reject(new Error(`boom ${text}`));
			}
			return prompt(text, options);
		};
		created.push(s);
		return s;
	};
	const gw = await startGateway({
		t,
		config: { session: { maxQueuePerSession: MAX_QUEUE } },
		primarySession: makeSession("main"),
		createSession: async (key) => makeSession(key),
	});
	const { rt, port } = gw;
	const started = Date.now();

	// ---- the plan, fixed by the seed
	const plan = [];
	for (let id = 0; id < MESSAGES; id++) {
		const key = pick(KEYS);
		const long = rand() < 0.12;
		const delay = long ? 150 + Math.floor(rand() * 250) : Math.floor(rand() * 20);
		const fail = rand() < 0.05;
		const via = pick(VIAS);
		const idem = via !== "api" && via !== "async-api" && rand() < 0.35;
		plan.push({
			id,
			key,
			via,
			text: `m${id} d${delay}${fail ? " f" : ""}`,
			idemKey: idem ? `eo-${SEED}-${id}` : undefined,
			repeats: idem ? 1 + Math.floor(rand() * 3) : 0,
			repeatGapMs: idem && rand() < 0.5 ? Math.floor(rand() * 80) : 0,
			gapMs: rand() < 0.1 ? 30 + Math.floor(rand() * 60) : Math.floor(rand() * 4),
			sends: [],
		});
	}
	exactlyOnce.assertEveryRunRetained(plan, 95);

	const problems = [];
	const problem = (s) => problems.push(s);
	const chatsInFlight = new Set();

	// ---- one send of a message, by its transport; resolves an outcome and never rejects
	async function sendOnce(m) {
		const headers = m.idemKey ? { "idempotency-key": m.idemKey } : {};
		const out = { accepted: false, runId: undefined, result: undefined, replayed: undefined, status: null };
		switch (m.via) {
			case "http": {
				const r = await postMessage(port, m.key, { text: m.text }, { headers, timeoutMs: PER_SEND_DEADLINE_MS });
				out.status = r.status;
				out.replayed = r.headers["idempotent-replayed"];
				if (r.status === 429) {
					if (r.json?.error !== FULL_ERROR || r.json?.runId !== undefined || r.headers["x-run-id"] !== undefined) {
						problem(`m${m.id}: a 429 that is not a plain queue-full refusal: ${r.text}`);
					}
					return out;
				}
				out.accepted = true;
				out.runId = r.json?.runId;
				out.result = r.json;
				if (r.headers["x-run-id"] !== out.runId) problem(`m${m.id}: x-run-id ${r.headers["x-run-id"]} but runId ${out.runId}`);
				return out;
			}
			case "api": {
				const res = await rt.enqueueMessage({ sessionKey: m.key, text: m.text });
				if (res.runId === undefined) {
					if (res.error !== FULL_ERROR) problem(`m${m.id}: enqueueMessage without runId: ${JSON.stringify(res)}`);
					return out;
				}
				return { ...out, accepted: true, runId: res.runId, result: res };
			}
			case "async-http": {
				const r = await postMessage(port, m.key, { text: m.text, wait: false }, { headers, timeoutMs: PER_SEND_DEADLINE_MS });
				out.status = r.status;
				out.replayed = r.headers["idempotent-replayed"];
				if (r.status === 429) return out;
				if (r.status !== 202) {
					problem(`m${m.id}: wait:false answered ${r.status} ${r.text}`);
					return out;
				}
				out.accepted = true;
				out.runId = r.json.runId;
				if (r.headers["x-run-id"] !== out.runId) problem(`m${m.id}: 202 x-run-id ${r.headers["x-run-id"]} but runId ${out.runId}`);
				if (r.headers.location !== runPath(m.key, out.runId)) problem(`m${m.id}: Location ${r.headers.location}`);
				// Poll until it has ended.
				const polled = await exactlyOnce.pollUntilEnded(port, m.key, out.runId, PER_SEND_DEADLINE_MS);
				if (polled.error) problem(`m${m.id}: ${polled.error}`);
				else out.result = polled.run.result;
				return out;
			}
			case "async-api": {
				let record;
				try {
					record = await rt.submitMessage({ sessionKey: m.key, text: m.text });
				} catch (e) {
					if (!/Queue full/.test(String(e?.message ?? e))) problem(`m${m.id}: submitMessage rejected: ${e}`);
					return out;
				}
				if (!UUID_V7.test(record.runId) || !["queued", "running"].includes(record.status)) {
					problem(`m${m.id}: submitMessage record ${JSON.stringify(record)}`);
				}
				out.accepted = true;
				out.runId = record.runId;
				out.result = await within(rt.waitForRun(m.key, record.runId), PER_SEND_DEADLINE_MS, `waitForRun of m${m.id}`);
				return out;
			}
			case "chat": {
				chatsInFlight.add(m);
				try {
					const r = await postChat(port, m.key, { id: `chat-${m.id}`, text: m.text }, { headers, timeoutMs: PER_SEND_DEADLINE_MS });
					out.status = r.status;
					out.replayed = r.headers["idempotent-replayed"];
					if (r.status === 429) return out;
					if (r.status !== 200) {
						problem(`m${m.id}: /chat answered ${r.status} ${r.text}`);
						return out;
					}
					out.accepted = true;
					out.runId = r.headers["x-run-id"];
					out.chunks = r.chunks;
					return out;
				} finally {
					chatsInFlight.delete(m);
				}
			}
		}
		throw new Error(`unknown transport ${m.via}`);
	}

	async function send(m) {
		try {
			const outcome = await within(sendOnce(m), PER_SEND_DEADLINE_MS + 2000, `m${m.id} (${m.via} to ${m.key})`);
			m.sends.push(outcome);
		} catch (e) {
			m.sends.push({ error: String(e?.message ?? e) });
		}
	}

	// ---- the chaos, also from the seed
	const chaosLog = { delete: 0, cancelRun: 0, stop: 0, staleStop: 0, abort: 0, clear: 0, reset: 0 };
	const chaos = exactlyOnce.chaosActions({ port, rt, rand: chaosRand, log: chaosLog, problem, chatsInFlight });
	const { deletes, cancels, stops, resets } = chaos; // resets: {key, sentAt, answeredAt}: when each reset was sent and answered
	await exactlyOnce.sendUnderChaos({
		plan,
		clients: CLIENTS,
		deliver: (m) => exactlyOnce.sendWithRepeats(m, send),
		rand: chaosRand,
		keys: KEYS,
		everyMs: [3, 15],
		actions: [
			[0.3, chaos.deleteRun],
			[0.45, chaos.cancelRun],
			[0.62, chaos.stopChat],
			[0.7, chaos.abort],
			[0.74, chaos.clear],
			[0.77, chaos.reset],
		],
		problem,
	});
	const sendMs = Date.now() - started;

	// ---- the accounting
	// Final records of every run of every key, and the prompts each text got.
	const records = await exactlyOnce.finalRecords(port, KEYS, problem); // runId -> record
	const prompted = new Map();
	for (const s of created) {
		for (const text of s.prompts) prompted.set(text, (prompted.get(text) ?? 0) + 1);
	}

	const known = new Map(); // runId -> message
	const cancelledRuns = []; // {m, rec, p}
	const statuses = {};
	let joined = 0;
	let refusedSends = 0;
	for (const m of plan) {
		const expectedSends = 1 + m.repeats;
		if (m.sends.length !== expectedSends) problem(`m${m.id}: ${m.sends.length} outcomes for ${expectedSends} sends`);
		for (const s of m.sends) if (s.error) problem(`m${m.id} (${m.via}): ${s.error}`);
		const accepted = m.sends.filter((s) => s.accepted);
		refusedSends += m.sends.filter((s) => !s.error && !s.accepted).length;
		const p = prompted.get(m.text) ?? 0;
		if (accepted.length === 0) {
			if (p !== 0) problem(`m${m.id}: never accepted but prompted ${p} times`);
			continue;
		}
		const runId = exactlyOnce.oneRunId(m, accepted, m.via, problem);
		if (runId === undefined) continue;
		if (known.has(runId)) problem(`m${m.id}: run ${runId} also answered m${known.get(runId).id}`);
		known.set(runId, m);
		if (accepted.length > 1) joined++;
		if (m.via !== "api" && m.via !== "async-api") {
			const fresh = accepted.filter((s) => s.replayed === undefined);
			const rep = accepted.filter((s) => s.replayed === "true");
			if (fresh.length !== 1 || fresh.length + rep.length !== accepted.length) {
				problem(`m${m.id}: ${fresh.length} fresh and ${rep.length} replayed answers of ${accepted.length} accepted`);
			}
		}
		const rec = records.get(runId);
		if (!rec) {
			problem(`m${m.id}: its run ${runId} is not in ${m.key}'s run list`);
			continue;
		}
		if (rec.sessionKey !== m.key) problem(`m${m.id}: run ${runId} of session ${rec.sessionKey}, sent to ${m.key}`);
		statuses[rec.status] = (statuses[rec.status] ?? 0) + 1;
		for (const s of accepted) {
			if (m.via === "chat") {
				const chunks = s.chunks ?? [];
				exactlyOnce.checkChatEnding(m, chunks, rec.status, problem);
				const start = chunks.find((c) => c?.type === "start");
				if (rec.status !== "cancelled" && start?.messageId !== runId) problem(`m${m.id}: chat start ${JSON.stringify(start)} for run ${runId}`);
				if (start && start.messageId !== runId) problem(`m${m.id}: chat start ${JSON.stringify(start)} for run ${runId}`);
				if (rec.status === "succeeded" && chatText(chunks) !== `echo:${m.text}`) problem(`m${m.id}: chat text ${JSON.stringify(chatText(chunks))}`);
			} else {
				try {
					assert.deepEqual(s.result, rec.result);
				} catch {
					problem(`m${m.id} (${m.via}): answered ${JSON.stringify(s.result)} but the record says ${JSON.stringify(rec.result)}`);
				}
			}
		}
		switch (rec.status) {
			case "succeeded":
				if (p !== 1) problem(`m${m.id}: succeeded but prompted ${p} times`);
				if (rec.result.response !== `echo:${m.text}`) problem(`m${m.id}: succeeded with ${JSON.stringify(rec.result.response)}`);
				break;
			case "failed":
				if (!m.text.endsWith(" f")) problem(`m${m.id}: failed: ${rec.result.error}`);
				else if (!String(rec.result.error).includes(`boom ${m.text}`)) problem(`m${m.id}: failed with ${rec.result.error}`);
				if (p !== 1) problem(`m${m.id}: failed but prompted ${p} times`);
				break;
			case "aborted":
				if (p > 1) problem(`m${m.id}: aborted but prompted ${p} times`);
				if (rec.startedAt === undefined) problem(`m${m.id}: aborted without ever starting`);
				break;
			case "cancelled":
				// Checked with its run_start count once the logs are read (below).
				cancelledRuns.push({ m, rec, p });
				break;
			default:
				problem(`m${m.id}: status ${rec.status}`);
		}
	}
	for (const [text, n] of prompted) {
		if (n > 1) problem(`${text} was prompted ${n} times`);
		const m = plan[idOf(text)];
		if (!m || m.text !== text) problem(`a prompt for an unknown text ${text}`);
	}
	for (const runId of records.keys()) {
		if (!known.has(runId)) problem(`run ${runId} (${records.get(runId).status}) is not the run of any accepted message`);
	}

	// Each session's event log: one run_end per run, with the record's status; one run_start for a
	// run that started, none for one that never did.
	const runStarts = new Map(); // runId -> run_start count in its session's log
	for (const key of KEYS) {
		const { hello, frames } = await readLog(port, key);
		if (hello.data.missed) problem(`${key}: the log no longer reaches back (missed)`);
		const { starts, ends } = exactlyOnce.tallyRunEvents(frames);
		for (const id of [...starts.keys(), ...ends.keys()]) {
			if (!known.has(id)) problem(`${key}: the log has a run ${id} that no caller was answered for`);
		}
		for (const [runId, m] of known) {
			if (m.key !== key) continue;
			const rec = records.get(runId);
			const e = ends.get(runId) ?? [];
			if (e.length !== 1) problem(`m${m.id}: ${e.length} run_end events for run ${runId}`);
			else if (rec && e[0].status !== rec.status) problem(`m${m.id}: run_end ${e[0].status} but record ${rec.status}`);
			const s = starts.get(runId) ?? 0;
			runStarts.set(runId, s);
			if (s > 1) problem(`m${m.id}: ${s} run_start events`);
			if (rec && rec.status !== "cancelled" && s !== 1) problem(`m${m.id}: ${rec.status} with ${s} run_start events`);
		}
	}

	// cancelled ⇒ it never started (never prompted, no startedAt, no run_start), or it was running
	// when a reset hit its session (startedAt, exactly one run_start, prompted at most once, error
	// "Session reset", and a reset of its key was in flight while it ran).
	let cancelledRunning = 0;
	for (const { m, rec, p } of cancelledRuns) {
		const s = runStarts.get(rec.runId) ?? 0;
		const what = `m${m.id}: cancelled (${rec.result.error}; startedAt ${rec.startedAt}, run_start ${s}, prompted ${p})`;
		if (rec.startedAt === undefined) {
			if (p !== 0) problem(`${what}: never started, but prompted`);
			if (s !== 0) problem(`${what}: never started, yet it had a run_start`);
			continue;
		}
		cancelledRunning++;
		if (rec.result.error !== "Session reset") problem(`${what}: cancelled after it started, but not by a reset`);
		if (s !== 1) problem(`${what}: started, so exactly one run_start`);
		if (p > 1) problem(`${what}: prompted more than once`);
		if (!exactlyOnce.resetWhileRunning(resets, rec)) {
			problem(
				`${what}: no reset of ${rec.sessionKey} was in flight while it ran (${rec.startedAt}…${rec.endedAt}): ` +
					JSON.stringify(resets.filter((r) => r.key === rec.sessionKey)),
			);
		}
	}

	// The chaos' own answers agree with the records.
	const { deleteKinds, stopsOk } = exactlyOnce.checkChaosAnswers({
		records,
		deletes,
		cancels,
		stops,
		chatRunId: (m) => m.sends.find((x) => x.accepted)?.runId,
		problem,
	});

	// Nothing is left running or queued.
	for (const key of KEYS) {
		const snap = rt.getSession(key);
		if (snap && (snap.processing || snap.queueDepth !== 0)) problem(`${key} still busy: ${JSON.stringify(snap)}`);
	}

	const elapsed = Date.now() - started;
	t.diagnostic(
		`seed ${SEED}; statuses ${JSON.stringify(statuses)} (cancelled after starting, by a reset: ${cancelledRunning}); joined repeats ${joined}; refused sends ${refusedSends}; ` +
			`deletes ${JSON.stringify(deleteKinds)}; chat stops ok ${stopsOk}; chaos ${JSON.stringify(chaosLog)}; sends ${sendMs} ms; total ${elapsed} ms`,
	);
	assert.deepEqual(problems, [], `seed ${SEED}:\n${problems.slice(0, 25).join("\n")}`);

	// The run really was chaotic: every ending happened, repeats joined, cancels hit every kind.
	for (const status of ["succeeded", "failed", "aborted", "cancelled"]) {
		assert.ok((statuses[status] ?? 0) > 0, `no ${status} run (seed ${SEED}): ${JSON.stringify(statuses)}`);
	}
	assert.ok(joined > 0, "some idempotent repeats joined a run");
	for (const kind of ["cancelled", "aborted", "ended"]) {
		assert.ok((deleteKinds[kind] ?? 0) > 0, `no DELETE of kind ${kind}: ${JSON.stringify(deleteKinds)}`);
	}
	assert.ok(sendMs < 90_000, `the sends took ${sendMs} ms`);
});
