// Issue 11, "slow clients can't hold it", over raw sockets with small limits.
//
// Contract (/tmp/contract.md, "Slow clients"): the whole body must arrive within
// limits.bodyTimeoutMs of the handler starting to read it, else 408
// {"error":"Request body timed out (limit N ms)"} with Connection: close, and the connection
// closes; an idle keep-alive connection is closed after limits.headerTimeoutMs; past
// limits.maxConnections, up to limits.reserveConnections more are accepted into a reserve
// (keep-alive off) where GET/HEAD /health answers and anything else is 503
// {"error":"Too many connections"} with Retry-After: 1; past the reserve, closed at accept.
//
// Every socket is destroyed in `after`; the whole file takes well under a minute.
// Run: npm test -- __test__/slow-clients.test.mjs

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { build, connectRaw, msg, runCleanup, send, show, startSafe } from "./support/safe-util.mjs";
import { sleep } from "./support/wait.mjs";
import { bodyWithRunId, withRunId } from "./support/runs.mjs";

const SECRET = "slow-hook-secret";
const LIMIT_MS = 1000;
/** How late past a limit an answer or a close may come (timers, scheduling, a loaded CI box). */
const SLACK_MS = 1500;
const JSON_TYPE = "application/json; charset=utf-8";

const cleanup = [];
const sockets = new Set();
/** Gateway with 1 s body and head limits. */
let gw;

before(async () => {
	gw = await startSafe(cleanup, {
		config: {
			webhook: { enabled: true, secret: SECRET },
			limits: { bodyTimeoutMs: LIMIT_MS, headerTimeoutMs: LIMIT_MS, maxConnections: 20, reserveConnections: 4 },
		},
	});
});

after(async () => {
	for (const c of sockets) c.destroy();
	sockets.clear();
	await runCleanup(cleanup);
});

/** A raw connection that `after` destroys. */
async function open(port) {
	const c = await connectRaw(port);
	sockets.add(c);
	c.socket.once("close", () => sockets.delete(c));
	return c;
}

/** The head of a POST to `path` with `headers` (Host and a JSON content type added), no body. */
function head(port, path, headers) {
	return build("POST", path, { host: `127.0.0.1:${port}`, contentType: "application/json", headers });
}

/**
 * Sends a request like `send`, again while the answer is the reserve's 503 (the server may not
 * have seen the flood's sockets close yet, as a client honouring Retry-After would), for at most 3 s.
 */
async function sendOnceFree(port, method, path, opts) {
	const end = Date.now() + 3000;
	for (;;) {
		const r = await send(port, method, path, opts);
		if (r.status !== 503 || Date.now() > end) return r;
		await sleep(100);
	}
}

/** Asserts the 408 answer of the contract, and that it came after the limit, not long after. */
function assert408(res, sentAt, answeredAt, label) {
	assert.equal(res.status, 408, `${label}: ${res.status} ${res.body}`);
	assert.equal(res.headers["content-type"], JSON_TYPE, label);
	assert.deepEqual(JSON.parse(res.body.toString("utf8")), { error: `Request body timed out (limit ${LIMIT_MS} ms)` }, label);
	assert.equal(String(res.headers.connection).toLowerCase(), "close", `${label}: Connection header`);
	const ms = answeredAt - sentAt;
	assert.ok(ms >= LIMIT_MS - 100, `${label}: answered after ${ms} ms, before the ${LIMIT_MS} ms limit`);
	assert.ok(ms <= LIMIT_MS + SLACK_MS, `${label}: answered after ${ms} ms`);
}

/** Waits for one response and the close; asserts the 408 and that the socket closed soon after. */
async function expect408(c, sentAt, label, n = 1) {
	const rs = await c.waitResponses(n, LIMIT_MS + SLACK_MS + 1000);
	const answeredAt = Date.now();
	assert408(rs[n - 1], sentAt, answeredAt, label);
	const closedAt = await c.waitClose(1000);
	assert.ok(closedAt - sentAt <= LIMIT_MS + SLACK_MS + 500, `${label}: closed ${closedAt - sentAt} ms after the head`);
}

