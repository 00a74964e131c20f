// Approvals (issue 15, SPEC §13) in the tests: a gateway in front of real pi sessions on the
// faux model (lib/faux-agent.js, whose `/bash` command makes pi's real bash tool calls) with an
// approval config, a directory for marker files (so "did the command run" is read on disk), the
// approval routes, and waiting for approval events on a session's event stream.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startChatGateway } from "./gateway.mjs";
import { request } from "./http.mjs";
import { getRun } from "./runs.mjs";
import { SOON_MS, sleep, waitFor } from "./wait.mjs";

export const enc = encodeURIComponent;

/** Any UUID in canonical lower-case form (approval ids are UUIDs; the contract names no version). */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The error texts of the approval routes (issue 15 contract). */
export const INVALID_APPROVED = "Invalid approved: expected a boolean";
export const INVALID_REASON = "Invalid reason: expected a string of at most 2000 characters";
export const notFound = (id) => `Approval not found: ${id}`;
export const alreadyDecided = (id) => `Approval already decided: ${id}`;

/** What the model is told on denial (the tool result's text). */
export const DENIED_BY_USER = "Denied by the user";
export const deniedByUser = (reason) => `Denied by the user: ${reason}`;
export const DENIED_BY_POLICY = "Denied by policy";
export const DENIED_ABORTED = "Denied: the run was aborted";
export const DENIED_TOO_MANY = "Denied: too many pending approvals";
export const DENIED_TIMEOUT = /^Denied: no decision within \d+(\.\d+)? s$/;

/** The default approval timeout (ms). */
export const DEFAULT_TIMEOUT_MS = 120_000;

/**
 * Starts a gateway (support/gateway.mjs's startChatGateway: real pi sessions on the faux model)
 * with `approval` as `config.approval` (left out when undefined) and `config` merged in, plus a
 * temporary directory `markers` for the marker files the test commands write. `close()` stops
 * the gateway, closes the faux agent and removes the directory.
 */
export async function startApprovalGateway({ approval, config = {} } = {}) {
	const markers = await mkdtemp(join(tmpdir(), "pi-gateway-approvals-"));
	let gw;
	try {
		gw = await startChatGateway({ config: approval === undefined ? config : { ...config, approval } });
	} catch (error) {
		await rm(markers, { recursive: true, force: true });
		throw error;
	}
	const close = gw.close;
	return {
		...gw,
		markers,
		/** The path of marker file `name` in this gateway's marker directory. */
		marker: (name) => join(markers, name),
		async close() {
			try {
				await close();
			} finally {
				await rm(markers, { recursive: true, force: true });
			}
		},
	};
}

/**
 * A harmless bash command that prints `out` and then writes marker file `path`: the output
 * shows in the answer (`bash said: <out>`), the file shows whether it ran.
 */
export const markCommand = (path, out) => `echo ${out}; echo ran > '${path}'`;

/** The `/bash` message running `commands` (one bash tool call each, in one assistant message). */
export const bashMessage = (...commands) => `/bash ${commands.join(" ;; ")}`;

export const approvalsPath = (key, approvalId) =>
	`/sessions/${enc(key)}/approvals${approvalId === undefined ? "" : `/${enc(approvalId)}`}`;

/** GET /sessions/:key/approvals: asserts 200 and the shape, returns the list. */
export async function listPending(port, key) {
	const r = await request(port, "GET", approvalsPath(key));
	assert.equal(r.status, 200, `GET ${approvalsPath(key)}: ${r.status} ${r.text}`);
	assert.deepEqual(Object.keys(r.json), ["approvals"], r.text);
	assert.ok(Array.isArray(r.json.approvals), r.text);
	return r.json.approvals;
}

/** POST /sessions/:key/approvals/:approvalId with `body` (an object as JSON, a string as is). */
export function decide(port, key, approvalId, body) {
	return request(port, "POST", approvalsPath(key, approvalId), { body });
}

/** {@link decide}, asserting the 200 answer for a client decision; returns its JSON. */
export async function decideOk(port, key, approvalId, decision) {
	const r = await decide(port, key, approvalId, decision);
	assert.equal(r.status, 200, `POST ${approvalsPath(key, approvalId)} ${JSON.stringify(decision)}: ${r.status} ${r.text}`);
	const expected = { ok: true, approvalId, approved: decision.approved, by: "client" };
	if (decision.reason !== undefined) expected.reason = decision.reason;
	assert.deepEqual(r.json, expected);
	return r.json;
}

/**
 * Asserts a 409 answer to a decision on an approval already decided, as `resolved` (its
 * approval_resolved event) says: `{error, approved, by}`, and `reason` only as that event has it.
 */
export function assertAlreadyDecided(response, resolved) {
	assert.equal(response.status, 409, `${response.status} ${response.text}`);
	const expected = { error: alreadyDecided(resolved.approvalId), approved: resolved.approved, by: resolved.by };
	if (response.json && "reason" in response.json) expected.reason = resolved.reason;
	assert.deepEqual(response.json, expected);
}

/** The events (data) of an event stream `sse` of type `type` (and of run `runId` when given). */
export const eventsOf = (sse, type, runId) =>
	sse.events().map((f) => f.data).filter((e) => e.type === type && (runId === undefined || e.runId === runId));

/** Waits until `sse` holds at least `n` `approval_request` events of run `runId`; returns the first `n`. */
export async function approvalRequests(sse, runId, n = 1, timeoutMs = SOON_MS) {
	const found = await waitFor(
		() => {
			const list = eventsOf(sse, "approval_request", runId);
			return list.length >= n ? list : undefined;
		},
		`${n} approval_request event(s) of run ${runId}`,
		timeoutMs,
	);
	return found.slice(0, n);
}

