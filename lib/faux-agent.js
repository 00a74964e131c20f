/**
 * faux-agent — real pi `AgentSession`s driven by pi-ai's offline faux model.
 *
 * Exported as `pi-gateway/faux` (`import { createFauxPiAgent } from "pi-gateway/faux"`), so an
 * embedder can run a gateway with no API key and no network; also used by the `pi-gateway` CLI's
 * default offline mode and by the JS tests. Every session is a real
 * `AgentSession` from `@mariozechner/pi-coding-agent` (its event stream, its tool execution, its
 * session files), but the model is pi-ai's faux provider, so nothing needs an API key and nothing
 * touches the network. Nothing is read from `~/.pi`: auth, models and settings are in memory,
 * extensions/skills/prompt templates/context files are switched off, and sessions are stored
 * under `sessionDir` (default `<agentDir>/sessions`; `agentDir` is a temporary directory unless
 * one is given), or nowhere with `ephemeral: true`. A session continues the most recent
 * conversation stored for its key (pi's `SessionManager.continueRecent`), so a key's conversation
 * survives the gateway's idle eviction and, with a lasting `sessionDir`, a restart.
 *
 * Two models, both with credentials, in the same faux provider and in the sessions' model
 * registry (so `session.setModel()` and the gateway's `PUT /sessions/:key/model` can switch):
 * `faux/faux-1` (the default, `reasoning: false`) and `faux/faux-2` (`reasoning: true`). They
 * answer alike; an assistant message names the model that wrote it. Every assistant message
 * carries pi-ai's usage estimate (input = the prompt's characters / 4, never zero; output = the
 * answer's characters / 4, zero only for `/error`'s empty message; cost 0).
 *
 * The model is scripted by the text of the LAST USER MESSAGE in the context (never by call order),
 * so it is deterministic even when many sessions run at once:
 *
 * | user text          | what the model does |
 * | ------------------ | ------------------- |
 * | anything else      | a thinking block, then a `read` tool call of `hello.txt` (pi really reads the file); on the next call, with the tool result in context, a text answer quoting the file: `hello.txt says: <content>` |
 * | `/echo <text>`     | one text answer `You said: <text>` |
 * | `/long <N>`        | a text answer of exactly N words (see {@link fauxLongText}); each word is one 4-character chunk, so N words give exactly N `text_delta` events |
 * | `/slow <N>`        | the same text as `/long <N>`, streamed at `slowTokensPerSecond` (default 20, i.e. ~50 ms per `text_delta`), so a test can abort it mid-stream |
 * | `/error`           | the model fails: an assistant message with `stopReason: "error"`, `errorMessage: "faux model failure"` and no content |
 * | `/toolfail`        | a `read` tool call of a file that does not exist (the tool really fails), then a text answer `The read tool failed: <error text>` |
 * | `/bash <command>`   | a `bash` tool call `{ command }` (pi's real bash tool runs it in the faux cwd); with ` ;; ` between commands (`/bash echo a ;; echo b`), one assistant message with one `bash` call per command, in order. A command that starts with `@read ` is a `read` tool call of the path after it instead (`/bash echo a ;; @read hello.txt`: a `bash` and a `read` call in one message). On the next call, with the tool results in context, one text answer with one line per call, in order: `bash said: <output>` / `read said: <text>` or, for a failed call (`isError`), `bash failed: <error text>` / `read failed: <error text>` (the tool result's text, trimmed, line breaks made spaces so each call keeps one line). A gateway approval that denies the call makes it fail with the denial text |
 * | `/history`         | one text answer `You said N things before: "<text 1>", "<text 2>", ...` (`You said 0 things before.` when N is 0): N = the user messages in the context before this one (compaction and branch summaries not counted), each text quoted as JSON and cut to 60 characters, at most the first 20 |
 *
 * pi's own summarization requests (`session.compact()`, branch summaries) are recognized by
 * their system prompt and answered with one text `Summary of N messages.`, N = the messages in
 * the conversation pi asks to summarize (user, assistant and tool-result messages as pi
 * serializes them). Auto-compaction and auto-retry are off; `keepRecentTokens` is 1, so a manual
 * `compact()` summarizes all but the last message (pi adds a second request for the start of
 * a turn it cuts, answered the same way).
 *
 * Chunking: the faux provider cuts every text, thinking and tool-argument string into chunks of
 * `tokenSize * 4` characters. We register it with `tokenSize: { min: 1, max: 1 }`, so every chunk is
 * exactly 4 characters, and `/long` words are 4 characters (`w00 `, `w01 `, … `w99 `, `w00 `, …).
 * For `N < 1` or a missing/invalid N, one word is produced.
 *
 * Speed: the faux provider waits `ceil(chunk.length / 4) / tokensPerSecond` seconds between chunks,
 * i.e. `1 / tokensPerSecond` per 4-character chunk; without `tokensPerSecond` it only yields to
 * the microtask queue between chunks (as fast as possible). `tokensPerSecond` is fixed per faux
 * registration, so `/slow` is served by a second registration (same model ids, its own `api`):
 * each session's `agent.streamFn` is wrapped to hand `/slow` requests to that one (to the model
 * of the same id there, so `/slow` on faux-2 is answered by faux-2).
 */

