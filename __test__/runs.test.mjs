// Runs (issue 12, SPEC §10): every message accepted into a session is a run with a UUIDv7 runId
// and a status that moves queued → running → succeeded | failed | aborted | cancelled, readable over
// HTTP (`/sessions/:key/runs[/:runId]`), cancellable (`DELETE`), replayable
// (`/runs/:runId/events`), announced on the session stream (`run_start` / `run_end`), bounded
// (`runs.retainPerSession`), and reachable from JS (`submitMessage`, `getRun`, `listRuns`,
// `waitForRun`, `cancelRun`, `GatewayMessageResult.runId`).
//
// Real sockets, the real addon, the scripted session double: "/stream <n> <ms>" streams n tokens
// one every ms (slow enough to watch each status), "/throw <msg>" makes prompt() reject, "/error
// <msg>" makes the model fail, "/tool" runs one tool call.
//
// Run: node --test __test__/runs.test.mjs

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { startGateway, suiteGateway } from "./support/gateway.mjs";
import { request } from "./support/http.mjs";
import {
	assertRecordShape,
	chatTerminal,
	chatText,
	ENDED,
	getRun,
	listRuns,
	pollRun,
	pollRunEnded,
	postChat,
	postMessage,
	readLog,
	readRunEvents,
	RUN_CAUSED,
	runPath,
	submit,
	UNKNOWN_RUN_ID,
	UUID_V7,
	assertStartChunk,
	assertFinishChunk,
} from "./support/runs.mjs";
import { openSse } from "./support/sse.mjs";
import { waitFor, within } from "./support/wait.mjs";

const SECRET = "runs-webhook-secret";
const MAX_QUEUE = 3;
/** Long enough (≈ 4 s) that a run is surely still running while a test looks at it. */
const LONG = "/stream 200 20";

const tokensOf = (frames) =>
	frames
		.filter((f) => f.data?.type === "token")
		.map((f) => f.data.delta)
		.join("");

/**
 * A run_end event: exactly {type, sessionKey, runId, status, error?}. `error`, when sent, is the
 * run's error; a failed run must send it, a succeeded one must not.
 */
function assertRunEnd(data, { key, runId, status, error }) {
	assert.equal(data.type, "run_end");
	assert.deepEqual(Object.keys(data).filter((k) => k !== "error").sort(), ["runId", "sessionKey", "status", "type"], JSON.stringify(data));
	assert.equal(data.sessionKey, key);
	assert.equal(data.runId, runId);
	assert.equal(data.status, status);
	if (status === "succeeded") assert.equal(data.error, undefined, "a succeeded run_end has no error");
	else if (status === "failed") assert.equal(data.error, error, "a failed run_end carries the error");
	else if (data.error !== undefined) assert.equal(data.error, error);
}

/** Opens the session's event stream and waits for hello; closed when the test ends. */
async function watchEvents(t, port, key) {
	const s = await openSse(port, `/sessions/${encodeURIComponent(key)}/events`);
	t.after(() => s.close());
	assert.equal(s.status, 200);
	await s.waitFor((f) => f.data?.type === "hello");
	return s;
}

/** Waits until the session's run list has `n` runs; returns them. */
const runsWhen = (port, key, n) =>
	waitFor(async () => {
		const runs = await listRuns(port, key);
		return runs.length >= n ? runs : undefined;
	}, `${n} runs in ${key}`);

