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
 * under `agentDir` (a temporary directory unless one is given).
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
 *
 * Chunking: the faux provider cuts every text, thinking and tool-argument string into chunks of
 * `tokenSize * 4` characters. We register it with `tokenSize: { min: 1, max: 1 }`, so every chunk is
 * exactly 4 characters, and `/long` words are 4 characters (`w00 `, `w01 `, … `w99 `, `w00 `, …).
 * For `N < 1` or a missing/invalid N, one word is produced.
 *
 * Speed: the faux provider waits `ceil(chunk.length / 4) / tokensPerSecond` seconds between chunks,
 * i.e. `1 / tokensPerSecond` per 4-character chunk; without `tokensPerSecond` it only yields to
 * the microtask queue between chunks (as fast as possible). `tokensPerSecond` is fixed per faux
 * registration, so `/slow` is served by a second registration (same model id, its own `api`):
 * each session's `agent.streamFn` is wrapped to hand `/slow` requests to that one.
 */

import { existsSync, realpathSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
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
import { sanitizeSessionKey } from "../index.js";

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
/** `errorMessage` of the assistant message produced by `/error`. */
export const FAUX_ERROR_MESSAGE = "faux model failure";
/** Provider name and model id of the faux model. */
export const FAUX_PROVIDER = "faux";
export const FAUX_MODEL_ID = "faux-1";
/** Default speed of `/slow`, in 4-character chunks (= words = text_delta events) per second. */
export const DEFAULT_SLOW_TOKENS_PER_SECOND = 20;

/** Every chunk is `tokenSize * 4` characters; 1 makes every chunk 4 characters. */
const TOKEN_SIZE = { min: 1, max: 1 };
/** Largest N accepted by `/long` and `/slow`. */
const MAX_WORDS = 1_000_000;
/** How many copies of the response factory we keep queued in each faux registration. */
const QUEUE_FILL = 256;
const SYSTEM_PROMPT =
	"You are the offline faux model of pi-gateway. Commands: /echo <text>, /long <N>, /slow <N>, /error, /toolfail.";

// pi-ai keeps its API-provider registry in module state, so the faux provider must be registered in
// the very copy of pi-ai that pi-coding-agent streams through. Resolve it from pi-coding-agent's own
// location (this matters for nested installs and pnpm); fall back to our own resolution.
const piAi = await loadPiAi();
const { registerFauxProvider, fauxAssistantMessage, fauxText, fauxThinking, fauxToolCall } = piAi;

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
 * @returns {{ name: "default" | "echo" | "long" | "slow" | "error" | "toolfail", arg: string }}
 */
export function parseFauxCommand(text) {
	const match = /^\s*\/(echo|long|slow|error|toolfail)(?=\s|$)\s?([\s\S]*)$/.exec(text);
	if (!match) return { name: "default", arg: text };
	return { name: /** @type {any} */ (match[1]), arg: match[2] };
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

/**
 * The scripted model: one assistant message per model call, decided by the last user message.
 * @param {Context} context
 * @returns {AssistantMessage}
 */
function scriptedResponse(context) {
	const { userText, toolResults } = currentTurn(context);
	const command = parseFauxCommand(userText);
	const lastResult = toolResults[toolResults.length - 1];
	switch (command.name) {
		case "echo":
			return fauxAssistantMessage(`You said: ${command.arg}`);
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
		models: [{ id: FAUX_MODEL_ID, name: "Faux Model (pi-gateway offline)", reasoning: false }],
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
 * Creates real pi `AgentSession`s on the offline faux model.
 *
 * Sessions are stored as pi session files: the primary session in `<agentDir>/sessions/primary`,
 * the ones from `createSession(key)` in `<agentDir>/sessions/gateway-sessions/<sanitized key>` (the
 * directory the gateway derives from the primary session's dir). Only the `read` tool is active.
 *
 * @param {{ cwd?: string, agentDir?: string, tokensPerSecond?: number, slowTokensPerSecond?: number }} [options]
 *   `cwd`: the workspace the tools run in (default: a new temporary directory).
 *   `agentDir`: pi's config/session directory (default: a new temporary directory).
 *   `tokensPerSecond`: streaming speed of every command but `/slow`, in 4-character chunks per
 *   second (default: unthrottled). `slowTokensPerSecond`: the speed of `/slow` (default 20).
 * @returns {Promise<{
 *   primarySession: AgentSession,
 *   createSession: (key: string) => Promise<AgentSession>,
 *   cwd: string,
 *   agentDir: string,
 *   faux: FauxProviderRegistration,
 *   close: () => Promise<void>,
 * }>}
 *   `faux` is the registration of the main model (its `state.callCount` counts model calls; do not
 *   call `setResponses` on it). `close()` aborts and disposes every session it created that is not
 *   disposed yet (it keeps no reference to a disposed one, see {@link trackSession}), unregisters
 *   both faux providers, and removes what it created (temporary dirs, or `hello.txt` in a given cwd).
 *   `createSession(key)` stores the session in the directory `getGatewaySessionDir(key)` names for a
 *   gateway whose primary session is this one (`sanitizeSessionKey`).
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

	await mkdir(cwd, { recursive: true });
	await mkdir(agentDir, { recursive: true });
	const helloPath = join(cwd, HELLO_FILE);
	if (!existsSync(helloPath)) {
		await writeFile(helloPath, HELLO_CONTENT);
		if (options.cwd) created.push(helloPath);
	}

	const faux = registerScriptedFaux(options.tokensPerSecond);
	const slowFaux = registerScriptedFaux(options.slowTokensPerSecond ?? DEFAULT_SLOW_TOKENS_PER_SECOND);
	const model = faux.getModel();
	const slowModel = slowFaux.getModel();

	// In-memory auth: the faux provider needs no key, but AgentSession.prompt() insists that the
	// model's provider has one configured.
	const authStorage = AuthStorage.inMemory();
	authStorage.setRuntimeApiKey(FAUX_PROVIDER, "faux-offline-key");
	const modelRegistry = ModelRegistry.inMemory(authStorage);
	const sessionsRoot = join(agentDir, "sessions");

	/** The live sessions: a disposed one leaves the set (see trackSession). */
	/** @type {Set<AgentSession>} */
	const sessions = new Set();
	let closed = false;

	/** @param {string} sessionDir */
	async function newSession(sessionDir) {
		if (closed) throw new Error("createFauxPiAgent: already closed");
		// Settings in memory: no ~/.pi or <cwd>/.pi settings; no auto-compaction (it would call the
		// model to summarize) and no auto-retry, so every prompt makes exactly the calls scripted above.
		const settingsManager = SettingsManager.inMemory({
			compaction: { enabled: false },
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
		const { session } = await createAgentSession({
			cwd,
			agentDir,
			model,
			thinkingLevel: "off",
			authStorage,
			modelRegistry,
			settingsManager,
			resourceLoader,
			sessionManager: SessionManager.create(cwd, sessionDir),
			tools: ["read"],
		});
		// Hand `/slow` requests to the throttled registration; everything else to the main one.
		// `cacheRetention: "none"`: pi-ai's faux provider simulates prompt caching in a map keyed
		// by session id that it never empties (about 1 KB per session ever run); without it, a
		// long-running gateway would keep something of every session it evicted.
		const streamFn = session.agent.streamFn;
		session.agent.streamFn = (requestModel, context, streamOptions) => {
			const slow = parseFauxCommand(currentTurn(context).userText).name === "slow";
			return streamFn(slow ? slowModel : requestModel, context, { ...streamOptions, cacheRetention: "none" });
		};
		return trackSession(sessions, session);
	}

	const primarySession = await newSession(join(sessionsRoot, "primary"));

	return {
		primarySession,
		createSession: (key) => newSession(join(sessionsRoot, "gateway-sessions", sanitizeSessionKey(key))),
		cwd,
		agentDir,
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
