// Shared by the issue-14 tests (SPEC §12: history, session management, fidelity, maxSessions):
// - `startHistoryGateway(...)`: a GatewayRuntime in this process in front of real pi AgentSessions
//   on the faux model (lib/faux-agent.js), with the new runtime options `sessionExists` and
//   `deleteSession` (the agent's own, recorded), an optional faux script (as startPiGateway), and
//   a given agent (to restart a gateway on the same session directory);
// - the history route: `getHistory`, `walkHistory`, `historyPath`;
// - what a history must be: `validateUi` (validateUIMessages of ai v5, v6 and v7), `checkUiKeys`
//   (no field outside the contract), and `expectedUi(piEntries, runIds)`, the UIMessage[] the
//   contract derives from pi's own message entries (a reference written from the contract);
// - pi's side: `piBranch(session)` (its message entries on the current branch, as `format=pi`
//   serves them), `sumUsage`, `piUsage`, `userContentText`;
// - small things: `enc`, `png` (a real 1×1 PNG, base64), `postJson`, `openEvents`.

import assert from "node:assert/strict";
import { GatewayRuntime } from "../../index.js";
import { baseConfig } from "./gateway.mjs";
import { request } from "./http.mjs";
import { png as pngBase64 } from "./safe-util.mjs";
import { openSse } from "./sse.mjs";
import { EMPTY_USAGE } from "./sessions.mjs";
import { SDKS } from "./ui-chunks.mjs";
import { SOON_MS, within } from "./wait.mjs";

export { SDKS };

export const enc = encodeURIComponent;

/** The base64 of a real 1×1 PNG. */
export const PNG_B64 = pngBase64();

/** A `data:` URL of {@link PNG_B64}. */
export const PNG_URL = `data:image/png;base64,${PNG_B64}`;

/** The exact error texts of the history route (contract). */
export const INVALID_FORMAT = "Invalid format: expected ui or pi";
export const INVALID_LIMIT = "Invalid limit: expected an integer from 1 to 1000";
export const INVALID_BEFORE = (id) => `Invalid before: no message with id ${id}`;

// ---------------------------------------------------------------------------------------------
// The gateway

/**
 * Starts a faux pi agent (unless `agent` is given) and a GatewayRuntime in front of it, on
 * 127.0.0.1:0.
 * - `config`: merged over the tests' minimal config (`session` field by field);
 * - `faux`: options of createFauxPiAgent (when it creates the agent);
 * - `agent`: an agent to use instead (not closed by `close()`), e.g. one on a kept agentDir;
 * - `sessionExists` / `deleteSession`: true (default) passes the agent's own function (each call
 *   recorded in `existsCalls` / `deleted`), false passes none, a function passes that one;
 * - `script`: `{registration, when?}` as startPiGateway: sessions (the primary too) use its model
 *   for the calls where `when(context)` holds; unregistered on close;
 * - `createSession`: replaces the agent's factory (the sessions it makes are not adopted);
 * - `onSession(key, session)`: called with every session handed to the gateway (primary included);
 * - `primaryKey` (default "main").
 * Returns `{runtime, agent, port, base, sessions (key → latest AgentSession), deleted,
 * existsCalls, logs, close()}`.
 */
export async function startHistoryGateway({
	config = {},
	faux = {},
	agent: givenAgent,
	sessionExists = true,
	deleteSession = true,
	script,
	createSession,
	onSession,
	primaryKey = "main",
} = {}) {
	const { createFauxPiAgent } = await import("../../lib/faux-agent.js");
	const agent = givenAgent ?? (await createFauxPiAgent(faux));
	const sessions = new Map();
	const deleted = [];
	const existsCalls = [];
	const logs = [];
	const adopt = (key, session) => {
		if (script) {
			const model = script.registration.getModel();
			const streamFn = session.agent.streamFn;
			session.agent.streamFn = (given, context, options) =>
				streamFn(!script.when || script.when(context) ? model : given, context, options);
		}
		sessions.set(key, session);
		onSession?.(key, session);
		return session;
	};
	const options = {
		config: baseConfig({
			...config,
			session: { idleMinutes: 10, maxQueuePerSession: 16, ...config.session },
		}),
		primarySessionKey: primaryKey,
		primarySession: adopt(primaryKey, agent.primarySession),
		createSession: createSession ?? (async (key) => adopt(key, await agent.createSession(key))),
		log: (line) => logs.push(line),
	};
	if (sessionExists === true) {
		assert.equal(typeof agent.sessionExists, "function", "createFauxPiAgent() returns sessionExists(key) (contract)");
		options.sessionExists = (key) => {
			existsCalls.push(key);
			return agent.sessionExists(key);
		};
	} else if (typeof sessionExists === "function") {
		options.sessionExists = sessionExists;
	}
	if (deleteSession === true) {
		assert.equal(typeof agent.deleteSession, "function", "createFauxPiAgent() returns deleteSession(key) (contract)");
		options.deleteSession = (key) => {
			deleted.push(key);
			return agent.deleteSession(key);
		};
	} else if (typeof deleteSession === "function") {
		options.deleteSession = deleteSession;
	}
	let runtime;
	try {
		runtime = new GatewayRuntime(options);
		await runtime.start();
	} catch (error) {
		if (!givenAgent) await agent.close();
		script?.registration.unregister();
		throw error;
	}
	const port = runtime.getAddress().port;
	let closing;
	return {
		runtime,
		agent,
		port,
		base: `http://127.0.0.1:${port}`,
		sessions,
		deleted,
		existsCalls,
		logs,
		close() {
			closing ??= (async () => {
				try {
					await within(runtime.stop(), SOON_MS, "the gateway to stop");
				} finally {
					if (!givenAgent) await agent.close();
					script?.registration.unregister();
				}
			})();
			return closing;
		},
	};
}

