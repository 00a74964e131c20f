// Resuming and stopping AI SDK chat streams (issue 12, SPEC §10 "The AI SDK resume route"), with
// the real `ai` package (v7) against real pi AgentSessions on the faux model:
// `DefaultChatTransport.reconnectToStream` on `GET /sessions/:key/chat/:chatId/stream` (null on
// 204; mid-answer, the same stream as the POST, chunk for chunk, every chunk valid for the `ai`
// schema, `start.messageId` = `x-run-id`); `AbstractChat.resumeStream()` (what
// `useChat({ resume: true })` calls); `POST /sessions/:key/chat/:chatId/stop` (the right run, never a
// later one; a stale runId refused); a client that disconnects does not abort its run, unless
// `chat.abortOnDisconnect: true`.
//
// Run: npm test -- __test__/chat-resume.test.mjs

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { describe, test } from "node:test";
import { AbstractChat, DefaultChatTransport, readUIMessageStream, uiMessageChunkSchema } from "ai";
import { fauxLongText } from "../lib/faux-agent.js";
import { ChatState } from "./support/chat-fixture.mjs";
import { suiteChatGateway } from "./support/gateway.mjs";
import { request } from "./support/http.mjs";
import { enc } from "./support/replay-util.mjs";
import { getRun, UUID_V7, assertStartChunk } from "./support/runs.mjs";
import { openSse, parseSse } from "./support/sse.mjs";
import { sleep, waitFor } from "./support/wait.mjs";

const require = createRequire(import.meta.url);

/** The headers the `ai` package's own UI-message-stream responses carry (SPEC §6). */
const STREAM_HEADERS = {
	"content-type": "text/event-stream",
	"x-vercel-ai-ui-message-stream": "v1",
};

const userMessage = (text) => ({ id: `u-${randomUUID()}`, role: "user", parts: [{ type: "text", text }] });

/**
 * A fetch that records every response (url, method, status, headers) and its raw body text,
 * read from a tee of the body, while the caller reads the other branch.
 */
function recordingFetch() {
	const responses = [];
	const recorder = async (url, init = {}) => {
		const res = await fetch(url, init);
		const entry = { url: String(url), method: init.method ?? "GET", status: res.status, headers: res.headers };
		responses.push(entry);
		if (!res.body) {
			entry.raw = Promise.resolve("");
			return res;
		}
		const [mine, theirs] = res.body.tee();
		entry.raw = new Response(mine).text().catch(() => null);
		return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
	};
	recorder.responses = responses;
	return recorder;
}

/**
 * A DefaultChatTransport for session `key` of the gateway at `base`, with a recording fetch.
 * Its reconnect URL is set with `prepareReconnectToStreamRequest`, unless `defaultReconnect`
 * (then the transport's own default, `${api}/${chatId}/stream`, is used).
 */
function chatTransport(base, key, { defaultReconnect = false } = {}) {
	const api = `${base}/sessions/${enc(key)}/chat`;
	const fetch = recordingFetch();
	const transport = new DefaultChatTransport({
		api,
		fetch,
		...(defaultReconnect
			? {}
			: { prepareReconnectToStreamRequest: ({ id }) => ({ api: `${api}/${enc(id)}/stream` }) }),
	});
	return { transport, fetch };
}

/** Sends one user message through the transport (as `useChat` does); resolves with the chunk stream. */
function send(transport, chatId, text, { abortSignal } = {}) {
	return transport.sendMessages({
		chatId,
		messages: [userMessage(text)],
		trigger: "submit-message",
		messageId: undefined,
		abortSignal,
	});
}

/** Reads a chunk stream in the background: `chunks` fills as they arrive, `done` resolves with them. */
function drain(stream) {
	const chunks = [];
	const done = (async () => {
		const reader = stream.getReader();
		for (;;) {
			const { done: end, value } = await reader.read();
			if (end) return chunks;
			chunks.push(value);
		}
	})();
	done.catch(() => {}); // awaited by the test when it matters; never an unhandled rejection
	return { chunks, done };
}

const deltas = (chunks) => chunks.filter((c) => c.type === "text-delta");
const textOf = (message) =>
	message.parts
		.filter((p) => p.type === "text")
		.map((p) => p.text)
		.join("");

