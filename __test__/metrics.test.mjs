// `GET /metrics` (issue 16, SPEC §14) over HTTP on 127.0.0.1, against the real addon.
//
// One gateway does real work — scripted sessions (a message, a failed run, queued messages, a
// cancelled run, an abort), a session that streams 32 MiB to a reader that stops reading (cut as
// a slow reader), real pi AgentSessions on the faux model (approvals approved / denied / timed
// out / aborted, and token usage), 404s and 400s, and an eviction at `session.maxSessions` — and
// the counters are checked by EXACT deltas between two scrapes: every series named moves by
// exactly its delta and, in strict checks, no other series moves (histogram buckets and sums,
// whose values depend on timing, and the /metrics route's own series excepted). `events_total` is
// compared with the events a subscriber of the session received, `tokens_total` /
// `cost_usd_total` with the usage the `message_complete` events carried (the faux model reports
// tokens, at cost 0). Then `promtool check metrics` (Debian's `prometheus` package,
// /usr/bin/promtool; the test FAILS without it) checks that gateway's output.
//
// Also: idle eviction; the classic and OpenMetrics forms by `Accept`; HEAD and POST; bearer auth
// and `metrics.public`; a bad `metrics` config is a constructor error naming the field.
//
// Run: node --test __test__/metrics.test.mjs

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { GatewayRuntime } from "../index.js";
import { createFauxPiAgent } from "../lib/faux-agent.js";
import { approvalRequests, decideOk, resolvedEvent, runEndEvent } from "./support/approval-util.mjs";
import { baseConfig, startGateway } from "./support/gateway.mjs";
import { openEvents, say } from "./support/history-util.mjs";
import { request } from "./support/http.mjs";
import {
	assertDeltas,
	CLASSIC_TYPE,
	eventDeltas,
	getMetrics,
	httpDelta,
	merge,
	OPENMETRICS_ACCEPT,
	OPENMETRICS_TYPE,
	parseMetrics,
	PROMETHEUS_ACCEPT,
	promtoolCheck,
	Scrape,
	scrape,
	scrapeUntil,
	usageOfStreams,
} from "./support/metrics-util.mjs";
import { runPath, submit } from "./support/runs.mjs";
import { BigStreamSession, createScriptedFactory, createScriptedSession } from "./support/sessions.mjs";
import { rawSse } from "./support/sse.mjs";
import { sleep, SOON_MS, within } from "./support/wait.mjs";

/** `session.maxSessions` of the working gateway. */
const CAP = 10;
/** `approval.timeoutMs` of the working gateway: the third approval is left to time out. */
const APPROVAL_TIMEOUT_MS = 1500;
/**
 * `sse.bufferEvents` of the working gateway: a reader this many frames behind is cut. Above the
 * frames one faux run logs in a burst (a reader that reads is never cut), below what a reader
 * that stops reading falls behind by in the BIG_TOKENS × 64 KiB run (32 MiB, far more than the
 * socket buffers hold).
 */
const BUFFER_EVENTS = 128;
const BIG_TOKENS = 512;
/** How long counters may take to settle after the HTTP answer (hooks run as the run ends). */
const SETTLE_MS = 5000;

const runs = (outcome) => `pi_gateway_runs_total{outcome="${outcome}"}`;
const runDurations = (outcome) => `pi_gateway_run_duration_seconds_count{outcome="${outcome}"}`;
const callbacks = (callback) => `pi_gateway_js_callback_duration_seconds_count{callback="${callback}"}`;
const events = (type) => `pi_gateway_events_total{type="${type}"}`;
const approvals = (outcome) => `pi_gateway_approvals_total{outcome="${outcome}"}`;
const tokens = (kind) => `pi_gateway_tokens_total{kind="${kind}"}`;
const SESSIONS = "pi_gateway_sessions";
const CREATED = "pi_gateway_sessions_created_total";
const EVICTED = "pi_gateway_sessions_evicted_total";
const QUEUE = "pi_gateway_queue_depth";
const SUBSCRIBERS = "pi_gateway_sse_subscribers";
const CUT = "pi_gateway_sse_slow_readers_cut_total";
const COST = "pi_gateway_cost_usd_total";