describe("runs over HTTP", { timeout: 120_000 }, () => {
	const gw = suiteGateway({
		config: { session: { maxQueuePerSession: MAX_QUEUE }, webhook: { enabled: true, basePath: "/hooks", secret: SECRET } },
	});

	test("wait:false → 202 + Location + runId; GET shows queued → running → succeeded; GET /runs lists newest last", async () => {
		const key = "life";
		const a = await submit(gw.port, key, "/stream 50 20");
		const b = await submit(gw.port, key, "/stream 60 20");
		assert.notEqual(a, b);

		// B waits behind A (≈ 1 s of tokens).
		const queued = await getRun(gw.port, key, b);
		assert.equal(queued.status, "queued");
		assertRecordShape(queued, { runId: b, sessionKey: key });
		const { record: aRunning } = await pollRun(gw.port, key, a, (r) => r.status !== "queued", { what: "A to start" });
		assert.equal(aRunning.status, "running");
		assertRecordShape(aRunning, { runId: a, sessionKey: key });

		// Watch B through every status: exactly queued → running → succeeded, nothing else.
		const running = await pollRun(gw.port, key, b, (r) => r.status !== "queued", { what: "B to start" });
		assert.equal(running.record.status, "running");
		assertRecordShape(running.record, { runId: b, sessionKey: key });
		const aDone = await getRun(gw.port, key, a);
		assert.equal(aDone.status, "succeeded", "A ended before B started");
		assertRecordShape(aDone, { runId: a, sessionKey: key });
		assert.ok(running.record.startedAt >= aDone.endedAt, "B started after A ended");
		const ended = await pollRunEnded(gw.port, key, b);
		assert.deepEqual([...running.seen, ...ended.seen.slice(1)], ["queued", "running", "succeeded"]);
		const bDone = ended.record;
		assertRecordShape(bDone, { runId: b, sessionKey: key });
		assert.equal(bDone.status, "succeeded");
		assert.equal(bDone.startedAt, running.record.startedAt, "startedAt does not move");
		assert.equal(bDone.createdAt, queued.createdAt, "createdAt does not move");
		assert.equal(bDone.result.ok, true);
		assert.equal(bDone.result.error, undefined);
		assert.equal(bDone.result.response.match(/t\d+@/g)?.length, 60, "the result is B's own 60 tokens");

		const runs = await listRuns(gw.port, key);
		assert.deepEqual(
			runs.map((r) => r.runId),
			[a, b],
			"oldest first, newest last",
		);
		assert.deepEqual(runs[0], aDone);
		assert.deepEqual(runs[1], bDone);
		const again = await request(gw.port, "GET", runPath(key, b));
		assert.equal(again.status, 200);
		assert.equal(again.headers["content-type"], "application/json; charset=utf-8");
		assert.deepEqual(again.json, { run: bDone });
	});

	test("?wait=false works too; Location names the key as in the request path; wait must be a boolean", async () => {
		const key = "a b/c";
		const r = await request(gw.port, "POST", "/sessions/a%20b%2Fc/messages?wait=false", { body: { text: "/instant" } });
		assert.equal(r.status, 202, r.text);
		assert.equal(r.json.sessionKey, key);
		assert.equal(r.headers.location, `/sessions/a%20b%2Fc/runs/${r.json.runId}`);
		const { record } = await pollRunEnded(gw.port, key, r.json.runId);
		assert.equal(record.status, "succeeded");
		const viaLocation = await request(gw.port, "GET", r.headers.location);
		assert.equal(viaLocation.status, 200);
		assert.equal(viaLocation.json.run.runId, r.json.runId);

		const before = gw.prompts();
		for (const wait of ["no", 0, "false", {}]) {
			const bad = await postMessage(gw.port, "badwait", { text: "/instant", wait });
			assert.equal(bad.status, 400, `wait ${JSON.stringify(wait)}: ${bad.status} ${bad.text}`);
			assert.match(bad.json.error, /^Invalid wait: /);
			assert.equal(bad.headers["x-run-id"], undefined);
		}
		assert.equal(gw.prompts(), before, "a refused message never runs");
		assert.deepEqual(await listRuns(gw.port, "badwait"), []);
	});

	test("x-run-id on /messages, /chat and webhook answers equals the result's runId; refusals carry none", async () => {
		const m = await postMessage(gw.port, "xrun", { text: "/instant" });
		assert.equal(m.status, 200, m.text);
		assert.match(m.json.runId, UUID_V7);
		assert.equal(m.headers["x-run-id"], m.json.runId);
		const mRecord = await getRun(gw.port, "xrun", m.json.runId);
		assert.equal(mRecord.status, "succeeded");
		assert.deepEqual(mRecord.result, m.json, "the record's result is the answer");

		const c = await postChat(gw.port, "xrun", { id: "xrun-chat", text: "/stream 3 1" });
		assert.equal(c.status, 200, c.text);
		assert.match(c.headers["x-run-id"], UUID_V7);
		assertStartChunk(c.chunks[0], c.headers["x-run-id"]);
		assertFinishChunk(chatTerminal(c.chunks));
		const cRecord = await getRun(gw.port, "xrun", c.headers["x-run-id"]);
		assert.equal(cRecord.status, "succeeded");
		assert.equal(cRecord.result.response, chatText(c.chunks));
		assert.notEqual(c.headers["x-run-id"], m.json.runId);

		const w = await request(gw.port, "POST", "/hooks/ci", {
			headers: { "x-pi-webhook-secret": SECRET },
			body: { text: "/instant", sender: "xrun" },
		});
		assert.equal(w.status, 200, w.text);
		assert.equal(w.json.sessionKey, "webhook:ci:xrun");
		assert.match(w.json.runId, UUID_V7);
		assert.equal(w.headers["x-run-id"], w.json.runId);
		const wRecord = await getRun(gw.port, "webhook:ci:xrun", w.json.runId);
		assert.deepEqual(wRecord.result, w.json);

		// Refusals: nothing accepted, no run id.
		const missing = await postMessage(gw.port, "xrun", { text: "  " });
		assert.equal(missing.status, 400);
		assert.equal(missing.headers["x-run-id"], undefined);
		const noChat = await postChat(gw.port, "xrun", { id: "x" });
		assert.equal(noChat.status, 400);
		assert.equal(noChat.headers["x-run-id"], undefined);
		const badSecret = await request(gw.port, "POST", "/hooks/ci", {
			headers: { "x-pi-webhook-secret": "nope" },
			body: { text: "/instant" },
		});
		assert.equal(badSecret.status, 401);
		assert.equal(badSecret.headers["x-run-id"], undefined);

		// Queue full (one running + MAX_QUEUE waiting): 429, the result without runId, no header.
		const key = "xfull";
		const before = gw.prompts();
		const ids = [await submit(gw.port, key, LONG)];
		await pollRun(gw.port, key, ids[0], (r) => r.status === "running", { what: "running" });
		for (let i = 0; i < MAX_QUEUE; i++) ids.push(await submit(gw.port, key, "/instant"));
		for (const body of [{ text: "/instant" }, { text: "/instant", wait: false }]) {
			const full = await postMessage(gw.port, key, body);
			assert.equal(full.status, 429, full.text);
			assert.deepEqual(full.json, { ok: false, response: "", error: `Queue full (${MAX_QUEUE} pending).`, sessionKey: key });
			assert.equal(full.headers["x-run-id"], undefined);
			assert.equal(full.headers.location, undefined);
		}
		const fullChat = await postChat(gw.port, key, { text: "/instant" });
		assert.equal(fullChat.status, 429, fullChat.text);
		assert.equal(fullChat.headers["x-run-id"], undefined);
		assert.deepEqual(
			(await listRuns(gw.port, key)).map((r) => r.runId),
			ids,
			"refused messages are not runs",
		);
		// Clean up: cancel the queued ones, abort the running one.
		for (const id of ids.slice(1)) assert.equal((await request(gw.port, "DELETE", runPath(key, id))).status, 200);
		assert.equal((await request(gw.port, "DELETE", runPath(key, ids[0]))).status, 200);
		assert.equal(gw.prompts(), before + 1, "only the running one ran; the refused and the cancelled queued ones never did");
	});

	test("DELETE: a queued run → cancelled (its waiting caller gets ok:false), a running one → aborted, an ended one → 409, unknown → 404", async (t) => {
		const key = "del";
		const events = await watchEvents(t, gw.port, key);
		const promptsBefore = gw.prompts();
		const a = await submit(gw.port, key, LONG);
		await pollRun(gw.port, key, a, (r) => r.status === "running", { what: "A running" });
		const waiting = postMessage(gw.port, key, { text: "/instant" });
		const runs = await runsWhen(gw.port, key, 2);
		const b = runs[1].runId;
		assert.equal(runs[1].status, "queued");

		const delB = await request(gw.port, "DELETE", runPath(key, b));
		assert.equal(delB.status, 200, delB.text);
		assert.deepEqual(delB.json, { ok: true, runId: b, status: "cancelled" });
		const answer = await within(waiting, 5000, "the cancelled run's caller to be answered");
		assert.equal(answer.headers["x-run-id"], b);
		assert.equal(answer.json.ok, false);
		assert.equal(answer.json.error, "Run cancelled");
		assert.equal(answer.json.runId, b);
		assert.equal(answer.json.sessionKey, key);
		const bRecord = await getRun(gw.port, key, b);
		assert.equal(bRecord.status, "cancelled");
		assertRecordShape(bRecord, { runId: b, sessionKey: key });
		assert.equal(bRecord.startedAt, undefined, "a cancelled queued run never started");
		assert.deepEqual(bRecord.result, answer.json);
		assert.equal((await getRun(gw.port, key, a)).status, "running", "cancelling B left A alone");

		const delA = await within(request(gw.port, "DELETE", runPath(key, a)), 11_000, "DELETE of a running run");
		assert.equal(delA.status, 200, delA.text);
		assert.deepEqual(delA.json, { ok: true, runId: a, status: "aborted" });
		const aRecord = await getRun(gw.port, key, a);
		assert.equal(aRecord.status, "aborted", "the DELETE answer came after the run ended");
		assertRecordShape(aRecord, { runId: a, sessionKey: key });
		assert.equal(aRecord.result.ok, false);
		assert.equal(aRecord.result.error, "Request was aborted");
		assert.ok(aRecord.result.response.match(/t\d+@/g).length < 200, "aborted mid-way");
		assert.equal(gw.prompts(), promptsBefore + 1, "only A was prompted");

		for (const [id, status] of [
			[a, "aborted"],
			[b, "cancelled"],
		]) {
			const again = await request(gw.port, "DELETE", runPath(key, id));
			assert.equal(again.status, 409);
			assert.deepEqual(again.json, { error: `Run already ended (${status})` });
		}
		const okRun = (await postMessage(gw.port, key, { text: "/instant" })).json.runId;
		const ended = await request(gw.port, "DELETE", runPath(key, okRun));
		assert.equal(ended.status, 409);
		assert.deepEqual(ended.json, { error: "Run already ended (succeeded)" });
		assert.equal((await getRun(gw.port, key, okRun)).status, "succeeded", "a refused DELETE changes nothing");

		// On the session stream: B got only its run_end; A ran, was aborted, ended.
		await events.waitFor((f) => f.data?.type === "run_end" && f.data.runId === okRun);
		const ev = events.events().map((f) => f.data);
		const ofB = ev.filter((e) => e.runId === b);
		assert.equal(ofB.length, 1, `only a run_end for the cancelled queued run: ${JSON.stringify(ofB)}`);
		assertRunEnd(ofB[0], { key, runId: b, status: "cancelled", error: "Run cancelled" });
		const ofA = ev.filter((e) => e.runId === a);
		assert.equal(ofA[0].type, "run_start");
		assert.equal(ofA.at(-2).type, "aborted");
		assertRunEnd(ofA.at(-1), { key, runId: a, status: "aborted", error: "Request was aborted" });
	});

	test("unknown runs are 404 on GET, DELETE and events; a run is found only under its own session", async () => {
		const known = (await postMessage(gw.port, "own", { text: "/instant" })).json.runId;
		for (const [key, id] of [
			["own", UNKNOWN_RUN_ID],
			["own", "not-a-run"],
			["other", known],
			["never-seen", known],
		]) {
			for (const [method, suffix] of [
				["GET", ""],
				["DELETE", ""],
				["GET", "/events"],
			]) {
				const r = await request(gw.port, method, `${runPath(key, id)}${suffix}`);
				assert.equal(r.status, 404, `${method} ${key}/${id}${suffix}: ${r.status} ${r.text}`);
				assert.deepEqual(r.json, { error: `Run not found: ${id}` });
			}
		}
		assert.deepEqual(await listRuns(gw.port, "never-seen"), []);
		assert.equal((await getRun(gw.port, "own", known)).status, "succeeded");
	});

	test("a run whose prompt throws, or whose model fails, ends failed (result, record and run_end agree)", async (t) => {
		const key = "fail";
		const events = await watchEvents(t, gw.port, key);
		for (const [text, expected] of [
			["/throw boom-1234", "boom-1234"],
			["/error model-5678", "model-5678"],
		]) {
			const r = await postMessage(gw.port, key, { text });
			assert.match(r.json.runId, UUID_V7, `${text}: ${r.text}`);
			assert.equal(r.headers["x-run-id"], r.json.runId);
			assert.equal(r.json.ok, false);
			assert.ok(r.json.error.includes(expected), `${text}: error ${r.json.error}`);
			const record = await getRun(gw.port, key, r.json.runId);
			assert.equal(record.status, "failed");
			assertRecordShape(record, { runId: r.json.runId, sessionKey: key });
			assert.deepEqual(record.result, r.json);
			const end = await events.waitFor((f) => f.data?.type === "run_end" && f.data.runId === r.json.runId);
			assert.deepEqual(end.data, { type: "run_end", sessionKey: key, runId: r.json.runId, status: "failed", error: r.json.error });
			const own = events.events().filter((f) => f.data.runId === r.json.runId);
			assert.equal(own[0].data.type, "run_start");
			assert.equal(own.at(-2).data.type, "error", `an error event before run_end: ${JSON.stringify(own.map((f) => f.data.type))}`);
			assert.equal(own.at(-2).data.error, r.json.error);
		}
	});

	test("a reset cancels the queued runs (never started) and the running one (started, prompted once); their callers get ok:false", async () => {
		// SPEC §10: "`cancelled`: cleared, reset, deleted, stopped or cancelled before it finished".
		// A run that is running when its session is reset ends `cancelled` (not `aborted`, which is
		// for an abort: POST …/abort, DELETE of a running run, a chat stop, or the model's own abort).
		const key = "rst";
		const before = gw.prompts();
		const a = await submit(gw.port, key, LONG);
		const { record: aRunning } = await pollRun(gw.port, key, a, (r) => r.status === "running", { what: "A running" });
		const b = await submit(gw.port, key, "/instant");
		const waitingC = postMessage(gw.port, key, { text: "/instant" });
		const c = (await runsWhen(gw.port, key, 3))[2].runId;
		assert.equal((await getRun(gw.port, key, b)).status, "queued");
		assert.equal((await getRun(gw.port, key, c)).status, "queued");

		const reset = await within(request(gw.port, "POST", `/sessions/${key}/reset`), 11_000, "reset");
		assert.equal(reset.status, 200, reset.text);
		const cAnswer = await within(waitingC, 5000, "the queued caller to be answered");
		assert.equal(cAnswer.json.ok, false);
		assert.equal(cAnswer.json.runId, c);
		assert.equal(cAnswer.json.error, "Session reset");
		assert.equal(cAnswer.headers["x-run-id"], c);
		for (const id of [b, c]) {
			const { record } = await pollRunEnded(gw.port, key, id, { timeoutMs: 5000 });
			assert.equal(record.status, "cancelled", `queued run ${id}`);
			assert.equal(record.result.error, "Session reset");
			assert.equal(record.startedAt, undefined, "a queued run cancelled by a reset never started");
			assertRecordShape(record, { runId: id, sessionKey: key });
		}
		assert.deepEqual((await getRun(gw.port, key, c)).result, cAnswer.json);

		// The running one: cancelled too, but it had started (startedAt kept, a run_start logged).
		const { record: aRecord } = await pollRunEnded(gw.port, key, a, { timeoutMs: 5000 });
		assert.equal(aRecord.status, "cancelled", `a run reset while running is cancelled: ${JSON.stringify(aRecord)}`);
		assertRecordShape(aRecord, { runId: a, sessionKey: key });
		assert.equal(typeof aRecord.startedAt, "number", "the reset running run had started");
		assert.equal(aRecord.startedAt, aRunning.startedAt, "startedAt does not move");
		assert.equal(aRecord.result.ok, false);
		assert.equal(aRecord.result.error, "Session reset");
		assert.equal(aRecord.result.runId, a);
		assert.equal(aRecord.result.sessionKey, key);
		assert.equal(gw.prompts(), before + 1, "only A was prompted, once; the cancelled queued runs never ran");
		const rstSessions = gw.created.filter((s) => s.sessionKey === key);
		assert.equal(rstSessions.length, 1, "one session of the key before the reset");
		assert.equal(rstSessions[0].stats.prompts, 1, "A was prompted exactly once");

		// A's own event stream: run_start … run_end{status:"cancelled"}, and it ends.
		const aEvents = await readRunEvents(gw.port, key, a);
		assert.equal(aEvents.status, 200);
		const aFrames = aEvents.events();
		assert.deepEqual(aFrames[0].data, { type: "run_start", sessionKey: key, runId: a });
		assertRunEnd(aFrames.at(-1).data, { key, runId: a, status: "cancelled", error: "Session reset" });
		assert.equal(aFrames.filter((f) => f.data.type === "run_start").length, 1);
		assert.equal(aFrames.filter((f) => f.data.type === "run_end").length, 1);

		// After a reset, the session_state emitted right after A's run_end may still say
		// processing:true (pi is still winding the aborted prompt down; the gateway takes no next
		// run until it has); a session_state with processing:false follows once pi has finished —
		// within a bound, and before anything is posted again. Nothing tagged with A's runId comes
		// after A's run_end meanwhile (pi's wind-down after a reset is not logged).
		const live = await openSse(gw.port, `/sessions/${key}/events?after=0`);
		try {
			assert.equal(live.status, 200);
			const liveEnd = await live.waitFor((f) => f.data?.type === "run_end" && f.data.runId === a, 5000, "A's run_end");
			const liveEndAt = live.frames.indexOf(liveEnd);
			await live.waitFor(
				(f) => live.frames.indexOf(f) > liveEndAt && f.data?.type === "session_state" && f.data.snapshot?.processing === false,
				10_000,
				"session_state with processing:false after A's run_end",
			);
			assert.deepEqual(
				live.frames.slice(liveEndAt + 1).filter((f) => f.data?.runId === a).map((f) => f.data.type),
				[],
				"nothing of A after its run_end (live)",
			);
		} finally {
			live.close();
		}

		const next = await postMessage(gw.port, key, { text: "/instant" });
		assert.equal(next.json.ok, true, "the session works after the reset");

		// The session's log (kept across the reset): A has one run_start and one run_end
		// {cancelled}; B and C only a run_end {cancelled}.
		const { hello, frames } = await readLog(gw.port, key);
		assert.notEqual(hello.data.missed, true, "the log still reaches back");
		const ofRun = (id) => frames.filter((f) => f.data.runId === id).map((f) => f.data);
		const ofA = ofRun(a);
		assert.equal(ofA.filter((e) => e.type === "run_start").length, 1, "one run_start for the reset running run");
		const aEnds = ofA.filter((e) => e.type === "run_end");
		assert.equal(aEnds.length, 1, "one run_end for the reset running run");
		assertRunEnd(aEnds[0], { key, runId: a, status: "cancelled", error: "Session reset" });
		// SPEC §10 order for one run: run_start, session_state, agent events…, aborted|error (if
		// so), run_end, session_state(processing:false) — the run's stream ends after run_end, so
		// nothing of the run may come after it.
		assert.equal(ofA[0].type, "run_start");
		const aEndAt = frames.findIndex((f) => f.data.type === "run_end" && f.data.runId === a);
		const afterEnd = frames.slice(aEndAt + 1);
		assert.deepEqual(
			afterEnd.filter((f) => f.data.runId === a).map((f) => f.data.type),
			[],
			`nothing of A after its run_end (A's frames: ${JSON.stringify(ofA.map((e) => e.type).filter((x) => x !== "token"))})`,
		);
		// …and a session_state with processing:false between A's run_end and the next run's run_start.
		const nextStartAt = afterEnd.findIndex((f) => f.data.type === "run_start" && f.data.runId === next.json.runId);
		assert.ok(nextStartAt >= 0, "the next run's run_start is logged after A's run_end");
		assert.ok(
			afterEnd.slice(0, nextStartAt).some((f) => f.data.type === "session_state" && f.data.snapshot?.processing === false),
			`a session_state with processing:false after A's run_end, before the next run: ${JSON.stringify(afterEnd.slice(0, nextStartAt + 1).map((f) => f.data.type))}`,
		);
		for (const id of [b, c]) {
			const of = ofRun(id);
			assert.equal(of.length, 1, `only a run_end for the cancelled queued run ${id}: ${JSON.stringify(of)}`);
			assertRunEnd(of[0], { key, runId: id, status: "cancelled", error: "Session reset" });
		}
	});

	test("GET …/runs/:runId/events replays an ended run from run_start to run_end and ends; honors Last-Event-ID and ?after=", async () => {
		const key = "replay";
		const r = await postMessage(gw.port, key, { text: "/stream 8 2" });
		assert.equal(r.json.ok, true, r.text);
		const runId = r.json.runId;
		const s = await readRunEvents(gw.port, key, runId);
		assert.equal(s.status, 200);
		assert.equal(s.headers["content-type"], "text/event-stream");
		assert.ok(s.raw.startsWith("retry: 2000\n\n"), `starts with retry: ${JSON.stringify(s.raw.slice(0, 40))}`);
		const frames = s.events();
		assert.deepEqual(frames[0].data, { type: "run_start", sessionKey: key, runId });
		assert.deepEqual(frames.at(-1).data, { type: "run_end", sessionKey: key, runId, status: "succeeded" });
		for (const f of frames) {
			assert.ok(Number.isInteger(f.id), `every frame has an id: ${JSON.stringify(f)}`);
			if (f.data.type !== "session_state") assert.equal(f.data.runId, runId, `only this run's frames: ${JSON.stringify(f.data)}`);
			assert.equal(f.data.sessionKey, key);
		}
		for (let i = 1; i < frames.length; i++) assert.ok(frames[i].id > frames[i - 1].id, "ids strictly increase");
		assert.equal(tokensOf(frames), r.json.response, "the replayed tokens are the run's answer");
		assert.ok(frames.some((f) => f.data.type === "message_complete" && f.data.text === r.json.response));

		// Resume from the middle: exactly the frames after it, again ending after run_end.
		const mid = frames[Math.floor(frames.length / 2)].id;
		const rest = frames.filter((f) => f.id > mid);
		const byHeader = await readRunEvents(gw.port, key, runId, { headers: { "last-event-id": String(mid) } });
		assert.equal(byHeader.status, 200);
		assert.deepEqual(
			byHeader.events().map((f) => ({ id: f.id, data: f.data })),
			rest.map((f) => ({ id: f.id, data: f.data })),
		);
		const byQuery = await readRunEvents(gw.port, key, runId, { query: `?after=${mid}` });
		assert.deepEqual(
			byQuery.events().map((f) => ({ id: f.id, data: f.data })),
			rest.map((f) => ({ id: f.id, data: f.data })),
		);
		const headerWins = await readRunEvents(gw.port, key, runId, {
			headers: { "last-event-id": String(mid) },
			query: `?after=${frames[0].id}`,
		});
		assert.deepEqual(
			headerWins.events().map((f) => f.id),
			rest.map((f) => f.id),
			"Last-Event-ID wins over ?after=",
		);
		// The contract's texts are "Invalid Last-Event-ID" / "Invalid after" (a reason may follow after ": ").
		for (const [opts, error] of [
			[{ headers: { "last-event-id": "abc" } }, /^Invalid Last-Event-ID(: .+)?$/],
			[{ headers: { "last-event-id": "-3" } }, /^Invalid Last-Event-ID(: .+)?$/],
			[{ query: "?after=-1" }, /^Invalid after(: .+)?$/],
			[{ query: "?after=1.5" }, /^Invalid after(: .+)?$/],
		]) {
			const bad = await request(gw.port, "GET", `${runPath(key, runId)}/events${opts.query ?? ""}`, { headers: opts.headers });
			assert.equal(bad.status, 400, bad.text);
			assert.deepEqual(Object.keys(bad.json), ["error"]);
			assert.match(bad.json.error, error);
		}
	});

	test("the events of a queued run stream live from its run_start, exclude other runs, end after run_end, and match the replay", async () => {
		const key = "live";
		const a = await submit(gw.port, key, "/stream 20 20");
		const b = await submit(gw.port, key, "/stream 40 20");
		const c = await submit(gw.port, key, "/instant");
		assert.equal((await getRun(gw.port, key, b)).status, "queued");
		const s = await openSse(gw.port, `${runPath(key, b)}/events`);
		assert.equal(s.status, 200);
		await s.waitFor((f) => f.data?.type === "token");
		assert.equal((await getRun(gw.port, key, b)).status, "running");
		// Cancel C while B runs: C's run_end lands in the session log between B's frames.
		const delC = await request(gw.port, "DELETE", runPath(key, c));
		assert.deepEqual(delC.json, { ok: true, runId: c, status: "cancelled" });
		await within(s.ended, 10_000, "B's event stream to end after run_end");
		const live = s.events();
		assert.deepEqual(live[0].data, { type: "run_start", sessionKey: key, runId: b });
		assert.deepEqual(live.at(-1).data, { type: "run_end", sessionKey: key, runId: b, status: "succeeded" });
		assert.ok(!live.some((f) => f.data.runId === a || f.data.runId === c), "no frame of another run");
		const result = await getRun(gw.port, key, b);
		assert.equal(tokensOf(live), result.result.response);
		const replay = await readRunEvents(gw.port, key, b);
		assert.deepEqual(
			replay.events().map((f) => ({ id: f.id, data: f.data })),
			live.map((f) => ({ id: f.id, data: f.data })),
			"live and replayed frames are the same frames",
		);
		assert.equal((await getRun(gw.port, key, a)).status, "succeeded");
	});

	test("run_start and run_end on /events, in order around the run's events, which all carry its runId", async (t) => {
		const key = "order";
		const events = await watchEvents(t, gw.port, key);
		const ok = await postMessage(gw.port, key, { text: "/tool" });
		assert.equal(ok.json.ok, true, ok.text);
		const aborted = await submit(gw.port, key, LONG);
		await events.waitFor((f) => f.data?.type === "token" && f.data.runId === aborted);
		assert.equal((await request(gw.port, "DELETE", runPath(key, aborted))).json.status, "aborted");
		const failed = (await postMessage(gw.port, key, { text: "/error nope" })).json;
		const failEnd = await events.waitFor((f) => f.data?.type === "run_end" && f.data.runId === failed.runId);
		await events.waitFor((f) => f.data?.type === "session_state" && f.id > failEnd.id);

		const ev = events.events();
		assert.equal(ev[0].data.type, "hello");
		for (const f of ev) {
			if (f.data.type === "hello" || f.data.type === "session_state") {
				assert.equal(f.data.runId, undefined, `${f.data.type} carries no runId`);
			}
		}
		for (const [runId, status, before] of [
			[ok.json.runId, "succeeded", null],
			[aborted, "aborted", "aborted"],
			[failed.runId, "failed", "error"],
		]) {
			const starts = ev.filter((f) => f.data.type === "run_start" && f.data.runId === runId);
			const ends = ev.filter((f) => f.data.type === "run_end" && f.data.runId === runId);
			assert.equal(starts.length, 1, `one run_start for ${status}`);
			assert.equal(ends.length, 1, `one run_end for ${status}`);
			const i = ev.indexOf(starts[0]);
			const j = ev.indexOf(ends[0]);
			assert.ok(i < j);
			assert.equal(ends[0].data.status, status);
			assert.equal(ev[i + 1].data.type, "session_state", "run_start, then session_state");
			assert.equal(ev[i + 1].data.snapshot.processing, true);
			assert.equal(ev[j + 1]?.data.type, "session_state", "run_end, then session_state");
			assert.equal(ev[j + 1].data.snapshot.processing, false);
			const inside = ev.slice(i + 2, j);
			assert.ok(inside.length > 0);
			for (const f of inside) {
				assert.ok(RUN_CAUSED.has(f.data.type), `only the run's own agent events inside: ${f.data.type}`);
				assert.equal(f.data.runId, runId, `${f.data.type} carries the runId`);
			}
			assert.ok(!ev.some((f, k) => (k < i || k > j) && f.data.runId === runId), "nothing of the run outside run_start…run_end");
			if (before) assert.equal(ev[j - 1].data.type, before, `${before} right before run_end`);
			if (status === "succeeded") {
				for (const type of ["turn_start", "tool_start", "tool_update", "tool_complete", "message_start", "token", "message_complete", "turn_end"]) {
					assert.ok(inside.some((f) => f.data.type === type), `the tool run has ${type}`);
				}
			}
		}
		// Ids on /events are strictly increasing too.
		const ids = ev.slice(1).map((f) => f.id);
		for (let k = 1; k < ids.length; k++) assert.ok(ids[k] > ids[k - 1]);
	});
});

