// The gateway's JS API driving REAL pi AgentSessions (@mariozechner/pi-coding-agent 0.73.1) on
// pi-ai's offline faux model (lib/faux-agent.js): text, thinking and a tool call that really
// runs, abort mid-stream, a model error, queued messages, concurrent sessions, eviction, reset,
// stop, and the cost per token event of a 20,000-token answer. No HTTP requests are made.
// Run: node --test __test__/real-agent.test.mjs

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createFauxPiAgent, FAUX_ERROR_MESSAGE, fauxLongText, HELLO_CONTENT, HELLO_FILE } from "../lib/faux-agent.js";
import { startGateway } from "./support/gateway.mjs";
import { collect, Ledger, SOON_MS, sleep, waitFor, within } from "./support/wait.mjs";
import { assertRunFrames, withRunId } from "./support/runs.mjs";

/** `/slow N` streams about 20 tokens a second: 1000 tokens outlive every test that aborts them. */
const SLOW_FOREVER = "/slow 1000";

/** True once `c` has seen the end of its `n`-th run (the session_state after it). */
function runsEnded(c, n) {
	let ended = 0;
	let running = false;
	for (const e of c.events) {
		if (e.type !== "session_state") continue;
		if (e.snapshot.processing) running = true;
		else if (running) {
			running = false;
			ended++;
		}
	}
	return ended >= n;
}

const textOf = (message) =>
	Array.isArray(message?.content)
		? message.content
				.filter((c) => c.type === "text")
				.map((c) => c.text)
				.join("")
		: "";