import { existsSync, realpathSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
	AuthStorage,
	createAgentSession,
	DefaultResourceLoader,
	ModelRegistry,
	SessionManager,
	SettingsManager,
} from "@mariozechner/pi-coding-agent";
import { openGatewaySessionManager, sanitizeSessionKey } from "../index.js";

/** @typedef {import("@mariozechner/pi-coding-agent").AgentSession} AgentSession */
/** @typedef {import("@mariozechner/pi-ai").FauxProviderRegistration} FauxProviderRegistration */
/** @typedef {import("@mariozechner/pi-ai").Context} Context */
/** @typedef {import("@mariozechner/pi-ai").AssistantMessage} AssistantMessage */

/** The file `createFauxPiAgent` writes into its cwd for the default command to read. */
export const HELLO_FILE = "hello.txt";
/** The content of {@link HELLO_FILE}. */
export const HELLO_CONTENT = "Hello from the pi-gateway workspace.";
/** The file `/toolfail` tries to read (it never exists). */
export const MISSING_FILE = "missing-file-for-toolfail.txt";
/** What separates several commands in one `/bash` message (one `bash` tool call each). */
export const BASH_SEPARATOR = " ;; ";
/** A `/bash` command that starts with this is a `read` tool call of the path after it (`@read hello.txt`). */
export const READ_PREFIX = "@read ";
/** The tools every faux session has active. */
export const FAUX_TOOLS = ["read", "bash"];
/** `errorMessage` of the assistant message produced by `/error`. */
export const FAUX_ERROR_MESSAGE = "faux model failure";
/** Provider name and model id of the faux model. */
export const FAUX_PROVIDER = "faux";
export const FAUX_MODEL_ID = "faux-1";
/** Id of the second faux model (`reasoning: true`), for model switches. */
export const FAUX_MODEL_2_ID = "faux-2";
/** The API key the faux provider is configured with (in memory; the faux model checks none). */
const FAUX_API_KEY = "faux-offline-key";
/** Both faux models, as pi-ai's registerFauxProvider and pi's ModelRegistry take them. */
const FAUX_MODELS = [
	{
		id: FAUX_MODEL_ID,
		name: "Faux Model (pi-gateway offline)",
		reasoning: false,
		input: ["text", "image"],
		cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
		contextWindow: 128000,
		maxTokens: 16384,
	},
	{
		id: FAUX_MODEL_2_ID,
		name: "Faux Reasoning Model (pi-gateway offline)",
		reasoning: true,
		input: ["text", "image"],
		cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
		contextWindow: 128000,
		maxTokens: 16384,
	},
];
/** Default speed of `/slow`, in 4-character chunks (= words = text_delta events) per second. */
export const DEFAULT_SLOW_TOKENS_PER_SECOND = 20;

/** Every chunk is `tokenSize * 4` characters; 1 makes every chunk 4 characters. */
const TOKEN_SIZE = { min: 1, max: 1 };
/** Largest N accepted by `/long` and `/slow`. */
const MAX_WORDS = 1_000_000;
/** How many copies of the response factory we keep queued in each faux registration. */
const QUEUE_FILL = 256;
const SYSTEM_PROMPT =
	"You are the offline faux model of pi-gateway. Commands: /echo <text>, /long <N>, /slow <N>, /error, /toolfail, /history, /bash <command> [;; <command>...].";
