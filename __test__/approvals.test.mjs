// Tool approvals (issue 15, SPEC §13) over HTTP on a real socket, in front of real pi
// AgentSessions on the offline faux model: `/bash <command>` makes a real `bash` tool call (pi's
// own bash tool), and the gateway's `approval.policy` holds it (`ask`), blocks it (`deny`) or lets
// it run (`allow`, or no policy). The commands write marker files in a temporary directory, so
// whether a command ran is read on disk, not only in the answer.
//
// Covered: approve / deny (with and without a reason) / timeout / abort (POST abort, DELETE run,
// an interrupting message) / reset / DELETE session / stop() while an approval is pending; two
// calls in one message; the bound of 64 pending approvals; the routes' 404 / 409 / 400; policy
// deny, "*", tools not named, no approval config; the JS API (listApprovals, resolveApproval);
// config validation.
//
// Run: node --test __test__/approvals.test.mjs

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { GatewayRuntime } from "../index.js";
import { HELLO_CONTENT, HELLO_FILE } from "../lib/faux-agent.js";
import {
	alreadyDecided,
	approvalRequests,
	assertAlreadyDecided,
	assertNeverRan,
	assertPendingEntry,
	assertRequestEvent,
	assertResolvedEvent,
	bashMessage,
	decide,
	decideOk,
	DENIED_BY_POLICY,
	DENIED_BY_USER,
	DENIED_TIMEOUT,
	DENIED_TOO_MANY,
	deniedByUser,
	endedRun,
	enc,
	eventsOf,
	frameIndex,
	INVALID_APPROVED,
	INVALID_REASON,
	listPending,
	markCommand,
	notFound,
	resolvedEvent,
	runEndEvent,
	startApprovalGateway,
} from "./support/approval-util.mjs";
import { baseConfig } from "./support/gateway.mjs";
import { openEvents, say } from "./support/history-util.mjs";
import { request } from "./support/http.mjs";
import { getRun, runPath, submit, UUID_V7 } from "./support/runs.mjs";
import { createScriptedFactory, createScriptedSession } from "./support/sessions.mjs";
import { collect, SOON_MS, sleep, waitFor, within } from "./support/wait.mjs";

const ASK_BASH = { policy: { bash: "ask" } };
/** An approval id no gateway ever issued. */
const UNKNOWN_APPROVAL = "00000000-0000-4000-8000-000000000000";

/**
 * Submits `text` to `key` (wait:false) with the session's event stream `sse` open, and waits for
 * the run's `n` approval_request events. Returns `{ runId, requests, before, after }`.
 */
async function submitAndAwaitRequests(gw, sse, key, text, n = 1) {
	const before = Date.now();
	const runId = await submit(gw.port, key, text);
	const requests = await approvalRequests(sse, runId, n);
	return { runId, requests, before, after: Date.now() };
}

/** A POST /messages (wait:true) in the background; resolves with the HTTP answer. */
function postInBackground(gw, key, text, extra = {}) {
	return request(gw.port, "POST", `/sessions/${enc(key)}/messages`, { body: { text, ...extra }, timeoutMs: 30_000 });
}

/** Calls `fn` and asserts it throws an approval error with `status` and `message`; returns the error. */
function throwsApprovalError(fn, status, message, what) {
	let thrown;
	try {
		fn();
	} catch (error) {
		thrown = error;
	}
	assert.ok(thrown instanceof Error, `${what}: expected a throw, got ${thrown === undefined ? "no error" : String(thrown)}`);
	assert.equal(thrown.status, status, `${what}: .status of ${thrown.message}`);
	assert.equal(thrown.message, message, what);
	return thrown;
}