/**
 * The raw body of a UI message stream → its chunks (parsed JSON). Asserts the frames: data
 * frames only (plus optional `retry:` / comments), `[DONE]` exactly once and last, and that
 * every chunk passes the `ai` package's own `uiMessageChunkSchema`.
 */
async function rawChunks(raw, what) {
	assert.equal(typeof raw, "string", `${what}: the body was read`);
	const { frames, rest } = parseSse(raw);
	assert.equal(rest.trim(), "", `${what}: the stream ended inside a frame`);
	const data = frames.filter((f) => f.data !== undefined).map((f) => f.data);
	assert.equal(data.at(-1), "[DONE]", `${what}: [DONE] comes last`);
	assert.equal(data.filter((d) => d === "[DONE]").length, 1, `${what}: [DONE] once`);
	const chunks = data.slice(0, -1);
	const schema = uiMessageChunkSchema();
	for (const chunk of chunks) {
		const result = await schema.validate(chunk);
		assert.ok(result.success, `${what}: ai's uiMessageChunkSchema rejects ${JSON.stringify(chunk)}: ${result.error?.message}`);
	}
	return chunks;
}

/** The final UIMessage the `ai` package assembles from `chunks` (readUIMessageStream). */
async function assemble(chunks) {
	const stream = new ReadableStream({
		start(controller) {
			for (const chunk of chunks) controller.enqueue(chunk);
			controller.close();
		},
	});
	const errors = [];
	let message;
	for await (const snapshot of readUIMessageStream({ stream, onError: (e) => errors.push(e) })) message = snapshot;
	assert.deepEqual(errors, [], "readUIMessageStream reported errors");
	return message;
}

/** A real `AbstractChat` (what useChat wraps) with a plain in-memory state. */
function createChat({ id, transport, messages = [] }) {
	const errors = [];
	class NodeChat extends AbstractChat {
		constructor() {
			super({ id, state: new ChatState(messages), transport, onError: (error) => errors.push(error) });
		}
	}
	const chat = new NodeChat();
	chat.reportedErrors = errors;
	return chat;
}

async function stop(port, key, chatId, body) {
	const res = await request(port, "POST", `/sessions/${enc(key)}/chat/${enc(chatId)}/stop`, body === undefined ? {} : { body });
	assert.equal(res.status, 200, `stop answered ${res.status} ${res.text}`);
	return res.json;
}

async function queueDepth(port, key) {
	const res = await request(port, "GET", `/sessions/${enc(key)}`);
	return res.json?.session?.queueDepth;
}

const runIdOf = (fetch, i = 0) => fetch.responses[i]?.headers.get("x-run-id");

/**
 * A chat client of `key` sends `text` as chat `chatId` while another run is running; once its run
 * is queued (the session's one queued run), the client leaves. Resolves with the record of that
 * queued run, read while it was queued.
 */
async function queueThenLeave(gw, key, chatId, text) {
	const client = chatTransport(gw.base, key);
	const controller = new AbortController();
	const pending = send(client.transport, chatId, text, { abortSignal: controller.signal })
		.then((st) => drain(st).done)
		.catch(() => {});
	await waitFor(async () => (await queueDepth(gw.port, key)) === 1, "the second run to be queued");
	const queued = (await request(gw.port, "GET", `/sessions/${key}/runs`)).json.runs.at(-1);
	assert.equal(queued.status, "queued");
	controller.abort();
	await pending;
	return queued;
}

// ---------------------------------------------------------------------------------------------

