// Session management (issue 14, SPEC §12) over HTTP on a real socket, in front of real pi
// AgentSessions on the offline faux model: DELETE (abort, pending answered "Session deleted",
// dispose, forget; purge through `deleteSession`; the primary 409), PATCH name, GET stats,
// POST compact (a run through the queue), GET /models, PUT model, PUT thinking, the snapshot's
// new fields and their events — and 501 for a session without the pi methods behind them.
//
// Run: node --test __test__/manage.test.mjs

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { clampThinkingLevel } from "@mariozechner/pi-ai";
import { GatewayRuntime } from "../index.js";
import { baseConfig } from "./support/gateway.mjs";
import { enc, getHistory, openEvents, plain, say, startHistoryGateway, validateUi } from "./support/history-util.mjs";
import { request } from "./support/http.mjs";
import { queueWhen } from "./support/queue-util.mjs";
import { getRun, listRuns, pollRunEnded, readLog, submit, UUID_V7 } from "./support/runs.mjs";
import { createDouble } from "./support/sessions.mjs";
import { SOON_MS, waitFor, within } from "./support/wait.mjs";

const INVALID_LEVEL = "Invalid level: expected one of off, minimal, low, medium, high, xhigh";
const FAUX_1 = { provider: "faux", id: "faux-1" };
const FAUX_2 = { provider: "faux", id: "faux-2" };

const snapshotOf = async (port, key) => {
	const r = await request(port, "GET", `/sessions/${enc(key)}`);
	assert.equal(r.status, 200, `GET /sessions/${key}: ${r.status} ${r.text}`);
	return r.json.session;
};

const patchName = (port, key, body) => request(port, "PATCH", `/sessions/${enc(key)}`, { body });
const putModel = (port, key, body) => request(port, "PUT", `/sessions/${enc(key)}/model`, { body });
const putThinking = (port, key, body) => request(port, "PUT", `/sessions/${enc(key)}/thinking`, { body });
const compact = (port, key, body = {}, timeoutMs = 30_000) => request(port, "POST", `/sessions/${enc(key)}/compact`, { body, timeoutMs });
const del = (port, key, query = "") => request(port, "DELETE", `/sessions/${enc(key)}${query}`);

/** Waits for a frame of `sse` whose event matches `pred`; returns the event. */
const eventOf = async (sse, pred, what) => (await sse.waitFor((f) => f.data && pred(f.data), 10_000, what)).data;

