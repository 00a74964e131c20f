// Shared by the randomized, seeded exactly-once suites with runs (exactly-once-runs,
// exactly-once-modes): the seeded randomness, the clients that send the plan, the chaos that
// deletes and cancels runs, stops chats, aborts, clears, resets and deletes sessions while they
// send (each suite with its own odds), and the accounting both do afterwards — the final run
// records, the run_start/run_end tally of a session's log, a chat stream's ending, and whether
// the chaos' own answers agree with the records.
//
// Every helper takes `problem(text)`, the suite's collector of problems: the suites report all
// that went wrong at once, with the seed to repeat it.

import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";

import { request } from "./http.mjs";
import { mulberry32 } from "./rel-util.mjs";
import { ENDED, listRuns, runPath, UNKNOWN_RUN_ID, UUID_V7 } from "./runs.mjs";
import { openSse } from "./sse.mjs";
import { sleep, within } from "./wait.mjs";

/** How long one chaos request may take. */
const CHAOS_REQUEST_MS = 12_000;

/** The result of a run its session's deletion ended (SPEC §12), and of one a reset ended. */
export const SESSION_DELETED = "Session deleted";
export const SESSION_RESET = "Session reset";

/**
 * The randomness of a seed: `rand` for the plan, `chaosRand` (another stream of the same seed)
 * for the chaos, and `pick(arr, r = rand)`, an element of `arr`.
 */
export function seeded(seed) {
	const rand = mulberry32(seed);
	const chaosRand = mulberry32(seed ^ 0x9e3779b9);
	const pick = (arr, r = rand) => arr[Math.floor(r() * arr.length)];
	return { rand, chaosRand, pick };
}

/** Asserts that no session gets `limit` messages of the plan or more, so that every run stays retained. */
export function assertEveryRunRetained(plan, limit) {
	const perKey = {};
	for (const m of plan) perKey[m.key] = (perKey[m.key] ?? 0) + 1;
	assert.ok(Math.max(...Object.values(perKey)) < limit, "every run stays retained (runs.retainPerSession 100)");
}

/** Sends `m` (`send(m)`) once and, at once or `m.repeatGapMs` apart, `m.repeats` times more; resolves when all are answered. */
export async function sendWithRepeats(m, send) {
	if (m.repeats === 0) return send(m);
	const all = [send(m)];
	for (let i = 0; i < m.repeats; i++) {
		if (m.repeatGapMs) await sleep(m.repeatGapMs);
		all.push(send(m));
	}
	await Promise.all(all);
}

/**
 * Polls `GET …/runs/:runId` every 15 ms until the run has ended. Resolves
 * `{ run }` (the ended record), or `{ error }` (what went wrong: a GET that was not 200, or
 * still not ended after `timeoutMs`).
 */
export async function pollUntilEnded(port, key, runId, timeoutMs) {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const g = await request(port, "GET", runPath(key, runId));
		if (g.status !== 200) return { error: `GET of its run ${runId} answered ${g.status} ${g.text}` };
		if (ENDED.has(g.json.run.status)) return { run: g.json.run };
		if (Date.now() > deadline) return { error: `run ${runId} still ${g.json.run.status} after ${timeoutMs} ms` };
		await sleep(15);
	}
}

/**
 * The chaos' actions on one gateway, and what they saw. Each action counts itself in
 * `log[<name>]` and records its answer:
 * - `deleteRun(key)`: DELETE …/runs/:runId of a run of `key` (`deletes`: {key, runId, status, json});
 * - `cancelRun(key)`: rt.cancelRun of one (`cancels`: {key, runId, res});
 * - `stopChat()`: POST …/chat/:chatId/stop of a chat in flight (`chatsInFlight`: the messages
 *   whose chat is), one in five with a stale runId (`stops`: {m, stale, status, json});
 * - `abort(key)`: rt.abortSession (`aborts`: {key, at, how, ok});
 * - `clear(key)`: rt.clearQueue (`clears`: {key, sentAt, answeredAt, how});
 * - `reset(key)`: POST …/reset (`resets`: {key, sentAt, answeredAt} of each that was answered 200);
 * - `deleteSession(key)`: DELETE /sessions/:key (`sessionDeletes`: {key, sentAt, answeredAt,
 *   status} of each; log `deleteSession`, or `deletePrimary` on the primary). Given `keys`, a pick
 *   of the primary stays on it only 30 % of the time (else another of `keys`): there it must be
 *   answered 409 and change nothing (the session keeps its id and its subscribers). Elsewhere
 *   200 `{ok:true, sessionKey, purged:false}`, or the contract's 404 when the session is not in
 *   memory. Half the time a reader of the session's `/events` is open across the DELETE: then
 *   the session existed (404 is wrong) and the reader must be closed by the gateway (counted in
 *   log `readersClosed`).
 * The run a delete or cancel picks is a live one (85 %, while there is one) or any.
 * @param {{ port: number, rt: any, rand: () => number, log: Record<string, number>, problem: (text: string) => void, chatsInFlight: Set<any>, primary?: string, keys?: string[] }} options
 */