/** How pi's summarization requests (compaction, branch summaries) begin their system prompt. */
const SUMMARIZATION_PROMPT_START = "You are a context summarization assistant.";
/** How pi wraps the conversation it asks to summarize. */
const CONVERSATION_START = "<conversation>\n";
/** How pi's compaction and branch summaries begin once they are turned into user messages. */
const SUMMARY_MESSAGE_STARTS = [
	"The conversation history before this point was compacted into the following summary:",
	"The following is a summary of a branch that this conversation came back from:",
];
/** `/history`: texts shown, and their length. */
const HISTORY_TEXTS = 20;
const HISTORY_TEXT_CHARS = 60;

// pi-ai keeps its API-provider registry in module state, so the faux provider must be registered in
// the very copy of pi-ai that pi-coding-agent streams through. Resolve it from pi-coding-agent's own
// location (this matters for nested installs and pnpm); fall back to our own resolution.
const piAi = await loadPiAi();
const { registerFauxProvider, fauxAssistantMessage, fauxThinking, fauxToolCall } = piAi;

async function loadPiAi() {
	try {
		const agentEntry = realpathSync(fileURLToPath(import.meta.resolve("@mariozechner/pi-coding-agent")));
		const paths = createRequire(agentEntry).resolve.paths("@mariozechner/pi-ai") ?? [];
		for (const dir of paths) {
			const candidate = join(dir, "@mariozechner", "pi-ai", "dist", "index.js");
			if (existsSync(candidate)) return await import(pathToFileURL(realpathSync(candidate)).href);
		}
	} catch {
		// fall through to the plain import below
	}
	return await import("@mariozechner/pi-ai");
}

/**
 * The text `/long <n>` and `/slow <n>` answer with: n words `wNN ` (NN = index mod 100, two digits),
 * 4 characters each, so `fauxLongText(n).length === 4 * n`.
 * @param {number} n
 * @returns {string}
 */
export function fauxLongText(n) {
	let text = "";
	for (let i = 0; i < n; i++) text += `w${String(i % 100).padStart(2, "0")} `;
	return text;
}

/**
 * Parses the command at the start of a user text.
 * @param {string} text
 * @returns {{ name: "default" | "echo" | "long" | "slow" | "error" | "toolfail" | "history" | "bash", arg: string }}
 */
export function parseFauxCommand(text) {
	const match = /^\s*\/(echo|long|slow|error|toolfail|history|bash)(?=\s|$)\s?([\s\S]*)$/.exec(text);
	if (!match) return { name: "default", arg: text };
	return { name: /** @type {any} */ (match[1]), arg: match[2] };
}

/**
 * The commands of a `/bash` argument: split on {@link BASH_SEPARATOR}, each trimmed, empty ones
 * dropped (at least one: an empty argument gives one empty command, which bash runs as nothing).
 * @param {string} arg
 * @returns {string[]}
 */
export function fauxBashCommands(arg) {
	const commands = arg
		.split(BASH_SEPARATOR)
		.map((command) => command.trim())
		.filter((command) => command.length > 0);
	return commands.length > 0 ? commands : [arg.trim()];
}

/**
 * The tool calls of a `/bash` argument, in order: one per command of {@link fauxBashCommands};
 * a command that starts with {@link READ_PREFIX} is a `read` call `{ path }` (the rest, trimmed),
 * any other a `bash` call `{ command }`.
 * @param {string} arg
 * @returns {{ name: "bash" | "read", arguments: { command: string } | { path: string } }[]}
 */
export function fauxBashToolCalls(arg) {
	return fauxBashCommands(arg).map((command) =>
		command.startsWith(READ_PREFIX)
			? { name: "read", arguments: { path: command.slice(READ_PREFIX.length).trim() } }
			: { name: "bash", arguments: { command } },
	);
}

/** A tool result's text on one line: trimmed, every run of white space holding a line break made one space. */
function oneLine(text) {
	return text.trim().replace(/\s*\n\s*/g, " ");
}

/** Word count for /long and /slow: a positive integer, 1 when missing or invalid. */
function wordCount(arg) {
	const n = Number.parseInt(arg, 10);
	return Number.isFinite(n) && n >= 1 ? Math.min(n, MAX_WORDS) : 1;
}

