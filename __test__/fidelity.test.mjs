// Agent fidelity (issue 14, SPEC §12 "Fidelity") over HTTP on a real socket, in front of real pi
// AgentSessions on the offline faux model, read with the real `ai` packages (v7, v6, v5):
// - the event stream: agent_start / agent_end with the runId (and nothing of pi's whole message
//   lists), message_complete with pi's usage, stopReason and model;
// - the chat stream: `start` with messageMetadata {sessionKey, runId}, `finish` with
//   messageMetadata {usage (summed over the run), model, stopReason}, tool chunks `dynamic: true`,
//   every chunk accepted by each version's own uiMessageChunkSchema with no undeclared field; the
//   real Chat (AbstractChat + DefaultChatTransport) ends with the metadata set and a dynamic-tool part;
// - user `file` parts: an image reaches pi as an image block (pi's own session message), with or
//   without text; bad file parts → 400 naming `messages[i].parts[j].mediaType` / `.url`, no run,
//   and the session still answers;
// - `trigger: "regenerate-message"`: the last user message runs again and the previous answer
//   leaves pi's context (one answer to it on the current branch; the old one stays in the tree).
//
// Run: node --test __test__/fidelity.test.mjs

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { HELLO_CONTENT, HELLO_FILE } from "../lib/faux-agent.js";
import {
	enc,
	getHistory,
	openEvents,
	piBranch,
	piUsage,
	PNG_B64,
	PNG_URL,
	say,
	startHistoryGateway,
	usageOf,
	userContentText,
	validateUi,
} from "./support/history-util.mjs";
import { request } from "./support/http.mjs";
import { createChat, SDKS, uiStreamChunks, validateChunks, wellFormed } from "./support/modes-util.mjs";
import { listRuns, UUID_V7 } from "./support/runs.mjs";
import { gifBytes, jpegBytes, png, webpBytes } from "./support/safe-util.mjs";
import { within } from "./support/wait.mjs";

const FAUX_1 = { provider: "faux", id: "faux-1" };
const HELLO_ANSWER = `${HELLO_FILE} says: ${HELLO_CONTENT}`;
const MAX_IMAGE_BYTES = 4096;
const TOOL_CHUNKS = new Set(["tool-input-start", "tool-input-available", "tool-output-available", "tool-output-error"]);

const userMsg = (id, parts) => ({ id, role: "user", parts });
const text = (t) => ({ type: "text", text: t });
const file = (mediaType, url) => ({ type: "file", mediaType, url });

/** The pi messages of the last run of a session: everything after its last user message. */
function lastRunMessages(session) {
	const messages = session.messages;
	return messages.slice(messages.findLastIndex((m) => m.role === "user") + 1);
}

