// The session engine through the package's JS API, driven by the scripted AgentSession double
// (__test__/support/sessions.mjs): queues, results, subscribers, abort, clear, reset, eviction,
// stop, single-flight creation and failing factories. No HTTP requests are made (the runtime
// still listens on 127.0.0.1:0).
// Run: node --test __test__/engine.test.mjs

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SessionManager } from "@mariozechner/pi-coding-agent";
import { createGatewaySessionManager, getActiveGatewayRuntime, sanitizeSessionKey, setActiveGatewayRuntime } from "../index.js";
import { startGateway } from "./support/gateway.mjs";
import { createScriptedFactory, createScriptedSession, EMPTY_USAGE } from "./support/sessions.mjs";
import { collect, Ledger, SOON_MS, sleep, waitFor, within } from "./support/wait.mjs";
import { assertNoRunId, assertRunFrames, withRunId } from "./support/runs.mjs";

/** A real 1×1 PNG, in base64 (images are checked against their mime type's signature). */
const TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/** A stream that runs until it is aborted (100 000 tokens, one every 10 ms). */
const FOREVER = "/stream 100000 10";

/**
 * A started runtime on scripted sessions, stopped when the test ends.
 * `created` maps key → the sessions createSession made for it (in order); `prompts` records
 * every prompt call with its session key, text and options, and the most runs ever in flight.
 */
async function gateway(t, options = {}) {
	const primary =
		options.primary ?? createScriptedSession("main", { kind: "instant", reply: "pong" }, options.primaryOptions);
	const factory = createScriptedFactory(options.scenario ?? { kind: "instant", reply: "pong" }, options.factoryOptions);
	const created = new Map();
	const createCalls = [];
	const prompts = [];
	const activity = { active: 0, maxActive: 0, perKey: new Map() };

	const instrument = (key, session) => {
		const prompt = session.prompt.bind(session);
		session.prompt = async (text, promptOptions) => {
			prompts.push({ key, text, options: promptOptions });
			const own = (activity.perKey.get(key) ?? { active: 0, maxActive: 0 });
			activity.perKey.set(key, own);
			activity.active++;
			own.active++;
			activity.maxActive = Math.max(activity.maxActive, activity.active);
			own.maxActive = Math.max(own.maxActive, own.active);
			try {
				return await prompt(text, promptOptions);
			} finally {
				activity.active--;
				own.active--;
			}
		};
		return session;
	};
	instrument("main", primary);

	const createSession =
		options.createSession?.(factory) ??
		(async (key) => {
			createCalls.push(key);
			if (options.createDelayMs) await sleep(options.createDelayMs);
			const session = instrument(key, await factory(key));
			created.set(key, [...(created.get(key) ?? []), session]);
			return session;
		});

	const { rt, logs } = await startGateway({
		t,
		config: { ...options.config, session: { idleMinutes: 60, ...options.config?.session } },
		primarySession: primary,
		createSession,
	});
	return { rt, primary, factory, created, createCalls, prompts, activity, logs, ledger: new Ledger(rt) };
}

describe("helpers exported next to GatewayRuntime", () => {
	it("sanitizeSessionKey replaces every character outside [a-zA-Z0-9._-] with an underscore", () => {
		assert.equal(sanitizeSessionKey("a.b-c_D9"), "a.b-c_D9");
		assert.equal(sanitizeSessionKey("telegram:123/abc def"), "telegram_123_abc_def");
		assert.equal(sanitizeSessionKey("../../etc/passwd"), ".._.._etc_passwd");
		assert.equal(sanitizeSessionKey("ü"), "_");
		// The seed's regex works on UTF-16 code units: an astral character becomes two underscores.
		assert.equal(sanitizeSessionKey("x😀y"), "x__y");
		assert.equal(sanitizeSessionKey(""), "");
	});

	it("getGatewaySessionDir puts each sanitized key under gateway-sessions beside the primary session's directory", async (t) => {
		const { rt, primary } = await gateway(t);
		const root = join(primary.sessionManager.getSessionDir(), "..", "gateway-sessions");
		assert.equal(rt.getGatewaySessionDir("tg:42/x"), join(root, "tg_42_x"));
		assert.equal(rt.getGatewaySessionDir("plain"), join(root, "plain"));
	});

	it("createGatewaySessionManager returns a pi SessionManager stored under root/<sanitized key>", async (t) => {
		const dir = await mkdtemp(join(tmpdir(), "pi-gateway-engine-sm-"));
		t.after(() => rm(dir, { recursive: true, force: true }));
		const cwd = join(dir, "work");
		const root = join(dir, "gateway-sessions");
		const manager = createGatewaySessionManager(cwd, "slack:C1/thread 7", root);
		assert.ok(manager instanceof SessionManager, "not a SessionManager from @mariozechner/pi-coding-agent");
		assert.equal(manager.getSessionDir(), join(root, "slack_C1_thread_7"));
		assert.equal(manager.getCwd(), cwd);
	});

	it("setActiveGatewayRuntime stores the runtime that getActiveGatewayRuntime returns until it is cleared", async (t) => {
		const { rt } = await gateway(t);
		assert.equal(getActiveGatewayRuntime(), null);
		setActiveGatewayRuntime(rt);
		try {
			assert.equal(getActiveGatewayRuntime(), rt);
		} finally {
			setActiveGatewayRuntime(null);
		}
		assert.equal(getActiveGatewayRuntime(), null);
	});
});

