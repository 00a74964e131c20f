// Every HTTP route of SPEC §4 and the webhooks of §7, table-driven: each route × bearer auth
// off/on × good and bad input. Every case asserts the status, the JSON body and its
// content-type; every rejected request (4xx) also asserts that nothing changed — the session
// list (with queue depths and activity times) before and after, over the API and over
// GET /sessions, and the number of prompts the scripted agent sessions received.
//
// Run: node --test __test__/http-routes.test.mjs

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { GatewayRuntime } from "../index.js";
import { createScriptedFactory, createScriptedSession } from "./support/sessions.mjs";
import { startGateway } from "./support/gateway.mjs";
import { JSON_TYPE, parseResponses, rawConnect, request, sortedSessions } from "./support/http.mjs";
import { openSse } from "./support/sse.mjs";
import { waitUntil } from "./support/wait.mjs";
import { assertNoRunId, bodyWithRunId } from "./support/runs.mjs";

const TOKEN = "route-token-1";
const SECRET = "hook-secret-1";
const MAX_BODY = 4096;
const NOT_FOUND = { error: "Not found" };
const NOT_ALLOWED = { error: "Method not allowed" };
const UNAUTHORIZED = { error: "Unauthorized" };
const BAD_SECRET = { error: "Invalid webhook secret" };
const MISSING_TEXT = { error: "Missing text" };
const INVALID_JSON = { error: "Invalid JSON body" };
const INVALID_KEY = { error: "Invalid session key" };

const NO_BODY_KEY = { error: "Invalid sessionKey: webhook bodies may not name a session (set webhook.allowRequestSessionKey)" };

/** For the `json` of a case: the body is {error} and the error starts with `prefix` (the rest is the gateway's wording). */
function errorStartingWith(prefix) {
	return (_gw, res) => {
		assert.deepEqual(Object.keys(res.json ?? {}), ["error"], `body: ${res.text}`);
		assert.ok(res.json.error.startsWith(prefix), `error ${JSON.stringify(res.json.error)} should start with ${JSON.stringify(prefix)}`);
		return res.json;
	};
}

/** A JSON body of exactly `size` bytes: {"text":"xxx…"}. */
function bodyOfSize(size) {
	const overhead = JSON.stringify({ text: "" }).length;
	return JSON.stringify({ text: "x".repeat(size - overhead) });
}

const secret = { "x-pi-webhook-secret": SECRET };

