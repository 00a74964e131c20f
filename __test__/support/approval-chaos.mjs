// Approvals under chaos (issue 15, SPEC §13), for __test__/exactly-once-approvals.test.mjs:
// - `watchEvents(port, key, problem)`: a reader of a session's whole event stream that outlives
//   the session: when the gateway ends it (a DELETE of the session forgets its log; a reset ends
//   it too) it reconnects at once with `?after=0`, so the next session of the key is read from its
//   first event (what it had already is skipped). Every event of every session of the key is
//   kept, with the connection it came on.
// - `approvalActions(...)`: the chaos' decisions: list the pending approvals of a session (REST or
//   `listApprovals`), decide some (REST or `resolveApproval`), sometimes decide one again (which
//   must be refused 409 with the decision that stands), sometimes send a bad body (400, nothing
//   changes); every attempt and its answer is recorded for the accounting. Plus an abort over HTTP.
// - `continuationBody(...)`: the chat POST that `addToolApprovalResponse` + `sendAutomaticallyWhen`
//   send after a paused stream (the assistant message with `approval-responded` parts).
//
// Every helper takes `problem(text)`, the suite's collector of problems.

import { isDeepStrictEqual } from "node:util";

import { request } from "./http.mjs";
import { openSse } from "./sse.mjs";
import { sleep, within } from "./wait.mjs";

const enc = encodeURIComponent;
/** How long one chaos request may take. */
const CHAOS_REQUEST_MS = 12_000;

/** The fields of a pending approval (GET /sessions/:key/approvals, listApprovals). */
export const PENDING_FIELDS = ["approvalId", "args", "expiresAt", "requestedAt", "runId", "sessionKey", "toolCallId", "toolName"];
/** The fields of an `approval_request` event. */
export const REQUEST_FIELDS = ["approvalId", "args", "expiresAt", "runId", "sessionKey", "toolCallId", "toolName", "type"];

export const INVALID_APPROVED = "Invalid approved: expected a boolean";
export const notFound = (id) => `Approval not found: ${id}`;
export const alreadyDecided = (id) => `Approval already decided: ${id}`;

/**
 * Reads every event of `key` (GET /sessions/:key/events?after=0), reconnecting whenever the
 * gateway ends the stream, until `stop()`. A reconnection replays the key's log from its start:
 * the same log again (a reset keeps it) gives frames already kept (same id, same content: skipped),
 * a new log (after a deletion) gives the next session's events. The ids are promised to be
 * strictly increasing per key; an id that comes again with other content (a new log reusing the
 * ids of the one a deletion forgot) is a problem, once per connection, and the frame is kept.
 * Returns:
 * - `events()`: every event so far, `{id, gen, data}` in the order they came (`gen`: which
 *   connection; within one, by id);
 * - `liveSince(t, ms)`: resolves once a connection whose `hello` came at or after `t` is open
 *   (after a DELETE of the session: the reader of the key's next session);
 * - `stats`: connections, how many ended by the gateway, ids reused;
 * - `stop()`: closes it (resolves once the last connection's events are kept).
 */
