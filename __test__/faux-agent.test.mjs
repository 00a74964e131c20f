// Tests of lib/faux-agent.js: every scripted command, run through real pi AgentSessions
// (@mariozechner/pi-coding-agent 0.73.1) on the offline faux model.
// Run: node --test __test__/faux-agent.test.mjs

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
	createFauxPiAgent,
	FAUX_ERROR_MESSAGE,
	FAUX_MODEL_2_ID,
	FAUX_MODEL_ID,
	FAUX_PROVIDER,
	fauxBashCommands,
	fauxBashToolCalls,
	gatewaySessionStore,
	fauxLongText,
	HELLO_CONTENT,
	HELLO_FILE,
	MISSING_FILE,
	parseFauxCommand,
} from "../lib/faux-agent.js";

/** Records every event of a session until `stop()` is called. */
function record(session) {
	const events = [];
	const stop = session.subscribe((event) => events.push(event));
	return { events, stop };
}

/** Event names, with message_update named by its assistantMessageEvent type, consecutive repeats collapsed. */
function outline(events) {
	const names = [];
	for (const event of events) {
		const name = event.type === "message_update" ? event.assistantMessageEvent.type : event.type;
		if (names[names.length - 1] !== name) names.push(name);
	}
	return names;
}

function updates(events, type) {
	return events.filter((e) => e.type === "message_update" && e.assistantMessageEvent.type === type);
}

function textOf(message) {
	return message.content
		.filter((c) => c.type === "text")
		.map((c) => c.text)
		.join("");
}

/** Runs one prompt on a session and returns what it emitted. */
async function run(session, text) {
	const { events, stop } = record(session);
	try {
		await session.prompt(text);
	} finally {
		stop();
	}
	return events;
}

function nextEvent(session, predicate) {
	return new Promise((resolve) => {
		const stop = session.subscribe((event) => {
			if (predicate(event)) {
				stop();
				resolve(event);
			}
		});
	});
}

