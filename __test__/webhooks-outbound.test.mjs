// Outbound webhooks and per-request callbacks (issue 16, SPEC §14, README "Outbound webhooks and
// callbacks") against the real addon, with real receivers: node:http / node:https servers on
// 127.0.0.1 in this process, every delivery verified with the real `standardwebhooks` package.
//
// Covered: the run events (succeeded, failed, aborted, cancelled) and their body and headers;
// the `events` filter; retries with one webhook-id (fail, fail, succeed) and the delivery
// counters on GET /metrics; a receiver that never answers, given up after the schedule (attempts,
// counter, log line without the URL's query); a redirect, not followed; `maxPending` (dropped,
// counted, logged) and stop() cancelling what is still pending after its grace; per-request
// callbacks (signed with callbackSecret, only for their run) and their refusals at request time
// (allowedHosts, private and loopback addresses, no callbackSecret, malformed `callback`) with
// nothing queued; `approval.requested` from a real pi AgentSession on the faux model, to a
// target and to the run's callback; HTTPS to a receiver whose self-signed certificate is trusted
// through SSL_CERT_FILE, as a target and as a callback (and not to one whose certificate is
// not); the README's receiver snippet run as pasted.
//
// Receivers and gateways are stopped in t.after; every wait is bounded. Retry schedules are tens
// of milliseconds and attempt timeouts a few hundred, so the file runs in a few seconds.
//
// Run: node --test __test__/webhooks-outbound.test.mjs

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Webhook } from "standardwebhooks";
import { bashMessage, markCommand, startApprovalGateway, UUID } from "./support/approval-util.mjs";
import { startGateway } from "./support/gateway.mjs";
import { UUID_V7 } from "./support/runs.mjs";
import {
	HANG,
	makeLocalhostCert,
	newSecret,
	parse,
	startReceiver,
	verifyDelivery,
} from "./support/webhook-receiver.mjs";
import { SOON_MS, sleep, waitFor, within } from "./support/wait.mjs";