describe("enqueueMessage", () => {
	it("answers with the text of the run's last assistant message", async (t) => {
		const { ledger } = await gateway(t);
		assert.deepEqual(withRunId(await ledger.send({ sessionKey: "a", text: "hello" })), {
			ok: true,
			response: "pong",
			sessionKey: "a",
		});
		// A tool turn: the answer is the text after the tool call, not the tool-call message.
		assert.deepEqual(withRunId(await ledger.send({ sessionKey: "a", text: "/tool" })), {
			ok: true,
			response: "done",
			sessionKey: "a",
		});
		// Thinking is not part of the response.
		assert.equal((await ledger.send({ sessionKey: "a", text: "/thinking" })).response, "ok");
		await ledger.done();
	});

	it("hands prompt() the text, the images and the source, which defaults to extension", async (t) => {
		const { rt, ledger, prompts } = await gateway(t);
		const images = [{ type: "image", data: TINY_PNG, mimeType: "image/png" }];
		await ledger.send({ sessionKey: "p", text: "with image", images, source: "rpc" });
		// Bytes that are not the PNG they claim to be are refused at the door, and nothing is prompted.
		await assert.rejects(
			rt.enqueueMessage({ sessionKey: "p", text: "not a png", images: [{ type: "image", data: "aGVsbG8=", mimeType: "image/png" }] }),
			(error) => error instanceof Error && /^Invalid images\[0\]\.data: /.test(error.message),
		);
		await ledger.send({ sessionKey: "p", text: "plain" });
		const calls = prompts.filter((p) => p.key === "p");
		assert.equal(calls.length, 2);
		assert.equal(calls[0].text, "with image");
		assert.deepEqual(calls[0].options.images, images);
		assert.equal(calls[0].options.source, "rpc");
		assert.equal(calls[1].text, "plain");
		assert.equal(calls[1].options.images, undefined);
		assert.equal(calls[1].options.source, "extension");
		await ledger.done();
	});

	it("runs the messages of an existing session one at a time, in the order enqueueMessage was called", async (t) => {
		const { ledger, prompts, activity } = await gateway(t);
		await ledger.send({ sessionKey: "fifo", text: "warm up" });
		// Thirty rounds of eight messages sent in one go: an order that only holds by luck shows up.
		for (let round = 0; round < 30; round++) {
			const texts = Array.from({ length: 8 }, (_, i) => `/stream 2 1 r${round}m${i}`);
			const order = [];
			const results = texts.map((text, i) =>
				ledger.send({ sessionKey: "fifo", text }).then((r) => {
					order.push(i);
					return r;
				}),
			);
			for (const result of await Promise.all(results)) assert.equal(result.ok, true);
			assert.deepEqual(
				prompts.filter((p) => p.key === "fifo" && p.text.includes(`r${round}m`)).map((p) => p.text),
				texts,
				`round ${round}: prompts ran out of order`,
			);
			assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7], `round ${round}: results came out of order`);
		}
		assert.equal(activity.perKey.get("fifo").maxActive, 1);
		await ledger.done();
	});

	it("runs messages sent before their session exists in the order enqueueMessage was called", async (t) => {
		const { ledger, prompts, activity } = await gateway(t, { createDelayMs: 50 });
		const texts = Array.from({ length: 8 }, (_, i) => `/stream 2 1 m${i}`);
		const results = texts.map((text) => ledger.send({ sessionKey: "fresh", text }));
		for (const result of await Promise.all(results)) assert.equal(result.ok, true);
		assert.deepEqual(
			prompts.filter((p) => p.key === "fresh").map((p) => p.text),
			texts,
		);
		assert.equal(activity.perKey.get("fresh").maxActive, 1);
		await ledger.done();
	});

	it("runs different sessions at the same time", async (t) => {
		const { ledger, activity } = await gateway(t);
		const keys = ["c1", "c2", "c3"];
		const results = await Promise.all(keys.map((sessionKey) => ledger.send({ sessionKey, text: "/stream 50 10" })));
		for (const result of results) assert.equal(result.ok, true);
		assert.equal(activity.maxActive, 3, "the three sessions' runs never overlapped");
		await ledger.done();
	});

	it("answers at once with Queue full (N pending). when the session's queue is full", async (t) => {
		const { rt, ledger } = await gateway(t, { config: { session: { maxQueuePerSession: 2 } } });
		const running = ledger.send({ sessionKey: "q", text: FOREVER });
		await waitFor(() => rt.getSession("q")?.processing, "the first message to start");
		const queued = [ledger.send({ sessionKey: "q", text: "/instant" }), ledger.send({ sessionKey: "q", text: "/instant" })];
		await waitFor(() => rt.getSession("q")?.queueDepth === 2, "two queued messages");

		const full = await within(ledger.send({ sessionKey: "q", text: "/instant" }), SOON_MS, "the queue-full answer");
		assertNoRunId(full, "the queue-full answer");
		assert.deepEqual(full, { ok: false, response: "", error: "Queue full (2 pending).", sessionKey: "q" });
		assert.equal(ledger.pending().length, 3, "the running and queued messages must still be pending");
		assert.equal(rt.getSession("q").queueDepth, 2, "a refused message must not enter the queue");

		assert.equal(rt.abortSession("q"), true);
		assert.equal((await running).ok, false);
		for (const result of await Promise.all(queued)) assert.deepEqual(withRunId(result), { ok: true, response: "ok", sessionKey: "q" });
		await ledger.done();
	});

	it("reports a model error as ok:false with the model's message and an error event", async (t) => {
		const { rt, ledger } = await gateway(t);
		const events = await collect(rt, "e");
		const failed = await ledger.send({ sessionKey: "e", text: "/error the model broke" });
		assert.deepEqual(withRunId(failed), {
			ok: false,
			response: "",
			error: "the model broke",
			sessionKey: "e",
		});
		await events.waitFor((e) => e.type === "run_end", "the run_end event");
		assert.deepEqual(events.of("error"), [{ type: "error", sessionKey: "e", error: "the model broke", runId: failed.runId }]);
		assert.deepEqual(events.of("run_end"), [
			{ type: "run_end", sessionKey: "e", runId: failed.runId, status: "failed", error: "the model broke" },
		]);
		assert.equal(events.of("aborted").length, 0);
		// The session keeps working.
		assert.equal((await ledger.send({ sessionKey: "e", text: "again" })).response, "pong");
		await ledger.done();
	});

	it("reports a prompt() that throws as ok:false with the thrown message, and the session keeps working", async (t) => {
		const { rt, ledger } = await gateway(t);
		const events = await collect(rt, "th");
		const result = await ledger.send({ sessionKey: "th", text: "/throw kaput" });
		assert.equal(result.ok, false);
		assert.match(result.error, /kaput/);
		const error = await events.waitFor((e) => e.type === "error", "the error event");
		assert.match(error.error, /kaput/);
		assert.equal((await ledger.send({ sessionKey: "th", text: "again" })).ok, true);
		await ledger.done();
	});
});