describe("session management on real pi sessions", { timeout: 240_000 }, () => {
	/** @type {Awaited<ReturnType<typeof startHistoryGateway>>} */
	let gw;
	before(async () => {
		gw = await startHistoryGateway();
	});
	after(async () => {
		await gw?.close();
	});

	describe("DELETE /sessions/:key", () => {
		it("aborts the running run, answers the queued ones `Session deleted`, disposes and forgets the session and its event log", async () => {
			const key = "manage-delete";
			const hello = await say(gw.port, key, "/echo hi");
			const sse = await openEvents(gw.port, key);
			try {
				const running = await submit(gw.port, key, "/slow 400");
				await sse.waitFor((f) => f.data?.type === "token" && f.data.runId === running, 15_000, "the slow run to stream");
				const waiting = [
					request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text: "/echo q1" }, timeoutMs: 20_000 }),
					request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text: "/echo q2" }, timeoutMs: 20_000 }),
				];
				await queueWhen(gw.port, key, (q) => q.running?.runId === running && q.queued.length === 2, "two queued runs");
				const session = gw.sessions.get(key);

				const r = await del(gw.port, key);
				assert.equal(r.status, 200, r.text);
				assert.deepEqual(r.json, { ok: true, sessionKey: key, purged: false });

				const answers = await within(Promise.all(waiting), SOON_MS, "the queued messages to be answered");
				const queuedIds = [];
				for (const a of answers) {
					assert.equal(a.json?.ok, false, `a queued message's answer: ${a.status} ${a.text}`);
					assert.equal(a.json.error, "Session deleted");
					assert.equal(a.json.sessionKey, key);
					assert.match(String(a.json.runId), UUID_V7);
					queuedIds.push(a.json.runId);
				}
				// Their runs ended on the event stream, `cancelled` (SPEC §10: "cleared, reset, deleted,
				// stopped or cancelled before it finished"), the running one too.
				const runEnd = (id) => eventOf(sse, (e) => e.type === "run_end" && e.runId === id, `run_end of ${id}`);
				assert.equal((await runEnd(running)).status, "cancelled");
				for (const id of queuedIds) assert.equal((await runEnd(id)).status, "cancelled");
				// pi's session stopped: no longer streaming, its last answer aborted.
				await waitFor(() => !session.isStreaming, "pi's session to stop streaming");
				assert.equal(session.messages.at(-1).stopReason, "aborted");
				assert.ok(!session.messages.some((m) => m.role === "user" && JSON.stringify(m.content).includes("/echo q")), "the queued messages never reached pi");

				// Forgotten: no longer in memory (its snapshot would load the stored conversation again,
				// see below; the purge test checks the 404).
				const list = await request(gw.port, "GET", "/sessions");
				assert.ok(!list.json.sessions.some((s) => s.sessionKey === key), "not listed");
				assert.ok(!gw.deleted.includes(key), "no purge: deleteSession was not called");

				// Not purged: the stored conversation is loaded again on demand (sessionExists), with
				// a new session, and the event log of the deleted one is gone.
				const history = await getHistory(gw.port, key);
				assert.deepEqual(history.messages[1].id, hello.runId, "the stored conversation is still there");
				assert.notEqual(gw.sessions.get(key), session, "a new AgentSession");
				const log = await readLog(gw.port, key);
				const old = new Set([hello.runId, running, ...queuedIds]);
				assert.deepEqual(
					log.frames.filter((f) => old.has(f.data.runId)).map((f) => f.data.type),
					[],
					"the deleted session's event log was forgotten",
				);
			} finally {
				sse.close();
			}
		});

		it("?purge=true also deletes the stored conversation through deleteSession(key): a new message starts empty", async () => {
			const key = "manage-purge";
			await say(gw.port, key, "/echo remember me");
			const r = await del(gw.port, key, "?purge=true");
			assert.equal(r.status, 200, r.text);
			assert.deepEqual(r.json, { ok: true, sessionKey: key, purged: true });
			assert.deepEqual(
				gw.deleted.filter((k) => k === key),
				[key],
				"deleteSession called once with the key",
			);
			assert.equal(await gw.agent.sessionExists(key), false, "nothing stored for the key any more");
			const gone = await request(gw.port, "GET", `/sessions/${key}`);
			assert.equal(gone.status, 404, "the snapshot is gone");
			assert.deepEqual(gone.json, { error: `Session not found: ${key}` });
			const h = await request(gw.port, "GET", `/sessions/${key}/messages`);
			assert.equal(h.status, 404, `history of a purged key: ${h.status} ${h.text}`);
			const fresh = await say(gw.port, key, "/echo new start");
			const history = await getHistory(gw.port, key);
			assert.deepEqual(history.messages.map((m) => m.id).slice(1), [fresh.runId]);
			assert.equal(history.messages.length, 2, "only the new exchange");
		});

		it("a stored key that is not in memory can be deleted and purged (it is loaded first)", async () => {
			const key = "manage-purge-stored";
			await say(gw.port, key, "/echo stored");
			assert.equal((await del(gw.port, key)).status, 200);
			const list = await request(gw.port, "GET", "/sessions");
			assert.ok(!list.json.sessions.some((s) => s.sessionKey === key), "not in memory");
			assert.equal(await gw.agent.sessionExists(key), true, "but stored");
			const r = await del(gw.port, key, "?purge=true");
			assert.equal(r.status, 200, r.text);
			assert.deepEqual(r.json, { ok: true, sessionKey: key, purged: true });
			assert.ok(gw.deleted.includes(key));
			assert.equal(await gw.agent.sessionExists(key), false);
			assert.equal((await request(gw.port, "GET", `/sessions/${key}`)).status, 404);
		});

		it("the primary session → 409; an unknown key → 404; both leave everything as it was", async () => {
			for (const query of ["", "?purge=true"]) {
				const r = await del(gw.port, "main", query);
				assert.equal(r.status, 409, `DELETE main${query}: ${r.text}`);
				assert.deepEqual(r.json, { error: "The primary session cannot be deleted" });
			}
			assert.ok(!gw.deleted.includes("main"));
			const ok = await say(gw.port, "main", "/echo still the primary");
			assert.equal(ok.response, "You said: still the primary");
			const r = await del(gw.port, "manage-never-seen");
			assert.equal(r.status, 404);
			assert.deepEqual(r.json, { error: "Session not found: manage-never-seen" });
			assert.ok(!gw.deleted.includes("manage-never-seen"));
		});
	});

	describe("PATCH /sessions/:key {name}", () => {
		it("sets pi's session name (trimmed): the answer, the snapshot, the list and a session_info_changed event show it", async () => {
			const key = "manage-name";
			await say(gw.port, key, "/echo hi");
			const initial = await snapshotOf(gw.port, key);
			assert.equal(initial.name, undefined, "no name yet");
			const sse = await openEvents(gw.port, key);
			try {
				const r = await patchName(gw.port, key, { name: "  Trip planning  " });
				assert.equal(r.status, 200, r.text);
				assert.deepEqual(r.json, { ok: true, sessionKey: key, name: "Trip planning" });
				const event = await eventOf(sse, (e) => e.type === "session_info_changed", "session_info_changed");
				assert.deepEqual(event, { type: "session_info_changed", sessionKey: key, name: "Trip planning" });
			} finally {
				sse.close();
			}
			assert.equal((await snapshotOf(gw.port, key)).name, "Trip planning");
			// A new subscriber's hello carries the new snapshot fields too.
			const next = await openEvents(gw.port, key);
			try {
				const hello = next.events().find((f) => f.data.type === "hello").data;
				assert.equal(hello.snapshot.name, "Trip planning");
				assert.deepEqual(hello.snapshot.model, FAUX_1);
				assert.equal(hello.snapshot.thinkingLevel, "off");
			} finally {
				next.close();
			}
			const list = await request(gw.port, "GET", "/sessions");
			assert.equal(list.json.sessions.find((s) => s.sessionKey === key)?.name, "Trip planning");
			assert.equal(gw.sessions.get(key).sessionName, "Trip planning", "pi's own session name");
			// Limits: 200 characters (not bytes) fit.
			const long = "é".repeat(200);
			const r200 = await patchName(gw.port, key, { name: long });
			assert.equal(r200.status, 200, r200.text);
			assert.equal(r200.json.name, long);
			const unicode = await patchName(gw.port, key, { name: "Café ☕ 日本 🚀" });
			assert.equal(unicode.status, 200, unicode.text);
			assert.equal((await snapshotOf(gw.port, key)).name, "Café ☕ 日本 🚀");
		});

		it("invalid names → 400 `Invalid name: …`; the name stays; the session still answers", async () => {
			const key = "manage-name-bad";
			await say(gw.port, key, "/echo hi");
			assert.equal((await patchName(gw.port, key, { name: "Kept" })).status, 200);
			const bad = [
				{ name: "" },
				{ name: "   " },
				{ name: "a".repeat(201) },
				{ name: ` ${"b".repeat(201)} ` },
				{ name: "a\nb" },
				{ name: "a\tb" },
				{ name: "a\u0000b" },
				{ name: "a\u007fb" },
				{ name: "a\u0085b" },
				{ name: "\u001b[31mred" },
				{ name: 5 },
				{ name: null },
				{ name: ["x"] },
				{ name: { x: 1 } },
				{},
			];
			for (const body of bad) {
				const r = await patchName(gw.port, key, body);
				assert.equal(r.status, 400, `PATCH ${JSON.stringify(body)}: ${r.status} ${r.text}`);
				assert.match(String(r.json?.error), /^Invalid name: /, `PATCH ${JSON.stringify(body)}: ${r.text}`);
			}
			for (const raw of ["not json", "[1]", '"name"']) {
				const r = await request(gw.port, "PATCH", `/sessions/${key}`, { body: raw });
				assert.equal(r.status, 400, `PATCH ${raw}: ${r.status} ${r.text}`);
			}
			assert.equal((await snapshotOf(gw.port, key)).name, "Kept");
			assert.equal(gw.sessions.get(key).sessionName, "Kept");
			assert.equal((await say(gw.port, key, "/echo ok")).response, "You said: ok");
			const unknown = await patchName(gw.port, "manage-never-seen", { name: "x" });
			assert.equal(unknown.status, 404);
		});
	});

	describe("GET /sessions/:key/stats", () => {
		it("after a tool call: pi's getSessionStats() without sessionFile, with tokens > 0 and toolCalls ≥ 1", async () => {
			const key = "manage-stats";
			await say(gw.port, key, "What is in the file?");
			const r = await request(gw.port, "GET", `/sessions/${key}/stats`);
			assert.equal(r.status, 200, r.text);
			const stats = r.json;
			assert.equal(stats.sessionKey, key);
			assert.equal(stats.sessionFile, undefined, "no sessionFile (a path on the server)");
			for (const k of Object.keys(stats)) {
				assert.ok(
					["sessionKey", "sessionId", "userMessages", "assistantMessages", "toolCalls", "toolResults", "totalMessages", "tokens", "cost", "contextUsage"].includes(k),
					`field ${k} in ${r.text}`,
				);
			}
			const { sessionFile: _f, ...pi } = gw.sessions.get(key).getSessionStats();
			assert.deepEqual(stats, plain({ sessionKey: key, ...pi }), "pi's own stats");
			assert.equal(stats.userMessages, 1);
			assert.equal(stats.assistantMessages, 2);
			assert.ok(stats.toolCalls >= 1, `toolCalls ${stats.toolCalls}`);
			assert.equal(stats.toolResults, 1);
			assert.equal(stats.totalMessages, 4);
			assert.ok(stats.tokens.total > 0, `tokens ${JSON.stringify(stats.tokens)}`);
			assert.ok(stats.tokens.input > 0 && stats.tokens.output > 0, `tokens ${JSON.stringify(stats.tokens)}`);
			assert.equal(typeof stats.cost, "number");
			assert.equal((await request(gw.port, "GET", "/sessions/manage-never-seen/stats")).status, 404);
		});
	});

	describe("POST /sessions/:key/compact", () => {
		it("runs as a run of the queue (x-run-id, listed, mode queue) and answers pi's summary; compaction_end carries tokensBefore", async () => {
			const key = "manage-compact";
			for (const text of ["What is in the file?", "/echo one", "/echo two", "/toolfail", "/echo three"]) await say(gw.port, key, text);
			const sse = await openEvents(gw.port, key);
			try {
				const r = await compact(gw.port, key, {});
				assert.equal(r.status, 200, r.text);
				assert.deepEqual(Object.keys(r.json).sort(), ["ok", "response", "runId", "sessionKey"]);
				assert.equal(r.json.ok, true);
				assert.equal(r.json.sessionKey, key);
				assert.match(r.json.runId, UUID_V7);
				assert.equal(r.headers["x-run-id"], r.json.runId);
				assert.match(r.json.response, /^Summary of \d+ messages\./, "the faux model's summary");
				const entry = gw.sessions.get(key).sessionManager.getEntries().findLast((e) => e.type === "compaction");
				assert.ok(entry, "pi stored a compaction entry");
				assert.equal(r.json.response, entry.summary, "the answer is pi's summary");
				assert.ok(entry.tokensBefore > 0);
				const runId = r.json.runId;
				const run = (await listRuns(gw.port, key)).find((x) => x.runId === runId);
				assert.ok(run, "the compaction is listed among the runs");
				assert.equal(run.mode, "queue");
				assert.equal(run.status, "succeeded");
				assert.equal(run.result.response, r.json.response);
				const start = await eventOf(sse, (e) => e.type === "compaction_start", "compaction_start");
				assert.deepEqual(start, { type: "compaction_start", sessionKey: key, runId, reason: "manual" });
				const end = await eventOf(sse, (e) => e.type === "compaction_end", "compaction_end");
				// (The gateway adds the compaction's tokensBefore — pi's event carries the whole result.)
				const { tokensBefore: endTokens, ...endFields } = end;
				assert.deepEqual(endFields, { type: "compaction_end", sessionKey: key, runId, reason: "manual", aborted: false, willRetry: false });
				assert.equal(endTokens, entry.tokensBefore);
				await eventOf(sse, (e) => e.type === "run_end" && e.runId === runId && e.status === "succeeded", "the run's run_end");
			} finally {
				sse.close();
			}
			// The session goes on after it.
			assert.equal((await say(gw.port, key, "/echo after")).response, "You said: after");
		});

		it("a compact sent while a message runs waits its turn (wait:false → 202), then runs and answers the summary", async () => {
			const key = "manage-compact-queue";
			for (const text of ["/echo a", "/echo b", "/echo c"]) await say(gw.port, key, text);
			const slow = await submit(gw.port, key, "/slow 30");
			await queueWhen(gw.port, key, (q) => q.running?.runId === slow, "the slow run to run");
			const r = await compact(gw.port, key, { wait: false });
			assert.equal(r.status, 202, r.text);
			assert.deepEqual(Object.keys(r.json).sort(), ["runId", "sessionKey", "status"]);
			assert.equal(r.json.status, "queued");
			assert.equal(r.headers["x-run-id"], r.json.runId);
			const compactId = r.json.runId;
			const q = await queueWhen(gw.port, key, (x) => x.queued.some((run) => run.runId === compactId), "the compaction queued");
			assert.equal(q.running.runId, slow, "the message still runs");
			const slowEnd = (await pollRunEnded(gw.port, key, slow, { timeoutMs: 20_000 })).record;
			assert.equal(slowEnd.status, "succeeded", "the compaction did not abort the running message");
			const { record } = await pollRunEnded(gw.port, key, compactId, { timeoutMs: 20_000 });
			assert.equal(record.status, "succeeded", JSON.stringify(record));
			assert.equal(record.mode, "queue");
			assert.ok(record.startedAt >= slowEnd.endedAt, "it started after the message ended");
			assert.match(record.result.response, /^Summary of \d+ messages\./);
		});

		it("instructions: a string up to 10,000 characters; longer or not a string → 400; pi's failure → 500 {ok:false, error}", async () => {
			const key = "manage-compact-instructions";
			for (const text of ["/echo a", "/echo b", "What is in the file?"]) await say(gw.port, key, text);
			for (const body of [{ instructions: "x".repeat(10_001) }, { instructions: 5 }, { instructions: ["a"] }, { instructions: {} }]) {
				const r = await compact(gw.port, key, body);
				assert.equal(r.status, 400, `compact ${JSON.stringify(body).slice(0, 60)}: ${r.status} ${r.text}`);
				assert.match(String(r.json?.error), /instructions/, r.text);
				assert.equal(r.headers["x-run-id"], undefined, "no run for a refused body");
			}
			const before = (await listRuns(gw.port, key)).length;
			const ok = await compact(gw.port, key, { instructions: `Focus on the file. ${"x".repeat(10_000 - 19)}` });
			assert.equal(ok.status, 200, ok.text);
			assert.equal(ok.json.ok, true);
			assert.equal((await listRuns(gw.port, key)).length, before + 1, "one run for the compaction");
			// Compacting again at once: pi refuses ("Already compacted"), the run fails, 500 {ok:false, error}.
			const branch = gw.sessions.get(key).sessionManager.getBranch();
			assert.equal(branch.at(-1).type, "compaction", "pi's branch ends with the compaction");
			const r = await compact(gw.port, key, {});
			assert.equal(r.status, 500, r.text);
			assert.equal(r.json.ok, false);
			assert.equal(typeof r.json.error, "string");
			assert.ok(r.json.error.length > 0);
			assert.match(String(r.json.runId), UUID_V7);
			assert.equal(r.headers["x-run-id"], r.json.runId);
			assert.equal((await getRun(gw.port, key, r.json.runId)).status, "failed");
			assert.equal((await say(gw.port, key, "/echo fine")).response, "You said: fine");
		});
	});

	describe("models and thinking", () => {
		it("GET /models: the models with credentials (faux-1 and faux-2) and the primary's current model", async () => {
			const r = await request(gw.port, "GET", "/models");
			assert.equal(r.status, 200, r.text);
			assert.deepEqual(Object.keys(r.json).sort(), ["current", "models"]);
			assert.deepEqual(r.json.current, FAUX_1);
			for (const m of r.json.models) {
				assert.deepEqual(Object.keys(m).sort(), ["contextWindow", "id", "input", "maxTokens", "name", "provider", "reasoning"], JSON.stringify(m));
			}
			const ids = r.json.models.map((m) => `${m.provider}/${m.id}`);
			assert.equal(new Set(ids).size, ids.length, `each model once: ${ids}`);
			const faux1 = r.json.models.find((m) => m.provider === "faux" && m.id === "faux-1");
			const faux2 = r.json.models.find((m) => m.provider === "faux" && m.id === "faux-2");
			assert.ok(faux1 && faux2, `faux-1 and faux-2 are listed: ${ids}`);
			assert.equal(faux1.reasoning, false);
			assert.equal(faux2.reasoning, true);
			const available = gw.agent.primarySession.modelRegistry.getAvailable();
			assert.deepEqual(
				r.json.models.map((m) => `${m.provider}/${m.id}`).sort(),
				available.map((m) => `${m.provider}/${m.id}`).sort(),
				"exactly pi's available models",
			);
			for (const m of available) {
				const listed = r.json.models.find((x) => x.provider === m.provider && x.id === m.id);
				assert.deepEqual(listed, plain({ provider: m.provider, id: m.id, name: m.name, reasoning: m.reasoning, input: m.input, contextWindow: m.contextWindow, maxTokens: m.maxTokens }));
			}
			assert.ok(!ids.some((id) => id.startsWith("anthropic/")), "no model without credentials");
		});

		it("PUT model switches the session to faux-2: the answer, model_changed, the snapshot, the next answer's model", async () => {
			const key = "manage-model";
			const first = await say(gw.port, key, "/echo one");
			const snap0 = await snapshotOf(gw.port, key);
			assert.deepEqual(snap0.model, FAUX_1);
			assert.equal(snap0.thinkingLevel, "off");
			const sse = await openEvents(gw.port, key);
			try {
				const r = await putModel(gw.port, key, FAUX_2);
				assert.equal(r.status, 200, r.text);
				const session = gw.sessions.get(key);
				assert.deepEqual(r.json, { ok: true, sessionKey: key, model: FAUX_2, thinkingLevel: session.thinkingLevel });
				assert.equal(session.model.id, "faux-2", "pi's session model");
				const changed = await eventOf(sse, (e) => e.type === "model_changed", "model_changed");
				assert.deepEqual(changed, { type: "model_changed", sessionKey: key, model: FAUX_2 });
				const snap = await snapshotOf(gw.port, key);
				assert.deepEqual(snap.model, FAUX_2);
				assert.equal(snap.thinkingLevel, session.thinkingLevel);

				const second = await say(gw.port, key, "/echo two");
				assert.equal(second.response, "You said: two");
				const complete = await eventOf(sse, (e) => e.type === "message_complete" && e.runId === second.runId, "message_complete of the next answer");
				assert.deepEqual(complete.model, FAUX_2, `message_complete: ${JSON.stringify(complete)}`);
				assert.equal(session.messages.at(-1).model, "faux-2", "pi's answer came from faux-2");
				const history = await getHistory(gw.port, key);
				const byRun = new Map(history.messages.map((m) => [m.id, m]));
				assert.deepEqual(byRun.get(first.runId).metadata.model, FAUX_1);
				assert.deepEqual(byRun.get(second.runId).metadata.model, FAUX_2);
			} finally {
				sse.close();
			}
			const models = await request(gw.port, "GET", "/models");
			assert.deepEqual(models.json.current, FAUX_1, "the primary did not change");
		});

		it("PUT model: unknown → 404 Model not found, no credentials → 400, bad bodies → 400; the model stays", async () => {
			const key = "manage-model-bad";
			await say(gw.port, key, "/echo hi");
			assert.equal((await putModel(gw.port, key, FAUX_2)).status, 200);
			for (const [provider, id] of [
				["faux", "nope"],
				["nobody", "x"],
				["FAUX", "faux-1"],
			]) {
				const r = await putModel(gw.port, key, { provider, id });
				assert.equal(r.status, 404, `${provider}/${id}: ${r.text}`);
				assert.deepEqual(r.json, { error: `Model not found: ${provider}/${id}` });
			}
			const noKey = gw.agent.primarySession.modelRegistry.getAll().find((m) => m.provider === "anthropic");
			assert.ok(noKey, "pi's registry knows built-in models without credentials");
			const r400 = await putModel(gw.port, key, { provider: noKey.provider, id: noKey.id });
			assert.equal(r400.status, 400, r400.text);
			assert.deepEqual(r400.json, { error: `No credentials for provider ${noKey.provider}` });
			for (const body of [{}, { provider: "faux" }, { id: "faux-2" }, { provider: 1, id: "faux-2" }, { provider: "faux", id: ["faux-2"] }, { provider: "", id: "" }, [], "faux/faux-2", null]) {
				const r = await putModel(gw.port, key, body);
				assert.equal(r.status, 400, `PUT model ${JSON.stringify(body)}: ${r.status} ${r.text}`);
				assert.equal(typeof r.json?.error, "string");
			}
			assert.equal((await request(gw.port, "PUT", `/sessions/${key}/model`, { body: "{not json" })).status, 400);
			assert.deepEqual((await snapshotOf(gw.port, key)).model, FAUX_2, "still faux-2");
			assert.equal((await say(gw.port, key, "/echo fine")).response, "You said: fine");
			assert.equal(gw.sessions.get(key).messages.at(-1).model, "faux-2");
			assert.equal((await putModel(gw.port, "manage-never-seen", FAUX_2)).status, 404);
		});

		it("PUT thinking on faux-2 (a reasoning model): the level pi applied, thinking_level_changed, the snapshot", async () => {
			const key = "manage-thinking";
			await say(gw.port, key, "/echo hi");
			assert.equal((await putModel(gw.port, key, FAUX_2)).status, 200);
			const session = gw.sessions.get(key);
			const sse = await openEvents(gw.port, key);
			try {
				const start = session.thinkingLevel === "high" ? "low" : "high";
				const r = await putThinking(gw.port, key, { level: start });
				assert.equal(r.status, 200, r.text);
				assert.deepEqual(r.json, { ok: true, sessionKey: key, thinkingLevel: start });
				assert.equal(session.thinkingLevel, start, "pi's level");
				const event = await eventOf(sse, (e) => e.type === "thinking_level_changed" && e.level === start, "thinking_level_changed");
				assert.deepEqual(event, { type: "thinking_level_changed", sessionKey: key, level: start });
				assert.equal((await snapshotOf(gw.port, key)).thinkingLevel, start);

				const minimal = await putThinking(gw.port, key, { level: "minimal" });
				assert.deepEqual(minimal.json, { ok: true, sessionKey: key, thinkingLevel: "minimal" });
				const xhigh = await putThinking(gw.port, key, { level: "xhigh" });
				assert.equal(xhigh.status, 200, xhigh.text);
				assert.equal(xhigh.json.thinkingLevel, clampThinkingLevel(session.model, "xhigh"), "clamped to the model as pi does");
				assert.equal(session.thinkingLevel, xhigh.json.thinkingLevel);
				assert.equal((await snapshotOf(gw.port, key)).thinkingLevel, xhigh.json.thinkingLevel);
			} finally {
				sse.close();
			}
			assert.equal((await say(gw.port, key, "/echo thinking")).response, "You said: thinking");
		});

		it("PUT thinking on faux-1 (no reasoning) answers the clamped level (off); bad levels → 400 and the level stays", async () => {
			const key = "manage-thinking-bad";
			await say(gw.port, key, "/echo hi");
			const off = await putThinking(gw.port, key, { level: "high" });
			assert.equal(off.status, 200, off.text);
			assert.deepEqual(off.json, { ok: true, sessionKey: key, thinkingLevel: "off" });
			assert.equal(gw.sessions.get(key).thinkingLevel, "off");
			assert.equal((await putModel(gw.port, key, FAUX_2)).status, 200);
			assert.equal((await putThinking(gw.port, key, { level: "low" })).json.thinkingLevel, "low");
			for (const body of [{ level: "max" }, { level: "" }, { level: "HIGH" }, { level: " low" }, { level: 1 }, { level: null }, {}, { level: ["low"] }]) {
				const r = await putThinking(gw.port, key, body);
				assert.equal(r.status, 400, `PUT thinking ${JSON.stringify(body)}: ${r.status} ${r.text}`);
				assert.equal(typeof r.json?.error, "string", JSON.stringify(body));
				assert.ok(r.json.error.startsWith(INVALID_LEVEL), `${JSON.stringify(body)}: ${r.json.error}`);
			}
			assert.equal((await request(gw.port, "PUT", `/sessions/${key}/thinking`, { body: "nope" })).status, 400);
			assert.equal(gw.sessions.get(key).thinkingLevel, "low");
			assert.equal((await snapshotOf(gw.port, key)).thinkingLevel, "low");
			assert.equal((await putThinking(gw.port, "manage-never-seen", { level: "low" })).status, 404);
		});
	});
});

