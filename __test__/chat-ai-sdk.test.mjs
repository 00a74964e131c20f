// The chat stream (`POST /sessions/:key/chat`, SPEC §6) read by the real Vercel AI SDK, in every
// major version we support: ai@7 (`ai`), ai@6 (`ai-v6`) and ai@5 (`ai-v5`, ≥ 5.0.92). Each
// version's own `uiMessageChunkSchema` validates every chunk, its own `parseJsonEventStream` and
// `readUIMessageStream` assemble the UIMessage, and its own `DefaultChatTransport` + `AbstractChat`
// drive whole conversations — against real pi AgentSessions on the offline faux model.
// Run: node --test __test__/chat-ai-sdk.test.mjs

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { request as httpRequest } from "node:http";
import { after, before, describe, it } from "node:test";
import { FAUX_ERROR_MESSAGE, fauxLongText, HELLO_CONTENT, HELLO_FILE, MISSING_FILE } from "../lib/faux-agent.js";
import { ChatState, fauxParts, MULTI_STEP_COMMAND, uiParts } from "./support/chat-fixture.mjs";
import { startChatGateway } from "./support/gateway.mjs";
import { UUID_V7, withRunId } from "./support/runs.mjs";
import { SDKS, validateChunks, wellFormed } from "./support/ui-chunks.mjs";

const require = createRequire(import.meta.url);
const TOKEN = "chat-test-token";
const AUTH = { authorization: `Bearer ${TOKEN}` };
const HELLO_ANSWER = `${HELLO_FILE} says: ${HELLO_CONTENT}`;
/** A real 1x1 PNG: a user `file` part with it becomes a pi image (SPEC §12). */
const PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/** The headers the `ai` package's own UI-message-stream responses carry (SPEC §6). */
const STREAM_HEADERS = {
	"content-type": "text/event-stream",
	"cache-control": "no-cache",
	connection: "keep-alive",
	"x-vercel-ai-ui-message-stream": "v1",
	"x-accel-buffering": "no",
};

// ---------------------------------------------------------------------------------------------
// Reading the stream

/**
 * Yields the `data:` payload of each SSE frame of a fetch body as it arrives. Comment lines
 * (`: ping`) are allowed and skipped; any other line, or a frame with more than one data line,
 * fails the test: the gateway promises one `data: <json>\n\n` frame per chunk.
 */
async function* sseData(body) {
	const decoder = new TextDecoder();
	let buffer = "";
	const frame = (text) => {
		const lines = text.split("\n").filter((line) => line !== "" && !line.startsWith(":"));
		if (lines.length === 0) return undefined;
		assert.equal(lines.length, 1, `one data line per frame, got ${JSON.stringify(text)}`);
		assert.ok(lines[0].startsWith("data: "), `a data line, got ${JSON.stringify(lines[0])}`);
		return lines[0].slice("data: ".length);
	};
	for await (const bytes of body) {
		buffer += decoder.decode(bytes, { stream: true });
		let end;
		while ((end = buffer.indexOf("\n\n")) >= 0) {
			const data = frame(buffer.slice(0, end));
			buffer = buffer.slice(end + 2);
			if (data !== undefined) yield data;
		}
	}
	buffer += decoder.decode();
	assert.equal(buffer.trim(), "", `the stream ended inside a frame: ${JSON.stringify(buffer)}`);
}

/** POSTs a chat request. */
function postChat(base, key, body, { headers = {}, signal } = {}) {
	return fetch(`${base}/sessions/${encodeURIComponent(key)}/chat`, {
		method: "POST",
		headers: { "content-type": "application/json", ...AUTH, ...headers },
		body: typeof body === "string" ? body : JSON.stringify(body),
		signal,
	});
}

/**
 * Runs one chat request to the end. Returns the response, the raw body text, the data payloads
 * (`[DONE]` included) and the parsed chunks (`[DONE]` excluded). Asserts the frame format, that
 * `[DONE]` comes exactly once and last, and that the stream is well formed (see {@link wellFormed}).
 */
