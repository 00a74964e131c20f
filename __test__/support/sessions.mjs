// The session doubles of the tests (and of the benchmarks, which import this file):
// - createScriptedSession / createScriptedFactory: a scripted stand-in for pi's AgentSession,
//   for conformance tests and benchmarks (below);
// - createDouble / createDoubleFactory: small structural doubles with spies (reliability tests);
// - recordingSession / recordingFactory / allCalls: doubles that record every prompt call;
// - BigStreamSession: a session that streams big text deltas (http-big-session.mjs).
//
// The scripted session:
//
// It has the members the seed gateway and pi-gateway call: prompt(text, {images, source}),
// subscribe(listener) → unsubscribe, abort() → Promise, dispose(), sessionId, messages,
// sessionManager.getSessionDir(), newSession(). prompt() emits the same AgentSessionEvent
// sequence as pi 0.73 (pi-agent-core agent-loop.js):
//
//   agent_start, turn_start,
//   message_start(user), message_end(user)            user message pushed into `messages`
//   message_start(assistant)
//   message_update × n    assistantMessageEvent {type: "text_start"|"text_delta"|"text_end",
//                         contentIndex, delta?, content?, partial}; `partial` is the WHOLE partial
//                         assistant message (one mutable object, as pi-ai providers do) and
//                         `message` a shallow copy of it
//   message_end(assistant)                              pushed into `messages`, stopReason "stop"
//   turn_end {message, toolResults}, agent_end {messages}
//
// Scenarios (the session default, or per message when the text is one of the commands):
//   {kind:"instant", reply?}                 "/instant"             reply "ok" (or `reply`) at once
//   {kind:"stream", tokens, intervalMs?, batch?}
//                                            "/stream N [ms] [b]"   N text_delta tokens, `batch`
//                                            tokens per tick, a tick every intervalMs (0 or unset:
//                                            setImmediate between ticks)
//   {kind:"thinking", reply?}                "/thinking"            thinking_* at index 0, then text at 1
//   {kind:"tool", reply?}                    "/tool"                one bash tool call (toolcall_*,
//                                            tool_execution_*, toolResult message), then a text turn
//   {kind:"error", message?}                 "/error [msg]"         the model fails: prompt resolves,
//                                            last assistant message stopReason "error" + errorMessage
//   {kind:"throw", message?}                 "/throw [msg]"         prompt() rejects (no events)
//
// Stream delta format — each token's text carries its emit time, so a client in another
// process can compute emit-to-receipt latency:
//
//   t<index>@<epoch ms, 3 decimals>;        e.g. "t0@1732423456789.123;"
//
// where the time is performance.timeOrigin + performance.now() taken just before the event is
// emitted. Parse with /t(\d+)@(\d+\.\d{3});/g and compare against the client's own
// performance.timeOrigin + performance.now(). `parseStreamDelta` below does it.
//
// abort() stops a run mid-way: no text_end, the assistant message ends with stopReason "aborted"
// and errorMessage "Request was aborted", then turn_end and agent_end; prompt() resolves (as pi
// 0.73 does) and abort() resolves once the run is over.

import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";

export const EMPTY_USAGE = Object.freeze({
	input: 0,
	output: 0,
	cacheRead: 0,
	cacheWrite: 0,
	totalTokens: 0,
	cost: Object.freeze({ input: 0, output: 0, cacheRead: 0, cacheWrite: 0, total: 0 }),
});

/** Epoch milliseconds with sub-ms precision, comparable across processes on one machine. */
export function nowEpochMs() {
	return performance.timeOrigin + performance.now();
}

/** Parse the stream-scenario deltas in `text` → [{index, emittedAt}]. */
export function parseStreamDelta(text) {
	const out = [];
	for (const m of text.matchAll(/t(\d+)@(\d+\.\d{3});/g)) {
		out.push({ index: Number(m[1]), emittedAt: Number(m[2]) });
	}
	return out;
}

// One temp root per process for getSessionDir(), removed at exit.
let sessionRoot = null;
function sessionDirFor(key) {
	if (!sessionRoot) {
		sessionRoot = mkdtempSync(join(tmpdir(), "pi-scripted-"));
		process.once("exit", () => rmSync(sessionRoot, { recursive: true, force: true }));
	}
	const dir = join(sessionRoot, "sessions", key.replace(/[^a-zA-Z0-9._-]/g, "_"));
	mkdirSync(dir, { recursive: true });
	return dir;
}

