// Runs (issue 12, SPEC §10), the one home of the tests' run helpers:
// - in the existing suites: every accepted message's result carries a `runId` (a UUIDv7), and an
//   HTTP answer that accepted one carries it again in `x-run-id`. `withRunId(result)` checks the
//   runId and hands back the rest, so a test's deepEqual keeps checking every other field exactly;
// - the run API: posting messages (waiting or `wait: false`), reading and polling run records
//   and checking their shape, a run's event stream, a session's whole event log, a `/chat` UI
//   message stream, and raw requests with header bytes node:http refuses to send;
// - the frames of a run on a session's event stream.

import assert from "node:assert/strict";

import { parseResponses, rawConnect, request } from "./http.mjs";
import { openSse, parseSse } from "./sse.mjs";
import { sleep, within } from "./wait.mjs";

/** A UUIDv7 in its canonical lower-case form. */
export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A well-formed UUIDv7 that no gateway ever issued. */
export const UNKNOWN_RUN_ID = "01900000-0000-7000-8000-000000000000";

/** The statuses a run ends with, and all of them. */
export const ENDED = new Set(["succeeded", "failed", "aborted", "cancelled"]);
export const ALL_STATUSES = new Set(["queued", "running", ...ENDED]);

/**
 * Asserts that `result` (a GatewayMessageResult of an accepted message) has a UUIDv7 `runId`
 * and returns a copy without it.
 */
export function withRunId(result, what = "the result") {
	assert.ok(result && typeof result === "object", `${what} is not an object: ${JSON.stringify(result)}`);
	assert.match(String(result.runId), UUID_V7, `${what} has no UUIDv7 runId: ${JSON.stringify(result)}`);
	const { runId: _runId, ...rest } = result;
	return rest;
}

/** A header of an answer whose `headers` is a plain object (node:http) or a fetch Headers. */
function header(headers, name) {
	return typeof headers?.get === "function" ? (headers.get(name) ?? undefined) : headers?.[name];
}

/** The parsed JSON body of an answer: `json` (support/http.mjs) or `body` (support/rel-util.mjs). */
function bodyOf(response) {
	return "json" in response ? response.json : response.body;
}

/**
 * For an HTTP answer `{status, headers, json}` (or rel-util's `{status, headers, body}`) that
 * accepted a message: asserts the body's runId (see withRunId) and that the `x-run-id` header
 * repeats it; returns the body without it.
 */
export function bodyWithRunId(response, what = "the answer") {
	const body = bodyOf(response);
	const rest = withRunId(body, what);
	assert.equal(header(response.headers, "x-run-id"), body.runId, `${what}: x-run-id header vs body runId`);
	return rest;
}

/**
 * Asserts that a refused result (e.g. queue full, 429) has no runId; given an HTTP answer (with
 * `headers`), that it has no x-run-id header either.
 */
export function assertNoRunId(resultOrResponse, what = "the refusal") {
	const isResponse = resultOrResponse && typeof resultOrResponse === "object" && "headers" in resultOrResponse && "status" in resultOrResponse;
	const body = isResponse ? bodyOf(resultOrResponse) : resultOrResponse;
	assert.equal(body?.runId, undefined, `${what} carries a runId: ${JSON.stringify(body)}`);
	if (isResponse) assert.equal(header(resultOrResponse.headers, "x-run-id"), undefined, `${what} has an x-run-id header`);
}

export const runPath = (key, runId = "") =>
	`/sessions/${encodeURIComponent(key)}/runs${runId ? `/${encodeURIComponent(runId)}` : ""}`;

/** POST /sessions/:key/messages; `json` is the body. */
export function postMessage(port, key, body, { headers = {}, query = "", timeoutMs } = {}) {
	return request(port, "POST", `/sessions/${encodeURIComponent(key)}/messages${query}`, { body, headers, timeoutMs });
}

/**
 * POST /sessions/:key/messages with `wait: false` (or, given `query`, the body `{text}` and that
 * query string) and checks the 202 answer: exactly {runId (a UUIDv7), sessionKey, status (queued
 * or running)}, `Location` naming the run and `x-run-id` repeating its id. Returns the runId.
 */
export async function submit(port, key, text, { query } = {}) {
	const r = await postMessage(port, key, query ? { text } : { text, wait: false }, { query });
	assert.equal(r.status, 202, `wait:false ${text}: ${r.status} ${r.text.slice(0, 300)}`);
	assert.match(r.json.runId, UUID_V7);
	assert.deepEqual(Object.keys(r.json).sort(), ["runId", "sessionKey", "status"]);
	assert.equal(r.json.sessionKey, key);
	assert.ok(["queued", "running"].includes(r.json.status), `202 status ${r.json.status}`);
	assert.equal(r.headers.location, `${runPath(key, r.json.runId)}`);
	assert.equal(r.headers["x-run-id"], r.json.runId, "202 carries x-run-id");
	return r.json.runId;
}

