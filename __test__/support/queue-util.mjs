// Helpers of the queue-mode tests (issue 13, SPEC §11: double texting):
// - `registerQueueModel()`: a faux model for real pi AgentSessions (startChatGateway's `script`)
//   whose answers depend on what is in its context — so a test can see where pi put a steering or
//   follow-up message — and whose first step of a held "task" waits for the test (a gate that an
//   abort also opens), so a second message can be sent while the run is surely in its first step;
//   every model call is recorded (the context's roles and texts);
// - `gatedDouble(key)` / `gatedFactory()`: a session double WITHOUT steer/followUp/clearQueue whose
//   runs of held texts wait for the test the same way;
// - small HTTP helpers for `/sessions/:key/queue` and `/messages` with a `mode`.

import assert from "node:assert/strict";
import { fauxAssistantMessage, fauxText, fauxToolCall, registerFauxProvider } from "@mariozechner/pi-ai";

import { FAUX_MODEL_ID, FAUX_PROVIDER, HELLO_FILE } from "../../lib/faux-agent.js";
import { request } from "./http.mjs";
import { waitFor } from "./wait.mjs";

/** The contract's 400 error for a bad `mode`. */
export const INVALID_MODE = "Invalid mode: expected one of queue, steer, followUp, interrupt, reject";
/**
 * True when `r` ({status, headers, json}) is the refusal of a bad mode: 400, `{error}` only, the
 * contract's text (the exact text is checked on its own, see queue-modes.test.mjs), no x-run-id.
 */
export function isModeRefusal(r) {
	return (
		r.status === 400 &&
		r.json !== null &&
		typeof r.json === "object" &&
		JSON.stringify(Object.keys(r.json)) === '["error"]' &&
		typeof r.json.error === "string" &&
		r.json.error.startsWith(INVALID_MODE) &&
		r.headers?.["x-run-id"] === undefined
	);
}

/** Every valid mode. */
export const MODES = ["queue", "steer", "followUp", "interrupt", "reject"];
/** Values of `mode` that must be refused (wrong case, empty, other types, near misses). */
export const BAD_MODES = ["Steer", "", 1, {}, [], "QUEUE", "followup", "follow_up", " queue", "queue ", true, 0, "interrupt\u0000", "reject!"];

/** A deferred promise. */
function deferred() {
	let resolve;
	const promise = new Promise((r) => (resolve = r));
	return { promise, resolve };
}

/** The text of a pi message (user/assistant text blocks, tool calls as `call:<name>`, tool results' text). */
export function messageText(message) {
	const content = message?.content;
	if (typeof content === "string") return content;
	if (!Array.isArray(content)) return "";
	return content
		.map((block) => {
			if (block?.type === "text") return block.text;
			if (block?.type === "toolCall") return `call:${block.name}`;
			return "";
		})
		.join("");
}

/**
 * What the queue model answers, decided by the context (never by call order):
 * - last user text `task …`, no tool result after it (the first step): a text streamed slowly,
 *   then a real `read` call of hello.txt (stopReason toolUse). A held text waits for the test here;
 * - `task …` with a tool result after it: `Plain answer to <task>: <file content>`;
 * - `steer …`: `Steered by <steer> after <role before it>: <last tool result's content>` — so the
 *   answer says whether the steering message came right after the tool result;
 * - `follow …`: `Follow-up answer to <follow> after <role before it>`;
 * - anything else: `You said: <text>`.
 */
function answerFor(context) {
	const messages = context.messages ?? [];
	const lastUser = messages.findLastIndex((m) => m.role === "user");
	const text = lastUser === -1 ? "" : messageText(messages[lastUser]);
	const before = lastUser > 0 ? messages[lastUser - 1] : undefined;
	const after = messages.slice(lastUser + 1);
	if (text.startsWith("task ")) {
		const result = after.findLast((m) => m.role === "toolResult");
		if (!result) {
			return {
				firstStep: true,
				message: fauxAssistantMessage([fauxText(`Working on ${text}, reading the file. `), fauxToolCall("read", { path: HELLO_FILE })], {
					stopReason: "toolUse",
				}),
			};
		}
		return { message: fauxAssistantMessage(`Plain answer to ${text}: ${messageText(result)}`) };
	}
	if (text.startsWith("steer ")) {
		const result = messages.slice(0, lastUser).findLast((m) => m.role === "toolResult");
		return {
			message: fauxAssistantMessage(`Steered by ${text} after ${before?.role ?? "nothing"}: ${result ? messageText(result) : "no file read"}`),
		};
	}
	if (text.startsWith("follow ")) {
		return { message: fauxAssistantMessage(`Follow-up answer to ${text} after ${before?.role ?? "nothing"}`) };
	}
	return { message: fauxAssistantMessage(`You said: ${text}`) };
}