describe("session creation", () => {
	it("calls createSession once for concurrent first uses of a key, and they all share the session", async (t) => {
		const { rt, ledger, createCalls } = await gateway(t, { createDelayMs: 100 });
		const subscribers = [[], []];
		const subscribed = subscribers.map((events) => rt.addSubscriber("sf", (e) => events.push(e)));
		const results = Array.from({ length: 6 }, (_, i) => ledger.send({ sessionKey: "sf", text: `m${i}` }));
		const unsubscribes = await Promise.all(subscribed);
		for (const result of await Promise.all(results)) assert.equal(result.ok, true);
		unsubscribes.forEach((u) => u());
		assert.deepEqual(createCalls, ["sf"]);
		assert.equal(rt.listSessions().filter((s) => s.sessionKey === "sf").length, 1);
		for (const events of subscribers) assert.equal(events[0].type, "hello");
		await ledger.done();
	});

	it("fails every request waiting on a failing createSession with its error and keeps no entry", async (t) => {
		const { rt, ledger, createCalls } = await gateway(t, { factoryOptions: { failKey: /^bad/ } });
		const results = Array.from({ length: 3 }, () => ledger.send({ sessionKey: "bad-1", text: "hi" }));
		// Observed at once, so that its rejection is never unhandled.
		const subscribed = rt.addSubscriber("bad-1", () => {}).then(
			() => assert.fail("addSubscriber resolved for a session that could not be created"),
			(error) => error,
		);
		for (const result of await Promise.all(results)) {
			assert.equal(result.ok, false);
			assert.equal(result.response, "");
			assert.match(result.error, /scripted createSession failure: bad-1/);
		}
		const rejection = await subscribed;
		assert.ok(rejection instanceof Error);
		assert.match(rejection.message, /scripted createSession failure: bad-1/);
		assert.deepEqual(createCalls, ["bad-1"]);
		assert.equal(rt.getSession("bad-1"), undefined);
		assert.ok(!rt.listSessions().some((s) => s.sessionKey === "bad-1"), "a failed creation left an entry");

		// The failure is not cached: the next use tries again.
		const again = await ledger.send({ sessionKey: "bad-1", text: "hi" });
		assert.equal(again.ok, false);
		assert.deepEqual(createCalls, ["bad-1", "bad-1"]);
		// Other keys are unaffected.
		assert.equal((await ledger.send({ sessionKey: "good", text: "hi" })).ok, true);
		await ledger.done();
	});

	it("fails the request when createSession returns something that is not a session", async (t) => {
		const { rt, ledger } = await gateway(t, {
			createSession: (factory) => async (key) => (key === "junk" ? { sessionId: "x" } : factory(key)),
		});
		const result = await ledger.send({ sessionKey: "junk", text: "hi" });
		assert.equal(result.ok, false);
		assert.match(result.error, /prompt/);
		assert.equal(rt.getSession("junk"), undefined);
		await ledger.done();
	});
});