async function chatToEnd(base, key, body, options) {
	const response = await postChat(base, key, body, options);
	assert.equal(response.status, 200, `chat answered ${response.status}`);
	const [forFrames, forRaw] = response.body.tee();
	const rawPromise = new Response(forRaw).text();
	const data = [];
	for await (const payload of sseData(forFrames)) data.push(payload);
	const raw = await rawPromise;
	assert.ok(data.length >= 2, `a stream of chunks, got ${JSON.stringify(data)}`);
	assert.equal(data.at(-1), "[DONE]", "[DONE] comes last");
	assert.equal(data.filter((d) => d === "[DONE]").length, 1, "[DONE] comes once");
	const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
	wellFormed(chunks);
	return { response, raw, data, chunks };
}

// ---------------------------------------------------------------------------------------------
// The AI SDK's own readers

/**
 * Assembles the final UIMessage from the raw SSE body with this SDK version's own
 * `parseJsonEventStream` (+ `uiMessageChunkSchema`) and `readUIMessageStream`: the path
 * `DefaultChatTransport` and `useChat` take. Returns the last message and the errors reported.
 */
async function assemble(sdk, raw) {
	const bytes = new Response(raw).body;
	const parsed = sdk.ai.parseJsonEventStream({ stream: bytes, schema: sdk.ai.uiMessageChunkSchema });
	const chunkStream = parsed.pipeThrough(
		new TransformStream({
			transform(result, controller) {
				if (!result.success) throw result.error;
				controller.enqueue(result.value);
			},
		}),
	);
	const errors = [];
	let message;
	for await (const snapshot of sdk.ai.readUIMessageStream({
		stream: chunkStream,
		onError: (error) => errors.push(error),
	})) {
		message = snapshot;
	}
	return { message, errors };
}

/** A real `AbstractChat` of this SDK version with a plain in-memory state (what useChat wraps). */
function createChat(sdk, { api, headers }) {
	class NodeChat extends sdk.ai.AbstractChat {
		constructor() {
			const errors = [];
			super({
				state: new ChatState(),
				transport: new sdk.ai.DefaultChatTransport({ api, headers }),
				onError: (error) => errors.push(error),
			});
			this.reportedErrors = errors;
		}
	}
	return new NodeChat();
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP (for Origin headers and preflights, which fetch may treat specially)

function rawRequest(port, { method = "GET", path = "/", headers = {}, body } = {}) {
	return new Promise((resolve, reject) => {
		const req = httpRequest({ host: "127.0.0.1", port, method, path, headers }, (res) => {
			const parts = [];
			res.on("data", (part) => parts.push(part));
			res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(parts).toString() }));
			res.on("error", reject);
		});
		req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
		req.on("error", reject);
		req.end(body);
	});
}

function corsHeaderNames(headers) {
	return Object.keys(headers).filter((name) => name.startsWith("access-control-"));
}

async function getJson(base, path) {
	const response = await fetch(`${base}${path}`, { headers: AUTH });
	assert.equal(response.status, 200, `GET ${path} answered ${response.status}`);
	return response.json();
}

// ---------------------------------------------------------------------------------------------

