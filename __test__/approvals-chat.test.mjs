// Tool approvals in a chat UI (issue 15, SPEC §13 and §6): `approval.policy {bash: "ask"}` in front
// of real pi AgentSessions on the faux model (`/bash <command>` → pi's real bash tool; the answer
// after the tool results is one line per call, `bash said: <output>` / `bash failed: <error>`).
// Every command writes a marker file into a temp dir, so "ran / did not run" is checked on disk.
//
// - protocol 6/7 with the real `ai` Chat of v7 and v6 (`addToolApprovalResponse` +
//   `sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses`): the first
//   stream pauses (`tool-approval-request`, `finish-step`, `finish` "tool-calls"), the Chat sends
//   the continuation by itself, the gateway answers the same run on (`start` with the assistant
//   message's id, `start-step`, `tool-output-available` | `tool-output-denied`, …, `finish`);
// - two calls in one message: both asked at once, the continuation only once both are answered;
// - one message mixing a held call (bash) with an allowed one (read, faux `@read <path>`): the
//   read's part is still `input-available` at the pause (pi runs a message's calls only after
//   every decision), so the SDK's `lastAssistantMessageIsCompleteWithApprovalResponses` never
//   fires (shown: nothing goes out by itself, a manual `sendMessage()` continues); the chat
//   example's own predicate `decisionsComplete` (imported from examples/chat-ui/src/gateway.js)
//   sends the decision by itself and the same message ends with both outputs;
// - the same over plain HTTP: the paused stream, the resume route while paused and after the
//   end, the continuation body, a continuation after a timeout, an unknown continuation;
// - protocol 5 with the ai@5 Chat (no approval API): one open stream, a `data-approval-request`
//   part updated in place, decisions through `POST /sessions/:key/approvals/:approvalId`.
// Every chunk of every stream is checked with that `ai` version's own schema and the structure
// of support/ui-chunks.mjs.
//
// Run: node --test __test__/approvals-chat.test.mjs

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fauxAssistantMessage, fauxText, fauxToolCall } from "@mariozechner/pi-ai";
import { decisionsComplete } from "../examples/chat-ui/src/gateway.js";
import { HELLO_CONTENT, HELLO_FILE } from "../lib/faux-agent.js";
import { lastUserText, registerFauxScript, removeDir } from "./support/chat-fixture.mjs";
import { startChatGateway } from "./support/gateway.mjs";
import { request } from "./support/http.mjs";
import { createChat as createRecordingChat, uiStreamChunks } from "./support/modes-util.mjs";
import { assertStartChunk, getRun, pollRunEnded, readLog, UUID_V7 } from "./support/runs.mjs";
import { SDKS, validateChunks, wellFormed } from "./support/ui-chunks.mjs";
import { sleep, waitFor, within } from "./support/wait.mjs";

const enc = encodeURIComponent;
const POLICY = { policy: { bash: "ask" } };
const [AI7, AI6, AI5] = SDKS;
/** How long a stream, a Chat request or a decision may take here before the test fails. */
const STREAM_MS = 20_000;

/** A harmless command that writes `<dir>/<name>` and prints `ran-<name>`. */
function marker(dir, name) {
	const path = join(dir, name);
	return { path, output: `ran-${name}`, command: `touch ${path} && echo ran-${name}` };
}

const DENIED_BY_USER = (reason) => (reason ? `Denied by the user: ${reason}` : "Denied by the user");

/** The tool parts (static `tool-<name>` or `dynamic-tool`) of a UIMessage. */
const toolParts = (message) => (message?.parts ?? []).filter((p) => p.type === "dynamic-tool" || p.type.startsWith("tool-"));
const toolNameOf = (part) => (part.type === "dynamic-tool" ? part.toolName : part.type.slice("tool-".length));
const textOf = (message) =>
	(message?.parts ?? [])
		.filter((p) => p.type === "text")
		.map((p) => p.text)
		.join("");
const types = (chunks) => chunks.map((c) => c.type);
const chunkText = (chunks) =>
	chunks
		.filter((c) => c.type === "text-delta")
		.map((c) => c.delta)
		.join("");
const dump = (chunks) => chunks.map((c) => JSON.stringify(c)).join("\n");

/**
 * A real `AbstractChat` of this SDK version (what useChat wraps) with a plain in-memory state and
 * a `DefaultChatTransport` whose fetch records every response body (`chat.fetch.responses`);
 * with `approvals`, `sendAutomaticallyWhen` = `sendWhen`, by default the same package's
 * `lastAssistantMessageIsCompleteWithApprovalResponses`. Errors reported to `onError` are in
 * `chat.reportedErrors`.
 */
function createChat(sdk, { id, api, approvals = true, sendWhen = sdk.ai.lastAssistantMessageIsCompleteWithApprovalResponses }) {
	return createRecordingChat(sdk, { id, api, sendWhen: approvals ? sendWhen : undefined });
}

/**
 * The chunks of the chat's `i`-th response, read to the end: 200, a UI message stream, its framing
 * (`[DONE]` once, last), every chunk valid under `sdk`'s own schema, and the structure of one
 * message's stream (a continuation given the earlier streams of its message as `before`).
 */
async function streamOf(sdk, chat, i, what, { before } = {}) {
	const response = chat.fetch.responses[i];
	assert.ok(response, `${what}: the chat sent request ${i}`);
	assert.equal(response.status, 200, `${what}: status ${response.status} ${response.text}`);
	assert.equal(response.headers.get("x-vercel-ai-ui-message-stream"), "v1", `${what}: a UI message stream`);
	const raw = await within(response.done, STREAM_MS, `${what}: the stream to end`);
	const chunks = uiStreamChunks(raw, what);
	await validateChunks(sdk, chunks, what);
	wellFormed(chunks, what, { before });
	return chunks;
}

/** GET /sessions/:key/approvals → the pending list. */
/** The assistant message `addToolApprovalResponse` leaves for a continuation: `asking`'s bash call approved. */
function approvedBashMessage(id, asking, command) {
	return {
		id,
		role: "assistant",
		parts: [
			{ type: "step-start" },
			{
				type: "dynamic-tool",
				toolName: "bash",
				toolCallId: asking.toolCallId,
				state: "approval-responded",
				input: { command },
				approval: { id: asking.approvalId, approved: true },
			},
		],
	};
}

