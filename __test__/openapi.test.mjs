// The OpenAPI document (src/http/openapi.json, served as GET /openapi.json) — SPEC section 14.
// - it is a valid OpenAPI 3.1 document (@apidevtools/swagger-parser);
// - it has exactly the routes of ROUTES below, the router's table, and each path's `x-allow`
//   is what its 405 answers; every documented operation reaches a route on a running gateway
//   (not the catch-all 404) and every other method gets the 405 the document says;
// - the checker of support/openapi.mjs (which support/http.mjs's request() runs on every
//   response of the suites) rejects what the document does not allow;
// - GET /openapi.json serves the file byte for byte without the bearer token; GET /metrics needs
//   the token unless metrics.public.
// Every request() here is validated against the document as well.
//
// Run: node --test __test__/openapi.test.mjs

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import SwaggerParser from "@apidevtools/swagger-parser";
import { startGateway, suiteGateway } from "./support/gateway.mjs";
import { request } from "./support/http.mjs";
import { checkResponse, doc, findOperation, matchPath, OPENAPI_URL } from "./support/openapi.mjs";

const TOKEN = "openapi-token-1";
const SECRET = "openapi-hook-secret";
const auth = { authorization: `Bearer ${TOKEN}` };
const JSON_TYPE = "application/json; charset=utf-8";
const NOT_FOUND = { error: "Not found" };

// The router's routes (src/http/router.rs): method, path template, an example path, and a body.
// HEAD is answered wherever GET is; the document lists HEAD apart where the brief asks for it.
const K = "/sessions/{key}";
const ROUTES = [
	["GET", "/health", "/health"],
	["HEAD", "/health", "/health"],
	["GET", "/ready", "/ready"],
	["GET", "/metrics", "/metrics"],
	["GET", "/openapi.json", "/openapi.json"],
	["GET", "/sessions", "/sessions"],
	["GET", "/models", "/models"],
	["GET", K, "/sessions/main"],
	["HEAD", K, "/sessions/main"],
	["PATCH", K, "/sessions/ghost", { name: "n" }],
	["DELETE", K, "/sessions/ghost"],
	["GET", `${K}/messages`, "/sessions/main/messages"],
	["POST", `${K}/messages`, "/sessions/main/messages", { text: "hello" }],
	["GET", `${K}/stats`, "/sessions/main/stats"],
	["POST", `${K}/compact`, "/sessions/ghost/compact", {}],
	["PUT", `${K}/model`, "/sessions/ghost/model", { provider: "p", id: "m" }],
	["PUT", `${K}/thinking`, "/sessions/ghost/thinking", { level: "low" }],
	["GET", `${K}/events`, null],
	["HEAD", `${K}/events`, "/sessions/main/events"],
	["GET", `${K}/runs`, "/sessions/main/runs"],
	["GET", `${K}/runs/{runId}`, "/sessions/main/runs/r-1"],
	["DELETE", `${K}/runs/{runId}`, "/sessions/main/runs/r-1"],
	["GET", `${K}/runs/{runId}/events`, "/sessions/main/runs/r-1/events"],
	["GET", `${K}/queue`, "/sessions/main/queue"],
	["DELETE", `${K}/queue`, "/sessions/main/queue"],
	["POST", `${K}/chat`, "/sessions/main/chat", { text: "hello" }],
	["GET", `${K}/chat/{chatId}/stream`, "/sessions/main/chat/c-1/stream"],
	["POST", `${K}/chat/{chatId}/stop`, "/sessions/main/chat/c-1/stop", {}],
	["GET", `${K}/approvals`, "/sessions/main/approvals"],
	["POST", `${K}/approvals/{approvalId}`, "/sessions/main/approvals/a-1", { approved: true }],
	["POST", `${K}/abort`, "/sessions/main/abort"],
	["POST", `${K}/reset`, "/sessions/ghost/reset"],
	["POST", "/webhook", "/webhook", { text: "hello" }],
	["POST", "/webhook/{route}", "/webhook/ci/builds", { text: "hello" }],
];
/** Routes the currently built addon may lack until it is rebuilt with them (probed apart). */
const NEW_ROUTES = new Set(["/metrics", "/openapi.json"]);
const HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