describe("createFauxPiAgent", () => {
	/** @type {Awaited<ReturnType<typeof createFauxPiAgent>>} */
	let agent;

	before(async () => {
		agent = await createFauxPiAgent();
	});
	after(async () => {
		await agent?.close();
	});

	it("a plain prompt thinks, really runs the read tool, then answers with the file content", async () => {
		const session = await agent.createSession("default-command");
		const events = await run(session, "What is in the workspace?");

		assert.deepEqual(outline(events), [
			"agent_start",
			"turn_start",
			"message_start", // user
			"message_end",
			"message_start", // assistant: thinking + tool call
			"thinking_start",
			"thinking_delta",
			"thinking_end",
			"toolcall_start",
			"toolcall_delta",
			"toolcall_end",
			"message_end",
			"tool_execution_start",
			"tool_execution_end",
			"message_start", // toolResult
			"message_end",
			"turn_end",
			"turn_start",
			"message_start", // assistant: the answer
			"text_start",
			"text_delta",
			"text_end",
			"message_end",
			"turn_end",
			"agent_end",
		]);

		// Thinking streams in deltas that add up to the thinking_end content.
		const thinking = updates(events, "thinking_delta")
			.map((e) => e.assistantMessageEvent.delta)
			.join("");
		assert.match(thinking, /The user asked "What is in the workspace\?"/);
		assert.equal(updates(events, "thinking_end")[0].assistantMessageEvent.content, thinking);

		// toolcall_start carries no id itself: id and name are on partial.content[contentIndex];
		// toolcall_end carries the whole call as `toolCall`.
		const start = updates(events, "toolcall_start")[0].assistantMessageEvent;
		const startBlock = start.partial.content[start.contentIndex];
		assert.equal(startBlock.type, "toolCall");
		assert.equal(startBlock.name, "read");
		const end = updates(events, "toolcall_end")[0].assistantMessageEvent;
		assert.equal(end.toolCall.id, startBlock.id);
		assert.equal(end.toolCall.name, "read");
		assert.deepEqual(end.toolCall.arguments, { path: HELLO_FILE });
		const argsText = updates(events, "toolcall_delta")
			.map((e) => e.assistantMessageEvent.delta)
			.join("");
		assert.deepEqual(JSON.parse(argsText), { path: HELLO_FILE });

		const toolStart = events.find((e) => e.type === "tool_execution_start");
		assert.deepEqual(toolStart, {
			type: "tool_execution_start",
			toolCallId: end.toolCall.id,
			toolName: "read",
			args: { path: HELLO_FILE },
		});
		const toolEnd = events.find((e) => e.type === "tool_execution_end");
		assert.equal(toolEnd.toolCallId, end.toolCall.id);
		assert.equal(toolEnd.toolName, "read");
		assert.equal(toolEnd.isError, false);
		assert.deepEqual(toolEnd.result.content, [{ type: "text", text: HELLO_CONTENT }]);

		const answer = updates(events, "text_delta")
			.map((e) => e.assistantMessageEvent.delta)
			.join("");
		assert.equal(answer, `${HELLO_FILE} says: ${HELLO_CONTENT}`);

		assert.deepEqual(
			session.messages.map((m) => m.role),
			["user", "assistant", "toolResult", "assistant"],
		);
		const last = session.messages.at(-1);
		assert.equal(last.stopReason, "stop");
		assert.equal(textOf(last), answer);
	});

	it("the read tool really reads the workspace: changing hello.txt changes the answer", async () => {
		const path = join(agent.cwd, HELLO_FILE);
		assert.equal(await readFile(path, "utf8"), HELLO_CONTENT);
		await writeFile(path, "Changed content.");
		try {
			const session = await agent.createSession("changed-file");
			await session.prompt("read it again");
			assert.equal(textOf(session.messages.at(-1)), `${HELLO_FILE} says: Changed content.`);
		} finally {
			await writeFile(path, HELLO_CONTENT);
		}
	});

	it("/echo answers with one text message", async () => {
		const session = await agent.createSession("echo");
		const events = await run(session, "/echo hi there");
		assert.deepEqual(outline(events), [
			"agent_start",
			"turn_start",
			"message_start",
			"message_end",
			"message_start",
			"text_start",
			"text_delta",
			"text_end",
			"message_end",
			"turn_end",
			"agent_end",
		]);
		const textEnd = updates(events, "text_end")[0].assistantMessageEvent;
		assert.equal(textEnd.contentIndex, 0);
		assert.equal(textEnd.content, "You said: hi there");
		assert.equal(textOf(session.messages.at(-1)), "You said: hi there");
		assert.equal(session.messages.length, 2);
	});

	it("/long 20000 streams exactly 20000 text_delta events of one word each, quickly", async () => {
		const session = await agent.createSession("long");
		const started = Date.now();
		const events = await run(session, "/long 20000");
		const elapsed = Date.now() - started;
		const deltas = updates(events, "text_delta").map((e) => e.assistantMessageEvent.delta);
		assert.equal(deltas.length, 20000);
		assert.ok(deltas.every((d) => /^w\d\d $/.test(d)));
		assert.equal(deltas[17], "w17 ");
		assert.equal(deltas.join(""), fauxLongText(20000));
		assert.equal(textOf(session.messages.at(-1)), fauxLongText(20000));
		assert.ok(elapsed < 10_000, `took ${elapsed} ms`);
	});

	it("/slow streams about one word per 50 ms and abort() ends the run with stopReason aborted", async () => {
		const session = await agent.createSession("slow");
		const { events, stop } = record(session);
		const started = Date.now();
		const prompted = session.prompt("/slow 200");
		let deltas = 0;
		await nextEvent(session, (e) => e.type === "message_update" && e.assistantMessageEvent.type === "text_delta" && ++deltas === 3);
		const elapsed = Date.now() - started;
		assert.ok(elapsed >= 100, `3 slow words came after ${elapsed} ms`);
		assert.equal(session.isStreaming, true);

		// While a run is in progress a plain prompt() is refused.
		await assert.rejects(session.prompt("/echo in between"), /already processing/);

		await session.abort();
		await prompted; // resolves, does not reject
		stop();

		assert.equal(session.isStreaming, false);
		const last = session.messages.at(-1);
		assert.equal(last.role, "assistant");
		assert.equal(last.stopReason, "aborted");
		assert.equal(last.errorMessage, "Request was aborted");
		const partial = textOf(last);
		assert.ok(partial.length >= 12 && partial.length < 200 * 4, `partial text of ${partial.length} chars`);
		assert.ok(fauxLongText(200).startsWith(partial));
		// No text_end after an abort: the message just ends.
		assert.deepEqual(outline(events).slice(-4), ["text_delta", "message_end", "turn_end", "agent_end"]);
		const end = events.find((e) => e.type === "message_end" && e.message.role === "assistant");
		assert.equal(end.message.stopReason, "aborted");

		// The session is usable again afterwards.
		await session.prompt("/echo again");
		assert.equal(textOf(session.messages.at(-1)), "You said: again");
	});

	it("/error: prompt() resolves and the last assistant message carries stopReason error", async () => {
		const session = await agent.createSession("error");
		const events = await run(session, "/error");
		assert.deepEqual(outline(events), [
			"agent_start",
			"turn_start",
			"message_start",
			"message_end",
			"message_start",
			"message_end",
			"turn_end",
			"agent_end",
		]);
		const last = session.messages.at(-1);
		assert.equal(last.role, "assistant");
		assert.equal(last.stopReason, "error");
		assert.equal(last.errorMessage, FAUX_ERROR_MESSAGE);
		assert.deepEqual(last.content, []);
		const end = events.find((e) => e.type === "message_end" && e.message.role === "assistant");
		assert.equal(end.message.errorMessage, FAUX_ERROR_MESSAGE);
	});

	it("/toolfail: the read tool fails for real, then the model says so", async () => {
		const session = await agent.createSession("toolfail");
		const events = await run(session, "/toolfail");
		const toolEnd = events.find((e) => e.type === "tool_execution_end");
		assert.equal(toolEnd.toolName, "read");
		assert.equal(toolEnd.isError, true);
		assert.match(toolEnd.result.content[0].text, /ENOENT/);
		assert.ok(toolEnd.result.content[0].text.includes(MISSING_FILE));
		assert.deepEqual(
			session.messages.map((m) => m.role),
			["user", "assistant", "toolResult", "assistant"],
		);
		assert.equal(session.messages[2].isError, true);
		const last = session.messages.at(-1);
		assert.equal(last.stopReason, "stop");
		assert.match(textOf(last), /^The read tool failed: ENOENT/);
	});

	it("/bash: pi's real bash tool runs the command in the faux cwd (no approval anywhere), its output reaches the answer", async () => {
		const session = await agent.createSession("bash");
		const marker = join(agent.cwd, "bash-marker.txt");
		assert.equal(existsSync(marker), false);
		const events = await run(session, "/bash echo hi-from-bash && echo made > bash-marker.txt");
		const toolStart = events.find((e) => e.type === "tool_execution_start");
		assert.equal(toolStart.toolName, "bash");
		assert.deepEqual(toolStart.args, { command: "echo hi-from-bash && echo made > bash-marker.txt" });
		const toolEnd = events.find((e) => e.type === "tool_execution_end");
		assert.equal(toolEnd.isError, false);
		assert.equal(await readFile(marker, "utf8"), "made\n", "the command really ran, in the faux cwd");
		assert.deepEqual(
			session.messages.map((m) => m.role),
			["user", "assistant", "toolResult", "assistant"],
		);
		const last = session.messages.at(-1);
		assert.equal(last.stopReason, "stop");
		assert.equal(textOf(last), "bash said: hi-from-bash");
		await rm(marker, { force: true });
	});

	it("/bash a ;; b: one assistant message with two bash calls, one answer line per call (a failing one says so)", async () => {
		const session = await agent.createSession("bash-two");
		const events = await run(session, "/bash echo first ;; echo second >&2; exit 3");
		const calls = session.messages[1].content.filter((c) => c.type === "toolCall");
		assert.deepEqual(
			calls.map((c) => [c.name, c.arguments]),
			[
				["bash", { command: "echo first" }],
				["bash", { command: "echo second >&2; exit 3" }],
			],
		);
		assert.equal(events.filter((e) => e.type === "tool_execution_end").length, 2);
		assert.deepEqual(
			session.messages.map((m) => m.role),
			["user", "assistant", "toolResult", "toolResult", "assistant"],
		);
		assert.equal(session.messages[2].isError, false);
		assert.equal(session.messages[3].isError, true);
		const lines = textOf(session.messages.at(-1)).split("\n");
		assert.equal(lines.length, 2, textOf(session.messages.at(-1)));
		assert.equal(lines[0], "bash said: first");
		assert.equal(lines[1], "bash failed: second Command exited with code 3", "a multi-line result is put on one line");
	});

	it("/bash a ;; @read <path>: a bash call and a read call in one assistant message, answered `bash said:` / `read said:` (and `read failed:`) in order", async () => {
		const session = await agent.createSession("bash-read");
		const events = await run(session, `/bash echo mixed ;; @read ${HELLO_FILE} ;; @read  ${MISSING_FILE} `);
		const calls = session.messages[1].content.filter((c) => c.type === "toolCall");
		assert.deepEqual(
			calls.map((c) => [c.name, c.arguments]),
			[
				["bash", { command: "echo mixed" }],
				["read", { path: HELLO_FILE }],
				["read", { path: MISSING_FILE }],
			],
		);
		assert.deepEqual(
			events.filter((e) => e.type === "tool_execution_end").map((e) => [e.toolName, e.isError]).sort(),
			[
				["bash", false],
				["read", false],
				["read", true],
			].sort(),
			"pi's real tools ran: the read of the missing file failed",
		);
		assert.deepEqual(
			session.messages.map((m) => m.role),
			["user", "assistant", "toolResult", "toolResult", "toolResult", "assistant"],
		);
		const lines = textOf(session.messages.at(-1)).split("\n");
		assert.equal(lines.length, 3, textOf(session.messages.at(-1)));
		assert.equal(lines[0], "bash said: mixed");
		assert.equal(lines[1], `read said: ${HELLO_CONTENT}`);
		assert.match(lines[2], /^read failed: ENOENT\S*/);
		assert.ok(!lines[2].includes("\n"));
	});

	it("concurrent sessions each get the answer their own last message asks for", async () => {
		const sessions = await Promise.all(["c1", "c2", "c3", "c4"].map((k) => agent.createSession(k)));
		const texts = ["/slow 5", "/echo two", "plain question", "/long 50"];
		const started = Date.now();
		await Promise.all(sessions.map((s, i) => s.prompt(texts[i])));
		assert.ok(Date.now() - started >= 200, "/slow stayed slow next to fast runs");
		assert.equal(textOf(sessions[0].messages.at(-1)), fauxLongText(5));
		assert.equal(textOf(sessions[1].messages.at(-1)), "You said: two");
		assert.equal(textOf(sessions[2].messages.at(-1)), `${HELLO_FILE} says: ${HELLO_CONTENT}`);
		assert.equal(textOf(sessions[3].messages.at(-1)), fauxLongText(50));
	});

	it("sessions look the way the gateway expects (AgentSession 0.73.1)", async () => {
		const primary = agent.primarySession;
		assert.equal(typeof primary.sessionId, "string");
		assert.ok(primary.sessionId.length > 0);
		assert.ok(Array.isArray(primary.messages));
		assert.equal(primary.newSession, undefined, "AgentSession 0.73.1 has no newSession()");
		assert.equal(typeof primary.abort, "function");
		assert.equal(typeof primary.dispose, "function");
		assert.equal(primary.sessionManager.getSessionDir(), join(agent.agentDir, "sessions", "primary"));

		const other = await agent.createSession("chat:alpha/1");
		assert.notEqual(other.sessionId, primary.sessionId);
		assert.equal(other.sessionManager.getSessionDir(), join(agent.agentDir, "sessions", "gateway-sessions", "chat_alpha_1"));
		await other.abort(); // idle abort resolves
		await other.prompt("/echo persisted");
		assert.ok(other.sessionFile && existsSync(other.sessionFile), "the session file is written");
		other.dispose();

		assert.equal(agent.faux.getModel().provider, "faux");
		assert.ok(agent.faux.state.callCount > 0);
	});
});