/** Every family /metrics exposes (classic names) and its type. */
const FAMILIES = {
	pi_gateway_http_requests_total: "counter",
	pi_gateway_http_request_duration_seconds: "histogram",
	pi_gateway_sessions: "gauge",
	pi_gateway_sessions_created_total: "counter",
	pi_gateway_sessions_evicted_total: "counter",
	pi_gateway_runs_total: "counter",
	pi_gateway_run_duration_seconds: "histogram",
	pi_gateway_queue_depth: "gauge",
	pi_gateway_sse_subscribers: "gauge",
	pi_gateway_sse_slow_readers_cut_total: "counter",
	pi_gateway_events_total: "counter",
	pi_gateway_tokens_total: "counter",
	pi_gateway_cost_usd_total: "counter",
	pi_gateway_approvals_total: "counter",
	pi_gateway_webhook_deliveries_total: "counter",
	pi_gateway_js_callback_duration_seconds: "histogram",
};

/**
 * Scrapes until the deltas from `before` are `expected()` (recomputed each time: the event
 * streams it reads keep growing), within SETTLE_MS; then asserts them on the last scrape, so a
 * metric that never gets there fails with every series that is off. Returns that scrape.
 */
async function settled(port, before, expected, options = {}) {
	const deadline = Date.now() + SETTLE_MS;
	for (;;) {
		const now = await scrape(port);
		let failure;
		try {
			assertDeltas(before, now, expected(), options);
		} catch (error) {
			failure = error;
		}
		if (!failure) return now;
		if (Date.now() > deadline) throw failure;
		await sleep(25);
	}
}

/**
 * The scrape a test's deltas start from, and where on event stream `sse` the events it counts
 * start: taken again until no frame arrived around the scrape (the session is quiet), so an event
 * is either in the scrape or counted off the stream, never both or neither.
 */
async function baseline(port, sse) {
	for (let tries = 0; ; tries++) {
		const from = sse.events().length;
		const before = await scrape(port);
		await sleep(30);
		if (sse.events().length === from) return { from, before };
		assert.ok(tries < 50, "the session never became quiet");
	}
}

