// pi-gateway: the JavaScript face of the native gateway.
//
// Hand-written (not generated): it keeps the seed's exact API and holds the AgentSession
// objects, which cannot live on a Rust thread. Everything with state — the registry, the
// queues, the subscribers, eviction, the HTTP server — lives in Rust (`native.cjs`, built by
// `napi build`). Rust calls the functions below through weak threadsafe functions and
// gets its answers through `native.settle()`; agent events reach Rust through one
// synchronous `native.pushEvent()` call each, carrying only the fields the gateway needs.

import { createHash } from "node:crypto";
import { statSync, utimesSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const native = require("./native.cjs");

// Event kinds understood by NativeGateway.pushEvent: one table, exported by the Rust enum
// (src/binding/mod.rs, `EventKind`).
const K = native.EventKind;

/** Log levels, least first (`options.logLevel`). */
const LOG_LEVELS = ["debug", "info", "warn", "error"];

function errorMessage(error) {
	if (error instanceof Error) return error.message;
	if (typeof error === "string") return error;
	try {
		return JSON.stringify(error) ?? String(error);
	} catch {
		return String(error);
	}
}

// What an error message may not carry to an HTTP client: absolute paths of the server. A path is
// a token that starts a word (start of text, after a space, a quote, a bracket, "=" ...):
// `file://...` URLs, POSIX `/a/b...`, `~/...`, and Windows `C:\...`. It runs to the next space,
// quote, bracket or comma, so `/app/x.js:10:5` goes whole. `http://host/path` is left alone:
// its slashes follow ":" and a host name, never a word boundary.
const PATH_TOKEN =
	/(?<![\w.~/:\\-])(?:file:\/\/[^\s'"`()<>[\]{},]*|~?\/[^\s'"`()<>[\]{},/][^\s'"`()<>[\]{},]*|[A-Za-z]:\\[^\s'"`()<>[\]{},]*)/g;
/** Where a stack trace starts inside a message (V8's `\n    at ...` frames). */
const STACK_FRAME = /\n\s+at\s[\s\S]*$/;

/** The message with server paths replaced by `<path>` and any stack frames cut off. */
function redactErrorText(text) {
	return String(text).replace(STACK_FRAME, "").replace(PATH_TOKEN, "<path>");
}

function toJson(value) {
	if (value === undefined) return "null";
	try {
		return JSON.stringify(value) ?? "null";
	} catch {
		return "null";
	}
}

function messageText(message) {
	if (!message || !Array.isArray(message.content)) return "";
	let text = "";
	for (const part of message.content) {
		if (part && typeof part === "object" && part.type === "text" && typeof part.text === "string") text += part.text;
	}
	return text;
}

function messageCount(session) {
	const messages = session.messages;
	return Array.isArray(messages) ? messages.length : 0;
}

function requireFunction(value, name) {
	if (typeof value !== "function") throw new TypeError(`GatewayRuntime: ${name} must be a function`);
}

function checkSession(session, what) {
	if (!session || typeof session !== "object") throw new TypeError(`${what} is not a session object`);
	for (const method of ["prompt", "subscribe", "abort", "dispose"]) {
		if (typeof session[method] !== "function") throw new TypeError(`${what} has no ${method}() method`);
	}
}

/**
 * Starts a new conversation in an AgentSession that has no newSession() (pi 0.73: only its
 * AgentSessionRuntime has one, and that builds a whole new AgentSession, while the gateway must
 * keep the primary session object its subscribers hang on). Done in place with pi's own pieces,
 * the same ones its runtime's newSession() and AgentSession's tree navigation use:
 *
 * 1. `abort()` the running prompt (it waits until the agent is idle), then wait for the
 *    session's queue of agent events, so the aborted run's last messages are written to the OLD
 *    session file and not to the new one;
 * 2. `clearQueue()`: steering and follow-up messages of the old conversation are dropped;
 * 3. `sessionManager.newSession()`: a new session id and a new session file in the same session
 *    dir (the old file stays on disk as the previous conversation);
 * 4. `agent.reset()`: the transcript, streaming state and the agent's own queues are cleared,
 *    and `agent.sessionId` (what providers key their prompt caches on) follows the new id.
 *
 * Afterwards `session.messages` is empty and `session.sessionId` is the new id. Extensions are
 * not told (no session_shutdown / session_start events): the gateway runs sessions without a UI.
 * A session shape without these pieces keeps its conversation, and the log says so.
 */
async function renewInPlace(session, log) {
	const sessionManager = session.sessionManager;
	const agent = session.agent;
	if (typeof sessionManager?.newSession !== "function" || typeof agent?.reset !== "function") {
		// The gateway has already aborted the run and answered the queue: that is all it can do.
		log("warning: the primary session has neither newSession() nor a pi sessionManager and agent: the reset kept its conversation");
		return;
	}
	await session.abort();
	if (typeof agent.waitForIdle === "function") await agent.waitForIdle();
	// AgentSession persists messages from a promise chain fed by agent events (0.73:
	// `_agentEventQueue`); let it drain before the session file changes.
	for (let i = 0; i < 100; i++) {
		const events = session._agentEventQueue;
		if (!events || typeof events.then !== "function") break;
		await events.then(undefined, () => {});
		if (session._agentEventQueue === events) break;
	}
	if (typeof session.clearQueue === "function") session.clearQueue();
	beginConversation(sessionManager);
	agent.reset();
	if ("sessionId" in agent && typeof sessionManager.getSessionId === "function") {
		agent.sessionId = sessionManager.getSessionId();
	}
}

/** `{provider, id}` of a pi model, or null. */
function modelRef(model) {
	if (!model || typeof model.provider !== "string" || typeof model.id !== "string") return null;
	return { provider: model.provider, id: model.id };
}

/**
 * Begins a new conversation in a session manager (`newSession()`). A stored one is made the most
 * recent in its directory at once, so `continueRecent` (the next session for the key, or a
 * restart) continues the new conversation, not the one left behind: pi itself writes a session
 * file only with its first answer, so the new file's header is written now, and the previous
 * file's modification time is set a second back (file times are coarse: both could otherwise
 * carry the same one).
 */
function beginConversation(sessionManager) {
	const previous = sessionManager.getSessionFile?.();
	sessionManager.newSession();
	if (!sessionManager.isPersisted?.()) return;
	const file = sessionManager.getSessionFile?.();
	const header = sessionManager.getHeader?.();
	if (typeof file === "string" && header) writeFileSync(file, `${JSON.stringify(header)}\n`);
	if (typeof previous === "string" && previous !== file) {
		try {
			const stat = statSync(previous);
			utimesSync(previous, stat.atime, new Date(stat.mtimeMs - 1000));
		} catch {
			// Never written (no answer yet): nothing to step back.
		}
	}
}

/** What Rust learns of a session when it is created or renewed. */
function sessionInfo(session) {
	const name = session.sessionName;
	const level = session.thinkingLevel;
	return JSON.stringify({
		sessionId: String(session.sessionId ?? ""),
		messageCount: messageCount(session),
		steer: typeof session.steer === "function" && typeof session.followUp === "function",
		compact: typeof session.compact === "function",
		name: typeof name === "string" ? name : null,
		model: modelRef(session.model),
		thinkingLevel: typeof level === "string" ? level : null,
	});
}

/** `customType` of the session entry that marks where a gateway run begins (its `runId`). */
const RUN_MARKER = "pi-gateway.run";

/**
 * The conversation as the history route reads it: pi's message entries on the session's current
 * branch and the gateway's run markers — the last `tail` of them when `tail` is given, widened to
 * begin at a user message (and its run marker), so the first message handed over is whole.
 * `start` says how many came before. A session without pi's sessionManager gives its messages,
 * with ids from their position.
 */
function historyEntries(session, tail) {
	const sessionManager = session.sessionManager;
	let entries;
	if (typeof sessionManager?.getBranch === "function") {
		entries = sessionManager
			.getBranch()
			.filter((e) => e && (e.type === "message" || (e.type === "custom" && e.customType === RUN_MARKER)));
	} else {
		const messages = Array.isArray(session.messages) ? session.messages : [];
		entries = messages.map((message, i) => ({ id: `m${i}`, parentId: i ? `m${i - 1}` : null, type: "message", message }));
	}
	let start = 0;
	if (Number.isSafeInteger(tail) && tail > 0 && tail < entries.length) {
		start = entries.length - tail;
		while (start > 0 && !(entries[start].type === "message" && entries[start].message?.role === "user")) start--;
		if (start > 0 && entries[start - 1].type === "custom") start--;
	}
	return { entries: start > 0 ? entries.slice(start) : entries, start };
}

/** Waits until pi has written what the session's last run produced (see renewInPlace). */
async function settled(session) {
	if (typeof session.agent?.waitForIdle === "function") await session.agent.waitForIdle();
	for (let i = 0; i < 100; i++) {
		const events = session._agentEventQueue;
		if (!events || typeof events.then !== "function") break;
		await events.then(undefined, () => {});
		if (session._agentEventQueue === events) break;
	}
}

/**
 * Before `prompt`: a regeneration first leaves the previous answer to the last user message
 * (pi's tree navigation to before that message, so a new branch begins there), then the run's
 * marker is written, so its answer keeps the run id in the history.
 */
async function beginRun(session, runId, kind) {
	const sessionManager = session.sessionManager;
	if (kind === "regenerate" && typeof session.navigateTree === "function" && typeof sessionManager?.getBranch === "function") {
		const branch = sessionManager.getBranch();
		for (let i = branch.length - 1; i >= 0; i--) {
			const entry = branch[i];
			if (entry?.type === "message" && entry.message?.role === "user") {
				await session.navigateTree(entry.id, { summarize: false });
				break;
			}
		}
	}
	if (typeof sessionManager?.appendCustomEntry === "function") sessionManager.appendCustomEntry(RUN_MARKER, { runId });
}

/** An op's answer: `{value}`. */
const opValue = (value) => JSON.stringify({ value: value ?? null });
/** An op's failure with an HTTP status. */
class OpError extends Error {
	constructor(status, message) {
		super(message);
		this.status = status;
	}
}
function requireMethod(session, name) {
	if (typeof session?.[name] !== "function") throw new OpError(501, `Not supported by this session: ${name}()`);
}

/** Most further agent runs finishHandedOver starts for one prompt (a bound, not a limit in practice). */
const MAX_HANDED_OVER_RUNS = 64;

/**
 * After a prompt: messages handed over with steer()/followUp() that arrived after pi's agent
 * loop had looked for them for the last time are still in its queue. They are run now, in the
 * same prompt (pi does the same after a compaction: `agent.continue()` takes the queue), so no
 * accepted message waits for a next prompt that may never come. After an abort they are
 * dropped instead: their senders get the aborted run's result.
 */
async function finishHandedOver(session) {
	const agent = session.agent;
	if (typeof agent?.hasQueuedMessages !== "function" || typeof agent.continue !== "function") return;
	for (let i = 0; i < MAX_HANDED_OVER_RUNS && agent.hasQueuedMessages(); i++) {
		const messages = Array.isArray(session.messages) ? session.messages : [];
		const last = messages[messages.length - 1];
		if (last?.role === "assistant" && last.stopReason === "aborted") {
			if (typeof session.clearQueue === "function") session.clearQueue();
			return;
		}
		try {
			await agent.continue();
		} catch {
			// Already running (pi's own compaction retry took the queue): wait for it.
			if (typeof agent.waitForIdle === "function") await agent.waitForIdle();
		}
	}
}

/** A decision `resolveApproval` refused: `status` is the HTTP status the route answers with. */
export class GatewayApprovalError extends Error {
	constructor(status, message, decided) {
		super(message);
		this.name = "GatewayApprovalError";
		this.status = status;
		/** For a 409: the decision that stands (`{approved, by, reason?}`). */
		if (decided) this.decided = decided;
	}
}

let activeGatewayRuntime = null;

export function setActiveGatewayRuntime(runtime) {
	activeGatewayRuntime = runtime;
}

export function getActiveGatewayRuntime() {
	return activeGatewayRuntime;
}

/** Longest sanitized name kept as is; longer ones are cut and get a hash of the key. */
const MAX_PLAIN_NAME = 120;
/** How much of a long sanitized name is kept before the hash. */
const LONG_NAME_PREFIX = 100;
/** Hex digits of sha256(key) appended to a long name (128 bits). */
const LONG_NAME_HASH = 32;

/**
 * The directory name for a session key: the seed's name (every character but `a-zA-Z0-9._-`
 * becomes `_`; a name of dots only becomes underscores, so it cannot name the root or its
 * parent) when that is at most 120 characters. A longer one becomes its first 100 characters,
 * `-`, and the first 32 hex digits of sha256(key as UTF-8): at most 133 ASCII bytes, far below
 * the 255-byte file-name limit, and distinct keys keep distinct names (the hash is of the key
 * itself, not of its lossy sanitized form).
 */
export function sanitizeSessionKey(sessionKey) {
	const key = String(sessionKey);
	let safe = key.replace(/[^a-zA-Z0-9._-]/g, "_");
	// "." and ".." would name the root itself or its parent: keep every key inside it.
	if (/^\.+$/.test(safe)) safe = safe.replace(/\./g, "_");
	if (safe.length <= MAX_PLAIN_NAME) return safe;
	const digest = createHash("sha256").update(key, "utf8").digest("hex").slice(0, LONG_NAME_HASH);
	return `${safe.slice(0, LONG_NAME_PREFIX)}-${digest}`;
}

// The optional peer dependency, loaded once (it is ESM-only, so not through require()).
let piCodingAgent = null;
let piCodingAgentError = null;
try {
	piCodingAgent = await import("@mariozechner/pi-coding-agent");
} catch (error) {
	piCodingAgentError = error;
}

/**
 * A pi SessionManager for the gateway session of `sessionKey` that continues the most recent
 * conversation stored in its directory (`<sessionDirRoot>/<sanitizeSessionKey(key)>`), or
 * starts one: a key's conversation survives idle eviction and restarts.
 */
export function openGatewaySessionManager(cwd, sessionKey, sessionDirRoot) {
	if (!piCodingAgent) {
		throw new Error(
			`openGatewaySessionManager needs the optional peer dependency @mariozechner/pi-coding-agent: ${errorMessage(piCodingAgentError)}`,
		);
	}
	return piCodingAgent.SessionManager.continueRecent(cwd, join(sessionDirRoot, sanitizeSessionKey(sessionKey)));
}

export function createGatewaySessionManager(cwd, sessionKey, sessionDirRoot) {
	if (!piCodingAgent) {
		throw new Error(
			`createGatewaySessionManager needs the optional peer dependency @mariozechner/pi-coding-agent: ${errorMessage(piCodingAgentError)}`,
		);
	}
	return piCodingAgent.SessionManager.create(cwd, join(sessionDirRoot, sanitizeSessionKey(sessionKey)));
}

export class GatewayRuntime {
	#native;
	#config;
	#primaryKey;
	#primarySession;
	#createSession;
	#sessionExists;
	#deleteSession;
	#log;
	/** "text" (each line as its message) or "json" (one JSON object a line). */
	#logFormat = "text";
	/** The least level logged: LOG_LEVELS index. */
	#logLevel = 1;
	/** Whether a user's `log` receives the lines (else only warnings and errors reach the console). */
	#userLog = false;
	#sessionDirRoot;
	/** handle -> { key, session, unsubscribe }. Run state (running, started, an abort asked
	 * for before the run was under way) is kept in Rust, with the run. */
	#sessions = new Map();
	/** subscriber id -> { listener, held: frames waiting for hello, or null once it is delivered } */
	#listeners = new Map();
	#nextListener = 1;

	constructor(options) {
		if (!options || typeof options !== "object") throw new TypeError("GatewayRuntime: options are required");
		const { config, primarySessionKey, primarySession, createSession, log, sessionExists, deleteSession, logFormat, logLevel } =
			options;
		if (!config || typeof config !== "object") throw new TypeError("GatewayRuntime: options.config is required");
		if (typeof primarySessionKey !== "string" || primarySessionKey === "") {
			throw new TypeError("GatewayRuntime: options.primarySessionKey must be a non-empty string");
		}
		checkSession(primarySession, "GatewayRuntime: options.primarySession");
		requireFunction(createSession, "options.createSession");
		if (log !== undefined) requireFunction(log, "options.log");
		if (logFormat !== undefined && logFormat !== "text" && logFormat !== "json") {
			throw new TypeError(`GatewayRuntime: options.logFormat must be "text" or "json", got ${JSON.stringify(logFormat)}`);
		}
		if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel)) {
			throw new TypeError(
				`GatewayRuntime: options.logLevel must be one of ${LOG_LEVELS.map((l) => JSON.stringify(l)).join(", ")}, got ${JSON.stringify(logLevel)}`,
			);
		}
		this.#logFormat = logFormat ?? "text";
		this.#logLevel = LOG_LEVELS.indexOf(logLevel ?? "info");
		this.#userLog = log !== undefined;
		if (sessionExists !== undefined) requireFunction(sessionExists, "options.sessionExists");
		if (deleteSession !== undefined) requireFunction(deleteSession, "options.deleteSession");
		this.#sessionExists = sessionExists;
		this.#deleteSession = deleteSession;
		this.#config = config;
		this.#primaryKey = primarySessionKey;
		this.#primarySession = primarySession;
		this.#createSession = createSession;
		this.#log = log ?? ((line) => console.warn(this.#logFormat === "json" ? line : `pi-gateway ${line}`));
		const dir = primarySession.sessionManager?.getSessionDir?.();
		this.#sessionDirRoot =
			typeof dir === "string" ? join(dir, "..", "gateway-sessions") : join(process.cwd(), ".pi", "gateway-sessions");

		let configJson;
		try {
			configJson = JSON.stringify(config);
		} catch (error) {
			throw new TypeError(`GatewayRuntime: options.config is not serializable: ${errorMessage(error)}`);
		}
		this.#native = new native.NativeGateway(configJson, primarySessionKey, {
			createSession: (req, handle, key) => this.#onCreate(req, handle, key),
			prompt: (req, handle, text, imagesJson, source, runId, kind) =>
				this.#onPrompt(req, handle, text, imagesJson, source, runId, kind),
			abort: (req, handle) => this.#onAbort(req, handle),
			release: (req, handle, dispose) => this.#onRelease(req, handle, dispose),
			renew: (req, handle) => this.#onRenew(req, handle),
			handOver: (req, handle, runId, how, text, imagesJson) => this.#onHandOver(req, handle, runId, how, text, imagesJson),
			clearPending: (req, handle) => this.#onClearPending(req, handle),
			op: (req, name, handle, key, argsJson) => this.#onOp(req, name, handle, key, argsJson),
			log: (json) => this.#onNativeLog(json),
			deliver: (id, json, eventId) => this.#onDeliver(id, json, eventId),
		});
		this.#native.setLogLevel(LOG_LEVELS[this.#logLevel]);
	}

	async start() {
		await this.#native.start(() => {});
	}

	async stop() {
		await this.#native.stop();
	}

	isReady() {
		return this.#native.isReady();
	}

	getAddress() {
		return { bind: this.#config.bind, port: this.#native.port() ?? this.#config.port };
	}

	/** Checks the shape JS can check; Rust checks the fields as HTTP does. */
	#messageArgs(request, what) {
		if (!request || typeof request.sessionKey !== "string") {
			throw new TypeError(`${what}: request.sessionKey must be a string`);
		}
		if (typeof request.text !== "string") throw new TypeError(`${what}: request.text must be a string`);
		const key = request.idempotencyKey;
		if (key !== undefined && typeof key !== "string") {
			throw new TypeError(`${what}: request.idempotencyKey must be a string`);
		}
		if (request.callback !== undefined) {
			// A callback's host is checked against DNS, which a call queued in order cannot wait for.
			throw new TypeError(
				`${what}: request.callback is for HTTP clients (POST /sessions/:key/messages); in JS, await the result or waitForRun`,
			);
		}
		// images, source, metadata and mode are checked in Rust, with the same messages as over HTTP.
		const fields = toJson({ images: request.images, source: request.source, metadata: request.metadata, mode: request.mode });
		return [request.sessionKey, request.text, fields, key];
	}

	async enqueueMessage(request) {
		const json = await this.#native.enqueue(...this.#messageArgs(request, "enqueueMessage"));
		return JSON.parse(json);
	}

	/** Queues a message without waiting for its answer: the run's record. */
	async submitMessage(request) {
		return JSON.parse(this.#native.submit(...this.#messageArgs(request, "submitMessage")));
	}

	getRun(sessionKey, runId) {
		const json = this.#native.getRun(String(sessionKey), String(runId));
		return json === null ? undefined : JSON.parse(json);
	}

	listRuns(sessionKey) {
		return JSON.parse(this.#native.listRuns(String(sessionKey)));
	}

	async waitForRun(sessionKey, runId) {
		return JSON.parse(await this.#native.waitRun(String(sessionKey), String(runId)));
	}

	async cancelRun(sessionKey, runId) {
		const answer = JSON.parse(await this.#native.cancelRun(String(sessionKey), String(runId)));
		if (answer.status === null) delete answer.status;
		return answer;
	}

	async addSubscriber(sessionKey, listener, options = {}) {
		requireFunction(listener, "addSubscriber listener");
		const after = options?.after;
		if (after !== undefined && !(Number.isSafeInteger(after) && after >= 0)) {
			throw new TypeError("addSubscriber: options.after must be a non-negative integer");
		}
		const id = this.#nextListener++;
		// Frames that overtake the resolution of subscribe() wait here until hello is handled.
		const entry = { listener, held: [] };
		this.#listeners.set(id, entry);
		let hello;
		try {
			hello = await this.#native.subscribe(sessionKey, id, after);
		} catch (error) {
			this.#listeners.delete(id);
			throw error;
		}
		const held = entry.held;
		entry.held = null;
		this.#call(listener, hello.json, hello.id);
		for (const [json, eventId] of held) this.#call(listener, json, eventId);
		return () => {
			this.#listeners.delete(id);
			this.#native.unsubscribe(id);
		};
	}

	/** The session's queue: the running run, the queued ones, and pi's pending steering and follow-up texts. */
	getQueue(sessionKey) {
		const json = this.#native.getQueue(String(sessionKey));
		return json === null ? undefined : JSON.parse(json);
	}

	abortSession(sessionKey) {
		return this.#native.abort(sessionKey);
	}

	clearQueue(sessionKey) {
		if (!this.#native.clearQueue(sessionKey)) return;
		// pi's own queue, now: a message handed over after this call must not be swept up by a
		// clear that was asked for before it (pi then sends its queue_update).
		for (const entry of this.#sessions.values()) {
			if (entry.key !== sessionKey || typeof entry.session.clearQueue !== "function") continue;
			try {
				entry.session.clearQueue();
			} catch (error) {
				this.#safeLog(`warning: clearing pi's queue of session ${JSON.stringify(sessionKey)} failed: ${errorMessage(error)}`);
			}
		}
	}

	async resetSession(sessionKey) {
		await this.#native.reset(sessionKey);
	}

	listSessions() {
		return JSON.parse(this.#native.list());
	}

	getSession(sessionKey) {
		const json = this.#native.get(sessionKey);
		return json === null ? undefined : JSON.parse(json);
	}

	getGatewaySessionDir(sessionKey) {
		return join(this.#sessionDirRoot, sanitizeSessionKey(sessionKey));
	}

	/** The session's tool calls waiting for a decision, oldest first (SPEC section 13). */
	listApprovals(sessionKey) {
		return JSON.parse(this.#native.listApprovals(String(sessionKey)));
	}

	/**
	 * Decides a pending approval, as `POST /sessions/:key/approvals/:approvalId` does. Throws a
	 * GatewayApprovalError (`status` 404 unknown, 409 already decided, 400 a bad decision).
	 */
	resolveApproval(sessionKey, approvalId, decision) {
		const answer = JSON.parse(this.#native.resolveApproval(String(sessionKey), String(approvalId), toJson(decision ?? {})));
		if (answer.status !== undefined) {
			const { status, error, ...decided } = answer;
			throw new GatewayApprovalError(status, error, Object.keys(decided).length ? decided : undefined);
		}
		return answer;
	}

	/** Counters of what crossed from the agent into Rust: `{ events, eventBytes }`. */
	stats() {
		return this.#native.stats();
	}

	// ---- callbacks from Rust: each answers once through settle(), never throws ----

	/** A line of the gateway's own: `warning: ...` is a warning, anything else information. */
	#safeLog(message) {
		this.#emitLog({ level: message.startsWith("warning:") ? "warn" : "info", message });
	}

	/** A line from Rust: `{level, message, sessionKey?, runId?}` as JSON. */
	#onNativeLog(json) {
		let record;
		try {
			record = JSON.parse(json);
		} catch {
			record = { level: "info", message: String(json) };
		}
		this.#emitLog(record);
	}

	#emitLog(record) {
		const level = LOG_LEVELS.indexOf(record.level);
		if (level < this.#logLevel) return;
		// Without a `log` of the user's, only warnings and errors are worth the console.
		if (!this.#userLog && level < LOG_LEVELS.indexOf("warn")) return;
		let line = record.message;
		if (this.#logFormat === "json") {
			const entry = { time: new Date().toISOString(), level: record.level, message: record.message.replace(/^warning: /, "") };
			if (record.sessionKey !== undefined) entry.sessionKey = record.sessionKey;
			if (record.runId !== undefined) entry.runId = record.runId;
			line = JSON.stringify(entry);
		}
		try {
			this.#log(line);
		} catch {
			// A throwing logger must not take the gateway down.
		}
	}

	#settle(req, ok, value) {
		return this.#native.settle(req, ok, value);
	}

	/**
	 * The text of an error that goes out to HTTP clients: `prefix` plus the error's message with
	 * server paths replaced by `<path>` and stack frames cut (see PATH_TOKEN). When something was
	 * taken out, the whole message goes to the log, for the operator.
	 */
	#publicError(prefix, error, context) {
		const full = `${prefix}${errorMessage(error)}`;
		const shown = redactErrorText(full);
		if (shown !== full) this.#safeLog(`warning: ${context} (the client was sent: ${shown}): ${full}`);
		return shown;
	}

	#onCreate(req, handle, key) {
		let made = null;
		(async () => {
			const session = key === this.#primaryKey ? this.#primarySession : await this.#createSession(key);
			made = session;
			checkSession(session, `createSession(${JSON.stringify(key)}) returned a value that`);
			const entry = { key, session, unsubscribe: () => {}, unhook: () => {} };
			entry.unsubscribe = this.#listen(handle, entry);
			if (this.#native.approvalsActive()) entry.unhook = this.#hookToolCalls(handle, entry);
			this.#sessions.set(handle, entry);
			const info = sessionInfo(session);
			if (!this.#settle(req, true, info)) {
				// Nobody waits any more (timed out, or the gateway stopped): do not leak it.
				this.#sessions.delete(handle);
				entry.unsubscribe();
				entry.unhook();
				if (session !== this.#primarySession) session.dispose();
			}
		})().catch((error) => {
			// A session we got but could not use is not leaked.
			if (made && made !== this.#primarySession && typeof made.dispose === "function") {
				try {
					made.dispose();
				} catch {
					// Already failing; the creation error is what the caller hears about.
				}
			}
			this.#settle(req, false, this.#publicError("createSession failed: ", error, `createSession(${JSON.stringify(key)}) failed`));
		});
	}

	/**
	 * Chains the gateway's approval check onto the session's `agent.beforeToolCall` (SPEC section
	 * 13): the hook the session already has runs first (pi's extensions may block a call
	 * themselves), then Rust answers from `approval.policy` — at once for `allow` and `deny`, after
	 * a person's decision, the timeout or an abort for `ask`. The calls of one assistant message are
	 * asked for together. Returns the function that puts the session's own hook back.
	 */
	#hookToolCalls(handle, entry) {
		const agent = entry.session.agent;
		if (!agent || typeof agent !== "object") {
			this.#safeLog(`warning: session ${JSON.stringify(entry.key)} has no agent: approval.policy cannot apply to it`);
			return () => {};
		}
		const previous = agent.beforeToolCall;
		const n = this.#native;
		const hook = async (context, signal) => {
			if (typeof previous === "function") {
				const earlier = await previous.call(agent, context, signal);
				if (earlier?.block) return earlier;
			}
			const call = context?.toolCall ?? {};
			const content = Array.isArray(context?.assistantMessage?.content) ? context.assistantMessage.content : [];
			const siblings = content
				.filter((part) => part?.type === "toolCall")
				.map((part) => ({ toolCallId: String(part.id), toolName: String(part.name), args: part.id === call.id ? context.args : part.arguments }));
			// pi does not look at its abort signal while this hook waits: an abort from outside the
			// gateway (the host calling session.abort()) denies what is pending, so the run can end.
			const onAbort = () => n.abortApprovals(handle);
			signal?.addEventListener?.("abort", onAbort, { once: true });
			try {
				if (signal?.aborted) onAbort();
				const verdict = JSON.parse(
					await n.approveToolCall(
						handle,
						toJson({ toolCallId: String(call.id), toolName: String(call.name), args: context?.args ?? call.arguments ?? null }),
						toJson(siblings),
					),
				);
				if (verdict.approved) return undefined;
				// Denied by the gateway's abort (abort, cancel, interrupt, reset, stop): pi's run is
				// aborted now, before its loop goes on to the next step, rather than when the abort
				// Rust sent beside this answer reaches it.
				if (verdict.aborted && typeof agent.abort === "function") agent.abort();
				return { block: true, reason: String(verdict.reason ?? "Denied") };
			} catch (error) {
				// Fail closed: a call nobody could approve does not run.
				return { block: true, reason: `Denied: the approval could not be asked for (${errorMessage(error)})` };
			} finally {
				signal?.removeEventListener?.("abort", onAbort);
			}
		};
		agent.beforeToolCall = hook;
		return () => {
			if (agent.beforeToolCall === hook) agent.beforeToolCall = previous;
		};
	}

	#listen(handle, entry) {
		const n = this.#native;
		const session = entry.session;
		const unsubscribe = session.subscribe((event) => {
			try {
				const count = messageCount(session);
				switch (event.type) {
					case "agent_start":
						// Rust re-sends an abort that came before the run was under way.
						n.pushEvent(handle, K.AgentStart, count);
						return;
					case "agent_end":
						n.pushEvent(handle, K.AgentEnd, count);
						return;
					case "compaction_start":
					case "compaction_end":
					case "auto_retry_start":
					case "auto_retry_end":
					case "thinking_level_changed":
					case "session_info_changed": {
						const { type, result, ...fields } = event;
						// A compaction's result carries its whole summary: only its size goes out.
						if (result && typeof result === "object") {
							if (typeof result.tokensBefore === "number") fields.tokensBefore = result.tokensBefore;
						}
						n.pushEvent(handle, K.Info, count, type, null, toJson(fields));
						return;
					}
					case "turn_start":
						n.pushEvent(handle, K.TurnStart, count);
						return;
					case "turn_end":
						n.pushEvent(handle, K.TurnEnd, count);
						return;
					case "message_start":
						n.pushEvent(handle, K.MessageStart, count, String(event.message?.role ?? ""));
						return;
					case "message_update": {
						const e = event.assistantMessageEvent;
						if (!e) return;
						const i = typeof e.contentIndex === "number" ? e.contentIndex : 0;
						switch (e.type) {
							case "text_delta":
								n.pushEvent(handle, K.Token, count, e.delta, null, null, i);
								return;
							case "thinking_delta":
								n.pushEvent(handle, K.Thinking, count, e.delta, null, null, i);
								return;
							case "text_start":
								n.pushEvent(handle, K.TextStart, count, null, null, null, i);
								return;
							case "text_end":
								n.pushEvent(handle, K.TextEnd, count, null, null, null, i);
								return;
							case "thinking_start":
								n.pushEvent(handle, K.ThinkingStart, count, null, null, null, i);
								return;
							case "thinking_end":
								n.pushEvent(handle, K.ThinkingEnd, count, null, null, null, i);
								return;
							case "toolcall_start": {
								const call = e.partial?.content?.[i];
								n.pushEvent(handle, K.ToolcallStart, count, String(call?.id ?? ""), String(call?.name ?? ""), null, i);
								return;
							}
							case "toolcall_delta": {
								const call = e.partial?.content?.[i];
								n.pushEvent(handle, K.ToolcallDelta, count, String(call?.id ?? ""), String(e.delta ?? ""), null, i);
								return;
							}
							case "toolcall_end": {
								const call = e.toolCall ?? e.partial?.content?.[i];
								n.pushEvent(
									handle,
									K.ToolcallEnd,
									count,
									String(call?.id ?? ""),
									String(call?.name ?? ""),
									toJson(call?.arguments ?? {}),
									i,
								);
								return;
							}
						}
						return;
					}
					case "message_end":
						if (event.message?.role === "assistant") {
							const m = event.message;
							const extra = toJson({ usage: m.usage ?? null, model: modelRef({ provider: m.provider, id: m.model }) });
							n.pushEvent(handle, K.MessageComplete, count, messageText(m), typeof m.stopReason === "string" ? m.stopReason : null, extra);
						} else {
							n.pushEvent(handle, K.Touch, count);
						}
						return;
					case "queue_update":
						n.pushEvent(handle, K.QueueUpdate, count, toJson(event.steering ?? []), toJson(event.followUp ?? []));
						return;
					case "tool_execution_start":
						n.pushEvent(handle, K.ToolStart, count, String(event.toolCallId), String(event.toolName), toJson(event.args));
						return;
					case "tool_execution_update":
						n.pushEvent(
							handle,
							K.ToolUpdate,
							count,
							String(event.toolCallId),
							String(event.toolName),
							toJson(event.partialResult),
						);
						return;
					case "tool_execution_end":
						n.pushEvent(
							handle,
							K.ToolEnd,
							count,
							String(event.toolCallId),
							String(event.toolName),
							toJson(event.result),
							event.isError ? 1 : 0,
						);
						return;
					default:
						n.pushEvent(handle, K.Touch, count);
				}
			} catch (error) {
				this.#safeLog(`event forwarding failed: ${errorMessage(error)}`);
			}
		});
		return typeof unsubscribe === "function" ? unsubscribe : () => {};
	}

	#onPrompt(req, handle, text, imagesJson, source, runId, kind) {
		const entry = this.#sessions.get(handle);
		if (!entry) {
			this.#settle(req, false, "The session is gone");
			return;
		}
		const session = entry.session;
		if (kind === "compact") {
			this.#compact(req, entry, text);
			return;
		}
		const before = messageCount(session);
		// Messages handed over (steer / followUp) go into this prompt while it is in flight.
		entry.prompting = runId;
		(async () => {
			const images = imagesJson ? JSON.parse(imagesJson) : undefined;
			await beginRun(session, runId, kind);
			await session.prompt(text, { images, source });
			await finishHandedOver(session);
		})().then(
			() => {
				entry.prompting = null;
				// The run's own last assistant message (not an earlier run's).
				const messages = Array.isArray(session.messages) ? session.messages : [];
				let last;
				for (let i = messages.length - 1; i >= before; i--) {
					if (messages[i]?.role === "assistant") {
						last = messages[i];
						break;
					}
				}
				const modelError = last?.errorMessage;
				const outcome = {
					response: messageText(last),
					stopReason: last?.stopReason ?? null,
					errorMessage:
						modelError === undefined || modelError === null
							? null
							: this.#publicError("", modelError, `the model failed in session ${JSON.stringify(entry.key)}`),
					messageCount: messages.length,
				};
				this.#settle(req, true, JSON.stringify(outcome));
			},
			(error) => {
				entry.prompting = null;
				// Messages handed to this prompt get its failure as their result: none may
				// linger in pi's queue for whichever prompt comes next.
				try {
					if (session.agent?.hasQueuedMessages?.() && typeof session.clearQueue === "function") session.clearQueue();
				} catch (clearError) {
					this.#safeLog(`warning: clearing pi's queue after a failed prompt failed: ${errorMessage(clearError)}`);
				}
				this.#settle(req, false, this.#publicError("", error, `prompt in session ${JSON.stringify(entry.key)} failed`));
			},
		);
	}

	/** A compaction run: `compact(instructions)`; its summary is the run's response. */
	#compact(req, entry, instructions) {
		const session = entry.session;
		(async () => {
			requireMethod(session, "compact");
			return await session.compact(instructions === "" ? undefined : instructions);
		})().then(
			(result) => {
				const outcome = {
					response: typeof result?.summary === "string" ? result.summary : "",
					stopReason: "stop",
					errorMessage: null,
					messageCount: messageCount(session),
				};
				this.#settle(req, true, JSON.stringify(outcome));
			},
			(error) => this.#settle(req, false, this.#publicError("compact failed: ", error, `compact in session ${JSON.stringify(entry.key)} failed`)),
		);
	}

	/** A management call from Rust (see `Op` in src/agent.rs): answers `{value}` or `{status, error}`. */
	#onOp(req, name, handle, key, argsJson) {
		(async () => {
			const args = argsJson ? JSON.parse(argsJson) : {};
			switch (name) {
				case "exists":
					return this.#sessionExists ? Boolean(await this.#sessionExists(key)) : false;
				case "purge":
					if (!this.#deleteSession) throw new OpError(501, "Not supported by this gateway: options.deleteSession()");
					if (args.check) return { ok: true };
					await this.#deleteSession(key);
					return { ok: true };
			}
			const entry = this.#sessions.get(handle);
			if (!entry) throw new OpError(404, `Session not found: ${key}`);
			const session = entry.session;
			switch (name) {
				case "history":
					return historyEntries(session, args.tail);
				case "stats": {
					requireMethod(session, "getSessionStats");
					const { sessionFile, ...stats } = session.getSessionStats();
					return stats;
				}
				case "setName":
					requireMethod(session, "setSessionName");
					session.setSessionName(String(args.name));
					return { name: session.sessionName ?? String(args.name) };
				case "setThinking":
					requireMethod(session, "setThinkingLevel");
					session.setThinkingLevel(String(args.level));
					return { thinkingLevel: session.thinkingLevel ?? String(args.level) };
				case "setModel": {
					requireMethod(session, "setModel");
					const registry = session.modelRegistry;
					if (typeof registry?.find !== "function") throw new OpError(501, "Not supported by this session: modelRegistry");
					const model = registry.find(String(args.provider), String(args.id));
					if (!model) throw new OpError(404, `Model not found: ${args.provider}/${args.id}`);
					if (typeof registry.hasConfiguredAuth === "function" && !registry.hasConfiguredAuth(model)) {
						throw new OpError(400, `No credentials for provider ${model.provider}`);
					}
					await session.setModel(model);
					const ref = modelRef(session.model) ?? modelRef(model);
					this.#native.pushEvent(handle, K.Info, messageCount(session), "model_changed", null, toJson({ model: ref }));
					return { model: ref, thinkingLevel: session.thinkingLevel ?? null };
				}
				case "models": {
					const registry = session.modelRegistry;
					if (typeof registry?.getAvailable !== "function") throw new OpError(501, "Not supported by this session: modelRegistry");
					const models = registry.getAvailable().map((m) => ({
						provider: m.provider,
						id: m.id,
						name: m.name ?? m.id,
						reasoning: Boolean(m.reasoning),
						input: Array.isArray(m.input) ? m.input : ["text"],
						contextWindow: m.contextWindow ?? null,
						maxTokens: m.maxTokens ?? null,
					}));
					return { models, current: modelRef(session.model) };
				}
				case "fresh": {
					// A reset: the conversation on disk is closed and a new, empty one written, so the
					// key's next session (which continues the most recent file) starts afresh.
					const sessionManager = session.sessionManager;
					if (!sessionManager?.isPersisted?.() || typeof sessionManager.newSession !== "function") {
						throw new OpError(501, "Not supported by this session: a stored conversation");
					}
					await settled(session);
					beginConversation(sessionManager);
					return { ok: true };
				}
			}
			throw new OpError(501, `Not supported: ${name}`);
		})().then(
			(value) => this.#settle(req, true, opValue(value)),
			(error) => {
				const status = error instanceof OpError ? error.status : 500;
				const message = error instanceof OpError ? error.message : this.#publicError(`${name} failed: `, error, `${name} of session ${JSON.stringify(key)} failed`);
				this.#settle(req, true, JSON.stringify({ status, error: message }));
			},
		);
	}

	/**
	 * Hands a message to the prompt of run `runId` while it is in flight: `steer()` or
	 * `followUp()`. Answers "1" when it did, "0" when that prompt is no longer in flight (the
	 * gateway then runs the message as a further prompt of the run). The check and the call are
	 * one synchronous step, so the prompt cannot finish in between; one that finishes with the
	 * message still in pi's queue runs it first (finishHandedOver).
	 */
	#onHandOver(req, handle, runId, how, text, imagesJson) {
		const entry = this.#sessions.get(handle);
		const session = entry?.session;
		const method = how === "followUp" ? session?.followUp : session?.steer;
		if (!entry || entry.prompting !== runId || typeof method !== "function") {
			this.#settle(req, true, "0");
			return;
		}
		let pending;
		try {
			const images = imagesJson ? JSON.parse(imagesJson) : undefined;
			pending = method.call(session, text, images);
		} catch (error) {
			pending = Promise.reject(error);
		}
		Promise.resolve(pending).then(
			() => this.#settle(req, true, "1"),
			(error) => this.#settle(req, false, this.#publicError(`${how} failed: `, error, `${how} in session ${JSON.stringify(entry.key)} failed`)),
		);
	}

	#onClearPending(req, handle) {
		const session = this.#sessions.get(handle)?.session;
		try {
			const removed = typeof session?.clearQueue === "function" ? session.clearQueue() : undefined;
			const list = (value) => (Array.isArray(value) ? value.map(String) : []);
			this.#settle(req, true, JSON.stringify({ steering: list(removed?.steering), followUp: list(removed?.followUp) }));
		} catch (error) {
			this.#settle(req, false, this.#publicError("clearQueue failed: ", error, "clearing pi's queue failed"));
		}
	}

	#onAbort(req, handle) {
		const entry = this.#sessions.get(handle);
		if (!entry) {
			this.#settle(req, true, "");
			return;
		}
		(async () => {
			await entry.session.abort();
		})().then(
			() => this.#settle(req, true, ""),
			(error) => this.#settle(req, false, this.#publicError("abort failed: ", error, `abort of session ${JSON.stringify(entry.key)} failed`)),
		);
	}

	#onRelease(req, handle, dispose) {
		const entry = this.#sessions.get(handle);
		this.#sessions.delete(handle);
		if (!entry) {
			this.#settle(req, true, "");
			return;
		}
		(async () => {
			const failures = [];
			const session = entry.session;
			const disposing = dispose && session !== this.#primarySession;
			// A prompt that reached JS after the gateway's abort (it had not begun then, so pi
			// ignored it) is stopped now: pi's dispose() does not stop a running prompt, and the
			// key's next session must not run beside it.
			if (disposing && (entry.prompting || session.isStreaming)) {
				try {
					await session.abort();
				} catch (error) {
					failures.push(`abort failed: ${errorMessage(error)}`);
				}
			}
			try {
				entry.unsubscribe();
				entry.unhook();
			} catch (error) {
				failures.push(`unsubscribe failed: ${errorMessage(error)}`);
			}
			if (disposing) {
				try {
					session.dispose();
				} catch (error) {
					failures.push(`dispose failed: ${errorMessage(error)}`);
				}
			}
			if (failures.length) this.#settle(req, false, failures.join("; "));
			else this.#settle(req, true, "");
		})();
	}

	#onRenew(req, handle) {
		const entry = this.#sessions.get(handle);
		(async () => {
			if (!entry) throw new Error("the session is gone");
			const session = entry.session;
			if (typeof session.newSession === "function") {
				// A session that can start a new conversation itself does (older pi versions).
				await session.newSession();
			} else {
				await renewInPlace(session, (message) => this.#safeLog(message));
			}
			return sessionInfo(session);
		})().then(
			(info) => this.#settle(req, true, info),
			(error) => this.#settle(req, false, this.#publicError("newSession failed: ", error, "resetting the primary session failed")),
		);
	}

	#onDeliver(id, json, eventId) {
		const entry = this.#listeners.get(id);
		if (!entry) return;
		if (json === null || json === undefined) {
			this.#listeners.delete(id);
			return;
		}
		if (entry.held) entry.held.push([json, eventId]);
		else this.#call(entry.listener, json, eventId);
	}

	#call(listener, json, eventId) {
		try {
			listener(JSON.parse(json), eventId);
		} catch (error) {
			this.#safeLog(`subscriber listener threw: ${errorMessage(error)}`);
		}
	}
}
