// The gateway through real clients: the curl binary for the JSON routes and webhooks, the
// `eventsource` package (v4) for the event stream, and raw node:net sockets for what no
// polite client sends — garbage request lines, headers dribbled slower than
// limits.headerTimeoutMs, pipelined requests, and more connections than limits.maxConnections
// and its reserve (limits.reserveConnections).
//
// Run: node --test __test__/http-clients.test.mjs

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { EventSource } from "eventsource";
import { startGateway } from "./support/gateway.mjs";
import { JSON_TYPE, parseResponses, rawConnect, request } from "./support/http.mjs";
import { openSse } from "./support/sse.mjs";
import { waitUntil } from "./support/wait.mjs";
import { assertNoRunId, bodyWithRunId, withRunId } from "./support/runs.mjs";

const CURL = "/usr/bin/curl";
const TOKEN = "client-token-1";
const SECRET = "client-hook-secret";

/**
 * Runs curl with `args` (the URL included) and parses its `-i` output:
 * {status, headers (lower-cased), body, json}. 1xx interim blocks are skipped.
 */
function curl(args) {
	return new Promise((resolve, reject) => {
		execFile(
			CURL,
			["-sS", "-i", "--max-time", "20", "--noproxy", "*", "-H", "Expect:", ...args],
			{ encoding: "latin1", maxBuffer: 32 * 1024 * 1024 },
			(error, stdout, stderr) => {
				if (error) {
					reject(new Error(`curl ${args.join(" ")} failed: ${error.message} ${stderr}`));
					return;
				}
				let text = stdout;
				for (;;) {
					const end = text.indexOf("\r\n\r\n");
					if (end === -1) {
						reject(new Error(`curl output without a header block: ${JSON.stringify(stdout.slice(0, 300))}`));
						return;
					}
					const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
					const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(statusLine)?.[1]);
					const body = text.slice(end + 4);
					if (status >= 100 && status < 200) {
						text = body;
						continue;
					}
					const headers = {};
					for (const line of lines) {
						const i = line.indexOf(":");
						if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
					}
					const utf8 = Buffer.from(body, "latin1").toString("utf8");
					let json;
					try {
						json = utf8 ? JSON.parse(utf8) : undefined;
					} catch {
						json = undefined;
					}
					resolve({ status, headers, body: utf8, json });
					return;
				}
			},
		);
	});
}