/** Waits for the `approval_resolved` event of `approvalId` on `sse`; returns it. */
export async function resolvedEvent(sse, approvalId, timeoutMs = SOON_MS) {
	const frame = await sse.waitFor(
		(f) => f.data?.type === "approval_resolved" && f.data.approvalId === approvalId,
		timeoutMs,
		`approval_resolved of ${approvalId}`,
	);
	return frame.data;
}

/** Waits for the `run_end` event of `runId` on `sse`; returns it. */
export async function runEndEvent(sse, runId, timeoutMs = SOON_MS) {
	const frame = await sse.waitFor((f) => f.data?.type === "run_end" && f.data.runId === runId, timeoutMs, `run_end of ${runId}`);
	return frame.data;
}

/** Index of the first frame of `sse` whose event matches `pred` (-1 when none). */
export const frameIndex = (sse, pred) => sse.events().findIndex((f) => pred(f.data));

/**
 * Checks an `approval_request` event field by field (exactly the contract's fields):
 * session, run, tool, args, a UUID approvalId, the toolCallId of the run's `tool_start` for
 * that call on the same stream, and `expiresAt` = request time + `timeoutMs` (the request time
 * lies between `before` and `after`, ms since epoch).
 */
export function assertRequestEvent(event, sse, { key, runId, toolName = "bash", args, timeoutMs = DEFAULT_TIMEOUT_MS, before, after }) {
	assert.deepEqual(
		Object.keys(event).sort(),
		["approvalId", "args", "expiresAt", "runId", "sessionKey", "toolCallId", "toolName", "type"],
		`approval_request fields: ${JSON.stringify(event)}`,
	);
	assert.equal(event.type, "approval_request");
	assert.equal(event.sessionKey, key);
	assert.equal(event.runId, runId);
	assert.equal(event.toolName, toolName);
	assert.deepEqual(event.args, args);
	assert.match(event.approvalId, UUID);
	assert.equal(typeof event.toolCallId, "string");
	assert.ok(event.toolCallId.length > 0);
	const starts = eventsOf(sse, "tool_start", runId).filter((e) => e.toolCallId === event.toolCallId);
	if (starts.length > 0) {
		assert.equal(starts.length, 1, "one tool_start per tool call");
		assert.equal(starts[0].toolName, toolName);
		assert.deepEqual(starts[0].args, args);
	}
	assert.equal(typeof event.expiresAt, "number");
	assert.ok(Number.isInteger(event.expiresAt), `expiresAt ${event.expiresAt} is ms since epoch`);
	assert.ok(
		event.expiresAt >= before + timeoutMs - 5 && event.expiresAt <= after + timeoutMs + 5,
		`expiresAt ${event.expiresAt} should be the request time + ${timeoutMs} ms (request between ${before} and ${after})`,
	);
}

/** Checks an `approval_resolved` event: exactly `{type, sessionKey, approvalId, toolCallId, approved, reason?, by, runId}`. */
export function assertResolvedEvent(event, { key, runId, request, approved, by, reason }) {
	const expected = {
		type: "approval_resolved",
		sessionKey: key,
		approvalId: request.approvalId,
		toolCallId: request.toolCallId,
		approved,
		by,
		runId,
	};
	if (reason instanceof RegExp || reason === String) {
		assert.equal(typeof event.reason, "string", `approval_resolved carries a reason: ${JSON.stringify(event)}`);
		assert.ok(event.reason.length > 0, "a non-empty reason");
		if (reason instanceof RegExp) assert.match(event.reason, reason);
		expected.reason = event.reason;
	} else if (reason !== undefined) {
		expected.reason = reason;
	}
	assert.deepEqual(event, expected);
}

/** Checks one entry of GET /approvals (or listApprovals) against its approval_request event. */
export function assertPendingEntry(entry, request, timeoutMs = DEFAULT_TIMEOUT_MS) {
	assert.deepEqual(
		Object.keys(entry).sort(),
		["approvalId", "args", "expiresAt", "requestedAt", "runId", "sessionKey", "toolCallId", "toolName"],
		`pending approval fields: ${JSON.stringify(entry)}`,
	);
	assert.equal(entry.approvalId, request.approvalId);
	assert.equal(entry.sessionKey, request.sessionKey);
	assert.equal(entry.runId, request.runId);
	assert.equal(entry.toolCallId, request.toolCallId);
	assert.equal(entry.toolName, request.toolName);
	assert.deepEqual(entry.args, request.args);
	assert.equal(entry.expiresAt, request.expiresAt);
	assert.equal(typeof entry.requestedAt, "number");
	assert.ok(Math.abs(entry.expiresAt - entry.requestedAt - timeoutMs) <= 1, `expiresAt ${entry.expiresAt} = requestedAt ${entry.requestedAt} + ${timeoutMs}`);
}

/** The ended run's record; asserts it ended with `status`. */
export async function endedRun(port, key, runId, status) {
	const record = await waitFor(
		async () => {
			const r = await getRun(port, key, runId);
			return ["succeeded", "failed", "aborted", "cancelled"].includes(r.status) ? r : undefined;
		},
		`run ${runId} to end`,
	);
	assert.equal(record.status, status, `run ${runId}: ${JSON.stringify(record)}`);
	return record;
}

/**
 * Asserts that marker `path` is not there, and still not after `settleMs` (a command that was
 * let through would have written it by then: pi runs tools before the run ends).
 */
export async function assertNeverRan(path, what, settleMs = 150) {
	assert.equal(existsSync(path), false, `${what}: the command ran (${path} exists)`);
	await sleep(settleMs);
	assert.equal(existsSync(path), false, `${what}: the command ran later (${path} exists)`);
}
