// Issue 11, "browsers can't be used against it": the request guard, over raw sockets (node:http
// and fetch would set Host, Origin and Content-Type for us).
//
// Contract (the lead's /tmp/contract.md, "Request guard"): for every request, before its body is
// read — 1. on a loopback bind the Host name (port stripped, any case) must be localhost,
// *.localhost, 127.0.0.0/8, [::1] or in config.allowedHosts, else 403 "Host not allowed";
// 2. an Origin must be in cors.origins (or "*") or equal http://<Host>, else 403 "Origin not
// allowed" (`null` included); 3. Sec-Fetch-Site cross-site/same-site is 403 "Cross-site request
// refused" unless the Origin is allowed through cors.origins; 4. a POST with text/plain or
// multipart/form-data is 415, and so is application/x-www-form-urlencoded when the request
// carries Origin or any Sec-Fetch-* header; other types (and none) are read as JSON.
// Plus config mistakes: unknown fields, empty secrets, CORS origins that cannot match.
//
// Every refusal is checked to have reached nothing: no prompt on any session, no session made.
// Run: npm test -- __test__/safe-guard.test.mjs

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { GatewayRuntime } from "../index.js";
import { rawExchange } from "./support/rel-util.mjs";
import { build, curl, msg, runCleanup, send, show, startSafe } from "./support/safe-util.mjs";
import { recordingSession } from "./support/sessions.mjs";
import { bodyWithRunId, withRunId } from "./support/runs.mjs";

const SECRET = "guard-hook-secret";
const TOKEN = "guard-token";
const APP = "http://app.test:5173";
const JSON_TYPE = "application/json; charset=utf-8";

const HOST_403 = { error: "Host not allowed" };
const ORIGIN_403 = { error: "Origin not allowed" };
const SITE_403 = { error: "Cross-site request refused" };

const cleanup = [];
/** The main gateway: loopback, no token, webhooks with a secret, one CORS origin. */
let gw;
/** A gateway with allowedHosts ["gw.test"] and a bearer token. */
let gwHosts;

before(async () => {
	gw = await startSafe(cleanup, {
		config: { webhook: { enabled: true, secret: SECRET }, cors: { origins: [APP] } },
	});
	gwHosts = await startSafe(cleanup, {
		config: { bearerToken: TOKEN, allowedHosts: ["gw.test"], webhook: { enabled: true, secret: SECRET } },
	});
});

after(() => runCleanup(cleanup));

/** Sessions and prompts of a gateway, for "nothing happened" checks. */
function state(g) {
	return {
		prompts: g.prompts(),
		created: g.factory.created.length,
		keys: g.rt
			.listSessions()
			.map((s) => s.sessionKey)
			.sort(),
	};
}

let fresh = 0;
/** A session key no request has used yet. */
const newKey = (what) => `${what}-${++fresh}`;

/** Asserts a JSON error answer. */
function assertError(r, status, body, label = "") {
	assert.equal(r.status, status, `${label} status: ${show(r)}`);
	assert.equal(r.headers["content-type"], JSON_TYPE, `${label} content-type: ${show(r)}`);
	assert.deepEqual(r.json, body, `${label} body: ${show(r)}`);
}

/**
 * Sends a request that must be refused with `status`/`body` and must reach nothing: no prompt,
 * no session. POSTs go to a fresh key (so a created session would show) unless `path` is given.
 */
async function refused(g, method, path, opts, status, body) {
	const before = state(g);
	const r = await send(g.port, method, path, opts);
	assertError(r, status, body, `${method} ${path} ${JSON.stringify(opts.headers ?? {})} host=${opts.host}`);
	assert.deepEqual(state(g), before, `${method} ${path}: nothing may reach a session`);
	return r;
}

// ---------------------------------------------------------------- 1. Host