/** Scenario for one prompt: a "/command" in the text overrides the session default. */
export function scenarioForText(text, fallback) {
	const m = /^\/(instant|stream|thinking|tool|error|throw)\b\s*(.*)$/s.exec(text.trim());
	if (!m) return fallback;
	const rest = m[2].trim();
	switch (m[1]) {
		case "instant":
			return { kind: "instant" };
		case "stream": {
			const [n, ms, b] = rest.split(/\s+/).map(Number);
			return {
				kind: "stream",
				tokens: Number.isFinite(n) ? n : 10,
				intervalMs: Number.isFinite(ms) ? ms : 0,
				batch: Number.isFinite(b) && b > 0 ? b : 1,
			};
		}
		case "thinking":
		case "tool":
			return { kind: m[1] };
		default:
			return { kind: m[1], message: rest || undefined };
	}
}

function newAssistant(content = []) {
	return {
		role: "assistant",
		content,
		api: "scripted",
		provider: "scripted",
		model: "scripted-1",
		usage: EMPTY_USAGE,
		stopReason: "stop",
		timestamp: Date.now(),
	};
}

class ScriptedSession {
	constructor(key, scenario, options) {
		this.sessionKey = key;
		this.sessionId = randomUUID();
		this.messages = [];
		this.scenario = scenario ?? { kind: "instant" };
		this.disposed = false;
		// Counters for tests.
		this.stats = { prompts: 0, aborts: 0, disposes: 0, listenerErrors: 0 };
		this._listeners = [];
		this._run = null; // {controller, done: Promise}
		this.sessionManager = { getSessionDir: () => sessionDirFor(key) };
		if (options?.newSession === false) this.newSession = undefined;
	}

	get isStreaming() {
		return this._run !== null;
	}

	subscribe(listener) {
		this._listeners = [...this._listeners, listener];
		return () => {
			this._listeners = this._listeners.filter((l) => l !== listener);
		};
	}

	// Like AgentSession._emit: a throwing listener skips the rest for that event, the run goes on.
	_emit(event) {
		try {
			for (const l of this._listeners) l(event);
		} catch {
			this.stats.listenerErrors++;
		}
	}

	// pi's Agent pushes each message into state on message_end.
	_end(message) {
		this.messages.push(message);
		this._emit({ type: "message_end", message });
	}

	async prompt(text, options = {}) {
		if (this.disposed) throw new Error("Session disposed");
		if (this._run) throw new Error("Agent is already processing.");
		this.stats.prompts++;
		const scenario = scenarioForText(String(text), this.scenario);
		if (scenario.kind === "throw") throw new Error(scenario.message ?? "scripted failure");

		const controller = new AbortController();
		let finish;
		this._run = { controller, done: new Promise((r) => (finish = r)) };
		try {
			await this._play(String(text), options, scenario, controller.signal);
		} finally {
			this._run = null;
			finish();
		}
	}

	async _play(text, options, scenario, signal) {
		const newMessages = [];
		const user = { role: "user", content: [{ type: "text", text }], timestamp: Date.now() };
		if (options.images?.length) user.content.push(...options.images);
		this._emit({ type: "agent_start" });
		this._emit({ type: "turn_start" });
		this._emit({ type: "message_start", message: user });
		this._end(user);
		newMessages.push(user);

		if (scenario.kind === "tool") {
			const { assistant, toolResult } = await this._toolTurn();
			newMessages.push(assistant, toolResult);
			this._emit({ type: "turn_end", message: assistant, toolResults: [toolResult] });
			this._emit({ type: "turn_start" });
		}

		const msg = newAssistant();
		this._emit({ type: "message_start", message: { ...msg } });
		const update = (e) =>
			this._emit({ type: "message_update", assistantMessageEvent: { ...e, partial: msg }, message: { ...msg } });

		if (scenario.kind === "error") {
			msg.stopReason = "error";
			msg.errorMessage = scenario.message ?? "scripted model error";
		} else if (scenario.kind === "stream") {
			const block = { type: "text", text: "" };
			msg.content.push(block);
			update({ type: "text_start", contentIndex: 0 });
			const total = scenario.tokens ?? 10;
			const batch = Math.max(1, scenario.batch ?? 1);
			for (let i = 0; i < total && !signal.aborted; ) {
				for (let end = Math.min(total, i + batch); i < end; i++) {
					const delta = `t${i}@${nowEpochMs().toFixed(3)};`;
					block.text += delta;
					update({ type: "text_delta", contentIndex: 0, delta });
				}
				if (i < total) await tick(scenario.intervalMs ?? 0, signal);
			}
			if (!signal.aborted) update({ type: "text_end", contentIndex: 0, content: block.text });
		} else {
			let index = 0;
			if (scenario.kind === "thinking") {
				const thought = "Let me think.";
				msg.content.push({ type: "thinking", thinking: "" });
				update({ type: "thinking_start", contentIndex: 0 });
				msg.content[0].thinking = thought;
				update({ type: "thinking_delta", contentIndex: 0, delta: thought });
				update({ type: "thinking_end", contentIndex: 0, content: thought });
				index = 1;
			}
			const reply = scenario.reply ?? (scenario.kind === "tool" ? "done" : "ok");
			const block = { type: "text", text: "" };
			msg.content.push(block);
			update({ type: "text_start", contentIndex: index });
			block.text = reply;
			update({ type: "text_delta", contentIndex: index, delta: reply });
			update({ type: "text_end", contentIndex: index, content: reply });
		}

		if (signal.aborted) {
			msg.stopReason = "aborted";
			msg.errorMessage = "Request was aborted";
		}
		this._end(msg);
		newMessages.push(msg);
		this._emit({ type: "turn_end", message: msg, toolResults: [] });
		this._emit({ type: "agent_end", messages: newMessages });
	}