/** GET /sessions/:key/runs/:runId → the run record (any status but 200, 404 too, fails). */
export async function getRun(port, key, runId) {
	const r = await request(port, "GET", runPath(key, runId));
	assert.equal(r.status, 200, `GET ${runPath(key, runId)}: ${r.status} ${r.text}`);
	return r.json.run;
}

/** GET /sessions/:key/runs → the list of records. */
export async function listRuns(port, key) {
	const r = await request(port, "GET", runPath(key));
	assert.equal(r.status, 200, `GET ${runPath(key)}: ${r.status} ${r.text}`);
	assert.ok(Array.isArray(r.json?.runs), `GET ${runPath(key)}: ${r.text}`);
	return r.json.runs;
}

/**
 * Polls GET of a run every `everyMs` until `until(record)` holds; returns {record, seen}: `seen`
 * lists the distinct statuses observed, in order (consecutive repeats folded).
 */
export async function pollRun(port, key, runId, until, { timeoutMs = 15000, everyMs = 5, what = "" } = {}) {
	const seen = [];
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const record = await getRun(port, key, runId);
		assert.ok(record, `run ${runId} of ${key} vanished while polled`);
		if (seen.at(-1) !== record.status) seen.push(record.status);
		if (until(record)) return { record, seen };
		if (Date.now() > deadline) {
			assert.fail(`run ${runId} of ${key}: ${what || "condition"} not reached within ${timeoutMs} ms (statuses seen ${seen.join(" → ")})`);
		}
		await sleep(everyMs);
	}
}

/** Polls until the run has ended; returns {record, seen}. */
export const pollRunEnded = (port, key, runId, opts = {}) =>
	pollRun(port, key, runId, (r) => ENDED.has(r.status), { what: "an end", ...opts });

/**
 * Checks the fields of a run record for its status: timestamps present (and ordered) exactly when
 * they should be, `result` exactly once ended, and no field outside the contract.
 */
export function assertRecordShape(record, { runId, sessionKey } = {}) {
	const allowed = new Set(["runId", "sessionKey", "status", "mode", "createdAt", "startedAt", "endedAt", "result"]);
	for (const k of Object.keys(record)) assert.ok(allowed.has(k), `unexpected field ${k} in run record ${JSON.stringify(record)}`);
	assert.match(record.runId, UUID_V7);
	if (runId) assert.equal(record.runId, runId);
	if (sessionKey) assert.equal(record.sessionKey, sessionKey);
	assert.ok(ALL_STATUSES.has(record.status), `status ${record.status}`);
	assert.equal(record.mode, "queue");
	assert.equal(typeof record.createdAt, "number");
	const ended = ENDED.has(record.status);
	if (record.status === "queued") assert.equal(record.startedAt, undefined, "a queued run has no startedAt");
	if (record.status === "running") assert.equal(typeof record.startedAt, "number", "a running run has startedAt");
	if (record.startedAt !== undefined) assert.ok(record.startedAt >= record.createdAt, "startedAt >= createdAt");
	if (ended) {
		assert.equal(typeof record.endedAt, "number", `an ended run has endedAt: ${JSON.stringify(record)}`);
		assert.ok(record.endedAt >= (record.startedAt ?? record.createdAt), "endedAt >= startedAt/createdAt");
		assert.ok(record.result, `an ended run has its result: ${JSON.stringify(record)}`);
		assert.equal(record.result.runId, record.runId, "result.runId");
		assert.equal(record.result.sessionKey, record.sessionKey, "result.sessionKey");
		assert.equal(record.result.ok, record.status === "succeeded", `result.ok for ${record.status}`);
		if (!record.result.ok) assert.equal(typeof record.result.error, "string");
	} else {
		assert.equal(record.endedAt, undefined, "no endedAt before the end");
		assert.equal(record.result, undefined, "no result before the end");
	}
}

/**
 * POST /sessions/:key/chat and read the whole UI message stream.
 * Resolves {status, headers, text, chunks (parsed JSON chunks, "[DONE]" as the string), json}.
 */
export async function postChat(port, key, body, { headers = {}, timeoutMs = 15000 } = {}) {
	const r = await request(port, "POST", `/sessions/${encodeURIComponent(key)}/chat`, { body, headers, timeoutMs });
	const chunks = r.status === 200 ? parseSse(r.text).frames.filter((f) => f.data !== undefined).map((f) => f.data) : [];
	return { ...r, chunks };
}

/** The concatenated `text-delta` deltas of a chunk list. */
export const chatText = (chunks) =>
	chunks
		.filter((c) => c?.type === "text-delta")
		.map((c) => c.delta)
		.join("");