// HTTPS receivers: the gateway's HTTPS client reads the root certificates when a GatewayRuntime
// with webhooks is constructed (rustls-native-certs, where SSL_CERT_FILE replaces the system's
// store). So the self-signed certificate of the HTTPS test is made, and SSL_CERT_FILE pointed at
// it, here at load time, before any gateway of this file exists (each test file is a process of
// its own, so no other file sees it). Every other receiver here is plain HTTP, which the roots do
// not concern. When openssl is missing, `TLS.error` says so and the HTTPS test fails with it.
const TLS = makeLocalhostCert();
if (!TLS.error) {
	process.env.SSL_CERT_FILE = TLS.certPath;
	process.once("exit", () => TLS.remove());
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const enc = encodeURIComponent;

/** Short retry schedules and attempt timeouts: the whole file runs in seconds. */
const FAST = { retryScheduleMs: [30], timeoutMs: 2000 };

// ------------------------------------------------------------------------------------------------
// HTTP to the gateway (plain node:http: these answers are checked here, field by field)

/** One request on a fresh connection; `body` (an object) is sent as JSON. Resolves {status, headers, text, json}. */
function call(port, method, path, body, { timeoutMs = SOON_MS } = {}) {
	return new Promise((resolve, reject) => {
		const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
		const headers = payload === undefined ? {} : { "content-type": "application/json" };
		const req = http.request({ host: "127.0.0.1", port, method, path, headers, agent: false }, (res) => {
			const chunks = [];
			res.on("data", (c) => chunks.push(c));
			res.on("error", reject);
			res.on("end", () => {
				const text = Buffer.concat(chunks).toString("utf8");
				let json;
				try {
					json = text ? JSON.parse(text) : undefined;
				} catch {
					json = undefined;
				}
				resolve({ status: res.statusCode, headers: res.headers, text, json });
			});
		});
		req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer to ${method} ${path} within ${timeoutMs} ms`)));
		req.on("error", reject);
		if (payload !== undefined) req.write(payload);
		req.end();
	});
}

const messagesPath = (key) => `/sessions/${enc(key)}/messages`;
const runsPath = (key, runId = "") => `/sessions/${enc(key)}/runs${runId ? `/${enc(runId)}` : ""}`;

/** POST /messages and wait for the answer; asserts 200 and a UUIDv7 runId; returns the JSON. */
async function send(port, key, body) {
	const r = await call(port, "POST", messagesPath(key), body);
	assert.equal(r.status, 200, `POST ${messagesPath(key)} ${JSON.stringify(body)}: ${r.status} ${r.text}`);
	assert.match(String(r.json?.runId), UUID_V7, r.text);
	assert.equal(r.headers["x-run-id"], r.json.runId);
	return r.json;
}

/** POST /messages with `wait: false`; asserts 202; returns {runId, status}. */
async function submit(port, key, body) {
	const r = await call(port, "POST", messagesPath(key), { ...body, wait: false });
	assert.equal(r.status, 202, `POST ${messagesPath(key)} (wait:false) ${JSON.stringify(body)}: ${r.status} ${r.text}`);
	assert.match(String(r.json?.runId), UUID_V7, r.text);
	return r.json;
}

async function getRun(port, key, runId) {
	const r = await call(port, "GET", runsPath(key, runId));
	assert.equal(r.status, 200, `GET ${runsPath(key, runId)}: ${r.status} ${r.text}`);
	return r.json.run;
}

async function listRuns(port, key) {
	const r = await call(port, "GET", runsPath(key));
	assert.equal(r.status, 200, `GET ${runsPath(key)}: ${r.status} ${r.text}`);
	return r.json.runs;
}

async function getQueue(port, key) {
	const r = await call(port, "GET", `/sessions/${enc(key)}/queue`);
	assert.equal(r.status, 200, `GET queue of ${key}: ${r.status} ${r.text}`);
	return r.json;
}

/** Polls the run until `status`. */
const runReaches = (port, key, runId, status) =>
	waitFor(async () => (await getRun(port, key, runId)).status === status, `run ${runId} to be ${status}`);

/** A run of the scripted session that lasts until it is aborted (100 000 tokens, one per 5 ms). */
const LONG = "/stream 100000 5";

// ------------------------------------------------------------------------------------------------
// GET /metrics: pi_gateway_webhook_deliveries_total by outcome, read off the Prometheus text

const OUTCOMES = ["delivered", "retrying", "given_up", "dropped", "refused"];

async function deliveryCounts(port) {
	const r = await call(port, "GET", "/metrics");
	assert.equal(r.status, 200, `GET /metrics: ${r.status} ${r.text.slice(0, 200)}`);
	const counts = {};
	for (const line of r.text.split("\n")) {
		const m = /^pi_gateway_webhook_deliveries_total\{outcome="([a-z_]+)"\} (\S+)$/.exec(line);
		if (m) counts[m[1]] = Number(m[2]);
	}
	for (const outcome of OUTCOMES) assert.equal(typeof counts[outcome], "number", `${outcome} is exposed: ${JSON.stringify(counts)}`);
	return counts;
}

/** Polls /metrics until the delivery counters equal `expected` (outcomes left out: 0); asserts it. */
async function countsReach(port, expected, what) {
	const want = Object.fromEntries(OUTCOMES.map((o) => [o, expected[o] ?? 0]));
	let last;
	try {
		await waitFor(async () => {
			last = await deliveryCounts(port);
			return OUTCOMES.every((o) => last[o] === want[o]);
		}, what);
	} catch {
		assert.deepEqual(last, want, `${what}: pi_gateway_webhook_deliveries_total`);
	}
	return last;
}

// ------------------------------------------------------------------------------------------------
// Log lines: they reach the `log` option through a queue into JS, a moment after the counters move

/** Waits until `n` lines of `gw.logs` match `pattern`; a moment later, asserts exactly `n`; returns them. */
async function logLines(gw, pattern, n, what) {
	const matching = () => gw.logs.filter((line) => pattern.test(line));
	try {
		await waitFor(() => matching().length >= n, what);
	} catch {
		assert.fail(`${what}: expected ${n} log line(s) matching ${pattern}, got ${JSON.stringify(gw.logs)}`);
	}
	await sleep(100);
	assert.equal(matching().length, n, `${what}: exactly ${n} line(s) matching ${pattern} in ${JSON.stringify(gw.logs)}`);
	return matching();
}

// ------------------------------------------------------------------------------------------------

/** A receiver stopped when the test ends. */
async function receiver(t, options) {
	const rx = await startReceiver(options);
	t.after(() => rx.close());
	return rx;
}

/** Waits for the delivery of `type` about run `runId` at `rx`; returns it. */
const deliveryOf = (rx, type, runId, what = `${type} of run ${runId}`) =>
	rx.waitFor((list) => list.find((d) => parse(d).type === type && parse(d).data?.runId === runId), what);

describe("outbound webhooks: configured receivers", { timeout: 30_000 }, () => {
	it("run.succeeded, run.failed, run.aborted and run.cancelled reach a receiver, signed; the run record is the data; `events` filters", async (t) => {
		const all = await receiver(t);
		const onlyFailed = await receiver(t);
		const secret = newSecret();
		const failedSecret = newSecret();
		const gw = await startGateway({
			t,
			config: {
				webhooks: {
					...FAST,
					outbound: [
						{ url: all.url("/hooks/all?token=abc"), secret },
						{ url: onlyFailed.url("/only-failed"), secret: failedSecret, events: ["run.failed"] },
					],
				},
			},
		});
		const key = "k";

		// run.succeeded: the body is {type, timestamp, data}, data the run record.
		const ok = await send(gw.port, key, { text: "hello" });
		assert.equal(ok.ok, true, JSON.stringify(ok));
		const succeeded = await deliveryOf(all, "run.succeeded", ok.runId);
		assert.equal(succeeded.path, "/hooks/all?token=abc", "the configured URL, query included");
		const body = verifyDelivery(succeeded, secret);
		assert.equal(body.type, "run.succeeded");
		const record = await getRun(gw.port, key, ok.runId);
		assert.deepEqual(body.data, record, "data is the run record, as GET …/runs/:runId answers it");
		assert.equal(body.data.runId, ok.runId);
		assert.equal(body.data.sessionKey, key);
		assert.equal(body.data.status, "succeeded");
		assert.deepEqual(body.data.result, ok, "data.result is the HTTP answer");
		assert.ok(Date.parse(body.timestamp) >= body.data.endedAt - 1, "the event is stamped at (or after) the run's end");

		// run.failed (the waiting POST answers 500 with the failed result)
		const failedAnswer = await call(gw.port, "POST", messagesPath(key), { text: "/error boom-4711" });
		assert.equal(failedAnswer.status, 500, failedAnswer.text);
		const failed = failedAnswer.json;
		assert.equal(failed.ok, false);
		assert.match(String(failed.runId), UUID_V7);
		const failedBody = verifyDelivery(await deliveryOf(all, "run.failed", failed.runId), secret);
		assert.equal(failedBody.data.status, "failed");
		assert.match(failedBody.data.result.error, /boom-4711/);
		assert.deepEqual(failedBody.data.result, failed, "data.result is the HTTP answer");
		assert.deepEqual(failedBody.data, await getRun(gw.port, key, failed.runId));

		// run.aborted: POST …/abort on a long run.
		const long = await submit(gw.port, key, { text: LONG });
		await runReaches(gw.port, key, long.runId, "running");
		const abort = await call(gw.port, "POST", `/sessions/${key}/abort`);
		assert.deepEqual([abort.status, abort.json], [200, { ok: true }], abort.text);
		const abortedBody = verifyDelivery(await deliveryOf(all, "run.aborted", long.runId), secret);
		assert.equal(abortedBody.data.status, "aborted");
		assert.deepEqual(abortedBody.data, await getRun(gw.port, key, long.runId));

		// run.cancelled: DELETE of a queued run (behind a long one, then aborted by DELETE too).
		const running = await submit(gw.port, key, { text: LONG });
		await runReaches(gw.port, key, running.runId, "running");
		const queued = await submit(gw.port, key, { text: "behind" });
		assert.equal(queued.status, "queued");
		const del = await call(gw.port, "DELETE", runsPath(key, queued.runId));
		assert.deepEqual(del.json, { ok: true, runId: queued.runId, status: "cancelled" }, del.text);
		const cancelledBody = verifyDelivery(await deliveryOf(all, "run.cancelled", queued.runId), secret);
		assert.equal(cancelledBody.data.status, "cancelled");
		assert.equal(cancelledBody.data.startedAt, undefined, "it never started");
		assert.deepEqual(cancelledBody.data, await getRun(gw.port, key, queued.runId));
		const delRunning = await call(gw.port, "DELETE", runsPath(key, running.runId));
		assert.equal(delRunning.json?.status, "aborted", delRunning.text);
		verifyDelivery(await deliveryOf(all, "run.aborted", running.runId), secret);

		// Every delivery made is counted (5 to `all`, 1 to `onlyFailed`), and no more follow.
		await countsReach(gw.port, { delivered: 6 }, "six deliveries");
		await sleep(300);
		await countsReach(gw.port, { delivered: 6 }, "still six deliveries");
		assert.deepEqual(
			all.deliveries.map((d) => [parse(d).type, parse(d).data.runId]),
			[
				["run.succeeded", ok.runId],
				["run.failed", failed.runId],
				["run.aborted", long.runId],
				["run.cancelled", queued.runId],
				["run.aborted", running.runId],
			],
			"each run's end reached the unfiltered receiver once, in order",
		);
		const ids = all.deliveries.map((d) => d.headers["webhook-id"]);
		assert.equal(new Set(ids).size, ids.length, `one webhook-id per delivery: ${ids}`);

		// The filtered receiver got run.failed and nothing else.
		assert.equal(onlyFailed.deliveries.length, 1, `only run.failed: ${onlyFailed.deliveries.map((d) => parse(d).type)}`);
		assert.equal(onlyFailed.deliveries[0].path, "/only-failed");
		const onlyBody = verifyDelivery(onlyFailed.deliveries[0], failedSecret);
		assert.equal(onlyBody.type, "run.failed");
		assert.deepEqual(onlyBody.data, failedBody.data);
		assert.throws(() => new Webhook(secret).verify(onlyFailed.deliveries[0].body, onlyFailed.deliveries[0].headers), /No matching signature/, "each target has its own secret");
		assert.notEqual(onlyFailed.deliveries[0].headers["webhook-id"], all.deliveries[1].headers["webhook-id"], "one webhook-id per receiver");
	});

	it("a receiver that fails twice (500) then succeeds gets three deliveries with one webhook-id; retrying +2, delivered +1", async (t) => {
		const rx = await receiver(t, { respond: (_, index) => (index < 2 ? 500 : 204) });
		const secret = newSecret();
		const schedule = [40, 40, 40, 40];
		const gw = await startGateway({
			t,
			config: { webhooks: { retryScheduleMs: schedule, timeoutMs: 2000, outbound: [{ url: rx.url("/flaky"), secret, events: ["run.succeeded"] }] } },
		});
		await countsReach(gw.port, {}, "all delivery counters at 0 on a fresh gateway");

		const ok = await send(gw.port, "flaky", { text: "hello" });
		await rx.waitFor((list) => list.length >= 3, "three attempts");
		await countsReach(gw.port, { retrying: 2, delivered: 1 }, "two failed attempts and a delivery");
		// The schedule has two retries left; none is used.
		await sleep(schedule.reduce((a, b) => a + b) + 200);
		assert.equal(rx.deliveries.length, 3, "no attempt after the delivery");
		await countsReach(gw.port, { retrying: 2, delivered: 1 }, "the counters stay");

		const [first] = rx.deliveries;
		for (const [i, d] of rx.deliveries.entries()) {
			const body = verifyDelivery(d, secret);
			assert.equal(body.type, "run.succeeded");
			assert.equal(body.data.runId, ok.runId);
			assert.equal(d.headers["webhook-id"], first.headers["webhook-id"], `attempt ${i + 1} has the first's webhook-id`);
			assert.equal(d.body, first.body, `attempt ${i + 1} carries the same body`);
			if (i > 0) {
				const gap = d.at - rx.deliveries[i - 1].at;
				assert.ok(gap >= schedule[i - 1] - 1, `attempt ${i + 1} came ${gap} ms after the previous one (schedule: ${schedule[i - 1]} ms)`);
			}
		}
	});

	it("a receiver that never answers is given up after the schedule: 1 + schedule attempts, then none; given_up +1; a log line", async (t) => {
		const rx = await receiver(t, { respond: () => HANG });
		const secret = newSecret();
		const schedule = [40, 40];
		const timeoutMs = 300;
		const gw = await startGateway({
			t,
			config: { webhooks: { retryScheduleMs: schedule, timeoutMs, outbound: [{ url: rx.url("/silent?token=s3cret-query"), secret, events: ["run.succeeded"] }] } },
		});
		const ok = await send(gw.port, "silent", { text: "hello" });
		assert.equal(ok.ok, true, "the run does not wait for its webhook");

		await countsReach(gw.port, { retrying: 2, given_up: 1 }, "two retries, then given up");
		assert.equal(rx.deliveries.length, schedule.length + 1, "1 + schedule length attempts");
		// Well past the schedule: nothing more.
		await sleep(timeoutMs + schedule.reduce((a, b) => a + b) + 400);
		assert.equal(rx.deliveries.length, schedule.length + 1, "no attempt after giving up");
		await countsReach(gw.port, { retrying: 2, given_up: 1 }, "the counters stay");

		const id = rx.deliveries[0].headers["webhook-id"];
		for (const [i, d] of rx.deliveries.entries()) {
			const body = verifyDelivery(d, secret);
			assert.equal(body.data.runId, ok.runId);
			assert.equal(d.headers["webhook-id"], id, `attempt ${i + 1}: one webhook-id`);
			// The gateway waits timeoutMs for an answer, then hangs up (no connection left behind),
			// and retries after the schedule's delay. (Measured from arrivals: the timeout starts
			// before a request arrives, so a loaded machine may take a little off it.)
			assert.equal(typeof d.closedAt, "number", `attempt ${i + 1}: the gateway closed the connection`);
			const held = d.closedAt - d.at;
			assert.ok(held >= timeoutMs - 100, `attempt ${i + 1} was hung up on after ${held} ms (timeoutMs ${timeoutMs})`);
			if (i > 0) {
				const gap = d.at - rx.deliveries[i - 1].at;
				assert.ok(gap >= timeoutMs + schedule[i - 1] - 100, `attempt ${i + 1} came ${gap} ms after the previous one (timeout ${timeoutMs} + ${schedule[i - 1]} ms)`);
			}
		}
		const givenUp = await logLines(gw, /given up/i, 1, "one line says it was given up");
		const [line] = givenUp;
		assert.ok(line.includes(id), `the line names the webhook-id: ${line}`);
		assert.ok(line.includes(`127.0.0.1:${rx.port}/silent`), `the line names the receiver: ${line}`);
		assert.ok(!line.includes("s3cret-query"), `the line leaves out the URL's query (it may hold a token): ${line}`);
		assert.ok(line.includes("run.succeeded"), `the line names the event: ${line}`);
		assert.match(line, /3 attempts/, line);
	});
});