export function watchEvents(port, key, problem) {
	const kept = [];
	const seen = new Map(); // id -> [text of each frame with that id]
	const stats = { connections: 0, endedByGateway: 0, idsReused: 0 };
	let stopped = false;
	let current; // {reader, helloAt}
	let stop;
	const stopping = new Promise((r) => (stop = r));
	const keep = (reader, gen) => {
		let last = -1;
		const reused = [];
		for (const f of reader.events()) {
			if (f.data?.type === "hello") continue;
			if (typeof f.id !== "number") {
				problem(`events of ${key}: a frame without a numeric id: ${JSON.stringify(f)}`);
				continue;
			}
			if (f.id <= last) problem(`events of ${key}: id ${f.id} after ${last} on one connection: ${f.text}`);
			last = f.id;
			const texts = seen.get(f.id) ?? [];
			if (texts.includes(f.text)) continue; // replayed: kept already
			if (texts.length > 0) reused.push(`${f.id} (was ${texts[0].slice(0, 160)}; now ${f.text.slice(0, 160)})`);
			seen.set(f.id, [...texts, f.text]);
			kept.push({ id: f.id, gen, data: f.data });
		}
		if (reused.length > 0) {
			stats.idsReused += reused.length;
			problem(`events of ${key}: connection ${gen} brought ${reused.length} ids the key had already issued, with other events (ids must be strictly increasing per key): ${reused.slice(0, 3).join("; ")}`);
		}
	};
	const loop = (async () => {
		let gen = 0;
		while (!stopped) {
			let reader;
			try {
				reader = await openSse(port, `/sessions/${enc(key)}/events?after=0`, { timeoutMs: CHAOS_REQUEST_MS });
			} catch (e) {
				if (!stopped) problem(`events of ${key}: could not connect: ${e?.message ?? e}`);
				await sleep(20);
				continue;
			}
			if (reader.status !== 200) {
				problem(`events of ${key}: GET answered ${reader.status}`);
				reader.close();
				await sleep(20);
				continue;
			}
			gen++;
			stats.connections++;
			try {
				const hello = await reader.waitFor((f) => f.data?.type === "hello", CHAOS_REQUEST_MS, `hello of ${key}`);
				if (hello.data.missed) problem(`events of ${key}: the log no longer reaches back (hello ${hello.text})`);
				current = { reader, helloAt: Date.now() };
			} catch (e) {
				if (!stopped) problem(`events of ${key}: ${e?.message ?? e}`);
			}
			await Promise.race([reader.ended, stopping]);
			if (!stopped) stats.endedByGateway++;
			reader.close();
			keep(reader, gen);
		}
	})();
	return {
		events: () => kept,
		stats,
		async liveSince(t, ms = CHAOS_REQUEST_MS) {
			const deadline = Date.now() + ms;
			while (!(current && current.helloAt >= t && !current.reader.isEnded)) {
				if (Date.now() > deadline) {
					problem(`events of ${key}: no reader of its next session within ${ms} ms`);
					return;
				}
				await sleep(5);
			}
		},
		async stop() {
			stopped = true;
			stop();
			await loop;
		},
	};
}

/**
 * The chaos' approval actions on one gateway. Each counts itself in `log[<name>]`; every decision
 * attempt is pushed to `decisions`: `{key, approvalId, runId, how: "rest" | "js", approved,
 * reason, bad, second, listedAt, sentAt, answeredAt, status, body}` (`body`: the JSON answer, or
 * for the JS API the return value / `{error, approved, by, reason}` of the thrown
 * GatewayApprovalError, as the REST body would be; `second`: a repeat right after a 200).
 * `pendingSeen` collects every pending entry listed (their shape is checked here).
 * - `decide(key)`: lists the key's pending approvals and decides each with probability
 *   `decideOdds` (approve with `approveOdds`; a reason now and then), by REST 3 times in 4; after a
 *   200, 30 % of the time the same approval is decided again (either way); 5 % of the time a bad
 *   body goes first (`{approved:"yes"}`: 400, nothing changes).
 * - `abortHttp(key)`: POST /sessions/:key/abort (`{ok: boolean}`).
 */