describe("the chat stream read by the Vercel AI SDK", () => {
	/** @type {Awaited<ReturnType<typeof startChatGateway>>} */
	let gw;
	let keyCounter = 0;
	const freshKey = (name) => `chat-${name}-${++keyCounter}`;

	before(async () => {
		gw = await startChatGateway({ config: { bearerToken: TOKEN }, multiStep: true });
	});
	after(async () => {
		await gw?.close();
	});

	it("runs the installed ai majors 7, 6 and 5 (≥ 5.0.92), each with its own chunk schema and readers", () => {
		for (const sdk of SDKS) {
			const { version } = require(`${sdk.pkg}/package.json`);
			const [major, minor, patch] = version.split(".").map(Number);
			assert.equal(major, sdk.major, `${sdk.pkg} is ai@${version}`);
			if (major === 5) assert.ok(minor > 0 || patch >= 92, `ai-v5 must be ≥ 5.0.92, is ${version}`);
			for (const name of ["uiMessageChunkSchema", "parseJsonEventStream", "readUIMessageStream", "DefaultChatTransport", "AbstractChat"]) {
				assert.equal(typeof sdk.ai[name], "function", `${sdk.label} exports ${name}`);
			}
		}
		// ai@7 (and @ai-sdk/react@4) declare engines.node >= 22; these tests run ai@7 on whatever Node runs them.
	});

	it("the stream checks of this file reject a reused part id, a part left open, and a field the schema does not declare", async () => {
		// What the seed sent: `text_0` again in the second step.
		const reused = [
			{ type: "start", messageId: "m" },
			{ type: "start-step" },
			{ type: "text-start", id: "text_0" },
			{ type: "text-end", id: "text_0" },
			{ type: "finish-step" },
			{ type: "start-step" },
			{ type: "text-start", id: "text_0" },
			{ type: "text-end", id: "text_0" },
			{ type: "finish-step" },
			{ type: "finish", finishReason: "stop" },
		];
		assert.throws(() => wellFormed(reused), /reused within one message/);
		const leftOpen = [{ type: "start", messageId: "m" }, { type: "text-start", id: "t" }, { type: "abort" }];
		assert.throws(() => wellFormed(leftOpen), /left open/);
		for (const sdk of SDKS) {
			await assert.rejects(
				validateChunks(sdk, [{ type: "text-delta", id: "t", delta: "x", sessionKey: "k" }]),
				/do(es)? not declare/,
				sdk.label,
			);
			await assert.rejects(validateChunks(sdk, [{ type: "finish", finishReason: "bogus" }]), /rejects/, sdk.label);
		}
	});

	it("answers with the headers of the ai package's own UI message stream responses, and x-run-id", async () => {
		const response = await postChat(gw.base, freshKey("headers"), { text: "/echo headers" });
		let text = "";
		try {
			assert.equal(response.status, 200);
			for (const [name, value] of Object.entries(STREAM_HEADERS)) {
				assert.equal(response.headers.get(name), value, `header ${name}`);
			}
			for (const sdk of SDKS) {
				for (const [name, value] of Object.entries(sdk.ai.UI_MESSAGE_STREAM_HEADERS)) {
					assert.equal(response.headers.get(name), value, `${sdk.label} UI_MESSAGE_STREAM_HEADERS ${name}`);
				}
			}
		} finally {
			text = await response.text().catch(() => "");
		}
		// SPEC §10: the run's id in x-run-id, and as the start chunk's messageId.
		const runId = response.headers.get("x-run-id");
		assert.match(String(runId), UUID_V7);
		const first = JSON.parse(text.split("\n").find((line) => line.startsWith("data: ")).slice("data: ".length));
		// SPEC §12: messageMetadata {sessionKey, runId} on start.
		assert.deepEqual(first, { type: "start", messageId: runId, messageMetadata: { sessionKey: first.messageMetadata?.sessionKey, runId } });
		assert.match(first.messageMetadata.sessionKey, /^chat-headers-/);
	});

	for (const sdk of SDKS) {
		it(`${sdk.label}: every chunk of a tool-using answer passes its schema, and readUIMessageStream rebuilds exactly the reasoning, read call and text the faux model produced`, async () => {
			const key = freshKey(`default-${sdk.major}`);
			const prompt = `What is in ${HELLO_FILE}? (${sdk.label})`;
			const { chunks, raw } = await chatToEnd(gw.base, key, { text: prompt });
			await validateChunks(sdk, chunks);

			const types = chunks.map((c) => c.type);
			assert.equal(chunks.at(-1).type, "finish");
			assert.equal(chunks.at(-1).finishReason, "stop");
			for (const type of ["start-step", "reasoning-start", "reasoning-delta", "reasoning-end", "tool-input-start", "tool-input-delta", "tool-input-available", "tool-output-available", "finish-step", "text-start", "text-delta", "text-end"]) {
				assert.ok(types.includes(type), `a ${type} chunk in ${types.join(" ")}`);
			}

			const { message, errors } = await assemble(sdk, raw);
			assert.deepEqual(errors, []);
			assert.equal(message.role, "assistant");
			assert.equal(message.id, chunks[0].messageId);

			const session = gw.sessions.get(key);
			assert.ok(session, "the gateway created the session through createSession");
			const userIndex = session.messages.findIndex((m) => m.role === "user");
			const produced = fauxParts(session, userIndex + 1);
			assert.deepEqual(uiParts(message), produced);

			// And against the script itself, so the comparison above cannot pass vacuously.
			assert.deepEqual(
				produced.map((p) => p.kind),
				["step", "reasoning", "tool", "step", "text"],
			);
			const [, reasoning, tool, , text] = uiParts(message);
			assert.equal(reasoning.text, `The user asked "${prompt}". I will look at the workspace file ${HELLO_FILE}.`);
			assert.equal(tool.toolName, "read");
			assert.equal(tool.state, "output-available");
			assert.deepEqual(tool.input, { path: HELLO_FILE });
			assert.ok(JSON.stringify(tool.output).includes(HELLO_CONTENT), JSON.stringify(tool.output));
			assert.equal(text.text, HELLO_ANSWER);
		});

		it(`${sdk.label}: reasoning and text in two steps of one message get distinct part ids and assemble into four parts`, async () => {
			const key = freshKey(`multistep-${sdk.major}`);
			const { chunks, raw } = await chatToEnd(gw.base, key, { text: MULTI_STEP_COMMAND });
			await validateChunks(sdk, chunks);
			const startIds = chunks.filter((c) => c.type === "text-start" || c.type === "reasoning-start").map((c) => c.id);
			assert.equal(startIds.length, 4, startIds.join(" "));
			assert.equal(new Set(startIds).size, 4, `part ids unique within the message: ${startIds.join(" ")}`);

			const { message, errors } = await assemble(sdk, raw);
			assert.deepEqual(errors, []);
			const produced = fauxParts(gw.sessions.get(key), 1);
			assert.deepEqual(
				produced.map((p) => p.kind),
				["step", "reasoning", "text", "tool", "step", "reasoning", "text"],
			);
			assert.deepEqual(uiParts(message), produced);
			assert.equal(produced.at(-1).text, `It says: ${HELLO_CONTENT}`);
		});

		it(`${sdk.label}: DefaultChatTransport and AbstractChat hold a two-turn conversation, and the gateway answers the last user message`, async () => {
			const key = freshKey(`transport-${sdk.major}`);
			const chat = createChat(sdk, {
				api: `${gw.base}/sessions/${encodeURIComponent(key)}/chat`,
				headers: AUTH,
			});
			await chat.sendMessage({ text: `Please read ${HELLO_FILE}` });
			assert.deepEqual(chat.reportedErrors, []);
			assert.equal(chat.status, "ready");
			assert.equal(chat.error, undefined);
			assert.equal(chat.messages.length, 2);
			const first = chat.messages[1];
			assert.equal(first.role, "assistant");
			const session = gw.sessions.get(key);
			assert.deepEqual(uiParts(first), fauxParts(session, 1));
			assert.equal(uiParts(first).at(-1).text, HELLO_ANSWER);

			// The second request carries the whole history; the gateway must take the last user message.
			await chat.sendMessage({ text: "/echo second turn" });
			assert.deepEqual(chat.reportedErrors, []);
			assert.equal(chat.status, "ready");
			assert.equal(chat.messages.length, 4);
			assert.deepEqual(uiParts(chat.messages[3]), [
				{ kind: "step" },
				{ kind: "text", text: "You said: second turn" },
			]);
			const userTexts = session.messages
				.filter((m) => m.role === "user")
				.map((m) => m.content.map((c) => c.text).join(""));
			assert.deepEqual(userTexts, [`Please read ${HELLO_FILE}`, "/echo second turn"]);
		});

		it(`${sdk.label}: a failing tool arrives as tool-output-error and the part ends in state output-error`, async () => {
			const key = freshKey(`toolfail-${sdk.major}`);
			const { chunks, raw } = await chatToEnd(gw.base, key, { text: "/toolfail" });
			await validateChunks(sdk, chunks);
			const failures = chunks.filter((c) => c.type === "tool-output-error");
			assert.equal(failures.length, 1, chunks.map((c) => c.type).join(" "));
			assert.ok(failures[0].errorText.includes(MISSING_FILE), failures[0].errorText);
			assert.equal(chunks.filter((c) => c.type === "tool-output-available").length, 0);
			assert.equal(chunks.at(-1).type, "finish");

			const { message, errors } = await assemble(sdk, raw);
			assert.deepEqual(errors, []);
			const session = gw.sessions.get(key);
			const parts = uiParts(message);
			assert.deepEqual(parts, fauxParts(session, 1));
			const tool = parts.find((p) => p.kind === "tool");
			assert.equal(tool.state, "output-error");
			assert.equal(tool.toolName, "read");
			assert.deepEqual(tool.input, { path: MISSING_FILE });
			assert.equal(parts.at(-1).text, `The read tool failed: ${failures[0].errorText}`);
		});

		it(`${sdk.label}: a model error ends the stream with an error chunk, and a Chat reports it`, async () => {
			const key = freshKey(`error-${sdk.major}`);
			const { chunks, raw } = await chatToEnd(gw.base, key, { text: "/error" });
			await validateChunks(sdk, chunks);
			assert.deepEqual(chunks.at(-1), { type: "error", errorText: FAUX_ERROR_MESSAGE });
			assert.equal(chunks.filter((c) => c.type === "finish").length, 0);

			const { errors } = await assemble(sdk, raw);
			assert.deepEqual(
				errors.map((e) => e.message),
				[FAUX_ERROR_MESSAGE],
			);

			const chat = createChat(sdk, {
				api: `${gw.base}/sessions/${encodeURIComponent(key)}/chat`,
				headers: AUTH,
			});
			await chat.sendMessage({ text: "/error" });
			assert.equal(chat.status, "error");
			assert.equal(chat.error?.message, FAUX_ERROR_MESSAGE);
		});
	}

	it("aborting the session mid-stream ends the chat stream with an abort chunk, then [DONE]", async () => {
		const key = freshKey("abort");
		const words = 200; // ~10 s at the faux model's /slow speed, far longer than the test waits
		const response = await postChat(gw.base, key, { text: `/slow ${words}` });
		assert.equal(response.status, 200);
		const data = [];
		let abortAnswer;
		for await (const payload of sseData(response.body)) {
			data.push(payload);
			if (abortAnswer) continue;
			const deltas = data.filter((d) => d.includes('"type":"text-delta"')).length;
			if (deltas >= 3) {
				const answer = await fetch(`${gw.base}/sessions/${encodeURIComponent(key)}/abort`, {
					method: "POST",
					headers: AUTH,
				});
				abortAnswer = { status: answer.status, body: await answer.json() };
			}
		}
		assert.deepEqual(abortAnswer, { status: 200, body: { ok: true } });
		assert.equal(data.at(-1), "[DONE]");
		const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
		wellFormed(chunks);
		assert.deepEqual(chunks.at(-1), { type: "abort" });
		assert.equal(chunks.filter((c) => c.type === "finish" || c.type === "error").length, 0);
		const streamed = chunks
			.filter((c) => c.type === "text-delta")
			.map((c) => c.delta)
			.join("");
		assert.ok(streamed.length >= 12 && streamed.length < fauxLongText(words).length, `partial text: ${streamed.length} chars`);
		assert.ok(fauxLongText(words).startsWith(streamed), "the streamed text is the model's, in order");

		const raw = `${data.map((d) => `data: ${d}\n\n`).join("")}`;
		for (const sdk of SDKS) {
			await validateChunks(sdk, chunks);
			const { message, errors } = await assemble(sdk, raw);
			assert.deepEqual(errors, [], sdk.label);
			assert.deepEqual(uiParts(message), [{ kind: "step" }, { kind: "text", text: streamed }], sdk.label);
		}
		const last = gw.sessions.get(key).messages.at(-1);
		assert.equal(last.role, "assistant");
		assert.equal(last.stopReason, "aborted");
	});

	it("a client that disconnects mid-stream loses only its stream: the run completes and the session goes on", async () => {
		const key = freshKey("disconnect");
		const warm = await fetch(`${gw.base}/sessions/${encodeURIComponent(key)}/messages`, {
			method: "POST",
			headers: { "content-type": "application/json", ...AUTH },
			body: JSON.stringify({ text: "/echo warm up" }),
		});
		assert.equal(warm.status, 200);
		const before = (await getJson(gw.base, `/sessions/${encodeURIComponent(key)}`)).session.messageCount;
		assert.equal(before, 2);

		const words = 30; // ~1.5 s at the /slow speed
		const controller = new AbortController();
		const response = await postChat(gw.base, key, { text: `/slow ${words}` }, { signal: controller.signal });
		assert.equal(response.status, 200);
		let deltas = 0;
		await assert.rejects(
			(async () => {
				for await (const payload of sseData(response.body)) {
					if (payload.includes('"type":"text-delta"') && ++deltas === 2) controller.abort();
				}
			})(),
			{ name: "AbortError" },
		);
		assert.equal(deltas, 2);

		// The next message queues behind the slow run and is answered once it has finished.
		const next = await fetch(`${gw.base}/sessions/${encodeURIComponent(key)}/messages`, {
			method: "POST",
			headers: { "content-type": "application/json", ...AUTH },
			body: JSON.stringify({ text: "/echo after the disconnect" }),
		});
		assert.equal(next.status, 200);
		const nextBody = await next.json();
		assert.equal(next.headers.get("x-run-id"), nextBody.runId);
		assert.deepEqual(withRunId(nextBody), { ok: true, response: "You said: after the disconnect", sessionKey: key });

		const snapshot = (await getJson(gw.base, `/sessions/${encodeURIComponent(key)}`)).session;
		assert.equal(snapshot.messageCount, before + 4, "the slow run's user+assistant messages and the echo's");
		assert.equal(snapshot.processing, false);
		const session = gw.sessions.get(key);
		const slowAnswer = session.messages[before + 1];
		assert.equal(slowAnswer.role, "assistant");
		assert.equal(slowAnswer.stopReason, "stop", "the run was not aborted by the disconnect");
		assert.equal(slowAnswer.content.map((c) => c.text).join(""), fauxLongText(words));
	});

	describe("request bodies", () => {
		/** Sends a body, reads the stream to the end, and returns the answer text and the user text pi saw. */
		async function answerTo(body) {
			const key = freshKey("body");
			const { chunks } = await chatToEnd(gw.base, key, body);
			await validateChunks(SDKS[0], chunks);
			const text = chunks
				.filter((c) => c.type === "text-delta")
				.map((c) => c.delta)
				.join("");
			const user = gw.sessions.get(key).messages.find((m) => m.role === "user");
			return { text, userText: user.content.map((c) => c.text).join("") };
		}

		it("accepts {text}", async () => {
			assert.deepEqual(await answerTo({ text: "/echo from text" }), {
				text: "You said: from text",
				userText: "/echo from text",
			});
		});

		it("accepts {prompt}", async () => {
			assert.deepEqual(await answerTo({ prompt: "/echo from prompt" }), {
				text: "You said: from prompt",
				userText: "/echo from prompt",
			});
		});

		it("accepts the useChat body and takes the text parts of the last user message", async () => {
			const body = {
				id: "chat-1",
				trigger: "submit-message",
				messages: [
					{ id: "u1", role: "user", parts: [{ type: "text", text: "/echo an older question" }] },
					{ id: "a1", role: "assistant", parts: [{ type: "step-start" }, { type: "text", text: "You said: an older question", state: "done" }] },
					{
						id: "u2",
						role: "user",
						parts: [
							{ type: "text", text: "/echo from " },
							{ type: "file", mediaType: "image/png", url: `data:image/png;base64,${PNG_1X1}` },
							{ type: "text", text: "parts" },
						],
					},
				],
			};
			assert.deepEqual(await answerTo(body), { text: "You said: from parts", userText: "/echo from parts" });
		});

		it("accepts the v4 body {messages:[{role, content}]}", async () => {
			const body = {
				messages: [
					{ role: "user", content: "/echo an older question" },
					{ role: "assistant", content: "You said: an older question" },
					{ role: "user", content: "/echo from content" },
				],
			};
			assert.deepEqual(await answerTo(body), { text: "You said: from content", userText: "/echo from content" });
		});

		it("takes text before prompt before messages, skipping blank ones", async () => {
			const messages = [{ role: "user", parts: [{ type: "text", text: "/echo from messages" }] }];
			assert.equal((await answerTo({ text: "/echo T", prompt: "/echo P", messages })).text, "You said: T");
			assert.equal((await answerTo({ text: "   ", prompt: "/echo P", messages })).text, "You said: P");
			assert.equal((await answerTo({ text: "", prompt: " \n ", messages })).text, "You said: from messages");
		});

		it("answers 400 Missing user message text when no user text is found, and runs nothing", async () => {
			const bodies = [
				{},
				{ text: "   " },
				{ prompt: "" },
				{ messages: [] },
				{ messages: [{ role: "assistant", parts: [{ type: "text", text: "/echo not a user" }] }] },
				{ messages: [{ role: "user", content: "  " }] },
			];
			for (const body of bodies) {
				const key = freshKey("missing");
				const response = await postChat(gw.base, key, body);
				assert.equal(response.status, 400, JSON.stringify(body));
				assert.equal(response.headers.get("content-type"), "application/json; charset=utf-8");
				assert.deepEqual(await response.json(), { error: "Missing user message text" }, JSON.stringify(body));
				const session = gw.sessions.get(key);
				assert.equal(session?.messages.length ?? 0, 0, `nothing ran for ${JSON.stringify(body)}`);
			}
			// A file part that is not a base64 image is refused naming it (SPEC §12), and runs nothing.
			const key = freshKey("missing");
			const body = { messages: [{ role: "user", parts: [{ type: "file", mediaType: "image/png", url: "data:," }] }] };
			const response = await postChat(gw.base, key, body);
			assert.equal(response.status, 400);
			assert.match((await response.json()).error, /^Invalid messages\[0\]\.parts\[0\]\.url: /);
			assert.equal(gw.sessions.get(key)?.messages.length ?? 0, 0);
		});
	});
});