describe("approvals: policy { bash: 'ask' } (default timeout)", { timeout: 180_000 }, () => {
	/** @type {Awaited<ReturnType<typeof startApprovalGateway>>} */
	let gw;
	before(async () => {
		gw = await startApprovalGateway({ approval: ASK_BASH });
	});
	after(async () => {
		await gw?.close();
	});

	it("approve: the call is held (nothing runs, run running, listed) until approved; then it runs and its output reaches the answer", async () => {
		const key = "approve";
		const sse = await openEvents(gw.port, key);
		try {
			const path = gw.marker("approve");
			const command = markCommand(path, "approved-out");
			const { runId, requests, before, after } = await submitAndAwaitRequests(gw, sse, key, bashMessage(command));
			const [req] = requests;
			assertRequestEvent(req, sse, { key, runId, args: { command }, before, after });
			const toolStart = await waitFor(() => eventsOf(sse, "tool_start", runId)[0], "the tool_start of the call");
			assert.equal(toolStart.toolCallId, req.toolCallId, "pi announced the call the approval is for");
			assert.equal(eventsOf(sse, "tool_start", runId).length, 1);

			// Held: it does not run, the run keeps running, the approval is listed.
			await sleep(200);
			assert.equal(existsSync(path), false, "the command waits for the decision");
			assert.equal((await getRun(gw.port, key, runId)).status, "running");
			const pending = await listPending(gw.port, key);
			assert.equal(pending.length, 1, JSON.stringify(pending));
			assertPendingEntry(pending[0], req);
			assert.deepEqual(eventsOf(sse, "tool_complete", runId), [], "no tool result yet");

			await decideOk(gw.port, key, req.approvalId, { approved: true });
			const resolved = await resolvedEvent(sse, req.approvalId);
			assertResolvedEvent(resolved, { key, runId, request: req, approved: true, by: "client" });

			const record = await endedRun(gw.port, key, runId, "succeeded");
			assert.equal(record.result.ok, true);
			assert.equal(record.result.response, "bash said: approved-out");
			assert.equal(readFileSync(path, "utf8"), "ran\n", "the approved command ran");
			const complete = eventsOf(sse, "tool_complete", runId);
			assert.equal(complete.length, 1);
			assert.equal(complete[0].isError, false);
			assert.deepEqual(await listPending(gw.port, key), [], "nothing pending any more");

			// Order on the stream: request, resolved, the tool's result, the run's end.
			await runEndEvent(sse, runId);
			const at = (type) => frameIndex(sse, (e) => e.type === type && e.runId === runId);
			assert.ok(at("approval_request") < at("approval_resolved"), "request before resolved");
			assert.ok(at("approval_resolved") < at("tool_complete"), "resolved before the tool's result");
			assert.ok(at("tool_complete") < at("run_end"), "the tool's result before run_end");
		} finally {
			sse.close();
		}
	});

	it("deny with a reason: the command does not run, the model is told `Denied by the user: <reason>`, the run succeeds", async () => {
		const key = "deny";
		const sse = await openEvents(gw.port, key);
		try {
			const path = gw.marker("deny");
			const command = markCommand(path, "should-not-print");
			const { runId, requests, before, after } = await submitAndAwaitRequests(gw, sse, key, bashMessage(command));
			const [req] = requests;
			assertRequestEvent(req, sse, { key, runId, args: { command }, before, after });

			const reason = "not on my machine";
			await decideOk(gw.port, key, req.approvalId, { approved: false, reason });
			assertResolvedEvent(await resolvedEvent(sse, req.approvalId), { key, runId, request: req, approved: false, by: "client", reason });

			const record = await endedRun(gw.port, key, runId, "succeeded");
			assert.equal(record.result.response, `bash failed: ${deniedByUser(reason)}`);
			assert.ok(!record.result.response.includes("should-not-print"));
			await assertNeverRan(path, "a denied call");
			const complete = eventsOf(sse, "tool_complete", runId);
			assert.equal(complete.length, 1);
			assert.equal(complete[0].isError, true, "the denied call is a tool error");
			assert.equal(complete[0].toolCallId, req.toolCallId);
			assert.deepEqual(await listPending(gw.port, key), []);

			// The session goes on.
			assert.equal((await say(gw.port, key, "/echo still here")).response, "You said: still here");
		} finally {
			sse.close();
		}
	});

	it("POST /sessions/:key/abort while waiting: the approval is resolved by abort, the run ends aborted, nothing runs; the session answers next", async () => {
		const key = "abort";
		const sse = await openEvents(gw.port, key);
		try {
			const path = gw.marker("abort");
			const { runId, requests } = await submitAndAwaitRequests(gw, sse, key, bashMessage(markCommand(path, "x")));
			const [req] = requests;

			const abort = await within(request(gw.port, "POST", `/sessions/${enc(key)}/abort`), SOON_MS, "POST abort");
			assert.equal(abort.status, 200, abort.text);
			assert.deepEqual(abort.json, { ok: true });

			const resolved = await resolvedEvent(sse, req.approvalId);
			assertResolvedEvent(resolved, { key, runId, request: req, approved: false, by: "abort", reason: String });
			const end = await runEndEvent(sse, runId);
			assert.equal(end.status, "aborted");
			assert.ok(
				frameIndex(sse, (e) => e.type === "approval_resolved" && e.approvalId === req.approvalId) <
					frameIndex(sse, (e) => e.type === "run_end" && e.runId === runId),
				"approval_resolved is logged before run_end",
			);
			const record = await endedRun(gw.port, key, runId, "aborted");
			assert.equal(record.result.ok, false);
			await assertNeverRan(path, "a call pending when the run was aborted");
			assert.deepEqual(await listPending(gw.port, key), []);

			// A decision now is too late: 409, decided by abort.
			assertAlreadyDecided(await decide(gw.port, key, req.approvalId, { approved: true }), resolved);
			assert.equal(existsSync(path), false);

			// The session answers the next good message.
			assert.equal((await say(gw.port, key, "/echo after abort")).response, "You said: after abort");
		} finally {
			sse.close();
		}
	});

	it("DELETE /sessions/:key/runs/:runId while waiting: resolved by abort, the run ends aborted, nothing runs", async () => {
		const key = "cancel-run";
		const sse = await openEvents(gw.port, key);
		try {
			const path = gw.marker("cancel-run");
			const { runId, requests } = await submitAndAwaitRequests(gw, sse, key, bashMessage(markCommand(path, "x")));
			const [req] = requests;
			const del = await within(request(gw.port, "DELETE", runPath(key, runId)), SOON_MS, "DELETE of the waiting run");
			assert.equal(del.status, 200, del.text);
			assert.deepEqual(del.json, { ok: true, runId, status: "aborted" });
			assertResolvedEvent(await resolvedEvent(sse, req.approvalId), { key, runId, request: req, approved: false, by: "abort", reason: String });
			await endedRun(gw.port, key, runId, "aborted");
			await assertNeverRan(path, "a call whose run was cancelled");
			assert.deepEqual(await listPending(gw.port, key), []);
			assert.equal((await say(gw.port, key, "/echo next")).response, "You said: next");
		} finally {
			sse.close();
		}
	});

	it("an `interrupt` message while waiting: the waiting run is aborted (approval resolved by abort), the new message runs", async () => {
		const key = "interrupt";
		const sse = await openEvents(gw.port, key);
		try {
			const path = gw.marker("interrupt");
			const { runId, requests } = await submitAndAwaitRequests(gw, sse, key, bashMessage(markCommand(path, "x")));
			const [req] = requests;
			const next = await within(postInBackground(gw, key, "/echo interrupting", { mode: "interrupt" }), SOON_MS, "the interrupting message");
			assert.equal(next.status, 200, next.text);
			assert.equal(next.json.ok, true, next.text);
			assert.equal(next.json.response, "You said: interrupting");
			assert.notEqual(next.json.runId, runId);
			assertResolvedEvent(await resolvedEvent(sse, req.approvalId), { key, runId, request: req, approved: false, by: "abort", reason: String });
			await endedRun(gw.port, key, runId, "aborted");
			await assertNeverRan(path, "a call whose run was interrupted");
		} finally {
			sse.close();
		}
	});

	it("POST /sessions/:key/reset while waiting: resolved by abort, the waiting caller gets its one answer (Session reset), nothing runs; the session answers next", async () => {
		const key = "reset";
		const sse = await openEvents(gw.port, key);
		try {
			const path = gw.marker("reset");
			const waiting = postInBackground(gw, key, bashMessage(markCommand(path, "x")));
			const req = await sse.waitFor((f) => f.data?.type === "approval_request", SOON_MS, "the approval request");
			const { runId } = req.data;
			assert.match(String(runId), UUID_V7);

			const reset = await within(request(gw.port, "POST", `/sessions/${enc(key)}/reset`), SOON_MS, "reset");
			assert.equal(reset.status, 200, reset.text);
			const answer = await within(waiting, SOON_MS, "the waiting caller's answer");
			assert.equal(answer.json?.ok, false, `${answer.status} ${answer.text}`);
			assert.equal(answer.json.error, "Session reset");
			assert.equal(answer.json.runId, runId);
			assertResolvedEvent(await resolvedEvent(sse, req.data.approvalId), {
				key,
				runId,
				request: req.data,
				approved: false,
				by: "abort",
				reason: String,
			});
			const end = await runEndEvent(sse, runId);
			assert.equal(end.status, "cancelled");
			assert.ok(
				frameIndex(sse, (e) => e.type === "approval_resolved" && e.approvalId === req.data.approvalId) <
					frameIndex(sse, (e) => e.type === "run_end" && e.runId === runId),
				"approval_resolved is logged before run_end",
			);
			await assertNeverRan(path, "a call pending at a reset");
			assert.deepEqual(await listPending(gw.port, key), []);
			assert.equal((await say(gw.port, key, "/echo after reset")).response, "You said: after reset");
		} finally {
			sse.close();
		}
	});

	it("DELETE /sessions/:key while waiting: resolved by abort, the waiting caller gets its one answer (Session deleted), nothing runs", async () => {
		const key = "delete";
		const sse = await openEvents(gw.port, key);
		try {
			const path = gw.marker("delete");
			const waiting = postInBackground(gw, key, bashMessage(markCommand(path, "x")));
			const req = await sse.waitFor((f) => f.data?.type === "approval_request", SOON_MS, "the approval request");
			const { runId, approvalId } = req.data;

			const del = await within(request(gw.port, "DELETE", `/sessions/${enc(key)}`), SOON_MS, "DELETE session");
			assert.equal(del.status, 200, del.text);
			assert.deepEqual(del.json, { ok: true, sessionKey: key, purged: false });
			const answer = await within(waiting, SOON_MS, "the waiting caller's answer");
			assert.equal(answer.json?.ok, false, `${answer.status} ${answer.text}`);
			assert.equal(answer.json.error, "Session deleted");
			assert.equal(answer.json.runId, runId);
			assertResolvedEvent(await resolvedEvent(sse, approvalId), { key, runId, request: req.data, approved: false, by: "abort", reason: String });
			assert.equal((await runEndEvent(sse, runId)).status, "cancelled");
			await assertNeverRan(path, "a call pending when its session was deleted");
			// The key is no longer in memory: nothing pending, and the old approval is not found.
			assert.deepEqual(await listPending(gw.port, key), []);
			const late = await decide(gw.port, key, approvalId, { approved: true });
			assert.equal(late.status, 404, late.text);
			assert.deepEqual(late.json, { error: notFound(approvalId) });
			assert.equal(existsSync(path), false);
		} finally {
			sse.close();
		}
	});

	it("two calls in one message: two approval_request events, both pending at once; approve one (with a reason), deny the other → exactly one runs", async () => {
		const key = "two-calls";
		const sse = await openEvents(gw.port, key);
		try {
			const pathA = gw.marker("two-a");
			const pathB = gw.marker("two-b");
			const commandA = markCommand(pathA, "out-a");
			const commandB = markCommand(pathB, "out-b");
			const { runId, requests, before, after } = await submitAndAwaitRequests(gw, sse, key, bashMessage(commandA, commandB), 2);
			const [reqA, reqB] = requests;
			assertRequestEvent(reqA, sse, { key, runId, args: { command: commandA }, before, after });
			assertRequestEvent(reqB, sse, { key, runId, args: { command: commandB }, before, after });
			assert.notEqual(reqA.approvalId, reqB.approvalId);
			assert.notEqual(reqA.toolCallId, reqB.toolCallId);
			// Back to back: nothing of the run between the two requests.
			const iA = frameIndex(sse, (e) => e.approvalId === reqA.approvalId);
			const iB = frameIndex(sse, (e) => e.approvalId === reqB.approvalId);
			assert.equal(iB, iA + 1, "the two approval_request events are back to back");

			const pending = await listPending(gw.port, key);
			assert.equal(pending.length, 2, "both pending at once");
			assertPendingEntry(pending[0], reqA);
			assertPendingEntry(pending[1], reqB);

			// One decision is not enough: pi runs the message's calls once every decision is in.
			await decideOk(gw.port, key, reqA.approvalId, { approved: true, reason: "looks fine" });
			assertResolvedEvent(await resolvedEvent(sse, reqA.approvalId), {
				key,
				runId,
				request: reqA,
				approved: true,
				by: "client",
				reason: "looks fine",
			});
			await sleep(200);
			assert.equal(existsSync(pathA), false, "the approved call waits for the other decision");
			const left = await listPending(gw.port, key);
			assert.deepEqual(
				left.map((a) => a.approvalId),
				[reqB.approvalId],
			);

			await decideOk(gw.port, key, reqB.approvalId, { approved: false, reason: "not this one" });
			assertResolvedEvent(await resolvedEvent(sse, reqB.approvalId), {
				key,
				runId,
				request: reqB,
				approved: false,
				by: "client",
				reason: "not this one",
			});
			const record = await endedRun(gw.port, key, runId, "succeeded");
			assert.equal(record.result.response, `bash said: out-a\nbash failed: ${deniedByUser("not this one")}`);
			assert.equal(readFileSync(pathA, "utf8"), "ran\n", "the approved call ran");
			await assertNeverRan(pathB, "the denied call");
			assert.equal(eventsOf(sse, "approval_request", runId).length, 2, "exactly two requests");
			assert.equal(eventsOf(sse, "approval_resolved", runId).length, 2, "exactly two resolutions");
		} finally {
			sse.close();
		}
	});

	it("answering twice → 409 (the first decision stands); unknown id, another session, unknown session → 404", async () => {
		const key = "twice";
		const sse = await openEvents(gw.port, key);
		try {
			const path = gw.marker("twice");
			const { runId, requests } = await submitAndAwaitRequests(gw, sse, key, bashMessage(markCommand(path, "first-wins")));
			const [req] = requests;

			// 404s while it is pending: an id never issued, a non-UUID, the right id under other keys.
			for (const [k, id, what] of [
				[key, UNKNOWN_APPROVAL, "an id never issued"],
				[key, "not-an-id", "a non-UUID id"],
				["twice-other", req.approvalId, "the id under another (unknown) session"],
				["main", req.approvalId, "the id under the primary session"],
			]) {
				const r = await decide(gw.port, k, id, { approved: false });
				assert.equal(r.status, 404, `${what}: ${r.status} ${r.text}`);
				assert.deepEqual(r.json, { error: notFound(id) }, what);
			}
			assert.equal((await listPending(gw.port, key)).length, 1, "the 404s changed nothing");
			assert.deepEqual(await listPending(gw.port, "twice-other"), [], "a key not in memory lists nothing");

			await decideOk(gw.port, key, req.approvalId, { approved: true });
			const second = await decide(gw.port, key, req.approvalId, { approved: false, reason: "changed my mind" });
			assert.equal(second.status, 409, second.text);
			assert.deepEqual(second.json, { error: alreadyDecided(req.approvalId), approved: true, by: "client" }, "no reason was given");

			const record = await endedRun(gw.port, key, runId, "succeeded");
			assert.equal(record.result.response, "bash said: first-wins", "the first decision stands");
			assert.equal(readFileSync(path, "utf8"), "ran\n");
			const resolved = eventsOf(sse, "approval_resolved", runId);
			assert.equal(resolved.length, 1, "resolved once");
			assert.equal(resolved[0].approved, true);

			// Still 409 after the run ended (decided approvals are remembered).
			const third = await decide(gw.port, key, req.approvalId, { approved: true });
			assert.equal(third.status, 409, third.text);
			assert.deepEqual(third.json, { error: alreadyDecided(req.approvalId), approved: true, by: "client" });
		} finally {
			sse.close();
		}
	});

	it("bad bodies → 400 naming the field, and the approval is still pending; a reason of exactly 2000 characters is fine", async () => {
		const key = "bad-bodies";
		const sse = await openEvents(gw.port, key);
		try {
			const path = gw.marker("bad-bodies");
			const { runId, requests } = await submitAndAwaitRequests(gw, sse, key, bashMessage(markCommand(path, "x")));
			const [req] = requests;
			const cases = [
				[{}, INVALID_APPROVED, "approved missing"],
				[{ reason: "why" }, INVALID_APPROVED, "approved missing, reason given"],
				[{ approved: "yes" }, INVALID_APPROVED, 'approved "yes"'],
				[{ approved: 1 }, INVALID_APPROVED, "approved 1"],
				[{ approved: null }, INVALID_APPROVED, "approved null"],
				[{ approved: true, reason: 5 }, INVALID_REASON, "reason 5"],
				[{ approved: false, reason: "x".repeat(2001) }, INVALID_REASON, "reason of 2001 characters"],
				["not json", "Invalid JSON body", "not JSON"],
				["[true]", "Invalid JSON body", "a JSON array"],
			];
			for (const [body, error, what] of cases) {
				const r = await decide(gw.port, key, req.approvalId, body);
				assert.equal(r.status, 400, `${what}: ${r.status} ${r.text}`);
				assert.deepEqual(r.json, { error }, what);
				const pending = await listPending(gw.port, key);
				assert.deepEqual(
					pending.map((a) => a.approvalId),
					[req.approvalId],
					`${what}: still pending`,
				);
			}
			assert.deepEqual(eventsOf(sse, "approval_resolved"), [], "no bad body resolved anything");
			assert.equal((await getRun(gw.port, key, runId)).status, "running");
			assert.equal(existsSync(path), false);

			const reason = "r".repeat(2000);
			await decideOk(gw.port, key, req.approvalId, { approved: false, reason });
			const record = await endedRun(gw.port, key, runId, "succeeded");
			assert.equal(record.result.response, `bash failed: ${deniedByUser(reason)}`);
			await assertNeverRan(path, "the denied call");
		} finally {
			sse.close();
		}
	});

	it("a tool the policy does not name (read) runs without asking", async () => {
		const key = "read-allowed";
		const sse = await openEvents(gw.port, key);
		try {
			const result = await say(gw.port, key, "what is in the file?");
			assert.equal(result.response, `${HELLO_FILE} says: ${HELLO_CONTENT}`);
			await runEndEvent(sse, result.runId);
			assert.deepEqual(eventsOf(sse, "approval_request"), []);
			assert.deepEqual(eventsOf(sse, "approval_resolved"), []);
		} finally {
			sse.close();
		}
	});

	it("at most 64 pending per session: of 66 calls in one message, 64 are asked and the other 2 denied at once", async () => {
		const key = "bound";
		const sse = await openEvents(gw.port, key);
		try {
			const n = 66;
			const paths = Array.from({ length: n }, (_, i) => gw.marker(`bound-${i}`));
			const commands = paths.map((p, i) => markCommand(p, `ok${i}`));
			const { runId, requests } = await submitAndAwaitRequests(gw, sse, key, bashMessage(...commands), 64);
			assert.deepEqual(
				requests.map((r) => r.args.command),
				commands.slice(0, 64),
				"the first 64 calls are asked, in order",
			);
			const pending = await listPending(gw.port, key);
			assert.equal(pending.length, 64);
			await sleep(100);
			assert.equal(eventsOf(sse, "approval_request", runId).length, 64, "no 65th request");
			for (const req of requests) gw.runtime.resolveApproval(key, req.approvalId, { approved: true });
			const record = await endedRun(gw.port, key, runId, "succeeded");
			const expected = [
				...Array.from({ length: 64 }, (_, i) => `bash said: ok${i}`),
				`bash failed: ${DENIED_TOO_MANY}`,
				`bash failed: ${DENIED_TOO_MANY}`,
			];
			assert.deepEqual(record.result.response.split("\n"), expected);
			for (const p of paths.slice(0, 64)) assert.ok(existsSync(p), `${p} was written`);
			for (const p of paths.slice(64)) assert.equal(existsSync(p), false, `${p}: an over-the-bound call ran`);
			assert.equal(eventsOf(sse, "approval_resolved", runId).length, 64);
		} finally {
			sse.close();
		}
	});

	it("the JS API: listApprovals is GET's list; resolveApproval decides, and throws .status 404 / 400 / 409", async () => {
		const rt = gw.runtime;
		const key = "js-api";
		assert.deepEqual(rt.listApprovals("js-api-never-seen"), [], "a key not in memory");
		const sse = await openEvents(gw.port, key);
		try {
			const path = gw.marker("js-api");
			const { runId, requests } = await submitAndAwaitRequests(gw, sse, key, bashMessage(markCommand(path, "x")));
			const [req] = requests;
			const listed = rt.listApprovals(key);
			assert.deepEqual(listed, await listPending(gw.port, key));
			assert.equal(listed.length, 1);
			assertPendingEntry(listed[0], req);

			throwsApprovalError(() => rt.resolveApproval(key, UNKNOWN_APPROVAL, { approved: true }), 404, notFound(UNKNOWN_APPROVAL), "unknown id");
			throwsApprovalError(() => rt.resolveApproval("js-api-other", req.approvalId, { approved: true }), 404, notFound(req.approvalId), "unknown session");
			throwsApprovalError(() => rt.resolveApproval(key, req.approvalId, { approved: "yes" }), 400, INVALID_APPROVED, 'approved "yes"');
			throwsApprovalError(() => rt.resolveApproval(key, req.approvalId, {}), 400, INVALID_APPROVED, "approved missing");
			throwsApprovalError(() => rt.resolveApproval(key, req.approvalId, { approved: true, reason: 5 }), 400, INVALID_REASON, "reason 5");
			throwsApprovalError(
				() => rt.resolveApproval(key, req.approvalId, { approved: true, reason: "x".repeat(2001) }),
				400,
				INVALID_REASON,
				"reason too long",
			);
			assert.equal(rt.listApprovals(key).length, 1, "still pending after the errors");

			const decision = rt.resolveApproval(key, req.approvalId, { approved: false });
			assert.deepEqual(decision, { ok: true, approvalId: req.approvalId, approved: false, by: "client" });
			throwsApprovalError(() => rt.resolveApproval(key, req.approvalId, { approved: true }), 409, alreadyDecided(req.approvalId), "twice");

			const resolved = await resolvedEvent(sse, req.approvalId);
			assert.equal(resolved.approved, false);
			assert.equal(resolved.by, "client");
			const record = await endedRun(gw.port, key, runId, "succeeded");
			assert.equal(record.result.response, `bash failed: ${DENIED_BY_USER}`, "denied without a reason");
			await assertNeverRan(path, "the call denied through the JS API");
			assert.deepEqual(rt.listApprovals(key), []);
		} finally {
			sse.close();
		}
	});
});

