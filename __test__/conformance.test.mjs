// Conformance with the seed: ONE script of HTTP requests runs against the seed gateway
// (TypeScript, spawned with bench/seed/spawn-seed.mjs) and against pi-gateway, both with the
// scripted sessions of __test__/support/sessions.mjs, the same scenario and the same options.
// Every step must give the same status, content-type and JSON — except the steps listed in
// EXCEPTIONS below, where the SPEC fixes the seed on purpose: for those the test asserts the
// seed's value AND pi-gateway's value, each exactly.
//
// Normalized before comparing (they differ by nature): sessionId values, lastActiveAt and
// createdAt times, the text of scripted stream tokens (they carry their emit time), and the
// order of GET /sessions (sorted by key).
//
// Runs (SPEC §10) are added beside the seed's answers: pi-gateway's result of every accepted
// message also carries a `runId` (a UUIDv7, repeated in the x-run-id header), which the seed
// has not. It is checked apart (present exactly on accepted messages, unique, equal to the
// header; never in the seed) and left out of the comparison.
//
// Run: node --test __test__/conformance.test.mjs

import assert from "node:assert/strict";
import { test } from "node:test";
import { seedAvailable, spawnSeed } from "../bench/seed/spawn-seed.mjs";
import { startGateway } from "./support/gateway.mjs";
import { request } from "./support/http.mjs";
import { openSse } from "./support/sse.mjs";
import { waitUntil } from "./support/wait.mjs";
import { UUID_V7 } from "./support/runs.mjs";
import { EMPTY_USAGE } from "./support/sessions.mjs";

const TOKEN = "conformance-token";
const SECRET = "conformance-secret";
const MAX_QUEUE = 1;

// The same configuration for both.
const SEED_ARGS = [
	"--port", "0",
	"--bind", "127.0.0.1",
	"--token", TOKEN,
	"--webhook",
	"--webhook-path", "/webhook",
	"--webhook-secret", SECRET,
	"--max-queue", String(MAX_QUEUE),
	"--idle-minutes", "30",
	"--scenario", "instant",
];
const GATEWAY_CONFIG = {
	bind: "127.0.0.1",
	bearerToken: TOKEN,
	session: { idleMinutes: 30, maxQueuePerSession: MAX_QUEUE },
	webhook: { enabled: true, basePath: "/webhook", secret: SECRET },
};

const JSON_TYPE = "application/json; charset=utf-8";
const BOUNDARY = "conformance-boundary";
const MULTIPART_BODY = `--${BOUNDARY}\r\ncontent-disposition: form-data; name="text"\r\n\r\nhi\r\n--${BOUNDARY}--\r\n`;
const STREAM_TEXT = /^(t\d+@\d+\.\d{3};)*$/;

/** The message JSON.parse gives for `text` on this Node (the seed runs on the same binary). */
function parseError(text) {
	try {
		JSON.parse(text);
	} catch (error) {
		return error.message;
	}
	throw new Error(`${text} parses`);
}

const snapshotOf = (key, messageCount, extra = {}) => ({
	sessionKey: key,
	sessionId: "<sessionId>",
	messageCount,
	queueDepth: 0,
	processing: false,
	lastActiveAt: "<time>",
	createdAt: "<time>",
	...extra,
});

/**
 * Where pi-gateway deliberately differs from the seed: step → the seed's value, pi-gateway's
 * value, and the SPEC's reason. Values are {status, contentType, body} after normalization.
 */