describe("a body that does not arrive is 408 after limits.bodyTimeoutMs", () => {
	test("silent: Content-Length 100, then nothing (messages, webhook, chat)", async () => {
		const before = gw.prompts();
		for (const [path, headers] of [
			["/sessions/main/messages", {}],
			["/sessions/slow-new/messages", {}],
			["/webhook", { "x-pi-webhook-secret": SECRET }],
			["/sessions/main/chat", {}],
		]) {
			const c = await open(gw.port);
			await c.write(head(gw.port, path, { ...headers, "Content-Length": "100" }));
			await expect408(c, Date.now(), `silent ${path}`);
		}
		assert.equal(gw.prompts(), before, "no prompt");
		assert.equal(gw.rt.getSession("slow-new"), undefined);
	});

	test("partial: 50 of 100 bytes, then nothing", async () => {
		const c = await open(gw.port);
		const sentAt = Date.now();
		await c.write(Buffer.concat([head(gw.port, "/sessions/main/messages", { "Content-Length": "100" }), Buffer.from('{"text":"' + "x".repeat(41))]));
		await expect408(c, sentAt, "partial body");
	});

	test("trickled: a byte every 300 ms", async () => {
		const body = JSON.stringify({ text: "t".repeat(80) });
		const c = await open(gw.port);
		const sentAt = Date.now();
		await c.write(head(gw.port, "/sessions/main/messages", { "Content-Length": String(body.length) }));
		let i = 0;
		const timer = setInterval(() => {
			if (c.closedAt !== null || i >= body.length) return;
			c.socket.write(body[i++]);
		}, 300);
		try {
			await expect408(c, sentAt, "trickled body");
		} finally {
			clearInterval(timer);
		}
		assert.ok(i < body.length, "the body was never complete");
	});

	test("chunked that never ends: a chunk every 300 ms, no last chunk", async () => {
		const c = await open(gw.port);
		const sentAt = Date.now();
		await c.write(Buffer.concat([head(gw.port, "/sessions/main/messages", { "Transfer-Encoding": "chunked" }), Buffer.from('9\r\n{"text":"\r\n')]));
		const timer = setInterval(() => {
			if (c.closedAt === null) c.socket.write("1\r\nx\r\n");
		}, 300);
		try {
			await expect408(c, sentAt, "endless chunked body");
		} finally {
			clearInterval(timer);
		}
	});

	test("Expect: 100-continue, then no body: 100, then 408", async () => {
		const c = await open(gw.port);
		const sentAt = Date.now();
		await c.write(head(gw.port, "/sessions/main/messages", { Expect: "100-continue", "Content-Length": "20" }));
		const rs = await c.waitResponses(2, LIMIT_MS + SLACK_MS + 1000);
		assert.equal(rs[0].status, 100);
		assert408(rs[1], sentAt, Date.now(), "after 100-continue");
		await c.waitClose(1000);
	});

	test("a slow body that completes within the limit is served", async () => {
		const body = JSON.stringify({ text: "slow but in time" });
		const c = await open(gw.port);
		await c.write(head(gw.port, "/sessions/main/messages", { "Content-Length": String(body.length) }));
		const third = Math.ceil(body.length / 3);
		for (let i = 0; i < 3; i++) {
			await sleep(200);
			await c.write(body.slice(i * third, (i + 1) * third));
		}
		const [res] = await c.waitResponses(1, 5000);
		assert.equal(res.status, 200, res.body.toString());
		const answer = JSON.parse(res.body.toString());
		assert.equal(res.headers["x-run-id"], answer.runId);
		assert.deepEqual(withRunId(answer), { ok: true, response: "echo:slow but in time", sessionKey: "main" });
	});
});