describe("curl against the JSON routes and webhooks", { timeout: 40000 }, () => {
	let gw;
	let base;
	let tmp;
	const bearer = ["-H", `Authorization: Bearer ${TOKEN}`];
	before(async () => {
		gw = await startGateway({
			config: {
				bearerToken: TOKEN,
				webhook: { enabled: true, basePath: "/webhook", secret: SECRET },
				limits: { maxBodyBytes: 2048 },
			},
		});
		base = gw.base;
		tmp = await mkdtemp(join(tmpdir(), "pi-gw-curl-"));
	});
	after(async () => {
		await gw?.stop();
		if (tmp) await rm(tmp, { recursive: true, force: true });
	});

	test("curl GET /health answers ok and ready as JSON, without a token", async () => {
		const res = await curl([`${base}/health`]);
		assert.equal(res.status, 200);
		assert.equal(res.headers["content-type"], JSON_TYPE);
		assert.deepEqual(res.json, { ok: true, ready: true });
	});

	test("curl -I (HEAD) /health answers 200 with the JSON content-type", async () => {
		const res = await curl(["-I", `${base}/health`]);
		assert.equal(res.status, 200);
		assert.equal(res.headers["content-type"], JSON_TYPE);
		assert.equal(res.body, "");
	});

	test("curl without the bearer token gets 401, with it the session list", async () => {
		const denied = await curl([`${base}/sessions`]);
		assert.equal(denied.status, 401);
		assert.equal(denied.headers["content-type"], JSON_TYPE);
		assert.deepEqual(denied.json, { error: "Unauthorized" });
		const wrong = await curl(["-H", `Authorization: Bearer ${TOKEN}-nope`, `${base}/sessions`]);
		assert.equal(wrong.status, 401);
		const ok = await curl([...bearer, `${base}/sessions`]);
		assert.equal(ok.status, 200);
		assert.deepEqual(ok.json, { sessions: gw.rt.listSessions() });
	});

	test("curl -d posts a message and gets the GatewayMessageResult after the run", async () => {
		const before = gw.prompts();
		const res = await curl([...bearer, "-H", "Content-Type: application/json", "-d", '{"text":"hi from curl"}', `${base}/sessions/curl-key/messages`]);
		assert.equal(res.status, 200);
		assert.equal(res.headers["content-type"], JSON_TYPE);
		assert.deepEqual(bodyWithRunId(res), { ok: true, response: "ok", sessionKey: "curl-key" });
		assert.equal(gw.prompts(), before + 1);
		const snap = await curl([...bearer, `${base}/sessions/curl-key`]);
		assert.equal(snap.status, 200);
		assert.equal(snap.json.session.messageCount, 2);
		assert.equal(snap.json.session.queueDepth, 0);
		assert.equal(snap.json.session.processing, false);
	});

	test("curl with invalid or non-object JSON gets 400 Invalid JSON body and nothing runs", async () => {
		const before = gw.prompts();
		for (const data of ["{oops", "[1]"]) {
			const res = await curl([...bearer, "-H", "Content-Type: application/json", "-d", data, `${base}/sessions/curl-key/messages`]);
			assert.equal(res.status, 400, data);
			assert.equal(res.headers["content-type"], JSON_TYPE);
			assert.deepEqual(res.json, { error: "Invalid JSON body" });
		}
		const blank = await curl([...bearer, "-d", '{"text":" "}', `${base}/sessions/curl-key/messages`]);
		assert.equal(blank.status, 400);
		assert.deepEqual(blank.json, { error: "Missing text" });
		assert.equal(gw.prompts(), before);
	});

	test("curl uploading a file past limits.maxBodyBytes gets 413 and nothing runs", async () => {
		const file = join(tmp, "big.json");
		await writeFile(file, JSON.stringify({ text: "z".repeat(4096) }));
		const before = gw.prompts();
		const res = await curl([...bearer, "-H", "Content-Type: application/json", "--data-binary", `@${file}`, `${base}/sessions/curl-key/messages`]);
		assert.equal(res.status, 413);
		assert.equal(res.headers["content-type"], JSON_TYPE);
		assert.equal(typeof res.json.error, "string");
		assert.equal(gw.prompts(), before);
	});

	test("curl -X PUT on a session is 405 with an Allow header", async () => {
		const res = await curl([...bearer, "-X", "PUT", `${base}/sessions/curl-key`]);
		assert.equal(res.status, 405);
		assert.deepEqual(res.json, { error: "Method not allowed" });
		assert.equal(res.headers.allow, "GET, HEAD, PATCH, DELETE");
		assert.ok(gw.rt.getSession("curl-key"));
	});

	test("curl -X DELETE deletes a session (SPEC §12); the primary is refused 409", async () => {
		const made = await curl([...bearer, "-H", "Content-Type: application/json", "-d", '{"text":"hi"}', `${base}/sessions/curl-gone/messages`]);
		assert.equal(made.status, 200);
		assert.ok(gw.rt.getSession("curl-gone"));
		const res = await curl([...bearer, "-X", "DELETE", `${base}/sessions/curl-gone`]);
		assert.equal(res.status, 200);
		assert.deepEqual(res.json, { ok: true, sessionKey: "curl-gone", purged: false });
		assert.equal(gw.rt.getSession("curl-gone"), undefined);
		const primary = await curl([...bearer, "-X", "DELETE", `${base}/sessions/main`]);
		assert.equal(primary.status, 409);
		assert.deepEqual(primary.json, { error: "The primary session cannot be deleted" });
	});

	test("curl abort, reset and unknown keys: ok:false when idle, ok:true, and 404", async () => {
		const abort = await curl([...bearer, "-X", "POST", `${base}/sessions/curl-key/abort`]);
		assert.equal(abort.status, 200);
		assert.deepEqual(abort.json, { ok: false });
		const unknown = await curl([...bearer, "-X", "POST", `${base}/sessions/no-such-key/abort`]);
		assert.equal(unknown.status, 404);
		assert.deepEqual(unknown.json, { error: "Session not found: no-such-key" });
		const get = await curl([...bearer, `${base}/sessions/no-such-key`]);
		assert.equal(get.status, 404);
		assert.equal(gw.rt.getSession("no-such-key"), undefined);
		const reset = await curl([...bearer, "-X", "POST", `${base}/sessions/curl-key/reset`]);
		assert.equal(reset.status, 200);
		assert.deepEqual(reset.json, { ok: true });
		const bad = await curl([...bearer, "-X", "POST", `${base}/sessions/%ZZ/reset`]);
		assert.equal(bad.status, 400);
		assert.deepEqual(bad.json, { error: "Invalid session key" });
	});

	test("curl posts a webhook with the secret header, and is refused without it", async () => {
		const before = gw.prompts();
		const denied = await curl(["-d", '{"text":"deploy"}', `${base}/webhook/ci`]);
		assert.equal(denied.status, 401);
		assert.deepEqual(denied.json, { error: "Invalid webhook secret" });
		assertNoRunId(denied);
		const wrong = await curl(["-H", "x-pi-webhook-secret: guess", "-d", '{"text":"deploy"}', `${base}/webhook/ci`]);
		assert.equal(wrong.status, 401);
		assert.equal(gw.prompts(), before);
		const ok = await curl(["-H", `x-pi-webhook-secret: ${SECRET}`, "-H", "Content-Type: application/json", "-d", '{"text":"deploy","sender":"ci-bot"}', `${base}/webhook/ci`]);
		assert.equal(ok.status, 200);
		assert.equal(ok.headers["content-type"], JSON_TYPE);
		assert.deepEqual(bodyWithRunId(ok), { ok: true, response: "ok", sessionKey: "webhook:ci:ci-bot" });
		assert.equal(gw.prompts(), before + 1);
		const blank = await curl(["-H", `x-pi-webhook-secret: ${SECRET}`, "-d", '{"text":""}', `${base}/webhook`]);
		assert.equal(blank.status, 400);
		assert.deepEqual(blank.json, { error: "Missing text" });
	});

	test("curl to /webhook-x is not a webhook: it needs the bearer token and is 404", async () => {
		const before = gw.prompts();
		const noBearer = await curl(["-H", `x-pi-webhook-secret: ${SECRET}`, "-d", '{"text":"x"}', `${base}/webhook-x`]);
		assert.equal(noBearer.status, 401);
		assert.deepEqual(noBearer.json, { error: "Unauthorized" });
		const withBearer = await curl([...bearer, "-H", `x-pi-webhook-secret: ${SECRET}`, "-d", '{"text":"x"}', `${base}/webhook-x`]);
		assert.equal(withBearer.status, 404);
		assert.deepEqual(withBearer.json, { error: "Not found" });
		assert.equal(gw.prompts(), before);
	});
});