/** The last chunk before `[DONE]` (finish/abort/error), after checking that `[DONE]` ends the stream. */
export function chatTerminal(chunks) {
	assert.equal(chunks.at(-1), "[DONE]", `the chat stream ends with [DONE]: ${JSON.stringify(chunks.slice(-3))}`);
	return chunks.at(-2);
}

/**
 * Reads GET /sessions/:key/runs/:runId/events to its end (it must end by itself within
 * `timeoutMs`). Resolves the stream ({status, headers, frames, raw, events()}).
 */
export async function readRunEvents(port, key, runId, { headers = {}, query = "", timeoutMs = 10000 } = {}) {
	const s = await openSse(port, `${runPath(key, runId)}/events${query}`, { headers, timeoutMs });
	if (s.status !== 200) {
		await within(s.ended, timeoutMs, "the error response to end");
		return s;
	}
	try {
		await within(s.ended, timeoutMs, `the event stream of run ${runId} to end after run_end`);
	} catch (e) {
		s.close();
		throw new Error(`${e.message}; frames so far: ${JSON.stringify(s.events().map((f) => f.data.type))}`);
	}
	return s;
}

/**
 * The whole event log of a session key, as replayed by GET /sessions/:key/events?after=0: first a
 * plain connection's hello names the last id logged (its `id:`), then the replay is read up to
 * that id. Resolves {hello (of the replay), frames (after hello, each {id, data})}. Only for a
 * session that is quiet meanwhile.
 */
export async function readLog(port, key, { timeoutMs = 10000 } = {}) {
	const path = `/sessions/${encodeURIComponent(key)}/events`;
	const head = await openSse(port, path, { timeoutMs });
	let last;
	try {
		assert.equal(head.status, 200, `GET events of ${key}: ${head.status}`);
		last = (await head.waitFor((f) => f.data?.type === "hello", timeoutMs)).id;
	} finally {
		head.close();
	}
	assert.ok(Number.isInteger(last) && last >= 0, `hello of ${key} names the last logged id: ${last}`);
	const s = await openSse(port, `${path}?after=0`, { timeoutMs });
	try {
		assert.equal(s.status, 200, `GET events?after=0 of ${key}: ${s.status}`);
		const hello = await s.waitFor((f) => f.data?.type === "hello", timeoutMs);
		if (last > 0) await s.waitFor((f) => f.id === last && f !== hello, timeoutMs);
		const frames = s.frames.slice(s.frames.indexOf(hello) + 1).filter((f) => f.data !== undefined && f.id <= last);
		return { hello, frames };
	} finally {
		s.close();
	}
}

/**
 * One request written byte for byte on a fresh connection (for header values node:http will not
 * send, such as raw UTF-8). `headers` is a list of "Name: value" lines. Resolves {status, headers, json, text}.
 */
export async function rawPost(port, path, body, headerLines, { timeoutMs = 10000 } = {}) {
	const payload = Buffer.from(typeof body === "string" ? body : JSON.stringify(body), "utf8");
	const head = [
		`POST ${path} HTTP/1.1`,
		"Host: 127.0.0.1",
		"Content-Type: application/json",
		`Content-Length: ${payload.length}`,
		"Connection: close",
		...headerLines,
	].join("\r\n");
	const conn = await rawConnect(port);
	try {
		conn.socket.write(Buffer.concat([Buffer.from(`${head}\r\n\r\n`, "utf8"), payload]));
		const data = await conn.waitForData((d) => parseResponses(d).length > 0, timeoutMs);
		const [res] = parseResponses(data);
		let json;
		try {
			json = JSON.parse(Buffer.from(res.body, "latin1").toString("utf8"));
		} catch {
			json = undefined;
		}
		return { status: res.status, headers: res.headers, text: res.body, json };
	} finally {
		conn.destroy();
	}
}

/** The events a run causes (SPEC §5, §10): each carries its run's `runId`. */
export const RUN_CAUSED = new Set([
	"agent_start",
	"agent_end",
	"turn_start",
	"turn_end",
	"message_start",
	"token",
	"thinking",
	"tool_start",
	"tool_update",
	"tool_complete",
	"message_complete",
	"error",
	"aborted",
]);

/**
 * Checks the frames of one run in `events` (event objects, e.g. the `data` of SSE frames, in
 * stream order) against SPEC §10: `run_start`, then `session_state` with processing:true, then
 * the run's agent events (each carrying its runId), `aborted`|`error` if so, `run_end` (with
 * `status`, when given), then `session_state` with processing:false. `session_state` frames
 * (queue depth changes) may come between the agent events; nothing else may, and no event of
 * the run may come outside run_start..run_end. Returns the run's own events (run_start to
 * run_end, without session_state), for further checks.
 */