export function chaosActions({ port, rt, rand, log, problem, chatsInFlight, primary = "main", keys = [] }) {
	const enc = encodeURIComponent;
	const pick = (arr) => arr[Math.floor(rand() * arr.length)];
	const pickRun = (runs) => {
		const live = runs.filter((r) => !ENDED.has(r.status));
		const pool = live.length > 0 && rand() < 0.85 ? live : runs;
		return pool.length ? pick(pool) : undefined;
	};
	const seen = { deletes: [], cancels: [], stops: [], aborts: [], clears: [], resets: [], sessionDeletes: [] };
	const others = keys.filter((k) => k !== primary);
	return {
		...seen,
		async deleteRun(key) {
			const target = pickRun(await listRuns(port, key));
			if (!target) return;
			log.delete++;
			const res = await within(request(port, "DELETE", runPath(key, target.runId)), CHAOS_REQUEST_MS, `DELETE ${target.runId}`);
			seen.deletes.push({ key, runId: target.runId, status: res.status, json: res.json });
		},
		async cancelRun(key) {
			const target = pickRun(rt.listRuns(key));
			if (!target) return;
			log.cancelRun++;
			const res = await within(rt.cancelRun(key, target.runId), CHAOS_REQUEST_MS, `cancelRun ${target.runId}`);
			seen.cancels.push({ key, runId: target.runId, res });
		},
		async stopChat() {
			const chats = [...chatsInFlight];
			if (!chats.length) return;
			const m = pick(chats);
			const stale = rand() < 0.2;
			log[stale ? "staleStop" : "stop"]++;
			const res = await within(
				request(port, "POST", `/sessions/${enc(m.key)}/chat/chat-${m.id}/stop`, stale ? { body: { runId: UNKNOWN_RUN_ID } } : {}),
				CHAOS_REQUEST_MS,
				`stop chat-${m.id}`,
			);
			seen.stops.push({ m, stale, status: res.status, json: res.json });
		},
		async abort(key) {
			log.abort++;
			seen.aborts.push({ key, at: Date.now(), how: "abortSession", ok: rt.abortSession(key) });
		},
		async clear(key) {
			log.clear++;
			const at = Date.now();
			rt.clearQueue(key);
			seen.clears.push({ key, sentAt: at, answeredAt: Date.now(), how: "clearQueue" });
		},
		async reset(key) {
			log.reset++;
			const sentAt = Date.now();
			const res = await within(request(port, "POST", `/sessions/${enc(key)}/reset`), CHAOS_REQUEST_MS, `reset ${key}`);
			if (![200, 404].includes(res.status)) problem(`reset ${key}: ${res.status} ${res.text}`);
			if (res.status === 200) seen.resets.push({ key, sentAt, answeredAt: Date.now() });
		},
		async deleteSession(picked) {
			const key = picked === primary && others.length > 0 && rand() >= 0.3 ? pick(others) : picked;
			const onPrimary = key === primary;
			log[onPrimary ? "deletePrimary" : "deleteSession"] = (log[onPrimary ? "deletePrimary" : "deleteSession"] ?? 0) + 1;
			const what = `DELETE /sessions/${key}`;
			let reader;
			try {
				if (rand() < 0.5) {
					reader = await within(openSse(port, `/sessions/${enc(key)}/events`), CHAOS_REQUEST_MS, `the events of ${key}`);
					if (reader.status !== 200) problem(`${what}: GET events first answered ${reader.status}`);
					else await reader.waitFor((f) => f.data?.type === "hello", CHAOS_REQUEST_MS, `hello of ${key}`);
				}
				const before = onPrimary ? rt.getSession(key) : undefined;
				const sentAt = Date.now();
				const res = await within(request(port, "DELETE", `/sessions/${enc(key)}`), CHAOS_REQUEST_MS, what);
				const answeredAt = Date.now();
				seen.sessionDeletes.push({ key, sentAt, answeredAt, status: res.status });
				const is = (want) => isDeepStrictEqual(res.json, want);
				if (onPrimary) {
					if (res.status !== 409 || !is({ error: "The primary session cannot be deleted" })) problem(`${what} (the primary): ${res.status} ${res.text}`);
					const after = rt.getSession(key);
					if (after?.sessionId !== before?.sessionId || after?.createdAt !== before?.createdAt) {
						problem(`${what} (the primary) changed it: ${JSON.stringify(before)} → ${JSON.stringify(after)}`);
					}
					if (reader?.status === 200) {
						await sleep(50);
						if (reader.isEnded) problem(`${what} (the primary, answered ${res.status}) ended a reader of its events`);
					}
				} else if (res.status === 200) {
					if (!is({ ok: true, sessionKey: key, purged: false })) problem(`${what}: 200 ${res.text}`);
					if (reader?.status === 200) {
						try {
							await within(reader.ended, CHAOS_REQUEST_MS, `a reader of ${key}'s events to be closed after ${what}`);
							log.readersClosed = (log.readersClosed ?? 0) + 1;
						} catch (e) {
							problem(`${what}: ${e?.message ?? e} (frames: ${reader.events().slice(-3).map((f) => f.data?.type).join(", ")})`);
						}
					}
				} else if (res.status === 404) {
					if (!is({ error: `Session not found: ${key}` })) problem(`${what}: 404 ${res.text}`);
					if (reader?.status === 200) problem(`${what}: 404, though a reader of its events was open (so the session was in memory)`);
				} else {
					problem(`${what}: ${res.status} ${res.text}`);
				}
			} finally {
				reader?.close();
			}
		},
	};
}