describe("the eventsource package against GET /sessions/:key/events", { timeout: 30000 }, () => {
	let gw;
	before(async () => {
		gw = await startGateway({ config: { bearerToken: TOKEN } });
	});
	after(() => gw?.stop());

	const withToken = (input, init) =>
		fetch(input, { ...init, headers: { ...init?.headers, authorization: `Bearer ${TOKEN}` } });

	test("EventSource with the bearer token (custom fetch) receives hello, then the run's events with ids", async () => {
		const es = new EventSource(`${gw.base}/sessions/es-key/events`, { fetch: withToken });
		const messages = [];
		let notify = () => {};
		es.onmessage = (e) => {
			messages.push({ id: e.lastEventId, data: JSON.parse(e.data) });
			notify();
		};
		const waitForType = (type) =>
			waitUntil(() => messages.find((m) => m.data.type === type), { timeoutMs: 10000, message: `a ${type} event` });
		try {
			await waitForType("hello");
			assert.equal(messages[0].data.type, "hello");
			assert.equal(messages[0].data.sessionKey, "es-key");
			const reply = request(gw.port, "POST", "/sessions/es-key/messages", {
				headers: { authorization: `Bearer ${TOKEN}` },
				body: { text: "/stream 5" },
			});
			const complete = await waitForType("message_complete");
			const res = await reply;
			assert.equal(res.status, 200);
			const tokens = messages.filter((m) => m.data.type === "token");
			assert.equal(tokens.length, 5);
			assert.equal(complete.data.text, tokens.map((t) => t.data.delta).join(""));
			assert.equal(res.json.response, complete.data.text);
			// The run's events come between run_start and run_end, each with its runId.
			const { runId } = res.json;
			const types = messages.map((m) => m.data.type);
			const start = messages.findIndex((m) => m.data.type === "run_start");
			assert.deepEqual(messages[start].data, { type: "run_start", sessionKey: "es-key", runId }, types.join(","));
			await waitForType("run_end");
			const end = messages.findIndex((m) => m.data.type === "run_end");
			assert.deepEqual(messages[end].data, { type: "run_end", sessionKey: "es-key", runId, status: "succeeded" });
			assert.ok(start < messages.indexOf(tokens[0]) && messages.indexOf(complete) < end, types.join(","));
			for (const m of [...tokens, complete]) assert.equal(m.data.runId, runId);
			// lastEventId carries the frame id: numeric and strictly increasing.
			const ids = messages.map((m) => Number(m.id));
			assert.ok(ids.every((id) => Number.isInteger(id) && id > 0), `ids: ${ids}`);
			assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]), `ids: ${ids}`);
		} finally {
			es.close();
		}
	});

	test("EventSource without the token fails with 401 and stops", async () => {
		const es = new EventSource(`${gw.base}/sessions/es-key/events`);
		try {
			const error = await new Promise((resolve) => {
				es.onerror = resolve;
			});
			assert.equal(error.code, 401);
			assert.equal(es.readyState, EventSource.CLOSED);
		} finally {
			es.close();
		}
	});
});

