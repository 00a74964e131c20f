// What every UI message stream of the gateway is checked against, shared by the chat tests: the
// `ai` majors under test (`SDKS`), the structure of one message's stream (`wellFormed`), and each
// version's own chunk schema, with no field it does not declare (`validateChunks`).

import assert from "node:assert/strict";
import * as ai7 from "ai";
import * as ai6 from "ai-v6";
import * as ai5 from "ai-v5";

/** The `ai` majors the chat tests run: ai@7, ai@6, ai@5. */
export const SDKS = [
	{ label: "ai@7", pkg: "ai", major: 7, ai: ai7 },
	{ label: "ai@6", pkg: "ai-v6", major: 6, ai: ai6 },
	{ label: "ai@5", pkg: "ai-v5", major: 5, ai: ai5 },
];

/**
 * The structure every UI message stream of one message must have:
 * `start` first (once), exactly one terminal chunk (`finish` | `abort` | `error`) last, steps
 * balanced, every text/reasoning part started once (ids unique within the message), its deltas
 * inside start…end and ended before its step ends; a tool call's input before its output, and one
 * output per call (`tool-output-available`, `tool-output-error` or `tool-output-denied`).
 *
 * Tool approvals (SPEC §13, protocol ≥ 6): a `tool-approval-request` follows that tool call's
 * `tool-input-available`, once per call; a `tool-output-denied` answers a call that was asked.
 * A stream that pauses for approvals (a request left without an output in it) ends
 * `…tool-approval-request(s), finish-step, finish` with `finishReason: "tool-calls"` (and only
 * such a stream finishes with "tool-calls").
 *
 * `before`: the chunks of the earlier streams of the same message (a continuation after a
 * pause): this stream then starts `start` (the same messageId) and `start-step`; part ids stay
 * unique across them, and its tool outputs may answer the calls streamed there.
 */
export function wellFormed(chunks, what = "the stream", { before = [] } = {}) {
	const dump = () => `${what}:\n${chunks.map((c) => JSON.stringify(c)).join("\n")}`;
	assert.equal(chunks[0]?.type, "start", `start comes first: ${dump()}`);
	assert.equal(typeof chunks[0].messageId, "string", `start has a messageId: ${dump()}`);
	assert.ok(chunks[0].messageId.length > 0, `start has a messageId: ${dump()}`);
	const terminal = chunks.filter((c) => ["finish", "abort", "error"].includes(c.type));
	assert.equal(terminal.length, 1, `exactly one finish/abort/error chunk: ${dump()}`);
	assert.equal(chunks.at(-1), terminal[0], `finish/abort/error comes last: ${dump()}`);
	assert.equal(chunks.filter((c) => c.type === "start").length, 1, `one start chunk: ${dump()}`);
	const seenIds = new Set();
	const toolInputs = new Set();
	const toolOutputs = new Set();
	const approvals = new Set();
	if (before.length > 0) {
		assert.equal(chunks[0].messageId, before[0]?.messageId, `a continuation starts with the message's own messageId: ${dump()}`);
		assert.equal(chunks[1]?.type, "start-step", `a continuation starts with start, then start-step: ${dump()}`);
		for (const chunk of before) {
			if (/^(text|reasoning)-start$/.test(chunk.type)) seenIds.add(chunk.id);
			else if (chunk.type === "tool-input-available") toolInputs.add(chunk.toolCallId);
			else if (chunk.type === "tool-approval-request") approvals.add(chunk.toolCallId);
			else if (/^tool-output-(available|error|denied)$/.test(chunk.type)) toolOutputs.add(chunk.toolCallId);
		}
	}
	let stepOpen = false;
	const open = new Map();
	/** Index of each approval request of this stream whose call has no output (yet) in it. */
	const pending = new Map();
	for (const [index, chunk] of chunks.slice(1, -1).entries()) {
		const kind = chunk.type.startsWith("text-") ? "text" : chunk.type.startsWith("reasoning-") ? "reasoning" : null;
		if (chunk.type === "start-step") {
			assert.ok(!stepOpen, `start-step inside an open step: ${dump()}`);
			stepOpen = true;
		} else if (chunk.type === "finish-step") {
			assert.ok(stepOpen, `finish-step without start-step: ${dump()}`);
			assert.equal(open.size, 0, `finish-step while parts are open: ${[...open.keys()]} ${dump()}`);
			stepOpen = false;
		} else if (kind && chunk.type.endsWith("-start")) {
			assert.ok(!seenIds.has(chunk.id), `part id ${chunk.id} reused within one message: ${dump()}`);
			seenIds.add(chunk.id);
			open.set(chunk.id, kind);
		} else if (kind && chunk.type.endsWith("-delta")) {
			assert.equal(open.get(chunk.id), kind, `${chunk.type} for a part that is not open: ${chunk.id} ${dump()}`);
		} else if (kind && chunk.type.endsWith("-end")) {
			assert.equal(open.get(chunk.id), kind, `${chunk.type} for a part that is not open: ${chunk.id} ${dump()}`);
			open.delete(chunk.id);
		} else if (chunk.type === "tool-input-available") {
			toolInputs.add(chunk.toolCallId);
		} else if (chunk.type === "tool-approval-request") {
			assert.ok(toolInputs.has(chunk.toolCallId), `tool-approval-request before its call's tool-input-available: ${chunk.toolCallId} ${dump()}`);
			assert.ok(!approvals.has(chunk.toolCallId), `two tool-approval-requests for one tool call: ${chunk.toolCallId} ${dump()}`);
			assert.ok(!toolOutputs.has(chunk.toolCallId), `tool-approval-request after its call's output: ${chunk.toolCallId} ${dump()}`);
			approvals.add(chunk.toolCallId);
			pending.set(chunk.toolCallId, index + 1);
		} else if (chunk.type === "tool-output-available" || chunk.type === "tool-output-error" || chunk.type === "tool-output-denied") {
			assert.ok(toolInputs.has(chunk.toolCallId), `tool output before its input: ${chunk.toolCallId} ${dump()}`);
			assert.ok(!toolOutputs.has(chunk.toolCallId), `two outputs for one tool call: ${chunk.toolCallId} ${dump()}`);
			if (chunk.type === "tool-output-denied") {
				assert.ok(approvals.has(chunk.toolCallId), `tool-output-denied for a call that was not asked: ${chunk.toolCallId} ${dump()}`);
			}
			toolOutputs.add(chunk.toolCallId);
			pending.delete(chunk.toolCallId);
		}
	}
	assert.equal(open.size, 0, `parts left open at the end: ${[...open.keys()]} ${dump()}`);
	const last = chunks.at(-1);
	if (pending.size > 0) {
		// Paused for approvals: after the first unanswered request only more requests, then the end of the step and of the stream.
		const first = Math.min(...pending.values());
		const tail = chunks.slice(first).map((c) => c.type);
		const requests = tail.slice(0, -2);
		assert.ok(
			requests.every((type) => type === "tool-approval-request") && tail.at(-2) === "finish-step" && tail.at(-1) === "finish",
			`a stream paused for approvals ends tool-approval-request(s), finish-step, finish: ${dump()}`,
		);
		assert.equal(last.finishReason, "tool-calls", `a stream paused for approvals finishes with finishReason "tool-calls": ${dump()}`);
	} else if (last.type === "finish") {
		assert.notEqual(last.finishReason, "tool-calls", `finishReason "tool-calls" with no approval pending: ${dump()}`);
	}
	assert.ok(!stepOpen, `a step left open at the end: ${dump()}`);
}