function allowOf(template) {
	const methods = new Set(ROUTES.filter(([, t]) => t === template).map(([m]) => m));
	if (methods.has("GET")) methods.add("HEAD");
	return HTTP_METHODS.filter((m) => methods.has(m)).join(", ");
}

describe("the document", () => {
	test("is a valid OpenAPI 3.1 document (swagger-parser)", async () => {
		assert.equal(doc.openapi, "3.1.0");
		const api = await SwaggerParser.validate(structuredClone(doc));
		assert.ok(api.paths["/health"]);
	});

	test("has exactly the router's routes, each path's x-allow is what its 405 lists, and operation ids are unique", () => {
		const documented = [];
		const ids = new Set();
		for (const [template, item] of Object.entries(doc.paths)) {
			for (const method of Object.keys(item).filter((k) => !k.startsWith("x-") && k !== "parameters")) {
				documented.push(`${method.toUpperCase()} ${template}`);
				const id = item[method].operationId;
				assert.ok(id && !ids.has(id), `operationId ${id} of ${method} ${template}`);
				ids.add(id);
			}
			assert.equal(item["x-allow"], allowOf(template), `x-allow of ${template}`);
		}
		const table = ROUTES.map(([m, t]) => `${m} ${t}`);
		assert.deepEqual([...documented].sort(), [...new Set(table)].sort());
	});

	test("every operation documents its failures: 403 always, 401 where the bearer token applies, 400/413/415 where a body is read", () => {
		for (const [template, item] of Object.entries(doc.paths)) {
			for (const [method, op] of Object.entries(item).filter(([k]) => !k.startsWith("x-"))) {
				const where = `${method} ${template}`;
				const codes = Object.keys(op.responses);
				assert.ok(codes.includes("403"), `${where}: 403`);
				assert.ok(codes.includes("500"), `${where}: 500`);
				const isPublic = Array.isArray(op.security) && op.security.length === 0;
				assert.equal(codes.includes("401"), !isPublic, `${where}: 401 unless public`);
				if (op.requestBody) for (const c of ["400", "408", "413", "415"]) assert.ok(codes.includes(c), `${where}: ${c}`);
				if (template.startsWith("/sessions/")) assert.ok(codes.includes("400"), `${where}: 400 (invalid session key)`);
				if (["post", "put", "patch", "delete"].includes(method)) assert.ok(codes.includes("415"), `${where}: 415`);
			}
		}
		const messages = doc.paths[`${K}/messages`].post;
		assert.ok(messages.requestBody.required);
		const body = doc.components.schemas.MessageRequest;
		assert.deepEqual(body.required, ["text"]);
		assert.deepEqual(body.properties.callback, { $ref: "#/components/schemas/Callback" });
		assert.deepEqual(doc.components.schemas.Callback.required, ["url"]);
		for (const h of ["Location", "x-run-id", "Idempotent-Replayed"]) assert.ok(messages.responses["202"].headers[h], `202 ${h}`);
		assert.ok(doc.components.responses.Unavailable.headers["Retry-After"]);
		assert.deepEqual(doc.components.schemas.ErrorBody.required, ["error"]);
		assert.equal(doc.components.schemas.ErrorBody.additionalProperties, false);
	});

	test("request paths map to the document: templates, webhook bases, HEAD, other methods, and the catch-all", () => {
		assert.equal(matchPath("/sessions/a%2Fb/runs/r1/events?after=3"), `${K}/runs/{runId}/events`);
		assert.equal(matchPath("/sessions/main"), K);
		assert.equal(matchPath("/sessions/"), undefined);
		assert.equal(matchPath("/sessions/k/bogus"), undefined);
		assert.equal(matchPath("/sessions/k/runs/"), undefined);
		assert.equal(matchPath("/webhook"), "/webhook");
		assert.equal(matchPath("/hooks/"), "/webhook");
		assert.equal(matchPath("/hooks/slack/x"), "/webhook/{route}");
		assert.equal(matchPath("/webhooks-x"), undefined);
		assert.equal(findOperation("HEAD", "/sessions/k/messages").operation.operationId, "getHistory");
		assert.equal(findOperation("HEAD", "/sessions/k").operation.operationId, "headSession");
		assert.equal(findOperation("PUT", "/sessions/k").what.includes("x-other-methods"), true);
		assert.equal(findOperation("GET", "/__test/panic").what, "x-unmatched-paths");
	});

	test("the checker refuses what the document does not say", () => {
		const json = (status, body, extra = {}) => ({ status, headers: { "content-type": JSON_TYPE, ...extra }, text: JSON.stringify(body) });
		const refuses = (req, pattern) => assert.throws(() => checkResponse(req), pattern);
		checkResponse({ method: "GET", path: "/health", ...json(200, { ok: true, ready: true }) });
		refuses({ method: "GET", path: "/health", ...json(200, { ok: true }) }, /getHealth.*required property 'ready'/);
		refuses({ method: "GET", path: "/health", ...json(418, {}) }, /status 418 is not documented/);
		refuses({ method: "GET", path: "/sessions/x", ...json(404, { ok: false, error: "Session not found: x" }) }, /additional properties/);
		refuses({ method: "GET", path: "/sessions/x/events", ...json(200, {}) }, /content type "application\/json; charset=utf-8" is not documented/);
		refuses({ method: "PUT", path: "/sessions/x", ...json(405, { error: "Method not allowed" }, { allow: "GET" }) }, /Allow is "GET"/);
		refuses({ method: "GET", path: "/nope", ...json(200, {}) }, /x-unmatched-paths.*status 200/);
		refuses({ method: "POST", path: "/sessions/x/messages", ...json(200, { ok: true, response: "", sessionKey: "x", extra: 1 }) }, /postMessage/);
		refuses({ method: "GET", path: "/sessions/x/chat/c/stream", status: 204, headers: {}, text: "x" }, /lists no body/);
		checkResponse({ method: "POST", path: "/sessions/x/messages", ...json(409, { ok: false, response: "", error: "Session busy", sessionKey: "x", runId: "r" }) });
		checkResponse({ method: "POST", path: "/hooks/a", ...json(429, { ok: false, response: "", error: "Queue full (1 pending).", sessionKey: "webhook:a:default" }) });
		checkResponse({ method: "HEAD", path: "/sessions/x/events", status: 200, headers: {}, text: "" });
		checkResponse({ method: "GET", path: "/__test/panic", ...json(500, { error: "Internal server error" }) });
	});
});