// ---------------------------------------------------------------------------------------------
// HTTP

/** A JSON request on its own connection; `body` as JSON (or a string as is). */
export function postJson(port, method, path, body, options = {}) {
	return request(port, method, path, { body, ...options });
}

/** POST /sessions/:key/messages (waits for the run), asserting a 200 ok answer with a runId. */
export async function say(port, key, text, extra = {}, { timeoutMs = 20_000 } = {}) {
	const r = await request(port, "POST", `/sessions/${enc(key)}/messages`, { body: { text, ...extra }, timeoutMs });
	assert.equal(r.status, 200, `POST ${key}/messages ${JSON.stringify(text)}: ${r.status} ${r.text.slice(0, 400)}`);
	assert.equal(r.json.ok, true, `POST ${key}/messages ${JSON.stringify(text)}: ${r.text.slice(0, 400)}`);
	assert.equal(r.headers["x-run-id"], r.json.runId, "x-run-id repeats the runId");
	return r.json;
}

/** Opens the event stream of `key` and waits for its hello. */
export async function openEvents(port, key) {
	const sse = await openSse(port, `/sessions/${enc(key)}/events`);
	assert.equal(sse.status, 200, `GET ${key}/events: ${sse.status}`);
	await sse.waitFor((f) => f.data?.type === "hello", 10_000, `hello of ${key}`);
	return sse;
}

/** The path of the history route with its query (`undefined` values left out, others as given). */
export function historyPath(key, query = {}) {
	const q = Object.entries(query)
		.filter(([, v]) => v !== undefined)
		.map(([k, v]) => `${k}=${enc(String(v))}`)
		.join("&");
	return `/sessions/${enc(key)}/messages${q ? `?${q}` : ""}`;
}

/**
 * GET the history of `key` and check the envelope: 200 `{sessionKey, format, messages, hasMore}`
 * (exactly those fields), `format` as asked (default ui). Returns the body.
 */
export async function getHistory(port, key, query = {}, what = `history of ${key}`) {
	const path = historyPath(key, query);
	const r = await request(port, "GET", path, { timeoutMs: 20_000 });
	assert.equal(r.status, 200, `${what}: GET ${path}: ${r.status} ${r.text.slice(0, 400)}`);
	assert.match(String(r.headers["content-type"]), /^application\/json/, `${what}: JSON`);
	assert.deepEqual(Object.keys(r.json).sort(), ["format", "hasMore", "messages", "sessionKey"], `${what}: fields of ${r.text.slice(0, 300)}`);
	assert.equal(r.json.sessionKey, key, `${what}: sessionKey`);
	assert.equal(r.json.format, query.format ?? "ui", `${what}: format`);
	assert.ok(Array.isArray(r.json.messages), `${what}: messages is an array`);
	assert.equal(typeof r.json.hasMore, "boolean", `${what}: hasMore is a boolean`);
	return r.json;
}

/**
 * Walks the whole history of `key` from the end, `limit` messages a page (`before` = the first id
 * of the page just read), until `hasMore` is false. Checks every page: at most `limit` messages,
 * a full page whenever more exist. Returns `{messages (oldest first), pages}`.
 */