describe("approvals: timeout (timeoutMs 300)", { timeout: 60_000 }, () => {
	/** @type {Awaited<ReturnType<typeof startApprovalGateway>>} */
	let gw;
	before(async () => {
		gw = await startApprovalGateway({ approval: { ...ASK_BASH, timeoutMs: 300 } });
	});
	after(async () => {
		await gw?.close();
	});

	it("no decision within timeoutMs: denied by timeout, the command does not run, the run succeeds with the denial told to the model", async () => {
		const key = "timeout";
		const sse = await openEvents(gw.port, key);
		try {
			const path = gw.marker("timeout");
			const command = markCommand(path, "too-late");
			const { runId, requests, before, after } = await submitAndAwaitRequests(gw, sse, key, bashMessage(command));
			const [req] = requests;
			const seenAt = Date.now();
			assertRequestEvent(req, sse, { key, runId, args: { command }, timeoutMs: 300, before, after });
			const pending = await listPending(gw.port, key);
			assert.equal(pending.length, 1);
			assertPendingEntry(pending[0], req, 300);

			const resolved = await resolvedEvent(sse, req.approvalId, 5_000);
			const resolvedAt = Date.now();
			assertResolvedEvent(resolved, { key, runId, request: req, approved: false, by: "timeout", reason: String });
			assert.ok(resolvedAt >= req.expiresAt - 20, `not resolved before it expired (${resolvedAt} < ${req.expiresAt})`);
			assert.ok(resolvedAt - seenAt < 5_000);

			const record = await endedRun(gw.port, key, runId, "succeeded");
			const line = record.result.response;
			assert.ok(line.startsWith("bash failed: "), line);
			assert.match(line.slice("bash failed: ".length), DENIED_TIMEOUT);
			await assertNeverRan(path, "a timed-out call");
			assert.deepEqual(await listPending(gw.port, key), []);

			assertAlreadyDecided(await decide(gw.port, key, req.approvalId, { approved: true }), resolved);
			assert.equal(existsSync(path), false);
		} finally {
			sse.close();
		}
	});
});