/**
 * Registers the queue model (see {@link answerFor}) on the faux provider, streamed at
 * `tokensPerSecond` 4-character chunks a second. Returns:
 * - `script`: for `startChatGateway({ script })`;
 * - `calls`: every model call, in order: `{ lastUser, roles, texts, firstStep }` of its context;
 * - `callsFor(tag)`: the calls whose context holds a user text containing `tag`;
 * - `hold(text, {ignoreAbort})`: the first step of the task `text` waits until `release(text)`
 *   (or, unless `ignoreAbort`, an abort of that call); `entered(text)` resolves when that first
 *   step has been entered;
 * - `releaseAll()`: opens every gate (cleanup).
 */
export function registerQueueModel({ tokensPerSecond = 200 } = {}) {
	const registration = registerFauxProvider({
		provider: FAUX_PROVIDER,
		models: [{ id: FAUX_MODEL_ID, name: "Faux queue-mode script", reasoning: false }],
		tokenSize: { min: 1, max: 1 },
		tokensPerSecond,
	});
	const calls = [];
	/** text → gate */
	const gates = new Map();
	/** text → entered */
	const entries = new Map();
	const entry = (text) => {
		if (!entries.has(text)) entries.set(text, deferred());
		return entries.get(text);
	};
	const factory = async (context, streamOptions) => {
		if (registration.getPendingResponseCount() < 16) registration.appendResponses(new Array(64).fill(factory));
		const messages = context.messages ?? [];
		const { message, firstStep = false } = answerFor(context);
		const lastUser = messageText(messages.findLast((m) => m.role === "user"));
		calls.push({ lastUser, roles: messages.map((m) => m.role), texts: messages.map(messageText), firstStep });
		if (firstStep) {
			entry(lastUser).resolve();
			const gate = gates.get(lastUser);
			if (gate?.ignoreAbort) await gate.promise;
			else if (gate) {
				const signal = streamOptions?.signal;
				const aborted = new Promise((resolve) => {
					if (!signal) return;
					if (signal.aborted) resolve();
					else signal.addEventListener("abort", () => resolve(), { once: true });
				});
				await Promise.race([gate.promise, aborted]);
			}
		}
		return message;
	};
	registration.setResponses(new Array(64).fill(factory));
	return {
		registration,
		script: () => ({ registration }),
		calls,
		callsFor: (tag) => calls.filter((c) => c.texts.some((t, i) => c.roles[i] === "user" && t.includes(tag))),
		/** `ignoreAbort`: an abort does not open the gate (the run is "being aborted" until `release`). */
		hold(text, { ignoreAbort = false } = {}) {
			if (!gates.has(text)) gates.set(text, { ...deferred(), ignoreAbort });
		},
		release(text) {
			gates.get(text)?.resolve();
		},
		releaseAll() {
			for (const gate of gates.values()) gate.resolve();
		},
		entered: (text) => entry(text).promise,
	};
}

// ---------------------------------------------------------------- a double without steer/followUp

/**
 * A session double with pi's event sequence around one assistant message `echo:<text>`, and no
 * `steer`, `followUp` or `clearQueue`. A text given to `hold(text)` waits (after its user message)
 * until `release(text)` or an abort. `prompts` lists the texts in the order they ran.
 */
