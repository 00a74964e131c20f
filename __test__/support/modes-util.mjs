// Shared by the queue-mode tests (issue 13, SPEC §11: steer, followUp, interrupt, reject):
// - the `ai` majors under test and their own readers (`SDKS`, `validateChunks`, `uiStreamChunks`,
//   `wellFormed`, `createChat`, `recordingFetch`);
// - a faux model script whose answers are paced (`registerPacedScript`);
// - `startPiGateway`: startChatGateway's gateway (real pi AgentSessions on the faux model) with a
//   hook on every session it hands to the gateway (primary included), so a test can watch pi's
//   own events (what really reached the model) across resets;
// - `userTextOf`, `MODES`, `INVALID_MODE_ERROR`, `leaveEarly` (a client that disconnects).

import assert from "node:assert/strict";
import http from "node:http";
import { registerFauxProvider } from "@mariozechner/pi-ai";
import { FAUX_MODEL_ID, FAUX_PROVIDER } from "../../lib/faux-agent.js";
import { ChatState } from "./chat-fixture.mjs";
import { startChatGateway } from "./gateway.mjs";
import { parseSse } from "./sse.mjs";

export { SDKS, validateChunks, wellFormed } from "./ui-chunks.mjs";

/** The five modes of SPEC §11, and the start of the 400 answer to anything else (", got <the value as JSON>" follows). */
export const MODES = ["queue", "steer", "followUp", "interrupt", "reject"];
export const INVALID_MODE_ERROR = "Invalid mode: expected one of queue, steer, followUp, interrupt, reject";

// ---------------------------------------------------------------------------------------------
// UI message streams

/**
 * The raw body of a UI message stream → its chunks (parsed JSON). Asserts the framing: one
 * `data: <json>` line per frame (comments allowed), `[DONE]` exactly once and last, nothing left
 * after the last frame.
 */
export function uiStreamChunks(raw, what) {
	assert.equal(typeof raw, "string", `${what}: the body was read`);
	const { frames, rest } = parseSse(raw);
	assert.equal(rest.trim(), "", `${what}: the stream ended inside a frame: ${JSON.stringify(rest.slice(0, 200))}`);
	for (const f of frames) {
		assert.equal(f.other, undefined, `${what}: a line that is not data or a comment: ${JSON.stringify(f.other)}`);
		assert.equal(f.event, undefined, `${what}: an event: line`);
	}
	const data = frames.filter((f) => f.text !== undefined);
	for (const f of data) assert.ok(!f.text.includes("\n"), `${what}: one data line per frame: ${JSON.stringify(f.text)}`);
	const payloads = data.map((f) => f.text);
	assert.equal(payloads.at(-1), "[DONE]", `${what}: [DONE] comes last: ${JSON.stringify(payloads.slice(-3))}`);
	assert.equal(payloads.filter((d) => d === "[DONE]").length, 1, `${what}: [DONE] comes once`);
	return payloads.slice(0, -1).map((d) => JSON.parse(d));
}

/**
 * A fetch that records every response (url, method, request body, status, headers) and its raw
 * body text, read from a tee of the body as it arrives (`entry.text` grows; `entry.done`
 * resolves with the whole text, or null when the read failed), while the caller reads the other
 * branch.
 */
export function recordingFetch() {
	const responses = [];
	const recorder = async (url, init = {}) => {
		const res = await fetch(url, init);
		const entry = {
			url: String(url),
			method: init.method ?? "GET",
			requestBody: typeof init.body === "string" ? JSON.parse(init.body) : undefined,
			status: res.status,
			headers: res.headers,
			text: "",
		};
		responses.push(entry);
		if (!res.body) {
			entry.done = Promise.resolve("");
			return res;
		}
		const [mine, theirs] = res.body.tee();
		entry.done = (async () => {
			const decoder = new TextDecoder();
			try {
				for await (const bytes of mine) entry.text += decoder.decode(bytes, { stream: true });
				entry.text += decoder.decode();
				return entry.text;
			} catch {
				return null;
			}
		})();
		return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
	};
	recorder.responses = responses;
	return recorder;
}

/**
 * A real `AbstractChat` of this SDK version (what useChat wraps) with a plain in-memory state and
 * a `DefaultChatTransport` to `api` that records its responses (`chat.fetch.responses`). Errors
 * reported to `onError` are in `chat.reportedErrors`. `sendWhen`, when given, is its
 * `sendAutomaticallyWhen`.
 */