describe("approvals: other policies", { timeout: 120_000 }, () => {
	it("policy deny: blocked at once with `Denied by policy`, no approval events, nothing runs", async (t) => {
		const gw = await startApprovalGateway({ approval: { policy: { bash: "deny" } } });
		t.after(() => gw.close());
		const key = "policy-deny";
		const sse = await openEvents(gw.port, key);
		t.after(() => sse.close());
		const path = gw.marker("policy-deny");
		const result = await say(gw.port, key, bashMessage(markCommand(path, "x")));
		assert.equal(result.response, `bash failed: ${DENIED_BY_POLICY}`);
		await runEndEvent(sse, result.runId);
		assert.deepEqual(eventsOf(sse, "approval_request"), []);
		assert.deepEqual(eventsOf(sse, "approval_resolved"), []);
		const complete = eventsOf(sse, "tool_complete", result.runId);
		assert.equal(complete.length, 1);
		assert.equal(complete[0].isError, true);
		await assertNeverRan(path, "a call the policy denies");
		assert.deepEqual(await listPending(gw.port, key), []);
		// read is not named: it runs.
		assert.equal((await say(gw.port, key, "read it")).response, `${HELLO_FILE} says: ${HELLO_CONTENT}`);
	});

	it('policy { "*": "ask" }: bash is asked, and so is read', async (t) => {
		const gw = await startApprovalGateway({ approval: { policy: { "*": "ask" } } });
		t.after(() => gw.close());
		const key = "star-ask";
		const sse = await openEvents(gw.port, key);
		t.after(() => sse.close());
		const path = gw.marker("star-ask");
		const command = markCommand(path, "star-out");
		const first = await submitAndAwaitRequests(gw, sse, key, bashMessage(command));
		assertRequestEvent(first.requests[0], sse, { key, runId: first.runId, args: { command }, before: first.before, after: first.after });
		await sleep(100);
		assert.equal(existsSync(path), false, "held");
		await decideOk(gw.port, key, first.requests[0].approvalId, { approved: true });
		assert.equal((await endedRun(gw.port, key, first.runId, "succeeded")).result.response, "bash said: star-out");
		assert.ok(existsSync(path));

		const second = await submitAndAwaitRequests(gw, sse, key, "what does the file say?");
		assertRequestEvent(second.requests[0], sse, {
			key,
			runId: second.runId,
			toolName: "read",
			args: { path: HELLO_FILE },
			before: second.before,
			after: second.after,
		});
		await decideOk(gw.port, key, second.requests[0].approvalId, { approved: true });
		assert.equal((await endedRun(gw.port, key, second.runId, "succeeded")).result.response, `${HELLO_FILE} says: ${HELLO_CONTENT}`);
	});

	it('policy { "*": "deny", bash: "allow" }: the named tool runs, every other is denied by policy', async (t) => {
		const gw = await startApprovalGateway({ approval: { policy: { "*": "deny", bash: "allow" } } });
		t.after(() => gw.close());
		const key = "star-deny";
		const sse = await openEvents(gw.port, key);
		t.after(() => sse.close());
		const path = gw.marker("star-deny");
		assert.equal((await say(gw.port, key, bashMessage(markCommand(path, "allowed")))).response, "bash said: allowed");
		assert.ok(existsSync(path), "bash ran");
		assert.equal((await say(gw.port, key, "read it")).response, `${HELLO_FILE} says: ${DENIED_BY_POLICY}`);
		assert.deepEqual(eventsOf(sse, "approval_request"), []);
	});

	it("no approval config: bash runs without asking (the seed's behaviour)", async (t) => {
		const gw = await startApprovalGateway();
		t.after(() => gw.close());
		const key = "no-policy";
		const sse = await openEvents(gw.port, key);
		t.after(() => sse.close());
		const path = gw.marker("no-policy");
		const result = await say(gw.port, key, bashMessage(markCommand(path, "free")));
		assert.equal(result.response, "bash said: free");
		assert.equal(readFileSync(path, "utf8"), "ran\n");
		await runEndEvent(sse, result.runId);
		assert.deepEqual(eventsOf(sse, "approval_request"), []);
		assert.deepEqual(eventsOf(sse, "approval_resolved"), []);
		assert.deepEqual(await listPending(gw.port, key), []);
		assert.deepEqual(gw.runtime.listApprovals(key), []);
	});

	it("an empty policy ({}) asks nothing either", async (t) => {
		const gw = await startApprovalGateway({ approval: { policy: {}, timeoutMs: 1000 } });
		t.after(() => gw.close());
		const path = gw.marker("empty-policy");
		assert.equal((await say(gw.port, "empty-policy", bashMessage(markCommand(path, "free")))).response, "bash said: free");
		assert.ok(existsSync(path));
	});
});