export function gatedDouble(key, gates) {
	const listeners = new Set();
	let current = null;
	const emit = (event) => {
		for (const l of [...listeners]) {
			try {
				l(event);
			} catch {
				// like pi
			}
		}
	};
	const session = {
		sessionKey: key,
		sessionId: `gated-${key}-${Math.random().toString(36).slice(2, 8)}`,
		messages: [],
		prompts: [],
		subscribe(listener) {
			listeners.add(listener);
			return () => listeners.delete(listener);
		},
		async prompt(text) {
			session.prompts.push(text);
			const controller = new AbortController();
			let finish;
			current = { controller, done: new Promise((r) => (finish = r)) };
			try {
				const user = { role: "user", content: [{ type: "text", text }], timestamp: Date.now() };
				emit({ type: "agent_start" });
				emit({ type: "turn_start" });
				emit({ type: "message_start", message: user });
				session.messages.push(user);
				emit({ type: "message_end", message: user });
				const gate = gates.get(text);
				if (gate) {
					await Promise.race([
						gate.promise,
						new Promise((r) => controller.signal.addEventListener("abort", () => r(), { once: true })),
					]);
				}
				const reply = `echo:${text}`;
				const msg = { role: "assistant", content: [{ type: "text", text: "" }], stopReason: "stop", timestamp: Date.now() };
				emit({ type: "message_start", message: msg });
				if (controller.signal.aborted) {
					msg.stopReason = "aborted";
					msg.errorMessage = "Request was aborted";
				} else {
					emit({ type: "message_update", assistantMessageEvent: { type: "text_start", contentIndex: 0, partial: msg }, message: msg });
					msg.content[0].text = reply;
					emit({ type: "message_update", assistantMessageEvent: { type: "text_delta", contentIndex: 0, delta: reply, partial: msg }, message: msg });
					emit({ type: "message_update", assistantMessageEvent: { type: "text_end", contentIndex: 0, content: reply, partial: msg }, message: msg });
				}
				session.messages.push(msg);
				emit({ type: "message_end", message: msg });
				emit({ type: "turn_end", message: msg, toolResults: [] });
				emit({ type: "agent_end", messages: [user, msg] });
			} finally {
				current = null;
				finish();
			}
		},
		abort() {
			const run = current;
			if (!run) return Promise.resolve();
			run.controller.abort();
			return run.done;
		},
		dispose() {
			current?.controller.abort();
			listeners.clear();
		},
	};
	return session;
}

/**
 * A createSession of {@link gatedDouble}s sharing one set of gates: `factory.hold(text)`,
 * `factory.release(text)`, `factory.releaseAll()`; `factory.sessions` maps key → double.
 */
export function gatedFactory() {
	const gates = new Map();
	const sessions = new Map();
	const factory = async (key) => {
		const s = gatedDouble(key, gates);
		sessions.set(key, s);
		return s;
	};
	factory.sessions = sessions;
	factory.hold = (text) => {
		if (!gates.has(text)) gates.set(text, deferred());
	};
	factory.release = (text) => gates.get(text)?.resolve();
	factory.releaseAll = () => {
		for (const g of gates.values()) g.resolve();
	};
	return factory;
}

// ---------------------------------------------------------------- HTTP

export const queuePath = (key) => `/sessions/${encodeURIComponent(key)}/queue`;

/** GET /sessions/:key/queue → the raw answer ({status, headers, json, text}). */
export const getQueueHttp = (port, key, options) => request(port, "GET", queuePath(key), options);

/** GET /sessions/:key/queue, asserting 200 and the four fields; returns the body. */
export async function readQueue(port, key) {
	const r = await getQueueHttp(port, key);
	assert.equal(r.status, 200, `GET ${queuePath(key)}: ${r.status} ${r.text}`);
	assert.deepEqual(Object.keys(r.json).sort(), ["followUp", "queued", "running", "steering"], `GET ${queuePath(key)}: ${r.text}`);
	return r.json;
}

/** Polls GET /sessions/:key/queue until `pred(body)` holds; returns that body. */
export function queueWhen(port, key, pred, what = "queue state", timeoutMs = 10_000) {
	let last;
	return waitFor(
		async () => {
			last = await readQueue(port, key);
			return pred(last) ? last : undefined;
		},
		`${what} on ${key}`,
		timeoutMs,
	).catch((error) => {
		throw new Error(`${error.message}; last GET queue: ${JSON.stringify(last)}`);
	});
}

/** POST /sessions/:key/messages with `{text, mode, ...extra}` (mode left out when undefined). */
export function postMode(port, key, text, mode, extra = {}, options = {}) {
	const body = { text, ...extra };
	if (mode !== undefined) body.mode = mode;
	return request(port, "POST", `/sessions/${encodeURIComponent(key)}/messages`, { body, timeoutMs: 30_000, ...options });
}