/**
 * Validates every chunk with this SDK version's own `uiMessageChunkSchema`, and checks (as
 * chat-ai-sdk.test.mjs) that no chunk carries a field the schema does not declare: the strict
 * schemas of early v5/v6/v7 reject unknown fields, the later loose ones would let them pass. A
 * `data-*` chunk's `data` is `unknown` to every schema, so the probe cannot tell it from an
 * undeclared field: those chunks must be exactly `{type, data}`, or `{type, id, data}` with a
 * string `id` (a part updated in place, SPEC §13) — the shapes of the contract.
 */
/**
 * Fields every `ai` major under test declares as `unknown` (so the probe below cannot tell them
 * from undeclared ones): `messageMetadata` of `start` and `finish` — `z.unknown().optional()` in
 * the `uiMessageChunkSchema` of ai 5, 6 and 7 alike.
 */
const UNKNOWN_TYPED = { start: ["messageMetadata"], finish: ["messageMetadata"] };

export async function validateChunks(sdk, chunks, what = "") {
	const schema = sdk.ai.uiMessageChunkSchema();
	const checkedShapes = new Set();
	for (const chunk of chunks) {
		const result = await schema.validate(chunk);
		assert.ok(
			result.success,
			`${what} ${sdk.label} uiMessageChunkSchema rejects ${JSON.stringify(chunk)}: ${result.success ? "" : result.error?.message}`,
		);
		if (chunk.type.startsWith("data-")) {
			// `id` (a string) when the part is updated in place, as data-approval-request (SPEC §13).
			const keys = Object.keys(chunk).sort();
			assert.ok(
				JSON.stringify(keys) === '["data","type"]' || (JSON.stringify(keys) === '["data","id","type"]' && typeof chunk.id === "string"),
				`${what} a data chunk is {type, data} or {type, id, data}: ${JSON.stringify(chunk)}`,
			);
			continue;
		}
		const shape = `${chunk.type}:${Object.keys(chunk).sort().join(",")}`;
		if (checkedShapes.has(shape)) continue;
		checkedShapes.add(shape);
		const undeclared = [];
		for (const key of Object.keys(chunk)) {
			if (key === "type" || UNKNOWN_TYPED[chunk.type]?.includes(key)) continue;
			const without = { ...chunk };
			delete without[key];
			if (!(await schema.validate(without)).success) continue; // required
			let declared = false;
			for (const probe of [12345, "probe", { probe: true }, [1], true]) {
				if (!(await schema.validate({ ...chunk, [key]: probe })).success) {
					declared = true;
					break;
				}
			}
			if (!declared) undeclared.push(key);
		}
		assert.deepEqual(undeclared, [], `${what} ${sdk.label}: fields its schema does not declare in ${JSON.stringify(chunk)}`);
	}
}