describe("approvals: stop() while an approval is pending", { timeout: 60_000 }, () => {
	it("the approval is resolved (by abort), the waiting caller is answered, nothing runs, stop() returns", async (t) => {
		const gw = await startApprovalGateway({ approval: ASK_BASH });
		t.after(() => gw.close());
		const key = "stop";
		const events = await collect(gw.runtime, key);
		t.after(async () => {
			try {
				await events.unsubscribe?.();
			} catch {
				// the gateway is stopped
			}
		});
		const path = gw.marker("stop");
		const waiting = postInBackground(gw, key, bashMessage(markCommand(path, "x")));
		const req = await events.waitFor((e) => e.type === "approval_request", "the approval request");
		assert.equal(req.toolName, "bash");

		const started = Date.now();
		await within(gw.runtime.stop(), SOON_MS, "stop() with an approval pending");
		assert.ok(Date.now() - started < SOON_MS);

		const answer = await within(waiting, SOON_MS, "the waiting caller's answer");
		assert.equal(answer.json?.ok, false, `${answer.status} ${answer.text}`);
		assert.equal(answer.json.error, "Gateway stopped");
		assert.equal(answer.json.runId, req.runId);

		const resolved = await events.waitFor(
			(e) => e.type === "approval_resolved" && e.approvalId === req.approvalId,
			"approval_resolved of the pending approval",
		);
		assertResolvedEvent(resolved, { key, runId: req.runId, request: req, approved: false, by: "abort", reason: String });
		const runEnd = events.events.findIndex((e) => e.type === "run_end" && e.runId === req.runId);
		if (runEnd >= 0) assert.ok(events.events.indexOf(resolved) < runEnd, "approval_resolved before run_end");
		await assertNeverRan(path, "a call pending at stop()");
	});
});