describe("fidelity: events, chat metadata, dynamic tools, images, regenerate", { timeout: 240_000 }, () => {
	/** @type {Awaited<ReturnType<typeof startHistoryGateway>>} */
	let gw;
	before(async () => {
		gw = await startHistoryGateway({ config: { limits: { maxImageBytes: MAX_IMAGE_BYTES } } });
	});
	after(async () => {
		await gw?.close();
	});

	/**
	 * POST /chat and read the whole stream: 200, the framing, `wellFormed`, and every chunk through
	 * each `ai` version's own schema. Returns `{chunks, runId, raw}`.
	 */
	async function chatRun(key, body, what = `chat on ${key}`) {
		const r = await request(gw.port, "POST", `/sessions/${enc(key)}/chat`, { body, timeoutMs: 30_000 });
		assert.equal(r.status, 200, `${what}: ${r.status} ${r.text.slice(0, 400)}`);
		const chunks = uiStreamChunks(r.text, what);
		wellFormed(chunks, what);
		for (const sdk of SDKS) await validateChunks(sdk, chunks, what);
		const runId = r.headers["x-run-id"];
		assert.match(String(runId), UUID_V7, `${what}: x-run-id`);
		return { chunks, runId, raw: r.text };
	}

	describe("the event stream", () => {
		it("agent_start / agent_end carry the runId (and nothing else); message_complete has pi's usage, stopReason and model", async () => {
			const key = "fidelity-events";
			const sse = await openEvents(gw.port, key);
			try {
				const { runId } = await say(gw.port, key, "What is in the file?");
				await sse.waitFor((f) => f.data?.type === "run_end" && f.data.runId === runId, 10_000, "run_end");
				const events = sse.events().map((f) => f.data);
				const of = (type) => events.filter((e) => e.type === type && e.runId === runId);
				assert.deepEqual(of("agent_start"), [{ type: "agent_start", sessionKey: key, runId }]);
				assert.deepEqual(of("agent_end"), [{ type: "agent_end", sessionKey: key, runId }]);
				const at = (pred) => events.findIndex(pred);
				const runStart = at((e) => e.type === "run_start" && e.runId === runId);
				const agentStart = at((e) => e.type === "agent_start" && e.runId === runId);
				const agentEnd = at((e) => e.type === "agent_end" && e.runId === runId);
				const runEnd = at((e) => e.type === "run_end" && e.runId === runId);
				assert.ok(runStart < agentStart && agentStart < agentEnd && agentEnd < runEnd, `run_start < agent_start < agent_end < run_end: ${events.map((e) => e.type)}`);
				for (const [i, e] of events.entries()) {
					if (["turn_start", "turn_end", "message_start", "token", "thinking", "tool_start", "tool_complete", "message_complete"].includes(e.type)) {
						assert.ok(agentStart < i && i < agentEnd, `${e.type} between agent_start and agent_end`);
					}
				}
				const completes = of("message_complete");
				const assistants = lastRunMessages(gw.sessions.get(key)).filter((m) => m.role === "assistant");
				assert.equal(completes.length, 2, "two assistant messages: the tool call, the answer");
				assert.equal(assistants.length, 2);
				for (const [i, c] of completes.entries()) {
					assert.deepEqual(c.usage, piUsage(assistants[i].usage), `message_complete ${i}: pi's usage`);
					assert.ok(c.usage.totalTokens > 0);
					assert.equal(c.stopReason, assistants[i].stopReason);
					assert.deepEqual(c.model, FAUX_1);
				}
				assert.deepEqual(completes.map((c) => c.stopReason), ["toolUse", "stop"]);
				assert.equal(completes[1].text, HELLO_ANSWER);
			} finally {
				sse.close();
			}
		});

		it("a failed model call: message_complete with stopReason error; agent_end still comes", async () => {
			const key = "fidelity-events-error";
			const sse = await openEvents(gw.port, key);
			try {
				const r = await request(gw.port, "POST", `/sessions/${key}/messages`, { body: { text: "/error" }, timeoutMs: 20_000 });
				const runId = r.headers["x-run-id"];
				assert.match(String(runId), UUID_V7);
				await sse.waitFor((f) => f.data?.type === "run_end" && f.data.runId === runId, 10_000, "run_end");
				const events = sse.events().map((f) => f.data).filter((e) => e.runId === runId);
				const complete = events.filter((e) => e.type === "message_complete");
				assert.equal(complete.length, 1);
				assert.equal(complete[0].stopReason, "error");
				assert.ok(complete[0].usage, "usage even on an error");
				assert.equal(events.filter((e) => e.type === "agent_start").length, 1);
				assert.equal(events.filter((e) => e.type === "agent_end").length, 1);
			} finally {
				sse.close();
			}
		});
	});

	describe("the chat stream", () => {
		it("start and finish carry messageMetadata; tool chunks are dynamic; every chunk passes ai 5/6/7's schema", async () => {
			const key = "fidelity-chat";
			const { chunks, runId } = await chatRun(key, { messages: [userMsg("u1", [text("What is in the file?")])] });
			assert.deepEqual(chunks[0], { type: "start", messageId: runId, messageMetadata: { sessionKey: key, runId } });
			const run = lastRunMessages(gw.sessions.get(key));
			assert.deepEqual(chunks.at(-1), {
				type: "finish",
				finishReason: "stop",
				messageMetadata: { usage: usageOf(run), model: FAUX_1, stopReason: "stop" },
			});
			assert.ok(chunks.at(-1).messageMetadata.usage.totalTokens > 0);
			const tools = chunks.filter((c) => TOOL_CHUNKS.has(c.type));
			assert.deepEqual(tools.map((c) => c.type), ["tool-input-start", "tool-input-available", "tool-output-available"]);
			for (const c of tools) assert.equal(c.dynamic, true, `dynamic: true on ${JSON.stringify(c)}`);
			for (const c of chunks.filter((x) => x.type === "tool-input-delta")) assert.equal(c.dynamic, undefined, "tool-input-delta declares no dynamic");
		});

		it("a failed tool: tool-output-error is dynamic too", async () => {
			const key = "fidelity-chat-toolfail";
			const { chunks } = await chatRun(key, { messages: [userMsg("u1", [text("/toolfail")])] });
			const tools = chunks.filter((c) => TOOL_CHUNKS.has(c.type));
			assert.deepEqual(tools.map((c) => c.type), ["tool-input-start", "tool-input-available", "tool-output-error"]);
			for (const c of tools) assert.equal(c.dynamic, true, `dynamic: true on ${JSON.stringify(c)}`);
			assert.equal(chunks.at(-1).messageMetadata.stopReason, "stop");
		});

		for (const sdk of SDKS) {
			it(`${sdk.label}: the real Chat ends with the message metadata set and a dynamic-tool part`, async () => {
				const key = `fidelity-chat-client-${sdk.major}`;
				const chat = createChat(sdk, { id: `fidelity-${sdk.major}`, api: `${gw.base}/sessions/${enc(key)}/chat` });
				await within(chat.sendMessage({ text: "What is in the file?" }), 30_000, "the Chat to finish");
				assert.deepEqual(chat.reportedErrors, []);
				assert.equal(chat.status, "ready");
				assert.equal(chat.messages.length, 2);
				const answer = chat.messages[1];
				const runId = chat.fetch.responses[0].headers.get("x-run-id");
				assert.equal(answer.id, runId);
				const run = lastRunMessages(gw.sessions.get(key));
				assert.deepEqual(answer.metadata, { sessionKey: key, runId, usage: usageOf(run), model: FAUX_1, stopReason: "stop" });
				const tools = answer.parts.filter((p) => p.type === "dynamic-tool" || p.type.startsWith("tool-"));
				assert.equal(tools.length, 1, JSON.stringify(answer.parts));
				assert.equal(tools[0].type, "dynamic-tool");
				assert.equal(tools[0].toolName, "read");
				assert.equal(tools[0].state, "output-available");
				assert.deepEqual(tools[0].input, { path: HELLO_FILE });
				assert.equal(answer.parts.filter((p) => p.type === "text").at(-1).text, HELLO_ANSWER);
			});
		}
	});

	describe("user file parts", () => {
		it("an image file part with text reaches pi as an image block (pi's session message), and comes back in history", async () => {
			const key = "fidelity-image";
			const { chunks, runId } = await chatRun(key, { messages: [userMsg("u1", [text("/echo picture"), file("image/png", PNG_URL)])] });
			assert.equal(chunks.at(-1).type, "finish");
			const pi = await getHistory(gw.port, key, { format: "pi" });
			assert.deepEqual(pi.messages, piBranch(gw.sessions.get(key)));
			const user = pi.messages.find((e) => e.message.role === "user").message;
			assert.deepEqual(user.content, [
				{ type: "text", text: "/echo picture" },
				{ type: "image", data: PNG_B64, mimeType: "image/png" },
			]);
			const ui = await getHistory(gw.port, key);
			await validateUi(ui.messages);
			assert.deepEqual(ui.messages[0].parts, [text("/echo picture"), file("image/png", PNG_URL)]);
			assert.equal(ui.messages[1].id, runId);
			assert.equal(ui.messages[1].parts.at(-1).text, "You said: picture");
		});

		it("an image without text is accepted; jpeg, gif and webp too; only the last user message's files reach pi", async () => {
			const key = "fidelity-image-only";
			await chatRun(key, { messages: [userMsg("u1", [file("image/png", PNG_URL)])] });
			const first = gw.sessions.get(key).messages.find((m) => m.role === "user");
			assert.ok(Array.isArray(first.content), JSON.stringify(first));
			assert.deepEqual(first.content.filter((b) => b.type === "image"), [{ type: "image", data: PNG_B64, mimeType: "image/png" }]);
			assert.equal(userContentText(first).trim(), "", "no text");

			const others = [
				["image/jpeg", jpegBytes()],
				["image/gif", gifBytes()],
				["image/webp", webpBytes()],
			];
			const parts = [text("/echo three images"), ...others.map(([mime, bytes]) => file(mime, `data:${mime};base64,${bytes.toString("base64")}`))];
			// An older user message with a file part: not sent to pi again.
			const messages = [
				userMsg("old", [text("/echo old"), file("image/png", PNG_URL)]),
				{ id: "a-old", role: "assistant", parts: [text("You said: old")] },
				userMsg("new", parts),
			];
			await chatRun(key, { messages });
			const last = gw.sessions.get(key).messages.findLast((m) => m.role === "user");
			assert.equal(userContentText(last), "/echo three images");
			assert.deepEqual(
				last.content.filter((b) => b.type === "image"),
				others.map(([mime, bytes]) => ({ type: "image", data: bytes.toString("base64"), mimeType: mime })),
			);
			assert.equal(gw.sessions.get(key).messages.filter((m) => m.role === "user").length, 2, "one user message per request");
		});

		it(`${SDKS[0].label}: the real Chat sends files with sendMessage({text, files}); pi gets the image`, async () => {
			const key = "fidelity-image-chat";
			const chat = createChat(SDKS[0], { id: "fidelity-files", api: `${gw.base}/sessions/${enc(key)}/chat` });
			await within(chat.sendMessage({ text: "/echo with a file", files: [{ type: "file", mediaType: "image/png", url: PNG_URL }] }), 30_000, "the Chat to finish");
			assert.deepEqual(chat.reportedErrors, []);
			assert.equal(chat.messages[1].parts.filter((p) => p.type === "text").at(-1).text, "You said: with a file");
			const user = gw.sessions.get(key).messages.findLast((m) => m.role === "user");
			assert.deepEqual(user.content.filter((b) => b.type === "image"), [{ type: "image", data: PNG_B64, mimeType: "image/png" }]);
		});

		it("bad file parts → 400 naming messages[i].parts[j].mediaType / .url; no run; the session still answers", async () => {
			const key = "fidelity-bad-files";
			await say(gw.port, key, "/echo ready");
			const runsBefore = (await listRuns(gw.port, key)).length;
			const pngAsJpeg = `data:image/jpeg;base64,${PNG_B64}`;
			const cases = [
				[[text("hi"), file("application/pdf", "data:application/pdf;base64,JVBERi0xLjQK")], "messages[0].parts[1].mediaType"],
				[[text("hi"), file("text/plain", "data:text/plain;base64,aGVsbG8=")], "messages[0].parts[1].mediaType"],
				[[text("hi"), file("image/svg+xml", "data:image/svg+xml;base64,PHN2Zy8+")], "messages[0].parts[1].mediaType"],
				[[text("hi"), { type: "file", url: PNG_URL }], "messages[0].parts[1].mediaType"],
				[[text("hi"), file(5, PNG_URL)], "messages[0].parts[1].mediaType"],
				[[text("hi"), file("image/png", "https://example.com/a.png")], "messages[0].parts[1].url"],
				[[text("hi"), file("image/png", `data:image/png,${PNG_B64}`)], "messages[0].parts[1].url"],
				[[text("hi"), file("image/png", "data:image/png;base64,***not base64***")], "messages[0].parts[1].url"],
				[[text("hi"), file("image/png", 42)], "messages[0].parts[1].url"],
				[[text("hi"), { type: "file", mediaType: "image/png" }], "messages[0].parts[1].url"],
				[[text("hi"), file("image/png", "data:image/png;base64,")], "messages[0].parts[1].url"],
				[[file("image/png", "data:image/png;base64,aGVsbG8gd29ybGQ="), text("not a png")], "messages[0].parts[0]"],
				[[text("hi"), file("image/png", pngAsJpeg)], "messages[0].parts[1]"],
				[[text("hi"), file("image/png", `data:image/png;base64,${png({ padTo: MAX_IMAGE_BYTES + 1 })}`)], "messages[0].parts[1]"],
			];
			for (const [parts, field] of cases) {
				const body = { messages: [userMsg("u1", parts)] };
				const r = await request(gw.port, "POST", `/sessions/${key}/chat`, { body });
				const show = JSON.stringify(parts).slice(0, 160);
				assert.equal(r.status, 400, `${show}: ${r.status} ${r.text.slice(0, 300)}`);
				assert.equal(typeof r.json?.error, "string", `${show}: ${r.text.slice(0, 300)}`);
				assert.ok(r.json.error.includes(field), `${show}: the error names ${field}: ${r.json.error}`);
				assert.equal(r.headers["x-run-id"], undefined);
			}
			// The index of the LAST user message in the body.
			const deep = {
				messages: [
					userMsg("u1", [text("/echo a")]),
					{ id: "a1", role: "assistant", parts: [text("You said: a")] },
					userMsg("u2", [text("/echo b"), text(" more"), file("application/zip", "data:application/zip;base64,UEsDBA==")]),
				],
			};
			const r = await request(gw.port, "POST", `/sessions/${key}/chat`, { body: deep });
			assert.equal(r.status, 400, r.text);
			assert.ok(r.json.error.includes("messages[2].parts[2].mediaType"), r.json.error);
			// More than limits.maxImages (default 8).
			const tooMany = { messages: [userMsg("u1", [text("/echo many"), ...Array.from({ length: 9 }, () => file("image/png", PNG_URL))])] };
			const many = await request(gw.port, "POST", `/sessions/${key}/chat`, { body: tooMany });
			assert.equal(many.status, 400, many.text);
			assert.equal(typeof many.json?.error, "string");
			assert.equal((await listRuns(gw.port, key)).length, runsBefore, "no run for any of them");
			assert.equal(gw.sessions.get(key).messages.filter((m) => m.role === "user").length, 1, "nothing reached pi");
			const ok = await chatRun(key, { messages: [userMsg("u1", [text("/echo fine"), file("image/png", PNG_URL)])] });
			assert.equal(ok.chunks.at(-1).type, "finish");
			// Exactly 8 images are fine.
			const eight = await chatRun(key, { messages: [userMsg("u1", [text("/echo eight"), ...Array.from({ length: 8 }, () => file("image/png", PNG_URL))])] });
			assert.equal(eight.chunks.at(-1).type, "finish");
			assert.equal(gw.sessions.get(key).messages.findLast((m) => m.role === "user").content.filter((b) => b.type === "image").length, 8);
		});
	});

	describe('trigger: "regenerate-message"', () => {
		it("re-runs the last user message; the previous answer leaves pi's context (one answer on the current branch)", async () => {
			const key = "fidelity-regenerate";
			const u1 = userMsg("u1", [text("/echo first")]);
			const a = await chatRun(key, { messages: [u1] });
			const a1 = { id: a.runId, role: "assistant", parts: [text("You said: first")] };
			const u2 = userMsg("u2", [text("What is in the file?")]);
			const b = await chatRun(key, { messages: [u1, a1, u2] });
			const session = gw.sessions.get(key);
			const oldBranch = piBranch(session);
			assert.deepEqual(oldBranch.map((e) => e.message.role), ["user", "assistant", "user", "assistant", "toolResult", "assistant"]);
			const oldAnswerIds = oldBranch.slice(3).map((e) => e.id);

			const c = await chatRun(key, { id: "chat-regen", trigger: "regenerate-message", messageId: b.runId, messages: [u1, a1, u2] });
			assert.notEqual(c.runId, b.runId, "a new run");
			assert.equal(c.chunks.at(-1).type, "finish");

			const branch = piBranch(gw.sessions.get(key));
			const pi = await getHistory(gw.port, key, { format: "pi" });
			assert.deepEqual(pi.messages, branch);
			assert.deepEqual(
				branch.map((e) => [e.message.role, userContentText(e.message)]).filter(([role]) => role === "user"),
				[
					["user", "/echo first"],
					["user", "What is in the file?"],
				],
				"the last user message once on the current branch",
			);
			assert.deepEqual(branch.map((e) => e.message.role), ["user", "assistant", "user", "assistant", "toolResult", "assistant"], "one answer to it");
			assert.deepEqual(branch.slice(0, 2), oldBranch.slice(0, 2), "the first exchange stays");
			for (const id of oldAnswerIds) assert.ok(!branch.some((e) => e.id === id), `the old answer's entry ${id} is not on the current branch`);
			const all = gw.sessions.get(key).sessionManager.getEntries().map((e) => e.id);
			for (const id of oldAnswerIds) assert.ok(all.includes(id), "the old answer stays in pi's tree");
			// pi's context (what the model sees next) holds the new answer only.
			const context = gw.sessions.get(key).messages;
			assert.equal(context.filter((m) => m.role === "user").length, 2);
			assert.equal(context.filter((m) => m.role === "assistant").length, 3);
			const ui = await getHistory(gw.port, key);
			await validateUi(ui.messages);
			assert.deepEqual(ui.messages.map((m) => m.role), ["user", "assistant", "user", "assistant"]);
			assert.equal(ui.messages[1].id, a.runId);
			assert.equal(ui.messages[3].id, c.runId, "the regenerated answer is the new run's");
			// The model really sees one earlier message (the faux /history command counts them).
			const h = await say(gw.port, key, "/history");
			assert.equal(h.response, 'You said 2 things before: "/echo first", "What is in the file?"');
		});

		for (const sdk of SDKS) {
			it(`${sdk.label}: Chat.regenerate() replaces the answer; history and pi hold one answer`, async () => {
				const key = `fidelity-regenerate-chat-${sdk.major}`;
				const chat = createChat(sdk, { id: `regen-${sdk.major}`, api: `${gw.base}/sessions/${enc(key)}/chat` });
				await within(chat.sendMessage({ text: "What is in the file?" }), 30_000, "the first answer");
				const firstRun = chat.fetch.responses[0].headers.get("x-run-id");
				await within(chat.regenerate(), 30_000, "the regenerated answer");
				assert.deepEqual(chat.reportedErrors, []);
				assert.equal(chat.fetch.responses[1].requestBody.trigger, "regenerate-message");
				const secondRun = chat.fetch.responses[1].headers.get("x-run-id");
				assert.notEqual(secondRun, firstRun);
				assert.equal(chat.messages.length, 2);
				assert.equal(chat.messages[1].id, secondRun);
				const branch = piBranch(gw.sessions.get(key));
				assert.deepEqual(branch.map((e) => e.message.role), ["user", "assistant", "toolResult", "assistant"]);
				const ui = await getHistory(gw.port, key);
				assert.deepEqual(ui.messages.map((m) => m.id).slice(1), [secondRun]);
				assert.equal(ui.messages.length, 2);
			});
		}
	});
});