describe("addSubscriber", () => {
	it("sends hello first, then the session's events as plain objects in the order they happen", async (t) => {
		const { rt, ledger, created } = await gateway(t);
		const events = await collect(rt, "sub");
		const [hello] = events.events;
		assert.equal(hello.type, "hello");
		assert.equal(hello.sessionKey, "sub");
		// The same snapshot as getSession, except that subscribing may itself count as activity.
		const { lastActiveAt, ...rest } = rt.getSession("sub");
		const { lastActiveAt: helloActiveAt, ...helloRest } = hello.snapshot;
		assert.deepEqual(helloRest, rest);
		assert.ok(helloActiveAt <= lastActiveAt);
		assert.equal(hello.snapshot.sessionId, created.get("sub")[0].sessionId);

		const result = await ledger.send({ sessionKey: "sub", text: "hello" });
		assert.equal(result.ok, true);
		const { runId } = result;
		await waitFor(() => events.of("session_state").length >= 3, "the end-of-run session_state");
		await sleep(50);
		// SPEC §10: the run's events between run_start and run_end, each with its runId.
		assert.deepEqual(
			events.events.map((e) => e.type),
			[
				"hello",
				"session_state",
				"run_start",
				"session_state",
				"agent_start",
				"turn_start",
				"message_start",
				"message_start",
				"token",
				"message_complete",
				"turn_end",
				"agent_end",
				"run_end",
				"session_state",
			],
		);
		assertRunFrames(events.events, runId, { status: "succeeded" });
		assert.deepEqual(events.of("run_start"), [{ type: "run_start", sessionKey: "sub", runId }]);
		assert.deepEqual(events.of("run_end"), [{ type: "run_end", sessionKey: "sub", runId, status: "succeeded" }]);
		for (const event of events.events) {
			assert.equal(Object.getPrototypeOf(event), Object.prototype, `${event.type} is not a plain object`);
			assert.equal(event.sessionKey, "sub");
		}
		const states = events.of("session_state").map((e) => e.snapshot);
		assert.deepEqual(
			states.map((s) => [s.queueDepth, s.processing]),
			[
				[1, false],
				[0, true],
				[0, false],
			],
		);
		assert.deepEqual(
			events.of("message_start").map((e) => e.role),
			["user", "assistant"],
		);
		assert.deepEqual(events.of("token"), [{ type: "token", sessionKey: "sub", delta: "pong", contentIndex: 0, runId }]);
		// SPEC §12: message_complete carries the message's usage, stopReason and model.
		assert.deepEqual(events.of("message_complete"), [
			{
				type: "message_complete",
				sessionKey: "sub",
				text: "pong",
				usage: EMPTY_USAGE,
				stopReason: "stop",
				model: { provider: "scripted", id: "scripted-1" },
				runId,
			},
		]);
		events.unsubscribe();
		await ledger.done();
	});

	it("has delivered hello to the listener by the time its promise resolves, as the seed does", async (t) => {
		const { rt, ledger } = await gateway(t);
		await ledger.send({ sessionKey: "h", text: "make it exist" });
		// Twenty times, on an existing session and on new ones: a race shows up.
		for (let i = 0; i < 20; i++) {
			for (const key of ["h", `h${i}`]) {
				const events = [];
				const unsubscribe = await rt.addSubscriber(key, (e) => events.push(e));
				try {
					assert.equal(events.length, 1, `attempt ${i}, ${key}: ${events.length} events when addSubscriber resolved`);
					assert.equal(events[0].type, "hello");
					assert.equal(events[0].sessionKey, key);
				} finally {
					unsubscribe();
				}
			}
		}
		await ledger.done();
	});

	it("stops delivering to a listener once it unsubscribes, while the others go on", async (t) => {
		const { rt, ledger } = await gateway(t);
		const a = await collect(rt, "u");
		const b = await collect(rt, "u");
		await ledger.send({ sessionKey: "u", text: "one" });
		await a.waitFor((e) => e.type === "message_complete", "a's first message_complete");
		await b.waitFor((e) => e.type === "message_complete", "b's first message_complete");

		a.unsubscribe();
		const seenByA = a.events.length;
		await ledger.send({ sessionKey: "u", text: "two" });
		await waitFor(() => b.of("message_complete").length === 2, "b's second message_complete");
		await waitFor(
			() => b.of("session_state").filter((e) => !e.snapshot.processing && e.snapshot.queueDepth === 0).length >= 2,
			"b's end of the second run",
		);
		await sleep(50);
		assert.equal(a.events.length, seenByA, "an unsubscribed listener still received events");
		b.unsubscribe();
		await ledger.done();
	});

	it("keeps delivering to the other listeners, and keeps the run going, when one listener throws", async (t) => {
		const { rt, ledger, logs } = await gateway(t);
		let thrown = 0;
		const unsubscribeBad = await rt.addSubscriber("boom", () => {
			thrown++;
			throw new Error("listener exploded");
		});
		const good = await collect(rt, "boom");
		assert.deepEqual(withRunId(await ledger.send({ sessionKey: "boom", text: "hello" })), {
			ok: true,
			response: "pong",
			sessionKey: "boom",
		});
		await good.waitFor((e) => e.type === "message_complete", "message_complete at the good listener");
		await waitFor(() => good.of("session_state").length >= 3, "the good listener's end-of-run state");
		// hello + 13 events of the run (run_start, agent_start, agent_end and run_end included), each of which threw.
		await waitFor(() => thrown === 14, "all fourteen events at the throwing listener");
		assert.ok(logs.some((m) => m.includes("listener exploded")), "the throw was not logged");
		// A second run is unaffected too.
		assert.equal((await ledger.send({ sessionKey: "boom", text: "again" })).ok, true);
		await waitFor(() => good.of("message_complete").length === 2, "the second message_complete");
		unsubscribeBad();
		good.unsubscribe();
		await ledger.done();
	});

	it("gives two subscribers of a session the same events in the same order", async (t) => {
		const { rt, ledger } = await gateway(t);
		const a = await collect(rt, "two");
		const b = await collect(rt, "two");
		await Promise.all([
			ledger.send({ sessionKey: "two", text: "/stream 40" }),
			ledger.send({ sessionKey: "two", text: "/tool" }),
			ledger.send({ sessionKey: "two", text: "/thinking" }),
		]);
		const finished = (c) =>
			c.of("session_state").some((e) => !e.snapshot.processing && e.snapshot.queueDepth === 0 && c.of("message_complete").length === 4);
		await waitFor(() => finished(a) && finished(b), "both subscribers to see the three runs end");
		await sleep(50);
		assert.ok(a.of("token").length >= 40);
		assert.equal(a.of("tool_start").length, 1);
		assert.equal(a.of("thinking").length, 1);
		assert.deepEqual(a.events.slice(1), b.events.slice(1));
		a.unsubscribe();
		b.unsubscribe();
		await ledger.done();
	});
});