export async function walkHistory(port, key, { format, limit } = {}) {
	const pages = [];
	let before;
	for (let guard = 0; guard < 10_000; guard++) {
		const page = await getHistory(port, key, { format, limit, before }, `page ${pages.length} (limit ${limit}, before ${before})`);
		pages.push(page);
		const max = limit ?? 100;
		assert.ok(page.messages.length <= max, `a page holds at most ${max} messages, got ${page.messages.length}`);
		if (page.hasMore) {
			assert.equal(page.messages.length, max, `a page with more before it is full (limit ${max})`);
			before = page.messages[0].id;
		} else {
			return { messages: pages.toReversed().flatMap((p) => p.messages), pages };
		}
	}
	assert.fail("history paging did not end");
}

// ---------------------------------------------------------------------------------------------
// What a ui history is

/** Accepted by `validateUIMessages` of every `ai` major we test (v7, v6, v5). */
export async function validateUi(messages, what = "the history") {
	for (const sdk of SDKS) {
		try {
			await sdk.ai.validateUIMessages({ messages });
		} catch (error) {
			assert.fail(`${what}: ${sdk.label} validateUIMessages rejects it: ${error.message}\n${JSON.stringify(messages).slice(0, 2000)}`);
		}
	}
}

/** The fields each part type may have in a ui history (contract): required first, then optional. */
const PART_KEYS = {
	"step-start": { required: ["type"], optional: [] },
	text: { required: ["type", "text"], optional: ["state"] },
	reasoning: { required: ["type", "text"], optional: ["state"] },
	file: { required: ["type", "mediaType", "url"], optional: [] },
	"dynamic-tool": { required: ["type", "toolName", "toolCallId", "state", "input"], optional: ["output", "errorText"] },
};

/**
 * Every message and part has exactly the fields of the contract: messages `{id, role, parts}`
 * (+ `metadata` on assistant messages: `{runId?, usage, model, stopReason}`), parts as
 * {@link PART_KEYS}. (The `ai` schemas are loose: they would let a misspelt field through.)
 */
export function checkUiKeys(messages, what = "the history") {
	for (const m of messages) {
		const show = JSON.stringify(m).slice(0, 600);
		assert.equal(typeof m.id, "string", `${what}: a message id: ${show}`);
		assert.ok(m.id.length > 0, `${what}: a non-empty message id: ${show}`);
		assert.ok(["user", "assistant"].includes(m.role), `${what}: role user or assistant: ${show}`);
		const keys = Object.keys(m).sort();
		if (m.role === "user") assert.deepEqual(keys, ["id", "parts", "role"], `${what}: user message fields: ${show}`);
		else {
			assert.deepEqual(keys, ["id", "metadata", "parts", "role"], `${what}: assistant message fields: ${show}`);
			const meta = Object.keys(m.metadata).sort();
			for (const k of meta) assert.ok(["runId", "usage", "model", "stopReason"].includes(k), `${what}: metadata field ${k}: ${show}`);
			for (const k of ["usage", "model", "stopReason"]) assert.ok(meta.includes(k), `${what}: metadata has ${k}: ${show}`);
			assert.deepEqual(Object.keys(m.metadata.model).sort(), ["id", "provider"], `${what}: metadata.model: ${show}`);
			assert.deepEqual(
				Object.keys(m.metadata.usage).sort(),
				["cacheRead", "cacheWrite", "cost", "input", "output", "totalTokens"],
				`${what}: metadata.usage: ${show}`,
			);
		}
		assert.ok(Array.isArray(m.parts), `${what}: parts: ${show}`);
		for (const p of m.parts) {
			const allowed = PART_KEYS[p.type];
			assert.ok(allowed, `${what}: part type ${p.type} is one of the contract's: ${JSON.stringify(p)}`);
			for (const k of allowed.required) assert.ok(k in p, `${what}: a ${p.type} part has ${k}: ${JSON.stringify(p)}`);
			for (const k of Object.keys(p)) {
				assert.ok(allowed.required.includes(k) || allowed.optional.includes(k), `${what}: field ${k} in a ${p.type} part: ${JSON.stringify(p)}`);
			}
		}
	}
}

// ---------------------------------------------------------------------------------------------
// pi's side

/** JSON round trip (what a JSON answer can hold). */
export const plain = (value) => JSON.parse(JSON.stringify(value));

/**
 * pi's message entries on the current branch of `session` (an AgentSession), as the contract's
 * `format=pi` serves them: `[{id, parentId, timestamp, message}]`.
 */