async function pendingApprovals(port, key) {
	const res = await request(port, "GET", `/sessions/${enc(key)}/approvals`);
	assert.equal(res.status, 200, `GET approvals of ${key}: ${res.status} ${res.text}`);
	assert.ok(Array.isArray(res.json?.approvals), res.text);
	return res.json.approvals;
}

/** Checks one pending approval of the REST list against the tool call it holds. */
function assertPending(entry, { approvalId, toolCallId, command, key }) {
	assert.equal(entry.approvalId, approvalId, JSON.stringify(entry));
	assert.equal(entry.sessionKey, key, JSON.stringify(entry));
	assert.equal(entry.toolCallId, toolCallId, JSON.stringify(entry));
	assert.equal(entry.toolName, "bash", JSON.stringify(entry));
	assert.deepEqual(entry.args, { command }, JSON.stringify(entry));
	assert.equal(typeof entry.requestedAt, "number");
	assert.ok(entry.expiresAt > entry.requestedAt, JSON.stringify(entry));
}

/** Waits until the Chat has sent `n` requests and the last one's stream has been read to its end and processed. */
async function chatSettled(chat, n, what) {
	await waitFor(() => chat.fetch.responses.length >= n, `${what}: request ${n} of the Chat`, STREAM_MS);
	await within(chat.fetch.responses[n - 1].done, STREAM_MS, `${what}: response ${n} to end`);
	await waitFor(() => chat.status === "ready" || chat.status === "error", `${what}: the Chat to be ready`, STREAM_MS);
	assert.equal(chat.status, "ready", `${what}: Chat status ${chat.status}: ${chat.error?.message}`);
	assert.deepEqual(chat.reportedErrors.map((e) => e.message), [], `${what}: errors reported to the Chat`);
	// Nothing more goes out on its own (sendAutomaticallyWhen is false once the approvals are answered).
	await sleep(200);
	assert.equal(chat.fetch.responses.length, n, `${what}: the Chat sent exactly ${n} requests`);
}

/** POST /sessions/:key/chat with fetch; reads the whole answer (bounded). */
async function postChat(base, key, body, what) {
	const response = await fetch(`${base}/sessions/${enc(key)}/chat`, {
		method: "POST",
		headers: { "content-type": "application/json" },
		body: JSON.stringify(body),
		signal: AbortSignal.timeout(STREAM_MS),
	});
	const text = await within(response.text(), STREAM_MS, `${what}: the answer to end`);
	return { status: response.status, headers: response.headers, text };
}

/** A stream answer's chunks, checked with the v7 and v6 schemas and the structure of ui-chunks.mjs. */
async function v6v7Chunks(answer, what, { before } = {}) {
	assert.equal(answer.status, 200, `${what}: ${answer.status} ${answer.text}`);
	assert.equal(answer.headers.get("x-vercel-ai-ui-message-stream"), "v1", what);
	const chunks = uiStreamChunks(answer.text, what);
	for (const sdk of [AI7, AI6]) await validateChunks(sdk, chunks, what);
	wellFormed(chunks, what, { before });
	return chunks;
}

const userMessage = (id, text) => ({ id, role: "user", parts: [{ type: "text", text }] });

/** The user text that selects {@link registerTalkingBashScript}'s script: `/talkbash <command>`. */
const TALK_BASH = "/talkbash ";

/**
 * A faux script with text on both sides of a pause: `/talkbash <command>` answers with a text
 * (`Running it now.`) and a bash call of the command, then, with the tool result in context,
 * with `Done: <the result's text, trimmed>`.
 */
function registerTalkingBashScript() {
	return registerFauxScript({
		name: "Faux talking bash script",
		answer: (context) => {
			const messages = context.messages ?? [];
			const lastUser = messages.findLastIndex((m) => m.role === "user");
			const result = messages.slice(lastUser + 1).findLast((m) => m.role === "toolResult");
			if (result) return fauxAssistantMessage(`Done: ${result.content.map((c) => c.text ?? "").join("").trim()}`);
			return fauxAssistantMessage([fauxText("Running it now."), fauxToolCall("bash", { command: lastUserText(context).slice(TALK_BASH.length) })], {
				stopReason: "toolUse",
			});
		},
	});
}

// ---------------------------------------------------------------------------------------------