describe("abortSession and clearQueue", () => {
	it("abortSession is false for an idle or unknown session and creates nothing", async (t) => {
		const { rt, createCalls } = await gateway(t);
		assert.equal(rt.abortSession("main"), false);
		assert.equal(rt.abortSession("nobody"), false);
		assert.equal(rt.getSession("nobody"), undefined);
		assert.deepEqual(createCalls, []);
	});

	it("aborting a running message answers it ok:false, emits aborted, and the session goes on", async (t) => {
		const { rt, ledger, created } = await gateway(t);
		const events = await collect(rt, "ab");
		const running = ledger.send({ sessionKey: "ab", text: FOREVER });
		await events.waitFor((e) => e.type === "token", "a token");
		assert.equal(rt.abortSession("ab"), true);
		const result = await within(running, SOON_MS, "the aborted message's result");
		assert.equal(result.ok, false);
		assert.equal(result.sessionKey, "ab");
		assert.equal(result.error, "Request was aborted");
		withRunId(result);
		const aborted = await events.waitFor((e) => e.type === "aborted", "the aborted event");
		assert.equal(aborted.runId, result.runId);
		await events.waitFor((e) => e.type === "run_end", "the run_end event");
		const own = assertRunFrames(events.events, result.runId, { status: "aborted" });
		assert.equal(own.at(-2).type, "aborted", "aborted comes just before run_end");
		assert.equal(events.of("error").length, 0);
		assert.equal(created.get("ab")[0].stats.aborts, 1);
		assert.equal(rt.abortSession("ab"), false, "nothing is running any more");
		assert.equal((await ledger.send({ sessionKey: "ab", text: "after" })).response, "pong");
		events.unsubscribe();
		await ledger.done();
	});

	it("clearQueue answers each queued message once with Queue cleared and leaves the running one alone", async (t) => {
		const { rt, ledger, prompts } = await gateway(t);
		const running = ledger.send({ sessionKey: "cq", text: FOREVER });
		await waitFor(() => rt.getSession("cq")?.processing, "the run to start");
		const queued = ["a", "b", "c"].map((text) => ledger.send({ sessionKey: "cq", text }));
		await waitFor(() => rt.getSession("cq")?.queueDepth === 3, "three queued messages");

		rt.clearQueue("cq");
		for (const result of await within(Promise.all(queued), SOON_MS, "the cleared messages' results")) {
			assert.deepEqual(withRunId(result), { ok: false, response: "", error: "Queue cleared", sessionKey: "cq" });
		}
		const snapshot = rt.getSession("cq");
		assert.equal(snapshot.queueDepth, 0);
		assert.equal(snapshot.processing, true, "clearQueue must not stop the running message");
		assert.equal(ledger.entries[0].settled, false);

		rt.abortSession("cq");
		assert.equal((await running).ok, false);
		await sleep(50);
		assert.deepEqual(
			prompts.filter((p) => p.key === "cq").map((p) => p.text),
			[FOREVER],
			"a cleared message was run anyway",
		);
		// Clearing an unknown session is a no-op that creates nothing.
		assert.equal(rt.clearQueue("nobody"), undefined);
		assert.equal(rt.getSession("nobody"), undefined);
		await ledger.done();
	});
});