// cred: "bearer" — needs the bearer token when auth is on (a missing and a wrong token are
//        generated as extra 401 cases); "none" — public; "webhook" — never sends a bearer token.
// json: the expected body, or (gw) => expected body, or a predicate in `check`.
// allow: the methods the Allow header must list (405 cases).
// check(gw, before, res): extra assertions for cases that change state.
// runId: the request is accepted as a run (SPEC §10): the body carries a UUIDv7 `runId`, repeated
//        in the x-run-id header (checked apart; `json` is the rest of the body). Every other
//        answer carries neither.
const CASES = [
	// --- health and readiness ---
	{ name: "GET /health answers ok and ready without auth", method: "GET", path: "/health", cred: "none", status: 200, json: { ok: true, ready: true } },
	{ name: "HEAD /health answers 200 with no body and no auth", method: "HEAD", path: "/health", cred: "none", status: 200 },
	{
		name: "GET /ready answers ok, ready and the session count",
		method: "GET",
		path: "/ready",
		cred: "bearer",
		status: 200,
		json: (gw) => ({ ok: true, ready: true, sessions: gw.rt.listSessions().length }),
	},
	{ name: "HEAD /ready answers 200 with no body", method: "HEAD", path: "/ready", cred: "bearer", status: 200 },
	{ name: "POST /health is 405 with Allow: GET, HEAD", method: "POST", path: "/health", cred: "bearer", status: 405, json: NOT_ALLOWED, allow: ["GET", "HEAD"] },
	{ name: "DELETE /ready is 405 with Allow: GET, HEAD", method: "DELETE", path: "/ready", cred: "bearer", status: 405, json: NOT_ALLOWED, allow: ["GET", "HEAD"] },

	// --- the session list and snapshots ---
	{
		name: "GET /sessions lists every session snapshot",
		method: "GET",
		path: "/sessions",
		cred: "bearer",
		status: 200,
		json: (gw) => ({ sessions: sortedSessions(gw.rt.listSessions()) }),
		sortSessions: true,
	},
	{ name: "HEAD /sessions answers 200 with no body", method: "HEAD", path: "/sessions", cred: "bearer", status: 200 },
	{ name: "POST /sessions is 405 with Allow: GET, HEAD", method: "POST", path: "/sessions", cred: "bearer", status: 405, json: NOT_ALLOWED, allow: ["GET", "HEAD"] },
	{
		name: "GET /sessions/main answers the primary session's snapshot",
		method: "GET",
		path: "/sessions/main",
		cred: "bearer",
		status: 200,
		json: (gw) => ({ session: gw.rt.getSession("main") }),
	},
	{
		name: "GET /sessions/alpha answers a created session's snapshot",
		method: "GET",
		path: "/sessions/alpha",
		cred: "bearer",
		status: 200,
		json: (gw) => ({ session: gw.rt.getSession("alpha") }),
	},
	{ name: "HEAD /sessions/main answers 200 with no body", method: "HEAD", path: "/sessions/main", cred: "bearer", status: 200 },
	{ name: "GET /sessions/ghost is 404 and does not create the session", method: "GET", path: "/sessions/ghost", cred: "bearer", status: 404, json: { error: "Session not found: ghost" } },
	{ name: "HEAD /sessions/ghost is 404 with no body", method: "HEAD", path: "/sessions/ghost", cred: "bearer", status: 404 },
	{ name: "GET /sessions/a%2Fb decodes the key once (404 names a/b)", method: "GET", path: "/sessions/a%2Fb", cred: "bearer", status: 404, json: { error: "Session not found: a/b" } },
	{ name: "GET /sessions/%252F decodes the key only once (404 names %2F)", method: "GET", path: "/sessions/%252F", cred: "bearer", status: 404, json: { error: "Session not found: %2F" } },
	{ name: "GET /sessions/%zz (malformed percent-encoding) is 400 Invalid session key", method: "GET", path: "/sessions/%zz", cred: "bearer", status: 400, json: INVALID_KEY },
	{ name: "GET /sessions/%C3 (percent-encoded invalid UTF-8) is 400 Invalid session key", method: "GET", path: "/sessions/%C3", cred: "bearer", status: 400, json: INVALID_KEY },
	{ name: "PUT /sessions/main is 405 with Allow: GET, HEAD", method: "PUT", path: "/sessions/main", cred: "bearer", status: 405, json: NOT_ALLOWED, allow: ["GET", "HEAD"] },
	{ name: "PUT /sessions/alpha is 405 and leaves the session alone", method: "PUT", path: "/sessions/alpha", cred: "bearer", status: 405, json: NOT_ALLOWED, allow: ["GET", "HEAD", "PATCH", "DELETE"] },

	// --- other shapes under /sessions and elsewhere ---
	{ name: "GET / is 404 Not found", method: "GET", path: "/", cred: "bearer", status: 404, json: NOT_FOUND },
	{ name: "GET /nope is 404 Not found", method: "GET", path: "/nope", cred: "bearer", status: 404, json: NOT_FOUND },
	{ name: "GET /sessionsx is 404 Not found", method: "GET", path: "/sessionsx", cred: "bearer", status: 404, json: NOT_FOUND },
	{ name: "GET /sessions/ (empty key) is 404 Not found", method: "GET", path: "/sessions/", cred: "bearer", status: 404, json: NOT_FOUND },
	{ name: "GET /sessions//events (empty key) is 404 Not found", method: "GET", path: "/sessions//events", cred: "bearer", status: 404, json: NOT_FOUND },
	{ name: "GET /sessions/main/bogus is 404 Not found", method: "GET", path: "/sessions/main/bogus", cred: "bearer", status: 404, json: NOT_FOUND },
	{ name: "GET /sessions/main/events/extra is 404 Not found", method: "GET", path: "/sessions/main/events/extra", cred: "bearer", status: 404, json: NOT_FOUND },
	{ name: "POST /sessions/main/messages/extra is 404 Not found and prompts nothing", method: "POST", path: "/sessions/main/messages/extra", cred: "bearer", body: { text: "hi" }, status: 404, json: NOT_FOUND },

	// --- POST /sessions/:key/messages ---
	{
		name: "POST /sessions/main/messages runs the text and answers the result",
		method: "POST",
		path: "/sessions/main/messages",
		cred: "bearer",
		body: { text: "hello" },
		status: 200,
		json: { ok: true, response: "ok", sessionKey: "main" },
		runId: true,
		check(gw, before) {
			assert.equal(gw.prompts(), before.prompts + 1);
			assert.equal(gw.rt.getSession("main").messageCount, before.byKey.main.messageCount + 2);
		},
	},
	{
		name: "POST /sessions/fresh/messages creates the session and runs the text",
		method: "POST",
		path: "/sessions/fresh/messages",
		cred: "bearer",
		body: { text: "hello" },
		status: 200,
		json: { ok: true, response: "ok", sessionKey: "fresh" },
		runId: true,
		check(gw, before) {
			assert.equal(before.byKey.fresh, undefined);
			assert.equal(gw.rt.getSession("fresh").messageCount, 2);
			assert.equal(gw.prompts(), before.prompts + 1);
		},
	},
	{ name: "POST /sessions/main/messages with {} is 400 Missing text", method: "POST", path: "/sessions/main/messages", cred: "bearer", body: {}, status: 400, json: MISSING_TEXT },
	{ name: "POST /sessions/main/messages with blank text is 400 Missing text", method: "POST", path: "/sessions/main/messages", cred: "bearer", body: { text: "  \n\t " }, status: 400, json: MISSING_TEXT },
	{ name: "POST /sessions/main/messages with a non-string text is 400 Missing text", method: "POST", path: "/sessions/main/messages", cred: "bearer", body: { text: 42 }, status: 400, json: MISSING_TEXT },
	{ name: "POST /sessions/main/messages with an empty body is 400 Missing text", method: "POST", path: "/sessions/main/messages", cred: "bearer", body: "", status: 400, json: MISSING_TEXT },
	{ name: "POST /sessions/main/messages with invalid JSON is 400 Invalid JSON body", method: "POST", path: "/sessions/main/messages", cred: "bearer", body: '{"text": "hi"', status: 400, json: INVALID_JSON },
	{ name: "POST /sessions/main/messages with the JSON array [1] is 400 Invalid JSON body", method: "POST", path: "/sessions/main/messages", cred: "bearer", body: "[1]", status: 400, json: INVALID_JSON },
	{ name: "POST /sessions/main/messages with JSON null is 400 Invalid JSON body", method: "POST", path: "/sessions/main/messages", cred: "bearer", body: "null", status: 400, json: INVALID_JSON },
	{ name: "POST /sessions/main/messages with a JSON string is 400 Invalid JSON body", method: "POST", path: "/sessions/main/messages", cred: "bearer", body: '"hi"', status: 400, json: INVALID_JSON },
	{ name: "POST /sessions/main/messages with a JSON number is 400 Invalid JSON body", method: "POST", path: "/sessions/main/messages", cred: "bearer", body: "7", status: 400, json: INVALID_JSON },
	{ name: "POST /sessions/newbie/messages with invalid JSON creates no session", method: "POST", path: "/sessions/newbie/messages", cred: "bearer", body: "{", status: 400, json: INVALID_JSON },
	{
		name: "POST /sessions/main/messages with a body of exactly limits.maxBodyBytes is accepted",
		method: "POST",
		path: "/sessions/main/messages",
		cred: "bearer",
		body: bodyOfSize(MAX_BODY),
		status: 200,
		json: { ok: true, response: "ok", sessionKey: "main" },
		runId: true,
		check: (gw, before) => assert.equal(gw.prompts(), before.prompts + 1),
	},
	{
		name: "POST /sessions/main/messages one byte past limits.maxBodyBytes is 413",
		method: "POST",
		path: "/sessions/main/messages",
		cred: "bearer",
		body: bodyOfSize(MAX_BODY + 1),
		status: 413,
		json: (_gw, res) => {
			assert.equal(typeof res.json?.error, "string", `413 body: ${res.text}`);
			return res.json;
		},
	},
	{ name: "POST /sessions/%E0%A4%A/messages (malformed key) is 400 and prompts nothing", method: "POST", path: "/sessions/%E0%A4%A/messages", cred: "bearer", body: { text: "hi" }, status: 400, json: INVALID_KEY },
	{
		name: "POST /sessions/alpha/messages whose prompt throws is 500 with ok:false and the error",
		method: "POST",
		path: "/sessions/alpha/messages",
		cred: "bearer",
		body: { text: "/throw boom" },
		status: 500,
		json: { ok: false, response: "", error: "boom", sessionKey: "alpha" },
		runId: true,
		check: (gw, before) => assert.equal(gw.prompts(), before.prompts + 1),
	},
	{
		name: "POST /sessions/alpha/messages whose model fails is 500 with ok:false and the model's error",
		method: "POST",
		path: "/sessions/alpha/messages",
		cred: "bearer",
		body: { text: "/error kaput" },
		status: 500,
		json: { ok: false, response: "", error: "kaput", sessionKey: "alpha" },
		runId: true,
		check: (gw, before) => assert.equal(gw.prompts(), before.prompts + 1),
	},
	{ name: "DELETE /sessions/main/messages is 405 with Allow: GET, HEAD, POST", method: "DELETE", path: "/sessions/main/messages", cred: "bearer", status: 405, json: NOT_ALLOWED, allow: ["GET", "HEAD", "POST"] },
	{ name: "PUT /sessions/main/messages is 405 with Allow: GET, HEAD, POST and prompts nothing", method: "PUT", path: "/sessions/main/messages", cred: "bearer", body: { text: "hi" }, status: 405, json: NOT_ALLOWED, allow: ["GET", "HEAD", "POST"] },

	// --- events (the stream itself is tested below and in sse.test.mjs) ---
	{ name: "POST /sessions/main/events is 405 with Allow: GET, HEAD", method: "POST", path: "/sessions/main/events", cred: "bearer", status: 405, json: NOT_ALLOWED, allow: ["GET", "HEAD"] },
	{ name: "GET /sessions/main/chat is 405 with Allow: POST", method: "GET", path: "/sessions/main/chat", cred: "bearer", status: 405, json: NOT_ALLOWED, allow: ["POST"] },

	// --- abort and reset ---
	{ name: "POST /sessions/main/abort while idle answers ok:false", method: "POST", path: "/sessions/main/abort", cred: "bearer", status: 200, json: { ok: false }, unchanged: true },
	{ name: "POST /sessions/ghost/abort is 404 for an unknown session", method: "POST", path: "/sessions/ghost/abort", cred: "bearer", status: 404, json: { error: "Session not found: ghost" } },
	{ name: "POST /sessions/%/abort (malformed key) is 400 Invalid session key", method: "POST", path: "/sessions/%/abort", cred: "bearer", status: 400, json: INVALID_KEY },
	{ name: "GET /sessions/main/abort is 405 with Allow: POST", method: "GET", path: "/sessions/main/abort", cred: "bearer", status: 405, json: NOT_ALLOWED, allow: ["POST"] },
	{ name: "POST /sessions/ghost/reset is 404 for an unknown session", method: "POST", path: "/sessions/ghost/reset", cred: "bearer", status: 404, json: { error: "Session not found: ghost" } },
	{ name: "GET /sessions/main/reset is 405 with Allow: POST", method: "GET", path: "/sessions/main/reset", cred: "bearer", status: 405, json: NOT_ALLOWED, allow: ["POST"] },
	{
		name: "POST /sessions/main/reset renews the primary session",
		method: "POST",
		path: "/sessions/main/reset",
		cred: "bearer",
		status: 200,
		json: { ok: true },
		check(gw, before) {
			const main = gw.rt.getSession("main");
			assert.ok(before.byKey.main.messageCount > 0);
			assert.equal(main.messageCount, 0);
			assert.notEqual(main.sessionId, before.byKey.main.sessionId);
			assert.equal(gw.prompts(), before.prompts);
		},
	},
	{
		name: "POST /sessions/fresh/reset disposes and forgets a non-primary session",
		method: "POST",
		path: "/sessions/fresh/reset",
		cred: "bearer",
		status: 200,
		json: { ok: true },
		check(gw, before) {
			assert.ok(before.byKey.fresh);
			assert.equal(gw.rt.getSession("fresh"), undefined);
			const fresh = gw.created.find((s) => s.sessionKey === "fresh");
			assert.equal(fresh.stats.disposes, 1);
		},
	},

	// --- webhooks (basePath /hooks, secret set): no bearer token needed, ever ---
	{
		name: "a webhook POST to the base path runs in session webhook:default:default",
		method: "POST",
		path: "/hooks",
		cred: "webhook",
		headers: secret,
		body: { text: "hi" },
		status: 200,
		json: { ok: true, response: "ok", sessionKey: "webhook:default:default" },
		runId: true,
		check: (gw, before) => {
			assert.equal(gw.prompts(), before.prompts + 1);
			assert.equal(gw.rt.getSession("webhook:default:default").messageCount, 2);
		},
	},
	{
		name: "a webhook POST to basePath/<route> with a sender runs in webhook:<route>:<sender>",
		method: "POST",
		path: "/hooks/ci/build",
		cred: "webhook",
		headers: secret,
		body: { text: "hi", sender: "bob", metadata: { build: 7 } },
		status: 200,
		json: { ok: true, response: "ok", sessionKey: "webhook:ci/build:bob" },
		runId: true,
		check: (gw) => assert.ok(gw.rt.getSession("webhook:ci/build:bob")),
	},
	{
		name: "a webhook POST naming a sessionKey is 400 without webhook.allowRequestSessionKey",
		method: "POST",
		path: "/hooks/slack",
		cred: "webhook",
		headers: secret,
		body: { text: "hi", sessionKey: "wh-custom", sender: "ann" },
		status: 400,
		json: NO_BODY_KEY,
	},
	{
		name: "a webhook POST naming the primary session is 400 without webhook.allowRequestSessionKey",
		method: "POST",
		path: "/hooks",
		cred: "webhook",
		headers: secret,
		body: { text: "hi", sessionKey: "main" },
		status: 400,
		json: NO_BODY_KEY,
	},
	{
		name: "a webhook POST naming a session under the prefix is 400 too without webhook.allowRequestSessionKey",
		method: "POST",
		path: "/hooks",
		cred: "webhook",
		headers: secret,
		body: { text: "hi", sessionKey: "webhook:custom" },
		status: 400,
		json: NO_BODY_KEY,
	},
	{
		name: "a webhook POST with a non-string sessionKey is 400 too",
		method: "POST",
		path: "/hooks/",
		cred: "webhook",
		headers: secret,
		body: { text: "hi", sessionKey: 5 },
		status: 400,
		json: NO_BODY_KEY,
	},
	{
		name: "a webhook POST with a null sessionKey and a null sender falls back to the defaults",
		method: "POST",
		path: "/hooks/",
		cred: "webhook",
		headers: secret,
		body: { text: "hi", sessionKey: null, sender: null },
		status: 200,
		json: { ok: true, response: "ok", sessionKey: "webhook:default:default" },
		runId: true,
	},
	{
		name: "a webhook POST with a non-string sender is 400 Invalid sender",
		method: "POST",
		path: "/hooks/ci",
		cred: "webhook",
		headers: secret,
		body: { text: "hi", sender: 7 },
		status: 400,
		json: errorStartingWith("Invalid sender: "),
	},
	{ name: "a webhook POST without the secret header is 401 Invalid webhook secret", method: "POST", path: "/hooks", cred: "webhook", body: { text: "hi" }, status: 401, json: BAD_SECRET },
	{ name: "a webhook POST with a wrong secret is 401 Invalid webhook secret", method: "POST", path: "/hooks/ci", cred: "webhook", headers: { "x-pi-webhook-secret": `${SECRET}x` }, body: { text: "hi" }, status: 401, json: BAD_SECRET },
	{ name: "a webhook POST with the secret only as a bearer token is 401 Invalid webhook secret", method: "POST", path: "/hooks", cred: "webhook", headers: { authorization: `Bearer ${SECRET}` }, body: { text: "hi" }, status: 401, json: BAD_SECRET },
	{ name: "a webhook POST with blank text is 400 Missing text", method: "POST", path: "/hooks", cred: "webhook", headers: secret, body: { text: "   ", sender: "bob" }, status: 400, json: MISSING_TEXT },
	{ name: "a webhook POST with invalid JSON is 400 Invalid JSON body", method: "POST", path: "/hooks", cred: "webhook", headers: secret, body: "{nope", status: 400, json: INVALID_JSON },
	{ name: "a webhook POST with a JSON array is 400 Invalid JSON body", method: "POST", path: "/hooks", cred: "webhook", headers: secret, body: '[{"text":"hi"}]', status: 400, json: INVALID_JSON },
	{
		name: "a webhook POST past limits.maxBodyBytes is 413",
		method: "POST",
		path: "/hooks",
		cred: "webhook",
		headers: secret,
		body: bodyOfSize(MAX_BODY + 100),
		status: 413,
		json: (_gw, res) => {
			assert.equal(typeof res.json?.error, "string", `413 body: ${res.text}`);
			return res.json;
		},
	},
	{ name: "GET on the webhook path is 405 with Allow: POST", method: "GET", path: "/hooks", cred: "webhook", headers: secret, status: 405, json: NOT_ALLOWED, allow: ["POST"] },
	{
		name: "POST /hooks-x is not a webhook: 404 Not found and nothing runs",
		method: "POST",
		path: "/hooks-x",
		cred: "bearer",
		headers: secret,
		body: { text: "hi" },
		status: 404,
		json: NOT_FOUND,
	},
	{
		name: "POST /hooksfoo/bar is not a webhook: 404 Not found and nothing runs",
		method: "POST",
		path: "/hooksfoo/bar",
		cred: "bearer",
		headers: secret,
		body: { text: "hi", sender: "x" },
		status: 404,
		json: NOT_FOUND,
	},
];