describe("redirects", { timeout: 30_000 }, () => {
	it("a 3xx is a failed attempt: the redirect is not followed, the delivery is retried, then given up", async (t) => {
		const elsewhere = await receiver(t);
		const rx = await receiver(t, { respond: () => ({ status: 307, headers: { location: elsewhere.url("/moved") } }) });
		const gw = await startGateway({
			t,
			config: { webhooks: { retryScheduleMs: [20], timeoutMs: 2000, outbound: [{ url: rx.url("/old"), secret: newSecret(), events: ["run.succeeded"] }] } },
		});
		await send(gw.port, "redirect", { text: "hello" });
		await countsReach(gw.port, { retrying: 1, given_up: 1 }, "two attempts answered 307, given up");
		assert.equal(rx.deliveries.length, 2);
		await sleep(200);
		assert.equal(elsewhere.deliveries.length, 0, "the Location was not followed");
		const [line] = await logLines(gw, /given up/, 1, "the delivery given up");
		assert.match(line, /307/, `the log line says what the receiver answered: ${JSON.stringify(gw.logs)}`);
	});
});

describe("the bounded delivery queue and stop()", { timeout: 30_000 }, () => {
	it("past maxPending a delivery is dropped (counted, logged); stop() cancels what is still pending after its grace and says so", async (t) => {
		const rx = await receiver(t, { respond: () => HANG });
		const schedule = [30];
		const gw = await startGateway({
			t,
			config: {
				// stop()'s grace for deliveries is min(2 s, shutdownTimeoutMs).
				shutdownTimeoutMs: 500,
				webhooks: { maxPending: 1, retryScheduleMs: schedule, timeoutMs: 5000, outbound: [{ url: rx.url("/held"), secret: newSecret(), events: ["run.succeeded"] }] },
			},
		});
		const first = await send(gw.port, "held", { text: "one" });
		const held = await rx.waitFor((list) => list[0], "the first delivery, held open by the receiver");
		assert.equal(parse(held).data.runId, first.runId);

		// One delivery pending (in flight): the next one has no room.
		const second = await send(gw.port, "held", { text: "two" });
		await countsReach(gw.port, { dropped: 1 }, "the second delivery dropped");
		const dropped = await logLines(gw, /dropped/, 1, "the drop");
		assert.match(dropped[0], /run\.succeeded/);
		assert.match(dropped[0], /webhooks\.maxPending/);
		assert.ok(dropped[0].includes(`127.0.0.1:${rx.port}/held`), dropped[0]);
		await sleep(200);
		assert.deepEqual(rx.deliveries.map((d) => parse(d).data.runId), [first.runId], `run ${second.runId} was not delivered`);

		// stop(): the held delivery outlives the grace, so it is cancelled (its connection closed) and logged.
		const started = Date.now();
		await within(gw.stop(), SOON_MS, "stop() with a delivery in flight");
		const took = Date.now() - started;
		assert.ok(took < 4000, `stop() took ${took} ms with a 500 ms grace`);
		const stopped = await logLines(gw, /outbound webhooks stopped/, 1, "the cancellation at stop()");
		assert.match(stopped[0], /\b1 pending deliver(y|ies) cancelled/);
		await rx.waitFor((list) => typeof list[0].closedAt === "number", "the cancelled delivery's connection to close");
		await sleep(schedule[0] + 300);
		assert.equal(rx.deliveries.length, 1, "no retry after stop()");
	});
});