describe("a running gateway answers what the document says", () => {
	const gw = suiteGateway({
		config: { bearerToken: TOKEN, webhook: { enabled: true, basePath: "/webhook", secret: SECRET } },
	});

	test("every documented operation reaches its route (not the catch-all 404, not 405)", async () => {
		for (const [method, template, path, body] of ROUTES) {
			if (path === null || NEW_ROUTES.has(template)) continue;
			const headers = template.startsWith("/webhook") ? { "x-pi-webhook-secret": SECRET } : auth;
			const res = await request(gw.port, method, path, { headers, body });
			assert.notEqual(res.status, 405, `${method} ${path}: ${res.text}`);
			if (res.status === 404) assert.notDeepEqual(res.json, NOT_FOUND, `${method} ${path} fell through to the catch-all`);
		}
		const events = await request(gw.port, "GET", "/sessions/main/events?after=x", { headers: auth });
		assert.equal(events.status, 400);
	});

	test("every other method on a documented path is 405 with the path's x-allow", async () => {
		const samples = new Map(ROUTES.filter(([, t, p]) => p !== null && !NEW_ROUTES.has(t)).map(([, t, p]) => [t, p]));
		for (const [template, path] of samples) {
			const allowed = doc.paths[template]["x-allow"].split(", ");
			for (const method of HTTP_METHODS.filter((m) => !allowed.includes(m))) {
				const headers = template.startsWith("/webhook") ? { "x-pi-webhook-secret": SECRET } : auth;
				const res = await request(gw.port, method, path, { headers });
				assert.equal(res.status, 405, `${method} ${path}: ${res.text}`);
				assert.equal(res.headers.allow, doc.paths[template]["x-allow"], `${method} ${path}`);
			}
		}
	});

	test("unknown paths and the guards get the documented answers", async () => {
		for (const path of ["/", "/nope", "/sessions/", "/sessions/main/bogus", "/sessions/main/runs/", "/webhooks-x", "/sessions/main/chat/c/other"]) {
			const res = await request(gw.port, "GET", path, { headers: auth });
			assert.equal(res.status, 404, path);
			assert.deepEqual(res.json, NOT_FOUND, path);
		}
		assert.equal((await request(gw.port, "GET", "/nope")).status, 401);
		assert.equal((await request(gw.port, "DELETE", "/nope", { headers: auth })).status, 404);
		assert.equal((await request(gw.port, "GET", "/sessions/%zz", { headers: auth })).status, 400);
		assert.equal((await request(gw.port, "GET", "/sessions/main/runs/%zz", { headers: auth })).status, 400);
		const form = await request(gw.port, "POST", "/sessions/main/messages", { headers: { ...auth, "content-type": "text/plain" }, body: "hi" });
		assert.equal(form.status, 415);
		const foreign = await request(gw.port, "GET", "/sessions", { headers: { ...auth, origin: "http://evil.example" } });
		assert.equal(foreign.status, 403);
		const hook = await request(gw.port, "POST", "/webhook", { body: { text: "hi" } });
		assert.equal(hook.status, 401);
		assert.deepEqual(hook.json, { error: "Invalid webhook secret" });
	});

	test("a message with wait:false is 202 with Location and x-run-id, as documented", async () => {
		const res = await request(gw.port, "POST", "/sessions/main/messages?wait=false", { headers: auth, body: { text: "later" } });
		assert.equal(res.status, 202);
		assert.equal(res.headers.location, `/sessions/main/runs/${res.json.runId}`);
		assert.equal(res.headers["x-run-id"], res.json.runId);
	});
});

