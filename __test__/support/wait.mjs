// Waiting in tests: polling (`waitFor`, `waitUntil`), deadlines (`within`), `sleep`, the
// exactly-once ledger and a subscriber that collects a session's events.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { UUID_V7 } from "./runs.mjs";

/** Generous deadline for anything that should happen "soon" on a loaded machine. */
export const SOON_MS = 15_000;

/** `sleep(ms[, value])`: node:timers/promises setTimeout. */
export { sleep };

/**
 * Polls `predicate` (every `everyMs`) until it returns a truthy value, and resolves with that
 * value; fails with `what` after `timeoutMs`.
 */
export async function waitFor(predicate, what = "condition", timeoutMs = SOON_MS, everyMs = 10) {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const value = await predicate();
		if (value) return value;
		if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
		await sleep(everyMs);
	}
}

/** {@link waitFor} with options: `waitUntil(fn, { timeoutMs = 10000, intervalMs = 20, message })`. */
export function waitUntil(fn, { timeoutMs = 10000, intervalMs = 20, message = "condition" } = {}) {
	return waitFor(fn, message, timeoutMs, intervalMs);
}

/** Resolves with `promise`, or fails the test if it has not settled within `ms`. */
export async function within(promise, ms, what) {
	let timer;
	const timeout = new Promise((_, reject) => {
		timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
	});
	try {
		return await Promise.race([promise, timeout]);
	} finally {
		clearTimeout(timer);
	}
}

/**
 * Every message sent through a ledger is tracked; `done()` asserts that each one got exactly one
 * result (a Promise settles once; what can go wrong is that it never settles, rejects, or answers
 * for another session), and that each accepted message was a run of its own: a UUIDv7 `runId`
 * no other message got (a queue-full refusal has none).
 */
export class Ledger {
	entries = [];

	constructor(rt) {
		this.rt = rt;
	}

	send(request) {
		const entry = { request, settled: false, result: undefined, rejection: undefined };
		entry.promise = this.rt.enqueueMessage(request).then(
			(result) => {
				entry.settled = true;
				entry.result = result;
				return result;
			},
			(error) => {
				entry.settled = true;
				entry.rejection = error;
				throw error;
			},
		);
		this.entries.push(entry);
		return entry.promise;
	}

	pending() {
		return this.entries.filter((e) => !e.settled);
	}

	async done(timeoutMs = SOON_MS) {
		await within(
			Promise.allSettled(this.entries.map((e) => e.promise)),
			timeoutMs,
			`${this.pending().length} accepted message(s) still without a result`,
		);
		for (const entry of this.entries) {
			assert.equal(entry.rejection, undefined, `enqueueMessage(${JSON.stringify(entry.request.text)}) rejected`);
			assert.equal(typeof entry.result.ok, "boolean");
			assert.equal(typeof entry.result.response, "string");
			assert.equal(entry.result.sessionKey, entry.request.sessionKey);
			if (!entry.result.ok) assert.equal(typeof entry.result.error, "string");
		}
		const runIds = new Set();
		for (const { request, result } of this.entries) {
			if (!result.ok && /^Queue full \(/.test(result.error)) {
				assert.equal(result.runId, undefined, `a refused message has a runId: ${JSON.stringify(result)}`);
				continue;
			}
			assert.match(String(result.runId), UUID_V7, `enqueueMessage(${JSON.stringify(request.text)}): no runId in ${JSON.stringify(result)}`);
			assert.ok(!runIds.has(result.runId), `two messages share runId ${result.runId}`);
			runIds.add(result.runId);
		}
	}
}

/**
 * Subscribes to a session and collects its events; resolves once `hello` has arrived.
 * `of(type)` filters them, `waitFor(predicate, what)` waits for a matching one.
 */
export async function collect(rt, key) {
	const events = [];
	const unsubscribe = await rt.addSubscriber(key, (event) => events.push(event));
	// (Whether hello has already arrived when addSubscriber resolves is tested on its own.)
	await waitFor(() => events.length > 0, `hello from ${key}`);
	return {
		events,
		unsubscribe,
		of: (type) => events.filter((e) => e.type === type),
		waitFor: (predicate, what) => waitFor(() => events.find(predicate), what),
	};
}