describe("raw sockets: malformed HTTP, slow headers, pipelining", { timeout: 40000 }, () => {
	let gw;
	before(async () => {
		gw = await startGateway({ config: { limits: { headerTimeoutMs: 300 }, sse: { heartbeatMs: 100 } } });
	});
	after(() => gw?.stop());

	async function healthy() {
		const res = await request(gw.port, "GET", "/health");
		assert.equal(res.status, 200);
		assert.deepEqual(res.json, { ok: true, ready: true });
	}

	test("a garbage request line gets 400 and the server keeps serving", async () => {
		for (const garbage of ["HELLO\r\n\r\n", "GET\r\n\r\n", "\x00\x01\x02\x03 nonsense \xff\r\n\r\n", "GET /health HTTP/9.9\r\n\r\n"]) {
			const conn = await rawConnect(gw.port);
			try {
				await conn.write(garbage);
				await conn.waitForData((d) => /^HTTP\/1\.[01] \d{3}/.test(d) || conn.isClosed, 5000).catch(() => {});
				await Promise.race([conn.closed, delay(5000, undefined, { ref: false })]);
				const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(conn.data)?.[1]);
				assert.ok(status >= 400 && status < 600, `${JSON.stringify(garbage)} → ${JSON.stringify(conn.data.slice(0, 120))}`);
				if (garbage === "HELLO\r\n\r\n") assert.equal(status, 400);
				assert.ok(conn.isClosed, "the server closes a connection it cannot parse");
			} finally {
				conn.destroy();
			}
			await healthy();
		}
	});

	test("a request head past the header size limit is refused and the server keeps serving", async () => {
		const conn = await rawConnect(gw.port);
		try {
			await conn.write(`GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: ${"a".repeat(512 * 1024)}\r\n\r\n`);
			await Promise.race([conn.closed, delay(5000, undefined, { ref: false })]);
			assert.ok(conn.isClosed);
			assert.doesNotMatch(conn.data, /^HTTP\/1\.1 200/);
		} finally {
			conn.destroy();
		}
		await healthy();
	});

	test("a client sending headers slower than limits.headerTimeoutMs is cut off", async () => {
		// Taken before connecting, so `elapsed` is never shorter than the server's own clock.
		const started = Date.now();
		const conn = await rawConnect(gw.port);
		try {
			await conn.write("GET /health HTTP/1.1\r\nHost: localhost\r\n");
			// One header line every 100 ms for up to 6 s: far past the 300 ms allowed.
			for (let i = 0; i < 60 && !conn.isClosed; i++) {
				await delay(100);
				if (!conn.isClosed) conn.socket.write(`X-Slow-${i}: y\r\n`);
			}
			const elapsed = Date.now() - started;
			assert.ok(conn.isClosed, "the slow client is still connected after 6 s");
			assert.ok(elapsed >= 250, `cut off after ${elapsed} ms, before the header timeout`);
			assert.ok(elapsed < 5000, `cut off only after ${elapsed} ms`);
			assert.doesNotMatch(conn.data, /^HTTP\/1\.1 200/);
		} finally {
			conn.destroy();
		}
		await healthy();
	});

	test("a client that connects and sends nothing is cut off after limits.headerTimeoutMs", async () => {
		const conn = await rawConnect(gw.port);
		try {
			const closed = await Promise.race([conn.closed.then(() => true), delay(5000, undefined, { ref: false }).then(() => false)]);
			assert.ok(closed, "an idle connection without a request is still open after 5 s");
			assert.equal(conn.data.startsWith("HTTP/1.1 200"), false);
		} finally {
			conn.destroy();
		}
	});

	test("a long-lived event stream is not cut off by the header timeout", async () => {
		const sse = await openSse(gw.port, "/sessions/main/events");
		try {
			await sse.waitFor((f) => f.data?.type === "hello");
			await delay(1000);
			assert.equal(sse.isEnded, false, "the stream ended");
			assert.ok(sse.frames.some((f) => f.comment === "ping"), "heartbeats keep flowing");
		} finally {
			sse.close();
		}
	});

	test("pipelined requests on one socket get their responses in order", async () => {
		const conn = await rawConnect(gw.port);
		try {
			const body = JSON.stringify({ text: "piped" });
			await conn.write(
				"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n" +
					"GET /sessions/pipe HTTP/1.1\r\nHost: localhost\r\n\r\n" +
					`POST /sessions/pipe/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
					"HEAD /health HTTP/1.1\r\nHost: localhost\r\n\r\n" +
					"GET /sessions/pipe HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
			);
			await Promise.race([conn.closed, delay(10000, undefined, { ref: false })]);
			// HEAD carries a content-length but no body: split it out by hand.
			const [head1, rest] = splitAfterHead(conn.data, 3);
			const first = parseResponses(head1);
			assert.deepEqual(
				first.map((r) => r.status),
				[200, 404, 200],
				conn.data.slice(0, 600),
			);
			assert.deepEqual(JSON.parse(first[0].body), { ok: true, ready: true });
			assert.deepEqual(JSON.parse(first[1].body), { error: "Session not found: pipe" });
			const piped = JSON.parse(first[2].body);
			assert.deepEqual(withRunId(piped), { ok: true, response: "ok", sessionKey: "pipe" });
			assert.equal(first[2].headers["x-run-id"], piped.runId);
			const headEnd = rest.indexOf("\r\n\r\n");
			assert.match(rest.slice(0, headEnd), /^HTTP\/1\.1 200/);
			const last = parseResponses(rest.slice(headEnd + 4));
			assert.equal(last.length, 1, JSON.stringify(rest));
			assert.equal(last[0].status, 200);
			assert.equal(JSON.parse(last[0].body).session.messageCount, 2);
		} finally {
			conn.destroy();
		}
	});
});

/** Splits raw response text after the first `n` complete (non-HEAD) responses. */
function splitAfterHead(text, n) {
	let consumed = 0;
	let rest = text;
	for (let i = 0; i < n; i++) {
		const [r] = parseResponses(rest);
		assert.ok(r, `response ${i + 1} incomplete: ${JSON.stringify(text.slice(0, 600))}`);
		const headEnd = rest.indexOf("\r\n\r\n");
		const len = headEnd + 4 + Number(r.headers["content-length"] ?? 0);
		consumed += len;
		rest = rest.slice(len);
	}
	return [text.slice(0, consumed), rest];
}

describe("limits.maxConnections", { timeout: 30000 }, () => {
	let gw;
	before(async () => {
		gw = await startGateway({ config: { limits: { maxConnections: 5, reserveConnections: 1 } } });
	});
	after(() => gw?.stop());

	/** A connection of the reserve: sends `head`, reads one answer, and sees the server close it (no keep-alive). */
	async function throughReserve(head) {
		return waitUntil(
			async () => {
				const conn = await rawConnect(gw.port);
				try {
					conn.socket.write(head);
					await Promise.race([conn.closed, delay(5000, undefined, { ref: false })]);
					assert.ok(conn.isClosed, "a reserve connection is closed after its answer");
					// Empty: the previous reserve connection had not left yet, so this one was closed at accept.
					return conn.data ? parseResponses(conn.data) : null;
				} finally {
					conn.destroy();
				}
			},
			{ timeoutMs: 5000, intervalMs: 50, message: "a reserve connection to be answered" },
		);
	}

	test("past limits.maxConnections a reserve of limits.reserveConnections answers /health and 503 to the rest, past it a new connection is closed, and /health works again once they go", async () => {
		const open = [];
		try {
			for (let i = 0; i < 5; i++) {
				const conn = await rawConnect(gw.port);
				open.push(conn);
				await conn.write("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
				await conn.waitForData((d) => parseResponses(d).length === 1);
				assert.equal(parseResponses(conn.data)[0].status, 200);
			}
			// The sixth is in the reserve: GET /health answers, with keep-alive off.
			const [health, ...moreHealth] = await throughReserve("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
			assert.equal(moreHealth.length, 0);
			assert.equal(health.status, 200);
			assert.equal(health.headers.connection, "close");
			assert.deepEqual(JSON.parse(health.body), { ok: true, ready: true });
			// HEAD /health too.
			const headRes = await waitUntil(
				async () => {
					const conn = await rawConnect(gw.port);
					try {
						conn.socket.write("HEAD /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
						await Promise.race([conn.closed, delay(5000, undefined, { ref: false })]);
						return conn.data || null;
					} finally {
						conn.destroy();
					}
				},
				{ timeoutMs: 5000, intervalMs: 50, message: "HEAD /health through the reserve" },
			);
			assert.match(headRes, /^HTTP\/1\.1 200 /);
			assert.ok(headRes.endsWith("\r\n\r\n"), `HEAD has no body: ${JSON.stringify(headRes)}`);
			// Anything else in the reserve: 503 Too many connections, Retry-After: 1, and nothing runs.
			const prompts = gw.prompts();
			const body = JSON.stringify({ text: "through the reserve" });
			for (const head of [
				"GET /sessions HTTP/1.1\r\nHost: localhost\r\n\r\n",
				"GET /ready HTTP/1.1\r\nHost: localhost\r\n\r\n",
				`POST /sessions/main/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
			]) {
				const [busy] = await throughReserve(head);
				assert.equal(busy.status, 503, head);
				assert.equal(busy.headers["retry-after"], "1", head);
				assert.equal(busy.headers["content-type"], JSON_TYPE, head);
				assert.deepEqual(JSON.parse(busy.body), { error: "Too many connections" }, head);
			}
			assert.equal(gw.prompts(), prompts, "nothing ran through the reserve");

			// With the reserve held by an idle connection, the next is accepted by the kernel and dropped unanswered.
			await delay(100); // the last reserve connection leaves the server
			const holder = await rawConnect(gw.port);
			open.push(holder);
			await delay(100);
			const past = await rawConnect(gw.port);
			try {
				past.socket.write("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
				const closed = await Promise.race([past.closed.then(() => true), delay(5000, undefined, { ref: false }).then(() => false)]);
				assert.ok(closed, "the connection past the reserve is still open after 5 s");
				assert.equal(past.data, "", "the connection past the reserve got an answer");
			} finally {
				past.destroy();
			}
			// The five keep working.
			await open[0].write("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
			await open[0].waitForData((d) => parseResponses(d).length === 2);
			assert.equal(parseResponses(open[0].data)[1].status, 200);
		} finally {
			for (const c of open) c.destroy();
		}
		const res = await waitUntil(
			async () => {
				try {
					const r = await request(gw.port, "GET", "/health", { timeoutMs: 2000 });
					return r.status === 200 ? r : null;
				} catch {
					return null;
				}
			},
			{ timeoutMs: 10000, intervalMs: 50, message: "/health to answer after the connections closed" },
		);
		assert.deepEqual(res.json, { ok: true, ready: true });
		// Once they are gone, a message runs again on an ordinary connection.
		const msg = await request(gw.port, "POST", "/sessions/main/messages", { body: { text: "back" } });
		assert.equal(msg.status, 200, msg.text);
		assert.equal(msg.json.ok, true);
	});
});