describe("resetSession", () => {
	it("renews the primary session with newSession(): run aborted, queue answered Session reset, subscribers kept", async (t) => {
		const { rt, ledger, primary } = await gateway(t);
		await ledger.send({ sessionKey: "main", text: "one" });
		await ledger.send({ sessionKey: "main", text: "two" });
		const before = rt.getSession("main");
		assert.equal(before.messageCount, 4);
		const events = await collect(rt, "main");

		const running = ledger.send({ sessionKey: "main", text: FOREVER });
		await waitFor(() => rt.getSession("main")?.processing, "the run to start");
		const queued = [ledger.send({ sessionKey: "main", text: "q1" }), ledger.send({ sessionKey: "main", text: "q2" })];
		await waitFor(() => rt.getSession("main")?.queueDepth === 2, "two queued messages");

		await within(rt.resetSession("main"), SOON_MS, "resetSession(main)");
		for (const result of await within(Promise.all(queued), SOON_MS, "the queued messages' results")) {
			assert.deepEqual(withRunId(result), { ok: false, response: "", error: "Session reset", sessionKey: "main" });
		}
		const stopped = await within(running, SOON_MS, "the running message's result");
		assert.equal(stopped.ok, false);
		assert.ok(["Session reset", "Request was aborted"].includes(stopped.error), `unexpected error ${stopped.error}`);
		assert.equal(primary.isStreaming, false, "the run was not aborted");

		await waitFor(() => rt.getSession("main")?.processing === false, "processing to end");
		const after = rt.getSession("main");
		assert.notEqual(after.sessionId, before.sessionId);
		assert.equal(after.sessionId, primary.sessionId);
		assert.equal(after.messageCount, 0);
		assert.equal(after.queueDepth, 0);
		assert.equal(primary.disposed, false, "the primary session must never be disposed");

		// A subscriber from before the reset hears the renewed session.
		assert.equal((await ledger.send({ sessionKey: "main", text: "fresh" })).response, "pong");
		await waitFor(() => events.of("message_complete").length >= 1, "message_complete after the reset");
		events.unsubscribe();
		await ledger.done();
	});

	it("without newSession() resets the primary by aborting and clearing, and keeps its conversation", async (t) => {
		const primary = createScriptedSession("main", { kind: "instant", reply: "pong" }, { newSession: false });
		const { rt, ledger } = await gateway(t, { primary });
		assert.equal(primary.newSession, undefined);
		await ledger.send({ sessionKey: "main", text: "one" });
		const before = rt.getSession("main");

		const running = ledger.send({ sessionKey: "main", text: FOREVER });
		await waitFor(() => rt.getSession("main")?.processing, "the run to start");
		const queued = ledger.send({ sessionKey: "main", text: "q1" });
		await waitFor(() => rt.getSession("main")?.queueDepth === 1, "a queued message");

		await within(rt.resetSession("main"), SOON_MS, "resetSession(main)");
		assert.deepEqual(withRunId(await queued), { ok: false, response: "", error: "Session reset", sessionKey: "main" });
		assert.equal((await running).ok, false);
		assert.equal(primary.isStreaming, false, "the run was not aborted");
		assert.ok(primary.stats.aborts >= 1);

		await waitFor(() => rt.getSession("main")?.processing === false, "processing to end");
		const after = rt.getSession("main");
		assert.equal(after.sessionId, before.sessionId, "the conversation should be kept");
		assert.equal(after.messageCount, primary.messages.length);
		assert.equal(after.messageCount, before.messageCount + 2, "the aborted run's messages are part of the kept conversation");
		assert.equal(after.queueDepth, 0);
		assert.equal(primary.disposed, false);
		assert.equal((await ledger.send({ sessionKey: "main", text: "again" })).response, "pong");
		await ledger.done();
	});

	it("resets a non-primary session by aborting it, answering its queue, disposing and forgetting it", async (t) => {
		const { rt, ledger, created, createCalls, factory } = await gateway(t);
		await ledger.send({ sessionKey: "nr", text: "one" });
		const [session] = created.get("nr");
		const firstId = session.sessionId;

		const running = ledger.send({ sessionKey: "nr", text: FOREVER });
		await waitFor(() => rt.getSession("nr")?.processing, "the run to start");
		const queued = [ledger.send({ sessionKey: "nr", text: "q1" }), ledger.send({ sessionKey: "nr", text: "q2" })];
		await waitFor(() => rt.getSession("nr")?.queueDepth === 2, "two queued messages");

		await within(rt.resetSession("nr"), SOON_MS, "resetSession(nr)");
		for (const result of await within(Promise.all(queued), SOON_MS, "the queued messages' results")) {
			assert.deepEqual(withRunId(result), { ok: false, response: "", error: "Session reset", sessionKey: "nr" });
		}
		assert.equal((await within(running, SOON_MS, "the running message's result")).ok, false);
		assert.equal(rt.getSession("nr"), undefined);
		assert.ok(!rt.listSessions().some((s) => s.sessionKey === "nr"));
		assert.ok(session.stats.aborts >= 1, "the run was not aborted");
		assert.equal(session.stats.disposes, 1);
		assert.ok(!factory.live.has(session));

		// The key comes back as a new session.
		assert.equal((await ledger.send({ sessionKey: "nr", text: "fresh" })).ok, true);
		assert.deepEqual(createCalls, ["nr", "nr"]);
		assert.notEqual(rt.getSession("nr").sessionId, firstId);
		await ledger.done();
	});

	it("resetting an unknown session resolves and creates nothing", async (t) => {
		const { rt, createCalls } = await gateway(t);
		await within(rt.resetSession("ghost"), SOON_MS, "resetSession(ghost)");
		assert.equal(rt.getSession("ghost"), undefined);
		assert.deepEqual(createCalls, []);
	});
});