	// One assistant message calling `bash`, its execution, and the toolResult message.
	async _toolTurn() {
		const toolCallId = `call_${randomUUID().slice(0, 8)}`;
		const args = { command: "echo hi" };
		const argsJson = JSON.stringify(args);
		const msg = newAssistant();
		this._emit({ type: "message_start", message: { ...msg } });
		const update = (e) =>
			this._emit({ type: "message_update", assistantMessageEvent: { ...e, partial: msg }, message: { ...msg } });
		const call = { type: "toolCall", id: toolCallId, name: "bash", arguments: {} };
		msg.content.push(call);
		update({ type: "toolcall_start", contentIndex: 0 });
		update({ type: "toolcall_delta", contentIndex: 0, delta: argsJson });
		call.arguments = args;
		update({ type: "toolcall_end", contentIndex: 0, toolCall: call });
		msg.stopReason = "toolUse";
		this._end(msg);

		this._emit({ type: "tool_execution_start", toolCallId, toolName: "bash", args });
		await tick(0);
		const result = { content: [{ type: "text", text: "hi\n" }], details: {} };
		this._emit({ type: "tool_execution_update", toolCallId, toolName: "bash", args, partialResult: result });
		this._emit({ type: "tool_execution_end", toolCallId, toolName: "bash", result, isError: false });
		const toolResult = {
			role: "toolResult",
			toolCallId,
			toolName: "bash",
			content: result.content,
			details: result.details,
			isError: false,
			timestamp: Date.now(),
		};
		this._emit({ type: "message_start", message: toolResult });
		this._end(toolResult);
		return { assistant: msg, toolResult };
	}

	/** Stops the current run (if any) and resolves once it has ended, like AgentSession.abort(). */
	async abort() {
		this.stats.aborts++;
		const run = this._run;
		if (!run) return;
		run.controller.abort();
		await run.done;
	}

	/** Present unless created with {newSession: false} (pi 0.73's AgentSession has none). */
	async newSession() {
		await this.abort();
		this.messages = [];
		this.sessionId = randomUUID();
		return true;
	}

	dispose() {
		this.stats.disposes++;
		this.disposed = true;
		this._run?.controller.abort();
		this._listeners = [];
	}
}

// Waits `ms` (setImmediate when 0); an abort ends the wait early.
function tick(ms, signal) {
	return new Promise((resolve) => {
		if (signal?.aborted) return resolve();
		const onAbort = () => {
			ms > 0 ? clearTimeout(handle) : clearImmediate(handle);
			resolve();
		};
		const done = () => {
			signal?.removeEventListener("abort", onAbort);
			resolve();
		};
		const handle = ms > 0 ? setTimeout(done, ms) : setImmediate(done);
		signal?.addEventListener("abort", onAbort, { once: true });
	});
}

/**
 * A scripted session for `key`. `options.newSession === false` leaves out newSession(),
 * as on pi 0.73's AgentSession.
 */
export function createScriptedSession(key = "main", scenario = { kind: "instant" }, options = {}) {
	return new ScriptedSession(key, scenario, options);
}

/**
 * A GatewaySessionFactory: (sessionKey) → Promise<scripted session>. `factory.live` holds the
 * undisposed sessions. `options.failKey` (a RegExp) makes creation reject for matching keys.
 */