describe("tool approvals with the ai Chat (protocol 6): addToolApprovalResponse and sendAutomaticallyWhen", { timeout: 180_000 }, () => {
	/** @type {Awaited<ReturnType<typeof startChatGateway>>} */
	let gw;
	let dir;
	let counter = 0;
	const freshKey = (name) => `approve-${name}-${++counter}`;
	const api = (key) => `${gw.base}/sessions/${enc(key)}/chat`;

	before(async () => {
		dir = await mkdtemp(join(tmpdir(), "pi-gateway-approvals-"));
		gw = await startChatGateway({
			config: { approval: POLICY },
			script: () => ({ registration: registerTalkingBashScript(), when: (context) => lastUserText(context).startsWith(TALK_BASH) }),
		});
	});
	after(async () => {
		await gw?.close();
		await removeDir(dir);
	});

	it("the ai v7 and v6 packages have the approval API these tests drive", () => {
		for (const sdk of [AI7, AI6]) {
			assert.equal(typeof sdk.ai.lastAssistantMessageIsCompleteWithApprovalResponses, "function", sdk.label);
			assert.equal(typeof createChat(sdk, { id: "probe", api: api("probe") }).addToolApprovalResponse, "function", sdk.label);
		}
		assert.equal(AI5.ai.lastAssistantMessageIsCompleteWithApprovalResponses, undefined, "ai@5 has no approval API");
	});

	for (const sdk of [AI7, AI6]) {
		for (const approved of [true, false]) {
			const verdict = approved ? "approved" : "denied";
			it(`${sdk.label}: a bash call is asked, the stream pauses; ${verdict} with addToolApprovalResponse, the Chat sends the continuation and the same message ${approved ? "gets the output" : "ends output-denied"}`, async () => {
				const key = freshKey(`${sdk.major}-${verdict}`);
				const m = marker(dir, `chat-${sdk.major}-${verdict}`);
				const reason = approved ? undefined : `not now (${sdk.label})`;
				const chat = createChat(sdk, { id: `c-${key}`, api: api(key) });

				await within(chat.sendMessage({ text: `/bash ${m.command}` }), STREAM_MS, "the first request");
				assert.equal(chat.status, "ready", `status after the paused stream: ${chat.status} ${chat.error?.message}`);
				assert.deepEqual(chat.reportedErrors.map((e) => e.message), []);
				assert.equal(chat.fetch.responses.length, 1, "one request so far");
				assert.equal(chat.messages.length, 2);
				const asked = chat.messages[1];
				assert.equal(asked.role, "assistant");
				const [part, ...moreParts] = toolParts(asked);
				assert.equal(moreParts.length, 0, JSON.stringify(asked.parts));
				assert.equal(part.state, "approval-requested", JSON.stringify(part));
				assert.equal(toolNameOf(part), "bash");
				assert.deepEqual(part.input, { command: m.command });
				const approvalId = part.approval?.id;
				assert.equal(typeof approvalId, "string", JSON.stringify(part));
				assert.ok(approvalId.length > 0);

				// The first stream: paused right after the request.
				const first = await streamOf(sdk, chat, 0, "the first stream");
				const runId = chat.fetch.responses[0].headers.get("x-run-id");
				assert.match(String(runId), UUID_V7);
				assertStartChunk(first[0], runId, "the first start", key);
				assert.equal(asked.id, runId, "the assistant message's id is the start chunk's messageId");
				assert.deepEqual(types(first).slice(-4), ["tool-input-available", "tool-approval-request", "finish-step", "finish"], dump(first));
				assert.deepEqual(first.at(-3), { type: "tool-approval-request", approvalId, toolCallId: part.toolCallId });
				assert.equal(first.at(-1).finishReason, "tool-calls");

				// The gateway holds the call: pending, nothing ran.
				const pending = await pendingApprovals(gw.port, key);
				assert.equal(pending.length, 1, JSON.stringify(pending));
				assertPending(pending[0], { approvalId, toolCallId: part.toolCallId, command: m.command, key });
				assert.equal(pending[0].runId, runId);
				assert.equal((await getRun(gw.port, key, runId)).status, "running", "the run waits for the decision");
				assert.equal(existsSync(m.path), false, "the command did not run before the decision");

				await chat.addToolApprovalResponse(approved ? { id: approvalId, approved: true } : { id: approvalId, approved: false, reason });
				await chatSettled(chat, 2, "the continuation");

				// What the Chat sent: the whole conversation, its last message the answered assistant message.
				const sent = chat.fetch.responses[1];
				assert.equal(sent.method, "POST");
				const lastSent = sent.requestBody.messages.at(-1);
				assert.equal(lastSent.role, "assistant");
				assert.equal(lastSent.id, runId);
				const sentPart = toolParts(lastSent)[0];
				assert.equal(sentPart.state, "approval-responded");
				assert.equal(sentPart.approval.id, approvalId);
				assert.equal(sentPart.approval.approved, approved);

				// The continuation: the same message, from a new step on.
				const cont = await streamOf(sdk, chat, 1, "the continuation", { before: first });
				assertStartChunk(cont[0], runId, "the continuation's start", key);
				assert.equal(cont[1].type, "start-step");
				const outputs = cont.filter((c) => /^tool-output-/.test(c.type));
				if (approved) {
					assert.deepEqual(types(outputs), ["tool-output-available"], dump(cont));
					assert.equal(outputs[0].toolCallId, part.toolCallId);
					assert.ok(JSON.stringify(outputs[0].output).includes(m.output), JSON.stringify(outputs[0]));
				} else {
					assert.deepEqual(outputs, [{ type: "tool-output-denied", toolCallId: part.toolCallId }], dump(cont));
				}
				assert.deepEqual(cont.at(-1).type, "finish");
				assert.equal(cont.at(-1).finishReason, "stop");
				const answer = approved ? `bash said: ${m.output}` : `bash failed: ${DENIED_BY_USER(reason)}`;
				assert.equal(chunkText(cont), answer, dump(cont));

				// The Chat: one assistant message (the same id), its tool part decided, the answer after it.
				assert.equal(chat.messages.length, 2, JSON.stringify(chat.messages.map((x) => x.id)));
				const final = chat.messages[1];
				assert.equal(final.id, runId);
				const [done, ...others] = toolParts(final);
				assert.equal(others.length, 0, JSON.stringify(final.parts));
				assert.equal(done.toolCallId, part.toolCallId);
				assert.equal(done.approval?.id, approvalId);
				assert.equal(done.approval?.approved, approved);
				if (approved) {
					assert.equal(done.state, "output-available", JSON.stringify(done));
					assert.ok(JSON.stringify(done.output).includes(m.output), JSON.stringify(done.output));
				} else {
					assert.equal(done.state, "output-denied", JSON.stringify(done));
					assert.equal(done.approval?.reason, reason);
				}
				assert.equal(textOf(final), answer);
				assert.equal(existsSync(m.path), approved, approved ? "the approved command ran" : "the denied command did not run");

				assert.deepEqual(await pendingApprovals(gw.port, key), []);
				const { record } = await pollRunEnded(gw.port, key, runId);
				assert.equal(record.status, "succeeded");
				assert.equal(record.result.response, answer);

				// The continuation decided it: approval_resolved by "client" in the session's event log.
				const log = (await readLog(gw.port, key)).frames.map((f) => f.data);
				assert.deepEqual(
					log.filter((e) => e.type === "approval_resolved"),
					[{ type: "approval_resolved", sessionKey: key, approvalId, toolCallId: part.toolCallId, approved, ...(reason ? { reason } : {}), by: "client", runId }],
				);
				assert.deepEqual(
					log.filter((e) => e.type === "approval_request").map((e) => [e.approvalId, e.toolCallId, e.toolName, e.runId]),
					[[approvalId, part.toolCallId, "bash", runId]],
				);
			});
		}
	}

	it(`${AI7.label}: two bash calls in one message are asked at once; the continuation goes out only once both are answered (one approved, one denied)`, async () => {
		const key = freshKey("two");
		const a = marker(dir, "two-a");
		const b = marker(dir, "two-b");
		const reason = "only the first one";
		const chat = createChat(AI7, { id: `c-${key}`, api: api(key) });

		await within(chat.sendMessage({ text: `/bash ${a.command} ;; ${b.command}` }), STREAM_MS, "the first request");
		assert.equal(chat.status, "ready", chat.error?.message);
		const asked = chat.messages[1];
		const parts = toolParts(asked);
		assert.equal(parts.length, 2, JSON.stringify(asked.parts));
		assert.deepEqual(parts.map((p) => p.state), ["approval-requested", "approval-requested"]);
		assert.deepEqual(parts.map((p) => p.input), [{ command: a.command }, { command: b.command }]);
		const [idA, idB] = parts.map((p) => p.approval.id);
		assert.notEqual(idA, idB);

		const first = await streamOf(AI7, chat, 0, "the first stream");
		assert.deepEqual(types(first).slice(-4), ["tool-approval-request", "tool-approval-request", "finish-step", "finish"], dump(first));
		assert.deepEqual(
			first.filter((c) => c.type === "tool-approval-request"),
			parts.map((p) => ({ type: "tool-approval-request", approvalId: p.approval.id, toolCallId: p.toolCallId })),
		);
		const pending = await pendingApprovals(gw.port, key);
		assert.deepEqual(pending.map((p) => p.approvalId), [idA, idB], "both pending at once, oldest first");

		// One answer: the Chat waits for the other, the gateway decides nothing yet.
		await chat.addToolApprovalResponse({ id: idA, approved: true });
		await sleep(400);
		assert.equal(chat.fetch.responses.length, 1, "no continuation while one approval is unanswered");
		assert.deepEqual((await pendingApprovals(gw.port, key)).map((p) => p.approvalId), [idA, idB]);
		assert.equal(existsSync(a.path), false, "nothing ran yet");

		await chat.addToolApprovalResponse({ id: idB, approved: false, reason });
		await chatSettled(chat, 2, "the continuation");
		const sentParts = toolParts(chat.fetch.responses[1].requestBody.messages.at(-1));
		assert.deepEqual(
			sentParts.map((p) => [p.state, p.approval.id, p.approval.approved]),
			[
				["approval-responded", idA, true],
				["approval-responded", idB, false],
			],
		);

		const cont = await streamOf(AI7, chat, 1, "the continuation", { before: first });
		assertStartChunk(cont[0], asked.id, "the continuation's start", key);
		// pi runs the message's calls together: the denied one may end before the approved one.
		const outputs = cont.filter((c) => /^tool-output-/.test(c.type));
		assert.deepEqual(
			outputs.map((c) => [c.type, c.toolCallId]).sort(),
			[
				["tool-output-available", parts[0].toolCallId],
				["tool-output-denied", parts[1].toolCallId],
			].sort(),
			dump(cont),
		);
		const answer = `bash said: ${a.output}\nbash failed: ${DENIED_BY_USER(reason)}`;
		const final = chat.messages[1];
		assert.equal(chat.messages.length, 2);
		assert.equal(final.id, asked.id);
		assert.deepEqual(toolParts(final).map((p) => p.state), ["output-available", "output-denied"]);
		assert.equal(textOf(final), answer);
		assert.equal(existsSync(a.path), true, "the approved command ran");
		assert.equal(existsSync(b.path), false, "the denied command did not run");
		assert.deepEqual(await pendingApprovals(gw.port, key), []);
	});

	// One assistant message with a held bash call and a read call the policy allows. pi prepares
	// every call of the message before it runs any, so at the pause the read has not run: its part
	// is `input-available`, and it runs (with the bash call) only after the decision.
	const MIXED_READ = `@read ${HELLO_FILE}`;
	const READ_LINE = `read said: ${HELLO_CONTENT}`;

	/**
	 * Sends `/bash <m.command> ;; @read hello.txt` with `chat`; checks the pause: one bash part
	 * `approval-requested`, one read part `input-available` (no approval), the first stream valid
	 * and paused, one approval pending on the gateway, nothing ran. Returns what the rest needs.
	 */
	async function askMixed(sdk, chat, key, m) {
		await within(chat.sendMessage({ text: `/bash ${m.command} ;; ${MIXED_READ}` }), STREAM_MS, "the first request");
		assert.equal(chat.status, "ready", `status after the paused stream: ${chat.status} ${chat.error?.message}`);
		assert.deepEqual(chat.reportedErrors.map((e) => e.message), []);
		assert.equal(chat.fetch.responses.length, 1, "one request so far");
		const asked = chat.messages[1];
		assert.equal(asked?.role, "assistant");
		const parts = toolParts(asked);
		assert.deepEqual(
			parts.map((p) => [toolNameOf(p), p.state, p.input]),
			[
				["bash", "approval-requested", { command: m.command }],
				["read", "input-available", { path: HELLO_FILE }],
			],
			JSON.stringify(asked.parts),
		);
		const [bash, read] = parts;
		assert.equal(typeof bash.approval?.id, "string", JSON.stringify(bash));
		assert.equal(read.approval, undefined, `the allowed read is not asked: ${JSON.stringify(read)}`);

		const first = await streamOf(sdk, chat, 0, "the first stream");
		const runId = chat.fetch.responses[0].headers.get("x-run-id");
		assert.match(String(runId), UUID_V7);
		assert.equal(asked.id, runId);
		assert.deepEqual(
			first.filter((c) => c.type === "tool-input-available").map((c) => [c.toolName, c.toolCallId]),
			[
				["bash", bash.toolCallId],
				["read", read.toolCallId],
			],
			dump(first),
		);
		assert.deepEqual(first.filter((c) => c.type === "tool-approval-request"), [{ type: "tool-approval-request", approvalId: bash.approval.id, toolCallId: bash.toolCallId }], dump(first));
		assert.deepEqual(types(first).slice(-3), ["tool-approval-request", "finish-step", "finish"], dump(first));
		assert.equal(first.at(-1).finishReason, "tool-calls");
		assert.equal(first.filter((c) => /^tool-output-/.test(c.type)).length, 0, `no call ran before the decision: ${dump(first)}`);

		const pending = await pendingApprovals(gw.port, key);
		assert.equal(pending.length, 1, JSON.stringify(pending));
		assertPending(pending[0], { approvalId: bash.approval.id, toolCallId: bash.toolCallId, command: m.command, key });
		assert.equal((await getRun(gw.port, key, runId)).status, "running");
		assert.equal(existsSync(m.path), false, "the bash command did not run before the decision");
		return { asked, bash, read, first, runId };
	}

	/** After the continuation: the request sent, its stream, the final message (both outputs), the run's end. */
	async function assertMixedContinued(sdk, chat, key, m, { bash, read, first, runId }) {
		const sentParts = toolParts(chat.fetch.responses[1].requestBody.messages.at(-1));
		assert.deepEqual(
			sentParts.map((p) => [toolNameOf(p), p.state, p.approval?.id, p.approval?.approved]),
			[
				["bash", "approval-responded", bash.approval.id, true],
				["read", "input-available", undefined, undefined],
			],
			"the continuation carries the decision; the read is still a call to run",
		);
		const cont = await streamOf(sdk, chat, 1, "the continuation", { before: first });
		assertStartChunk(cont[0], runId, "the continuation's start", key);
		assert.equal(cont[1].type, "start-step");
		// pi runs the message's calls together: either output may come first.
		const outputs = cont.filter((c) => /^tool-output-/.test(c.type));
		assert.deepEqual(
			outputs.map((c) => [c.type, c.toolCallId]).sort(),
			[
				["tool-output-available", bash.toolCallId],
				["tool-output-available", read.toolCallId],
			].sort(),
			dump(cont),
		);
		assert.equal(cont.at(-1).type, "finish");
		assert.equal(cont.at(-1).finishReason, "stop");
		const answer = `bash said: ${m.output}\n${READ_LINE}`;
		assert.equal(chunkText(cont), answer, dump(cont));

		assert.equal(chat.messages.length, 2, JSON.stringify(chat.messages.map((x) => x.id)));
		const final = chat.messages[1];
		assert.equal(final.id, runId, "the same message goes on");
		const done = toolParts(final);
		assert.deepEqual(
			done.map((p) => [toolNameOf(p), p.toolCallId, p.state]),
			[
				["bash", bash.toolCallId, "output-available"],
				["read", read.toolCallId, "output-available"],
			],
			JSON.stringify(final.parts),
		);
		assert.equal(done[0].approval?.approved, true);
		assert.ok(JSON.stringify(done[0].output).includes(m.output), JSON.stringify(done[0].output));
		assert.ok(JSON.stringify(done[1].output).includes(HELLO_CONTENT), JSON.stringify(done[1].output));
		const lines = textOf(final).split("\n");
		assert.ok(lines.includes(`bash said: ${m.output}`), textOf(final));
		assert.ok(lines.includes(READ_LINE), textOf(final));
		assert.equal(existsSync(m.path), true, "the approved command ran");
		assert.deepEqual(await pendingApprovals(gw.port, key), []);
		const { record } = await pollRunEnded(gw.port, key, runId);
		assert.equal(record.status, "succeeded");
		assert.equal(record.result.response, answer);
		const resolved = (await readLog(gw.port, key)).frames.map((f) => f.data).filter((e) => e.type === "approval_resolved");
		assert.deepEqual(
			resolved.map((e) => [e.approvalId, e.approved, e.by]),
			[[bash.approval.id, true, "client"]],
		);
	}

	it("decisionsComplete (examples/chat-ui/src/gateway.js): a decision and no question left in the last step; input-available calls do not hold it back", () => {
		const assistant = (...parts) => ({ messages: [{ id: "u", role: "user", parts: [] }, { id: "a", role: "assistant", parts }] });
		const tool = (state, extra = {}) => ({ type: "dynamic-tool", toolName: "bash", toolCallId: `t-${state}`, input: {}, state, ...extra });
		const responded = tool("approval-responded", { approval: { id: "x", approved: true } });
		const requested = tool("approval-requested", { approval: { id: "y" } });
		const read = { type: "tool-read", toolCallId: "r", input: {}, state: "input-available" };
		assert.equal(decisionsComplete(assistant({ type: "step-start" }, responded, read)), true, "mixed: held + allowed");
		assert.equal(decisionsComplete(assistant({ type: "step-start" }, responded)), true);
		assert.equal(decisionsComplete(assistant({ type: "step-start" }, responded, requested)), false, "a question left");
		assert.equal(decisionsComplete(assistant({ type: "step-start" }, requested, read)), false);
		assert.equal(decisionsComplete(assistant({ type: "step-start" }, read)), false, "no decision");
		assert.equal(decisionsComplete(assistant({ type: "step-start" }, tool("output-available"), { type: "text", text: "done" })), false, "an ended answer");
		assert.equal(decisionsComplete(assistant(responded, { type: "step-start" }, read)), false, "only the last step counts");
		assert.equal(decisionsComplete({ messages: [{ id: "u", role: "user", parts: [] }] }), false);
		assert.equal(decisionsComplete({ messages: [] }), false);
		// The SDK's own predicate refuses the mixed case (that is why the example has its own).
		for (const sdk of [AI7, AI6]) {
			assert.equal(sdk.ai.lastAssistantMessageIsCompleteWithApprovalResponses(assistant({ type: "step-start" }, responded, read)), false, sdk.label);
			assert.equal(sdk.ai.lastAssistantMessageIsCompleteWithApprovalResponses(assistant({ type: "step-start" }, responded)), true, sdk.label);
		}
	});

	for (const sdk of [AI7, AI6]) {
		it(`${sdk.label}: one message with a held bash call and an allowed read: with decisionsComplete the Chat sends the decision by itself, and the same message ends with both outputs`, async () => {
			const key = freshKey(`${sdk.major}-mixed`);
			const m = marker(dir, `mixed-${sdk.major}`);
			const chat = createChat(sdk, { id: `c-${key}`, api: api(key), sendWhen: decisionsComplete });
			const asked = await askMixed(sdk, chat, key, m);
			assert.equal(decisionsComplete({ messages: chat.messages }), false, "nothing to send before the decision");

			await chat.addToolApprovalResponse({ id: asked.bash.approval.id, approved: true });
			await chatSettled(chat, 2, "the continuation");
			await assertMixedContinued(sdk, chat, key, m, asked);
		});

		it(`${sdk.label}: the same with the SDK's lastAssistantMessageIsCompleteWithApprovalResponses: nothing goes out by itself (the read part is input-available); sendMessage() sends the decision`, async () => {
			const key = freshKey(`${sdk.major}-mixed-sdk`);
			const m = marker(dir, `mixed-sdk-${sdk.major}`);
			const chat = createChat(sdk, { id: `c-${key}`, api: api(key) });
			const asked = await askMixed(sdk, chat, key, m);

			await chat.addToolApprovalResponse({ id: asked.bash.approval.id, approved: true });
			await sleep(1000);
			assert.equal(chat.fetch.responses.length, 1, "the SDK's predicate does not send: the allowed read has no output yet");
			assert.equal(chat.status, "ready");
			assert.deepEqual(toolParts(chat.messages[1]).map((p) => p.state), ["approval-responded", "input-available"]);
			assert.equal(sdk.ai.lastAssistantMessageIsCompleteWithApprovalResponses({ messages: chat.messages }), false);
			assert.equal(decisionsComplete({ messages: chat.messages }), true, "the example's predicate would send now");
			assert.equal((await pendingApprovals(gw.port, key)).length, 1, "the gateway still waits for the decision");
			assert.equal(existsSync(m.path), false);

			// Sent by hand: sendMessage() with no message sends the answered assistant message.
			await within(chat.sendMessage(), STREAM_MS, "the manual continuation");
			await chatSettled(chat, 2, "the manual continuation");
			await assertMixedContinued(sdk, chat, key, m, asked);
		});
	}

	it(`${AI7.label}: text before the pause and after it: part ids stay unique within the message, and the Chat holds both texts`, async () => {
		const key = freshKey("talk");
		const m = marker(dir, "talk");
		const chat = createChat(AI7, { id: `c-${key}`, api: api(key) });
		await within(chat.sendMessage({ text: `${TALK_BASH}${m.command}` }), STREAM_MS, "the first request");
		assert.equal(chat.status, "ready", chat.error?.message);
		const first = await streamOf(AI7, chat, 0, "the first stream");
		assert.equal(chunkText(first), "Running it now.");
		const [part] = toolParts(chat.messages[1]);
		assert.equal(part?.state, "approval-requested", JSON.stringify(chat.messages[1].parts));

		await chat.addToolApprovalResponse({ id: part.approval.id, approved: true });
		await chatSettled(chat, 2, "the continuation");
		// wellFormed with the first stream: a text id of the first stream is not used again.
		const cont = await streamOf(AI7, chat, 1, "the continuation", { before: first });
		assert.equal(chunkText(cont), `Done: ${m.output}`);
		const final = chat.messages[1];
		assert.equal(chat.messages.length, 2);
		assert.deepEqual(
			final.parts.filter((p) => p.type === "text").map((p) => p.text),
			["Running it now.", `Done: ${m.output}`],
		);
		assert.equal(toolParts(final)[0].state, "output-available");
		assert.equal(existsSync(m.path), true);
	});

	describe("over plain HTTP", () => {
		it("the paused stream, the resume route while paused, the continuation body, and 204 once the run has ended", async () => {
			const key = freshKey("raw");
			const chatId = `c-${key}`;
			const m = marker(dir, "raw");
			const user = userMessage("u-raw-1", `/bash ${m.command}`);
			const firstAnswer = await postChat(gw.base, key, { id: chatId, messages: [user], trigger: "submit-message" }, "the first POST");
			const first = await v6v7Chunks(firstAnswer, "the first POST");
			const runId = firstAnswer.headers.get("x-run-id");
			assert.match(String(runId), UUID_V7);
			assertStartChunk(first[0], runId, "the first start", key);
			assert.deepEqual(types(first).slice(-4), ["tool-input-available", "tool-approval-request", "finish-step", "finish"], dump(first));
			const input = first.at(-4);
			assert.equal(input.toolName, "bash");
			assert.deepEqual(input.input, { command: m.command });
			const asking = first.at(-3);
			assert.deepEqual(Object.keys(asking).sort(), ["approvalId", "toolCallId", "type"], JSON.stringify(asking));
			assert.equal(asking.toolCallId, input.toolCallId);
			const finish = first.at(-1);
			assert.equal(finish.finishReason, "tool-calls");
			for (const k of Object.keys(finish)) assert.ok(["type", "finishReason", "messageMetadata"].includes(k), JSON.stringify(finish));
			assert.ok(firstAnswer.text.endsWith("data: [DONE]\n\n"), "the paused stream ends with [DONE]");

			const pending = await pendingApprovals(gw.port, key);
			assert.equal(pending.length, 1);
			assertPending(pending[0], { approvalId: asking.approvalId, toolCallId: asking.toolCallId, command: m.command, key });
			assert.equal((await getRun(gw.port, key, runId)).status, "running");

			// Resume while the run waits: the message so far, ending at the pause the same way.
			const resumed = await fetch(`${gw.base}/sessions/${enc(key)}/chat/${enc(chatId)}/stream`, { signal: AbortSignal.timeout(STREAM_MS) });
			assert.equal(resumed.status, 200, "a paused run can be resumed");
			const resumedText = await within(resumed.text(), STREAM_MS, "the resume to end at the pause");
			const again = await v6v7Chunks({ status: resumed.status, headers: resumed.headers, text: resumedText }, "the resume while paused");
			assert.deepEqual(again, first, "the resume carries the POST's chunks up to the pause");
			assert.equal(existsSync(m.path), false);

			// The continuation, as addToolApprovalResponse + sendAutomaticallyWhen send it.
			const assistant = approvedBashMessage(runId, asking, m.command);
			const contAnswer = await postChat(
				gw.base,
				key,
				{ id: chatId, messages: [user, assistant], trigger: "submit-message", messageId: runId },
				"the continuation POST",
			);
			const cont = await v6v7Chunks(contAnswer, "the continuation POST", { before: first });
			assertStartChunk(cont[0], runId, "the continuation's start", key);
			assert.equal(cont[1].type, "start-step");
			assert.equal(cont[2].type, "tool-output-available", dump(cont));
			assert.equal(cont[2].toolCallId, asking.toolCallId);
			assert.ok(JSON.stringify(cont[2].output).includes(m.output), JSON.stringify(cont[2]));
			assert.equal(cont.at(-1).type, "finish");
			assert.equal(cont.at(-1).finishReason, "stop");
			assert.equal(chunkText(cont), `bash said: ${m.output}`);
			assert.equal(existsSync(m.path), true);

			const { record } = await pollRunEnded(gw.port, key, runId);
			assert.equal(record.status, "succeeded");
			assert.deepEqual(await pendingApprovals(gw.port, key), []);
			const after = await request(gw.port, "GET", `/sessions/${enc(key)}/chat/${enc(chatId)}/stream`);
			assert.equal(after.status, 204, `no active run to resume: ${after.status} ${after.text.slice(0, 300)}`);
			assert.equal(after.text, "");
		});

		it("a continuation naming no approval the gateway knows and no run it keeps: 404 Run not found", async () => {
			const key = freshKey("unknown");
			const unknownRun = "01900000-0000-7000-8000-0000000000aa";
			const body = {
				id: `c-${key}`,
				trigger: "submit-message",
				messageId: unknownRun,
				messages: [
					userMessage("u-unknown", "/bash echo never"),
					{
						id: unknownRun,
						role: "assistant",
						parts: [
							{ type: "step-start" },
							{
								type: "dynamic-tool",
								toolName: "bash",
								toolCallId: "call-unknown",
								state: "approval-responded",
								input: { command: "echo never" },
								approval: { id: "01900000-0000-7000-8000-0000000000bb", approved: true },
							},
						],
					},
				],
			};
			const answer = await postChat(gw.base, key, body, "the unknown continuation");
			assert.equal(answer.status, 404, answer.text);
			const json = JSON.parse(answer.text);
			assert.deepEqual(Object.keys(json), ["error"]);
			assert.match(json.error, /^Run not found: /);
			assert.equal(gw.sessions.get(key)?.messages.length ?? 0, 0, "nothing ran");
		});
	});
});