const EXCEPTIONS = {
	"HEAD /health": {
		seed: { status: 404, contentType: JSON_TYPE, body: "" },
		gateway: { status: 200, contentType: JSON_TYPE, body: "" },
		reason: "SPEC §8: `HEAD /health` → 404 in the seed; 200, no body",
	},
	"POST /health": {
		seed: { status: 404, contentType: JSON_TYPE, body: { error: "Not found" } },
		gateway: { status: 405, contentType: JSON_TYPE, body: { error: "Method not allowed" } },
		reason: "SPEC §4: a known path with another method → 405 (the seed only knew 405 under /sessions/:key)",
	},
	"GET on the webhook path": {
		seed: { status: 404, contentType: JSON_TYPE, body: { error: "Not found" } },
		gateway: { status: 405, contentType: JSON_TYPE, body: { error: "Method not allowed" } },
		reason: "SPEC §4: a known path with another method → 405",
	},
	"invalid JSON body": {
		seed: { status: 500, contentType: JSON_TYPE, body: { error: parseError('{"text":') } },
		gateway: { status: 400, contentType: JSON_TYPE, body: { error: "Invalid JSON body" } },
		reason: "SPEC §8: invalid JSON → 500 in the seed; 400 Invalid JSON body",
	},
	"JSON body that is not an object": {
		// The seed reads [1].text → undefined → "Missing text".
		seed: { status: 400, contentType: JSON_TYPE, body: { error: "Missing text" } },
		gateway: { status: 400, contentType: JSON_TYPE, body: { error: "Invalid JSON body" } },
		reason: "SPEC §8: a JSON body that is not an object → 400 Invalid JSON body",
	},
	"JSON null body": {
		// The seed reads null.text → TypeError → 500.
		seed: { status: 500, contentType: JSON_TYPE, body: { error: "Cannot read properties of null (reading 'text')" } },
		gateway: { status: 400, contentType: JSON_TYPE, body: { error: "Invalid JSON body" } },
		reason: "SPEC §8: a JSON body that is not an object → 400 Invalid JSON body",
	},
	"malformed percent-encoding in the key": {
		seed: { status: 500, contentType: JSON_TYPE, body: { error: "URI malformed" } },
		gateway: { status: 400, contentType: JSON_TYPE, body: { error: "Invalid session key" } },
		reason: "SPEC §8: malformed percent-encoding in :key → 500 in the seed; 400 Invalid session key",
	},
	"a model error": {
		seed: { status: 200, contentType: JSON_TYPE, body: { ok: true, response: "", sessionKey: "beta" } },
		gateway: { status: 500, contentType: JSON_TYPE, body: { ok: false, response: "", error: "kaput", sessionKey: "beta" } },
		reason: "SPEC §8: a model error (pi resolves prompt()) is ok:true in the seed; ok:false with the reason",
	},
	"queue full": {
		seed: { status: 500, contentType: JSON_TYPE, body: { ok: false, response: "", error: `Queue full (${MAX_QUEUE} pending).`, sessionKey: "q" } },
		gateway: { status: 429, contentType: JSON_TYPE, body: { ok: false, response: "", error: `Queue full (${MAX_QUEUE} pending).`, sessionKey: "q" } },
		reason: "SPEC §8: queue full answered as 500 in the seed; 429 with the same GatewayMessageResult body",
	},
	"the aborted run's result": {
		seed: { status: 200, contentType: JSON_TYPE, body: { ok: true, response: "<stream text>", sessionKey: "q" } },
		gateway: { status: 500, contentType: JSON_TYPE, body: { ok: false, response: "<stream text>", error: "Request was aborted", sessionKey: "q" } },
		reason: "SPEC §8: an aborted run is ok:true with partial text in the seed; ok:false with the reason",
	},
	"webhook prefix look-alike /webhooks-x": {
		seed: { status: 200, contentType: JSON_TYPE, body: { ok: true, response: "ok", sessionKey: "webhook:s-x:default" } },
		gateway: { status: 404, contentType: JSON_TYPE, body: { error: "Not found" } },
		reason: 'SPEC §8: webhook prefix "/webhook" also matches "/webhooks-x" in the seed; path-segment match',
	},
	"abort an unknown session": {
		seed: { status: 200, contentType: JSON_TYPE, body: { ok: false } },
		gateway: { status: 404, contentType: JSON_TYPE, body: { error: "Session not found: ghost" } },
		reason: "SPEC §4: POST /sessions/:key/abort, unknown key → 404",
	},
	"reset an unknown session": {
		seed: { status: 200, contentType: JSON_TYPE, body: { ok: true } },
		gateway: { status: 404, contentType: JSON_TYPE, body: { error: "Session not found: ghost" } },
		reason: "SPEC §4: POST /sessions/:key/reset, unknown key → 404",
	},
	"a webhook naming its session": {
		seed: { status: 200, contentType: JSON_TYPE, body: { ok: true, response: "ok", sessionKey: "wh" } },
		gateway: {
			status: 400,
			contentType: JSON_TYPE,
			body: { error: "Invalid sessionKey: webhook bodies may not name a session (set webhook.allowRequestSessionKey)" },
		},
		reason: "SPEC section 16: a webhook body sessionKey → 400 unless webhook.allowRequestSessionKey (the seed let it name any session)",
	},
	"a text/plain body holding JSON (an HTML form's enctype)": {
		seed: { status: 200, contentType: JSON_TYPE, body: { ok: true, response: "ok", sessionKey: "form" } },
		gateway: { status: 415, contentType: JSON_TYPE, body: { error: "Unsupported Content-Type text/plain: send application/json" } },
		reason: "SPEC section 16: a content type an HTML form can send (text/plain) → 415 (the seed read any body as JSON)",
	},
	"a multipart/form-data body": {
		seed: { status: 500, contentType: JSON_TYPE, body: { error: parseError(MULTIPART_BODY) } },
		gateway: { status: 415, contentType: JSON_TYPE, body: { error: "Unsupported Content-Type multipart/form-data: send application/json" } },
		reason: "SPEC section 16: a content type an HTML form can send (multipart/form-data) → 415",
	},
	"a urlencoded body from a browser (Sec-Fetch-*)": {
		seed: { status: 200, contentType: JSON_TYPE, body: { ok: true, response: "ok", sessionKey: "form" } },
		gateway: {
			status: 415,
			contentType: JSON_TYPE,
			body: { error: "Unsupported Content-Type application/x-www-form-urlencoded: send application/json" },
		},
		reason: "SPEC section 16: urlencoded from a browser (Origin or Sec-Fetch-*) → 415; curl -d keeps working",
	},
	"GET on messages": {
		seed: { status: 405, contentType: JSON_TYPE, body: { error: "Method not allowed" } },
		gateway: {
			status: 200,
			contentType: JSON_TYPE,
			body: {
				sessionKey: "alpha",
				format: "ui",
				hasMore: false,
				messages: [
					{ id: "m0", role: "user", parts: [{ type: "text", text: "hi" }] },
					{
						id: "m1",
						role: "assistant",
						// The scripted session reports no usage: zeros, summed.
						metadata: {
							model: { provider: "scripted", id: "scripted-1" },
							stopReason: "stop",
							usage: EMPTY_USAGE,
						},
						parts: [{ type: "step-start" }, { type: "text", text: "ok", state: "done" }],
					},
				],
			},
		},
		reason: "SPEC §12: GET /sessions/:key/messages is the history (the seed had no such route)",
	},
	"DELETE a session": {
		seed: { status: 405, contentType: JSON_TYPE, body: { error: "Method not allowed" } },
		gateway: { status: 200, contentType: JSON_TYPE, body: { ok: true, purged: false, sessionKey: "beta" } },
		reason: "SPEC §12: DELETE /sessions/:key deletes the session (the seed had no such route)",
	},
	"GET an unknown session": {
		seed: { status: 200, contentType: JSON_TYPE, body: { session: snapshotOf("ghost", 0) } },
		gateway: { status: 404, contentType: JSON_TYPE, body: { error: "Session not found: ghost" } },
		reason: "SPEC §4: GET /sessions/:key, unknown key → 404 (the seed created it)",
	},
};