/** Text of a message's content (a string, or text blocks joined). */
function contentText(content) {
	if (typeof content === "string") return content;
	if (!Array.isArray(content)) return "";
	return content
		.filter((block) => block && block.type === "text")
		.map((block) => block.text)
		.join("");
}

/**
 * The last user message's text, and the tool results that came after it (the current turn's).
 * @param {Context} context
 */
function currentTurn(context) {
	const messages = context.messages ?? [];
	let userIndex = -1;
	for (let i = messages.length - 1; i >= 0; i--) {
		if (messages[i].role === "user") {
			userIndex = i;
			break;
		}
	}
	const userText = userIndex >= 0 ? contentText(messages[userIndex].content) : "";
	const toolResults = messages.slice(userIndex + 1).filter((message) => message.role === "toolResult");
	return { userText, toolResults };
}

/** Whether a user message is one of pi's compaction or branch summaries, not something the user said. */
function isSummaryMessage(text) {
	return SUMMARY_MESSAGE_STARTS.some((start) => text.startsWith(start));
}

/**
 * `/history`: what the user said before the last user message, in this context.
 * @param {Context} context
 */
function historyAnswer(context) {
	const messages = context.messages ?? [];
	let last = messages.length - 1;
	while (last >= 0 && messages[last].role !== "user") last--;
	const said = messages
		.slice(0, Math.max(last, 0))
		.filter((message) => message.role === "user")
		.map((message) => contentText(message.content))
		.filter((text) => !isSummaryMessage(text));
	if (said.length === 0) return "You said 0 things before.";
	const cut = (text) => (text.length > HISTORY_TEXT_CHARS ? `${text.slice(0, HISTORY_TEXT_CHARS - 3)}...` : text);
	const shown = said.slice(0, HISTORY_TEXTS).map((text) => JSON.stringify(cut(text)));
	if (said.length > HISTORY_TEXTS) shown.push("...");
	return `You said ${said.length} things before: ${shown.join(", ")}`;
}

/**
 * When `context` is one of pi's summarization requests (compaction, a turn prefix, a branch
 * summary), the number of messages it asks to summarize; otherwise undefined. pi serializes the
 * conversation as paragraphs `[User]: ...`, `[Assistant thinking]: ...`, `[Assistant]: ...`,
 * `[Assistant tool calls]: ...`, `[Tool result]: ...` (an assistant message gives one to three
 * consecutive ones).
 * @param {Context} context
 * @returns {number | undefined}
 */
function summarizedMessageCount(context) {
	if (typeof context.systemPrompt !== "string" || !context.systemPrompt.startsWith(SUMMARIZATION_PROMPT_START)) return undefined;
	const { userText } = currentTurn(context);
	if (!userText.startsWith(CONVERSATION_START)) return undefined;
	const end = userText.indexOf("\n</conversation>");
	const conversation = userText.slice(CONVERSATION_START.length, end < 0 ? undefined : end);
	let count = 0;
	let previous = "";
	for (const match of conversation.matchAll(/(?:^|\n\n)\[(User|Assistant|Assistant thinking|Assistant tool calls|Tool result)\]: /g)) {
		const assistant = match[1].startsWith("Assistant");
		if (!(assistant && previous.startsWith("Assistant"))) count++;
		previous = match[1];
	}
	return count;
}

/**
 * The scripted model: one assistant message per model call, decided by the last user message.
 * @param {Context} context
 * @returns {AssistantMessage}
 */