describe("runs.retainPerSession and the log bound", { timeout: 60_000 }, () => {
	test("only the last 3 ended runs are kept; queued and running runs are never dropped", async (t) => {
		const gw = await startGateway({ t, config: { runs: { retainPerSession: 3 } } });
		const key = "ret";
		const ended = [];
		for (let i = 0; i < 5; i++) {
			const r = await postMessage(gw.port, key, { text: "/instant" });
			assert.equal(r.json.ok, true);
			ended.push(r.json.runId);
		}
		assert.deepEqual(
			(await listRuns(gw.port, key)).map((r) => r.runId),
			ended.slice(2),
		);
		for (const id of ended.slice(0, 2)) {
			const gone = await request(gw.port, "GET", runPath(key, id));
			assert.equal(gone.status, 404, "a forgotten run is unknown");
			assert.equal((await request(gw.port, "DELETE", runPath(key, id))).status, 404);
			assert.equal(gw.rt.getRun(key, id), undefined);
		}
		const a = await submit(gw.port, key, LONG);
		await pollRun(gw.port, key, a, (r) => r.status === "running");
		const b = await submit(gw.port, key, "/instant");
		assert.deepEqual(
			(await listRuns(gw.port, key)).map((r) => [r.runId, r.status]),
			[...ended.slice(2).map((id) => [id, "succeeded"]), [a, "running"], [b, "queued"]],
		);
		assert.equal((await request(gw.port, "DELETE", runPath(key, a))).json.status, "aborted");
		await pollRunEnded(gw.port, key, b);
		assert.deepEqual(
			(await listRuns(gw.port, key)).map((r) => r.runId),
			[ended[4], a, b],
		);
		assert.deepEqual(
			gw.rt.listRuns(key).map((r) => r.runId),
			[ended[4], a, b],
		);
	});

	test("a run whose start fell out of the log replays from a hello with missed:true and still ends after run_end", async (t) => {
		const gw = await startGateway({ t, config: { events: { replayEvents: 5 } } });
		const key = "short-log";
		const r = await postMessage(gw.port, key, { text: "/stream 30 0" });
		assert.equal(r.json.ok, true);
		const s = await readRunEvents(gw.port, key, r.json.runId);
		assert.equal(s.status, 200);
		const frames = s.events();
		assert.equal(frames[0].data.type, "hello");
		assert.equal(frames[0].data.missed, true);
		assert.ok(frames.length <= 6, `at most the log (5 frames) after hello, got ${frames.length}`);
		assert.ok(!frames.some((f) => f.data.type === "run_start"), "run_start is no longer logged");
		const ends = frames.filter((f) => f.data.type === "run_end");
		assert.deepEqual(
			ends.map((f) => f.data),
			[{ type: "run_end", sessionKey: key, runId: r.json.runId, status: "succeeded" }],
		);
	});
});