describe("listSessions and getSession", () => {
	it("report accurate snapshots, including messageCount while a run is in flight", async (t) => {
		const started = Date.now();
		const { rt, ledger, created } = await gateway(t);
		const events = await collect(rt, "snap");
		const [session] = created.get("snap");
		assert.equal(events.events[0].snapshot.sessionId, rt.getSession("snap").sessionId);

		const running = ledger.send({ sessionKey: "snap", text: FOREVER });
		await waitFor(() => events.of("token").length >= 3, "three tokens");
		const queued = ledger.send({ sessionKey: "snap", text: "next" });
		await waitFor(() => rt.getSession("snap").queueDepth === 1, "the queued message");

		const snapshot = rt.getSession("snap");
		assert.deepEqual(Object.keys(snapshot).sort(), [
			"createdAt",
			"lastActiveAt",
			"messageCount",
			"processing",
			"queueDepth",
			"sessionId",
			"sessionKey",
		]);
		assert.equal(snapshot.sessionKey, "snap");
		assert.equal(snapshot.sessionId, session.sessionId);
		assert.equal(snapshot.processing, true);
		assert.equal(snapshot.queueDepth, 1);
		assert.equal(snapshot.messageCount, session.messages.length, "messageCount during the run");
		assert.equal(snapshot.messageCount, 1, "the user message is in, the assistant message is not yet");
		assert.ok(started <= snapshot.createdAt && snapshot.createdAt <= snapshot.lastActiveAt);
		assert.ok(snapshot.lastActiveAt <= Date.now());

		const listed = rt.listSessions();
		assert.deepEqual(
			listed.map((s) => s.sessionKey),
			["main", "snap"],
		);
		assert.deepEqual(listed[1], rt.getSession("snap"));
		assert.equal(rt.getSession("nobody"), undefined);

		rt.abortSession("snap");
		await running;
		await queued;
		await waitFor(() => rt.getSession("snap").processing === false, "processing to end");
		const done = rt.getSession("snap");
		assert.equal(done.messageCount, session.messages.length);
		assert.equal(done.messageCount, 4);
		assert.equal(done.queueDepth, 0);
		events.unsubscribe();
		await ledger.done();
	});
});