describe("GatewayRuntime on real AgentSessions (faux model, offline)", () => {
	/** @type {Awaited<ReturnType<typeof createFauxPiAgent>>} */
	let agent;

	before(async () => {
		agent = await createFauxPiAgent();
	});
	after(async () => {
		await agent?.close();
	});

	/**
	 * A started runtime whose primary session is the agent's, stopped when the test ends.
	 * `sessions` maps key → the AgentSessions created for it; `disposed` holds every session whose
	 * dispose() was called (the primary's included).
	 */
	async function gateway(t, config = {}) {
		const sessions = new Map();
		const disposed = new Set();
		const spy = (session) => {
			const dispose = session.dispose;
			session.dispose = function (...args) {
				disposed.add(session);
				return dispose.apply(this, args);
			};
			return () => {
				session.dispose = dispose;
			};
		};
		const primary = agent.primarySession;
		const unspyPrimary = spy(primary);
		let gw;
		t.after(async () => {
			try {
				if (gw) await within(gw.stop(), SOON_MS, "rt.stop() in cleanup");
			} finally {
				unspyPrimary();
				if (primary.isStreaming) await primary.abort();
			}
		});
		gw = await startGateway({
			config: { ...config, session: { idleMinutes: 60, ...config.session } },
			primarySession: primary,
			createSession: async (key) => {
				const session = await agent.createSession(key);
				spy(session);
				sessions.set(key, [...(sessions.get(key) ?? []), session]);
				return session;
			},
		});
		const { rt } = gw;
		return { rt, primary, sessions, disposed, ledger: new Ledger(rt) };
	}

	it("streams thinking, runs the read tool for real, and answers with the file's content", async (t) => {
		const { rt, ledger, sessions } = await gateway(t);
		const c = await collect(rt, "tools");
		const result = await ledger.send({ sessionKey: "tools", text: "What is in the workspace?" });
		assert.deepEqual(withRunId(result), { ok: true, response: `${HELLO_FILE} says: ${HELLO_CONTENT}`, sessionKey: "tools" });
		await waitFor(() => runsEnded(c, 1), "the end of the run");
		await sleep(50);
		// SPEC §10: run_start … run_end around the run's events, each carrying its runId.
		assertRunFrames(c.events, result.runId, { status: "succeeded" });

		const thinking = c.of("thinking");
		assert.ok(thinking.length > 1, "the thinking block should stream in several deltas");
		assert.match(thinking.map((e) => e.delta).join(""), /I will look at the workspace file hello\.txt/);

		const [start, ...moreStarts] = c.of("tool_start");
		assert.equal(moreStarts.length, 0);
		assert.equal(start.toolName, "read");
		assert.deepEqual(start.args, { path: HELLO_FILE });
		assert.ok(start.toolCallId);
		const [complete, ...moreCompletes] = c.of("tool_complete");
		assert.equal(moreCompletes.length, 0);
		assert.equal(complete.toolCallId, start.toolCallId);
		assert.equal(complete.toolName, "read");
		assert.equal(complete.isError, false);
		assert.equal(complete.result.content[0].type, "text");
		assert.ok(complete.result.content[0].text.includes(HELLO_CONTENT), "the tool did not really read the file");

		assert.equal(
			c
				.of("token")
				.map((e) => e.delta)
				.join(""),
			result.response,
		);
		assert.equal(c.of("message_complete").at(-1).text, result.response);
		assert.deepEqual(
			c.of("message_start").map((e) => e.role),
			["user", "assistant", "toolResult", "assistant"],
		);
		assert.equal(c.of("turn_start").length, 2);
		assert.equal(c.of("turn_end").length, 2);
		// Thinking, then the tool, then the answer.
		const index = (type) => c.events.findIndex((e) => e.type === type);
		assert.ok(index("thinking") < index("tool_start"));
		assert.ok(index("tool_start") < index("tool_complete"));
		assert.ok(index("tool_complete") < index("token"));

		const [session] = sessions.get("tools");
		assert.equal(session.messages.length, 4);
		assert.equal(rt.getSession("tools").messageCount, session.messages.length);
		assert.equal(rt.getSession("tools").sessionId, session.sessionId);
		c.unsubscribe();
		await ledger.done();
	});

	it("answers /echo with its text and reports a failing tool as tool_complete with isError", async (t) => {
		const { rt, ledger } = await gateway(t);
		assert.deepEqual(withRunId(await ledger.send({ sessionKey: "echo", text: "/echo hi there" })), {
			ok: true,
			response: "You said: hi there",
			sessionKey: "echo",
		});
		const c = await collect(rt, "echo");
		const failed = await ledger.send({ sessionKey: "echo", text: "/toolfail" });
		assert.equal(failed.ok, true);
		assert.match(failed.response, /^The read tool failed: /);
		await waitFor(() => c.of("tool_complete").length === 1, "tool_complete");
		const [complete] = c.of("tool_complete");
		assert.equal(complete.isError, true);
		assert.equal(complete.toolName, "read");
		c.unsubscribe();
		await ledger.done();
	});

	it("aborts a run mid-stream: ok:false, an aborted event, and the session answers the next message", async (t) => {
		const { rt, ledger, sessions } = await gateway(t);
		assert.equal(rt.abortSession("main"), false, "abortSession on an idle session");
		const c = await collect(rt, "abort");
		const running = ledger.send({ sessionKey: "abort", text: SLOW_FOREVER });
		await waitFor(() => c.of("token").length >= 3, "three tokens");
		assert.equal(rt.abortSession("abort"), true);
		const result = await within(running, SOON_MS, "the aborted run's result");
		assert.equal(result.ok, false);
		assert.match(result.error, /abort/i);
		const aborted = await c.waitFor((e) => e.type === "aborted", "the aborted event");
		withRunId(result);
		assert.equal(aborted.runId, result.runId);
		await c.waitFor((e) => e.type === "run_end", "the run_end event");
		await waitFor(() => runsEnded(c, 1), "the end of the aborted run");
		const own = assertRunFrames(c.events, result.runId, { status: "aborted" });
		assert.equal(own.at(-2).type, "aborted", "aborted comes just before run_end");
		assert.equal(c.of("error").length, 0);
		assert.ok(c.of("token").length < 1000);
		const [session] = sessions.get("abort");
		assert.equal(session.isStreaming, false);
		assert.equal(session.messages.at(-1).stopReason, "aborted");

		assert.equal(rt.abortSession("abort"), false, "nothing is running any more");
		assert.equal((await ledger.send({ sessionKey: "abort", text: "/echo after" })).response, "You said: after");
		c.unsubscribe();
		await ledger.done();
	});

	it("reports a model error as ok:false with the model's message and an error event", async (t) => {
		const { rt, ledger } = await gateway(t);
		const c = await collect(rt, "err");
		const failed = await ledger.send({ sessionKey: "err", text: "/error" });
		assert.deepEqual(withRunId(failed), {
			ok: false,
			response: "",
			error: FAUX_ERROR_MESSAGE,
			sessionKey: "err",
		});
		await c.waitFor((e) => e.type === "error", "the error event");
		assert.deepEqual(c.of("error"), [{ type: "error", sessionKey: "err", error: FAUX_ERROR_MESSAGE, runId: failed.runId }]);
		await waitFor(() => runsEnded(c, 1), "the end of the failed run");
		assertRunFrames(c.events, failed.runId, { status: "failed" });
		assert.equal(c.of("aborted").length, 0);
		assert.equal((await ledger.send({ sessionKey: "err", text: "/echo fine" })).response, "You said: fine");
		c.unsubscribe();
		await ledger.done();
	});

	it("runs three queued messages one after another in the order they were sent", async (t) => {
		const { rt, ledger, sessions } = await gateway(t);
		await ledger.send({ sessionKey: "q3", text: "/echo warm" });
		const c = await collect(rt, "q3");
		const texts = ["/slow 10", "/echo two", "/echo three"];
		const results = texts.map((text) => ledger.send({ sessionKey: "q3", text }));
		assert.deepEqual(
			(await Promise.all(results)).map((r) => r.response),
			[fauxLongText(10), "You said: two", "You said: three"],
		);
		const [session] = sessions.get("q3");
		assert.deepEqual(
			session.messages.filter((m) => m.role === "user").map((m) => textOf(m)),
			["/echo warm", ...texts],
		);
		await waitFor(() => runsEnded(c, 3), "the three runs to end");
		const depths = c.of("session_state").map((e) => e.snapshot.queueDepth);
		assert.ok(Math.max(...depths) >= 2, "the second and third messages never waited in the queue");
		assert.deepEqual(
			c.of("message_complete").map((e) => e.text),
			[fauxLongText(10), "You said: two", "You said: three"],
		);
		c.unsubscribe();
		await ledger.done();
	});

	it("runs two sessions at the same time", async (t) => {
		const { rt, ledger } = await gateway(t);
		const a = await collect(rt, "par-a");
		const b = await collect(rt, "par-b");
		let overlap = false;
		const check = () => {
			const busy = (c) => c.of("token").length > 0 && c.of("message_complete").length === 0;
			if (busy(a) && busy(b)) overlap = true;
		};
		const timer = setInterval(check, 5);
		t.after(() => clearInterval(timer));
		const results = await Promise.all([
			ledger.send({ sessionKey: "par-a", text: "/slow 20" }),
			ledger.send({ sessionKey: "par-b", text: "/slow 20" }),
		]);
		clearInterval(timer);
		for (const result of results) assert.equal(result.response, fauxLongText(20));
		assert.ok(overlap, "the two sessions never streamed at the same time");
		a.unsubscribe();
		b.unsubscribe();
		await ledger.done();
	});

	it("evicts an idle session and disposes it, but not the primary or a busy one", async (t) => {
		const { rt, ledger, sessions, disposed, primary } = await gateway(t, {
			session: { idleMinutes: 0.002, sweepIntervalMs: 50 },
		});
		await ledger.send({ sessionKey: "ev-idle", text: "/echo bye" });
		const busy = ledger.send({ sessionKey: "ev-busy", text: SLOW_FOREVER });
		await waitFor(() => rt.getSession("ev-busy")?.processing, "the busy run to start");

		await waitFor(() => rt.getSession("ev-idle") === undefined, "the idle session to be evicted");
		// Eviction takes the session out of the registry first, then disposes it through JS.
		await waitFor(() => disposed.has(sessions.get("ev-idle")[0]), "the evicted AgentSession to be disposed");
		await sleep(500);
		assert.ok(rt.getSession("ev-busy"), "a busy session was evicted");
		assert.ok(!disposed.has(sessions.get("ev-busy")[0]));
		assert.ok(rt.getSession("main"), "the primary session was evicted");
		assert.ok(!disposed.has(primary), "the primary session was disposed");

		assert.equal(rt.abortSession("ev-busy"), true);
		assert.equal((await busy).ok, false);
		await waitFor(() => rt.getSession("ev-busy") === undefined, "the finished session to be evicted");
		await waitFor(() => disposed.has(sessions.get("ev-busy")[0]), "the finished AgentSession to be disposed");
		assert.ok(rt.getSession("main"));
		await ledger.done();
	});

	it("resets the primary session (no newSession() in 0.73) by aborting, clearing and starting a new conversation", async (t) => {
		const { rt, ledger, primary, disposed } = await gateway(t);
		assert.equal(typeof primary.newSession, "undefined", "pi 0.73's AgentSession was expected to have no newSession()");
		await ledger.send({ sessionKey: "main", text: "/echo before" });
		const before = rt.getSession("main");

		const running = ledger.send({ sessionKey: "main", text: SLOW_FOREVER });
		await waitFor(() => rt.getSession("main").processing, "the run to start");
		const queued = [ledger.send({ sessionKey: "main", text: "/echo q1" }), ledger.send({ sessionKey: "main", text: "/echo q2" })];
		await waitFor(() => rt.getSession("main").queueDepth === 2, "two queued messages");

		await within(rt.resetSession("main"), SOON_MS, "resetSession(main)");
		for (const result of await within(Promise.all(queued), SOON_MS, "the queued messages' results")) {
			assert.deepEqual(withRunId(result), { ok: false, response: "", error: "Session reset", sessionKey: "main" });
		}
		assert.equal((await within(running, SOON_MS, "the running message's result")).ok, false);
		assert.equal(primary.isStreaming, false, "the run was not aborted");
		await waitFor(() => rt.getSession("main").processing === false, "processing to end");
		const after = rt.getSession("main");
		assert.notEqual(after.sessionId, before.sessionId, "a reset starts a new pi session");
		assert.equal(after.sessionId, primary.sessionId);
		assert.equal(after.queueDepth, 0);
		assert.equal(after.messageCount, 0, "the new conversation is empty");
		assert.equal(primary.messages.length, 0);
		assert.ok(!disposed.has(primary), "the primary session was disposed");
		assert.ok(!primary.messages.some((m) => m.role === "user" && /q[12]/.test(textOf(m))), "a dropped message ran");
		assert.equal((await ledger.send({ sessionKey: "main", text: "/echo again" })).response, "You said: again");
		await ledger.done();
	});

	it("resets a non-primary session: run aborted, queue answered, AgentSession disposed and forgotten", async (t) => {
		const { rt, ledger, sessions, disposed } = await gateway(t);
		await ledger.send({ sessionKey: "nr", text: "/echo first" });
		const [session] = sessions.get("nr");
		const running = ledger.send({ sessionKey: "nr", text: SLOW_FOREVER });
		await waitFor(() => rt.getSession("nr").processing, "the run to start");
		const queued = ledger.send({ sessionKey: "nr", text: "/echo q" });
		await waitFor(() => rt.getSession("nr").queueDepth === 1, "a queued message");
		const before = rt.getSession("nr").sessionId;

		await within(rt.resetSession("nr"), SOON_MS, "resetSession(nr)");
		assert.deepEqual(withRunId(await within(queued, SOON_MS, "the queued message's result")), {
			ok: false,
			response: "",
			error: "Session reset",
			sessionKey: "nr",
		});
		assert.equal((await within(running, SOON_MS, "the running message's result")).ok, false);
		assert.equal(session.isStreaming, false, "the run was not aborted");
		assert.ok(disposed.has(session), "the AgentSession was not disposed");
		assert.equal(rt.getSession("nr"), undefined);
		assert.ok(!rt.listSessions().some((s) => s.sessionKey === "nr"));

		assert.equal((await ledger.send({ sessionKey: "nr", text: "/echo new" })).response, "You said: new");
		assert.equal(sessions.get("nr").length, 2);
		assert.notEqual(rt.getSession("nr").sessionId, before, "a new pi session");
		// The stored conversation the reset left is not continued: only the new exchange.
		assert.deepEqual(
			sessions.get("nr")[1].messages.filter((m) => m.role === "user").map(textOf),
			["/echo new"],
		);
		await ledger.done();
	});

	it("stop() with work pending aborts the runs, answers every message Gateway stopped, disposes all but the primary, promptly", async (t) => {
		const { rt, ledger, sessions, disposed, primary } = await gateway(t);
		await ledger.send({ sessionKey: "st-idle", text: "/echo idle" });
		const pending = [
			ledger.send({ sessionKey: "main", text: SLOW_FOREVER }),
			ledger.send({ sessionKey: "st-busy", text: SLOW_FOREVER }),
		];
		await waitFor(() => rt.getSession("main")?.processing && rt.getSession("st-busy")?.processing, "both runs to start");
		pending.push(ledger.send({ sessionKey: "st-busy", text: "/echo q1" }), ledger.send({ sessionKey: "main", text: "/echo q2" }));
		await waitFor(() => rt.getSession("st-busy").queueDepth === 1 && rt.getSession("main").queueDepth === 1, "queued messages");

		const began = Date.now();
		await within(rt.stop(), 3_000, "rt.stop()");
		const elapsed = Date.now() - began;
		assert.ok(elapsed < 3_000, `stop() took ${elapsed} ms`);
		for (const result of await within(Promise.all(pending), 1_000, "the pending messages' results")) {
			assert.equal(result.ok, false);
			assert.equal(result.error, "Gateway stopped");
		}
		await waitFor(() => !primary.isStreaming && !sessions.get("st-busy")[0].isStreaming, "the runs to be aborted", 3_000);
		assert.ok(disposed.has(sessions.get("st-busy")[0]), "a busy non-primary session was not disposed");
		assert.ok(disposed.has(sessions.get("st-idle")[0]), "an idle non-primary session was not disposed");
		assert.ok(!disposed.has(primary), "stop() disposed the primary session");
		assert.equal(rt.isReady(), false);
		assert.deepEqual(rt.listSessions(), []);
		await ledger.done(1_000);
	});

	it("the bytes that cross per token event do not grow between token 100 and token 19,000 of a 20,000-token answer", async (t) => {
		const { rt, ledger, sessions } = await gateway(t);
		await ledger.send({ sessionKey: "long", text: "/echo warm" });
		const [session] = sessions.get("long");
		// Listening on the AgentSession after the gateway's own listener: when this one sees text
		// delta k, the gateway has already pushed it, so stats() covers exactly tokens 1..k.
		const marks = new Map([
			[100, null],
			[200, null],
			[19_000, null],
			[19_100, null],
		]);
		let deltas = 0;
		const stopListening = session.subscribe((event) => {
			if (event.type === "message_update" && event.assistantMessageEvent.type === "text_delta") {
				deltas++;
				if (marks.has(deltas)) marks.set(deltas, rt.stats());
			}
		});
		t.after(() => stopListening());
		// An API subscriber, so the events also go all the way out.
		const unsubscribe = await rt.addSubscriber("long", () => {});
		const result = await ledger.send({ sessionKey: "long", text: "/long 20000" });
		unsubscribe();
		stopListening();
		assert.equal(result.ok, true);
		assert.equal(result.response, fauxLongText(20_000));
		assert.equal(deltas, 20_000);

		const window = (from, to) => ({
			events: marks.get(to).events - marks.get(from).events,
			bytes: marks.get(to).eventBytes - marks.get(from).eventBytes,
		});
		const early = window(100, 200);
		const late = window(19_000, 19_100);
		assert.equal(early.events, 100, "one crossing per token event (tokens 100..200)");
		assert.equal(late.events, 100, "one crossing per token event (tokens 19000..19100)");
		const perTokenEarly = early.bytes / 100;
		const perTokenLate = late.bytes / 100;
		assert.ok(perTokenEarly > 0, "stats().eventBytes does not count token events");
		assert.ok(
			Math.abs(perTokenLate - perTokenEarly) <= perTokenEarly * 0.05,
			`per-token bytes grew from ${perTokenEarly} (tokens 100..200) to ${perTokenLate} (tokens 19000..19100)`,
		);
		// By token 100 the partial message alone is 400 characters: a token event is far smaller.
		assert.ok(perTokenLate < 256, `a token event costs ${perTokenLate} bytes`);
		await ledger.done();
	});

	it("addSubscriber listeners receive every token of two concurrent 20,000-token answers, in order, at a constant size", async (t) => {
		const { rt, ledger } = await gateway(t);
		// Three listeners per session, as a dashboard, a bot and a logger might be: each must get
		// every event, however fast the agent produces them.
		const keys = ["long-sub-a", "long-sub-b"];
		const listeners = [];
		for (const key of keys) {
			for (let i = 0; i < 3; i++) {
				const l = { name: `${key} #${i}`, tokens: [], sizes: new Map(), ended: false };
				l.unsubscribe = await rt.addSubscriber(key, (event) => {
					if (event.type === "token") {
						l.tokens.push(event.delta);
						if (l.tokens.length === 100 || l.tokens.length === 19_000) l.sizes.set(l.tokens.length, JSON.stringify(event).length);
					} else if (event.type === "message_complete") l.ended = true;
				});
				t.after(() => l.unsubscribe());
				listeners.push(l);
			}
		}
		const results = await Promise.all(keys.map((sessionKey) => ledger.send({ sessionKey, text: "/long 20000" })));
		for (const result of results) assert.equal(result.response, fauxLongText(20_000));
		// Delivery is asynchronous; give it time, but a listener that was dropped never catches up.
		await waitFor(() => listeners.every((l) => l.ended), "message_complete at every listener", 10_000).catch(() => {});
		for (const l of listeners) {
			assert.equal(l.tokens.length, 20_000, `listener ${l.name} received ${l.tokens.length} of 20000 token events`);
			assert.equal(l.tokens.join(""), fauxLongText(20_000));
			assert.equal(l.sizes.get(19_000), l.sizes.get(100), "a token event grew with the length of the answer");
		}
		await ledger.done();
	});
});
