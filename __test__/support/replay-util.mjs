// Helpers of the replay and chat-resume tests (issue 12, SPEC §10): subscribing to a session's
// event stream with `Last-Event-ID` / `?after=` and reading a run's frames out of it. Starting
// runs (`submit`) and reading their records (`getRun`) is runs.mjs's.

import assert from "node:assert/strict";
import { openSse } from "./sse.mjs";

/** Every SSE stream of the gateway starts with this (SPEC §10). */
export const RETRY_PREFIX = "retry: 2000\n\n";

export const enc = encodeURIComponent;

/**
 * Opens `GET /sessions/:key/events`, optionally with a `Last-Event-ID` header (`lastEventId`)
 * and/or `?after=` (`after`), and waits for its first data frame, which must be `hello`.
 * Returns `{sse, hello}`; `hello` is the frame `{id, data}` (`id` 0 when the frame has none,
 * i.e. when the log was empty). Given a test context `t`, the stream is closed when it ends.
 */
export async function subscribe(port, key, { lastEventId, after, t } = {}) {
	const headers = lastEventId === undefined ? {} : { "last-event-id": String(lastEventId) };
	const query = after === undefined ? "" : `?after=${after}`;
	const sse = await openSse(port, `/sessions/${enc(key)}/events${query}`, { headers });
	t?.after(() => sse.close());
	assert.equal(sse.status, 200, `GET /sessions/${key}/events${query} answered ${sse.status}`);
	const first = await sse.waitFor((f) => f.data !== undefined);
	assert.equal(first.data.type, "hello", `the first data frame is hello, got ${JSON.stringify(first)}`);
	return { sse, hello: { id: first.id ?? 0, data: first.data } };
}

/** The data frames of a stream after its hello, as `{id, data}` (a copy, in order). */
export function afterHello(sse) {
	const events = sse.events();
	assert.equal(events[0]?.data?.type, "hello");
	return events.slice(1).map((f) => ({ id: f.id, data: f.data }));
}

/** Token frames of run `runId` in a list of `{id, data}` (or sse frames). */
export function tokensOf(frames, runId) {
	return frames.filter((f) => f.data?.type === "token" && f.data.runId === runId);
}

/** The text of run `runId`'s token frames in a list of `{id, data}`, joined. */
export function answerOf(frames, runId) {
	return tokensOf(frames, runId)
		.map((f) => f.data.delta)
		.join("");
}

/** True once `frames` hold the `run_end` of `runId` and a `session_state` after it. */
export function ranToEnd(frames, runId) {
	const i = frames.findIndex((f) => f.data?.type === "run_end" && f.data.runId === runId);
	return i >= 0 && frames.slice(i + 1).some((f) => f.data?.type === "session_state");
}

/** Fails unless the ids of `frames` are integers that strictly increase. */
export function assertIncreasing(frames, what) {
	for (let i = 0; i < frames.length; i++) {
		assert.ok(Number.isInteger(frames[i].id), `${what}: frame without an integer id: ${JSON.stringify(frames[i])}`);
		if (i > 0) assert.ok(frames[i].id > frames[i - 1].id, `${what}: id ${frames[i].id} after ${frames[i - 1].id}`);
	}
}