describe("idle eviction", () => {
	it("disposes idle non-primary sessions but never the primary, a busy, a queued or a subscribed one", async (t) => {
		const { rt, ledger, created, primary, logs, createCalls } = await gateway(t, {
			config: { session: { idleMinutes: 0.002, sweepIntervalMs: 50 } },
		});
		await ledger.send({ sessionKey: "idle", text: "hi" });
		const busyRun = ledger.send({ sessionKey: "busy", text: FOREVER });
		await waitFor(() => rt.getSession("busy")?.processing, "the busy run to start");
		const busyQueued = ledger.send({ sessionKey: "busy", text: "/instant" });
		const watched = await collect(rt, "watched");

		await waitFor(() => rt.getSession("idle") === undefined, "the idle session to be evicted");
		// Eviction takes the session out of the registry first, then disposes it through JS
		// and logs it.
		await waitFor(() => created.get("idle")[0].disposed, "the evicted session to be disposed");
		await waitFor(() => logs.some((m) => m.includes("evicted idle session idle")), "the eviction log line");

		// Several idle periods (0.12 s) and sweeps (0.05 s) later, the others are still there.
		await sleep(600);
		for (const key of ["main", "busy", "watched"]) assert.ok(rt.getSession(key), `${key} was evicted`);
		assert.equal(created.get("busy")[0].disposed, false);
		assert.equal(created.get("watched")[0].disposed, false);
		assert.equal(primary.disposed, false);

		// Without its subscriber the watched session goes.
		watched.unsubscribe();
		await waitFor(() => rt.getSession("watched") === undefined, "the unwatched session to be evicted");
		await waitFor(() => created.get("watched")[0].disposed, "the unwatched session to be disposed");

		// Once its work is done, so does the busy one.
		assert.equal(rt.abortSession("busy"), true);
		assert.equal((await busyRun).ok, false);
		assert.equal((await busyQueued).ok, true);
		await waitFor(() => rt.getSession("busy") === undefined, "the finished busy session to be evicted");
		await waitFor(() => created.get("busy")[0].disposed, "the finished busy session to be disposed");

		await sleep(300);
		assert.ok(rt.getSession("main"), "the primary session was evicted");
		assert.equal(primary.stats.disposes, 0);

		// An evicted key comes back as a new session.
		assert.equal((await ledger.send({ sessionKey: "idle", text: "back" })).ok, true);
		assert.equal(createCalls.filter((k) => k === "idle").length, 2);
		await ledger.done();
	});
});

describe("stop()", () => {
	it("aborts runs, answers every pending message Gateway stopped, disposes all but the primary, and returns promptly", async (t) => {
		const { rt, ledger, created, primary, factory } = await gateway(t);
		await ledger.send({ sessionKey: "s2", text: "idle one" });
		const watched = await collect(rt, "s1");
		const pending = [
			ledger.send({ sessionKey: "main", text: FOREVER }),
			ledger.send({ sessionKey: "s1", text: FOREVER }),
		];
		await waitFor(() => rt.getSession("main")?.processing && rt.getSession("s1")?.processing, "both runs to start");
		pending.push(
			ledger.send({ sessionKey: "main", text: "q" }),
			ledger.send({ sessionKey: "s1", text: "q1" }),
			ledger.send({ sessionKey: "s1", text: "q2" }),
		);
		await waitFor(() => rt.getSession("s1")?.queueDepth === 2 && rt.getSession("main")?.queueDepth === 1, "the queued messages");

		const began = Date.now();
		await within(rt.stop(), 3_000, "rt.stop()");
		const elapsed = Date.now() - began;
		assert.ok(elapsed < 3_000, `stop() took ${elapsed} ms`);

		for (const result of await within(Promise.all(pending), 1_000, "results of the pending messages")) {
			assert.equal(result.ok, false);
			assert.equal(result.error, "Gateway stopped");
		}
		assert.equal(primary.isStreaming, false, "the primary's run is still going");
		assert.equal(created.get("s1")[0].isStreaming, false, "s1's run is still going");
		assert.ok(primary.stats.aborts >= 1);
		assert.ok(created.get("s1")[0].stats.aborts >= 1);
		assert.equal(factory.live.size, 0, "a non-primary session was not disposed");
		assert.equal(created.get("s2")[0].disposed, true);
		assert.equal(primary.disposed, false, "stop() must not dispose the primary session");
		assert.equal(rt.isReady(), false);
		assert.deepEqual(rt.listSessions(), []);
		await within(rt.stop(), 3_000, "a second rt.stop()");
		watched.unsubscribe();
		await ledger.done(1_000);
	});

	it("answers a message whose session is still being created Gateway stopped, and disposes that session when it arrives", async (t) => {
		let release;
		const gate = new Promise((resolve) => {
			release = resolve;
		});
		const { rt, ledger, factory } = await gateway(t, {
			createSession: (factory) => async (key) => {
				if (key === "late") await gate;
				return factory(key);
			},
		});
		t.after(() => release());
		const waiting = ledger.send({ sessionKey: "late", text: "hi" });
		await sleep(100);
		await within(rt.stop(), 3_000, "rt.stop()");
		assert.deepEqual(withRunId(await within(waiting, 1_000, "the waiting message's result")), {
			ok: false,
			response: "",
			error: "Gateway stopped",
			sessionKey: "late",
		});
		release();
		await sleep(300);
		assert.equal(factory.live.size, 0, "a session created after stop() was kept alive instead of disposed");
		assert.deepEqual(rt.listSessions(), [], "a session created after stop() was registered");
		await ledger.done(1_000);
	});
});