describe("Host on a loopback bind (DNS rebinding)", () => {
	const foreign = (port) => ["evil.example", `evil.example:${port}`, "EVIL.EXAMPLE", "localhost.evil.example", `127.0.0.1.evil.example:${port}`, "evillocalhost", "10.0.0.1", `192.168.1.10:${port}`, "[::2]", "gw.test"];
	const loopback = (port) => ["localhost", `localhost:${port}`, "LocalHost", `127.0.0.1:${port}`, "127.0.0.1", "127.1.2.3", `[::1]:${port}`, "[::1]", "foo.localhost", `app.foo.localhost:${port}`, "FOO.LOCALHOST"];

	test("a foreign Host is refused 403 on /health, /sessions, messages, events, webhooks and preflights", async () => {
		for (const host of foreign(gw.port)) {
			await refused(gw, "GET", "/health", { host }, 403, HOST_403);
			const head = await send(gw.port, "HEAD", "/health", { host, noBody: [true] });
			assert.equal(head.status, 403, `HEAD /health host=${host}: ${show(head)}`);
			await refused(gw, "GET", "/sessions", { host }, 403, HOST_403);
			await refused(gw, "GET", "/sessions/main", { host }, 403, HOST_403);
			await refused(gw, "GET", "/sessions/main/events", { host }, 403, HOST_403);
			await refused(gw, "POST", "/sessions/main/messages", { host, body: msg("rebound") }, 403, HOST_403);
			await refused(gw, "POST", `/sessions/${newKey("host")}/messages`, { host, body: msg("rebound") }, 403, HOST_403);
			await refused(gw, "POST", "/sessions/main/reset", { host }, 403, HOST_403);
			await refused(gw, "POST", "/webhook", { host, headers: { "x-pi-webhook-secret": SECRET }, body: msg("rebound") }, 403, HOST_403);
			await refused(gw, "POST", "/webhook/route", { host, headers: { "x-pi-webhook-secret": SECRET }, body: msg("rebound") }, 403, HOST_403);
			await refused(gw, "OPTIONS", "/sessions/main/messages", { host, headers: { Origin: APP, "Access-Control-Request-Method": "POST" } }, 403, HOST_403);
		}
	});

	test("loopback names and addresses are allowed, with and without the port, in any case", async () => {
		for (const host of loopback(gw.port)) {
			const h = await send(gw.port, "GET", "/health", { host });
			assert.equal(h.status, 200, `GET /health host=${host}: ${show(h)}`);
			assert.deepEqual(h.json, { ok: true, ready: true });
			const s = await send(gw.port, "GET", "/sessions", { host });
			assert.equal(s.status, 200, `GET /sessions host=${host}: ${show(s)}`);
			const m = await send(gw.port, "POST", "/sessions/main/messages", { host, body: msg(`via ${host}`) });
			assert.equal(m.status, 200, `POST messages host=${host}: ${show(m)}`);
			assert.deepEqual(bodyWithRunId(m), { ok: true, response: `echo:via ${host}`, sessionKey: "main" });
			const w = await send(gw.port, "POST", "/webhook/hosts", { host, headers: { "x-pi-webhook-secret": SECRET }, body: msg(`hook ${host}`) });
			assert.equal(w.status, 200, `POST webhook host=${host}: ${show(w)}`);
			assert.equal(w.json.response, `echo:hook ${host}`);
		}
	});

	test("a request without a Host header is allowed (not a browser)", async () => {
		const r = await send(gw.port, "GET", "/health", { host: false });
		assert.equal(r.status, 200, show(r));
		const m = await send(gw.port, "POST", "/sessions/main/messages", { host: false, body: msg("no host") });
		assert.equal(m.status, 200, show(m));
		assert.equal(m.json.response, "echo:no host");
	});

	test("allowedHosts adds names: gw.test passes (any port), others stay refused, the guard runs before auth", async () => {
		const g = gwHosts;
		for (const host of ["gw.test", `gw.test:${g.port}`, "GW.TEST", "localhost", `127.0.0.1:${g.port}`]) {
			const h = await send(g.port, "GET", "/health", { host });
			assert.equal(h.status, 200, `host=${host}: ${show(h)}`);
			// Past the guard, auth applies.
			const noToken = await send(g.port, "GET", "/sessions", { host });
			assertError(noToken, 401, { error: "Unauthorized" }, `host=${host}`);
			const ok = await send(g.port, "GET", "/sessions", { host, headers: { Authorization: `Bearer ${TOKEN}` } });
			assert.equal(ok.status, 200, `host=${host}: ${show(ok)}`);
			const m = await send(g.port, "POST", "/sessions/main/messages", { host, headers: { Authorization: `Bearer ${TOKEN}` }, body: msg("allowed") });
			assert.equal(m.status, 200, show(m));
			assert.equal(m.json.response, "echo:allowed");
			const w = await send(g.port, "POST", "/webhook", { host, headers: { "x-pi-webhook-secret": SECRET }, body: msg("allowed hook") });
			assert.equal(w.status, 200, show(w));
		}
		for (const host of ["evil.example", `evil.example:${g.port}`, "sub.gw.test", "gw.test.evil.example", "gw.tes"]) {
			// With the right token and secret, a foreign Host is still 403 (and not 401 without them).
			await refused(g, "GET", "/health", { host }, 403, HOST_403);
			await refused(g, "GET", "/sessions", { host }, 403, HOST_403);
			await refused(g, "GET", "/sessions", { host, headers: { Authorization: `Bearer ${TOKEN}` } }, 403, HOST_403);
			await refused(g, "POST", "/sessions/main/messages", { host, headers: { Authorization: `Bearer ${TOKEN}` }, body: msg("x") }, 403, HOST_403);
			await refused(g, "POST", "/webhook", { host, headers: { "x-pi-webhook-secret": SECRET }, body: msg("x") }, 403, HOST_403);
		}
	});
});