export function approvalActions({ port, rt, rand, log, problem, timeoutMs, decideOdds = 0.75, approveOdds = 0.6 }) {
	const decisions = [];
	const pendingSeen = [];
	const bump = (name) => (log[name] = (log[name] ?? 0) + 1);

	async function list(key) {
		if (rand() < 0.25) return { how: "js", list: rt.listApprovals(key) };
		const r = await within(request(port, "GET", `/sessions/${enc(key)}/approvals`), CHAOS_REQUEST_MS, `GET approvals of ${key}`);
		if (r.status !== 200 || !isDeepStrictEqual(Object.keys(r.json ?? {}), ["approvals"]) || !Array.isArray(r.json.approvals)) {
			problem(`GET approvals of ${key}: ${r.status} ${r.text}`);
			return { how: "rest", list: [] };
		}
		return { how: "rest", list: r.json.approvals };
	}

	async function send(key, approvalId, body, how) {
		if (how === "rest") {
			const r = await within(
				request(port, "POST", `/sessions/${enc(key)}/approvals/${enc(approvalId)}`, { body }),
				CHAOS_REQUEST_MS,
				`decide ${approvalId}`,
			);
			return { status: r.status, body: r.json ?? r.text };
		}
		try {
			return { status: 200, body: rt.resolveApproval(key, approvalId, body) };
		} catch (e) {
			if (typeof e?.status !== "number") {
				problem(`resolveApproval ${approvalId}: threw ${e?.name}: ${e?.message ?? e}`);
				return { status: -1, body: String(e?.message ?? e) };
			}
			if (e.name !== "GatewayApprovalError") problem(`resolveApproval ${approvalId}: threw a ${e.name}, not a GatewayApprovalError`);
			const body = { error: e.message };
			if (e.decided) Object.assign(body, e.decided);
			return { status: e.status, body };
		}
	}

	async function attempt(key, entry, listedAt, { approved, reason, bad = false, second = false, how }) {
		const decision = bad ? { approved: "yes" } : reason === undefined ? { approved } : { approved, reason };
		const sentAt = Date.now();
		const { status, body } = await send(key, entry.approvalId, decision, how);
		const rec = { key, approvalId: entry.approvalId, runId: entry.runId, how, approved, reason, bad, second, listedAt, sentAt, answeredAt: Date.now(), status, body };
		decisions.push(rec);
		bump(bad ? "badDecision" : second ? "secondDecision" : "decision");
		return rec;
	}

	return {
		decisions,
		pendingSeen,
		async decide(key) {
			const listedAt = Date.now();
			const { how: listHow, list: pending } = await list(key);
			bump("listApprovals");
			for (const entry of pending) {
				pendingSeen.push({ key, listHow, listedAt, entry });
				if (!isDeepStrictEqual(Object.keys(entry).sort(), PENDING_FIELDS)) problem(`pending approval of ${key} (${listHow}): fields ${JSON.stringify(entry)}`);
				if (entry.sessionKey !== key || entry.toolName !== "bash") problem(`pending approval of ${key} (${listHow}): ${JSON.stringify(entry)}`);
				if (Math.abs(entry.expiresAt - entry.requestedAt - timeoutMs) > 1) problem(`pending approval ${entry.approvalId}: expiresAt ${entry.expiresAt} is not requestedAt ${entry.requestedAt} + ${timeoutMs}`);
			}
			for (const entry of pending) {
				if (rand() >= decideOdds) continue;
				const how = rand() < 0.75 ? "rest" : "js";
				if (rand() < 0.05) await attempt(key, entry, listedAt, { bad: true, how });
				const approved = rand() < approveOdds;
				const reason = rand() < (approved ? 0.15 : 0.5) ? `${approved ? "fine" : "not"} ${entry.approvalId.slice(0, 8)}` : undefined;
				const first = await attempt(key, entry, listedAt, { approved, reason, how });
				if (first.status === 200 && rand() < 0.3) {
					await attempt(key, entry, listedAt, { approved: rand() < 0.5, second: true, how: rand() < 0.75 ? "rest" : "js" });
				}
			}
		},
		async abortHttp(key) {
			bump("abortHttp");
			const r = await within(request(port, "POST", `/sessions/${enc(key)}/abort`), CHAOS_REQUEST_MS, `abort ${key}`);
			if (r.status !== 200 || typeof r.json?.ok !== "boolean") problem(`POST /sessions/${key}/abort: ${r.status} ${r.text}`);
		},
	};
}

/**
 * The chat continuation after a paused stream (`first`: its chunks): the user message and the
 * assistant message `runId` whose tool parts are the stream's `tool-input-available` calls, each
 * held one `approval-responded` with `decide(approvalId, i)` → `{approved, reason?}`, the others
 * (the allowed `read`) still `input-available`. Returns `{body, decisions: [{approvalId, toolCallId, approved, reason}]}`.
 */
export function continuationBody({ chatId, user, runId, first, decide }) {
	const asked = new Map(first.filter((c) => c?.type === "tool-approval-request").map((c) => [c.toolCallId, c.approvalId]));
	const decisions = [];
	const parts = [{ type: "step-start" }];
	for (const c of first) {
		if (c?.type !== "tool-input-available") continue;
		const approvalId = asked.get(c.toolCallId);
		if (approvalId === undefined) {
			parts.push({ type: "dynamic-tool", toolName: c.toolName, toolCallId: c.toolCallId, state: "input-available", input: c.input });
			continue;
		}
		const d = decide(approvalId, decisions.length);
		decisions.push({ approvalId, toolCallId: c.toolCallId, ...d });
		parts.push({
			type: "dynamic-tool",
			toolName: c.toolName,
			toolCallId: c.toolCallId,
			state: "approval-responded",
			input: c.input,
			approval: d.reason === undefined ? { id: approvalId, approved: d.approved } : { id: approvalId, approved: d.approved, reason: d.reason },
		});
	}
	return {
		body: { id: chatId, messages: [user, { id: runId, role: "assistant", parts }], trigger: "submit-message", messageId: runId },
		decisions,
	};
}