function scriptedResponse(context) {
	const summarized = summarizedMessageCount(context);
	if (summarized !== undefined) return fauxAssistantMessage(`Summary of ${summarized} messages.`);
	const { userText, toolResults } = currentTurn(context);
	const command = parseFauxCommand(userText);
	const lastResult = toolResults[toolResults.length - 1];
	switch (command.name) {
		case "echo":
			return fauxAssistantMessage(`You said: ${command.arg}`);
		case "history":
			return fauxAssistantMessage(historyAnswer(context));
		case "long":
		case "slow":
			return fauxAssistantMessage(fauxLongText(wordCount(command.arg)));
		case "error":
			return fauxAssistantMessage([], { stopReason: "error", errorMessage: FAUX_ERROR_MESSAGE });
		case "toolfail":
			if (lastResult) {
				return fauxAssistantMessage(`The read tool failed: ${contentText(lastResult.content)}`);
			}
			return fauxAssistantMessage(fauxToolCall("read", { path: MISSING_FILE }), { stopReason: "toolUse" });
		case "bash":
			// Second call of the turn: one line per tool result, in the order of the calls, named by its tool.
			if (lastResult) {
				return fauxAssistantMessage(
					toolResults
						.map((result) => `${result.toolName} ${result.isError ? "failed" : "said"}: ${oneLine(contentText(result.content))}`)
						.join("\n"),
				);
			}
			return fauxAssistantMessage(
				fauxBashToolCalls(command.arg).map((call) => fauxToolCall(call.name, call.arguments)),
				{ stopReason: "toolUse" },
			);
		default: {
			// Second call of the turn: the read result is in context, answer with it.
			if (lastResult) {
				return fauxAssistantMessage(`${HELLO_FILE} says: ${contentText(lastResult.content)}`);
			}
			const asked = userText.length > 60 ? `${userText.slice(0, 57)}...` : userText;
			return fauxAssistantMessage(
				[
					fauxThinking(`The user asked "${asked}". I will look at the workspace file ${HELLO_FILE}.`),
					fauxToolCall("read", { path: HELLO_FILE }),
				],
				{ stopReason: "toolUse" },
			);
		}
	}
}

/**
 * Registers a faux provider whose every call is answered by {@link scriptedResponse}.
 * The faux provider consumes one queued step per call; we keep the queue topped up with the same
 * factory (refilled from inside the factory), so it never runs dry, however many sessions run.
 * @param {number | undefined} tokensPerSecond
 * @returns {FauxProviderRegistration}
 */
function registerScriptedFaux(tokensPerSecond) {
	const registration = registerFauxProvider({
		provider: FAUX_PROVIDER,
		models: FAUX_MODELS,
		tokenSize: TOKEN_SIZE,
		tokensPerSecond,
	});
	/** @type {import("@mariozechner/pi-ai").FauxResponseFactory} */
	const factory = (context) => {
		const missing = QUEUE_FILL - registration.getPendingResponseCount();
		if (missing > 0) registration.appendResponses(new Array(missing).fill(factory));
		return scriptedResponse(context);
	};
	registration.setResponses(new Array(QUEUE_FILL).fill(factory));
	return registration;
}

/**
 * Adds `session` to `sessions` (the live ones) until it is disposed: its `dispose()` is wrapped
 * to take it out of the set first. The gateway disposes the sessions it evicts or resets, so
 * the set holds only live sessions and an evicted one can be garbage-collected.
 * @param {Set<AgentSession>} sessions
 * @param {AgentSession} session
 * @returns {AgentSession} the same session
 */
export function trackSession(sessions, session) {
	sessions.add(session);
	const dispose = session.dispose;
	session.dispose = function (...args) {
		sessions.delete(session);
		return dispose.apply(this, args);
	};
	return session;
}

/**
 * Aborts what still runs and disposes every (live) session in the set, then empties it.
 * Best effort: a session the gateway already disposed is fine.
 * @param {Set<AgentSession>} sessions
 */
export async function closeSessions(sessions) {
	for (const session of [...sessions]) {
		try {
			if (session.isStreaming) await session.abort();
		} catch {
			// still dispose it
		}
		try {
			session.dispose();
		} catch {
			// already disposed by its owner
		}
	}
	sessions.clear();
}

/**
 * Where a gateway's sessions live under one directory `root`: the primary session in
 * `<root>/primary`, the session of key `k` in `<root>/gateway-sessions/<sanitizeSessionKey(k)>`
 * (the directory GatewayRuntime's `getGatewaySessionDir(k)` names for a primary session stored in
 * `<root>/primary`). `sessionExists` and `deleteSession` are what GatewayRuntime's options of
 * the same names expect.
 * @param {string} root
 */
export function gatewaySessionStore(root) {
	const keysRoot = join(root, "gateway-sessions");
	const keyDir = (key) => join(keysRoot, sanitizeSessionKey(key));
	return {
		root,
		primaryDir: join(root, "primary"),
		/** Parent of the keys' directories (`openGatewaySessionManager`'s `sessionDirRoot`). */
		keysRoot,
		keyDir,
		/** Whether a pi session file (`*.jsonl`) is stored for `key`. */
		async sessionExists(key) {
			try {
				return (await readdir(keyDir(key))).some((name) => name.endsWith(".jsonl"));
			} catch {
				return false;
			}
		},
		/** Removes everything stored for `key` (its directory). */
		async deleteSession(key) {
			await rm(keyDir(key), { recursive: true, force: true });
		},
	};
}