describe("createFauxPiAgent options and close()", () => {
	it("close() removes the temporary directories it made", async () => {
		const agent = await createFauxPiAgent();
		assert.ok(existsSync(join(agent.cwd, HELLO_FILE)));
		assert.ok(existsSync(agent.agentDir));
		await agent.primarySession.prompt("/echo x");
		await agent.close();
		assert.equal(existsSync(agent.cwd), false);
		assert.equal(existsSync(agent.agentDir), false);
		await agent.close(); // idempotent
		await assert.rejects(agent.createSession("late"), /closed/);
	});

	it("close() aborts a run in progress", async () => {
		const agent = await createFauxPiAgent();
		const session = agent.primarySession;
		const prompted = session.prompt("/slow 1000");
		await nextEvent(session, (e) => e.type === "message_update" && e.assistantMessageEvent.type === "text_delta");
		await agent.close();
		await prompted;
		assert.equal(session.messages.at(-1).stopReason, "aborted");
	});

	it("a given cwd and agentDir are kept; only the hello file it wrote is removed", async () => {
		const base = await mkdtemp(join(tmpdir(), "faux-agent-test-"));
		try {
			const cwd = join(base, "work");
			const agentDir = join(base, "agent");
			const agent = await createFauxPiAgent({ cwd, agentDir, tokensPerSecond: 1000 });
			assert.equal(agent.cwd, cwd);
			assert.equal(agent.agentDir, agentDir);
			assert.equal(await readFile(join(cwd, HELLO_FILE), "utf8"), HELLO_CONTENT);
			await agent.primarySession.prompt("/echo kept");
			await agent.close();
			assert.ok(existsSync(cwd));
			assert.ok(existsSync(join(agentDir, "sessions", "primary")));
			assert.equal(existsSync(join(cwd, HELLO_FILE)), false);

			// An existing hello.txt is used as it is and left in place.
			await writeFile(join(cwd, HELLO_FILE), "Mine.");
			const again = await createFauxPiAgent({ cwd, agentDir });
			await again.primarySession.prompt("what does it say?");
			assert.equal(textOf(again.primarySession.messages.at(-1)), `${HELLO_FILE} says: Mine.`);
			await again.close();
			assert.equal(await readFile(join(cwd, HELLO_FILE), "utf8"), "Mine.");
		} finally {
			await rm(base, { recursive: true, force: true });
		}
	});
});