/**
 * Sends the plan under chaos, and resolves once every message is answered and the chaos has
 * stopped. `clients` concurrent clients take the plan's messages in order, `deliver(m)` each, then
 * wait its `gapMs`. Meanwhile, every `everyMs` ([min, max) ms, from `rand`) the chaos picks a key
 * of `keys` and a number r in [0, 1), and runs the first of `actions` ([below, action(key)]…,
 * ascending) whose `below` is above r; none when r is above them all. A chaos action that
 * throws is a problem.
 */
export async function sendUnderChaos({ plan, clients, deliver, rand, keys, everyMs: [min, max], actions, problem }) {
	let next = 0;
	let sending = true;
	const sent = Promise.all(
		Array.from({ length: clients }, async () => {
			while (next < plan.length) {
				const m = plan[next++];
				await deliver(m);
				if (m.gapMs) await sleep(m.gapMs);
			}
		}),
	);
	const chaos = (async () => {
		while (sending) {
			await sleep(min + Math.floor(rand() * (max - min)));
			const key = keys[Math.floor(rand() * keys.length)];
			const r = rand();
			try {
				await actions.find(([below]) => r < below)?.[1](key);
			} catch (e) {
				problem(`chaos: ${e?.message ?? e}`);
			}
		}
	})();
	await sent;
	sending = false;
	await chaos;
}

/**
 * The final record of every run of every key (runId → record): each listed once, and ended now
 * that every caller was answered. `each(rec)`, when given, checks more of each record.
 */
export async function finalRecords(port, keys, problem, each) {
	const records = new Map();
	for (const key of keys) {
		for (const rec of await listRuns(port, key)) {
			if (records.has(rec.runId)) problem(`run ${rec.runId} listed twice`);
			records.set(rec.runId, rec);
			if (!ENDED.has(rec.status)) problem(`run ${rec.runId} of ${key} is still ${rec.status} after every caller was answered`);
			each?.(rec);
		}
	}
	return records;
}

/**
 * The accepted sends of message `m` must all name one run (`how` says how it was sent); returns
 * that runId, or undefined (and a problem) when they name several or it is not a UUIDv7.
 */
export function oneRunId(m, accepted, how, problem) {
	const runIds = new Set(accepted.map((s) => s.runId));
	if (runIds.size !== 1) {
		problem(`m${m.id} (${how}${m.idemKey ? ", idempotent" : ""}): ${runIds.size} runs ${[...runIds].join(", ")}`);
		return undefined;
	}
	const [runId] = runIds;
	if (!UUID_V7.test(String(runId))) {
		problem(`m${m.id}: runId ${runId}`);
		return undefined;
	}
	return runId;
}

/** The chunk types a chat stream may end with (before `[DONE]`), by the status of its run. */
const CHAT_ENDINGS = { succeeded: ["finish"], aborted: ["abort"], failed: ["error"], cancelled: ["abort", "error"] };

/**
 * Message `m`'s chat stream (`chunks`) must end as a run of `status` does, then `[DONE]`. Given
 * the run's `result`: a run its session's deletion cancelled ends with exactly
 * `{type:"error", errorText:"Session deleted"}`.
 */
export function checkChatEnding(m, chunks, status, problem, result = undefined) {
	const last = chunks.at(-1) === "[DONE]" ? chunks.at(-2)?.type : `no [DONE] (${JSON.stringify(chunks.slice(-2))})`;
	if (!CHAT_ENDINGS[status]?.includes(last)) problem(`m${m.id}: chat ended with ${last} for a ${status} run`);
	else if (status === "cancelled" && result?.error === SESSION_DELETED) {
		const want = { type: "error", errorText: SESSION_DELETED };
		if (!isDeepStrictEqual(chunks.at(-2), want)) {
			problem(`m${m.id}: chat of a run its session's deletion cancelled ended with ${JSON.stringify(chunks.at(-2))}, not ${JSON.stringify(want)}`);
		}
	}
}