describe("approvals: config validation", () => {
	const runtime = (overrides) =>
		new GatewayRuntime({
			config: baseConfig(overrides),
			primarySessionKey: "main",
			primarySession: createScriptedSession("main", { kind: "instant" }),
			createSession: createScriptedFactory({ kind: "instant" }),
		});

	it("a bad approval or chat setting throws an error naming the field", () => {
		const cases = [
			[{ approval: { policy: { bash: "maybe" } } }, /config\.approval\.policy\.bash/],
			[{ approval: { policy: { bash: true } } }, /config\.approval\.policy\.bash/],
			[{ approval: { policy: { "*": "ASK" } } }, /config\.approval\.policy/],
			[{ approval: { policy: "ask" } }, /config\.approval\.policy/],
			[{ approval: { timeoutMs: 0 } }, /config\.approval\.timeoutMs/],
			[{ approval: { timeoutMs: -1 } }, /config\.approval\.timeoutMs/],
			[{ approval: { timeoutMs: 1.5 } }, /config\.approval\.timeoutMs/],
			[{ approval: { timeoutMs: 86_400_001 } }, /config\.approval\.timeoutMs/],
			[{ approval: { timeoutMs: "100" } }, /config\.approval\.timeoutMs/],
			[{ chat: { protocol: 4 } }, /config\.chat\.protocol/],
			[{ chat: { protocol: 8 } }, /config\.chat\.protocol/],
			[{ chat: { protocol: "6" } }, /config\.chat\.protocol/],
		];
		for (const [patch, message] of cases) {
			assert.throws(() => runtime(patch), message, JSON.stringify(patch));
		}
	});

	it("the edges are accepted: timeoutMs 1 and 86_400_000, protocol 5 / 6 / 7, every policy value", () => {
		const good = [
			{ approval: { timeoutMs: 1 } },
			{ approval: { timeoutMs: 86_400_000 } },
			{ approval: { policy: { bash: "allow", read: "ask", write: "deny", "*": "ask" } } },
			{ approval: {} },
			{ chat: { protocol: 5 } },
			{ chat: { protocol: 6 } },
			{ chat: { protocol: 7 } },
		];
		for (const patch of good) assert.doesNotThrow(() => runtime(patch), JSON.stringify(patch));
	});
});