describe("per-request callbacks", { timeout: 30_000 }, () => {
	it("a callback in allowedHosts gets its run's end, signed with callbackSecret; other runs do not reach it", async (t) => {
		const rx = await receiver(t);
		const callbackSecret = newSecret();
		const gw = await startGateway({ t, config: { webhooks: { ...FAST, allowedHosts: ["127.0.0.1"], callbackSecret } } });
		const key = "cb";
		const url = rx.url("/cb?job=7");

		const ok = await send(gw.port, key, { text: "with a callback", callback: { url } });
		const d = await deliveryOf(rx, "run.succeeded", ok.runId);
		assert.equal(d.path, "/cb?job=7");
		assert.equal(d.headers.host, `127.0.0.1:${rx.port}`, "the Host of the callback URL");
		const body = verifyDelivery(d, callbackSecret);
		assert.equal(body.type, "run.succeeded");
		assert.deepEqual(body.data, await getRun(gw.port, key, ok.runId));
		assert.deepEqual(body.data.result, ok);

		// wait:false takes a callback too.
		const queued = await submit(gw.port, key, { text: "/error later", callback: { url } });
		const failed = verifyDelivery(await deliveryOf(rx, "run.failed", queued.runId), callbackSecret);
		assert.equal(failed.data.status, "failed");

		// Runs without a callback: nothing reaches it.
		await send(gw.port, key, { text: "no callback" });
		await send(gw.port, "other", { text: "no callback either" });
		await countsReach(gw.port, { delivered: 2 }, "two callback deliveries");
		await sleep(300);
		assert.deepEqual(
			rx.deliveries.map((x) => parse(x).data.runId),
			[ok.runId, queued.runId],
			"only the runs that named the callback",
		);
		await countsReach(gw.port, { delivered: 2 }, "still two");
	});

	it("refused with 400 at request time, nothing queued: a host not in allowedHosts, a malformed callback", async (t) => {
		const rx = await receiver(t);
		const gw = await startGateway({ t, config: { webhooks: { ...FAST, allowedHosts: ["127.0.0.1"], callbackSecret: newSecret() } } });
		const key = "refused";
		const cases = [
			// Not in allowedHosts (checked before any lookup).
			[{ url: `http://localhost:${rx.port}/cb` }, /^Invalid callback\.url: .*not in webhooks\.allowedHosts/],
			[{ url: `http://127.0.0.2:${rx.port}/cb` }, /^Invalid callback\.url: .*not in webhooks\.allowedHosts/],
			[{ url: "https://hooks.example.com/cb" }, /^Invalid callback\.url: .*not in webhooks\.allowedHosts/],
			// Malformed.
			["x", /^Invalid callback: /],
			[5, /^Invalid callback: /],
			[[rx.url("/cb")], /^Invalid callback: /],
			[{}, /^Invalid callback\.url: /],
			[{ url: 5 }, /^Invalid callback\.url: /],
			[{ url: null }, /^Invalid callback\.url: /],
			[{ url: "" }, /^Invalid callback\.url: /],
			[{ url: `ftp://127.0.0.1:${rx.port}/cb` }, /^Invalid callback\.url: .*scheme/],
			[{ url: "/relative/path" }, /^Invalid callback\.url: /],
			[{ url: `http://user:pw@127.0.0.1:${rx.port}/cb` }, /^Invalid callback\.url: .*credentials/],
			[{ url: `http://127.0.0.1:${rx.port}/${"a".repeat(2100)}` }, /^Invalid callback\.url: .*2048/],
			[{ url: rx.url("/cb"), secret: "mine" }, /^Invalid callback\.secret: /],
		];
		await assertRefusals(gw, key, cases);
		assert.equal(rx.deliveries.length, 0, "nothing reached the receiver");
	});

	it("refused with 400 with allowedHosts [\"*\"]: private and loopback addresses, by address or by name", async (t) => {
		const rx = await receiver(t);
		const gw = await startGateway({ t, config: { webhooks: { ...FAST, allowedHosts: ["*"], callbackSecret: newSecret() } } });
		const cases = [
			[{ url: "http://10.1.2.3/" }, /^Invalid callback\.url: .*10\.1\.2\.3, which is a private address/],
			[{ url: "http://169.254.169.254/latest/meta-data/" }, /^Invalid callback\.url: .*169\.254\.169\.254, which is a link-local address/],
			[{ url: `http://127.0.0.1:${rx.port}/` }, /^Invalid callback\.url: .*127\.0\.0\.1, which is a loopback address/],
			[{ url: `http://[::1]:${rx.port}/` }, /^Invalid callback\.url: .*::1, which is a loopback address/],
			[{ url: `http://[::ffff:127.0.0.1]:${rx.port}/` }, /^Invalid callback\.url: .*loopback/],
			[{ url: `http://localhost:${rx.port}/` }, /^Invalid callback\.url: .*a loopback address/],
			[{ url: `http://LOCALHOST:${rx.port}/` }, /^Invalid callback\.url: .*a loopback address/],
			[{ url: "http://0.0.0.0/" }, /^Invalid callback\.url: .*unspecified/],
			[{ url: "http://[fd00::1]/" }, /^Invalid callback\.url: .*fd00::1, which is a private/],
			[{ url: "http://[fe80::1]/" }, /^Invalid callback\.url: .*fe80::1, which is a link-local address/],
			[{ url: "http://100.64.1.1/" }, /^Invalid callback\.url: .*100\.64\.1\.1, which is a non-public address/],
			// Other spellings of 127.0.0.1 (names to the URL parser, addresses to the resolver).
			[{ url: `http://2130706433:${rx.port}/` }, /^Invalid callback\.url: .*127\.0\.0\.1, which is a loopback address/],
			[{ url: `http://0x7f.0.0.1:${rx.port}/` }, /^Invalid callback\.url: .*127\.0\.0\.1, which is a loopback address/],
			[{ url: `http://127.1:${rx.port}/` }, /^Invalid callback\.url: .*127\.0\.0\.1, which is a loopback address/],
		];
		await assertRefusals(gw, "star", cases);
		assert.equal(rx.deliveries.length, 0, "nothing reached the receiver");
	});

	it("refused with 400 without callbackSecret (webhooks with targets only, or no webhooks at all)", async (t) => {
		const rx = await receiver(t);
		const notEnabled = /^Invalid callback\.url: callbacks are not enabled on this gateway \(webhooks\.callbackSecret is not set\)$/;
		const withTargets = await startGateway({
			t,
			config: { webhooks: { ...FAST, allowedHosts: ["127.0.0.1"], outbound: [{ url: rx.url("/configured"), secret: newSecret(), events: ["run.failed"] }] } },
		});
		await assertRefusals(withTargets, "no-secret", [[{ url: rx.url("/cb") }, notEnabled]]);
		const none = await startGateway({ t });
		await assertRefusals(none, "no-webhooks", [
			[{ url: rx.url("/cb") }, notEnabled],
			[{ url: "https://hooks.example.com/cb" }, notEnabled],
		]);
		await sleep(200);
		assert.equal(rx.deliveries.length, 0, "nothing reached the receiver");
	});
});