/**
 * Creates real pi `AgentSession`s on the offline faux model.
 *
 * Sessions are stored as pi session files under `sessionDir` (see {@link gatewaySessionStore}):
 * the primary session in `<sessionDir>/primary`, the ones from `createSession(key)` in
 * `<sessionDir>/gateway-sessions/<sanitized key>` (the directory the gateway derives from the
 * primary session's dir). Each continues the most recent session file of its directory (pi's
 * `SessionManager.continueRecent`, through pi-gateway's `openGatewaySessionManager`), or starts
 * one; a continued session keeps the model and thinking level it had. The `read` and `bash`
 * tools are active ({@link FAUX_TOOLS}; pi's real tools, run in `cwd`).
 *
 * @param {{ cwd?: string, agentDir?: string, sessionDir?: string, ephemeral?: boolean, tokensPerSecond?: number, slowTokensPerSecond?: number }} [options]
 *   `cwd`: the workspace the tools run in (default: a new temporary directory).
 *   `agentDir`: pi's config directory (default: a new temporary directory).
 *   `sessionDir`: where session files are stored (default: `<agentDir>/sessions`).
 *   `ephemeral`: keep sessions in memory only (pi's `SessionManager.inMemory`): nothing is
 *   written, a key's conversation ends with its session, `sessionExists` answers false.
 *   `tokensPerSecond`: streaming speed of every command but `/slow`, in 4-character chunks per
 *   second (default: unthrottled). `slowTokensPerSecond`: the speed of `/slow` (default 20).
 * @returns {Promise<{
 *   primarySession: AgentSession,
 *   createSession: (key: string) => Promise<AgentSession>,
 *   sessionExists: (key: string) => Promise<boolean>,
 *   deleteSession: (key: string) => Promise<void>,
 *   cwd: string,
 *   agentDir: string,
 *   sessionDir: string | undefined,
 *   faux: FauxProviderRegistration,
 *   close: () => Promise<void>,
 * }>}
 *   `faux` is the registration of the main model (its `state.callCount` counts model calls; do not
 *   call `setResponses` on it). `close()` aborts and disposes every session it created that is not
 *   disposed yet (it keeps no reference to a disposed one, see {@link trackSession}), unregisters
 *   both faux providers, and removes what it created (temporary dirs, or `hello.txt` in a given
 *   cwd; a given `sessionDir` is kept). `sessionExists(key)`: whether a session file is stored for
 *   `key`; `deleteSession(key)` removes the key's directory (both for GatewayRuntime's options of
 *   the same names). `sessionDir` is undefined when `ephemeral`.
 */