/** Replaces values that differ by nature with placeholders; sorts session lists by key. */
function normalize(value) {
	if (Array.isArray(value)) return value.map(normalize);
	if (value && typeof value === "object") {
		const out = {};
		for (const [k, v] of Object.entries(value)) {
			if (k === "sessionId" && typeof v === "string" && v) out[k] = "<sessionId>";
			else if ((k === "lastActiveAt" || k === "createdAt") && typeof v === "number") out[k] = "<time>";
			else if ((k === "response" || k === "text" || k === "delta") && typeof v === "string" && v && STREAM_TEXT.test(v)) out[k] = "<stream text>";
			else out[k] = normalize(v);
		}
		if (Array.isArray(out.sessions)) out.sessions = [...out.sessions].sort((a, b) => (a.sessionKey < b.sessionKey ? -1 : 1));
		return out;
	}
	return value;
}

/** A step's answer; the run id (body `runId`, header x-run-id) is kept apart from the body. */
function record(res) {
	let body = res.json !== undefined ? res.json : res.text;
	let runId;
	if (body && typeof body === "object" && !Array.isArray(body) && "runId" in body) {
		({ runId, ...body } = body);
	}
	return {
		status: res.status,
		contentType: res.headers["content-type"],
		body: normalize(body),
		runId,
		xRunId: res.headers["x-run-id"],
	};
}