// These need an addon built with GET /openapi.json and GET /metrics (SPEC section 14).
describe("GET /openapi.json and GET /metrics", () => {
	const gw = suiteGateway({ config: { bearerToken: TOKEN } });

	test("GET /openapi.json serves the document byte for byte, as application/json, without the bearer token", async () => {
		const file = readFileSync(OPENAPI_URL);
		const res = await request(gw.port, "GET", "/openapi.json");
		assert.equal(res.status, 200, res.text.slice(0, 200));
		assert.equal(res.headers["content-type"].split(";")[0], "application/json");
		assert.ok(Buffer.from(res.text, "utf8").equals(file), "the served document differs from src/http/openapi.json");
		const withToken = await request(gw.port, "GET", "/openapi.json", { headers: auth });
		assert.equal(withToken.status, 200);
		const head = await request(gw.port, "HEAD", "/openapi.json");
		assert.equal(head.status, 200);
		assert.equal(head.text, "");
		const post = await request(gw.port, "POST", "/openapi.json", { headers: auth });
		assert.equal(post.status, 405);
	});

	test("GET /metrics needs the bearer token and answers Prometheus text", async () => {
		assert.equal((await request(gw.port, "GET", "/metrics")).status, 401);
		const res = await request(gw.port, "GET", "/metrics", { headers: auth });
		assert.equal(res.status, 200, res.text.slice(0, 200));
		assert.equal(res.headers["content-type"].split(";")[0], "text/plain");
		assert.match(res.text, /^# (HELP|TYPE) pi_gateway_/m);
	});

	test("with metrics.public, GET /metrics needs no token", async (t) => {
		const open = await startGateway({ t, config: { bearerToken: TOKEN, metrics: { public: true } } });
		const res = await request(open.port, "GET", "/metrics");
		assert.equal(res.status, 200, res.text.slice(0, 200));
		assert.equal((await request(open.port, "GET", "/sessions")).status, 401);
	});
});