async function state(gw, auth) {
	const list = sortedSessions(gw.rt.listSessions());
	const res = await request(gw.port, "GET", "/sessions", { headers: auth ? { authorization: `Bearer ${TOKEN}` } : {} });
	assert.equal(res.status, 200);
	const byKey = Object.fromEntries(list.map((s) => [s.sessionKey, s]));
	return { list, http: sortedSessions(res.json.sessions), prompts: gw.prompts(), byKey };
}

function assertJsonResponse(res, c, expected) {
	assert.equal(res.status, c.status, `${c.method} ${c.path}: status ${res.status}, body ${res.text}`);
	assert.equal(res.headers["content-type"], JSON_TYPE, `${c.method} ${c.path}: content-type`);
	if (c.method === "HEAD") {
		assert.equal(res.text, "", "HEAD has no body");
		return;
	}
	let body = res.json;
	if (c.runId) body = bodyWithRunId(res, `${c.method} ${c.path}`);
	else assertNoRunId(res, `${c.method} ${c.path}`);
	if (c.sortSessions && body?.sessions) body = { ...body, sessions: sortedSessions(body.sessions) };
	assert.deepEqual(body, expected, `${c.method} ${c.path}: body ${res.text}`);
}

/** The cases as run in one auth mode: with auth on, each bearer case gets a missing- and a wrong-token twin first. */
function casesFor(auth) {
	const out = [];
	for (const c of CASES) {
		if (auth && c.cred === "bearer") {
			out.push({ ...c, name: `${c.name} — but without a bearer token it is 401`, bearer: null, status: 401, json: UNAUTHORIZED, allow: undefined, check: undefined, unchanged: true, runId: false });
			out.push({ ...c, name: `${c.name} — but with a wrong bearer token it is 401`, bearer: `${TOKEN}x`, status: 401, json: UNAUTHORIZED, allow: undefined, check: undefined, unchanged: true, runId: false });
			out.push({ ...c, bearer: TOKEN });
		} else {
			out.push({ ...c, bearer: null });
		}
	}
	return out;
}