/** True when `body` (normalized) is the GatewayMessageResult of an accepted message. */
function acceptedResult(status, body) {
	return Boolean(body && typeof body === "object" && typeof body.ok === "boolean" && "response" in body && status !== 429);
}

/** The script: returns [{step, status, contentType, body}] in order. */
async function runScript(port, openapi = true) {
	const steps = [];
	const auth = { authorization: `Bearer ${TOKEN}` };
	const hook = { "x-pi-webhook-secret": SECRET };
	const call = async (step, method, path, opts = {}) => {
		const res = await request(port, method, path, { openapi, ...opts });
		steps.push({ step, ...record(res) });
		return res;
	};
	const sessions = async () => (await request(port, "GET", "/sessions", { headers: auth, openapi })).json.sessions;
	const session = async (key) => (await sessions()).find((s) => s.sessionKey === key);

	await call("GET /health", "GET", "/health");
	await call("HEAD /health", "HEAD", "/health", { headers: auth });
	await call("POST /health", "POST", "/health", { headers: auth });
	await call("GET /ready", "GET", "/ready", { headers: auth });
	await call("GET /ready without a token", "GET", "/ready");
	await call("GET /sessions without a token", "GET", "/sessions");
	await call("GET /sessions with a wrong token", "GET", "/sessions", { headers: { authorization: `Bearer ${TOKEN}x` } });
	await call("GET /sessions, the primary only", "GET", "/sessions", { headers: auth });
	await call("a message to the primary session", "POST", "/sessions/main/messages", { headers: auth, body: { text: "hello" } });
	await call("a message creating a session", "POST", "/sessions/alpha/messages", { headers: auth, body: { text: "hi" } });
	await call("a message without a token", "POST", "/sessions/alpha/messages", { body: { text: "hi" } });
	await call("blank text", "POST", "/sessions/alpha/messages", { headers: auth, body: { text: "   " } });
	await call("no text field", "POST", "/sessions/alpha/messages", { headers: auth, body: { note: "x" } });
	await call("invalid JSON body", "POST", "/sessions/alpha/messages", { headers: auth, body: '{"text":' });
	await call("JSON body that is not an object", "POST", "/sessions/alpha/messages", { headers: auth, body: "[1]" });
	await call("JSON null body", "POST", "/sessions/alpha/messages", { headers: auth, body: "null" });
	await call("malformed percent-encoding in the key", "POST", "/sessions/%E0%A4%A/messages", { headers: auth, body: { text: "hi" } });
	await call("GET a session", "GET", "/sessions/alpha", { headers: auth });
	await call("a message to a percent-encoded key", "POST", "/sessions/a%2Fb/messages", { headers: auth, body: { text: "slash" } });
	await call("GET /sessions with three sessions", "GET", "/sessions", { headers: auth });
	await call("abort an idle session", "POST", "/sessions/alpha/abort", { headers: auth });
	await call("an unknown action", "GET", "/sessions/alpha/bogus", { headers: auth });
	await call("an unknown top-level path", "GET", "/nope", { headers: auth });
	await call("an unknown path without a token", "GET", "/nope");
	await call("too many segments", "GET", "/sessions/alpha/events/x", { headers: auth });
	await call("GET on messages", "GET", "/sessions/alpha/messages", { headers: auth });
	await call("GET on reset", "GET", "/sessions/alpha/reset", { headers: auth });
	await call("POST on events", "POST", "/sessions/alpha/events", { headers: auth });
	await call("a prompt that throws", "POST", "/sessions/beta/messages", { headers: auth, body: { text: "/throw boom" } });
	await call("a model error", "POST", "/sessions/beta/messages", { headers: auth, body: { text: "/error kaput" } });
	await call("a tool run", "POST", "/sessions/beta/messages", { headers: auth, body: { text: "/tool" } });
	await call("a thinking run", "POST", "/sessions/beta/messages", { headers: auth, body: { text: "/thinking" } });

	// Webhooks.
	await call("a webhook with a sender", "POST", "/webhook", { headers: hook, body: { text: "hi", sender: "bob" } });
	await call("a webhook on a route", "POST", "/webhook/ci/build", { headers: hook, body: { text: "hi" } });
	await call("a webhook with a wrong secret", "POST", "/webhook", { headers: { "x-pi-webhook-secret": "nope" }, body: { text: "hi" } });
	await call("a webhook without a secret", "POST", "/webhook", { body: { text: "hi" } });
	await call("a webhook with blank text", "POST", "/webhook", { headers: hook, body: { text: "" } });
	await call("GET on the webhook path", "GET", "/webhook", { headers: auth });

	// A full queue: a run that waits quietly until aborted, one queued message, one too many.
	const first = request(port, "POST", "/sessions/q/messages", { headers: auth, body: { text: "/stream 2 60000" }, openapi });
	await waitUntil(async () => (await session("q"))?.processing, { message: "the q run to start" });
	const second = request(port, "POST", "/sessions/q/messages", { headers: auth, body: { text: "queued" }, openapi });
	await waitUntil(async () => (await session("q"))?.queueDepth === 1, { message: "a queued message on q" });
	await call("queue full", "POST", "/sessions/q/messages", { headers: auth, body: { text: "one too many" } });
	await call("GET the busy session", "GET", "/sessions/q", { headers: auth });
	await call("abort a running session", "POST", "/sessions/q/abort", { headers: auth });
	steps.push({ step: "the aborted run's result", ...record(await first) });
	steps.push({ step: "the queued message's result", ...record(await second) });

	// The event stream: headers and the hello frame.
	for (const [step, headers] of [
		["events without a token", {}],
		["events", auth],
	]) {
		if (!headers.authorization) {
			await call(step, "GET", "/sessions/alpha/events", { headers });
			continue;
		}
		const sse = await openSse(port, "/sessions/alpha/events", { headers });
		try {
			const hello = await sse.waitFor((f) => f.data !== undefined);
			steps.push({
				step,
				status: sse.status,
				contentType: sse.headers["content-type"],
				cacheControl: sse.headers["cache-control"],
				body: normalize(hello.data),
			});
		} finally {
			sse.close();
		}
	}

	await call("reset the primary session", "POST", "/sessions/main/reset", { headers: auth });
	await call("reset another session", "POST", "/sessions/alpha/reset", { headers: auth });
	await call("GET /sessions after the resets", "GET", "/sessions", { headers: auth });
	await call("GET /ready at the end", "GET", "/ready", { headers: auth });

	// Steps after which the two diverge by design (each can create a session in the seed).
	await call("webhook prefix look-alike /webhooks-x", "POST", "/webhooks-x", { headers: { ...hook, ...auth }, body: { text: "hi" } });
	await call("abort an unknown session", "POST", "/sessions/ghost/abort", { headers: auth });
	await call("reset an unknown session", "POST", "/sessions/ghost/reset", { headers: auth });
	await call("GET an unknown session", "GET", "/sessions/ghost", { headers: auth });
	await call("DELETE a session", "DELETE", "/sessions/beta", { headers: auth });
	await call("a webhook naming its session", "POST", "/webhook/x", { headers: hook, body: { text: "hi", sessionKey: "wh" } });
	await call("a text/plain body holding JSON (an HTML form's enctype)", "POST", "/sessions/form/messages", {
		headers: { ...auth, "content-type": "text/plain" },
		body: '{"text":"hi"}',
	});
	await call("a multipart/form-data body", "POST", "/sessions/form/messages", {
		headers: { ...auth, "content-type": `multipart/form-data; boundary=${BOUNDARY}` },
		body: MULTIPART_BODY,
	});
	await call("a urlencoded body from a browser (Sec-Fetch-*)", "POST", "/sessions/form/messages", {
		headers: { ...auth, "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin", "sec-fetch-mode": "navigate" },
		body: '{"text":"hi"}',
	});
	// curl -d: urlencoded without Origin or Sec-Fetch-* is still read as JSON, by both.
	await call("a urlencoded body without browser headers (curl -d)", "POST", "/sessions/curl/messages", {
		headers: { ...auth, "content-type": "application/x-www-form-urlencoded" },
		body: '{"text":"hi"}',
	});
	return steps;
}