export function assertRunFrames(events, runId, { status } = {}) {
	const desc = () => events.map((e) => `${e.type}${e.runId ? `(${e.runId.slice(-4)})` : ""}`).join(",");
	const start = events.findIndex((e) => e.type === "run_start" && e.runId === runId);
	assert.ok(start !== -1, `no run_start for ${runId} in ${desc()}`);
	const end = events.findIndex((e, i) => i > start && e.type === "run_end" && e.runId === runId);
	assert.ok(end !== -1, `no run_end for ${runId} in ${desc()}`);
	assert.equal(
		events.findIndex((e, i) => i !== start && e.type === "run_start" && e.runId === runId),
		-1,
		`two run_starts for ${runId}`,
	);
	assert.equal(events[start + 1]?.type, "session_state", `run_start not followed by session_state: ${desc()}`);
	assert.equal(events[start + 1].snapshot.processing, true, "the session_state after run_start has processing:true");
	assert.equal(events[end + 1]?.type, "session_state", `run_end not followed by session_state: ${desc()}`);
	assert.equal(events[end + 1].snapshot.processing, false, "the session_state after run_end has processing:false");
	if (status !== undefined) assert.equal(events[end].status, status, `run_end status: ${JSON.stringify(events[end])}`);
	const own = [];
	for (let i = start; i <= end; i++) {
		const e = events[i];
		if (e.type === "session_state") continue;
		assert.equal(e.runId, runId, `event ${i} (${e.type}) inside run ${runId} carries runId ${e.runId}: ${desc()}`);
		assert.ok(
			i === start || i === end || RUN_CAUSED.has(e.type),
			`unexpected ${e.type} inside run ${runId}: ${desc()}`,
		);
		own.push(e);
	}
	events.forEach((e, i) => {
		if (i < start || i > end) assert.notEqual(e.runId, runId, `event ${i} (${e.type}) of run ${runId} outside it: ${desc()}`);
	});
	// An aborted or error event, when there is one, comes last before run_end.
	const failure = own.findIndex((e) => e.type === "aborted" || e.type === "error");
	if (failure !== -1) assert.equal(failure, own.length - 2, `the ${own[failure].type} event is not just before run_end: ${desc()}`);
	return own;
}

/** The event stream's non-run events: hello and session_state carry no runId. */
export function assertNoRunIdOn(events) {
	for (const e of events) {
		if (e.type === "hello" || e.type === "session_state") assert.equal(e.runId, undefined, `${e.type} carries a runId`);
	}
}

/**
 * The `start` chunk of run `runId`'s chat stream: exactly `{type, messageId: runId,
 * messageMetadata: {sessionKey, runId}}` (SPEC §12), with the session's key when it is given.
 */
export function assertStartChunk(chunk, runId, what = "the start chunk", sessionKey = undefined) {
	assert.deepEqual(Object.keys(chunk ?? {}).sort(), ["messageId", "messageMetadata", "type"], `${what}: ${JSON.stringify(chunk)}`);
	assert.equal(chunk.type, "start", what);
	assert.equal(chunk.messageId, runId, what);
	assert.deepEqual(Object.keys(chunk.messageMetadata).sort(), ["runId", "sessionKey"], what);
	assert.equal(chunk.messageMetadata.runId, runId, what);
	assert.equal(typeof chunk.messageMetadata.sessionKey, "string", what);
	if (sessionKey !== undefined) assert.equal(chunk.messageMetadata.sessionKey, sessionKey, what);
}

/**
 * The `finish` chunk of a completed run: `finishReason: "stop"` and `messageMetadata {usage,
 * model, stopReason}` (SPEC §12), the usage summed over the run's messages.
 */
export function assertFinishChunk(chunk, what = "the finish chunk") {
	assert.deepEqual(Object.keys(chunk ?? {}).sort(), ["finishReason", "messageMetadata", "type"], `${what}: ${JSON.stringify(chunk)}`);
	assert.equal(chunk.type, "finish", what);
	assert.equal(chunk.finishReason, "stop", what);
	const meta = chunk.messageMetadata;
	assert.deepEqual(Object.keys(meta).sort(), ["model", "stopReason", "usage"], `${what}: ${JSON.stringify(meta)}`);
	assert.equal(meta.stopReason, "stop", what);
	assert.equal(typeof meta.model?.provider, "string", what);
	assert.equal(typeof meta.model?.id, "string", what);
	for (const field of ["input", "output", "cacheRead", "cacheWrite", "totalTokens"]) {
		assert.ok(Number.isInteger(meta.usage[field]) && meta.usage[field] >= 0, `${what}: usage.${field} ${JSON.stringify(meta.usage)}`);
	}
	assert.equal(typeof meta.usage.cost?.total, "number", what);
}