describe("a continuation after the approval timed out (protocol 6, approval.timeoutMs 1000)", { timeout: 60_000 }, () => {
	/** @type {Awaited<ReturnType<typeof startChatGateway>>} */
	let gw;
	let dir;

	before(async () => {
		dir = await mkdtemp(join(tmpdir(), "pi-gateway-approvals-timeout-"));
		gw = await startChatGateway({ config: { approval: { ...POLICY, timeoutMs: 1000 } } });
	});
	after(async () => {
		await gw?.close();
		await removeDir(dir);
	});

	it("shows tool-output-denied and the run's end, with no error", async () => {
		const key = "approve-timeout";
		const chatId = "c-timeout";
		const m = marker(dir, "timeout");
		const user = userMessage("u-timeout", `/bash ${m.command}`);
		const firstAnswer = await postChat(gw.base, key, { id: chatId, messages: [user], trigger: "submit-message" }, "the first POST");
		const first = await v6v7Chunks(firstAnswer, "the first POST");
		const runId = firstAnswer.headers.get("x-run-id");
		assert.match(String(runId), UUID_V7);
		const asking = first.at(-3);
		assert.equal(asking.type, "tool-approval-request", dump(first));

		// No decision: the timeout denies, the run goes on and ends.
		const { record } = await pollRunEnded(gw.port, key, runId, { timeoutMs: 15_000 });
		assert.equal(record.status, "succeeded");
		assert.match(record.result.response, /^bash failed: Denied: no decision within \S+ s$/);
		assert.deepEqual(await pendingApprovals(gw.port, key), []);
		const resolved = (await readLog(gw.port, key)).frames.map((f) => f.data).filter((e) => e.type === "approval_resolved");
		assert.equal(resolved.length, 1, JSON.stringify(resolved));
		assert.equal(resolved[0].approvalId, asking.approvalId);
		assert.equal(resolved[0].approved, false);
		assert.equal(resolved[0].by, "timeout");

		// The Chat's late approval: not an error, the continuation shows what happened.
		const assistant = approvedBashMessage(runId, asking, m.command);
		const contAnswer = await postChat(
			gw.base,
			key,
			{ id: chatId, messages: [user, assistant], trigger: "submit-message", messageId: runId },
			"the late continuation",
		);
		const cont = await v6v7Chunks(contAnswer, "the late continuation", { before: first });
		assertStartChunk(cont[0], runId, "the continuation's start", key);
		assert.equal(cont[1].type, "start-step");
		assert.deepEqual(
			cont.filter((c) => /^tool-output-/.test(c.type)),
			[{ type: "tool-output-denied", toolCallId: asking.toolCallId }],
			dump(cont),
		);
		assert.equal(cont.filter((c) => c.type === "error").length, 0, dump(cont));
		assert.equal(cont.at(-1).type, "finish");
		assert.equal(cont.at(-1).finishReason, "stop");
		assert.equal(chunkText(cont), record.result.response);
		assert.equal(existsSync(m.path), false, "the timed-out command never ran");
	});
});