test("one script of requests gets the seed's answers from pi-gateway, except the SPEC's deliberate fixes", { timeout: 60000 }, async (t) => {
	if (!seedAvailable()) {
		t.skip("the seed (../shared/seed/gateway-runtime.ts) is absent: nothing to compare against");
		return;
	}
	const seed = await spawnSeed(SEED_ARGS, { timeoutMs: 20000, quiet: true });
	t.after(() => seed.stop());
	const gw = await startGateway({ config: GATEWAY_CONFIG, scenario: { kind: "instant" } });
	t.after(() => gw.stop());

	const seedSteps = await runScript(seed.port, false);
	const gwSteps = await runScript(gw.port);
	assert.deepEqual(
		gwSteps.map((s) => s.step),
		seedSteps.map((s) => s.step),
	);

	const used = new Set();
	const runIds = new Set();
	for (let i = 0; i < seedSteps.length; i++) {
		const { step, runId: seedRunId, xRunId: seedXRunId, ...fromSeed } = seedSteps[i];
		const { step: _, runId, xRunId, ...fromGateway } = gwSteps[i];
		// The seed knows no runs.
		assert.equal(seedRunId, undefined, `seed, step "${step}": a runId`);
		assert.equal(seedXRunId, undefined, `seed, step "${step}": an x-run-id header`);
		// pi-gateway: a run id exactly on the answers that accepted a message.
		if (acceptedResult(fromGateway.status, fromGateway.body)) {
			assert.match(String(runId), UUID_V7, `pi-gateway, step "${step}": no UUIDv7 runId`);
			assert.equal(xRunId, runId, `pi-gateway, step "${step}": x-run-id vs runId`);
			assert.ok(!runIds.has(runId), `pi-gateway, step "${step}": runId ${runId} reused`);
			runIds.add(runId);
		} else {
			assert.equal(runId, undefined, `pi-gateway, step "${step}": a runId on an answer that accepted nothing`);
			assert.equal(xRunId, undefined, `pi-gateway, step "${step}": an x-run-id on an answer that accepted nothing`);
		}
		const exception = EXCEPTIONS[step];
		if (exception) {
			used.add(step);
			assert.deepEqual(fromSeed, exception.seed, `seed, step "${step}": the table's seed value is wrong`);
			assert.deepEqual(fromGateway, exception.gateway, `pi-gateway, step "${step}" (${exception.reason})`);
		} else {
			assert.deepEqual(fromGateway, fromSeed, `step "${step}": pi-gateway differs from the seed`);
		}
	}
	assert.deepEqual([...used].sort(), Object.keys(EXCEPTIONS).sort(), "every exception is exercised by the script");
});

test("the normalization hides only what differs by nature: ids, times, stream token text, list order", () => {
	assert.deepEqual(normalize({ ok: true, response: "t0@1732423456789.123;t1@1732423456790.001;" }), { ok: true, response: "<stream text>" });
	assert.deepEqual(normalize({ ok: true, response: "ok" }), { ok: true, response: "ok" });
	assert.deepEqual(
		normalize({ sessions: [{ sessionKey: "b", sessionId: "x", lastActiveAt: 1, createdAt: 2 }, { sessionKey: "a", sessionId: "", lastActiveAt: 1, createdAt: 2 }] }),
		{ sessions: [{ sessionKey: "a", sessionId: "", lastActiveAt: "<time>", createdAt: "<time>" }, { sessionKey: "b", sessionId: "<sessionId>", lastActiveAt: "<time>", createdAt: "<time>" }] },
	);
});