describe("runs from JS", { timeout: 60_000 }, () => {
	test("submitMessage, getRun, listRuns, waitForRun, cancelRun and enqueueMessage's runId", async (t) => {
		const gw = await startGateway({ t, config: { session: { maxQueuePerSession: 2 } } });
		const { rt } = gw;
		const key = "js";

		const t0 = Date.now();
		const a = await within(rt.submitMessage({ sessionKey: key, text: "/stream 50 20" }), 2000, "submitMessage does not wait");
		assert.ok(Date.now() - t0 < 900, "resolved before the ≈1 s run could end");
		assertRecordShape(a, { sessionKey: key });
		assert.ok(["queued", "running"].includes(a.status), a.status);
		const b = await rt.submitMessage({ sessionKey: key, text: "/stream 3 1" });
		assert.equal(b.status, "queued");
		assertRecordShape(b, { sessionKey: key });
		assert.notEqual(a.runId, b.runId);
		assert.ok(!ENDED.has(rt.getRun(key, a.runId).status), "a is not over yet");
		assert.deepEqual(
			rt.listRuns(key).map((r) => r.runId),
			[a.runId, b.runId],
		);

		const bResult = await within(rt.waitForRun(key, b.runId), 10_000, "waitForRun");
		assert.equal(bResult.ok, true);
		assert.equal(bResult.runId, b.runId);
		assert.equal(bResult.sessionKey, key);
		assert.equal(bResult.response.match(/t\d+@/g).length, 3);
		const bRecord = rt.getRun(key, b.runId);
		assert.equal(bRecord.status, "succeeded");
		assert.deepEqual(bRecord.result, bResult);
		assert.equal(rt.getRun(key, a.runId).status, "succeeded", "a ran first");
		assert.deepEqual(await within(rt.waitForRun(key, b.runId), 1000, "waitForRun of an ended run"), bResult);
		// JS and HTTP agree.
		assert.deepEqual(JSON.parse(JSON.stringify(rt.getRun(key, b.runId))), await getRun(gw.port, key, b.runId));
		assert.deepEqual(JSON.parse(JSON.stringify(rt.listRuns(key))), await listRuns(gw.port, key));

		const enq = await rt.enqueueMessage({ sessionKey: key, text: "/instant" });
		assert.equal(enq.ok, true);
		assert.match(enq.runId, UUID_V7);
		assert.equal(rt.listRuns(key).at(-1).runId, enq.runId);
		assert.deepEqual(rt.getRun(key, enq.runId).result, enq);

		assert.equal(rt.getRun(key, UNKNOWN_RUN_ID), undefined);
		assert.equal(rt.getRun("nobody", enq.runId), undefined);
		assert.deepEqual(rt.listRuns("nobody"), []);
		await assert.rejects(within(rt.waitForRun(key, UNKNOWN_RUN_ID), 2000, "waitForRun of an unknown run"));

		// cancelRun: queued → cancelled, running → aborted, ended/unknown → ok:false.
		const before = gw.prompts();
		const c = await rt.submitMessage({ sessionKey: key, text: LONG });
		await waitFor(() => rt.getRun(key, c.runId).status === "running", "c running");
		const d = await rt.submitMessage({ sessionKey: key, text: "/instant" });
		const dWait = rt.waitForRun(key, d.runId);
		assert.deepEqual(await rt.cancelRun(key, d.runId), { ok: true, runId: d.runId, status: "cancelled" });
		const dResult = await within(dWait, 2000, "the cancelled run's waiter");
		assert.equal(dResult.ok, false);
		assert.equal(dResult.error, "Run cancelled");
		assert.equal(dResult.runId, d.runId);
		assert.deepEqual(await within(rt.cancelRun(key, c.runId), 11_000, "cancelRun of a running run"), {
			ok: true,
			runId: c.runId,
			status: "aborted",
		});
		assert.equal(rt.getRun(key, c.runId).status, "aborted");
		assert.equal(gw.prompts(), before + 1, "c ran, the cancelled d never did");
		for (const id of [c.runId, UNKNOWN_RUN_ID]) {
			const r = await rt.cancelRun(key, id);
			assert.equal(r.ok, false);
			assert.equal(r.runId, id);
			assert.equal(typeof r.error, "string");
		}
		assert.equal(rt.getRun(key, c.runId).status, "aborted", "a refused cancel changes nothing");

		// submitMessage rejects what is not accepted: bad input, and a full queue.
		const runsBeforeBad = rt.listRuns(key).length;
		await assert.rejects(rt.submitMessage({ sessionKey: "", text: "/instant" }), /sessionKey/);
		await assert.rejects(rt.submitMessage({ sessionKey: key }), /text/);
		assert.equal(rt.listRuns(key).length, runsBeforeBad, "a refused submit is not a run");
		const runsBefore = rt.listRuns(key).length;
		const e = await rt.submitMessage({ sessionKey: key, text: LONG });
		await waitFor(() => rt.getRun(key, e.runId).status === "running", "e running");
		const queued = [await rt.submitMessage({ sessionKey: key, text: "/instant" }), await rt.submitMessage({ sessionKey: key, text: "/instant" })];
		await assert.rejects(rt.submitMessage({ sessionKey: key, text: "/instant" }), /Queue full/);
		assert.equal(rt.listRuns(key).length, runsBefore + 3, "a refused submit is not a run");
		const full = await rt.enqueueMessage({ sessionKey: key, text: "/instant" });
		assert.equal(full.ok, false);
		assert.equal(full.runId, undefined, "a refused message has no runId");
		for (const q of queued) assert.equal((await rt.cancelRun(key, q.runId)).status, "cancelled");
		assert.equal((await rt.cancelRun(key, e.runId)).status, "aborted");
	});
});