export function createChat(sdk, { id, api, headers, sendWhen }) {
	const errors = [];
	const fetch = recordingFetch();
	class NodeChat extends sdk.ai.AbstractChat {
		constructor() {
			super({
				id,
				state: new ChatState(),
				transport: new sdk.ai.DefaultChatTransport({ api, headers, fetch }),
				onError: (error) => errors.push(error),
				...(sendWhen ? { sendAutomaticallyWhen: sendWhen } : {}),
			});
		}
	}
	const chat = new NodeChat();
	chat.reportedErrors = errors;
	chat.fetch = fetch;
	return chat;
}

// ---------------------------------------------------------------------------------------------
// The faux model and the gateway in front of it

/**
 * Registers a faux model whose every answer is `answer(context)`, streamed in 4-character chunks
 * at `tokensPerSecond` chunks a second (unthrottled without it); its queue of responses refills
 * itself. Returns the registration (`getModel()`, `unregister()`).
 */
export function registerPacedScript({ name, tokensPerSecond, answer }) {
	const registration = registerFauxProvider({
		provider: FAUX_PROVIDER,
		models: [{ id: FAUX_MODEL_ID, name, reasoning: false }],
		tokenSize: { min: 1, max: 1 },
		tokensPerSecond,
	});
	const factory = (context) => {
		if (registration.getPendingResponseCount() < 16) registration.appendResponses(new Array(64).fill(factory));
		return answer(context);
	};
	registration.setResponses(new Array(64).fill(factory));
	return registration;
}

/** The text of a pi message's content (a string, or its text blocks joined). */
export function userTextOf(message) {
	const content = message?.content;
	if (typeof content === "string") return content;
	if (!Array.isArray(content)) return "";
	return content
		.filter((c) => c?.type === "text")
		.map((c) => c.text)
		.join("");
}

/**
 * As startChatGateway (gateway.mjs), for real pi AgentSessions on the faux model, with:
 * - `script`: `{ registration, when? }`; every session (the primary `primaryKey` too) uses its
 *   model for the calls where `when(context)` holds (all when absent); unregistered on close;
 * - `onSession(key, session)`: called with every session before the gateway gets it (the primary
 *   at start, then each one `createSession` makes, again after a reset);
 * - `config`: merged over the test gateway's minimal config (`session` field by field).
 * Returns `{ runtime, agent, port, base, sessions (key → latest AgentSession), logs, close() }`.
 */
export async function startPiGateway({ config = {}, faux = {}, script, onSession, primaryKey = "main" } = {}) {
	return startChatGateway({
		config,
		faux,
		script: script && (() => script),
		scriptPrimary: true,
		onSession,
		primarySessionKey: primaryKey,
	});
}

// ---------------------------------------------------------------------------------------------
// A client that leaves

/**
 * Sends one request (JSON `body`) on its own connection and destroys the connection `afterMs`
 * after the request was written, or `afterHeadersMs` after the response headers arrived (when
 * given), whichever the caller asked for; whatever arrived by then is returned:
 * `{status?, headers?, text, left: true}` — or the whole answer (`left: false`) when it ended first.
 */
export function leaveEarly(port, method, path, { body, headers = {}, afterMs, afterHeadersMs, timeoutMs = 20_000 } = {}) {
	return new Promise((resolve) => {
		const payload = body === undefined ? undefined : JSON.stringify(body);
		const all = { ...headers };
		if (payload !== undefined) all["content-type"] = "application/json";
		const out = { status: undefined, headers: undefined, text: "", left: false };
		let settled = false;
		const finish = () => {
			if (settled) return;
			settled = true;
			clearTimeout(guard);
			resolve(out);
		};
		const leave = () => {
			if (settled) return;
			out.left = true;
			req.destroy();
			finish();
		};
		const guard = setTimeout(leave, timeoutMs);
		const req = http.request({ host: "127.0.0.1", port, method, path, headers: all, agent: false }, (res) => {
			out.status = res.statusCode;
			out.headers = res.headers;
			res.setEncoding("utf8");
			res.on("data", (c) => (out.text += c));
			res.on("end", finish);
			res.on("error", finish);
			res.on("close", finish);
			if (afterHeadersMs !== undefined) setTimeout(leave, afterHeadersMs);
		});
		req.on("error", finish);
		if (payload !== undefined) req.write(payload);
		req.end(() => {
			if (afterMs !== undefined) setTimeout(leave, afterMs);
		});
	});
}