/**
 * For each [callback, message] of `cases`, with a long run running on `key`: POST /messages with
 * that callback (waiting, and with wait:false) is answered 400 {error} matching `message`, and
 * nothing is queued or started: the queue stays empty, no run is added, the session's prompts
 * stay the same. Then the long run is cancelled and the session answers a good message.
 */
async function assertRefusals(gw, key, cases) {
	await send(gw.port, key, { text: "first" });
	const long = await submit(gw.port, key, { text: LONG });
	await runReaches(gw.port, key, long.runId, "running");
	const runsBefore = await listRuns(gw.port, key);
	const promptsBefore = gw.prompts();
	for (const [callback, message] of cases) {
		for (const extra of [{}, { wait: false }]) {
			const body = { text: "refuse me", callback, ...extra };
			const r = await call(gw.port, "POST", messagesPath(key), body);
			const what = `callback ${JSON.stringify(callback).slice(0, 120)}${extra.wait === false ? " (wait:false)" : ""}`;
			assert.equal(r.status, 400, `${what}: ${r.status} ${r.text}`);
			assert.deepEqual(Object.keys(r.json ?? {}), ["error"], `${what}: ${r.text}`);
			assert.match(r.json.error, message, what);
			assert.equal(r.headers["x-run-id"], undefined, `${what}: no run`);
			assert.equal(r.headers.location, undefined, `${what}: no run`);
		}
	}
	const queue = await getQueue(gw.port, key);
	assert.deepEqual(queue.queued, [], `nothing queued: ${JSON.stringify(queue)}`);
	assert.equal(queue.running?.runId, long.runId, "the long run is still the one running");
	assert.deepEqual(await listRuns(gw.port, key), runsBefore, "no run was added");
	assert.equal(gw.prompts(), promptsBefore, "no prompt reached the session");
	const del = await call(gw.port, "DELETE", runsPath(key, long.runId));
	assert.equal(del.json?.status, "aborted", del.text);
	const after = await send(gw.port, key, { text: "still answers" });
	assert.equal(after.ok, true, JSON.stringify(after));
	assert.equal(after.response, "ok");
}