describe("tool approvals with protocol 5 (chat.protocol 5) and the ai@5 Chat", { timeout: 120_000 }, () => {
	/** @type {Awaited<ReturnType<typeof startChatGateway>>} */
	let gw;
	let dir;
	let counter = 0;

	before(async () => {
		dir = await mkdtemp(join(tmpdir(), "pi-gateway-approvals-v5-"));
		gw = await startChatGateway({ config: { approval: POLICY, chat: { protocol: 5 } } });
	});
	after(async () => {
		await gw?.close();
		await removeDir(dir);
	});

	/**
	 * An ai@5 Chat sends `/bash <a marker command>` to a fresh key; resolves once its assistant
	 * message holds a pending data-approval-request part, after checking the part's contract
	 * fields, that the stream is still open, that nothing ran and that the REST list holds it.
	 */
	async function askV5(name) {
		const key = `approve-v5-${name}-${++counter}`;
		const m = marker(dir, `v5-${name}`);
		const chat = createChat(AI5, { id: `c-${key}`, api: `${gw.base}/sessions/${enc(key)}/chat`, approvals: false });
		const sending = chat.sendMessage({ text: `/bash ${m.command}` });
		sending.catch(() => {});
		const dataPart = () => chat.messages[1]?.parts.find((p) => p.type === "data-approval-request");
		await waitFor(() => dataPart()?.data?.status === "pending", "a pending data-approval-request part in the Chat", STREAM_MS);
		const pendingPart = structuredClone(dataPart());
		const [tool] = toolParts(chat.messages[1]);
		assert.ok(tool, JSON.stringify(chat.messages[1].parts));
		assert.equal(tool.state, "input-available", JSON.stringify(tool));
		const approvalId = pendingPart.id;
		assert.equal(typeof approvalId, "string");
		const pendingData = { approvalId, toolCallId: tool.toolCallId, toolName: "bash", args: { command: m.command }, status: "pending" };
		for (const [k, v] of Object.entries(pendingData)) assert.deepEqual(pendingPart.data[k], v, `data.${k} of ${JSON.stringify(pendingPart)}`);

		// The stream stays open while the call waits; nothing ran.
		assert.equal(chat.status, "streaming");
		assert.equal(chat.fetch.responses.length, 1);
		assert.ok(!chat.fetch.responses[0].text.includes("[DONE]"), "the stream is still open");
		assert.equal(existsSync(m.path), false);
		const pending = await pendingApprovals(gw.port, key);
		assert.equal(pending.length, 1);
		assertPending(pending[0], { approvalId, toolCallId: tool.toolCallId, command: m.command, key });
		return { key, m, chat, sending, pendingPart, pendingData, tool, approvalId };
	}

	/** POST /sessions/:key/approvals/:approvalId with `decision`; checks the 200 answer. */
	async function decide(key, approvalId, decision) {
		const res = await request(gw.port, "POST", `/sessions/${enc(key)}/approvals/${enc(approvalId)}`, { body: decision });
		assert.equal(res.status, 200, res.text);
		assert.deepEqual(res.json, { ok: true, approvalId, ...decision, by: "client" });
	}

	for (const approved of [true, false]) {
		const verdict = approved ? "approved" : "denied";
		it(`the stream stays open with a pending data-approval-request part; ${verdict} through POST /sessions/:key/approvals/:approvalId, the same part updates and the ${approved ? "output" : "denial"} arrives in the same stream`, async () => {
			const { key, m, chat, sending, pendingPart, tool, approvalId } = await askV5(verdict);
			const reason = approved ? undefined : "no shell today";
			await decide(key, approvalId, approved ? { approved: true } : { approved: false, reason });

			await within(sending, STREAM_MS, "the same stream to end after the decision");
			assert.equal(chat.status, "ready", chat.error?.message);
			assert.deepEqual(chat.reportedErrors.map((e) => e.message), []);
			assert.equal(chat.fetch.responses.length, 1, "one request: no continuation with protocol 5");

			const chunks = await streamOf(AI5, chat, 0, "the protocol 5 stream");
			assert.equal(chunks.filter((c) => c.type === "tool-approval-request").length, 0, dump(chunks));
			const dataChunks = chunks.filter((c) => c.type === "data-approval-request");
			// The decided part: the pending one's fields, its status, `by` and the reason given.
			const resolvedData = approved
				? { ...pendingPart.data, status: "approved", by: "client" }
				: { ...pendingPart.data, status: "denied", by: "client", reason };
			assert.deepEqual(
				dataChunks,
				[
					{ type: "data-approval-request", id: approvalId, data: pendingPart.data },
					{ type: "data-approval-request", id: approvalId, data: resolvedData },
				],
				dump(chunks),
			);
			const at = (c) => chunks.indexOf(c);
			const output = chunks.find((c) => /^tool-output-/.test(c.type));
			assert.ok(at(chunks.find((c) => c.type === "tool-input-available")) < at(dataChunks[0]), dump(chunks));
			assert.ok(at(dataChunks[1]) < at(output), `the decision before the tool's output: ${dump(chunks)}`);
			assert.equal(chunks.at(-1).type, "finish");
			assert.equal(chunks.at(-1).finishReason, "stop");

			const message = chat.messages[1];
			const dataParts = message.parts.filter((p) => p.type === "data-approval-request");
			assert.deepEqual(dataParts, [{ type: "data-approval-request", id: approvalId, data: resolvedData }], "one part, updated in place");
			const [done] = toolParts(message);
			const answer = approved ? `bash said: ${m.output}` : `bash failed: ${DENIED_BY_USER(reason)}`;
			if (approved) {
				assert.equal(output.type, "tool-output-available", dump(chunks));
				assert.equal(done.state, "output-available", JSON.stringify(done));
				assert.ok(JSON.stringify(done.output).includes(m.output), JSON.stringify(done.output));
			} else {
				assert.equal(output.type, "tool-output-error", dump(chunks));
				assert.equal(output.toolCallId, tool.toolCallId);
				assert.equal(output.errorText, DENIED_BY_USER(reason), dump(chunks));
				assert.equal(done.state, "output-error", JSON.stringify(done));
			}
			assert.equal(textOf(message), answer);
			assert.equal(existsSync(m.path), approved);
			assert.deepEqual(await pendingApprovals(gw.port, key), []);
		});
	}

	it("the data-approval-request part holds exactly the contract's fields, pending and decided; a second decision is 409 with the first one", async () => {
		const { key, chat, sending, pendingPart, pendingData, approvalId } = await askV5("shape");
		// `expiresAt` is when the timeout denies it: the same instant the REST listing gives.
		const [listed] = await pendingApprovals(gw.port, key);
		assert.equal(listed?.approvalId, approvalId);
		const shape = { ...pendingData, expiresAt: listed.expiresAt };
		assert.deepEqual(pendingPart, { type: "data-approval-request", id: approvalId, data: shape }, "the pending part");
		const reason = "checking the shape";
		await decide(key, approvalId, { approved: false, reason });
		await within(sending, STREAM_MS, "the stream to end after the decision");
		const decided = chat.messages[1].parts.find((p) => p.type === "data-approval-request");
		assert.deepEqual(decided, { type: "data-approval-request", id: approvalId, data: { ...shape, status: "denied", by: "client", reason } }, "the decided part");

		const twice = await request(gw.port, "POST", `/sessions/${enc(key)}/approvals/${enc(approvalId)}`, { body: { approved: true } });
		assert.equal(twice.status, 409, twice.text);
		assert.deepEqual(twice.json, { error: `Approval already decided: ${approvalId}`, approved: false, by: "client", reason });
	});
});