export function piBranch(session) {
	return plain(
		session.sessionManager
			.getBranch()
			.filter((e) => e.type === "message")
			.map(({ id, parentId, timestamp, message }) => ({ id, parentId, timestamp, message })),
	);
}

/** The text of a message's content (a string, or its text blocks joined). */
export function userContentText(message) {
	const c = message?.content;
	if (typeof c === "string") return c;
	if (!Array.isArray(c)) return "";
	return c
		.filter((b) => b?.type === "text")
		.map((b) => b.text)
		.join("");
}

const ZERO_USAGE = () => structuredClone(EMPTY_USAGE);

/** pi usages summed (the contract's run usage): `{input, output, cacheRead, cacheWrite, totalTokens, cost:{…}}`. */
export function sumUsage(usages) {
	const sum = ZERO_USAGE();
	for (const u of usages) {
		for (const k of ["input", "output", "cacheRead", "cacheWrite", "totalTokens"]) sum[k] += u[k];
		for (const k of ["input", "output", "cacheRead", "cacheWrite", "total"]) sum.cost[k] += u.cost[k];
	}
	return sum;
}

/** A pi message's usage in the contract's shape (exactly those fields). */
export const piUsage = (u) => sumUsage([u]);

/** The assistant usages of pi messages, summed. */
export const usageOf = (messages) => sumUsage(messages.filter((m) => m.role === "assistant").map((m) => m.usage));

/**
 * Groups pi's message entries (`format=pi`, oldest first) into turns: each user entry with the
 * assistant and tool-result entries after it, up to the next user entry.
 */
export function turnsOf(entries) {
	const turns = [];
	for (const e of entries) {
		if (e.message.role === "user") turns.push({ user: e, rest: [] });
		else {
			assert.ok(turns.length > 0, `an ${e.message.role} entry before any user entry`);
			turns.at(-1).rest.push(e);
		}
	}
	return turns;
}

/** A user message's UI parts: its text blocks as `text` parts, its images as `file` parts with a data URL. */
function userParts(message) {
	const c = message.content;
	if (typeof c === "string") return [{ type: "text", text: c }];
	return c.map((b) => {
		if (b.type === "text") return { type: "text", text: b.text };
		if (b.type === "image") return { type: "file", mediaType: b.mimeType, url: `data:${b.mimeType};base64,${b.data}` };
		assert.fail(`a user content block of type ${b.type}`);
	});
}

/**
 * The UIMessage[] the contract derives from pi's message entries (`format=pi`, oldest first) when
 * every user message was one run: `runIds[i]` is the run of the i-th user message (the assistant
 * message's id and `metadata.runId`). A turn without assistant entries gives no assistant message.
 * Tool outputs are pi's `{content, details}` (what the chat stream sends in `tool-output-available`),
 * a failed tool's `errorText` its result's text.
 */
export function expectedUi(entries, runIds) {
	const turns = turnsOf(entries);
	assert.equal(turns.length, runIds.length, `one run id per user message: ${turns.length} turns, ${runIds.length} run ids`);
	const out = [];
	turns.forEach((turn, i) => {
		out.push({ id: turn.user.id, role: "user", parts: userParts(turn.user.message) });
		const assistants = turn.rest.map((e) => e.message).filter((m) => m.role === "assistant");
		if (assistants.length === 0) return;
		const results = new Map(turn.rest.map((e) => e.message).filter((m) => m.role === "toolResult").map((m) => [m.toolCallId, m]));
		const parts = [];
		for (const m of assistants) {
			parts.push({ type: "step-start" });
			for (const b of m.content) {
				if (b.type === "thinking") parts.push({ type: "reasoning", text: b.thinking, state: "done" });
				else if (b.type === "text") parts.push({ type: "text", text: b.text, state: "done" });
				else if (b.type === "toolCall") {
					const result = results.get(b.id);
					assert.ok(result, `the tool call ${b.id} has a result in pi's session`);
					const part = { type: "dynamic-tool", toolName: b.name, toolCallId: b.id, input: b.arguments };
					if (result.isError) {
						part.state = "output-error";
						part.errorText = userContentText(result);
					} else {
						part.state = "output-available";
						part.output = plain({ content: result.content, details: result.details });
					}
					parts.push(part);
				}
			}
		}
		const last = assistants.at(-1);
		out.push({
			id: runIds[i],
			role: "assistant",
			metadata: {
				runId: runIds[i],
				usage: sumUsage(assistants.map((m) => m.usage)),
				model: { provider: last.provider, id: last.model },
				stopReason: last.stopReason,
			},
			parts,
		});
	});
	return plain(out);
}