describe("approval.requested from a real pi AgentSession (faux model)", { timeout: 60_000 }, () => {
	it("a bash call under policy ask: the receiver and the run's callback get approval.requested; decided over REST, the run ends and both hear of it", async (t) => {
		const rx = await receiver(t);
		const cb = await receiver(t);
		const secret = newSecret();
		const callbackSecret = newSecret();
		const gw = await startApprovalGateway({
			approval: { policy: { bash: "ask" } },
			config: { webhooks: { ...FAST, outbound: [{ url: rx.url("/approvals"), secret }], allowedHosts: ["127.0.0.1"], callbackSecret } },
		});
		t.after(() => within(gw.close(), SOON_MS, "the approval gateway to close"));
		const key = "appr";
		const marker = gw.marker("approved");
		const command = markCommand(marker, "approved-out");
		const { runId } = await submit(gw.port, key, { text: bashMessage(command), callback: { url: cb.url("/run-cb") } });

		const requested = await rx.waitFor((list) => list.find((d) => parse(d).type === "approval.requested"), "approval.requested");
		const body = verifyDelivery(requested, secret);
		const { data } = body;
		assert.equal(data.sessionKey, key);
		assert.equal(data.runId, runId);
		assert.equal(data.toolName, "bash");
		assert.deepEqual(data.args, { command });
		assert.match(data.approvalId, UUID);
		assert.equal(typeof data.toolCallId, "string");
		assert.equal(typeof data.expiresAt, "number");
		const listed = await call(gw.port, "GET", `/sessions/${key}/approvals`);
		assert.equal(listed.status, 200, listed.text);
		assert.deepEqual(listed.json.approvals, [data], "data is the pending approval, as GET …/approvals lists it");
		assert.equal(existsSync(marker), false, "the command waits for the decision");

		// The run's callback hears of its approval request too (its own delivery, its own signature).
		const cbRequested = await cb.waitFor((list) => list.find((d) => parse(d).type === "approval.requested"), "approval.requested at the callback");
		assert.deepEqual(verifyDelivery(cbRequested, callbackSecret).data, data);
		assert.notEqual(cbRequested.headers["webhook-id"], requested.headers["webhook-id"]);

		const decided = await call(gw.port, "POST", `/sessions/${key}/approvals/${data.approvalId}`, { approved: true });
		assert.equal(decided.status, 200, decided.text);
		const ended = verifyDelivery(await deliveryOf(rx, "run.succeeded", runId), secret);
		assert.equal(ended.data.status, "succeeded");
		assert.match(ended.data.result.response, /bash said: approved-out/);
		assert.equal(readFileSync(marker, "utf8").trim(), "ran");
		const cbEnded = verifyDelivery(await deliveryOf(cb, "run.succeeded", runId), callbackSecret);
		assert.deepEqual(cbEnded.data, ended.data);
		assert.deepEqual(
			rx.deliveries.map((d) => parse(d).type),
			["approval.requested", "run.succeeded"],
		);
		assert.deepEqual(
			cb.deliveries.map((d) => parse(d).type),
			["approval.requested", "run.succeeded"],
		);
	});
});