export function createScriptedFactory(scenario = { kind: "instant" }, options = {}) {
	const live = new Set();
	const factory = async (key) => {
		if (options.failKey?.test(key)) throw new Error(`scripted createSession failure: ${key}`);
		const session = createScriptedSession(key, scenario, options);
		const dispose = session.dispose.bind(session);
		session.dispose = () => {
			live.delete(session);
			dispose();
		};
		live.add(session);
		return session;
	};
	factory.live = live;
	return factory;
}

/** Parse "instant" | "stream:N[:intervalMs[:batch]]" | "thinking" | "tool" | "error" into a scenario. */
export function parseScenario(spec = "instant") {
	const [kind, a, b, c] = String(spec).split(":");
	if (kind === "stream") {
		return {
			kind,
			tokens: a ? Number(a) : 10,
			intervalMs: b ? Number(b) : 0,
			batch: c ? Number(c) : 1,
		};
	}
	if (["instant", "thinking", "tool", "error"].includes(kind)) return { kind };
	throw new Error(`Unknown scenario: ${spec}`);
}

// ---------------------------------------------------------------- structural doubles (reliability tests)

/**
 * A small structural session (prompt/subscribe/abort/dispose/sessionId/messages) with spies.
 * `behavior.prompt(text, session)` may be given to replace the run; the default run emits
 * pi's event sequence around one assistant message whose text is `reply(text)` (default
 * `echo:<text>`), after `delayMs` (abortable). Counters: `calls.prompt`, `calls.abort`,
 * `calls.dispose`, `prompts` (the texts, in order).
 */
export function createDouble(key, behavior = {}) {
	const listeners = new Set();
	let run = null;
	const session = {
		sessionKey: key,
		sessionId: `double-${key}-${Math.random().toString(36).slice(2, 8)}`,
		messages: [],
		disposed: false,
		prompts: [],
		calls: { prompt: 0, abort: 0, dispose: 0, subscribe: 0 },
		emit(event) {
			for (const l of [...listeners]) {
				try {
					l(event);
				} catch {
					// like pi: a throwing listener does not stop the run
				}
			}
		},
		subscribe(listener) {
			session.calls.subscribe++;
			if (behavior.subscribe) return behavior.subscribe(listener, session);
			listeners.add(listener);
			return () => listeners.delete(listener);
		},
		prompt(text, options) {
			session.calls.prompt++;
			session.prompts.push(text);
			if (behavior.prompt) return behavior.prompt(text, session, options);
			return defaultRun(session, text, behavior);
		},
		abort() {
			session.calls.abort++;
			if (behavior.abort) return behavior.abort(session);
			const r = run;
			if (!r) return Promise.resolve();
			r.controller.abort();
			return r.done;
		},
		dispose() {
			session.calls.dispose++;
			session.disposed = true;
			run?.controller.abort();
			if (behavior.dispose) return behavior.dispose(session);
		},
		_setRun(r) {
			run = r;
		},
	};
	return session;
}

async function defaultRun(session, text, behavior) {
	if (session.disposed) throw new Error(`prompt on a disposed session (${session.sessionKey})`);
	const controller = new AbortController();
	let finish;
	const r = { controller, done: new Promise((res) => (finish = res)) };
	session._setRun(r);
	try {
		const user = { role: "user", content: [{ type: "text", text }], timestamp: Date.now() };
		session.emit({ type: "agent_start" });
		session.emit({ type: "turn_start" });
		session.emit({ type: "message_start", message: user });
		session.messages.push(user);
		session.emit({ type: "message_end", message: user });
		const reply = (behavior.reply ?? ((t) => `echo:${t}`))(text);
		const msg = { role: "assistant", content: [{ type: "text", text: "" }], stopReason: "stop", timestamp: Date.now() };
		session.emit({ type: "message_start", message: msg });
		session.emit({
			type: "message_update",
			assistantMessageEvent: { type: "text_start", contentIndex: 0, partial: msg },
			message: msg,
		});
		msg.content[0].text = reply;
		session.emit({
			type: "message_update",
			assistantMessageEvent: { type: "text_delta", contentIndex: 0, delta: reply, partial: msg },
			message: msg,
		});
		const delay = typeof behavior.delayMs === "function" ? behavior.delayMs(text) : (behavior.delayMs ?? 0);
		if (delay > 0) {
			await new Promise((res) => {
				const timer = setTimeout(res, delay);
				controller.signal.addEventListener(
					"abort",
					() => {
						clearTimeout(timer);
						res();
					},
					{ once: true },
				);
			});
		}
		if (controller.signal.aborted) {
			msg.stopReason = "aborted";
			msg.errorMessage = "Request was aborted";
		} else {
			session.emit({
				type: "message_update",
				assistantMessageEvent: { type: "text_end", contentIndex: 0, content: reply, partial: msg },
				message: msg,
			});
		}
		session.messages.push(msg);
		session.emit({ type: "message_end", message: msg });
		session.emit({ type: "turn_end", message: msg, toolResults: [] });
		session.emit({ type: "agent_end", messages: [user, msg] });
	} finally {
		session._setRun(null);
		finish();
	}
}