describe("a gateway doing real work: exact deltas, then promtool", { timeout: 60_000 }, () => {
	let agent;
	let gw;
	const big = new BigStreamSession({ count: BIG_TOKENS, size: 64 * 1024, intervalMs: 1 });
	const open = new Set();

	before(async () => {
		agent = await createFauxPiAgent();
		const scripted = createScriptedFactory();
		gw = await startGateway({
			config: {
				approval: { policy: { bash: "ask" }, timeoutMs: APPROVAL_TIMEOUT_MS },
				sse: { bufferEvents: BUFFER_EVENTS },
				session: { maxSessions: CAP, idleMinutes: 30, maxQueuePerSession: 8 },
			},
			primarySession: agent.primarySession,
			// `big`: the 32 MiB streamer; `s-…`: scripted sessions; anything else: a real pi session.
			createSession: async (key) => (key === "big" ? big : key.startsWith("s-") ? scripted(key) : agent.createSession(key)),
		});
	});

	after(async () => {
		for (const s of open) (s.close ? s.close() : s.destroy());
		if (gw) await within(gw.stop(), SOON_MS, "the gateway to stop");
		await agent?.close();
	});

	/** An event stream of `key` (hello received), closed in `after` if the test does not. */
	async function watch(key) {
		const sse = await openEvents(gw.port, key);
		open.add(sse);
		return sse;
	}

	/** Closes `sse`; returns once the gateway has dropped it (the gauge counts the streams still open). */
	async function unwatch(sse) {
		sse.close();
		open.delete(sse);
		await within(sse.ended, SOON_MS, "the event stream to close");
		return scrapeUntil(gw.port, (s) => s.v(SUBSCRIBERS) === open.size, `${SUBSCRIBERS} to be ${open.size} (the streams still open)`, SETTLE_MS);
	}

	it("a fresh gateway: the primary session, every labelled counter at 0; classic or OpenMetrics by Accept; HEAD; POST is 405", async () => {
		const s = await scrape(gw.port);
		assert.equal(s.v(SESSIONS), 1, "the primary session");
		assert.equal(s.v(CREATED), 1, "the primary counts as created");
		for (const series of [EVICTED, QUEUE, SUBSCRIBERS, CUT, COST]) {
			assert.ok(s.has(series), `${series} is exposed from the start`);
			assert.equal(s.v(series), 0, series);
		}
		for (const outcome of ["succeeded", "failed", "aborted", "cancelled"]) assert.equal(s.samples.get(runs(outcome)), 0, runs(outcome));
		for (const outcome of ["approved", "denied", "timeout", "aborted"]) assert.equal(s.samples.get(approvals(outcome)), 0, approvals(outcome));
		for (const kind of ["input", "output", "cache_read", "cache_write"]) assert.equal(s.samples.get(tokens(kind)), 0, tokens(kind));
		for (const outcome of ["delivered", "retrying", "given_up", "dropped", "refused"]) {
			assert.equal(s.samples.get(`pi_gateway_webhook_deliveries_total{outcome="${outcome}"}`), 0, outcome);
		}

		// Classic text unless OpenMetrics is asked for (as Prometheus does).
		for (const accept of [undefined, "text/plain", "*/*", "text/plain;version=0.0.4", "application/openmetrics-text;q=0"]) {
			const r = await getMetrics(gw.port, { headers: accept ? { accept } : {} });
			assert.equal(r.status, 200);
			assert.equal(r.headers["content-type"], CLASSIC_TYPE, `Accept: ${accept}`);
			assert.ok(!r.text.includes("# EOF") && !r.text.includes("# UNIT"), `Accept: ${accept}: classic text`);
		}
		for (const accept of [OPENMETRICS_ACCEPT, PROMETHEUS_ACCEPT]) {
			const r = await getMetrics(gw.port, { headers: { accept } });
			assert.equal(r.status, 200);
			assert.equal(r.headers["content-type"], OPENMETRICS_TYPE, `Accept: ${accept}`);
			assert.ok(r.text.endsWith("# EOF\n"), `OpenMetrics text ends with # EOF: ${JSON.stringify(r.text.slice(-40))}`);
			assert.equal(r.text.indexOf("# EOF"), r.text.length - "# EOF\n".length, "# EOF only at the end");
			assert.match(r.text, /^# TYPE pi_gateway_runs counter$/m, "an OpenMetrics counter is typed by its family name");
			assert.match(r.text, /^pi_gateway_runs_total\{outcome="succeeded"\} 0$/m);
			assert.match(r.text, /^# UNIT pi_gateway_js_callback_duration_seconds seconds$/m);
		}

		const head = await getMetrics(gw.port, { method: "HEAD" });
		assert.equal(head.status, 200);
		assert.equal(head.headers["content-type"], CLASSIC_TYPE);
		assert.equal(head.text, "", "HEAD has no body");
		const post = await getMetrics(gw.port, { method: "POST" });
		assert.equal(post.status, 405);
		assert.equal(post.headers.allow, "GET, HEAD");
		assert.deepEqual(JSON.parse(post.text), { error: "Method not allowed" });

		// Those requests were counted, each under the /metrics route, method and status.
		const later = await scrape(gw.port);
		assert.equal(later.v('pi_gateway_http_requests_total{route="/metrics",method="HEAD",status="200"}'), 1);
		assert.equal(later.v('pi_gateway_http_requests_total{route="/metrics",method="POST",status="405"}'), 1);
		assert.equal(later.v('pi_gateway_http_requests_total{route="/metrics",method="GET",status="200"}'), 8, "the first scrape, five classic, two OpenMetrics");
		// The classic form of a counter names its `_total` sample in HELP and TYPE.
		assert.equal(later.types.get("pi_gateway_runs_total"), "counter");
		assert.equal(later.types.get("pi_gateway_runs"), undefined);
		assert.equal(later.types.get("pi_gateway_http_request_duration_seconds"), "histogram");
	});

	it("a message: runs{succeeded}, the POST 200, run_start and every other event, the run's duration and the prompt callback, +1 each", async () => {
		const sse = await watch("s-msg");
		const { from, before } = await baseline(gw.port, sse);
		const result = await say(gw.port, "s-msg", "/instant");
		await runEndEvent(sse, result.runId);
		const scraped = await settled(
			gw.port,
			before,
			() =>
				merge(
					httpDelta("/sessions/:key/messages", "POST", 200),
					{ [runs("succeeded")]: 1, [runDurations("succeeded")]: 1, [callbacks("prompt")]: 1 },
					eventDeltas([sse], [from]),
				),
			{ strict: true, what: "one message" },
		);
		// Named explicitly too (eventDeltas counts them off the stream).
		assert.equal(scraped.v(events("run_start")) - before.v(events("run_start")), 1, "run_start +1");
		assert.equal(scraped.v(events("run_end")) - before.v(events("run_end")), 1, "run_end +1");
		assert.ok(scraped.v('pi_gateway_js_callback_duration_seconds_sum{callback="prompt"}') > before.v('pi_gateway_js_callback_duration_seconds_sum{callback="prompt"}'), "prompt time grows");
		const metricsGets = 'pi_gateway_http_requests_total{route="/metrics",method="GET",status="200"}';
		assert.ok(scraped.v(metricsGets) - before.v(metricsGets) >= 1, "the scrape before was counted");

		// The subscriber goes: the gauge drops back, and a client leaving is no slow reader.
		assert.equal(scraped.v(SUBSCRIBERS), open.size, `${SUBSCRIBERS} counts the open stream`);
		const gone = await unwatch(sse);
		assert.equal(gone.v(CUT), before.v(CUT), "a client that leaves is not counted as cut");
	});

	it("queued messages: queue_depth while they wait; a cancelled one and an aborted run counted by outcome", async () => {
		const key = "s-queue";
		const sse = await watch(key);
		const { from, before } = await baseline(gw.port, sse);
		// A long run (400 tokens, 10 ms apart: ~4 s), and two messages behind it.
		const long = await submit(gw.port, key, "/stream 400 10");
		await sse.waitFor((f) => f.data?.type === "token" && f.data.runId === long, 10_000, "the long run to stream");
		const second = await submit(gw.port, key, "/instant");
		const third = await submit(gw.port, key, "/instant");
		const waiting = await scrape(gw.port);
		assert.equal(waiting.v(QUEUE) - before.v(QUEUE), 2, "two messages wait behind the running one");

		// One is cancelled while it waits: counted as cancelled, the queue shrinks.
		const cancelled = await request(gw.port, "DELETE", runPath(key, second));
		assert.equal(cancelled.status, 200, cancelled.text);
		assert.deepEqual(cancelled.json, { ok: true, runId: second, status: "cancelled" });
		const afterCancel = await scrapeUntil(gw.port, (s) => s.v(runs("cancelled")) === before.v(runs("cancelled")) + 1, "runs{cancelled} +1", SETTLE_MS);
		assert.equal(afterCancel.v(QUEUE) - before.v(QUEUE), 1, "one message still waits");

		// The long run is aborted; the third then runs.
		const aborted = await request(gw.port, "POST", `/sessions/${key}/abort`);
		assert.equal(aborted.status, 200, aborted.text);
		assert.equal(aborted.json.ok, true);
		assert.equal((await runEndEvent(sse, long)).status, "aborted");
		assert.equal((await runEndEvent(sse, third)).status, "succeeded");
		await settled(
			gw.port,
			before,
			() =>
				merge(
					httpDelta("/sessions/:key/messages", "POST", 202, 3),
					httpDelta("/sessions/:key/runs/:runId", "DELETE", 200),
					httpDelta("/sessions/:key/abort", "POST", 200),
					{
						[runs("aborted")]: 1,
						[runs("cancelled")]: 1,
						[runs("succeeded")]: 1,
						// A run that never started is not timed.
						[runDurations("aborted")]: 1,
						[runDurations("succeeded")]: 1,
						[callbacks("prompt")]: 2,
						[callbacks("abort")]: 1,
					},
					eventDeltas([sse], [from]),
				),
			{ strict: true, what: "queue, cancel, abort" },
		);
		await unwatch(sse);
	});

	it("a reader that stops reading is cut: slow_readers_cut +1, sse_subscribers back where it was", async () => {
		const before = await scrape(gw.port);
		assert.equal(before.v(SUBSCRIBERS), open.size, "no stream of an earlier test is left");
		const slow = await rawSse(gw.port, "/sessions/big/events");
		open.add(slow);
		slow.socket.pause();
		const subscribed = await scrape(gw.port);
		assert.equal(subscribed.v(SUBSCRIBERS) - before.v(SUBSCRIBERS), 1, "the reader is subscribed");

		const r = await request(gw.port, "POST", "/sessions/big/messages", { body: { text: "go" }, timeoutMs: 30_000 });
		assert.equal(r.status, 200, r.text);
		assert.equal(r.json.response, "done");
		slow.socket.resume();
		await slow.waitForData((d) => d.endsWith("\r\n0\r\n\r\n") || slow.isClosed, 20_000).catch((e) => {
			throw new Error(`the slow reader was not disconnected: ${e.message}`);
		});
		assert.ok(!slow.data.includes('"type":"message_complete"'), "the slow reader was cut before the end of the run");
		const got = (slow.data.match(/"type":"token"/g) ?? []).length;
		if (process.env.METRICS_DEBUG) console.log(`slow reader got ${got} of ${BIG_TOKENS} tokens`);
		assert.ok(got < BIG_TOKENS - BUFFER_EVENTS, `the slow reader got ${got} of ${BIG_TOKENS} tokens`);
		slow.destroy();
		open.delete(slow);

		await settled(
			gw.port,
			before,
			() =>
				merge(
					httpDelta("/sessions/:key/events", "GET", 200),
					httpDelta("/sessions/:key/messages", "POST", 200),
					{
						[CUT]: 1,
						[SESSIONS]: 1,
						[CREATED]: 1,
						[callbacks("createSession")]: 1,
						[callbacks("prompt")]: 1,
						[runs("succeeded")]: 1,
						[runDurations("succeeded")]: 1,
						[events("run_start")]: 1,
						[events("run_end")]: 1,
						[events("token")]: BIG_TOKENS,
						[events("message_complete")]: 1,
					},
				),
			// No reader saw every event here; the ones named above are enough.
			{ strict: true, ignore: [/^pi_gateway_events_total/], what: "slow reader cut" },
		);
		// (SUBSCRIBERS is not in the expected deltas: strict means it is back to where it was.)
	});

	it("approvals on a real pi session (faux model): approved, denied, timed out, aborted; tokens and cost as message_complete carried them", async () => {
		const key = "appr";
		const sse = await watch(key);
		const { from, before } = await baseline(gw.port, sse);
		const outcomes = [];
		for (const decision of ["approve", "deny", "timeout", "abort"]) {
			const runId = await submit(gw.port, key, `/bash echo ${decision}-out`);
			const [req] = await approvalRequests(sse, runId);
			if (decision === "approve") await decideOk(gw.port, key, req.approvalId, { approved: true });
			if (decision === "deny") await decideOk(gw.port, key, req.approvalId, { approved: false });
			if (decision === "abort") {
				const r = await request(gw.port, "POST", `/sessions/${key}/abort`);
				assert.equal(r.status, 200, r.text);
				assert.equal(r.json.ok, true);
			}
			const resolved = await resolvedEvent(sse, req.approvalId, APPROVAL_TIMEOUT_MS + SOON_MS);
			const end = await runEndEvent(sse, runId);
			outcomes.push([resolved.approved, resolved.by, end.status]);
		}
		assert.deepEqual(outcomes, [
			[true, "client", "succeeded"],
			[false, "client", "succeeded"],
			[false, "timeout", "succeeded"],
			[false, "abort", "aborted"],
		]);
		const scraped = await settled(
			gw.port,
			before,
			() => {
				const usage = usageOfStreams([sse], [from]);
				return merge(
					httpDelta("/sessions/:key/messages", "POST", 202, 4),
					httpDelta("/sessions/:key/approvals/:approvalId", "POST", 200, 2),
					httpDelta("/sessions/:key/abort", "POST", 200),
					{
						[approvals("approved")]: 1,
						[approvals("denied")]: 1,
						[approvals("timeout")]: 1,
						[approvals("aborted")]: 1,
						[runs("succeeded")]: 3,
						[runs("aborted")]: 1,
						[runDurations("succeeded")]: 3,
						[runDurations("aborted")]: 1,
						[callbacks("prompt")]: 4,
						[callbacks("abort")]: 1,
						[tokens("input")]: usage.tokens.input,
						[tokens("output")]: usage.tokens.output,
						[tokens("cache_read")]: usage.tokens.cache_read,
						[tokens("cache_write")]: usage.tokens.cache_write,
						[COST]: usage.cost,
					},
					eventDeltas([sse], [from]),
				);
			},
			{ strict: true, what: "approvals" },
		);
		const usage = usageOfStreams([sse], [from]);
		assert.ok(usage.messages >= 7, `two assistant messages per decided run (the tool call, the answer), one or two for the aborted one: ${usage.messages}`);
		assert.ok(usage.tokens.input > 0 && usage.tokens.output > 0, `the faux model reports usage: ${JSON.stringify(usage)}`);
		assert.equal(scraped.v(events("approval_request")) - before.v(events("approval_request")), 4);
		assert.equal(scraped.v(events("approval_resolved")) - before.v(events("approval_resolved")), 4);
		await unwatch(sse);
	});

	it("a failed run: runs{failed} +1, timed, with its error event; the POST counted as 500", async () => {
		const sse = await watch("s-msg");
		const { from, before } = await baseline(gw.port, sse);
		const r = await request(gw.port, "POST", "/sessions/s-msg/messages", { body: { text: "/error scripted failure" } });
		assert.equal(r.status, 500, r.text);
		assert.equal(r.json.ok, false);
		assert.equal((await runEndEvent(sse, r.json.runId)).status, "failed");
		const scraped = await settled(
			gw.port,
			before,
			() =>
				merge(
					httpDelta("/sessions/:key/messages", "POST", 500),
					{ [runs("failed")]: 1, [runDurations("failed")]: 1, [callbacks("prompt")]: 1 },
					eventDeltas([sse], [from]),
				),
			{ strict: true, what: "a failed run" },
		);
		assert.equal(scraped.v(events("error")) - before.v(events("error")), 1, "the error event");
		await unwatch(sse);
	});

	it("tokens and cost of real AgentSession runs (faux model) are exactly what their message_complete events carried", async () => {
		const key = "usage";
		const sse = await watch(key);
		const { from, before } = await baseline(gw.port, sse);
		const echo = await say(gw.port, key, "/echo count these tokens");
		const read = await say(gw.port, key, "what does the file say?"); // thinking, a read tool call, then the answer
		assert.equal(echo.response, "You said: count these tokens");
		assert.match(read.response, /^hello\.txt says: /);
		await runEndEvent(sse, read.runId);
		await settled(
			gw.port,
			before,
			() => {
				const usage = usageOfStreams([sse], [from]);
				return merge(
					httpDelta("/sessions/:key/messages", "POST", 200, 2),
					{
						[runs("succeeded")]: 2,
						[runDurations("succeeded")]: 2,
						[callbacks("prompt")]: 2,
						[tokens("input")]: usage.tokens.input,
						[tokens("output")]: usage.tokens.output,
						[tokens("cache_read")]: usage.tokens.cache_read,
						[tokens("cache_write")]: usage.tokens.cache_write,
						[COST]: usage.cost,
					},
					eventDeltas([sse], [from]),
				);
			},
			{ strict: true, what: "token usage" },
		);
		const usage = usageOfStreams([sse], [from]);
		assert.equal(usage.messages, 3, "one answer, then a tool call and its answer");
		assert.ok(usage.tokens.input > 0 && usage.tokens.output > 0, `usage: ${JSON.stringify(usage)}`);
		await unwatch(sse);
	});

	it("404s and 400s are counted under their route template, method and status", async () => {
		const before = await scrape(gw.port);
		assert.equal((await request(gw.port, "GET", "/sessions/nope-404")).status, 404);
		assert.equal((await request(gw.port, "GET", "/no/such/route")).status, 404);
		assert.equal((await request(gw.port, "POST", "/sessions/s-msg/messages", { body: { text: 5 } })).status, 400);
		assert.equal((await request(gw.port, "POST", "/sessions/s-msg/messages", { body: "{not json" })).status, 400);
		await settled(
			gw.port,
			before,
			() =>
				merge(
					httpDelta("/sessions/:key", "GET", 404),
					httpDelta("other", "GET", 404),
					httpDelta("/sessions/:key/messages", "POST", 400, 2),
					// GET of a key not in memory asks JS whether it is stored (sessionExists).
					{ [callbacks("op:exists")]: 1 },
				),
			{ strict: true, what: "404 and 400" },
		);
	});

	it("at session.maxSessions a new key evicts an idle session: evicted +1, created +1, the gauge stays at the cap", async () => {
		const list = await request(gw.port, "GET", "/sessions");
		assert.equal(list.status, 200);
		let n = list.json.sessions.length;
		assert.ok(n < CAP, `${n} sessions before filling up to ${CAP}`);
		for (let i = 0; n < CAP; i++, n++) await say(gw.port, `s-fill-${i}`, "/instant");
		const before = await scrape(gw.port);
		assert.equal(before.v(SESSIONS), CAP);
		await say(gw.port, "s-one-too-many", "/instant");
		await settled(
			gw.port,
			before,
			() =>
				merge(httpDelta("/sessions/:key/messages", "POST", 200), {
					[EVICTED]: 1,
					[CREATED]: 1,
					[callbacks("createSession")]: 1,
					[callbacks("release")]: 1,
					[callbacks("prompt")]: 1,
					[runs("succeeded")]: 1,
					[runDurations("succeeded")]: 1,
					[events("run_start")]: 1,
					[events("run_end")]: 1,
				}),
			{ strict: true, ignore: [/^pi_gateway_events_total/], what: "eviction at maxSessions" },
		);
		assert.equal((await scrape(gw.port)).v(SESSIONS), CAP, "one in, one out");
	});

	it("promtool check metrics passes on that gateway's output, which has every family", async () => {
		const r = await getMetrics(gw.port);
		assert.equal(r.status, 200);
		assert.equal(r.headers["content-type"], CLASSIC_TYPE);
		promtoolCheck(r.text);
		// (The check is live: promtool refuses what is not the text format, and the test says so.)
		assert.throws(() => promtoolCheck("pi_gateway_broken{le= 1\n"), /promtool check metrics exited [1-9]/);

		const s = new Scrape(r.text);
		for (const [name, type] of Object.entries(FAMILIES)) {
			assert.equal(s.types.get(name), type, `# TYPE ${name} ${type}`);
			assert.ok(s.help.get(name)?.length > 0, `# HELP ${name}`);
		}
		for (const { name } of s.series.values()) {
			assert.ok(name.startsWith("pi_gateway_"), `${name} is a pi_gateway_ metric`);
		}
		// The work above is all in it.
		for (const series of [runs("succeeded"), runs("failed"), runs("aborted"), runs("cancelled"), approvals("aborted"), approvals("approved"), approvals("denied"), approvals("timeout"), CUT, EVICTED, tokens("input"), tokens("output")]) {
			assert.ok(s.v(series) >= 1, `${series} = ${s.v(series)}`);
		}
		for (const series of [
			'pi_gateway_http_requests_total{route="/sessions/:key",method="GET",status="404"}',
			'pi_gateway_http_requests_total{route="/sessions/:key/messages",method="POST",status="400"}',
			'pi_gateway_http_requests_total{route="/sessions/:key/abort",method="POST",status="200"}',
		]) {
			assert.ok(s.v(series) >= 1, series);
		}
		// A histogram's +Inf bucket is its count.
		for (const [key, { name, labels }] of s.series) {
			if (!name.endsWith("_count")) continue;
			const base = name.slice(0, -"_count".length);
			const inf = [...s.series].find(
				([, o]) =>
					o.name === `${base}_bucket` &&
					o.labels.le === "+Inf" &&
					Object.entries(labels).every(([l, v]) => o.labels[l] === v) &&
					Object.keys(o.labels).length === Object.keys(labels).length + 1,
			);
			assert.ok(inf, `${key} has a +Inf bucket`);
			assert.equal(s.samples.get(inf[0]), s.samples.get(key), `${key} = its +Inf bucket`);
		}

		// The OpenMetrics form carries the same series.
		const om = await getMetrics(gw.port, { headers: { accept: OPENMETRICS_ACCEPT } });
		assert.equal(om.headers["content-type"], OPENMETRICS_TYPE);
		assert.ok(om.text.endsWith("# EOF\n"));
		const omSeries = parseMetrics(om.text).samples;
		const classicNow = await scrape(gw.port);
		assert.deepEqual([...omSeries.keys()].sort(), [...classicNow.samples.keys()].sort(), "the same series in both forms");
	});
});

describe("idle eviction", { timeout: 20_000 }, () => {
	it("an idle session swept away: evicted +1, sessions back to the primary alone", async (t) => {
		const gw = await startGateway({ t, config: { session: { idleMinutes: 0.005, sweepIntervalMs: 50 } } });
		const before = await scrape(gw.port);
		assert.deepEqual([before.v(SESSIONS), before.v(CREATED), before.v(EVICTED)], [1, 1, 0]);
		await say(gw.port, "idle-1", "/instant");
		const after = await scrapeUntil(gw.port, (s) => s.v(EVICTED) === 1, `${EVICTED} to reach 1`, SOON_MS);
		assert.equal(after.v(SESSIONS), 1, "only the primary is left (it is never evicted)");
		assert.equal(after.v(CREATED), 2);
		assert.equal(after.v(runs("succeeded")), 1);
		assert.equal(gw.rt.getSession("idle-1"), undefined);
		assertDeltas(
			before,
			after,
			merge(httpDelta("/sessions/:key/messages", "POST", 200), {
				[SESSIONS]: 0,
				[CREATED]: 1,
				[EVICTED]: 1,
				[callbacks("createSession")]: 1,
				[callbacks("prompt")]: 1,
				[callbacks("release")]: 1,
				[runs("succeeded")]: 1,
				[runDurations("succeeded")]: 1,
				[events("run_start")]: 1,
				[events("run_end")]: 1,
			}),
			{ strict: true, ignore: [/^pi_gateway_events_total/], what: "idle eviction" },
		);
	});
});

describe("auth", { timeout: 20_000 }, () => {
	const TOKEN = "metrics-test-token";
	const auth = { authorization: `Bearer ${TOKEN}` };

	it("with bearerToken: 401 without the token (GET and HEAD), 200 with it; POST is 405; all counted", async (t) => {
		const gw = await startGateway({ t, config: { bearerToken: TOKEN } });
		for (const headers of [{}, { authorization: "Bearer wrong" }]) {
			const r = await getMetrics(gw.port, { headers });
			assert.equal(r.status, 401, JSON.stringify(headers));
			assert.deepEqual(JSON.parse(r.text), { error: "Unauthorized" });
		}
		assert.equal((await getMetrics(gw.port, { method: "HEAD" })).status, 401);
		const ok = await getMetrics(gw.port, { headers: auth });
		assert.equal(ok.status, 200);
		assert.equal(ok.headers["content-type"], CLASSIC_TYPE);
		const head = await getMetrics(gw.port, { method: "HEAD", headers: auth });
		assert.equal(head.status, 200);
		assert.equal(head.text, "");
		const post = await getMetrics(gw.port, { method: "POST", headers: auth });
		assert.equal(post.status, 405);
		assert.equal(post.headers.allow, "GET, HEAD");
		const om = await getMetrics(gw.port, { headers: { ...auth, accept: OPENMETRICS_ACCEPT } });
		assert.equal(om.headers["content-type"], OPENMETRICS_TYPE);
		assert.ok(om.text.endsWith("# EOF\n"));

		const s = await scrape(gw.port, auth);
		const count = (method, status) => s.v(`pi_gateway_http_requests_total{route="/metrics",method="${method}",status="${status}"}`);
		assert.deepEqual(
			{ get401: count("GET", 401), head401: count("HEAD", 401), get200: count("GET", 200), head200: count("HEAD", 200), post405: count("POST", 405) },
			{ get401: 2, head401: 1, get200: 2, head200: 1, post405: 1 },
		);
	});

	it("with metrics.public: /metrics answers without the token; every other route still needs it", async (t) => {
		const gw = await startGateway({ t, config: { bearerToken: TOKEN, metrics: { public: true } } });
		const r = await getMetrics(gw.port);
		assert.equal(r.status, 200);
		assert.equal(r.headers["content-type"], CLASSIC_TYPE);
		promtoolCheck(r.text);
		assert.equal((await getMetrics(gw.port, { method: "HEAD" })).status, 200);
		assert.equal((await getMetrics(gw.port, { headers: { accept: OPENMETRICS_ACCEPT } })).headers["content-type"], OPENMETRICS_TYPE);
		assert.equal((await getMetrics(gw.port, { headers: auth })).status, 200, "the token does no harm");
		assert.equal((await getMetrics(gw.port, { method: "POST", headers: auth })).status, 405);

		for (const [method, path, body] of [
			["GET", "/sessions"],
			["GET", "/ready"],
			["GET", "/models"],
			["GET", "/sessions/main"],
			["POST", "/sessions/main/messages", { text: "/instant" }],
		]) {
			const denied = await request(gw.port, method, path, { body });
			assert.equal(denied.status, 401, `${method} ${path} without the token`);
		}
		assert.equal((await request(gw.port, "GET", "/sessions", { headers: auth })).status, 200);
		assert.equal(gw.prompts(), 0, "nothing ran");
	});
});

describe("config", () => {
	it("a bad metrics config is a constructor error naming the field", () => {
		const make = (patch) =>
			new GatewayRuntime({
				config: baseConfig(patch),
				primarySessionKey: "main",
				primarySession: createScriptedSession("main"),
				createSession: async (key) => createScriptedSession(key),
			});
		for (const [patch, message] of [
			[{ metrics: { public: "yes" } }, /^Invalid config\.metrics\.public: /],
			[{ metrics: { public: 1 } }, /^Invalid config\.metrics\.public: /],
			[{ metrics: { nope: 1 } }, /^Invalid config\.metrics\.nope: /],
			[{ metrics: { public: true, nope: 1 } }, /config\.metrics\.nope/],
			[{ metrics: "public" }, /^Invalid config\.metrics: /],
			[{ metrics: [] }, /^Invalid config\.metrics: /],
		]) {
			assert.throws(() => make(patch), (e) => e instanceof Error && message.test(e.message), JSON.stringify(patch));
		}
		for (const patch of [{ metrics: {} }, { metrics: { public: false } }, { metrics: { public: true } }, { metrics: null }]) {
			assert.doesNotThrow(() => make(patch), JSON.stringify(patch));
		}
	});
});