describe("HTTPS receivers", { timeout: 30_000 }, () => {
	it("a receiver on https://localhost with a certificate trusted through SSL_CERT_FILE gets verified deliveries (target and callback); an untrusted certificate is refused", async (t) => {
		assert.ok(!TLS.error, TLS.error);
		const rx = await receiver(t, { tls: TLS });
		// Another self-signed certificate for localhost, trusted by nobody.
		const other = makeLocalhostCert();
		assert.ok(!other.error, other.error);
		t.after(() => other.remove());
		const untrusted = await receiver(t, { tls: other });
		const secret = newSecret();
		const callbackSecret = newSecret();
		const gw = await startGateway({
			t,
			config: {
				webhooks: {
					retryScheduleMs: [20],
					timeoutMs: 3000,
					outbound: [
						{ url: rx.url("/tls"), secret, events: ["run.succeeded"] },
						{ url: untrusted.url("/tls"), secret, events: ["run.succeeded"] },
					],
					allowedHosts: ["localhost"],
					callbackSecret,
				},
			},
		});
		assert.match(rx.url("/tls"), /^https:\/\/localhost:\d+\/tls$/);
		const ok = await send(gw.port, "tls", { text: "hello" });
		const target = await deliveryOf(rx, "run.succeeded", ok.runId, "the HTTPS target's delivery");
		assert.equal(target.path, "/tls");
		assert.equal(target.headers.host, `localhost:${rx.port}`);
		assert.deepEqual(verifyDelivery(target, secret).data, await getRun(gw.port, "tls", ok.runId));

		// A callback to the same HTTPS receiver, by its exactly-listed name (checked at each send,
		// connected to the checked address, the certificate checked for the name).
		const viaCallback = await send(gw.port, "tls-cb", { text: "hello", callback: { url: rx.url("/tls-cb") } });
		const callback = await rx.waitFor((list) => list.find((d) => d.path === "/tls-cb"), "the HTTPS callback's delivery");
		assert.equal(parse(callback).data.runId, viaCallback.runId);
		assert.equal(callback.headers.host, `localhost:${rx.port}`);
		verifyDelivery(callback, callbackSecret);

		// Both runs also went to the target whose certificate nobody trusts: no request gets through,
		// two attempts each, given up. The trusted receiver: two target deliveries and the callback.
		await countsReach(gw.port, { delivered: 3, retrying: 2, given_up: 2 }, "the trusted deliveries, and the untrusted target given up twice");
		assert.equal(untrusted.deliveries.length, 0, "no request reached the untrusted receiver");
		assert.deepEqual(rx.deliveries.map((d) => d.path).sort(), ["/tls", "/tls", "/tls-cb"]);
		const lines = await logLines(gw, /given up/, 2, "the untrusted target given up, for each run");
		const [line] = lines;
		assert.ok(line?.includes(`localhost:${untrusted.port}/tls`), `a given-up line for the untrusted receiver: ${JSON.stringify(gw.logs)}`);
		assert.match(line, /certificate|UnknownIssuer|invalid peer/i, `the line says why: ${line}`);
	});
});