/** A factory of doubles; `factory.created` lists every session it made, `factory.live` the undisposed ones. */
export function createDoubleFactory(behavior = {}) {
	const created = [];
	const factory = async (key) => {
		const s = createDouble(key, behavior);
		created.push(s);
		return s;
	};
	factory.created = created;
	Object.defineProperty(factory, "live", { get: () => created.filter((s) => !s.disposed) });
	return factory;
}

// ---------------------------------------------------------------- recording doubles (safe-by-default tests)

/**
 * A session double that records `calls` ([{text, options}]) and answers `reply(text)`
 * (default `echo:<text>`). `behavior.prompt(text, options, session)` may replace the run (it
 * must resolve or reject; nothing is emitted then). `sessionDir` gives it a
 * `sessionManager.getSessionDir()`; `sessionManager` replaces the whole manager (a real pi
 * SessionManager: the run then appends the user and assistant messages to it, so a session
 * file is written on disk).
 */
export function recordingSession(key, behavior = {}) {
	const listeners = new Set();
	const session = {
		sessionKey: key,
		sessionId: `rec-${Math.random().toString(36).slice(2, 10)}`,
		messages: [],
		calls: [],
		disposed: false,
		subscribe(listener) {
			listeners.add(listener);
			return () => listeners.delete(listener);
		},
		async prompt(text, options) {
			session.calls.push({ text, options });
			if (session.disposed) throw new Error("prompt on a disposed session");
			if (behavior.prompt) return behavior.prompt(text, options, session);
			const emit = (event) => {
				for (const l of [...listeners]) {
					try {
						l(event);
					} catch {
						// like pi: a throwing listener does not stop the run
					}
				}
			};
			const user = { role: "user", content: [{ type: "text", text }], timestamp: Date.now() };
			if (Array.isArray(options?.images)) user.content.push(...options.images);
			emit({ type: "agent_start" });
			emit({ type: "turn_start" });
			emit({ type: "message_start", message: user });
			session.messages.push(user);
			session.sessionManager?.appendMessage?.(user);
			emit({ type: "message_end", message: user });
			const reply = (behavior.reply ?? ((t) => `echo:${t}`))(text);
			const msg = { role: "assistant", content: [{ type: "text", text: "" }], stopReason: "stop", timestamp: Date.now() };
			emit({ type: "message_start", message: msg });
			emit({ type: "message_update", assistantMessageEvent: { type: "text_start", contentIndex: 0, partial: msg }, message: msg });
			msg.content[0].text = reply;
			emit({
				type: "message_update",
				assistantMessageEvent: { type: "text_delta", contentIndex: 0, delta: reply, partial: msg },
				message: msg,
			});
			emit({ type: "message_update", assistantMessageEvent: { type: "text_end", contentIndex: 0, content: reply, partial: msg }, message: msg });
			session.messages.push(msg);
			session.sessionManager?.appendMessage?.({
				...msg,
				api: "test",
				provider: "test",
				model: "recording-1",
				usage: EMPTY_USAGE,
			});
			emit({ type: "message_end", message: msg });
			emit({ type: "turn_end", message: msg, toolResults: [] });
			emit({ type: "agent_end", messages: [user, msg] });
		},
		async abort() {},
		dispose() {
			session.disposed = true;
			listeners.clear();
		},
	};
	if (behavior.sessionManager) session.sessionManager = behavior.sessionManager;
	else if (behavior.sessionDir) session.sessionManager = { getSessionDir: () => behavior.sessionDir };
	return session;
}

/** A createSession of recording sessions; `factory.created` lists them in creation order. */
export function recordingFactory(behaviorFor = () => ({})) {
	const created = [];
	const factory = async (key) => {
		const s = recordingSession(key, await behaviorFor(key));
		created.push(s);
		return s;
	};
	factory.created = created;
	return factory;
}

/** Every prompt call of `sessions` (an array of recording sessions), flattened. */
export function allCalls(sessions) {
	return sessions.flatMap((s) => s.calls);
}

// ---------------------------------------------------------------- a session that streams big deltas

export { BigStreamSession } from "./http-big-session.mjs";