describe("resuming a chat stream with the ai package's DefaultChatTransport", { timeout: 120_000 }, () => {
	// `/slow N` streams N one-word text deltas at 100 a second.
	const gw = suiteChatGateway({ faux: { slowTokensPerSecond: 100 } });

	test("the installed ai is v7 and has what these tests use", () => {
		const { version } = require("ai/package.json");
		assert.equal(Number(version.split(".")[0]), 7, `ai@${version}`);
		for (const fn of [DefaultChatTransport, readUIMessageStream, uiMessageChunkSchema, AbstractChat]) {
			assert.equal(typeof fn, "function");
		}
		assert.equal(typeof DefaultChatTransport.prototype.reconnectToStream, "function");
	});

	test("reconnectToStream returns null (204, no body) when the chat has no queued or running run in that session", async () => {
		const key = "r204";
		const { transport } = chatTransport(gw.base, key);
		assert.equal(await transport.reconnectToStream({ chatId: "never-used" }), null);
		const raw = await request(gw.port, "GET", `/sessions/${key}/chat/never-used/stream`);
		assert.equal(raw.status, 204);
		assert.equal(raw.text, "");

		// A chat whose run has ended.
		const done = await drain(await send(transport, "ended-chat", "/echo hi")).done;
		assert.equal(done.at(-1).type, "finish");
		assert.equal(await transport.reconnectToStream({ chatId: "ended-chat" }), null);

		// A chat with a running run, asked for in another session: 204 there, 200 in its own.
		const busy = chatTransport(gw.base, "r204-busy");
		const streaming = drain(await send(busy.transport, "busy-chat", "/slow 1000"));
		await waitFor(() => deltas(streaming.chunks).length > 0, "the busy chat to stream");
		assert.equal(await transport.reconnectToStream({ chatId: "busy-chat" }), null, "another session's chat");
		const own = await openSse(gw.port, `/sessions/r204-busy/chat/busy-chat/stream`);
		own.close();
		assert.equal(own.status, 200, "its own session: a stream");
		assert.deepEqual(await stop(gw.port, "r204-busy", "busy-chat"), { ok: true, runId: runIdOf(busy.fetch) });
		await streaming.done;
	});

	test("mid-answer, reconnectToStream (custom and default URL) and AbstractChat.resumeStream() get the POST's stream, chunk for chunk", async () => {
		const key = "resume";
		const chatId = "c-resume";
		const words = 150;
		const post = chatTransport(gw.base, key);
		const viaPost = drain(await send(post.transport, chatId, `/slow ${words}`));
		await waitFor(() => deltas(viaPost.chunks).length >= 30, "30 deltas on the POST stream");

		const custom = chatTransport(gw.base, key);
		const customStream = await custom.transport.reconnectToStream({ chatId });
		assert.notEqual(customStream, null, "an active run: a stream, not 204");
		assert.ok(deltas(viaPost.chunks).length < words - 50, "the resume starts mid-answer");
		const viaCustom = drain(customStream);
		const byDefault = chatTransport(gw.base, key, { defaultReconnect: true });
		const defaultStream = await byDefault.transport.reconnectToStream({ chatId });
		assert.notEqual(defaultStream, null, "the transport's default URL is the gateway's route");
		const viaDefault = drain(defaultStream);
		const chatSide = chatTransport(gw.base, key, { defaultReconnect: true });
		const userMsg = userMessage(`/slow ${words}`);
		const chat = createChat({ id: chatId, transport: chatSide.transport, messages: [userMsg] });
		const resumed = chat.resumeStream();
		resumed.catch(() => {});

		const [postChunks, customChunks, defaultChunks] = await Promise.all([viaPost.done, viaCustom.done, viaDefault.done]);
		await resumed;

		// The run id: x-run-id of the POST = the start chunk's messageId, on every stream.
		const runId = runIdOf(post.fetch);
		assert.match(runId ?? "", UUID_V7, "x-run-id on the POST");
		assertStartChunk(postChunks[0], runId);
		assert.equal(postChunks.at(-1).type, "finish");

		// Raw bodies: framing, [DONE], the ai schema; and the resumes carry the POST's very chunks.
		const rawPost = await rawChunks(await post.fetch.responses[0].raw, "POST");
		for (const [label, t, chunks] of [
			["reconnect (prepareReconnectToStreamRequest)", custom, customChunks],
			["reconnect (default URL)", byDefault, defaultChunks],
			["AbstractChat.resumeStream", chatSide, undefined],
		]) {
			const response = t.fetch.responses[0];
			assert.equal(response.method, "GET", label);
			assert.equal(new URL(response.url).pathname, `/sessions/${key}/chat/${chatId}/stream`, label);
			assert.equal(response.status, 200, label);
			for (const [name, value] of Object.entries(STREAM_HEADERS)) assert.equal(response.headers.get(name), value, `${label}: ${name}`);
			const raw = await rawChunks(await response.raw, label);
			assert.deepEqual(raw, rawPost, `${label}: the same chunks as the POST, from its start chunk`);
			if (chunks) assert.deepEqual(chunks, postChunks, `${label}: as the transport parsed them`);
		}

		// The assembled message is the POST's, and the answer the faux model gave.
		const expected = await assemble(postChunks);
		assert.equal(expected.id, runId);
		assert.equal(expected.role, "assistant");
		assert.equal(textOf(expected), fauxLongText(words));
		assert.deepEqual(await assemble(customChunks), expected);
		assert.deepEqual(await assemble(defaultChunks), expected);
		assert.deepEqual(chat.reportedErrors, []);
		assert.equal(chat.status, "ready");
		assert.equal(chat.messages.length, 2, "the user message and the resumed answer");
		assert.equal(chat.messages[1].id, runId);
		assert.deepEqual(chat.messages[1].parts, expected.parts);

		// The run is over: nothing to resume.
		await waitFor(async () => (await custom.transport.reconnectToStream({ chatId })) === null, "204 once the run has ended", 3000);
		assert.equal((await getRun(gw.port, key, runId)).status, "succeeded");
	});

	test("POST …/chat/:chatId/stop aborts the run it names and not a later one; a stale runId gets ok:false and aborts nothing", async () => {
		const key = "stop";
		const chatId = "c-stop";
		const t1 = chatTransport(gw.base, key);
		const s1 = drain(await send(t1.transport, chatId, "/slow 1000"));
		await waitFor(() => deltas(s1.chunks).length >= 5, "run 1 to stream");
		const run1 = runIdOf(t1.fetch);
		assert.match(run1 ?? "", UUID_V7);

		// Run 2, same chat, queued behind run 1.
		const t2 = chatTransport(gw.base, key);
		const s2Promise = send(t2.transport, chatId, "/slow 150").then(drain);
		s2Promise.catch(() => {});
		await waitFor(async () => (await queueDepth(gw.port, key)) === 1, "run 2 to be queued");

		// A runId that names no run of this chat: refused, nothing stops.
		const wrong = await stop(gw.port, key, chatId, { runId: randomUUID() });
		assert.equal(wrong.ok, false, JSON.stringify(wrong));
		const before = deltas(s1.chunks).length;
		await waitFor(() => deltas(s1.chunks).length > before + 5, "run 1 to stream on after a refused stop", 3000);
		assert.equal((await getRun(gw.port, key, run1)).status, "running");
		assert.equal(await queueDepth(gw.port, key), 1);

		// Stop run 1 by its id.
		assert.deepEqual(await stop(gw.port, key, chatId, { runId: run1 }), { ok: true, runId: run1 });
		const chunks1 = await s1.done;
		assert.equal(chunks1.at(-1).type, "abort", "run 1's stream ends with abort");
		assert.ok(!chunks1.some((c) => c.type === "finish"));
		assert.equal((await getRun(gw.port, key, run1)).status, "aborted");

		// Run 2 runs. A stop naming run 1 (now stale) while run 2 streams: ok:false, run 2 goes on.
		const s2 = await s2Promise;
		await waitFor(() => deltas(s2.chunks).length >= 5, "run 2 to stream");
		const run2 = runIdOf(t2.fetch);
		assert.match(run2 ?? "", UUID_V7);
		assert.notEqual(run2, run1);
		const stale = await stop(gw.port, key, chatId, { runId: run1 });
		assert.equal(stale.ok, false, JSON.stringify(stale));
		const chunks2 = await s2.done;
		assertStartChunk(chunks2[0], run2);
		assert.equal(chunks2.at(-1).type, "finish", "run 2 completes");
		assert.equal(textOf(await assemble(chunks2)), fauxLongText(150));
		assert.equal((await getRun(gw.port, key, run2)).status, "succeeded");
		assert.equal((await getRun(gw.port, key, run1)).status, "aborted");

		// Nothing active: ok:false.
		assert.equal((await stop(gw.port, key, chatId)).ok, false);
		assert.equal((await stop(gw.port, key, chatId, { runId: run2 })).ok, false);

		// No body: the chat's active run.
		const t3 = chatTransport(gw.base, key);
		const s3 = drain(await send(t3.transport, chatId, "/slow 1000"));
		await waitFor(() => deltas(s3.chunks).length >= 3, "run 3 to stream");
		const run3 = runIdOf(t3.fetch);
		assert.deepEqual(await stop(gw.port, key, chatId), { ok: true, runId: run3 });
		assert.equal((await s3.done).at(-1).type, "abort");
		assert.equal((await getRun(gw.port, key, run3)).status, "aborted");
	});

	test("a chat client that disconnects does not abort its run: it completes and can be resumed; a queued one still runs", async () => {
		const key = "gone";
		const chatId = "c-gone";
		const words = 200;
		const t = chatTransport(gw.base, key);
		const controller = new AbortController();
		const s = drain(await send(t.transport, chatId, `/slow ${words}`, { abortSignal: controller.signal }));
		await waitFor(() => deltas(s.chunks).length >= 20, "20 deltas before the client leaves");
		const runId = runIdOf(t.fetch);
		assert.match(runId ?? "", UUID_V7);
		controller.abort();
		await s.done.catch(() => {});
		await sleep(300);
		assert.equal((await getRun(gw.port, key, runId)).status, "running", "the run goes on without its client");

		const again = chatTransport(gw.base, key);
		const stream = await again.transport.reconnectToStream({ chatId });
		assert.notEqual(stream, null, "the run can be resumed");
		const chunks = await drain(stream).done;
		assertStartChunk(chunks[0], runId);
		assert.equal(chunks.at(-1).type, "finish");
		await rawChunks(await again.fetch.responses[0].raw, "resume after a disconnect");
		const message = await assemble(chunks);
		assert.equal(textOf(message), fauxLongText(words), "the whole answer");
		const run = await getRun(gw.port, key, runId);
		assert.equal(run.status, "succeeded");
		assert.equal(run.result.ok, true);

		// A queued chat run whose client leaves before it starts still runs.
		const qKey = "gone-queued";
		const first = chatTransport(gw.base, qKey);
		const s1 = drain(await send(first.transport, "q-first", "/slow 100"));
		await waitFor(() => deltas(s1.chunks).length > 0, "the first run to stream");
		const queued = await queueThenLeave(gw, qKey, "q-second", "/echo still here");
		await s1.done;
		await waitFor(async () => (await getRun(gw.port, qKey, queued.runId)).status === "succeeded", "the queued run to run anyway");
	});
});

