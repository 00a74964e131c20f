// Resetting the primary session when it has no newSession() (pi 0.73's AgentSession has none):
// the gateway starts a new conversation in place with pi's own pieces (abort, a new session in
// its sessionManager, agent.reset()). Checked on a REAL AgentSession on the offline faux model:
// the message count drops to 0, the session id is new, the model sees no old message, the old
// conversation stays in its own session file, and the next message gets the right answer.
// Run: node --test __test__/js-side-reset.test.mjs

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { createFauxPiAgent, HELLO_CONTENT, HELLO_FILE } from "../lib/faux-agent.js";
import { startGateway } from "./support/gateway.mjs";
import { collect, SOON_MS, waitFor, within } from "./support/wait.mjs";
import { withRunId } from "./support/runs.mjs";

const FILE_ANSWER = `${HELLO_FILE} says: ${HELLO_CONTENT}`;

/** The user texts in a pi session file. */
function userTextsInFile(file) {
	return readFileSync(file, "utf8")
		.split("\n")
		.filter(Boolean)
		.map((line) => JSON.parse(line))
		.filter((entry) => entry.type === "message" && entry.message.role === "user")
		.map((entry) => entry.message.content.map((c) => c.text ?? "").join(""));
}

describe("resetting the primary AgentSession (no newSession()) starts a new conversation", () => {
	/** @type {Awaited<ReturnType<typeof createFauxPiAgent>>} */
	let agent;
	/** Message counts of the context of every model call, newest last. */
	const contexts = [];

	before(async () => {
		agent = await createFauxPiAgent();
		const streamFn = agent.primarySession.agent.streamFn;
		agent.primarySession.agent.streamFn = (model, context, options) => {
			contexts.push(context.messages.map((m) => m.role));
			return streamFn(model, context, options);
		};
	});
	after(async () => {
		await agent?.close();
	});

	async function gateway(t) {
		const { rt } = await startGateway({
			t,
			config: { session: { idleMinutes: 60, maxQueuePerSession: 8 } },
			primarySession: agent.primarySession,
			createSession: (key) => agent.createSession(key),
		});
		return rt;
	}

	it("talk, reset main: 0 messages, a new sessionId, and the next message is answered in a fresh context", async (t) => {
		const rt = await gateway(t);
		const primary = agent.primarySession;
		assert.equal(typeof primary.newSession, "undefined", "pi 0.73's AgentSession was expected to have no newSession()");

		assert.deepEqual(withRunId(await rt.enqueueMessage({ sessionKey: "main", text: "/echo first" })), {
			ok: true,
			response: "You said: first",
			sessionKey: "main",
		});
		assert.deepEqual(withRunId(await rt.enqueueMessage({ sessionKey: "main", text: "What is in the workspace?" })), {
			ok: true,
			response: FILE_ANSWER,
			sessionKey: "main",
		});
		const before = rt.getSession("main");
		assert.equal(before.messageCount, 6, "user+assistant, then user+toolcall+toolResult+assistant");
		const oldFile = primary.sessionFile;
		const oldId = primary.sessionId;
		assert.equal(before.sessionId, oldId);
		assert.deepEqual(userTextsInFile(oldFile), ["/echo first", "What is in the workspace?"]);

		const events = await collect(rt, "main");
		await within(rt.resetSession("main"), SOON_MS, "resetSession(main)");

		const after = rt.getSession("main");
		assert.equal(after.messageCount, 0, "the snapshot counts no message after the reset");
		assert.equal(primary.messages.length, 0, "the AgentSession holds no message");
		assert.notEqual(after.sessionId, oldId, "a new session id");
		assert.equal(after.sessionId, primary.sessionId);
		assert.equal(primary.agent.sessionId, primary.sessionId, "the agent's session id follows");
		assert.notEqual(primary.sessionFile, oldFile, "a new session file");
		await waitFor(
			() => events.of("session_state").some((e) => e.snapshot.sessionId === after.sessionId && e.snapshot.messageCount === 0),
			"a session_state event with the new id",
		);

		const calls = contexts.length;
		assert.deepEqual(withRunId(await rt.enqueueMessage({ sessionKey: "main", text: "What is in hello.txt now?" })), {
			ok: true,
			response: FILE_ANSWER,
			sessionKey: "main",
		});
		assert.deepEqual(contexts[calls], ["user"], "the model's first call sees only the new message");
		assert.deepEqual(contexts[calls + 1], ["user", "assistant", "toolResult"]);
		assert.equal(rt.getSession("main").messageCount, 4);
		assert.equal(rt.getSession("main").sessionId, after.sessionId);
		assert.deepEqual(userTextsInFile(primary.sessionFile), ["What is in hello.txt now?"], "the new file holds only the new conversation");
		assert.deepEqual(userTextsInFile(oldFile), ["/echo first", "What is in the workspace?"], "the old conversation is kept in its file");
		events.unsubscribe();
	});

	it("a reset during a run aborts it, answers the queue, and nothing of the old run leaks into the new conversation", async (t) => {
		const rt = await gateway(t);
		const primary = agent.primarySession;
		assert.equal((await rt.enqueueMessage({ sessionKey: "main", text: "/echo before" })).ok, true);
		const oldId = primary.sessionId;

		const running = rt.enqueueMessage({ sessionKey: "main", text: "/slow 1000" });
		await waitFor(() => rt.getSession("main").processing && primary.isStreaming, "the slow run to stream");
		const queued = rt.enqueueMessage({ sessionKey: "main", text: "/echo queued" });
		await waitFor(() => rt.getSession("main").queueDepth === 1, "a queued message");

		await within(rt.resetSession("main"), SOON_MS, "resetSession(main)");
		assert.deepEqual(withRunId(await within(queued, SOON_MS, "the queued message")), {
			ok: false,
			response: "",
			error: "Session reset",
			sessionKey: "main",
		});
		assert.equal((await within(running, SOON_MS, "the running message")).ok, false);
		assert.equal(primary.isStreaming, false);
		await waitFor(() => rt.getSession("main").processing === false, "processing to end");
		assert.equal(primary.messages.length, 0);
		assert.equal(rt.getSession("main").messageCount, 0);
		assert.notEqual(primary.sessionId, oldId);

		const result = await rt.enqueueMessage({ sessionKey: "main", text: "/echo after" });
		assert.deepEqual(withRunId(result), { ok: true, response: "You said: after", sessionKey: "main" });
		assert.deepEqual(
			primary.messages.map((m) => m.role),
			["user", "assistant"],
			"only the new exchange is in the conversation",
		);
		assert.ok(existsSync(primary.sessionFile));
		assert.deepEqual(userTextsInFile(primary.sessionFile), ["/echo after"], "the aborted run was not written to the new file");
	});
});