describe("the README's receiver snippet", { timeout: 30_000 }, () => {
	it("runs as pasted: it prints the gateway's run.succeeded and drops a repeated webhook-id", async (t) => {
		const readme = readFileSync(join(root, "README.md"), "utf8");
		const start = readme.indexOf("### Outbound webhooks and callbacks");
		assert.notEqual(start, -1, "the README has the section");
		const next = /\n#{2,3} /g;
		next.lastIndex = start + 4;
		const end = next.exec(readme)?.index;
		const section = readme.slice(start, end);
		const blocks = [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]).filter((code) => code.startsWith("// receiver.mjs"));
		assert.equal(blocks.length, 1, "one ```js block starting with // receiver.mjs");
		const dir = join(root, ".test-tmp");
		mkdirSync(dir, { recursive: true });
		const file = join(dir, "readme-receiver.mjs");
		// Written aside and renamed: another run of this file may be starting node on it meanwhile.
		const partial = `${file}.${process.pid}.tmp`;
		writeFileSync(partial, blocks[0]);
		renameSync(partial, file);

		const port = await freePort();
		const secret = newSecret();
		const child = spawn(process.execPath, [file], {
			cwd: root,
			env: { ...process.env, WEBHOOK_SECRET: secret, PORT: String(port) },
			stdio: ["ignore", "pipe", "pipe"],
		});
		let stdout = "";
		let stderr = "";
		child.stdout.setEncoding("utf8").on("data", (c) => (stdout += c));
		child.stderr.setEncoding("utf8").on("data", (c) => (stderr += c));
		const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
		t.after(async () => {
			if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
			await within(exited, SOON_MS, "the README receiver to exit");
		});
		await waitFor(async () => {
			if (child.exitCode !== null) assert.fail(`the README receiver exited (${child.exitCode}): ${stderr}`);
			return canConnect(port);
		}, "the README receiver to listen");

		const gw = await startGateway({ t, config: { webhooks: { ...FAST, outbound: [{ url: `http://127.0.0.1:${port}/`, secret }] } } });
		const ok = await send(gw.port, "readme", { text: "hello" });
		const printed = `run.succeeded readme ${ok.runId}`;
		await waitFor(() => stdout.includes(printed), `the README receiver to print ${JSON.stringify(printed)} (stdout ${JSON.stringify(stdout)}, stderr ${JSON.stringify(stderr)})`);
		await countsReach(gw.port, { delivered: 1 }, "the README receiver answered 2xx");

		// One delivery sent twice (a retry after a lost answer): printed once. Signed here, with the
		// package's own `sign`.
		const id = "msg_readme_duplicate";
		const payload = JSON.stringify({ type: "run.failed", timestamp: new Date().toISOString(), data: { sessionKey: "dup", runId: "dup-run" } });
		const now = new Date();
		const headers = {
			"content-type": "application/json",
			"webhook-id": id,
			"webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
			"webhook-signature": new Webhook(secret).sign(id, now, payload),
		};
		for (let i = 0; i < 2; i++) {
			const r = await post(port, headers, payload);
			assert.equal(r.status, 204, `delivery ${i + 1} of the repeated id`);
		}
		// A request it cannot verify: 401, not printed.
		const forged = await post(port, { ...headers, "webhook-id": "msg_forged", "webhook-signature": new Webhook(newSecret()).sign("msg_forged", now, payload) }, payload);
		assert.equal(forged.status, 401);
		await sleep(200);
		assert.deepEqual(
			stdout.split("\n").filter(Boolean),
			[printed, "run.failed dup dup-run"],
			`stdout: the gateway's event once, the repeated one once, the forged one not (stderr ${JSON.stringify(stderr)})`,
		);
		assert.equal(stderr, "");
	});
});

/** A TCP port free on 127.0.0.1 just now. */
function freePort() {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.once("error", reject);
		server.listen(0, "127.0.0.1", () => {
			const { port } = server.address();
			server.close(() => resolve(port));
		});
	});
}

function canConnect(port) {
	return new Promise((resolve) => {
		const socket = net.connect({ host: "127.0.0.1", port });
		socket.once("connect", () => {
			socket.destroy();
			resolve(true);
		});
		socket.once("error", () => resolve(false));
	});
}

/** A POST of `payload` with `headers` to 127.0.0.1:`port`; resolves {status}. */
function post(port, headers, payload) {
	return new Promise((resolve, reject) => {
		const req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/", headers, agent: false }, (res) => {
			res.resume();
			res.on("end", () => resolve({ status: res.statusCode }));
		});
		req.setTimeout(SOON_MS, () => req.destroy(new Error("no answer from the README receiver")));
		req.on("error", reject);
		req.end(payload);
	});
}
