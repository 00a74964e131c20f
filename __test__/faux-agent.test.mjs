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
		assert.equal(parseFauxCommand("/echoes x").name, "default");
		assert.equal(parseFauxCommand("please /echo x").name, "default");
	});
});