describe("idle connections", () => {
	test("an idle keep-alive connection is closed after limits.headerTimeoutMs, and works until then", async () => {
		const c = await open(gw.port);
		const get = build("GET", "/health", { host: `127.0.0.1:${gw.port}` });
		await c.write(get);
		await c.waitResponses(1, 3000);
		// Still usable a moment later: keep-alive is on for an ordinary connection.
		await sleep(300);
		await c.write(get);
		const rs = await c.waitResponses(2, 3000);
		assert.deepEqual(
			rs.map((r) => r.status),
			[200, 200],
		);
		const idleFrom = Date.now();
		const closedAt = await c.waitClose(LIMIT_MS + SLACK_MS + 1000);
		const idle = closedAt - idleFrom;
		assert.ok(idle >= LIMIT_MS - 300, `closed after ${idle} ms idle, before the limit`);
		assert.ok(idle <= LIMIT_MS + SLACK_MS, `closed after ${idle} ms idle`);
		assert.equal(c.responses().length, 2, "nothing else was sent");
	});

	test("a connection that never sends a byte is closed after limits.headerTimeoutMs", async () => {
		const c = await open(gw.port);
		const closedAt = await c.waitClose(LIMIT_MS + SLACK_MS + 1000);
		assert.ok(closedAt - c.openedAt <= LIMIT_MS + SLACK_MS, `closed after ${closedAt - c.openedAt} ms`);
	});
});