describe("parseFauxCommand", () => {
	it("recognizes commands only at the start of the text, as whole words", () => {
		assert.deepEqual(parseFauxCommand("/echo hello world"), { name: "echo", arg: "hello world" });
		assert.deepEqual(parseFauxCommand("/long 12"), { name: "long", arg: "12" });
		assert.deepEqual(parseFauxCommand("/error"), { name: "error", arg: "" });
		assert.deepEqual(parseFauxCommand("/history"), { name: "history", arg: "" });
		assert.deepEqual(parseFauxCommand("/bash echo a ;; echo b"), { name: "bash", arg: "echo a ;; echo b" });
		assert.deepEqual(fauxBashCommands("echo a ;; echo b"), ["echo a", "echo b"]);
		assert.deepEqual(fauxBashCommands("echo a;;b"), ["echo a;;b"], "only ' ;; ' with spaces separates");
		assert.deepEqual(fauxBashToolCalls("echo a ;; @read hello.txt ;;  @read  dir/x.txt "), [
			{ name: "bash", arguments: { command: "echo a" } },
			{ name: "read", arguments: { path: "hello.txt" } },
			{ name: "read", arguments: { path: "dir/x.txt" } },
		]);
		assert.deepEqual(fauxBashToolCalls("@read hello.txt"), [{ name: "read", arguments: { path: "hello.txt" } }], "a read alone");
		assert.deepEqual(fauxBashToolCalls("@readme ;; echo @read x"), [
			{ name: "bash", arguments: { command: "@readme" } },
			{ name: "bash", arguments: { command: "echo @read x" } },
		], "only a command starting with '@read ' is a read");
		assert.equal(parseFauxCommand("/bashful").name, "default");
		assert.equal(parseFauxCommand("/historyx").name, "default");
		assert.equal(parseFauxCommand("/echoes x").name, "default");
		assert.equal(parseFauxCommand("please /echo x").name, "default");
	});
});