// ---------------------------------------------------------------- 2. Origin

describe("Origin", () => {
	const host = () => `127.0.0.1:${gw.port}`;

	test("a foreign Origin is refused 403 before the body is read: a head alone gets the answer", async () => {
		for (const path of ["/sessions/main/messages", `/sessions/${newKey("origin")}/messages`, "/sessions/main/chat", "/webhook"]) {
			const before = state(gw);
			const data = build("POST", path, {
				host: host(),
				contentType: "application/json",
				headers: { Origin: "http://evil.example", "Content-Length": "100", "x-pi-webhook-secret": SECRET },
			});
			// Only the head is sent; the 100 body bytes never come. The answer must not wait for them.
			const started = Date.now();
			const r = await rawExchange(gw.port, data, { expect: 1, timeoutMs: 5000 });
			const ms = Date.now() - started;
			assert.equal(r.timedOut, false, `${path}: no answer to the head within 5 s; got ${JSON.stringify(r.raw.toString("latin1").slice(0, 200))}`);
			const res = r.responses[0];
			assert.equal(res.status, 403, `${path}: ${res.status} ${res.body}`);
			assert.deepEqual(JSON.parse(res.body.toString("utf8")), ORIGIN_403);
			assert.ok(ms < 2000, `${path}: answered after ${ms} ms`);
			assert.deepEqual(state(gw), before, `${path}: nothing may reach a session`);
		}
	});

	test("a refused body is never parsed as a request: a request smuggled inside it does not run", async () => {
		const before = state(gw);
		const inner = build("POST", "/sessions/main/messages", { host: host(), body: msg("smuggled") });
		for (const [headers, contentType] of [
			[{ Origin: "http://evil.example" }, "application/json"],
			[{ "Sec-Fetch-Site": "cross-site" }, "application/json"],
			[{}, "text/plain"],
		]) {
			// The outer request is refused before its body is read; its body is a whole request.
			const outer = build("POST", "/sessions/main/messages", { host: host(), contentType, headers, body: inner });
			const r = await rawExchange(gw.port, outer, { expect: 2, timeoutMs: 1000 });
			assert.ok(r.responses.length >= 1, `no answer: ${JSON.stringify(r.raw.toString("latin1").slice(0, 200))}`);
			assert.ok([403, 415].includes(r.responses[0].status), `outer: ${r.responses[0].status}`);
			assert.equal(r.responses.length, 1, `the body was answered as a request: ${JSON.stringify(r.raw.toString("latin1").slice(0, 400))}`);
		}
		assert.equal(gw.primary.calls.filter((c) => c.text === "smuggled").length, 0, "the smuggled message ran");
		assert.deepEqual(state(gw), before);
		// A refused request without a body leaves the connection usable (or closed), never confused.
		const piped = Buffer.concat([
			build("GET", "/sessions", { host: host(), headers: { Origin: "http://evil.example" } }),
			build("GET", "/health", { host: host() }),
		]);
		const p = await rawExchange(gw.port, piped, { expect: 2, timeoutMs: 3000 });
		assert.equal(p.responses[0]?.status, 403);
		if (p.responses.length > 1) assert.equal(p.responses[1].status, 200);
		else assert.equal(p.closed, true, "neither answered nor closed");
	});

	test("a foreign Origin is refused on every route, a full body changes nothing", async () => {
		const origins = ["http://evil.example", `http://127.0.0.1:${gw.port + 1}`, `https://127.0.0.1:${gw.port}`, `http://localhost:${gw.port}`, "http://app.test:5174", "https://app.test:5173", "http://app.test", "null", "null ", "*"];
		for (const origin of origins) {
			const headers = { Origin: origin };
			await refused(gw, "GET", "/health", { host: host(), headers }, 403, ORIGIN_403);
			await refused(gw, "GET", "/sessions", { host: host(), headers }, 403, ORIGIN_403);
			await refused(gw, "GET", "/sessions/main/events", { host: host(), headers }, 403, ORIGIN_403);
			await refused(gw, "POST", "/sessions/main/messages", { host: host(), headers, body: msg("from evil") }, 403, ORIGIN_403);
			await refused(gw, "POST", `/sessions/${newKey("origin")}/messages`, { host: host(), headers, body: msg("from evil") }, 403, ORIGIN_403);
			await refused(gw, "POST", "/sessions/main/reset", { host: host(), headers }, 403, ORIGIN_403);
			await refused(gw, "POST", "/sessions/main/abort", { host: host(), headers }, 403, ORIGIN_403);
			await refused(gw, "POST", "/webhook", { host: host(), headers: { ...headers, "x-pi-webhook-secret": SECRET }, body: msg("from evil") }, 403, ORIGIN_403);
			await refused(gw, "OPTIONS", "/sessions/main/messages", { host: host(), headers: { ...headers, "Access-Control-Request-Method": "POST" } }, 403, ORIGIN_403);
		}
		assert.equal(gw.primary.calls.filter((c) => c.text === "from evil").length, 0);
	});

	test("the gateway's own origin http://<Host> is allowed", async () => {
		for (const h of [`127.0.0.1:${gw.port}`, `localhost:${gw.port}`, `[::1]:${gw.port}`, `foo.localhost:${gw.port}`]) {
			const origin = `http://${h}`;
			const r = await send(gw.port, "POST", "/sessions/main/messages", { host: h, headers: { Origin: origin }, body: msg(`own ${h}`) });
			assert.equal(r.status, 200, `Origin ${origin}: ${show(r)}`);
			assert.deepEqual(bodyWithRunId(r), { ok: true, response: `echo:own ${h}`, sessionKey: "main" });
			const s = await send(gw.port, "GET", "/sessions", { host: h, headers: { Origin: origin } });
			assert.equal(s.status, 200, show(s));
		}
	});

	test("an Origin listed in cors.origins is allowed, with its CORS headers; its preflight too", async () => {
		const r = await send(gw.port, "POST", "/sessions/main/messages", { host: host(), headers: { Origin: APP }, body: msg("from app") });
		assert.equal(r.status, 200, show(r));
		assert.deepEqual(bodyWithRunId(r), { ok: true, response: "echo:from app", sessionKey: "main" });
		assert.equal(r.headers["access-control-allow-origin"], APP);
		const pre = await send(gw.port, "OPTIONS", "/sessions/main/messages", {
			host: host(),
			headers: { Origin: APP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type" },
		});
		assert.ok(pre.status === 200 || pre.status === 204, `preflight: ${show(pre)}`);
		assert.equal(pre.headers["access-control-allow-origin"], APP);
		const w = await send(gw.port, "POST", "/webhook", { host: host(), headers: { Origin: APP, "x-pi-webhook-secret": SECRET }, body: msg("app hook") });
		assert.equal(w.status, 200, show(w));
	});

	test("Origin: null is allowed only with cors.origins \"*\"; any origin passes with \"*\"", async () => {
		const any = await startSafe(cleanup, { config: { cors: { origins: "*" } } });
		for (const origin of ["null", "http://evil.example"]) {
			const r = await send(any.port, "POST", "/sessions/main/messages", { host: `127.0.0.1:${any.port}`, headers: { Origin: origin }, body: msg(origin) });
			assert.equal(r.status, 200, `${origin}: ${show(r)}`);
			assert.equal(r.json.response, `echo:${origin}`);
		}
		// Without cors at all, only the gateway's own origin passes.
		const none = await startSafe(cleanup, {});
		await refused(none, "POST", "/sessions/main/messages", { host: `127.0.0.1:${none.port}`, headers: { Origin: "null" }, body: msg("x") }, 403, ORIGIN_403);
		await refused(none, "POST", "/sessions/main/messages", { host: `127.0.0.1:${none.port}`, headers: { Origin: APP }, body: msg("x") }, 403, ORIGIN_403);
		const own = await send(none.port, "POST", "/sessions/main/messages", { host: `127.0.0.1:${none.port}`, headers: { Origin: `http://127.0.0.1:${none.port}` }, body: msg("own") });
		assert.equal(own.status, 200, show(own));
	});
});

// ---------------------------------------------------------------- 3. Sec-Fetch-Site

describe("Sec-Fetch-Site", () => {
	const host = () => `127.0.0.1:${gw.port}`;

	test("cross-site and same-site requests are refused 403 (img, script, EventSource, no-cors fetch, navigations)", async () => {
		for (const site of ["cross-site", "same-site", "Cross-Site"]) {
			const browser = { "Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image" };
			await refused(gw, "GET", "/health", { host: host(), headers: browser }, 403, SITE_403);
			await refused(gw, "GET", "/sessions", { host: host(), headers: { "Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate" } }, 403, SITE_403);
			await refused(gw, "GET", "/sessions/main/events", { host: host(), headers: { "Sec-Fetch-Site": site, "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty" } }, 403, SITE_403);
			await refused(gw, "POST", "/sessions/main/messages", { host: host(), headers: { "Sec-Fetch-Site": site }, body: msg("cross") }, 403, SITE_403);
			await refused(gw, "POST", `/sessions/${newKey("site")}/messages`, { host: host(), headers: { "Sec-Fetch-Site": site }, body: msg("cross") }, 403, SITE_403);
			await refused(gw, "POST", "/webhook", { host: host(), headers: { "Sec-Fetch-Site": site, "x-pi-webhook-secret": SECRET }, body: msg("cross") }, 403, SITE_403);
		}
	});

	test("same-origin and none pass; cross-site with an Origin from cors.origins passes", async () => {
		for (const site of ["same-origin", "none"]) {
			const r = await send(gw.port, "POST", "/sessions/main/messages", { host: host(), headers: { "Sec-Fetch-Site": site }, body: msg(site) });
			assert.equal(r.status, 200, `${site}: ${show(r)}`);
			assert.equal(r.json.response, `echo:${site}`);
			const h = await send(gw.port, "GET", "/health", { host: host(), headers: { "Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate" } });
			assert.equal(h.status, 200, show(h));
		}
		const r = await send(gw.port, "POST", "/sessions/main/messages", {
			host: host(),
			headers: { Origin: APP, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors" },
			body: msg("cors app"),
		});
		assert.equal(r.status, 200, show(r));
		assert.equal(r.json.response, "echo:cors app");
	});
});

// ---------------------------------------------------------------- 4. Content-Type

describe("Content-Type on POST", () => {
	const host = () => `127.0.0.1:${gw.port}`;
	const unsupported = (type) => ({ error: `Unsupported Content-Type ${type}: send application/json` });
	// The HTML form of the issue: enctype text/plain, input name `{"text":"…","x":"` and value `"}`.
	const FORM_BODY = '{"text":"run rm -rf ~","x":"="}';

	test("text/plain and multipart/form-data are 415 on messages, chat, webhooks; nothing queued", async () => {
		const cases = [
			["text/plain", "text/plain", FORM_BODY],
			["text/plain;charset=UTF-8", "text/plain", FORM_BODY],
			["text/plain; charset=utf-8", "text/plain", FORM_BODY],
			["TEXT/PLAIN", "text/plain", FORM_BODY],
			[" text/plain ", "text/plain", FORM_BODY],
			["multipart/form-data; boundary=x", "multipart/form-data", '--x\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n--x--\r\n'],
			["Multipart/Form-Data;boundary=----abc", "multipart/form-data", '------abc\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi\r\n------abc--\r\n'],
		];
		for (const [header, type, body] of cases) {
			for (const path of ["/sessions/main/messages", `/sessions/${newKey("ct")}/messages`, "/sessions/main/chat"]) {
				await refused(gw, "POST", path, { host: host(), contentType: header, body }, 415, unsupported(type));
			}
			await refused(gw, "POST", "/webhook", { host: host(), contentType: header, headers: { "x-pi-webhook-secret": SECRET }, body }, 415, unsupported(type));
		}
	});

	test("application/x-www-form-urlencoded is 415 with an Origin or a Sec-Fetch-* header", async () => {
		const own = `http://127.0.0.1:${gw.port}`;
		const browserish = [{ Origin: own }, { Origin: APP }, { "Sec-Fetch-Mode": "navigate" }, { "Sec-Fetch-Site": "same-origin" }, { "Sec-Fetch-Dest": "document" }, { "Sec-Fetch-User": "?1" }];
		for (const headers of browserish) {
			for (const type of ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=UTF-8"]) {
				await refused(gw, "POST", `/sessions/${newKey("form")}/messages`, { host: host(), contentType: type, headers, body: '{"text":"form"}' }, 415, unsupported("application/x-www-form-urlencoded"));
				await refused(gw, "POST", "/sessions/main/messages", { host: host(), contentType: type, headers, body: '{"text":"form"}' }, 415, unsupported("application/x-www-form-urlencoded"));
			}
		}
	});

	test("urlencoded without Origin/Sec-Fetch (curl -d), no content type, and JSON types are read as JSON", async () => {
		const types = [["application/x-www-form-urlencoded"], [null], ["application/json"], ["application/json; charset=utf-8"], ["APPLICATION/JSON"], ["application/vnd.api+json"]];
		let n = 0;
		for (const [type] of types) {
			const text = `json ${++n}`;
			const r = await send(gw.port, "POST", "/sessions/main/messages", { host: host(), contentType: type, body: JSON.stringify({ text }) });
			assert.equal(r.status, 200, `content-type ${type}: ${show(r)}`);
			assert.deepEqual(bodyWithRunId(r), { ok: true, response: `echo:${text}`, sessionKey: "main" });
		}
		// A urlencoded body that is not JSON is a JSON error, not a form.
		const bad = await send(gw.port, "POST", "/sessions/main/messages", { host: host(), contentType: "application/x-www-form-urlencoded", body: "text=hi" });
		assertError(bad, 400, { error: "Invalid JSON body" });
	});

	test("real curl: -d alone and with content-type: application/json still work", async () => {
		const plain = await curl(["-d", '{"text":"hi"}', `${gw.base}/sessions/main/messages`]);
		assert.equal(plain.status, 200, plain.text);
		assert.deepEqual(withRunId(plain.json), { ok: true, response: "echo:hi", sessionKey: "main" });
		const typed = await curl(["-H", "content-type:application/json", "-d", '{"text":"typed"}', `${gw.base}/sessions/curly/messages`]);
		assert.equal(typed.status, 200, typed.text);
		assert.deepEqual(withRunId(typed.json), { ok: true, response: "echo:typed", sessionKey: "curly" });
		const hook = await curl(["-H", `x-pi-webhook-secret: ${SECRET}`, "-d", '{"text":"hooked"}', `${gw.base}/webhook`]);
		assert.equal(hook.status, 200, hook.text);
		assert.equal(hook.json.response, "echo:hooked");
		// curl sending a form on purpose is a browser-like form: text/plain is refused.
		const form = await curl(["-H", "content-type: text/plain", "-d", '{"text":"x"}', `${gw.base}/sessions/main/messages`]);
		assert.equal(form.status, 415, form.text);
	});

	test("Node's fetch: a string body without a content type (text/plain;charset=UTF-8) is 415; with application/json it works", async () => {
		const before = state(gw);
		const bare = await fetch(`${gw.base}/sessions/main/messages`, { method: "POST", body: JSON.stringify({ text: "fetch" }) });
		assert.equal(bare.status, 415);
		assert.deepEqual(await bare.json(), unsupported("text/plain"));
		assert.deepEqual(state(gw), before);
		const typed = await fetch(`${gw.base}/sessions/main/messages`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ text: "fetch" }),
		});
		assert.equal(typed.status, 200);
		const typedBody = await typed.json();
		assert.equal(typed.headers.get("x-run-id"), typedBody.runId);
		assert.deepEqual(withRunId(typedBody), { ok: true, response: "echo:fetch", sessionKey: "main" });
	});
});