describe("the connection cap keeps /health answering", () => {
	test("maxConnections slow bodies: /health via the reserve, 503 for the rest, closed past the reserve, all well after", async () => {
		const cap = 20;
		const reserve = 4;
		const flood = await startSafe(cleanup, {
			config: { limits: { bodyTimeoutMs: 4000, headerTimeoutMs: 4000, maxConnections: cap, reserveConnections: reserve } },
		});
		const before = flood.prompts();
		// Fill the cap with bodies that never come.
		const floodConns = [];
		for (let i = 0; i < cap; i++) {
			const c = await open(flood.port);
			await c.write(head(flood.port, `/sessions/flood-${i}/messages`, { "Content-Length": "100" }));
			floodConns.push(c);
		}
		const floodStarted = Date.now();
		await sleep(300);
		assert.ok(
			floodConns.every((c) => c.closedAt === null && c.raw() === ""),
			"the flood connections are held open, unanswered",
		);

		// /health still answers, on fresh connections, through the reserve; keep-alive is off there.
		for (let i = 0; i < 3; i++) {
			const h = await send(flood.port, "GET", "/health", { timeoutMs: 3000 });
			assert.equal(h.status, 200, `health during the flood: ${show(h)}`);
			assert.deepEqual(h.json, { ok: true, ready: true });
			assert.equal(String(h.headers.connection).toLowerCase(), "close", "keep-alive is off in the reserve");
		}
		const headOnly = await send(flood.port, "HEAD", "/health", { timeoutMs: 3000, noBody: [true] });
		assert.equal(headOnly.status, 200, show(headOnly));

		// Anything else in the reserve: 503, Retry-After: 1, and nothing reaches a session.
		for (const [method, path, body] of [
			["POST", "/sessions/main/messages", msg("in the reserve")],
			["GET", "/sessions", undefined],
			["GET", "/ready", undefined],
			["GET", "/sessions/main/events", undefined],
		]) {
			const r = await send(flood.port, method, path, { body, timeoutMs: 3000 });
			assert.equal(r.status, 503, `${method} ${path} during the flood: ${show(r)}`);
			assert.deepEqual(r.json, { error: "Too many connections" });
			assert.equal(r.headers["retry-after"], "1");
			assert.equal(String(r.headers.connection).toLowerCase(), "close", "keep-alive is off in the reserve");
		}
		assert.equal(flood.prompts(), before, "nothing ran");
		// The reserve connection is closed after its answer, even when the client would keep it.
		const kept = await open(flood.port);
		await kept.write(build("GET", "/health", { host: `127.0.0.1:${flood.port}`, headers: { Connection: "keep-alive" } }));
		const [keptRes] = await kept.waitResponses(1, 3000);
		assert.equal(keptRes.status, 200);
		await kept.waitClose(1000);

		// Fill the reserve with silent connections: the next connection is closed at accept.
		const reserveConns = [];
		for (let i = 0; i < reserve; i++) reserveConns.push(await open(flood.port));
		await sleep(200);
		const refused = await open(flood.port);
		await refused.write(build("GET", "/health", { host: `127.0.0.1:${flood.port}` }));
		await refused.waitClose(2000);
		assert.equal(refused.raw(), "", "a connection past the reserve gets no answer");
		// Free the reserve: /health answers again while the flood is still on.
		for (const c of reserveConns) c.destroy();
		let h;
		for (let i = 0; i < 20; i++) {
			h = await send(flood.port, "GET", "/health", { timeoutMs: 1000 });
			if (h.status === 200) break;
			await sleep(50);
		}
		assert.equal(h.status, 200, `health after the reserve is freed: ${show(h)}`);
		assert.ok(Date.now() - floodStarted < 3500, "these checks ran while the flood held the cap");

		// The flood ends by itself: every slow body gets its 408 and its connection closes.
		await Promise.all(floodConns.map((c) => c.waitClose(4000 + SLACK_MS + 2000)));
		for (const c of floodConns) {
			const [res] = c.responses();
			assert.equal(res?.status, 408, `flood connection: ${JSON.stringify(c.raw().slice(0, 200))}`);
		}

		// Everything works again, keep-alive included.
		const m = await sendOnceFree(flood.port, "POST", "/sessions/main/messages", { body: msg("after the flood") });
		assert.equal(m.status, 200, show(m));
		assert.deepEqual(bodyWithRunId(m), { ok: true, response: "echo:after the flood", sessionKey: "main" });
		const c = await open(flood.port);
		const get = build("GET", "/health", { host: `127.0.0.1:${flood.port}` });
		await c.write(get);
		await c.waitResponses(1, 2000);
		await c.write(get);
		const rs = await c.waitResponses(2, 2000);
		assert.deepEqual(
			rs.map((r) => r.status),
			[200, 200],
		);
		c.destroy();
		for (let i = 0; i < cap; i++) assert.equal(flood.rt.getSession(`flood-${i}`), undefined, "no flood session was made");
	});

	test("a sustained flood (each closed slow body is reopened) never stops /health", async () => {
		const cap = 20;
		let running = true;
		let opened = 0;
		const live = new Set();
		const openOne = async () => {
			if (!running) return;
			let c;
			try {
				c = await open(gw.port);
			} catch {
				return;
			}
			opened++;
			live.add(c);
			c.socket.once("close", () => {
				live.delete(c);
				if (running) setTimeout(openOne, 20);
			});
			await c.write(head(gw.port, "/sessions/main/messages", { "Content-Length": "100" }));
		};
		for (let i = 0; i < cap; i++) await openOne();
		try {
			const until = Date.now() + 3000;
			let probes = 0;
			while (Date.now() < until) {
				const h = await send(gw.port, "GET", "/health", { timeoutMs: 2000 });
				assert.equal(h.status, 200, `probe ${probes}: ${show(h)}`);
				probes++;
				await sleep(100);
			}
			assert.ok(probes >= 10, `${probes} probes`);
			assert.ok(opened > cap, `the flood turned over (${opened} connections opened): the server closed slow bodies`);
		} finally {
			running = false;
			for (const c of live) c.destroy();
		}
		const m = await sendOnceFree(gw.port, "POST", "/sessions/main/messages", { body: msg("after the sustained flood") });
		assert.equal(m.status, 200, show(m));
	});
});