for (const auth of [false, true]) {
	describe(`routes with bearer auth ${auth ? "on" : "off"}`, { timeout: 45000 }, () => {
		let gw;
		before(async () => {
			gw = await startGateway({
				config: {
					...(auth ? { bearerToken: TOKEN } : {}),
					session: { maxQueuePerSession: 1 },
					webhook: { enabled: true, basePath: "/hooks", secret: SECRET },
					limits: { maxBodyBytes: MAX_BODY },
				},
			});
			// A second session besides the primary one.
			const r = await gw.rt.enqueueMessage({ sessionKey: "alpha", text: "setup" });
			assert.equal(r.ok, true);
		});
		after(() => gw?.stop());

		for (const c of casesFor(auth)) {
			test(c.name, async () => {
				const before = await state(gw, auth);
				const headers = { ...(c.headers ?? {}) };
				if (c.bearer) headers.authorization = `Bearer ${c.bearer}`;
				const res = await request(gw.port, c.method, c.path, { headers, body: c.body });
				const expected = typeof c.json === "function" ? c.json(gw, res) : c.json;
				assertJsonResponse(res, c, expected);
				if (c.allow) {
					assert.ok(res.headers.allow, `${c.method} ${c.path}: 405 needs an Allow header`);
					const allowed = res.headers.allow.split(",").map((m) => m.trim().toUpperCase());
					for (const m of c.allow) assert.ok(allowed.includes(m), `Allow "${res.headers.allow}" lacks ${m}`);
					assert.ok(!allowed.includes(c.method), `Allow "${res.headers.allow}" lists the refused ${c.method}`);
				}
				if (c.unchanged || (c.status >= 400 && c.status < 500)) {
					const afterState = await state(gw, auth);
					assert.deepEqual(afterState.list, before.list, "a rejected request changed the sessions");
					assert.deepEqual(afterState.http, before.http, "a rejected request changed GET /sessions");
					assert.equal(afterState.prompts, before.prompts, "a rejected request prompted the agent");
				}
				if (c.check) await c.check(gw, before, res);
			});
		}

		if (!auth) test("with auth off, an Authorization header is ignored", async () => {
			const res = await request(gw.port, "GET", "/sessions", { headers: { authorization: "Bearer whatever" } });
			assert.equal(res.status, 200);
			assert.ok(Array.isArray(res.json.sessions));
		});

		if (auth) test("with auth on, the bearer scheme is case-insensitive but the token is exact", async () => {
			const ok = await request(gw.port, "GET", "/ready", { headers: { authorization: `bearer ${TOKEN}` } });
			assert.equal(ok.status, 200);
			for (const value of [`Basic ${TOKEN}`, TOKEN, `Bearer ${TOKEN.slice(0, -1)}`, `Bearer ${TOKEN.toUpperCase()}`, "Bearer "]) {
				const res = await request(gw.port, "GET", "/ready", { headers: { authorization: value } });
				assert.equal(res.status, 401, `Authorization: ${value}`);
				assert.deepEqual(res.json, UNAUTHORIZED);
				assert.equal(res.headers["content-type"], JSON_TYPE);
			}
		});

		test("a full queue answers 429 with the GatewayMessageResult and changes nothing", async () => {
			const headers = auth ? { authorization: `Bearer ${TOKEN}` } : {};
			const key = "busy";
			const path = `/sessions/${key}/messages`;
			// A run that emits one token, then waits quietly (60 s) until aborted; then one queued
			// message: the queue (max 1) is full, and nothing moves while the full queue is probed.
			const first = request(gw.port, "POST", path, { headers, body: { text: "/stream 2 60000" } });
			await waitUntil(() => gw.rt.getSession(key)?.processing, { message: "the first run to start" });
			const second = request(gw.port, "POST", path, { headers, body: { text: "queued" } });
			await waitUntil(() => gw.rt.getSession(key)?.queueDepth === 1, { message: "the second message to queue" });
			try {
				const before = await state(gw, auth);
				const runsBefore = await request(gw.port, "GET", `/sessions/${key}/runs`, { headers });
				assert.equal(runsBefore.status, 200, runsBefore.text);
				const res = await request(gw.port, "POST", path, { headers, body: { text: "one too many" } });
				assert.equal(res.status, 429, res.text);
				assert.equal(res.headers["content-type"], JSON_TYPE);
				// A refusal is no run: no runId, no x-run-id, no run record.
				assertNoRunId(res, "the 429");
				assert.deepEqual(res.json, { ok: false, response: "", error: "Queue full (1 pending).", sessionKey: key });
				const runsAfter = await request(gw.port, "GET", `/sessions/${key}/runs`, { headers });
				assert.deepEqual(runsAfter.json, runsBefore.json, "a refused message left a run record");
				const afterState = await state(gw, auth);
				assert.equal(afterState.byKey[key].queueDepth, 1);
				// A refused message still counts as activity on its session (the seed's
				// ensureSession touches lastActiveAt before the queue check too): everything
				// else must be exactly as before.
				const activity = (list) => list.map((s) => (s.sessionKey === key ? { ...s, lastActiveAt: 0 } : s));
				assert.deepEqual(activity(afterState.list), activity(before.list));
				assert.deepEqual(activity(afterState.http), activity(before.http));
				assert.equal(afterState.prompts, before.prompts);
				if (auth) {
					const denied = await request(gw.port, "POST", path, { body: { text: "no token" } });
					assert.equal(denied.status, 401);
					assert.equal(gw.rt.getSession(key).queueDepth, 1);
				}
			} finally {
				const abort = await request(gw.port, "POST", `/sessions/${key}/abort`, { headers });
				assert.equal(abort.status, 200);
				assert.deepEqual(abort.json, { ok: true });
			}
			const aborted = await first;
			assert.equal(aborted.status, 500, aborted.text);
			bodyWithRunId(aborted, "the aborted run");
			assert.equal(aborted.json.ok, false);
			assert.equal(aborted.json.sessionKey, key);
			assert.equal(aborted.json.error, "Request was aborted");
			const queued = await second;
			assert.equal(queued.status, 200, queued.text);
			assert.deepEqual(bodyWithRunId(queued, "the queued run"), { ok: true, response: "ok", sessionKey: key });
		});

		test("GET /sessions/:key/events answers an event stream that starts with retry, then hello", async () => {
			const headers = auth ? { authorization: `Bearer ${TOKEN}` } : {};
			const sse = await openSse(gw.port, "/sessions/main/events", { headers });
			try {
				assert.equal(sse.status, 200);
				assert.match(sse.headers["content-type"], /^text\/event-stream/);
				assert.equal(sse.headers["cache-control"], "no-cache, no-transform");
				const hello = await sse.waitFor((f) => f.data !== undefined);
				assert.equal(hello.data.type, "hello");
				assert.equal(hello.data.sessionKey, "main");
				// Subscribing is activity: lastActiveAt may move by the subscription itself.
				const { lastActiveAt, ...rest } = gw.rt.getSession("main");
				assert.deepEqual({ ...hello.data.snapshot, lastActiveAt: 0 }, { ...rest, lastActiveAt: 0 });
				assert.ok(hello.data.snapshot.lastActiveAt <= lastActiveAt);
				assert.equal(sse.events()[0], hello);
				// SPEC §10: `retry: 2000` comes first, and hello's id is the last one in the log.
				assert.ok(sse.raw.startsWith("retry: 2000\n\n"), JSON.stringify(sse.raw.slice(0, 40)));
				assert.ok(Number.isInteger(hello.id) && hello.id >= 0, `hello id ${hello.id}`);
			} finally {
				sse.close();
			}
		});

		test("GET /sessions/:key/events creates an unknown session on demand", async () => {
			const headers = auth ? { authorization: `Bearer ${TOKEN}` } : {};
			assert.equal(gw.rt.getSession("stream-new"), undefined);
			const sse = await openSse(gw.port, "/sessions/stream-new/events", { headers });
			try {
				const hello = await sse.waitFor((f) => f.data?.type === "hello");
				assert.equal(hello.data.snapshot.sessionKey, "stream-new");
				assert.equal(hello.data.snapshot.messageCount, 0);
				assert.ok(gw.rt.getSession("stream-new"));
			} finally {
				sse.close();
			}
		});

		test("HEAD /sessions/:key/events answers the stream headers with no body", async () => {
			const headers = auth ? { authorization: `Bearer ${TOKEN}` } : {};
			const res = await request(gw.port, "HEAD", "/sessions/main/events", { headers });
			assert.equal(res.status, 200);
			assert.match(res.headers["content-type"], /^text\/event-stream/);
			assert.equal(res.text, "");
		});

		if (auth) test("GET /sessions/:key/events without a bearer token is 401 JSON, not a stream", async () => {
			const before = await state(gw, auth);
			for (const headers of [{}, { authorization: `Bearer ${TOKEN}x` }]) {
				const res = await request(gw.port, "GET", "/sessions/never-made/events", { headers });
				assert.equal(res.status, 401);
				assert.equal(res.headers["content-type"], JSON_TYPE);
				assert.deepEqual(res.json, UNAUTHORIZED);
			}
			const afterState = await state(gw, auth);
			assert.deepEqual(afterState.list, before.list);
		});

		test("a body that declares more than limits.maxBodyBytes is refused with 413 before it is sent", async () => {
			const conn = await rawConnect(gw.port);
			try {
				const auth_ = auth ? `Authorization: Bearer ${TOKEN}\r\n` : "";
				await conn.write(
					`POST /sessions/main/messages HTTP/1.1\r\nHost: localhost\r\n${auth_}Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{"text":"`,
				);
				const data = await conn.waitForData((d) => parseResponses(d).length > 0, 10000);
				const [res] = parseResponses(data);
				assert.equal(res.status, 413);
				assert.equal(res.headers["content-type"], JSON_TYPE);
				assert.equal(typeof JSON.parse(res.body).error, "string");
			} finally {
				conn.destroy();
			}
		});

		test("a chunked body that grows past limits.maxBodyBytes is refused with 413", async () => {
			const conn = await rawConnect(gw.port);
			const before = await state(gw, auth);
			try {
				const auth_ = auth ? `Authorization: Bearer ${TOKEN}\r\n` : "";
				await conn.write(
					`POST /sessions/main/messages HTTP/1.1\r\nHost: localhost\r\n${auth_}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
				);
				const piece = `{"text":"${"y".repeat(1000)}`;
				await conn.write(`${piece.length.toString(16)}\r\n${piece}\r\n`);
				for (let sent = piece.length; sent <= MAX_BODY + 1024 && !conn.isClosed && !conn.data; sent += 1000) {
					const more = "y".repeat(1000);
					await conn.write(`${more.length.toString(16)}\r\n${more}\r\n`);
				}
				const data = await conn.waitForData((d) => parseResponses(d).length > 0, 10000);
				const [res] = parseResponses(data);
				assert.equal(res.status, 413);
				assert.equal(res.headers["content-type"], JSON_TYPE);
			} finally {
				conn.destroy();
			}
			const afterState = await state(gw, auth);
			assert.equal(afterState.prompts, before.prompts);
			assert.deepEqual(afterState.list, before.list);
		});
	});
}

describe("webhook.allowRequestSessionKey: a body sessionKey reaches only sessions under webhook.sessionKeyPrefix", { timeout: 30000 }, () => {
	const hook = (port, body, path = "/hooks") => request(port, "POST", path, { headers: secret, body });

	/** Posts each body and asserts a 400 whose error starts with its prefix, and that nothing changed. */
	async function refused(gw, cases) {
		for (const [body, prefix] of cases) {
			const before = sortedSessions(gw.rt.listSessions());
			const prompts = gw.prompts();
			const res = await hook(gw.port, body);
			const label = JSON.stringify(body).slice(0, 120);
			assert.equal(res.status, 400, `${label}: ${res.text}`);
			assert.equal(res.headers["content-type"], JSON_TYPE);
			assert.deepEqual(Object.keys(res.json ?? {}), ["error"], `${label}: ${res.text}`);
			assertNoRunId(res, label);
			assert.ok(res.json.error.startsWith(prefix), `${label}: error ${JSON.stringify(res.json.error)} should start with ${JSON.stringify(prefix)}`);
			assert.deepEqual(sortedSessions(gw.rt.listSessions()), before, `${label}: the sessions changed`);
			assert.equal(gw.prompts(), prompts, `${label}: the agent was prompted`);
		}
	}

	test('with the default prefix "webhook:", a key under it runs in that session, up to 1,024 bytes', async (t) => {
		const gw = await startGateway({ config: { webhook: { enabled: true, basePath: "/hooks", secret: SECRET, allowRequestSessionKey: true } } });
		t.after(() => gw.stop());
		const prompts = gw.prompts();
		const res = await hook(gw.port, { text: "hi", sessionKey: "webhook:custom", sender: "ann" });
		assert.equal(res.status, 200, res.text);
		assert.deepEqual(bodyWithRunId(res), { ok: true, response: "ok", sessionKey: "webhook:custom" });
		assert.equal(gw.rt.getSession("webhook:custom").messageCount, 2);
		assert.equal(gw.prompts(), prompts + 1);
		const longest = `webhook:${"k".repeat(1024 - "webhook:".length)}`;
		const long = await hook(gw.port, { text: "hi", sessionKey: longest });
		assert.equal(long.status, 200, long.text);
		bodyWithRunId(long);
		assert.equal(long.json.sessionKey, longest);
		// Without a sessionKey the key is still derived from the route and the sender.
		const derived = await hook(gw.port, { text: "hi", sender: "bob" }, "/hooks/ci");
		assert.deepEqual(bodyWithRunId(derived), { ok: true, response: "ok", sessionKey: "webhook:ci:bob" });
	});

	test("keys outside the prefix, the prefix alone, empty, too long or not a string are 400 Invalid sessionKey, and change nothing", async (t) => {
		const gw = await startGateway({ config: { webhook: { enabled: true, basePath: "/hooks", secret: SECRET, allowRequestSessionKey: true } } });
		t.after(() => gw.stop());
		await refused(gw, [
			[{ text: "hi", sessionKey: "wh-custom" }, 'Invalid sessionKey: must start with "webhook:"'],
			[{ text: "hi", sessionKey: "main" }, 'Invalid sessionKey: must start with "webhook:"'],
			[{ text: "hi", sessionKey: "Webhook:x" }, 'Invalid sessionKey: must start with "webhook:"'],
			[{ text: "hi", sessionKey: " webhook:x" }, 'Invalid sessionKey: must start with "webhook:"'],
			[{ text: "hi", sessionKey: "webhook:" }, "Invalid sessionKey"],
			[{ text: "hi", sessionKey: "" }, "Invalid sessionKey"],
			[{ text: "hi", sessionKey: `webhook:${"k".repeat(1025 - "webhook:".length)}` }, "Invalid sessionKey"],
			[{ text: "hi", sessionKey: 5 }, "Invalid sessionKey"],
			[{ text: "hi", sessionKey: ["webhook:x"] }, "Invalid sessionKey"],
			[{ text: "hi", sessionKey: { key: "webhook:x" } }, "Invalid sessionKey"],
		]);
	});

	test("the primary session is never reachable, even when its key is under the prefix", async (t) => {
		const gw = await startGateway({
			primaryKey: "webhook:primary",
			config: { webhook: { enabled: true, basePath: "/hooks", secret: SECRET, allowRequestSessionKey: true } },
		});
		t.after(() => gw.stop());
		await refused(gw, [[{ text: "hi", sessionKey: "webhook:primary" }, "Invalid sessionKey"]]);
		assert.equal(gw.primary.stats.prompts, 0);
		// Its neighbours under the prefix are fine.
		const res = await hook(gw.port, { text: "hi", sessionKey: "webhook:primary2" });
		assert.deepEqual(bodyWithRunId(res), { ok: true, response: "ok", sessionKey: "webhook:primary2" });
	});

	test("webhook.sessionKeyPrefix sets the prefix of body keys and of derived keys", async (t) => {
		const gw = await startGateway({
			config: { webhook: { enabled: true, basePath: "/hooks", secret: SECRET, allowRequestSessionKey: true, sessionKeyPrefix: "hook/" } },
		});
		t.after(() => gw.stop());
		const named = await hook(gw.port, { text: "hi", sessionKey: "hook/a" });
		assert.deepEqual(bodyWithRunId(named), { ok: true, response: "ok", sessionKey: "hook/a" });
		const derived = await hook(gw.port, { text: "hi", sender: "bob" }, "/hooks/ci");
		assert.deepEqual(bodyWithRunId(derived), { ok: true, response: "ok", sessionKey: "hook/ci:bob" });
		const base = await hook(gw.port, { text: "hi" });
		assert.deepEqual(bodyWithRunId(base), { ok: true, response: "ok", sessionKey: "hook/default:default" });
		await refused(gw, [[{ text: "hi", sessionKey: "webhook:a" }, 'Invalid sessionKey: must start with "hook/"']]);
	});
});

describe("start() refuses unsafe webhook configurations", { timeout: 20000 }, () => {
	function runtime(config) {
		return new GatewayRuntime({
			config: {
				bind: "127.0.0.1",
				port: 0,
				session: { idleMinutes: 30, maxQueuePerSession: 4 },
				webhook: { enabled: true, basePath: "/webhook" },
				...config,
			},
			primarySessionKey: "main",
			primarySession: createScriptedSession("main"),
			createSession: createScriptedFactory(),
			log: () => {},
		});
	}

	test("webhooks enabled without a secret on 0.0.0.0 make start() reject and say why", async () => {
		const rt = runtime({ bind: "0.0.0.0" });
		try {
			await assert.rejects(rt.start(), (error) => {
				assert.ok(error instanceof Error);
				assert.match(error.message, /secret/i);
				assert.match(error.message, /0\.0\.0\.0/);
				assert.match(error.message, /loopback/i);
				return true;
			});
			assert.equal(rt.isReady(), false);
		} finally {
			await rt.stop();
		}
	});

	test("webhooks enabled without a secret on loopback start, with a warning in the log", async () => {
		const logs = [];
		const rt = new GatewayRuntime({
			config: {
				bind: "127.0.0.1",
				port: 0,
				session: { idleMinutes: 30, maxQueuePerSession: 4 },
				webhook: { enabled: true, basePath: "/webhook" },
			},
			primarySessionKey: "main",
			primarySession: createScriptedSession("main"),
			createSession: createScriptedFactory(),
			log: (m) => logs.push(m),
		});
		try {
			await rt.start();
			assert.ok(logs.some((m) => /warn/i.test(m) && /secret/i.test(m)), `log: ${JSON.stringify(logs)}`);
			// Without a secret any caller may post.
			const res = await request(rt.getAddress().port, "POST", "/webhook", { body: { text: "hi" } });
			assert.equal(res.status, 200);
			assert.deepEqual(bodyWithRunId(res), { ok: true, response: "ok", sessionKey: "webhook:default:default" });
		} finally {
			await rt.stop();
		}
	});

	test("with webhooks disabled, POST to the webhook path is an ordinary 404", async () => {
		const gw = await startGateway({ config: { webhook: { enabled: false, basePath: "/webhook", secret: "s" } } });
		try {
			const before = gw.prompts();
			const res = await request(gw.port, "POST", "/webhook", { headers: { "x-pi-webhook-secret": "s" }, body: { text: "hi" } });
			assert.equal(res.status, 404);
			assert.deepEqual(res.json, NOT_FOUND);
			assert.equal(gw.prompts(), before);
		} finally {
			await gw.stop();
		}
	});
});