// ---------------------------------------------------------------- config mistakes

describe("config mistakes are constructor errors naming the field", () => {
	const base = () => ({ bind: "127.0.0.1", port: 0, session: { idleMinutes: 30, maxQueuePerSession: 8 }, webhook: { enabled: false, basePath: "/webhook" } });
	const make = (config) =>
		new GatewayRuntime({ config, primarySessionKey: "main", primarySession: recordingSession("main"), createSession: async (k) => recordingSession(k) });

	const cases = [
		["an unknown top-level field (sesion)", (c) => ({ ...c, sesion: { idleMinutes: 1 } }), /^Invalid config\.sesion: unknown field/],
		["an unknown nested field (session.idleMinute)", (c) => ({ ...c, session: { ...c.session, idleMinute: 5 } }), /^Invalid config\.session\.idleMinute: unknown field/],
		["an unknown field in limits", (c) => ({ ...c, limits: { maxBodyByte: 5 } }), /^Invalid config\.limits\.maxBodyByte: unknown field/],
		["an unknown field in webhook", (c) => ({ ...c, webhook: { ...c.webhook, secrett: "x" } }), /^Invalid config\.webhook\.secrett: unknown field/],
		["bearerToken \"\"", (c) => ({ ...c, bearerToken: "" }), /^Invalid config\.bearerToken: must not be empty/],
		["webhook.secret \"\"", (c) => ({ ...c, webhook: { ...c.webhook, secret: "" } }), /^Invalid config\.webhook\.secret: must not be empty/],
		["a CORS origin with a trailing slash", (c) => ({ ...c, cors: { origins: ["http://app.test:5173/"] } }), /^Invalid config\.cors\.origins\[0\]/],
		["a CORS origin with a path (second entry)", (c) => ({ ...c, cors: { origins: ["http://ok.test", "http://app.test/chat"] } }), /^Invalid config\.cors\.origins\[1\]/],
		["a CORS origin with a query", (c) => ({ ...c, cors: { origins: ["http://app.test?x=1"] } }), /^Invalid config\.cors\.origins\[0\]/],
		["a CORS origin without a scheme", (c) => ({ ...c, cors: { origins: ["app.test:5173"] } }), /^Invalid config\.cors\.origins\[0\]/],
		["webhook.sessionKeyPrefix \"\"", (c) => ({ ...c, webhook: { ...c.webhook, sessionKeyPrefix: "" } }), /^Invalid config\.webhook\.sessionKeyPrefix/],
	];
	for (const [name, change, pattern] of cases) {
		test(name, () => {
			assert.throws(() => make(change(base())), (e) => {
				assert.ok(e instanceof Error, String(e));
				assert.match(e.message, pattern);
				return true;
			});
		});
	}

	test("the new fields with valid values are accepted, idleMinutes 0 included", async () => {
		const rt = make({
			...base(),
			allowedHosts: ["gw.test"],
			session: { idleMinutes: 0, maxQueuePerSession: 8 },
			webhook: { enabled: true, basePath: "/webhook", secret: "s", allowRequestSessionKey: true, sessionKeyPrefix: "hook:" },
			limits: { bodyTimeoutMs: 1000, headerTimeoutMs: 1000, maxConnections: 20, reserveConnections: 4, maxChatBodyBytes: 1 << 20, maxImages: 2, maxImageBytes: 1024 },
			cors: { origins: ["http://app.test:5173", "https://x.example"] },
		});
		await rt.start();
		try {
			const port = rt.getAddress().port;
			const r = await send(port, "GET", "/health", { host: "gw.test" });
			assert.equal(r.status, 200, show(r));
		} finally {
			await rt.stop();
		}
	});
});