describe("routes whose pi method a session lacks → 501; purge without deleteSession → 501", { timeout: 60_000 }, () => {
	/** A session object with prompt/subscribe/abort/dispose only (and the sessionId/messages every session has). */
	const minimal = (key) => {
		const d = createDouble(key);
		return {
			get sessionId() {
				return d.sessionId;
			},
			get messages() {
				return d.messages;
			},
			prompt: (text, options) => d.prompt(text, options),
			subscribe: (listener) => d.subscribe(listener),
			abort: () => d.abort(),
			dispose: () => d.dispose(),
		};
	};
	let rt;
	let port;
	before(async () => {
		rt = new GatewayRuntime({
			config: baseConfig(),
			primarySessionKey: "main",
			primarySession: minimal("main"),
			createSession: async (key) => minimal(key),
		});
		await rt.start();
		port = rt.getAddress().port;
	});
	after(async () => {
		await rt?.stop();
	});

	it("stats, compact, PUT model, PUT thinking, PATCH name, GET /models → 501 Not supported by this session: <method>()", async () => {
		const key = "minimal";
		const first = await request(port, "POST", `/sessions/${key}/messages`, { body: { text: "hi" } });
		assert.equal(first.status, 200, first.text);
		assert.equal(first.json.response, "echo:hi");
		// (The contract's form is `<method>()`; what GET /models needs is a property, modelRegistry.)
		const NOT_SUPPORTED = /^Not supported by this session: [A-Za-z_.]+(\(\))?$/;
		const calls = [
			["GET", `/sessions/${key}/stats`],
			["POST", `/sessions/${key}/compact`, {}],
			["PUT", `/sessions/${key}/model`, FAUX_1],
			["PUT", `/sessions/${key}/thinking`, { level: "low" }],
			["PATCH", `/sessions/${key}`, { name: "A name" }],
			["GET", "/models"],
		];
		for (const [method, path, body] of calls) {
			const r = await request(port, method, path, { body });
			assert.equal(r.status, 501, `${method} ${path}: ${r.status} ${r.text}`);
			assert.match(String(r.json?.error), NOT_SUPPORTED, `${method} ${path}: ${r.text}`);
		}
		const purge = await request(port, "DELETE", `/sessions/${key}?purge=true`);
		assert.equal(purge.status, 501, `purge without deleteSession: ${purge.status} ${purge.text}`);
		assert.equal(typeof purge.json?.error, "string");
		// Nothing of that harmed the session: it is still there, and answers.
		const snap = await request(port, "GET", `/sessions/${key}`);
		assert.equal(snap.status, 200, "a refused purge deleted nothing");
		for (const field of ["name", "model", "thinkingLevel"]) assert.equal(snap.json.session[field], undefined, `no ${field} on a session without it`);
		// Its history comes from the messages every session has (no pi entries needed), and is a valid ui history.
		const history = await getHistory(port, key);
		await validateUi(history.messages, "the history of a session without pi's sessionManager");
		assert.deepEqual(
			history.messages.map((m) => [m.role, m.parts.filter((p) => p.type === "text").map((p) => p.text).join("")]),
			[
				["user", "hi"],
				["assistant", "echo:hi"],
			],
		);
		const again = await request(port, "POST", `/sessions/${key}/messages`, { body: { text: "again" } });
		assert.equal(again.json?.response, "echo:again");
		// A plain DELETE needs only dispose().
		const r = await request(port, "DELETE", `/sessions/${key}`);
		assert.equal(r.status, 200, r.text);
		assert.deepEqual(r.json, { ok: true, sessionKey: key, purged: false });
		assert.equal((await request(port, "GET", `/sessions/${key}`)).status, 404);
	});
});