/**
 * A session's event log (`frames`), tallied by run: `starts` (runId → how many run_start) and
 * `ends` (runId → its run_end events). `each(event)`, when given, sees every event.
 */
export function tallyRunEvents(frames, each) {
	const starts = new Map();
	const ends = new Map();
	for (const f of frames) {
		const e = f.data;
		if (e.type === "run_start") starts.set(e.runId, (starts.get(e.runId) ?? 0) + 1);
		if (e.type === "run_end") ends.set(e.runId, [...(ends.get(e.runId) ?? []), e]);
		each?.(e);
	}
	return { starts, ends };
}

/** Whether a reset of `rec`'s session (of `resets`: {key, sentAt, answeredAt}) was in flight while `rec` ran. */
export function resetWhileRunning(resets, rec) {
	return resets.some((r) => r.key === rec.sessionKey && r.sentAt <= rec.endedAt && rec.startedAt <= r.answeredAt);
}

/**
 * The deletion (of `sessionDeletes`: {key, sentAt, answeredAt, status}) that answered 200 and
 * was in flight when `rec` ended (`slackMs` either side), or undefined: a run a deletion ended
 * ends inside the DELETE.
 */
export function deletionThatEnded(sessionDeletes, rec, slackMs) {
	return sessionDeletes.find((d) => d.status === 200 && d.key === rec.sessionKey && d.sentAt - slackMs <= rec.endedAt && rec.endedAt <= d.answeredAt + slackMs);
}

/**
 * The chaos' own answers agree with the final `records`: a DELETE is answered 200 with the status
 * the run ended as, or 409 naming it; cancelRun agrees with the record; a chat stop names the
 * chat's own run (`chatRunId(m)`) or is `{ok:false}`, and a stale one is `{ok:false}`. Returns
 * the DELETE answers by kind (`deleteKinds`: the 200s by status, the 409s as `ended`) and how
 * many stops stopped a run (`stopsOk`).
 */
export function checkChaosAnswers({ records, deletes, cancels, stops, chatRunId, problem }) {
	const deleteKinds = {};
	for (const d of deletes) {
		const rec = records.get(d.runId);
		if (!rec) {
			problem(`DELETE of ${d.runId}: no such run at the end`);
			continue;
		}
		if (d.status === 200) {
			deleteKinds[d.json?.status] = (deleteKinds[d.json?.status] ?? 0) + 1;
			if (d.json?.ok !== true || d.json?.runId !== d.runId || d.json?.status !== rec.status) {
				problem(`DELETE ${d.runId}: ${JSON.stringify(d.json)} but the run ended ${rec.status}`);
			}
		} else if (d.status === 409) {
			deleteKinds.ended = (deleteKinds.ended ?? 0) + 1;
			if (d.json?.error !== `Run already ended (${rec.status})`) problem(`DELETE ${d.runId}: 409 ${JSON.stringify(d.json)}, run ${rec.status}`);
		} else {
			problem(`DELETE ${d.runId}: ${d.status} ${JSON.stringify(d.json)}`);
		}
	}
	for (const c of cancels) {
		const rec = records.get(c.runId);
		if (c.res.runId !== c.runId) problem(`cancelRun ${c.runId}: ${JSON.stringify(c.res)}`);
		if (c.res.ok) {
			if (c.res.status !== rec?.status) problem(`cancelRun ${c.runId}: ${JSON.stringify(c.res)} but the run ended ${rec?.status}`);
		} else if (typeof c.res.error !== "string") {
			problem(`cancelRun ${c.runId}: ${JSON.stringify(c.res)}`);
		}
	}
	const notStopped = JSON.stringify({ ok: false });
	let stopsOk = 0;
	for (const s of stops) {
		if (s.status !== 200) {
			problem(`stop chat-${s.m.id}: ${s.status} ${JSON.stringify(s.json)}`);
			continue;
		}
		if (s.stale) {
			if (JSON.stringify(s.json) !== notStopped) problem(`stale stop chat-${s.m.id}: ${JSON.stringify(s.json)}`);
			continue;
		}
		if (s.json?.ok === true) {
			stopsOk++;
			const runId = chatRunId(s.m);
			if (s.json.runId !== runId) problem(`stop chat-${s.m.id}: stopped run ${s.json.runId}, the chat's run is ${runId}`);
		} else if (JSON.stringify(s.json) !== notStopped) {
			problem(`stop chat-${s.m.id}: ${JSON.stringify(s.json)}`);
		}
	}
	return { deleteKinds, stopsOk };
}