/** Asserts that `usage` is pi-ai's estimate: positive input and output, a consistent total, cost 0. */
function assertUsage(usage, what) {
	assert.ok(usage.input > 0, `${what}: input ${usage.input}`);
	assert.ok(usage.output > 0, `${what}: output ${usage.output}`);
	assert.equal(usage.totalTokens, usage.input + usage.output + usage.cacheRead + usage.cacheWrite, what);
	assert.deepEqual(usage.cost, { input: 0, output: 0, cacheRead: 0, cacheWrite: 0, total: 0 }, what);
}

describe("faux model additions (issue 14): /history, faux-2, compaction, usage", () => {
	/** @type {Awaited<ReturnType<typeof createFauxPiAgent>>} */
	let agent;
	before(async () => {
		agent = await createFauxPiAgent();
	});
	after(async () => {
		await agent?.close();
	});

	it("/history answers with the user's earlier texts in this context (quoted, cut, counted)", async () => {
		const session = await agent.createSession("history");
		await session.prompt("/history");
		assert.equal(textOf(session.messages.at(-1)), "You said 0 things before.");
		await session.prompt("/echo one");
		await session.prompt("a plain question");
		await session.prompt(`/echo ${"x".repeat(100)}`);
		await session.prompt("/history");
		const cut = `/echo ${"x".repeat(51)}...`;
		assert.equal(cut.length, 60);
		assert.equal(
			textOf(session.messages.at(-1)),
			`You said 4 things before: "/history", "/echo one", "a plain question", ${JSON.stringify(cut)}`,
		);
		// Another session's context is its own.
		const other = await agent.createSession("history-other");
		await other.prompt("/history");
		assert.equal(textOf(other.messages.at(-1)), "You said 0 things before.");
	});

	it("/history shows at most 20 texts and says how many there were", async () => {
		const session = await agent.createSession("history-many");
		for (let i = 0; i < 25; i++) await session.prompt(`/echo ${i}`);
		await session.prompt("/history");
		const answer = textOf(session.messages.at(-1));
		const shown = Array.from({ length: 20 }, (_, i) => JSON.stringify(`/echo ${i}`)).join(", ");
		assert.equal(answer, `You said 25 things before: ${shown}, ...`);
	});

	it("faux-2 (reasoning) is in the registry with credentials; setModel switches a session to it, /slow included", async () => {
		const session = await agent.createSession("model-switch");
		assert.deepEqual([session.model.provider, session.model.id], [FAUX_PROVIDER, FAUX_MODEL_ID]);
		assert.equal(session.model.reasoning, false);
		const available = session.modelRegistry.getAvailable().filter((m) => m.provider === FAUX_PROVIDER);
		assert.deepEqual(
			available.map((m) => [m.id, m.reasoning]),
			[
				[FAUX_MODEL_ID, false],
				[FAUX_MODEL_2_ID, true],
			],
		);
		const faux2 = session.modelRegistry.find(FAUX_PROVIDER, FAUX_MODEL_2_ID);
		assert.ok(faux2 && session.modelRegistry.hasConfiguredAuth(faux2));

		await session.prompt("/echo before");
		assert.equal(session.messages.at(-1).model, FAUX_MODEL_ID);
		await session.setModel(faux2);
		assert.equal(session.model.id, FAUX_MODEL_2_ID);
		session.setThinkingLevel("high");
		assert.equal(session.thinkingLevel, "high", "faux-2 reasons: the level is kept");

		const events = await run(session, "/echo after");
		assert.equal(textOf(session.messages.at(-1)), "You said: after");
		assert.equal(session.messages.at(-1).model, FAUX_MODEL_2_ID, "the answer comes from faux-2");
		assert.ok(events.some((e) => e.type === "message_end" && e.message.role === "assistant"));

		// /slow still goes to the throttled registration, on the session's model.
		const started = Date.now();
		await session.prompt("/slow 6");
		assert.ok(Date.now() - started >= 200, "/slow on faux-2 is slow");
		assert.equal(textOf(session.messages.at(-1)), fauxLongText(6));
		assert.equal(session.messages.at(-1).model, FAUX_MODEL_2_ID);

		// And back: faux-1 clamps thinking to off.
		await session.setModel(session.modelRegistry.find(FAUX_PROVIDER, FAUX_MODEL_ID));
		assert.equal(session.thinkingLevel, "off");
		await session.prompt("/echo back");
		assert.equal(session.messages.at(-1).model, FAUX_MODEL_ID);
	});

	it("compact() works on the faux model: the summary request is answered 'Summary of N messages.'", async () => {
		const session = await agent.createSession("compact");
		await session.prompt("/echo one");
		await session.prompt("/echo two");
		await session.prompt("what is in the file?");
		const calls = agent.faux.state.callCount;
		const { events, stop } = record(session);
		const result = await session.compact();
		stop();
		// keepRecentTokens 1: everything but the last answer is summarized; the cut falls inside the
		// last turn, so pi also summarizes that turn's start (user, thinking + tool call, tool result).
		assert.equal(
			result.summary,
			"Summary of 4 messages.\n\n---\n\n**Turn Context (split turn):**\n\nSummary of 3 messages.\n\n<read-files>\nhello.txt\n</read-files>",
		);
		assert.ok(result.tokensBefore > 0);
		assert.equal(agent.faux.state.callCount - calls, 2, "two summarization calls");
		assert.deepEqual(
			events.filter((e) => e.type.startsWith("compaction")).map((e) => [e.type, e.reason]),
			[
				["compaction_start", "manual"],
				["compaction_end", "manual"],
			],
		);
		// The context now starts with the summary and keeps the last answer; the session goes on.
		assert.deepEqual(
			session.messages.map((m) => m.role),
			["compactionSummary", "assistant"],
		);
		await session.prompt("/history");
		assert.equal(textOf(session.messages.at(-1)), "You said 0 things before.", "a summary is not something the user said");
		await session.prompt("/echo after compaction");
		assert.equal(textOf(session.messages.at(-1)), "You said: after compaction");
		await assert.rejects(session.compact("focus on nothing").then(() => session.compact()), /Already compacted/);
	});

	it("compact() of a one-exchange session summarizes its start ('No prior history.' for the rest)", async () => {
		const session = await agent.createSession("compact-small");
		await session.prompt("/echo only");
		const result = await session.compact();
		assert.equal(result.summary, "No prior history.\n\n---\n\n**Turn Context (split turn):**\n\nSummary of 1 messages.");
	});

	it("every assistant message carries a non-zero usage estimate (text, tool call, error, aborted)", async () => {
		const session = await agent.createSession("usage");
		await session.prompt("what is in the file?");
		await session.prompt("/error");
		await session.prompt("/echo short");
		const assistants = session.messages.filter((m) => m.role === "assistant");
		assert.equal(assistants.length, 4);
		for (const [i, message] of assistants.slice(0, 2).entries()) assertUsage(message.usage, `message ${i}`);
		// /error has no content: no output tokens, but the prompt was read.
		assert.ok(assistants[2].usage.input > 0, JSON.stringify(assistants[2].usage));
		assertUsage(assistants[3].usage, "/echo");
		// A longer context costs more input.
		assert.ok(assistants[3].usage.input > assistants[0].usage.input);
		// And getSessionStats() adds them up.
		const stats = session.getSessionStats();
		assert.ok(stats.tokens.input > 0 && stats.tokens.output > 0 && stats.tokens.total > 0, JSON.stringify(stats.tokens));
	});
});