describe("chat.abortOnDisconnect: true", { timeout: 60_000 }, () => {
	const gw = suiteChatGateway({ faux: { slowTokensPerSecond: 100 }, config: { chat: { abortOnDisconnect: true } } });

	test("a client that disconnects aborts its running run (then nothing to resume) and cancels its queued one", async () => {
		const key = "abort-gone";
		const chatId = "c-abort";
		const t = chatTransport(gw.base, key);
		const controller = new AbortController();
		const s = drain(await send(t.transport, chatId, "/slow 1000", { abortSignal: controller.signal }));
		await waitFor(() => deltas(s.chunks).length >= 5, "the run to stream");
		const runId = runIdOf(t.fetch);
		assert.match(runId ?? "", UUID_V7);

		// A queued run of another chat client, which leaves too.
		const queued = await queueThenLeave(gw, key, "c-queued", "/echo never");
		await waitFor(async () => (await getRun(gw.port, key, queued.runId)).status === "cancelled", "the queued run to be cancelled");
		assert.equal((await getRun(gw.port, key, runId)).status, "running", "the other client's run is untouched");

		controller.abort();
		await s.done.catch(() => {});
		await waitFor(async () => (await getRun(gw.port, key, runId)).status === "aborted", "the running run to be aborted");
		assert.equal(await t.transport.reconnectToStream({ chatId }), null, "nothing left to resume");
		assert.equal(await queueDepth(gw.port, key), 0);
	});
});