export async function createFauxPiAgent(options = {}) {
	/** Paths to remove on close: temp dirs we made, or the hello file we wrote into a given cwd. */
	const created = [];
	const cwd = options.cwd ? resolve(options.cwd) : await mkdtemp(join(tmpdir(), "pi-gateway-faux-cwd-"));
	if (!options.cwd) created.push(cwd);
	const agentDir = options.agentDir
		? resolve(options.agentDir)
		: await mkdtemp(join(tmpdir(), "pi-gateway-faux-agent-"));
	if (!options.agentDir) created.push(agentDir);
	const ephemeral = options.ephemeral === true;
	const store = gatewaySessionStore(options.sessionDir ? resolve(options.sessionDir) : join(agentDir, "sessions"));

	await mkdir(cwd, { recursive: true });
	await mkdir(agentDir, { recursive: true });
	const helloPath = join(cwd, HELLO_FILE);
	if (!existsSync(helloPath)) {
		await writeFile(helloPath, HELLO_CONTENT);
		if (options.cwd) created.push(helloPath);
	}

	const faux = registerScriptedFaux(options.tokensPerSecond);
	const slowFaux = registerScriptedFaux(options.slowTokensPerSecond ?? DEFAULT_SLOW_TOKENS_PER_SECOND);

	// In-memory auth: the faux provider needs no key, but AgentSession.prompt() insists that the
	// model's provider has one configured.
	const authStorage = AuthStorage.inMemory();
	authStorage.setRuntimeApiKey(FAUX_PROVIDER, FAUX_API_KEY);
	// Both faux models in the registry (served by the main registration's `api`), so a session
	// can switch to either (`setModel`) and a continued session finds the model it was on.
	const modelRegistry = ModelRegistry.inMemory(authStorage);
	modelRegistry.registerProvider(FAUX_PROVIDER, {
		name: "Faux (pi-gateway offline)",
		baseUrl: faux.models[0].baseUrl,
		apiKey: FAUX_API_KEY,
		api: faux.api,
		models: FAUX_MODELS,
	});
	const model = /** @type {NonNullable<ReturnType<ModelRegistry["find"]>>} */ (modelRegistry.find(FAUX_PROVIDER, FAUX_MODEL_ID));

	/** The live sessions: a disposed one leaves the set (see trackSession). */
	/** @type {Set<AgentSession>} */
	const sessions = new Set();
	let closed = false;

	/** @param {() => import("@mariozechner/pi-coding-agent").SessionManager} openSessionManager */
	async function newSession(openSessionManager) {
		if (closed) throw new Error("createFauxPiAgent: already closed");
		// Settings in memory: no ~/.pi or <cwd>/.pi settings; no auto-compaction (it would call the
		// model to summarize) and no auto-retry, so every prompt makes exactly the calls scripted
		// above. keepRecentTokens 1: a manual compact() summarizes all but the last message. The
		// default model is where a continued session whose model is gone falls back to.
		const settingsManager = SettingsManager.inMemory({
			defaultProvider: FAUX_PROVIDER,
			defaultModel: FAUX_MODEL_ID,
			defaultThinkingLevel: "off",
			compaction: { enabled: false, keepRecentTokens: 1 },
			retry: { enabled: false },
		});
		const resourceLoader = new DefaultResourceLoader({
			cwd,
			agentDir,
			settingsManager,
			noExtensions: true,
			noSkills: true,
			noPromptTemplates: true,
			noThemes: true,
			noContextFiles: true,
			systemPrompt: SYSTEM_PROMPT,
		});
		await resourceLoader.reload();
		const sessionManager = openSessionManager();
		// A continued conversation keeps its model and thinking level (pi restores them from the
		// session file when none is given); a new one starts on faux-1, thinking off.
		const continued = sessionManager.buildSessionContext().messages.length > 0;
		const { session } = await createAgentSession({
			cwd,
			agentDir,
			model: continued ? undefined : model,
			thinkingLevel: continued ? undefined : "off",
			authStorage,
			modelRegistry,
			settingsManager,
			resourceLoader,
			sessionManager,
			tools: [...FAUX_TOOLS],
		});
		// Hand `/slow` requests to the throttled registration (its model of the same id);
		// everything else to the main one. `cacheRetention: "none"`: pi-ai's faux provider
		// simulates prompt caching in a map keyed by session id that it never empties (about 1 KB
		// per session ever run); without it, a long-running gateway would keep something of every
		// session it evicted.
		const streamFn = session.agent.streamFn;
		session.agent.streamFn = (requestModel, context, streamOptions) => {
			const slow = parseFauxCommand(currentTurn(context).userText).name === "slow";
			const target = slow ? (slowFaux.getModel(requestModel.id) ?? slowFaux.getModel()) : requestModel;
			return streamFn(target, context, { ...streamOptions, cacheRetention: "none" });
		};
		return trackSession(sessions, session);
	}

	const primarySession = await newSession(() =>
		ephemeral ? SessionManager.inMemory(cwd) : SessionManager.continueRecent(cwd, store.primaryDir),
	);

	return {
		primarySession,
		createSession: (key) =>
			newSession(() =>
				ephemeral ? SessionManager.inMemory(cwd) : openGatewaySessionManager(cwd, key, store.keysRoot),
			),
		sessionExists: async (key) => (ephemeral ? false : store.sessionExists(key)),
		deleteSession: async (key) => {
			if (!ephemeral) await store.deleteSession(key);
		},
		cwd,
		agentDir,
		sessionDir: ephemeral ? undefined : store.root,
		faux,
		async close() {
			if (closed) return;
			closed = true;
			await closeSessions(sessions);
			faux.unregister();
			slowFaux.unregister();
			for (const path of created.reverse()) await rm(path, { recursive: true, force: true });
		},
	};
}