describe("CORS on the chat route", () => {
	const ALLOWED = "http://allowed.example:5173";
	const OTHER = "http://evil.example:5173";
	/** @type {Awaited<ReturnType<typeof startChatGateway>>} */
	let listed;
	/** @type {Awaited<ReturnType<typeof startChatGateway>>} */
	let any;
	/** @type {Awaited<ReturnType<typeof startChatGateway>>} */
	let none;

	before(async () => {
		listed = await startChatGateway({ config: { bearerToken: TOKEN, cors: { origins: [ALLOWED] } } });
		any = await startChatGateway({ config: { bearerToken: TOKEN, cors: { origins: "*" } } });
		none = await startChatGateway({ config: { bearerToken: TOKEN } });
	});
	after(async () => {
		await listed?.close();
		await any?.close();
		await none?.close();
	});

	const preflight = (port, origin) =>
		rawRequest(port, {
			method: "OPTIONS",
			path: "/sessions/web/chat",
			headers: {
				origin,
				"access-control-request-method": "POST",
				"access-control-request-headers": "authorization,content-type",
			},
		});

	const chatFrom = (port, origin, key) =>
		rawRequest(port, {
			method: "POST",
			path: `/sessions/${key}/chat`,
			headers: { origin, "content-type": "application/json", ...AUTH },
			body: JSON.stringify({ text: "/echo cors" }),
		});

	it("answers a preflight from an allowed origin with 204, the origin, the methods and the headers, without a token", async () => {
		const res = await preflight(listed.port, ALLOWED);
		assert.equal(res.status, 204);
		assert.equal(res.headers["access-control-allow-origin"], ALLOWED);
		const methods = (res.headers["access-control-allow-methods"] ?? "").toUpperCase().split(/\s*,\s*/);
		assert.ok(methods.includes("POST"), `allow-methods: ${res.headers["access-control-allow-methods"]}`);
		const allowHeaders = (res.headers["access-control-allow-headers"] ?? "").toLowerCase().split(/\s*,\s*/);
		assert.ok(allowHeaders.includes("authorization"), `allow-headers: ${res.headers["access-control-allow-headers"]}`);
		assert.ok(allowHeaders.includes("content-type"), `allow-headers: ${res.headers["access-control-allow-headers"]}`);
		assert.equal(res.body, "");
	});

	it("puts access-control-allow-origin on the chat stream for an allowed origin", async () => {
		const res = await chatFrom(listed.port, ALLOWED, "cors-allowed");
		assert.equal(res.status, 200);
		assert.equal(res.headers["access-control-allow-origin"], ALLOWED);
		assert.equal(res.headers["x-vercel-ai-ui-message-stream"], "v1");
		const data = res.body.split("\n\n").filter(Boolean).map((frame) => frame.replace(/^data: /, ""));
		assert.equal(data.at(-1), "[DONE]");
		const text = data
			.slice(0, -1)
			.map((d) => JSON.parse(d))
			.filter((c) => c.type === "text-delta")
			.map((c) => c.delta)
			.join("");
		assert.equal(text, "You said: cors");
	});

	const assertOriginRefused = (res, what) => {
		assert.equal(res.status, 403, `${what}: ${res.body}`);
		assert.equal(res.headers["content-type"], "application/json; charset=utf-8", what);
		assert.deepEqual(JSON.parse(res.body), { error: "Origin not allowed" }, what);
		assert.deepEqual(corsHeaderNames(res.headers), [], `${what}: ${JSON.stringify(res.headers)}`);
	};

	it("refuses a disallowed origin 403 Origin not allowed, with no CORS headers, on the preflight and the stream, and runs nothing", async () => {
		assertOriginRefused(await preflight(listed.port, OTHER), "preflight");
		assertOriginRefused(await chatFrom(listed.port, OTHER, "cors-other"), "chat");
		assert.equal(listed.sessions.get("cors-other")?.messages.length ?? 0, 0, "nothing ran for the refused origin");
	});

	it('allows any origin with origins "*"', async () => {
		const pre = await preflight(any.port, OTHER);
		assert.equal(pre.status, 204);
		assert.equal(pre.headers["access-control-allow-origin"], "*");
		const res = await chatFrom(any.port, OTHER, "cors-any");
		assert.equal(res.status, 200);
		assert.equal(res.headers["access-control-allow-origin"], "*");
	});

	it("refuses a foreign origin 403 with no CORS headers when cors is not configured, and runs nothing", async () => {
		assertOriginRefused(await preflight(none.port, ALLOWED), "preflight");
		assertOriginRefused(await chatFrom(none.port, ALLOWED, "cors-none"), "chat");
		assert.equal(none.sessions.get("cors-none")?.messages.length ?? 0, 0, "nothing ran for the refused origin");
	});

	it("without cors configured, the gateway's own origin is served, with no CORS headers", async () => {
		const own = `http://127.0.0.1:${none.port}`;
		const res = await chatFrom(none.port, own, "cors-own");
		assert.equal(res.status, 200, res.body);
		assert.deepEqual(corsHeaderNames(res.headers), [], JSON.stringify(res.headers));
		assert.equal(res.body.split("\n\n").filter(Boolean).at(-1), "data: [DONE]");
	});
});