describe("createFauxPiAgent persistence (sessionDir, continueRecent, sessionExists, deleteSession, ephemeral)", () => {
	it("a key's session continues its stored conversation, model and thinking level; in a new agent too", async (t) => {
		const base = await mkdtemp(join(tmpdir(), "faux-agent-persist-"));
		t.after(() => rm(base, { recursive: true, force: true }));
		const sessionDir = join(base, "sessions");
		const agent = await createFauxPiAgent({ sessionDir });
		assert.equal(agent.sessionDir, sessionDir);
		assert.equal(agent.primarySession.sessionManager.getSessionDir(), join(sessionDir, "primary"));
		assert.equal(await agent.sessionExists("k/1"), false);

		const session = await agent.createSession("k/1");
		assert.equal(session.sessionManager.getSessionDir(), join(sessionDir, "gateway-sessions", "k_1"));
		await session.prompt("/echo one");
		await session.setModel(session.modelRegistry.find(FAUX_PROVIDER, FAUX_MODEL_2_ID));
		session.setThinkingLevel("medium");
		await session.prompt("/echo two");
		assert.equal(await agent.sessionExists("k/1"), true);
		const file = session.sessionFile;
		session.dispose();

		// The gateway evicted it: the next createSession continues the same file.
		const again = await agent.createSession("k/1");
		assert.equal(again.sessionFile, file);
		assert.equal(again.model.id, FAUX_MODEL_2_ID, "the model is restored");
		assert.equal(again.thinkingLevel, "medium", "so is the thinking level");
		await again.prompt("/history");
		assert.equal(textOf(again.messages.at(-1)), 'You said 2 things before: "/echo one", "/echo two"');
		await agent.primarySession.prompt("/echo primary");
		await agent.close();
		assert.ok(existsSync(join(sessionDir, "gateway-sessions", "k_1")), "a given sessionDir is kept by close()");

		// A new agent on the same dir (a restart): the primary and the key continue.
		const restarted = await createFauxPiAgent({ sessionDir });
		t.after(() => restarted.close());
		await restarted.primarySession.prompt("/history");
		assert.equal(textOf(restarted.primarySession.messages.at(-1)), 'You said 1 things before: "/echo primary"');
		const third = await restarted.createSession("k/1");
		assert.equal(third.sessionFile, file);
		await third.prompt("/history");
		assert.equal(textOf(third.messages.at(-1)), 'You said 3 things before: "/echo one", "/echo two", "/history"');

		// deleteSession removes the key's dir; the key then starts over.
		third.dispose();
		await restarted.deleteSession("k/1");
		assert.equal(existsSync(join(sessionDir, "gateway-sessions", "k_1")), false);
		assert.equal(await restarted.sessionExists("k/1"), false);
		await restarted.deleteSession("never-stored"); // nothing to remove: fine
		const fresh = await restarted.createSession("k/1");
		assert.equal(fresh.messages.length, 0);
		assert.equal(fresh.model.id, FAUX_MODEL_ID);
	});

	it("sessionExists needs a stored session file: a created key with no answer yet has none", async (t) => {
		const agent = await createFauxPiAgent();
		t.after(() => agent.close());
		assert.equal(agent.sessionDir, join(agent.agentDir, "sessions"), "default: <agentDir>/sessions");
		await agent.createSession("empty");
		assert.equal(await agent.sessionExists("empty"), false, "pi writes a session file with its first assistant message");
		assert.equal(await agent.sessionExists("../../etc"), false);
	});

	it("ephemeral: nothing on disk, sessionExists false, createSession starts empty", async (t) => {
		const agent = await createFauxPiAgent({ ephemeral: true });
		t.after(() => agent.close());
		assert.equal(agent.sessionDir, undefined);
		const session = await agent.createSession("e");
		await session.prompt("/echo not stored");
		await agent.primarySession.prompt("/echo not stored either");
		assert.equal(session.sessionFile, undefined);
		assert.equal(await agent.sessionExists("e"), false);
		session.dispose();
		const again = await agent.createSession("e");
		assert.equal(again.messages.length, 0);
		await agent.deleteSession("e"); // a no-op
		assert.equal(existsSync(join(agent.agentDir, "sessions")), false, "no session dir was made");
	});

	it("gatewaySessionStore: the layout (primary, gateway-sessions/<sanitized key>)", async () => {
		const store = gatewaySessionStore("/data");
		assert.equal(store.primaryDir, join("/data", "primary"));
		assert.equal(store.keysRoot, join("/data", "gateway-sessions"));
		assert.equal(store.keyDir("chat:a/1"), join("/data", "gateway-sessions", "chat_a_1"));
		assert.equal(store.keyDir(".."), join("/data", "gateway-sessions", "__"));
	});
});
